//! `conn_rec`: a client connection, or the backend connection mod_proxy created for us.

use super::{Brigade, Pool};
use crate::ffi;
use std::marker::PhantomData;
use std::os::fd::RawFd;

#[derive(Clone, Copy)]
pub struct Connection<'c> {
    raw: *mut ffi::conn_rec,
    _life: PhantomData<&'c ()>,
}

/// The result of a read from a connection's input filters.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    Data(usize),
    Eof,
    WouldBlock,
    Error(ffi::apr_status_t),
}

const APR_EAGAIN: ffi::apr_status_t = 11; // APR_OS_START_ERROR + EAGAIN maps to EAGAIN on Unix
const APR_TIMEUP: ffi::apr_status_t = 70007;

impl<'c> Connection<'c> {
    /// # Safety
    /// `raw` must be a live `conn_rec` for all of `'c`, used only from the thread httpd
    /// runs it on.
    pub unsafe fn from_raw(raw: *mut ffi::conn_rec) -> Self {
        Connection { raw, _life: PhantomData }
    }

    pub fn as_ptr(&self) -> *mut ffi::conn_rec {
        self.raw
    }

    fn rec(&self) -> &ffi::conn_rec {
        // SAFETY: live for 'c per the constructor's contract.
        unsafe { &*self.raw }
    }

    pub fn pool(&self) -> Pool<'c> {
        // SAFETY: a connection's pool lives as long as the connection.
        unsafe { Pool::from_raw(self.rec().pool) }
    }

    pub fn bucket_alloc(&self) -> *mut ffi::apr_bucket_alloc_t {
        self.rec().bucket_alloc
    }

    /// A brigade in this connection's pool and allocator.
    pub fn brigade(&self) -> Brigade<'c> {
        // SAFETY: the allocator belongs to this connection, which outlives its pool's brigades.
        unsafe { Brigade::new(self.pool(), self.bucket_alloc()) }
    }

    /// True if bytes on this connection pass through TLS (mod_ssl).
    pub fn is_tls(&self) -> bool {
        // SAFETY: ap_ssl_conn_is_ssl only inspects the connection's state.
        unsafe { ffi::ap_ssl_conn_is_ssl(self.raw) != 0 }
    }

    /// True for HTTP/2 streams (mod_http2 secondary connections): no socket of their own.
    pub fn is_secondary(&self) -> bool {
        !self.rec().master.is_null()
    }

    /// The client's IP address as httpd sees it (`c->client_ip`).
    pub fn remote_ip(&self) -> String {
        // SAFETY: client_ip is NULL or a NUL-terminated string in the connection's pool.
        unsafe { crate::httpd::cstr(self.rec().client_ip) }.map(|s| s.into_owned()).unwrap_or_else(|| "-".into())
    }

    /// The connection's socket fd, if it has one.
    pub fn fd(&self) -> Option<RawFd> {
        // SAFETY: the shim only reads core's socket of a live connection.
        let fd = unsafe { ffi::wst_conn_fd(self.raw) };
        (fd >= 0).then_some(fd)
    }

    /// Reads at most `buf.len()` bytes through the connection's input filters.
    pub fn read(&self, bb: &Brigade<'_>, buf: &mut [u8], block: bool) -> Read {
        let mut len = buf.len() as ffi::apr_size_t;
        // SAFETY: `buf` is writable for `len` bytes; the brigade belongs to a pool that is
        // alive; the shim empties the brigade before returning.
        let rv = unsafe { ffi::wst_conn_read(self.raw, bb.as_ptr(), buf.as_mut_ptr().cast(), &mut len, block as i32) };
        match rv {
            0 if len > 0 => Read::Data(len as usize),
            0 => Read::WouldBlock,
            e if e == ffi::APR_EOF as ffi::apr_status_t => Read::Eof,
            APR_EAGAIN => Read::WouldBlock,
            e => Read::Error(e),
        }
    }

    /// Marks the connection aborted: httpd then closes it without lingering or keep-alive.
    /// Writes `bytes` through the connection's output filters and flushes; false on failure.
    pub fn write(&self, bytes: &[u8]) -> bool {
        // SAFETY: a live connection; the shim copies the bytes into a heap bucket.
        unsafe { ffi::wst_conn_write(self.raw, bytes.as_ptr().cast(), bytes.len()) == ffi::APR_SUCCESS as ffi::apr_status_t }
    }

    /// httpd found the connection broken (`c->aborted`).
    pub fn aborted(&self) -> bool {
        self.rec().aborted != 0
    }

    pub fn set_aborted(&self) {
        // SAFETY: sets a flag of a live conn_rec from its own thread.
        unsafe { ffi::wst_conn_set_aborted(self.raw) }
    }

    /// Adds bytes moved outside httpd's filters to mod_logio's counters (%I, %O).
    pub fn logio_add(&self, bytes_in: u64, bytes_out: u64) {
        // SAFETY: the shim calls mod_logio's optional functions if present.
        unsafe { ffi::wst_logio_add(self.raw, bytes_in as ffi::apr_off_t, bytes_out as ffi::apr_off_t) }
    }
}

/// True if an APR status is a timeout.
pub fn is_timeout(rv: ffi::apr_status_t) -> bool {
    rv == APR_TIMEUP || rv == APR_EAGAIN
}
