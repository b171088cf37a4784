//! When a direction splices and when it copies: HAProxy's "splice-auto" idea, aware of
//! WebSocket frames. Small messages are cheapest as one read and one write; bulk transfers
//! as `splice(2)` (src → pipe → dst, never in user space). A direction enters bulk mode when a
//! read fills the whole buffer. Without frames it splices whole chunks and leaves bulk mode
//! when splices come back small. With frames (WebSocket tunnels, whose boundaries the
//! polite drain needs) splices stay inside payloads: in bulk mode a header, or the small
//! rest of a payload, is copied exactly, then the payload spliced; a frame too small to be
//! worth splicing ends bulk mode.

use crate::frames::{Frames, MAX_HEADER};
use crate::sys::{CHUNK, SPLICE_SMALL};

/// How the next read of a direction is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Splice at most this many bytes.
    Splice(usize),
    /// Read at most this many bytes into the buffer.
    Copy(usize),
}

/// Frames whose boundaries are known.
fn known(frames: Option<&Frames>) -> Option<&Frames> {
    frames.filter(|f| !f.lost())
}

/// What to read next. A closing direction (polite drain) never reads past its next boundary.
pub fn next(frames: Option<&Frames>, bulk: bool, closing: bool) -> Next {
    let Some(f) = known(frames) else {
        return if bulk { Next::Splice(CHUNK) } else { Next::Copy(CHUNK) };
    };
    if !bulk && !closing {
        return Next::Copy(CHUNK);
    }
    let left = f.payload_left();
    if left >= SPLICE_SMALL as u64 {
        Next::Splice(left.min(CHUNK as u64) as usize)
    } else if left == 0 && !closing {
        // At a header: one read of the longest header there is; a few payload bytes that come
        // with it are copied too.
        Next::Copy(MAX_HEADER)
    } else {
        Next::Copy(f.to_boundary().min(CHUNK))
    }
}

/// Whether the direction is in bulk mode after `read` moved `n` bytes; `frames` as they are
/// now, `was_header`: the read began at a frame header (payload_left was 0).
pub fn after(frames: Option<&Frames>, bulk: bool, read: Next, n: usize, was_header: bool) -> bool {
    match (known(frames), read) {
        (None, Next::Splice(_)) => n >= SPLICE_SMALL,
        (_, Next::Copy(_)) if !bulk => n == CHUNK,
        (None, Next::Copy(_)) => n == CHUNK,
        (Some(_), Next::Splice(_)) => true,
        (Some(f), Next::Copy(_)) => {
            let header_done = f.payload_left() > 0 || f.at_boundary();
            !(was_header && header_done && f.payload_left() < SPLICE_SMALL as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives the plan over a stream of frames as a relay would, reading from `stream` as
    /// much as each step allows; returns the steps taken.
    fn drive(stream: &[u8]) -> Vec<Next> {
        let (mut f, mut bulk, mut at, mut steps) = (Frames::default(), false, 0, Vec::new());
        while at < stream.len() {
            let read = next(Some(&f), bulk, false);
            let was_header = f.payload_left() == 0;
            let n = match read {
                Next::Splice(l) | Next::Copy(l) => l.min(stream.len() - at),
            };
            match read {
                Next::Splice(_) => f.skip(n),
                Next::Copy(_) => f.feed(&stream[at..at + n]),
            }
            at += n;
            bulk = after(Some(&f), bulk, read, n, was_header);
            steps.push(read);
        }
        steps
    }

    fn frame(len: usize) -> Vec<u8> {
        wskit::raw::server_frame(2, &vec![0x5a; len])
    }

    #[test]
    fn big_frames_splice_their_payloads_and_copy_their_headers() {
        let stream: Vec<u8> = (0..4).flat_map(|_| frame(64 * 1024)).collect();
        let steps = drive(&stream);
        // One full copy enters bulk mode; then per frame: the rest copied, the next header in
        // one read, the payload spliced.
        assert_eq!(steps[0], Next::Copy(CHUNK));
        assert_eq!(steps.iter().filter(|s| matches!(s, Next::Splice(_))).count(), 3, "{steps:?}");
        assert_eq!(steps.iter().filter(|s| **s == Next::Copy(MAX_HEADER)).count(), 3, "{steps:?}");
        assert!(
            steps.iter().all(|s| !matches!(s, Next::Copy(n) if *n > MAX_HEADER && *n < CHUNK)),
            "{steps:?}"
        );
    }

    #[test]
    fn small_frames_after_big_ones_leave_bulk_mode() {
        let mut stream = frame(200 * 1024);
        for _ in 0..50 {
            stream.extend(frame(100));
        }
        let steps = drive(&stream);
        let last = &steps[steps.len() - 1];
        assert_eq!(*last, Next::Copy(CHUNK), "{steps:?}");
        assert!(steps.len() < 20, "small frames are read many at a time: {steps:?}");
    }

    #[test]
    fn without_frames_bulk_splices_chunks() {
        assert_eq!(next(None, true, false), Next::Splice(CHUNK));
        assert!(!after(None, true, Next::Splice(CHUNK), 100, false));
        assert!(after(None, false, Next::Copy(CHUNK), CHUNK, false));
    }
}
