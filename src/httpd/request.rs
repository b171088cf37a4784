//! `request_rec`: the request being proxied, valid for the duration of a hook call.

use super::{Connection, Pool};
use crate::config::{DirConfig, ServerConfig};
use crate::ffi;
use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::os::raw::c_char;

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

    pub fn as_ptr(&self) -> *mut ffi::request_rec {
        self.raw
    }

    fn rec(&self) -> &ffi::request_rec {
        // SAFETY: live for 'r (constructor contract).
        unsafe { &*self.raw }
    }

    fn rec_mut(&self) -> &mut ffi::request_rec {
        // SAFETY: live for 'r and only touched from the request's thread; no other Rust
        // reference to the record is held across this call.
        unsafe { &mut *self.raw }
    }

    pub fn pool(&self) -> Pool<'r> {
        // SAFETY: r->pool lives as long as the request.
        unsafe { Pool::from_raw(self.rec().pool) }
    }

    pub fn connection(&self) -> Connection<'r> {
        // SAFETY: the connection outlives its requests.
        unsafe { Connection::from_raw(self.rec().connection) }
    }

    pub fn server(&self) -> *mut ffi::server_rec {
        self.rec().server
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
        self.rec_mut().filename = p;
    }

    pub fn dir_config(&self) -> DirConfig {
        // SAFETY: the shim returns our per-dir record (created by create_dir_config) or NULL.
        let p = unsafe { ffi::wst_dir_conf(self.raw) } as *const DirConfig;
        if p.is_null() {
            DirConfig::default()
        } else {
            // SAFETY: non-NULL records were written by Pool::alloc as DirConfig.
            unsafe { *p }
        }
    }

    pub fn server_config(&self) -> ServerConfig {
        // SAFETY: as for dir_config, for the per-server record.
        let p = unsafe { ffi::wst_srv_conf(self.rec().server) } as *const ServerConfig;
        if p.is_null() {
            ServerConfig::default()
        } else {
            // SAFETY: written by Pool::alloc as ServerConfig.
            unsafe { *p }
        }
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
        let r = self.rec_mut();
        r.status = status as i32;
        r.status_line = line;
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

    /// Switches the request to tunnel mode: HTTP protocol filters and mod_reqtimeout are
    /// dropped and the connection will not be kept alive.
    pub fn enter_tunnel_mode(&self) {
        // SAFETY: rewires filter pointers of the live request to its connection's chains.
        unsafe { ffi::wst_enter_tunnel_mode(self.raw) }
    }

    /// mod_proxy's per-directory configuration (for ProxyPassReverse).
    pub fn proxy_dir_conf(&self) -> *mut ffi::proxy_dir_conf {
        // SAFETY: mod_proxy is loaded (we are called from its hooks), so its per-dir record exists.
        unsafe { ffi::wst_proxy_dir_conf(self.raw) as *mut ffi::proxy_dir_conf }
    }
}
