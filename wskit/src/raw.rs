//! Raw TCP helpers for the cases a WebSocket library would hide: exact bytes on the wire,
//! handshakes with frames in the same segment, half-closes and resets.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A WebSocket handshake request, with `extra` header lines (each ending in CRLF).
pub fn handshake(path: &str, extra: &str) -> String {
    request_head("GET", path, "1.1", "websocket", extra)
}

/// A WebSocket upgrade request with `method` (GET, HEAD, ...) for `path`, as bytes.
pub fn websocket_request(method: &str, path: &str, extra: &str) -> Vec<u8> {
    request_head(method, path, "1.1", "websocket", extra).into_bytes()
}

/// A request with an `Upgrade` for `upgrade` (omitted when empty) and a WebSocket key.
fn request_head(method: &str, path: &str, version: &str, upgrade: &str, extra: &str) -> String {
    let up = if upgrade.is_empty() {
        String::new()
    } else {
        format!("Upgrade: {upgrade}\r\nConnection: Upgrade\r\n")
    };
    format!(
        "{method} {path} HTTP/{version}\r\nHost: 127.0.0.1\r\n{up}Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A parsed response head plus whatever bytes came after it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub rest: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<String> {
        header(&self.head, name).map(str::to_string)
    }
}

/// The first value of header `name` (case-insensitive) in an HTTP head's text.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The HTTP head at the start of `buf`, if it is whole: taken out of `buf`, which keeps
/// what followed it. The one head splitter of the kit (clients and backends).
pub fn take_head(buf: &mut Vec<u8>) -> Option<String> {
    let p = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..p + 4]).into_owned();
    buf.drain(..p + 4);
    Some(head)
}

/// Reads one response head (and what came with it).
pub fn read_response(s: &mut TcpStream) -> Response {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(head) = take_head(&mut buf) {
            let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
            return Response { status, head, rest: buf };
        }
        let n = s.read(&mut chunk).unwrap_or(0);
        assert!(
            n > 0,
            "connection closed before a response head; got {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads a whole response: a Content-Length body, or a chunked one read to its last chunk and
/// decoded (server-status and other generated pages come chunked; reading only what arrived
/// with the head cut them short).
pub fn read_full_response(s: &mut TcpStream) -> (Response, String) {
    let mut r = read_response(s);
    let mut body = std::mem::take(&mut r.rest);
    let chunked = r.header("Transfer-Encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let len: usize = r.header("Content-Length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut chunk = [0u8; 8192];
    loop {
        if chunked {
            if let Some(decoded) = dechunk(&body) {
                body = decoded;
                break;
            }
        } else if body.len() >= len {
            break;
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(
            n > 0,
            "connection closed in a response body: {:?}",
            String::from_utf8_lossy(&body)
        );
        body.extend_from_slice(&chunk[..n]);
    }
    (r, String::from_utf8_lossy(&body).into_owned())
}

/// A chunked body (RFC 9112 §7.1) decoded, once its last chunk and trailer section are all in
/// `buf`; None while more is due.
pub fn dechunk(buf: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + buf[at..].windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&buf[at..line_end]);
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).expect("a chunk size");
        at = line_end + 2;
        if size == 0 {
            // Trailer fields, if any, then the empty line.
            let rest = &buf[at..];
            return (rest.starts_with(b"\r\n") || rest.windows(4).any(|w| w == b"\r\n\r\n"))
                .then_some(out);
        }
        if buf.len() < at + size + 2 {
            return None;
        }
        out.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

/// Sends a raw request and reads the whole response (head + Content-Length body).
pub fn request(port: u16, req: &str) -> (Response, String) {
    let mut s = connect(port);
    s.write_all(req.as_bytes()).unwrap();
    read_full_response(&mut s)
}

/// A plain GET.
pub fn get(port: u16, path: &str, extra: &str) -> (Response, String) {
    request(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n"),
    )
}

/// The mask of every client frame built here.
pub const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// A WebSocket frame (RFC 6455 §5.2): `opcode`, FIN or not, the shortest length encoding, the
/// payload masked with `mask` when given (frames to a server are masked, §5.3). The one frame
/// builder of the tests, unit and integration alike.
pub fn frame(opcode: u8, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let m = if mask.is_some() { 0x80 } else { 0 };
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => f.push(m | n as u8),
        n if n < 65536 => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(m | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            f.extend_from_slice(&k);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => f.extend_from_slice(payload),
    }
    f
}

/// A masked client frame with FIN set.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(opcode, true, payload, Some(MASK))
}

/// An unmasked server frame with FIN set.
pub fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(opcode, true, payload, None)
}

/// `len` bytes of a pattern that shows a lost, repeated or reordered byte (period 251, prime).
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// One frame as it came off the wire, its payload unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// The RSV bits as they are in the first byte (0x40 is RSV1).
    pub rsv: u8,
    pub opcode: u8,
    /// It came masked (as a client's must, and a server's must not).
    pub masked: bool,
    pub payload: Vec<u8>,
}

/// Takes one whole frame off the front of `buf`, when it holds one: the one frame parser of
/// the test kit.
pub fn take_frame(buf: &mut Vec<u8>) -> Option<Frame> {
    let second = *buf.get(1)?;
    let (len, mut at) = match second & 0x7f {
        126 => (u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    let mask: Option<[u8; 4]> = match second & 0x80 {
        0 => None,
        _ => {
            at += 4;
            Some(buf.get(at - 4..at)?.try_into().ok()?)
        }
    };
    let mut payload = buf.get(at..at.checked_add(len)?)?.to_vec();
    if let Some(k) = mask {
        payload.iter_mut().enumerate().for_each(|(i, b)| *b ^= k[i % 4]);
    }
    let first = buf[0];
    buf.drain(..at + len);
    let (fin, rsv, opcode, masked) =
        (first & 0x80 != 0, first & 0x70, first & 0x0f, mask.is_some());
    Some(Frame { fin, rsv, opcode, masked, payload })
}

/// Reads one whole frame from `s`, `pre` holding what was already read after the last one.
pub fn read_frame(s: &mut TcpStream, pre: &mut Vec<u8>) -> Frame {
    let mut chunk = [0u8; 65536];
    loop {
        if let Some(f) = take_frame(pre) {
            return f;
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before a whole frame");
        pre.extend_from_slice(&chunk[..n]);
    }
}

/// Reads one whole frame from an asynchronous stream, `pre` holding what was already read after
/// the last one; None: the stream ended first.
pub async fn next_frame<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    pre: &mut Vec<u8>,
) -> std::io::Result<Option<Frame>> {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 65536];
    loop {
        if let Some(f) = take_frame(pre) {
            return Ok(Some(f));
        }
        match r.read(&mut chunk).await? {
            0 => return Ok(None),
            n => pre.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads one unmasked server frame with a payload under 126 bytes: (opcode, payload).
pub fn read_small_frame(s: &mut TcpStream, pre: &mut Vec<u8>) -> (u8, Vec<u8>) {
    let f = read_frame(s, pre);
    assert!(f.payload.len() < 126, "small frames only");
    (f.opcode, f.payload)
}

/// An upgrade request for an arbitrary protocol (or none: `upgrade` empty omits the header).
pub fn upgrade_request(path: &str, upgrade: &str, version: &str) -> String {
    request_head("GET", path, version, upgrade, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_taken_only_once_it_is_whole() {
        for len in [0, 125, 126, 65535, 65536] {
            for mask in [None, Some(MASK)] {
                let payload = pattern(len);
                let mut wire = frame(2, false, &payload, mask);
                wire[0] |= 0x40;
                let whole = wire.len();
                wire.extend(server_frame(9, b"next"));
                for cut in [0, 1, 2, whole - 1].into_iter().filter(|c| *c < whole) {
                    assert_eq!(take_frame(&mut wire[..cut].to_vec()), None, "{len} cut at {cut}");
                }
                let f = take_frame(&mut wire).unwrap();
                let got = (f.fin, f.rsv, f.opcode, f.masked, f.payload);
                assert_eq!(got, (false, 0x40, 2, mask.is_some(), payload));
                assert_eq!(take_frame(&mut wire).map(|f| f.payload), Some(b"next".to_vec()));
                assert!(wire.is_empty());
            }
        }
    }
}
