//! A request whose handler returned SUSPENDED (event MPM): the MPM forgets its connection and
//! leaves the connection's pool, socket and mod_ssl state to the module. From the hand-over on
//! one thread at a time uses it (the request thread until the handler returns, then the
//! child's runtime); when the tunnel ends, `finish` logs the real request and destroys the
//! connection's pool, whose cleanups close the socket, free mod_ssl's state and give the MPM
//! its counts back (`suspended`, connections).

use super::outcome::Read;
use super::{Brigade, Connection, Request};
use crate::ffi;

pub struct Suspended {
    r: *mut ffi::request_rec,
    c: *mut ffi::conn_rec,
    bb: *mut ffi::apr_bucket_brigade,
    logged: bool,
}

// SAFETY: once the handler returned SUSPENDED, nothing in httpd touches the request or its
// connection again (the MPM only counts it); the module uses it from one thread at a time,
// handing it over through the runtime's task queue (which synchronises).
unsafe impl Send for Suspended {}

impl Suspended {
    /// Takes over the request; its handler must return SUSPENDED right after.
    pub fn take(r: &Request) -> Suspended {
        let c = r.connection();
        // mod_ssl's coalescing filter keeps small writes until a FLUSH, which we never send
        // (a FLUSH blocks): mod_proxy's tunnel takes it off too.
        c.remove_output_filter(c"SSL/TLS Coalescing Filter");
        let bb = c.brigade().as_ptr();
        Suspended { r: r.as_ptr(), c: c.as_ptr(), bb, logged: false }
    }

    /// Whether the MPM's thread is done with the connection: the event MPM, after its
    /// suspend_connection hooks ran, takes the connection's scoreboard handle (`sbh`, the
    /// worker thread's slot, which serves other connections from then on) as its last touch.
    /// Read without synchronisation from another thread: a racy but aligned pointer read
    /// that only ever sees the old value or NULL.
    pub fn let_go(&self) -> bool {
        // SAFETY: the connection is live (its pool is ours to free, later); a volatile read of
        // one pointer-sized field.
        unsafe { std::ptr::read_volatile(std::ptr::addr_of!((*self.c).sbh)).is_null() }
    }

    fn conn(&self) -> Connection<'_> {
        // SAFETY: ours alone until `finish` (see Send).
        unsafe { Connection::from_raw(self.c) }
    }

    fn brigade(&self) -> Brigade<'_> {
        // SAFETY: made in the connection's pool, which lives until `finish`.
        unsafe { Brigade::from_raw(self.bb) }
    }

    /// Reads what the input filters give without waiting.
    pub fn read(&self, buf: &mut [u8]) -> Read {
        self.conn().read(&self.brigade(), buf, false)
    }

    /// Hands `bytes` to the output filters without a FLUSH (which would block), then writes
    /// what the socket takes; the rest stays in core's output filter (`holds`).
    pub fn write(&self, bytes: &[u8]) -> Result<(), i32> {
        let bb = self.brigade();
        bb.append(bytes);
        let (_, out) = self.conn().filters();
        // SAFETY: the live connection's output chain consumes the brigade.
        let rv = unsafe { ffi::ap_pass_brigade(out, self.bb) };
        bb.cleanup();
        if rv != 0 {
            return Err(rv);
        }
        self.push()
    }

    /// Writes what core's output filter holds, without waiting: the event MPM's own write
    /// completion, which calls the last filter with no brigade.
    pub fn push(&self) -> Result<(), i32> {
        let (_, mut f) = self.conn().filters();
        // SAFETY: walks the live output chain to its last filter (core's) and calls it with
        // NULL, which it takes as "write what you hold, without blocking".
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

    /// Bytes wait in the output filters.
    pub fn holds(&self) -> bool {
        // SAFETY: a field read of the live connection.
        unsafe { (*self.c).data_in_output_filters != 0 }
    }

    /// Logs the request (status 101, its whole life, mod_logio's bytes) through every log
    /// module, as httpd would have; once.
    pub fn log_request(&mut self) {
        if !std::mem::replace(&mut self.logged, true) {
            // SAFETY: the request is whole (suspended, never finalised), so its log hooks see a
            // real request.
            unsafe { ffi::ap_run_log_transaction(self.r) };
        }
    }

    /// Ends the connection: its record if not logged yet, TLS close_notify if the socket takes
    /// it now, and the connection's pool destroyed.
    pub fn finish(mut self) {
        self.log_request();
        // SAFETY: ap_shutdown_conn without flush never blocks; the pool is the MPM's
        // per-connection pool, handed to us with the connection, and nothing uses it after.
        unsafe {
            ffi::ap_shutdown_conn(self.c, 0);
            let _ = self.push();
            ffi::apr_pool_destroy((*self.c).pool);
        }
    }
}
