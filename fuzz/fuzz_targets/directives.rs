//! Directive arguments: ProxyWebsocketIdleTimeout's duration syntax.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mod_proxy_wstunnel::config::parse_duration;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(d) = parse_duration(s) {
        // Whatever the unit, the number part parsed: a plain number of seconds is seconds.
        if let Ok(n) = s.trim().parse::<u64>() {
            assert_eq!(d, Duration::from_secs(n), "{s:?}");
        }
    }
});
