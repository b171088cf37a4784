//! Every tunnel leaves one access-log record with status 101, its duration and its bytes each
//! way: synchronous tunnels through httpd's own record of the request, asynchronous ones
//! through a record the module gives mod_log_config when the tunnel ends, which ordinary
//! CustomLog conditions route (`env=!wstunnel-handoff` keeps one record per tunnel).

mod common;
use common::*;
use futures_util::StreamExt;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// access_log.conf.in: synchronous tunnels on the main port, asynchronous ones on `ports[0]`.
fn server(b: &Backend) -> Httpd {
    Httpd::start(
        Config::new("access_log.conf.in")
            .ports(1)
            .var("BACKEND", format!("127.0.0.1:{}", b.port())),
    )
}

fn tunnels_log(h: &Httpd) -> String {
    read_log(h, "tunnels_log")
}

fn read_log(h: &Httpd, name: &str) -> String {
    std::fs::read(h.root.join(name))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn wait_lines(h: &Httpd, needle: &str, n: usize) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let lines: Vec<String> =
            tunnels_log(h).lines().filter(|l| l.contains(needle)).map(String::from).collect();
        if lines.len() >= n || Instant::now() > end {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `%h "%r" %>s %D %I %O ...`: status, duration (µs), bytes in, bytes out.
fn figures(line: &str) -> (u16, u64, u64, u64) {
    let after = line.split("HTTP/1.1\" ").nth(1).expect("a request line");
    let f: Vec<u64> = after.split(' ').take(4).map(|x| x.parse().unwrap()).collect();
    (f[0] as u16, f[1], f[2], f[3])
}

async fn tunnel(url: &str, agent: &str, hold: Duration) {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("User-Agent", agent.parse().unwrap());
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(req, Some(ws_config()), true).await.unwrap();
    let m = Message::binary(payload(100_000, 7));
    assert_eq!(echo(&mut ws, m.clone()).await, m);
    tokio::time::sleep(hold).await;
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
}

#[tokio::test(flavor = "multi_thread")]
async fn every_tunnel_is_logged_once_with_101_duration_and_bytes() {
    let b = Backend::start("logs");
    let h = server(&b);
    tunnel(&h.url("/echo/sync"), "agent-sync", Duration::from_millis(300)).await;
    tunnel(
        &format!("ws://127.0.0.1:{}/echo/async", h.ports[0]),
        "agent-async",
        Duration::from_millis(1500),
    )
    .await;
    let sync = wait_lines(&h, "/echo/sync", 1);
    let asynchronous = wait_lines(&h, "/echo/async", 1);
    assert_eq!((sync.len(), asynchronous.len()), (1, 1), "{}", tunnels_log(&h));
    for (line, agent, at_least) in
        [(&sync[0], "agent-sync", 300_000), (&asynchronous[0], "agent-async", 1_500_000)]
    {
        let (status, micros, bytes_in, bytes_out) = figures(line);
        assert_eq!(status, 101, "{line}");
        assert!(micros >= at_least, "{line}: the record covers the tunnel's whole life");
        // 100,000 payload bytes each way (plus frame and HTTP heads).
        assert!(bytes_in > 100_000 && bytes_out > 100_000, "{line}");
        assert!(line.contains(&format!("ua=\"{agent}\"")), "{line}");
        assert!(line.starts_with("127.0.0.1 "), "{line}");
    }
    assert!(sync[0].contains("end=-"), "{}", sync[0]);
    assert!(asynchronous[0].contains("end=1"), "{}", asynchronous[0]);
    // The unconditional log has the hand-over's record too, with the handshake only.
    let all: Vec<String> =
        h.access_log().lines().filter(|l| l.contains("/echo/async")).map(String::from).collect();
    assert_eq!(all.len(), 2, "{all:?}");
    let handoff = figures(&all[0]);
    assert!(handoff.0 == 101 && handoff.1 < 1_500_000, "{all:?}");
    // An expr= condition routes the same records to a file of their own (plain requests stay out).
    let _ = wskit::raw::get(h.port, "/plain", "");
    assert_eq!(
        read_log(&h, "websockets_log"),
        tunnels_log(&h)
            .lines()
            .filter(|l| l.contains(" 101 "))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    );
    assert_eq!(read_log(&h, "websockets_log").lines().count(), 2);
    // httpd made every end's connection and request (WST02023 would say why not).
    assert!(!h.error_log().contains("WST02023"), "{}", h.error_log());
    h.stop();
}

/// One WebSocket through `url`: one echo, then `close` (a Close with that code from the client;
/// None: the client drops its connection without one). A backend path with `/bye` closes
/// with 4001 after the echo; the client answers it.
async fn closing(url: &str, close: Option<u16>) {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    let (mut ws, _) = connect(url).await.unwrap();
    let m = Message::text("one message");
    assert_eq!(echo(&mut ws, m.clone()).await, m);
    if url.contains("/bye") {
        while let Some(Ok(_)) = ws.next().await {}
        return;
    }
    match close {
        Some(code) => {
            ws.close(Some(CloseFrame { code: code.into(), reason: "".into() })).await.unwrap();
            while let Some(Ok(_)) = ws.next().await {}
        }
        None => drop(ws),
    }
}

/// The access log says why each WebSocket ended (`%{wstunnel-close-client}e`, ...), for
/// synchronous tunnels and asynchronous ones alike: a client's Close 1000 or 4000, a backend's
/// 4001, no Close at all, and the drain's 1001 on a graceful restart.
#[tokio::test(flavor = "multi_thread")]
async fn close_codes_and_who_ended_reach_the_access_log() {
    let b = Backend::start("closes");
    let h = server(&b);
    let sync = h.url("/echo/");
    let asynchronous = format!("ws://127.0.0.1:{}/echo/", h.ports[0]);
    let cases: [(&str, Option<u16>, &str); 4] = [
        ("normal", Some(1000), "client=1000 backend=1000 by=client in=1 out=1"),
        ("app", Some(4000), "client=4000 backend=4000 by=client in=1 out=1"),
        ("bye", None, "client=4001 backend=4001 by=backend in=1 out=1"),
        ("dropped", None, "client=- backend=- by=client in=1 out=1"),
    ];
    for base in [&sync, &asynchronous] {
        for (name, close, _) in cases {
            closing(&format!("{base}{name}"), close).await;
        }
    }
    // The drain of a graceful restart: both sides get Close 1001 and answer with theirs.
    let mut held = Vec::new();
    for base in [&sync, &asynchronous] {
        let (mut ws, _) = connect(&format!("{base}drained")).await.unwrap();
        let m = Message::text("before the restart");
        assert_eq!(echo(&mut ws, m.clone()).await, m);
        held.push(ws);
    }
    // The asynchronous one has left its thread (WST02010) before the restart.
    assert!(h.wait_log("WST02010", Duration::from_secs(5)), "{}", h.error_log());
    h.signal(libc::SIGUSR1);
    for mut ws in held {
        while let Some(Ok(_)) = ws.next().await {}
    }
    let log = || read_log(&h, "closes_log");
    let end = Instant::now() + Duration::from_secs(10);
    while log().lines().count() < 10 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = log();
    assert_eq!(log.lines().count(), 10, "{log}");
    let drained = ("drained", None, "client=1001 backend=1001 by=proxy in=1 out=1");
    for (name, _, expected) in cases.iter().chain([&drained]) {
        // One record each for the synchronous and the asynchronous tunnel, both alike.
        let lines: Vec<&str> =
            log.lines().filter(|l| l.starts_with(&format!("/echo/{name} "))).collect();
        assert_eq!(lines.len(), 2, "{name}: {log}");
        for got in lines {
            assert!(got.ends_with(expected), "{got} (expected {expected})");
        }
    }
    // WST02011 and the synchronous end lines say the same.
    let errors = h.error_log();
    assert!(
        errors.contains("ended by the backend, Close from client 4001, from backend 4001"),
        "{errors}"
    );
    h.stop();
}
