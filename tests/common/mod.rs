//! Shared helpers for the integration tests: a real WebSocket client (tokio-tungstenite)
//! talking to a real httpd that loaded our module.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use wskit::{Backend, Config, Httpd};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
/// httpd's answer to a WebSocket handshake.
pub type Handshake = http::Response<Option<Vec<u8>>>;

pub fn ws_config() -> WebSocketConfig {
    let mut c = WebSocketConfig::default();
    c.max_message_size = Some(64 << 20);
    c.max_frame_size = Some(64 << 20);
    c
}

/// Opens a WebSocket through httpd; returns the stream and the 101 response.
pub async fn connect(url: &str) -> Result<(Ws, Handshake), tokio_tungstenite::tungstenite::Error> {
    let req = url.into_client_request()?;
    tokio::time::timeout(
        Duration::from_secs(20),
        tokio_tungstenite::connect_async_with_config(req, Some(ws_config()), true),
    )
    .await
    .expect("handshake timed out")
}

/// One message out, its echo back.
pub async fn echo(ws: &mut Ws, msg: Message) -> Message {
    ws.send(msg).await.unwrap();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("echo timed out")
            .unwrap()
            .unwrap();
        if m.is_text() || m.is_binary() || m.is_close() {
            return m;
        }
    }
}

/// Connects, checks one text round trip, closes; returns the backend's name from the 101.
pub async fn round_trip(url: &str) -> String {
    let (mut ws, resp) = connect(url).await.unwrap_or_else(|e| panic!("connect {url}: {e}"));
    assert_eq!(resp.status(), 101);
    let got = echo(&mut ws, Message::text("hello through httpd")).await;
    assert_eq!(got, Message::text("hello through httpd"));
    ws.close(None).await.ok();
    resp.headers().get("x-backend").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

/// `n` short tunnels, eight at a time: each is opened by `open` (given its worker's number,
/// 0 to 7), echoes one text message and ends with the closing handshake.
pub async fn churn<F, Fut>(n: usize, open: F)
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Ws> + Send,
{
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let open = open.clone();
            // Worker w's share of the n; the first n % 8 take one more.
            let share = n / 8 + usize::from(w < n % 8);
            tokio::spawn(async move {
                for _ in 0..share {
                    let mut ws = open(w).await;
                    let m = Message::text("x");
                    assert_eq!(echo(&mut ws, m.clone()).await, m);
                    ws.close(None).await.unwrap();
                    while let Some(Ok(_)) = ws.next().await {}
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
}

/// Opens `n` tunnels with `open`, `at_once` handshakes at a time, each echoing once; all of
/// them must open.
pub async fn open_live<F, Fut>(n: usize, at_once: usize, open: F) -> Vec<Ws>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(Ws, Handshake), tokio_tungstenite::tungstenite::Error>>
        + Send,
{
    let mut all = Vec::with_capacity(n);
    while all.len() < n {
        let tasks: Vec<_> = (all.len()..n.min(all.len() + at_once))
            .map(|i| {
                let open = open.clone();
                tokio::spawn(async move {
                    let (mut ws, _) = open().await.unwrap_or_else(|e| panic!("tunnel {i}: {e}"));
                    let m = Message::text("live");
                    assert_eq!(echo(&mut ws, m.clone()).await, m);
                    ws
                })
            })
            .collect();
        for t in tasks {
            all.push(t.await.unwrap());
        }
    }
    all
}

/// Ends each of `tunnels` with the closing handshake: a Close, then read to the server's.
pub async fn close_all(tunnels: impl IntoIterator<Item = Ws>) {
    for mut ws in tunnels {
        ws.close(None).await.ok();
        while let Some(Ok(_)) = ws.next().await {}
    }
}

/// How many of `tunnels` the server has ended: each gets a second to show a Close, an error or
/// the end of its stream.
pub async fn count_ended(tunnels: Vec<Ws>) -> usize {
    let mut ended = 0;
    for mut ws in tunnels {
        if let Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) =
            tokio::time::timeout(Duration::from_secs(1), ws.next()).await
        {
            ended += 1;
        }
    }
    ended
}

/// The HTTP status of a failed WebSocket handshake.
pub async fn refused_status(url: &str) -> u16 {
    match connect(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("{url}: unexpected error {e}"),
        Ok(_) => panic!("{url}: handshake unexpectedly succeeded"),
    }
}

/// Opens a WebSocket over TLS to httpd (wss://), trusting only the test CA.
pub async fn connect_tls(
    url: &str,
    pki: &wskit::Pki,
) -> Result<(Ws, Handshake), tokio_tungstenite::tungstenite::Error> {
    let req = url.into_client_request()?;
    let connector = tokio_tungstenite::Connector::Rustls(pki.client_config(&[b"http/1.1"]));
    tokio::time::timeout(
        Duration::from_secs(20),
        tokio_tungstenite::connect_async_tls_with_config(
            req,
            Some(ws_config()),
            true,
            Some(connector),
        ),
    )
    .await
    .expect("handshake timed out")
}

/// A TLS connection to httpd on `port` (SNI `localhost`), for exact bytes over TLS.
pub async fn tls_stream(
    port: u16,
    pki: &wskit::Pki,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    tls_over(tcp, pki, alpn).await
}

/// TLS to httpd (SNI `localhost`) over a connection the caller made.
pub async fn tls_over(
    tcp: TcpStream,
    pki: &wskit::Pki,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(pki.client_config(alpn));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// A raw TLS connection upgraded at `path` (the backend's raw modes: bytes, not frames), and
/// the bytes that came right behind the 101.
pub async fn tls_tunnel(
    port: u16,
    pki: &wskit::Pki,
    path: &str,
) -> (tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>) {
    let mut s = tls_stream(port, pki, &[b"http/1.1"]).await;
    let after = upgrade(&mut s, path).await;
    (s, after)
}

/// Asks for an upgrade at `path` on a TLS connection and reads the 101 (panics on anything
/// else); returns the bytes that came right behind it.
pub async fn upgrade(s: &mut tokio_rustls::client::TlsStream<TcpStream>, path: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(wskit::raw::handshake(path, "").as_bytes()).await.unwrap();
    // rustls may keep the record until flushed.
    s.flush().await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "{path}: closed before the 101: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
    let p = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(buf.starts_with(b"HTTP/1.1 101"), "{path}: {}", String::from_utf8_lossy(&buf));
    buf.split_off(p)
}

/// An httpd with TLS at its front end and a private PKI, before a ws:// backend (`b`) and a
/// wss:// one (`tb`): the template `conf` gets @BACKEND@, @TLSBACKEND@, @CA@, @SERVERCERT@ and
/// @SERVERKEY@, and `more` adds the rest (extra ports, the test's own variables).
pub struct TlsSite {
    pub _dir: TempDir,
    pub pki: wskit::Pki,
    pub b: Backend,
    pub tb: Backend,
    pub h: Httpd,
}

pub fn tls_site(name: &str, conf: &str, more: impl FnOnce(Config) -> Config) -> TlsSite {
    let dir = TempDir::new(name);
    let pki = wskit::Pki::generate(&dir.0);
    let b = Backend::start(name);
    let tb = Backend::start_tls(&format!("{name}-tls"), &pki.server);
    let h = Httpd::start(more(
        Config::new(conf)
            .var("BACKEND", format!("127.0.0.1:{}", b.port()))
            .var("TLSBACKEND", tb.port())
            .var("CA", pki.ca_file.display())
            .var("SERVERCERT", pki.server.cert_file.display())
            .var("SERVERKEY", pki.server.key_file.display()),
    ));
    TlsSite { _dir: dir, pki, b, tb, h }
}

/// Payload `i` of `size` bytes: distinct per message so that reordering shows.
pub fn payload(size: usize, i: u8) -> Vec<u8> {
    (0..size).map(|j| (j as u8).wrapping_mul(31).wrapping_add(i)).collect()
}

/// A directory of this test process, removed at drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        TempDir(std::env::temp_dir().join(format!("wst-{what}-{}-{n}", std::process::id())))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The MPM the servers of this run use (`$WST_MPM`, default event).
pub fn mpm() -> String {
    std::env::var("WST_MPM").unwrap_or_else(|_| "event".into())
}

/// How many times `needle` occurs in the server's error log.
pub fn count(h: &Httpd, needle: &str) -> usize {
    h.error_log().matches(needle).count()
}

/// Waits up to `t` for `needle` to occur `n` times in the error log; returns the count.
pub fn wait_count(h: &Httpd, needle: &str, n: usize, t: Duration) -> usize {
    let end = std::time::Instant::now() + t;
    loop {
        let c = count(h, needle);
        if c >= n || std::time::Instant::now() > end {
            return c;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `/server-status?auto`: our totals, and one map per child line.
pub fn status_auto(port: u16) -> (BTreeMap<String, u64>, Vec<BTreeMap<String, u64>>) {
    let (resp, body) = wskit::raw::get(port, "/server-status?auto", "");
    assert_eq!(resp.status, 200, "{body}");
    let mut totals = BTreeMap::new();
    let mut children = Vec::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("WebSocketChild: ") {
            children.push(
                // Numbers only (async_per_thread is a list: see `per_thread`).
                rest.split(' ')
                    .filter_map(|kv| kv.split_once('='))
                    .filter_map(|(k, v)| v.parse().ok().map(|v| (k.to_string(), v)))
                    .collect(),
            );
        } else if let Some((k, v)) = line
            .split_once(": ")
            .filter(|(k, _)| k.starts_with("WebSocket") || k.starts_with("Conns"))
        {
            totals.insert(k.to_string(), v.parse().unwrap());
        }
    }
    (totals, children)
}

/// Polls `/server-status?auto` until `f` holds of its totals and children (counts change a
/// moment after a request: when relays notice, when a tunnel leaves its request thread), at
/// most 5 s; returns them as they are then.
pub fn wait_auto(
    port: u16,
    f: impl Fn(&BTreeMap<String, u64>, &[BTreeMap<String, u64>]) -> bool,
) -> (BTreeMap<String, u64>, Vec<BTreeMap<String, u64>>) {
    let end = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (t, c) = status_auto(port);
        if f(&t, &c) || std::time::Instant::now() > end {
            return (t, c);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `/server-status?auto`: each child's asynchronous tunnels per relay thread
/// (`async_per_thread=`), empty before its first relay thread.
pub fn per_thread(port: u16) -> Vec<Vec<u64>> {
    let (resp, body) = wskit::raw::get(port, "/server-status?auto", "");
    assert_eq!(resp.status, 200, "{body}");
    body.lines()
        .filter(|l| l.starts_with("WebSocketChild: "))
        .filter_map(|l| l.split(' ').find_map(|kv| kv.strip_prefix("async_per_thread=")))
        .map(|v| v.split(',').filter_map(|n| n.parse().ok()).collect())
        .collect()
}

/// CPU time (user and system, in clock ticks) of each thread of process `pid` whose name
/// starts with `prefix`, by name.
pub fn thread_cpu(pid: u32, prefix: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let dir = e.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default().trim().to_string();
        if !name.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // Fields after the name (which ends with ')'): state is field 3, utime 14, stime 15.
        let rest: Vec<&str> =
            stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
        let ticks = |i: usize| rest.get(i - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        out.insert(name, ticks(14) + ticks(15));
    }
    out
}
