//! Debian's daily logrotate reload with long-lived WebSockets: Debian sets no
//! GracefulShutdownTimeout (0: httpd waits for its old children forever), so each graceful
//! restart leaves the old generation's children alive until their last WebSocket ends. This
//! measures httpd's processes, scoreboard slots and memory over 7 reloads with 1,000 live
//! WebSockets, without and with the package's conf (ProxyWebsocketUpgradeHttp On,
//! ProxyWebsocketAsync On, ProxyWebsocketDrainTimeout 10s, ...), and prints them side by side.
//!
//! `cargo build --release && cargo test --release --test reloads -- --ignored --nocapture`
//! (about 4 minutes).
//!
//! The clients behave like browser apps: when their WebSocket closes (a Close frame or EOF) they
//! reconnect once, after 0.25 to 1.25 s; a reconnection that fails is retried every second (a
//! client gives up after 10 failures in a row, counted).

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const CLIENTS: usize = 1000;
const RELOADS: usize = 7;
/// From each reload to its row (and the next reload): longer than the 10 s drain and the
/// clients' reconnection.
const SPACING: Duration = Duration::from_secs(13);

/// The active lines of the package's /etc/apache2/mods-available/proxy_wstunnel.conf.
const PACKAGE_CONF: &str = "ProxyWebsocketFallbackToProxyHttp Off\n\
                            ProxyWebsocketUpgradeHttp On\n\
                            ProxyWebsocketAsync On\n\
                            ProxyWebsocketDrainTimeout 10s";

/// What the clients have done so far, and the probe that counts the live ones.
#[derive(Default)]
struct Counters {
    /// Clients with an open WebSocket that echoed once.
    open: AtomicUsize,
    /// Successful handshakes (the first ones included).
    connects: AtomicUsize,
    /// WebSockets that ended (a Close frame, EOF or an error).
    closes: AtomicUsize,
    /// ... of which with a Close 1001 (Going Away).
    going_away: AtomicUsize,
    /// How they ended: count, and the earliest and latest end in seconds after the last reload.
    ends: std::sync::Mutex<std::collections::BTreeMap<String, (usize, f64, f64)>>,
    /// When the last reload was signalled.
    reload_at: std::sync::Mutex<Option<Instant>>,
    /// Handshakes that failed (refused, timed out, not a 101).
    failed: AtomicUsize,
    /// Clients that stopped trying after 10 failures in a row.
    gave_up: AtomicUsize,
    /// Clients that answered the current probe with an echo.
    answered: AtomicUsize,
}

impl Counters {
    fn ended(&self, how: String) {
        if how == "Close 1001" {
            self.going_away.fetch_add(1, Relaxed);
        }
        let at = self.reload_at.lock().unwrap().map(|t| t.elapsed().as_secs_f64()).unwrap_or(-1.0);
        let mut ends = self.ends.lock().unwrap();
        let e = ends.entry(how).or_insert((0, f64::MAX, f64::MIN));
        *e = (e.0 + 1, e.1.min(at), e.2.max(at));
    }
}

/// How a WebSocket ended, in a few words.
fn how(m: &Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) -> String {
    match m {
        Some(Ok(Message::Close(Some(f)))) => format!("Close {}", u16::from(f.code)),
        Some(Ok(Message::Close(None))) => "Close without a code".into(),
        Some(Ok(_)) => "?".into(),
        None => "EOF".into(),
        Some(Err(e)) => format!("error: {e}"),
    }
}

struct Clients {
    c: Arc<Counters>,
    probe: watch::Sender<u64>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A short pseudo-random delay in [250, 1250) ms, different per client and per reconnection.
fn jitter(i: usize, n: u64) -> Duration {
    let mut x =
        (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ n.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    Duration::from_millis(250 + x % 1000)
}

/// Waits for the next text or binary message (true) or the end of the WebSocket (false,
/// recorded in `c` if `c` is given).
async fn next_data(ws: &mut Ws, c: Option<&Counters>) -> bool {
    loop {
        let m = match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(_) | Message::Binary(_)))) => return true,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => continue,
            Ok(m) => m,
            Err(_) => {
                if let Some(c) = c {
                    c.ended("no echo within 10 s".into());
                }
                return false;
            }
        };
        if let Some(c) = c {
            c.ended(how(&m));
        }
        // After a Close, reading on sends ours back and sees the end of the stream.
        if matches!(m, Some(Ok(Message::Close(_)))) {
            while let Ok(Some(Ok(_))) =
                tokio::time::timeout(Duration::from_secs(3), ws.next()).await
            {}
        }
        return false;
    }
}

/// One browser-like client: connect, echo once, stay; answer probes with an echo; when the
/// WebSocket ends, reconnect once after a short delay (retrying a failed attempt every second).
async fn client(
    i: usize,
    url: String,
    c: Arc<Counters>,
    mut probe: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
    gate: Arc<Semaphore>,
) {
    let mut reconnections = 0u64;
    let mut failures_in_a_row = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        let attempt = async {
            let _permit = gate.acquire().await.unwrap();
            let req = url.as_str().into_client_request().unwrap();
            let (mut ws, _) = tokio::time::timeout(
                Duration::from_secs(20),
                tokio_tungstenite::connect_async_with_config(req, Some(ws_config()), true),
            )
            .await
            .ok()?
            .ok()?;
            ws.send(Message::text(format!("hello {i}"))).await.ok()?;
            next_data(&mut ws, None).await.then_some(ws)
        };
        let Some(mut ws) = attempt.await else {
            c.failed.fetch_add(1, Relaxed);
            failures_in_a_row += 1;
            if failures_in_a_row >= 10 {
                c.gave_up.fetch_add(1, Relaxed);
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        failures_in_a_row = 0;
        c.connects.fetch_add(1, Relaxed);
        c.open.fetch_add(1, Relaxed);
        probe.borrow_and_update();
        loop {
            tokio::select! {
                _ = stop.changed() => {
                    let _ = ws.close(None).await;
                    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(3), ws.next()).await {}
                    c.open.fetch_sub(1, Relaxed);
                    return;
                }
                _ = probe.changed() => {
                    probe.borrow_and_update();
                    if let Err(e) = ws.send(Message::text("probe")).await {
                        c.ended(format!("error: {e}"));
                        break;
                    }
                    if !next_data(&mut ws, Some(&c)).await {
                        break;
                    }
                    c.answered.fetch_add(1, Relaxed);
                }
                m = ws.next() => match m {
                    Some(Ok(Message::Text(_) | Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    m => {
                        c.ended(how(&m));
                        if matches!(m, Some(Ok(Message::Close(_)))) {
                            while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(3), ws.next()).await {}
                        }
                        break;
                    }
                },
            }
        }
        c.open.fetch_sub(1, Relaxed);
        c.closes.fetch_add(1, Relaxed);
        tokio::time::sleep(jitter(i, reconnections)).await;
        reconnections += 1;
    }
}

fn start_clients(url: &str) -> Clients {
    let c = Arc::new(Counters::default());
    let (probe, probe_rx) = watch::channel(0u64);
    let (stop, stop_rx) = watch::channel(false);
    // At most 100 handshakes in flight from this process (the test's own CPU on 2 cores).
    let gate = Arc::new(Semaphore::new(100));
    let tasks = (0..CLIENTS)
        .map(|i| {
            tokio::spawn(client(
                i,
                url.to_string(),
                c.clone(),
                probe_rx.clone(),
                stop_rx.clone(),
                gate.clone(),
            ))
        })
        .collect();
    Clients { c, probe, stop, tasks }
}

impl Clients {
    /// How many clients echo a message right now (each open one is asked once).
    async fn live(&self) -> usize {
        self.c.answered.store(0, Relaxed);
        self.probe.send_modify(|n| *n += 1);
        let end = Instant::now() + Duration::from_secs(15);
        let mut last = (usize::MAX, Instant::now());
        while Instant::now() < end {
            let a = self.c.answered.load(Relaxed);
            if a >= self.c.open.load(Relaxed) {
                break;
            }
            if a != last.0 {
                last = (a, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(3) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.c.answered.load(Relaxed)
    }

    async fn leave(self) {
        self.stop.send_replace(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

/// One measurement.
#[derive(Clone, Debug)]
struct Row {
    label: String,
    /// httpd processes: the parent and its children.
    procs: usize,
    /// Children that were already there before the last reload (older generations).
    old: usize,
    /// Scoreboard slots neither open ('.') nor idle ('_'), the status request's own 'W' included.
    busy: usize,
    /// ... of which 'G' (gracefully finishing).
    graceful: usize,
    rss_mib: f64,
    pss_mib: f64,
    /// Clients that echoed a probe.
    live: usize,
    /// Seconds from the reload until no old child was left (None: some still are).
    old_gone_s: Option<f64>,
}

fn httpd_pids(h: &Httpd) -> Vec<u32> {
    std::iter::once(h.pid()).chain(h.children()).collect()
}

/// The Scoreboard line of /server-status?auto: (busy, gracefully finishing, the whole answer).
async fn scoreboard(port: u16) -> (usize, usize, String) {
    let (resp, body) =
        tokio::task::spawn_blocking(move || wskit::raw::get(port, "/server-status?auto", ""))
            .await
            .unwrap();
    assert_eq!(resp.status, 200, "{body}");
    let board = body
        .lines()
        .find_map(|l| l.strip_prefix("Scoreboard: "))
        .unwrap_or_else(|| panic!("no Scoreboard: {body}"));
    let busy = board.chars().filter(|c| *c != '.' && *c != '_').count();
    let graceful = board.chars().filter(|c| *c == 'G').count();
    (busy, graceful, body)
}

async fn measure(
    label: String,
    h: &Httpd,
    clients: &Clients,
    before: &BTreeSet<u32>,
    old_gone_s: Option<f64>,
) -> Row {
    let live = clients.live().await;
    let pids = httpd_pids(h);
    let old = pids[1..].iter().filter(|p| before.contains(p)).count();
    let rss: u64 = pids.iter().map(|p| wskit::httpd::rss_kib(*p)).sum();
    let pss: u64 = pids.iter().map(|p| wskit::httpd::pss_kib(*p)).sum();
    let (busy, graceful, _) = scoreboard(h.port).await;
    Row {
        label,
        procs: pids.len(),
        old,
        busy,
        graceful,
        rss_mib: rss as f64 / 1024.0,
        pss_mib: pss as f64 / 1024.0,
        live,
        old_gone_s,
    }
}

/// What one configuration went through.
struct Run {
    rows: Vec<Row>,
    connects: usize,
    closes: usize,
    going_away: usize,
    failed: usize,
    gave_up: usize,
    /// Children of the first generation alive at the last row (before the clients left).
    first_gen_left: usize,
    status_before_leaving: String,
    log_lines: Vec<String>,
    /// How the clients' WebSockets ended (count, earliest and latest in s after the reload).
    ends: std::collections::BTreeMap<String, (usize, f64, f64)>,
    /// Tunnel ends in the error log (the module's; mod_proxy_http logs none), by what they say.
    log_ends: std::collections::BTreeMap<&'static str, usize>,
}

async fn run(package: bool) -> Run {
    let name = if package { "reloads-pkg" } else { "reloads-nopkg" };
    let b = Backend::start(name);
    let h = Httpd::start(
        Config::new("reloads.conf.in")
            .var("BACKEND", format!("127.0.0.1:{}", b.port()))
            .var("PACKAGE_CONF", if package { PACKAGE_CONF } else { "" })
            .var("LOGLEVEL", "info"),
    );
    let url = h.url("/up/app");
    let t0 = Instant::now();
    let clients = start_clients(&url);
    let end = Instant::now() + Duration::from_secs(90);
    while clients.c.open.load(Relaxed) < CLIENTS && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        clients.c.open.load(Relaxed),
        CLIENTS,
        "{name}: not all clients connected within 90 s"
    );
    eprintln!("{name}: {CLIENTS} WebSockets open after {:.1} s", t0.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let first_gen: BTreeSet<u32> = h.children().into_iter().collect();
    let mut rows = vec![measure("start".into(), &h, &clients, &BTreeSet::new(), None).await];
    let mut before = BTreeSet::new();
    for r in 1..=RELOADS {
        before = h.children().into_iter().collect();
        let t = Instant::now();
        *clients.c.reload_at.lock().unwrap() = Some(t);
        h.signal(libc::SIGUSR1);
        let mut gone = None;
        while t.elapsed() < SPACING {
            if gone.is_none() && !h.children().iter().any(|p| before.contains(p)) {
                gone = Some(t.elapsed().as_secs_f64());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let row = measure(format!("reload {r}"), &h, &clients, &before, gone).await;
        eprintln!("{name}: {row:?}");
        rows.push(row);
    }
    let first_gen_left = h.children().iter().filter(|p| first_gen.contains(p)).count();
    let (_, _, status_before_leaving) = scoreboard(h.port).await;
    let c = clients.c.clone();
    let ends = c.ends.lock().unwrap().clone();
    let (connects, closes, going_away, failed, gave_up) = (
        c.connects.load(Relaxed),
        c.closes.load(Relaxed),
        c.going_away.load(Relaxed),
        c.failed.load(Relaxed),
        c.gave_up.load(Relaxed),
    );
    // The clients leave: their WebSockets end, and so may the old children that held them
    // ("old" and "gone" in this row: the children older than the last reload, timed from the
    // clients' leaving).
    let t = Instant::now();
    clients.leave().await;
    let mut gone = None;
    while t.elapsed() < Duration::from_secs(10) {
        if !h.children().iter().any(|p| before.contains(p)) {
            gone = Some(t.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let idle = Clients {
        c: Arc::new(Counters::default()),
        probe: watch::channel(0).0,
        stop: watch::channel(false).0,
        tasks: vec![],
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    rows.push(measure("clients left".into(), &h, &idle, &before, gone).await);
    let log = h.stop();
    let log_lines = log
        .lines()
        .filter(|l| {
            l.contains("scoreboard is full")
                || l.contains("MaxRequestWorkers")
                || l.contains("[error]")
                || l.contains("[crit]")
        })
        .take(10)
        .map(str::to_string)
        .collect();
    let log_ends = [
        "closed with WebSocket Close 1001",
        "httpd child is stopping: tunnel closed",
        "tunnel closed by both sides",
        "connection failed",
        "took no data",
        "WST02019",
    ]
    .into_iter()
    .map(|what| (what, log.matches(what).count()))
    .filter(|(_, n)| *n > 0)
    .collect();
    Run {
        rows,
        connects,
        closes,
        going_away,
        failed,
        gave_up,
        first_gen_left,
        status_before_leaving,
        log_lines,
        ends,
        log_ends,
    }
}

fn cells(r: &Row) -> String {
    let gone = r.old_gone_s.map(|s| format!("{s:.1}")).unwrap_or_else(|| "-".into());
    format!(
        "{:>5} {:>4} {:>5} {:>4} {:>7.0} {:>6.0} {:>5} {:>5}",
        r.procs, r.old, r.busy, r.graceful, r.rss_mib, r.pss_mib, r.live, gone
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a 4-minute measurement: cargo test --release --test reloads -- --ignored --nocapture"]
async fn seven_reloads_with_a_thousand_websockets_with_and_without_the_package_conf() {
    if mpm() != "event" {
        eprintln!("Debian's default is the event MPM; skipped under {}", mpm());
        return;
    }
    let t0 = Instant::now();
    let without = run(false).await;
    let with = run(true).await;

    let head = format!(
        "{:>5} {:>4} {:>5} {:>4} {:>7} {:>6} {:>5} {:>5}",
        "procs", "old", "busy", "G", "RSS MiB", "PSS", "live", "gone"
    );
    println!("\n{CLIENTS} WebSockets (ProxyPass \"/up/\" \"http://backend/\" upgrade=websocket), {RELOADS} graceful restarts {} s apart, event MPM, GracefulShutdownTimeout 0", SPACING.as_secs());
    println!("procs: httpd parent + children; old: children older than the last reload; busy: scoreboard slots not '.'/'_' (incl. the status request);");
    println!("G: slots gracefully finishing; RSS/PSS: sum over httpd processes; live: clients that echoed a probe; gone: s until no old child was left\n");
    println!("{:<13}| {:<50}| {:<50}", "", "without the package's conf", "with the package's conf");
    println!("{:<13}| {head} | {head}", "");
    for (a, b) in without.rows.iter().zip(&with.rows) {
        println!("{:<13}| {} | {}", a.label, cells(a), cells(b));
    }
    for (what, r) in [("without", &without), ("with", &with)] {
        println!(
            "\n{what} the package's conf: {} handshakes, {} WebSockets ended ({} with Close 1001), {} failed handshakes, {} clients gave up; {} first-generation children still alive after reload {RELOADS}",
            r.connects, r.closes, r.going_away, r.failed, r.gave_up, r.first_gen_left
        );
        for (how, (n, first, last)) in &r.ends {
            println!("  {n:>5} ended by {how}, {first:.1} to {last:.1} s after a reload");
        }
        println!("  tunnel ends in the error log: {:?}", r.log_ends);
        for l in &r.log_lines {
            println!("  error_log: {l}");
        }
    }
    println!(
        "\nserver-status?auto before the clients left, without the package's conf:\n{}",
        without.status_before_leaving
    );
    println!("took {:.0} s", t0.elapsed().as_secs_f64());

    // Without the package's conf: mod_proxy_http relays each WebSocket in a request thread of
    // the first generation for its whole life, and nothing ends them, so those children (at
    // least 1,000 / 25 threads) outlive every reload, with every client still on them.
    let min_children = CLIENTS.div_ceil(25);
    for r in &without.rows[1..=RELOADS] {
        assert!(r.old >= min_children && r.procs > min_children, "without: {r:?}");
        assert!(r.busy >= CLIENTS, "without: {r:?}");
        assert_eq!(r.live, CLIENTS, "without: {r:?}");
    }
    assert!(
        without.first_gen_left >= min_children,
        "without: {} first-generation children left",
        without.first_gen_left
    );
    assert_eq!(without.closes, 0, "without: WebSockets ended although nothing ends them");

    // With it: every reload ends the old generation's WebSockets with Close 1001 after the
    // 10 s drain, the old children exit, and the clients are all back on the new one.
    let last = &with.rows[RELOADS];
    assert_eq!(last.old, 0, "with: old children left after the last reload: {last:?}");
    assert!(last.old_gone_s.is_some_and(|s| s < 12.5), "with: {last:?}");
    assert!(last.procs <= 1 + 4, "with: {} httpd processes after the last reload", last.procs);
    assert!(last.busy < 50, "with: {last:?}");
    assert_eq!(last.live, CLIENTS, "with: not every client is live again: {last:?}");
    assert_eq!(with.gave_up, 0);
    // Every WebSocket of every old generation ended (how: printed above; Close 1001 is
    // tests/drain.rs's to check), and none otherwise.
    assert_eq!(with.closes, CLIENTS * RELOADS, "with: {:?}", with.ends);
}
