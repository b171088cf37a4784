//! `ProxyWebsocketFallbackToProxyHttp`: On leaves ws:// to mod_proxy_http, Off makes this
//! module handle it; the error log (our WST01014 line names each request we handled) and
//! mod_proxy_http's plain-HTTP treatment of non-upgrade requests prove who handled what.

mod common;
use common::*;
use std::time::Duration;
use wskit::raw;

#[tokio::test(flavor = "multi_thread")]
async fn on_and_off_per_location() {
    let b = Backend::start("b");
    let h = Httpd::start(
        Config::new("fallback.conf.in").var("BACKEND", format!("127.0.0.1:{}", b.port())),
    );
    assert_eq!(round_trip(&h.url("/on/x")).await, "b");
    assert_eq!(round_trip(&h.url("/off/y")).await, "b");
    assert_eq!(round_trip(&h.url("/off/back-on/z")).await, "b");
    assert!(h.wait_log("WST01014", Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(300));
    let log = h.error_log();
    let ours: Vec<&str> = log.lines().filter(|l| l.contains("WST01014")).collect();
    assert!(ours.iter().any(|l| l.contains("GET /off/y ")), "{log}");
    assert!(
        !ours.iter().any(|l| l.contains("GET /on/x ")),
        "we handled a fallback-On request:\n{log}"
    );
    assert!(
        !ours.iter().any(|l| l.contains("GET /off/back-on/z ")),
        "innermost On did not win:\n{log}"
    );
    // Without Upgrade: mod_proxy_http proxies plain HTTP on a ws:// alias (On), while with
    // Off the ws alias does not match and the URL is not proxied (stock behaviour).
    let (resp, body) = raw::get(h.port, "/on/page", "");
    assert_eq!((resp.status, body.as_str()), (200, "plain http from b\n"));
    let (resp, _) = raw::get(h.port, "/off/page", "");
    assert_eq!(resp.status, 404);
    h.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_directive_arguments_fail_configtest_with_a_clear_message() {
    for (directive, needle) in [
        ("ProxyWebsocketIdleTimeout 5x", "ProxyWebsocketIdleTimeout: '5x' has an unknown unit"),
        ("ProxyWebsocketIdleTimeout -1", "ProxyWebsocketIdleTimeout: '-1' is not a duration"),
        (
            "ProxyWebsocketFallbackToProxyHttp maybe",
            "ProxyWebsocketFallbackToProxyHttp must be On or Off",
        ),
        ("ProxyWebsocketAsync sometimes", "ProxyWebsocketAsync must be On or Off"),
        ("ProxyWebsocketUpgradeHttp yes", "ProxyWebsocketUpgradeHttp must be On or Off"),
        ("ProxyWebsocketAsyncDelay 1y", "ProxyWebsocketAsyncDelay: '1y' has an unknown unit"),
        (
            "ProxyWebsocketAsyncMaxTunnels 0",
            "ProxyWebsocketAsyncMaxTunnels: '0' is not a positive number of tunnels",
        ),
        (
            "ProxyWebsocketAsyncMaxTunnels lots",
            "ProxyWebsocketAsyncMaxTunnels: 'lots' is not a positive number",
        ),
        ("ProxyWebsocketDrainTimeout soon", "ProxyWebsocketDrainTimeout: 'soon' is not a duration"),
        (
            "<VirtualHost 127.0.0.1:1>\nProxyWebsocketDrainTimeout 5\n</VirtualHost>",
            "ProxyWebsocketDrainTimeout: only in the server configuration",
        ),
        (
            "ProxyWebsocketAsyncThreads 0",
            "ProxyWebsocketAsyncThreads: '0' is not a number of threads from 1 to 1024",
        ),
        (
            "<VirtualHost 127.0.0.1:1>\nProxyWebsocketAsyncThreads 4\n</VirtualHost>",
            "ProxyWebsocketAsyncThreads: only in the server configuration",
        ),
    ] {
        let out = wskit::httpd::configtest(&format!("{directive}\n"));
        assert!(!out.0, "{directive} accepted");
        assert!(out.1.contains(needle), "{directive}: {}", out.1);
    }
    let ok = wskit::httpd::configtest(
        "ProxyWebsocketIdleTimeout 250ms\nProxyWebsocketFallbackToProxyHttp off\nProxyWebsocketAsync On\n\
         ProxyWebsocketAsyncDelay 2s\nProxyWebsocketAsyncMaxTunnels 5000\nProxyWebsocketDrainTimeout 30s\n\
         ProxyWebsocketAsyncThreads 4\n",
    );
    assert!(ok.0, "{}", ok.1);
}
