//! The polite end of a tunnel that runs through httpd's connection filters (TLS, HTTP/2 ends),
//! decided where its bytes pass: in the input filter of each direction. mod_proxy's tunnel
//! gives control back to us only after a quiet slice, so a direction that never pauses must
//! end itself from inside its filter: up to its next frame boundary, then a Close 1001 for its
//! destination, then nothing more from its sender (read and dropped, as the raw relay does)
//! until the sender's own Close; after that it reads as end of stream. A direction that rests
//! is closed from outside (between slices, or by the other direction's filter).

use super::core::{Polite, Tick};
use crate::frames::Frames;
use crate::sys::going_away;

/// One direction of a filtered tunnel: its sender's frames and its part in a polite end (the
/// core's rule, [`Polite`], applied to bytes as the filter sees them).
#[derive(Debug, Clone, Copy)]
pub struct Direction {
    /// None when the tunnel does not speak WebSocket: it only ends at the deadline.
    frames: Option<Frames>,
    phase: Polite,
    to_backend: bool,
    /// Bytes passed on so far.
    passed: u64,
    /// When bytes last passed (or the tunnel began): the write-stall clock's start, should
    /// bytes wait now.
    moved_at: Tick,
}

impl Direction {
    pub fn new(to_backend: bool, websocket: bool) -> Direction {
        Direction {
            frames: websocket.then(Frames::default),
            phase: Polite::Open,
            to_backend,
            passed: 0,
            moved_at: Tick::default(),
        }
    }

    /// The tunnel begins at `now`.
    pub fn started(&mut self, now: Tick) {
        self.moved_at = now;
    }

    /// Where this direction's bytes go.
    pub fn to(&self) -> super::core::Side {
        if self.to_backend {
            super::core::Side::Backend
        } else {
            super::core::Side::Client
        }
    }

    /// When bytes last passed this way.
    pub fn moved_at(&self) -> Tick {
        self.moved_at
    }

    /// Bytes just read from the sender: how many of them go on. In the polite end (`polite`)
    /// an open direction keeps bytes up to its next boundary, its Close falls due there, and
    /// the rest is dropped (still watched for the sender's Close).
    pub fn read(&mut self, bytes: &[u8], polite: bool, now: Tick) -> usize {
        let keep = self.keep(bytes, polite);
        self.passed += keep as u64;
        if keep > 0 {
            self.moved_at = now;
        }
        keep
    }

    fn keep(&mut self, bytes: &[u8], polite: bool) -> usize {
        let Some(f) = self.frames.as_mut() else { return bytes.len() };
        if polite && self.phase == Polite::Open && !f.lost() {
            self.phase = Polite::Closing;
        }
        match self.phase {
            Polite::Closing => match f.feed_to_boundary(bytes) {
                Some(n) => {
                    self.phase = self.phase.after_bytes(f);
                    f.feed(&bytes[n..]);
                    n
                }
                None => bytes.len(),
            },
            Polite::Open => {
                f.feed(bytes);
                bytes.len()
            }
            Polite::Due { .. } | Polite::Closed => {
                f.feed(bytes);
                0
            }
        }
    }

    /// Whether the direction's Close fell due in `read` (see `take_due_close`).
    pub fn due(&self) -> bool {
        matches!(self.phase, Polite::Due { .. })
    }

    /// Once the Close fell due in `read`: the direction is closed, and the Close for the
    /// destination goes right behind the bytes kept.
    pub fn take_due_close(&mut self) -> Option<Vec<u8>> {
        match self.phase {
            Polite::Due { send } => self.close(!send),
            _ => None,
        }
    }

    /// If the direction is open and rests between frames (everything read went on whole), it
    /// is closed now, from outside the filter: the Close for the destination.
    pub fn close_if_resting(&mut self) -> Option<Vec<u8>> {
        match self.frames {
            Some(f) if matches!(self.phase, Polite::Open | Polite::Closing) && f.at_boundary() => {
                self.close(f.close_seen())
            }
            _ => None,
        }
    }

    fn close(&mut self, sender_closed: bool) -> Option<Vec<u8>> {
        self.phase = Polite::Closed;
        (!sender_closed).then(|| going_away(self.to_backend))
    }

    /// Where the sender's frames stand (None for other protocols).
    pub fn frames(&self) -> Option<Frames> {
        self.frames
    }

    /// Bytes passed on so far (our Close not included).
    pub fn passed(&self) -> u64 {
        self.passed
    }

    /// Its Close went to the destination (or the sender's own went before it).
    pub fn closed(&self) -> bool {
        self.phase == Polite::Closed
    }

    /// The sender's Close followed ours (or came first): nothing more is to come this way.
    pub fn finished(&self) -> bool {
        self.closed() && self.frames.is_some_and(|f| f.close_seen())
    }
}

/// After direction `i` of `dirs` read in the polite end: the Close to append to what it
/// passes on, and the Close for the other direction's destination (the sender of `i`) if
/// that direction rests, so the sender hears of the end without waiting for the other side.
pub fn closes_after_read(
    dirs: &mut [Direction; 2],
    i: usize,
) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    if !dirs[i].due() {
        return (None, None);
    }
    (dirs[i].take_due_close(), dirs[1 - i].close_if_resting())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Tick = Tick(0);

    /// A frame of `len` payload bytes, masked (client to backend) or not.
    fn frame(opcode: u8, len: usize, masked: bool) -> Vec<u8> {
        wskit::raw::frame(opcode, true, &vec![b'x'; len], masked.then_some(wskit::raw::MASK))
    }

    fn is_going_away(close: &[u8], masked: bool) -> bool {
        close[0] == 0x88
            && (close[1] & 0x80 != 0) == masked
            && close.len() == if masked { 8 } else { 4 }
    }

    #[test]
    fn before_the_polite_end_everything_passes() {
        let mut d = Direction::new(true, true);
        let bytes = frame(2, 100, true);
        assert_eq!(d.read(&bytes[..50], false, T), 50);
        assert_eq!(d.read(&bytes[50..], false, T), bytes.len() - 50);
        assert!(d.take_due_close().is_none() && !d.closed());
    }

    #[test]
    fn a_busy_direction_stops_at_its_next_boundary_and_drops_until_the_senders_close() {
        let mut d = Direction::new(true, true);
        let mut stream = frame(2, 100, true);
        let first = stream.len();
        stream.extend(frame(2, 10, true));
        // Mid-frame when the polite end begins: the frame finishes, nothing after it passes.
        assert_eq!(d.read(&stream[..30], false, T), 30);
        assert_eq!(d.read(&stream[30..], true, T), first - 30);
        let close = d.take_due_close().expect("due at the boundary");
        assert!(is_going_away(&close, true), "masked towards the backend: {close:?}");
        assert!(d.closed() && !d.finished() && d.take_due_close().is_none());
        assert_eq!(d.passed(), first as u64, "what passed: the frames before the boundary");
        // The sender goes on a while, then answers with its Close.
        assert_eq!(d.read(&frame(1, 20, true), true, T), 0);
        assert!(!d.finished());
        let answer = frame(8, 2, true);
        assert_eq!(d.read(&answer[..3], true, T), 0);
        assert!(!d.finished());
        assert_eq!(d.read(&answer[3..], true, T), 0);
        assert!(d.finished());
    }

    #[test]
    fn a_direction_between_frames_closes_at_once() {
        let mut d = Direction::new(false, true);
        assert_eq!(d.read(&frame(1, 5, false), false, T), 7);
        assert_eq!(d.read(&frame(1, 5, false), true, T), 0, "the boundary came first");
        assert!(is_going_away(&d.take_due_close().unwrap(), false));
    }

    #[test]
    fn a_resting_direction_is_closed_from_outside_and_a_mid_frame_one_is_not() {
        let mut resting = Direction::new(false, true);
        assert!(is_going_away(&resting.close_if_resting().unwrap(), false));
        assert!(resting.closed() && resting.close_if_resting().is_none());
        let mut mid = Direction::new(false, true);
        mid.read(&frame(2, 50, false)[..10], false, T);
        assert!(mid.close_if_resting().is_none());
    }

    #[test]
    fn a_sender_whose_own_close_passed_gets_no_second_close() {
        // The client's Close is half through when the polite end begins: it goes on whole,
        // ours does not follow.
        let mut d = Direction::new(true, true);
        let close = frame(8, 2, true);
        assert_eq!(d.read(&close[..3], false, T), 3);
        assert_eq!(d.read(&close[3..], true, T), close.len() - 3);
        assert!(d.due() && d.take_due_close().is_none());
        assert!(d.closed() && d.finished(), "nothing more comes from a sender that closed");
        // Resting, its Close passed earlier: closed from outside without a Close either.
        let mut r = Direction::new(false, true);
        r.read(&frame(8, 2, false), false, T);
        assert!(r.close_if_resting().is_none() && r.finished());
        // Its Close after the boundary (dropped): ours goes, and theirs counts as the answer.
        let mut late = Direction::new(true, true);
        let mut bytes = frame(2, 3, true);
        bytes.extend(frame(8, 2, true));
        assert_eq!(late.read(&bytes, true, T), 0);
        assert!(late.take_due_close().is_some() && late.finished());
    }

    #[test]
    fn without_websocket_bytes_always_pass_and_nothing_closes() {
        let mut d = Direction::new(true, false);
        assert_eq!(d.read(b"GET / HTTP/1.1\r\n", true, T), 16);
        assert!(d.take_due_close().is_none() && d.close_if_resting().is_none() && !d.finished());
    }

    #[test]
    fn the_direction_that_closes_tells_its_sender_if_the_other_way_rests() {
        let mut dirs = [Direction::new(true, true), Direction::new(false, true)];
        assert_eq!(dirs[0].read(&frame(2, 5, true), true, T), 0);
        let (here, back) = closes_after_read(&mut dirs, 0);
        assert!(is_going_away(&here.unwrap(), true));
        assert!(is_going_away(&back.unwrap(), false), "the client hears at once");
        assert!(dirs[1].closed());
        // The other way is mid-frame: it closes itself at its boundary later.
        let mut dirs = [Direction::new(true, true), Direction::new(false, true)];
        let big = frame(2, 60, false);
        dirs[1].read(&big[..10], false, T);
        dirs[0].read(&frame(2, 5, true), true, T);
        assert!(closes_after_read(&mut dirs, 0).1.is_none());
        assert_eq!(dirs[1].read(&big[10..], true, T), big.len() - 10);
        assert!(is_going_away(&closes_after_read(&mut dirs, 1).0.unwrap(), false));
    }
}
