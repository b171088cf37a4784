//! Choosing the kind of ends, handing httpd's buffered bytes to the relay, and logging the outcome.

use crate::canon::Scheme;
use crate::ffi;
use crate::handler::DONE;
use crate::httpd::connection::Read;
use crate::httpd::log::{DEBUG, ERR, INFO, WARNING};
use crate::httpd::{Connection, Request};
use crate::rlog;
use super::handoff::{async_handoff_at, handoff};
use super::relay::{self, End, Ends, Limits};
use super::polite::{self, Direction};
use crate::frames::Frames;
use crate::status::{self, Meter};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// A reader of what httpd's input filters already buffered for a connection (non-blocking).
/// `counted`, if given, adds up the bytes it delivered.
fn buffered<'a>(c: &'a Connection<'a>, counted: Option<&'a std::cell::Cell<u64>>) -> relay::Buffered<'a> {
    let bb = c.brigade();
    Box::new(move |buf: &mut [u8]| match c.read(&bb, buf, false) {
        Read::Data(n) => {
            if let Some(total) = counted {
                total.set(total.get() + n as u64);
            }
            Ok(n)
        }
        Read::Eof => Ok(0),
        Read::WouldBlock => Err(std::io::ErrorKind::WouldBlock.into()),
        Read::Error(e) => Err(std::io::Error::other(format!("APR status {e}"))),
    })
}

/// Starts the graceful drain if the MPM says this child is stopping (see `Limits::on_signal`).
fn notice_mpm_stopping() {
    // SAFETY: both read process-global MPM state; no arguments.
    let (stopping, grace) = unsafe { (ffi::wst_mpm_stopping() != 0, ffi::wst_graceful_shutdown_timeout()) };
    if stopping {
        super::shutdown::child_stopping(true, grace);
    }
}

fn is_raw(c: &Connection) -> bool {
    !c.is_tls() && !c.is_secondary() && c.fd().is_some()
}

/// Relays between the client and the backend until the tunnel ends. `surplus` are bytes the
/// backend sent right behind its 101. Returns the handler's status (never an error page:
/// the 101 is out).
pub fn run(
    r: &Request,
    backend: &mut ffi::proxy_conn_rec,
    backconn: &Connection,
    surplus: Vec<u8>,
    idle_us: i64,
    scheme: Scheme,
    websocket: bool,
) -> i32 {
    let client = r.connection();
    r.enter_tunnel_mode();
    let idle = (idle_us > 0).then(|| Duration::from_micros(idle_us as u64));
    if scheme == Scheme::Ws && is_raw(&client) && is_raw(backconn) {
        let frames = websocket.then(Default::default);
        raw(r, &client, backend, backconn, surplus, idle, frames);
    } else {
        let board = status::Tunnel::start();
        filtered(r, backconn, surplus, idle, scheme, websocket, board.meter());
    }
    DONE
}

fn raw(
    r: &Request,
    client: &Connection,
    backend: &ffi::proxy_conn_rec,
    backconn: &Connection,
    surplus: Vec<u8>,
    idle: Option<Duration>,
    frames: Option<(Frames, Frames)>,
) {
    // Bytes read from the client through httpd's filters are counted by mod_logio already.
    let client_filtered = std::cell::Cell::new(0u64);
    // Writes may wait as long as httpd would let a blocking write wait on either side.
    let mut backend_timeout: ffi::apr_interval_time_t = 0;
    // SAFETY: the backend socket is live while the backend connection is held.
    unsafe { ffi::apr_socket_timeout_get(backend.sock, &mut backend_timeout) };
    // SAFETY: the request's server_rec is live.
    let server_timeout = unsafe { (*r.server()).timeout };
    let stall = backend_timeout.max(server_timeout);
    let mut board = status::Tunnel::start();
    let limits = Limits {
        idle,
        write_stall: (stall > 0).then(|| Duration::from_micros(stall as u64)),
        stop_fd: super::shutdown::stop_fd(),
        on_signal: Some(notice_mpm_stopping),
        polite: Some(super::shutdown::polite_until),
        handoff_at: async_handoff_at(r),
    };
    let ends = Ends {
        client: client.fd().expect("raw ends have a socket"),
        backend: backconn.fd().expect("raw ends have a socket"),
        backend_pre: surplus,
        client_buffered: Some(buffered(client, Some(&client_filtered))),
        backend_buffered: Some(buffered(backconn, None)),
        frames,
        meter: board.meter(),
    };
    let mut out = relay::run(ends, limits);
    client.logio_add(out.client_to_backend.saturating_sub(client_filtered.get()), out.backend_to_client);
    if matches!(out.end, End::Handoff) {
        let frames = match &out.frames {
            (Some(c), Some(b)) => Some((*c, *b)),
            _ => None,
        };
        match handoff(r, client, backend, backconn, idle, frames, board, (out.client_to_backend, out.backend_to_client)) {
            Ok(()) => {
                rlog!(
                    r,
                    DEBUG,
                    "WST02010: tunnel handed to the asynchronous relay after {} bytes client to backend, {} bytes backend to client",
                    out.client_to_backend,
                    out.backend_to_client
                );
                return;
            }
            Err((e, back)) => {
                board = back;
                rlog!(r, WARNING, "WST02013: cannot hand the tunnel to the asynchronous relay ({e}): relaying it here");
                let ends = Ends {
                    client: client.fd().expect("raw ends have a socket"),
                    backend: backconn.fd().expect("raw ends have a socket"),
                    backend_pre: Vec::new(),
                    client_buffered: None,
                    backend_buffered: None,
                    frames,
                    meter: board.meter(),
                };
                let more = relay::run(ends, Limits { handoff_at: None, ..limits });
                client.logio_add(more.client_to_backend, more.backend_to_client);
                out = relay::Outcome {
                    client_to_backend: out.client_to_backend + more.client_to_backend,
                    backend_to_client: out.backend_to_client + more.backend_to_client,
                    end: more.end,
                    frames: more.frames,
                };
            }
        }
    }
    let bytes = format!("{} bytes client to backend, {} bytes backend to client", out.client_to_backend, out.backend_to_client);
    match &out.end {
        End::Closed => rlog!(r, DEBUG, "WST02001: tunnel closed by both sides; {bytes}"),
        End::Failed(side, e) => rlog!(r, DEBUG, "WST02003: tunnel ended: {} connection failed: {e}; {bytes}", side.name()),
        End::Idle => rlog!(
            r,
            INFO,
            "WST02004: tunnel idle for {:?} (ProxyWebsocketIdleTimeout): closing both sides; {bytes}",
            idle.unwrap_or_default()
        ),
        End::Shutdown => rlog!(r, INFO, "WST02007: httpd child is stopping: tunnel closed; {bytes}"),
        End::GoingAway => rlog!(r, INFO, "WST02014: httpd child is stopping: both sides closed with WebSocket Close 1001 (Going Away); {bytes}"),
        End::Handoff => unreachable!("a handoff either succeeds or relays on"),
        End::WriteStalled(side) => rlog!(
            r,
            INFO,
            "WST02005: {} took no data for {:?} (Timeout/ProxyTimeout): closing both sides; {bytes}",
            side.name(),
            limits.write_stall.unwrap_or_default()
        ),
    }
    if !matches!(out.end, End::Closed) {
        // Close the client now, without lingering: the tunnel is over on both sides.
        client.set_aborted();
    }
}

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
        notice_mpm_stopping();
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
        let keep = unsafe { pair(self.dirs)[self.i].read(bytes, super::shutdown::polite_until().is_some()) };
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
            // SAFETY: `sender` is live (the caller's promise); the bytes are copied.
            unsafe { ffi::wst_conn_write(sender, close.as_ptr().cast(), close.len()) };
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
    filters: [*mut ffi::ap_filter_t; 2],
}

impl Watch {
    fn start(r: &Request, backconn: &Connection, surplus: &[u8], websocket: bool, meter: Meter) -> Watch {
        let pool = r.pool();
        let dirs = pool.alloc([Direction::new(true, websocket), Direction::new(false, websocket)]);
        let half = |i, counter| pool.alloc(Half { r: r.as_ptr(), dirs, i, counter });
        let halves = [half(0, meter.client_to_backend), half(1, meter.backend_to_client)];
        // The bytes that came with the 101 reach the client without passing a filter.
        // SAFETY: just allocated; no filter runs yet.
        unsafe { (*dirs)[1].read(surplus, false) };
        meter.backend_to_client.fetch_add(surplus.len() as u64, Relaxed);
        // SAFETY: the halves live in the request pool, which outlives the tunnel; the filters
        // are removed (drop) before the handler returns.
        let filters = unsafe {
            [ffi::wst_frames_watch(r.connection().as_ptr(), halves[0].cast()), ffi::wst_frames_watch(backconn.as_ptr(), halves[1].cast())]
        };
        Watch { dirs, filters }
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
            for (dir, to) in self.dirs().iter_mut().zip([backconn.as_ptr(), r.connection().as_ptr()]) {
                if let Some(close) = dir.close_if_resting() {
                    // SAFETY: a live connection of this request; the bytes are copied.
                    unsafe { ffi::wst_conn_write(to, close.as_ptr().cast(), close.len()) };
                }
            }
        }
        self.dirs().iter().any(Direction::closed)
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
            unsafe { ffi::wst_frames_unwatch(f) };
        }
    }
}

/// A filtered tunnel ended politely in a stopping child: logged, and closed without lingering.
fn went_away(r: &Request) {
    rlog!(r, INFO, "WST02014: httpd child is stopping: both sides closed with WebSocket Close 1001 (Going Away)");
    r.connection().set_aborted();
}

/// A filtered tunnel closed at the drain's deadline.
fn stopped(r: &Request) {
    rlog!(r, INFO, "WST02007: httpd child is stopping: tunnel closed");
    r.connection().set_aborted();
}

fn filtered(r: &Request, backconn: &Connection, surplus: Vec<u8>, idle: Option<Duration>, scheme: Scheme, websocket: bool, meter: Meter) {
    rlog!(r, DEBUG, "WST02006: TLS or HTTP/2 end: relaying through httpd's connection filters");
    let mut watch = Watch::start(r, backconn, &surplus, websocket, meter);
    if !surplus.is_empty() && !(r.write(&surplus) && r.flush()) {
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
    let mut quiet_since = Instant::now();
    loop {
        let started = Instant::now();
        // SAFETY: `tunnel` was created above for this request, which outlives the loop.
        let status = unsafe { ffi::wst_filtered_tunnel_run(tunnel, SLICE.as_micros() as ffi::apr_interval_time_t) };
        let now = Instant::now();
        if status != ffi::HTTP_GATEWAY_TIME_OUT as i32 {
            if super::shutdown::stopping() {
                stopped(r);
            } else if watch.dirs().iter().any(Direction::closed) {
                // It ended in the polite end, after a Close went.
                went_away(r);
            } else if status != crate::handler::OK {
                rlog!(r, DEBUG, "WST02003: tunnel ended with status {status}");
            } else {
                rlog!(r, DEBUG, "WST02001: tunnel closed by both sides");
            }
            return;
        }
        // The run ended after a slice without traffic; if it lasted longer, traffic came
        // before that quiet slice.
        if now - started > SLICE + SLICE / 2 {
            quiet_since = now - SLICE;
        }
        notice_mpm_stopping();
        if watch.send_going_away(r, backconn) && watch.closes_answered() {
            // Nobody sends after a Close, and a client waits for the server to close first.
            went_away(r);
            return;
        }
        if super::shutdown::stopping() {
            stopped(r);
            return;
        }
        if let Some(idle) = idle.filter(|d| now - quiet_since >= *d) {
            rlog!(r, INFO, "WST02004: tunnel idle for {idle:?} (ProxyWebsocketIdleTimeout): closing both sides");
            return;
        }
    }
}
