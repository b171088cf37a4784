//! A real browser: headless Chromium loads a page from the test httpd that opens a ws://
//! WebSocket (plain front end, ws:// backend) and a wss:// one (TLS front end, wss://
//! backend) through our module, exchanges a text message and a 1 MiB binary message on each
//! and closes with 1000. The page reports what it saw to `/report?JSON`, which we read back
//! from httpd's access log.

mod common;
use common::*;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A graceful restart ends the browser's WebSocket with 1001 and a clean close, and the page
/// reconnects to the new generation at once.
#[test]
fn chromium_sees_1001_on_a_graceful_restart_and_reconnects() {
    let (dir, h, _plain, _tls) = server("browser-drain");
    let url =
        format!("http://127.0.0.1:{}/page.html?drain=ws://127.0.0.1:{}/ws2/drain", h.port, h.port);
    let browser = browse(&dir, &url);
    reported(&h, &dir, "/opened");
    h.signal(libc::SIGUSR1);
    let seen = reported(&h, &dir, "/report?");
    assert_eq!(seen, r#"{"close":1001,"clean":true}"#);
    assert_eq!(reported(&h, &dir, "/reconnected?"), "back again");
    drop(browser);
    let log = h.stop();
    assert!(log.contains("WST02014"), "{log}");
}

/// A page that sends nothing for 2.5 s stays connected through the module's Pings every
/// 300 ms (timeout 300 ms): Chromium answers them by itself, and its Pongs never reach the
/// backend.
#[test]
fn chromium_answers_the_modules_pings_and_stays_connected() {
    let (_dir, h, plain, seen) =
        page("browser-pings", |h| format!("quiet=ws://127.0.0.1:{}/ws2/quiet", h.ports[2]));
    assert_eq!(seen, r#"{"open":true,"echo":"after 2.5 s of silence","close":1000}"#);
    assert!(
        !plain.events().iter().any(|e| matches!(e, wskit::backend::Event::Pong(_))),
        "a Pong reached the backend: {:?}",
        plain.events()
    );
    let (pings, end) = module_pings(&h.stop(), "/ws2/quiet");
    assert!(pings >= 5, "{pings} Pings in 2.5 s at 300 ms: {end}");
}

/// The browser's own permessage-deflate (Chromium offers it on every WebSocket) through strict
/// frames, as the Debian package configures them: the backend accepts it, the browser's
/// compressed messages (RSV1) reach the backend and the backend's reach the browser, with the
/// module's Pings between them.
#[test]
fn chromium_compresses_through_strict_frames_with_permessage_deflate() {
    let (_dir, h, plain, seen) =
        page("browser-deflate", |h| format!("deflate=ws://127.0.0.1:{}/ws2/deflate", h.ports[3]));
    assert_eq!(seen, r#"{"extensions":"permessage-deflate","same":6,"close":1000}"#);
    let inflated = plain.inflated();
    assert_eq!(inflated.len(), 6, "the browser's messages were not all compressed: {inflated:?}");
    assert!(inflated.iter().all(|(wire, _, plain)| wire < plain), "{inflated:?}");
    let log = h.stop();
    assert!(!log.contains("broke a framing rule"), "{log}");
    let (pings, end) = module_pings(&log, "/ws2/deflate");
    assert!(pings >= 1, "no Ping of the module between the messages: {end}");
}

/// Starts the server, opens page.html?`query` in Chromium, waits for the page's report and
/// closes the browser: the test's folder, the server, the plain backend and the report.
fn page(name: &str, query: impl Fn(&Httpd) -> String) -> (TempDir, Httpd, Backend, String) {
    let (dir, h, plain, _tls) = server(name);
    let browser = browse(&dir, &format!("http://127.0.0.1:{}/page.html?{}", h.port, query(&h)));
    let seen = reported(&h, &dir, "/report?");
    drop(browser);
    (dir, h, plain, seen)
}

/// How many Pings of its own the module sent the client of the tunnel for `path`, by its end
/// record (`WST02011`); and that record.
fn module_pings(log: &str, path: &str) -> (u32, String) {
    let end = log.lines().find(|l| l.contains("WST02011") && l.contains(path)).unwrap_or_default();
    let pings = end
        .split(", ")
        .find_map(|p| p.strip_suffix(" Pings of the module to the client")?.parse().ok())
        .unwrap_or(0);
    (pings, end.to_string())
}

/// Kills the browser's whole process group (it was started as a group leader) at drop.
struct Browser(std::process::Child);
impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group we created for the browser.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// The browser.conf.in server with the page in its document root: the test's folder (the
/// browser's profile goes there too), the server, its ws:// backend and its wss:// one.
fn server(name: &str) -> (TempDir, Httpd, Backend, Backend) {
    let TlsSite { _dir: dir, h, b, tb, .. } = tls_site(name, "browser.conf.in", |c| c.ports(4));
    let page =
        std::fs::read_to_string(wskit::httpd::workspace_root().join("tests/browser/page.html"))
            .unwrap();
    std::fs::write(h.root.join("htdocs/page.html"), page).unwrap();
    let _ = Command::new("chmod").arg("a+r").arg(h.root.join("htdocs/page.html")).status();
    (dir, h, b, tb)
}

/// Starts headless Chromium on `url`.
fn browse(dir: &TempDir, url: &str) -> Browser {
    let profile = dir.0.join("profile");
    let child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // The page's wss:// goes to httpd's certificate from the test CA.
            "--ignore-certificate-errors",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(dir.0.join("chromium.log")).unwrap()))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} (Debian package chromium): {e}", chromium()));
    Browser(child)
}

/// Waits for the page's request for `path` in the access log and returns its query, decoded.
fn reported(h: &Httpd, dir: &TempDir, path: &str) -> String {
    let end = Instant::now() + Duration::from_secs(90);
    let needle = format!("GET {path}");
    let line = loop {
        if let Some(line) = h.access_log().lines().find(|l| l.contains(&needle)) {
            break line.to_string();
        }
        assert!(
            Instant::now() < end,
            "the page never asked for {path}; access log:\n{}\nchromium:\n{}",
            h.access_log(),
            std::fs::read_to_string(dir.0.join("chromium.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let rest = line.split(&needle).nth(1).unwrap().split_whitespace().next().unwrap_or("");
    percent_decode(rest.trim_start_matches('?'))
}

#[test]
fn chromium_page_talks_through_ws_and_wss() {
    let (dir, h, plain, tls) = server("browser");
    let url = format!(
        "http://127.0.0.1:{}/page.html?ws=ws://127.0.0.1:{}/ws2/browser&wss=wss://localhost:{}/wss2/browser&wssasync=wss://localhost:{}/ws2/browser-async",
        h.port, h.port, h.ports[0], h.ports[1]
    );
    let browser = browse(&dir, &url);
    let seen = reported(&h, &dir, "/report?");
    drop(browser);
    for (name, ws_url) in [
        ("ws", format!("ws://127.0.0.1:{}/ws2/browser", h.port)),
        ("wss", format!("wss://localhost:{}/wss2/browser", h.ports[0])),
        ("wssasync", format!("wss://localhost:{}/ws2/browser-async", h.ports[1])),
    ] {
        let want = format!(
            r#""{name}":{{"url":"{ws_url}","open":true,"text":"hello from the browser","big":true,"close":1000}}"#
        );
        assert!(seen.contains(&want), "the page saw {seen}\nexpected {want}");
    }
    assert!(
        plain.requests().iter().any(|r| r.starts_with("GET /browser HTTP/1.1")),
        "{:?}",
        plain.requests()
    );
    assert!(
        tls.requests().iter().any(|r| r.starts_with("GET /browser HTTP/1.1")),
        "{:?}",
        tls.requests()
    );
    let log = h.stop();
    for path in ["/ws2/browser", "/wss2/browser", "/ws2/browser-async"] {
        assert!(
            log.contains(&format!("for \"GET {path} HTTP/1.1\"")),
            "our module did not tunnel {path}:\n{log}"
        );
    }
    // Under event the wss:// tunnel with ProxyWebsocketAsync On left its request thread
    // before the page's messages (1 MiB each way) went through.
    if mpm() == "event" {
        let async_end = log
            .lines()
            .find(|l| l.contains("WST02011") && l.contains("/ws2/browser-async"))
            .unwrap_or_default();
        assert!(log.contains("(request suspended)") && async_end.contains("1048"), "{log}");
    }
}

/// The demo's promise: the URL it prints for a browser works. Chromium opens it; the page's
/// WebSocket goes through our module to the demo's echo backend and the echo comes back.
#[test]
fn the_demo_url_works_in_chromium() {
    use std::io::BufRead;
    let dir = TempDir::new("browser-demo");
    std::fs::create_dir_all(&dir.0).unwrap();
    let demo_bin = wskit::httpd::workspace_root().join("target/release/wst-demo");
    let mut demo = Command::new(&demo_bin)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{}: {e} (cargo build --release --workspace)", demo_bin.display())
        });
    let mut lines = std::io::BufReader::new(demo.stdout.take().unwrap()).lines();
    let (mut root, mut url, mut records, mut ours) = (None, None, Vec::new(), 0);
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(r) = line.split("ServerRoot ").nth(1) {
            root = Some(std::path::PathBuf::from(r.trim()));
        }
        if let Some(u) = line.strip_prefix("   in a browser:  ") {
            url = Some(u.trim().to_string());
        }
        if let Some(a) = line.strip_prefix("access log        : ") {
            records.push(a.to_string());
        }
        if line.starts_with("tunnelled by      : this module, asynchronously") {
            ours += 1;
        }
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    let (root, url) = (
        root.expect("the demo printed its ServerRoot"),
        url.expect("the demo printed a URL for browsers"),
    );
    // Both routes it shows: the manual's ws:// and the http:// upgrade=websocket.
    for path in ["/ws2/", "/up/"] {
        assert!(
            records.iter().any(|r| r.contains(&format!("\"GET {path} HTTP/1.1\" 101, "))
                && r.contains(" bytes out")),
            "{path}: {records:?}"
        );
    }
    assert_eq!(
        ours, 2,
        "the demo did not show both routes going through the module asynchronously"
    );
    let browser = browse(&dir, &url);
    let end = Instant::now() + Duration::from_secs(60);
    let log = root.join("access_log");
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("GET /echoed?hello%20from%20the%20browser ")
    {
        assert!(
            Instant::now() < end,
            "the browser never got its echo; access log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(browser);
    let error_log = std::fs::read_to_string(root.join("error_log")).unwrap_or_default();
    // SAFETY: SIGINT to the demo process we started (its Ctrl-C handler stops its httpd).
    unsafe { libc::kill(demo.id() as i32, libc::SIGINT) };
    for line in lines.by_ref() {
        if line.unwrap_or_default().starts_with("stopped.") {
            break;
        }
    }
    let _ = demo.wait();
    assert!(
        error_log.contains("for \"GET /ws2/ HTTP/1.1\""),
        "our module did not tunnel the browser's WebSocket:\n{error_log}"
    );
}
