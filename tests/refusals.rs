//! A refused upgrade (any answer but 101) is relayed the way httpd's own proxy relays a
//! response: no body for HEAD, 1xx, 204 and 304; interim answers forwarded and bounded; the
//! whole head within one deadline; bodies streamed as they arrive; header bytes as they came.
//! Each case runs against the scripted hostile backend (`wskit::hostile`) and checks what the
//! client receives and when, and that the worker is free again afterwards. The last test
//! compares our relay with mod_proxy_http's on the same answers.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use wskit::hostile::{Hostile, Timed, GZIP_BYTES};
use wskit::raw::websocket_request;

struct Env {
    hostile: Hostile,
    h: Httpd,
}

fn env() -> Env {
    let hostile = Hostile::start();
    let h = Httpd::start(
        Config::new("refusals.conf.in").var("HOSTILE", format!("127.0.0.1:{}", hostile.port())),
    );
    Env { hostile, h }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Plain HTTP is served at once: no worker is left stuck by what came before.
fn plain_http_served(h: &Httpd) {
    let start = Instant::now();
    let (resp, body) = wskit::raw::get(h.port, "/index.html", "");
    assert_eq!((resp.status, body.as_str()), (200, "local index\n"));
    assert!(start.elapsed() < Duration::from_secs(2), "plain GET took {:?}", start.elapsed());
}

/// Splits what a client received into response heads; returns them and the bytes after the
/// last head.
fn heads(bytes: &[u8]) -> (Vec<String>, Vec<u8>) {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.starts_with(b"HTTP/1.") {
        let Some(p) = rest.windows(4).position(|w| w == b"\r\n\r\n") else { break };
        out.push(String::from_utf8_lossy(&rest[..p + 4]).into_owned());
        rest = &rest[p + 4..];
        if !out.last().unwrap().split_whitespace().nth(1).is_some_and(|c| c.starts_with('1')) {
            break;
        }
    }
    (out, rest.to_vec())
}

fn status(head: &str) -> u16 {
    head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn header(head: &str, name: &str) -> Option<String> {
    wskit::raw::header(head, name).map(str::to_string)
}

/// The body as the client decodes it (chunked or not).
fn body_of(head: &str, rest: &[u8]) -> Vec<u8> {
    let te = header(head, "Transfer-Encoding").unwrap_or_default().to_ascii_lowercase();
    if te.ends_with("chunked") {
        wskit::raw::dechunk(rest).unwrap_or_else(|| {
            panic!("incomplete chunked body: {:?}", String::from_utf8_lossy(rest))
        })
    } else {
        rest.to_vec()
    }
}

#[test]
fn head_is_answered_at_once_and_the_connection_stays_usable() {
    let e = env();
    for path in ["/h/head-cl", "/bal/h/head-cl"] {
        let mut s = TcpStream::connect(("127.0.0.1", e.h.port)).unwrap();
        let start = Instant::now();
        s.write_all(&websocket_request("HEAD", path, "")).unwrap();
        let t = Timed::read_from(&mut s, start, Duration::from_millis(1500));
        let (hs, rest) = heads(&t.bytes());
        assert_eq!(hs.len(), 1, "{path}: {:?}", t.text());
        assert_eq!(status(&hs[0]), 200, "{path}");
        assert_eq!(header(&hs[0], "Content-Length").as_deref(), Some("1000"), "{path}: {}", hs[0]);
        assert!(rest.is_empty(), "{path}: a HEAD answer has no body: {rest:?}");
        let at = t.when(b"\r\n\r\n").unwrap();
        assert!(at < Duration::from_millis(1000), "{path}: head after {at:?}");
        assert!(
            t.closed.is_none(),
            "{path}: the client connection stays open for its next request"
        );
        // The same connection serves the next request: the worker went back to HTTP.
        s.write_all(b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let next = Timed::read_from(&mut s, Instant::now(), Duration::from_secs(3));
        assert!(
            next.text().starts_with("HTTP/1.1 200") && next.text().ends_with("local index\n"),
            "{path}: {}",
            next.text()
        );
    }
    plain_http_served(&e.h);
    e.h.stop();
}

#[test]
fn no_body_for_204_and_304_whatever_the_headers_say() {
    let e = env();
    for (path, code) in [("/h/cl-204", 204), ("/h/cl-304", 304)] {
        let mut s = TcpStream::connect(("127.0.0.1", e.h.port)).unwrap();
        let start = Instant::now();
        s.write_all(&websocket_request("GET", path, "")).unwrap();
        let t = Timed::read_from(&mut s, start, Duration::from_millis(1500));
        let (hs, rest) = heads(&t.bytes());
        assert_eq!(hs.len(), 1, "{path}: {:?}", t.text());
        assert_eq!(status(&hs[0]), code);
        assert!(rest.is_empty() && t.closed.is_none(), "{path}: {rest:?} {:?}", t.closed);
        assert!(t.when(b"\r\n\r\n").unwrap() < Duration::from_secs(1));
        s.write_all(b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let next = Timed::read_from(&mut s, Instant::now(), Duration::from_secs(3));
        assert!(next.text().ends_with("local index\n"), "{path}: {}", next.text());
    }
    e.h.stop();
}

#[test]
fn endless_interim_answers_end_in_502_and_free_every_worker() {
    let e = env();
    // More clients than MaxRequestWorkers (50; 40 under prefork): each would hold a worker
    // forever if interim answers were skipped without a count.
    let n = 60;
    let start = Instant::now();
    let clients: Vec<_> = (0..n)
        .map(|_| {
            let port = e.h.port;
            std::thread::spawn(move || {
                Timed::request(
                    port,
                    &websocket_request("GET", "/h/continue", "Connection: close\r\n"),
                    Duration::from_secs(15),
                )
            })
        })
        .collect();
    let mut ends = Vec::new();
    for c in clients {
        let t = c.join().unwrap();
        ends.push(t.when(b"HTTP/1.1 502").map(secs).unwrap_or(-1.0));
        let (hs, _) = heads(&t.bytes());
        // 100 Continue goes only to a client that asked for it (httpd's rule): none here.
        assert_eq!(hs.len(), 1, "{:?}", t.text());
        assert_eq!(status(&hs[0]), 502, "{}", hs[0]);
    }
    assert!(
        start.elapsed() < Duration::from_secs(12),
        "took {:?}; each client's end (s): {ends:?}",
        start.elapsed()
    );
    plain_http_served(&e.h);
    assert!(e.h.error_log().contains("more than 10 interim responses"));
    // A client that asked for 100-continue gets each of the ten, then the 502.
    let t = Timed::request(
        e.h.port,
        &websocket_request("GET", "/h/continue", "Expect: 100-continue\r\n"),
        Duration::from_secs(10),
    );
    let (hs, _) = heads(&t.bytes());
    let codes: Vec<u16> = hs.iter().map(|h| status(h)).collect();
    assert_eq!(
        codes,
        [vec![100; 1], vec![502]].concat(),
        "httpd sends one 100 per request: {:?}",
        t.text()
    );
    e.h.stop();
}

#[test]
fn interim_answers_are_forwarded_up_to_ten() {
    let e = env();
    let t = Timed::request(
        e.h.port,
        &websocket_request("GET", "/h/interim-10", ""),
        Duration::from_secs(3),
    );
    let (hs, rest) = heads(&t.bytes());
    let codes: Vec<u16> = hs.iter().map(|h| status(h)).collect();
    assert_eq!(codes, [vec![103; 10], vec![200]].concat(), "{:?}", t.text());
    assert!(hs[0].contains("Link: </a.js>; rel=preload"), "{}", hs[0]);
    assert_eq!(rest, b"done\n");
    let t = Timed::request(
        e.h.port,
        &websocket_request("GET", "/h/interim-11", ""),
        Duration::from_secs(3),
    );
    let (hs, _) = heads(&t.bytes());
    let codes: Vec<u16> = hs.iter().map(|h| status(h)).collect();
    assert_eq!(codes, [vec![103; 10], vec![502]].concat(), "{:?}", t.text());
    // 103 before a 101: forwarded, and the tunnel opens.
    let mut s = TcpStream::connect(("127.0.0.1", e.h.port)).unwrap();
    s.write_all(&websocket_request("GET", "/h/hints-101", "")).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while heads(&got).0.len() < 2 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "{:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let (hs, _) = heads(&got);
    assert_eq!((status(&hs[0]), status(&hs[1])), (103, 101), "{hs:?}");
    s.write_all(b"tunnelled bytes").unwrap();
    let mut echo = [0u8; 15];
    s.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"tunnelled bytes");
    drop(s);
    plain_http_served(&e.h);
    e.h.stop();
}

#[test]
fn a_trickling_head_is_bounded_by_one_deadline() {
    let e = env();
    let t = Timed::request(
        e.h.port,
        &websocket_request("GET", "/h/trickle", ""),
        Duration::from_secs(10),
    );
    let at = t.when(b"HTTP/1.1 502").unwrap_or_else(|| panic!("{:?}", t.text()));
    // ProxyTimeout 2: one byte every 200 ms would renew a per-read timeout forever.
    assert!(at > Duration::from_millis(1800) && at < Duration::from_secs(4), "502 after {at:?}");
    assert!(e.h.error_log().contains("no complete response head within 2000 ms"));
    plain_http_served(&e.h);
    e.h.stop();
}

#[test]
fn a_client_that_goes_away_ends_the_wait() {
    let e = env();
    let mut s = TcpStream::connect(("127.0.0.1", e.h.port)).unwrap();
    s.write_all(&websocket_request("GET", "/h/trickle", "")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let gone = Instant::now();
    drop(s);
    assert!(e.h.wait_log("WST01022", Duration::from_secs(5)), "{}", e.h.error_log());
    assert!(gone.elapsed() < Duration::from_millis(1500), "noticed after {:?}", gone.elapsed());
    plain_http_served(&e.h);
    e.h.stop();
}

#[test]
fn a_chunked_answer_streams_chunk_by_chunk() {
    let e = env();
    let t = Timed::request(
        e.h.port,
        &websocket_request("GET", "/h/chunked-slow", "Connection: close\r\n"),
        Duration::from_secs(8),
    );
    let head_at = t.when(b"\r\n\r\n").unwrap();
    assert!(head_at < Duration::from_millis(700), "head after {head_at:?}");
    let ticks: Vec<f64> =
        (0..4).map(|i| secs(t.when(format!("tick {i}").as_bytes()).unwrap())).collect();
    for (i, at) in ticks.iter().enumerate() {
        assert!((*at - i as f64).abs() < 0.7, "tick {i} at {at:.2} s (all: {ticks:?})");
    }
    let (hs, rest) = heads(&t.bytes());
    assert_eq!(body_of(&hs[0], &rest), b"tick 0\ntick 1\ntick 2\ntick 3\n");
    plain_http_served(&e.h);
    e.h.stop();
}

#[test]
fn a_body_cut_short_reaches_the_client_and_then_the_connection_ends() {
    let e = env();
    // (path, what arrives at once, when the connection ends at the latest)
    for (path, first, end_by) in [
        ("/h/short-close", &b"01234567890123456789"[..], 1.5),
        ("/h/short-stall", &b"01234567890123456789"[..], 4.5),
        ("/h/nolength", &b"partial\n"[..], 4.5),
    ] {
        let t =
            Timed::request(e.h.port, &websocket_request("GET", path, ""), Duration::from_secs(8));
        let (hs, _) = heads(&t.bytes());
        assert_eq!(hs.first().map(|h| status(h)), Some(200), "{path}: {:?}", t.text());
        let at = t.when(first).unwrap_or_else(|| panic!("{path}: {:?}", t.text()));
        assert!(at < Duration::from_millis(1000), "{path}: first bytes after {at:?}");
        let closed =
            t.closed.unwrap_or_else(|| panic!("{path}: the client connection was left open"));
        assert!(secs(closed) < end_by, "{path}: closed after {closed:?}");
        // Not a complete response: the chunked body has no last chunk.
        assert!(!t.bytes().ends_with(b"0\r\n\r\n"), "{path}: {:?}", t.text());
    }
    assert!(e.h.error_log().contains("WST01021"));
    plain_http_served(&e.h);
    e.h.stop();
}

#[test]
fn header_bytes_pass_as_they_came() {
    let e = env();
    let t = Timed::request(
        e.h.port,
        &websocket_request("GET", "/h/obs-404", "Connection: close\r\n"),
        Duration::from_secs(3),
    );
    let b = t.bytes();
    assert!(b.starts_with(b"HTTP/1.1 404"), "{:?}", t.text());
    assert!(b.windows(14).any(|w| w == b"X-Name: caf\xe9\r\n"), "{:?}", t.text());
    let mut s = TcpStream::connect(("127.0.0.1", e.h.port)).unwrap();
    s.write_all(&websocket_request("GET", "/h/obs-101", "")).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 101"), "{:?}", String::from_utf8_lossy(&got));
    assert!(
        got.windows(14).any(|w| w == b"X-Name: caf\xe9\r\n"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    s.write_all(b"ping").unwrap();
    let mut echo = [0u8; 4];
    s.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"ping");
    plain_http_served(&e.h);
    e.h.stop();
}

#[test]
fn odd_statuses_and_other_codings_pass_with_their_header() {
    let e = env();
    let t = Timed::request(
        e.h.port,
        &websocket_request("GET", "/h/status-999", "Connection: close\r\n"),
        Duration::from_secs(3),
    );
    let (hs, rest) = heads(&t.bytes());
    assert!(hs[0].starts_with("HTTP/1.1 999 Odd\r\n"), "{}", hs[0]);
    assert_eq!(body_of(&hs[0], &rest), b"odd");
    for path in ["/h/gzip", "/h/gzip-chunked"] {
        let t = Timed::request(
            e.h.port,
            &websocket_request("GET", path, "Connection: close\r\n"),
            Duration::from_secs(4),
        );
        let (hs, rest) = heads(&t.bytes());
        let te = header(&hs[0], "Transfer-Encoding").unwrap_or_default();
        assert!(
            te.to_ascii_lowercase().starts_with("gzip"),
            "{path}: coded bytes need their coding named: {}",
            hs[0]
        );
        assert_eq!(body_of(&hs[0], &rest), GZIP_BYTES, "{path}");
    }
    plain_http_served(&e.h);
    e.h.stop();
}

/// What a client makes of an answer: status line, the headers that matter, decoded body.
fn seen(port: u16, method: &str, path: &str) -> (String, Vec<String>, Vec<u8>) {
    let t = Timed::request(
        port,
        &websocket_request(method, path, "Connection: close\r\n"),
        Duration::from_secs(4),
    );
    let (hs, rest) = heads(&t.bytes());
    let last = hs.last().cloned().unwrap_or_else(|| panic!("{path}: {:?}", t.text()));
    let line = last.lines().next().unwrap().to_string();
    let keep = ["content-type", "content-length", "x-name", "etag", "link"];
    let mut hdrs: Vec<String> = hs
        .iter()
        .flat_map(|h| h.lines().skip(1))
        .filter(|l| {
            l.split(':')
                .next()
                .is_some_and(|n| keep.contains(&n.trim().to_ascii_lowercase().as_str()))
        })
        .map(str::to_string)
        .collect();
    hdrs.sort();
    (line, hdrs, if method == "HEAD" { rest } else { body_of(&last, &rest) })
}

#[test]
fn our_relay_gives_clients_what_mod_proxy_http_gives_them() {
    let e = env();
    let cases = [
        ("HEAD", "head-cl"),
        ("GET", "cl-204"),
        ("GET", "cl-304"),
        ("GET", "obs-404"),
        ("GET", "interim-3"),
        ("GET", "chunked-odd"),
        ("GET", "close-body"),
        ("GET", "gzip-chunked"),
        ("GET", "gzip"),
        ("GET", "status-999"),
    ];
    // ws:// (ours, mod_proxy_http's), then http:// with upgrade= (ours, mod_proxy_http's).
    for (method, script) in cases {
        for (ours, theirs) in [("/h/", "/http/"), ("/hup/", "/hhttp/")] {
            let got = seen(e.h.port, method, &format!("{ours}{script}"));
            let reference = seen(e.h.port, method, &format!("{theirs}{script}"));
            assert_eq!(got, reference, "{method} {ours}{script}: ours vs mod_proxy_http");
        }
    }
    assert_eq!(e.hostile.requests().len(), 4 * cases.len());
    // Each /hup/ refusal was this module's.
    assert_eq!(count(&e.h, "WST01025"), cases.len(), "{}", e.h.error_log());
    plain_http_served(&e.h);
    e.h.stop();
}

/// httpd's memory for `n` clients that ask for a large refusal and never read it.
fn stalled_refusal_cost_kib(module: std::path::PathBuf, n: usize) -> f64 {
    let hostile = Hostile::start();
    let h = Httpd::start(
        Config::new("refusals.conf.in")
            .module(module)
            .var("HOSTILE", format!("127.0.0.1:{}", hostile.port())),
    );
    let total = |h: &Httpd| -> u64 { h.children().iter().map(|p| wskit::httpd::rss_kib(*p)).sum() };
    // Warm every thread and allocator arena up with the same kind of request, read in full.
    let warm: Vec<_> = (0..n)
        .map(|_| {
            let port = h.port;
            std::thread::spawn(move || {
                Timed::request(
                    port,
                    &websocket_request("GET", "/h/close-body", ""),
                    Duration::from_secs(5),
                )
            })
        })
        .collect();
    warm.into_iter().for_each(|w| drop(w.join()));
    std::thread::sleep(Duration::from_millis(500));
    let before = total(&h);
    let stalled: Vec<TcpStream> = (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", h.port)).unwrap();
            s.write_all(&websocket_request("GET", "/h/big", "")).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let after = total(&h);
    drop(stalled);
    h.stop();
    (after as f64 - before as f64) / n as f64
}

#[test]
fn a_stalled_reader_of_a_refusal_costs_no_more_than_with_stock() {
    // prefork serves each connection in a process of its own: what its children's RSS shows
    // there is forking (about 1 MiB a child, measured), not the relay.
    if std::env::var("WST_MPM").is_ok_and(|m| m == "prefork") {
        eprintln!("stalled refusal reader: measured under the threaded MPMs only");
        return;
    }
    let n = 30;
    let ours = stalled_refusal_cost_kib(wskit::httpd::our_module(), n);
    let stock = stalled_refusal_cost_kib(wskit::httpd::stock_module(), n);
    eprintln!("stalled refusal reader: ours {ours:.1} KiB, stock mod_proxy_wstunnel {stock:.1} KiB of httpd RSS each");
    // RSS moves by whole pages and allocator arenas: a tenth and 16 KiB of slack.
    assert!(
        ours <= stock * 1.1 + 16.0,
        "ours {ours:.1} KiB vs stock {stock:.1} KiB per stalled reader"
    );
}

/// The same answers from a wss:// backend: the head is read through mod_ssl, where each
/// blocking read gets what is left of the deadline.
#[test]
fn refusals_from_a_tls_backend_behave_the_same() {
    let dir = TempDir::new("refusals-tls");
    let pki = wskit::Pki::generate(&dir.0);
    let hostile = Hostile::start_tls(&pki.server);
    let h = Httpd::start(
        Config::new("refusals_tls.conf.in")
            .var("HOSTILE", hostile.port())
            .var("CA", pki.ca_file.display()),
    );
    // HEAD: the head at once, no body, the connection serves the next request.
    let mut s = TcpStream::connect(("127.0.0.1", h.port)).unwrap();
    let start = Instant::now();
    s.write_all(&websocket_request("HEAD", "/h/head-cl", "")).unwrap();
    let t = Timed::read_from(&mut s, start, Duration::from_millis(1500));
    let (hs, rest) = heads(&t.bytes());
    assert_eq!(hs.len(), 1, "{:?}", t.text());
    assert_eq!((status(&hs[0]), header(&hs[0], "Content-Length").as_deref()), (200, Some("1000")));
    assert!(rest.is_empty() && t.when(b"\r\n\r\n").unwrap() < Duration::from_secs(1));
    s.write_all(b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert!(Timed::read_from(&mut s, Instant::now(), Duration::from_secs(3))
        .text()
        .ends_with("local index\n"));
    // A trickling head: 502 at the deadline.
    let t = Timed::request(
        h.port,
        &websocket_request("GET", "/h/trickle", ""),
        Duration::from_secs(10),
    );
    let at = t.when(b"HTTP/1.1 502").unwrap_or_else(|| panic!("{:?}", t.text()));
    assert!(at > Duration::from_millis(1800) && at < Duration::from_secs(4), "502 after {at:?}");
    // Interim answers: ten forwarded, then the final one.
    let t = Timed::request(
        h.port,
        &websocket_request("GET", "/h/interim-10", ""),
        Duration::from_secs(3),
    );
    let codes: Vec<u16> = heads(&t.bytes()).0.iter().map(|h| status(h)).collect();
    assert_eq!(codes, [vec![103; 10], vec![200]].concat(), "{:?}", t.text());
    // A chunked answer streams.
    let t = Timed::request(
        h.port,
        &websocket_request("GET", "/h/chunked-slow", "Connection: close\r\n"),
        Duration::from_secs(8),
    );
    let ticks: Vec<f64> =
        (0..4).map(|i| secs(t.when(format!("tick {i}").as_bytes()).unwrap())).collect();
    for (i, at) in ticks.iter().enumerate() {
        assert!((*at - i as f64).abs() < 0.7, "tick {i} at {at:.2} s (all: {ticks:?})");
    }
    // A body cut short: what came, then the end of the connection.
    let t = Timed::request(
        h.port,
        &websocket_request("GET", "/h/short-stall", ""),
        Duration::from_secs(8),
    );
    assert!(t.when(b"01234567890123456789").unwrap() < Duration::from_secs(1), "{:?}", t.text());
    assert!(t.closed.is_some_and(|c| secs(c) < 4.5), "{:?}", t.closed);
    // Header bytes as they came.
    let t = Timed::request(
        h.port,
        &websocket_request("GET", "/h/obs-404", "Connection: close\r\n"),
        Duration::from_secs(3),
    );
    assert!(t.bytes().windows(14).any(|w| w == b"X-Name: caf\xe9\r\n"), "{:?}", t.text());
    plain_http_served(&h);
    h.stop();
}
