//! The tunnel core (docs/DESIGN.md §5): every decision about a tunnel, with no I/O in it. A
//! [`Direction`] says what to read next (copy or splice, how much, or nothing), what to write
//! next (bytes, the kernel pipe, a FIN), when a WebSocket Close 1001 is due and when the
//! direction is finished; a [`Core`] holds both directions and says which deadline comes next
//! and why the tunnel ended. Drivers do the I/O and pass the time in: the poll driver on the
//! request thread (`relay`), the asynchronous one on the child's runtime (`detached`), both
//! through one pump (`pump`), whatever the ends (raw sockets, or connections through httpd's
//! filters: `filters`).
//!
//! Buffers ([`Buffers`]): a tunnel that has its thread to itself keeps its buffer while it is
//! busy and frees it after a quiet second; tunnels that share a thread (the runtime's) take
//! one from the thread's pool for each message and give it back as soon as it is written.
//! Either way an idle tunnel holds none, and a busy one allocates nothing per message.

use super::bulk::{self, Next};
pub use super::end::{End, Side};
use super::summary::{self, Summary};
use crate::frame_rules::Violation;
use crate::frames::{Event, Frames, PING_LEN};
use crate::sys::{PageBuffer, CHUNK};
use std::cell::RefCell;
use std::time::Duration;

/// A point in time, in milliseconds of the coarse monotonic clock (a few ms resolution, a
/// fraction of the cost of a precise read): good enough for limits measured in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Tick(pub u64);

impl Tick {
    pub fn now() -> Tick {
        Tick(crate::sys::monotonic_coarse_ms())
    }

    pub fn after(self, d: Duration) -> Tick {
        Tick(self.0.saturating_add(d.as_millis().min(u64::MAX as u128) as u64))
    }

    /// How long from `self` until `later` (zero if it passed).
    pub fn until(self, later: Tick) -> Duration {
        Duration::from_millis(later.0.saturating_sub(self.0))
    }
}

use super::limits::Timeouts;

/// How often at most a busy tunnel adds its bytes to the status board (a shared cache line).
pub const SHOW_EVERY: Duration = Duration::from_millis(250);

/// How long a tunnel with a thread to itself keeps its buffers without traffic.
pub const RELEASE_AFTER: Duration = Duration::from_secs(1);

/// Where a direction's buffer lives between messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffers {
    /// The tunnel has its thread to itself (the poll driver): the direction keeps its buffer
    /// (and kernel pipe) while it is busy and gives them back after [`RELEASE_AFTER`] without
    /// traffic.
    Keep,
    /// Many tunnels share the thread (the runtime): a buffer goes back to the thread's pool as
    /// soon as it is empty, so memory follows the bytes in flight, not the tunnels.
    Share,
}

/// What a direction reads next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Read at most this many bytes into the direction's buffer ([`Direction::read_space`]).
    Copy(usize),
    /// Splice at most this many bytes from the socket into the kernel pipe.
    Splice(usize),
    /// After its Close went out: read and drop what the sender still sends ([`Direction::discarded`]).
    Discard,
}

/// What a direction writes next.
#[derive(Debug, PartialEq, Eq)]
pub enum Out<'a> {
    Bytes(&'a [u8]),
    /// This many bytes wait in the kernel pipe.
    Pipe(usize),
    /// Every byte went: the FIN (or, in the polite end, the FIN after our Close).
    Fin,
}

/// A direction's part in the polite end of a WebSocket tunnel (a draining child), the one
/// rule every driver follows: up to the next frame boundary, then a Close 1001 to the
/// destination unless the sender's own Close already went that way, then the sender's bytes
/// are read and dropped until its own Close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polite {
    /// Bytes pass.
    Open,
    /// The polite end began: bytes pass up to the next frame boundary.
    Closing,
    /// The boundary came: the Close goes next (`send` false when the sender's own Close was
    /// the last frame through, a close handshake under way needs no second one).
    Due { send: bool },
    /// Our Close (or the sender's) went; the sender's bytes are dropped until its own Close.
    Closed,
}

impl Polite {
    /// After bytes of a closing direction passed, with `frames` where they stand now;
    /// `boundary`: the bytes to relay end at a frame boundary.
    pub fn after_bytes(self, frames: &Frames, boundary: bool) -> Polite {
        match self {
            Polite::Closing if frames.close_seen() => Polite::Due { send: false },
            Polite::Closing if boundary => Polite::Due { send: true },
            other => other,
        }
    }
}

thread_local! {
    /// Empty buffers of `CHUNK` bytes, reused by the directions on this thread.
    static POOL: RefCell<Vec<PageBuffer>> = const { RefCell::new(Vec::new()) };
}

/// Buffers a thread keeps for reuse: enough for the read-then-write of a message in each
/// direction; a buffer held back by a slow reader is its direction's own. A pooled buffer
/// costs only the pages that were ever written to it (`PageBuffer`).
const POOL_MAX: usize = 4;

fn take_buffer() -> PageBuffer {
    POOL.with(|p| p.borrow_mut().pop()).unwrap_or_else(|| PageBuffer::zeroed(CHUNK))
}

fn give_buffer(b: PageBuffer) {
    if b.len() == CHUNK {
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < POOL_MAX {
                p.push(b);
            }
        });
    }
}

/// One direction of a tunnel: bytes from `from` to the other side.
#[derive(Debug)]
pub struct Direction {
    from: Side,
    buffers: Buffers,
    /// Bytes read and not yet written: `buf[start..end]`; the buffer exists only while bytes wait.
    /// Of those, `buf[ready..end]` are held back: the part of a header not yet judged, or a
    /// Pong that may answer the module's Ping (checked directions only; else `ready == end`).
    buf: Option<PageBuffer>,
    start: usize,
    ready: usize,
    end: usize,
    /// Of the bytes to write, the first `own` are the module's (a Ping): not the peers'
    /// traffic, not counted as moved.
    own: usize,
    /// Bytes spliced into the kernel pipe and not yet out of it.
    in_pipe: usize,
    /// Bulk mode: reads splice (when and how much: `bulk`).
    splicing: bool,
    eof_in: bool,
    shut_out: bool,
    /// Frame boundaries of the sender's stream (WebSocket tunnels only).
    frames: Option<Frames>,
    polite: Polite,
    moved: u64,
    /// Moved but not yet on the status board.
    unshown: u64,
    /// The last read or write.
    active: Tick,
    /// Since when the bytes in flight wait for the destination (the write-stall clock).
    waiting: Tick,
    /// When (in [`summary::order`]) the sender began to end: its Close passed or its FIN came.
    ending: Option<u64>,
    /// The last read from the sender, the module's Pongs included.
    heard: Tick,
    /// The sender broke a rule: nothing from the breaking header on is relayed, and nothing
    /// more is read; the rest goes up to the cut, which is a frame boundary.
    cut: bool,
    broke: Option<Violation>,
    /// The code of the Close this direction sends in a polite end.
    close_code: u16,
    /// Pongs whose payload starts with this are the module's, and are not relayed.
    pong_token: Option<[u8; 8]>,
}

impl Direction {
    /// `pre`: bytes already read from the sender (the backend's, behind its 101).
    pub fn new(
        from: Side,
        buffers: Buffers,
        frames: Option<Frames>,
        pre: &[u8],
        now: Tick,
    ) -> Direction {
        let mut d = Direction {
            from,
            buffers,
            buf: None,
            start: 0,
            ready: 0,
            end: 0,
            own: 0,
            in_pipe: 0,
            splicing: false,
            eof_in: false,
            shut_out: false,
            frames,
            polite: Polite::Open,
            moved: 0,
            unshown: 0,
            active: now,
            waiting: now,
            ending: None,
            heard: now,
            cut: false,
            broke: None,
            close_code: crate::frames::GOING_AWAY,
            pong_token: None,
        };
        // The backend's bytes behind its 101 are judged like any others.
        d.load(pre);
        d.account(0);
        d
    }

    pub fn from(&self) -> Side {
        self.from
    }

    pub fn to(&self) -> Side {
        self.from.other()
    }

    /// Bytes written to the destination so far.
    pub fn moved(&self) -> u64 {
        self.moved
    }

    pub fn frames(&self) -> Option<Frames> {
        self.frames
    }

    /// Puts bytes in front of the destination (the buffer is empty).
    fn load(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut b = match self.buf.take() {
            Some(b) if b.len() >= bytes.len() => b,
            other => {
                if let Some(b) = other {
                    give_buffer(b);
                }
                if bytes.len() <= CHUNK {
                    take_buffer()
                } else {
                    PageBuffer::zeroed(bytes.len())
                }
            }
        };
        b[..bytes.len()].copy_from_slice(bytes);
        (self.buf, self.start, self.ready, self.end) = (Some(b), 0, bytes.len(), bytes.len());
    }

    fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Bytes read and not yet written (held-back bytes wait for the sender, not for the
    /// destination: they are not pending).
    pub fn pending(&self) -> bool {
        self.ready > self.start || self.in_pipe > 0
    }

    /// No byte in the buffer or the pipe, not even one held back: the buffer may go.
    fn empty(&self) -> bool {
        self.end == self.start && self.in_pipe == 0
    }

    /// Holds no buffer (an idle direction).
    pub fn holds_nothing(&self) -> bool {
        self.buf.is_none()
    }

    /// Whether an empty kernel pipe stays with the direction ([`Buffers::Keep`]) or goes back
    /// to the thread's pool.
    pub fn keeps_buffers(&self) -> bool {
        self.buffers == Buffers::Keep
    }

    /// When a kept buffer falls to be freed, if one is held and nothing is in flight.
    fn release_at(&self) -> Option<Tick> {
        (self.buffers == Buffers::Keep && self.empty() && self.buf.is_some())
            .then(|| self.active.after(RELEASE_AFTER))
    }

    /// Frees a kept buffer after a quiet while; true if the direction holds none now (the
    /// driver then closes its kernel pipe too).
    pub fn release_if_quiet(&mut self, now: Tick) -> bool {
        if self.release_at().is_some_and(|t| now >= t) {
            self.give_back();
        }
        self.buf.is_none() && !self.pending()
    }

    /// The FIN went to the destination: nothing more goes this way.
    pub fn finished(&self) -> bool {
        self.shut_out
    }

    /// What to read next; None: nothing now (the buffer is full, the sender finished, or a
    /// closing direction reached its boundary). `filters_hold`: httpd's input filters hold
    /// bytes of the sender, which must be read (copied) before its socket is spliced.
    pub fn next_read(&self, filters_hold: bool) -> Option<Want> {
        if self.eof_in || self.in_pipe > 0 || (self.cut && self.polite != Polite::Closed) {
            return None;
        }
        match self.polite {
            Polite::Closed => {
                return (!self.frames.is_some_and(|f| f.close_seen())).then_some(Want::Discard)
            }
            Polite::Due { .. } => return None,
            Polite::Closing if self.frames.is_some_and(|f| f.at_boundary() || f.close_seen()) => {
                return None
            }
            _ => {}
        }
        // Bytes in the buffer go out before bytes in the pipe: one of them at a time.
        let room = CHUNK.saturating_sub(self.buffered());
        match bulk::next(self.frames.as_ref(), self.splicing, self.polite == Polite::Closing) {
            Next::Splice(n) if !filters_hold => (self.buffered() == 0).then_some(Want::Splice(n)),
            Next::Splice(n) | Next::Copy(n) if !self.splicing || self.buffered() == 0 => {
                (room > 0).then_some(Want::Copy(n.min(room)))
            }
            _ => None,
        }
    }

    /// Where to read at most `limit` bytes for [`Want::Copy`]; then [`Direction::copied`].
    pub fn read_space(&mut self, limit: usize) -> &mut [u8] {
        let b = self.buf.get_or_insert_with(take_buffer);
        if self.end + limit > b.len() && self.start > 0 {
            b.copy_within(self.start..self.end, 0);
            (self.ready, self.end) = (self.ready - self.start, self.end - self.start);
            self.start = 0;
        }
        let to = b.len().min(self.end + limit);
        &mut b[self.end..to]
    }

    /// `n` bytes were read into [`Direction::read_space`] (0: the sender's FIN).
    /// `from_filters`: they came from httpd's input filters, not the socket.
    pub fn copied(&mut self, n: usize, from_filters: bool, now: Tick) {
        if n == 0 {
            self.eof_in = true;
            self.drop_empty_buffer();
            return self.settle();
        }
        let at_header = self.frames.is_some_and(|f| f.payload_left() == 0);
        if !self.pending() {
            self.waiting = now;
        }
        let from = self.end;
        self.end += n;
        self.heard = now;
        self.account(from);
        // The module's own Pong alone is no traffic (ProxyWebsocketIdleTimeout).
        if self.end > from {
            self.active = now;
        }
        // Bulk mode only for bytes from the socket itself.
        self.splicing =
            bulk::after(self.frames.as_ref(), self.splicing, Next::Copy(n), n, at_header)
                && !from_filters;
        self.settle();
    }

    /// Feeds the bytes read from `from` on to the frames. A checked direction stops at what
    /// breaks a rule (cut there: the breaking header and everything behind it are dropped),
    /// removes the client's answers to the module's Pings, and holds back the part of a
    /// header not yet judged.
    fn account(&mut self, from: usize) {
        let (Some(f), Some(buf)) = (self.frames.as_mut(), self.buf.as_mut()) else {
            self.ready = self.end;
            return;
        };
        if !f.is_checked() {
            f.feed(&buf[from..self.end]);
            self.ready = self.end;
            return;
        }
        let mut at = from;
        while at < self.end {
            let (n, event) = f.feed_checked(&buf[at..self.end]);
            at += n;
            match event {
                Event::None => {}
                Event::Broke(v) => {
                    // The dropped bytes still count for where the stream stands: the sender's
                    // answering Close is found among what is discarded after ours.
                    let cut_at = at - f.header_len();
                    f.feed(&buf[at..self.end]);
                    (self.end, self.cut, self.broke) = (cut_at, true, Some(v));
                    self.ready = self.end;
                    return;
                }
                Event::Pong { payload, frame_len } => {
                    if self.pong_token.is_some_and(|t| payload[..8] == t) {
                        buf.copy_within(at..self.end, at - frame_len);
                        self.end -= frame_len;
                        at -= frame_len;
                    }
                }
            }
        }
        self.ready = self.end - f.held();
    }

    /// The read into [`Direction::read_space`] found nothing (it would block): a shared
    /// buffer goes back to the pool, so that waiting tunnels hold none.
    pub fn nothing_read(&mut self) {
        self.drop_empty_buffer();
    }

    /// `n` bytes were spliced from the sender into the kernel pipe (0: its FIN).
    pub fn spliced(&mut self, limit: usize, n: usize, now: Tick) {
        if n == 0 {
            self.eof_in = true;
            return self.settle();
        }
        let at_header = self.frames.is_some_and(|f| f.payload_left() == 0);
        if let Some(f) = self.frames.as_mut() {
            f.skip(n);
        }
        self.in_pipe = n;
        (self.waiting, self.active, self.heard) = (now, now, now);
        self.splicing =
            bulk::after(self.frames.as_ref(), self.splicing, Next::Splice(limit), n, at_header);
        self.settle();
    }

    /// What the sender sent after our Close (empty: it finished or is gone).
    pub fn discarded(&mut self, bytes: &[u8], now: Tick) {
        if bytes.is_empty() {
            self.eof_in = true;
            return self.note_ending();
        }
        self.active = now;
        if let Some(f) = self.frames.as_mut() {
            f.feed(bytes);
        }
        self.note_ending();
    }

    /// Notes the moment the sender began to end (its Close passed, or its FIN came), once.
    fn note_ending(&mut self) {
        if self.ending.is_none() && (self.eof_in || self.frames.is_some_and(|f| f.close_seen())) {
            self.ending = Some(summary::order());
        }
    }

    /// What to write next.
    pub fn next_write(&self) -> Option<Out<'_>> {
        if self.ready > self.start {
            Some(Out::Bytes(&self.buf.as_ref().expect("bytes are in it")[self.start..self.ready]))
        } else if self.in_pipe > 0 {
            Some(Out::Pipe(self.in_pipe))
        } else if (self.eof_in || self.polite == Polite::Closed) && !self.shut_out {
            Some(Out::Fin)
        } else {
            None
        }
    }

    /// `n` bytes of [`Out::Bytes`] or [`Out::Pipe`] went to the destination.
    pub fn wrote(&mut self, n: usize, now: Tick) {
        if self.ready > self.start {
            self.start += n;
            if self.start == self.end {
                (self.start, self.ready, self.end) = (0, 0, 0);
                self.drop_empty_buffer();
            }
        } else {
            self.in_pipe -= n;
        }
        let own = n.min(self.own);
        self.own -= own;
        self.moved += (n - own) as u64;
        self.unshown += (n - own) as u64;
        if n > own {
            self.active = now;
        }
        self.waiting = now;
        self.settle();
    }

    /// The FIN went (or the destination was gone already).
    pub fn fin_sent(&mut self) {
        self.shut_out = true;
        self.drop_empty_buffer();
    }

    /// An empty buffer goes back to the pool ([`Buffers::Share`]) or, once the direction is
    /// finished, away.
    fn drop_empty_buffer(&mut self) {
        if self.end == self.start {
            (self.start, self.ready, self.end) = (0, 0, 0);
            if self.buffers == Buffers::Keep && !self.shut_out && !self.eof_in {
                return;
            }
            self.give_back();
        }
    }

    /// A closing direction whose bytes reached a boundary, with nothing in flight, queues its
    /// Close (or notes that the sender's went).
    fn settle(&mut self) {
        self.note_ending();
        let Some(f) = self.frames else { return };
        if self.eof_in && matches!(self.polite, Polite::Closing | Polite::Due { .. }) {
            self.polite = Polite::Closed;
            return;
        }
        self.polite = self.polite.after_bytes(&f, self.cut || f.at_boundary());
        if let (Polite::Due { send }, false) = (self.polite, self.pending()) {
            if send {
                self.load(&crate::sys::close_frame(self.close_code, self.to() == Side::Backend));
            }
            self.polite = Polite::Closed;
        }
    }

    /// Whether this direction can end politely: its frames are known (or it is finished, or
    /// cut at a boundary).
    pub fn can_close_politely(&self) -> bool {
        self.shut_out || self.cut || self.frames.is_some_and(|f| !f.lost())
    }

    /// The polite end begins for this direction: its Close (when one is due) carries `code`.
    pub fn close_politely(&mut self, code: u16) {
        if self.polite == Polite::Open {
            self.close_code = code;
            self.polite = if self.shut_out { Polite::Closed } else { Polite::Closing };
            self.settle();
        }
    }

    /// Our Close and FIN went, and the sender answered with its own Close or a FIN.
    pub fn closed_politely(&self) -> bool {
        self.polite == Polite::Closed
            && self.shut_out
            && (self.eof_in || self.frames.is_some_and(|f| f.close_seen()))
    }

    /// Nothing in a kernel pipe (the driver's), still open both ways, no polite end under way:
    /// the state a tunnel can change hands in. Bytes waiting in the buffer go with it.
    pub fn movable(&self) -> bool {
        self.in_pipe == 0 && !self.eof_in && !self.shut_out && self.polite == Polite::Open
    }

    /// The module's bytes (a Ping) go to the destination next; the direction rests between
    /// two frames with nothing in flight ([`Direction::can_insert`]).
    fn insert_own(&mut self, bytes: &[u8]) {
        debug_assert!(self.can_insert());
        self.load(bytes);
        self.own = bytes.len();
    }

    /// Whether the module's bytes may go now: the direction rests between two frames with
    /// nothing in flight.
    fn can_insert(&self) -> bool {
        self.frames.is_some_and(|f| f.at_boundary())
            && self.end == self.start
            && self.in_pipe == 0
            && self.polite == Polite::Open
            && !self.eof_in
            && !self.shut_out
    }

    /// Nothing more goes this way, and nothing is read (the destination is gone for good):
    /// what waits is dropped, no FIN is due.
    fn abandon(&mut self) {
        (self.start, self.ready, self.end, self.own, self.in_pipe) = (0, 0, 0, 0, 0);
        (self.eof_in, self.shut_out) = (true, true);
        self.polite = Polite::Closed;
        self.give_back();
    }

    /// From now on on a thread that other tunnels share: a buffer holding bytes stays until
    /// they are written, then goes to that thread's pool; an empty one goes now.
    fn share_buffers(&mut self) {
        self.buffers = Buffers::Share;
        if self.empty() {
            self.give_back();
            (self.start, self.ready, self.end) = (0, 0, 0);
        }
    }

    /// Bytes moved since the last call (for the status board).
    pub fn take_unshown(&mut self) -> u64 {
        std::mem::take(&mut self.unshown)
    }
}

impl Direction {
    /// The buffer, if any, goes back to the thread's pool.
    fn give_back(&mut self) {
        if let Some(b) = self.buf.take() {
            give_buffer(b);
        }
    }
}

impl Drop for Direction {
    /// A tunnel's end gives its buffer to the next tunnel of the thread: mapping and unmapping
    /// one per tunnel cost a churn of short WebSockets two mmap and two munmap calls each, and
    /// the page faults and TLB shootdowns that come with them.
    fn drop(&mut self) {
        self.give_back();
    }
}

/// The write-stall rule, for every driver: among the directions whose bytes wait for their
/// destination, given as (destination, since when they waited without progress), the one that
/// waited longest ends the tunnel once it waited `limit`, and its destination is named (a peer
/// that reads nothing stops the other peer's reading too, once that one's writes back up).
pub fn stalled(
    waiting: impl Iterator<Item = (Side, Tick)>,
    limit: Duration,
    now: Tick,
) -> Option<End> {
    let (to, since) = waiting.min_by_key(|(_, since)| *since)?;
    (now >= since.after(limit)).then_some(End::WriteStalled(to, limit))
}

/// Why a tunnel ends politely (with WebSocket Close frames at frame boundaries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// The child is draining: both sides get Close 1001 and answer with theirs.
    Drain,
    /// A side broke a framing rule: it gets the violation's Close, the other side 1001.
    Broke(Side, Violation),
    /// The client answered no Ping: the backend gets Close 1001, the client nothing more.
    DeadClient,
}

/// How long a tunnel ended by the module (a broken rule, a dead client) waits for its Close
/// frames to reach a frame boundary and go out.
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The module's own Pings to the client (`ProxyWebsocketPingInterval`).
#[derive(Debug)]
struct Pinger {
    every: Duration,
    wait: Duration,
    /// The first 8 bytes of every Ping's payload: the client's Pongs that carry it are ours.
    token: [u8; 8],
    sent: u32,
    /// The Ping waiting for the client's answer (any byte from it), since when.
    waiting: Option<Tick>,
}

impl Pinger {
    fn new(ping: super::limits::Ping) -> Pinger {
        let token = crate::sys::random_bytes();
        Pinger { every: ping.every, wait: ping.wait, token, sent: 0, waiting: None }
    }

    /// The next Ping frame (server to client: unmasked): the token and a counter.
    fn frame(&mut self) -> [u8; 2 + PING_LEN] {
        self.sent = self.sent.wrapping_add(1);
        let mut f = [0u8; 2 + PING_LEN];
        f[..2].copy_from_slice(&[0x89, PING_LEN as u8]);
        f[2..10].copy_from_slice(&self.token);
        f[10..].copy_from_slice(&self.sent.to_be_bytes());
        f
    }
}

/// Both directions of a tunnel and its limits: what ends it and when to look again.
#[derive(Debug)]
pub struct Core {
    /// Client to backend, backend to client ([`Side::index`] of the sender).
    pub dirs: [Direction; 2],
    timeouts: Timeouts,
    /// The polite end began, and why.
    polite: Option<Why>,
    pinger: Option<Pinger>,
    /// Its deadline, if the driver keeps one (the asynchronous one is told when to stop).
    polite_until: Option<Tick>,
    /// From this moment on, a quiet tunnel may be handed over.
    handoff_at: Option<Tick>,
    /// When the status board last got this tunnel's bytes.
    shown: Tick,
}

impl Core {
    /// `frames`: where each direction's WebSocket frames stand (None: not WebSocket);
    /// `backend_pre`: the backend's bytes behind its 101, not yet sent to the client.
    pub fn new(
        timeouts: Timeouts,
        buffers: Buffers,
        frames: Option<(Frames, Frames)>,
        backend_pre: &[u8],
        now: Tick,
    ) -> Core {
        let (mut cf, bf) = frames.map_or((None, None), |(c, b)| (Some(c), Some(b)));
        // Pings only where frames are known: WebSocket tunnels.
        let pinger = timeouts.ping.filter(|_| cf.is_some()).map(Pinger::new);
        if let (Some(f), Some(_)) = (cf.as_mut(), &pinger) {
            f.watch_pongs();
        }
        let mut c2b = Direction::new(Side::Client, buffers, cf, &[], now);
        c2b.pong_token = pinger.as_ref().map(|p| p.token);
        Core {
            dirs: [c2b, Direction::new(Side::Backend, buffers, bf, backend_pre, now)],
            timeouts,
            polite: None,
            pinger,
            polite_until: None,
            handoff_at: None,
            shown: now,
        }
    }

    pub fn set_handoff_at(&mut self, t: Option<Tick>) {
        self.handoff_at = t;
    }

    /// The core as the runtime takes it over at the hand-over: its directions as they stand
    /// (frame positions, bytes moved, bytes waiting for their destination), buffers shared
    /// with the runtime's other tunnels, no hand-over ahead.
    pub fn into_runtime(mut self: Box<Core>) -> Box<Core> {
        self.handoff_at = None;
        self.dirs.iter_mut().for_each(Direction::share_buffers);
        self
    }

    /// Bytes moved (client to backend, backend to client).
    pub fn moved(&self) -> (u64, u64) {
        (self.dirs[0].moved, self.dirs[1].moved)
    }

    pub fn frames(&self) -> (Option<Frames>, Option<Frames>) {
        (self.dirs[0].frames, self.dirs[1].frames)
    }

    /// What the logs say of a WebSocket tunnel that ended with `end` (None: not WebSocket).
    pub fn summary(&self, end: &End) -> Option<Summary> {
        let [c2b, b2c] = &self.dirs;
        let pings = self.pinger.as_ref().map_or(0, |p| p.sent);
        Summary::of(end, [c2b.frames?, b2c.frames?], [c2b.ending, b2c.ending])
            .map(|s| Summary { pings, ..s })
    }

    pub fn polite(&self) -> bool {
        self.polite.is_some()
    }

    /// The child is draining: a WebSocket tunnel ends politely (by `until`, if given); any
    /// other must end now (`Err`). A tunnel already ending politely for another reason keeps
    /// that reason, and the earlier deadline.
    pub fn close_politely(&mut self, until: Option<Tick>) -> Result<(), End> {
        if !self.dirs.iter().all(Direction::can_close_politely) {
            return Err(End::Shutdown);
        }
        match self.polite {
            None => {
                (self.polite, self.polite_until) = (Some(Why::Drain), until);
                self.dirs.iter_mut().for_each(|d| d.close_politely(crate::frames::GOING_AWAY));
            }
            Some(_) => self.polite_until = earlier(self.polite_until, until),
        }
        Ok(())
    }

    /// After the drivers' I/O: what the frames and the clock ask of the tunnel now, once per
    /// turn of every driver. A broken rule or a dead client begins the tunnel's polite end;
    /// a client quiet for the Ping interval gets a Ping. True if there is more to write.
    pub fn advance(&mut self, now: Tick) -> bool {
        if self.polite.is_some() {
            return false;
        }
        for side in [Side::Client, Side::Backend] {
            if let Some(v) = self.dirs[side.index()].broke {
                self.end_politely(Why::Broke(side, v), now);
                return true;
            }
        }
        let heard = self.dirs[0].heard;
        let Some(p) = self.pinger.as_mut() else { return false };
        if p.waiting.is_some_and(|sent| heard >= sent) {
            p.waiting = None;
        }
        match p.waiting {
            Some(sent) if now >= sent.after(p.wait) => {
                self.end_politely(Why::DeadClient, now);
                true
            }
            None if now >= heard.after(p.every) && self.dirs[1].can_insert() => {
                let frame = p.frame();
                p.waiting = Some(now);
                self.dirs[1].insert_own(&frame);
                true
            }
            _ => false,
        }
    }

    /// The module ends the tunnel: Close frames at the next boundaries, by [`CLOSE_WAIT`].
    fn end_politely(&mut self, why: Why, now: Tick) {
        self.polite = Some(why);
        self.polite_until = earlier(self.polite_until, Some(now.after(CLOSE_WAIT)));
        let [c2b, b2c] = &mut self.dirs;
        match why {
            Why::Broke(side, v) => {
                let (from, to) = if side == Side::Client { (c2b, b2c) } else { (b2c, c2b) };
                from.close_politely(crate::frames::GOING_AWAY);
                to.close_politely(v.code);
            }
            Why::DeadClient => {
                c2b.close_politely(crate::frames::GOING_AWAY);
                b2c.abandon();
            }
            Why::Drain => unreachable!("a drain begins in close_politely"),
        }
        if !self.dirs.iter().all(Direction::can_close_politely) {
            // No boundary to put a Close at: the tunnel ends now, with FINs only.
            self.polite_until = Some(now);
        }
    }

    /// The end the polite end comes to at its deadline.
    fn polite_end(&self) -> End {
        match self.polite {
            Some(Why::Broke(side, v)) => End::Broke(side, v),
            Some(Why::DeadClient) => {
                End::DeadClient(self.pinger.as_ref().map_or(CLOSE_WAIT, |p| p.wait))
            }
            _ => End::Shutdown,
        }
    }

    /// The tunnel is over by itself: both directions finished (politely, in a drain), or it
    /// may change hands now.
    pub fn ended(&self, now: Tick) -> Option<End> {
        let [c2b, b2c] = &self.dirs;
        match self.polite {
            // Each side answered the Close it got with its own (or a FIN).
            Some(Why::Drain) if c2b.closed_politely() && b2c.closed_politely() => {
                return Some(End::GoingAway)
            }
            Some(Why::Broke(..)) if c2b.closed_politely() && b2c.closed_politely() => {
                return Some(self.polite_end())
            }
            // A dead client answers nothing: the backend's Close and FIN went.
            Some(Why::DeadClient) if c2b.shut_out => return Some(self.polite_end()),
            Some(_) => {}
            None if c2b.shut_out && b2c.shut_out => return Some(End::Closed),
            None => {}
        }
        if self.handoff_at.is_some_and(|t| now >= t) && c2b.movable() && b2c.movable() {
            return Some(End::Handoff);
        }
        None
    }

    /// A limit that ends the tunnel at `now`.
    pub fn expired(&self, now: Tick) -> Option<End> {
        if self.polite_until.is_some_and(|t| now >= t) {
            return Some(self.polite_end());
        }
        if let Some(idle) = self.timeouts.idle {
            if now >= self.last_active().after(idle) {
                return Some(End::Idle(idle));
            }
        }
        let waiting = self.dirs.iter().filter(|d| d.pending()).map(|d| (d.to(), d.waiting));
        stalled(waiting, self.timeouts.write_stall?, now)
    }

    fn last_active(&self) -> Tick {
        self.dirs[0].active.max(self.dirs[1].active)
    }

    /// When to look at the clock next (None: only I/O can change anything). A hand-over moment
    /// that passed is no deadline: the tunnel is handed over at its first quiet moment, which
    /// only I/O brings (a half-closed tunnel never can, and must not be woken for it).
    pub fn next_deadline(&self, now: Tick) -> Option<Tick> {
        let idle = self.timeouts.idle.map(|d| self.last_active().after(d));
        let stall = self.timeouts.write_stall.and_then(|s| {
            self.dirs.iter().filter(|d| d.pending()).map(|d| d.waiting.after(s)).min()
        });
        let show = self.dirs.iter().any(|d| d.unshown > 0).then(|| self.shown.after(SHOW_EVERY));
        let release = self.dirs.iter().filter_map(Direction::release_at).min();
        let handoff = self.handoff_at.filter(|t| *t > now);
        let ping = self.ping_deadline();
        [idle, stall, show, release, self.polite_until, handoff, ping].into_iter().flatten().min()
    }

    /// When the Ping rule acts next: its answer's deadline, or the next Ping if one can go
    /// (else I/O on the backend's direction brings the next look).
    fn ping_deadline(&self) -> Option<Tick> {
        let p = self.pinger.as_ref().filter(|_| self.polite.is_none())?;
        match p.waiting {
            Some(sent) => Some(sent.after(p.wait)),
            None => self.dirs[1].can_insert().then(|| self.dirs[0].heard.after(p.every)),
        }
    }

    /// Bytes each way to add to the status board, if it is time (`force`: the tunnel ends).
    pub fn to_show(&mut self, now: Tick, force: bool) -> Option<(u64, u64)> {
        if !force && now < self.shown.after(SHOW_EVERY) {
            return None;
        }
        self.shown = now;
        let [c2b, b2c] = &mut self.dirs;
        let shown = (c2b.take_unshown(), b2c.take_unshown());
        (shown != (0, 0)).then_some(shown)
    }
}

/// The earlier of two optional deadlines.
fn earlier(a: Option<Tick>, b: Option<Tick>) -> Option<Tick> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::close_frame;

    const T0: Tick = Tick(1_000);

    fn ms(n: u64) -> Tick {
        Tick(T0.0 + n)
    }

    /// A masked client frame with a payload of `len` bytes.
    fn frame(len: usize) -> Vec<u8> {
        wskit::raw::client_frame(2, &vec![7; len])
    }

    /// Feeds `bytes` into `d` as one read of a driver.
    fn read(d: &mut Direction, bytes: &[u8], now: Tick) {
        match d.next_read(false) {
            Some(Want::Copy(n)) => {
                assert!(n >= bytes.len(), "wanted {n}, given {}", bytes.len());
                d.read_space(bytes.len()).copy_from_slice(bytes);
                d.copied(bytes.len(), false, now);
            }
            other => panic!("wanted {other:?}"),
        }
    }

    /// Writes everything pending; returns it.
    fn write_all(d: &mut Direction, now: Tick) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(Out::Bytes(b)) = d.next_write() {
            let n = b.len();
            out.extend_from_slice(b);
            d.wrote(n, now);
        }
        out
    }

    #[test]
    fn a_message_passes_and_the_buffer_goes_back() {
        let mut d = Direction::new(Side::Client, Buffers::Share, None, &[], T0);
        assert_eq!(d.next_read(false), Some(Want::Copy(CHUNK)));
        read(&mut d, b"hello", ms(1));
        assert!(d.pending() && !d.holds_nothing());
        assert_eq!(write_all(&mut d, ms(2)), b"hello");
        assert!(!d.pending() && d.holds_nothing(), "an idle direction holds no buffer");
        assert_eq!((d.moved(), d.take_unshown(), d.take_unshown()), (5, 5, 0));
        assert_eq!(d.next_write(), None);
    }

    /// A tunnel with its thread to itself keeps its buffer between messages, and frees it
    /// after a quiet second (the driver is woken for it).
    #[test]
    fn a_kept_buffer_is_freed_after_a_quiet_second() {
        let mut c = Core::new(Timeouts::default(), Buffers::Keep, None, &[], T0);
        read(&mut c.dirs[0], b"hello", ms(10));
        write_all(&mut c.dirs[0], ms(20));
        assert!(!c.dirs[0].holds_nothing(), "kept for the next message");
        assert_eq!(
            c.next_deadline(T0),
            Some(ms(20).after(RELEASE_AFTER).min(T0.after(SHOW_EVERY)))
        );
        assert!(!c.dirs[0].release_if_quiet(ms(1_019)));
        assert!(c.dirs[0].release_if_quiet(ms(1_020)));
        assert!(c.dirs[0].holds_nothing());
        assert_eq!(c.to_show(ms(1_020), true), Some((5, 0)));
        assert_eq!(c.next_deadline(T0), None, "nothing left to wake up for");
    }

    /// A tunnel waiting for bytes holds no shared buffer: the one taken for a read that found
    /// nothing goes back at once.
    #[test]
    fn a_read_that_finds_nothing_gives_the_shared_buffer_back() {
        let mut d = Direction::new(Side::Client, Buffers::Share, None, &[], T0);
        assert!(!d.read_space(CHUNK).is_empty());
        d.nothing_read();
        assert!(d.holds_nothing());
    }

    #[test]
    fn a_partial_write_keeps_the_rest_in_order_and_a_full_buffer_stops_reading() {
        let mut d = Direction::new(Side::Backend, Buffers::Share, None, b"pre:", T0);
        read(&mut d, &vec![1u8; CHUNK - 4], ms(1));
        assert_eq!(d.next_read(false), None, "the buffer is full");
        d.wrote(10, ms(2));
        assert_eq!(d.next_read(false), Some(Want::Copy(10)), "room for what went out");
        let rest = write_all(&mut d, ms(3));
        assert_eq!(rest.len(), CHUNK - 10);
    }

    /// The half-close rule, as a table of events: (what happens, what the direction says next).
    #[test]
    fn the_fin_goes_after_every_earlier_byte_and_only_once() {
        let mut d = Direction::new(Side::Client, Buffers::Share, None, &[], T0);
        read(&mut d, b"last", ms(1));
        d.copied(0, false, ms(2));
        assert_eq!(d.next_read(false), None, "nothing is read after the FIN");
        assert_eq!(d.next_write(), Some(Out::Bytes(b"last")));
        d.wrote(4, ms(3));
        assert_eq!(d.next_write(), Some(Out::Fin));
        d.fin_sent();
        assert!(d.finished());
        assert_eq!(d.next_write(), None);
    }

    #[test]
    fn the_core_ends_when_both_directions_finished() {
        let mut c = Core::new(Timeouts::default(), Buffers::Share, None, &[], T0);
        for d in c.dirs.iter_mut() {
            d.copied(0, false, ms(1));
            assert_eq!(d.next_write(), Some(Out::Fin));
        }
        c.dirs[0].fin_sent();
        assert!(c.ended(ms(1)).is_none(), "one direction still open");
        c.dirs[1].fin_sent();
        assert!(matches!(c.ended(ms(1)), Some(End::Closed)));
    }

    #[test]
    fn idle_and_write_stall_limits_and_the_next_deadline() {
        let limits = Timeouts {
            idle: Some(Duration::from_secs(10)),
            write_stall: Some(Duration::from_secs(3)),
            ping: None,
        };
        let mut c = Core::new(limits, Buffers::Share, None, &[], T0);
        assert_eq!(c.next_deadline(T0), Some(ms(10_000)));
        read(&mut c.dirs[1], b"x", ms(1_000));
        // Bytes wait for the client from 1 s on: the stall limit comes before the idle one.
        assert_eq!(c.next_deadline(T0), Some(ms(4_000)));
        assert!(c.expired(ms(3_999)).is_none());
        assert!(matches!(c.expired(ms(4_000)), Some(End::WriteStalled(Side::Client, _))));
        // Writing restarts the stall clock; an empty direction has none.
        write_all(&mut c.dirs[1], ms(3_000));
        assert!(c.expired(ms(4_000)).is_none());
        assert_eq!(c.to_show(ms(3_000), false), Some((0, 1)));
        assert_eq!(c.next_deadline(T0), Some(ms(13_000)), "idle from the last write");
        assert!(matches!(c.expired(ms(13_000)), Some(End::Idle(_))));
    }

    /// A client that reads nothing backs up the backend, which then reads nothing either: the
    /// tunnel ends naming the side that stopped first.
    #[test]
    fn the_side_that_stalled_first_is_named() {
        let limits = Timeouts { idle: None, write_stall: Some(Duration::from_secs(2)), ping: None };
        let mut c = Core::new(limits, Buffers::Share, None, &[], T0);
        read(&mut c.dirs[1], b"echo", ms(100));
        read(&mut c.dirs[0], b"flood", ms(900));
        assert!(c.expired(ms(2_099)).is_none());
        assert!(matches!(c.expired(ms(5_000)), Some(End::WriteStalled(Side::Client, _))));
    }

    #[test]
    fn bytes_reach_the_board_at_most_every_show_interval() {
        let mut c = Core::new(Timeouts::default(), Buffers::Share, None, &[], T0);
        read(&mut c.dirs[0], b"abc", ms(1));
        write_all(&mut c.dirs[0], ms(1));
        assert_eq!(c.to_show(ms(1), false), None);
        assert_eq!(c.next_deadline(T0), Some(T0.after(SHOW_EVERY)), "a wake-up to show them");
        assert_eq!(c.to_show(T0.after(SHOW_EVERY), false), Some((3, 0)));
        assert_eq!(c.next_deadline(T0), None);
    }

    /// The polite end, as a table: a closing direction reads up to its boundary only, then its
    /// Close (masked towards the backend) goes behind the bytes, then the sender is discarded
    /// until its own Close.
    #[test]
    fn the_polite_end_closes_at_the_next_boundary() {
        let f = frame(100);
        let mut c =
            Core::new(Timeouts::default(), Buffers::Share, Some(Default::default()), &[], T0);
        read(&mut c.dirs[0], &f[..50], ms(1));
        c.close_politely(Some(ms(5_000))).unwrap();
        // The resting direction (backend to client) has its Close queued at once, unmasked.
        assert_eq!(write_all(&mut c.dirs[1], ms(2)), close_frame(1001, None));
        assert_eq!(c.dirs[1].next_write(), Some(Out::Fin));
        // Client to backend: only up to the boundary.
        assert_eq!(c.dirs[0].next_read(false), Some(Want::Copy(f.len() - 50)));
        read(&mut c.dirs[0], &f[50..], ms(3));
        let out = write_all(&mut c.dirs[0], ms(4));
        let (rest, close) = out.split_at(f.len());
        assert_eq!(rest, &f[..]);
        assert_eq!(
            (close.len(), close[0], close[1]),
            (8, 0x88, 0x82),
            "masked Close to the backend"
        );
        assert_eq!(c.dirs[0].next_write(), Some(Out::Fin));
        c.dirs.iter_mut().for_each(Direction::fin_sent);
        // Each sender answers with its Close: discarded, and the tunnel went away politely.
        assert_eq!(c.dirs[0].next_read(false), Some(Want::Discard));
        c.dirs[0].discarded(&close_frame(1001, Some([1, 2, 3, 4])), ms(5));
        assert!(c.ended(ms(5)).is_none());
        c.dirs[1].discarded(&close_frame(1001, None), ms(5));
        assert_eq!(c.dirs[1].next_read(false), None);
        assert!(matches!(c.ended(ms(5)), Some(End::GoingAway)));
        assert!(matches!(c.expired(ms(5_000)), Some(End::Shutdown)), "the deadline holds");
    }

    #[test]
    fn a_sender_whose_close_went_gets_no_second_close() {
        let mut c =
            Core::new(Timeouts::default(), Buffers::Share, Some(Default::default()), &[], T0);
        let close = close_frame(1000, Some([1, 2, 3, 4]));
        read(&mut c.dirs[0], &close[..3], ms(1));
        c.close_politely(Some(ms(5_000))).unwrap();
        // A closing direction reads exactly up to each boundary: the header's rest, the code.
        assert_eq!(c.dirs[0].next_read(false), Some(Want::Copy(3)));
        read(&mut c.dirs[0], &close[3..6], ms(2));
        read(&mut c.dirs[0], &close[6..], ms(2));
        assert_eq!(write_all(&mut c.dirs[0], ms(3)), close, "the sender's Close only");
        assert_eq!(c.dirs[0].next_write(), Some(Out::Fin));
        assert_eq!(c.dirs[0].next_read(false), None, "its Close was its last frame");
    }

    #[test]
    fn without_framing_the_polite_end_is_refused() {
        let mut c = Core::new(Timeouts::default(), Buffers::Share, None, &[], T0);
        assert!(matches!(c.close_politely(Some(ms(5_000))), Err(End::Shutdown)));
    }

    /// Once the moment passed, the tunnel changes hands with what its buffer holds: the core
    /// moves, and the runtime writes those bytes.
    #[test]
    fn a_tunnel_is_handed_over_once_the_moment_passed_with_its_waiting_bytes() {
        let mut c = Core::new(Timeouts::default(), Buffers::Keep, None, b"behind the 101", T0);
        c.set_handoff_at(Some(ms(100)));
        assert!(c.ended(ms(99)).is_none());
        assert!(matches!(c.ended(ms(100)), Some(End::Handoff)));
        let mut c = Box::new(c).into_runtime();
        assert!(c.ended(ms(200)).is_none(), "no hand-over ahead on the runtime");
        assert_eq!(write_all(&mut c.dirs[1], ms(201)), b"behind the 101");
        assert!(c.dirs[1].holds_nothing(), "the buffer went to the runtime's pool");
    }

    /// A tunnel that cannot change hands when the hand-over moment passes (here half-closed, which is
    /// never handed over) is not woken for it again and again.
    #[test]
    fn a_passed_hand_over_moment_wakes_nobody() {
        let mut c = Core::new(Timeouts::default(), Buffers::Keep, None, &[], T0);
        c.set_handoff_at(Some(ms(100)));
        assert_eq!(c.next_deadline(T0), Some(ms(100)));
        c.dirs[0].copied(0, false, ms(50));
        assert!(c.ended(ms(100)).is_none(), "half-closed: stays where it is");
        assert_eq!(c.next_deadline(ms(100)), None);
    }

    #[test]
    fn large_frames_splice_after_a_full_read_and_headers_are_copied() {
        let mut d = Direction::new(Side::Client, Buffers::Share, Some(Default::default()), &[], T0);
        // A 1 MiB frame: its header and the first chunk are copied...
        let mut head = vec![0x82, 0x80 | 127];
        head.extend_from_slice(&(1u64 << 20).to_be_bytes());
        head.extend_from_slice(&[1, 2, 3, 4]);
        let mut first = head.clone();
        first.resize(CHUNK, 0);
        read(&mut d, &first, ms(1));
        write_all(&mut d, ms(1));
        // ...then the payload is spliced, never past the frame's end.
        let left = (1u64 << 20) as usize - (CHUNK - head.len());
        assert_eq!(d.next_read(false), Some(Want::Splice(CHUNK)));
        assert_eq!(d.next_read(true), Some(Want::Copy(CHUNK)), "httpd's bytes first");
        d.spliced(CHUNK, CHUNK, ms(2));
        assert!(!d.movable(), "bytes in the driver's pipe stay with it");
        assert_eq!(d.next_read(false), None, "the pipe empties first");
        assert_eq!(d.next_write(), Some(Out::Pipe(CHUNK)));
        d.wrote(CHUNK, ms(2));
        let mut left = left - CHUNK;
        while left > 0 {
            match d.next_read(false) {
                Some(Want::Splice(n)) => {
                    let n = n.min(left);
                    d.spliced(n, n, ms(3));
                    d.wrote(n, ms(3));
                    left -= n;
                }
                // The small rest of the payload is copied, exactly up to the boundary.
                Some(Want::Copy(n)) => {
                    assert_eq!(n, left);
                    read(&mut d, &vec![0u8; n], ms(3));
                    write_all(&mut d, ms(3));
                    left = 0;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(d.frames().unwrap().at_boundary());
        assert_eq!(d.next_read(false), Some(Want::Copy(14)), "the next header is read exactly");
    }

    fn pinging(every_ms: u64, wait_ms: u64) -> Core {
        let ping = crate::tunnel::limits::Ping::new(
            Some(Duration::from_millis(every_ms)),
            Some(Duration::from_millis(wait_ms)),
        );
        let t = Timeouts { idle: Some(Duration::from_secs(60)), ping, ..Default::default() };
        Core::new(t, Buffers::Share, Some(Default::default()), &[], T0)
    }

    /// The client's answer to a Ping: a masked Pong with the Ping's payload.
    fn pong_for(ping: &[u8]) -> Vec<u8> {
        wskit::raw::frame(10, true, &ping[2..], Some([9, 8, 7, 6]))
    }

    /// A quiet client gets a Ping (unmasked, 12 bytes of the module's); its Pong, however it
    /// is cut into reads, never reaches the backend, and neither counts as traffic. A
    /// backend's own Pong passes.
    #[test]
    fn a_quiet_client_is_pinged_and_its_pong_stays_with_the_module() {
        let mut c = pinging(1_000, 500);
        assert!(!c.advance(ms(999)));
        assert_eq!(c.next_deadline(T0), Some(ms(1_000)));
        assert!(c.advance(ms(1_000)));
        let ping = write_all(&mut c.dirs[1], ms(1_000));
        assert_eq!((ping[0], ping[1] as usize, ping.len()), (0x89, PING_LEN, 2 + PING_LEN));
        assert_eq!(c.moved(), (0, 0), "the module's bytes are no traffic");
        assert_eq!(c.next_deadline(T0), Some(ms(1_500)), "the answer's deadline");
        let mut stream = frame(3);
        stream.extend(pong_for(&ping));
        stream.extend(frame(2));
        for (i, b) in stream.iter().enumerate() {
            read(&mut c.dirs[0], std::slice::from_ref(b), ms(1_100 + i as u64));
        }
        let mut relayed = frame(3);
        relayed.extend(frame(2));
        assert_eq!(write_all(&mut c.dirs[0], ms(1_200)), relayed);
        assert!(!c.advance(ms(1_600)), "answered: no dead client");
        // A Pong alone is no traffic for the idle limit.
        let mut c = pinging(1_000, 500);
        c.advance(ms(1_000));
        let ping = write_all(&mut c.dirs[1], ms(1_000));
        read(&mut c.dirs[0], &pong_for(&ping), ms(1_200));
        assert!(!c.dirs[0].pending());
        assert_eq!(c.last_active(), T0);
        // A Pong that is not the module's passes.
        let other = wskit::raw::frame(10, true, b"abcdefghijkl", Some([1, 2, 3, 4]));
        read(&mut c.dirs[0], &other, ms(1_300));
        assert_eq!(write_all(&mut c.dirs[0], ms(1_300)), other);
    }

    /// No answer within the timeout: the backend gets Close 1001 and a FIN, the client
    /// nothing more; the tunnel ends as a dead client.
    #[test]
    fn a_client_that_answers_nothing_is_taken_for_dead() {
        let mut c = pinging(1_000, 500);
        c.advance(ms(1_000));
        write_all(&mut c.dirs[1], ms(1_000));
        assert!(!c.advance(ms(1_499)));
        assert!(c.advance(ms(1_500)));
        assert_eq!(c.dirs[1].next_write(), None, "nothing more to the client");
        let close = write_all(&mut c.dirs[0], ms(1_500));
        assert_eq!((close[0], close[1]), (0x88, 0x82), "a masked Close to the backend");
        assert_eq!(c.dirs[0].next_write(), Some(Out::Fin));
        c.dirs[0].fin_sent();
        assert!(matches!(c.ended(ms(1_501)), Some(End::DeadClient(_))));
    }

    /// A Ping waits for a frame boundary of the backend's stream.
    #[test]
    fn a_ping_goes_only_between_two_frames() {
        let mut c = pinging(1_000, 500);
        let f = wskit::raw::frame(2, true, &[5; 100], None);
        read(&mut c.dirs[1], &f[..50], ms(10));
        write_all(&mut c.dirs[1], ms(10));
        assert!(!c.advance(ms(1_000)));
        assert_eq!(c.ping_deadline(), None, "the backend's bytes bring the next look");
        read(&mut c.dirs[1], &f[50..], ms(1_100));
        write_all(&mut c.dirs[1], ms(1_100));
        assert!(c.advance(ms(1_100)));
        assert_eq!(
            c.dirs[1].next_write().map(|o| matches!(o, Out::Bytes(b) if b[0] == 0x89)),
            Some(true)
        );
    }

    fn checked(strict: bool, max: Option<u64>) -> Core {
        let (cr, br) = crate::frame_rules::Rules::for_tunnel(strict, max, None).unwrap();
        let frames = (Frames::checked(Some(cr)), Frames::checked(Some(br)));
        Core::new(Timeouts::default(), Buffers::Share, Some(frames), &[], T0)
    }

    /// A frame that breaks a rule is cut at its header: what came before it goes, the
    /// sender gets Close 1002, the other side Close 1001, and the tunnel ends as broken.
    #[test]
    fn a_broken_rule_cuts_at_its_header_and_closes_both_sides() {
        let mut c = checked(true, None);
        let good = frame(5);
        let mut stream = good.clone();
        stream.extend(wskit::raw::frame(1, true, b"unmasked", None));
        // The breaking header arrives in two reads: nothing of it is relayed meanwhile.
        read(&mut c.dirs[0], &stream[..good.len() + 1], ms(1));
        assert_eq!(write_all(&mut c.dirs[0], ms(1)), good);
        read(&mut c.dirs[0], &stream[good.len() + 1..], ms(2));
        assert!(c.advance(ms(2)));
        let to_backend = write_all(&mut c.dirs[0], ms(3));
        assert_eq!((to_backend.len(), to_backend[0], to_backend[1]), (8, 0x88, 0x82));
        assert_eq!(write_all(&mut c.dirs[1], ms(3)), close_frame(1002, None));
        c.dirs.iter_mut().for_each(Direction::fin_sent);
        // What the client still sends is dropped up to its answering Close, which ends it.
        assert_eq!(c.dirs[0].next_read(false), Some(Want::Discard));
        c.dirs[0].discarded(&close_frame(1002, Some([1, 2, 3, 4])), ms(4));
        assert!(c.ended(ms(4)).is_none());
        c.dirs[1].discarded(&close_frame(1000, None), ms(4));
        match c.ended(ms(4)) {
            Some(End::Broke(Side::Client, v)) => assert!(v.rule.contains("masked"), "{v:?}"),
            other => panic!("{other:?}"),
        }
    }

    /// Bytes held back (a header not yet complete) are the sender's: a quiet second does not
    /// free them, nor does the hand-over to the runtime.
    #[test]
    fn held_bytes_survive_a_quiet_second_and_the_hand_over() {
        let (cr, br) = crate::frame_rules::Rules::for_tunnel(true, None, None).unwrap();
        let frames = (Frames::checked(Some(cr)), Frames::checked(Some(br)));
        let mut c = Core::new(Timeouts::default(), Buffers::Keep, Some(frames), &[], T0);
        let f = frame(5);
        read(&mut c.dirs[0], &f[..1], ms(1));
        assert_eq!(c.dirs[0].next_write(), None, "half a header waits");
        assert!(!c.dirs[0].release_if_quiet(ms(5_000)));
        let mut c = Box::new(c).into_runtime();
        read(&mut c.dirs[0], &f[1..], ms(5_001));
        assert_eq!(write_all(&mut c.dirs[0], ms(5_002)), f);
    }

    /// A client streaming a large message (spliced, never copied) is heard: no Ping is due.
    #[test]
    fn spliced_bytes_count_as_hearing_from_the_client() {
        let mut c = pinging(1_000, 500);
        c.dirs[0].spliced(CHUNK, CHUNK, ms(900));
        c.dirs[0].wrote(CHUNK, ms(900));
        assert!(!c.advance(ms(1_500)), "heard at 900 ms: the next Ping is due at 1.9 s");
        assert_eq!(c.ping_deadline(), Some(ms(1_900)));
    }

    /// A message over the bound is refused from its header: none of its payload moves.
    #[test]
    fn an_oversized_message_is_refused_from_its_header() {
        let mut c = checked(false, Some(100));
        let ok = frame(100);
        let mut stream = ok.clone();
        stream.extend(frame(101));
        read(&mut c.dirs[0], &stream, ms(1));
        c.advance(ms(1));
        let out = write_all(&mut c.dirs[0], ms(2));
        assert_eq!(&out[..ok.len()], &ok[..]);
        assert_eq!(out.len(), ok.len() + 8, "then only the Close 1001");
        assert_eq!(write_all(&mut c.dirs[1], ms(2)), close_frame(1009, None));
    }

    #[test]
    fn ends_name_their_message_and_level() {
        let table = [
            (End::Closed, "WST02001", false, "tunnel closed by both sides"),
            (
                End::Idle(Duration::from_secs(2)),
                "WST02004",
                true,
                "tunnel idle for 2s (ProxyWebsocketIdleTimeout): closing both sides",
            ),
            (
                End::WriteStalled(Side::Client, Duration::from_secs(2)),
                "WST02005",
                true,
                "client took no data for 2s (Timeout/ProxyTimeout): closing both sides",
            ),
            (End::Shutdown, "WST02007", true, "httpd child is stopping: tunnel closed"),
        ];
        for (end, id, notable, text) in table {
            assert_eq!((end.id(), end.is_notable(), end.describe().as_str()), (id, notable, text));
        }
    }
}
