//! Other proxies as benchmark peers: nginx and HAProxy from Debian's packages, each started
//! on its own configuration, port and directory (never the system service), with the
//! standard WebSocket set-up their documentation gives. Absent binaries: no peer.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Peer {
    pub name: &'static str,
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

/// Seconds after a reload at which each peer ends the WebSockets its old generation still holds
/// (nginx `worker_shutdown_timeout`, HAProxy `hard-stop-after`; without them both keep them
/// until the clients leave). wst-bench gives our module the same `ProxyWebsocketDrainTimeout`.
pub const DRAIN_SECS: u64 = 2;

fn scratch_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("WST_TMP").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("wst-{name}-{}-{}", std::process::id(), crate::httpd::free_port()));
    std::fs::create_dir_all(dir.join("tmp")).expect("peer directory");
    dir
}

impl Peer {
    /// nginx with `worker_processes auto` and the WebSocket location of its documentation,
    /// `/ws/` proxied to `backend` (host:port).
    pub fn nginx(backend: &str) -> Option<Peer> {
        Peer::nginx_with(backend, None)
    }

    /// nginx as above, its listener TLS (`listen ... ssl`) with this certificate and key.
    pub fn nginx_tls(backend: &str, cert: &std::path::Path, key: &std::path::Path) -> Option<Peer> {
        Peer::nginx_with(backend, Some((cert, key)))
    }

    fn nginx_with(
        backend: &str,
        tls: Option<(&std::path::Path, &std::path::Path)>,
    ) -> Option<Peer> {
        let bin = "/usr/sbin/nginx";
        std::path::Path::new(bin).exists().then_some(())?;
        let (dir, port) = (scratch_dir("nginx"), crate::httpd::free_port());
        let d = dir.display();
        let listen = match tls {
            None => format!("listen 127.0.0.1:{port};"),
            Some((c, k)) => format!("listen 127.0.0.1:{port} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};", c.display(), k.display()),
        };
        let conf = format!(
            "worker_processes auto;\nworker_rlimit_nofile 20000;\nworker_shutdown_timeout {DRAIN_SECS}s;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 20000; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
               fastcgi_temp_path {d}/tmp/fcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
               map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}\n\
               server {{\n    {listen}\n    location /ws/ {{\n      proxy_pass http://{backend}/;\n\
                 proxy_http_version 1.1;\n      proxy_set_header Upgrade $http_upgrade;\n\
                 proxy_set_header Connection $connection_upgrade;\n      proxy_set_header Host $host;\n\
                 proxy_read_timeout 3600s;\n      proxy_send_timeout 3600s;\n    }}\n  }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).ok()?;
        let child = Command::new(bin)
            .args([
                "-p",
                &format!("{d}/"),
                "-e",
                &format!("{d}/error.log"),
                "-c",
                &format!("{d}/nginx.conf"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Peer { name: "nginx", port, child, dir }.ready()
    }

    /// HAProxy in HTTP mode (WebSocket upgrades become tunnels, `timeout tunnel`), `/ws/`
    /// proxied to `backend`. Its connection limit stays within the open-files cap (20,000).
    /// Master-worker mode (`-W`), as Debian's service runs it, so that it reloads.
    pub fn haproxy(backend: &str) -> Option<Peer> {
        let bin = "/usr/sbin/haproxy";
        std::path::Path::new(bin).exists().then_some(())?;
        let (dir, port) = (scratch_dir("haproxy"), crate::httpd::free_port());
        let conf = format!(
            "global\n  maxconn 9900\n  hard-stop-after {DRAIN_SECS}s\n  log stderr format raw local0 warning\n\
             defaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  timeout tunnel 3600s\n\
             frontend fe\n  bind 127.0.0.1:{port}\n  maxconn 9900\n  default_backend be\n\
             backend be\n  http-request replace-path /ws/(.*) /\\1\n  server s1 {backend} maxconn 9900\n"
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, conf).ok()?;
        let log = std::fs::File::create(dir.join("error.log")).ok()?;
        let child = Command::new(bin)
            .args(["-W", "-db"])
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .ok()?;
        Peer { name: "HAProxy", port, child, dir }.ready()
    }

    /// Waits until the peer accepts connections; None if it exited or never did.
    fn ready(mut self) -> Option<Peer> {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Some(self);
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                eprintln!("{} exited ({st}): {}", self.name, self.error_log());
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reloads the peer the way its users do: `nginx -s reload` (SIGHUP to the master),
    /// HAProxy's `systemctl reload` (SIGUSR2 to the master-worker's master).
    pub fn reload(&self) {
        let sig = if self.name == "HAProxy" { libc::SIGUSR2 } else { libc::SIGHUP };
        // SAFETY: kill(2) on the PID of the child process we spawned and still own.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Peer {
    /// Stops the peer we started (by its PID) and removes its directory.
    fn drop(&mut self) {
        // SAFETY: kill(2) on the PID of the child process we spawned and still own.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Each live process's `/proc/PID/stat` fields after the command name: (pid, fields).
fn processes() -> Vec<(u32, Vec<u64>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // After the ')': state 0, ppid 1, utime 11, stime 12, cutime 13, cstime 14.
        let f: Vec<u64> = stat
            .rsplit_once(')')
            .map(|x| x.1)
            .unwrap_or("")
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        if f.len() > 14 {
            out.push((pid, f));
        }
    }
    out
}

/// `root` and every live process below it.
fn tree_of(root: u32, procs: &[(u32, Vec<u64>)]) -> Vec<u32> {
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i] as u64;
        tree.extend(procs.iter().filter(|(_, f)| f[1] == p).map(|(c, _)| *c));
        i += 1;
    }
    tree
}

/// `root` and every live process below it.
pub fn tree(root: u32) -> Vec<u32> {
    tree_of(root, &processes())
}

/// CPU time (user + system, clock ticks) of the process tree under `root`: every live
/// process in it, and the children each one already reaped (cutime/cstime), so workers that
/// exited still count.
pub fn tree_ticks(root: u32) -> u64 {
    let procs = processes();
    let tree = tree_of(root, &procs);
    procs
        .iter()
        .filter(|(p, _)| tree.contains(p))
        .map(|(_, f)| f[11..=14].iter().sum::<u64>())
        .sum()
}
