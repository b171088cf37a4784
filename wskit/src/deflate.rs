//! permessage-deflate (RFC 7692) for the test backend and the tests' raw clients: one
//! compression context per direction, kept from message to message (context takeover, what
//! browsers and most servers negotiate), so a lost, repeated or reordered byte anywhere in a
//! tunnel breaks every message after it.

use flate2::write::{DeflateDecoder, DeflateEncoder};
use flate2::Compression;
use std::io::Write;

/// The four bytes a sync flush ends with, which RFC 7692 §7.2.1 takes off every message.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The sending side's context.
pub struct Deflater(DeflateEncoder<Vec<u8>>);

impl Default for Deflater {
    fn default() -> Self {
        Deflater(DeflateEncoder::new(Vec::new(), Compression::default()))
    }
}

impl Deflater {
    /// A message's payload as it goes on the wire (its first frame carries RSV1).
    pub fn compress(&mut self, message: &[u8]) -> Vec<u8> {
        self.0.write_all(message).expect("deflate into memory");
        // flate2's flush is a sync flush: the message ends on a byte boundary with TAIL.
        self.0.flush().expect("deflate into memory");
        let mut out = std::mem::take(self.0.get_mut());
        assert!(out.ends_with(&TAIL), "a sync flush ends with 00 00 ff ff");
        out.truncate(out.len() - TAIL.len());
        out
    }
}

/// The receiving side's context.
pub struct Inflater(DeflateDecoder<Vec<u8>>);

impl Default for Inflater {
    fn default() -> Self {
        Inflater(DeflateDecoder::new(Vec::new()))
    }
}

impl Inflater {
    /// The message a compressed payload carries; None if it is not the next message of this
    /// context's stream.
    pub fn inflate(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        self.0.write_all(payload).ok()?;
        self.0.write_all(&TAIL).ok()?;
        self.0.flush().ok()?;
        Some(std::mem::take(self.0.get_mut()))
    }
}

/// The first frame of a compressed message: `frame` with RSV1 set (RFC 7692 §6).
pub fn compressed(mut frame: Vec<u8>) -> Vec<u8> {
    frame[0] |= 0x40;
    frame
}

/// Whether an offer or answer (`Sec-WebSocket-Extensions`) names permessage-deflate.
pub fn named(extensions: &str) -> bool {
    extensions.split(',').any(|e| {
        e.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("permessage-deflate")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_one_context_each_way() {
        let (mut d, mut i) = (Deflater::default(), Inflater::default());
        let msgs: Vec<Vec<u8>> =
            (0..5).map(|n| format!("message {n} ").repeat(500 * n + 1).into_bytes()).collect();
        let wire: Vec<Vec<u8>> = msgs.iter().map(|m| d.compress(m)).collect();
        // Context takeover: a later message refers back to an earlier one.
        assert!(wire[4].len() < msgs[4].len() / 20, "{} of {}", wire[4].len(), msgs[4].len());
        for (m, w) in msgs.iter().zip(&wire) {
            assert_eq!(i.inflate(w).as_deref(), Some(&m[..]));
        }
        // Out of order, the second context cannot follow.
        let (mut d2, mut i2) = (Deflater::default(), Inflater::default());
        let _first = d2.compress(b"hello hello hello");
        let second = d2.compress(b"hello hello hello again");
        assert_ne!(i2.inflate(&second).as_deref(), Some(&b"hello hello hello again"[..]));
    }

    #[test]
    fn names_permessage_deflate_among_others() {
        assert!(named("permessage-deflate; client_max_window_bits"));
        assert!(named("x-foo, Permessage-Deflate"));
        assert!(!named("x-permessage-deflate-ish"));
    }
}
