//! The synchronous driver: relays a tunnel on the request thread, waiting in poll(2) on the
//! two ends' descriptors (and the child's stop fd). Every decision is the core's (`core`);
//! the bytes move through the pump both drivers share (`pump`). A raw end is its
//! non-blocking socket, read first through httpd's input filters for what they already
//! buffered; an end through httpd's filters (TLS, an HTTP/2 stream) is used as
//! [`filters`](super::filters) says, its descriptor only polled.
//!
//! Pure Rust over file descriptors: unit-tested with socket pairs, no httpd needed.

use super::core::{Buffers, Core, Tick, RELEASE_AFTER};
pub use super::core::{End, Side};
use super::filters::{self, Filters, Readiness};
use super::limits::Timeouts;
use super::pump::{pump, Io, Pipe};
use crate::frames::Frames;
use crate::status::Meter;
use crate::sys::{
    self, recv, send, set_keepalive, set_nonblocking, shutdown_write, socket_error, splice,
};
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// What ends the relay besides its peers and the core's time limits: the child's stop, the
/// drain, and the hand-over.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stops {
    /// Becomes readable when the relay must stop (the httpd child is shutting down).
    pub stop_fd: Option<RawFd>,
    /// Called when a signal interrupts the wait: prefork tells a busy child about a graceful
    /// restart only by a signal (its child_stopping hook runs after the request). Signals are
    /// held while the relay works, so each one interrupts a wait.
    pub on_signal: Option<fn()>,
    /// Also call `on_signal` at least this often: the relay's thread is not one the child's
    /// signals reach (prefork runs an HTTP/2 stream's request on one of mod_http2's threads;
    /// the signal goes to the child's main thread, whose MPM state is what `on_signal` reads).
    pub ask_every: Option<Duration>,
    /// Asked when `stop_fd` fires: Some(deadline) if the tunnel may end politely (WebSocket
    /// Close 1001 at frame boundaries) until then, None if it must end now.
    pub polite: Option<fn() -> Option<Instant>>,
    /// From this moment on, return [`End::Handoff`] as soon as the tunnel can change hands
    /// (`Direction::movable`: asynchronous tunnels).
    pub handoff_at: Option<Instant>,
}

/// Why the relay ended, and the core as it stands then (bytes moved each way since the core
/// began, frame positions, bytes waiting), for whoever relays on.
#[derive(Debug)]
pub struct Outcome {
    pub end: End,
    pub core: Box<Core>,
}

impl Outcome {
    /// Bytes moved (client to backend, backend to client) since the core began.
    pub fn moved(&self) -> (u64, u64) {
        self.core.moved()
    }
}

/// Reads bytes that httpd already buffered for a raw end (through its input filters), without
/// blocking. `WouldBlock` means httpd holds nothing more: from then on the socket is read.
pub type Buffered<'a> = Box<dyn FnMut(&mut [u8]) -> io::Result<usize> + 'a>;

/// One end of the tunnel as the driver sees it.
pub enum Peer<'a> {
    /// A socket of the module's to read and write (non-blocking from now on), after what
    /// httpd's input filters already buffered of it.
    Raw { fd: RawFd, buffered: Option<Buffered<'a>> },
    /// An end through httpd's filters, and the descriptor that says when to use it (-1:
    /// none, such as an HTTP/2 stream without input).
    Filtered { poll_fd: RawFd, filters: &'a mut dyn Filters },
}

/// The two ends and the tunnel's core.
pub struct Ends<'a> {
    pub client: Peer<'a>,
    pub backend: Peer<'a>,
    /// A new one ([`core`]), or one a relay left (a hand-over that failed).
    pub core: Box<Core>,
    /// Where the bytes are counted as they move (the status board).
    pub meter: Meter,
}

/// A core for this driver, on a thread of its own: `frames` where each direction's WebSocket
/// frames stand (None for other protocols), `backend_pre` the backend's bytes behind its 101.
/// Boxed, as the runtime's are: it travels from the handler through the relay (and maybe to
/// the runtime), and every frame of the request thread's stack that held it by value stays
/// touched memory for as long as the tunnel lasts.
pub fn core(timeouts: Timeouts, frames: Option<(Frames, Frames)>, backend_pre: &[u8]) -> Box<Core> {
    Box::new(Core::new(timeouts, Buffers::Keep, frames, backend_pre, Tick::now()))
}

/// The moment `t` on the core's clock.
fn tick_of(t: Instant, now: Tick) -> Tick {
    now.after(t.saturating_duration_since(Instant::now()))
}

/// Relays until both directions are finished, a side fails, or a limit ends it.
/// The fds stay owned by the caller; raw ones are switched to non-blocking mode.
pub fn run(ends: Ends, stops: Stops) -> Outcome {
    let mut core = ends.core;
    let mut io = PollIo::default();
    for (end, side) in [(ends.client, Side::Client), (ends.backend, Side::Backend)] {
        let i = side.index();
        match end {
            Peer::Raw { fd, buffered } => {
                if let Err(e) = set_nonblocking(fd) {
                    return Outcome { end: End::Failed(side, e), core };
                }
                set_keepalive(fd);
                (io.fds[i], io.buffered[i]) = (fd, buffered);
            }
            Peer::Filtered { poll_fd, filters } => {
                (io.fds[i], io.filtered[i]) = (poll_fd, Some(filters));
            }
        }
    }
    let now = Tick::now();
    core.set_handoff_at(stops.handoff_at.map(|t| tick_of(t, now)));
    // A signal that came before the relay began (while the handshake went on) interrupted
    // some other call: the relay asks about it once, as it would after an interrupted poll.
    // (prefork runs child_stopping only once the request is over, so that ask is all a busy
    // prefork child has.)
    if let Some(f) = stops.on_signal {
        f();
    }
    let end = drive(&mut core, &mut io, &stops, ends.meter);
    if let Some((c2b, b2c)) = core.to_show(Tick::now(), true) {
        ends.meter.add(c2b, b2c);
    }
    Outcome { end, core }
}

/// [side][read, write]: may be ready (cleared when a call would block or drained it, set
/// again by poll).
struct PollReady([[bool; 2]; 2]);

impl Readiness for PollReady {
    fn ready(&mut self, side: Side, write: bool) -> io::Result<bool> {
        Ok(self.0[side.index()][write as usize])
    }

    fn not_ready(&mut self, side: Side, write: bool) {
        self.0[side.index()][write as usize] = false;
    }
}

/// The ends as poll(2) sees them: whether each may be readable and writable, and what
/// httpd's filters still hold of it.
struct PollIo<'a> {
    fds: [RawFd; 2],
    ready: PollReady,
    /// Raw ends: what httpd buffered, read before the socket.
    buffered: [Option<Buffered<'a>>; 2],
    filtered: [Option<&'a mut dyn Filters>; 2],
}

impl Default for PollIo<'_> {
    fn default() -> Self {
        PollIo {
            fds: [-1; 2],
            ready: PollReady([[true; 2]; 2]),
            buffered: [None, None],
            filtered: [None, None],
        }
    }
}

impl PollIo<'_> {
    /// Runs a read (`way` 0) or write (1) on a raw `side` if it may be ready; a short count
    /// means the socket is drained (or full) until poll says otherwise.
    fn attempt(
        &mut self,
        side: Side,
        way: usize,
        asked: usize,
        op: impl FnOnce(RawFd) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let i = side.index();
        if !self.ready.0[i][way] {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let r = op(self.fds[i]);
        match &r {
            Ok(n) if *n < asked => self.ready.0[i][way] = false,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.ready.0[i][way] = false,
            _ => {}
        }
        r
    }

    /// Writes what the filters of each filtered end hold, as far as its socket takes it.
    fn push_held(&mut self) -> Result<(), End> {
        for side in [Side::Client, Side::Backend] {
            if let Some(f) = self.filtered[side.index()].as_deref_mut() {
                filters::push_held(f, &mut self.ready, side).map_err(|e| End::Failed(side, e))?;
            }
        }
        Ok(())
    }

    /// What poll must wait for on `side`: reading if `read`, writing if `write` (bytes wait
    /// for it) or its filters hold output.
    fn events(&self, side: Side, read: bool, write: bool) -> i16 {
        let f = self.filtered[side.index()].as_deref();
        let write = match f {
            Some(f) => (write && f.polls_writable()) || filters::wants_writable(f),
            None => write,
        };
        (if read { libc::POLLIN } else { 0 }) | (if write { libc::POLLOUT } else { 0 })
    }
}

impl Io for PollIo<'_> {
    fn recv(&mut self, side: Side, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(f) = self.filtered[side.index()].as_deref_mut() {
            return filters::recv(f, &mut self.ready, side, buf);
        }
        if let Some(f) = self.buffered[side.index()].as_mut() {
            match f(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.buffered[side.index()] = None
                }
                other => return other,
            }
        }
        let asked = buf.len();
        self.attempt(side, 0, asked, |fd| recv(fd, buf))
    }

    fn send(&mut self, side: Side, bytes: &[u8]) -> io::Result<usize> {
        if let Some(f) = self.filtered[side.index()].as_deref_mut() {
            return filters::send(f, &mut self.ready, side, bytes);
        }
        self.attempt(side, 1, bytes.len(), |fd| send(fd, bytes))
    }

    fn splice_in(&mut self, side: Side, to: RawFd, len: usize) -> io::Result<usize> {
        self.attempt(side, 0, len, |fd| splice(fd, to, len))
    }

    fn splice_out(&mut self, from: RawFd, side: Side, len: usize) -> io::Result<usize> {
        self.attempt(side, 1, len, |fd| splice(from, fd, len))
    }

    fn shutdown(&mut self, side: Side) -> io::Result<()> {
        if let Some(f) = self.filtered[side.index()].as_deref_mut() {
            return filters::shutdown(f, &mut self.ready, side);
        }
        shutdown_write(self.fds[side.index()])
    }

    fn filters_hold(&self, side: Side) -> bool {
        self.buffered[side.index()].is_some()
    }

    fn filtered(&self, side: Side) -> bool {
        self.filtered[side.index()].is_some()
    }
}

fn drive(core: &mut Core, io: &mut PollIo, stops: &Stops, meter: Meter) -> End {
    let signals = sys::SignalsHeld::new();
    let mut pipes = [Pipe::default(), Pipe::default()];
    // Since when both directions have held nothing, and whether the stack was trimmed since.
    let (mut quiet_since, mut trimmed): (Option<Tick>, bool) = (None, false);
    loop {
        let now = Tick::now();
        let mut more = false;
        for (d, pipe) in core.dirs.iter_mut().zip(pipes.iter_mut()) {
            match pump(d, pipe, io, now) {
                Ok(p) => more |= p.more,
                Err(end) => return end,
            }
        }
        // What an end's filters still hold goes out as its socket takes it, whether or not
        // more comes behind it.
        if let Err(end) = io.push_held() {
            return end;
        }
        more |= core.advance(now);
        if let Some((c2b, b2c)) = core.to_show(now, false) {
            meter.add(c2b, b2c);
        }
        if let Some(end) = core.ended(now).or_else(|| core.expired(now)) {
            return end;
        }
        // Quiet for a while: the buffers go, and the stack pages deeper calls touched, so an
        // idle tunnel costs its thread only what it needs to wait.
        let mut quiet = true;
        for (d, pipe) in core.dirs.iter_mut().zip(pipes.iter_mut()) {
            if d.release_if_quiet(now) {
                pipe.close();
            } else {
                quiet = false;
            }
        }
        // The stack is trimmed once per quiet spell, a second into it as the buffers are: a
        // trim at every pause would cost short tunnels a TLB flush across the child's CPUs and
        // page faults on the next handshake (churn: 1.2x the CPU per WebSocket).
        let trim_at = match (quiet, trimmed) {
            (false, _) => {
                (quiet_since, trimmed) = (None, false);
                None
            }
            (true, true) => None,
            (true, false) => {
                let at = quiet_since.get_or_insert(now).after(RELEASE_AFTER);
                if now >= at {
                    sys::trim_stack();
                    trimmed = true;
                    None
                } else {
                    Some(at)
                }
            }
        };
        // What to wait for: each side's reads its direction wants, writes the other one has.
        let want = |s: Side| {
            let read = core.dirs[s.index()].next_read(io.filters_hold(s)).is_some();
            io.events(s, read, core.dirs[s.other().index()].pending())
        };
        let stop = if core.polite() { -1 } else { stops.stop_fd.unwrap_or(-1) };
        let mut fds = [
            libc::pollfd { fd: io.fds[0], events: want(Side::Client), revents: 0 },
            libc::pollfd { fd: io.fds[1], events: want(Side::Backend), revents: 0 },
            libc::pollfd { fd: stop, events: libc::POLLIN, revents: 0 },
        ];
        // An fd we neither read nor write is left out: a hang-up on it would otherwise wake
        // poll forever. Its fate shows on the next read or write.
        for p in fds[..2].iter_mut() {
            if p.events == 0 {
                p.fd = -1;
            }
        }
        let timeout_ms = match core.next_deadline(now).into_iter().chain(trim_at).min() {
            _ if more => 0,
            None => -1,
            // The coarse clock may lag a few ms: never wake before the deadline.
            Some(d) => now.until(d).as_millis() as i64 + 1,
        };
        let ask_ms = stops.ask_every.map_or(-1, |d| d.as_millis() as i64);
        let timeout_ms = if timeout_ms < 0 {
            ask_ms
        } else if ask_ms < 0 {
            timeout_ms
        } else {
            timeout_ms.min(ask_ms)
        };
        match signals.poll(&mut fds, timeout_ms) {
            Ok(_) => {
                if let (Some(f), Some(_)) = (stops.on_signal, stops.ask_every) {
                    f();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                if let Some(f) = stops.on_signal {
                    f();
                }
                continue;
            }
            Err(e) => return End::Failed(Side::Client, e),
        }
        if fds[2].revents != 0 {
            let until = stops.polite.and_then(|f| f()).map(|t| tick_of(t, Tick::now()));
            match until {
                Some(t) => {
                    if let Err(end) = core.close_politely(Some(t)) {
                        return end;
                    }
                }
                None => return End::Shutdown,
            }
        }
        for (p, side) in [(&fds[0], Side::Client), (&fds[1], Side::Backend)] {
            if p.revents & libc::POLLNVAL != 0 {
                return End::Failed(side, io::Error::from_raw_os_error(libc::EBADF));
            }
            if p.revents & libc::POLLERR != 0 {
                return End::Failed(side, socket_error(p.fd));
            }
            // Errors and hang-ups surface through the next read or write on that fd.
            let bad = libc::POLLHUP;
            let ready = &mut io.ready.0[side.index()];
            ready[0] |= p.revents & (libc::POLLIN | bad) != 0;
            ready[1] |= p.revents & (libc::POLLOUT | bad) != 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpStream};
    use std::os::fd::AsRawFd;
    use std::thread;
    use wskit::sockets::{pairs, read_all};

    fn spawn_relay(
        client: TcpStream,
        backend: TcpStream,
        cpre: &[u8],
        bpre: &[u8],
        stops: Stops,
    ) -> thread::JoinHandle<Outcome> {
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
                Ends {
                    client: Peer::Raw { fd: client.as_raw_fd(), buffered: Some(src) },
                    backend: Peer::Raw { fd: backend.as_raw_fd(), buffered: None },
                    core: core(Timeouts::default(), None, &bpre),
                    meter: Meter::default(),
                },
                stops,
            );
            drop((client, backend));
            out
        })
    }

    #[test]
    fn prebuffered_bytes_go_first_and_half_close_propagates() {
        let ((mut cl, rc), (rb, mut be)) = pairs();
        let h = spawn_relay(rc, rb, b"early-c ", b"early-b ", Stops::default());
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
        assert_eq!(out.moved(), (15, 15));
    }

    /// Frames of every size, bulk ones spliced: the bytes arrive intact and the frame tracker
    /// ends exactly at a boundary (splices never ran past a payload).
    #[test]
    fn frames_are_tracked_through_copies_and_splices() {
        let ((mut cl, rc), (rb, mut be)) = pairs();
        let h = thread::spawn(move || {
            let ends = Ends {
                client: Peer::Raw { fd: rc.as_raw_fd(), buffered: None },
                backend: Peer::Raw { fd: rb.as_raw_fd(), buffered: None },
                core: core(Timeouts::default(), Some(Default::default()), &[]),
                meter: Meter::default(),
            };
            let out = run(ends, Stops::default());
            drop((rc, rb));
            out
        });
        let mut stream = Vec::new();
        for len in [10, 300_000, 5, 65_536, 70_000, 0, 125, 1_000_000, 3] {
            stream.extend(wskit::raw::client_frame(2, &wskit::raw::pattern(len)));
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
        let (c2b, _) = out.core.frames();
        let c2b = c2b.expect("frames tracked");
        assert!(c2b.at_boundary() && !c2b.lost(), "{c2b:?}");
        assert_eq!(out.moved().0, sent.len() as u64);
    }
}
