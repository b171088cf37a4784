//! mod_proxy's side of the module: the worker a request goes to, the backend connection
//! (`proxy_conn_rec`: acquired, determined, connected and released on drop), the request
//! head mod_proxy builds, its filter-aware tunnel, URL canonicalisation and the reverse map.

use super::nonblocking::NonBlocking;
use super::{Brigade, Connection, Pool, Request};
use crate::ffi;
use std::ffi::CStr;
use std::marker::PhantomData;
use std::os::raw::c_char;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Reads a C string mod_proxy returned into `Vec<u8>`; None for NULL.
///
/// # Safety
/// `p` must be NULL or NUL-terminated and readable.
unsafe fn bytes(p: *const c_char) -> Option<Vec<u8>> {
    // SAFETY: the caller's contract.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_bytes().to_vec())
}

/// A worker of this child's configuration (`ProxyPass ... ws://...` and its parameters).
/// Workers and their shared records live in the configuration pool and shared memory for
/// the child's whole life.
#[derive(Clone, Copy)]
pub struct Worker {
    raw: *mut ffi::proxy_worker,
}

impl Worker {
    /// The worker's `upgrade=` parameter as mod_proxy stored it.
    pub fn upgrade(&self) -> String {
        // SAFETY: a live worker whose shared record holds a NUL-terminated char[16]
        // (PROXY_STRNCPY always terminates).
        unsafe { bytes((*(*self.raw).s).upgrade.as_ptr()) }
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// How many connections to its backend the worker lets this child have at once (`max=`;
    /// mod_proxy's default is ThreadsPerChild).
    pub fn max_connections(&self) -> usize {
        // SAFETY: a live worker's shared record (see `upgrade`).
        unsafe { (*(*self.raw).s).hmax.max(0) as usize }
    }

    /// Tells workers apart (their address, stable for the child's life).
    pub fn key(&self) -> usize {
        self.raw as usize
    }

    /// Raises the worker's busy count (`worker->s->busy`, which mod_proxy_balancer raises for
    /// a request's life and `lbmethod=bybusyness` reads) until the `Busy` drops: an
    /// asynchronous tunnel outlives its request, so it holds the count itself.
    pub fn hold_busy(&self) -> Option<Busy> {
        // SAFETY: the shared record lives in shared memory for the child's life (above).
        let shared = unsafe { self.raw.as_ref()?.s };
        if shared.is_null() {
            return None;
        }
        // SAFETY: apr_size_t is usize, the field is aligned and lives as long as the process;
        // other updaters are httpd threads (plain increments under the balancer's lock), and
        // atomics here keep ours from tearing.
        let counter = unsafe { AtomicUsize::from_ptr(std::ptr::addr_of_mut!((*shared).busy)) };
        counter.fetch_add(1, Ordering::AcqRel);
        Some(Busy { counter })
    }
}

/// One unit of a worker's busy count, released on drop.
pub struct Busy {
    counter: &'static AtomicUsize,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ =
            self.counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1));
    }
}

/// mod_proxy's server configuration, passed through to its functions.
#[derive(Clone, Copy)]
struct ProxyConf {
    raw: *mut ffi::proxy_server_conf,
}

/// What mod_proxy passes a scheme handler: the worker, its own configuration, the URL and
/// the forward proxy (`ProxyRemote`) to go through, if any.
pub struct SchemeArgs<'r> {
    pub worker: Worker,
    conf: ProxyConf,
    url: *mut c_char,
    proxyname: *const c_char,
    proxyport: u16,
    _life: PhantomData<&'r ()>,
}

impl<'r> SchemeArgs<'r> {
    /// # Safety
    /// The arguments must be those mod_proxy passed to the scheme handler, for its call.
    pub unsafe fn from_raw(
        worker: *mut ffi::proxy_worker,
        conf: *mut ffi::proxy_server_conf,
        url: *mut c_char,
        proxyname: *const c_char,
        proxyport: u16,
    ) -> Self {
        SchemeArgs {
            worker: Worker { raw: worker },
            conf: ProxyConf { raw: conf },
            url,
            proxyname,
            proxyport,
            _life: PhantomData,
        }
    }

    /// The URL to proxy to (after canonicalisation: `ws://host:port/path?query`).
    pub fn url(&self) -> &'r [u8] {
        // SAFETY: mod_proxy passes a NUL-terminated URL in the request pool.
        unsafe { CStr::from_ptr(self.url) }.to_bytes()
    }
}

/// Where mod_proxy resolved the request to (`ap_proxy_determine_connection`).
pub struct Target {
    uri: *mut ffi::apr_uri_t,
    path: *mut c_char,
    port: [c_char; 32],
}

/// A backend connection acquired from mod_proxy for one request, released on drop; always
/// closed (never pooled): a tunnelled or refused connection is never reused.
pub struct Backend<'r> {
    raw: *mut ffi::proxy_conn_rec,
    function: &'static CStr,
    r: Request<'r>,
    worker: Worker,
}

impl<'r> Backend<'r> {
    /// Acquires a connection of `worker` for `r`, under the scheme's proxy function name
    /// (`WS`, `WSS`); Err holds mod_proxy's status.
    pub fn acquire(
        r: &Request<'r>,
        function: &'static CStr,
        worker: Worker,
        tls: bool,
    ) -> Result<Self, i32> {
        let mut raw: *mut ffi::proxy_conn_rec = std::ptr::null_mut();
        // SAFETY: worker and server are live; mod_proxy fills `raw` on success.
        let status = unsafe {
            ffi::ap_proxy_acquire_connection(
                function.as_ptr(),
                &mut raw,
                worker.raw,
                r.server().as_ptr().cast_mut(),
            )
        };
        if status != ffi::OK as i32 {
            return Err(status);
        }
        let mut b = Backend { raw, function, r: *r, worker };
        let rec = b.rec_mut();
        rec.set_is_ssl(tls as u32);
        rec.set_close(0);
        Ok(b)
    }

    fn rec(&self) -> &ffi::proxy_conn_rec {
        assert!(!self.raw.is_null(), "a held backend is used through its HeldBackend only");
        // SAFETY: ours between acquire and release (drop) or hold, used from this thread only.
        unsafe { &*self.raw }
    }

    fn rec_mut(&mut self) -> &mut ffi::proxy_conn_rec {
        assert!(!self.raw.is_null(), "a held backend is used through its HeldBackend only");
        // SAFETY: as in `rec`; `&mut self` makes it the only reference.
        unsafe { &mut *self.raw }
    }

    /// Keeps the connection past its request thread (a suspended tunnel's wss:// backend): it
    /// is no longer released when this value drops, but when the returned one does. None
    /// without a backend `conn_rec`.
    ///
    /// Its TLS settings (mod_ssl's directory configuration, which mod_proxy gave it from the
    /// request) are pointed at the worker's own, as mod_proxy does for a connection it keeps
    /// idle: the request is freed long before the held connection ends, and mod_ssl reads
    /// them again if the backend starts a new handshake.
    pub fn hold(&mut self) -> Option<HeldBackend> {
        let conn = self.connection()?;
        let io = NonBlocking::new(&conn);
        if self.rec().is_ssl() != 0 {
            // SAFETY: the connection and the worker are live; the worker's section (or, when
            // NULL, the server's defaults that mod_ssl falls back to) lives as long as the
            // configuration; rebinding an established TLS connection only swaps that pointer.
            unsafe {
                ffi::ap_proxy_ssl_engine(conn.as_ptr(), (*self.worker.raw).section_config, 1)
            };
        }
        let server = self.r.server().as_ptr().cast_mut();
        let raw = std::mem::replace(&mut self.raw, std::ptr::null_mut());
        Some(HeldBackend { raw, function: self.function, server, io })
    }

    pub fn worker(&self) -> Worker {
        self.worker
    }

    /// The backend's host name, for logs.
    pub fn hostname(&self) -> String {
        // SAFETY: NULL or a NUL-terminated string in the connection's pool.
        unsafe { super::cstr(self.rec().hostname) }
            .map(|s| s.into_owned())
            .unwrap_or_else(|| "(unknown)".into())
    }

    /// Resolves the backend address for `url` (through `proxyname:proxyport` if a
    /// ProxyRemote applies) and the path to ask for.
    pub fn determine(&mut self, args: &SchemeArgs<'r>) -> Result<Target, i32> {
        let pool = self.r.pool();
        let mut t =
            Target { uri: pool.alloc(ffi::apr_uri_t::default()), path: args.url, port: [0; 32] };
        // SAFETY: all pointers are live for the call; mod_proxy resolves the backend address
        // and points `path` at the path to request.
        let status = unsafe {
            ffi::ap_proxy_determine_connection(
                pool.as_ptr(),
                self.r.as_ptr(),
                args.conf.raw,
                self.worker.raw,
                self.raw,
                t.uri,
                &mut t.path,
                args.proxyname,
                args.proxyport,
                t.port.as_mut_ptr(),
                t.port.len() as i32,
            )
        };
        if status == ffi::OK as i32 {
            Ok(t)
        } else {
            Err(status)
        }
    }

    /// Connects with the worker's timeouts; false if the backend cannot be reached.
    pub fn connect(&mut self) -> bool {
        // SAFETY: the connection was determined; mod_proxy connects its socket.
        unsafe {
            ffi::ap_proxy_connect_backend(
                self.function.as_ptr(),
                self.raw,
                self.worker.raw,
                self.r.server().as_ptr().cast_mut(),
            ) == 0
        }
    }

    /// Creates the backend `conn_rec` (and mod_ssl's state for wss); Err holds the status.
    pub fn create_connection(&mut self) -> Result<Connection<'r>, i32> {
        // SAFETY: a connected backend of this request.
        let status = unsafe {
            ffi::ap_proxy_connection_create_ex(self.function.as_ptr(), self.raw, self.r.as_ptr())
        };
        if status != ffi::OK as i32 {
            return Err(status);
        }
        self.connection().ok_or(ffi::HTTP_INTERNAL_SERVER_ERROR as i32)
    }

    /// The backend `conn_rec`, once created.
    pub fn connection(&self) -> Option<Connection<'r>> {
        let c = self.rec().connection;
        // SAFETY: created by ap_proxy_connection_create_ex and alive until release.
        (!c.is_null()).then(|| unsafe { Connection::from_raw(c) })
    }

    /// The request head mod_proxy builds for the backend (Host, X-Forwarded-*, Via,
    /// RequestHeader edits, hop-by-hop headers purged), without its blank line.
    pub fn request_head(
        &mut self,
        args: &SchemeArgs<'r>,
        target: &mut Target,
    ) -> Result<Brigade<'r>, i32> {
        let backconn = self.connection().ok_or(ffi::HTTP_INTERNAL_SERVER_ERROR as i32)?;
        let bb = backconn.brigade();
        let (mut old_cl, mut old_te): (*mut c_char, *mut c_char) =
            (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: all pointers are live for the call; mod_proxy writes into our brigade.
        let status = unsafe {
            ffi::ap_proxy_create_hdrbrgd(
                self.r.pool().as_ptr(),
                bb.as_ptr(),
                self.r.as_ptr(),
                self.raw,
                self.worker.raw,
                args.conf.raw,
                target.uri,
                target.path,
                target.port.as_mut_ptr(),
                &mut old_cl,
                &mut old_te,
            )
        };
        if status == ffi::OK as i32 {
            Ok(bb)
        } else {
            Err(status)
        }
    }

    /// Sends `head` and then `tail` (our own lines and the blank line) to the backend, flushed.
    pub fn send(&mut self, head: Brigade<'r>, tail: &[u8]) -> i32 {
        let Some(c) = self.connection() else { return ffi::HTTP_INTERNAL_SERVER_ERROR as i32 };
        let rv = head.write(tail);
        if rv != 0 {
            return ffi::HTTP_INTERNAL_SERVER_ERROR as i32;
        }
        // SAFETY: the brigade belongs to the backend connection, which mod_proxy writes to.
        unsafe {
            ffi::ap_proxy_pass_brigade(
                c.bucket_alloc(),
                self.r.as_ptr(),
                self.raw,
                c.as_ptr(),
                head.as_ptr(),
                1,
            )
        }
    }

    /// The backend socket's timeout as mod_proxy set it when connecting (the worker's
    /// `timeout=`, `ProxyTimeout` or `Timeout`); None if not connected or unset.
    pub fn socket_timeout(&self) -> Option<Duration> {
        let sock = self.rec().sock;
        if sock.is_null() {
            return None;
        }
        let mut t: ffi::apr_interval_time_t = 0;
        // SAFETY: a live APR socket of a connection we hold; APR writes the timeout into `t`.
        unsafe { ffi::apr_socket_timeout_get(sock, &mut t) };
        (t > 0).then(|| Duration::from_micros(t as u64))
    }

    /// Sets the backend socket's timeout (each blocking read through the connection's
    /// filters waits at most this long).
    pub fn set_socket_timeout(&mut self, t: Duration) {
        let sock = self.rec().sock;
        if sock.is_null() {
            return;
        }
        // SAFETY: as in socket_timeout; APR only stores the value.
        unsafe {
            ffi::apr_socket_timeout_set(
                sock,
                t.as_micros().clamp(1, i64::MAX as u128) as ffi::apr_interval_time_t,
            )
        };
    }
}

impl Drop for Backend<'_> {
    fn drop(&mut self) {
        if self.raw.is_null() {
            return;
        }
        self.rec_mut().set_close(1);
        // SAFETY: releases the connection we acquired, exactly once.
        unsafe {
            ffi::ap_proxy_release_connection(
                self.function.as_ptr(),
                self.raw,
                self.r.server().as_ptr().cast_mut(),
            )
        };
    }
}

/// A backend connection held past its request thread (see [`Backend::hold`]): driven from the
/// child's runtime without blocking, and given back to mod_proxy, closed, when dropped.
pub struct HeldBackend {
    raw: *mut ffi::proxy_conn_rec,
    function: &'static CStr,
    server: *mut ffi::server_rec,
    io: NonBlocking,
}

// SAFETY: the request thread let go of the connection when it was held; from then on one
// thread at a time uses it (handed over through the runtime's task queue, which
// synchronises), and mod_proxy's release is thread-safe (its connection pool is a reslist
// under a threaded MPM, the only kind that suspends requests).
unsafe impl Send for HeldBackend {}

impl HeldBackend {
    /// The connection's I/O (mod_ssl's proxy side for wss://).
    pub fn io(&self) -> &NonBlocking {
        &self.io
    }
}

impl Drop for HeldBackend {
    fn drop(&mut self) {
        // SAFETY: acquired by the request and held since; released exactly once, closed
        // (a tunnelled connection is never reused). The server outlives the child's tunnels.
        unsafe {
            (*self.raw).set_close(1);
            ffi::ap_proxy_release_connection(self.function.as_ptr(), self.raw, self.server);
        }
    }
}

/// `ProxyPassReverse` applied to a header value (`Location`, ...) of `r`'s answer.
pub fn reverse_map(r: &Request, value: &[u8]) -> Vec<u8> {
    let v = r.pool().strdup_bytes(value);
    // SAFETY: mod_proxy's own mapping on a pool string, with its per-directory configuration.
    let mapped = unsafe { ffi::ap_proxy_location_reverse_map(r.as_ptr(), r.proxy_dir_conf(), v) };
    // SAFETY: NULL or a NUL-terminated pool string.
    unsafe { bytes(mapped) }.unwrap_or_else(|| value.to_vec())
}

/// A URL's network location as mod_proxy parses it (`ap_proxy_canon_netloc`): host, port,
/// and what follows (the path and query, unencoded).
pub struct Netloc {
    pub host: Vec<u8>,
    pub port: u16,
    pub rest: Vec<u8>,
}

/// Parses `//host[:port]/rest` (user and password dropped, as stock does); Err is
/// mod_proxy's message.
pub fn canon_netloc(pool: Pool, after_scheme: &[u8], default_port: u16) -> Result<Netloc, String> {
    // ap_proxy_canon_netloc wants a writable C string pointer it advances past the netloc.
    let mut url = pool.strdup_bytes(after_scheme);
    let mut host: *mut c_char = std::ptr::null_mut();
    let mut port = default_port;
    // SAFETY: `url` points to a NUL-terminated pool string; the out-pointers are valid.
    let err = unsafe {
        ffi::ap_proxy_canon_netloc(
            pool.as_ptr(),
            &mut url,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut host,
            &mut port,
        )
    };
    // SAFETY: NULL or mod_proxy's NUL-terminated message in the pool.
    if let Some(msg) = unsafe { bytes(err) } {
        return Err(String::from_utf8_lossy(&msg).into_owned());
    }
    // SAFETY: on success host and url point to NUL-terminated pool strings.
    let (host, rest) = unsafe { (bytes(host).unwrap_or_default(), bytes(url).unwrap_or_default()) };
    Ok(Netloc { host, port, rest })
}

/// A path %-encoded by mod_proxy's encoder (`ap_proxy_canonenc_ex`, as for the request's
/// `proxyreq`); `keep_encoded_slashes` for `AllowEncodedSlashes NoDecode`. None for a bad
/// %-escape.
pub fn canonenc_path(r: &Request, path: &[u8], keep_encoded_slashes: bool) -> Option<Vec<u8>> {
    let pool = r.pool();
    let p = pool.strdup_bytes(path);
    let flags = if keep_encoded_slashes { ffi::PROXY_CANONENC_NOENCODEDSLASHENCODING } else { 0 };
    // SAFETY: `p` is NUL-terminated with `path.len()` bytes (no NUL inside: it came out of a
    // C string); the result is a pool string or NULL.
    let enc = unsafe {
        ffi::ap_proxy_canonenc_ex(
            pool.as_ptr(),
            p,
            path.len() as i32,
            ffi::enc_path,
            flags as i32,
            r.proxyreq(),
        )
    };
    // SAFETY: as above.
    unsafe { bytes(enc) }
}
