//! Asynchronous tunnels (ProxyWebsocketAsync, docs/DESIGN.md §6): after the delay, a tunnel with two
//! plain-socket ends leaves the request thread for the child's runtime, so a server with 10
//! request threads holds hundreds of WebSockets and still answers plain HTTP.

mod common;
use common::*;
use futures_util::StreamExt;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use wskit::backend::Event;
use wskit::raw;

fn server(b: &Backend) -> Httpd {
    server2(b, b)
}

/// `n` WebSockets to `path`, each echoing one message.
async fn open_echoed(h: &Httpd, path: &str, n: usize) -> Vec<Ws> {
    let mut all = Vec::new();
    for i in 0..n {
        let (mut ws, _) = connect(&h.url(path)).await.unwrap_or_else(|e| panic!("tunnel {i}: {e}"));
        let m = Message::text(format!("hello {i}"));
        assert_eq!(echo(&mut ws, m.clone()).await, m);
        all.push(ws);
    }
    all
}

fn server2(b: &Backend, b2: &Backend) -> Httpd {
    Httpd::start(
        Config::new("async.conf.in")
            .ports(4)
            .var("BACKEND", format!("127.0.0.1:{}", b.port()))
            .var("BACKEND2", format!("127.0.0.1:{}", b2.port())),
    )
}

/// One child runs a relay thread per CPU it may use (async.conf.in sets no
/// ProxyWebsocketAsyncThreads, and StartServers 1 and ServerLimit 1 under the threaded MPMs),
/// and spreads its busy
/// tunnels over them: 100 tunnels echoing for 3 s, each `wst-async-<i>` thread does at least a
/// half its share of the relay work (a quarter with two), and the board shows the tunnels per
/// thread.
#[tokio::test(flavor = "multi_thread")]
async fn busy_tunnels_spread_over_the_relay_threads() {
    if mpm() == "prefork" {
        eprintln!("relay threads: measured under the threaded MPMs (one child)");
        return;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let b = Backend::start("spread");
    let h = server(&b);
    const N: usize = 100;
    let all = open_echoed(&h, "/echo/spread", N).await;
    assert_eq!(wait_count(&h, "WST02010", N, Duration::from_secs(5)), N);
    let child = h.children()[0];
    let before = thread_cpu(child, "wst-async");
    assert_eq!(before.len(), cpus, "one relay thread per CPU: {before:?}");
    let mut shown = per_thread(h.port);
    assert_eq!(shown.len(), 1, "{shown:?}");
    let shown = shown.remove(0);
    let shown = &shown;
    assert_eq!(shown.len(), cpus, "{shown:?}");
    assert_eq!(shown.iter().sum::<u64>(), N as u64, "{shown:?}");
    assert!(shown.iter().all(|n| *n >= (N / cpus) as u64 - 1), "evenly placed: {shown:?}");
    let until = Instant::now() + Duration::from_secs(3);
    let tasks: Vec<_> = all
        .into_iter()
        .enumerate()
        .map(|(i, mut ws)| {
            tokio::spawn(async move {
                while Instant::now() < until {
                    let m = Message::text(format!("busy {i}"));
                    assert_eq!(echo(&mut ws, m.clone()).await, m);
                }
                ws
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.push(t.await.unwrap());
    }
    let after = thread_cpu(child, "wst-async");
    let work: Vec<u64> =
        after.iter().map(|(n, t)| t - before.get(n).copied().unwrap_or(0)).collect();
    let total: u64 = work.iter().sum();
    eprintln!("relay threads {:?}: tunnels {shown:?}, CPU ticks in 3 s {work:?}", after.keys());
    assert!(total > 0, "{before:?} {after:?}");
    for (name, w) in after.keys().zip(&work) {
        assert!(
            *w * cpus as u64 * 2 >= total,
            "{name} did {w} of {total} ticks of relay work: {work:?}"
        );
    }
    for mut ws in all {
        ws.close(None).await.ok();
        while let Some(Ok(_)) = ws.next().await {}
    }
    h.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn far_more_tunnels_than_request_threads() {
    let b = Backend::start("async");
    let h = server(&b);
    const N: usize = 300;
    let mut all = open_echoed(&h, "/echo/many", N).await;
    // The request threads are free: plain HTTP is served.
    let (resp, body) = raw::get(h.port, "/index.html", "");
    assert_eq!((resp.status, body.as_str()), (200, "local index\n"));
    // Every tunnel still works, big messages included.
    for (i, ws) in all.iter_mut().enumerate() {
        let m = if i % 50 == 0 {
            Message::binary(payload(1 << 20, i as u8))
        } else {
            Message::text(format!("again {i}"))
        };
        assert!(echo(ws, m.clone()).await == m, "tunnel {i}");
    }
    assert_eq!(
        wait_count(&h, "WST02010", N, Duration::from_secs(5)),
        N,
        "every tunnel went asynchronous"
    );
    for mut ws in all {
        ws.close(None).await.ok();
        while let Some(Ok(_)) = ws.next().await {}
    }
    assert_eq!(
        wait_count(&h, "WST02011", N, Duration::from_secs(10)),
        N,
        "every tunnel logged its end"
    );
    let log = h.stop();
    assert!(log.contains("closed by both sides"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn delay_then_asynchronous_with_idle_timeout() {
    let b = Backend::start("delayed");
    let h = server(&b);
    let url = format!("ws://127.0.0.1:{}/echo/delay", h.ports[0]);
    let t0 = Instant::now();
    let (mut ws, _) = connect(&url).await.unwrap();
    let m = Message::text("during the delay");
    assert_eq!(echo(&mut ws, m.clone()).await, m);
    assert_eq!(count(&h, "WST02010"), 0, "handed over before ProxyWebsocketAsyncDelay");
    assert_eq!(wait_count(&h, "WST02010", 1, Duration::from_secs(3)), 1);
    assert!(t0.elapsed() >= Duration::from_millis(500));
    let m = Message::text("after the handoff");
    assert_eq!(echo(&mut ws, m.clone()).await, m);
    // ProxyWebsocketIdleTimeout 1500ms applies to asynchronous tunnels too.
    let idle_from = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("idle tunnel not closed");
    assert!(matches!(end, None | Some(Err(_)) | Some(Ok(Message::Close(_)))), "{end:?}");
    let waited = idle_from.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(4),
        "idle close after {waited:?}"
    );
    assert_eq!(
        wait_count(
            &h,
            "tunnel idle for 1.5s (ProxyWebsocketIdleTimeout)",
            1,
            Duration::from_secs(3)
        ),
        1,
        "{}",
        h.error_log()
    );
    h.stop();
}

#[test]
fn half_close_and_reset_in_asynchronous_tunnels() {
    let b = Backend::start("halfclose");
    let h = server(&b);
    // Client FIN: the backend gets every byte, then EOF, and its answer still comes back.
    let mut s = raw::connect(h.port);
    s.write_all(raw::handshake("/echo/raw-count", "").as_bytes()).unwrap();
    let resp = raw::read_response(&mut s);
    assert_eq!(resp.status, 101);
    assert_eq!(wait_count(&h, "WST02010", 1, Duration::from_secs(3)), 1);
    let data = payload(4 << 20, 9);
    s.write_all(&data).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, format!("got {} bytes", data.len()));
    // Backend FIN first: the client reads it, then can still send.
    let mut s = raw::connect(h.port);
    s.write_all(raw::handshake("/echo/raw-fin-first", "").as_bytes()).unwrap();
    let resp = raw::read_response(&mut s);
    let mut got = resp.rest.clone();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"bye");
    s.write_all(&payload(100_000, 3)).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let seen = b.wait_for(Duration::from_secs(5), |e| matches!(e, Event::AfterFin(_)));
    assert!(matches!(seen, Some(Event::AfterFin(100_000))), "{seen:?}");
    // Backend reset: the client is closed promptly.
    let mut s = raw::connect(h.port);
    s.write_all(raw::handshake("/echo/raw-rst", "").as_bytes()).unwrap();
    let _ = raw::read_response(&mut s);
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(b"x").unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 16];
    let r = s.read(&mut buf);
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(
        wait_count(&h, "backend connection failed", 1, Duration::from_secs(3)) >= 1,
        "{}",
        h.error_log()
    );
    h.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_per_child_cap_keeps_further_tunnels_synchronous() {
    let b = Backend::start("capped");
    let h = server(&b);
    let url = format!("ws://127.0.0.1:{}/echo/cap", h.ports[1]);
    let mut all = Vec::new();
    for _ in 0..8 {
        let (mut ws, _) = connect(&url).await.unwrap();
        let m = Message::text("x");
        assert_eq!(echo(&mut ws, m.clone()).await, m);
        all.push(ws);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if std::env::var("WST_MPM").as_deref() != Ok("prefork") {
        // One child: 5 asynchronous, 3 in request threads, said once.
        assert_eq!(wait_count(&h, "WST02010", 5, Duration::from_secs(3)), 5);
        assert_eq!(count(&h, "WST02012"), 1, "{}", h.error_log());
    }
    for ws in all.iter_mut() {
        let m = Message::text("still here");
        assert_eq!(echo(ws, m.clone()).await, m);
    }
    drop(all);
    h.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_stop_drains_asynchronous_tunnels() {
    let b = Backend::start("drain");
    let mut h = server(&b);
    let mut all = Vec::new();
    for _ in 0..50 {
        all.push(connect(&h.url("/echo/drain")).await.unwrap().0);
    }
    assert_eq!(wait_count(&h, "WST02010", 50, Duration::from_secs(3)), 50);
    let t0 = Instant::now();
    h.signal(libc::SIGWINCH);
    // They keep working during the drain...
    for ws in all.iter_mut().take(5) {
        let m = Message::text("draining");
        assert_eq!(echo(ws, m.clone()).await, m);
    }
    h.wait_exit(Duration::from_secs(15)).expect("httpd did not stop");
    let took = t0.elapsed();
    // ... and are closed before GracefulShutdownTimeout (3 s).
    assert!(took < Duration::from_secs(4), "graceful stop took {took:?}");
    for mut ws in all {
        let end = tokio::time::timeout(Duration::from_secs(2), ws.next())
            .await
            .expect("tunnel left open");
        assert!(matches!(end, None | Some(Err(_)) | Some(Ok(Message::Close(_)))), "{end:?}");
    }
    let log = h.stop();
    assert_eq!(log.matches("httpd child is stopping").count(), 50, "{log}");
}

/// The "Busy" column of the balancer manager for the one member of balancer://busy.
fn busy(h: &Httpd) -> Option<u32> {
    let (_, page) = raw::get(h.port, "/balancer-manager", "");
    // The member's row: <td>...ws://127.0.0.1:PORT</a></td> ... cells; Busy is the one after "Elected".
    let header: Vec<&str> =
        page.split("<th>").skip(1).map(|c| c.split('<').next().unwrap_or("")).collect();
    let col = header.iter().position(|c| *c == "Busy")?;
    let row = page.split("<tr>").find(|r| r.contains("ws://127.0.0.1:"))?;
    let cells: Vec<&str> =
        row.split("<td>").skip(1).map(|c| c.split('<').next().unwrap_or("").trim()).collect();
    // The header row of the member table starts with the worker URL column.
    let member_cols = header.iter().position(|c| *c == "Worker URL")?;
    cells.get(col - member_cols)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn balancer_busy_count_holds_until_asynchronous_tunnels_end() {
    let b = Backend::start("busy");
    let h = server(&b);
    let mut all = Vec::new();
    for _ in 0..5 {
        all.push(connect(&h.url("/bal/busy")).await.unwrap().0);
    }
    assert_eq!(wait_count(&h, "WST02010", 5, Duration::from_secs(3)), 5);
    // The requests are over (handed off), the tunnels are not: the member is busy with 5. A
    // request's own unit goes when mod_proxy's handler returns, just after WST02010.
    assert_eq!(wait_busy(&h, 5), Some(5), "{}", raw::get(h.port, "/balancer-manager", "").1);
    for mut ws in all {
        ws.close(None).await.ok();
        while let Some(Ok(_)) = ws.next().await {}
    }
    assert_eq!(wait_count(&h, "WST02011", 5, Duration::from_secs(5)), 5);
    assert_eq!(wait_busy(&h, 0), Some(0));
    h.stop();
}

/// The member's busy count once it is `want`, or as it is after 2 s.
fn wait_busy(h: &Httpd, want: u32) -> Option<u32> {
    let end = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let now = busy(h);
        if now == Some(want) || std::time::Instant::now() > end {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Opens a tunnel through balancer://pair; returns it and the member that took it.
async fn open_pair(port: u16) -> (Ws, String) {
    let (ws, resp) = connect(&format!("ws://127.0.0.1:{port}/pair/busy")).await.unwrap();
    let who = resp.headers().get("x-backend").unwrap().to_str().unwrap().to_string();
    (ws, who)
}

#[tokio::test(flavor = "multi_thread")]
async fn bybusyness_sees_every_live_tunnel() {
    let (one, two) = (Backend::start("one"), Backend::start("two"));
    let h = server2(&one, &two);
    // Main server: asynchronous tunnels; PORT3: synchronous ones.
    for (mode, port) in [("async", h.port), ("sync", h.ports[2])] {
        let mut live = Vec::new();
        for _ in 0..6 {
            live.push(open_pair(port).await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let on_one = live.iter().filter(|(_, w)| w == "one").count();
        assert_eq!(on_one, 3, "{mode}: bybusyness spreads live tunnels evenly");
        // Close the tunnels on member one: it is now the idle one, so it gets the next three.
        let (gone, kept): (Vec<_>, Vec<_>) = live.into_iter().partition(|(_, w)| w == "one");
        close_all(gone.into_iter().map(|(ws, _)| ws)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut again = Vec::new();
        for i in 0..3 {
            let (ws, who) = open_pair(port).await;
            assert_eq!(who, "one", "{mode}: new tunnel {i} went to the busy member");
            // Held, so that it counts for the next choice.
            again.push(ws);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(again);
        drop(kept);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    h.stop();
}

/// A child the MPM retires for spare threads (its workers are idle while asynchronous tunnels
/// run) is not the server stopping: its tunnels live on past GracefulShutdownTimeout, as a
/// retired child's synchronous tunnels would. (prefork marks nothing that tells the two
/// apart; there a retired child drains as on a stop.)
#[tokio::test(flavor = "multi_thread")]
async fn a_child_retired_for_spare_threads_keeps_its_tunnels() {
    if mpm() == "prefork" {
        return;
    }
    let b = Backend::start("reap");
    let h =
        Httpd::start(Config::new("reap.conf.in").var("BACKEND", format!("127.0.0.1:{}", b.port())));
    let mut all = Vec::new();
    for _ in 0..40 {
        all.push(connect(&h.url("/echo/reap")).await.unwrap().0);
    }
    let serving: std::collections::BTreeSet<u32> = h.children().into_iter().collect();
    // Four children with 20 idle threads, ten allowed: the MPM retires one (or more).
    let end = Instant::now() + Duration::from_secs(10);
    while count(&h, "stopping (graceful)") < 1 {
        assert!(Instant::now() < end, "no child retired: {}", h.error_log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Past GracefulShutdownTimeout (2 s) every tunnel still works, the retired children's too.
    std::thread::sleep(Duration::from_secs(3));
    for ws in all.iter_mut() {
        let m = Message::text("still here");
        assert_eq!(echo(ws, m.clone()).await, m);
    }
    assert_eq!(count(&h, "WST02011"), 0, "{}", h.error_log());
    let retired: Vec<u32> = serving
        .iter()
        .copied()
        .filter(|p| {
            !h.children().contains(p) || h.error_log().contains(&format!("child {p} stopping"))
        })
        .collect();
    assert!(!retired.is_empty());
    // Closing them lets the retired children exit.
    for mut ws in all {
        ws.close(None).await.ok();
        while let Some(Ok(_)) = ws.next().await {}
    }
    let end = Instant::now() + Duration::from_secs(5);
    while retired.iter().any(|p| {
        h.error_log().contains(&format!("child {p} stopping")) && wskit::httpd::process_alive(*p)
    }) {
        assert!(Instant::now() < end, "retired children did not exit after their tunnels ended");
        std::thread::sleep(Duration::from_millis(100));
    }
    h.stop();
}

/// A client that floods its tunnel and never reads the echoes: once asynchronous, its tunnel
/// ends after the write-stall limit (Timeout 2 here), as a synchronous one does (WST02005).
#[test]
fn an_asynchronous_tunnel_whose_client_never_reads_ends_after_the_write_stall() {
    let b = Backend::start("stall");
    let h = server(&b);
    let mut s = raw::connect(h.ports[3]);
    s.write_all(raw::handshake("/echo/raw-echo", "").as_bytes()).unwrap();
    let resp = raw::read_response(&mut s);
    assert_eq!(resp.status, 101, "{}", resp.head);
    assert!(
        h.wait_log("WST02010", Duration::from_secs(5)),
        "the tunnel went asynchronous:\n{}",
        h.error_log()
    );
    let t0 = Instant::now();
    let mut w = s.try_clone().unwrap();
    w.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
    let flood = std::thread::spawn(move || {
        let block = vec![b'x'; 65536];
        let mut sent = 0usize;
        while sent < (1 << 30) && w.write_all(&block).is_ok() {
            sent += block.len();
        }
        sent
    });
    // Both sides stop taking data: the client never reads, and the echo backend stops reading
    // once its echoes back up behind the client. Which of them stalled first (and is named)
    // depends on socket buffers and scheduling; either way the stall limit ends the tunnel.
    let stalled = |h: &Httpd| {
        ["client took no data for 2s", "backend took no data for 2s"]
            .iter()
            .any(|m| h.error_log().contains(m))
    };
    let end = Instant::now() + Duration::from_secs(20);
    while !stalled(&h) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(stalled(&h), "{}", h.error_log());
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(12),
        "ended after {took:?}"
    );
    drop(s);
    let sent = flood.join().unwrap();
    assert!(sent < 1 << 30, "the tunnel took {sent} bytes without anyone reading");
    let log = h.stop();
    assert!(
        log.contains("WST02011") && !log.contains("WST02005"),
        "the asynchronous relay ended it:\n{log}"
    );
}
