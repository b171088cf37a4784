//! The tunnel when an end is filtered (TLS on either side, an HTTP/2 stream): mod_proxy's
//! filter-aware tunnel relays it, in slices, so that we can look at the clock and at child
//! shutdown in between; a watch filter on each end (the shim's, above TLS and HTTP/2) counts
//! its bytes and tracks its frames, and in a draining child ends it politely from inside
//! (see [`super::polite`]).

use super::core::{stalled, End, Tick};
use super::limits::Timeouts;
use super::sys::unread;
use super::ends::notice_mpm_stopping;
use super::polite::{self, Direction};
use crate::canon::Scheme;
use crate::ffi;
use crate::httpd::log::{DEBUG, ERR};
use crate::httpd::{Connection, Request};
use crate::rlog;
use crate::status::Meter;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// How long mod_proxy's tunnel runs before we look at the clock and at child shutdown: short
/// enough for the drain deadline, long enough to cost nothing (one wake-up per slice).
const SLICE: Duration = Duration::from_millis(250);

/// The directions of a filtered tunnel, allocated by `Watch::start` in the request pool.
///
/// # Safety
/// `p` must come from a `Watch` still in place, and the reference must not outlive the caller's
/// turn: the tunnel's thread uses the pair either inside a slice (the filters, as mod_proxy's
/// tunnel reads) or between slices (the loop), never both at once, and no other thread does.
unsafe fn pair<'a>(p: *mut [Direction; 2]) -> &'a mut [Direction; 2] {
    unsafe { &mut *p }
}

/// What the watch filter on one end shares with the tunnel: both directions (it may close
/// the other one too) and the board's counter for its own.
#[derive(Clone, Copy)]
pub struct Half {
    /// The tunnel's request (for logging).
    r: *const ffi::request_rec,
    dirs: *mut [Direction; 2],
    /// 0: client to backend (the filter on the client's connection); 1: backend to client.
    i: usize,
    counter: &'static AtomicU64,
    /// Ask the MPM whether the child is stopping, on every read (prefork only, see `verdict`).
    ask_mpm: bool,
}

impl Half {
    pub fn request(&self) -> *const ffi::request_rec {
        self.r
    }

    /// Whether the filter should read: read on, or answer end of stream (the sender answered
    /// our Close), or fail the read (the drain's deadline passed).
    pub fn verdict(&self) -> u32 {
        // prefork tells a busy child of a graceful stop only by a signal, which mod_proxy's
        // tunnel swallows; a tunnel that never pauses reaches our slice loop too late.
        // Threaded MPMs run the child_stopping hook themselves.
        if self.ask_mpm {
            notice_mpm_stopping();
        }
        // SAFETY: called by the filter (see `pair`).
        let dir = unsafe { &pair(self.dirs)[self.i] };
        if super::shutdown::stopping() {
            ffi::WST_WATCH_ABORT
        } else if dir.finished() {
            ffi::WST_WATCH_EOF
        } else {
            ffi::WST_WATCH_READ
        }
    }

    /// Bytes just read: how many of them go on.
    pub fn read(&self, bytes: &[u8]) -> usize {
        // SAFETY: called by the filter (see `pair`).
        let dirs = unsafe { pair(self.dirs) };
        let keep = dirs[self.i].read(bytes, super::shutdown::polite_until().is_some(), Tick::now());
        self.counter.fetch_add(keep as u64, Relaxed);
        keep
    }

    /// After a read: the Close to append, if one fell due; a Close for `sender` (the other
    /// direction's destination) goes to it directly.
    ///
    /// # Safety
    /// `sender` must be the live connection the filter reads from.
    pub unsafe fn closes(&self, sender: *mut ffi::conn_rec) -> Option<Vec<u8>> {
        // SAFETY: called by the filter (see `pair`).
        let (here, back) = polite::closes_after_read(unsafe { pair(self.dirs) }, self.i);
        if let Some(close) = back {
            // SAFETY: `sender` is live (the caller's promise).
            unsafe { Connection::from_raw(sender) }.write(&close);
        }
        here
    }
}

/// Both directions of a filtered tunnel, watched by the shim's filter on each connection as
/// mod_proxy's tunnel reads them: bytes counted on the board, frames tracked for the polite
/// end. The filters come off on drop, before the request pool (where their state lives) goes
/// away: connections outlive requests.
struct Watch {
    dirs: *mut [Direction; 2],
    senders: [Option<RawFd>; 2],
    filters: [*mut ffi::ap_filter_t; 2],
}

impl Watch {
    fn start(r: &Request, backconn: &Connection, surplus: &[u8], websocket: bool, meter: Meter) -> Watch {
        let pool = r.pool();
        let dirs = pool.alloc([Direction::new(true, websocket), Direction::new(false, websocket)]);
        // SAFETY: reads the loaded MPM's answer; no arguments.
        let ask_mpm = unsafe { ffi::wst_mpm_is_threaded() } == 0;
        // An HTTP/2 stream's connection shows its main connection's socket: not its own.
        let sender = |c: &Connection| c.fd().filter(|_| !c.is_secondary());
        let senders = [sender(&r.connection()), sender(backconn)];
        let half = |i, counter| pool.alloc(Half { r: r.as_ptr(), dirs, i, counter, ask_mpm });
        let halves = [half(0, meter.client_to_backend), half(1, meter.backend_to_client)];
        // The bytes that came with the 101 reach the client without passing a filter.
        // SAFETY: just allocated; no filter runs yet.
        let now = Tick::now();
        unsafe {
            (*dirs).iter_mut().for_each(|d| d.started(now));
            (*dirs)[1].read(surplus, false, now);
        }
        meter.backend_to_client.fetch_add(surplus.len() as u64, Relaxed);
        // SAFETY: the halves live in the request pool, which outlives the tunnel; the filters
        // are removed (drop) before the handler returns.
        let filters = unsafe {
            [ffi::wst_watch_add(r.connection().as_ptr(), halves[0].cast()), ffi::wst_watch_add(backconn.as_ptr(), halves[1].cast())]
        };
        Watch { dirs, senders, filters }
    }

    /// Between slices, when no filter runs.
    fn dirs(&mut self) -> &mut [Direction; 2] {
        // SAFETY: the tunnel's thread, between slices (see `pair`).
        unsafe { pair(self.dirs) }
    }

    /// In the drain's polite end, a Close 1001 to the destination of each direction that
    /// rests between frames (a slice went by without traffic, so all it read went on).
    /// Returns whether any Close went, now or earlier (from a filter).
    fn send_going_away(&mut self, r: &Request, backconn: &Connection) -> bool {
        if super::shutdown::polite_until().is_some() {
            for (dir, to) in self.dirs().iter_mut().zip([backconn, &r.connection()]) {
                if let Some(close) = dir.close_if_resting() {
                    to.write(&close);
                }
            }
        }
        self.dirs().iter().any(Direction::closed)
    }

    /// A write stall that ends the tunnel now: bytes wait unread in a sender's socket (the
    /// tunnel stopped reading them: their destination takes nothing) and none passed that way
    /// for `limit`.
    fn stalled(&mut self, limit: Duration) -> Option<End> {
        let senders = self.senders;
        let waiting = self.dirs().iter().zip(senders).filter(|(_, s)| waiting(*s)).map(|(d, _)| (d.to(), d.moved_at()));
        stalled(waiting, limit, Tick::now())
    }

    /// Both sides answered their Close.
    fn closes_answered(&mut self) -> bool {
        self.dirs().iter().all(Direction::finished)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        for f in self.filters {
            // SAFETY: filters added by `start` on connections that are still live.
            unsafe { ffi::wst_watch_remove(f) };
        }
    }
}

pub fn run(r: &Request, backconn: &Connection, surplus: Vec<u8>, timeouts: Timeouts, scheme: Scheme, websocket: bool, meter: Meter) {
    rlog!(r, DEBUG, "WST02006: TLS or HTTP/2 end: relaying through httpd's connection filters");
    let mut watch = Watch::start(r, backconn, &surplus, websocket, meter);
    if !surplus.is_empty() && (!r.write(&surplus) || !r.flush()) {
        r.connection().set_aborted();
        return;
    }
    let name = std::ffi::CString::new(scheme.as_str().to_ascii_uppercase()).expect("no NUL");
    // SAFETY: the request and the backend connection are live for the whole tunnel; the
    // tunnel is allocated in the request pool.
    let tunnel = unsafe { ffi::wst_filtered_tunnel_create(r.as_ptr(), backconn.as_ptr(), name.as_ptr()) };
    if tunnel.is_null() {
        rlog!(r, ERR, "WST02008: cannot set up the tunnel through httpd's connection filters");
        r.connection().set_aborted();
        return;
    }
    let end = relay(r, backconn, tunnel, &mut watch, timeouts);
    let [c2b, b2c] = watch.dirs().map(|d| d.passed());
    super::ends::log_end(r, &end, &format!("{c2b} bytes client to backend, {b2c} bytes backend to client"));
    if matches!(end, End::Shutdown | End::GoingAway | End::WriteStalled(..)) {
        // Close the client now, without lingering: the tunnel is over on both sides.
        r.connection().set_aborted();
    }
}

/// Runs mod_proxy's tunnel in slices until it ends, or must end.
fn relay(r: &Request, backconn: &Connection, tunnel: *mut ffi::proxy_tunnel_rec, watch: &mut Watch, timeouts: Timeouts) -> End {
    let mut quiet_since = Instant::now();
    // Each direction's sender: where bytes wait while mod_proxy's tunnel cannot write them on.
    loop {
        let started = Instant::now();
        // SAFETY: `tunnel` was created for this request, which outlives the loop.
        let status = unsafe { ffi::wst_filtered_tunnel_run(tunnel, SLICE.as_micros() as ffi::apr_interval_time_t) };
        let now = Instant::now();
        if status != ffi::HTTP_GATEWAY_TIME_OUT as i32 {
            return if super::shutdown::stopping() {
                End::Shutdown
            } else if watch.dirs().iter().any(Direction::closed) {
                End::GoingAway
            } else if status == crate::handler::OK {
                End::Closed
            } else {
                End::Status(status)
            };
        }
        // The run ended after a slice without traffic; if it lasted longer, traffic came
        // before that quiet slice.
        if now - started > SLICE + SLICE / 2 {
            quiet_since = now - SLICE;
        }
        notice_mpm_stopping();
        if watch.send_going_away(r, backconn) && watch.closes_answered() {
            // Nobody sends after a Close, and a client waits for the server to close first.
            return End::GoingAway;
        }
        if super::shutdown::stopping() {
            return End::Shutdown;
        }
        if let Some(idle) = timeouts.idle.filter(|d| now - quiet_since >= *d) {
            return End::Idle(idle);
        }
        // A quiet slice with bytes waiting in a sender's socket (HTTP/2 streams have no
        // socket of their own: their flow control is mod_http2's).
        if let Some(end) = timeouts.write_stall.and_then(|limit| watch.stalled(limit)) {
            return end;
        }
    }
}

/// Whether bytes wait unread in `sender`'s socket.
fn waiting(sender: Option<RawFd>) -> bool {
    sender.is_some_and(|fd| unread(fd) > 0)
}
