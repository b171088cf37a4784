//! Failures no real setup shows on demand, made to happen in a probe build of the module
//! (feature `panic-probe`, built here into its own target directory so the real module stays
//! untouched):
//! - a panic in the Rust core never crosses into C: every `extern "C"` entry catches it, logs
//!   it (WST00001) and fails only that request; the child lives on and serves the next one
//!   (a request header makes the handler panic);
//! - an httpd older than the headers the module was built against (a lower module magic
//!   number minor): the module refuses to start, saying why (`WST00009`; `Define
//!   WST_PROBE_OLDER_HTTPD` makes the probe build see such an httpd).

mod common;
use common::*;
use std::process::Command;
use wskit::raw;

fn probe_module() -> std::path::PathBuf {
    let root = wskit::httpd::workspace_root();
    let target = root.join("target/panic-probe");
    let st = Command::new(env!("CARGO"))
        .args(["build", "--release", "--lib", "--features", "panic-probe", "--target-dir"])
        .arg(&target)
        .current_dir(&root)
        .status()
        .expect("cargo build");
    assert!(st.success(), "building the panic-probe module failed");
    target.join("release/libmod_proxy_wstunnel.so")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_fails_only_its_request() {
    let b = Backend::start("after-panic");
    let h = Httpd::start(
        Config::new("echo.conf.in")
            .module(probe_module())
            .var("BACKEND", format!("127.0.0.1:{}", b.port())),
    );
    // prefork forks its children after the parent is up: wait for them.
    let t0 = std::time::Instant::now();
    let mut children = h.children();
    while children.is_empty() && t0.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(20));
        children = h.children();
    }
    assert!(!children.is_empty(), "httpd started no child");
    let (resp, _) = raw::request(h.port, &raw::handshake("/echo/boom", "X-Wst-Panic-Probe: 1\r\n"));
    assert_eq!(resp.status, 500, "{}", resp.head);
    assert!(h.wait_log("WST00001", std::time::Duration::from_secs(5)), "{}", h.error_log());
    assert!(b.requests().is_empty(), "nothing reaches the backend: {:?}", b.requests());
    // The same children serve the next WebSocket.
    for _ in 0..5 {
        assert_eq!(round_trip(&h.url("/echo/after")).await, "after-panic");
    }
    // Every child there before the panic is still alive (prefork may have forked more since).
    let gone: Vec<u32> =
        children.iter().copied().filter(|&pid| !wskit::httpd::process_alive(pid)).collect();
    assert!(gone.is_empty(), "a child died: {gone:?} of {children:?}");
    let log = h.stop_allowing(&["WST00001", "panicked"]);
    assert!(
        log.contains("panic probe requested by the test"),
        "the panic message is logged:\n{log}"
    );
    assert!(!log.contains("Segmentation fault") && !log.contains("exit signal"), "{log}");
}

#[test]
fn in_an_httpd_older_than_its_headers_the_module_refuses_to_start() {
    let cfg =
        Config::new("older_httpd.conf.in").module(probe_module()).var("BACKEND", "127.0.0.1:9");
    let log = match Httpd::try_start(&cfg) {
        Ok(h) => panic!("httpd started:\n{}", h.stop()),
        Err(log) => log,
    };
    let said: Vec<&str> = log.lines().filter(|l| l.contains("WST00009")).collect();
    assert_eq!(said.len(), 1, "said once, at startup:\n{log}");
    let built = std::fs::read_to_string("/usr/include/apache2/ap_mmn.h")
        .ok()
        .and_then(|h| {
            let l = h.lines().find(|l| l.starts_with("#define MODULE_MAGIC_NUMBER_MINOR"))?;
            l.split_whitespace().nth(2)?.parse::<i32>().ok()
        })
        .expect("the installed headers' MMN");
    assert!(
        said[0].contains(&format!(".{built} ")) && said[0].contains(&format!(".{}:", built - 1)),
        "both numbers named: {}",
        said[0]
    );
    assert!(said[0].contains("emerg"), "{}", said[0]);
}
