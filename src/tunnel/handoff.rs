//! Handing a tunnel from its request thread to the child's asynchronous relay
//! (`ProxyWebsocketAsync`, docs/DESIGN.md §6): when, under which cap, and what httpd is told.

use super::detached;
use crate::ffi;
use crate::httpd::log::{INFO, WARNING};
use crate::httpd::record::LogRecord;
use crate::httpd::worker::Busy;
use crate::httpd::{Connection, Request};
use crate::frames::Frames;
use crate::status;
use crate::rlog;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// When the synchronous relay should hand the tunnel over (ProxyWebsocketAsync), if at all.
pub fn async_handoff_at(r: &Request) -> Option<Instant> {
    let cfg = r.server_config();
    if cfg.async_on == 0 || super::shutdown::stopping() {
        return None;
    }
    let cap = if cfg.async_max > 0 { cfg.async_max } else { crate::config::default_async_max(open_files_limit()) };
    if detached::live() as i64 >= cap {
        if !CAP_LOGGED.swap(true, Ordering::Relaxed) {
            rlog!(
                r,
                WARNING,
                "WST02012: {cap} asynchronous tunnels in this child (ProxyWebsocketAsyncMaxTunnels): new tunnels stay \
                 in their request threads (logged once per child)"
            );
        }
        return None;
    }
    Some(Instant::now() + Duration::from_micros(cfg.async_delay_us.max(0) as u64))
}

static CAP_LOGGED: AtomicBool = AtomicBool::new(false);

fn open_files_limit() -> u64 {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } == 0 {
        l.rlim_cur
    } else {
        1024
    }
}

/// Milliseconds from `t` (µs since the epoch, as httpd's request_time) to now.
fn since_ms(t: i64) -> i64 {
    (status::now_us() as i64 - t).max(0) / 1000
}

/// A duplicate of `fd` that the asynchronous relay owns.
fn dup_owned(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a live socket of this request returns a new fd or -1.
    let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if d < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `d` was just created and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(d) })
}

/// Moves the tunnel to the child's runtime (docs/DESIGN.md §6): our own copies of both sockets; the
/// client connection is marked aborted so httpd closes its copy without a FIN or lingering
/// close; the backend connection goes back to mod_proxy (closed, so never reused) when the
/// handler returns; the worker's busy count is held until the tunnel really ends. When it
/// ends, its access-log record (the whole tunnel: `moved` before the hand-over, each way, plus
/// what the runtime relayed) goes to mod_log_config, and WST02011 to the error log.
pub fn handoff(
    r: &Request,
    client: &Connection,
    backend: &ffi::proxy_conn_rec,
    backconn: &Connection,
    timeouts: super::limits::Timeouts,
    frames: Option<(Frames, Frames)>,
    mut board: status::Tunnel,
    moved: (u64, u64),
) -> Result<(), (std::io::Error, status::Tunnel)> {
    let dups = dup_owned(client.fd().expect("raw ends have a socket")).and_then(|c| Ok((c, dup_owned(backconn.fd().expect("raw ends have a socket"))?)));
    let (cfd, bfd) = match dups {
        Ok(fds) => fds,
        Err(e) => return Err((e, board)),
    };
    // SAFETY: the request's worker belongs to this child's configuration.
    let busy = unsafe { Busy::hold(backend.worker) };
    let server = r.server() as usize;
    let what = format!("\"{}\" from {}", r.the_request(), client.remote_ip());
    let record = LogRecord::take(r);
    let arrived = r.request_time_us();
    let on_end = Box::new(move |rep: detached::Report| {
        drop(busy);
        let (c2b, b2c) = (moved.0 + rep.client_to_backend, moved.1 + rep.backend_to_client);
        if let Some(record) = record {
            record.log(c2b, b2c);
        }
        let how = rep.ending.describe();
        let msg = format!(
            "WST02011: asynchronous tunnel ended: {what} 101 {}ms, {} bytes client to backend, {} bytes backend to client; {how}",
            since_ms(arrived),
            c2b,
            b2c
        );
        // The server_rec (a virtual host) lives in the configuration pool for the child's life.
        crate::httpd::log::server(file!(), line!(), server as *const ffi::server_rec, INFO, 0, &msg);
    });
    board.detach();
    let tunnel = detached::Tunnel { client: cfd, backend: bfd, timeouts, frames, board, on_end };
    match detached::spawn(tunnel) {
        Ok(()) => {
            client.set_aborted();
            // The request's own record (now) is the hand-over's; the tunnel's comes at its end.
            r.set_env("wstunnel-handoff", "1");
            Ok(())
        }
        // Dropping the tunnel closes our copies and releases the busy count.
        Err((tunnel, e)) => {
            let mut board = tunnel.board;
            board.attach();
            Err((e, board))
        }
    }
}

