//! docs/DESIGN.md §4, the error and edge table: each row is a test, against a real httpd with our
//! module and the scripted backend.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};
use wskit::backend::Event;
use wskit::raw;

struct Env {
    b: Backend,
    alt: Vec<Backend>,
    h: Httpd,
    _dead: wskit::httpd::DeadPort,
}

fn env() -> Env {
    let dead = wskit::httpd::DeadPort::reserve();
    let b = Backend::start("main");
    let alt: Vec<Backend> = (0..4).map(|i| Backend::start(&format!("alt{i}"))).collect();
    let h = Httpd::start(
        Config::new("edges.conf.in")
            .ports(1)
            .var("BACKEND", format!("127.0.0.1:{}", b.port()))
            .var("BACKEND_ALT", format!("127.0.0.1:{}", alt[0].port()))
            .var("BACKEND_ALT2", format!("127.0.0.1:{}", alt[1].port()))
            .var("BACKEND_ALT3", format!("127.0.0.1:{}", alt[2].port()))
            .var("BACKEND_ALT4", format!("127.0.0.1:{}", alt[3].port()))
            .var("DEADPORT", &dead),
    );
    Env { b, alt, h, _dead: dead }
}

fn saw(b: &Backend, path_prefix: &str) -> bool {
    b.requests()
        .iter()
        .any(|r| r.split_whitespace().nth(1).is_some_and(|p| p.starts_with(path_prefix)))
}

#[test]
fn no_upgrade_on_ws_alias_falls_through_to_next_http_alias() {
    let e = env();
    let (resp, body) = raw::get(e.h.port, "/both/page", "");
    assert_eq!((resp.status, body.as_str()), (200, "plain http from main\n"));
    e.h.stop();
}

#[test]
fn no_upgrade_on_ws_only_alias_is_served_locally() {
    let e = env();
    let (resp, body) = raw::get(e.h.port, "/wsonly/page.txt", "");
    assert_eq!((resp.status, body.as_str()), (200, "local file, not proxied\n"));
    assert!(!saw(&e.b, "/page.txt"));
    e.h.stop();
}

#[test]
fn no_upgrade_reaching_the_handler_gets_426() {
    let e = env();
    for path in ["/rw/x", "/sethandler/x", "/bal/x"] {
        let (resp, _) = raw::get(e.h.port, path, "");
        assert_eq!(resp.status, 426, "{path}: {}", resp.head);
        assert_eq!(resp.header("Upgrade").as_deref(), Some("WebSocket"), "{path}");
        let conn = resp.header("Connection").unwrap_or_default().to_ascii_lowercase();
        assert!(conn.split(',').any(|t| t.trim() == "upgrade"), "{path}: Connection: {conn}");
    }
    assert!(e.b.requests().is_empty(), "{:?}", e.b.requests());
    e.h.stop();
}

#[test]
fn h2c_and_other_protocols_are_refused_without_touching_the_backend() {
    let e = env();
    for (path, up) in
        [("/echo/smuggle", "h2c"), ("/echo/smuggle", "foo"), ("/proto-any/smuggle", "h2c")]
    {
        let (resp, _) = raw::request(e.h.port, &raw::upgrade_request(path, up, "1.1"));
        assert_eq!(resp.status, 426, "{path} {up}");
    }
    assert!(!saw(&e.b, "/smuggle") && !saw(&e.alt[1], "/raw-echo/smuggle"));
    // HTTP/1.0 cannot upgrade.
    let (resp, _) = raw::request(e.h.port, &raw::upgrade_request("/echo/x10", "websocket", "1.0"));
    assert_eq!(resp.status, 426);
    e.h.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_backend_port_gives_503() {
    let e = env();
    assert_eq!(refused_status(&e.h.url("/dead/")).await, 503);
    e.h.stop();
}

#[test]
fn non_101_answers_reach_the_client_unchanged_and_nothing_is_tunnelled() {
    let e = env();
    for code in [200u16, 404, 302, 426] {
        let mut s = raw::connect(e.h.port);
        s.write_all(raw::handshake(&format!("/echo/status/{code}"), "").as_bytes()).unwrap();
        let (resp, body) = raw::read_full_response(&mut s);
        assert_eq!(resp.status, code, "{}", resp.head);
        assert_eq!(body, format!("backend main says {code}\n"));
        assert_eq!(resp.header("X-Backend").as_deref(), Some("main"));
        if code == 302 {
            assert!(resp.header("Location").unwrap().ends_with("/elsewhere"));
        }
        // CVE-2019-17567: what the client sends next is a new request for httpd, subject to
        // its access control, never raw bytes to the backend.
        s.write_all(b"GET /echo/admin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let (next, _) = raw::read_full_response(&mut s);
        assert_eq!(next.status, 403, "{code}: {}", next.head);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(!e.b.requests().iter().any(|r| r.contains("/admin")), "{:?}", e.b.requests());
    e.h.stop();
}

#[test]
fn wrong_101_or_silent_close_gives_502() {
    let e = env();
    for path in ["/echo/wrong101", "/echo/noupgrade101", "/echo/close"] {
        let (resp, _) = raw::request(e.h.port, &raw::handshake(path, ""));
        assert_eq!(resp.status, 502, "{path}");
    }
    e.h.stop();
}

#[test]
fn wss_backend_without_sslproxyengine_gives_500_and_says_why() {
    let e = env();
    let (resp, _) = raw::request(e.h.port, &raw::handshake("/wss-noengine/", ""));
    assert_eq!(resp.status, 500);
    assert!(e.h.wait_log("SSLProxyEngine On", Duration::from_secs(5)), "{}", e.h.error_log());
    e.h.stop();
}

#[test]
fn client_frames_in_the_handshake_segment_are_relayed_in_order() {
    let e = env();
    let mut s = raw::connect(e.h.port);
    let mut bytes = raw::handshake("/echo/early", "").into_bytes();
    bytes.extend(raw::client_frame(1, b"first"));
    bytes.extend(raw::client_frame(1, b"second"));
    s.write_all(&bytes).unwrap();
    let resp = raw::read_response(&mut s);
    assert_eq!(resp.status, 101);
    assert_eq!(
        resp.header("Sec-WebSocket-Accept").as_deref(),
        Some(wskit::backend::accept_key(raw::KEY).as_str())
    );
    let mut pre = resp.rest;
    assert_eq!(raw::read_small_frame(&mut s, &mut pre), (1, b"first".to_vec()));
    assert_eq!(raw::read_small_frame(&mut s, &mut pre), (1, b"second".to_vec()));
    e.h.stop();
}

#[test]
fn backend_frames_right_behind_its_101_are_relayed_first() {
    let e = env();
    let mut s = raw::connect(e.h.port);
    s.write_all(raw::handshake("/echo/burst", "").as_bytes()).unwrap();
    let resp = raw::read_response(&mut s);
    assert_eq!(resp.status, 101);
    let mut pre = resp.rest;
    assert_eq!(raw::read_small_frame(&mut s, &mut pre), (1, b"hello-from-backend".to_vec()));
    s.write_all(&raw::client_frame(1, b"after")).unwrap();
    assert_eq!(raw::read_small_frame(&mut s, &mut pre), (1, b"after".to_vec()));
    e.h.stop();
}

#[test]
fn client_half_close_reaches_backend_after_all_bytes_and_the_answer_still_flows() {
    let e = env();
    let mut s = raw::connect(e.h.port);
    s.write_all(raw::handshake("/echo/raw-count", "").as_bytes()).unwrap();
    let resp = raw::read_response(&mut s);
    assert_eq!(resp.status, 101);
    // Large enough that httpd is still holding some of it when the tunnel starts.
    let data = vec![b'z'; 4 << 20];
    s.write_all(&data).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = resp.rest;
    s.read_to_end(&mut got).unwrap();
    assert_eq!(String::from_utf8_lossy(&got), "got 4194304 bytes");
    e.h.stop();
}

#[test]
fn backend_half_close_reaches_client_and_the_client_can_still_send() {
    let e = env();
    let mut s = raw::connect(e.h.port);
    s.write_all(raw::handshake("/echo/raw-fin-first", "").as_bytes()).unwrap();
    let resp = raw::read_response(&mut s);
    assert_eq!(resp.status, 101);
    let mut got = resp.rest;
    s.read_to_end(&mut got).unwrap(); // ends with the backend's FIN
    assert_eq!(got, b"bye");
    s.write_all(&vec![b'q'; 5000]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let ev = e.b.wait_for(Duration::from_secs(5), |ev| matches!(ev, Event::AfterFin(_)));
    assert!(matches!(ev, Some(Event::AfterFin(5000))), "{ev:?}");
    e.h.stop();
}

#[test]
fn a_reset_on_either_side_closes_the_other_promptly() {
    let e = env();
    // Client resets: the backend sees its connection end.
    let mut s = raw::connect(e.h.port);
    s.write_all(raw::handshake("/echo/raw-hold", "").as_bytes()).unwrap();
    assert_eq!(raw::read_response(&mut s).status, 101);
    let t0 = Instant::now();
    drop(wskit::backend::socket_linger0(s));
    let ev = e.b.wait_for(Duration::from_secs(5), |ev| matches!(ev, Event::Eof(_)));
    let Some(Event::Eof(at)) = ev else { panic!("backend never saw the end") };
    assert!(at.duration_since(t0) < Duration::from_secs(2));
    // Backend resets: the client sees its connection end.
    let mut s = raw::connect(e.h.port);
    s.write_all(raw::handshake("/echo/raw-rst", "").as_bytes()).unwrap();
    assert_eq!(raw::read_response(&mut s).status, 101);
    s.write_all(b"x").unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 16];
    let r = s.read(&mut buf);
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    e.h.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_timeout_closes_both_sides_and_activity_keeps_the_tunnel() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let e = env();
    let url = format!("ws://127.0.0.1:{}/", e.h.ports[0]);
    // Activity every 400 ms keeps a 1 s idle timeout from firing.
    let (mut ws, _) = connect(&url).await.unwrap();
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            echo(&mut ws, Message::text(format!("m{i}"))).await,
            Message::text(format!("m{i}"))
        );
    }
    // Silence: closed after about a second.
    let t0 = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("idle tunnel was not closed");
    assert!(matches!(end, None | Some(Err(_))), "{end:?}");
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "{waited:?}");
    assert!(e.h.wait_log("WST02004", Duration::from_secs(5)));
    // Without the directive (main server) an idle tunnel stays up.
    let (mut ws, _) = connect(&e.h.url("/echo/")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(echo(&mut ws, Message::text("still here")).await, Message::text("still here"));
    e.h.stop();
}

#[test]
fn control_characters_in_the_forwarded_path_give_403() {
    let e = env();
    let (resp, _) = raw::request(e.h.port, &raw::handshake("/ctl/a%0d%0aInjected:%20x", ""));
    assert_eq!(resp.status, 403);
    let (resp, _) = raw::request(e.h.port, &raw::handshake("/ctl/a%20b", ""));
    assert_eq!(resp.status, 403);
    assert!(!saw(&e.b, "/a"));
    e.h.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn request_headers_go_through_mod_proxy() {
    let e = env();
    let mut s = raw::connect(e.h.port);
    s.write_all(
        raw::handshake(
            "/echo/hdr",
            "X-Forwarded-For: 10.9.9.9\r\nConnection: Upgrade, X-Forwarded-For\r\n",
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(raw::read_response(&mut s).status, 101);
    let req =
        e.b.requests()
            .into_iter()
            .find(|r| r.starts_with("GET /hdr "))
            .expect("backend saw the handshake");
    assert!(req.contains("X-Added: by-httpd"), "{req}");
    assert!(req.contains("X-Forwarded-For: 127.0.0.1"), "CVE-2022-31813: {req}");
    assert!(req.contains(&format!("Host: 127.0.0.1:{}", e.b.port())), "{req}");
    assert!(req.contains("Upgrade: websocket") && req.contains("Connection: Upgrade"), "{req}");
    assert!(req.contains("Sec-WebSocket-Key: "), "{req}");
    e.h.stop();
}

#[test]
fn upgrade_parameter_variants() {
    let e = env();
    let tunnel = |path: &str, up: &str| {
        let mut s = raw::connect(e.h.port);
        s.write_all(raw::upgrade_request(path, up, "1.1").as_bytes()).unwrap();
        let resp = raw::read_response(&mut s);
        (s, resp)
    };
    // A named protocol: accepted and relayed byte for byte; WebSocket is not.
    let (mut s, resp) = tunnel("/proto-foo/x", "foo");
    assert_eq!(resp.status, 101, "{}", resp.head);
    assert_eq!(resp.header("Upgrade").as_deref(), Some("foo"));
    s.write_all(b"raw bytes, not frames").unwrap();
    let mut buf = [0u8; 21];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"raw bytes, not frames");
    let (_, resp) = tunnel("/proto-foo/x", "websocket");
    assert_eq!(resp.status, 426);
    assert_eq!(resp.header("Upgrade").as_deref(), Some("foo"));
    // A list: any of its members.
    assert_eq!(tunnel("/proto-list/x", "bar").1.status, 101);
    assert_eq!(tunnel("/proto-list/x", "baz").1.status, 426);
    // ANY: the client's protocol is forwarded as asked.
    assert_eq!(tunnel("/proto-any/x", "chat").1.status, 101);
    assert!(
        e.alt[1].requests().iter().any(|r| r.contains("Upgrade: chat")),
        "{:?}",
        e.alt[1].requests()
    );
    // NONE: no check of the client's header; the backend is asked for WebSocket.
    let (_, resp) = tunnel("/proto-none/y", "whatever");
    assert_eq!(resp.status, 101, "{}", resp.head);
    assert!(
        e.alt[2].requests().iter().any(|r| r.contains("Upgrade: WebSocket")),
        "{:?}",
        e.alt[2].requests()
    );
    e.h.stop();
}
