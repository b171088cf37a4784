//! Child shutdown as the relay sees it: one eventfd per child process that becomes readable
//! when the child's tunnels must end. Every synchronous relay polls it, so request threads
//! blocked in tunnels return at once and the child can exit.
//!
//! httpd runs the child_stopping hook once, when a child starts to stop. An ungraceful stop
//! ends tunnels at once. A graceful restart or stop lets them run for GracefulShutdownTimeout
//! (less a margin, so the child exits before httpd resorts to signals, which a child whose
//! threads are all busy never handles); with no timeout (0) they run until they end, as stock.
//! The last second of that time is the polite end: WebSocket tunnels get a Close frame (1001,
//! Going Away) on both sides at the next frame boundary, so browsers see a clean close and
//! reconnect; whatever is still open at the deadline is closed.

use crate::httpd::outcome::Process;
use once_cell::sync::OnceCell;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The drain's part of the child's state ([`crate::child::Child`]).
pub struct State {
    stopping: AtomicBool,
    /// The polite end has begun (see the module's documentation).
    closing: AtomicBool,
    /// Created lazily by the first relay on a request thread, so in the child process, never
    /// in httpd's parent (an fd inherited through fork would be shared by every child).
    event_fd: OnceCell<OwnedFd>,
    /// When a started graceful drain closes the tunnels (set once, by the hook or by noticing
    /// the MPM's state).
    drain_deadline: Mutex<Option<Instant>>,
    /// `ProxyWebsocketDrainTimeout` (set in httpd's parent at post_config, inherited by
    /// children).
    drain_timeout: Mutex<Option<Duration>>,
    /// Whether httpd as a whole is stopping or restarting, rather than retiring this one
    /// child (MaxSpareThreads): set by the module at child start; without it, always.
    server_draining: OnceCell<fn() -> bool>,
    /// The drain thread was started.
    watching: AtomicBool,
}

impl State {
    pub(crate) const fn new() -> State {
        State {
            stopping: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            event_fd: OnceCell::new(),
            drain_deadline: Mutex::new(None),
            drain_timeout: Mutex::new(None),
            server_draining: OnceCell::new(),
            watching: AtomicBool::new(false),
        }
    }
}

fn state() -> &'static State {
    &crate::child::CHILD.drain
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn event_fd() -> Option<RawFd> {
    state().event_fd.get_or_try_init(crate::sys::eventfd).ok().map(|fd| fd.as_raw_fd())
}

/// The fd a relay polls for readability to learn that the child is stopping.
pub fn stop_fd() -> Option<RawFd> {
    let fd = event_fd()?;
    if state().stopping.load(Ordering::Acquire) || state().closing.load(Ordering::Acquire) {
        signal(fd);
    }
    Some(fd)
}

/// Makes the eventfd readable for good: nobody reads it.
fn signal(fd: RawFd) {
    crate::sys::eventfd_signal(fd);
}

/// How long before httpd's deadline tunnels are closed, so that the child exits on its own.
const MARGIN: Duration = Duration::from_millis(500);
/// How long before that the polite end begins (at most half the grace period).
const POLITE: Duration = Duration::from_secs(1);

/// Whether tunnels must end now (for relays that cannot poll [`stop_fd`]).
pub fn stopping() -> bool {
    state().stopping.load(Ordering::Acquire)
}

pub fn set_drain_timeout(d: Option<Duration>) {
    *lock(&state().drain_timeout) = d;
}

/// How long tunnels may run on in a graceful drain (the polite end being its last second);
/// None: until they end.
pub fn grace(graceful_shutdown_timeout_secs: i32) -> Option<Duration> {
    let drain = *lock(&state().drain_timeout);
    drain_window(graceful_shutdown_timeout_secs, drain)
}

/// When, in a drain of `grace`, the polite end begins (its last second, or its second half).
pub fn polite_after(grace: Duration) -> Duration {
    grace - POLITE.min(grace / 2)
}

/// Before httpd's own deadline (GracefulShutdownTimeout, less a margin), and after
/// `ProxyWebsocketDrainTimeout` plus the polite end if that is set.
fn drain_window(graceful_shutdown_timeout_secs: i32, drain: Option<Duration>) -> Option<Duration> {
    let httpd = (graceful_shutdown_timeout_secs > 0)
        .then(|| Duration::from_secs(graceful_shutdown_timeout_secs as u64).saturating_sub(MARGIN));
    let ours = drain.map(|d| d + POLITE);
    match (httpd, ours) {
        (Some(h), Some(o)) => Some(h.min(o)),
        (h, o) => h.or(o),
    }
}

/// The child process is exiting (cleanup of its pool): its worker threads are done, but
/// asynchronous tunnels live in the module's runtime. On a graceful stop or restart they run
/// on until the drain deadline (or, with GracefulShutdownTimeout 0, until they end, as
/// synchronous tunnels would); otherwise they are closed now.
pub fn child_exit(graceful_shutdown_timeout_secs: i32) {
    if super::detached::live() == 0 {
        return;
    }
    if !state().stopping.load(Ordering::Acquire) {
        // Starts the drain (with its polite end) unless the child_stopping hook did; its
        // deadline is set once the server is known to be stopping or restarting.
        child_stopping(true, graceful_shutdown_timeout_secs);
        super::detached::wait_until_none(|| *lock(&state().drain_deadline));
    }
    stop_now();
    // Let the runtime close the sockets (and log the tunnels' ends) before the process goes.
    let end = Instant::now() + Duration::from_millis(500);
    super::detached::wait_until_none(|| Some(end));
}

pub fn set_server_draining_check(f: fn() -> bool) {
    let _ = state().server_draining.set(f);
}

/// Whether httpd as a whole is stopping or restarting (true), or only retires this child for
/// spare threads (false). A child of an older generation than the running one is in a
/// graceful restart; otherwise, threaded MPMs mark a stopping child quiescing, so a sibling
/// of the running generation that is not quiescing means the server goes on. Without a
/// scoreboard, or under prefork (which marks nothing), always true.
pub fn server_draining(
    threaded: bool,
    me: u32,
    my_generation: i32,
    board: Option<(i32, &[Process])>,
) -> bool {
    let Some((running, procs)) = board.filter(|_| threaded) else { return true };
    if running != my_generation {
        return true;
    }
    !procs.iter().any(|p| p.pid > 0 && p.pid != me && !p.quiescing && p.generation == running)
}

/// Whether a child_stopping call drains: prefork runs the hook with graceful=0 for graceful
/// stops and restarts too (its child cannot tell them apart), so there every stop drains; an
/// ungraceful stop is still bounded by prefork's own escalation to SIGKILL.
pub fn drains(graceful: bool, threaded: bool) -> bool {
    graceful || !threaded
}

/// How often a retired child looks again whether the server is stopping after all.
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// httpd's child_stopping hook. A graceful stop starts a drain thread; its clock starts only
/// when httpd itself is stopping or restarting: a child the MPM merely retires for having too
/// many idle threads (its workers look idle while asynchronous tunnels run) keeps its tunnels
/// until they end, as a retired child keeps its synchronous ones, unless httpd later stops.
pub fn child_stopping(graceful: bool, graceful_shutdown_timeout_secs: i32) {
    if !graceful {
        stop_now();
        return;
    }
    let Some(grace) = grace(graceful_shutdown_timeout_secs) else { return };
    if state().watching.swap(true, Ordering::AcqRel) {
        return;
    }
    let server_draining = state().server_draining.get().copied().unwrap_or(|| true);
    let _ = crate::sys::spawn_thread("wst-drain".into(), move || {
        while !server_draining() {
            std::thread::sleep(WATCH_EVERY);
        }
        *lock(&state().drain_deadline) = Some(Instant::now() + grace);
        let polite = polite_after(grace);
        std::thread::sleep(polite);
        close_politely();
        std::thread::sleep(grace - polite);
        stop_now();
    });
}

/// Begins the polite end: relays learn of it through [`stop_fd`] and [`polite_until`].
fn close_politely() {
    state().closing.store(true, Ordering::Release);
    super::detached::close_politely();
    if let Some(fd) = state().event_fd.get() {
        signal(fd.as_raw_fd());
    }
}

/// During the polite end, when tunnels must be over; None when they must end now (or the
/// child is not stopping).
pub fn polite_until() -> Option<Instant> {
    if state().stopping.load(Ordering::Acquire) || !state().closing.load(Ordering::Acquire) {
        return None;
    }
    *lock(&state().drain_deadline)
}

/// Ends every tunnel of this process now.
pub fn stop_now() {
    state().stopping.store(true, Ordering::Release);
    super::detached::stop_all();
    if let Some(fd) = state().event_fd.get() {
        signal(fd.as_raw_fd());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_server_wide_stop_starts_the_drain_clock() {
        let me = 100;
        let at = |pid, generation, quiescing| Process { pid, generation, quiescing };
        let sibling = |generation, quiescing| at(200, generation, quiescing);
        assert!(server_draining(false, me, 1, Some((1, &[sibling(1, false)]))), "prefork: always");
        assert!(server_draining(true, me, 1, None), "no scoreboard: always");
        assert!(
            server_draining(true, me, 1, Some((2, &[sibling(2, false)]))),
            "a graceful restart: this child is old"
        );
        assert!(
            !server_draining(true, me, 1, Some((1, &[at(me, 1, true), sibling(1, false)]))),
            "a sibling goes on: only this child retires"
        );
        assert!(
            server_draining(
                true,
                me,
                1,
                Some((1, &[at(me, 1, true), sibling(1, true), at(0, 1, false)]))
            ),
            "every child quiesces"
        );
        assert!(
            server_draining(true, me, 1, Some((1, &[sibling(0, false)]))),
            "a sibling of another generation does not count"
        );
    }

    #[test]
    fn prefork_stops_always_drain() {
        assert!(drains(true, true) && drains(false, false) && drains(true, false));
        assert!(!drains(false, true));
    }

    #[test]
    fn the_drain_ends_before_httpds_deadline_and_after_our_own() {
        let s = Duration::from_secs;
        assert_eq!(drain_window(0, None), None, "no timeout anywhere: tunnels run until they end");
        assert_eq!(drain_window(3, None), Some(Duration::from_millis(2500)));
        assert_eq!(
            drain_window(0, Some(s(30))),
            Some(s(31)),
            "30 s of work, then the polite second"
        );
        assert_eq!(drain_window(0, Some(s(0))), Some(s(1)), "0: the polite end at once");
        assert_eq!(drain_window(10, Some(s(2))), Some(s(3)));
        assert_eq!(
            drain_window(10, Some(s(60))),
            Some(Duration::from_millis(9500)),
            "httpd's deadline wins"
        );
    }
}
