//! Ends whose bytes pass through httpd's connection filters: a TLS connection (mod_ssl, either
//! side) or an HTTP/2 stream (mod_http2's secondary connection, a client). Both drivers relay
//! them the same way, through the rules here: read until the filters say WouldBlock (a short
//! read proves nothing: mod_ssl may keep the rest of a record), hand the filters one record at
//! a time and only once they hold nothing, send the FIN after what they hold. How a driver
//! learns that a descriptor is ready ([`Readiness`]) is all that differs.
//!
//! Pure Rust: httpd's side is in `filter_ends` (and unit tests use a buffering stand-in).

use super::core::Side;
use std::io;

/// An end whose bytes pass through httpd's connection filters, used without blocking.
pub trait Filters {
    /// Reads what the filters give without waiting (0: end of stream; WouldBlock: nothing now).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Hands all of `bytes` to the filters, which write what the socket takes now and keep
    /// the rest (see `holds`).
    fn write(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Whether the filters hold bytes the socket has not taken yet.
    fn holds(&self) -> bool;
    /// Whether the filters may hold bytes read from the socket already (a read brought some:
    /// mod_ssl may keep the rest of a record), so the next read must not wait for the socket.
    fn may_hold_input(&self) -> bool;
    /// Writes what the filters hold, as far as the socket takes it without waiting.
    fn push(&mut self) -> io::Result<()>;
    /// Ends what goes to this end (its filters hold nothing by then).
    fn shut_write(&mut self) -> io::Result<()>;
    /// Whether the end can be unready for writing. An HTTP/2 stream cannot: mod_http2's
    /// output waits in the write for room in the stream's window (mod_proxy's tunnel relays
    /// such an end the same way), and its descriptor only says when input comes.
    fn polls_writable(&self) -> bool {
        true
    }
}

/// The most bytes handed to an end's filters at once: one TLS record. Core's output filter
/// insists on writing out (it waits for the socket) once it holds more than
/// `FlushMaxThreshold` (64 KiB by default); nothing may wait on a peer in a relay, so such a
/// wait would abort a client that is merely slow. With one record at a time in the filters,
/// they hold at most one record and its TLS overhead.
pub const WRITE_MAX: usize = 16 * 1024;

/// What a driver knows of the readiness of a side's descriptor.
pub trait Readiness {
    /// Whether `side` may be ready to read (`write` false) or to write. A driver that waits
    /// on a reactor registers its interest here when it is not.
    fn ready(&mut self, side: Side, write: bool) -> io::Result<bool>;
    /// `side` proved not ready (the filters said WouldBlock): wait for the driver's next sign.
    fn not_ready(&mut self, side: Side, write: bool);
}

/// An operation on `side`'s filters, tried at once when they may hold what it needs (input
/// read earlier, room for output), then on each fresh readiness of the side's descriptor
/// until it makes progress or the side is not ready (WouldBlock).
fn attempt<F: Filters + ?Sized, T>(
    f: &mut F,
    r: &mut impl Readiness,
    side: Side,
    write: bool,
    mut op: impl FnMut(&mut F) -> io::Result<T>,
) -> io::Result<T> {
    if write || f.may_hold_input() {
        match op(f) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => return other,
        }
    }
    loop {
        if !r.ready(side, write)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match op(f) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => r.not_ready(side, write),
            other => return other,
        }
    }
}

/// Reads from `side` through its filters.
pub fn recv<F: Filters + ?Sized>(
    f: &mut F,
    r: &mut impl Readiness,
    side: Side,
    buf: &mut [u8],
) -> io::Result<usize> {
    attempt(f, r, side, false, |f| f.read(buf))
}

/// Hands `side`'s filters what they take of `bytes`: one record, once they hold nothing.
pub fn send<F: Filters + ?Sized>(
    f: &mut F,
    r: &mut impl Readiness,
    side: Side,
    bytes: &[u8],
) -> io::Result<usize> {
    drained(f, r, side)?;
    let n = bytes.len().min(WRITE_MAX);
    f.write(&bytes[..n])?;
    Ok(n)
}

/// Writes what `side`'s filters hold, if anything (WouldBlock is no error here: the driver
/// waits for the side's writability, see [`wants_writable`]).
pub fn push_held<F: Filters + ?Sized>(
    f: &mut F,
    r: &mut impl Readiness,
    side: Side,
) -> io::Result<()> {
    if !f.holds() {
        return Ok(());
    }
    let pushed = attempt(f, r, side, true, |f| {
        f.push()?;
        if f.holds() {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(())
        }
    });
    match pushed {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        other => other,
    }
}

/// Ok once `side`'s filters hold nothing (pushing what they hold); WouldBlock while they do.
fn drained<F: Filters + ?Sized>(f: &mut F, r: &mut impl Readiness, side: Side) -> io::Result<()> {
    push_held(f, r, side)?;
    if f.holds() {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    Ok(())
}

/// The FIN to `side`, after what its filters hold (WouldBlock until then). TLS itself stays
/// up (no close_notify): the other end may still send, as through mod_proxy's own tunnel.
pub fn shutdown<F: Filters + ?Sized>(
    f: &mut F,
    r: &mut impl Readiness,
    side: Side,
) -> io::Result<()> {
    drained(f, r, side)?;
    f.shut_write()
}

/// Whether a driver must wait for `side`'s writability for its filters' sake.
pub fn wants_writable<F: Filters + ?Sized>(f: &F) -> bool {
    f.polls_writable() && f.holds()
}

#[cfg(test)]
pub(super) mod stand_in {
    //! A filtered end over a plain socket that buffers as mod_ssl does: a read takes more
    //! from the socket than it returns and keeps the rest; a write keeps what the socket does
    //! not take. The conformance suite relays through it with every driver.

    use super::Filters;
    use crate::sys::{recv, send, shutdown_write};
    use std::io;
    use std::os::fd::RawFd;

    /// Bytes a read returns at most (the rest of what it took stays in `input`).
    const RECORD: usize = 1000;

    pub struct Buffering {
        pub fd: RawFd,
        input: Vec<u8>,
        output: Vec<u8>,
        eof: bool,
    }

    impl Buffering {
        pub fn new(fd: RawFd) -> Buffering {
            Buffering { fd, input: Vec::new(), output: Vec::new(), eof: false }
        }
    }

    impl Filters for Buffering {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.input.is_empty() && !self.eof {
                let mut chunk = vec![0u8; 16 * 1024];
                let n = recv(self.fd, &mut chunk)?;
                self.eof = n == 0;
                self.input.extend_from_slice(&chunk[..n]);
            }
            let n = self.input.len().min(buf.len()).min(RECORD);
            buf[..n].copy_from_slice(&self.input[..n]);
            self.input.drain(..n);
            Ok(n)
        }

        fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
            self.output.extend_from_slice(bytes);
            self.push()
        }

        fn holds(&self) -> bool {
            !self.output.is_empty()
        }

        fn may_hold_input(&self) -> bool {
            !self.input.is_empty()
        }

        fn push(&mut self) -> io::Result<()> {
            while !self.output.is_empty() {
                match send(self.fd, &self.output) {
                    Ok(n) => drop(self.output.drain(..n)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }

        fn shut_write(&mut self) -> io::Result<()> {
            shutdown_write(self.fd)
        }
    }
}
