//! HTTP/2 front ends: WebSockets over HTTP/2 (RFC 8441 extended CONNECT, mod_http2 with
//! `H2WebSockets on`), cleartext (h2c prior knowledge) and over TLS (ALPN h2), to ws:// and
//! wss:// backends. mod_http2 hands each such stream to the proxy as an HTTP/1.1 upgrade
//! request on a secondary connection; our module tunnels it through httpd's filters.
//! Runs under every MPM; under prefork mod_http2 keeps out of TLS's ALPN (see below).

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use wskit::h2ws::{self, H2Outcome};
use wskit::Pki;

async fn open(port: u16, tls: Option<&Pki>, path: &str) -> Result<H2Outcome, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let fut = async {
        match tls {
            None => h2ws::connect(tcp, &format!("http://localhost:{port}{path}"), ws_config())
                .await
                .map_err(|e| e.to_string()),
            Some(pki) => {
                let connector =
                    tokio_rustls::TlsConnector::from(pki.client_config(&[b"h2", b"http/1.1"]));
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let s = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
                if s.get_ref().1.alpn_protocol() != Some(b"h2") {
                    // The server declined HTTP/2: no extended CONNECT on this connection.
                    return Ok(H2Outcome::NotEnabled);
                }
                h2ws::connect(s, &format!("https://localhost:{port}{path}"), ws_config())
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), fut).await.expect("HTTP/2 WebSocket set-up hung")
}

#[tokio::test(flavor = "multi_thread")]
async fn websockets_over_http2_front_ends() {
    let dir = TempDir::new("pki");
    let pki = Pki::generate(&dir.0);
    let plain = Backend::start("plain");
    let tls = Backend::start_tls("tls", &pki.server);
    let h = Httpd::start(
        Config::new("h2.conf.in")
            .ports(1)
            .var("BACKEND", format!("127.0.0.1:{}", plain.port()))
            .var("TLSBACKEND", tls.port())
            .var("CA", pki.ca_file.display())
            .var("SERVERCERT", pki.server.cert_file.display())
            .var("SERVERKEY", pki.server.key_file.display()),
    );
    let front_ends = [("h2c", h.port, None), ("h2", h.ports[0], Some(&pki))];
    for (front, port, tls_front) in front_ends {
        for (path, backend) in [("/ws2/over-h2", &plain), ("/wss2/over-h2", &tls)] {
            let what = format!("{front} front end, {path}");
            let outcome = open(port, tls_front, path).await;
            let mut ws = match outcome {
                Ok(H2Outcome::Open(ws)) => ws,
                // mod_http2 does not support prefork ("AH10034"): it still serves h2c prior
                // knowledge there, but takes itself out of TLS's ALPN, so browsers and this
                // client stay on HTTP/1.1 over TLS. A clean refusal, as it should be.
                Ok(H2Outcome::NotEnabled) if front == "h2" && mpm() == "prefork" => continue,
                Ok(H2Outcome::NotEnabled) => {
                    panic!("{what}: server did not enable extended CONNECT")
                }
                Ok(H2Outcome::Refused(s, body)) => {
                    panic!("{what}: refused with {s}: {body}\n{}", h.error_log())
                }
                Err(e) => panic!("{what}: {e}\n{}", h.error_log()),
            };
            for m in [Message::text("hello over h2"), Message::binary(payload(1 << 20, 3))] {
                ws.send(m.clone()).await.unwrap();
                let got = tokio::time::timeout(Duration::from_secs(30), ws.next())
                    .await
                    .expect("echo hung")
                    .unwrap()
                    .unwrap();
                assert!(got == m, "{what}: echo differs");
            }
            ws.close(None).await.unwrap();
            let end = tokio::time::timeout(Duration::from_secs(10), async {
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_close() {
                        break;
                    }
                }
            });
            end.await.expect("close handshake hung");
            assert!(
                backend.requests().iter().any(|r| r.starts_with("GET /over-h2 HTTP/1.1")),
                "{what}: {:?}",
                backend.requests()
            );
            backend.clear_events();
        }
    }
    let log = h.stop();
    assert!(log.contains("WST02006"), "HTTP/2 streams must take the filtered path:\n{log}");
}

/// A graceful stop ends a WebSocket over an HTTP/2 stream politely too: the client gets
/// Close 1001 through mod_http2 (the stream takes the filtered path, as over TLS).
#[tokio::test(flavor = "multi_thread")]
async fn a_graceful_stop_closes_an_http2_websocket_with_1001() {
    graceful_stop_closes_an_http2_websocket(false).await;
}

/// The same with a message every 10 ms in each direction until the Close (mod_proxy's tunnel
/// never sees a quiet slice: the watch filter on the HTTP/2 stream ends it).
#[tokio::test(flavor = "multi_thread")]
async fn a_graceful_stop_closes_a_busy_http2_websocket_with_1001() {
    graceful_stop_closes_an_http2_websocket(true).await;
}

async fn graceful_stop_closes_an_http2_websocket(busy: bool) {
    let dir = TempDir::new("pki-drain");
    let pki = Pki::generate(&dir.0);
    let plain = Backend::start("plain");
    let tls = Backend::start_tls("tls", &pki.server);
    let mut h = Httpd::start(
        Config::new("h2.conf.in")
            .ports(1)
            .var("BACKEND", format!("127.0.0.1:{}", plain.port()))
            .var("TLSBACKEND", tls.port())
            .var("CA", pki.ca_file.display())
            .var("SERVERCERT", pki.server.cert_file.display())
            .var("SERVERKEY", pki.server.key_file.display()),
    );
    let Ok(H2Outcome::Open(mut ws)) = open(h.port, None, "/ws2/drain-h2").await else {
        panic!("no h2c WebSocket")
    };
    let m = Message::text("before the stop");
    ws.send(m.clone()).await.unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap(),
        m
    );
    let (mut tx, mut rx) = ws.split();
    let writer = tokio::spawn(async move {
        while busy && tx.send(Message::text("x".repeat(512))).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tx
    });
    h.signal(libc::SIGWINCH);
    let mut echoes = 0;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(5), rx.next())
            .await
            .expect("no close within 5 s")
        {
            Some(Ok(Message::Close(c))) => break c,
            Some(Ok(Message::Text(_))) => echoes += 1,
            Some(Ok(_)) => {}
            other => panic!("expected Close 1001, got {other:?}\n{}", h.error_log()),
        }
    };
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1001), "after {echoes} echoes");
    assert!(!busy || echoes > 50, "only {echoes} echoes during the drain");
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(3), rx.next()).await {}
    writer.abort();
    h.wait_exit(Duration::from_secs(15)).expect("httpd did not stop");
    assert!(
        plain.events().iter().any(|e| matches!(e, wskit::backend::Event::Close(Some(1001)))),
        "{:?}",
        plain.events()
    );
    let log = h.stop();
    assert!(log.contains("WST02014"), "{log}");
}
