//! A connection driven from the child's runtime without blocking, the way the event MPM's own
//! write completion drives one: reads through its input filters until they say EAGAIN (a
//! short read proves nothing: mod_ssl may keep the rest of a record), writes through its
//! output filters without a FLUSH (a FLUSH blocks), then lets core's output filter write
//! what the socket takes. Both ends a suspended tunnel may have use it: the suspended
//! client's connection and a held wss:// backend's (mod_ssl's proxy side).

use super::outcome::Read;
use super::{Brigade, Connection};
use crate::ffi;

pub struct NonBlocking {
    c: *mut ffi::conn_rec,
    bb: *mut ffi::apr_bucket_brigade,
}

impl NonBlocking {
    /// Takes over `c`'s I/O; its owner guarantees the connection outlives this value and that
    /// one thread at a time uses it.
    pub fn new(c: &Connection) -> NonBlocking {
        // mod_ssl's coalescing filter keeps small writes until a FLUSH, which we never send:
        // mod_proxy's tunnel takes it off too.
        c.remove_output_filter(c"SSL/TLS Coalescing Filter");
        NonBlocking { c: c.as_ptr(), bb: c.brigade().as_ptr() }
    }

    pub fn as_ptr(&self) -> *mut ffi::conn_rec {
        self.c
    }

    fn conn(&self) -> Connection<'_> {
        // SAFETY: live and ours alone while this value is (see `new`).
        unsafe { Connection::from_raw(self.c) }
    }

    fn brigade(&self) -> Brigade<'_> {
        // SAFETY: made in the connection's pool, which outlives this value.
        unsafe { Brigade::from_raw(self.bb) }
    }

    /// Reads what the input filters give without waiting.
    pub fn read(&self, buf: &mut [u8]) -> Read {
        self.conn().read(&self.brigade(), buf, false)
    }

    /// Hands `bytes` to the output filters without a FLUSH, then writes what the socket takes;
    /// the rest stays in core's output filter (`holds`).
    pub fn write(&self, bytes: &[u8]) -> Result<(), i32> {
        let (_, out) = self.conn().filters();
        let rv = self.brigade().pass_borrowed(out, bytes, false);
        if rv != 0 {
            return Err(rv);
        }
        self.push()
    }

    /// Writes what core's output filter holds, without waiting: it is called with no
    /// brigade, which it takes as "write what you hold, without blocking".
    pub fn push(&self) -> Result<(), i32> {
        let (_, mut f) = self.conn().filters();
        // SAFETY: walks the live output chain to its last filter (core's) and calls it with NULL.
        let rv = unsafe {
            while !(*f).next.is_null() {
                f = (*f).next;
            }
            match (*(*f).frec).filter_func.out_func {
                Some(func) => func(f, std::ptr::null_mut()),
                None => 0,
            }
        };
        if rv == 0 {
            Ok(())
        } else {
            Err(rv)
        }
    }

    /// The FIN to the peer, on the connection's socket; TLS itself stays up (no close_notify).
    pub fn shutdown_write(&self) -> std::io::Result<()> {
        match self.conn().fd() {
            Some(fd) => crate::sys::shutdown_write(fd),
            None => Ok(()),
        }
    }

    /// Bytes wait in the output filters.
    pub fn holds(&self) -> bool {
        self.conn().holds_output()
    }

    /// From now on nothing in httpd, APR or mod_ssl waits on this connection's peer: its
    /// socket's timeout, which every blocking path below the filters waits with (core's
    /// output filter polls with it for a FLUSH, which OpenSSL asks for after every alert and
    /// mod_ssl after its close_notify; a blocking read waits with it), is set to zero, so such
    /// a wait fails at once (a write then marks the connection aborted) instead of holding the
    /// relay thread, and every other tunnel on it, for `Timeout`. Called on the thread that
    /// drives the connection once its request thread let go of it.
    pub fn never_wait(&self) {
        self.conn().set_socket_timeout_zero();
    }

    /// The last word on a connection the runtime drives: if its output filters still hold
    /// bytes (its peer does not read) or it failed, its socket is closed with a reset rather
    /// than left to the kernel to deliver to a peer that may never read.
    pub fn abort_if_stuck(&self) {
        let c = self.conn();
        if c.holds_output() || c.aborted() {
            c.set_aborted();
            if let Some(fd) = c.fd() {
                crate::sys::set_linger_zero(fd);
            }
        }
    }
}
