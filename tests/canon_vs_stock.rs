//! Canonicalisation identical to stock (CVE-2024-38473/38477/2023-25690): the
//! same configuration runs once with httpd's stock mod_proxy_wstunnel and once with ours; every
//! request of the matrix must give the same client status and, when something reaches the
//! backend, the byte-identical request line.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use wskit::raw;

const ROUTES: &[&str] = &[
    "/p/",
    "/nocanon/",
    "/enc/",
    "/bal/",
    "/sh/",
    "/rw/",
    "/ne/",
    "/q/",
    "/hostless/",
    "/emptyhost/",
    "/zone/",
];

const SUFFIXES: &[&str] = &[
    "a",
    "a/b/c",
    "a%20b",
    "a%3Fb",
    "a%3fb?x=1",
    "a%2Fb",
    "a%2fb?x=%2F",
    "%2e%2e/x",
    "a/../b",
    "a/./b",
    "a?q=1&r=%0d%0a",
    "a%0d%0aX-Injected:%20y",
    "a%0aGET%20/smuggled",
    "a%20HTTP/1.1%0d%0aHost:x%0d%0a%0d%0aGET%20/smuggled",
    "caf%C3%A9",
    "a;b=c",
    "~user",
    "a%00b",
    "%7euser",
    "a+b",
    "a%25b",
    "a?%3F%23",
    "a?unix:/tmp/x.sock|ws://evil/",
    "a%09b",
    "a%7Fb",
    "a?b%20c",
    "a?b c",
];

#[derive(Debug, PartialEq, Eq, Clone)]
struct Seen {
    status: u16,
    backend_line: Option<String>,
}

/// Runs the whole matrix against one server; returns (case → what happened).
fn run_matrix(module: std::path::PathBuf) -> BTreeMap<String, Seen> {
    let b = Backend::start("canon");
    let h = Httpd::start(
        Config::new("canon.conf.in")
            .module(module)
            .ports(2)
            .var("BACKEND", format!("127.0.0.1:{}", b.port())),
    );
    let ports = [("off", h.port), ("on", h.ports[0]), ("nodecode", h.ports[1])];
    let mut statuses = BTreeMap::new();
    let mut n = 0;
    for (mode, port) in ports {
        for route in ROUTES {
            for suffix in SUFFIXES {
                n += 1;
                let case = format!("{mode:8} {route}{suffix}");
                let path = format!("{route}{suffix}");
                let req = raw::handshake(&path, &format!("X-Case: {n}\r\n"));
                let mut s = raw::connect(port);
                use std::io::Write;
                s.write_all(req.as_bytes()).unwrap();
                let resp = raw::read_response(&mut s);
                statuses.insert(n, (case, resp.status));
            }
        }
    }
    // Give the backend a moment to record the last heads.
    let end = Instant::now() + Duration::from_secs(2);
    let mut heads = b.requests();
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
        let now = b.requests();
        if now.len() == heads.len() {
            break;
        }
        heads = now;
    }
    let mut by_case: BTreeMap<u32, String> = BTreeMap::new();
    for head in heads {
        let id = head
            .lines()
            .find_map(|l| l.strip_prefix("X-Case: "))
            .and_then(|v| v.trim().parse().ok());
        if let Some(id) = id {
            // SetHandler proxy:... appends r->filename (a path under this server's root).
            let line =
                head.lines().next().unwrap_or("").replace(&h.root.display().to_string(), "@ROOT@");
            by_case.insert(id, line);
        }
    }
    let out = statuses
        .into_iter()
        .map(|(id, (case, status))| {
            (case, Seen { status, backend_line: by_case.get(&id).cloned() })
        })
        .collect();
    h.stop();
    out
}

#[test]
fn every_case_matches_stock() {
    let stock = wskit::httpd::stock_module();
    assert!(stock.exists(), "the stock module is needed for the comparison: {}", stock.display());
    let theirs = run_matrix(stock);
    let ours = run_matrix(wskit::httpd::our_module());
    assert_eq!(theirs.len(), ours.len());
    let mut diffs = Vec::new();
    for (case, want) in &theirs {
        let got = &ours[case];
        if got != want {
            diffs.push(format!("{case}\n    stock: {want:?}\n    ours:  {got:?}"));
        }
    }
    if std::env::var_os("WST_CANON_DUMP").is_some() {
        for (case, seen) in &ours {
            eprintln!("{case:60} {} {}", seen.status, seen.backend_line.as_deref().unwrap_or("-"));
        }
    }
    let tunnelled = ours.values().filter(|s| s.status == 101).count();
    eprintln!(
        "{} cases, {} tunnelled, {} refused; {} differ from stock",
        ours.len(),
        tunnelled,
        ours.len() - tunnelled,
        diffs.len()
    );
    assert!(diffs.is_empty(), "differences from stock:\n{}", diffs.join("\n"));
    // The security properties themselves, whatever stock does.
    let at = |mode: &str, path: &str| ours[&format!("{mode:8} {path}")].clone();
    for mode in ["off", "on", "nodecode"] {
        // CVE-2023-25690: CR/LF through a RewriteRule [P] substitution into the query: 403.
        for p in [
            "/q/a%20HTTP/1.1%0d%0aHost:x%0d%0a%0d%0aGET%20/smuggled",
            "/q/a%0d%0aX-Injected:%20y",
            "/q/a%0aGET%20/smuggled",
        ] {
            assert_eq!(at(mode, p), Seen { status: 403, backend_line: None }, "{mode} {p}");
        }
        // CVE-2024-38473: an encoded '?' stays encoded on every path into the module.
        for p in ["/p/a%3Fb", "/bal/a%3Fb"] {
            assert_eq!(
                at(mode, p).backend_line.as_deref(),
                Some("GET /a%3Fb HTTP/1.1"),
                "{mode} {p}"
            );
        }
        // Traversal never reaches the backend encoded as a path segment.
        assert_eq!(at(mode, "/p/%2e%2e/x").backend_line, None, "{mode}");
        // CVE-2024-38477: host-less URLs are 400, no crash (the error_log is checked on stop).
        for p in ["/hostless/a", "/emptyhost/a", "/zone/a"] {
            assert_eq!(at(mode, p), Seen { status: 400, backend_line: None }, "{mode} {p}");
        }
    }
    // %2F per AllowEncodedSlashes: Off refuses (404), On decodes, NoDecode keeps it encoded.
    assert_eq!(at("off", "/p/a%2Fb"), Seen { status: 404, backend_line: None });
    assert_eq!(at("on", "/p/a%2Fb").backend_line.as_deref(), Some("GET /a/b HTTP/1.1"));
    assert_eq!(at("nodecode", "/p/a%2Fb").backend_line.as_deref(), Some("GET /a%2Fb HTTP/1.1"));
    // Whatever the route, a request line is never split (CVE-2023-25690 through canon).
    for (case, seen) in &ours {
        if let Some(line) = &seen.backend_line {
            assert!(
                !line.contains("smuggled") || line.contains("%20"),
                "{case}: request split: {line}"
            );
            assert!(line.split(' ').count() == 3, "{case}: request line with extra spaces: {line}");
        }
        if case.contains("/hostless/") || case.contains("/emptyhost/") {
            assert!(seen.backend_line.is_none(), "{case}: a host-less URL reached a backend");
        }
    }
}
