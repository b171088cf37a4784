//! Directive arguments: ProxyWebsocketIdleTimeout's duration syntax.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mod_proxy_wstunnel::config::parse_duration_us;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(us) = parse_duration_us(s) {
        assert!(us >= 0, "{s:?} gave a negative timeout");
        // Whatever the unit, the number part parsed: a plain number of seconds is seconds.
        if let Ok(n) = s.trim().parse::<i64>() {
            assert_eq!(us, n * 1_000_000, "{s:?}");
        }
    }
});
