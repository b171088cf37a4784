//! HTTP/2 front ends: WebSockets over HTTP/2 (RFC 8441 extended CONNECT, mod_http2 with
//! `H2WebSockets on`), cleartext (h2c prior knowledge) and over TLS (ALPN h2), to ws:// and
//! wss:// backends. mod_http2 hands each such stream to the proxy as an HTTP/1.1 upgrade
//! request on a secondary connection; our module tunnels it through httpd's filters.
//! Runs under every MPM; under prefork mod_http2 keeps out of TLS's ALPN (see below).

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use wskit::h2ws::{self, H2Outcome};
use wskit::Pki;

/// The h2.conf.in server: h2c on the main port, h2 over TLS on `ports[0]`, h2c with the
/// module's Pings on `ports[1]`.
fn h2_site(name: &str) -> TlsSite {
    tls_site(name, "h2.conf.in", |c| c.ports(2))
}

/// Something an h2 connection runs over: TCP or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A connection to the front end and its URL scheme: cleartext, or TLS with ALPN `h2`; None
/// where the server declined HTTP/2 over TLS.
async fn front_end(port: u16, tls: Option<&Pki>) -> Result<Option<(Box<dyn Io>, &str)>, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let Some(pki) = tls else { return Ok(Some((Box::new(tcp), "http"))) };
    let connector = tokio_rustls::TlsConnector::from(pki.client_config(&[b"h2", b"http/1.1"]));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let s = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    // The server declined HTTP/2: no extended CONNECT on this connection.
    Ok((s.get_ref().1.alpn_protocol() == Some(b"h2"))
        .then(|| (Box::new(s) as Box<dyn Io>, "https")))
}

/// Asks the front end for a WebSocket at `path` over an HTTP/2 stream with `connect`
/// (`h2ws::connect` or `connect_raw`), given the connection and the URL.
async fn on_front_end<O>(
    port: u16,
    tls: Option<&Pki>,
    path: &str,
    connect: impl AsyncFnOnce(Box<dyn Io>, String) -> Result<H2Outcome<O>, h2ws::Error>,
) -> Result<H2Outcome<O>, String> {
    let fut = async {
        let Some((io, scheme)) = front_end(port, tls).await? else {
            return Ok(H2Outcome::NotEnabled);
        };
        connect(io, format!("{scheme}://localhost:{port}{path}")).await.map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(20), fut).await.expect("HTTP/2 WebSocket set-up hung")
}

/// A WebSocket over an HTTP/2 stream of the front end, spoken by tungstenite.
async fn open(port: u16, tls: Option<&Pki>, path: &str) -> Result<H2Outcome, String> {
    on_front_end(port, tls, path, async |io, url| h2ws::connect(io, &url, ws_config()).await).await
}

/// The same with `headers` in the CONNECT: the stream as raw WebSocket frames, and the answer's
/// headers.
async fn open_raw(
    port: u16,
    tls: Option<&Pki>,
    path: &str,
    headers: &[(&'static str, &str)],
) -> Result<H2Outcome<(tokio::io::DuplexStream, h2ws::HeaderMap)>, String> {
    on_front_end(port, tls, path, async |io, url| h2ws::connect_raw(io, &url, headers).await).await
}

#[tokio::test(flavor = "multi_thread")]
async fn websockets_over_http2_front_ends() {
    let TlsSite { h, pki, b: plain, tb: tls, _dir } = h2_site("h2");
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

/// A browser's permessage-deflate over HTTP/2 streams (RFC 8441 with RFC 7692), strict frames
/// on: the offer in the CONNECT reaches the backend as `Sec-WebSocket-Extensions`, its answer
/// comes back in the 200, and compressed messages (RSV1) pass both ways through mod_http2 and
/// the module, under one compression context per direction.
#[tokio::test(flavor = "multi_thread")]
async fn permessage_deflate_over_http2_streams() {
    use tokio::io::AsyncWriteExt;
    use wskit::deflate::{compressed, Deflater, Inflater};
    use wskit::raw;
    let TlsSite { h, pki, b: plain, _dir, .. } = h2_site("h2-deflate");
    let offer = [("sec-websocket-extensions", "permessage-deflate; client_max_window_bits")];
    let mut streams = 0;
    for (front, port, tls_front) in [("h2c", h.port, None), ("h2", h.ports[0], Some(&pki))] {
        let (pipe, answer) = match open_raw(port, tls_front, "/ws2/deflate-h2", &offer).await {
            Ok(H2Outcome::Open(open)) => open,
            // As in websockets_over_http2_front_ends: no h2 over TLS under prefork.
            Ok(H2Outcome::NotEnabled) if front == "h2" && mpm() == "prefork" => continue,
            Ok(H2Outcome::NotEnabled) => panic!("{front}: server did not enable extended CONNECT"),
            Ok(H2Outcome::Refused(s, body)) => panic!("{front}: {s}: {body}\n{}", h.error_log()),
            Err(e) => panic!("{front}: {e}\n{}", h.error_log()),
        };
        let ext = answer.get("sec-websocket-extensions").and_then(|v| v.to_str().ok());
        assert_eq!(ext, Some("permessage-deflate"), "{front}: {answer:?}");
        streams += 1;
        let (mut rd, mut wr) = tokio::io::split(pipe);
        let (mut tx, mut rx, mut buf) = (Deflater::default(), Inflater::default(), Vec::new());
        let mut next_frame = async || {
            let next = raw::next_frame(&mut rd, &mut buf);
            let f = tokio::time::timeout(Duration::from_secs(20), next).await.expect("echo hung");
            f.unwrap().unwrap_or_else(|| panic!("{front}: the stream ended"))
        };
        for i in 0..5 {
            let msg = format!("message {i} over {front}; ").repeat(100 << i);
            let f = compressed(raw::client_frame(1, &tx.compress(msg.as_bytes())));
            wr.write_all(&f).await.unwrap();
            let echo = next_frame().await;
            assert_eq!((echo.rsv, echo.opcode), (0x40, 1), "{front}: message {i}");
            let same = rx.inflate(&echo.payload).is_some_and(|m| m == msg.as_bytes());
            assert!(same, "{front}: message {i} came back otherwise");
        }
        wr.write_all(&raw::client_frame(8, &1000u16.to_be_bytes())).await.unwrap();
        let close = next_frame().await;
        assert_eq!((close.opcode, &close.payload[..]), (8, &1000u16.to_be_bytes()[..]), "{front}");
    }
    assert_eq!(plain.inflated().len(), 5 * streams, "{:?}", plain.events());
    let log = h.stop();
    assert!(!log.contains("broke a framing rule"), "{log}");
    assert_eq!(log.matches("\"GET /ws2/deflate-h2 HTTP/").count(), streams, "{log}");
}

/// The module's Pings over an HTTP/2 stream (h2c, every 300 ms, timeout 300 ms): a client
/// that answers them stays through 1.5 s of silence and its Pongs never reach the backend;
/// one that stops answering (its h2 connection still alive: mod_http2 answers h2 PINGs) is
/// taken for dead, and the backend gets Close 1001.
#[tokio::test(flavor = "multi_thread")]
async fn the_modules_pings_keep_an_http2_websocket_and_find_it_dead() {
    use tokio::io::AsyncWriteExt;
    use wskit::backend::Event;
    use wskit::raw;
    let TlsSite { h, b: plain, _dir, .. } = h2_site("h2-pings");
    let (pipe, _) = match open_raw(h.ports[1], None, "/ws2/pings-h2", &[]).await {
        Ok(H2Outcome::Open(open)) => open,
        Ok(_) => panic!("no h2c WebSocket\n{}", h.error_log()),
        Err(e) => panic!("{e}\n{}", h.error_log()),
    };
    let (mut rd, mut wr) = tokio::io::split(pipe);
    let mut buf = Vec::new();
    let (quiet_until, mut pings) = (Instant::now() + Duration::from_millis(1500), 0);
    while let Some(left) = quiet_until.checked_duration_since(Instant::now()) {
        let Ok(f) = tokio::time::timeout(left, raw::next_frame(&mut rd, &mut buf)).await else {
            break;
        };
        let f = f.unwrap().expect("the stream ended while the client answered every Ping");
        assert_eq!((f.opcode, f.payload.len()), (9, 12), "only the module's Pings come");
        pings += 1;
        wr.write_all(&raw::client_frame(10, &f.payload)).await.unwrap();
    }
    assert!(pings >= 3, "{pings} Pings in 1.5 s at 300 ms");
    wr.write_all(&raw::client_frame(1, b"still here")).await.unwrap();
    let echo = loop {
        let f = raw::next_frame(&mut rd, &mut buf).await.unwrap().expect("no echo");
        match f.opcode {
            9 => wr.write_all(&raw::client_frame(10, &f.payload)).await.unwrap(),
            _ => break f,
        }
    };
    assert_eq!((echo.opcode, &echo.payload[..]), (1, &b"still here"[..]));
    // Now it reads on but answers nothing.
    let deaf = Instant::now();
    let reader =
        tokio::spawn(
            async move { while let Ok(Some(_)) = raw::next_frame(&mut rd, &mut buf).await {} },
        );
    let close = plain.wait_for(Duration::from_secs(5), |e| matches!(e, Event::Close(_)));
    let took = deaf.elapsed();
    assert!(matches!(close, Some(Event::Close(Some(1001)))), "{:?}", plain.events());
    assert!(took < Duration::from_millis(2000), "found dead after {took:?}");
    assert!(!plain.events().iter().any(|e| matches!(e, Event::Pong(_))), "{:?}", plain.events());
    reader.abort();
    let log = h.stop();
    assert!(log.contains("WST02022"), "{log}");
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
    let TlsSite { mut h, b: plain, _dir, .. } = h2_site("h2-drain");
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
