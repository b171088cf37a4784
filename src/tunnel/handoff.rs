//! Handing a tunnel from its request thread to the child's asynchronous relay
//! (`ProxyWebsocketAsync`, docs/DESIGN.md §6): when, under which cap, and what httpd is told.

use super::detached;
use crate::frames::Frames;
use crate::httpd::log::{INFO, WARNING};
use crate::httpd::proxy::Backend;
use crate::httpd::outcome::Read;
use crate::httpd::record::LogRecord;
use crate::httpd::suspended::Suspended;
use crate::httpd::{Connection, Request};
use crate::rlog;
use crate::status;
use crate::sys::{dup_cloexec, open_files_limit};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use once_cell::sync::Lazy;
use std::sync::{Mutex, MutexGuard};
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

/// How the client end leaves its request thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// A plain socket: the module takes its own copy, httpd closes its own without a FIN.
    Raw,
    /// TLS through mod_ssl, under the event MPM: the request is suspended (the handler
    /// returns SUSPENDED) and the runtime drives the connection's filters.
    Suspended,
}

/// Moves the tunnel to the child's runtime (docs/DESIGN.md §6). The backend: our own copy of
/// its socket, its connection going back to mod_proxy (closed, so never reused) when the
/// handler returns. The client: see [`Client`]. The worker's busy count is held until the
/// tunnel really ends. When it ends, WST02011 goes to the error log, and its access-log
/// record: a raw client's through mod_log_config (the whole tunnel: `moved` before the
/// hand-over plus what the runtime relayed), a suspended one's by httpd's own log hooks on
/// the real request.
#[allow(clippy::too_many_arguments)] // each is a different piece of the tunnel being moved
pub fn handoff(
    r: &Request,
    client: &Connection,
    how: Client,
    backend: &Backend,
    backconn: &Connection,
    timeouts: super::limits::Timeouts,
    frames: Option<(Frames, Frames)>,
    mut board: status::Tunnel,
    moved: (u64, u64),
) -> Result<(), (std::io::Error, status::Tunnel)> {
    let no_socket = || std::io::Error::other("no socket");
    let sockets = client.fd().ok_or_else(no_socket).and_then(|c| {
        let c = match how {
            Client::Raw => detached::Socket::Own(dup_cloexec(c)?),
            // The suspended connection keeps its socket (mod_ssl's) and closes it at the end.
            Client::Suspended => detached::Socket::Lent(c),
        };
        Ok((c, dup_cloexec(backconn.fd().ok_or_else(no_socket)?)?))
    });
    let (cfd, bfd) = match sockets {
        Ok(fds) => fds,
        Err(e) => return Err((e, board)),
    };
    let busy = backend.worker().hold_busy();
    let server = r.server();
    let what = format!("\"{}\" from {}", r.the_request(), client.remote_ip());
    let record = if how == Client::Raw { LogRecord::take(r) } else { None };
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
    let filtered: Option<Box<dyn detached::FilteredEnd>> = match how {
        Client::Raw => None,
        Client::Suspended => Some(Box::new(TlsClient { s: Suspended::take(r), may_hold_input: true })),
    };
    let tunnel = detached::Tunnel { client: cfd, filtered, backend: bfd, timeouts, frames, board, on_end };
    if how == Client::Suspended {
        // The runtime may touch the connection only once the MPM has let go of it.
        waiting().insert(client.identity(), tunnel);
        return Ok(());
    }
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

/// Suspended tunnels whose connection the MPM has not let go of yet, by connection.
static WAITING: Lazy<Mutex<HashMap<(usize, i64), detached::Tunnel>>> = Lazy::new(Default::default);

fn waiting() -> MutexGuard<'static, HashMap<(usize, i64), detached::Tunnel>> {
    WAITING.lock().unwrap_or_else(|e| e.into_inner())
}

/// The MPM let go of connection `c` (its suspend_connection hook, on the thread that ran
/// it): a tunnel suspended on it starts on the runtime now.
pub fn connection_suspended(c: &Connection) {
    let Some(tunnel) = waiting().remove(&c.identity()) else { return };
    if let Err(failed) = detached::spawn(tunnel) {
        let (tunnel, e) = *failed;
        let server = c.server();
        crate::httpd::log::server(file!(), line!(), server, WARNING, 0, &format!("WST02016: cannot start a suspended TLS tunnel ({e}): closing it"));
        if let Some(mut f) = tunnel.filtered {
            f.ended();
            f.finish();
        }
    }
}

/// A TLS client end on the runtime: its suspended connection's filters.
struct TlsClient {
    s: Suspended,
    may_hold_input: bool,
}

fn apr(e: i32) -> std::io::Error {
    std::io::Error::other(format!("APR status {e}"))
}

impl detached::FilteredEnd for TlsClient {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let got = self.s.read(buf);
        self.may_hold_input = matches!(got, Read::Data(_));
        match got {
            Read::Data(n) => Ok(n),
            Read::Eof => Ok(0),
            Read::WouldBlock => Err(std::io::ErrorKind::WouldBlock.into()),
            Read::Error(e) => Err(apr(e)),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write(bytes).map_err(apr)
    }

    fn holds(&self) -> bool {
        self.s.holds()
    }

    fn may_hold_input(&self) -> bool {
        self.may_hold_input
    }

    fn let_go(&self) -> bool {
        self.s.let_go()
    }

    fn push(&mut self) -> std::io::Result<()> {
        self.s.push().map_err(apr)
    }

    fn ended(&mut self) {
        self.s.log_request();
    }

    fn finish(self: Box<Self>) {
        self.s.finish();
    }
}
