//! WebSocket frame boundaries (RFC 6455 §5.2) in one direction of a tunnel, from frame
//! headers: payloads are counted, never read or unmasked, except the two bytes of a Close
//! frame's status code. The relay uses it to end a drained tunnel politely: a Close frame may
//! only go in between two frames (control frames may come between the fragments of a message,
//! so any frame boundary will do); the end of a tunnel is logged with each side's close code
//! and messages.
//!
//! A checked direction ([`Frames::checked`]) also judges each header by its [`Rules`] and
//! spots the client's Pongs that may answer the module's own Pings; its driver feeds it
//! with [`Frames::feed_checked`], which stops at each such event, and holds back the bytes
//! of a header not yet complete ([`Frames::held`]) so that nothing of a frame is relayed
//! before its header was judged.
#![forbid(unsafe_code)]

use crate::frame_rules::{Header, Message, Rules, Violation};

/// The payload length of the module's own Pings (and so of the Pongs that answer them).
pub const PING_LEN: usize = 12;

/// What [`Frames::feed_checked`] stopped at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The bytes were accounted for, nothing to report.
    None,
    /// The header just completed breaks a rule: it is [`Frames::held`], and nothing from it on
    /// may be relayed.
    Broke(Violation),
    /// A Pong with a payload of [`PING_LEN`] bytes (unmasked) just passed: the last
    /// `frame_len` bytes fed.
    Pong { payload: [u8; PING_LEN], frame_len: usize },
}

/// Where the byte stream of one direction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frames {
    state: State,
    /// The opcode of the frame being passed, its FIN bit and its masking key (if masked).
    opcode: u8,
    fin: bool,
    mask: Option<[u8; 4]>,
    /// Payload bytes of that frame passed so far.
    at: u64,
    /// A whole Close frame has passed: the sender will send nothing more.
    close_seen: bool,
    /// The status code in the sender's Close frame (RFC 6455 §7.1.5); 1005 for a Close
    /// without one; its first byte while the second is still to come.
    close_code: Option<u16>,
    /// Whole messages passed (data frames with FIN: a message of one frame or a fragmented
    /// message's last).
    messages: u64,
    /// The current frame's payload length.
    len_of_frame: u64,
    /// The length of the current frame's header.
    hlen: u8,
    /// What a checked direction's headers must obey, and its message in progress.
    rules: Option<Rules>,
    msg: Message,
    /// Pongs of [`PING_LEN`] bytes are watched for (the module pinged this sender).
    watch_pongs: bool,
    /// The unmasked payload of such a Pong so far.
    pong: [u8; PING_LEN],
}

/// The longest frame header RFC 6455 allows: 2 bytes, an 8-byte length and a 4-byte mask.
pub const MAX_HEADER: usize = 14;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Inside a frame header: `have` of its bytes seen so far.
    Header { buf: [u8; MAX_HEADER], have: usize },
    /// Inside a payload, `left` bytes to go.
    Payload { left: u64 },
    /// Not WebSocket framing (or a length RFC 6455 forbids): boundaries are unknown for good.
    Lost,
}

impl State {
    const HEADER: State = State::Header { buf: [0; MAX_HEADER], have: 0 };
}

impl Default for Frames {
    fn default() -> Self {
        Frames {
            state: State::HEADER,
            opcode: 0,
            fin: false,
            mask: None,
            at: 0,
            close_seen: false,
            close_code: None,
            messages: 0,
            len_of_frame: 0,
            hlen: 0,
            rules: None,
            msg: Message::default(),
            watch_pongs: false,
            pong: [0; PING_LEN],
        }
    }
}

/// The full length of a frame header, from its second byte.
fn header_len(b1: u8) -> usize {
    let masked = if b1 & 0x80 != 0 { 4 } else { 0 };
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + masked
}

impl Frames {
    /// A direction whose headers are judged by `rules` (None: only Pongs are watched for).
    pub fn checked(rules: Option<Rules>) -> Frames {
        Frames { rules, ..Frames::default() }
    }

    /// From now on, Pongs that may answer the module's Pings are reported.
    pub fn watch_pongs(&mut self) {
        self.watch_pongs = true;
    }

    /// Whether headers must be complete (and judged) before their bytes are relayed.
    pub fn is_checked(&self) -> bool {
        self.rules.is_some() || self.watch_pongs
    }

    /// Accounts for bytes that passed, in stream order (no rule is enforced).
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (n, _) = self.step(bytes, false);
            bytes = &bytes[n..];
        }
    }

    /// Accounts for bytes read from the sender, stopping right after an event: returns how
    /// many were accounted for and what happened. After [`Event::Broke`], feed nothing more.
    pub fn feed_checked(&mut self, bytes: &[u8]) -> (usize, Event) {
        let mut at = 0;
        while at < bytes.len() {
            let (n, event) = self.step(&bytes[at..], true);
            at += n;
            if event != Event::None {
                return (at, event);
            }
        }
        (at, Event::None)
    }

    /// The bytes at the end of what was fed that must not be relayed yet: a header not yet
    /// complete, or a Pong that may be the answer to the module's Ping (checked directions).
    pub fn held(&self) -> usize {
        if !self.is_checked() {
            return 0;
        }
        match self.state {
            State::Header { have, .. } => have,
            State::Payload { .. } if self.pong_candidate() => self.hlen as usize + self.at as usize,
            _ => 0,
        }
    }

    fn pong_candidate(&self) -> bool {
        self.watch_pongs && self.opcode == 10 && self.len_of_frame == PING_LEN as u64
    }

    /// One step: the rest of a payload, or of a header. `check`: enforce the rules and
    /// report events.
    fn step(&mut self, bytes: &[u8], check: bool) -> (usize, Event) {
        match &mut self.state {
            State::Lost => (bytes.len(), Event::None),
            State::Payload { left } => {
                let n = (*left).min(bytes.len() as u64);
                *left -= n;
                let done = *left == 0;
                let part = &bytes[..n as usize];
                if self.opcode == 8 && self.at < 2 {
                    self.code_bytes(part);
                }
                if self.pong_candidate() {
                    self.pong_bytes(part);
                }
                self.at += n;
                (n as usize, if done { self.frame_done(check) } else { Event::None })
            }
            State::Header { buf, have } => {
                let need = if *have < 2 { 2 } else { header_len(buf[1]) };
                let n = (need - *have).min(bytes.len());
                buf[*have..*have + n].copy_from_slice(&bytes[..n]);
                *have += n;
                if *have < 2 || *have < header_len(buf[1]) {
                    return (n, Event::None);
                }
                let (raw, have) = (*buf, *have);
                (n, self.header_done(&raw[..have], check))
            }
        }
    }

    fn header_done(&mut self, raw: &[u8], check: bool) -> Event {
        let h = Header::parse(raw);
        self.opcode = h.opcode;
        self.fin = h.fin;
        self.mask = h.masked.then(|| raw[raw.len() - 4..].try_into().expect("4 bytes"));
        self.at = 0;
        self.hlen = raw.len() as u8;
        self.len_of_frame = h.len.unwrap_or(u64::MAX);
        if let Some(rules) = self.rules {
            if let (Err(v), true) = (self.msg.check(&rules, &h), check) {
                // Judged with its header held: the header's bytes are the last ones fed.
                self.state = State::Payload { left: self.len_of_frame };
                return Event::Broke(v);
            }
        }
        match h.len {
            None => {
                self.state = State::Lost;
                Event::None
            }
            Some(0) => self.frame_done(check),
            Some(left) => {
                self.state = State::Payload { left };
                Event::None
            }
        }
    }

    /// Accounts for bytes up to the first frame boundary: Some(n) once one is reached after
    /// `n` of them (0 if the stream is there already), None if all of them went by without
    /// reaching one (or the boundaries are lost). The rest of `bytes` is not accounted for.
    pub fn feed_to_boundary(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut n = 0;
        loop {
            if self.at_boundary() {
                return Some(n);
            }
            if self.lost() || n == bytes.len() {
                return None;
            }
            // Never 0 between boundaries: a finished header or payload ends the frame.
            let step = self.to_boundary().min(bytes.len() - n);
            self.feed(&bytes[n..n + step]);
            n += step;
        }
    }

    /// Accounts for `n` payload bytes moved unseen (spliced); `n` must not exceed
    /// [`Frames::payload_left`].
    pub fn skip(&mut self, n: usize) {
        if let State::Payload { left } = &mut self.state {
            debug_assert!(n as u64 <= *left);
            *left -= (n as u64).min(*left);
            self.at += n as u64;
            if *left == 0 {
                self.frame_done(false);
            }
        }
    }

    fn frame_done(&mut self, check: bool) -> Event {
        let pong = check && self.pong_candidate();
        self.state = State::HEADER;
        if self.opcode == 8 && !self.close_seen {
            self.close_seen = true;
            if self.at < 2 {
                self.close_code = Some(1005);
            }
        }
        if self.fin && self.opcode <= 2 {
            self.messages += 1;
        }
        if pong {
            let frame_len = self.hlen as usize + PING_LEN;
            return Event::Pong { payload: self.pong, frame_len };
        }
        Event::None
    }

    /// Payload bytes of a watched Pong from offset `self.at`, unmasked.
    fn pong_bytes(&mut self, bytes: &[u8]) {
        for (i, &b) in bytes.iter().enumerate() {
            let pos = self.at as usize + i;
            self.pong[pos] = b ^ self.mask.map_or(0, |k| k[pos % 4]);
        }
    }

    /// Payload bytes of a Close frame from offset `self.at` (< 2): its status code's.
    fn code_bytes(&mut self, bytes: &[u8]) {
        if self.close_seen {
            return;
        }
        for (i, &b) in bytes.iter().take(2 - self.at as usize).enumerate() {
            let pos = self.at as usize + i;
            let b = b ^ self.mask.map_or(0, |k| k[pos % 4]);
            self.close_code = Some(match pos {
                0 => (b as u16) << 8,
                _ => self.close_code.unwrap_or(0) | b as u16,
            });
        }
    }

    /// The status code of the sender's Close frame (1005 if it had none); None before a
    /// whole Close frame passed.
    pub fn close_code(&self) -> Option<u16> {
        self.close_code.filter(|_| self.close_seen)
    }

    /// The length of the last header that completed.
    pub fn header_len(&self) -> usize {
        self.hlen as usize
    }

    /// Whole messages passed this way.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// A whole Close frame has passed this way.
    pub fn close_seen(&self) -> bool {
        self.close_seen
    }

    /// Between two frames: a Close frame may go next.
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, State::Header { have: 0, .. })
    }

    /// Whether boundaries are still known.
    pub fn lost(&self) -> bool {
        self.state == State::Lost
    }

    /// How many bytes may move unseen (spliced): the payload before the next header (0 inside
    /// a header); any number once the boundaries are lost.
    pub fn payload_left(&self) -> u64 {
        match self.state {
            State::Payload { left } => left,
            State::Header { .. } => 0,
            State::Lost => u64::MAX,
        }
    }

    /// At most how many bytes can be read without passing the next boundary.
    pub fn to_boundary(&self) -> usize {
        match &self.state {
            State::Payload { left } => (*left).min(usize::MAX as u64) as usize,
            State::Header { buf, have } if *have >= 2 => header_len(buf[1]) - have,
            State::Header { have, .. } => 2 - have,
            State::Lost => usize::MAX,
        }
    }
}

/// Close code 1001, Going Away (RFC 6455 §7.4.1).
pub const GOING_AWAY: u16 = 1001;

/// A Close frame with `code` and no reason. Frames to a server must be masked (§5.3).
pub fn close_frame(code: u16, mask: Option<[u8; 4]>) -> Vec<u8> {
    let body = code.to_be_bytes();
    match mask {
        None => vec![0x88, 0x02, body[0], body[1]],
        Some(k) => vec![0x88, 0x82, k[0], k[1], k[2], k[3], body[0] ^ k[0], body[1] ^ k[1]],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(opcode: u8, fin: bool, len: usize, masked: bool) -> Vec<u8> {
        wskit::raw::frame(
            opcode,
            fin,
            &wskit::raw::pattern(len),
            masked.then_some(wskit::raw::MASK),
        )
    }

    /// Feeding a stream in pieces of every size gives the same boundaries as in one go.
    #[test]
    fn boundaries_do_not_depend_on_how_bytes_arrive() {
        let mut stream = Vec::new();
        let mut ends = Vec::new();
        for (op, fin, len, mask) in [
            (1, true, 5, false),
            (2, false, 200, true),
            (9, true, 0, true),
            (0, true, 70_000, true),
            (10, true, 125, false),
            (8, true, 2, false),
        ] {
            stream.extend(frame(op, fin, len, mask));
            ends.push(stream.len());
        }
        for piece in [1, 2, 3, 7, 13, 64, 4096, stream.len()] {
            let mut f = Frames::default();
            let mut seen = Vec::new();
            for (i, chunk) in stream.chunks(piece).enumerate() {
                for (j, b) in chunk.iter().enumerate() {
                    f.feed(std::slice::from_ref(b));
                    if f.at_boundary() {
                        seen.push(i * piece + j + 1);
                    }
                }
            }
            assert_eq!(seen, ends, "piece {piece}");
            let mut g = Frames::default();
            for chunk in stream.chunks(piece) {
                g.feed(chunk);
            }
            assert!(g.at_boundary() && !g.lost());
        }
    }

    #[test]
    fn reads_bounded_by_to_boundary_stop_exactly_at_each_boundary() {
        let mut stream = frame(2, true, 300, true);
        stream.extend(frame(1, true, 3, false));
        let mut f = Frames::default();
        let mut at = 0;
        let mut stops = Vec::new();
        while at < stream.len() {
            let n = f.to_boundary().min(stream.len() - at);
            if f.payload_left() > 0 {
                f.skip(n);
            } else {
                f.feed(&stream[at..at + n]);
            }
            at += n;
            if f.at_boundary() {
                stops.push(at);
            }
        }
        assert_eq!(stops, vec![2 + 2 + 4 + 300, stream.len()]);
    }

    #[test]
    fn feed_to_boundary_stops_at_the_first_boundary_in_any_chunking() {
        let mut stream = frame(2, true, 300, true);
        let first = stream.len();
        stream.extend(frame(1, true, 5, true));
        for chunk in [1, 2, 3, 7, 100, 299, first, first + 1, stream.len()] {
            let mut f = Frames::default();
            assert_eq!(f.feed_to_boundary(&stream[..0]), Some(0), "at a boundary before anything");
            f.feed(&stream[..1]);
            let mut at = 1;
            let found = loop {
                let end = (at + chunk).min(stream.len());
                match f.feed_to_boundary(&stream[at..end]) {
                    Some(n) => break at + n,
                    None => at = end,
                }
            };
            assert_eq!(found, first, "chunk {chunk}");
            assert!(f.at_boundary());
        }
        let mut lost = Frames::default();
        lost.feed(&[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(lost.feed_to_boundary(b"anything"), None);
    }

    #[test]
    fn a_length_with_the_top_bit_set_loses_the_boundaries() {
        let mut f = Frames::default();
        f.feed(&[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1]);
        assert!(f.lost() && !f.at_boundary());
        f.feed(b"anything");
        assert!(f.lost());
        // Whatever follows may be spliced in any amount.
        assert_eq!(f.payload_left(), u64::MAX);
    }

    #[test]
    fn close_codes_and_messages_are_counted_in_any_chunking() {
        let mut stream = frame(1, true, 5, true); // a message
        stream.extend(frame(2, false, 300, true)); // a fragmented one: start,
        stream.extend(frame(9, true, 4, true)); // a Ping between the fragments,
        stream.extend(frame(0, false, 10, true)); // a middle,
        stream.extend(frame(0, true, 70_000, true)); // its end
        let before_close = stream.len();
        let mut close = vec![0x0f, 0xa0]; // 4000
        close.extend_from_slice(b"bye");
        stream.extend(wskit::raw::frame(8, true, &close, Some([9, 8, 7, 6])));
        for piece in [1, 2, 3, 5, 1000, stream.len()] {
            let mut f = Frames::default();
            for chunk in stream.chunks(piece) {
                f.feed(chunk);
                assert!(f.close_code().is_none() || f.at_boundary());
            }
            assert_eq!((f.messages(), f.close_code()), (2, Some(4000)), "piece {piece}");
        }
        // Unmasked (a backend's), and a Close without a body.
        let mut f = Frames::default();
        f.feed(&close_frame(1000, None));
        assert_eq!(f.close_code(), Some(1000));
        let mut f = Frames::default();
        f.feed(&stream[..before_close]);
        assert_eq!(f.close_code(), None);
        f.feed(&[0x88, 0x00]);
        assert_eq!(f.close_code(), Some(1005));
        // A second Close changes nothing.
        f.feed(&close_frame(1000, None));
        assert_eq!(f.close_code(), Some(1005));
    }

    #[test]
    fn close_frames_carry_the_code_masked_or_not() {
        assert_eq!(close_frame(GOING_AWAY, None), vec![0x88, 2, 0x03, 0xe9]);
        let m = close_frame(GOING_AWAY, Some([0xaa, 0x55, 0, 1]));
        assert_eq!(&m[..6], &[0x88, 0x82, 0xaa, 0x55, 0, 1]);
        assert_eq!([m[6] ^ 0xaa, m[7] ^ 0x55], [0x03, 0xe9]);
        let mut f = Frames::default();
        f.feed(&m[..7]);
        assert!(!f.close_seen());
        f.feed(&m[7..]);
        assert!(f.at_boundary() && f.close_seen());
    }
}
