//! The synchronous relay between two raw sockets: both directions at once, bounded buffers
//! with back-pressure (a direction stops reading while its buffer is full), half-close
//! propagated after all earlier bytes, a reset on either side ends the tunnel, and an
//! optional idle timeout. It runs on the calling thread with poll(2) on non-blocking fds.
//!
//! Pure Rust over file descriptors: unit-tested with socket pairs, no httpd needed.

use super::bulk::{self, Read};
use super::sys::{self, going_away, make_pipe, recv, send, set_keepalive, set_nonblocking, socket_error, splice};
use crate::frames::Frames;
use crate::status::Meter;
use std::sync::atomic::{AtomicU64, Ordering};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Bytes buffered per direction at most (plus what httpd handed over before the relay).
pub const BUF_SIZE: usize = sys::CHUNK;
/// Reads per wake-up and direction before the other direction gets its turn.
const MAX_READS_PER_WAKE: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Backend,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Backend => "backend",
        }
    }
}

#[derive(Debug)]
pub enum End {
    /// Both directions finished with a FIN.
    Closed,
    /// A read or write on this side failed (reset, broken pipe, ...).
    Failed(Side, io::Error),
    /// No byte in either direction for the idle timeout.
    Idle,
    /// A peer did not take any of the bytes pending for it within the write timeout.
    WriteStalled(Side),
    /// The process is shutting down.
    Shutdown,
    /// The process is shutting down and the WebSocket tunnel ended politely: each side got a
    /// Close frame (1001 Going Away, or its peer's own Close) at a frame boundary and answered.
    GoingAway,
    /// `Limits::handoff_at` passed with nothing in flight: the sockets may change hands.
    Handoff,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// None: no idle timeout.
    pub idle: Option<Duration>,
    /// None: writes may wait forever.
    pub write_stall: Option<Duration>,
    /// Becomes readable when the relay must stop (the httpd child is shutting down).
    pub stop_fd: Option<RawFd>,
    /// Called when a signal interrupts the wait: prefork tells a busy child about a graceful
    /// restart only by a signal (its child_stopping hook runs after the request). Signals are
    /// held while the relay works, so each one interrupts a wait.
    pub on_signal: Option<fn()>,
    /// Asked when `stop_fd` fires: Some(deadline) if the tunnel may end politely (WebSocket
    /// Close 1001 at frame boundaries) until then, None if it must end now.
    pub polite: Option<fn() -> Option<Instant>>,
    /// From this moment on, return [`End::Handoff`] as soon as no byte is in flight in either
    /// direction and httpd's buffers are drained (asynchronous tunnels).
    pub handoff_at: Option<Instant>,
}

/// What the relay did: bytes each way and why it ended.
#[derive(Debug)]
pub struct Outcome {
    pub client_to_backend: u64,
    pub backend_to_client: u64,
    pub end: End,
    /// Where each direction's frames stand (WebSocket tunnels), for whoever relays on.
    pub frames: (Option<Frames>, Option<Frames>),
}

/// Reads bytes that httpd already buffered for a side (through its input filters), without
/// blocking. `WouldBlock` means httpd holds nothing more: from then on the socket is read.
pub type Buffered<'a> = Box<dyn FnMut(&mut [u8]) -> io::Result<usize> + 'a>;

/// How long a tunnel keeps its buffers without traffic.
const RELEASE_AFTER: Duration = Duration::from_secs(1);

/// A direction's part in a polite end (WebSocket tunnels in a draining child).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Polite {
    Off,
    /// Reading up to the next frame boundary only, then a Close goes to `dst`.
    Closing,
    /// A Close went to `dst` (then a FIN); `src` is read and discarded until its own Close.
    Closed,
}

/// One direction: reads `src` (first through `buffered`, if any), writes `dst`.
struct Pipe<'a> {
    buffered: Option<Buffered<'a>>,
    src: RawFd,
    dst: RawFd,
    src_side: Side,
    dst_side: Side,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof_in: bool,
    shut_out: bool,
    moved: u64,
    /// The status board's counter for this direction.
    shown: &'static AtomicU64,
    last_write: Instant,
    /// Bulk mode: bytes move by splice(2) through `kernel_pipe` (src → pipe → dst) instead
    /// of through `buf` (when and how much: `bulk`).
    splicing: bool,
    kernel_pipe: Option<(OwnedFd, OwnedFd)>,
    in_pipe: usize,
    /// Frame boundaries of `src`'s stream (WebSocket tunnels only).
    frames: Option<Frames>,
    polite: Polite,
}

impl<'a> Pipe<'a> {
    fn new(
        src: (RawFd, Side),
        dst: (RawFd, Side),
        pre: Vec<u8>,
        buffered: Option<Buffered<'a>>,
        frames: Option<Frames>,
        shown: &'static AtomicU64,
    ) -> Pipe<'a> {
        let end = pre.len();
        let frames = frames.map(|mut f| {
            f.feed(&pre);
            f
        });
        Pipe {
            buffered,
            src: src.0,
            dst: dst.0,
            src_side: src.1,
            dst_side: dst.1,
            buf: pre,
            start: 0,
            end,
            eof_in: false,
            shut_out: false,
            moved: 0,
            shown,
            last_write: Instant::now(),
            splicing: false,
            kernel_pipe: None,
            in_pipe: 0,
            frames,
            polite: Polite::Off,
        }
    }

    fn pending(&self) -> bool {
        self.end > self.start || self.in_pipe > 0
    }

    fn wants_read(&self) -> bool {
        match self.polite {
            Polite::Closed => return !self.eof_in && !self.frames.as_ref().is_some_and(Frames::close_seen),
            Polite::Closing if self.frames.as_ref().is_some_and(|f| f.at_boundary() || f.close_seen()) => return false,
            _ => {}
        }
        // Bytes in the buffer come before bytes in the pipe: one of them at a time.
        !self.eof_in && self.in_pipe == 0 && if self.splicing { self.end == self.start } else { self.end - self.start < BUF_SIZE }
    }

    /// Gives the buffer (and the pipe) back when nothing is in flight: an idle tunnel holds none.
    fn release_buffer(&mut self) {
        if !self.pending() && (!self.buf.is_empty() || self.kernel_pipe.is_some()) {
            self.buf = Vec::new();
            self.start = 0;
            self.end = 0;
            self.kernel_pipe = None;
            self.splicing = false;
        }
    }

    fn holds_buffer(&self) -> bool {
        !self.buf.is_empty() || self.kernel_pipe.is_some()
    }

    /// Splices at most `limit` bytes from `src` into the kernel pipe (made on first use).
    fn splice_in(&mut self, limit: usize) -> io::Result<usize> {
        if self.kernel_pipe.is_none() {
            self.kernel_pipe = Some(make_pipe()?);
        }
        let (_, w) = self.kernel_pipe.as_ref().expect("made above");
        let n = splice(self.src, w.as_raw_fd(), limit)?;
        if let Some(f) = self.frames.as_mut() {
            f.skip(n);
        }
        Ok(n)
    }

    fn splice_out(&mut self) -> io::Result<usize> {
        let (r, _) = self.kernel_pipe.as_ref().expect("bytes are in the pipe");
        splice(r.as_raw_fd(), self.dst, self.in_pipe)
    }

    /// Nothing in flight, httpd's buffers drained, still open both ways: the state a tunnel
    /// can be handed over in (half-closed tunnels stay where they are).
    fn quiet(&self) -> bool {
        !self.pending() && self.buffered.is_none() && !self.eof_in && !self.shut_out && self.polite == Polite::Off
    }

    /// Bytes may be waiting in httpd's buffers, where poll cannot see them.
    fn has_buffered(&self) -> bool {
        self.buffered.is_some() && self.wants_read()
    }

    /// Reads at most `limit` bytes into the buffer.
    fn read(&mut self, limit: usize) -> io::Result<usize> {
        let (end, limit) = (self.end, self.end + limit.min(self.buf.len() - self.end));
        let mut n = None;
        if let Some(f) = self.buffered.as_mut() {
            match f(&mut self.buf[end..limit]) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.buffered = None,
                other => n = Some(other?),
            }
        }
        let n = match n {
            Some(n) => n,
            None => recv(self.src, &mut self.buf[end..limit])?,
        };
        if let Some(f) = self.frames.as_mut() {
            f.feed(&self.buf[end..end + n]);
        }
        Ok(n)
    }

    /// After its Close went out, what `src` still sends is read (so that closing the socket
    /// does not reset it) and dropped, watching for `src`'s own Close.
    fn discard(&mut self) -> Result<(), End> {
        let mut scratch = [0u8; 4096];
        while self.wants_read() {
            match recv(self.src, &mut scratch) {
                Ok(0) => self.eof_in = true,
                Ok(n) => {
                    if let Some(f) = self.frames.as_mut() {
                        f.feed(&scratch[..n]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                // The peer is gone: nothing more to wait for.
                Err(_) => self.eof_in = true,
            }
        }
        Ok(())
    }

    /// A closing direction that reached a frame boundary with nothing in flight sends its
    /// Close (unless `src`'s own Close or FIN already went that way).
    fn close_if_due(&mut self) {
        if self.polite != Polite::Closing || self.pending() {
            return;
        }
        let Some(f) = &self.frames else { return };
        if f.close_seen() || self.eof_in {
            self.polite = Polite::Closed;
        } else if f.at_boundary() {
            self.buf = going_away(self.dst_side == Side::Backend);
            (self.start, self.end) = (0, self.buf.len());
            self.polite = Polite::Closed;
        }
    }

    /// Whether this direction may take part in a polite end.
    fn can_close_politely(&self) -> bool {
        self.shut_out || self.frames.as_ref().is_some_and(|f| !f.lost())
    }

    fn start_closing(&mut self) {
        self.polite = if self.shut_out { Polite::Closed } else { Polite::Closing };
    }

    /// Its Close (and FIN) went out and `src` answered with its own Close or a FIN.
    fn closed_politely(&self) -> bool {
        self.polite == Polite::Closed && self.shut_out && (self.eof_in || self.frames.as_ref().is_some_and(Frames::close_seen))
    }

    /// Moves bytes until nothing more can be done without waiting. `readable`/`writable`
    /// say whether the fds may be ready; they are cleared when a call would block.
    fn pump(&mut self, mut readable: bool, mut writable: bool, activity: &mut Instant) -> Result<(), End> {
        let mut reads = 0;
        loop {
            let mut progressed = false;
            if readable && self.polite == Polite::Closed {
                self.discard()?;
                readable = false;
            }
            if writable && self.pending() {
                let from_pipe = self.end == self.start;
                let sent = if from_pipe { self.splice_out() } else { send(self.dst, &self.buf[self.start..self.end]) };
                match sent {
                    Ok(n) => {
                        if from_pipe {
                            self.in_pipe -= n;
                        } else {
                            self.start += n;
                        }
                        self.moved += n as u64;
                        self.shown.fetch_add(n as u64, Ordering::Relaxed);
                        self.last_write = Instant::now();
                        *activity = self.last_write;
                        progressed = true;
                        if self.start == self.end {
                            self.start = 0;
                            self.end = 0;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => writable = false,
                    Err(e) => return Err(End::Failed(self.dst_side, e)),
                }
            }
            let plan = bulk::next(self.frames.as_ref(), self.splicing, self.polite == Polite::Closing);
            let at_header = self.frames.as_ref().is_some_and(|f| f.payload_left() == 0);
            if let (true, true, true, Read::Splice(limit)) = (readable, self.wants_read(), reads < MAX_READS_PER_WAKE, plan) {
                reads += 1;
                // Progress or not, the loop goes round: the write side is next.
                match self.splice_in(limit) {
                    Ok(0) => self.eof_in = true,
                    Ok(n) => {
                        self.last_write = Instant::now();
                        self.in_pipe = n;
                        self.splicing = bulk::after(self.frames.as_ref(), self.splicing, plan, n, at_header);
                        *activity = Instant::now();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => readable = false,
                    Err(e) => return Err(End::Failed(self.src_side, e)),
                }
                continue;
            }
            if let (true, true, true, Read::Copy(limit)) = (readable, self.wants_read(), reads < MAX_READS_PER_WAKE, plan) {
                if self.buf.len() < BUF_SIZE {
                    self.buf.resize(BUF_SIZE, 0);
                }
                if self.end == self.buf.len() {
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                }
                reads += 1;
                match self.read(limit) {
                    Ok(0) => {
                        self.eof_in = true;
                        progressed = true;
                    }
                    Ok(n) => {
                        if !self.pending() {
                            // The write-stall clock starts when bytes start waiting.
                            self.last_write = Instant::now();
                        }
                        // Bulk mode (splicing) only for bytes read from the socket itself.
                        self.splicing = bulk::after(self.frames.as_ref(), self.splicing, plan, n, at_header) && self.buffered.is_none();
                        self.end += n;
                        *activity = Instant::now();
                        progressed = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => readable = false,
                    Err(e) => return Err(End::Failed(self.src_side, e)),
                }
            }
            if !progressed {
                break;
            }
        }
        self.close_if_due();
        if self.pending() && writable {
            // The Close just queued goes out now if it can.
            return self.pump(false, true, activity);
        }
        if (self.eof_in || self.polite == Polite::Closed) && !self.pending() && !self.shut_out {
            // Half-close: the peer sees FIN only after every earlier byte.
            // SAFETY: shutdown(2) on an fd the caller keeps open for the relay's duration.
            let rc = unsafe { libc::shutdown(self.dst, libc::SHUT_WR) };
            if rc != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::ENOTCONN) {
                    return Err(End::Failed(self.dst_side, e));
                }
            }
            self.shut_out = true;
            // A finished direction keeps no buffer.
            self.buf = Vec::new();
        }
        Ok(())
    }
}

/// The two ends and what httpd already read from each before the relay took over.
pub struct Ends<'a> {
    pub client: RawFd,
    pub backend: RawFd,
    /// Bytes from the backend not yet sent to the client (those that came with its 101).
    pub backend_pre: Vec<u8>,
    /// What httpd buffered on each side, read before the sockets themselves.
    pub client_buffered: Option<Buffered<'a>>,
    pub backend_buffered: Option<Buffered<'a>>,
    /// For WebSocket tunnels, where each direction's frames stand (client to backend,
    /// backend to client) when the relay starts; None for other protocols.
    pub frames: Option<(Frames, Frames)>,
    /// Where the bytes are counted as they move (the status board).
    pub meter: Meter,
}

/// Relays until both directions are finished, a side fails, or a timeout fires.
/// The fds stay owned by the caller; they are switched to non-blocking mode.
pub fn run(ends: Ends, limits: Limits) -> Outcome {
    for fd in [ends.client, ends.backend] {
        if let Err(e) = set_nonblocking(fd) {
            let side = if fd == ends.client { Side::Client } else { Side::Backend };
            return Outcome { client_to_backend: 0, backend_to_client: 0, end: End::Failed(side, e), frames: (None, None) };
        }
        set_keepalive(fd);
    }
    let (cf, bf) = ends.frames.map_or((None, None), |(c, b)| (Some(c), Some(b)));
    let m = ends.meter;
    let mut c2b = Pipe::new((ends.client, Side::Client), (ends.backend, Side::Backend), Vec::new(), ends.client_buffered, cf, m.client_to_backend);
    let mut b2c = Pipe::new((ends.backend, Side::Backend), (ends.client, Side::Client), ends.backend_pre, ends.backend_buffered, bf, m.backend_to_client);
    let end = relay_loop(&mut c2b, &mut b2c, limits);
    Outcome { client_to_backend: c2b.moved, backend_to_client: b2c.moved, end, frames: (c2b.frames, b2c.frames) }
}

fn relay_loop(c2b: &mut Pipe, b2c: &mut Pipe, limits: Limits) -> End {
    let signals = sys::SignalsHeld::new();
    let mut activity = Instant::now();
    // Set when the child's drain lets the tunnel end politely: the moment it must be over.
    let mut polite_until: Option<Instant> = None;
    // First pass: everything may be ready (and bytes may already be buffered).
    let (mut c_in, mut c_out, mut b_in, mut b_out) = (true, true, true, true);
    loop {
        if let Err(end) = c2b.pump(c_in, b_out, &mut activity) {
            return end;
        }
        if let Err(end) = b2c.pump(b_in, c_out, &mut activity) {
            return end;
        }
        if polite_until.is_some() {
            if c2b.closed_politely() && b2c.closed_politely() {
                return End::GoingAway;
            }
        } else if c2b.shut_out && b2c.shut_out {
            return End::Closed;
        }
        if limits.handoff_at.is_some_and(|t| Instant::now() >= t) && c2b.quiet() && b2c.quiet() {
            return End::Handoff;
        }
        let ev = |read: bool, write: bool| {
            (if read { libc::POLLIN } else { 0 }) | (if write { libc::POLLOUT } else { 0 })
        };
        let mut fds = [
            libc::pollfd { fd: c2b.src, events: ev(c2b.wants_read(), b2c.pending()), revents: 0 },
            libc::pollfd { fd: b2c.src, events: ev(b2c.wants_read(), c2b.pending()), revents: 0 },
            libc::pollfd { fd: if polite_until.is_some() { -1 } else { limits.stop_fd.unwrap_or(-1) }, events: libc::POLLIN, revents: 0 },
        ];
        // An fd we neither read nor write is left out: a hang-up on it would otherwise wake
        // poll forever. Its fate shows on the next read or write.
        for p in fds[..2].iter_mut() {
            if p.events == 0 {
                p.fd = -1;
            }
        }
        let now = Instant::now();
        // Quiet for a while: give the buffers back, so an idle tunnel costs its thread only.
        if now >= activity + RELEASE_AFTER {
            c2b.release_buffer();
            b2c.release_buffer();
        }
        let mut deadline: Option<Instant> = limits.idle.map(|d| activity + d);
        if [&*c2b, &*b2c].iter().any(|p| p.holds_buffer() && !p.pending()) {
            // Wake up to release them (a pending buffer is covered by the write-stall clock).
            let t = (activity + RELEASE_AFTER).max(now);
            deadline = Some(deadline.map_or(t, |x| x.min(t)));
        }
        for t in [limits.handoff_at, polite_until].into_iter().flatten() {
            deadline = Some(deadline.map_or(t, |x| x.min(t)));
        }
        if let Some(stall) = limits.write_stall {
            for p in [&*c2b, &*b2c] {
                if p.pending() {
                    let d = p.last_write + stall;
                    deadline = Some(deadline.map_or(d, |x| x.min(d)));
                }
            }
        }
        let (c_forced, b_forced) = (c2b.has_buffered(), b2c.has_buffered());
        let timeout_ms = match deadline {
            _ if c_forced || b_forced => 0,
            None => -1,
            Some(d) => d.saturating_duration_since(now).as_millis().min(i64::MAX as u128) as i64,
        };
        let n = match signals.poll(&mut fds, timeout_ms) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                if let Some(f) = limits.on_signal {
                    f();
                }
                (c_in, c_out, b_in, b_out) = (false, false, false, false);
                continue;
            }
            Err(e) => return End::Failed(Side::Client, e),
        };
        if n == 0 && (c_forced || b_forced) {
            (c_in, c_out, b_in, b_out) = (c_forced, false, b_forced, false);
            continue;
        }
        if n == 0 {
            let now = Instant::now();
            if polite_until.is_some_and(|t| now >= t) {
                return End::Shutdown;
            }
            if limits.idle.is_some_and(|d| now >= activity + d) {
                return End::Idle;
            }
            if let Some(stall) = limits.write_stall {
                if c2b.pending() && now >= c2b.last_write + stall {
                    return End::WriteStalled(Side::Backend);
                }
                if b2c.pending() && now >= b2c.last_write + stall {
                    return End::WriteStalled(Side::Client);
                }
            }
            (c_in, c_out, b_in, b_out) = (false, false, false, false);
            continue;
        }
        if fds[2].revents != 0 {
            match limits.polite.and_then(|f| f()) {
                Some(t) if c2b.can_close_politely() && b2c.can_close_politely() => {
                    polite_until = Some(t);
                    c2b.start_closing();
                    b2c.start_closing();
                    (c_in, c_out, b_in, b_out) = (true, true, true, true);
                    continue;
                }
                _ => return End::Shutdown,
            }
        }
        // Errors and hang-ups surface through the next read or write on that fd.
        let bad = libc::POLLERR | libc::POLLHUP | libc::POLLNVAL;
        let r = |p: &libc::pollfd| p.revents & (libc::POLLIN | bad) != 0;
        let w = |p: &libc::pollfd| p.revents & (libc::POLLOUT | bad) != 0;
        if fds[0].revents & libc::POLLNVAL != 0 {
            return End::Failed(Side::Client, io::Error::from_raw_os_error(libc::EBADF));
        }
        if fds[1].revents & libc::POLLNVAL != 0 {
            return End::Failed(Side::Backend, io::Error::from_raw_os_error(libc::EBADF));
        }
        for (p, side) in [(&fds[0], Side::Client), (&fds[1], Side::Backend)] {
            if p.revents & libc::POLLERR != 0 {
                return End::Failed(side, socket_error(p.fd));
            }
        }
        (c_in, c_out, b_in, b_out) = (r(&fds[0]) || c_forced, w(&fds[0]), r(&fds[1]) || b_forced, w(&fds[1]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::thread;

    /// Two connected TCP pairs: (test's client end, relay's client end), (relay's backend end, test's backend end).
    fn pairs() -> ((TcpStream, TcpStream), (TcpStream, TcpStream)) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mk = || {
            let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (b, _) = l.accept().unwrap();
            (a, b)
        };
        (mk(), mk())
    }

    fn spawn_relay(client: TcpStream, backend: TcpStream, cpre: &[u8], bpre: &[u8], limits: Limits) -> thread::JoinHandle<Outcome> {
        let (cpre, bpre) = (cpre.to_vec(), bpre.to_vec());
        thread::spawn(move || {
            // The client's early bytes come through a "buffered" source, as from httpd's filters,
            // handed out in small pieces to exercise the switch to the socket.
            let mut held = cpre;
            let src: Buffered = Box::new(move |buf: &mut [u8]| {
                if held.is_empty() {
                    return Err(std::io::ErrorKind::WouldBlock.into());
                }
                let n = buf.len().min(held.len()).min(3);
                buf[..n].copy_from_slice(&held[..n]);
                held.drain(..n);
                Ok(n)
            });
            let out = run(
                Ends { client: client.as_raw_fd(), backend: backend.as_raw_fd(), backend_pre: bpre, client_buffered: Some(src), backend_buffered: None, frames: None, meter: Meter::default() },
                limits,
            );
            drop((client, backend));
            out
        })
    }

    #[test]
    fn prebuffered_bytes_go_first_and_half_close_propagates() {
        let ((mut cl, rc), (rb, mut be)) = pairs();
        let h = spawn_relay(rc, rb, b"early-c ", b"early-b ", Limits::default());
        cl.write_all(b"later-c").unwrap();
        cl.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        be.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"early-c later-c");
        // The other direction keeps flowing after the client's FIN.
        be.write_all(b"later-b").unwrap();
        be.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        cl.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"early-b later-b");
        let out = h.join().unwrap();
        assert!(matches!(out.end, End::Closed), "{:?}", out.end);
        assert_eq!((out.client_to_backend, out.backend_to_client), (15, 15));
    }

    #[test]
    fn both_directions_at_once_never_deadlock() {
        // Each side writes 8 MiB before reading anything: only independent buffering
        // in both directions lets this finish.
        let ((cl, rc), (rb, be)) = pairs();
        let h = spawn_relay(rc, rb, b"", b"", Limits::default());
        let data: Vec<u8> = (0..8 << 20).map(|i| (i % 251) as u8).collect();
        let writer = |mut s: TcpStream, d: Vec<u8>| {
            thread::spawn(move || {
                s.write_all(&d).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
            })
        };
        let reader = |mut s: TcpStream| thread::spawn(move || {
            let mut v = Vec::new();
            s.read_to_end(&mut v).unwrap();
            v
        });
        let w1 = writer(cl.try_clone().unwrap(), data.clone());
        let w2 = writer(be.try_clone().unwrap(), data.clone());
        let r1 = reader(cl);
        let r2 = reader(be);
        w1.join().unwrap();
        w2.join().unwrap();
        assert!(r1.join().unwrap() == data);
        assert!(r2.join().unwrap() == data);
        assert!(matches!(h.join().unwrap().end, End::Closed));
    }

    #[test]
    fn reset_on_one_side_ends_the_tunnel_promptly() {
        let ((cl, rc), (rb, mut be)) = pairs();
        let h = spawn_relay(rc, rb, b"", b"", Limits::default());
        // SO_LINGER 0 then close: an RST.
        let lin = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: valid pointer and size for SO_LINGER.
        unsafe {
            libc::setsockopt(cl.as_raw_fd(), libc::SOL_SOCKET, libc::SO_LINGER, (&lin as *const libc::linger).cast(), std::mem::size_of::<libc::linger>() as u32);
        }
        drop(cl);
        let out = h.join().unwrap();
        assert!(matches!(out.end, End::Failed(Side::Client, _) | End::Closed), "{:?}", out.end);
        // The backend sees the end of the stream once the relay's fds are closed.
        let mut v = Vec::new();
        be.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        be.read_to_end(&mut v).unwrap();
    }

    #[test]
    fn a_stop_signal_ends_an_idle_tunnel_at_once() {
        let ((_cl, rc), (rb, _be)) = pairs();
        // SAFETY: eventfd with constant flags; closed below.
        let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
        let h = spawn_relay(rc, rb, b"", b"", Limits { stop_fd: Some(efd), ..Limits::default() });
        thread::sleep(Duration::from_millis(100));
        let t0 = Instant::now();
        let one = 1u64;
        // SAFETY: 8-byte write from a valid u64 to our eventfd.
        unsafe { libc::write(efd, (&one as *const u64).cast(), 8) };
        assert!(matches!(h.join().unwrap().end, End::Shutdown));
        assert!(t0.elapsed() < Duration::from_secs(1));
        // SAFETY: closing the eventfd we created.
        unsafe { libc::close(efd) };
    }

    #[test]
    fn idle_timeout_fires_and_activity_defers_it() {
        let ((mut cl, rc), (rb, mut be)) = pairs();
        let limits = Limits { idle: Some(Duration::from_millis(300)), ..Limits::default() };
        let t0 = Instant::now();
        let h = spawn_relay(rc, rb, b"", b"", limits);
        for _ in 0..4 {
            thread::sleep(Duration::from_millis(150));
            cl.write_all(b"x").unwrap();
            let mut b = [0u8; 1];
            be.read_exact(&mut b).unwrap();
        }
        let out = h.join().unwrap();
        assert!(matches!(out.end, End::Idle));
        assert!(t0.elapsed() >= Duration::from_millis(900), "{:?}", t0.elapsed());
        assert_eq!(out.client_to_backend, 4);
    }

    fn polite_for_5s() -> Option<Instant> {
        Some(Instant::now() + Duration::from_secs(5))
    }

    /// A binary frame from a client (masked), `len` payload bytes.
    pub(crate) fn masked_frame(len: usize) -> Vec<u8> {
        let mut f = vec![0x82, 0x80 | 126];
        f.extend_from_slice(&(len as u16).to_be_bytes());
        f.extend_from_slice(&[9, 8, 7, 6]);
        f.extend((0..len).map(|i| i as u8));
        f
    }

    /// Reads until EOF; panics after 5 s.
    pub(crate) fn read_all(s: &mut TcpStream) -> Vec<u8> {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut v = Vec::new();
        s.read_to_end(&mut v).unwrap();
        v
    }

    #[test]
    fn a_drain_closes_each_side_with_1001_at_the_next_frame_boundary() {
        let ((mut cl, rc), (rb, mut be)) = pairs();
        // SAFETY: eventfd with constant flags; closed below.
        let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
        let limits = Limits { stop_fd: Some(efd), polite: Some(polite_for_5s), ..Limits::default() };
        let frame = masked_frame(1000);
        let h = thread::spawn(move || {
            let out = run(
                Ends {
                    client: rc.as_raw_fd(),
                    backend: rb.as_raw_fd(),
                    backend_pre: Vec::new(),
                    client_buffered: None,
                    backend_buffered: None,
                    frames: Some(Default::default()),
                    meter: Meter::default(),
                },
                limits,
            );
            drop((rc, rb));
            out
        });
        // Half a frame from the client is in flight when the drain begins.
        cl.write_all(&frame[..500]).unwrap();
        let mut got = vec![0u8; 500];
        be.read_exact(&mut got).unwrap();
        let one = 1u64;
        // SAFETY: 8-byte write from a valid u64 to our eventfd.
        unsafe { libc::write(efd, (&one as *const u64).cast(), 8) };
        // The client is between frames: its Close comes at once, then the FIN.
        assert_eq!(read_all(&mut cl), crate::frames::close_frame(1001, None));
        // The backend gets the rest of the frame first, then a masked Close 1001 and the FIN.
        thread::sleep(Duration::from_millis(100));
        cl.write_all(&frame[500..]).unwrap();
        let rest = read_all(&mut be);
        let (tail, close) = rest.split_at(frame.len() - 500);
        assert_eq!(tail, &frame[500..]);
        assert_eq!((close.len(), close[0], close[1]), (8, 0x88, 0x82));
        assert_eq!([close[6] ^ close[2], close[7] ^ close[3]], [0x03, 0xe9]);
        // Both answer with their Close: the tunnel is over, politely.
        cl.write_all(&crate::frames::close_frame(1001, Some([1, 2, 3, 4]))).unwrap();
        be.write_all(&crate::frames::close_frame(1001, None)).unwrap();
        let out = h.join().unwrap();
        assert!(matches!(out.end, End::GoingAway), "{:?}", out.end);
        // SAFETY: closing the eventfd we created.
        unsafe { libc::close(efd) };
    }

    /// Frames of every size, bulk ones spliced: the bytes arrive intact and the frame tracker
    /// ends exactly at a boundary (splices never ran past a payload).
    #[test]
    fn frames_are_tracked_through_copies_and_splices() {
        let ((mut cl, rc), (rb, mut be)) = pairs();
        let h = thread::spawn(move || {
            let ends = Ends {
                client: rc.as_raw_fd(),
                backend: rb.as_raw_fd(),
                backend_pre: Vec::new(),
                client_buffered: None,
                backend_buffered: None,
                frames: Some(Default::default()),
                meter: Meter::default(),
            };
            let out = run(ends, Limits::default());
            drop((rc, rb));
            out
        });
        let mut stream = Vec::new();
        for len in [10, 300_000, 5, 65_536, 70_000, 0, 125, 1_000_000, 3] {
            let mut f = vec![0x82, 0x80 | 127];
            f.extend_from_slice(&(len as u64).to_be_bytes());
            f.extend_from_slice(&[1, 2, 3, 4]);
            f.extend((0..len).map(|i| (i % 253) as u8));
            stream.extend(f);
        }
        let sent = stream.clone();
        let w = thread::spawn(move || {
            cl.write_all(&stream).unwrap();
            cl.shutdown(Shutdown::Write).unwrap();
            cl
        });
        assert!(read_all(&mut be) == sent, "bytes lost or reordered");
        drop(be);
        drop(w.join().unwrap());
        let out = h.join().unwrap();
        let (c2b, _) = out.frames;
        let c2b = c2b.expect("frames tracked");
        assert!(c2b.at_boundary() && !c2b.lost(), "{c2b:?}");
        assert_eq!(out.client_to_backend, sent.len() as u64);
    }

    #[test]
    fn a_drain_without_websocket_framing_ends_at_once() {
        let ((_cl, rc), (rb, _be)) = pairs();
        // SAFETY: eventfd with constant flags; closed below.
        let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
        let h = spawn_relay(rc, rb, b"", b"", Limits { stop_fd: Some(efd), polite: Some(polite_for_5s), ..Limits::default() });
        let one = 1u64;
        // SAFETY: 8-byte write from a valid u64 to our eventfd.
        unsafe { libc::write(efd, (&one as *const u64).cast(), 8) };
        assert!(matches!(h.join().unwrap().end, End::Shutdown));
        // SAFETY: closing the eventfd we created.
        unsafe { libc::close(efd) };
    }

    #[test]
    fn a_reader_that_stops_reading_stalls_its_writer_not_memory() {
        let ((mut cl, rc), (rb, be)) = pairs();
        let limits = Limits { write_stall: Some(Duration::from_millis(500)), ..Limits::default() };
        let h = spawn_relay(rc, rb, b"", b"", limits);
        // The backend never reads; the client can only push what the buffers hold.
        cl.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let chunk = vec![7u8; 64 * 1024];
        let mut pushed = 0usize;
        while cl.write_all(&chunk).is_ok() {
            pushed += chunk.len();
            if pushed > 256 << 20 {
                break;
            }
        }
        let out = h.join().unwrap();
        assert!(matches!(out.end, End::WriteStalled(Side::Backend)), "{:?}", out.end);
        assert!(pushed < 64 << 20, "pushed {pushed} bytes into a stalled tunnel");
        drop(be);
    }
}
