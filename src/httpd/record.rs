//! The access-log record of a request whose tunnel outlives it (asynchronous tunnels): a
//! compact copy taken at the hand-over, given to mod_log_config when the tunnel ends
//! (c_shim/record.c says how it is rebuilt and why only mod_log_config sees it).

use super::Request;
use crate::ffi;
use std::ptr::NonNull;

pub struct LogRecord(NonNull<ffi::wst_record>);

// SAFETY: the record is a malloc'd block of copies plus a pointer to the request's server_rec,
// which lives in the configuration pool for the child's whole life; nothing in it is tied to
// the thread that made it, and only its owner touches it.
unsafe impl Send for LogRecord {}

impl LogRecord {
    /// Copies what the access log may need from the request; None if out of memory.
    pub fn take(r: &Request) -> Option<LogRecord> {
        // SAFETY: the request is live for the duration of the call; the copy owns its bytes.
        NonNull::new(unsafe { ffi::wst_record_take(r.as_ptr()) }).map(LogRecord)
    }

    /// Logs the tunnel's end with its bytes each way; false when mod_log_config is not loaded.
    pub fn log(self, client_to_backend: u64, backend_to_client: u64) -> bool {
        // SAFETY: the record is ours and valid until dropped (below); logging may run on any
        // thread (a private pool, mod_log_config's writers).
        unsafe { ffi::wst_record_log(self.0.as_ptr(), client_to_backend as ffi::apr_off_t, backend_to_client as ffi::apr_off_t) != 0 }
    }
}

impl Drop for LogRecord {
    fn drop(&mut self) {
        // SAFETY: frees the block wst_record_take allocated, once.
        unsafe { ffi::wst_record_free(self.0.as_ptr()) }
    }
}
