//! Asynchronous tunnels (DESIGN §6): a tunnel whose ends are both plain sockets leaves the
//! request thread and is relayed by one small tokio runtime per httpd child, so an idle
//! WebSocket costs a task and two registered sockets instead of a worker thread.
//!
//! The module owns the sockets completely (its own `dup`s; httpd closes its copies without a
//! FIN). Buffers exist only while bytes move: an idle tunnel holds none. `splice(2)` moves the
//! bytes through a pipe taken from a small pool, so they never enter user space.
//!
//! Pure Rust (no httpd calls): the caller passes what it needs done at the end as a closure.

use once_cell::sync::OnceCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
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
    /// The httpd child is stopping.
    Shutdown,
}

/// What is reported when a detached tunnel ends.
#[derive(Debug)]
pub struct Report {
    pub client_to_backend: u64,
    pub backend_to_client: u64,
    pub lifetime: Duration,
    pub ending: Ending,
}

/// A tunnel to relay: the module's own copies of both sockets.
pub struct Tunnel {
    pub client: OwnedFd,
    pub backend: OwnedFd,
    pub idle: Option<Duration>,
    /// Called once, on the runtime's thread, when the tunnel has ended and both sockets are closed.
    pub on_end: Box<dyn FnOnce(Report) + Send>,
}

static RUNTIME: OnceCell<tokio::runtime::Runtime> = OnceCell::new();
static LIVE: AtomicUsize = AtomicUsize::new(0);
static STOP: OnceCell<tokio::sync::watch::Sender<bool>> = OnceCell::new();

fn stop_channel() -> &'static tokio::sync::watch::Sender<bool> {
    STOP.get_or_init(|| tokio::sync::watch::channel(false).0)
}

/// Detached tunnels alive in this process.
pub fn live() -> usize {
    LIVE.load(Ordering::Acquire)
}

/// Ends every detached tunnel (child shutdown). Idempotent.
pub fn stop_all() {
    stop_channel().send_replace(true);
}

/// Waits until no detached tunnel is left or `deadline` passes; true if none is left.
pub fn wait_until_none(deadline: Option<Instant>) -> bool {
    while live() > 0 {
        if deadline.is_some_and(|d| Instant::now() >= d) {
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
    LIVE.fetch_add(1, Ordering::AcqRel);
    let stop = stop_channel().subscribe();
    rt.spawn(async move {
        let started = Instant::now();
        let on_end = t.on_end;
        let (c2b, b2c, ending) = relay(t.client, t.backend, t.idle, stop).await;
        LIVE.fetch_sub(1, Ordering::AcqRel);
        on_end(Report { client_to_backend: c2b, backend_to_client: b2c, lifetime: started.elapsed(), ending });
    });
    Ok(())
}

/// Relays until both directions end, one fails, the tunnel idles out or the child stops.
/// Both sockets are closed on return.
async fn relay(client: OwnedFd, backend: OwnedFd, idle: Option<Duration>, mut stop: tokio::sync::watch::Receiver<bool>) -> (u64, u64, Ending) {
    let (c, b) = match (register(client), register(backend)) {
        (Ok(c), Ok(b)) => (c, b),
        (Err(e), _) => return (0, 0, Ending::Failed("client", e)),
        (_, Err(e)) => return (0, 0, Ending::Failed("backend", e)),
    };
    // Last activity, as microseconds since `start` (atomics: the task may change threads).
    let start = Instant::now();
    let activity = AtomicU64::new(0);
    let (c2b, b2c) = (AtomicU64::new(0), AtomicU64::new(0));
    let both = async {
        // A failure in one direction ends the other too.
        let (c2b, b2c, activity) = (&c2b, &b2c, Clock { start, last: &activity });
        match tokio::try_join!(pump(&c, &b, ("client", "backend"), c2b, activity), pump(&b, &c, ("backend", "client"), b2c, activity)) {
            Ok(_) => Ending::Closed,
            Err((side, e)) => Ending::Failed(side, e),
        }
    };
    let idle_watch = async {
        loop {
            let Some(d) = idle else { return std::future::pending::<()>().await };
            let due = start + Duration::from_micros(activity.load(Ordering::Relaxed)) + d;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due.into()).await;
        }
    };
    let stopped = async {
        while !*stop.borrow_and_update() {
            if stop.changed().await.is_err() {
                return std::future::pending::<()>().await;
            }
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

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own, with integer arguments.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

type Failure = (&'static str, io::Error);

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

/// One direction, `src` to `dst`, with `splice(2)` through a pooled pipe: src → pipe → dst.
/// Ends with a FIN to `dst` after `src`'s FIN and every byte before it.
async fn pump(
    src: &AsyncFd<OwnedFd>,
    dst: &AsyncFd<OwnedFd>,
    (src_name, dst_name): (&'static str, &'static str),
    moved: &AtomicU64,
    activity: Clock<'_>,
) -> Result<(), Failure> {
    let mut pipe: Option<Pipe> = None;
    let mut in_pipe = 0usize;
    loop {
        // Drain the pipe into dst.
        while in_pipe > 0 {
            let p = pipe.as_ref().expect("bytes are in a pipe");
            let mut guard = dst.writable().await.map_err(|e| (dst_name, e))?;
            match guard.try_io(|fd| splice(p.read.as_raw_fd(), fd.as_raw_fd(), in_pipe)) {
                Ok(Ok(n)) => {
                    in_pipe -= n;
                    moved.fetch_add(n as u64, Ordering::Relaxed);
                    activity.touch();
                }
                Ok(Err(e)) => return Err((dst_name, e)),
                Err(_would_block) => continue,
            }
        }
        // An empty pipe goes back to the pool: idle tunnels hold none.
        if let Some(p) = pipe.take() {
            Pipe::put(p);
        }
        let mut guard = src.readable().await.map_err(|e| (src_name, e))?;
        let p = match Pipe::get() {
            Ok(p) => p,
            Err(e) => return Err((src_name, e)),
        };
        match guard.try_io(|fd| splice(fd.as_raw_fd(), p.write.as_raw_fd(), PIPE_CHUNK)) {
            Ok(Ok(0)) => {
                Pipe::put(p);
                // SAFETY: shutdown(2) on a socket we own.
                unsafe { libc::shutdown(dst.as_raw_fd(), libc::SHUT_WR) };
                return Ok(());
            }
            Ok(Ok(n)) => {
                in_pipe = n;
                pipe = Some(p);
                activity.touch();
            }
            Ok(Err(e)) => {
                Pipe::put(p);
                return Err((src_name, e));
            }
            Err(_would_block) => Pipe::put(p),
        }
    }
}

/// How much one splice moves at most: a default pipe's capacity.
const PIPE_CHUNK: usize = 64 * 1024;

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: splice(2) between fds we own; no offsets (sockets and pipes).
    let n = unsafe {
        libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK)
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
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
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two new fds into the array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both fds were just created and are owned by nobody else.
        Ok(unsafe { Pipe { read: OwnedFd::from_raw_fd(fds[0]), write: OwnedFd::from_raw_fd(fds[1]) } })
    }

    fn put(p: Pipe) {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL_MAX {
            pool.push(p);
        }
    }
}
