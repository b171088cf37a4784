//! Asynchronous tunnels (docs/DESIGN.md §6): a tunnel leaves the request thread and is relayed
//! by one small tokio runtime per httpd child, so an idle WebSocket costs a task and two
//! registered sockets instead of a worker thread. Each end is a plain socket, or a connection
//! whose bytes pass through httpd's filters (TLS: a [`FilteredEnd`]; the client's was handed
//! over by the event MPM with its request suspended, a wss:// backend's held past it).
//!
//! The module owns raw sockets completely (its own `dup`s; httpd closes its copies without a
//! FIN). A filtered end's socket stays its connection's: the relay only polls it for
//! readiness (the bytes go through the filters), and the connection closes it at the end.
//! A tunnel is one task: the core (`core`) decides, the pump both raw drivers share
//! (`pump`) moves the bytes, and the task waits on the reactor's readiness of its two sockets,
//! one timer (moved only when a deadline comes earlier than the one set) and the child's
//! phase. Buffers and pipes exist only while bytes move: an idle tunnel holds none.
//!
//! Pure Rust (no httpd calls): the caller passes what it needs done at the end as a closure.

use super::core::{Core, End, Side, Tick};
use super::filters::{self, Filters, Readiness};
use super::pump::{pump, Io, Pipe};
use super::summary::Summary;
use crate::status::Meter;
use crate::sys::{recv, send, shutdown_write, splice};
use once_cell::sync::OnceCell;
use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};

/// What is reported when a detached tunnel ends.
#[derive(Debug)]
pub struct Report {
    /// Bytes moved each way over the tunnel's whole life (its core's, from the 101 on).
    pub client_to_backend: u64,
    pub backend_to_client: u64,
    pub ending: End,
    /// Why a WebSocket tunnel ended (None: not WebSocket).
    pub summary: Option<Summary>,
}

/// An end through httpd's connection filters (TLS: mod_ssl) on the runtime: the filters as
/// both drivers use them ([`Filters`]), and the life cycle of a connection that left its
/// request thread. Its socket's readiness comes from the tunnel's (lent) socket.
pub trait FilteredEnd: Filters + Send {
    /// Whether the thread that handed the connection over is done with it (see [`handed_over`]).
    fn let_go(&self) -> bool;
    /// Called once the wait for `let_go` is over, before the relay uses the end: from now on
    /// nothing below the end's filters may wait on its peer (every tunnel of the child shares
    /// this thread), and what only the handing thread needed may go (a suspended request is
    /// ended).
    fn handed_over(&mut self);
    /// Called once, when the tunnel ended and its end was reported: the connection's own
    /// record of it (an access log line).
    fn ended(&mut self);
    /// Called once, last: the caller's last word on the connection (closing and freeing it,
    /// without waiting on its peer).
    fn finish(self: Box<Self>);
}

/// The longest wait for [`FilteredEnd::let_go`], and how long after it the connection may be
/// freed at the earliest.
const LET_GO_MAX: Duration = Duration::from_secs(1);
const MIN_AGE: Duration = Duration::from_millis(100);

/// Waits until the thread that handed `f` over is done with it. The event MPM tells the module
/// it lets go of a connection (its suspend_connection hook) and still writes to the
/// connection's state right after the hook returns, on its own thread: the task must not use
/// the connection, let alone free its pool, under it. So it waits for the MPM's last sign
/// ([`FilteredEnd::let_go`], checked every millisecond, at most `LET_GO_MAX`), and the
/// connection is freed no earlier than `MIN_AGE` after. Returns when it may start.
async fn handed_over(f: &mut dyn FilteredEnd) -> Instant {
    let end = Instant::now() + LET_GO_MAX;
    while !f.let_go() && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    f.handed_over();
    Instant::now()
}

/// A socket the relay polls: its own copy, or the one a filtered end's connection lends for
/// its readiness (the connection closes it in [`FilteredEnd::finish`], after the relay has
/// let go of it: a copy would cost each idle tunnel one more descriptor).
pub enum Socket {
    Own(OwnedFd),
    Lent(RawFd),
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Socket::Own(fd) => fd.as_raw_fd(),
            Socket::Lent(fd) => *fd,
        }
    }
}

/// A tunnel to relay: its two sockets.
pub struct Tunnel {
    /// The client's socket; if its end is `filtered`, lent, and only its readiness is used.
    pub client: Socket,
    pub backend: Socket,
    /// The ends whose bytes pass through filters, by [`Side::index`].
    pub filtered: [Option<Box<dyn FilteredEnd>>; 2],
    /// Its core, as the request thread's relay left it (see [`Core::into_runtime`]); boxed
    /// once, so that the futures that carry it stay small.
    pub core: Box<Core>,
    /// The tunnel's place on the status board, given up when it ends.
    pub board: crate::status::Entry,
    /// Called once, on the runtime's thread, when the tunnel has ended and both sockets are closed.
    pub on_end: Box<dyn FnOnce(Report) + Send>,
    /// Called when one turn of the tunnel's task held the thread too long (see [`turn_limit`]).
    pub slow_turn: Box<dyn Fn(Duration) + Send>,
}

/// How long one turn of a tunnel's task (one poll) may hold the runtime's thread, which every
/// asynchronous tunnel of the child shares: nothing in a turn may wait on a peer. Checked
/// only when httpd's environment sets `WST_TURN_LIMIT_MS` (the test suite sets 100, and fails
/// a test whose server reported one): timing every turn costs two system calls.
fn turn_limit() -> Option<Duration> {
    *state().turn_limit.get_or_init(|| {
        std::env::var("WST_TURN_LIMIT_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
    })
}

/// `task`, each of whose turns is timed against `limit`: a turn over it is reported if the
/// thread waited in it (a voluntary context switch) or computed for that long; one the
/// machine merely took the CPU from is not.
fn timed(
    task: impl Future<Output = ()> + Send + 'static,
    limit: Duration,
    report: Box<dyn Fn(Duration) + Send>,
) -> impl Future<Output = ()> + Send {
    let mut task = Box::pin(task);
    poll_fn(move |cx| {
        let (t0, (cpu0, waits0)) = (Instant::now(), crate::sys::thread_usage());
        let r = task.as_mut().poll(cx);
        let took = t0.elapsed();
        if took > limit {
            let (cpu, waits) = crate::sys::thread_usage();
            if waits > waits0 || cpu - cpu0 >= limit {
                report(took);
            }
        }
        r
    })
}

/// The runtime's part of the child's state ([`crate::child::Child`]).
pub struct State {
    /// Started by the first hand-over (after fork: never in httpd's parent).
    relays: OnceCell<Vec<Relay>>,
    /// How many relay threads to start (`config::async_threads`), set in httpd's parent at
    /// post_config; 0 (never set, as in unit tests) means one.
    threads: AtomicUsize,
    /// Detached tunnels alive, until their ends are reported.
    live: AtomicUsize,
    /// Where the child's shutdown stands, for every task.
    phase: OnceCell<tokio::sync::watch::Sender<Phase>>,
    turn_limit: OnceCell<Option<Duration>>,
}

impl State {
    pub(crate) const fn new() -> State {
        State {
            relays: OnceCell::new(),
            threads: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            phase: OnceCell::new(),
            turn_limit: OnceCell::new(),
        }
    }
}

/// One relay thread of the child: its runtime, and the tunnels it relays (which only a
/// tunnel's start and end change: nothing per message).
struct Relay {
    runtime: Runtime,
    tunnels: AtomicUsize,
}

fn state() -> &'static State {
    &crate::child::CHILD.runtime
}

/// Where the child's shutdown stands, as tunnels see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Run,
    /// WebSocket tunnels end with a Close at their next frame boundaries.
    Polite,
    /// Every tunnel ends now.
    Stop,
}

type Phases = tokio::sync::watch::Receiver<Phase>;

fn stop_channel() -> &'static tokio::sync::watch::Sender<Phase> {
    state().phase.get_or_init(|| tokio::sync::watch::channel(Phase::Run).0)
}

/// Starts the polite end of every WebSocket tunnel (see `shutdown`).
pub fn close_politely() {
    stop_channel().send_if_modified(|p| {
        let run = *p == Phase::Run;
        if run {
            *p = Phase::Polite;
        }
        run
    });
}

/// Detached tunnels alive in this process.
pub fn live() -> usize {
    state().live.load(Ordering::Acquire)
}

/// Ends every detached tunnel (child shutdown). Idempotent.
pub fn stop_all() {
    stop_channel().send_replace(Phase::Stop);
}

/// Waits until no detached tunnel is left or the deadline `deadline()` says (asked again
/// each time: it may be set later) passes; true if none is left.
pub fn wait_until_none(deadline: impl Fn() -> Option<Instant>) -> bool {
    while live() > 0 {
        if deadline().is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The relay threads each child will run (`config::async_threads`), decided in httpd's parent.
pub fn set_threads(n: usize) {
    state().threads.store(n, Ordering::Relaxed);
}

/// The child's relay threads, started on first use (after fork: never in httpd's parent):
/// as many as `set_threads` said (`config::async_threads`), each a
/// current-thread runtime of its own, so that a tunnel's messages never cross threads and
/// its buffers come from its own thread's pool. Its shape was chosen by measurement
/// (docs/DESIGN.md §6); the feature `multi-thread-runtime` builds the other one (one
/// work-stealing runtime with as many workers), for comparing.
fn relays() -> io::Result<&'static [Relay]> {
    state()
        .relays
        .get_or_try_init(|| {
            let n = state().threads.load(Ordering::Relaxed).max(1);
            let relays = start_relays(n)?;
            crate::status::relay_threads(relays.len());
            Ok(relays)
        })
        .map(Vec::as_slice)
}

/// The relay thread with the fewest tunnels (the first of equals).
fn least_loaded(relays: &[Relay]) -> usize {
    let load: Vec<usize> = relays.iter().map(|r| r.tunnels.load(Ordering::Relaxed)).collect();
    least(&load)
}

/// The index of the smallest count (the first of equals; 0 for none).
fn least(counts: &[usize]) -> usize {
    counts.iter().enumerate().min_by_key(|(_, n)| **n).map_or(0, |(i, _)| i)
}

#[cfg(not(feature = "multi-thread-runtime"))]
type Runtime = current::Runtime;
#[cfg(not(feature = "multi-thread-runtime"))]
fn start_relays(n: usize) -> io::Result<Vec<Relay>> {
    (0..n)
        .map(|i| Ok(Relay { runtime: current::Runtime::start(i)?, tunnels: AtomicUsize::new(0) }))
        .collect()
}

#[cfg(feature = "multi-thread-runtime")]
type Runtime = tokio::runtime::Runtime;
#[cfg(feature = "multi-thread-runtime")]
fn start_relays(n: usize) -> io::Result<Vec<Relay>> {
    // Its threads start as it is built, and take none of httpd's signals (sys::spawn_thread).
    let runtime = crate::sys::with_signals_held(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .thread_name("wst-async")
            .enable_io()
            .enable_time()
            .build()
    })?;
    Ok(vec![Relay { runtime, tunnels: AtomicUsize::new(0) }])
}

/// A current-thread runtime driven by a thread of its own, which spawns reach through its
/// handle: no work-stealing scheduler for a single thread to pay for.
#[cfg(not(feature = "multi-thread-runtime"))]
mod current {
    use std::io;

    pub struct Runtime {
        handle: tokio::runtime::Handle,
    }

    impl Runtime {
        /// Relay thread `i` of the child, named `wst-async-<i>`.
        pub fn start(i: usize) -> io::Result<Runtime> {
            let rt =
                tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
            let handle = rt.handle().clone();
            crate::sys::spawn_thread(format!("wst-async-{i}"), move || {
                rt.block_on(std::future::pending::<()>())
            })?;
            Ok(Runtime { handle })
        }

        pub fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, f: F) {
            self.handle.spawn(f);
        }
    }
}

/// Starts the child's relay threads if they do not run yet. A caller that can still fall
/// back asks first: once they run, [`spawn`] cannot fail.
pub fn start() -> io::Result<()> {
    relays().map(|_| ())
}

/// Hands a tunnel to the relay thread with the fewest tunnels. On failure the tunnel comes
/// back untouched.
pub fn spawn(t: Tunnel) -> Result<(), Box<(Tunnel, io::Error)>> {
    let relays = match relays() {
        Ok(rs) => rs,
        Err(e) => return Err(Box::new((t, e))),
    };
    let i = least_loaded(relays);
    let rt = &relays[i].runtime;
    let live = Live::new(i, &relays[i].tunnels);
    let stop = stop_channel().subscribe();
    let slow_turn = t.slow_turn;
    let task = async move {
        let on_end = t.on_end;
        let meter = t.board.meter();
        let [mut client, mut backend] = t.filtered;
        let mut since = Instant::now();
        for f in [client.as_deref_mut(), backend.as_deref_mut()].into_iter().flatten() {
            since = handed_over(f).await;
        }
        let filtered = [client.as_deref_mut(), backend.as_deref_mut()];
        let (core, ending) = relay(t.client, filtered, t.backend, t.core, meter, stop).await;
        drop(t.board);
        let (c2b, b2c) = core.moved();
        let summary = core.summary(&ending);
        on_end(Report { client_to_backend: c2b, backend_to_client: b2c, ending, summary });
        if client.is_some() || backend.is_some() {
            for f in [client.as_deref_mut(), backend.as_deref_mut()].into_iter().flatten() {
                f.ended();
            }
            tokio::time::sleep_until((since + MIN_AGE).into()).await;
            // The backend goes back to mod_proxy before the client's connection (and the
            // request the backend was acquired for) is freed.
            for f in [backend, client].into_iter().flatten() {
                f.finish();
            }
        }
        drop(live);
    };
    match turn_limit() {
        // (The multi-threaded runtime's spawn returns a handle, which the tunnel never needs.)
        Some(limit) => {
            rt.spawn(timed(task, limit, slow_turn));
        }
        None => {
            rt.spawn(task);
        }
    }
    Ok(())
}

/// Counts a detached tunnel in [`live`] and on its relay thread until dropped, which is after
/// its end is reported: a child that waits for its tunnels before it exits must not exit
/// before their log lines and access-log records are written.
struct Live {
    thread: usize,
    on_thread: &'static AtomicUsize,
}

impl Live {
    fn new(thread: usize, on_thread: &'static AtomicUsize) -> Live {
        state().live.fetch_add(1, Ordering::AcqRel);
        on_thread.fetch_add(1, Ordering::Relaxed);
        crate::status::on_thread(thread, true);
        Live { thread, on_thread }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        crate::status::on_thread(self.thread, false);
        self.on_thread.fetch_sub(1, Ordering::Relaxed);
        state().live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Relays `core` (as a request thread's relay left it, or new) until both directions end, one
/// fails, a limit ends it or the child stops; returns the bytes moved over the core's life. On
/// return
/// both sockets are out of the reactor, and its own ones closed (lent ones are their
/// connections' to close).
pub(super) async fn relay(
    client: Socket,
    mut filtered: [Option<&mut (dyn FilteredEnd + '_)>; 2],
    backend: Socket,
    core: Box<Core>,
    meter: Meter,
    mut phase: Phases,
) -> (Box<Core>, End) {
    let fds = match (register(client), register(backend)) {
        (Ok(c), Ok(b)) => [c, b],
        (Err(e), _) => return (core, End::Failed(Side::Client, e)),
        (_, Err(e)) => return (core, End::Failed(Side::Backend, e)),
    };
    let mut tunnel =
        Task { core: core.into_runtime(), pipes: Default::default(), armed: None, meter };
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    // Whether the child's phase can still change (its sender lives).
    let mut watching = true;
    // A drain that began before the task did.
    let early = match *phase.borrow_and_update() {
        Phase::Run => None,
        Phase::Polite => tunnel.core.close_politely(None).err(),
        Phase::Stop => Some(End::Shutdown),
    };
    let end = if let Some(end) = early {
        end
    } else {
        loop {
            let changed = async {
                if watching {
                    phase.changed().await.is_ok()
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                biased;
                ok = changed => match *phase.borrow_and_update() {
                    _ if !ok => watching = false,
                    // The drain's deadline comes as Phase::Stop.
                    Phase::Polite => if let Err(end) = tunnel.core.close_politely(None) {
                        break end;
                    },
                    Phase::Stop => break End::Shutdown,
                    Phase::Run => {}
                },
                end = poll_fn(|cx| tunnel.drive(cx, &fds, &mut filtered, timer.as_mut())) => break end,
            }
        }
    };
    if let Some((c2b, b2c)) = tunnel.core.to_show(Tick::now(), true) {
        tunnel.meter.add(c2b, b2c);
    }
    (tunnel.core, end)
}

/// A tunnel's state in its task.
struct Task {
    core: Box<Core>,
    pipes: [Pipe; 2],
    /// When the timer is set to go off.
    armed: Option<Tick>,
    meter: Meter,
}

impl Task {
    /// Moves what can move; Ready when the tunnel is over. Pending leaves every readiness the
    /// core waits for registered with the reactor, and the timer set for its next deadline.
    fn drive(
        &mut self,
        cx: &mut Context<'_>,
        fds: &[AsyncFd<Socket>; 2],
        filtered: &mut [Option<&mut (dyn FilteredEnd + '_)>; 2],
        mut timer: Pin<&mut tokio::time::Sleep>,
    ) -> Poll<End> {
        loop {
            let now = Tick::now();
            let [client, backend] = filtered;
            let mut io = ReactorIo {
                ready: ReactorReady { fds, cx },
                filtered: [client.as_deref_mut(), backend.as_deref_mut()],
            };
            let mut more = false;
            for (d, pipe) in self.core.dirs.iter_mut().zip(self.pipes.iter_mut()) {
                match pump(d, pipe, &mut io, now) {
                    Ok(p) => more |= p.more,
                    Err(end) => return Poll::Ready(end),
                }
            }
            // What an end's filters still hold goes out as its socket takes it, whether or
            // not more comes behind it.
            for side in [Side::Client, Side::Backend] {
                if let Err(e) = io.push_held(side) {
                    return Poll::Ready(End::Failed(side, e));
                }
            }
            more |= self.core.advance(now);
            if let Some((c2b, b2c)) = self.core.to_show(now, false) {
                self.meter.add(c2b, b2c);
            }
            if let Some(end) = self.core.ended(now).or_else(|| self.core.expired(now)) {
                return Poll::Ready(end);
            }
            if more {
                // Its turn is over; the other tasks get theirs first.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // The timer moves only for an earlier deadline: a later one (the idle limit after
            // traffic) is found when it goes off, so busy tunnels never touch it.
            if let Some(d) = self.core.next_deadline(now) {
                if self.armed.map_or(true, |a| d < a) {
                    timer.as_mut().reset(tokio::time::Instant::now() + now.until(d));
                    self.armed = Some(d);
                }
            }
            if self.armed.is_some() && timer.as_mut().poll(cx).is_ready() {
                self.armed = None;
                continue;
            }
            return Poll::Pending;
        }
    }
}

fn register(fd: Socket) -> io::Result<AsyncFd<Socket>> {
    crate::sys::async_fd(fd)
}

/// The sockets' readiness as the reactor knows it. Asking about a side the reactor does not
/// know to be ready registers the task's waker.
struct ReactorReady<'a, 'b> {
    fds: &'a [AsyncFd<Socket>; 2],
    cx: &'a mut Context<'b>,
}

impl ReactorReady<'_, '_> {
    fn poll(&mut self, side: Side, write: bool) -> Poll<io::Result<AsyncFdReadyGuard<'_, Socket>>> {
        let fd = &self.fds[side.index()];
        if write {
            fd.poll_write_ready(self.cx)
        } else {
            fd.poll_read_ready(self.cx)
        }
    }
}

impl Readiness for ReactorReady<'_, '_> {
    fn ready(&mut self, side: Side, write: bool) -> io::Result<bool> {
        match self.poll(side, write) {
            Poll::Pending => Ok(false),
            Poll::Ready(r) => r.map(|_| true),
        }
    }

    fn not_ready(&mut self, side: Side, write: bool) {
        if let Poll::Ready(Ok(mut guard)) = self.poll(side, write) {
            guard.clear_ready();
        }
    }
}

/// The ends as the reactor sees them. A call on a raw side the reactor does not know to be
/// ready registers the task's waker and says `WouldBlock`; a call that would block or that
/// drained the socket (a short read) or filled it (a short write) clears the readiness. A
/// filtered end is used as [`filters`] says.
struct ReactorIo<'a, 'b, 'f> {
    ready: ReactorReady<'a, 'b>,
    filtered: [Option<&'a mut (dyn FilteredEnd + 'f)>; 2],
}

impl ReactorIo<'_, '_, '_> {
    fn attempt(
        &mut self,
        side: Side,
        write: bool,
        asked: usize,
        mut op: impl FnMut(RawFd) -> io::Result<usize>,
    ) -> io::Result<usize> {
        loop {
            let mut guard = match self.ready.poll(side, write) {
                Poll::Pending => return Err(io::ErrorKind::WouldBlock.into()),
                Poll::Ready(r) => r?,
            };
            match guard.try_io(|f| op(f.as_raw_fd())) {
                Ok(Ok(n)) => {
                    if n < asked {
                        guard.clear_ready();
                    }
                    return Ok(n);
                }
                Ok(Err(e)) => return Err(e),
                // Readiness cleared: ask again, which registers the waker (or finds new readiness).
                Err(_would_block) => {}
            }
        }
    }

    /// Writes what `side`'s filters hold, if it is filtered.
    fn push_held(&mut self, side: Side) -> io::Result<()> {
        match self.filtered[side.index()].as_deref_mut() {
            Some(f) => filters::push_held(f, &mut self.ready, side),
            None => Ok(()),
        }
    }
}

impl Io for ReactorIo<'_, '_, '_> {
    fn recv(&mut self, side: Side, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(f) = self.filtered[side.index()].as_deref_mut() {
            return filters::recv(f, &mut self.ready, side, buf);
        }
        let asked = buf.len();
        self.attempt(side, false, asked, |fd| recv(fd, buf))
    }

    fn send(&mut self, side: Side, bytes: &[u8]) -> io::Result<usize> {
        if let Some(f) = self.filtered[side.index()].as_deref_mut() {
            return filters::send(f, &mut self.ready, side, bytes);
        }
        self.attempt(side, true, bytes.len(), |fd| send(fd, bytes))
    }

    fn splice_in(&mut self, side: Side, to: RawFd, len: usize) -> io::Result<usize> {
        self.attempt(side, false, len, |fd| splice(fd, to, len))
    }

    fn splice_out(&mut self, from: RawFd, side: Side, len: usize) -> io::Result<usize> {
        self.attempt(side, true, len, |fd| splice(from, fd, len))
    }

    fn shutdown(&mut self, side: Side) -> io::Result<()> {
        if let Some(f) = self.filtered[side.index()].as_deref_mut() {
            return filters::shutdown(f, &mut self.ready, side);
        }
        shutdown_write(self.fds()[side.index()].as_raw_fd())
    }

    fn filtered(&self, side: Side) -> bool {
        self.filtered[side.index()].is_some()
    }
}

impl ReactorIo<'_, '_, '_> {
    fn fds(&self) -> &[AsyncFd<Socket>; 2] {
        self.ready.fds
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::core::Buffers;
    use crate::tunnel::limits::Timeouts;
    use wskit::sockets::pairs;

    #[test]
    fn a_tunnel_goes_to_the_relay_thread_with_the_fewest() {
        assert_eq!(least(&[3, 1, 2]), 1);
        assert_eq!(least(&[2, 2, 2]), 0, "the first of equals");
        assert_eq!(least(&[0]), 0);
        assert_eq!(least(&[]), 0);
    }

    /// An idle tunnel costs its task's state: no buffer may live in it (they are allocated
    /// while bytes move), or 10,000 idle WebSockets cost 10,000 of them.
    #[test]
    fn a_tunnels_task_holds_no_buffer() {
        let ((_c, rc), (rb, _b)) = pairs();
        let (_tx, rx) = tokio::sync::watch::channel(Phase::Run);
        let task = relay(
            Socket::Own(OwnedFd::from(rc)),
            [None, None],
            Socket::Own(OwnedFd::from(rb)),
            Box::new(Core::new(
                Timeouts::default(),
                Buffers::Share,
                Some(Default::default()),
                &[],
                Tick::now(),
            )),
            Meter::default(),
            rx,
        );
        let size = std::mem::size_of_val(&task);
        // 904 bytes when this was written: the core, two pipes, the timer and the phase.
        assert!(size < 2048, "the relay's future is {size} bytes");
    }
}
