//! The I/O half of a raw tunnel, shared by both drivers: moves a direction's bytes as far as
//! they go without waiting, asking the core ([`Direction`]) what to read and write. The
//! drivers differ only in how they wait, which [`Io`] hides: the poll driver knows readiness
//! from poll(2), the asynchronous one from the runtime's reactor.
//!
//! Per message: one read and one write. A read that returns less than it asked for took all
//! the socket had, and a short write filled the socket's buffer, so the [`Io`] marks the side
//! not ready (as tokio's own streams and nginx do) instead of paying a read or write that
//! would only say EAGAIN.

use super::core::{Direction, End, Out, Side, Tick, Want};
use crate::sys::make_pipe;
use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Reads per call and direction before the other direction gets its turn.
const MAX_READS: usize = 16;

/// A driver's I/O on the two sockets. `WouldBlock` means "not now": the driver will wake the
/// pump when the side may be ready again.
pub trait Io {
    /// Reads what `side` has, up to `buf.len()` bytes (0: its FIN).
    fn recv(&mut self, side: Side, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes to `side` what it takes of `bytes`.
    fn send(&mut self, side: Side, bytes: &[u8]) -> io::Result<usize>;
    /// Splices up to `len` bytes from `side` into the pipe `to` (0: its FIN).
    fn splice_in(&mut self, side: Side, to: RawFd, len: usize) -> io::Result<usize>;
    /// Splices up to `len` bytes from the pipe `from` to `side`.
    fn splice_out(&mut self, from: RawFd, side: Side, len: usize) -> io::Result<usize>;
    /// Sends the FIN to `side` (a side already gone is no error).
    fn shutdown(&mut self, side: Side) -> io::Result<()>;
    /// Whether httpd's input filters still hold bytes read from `side` (read before its socket).
    fn filters_hold(&self, _side: Side) -> bool {
        false
    }
    /// Whether `side`'s bytes pass through httpd's filters (TLS) for good: nothing is spliced
    /// from or to it, and its FIN may have to wait (`shutdown` says WouldBlock) until the
    /// filters have written what they hold.
    fn filtered(&self, _side: Side) -> bool {
        false
    }
}

/// What a pump call left undone.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pumped {
    /// It stopped for the other direction's turn, with more to read: call again without waiting.
    pub more: bool,
}

/// The kernel pipe a direction splices through, taken from a per-thread pool while bytes are
/// in it, given back empty. One dropped with bytes stuck in it (a failed write) is closed with
/// them, never pooled.
#[derive(Default)]
pub struct Pipe(Option<(OwnedFd, OwnedFd)>);

thread_local! {
    static PIPES: RefCell<Vec<(OwnedFd, OwnedFd)>> = const { RefCell::new(Vec::new()) };
}

/// Pipes a thread keeps for reuse; more are closed when given back.
const PIPES_MAX: usize = 16;

impl Pipe {
    /// Closes a kept pipe (the direction went quiet: [`Direction::release_if_quiet`]).
    pub fn close(&mut self) {
        self.0 = None;
    }

    fn ends(&mut self) -> io::Result<(RawFd, RawFd)> {
        if self.0.is_none() {
            self.0 = Some(match PIPES.with(|p| p.borrow_mut().pop()) {
                Some(p) => p,
                None => make_pipe()?,
            });
        }
        let (r, w) = self.0.as_ref().expect("taken above");
        Ok((r.as_raw_fd(), w.as_raw_fd()))
    }

    /// Gives an empty pipe back to the pool.
    fn release(&mut self) {
        if let Some(p) = self.0.take() {
            PIPES.with(|pool| {
                let mut pool = pool.borrow_mut();
                if pool.len() < PIPES_MAX {
                    pool.push(p);
                }
            });
        }
    }
}

/// Bytes that pass through filters are copied, never spliced.
fn copy_only(io: &impl Io, src: Side, dst: Side) -> bool {
    io.filters_hold(src) || io.filtered(src) || io.filtered(dst)
}

/// Moves `d`'s bytes until nothing more can be done without waiting.
pub fn pump<I: Io>(
    d: &mut Direction,
    pipe: &mut Pipe,
    io: &mut I,
    now: Tick,
) -> Result<Pumped, End> {
    let (src, dst) = (d.from(), d.to());
    let mut reads = 0;
    loop {
        let mut progressed = false;
        match d.next_write() {
            Some(Out::Bytes(b)) => match io.send(dst, b) {
                Ok(n) => {
                    d.wrote(n, now);
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(End::Failed(dst, e)),
            },
            Some(Out::Pipe(n)) => {
                let (r, _) = pipe.ends().map_err(|e| End::Failed(src, e))?;
                match io.splice_out(r, dst, n) {
                    Ok(w) => {
                        d.wrote(w, now);
                        if !d.pending() && !d.keeps_buffers() {
                            pipe.release();
                        }
                        progressed = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(End::Failed(dst, e)),
                }
            }
            Some(Out::Fin) => match io.shutdown(dst) {
                Ok(()) => d.fin_sent(),
                // Filters still hold bytes for `dst`: the FIN follows them.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(End::Failed(dst, e)),
            },
            None => {}
        }
        let copy = copy_only(io, src, dst);
        if reads == MAX_READS {
            return Ok(Pumped { more: d.next_read(copy).is_some() });
        }
        match d.next_read(copy) {
            Some(Want::Copy(limit)) => match io.recv(src, d.read_space(limit)) {
                Ok(n) => {
                    d.copied(n, copy, now);
                    reads += 1;
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => d.nothing_read(),
                Err(e) => return Err(End::Failed(src, e)),
            },
            Some(Want::Splice(limit)) => {
                let (_, w) = pipe.ends().map_err(|e| End::Failed(src, e))?;
                match io.splice_in(src, w, limit) {
                    Ok(n) => {
                        d.spliced(limit, n, now);
                        reads += 1;
                        progressed = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(End::Failed(src, e)),
                }
            }
            Some(Want::Discard) => {
                // Rare (after our Close went out): a short-lived heap block, neither held by a
                // driver's future nor a page of every request thread's stack.
                let mut scratch = vec![0u8; 4096];
                match io.recv(src, &mut scratch) {
                    Ok(n) => {
                        d.discarded(&scratch[..n], now);
                        // A read like any other: a sender flooding through the polite end
                        // must not keep the other direction's Close and the deadline waiting.
                        reads += 1;
                        progressed = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The sender is gone: nothing more to wait for.
                    Err(_) => d.discarded(&[], now),
                }
            }
            None => {}
        }
        if !progressed {
            return Ok(Pumped::default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::Frames;
    use crate::tunnel::core::Buffers;

    /// A sender that always has more (zeros: empty continuation frames, never a Close) and a
    /// destination that takes everything.
    struct Flood {
        reads: usize,
    }

    impl Io for Flood {
        fn recv(&mut self, _: Side, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            assert!(self.reads < 1_000, "the pump never gave the other direction its turn");
            buf.fill(0);
            Ok(buf.len())
        }
        fn send(&mut self, _: Side, bytes: &[u8]) -> io::Result<usize> {
            Ok(bytes.len())
        }
        fn splice_in(&mut self, _: Side, _: RawFd, _: usize) -> io::Result<usize> {
            Err(io::ErrorKind::Unsupported.into())
        }
        fn splice_out(&mut self, _: RawFd, _: Side, _: usize) -> io::Result<usize> {
            Err(io::ErrorKind::Unsupported.into())
        }
        fn shutdown(&mut self, _: Side) -> io::Result<()> {
            Ok(())
        }
    }

    /// Bytes dropped after our Close count against the reads of a turn as any read does: a
    /// sender that floods through the polite end cannot keep the pump from returning, so the
    /// other direction's Close and the deadline still come (one CI run: a flooding client's
    /// relay spun here, its Close never went out, the tunnel outlived the drain).
    #[test]
    fn dropping_a_flood_after_the_close_gives_the_turn_back() {
        let now = Tick::now();
        let mut d = Direction::new(Side::Client, Buffers::Share, Some(Frames::default()), &[], now);
        d.close_politely(crate::frames::GOING_AWAY);
        let mut io = Flood { reads: 0 };
        let p = pump(&mut d, &mut Pipe::default(), &mut io, now).unwrap();
        assert!(d.finished(), "the Close and the FIN went");
        assert_eq!(d.next_read(false), Some(Want::Discard));
        assert!(p.more && io.reads == MAX_READS, "{p:?} after {} reads", io.reads);
    }
}
