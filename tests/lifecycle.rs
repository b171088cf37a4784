//! docs/DESIGN.md §4, last row: graceful restart and graceful stop with live tunnels: no crash, live
//! tunnels keep working through a restart, new connections are served, and a graceful stop
//! does not hang beyond GracefulShutdownTimeout.

mod common;
use common::*;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread")]
async fn graceful_restart_keeps_live_tunnels_and_serves_new_ones() {
    let b = Backend::start("b");
    let h = Httpd::start(
        Config::new("lifecycle.conf.in").var("BACKEND", format!("127.0.0.1:{}", b.port())),
    );
    let mut live = Vec::new();
    for _ in 0..10 {
        live.push(connect(&h.url("/echo/live")).await.unwrap().0);
    }
    h.signal(libc::SIGUSR1); // graceful restart
                             // event/worker log AH00493 "... graceful restart", prefork AH00171 "Graceful restart ...".
    assert!(
        h.wait_log("raceful restart", Duration::from_secs(10)),
        "no graceful restart:\n{}",
        h.error_log()
    );
    for (i, ws) in live.iter_mut().enumerate() {
        let m = Message::text(format!("after restart {i}"));
        assert_eq!(echo(ws, m.clone()).await, m);
    }
    for _ in 0..5 {
        round_trip(&h.url("/echo/new")).await;
    }
    drop(live);
    h.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_stop_with_live_tunnels_ends_within_the_timeout() {
    let b = Backend::start("b");
    let mut h = Httpd::start(
        Config::new("lifecycle.conf.in").var("BACKEND", format!("127.0.0.1:{}", b.port())),
    );
    let mut live = Vec::new();
    for _ in 0..10 {
        live.push(connect(&h.url("/echo/live")).await.unwrap().0);
    }
    let t0 = Instant::now();
    h.signal(libc::SIGWINCH); // graceful stop
    let status = h.wait_exit(Duration::from_secs(20)).expect("httpd did not stop");
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "graceful stop took {took:?} with GracefulShutdownTimeout 3"
    );
    assert!(status.success() || status.code().is_some(), "{status:?}");
    drop(live);
    h.stop();
}
