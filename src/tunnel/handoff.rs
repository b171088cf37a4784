//! Handing a tunnel from its request thread to the child's asynchronous relay
//! (`ProxyWebsocketAsync`, docs/DESIGN.md §6): when, under which cap, and what httpd is told.

use super::core::Core;
use super::detached;
use super::filter_ends::{Owner, Tls};
use super::limits::may_hold_backend;
use super::summary::Summary;
use super::upgraded::Upgraded;
use crate::httpd::log::{ERR, INFO, WARNING};
use crate::httpd::mpm;
use crate::httpd::nonblocking::NonBlocking;
use crate::httpd::proxy::{HeldBackend, Worker};
use crate::httpd::record::LogRecord;
use crate::httpd::suspended::Suspended;
use crate::httpd::{Connection, Request};
use crate::rlog;
use crate::status;
use crate::sys::{dup_cloexec, open_files_limit};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
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
        if !state().cap_logged.swap(true, Ordering::Relaxed) {
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

/// The hand-over's part of the child's state ([`crate::child::Child`]).
pub struct State {
    /// WST02012 was logged (once per child).
    cap_logged: AtomicBool,
    /// WST02017 was logged (once per child).
    hold_logged: AtomicBool,
    /// wss:// backend connections this child's suspended tunnels hold, by worker.
    held: Mutex<BTreeMap<usize, usize>>,
    /// Suspended tunnels whose connection the MPM has not let go of yet, by connection.
    waiting: Mutex<BTreeMap<(usize, i64), detached::Tunnel>>,
}

impl State {
    pub(crate) const fn new() -> State {
        State {
            cap_logged: AtomicBool::new(false),
            hold_logged: AtomicBool::new(false),
            held: Mutex::new(BTreeMap::new()),
            waiting: Mutex::new(BTreeMap::new()),
        }
    }
}

fn state() -> &'static State {
    &crate::child::CHILD.handoff
}

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

/// Moves the tunnel to the child's runtime (docs/DESIGN.md §6). A plain backend: our own copy
/// of its socket, its connection going back to mod_proxy (closed, so never reused) when the
/// handler returns. A TLS (wss://) backend, only with a suspended client: its connection is
/// held and driven through its filters, and goes back to mod_proxy when the tunnel ends. The
/// client: see [`Client`]. The worker's busy count is held until the
/// tunnel really ends. When it ends, WST02011 goes to the error log, and its access-log
/// record through httpd's log hooks (the whole tunnel: the core moves with it and counts from the
/// 101 on; `LogRecord`), the request's own being the hand-over's (`wstunnel-handoff`).
/// On failure the board's entry and the core come back, for the request thread to relay on.
/// Never inlined into the handler's frame, which lasts through every synchronous tunnel:
/// the stack pages a frame touches stay in the thread's memory.
#[inline(never)]
pub(super) fn handoff(
    t: &mut Upgraded,
    how: Client,
    core: Box<Core>,
    mut board: status::Entry,
) -> Result<(), Box<(std::io::Error, status::Entry, Box<Core>)>> {
    let (r, client, backconn) = (t.r, &t.client, t.backconn);
    let backend = &mut *t.backend;
    // A suspended tunnel is spawned from the MPM's hook, where nothing can fall back: the
    // runtime must run before the request is suspended.
    if how == Client::Suspended {
        if let Err(e) = detached::start() {
            return Err(Box::new((e, board, core)));
        }
    }
    let no_socket = || std::io::Error::other("no socket");
    // A filtered end keeps its socket (mod_ssl's), which its connection closes at the end.
    let hold_backend = how == Client::Suspended && backconn.is_tls();
    let sockets = client.fd().ok_or_else(no_socket).and_then(|c| {
        let c = match how {
            Client::Raw => detached::Socket::Own(dup_cloexec(c)?),
            Client::Suspended => detached::Socket::Lent(c),
        };
        let b = backconn.fd().ok_or_else(no_socket)?;
        Ok((
            c,
            if hold_backend {
                detached::Socket::Lent(b)
            } else {
                detached::Socket::Own(dup_cloexec(b)?)
            },
        ))
    });
    let (cfd, bfd) = match sockets {
        Ok(fds) => fds,
        Err(e) => return Err(Box::new((e, board, core))),
    };
    let held = if hold_backend {
        let Some(count) = HeldCount::take(backend.worker()) else {
            return Err(Box::new((
                std::io::Error::other("the worker's connections (max=) are all in use"),
                board,
                core,
            )));
        };
        let Some(held) = backend.hold() else { return Err(Box::new((no_socket(), board, core))) };
        Some(Tls::boxed(HeldWss { backend: held, _count: count }))
    } else {
        None
    };
    let busy = backend.worker().hold_busy();
    let server = r.server();
    let what = format!("\"{}\" from {}", r.the_request(), client.remote_ip());
    let record = LogRecord::take(r);
    let arrived = r.request_time_us();
    let slow_turn = {
        let what = what.clone();
        Box::new(move |took: std::time::Duration| {
            let msg = format!(
                "WST02019: one turn of the asynchronous tunnel {what} held the relay thread for {}ms, and every \
                 asynchronous tunnel of this child with it",
                took.as_millis()
            );
            crate::httpd::log::server(file!(), line!(), server, ERR, 0, &msg);
        })
    };
    let on_end = Box::new(move |rep: detached::Report| {
        drop(busy);
        let (c2b, b2c) = (rep.client_to_backend, rep.backend_to_client);
        record.log(c2b, b2c, rep.summary.as_ref().map(Summary::env).as_ref());
        let ws = rep.summary.as_ref().map_or(String::new(), |s| format!("; {}", s.describe()));
        let how = format!("{}{ws}", rep.ending.describe());
        let msg = format!(
            "WST02011: asynchronous tunnel ended: {what} 101 {}ms, {} bytes client to backend, {} bytes backend to client; {how}",
            since_ms(arrived),
            c2b,
            b2c
        );
        crate::httpd::log::server(file!(), line!(), server, INFO, 0, &msg);
    });
    board.detach();
    let filtered = match how {
        Client::Raw => [None, held],
        Client::Suspended => [Some(Tls::boxed(Suspended::take(r))), held],
    };
    let tunnel =
        detached::Tunnel { client: cfd, filtered, backend: bfd, core, board, on_end, slow_turn };
    if how == Client::Suspended {
        r.set_env("wstunnel-handoff", "1");
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
            Err(Box::new((e, board, tunnel.core)))
        }
    }
}

/// Whether a tunnel of `worker` may leave its thread holding the backend's connection (a
/// wss:// backend; see `limits::may_hold_backend`). When not, WST02017 says why, once per
/// child.
pub fn room_to_hold(r: &Request, worker: Worker) -> bool {
    let held = held().get(&worker.key()).copied().unwrap_or(0);
    if room(worker, held) {
        return true;
    }
    let (threads, max) = (mpm::threads_per_child(), worker.max_connections());
    if !state().hold_logged.swap(true, Ordering::Relaxed) {
        rlog!(
            r,
            WARNING,
            "WST02017: wss:// backend tunnels stay in their request threads: its worker's connections (max={max}) \
             leave none to hold past {threads} request threads ({held} held); raise max= on the ProxyPass to \
             ThreadsPerChild plus the asynchronous wss:// backend tunnels each child should hold (logged once per child)"
        );
    }
    false
}

/// Whether this child, holding `held` of `worker`'s connections, may hold one more.
fn room(worker: Worker, held: usize) -> bool {
    may_hold_backend(held, mpm::threads_per_child(), worker.max_connections())
}

fn held() -> MutexGuard<'static, BTreeMap<usize, usize>> {
    state().held.lock().unwrap_or_else(|e| e.into_inner())
}

/// One connection of a worker held by a suspended tunnel, counted until dropped.
struct HeldCount(usize);

impl HeldCount {
    fn take(worker: Worker) -> Option<HeldCount> {
        let mut all = held();
        let n = all.entry(worker.key()).or_default();
        if !room(worker, *n) {
            return None;
        }
        *n += 1;
        Some(HeldCount(worker.key()))
    }
}

impl Drop for HeldCount {
    fn drop(&mut self) {
        if let Some(n) = held().get_mut(&self.0) {
            *n = n.saturating_sub(1);
        }
    }
}

/// A held wss:// backend and its place in the count: the connection goes back to mod_proxy
/// (first field, dropped first), then the count lets another tunnel hold one.
struct HeldWss {
    backend: HeldBackend,
    _count: HeldCount,
}

fn waiting() -> MutexGuard<'static, BTreeMap<(usize, i64), detached::Tunnel>> {
    state().waiting.lock().unwrap_or_else(|e| e.into_inner())
}

/// The MPM let go of connection `c` (its suspend_connection hook, on the thread that ran
/// it): a tunnel suspended on it starts on the runtime now.
pub fn connection_suspended(c: &Connection) {
    let Some(tunnel) = waiting().remove(&c.identity()) else { return };
    // `handoff` started the runtime, so this cannot fail. If it did, the client's connection
    // could not be freed here: the MPM still uses it after this hook returns. It would be left
    // until the child exits; the backend goes back to mod_proxy.
    if let Err(failed) = detached::spawn(tunnel) {
        let (tunnel, e) = *failed;
        let msg = format!("WST02016: cannot start a suspended TLS tunnel ({e}): its connection is left open until the child exits");
        crate::httpd::log::server(file!(), line!(), c.server(), ERR, 0, &msg);
        let [client, backend] = tunnel.filtered;
        if let Some(backend) = backend {
            backend.finish();
        }
        std::mem::forget(client);
    }
}

impl Owner for Suspended {
    fn io(&self) -> &NonBlocking {
        Suspended::io(self)
    }
    fn let_go(&self) -> bool {
        Suspended::let_go(self)
    }
    fn handed_over(&mut self) {
        Suspended::handed_over(self)
    }
    fn ended(&mut self) {
        self.end_request();
    }
    fn finish(self) {
        Suspended::finish(self)
    }
}

impl Owner for HeldWss {
    fn io(&self) -> &NonBlocking {
        self.backend.io()
    }
    /// Back to mod_proxy, closed (on drop), reset if the backend left bytes unread.
    fn finish(self) {
        self.backend.io().abort_if_stuck();
    }
}
