//! The artefact itself: exported module record, module name, apxs installation, and stock
//! httpd accepting `LoadModule proxy_wstunnel_module` for it after mod_proxy.

use std::process::Command;

#[test]
fn exports_the_module_record_and_carries_the_stock_module_name() {
    let so = wskit::httpd::our_module();
    let nm = Command::new("nm").args(["-D", "--defined-only"]).arg(&so).output().unwrap();
    let syms = String::from_utf8_lossy(&nm.stdout);
    assert!(syms.lines().any(|l| l.ends_with(" D proxy_wstunnel_module") || l.ends_with(" B proxy_wstunnel_module")), "{syms}");
    let bytes = std::fs::read(&so).unwrap();
    assert!(bytes.windows(21).any(|w| w == b"mod_proxy_wstunnel.c\0"));
}

#[test]
fn stock_httpd_accepts_it_and_ifmodule_sees_its_name() {
    let (ok, out) = wskit::httpd::configtest(
        "<IfModule !mod_proxy_wstunnel.c>\n    Error \"module name mismatch\"\n</IfModule>\nProxyWebsocketFallbackToProxyHttp Off\n",
    );
    assert!(ok, "{out}");
}

#[test]
fn apxs_installs_it_as_mod_proxy_wstunnel_so() {
    let dest = std::env::temp_dir().join(format!("wst-install-{}", std::process::id()));
    let st = Command::new(wskit::httpd::workspace_root().join("apxs/install.sh")).env("DESTDIR", &dest).status().unwrap();
    assert!(st.success());
    let installed = dest.join(wskit::httpd::module_dir().strip_prefix("/").unwrap()).join("mod_proxy_wstunnel.so");
    assert!(installed.exists(), "{}", installed.display());
    let load = std::fs::read_to_string(dest.join("etc/apache2/mods-available/proxy_wstunnel.load")).unwrap();
    assert!(load.contains("LoadModule proxy_wstunnel_module") && load.contains("# Depends: proxy"));
    let (ok, out) = wskit::httpd::configtest_with(&installed, "");
    assert!(ok, "{out}");
    std::fs::remove_dir_all(&dest).unwrap();
}
