//! The Debian package on the real system paths: `scripts/deb.sh` builds it; installing it
//! diverts apache2-bin's mod_proxy_wstunnel.so (kept as .so.stock) and puts ours in its
//! place, where `LoadModule proxy_wstunnel_module /usr/lib/apache2/modules/mod_proxy_wstunnel.so`
//! finds it; `apt-get install --reinstall apache2-bin` keeps ours; `a2enmod proxy_wstunnel`
//! enables it; removing the package gives the stock module back. Installed where
//! proxy_wstunnel is enabled, it enables its proxy_wstunnel.conf too, and `dpkg -r` undoes
//! exactly that. Then Debian's real layout: a copy of /etc/apache2 (apache2.conf, envvars,
//! mods-enabled, sites-enabled; ports, run and log directories moved), `a2enmod proxy_wstunnel
//! proxy_http`, a site with the manual's ws:// example and an http:// upgrade=websocket
//! ProxyPass, started with `apache2ctl` on that copy under event, worker and prefork: both
//! WebSockets are this module's, go asynchronous, and get Close 1001 on `apache2ctl
//! graceful` (the package's ProxyWebsocketDrainTimeout). The machine is left as it was
//! found: the package purged, the diversion gone, the stock file back, a2enmod undone.
//!
//! It needs root and changes /usr/lib/apache2 and /etc/apache2 for a while, so it runs once
//! per suite (under the event MPM run), never beside another test of this binary.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PKG: &str = "mod-proxy-wstunnel-rs";
const MOD: &str = "/usr/lib/apache2/modules/mod_proxy_wstunnel.so";

fn run(cmd: &str, args: &[&str]) -> String {
    let out =
        Command::new(cmd).args(args).env("DEBIAN_FRONTEND", "noninteractive").output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd} {args:?} failed:\n{text}");
    text
}

/// dpkg knows the package as installed (an unknown package is not).
fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", package])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout == b"installed")
}

fn sha256(path: &str) -> String {
    run("sha256sum", &[path]).split_whitespace().next().unwrap().to_string()
}

fn is_ours(path: &str) -> bool {
    let out = Command::new("nm").args(["-D", "--defined-only", path]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).contains("wst_rs_handler")
}

fn diversion() -> String {
    run("dpkg-divert", &["--list", MOD])
}

/// A private httpd loading the module from the system path tunnels one WebSocket; returns
/// whether our module did it (its WST01014 line).
fn tunnelled_by_ours() -> bool {
    let b = Backend::start("pkg");
    // A configuration the stock module accepts too (the demo's has our own directives).
    let h = Httpd::start(
        Config::new("fallback.conf.in")
            .module(MOD.into())
            .var("BACKEND", format!("127.0.0.1:{}", b.port())),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(round_trip(&h.url("/off/pkg")));
    let log = h.stop();
    log.contains("WST01014")
}

/// A copy of Debian's /etc/apache2 as the package left it, on a free port with its own run,
/// lock and log directories, under `mpm`, with a site proxying the two WebSocket routes to
/// `backend`; started with apache2ctl, stopped (by its own pid file) on drop.
struct DebianLayout {
    dir: TempDir,
    port: u16,
}

impl DebianLayout {
    fn start(mpm: &str, backend: u16) -> DebianLayout {
        let dir = TempDir::new(&format!("etc-apache2-{mpm}"));
        let etc = dir.0.join("apache2");
        std::fs::create_dir_all(&dir.0).unwrap();
        run("cp", &["-a", "/etc/apache2", etc.to_str().unwrap()]);
        let port = wskit::httpd::free_port();
        std::fs::write(etc.join("ports.conf"), format!("Listen 127.0.0.1:{port}\n")).unwrap();
        let mut envvars = std::fs::read_to_string(etc.join("envvars")).unwrap();
        for (k, sub) in
            [("APACHE_RUN_DIR", "run"), ("APACHE_LOCK_DIR", "lock"), ("APACHE_LOG_DIR", "log")]
        {
            let d = dir.0.join(sub);
            std::fs::create_dir_all(&d).unwrap();
            envvars.push_str(&format!("export {k}={}\n", d.display()));
        }
        envvars.push_str(&format!("export APACHE_PID_FILE={}/run/apache2.pid\n", dir.0.display()));
        std::fs::write(etc.join("envvars"), envvars).unwrap();
        let site = format!(
            "<VirtualHost *:{port}>\n    LogLevel info proxy_wstunnel:debug\n\
             \x20   # The manual's example, and the form it advises since 2.4.47.\n\
             \x20   ProxyPass \"/ws2/\" \"ws://127.0.0.1:{backend}/\"\n\
             \x20   ProxyPass \"/up/\" \"http://127.0.0.1:{backend}/\" upgrade=websocket\n</VirtualHost>\n"
        );
        std::fs::write(etc.join("sites-available/wst.conf"), site).unwrap();
        let layout = DebianLayout { dir, port };
        layout.ctl("a2dissite", &["-q", "000-default"]);
        layout.ctl("a2ensite", &["-q", "wst"]);
        layout.ctl("a2enmod", &["-q", "proxy_wstunnel", "proxy_http"]);
        if mpm != "event" {
            layout.ctl("a2dismod", &["-q", "mpm_event"]);
            layout.ctl("a2enmod", &["-q", &format!("mpm_{mpm}")]);
        }
        for f in [
            "proxy_wstunnel.load",
            "proxy_wstunnel.conf",
            "proxy_http.load",
            &format!("mpm_{mpm}.load"),
        ] {
            assert!(etc.join("mods-enabled").join(f).exists(), "{f} not enabled in the copy");
        }
        layout.ctl("apache2ctl", &["start"]);
        assert!(
            wskit::httpd::wait_until(Duration::from_secs(10), || layout.pid().is_some()),
            "{}",
            layout.error_log()
        );
        layout
    }

    /// A Debian admin tool run on the copy (APACHE_CONFDIR), never on /etc/apache2 or systemd.
    fn ctl(&self, tool: &str, args: &[&str]) -> String {
        let out = Command::new(tool)
            .args(args)
            .env("APACHE_CONFDIR", self.dir.0.join("apache2"))
            .env("APACHE_STARTED_BY_SYSTEMD", "no-systemctl-for-a-test-instance")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{tool} {args:?} on the copy failed:\n{text}");
        text
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.0.join("run/apache2.pid")).ok()?.trim().parse().ok()
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("log/error.log")).unwrap_or_default()
    }
}

impl Drop for DebianLayout {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("apache2ctl")
                .arg("stop")
                .env("APACHE_CONFDIR", self.dir.0.join("apache2"))
                .output();
            if !wskit::httpd::wait_until(Duration::from_secs(10), || {
                !wskit::httpd::process_alive(pid)
            }) {
                // SAFETY: kill has no memory preconditions; the pid is this test's httpd.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}

/// Both routes of a Debian-layout site are this module's and asynchronous, and a graceful
/// reload ends them with Close 1001 after the package's drain timeout.
async fn both_routes_on_debian_layout(mpm: &str) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::{protocol::frame::coding::CloseCode, Message};
    let b = Backend::start(&format!("deb-{mpm}"));
    let site = DebianLayout::start(mpm, b.port());
    let mut all = Vec::new();
    for path in ["/ws2/manual", "/up/advised"] {
        let (mut ws, _) = connect(&format!("ws://127.0.0.1:{}{path}", site.port))
            .await
            .unwrap_or_else(|e| panic!("{mpm} {path}: {e}\n{}", site.error_log()));
        let m = Message::text(format!("{mpm} {path}"));
        assert_eq!(echo(&mut ws, m.clone()).await, m);
        all.push(ws);
    }
    for path in ["/ws2/manual", "/up/advised"] {
        assert!(
            wskit::httpd::wait_until(Duration::from_secs(5), || handed_over(
                &site.error_log(),
                path
            )),
            "{mpm}: {path} not handed over:\n{}",
            site.error_log()
        );
    }
    let log = site.error_log();
    assert!(
        log.lines().any(|l| l.contains("WST01025") && l.contains("/advised")),
        "{mpm}: the http:// route was not ours:\n{log}"
    );
    let (status, _) = status_auto(site.port);
    assert_eq!(status.get("WebSocketAsyncTunnels"), Some(&2), "{mpm}: {status:?}");
    let t0 = std::time::Instant::now();
    site.ctl("apache2ctl", &["graceful"]);
    for mut ws in all {
        let frame = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(f))) => return f,
                    Some(Ok(_)) => continue,
                    other => panic!("{mpm}: no Close frame: {other:?}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{mpm}: no Close 1001 within 20 s of the reload"));
        assert_eq!(frame.map(|f| f.code), Some(CloseCode::Away), "{mpm}");
    }
    let waited = t0.elapsed();
    // ProxyWebsocketDrainTimeout 10s in the package's conf, then at most a second more.
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(13),
        "{mpm}: Close 1001 after {waited:?}"
    );
    eprintln!("debian layout, {mpm}: ws:// and http:// upgrade=websocket ours and asynchronous; Close 1001 {:.1} s after apache2ctl graceful", waited.as_secs_f64());
    // Its httpd is not one of wskit's, whose stop checks its log: the same check here.
    let log = site.error_log();
    for m in wskit::httpd::CRASH_MARKERS {
        assert!(!log.contains(m), "{mpm}: the Debian layout's error.log contains '{m}':\n{log}");
    }
}

/// Whether the request for `path` was handed to the asynchronous relay: its WST02010 line
/// names it only by client address and port, which its WST01014 line shares.
fn handed_over(log: &str, path: &str) -> bool {
    let client =
        |l: &str| l.split("[client ").nth(1).and_then(|c| c.split(']').next()).map(str::to_string);
    let Some(who) = log
        .lines()
        .find(|l| l.contains("WST01014") && l.contains(&format!("GET {path} ")))
        .and_then(client)
    else {
        return false;
    };
    log.lines().any(|l| l.contains("WST02010") && client(l).as_deref() == Some(who.as_str()))
}

/// Puts the machine back however the test ended.
struct Restore {
    enabled_before: bool,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", PKG]).output();
        if !self.enabled_before {
            let _ = Command::new("a2dismod").args(["-q", "-f", "proxy_wstunnel"]).output();
        }
    }
}

#[test]
fn the_package_diverts_the_stock_module_survives_apache2_bin_reinstall_and_gives_it_back() {
    if std::env::var("WST_MPM").is_ok_and(|m| m != "event") {
        eprintln!("debian_package: runs once per suite, with the event MPM run");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("debian_package: needs root (dpkg -i); skipped");
        return;
    }
    assert!(installed("apache2-bin"));
    assert!(!installed(PKG), "{PKG} is already installed: this test installs and purges it");
    let stock_hash = sha256(MOD);
    assert!(!is_ours(MOD), "{MOD} is not the stock module before the test");
    let enabled_before = Path::new("/etc/apache2/mods-enabled/proxy_wstunnel.load").exists();
    let _restore = Restore { enabled_before };
    let conf_link = Path::new("/etc/apache2/mods-enabled/proxy_wstunnel.conf");
    assert!(!conf_link.exists(), "proxy_wstunnel.conf is enabled before the package is installed");
    // The machine of an administrator who already uses the stock module.
    run("a2enmod", &["-q", "proxy_wstunnel"]);

    let root = wskit::httpd::workspace_root();
    let out = run(root.join("scripts/deb.sh").to_str().unwrap(), &[]);
    let deb = out.lines().rev().find(|l| l.ends_with(".deb")).unwrap().trim().to_string();
    let deb = root.join(deb);
    let name = deb.file_name().unwrap().to_string_lossy().into_owned();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        name.starts_with(&format!("{PKG}_{version}_"))
            && deb.starts_with(root.join("target/debian")),
        "{}",
        deb.display()
    );
    let fields = run("dpkg-deb", &["-f", deb.to_str().unwrap(), "Depends", "Xb-Apache-Mmn"]);
    assert!(
        fields.contains("apache2-api-20120211") && fields.contains("apache2-bin (>= 2.4."),
        "{fields}"
    );

    // Install: ours in place, the stock module kept beside it.
    run("apt-get", &["install", "-y", "-q", deb.to_str().unwrap()]);
    assert!(diversion().contains(&format!("{MOD}.stock by {PKG}")), "{}", diversion());
    assert!(is_ours(MOD), "{MOD} is not ours after install");
    assert_eq!(sha256(&format!("{MOD}.stock")), stock_hash);
    let conf = std::fs::read_to_string("/etc/apache2/mods-available/proxy_wstunnel.conf").unwrap();
    for d in ["FallbackToProxyHttp Off", "UpgradeHttp On", "Async On", "DrainTimeout 10s"] {
        assert!(
            conf.contains(&format!("\n    ProxyWebsocket{d}\n")),
            "the conffile sets ProxyWebsocket{d}:\n{conf}"
        );
    }
    for d in ["IdleTimeout", "AsyncDelay", "AsyncMaxTunnels"] {
        assert!(
            conf.contains(&format!("#ProxyWebsocket{d} ")),
            "the conffile documents ProxyWebsocket{d}:\n{conf}"
        );
    }
    // proxy_wstunnel was enabled: its .conf now is too, as a2enmod would have done.
    assert_eq!(
        std::fs::read_link(conf_link).ok(),
        Some("../mods-available/proxy_wstunnel.conf".into())
    );
    assert!(run("dpkg-query", &["-W", "-f=${Conffiles}", PKG])
        .contains("/etc/apache2/mods-available/proxy_wstunnel.conf"));
    assert!(tunnelled_by_ours(), "httpd loading {MOD} did not run our module");

    // An apt upgrade or reinstall of apache2-bin writes its module to the diverted name.
    run("apt-get", &["install", "-y", "-q", "--reinstall", "apache2-bin"]);
    assert!(is_ours(MOD), "apache2-bin's reinstall put the stock module back over ours");
    assert_eq!(sha256(&format!("{MOD}.stock")), stock_hash);

    // Debian's real layout, under each MPM.
    let rt = tokio::runtime::Runtime::new().unwrap();
    for mpm in ["event", "worker", "prefork"] {
        rt.block_on(both_routes_on_debian_layout(mpm));
    }

    // a2enmod: Debian's own .load (it names the system path) and our .conf.
    run("a2enmod", &["-q", "proxy_wstunnel"]);
    for f in ["proxy.load", "proxy_wstunnel.load", "proxy_wstunnel.conf"] {
        assert!(
            Path::new("/etc/apache2/mods-enabled").join(f).exists(),
            "a2enmod did not enable {f}"
        );
    }
    let load = std::fs::read_to_string("/etc/apache2/mods-enabled/proxy_wstunnel.load").unwrap();
    assert!(load.contains(&format!("LoadModule proxy_wstunnel_module {MOD}")), "{load}");

    // Remove: the stock module is back, byte for byte, and no diversion is left; the .conf
    // link the package made is gone, the .load the administrator enabled stays.
    run("dpkg", &["-r", PKG]);
    assert!(
        !conf_link.exists() && conf_link.symlink_metadata().is_err(),
        "dpkg -r left proxy_wstunnel.conf enabled"
    );
    assert!(
        Path::new("/etc/apache2/mods-enabled/proxy_wstunnel.load").exists(),
        "dpkg -r disabled the module itself"
    );
    assert!(!Path::new("/var/lib/mod-proxy-wstunnel-rs").exists(), "dpkg -r left its marker");
    assert!(!diversion().contains(PKG), "{}", diversion());
    assert_eq!(sha256(MOD), stock_hash, "dpkg -r did not give the stock module back");
    assert!(!Path::new(&format!("{MOD}.stock")).exists());
    assert!(!tunnelled_by_ours(), "after dpkg -r, httpd still ran our module");
    // The conffile stays until purge; enabled again by hand, it is harmless with the stock
    // module (its lines are skipped), and purge takes the dangling link away.
    std::os::unix::fs::symlink("../mods-available/proxy_wstunnel.conf", conf_link).unwrap();
    let (ok, out) =
        wskit::httpd::configtest_with(Path::new(MOD), &std::fs::read_to_string(conf_link).unwrap());
    assert!(ok, "the shipped conf breaks the stock module's configuration:\n{out}");
    run("dpkg", &["--purge", PKG]);
    assert!(
        !Path::new("/etc/apache2/mods-available/proxy_wstunnel.conf").exists(),
        "purge leaves the conffile behind"
    );
    assert!(conf_link.symlink_metadata().is_err(), "purge left a link to the purged conffile");
    if !enabled_before {
        run("a2dismod", &["-q", "-f", "proxy_wstunnel"]);
    }
}
