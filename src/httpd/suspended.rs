//! A request whose handler returned SUSPENDED (event MPM): the MPM forgets its connection and
//! leaves the connection's pool, socket and mod_ssl state to the module. From the hand-over on
//! one thread at a time uses it (the request thread until the handler returns, then the
//! child's runtime); when the tunnel ends, `finish` logs the real request and destroys the
//! connection's pool, whose cleanups close the socket, free mod_ssl's state and give the MPM
//! its counts back (`suspended`, connections).

use super::nonblocking::NonBlocking;
use super::Request;
use crate::ffi;

pub struct Suspended {
    r: *mut ffi::request_rec,
    io: NonBlocking,
    logged: bool,
}

// SAFETY: once the handler returned SUSPENDED, nothing in httpd touches the request or its
// connection again (the MPM only counts it); the module uses it from one thread at a time,
// handing it over through the runtime's task queue (which synchronises).
unsafe impl Send for Suspended {}

impl Suspended {
    /// Takes over the request; its handler must return SUSPENDED right after.
    pub fn take(r: &Request) -> Suspended {
        Suspended { r: r.as_ptr(), io: NonBlocking::new(&r.connection()), logged: false }
    }

    /// Whether the MPM's thread is done with the connection: the event MPM, after its
    /// suspend_connection hooks ran, takes the connection's scoreboard handle (`sbh`, the
    /// worker thread's slot, which serves other connections from then on) as its last touch.
    /// Read without synchronisation from another thread: a racy but aligned pointer read
    /// that only ever sees the old value or NULL.
    pub fn let_go(&self) -> bool {
        // SAFETY: the connection is live (its pool is ours to free, later); a volatile read of
        // one pointer-sized field.
        unsafe { std::ptr::read_volatile(std::ptr::addr_of!((*self.io.as_ptr()).sbh)).is_null() }
    }

    /// The connection's I/O (see [`NonBlocking`]).
    pub fn io(&self) -> &NonBlocking {
        &self.io
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
            let c = self.io.as_ptr();
            ffi::ap_shutdown_conn(c, 0);
            let _ = self.io.push();
            ffi::apr_pool_destroy((*c).pool);
        }
    }
}
