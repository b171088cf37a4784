//! The backend's answer to an upgrade request: parsing its head, and the framing of the body
//! of a non-101 answer (which is relayed as an ordinary HTTP response, never tunnelled).
#![forbid(unsafe_code)]

/// Upper bound of a response head; mod_proxy_http's default `ResponseFieldSize` is 8 KiB a
/// line, and a handshake answer is far smaller than this.
pub const MAX_HEAD: usize = 64 * 1024;

/// Most header lines a head may have (httpd's own `LimitRequestFields` default is 100).
const MAX_FIELDS: usize = 256;

/// Interim (1xx) answers forwarded before the final one; the next is a 502, as
/// mod_proxy_http's `AP_MAX_INTERIM_RESPONSES`.
pub const MAX_INTERIM: usize = 10;

/// A response head. Header values and the reason phrase are bytes: obs-text (0x80-0xFF,
/// RFC 9110 §5.5) passes through untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub reason: Vec<u8>,
    pub minor_version: u8,
    pub headers: Vec<(String, Vec<u8>)>,
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
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }

    /// All values of that header joined with ", " (RFC 9110 list semantics), as text
    /// (for token lists; octets that are not UTF-8 become U+FFFD and match no token).
    pub fn get_all(&self, name: &str) -> Option<String> {
        let v: Vec<String> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect();
        (!v.is_empty()).then(|| v.join(", "))
    }

    /// 1xx other than 101: forwarded (or dropped) before the final answer.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    /// `NNN reason` as httpd's `r->status_line` takes it; None without a reason phrase, so
    /// httpd supplies its own.
    pub fn status_line(&self) -> Option<Vec<u8>> {
        (!self.reason.is_empty()).then(|| {
            let mut l = format!("{} ", self.status).into_bytes();
            l.extend_from_slice(&self.reason);
            l
        })
    }
}

/// Parses a response head from the start of `buf` (httparse: bytes, not text; bare LF line
/// ends accepted; obsolete line folding refused). Returns the head and its length in bytes;
/// whatever follows belongs to the body or, after a 101, to the tunnel.
pub fn parse_head(buf: &[u8]) -> Result<(Head, usize), HeadError> {
    // Most heads have a few fields: room for those on the stack, for the rare long one on the
    // heap (256 fields on the stack were 8 KiB that every request thread that ever opened a
    // tunnel kept in its RSS).
    match parse_into(buf, &mut [httparse::EMPTY_HEADER; FEW_FIELDS]) {
        Err(HeadError::Malformed(TOO_MANY)) => {
            parse_into(buf, &mut vec![httparse::EMPTY_HEADER; MAX_FIELDS])
        }
        parsed => parsed,
    }
}

const FEW_FIELDS: usize = 32;
const TOO_MANY: &str = "too many header lines";

fn parse_into<'a>(
    buf: &'a [u8],
    fields: &mut [httparse::Header<'a>],
) -> Result<(Head, usize), HeadError> {
    let mut resp = httparse::Response::new(fields);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return Err(if buf.len() > MAX_HEAD {
                HeadError::TooLarge
            } else {
                HeadError::Incomplete
            })
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::Malformed(TOO_MANY)),
        Err(httparse::Error::Status) => return Err(HeadError::Malformed("bad status code")),
        Err(httparse::Error::Version) => {
            return Err(HeadError::Malformed("not an HTTP/1.x status line"))
        }
        Err(httparse::Error::HeaderName) => return Err(HeadError::Malformed("bad header name")),
        Err(httparse::Error::HeaderValue) => {
            return Err(HeadError::Malformed("control character in header value"))
        }
        Err(_) => return Err(HeadError::Malformed("malformed response head")),
    };
    if len > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    // httparse reads the three digits; httpd (and so stock) takes 100-999.
    let status = resp.code.unwrap_or(0);
    if !(100..=999).contains(&status) {
        return Err(HeadError::Malformed("status code out of range"));
    }
    let minor_version = resp.version.unwrap_or(1);
    let headers = resp.headers.iter().map(|h| (h.name.to_string(), h.value.to_vec())).collect();
    // httparse hands out the reason as &str, empty when it is not UTF-8: take the bytes.
    let reason = raw_reason(&buf[..len]);
    Ok((Head { status, reason, minor_version, headers }, len))
}

/// The reason phrase straight from a status line httparse has validated.
fn raw_reason(head: &[u8]) -> Vec<u8> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or(b"");
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // "HTTP/1.x NNN reason"
    line.get(13..).map(|r| r.to_vec()).unwrap_or_default()
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) that never pass a proxy as they are.
pub fn is_hop_by_hop(name: &str, connection_tokens: &[String]) -> bool {
    const HOP: &[&str] = &[
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
        || connection_tokens.iter().any(|t| t.eq_ignore_ascii_case(name))
}

fn connection_tokens(head: &Head) -> Vec<String> {
    head.get_all("Connection")
        .map(|v| crate::upgrade::tokens(&v).map(str::to_string).collect())
        .unwrap_or_default()
}

/// How the body of a non-101 response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// The framing of a response body (RFC 9112 §6.3): none for an answer to HEAD, for 1xx,
/// 204 and 304 whatever the headers say; a Transfer-Encoding whose last coding is not
/// chunked is read until the backend closes (as httpd's HTTP_IN filter reads a proxied
/// response); Transfer-Encoding overrides Content-Length.
pub fn framing(head: &Head, head_request: bool) -> Result<BodyFraming, HeadError> {
    if head_request || head.status < 200 || head.status == 204 || head.status == 304 {
        return Ok(BodyFraming::None);
    }
    if let Some(te) = head.get_all("Transfer-Encoding") {
        let last = te.rsplit(',').next().unwrap_or("").trim();
        return Ok(if last.eq_ignore_ascii_case("chunked") {
            BodyFraming::Chunked
        } else {
            BodyFraming::UntilClose
        });
    }
    if let Some(cl) = head.get_all("Content-Length") {
        let mut vals = cl.split(',').map(str::trim);
        let first = vals.next().unwrap_or("");
        if first.is_empty()
            || first.len() > 18
            || !first.bytes().all(|b| b.is_ascii_digit())
            || vals.any(|v| v != first)
        {
            return Err(HeadError::Malformed("bad Content-Length"));
        }
        return first
            .parse()
            .map(BodyFraming::Length)
            .map_err(|_| HeadError::Malformed("bad Content-Length"));
    }
    Ok(BodyFraming::UntilClose)
}

/// The headers of a backend's answer that reach the client, given how its body is relayed
/// (`None`: a 101, which has no body). Hop-by-hop headers go; of Transfer-Encoding only
/// the codings we do not decode stay (`gzip, chunked` relays as `gzip`, and httpd chunks
/// again), so the client never gets coded bytes as plain; Content-Length stays unless a
/// Transfer-Encoding overrides it (or on a 101).
pub fn relayed_headers(head: &Head, body: Option<BodyFraming>) -> Vec<(&str, Vec<u8>)> {
    let conn = connection_tokens(head);
    let has_te = head.get("Transfer-Encoding").is_some();
    let mut out: Vec<(&str, Vec<u8>)> = Vec::with_capacity(head.headers.len());
    for (name, value) in &head.headers {
        if name.eq_ignore_ascii_case("Transfer-Encoding")
            || name.eq_ignore_ascii_case("Content-Length")
        {
            continue;
        }
        if !is_hop_by_hop(name, &conn) {
            out.push((name.as_str(), value.clone()));
        }
    }
    let Some(body) = body else { return out };
    if let Some(te) = head.get_all("Transfer-Encoding") {
        let mut codings: Vec<&str> =
            te.split(',').map(str::trim).filter(|c| !c.is_empty()).collect();
        // A chunked coding is ours to decode (or, without a body, means nothing here).
        if matches!(body, BodyFraming::Chunked | BodyFraming::None)
            && codings.last().is_some_and(|c| c.eq_ignore_ascii_case("chunked"))
        {
            codings.pop();
        }
        if !codings.is_empty() {
            out.push(("Transfer-Encoding", codings.join(", ").into_bytes()));
        }
    }
    if !has_te {
        if let Some(cl) = head.get("Content-Length") {
            out.push(("Content-Length", cl.to_vec()));
        }
    }
    out
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
                let hex = std::str::from_utf8(hex)
                    .map_err(|_| "bad chunk size")?
                    .trim_matches([' ', '\t']);
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
        assert_eq!(h.reason, b"Switching Protocols");
        assert_eq!(h.get("upgrade"), Some(&b"websocket"[..]));
        assert_eq!(&raw[n..], b"\x81\x02hi");
    }

    #[test]
    fn heads_of_up_to_256_fields_parse_and_longer_ones_are_refused() {
        let head = |n: usize| {
            let mut h = b"HTTP/1.1 101 Switching Protocols\r\n".to_vec();
            (0..n).for_each(|i| h.extend(format!("X-{i}: {i}\r\n").into_bytes()));
            h.extend(b"\r\n");
            h
        };
        for n in [0, FEW_FIELDS, FEW_FIELDS + 1, MAX_FIELDS] {
            let (h, _) = parse_head(&head(n)).unwrap_or_else(|e| panic!("{n} fields: {e:?}"));
            assert_eq!(h.headers.len(), n);
        }
        assert_eq!(parse_head(&head(MAX_FIELDS + 1)), Err(HeadError::Malformed(TOO_MANY)));
    }

    #[test]
    fn incomplete_too_large_and_malformed() {
        assert_eq!(parse_head(b"HTTP/1.1 101 OK\r\nUpgrade: x\r\n"), Err(HeadError::Incomplete));
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        while big.len() <= MAX_HEAD {
            big.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(parse_head(&big), Err(HeadError::TooLarge));
        assert!(matches!(parse_head(b"SSH-2.0-x\r\n\r\n"), Err(HeadError::Malformed(_))));
        assert!(matches!(parse_head(b"HTTP/1.1 1011 x\r\n\r\n"), Err(HeadError::Malformed(_))));
        assert!(matches!(parse_head(b"HTTP/1.1 099 x\r\n\r\n"), Err(HeadError::Malformed(_))));
        assert!(matches!(parse_head(b"HTTP/1.1 101 x\r\nA\r\n\r\n"), Err(HeadError::Malformed(_))));
        assert!(matches!(
            parse_head(b"HTTP/1.1 101 x\r\nA: b\r\n c\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            parse_head(b"HTTP/1.1 101 x\r\nA b: c\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            parse_head(b"HTTP/1.1 101 x\r\nA: b\x01c\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(parse_head(b"HTTP/2 101 x\r\n\r\n"), Err(HeadError::Malformed(_))));
    }

    #[test]
    fn header_bytes_are_bytes_and_odd_statuses_pass() {
        let (h, _) = parse_head(b"HTTP/1.1 404 Caf\xe9\r\nX-Name: caf\xe9\r\n\r\n").unwrap();
        assert_eq!(h.get("x-name"), Some(&b"caf\xe9"[..]));
        assert_eq!(h.status_line().unwrap(), b"404 Caf\xe9");
        let (h, _) = parse_head(b"HTTP/1.1 999 Odd\r\n\r\n").unwrap();
        assert_eq!((h.status, h.status_line().unwrap()), (999, b"999 Odd".to_vec()));
        let (h, _) = parse_head(b"HTTP/1.1 200\r\n\r\n").unwrap();
        assert_eq!(h.status_line(), None);
    }

    #[test]
    fn accepts_bare_lf() {
        let (h, n) = parse_head(b"HTTP/1.0 404 Not Found\nX: y\n\nbody").unwrap();
        assert_eq!((h.status, h.minor_version, n), (404, 0, 29));
    }

    #[test]
    fn interim_answers() {
        let h = |s: &str| parse_head(format!("HTTP/1.1 {s}\r\n\r\n").as_bytes()).unwrap().0;
        assert!(
            h("100 Continue").is_interim()
                && h("103 Early Hints").is_interim()
                && h("199 x").is_interim()
        );
        assert!(!h("101 Switching").is_interim() && !h("200 OK").is_interim());
    }

    fn head(status: &str, extra: &str) -> Head {
        parse_head(format!("HTTP/1.1 {status}\r\n{extra}\r\n").as_bytes()).unwrap().0
    }

    #[test]
    fn framing_rules() {
        let ok = |extra: &str| head("200 OK", extra);
        assert_eq!(framing(&ok("Content-Length: 5\r\n"), false), Ok(BodyFraming::Length(5)));
        assert_eq!(
            framing(&ok("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), false),
            Ok(BodyFraming::Chunked)
        );
        assert_eq!(framing(&ok("Transfer-Encoding: gzip\r\n"), false), Ok(BodyFraming::UntilClose));
        assert_eq!(
            framing(&ok("Transfer-Encoding: chunked, gzip\r\n"), false),
            Ok(BodyFraming::UntilClose)
        );
        assert_eq!(framing(&ok(""), false), Ok(BodyFraming::UntilClose));
        assert!(framing(&ok("Content-Length: 5, 6\r\n"), false).is_err());
        assert!(framing(&ok("Content-Length: -1\r\n"), false).is_err());
        assert!(framing(&ok("Content-Length: 99999999999999999999\r\n"), false).is_err());
    }

    #[test]
    fn no_body_for_head_1xx_204_304_whatever_the_headers_say() {
        let cl = "Content-Length: 1000\r\n";
        assert_eq!(framing(&head("200 OK", cl), true), Ok(BodyFraming::None));
        assert_eq!(
            framing(&head("200 OK", "Transfer-Encoding: chunked\r\n"), true),
            Ok(BodyFraming::None)
        );
        for s in ["204 No Content", "304 Not Modified", "100 Continue", "103 Early Hints"] {
            assert_eq!(framing(&head(s, cl), false), Ok(BodyFraming::None), "{s}");
        }
    }

    fn names(v: &[(&str, Vec<u8>)]) -> Vec<String> {
        v.iter().map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v))).collect()
    }

    #[test]
    fn relayed_headers_keep_what_is_not_decoded() {
        let h = head("200 OK", "Transfer-Encoding: gzip, chunked\r\nContent-Length: 9\r\nX-A: 1\r\nConnection: close, X-Secret\r\nX-Secret: s\r\nKeep-Alive: t=1\r\n");
        assert_eq!(
            names(&relayed_headers(&h, Some(BodyFraming::Chunked))),
            ["X-A: 1", "Transfer-Encoding: gzip"]
        );
        let h = head("200 OK", "Transfer-Encoding: gzip\r\n");
        assert_eq!(
            names(&relayed_headers(&h, Some(BodyFraming::UntilClose))),
            ["Transfer-Encoding: gzip"]
        );
        let h = head("200 OK", "Transfer-Encoding: chunked\r\n");
        assert!(relayed_headers(&h, Some(BodyFraming::Chunked)).is_empty());
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nX-Name: caf\xe9\r\n\r\n")
            .unwrap()
            .0;
        assert_eq!(
            relayed_headers(&h, Some(BodyFraming::None)),
            [("X-Name", b"caf\xe9".to_vec()), ("Content-Length", b"1000".to_vec())]
        );
        let h = head(
            "101 Switching Protocols",
            "Upgrade: websocket\r\nContent-Length: 0\r\nSec-WebSocket-Accept: k\r\n",
        );
        assert_eq!(names(&relayed_headers(&h, None)), ["Sec-WebSocket-Accept: k"]);
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
