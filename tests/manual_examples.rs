//! Every example of the mod_proxy_wstunnel manual, as written, against our module loaded
//! into a real httpd, with a real WebSocket backend and client.

mod common;
use common::*;
use wskit::raw;

fn server(fallback: &str, proxy_http: bool) -> (Backend, Backend, Httpd, wskit::httpd::DeadPort) {
    // The balancer's third member: a port where nothing listens, for the test's lifetime.
    let dead = wskit::httpd::DeadPort::reserve();
    let b1 = Backend::start("one");
    let b2 = Backend::start("two");
    let mut cfg = Config::new("manual.conf.in")
        .ports(2)
        .var("BACKEND", format!("127.0.0.1:{}", b1.port()))
        .var("BACKEND2", format!("127.0.0.1:{}", b2.port()))
        .var("DEADPORT", &dead)
        .var("FALLBACK", fallback);
    if !proxy_http {
        cfg = cfg.without_proxy_http();
    }
    (b1, b2, Httpd::start(cfg), dead)
}

#[tokio::test(flavor = "multi_thread")]
async fn proxypass_ws_example() {
    let (b1, _b2, h, _dead) = server("Off", true);
    assert_eq!(round_trip(&h.url("/ws2/chat")).await, "one");
    assert!(
        b1.requests().iter().any(|r| r.starts_with("GET /chat HTTP/1.1")),
        "{:?}",
        b1.requests()
    );
    assert!(
        h.wait_log("WST01014", std::time::Duration::from_secs(5)),
        "our handler did not run:\n{}",
        h.error_log()
    );
    // The access log records the tunnel as a 101.
    h.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn proxypassmatch_ws_before_http_proxypass() {
    let (b1, _b2, h, _dead) = server("Off", true);
    let p = h.ports[0];
    assert_eq!(round_trip(&format!("ws://127.0.0.1:{p}/myApp/ws")).await, "one");
    assert!(b1.requests().iter().any(|r| r.starts_with("GET /myApp/ws HTTP/1.1")));
    // Plain HTTP on the same URL and elsewhere goes to the http ProxyPass.
    let (resp, body) = raw::get(p, "/myApp/ws", "");
    assert_eq!((resp.status, body.as_str()), (200, "plain http from one\n"));
    let (resp, body) = raw::get(p, "/other", "");
    assert_eq!((resp.status, body.as_str()), (200, "plain http from one\n"));
    h.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn rewrite_recipe() {
    let (b1, _b2, h, _dead) = server("Off", true);
    let p = h.ports[1];
    assert_eq!(round_trip(&format!("ws://127.0.0.1:{p}/any/path?x=1")).await, "one");
    assert!(
        b1.requests().iter().any(|r| r.starts_with("GET /any/path?x=1 HTTP/1.1")),
        "{:?}",
        b1.requests()
    );
    let (resp, body) = raw::get(p, "/any/path", "");
    assert_eq!((resp.status, body.as_str()), (200, "plain http from one\n"));
    h.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn balancer_spreads_and_fails_over() {
    let (_b1, _b2, h, _dead) = server("Off", true);
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..9 {
        *seen.entry(round_trip(&h.url("/bal/x")).await).or_insert(0) += 1;
    }
    // Every connection got a tunnel even though one member is down, and both live members served.
    assert_eq!(seen.values().sum::<i32>(), 9, "{seen:?}");
    assert!(seen.contains_key("one") && seen.contains_key("two"), "{seen:?}");
    h.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn examples_work_without_mod_proxy_http_too() {
    let (_b1, _b2, h, _dead) = server("On", false);
    assert_eq!(round_trip(&h.url("/ws2/")).await, "one");
    assert!(h.wait_log("WST01014", std::time::Duration::from_secs(5)));
    h.stop();
}
