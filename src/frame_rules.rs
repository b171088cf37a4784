//! The framing rules a tunnel may enforce, one frame header at a time (RFC 6455 §5):
//! `ProxyWebsocketStrictFrames` (masking by direction, opcodes, RSV bits, control frames,
//! fragmentation) and `ProxyWebsocketMaxMessageSize` (a message's fragments together). Only
//! headers are judged, so a payload is never read: a single-frame message over the bound is
//! refused from its header, before any of its payload moves. Pure logic, no I/O.
#![forbid(unsafe_code)]

/// What one direction's frames must obey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// RFC 6455 §5 framing is checked.
    pub strict: bool,
    /// The most bytes a message (all its fragments) may carry.
    pub max_message: Option<u64>,
    /// The sender is the client (its frames must be masked) or the backend (must not be).
    pub from_client: bool,
    /// The RSV bits (0x70 of the first byte) a message's first frame may set: those of the
    /// extensions the 101 negotiated.
    pub rsv: u8,
}

impl Rules {
    /// The rules for the client's frames and for the backend's, from the server's directives
    /// and the 101's `Sec-WebSocket-Extensions`; None where nothing is to be checked.
    pub fn for_tunnel(
        strict: bool,
        max_message: Option<u64>,
        extensions: Option<&str>,
    ) -> Option<(Rules, Rules)> {
        let max_message = max_message.filter(|n| *n > 0);
        if !strict && max_message.is_none() {
            return None;
        }
        let rsv = rsv_allowed(extensions.unwrap_or(""));
        let client = Rules { strict, max_message, from_client: true, rsv };
        Some((client, Rules { from_client: false, ..client }))
    }
}

/// The RSV bits the negotiated extensions define: permessage-deflate (RFC 7692) uses RSV1;
/// an extension this module does not know may use any of them.
pub fn rsv_allowed(extensions: &str) -> u8 {
    let mut bits = 0;
    for ext in extensions.split(',') {
        let name = ext.split(';').next().unwrap_or("").trim();
        bits |= match name.to_ascii_lowercase().as_str() {
            "" => 0,
            "permessage-deflate" => 0x40,
            _ => 0x70,
        };
    }
    bits
}

/// A frame header, as far as the rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    /// The RSV bits as they are in the first byte (0x70).
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    /// The payload length; None for a 64-bit length with its top bit set.
    pub len: Option<u64>,
}

impl Header {
    /// From a complete header's bytes.
    pub fn parse(h: &[u8]) -> Header {
        let len = match h[1] & 0x7f {
            126 => Some(u16::from_be_bytes([h[2], h[3]]) as u64),
            127 => {
                let n = u64::from_be_bytes(h[2..10].try_into().expect("8 bytes"));
                (n >> 63 == 0).then_some(n)
            }
            n => Some(n as u64),
        };
        Header {
            fin: h[0] & 0x80 != 0,
            rsv: h[0] & 0x70,
            opcode: h[0] & 0x0f,
            masked: h[1] & 0x80 != 0,
            len,
        }
    }

    fn is_control(&self) -> bool {
        self.opcode >= 8
    }
}

/// A broken rule: the Close code the sender gets and which rule it broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    /// 1002 (protocol error) or 1009 (message too big).
    pub code: u16,
    pub rule: &'static str,
}

const fn protocol(rule: &'static str) -> Violation {
    Violation { code: 1002, rule }
}

/// Close code 1009, Message Too Big (RFC 6455 §7.4.1).
pub const TOO_BIG: u16 = 1009;

/// The message in progress in one direction: bytes of its fragments so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Message {
    open: Option<u64>,
}

impl Message {
    /// Judges the next header of the direction; on success the message state moves past it.
    pub fn check(&mut self, rules: &Rules, h: &Header) -> Result<(), Violation> {
        if rules.strict {
            strict(rules, h, self.open.is_some())?;
        }
        let Some(len) = h.len else {
            // Only reached without strict framing: the boundaries are lost from here on.
            return Ok(());
        };
        if h.is_control() {
            return Ok(());
        }
        let total = if h.opcode == 0 { self.open.unwrap_or(0).saturating_add(len) } else { len };
        if rules.max_message.is_some_and(|max| total > max) {
            return Err(Violation {
                code: TOO_BIG,
                rule: "message over ProxyWebsocketMaxMessageSize",
            });
        }
        self.open = (!h.fin).then_some(total);
        Ok(())
    }
}

/// RFC 6455 §5's rules for one header; `in_message`: a fragmented message is open.
fn strict(rules: &Rules, h: &Header, in_message: bool) -> Result<(), Violation> {
    if h.masked != rules.from_client {
        return Err(protocol(if rules.from_client {
            "a client's frames must be masked (RFC 6455 section 5.1)"
        } else {
            "a server's frames must not be masked (RFC 6455 section 5.1)"
        }));
    }
    if matches!(h.opcode, 3..=7 | 0xb..=0xf) {
        return Err(protocol("reserved opcode (RFC 6455 section 5.2)"));
    }
    if h.len.is_none() {
        return Err(protocol("payload length with its top bit set (RFC 6455 section 5.2)"));
    }
    // Only the first frame of a data message carries an extension's RSV bits (RFC 7692 §6).
    let allowed = if matches!(h.opcode, 1 | 2) { rules.rsv } else { 0 };
    if h.rsv & !allowed != 0 {
        return Err(protocol(
            "RSV bit that no negotiated extension defines (RFC 6455 section 5.2)",
        ));
    }
    if h.is_control() {
        if !h.fin {
            return Err(protocol("fragmented control frame (RFC 6455 section 5.5)"));
        }
        if h.len.is_some_and(|n| n > 125) {
            return Err(protocol("control frame over 125 bytes (RFC 6455 section 5.5)"));
        }
        return Ok(());
    }
    match (h.opcode, in_message) {
        (0, false) => {
            Err(protocol("continuation frame with no message to continue (RFC 6455 section 5.4)"))
        }
        (1 | 2, true) => {
            Err(protocol("new data frame inside a fragmented message (RFC 6455 section 5.4)"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(bytes: &[u8]) -> Header {
        Header::parse(bytes)
    }

    fn strict_client() -> Rules {
        Rules::for_tunnel(true, None, None).unwrap().0
    }

    /// Each rule of RFC 6455 §5 as a table: (frames before, the breaking header, its code).
    #[test]
    fn every_strict_rule_names_itself() {
        let masked = |b0: u8, len: u8| vec![b0, 0x80 | len, 1, 2, 3, 4];
        type Case<'a> = (&'a [Vec<u8>], Vec<u8>, &'a str);
        let table: [Case; 7] = [
            (&[], vec![0x81, 0x05], "must be masked"),
            (&[], masked(0x83, 0), "reserved opcode"),
            (&[], masked(0xc1, 1), "RSV bit"),
            (&[], masked(0x09, 0), "fragmented control"),
            (&[], masked(0x89, 126), "over 125 bytes"),
            (&[], masked(0x80, 1), "no message to continue"),
            (&[masked(0x01, 3)], masked(0x82, 1), "new data frame inside"),
        ];
        for (before, breaking, rule) in table {
            let mut m = Message::default();
            for b in before {
                m.check(&strict_client(), &header(b)).unwrap();
            }
            let v = m.check(&strict_client(), &header(&breaking)).unwrap_err();
            assert_eq!(v.code, 1002);
            assert!(v.rule.contains(rule), "{} for {rule}", v.rule);
            assert!(v.rule.is_ascii(), "httpd's log escapes anything else");
        }
        let backend = Rules::for_tunnel(true, None, None).unwrap().1;
        let v = Message::default().check(&backend, &header(&masked(0x81, 1))).unwrap_err();
        assert!(v.rule.contains("must not be masked"));
    }

    #[test]
    fn good_frames_pass_including_control_frames_between_fragments() {
        let mut m = Message::default();
        let r = strict_client();
        for h in [
            [0x01, 0x83, 0, 0, 0, 0],
            [0x89, 0x80, 0, 0, 0, 0],
            [0x00, 0x83, 0, 0, 0, 0],
            [0x80, 0x83, 0, 0, 0, 0],
            [0x82, 0x80, 0, 0, 0, 0],
            [0x88, 0x82, 0, 0, 0, 0],
        ] {
            m.check(&r, &header(&h)).unwrap();
        }
    }

    #[test]
    fn rsv1_only_with_permessage_deflate_and_only_on_a_first_frame() {
        assert_eq!(rsv_allowed("permessage-deflate; client_max_window_bits"), 0x40);
        assert_eq!(rsv_allowed(""), 0);
        assert_eq!(rsv_allowed("x-unknown, permessage-deflate"), 0x70);
        let r = Rules::for_tunnel(true, None, Some("permessage-deflate")).unwrap().0;
        let mut m = Message::default();
        m.check(&r, &header(&[0x41, 0x85, 0, 0, 0, 0])).unwrap();
        m.check(&r, &header(&[0xc1, 0x85, 0, 0, 0, 0])).unwrap_err();
        let mut m = Message::default();
        m.check(&r, &header(&[0x41, 0x85, 0, 0, 0, 0])).unwrap();
        let v = m.check(&r, &header(&[0xc0, 0x85, 0, 0, 0, 0])).unwrap_err();
        assert!(v.rule.contains("RSV"), "a continuation carries no RSV1");
    }

    /// The bound counts a message's fragments together; a message of exactly the bound passes.
    #[test]
    fn the_message_bound_sums_fragments_and_allows_exactly_the_bound() {
        let r = Rules::for_tunnel(false, Some(300), None).unwrap().0;
        let mut m = Message::default();
        m.check(&r, &header(&[0x02, 100])).unwrap();
        m.check(&r, &header(&[0x89, 100])).unwrap();
        m.check(&r, &header(&[0x80, 126, 0, 200])).unwrap();
        assert_eq!(m.check(&r, &header(&[0x82, 126, 1, 44])), Ok(()), "300 bytes: the bound");
        let v = m.check(&r, &header(&[0x82, 126, 1, 45])).unwrap_err();
        assert_eq!(v.code, TOO_BIG);
        let mut m = Message::default();
        m.check(&r, &header(&[0x01, 126, 1, 0])).unwrap();
        assert_eq!(m.check(&r, &header(&[0x80, 45])).unwrap_err().code, TOO_BIG);
        // Not strict: an unmasked client frame passes.
        assert!(Rules::for_tunnel(false, None, None).is_none());
    }
}
