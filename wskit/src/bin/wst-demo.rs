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
ws.onopen = () => log("open: " + ws.url);
ws.onmessage = e => log("echo: " + e.data);
ws.onclose = e => log("closed: " + e.code);
</script>
"#;

#[tokio::main]
async fn main() {
    let once = std::env::args().any(|a| a == "--once");
    let backend = Backend::start("demo-echo");
    println!("echo backend      : ws://{}", backend.addr);
    let httpd = Httpd::start(Config::new("demo.conf.in").var("BACKEND", backend.addr));
    std::fs::write(httpd.root.join("htdocs/index.html"), PAGE).unwrap();
    println!("httpd             : pid {}, ServerRoot {}", httpd.pid(), httpd.root.display());
    println!("module            : {}", wskit::httpd::our_module().display());
    println!("configuration     : ProxyPass \"/ws2/\" \"ws://{}/\"", backend.addr);
    let url = httpd.url("/ws2/");
    let (mut ws, resp) = tokio_tungstenite::connect_async(url.as_str()).await.expect("WebSocket handshake through httpd");
    println!("handshake         : {} {:?}", resp.status(), resp.headers().get("upgrade").unwrap());
    for msg in ["hello from the demo", "a second message"] {
        ws.send(Message::text(msg)).await.unwrap();
        let echo = ws.next().await.unwrap().unwrap();
        println!("sent / echoed     : {msg:?} / {:?}", echo.to_text().unwrap());
        assert_eq!(echo.to_text().unwrap(), msg);
    }
    ws.close(None).await.ok();
    // httpd writes the access-log line when the tunnel has ended.
    for _ in 0..100 {
        if httpd.access_log().contains(" 101 ") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    println!("access log        : {}", httpd.access_log().trim());
    println!();
    println!("Try it yourself:  {url}");
    println!("   in a browser:  http://127.0.0.1:{}/", httpd.port);
    println!("   with a client:  websocat {url}   (or any WebSocket client)");
    if once {
        httpd.stop();
        return;
    }
    println!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c().await.ok();
    httpd.stop();
    println!("stopped.");
}
