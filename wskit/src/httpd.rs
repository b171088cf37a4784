//! A private httpd for one test: its own ServerRoot, config generated from the templates in
//! `httpd-test-conf/`, free loopback ports, started in the foreground so that we own its PID
//! and stop exactly it. On stop, its error_log is checked for crashes.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Lines that fail any test whose server logged them: a crash, a panic caught at the FFI
/// boundary (WST00001), and a turn of the asynchronous relay that held its thread over
/// `WST_TURN_LIMIT_MS` (WST02019), which every test server is started with.
pub const CRASH_MARKERS: &[&str] =
    &["Segmentation fault", "exit signal", "WST00001", "panicked", "WST02019"];

/// The longest turn the relay thread of a test server may take (see CRASH_MARKERS).
const TURN_LIMIT_MS: &str = "100";

pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap().to_path_buf()
}

/// The module under test: `$WSTUNNEL_SO`, else the release build of this workspace.
pub fn our_module() -> PathBuf {
    std::env::var_os("WSTUNNEL_SO")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/release/libmod_proxy_wstunnel.so"))
}

/// The apxs of the httpd under test: `$WST_HTTPD_APXS`, else `$APXS`, else `apxs`. Its own
/// variable, because build.rs builds the module with `$APXS`: pointing the tests at another
/// httpd must not rebuild the module against that httpd's headers.
fn apxs_query(name: &str) -> Option<String> {
    let apxs = std::env::var("WST_HTTPD_APXS")
        .or_else(|_| std::env::var("APXS"))
        .unwrap_or_else(|_| "apxs".into());
    let out = Command::new(apxs).args(["-q", name]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// httpd's module directory (where the stock mod_proxy_wstunnel.so lives).
pub fn module_dir() -> PathBuf {
    apxs_query("LIBEXECDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/apache2/modules"))
}

pub fn stock_module() -> PathBuf {
    module_dir().join("mod_proxy_wstunnel.so")
}

pub fn httpd_binary() -> PathBuf {
    if let Some(h) = std::env::var_os("HTTPD") {
        return PathBuf::from(h);
    }
    for c in ["/usr/sbin/apache2", "/usr/sbin/httpd", "/usr/local/apache2/bin/httpd"] {
        if Path::new(c).exists() {
            return PathBuf::from(c);
        }
    }
    PathBuf::from("apache2")
}

/// A loopback port for a test server to listen on, never handed out twice by this process.
///
/// Not a port the kernel picks for `bind(0)`: that comes from the ephemeral range, where the
/// port is free again the moment it is chosen and released. Another test's `bind(0)` could
/// then pick it too (two httpds configured for one port: the second one fails to bind, but the
/// first one answers its readiness check), or a client's outgoing connection could take it as
/// its local port (httpd then cannot bind), or the readiness check could connect to itself.
/// The ports below the ephemeral range are never given out by the kernel, so the only
/// contenders are other processes that choose ports like this; a cursor starting at a place
/// that depends on the process id spreads concurrent test processes apart, each port is claimed
/// for the life of this process in a directory every such process shares (`claim`), and it is
/// still checked by binding it (as httpd will, with SO_REUSEADDR: a port in TIME_WAIT is fine).
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct free ports (see `free_port`).
pub fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| next_port()).collect()
}

fn next_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    // Below the ephemeral range (32768 by default); read it in case this machine moved it.
    let high = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|h| *h > LOW + 1_000)
        .unwrap_or(32_768);
    let span = high - LOW;
    static CURSOR: AtomicU32 = AtomicU32::new(u32::MAX);
    let start = std::process::id().wrapping_mul(2_654_435_761) % span;
    let _ = CURSOR.compare_exchange(u32::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..span {
        let port = (LOW + CURSOR.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && claim(port) {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{high}");
}

/// Claims `port` for this process among all processes that choose ports with `free_port` (test
/// binaries, the bench, the demo, run side by side): a file named after the port, created only
/// if absent, holding the owner's pid. A claim whose owner is gone is taken over. Without it,
/// two processes could each find a port free and configure their httpds for it; the one that
/// lost the bind would then be checked for readiness against the other's server.
fn claim(port: u16) -> bool {
    use std::io::Write;
    let dir = std::env::temp_dir().join("wst-ports");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(port.to_string());
    for _ in 0..2 {
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => return write!(f, "{}", std::process::id()).is_ok(),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let owner = std::fs::read_to_string(&path).unwrap_or_default();
                let alive = owner.trim().parse::<u32>().is_ok_and(|pid| {
                    pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
                });
                // A file still being written has no pid yet: its owner is alive.
                if alive || owner.trim().is_empty() {
                    return false;
                }
                let _ = std::fs::remove_file(&path);
            }
            Err(_) => return true,
        }
    }
    false
}

/// A loopback port where nothing listens, for as long as this value lives. A port that was
/// merely free when chosen can be taken by another test's httpd or backend a moment later
/// (and then answers 404 instead of refusing); this one stays bound, without listening and
/// without SO_REUSEADDR, so no one else can bind it and connecting to it is refused.
pub struct DeadPort {
    pub port: u16,
    _socket: std::os::fd::OwnedFd,
}

impl DeadPort {
    pub fn reserve() -> DeadPort {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket calls on a descriptor we create and own; `addr` is a valid
        // sockaddr_in whose size we pass, and `getsockname` writes at most `len` bytes into it.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let fd = std::os::fd::OwnedFd::from_raw_fd(fd);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
            let p = &mut addr as *mut libc::sockaddr_in as *mut libc::sockaddr;
            assert_eq!(libc::bind(raw, p, len), 0, "bind: {}", std::io::Error::last_os_error());
            assert_eq!(libc::getsockname(raw, p, &mut len), 0);
            DeadPort { port: u16::from_be(addr.sin_port), _socket: fd }
        }
    }
}

impl std::fmt::Display for DeadPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.port)
    }
}

/// How to configure one httpd.
pub struct Config {
    /// Template file in httpd-test-conf/ for the site part (appended to base.conf.in).
    pub site: String,
    /// `@NAME@` substitutions (PORT, SERVERROOT, MODDIR, WSTUNNEL, MPM, ... are preset).
    pub vars: BTreeMap<String, String>,
    pub module: PathBuf,
    pub mpm: String,
    pub proxy_http: bool,
    /// Extra ports, available as @PORT1@, @PORT2@, ...
    pub extra_ports: usize,
}

impl Config {
    pub fn new(site: &str) -> Config {
        Config {
            site: site.to_string(),
            vars: BTreeMap::new(),
            module: our_module(),
            mpm: std::env::var("WST_MPM").unwrap_or_else(|_| "event".into()),
            proxy_http: true,
            extra_ports: 0,
        }
    }

    pub fn var(mut self, k: &str, v: impl ToString) -> Self {
        self.vars.insert(k.to_string(), v.to_string());
        self
    }

    pub fn module(mut self, m: PathBuf) -> Self {
        self.module = m;
        self
    }

    pub fn without_proxy_http(mut self) -> Self {
        self.proxy_http = false;
        self
    }

    pub fn ports(mut self, n: usize) -> Self {
        self.extra_ports = n;
        self
    }
}

pub struct Httpd {
    pub root: PathBuf,
    pub port: u16,
    pub ports: Vec<u16>,
    child: Option<Child>,
}

fn substitute(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("@{k}@"), v);
    }
    if let Some(pos) = out.find('@') {
        let rest = &out[pos + 1..];
        if let Some(end) = rest.find('@') {
            let name = &rest[..end];
            if !name.is_empty()
                && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                panic!("template variable @{name}@ has no value");
            }
        }
    }
    out
}

fn make_root() -> PathBuf {
    let base = std::env::var_os("WST_TMP").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let stamp = format!(
        "wst-httpd-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    );
    let root = base.join(stamp);
    std::fs::create_dir_all(root.join("htdocs/wsonly")).unwrap();
    std::fs::create_dir_all(root.join("logs")).unwrap();
    std::fs::write(root.join("htdocs/wsonly/page.txt"), "local file, not proxied\n").unwrap();
    std::fs::write(root.join("htdocs/index.html"), "local index\n").unwrap();
    root
}

fn conf_dir() -> PathBuf {
    workspace_root().join("httpd-test-conf")
}

/// The configuration text: base.conf.in followed by the site part, placeholders filled in.
fn render(cfg: &Config, root: &Path, port: u16, ports: &[u16], site: &str) -> String {
    let mut vars = cfg.vars.clone();
    vars.insert("SERVERROOT".into(), root.display().to_string());
    vars.insert("CONFDIR".into(), conf_dir().display().to_string());
    vars.insert("PORT".into(), port.to_string());
    for (i, p) in ports.iter().enumerate() {
        vars.insert(format!("PORT{}", i + 1), p.to_string());
    }
    vars.insert("MODDIR".into(), module_dir().display().to_string());
    vars.insert("WSTUNNEL".into(), cfg.module.display().to_string());
    vars.insert("MPM".into(), cfg.mpm.clone());
    vars.insert("PROXY_HTTP".into(), if cfg.proxy_http { "" } else { "#" }.into());
    vars.insert("USER".into(), if is_root() { "User nobody\nGroup nogroup" } else { "" }.into());
    vars.entry("LOGLEVEL".into()).or_insert_with(|| "info proxy_wstunnel:debug".into());
    let base = std::fs::read_to_string(conf_dir().join("base.conf.in"))
        .expect("httpd-test-conf/base.conf.in");
    substitute(&format!("{base}\n# ---- {} ----\n{site}", cfg.site), &vars)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Httpd {
    /// Starts httpd; free ports are picked anew if another process took one in the meantime.
    pub fn start(cfg: Config) -> Httpd {
        for _ in 0..5 {
            match Self::try_start(&cfg) {
                Ok(h) => return h,
                Err(log)
                    if log.contains("Address already in use")
                        || log.contains("multiple Listeners on the same") =>
                {
                    continue
                }
                Err(log) => panic!("httpd exited at start-up:\n{log}"),
            }
        }
        panic!("httpd could not bind free ports in 5 attempts");
    }

    /// Starts httpd once; its exit status, stderr and error log if it exits at start-up.
    pub fn try_start(cfg: &Config) -> Result<Httpd, String> {
        let root = make_root();
        // Children run as an unprivileged user when we are root: they must read the tree.
        let _ = Command::new("chmod").args(["-R", "a+rX"]).arg(&root).status();
        // ... and write core dumps into it (CoreDumpDirectory), should one crash.
        let _ = Command::new("chmod").args(["a+w"]).arg(&root).status();
        let mut ports = free_ports(cfg.extra_ports + 1);
        let port = ports.remove(0);
        let site = std::fs::read_to_string(conf_dir().join(&cfg.site))
            .unwrap_or_else(|e| panic!("{}: {e}", cfg.site));
        let conf = render(cfg, &root, port, &ports, &site);
        std::fs::write(root.join("httpd.conf"), &conf).unwrap();
        // A process group of its own: prefork signals its whole process group on shutdown,
        // which must not include the test runner.
        use std::os::unix::process::CommandExt;
        let child = Command::new(httpd_binary())
            .process_group(0)
            .env("WST_TURN_LIMIT_MS", TURN_LIMIT_MS)
            .arg("-f")
            .arg(root.join("httpd.conf"))
            .arg("-DFOREGROUND")
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(root.join("logs/stdout")).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(root.join("logs/stderr")).unwrap()))
            .spawn()
            .expect("start httpd");
        let mut h = Httpd { root, port, ports, child: Some(child) };
        h.wait_ready()?;
        h.check_release();
        Ok(h)
    }

    /// With `$WST_HTTPD_RELEASE` set (test.sh's run in a second httpd release), the server must
    /// say at startup that it is that release: the suites must not pass in another httpd.
    fn check_release(&self) {
        let Ok(release) = std::env::var("WST_HTTPD_RELEASE") else { return };
        let said = format!("Apache/{release} ");
        assert!(
            wait_until(Duration::from_secs(5), || self.error_log().contains(&said)),
            "httpd is not {release}:\n{}",
            self.error_log()
        );
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let end = Instant::now() + Duration::from_secs(20);
        let all: Vec<u16> = std::iter::once(self.port).chain(self.ports.iter().copied()).collect();
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                let log = format!(
                    "({st}):\n{}\n{}",
                    std::fs::read_to_string(self.root.join("logs/stderr")).unwrap_or_default(),
                    self.error_log()
                );
                let _ = std::fs::remove_dir_all(&self.root);
                return Err(log);
            }
            // httpd listens (the MPM's open_logs hook) before every module's post_config has
            // run, so a server whose configuration then fails answers for a moment: it is up
            // only once the MPM says so (a notice, logged at every LogLevel).
            if all.iter().all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
                && self.error_log().contains("resuming normal operations")
            {
                return Ok(());
            }
            assert!(
                Instant::now() < end,
                "httpd did not listen within 20 s:\n{}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{}", self.port, path)
    }

    /// The error log (lossily decoded: a log line may carry bytes that are not UTF-8).
    pub fn error_log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.root.join("error_log")).unwrap_or_default())
            .into_owned()
    }

    pub fn access_log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.root.join("access_log")).unwrap_or_default())
            .into_owned()
    }

    /// Waits until the access log contains `needle` (httpd logs a request after its response).
    pub fn wait_access_log(&self, needle: &str, t: Duration) -> bool {
        wait_until(t, || self.access_log().contains(needle))
    }

    /// Waits until the error log contains `needle` (log lines are written asynchronously to
    /// the test's view of the connection).
    pub fn wait_log(&self, needle: &str, t: Duration) -> bool {
        wait_until(t, || self.error_log().contains(needle))
    }

    /// The PIDs of httpd's children (processes whose parent is the httpd we started).
    pub fn children(&self) -> Vec<u32> {
        let parent = self.pid();
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            // Fields after the command name (which may contain spaces) in parentheses.
            let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
            if after.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
                out.push(pid);
            }
        }
        out.sort();
        out
    }

    /// Sends a signal to the httpd parent (e.g. SIGUSR1 for a graceful restart).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the PID of the child process we spawned and still own.
        unsafe { libc::kill(self.pid() as i32, sig) };
    }

    /// Waits for httpd to exit on its own (after a graceful stop); None on timeout.
    pub fn wait_exit(&mut self, t: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + t;
        while Instant::now() < end {
            if let Some(st) = self.child.as_mut()?.try_wait().ok().flatten() {
                self.child = None;
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Stops httpd (SIGTERM to the parent we started), waits for it, and panics if its error
    /// log shows a crash. Returns the error log.
    pub fn stop(self) -> String {
        self.stop_allowing(&[])
    }

    /// [`Httpd::stop`], except that the markers in `expected` are what the test provoked.
    pub fn stop_allowing(mut self, expected: &[&str]) -> String {
        self.terminate();
        let log = self.error_log();
        for m in CRASH_MARKERS.iter().filter(|m| !expected.contains(m)) {
            assert!(!log.contains(m), "httpd error_log contains '{m}':\n{log}");
        }
        if std::env::var_os("WST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
        log
    }

    /// Graceful stop (SIGWINCH), so that requests in flight finish and the module's drain
    /// runs; SIGTERM if that takes more than 10 s. An immediate SIGTERM would race httpd's
    /// own teardown of mod_proxy's connection pools against requests still finishing, a
    /// stock httpd race that has nothing to do with the module under test.
    fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let wait = |child: &mut Child, t: Duration| {
                let end = Instant::now() + t;
                while Instant::now() < end {
                    if child.try_wait().ok().flatten().is_some() {
                        return true;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                false
            };
            for sig in [libc::SIGWINCH, libc::SIGTERM] {
                // SAFETY: signals only the process we spawned and have not reaped yet.
                unsafe { libc::kill(child.id() as i32, sig) };
                if wait(&mut child, Duration::from_secs(10)) {
                    return;
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Httpd {
    fn drop(&mut self) {
        // A test that panicked before stop(): still stop exactly our server.
        self.terminate();
    }
}

/// Runs `apache2 -t` on the base configuration plus `site_text`; returns (accepted, output).
pub fn configtest(site_text: &str) -> (bool, String) {
    configtest_with(&our_module(), site_text)
}

/// `configtest` with a given module file in the `LoadModule proxy_wstunnel_module` line.
pub fn configtest_with(module: &Path, site_text: &str) -> (bool, String) {
    let root = make_root();
    let cfg = Config::new("(configtest)").module(module.to_path_buf());
    std::fs::write(root.join("httpd.conf"), render(&cfg, &root, free_port(), &[], site_text))
        .unwrap();
    let out = Command::new(httpd_binary())
        .arg("-t")
        .arg("-f")
        .arg(root.join("httpd.conf"))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&root);
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

/// Polls `done` every 20 ms for up to `t`.
pub fn wait_until(t: Duration, done: impl Fn() -> bool) -> bool {
    let end = Instant::now() + t;
    while Instant::now() < end {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Resident memory of a process, KiB (0 if it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Proportional set size of a process in KiB: its private pages plus its share of the pages it
/// shares with others (libraries, what a child shares with its parent), from
/// /proc/<pid>/smaps_rollup; 0 if it is gone. Unlike RSS, summing it over processes counts
/// each page once.
pub fn pss_kib(pid: u32) -> u64 {
    rollup_kib(pid, &["Pss:"])
}

/// Memory only this process maps (its USS: private pages, clean and dirty), in KiB; unlike
/// PSS it does not move when other processes map or unmap the same libraries.
pub fn uss_kib(pid: u32) -> u64 {
    rollup_kib(pid, &["Private_Clean:", "Private_Dirty:"])
}

/// The sum of `fields` (KiB) in a process's /proc/PID/smaps_rollup; 0 if it is gone.
fn rollup_kib(pid: u32, fields: &[&str]) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .map(|s| {
            s.lines()
                .filter(|l| fields.iter().any(|f| l.starts_with(f)))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

/// Open file descriptors of a process (None if it is gone).
pub fn fd_count(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd")).ok().map(|d| d.count())
}

pub fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}
