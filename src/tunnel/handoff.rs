//! Handing a tunnel from its request thread to the child's asynchronous relay
//! (`ProxyWebsocketAsync`, docs/DESIGN.md §6): when, under which cap, and what httpd is told.

use super::detached;
use crate::frames::Frames;
use crate::httpd::log::{INFO, WARNING};
use crate::httpd::proxy::Backend;
use crate::httpd::record::LogRecord;
use crate::httpd::{Connection, Request};
use crate::rlog;
use crate::status;
use crate::sys::{dup_cloexec, open_files_limit};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// When the synchronous relay should hand the tunnel over (ProxyWebsocketAsync), if at all.
pub fn async_handoff_at(r: &Request) -> Option<Instant> {
    let cfg = r.server_config();
    if !cfg.async_on() || super::shutdown::stopping() {
        return None;
    }
    let cap = cfg.async_max.unwrap_or_else(|| crate::config::default_async_max(open_files_limit()));
    if detached::live() as u64 >= cap {
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
    Some(Instant::now() + cfg.async_delay())
}

static CAP_LOGGED: AtomicBool = AtomicBool::new(false);

/// Milliseconds from `t` (µs since the epoch, as httpd's request_time) to now.
fn since_ms(t: i64) -> i64 {
    (status::now_us() as i64 - t).max(0) / 1000
}

/// Moves the tunnel to the child's runtime (docs/DESIGN.md §6): our own copies of both sockets; the
/// client connection is marked aborted so httpd closes its copy without a FIN or lingering
/// close; the backend connection goes back to mod_proxy (closed, so never reused) when the
/// handler returns; the worker's busy count is held until the tunnel really ends. When it
/// ends, its access-log record (the whole tunnel: `moved` before the hand-over, each way, plus
/// what the runtime relayed) goes to mod_log_config, and WST02011 to the error log.
#[allow(clippy::too_many_arguments)] // each is a different piece of the tunnel being moved
pub fn handoff(
    r: &Request,
    client: &Connection,
    backend: &Backend,
    backconn: &Connection,
    timeouts: super::limits::Timeouts,
    frames: Option<(Frames, Frames)>,
    mut board: status::Tunnel,
    moved: (u64, u64),
) -> Result<(), (std::io::Error, status::Tunnel)> {
    let dups = dup_cloexec(client.fd().expect("raw ends have a socket")).and_then(|c| Ok((c, dup_cloexec(backconn.fd().expect("raw ends have a socket"))?)));
    let (cfd, bfd) = match dups {
        Ok(fds) => fds,
        Err(e) => return Err((e, board)),
    };
    let busy = backend.worker().hold_busy();
    let server = r.server();
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
        crate::httpd::log::server(file!(), line!(), server, INFO, 0, &msg);
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
        Err(failed) => {
            let (tunnel, e) = *failed;
            let mut board = tunnel.board;
            board.attach();
            Err((e, board))
        }
    }
}

