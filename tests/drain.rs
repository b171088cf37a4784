//! Graceful stop and restart end WebSocket tunnels politely: they keep working during the
//! drain, then both sides get a Close frame with 1001 (Going Away) at a frame boundary, so
//! clients see a clean close instead of an abnormal one (1006), and a message in flight
//! arrives whole first. Synchronous and asynchronous tunnels alike.

// Each test takes its file's serialising lock on its own thread (block_on, not a runtime
// worker) and holds it for its whole run, across its awaits: that is the lock's purpose.
#![allow(clippy::await_holding_lock)]

mod common;
use common::*;
use futures_util::StreamExt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use wskit::backend::Event;
use wskit::raw;

/// The signals test floods both CPUs for two seconds; the other tests, bound by timings, run
/// beside each other but not beside it.
static FLOOD: RwLock<()> = RwLock::new(());

fn beside_no_flood() -> RwLockReadGuard<'static, ()> {
    FLOOD.read().unwrap_or_else(|e| e.into_inner())
}

fn server(b: &Backend) -> Httpd {
    server_with(b, "3", "")
}

fn server_with(b: &Backend, grace: &str, drain: &str) -> Httpd {
    Httpd::start(
        Config::new("drain.conf.in")
            .ports(1)
            .var("BACKEND", format!("127.0.0.1:{}", b.port()))
            .var("GRACE", grace)
            .var("DRAIN", drain),
    )
}

/// A raw WebSocket through httpd with half of a 200 KB message sent.
fn half_sent(port: u16) -> (TcpStream, Vec<u8>) {
    let mut s = raw::connect(port);
    s.write_all(raw::handshake("/echo/drain", "").as_bytes()).unwrap();
    let resp = raw::read_response(&mut s);
    assert_eq!(resp.status, 101, "{}", resp.head);
    let frame = raw::client_frame(2, &raw::pattern(200_000));
    s.write_all(&frame[..frame.len() / 2]).unwrap();
    (s, frame[frame.len() / 2..].to_vec())
}

async fn expect_going_away(ws: &mut Ws) {
    if let Err(e) = going_away(ws).await {
        panic!("{e}");
    }
}

/// The Close 1001 and the end of the stream, or what came instead.
async fn going_away(ws: &mut Ws) -> Result<(), String> {
    loop {
        let Ok(m) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await else {
            return Err("no close within 5 s".into());
        };
        match m {
            Some(Ok(Message::Close(Some(f)))) if f.code == CloseCode::Away => break,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => return Err(format!("expected Close 1001, got {other:?}")),
        }
    }
    // Reading on sends our Close back and sees the end of the stream.
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {}
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_stop_closes_every_websocket_with_1001_at_a_frame_boundary() {
    let _quiet = beside_no_flood();
    let b = Backend::start("drain");
    let mut h = server(&b);
    let (sync_url, async_url) =
        (h.url("/echo/drain"), format!("ws://127.0.0.1:{}/echo/drain", h.ports[0]));
    let mut sync_ws = Vec::new();
    let mut async_ws = Vec::new();
    for _ in 0..5 {
        sync_ws.push(connect(&sync_url).await.unwrap().0);
        async_ws.push(connect(&async_url).await.unwrap().0);
    }
    let (mut raw_sync, rest_sync) = half_sent(h.port);
    let (mut raw_async, rest_async) = half_sent(h.ports[0]);
    assert_eq!(wait_count(&h, "WST02010", 6, Duration::from_secs(3)), 6, "{}", h.error_log());
    let t0 = Instant::now();
    h.signal(libc::SIGWINCH);
    // The tunnels keep working during the drain.
    for ws in sync_ws.iter_mut().chain(async_ws.iter_mut()).take(10) {
        let m = Message::text("still here");
        assert_eq!(echo(ws, m.clone()).await, m);
    }
    // A half-sent message holds its direction's Close back until it is complete; the other
    // direction closes at once: the client gets 1001 while still sending.
    for s in [&mut raw_sync, &mut raw_async] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut close = [0u8; 4];
        s.read_exact(&mut close).unwrap();
        assert_eq!(close, [0x88, 0x02, 0x03, 0xe9]);
    }
    let closed_after = t0.elapsed();
    assert!(
        closed_after > Duration::from_millis(1200),
        "closed {closed_after:?} after the signal: no drain"
    );
    for (s, rest) in [(&mut raw_sync, &rest_sync), (&mut raw_async, &rest_async)] {
        s.write_all(rest).unwrap();
        s.write_all(&raw::client_frame(8, &1001u16.to_be_bytes())).unwrap();
    }
    let tunnels = sync_ws.iter_mut().map(|w| ("synchronous", w));
    for (i, (kind, ws)) in
        tunnels.chain(async_ws.iter_mut().map(|w| ("asynchronous", w))).enumerate()
    {
        if let Err(e) = going_away(ws).await {
            panic!(
                "{kind} tunnel {i}, {:?} after the signal: {e}\n{}",
                t0.elapsed(),
                h.error_log()
            );
        }
    }
    h.wait_exit(Duration::from_secs(15)).expect("httpd did not stop");
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "graceful stop took {took:?} (GracefulShutdownTimeout 3)"
    );
    // The backend saw a Close 1001 on every tunnel, after the whole message on the raw ones
    // (its WebSocket parser would have failed on a Close inside a frame).
    let closes = b.events().iter().filter(|e| matches!(e, Event::Close(Some(1001)))).count();
    assert_eq!(closes, 12, "{:?}", b.events());
    let log = h.stop();
    assert_eq!(log.matches("WST02014").count(), 6, "{log}");
    assert_eq!(log.matches("closed with WebSocket Close 1001").count(), 12, "{log}");
}

/// With no GracefulShutdownTimeout (httpd waits forever, Debian's default), tunnels would keep
/// an old generation alive until clients leave; ProxyWebsocketDrainTimeout bounds them.
#[tokio::test(flavor = "multi_thread")]
async fn drain_timeout_bounds_tunnels_when_httpd_waits_forever() {
    let _quiet = beside_no_flood();
    let b = Backend::start("drain-timeout");
    let h = server_with(&b, "0", "ProxyWebsocketDrainTimeout 1");
    let mut ws = connect(&h.url("/echo/t")).await.unwrap().0;
    let mut detached = connect(&format!("ws://127.0.0.1:{}/echo/t", h.ports[0])).await.unwrap().0;
    assert_eq!(wait_count(&h, "WST02010", 1, Duration::from_secs(3)), 1);
    let old = h.children();
    let t0 = Instant::now();
    h.signal(libc::SIGUSR1);
    let m = Message::text("during the drain");
    assert_eq!(echo(&mut ws, m.clone()).await, m);
    expect_going_away(&mut ws).await;
    expect_going_away(&mut detached).await;
    let closed = t0.elapsed();
    assert!(
        closed >= Duration::from_millis(900) && closed < Duration::from_secs(3),
        "closed after {closed:?}"
    );
    // The old generation is gone; the new one serves WebSockets.
    let end = Instant::now() + Duration::from_secs(5);
    while old.iter().any(|p| wskit::httpd::process_alive(*p)) {
        assert!(Instant::now() < end, "old children {old:?} still alive");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(round_trip(&h.url("/echo/after")).await, "drain-timeout");
    h.stop();
}

/// httpd, told to stop gracefully at `t0`, has exited within 4 s (its 3 s grace and a
/// margin), and each backend got Close 1001.
fn stopped_with_going_away(h: &mut Httpd, t0: Instant, backends: &[&Backend]) {
    h.wait_exit(Duration::from_secs(15)).expect("httpd did not stop");
    assert!(t0.elapsed() < Duration::from_secs(4), "graceful stop took {:?}", t0.elapsed());
    for b in backends {
        assert!(
            b.events().iter().any(|e| matches!(e, Event::Close(Some(1001)))),
            "{}: {:?}",
            b.name,
            b.events()
        );
    }
}

/// An httpd with a TLS front end (to a ws:// backend, on `ports[0]`) and a wss:// backend (for
/// ws:// clients on the main port): drain_tls.conf.in.
fn tls_site(name: &str, grace: &str, drain: &str) -> TlsSite {
    common::tls_site(name, "drain_tls.conf.in", |c| {
        c.ports(1).var("GRACE", grace).var("DRAIN", drain)
    })
}

/// Tunnels with a TLS end go through mod_proxy's filter-aware tunnel; a filter above TLS
/// tracks their frames, so they end politely too: a wss:// client (TLS front end, ws://
/// backend) and a ws:// client to a wss:// backend both get Close 1001, and so do the backends.
#[tokio::test(flavor = "multi_thread")]
async fn tunnels_with_a_tls_end_close_with_1001_too() {
    let _quiet = beside_no_flood();
    let TlsSite { _dir, pki, b: plain, tb: tls, mut h } = tls_site("drain-tls", "3", "");
    let (mut front, _) =
        connect_tls(&format!("wss://localhost:{}/ws/front", h.ports[0]), &pki).await.unwrap();
    let (mut back, _) = connect(&h.url("/wss/back")).await.unwrap();
    let t0 = Instant::now();
    h.signal(libc::SIGWINCH);
    for ws in [&mut front, &mut back] {
        let m = Message::text("during the drain");
        assert_eq!(echo(ws, m.clone()).await, m);
    }
    expect_going_away(&mut front).await;
    expect_going_away(&mut back).await;
    assert!(
        t0.elapsed() > Duration::from_millis(1200),
        "closed {:?} after the signal: no drain",
        t0.elapsed()
    );
    stopped_with_going_away(&mut h, t0, &[&plain, &tls]);
    let log = h.stop();
    assert_eq!(log.matches("WST02014").count(), 2, "{log}");
}

/// mod_proxy's filter-aware tunnel gives control back only after a quiet slice (250 ms), so a
/// tunnel with a TLS end whose traffic never pauses must end from inside the watch filters:
/// each direction stops at its next frame boundary, its Close 1001 goes behind it, and what
/// the peer sends until its own Close is dropped. Both sides get 1001 long before httpd's
/// deadline, with every message before it whole.
#[tokio::test(flavor = "multi_thread")]
async fn a_tls_tunnel_that_never_pauses_still_closes_with_1001() {
    let _quiet = beside_no_flood();
    let TlsSite { _dir, pki, b: plain, tb: tls, mut h } = tls_site("drain-busy-tls", "3", "");
    let (front, _) =
        connect_tls(&format!("wss://localhost:{}/ws/busy", h.ports[0]), &pki).await.unwrap();
    let (back, _) = connect(&h.url("/wss/busy")).await.unwrap();
    let mut clients = Vec::new();
    for ws in [front, back] {
        let (mut tx, mut rx) = ws.split();
        use futures_util::SinkExt;
        // A 1 KB message every 10 ms, echoed: neither direction rests for a slice.
        let writer = tokio::spawn(async move {
            for i in 0u64.. {
                let body: String = format!("{i:08}").repeat(128);
                if tx.send(Message::text(body)).await.is_err() {
                    return i;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            unreachable!()
        });
        let reader = tokio::spawn(async move {
            let mut echoed = 0u64;
            loop {
                match tokio::time::timeout(Duration::from_secs(6), rx.next())
                    .await
                    .expect("no close within 6 s")
                {
                    Some(Ok(Message::Text(t))) => {
                        assert_eq!(
                            t.as_str(),
                            format!("{echoed:08}").repeat(128),
                            "echo {echoed} whole and in order"
                        );
                        echoed += 1;
                    }
                    Some(Ok(Message::Close(f))) => return (f.map(|f| f.code), echoed),
                    other => panic!("expected echoes, then Close 1001; got {other:?}"),
                }
            }
        });
        clients.push((writer, reader));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Their bytes are on the status board: the watch filters count what they pass.
    let (status, _) = status_auto(h.port);
    for key in ["WebSocketBytesClientToBackend", "WebSocketBytesBackendToClient"] {
        assert!(status[key] > 2 * 10 * 1024, "{key}: {status:?}");
    }
    let t0 = Instant::now();
    h.signal(libc::SIGWINCH);
    for (writer, reader) in clients {
        let (code, echoed) = reader.await.unwrap();
        eprintln!("Close {code:?} {:?} after the signal, after {echoed} echoes", t0.elapsed());
        assert_eq!(code, Some(CloseCode::Away), "after {echoed} echoes");
        // The drain let the tunnel work on for a while (about 1.5 s of GracefulShutdownTimeout 3).
        assert!(echoed > 50, "only {echoed} echoes");
        writer.abort();
    }
    let closed = t0.elapsed();
    // (Its 1001 proves it ended before the deadline, which cuts it off without one.)
    assert!(closed > Duration::from_millis(1200), "closed {closed:?} after the signal: no drain");
    stopped_with_going_away(&mut h, t0, &[&plain, &tls]);
    let log = h.stop();
    let ends: Vec<&str> = log.lines().filter(|l| l.contains("WST02014")).collect();
    assert_eq!(ends.len(), 2, "{log}");
    // Each says what it moved (the 50 echoes above: over 40 KB each way).
    for l in ends {
        let n: Vec<u64> = l
            .split("; ")
            .nth(1)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        assert!(n.len() == 2 && n.iter().all(|b| *b > 40 * 1024), "{l}");
    }
}

/// A client that sends without pause and never answers the Close cannot hold a filtered
/// tunnel (here: to a wss:// backend) past the drain's deadline, even with httpd waiting
/// forever (GracefulShutdownTimeout 0): it gets Close 1001 when the polite end begins, and the
/// tunnel is closed a second later, so the old generation exits.
#[tokio::test(flavor = "multi_thread")]
async fn a_busy_filtered_tunnel_whose_client_never_answers_ends_at_the_deadline() {
    let _quiet = beside_no_flood();
    let TlsSite { _dir, tb: tls, h, .. } =
        tls_site("drain-deaf", "0", "ProxyWebsocketDrainTimeout 1");
    let mut s = raw::connect(h.port);
    s.write_all(raw::handshake("/wss/deaf", "").as_bytes()).unwrap();
    let resp = raw::read_response(&mut s);
    assert_eq!(resp.status, 101, "{}", resp.head);
    let mut writer = s.try_clone().unwrap();
    let old = h.children();
    let t0 = Instant::now();
    let talker = std::thread::spawn(move || {
        // A small frame every 5 ms, whatever comes back, until httpd closes the connection.
        while writer.write_all(&raw::client_frame(2, b"still talking")).is_ok() {
            assert!(t0.elapsed() < Duration::from_secs(10), "the tunnel outlived the drain");
            std::thread::sleep(Duration::from_millis(5));
        }
        t0.elapsed()
    });
    h.signal(libc::SIGUSR1);
    // Read everything until httpd's FIN, noting when a Close 1001 came.
    let mut got = resp.rest.clone();
    let mut close_at = None;
    let mut chunk = [0u8; 65536];
    let going_away = [0x88u8, 0x02, 0x03, 0xe9];
    loop {
        match s.read(&mut chunk) {
            // A read with a timeout set fails on any handled signal (signal(7)): read on.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
        if close_at.is_none() && got.windows(4).any(|w| w == going_away) {
            close_at = Some(t0.elapsed());
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the tunnel outlived the drain (Close 1001 after {close_at:?}):\n{}",
            h.error_log()
        );
    }
    let close_at = close_at.expect("no Close 1001 before the end");
    assert!(
        close_at >= Duration::from_millis(900) && close_at < Duration::from_secs(3),
        "Close 1001 after {close_at:?}"
    );
    // The client's frames are dropped after the Close; the connection ends at the deadline.
    let ended = talker.join().unwrap();
    eprintln!("Close 1001 {close_at:?} after the signal, connection closed after {ended:?}");
    assert!(
        ended >= close_at + Duration::from_millis(500) && ended < Duration::from_secs(5),
        "closed after {ended:?}"
    );
    let end = Instant::now() + Duration::from_secs(5);
    while old.iter().any(|p| wskit::httpd::process_alive(*p)) {
        assert!(Instant::now() < end, "old children {old:?} still alive");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        tls.events().iter().any(|e| matches!(e, Event::Close(Some(1001)))),
        "{:?}",
        tls.events()
    );
    let log = h.stop();
    assert_eq!(log.matches("WST02007").count(), 1, "{log}");
}

/// The module's own threads (the asynchronous relay, the drain's clock) hold every signal that
/// is not a fault: a signal sent to a process goes to any one of its threads that lets it in,
/// and prefork tells a busy child of a graceful stop by such a signal only (SIGUSR1), which
/// the thread relaying its synchronous tunnel must get. A prefork child that had handed a
/// tunnel over, busy relaying another when the signal came, gave it to a relay thread
/// instead: its synchronous tunnel never drained and was cut at httpd's deadline without a
/// Close (one CI run). Here every child's threads are looked at during a drain, and busy
/// synchronous tunnels beside asynchronous ones all get their 1001.
#[tokio::test(flavor = "multi_thread")]
async fn signals_meant_for_httpd_reach_httpds_threads_only() {
    let _alone = FLOOD.write().unwrap_or_else(|e| e.into_inner());
    let b = Backend::start("drain-signals");
    let mut h = server(&b);
    let async_url = format!("ws://127.0.0.1:{}/echo/signals", h.ports[0]);
    let mut detached = Vec::new();
    for _ in 0..8 {
        detached.push(connect(&async_url).await.unwrap().0);
    }
    assert_eq!(wait_count(&h, "WST02010", 8, Duration::from_secs(3)), 8, "{}", h.error_log());
    let mut busy = Vec::new();
    for _ in 0..3 {
        let (ws, _) = connect(&h.url("/echo/signals")).await.unwrap();
        let (mut tx, mut rx) = ws.split();
        use futures_util::SinkExt;
        // 64 KB messages back to back: the relay is seldom waiting when a signal comes.
        let writer = tokio::spawn(async move {
            let body = Message::binary(vec![7u8; 65536]);
            while tx.send(body.clone()).await.is_ok() {}
        });
        let reader = tokio::spawn(async move {
            let mut echoed = 0u64;
            loop {
                match tokio::time::timeout(Duration::from_secs(8), rx.next()).await {
                    Ok(Some(Ok(Message::Binary(_)))) => echoed += 1,
                    Ok(Some(Ok(Message::Close(f)))) => return Ok((f.map(|f| f.code), echoed)),
                    Ok(Some(Ok(_))) => {}
                    other => return Err(format!("after {echoed} echoes: {other:?}")),
                }
            }
        });
        busy.push((writer, reader));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    h.signal(libc::SIGWINCH);
    // Every thread the module started, in every child, holds httpd's signals: the relay's
    // from its first tunnel on, the drain's clock once the drain began.
    let mut seen = std::collections::BTreeSet::new();
    while t0.elapsed() < Duration::from_millis(1200) {
        for pid in h.children() {
            for (name, blocked) in module_threads(pid) {
                for sig in
                    [libc::SIGHUP, libc::SIGINT, libc::SIGUSR1, libc::SIGTERM, libc::SIGWINCH]
                {
                    assert!(
                        blocked & (1 << (sig - 1)) != 0,
                        "{name} of {pid} lets signal {sig} in"
                    );
                }
                seen.insert(name.split('-').take(2).collect::<Vec<_>>().join("-"));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen.contains("wst-async") && seen.contains("wst-drain"), "{seen:?}");
    for (i, (writer, reader)) in busy.into_iter().enumerate() {
        let got = reader.await.unwrap();
        writer.abort();
        match got {
            Ok((Some(CloseCode::Away), echoed)) => {
                assert!(echoed > 10, "busy tunnel {i}: {echoed}")
            }
            other => panic!(
                "busy tunnel {i}, {:?} after the signal: {other:?}\n{}",
                t0.elapsed(),
                h.error_log()
            ),
        }
    }
    for ws in detached.iter_mut() {
        expect_going_away(ws).await;
    }
    h.wait_exit(Duration::from_secs(15)).expect("httpd did not stop");
    h.stop();
}

/// The threads of process `pid` named `wst-…` (the module's), with their blocked signals.
fn module_threads(pid: u32) -> Vec<(String, u64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut out = Vec::new();
    for t in tasks.flatten() {
        let Ok(status) = std::fs::read_to_string(t.path().join("status")) else { continue };
        let field =
            |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string());
        let (Some(name), Some(blk)) = (field("Name:"), field("SigBlk:")) else { continue };
        if name.starts_with("wst-") {
            out.push((name, u64::from_str_radix(&blk, 16).unwrap_or(0)));
        }
    }
    out
}
