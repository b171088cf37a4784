//! Faults and load (issue 4): a backend process killed mid-stream, a backend that never
//! answers, a slow reader fed 1 GiB (httpd's memory stays bounded), 10,000 short tunnels (no
//! file descriptor growth in the children), graceful restart and stop with many live tunnels.
//! Resets and half-closes each way are rows of the edge table (tests/edge_table.rs).

// Each test takes its file's serialising lock on its own thread (block_on, not a runtime
// worker) and holds it for its whole run, across its awaits: that is the lock's purpose.
#![allow(clippy::await_holding_lock)]

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use wskit::backend::BackendProcess;
use wskit::httpd::{fd_count, process_alive, rss_kib};
use wskit::raw;

/// These tests load the machine (1 GiB, 10,000 tunnels, 1,000 at once): one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn server(backend: &str) -> Httpd {
    Httpd::start(Config::new("faults.conf.in").var("BACKEND", backend))
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_process_killed_mid_stream() {
    let _serial = serial();
    let mut backend = BackendProcess::start();
    let h = server(&backend.addr);
    let (ws, _) = connect(&h.url("/echo/killed")).await.unwrap();
    let (mut tx, mut rx) = ws.split();
    let m = Message::binary(payload(64 * 1024, 1));
    tx.send(m.clone()).await.unwrap();
    assert!(rx.next().await.unwrap().unwrap() == m);
    // Keep streaming while the backend dies.
    let writer = tokio::spawn(async move {
        for i in 0..10_000u32 {
            if tx.send(Message::binary(payload(16 * 1024, i as u8))).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    backend.kill();
    let killed = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rx.next().await {
                Some(Ok(m)) if !m.is_close() => continue,
                other => return other.map(|r| r.is_ok()),
            }
        }
    })
    .await
    .expect("the client was not told that the backend died");
    eprintln!("client saw the end {:?} after the kill ({end:?})", killed.elapsed());
    // The backend's FIN reached the client; a client closes then (until it does, the tunnel
    // honours the half-close and keeps the client-to-backend direction open).
    writer.abort();
    drop(rx);
    // The request thread returned: the tunnel is in the access log.
    assert!(
        h.wait_access_log("\"GET /echo/killed HTTP/1.1\" 101", Duration::from_secs(5)),
        "{}",
        h.access_log()
    );
    // And the next WebSocket gets a clean 503: nothing listens any more.
    assert_eq!(refused_status(&h.url("/echo/after")).await, 503);
    h.stop();
}

#[test]
fn silent_backend_gives_502_after_the_timeout_and_frees_the_worker() {
    let b = Backend::start("silent");
    let h = server(&format!("127.0.0.1:{}", b.port()));
    let t0 = Instant::now();
    let (resp, _) = raw::request(h.port, &raw::handshake("/echo/silent", ""));
    let took = t0.elapsed();
    assert_eq!(resp.status, 502, "{}", resp.head);
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(8),
        "ProxyTimeout 2 took {took:?}\n{}",
        h.error_log()
    );
    // The request thread returned (httpd logs the request after the response went out).
    assert!(
        h.wait_access_log("\"GET /echo/silent HTTP/1.1\" 502", Duration::from_secs(5)),
        "{}",
        h.access_log()
    );
    assert!(h.wait_log("WST01015", Duration::from_secs(2)), "{}", h.error_log());
    h.stop();
}

/// RSS of each child, KiB.
fn children_rss(h: &Httpd) -> std::collections::BTreeMap<u32, u64> {
    h.children().into_iter().map(|p| (p, rss_kib(p))).collect()
}

#[test]
fn slow_reader_fed_one_gib_keeps_httpd_memory_bounded() {
    let _serial = serial();
    const GIB: u64 = 1 << 30;
    let b = Backend::start("flood");
    let h = server(&format!("127.0.0.1:{}", b.port()));
    let mut s = raw::connect(h.port);
    s.write_all(raw::handshake(&format!("/echo/raw-flood-{GIB}"), "").as_bytes()).unwrap();
    let resp = raw::read_response(&mut s);
    assert_eq!(resp.status, 101, "{}", resp.head);
    // The child relaying this tunnel exists now; children spawned later (prefork keeps
    // spares) cannot be relaying it, so growth is measured per child present here.
    std::thread::sleep(Duration::from_millis(200));
    let before = children_rss(&h);
    let mut growth = 0u64;
    let mut got = resp.rest.len() as u64;
    let mut buf = vec![0u8; 64 * 1024];
    let t0 = Instant::now();
    let mut next_sample = Instant::now();
    let mut pauses = 0;
    loop {
        // A slow reader: every 64 MiB it stops reading for 300 ms, so the backend and the
        // relay run into back-pressure again and again.
        if got / (64 << 20) > pauses {
            pauses += 1;
            std::thread::sleep(Duration::from_millis(300));
        }
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got += n as u64;
        if Instant::now() >= next_sample {
            for (pid, rss) in children_rss(&h) {
                if let Some(b) = before.get(&pid) {
                    growth = growth.max(rss.saturating_sub(*b));
                }
            }
            next_sample = Instant::now() + Duration::from_millis(50);
        }
    }
    let largest = before.values().max().copied().unwrap_or(0);
    eprintln!(
        "1 GiB to a slow reader in {:?} ({pauses} pauses): largest child RSS {largest} KiB, largest growth of a child +{growth} KiB",
        t0.elapsed()
    );
    assert_eq!(got, GIB, "bytes lost or added");
    assert!(
        growth < 4 * 1024,
        "an httpd child grew by {growth} KiB while relaying to a slow reader"
    );
    h.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_short_tunnels_leave_no_descriptors_behind() {
    let _serial = serial();
    let b = Backend::start("cycles");
    let h = server(&format!("127.0.0.1:{}", b.port()));
    let url = h.url("/echo/cycle");
    let open = move |_| {
        let url = url.clone();
        async move { connect(&url).await.unwrap().0 }
    };
    churn(400, open.clone()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fds = |pids: &[u32]| pids.iter().map(|p| fd_count(*p).unwrap_or(0)).sum::<usize>();
    let pids = h.children();
    let before = fds(&pids);
    let t0 = Instant::now();
    churn(10_000, open).await;
    let took = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still: Vec<u32> = pids.iter().copied().filter(|p| process_alive(*p)).collect();
    assert_eq!(still, pids, "children changed during the run");
    let after = fds(&pids);
    eprintln!(
        "10,000 tunnels in {took:?}; open fds in httpd's children: {before} before, {after} after"
    );
    assert!(after <= before + 2, "file descriptors grew from {before} to {after}");
    let log = h.stop();
    let handled = log.matches("WST01014").count();
    let tail: Vec<&str> = log.lines().rev().take(20).collect();
    assert_eq!(
        handled,
        10_400,
        "every tunnel went through our handler; log of {} bytes ends with:\n{}",
        log.len(),
        tail.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_restart_and_stop_with_many_live_tunnels() {
    let _serial = serial();
    // Synchronous tunnels hold a worker each: prefork needs a process per tunnel.
    let n = if mpm() == "prefork" { 200 } else { 1000 };
    let b = Backend::start("many");
    let mut h = server(&format!("127.0.0.1:{}", b.port()));
    let open = |n: usize, tag: &'static str| {
        let url = h.url(&format!("/echo/{tag}"));
        open_live(n, 50, move || {
            let url = url.clone();
            async move { connect(&url).await }
        })
    };
    let first = open(n, "first").await;
    let old_children = h.children();
    let t0 = Instant::now();
    h.signal(libc::SIGUSR1);
    // New connections are served throughout the restart and the old children's drain.
    let mut served = 0;
    let mut slowest = Duration::ZERO;
    let mut gone = None;
    while t0.elapsed() < Duration::from_secs(8)
        && (gone.is_none() || t0.elapsed() < Duration::from_secs(4))
    {
        let t = Instant::now();
        round_trip(&h.url("/echo/during")).await;
        slowest = slowest.max(t.elapsed());
        served += 1;
        // The old generation closes its tunnels (GracefulShutdownTimeout 3) and exits.
        if gone.is_none() && old_children.iter().all(|p| !process_alive(*p)) {
            gone = Some(t0.elapsed());
        }
    }
    let gone = gone.unwrap_or(t0.elapsed());
    assert!(
        slowest < Duration::from_secs(2),
        "a new WebSocket took {slowest:?} during the restart"
    );
    assert!(
        old_children.iter().all(|p| !process_alive(*p)),
        "old children still alive {gone:?} after the restart"
    );
    assert!(
        gone < Duration::from_secs(5),
        "old children took {gone:?} to go with GracefulShutdownTimeout 3"
    );
    assert_eq!(count_ended(first).await, n, "tunnels of the old generation left open");
    eprintln!("graceful restart with {n} tunnels: {served} new WebSockets served meanwhile (slowest {slowest:?}), old children gone after {gone:?}");

    let second = open(n, "second").await;
    let t1 = Instant::now();
    h.signal(libc::SIGWINCH);
    h.wait_exit(Duration::from_secs(15)).expect("httpd did not stop");
    let took = t1.elapsed();
    eprintln!("graceful stop with {n} tunnels took {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "graceful stop with GracefulShutdownTimeout 3 took {took:?}"
    );
    drop(second);
    h.stop();
}
