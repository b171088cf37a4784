//! The artefact itself: exported module record, module name, apxs installation, and stock
//! httpd accepting `LoadModule proxy_wstunnel_module` for it after mod_proxy.

use std::process::Command;

#[test]
fn exports_the_module_record_and_carries_the_stock_module_name() {
    let so = wskit::httpd::our_module();
    let nm = Command::new("nm").args(["-D", "--defined-only"]).arg(&so).output().unwrap();
    let syms = String::from_utf8_lossy(&nm.stdout);
    assert!(
        syms.lines()
            .any(|l| l.ends_with(" D proxy_wstunnel_module")
                || l.ends_with(" B proxy_wstunnel_module")),
        "{syms}"
    );
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
    let st = Command::new(wskit::httpd::workspace_root().join("apxs/install.sh"))
        .env("DESTDIR", &dest)
        .status()
        .unwrap();
    assert!(st.success());
    let installed = dest
        .join(wskit::httpd::module_dir().strip_prefix("/").unwrap())
        .join("mod_proxy_wstunnel.so");
    assert!(installed.exists(), "{}", installed.display());
    let load = std::fs::read_to_string(dest.join("etc/apache2/mods-available/proxy_wstunnel.load"))
        .unwrap();
    assert!(load.contains("LoadModule proxy_wstunnel_module") && load.contains("# Depends: proxy"));
    let (ok, out) = wskit::httpd::configtest_with(&installed, "");
    assert!(ok, "{out}");
    std::fs::remove_dir_all(&dest).unwrap();
}

/// Debian's `a2enmod proxy_wstunnel` with the shipped .load/.conf: enables mod_proxy too (the
/// .load's `# Depends: proxy`), and httpd starts from the enabled files with every directive
/// the .conf lists switched on (so each one it names exists). Runs in a scratch
/// APACHE_CONFDIR, never the system's.
#[test]
fn a2enmod_enables_it_with_its_dependency() {
    let root = std::env::temp_dir().join(format!("wst-a2enmod-{}", std::process::id()));
    let (avail, enabled) = (root.join("mods-available"), root.join("mods-enabled"));
    std::fs::create_dir_all(&enabled).unwrap();
    let st = Command::new("cp")
        .arg("-r")
        .arg("/etc/apache2/mods-available")
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::copy("/etc/apache2/envvars", root.join("envvars")).unwrap();
    let apxs_dir = wskit::httpd::workspace_root().join("apxs");
    let load = std::fs::read_to_string(apxs_dir.join("proxy_wstunnel.load.in")).unwrap();
    let so_dir = wskit::httpd::our_module().parent().unwrap().to_path_buf();
    let so = so_dir.join("mod_proxy_wstunnel.so");
    std::fs::copy(wskit::httpd::our_module(), &so).unwrap();
    std::fs::write(
        avail.join("proxy_wstunnel.load"),
        load.replace("@LIBEXECDIR@", so_dir.to_str().unwrap()),
    )
    .unwrap();
    let conf = std::fs::read_to_string(apxs_dir.join("proxy_wstunnel.conf")).unwrap();
    assert!(conf.lines().any(|l| l.starts_with("#ProxyWebsocketAsyncDelay ")), "{conf}");
    let enabled_conf: String = conf
        .lines()
        .map(|l| {
            format!(
                "{}\n",
                l.strip_prefix("#Proxy").map(|d| format!("Proxy{d}")).unwrap_or(l.to_string())
            )
        })
        .collect();
    std::fs::write(avail.join("proxy_wstunnel.conf"), enabled_conf).unwrap();
    let out = Command::new("a2enmod")
        .args(["-q", "proxy_wstunnel"])
        .env("APACHE_CONFDIR", &root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["proxy.load", "proxy_wstunnel.load", "proxy_wstunnel.conf"] {
        assert!(enabled.join(f).exists(), "a2enmod did not enable {f}");
    }
    let m = wskit::httpd::module_dir();
    let httpd_conf = format!(
        "ServerRoot \"{r}\"\nListen 127.0.0.1:{port}\nPidFile \"{r}/pid\"\nErrorLog \"{r}/error_log\"\nDefaultRuntimeDir \"{r}\"\n\
         LoadModule mpm_event_module {m}/mod_mpm_event.so\nLoadModule authz_core_module {m}/mod_authz_core.so\n\
         IncludeOptional \"{r}/mods-enabled/*.load\"\nIncludeOptional \"{r}/mods-enabled/*.conf\"\n\
         <IfModule !mod_proxy_wstunnel.c>\n    Error \"not loaded\"\n</IfModule>\n",
        r = root.display(),
        port = wskit::httpd::free_port(),
        m = m.display()
    );
    std::fs::write(root.join("httpd.conf"), httpd_conf).unwrap();
    let out = Command::new(wskit::httpd::httpd_binary())
        .arg("-t")
        .arg("-f")
        .arg(root.join("httpd.conf"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_file(&so).unwrap();
}
