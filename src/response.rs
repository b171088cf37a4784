//! The backend's answer to an upgrade request: parsing its head, and the framing of the body
//! of a non-101 answer (which is relayed as an ordinary HTTP response, never tunnelled).

/// Upper bound of a response head; mod_proxy_http's default `ResponseFieldSize` is 8 KiB a
/// line, and a handshake answer is far smaller than this.
pub const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub reason: String,
    pub minor_version: u8,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// More bytes are needed.
    Incomplete,
    /// The head exceeds [`MAX_HEAD`].
    TooLarge,
    /// Not an HTTP/1.x response head.
    Malformed(&'static str),
}

impl Head {
    /// The first header of that name (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// All values of that header joined with ", " (RFC 9110 list semantics).
    pub fn get_all(&self, name: &str) -> Option<String> {
        let v: Vec<&str> =
            self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect();
        (!v.is_empty()).then(|| v.join(", "))
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Finds the end of the head (the byte after the blank line), accepting bare LF line ends.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + off;
        let next = nl + 1;
        if buf.get(next) == Some(&b'\n') {
            return Some(next + 1);
        }
        if buf.get(next) == Some(&b'\r') && buf.get(next + 1) == Some(&b'\n') {
            return Some(next + 2);
        }
        i = next;
    }
    None
}

/// Parses a response head from the start of `buf`. Returns the head and its length in
/// bytes; whatever follows belongs to the body or, after a 101, to the tunnel.
pub fn parse_head(buf: &[u8]) -> Result<(Head, usize), HeadError> {
    let Some(end) = head_end(buf) else {
        return Err(if buf.len() > MAX_HEAD { HeadError::TooLarge } else { HeadError::Incomplete });
    };
    if end > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| HeadError::Malformed("head is not UTF-8/ASCII"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let status_line = lines.next().ok_or(HeadError::Malformed("empty head"))?;
    let rest = status_line.strip_prefix("HTTP/1.").ok_or(HeadError::Malformed("not an HTTP/1.x status line"))?;
    let mut parts = rest.splitn(3, ' ');
    let minor = parts.next().unwrap_or("");
    let minor_version = match minor {
        "0" => 0,
        "1" => 1,
        _ => return Err(HeadError::Malformed("unsupported HTTP version")),
    };
    let code = parts.next().ok_or(HeadError::Malformed("no status code"))?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HeadError::Malformed("bad status code"));
    }
    let status: u16 = code.parse().map_err(|_| HeadError::Malformed("bad status code"))?;
    if !(100..=599).contains(&status) {
        return Err(HeadError::Malformed("status code out of range"));
    }
    let reason = parts.next().unwrap_or("").to_string();
    if reason.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(HeadError::Malformed("control character in reason phrase"));
    }
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            return Err(HeadError::Malformed("obsolete header line folding"));
        }
        let (name, value) = line.split_once(':').ok_or(HeadError::Malformed("header line without colon"))?;
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(HeadError::Malformed("bad header name"));
        }
        let value = value.trim_matches([' ', '\t']);
        if value.bytes().any(|b| (b.is_ascii_control() && b != b'\t') || b == 0x7f) {
            return Err(HeadError::Malformed("control character in header value"));
        }
        headers.push((name.to_string(), value.to_string()));
    }
    Ok((Head { status, reason, minor_version, headers }, end))
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) that never pass a proxy as they are.
pub fn is_hop_by_hop(name: &str, connection_tokens: &[String]) -> bool {
    const HOP: &[&str] =
        &["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name)) || connection_tokens.iter().any(|t| t.eq_ignore_ascii_case(name))
}

/// How the body of a non-101 response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// The framing of a response body (RFC 9112 §6.3), for a response to a GET.
pub fn framing(head: &Head) -> Result<BodyFraming, HeadError> {
    if head.status < 200 || head.status == 204 || head.status == 304 {
        return Ok(BodyFraming::None);
    }
    if let Some(te) = head.get_all("Transfer-Encoding") {
        let last = te.rsplit(',').next().unwrap_or("").trim();
        return Ok(if last.eq_ignore_ascii_case("chunked") { BodyFraming::Chunked } else { BodyFraming::UntilClose });
    }
    if let Some(cl) = head.get_all("Content-Length") {
        let mut vals = cl.split(',').map(str::trim);
        let first = vals.next().unwrap_or("");
        if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) || vals.any(|v| v != first) {
            return Err(HeadError::Malformed("bad Content-Length"));
        }
        return first.parse().map(BodyFraming::Length).map_err(|_| HeadError::Malformed("bad Content-Length"));
    }
    Ok(BodyFraming::UntilClose)
}

/// Incremental decoder of a response body: feed it raw bytes, get payload bytes.
#[derive(Debug)]
pub struct BodyDecoder {
    state: DecState,
    line: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecState {
    Length(u64),
    UntilClose,
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    Trailers,
    Done,
}

impl BodyDecoder {
    pub fn new(f: BodyFraming) -> Self {
        let state = match f {
            BodyFraming::None | BodyFraming::Length(0) => DecState::Done,
            BodyFraming::Length(n) => DecState::Length(n),
            BodyFraming::Chunked => DecState::ChunkSize,
            BodyFraming::UntilClose => DecState::UntilClose,
        };
        BodyDecoder { state, line: Vec::new() }
    }

    pub fn is_done(&self) -> bool {
        self.state == DecState::Done
    }

    /// True if the end of the connection is a valid end of this body.
    pub fn eof_ok(&self) -> bool {
        matches!(self.state, DecState::Done | DecState::UntilClose)
    }

    /// Decodes `input`, appending payload to `out`. Bytes past the end of the body are ignored.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
        while !input.is_empty() {
            match self.state {
                DecState::Done => return Ok(()),
                DecState::UntilClose => {
                    out.extend_from_slice(input);
                    return Ok(());
                }
                DecState::Length(n) | DecState::ChunkData(n) => {
                    let take = (n.min(input.len() as u64)) as usize;
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    let left = n - take as u64;
                    self.state = match (self.state, left) {
                        (DecState::Length(_), 0) => DecState::Done,
                        (DecState::Length(_), l) => DecState::Length(l),
                        (_, 0) => DecState::ChunkDataEnd,
                        (_, l) => DecState::ChunkData(l),
                    };
                }
                DecState::ChunkSize | DecState::ChunkDataEnd | DecState::Trailers => {
                    let Some(pos) = input.iter().position(|&b| b == b'\n') else {
                        self.push_line(input)?;
                        return Ok(());
                    };
                    self.push_line(&input[..pos])?;
                    input = &input[pos + 1..];
                    let line = std::mem::take(&mut self.line);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    self.state = self.after_line(line)?;
                }
            }
        }
        Ok(())
    }

    fn push_line(&mut self, part: &[u8]) -> Result<(), &'static str> {
        if self.line.len() + part.len() > 8192 {
            return Err("chunk line too long");
        }
        self.line.extend_from_slice(part);
        Ok(())
    }

    fn after_line(&self, line: &[u8]) -> Result<DecState, &'static str> {
        match self.state {
            DecState::ChunkDataEnd if line.is_empty() => Ok(DecState::ChunkSize),
            DecState::ChunkDataEnd => Err("missing CRLF after chunk data"),
            DecState::Trailers if line.is_empty() => Ok(DecState::Done),
            DecState::Trailers => Ok(DecState::Trailers),
            _ => {
                let hex = line.split(|&b| b == b';').next().unwrap_or(b"");
                let hex = std::str::from_utf8(hex).map_err(|_| "bad chunk size")?.trim_matches([' ', '\t']);
                if hex.is_empty() || hex.len() > 15 {
                    return Err("bad chunk size");
                }
                match u64::from_str_radix(hex, 16).map_err(|_| "bad chunk size")? {
                    0 => Ok(DecState::Trailers),
                    n => Ok(DecState::ChunkData(n)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_101_and_leaves_frames_behind_it() {
        let raw = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n\x81\x02hi";
        let (h, n) = parse_head(raw).unwrap();
        assert_eq!(h.status, 101);
        assert_eq!(h.reason, "Switching Protocols");
        assert_eq!(h.get("upgrade"), Some("websocket"));
        assert_eq!(&raw[n..], b"\x81\x02hi");
    }

    #[test]
    fn incomplete_too_large_and_malformed() {
        assert_eq!(parse_head(b"HTTP/1.1 101 OK\r\nUpgrade: x\r\n"), Err(HeadError::Incomplete));
        let big = vec![b'a'; MAX_HEAD + 1];
        assert_eq!(parse_head(&big), Err(HeadError::TooLarge));
        assert!(matches!(parse_head(b"SSH-2.0-x\r\n\r\n"), Err(HeadError::Malformed(_))));
        assert!(matches!(parse_head(b"HTTP/1.1 1011 x\r\n\r\n"), Err(HeadError::Malformed(_))));
        assert!(matches!(parse_head(b"HTTP/1.1 101 x\r\nA\r\n\r\n"), Err(HeadError::Malformed(_))));
        assert!(matches!(parse_head(b"HTTP/1.1 101 x\r\nA: b\r\n c\r\n\r\n"), Err(HeadError::Malformed(_))));
        assert!(matches!(parse_head(b"HTTP/1.1 101 x\r\nA b: c\r\n\r\n"), Err(HeadError::Malformed(_))));
        assert!(matches!(parse_head(b"HTTP/2 101 x\r\n\r\n"), Err(HeadError::Malformed(_))));
    }

    #[test]
    fn accepts_bare_lf() {
        let (h, n) = parse_head(b"HTTP/1.0 404 Not Found\nX: y\n\nbody").unwrap();
        assert_eq!((h.status, h.minor_version, n), (404, 0, 29));
    }

    #[test]
    fn framing_rules() {
        let head = |extra: &str| parse_head(format!("HTTP/1.1 200 OK\r\n{extra}\r\n").as_bytes()).unwrap().0;
        assert_eq!(framing(&head("Content-Length: 5\r\n")), Ok(BodyFraming::Length(5)));
        assert_eq!(framing(&head("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n")), Ok(BodyFraming::Chunked));
        assert_eq!(framing(&head("")), Ok(BodyFraming::UntilClose));
        assert!(framing(&head("Content-Length: 5, 6\r\n")).is_err());
        assert!(framing(&head("Content-Length: -1\r\n")).is_err());
        let h = parse_head(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n").unwrap().0;
        assert_eq!(framing(&h), Ok(BodyFraming::None));
    }

    #[test]
    fn decodes_chunked_bodies_fed_byte_by_byte() {
        let raw = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nGARBAGE";
        let mut d = BodyDecoder::new(BodyFraming::Chunked);
        let mut out = Vec::new();
        for b in raw.iter() {
            d.feed(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert!(d.is_done());
        assert_eq!(out, b"hello world");
    }

    #[test]
    fn decodes_length_and_close_bodies() {
        let mut d = BodyDecoder::new(BodyFraming::Length(3));
        let mut out = Vec::new();
        d.feed(b"abcdef", &mut out).unwrap();
        assert!(d.is_done());
        assert_eq!(out, b"abc");
        let mut d = BodyDecoder::new(BodyFraming::UntilClose);
        d.feed(b"xyz", &mut out).unwrap();
        assert!(d.eof_ok() && !d.is_done());
    }

    #[test]
    fn rejects_bad_chunks() {
        let mut out = Vec::new();
        assert!(BodyDecoder::new(BodyFraming::Chunked).feed(b"zz\r\n", &mut out).is_err());
        assert!(BodyDecoder::new(BodyFraming::Chunked).feed(b"1\r\nab\r\n", &mut out).is_err());
        assert!(BodyDecoder::new(BodyFraming::Chunked).feed(&[b'1'; 9000], &mut out).is_err());
    }

    #[test]
    fn hop_by_hop() {
        let conn = vec!["x-secret".to_string()];
        assert!(is_hop_by_hop("Upgrade", &conn));
        assert!(is_hop_by_hop("X-Secret", &conn));
        assert!(!is_hop_by_hop("Sec-WebSocket-Accept", &conn));
    }
}
