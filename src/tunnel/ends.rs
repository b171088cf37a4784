//! The tunnel on its request thread: what each end is (a raw socket, a TLS connection, an
//! HTTP/2 stream), the relay of all of them by the poll driver, the hand-over to the runtime
//! when `ProxyWebsocketAsync` allows it, and the log line of the outcome.

use super::core::{Core, End};
use super::filter_ends::{Stream, Tls};
use super::filters::Filters;
use super::handoff::{async_handoff_at, handoff, room_to_hold, Client};
use super::relay::{self, Ends, Peer, Stops};
use super::summary::Summary;
use super::upgraded::{Established, Upgraded};
use crate::httpd::codes::{DONE, SUSPENDED};
use crate::httpd::log::{DEBUG, INFO, WARNING};
use crate::httpd::nonblocking::NonBlocking;
use crate::httpd::proxy::Backend;
use crate::httpd::{behaviours, mpm, Connection, Request};
use crate::rlog;
use crate::status;
use std::cell::Cell;
use std::time::Duration;

/// Starts the graceful drain if the MPM says this child is stopping (see `Stops::on_signal`).
pub(super) fn notice_mpm_stopping() {
    if mpm::stopping() {
        super::shutdown::child_stopping(true, mpm::graceful_shutdown_timeout());
    }
}

/// How often a relay whose thread the child's signals do not reach asks the MPM whether the
/// child is stopping: a fraction of the drain's second.
const ASK_MPM_EVERY: Duration = Duration::from_millis(100);

/// What an end of the tunnel is, as httpd's connection shows it.
enum Kind {
    /// A socket of its own whose bytes no filter transforms.
    Raw,
    /// TLS through mod_ssl, on a socket of its own.
    Tls,
    /// An HTTP/2 stream (mod_http2's secondary connection): no socket of its own.
    Stream,
}

fn kind(c: &Connection) -> Kind {
    if c.is_secondary() || c.fd().is_none() {
        Kind::Stream
    } else if c.is_tls() {
        Kind::Tls
    } else {
        Kind::Raw
    }
}

/// An end as the request thread relays it: the filters of a TLS connection or an HTTP/2
/// stream, or nothing for a raw socket (whose buffered bytes `buffered` reads).
enum Through<'c> {
    Raw,
    Tls(Tls<NonBlocking>),
    Stream(Stream<'c>),
}

impl<'c> Through<'c> {
    fn new(c: Connection<'c>) -> Through<'c> {
        match kind(&c) {
            Kind::Raw => Through::Raw,
            Kind::Tls => Through::Tls(Tls::new(NonBlocking::new(&c))),
            Kind::Stream => Through::Stream(Stream::new(c)),
        }
    }

    /// The end for the poll driver. `counted`: bytes a raw end delivered from httpd's input
    /// filters (mod_logio counts those itself).
    fn peer<'a>(&'a mut self, c: &'a Connection<'c>, counted: Option<&'a Cell<u64>>) -> Peer<'a> {
        let filters: &mut dyn Filters = match self {
            Through::Raw => {
                let fd = c.fd().expect("a raw end has a socket");
                return Peer::Raw { fd, buffered: Some(buffered(c, counted)) };
            }
            Through::Tls(t) => t,
            Through::Stream(s) => s,
        };
        Peer::Filtered { poll_fd: c.poll_fd().unwrap_or(-1), filters }
    }
}

/// A reader of what httpd's input filters already buffered for a raw end (non-blocking).
/// `counted`, if given, adds up the bytes it delivered.
fn buffered<'a>(c: &'a Connection<'a>, counted: Option<&'a Cell<u64>>) -> relay::Buffered<'a> {
    let bb = c.brigade();
    Box::new(move |buf: &mut [u8]| {
        let n = c.read(&bb, buf, false).into_io()?;
        if let Some(total) = counted {
            total.set(total.get() + n as u64);
        }
        Ok(n)
    })
}

/// How the tunnel may leave its thread, if `ProxyWebsocketAsync` lets it: a raw client with
/// a raw backend; under the event MPM, a TLS client (its request suspended) with a raw
/// backend, or a TLS one whose connection can be held. HTTP/2 streams and raw clients of TLS
/// backends stay.
fn may_leave(
    r: &Request,
    client: &Connection,
    backend: &Backend,
    backconn: &Connection,
) -> Option<Client> {
    match (kind(client), kind(backconn)) {
        (Kind::Raw, Kind::Raw) => Some(Client::Raw),
        (Kind::Tls, Kind::Raw) if behaviours::may_suspend() => Some(Client::Suspended),
        (Kind::Tls, Kind::Tls)
            if behaviours::may_suspend() && room_to_hold(r, backend.worker()) =>
        {
            Some(Client::Suspended)
        }
        _ => None,
    }
}

/// Relays between the client and the backend until the tunnel ends or leaves for the
/// runtime. Returns the handler's status (never an error page: the 101 is out).
pub fn run<'r>(r: &Request<'r>, e: Established<'_, 'r>) -> i32 {
    let mut t = Upgraded { r, client: r.connection(), backend: e.backend, backconn: e.backconn };
    r.enter_tunnel_mode();
    debug_assert!(!e.scheme.is_tls() || t.backconn.is_tls(), "a {:?} backend speaks TLS", e.scheme);
    let leave = may_leave(r, &t.client, t.backend, t.backconn);
    let handoff_at = leave.and_then(|_| async_handoff_at(r));
    if !matches!(kind(&t.client), Kind::Raw) || !matches!(kind(t.backconn), Kind::Raw) {
        rlog!(r, DEBUG, "WST02006: TLS or HTTP/2 end: relaying through httpd's connection filters");
    }
    let mut board = status::Entry::start();
    let stops = Stops {
        stop_fd: super::shutdown::stop_fd(),
        on_signal: Some(notice_mpm_stopping),
        // A prefork child runs an HTTP/2 stream's request on one of mod_http2's threads,
        // which the child's signals do not reach.
        ask_every: (!mpm::is_threaded() && matches!(kind(&t.client), Kind::Stream))
            .then_some(ASK_MPM_EVERY),
        polite: Some(super::shutdown::polite_until),
        handoff_at,
    };
    let mut out = relay_here(&t, e.core, stops, board.meter());
    if let (End::Handoff, Some(how)) = (&out.end, leave) {
        let (c2b, b2c) = out.moved();
        match handoff(&mut t, how, out.core, board) {
            Ok(()) => {
                rlog!(
                    r,
                    DEBUG,
                    "WST02010: tunnel handed to the asynchronous relay after {c2b} bytes client to backend, {b2c} \
                     bytes backend to client{}",
                    if how == Client::Suspended { " (request suspended)" } else { "" }
                );
                return if how == Client::Suspended { SUSPENDED } else { DONE };
            }
            Err(failed) => {
                let (e, back, core) = *failed;
                board = back;
                rlog!(
                    r,
                    WARNING,
                    "WST02013: cannot hand the tunnel to the asynchronous relay ({e}): relaying it here"
                );
                out = relay_here(&t, core, Stops { handoff_at: None, ..stops }, board.meter());
            }
        }
    }
    ended_here(r, &t.client, &out);
    DONE
}

/// A tunnel that ended on its request thread: its error-log line, its access-log variables,
/// and the client closed at once where lingering would only wait. Out of `run`'s frame,
/// which lasts through the tunnel (see [`handoff`]).
#[inline(never)]
fn ended_here(r: &Request, client: &Connection, out: &relay::Outcome) {
    let (c2b, b2c) = out.moved();
    let summary = out.core.summary(&out.end);
    log_end(r, &out.end, c2b, b2c, summary.as_ref());
    // For the access log: %{wstunnel-close-client}e and the others.
    for (name, value) in summary.iter().flat_map(Summary::env) {
        r.set_env(name, &value);
    }
    if out.end.abort_client() {
        // Close the client now, without lingering or flushing: the tunnel is over on both
        // sides, and a client that stopped reading would otherwise hold the thread for
        // `Timeout` after its tunnel ended.
        client.set_aborted();
    }
}

/// One run of the poll driver over the two ends as they are now, with the tunnel's core.
fn relay_here(t: &Upgraded, core: Box<Core>, stops: Stops, meter: status::Meter) -> relay::Outcome {
    // Bytes read from a raw client through httpd's filters are counted by mod_logio already;
    // through a TLS or HTTP/2 end, mod_logio (or mod_http2) counts every byte itself.
    let client_filtered = Cell::new(0u64);
    let (mut c, mut b) = (Through::new(t.client), Through::new(*t.backconn));
    let raw_client = matches!(c, Through::Raw);
    let before = core.moved();
    let ends = Ends {
        client: c.peer(&t.client, Some(&client_filtered)),
        backend: b.peer(t.backconn, None),
        core,
        meter,
    };
    let out = relay::run(ends, stops);
    if raw_client {
        let (c2b, b2c) = out.moved();
        t.client.logio_add((c2b - before.0).saturating_sub(client_filtered.get()), b2c - before.1);
    }
    out
}

/// The error log's line for a tunnel that ended on its request thread (every kind of end).
pub(super) fn log_end(r: &Request, end: &End, c2b: u64, b2c: u64, summary: Option<&Summary>) {
    let level = if end.is_notable() { INFO } else { DEBUG };
    let ws = summary.map_or(String::new(), |s| format!("; {}", s.describe()));
    rlog!(
        r,
        level,
        "{}: {}; {c2b} bytes client to backend, {b2c} bytes backend to client{ws}",
        end.id(),
        end.describe()
    );
}
