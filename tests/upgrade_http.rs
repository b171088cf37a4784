//! `ProxyWebsocketUpgradeHttp`: this module tunnels the upgrade requests of mod_proxy_http's
//! `http://` workers (`upgrade=`), exactly those mod_proxy_http would tunnel, and sends the
//! backend what mod_proxy_http sends. One configuration runs with the directive On and with it
//! Off (mod_proxy_http, stock) against one backend; every request of a matrix (routes of every
//! kind, AllowEncodedSlashes modes, Upgrade values, headers) must give the client the same
//! status and the backend the byte-identical request head.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};
use wskit::raw;

/// Routes of upgrade_http.conf.in, each with what is asked of it.
const PATHS: &[&str] = &[
    "/up/a",
    "/up/a/b?x=1&y=%2F",
    "/up/a%20b",
    "/up/a%3Fb",
    "/up/a%2Fb",
    "/up/caf%C3%A9",
    "/up/%2e%2e/x",
    "/ws2/a",
    "/any/a",
    "/list/a",
    "/plain/a",
    "/nocanon/a%3Fb/%2F",
    "/enc/a%20b%2Fc",
    "/preserve/a",
    "/noadd/a",
    "/hdr/a",
    "/old/a",
    "/bal/a",
    "/rw/a?q=%20",
    "/sh/a",
    "/kept/a",
];

/// Upgrade values (none: the header left out), and other ways a request may differ.
const UPGRADES: &[&str] = &["websocket", "WebSocket", "websocket, foo", "foo", "h2c", "chat", ""];

#[derive(Debug, PartialEq, Eq, Clone)]
struct Seen {
    status: u16,
    /// The client's answer head, but its Date.
    answer: Vec<String>,
    /// The request head the backend got, verbatim.
    backend: Option<String>,
}

/// The requests: every route with every Upgrade value and the odd ones (`all`), or every
/// route with a WebSocket upgrade only (for the AllowEncodedSlashes variants).
fn cases(all: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for path in PATHS {
        for up in if all { UPGRADES } else { &UPGRADES[..1] } {
            out.push((format!("{path} [{up}]"), raw::upgrade_request(path, up, "1.1")));
        }
    }
    if !all {
        return out;
    }
    let extra = |path: &str, more: &str| {
        let head = raw::handshake(path, more);
        (format!("{path} +{}", more.trim_end().replace("\r\n", "|")), head)
    };
    out.push(extra("/hdr/a", "X-Drop: gone\r\nX-Keep: kept\r\nX-Set: from client\r\n"));
    out.push(extra("/bal/a", "Cookie: ROUTEID=.r1\r\n"));
    out.push(extra("/up/a", "X-Forwarded-For: 10.9.8.7\r\nVia: 1.1 elsewhere\r\n"));
    // mod_proxy_http forwards Expect and answers 100-continue itself: it keeps these.
    out.push(extra("/up/a", "Expect: 100-continue\r\n"));
    // mod_proxy_http tunnels it without a 101 the client could see: stock, so left alone.
    out.push(("/up/a HTTP/1.0".into(), raw::upgrade_request("/up/a", "websocket", "1.0")));
    // A body: mod_proxy_http forwards it, so the request stays its own.
    let mut body = raw::handshake("/up/body", "Content-Length: 5\r\n");
    body.push_str("hello");
    out.push(("/up/body +Content-Length".into(), body));
    out
}

/// Runs every case against one server (ports: main, AllowEncodedSlashes On, NoDecode).
fn run_matrix(b: &Backend, upgrade_http: &str) -> (BTreeMap<String, Seen>, String) {
    b.clear_events();
    let h = Httpd::start(
        Config::new("upgrade_http.conf.in")
            .ports(2)
            .var("BACKEND", format!("127.0.0.1:{}", b.port()))
            .var("UPGRADE_HTTP", upgrade_http),
    );
    let mut answers = BTreeMap::new();
    let mut n = 0;
    for (mode, port) in [("off", h.port), ("on", h.ports[0]), ("nodecode", h.ports[1])] {
        for (case, req) in cases(mode == "off") {
            n += 1;
            // Tag the request so its head can be found at the backend.
            let req = req.replacen("\r\n", &format!("\r\nX-Case: {n}\r\n"), 1);
            let mut s = raw::connect(port);
            s.write_all(req.as_bytes()).unwrap();
            let (status, head) = answer_head(&mut s);
            let answer = head
                .lines()
                .skip(1)
                .filter(|l| !l.starts_with("Date:"))
                .map(str::to_string)
                .collect();
            answers.insert(n, (format!("{mode:8} {case}"), status, answer));
        }
    }
    let heads = settled_requests(b);
    let mut by_case: BTreeMap<u32, String> = BTreeMap::new();
    for head in heads {
        if let Some(id) = head
            .lines()
            .find_map(|l| l.strip_prefix("X-Case: "))
            .and_then(|v| v.trim().parse().ok())
        {
            // SetHandler proxy:... appends r->filename (a path under this server's root).
            by_case.insert(id, head.replace(&h.root.display().to_string(), "@ROOT@"));
        }
    }
    let seen = answers
        .into_iter()
        .map(|(id, (case, status, answer))| {
            (case, Seen { status, answer, backend: by_case.get(&id).cloned() })
        })
        .collect();
    let log = h.stop();
    (seen, log)
}

/// The answer's status and head; status 0 when the connection ended without one.
fn answer_head(s: &mut std::net::TcpStream) -> (u16, String) {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let head = text.split("\r\n\r\n").next().unwrap_or("").to_string();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head)
}

/// The backend's request heads once no more arrive.
fn settled_requests(b: &Backend) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(3);
    let mut heads = b.requests();
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(150));
        let now = b.requests();
        if now.len() == heads.len() {
            break;
        }
        heads = now;
    }
    heads
}

#[test]
fn every_upgrade_request_reaches_the_backend_as_mod_proxy_http_sends_it() {
    let b = Backend::start("parity");
    let (theirs, their_log) = run_matrix(&b, "Off");
    let (ours, our_log) = run_matrix(&b, "On");
    assert_eq!(theirs.len(), ours.len());
    let mut diffs = Vec::new();
    for (case, want) in &theirs {
        let got = &ours[case];
        if got != want {
            diffs
                .push(format!("{case}\n    mod_proxy_http: {want:?}\n    ours:           {got:?}"));
        }
    }
    let tunnels = |seen: &BTreeMap<String, Seen>| seen.values().filter(|s| s.status == 101).count();
    let claimed = our_log.lines().filter(|l| l.contains("WST01025")).count();
    eprintln!(
        "{} cases, {} tunnelled ({} of them taken from mod_proxy_http by this module); {} differ",
        ours.len(),
        tunnels(&ours),
        claimed,
        diffs.len()
    );
    assert!(diffs.is_empty(), "differences from mod_proxy_http:\n{}", diffs.join("\n"));
    assert!(!their_log.contains("WST01025"), "Off: this module took an upgrade:\n{their_log}");
    // Under On, every tunnel of an http:// worker is ours but those mod_proxy_http keeps:
    // /kept/'s (Off there), those with Expect or a body, those offering two protocols, and
    // h2c under upgrade=ANY (which this module never tunnels). (ws2's are ours anyway:
    // fallback Off.)
    let kept = |c: &str| {
        ["/ws2/", "/kept/", "+Expect", "+Content-Length", "websocket, foo", "[h2c]"]
            .iter()
            .any(|k| c.contains(k))
    };
    let http_tunnels = ours.iter().filter(|(c, s)| s.status == 101 && !kept(c)).count();
    assert!(http_tunnels > 20, "too few tunnels to prove anything: {http_tunnels}");
    assert_eq!(
        claimed, http_tunnels,
        "On: tunnels of http:// workers not taken by this module:\n{our_log}"
    );
    assert!(!our_log.lines().any(|l| l.contains("WST01025") && l.contains("/kept/")), "{our_log}");
    // What neither tunnels, mod_proxy_http serves as plain HTTP.
    let at = |case: &str| ours[&format!("{:8} {case}", "off")].clone();
    for case in ["/plain/a [websocket]", "/old/a [websocket]", "/up/a []"] {
        assert_eq!(at(case).status, 200, "{case}: {:?}", at(case));
    }
    assert_eq!(at("/any/a [chat]").status, 101);
}
