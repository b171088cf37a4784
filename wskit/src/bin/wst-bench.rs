//! The benchmark: one echo backend (a separate process), and in one run, one after the other
//! on the same workloads: direct to the backend, httpd with the stock mod_proxy_wstunnel
//! (fallback Off), stock with mod_proxy_http doing the tunnel (fallback On), ours synchronous,
//! ours asynchronous. Prints a Markdown report with each figure's ratio to stock and to direct.
//!
//! Usage: wst-bench [--quick] [--idle N] [--hold SECS] [--only TARGET] [--out FILE]
//! (`--only` runs one target, e.g. `--only "ours async"`, without ratios to the others.)

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wskit::backend::BackendProcess;
use wskit::{Config, Httpd};

struct Opts {
    secs: u64,
    idle: usize,
    hold: u64,
    only: Option<String>,
    out: Option<String>,
}

fn opts() -> Opts {
    let args: Vec<String> = std::env::args().collect();
    let val = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let quick = args.iter().any(|a| a == "--quick");
    Opts {
        secs: if quick { 2 } else { 5 },
        idle: val("--idle").and_then(|v| v.parse().ok()).unwrap_or(if quick { 1000 } else { 10_000 }),
        hold: val("--hold").and_then(|v| v.parse().ok()).unwrap_or(if quick { 5 } else { 60 }),
        only: val("--only"),
        out: val("--out"),
    }
}

/// A masked client frame (binary) carrying `payload`.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x82];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 65536 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Opens a WebSocket to the raw echo behind `base` (host:port and path prefix).
async fn open(hostport: &str, prefix: &str) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(hostport).await?;
    s.set_nodelay(true)?;
    let req = format!(
        "GET {prefix}raw-echo HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(b[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other(String::from_utf8_lossy(&head).into_owned()));
    }
    Ok(s)
}

#[derive(Clone, Copy, Default)]
struct Cpu(u64);

/// CPU time (user + system, clock ticks) of httpd: the parent, its live children, and the
/// children it already reaped (the parent's cutime/cstime), so exiting children still count.
fn httpd_ticks(h: &Httpd) -> Cpu {
    let fields = |pid: u32| -> Vec<u64> {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .map(|stat| stat.rsplit_once(')').map(|x| x.1).unwrap_or("").split_whitespace().map(|v| v.parse().unwrap_or(0)).collect())
            .unwrap_or_default()
    };
    // After the ')': state is field 0, utime 11, stime 12, cutime 13, cstime 14.
    let parent = fields(h.pid());
    let mut t: u64 = parent.iter().skip(11).take(4).sum();
    for pid in h.children() {
        t += fields(pid).iter().skip(11).take(2).sum::<u64>();
    }
    Cpu(t)
}

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf with a constant name.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

struct PingPong {
    msgs_per_s: f64,
    p50_us: u32,
    p99_us: u32,
    cpu_s_per_m: Option<f64>,
}

async fn ping_pong(hostport: &str, prefix: &str, conns: usize, secs: u64, h: Option<&Httpd>) -> Option<PingPong> {
    let mut socks = Vec::new();
    for _ in 0..conns {
        socks.push(open(hostport, prefix).await.ok()?);
    }
    let cpu0 = h.map(httpd_ticks);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let msg = frame(&[0x42; 64]);
    let tasks: Vec<_> = socks
        .into_iter()
        .map(|mut s| {
            let msg = msg.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(100_000);
                let mut back = vec![0u8; msg.len()];
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if s.write_all(&msg).await.is_err() || s.read_exact(&mut back).await.is_err() {
                        break;
                    }
                    lat.push(t.elapsed().as_micros() as u32);
                }
                lat
            })
        })
        .collect();
    let t0 = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.ok()?);
    }
    let took = t0.elapsed().as_secs_f64();
    let cpu = h.zip(cpu0).map(|(h, c0)| httpd_ticks(h).0.saturating_sub(c0.0) as f64 / ticks_per_sec());
    all.sort_unstable();
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0);
    let n = all.len() as f64;
    Some(PingPong { msgs_per_s: n / took, p50_us: pct(0.50), p99_us: pct(0.99), cpu_s_per_m: cpu.map(|c| c / (n / 1e6)) })
}

struct Throughput {
    mb_per_s: f64,
    stalled: bool,
    cpu_s_per_gb: Option<f64>,
}

async fn pipelined(hostport: &str, prefix: &str, conns: usize, secs: u64, h: Option<&Httpd>) -> Option<Throughput> {
    let mut socks = Vec::new();
    for _ in 0..conns {
        socks.push(open(hostport, prefix).await.ok()?);
    }
    let cpu0 = h.map(httpd_ticks);
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let msg = Arc::new(frame(&vec![0x5a; 64 * 1024]));
    let mut tasks = Vec::new();
    for s in socks {
        let (mut rd, mut wr) = s.into_split();
        let (msg, stop2) = (msg.clone(), stop.clone());
        // Unlimited in flight: the writer never waits for echoes.
        tasks.push(tokio::spawn(async move {
            while !stop2.load(Ordering::Relaxed) {
                if wr.write_all(&msg).await.is_err() {
                    break;
                }
            }
            drop(wr);
        }));
        let (received, stop3) = (received.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 256 * 1024];
            while !stop3.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(200), rd.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => {
                        received.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(_) => {}
                }
            }
        }));
    }
    let t0 = Instant::now();
    let mut last = (0u64, Instant::now());
    let mut stalled = false;
    while t0.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = received.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(3.min(secs)) {
            stalled = true;
            break;
        }
    }
    let took = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let bytes = received.load(Ordering::Relaxed) as f64;
    let cpu = h.zip(cpu0).map(|(h, c0)| httpd_ticks(h).0.saturating_sub(c0.0) as f64 / ticks_per_sec());
    // Nothing at all came back: the tunnel never moved (a deadlock, not a slow run).
    let stalled = stalled || bytes == 0.0;
    for t in tasks {
        t.abort();
    }
    // httpd relays each echoed byte twice (to the backend and back).
    Some(Throughput { mb_per_s: bytes / took / 1e6, stalled, cpu_s_per_gb: cpu.map(|c| c / (2.0 * bytes / 1e9)) })
}

struct Idle {
    asked: usize,
    opened: usize,
    echoed: usize,
    rss_kib_per_tunnel: Option<f64>,
    threads: Option<u64>,
}

fn httpd_rss_threads(h: &Httpd) -> (u64, u64) {
    let (mut rss, mut threads) = (0, 0);
    for pid in h.children() {
        rss += wskit::httpd::rss_kib(pid);
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            threads += s.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
        }
    }
    (rss, threads)
}

async fn idle(hostport: &str, prefix: &str, n: usize, hold: u64, h: Option<&Httpd>) -> Idle {
    let before = h.map(httpd_rss_threads);
    let sem = Arc::new(tokio::sync::Semaphore::new(200));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (hp, px, sem) = (hostport.to_string(), prefix.to_string(), sem.clone());
            tokio::spawn(async move {
                let _permit = sem.acquire().await.unwrap();
                tokio::time::timeout(Duration::from_secs(5), open(&hp, &px)).await.ok().and_then(|r| r.ok())
            })
        })
        .collect();
    let mut socks = Vec::new();
    for t in tasks {
        if let Ok(Some(s)) = t.await {
            socks.push(s);
        }
    }
    let opened = socks.len();
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let after = h.map(httpd_rss_threads);
    let msg = frame(b"still there?");
    let tasks: Vec<_> = socks
        .into_iter()
        .map(|mut s| {
            let msg = msg.clone();
            tokio::spawn(async move {
                let mut back = vec![0u8; msg.len()];
                let ok = async {
                    s.write_all(&msg).await?;
                    s.read_exact(&mut back).await?;
                    Ok::<_, std::io::Error>(back == msg)
                };
                matches!(tokio::time::timeout(Duration::from_secs(10), ok).await, Ok(Ok(true)))
            })
        })
        .collect();
    let mut echoed = 0;
    for t in tasks {
        if t.await.unwrap_or(false) {
            echoed += 1;
        }
    }
    let per = before.zip(after).filter(|_| opened > 0).map(|(b, a)| (a.0 as f64 - b.0 as f64) / opened as f64);
    Idle { asked: n, opened, echoed, rss_kib_per_tunnel: per, threads: after.map(|a| a.1) }
}

struct Target {
    name: &'static str,
    module: Option<std::path::PathBuf>,
    mode: &'static str,
}

#[derive(Default)]
struct Results {
    pp1: Option<PingPong>,
    pp50: Option<PingPong>,
    tp1: Option<Throughput>,
    tp8: Option<Throughput>,
    idle: Option<Idle>,
}

#[tokio::main]
async fn main() {
    let o = opts();
    let backend = BackendProcess::start();
    let ours = wskit::httpd::our_module();
    let stock = wskit::httpd::stock_module();
    let targets = [
        Target { name: "direct", module: None, mode: "" },
        Target { name: "stock wstunnel (Off)", module: Some(stock.clone()), mode: "ProxyWebsocketFallbackToProxyHttp Off" },
        Target { name: "stock proxy_http (On)", module: Some(stock.clone()), mode: "ProxyWebsocketFallbackToProxyHttp On" },
        Target { name: "ours sync", module: Some(ours.clone()), mode: "ProxyWebsocketFallbackToProxyHttp Off" },
        Target {
            name: "ours async",
            module: Some(ours.clone()),
            mode: "ProxyWebsocketFallbackToProxyHttp Off\nProxyWebsocketAsync On",
        },
    ];
    let mut results: BTreeMap<&str, Results> = BTreeMap::new();
    for t in targets.iter().filter(|t| o.only.as_deref().is_none_or(|n| n == t.name)) {
        eprintln!("== {}", t.name);
        let h = start(t, &backend);
        let mut r = Results::default();
        let (hostport, prefix) = address(&h, &backend);
        r.pp1 = ping_pong(&hostport, prefix, 1, o.secs, h.as_ref()).await;
        r.pp50 = ping_pong(&hostport, prefix, 50, o.secs, h.as_ref()).await;
        r.tp1 = pipelined(&hostport, prefix, 1, o.secs, h.as_ref()).await;
        // A stalled tunnel holds its worker: start afresh for the next workload.
        let h = if r.tp1.as_ref().is_some_and(|t| t.stalled) { restart(h, t, &backend) } else { h };
        let (hostport, prefix) = address(&h, &backend);
        r.tp8 = pipelined(&hostport, prefix, 8, o.secs, h.as_ref()).await;
        let h = restart(h, t, &backend);
        let (hostport, prefix) = address(&h, &backend);
        // Synchronous tunnels cap at MaxRequestWorkers: showing that needs far fewer.
        let n = if t.name == "ours async" || t.name == "direct" { o.idle } else { 400.min(o.idle) };
        let hold = if n == o.idle { o.hold } else { 2 };
        r.idle = Some(idle(&hostport, prefix, n, hold, h.as_ref()).await);
        if let Some(h) = h {
            h.stop();
        }
        results.insert(t.name, r);
    }
    let report = render(&o, &results);
    println!("{report}");
    if let Some(path) = o.out {
        std::fs::write(&path, &report).unwrap();
        eprintln!("written to {path}");
    }
}

/// The httpd of a target (none for "direct").
fn start(t: &Target, backend: &BackendProcess) -> Option<Httpd> {
    let module = t.module.clone()?;
    Some(Httpd::start(
        Config::new("bench.conf.in").module(module).var("BACKEND", &backend.addr).var("MODE", t.mode).var("LOGLEVEL", "warn"),
    ))
}

fn restart(h: Option<Httpd>, t: &Target, backend: &BackendProcess) -> Option<Httpd> {
    h?.stop();
    start(t, backend)
}

/// Where the clients connect: httpd's port and alias, or the backend itself.
fn address(h: &Option<Httpd>, backend: &BackendProcess) -> (String, &'static str) {
    match h {
        Some(h) => (format!("127.0.0.1:{}", h.port), "/ws/"),
        None => (backend.addr.clone(), "/"),
    }
}

fn ratio(x: Option<f64>, base: Option<f64>) -> String {
    match (x, base) {
        (Some(x), Some(b)) if b > 0.0 => format!("{:.2}×", x / b),
        _ => "–".into(),
    }
}

fn render(o: &Opts, r: &BTreeMap<&str, Results>) -> String {
    let names = ["direct", "stock wstunnel (Off)", "stock proxy_http (On)", "ours sync", "ours async"];
    let date = Command::new("date").arg("-u").arg("+%Y-%m-%d %H:%M UTC").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mut s = format!(
        "# wst-bench, {date}\n\nLoopback, one raw echo backend (separate process), {cpus} CPUs, event MPM with Debian's defaults \
         (ThreadsPerChild 25, MaxRequestWorkers 150), LogLevel warn. {}s per workload. Ratios: to stock wstunnel (Off) \
         and to direct; for 64 KiB pipelined also to stock proxy_http (On).\n\n",
        o.secs
    );
    let empty = Results::default();
    let get = |n: &str| r.get(n).unwrap_or(&empty);
    let stock = get("stock wstunnel (Off)");
    let http = get("stock proxy_http (On)");
    let direct = get("direct");
    s += "## 64 B ping-pong\n\n| target | 1 conn msgs/s | vs stock | vs direct | 50 conns msgs/s | vs stock | vs direct | p50 µs | p99 µs | p99 vs stock | httpd CPU-s per M msgs |\n|---|---|---|---|---|---|---|---|---|---|---|\n";
    for n in names {
        let x = get(n);
        let m1 = x.pp1.as_ref().map(|p| p.msgs_per_s);
        let m50 = x.pp50.as_ref().map(|p| p.msgs_per_s);
        s += &format!(
            "| {n} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            m1.map_or("failed".into(), |v| format!("{v:.0}")),
            ratio(m1, stock.pp1.as_ref().map(|p| p.msgs_per_s)),
            ratio(m1, direct.pp1.as_ref().map(|p| p.msgs_per_s)),
            m50.map_or("failed".into(), |v| format!("{v:.0}")),
            ratio(m50, stock.pp50.as_ref().map(|p| p.msgs_per_s)),
            ratio(m50, direct.pp50.as_ref().map(|p| p.msgs_per_s)),
            x.pp50.as_ref().map_or("–".into(), |p| p.p50_us.to_string()),
            x.pp50.as_ref().map_or("–".into(), |p| p.p99_us.to_string()),
            ratio(x.pp50.as_ref().map(|p| p.p99_us as f64), stock.pp50.as_ref().map(|p| p.p99_us as f64)),
            x.pp50.as_ref().and_then(|p| p.cpu_s_per_m).map_or("–".into(), |c| format!("{c:.1}")),
        );
    }
    s += "\n## 64 KiB messages pipelined (unlimited in flight)\n\n| target | 1 conn MB/s | 8 conns MB/s | vs stock | vs proxy_http | vs direct | httpd CPU-s per GB (8 conns) | vs proxy_http |\n|---|---|---|---|---|---|---|---|\n";
    let mb = |t: &Option<Throughput>| t.as_ref().filter(|t| !t.stalled).map(|t| t.mb_per_s);
    let show = |t: &Option<Throughput>| match t {
        None => "failed".to_string(),
        Some(t) if t.stalled => format!("stalled ({:.0} MB/s before)", t.mb_per_s),
        Some(t) => format!("{:.0}", t.mb_per_s),
    };
    for n in names {
        let x = get(n);
        let cpu = x.tp8.as_ref().filter(|t| !t.stalled).and_then(|t| t.cpu_s_per_gb);
        s += &format!(
            "| {n} | {} | {} | {} | {} | {} | {} | {} |\n",
            show(&x.tp1),
            show(&x.tp8),
            ratio(mb(&x.tp8), mb(&stock.tp8)),
            ratio(mb(&x.tp8), mb(&http.tp8)),
            ratio(mb(&x.tp8), mb(&direct.tp8)),
            cpu.map_or("–".into(), |c| format!("{c:.2}")),
            ratio(cpu, http.tp8.as_ref().and_then(|t| t.cpu_s_per_gb)),
        );
    }
    s += &format!(
        "\n## Idle WebSockets (MaxRequestWorkers 150; held {}s, then one echo on each)\n\n| target | asked | opened | echoed after the hold | httpd RSS growth per tunnel KiB | httpd threads |\n|---|---|---|---|---|---|\n",
        o.hold
    );
    for n in names {
        if let Some(i) = &get(n).idle {
            s += &format!(
                "| {n} | {} | {} | {} | {} | {} |\n",
                i.asked,
                i.opened,
                i.echoed,
                i.rss_kib_per_tunnel.map_or("–".into(), |v| format!("{v:.1}")),
                i.threads.map_or("–".into(), |v| v.to_string())
            );
        }
    }
    s
}
