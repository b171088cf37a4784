//! Asynchronous tunnels (DESIGN §6): a tunnel whose ends are both plain sockets leaves the
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
use super::sys::{make_pipe, recv, send, set_nonblocking, splice, CHUNK, SPLICE_SMALL};
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

/// One direction, `src` to `dst`. Small reads go through a buffer that exists only while bytes
/// move (an idle tunnel holds none); once a read fills the whole buffer the direction is bulk
/// and switches to `splice(2)` through a pooled pipe (src → pipe → dst, no copy to user space),
/// back to plain reads when splices come back small (HAProxy's "splice-auto" idea: for a
/// 64-byte message two splices cost more than a read and a write).
/// Ends with a FIN to `dst` after `src`'s FIN and every byte before it.
async fn pump(
    src: &AsyncFd<OwnedFd>,
    dst: &AsyncFd<OwnedFd>,
    (src_name, dst_name): (&'static str, &'static str),
    moved: &AtomicU64,
    activity: Clock<'_>,
) -> Result<(), Failure> {
    let mut splicing = false;
    loop {
        let got = if splicing {
            splice_once(src, dst, (src_name, dst_name), moved, activity).await?
        } else {
            copy_once(src, dst, (src_name, dst_name), moved, activity).await?
        };
        match got {
            None => {
                // SAFETY: shutdown(2) on a socket we own.
                unsafe { libc::shutdown(dst.as_raw_fd(), libc::SHUT_WR) };
                return Ok(());
            }
            Some(n) => splicing = if splicing { n >= SPLICE_SMALL } else { n == CHUNK },
        }
    }
}

/// Reads what `src` has (waiting for it), writes it all to `dst`. None at EOF.
async fn copy_once(
    src: &AsyncFd<OwnedFd>,
    dst: &AsyncFd<OwnedFd>,
    (src_name, dst_name): (&'static str, &'static str),
    moved: &AtomicU64,
    activity: Clock<'_>,
) -> Result<Option<usize>, Failure> {
    let mut buf = Vec::new();
    let n = loop {
        let mut guard = src.readable().await.map_err(|e| (src_name, e))?;
        if buf.is_empty() {
            buf = vec![0u8; CHUNK];
        }
        match guard.try_io(|fd| recv(fd.as_raw_fd(), &mut buf)) {
            Ok(Ok(0)) => return Ok(None),
            Ok(Ok(n)) => break n,
            Ok(Err(e)) => return Err((src_name, e)),
            // Spurious readiness: no buffer is held while waiting.
            Err(_would_block) => buf = Vec::new(),
        }
    };
    activity.touch();
    let mut at = 0;
    while at < n {
        let mut guard = dst.writable().await.map_err(|e| (dst_name, e))?;
        match guard.try_io(|fd| send(fd.as_raw_fd(), &buf[at..n])) {
            Ok(Ok(w)) => {
                at += w;
                moved.fetch_add(w as u64, Ordering::Relaxed);
                activity.touch();
            }
            Ok(Err(e)) => return Err((dst_name, e)),
            Err(_would_block) => {}
        }
    }
    Ok(Some(n))
}

/// Splices what `src` has into a pooled pipe (waiting for it), then the pipe into `dst`.
/// None at EOF.
async fn splice_once(
    src: &AsyncFd<OwnedFd>,
    dst: &AsyncFd<OwnedFd>,
    (src_name, dst_name): (&'static str, &'static str),
    moved: &AtomicU64,
    activity: Clock<'_>,
) -> Result<Option<usize>, Failure> {
    let pipe = Pipe::get().map_err(|e| (src_name, e))?;
    let result = async {
        let n = loop {
            let mut guard = src.readable().await.map_err(|e| (src_name, e))?;
            match guard.try_io(|fd| splice(fd.as_raw_fd(), pipe.write.as_raw_fd(), CHUNK)) {
                Ok(Ok(0)) => return Ok(None),
                Ok(Ok(n)) => break n,
                Ok(Err(e)) => return Err((src_name, e)),
                Err(_would_block) => {}
            }
        };
        activity.touch();
        let mut left = n;
        while left > 0 {
            let mut guard = dst.writable().await.map_err(|e| (dst_name, e))?;
            match guard.try_io(|fd| splice(pipe.read.as_raw_fd(), fd.as_raw_fd(), left)) {
                Ok(Ok(w)) => {
                    left -= w;
                    moved.fetch_add(w as u64, Ordering::Relaxed);
                    activity.touch();
                }
                Ok(Err(e)) => return Err((dst_name, e)),
                Err(_would_block) => {}
            }
        }
        Ok(Some(n))
    }
    .await;
    // Only an empty pipe goes back to the pool; one with bytes stuck in it (a failed write)
    // is closed with them.
    if matches!(result, Ok(_)) {
        Pipe::put(pipe);
    }
    result
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
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (_tx, rx) = tokio::sync::watch::channel(false);
            rt.block_on(relay(OwnedFd::from(rc), OwnedFd::from(rb), idle, rx))
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
}
