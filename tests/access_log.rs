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
    let h = Httpd::start(
        Config::new("access_log.conf.in")
            .ports(1)
            .var("BACKEND", format!("127.0.0.1:{}", b.port())),
    );
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
    // The startup check found this httpd to be the one the module was built for.
    assert!(
        !h.error_log().contains("WST00007") && !h.error_log().contains("WST00006"),
        "{}",
        h.error_log()
    );
    h.stop();
}
