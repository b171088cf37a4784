//! TLS on both sides through mod_ssl: wss:// backends (the manual's `/wss2/` example, verified
//! against a CA made at run time), and clients speaking wss:// to httpd, to ws:// and wss://
//! backends. Filtered ends: the bytes pass through mod_ssl's filters.

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use wskit::backend::Event;
use wskit::{raw, Pki};

struct Env {
    pki: Pki,
    plain: Backend,
    tls: Backend,
    wrong_name: Backend,
    rogue: Backend,
    h: Httpd,
    _dir: TempDir,
}

fn env(fallback: &str) -> Env {
    let dir = TempDir::new("pki");
    let pki = Pki::generate(&dir.0);
    let plain = Backend::start("plain");
    let tls = Backend::start_tls("tls", &pki.server);
    let wrong_name = Backend::start_tls("wrong-name", &pki.wrong_name);
    let rogue = Backend::start_tls("rogue", &pki.rogue);
    let h = Httpd::start(
        Config::new("tls.conf.in")
            .ports(3)
            .var("FALLBACK", fallback)
            .var("BACKEND", format!("127.0.0.1:{}", plain.port()))
            .var("TLSBACKEND", tls.port())
            .var("WRONGNAME", wrong_name.port())
            .var("ROGUE", rogue.port())
            .var("CA", pki.ca_file.display())
            .var("SERVERCERT", pki.server.cert_file.display())
            .var("SERVERKEY", pki.server.key_file.display()),
    );
    Env { pki, plain, tls, wrong_name, rogue, h, _dir: dir }
}

#[tokio::test(flavor = "multi_thread")]
async fn manual_wss_backend_example() {
    for fallback in ["Off", "On"] {
        let e = env(fallback);
        let port = e.h.ports[0];
        assert_eq!(round_trip(&format!("ws://127.0.0.1:{port}/wss2/chat")).await, "tls");
        assert!(
            e.tls.requests().iter().any(|r| r.starts_with("GET /chat HTTP/1.1")),
            "{:?}",
            e.tls.requests()
        );
        if fallback == "Off" {
            assert!(
                e.h.wait_log("WST01014", Duration::from_secs(5)),
                "our handler did not run:\n{}",
                e.h.error_log()
            );
        }
        // Big messages through mod_ssl's filters on the backend side.
        let (mut ws, _) = connect(&format!("ws://127.0.0.1:{port}/wss2/big")).await.unwrap();
        let m = Message::binary(payload(4 << 20, 7));
        assert!(echo(&mut ws, m.clone()).await == m);
        if fallback == "On" {
            // mod_proxy_http's tunnel outlives a graceful stop while the client stays.
            drop(ws);
            e.h.stop();
            continue;
        }
        // A graceful stop while the client still holds its TLS-backed tunnel: ours is
        // closed within GracefulShutdownTimeout (2 s), so the child exits by itself.
        let t0 = std::time::Instant::now();
        e.h.stop();
        assert!(t0.elapsed() < Duration::from_secs(4), "graceful stop took {:?}", t0.elapsed());
        drop(ws);
    }
}

#[test]
fn wss_backend_without_sslproxyengine_is_500_naming_the_directive() {
    let e = env("Off");
    let (resp, _) = raw::request(e.h.port, &raw::handshake("/nossl/x", ""));
    assert_eq!(resp.status, 500, "{}", resp.head);
    assert!(e.h.wait_log("SSLProxyEngine On", Duration::from_secs(5)), "{}", e.h.error_log());
    assert!(e.tls.requests().is_empty(), "the backend must see nothing: {:?}", e.tls.requests());
    e.h.stop();
}

#[test]
fn backend_certificate_failing_verification_is_never_a_tunnel() {
    let e = env("Off");
    for (path, b) in [("/wrongname/x", &e.wrong_name), ("/rogue/x", &e.rogue)] {
        let (resp, _) = raw::request(e.h.ports[0], &raw::handshake(path, ""));
        // mod_proxy's answer to a failed TLS handshake with a backend (ap_proxy_pass_brigade).
        assert_eq!(resp.status, 500, "{path}: {}", resp.head);
        assert!(
            b.requests().is_empty(),
            "{path}: an unverified backend got the request: {:?}",
            b.requests()
        );
    }
    let log = e.h.stop();
    assert!(log.contains("AH00898") && log.contains("WST01013"), "the failure is logged:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_front_end_to_ws_and_wss_backends() {
    let e = env("Off");
    let port = e.h.ports[1];
    for (path, name) in [("ws2", "plain"), ("wss2", "tls")] {
        let url = format!("wss://localhost:{port}/{path}/front");
        let (ws, resp) =
            connect_tls(&url, &e.pki).await.unwrap_or_else(|err| panic!("{url}: {err}"));
        assert_eq!(resp.status(), 101);
        assert_eq!(resp.headers().get("x-backend").unwrap(), name);
        // 16 MiB each way at once: nobody reads until everything is sent.
        let (mut tx, mut rx) = ws.split();
        let writer = tokio::spawn(async move {
            for i in 0..16u8 {
                tx.send(Message::binary(payload(1 << 20, i))).await.unwrap();
            }
            tx
        });
        let reader = async {
            for i in 0..16u8 {
                let m = rx.next().await.unwrap().unwrap();
                assert!(
                    m == Message::binary(payload(1 << 20, i)),
                    "{url}: message {i} corrupted or out of order"
                );
            }
        };
        tokio::time::timeout(Duration::from_secs(120), reader).await.expect("TLS tunnel stalled");
        let mut tx = writer.await.unwrap();
        // The close handshake, code and reason intact end to end.
        let close = CloseFrame { code: CloseCode::Away, reason: "bye from client".into() };
        tx.send(Message::Close(Some(close.clone()))).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), rx.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got, Message::Close(Some(close)), "{url}");
        let end = tokio::time::timeout(Duration::from_secs(10), rx.next())
            .await
            .expect("no end after close");
        assert!(matches!(end, None | Some(Err(_))), "{end:?}");
    }
    assert!(e.plain.requests().iter().any(|r| r.starts_with("GET /front HTTP/1.1")));
    e.h.stop();
}

/// Raw bytes through a TLS front end: a WebSocket handshake, then TLS records both ways.
async fn tls_tunnel_on(
    e: &Env,
    port: u16,
    path: &str,
) -> (tokio_rustls::client::TlsStream<tokio::net::TcpStream>, Vec<u8>) {
    common::tls_tunnel(port, &e.pki, path).await
}

async fn tls_tunnel(
    e: &Env,
    path: &str,
) -> (tokio_rustls::client::TlsStream<tokio::net::TcpStream>, Vec<u8>) {
    tls_tunnel_on(e, e.h.ports[1], path).await
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_front_end_half_close_each_way() {
    let e = env("Off");
    for backend in ["ws2", "wss2"] {
        // Client → backend: everything sent before the client's close_notify+FIN arrives,
        // and the answer still comes back.
        let (mut s, rest) = tls_tunnel(&e, &format!("/{backend}/raw-count")).await;
        assert!(rest.is_empty());
        let data = payload(3 << 20, 1);
        s.write_all(&data).await.unwrap();
        s.shutdown().await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut answer))
            .await
            .expect("no answer after half-close")
            .ok();
        assert_eq!(
            String::from_utf8_lossy(&answer),
            format!("got {} bytes", data.len()),
            "{backend}"
        );

        // Backend → client: the backend's FIN reaches the client after its bytes; what the
        // client sends afterwards still reaches the backend.
        let (mut s, mut got) = tls_tunnel(&e, &format!("/{backend}/raw-fin-first")).await;
        let mut chunk = [0u8; 64];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
                .await
                .expect("no EOF from backend")
            {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
        assert_eq!(got, b"bye", "{backend}");
        let after = payload(100_000, 2);
        if s.write_all(&after).await.is_ok() {
            let _ = s.shutdown().await;
        }
        let b = if backend == "ws2" { &e.plain } else { &e.tls };
        let seen = b.wait_for(Duration::from_secs(10), |ev| matches!(ev, Event::AfterFin(_)));
        assert!(
            matches!(seen, Some(Event::AfterFin(n)) if n == after.len()),
            "{backend}: after its FIN the backend got {seen:?}"
        );
        b.clear_events();
    }
    e.h.stop();
}

/// A wss:// client that takes nothing while the backend sends is cut off after the
/// write-stall limit (Timeout 2 in that virtual host), as on a plain front end (WST02005),
/// and the log names the client.
#[tokio::test(flavor = "multi_thread")]
async fn a_tls_client_that_never_reads_is_cut_off_after_the_write_stall() {
    let e = env("Off");
    let (s, _) = tls_tunnel_on(&e, e.h.ports[2], "/ws2/raw-flood-1000000000").await;
    let t0 = std::time::Instant::now();
    let h = &e.h;
    let ended = tokio::task::block_in_place(|| h.wait_log("WST02005", Duration::from_secs(20)));
    let took = t0.elapsed();
    assert!(ended, "the tunnel outlived the write-stall limit:\n{}", h.error_log());
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(12),
        "ended after {took:?}"
    );
    let log = h.error_log();
    let line = log.lines().find(|l| l.contains("WST02005")).unwrap_or_default();
    assert!(line.contains("client took no data for 2s"), "{line}");
    // Far less than the backend had to send went through: the rest waited for nobody.
    let to_client: u64 = line
        .split([',', ';'])
        .find_map(|p| p.trim().strip_suffix(" bytes backend to client"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(to_client < 256 << 20, "{line}");
    drop(s);
    e.h.stop();
}
