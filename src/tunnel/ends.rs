//! Choosing the kind of ends, handing httpd's buffered bytes to the relay, and logging the outcome.

use super::core::End;
use super::filtered;
use super::handoff::{async_handoff_at, handoff, Client};
use super::relay::{self, Ends, Limits};
use crate::frames::Frames;
use crate::httpd::codes::{DONE, SUSPENDED};
use crate::httpd::log::{DEBUG, INFO, WARNING};
use crate::httpd::proxy::Backend;
use crate::httpd::{mpm, Connection, Request};
use crate::rlog;
use crate::scheme::Scheme;
use crate::status;
use std::time::Duration;

/// A reader of what httpd's input filters already buffered for a connection (non-blocking).
/// `counted`, if given, adds up the bytes it delivered.
fn buffered<'a>(
    c: &'a Connection<'a>,
    counted: Option<&'a std::cell::Cell<u64>>,
) -> relay::Buffered<'a> {
    let bb = c.brigade();
    Box::new(move |buf: &mut [u8]| {
        let n = c.read(&bb, buf, false).into_io()?;
        if let Some(total) = counted {
            total.set(total.get() + n as u64);
        }
        Ok(n)
    })
}

/// Starts the graceful drain if the MPM says this child is stopping (see `Limits::on_signal`).
pub(super) fn notice_mpm_stopping() {
    if mpm::stopping() {
        super::shutdown::child_stopping(true, mpm::graceful_shutdown_timeout());
    }
}

/// A connection with a socket of its own (not an HTTP/2 stream).
fn own_socket(c: &Connection) -> bool {
    !c.is_secondary() && c.fd().is_some()
}

fn is_raw(c: &Connection) -> bool {
    !c.is_tls() && own_socket(c)
}

/// Relays between the client and the backend until the tunnel ends. `surplus` are bytes the
/// backend sent right behind its 101. Returns the handler's status (never an error page:
/// the 101 is out).
pub fn run(
    r: &Request,
    backend: &mut Backend,
    backconn: &Connection,
    surplus: Vec<u8>,
    idle: Option<Duration>,
    scheme: Scheme,
    websocket: bool,
) -> i32 {
    let client = r.connection();
    // Writes may wait as long as httpd would let a blocking write wait on either side.
    let timeouts =
        super::limits::Timeouts::new(idle, backend.socket_timeout(), r.server().timeout());
    if !scheme.is_tls() && is_raw(&client) && is_raw(backconn) {
        r.enter_tunnel_mode();
        let frames = websocket.then(Default::default);
        raw(r, &client, backend, backconn, surplus, timeouts, frames);
        return DONE;
    }
    let board = status::Tunnel::start();
    // A TLS client may leave its thread too, under the event MPM (its request suspended),
    // with a plain backend, or a TLS one whose connection can be held; HTTP/2 streams and
    // plain clients of TLS backends stay.
    let suspendable = is_tls_socket(&client) && mpm::is_async();
    let handoff_at = if suspendable { async_handoff_at(r) } else { None }.filter(|_| {
        is_raw(backconn)
            || (is_tls_socket(backconn) && super::handoff::room_to_hold(r, backend.worker()))
    });
    let filtered::Relayed::Handoff { moved, frames } =
        filtered::run(r, backconn, surplus, timeouts, scheme, websocket, board.meter(), handoff_at)
    else {
        return DONE;
    };
    match handoff(r, &client, Client::Suspended, backend, backconn, timeouts, frames, board, moved)
    {
        Ok(()) => {
            rlog!(r, DEBUG, "WST02010: tunnel handed to the asynchronous relay after {} bytes client to backend, {} bytes backend to client (request suspended)", moved.0, moved.1);
            SUSPENDED
        }
        Err((e, board)) => {
            rlog!(r, WARNING, "WST02013: cannot hand the tunnel to the asynchronous relay ({e}): relaying it here");
            // Frame positions are not carried over: no polite end for the rest of it.
            filtered::run(r, backconn, Vec::new(), timeouts, scheme, false, board.meter(), None);
            DONE
        }
    }
}

fn is_tls_socket(c: &Connection) -> bool {
    c.is_tls() && own_socket(c)
}

fn raw(
    r: &Request,
    client: &Connection,
    backend: &mut Backend,
    backconn: &Connection,
    surplus: Vec<u8>,
    timeouts: super::limits::Timeouts,
    frames: Option<(Frames, Frames)>,
) {
    // Bytes read from the client through httpd's filters are counted by mod_logio already.
    let client_filtered = std::cell::Cell::new(0u64);
    let mut board = status::Tunnel::start();
    let limits = Limits {
        idle: timeouts.idle,
        write_stall: timeouts.write_stall,
        stop_fd: super::shutdown::stop_fd(),
        on_signal: Some(notice_mpm_stopping),
        polite: Some(super::shutdown::polite_until),
        handoff_at: async_handoff_at(r),
    };
    let ends = Ends {
        client: client.fd().expect("raw ends have a socket"),
        backend: backconn.fd().expect("raw ends have a socket"),
        backend_pre: surplus,
        client_buffered: Some(buffered(client, Some(&client_filtered))),
        backend_buffered: Some(buffered(backconn, None)),
        frames,
        meter: board.meter(),
    };
    let mut out = relay::run(ends, limits);
    client.logio_add(
        out.client_to_backend.saturating_sub(client_filtered.get()),
        out.backend_to_client,
    );
    if matches!(out.end, End::Handoff) {
        let frames = match &out.frames {
            (Some(c), Some(b)) => Some((*c, *b)),
            _ => None,
        };
        match handoff(
            r,
            client,
            Client::Raw,
            backend,
            backconn,
            timeouts,
            frames,
            board,
            (out.client_to_backend, out.backend_to_client),
        ) {
            Ok(()) => {
                rlog!(
                    r,
                    DEBUG,
                    "WST02010: tunnel handed to the asynchronous relay after {} bytes client to backend, {} bytes backend to client",
                    out.client_to_backend,
                    out.backend_to_client
                );
                return;
            }
            Err((e, back)) => {
                board = back;
                rlog!(r, WARNING, "WST02013: cannot hand the tunnel to the asynchronous relay ({e}): relaying it here");
                let ends = Ends {
                    client: client.fd().expect("raw ends have a socket"),
                    backend: backconn.fd().expect("raw ends have a socket"),
                    backend_pre: Vec::new(),
                    client_buffered: None,
                    backend_buffered: None,
                    frames,
                    meter: board.meter(),
                };
                let more = relay::run(ends, Limits { handoff_at: None, ..limits });
                client.logio_add(more.client_to_backend, more.backend_to_client);
                out = relay::Outcome {
                    client_to_backend: out.client_to_backend + more.client_to_backend,
                    backend_to_client: out.backend_to_client + more.backend_to_client,
                    end: more.end,
                    frames: more.frames,
                };
            }
        }
    }
    let bytes = format!(
        "{} bytes client to backend, {} bytes backend to client",
        out.client_to_backend, out.backend_to_client
    );
    log_end(r, &out.end, &bytes);
    if out.end.abort_client() {
        // Close the client now, without lingering: the tunnel is over on both sides.
        client.set_aborted();
    }
}

/// The error log's line for a tunnel that ended on its request thread (every kind of end).
pub(super) fn log_end(r: &Request, end: &End, bytes: &str) {
    let level = if end.is_notable() { INFO } else { DEBUG };
    rlog!(r, level, "{}: {}; {bytes}", end.id(), end.describe());
}
