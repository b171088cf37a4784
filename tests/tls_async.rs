//! wss:// clients (TLS at httpd, mod_ssl) with `ProxyWebsocketAsync On`. Under the event MPM
//! their tunnels leave the request threads: the handler returns SUSPENDED, the MPM lets go of
//! the connection, and the child's runtime relays through the connection's filters. Under
//! worker and prefork (no suspended state) they stay synchronous. `/ws2/` goes to a ws://
//! backend, `/wss2/` to a wss:// one (its connection held and driven through mod_ssl too).

mod common;
use common::*;
use futures_util::StreamExt;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use wskit::backend::Event;
use wskit::Pki;

type Site = TlsSite;

fn site(name: &str) -> Site {
    site_with(name, "tls_async.conf.in", 3)
}

/// A server on configuration `conf`, which listens on `ports` ports besides the main one.
fn site_with(name: &str, conf: &str, ports: usize) -> Site {
    tls_site(name, conf, |c| c.ports(ports))
}

fn event() -> bool {
    mpm() == "event"
}

#[tokio::test(flavor = "multi_thread")]
async fn more_idle_wss_tunnels_than_request_threads() {
    let s = site("tls-async");
    // Half to the ws:// backend, half to the wss:// one.
    let url = |i: usize| {
        format!("wss://localhost:{}/{}/x", s.h.ports[0], if i % 2 == 0 { "ws2" } else { "wss2" })
    };
    // Ten request threads: under event 30 tunnels hold none of them.
    let n = if event() { 30 } else { 3 };
    let fds =
        || s.h.children().iter().map(|p| wskit::httpd::fd_count(*p).unwrap_or(0)).sum::<usize>();
    // The baseline once the child serves (a request answered).
    let _ = status_auto(s.h.port);
    let fds0 = fds();
    let kinds0 = fd_kinds(&s.h);
    let live0 = live_sockets(&s.h);
    let mut all = Vec::new();
    for i in 0..n {
        let (mut ws, _) = connect_tls(&url(i), &s.pki)
            .await
            .unwrap_or_else(|e| panic!("tunnel {i}: {e}\n{}", s.h.error_log()));
        let m = Message::text(format!("hello {i}"));
        assert_eq!(echo(&mut ws, m.clone()).await, m);
        all.push(ws);
    }
    if !event() {
        assert!(!s.h.error_log().contains("request suspended"), "{}", s.h.error_log());
        assert!(!s.h.error_log().contains("WST00008"), "{}", s.h.error_log());
        return;
    }
    let notices: Vec<String> =
        s.h.error_log().lines().filter(|l| l.contains("WST00008")).map(String::from).collect();
    assert_eq!(notices.len(), 1, "said once at startup: {notices:?}");
    // Both behaviours a suspended connection relies on were seen: core's push at startup, the
    // MPM letting go at each hand-over (WST02024 otherwise).
    let pushed: Vec<String> =
        s.h.error_log().lines().filter(|l| l.contains("WST00010")).map(String::from).collect();
    assert!(
        pushed.len() == 1 && pushed[0].contains(":info]") && pushed[0].contains("arrived"),
        "{pushed:?}"
    );
    assert!(!s.h.error_log().contains("WST02024"), "{}", s.h.error_log());
    // It says what the running values mean (tls_async.conf.in: 10 threads, factor 100).
    assert!(
        notices[0].contains("with ThreadsPerChild 10 and AsyncRequestWorkerFactor 100, a child")
            && notices[0].contains("about 1010 such"),
        "{}",
        notices[0]
    );
    assert_eq!(
        wait_count(&s.h, "(request suspended)", n, Duration::from_secs(5)),
        n,
        "{}",
        s.h.error_log()
    );
    // Two descriptors each: the client's socket (the connection's own, polled in place) and
    // the backend's; no copy. Besides: each relay thread's own three (one relay thread per
    // CPU with StartServers 1) and a fourth once it has logged a tunnel's end (the loopback
    // socket end records are made on, docs/DESIGN.md §9), the child's stop eventfd, and the
    // last tunnel's request thread still letting go of its backend.
    // Sockets count when they are connections (listed in /proc/net/tcp): the MPM may still
    // hold closed ones it lingers on. Counted before the status requests below.
    let settled = Instant::now() + Duration::from_secs(2);
    let relay_fds = 4 * std::thread::available_parallelism().map_or(1, |n| n.get()) + 2;
    let grown = |now: &std::collections::BTreeMap<String, usize>, kind: &str| {
        now.get(kind).copied().unwrap_or(0).saturating_sub(kinds0.get(kind).copied().unwrap_or(0))
    };
    let (mut kinds, mut live) = (fd_kinds(&s.h), live_sockets(&s.h));
    while live.saturating_sub(live0) > 2 * n + 1 && Instant::now() < settled {
        tokio::time::sleep(Duration::from_millis(50)).await;
        (kinds, live) = (fd_kinds(&s.h), live_sockets(&s.h));
    }
    assert!(
        live.saturating_sub(live0) <= 2 * n + 1 && grown(&kinds, "anon_inode") <= relay_fds,
        "{n} suspended tunnels hold {} more connections: {kinds0:?} before, {kinds:?} now",
        live.saturating_sub(live0)
    );
    let others: usize = kinds
        .iter()
        .filter(|(k, _)| *k != "socket" && *k != "anon_inode")
        .map(|(k, _)| grown(&kinds, k))
        .sum();
    assert_eq!(others, 0, "{kinds0:?} before, {kinds:?} now");
    // Plain HTTP still served, and the board counts them as asynchronous.
    let (status, _) = status_auto(s.h.port);
    assert_eq!(
        (status["WebSocketAsyncTunnels"], status["WebSocketSyncTunnels"]),
        (n as u64, 0),
        "{status:?}"
    );
    // mod_status's own count: a suspended tunnel stays one of its child's connections (the
    // status request itself is one more).
    let conns = mpm_connections(&s.h);
    assert!(
        (n as u64..=n as u64 + 2).contains(&conns),
        "mod_status counts {conns} connections with {n} tunnels suspended"
    );
    // Big messages both ways through mod_ssl after the hand-over (on both kinds of backend).
    for ws in all.iter_mut().take(4) {
        let m = Message::binary(payload(1 << 20, 9));
        assert_eq!(echo(ws, m.clone()).await, m);
    }
    for mut ws in all {
        ws.close(None).await.unwrap();
        while let Some(Ok(_)) = ws.next().await {}
    }
    assert_eq!(wait_count(&s.h, "WST02011", n, Duration::from_secs(10)), n, "{}", s.h.error_log());
    // Each client's Close reached its backend, the wss:// ones through their held connections,
    // and every descriptor went with its tunnel (the held backends back to mod_proxy, closed).
    let closes = |b: &Backend| b.events().iter().filter(|e| matches!(e, Event::Close(_))).count();
    assert_eq!((closes(&s.b), closes(&s.tb)), (n / 2, n / 2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The child keeps what the first tunnel started: its relay threads' own descriptors and
    // the stop eventfd its request threads' relays watch.
    assert!(
        fds() <= fds0 + relay_fds,
        "descriptors: {fds0} before, {} after the tunnels: {kinds0:?} before, {:?} after, {} live sockets",
        fds(),
        fd_kinds(&s.h),
        live_sockets(&s.h)
    );
    // Two access-log records per tunnel, as for raw ones: httpd's own when the request was
    // ended at the hand-over (its pool freed there), and the module's at the tunnel's end with
    // what the runtime relayed: 1 MiB each way for the first four.
    let access = s.h.access_log();
    let records: Vec<&str> =
        access.lines().filter(|l| l.contains("/ws2/x") || l.contains("/wss2/x")).collect();
    assert_eq!(records.len(), 2 * n, "{access}");
    assert!(records.iter().all(|l| l.contains(" 101 ")), "{access}");
    let bytes =
        |l: &str| -> Vec<u64> { l.rsplit(' ').take(2).map(|v| v.parse().unwrap()).collect() };
    let big = records.iter().filter(|l| bytes(l).iter().all(|&b| b > 1 << 20)).count();
    assert_eq!(big, 4, "{access}");
    let (status, _) = status_auto(s.h.port);
    assert_eq!(status["WebSocketAsyncTunnels"], 0, "{status:?}");
    // Each ended tunnel gave its connection back to the MPM's count.
    let conns = mpm_connections(&s.h);
    assert!(conns <= 2, "mod_status counts {conns} connections once the tunnels ended");
    s.h.stop();
}

/// The children's open files by kind (socket, pipe, anon_inode:[eventpoll], ...), to tell
/// which kind grew.
/// The children's descriptors that are TCP connections or listeners (their sockets' inodes
/// are in /proc/net/tcp or tcp6; a closed socket whose descriptor is still open is not).
fn live_sockets(h: &Httpd) -> usize {
    let tables =
        ["/proc/net/tcp", "/proc/net/tcp6"].map(|t| std::fs::read_to_string(t).unwrap_or_default());
    let inodes: std::collections::HashSet<&str> = tables
        .iter()
        .flat_map(|t| t.lines().skip(1))
        .filter_map(|l| l.split_whitespace().nth(9))
        .collect();
    h.children()
        .iter()
        .flat_map(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten()
        })
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|t| {
            let t = t.display().to_string();
            t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')).map(String::from)
        })
        .filter(|i| inodes.contains(i.as_str()))
        .count()
}

fn fd_kinds(h: &Httpd) -> std::collections::BTreeMap<String, usize> {
    let mut kinds = std::collections::BTreeMap::new();
    for pid in h.children() {
        for e in std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten() {
            let target =
                std::fs::read_link(e.path()).map(|t| t.display().to_string()).unwrap_or_default();
            *kinds
                .entry(
                    target
                        .split(':')
                        .next()
                        .unwrap_or("")
                        .split('[')
                        .next()
                        .unwrap_or("")
                        .to_string(),
                )
                .or_insert(0) += 1;
        }
    }
    kinds
}

/// The child's connections as mod_status shows them (`ConnsTotal`), suspended ones included.
/// The event MPM copies its counts to the scoreboard when its listener processes a timeout
/// queue, so a keep-alive connection is left to expire (KeepAliveTimeout 1) first.
fn mpm_connections(h: &Httpd) -> u64 {
    use std::io::{Read, Write};
    let mut ka = std::net::TcpStream::connect(("127.0.0.1", h.port)).unwrap();
    ka.write_all(b"GET /server-status?auto HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    ka.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 8192];
    // The response, then the server's close when the keep-alive expires.
    while ka.read(&mut buf).is_ok_and(|n| n > 0) {}
    std::thread::sleep(Duration::from_millis(100));
    status_auto(h.port).0["ConnsTotal"]
}

/// `lbmethod=bybusyness` sees every live wss:// tunnel, suspended ones included, on a ws://
/// and on a wss:// member: live tunnels spread evenly, and once one member's are closed it
/// takes the next ones.
#[tokio::test(flavor = "multi_thread")]
async fn bybusyness_sees_suspended_tunnels_on_both_kinds_of_member() {
    let s = site("tls-busy");
    let open = || async {
        let (ws, resp) =
            connect_tls(&format!("wss://localhost:{}/pair/busy", s.h.ports[0]), &s.pki)
                .await
                .unwrap();
        let who = resp.headers().get("x-backend").unwrap().to_str().unwrap().to_string();
        (ws, who)
    };
    let mut live = Vec::new();
    for _ in 0..6 {
        live.push(open().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if event() {
        assert_eq!(
            wait_count(&s.h, "(request suspended)", 6, Duration::from_secs(5)),
            6,
            "{}",
            s.h.error_log()
        );
    }
    let plain = s.b.name.clone();
    let on_plain = live.iter().filter(|(_, w)| *w == plain).count();
    assert_eq!(
        on_plain,
        3,
        "bybusyness spreads live tunnels evenly: {:?}",
        live.iter().map(|(_, w)| w).collect::<Vec<_>>()
    );
    // Close the ws:// member's tunnels: it is now the idle one, so it gets the next three.
    let (gone, kept): (Vec<_>, Vec<_>) = live.into_iter().partition(|(_, w)| *w == plain);
    close_all(gone.into_iter().map(|(ws, _)| ws)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut again = Vec::new();
    for i in 0..3 {
        let (ws, who) = open().await;
        assert_eq!(who, plain, "new tunnel {i} went to the busy member");
        again.push(ws);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(again);
    drop(kept);
    s.h.stop();
}

/// A wss:// backend whose worker keeps mod_proxy's default max= (ThreadsPerChild): holding
/// its connections past the request threads would leave requests waiting in mod_proxy for
/// one, so its tunnels stay synchronous, say why once, and more than max= of them can still
/// not starve the others.
#[tokio::test(flavor = "multi_thread")]
async fn wss_backends_without_room_stay_in_their_threads() {
    if !event() {
        return;
    }
    let s = site("tls-noroom");
    let mut all = Vec::new();
    for i in 0..3 {
        let (mut ws, _) =
            connect_tls(&format!("wss://localhost:{}/wss3/n", s.h.ports[0]), &s.pki).await.unwrap();
        let m = Message::text(format!("sync {i}"));
        assert_eq!(echo(&mut ws, m.clone()).await, m);
        all.push(ws);
    }
    // Meanwhile a wss:// backend with room still goes asynchronous.
    let (mut ws, _) =
        connect_tls(&format!("wss://localhost:{}/wss2/n", s.h.ports[0]), &s.pki).await.unwrap();
    let m = Message::text("async");
    assert_eq!(echo(&mut ws, m.clone()).await, m);
    assert_eq!(
        wait_count(&s.h, "(request suspended)", 1, Duration::from_secs(5)),
        1,
        "{}",
        s.h.error_log()
    );
    let (status, _) = status_auto(s.h.port);
    assert_eq!(
        (status["WebSocketAsyncTunnels"], status["WebSocketSyncTunnels"]),
        (1, 3),
        "{status:?}"
    );
    let log = s.h.error_log();
    let why: Vec<&str> = log.lines().filter(|l| l.contains("WST02017")).collect();
    assert_eq!(why.len(), 1, "said once: {why:?}");
    assert!(why[0].contains("max=10") && why[0].contains("raise max="), "{}", why[0]);
    drop(all);
    drop(ws);
    s.h.stop();
}

/// `ProxyWebsocketUpgradeHttp On`: the upgrade requests of an http:// and an https:// worker
/// are this module's, and their tunnels leave the request threads as ws:// and wss:// ones
/// do (under event; under worker and prefork they stay, as those do).
#[tokio::test(flavor = "multi_thread")]
async fn http_and_https_workers_tunnel_here_and_go_asynchronous() {
    let s = site("tls-uphttp");
    let mut all = Vec::new();
    for path in ["/up/a", "/ups/b", "/ws2/c", "/wss2/d"] {
        let (mut ws, _) =
            connect_tls(&format!("wss://localhost:{}{path}", s.h.ports[0]), &s.pki).await.unwrap();
        let m = Message::text(format!("through {path}"));
        assert_eq!(echo(&mut ws, m.clone()).await, m);
        all.push(ws);
    }
    assert_eq!(wait_count(&s.h, "WST01025", 2, Duration::from_secs(5)), 2, "{}", s.h.error_log());
    let (want_async, want_sync) = if event() { (4, 0) } else { (0, 4) };
    // Each tunnel leaves its request thread a moment after its first echo.
    let (status, _) = wait_auto(s.h.port, |t, _| {
        (t["WebSocketAsyncTunnels"], t["WebSocketSyncTunnels"]) == (want_async, want_sync)
    });
    assert_eq!(
        (status["WebSocketAsyncTunnels"], status["WebSocketSyncTunnels"]),
        (want_async, want_sync),
        "{status:?}"
    );
    let heads = s.b.requests().into_iter().chain(s.tb.requests()).collect::<Vec<_>>();
    for path in ["/up/a", "/ups/b"] {
        assert!(
            heads.iter().any(|h| h.starts_with(&format!("GET {path} HTTP/1.1"))),
            "{path} not at its backend: {heads:?}"
        );
    }
    for mut ws in all {
        ws.close(None).await.unwrap();
        // The backend's Close comes back before the connection goes: a client that dropped it
        // at once would reset it (WST02003), not close it.
        while let Some(Ok(_)) = ws.next().await {}
    }
    let ended = if event() { "WST02011" } else { "WST02001" };
    assert!(wait_count(&s.h, ended, 4, Duration::from_secs(10)) >= 4, "{}", s.h.error_log());
    let log = s.h.error_log();
    for path in ["/up/a", "/ups/b"] {
        assert!(log.lines().any(|l| l.contains("WST01025") && l.contains(path)), "{path}:\n{log}");
    }
    s.h.stop();
}

/// After `ProxyWebsocketAsyncDelay` the tunnel is suspended; the idle limit still ends it.
#[tokio::test(flavor = "multi_thread")]
async fn suspended_after_the_delay_and_reaped_when_idle() {
    if !event() {
        return;
    }
    let s = site("tls-delay");
    let (mut ws, _) =
        connect_tls(&format!("wss://localhost:{}/ws2/d", s.h.ports[1]), &s.pki).await.unwrap();
    let m = Message::text("in the request thread");
    assert_eq!(echo(&mut ws, m.clone()).await, m);
    assert!(!s.h.error_log().contains("request suspended"), "not before the delay");
    assert!(s.h.wait_log("request suspended", Duration::from_secs(3)), "{}", s.h.error_log());
    let m = Message::text("on the runtime");
    assert_eq!(echo(&mut ws, m.clone()).await, m);
    // Then nothing for a second: the module closes it.
    let t0 = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                _ => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the idle limit did not end it:\n{}", s.h.error_log());
    assert!(t0.elapsed() >= Duration::from_millis(800), "ended after {:?}", t0.elapsed());
    assert!(s.h.wait_log("WST02011", Duration::from_secs(3)), "{}", s.h.error_log());
    s.h.stop();
}

/// A graceful stop ends suspended tunnels politely: Close 1001 to both sides, then httpd exits
/// within GracefulShutdownTimeout.
#[tokio::test(flavor = "multi_thread")]
async fn a_graceful_stop_closes_suspended_wss_tunnels_with_1001() {
    if !event() {
        return;
    }
    let mut s = site("tls-drain");
    let mut all = Vec::new();
    for prefix in ["ws2", "wss2", "ws2", "wss2"] {
        let (ws, _) = connect_tls(&format!("wss://localhost:{}/{prefix}/g", s.h.ports[0]), &s.pki)
            .await
            .unwrap();
        all.push(ws);
    }
    assert_eq!(
        wait_count(&s.h, "(request suspended)", 4, Duration::from_secs(5)),
        4,
        "{}",
        s.h.error_log()
    );
    let t0 = Instant::now();
    s.h.signal(libc::SIGWINCH);
    for ws in all.iter_mut() {
        let m = Message::text("during the drain");
        assert_eq!(echo(ws, m.clone()).await, m);
    }
    for ws in all.iter_mut() {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .expect("no close within 5 s")
            {
                Some(Ok(Message::Close(Some(f)))) => {
                    assert_eq!(f.code, CloseCode::Away);
                    break;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected Close 1001, got {other:?}"),
            }
        }
        while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {}
    }
    assert!(
        t0.elapsed() > Duration::from_millis(1200),
        "closed {:?} after the signal: no drain",
        t0.elapsed()
    );
    s.h.wait_exit(Duration::from_secs(15)).expect("httpd did not stop");
    assert!(t0.elapsed() < Duration::from_secs(4), "graceful stop took {:?}", t0.elapsed());
    let away =
        |b: &Backend| b.events().iter().filter(|e| matches!(e, Event::Close(Some(1001)))).count();
    assert_eq!((away(&s.b), away(&s.tb)), (2, 2), "{:?} {:?}", s.b.events(), s.tb.events());
    let log = s.h.stop();
    assert_eq!(log.matches("WST02011").count(), 4, "{log}");
}

/// Half-close each way through a suspended TLS client end, as through mod_proxy's tunnel, to
/// a ws:// and to a wss:// backend.
#[tokio::test(flavor = "multi_thread")]
async fn half_close_each_way_when_suspended() {
    if !event() {
        return;
    }
    let s = site("tls-half");
    let port = s.h.ports[0];
    for (prefix, b) in [("ws2", &s.b), ("wss2", &s.tb)] {
        // Client → backend: everything the client sent before its close_notify and FIN arrives,
        // and the answer still comes back.
        let before = s.h.error_log().matches("(request suspended)").count();
        let (mut t, _) = tls_tunnel(port, &s.pki, &format!("/{prefix}/raw-count")).await;
        assert!(
            wait_count(&s.h, "(request suspended)", before + 1, Duration::from_secs(5)) > before,
            "{}",
            s.h.error_log()
        );
        let data = payload(3 << 20, 1);
        t.write_all(&data).await.unwrap();
        t.shutdown().await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), t.read_to_end(&mut answer))
            .await
            .expect("no answer after half-close")
            .ok();
        assert_eq!(String::from_utf8_lossy(&answer), format!("got {} bytes", data.len()));
        // Backend → client: its bytes, then its FIN; what the client sends after still arrives.
        let (mut t, mut got) = tls_tunnel(port, &s.pki, &format!("/{prefix}/raw-fin-first")).await;
        let mut chunk = [0u8; 64];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), t.read(&mut chunk))
                .await
                .expect("no EOF from backend")
            {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
        assert_eq!(got, b"bye");
        let after = payload(100_000, 2);
        if t.write_all(&after).await.is_ok() {
            let _ = t.shutdown().await;
        }
        let seen = b.wait_for(Duration::from_secs(10), |ev| matches!(ev, Event::AfterFin(_)));
        assert!(
            matches!(seen, Some(Event::AfterFin(n)) if n == after.len()),
            "after its FIN the backend got {seen:?}"
        );
    }
    s.h.stop();
}

/// Resets and write stalls end suspended tunnels, to either kind of backend: a client's reset
/// reaches the backend as the end of its connection, a backend's reset ends the client's, and
/// a client that never reads while its backend floods it is cut off after the write-stall
/// limit (`Timeout 2` in that virtual host).
#[tokio::test(flavor = "multi_thread")]
async fn resets_and_stalls_end_suspended_tunnels() {
    if !event() {
        return;
    }
    let s = site("tls-resets");
    let suspended = |h: &Httpd| h.error_log().matches("(request suspended)").count();
    for (prefix, b) in [("ws2", &s.b), ("wss2", &s.tb)] {
        // The client resets.
        let before = suspended(&s.h);
        let (t, _) = tls_tunnel(s.h.ports[0], &s.pki, &format!("/{prefix}/raw-hold")).await;
        assert!(
            wait_count(&s.h, "(request suspended)", before + 1, Duration::from_secs(5)) > before,
            "{}",
            s.h.error_log()
        );
        let at = Instant::now();
        drop(wskit::backend::socket_linger0(t.into_inner().0.into_std().unwrap()));
        let seen =
            b.wait_for(Duration::from_secs(5), |e| matches!(e, Event::Eof(when) if *when > at));
        assert!(seen.is_some(), "{prefix}: the backend's connection outlived the client's reset");
        // The backend resets (after the client's first bytes).
        let before = suspended(&s.h);
        let (mut t, _) = tls_tunnel(s.h.ports[0], &s.pki, &format!("/{prefix}/raw-rst")).await;
        assert!(
            wait_count(&s.h, "(request suspended)", before + 1, Duration::from_secs(5)) > before,
            "{}",
            s.h.error_log()
        );
        t.write_all(b"hello").await.unwrap();
        let mut rest = Vec::new();
        let end = tokio::time::timeout(Duration::from_secs(5), t.read_to_end(&mut rest)).await;
        assert!(end.is_ok(), "{prefix}: the client's connection outlived the backend's reset");
        // The client never reads; the backend floods.
        let before = suspended(&s.h);
        let stalls = |h: &Httpd| h.error_log().matches("took no data for 2s").count();
        let stalls0 = stalls(&s.h);
        let (t, _) =
            tls_tunnel(s.h.ports[2], &s.pki, &format!("/{prefix}/raw-flood-1000000000")).await;
        assert!(
            wait_count(&s.h, "(request suspended)", before + 1, Duration::from_secs(5)) > before,
            "{}",
            s.h.error_log()
        );
        let t0 = Instant::now();
        while stalls(&s.h) == stalls0 && t0.elapsed() < Duration::from_secs(15) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(stalls(&s.h) > stalls0, "{prefix}: no write stall:\n{}", s.h.error_log());
        assert!(
            t0.elapsed() >= Duration::from_millis(1500),
            "{prefix}: a stall after {:?}",
            t0.elapsed()
        );
        drop(t);
    }
    let log = s.h.stop();
    assert_eq!(log.matches("WST02011").count(), 6, "every one ended on the runtime:\n{log}");
}

/// What an idle suspended wss:// tunnel costs the child (its private memory, which other
/// servers of a parallel test run cannot move as they can its PSS): the request is ended at
/// the hand-over and its blocks go back to the system, so 500 idle tunnels (after 100
/// opened and closed, which start the runtime and bring the allocators to their size) cost
/// at most 45 KiB each (39–40 measured). Keeping the request for the tunnel's life cost 49.8. Two
/// handshakes at a time: the child's 10 threads must stay idle enough for the event MPM to
/// keep accepting (ThreadsPerChild + idle threads x AsyncRequestWorkerFactor).
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_suspended_tunnel_costs_the_child_little_memory() {
    if !event() {
        return;
    }
    let s = site("tls-pss");
    let url = format!("wss://localhost:{}/ws2/m", s.h.ports[0]);
    for mut ws in open_at_most(&url, &s.pki, 100, 2).await {
        ws.close(None).await.unwrap();
        while let Some(Ok(_)) = ws.next().await {}
    }
    assert_eq!(
        wait_count(&s.h, "WST02011", 100, Duration::from_secs(10)),
        100,
        "{}",
        s.h.error_log()
    );
    let child = s.h.children()[0];
    let before = wskit::httpd::uss_kib(child);
    let n = 500;
    let all = open_at_most(&url, &s.pki, n, 2).await;
    // Every request was ended: its own record is written then.
    let handed = |h: &Httpd| h.access_log().lines().filter(|l| l.contains("/ws2/m")).count();
    wskit::httpd::wait_until(Duration::from_secs(10), || handed(&s.h) >= 2 * 100 + n);
    assert_eq!(handed(&s.h), 2 * 100 + n);
    let (status, _) = status_auto(s.h.port);
    assert_eq!(status["WebSocketAsyncTunnels"], n as u64, "{status:?}");
    let each = (wskit::httpd::uss_kib(child) - before) as f64 / n as f64;
    eprintln!("private memory per idle suspended tunnel: {each:.1} KiB");
    assert!(each <= 45.0, "{each:.1} KiB of private memory per idle suspended tunnel");
    assert_eq!(s.h.children(), vec![child]);
    drop(all);
    s.h.stop();
}

/// A suspended tunnel's request is ended and freed at the hand-over, while mod_ssl's state
/// keeps a pointer to it for its certificate verify callback (armed here: client certificates
/// are asked for). A client that tries to renegotiate (TLS 1.2) to reach it is refused by
/// OpenSSL, as mod_ssl disables renegotiation; the child lives on and serves the next tunnel.
#[tokio::test(flavor = "multi_thread")]
async fn a_renegotiation_on_a_suspended_tunnel_is_refused() {
    if !event() {
        return;
    }
    use std::io::Write;
    let s = site("tls-reneg");
    let port = s.h.ports[2];
    let mut client = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-tls1_2", "-crlf"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    let mut stdin = client.stdin.take().unwrap();
    let head =
        "GET /ws2/reneg HTTP/1.1\nHost: localhost\nUpgrade: websocket\nConnection: Upgrade\n\
                Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13\n\n";
    stdin.write_all(head.as_bytes()).unwrap();
    stdin.flush().unwrap();
    // The request's own record is written when it is ended, at the hand-over.
    assert!(s.h.wait_access_log("/ws2/reneg", Duration::from_secs(5)), "{}", s.h.error_log());
    let children = s.h.children();
    assert!(!children.is_empty());
    stdin.write_all(b"R\n").unwrap();
    stdin.flush().unwrap();
    let t0 = Instant::now();
    while client.try_wait().unwrap().is_none() && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = client.kill();
    let out = client.wait_with_output().unwrap();
    let said =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("101 Switching Protocols"), "{said}");
    assert!(said.contains("RENEGOTIATING") && said.contains("no renegotiation"), "{said}");
    assert!(s.h.wait_log("WST02011", Duration::from_secs(5)), "{}", s.h.error_log());
    let (mut ws, _) =
        connect_tls(&format!("wss://localhost:{port}/ws2/next"), &s.pki).await.unwrap();
    let m = Message::text("after the attempt");
    assert_eq!(echo(&mut ws, m.clone()).await, m);
    assert_eq!(s.h.children(), children, "the child that refused it serves on");
    drop(ws);
    s.h.stop();
}

/// 10,000 wss:// tunnels connect, hand over (suspended), echo and close, half of them to a
/// wss:// backend: the child's open files and memory end where they were after a warm-up of
/// 1,000 (which brings mod_proxy's connection pool and the allocators to their working size),
/// and no child dies.
#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_suspended_wss_tunnels_leave_no_trace() {
    if !event() {
        return;
    }
    let s = site("tls-cycles");
    // Half of them to the wss:// backend (its connections held, then given back).
    let port = s.h.ports[0];
    let pki = s.pki.clone();
    let open = move |w: usize| {
        let url = format!("wss://localhost:{port}/{}/c", if w % 2 == 0 { "ws2" } else { "wss2" });
        let pki = pki.clone();
        async move { connect_tls(&url, &pki).await.unwrap().0 }
    };
    churn(1000, open.clone()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pids = s.h.children();
    let fds =
        |pids: &[u32]| pids.iter().map(|p| wskit::httpd::fd_count(*p).unwrap_or(0)).sum::<usize>();
    let rss = |pids: &[u32]| pids.iter().map(|p| wskit::httpd::rss_kib(*p)).sum::<u64>();
    let (fds0, rss0) = (fds(&pids), rss(&pids));
    let t0 = Instant::now();
    churn(10_000, open).await;
    let took = t0.elapsed();
    assert_eq!(
        wait_count(&s.h, "WST02011", 11_000, Duration::from_secs(30)),
        11_000,
        "every tunnel ended on the runtime"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let alive: Vec<u32> =
        pids.iter().copied().filter(|p| wskit::httpd::process_alive(*p)).collect();
    assert_eq!(alive, pids, "children changed during the run");
    let (fds1, rss1) = (fds(&pids), rss(&pids));
    eprintln!("10,000 suspended wss tunnels in {took:?}; children's fds {fds0} -> {fds1}, RSS {rss0} -> {rss1} KiB");
    assert!(fds1 <= fds0 + 2, "file descriptors grew from {fds0} to {fds1}");
    assert!(rss1 <= rss0 + rss0 / 10 + 2048, "RSS grew from {rss0} to {rss1} KiB");
    let log = s.h.stop();
    assert_eq!(log.matches("(request suspended)").count(), 11_000);
}

/// What the README says of AsyncRequestWorkerFactor: a suspended wss:// tunnel is one of its
/// child's connections, and with the default factor (2) a child with 10 threads stops
/// accepting at about 10 + 9 idle x 2; the configuration above (factor 100) held 30 and more.
#[tokio::test(flavor = "multi_thread")]
async fn a_child_holds_what_async_request_worker_factor_allows() {
    if !event() {
        return;
    }
    let s = site_with("tls-factor", "tls_async_nofactor.conf.in", 2);
    let url = format!("wss://localhost:{}/ws2/f", s.h.ports[0]);
    let mut all = Vec::new();
    for _ in 0..60 {
        match tokio::time::timeout(Duration::from_secs(3), connect_tls(&url, &s.pki)).await {
            Ok(Ok((ws, _))) => all.push(ws),
            _ => break,
        }
    }
    assert!(
        (20..=32).contains(&all.len()),
        "a child with 10 threads and factor 2 held {}",
        all.len()
    );
    s.h.stop();
}

/// Opens `n` wss:// tunnels, 50 at a time, each echoing once.
async fn open_many(url: &str, pki: &Pki, n: usize) -> Vec<Ws> {
    open_at_most(url, pki, n, 50).await
}

/// Opens `n` tunnels, `at_once` handshakes at a time, each echoing once.
async fn open_at_most(url: &str, pki: &Pki, n: usize, at_once: usize) -> Vec<Ws> {
    let (url, pki) = (url.to_string(), pki.clone());
    open_live(n, at_once, move || {
        let (url, pki) = (url.clone(), pki.clone());
        async move { connect_tls(&url, &pki).await }
    })
    .await
}

/// 1,000 suspended wss:// tunnels (a fifth of them to a wss:// backend) through a graceful
/// restart (new WebSockets served meanwhile, the old generation's tunnels closed and its
/// children gone within GracefulShutdownTimeout), then 1,000 more through a graceful stop.
#[tokio::test(flavor = "multi_thread")]
async fn restarts_and_stops_with_a_thousand_suspended_wss_tunnels() {
    if !event() {
        return;
    }
    let mut s = site_with("tls-many", "tls_async_many.conf.in", 1);
    let url = format!("wss://localhost:{}/ws2/m", s.h.ports[0]);
    let n = 1000;
    // A fifth of them to the wss:// backend: its held connections go back to the old
    // generation's workers as the old children drain.
    let mut first = open_many(&url, &s.pki, n - n / 5).await;
    first.extend(
        open_many(&format!("wss://localhost:{}/wss2/m", s.h.ports[0]), &s.pki, n / 5).await,
    );
    assert_eq!(wait_count(&s.h, "(request suspended)", n, Duration::from_secs(10)), n);
    let old_children = s.h.children();
    let t0 = Instant::now();
    s.h.signal(libc::SIGUSR1);
    // A connection an old child accepted just before it stopped listening may be closed by
    // httpd itself before its request (a client reconnects): counted, not fatal.
    let (mut served, mut refused) = (0, 0);
    let mut gone = None;
    while t0.elapsed() < Duration::from_secs(8)
        && (gone.is_none() || t0.elapsed() < Duration::from_secs(4))
    {
        match connect_tls(&url, &s.pki).await {
            Ok((mut ws, _)) => {
                let m = Message::text("during");
                assert_eq!(echo(&mut ws, m.clone()).await, m);
                served += 1;
            }
            Err(_) => refused += 1,
        }
        if gone.is_none() && old_children.iter().all(|p| !wskit::httpd::process_alive(*p)) {
            gone = Some(t0.elapsed());
        }
    }
    let gone = gone.unwrap_or(t0.elapsed());
    assert!(
        gone < Duration::from_secs(5),
        "old children took {gone:?} to go with GracefulShutdownTimeout 3"
    );
    assert!(
        served >= 50 && refused * 20 <= served,
        "{served} new tunnels served during the restart, {refused} closed early"
    );
    assert_eq!(count_ended(first).await, n, "tunnels of the old generation left open");
    eprintln!("graceful restart with {n} suspended wss tunnels: {served} new ones served meanwhile ({refused} closed early), old children gone after {gone:?}");

    let mut second = open_many(&url, &s.pki, n - n / 5).await;
    second.extend(
        open_many(&format!("wss://localhost:{}/wss2/m", s.h.ports[0]), &s.pki, n / 5).await,
    );
    let t1 = Instant::now();
    s.h.signal(libc::SIGWINCH);
    s.h.wait_exit(Duration::from_secs(15)).expect("httpd did not stop");
    let took = t1.elapsed();
    eprintln!("graceful stop with {n} suspended wss tunnels took {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "graceful stop with GracefulShutdownTimeout 3 took {took:?}"
    );
    drop(second);
    let log = s.h.stop();
    assert!(!log.contains("Segmentation fault") && !log.contains("exit signal"), "{log}");
}

/// A hard stop (SIGTERM) closes suspended tunnels at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_hard_stop_closes_suspended_wss_tunnels_at_once() {
    if !event() {
        return;
    }
    let mut s = site_with("tls-hard", "tls_async_many.conf.in", 1);
    let url = format!("wss://localhost:{}/ws2/h", s.h.ports[0]);
    let mut live = open_many(&url, &s.pki, 500).await;
    assert_eq!(wait_count(&s.h, "(request suspended)", 500, Duration::from_secs(10)), 500);
    let t0 = Instant::now();
    s.h.signal(libc::SIGTERM);
    s.h.wait_exit(Duration::from_secs(10)).expect("httpd did not stop");
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(2), "a hard stop took {took:?}");
    for ws in live.iter_mut() {
        let end = tokio::time::timeout(Duration::from_secs(2), ws.next()).await;
        assert!(
            matches!(end, Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_))))),
            "a tunnel outlived the stop: {end:?}"
        );
    }
    s.h.stop();
}
