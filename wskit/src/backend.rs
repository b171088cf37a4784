//! A real WebSocket backend with scripted behaviours, chosen by the request path, so tests can
//! put the module in front of every kind of answer. It records every request head it receives.
//!
//! | path contains       | behaviour |
//! | ------------------- | --------- |
//! | (anything else)     | WebSocket echo (tungstenite, RFC 6455), or `200 plain http from NAME` (then close) without Upgrade |
//! | `/status/NNN`       | answers NNN with a body, keep-alive; records later requests on the same connection |
//! | `/wrong101`         | 101 with `Upgrade: h2c` |
//! | `/noupgrade101`     | 101 without `Upgrade` |
//! | `/close`            | closes without answering |
//! | `/silent`           | never answers |
//! | `/burst`            | 101 and a text frame in the same write, then echo |
//! | `/whoami`           | 101, a text frame `backend NAME`, then echo |
//! | `/send-masked`      | 101, a masked text frame (which a server must never send), then echo |
//! | `/deflate`          | echo with permessage-deflate (RFC 7692) when the client offers it: every message echoed compressed, every compressed one received recorded |
//! | `/ping-client`      | 101, a Ping `backend-ping` of its own, then echo (Pongs are recorded) |
//! | `/raw-echo`         | 101 for whatever was asked, then echoes raw bytes; FIN after the client's FIN |
//! | `/raw-reframe-echo` | 101, then echoes each client frame as a server's (unmasked) frame of the same total length: its payload is the mask key and the masked payload, as they came |
//! | `/raw-count`        | 101, reads to EOF, answers `got N bytes`, closes |
//! | `/raw-fin-first`    | 101, sends `bye` and FIN, then counts what still arrives (recorded) |
//! | `/raw-rst`          | 101, waits for one byte, then resets the connection |
//! | `/raw-hold`         | 101, reads until EOF, records when the EOF came |
//! | `/raw-flood-N`      | 101, writes N bytes (as fast as the client takes them), then FIN |
//! | `/raw-deaf`         | 101, then never reads: records when the last byte came and when the proxy ended the connection |

use crate::raw::header;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

/// Something the backend saw.
#[derive(Debug, Clone)]
pub enum Event {
    /// A request head, verbatim.
    Request(String),
    /// `/raw-fin-first`: bytes received after the backend's own FIN.
    AfterFin(usize),
    /// `/raw-hold`: the client side ended.
    Eof(Instant),
    /// A WebSocket echo received a Close frame with this code (None: no code).
    Close(Option<u16>),
    /// A WebSocket echo received a Pong with this payload.
    Pong(Vec<u8>),
    /// `/deflate`: a compressed message came, `wire` bytes in `frames` frames, `plain` bytes
    /// once inflated.
    Inflated { wire: usize, frames: usize, plain: usize },
    /// `/raw-deaf`: the request's path, when bytes last moved on the connection (a queue of
    /// its socket or of the proxy's changed) and when the proxy's end of it came (a FIN or a
    /// reset).
    Deaf { path: String, last_byte: Instant, closed: Instant },
}

#[derive(Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    pub name: String,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Backend {
    /// Starts a backend on a free loopback port, on a runtime thread of its own that lives
    /// as long as the test process (usable from sync and async tests alike).
    pub fn start(name: &str) -> Backend {
        Self::start_with(name, None)
    }

    /// Starts a `wss://` backend: the same behaviours behind TLS with `identity`'s certificate.
    pub fn start_tls(name: &str, identity: &crate::tls::Identity) -> Backend {
        Self::start_with(name, Some(tokio_rustls::TlsAcceptor::from(identity.server_config())))
    }

    fn start_with(name: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> Backend {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let (ev, nm) = (events.clone(), name.to_string());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                loop {
                    let Ok((sock, _)) = listener.accept().await else { continue };
                    let (ev, nm, tls) = (ev.clone(), nm.clone(), tls.clone());
                    tokio::spawn(async move {
                        match tls {
                            None => serve(sock, ev, nm).await.ok(),
                            // A failed handshake (a client that rejected our certificate) is
                            // simply a connection that never makes a request.
                            Some(acceptor) => match acceptor.accept(sock).await {
                                Ok(tls) => serve(tls, ev, nm).await.ok(),
                                Err(_) => None,
                            },
                        };
                    });
                }
            });
        });
        Backend { addr, name: name.to_string(), events }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// Forgets what was seen so far.
    pub fn clear_events(&self) {
        self.events.lock().unwrap().clear();
    }

    /// The request heads received so far.
    pub fn requests(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| if let Event::Request(h) = e { Some(h) } else { None })
            .collect()
    }

    /// `/deflate`: the compressed messages received so far, as (bytes on the wire, frames,
    /// bytes inflated).
    pub fn inflated(&self) -> Vec<(usize, usize, usize)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Inflated { wire, frames, plain } => Some((wire, frames, plain)),
                _ => None,
            })
            .collect()
    }

    /// Waits up to `t` for an event matching `f`.
    pub fn wait_for(&self, t: Duration, f: impl Fn(&Event) -> bool) -> Option<Event> {
        let end = Instant::now() + t;
        while Instant::now() < end {
            if let Some(e) = self.events().into_iter().find(|e| f(e)) {
                return Some(e);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// Reads one request head; returns it and any bytes that followed.
async fn read_head<S: Conn>(sock: &mut S, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(head) = crate::raw::take_head(buf) {
            return Some(head);
        }
        let mut chunk = [0u8; 4096];
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

pub fn accept_key(key: &str) -> String {
    use base64::Engine;
    let mut h = sha1_smol::Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.digest().bytes())
}

fn switching(head: &str, name: &str, extensions: Option<&str>) -> String {
    let proto = header(head, "Upgrade").unwrap_or("websocket");
    let mut s = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: {proto}\r\nConnection: Upgrade\r\nX-Backend: {name}\r\n");
    if let Some(e) = extensions {
        s += &format!("Sec-WebSocket-Extensions: {e}\r\n");
    }
    if let Some(k) = header(head, "Sec-WebSocket-Key") {
        s += &format!("Sec-WebSocket-Accept: {}\r\n", accept_key(k));
    }
    if let Some(p) = header(head, "Sec-WebSocket-Protocol") {
        s += &format!("Sec-WebSocket-Protocol: {}\r\n", p.split(',').next().unwrap().trim());
    }
    s + "\r\n"
}

/// A backend connection: plain TCP or TLS over it.
pub trait Conn: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {
    fn tcp(&self) -> &TcpStream;
    /// Drops the connection with an RST.
    fn reset(self);
}

impl Conn for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
    fn reset(self) {
        if let Ok(std) = self.into_std() {
            drop(socket_linger0(std));
        }
    }
}

impl Conn for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
    fn reset(self) {
        self.into_inner().0.reset()
    }
}

async fn serve<S: Conn>(
    mut sock: S,
    ev: Arc<Mutex<Vec<Event>>>,
    name: String,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let Some(head) = read_head(&mut sock, &mut buf).await else { return Ok(()) };
    ev.lock().unwrap().push(Event::Request(head.clone()));
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let upgrade = header(&head, "Upgrade").is_some();
    if let Some(code) = path.split("/status/").nth(1) {
        let code: u16 = code.get(..3).and_then(|c| c.parse().ok()).unwrap_or(404);
        let mut extra = String::new();
        if code == 302 {
            extra = format!(
                "Location: http://127.0.0.1:{}/elsewhere\r\n",
                sock.tcp().local_addr()?.port()
            );
        }
        if code == 426 {
            extra = "Upgrade: websocket\r\nConnection: Upgrade\r\n".into();
        }
        loop {
            let body = format!("backend {name} says {code}\n");
            let resp = format!(
                "HTTP/1.1 {code} Backend Says\r\nContent-Type: text/plain\r\nX-Backend: {name}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(resp.as_bytes()).await?;
            // Keep the connection open: anything that arrives now would be smuggled.
            let Some(next) = read_head(&mut sock, &mut buf).await else { return Ok(()) };
            ev.lock().unwrap().push(Event::Request(next));
        }
    }
    if !upgrade {
        let body = format!("plain http from {name}\n");
        // It closes after answering, so it says so: a proxy must not pool a connection that is
        // about to close (mod_proxy_http's next request on it raced the FIN: a 502 in CI).
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\nX-Backend: {name}\r\n\r\n{body}",
            body.len()
        );
        return sock.write_all(resp.as_bytes()).await;
    }
    if path.contains("/wrong101") {
        return sock
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
            )
            .await;
    }
    if path.contains("/noupgrade101") {
        return sock
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n")
            .await;
    }
    if path.contains("/close") {
        return Ok(());
    }
    if path.contains("/silent") {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return Ok(());
    }
    if path.contains("/deflate") {
        let offered = header(&head, "Sec-WebSocket-Extensions").is_some_and(crate::deflate::named);
        let hello = switching(&head, &name, offered.then_some("permessage-deflate"));
        sock.write_all(hello.as_bytes()).await?;
        return deflate_echo(sock, buf, offered, ev).await;
    }
    let hello = switching(&head, &name, None);
    if path.contains("/raw-") {
        sock.write_all(hello.as_bytes()).await?;
        return raw_mode(sock, buf, &path, ev).await;
    }
    if path.contains("/burst") {
        // The 101 and a first frame in one segment.
        let mut out = hello.into_bytes();
        out.extend(crate::raw::server_frame(1, b"hello-from-backend"));
        sock.write_all(&out).await?;
    } else if path.contains("/send-masked") {
        let mut out = hello.into_bytes();
        out.extend(crate::raw::frame(1, true, b"masked by a server", Some([1, 2, 3, 4])));
        sock.write_all(&out).await?;
    } else if path.contains("/ping-client") {
        let mut out = hello.into_bytes();
        out.extend(crate::raw::server_frame(9, b"backend-ping"));
        sock.write_all(&out).await?;
    } else if path.contains("/whoami") {
        let mut out = hello.into_bytes();
        let me = format!("backend {name}");
        out.extend(crate::raw::server_frame(1, me.as_bytes()));
        sock.write_all(&out).await?;
    } else {
        sock.write_all(hello.as_bytes()).await?;
    }
    let mut cfg = WebSocketConfig::default();
    cfg.max_message_size = Some(64 << 20);
    cfg.max_frame_size = Some(64 << 20);
    let stream = PrefixedStream { prefix: buf, inner: sock };
    let ws = WebSocketStream::from_raw_socket(stream, Role::Server, Some(cfg)).await;
    echo(ws, ev, path.contains("/bye")).await;
    Ok(())
}

/// Echoes every message; `bye`: after the first echo, the backend closes with 4001.
async fn echo<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    ws: WebSocketStream<S>,
    ev: Arc<Mutex<Vec<Event>>>,
    bye: bool,
) {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    let (mut tx, mut rx) = ws.split();
    while let Some(Ok(m)) = rx.next().await {
        use tokio_tungstenite::tungstenite::Message;
        match m {
            Message::Text(_) | Message::Binary(_) => {
                if tx.send(m).await.is_err() {
                    return;
                }
                if bye {
                    let frame = CloseFrame { code: 4001.into(), reason: "bye".into() };
                    if tx.send(Message::Close(Some(frame))).await.is_err() {
                        return;
                    }
                }
            }
            Message::Close(frame) => {
                ev.lock().unwrap().push(Event::Close(frame.map(|f| f.code.into())))
            }
            Message::Pong(p) => ev.lock().unwrap().push(Event::Pong(p.to_vec())),
            // tungstenite answers pings and the close handshake itself as it reads; after
            // a close, reading on drives the reply out and then ends.
            _ => {}
        }
    }
}

/// `/deflate`, frame by frame: a message is echoed whole, compressed when `compressing`
/// (RSV1 on its one frame); Pings are answered, a Close is recorded and echoed, then FIN.
async fn deflate_echo<S: Conn>(
    mut sock: S,
    mut buf: Vec<u8>,
    compressing: bool,
    ev: Arc<Mutex<Vec<Event>>>,
) -> std::io::Result<()> {
    use crate::raw::{next_frame, server_frame};
    let (mut tx, mut rx) =
        (crate::deflate::Deflater::default(), crate::deflate::Inflater::default());
    // The message being received: its opcode, whether it is compressed, its frames and payload.
    let mut msg: Option<(u8, bool, usize, Vec<u8>)> = None;
    while let Some(f) = next_frame(&mut sock, &mut buf).await? {
        match f.opcode {
            8 => {
                let code = f.payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                ev.lock().unwrap().push(Event::Close(code));
                sock.write_all(&server_frame(8, &f.payload[..f.payload.len().min(2)])).await?;
                return sock.shutdown().await;
            }
            9 => sock.write_all(&server_frame(10, &f.payload)).await?,
            10 => ev.lock().unwrap().push(Event::Pong(f.payload)),
            0..=2 => {
                let m = msg.get_or_insert((f.opcode, f.rsv & 0x40 != 0, 0, Vec::new()));
                m.2 += 1;
                m.3.extend_from_slice(&f.payload);
                if !f.fin {
                    continue;
                }
                let (opcode, compressed, frames, data) = msg.take().unwrap();
                let plain = match compressed {
                    false => data,
                    true => {
                        let Some(plain) = rx.inflate(&data) else {
                            // 1007: not the stream this context expected.
                            return sock.write_all(&server_frame(8, &1007u16.to_be_bytes())).await;
                        };
                        let (wire, n) = (data.len(), plain.len());
                        ev.lock().unwrap().push(Event::Inflated { wire, frames, plain: n });
                        plain
                    }
                };
                let out = match compressing {
                    false => server_frame(opcode, &plain),
                    true => crate::deflate::compressed(server_frame(opcode, &tx.compress(&plain))),
                };
                sock.write_all(&out).await?;
            }
            _ => return Ok(()),
        }
    }
    sock.shutdown().await
}

async fn raw_mode<S: Conn>(
    mut sock: S,
    pre: Vec<u8>,
    path: &str,
    ev: Arc<Mutex<Vec<Event>>>,
) -> std::io::Result<()> {
    let mut total = pre.len();
    let mut chunk = vec![0u8; 65536];
    if path.contains("/raw-reframe-echo") {
        let mut r = Reframer::default();
        let mut out = Vec::with_capacity(65536 + 14);
        r.echo(&pre, &mut out);
        sock.write_all(&out).await?;
        loop {
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return sock.shutdown().await;
            }
            out.clear();
            r.echo(&chunk[..n], &mut out);
            sock.write_all(&out).await?;
        }
    } else if path.contains("/raw-echo") {
        sock.write_all(&pre).await?;
        loop {
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return sock.shutdown().await;
            }
            sock.write_all(&chunk[..n]).await?;
        }
    } else if path.contains("/raw-count") {
        loop {
            let n = read_to_fin(&mut sock, &mut chunk).await?;
            if n == 0 {
                break;
            }
            total += n;
        }
        sock.write_all(format!("got {total} bytes").as_bytes()).await?;
        sock.shutdown().await
    } else if path.contains("/raw-fin-first") {
        sock.write_all(b"bye").await?;
        sock.shutdown().await?;
        loop {
            let n = read_to_fin(&mut sock, &mut chunk).await?;
            if n == 0 {
                break;
            }
            total += n;
        }
        ev.lock().unwrap().push(Event::AfterFin(total));
        Ok(())
    } else if let Some(n) = path.split("/raw-flood-").nth(1) {
        let total: u64 =
            n.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap_or(0);
        let block = vec![0x5au8; 256 * 1024];
        let mut sent = 0u64;
        while sent < total {
            let n = block.len().min((total - sent) as usize);
            sock.write_all(&block[..n]).await?;
            sent += n as u64;
        }
        sock.shutdown().await
    } else if path.contains("/raw-deaf") {
        // Never reads again: what the proxy writes fills the socket buffers and stays. It
        // watches the connection instead, for when bytes last moved (the kernel may open a
        // little window long after the application stopped reading) and when the end came.
        let fd = std::os::fd::AsRawFd::as_raw_fd(sock.tcp());
        let (me, proxy) = (sock.tcp().local_addr()?.port(), sock.tcp().peer_addr()?.port());
        let w = crate::sockets::watch(fd, me, proxy, Duration::from_secs(600)).await;
        if let Some(closed) = w.end {
            ev.lock().unwrap().push(Event::Deaf {
                path: path.to_string(),
                last_byte: w.last_before(closed),
                closed,
            });
        }
        Ok(())
    } else if path.contains("/raw-rst") {
        if pre.is_empty() {
            let _ = sock.read(&mut chunk).await?;
        }
        sock.reset();
        Ok(())
    } else {
        // raw-hold
        loop {
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        ev.lock().unwrap().push(Event::Eof(Instant::now()));
        Ok(())
    }
}

/// A read where a TCP FIN without TLS close_notify counts as the end of the stream: mod_ssl
/// cannot half-close a TLS connection, so a proxy forwards a client's half-close to a TLS
/// backend as a bare FIN (as mod_proxy_http does), and servers commonly accept that.
async fn read_to_fin<S: Conn>(sock: &mut S, buf: &mut [u8]) -> std::io::Result<usize> {
    match sock.read(buf).await {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
        r => r,
    }
}

/// Sets SO_LINGER 0 so that dropping the socket sends an RST.
pub fn socket_linger0(s: std::net::TcpStream) -> std::net::TcpStream {
    use std::os::fd::AsRawFd;
    let lin = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: valid pointer and size for SO_LINGER on an open socket.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&lin as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as u32,
        );
    }
    s
}

/// A stream that first yields bytes read ahead with the request head.
pub struct PrefixedStream<S> {
    prefix: Vec<u8>,
    inner: S,
}

impl<S: Conn> tokio::io::AsyncRead for PrefixedStream<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.drain(..n);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: Conn> tokio::io::AsyncWrite for PrefixedStream<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The backends in a process of their own (the `wst-backends` binary of this workspace):
/// their CPU and descriptors are not the test's, and the process can be killed mid-stream.
pub struct BackendProcess {
    child: std::process::Child,
    /// `127.0.0.1:port` of the plain ws:// echo backend.
    pub addr: String,
    dir: std::path::PathBuf,
}

impl BackendProcess {
    /// Starts `target/release/wst-backends` and waits until it listens.
    pub fn start() -> BackendProcess {
        use std::io::BufRead;
        let bin = crate::httpd::workspace_root().join("target/release/wst-backends");
        let dir = std::env::temp_dir().join(format!(
            "wst-backends-{}-{}",
            std::process::id(),
            crate::httpd::free_port()
        ));
        let mut child = std::process::Command::new(&bin)
            .arg(&dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e} (build the workspace first)", bin.display()));
        let mut addr = String::new();
        for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if let Some(a) = line.strip_prefix("WST_BACKEND=") {
                addr = a.to_string();
            }
            if line == "READY" {
                break;
            }
        }
        BackendProcess { child, addr, dir }
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BackendProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client's frames echoed as a server's: each masked frame becomes an unmasked one whose
/// payload is the 4-byte key and the payload as it came (still masked: only its length
/// matters), so the echo has the length of what was sent, and a proxy that checks framing
/// (masked from the client, unmasked from the server) can be measured with a byte-counting
/// load. Frames whose length grows past 125 or 65535 by the 4 bytes are not handled (the
/// bench's sizes never do).
#[derive(Default)]
struct Reframer {
    head: Vec<u8>,
    /// Payload bytes of the current frame still to copy.
    left: u64,
}

impl Reframer {
    fn echo(&mut self, mut bytes: &[u8], out: &mut Vec<u8>) {
        while !bytes.is_empty() {
            if self.left > 0 {
                let n = (self.left as usize).min(bytes.len());
                out.extend_from_slice(&bytes[..n]);
                (self.left, bytes) = (self.left - n as u64, &bytes[n..]);
                continue;
            }
            self.head.push(bytes[0]);
            bytes = &bytes[1..];
            let h = &self.head;
            if h.len() < 2 {
                continue;
            }
            let ext = match h[1] & 0x7f {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            let mask = if h[1] & 0x80 != 0 { 4 } else { 0 };
            if h.len() < 2 + ext + mask {
                continue;
            }
            let len = match ext {
                2 => u16::from_be_bytes([h[2], h[3]]) as u64,
                8 => u64::from_be_bytes(h[2..10].try_into().unwrap()),
                _ => (h[1] & 0x7f) as u64,
            };
            let grown = len + mask as u64;
            out.push(h[0]);
            match ext {
                2 => {
                    out.push(126);
                    out.extend_from_slice(&(grown as u16).to_be_bytes());
                }
                8 => {
                    out.push(127);
                    out.extend_from_slice(&grown.to_be_bytes());
                }
                _ => out.push(grown as u8),
            }
            out.extend_from_slice(&h[2 + ext..]);
            self.left = len;
            self.head.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reframed_echoes_keep_the_length_and_lose_the_mask_bit() {
        for len in [0, 64, 120, 1000, 65536] {
            let f = crate::raw::client_frame(2, &vec![7; len]);
            for piece in [1, 3, f.len()] {
                let (mut r, mut out) = (Reframer::default(), Vec::new());
                f.chunks(piece).for_each(|c| r.echo(c, &mut out));
                assert_eq!(out.len(), f.len(), "{len}");
                assert_eq!((out[0], out[1] & 0x80), (0x82, 0), "{len}");
            }
        }
    }
}
