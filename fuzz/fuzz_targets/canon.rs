//! URL canonicalisation: scheme recognition, the control-character rules (CVE-2023-25690) and
//! the composed `r->filename`. The netloc parser and path encoder are mod_proxy's own (C) and
//! are exercised by the side-by-side test against stock instead.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mod_proxy_wstunnel::canon::{check_forwarded, filename, has_ctl_or_space};
use mod_proxy_wstunnel::scheme::Scheme;

fuzz_target!(|data: &[u8]| {
    if let Some((scheme, rest)) = Scheme::parse(data) {
        assert!(rest.len() + 3 <= data.len());
        assert!(data[..data.len() - rest.len()].ends_with(b":"));
        let _ = scheme.default_port();
    }
    // Input: flags byte, then path and query separated by the first '?'.
    let Some((&flags, body)) = data.split_first() else { return };
    let raw = flags & 1 == 1;
    let (path, query) = match body.iter().position(|&b| b == b'?') {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let port = u16::from_le_bytes([flags, flags.rotate_left(3)]);
    let scheme = if flags & 2 == 2 { Scheme::Wss } else { Scheme::Ws };
    if check_forwarded(raw, path, query).is_ok() {
        if query.is_some_and(has_ctl_or_space) {
            panic!("a query with control characters passed");
        }
        if raw {
            let f = filename(scheme, b"backend.example", port, path, query);
            assert!(!has_ctl_or_space(&f), "control characters would reach the backend: {f:?}");
        }
    }
    let f = filename(scheme, b"::1", port, path, query);
    assert!(f.starts_with(b"proxy:ws"));
    assert!(f.windows(5).any(|w| w == b"[::1]"), "IPv6 literal not bracketed");
});
