//! `conn_rec`: a client connection, or the backend connection mod_proxy created for us.

use super::outcome::{read_outcome, stream_read_outcome, Got, Read};
use super::{Brigade, Pool, Server};
use crate::ffi;
use std::ffi::CStr;
use std::marker::PhantomData;
use std::os::fd::RawFd;

/// A connection record, used from the thread httpd runs it on. Like [`super::Request`], it
/// hands out no reference into the record beyond one call and writes fields through its
/// pointer (interior mutability for a record C owns).
#[derive(Clone, Copy)]
pub struct Connection<'c> {
    raw: *mut ffi::conn_rec,
    _life: PhantomData<&'c ()>,
}

impl<'c> Connection<'c> {
    /// # Safety
    /// `raw` must be a live `conn_rec` for all of `'c`, used only from the thread httpd
    /// runs it on.
    pub unsafe fn from_raw(raw: *mut ffi::conn_rec) -> Self {
        Connection { raw, _life: PhantomData }
    }

    pub(crate) fn as_ptr(&self) -> *mut ffi::conn_rec {
        self.raw
    }

    fn rec(&self) -> &ffi::conn_rec {
        // SAFETY: live for 'c per the constructor's contract; see the type's documentation.
        unsafe { &*self.raw }
    }

    pub fn pool(&self) -> Pool<'c> {
        // SAFETY: a connection's pool lives as long as the connection.
        unsafe { Pool::from_raw(self.rec().pool) }
    }

    /// The server the connection came in on.
    pub fn server(&self) -> Server {
        // SAFETY: base_server is a server record of the running configuration.
        unsafe { Server::from_raw(self.rec().base_server) }
    }

    pub(super) fn bucket_alloc(&self) -> *mut ffi::apr_bucket_alloc_t {
        self.rec().bucket_alloc
    }

    /// A brigade in this connection's pool and allocator.
    pub fn brigade(&self) -> Brigade<'c> {
        // SAFETY: the allocator belongs to this connection, which outlives its pool's brigades.
        unsafe { Brigade::new(self.pool(), self.bucket_alloc()) }
    }

    /// The heads of its input and output filter chains.
    pub(super) fn filters(&self) -> (*mut ffi::ap_filter_t, *mut ffi::ap_filter_t) {
        (self.rec().input_filters, self.rec().output_filters)
    }

    /// Takes the input filter named `name` (as registered) off the connection, if present.
    pub fn remove_input_filter(&self, name: &CStr) {
        // SAFETY: the chain is the live connection's; httpd unlinks the filter by name.
        unsafe { ffi::ap_remove_input_filter_byhandle(self.rec().input_filters, name.as_ptr()) };
    }

    /// Who the connection is, for as long as it lives: its address and httpd's id for it
    /// (an address alone may be a later connection's).
    pub fn identity(&self) -> (usize, i64) {
        (self.raw as usize, self.rec().id)
    }

    /// Bytes wait in its output filters (core's, set aside when the socket took no more).
    pub fn holds_output(&self) -> bool {
        self.rec().data_in_output_filters != 0
    }

    /// Takes the output filter named `name` off the connection, if present.
    pub fn remove_output_filter(&self, name: &CStr) {
        // SAFETY: the chain is the live connection's; httpd unlinks the filter by name.
        unsafe { ffi::ap_remove_output_filter_byhandle(self.rec().output_filters, name.as_ptr()) };
    }

    /// The connection will not be kept alive after this request.
    pub fn set_close(&self) {
        // SAFETY: a field write through the pointer (see the type's documentation).
        unsafe { (*self.raw).keepalive = ffi::AP_CONN_CLOSE };
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
        unsafe { crate::httpd::cstr(self.rec().client_ip) }
            .map(|s| s.into_owned())
            .unwrap_or_else(|| "-".into())
    }

    /// The connection's socket fd (core's socket), if it has one.
    pub fn fd(&self) -> Option<RawFd> {
        // SAFETY: reads core's socket of a live connection (NULL if none).
        let sock = unsafe { ffi::ap_get_conn_socket(self.raw) };
        if sock.is_null() {
            return None;
        }
        let mut fd: ffi::apr_os_sock_t = -1;
        // SAFETY: a live APR socket; APR writes its descriptor into `fd`.
        (unsafe { ffi::apr_os_sock_get(&mut fd, sock) } == 0 && fd >= 0).then_some(fd)
    }

    /// Sets the APR timeout of core's socket to zero: every wait APR or a filter would make on
    /// it (`apr_poll` with the socket's timeout) returns at once.
    pub fn set_socket_timeout_zero(&self) {
        // SAFETY: reads core's socket of a live connection (NULL if none) and sets the APR
        // socket's timeout field (and O_NONBLOCK, which a zero timeout needs).
        unsafe {
            let sock = ffi::ap_get_conn_socket(self.raw);
            if !sock.is_null() {
                ffi::apr_socket_timeout_set(sock, 0);
            }
        }
    }

    /// Reads at most `buf.len()` bytes through the connection's input filters.
    pub fn read(&self, bb: &Brigade<'_>, buf: &mut [u8], block: bool) -> Read {
        read_outcome(self.get(bb, buf, block), block)
    }

    /// One `ap_get_brigade` of at most `buf.len()` bytes, as the brigade held it.
    fn get(&self, bb: &Brigade<'_>, buf: &mut [u8], block: bool) -> Got {
        let mode = if block { ffi::APR_BLOCK_READ } else { ffi::APR_NONBLOCK_READ };
        // SAFETY: the brigade belongs to a live pool; the filters fill it.
        let rv = unsafe {
            ffi::ap_get_brigade(
                self.rec().input_filters,
                bb.as_ptr(),
                ffi::AP_MODE_READBYTES,
                mode,
                buf.len() as ffi::apr_off_t,
            )
        };
        let got = if rv != 0 {
            Got::Failed(rv)
        } else if bb.is_empty() {
            Got::Empty
        } else if bb.starts_with_eos() {
            Got::Eos
        } else {
            let (status, len) = bb.flatten(buf);
            Got::Bytes { status, len }
        };
        bb.cleanup();
        got
    }

    /// Reads from an HTTP/2 stream's connection without blocking (see
    /// [`stream_read_outcome`]): an end-of-stream bucket is read past, at most twice.
    pub fn read_stream(&self, bb: &Brigade<'_>, buf: &mut [u8]) -> Read {
        for _ in 0..2 {
            if let Some(read) = stream_read_outcome(self.get(bb, buf, false)) {
                return read;
            }
        }
        Read::Eof
    }

    /// Writes `bytes` through the connection's output filters (in `bb`, emptied again) and
    /// flushes: the call waits until the filters took them.
    pub fn write_flushed(&self, bb: &Brigade<'_>, bytes: &[u8]) -> Result<(), i32> {
        let (_, out) = self.filters();
        match bb.pass_borrowed(out, bytes, true) {
            0 => Ok(()),
            rv => Err(rv),
        }
    }

    /// The descriptor that says when the connection has input: its socket, or for an
    /// HTTP/2 stream mod_http2's pipe (`ap_get_pollfd_from_conn`); None if there is none.
    pub fn poll_fd(&self) -> Option<RawFd> {
        // SAFETY: a live connection; the shim asks httpd's hook and reads the OS descriptor.
        let fd = unsafe { ffi::wst_conn_poll_fd(self.raw) };
        (fd >= 0).then_some(fd)
    }

    /// httpd found the connection broken (`c->aborted`).
    pub fn aborted(&self) -> bool {
        self.rec().aborted != 0
    }

    /// Marks the connection aborted: httpd then closes it without lingering or keep-alive.
    pub fn set_aborted(&self) {
        // SAFETY: a field write through the pointer (see the type's documentation).
        unsafe { (*self.raw).aborted = 1 };
    }

    /// Adds bytes moved outside httpd's filters to mod_logio's counters (%I, %O).
    pub fn logio_add(&self, bytes_in: u64, bytes_out: u64) {
        // SAFETY: the shim calls mod_logio's optional functions if present.
        unsafe {
            ffi::wst_logio_add(self.raw, bytes_in as ffi::apr_off_t, bytes_out as ffi::apr_off_t)
        }
    }
}
