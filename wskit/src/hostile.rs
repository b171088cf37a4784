//! A scripted hostile (or merely unusual) HTTP backend: each request path under `/h/` picks
//! an answer to an upgrade request that a real server might give, byte for byte and with
//! its timing, so tests can check what a client behind httpd receives and when. "Kept alive"
//! answers wait for the next request on the connection (mod_proxy_http pools such connections).
//!
//! | path            | answer |
//! | --------------- | ------ |
//! | `/h/head-cl`    | 200 with `Content-Length: 1000` and no body (a correct answer to HEAD), kept alive |
//! | `/h/cl-204`     | 204 with `Content-Length: 5`, no body, kept alive |
//! | `/h/cl-304`     | 304 with `Content-Length: 5`, no body, kept alive |
//! | `/h/continue`   | `100 Continue` every 100 ms, forever |
//! | `/h/interim-N`  | N × `103 Early Hints` (with a `Link`), then 200 `done` |
//! | `/h/hints-101`  | 103, then a WebSocket 101, then raw echo |
//! | `/h/trickle`    | a status line, then one header byte every 200 ms, forever |
//! | `/h/chunked-slow` | 200 chunked, `tick N` once a second, 4 chunks, then the last chunk |
//! | `/h/short-stall` | 200 `Content-Length: 100`, 20 bytes, then nothing (kept open) |
//! | `/h/short-close` | 200 `Content-Length: 100`, 20 bytes, then FIN |
//! | `/h/nolength`   | 200 without a length, `partial`, then nothing (kept open) |
//! | `/h/obs-404`    | 404 with `X-Name: caf\xe9` (obs-text) |
//! | `/h/obs-101`    | WebSocket 101 with `X-Name: caf\xe9`, then raw echo |
//! | `/h/status-999` | `999 Odd`, body `odd` |
//! | `/h/gzip`       | 200 `Transfer-Encoding: gzip`, coded bytes, FIN |
//! | `/h/gzip-chunked` | 200 `Transfer-Encoding: gzip, chunked`, coded bytes in chunks |
//! | `/h/chunked-odd` | 200 chunked with extensions, trailers, written in odd pieces |
//! | `/h/close-body` | 200 without a length, a body, FIN |
//! | `/h/big`        | 200 `Content-Length` 256 MiB, written as fast as the reader takes it |

use crate::raw::header;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The 2-byte gzip magic and a few arbitrary bytes: "coded" content that must never be
/// mistaken for plain text.
pub const GZIP_BYTES: &[u8] = b"\x1f\x8b\x08\x00coded-bytes\xff\x00";

pub struct Hostile {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Hostile {
    pub fn start() -> Hostile {
        Self::start_with(None)
    }

    /// The same scripts behind TLS (a `wss://` backend) with `identity`'s certificate.
    pub fn start_tls(identity: &crate::tls::Identity) -> Hostile {
        Self::start_with(Some(identity.server_config()))
    }

    fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for sock in listener.incoming().flatten() {
                let (seen, tls) = (seen.clone(), tls.clone());
                std::thread::spawn(move || {
                    let _ = sock.set_nodelay(true);
                    match tls {
                        None => drop(serve(sock, &seen)),
                        Some(cfg) => {
                            let Ok(conn) = rustls::ServerConnection::new(cfg) else { return };
                            drop(serve(Flushing(rustls::StreamOwned::new(conn, sock)), &seen));
                        }
                    }
                });
            }
        });
        Hostile { addr, requests }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The request heads received so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// A TLS stream that sends every write at once (the scripts' timing is the point).
struct Flushing<S: Write>(S);

impl<S: Read + Write> Read for Flushing<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl<S: Write> Write for Flushing<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(buf)?;
        self.0.flush()?;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Reads one request head a byte at a time: what follows it stays in the socket.
fn read_head(s: &mut impl Read) -> Option<String> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    loop {
        if let Some(head) = crate::raw::take_head(&mut buf) {
            return Some(head);
        }
        if s.read(&mut b).ok()? == 0 {
            return None;
        }
        buf.push(b[0]);
    }
}

fn websocket_101(head: &str, extra: &[u8]) -> Vec<u8> {
    let key = header(head, "Sec-WebSocket-Key").unwrap_or("");
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        crate::backend::accept_key(key)
    )
    .into_bytes();
    out.extend_from_slice(extra);
    out.extend_from_slice(b"\r\n");
    out
}

fn raw_echo(s: &mut (impl Read + Write)) -> std::io::Result<()> {
    let mut buf = [0u8; 16384];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        s.write_all(&buf[..n])?;
    }
}

fn serve<S: Read + Write>(mut s: S, seen: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let Some(head) = read_head(&mut s) else { return Ok(()) };
    seen.lock().unwrap().push(head.clone());
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let script =
        path.strip_prefix("/h/").unwrap_or("").split(['/', '?']).next().unwrap_or("").to_string();
    let tick = Duration::from_millis(100);
    match script.as_str() {
        "head-cl" => {
            s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n",
            )?;
            return serve(s, seen);
        }
        "cl-204" => {
            s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n")?;
            return serve(s, seen);
        }
        "cl-304" => {
            s.write_all(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nETag: \"e1\"\r\n\r\n")?;
            return serve(s, seen);
        }
        "continue" => loop {
            s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            std::thread::sleep(tick);
        },
        "hints-101" => {
            s.write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")?;
            std::thread::sleep(tick);
            s.write_all(&websocket_101(&head, b""))?;
            raw_echo(&mut s)?;
        }
        "trickle" => {
            s.write_all(b"HTTP/1.1 200 OK\r\nX-Slow: ")?;
            loop {
                std::thread::sleep(Duration::from_millis(200));
                s.write_all(b"a")?;
            }
        }
        "chunked-slow" => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")?;
            for i in 0..4 {
                let c = format!("tick {i}\n");
                s.write_all(format!("{:x}\r\n{c}\r\n", c.len()).as_bytes())?;
                std::thread::sleep(Duration::from_secs(1));
            }
            s.write_all(b"0\r\n\r\n")?;
            return serve(s, seen);
        }
        "short-stall" | "short-close" => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n01234567890123456789")?;
            if script == "short-stall" {
                return serve(s, seen);
            }
        }
        "nolength" => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\n\r\npartial\n")?;
            return serve(s, seen);
        }
        "obs-404" => {
            s.write_all(b"HTTP/1.1 404 Not Found\r\nX-Name: caf\xe9\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot here\n")?;
            return serve(s, seen);
        }
        "obs-101" => {
            s.write_all(&websocket_101(&head, b"X-Name: caf\xe9\r\n"))?;
            raw_echo(&mut s)?;
        }
        "status-999" => {
            s.write_all(
                b"HTTP/1.1 999 Odd\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nodd",
            )?;
            return serve(s, seen);
        }
        "gzip" => {
            s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: gzip\r\n\r\n",
            )?;
            s.write_all(GZIP_BYTES)?;
        }
        "gzip-chunked" => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")?;
            s.write_all(format!("{:x}\r\n", GZIP_BYTES.len()).as_bytes())?;
            s.write_all(GZIP_BYTES)?;
            s.write_all(b"\r\n0\r\n\r\n")?;
            return serve(s, seen);
        }
        "chunked-odd" => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")?;
            let body = b"5;ext=1\r\nhello\r\n1\r\n \r\n0005\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n";
            for piece in body.chunks(3) {
                s.write_all(piece)?;
                std::thread::sleep(Duration::from_millis(5));
            }
            return serve(s, seen);
        }
        "close-body" => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end\n")?;
        }
        "big" => {
            let total: usize = 256 << 20;
            s.write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {total}\r\n\r\n").as_bytes())?;
            let block = vec![b'x'; 65536];
            let mut sent = 0;
            while sent < total {
                s.write_all(&block)?;
                sent += block.len();
            }
            return serve(s, seen);
        }
        other if other.starts_with("interim-") => {
            let n: usize = other["interim-".len()..].parse().unwrap_or(1);
            for _ in 0..n {
                s.write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </a.js>; rel=preload\r\n\r\n")?;
            }
            s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\ndone\n",
            )?;
            return serve(s, seen);
        }
        _ => {}
    }
    Ok(())
}

/// What a client read from a connection, with when each piece arrived.
pub struct Timed {
    pub start: Instant,
    pub pieces: Vec<(Duration, Vec<u8>)>,
    /// When the connection ended (FIN or reset), if it did before the read deadline.
    pub closed: Option<Duration>,
}

impl Timed {
    /// Sends `req` on a new connection to `port` and reads until the connection ends or `max`
    /// passes.
    pub fn request(port: u16, req: &[u8], max: Duration) -> Timed {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nodelay(true).unwrap();
        let start = Instant::now();
        s.write_all(req).unwrap();
        Self::read_from(&mut s, start, max)
    }

    pub fn read_from(s: &mut TcpStream, start: Instant, max: Duration) -> Timed {
        let mut t = Timed { start, pieces: Vec::new(), closed: None };
        let mut buf = [0u8; 65536];
        loop {
            let left = max.saturating_sub(start.elapsed());
            if left.is_zero() {
                return t;
            }
            s.set_read_timeout(Some(left)).unwrap();
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => t.pieces.push((start.elapsed(), buf[..n].to_vec())),
                // The read deadline passed with the connection still open.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return t
                }
                // A read with a timeout set fails on any signal the process handles, restartable
                // or not (signal(7)): say a child's SIGCHLD. The connection is still open.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // A reset ends the connection as a FIN does.
                Err(_) => break,
            }
        }
        t.closed = Some(start.elapsed());
        t
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.pieces.iter().flat_map(|(_, b)| b.iter().copied()).collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    /// When the bytes received so far first contained `needle`.
    pub fn when(&self, needle: &[u8]) -> Option<Duration> {
        let mut acc = Vec::new();
        for (at, b) in &self.pieces {
            acc.extend_from_slice(b);
            if acc.windows(needle.len()).any(|w| w == needle) {
                return Some(*at);
            }
        }
        None
    }
}
