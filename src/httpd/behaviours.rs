//! What a suspended TLS client's tunnel relies on of httpd beyond its API, checked as a behaviour
//! (docs/DESIGN.md §6.3): at startup, core's output filter called with no brigade writes what
//! it holds without blocking (the event MPM's own write completion calls it so; the relay pushes
//! a suspended connection's held bytes that way); at the first hand-over of a child, the event
//! MPM lets go of a suspended connection (`Suspended::let_go`). Where either fails, TLS clients'
//! tunnels stay synchronous and the error log says why. `tests/httpd_sources.rs` checks both in
//! the sources of the releases the suite runs.

use super::log::{ERR, INFO};
use super::nonblocking::NonBlocking;
use super::scratch::Scratch;
use super::{Connection, Server};
use crate::slog;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether TLS clients' connections may be suspended and handed over.
static SUSPEND: AtomicBool = AtomicBool::new(true);

/// TLS clients may leave their request threads (the event MPM, and both behaviours hold).
pub fn may_suspend() -> bool {
    SUSPEND.load(Ordering::Relaxed) && super::mpm::is_async()
}

/// The event MPM did not let go of a suspended connection within a second: from now on this
/// child keeps TLS clients' tunnels on their request threads.
pub fn mpm_kept_a_suspended_connection(s: Server) {
    if SUSPEND.swap(false, Ordering::Relaxed) {
        slog!(
            s,
            ERR,
            "WST02024: the MPM did not let go of a suspended connection within a second (httpd 2.4's event MPM \
             clears its scoreboard handle right after the suspend_connection hooks): this child keeps TLS clients' \
             tunnels on their request threads from now on"
        );
    }
}

/// Startup: tries core's output filter on a loopback connection httpd makes. Called in the
/// parent, on the configuration pass that starts the children (they inherit the verdict);
/// httpd's first pass only reads the configuration.
pub fn check(s: Server) {
    if !super::mpm::is_async() || !super::mpm::final_config_pass() {
        return;
    }
    let verdict = core_pushes_held_bytes(s);
    SUSPEND.store(verdict.is_ok(), Ordering::Relaxed);
    match verdict {
        Ok(n) => slog!(
            s,
            INFO,
            "WST00010: core's output filter, called with no brigade, wrote what it held without waiting (all {n} \
             bytes of a connection whose socket was full arrived): TLS clients' tunnels may leave their request threads"
        ),
        Err(why) => slog!(
            s,
            ERR,
            "WST00010: core's output filter does not write held bytes when called with no brigade ({why}): \
             TLS clients' tunnels stay on their request threads"
        ),
    }
}

/// Fills a loopback connection's socket through its output filters until core holds bytes,
/// then reads the other end while calling core's filter with no brigade: every byte must
/// arrive. Returns how many bytes core held and let go this way.
fn core_pushes_held_bytes(s: Server) -> Result<usize, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no loopback socket: {e}"))?;
    let mut peer = TcpStream::connect(l.local_addr().map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let (ours, _) = l.accept().map_err(|e| e.to_string())?;
    crate::sys::set_send_buffer(ours.as_raw_fd(), 4096);
    peer.set_nonblocking(true).map_err(|e| e.to_string())?;
    let scratch = Scratch::new(s, 0, OwnedFd::from(ours), None)?;
    // SAFETY: the connection lives as long as `scratch`, on this thread alone.
    let c = unsafe { Connection::from_raw(scratch.as_ptr()) };
    let io = NonBlocking::new(&c);
    io.never_wait();
    let chunk = [0x5a_u8; 16 * 1024];
    let mut sent = 0;
    while !io.holds() {
        if sent >= 64 << 20 {
            return Err("the socket took 64 MiB without core holding any".into());
        }
        io.write(&chunk).map_err(|rv| format!("writing failed ({rv})"))?;
        sent += chunk.len();
    }
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    // The kernel moves what core wrote to the other end at once on the loopback, but a window
    // update may lag: each round waits up to 10 ms for bytes, 2 s in all.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < end {
        loop {
            match peer.read(&mut buf) {
                Ok(0) => return Err("the connection closed".into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        if got == sent && !io.holds() {
            return Ok(sent);
        }
        io.push().map_err(|rv| format!("core's output filter failed ({rv})"))?;
        crate::sys::wait_readable(peer.as_raw_fd(), 10);
    }
    Err(format!("{got} of {sent} bytes arrived"))
}
