//! `request_rec`: the request being proxied, valid for the duration of a hook call.

use super::{Connection, Pool, Server};
use crate::config::{DirConfig, ServerConfig};
use crate::ffi;
use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::os::raw::c_char;

/// A request record. Copies of a `Request` may coexist on the request's thread (hooks pass
/// `&Request` around), so it never hands out a reference into the record that outlives one of
/// its calls, and never a `&mut`: it writes fields through the raw pointer, as C code does.
/// That is interior mutability for a record C owns; the raw pointer keeps `Request` on its
/// thread (neither `Send` nor `Sync`).
#[derive(Clone, Copy)]
pub struct Request<'r> {
    raw: *mut ffi::request_rec,
    _life: PhantomData<&'r ()>,
}

fn key(name: &str) -> CString {
    CString::new(name).expect("header names are literals without NUL")
}

impl<'r> Request<'r> {
    /// # Safety
    /// `raw` must be a live `request_rec` for all of `'r`, used from the request's thread.
    pub unsafe fn from_raw(raw: *mut ffi::request_rec) -> Self {
        Request { raw, _life: PhantomData }
    }

    pub(crate) fn as_ptr(&self) -> *mut ffi::request_rec {
        self.raw
    }

    /// For reads within one call (see the type's documentation).
    fn rec(&self) -> &ffi::request_rec {
        // SAFETY: live for 'r (constructor contract); no write happens while the reference
        // is used, as none outlives the method that takes it.
        unsafe { &*self.raw }
    }

    pub fn pool(&self) -> Pool<'r> {
        // SAFETY: r->pool lives as long as the request.
        unsafe { Pool::from_raw(self.rec().pool) }
    }

    pub fn connection(&self) -> Connection<'r> {
        // SAFETY: the connection outlives its requests.
        unsafe { Connection::from_raw(self.rec().connection) }
    }

    /// The (virtual) server the request came to.
    pub fn server(&self) -> Server {
        // SAFETY: r->server is a server record of the running configuration.
        unsafe { Server::from_raw(self.rec().server) }
    }

    /// HTTP/1.0 is 1000, HTTP/1.1 is 1001.
    pub fn proto_num(&self) -> i32 {
        self.rec().proto_num
    }

    pub fn proxyreq(&self) -> i32 {
        self.rec().proxyreq
    }

    fn table_get(table: *mut ffi::apr_table_t, name: &str) -> Option<&'r [u8]> {
        let k = key(name);
        // SAFETY: the table belongs to the live request; the value lives in its pool.
        let v = unsafe { ffi::apr_table_get(table, k.as_ptr()) };
        // SAFETY: table values are NUL-terminated and live as long as the request.
        (!v.is_null()).then(|| unsafe { CStr::from_ptr(v) }.to_bytes())
    }

    /// A request header (first value), as bytes.
    pub fn header_in(&self, name: &str) -> Option<&'r [u8]> {
        Self::table_get(self.rec().headers_in, name)
    }

    /// A request header as text (non-UTF-8 octets replaced).
    pub fn header_in_str(&self, name: &str) -> Option<String> {
        self.header_in(name).map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Whether the request's environment (`r->subprocess_env`: SetEnv, SetEnvIf, RewriteRule
    /// [E=]) has this variable.
    pub fn has_env(&self, name: &str) -> bool {
        Self::table_get(self.rec().subprocess_env, name).is_some()
    }

    pub fn has_note(&self, name: &str) -> bool {
        Self::table_get(self.rec().notes, name).is_some()
    }

    /// The query string (`r->args`), raw.
    pub fn args(&self) -> Option<&'r [u8]> {
        let a = self.rec().args;
        // SAFETY: r->args is NULL or a NUL-terminated string in the request pool.
        (!a.is_null()).then(|| unsafe { CStr::from_ptr(a) }.to_bytes())
    }

    /// The request's method, unparsed URI and status line fields for logs.
    pub fn the_request(&self) -> String {
        // SAFETY: NULL or a NUL-terminated string in the request pool.
        unsafe { super::cstr(self.rec().the_request) }.map(|s| s.into_owned()).unwrap_or_default()
    }

    /// Sets `r->filename` to a copy of `bytes` in the request pool.
    pub fn set_filename(&self, bytes: &[u8]) {
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        // SAFETY: copies `len` readable bytes into the request pool, NUL-terminated.
        let p = unsafe { ffi::apr_pstrmemdup(self.rec().pool, bytes.as_ptr().cast(), len) };
        // SAFETY: a field write through the raw pointer (see the type's documentation).
        unsafe { (*self.raw).filename = p };
    }

    pub fn dir_config(&self) -> DirConfig {
        // SAFETY: the shim returns our per-dir record (created by create_dir_config) or NULL.
        let p = unsafe { ffi::wst_dir_conf(self.raw) } as *const DirConfig;
        // SAFETY: non-NULL records were written by Pool::alloc as DirConfig, which is Copy.
        unsafe { p.as_ref() }.copied().unwrap_or_default()
    }

    pub fn server_config(&self) -> ServerConfig {
        self.server().config()
    }

    /// `AllowEncodedSlashes NoDecode` is in effect.
    pub fn encoded_slashes_nodecode(&self) -> bool {
        // SAFETY: reads core's per-dir config of a live request.
        unsafe { ffi::wst_encoded_slashes_nodecode(self.raw) != 0 }
    }

    fn table_set(&self, table: *mut ffi::apr_table_t, name: &str, value: &[u8], add: bool) {
        let pool = self.pool();
        let (k, v) = (pool.strdup(name), pool.strdup_bytes(value));
        // SAFETY: key and value are pool copies that live as long as the table.
        unsafe {
            if add {
                ffi::apr_table_addn(table, k, v)
            } else {
                ffi::apr_table_setn(table, k, v)
            }
        }
    }

    /// A header that survives error pages (`r->err_headers_out`).
    pub fn set_err_header(&self, name: &str, value: &str) {
        self.table_set(self.rec().err_headers_out, name, value.as_bytes(), false)
    }

    pub fn set_header_out(&self, name: &str, value: &[u8]) {
        self.table_set(self.rec().headers_out, name, value, false)
    }

    /// Empties `r->headers_out` (after an interim response went out with them).
    pub fn clear_headers_out(&self) {
        // SAFETY: the table belongs to the live request.
        unsafe { ffi::apr_table_clear(self.rec().headers_out) }
    }

    /// The request wants no body in the answer (HEAD: `r->header_only`).
    pub fn header_only(&self) -> bool {
        self.rec().header_only != 0
    }

    /// When the request arrived, in microseconds since the epoch (`r->request_time`).
    pub fn request_time_us(&self) -> i64 {
        self.rec().request_time
    }

    /// Sets a variable in the request's environment (`r->subprocess_env`: SetEnvIf's, the
    /// one CustomLog's `env=` reads).
    pub fn set_env(&self, name: &str, value: &str) {
        self.table_set(self.rec().subprocess_env, name, value.as_bytes(), false)
    }

    /// Adds a response header; the value is bytes (obs-text passes as it came).
    pub fn add_header_out(&self, name: &str, value: &[u8]) {
        self.table_set(self.rec().headers_out, name, value, true)
    }

    /// Sets `r->status` and `r->status_line` ("NNN reason", bytes; None: httpd's own).
    pub fn set_status(&self, status: u16, line: Option<&[u8]>) {
        let line = match line {
            Some(l) => self.pool().strdup_bytes(l),
            None => std::ptr::null_mut(),
        } as *const c_char;
        // SAFETY: field writes through the raw pointer (see the type's documentation).
        unsafe {
            (*self.raw).status = status as i32;
            (*self.raw).status_line = line;
        }
    }

    /// Content type from an untrusted source: never selects a handler (CVE-2024-39884 class).
    pub fn set_content_type(&self, ct: &str) {
        let v = self.pool().strdup(ct);
        // SAFETY: the value is a pool copy; ap_set_content_type only records it.
        unsafe { ffi::ap_set_content_type(self.raw, v) }
    }

    /// Writes body bytes through the request's output filters. Returns false if the client is gone.
    pub fn write(&self, data: &[u8]) -> bool {
        data.chunks(1 << 20).all(|chunk| {
            // SAFETY: `chunk` is readable for its length (< i32::MAX).
            unsafe { ffi::ap_rwrite(chunk.as_ptr().cast(), chunk.len() as i32, self.raw) >= 0 }
        })
    }

    /// Ends a response whose body the backend cut short the way mod_proxy_http does
    /// (`ap_proxy_backend_broke`: an error bucket and EOS down the output filters), so the
    /// client connection is closed rather than kept alive with a short body.
    pub fn backend_broke(&self) {
        let c = self.connection();
        // SAFETY: a brigade in the request pool with the connection's allocator (which
        // outlives the request).
        let bb = unsafe { super::Brigade::new(self.pool(), c.bucket_alloc()) };
        // SAFETY: mod_proxy appends its error and EOS buckets; the brigade goes down the live
        // request's output filters, which consume it.
        unsafe {
            ffi::ap_proxy_backend_broke(self.raw, bb.as_ptr());
            ffi::ap_pass_brigade(self.rec().output_filters, bb.as_ptr());
        }
    }

    pub fn flush(&self) -> bool {
        // SAFETY: flushes the live request's output filters.
        unsafe { ffi::ap_rflush(self.raw) >= 0 }
    }

    /// Sends `r->status`/`r->status_line` and `r->headers_out` as an interim (1xx) response,
    /// through the connection's output filters (so mod_http2 and mod_logio see it).
    pub fn send_interim_response(&self) {
        // SAFETY: the request is live and its status is a 1xx set by the caller.
        unsafe { ffi::ap_send_interim_response(self.raw, 1) }
    }

    /// Switches the request to tunnel mode for our relay (as mod_proxy's own tunnel,
    /// `ap_proxy_tunnel_create`, does): mod_reqtimeout's body
    /// timeout would cut an idle tunnel, no HTTP framing (chunks, error pages) may reach the
    /// upgraded stream, and the connection will not be kept alive.
    pub fn enter_tunnel_mode(&self) {
        let c = self.connection();
        c.remove_input_filter(c"reqtimeout");
        let (input, output) = c.filters();
        // SAFETY: field writes through the raw pointer (see the type's documentation); the
        // chains are the live connection's.
        unsafe {
            (*self.raw).input_filters = input;
            (*self.raw).proto_input_filters = input;
            (*self.raw).output_filters = output;
            (*self.raw).proto_output_filters = output;
        }
        c.set_close();
    }

    /// mod_proxy's per-directory configuration (for ProxyPassReverse).
    pub(super) fn proxy_dir_conf(&self) -> *mut ffi::proxy_dir_conf {
        // SAFETY: mod_proxy is loaded (we are called from its hooks), so its per-dir record exists.
        unsafe { ffi::wst_proxy_dir_conf(self.raw) as *mut ffi::proxy_dir_conf }
    }
}
