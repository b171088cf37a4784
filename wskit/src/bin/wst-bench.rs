//! The benchmark: one echo backend (a separate process), and in one run, one after the other
//! on the same workloads: direct to the backend, httpd with the stock mod_proxy_wstunnel
//! (fallback Off), stock with mod_proxy_http doing the tunnel (fallback On), ours synchronous,
//! ours asynchronous, and, when installed, nginx and HAProxy (Debian's packages:
//! `scripts/setup.sh --no-build nginx haproxy`). Each workload runs `--runs` times (3) and
//! the medians are printed, in a Markdown report with each figure's ratio to stock, to nginx
//! and to direct. CPU is the whole process tree of each server: parent, live children and
//! the children it reaped. The load client is one thread, as is the backend.
//!
//! Usage: wst-bench [--quick] [--runs N] [--idle N] [--hold SECS] [--busy N] [--only TARGET]
//!                  [--mt-module SO] [--before SO]
//!                  [--workloads pp1,pp50,busy,tp1,tp8,idle,churn,storm]
//!                  [--proxy-cpus LIST] [--client-cpus LIST] [--backend-cpus LIST]
//!                  [--scale 1,2,4,8] [--conns N] [--storm N] [--tls] [--checked] [--out FILE]
//!        wst-bench --syscalls [--only TARGET]
//! (`--only` runs the targets it names, separated by `|`, e.g. `--only "ours async|ours async, checked"`,
//! without ratios to the others.
//! `--syscalls`: only 64 B ping-pong, each server's process tree under `strace -f -c`, and
//! prints the system calls per round trip; strace slows everything, so no speeds.
//! `--mt-module`: a build of ours with `--features multi-thread-runtime`, one more target.
//! `--before`: an earlier build of ours (e.g. the last release), two more targets (sync and
//! async), so that a change is measured against what it replaces in the same run.
//! `--checked`: two more targets, ours sync and async with the WebSocket-aware relay's checks
//! on (`ProxyWebsocketStrictFrames On`, `ProxyWebsocketMaxMessageSize 1G`,
//! `ProxyWebsocketPingInterval 30s`); every target then echoes through the backend's
//! `raw-reframe-echo`, whose frames are a server's (unmasked), as strict framing demands.
//! `--tls`: clients speak wss:// to the proxy (a CA and certificate made at run time): stock,
//! ours synchronous, ours asynchronous (suspended under event) and nginx `listen ssl`; httpd
//! gets `AsyncRequestWorkerFactor 100`, the one setting the README documents for it.
//! `--proxy-cpus`, `--client-cpus`, `--backend-cpus`: CPU lists as `taskset -c` takes them;
//! each server starts pinned to the first (with every child and thread it makes), the load
//! client runs on the second, the echo backend on the third, so that a big machine is measured
//! the way it is used rather than with everything competing for every core.
//! `--scale 1,2,4,8`: 64 B ping-pong over `--conns` connections (50) with the proxy on the first
//! 1, 2, 4, 8 CPUs of `--proxy-cpus`, each target started afresh on each set: a scaling table.
//! `churn`: clients that open a WebSocket, echo once and leave, over and over (handshakes/s).
//! `storm`: `--storm` (10,000) live WebSockets, a graceful restart as each server's users do it
//! (httpd SIGUSR1, `nginx -s reload`, HAProxy's master SIGUSR2), each server ending its old
//! generation's WebSockets after `peers::DRAIN_SECS`, and every client reconnecting at once:
//! seconds until all echo again, failed handshakes. Targets that hold more than
//! MaxRequestWorkers only.)

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use wskit::backend::BackendProcess;
use wskit::peers::{tree_ticks, Peer};
use wskit::{Config, Httpd};

struct Opts {
    secs: u64,
    runs: usize,
    idle: usize,
    hold: u64,
    only: Option<String>,
    out: Option<String>,
    syscalls: bool,
    /// Connections of the busy ping-pong (targets that hold more than MaxRequestWorkers).
    busy: usize,
    /// A build of ours with the multi-thread runtime, measured as one more target.
    mt_module: Option<String>,
    /// An earlier build of ours, measured as two more targets.
    before: Option<String>,
    /// Workloads to run (pp1, pp50, busy, tp1, tp8, idle); all by default.
    workloads: Vec<String>,
    /// Clients speak TLS to the proxy.
    tls: bool,
    /// Two more targets with the frame checks on; a framing-correct echo for all.
    checked: bool,
    /// Where the servers, the load client and the echo backend run (CPU lists).
    proxy_cpus: Option<Vec<usize>>,
    client_cpus: Option<Vec<usize>>,
    backend_cpus: Option<Vec<usize>>,
    /// Proxy CPU counts of the scaling table (none: no table).
    scale: Vec<usize>,
    /// Connections of the scaling table's ping-pong.
    conns: usize,
    /// WebSockets of the reconnect storm.
    storm: usize,
}

impl Opts {
    /// Whether `--only` (names separated by `|`) lets target `t` run.
    fn chosen(&self, t: &Target) -> bool {
        self.only.as_deref().is_none_or(|n| n.split('|').any(|n| n == t.name))
    }

    fn runs(&self, workload: &str) -> bool {
        self.workloads.is_empty() || self.workloads.iter().any(|w| w == workload)
    }
}

fn opts() -> Opts {
    let args: Vec<String> = std::env::args().collect();
    // The usage is the module documentation's: without this, `--help` ran the whole bench.
    if args.iter().any(|a| a == "--help" || a == "-h") {
        let usage = include_str!("wst-bench.rs")
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .map(|l| l.trim_start_matches("//!").strip_prefix(' ').unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        println!("{usage}");
        std::process::exit(0);
    }
    let val =
        |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let quick = args.iter().any(|a| a == "--quick");
    Opts {
        secs: if quick { 2 } else { 5 },
        runs: val("--runs").and_then(|v| v.parse().ok()).unwrap_or(if quick { 1 } else { 3 }),
        idle: val("--idle").and_then(|v| v.parse().ok()).unwrap_or(if quick {
            1000
        } else {
            10_000
        }),
        hold: val("--hold").and_then(|v| v.parse().ok()).unwrap_or(if quick { 5 } else { 60 }),
        only: val("--only"),
        syscalls: args.iter().any(|a| a == "--syscalls"),
        busy: val("--busy").and_then(|v| v.parse().ok()).unwrap_or(if quick { 500 } else { 5000 }),
        mt_module: val("--mt-module"),
        before: val("--before"),
        workloads: val("--workloads")
            .map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        out: val("--out"),
        tls: args.iter().any(|a| a == "--tls"),
        checked: args.iter().any(|a| a == "--checked"),
        proxy_cpus: cpu_list(val("--proxy-cpus"), "--proxy-cpus"),
        client_cpus: cpu_list(val("--client-cpus"), "--client-cpus"),
        backend_cpus: cpu_list(val("--backend-cpus"), "--backend-cpus"),
        scale: val("--scale")
            .map(|v| v.split(',').map(|k| k.trim().parse().expect("--scale: CPU counts")).collect())
            .unwrap_or_default(),
        conns: val("--conns").and_then(|v| v.parse().ok()).unwrap_or(50),
        storm: val("--storm").and_then(|v| v.parse().ok()).unwrap_or(if quick {
            1000
        } else {
            10_000
        }),
    }
}

fn cpu_list(v: Option<String>, name: &str) -> Option<Vec<usize>> {
    v.map(|l| wskit::cpus::parse(&l).unwrap_or_else(|| panic!("{name} {l}: not a CPU list")))
}

/// A client connection: plain TCP or TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}
type Conn = Box<dyn Stream>;

/// The backend's echo: raw bytes, or (`--checked`) frames re-framed as a server's.
static ECHO: std::sync::OnceLock<&str> = std::sync::OnceLock::new();

/// With `--tls`: how clients speak TLS to the proxy (the run's CA).
static TLS: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();

/// A binary client frame carrying `payload`.
fn frame(payload: &[u8]) -> Vec<u8> {
    wskit::raw::client_frame(2, payload)
}

/// Opens a WebSocket to the raw echo behind `base` (host:port and path prefix).
async fn open(hostport: &str, prefix: &str) -> std::io::Result<Conn> {
    let tcp = TcpStream::connect(hostport).await?;
    tcp.set_nodelay(true)?;
    let mut s: Conn = match TLS.get() {
        None => Box::new(tcp),
        Some(cfg) => {
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("a DNS name");
            Box::new(tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp).await?)
        }
    };
    let req = format!(
        "GET {prefix}{} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        ECHO.get().copied().unwrap_or("raw-echo")
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

/// Busy CPU time of the whole machine (clock ticks, every CPU, every process and the kernel's
/// own work such as softirqs): what a user's machine pays, wherever the kernel charged it.
fn machine_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal ...: all but idle and iowait.
    f.iter().take(8).sum::<u64>() - f.get(3).copied().unwrap_or(0) - f.get(4).copied().unwrap_or(0)
}

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf with a constant name.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

struct PingPong {
    /// Round trips done.
    count: u64,
    msgs_per_s: f64,
    p50_us: u32,
    p99_us: u32,
    cpu_s_per_m: Option<f64>,
    /// The whole machine's busy CPU-s per 1M round trips (client and backend included).
    machine_s_per_m: f64,
}

/// The median of `runs` by each figure on its own.
fn median<T>(mut runs: Vec<T>, key: impl Fn(&T) -> f64) -> Option<f64> {
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    runs.get(runs.len() / 2).map(key)
}

async fn ping_pong_median(
    hostport: &str,
    prefix: &str,
    conns: usize,
    o: &Opts,
    pid: Option<u32>,
) -> Option<PingPong> {
    let mut runs = Vec::new();
    for _ in 0..o.runs {
        runs.push(ping_pong(hostport, prefix, conns, o.secs, pid).await?);
    }
    let cpu = runs
        .iter()
        .all(|r| r.cpu_s_per_m.is_some())
        .then(|| median(runs.iter().map(|r| r.cpu_s_per_m.unwrap_or(0.0)).collect(), |c| *c))
        .flatten();
    Some(PingPong {
        count: runs.iter().map(|r| r.count).sum(),
        msgs_per_s: median(runs.iter().map(|r| r.msgs_per_s).collect(), |v| *v)?,
        p50_us: median(runs.iter().map(|r| r.p50_us).collect(), |v| *v as f64)? as u32,
        p99_us: median(runs.iter().map(|r| r.p99_us).collect(), |v| *v as f64)? as u32,
        cpu_s_per_m: cpu,
        machine_s_per_m: median(runs.iter().map(|r| r.machine_s_per_m).collect(), |v| *v)?,
    })
}

async fn pipelined_median(
    hostport: &str,
    prefix: &str,
    conns: usize,
    o: &Opts,
    pid: Option<u32>,
) -> Option<Throughput> {
    let mut runs = Vec::new();
    for _ in 0..o.runs {
        let r = pipelined(hostport, prefix, conns, o.secs, pid).await?;
        if r.stalled {
            // A stalled tunnel holds its worker: no second run on this server.
            return Some(r);
        }
        runs.push(r);
    }
    let cpu = runs
        .iter()
        .all(|r| r.cpu_s_per_gb.is_some())
        .then(|| median(runs.iter().map(|r| r.cpu_s_per_gb.unwrap_or(0.0)).collect(), |c| *c))
        .flatten();
    Some(Throughput {
        mb_per_s: median(runs.iter().map(|r| r.mb_per_s).collect(), |v| *v)?,
        stalled: false,
        cpu_s_per_gb: cpu,
        machine_s_per_gb: median(runs.iter().map(|r| r.machine_s_per_gb).collect(), |v| *v)?,
    })
}

async fn ping_pong(
    hostport: &str,
    prefix: &str,
    conns: usize,
    secs: u64,
    pid: Option<u32>,
) -> Option<PingPong> {
    let mut socks = Vec::new();
    for _ in 0..conns {
        socks.push(open(hostport, prefix).await.ok()?);
    }
    let cpu0 = pid.map(tree_ticks);
    let machine0 = machine_ticks();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let msg = frame(&[0x42; 64]);
    let tasks: Vec<_> = socks
        .into_iter()
        .map(|mut s| {
            let msg = msg.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(1024);
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
    let cpu =
        pid.zip(cpu0).map(|(p, c0)| tree_ticks(p).saturating_sub(c0) as f64 / ticks_per_sec());
    let machine = machine_ticks().saturating_sub(machine0) as f64 / ticks_per_sec();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let n = all.len() as f64;
    Some(PingPong {
        count: all.len() as u64,
        msgs_per_s: n / took,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        cpu_s_per_m: cpu.map(|c| c / (n / 1e6)),
        machine_s_per_m: machine / (n / 1e6),
    })
}

struct Throughput {
    mb_per_s: f64,
    stalled: bool,
    cpu_s_per_gb: Option<f64>,
    /// The whole machine's busy CPU-s per GB relayed.
    machine_s_per_gb: f64,
}

async fn pipelined(
    hostport: &str,
    prefix: &str,
    conns: usize,
    secs: u64,
    pid: Option<u32>,
) -> Option<Throughput> {
    let mut socks = Vec::new();
    for _ in 0..conns {
        socks.push(open(hostport, prefix).await.ok()?);
    }
    let cpu0 = pid.map(tree_ticks);
    let machine0 = machine_ticks();
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let msg = Arc::new(frame(&vec![0x5a; 64 * 1024]));
    let mut tasks = Vec::new();
    for s in socks {
        let (mut rd, mut wr) = tokio::io::split(s);
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
    let cpu =
        pid.zip(cpu0).map(|(p, c0)| tree_ticks(p).saturating_sub(c0) as f64 / ticks_per_sec());
    let machine = machine_ticks().saturating_sub(machine0) as f64 / ticks_per_sec();
    // Nothing at all came back: the tunnel never moved (a deadlock, not a slow run).
    let stalled = stalled || bytes == 0.0;
    for t in tasks {
        t.abort();
    }
    // httpd relays each echoed byte twice (to the backend and back).
    Some(Throughput {
        mb_per_s: bytes / took / 1e6,
        stalled,
        cpu_s_per_gb: cpu.map(|c| c / (2.0 * bytes / 1e9)),
        machine_s_per_gb: machine / (2.0 * bytes / 1e9),
    })
}

struct Idle {
    asked: usize,
    opened: usize,
    echoed: usize,
    rss_kib_per_tunnel: Option<f64>,
    pss_kib_per_tunnel: Option<f64>,
    threads: Option<u64>,
}

/// Memory of a server's whole process tree: RSS and PSS (KiB), and its threads.
struct Footprint {
    rss: u64,
    pss: u64,
    threads: u64,
}

fn footprint(root: u32) -> Footprint {
    let (mut rss, mut pss, mut threads) = (0, 0, 0);
    for pid in wskit::peers::tree(root) {
        rss += wskit::httpd::rss_kib(pid);
        pss += wskit::httpd::pss_kib(pid);
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            threads += s
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Footprint { rss, pss, threads }
}

/// Whether `back` is the echo of the small frame `msg`: the same bytes, or (`--checked`'s
/// re-framing echo) the same bytes but the second, which loses the mask bit and counts the key.
fn is_echo(back: &[u8], msg: &[u8]) -> bool {
    match ECHO.get() {
        Some(&"raw-reframe-echo") => {
            back.len() == msg.len() && back[0] == msg[0] && back[2..] == msg[2..]
        }
        _ => back == msg,
    }
}

/// Opens a WebSocket and sends `msg` (a frame) once, reading its echo.
async fn open_and_echo(hostport: &str, prefix: &str, msg: &[u8]) -> std::io::Result<Conn> {
    let mut s = open(hostport, prefix).await?;
    let mut back = vec![0u8; msg.len()];
    s.write_all(msg).await?;
    s.read_exact(&mut back).await?;
    Ok(s)
}

/// Opens `n` WebSockets, 200 handshakes at a time, each given 5 s; those that opened.
async fn open_many(hostport: &str, prefix: &str, n: usize) -> Vec<Conn> {
    let sem = Arc::new(tokio::sync::Semaphore::new(200));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (hp, px, sem) = (hostport.to_string(), prefix.to_string(), sem.clone());
            tokio::spawn(async move {
                let _permit = sem.acquire().await.unwrap();
                tokio::time::timeout(Duration::from_secs(5), open(&hp, &px)).await.ok()?.ok()
            })
        })
        .collect();
    let mut socks = Vec::new();
    for t in tasks {
        if let Ok(Some(s)) = t.await {
            socks.push(s);
        }
    }
    socks
}

async fn idle(hostport: &str, prefix: &str, n: usize, hold: u64, pid: Option<u32>) -> Idle {
    let before = pid.map(footprint);
    let socks = open_many(hostport, prefix, n).await;
    let opened = socks.len();
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let after = pid.map(footprint);
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
                    Ok::<_, std::io::Error>(is_echo(&back, &msg))
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
    let per = |f: fn(&Footprint) -> u64| {
        before
            .as_ref()
            .zip(after.as_ref())
            .filter(|_| opened > 0)
            .map(|(b, a)| (f(a) as f64 - f(b) as f64) / opened as f64)
    };
    Idle {
        asked: n,
        opened,
        echoed,
        rss_kib_per_tunnel: per(|f| f.rss),
        pss_kib_per_tunnel: per(|f| f.pss),
        threads: after.as_ref().map(|a| a.threads),
    }
}

struct Churn {
    handshakes_per_s: f64,
    failures: u64,
    /// Proxy CPU-ms per 1,000 WebSockets opened, echoed once and closed.
    cpu_ms_per_k: Option<f64>,
}

/// `conns` clients, each opening a WebSocket, echoing 64 B once and closing it (a Close frame,
/// then the socket), again and again for `secs`.
async fn churn(hostport: &str, prefix: &str, conns: usize, secs: u64, pid: Option<u32>) -> Churn {
    let cpu0 = pid.map(tree_ticks);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let (hp, px) = (hostport.to_string(), prefix.to_string());
            tokio::spawn(async move {
                let (mut done, mut failed) = (0u64, 0u64);
                let msg = frame(&[0x42; 64]);
                let close = wskit::raw::client_frame(8, &1000u16.to_be_bytes());
                while Instant::now() < deadline {
                    let once = async {
                        let mut s = open_and_echo(&hp, &px, &msg).await?;
                        s.write_all(&close).await?;
                        Ok::<_, std::io::Error>(())
                    };
                    match tokio::time::timeout(Duration::from_secs(5), once).await {
                        Ok(Ok(())) => done += 1,
                        _ => failed += 1,
                    }
                }
                (done, failed)
            })
        })
        .collect();
    let (mut done, mut failures) = (0, 0);
    for t in tasks {
        let (d, f) = t.await.unwrap_or((0, 1));
        done += d;
        failures += f;
    }
    let took = t0.elapsed().as_secs_f64();
    let cpu =
        pid.zip(cpu0).map(|(p, c0)| tree_ticks(p).saturating_sub(c0) as f64 / ticks_per_sec());
    Churn {
        handshakes_per_s: done as f64 / took,
        failures,
        cpu_ms_per_k: cpu.filter(|_| done > 0).map(|c| c * 1e3 / (done as f64 / 1e3)),
    }
}

struct Storm {
    opened: usize,
    /// Old connections the server ended after the reload: with a Close frame, or without one.
    closed: usize,
    dropped: usize,
    /// Seconds from the reload to the first and the last of those ends.
    first_end_s: f64,
    last_end_s: f64,
    /// Clients echoing again on a new connection, and when the last one did (from the reload).
    back: usize,
    all_back_s: Option<f64>,
    /// Handshakes that failed during the reconnection (each retried at once).
    failures: u64,
    /// Proxy CPU-s from the reload until the last client was back.
    cpu_s: Option<f64>,
}

/// How an old connection ended after the reload.
enum Ended {
    Close,
    Dropped,
    /// Not within the storm's time.
    Kept,
}

/// `n` live WebSockets; then the server reloads (`server.reload()`) and every client whose
/// connection ends reconnects at once and echoes once.
async fn storm(server: &Server, hostport: &str, prefix: &str, n: usize) -> Storm {
    let socks = open_many(hostport, prefix, n).await;
    let opened = socks.len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let give_up = Instant::now() + Duration::from_secs(wskit::peers::DRAIN_SECS + 60);
    let tasks: Vec<_> = socks
        .into_iter()
        .map(|mut s| {
            let (hp, px) = (hostport.to_string(), prefix.to_string());
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                let ended = loop {
                    match tokio::time::timeout_at(give_up.into(), s.read(&mut buf)).await {
                        Err(_) => break Ended::Kept,
                        Ok(Ok(0)) | Ok(Err(_)) => break Ended::Dropped,
                        Ok(Ok(_)) if buf[0] == 0x88 => break Ended::Close,
                        Ok(Ok(_)) => {}
                    }
                };
                drop(s);
                let ended_at = Instant::now();
                let mut failures = 0u64;
                if matches!(ended, Ended::Kept) {
                    return (ended, ended_at, None, failures);
                }
                let msg = frame(b"back again?");
                while Instant::now() < give_up {
                    let again = open_and_echo(&hp, &px, &msg);
                    match tokio::time::timeout(Duration::from_secs(10), again).await {
                        // Kept open until the storm is over, as a real client would.
                        Ok(Ok(s)) => return (ended, ended_at, Some((Instant::now(), s)), failures),
                        _ => failures += 1,
                    }
                }
                (ended, ended_at, None, failures)
            })
        })
        .collect();
    let cpu0 = server.pid().map(tree_ticks);
    let reload = Instant::now();
    server.reload();
    let mut st = Storm {
        opened,
        closed: 0,
        dropped: 0,
        first_end_s: f64::MAX,
        last_end_s: 0.0,
        back: 0,
        all_back_s: None,
        failures: 0,
        cpu_s: None,
    };
    let mut last_back: f64 = 0.0;
    let mut held = Vec::new();
    for t in tasks {
        let Ok((ended, at, back, failures)) = t.await else { continue };
        st.failures += failures;
        match ended {
            Ended::Close => st.closed += 1,
            Ended::Dropped => st.dropped += 1,
            Ended::Kept => continue,
        }
        let end = at.duration_since(reload).as_secs_f64();
        st.first_end_s = st.first_end_s.min(end);
        st.last_end_s = st.last_end_s.max(end);
        if let Some((when, s)) = back {
            st.back += 1;
            last_back = last_back.max(when.duration_since(reload).as_secs_f64());
            held.push(s);
        }
    }
    st.all_back_s = (st.back == opened && opened > 0).then_some(last_back);
    st.cpu_s = server
        .pid()
        .zip(cpu0)
        .map(|(p, c0)| tree_ticks(p).saturating_sub(c0) as f64 / ticks_per_sec());
    if st.first_end_s == f64::MAX {
        st.first_end_s = 0.0;
    }
    st
}

/// What is measured: the backend itself, an httpd with a module and its mode, or a peer.
enum Kind {
    Direct,
    Httpd {
        module: std::path::PathBuf,
        mode: &'static str,
    },
    Peer(fn(&str) -> Option<Peer>),
    /// nginx with a TLS listener (the run's certificate).
    NginxTls,
}

/// With `--tls`: the httpd configuration lines that make its listener TLS; nginx's certificate.
static TLS_CONF: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static TLS_PEER: std::sync::OnceLock<Option<(std::path::PathBuf, std::path::PathBuf)>> =
    std::sync::OnceLock::new();

struct Target {
    name: &'static str,
    kind: Kind,
}

/// A running server under test.
enum Server {
    Direct,
    Httpd(Httpd),
    Peer(Peer),
}

impl Server {
    /// The root of its process tree (none for "direct").
    fn pid(&self) -> Option<u32> {
        match self {
            Server::Direct => None,
            Server::Httpd(h) => Some(h.pid()),
            Server::Peer(p) => Some(p.pid()),
        }
    }

    /// Where the clients connect: the server's port and alias, or the backend itself.
    fn address(&self, backend: &BackendProcess) -> (String, &'static str) {
        match self {
            Server::Direct => (backend.addr.clone(), "/"),
            Server::Httpd(h) => (format!("127.0.0.1:{}", h.port), "/ws/"),
            Server::Peer(p) => (format!("127.0.0.1:{}", p.port), "/ws/"),
        }
    }

    /// Stops the server; with `WST_BENCH_LOGLEVEL` set (httpd's `LogLevel` in the run), prints
    /// httpd's error log.
    fn stop(self) {
        if let Server::Httpd(h) = self {
            let log = h.stop();
            if std::env::var_os("WST_BENCH_LOGLEVEL").is_some() {
                eprintln!("{log}");
            }
        }
    }

    /// A graceful restart as the server's users do it: httpd's SIGUSR1 (`apachectl graceful`,
    /// Debian's reload), a peer's own reload.
    fn reload(&self) {
        match self {
            Server::Direct => {}
            Server::Httpd(h) => h.signal(libc::SIGUSR1),
            Server::Peer(p) => p.reload(),
        }
    }
}

#[derive(Default)]
struct Results {
    pp1: Option<PingPong>,
    pp50: Option<PingPong>,
    /// `--busy` connections, for targets that can hold them.
    pp_busy: Option<PingPong>,
    tp1: Option<Throughput>,
    tp8: Option<Throughput>,
    idle: Option<Idle>,
    churn: Option<Churn>,
    storm: Option<Storm>,
    /// Ping-pong over `--conns` with the proxy on 1, 2, 4, ... CPUs (`--scale`).
    scale: Vec<(usize, PingPong)>,
}

/// Every target, in the report's order.
const NAMES: [&str; 13] = [
    "direct",
    "stock wstunnel (Off)",
    "stock proxy_http (On)",
    "ours sync",
    "ours async",
    "ours async, multi-thread runtime",
    "nginx",
    "HAProxy",
    "nginx (listen ssl)",
    "before: ours sync",
    "before: ours async",
    "ours sync, checked",
    "ours async, checked",
];

// One thread for the load: the servers get the rest of the machine, as a single-threaded load
// tool gives them.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let o = opts();
    if let Some(c) = &o.client_cpus {
        wskit::cpus::pin(c).expect("--client-cpus");
    }
    let backend = wskit::cpus::spawned_on(o.backend_cpus.as_deref(), BackendProcess::start);
    let pki_dir = std::env::temp_dir().join(format!("wst-bench-pki-{}", std::process::id()));
    let pki = o.tls.then(|| wskit::Pki::generate(&pki_dir));
    if let Some(pki) = &pki {
        let _ = TLS.set(pki.client_config(&[b"http/1.1"]));
    }
    let ours = wskit::httpd::our_module();
    let stock = wskit::httpd::stock_module();
    let off = "ProxyWebsocketFallbackToProxyHttp Off";
    // The drain (the package's choice, here as short as the peers'): only the storm sees it.
    let async_on: &'static str = Box::leak(
        format!(
            "ProxyWebsocketFallbackToProxyHttp Off\nProxyWebsocketAsync On\nProxyWebsocketDrainTimeout {}s",
            wskit::peers::DRAIN_SECS
        )
        .into_boxed_str(),
    );
    let mt = o
        .mt_module
        .as_ref()
        .map(|m| Target { name: NAMES[5], kind: Kind::Httpd { module: m.into(), mode: async_on } });
    let targets = [
        Target { name: NAMES[0], kind: Kind::Direct },
        Target { name: NAMES[1], kind: Kind::Httpd { module: stock.clone(), mode: off } },
        Target {
            name: NAMES[2],
            kind: Kind::Httpd {
                module: stock.clone(),
                mode: "ProxyWebsocketFallbackToProxyHttp On",
            },
        },
        Target { name: NAMES[3], kind: Kind::Httpd { module: ours.clone(), mode: off } },
        Target { name: NAMES[4], kind: Kind::Httpd { module: ours.clone(), mode: async_on } },
        Target { name: NAMES[6], kind: Kind::Peer(Peer::nginx) },
        Target { name: NAMES[7], kind: Kind::Peer(Peer::haproxy) },
    ];
    let before = o.before.iter().flat_map(|m| {
        [
            Target { name: NAMES[9], kind: Kind::Httpd { module: m.into(), mode: off } },
            Target { name: NAMES[10], kind: Kind::Httpd { module: m.into(), mode: async_on } },
        ]
    });
    let checks = "ProxyWebsocketStrictFrames On\nProxyWebsocketMaxMessageSize 1G\nProxyWebsocketPingInterval 30s";
    if o.checked {
        let _ = ECHO.set("raw-reframe-echo");
    }
    let checked = o.checked.then(|| {
        let leak = |m: String| -> &'static str { Box::leak(m.into_boxed_str()) };
        [
            Target {
                name: NAMES[11],
                kind: Kind::Httpd { module: ours.clone(), mode: leak(format!("{off}\n{checks}")) },
            },
            Target {
                name: NAMES[12],
                kind: Kind::Httpd {
                    module: ours.clone(),
                    mode: leak(format!("{async_on}\n{checks}")),
                },
            },
        ]
    });
    let targets: Vec<Target> =
        targets.into_iter().chain(mt).chain(before).chain(checked.into_iter().flatten()).collect();
    // Over TLS: the proxies that terminate it (no direct backend, no HAProxy peer).
    let targets: Vec<Target> = if o.tls {
        targets
            .into_iter()
            .filter(|t| [NAMES[1], NAMES[3], NAMES[4], NAMES[9], NAMES[10]].contains(&t.name))
            .chain([Target { name: NAMES[8], kind: Kind::NginxTls }])
            .collect()
    } else {
        targets
    };
    let tls_conf = pki.as_ref().map(|p| {
        format!(
            "LoadModule ssl_module {}/mod_ssl.so\nSSLEngine on\nSSLCertificateFile \"{}\"\nSSLCertificateKeyFile \"{}\"\n\
             <IfModule mpm_event_module>\n    AsyncRequestWorkerFactor 100\n</IfModule>",
            wskit::httpd::module_dir().display(),
            p.server.cert_file.display(),
            p.server.key_file.display()
        )
    });
    let _ = TLS_CONF.set(tls_conf.unwrap_or_default());
    let _ =
        TLS_PEER.set(pki.as_ref().map(|p| (p.server.cert_file.clone(), p.server.key_file.clone())));
    if o.syscalls {
        return syscalls(&o, &targets, &backend).await;
    }
    let mut results: BTreeMap<&str, Results> = BTreeMap::new();
    for t in targets.iter().filter(|t| o.chosen(t)) {
        let pcpus = o.proxy_cpus.as_deref();
        let Some(server) = start(t, &backend, pcpus) else {
            eprintln!("== {}: not installed, skipped", t.name);
            continue;
        };
        eprintln!("== {}", t.name);
        let mut r = Results::default();
        let (hostport, prefix) = server.address(&backend);
        if o.runs("pp1") {
            r.pp1 = ping_pong_median(&hostport, prefix, 1, &o, server.pid()).await;
        }
        if o.runs("pp50") {
            r.pp50 = ping_pong_median(&hostport, prefix, 50, &o, server.pid()).await;
        }
        // Synchronous tunnels cap at MaxRequestWorkers.
        let sync = matches!(
            t.name,
            "stock wstunnel (Off)"
                | "stock proxy_http (On)"
                | "ours sync"
                | "before: ours sync"
                | "ours sync, checked"
        );
        if !sync && o.runs("busy") {
            r.pp_busy = ping_pong_median(&hostport, prefix, o.busy, &o, server.pid()).await;
        }
        if o.runs("tp1") {
            r.tp1 = pipelined_median(&hostport, prefix, 1, &o, server.pid()).await;
        }
        // A stalled tunnel holds its worker: start afresh for the next workload.
        let server = if r.tp1.as_ref().is_some_and(|t| t.stalled) {
            restart(server, t, &backend, pcpus)
        } else {
            server
        };
        if o.runs("tp8") {
            r.tp8 = pipelined_median(&hostport_of(&server, &backend), prefix, 8, &o, server.pid())
                .await;
        }
        let mut server = server;
        // Showing the cap of synchronous tunnels needs far fewer.
        let n = if sync { 400.min(o.idle) } else { o.idle };
        let hold = if n == o.idle { o.hold } else { 2 };
        if o.runs("idle") {
            server = restart(server, t, &backend, pcpus);
            r.idle =
                Some(idle(&hostport_of(&server, &backend), prefix, n, hold, server.pid()).await);
        }
        if o.runs("churn") {
            server = restart(server, t, &backend, pcpus);
            let hp = hostport_of(&server, &backend);
            r.churn = Some(churn(&hp, prefix, 50, o.secs, server.pid()).await);
        }
        if !sync && t.name != "direct" && o.runs("storm") {
            server = restart(server, t, &backend, pcpus);
            r.storm = Some(storm(&server, &hostport_of(&server, &backend), prefix, o.storm).await);
        }
        server.stop();
        for &k in &o.scale {
            let all = o.proxy_cpus.clone().unwrap_or_else(wskit::cpus::current);
            if k > all.len() || t.name == "direct" {
                continue;
            }
            let server = start(t, &backend, Some(&all[..k])).expect("it started before");
            eprintln!("== {} on {k} CPUs ({})", t.name, wskit::cpus::list(&all[..k]));
            let hp = hostport_of(&server, &backend);
            if let Some(pp) = ping_pong_median(&hp, prefix, o.conns, &o, server.pid()).await {
                r.scale.push((k, pp));
            }
            server.stop();
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

/// System calls per 64 B round trip, at 1 and 50 connections, for each target's process tree.
async fn syscalls(o: &Opts, targets: &[Target], backend: &BackendProcess) {
    let mut report = String::from("| target | 1 conn: syscalls per round trip | of which failed (EAGAIN) | 50 conns: syscalls per round trip | of which failed | 64 KiB pipelined, 8 conns: syscalls per MB relayed | of which failed |\n|---|---|---|---|---|---|---|\n");
    for t in targets.iter().filter(|t| o.chosen(t)) {
        let Some(server) = start(t, backend, o.proxy_cpus.as_deref()) else { continue };
        let Some(pid) = server.pid() else { continue };
        eprintln!("== {}", t.name);
        let (hostport, prefix) = server.address(backend);
        let mut cells = Vec::new();
        for conns in [1, 50] {
            let trace = Strace::attach(pid);
            let pp = ping_pong(&hostport, prefix, conns, o.secs, None).await;
            let counted = trace.and_then(Strace::finish);
            match (pp, counted) {
                (Some(pp), Some((calls, errors))) => {
                    let n = pp.count as f64;
                    cells.push(format!("{:.2} | {:.2}", calls as f64 / n, errors as f64 / n));
                }
                _ => cells.push("– | –".into()),
            }
        }
        let trace = Strace::attach(pid);
        let tp = pipelined(&hostport, prefix, 8, o.secs, None).await;
        match (tp, trace.and_then(Strace::finish)) {
            (Some(tp), Some((calls, errors))) if !tp.stalled => {
                // Each echoed byte crosses the proxy twice.
                let mb = 2.0 * tp.mb_per_s * o.secs as f64;
                cells.push(format!("{:.1} | {:.1}", calls as f64 / mb, errors as f64 / mb));
            }
            _ => cells.push("– | –".into()),
        }
        report += &format!("| {} | {} | {} | {} |\n", t.name, cells[0], cells[1], cells[2]);
        server.stop();
    }
    println!("{report}");
}

/// `strace -f -c` attached to every process of a tree.
struct Strace {
    child: std::process::Child,
    out: std::path::PathBuf,
}

impl Strace {
    fn attach(root: u32) -> Option<Strace> {
        let out = std::env::temp_dir().join(format!("wst-strace-{}-{root}", std::process::id()));
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-c", "-o"]).arg(&out).stderr(std::process::Stdio::null());
        for p in wskit::peers::tree(root) {
            cmd.arg("-p").arg(p.to_string());
        }
        let child = cmd.spawn().ok()?;
        // Attaching takes a moment; the counts are per round trip, so what it misses is harmless.
        std::thread::sleep(Duration::from_millis(700));
        Some(Strace { child, out })
    }

    /// Detaches; (calls, failed calls) from strace's summary.
    fn finish(mut self) -> Option<(u64, u64)> {
        // SAFETY: SIGINT to the strace process we spawned, which then detaches and reports.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.child.wait().ok()?;
        let text = std::fs::read_to_string(&self.out).ok()?;
        let _ = std::fs::remove_file(&self.out);
        // The whole table, call by call, for whoever wants to look closer.
        eprintln!("{text}");
        let total = text.lines().find(|l| l.trim_end().ends_with(" total"))?;
        let f: Vec<&str> = total.split_whitespace().collect();
        // "100.00 seconds usecs/call calls [errors] total"
        let calls = f.get(3)?.parse().ok()?;
        let errors = if f.len() >= 6 { f[4].parse().unwrap_or(0) } else { 0 };
        Some((calls, errors))
    }
}

fn hostport_of(s: &Server, backend: &BackendProcess) -> String {
    s.address(backend).0
}

/// Starts a target's server on `cpus` (all of the bench's when None); None for a peer that is
/// not installed.
fn start(t: &Target, backend: &BackendProcess, cpus: Option<&[usize]>) -> Option<Server> {
    wskit::cpus::spawned_on(cpus, || start_here(t, backend))
}

fn start_here(t: &Target, backend: &BackendProcess) -> Option<Server> {
    match &t.kind {
        Kind::Direct => Some(Server::Direct),
        Kind::Httpd { module, mode } => Some(Server::Httpd(Httpd::start(
            Config::new("bench.conf.in")
                .module(module.clone())
                .var("BACKEND", &backend.addr)
                .var("MODE", mode)
                .var("TLS", TLS_CONF.get().cloned().unwrap_or_default())
                .var("LOGLEVEL", std::env::var("WST_BENCH_LOGLEVEL").unwrap_or("warn".into())),
        ))),
        Kind::Peer(start) => start(&backend.addr).map(Server::Peer),
        Kind::NginxTls => {
            let (c, k) = TLS_PEER.get()?.as_ref()?;
            Peer::nginx_tls(&backend.addr, c, k).map(Server::Peer)
        }
    }
}

fn restart(s: Server, t: &Target, backend: &BackendProcess, cpus: Option<&[usize]>) -> Server {
    s.stop();
    start(t, backend, cpus).expect("it started before")
}

fn ratio(x: Option<f64>, base: Option<f64>) -> String {
    match (x, base) {
        (Some(x), Some(b)) if b > 0.0 => format!("{:.2}×", x / b),
        _ => "–".into(),
    }
}

fn render(o: &Opts, r: &BTreeMap<&str, Results>) -> String {
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mut s = format!(
        "# wst-bench, {date}\n\nLoopback, one raw echo backend (separate process, one thread), a one-thread load client, \
         {cpus} CPUs. httpd: event MPM with Debian's defaults (ThreadsPerChild 25, MaxRequestWorkers 150), LogLevel warn; \
         nginx: `worker_processes auto`, the documented WebSocket location; HAProxy: `mode http`, `timeout tunnel`. \
         Each workload {} s, {} run(s), medians. Proxy CPU: the server's whole process tree (parent, live children, reaped \
         children); machine CPU: every process and the kernel (the load client and the backend too; the kernel \
         charges loopback TCP work to whichever process happens to run it, so this is what a user's machine pays). Ratios: to stock wstunnel (Off), to nginx and to direct; for 64 KiB pipelined also to stock \
         proxy_http (On).\n\n",
        o.secs, o.runs
    );
    if o.proxy_cpus.is_some() || o.client_cpus.is_some() || o.backend_cpus.is_some() {
        let show = |c: &Option<Vec<usize>>| c.as_deref().map_or("any".into(), wskit::cpus::list);
        s += &format!(
            "Pinned: proxy on CPUs {}, load client on {}, echo backend on {}.\n\n",
            show(&o.proxy_cpus),
            show(&o.client_cpus),
            show(&o.backend_cpus)
        );
    }
    let empty = Results::default();
    let get = |n: &str| r.get(n).unwrap_or(&empty);
    let stock = get("stock wstunnel (Off)");
    let http = get("stock proxy_http (On)");
    let nginx = get("nginx");
    let direct = get("direct");
    let names: Vec<&str> = NAMES.into_iter().filter(|n| r.contains_key(n)).collect();
    // A workload left out with --workloads has no section; a figure of one that ran but
    // gave nothing says "failed".
    let missing = |w: &str| if o.runs(w) { "failed" } else { "–" };
    let msgs = |x: &Option<PingPong>| x.as_ref().map(|p| p.msgs_per_s);
    let cpu_m = |x: &Option<PingPong>| x.as_ref().and_then(|p| p.cpu_s_per_m);
    let machine_m = |x: &Option<PingPong>| x.as_ref().map(|p| p.machine_s_per_m);
    if o.runs("pp1") || o.runs("pp50") {
        s += "## 64 B ping-pong\n\n| target | 1 conn msgs/s | 1 conn p50 µs | vs stock | 50 conns msgs/s | vs stock | vs nginx | vs direct | p50 µs | p99 µs | proxy CPU-s per 1M round trips | vs stock | vs nginx | machine CPU-s per 1M | vs nginx |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
        for &n in &names {
            let x = get(n);
            let (m1, m50) = (msgs(&x.pp1), msgs(&x.pp50));
            let p50_1 = x.pp1.as_ref().map(|p| p.p50_us as f64);
            s += &format!(
                "| {n} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                m1.map_or(missing("pp1").into(), |v| format!("{v:.0}")),
                p50_1.map_or("–".into(), |v| format!("{v:.0}")),
                ratio(p50_1, stock.pp1.as_ref().map(|p| p.p50_us as f64)),
                m50.map_or(missing("pp50").into(), |v| format!("{v:.0}")),
                ratio(m50, msgs(&stock.pp50)),
                ratio(m50, msgs(&nginx.pp50)),
                ratio(m50, msgs(&direct.pp50)),
                x.pp50.as_ref().map_or("–".into(), |p| p.p50_us.to_string()),
                x.pp50.as_ref().map_or("–".into(), |p| p.p99_us.to_string()),
                cpu_m(&x.pp50).map_or("–".into(), |c| format!("{c:.1}")),
                ratio(cpu_m(&x.pp50), cpu_m(&stock.pp50)),
                ratio(cpu_m(&x.pp50), cpu_m(&nginx.pp50)),
                machine_m(&x.pp50).map_or("–".into(), |c| format!("{c:.1}")),
                ratio(machine_m(&x.pp50), machine_m(&nginx.pp50)),
            );
        }
    }
    if o.runs("busy") {
        s += &format!(
        "\n## 64 B ping-pong, {} busy connections (targets that hold more than MaxRequestWorkers)\n\n| target | msgs/s | vs nginx | p50 µs | p99 µs | proxy CPU-s per 1M round trips | vs nginx | machine CPU-s per 1M | vs nginx |\n|---|---|---|---|---|---|---|---|---|\n",
        o.busy
    );
        for &n in &names {
            let x = get(n);
            let Some(p) = &x.pp_busy else { continue };
            s += &format!(
                "| {n} | {:.0} | {} | {} | {} | {} | {} | {:.1} | {} |\n",
                p.msgs_per_s,
                ratio(Some(p.msgs_per_s), msgs(&nginx.pp_busy)),
                p.p50_us,
                p.p99_us,
                p.cpu_s_per_m.map_or("–".into(), |c| format!("{c:.1}")),
                ratio(p.cpu_s_per_m, cpu_m(&nginx.pp_busy)),
                p.machine_s_per_m,
                ratio(Some(p.machine_s_per_m), machine_m(&nginx.pp_busy)),
            );
        }
    }
    if o.runs("tp1") || o.runs("tp8") {
        s += "\n## 64 KiB messages pipelined (unlimited in flight)\n\n| target | 1 conn MB/s | 8 conns MB/s | vs stock | vs proxy_http | vs nginx | vs direct | proxy CPU-s per GB (8 conns) | vs proxy_http | vs nginx | machine CPU-s per GB | vs nginx |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n";
        let mb = |t: &Option<Throughput>| t.as_ref().filter(|t| !t.stalled).map(|t| t.mb_per_s);
        let cpu_gb =
            |t: &Option<Throughput>| t.as_ref().filter(|t| !t.stalled).and_then(|t| t.cpu_s_per_gb);
        let machine_gb =
            |t: &Option<Throughput>| t.as_ref().filter(|t| !t.stalled).map(|t| t.machine_s_per_gb);
        let show = |t: &Option<Throughput>, w: &str| match t {
            None => missing(w).to_string(),
            Some(t) if t.stalled => format!("stalled ({:.0} MB/s before)", t.mb_per_s),
            Some(t) => format!("{:.0}", t.mb_per_s),
        };
        for &n in &names {
            let x = get(n);
            let cpu = cpu_gb(&x.tp8);
            s += &format!(
                "| {n} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                show(&x.tp1, "tp1"),
                show(&x.tp8, "tp8"),
                ratio(mb(&x.tp8), mb(&stock.tp8)),
                ratio(mb(&x.tp8), mb(&http.tp8)),
                ratio(mb(&x.tp8), mb(&nginx.tp8)),
                ratio(mb(&x.tp8), mb(&direct.tp8)),
                cpu.map_or("–".into(), |c| format!("{c:.2}")),
                ratio(cpu, cpu_gb(&http.tp8)),
                ratio(cpu, cpu_gb(&nginx.tp8)),
                machine_gb(&x.tp8).map_or("–".into(), |c| format!("{c:.2}")),
                ratio(machine_gb(&x.tp8), machine_gb(&nginx.tp8)),
            );
        }
    }
    if o.runs("idle") {
        s += &format!(
        "\n## Idle WebSockets (httpd: MaxRequestWorkers 150; held {}s, then one echo on each)\n\n| target | asked | opened | echoed after the hold | PSS growth per tunnel KiB (process tree) | RSS growth per tunnel KiB | threads |\n|---|---|---|---|---|---|---|\n",
        o.hold
    );
        for &n in &names {
            if let Some(i) = &get(n).idle {
                s += &format!(
                    "| {n} | {} | {} | {} | {} | {} | {} |\n",
                    i.asked,
                    i.opened,
                    i.echoed,
                    i.pss_kib_per_tunnel.map_or("–".into(), |v| format!("{v:.1}")),
                    i.rss_kib_per_tunnel.map_or("–".into(), |v| format!("{v:.1}")),
                    i.threads.map_or("–".into(), |v| v.to_string())
                );
            }
        }
    }
    if names.iter().any(|n| get(n).churn.is_some()) {
        s += &format!(
            "\n## Connection churn (50 clients: open, one 64 B echo, Close, again; {} s)\n\n| target | handshakes/s | vs stock | vs nginx | failed | proxy CPU-ms per 1,000 | vs nginx |\n|---|---|---|---|---|---|---|\n",
            o.secs
        );
        let hs = |x: &Results| x.churn.as_ref().map(|c| c.handshakes_per_s);
        let cpu = |x: &Results| x.churn.as_ref().and_then(|c| c.cpu_ms_per_k);
        for &n in &names {
            let x = get(n);
            let Some(c) = &x.churn else { continue };
            s += &format!(
                "| {n} | {:.0} | {} | {} | {} | {} | {} |\n",
                c.handshakes_per_s,
                ratio(hs(x), hs(stock)),
                ratio(hs(x), hs(nginx)),
                c.failures,
                c.cpu_ms_per_k.map_or("–".into(), |v| format!("{v:.0}")),
                ratio(cpu(x), cpu(nginx)),
            );
        }
    }
    if names.iter().any(|n| get(n).storm.is_some()) {
        s += &format!(
            "\n## Reconnect storm ({} live WebSockets, a graceful restart, every client reconnecting at once; old generation ended after {} s)\n\n| target | opened | ended with a Close | ended without | first end s | last end s | echoing again | all back after s | vs nginx | failed handshakes | proxy CPU-s |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
            o.storm,
            wskit::peers::DRAIN_SECS
        );
        let back = |x: &Results| x.storm.as_ref().and_then(|st| st.all_back_s);
        for &n in &names {
            let x = get(n);
            let Some(st) = &x.storm else { continue };
            s += &format!(
                "| {n} | {} | {} | {} | {:.2} | {:.2} | {} | {} | {} | {} | {} |\n",
                st.opened,
                st.closed,
                st.dropped,
                st.first_end_s,
                st.last_end_s,
                st.back,
                st.all_back_s.map_or("never".into(), |v| format!("{v:.2}")),
                ratio(back(x), back(nginx)),
                st.failures,
                st.cpu_s.map_or("–".into(), |v| format!("{v:.1}")),
            );
        }
    }
    if !o.scale.is_empty() {
        s += &format!(
            "\n## Scaling: 64 B ping-pong over {} connections, the proxy on 1, 2, 4, ... CPUs\n\n| target | CPUs | msgs/s | vs 1 CPU | of linear | proxy CPU-s per 1M round trips |\n|---|---|---|---|---|---|\n",
            o.conns
        );
        for &n in &names {
            let x = get(n);
            let one = x.scale.iter().find(|(k, _)| *k == 1).map(|(_, p)| p.msgs_per_s);
            for (k, p) in &x.scale {
                s += &format!(
                    "| {n} | {k} | {:.0} | {} | {} | {} |\n",
                    p.msgs_per_s,
                    ratio(Some(p.msgs_per_s), one),
                    ratio(Some(p.msgs_per_s), one.map(|v| v * *k as f64)),
                    p.cpu_s_per_m.map_or("–".into(), |c| format!("{c:.1}")),
                );
            }
        }
    }
    s
}
