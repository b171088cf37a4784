//! The request's path through mod_proxy's hooks: check_trans, canon and the scheme handler
//! (docs/DESIGN.md §3). The backend's answer is read and validated before anything is tunnelled.
#![forbid(unsafe_code)]

use crate::canon::{self, CanonError};
use crate::config::ServerConfig;
use crate::frame_rules::Rules;
use crate::frames::Frames;
use crate::httpd::codes::{
    BAD_GATEWAY, BAD_REQUEST, DECLINED, DONE, FORBIDDEN, OK, SERVICE_UNAVAILABLE, UPGRADE_REQUIRED,
};
use crate::httpd::log::{DEBUG, ERR, INFO, TRACE1, TRACE5};
use crate::httpd::outcome::{is_timeout, Read};
use crate::httpd::proxy::{self, Backend, SchemeArgs};
use crate::httpd::{Connection, Request};
use crate::response::{self, BodyDecoder, BodyFraming, Head, HeadError};
use crate::rlog;
use crate::scheme::Scheme;
use crate::tunnel::{self, Core, Ping};
use crate::upgrade::{self, Decision, Policy};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set in post_config: fallback to mod_proxy_http is possible only when it is loaded.
pub static CAN_FALLBACK: AtomicBool = AtomicBool::new(false);

/// True when this request belongs to mod_proxy_http (fallback On and mod_proxy_http loaded).
fn fallback(r: &Request) -> bool {
    CAN_FALLBACK.load(Ordering::Relaxed) && r.dir_config().fallback()
}

/// This module's own schemes, `ws://` and `wss://`, in `url`.
fn websocket_scheme(url: &[u8]) -> Option<(Scheme, &[u8])> {
    Scheme::parse(url).filter(|(s, _)| s.is_websocket())
}

/// mod_proxy's check_trans: a ws alias without `Upgrade` does not match, so the next
/// `ProxyPass` (e.g. an http one) gets the request, or it is served locally.
pub fn check_trans(r: &Request, url: &[u8]) -> i32 {
    if fallback(r) || websocket_scheme(url).is_none() {
        return DECLINED;
    }
    if r.header_in("Upgrade").is_none() {
        rlog!(
            r,
            TRACE1,
            "WST01001: no Upgrade header: ws alias {} does not match",
            String::from_utf8_lossy(url)
        );
        return UPGRADE_REQUIRED;
    }
    OK
}

/// mod_proxy's canon_handler for ws:// and wss://.
pub fn canon(r: &Request, url: &[u8]) -> i32 {
    if fallback(r) {
        rlog!(
            r,
            TRACE5,
            "WST01002: canon: leaving {} to mod_proxy_http",
            String::from_utf8_lossy(url)
        );
        return DECLINED;
    }
    let Some((scheme, rest)) = websocket_scheme(url) else { return DECLINED };
    match canon::canonicalise(r, scheme, rest) {
        Ok(filename) => {
            rlog!(r, TRACE1, "WST01003: canonical URL {}", String::from_utf8_lossy(&filename));
            r.set_filename(&filename);
            OK
        }
        Err(CanonError::BadRequest(why)) => {
            rlog!(r, ERR, "WST01004: error parsing URL {}: {}", String::from_utf8_lossy(url), why);
            BAD_REQUEST
        }
        Err(CanonError::Forbidden(what)) => {
            rlog!(r, ERR, "WST01005: to be forwarded {what} contains control characters or spaces");
            FORBIDDEN
        }
    }
}

/// mod_proxy's scheme_handler: ws:// and wss:// (unless mod_proxy_http has them), and the
/// upgrade requests of http:// and https:// workers under `ProxyWebsocketUpgradeHttp On`.
pub fn handle<'r>(r: &Request<'r>, args: &SchemeArgs<'r>) -> i32 {
    let url = args.url();
    let Some((scheme, _)) = Scheme::parse(url) else {
        rlog!(r, DEBUG, "WST01007: declining URL {}", String::from_utf8_lossy(url));
        return DECLINED;
    };
    let offer = if scheme.is_websocket() {
        if fallback(r) {
            rlog!(
                r,
                TRACE5,
                "WST01006: handler: leaving {} to mod_proxy_http",
                String::from_utf8_lossy(url)
            );
            return DECLINED;
        }
        match websocket_offer(r, args) {
            Ok(offer) => offer,
            Err(status) => return status,
        }
    } else {
        match proxy_http_upgrade(r, args) {
            Some(offer) => offer,
            None => return DECLINED,
        }
    };
    // Test builds only (feature panic-probe): proves that a panic stops at the FFI boundary.
    #[cfg(feature = "panic-probe")]
    if r.header_in("X-Wst-Panic-Probe").is_some() {
        panic!("panic probe requested by the test");
    }
    let mut backend =
        match Backend::acquire(r, scheme.proxy_function(), args.worker, scheme.is_tls()) {
            Ok(b) => b,
            Err(status) => {
                rlog!(
                    r,
                    ERR,
                    "WST01009: no backend connection available for {} (status {status})",
                    scheme.as_str()
                );
                return status;
            }
        };
    proxy_upgrade(r, &mut backend, scheme, args, &offer)
}

/// A ws:// or wss:// request: the protocol to ask the backend for, or 426 (with the
/// protocols the worker allows) when the client's request cannot be tunnelled. Never inlined
/// (see [`handshake`]).
#[inline(never)]
fn websocket_offer(r: &Request, args: &SchemeArgs) -> Result<String, i32> {
    let policy = Policy::from_worker(&args.worker.upgrade());
    let client_upgrade = r.header_in_str("Upgrade");
    match upgrade::decide(&policy, client_upgrade.as_deref(), r.proto_num() < 1001) {
        Decision::Forward(offer) => Ok(offer),
        Decision::Refuse(why) => {
            let advertised = policy.advertised();
            rlog!(
                r,
                INFO,
                "WST01008: require upgrade for URL {} ({}; Upgrade header is {}, expecting {})",
                String::from_utf8_lossy(args.url()),
                why,
                client_upgrade.as_deref().unwrap_or("(none)"),
                advertised
            );
            r.set_err_header("Connection", "Upgrade");
            r.set_err_header("Upgrade", &advertised);
            Err(UPGRADE_REQUIRED)
        }
    }
}

/// A request to an http:// or https:// worker: the protocol to ask the backend for when this
/// module takes the upgrade from mod_proxy_http (`upgrade::claim_http`); None leaves the
/// request, untouched, to mod_proxy_http. Never inlined (see [`handshake`]).
#[inline(never)]
fn proxy_http_upgrade(r: &Request, args: &SchemeArgs) -> Option<String> {
    let client_upgrade = r.header_in_str("Upgrade")?;
    let url = String::from_utf8_lossy(args.url());
    if !r.dir_config().upgrade_http() {
        rlog!(r, TRACE5, "WST01024: leaving the upgrade request for {url} to mod_proxy_http (ProxyWebsocketUpgradeHttp Off)");
        return None;
    }
    if r.has_env("force-proxy-request-1.0") {
        rlog!(r, TRACE1, "WST01024: leaving the upgrade request for {url} to mod_proxy_http: force-proxy-request-1.0 is set");
        return None;
    }
    if r.header_in("Expect").is_some() {
        // mod_proxy_http forwards it and handles 100-continue: its request, as it was.
        rlog!(r, TRACE1, "WST01024: leaving the upgrade request for {url} to mod_proxy_http: it has an Expect header");
        return None;
    }
    let has_body =
        r.header_in("Transfer-Encoding").is_some() || r.header_in("Content-Length").is_some();
    let policy = Policy::from_worker(&args.worker.upgrade());
    match upgrade::claim_http(&policy, Some(&client_upgrade), r.proto_num() < 1001, has_body) {
        Ok(offer) => {
            rlog!(
                r,
                DEBUG,
                "WST01025: tunnelling the upgrade to {offer} for {url} (instead of mod_proxy_http)"
            );
            Some(offer)
        }
        Err(why) => {
            rlog!(
                r,
                TRACE1,
                "WST01024: leaving the upgrade request for {url} to mod_proxy_http: {why}"
            );
            None
        }
    }
}

/// Connects, sends the upgrade request, reads the answer, and either tunnels (101) or relays
/// the answer as an ordinary response.
fn proxy_upgrade<'r>(
    r: &Request<'r>,
    backend: &mut Backend<'r>,
    scheme: Scheme,
    args: &SchemeArgs<'r>,
    offer: &str,
) -> i32 {
    match handshake(r, backend, scheme, args, offer) {
        Ok((backconn, core)) => {
            tunnel::run(r, tunnel::Established { backend, backconn: &backconn, scheme, core })
        }
        Err(status) => status,
    }
}

/// Asks the backend to upgrade and sends its 101 on to the client: the backend's connection
/// and the tunnel's core; else the handler's status.
/// Never inlined: the pages of the request thread's stack that the handshake touches stay in
/// its memory for as long as the thread lives, so the handshake's locals (the answer's head,
/// its fields) must not sit in a frame that lasts through the tunnel, under the relay's.
#[inline(never)]
fn handshake<'r>(
    r: &Request<'r>,
    backend: &mut Backend<'r>,
    scheme: Scheme,
    args: &SchemeArgs<'r>,
    offer: &str,
) -> Result<(Connection<'r>, Box<Core>), i32> {
    let mut target = backend.determine(args)?;
    if !backend.connect() {
        rlog!(r, ERR, "WST01010: failed to make connection to backend: {}", backend.hostname());
        return Err(SERVICE_UNAVAILABLE);
    }
    let backconn = match backend.create_connection() {
        Ok(c) => c,
        Err(status) => {
            if scheme.is_tls() {
                rlog!(
                    r,
                    ERR,
                    "WST01011: cannot speak TLS to {}:// backend {}: TLS to backends needs mod_ssl and \
                     'SSLProxyEngine On' in this server or virtual host",
                    scheme.as_str(),
                    backend.hostname()
                );
            } else {
                rlog!(
                    r,
                    ERR,
                    "WST01012: cannot set up the connection to backend {}",
                    backend.hostname()
                );
            }
            return Err(status);
        }
    };
    let head = backend.request_head(args, &mut target)?;
    let status =
        backend.send(head, upgrade::request_lines(offer, !scheme.is_websocket()).as_bytes());
    if status != OK {
        rlog!(
            r,
            ERR,
            "WST01013: sending the upgrade request to {} failed (status {status})",
            backend.hostname()
        );
        return Err(status);
    }
    rlog!(
        r,
        DEBUG,
        "WST01014: asked {} to upgrade to {offer} for \"{}\"",
        backend.hostname(),
        r.the_request()
    );

    let (head, surplus) = match read_answer(r, backend, &backconn) {
        Ok(x) => x,
        Err(Waiting::ClientGone) => {
            rlog!(
                r,
                INFO,
                "WST01022: client went away while {} had not answered the upgrade yet",
                backend.hostname()
            );
            r.connection().set_aborted();
            return Err(DONE);
        }
        Err(Waiting::Failed(why)) => {
            rlog!(
                r,
                ERR,
                "WST01015: no valid answer to the upgrade request from {}: {why}",
                backend.hostname()
            );
            return Err(BAD_GATEWAY);
        }
    };
    if head.status != 101 {
        rlog!(
            r,
            INFO,
            "WST01016: backend {} refused the upgrade with {}: relaying its answer, no tunnel",
            backend.hostname(),
            head.status
        );
        return Err(relay_refusal(r, &backconn, &head, surplus));
    }
    let answered = head.get_all("Upgrade");
    if !upgrade::accepts_101(offer, answered.as_deref()) {
        rlog!(
            r,
            ERR,
            "WST01017: backend {} answered 101 with Upgrade: {} (expecting {offer}): not tunnelling",
            backend.hostname(),
            answered.as_deref().unwrap_or("(none)")
        );
        return Err(BAD_GATEWAY);
    }
    send_101(r, &head);
    let config = r.server_config();
    let websocket = answered.as_deref().is_some_and(upgrade::is_websocket);
    let frames = websocket.then(|| frames_for(&config, &head));
    let ping = websocket.then(|| Ping::new(config.ping_interval, config.ping_timeout)).flatten();
    let idle = config.idle_timeout();
    let core = tunnel::Established::core(r, backend, frames, &surplus, idle, ping);
    Ok((backconn, core))
}

/// Each direction's frames, with the rules the server's directives set for them: the RSV bits
/// that the extensions the backend's 101 accepted define.
fn frames_for(config: &ServerConfig, head: &Head) -> (Frames, Frames) {
    let extensions = head.get_all("Sec-WebSocket-Extensions");
    match Rules::for_tunnel(config.strict_frames(), config.max_message(), extensions.as_deref()) {
        Some((client, backend)) => (Frames::checked(Some(client)), Frames::checked(Some(backend))),
        None => Default::default(),
    }
}

/// Why waiting for the backend's answer ended without one.
enum Waiting {
    ClientGone,
    Failed(String),
}

/// The bound of one read from the backend, and of the whole answer head: the backend
/// socket's timeout, else the server's `Timeout` (at least a second).
fn backend_timeout(r: &Request, backend: &Backend) -> Duration {
    backend.socket_timeout().unwrap_or_else(|| r.server().timeout().max(Duration::from_secs(1)))
}

/// Reads the backend's answer head through its input filters (so wss works), however it
/// trickles, within one overall deadline. Interim answers (100, 103, ...) before the final
/// one go to the client as httpd forwards them (`ap_send_interim_response`: 100 only to a
/// client that asked for it), at most [`response::MAX_INTERIM`]; a client that hangs up
/// ends the wait. Returns the final head and the bytes that followed it.
fn read_answer(
    r: &Request,
    backend: &mut Backend,
    backconn: &Connection,
) -> Result<(Head, Vec<u8>), Waiting> {
    let timeout = backend_timeout(r, backend);
    let answer = read_answer_within(r, backend, backconn, timeout);
    // The body's reads are bounded per read again, as mod_proxy_http's.
    backend.set_socket_timeout(timeout);
    answer
}

fn read_answer_within(
    r: &Request,
    backend: &mut Backend,
    backconn: &Connection,
    timeout: Duration,
) -> Result<(Head, Vec<u8>), Waiting> {
    let deadline = Instant::now() + timeout;
    // A plain backend is waited for with poll(2), watching the client too. Through TLS,
    // readiness of the socket says nothing about what mod_ssl already holds: there each
    // blocking read gets what is left of the deadline, and the client is looked at only
    // between reads.
    let polled = if backconn.is_tls() { None } else { backconn.fd() };
    // An HTTP/2 stream's connection has no socket of its own to watch (what `fd` finds there
    // is mod_http2's, which says nothing about this stream).
    let client = r.connection();
    let cfd = if client.is_secondary() { None } else { client.fd() };
    let bb = backconn.brigade();
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    // Reads go straight into `buf`, a little at a time (heads are short): an 8 KiB array on
    // the stack, or an 8 KiB block in the thread's malloc arena, would stay in the RSS of every
    // request thread that ever opened a tunnel.
    const READ: usize = 2048;
    let mut interim = 0;
    let timed_out =
        || Waiting::Failed(format!("no complete response head within {} ms", timeout.as_millis()));
    loop {
        match response::parse_head(&buf) {
            Ok((head, len)) if head.is_interim() => {
                interim += 1;
                if interim > response::MAX_INTERIM {
                    return Err(Waiting::Failed(format!(
                        "more than {} interim responses",
                        response::MAX_INTERIM
                    )));
                }
                buf.drain(..len);
                forward_interim(r, &head);
                continue;
            }
            Ok((head, len)) => return Ok((head, buf.split_off(len))),
            Err(HeadError::Incomplete) => {}
            Err(HeadError::TooLarge) => {
                return Err(Waiting::Failed(format!(
                    "response head larger than {} bytes",
                    response::MAX_HEAD
                )))
            }
            Err(HeadError::Malformed(why)) => return Err(Waiting::Failed(why.to_string())),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        if polled.is_none() {
            if client.aborted() {
                return Err(Waiting::ClientGone);
            }
            backend.set_socket_timeout(left);
        }
        // Read what is there (without waiting when we poll); wait only when nothing is.
        let have = buf.len();
        buf.resize(have + READ, 0);
        let read = backconn.read(&bb, &mut buf[have..], polled.is_none());
        buf.truncate(have + if let Read::Data(n) = read { n } else { 0 });
        match read {
            Read::Data(_) => continue,
            Read::WouldBlock if polled.is_some() => {}
            Read::Eof | Read::WouldBlock => {
                return Err(Waiting::Failed(
                    "connection closed before a complete response head".into(),
                ))
            }
            Read::Error(e) if is_timeout(e) => return Err(timed_out()),
            Read::Error(e) => return Err(Waiting::Failed(format!("read error (APR status {e})"))),
        }
        let Some(bfd) = polled else { continue };
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        match tunnel::wait_backend(bfd, cfd, ms) {
            Ok(tunnel::Waited::ClientGone) => return Err(Waiting::ClientGone),
            Ok(_) => {}
            Err(e) => return Err(Waiting::Failed(format!("poll: {e}"))),
        }
    }
}

/// Forwards an interim answer the way mod_proxy_http does: its end-to-end headers, through
/// httpd's own interim machinery; `r->headers_out` is left empty for the final answer.
fn forward_interim(r: &Request, head: &Head) {
    rlog!(r, TRACE1, "WST01018: interim {} from backend, forwarding", head.status);
    for (name, value) in response::relayed_headers(head, None) {
        r.add_header_out(name, &value);
    }
    r.set_status(head.status, head.status_line().as_deref());
    r.send_interim_response();
    r.clear_headers_out();
}

/// Sends the backend's 101 to the client through httpd, minus hop-by-hop headers.
fn send_101(r: &Request, head: &Head) {
    for (name, value) in response::relayed_headers(head, None) {
        r.add_header_out(name, &value);
    }
    r.set_header_out("Connection", b"Upgrade");
    r.set_header_out("Upgrade", head.get("Upgrade").unwrap_or(b"websocket"));
    r.set_status(101, Some(b"101 Switching Protocols"));
    r.send_interim_response();
}

/// Bytes read from the backend at a time while relaying a refusal (mod_proxy_http's
/// default `ProxyIOBufferSize`).
const REFUSAL_CHUNK: usize = 8192;

/// A refused upgrade: the backend's answer reaches the client as an ordinary HTTP response,
/// with mod_proxy_http's semantics, and the client connection stays HTTP (what it sends
/// next is parsed by httpd). The head goes out at once; the body is forwarded as it arrives
/// (flushed whenever the backend pauses), so streaming and long-poll answers stream.
fn relay_refusal(r: &Request, backconn: &Connection, head: &Head, surplus: Vec<u8>) -> i32 {
    let framing = match response::framing(head, r.header_only()) {
        Ok(f) => f,
        Err(HeadError::Malformed(why)) => {
            rlog!(r, ERR, "WST01019: backend answer has an invalid body framing: {why}");
            return BAD_GATEWAY;
        }
        Err(_) => return BAD_GATEWAY,
    };
    r.set_status(head.status, head.status_line().as_deref());
    for (name, value) in response::relayed_headers(head, Some(framing)) {
        if name.eq_ignore_ascii_case("Content-Type") {
            r.set_content_type(&String::from_utf8_lossy(&value));
        } else if ["Location", "Content-Location", "URI"]
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
        {
            r.add_header_out(name, &proxy::reverse_map(r, &value));
        } else {
            r.add_header_out(name, &value);
        }
    }
    if !r.flush() {
        return DONE;
    }
    if framing == BodyFraming::None {
        return OK;
    }
    relay_body(r, backconn, BodyDecoder::new(framing), &surplus)
}

/// Streams a refusal's body: reads what the backend has, decodes, writes; flushes to the
/// client only when the backend has nothing more for now, then waits (bounded by the
/// backend's socket timeout per read, as mod_proxy_http). A body cut short, a bad chunk or
/// a read error ends the client connection as mod_proxy_http does.
fn relay_body(r: &Request, backconn: &Connection, mut decoder: BodyDecoder, surplus: &[u8]) -> i32 {
    let bb = backconn.brigade();
    let mut chunk = vec![0u8; REFUSAL_CHUNK];
    let mut out = Vec::with_capacity(REFUSAL_CHUNK);
    let mut sent: u64 = 0;
    let mut input = surplus;
    loop {
        if let Err(why) = decoder.feed(input, &mut out) {
            rlog!(r, ERR, "WST01020: bad body from backend after {sent} bytes: {why}");
            return broke(r);
        }
        if !out.is_empty() {
            if !r.write(&out) {
                return client_gone(r, sent);
            }
            sent += out.len() as u64;
            out.clear();
        }
        if decoder.is_done() {
            return OK;
        }
        let mut read = backconn.read(&bb, &mut chunk, false);
        if read == Read::WouldBlock {
            if !r.flush() {
                return client_gone(r, sent);
            }
            read = backconn.read(&bb, &mut chunk, true);
        }
        match read {
            Read::Data(n) => input = &chunk[..n],
            Read::Eof | Read::WouldBlock if decoder.eof_ok() => return OK,
            other => {
                rlog!(
                    r,
                    ERR,
                    "WST01021: backend answer body ended early after {sent} bytes ({other:?})"
                );
                return broke(r);
            }
        }
    }
}

fn broke(r: &Request) -> i32 {
    r.backend_broke();
    DONE
}

fn client_gone(r: &Request, sent: u64) -> i32 {
    rlog!(r, DEBUG, "WST01023: client went away after {sent} bytes of the backend's answer");
    r.connection().set_aborted();
    DONE
}
