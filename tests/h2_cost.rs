//! What `H2WebSockets On` costs, measured (for the README). On stock httpd 2.4 a WebSocket
//! over HTTP/2 (RFC 8441) is an h2 stream that mod_http2 runs on one of its h2 workers, in
//! `c2_process`, which ends the stream's output when the handler returns: the tunnel cannot be
//! suspended, so it holds that worker for its whole life (and `ProxyWebsocketAsync` does not
//! apply to it), whereas HTTP/1.1 WebSockets go asynchronous.
//!
//! One child (ServerLimit 1, ThreadsPerChild 25, otherwise Debian's event defaults, see
//! httpd-test-conf/h2_cost.conf.in), mod_http2's default worker limits. For each way of
//! opening h2 WebSockets, on a fresh server: open them one after another, each echoing a
//! message, until a new one gets no 200 within 3 s; then, at that limit, try an HTTP/1.1 GET
//! and an HTTP/1.1 WebSocket on the same server, check that the held ones still echo, close
//! them and time how long until an h2 WebSocket opens again. Then the same child with 500
//! HTTP/1.1 WebSockets. Prints a table.
//!
//!     cargo build --release
//!     cargo test --release --test h2_cost -- --ignored --nocapture

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// A new WebSocket that has no 200 within this has stalled.
const STALL: Duration = Duration::from_secs(3);
/// How long a probe (HTTP/1.1 GET, HTTP/1.1 WebSocket, an echo) may take.
const PROBE: Duration = Duration::from_secs(5);
/// No scenario opens more h2 WebSockets than this.
const CAP: usize = 300;
/// HTTP/1.1 WebSockets for the comparison.
const H1_COUNT: usize = 500;

// ---- a minimal HTTP/2 client: extended CONNECT (RFC 8441), several streams per connection ----

#[derive(Default)]
struct StreamState {
    status: Option<u16>,
    data: Vec<u8>,
    ended: bool,
    reset: Option<u32>,
}

#[derive(Default)]
struct ConnState {
    settings: bool,
    connect_protocol: bool,
    goaway: bool,
    eof: bool,
    streams: HashMap<u32, StreamState>,
}

enum Opened {
    Ok(u32),
    Stalled,
    Refused(String),
}

struct H2 {
    out: mpsc::UnboundedSender<Vec<u8>>,
    st: Arc<Mutex<ConnState>>,
    next: u32,
    https: bool,
    authority: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Streams that carry a live WebSocket.
    open: Vec<u32>,
}

impl Drop for H2 {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn frame(ty: u8, flags: u8, id: u32, payload: &[u8]) -> Vec<u8> {
    let n = payload.len();
    let mut f = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, ty, flags];
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK literal without indexing (RFC 7541 §6.2.2), plain strings under 127 bytes; `index`
/// names a static-table name (< 15), 0 means the name follows.
fn hpack_literal(block: &mut Vec<u8>, index: u8, name: &str, value: &str) {
    block.push(index);
    if index == 0 {
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
    }
    block.push(value.len() as u8);
    block.extend_from_slice(value.as_bytes());
}

fn unpad(p: &[u8], flags: u8) -> &[u8] {
    if flags & 0x8 != 0 && !p.is_empty() {
        let pad = p[0] as usize;
        &p[1..p.len().saturating_sub(pad).max(1)]
    } else {
        p
    }
}

/// `:status` from the first bytes of a response header block: a static-table entry (200 is
/// 0x88 from every encoder we know), or a literal with an indexed name and a plain value;
/// 0 when it is neither (e.g. Huffman-coded).
fn status_of(b: &[u8]) -> u16 {
    match b.first() {
        Some(0x88) => 200,
        Some(0x89) => 204,
        Some(0x8a) => 206,
        Some(0x8b) => 304,
        Some(0x8c) => 400,
        Some(0x8d) => 404,
        Some(0x8e) => 500,
        Some(0x48) | Some(0x08) if b.len() >= 5 && b[1] == 3 => {
            std::str::from_utf8(&b[2..5]).ok().and_then(|s| s.parse().ok()).unwrap_or(0)
        }
        _ => 0,
    }
}

async fn read_frames<R: AsyncRead + Unpin>(
    mut r: R,
    st: Arc<Mutex<ConnState>>,
    out: mpsc::UnboundedSender<Vec<u8>>,
) {
    loop {
        let mut head = [0u8; 9];
        if r.read_exact(&mut head).await.is_err() {
            break;
        }
        let len = ((head[0] as usize) << 16) | ((head[1] as usize) << 8) | head[2] as usize;
        let (ty, flags) = (head[3], head[4]);
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut p = vec![0u8; len];
        if r.read_exact(&mut p).await.is_err() {
            break;
        }
        let mut s = st.lock().unwrap();
        match ty {
            0 => {
                if len > 0 {
                    // Give back the credit at once, on the connection and the stream.
                    let inc = (len as u32).to_be_bytes();
                    let _ = out.send(frame(8, 0, 0, &inc));
                    let _ = out.send(frame(8, 0, id, &inc));
                }
                let e = s.streams.entry(id).or_default();
                e.data.extend_from_slice(unpad(&p, flags));
                e.ended |= flags & 1 != 0;
            }
            1 => {
                let mut b = unpad(&p, flags);
                if flags & 0x20 != 0 && b.len() >= 5 {
                    b = &b[5..];
                }
                let e = s.streams.entry(id).or_default();
                if e.status.is_none() {
                    e.status = Some(status_of(b));
                }
                e.ended |= flags & 1 != 0;
            }
            3 if p.len() >= 4 => {
                s.streams.entry(id).or_default().reset =
                    Some(u32::from_be_bytes([p[0], p[1], p[2], p[3]]));
            }
            4 if flags & 1 == 0 => {
                for kv in p.chunks_exact(6) {
                    // SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §3)
                    if u16::from_be_bytes([kv[0], kv[1]]) == 8 {
                        s.connect_protocol = u32::from_be_bytes([kv[2], kv[3], kv[4], kv[5]]) == 1;
                    }
                }
                s.settings = true;
                let _ = out.send(frame(4, 1, 0, &[]));
            }
            6 if flags & 1 == 0 => {
                let _ = out.send(frame(6, 1, 0, &p));
            }
            7 => s.goaway = true,
            _ => {}
        }
    }
    st.lock().unwrap().eof = true;
}

async fn write_frames<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    while let Some(f) = rx.recv().await {
        if w.write_all(&f).await.is_err() {
            return;
        }
        while let Ok(f) = rx.try_recv() {
            if w.write_all(&f).await.is_err() {
                return;
            }
        }
        if w.flush().await.is_err() {
            return;
        }
    }
}

impl H2 {
    /// A new HTTP/2 connection (h2c prior knowledge, or TLS with ALPN h2 when `pki` is given)
    /// whose server SETTINGS (with extended CONNECT enabled) arrived within `t`.
    async fn connect(port: u16, pki: Option<&wskit::Pki>, t: Duration) -> Result<H2, String> {
        let fut = async {
            let tcp = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
            tcp.set_nodelay(true).unwrap();
            let c = match pki {
                None => Self::start(tcp, false, port),
                Some(pki) => {
                    let connector = tokio_rustls::TlsConnector::from(pki.client_config(&[b"h2"]));
                    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                    let s = connector.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
                    if s.get_ref().1.alpn_protocol() != Some(b"h2") {
                        return Err("the server did not choose h2".to_string());
                    }
                    Self::start(s, true, port)
                }
            };
            // Longer than the outer limit, so that a connection never served reads the same
            // over TLS and cleartext (the outer timeout's message).
            let settings = c
                .wait(t + Duration::from_secs(1), |s| {
                    (s.settings || s.eof).then_some(s.connect_protocol)
                })
                .await;
            match settings {
                Some(true) => Ok(c),
                Some(false) => {
                    Err("no SETTINGS_ENABLE_CONNECT_PROTOCOL (or connection closed)".to_string())
                }
                None => Err("no SETTINGS".to_string()),
            }
        };
        match tokio::time::timeout(t, fut).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "not served: no {} within {t:?}",
                if pki.is_some() { "TLS handshake/SETTINGS" } else { "SETTINGS" }
            )),
        }
    }

    fn start<T: AsyncRead + AsyncWrite + Send + 'static>(io: T, https: bool, port: u16) -> H2 {
        let (r, w) = tokio::io::split(io);
        let (out, rx) = mpsc::unbounded_channel();
        let st = Arc::new(Mutex::new(ConnState::default()));
        let mut first = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        // SETTINGS: ENABLE_PUSH 0, INITIAL_WINDOW_SIZE 1 MiB.
        let mut settings = vec![0, 2, 0, 0, 0, 0, 0, 4];
        settings.extend_from_slice(&(1u32 << 20).to_be_bytes());
        first.extend(frame(4, 0, 0, &settings));
        out.send(first).unwrap();
        let tasks = vec![
            tokio::spawn(write_frames(w, rx)),
            tokio::spawn(read_frames(r, st.clone(), out.clone())),
        ];
        H2 {
            out,
            st,
            next: 1,
            https,
            authority: format!("localhost:{port}"),
            tasks,
            open: Vec::new(),
        }
    }

    async fn wait<T>(
        &self,
        t: Duration,
        mut f: impl FnMut(&mut ConnState) -> Option<T>,
    ) -> Option<T> {
        let end = Instant::now() + t;
        loop {
            let v = {
                let mut s = self.st.lock().unwrap();
                f(&mut s)
            };
            if v.is_some() {
                return v;
            }
            if Instant::now() >= end {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// An extended CONNECT for a WebSocket at `path`; a stream without a 200 within `t` is
    /// cancelled (RST_STREAM CANCEL) and reported as stalled.
    async fn open_ws(&mut self, path: &str, t: Duration) -> Opened {
        let id = self.next;
        self.next += 2;
        let mut b = Vec::new();
        hpack_literal(&mut b, 2, "", "CONNECT");
        b.push(if self.https { 0x87 } else { 0x86 });
        hpack_literal(&mut b, 4, "", path);
        hpack_literal(&mut b, 1, "", &self.authority.clone());
        hpack_literal(&mut b, 0, ":protocol", "websocket");
        hpack_literal(&mut b, 0, "sec-websocket-version", "13");
        let _ = self.out.send(frame(1, 0x4, id, &b));
        let got = self
            .wait(t, |s| {
                if let Some(st) = s.streams.get(&id) {
                    if let Some(code) = st.reset {
                        return Some(Err(format!("RST_STREAM {code}")));
                    }
                    if let Some(status) = st.status {
                        return Some(if status == 200 {
                            Ok(())
                        } else {
                            Err(format!("status {status}"))
                        });
                    }
                }
                (s.eof || s.goaway).then(|| Err("connection closed".to_string()))
            })
            .await;
        match got {
            Some(Ok(())) => {
                self.open.push(id);
                Opened::Ok(id)
            }
            Some(Err(e)) => Opened::Refused(e),
            None => {
                let _ = self.out.send(frame(3, 0, id, &8u32.to_be_bytes()));
                Opened::Stalled
            }
        }
    }

    /// One text message out on stream `id`, its echo back within `t`.
    async fn echo(&self, id: u32, msg: &str, t: Duration) -> bool {
        let _ = self.out.send(frame(0, 0, id, &wskit::raw::client_frame(1, msg.as_bytes())));
        let got = self
            .wait(t, |s| {
                let st = s.streams.get_mut(&id)?;
                if let Some(f) = wskit::raw::take_frame(&mut st.data) {
                    let text = f.fin && f.rsv == 0 && f.opcode == 1 && !f.masked;
                    return Some(text && f.payload == msg.as_bytes());
                }
                (st.ended || st.reset.is_some()).then_some(false)
            })
            .await;
        got == Some(true)
    }

    /// Close 1000 and END_STREAM on every WebSocket of this connection.
    fn close_all(&self) {
        for &id in &self.open {
            let _ = self.out.send(frame(
                0,
                0,
                id,
                &wskit::raw::client_frame(8, &1000u16.to_be_bytes()),
            ));
            let _ = self.out.send(frame(0, 1, id, &[]));
        }
    }

    fn all_ended(&self) -> bool {
        let s = self.st.lock().unwrap();
        s.eof
            || self
                .open
                .iter()
                .all(|id| s.streams.get(id).is_some_and(|st| st.ended || st.reset.is_some()))
    }
}

// ---- probes ----

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// A plain HTTP/1.1 GET of a static file: its time to a 200, or why not.
async fn probe_get(port: u16) -> Result<Duration, String> {
    let start = Instant::now();
    let fut = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
        s.write_all(b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(2).any(|w| w == b"\r\n") {
            let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed".to_string());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        if buf.starts_with(b"HTTP/1.1 200") {
            Ok(start.elapsed())
        } else {
            Err(String::from_utf8_lossy(&buf).lines().next().unwrap_or("").to_string())
        }
    };
    tokio::time::timeout(PROBE, fut)
        .await
        .unwrap_or_else(|_| Err(format!("no answer in {} s", PROBE.as_secs())))
}

/// An HTTP/1.1 WebSocket through the ws:// route: its time to a 101 and one echo; the socket
/// is returned so that the caller decides when it closes.
async fn probe_h1_ws(url: &str) -> (Result<Duration, String>, Option<Ws>) {
    let start = Instant::now();
    let fut = async {
        let (mut ws, resp) = connect(url).await.map_err(|e| e.to_string())?;
        if resp.status() != 101 {
            return Err(format!("status {}", resp.status()));
        }
        let m = Message::text("probe over HTTP/1.1");
        ws.send(m.clone()).await.map_err(|e| e.to_string())?;
        match ws.next().await {
            Some(Ok(got)) if got == m => Ok(ws),
            other => Err(format!("echo: {other:?}")),
        }
    };
    match tokio::time::timeout(PROBE, fut).await {
        Ok(Ok(ws)) => (Ok(start.elapsed()), Some(ws)),
        Ok(Err(e)) => (Err(e), None),
        Err(_) => (Err(format!("no 101+echo in {} s", PROBE.as_secs())), None),
    }
}

/// A new h2 connection with one WebSocket that echoes: the time it took, and the connection.
async fn probe_h2_ws(
    port: u16,
    pki: Option<&wskit::Pki>,
    path: &str,
) -> (Result<Duration, String>, Option<H2>) {
    let start = Instant::now();
    let mut c = match H2::connect(port, pki, PROBE).await {
        Ok(c) => c,
        Err(e) => return (Err(e), None),
    };
    let left = PROBE.saturating_sub(start.elapsed());
    match c.open_ws(path, left).await {
        Opened::Ok(id) => {
            if c.echo(id, "probe over h2", PROBE).await {
                (Ok(start.elapsed()), Some(c))
            } else {
                (Err("no echo".to_string()), Some(c))
            }
        }
        Opened::Stalled => (Err(format!("no 200 in {} s", PROBE.as_secs())), None),
        Opened::Refused(e) => (Err(e), None),
    }
}

fn show(r: &Result<Duration, String>) -> String {
    match r {
        Ok(d) => format!("served, {}", ms(*d)),
        Err(e) => format!("NOT served ({e})"),
    }
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0)
}

/// The one child (ServerLimit 1), once it is there: httpd listens before it forks its
/// children, so a server that just answered its port may have none yet.
fn only_child(h: &Httpd) -> u32 {
    let end = Instant::now() + Duration::from_secs(5);
    let mut kids = h.children();
    while kids.is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
        kids = h.children();
    }
    assert_eq!(kids.len(), 1, "ServerLimit 1 must give exactly one child: {kids:?}");
    kids[0]
}

// ---- the scenarios ----

struct Row {
    scenario: String,
    held: String,
    stall: String,
    threads: String,
    get: String,
    h1_ws: String,
    extra: String,
    still_echo: String,
    freed: String,
}

struct Site {
    _dir: TempDir,
    pki: wskit::Pki,
    _b: Backend,
    h: Httpd,
}

fn site(name: &str) -> Site {
    let dir = TempDir::new(name);
    let pki = wskit::Pki::generate(&dir.0);
    let b = Backend::start(name);
    let h = Httpd::start(
        Config::new("h2_cost.conf.in")
            .ports(1)
            .var("BACKEND", format!("127.0.0.1:{}", b.port()))
            .var("SERVERCERT", pki.server.cert_file.display())
            .var("SERVERKEY", pki.server.key_file.display()),
    );
    Site { _dir: dir, pki, _b: b, h }
}

/// Opens h2 WebSockets on `port` until a new one stalls: up to `per_conn` on each connection
/// (a stall on a connection that already holds some moves on to a new connection; a stall on
/// a fresh one is the child's limit).
async fn h2_scenario(label: &str, slug: &str, tls: bool, per_conn: usize) -> Row {
    let s = site("h2cost");
    let h = &s.h;
    let pki = tls.then_some(&s.pki);
    let port = if tls { h.ports[0] } else { h.port };
    let pid = only_child(h);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let threads_idle = threads(pid);
    let mut conns: Vec<H2> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    let mut held = 0usize;
    let started = Instant::now();
    let stall = 'outer: loop {
        if held >= CAP {
            break format!("(stopped at the cap of {CAP})");
        }
        let c = match H2::connect(port, pki, STALL).await {
            Ok(c) => c,
            Err(e) => break format!("new connection {e}"),
        };
        conns.push(c);
        counts.push(0);
        loop {
            let k = conns.len();
            let n = counts[k - 1];
            if n == per_conn {
                continue 'outer;
            }
            let path = format!("/ws2/{slug}-c{k}-s{n}");
            let c = conns.last_mut().unwrap();
            match c.open_ws(&path, STALL).await {
                Opened::Ok(id) => {
                    assert!(
                        c.echo(id, &format!("hello {held}"), PROBE).await,
                        "{label}: WebSocket #{held} did not echo\n{}",
                        h.error_log()
                    );
                    counts[k - 1] += 1;
                    held += 1;
                }
                Opened::Stalled if n > 0 => continue 'outer,
                Opened::Stalled => {
                    conns.pop();
                    counts.pop();
                    break 'outer format!(
                        "new connection served (SETTINGS), but its stream got no 200 in {} s",
                        STALL.as_secs()
                    );
                }
                Opened::Refused(e) => panic!("{label}: {path} refused: {e}\n{}", h.error_log()),
            }
        }
    };
    let fill_time = started.elapsed();
    let threads_full = threads(pid);
    // At the limit: is plain HTTP/1.1 still served, and an HTTP/1.1 WebSocket?
    let get = probe_get(h.port).await;
    let (h1, h1_ws) = probe_h1_ws(&h.url("/ws2/h1-probe")).await;
    drop(h1_ws);
    // The held ones are all still alive.
    let mut ok = 0;
    for c in &conns {
        for &id in &c.open {
            ok += c.echo(id, "still there?", PROBE).await as usize;
        }
    }
    assert_eq!(ok, held, "{label}: held WebSockets stopped echoing\n{}", h.error_log());
    // Close them all politely, then time until a new h2 WebSocket opens again.
    for c in &conns {
        c.close_all();
    }
    let closing = Instant::now();
    while !conns.iter().all(|c| c.all_ended()) && closing.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(conns);
    let freed = loop {
        let (r, c) = probe_h2_ws(port, pki, "/ws2/after").await;
        if let Some(c) = c {
            c.close_all();
        }
        match r {
            Ok(_) => break format!("served, {} after the close", ms(closing.elapsed())),
            Err(e) if closing.elapsed() > Duration::from_secs(20) => {
                break format!("not within 20 s ({e})")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert_eq!(only_child(h), pid, "{label}: the child changed");
    let per = if per_conn == 1 {
        format!("{held} ({} connections x 1)", counts.len())
    } else {
        format!(
            "{held} (per connection: {})",
            counts.iter().map(|n| n.to_string()).collect::<Vec<_>>().join("+")
        )
    };
    println!(
        "{label}: {per} in {}; next: {stall}; GET: {}; HTTP/1.1 WebSocket: {}",
        ms(fill_time),
        show(&get),
        show(&h1)
    );
    let row = Row {
        scenario: label.to_string(),
        held: per,
        stall,
        threads: format!("{threads_idle} -> {threads_full}"),
        get: show(&get),
        h1_ws: show(&h1),
        extra: String::new(),
        still_echo: format!("{ok}/{held}"),
        freed,
    };
    let log = s.h.stop();
    if let Some(line) = log.lines().find(|l| l.contains("h2_workers: created with")) {
        println!(
            "({label}) mod_http2's error_log line: {}",
            line.split("] ").last().unwrap_or(line)
        );
    }
    row
}

/// The same child with HTTP/1.1 WebSockets on the same route: they go asynchronous.
async fn h1_scenario() -> Row {
    let s = site("h1cost");
    let h = &s.h;
    let pid = only_child(h);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let threads_idle = threads(pid);
    let started = Instant::now();
    let mut all: Vec<Ws> = Vec::with_capacity(H1_COUNT);
    for i in 0..H1_COUNT {
        let (mut ws, resp) = connect(&h.url(&format!("/ws2/h1-{i}")))
            .await
            .unwrap_or_else(|e| panic!("HTTP/1.1 WebSocket #{i}: {e}\n{}", h.error_log()));
        assert_eq!(resp.status(), 101);
        let m = Message::text(format!("hello {i}"));
        assert_eq!(echo(&mut ws, m.clone()).await, m);
        all.push(ws);
    }
    let fill_time = started.elapsed();
    let handed = wait_count(h, "WST02010", H1_COUNT, Duration::from_secs(10));
    let threads_full = threads(pid);
    let get = probe_get(h.port).await;
    let (h1, h1_ws) = probe_h1_ws(&h.url("/ws2/h1-probe")).await;
    drop(h1_ws);
    let (h2, h2c) = probe_h2_ws(h.ports[0], Some(&s.pki), "/ws2/h2-probe").await;
    if let Some(c) = h2c {
        c.close_all();
    }
    let mut ok = 0;
    for (i, ws) in all.iter_mut().enumerate() {
        let m = Message::text(format!("still there {i}?"));
        ok += (echo(ws, m.clone()).await == m) as usize;
    }
    assert_eq!(ok, H1_COUNT, "HTTP/1.1 WebSockets stopped echoing");
    assert!(
        handed >= H1_COUNT,
        "only {handed} of {H1_COUNT} handed to the asynchronous relay (WST02010)"
    );
    for ws in all.iter_mut() {
        let _ = ws.close(None).await;
    }
    assert_eq!(only_child(h), pid, "the child changed");
    println!("HTTP/1.1: {H1_COUNT} in {}, {handed} handed over; GET: {}; HTTP/1.1 WebSocket: {}; h2 WebSocket: {}", ms(fill_time), show(&get), show(&h1), show(&h2));
    drop(all);
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.h.stop();
    Row {
        scenario: "HTTP/1.1, 1 WebSocket per connection".to_string(),
        held: format!("{H1_COUNT} of {H1_COUNT} opened ({handed} asynchronous)"),
        stall: "none".to_string(),
        threads: format!("{threads_idle} -> {threads_full}"),
        get: show(&get),
        h1_ws: show(&h1),
        extra: format!("{} (while holding the {H1_COUNT})", show(&h2)),
        still_echo: format!("{ok}/{H1_COUNT}"),
        freed: "-".to_string(),
    }
}

#[ignore = "a measurement for the README (about a minute): cargo test --release --test h2_cost -- --ignored --nocapture"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_h2_websockets_on_costs_per_child() {
    if mpm() != "event" {
        eprintln!("h2_cost measures Debian's default MPM (event); WST_MPM={} skipped", mpm());
        return;
    }
    let threads_per_child = 25;
    let (minw, maxw) = (threads_per_child, std::cmp::max(4, 3 * threads_per_child / 2));
    println!(
        "mod_http2 defaults for ThreadsPerChild {threads_per_child} (h2_config.c h2_get_workers_config): \
         H2MinWorkers = ThreadsPerChild = {minw}, H2MaxWorkers = max(4, 3*{minw}/2) = {maxw}; \
         at most 6 streams of one connection run at once at first (h2_mplx.c processing_limit)"
    );
    let mut rows = Vec::new();
    rows.push(h2_scenario("h2 (TLS), 1 WebSocket per connection", "h2-one", true, 1).await);
    rows.push(h2_scenario("h2c, 1 WebSocket per connection", "h2c-one", false, 1).await);
    rows.push(
        h2_scenario("h2 (TLS), many WebSockets per connection", "h2-many", true, usize::MAX).await,
    );
    rows.push(h1_scenario().await);

    println!("\nOne child: ServerLimit 1, ThreadsPerChild 25, MaxRequestWorkers 25, otherwise Debian's event defaults;");
    println!("mod_http2 defaults (H2MinWorkers {minw}, H2MaxWorkers {maxw}); H2WebSockets On; ProxyWebsocketAsync On.\n");
    println!("| scenario | WebSockets held, each echoing | the next one | child threads (idle -> full) | HTTP/1.1 GET at the limit | HTTP/1.1 WebSocket at the limit | held still echo | a new h2 WebSocket (h2 rows: after closing the held ones) |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        let freed = if r.extra.is_empty() { r.freed.clone() } else { r.extra.clone() };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.scenario, r.held, r.stall, r.threads, r.get, r.h1_ws, r.still_echo, freed
        );
    }
}
