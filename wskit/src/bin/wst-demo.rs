//! The demo: starts an echo backend and a private httpd with our module, shows one WebSocket
//! round trip through it, prints the URLs to try, and keeps running until Ctrl-C.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use wskit::{Backend, Config, Httpd};

const PAGE: &str = r#"<!doctype html>
<title>mod_proxy_wstunnel-rs demo</title>
<h1>WebSocket through httpd</h1>
<input id="m" value="hello"> <button onclick="ws.send(m.value)">send</button>
<pre id="log"></pre>
<script>
const log = t => document.getElementById('log').textContent += t + "\n";
const ws = new WebSocket("ws://" + location.host + "/ws2/");
ws.onopen = () => { log("open: " + ws.url); ws.send("hello from the browser"); };
// The echo is also reported back to httpd (a GET of /echoed?TEXT in its access log), so a
// headless browser's visit can be checked.
ws.onmessage = e => { log("echo: " + e.data); fetch("/echoed?" + encodeURIComponent(e.data)); };
ws.onclose = e => log("closed: " + e.code);
</script>
"#;

fn main() {
    // Ctrl-C and SIGTERM are taken by `interrupted` alone: held in every thread, which the
    // runtime's inherit from this one.
    let held = interrupt_signals();
    // SAFETY: blocks the signals in `held` for this thread (and those it starts).
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &held, std::ptr::null_mut()) };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(demo());
}

/// SIGINT and SIGTERM.
fn interrupt_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Waits for Ctrl-C or SIGTERM (held in every thread, see `main`).
fn interrupted() {
    let set = interrupt_signals();
    let mut sig = 0;
    // SAFETY: waits for one of the signals in `set`, which every thread holds.
    unsafe { libc::sigwait(&set, &mut sig) };
}

async fn demo() {
    let once = std::env::args().any(|a| a == "--once");
    let backend = Backend::start("demo-echo");
    println!("echo backend      : ws://{}", backend.addr);
    let httpd = Httpd::start(Config::new("demo.conf.in").var("BACKEND", backend.addr));
    std::fs::write(httpd.root.join("htdocs/index.html"), PAGE).unwrap();
    println!("httpd             : pid {}, ServerRoot {}", httpd.pid(), httpd.root.display());
    println!("module            : {}", wskit::httpd::our_module().display());
    println!("configuration     : ProxyPass \"/ws2/\" \"ws://{}/\"", backend.addr);
    println!(
        "                    ProxyPass \"/up/\"  \"http://{}/\" upgrade=websocket",
        backend.addr
    );
    for path in ["/ws2/", "/up/"] {
        println!();
        round_trip(&httpd, path).await;
    }
    let url = httpd.url("/ws2/");
    println!();
    println!("Try it yourself:  {url}");
    println!("   in a browser:  http://127.0.0.1:{}/", httpd.port);
    println!("   with a client:  websocat {url}   (or any WebSocket client)");
    if once {
        httpd.stop();
        return;
    }
    println!("Press Ctrl-C to stop.");
    tokio::task::spawn_blocking(interrupted).await.ok();
    httpd.stop();
    println!("stopped.");
}

/// One WebSocket through `path`: the handshake, two echoes, who tunnelled it (the error log)
/// and its access-log record.
async fn round_trip(httpd: &Httpd, path: &str) {
    let url = httpd.url(path);
    let (mut ws, resp) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("WebSocket handshake through httpd");
    println!("{url:18}: {} {:?}", resp.status(), resp.headers().get("upgrade").unwrap());
    for msg in ["hello from the demo", "a second message"] {
        ws.send(Message::text(msg)).await.unwrap();
        let echo = ws.next().await.unwrap().unwrap();
        println!("sent / echoed     : {msg:?} / {:?}", echo.to_text().unwrap());
        assert_eq!(echo.to_text().unwrap(), msg);
    }
    // Close, read until the backend's Close has come back and the stream ended, then drop
    // the client's socket: the tunnel ends when both sides have closed, and httpd writes the
    // tunnel's access-log record (101, duration, bytes) when the request ends.
    ws.close(None).await.ok();
    while let Some(Ok(_)) = ws.next().await {}
    drop(ws);
    // The access-log record comes when the request ends; our error-log lines name the client
    // (address and port): the request's, then the hand-over's, which the request thread may
    // write after the relay has already ended the tunnel. Wait for both, a few seconds at most.
    let request = format!("\"GET {path} HTTP/1.1\" 101 ");
    let client =
        |l: &str| l.split("[client ").nth(1).and_then(|c| c.split(']').next()).map(str::to_string);
    let (mut record, mut ours, mut handed_over) = (None, None, false);
    for _ in 0..250 {
        record = httpd.access_log().lines().find(|l| l.contains(&request)).map(str::to_string);
        let log = httpd.error_log();
        ours = log
            .lines()
            .find(|l| l.contains("WST01014") && l.contains(&format!("GET {path} ")))
            .and_then(client);
        handed_over = ours.as_ref().is_some_and(|c| {
            log.lines().any(|l| l.contains("WST02010") && client(l).as_ref() == Some(c))
        });
        if record.is_some() && handed_over {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    println!(
        "tunnelled by      : {}",
        match (ours.is_some(), handed_over) {
            (true, true) => "this module, asynchronously (no request thread held)",
            (true, false) => "this module, in its request thread",
            (false, _) => "not this module (see the error log)",
        }
    );
    match record.as_deref().and_then(describe) {
        Some(text) => println!("access log        : {text}"),
        None => println!(
            "access log        : (no record of the tunnel yet in {}/access_log)",
            httpd.root.display()
        ),
    }
}

/// The demo's access-log line (`%h "%r" %>s %D %I %O`, httpd-test-conf/base.conf.in) in words.
fn describe(line: &str) -> Option<String> {
    let (request, rest) = line.split_once("\" ")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let [status, micros, bytes_in, bytes_out] = f[..] else { return None };
    let ms = micros.parse::<f64>().ok()? / 1000.0;
    Some(format!("{request}\" {status}, {ms:.1} ms from the request to the tunnel's end, {bytes_in} bytes in, {bytes_out} bytes out (handshake included)"))
}
