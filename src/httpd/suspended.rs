//! A request whose handler returned SUSPENDED (event MPM): the MPM forgets its connection and
//! leaves the connection's pool, socket and mod_ssl state to the module. From the hand-over on
//! one thread at a time uses it (the request thread until the handler returns, then the
//! child's runtime). The tunnel's end is logged from a copy of the request (a `LogRecord`), so
//! the request itself is ended once the MPM lets go, as httpd ends one: logged (the
//! hand-over's record) and its pool destroyed, which an idle tunnel would otherwise keep for
//! its whole life (if the MPM never let go, at the tunnel's end). `finish` then
//! destroys the connection's pool, whose cleanups close the socket, free mod_ssl's state and
//! give the MPM its counts back (`suspended`, connections).
//!
//! What outlives the request in the connection, checked in httpd 2.4's sources: mod_ssl's
//! pointer from the SSL to the request (read only by its certificate verify callback, which
//! runs in a handshake: renegotiation is refused (`SSL_OP_NO_RENEGOTIATION`, set on every
//! server context) unless mod_ssl itself renegotiates inside a request, and TLS 1.3's
//! post-handshake authentication is only ever started by the server) and the event MPM's
//! pointer to its current request (cleared by its own cleanup on the request's pool).

use super::nonblocking::NonBlocking;
use super::Request;
use crate::ffi;

pub struct Suspended {
    /// The request, until it is logged and freed.
    r: Option<*mut ffi::request_rec>,
    io: NonBlocking,
}

// SAFETY: once the handler returned SUSPENDED, nothing in httpd touches the request or its
// connection again (the MPM only counts it); the module uses it from one thread at a time,
// handing it over through the runtime's task queue (which synchronises).
unsafe impl Send for Suspended {}

impl Suspended {
    /// Takes over the request; its handler must return SUSPENDED right after. The tunnel's end
    /// is logged from a copy (`LogRecord`), so the request is ended at the hand-over
    /// ([`Suspended::handed_over`]).
    pub fn take(r: &Request) -> Suspended {
        Suspended { r: Some(r.as_ptr()), io: NonBlocking::new(&r.connection()) }
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

    /// Called once the wait for the MPM is over. If it let go of the connection, the request is
    /// ended now, its memory given back to the system rather than to the connection's
    /// allocator, whose free list (up to `MaxMemFree`) an idle tunnel would keep for its whole
    /// life. If it did not (within a second), the child stops suspending TLS clients
    /// (`behaviours`) and the request lives until the tunnel's end.
    pub fn handed_over(&mut self) {
        if !self.let_go() {
            // SAFETY: the connection is live (its pool is freed in `finish`, later).
            let s = unsafe { super::Connection::from_raw(self.io.as_ptr()) }.server();
            super::behaviours::mpm_kept_a_suspended_connection(s);
        } else {
            // SAFETY: the allocator is the connection's own (the event MPM makes one per
            // connection), used by this thread alone now; its limit is set back to the MPM's.
            unsafe {
                let a = ffi::apr_pool_allocator_get((*self.io.as_ptr()).pool);
                ffi::apr_allocator_max_free_set(a, 1);
                self.end_request();
                ffi::apr_allocator_max_free_set(a, ffi::ap_max_mem_free as usize);
            }
        }
    }

    /// Ends the request as httpd ends one, if not yet: logged through every log module
    /// (status 101, mod_logio's bytes so far) and its pool destroyed.
    pub fn end_request(&mut self) {
        if let Some(r) = self.r.take() {
            // SAFETY: the request is whole (suspended, never finalised), so its log hooks see a
            // real request; nothing refers to its pool afterwards (see the module's
            // documentation), and it is destroyed once, here.
            unsafe {
                ffi::ap_run_log_transaction(r);
                ffi::apr_pool_destroy((*r).pool);
            }
        }
    }

    /// Ends the connection: the request if not ended yet, TLS close_notify if the socket takes
    /// it now, a reset if the client left bytes unread, and the connection's pool destroyed.
    pub fn finish(mut self) {
        self.end_request();
        // SAFETY: the connection's socket never waits (`NonBlocking::never_wait`, set at the
        // hand-over), so mod_ssl's close_notify and the FLUSH OpenSSL and mod_ssl send behind
        // it return at once; the pool is the MPM's per-connection pool, handed to us with the
        // connection, and nothing uses it after.
        unsafe {
            let c = self.io.as_ptr();
            ffi::ap_shutdown_conn(c, 0);
            let _ = self.io.push();
            self.io.abort_if_stuck();
            ffi::apr_pool_destroy((*c).pool);
        }
    }
}
