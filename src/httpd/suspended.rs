//! SPIKE: a request whose handler returned SUSPENDED (event MPM): the MPM forgets the
//! connection, leaving its pool, socket and mod_ssl state to us. One thread (the child's
//! runtime) uses it from the hand-over on; when the tunnel ends it logs the real request and
//! destroys the connection's pool, whose cleanups close the socket and give the MPM its
//! counts back.

use super::{Connection, Request};
use crate::ffi;
use std::os::fd::RawFd;

pub struct Suspended {
    r: *mut ffi::request_rec,
    c: *mut ffi::conn_rec,
    bb: *mut ffi::apr_bucket_brigade,
}

// SAFETY: after the handler returns SUSPENDED nothing in httpd touches the request or its
// connection again; the runtime thread is their only user from then on.
unsafe impl Send for Suspended {}

impl Suspended {
    /// Takes the request over; its handler must return SUSPENDED right after.
    pub fn take(r: &Request) -> Suspended {
        let c = r.connection();
        // SAFETY: the live request's connection; the scoreboard slot (`sbh`) belongs to the
        // worker thread, which serves other connections from now on: never ours to update.
        unsafe { (*c.as_ptr()).sbh = std::ptr::null_mut() };
        c.remove_output_filter(c"SSL/TLS Coalescing Filter");
        let bb = c.brigade().as_ptr();
        Suspended { r: r.as_ptr(), c: c.as_ptr(), bb }
    }

    fn conn(&self) -> Connection<'_> {
        // SAFETY: ours alone until `finish` (see Send).
        unsafe { Connection::from_raw(self.c) }
    }

    pub fn fd(&self) -> Option<RawFd> {
        self.conn().fd()
    }

    /// Reads what mod_ssl has without waiting.
    pub fn read(&self, buf: &mut [u8]) -> super::outcome::Read {
        // SAFETY: the brigade lives in the connection's pool.
        let bb = unsafe { super::Brigade::from_raw(self.bb) };
        self.conn().read(&bb, buf, false)
    }

    /// Hands `bytes` to the output filters (no FLUSH: that would block) and writes what the
    /// socket takes; true if bytes still wait in the filters.
    pub fn send(&self, bytes: &[u8]) -> Result<bool, i32> {
        // SAFETY: as in `read`.
        let bb = unsafe { super::Brigade::from_raw(self.bb) };
        bb.append(bytes);
        let (_, out) = self.conn().filters();
        // SAFETY: the live connection's output chain consumes the brigade.
        let rv = unsafe { ffi::ap_pass_brigade(out, self.bb) };
        bb.cleanup();
        if rv != 0 {
            super::log::server(file!(), line!(), super::Server::main(), super::log::INFO, rv, "SPIKE: pass failed");
            return Err(rv);
        }
        self.push()
    }

    /// Writes what the core output filter holds without waiting (as the event MPM's write
    /// completion does: the last filter called with no brigade); true if bytes still wait.
    pub fn push(&self) -> Result<bool, i32> {
        let (mut f, _) = (self.conn().filters().1, ());
        // SAFETY: walks the live output chain to its last filter (core's) and calls it with
        // NULL, which core takes as "write what you hold, without blocking".
        let rv = unsafe {
            while !(*f).next.is_null() {
                f = (*f).next;
            }
            match (*(*f).frec).filter_func.out_func {
                Some(func) => func(f, std::ptr::null_mut()),
                None => 0,
            }
        };
        if rv != 0 {
            // SAFETY: the filter's record name, a C string httpd keeps.
            let name = unsafe { super::cstr((*(*f).frec).name) }.map(|s| s.into_owned()).unwrap_or_default();
            super::log::server(file!(), line!(), super::Server::main(), super::log::INFO, rv, &format!("SPIKE: push through {name} failed"));
            return Err(rv);
        }
        // SAFETY: a field of the live connection.
        Ok(unsafe { (*self.c).data_in_output_filters } != 0)
    }

    /// Logs the request (status 101, its whole life) and destroys the connection.
    pub fn finish(self) {
        // SAFETY: the request is whole (suspended, never finalised): its log hooks see a real
        // request. The connection's pool is the MPM's per-connection pool, ours to destroy
        // now: its cleanups close the socket, free mod_ssl's state and decrement the MPM's
        // counts.
        unsafe {
            ffi::ap_run_log_transaction(self.r);
            let pool = (*self.c).pool;
            ffi::apr_pool_destroy(pool);
        }
    }
}
