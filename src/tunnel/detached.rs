//! Asynchronous tunnels (docs/DESIGN.md §6): a tunnel whose ends are both plain sockets leaves the
//! request thread and is relayed by one small tokio runtime per httpd child, so an idle
//! WebSocket costs a task and two registered sockets instead of a worker thread.
//!
//! The module owns the sockets completely (its own `dup`s; httpd closes its copies without a
//! FIN). Buffers exist only while bytes move: an idle tunnel holds none. Bulk transfers move
//! by `splice(2)` through a pipe taken from a small pool, so they never enter user space.
//!
//! Pure Rust (no httpd calls): the caller passes what it needs done at the end as a closure.

use once_cell::sync::OnceCell;
use std::io;
use super::bulk::{self, Read};
use super::sys::{going_away, make_pipe, recv, send, set_nonblocking, splice};
use crate::frames::Frames;
use crate::status::Meter;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// How a detached tunnel ended.
#[derive(Debug)]
pub enum Ending {
    /// Both directions finished with a FIN.
    Closed,
    /// A read or write failed (reset, broken pipe, ...): "client" or "backend" and the error.
    Failed(&'static str, io::Error),
    /// No byte either way for the idle timeout.
    Idle,
    /// Bytes waited that long to be written to this side ("client" or "backend"), which took none.
    Stalled(&'static str, Duration),
    /// The httpd child is stopping.
    Shutdown,
    /// The httpd child is stopping; both sides got a WebSocket Close (1001, Going Away) at a
    /// frame boundary and answered with theirs.
    GoingAway,
}

/// What is reported when a detached tunnel ends.
#[derive(Debug)]
pub struct Report {
    pub client_to_backend: u64,
    pub backend_to_client: u64,
    pub ending: Ending,
}

/// A tunnel to relay: the module's own copies of both sockets.
pub struct Tunnel {
    pub client: OwnedFd,
    pub backend: OwnedFd,
    pub timeouts: super::limits::Timeouts,
    /// Where each direction's WebSocket frames stand (client to backend, backend to client);
    /// None for other protocols.
    pub frames: Option<(Frames, Frames)>,
    /// The tunnel's place on the status board, given up when it ends.
    pub board: crate::status::Tunnel,
    /// Called once, on the runtime's thread, when the tunnel has ended and both sockets are closed.
    pub on_end: Box<dyn FnOnce(Report) + Send>,
}

static RUNTIME: OnceCell<tokio::runtime::Runtime> = OnceCell::new();
static LIVE: AtomicUsize = AtomicUsize::new(0);
static STOP: OnceCell<tokio::sync::watch::Sender<Phase>> = OnceCell::new();

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
    STOP.get_or_init(|| tokio::sync::watch::channel(Phase::Run).0)
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
    LIVE.load(Ordering::Acquire)
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

/// The child's runtime, started on first use (after fork: never in httpd's parent).
fn runtime() -> io::Result<&'static tokio::runtime::Runtime> {
    RUNTIME.get_or_try_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("wst-async")
            .enable_io()
            .enable_time()
            .build()
    })
}

/// Hands a tunnel to the runtime. On failure the tunnel comes back untouched.
pub fn spawn(t: Tunnel) -> Result<(), (Tunnel, io::Error)> {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return Err((t, e)),
    };
    let live = Live::new();
    let stop = stop_channel().subscribe();
    rt.spawn(async move {
        let on_end = t.on_end;
        let meter = t.board.meter();
        let (c2b, b2c, ending) = relay(t.client, t.backend, t.timeouts, t.frames, meter, stop).await;
        drop(t.board);
        on_end(Report { client_to_backend: c2b, backend_to_client: b2c, ending });
        drop(live);
    });
    Ok(())
}

/// Counts a detached tunnel in [`live`] until dropped, which is after its end is reported: a
/// child that waits for its tunnels before it exits must not exit before their log lines and
/// access-log records are written.
struct Live;

impl Live {
    fn new() -> Live {
        LIVE.fetch_add(1, Ordering::AcqRel);
        Live
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Relays until both directions end, one fails, the tunnel idles out or the child stops.
/// Both sockets are closed on return.
async fn relay(
    client: OwnedFd,
    backend: OwnedFd,
    timeouts: super::limits::Timeouts,
    frames: Option<(Frames, Frames)>,
    meter: Meter,
    mut phase: Phases,
) -> (u64, u64, Ending) {
    let (c, b) = match (register(client), register(backend)) {
        (Ok(c), Ok(b)) => (c, b),
        (Err(e), _) => return (0, 0, Ending::Failed("client", e)),
        (_, Err(e)) => return (0, 0, Ending::Failed("backend", e)),
    };
    // Last activity, as microseconds since `start` (atomics: the task may change threads).
    let start = Instant::now();
    let activity = AtomicU64::new(0);
    let (c2b, b2c) = (AtomicU64::new(0), AtomicU64::new(0));
    let (cf, bf) = frames.map_or((None, None), |(c, b)| (Some(c), Some(b)));
    let (p1, p2) = (phase.clone(), phase.clone());
    let both = async {
        let clock = Clock { start, last: &activity };
        let stall = timeouts.write_stall;
        let to_backend = Direction { src: &c, dst: &b, names: ("client", "backend"), moved: &c2b, shown: meter.client_to_backend, activity: clock, stall };
        let to_client = Direction { src: &b, dst: &c, names: ("backend", "client"), moved: &b2c, shown: meter.backend_to_client, activity: clock, stall };
        // A failure in one direction ends the other too.
        match tokio::try_join!(to_backend.pump(cf, p1), to_client.pump(bf, p2)) {
            Ok((true, true)) => Ending::GoingAway,
            Ok(_) => Ending::Closed,
            Err((side, e)) if e.get_ref().is_some_and(|x| x.is::<WriteStall>()) => Ending::Stalled(side, timeouts.write_stall.unwrap_or_default()),
            Err((side, e)) => Ending::Failed(side, e),
        }
    };
    let idle_watch = async {
        loop {
            let Some(d) = timeouts.idle else { return std::future::pending::<()>().await };
            let due = start + Duration::from_micros(activity.load(Ordering::Relaxed)) + d;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due.into()).await;
        }
    };
    let stopped = async {
        if phase.wait_for(|p| *p == Phase::Stop).await.is_err() {
            std::future::pending::<()>().await
        }
    };
    let ending = tokio::select! {
        e = both => e,
        _ = idle_watch => Ending::Idle,
        _ = stopped => Ending::Shutdown,
    };
    (c2b.load(Ordering::Relaxed), b2c.load(Ordering::Relaxed), ending)
}

fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    set_nonblocking(fd.as_raw_fd())?;
    // SAFETY: an OwnedFd always returns the same open fd until it is dropped with the AsyncFd.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE) }.map_err(|e| e.into())
}

type Failure = (&'static str, io::Error);

/// A write waited longer than the write-stall limit (carried in an io::Error, told apart from
/// the socket's own errors by its type).
#[derive(Debug)]
struct WriteStall;

impl std::fmt::Display for WriteStall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("write stalled")
    }
}

impl std::error::Error for WriteStall {}

/// When a tunnel last moved a byte.
#[derive(Clone, Copy)]
struct Clock<'a> {
    start: Instant,
    last: &'a AtomicU64,
}

impl Clock<'_> {
    fn touch(&self) {
        self.last.store(self.start.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
}

/// What one read-and-write step did.
enum Step {
    Moved(usize),
    Eof,
    /// The child's drain began while waiting for bytes.
    Woken,
}

/// One direction of a tunnel, `src` to `dst`.
struct Direction<'a> {
    src: &'a AsyncFd<OwnedFd>,
    dst: &'a AsyncFd<OwnedFd>,
    names: (&'static str, &'static str),
    moved: &'a AtomicU64,
    /// The status board's counter for this direction.
    shown: &'static AtomicU64,
    activity: Clock<'a>,
    /// How long bytes may wait for `dst` to take them.
    stall: Option<Duration>,
}

impl Direction<'_> {
    /// Relays this direction. Small reads go through a buffer that exists only while bytes
    /// move (an idle tunnel holds none); bulk transfers are spliced through a pooled pipe
    /// (src → pipe → dst, no copy to user space); when which: `bulk`. With `frames`
    /// (WebSocket), splices stay within payloads, so every header is seen.
    ///
    /// Ends with a FIN to `dst` after `src`'s FIN and every byte before it; or, in the child's
    /// polite drain, at the next frame boundary with a Close (1001) and a FIN to `dst`, once
    /// `src` answered with its own Close (returns true then).
    async fn pump(&self, mut frames: Option<Frames>, mut phase: Phases) -> Result<bool, Failure> {
        let mut splicing = false;
        let mut closing = false;
        loop {
            let politeness = frames.as_ref().filter(|f| !f.lost());
            closing = closing || (politeness.is_some() && *phase.borrow() == Phase::Polite);
            if let Some(f) = politeness.filter(|f| closing && (f.at_boundary() || f.close_seen())) {
                if !f.close_seen() {
                    self.write_all(&going_away(self.names.1 == "backend")).await?;
                }
                self.shut_dst();
                self.discard(frames.as_mut().expect("closing needs frames")).await;
                return Ok(true);
            }
            let plan = bulk::next(frames.as_ref(), splicing, closing);
            let at_header = frames.as_ref().is_some_and(|f| f.payload_left() == 0);
            let step = match plan {
                Read::Splice(limit) => {
                    let step = self.splice_once(limit).await?;
                    if let (Some(f), Step::Moved(n)) = (frames.as_mut(), &step) {
                        f.skip(*n);
                    }
                    step
                }
                Read::Copy(limit) => {
                    let wake = (politeness.is_some() && !closing).then_some(&mut phase);
                    self.copy_once(limit, frames.as_mut(), wake).await?
                }
            };
            match step {
                Step::Eof => {
                    self.shut_dst();
                    return Ok(false);
                }
                Step::Moved(n) => splicing = bulk::after(frames.as_ref(), splicing, plan, n, at_header),
                Step::Woken => {}
            }
        }
    }

    fn count(&self, n: usize) {
        self.moved.fetch_add(n as u64, Ordering::Relaxed);
        self.shown.fetch_add(n as u64, Ordering::Relaxed);
        self.activity.touch();
    }

    fn shut_dst(&self) {
        // SAFETY: shutdown(2) on a socket we own.
        unsafe { libc::shutdown(self.dst.as_raw_fd(), libc::SHUT_WR) };
    }

    /// After its Close went out, reads `src` (so closing it resets nothing) and drops the
    /// bytes until `src`'s own Close, its FIN or an error.
    async fn discard(&self, frames: &mut Frames) {
        // On the heap: an array here would be part of every tunnel's task, idle or not.
        let mut scratch = vec![0u8; 4096];
        while !frames.close_seen() {
            let Ok(mut guard) = self.src.readable().await else { return };
            match guard.try_io(|fd| recv(fd.as_raw_fd(), &mut scratch)) {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(n)) => frames.feed(&scratch[..n]),
                Err(_would_block) => {}
            }
        }
    }

    /// Waits until `dst` may take bytes, at most the write-stall limit. A socket already
    /// known writable answers at once (no timer is armed then).
    async fn writable(&self) -> Result<tokio::io::unix::AsyncFdReadyGuard<'_, OwnedFd>, Failure> {
        let ready = self.dst.writable();
        let guard = match self.stall {
            None => ready.await,
            Some(stall) => match tokio::time::timeout(stall, ready).await {
                Ok(g) => g,
                Err(_) => return Err((self.names.1, io::Error::other(WriteStall))),
            },
        };
        guard.map_err(|e| (self.names.1, e))
    }

    async fn write_all(&self, mut bytes: &[u8]) -> Result<(), Failure> {
        while !bytes.is_empty() {
            let mut guard = self.writable().await?;
            match guard.try_io(|fd| send(fd.as_raw_fd(), bytes)) {
                Ok(Ok(w)) => {
                    bytes = &bytes[w..];
                    self.count(w);
                }
                Ok(Err(e)) => return Err((self.names.1, e)),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }

    /// Reads up to `limit` bytes of what `src` has (waiting for it, or for `wake` to change),
    /// writes them all to `dst`.
    async fn copy_once(&self, limit: usize, frames: Option<&mut Frames>, mut wake: Option<&mut Phases>) -> Result<Step, Failure> {
        let mut buf = Vec::new();
        let n = loop {
            let readable = self.src.readable();
            let mut guard = match wake.as_mut() {
                None => readable.await,
                Some(w) => tokio::select! {
                    g = readable => g,
                    _ = w.changed() => return Ok(Step::Woken),
                },
            }
            .map_err(|e| (self.names.0, e))?;
            if buf.is_empty() {
                buf = vec![0u8; limit];
            }
            match guard.try_io(|fd| recv(fd.as_raw_fd(), &mut buf)) {
                Ok(Ok(0)) => return Ok(Step::Eof),
                Ok(Ok(n)) => break n,
                Ok(Err(e)) => return Err((self.names.0, e)),
                // Spurious readiness: no buffer is held while waiting.
                Err(_would_block) => buf = Vec::new(),
            }
        };
        if let Some(f) = frames {
            f.feed(&buf[..n]);
        }
        self.activity.touch();
        self.write_all(&buf[..n]).await?;
        Ok(Step::Moved(n))
    }

    /// Splices up to `limit` bytes of what `src` has into a pooled pipe (waiting for it), then
    /// the pipe into `dst`.
    async fn splice_once(&self, limit: usize) -> Result<Step, Failure> {
        let (src_name, dst_name) = self.names;
        let pipe = Pipe::get().map_err(|e| (src_name, e))?;
        let result = async {
            let n = loop {
                let mut guard = self.src.readable().await.map_err(|e| (src_name, e))?;
                match guard.try_io(|fd| splice(fd.as_raw_fd(), pipe.write.as_raw_fd(), limit)) {
                    Ok(Ok(0)) => return Ok(Step::Eof),
                    Ok(Ok(n)) => break n,
                    Ok(Err(e)) => return Err((src_name, e)),
                    Err(_would_block) => {}
                }
            };
            self.activity.touch();
            let mut left = n;
            while left > 0 {
                let mut guard = self.writable().await?;
                match guard.try_io(|fd| splice(pipe.read.as_raw_fd(), fd.as_raw_fd(), left)) {
                    Ok(Ok(w)) => {
                        left -= w;
                        self.count(w);
                    }
                    Ok(Err(e)) => return Err((dst_name, e)),
                    Err(_would_block) => {}
                }
            }
            Ok(Step::Moved(n))
        }
        .await;
        // Only an empty pipe goes back to the pool; one with bytes stuck in it (a failed write)
        // is closed with them.
        if result.is_ok() {
            Pipe::put(pipe);
        }
        result
    }
}

/// A pipe for splicing; empty whenever it is in the pool.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

static POOL: Mutex<Vec<Pipe>> = Mutex::new(Vec::new());
/// Pipes kept for reuse; more are closed when returned.
const POOL_MAX: usize = 64;

impl Pipe {
    fn get() -> io::Result<Pipe> {
        if let Some(p) = POOL.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(p);
        }
        let (read, write) = make_pipe()?;
        Ok(Pipe { read, write })
    }

    fn put(p: Pipe) {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL_MAX {
            pool.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::limits::Timeouts;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};

    /// (test's client end, relay's client end), (relay's backend end, test's backend end).
    fn pairs() -> ((TcpStream, TcpStream), (TcpStream, TcpStream)) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mk = || {
            let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (b, _) = l.accept().unwrap();
            (a, b)
        };
        (mk(), mk())
    }

    fn start(rc: TcpStream, rb: TcpStream, idle: Option<Duration>) -> std::thread::JoinHandle<(u64, u64, Ending)> {
        start_with(rc, rb, Timeouts { idle, write_stall: None })
    }

    fn start_with(rc: TcpStream, rb: TcpStream, t: Timeouts) -> std::thread::JoinHandle<(u64, u64, Ending)> {
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (_tx, rx) = tokio::sync::watch::channel(Phase::Run);
            rt.block_on(relay(OwnedFd::from(rc), OwnedFd::from(rb), t, None, Meter::default(), rx))
        })
    }

    #[test]
    fn bulk_both_ways_at_once_then_half_closes() {
        let ((mut c, rc), (rb, mut b)) = pairs();
        let h = start(rc, rb, None);
        const N: usize = 8 << 20;
        let data: Vec<u8> = (0..N).map(|i| (i % 251) as u8).collect();
        // Both peers write 8 MiB before reading anything: only back-pressure-correct relaying
        // with bulk (splice) and small (copy) paths finishes.
        let (mut c2, mut b2) = (c.try_clone().unwrap(), b.try_clone().unwrap());
        let d1 = data.clone();
        let w1 = std::thread::spawn(move || {
            c2.write_all(&d1).unwrap();
            c2.shutdown(Shutdown::Write).unwrap();
        });
        let d2 = data.clone();
        let w2 = std::thread::spawn(move || {
            b2.write_all(&d2).unwrap();
            b2.shutdown(Shutdown::Write).unwrap();
        });
        let mut at_b = Vec::new();
        let mut at_c = Vec::new();
        let r = std::thread::spawn(move || {
            b.read_to_end(&mut at_b).unwrap();
            at_b
        });
        c.read_to_end(&mut at_c).unwrap();
        let at_b = r.join().unwrap();
        w1.join().unwrap();
        w2.join().unwrap();
        assert!(at_b == data && at_c == data, "bytes lost or reordered");
        let (c2b, b2c, end) = h.join().unwrap();
        assert_eq!((c2b, b2c), (N as u64, N as u64));
        assert!(matches!(end, Ending::Closed), "{end:?}");
    }

    #[test]
    fn a_polite_drain_closes_each_side_with_1001_at_the_next_frame_boundary() {
        let ((mut cl, rc), (rb, mut be)) = pairs();
        let (tx, rx) = tokio::sync::watch::channel(Phase::Run);
        let h = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(relay(OwnedFd::from(rc), OwnedFd::from(rb), Timeouts::default(), Some(Default::default()), Meter::default(), rx))
        });
        // A masked 70,000-byte binary frame: big enough to be spliced, half of it in flight.
        let mut frame = vec![0x82, 0x80 | 127];
        frame.extend_from_slice(&70_000u64.to_be_bytes());
        frame.extend_from_slice(&[9, 8, 7, 6]);
        frame.extend((0..70_000).map(|i| (i % 251) as u8));
        let half = frame.len() / 2;
        cl.write_all(&frame[..half]).unwrap();
        let mut got = vec![0u8; half];
        be.read_exact(&mut got).unwrap();
        tx.send_replace(Phase::Polite);
        let read_all = |s: &mut TcpStream| {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut v = Vec::new();
            s.read_to_end(&mut v).unwrap();
            v
        };
        assert_eq!(read_all(&mut cl), crate::frames::close_frame(1001, None));
        std::thread::sleep(Duration::from_millis(100));
        cl.write_all(&frame[half..]).unwrap();
        let rest = read_all(&mut be);
        let (tail, close) = rest.split_at(frame.len() - half);
        assert!(tail == &frame[half..], "the frame in flight arrives whole");
        assert_eq!((close.len(), close[0], close[1]), (8, 0x88, 0x82));
        assert_eq!([close[6] ^ close[2], close[7] ^ close[3]], [0x03, 0xe9]);
        cl.write_all(&crate::frames::close_frame(1001, Some([1, 2, 3, 4]))).unwrap();
        be.write_all(&crate::frames::close_frame(1001, None)).unwrap();
        let (_, _, end) = h.join().unwrap();
        assert!(matches!(end, Ending::GoingAway), "{end:?}");
    }

    /// An idle tunnel costs its task's state: no buffer may live in it (they are allocated
    /// while bytes move), or 10,000 idle WebSockets cost 10,000 of them.
    #[test]
    fn a_tunnels_task_holds_no_buffer() {
        let ((_c, rc), (rb, _b)) = pairs();
        let (_tx, rx) = tokio::sync::watch::channel(Phase::Run);
        let task = relay(OwnedFd::from(rc), OwnedFd::from(rb), Timeouts::default(), Some(Default::default()), Meter::default(), rx);
        let size = std::mem::size_of_val(&task);
        assert!(size < 4096, "the relay's future is {size} bytes");
    }

    #[test]
    fn small_messages_and_idle_timeout() {
        let ((mut c, rc), (rb, mut b)) = pairs();
        let h = start(rc, rb, Some(Duration::from_millis(300)));
        for i in 0..100u8 {
            c.write_all(&[i; 64]).unwrap();
            let mut got = [0u8; 64];
            b.read_exact(&mut got).unwrap();
            b.write_all(&got).unwrap();
            c.read_exact(&mut got).unwrap();
            assert_eq!(got, [i; 64]);
        }
        let t0 = Instant::now();
        let (_, _, end) = h.join().unwrap();
        assert!(matches!(end, Ending::Idle), "{end:?}");
        assert!(t0.elapsed() >= Duration::from_millis(250));
        let mut rest = Vec::new();
        assert_eq!(c.read_to_end(&mut rest).unwrap_or(0), 0, "both sockets closed");
    }

    /// A side that takes no bytes stalls its writer, and after the write-stall limit the
    /// tunnel ends (as the request thread's relay ends it), whatever the other side sends.
    #[test]
    fn a_reader_that_stops_reading_ends_the_tunnel_after_the_write_stall() {
        let ((c, rc), (rb, mut b)) = pairs();
        let t = Timeouts { idle: None, write_stall: Some(Duration::from_millis(400)) };
        let h = start_with(rc, rb, t);
        // The backend floods; the client never reads.
        let flood = std::thread::spawn(move || {
            let block = vec![7u8; 65536];
            let mut sent = 0usize;
            while b.write_all(&block).is_ok() {
                sent += block.len();
            }
            sent
        });
        let t0 = Instant::now();
        let (_, b2c, end) = h.join().unwrap();
        assert!(matches!(end, Ending::Stalled("client", d) if d == Duration::from_millis(400)), "{end:?}");
        assert!(t0.elapsed() >= Duration::from_millis(350) && t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        assert!(b2c < 64 << 20, "{b2c} bytes went into a stalled tunnel");
        drop(c);
        let sent = flood.join().unwrap();
        assert!(sent < 64 << 20, "{sent}");
    }
}
