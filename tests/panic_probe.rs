//! Failures no real setup shows on demand, made to happen in a probe build of the module
//! (feature `panic-probe`, built here into its own target directory so the real module stays
//! untouched):
//! - a panic in the Rust core never crosses into C: every `extern "C"` entry catches it, logs
//!   it (WST00001) and fails only that request; the child lives on and serves the next one
//!   (a request header makes the handler panic);
//! - an httpd other than the one the module was built for: the end-of-tunnel access-log
//!   record never reaches mod_log_config (`Define WST_PROBE_FOREIGN_HTTPD` makes the probe
//!   build believe it was built for httpd 2.4.0).

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

#[tokio::test(flavor = "multi_thread")]
async fn in_a_foreign_httpd_asynchronous_ends_stay_in_the_error_log() {
    let b = Backend::start("foreign");
    let h = Httpd::start(
        Config::new("record_fallback.conf.in")
            .module(probe_module())
            .var("BACKEND", format!("127.0.0.1:{}", b.port())),
    );
    for _ in 0..2 {
        let (mut ws, _) = connect(&h.url("/echo/foreign")).await.unwrap();
        let m = tokio_tungstenite::tungstenite::Message::text("ping");
        assert_eq!(echo(&mut ws, m.clone()).await, m);
        ws.close(None).await.unwrap();
        while let Some(Ok(_)) = futures_util::StreamExt::next(&mut ws).await {}
    }
    // (WST00007's own text names WST02011: count the tunnels' lines.)
    assert_eq!(
        wait_count(
            &h,
            "WST02011: asynchronous tunnel ended",
            2,
            std::time::Duration::from_secs(10)
        ),
        2,
        "{}",
        h.error_log()
    );
    let log = h.error_log();
    let warned: Vec<&str> = log.lines().filter(|l| l.contains("WST00007")).collect();
    assert_eq!(warned.len(), 1, "said once, at startup:\n{log}");
    assert!(warned[0].contains("2.4.0") && warned[0].contains("rebuild"), "{}", warned[0]);
    // Only the hand-overs' own records (by httpd), none of the ends (by us).
    let tunnels = std::fs::read_to_string(h.root.join("tunnels_log")).unwrap_or_default();
    assert!(!tunnels.contains("end=1"), "{tunnels}");
    let all = h.access_log();
    assert_eq!(all.lines().filter(|l| l.contains("/echo/foreign")).count(), 2, "{all}");
    h.stop();
}
