//! SPIKE (issue 16): wss:// tunnels leave their request threads under the event MPM.

mod common;
use common::*;
use futures_util::StreamExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use wskit::Pki;

#[tokio::test(flavor = "multi_thread")]
async fn more_idle_wss_tunnels_than_request_threads() {
    if mpm() != "event" {
        return;
    }
    let dir = TempDir::new("pki");
    let pki = Pki::generate(&dir.0);
    let plain = Backend::start("plain");
    let h = Httpd::start(
        Config::new("tls_async.conf.in")
            .ports(1)
            .var("BACKEND", format!("127.0.0.1:{}", plain.port()))
            .var("SERVERCERT", pki.server.cert_file.display())
            .var("SERVERKEY", pki.server.key_file.display()),
    );
    let url = format!("wss://localhost:{}/ws2/x", h.ports[0]);
    let mut all = Vec::new();
    for i in 0..30 {
        let (mut ws, _) = connect_tls(&url, &pki).await.unwrap_or_else(|e| panic!("tunnel {i}: {e}\n{}", h.error_log()));
        let m = Message::text(format!("hello {i}"));
        assert_eq!(echo(&mut ws, m.clone()).await, m);
        all.push(ws);
    }
    // Plain HTTP still served with 30 tunnels on 10 request threads.
    let (resp, _) = wskit::raw::request(h.port, "GET /server-status?auto HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(resp.status, 200, "{}", resp.head);
    // Big messages both ways after the hand-over.
    for ws in all.iter_mut().take(3) {
        let m = Message::binary(payload(1 << 20, 9));
        assert_eq!(echo(ws, m.clone()).await, m);
    }
    for mut ws in all {
        ws.close(None).await.unwrap();
        while let Some(Ok(_)) = ws.next().await {}
    }
    assert_eq!(wait_count(&h, "WST02011", 30, Duration::from_secs(10)), 30, "{}", h.error_log());
    let access = h.access_log();
    assert_eq!(access.lines().filter(|l| l.contains("/ws2/x") && l.contains(" 101 ")).count(), 30, "{access}");
    let log = h.stop();
    assert!(!log.contains("Segmentation fault") && !log.contains("exit signal"), "{log}");
}
