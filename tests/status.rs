//! mod_status shows the tunnels of every child: `/server-status` has a section with counts,
//! bytes and the oldest tunnel's age per child and in total, `?auto` the same as lines;
//! children of an old generation that still drain tunnels after a graceful restart stay on it.

mod common;
use common::*;
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use wskit::raw;

fn server(b: &Backend) -> Httpd {
    Httpd::start(
        Config::new("status.conf.in").ports(1).var("BACKEND", format!("127.0.0.1:{}", b.port())),
    )
}

fn sum(children: &[BTreeMap<String, u64>], key: &str) -> u64 {
    children.iter().map(|c| c[key]).sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn server_status_shows_every_childs_tunnels() {
    let b = Backend::start("status");
    let h = server(&b);
    let (t, _) = status_auto(h.port);
    assert_eq!((t["WebSocketTunnels"], t["WebSocketTunnelsServed"]), (0, 0), "{t:?}");
    let mut sync_ws = Vec::new();
    let mut async_ws = Vec::new();
    for _ in 0..3 {
        sync_ws.push(connect(&h.url("/echo/s")).await.unwrap().0);
    }
    for _ in 0..4 {
        async_ws.push(connect(&format!("ws://127.0.0.1:{}/echo/a", h.ports[0])).await.unwrap().0);
    }
    let m = Message::binary(payload(100_000, 1));
    assert_eq!(echo(&mut sync_ws[0], m.clone()).await, m);
    assert_eq!(echo(&mut async_ws[0], m.clone()).await, m);
    let (t, c) = wait_auto(h.port, |t, _| {
        t["WebSocketAsyncTunnels"] == 4 && t["WebSocketBytesBackendToClient"] >= 200_000
    });
    assert_eq!(
        (
            t["WebSocketTunnels"],
            t["WebSocketSyncTunnels"],
            t["WebSocketAsyncTunnels"],
            t["WebSocketTunnelsServed"]
        ),
        (7, 3, 4, 7),
        "{t:?}"
    );
    // 100,000 bytes of payload each way per echo, plus frame headers (and the masks one way).
    assert!((200_000..200_100).contains(&t["WebSocketBytesClientToBackend"]), "{t:?}");
    assert!((200_000..200_100).contains(&t["WebSocketBytesBackendToClient"]), "{t:?}");
    // The children add up to the totals, and each is a live httpd child.
    assert_eq!((sum(&c, "sync"), sum(&c, "async"), sum(&c, "served")), (3, 4, 7), "{c:?}");
    let pids = h.children();
    assert!(c.iter().all(|row| pids.contains(&(row["pid"] as u32))), "{c:?} vs {pids:?}");
    std::thread::sleep(Duration::from_millis(2100));
    let (t, _) = status_auto(h.port);
    assert!(t["WebSocketOldestTunnelSeconds"] >= 2, "{t:?}");
    // The HTML page has the section and a row per child.
    let (_, html) = raw::get(h.port, "/server-status", "");
    assert!(html.contains("<h2>WebSocket tunnels (mod_proxy_wstunnel)</h2>"), "{html}");
    assert!(html.contains("7 live tunnels: 3 synchronous, 4 asynchronous"), "{html}");
    for row in &c {
        assert!(html.contains(&format!("<tr><td>{}</td>", row["pid"])), "{html}");
    }
    // Closed tunnels leave the counts; what they moved stays in the totals.
    for mut ws in sync_ws.into_iter().chain(async_ws) {
        ws.close(None).await.ok();
        while let Some(Ok(_)) = ws.next().await {}
    }
    let (t, _) = wait_auto(h.port, |t, _| t["WebSocketTunnels"] == 0);
    assert_eq!(
        (t["WebSocketTunnels"], t["WebSocketTunnelsServed"], t["WebSocketOldestTunnelSeconds"]),
        (0, 7, 0),
        "{t:?}"
    );
    assert!(t["WebSocketBytesClientToBackend"] >= 200_000, "{t:?}");
    h.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_draining_old_generation_stays_on_the_board() {
    let b = Backend::start("status-restart");
    let h = server(&b);
    let mut old = connect(&h.url("/echo/old")).await.unwrap().0;
    let (_, c) = wait_auto(h.port, |t, _| t["WebSocketSyncTunnels"] == 1);
    let old_pid = c.iter().find(|r| r["sync"] == 1).expect("the tunnel's child")["pid"];
    h.signal(libc::SIGUSR1);
    // Once the new generation answers, the old child is still on the board with its tunnel,
    // which still works.
    let end = Instant::now() + Duration::from_secs(5);
    while !raw::get(h.port, "/server-status?auto", "").1.contains("ParentServerMPMGeneration: 1") {
        assert!(Instant::now() < end, "no new generation");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (t, c) = status_auto(h.port);
    assert!(
        c.iter().any(|r| r["pid"] == old_pid && r["generation"] == 0 && r["sync"] == 1),
        "{c:?}"
    );
    assert_eq!(t["WebSocketSyncTunnels"], 1, "{t:?}");
    let m = Message::text("after the restart");
    assert_eq!(echo(&mut old, m.clone()).await, m);
    let mut new = connect(&h.url("/echo/new")).await.unwrap().0;
    assert_eq!(echo(&mut new, m.clone()).await, m);
    let (t, c) = wait_auto(h.port, |t, _| t["WebSocketSyncTunnels"] == 2);
    assert_eq!(t["WebSocketSyncTunnels"], 2, "{t:?} {c:?}");
    assert!(c.iter().any(|r| r["generation"] == 1 && r["sync"] == 1), "{c:?}");
    h.stop();
}
