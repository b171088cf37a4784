//! The upgrade policy: worker parameter, client header, and the backend's 101.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mod_proxy_wstunnel::upgrade::{accepts_101, decide, has_token, tokens, Decision, Policy};

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let mut parts = s.splitn(3, '\n');
    let (stored, client, answered) = (parts.next().unwrap_or(""), parts.next(), parts.next());
    let policy = Policy::from_worker(stored);
    let _ = policy.advertised();
    for t in tokens(stored) {
        assert!(!t.is_empty() && !t.contains(',') && t.trim() == t, "bad token {t:?}");
    }
    for http10 in [false, true] {
        match decide(&policy, client, http10) {
            Decision::Forward(v) => {
                assert!(!http10, "HTTP/1.0 cannot upgrade");
                // Only a worker that names them explicitly may tunnel h2c or TLS upgrades.
                for danger in ["h2c", "TLS/1.0", "TLS/1.1", "TLS/1.2"] {
                    if has_token(&v, danger) {
                        assert!(
                            matches!(&policy, Policy::List(l) if l.iter().any(|p| p.eq_ignore_ascii_case(danger))),
                            "{danger} forwarded under {policy:?}"
                        );
                    }
                }
                let _ = accepts_101(&v, answered);
                assert!(
                    accepts_101(&v, Some(&v)) || v.trim().is_empty() || v.contains(','),
                    "a 101 echoing the offer {v:?} refused"
                );
            }
            Decision::Refuse(_) => {}
        }
    }
});
