//! The tunnel when an end is filtered (TLS on either side, an HTTP/2 stream): mod_proxy's
//! filter-aware tunnel relays it, in slices, so that we can look at the clock and at child
//! shutdown in between; a watch filter on each end (the shim's, above TLS and HTTP/2) counts
//! its bytes and tracks its frames, and in a draining child ends it politely from inside
//! (see [`super::polite`]).

use super::core::{stalled, End, Tick};
use super::ends::notice_mpm_stopping;
use super::limits::Timeouts;
use super::polite::{self, Direction};
use crate::frames::Frames;
use crate::httpd::filter::{self, Verdict, Watched};
use crate::httpd::log::{DEBUG, ERR};
use crate::httpd::proxy::{Slice, Tunnel};
use crate::httpd::{mpm, Connection, Request};
use crate::rlog;
use crate::scheme::Scheme;
use crate::status::Meter;
use crate::sys::unread;
use std::cell::RefCell;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// How long mod_proxy's tunnel runs before we look at the clock and at child shutdown: short
/// enough for the drain deadline, long enough to cost nothing (one wake-up per slice).
const SLICE: Duration = Duration::from_millis(250);

/// Both directions of a filtered tunnel. The tunnel's thread uses them either inside a slice
/// (the watch filters, as mod_proxy's tunnel reads) or between slices (the loop), never both
/// at once, so each borrow is short and never contended.
type Pair = Rc<RefCell<[Direction; 2]>>;

/// The watch on one end: the tunnel's directions (its filter may close the other one too)
/// and the board's counter for its own.
struct Half {
    dirs: Pair,
    /// 0: client to backend (the filter on the client's connection); 1: backend to client.
    i: usize,
    counter: &'static AtomicU64,
    /// Ask the MPM whether the child is stopping, on every read (prefork only, see `verdict`).
    ask_mpm: bool,
}

impl filter::Watch for Half {
    /// Read on, or answer end of stream (the sender answered our Close), or fail the read
    /// (the drain's deadline passed).
    fn verdict(&self) -> Verdict {
        // prefork tells a busy child of a graceful stop only by a signal, which mod_proxy's
        // tunnel swallows; a tunnel that never pauses reaches our slice loop too late.
        // Threaded MPMs run the child_stopping hook themselves.
        if self.ask_mpm {
            notice_mpm_stopping();
        }
        if super::shutdown::stopping() {
            Verdict::Abort
        } else if self.dirs.borrow()[self.i].finished() {
            Verdict::Eof
        } else {
            Verdict::Read
        }
    }

    fn read(&self, bytes: &[u8]) -> usize {
        let keep = self.dirs.borrow_mut()[self.i].read(
            bytes,
            super::shutdown::polite_until().is_some(),
            Tick::now(),
        );
        self.counter.fetch_add(keep as u64, Relaxed);
        keep
    }

    /// A Close for `sender` (the other direction's destination) goes to it directly.
    fn closes(&self, sender: &Connection) -> Option<Vec<u8>> {
        let (here, back) = polite::closes_after_read(&mut self.dirs.borrow_mut(), self.i);
        if let Some(close) = back {
            sender.write(&close);
        }
        here
    }
}

/// Both directions of a filtered tunnel, watched by a filter on each connection as mod_proxy's
/// tunnel reads them: bytes counted on the board, frames tracked for the polite end. The
/// filters come off on drop: connections outlive requests.
struct Watch<'r> {
    dirs: Pair,
    senders: [Option<RawFd>; 2],
    _filters: [Watched<'r>; 2],
}

impl<'r> Watch<'r> {
    fn start(
        r: &Request<'r>,
        backconn: &Connection<'r>,
        surplus: &[u8],
        websocket: bool,
        meter: Meter,
    ) -> Watch<'r> {
        let now = Tick::now();
        let mut pair = [Direction::new(true, websocket), Direction::new(false, websocket)];
        pair.iter_mut().for_each(|d| d.started(now));
        // The bytes that came with the 101 reach the client without passing a filter.
        pair[1].read(surplus, false, now);
        meter.backend_to_client.fetch_add(surplus.len() as u64, Relaxed);
        let dirs: Pair = Rc::new(RefCell::new(pair));
        let ask_mpm = !mpm::is_threaded();
        // An HTTP/2 stream's connection shows its main connection's socket: not its own.
        let sender = |c: &Connection| c.fd().filter(|_| !c.is_secondary());
        let senders = [sender(&r.connection()), sender(backconn)];
        let half = |i, counter| Box::new(Half { dirs: dirs.clone(), i, counter, ask_mpm });
        let filters = [
            filter::watch(&r.connection(), half(0, meter.client_to_backend)),
            filter::watch(backconn, half(1, meter.backend_to_client)),
        ];
        Watch { dirs, senders, _filters: filters }
    }

    /// In the drain's polite end, a Close 1001 to the destination of each direction that
    /// rests between frames (a slice went by without traffic, so all it read went on).
    /// Returns whether any Close went, now or earlier (from a filter).
    fn send_going_away(&self, r: &Request, backconn: &Connection) -> bool {
        if super::shutdown::polite_until().is_some() {
            let closes = self.dirs.borrow_mut().each_mut().map(Direction::close_if_resting);
            for (close, to) in closes.into_iter().zip([backconn, &r.connection()]) {
                if let Some(close) = close {
                    to.write(&close);
                }
            }
        }
        self.any_closed()
    }

    /// A write stall that ends the tunnel now: bytes wait unread in a sender's socket (the
    /// tunnel stopped reading them: their destination takes nothing) and none passed that way
    /// for `limit`.
    fn stalled(&self, limit: Duration) -> Option<End> {
        let dirs = self.dirs.borrow();
        let waiting = dirs
            .iter()
            .zip(self.senders)
            .filter(|(_, s)| waiting(*s))
            .map(|(d, _)| (d.to(), d.moved_at()));
        stalled(waiting, limit, Tick::now())
    }

    /// Both sides answered their Close.
    fn closes_answered(&self) -> bool {
        self.dirs.borrow().iter().all(Direction::finished)
    }

    fn any_closed(&self) -> bool {
        self.dirs.borrow().iter().any(Direction::closed)
    }

    /// Where each direction's frames stand (None for other protocols).
    fn frames(&self) -> Option<(Frames, Frames)> {
        let dirs = self.dirs.borrow();
        Some((dirs[0].frames()?, dirs[1].frames()?))
    }

    /// Bytes passed each way.
    fn passed(&self) -> [u64; 2] {
        self.dirs.borrow().map(|d| d.passed())
    }
}

/// How a filtered tunnel left its relay on the request thread.
pub enum Relayed {
    /// It is over (and logged).
    Ended,
    /// It should go on on the runtime (`handoff_at` passed, at a quiet moment): the bytes moved
    /// so far each way, and where each direction's frames stand.
    Handoff { moved: (u64, u64), frames: Option<(Frames, Frames)> },
}

#[allow(clippy::too_many_arguments)]
pub fn run<'r>(
    r: &Request<'r>,
    backconn: &Connection<'r>,
    surplus: Vec<u8>,
    timeouts: Timeouts,
    scheme: Scheme,
    websocket: bool,
    meter: Meter,
    handoff_at: Option<Instant>,
) -> Relayed {
    rlog!(r, DEBUG, "WST02006: TLS or HTTP/2 end: relaying through httpd's connection filters");
    let watch = Watch::start(r, backconn, &surplus, websocket, meter);
    // mod_proxy's tunnel puts the request in tunnel mode (connection filters only, no
    // mod_reqtimeout, no keep-alive): the bytes that came with the 101 go out after that.
    let Some(mut tunnel) = Tunnel::create(r, backconn, scheme.proxy_function()) else {
        rlog!(r, ERR, "WST02008: cannot set up the tunnel through httpd's connection filters");
        r.connection().set_aborted();
        return Relayed::Ended;
    };
    if !surplus.is_empty() && (!r.write(&surplus) || !r.flush()) {
        r.connection().set_aborted();
        return Relayed::Ended;
    }
    let end = relay(r, backconn, &mut tunnel, &watch, timeouts, handoff_at);
    let [c2b, b2c] = watch.passed();
    if matches!(end, End::Handoff) {
        return Relayed::Handoff { moved: (c2b, b2c), frames: watch.frames() };
    }
    super::ends::log_end(
        r,
        &end,
        &format!("{c2b} bytes client to backend, {b2c} bytes backend to client"),
    );
    if end.abort_client() {
        // Close the client now, without lingering or flushing: a client that stopped reading
        // would otherwise hold the thread for `Timeout` after its tunnel ended.
        r.connection().set_aborted();
    }
    Relayed::Ended
}

/// Runs mod_proxy's tunnel in slices until it ends, or must end.
/// With `handoff_at`, it stops for the hand-over at the first quiet moment from then on (a
/// slice without traffic: nothing in flight) while no Close went yet.
fn relay(
    r: &Request,
    backconn: &Connection,
    tunnel: &mut Tunnel,
    watch: &Watch,
    timeouts: Timeouts,
    handoff_at: Option<Instant>,
) -> End {
    let mut quiet_since = Instant::now();
    let mut slice_len = SLICE;
    loop {
        if let Some(at) = handoff_at {
            let now = Instant::now();
            // Nothing may wait in the backend's output filters: the runtime writes its socket.
            if now >= at
                && !watch.any_closed()
                && !super::shutdown::stopping()
                && !backconn.holds_output()
            {
                return End::Handoff;
            }
            // Back in time for the hand-over (a slice ends early only when quiet).
            slice_len = SLICE.min(at.saturating_duration_since(now)).max(Duration::from_millis(1));
        }
        let started = Instant::now();
        let slice = tunnel.run(slice_len);
        let now = Instant::now();
        if slice != Slice::Quiet {
            return if super::shutdown::stopping() {
                End::Shutdown
            } else if watch.any_closed() {
                End::GoingAway
            } else {
                match slice {
                    Slice::Failed(status) => End::Status(status),
                    _ => End::Closed,
                }
            };
        }
        // The run ended after a slice without traffic; if it lasted longer, traffic came
        // before that quiet slice.
        if now - started > slice_len + slice_len / 2 {
            quiet_since = now - slice_len;
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
