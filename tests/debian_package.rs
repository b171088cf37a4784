//! The Debian package on the real system paths: `scripts/deb.sh` builds it; installing it
//! diverts apache2-bin's mod_proxy_wstunnel.so (kept as .so.stock) and puts ours in its
//! place, where `LoadModule proxy_wstunnel_module /usr/lib/apache2/modules/mod_proxy_wstunnel.so`
//! finds it; `apt-get install --reinstall apache2-bin` keeps ours; `a2enmod proxy_wstunnel`
//! enables it; removing the package gives the stock module back. The machine is left as it
//! was found: the package purged, the diversion gone, the stock file back, a2enmod undone.
//!
//! It needs root and changes /usr/lib/apache2 and /etc/apache2 for a while, so it runs once
//! per suite (under the event MPM run), never beside another test of this binary.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

const PKG: &str = "mod-proxy-wstunnel-rs";
const MOD: &str = "/usr/lib/apache2/modules/mod_proxy_wstunnel.so";

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).env("DEBIAN_FRONTEND", "noninteractive").output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
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
    let h = Httpd::start(Config::new("demo.conf.in").module(MOD.into()).var("BACKEND", format!("127.0.0.1:{}", b.port())));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(round_trip(&h.url("/ws2/pkg")));
    let log = h.stop();
    log.contains("WST01014")
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

    let root = wskit::httpd::workspace_root();
    let out = run(root.join("scripts/deb.sh").to_str().unwrap(), &[]);
    let deb = out.lines().rev().find(|l| l.ends_with(".deb")).unwrap().trim().to_string();
    let deb = root.join(deb);
    let name = deb.file_name().unwrap().to_string_lossy().into_owned();
    let version = env!("CARGO_PKG_VERSION");
    assert!(name.starts_with(&format!("{PKG}_{version}_")) && deb.starts_with(root.join("target/debian")), "{}", deb.display());
    let fields = run("dpkg-deb", &["-f", deb.to_str().unwrap(), "Depends", "Xb-Apache-Mmn"]);
    assert!(fields.contains("apache2-api-20120211") && fields.contains("apache2-bin (>= 2.4."), "{fields}");

    // Install: ours in place, the stock module kept beside it.
    run("apt-get", &["install", "-y", "-q", deb.to_str().unwrap()]);
    assert!(diversion().contains(&format!("{MOD}.stock by {PKG}")), "{}", diversion());
    assert!(is_ours(MOD), "{MOD} is not ours after install");
    assert_eq!(sha256(&format!("{MOD}.stock")), stock_hash);
    let conf = std::fs::read_to_string("/etc/apache2/mods-available/proxy_wstunnel.conf").unwrap();
    for d in ["FallbackToProxyHttp", "IdleTimeout", "Async", "AsyncDelay", "AsyncMaxTunnels", "DrainTimeout"] {
        assert!(conf.contains(&format!("#ProxyWebsocket{d} ")), "the conffile documents ProxyWebsocket{d}:\n{conf}");
    }
    assert!(run("dpkg-query", &["-W", "-f=${Conffiles}", PKG]).contains("/etc/apache2/mods-available/proxy_wstunnel.conf"));
    assert!(tunnelled_by_ours(), "httpd loading {MOD} did not run our module");

    // An apt upgrade or reinstall of apache2-bin writes its module to the diverted name.
    run("apt-get", &["install", "-y", "-q", "--reinstall", "apache2-bin"]);
    assert!(is_ours(MOD), "apache2-bin's reinstall put the stock module back over ours");
    assert_eq!(sha256(&format!("{MOD}.stock")), stock_hash);

    // a2enmod: Debian's own .load (it names the system path) and our .conf.
    run("a2enmod", &["-q", "proxy_wstunnel"]);
    for f in ["proxy.load", "proxy_wstunnel.load", "proxy_wstunnel.conf"] {
        assert!(Path::new("/etc/apache2/mods-enabled").join(f).exists(), "a2enmod did not enable {f}");
    }
    let load = std::fs::read_to_string("/etc/apache2/mods-enabled/proxy_wstunnel.load").unwrap();
    assert!(load.contains(&format!("LoadModule proxy_wstunnel_module {MOD}")), "{load}");
    if !enabled_before {
        run("a2dismod", &["-q", "-f", "proxy_wstunnel"]);
    }

    // Remove: the stock module is back, byte for byte, and no diversion is left.
    run("dpkg", &["-r", PKG]);
    assert!(!diversion().contains(PKG), "{}", diversion());
    assert_eq!(sha256(MOD), stock_hash, "dpkg -r did not give the stock module back");
    assert!(!Path::new(&format!("{MOD}.stock")).exists());
    assert!(!tunnelled_by_ours(), "after dpkg -r, httpd still ran our module");
    run("dpkg", &["--purge", PKG]);
    assert!(!Path::new("/etc/apache2/mods-available/proxy_wstunnel.conf").exists(), "purge leaves the conffile behind");
}
