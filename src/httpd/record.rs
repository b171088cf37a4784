//! The access-log record of a request whose tunnel outlives it (asynchronous tunnels).
//!
//! A tunnel handed to the asynchronous relay outlives its request: httpd logs the request
//! (101, the handshake, the bytes until the hand-over) when the handler returns, and the
//! request and its connection are gone when the tunnel ends. So that the end reaches the
//! access logs through the administrator's own CustomLog lines, what a log format may print is
//! copied at the hand-over into one compact block of the module's own ([`Packed`]: strings,
//! header and environment tables, the connection's two addresses), and at the end a real
//! request is made from it by the running httpd, through its public API only:
//!
//! - a TCP socket connected to itself on the loopback (APR asks the kernel for a socket's
//!   addresses, so it must be connected; no peer can send or receive a byte on it);
//! - a connection made by httpd's own `create_connection` hook on it (core's, as mod_proxy makes
//!   its backend connections), given the client connection's two addresses (made by
//!   `apr_sockaddr_info_get` from the numbers), mod_ssl told to stay off it
//!   (`ap_ssl_bind_outgoing`), then every module's `pre_connection` (`ap_pre_connection`:
//!   mod_logio makes its counters there);
//! - a request made by httpd (`ap_create_request`), given the copied fields, status 101, the
//!   original request time (so `%D`/`%T` are the whole tunnel's life), the tunnel's bytes each
//!   way through mod_logio's own functions (`%I`/`%O`), and the environment variable
//!   `wstunnel-end` (the hand-over's record carries `wstunnel-handoff`);
//! - logged by every module's `log_transaction` hook, as httpd logs a request, and freed.
//!
//! Nothing of httpd's, APR's or another module's is allocated or copied by the size the
//! module's headers give it: the records are the running httpd's own, so a later 2.4 release
//! with longer records logs them whole (docs/DESIGN.md §9).

use super::log::WARNING;
use super::scratch::Scratch;
use super::{Request, Server};
use crate::ffi;
use crate::slog;
use std::os::raw::c_char;
use std::ptr;

/// Strings and tables, each a 32-bit length (`NONE` for a NULL) and its bytes, in one block:
/// a tunnel keeps its record for its whole life, so one allocation rather than one per string.
#[derive(Default)]
pub struct Packed(Vec<u8>);

const NONE: u32 = u32::MAX;

impl Packed {
    pub fn push(&mut self, s: Option<&[u8]>) {
        match s {
            None => self.0.extend_from_slice(&NONE.to_le_bytes()),
            Some(b) => {
                self.0.extend_from_slice(&(b.len() as u32).to_le_bytes());
                self.0.extend_from_slice(b);
            }
        }
    }

    /// A table: its number of entries, then each key and value.
    pub fn push_table<'a>(&mut self, entries: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>) {
        self.0.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for (k, v) in entries {
            self.push(Some(k));
            self.push(Some(v));
        }
    }

    pub fn reader(&self) -> Reader<'_> {
        Reader(&self.0)
    }

    pub fn into_boxed(self) -> Box<[u8]> {
        self.0.into_boxed_slice()
    }
}

/// Reads back what [`Packed`] wrote, in the same order.
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub fn from_bytes(b: &'a [u8]) -> Self {
        Reader(b)
    }

    fn u32(&mut self) -> u32 {
        let (n, rest) = self.0.split_at(4);
        self.0 = rest;
        u32::from_le_bytes(n.try_into().unwrap())
    }

    pub fn string(&mut self) -> Option<&'a [u8]> {
        match self.u32() {
            NONE => None,
            n => {
                let (s, rest) = self.0.split_at(n as usize);
                self.0 = rest;
                Some(s)
            }
        }
    }

    pub fn table(&mut self) -> Vec<(&'a [u8], &'a [u8])> {
        (0..self.u32())
            .map(|_| (self.string().unwrap_or(b""), self.string().unwrap_or(b"")))
            .collect()
    }
}

/// The request's strings, in this order, then the connection's, then its tables.
const REQUEST_STRINGS: usize = 16;
const CONNECTION_STRINGS: usize = 5;

pub struct LogRecord {
    server: Server,
    request_time: i64,
    proto_num: i32,
    method_number: i32,
    conn_id: i64,
    keepalives: i32,
    /// The client connection's local and remote addresses (`struct sockaddr` bytes), then the
    /// strings and tables.
    packed: Box<[u8]>,
}

// SAFETY: the record holds copies, and the request's server_rec, which lives in the
// configuration pool for the child's whole life; nothing in it is tied to the thread that
// made it, and only its owner touches it.
unsafe impl Send for LogRecord {}

/// A C string's bytes, or None for NULL.
///
/// # Safety
/// `s` is NULL or a NUL-terminated string live for `'a`.
unsafe fn bytes<'a>(s: *const c_char) -> Option<&'a [u8]> {
    // SAFETY: per the contract.
    (!s.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(s) }.to_bytes())
}

/// An APR table's entries, as `apr_table_elts` (a cast of the table to its array header, an
/// API of APR's tables) gives them.
///
/// # Safety
/// `t` is NULL or a live table whose entries stay for `'a`.
unsafe fn table<'a>(t: *const ffi::apr_table_t) -> Vec<(&'a [u8], &'a [u8])> {
    if t.is_null() {
        return Vec::new();
    }
    // SAFETY: an apr_table_t begins with its apr_array_header_t of apr_table_entry_t (the
    // definition of apr_table_elts); keys and values are live strings of the table's pool.
    unsafe {
        let a = &*(t as *const ffi::apr_array_header_t);
        let e = a.elts as *const ffi::apr_table_entry_t;
        (0..a.nelts.max(0) as usize)
            .filter_map(|i| {
                let e = &*e.add(i);
                Some((bytes(e.key)?, bytes(e.val)?))
            })
            .collect()
    }
}

/// A socket address's bytes (`salen` of them), empty when there is none.
///
/// # Safety
/// `a` is NULL or a live `apr_sockaddr_t`.
unsafe fn address<'a>(a: *const ffi::apr_sockaddr_t) -> &'a [u8] {
    if a.is_null() {
        return &[];
    }
    // SAFETY: `sa` holds `salen` bytes of the address (APR's own length for its family).
    unsafe {
        let len = ((*a).salen as usize).min(std::mem::size_of_val(&(*a).sa));
        std::slice::from_raw_parts(ptr::addr_of!((*a).sa) as *const u8, len)
    }
}

impl LogRecord {
    /// Copies what the access log may need from the request.
    pub fn take(r: &Request) -> LogRecord {
        let c = r.connection().as_ptr();
        let mut p = Packed::default();
        // SAFETY: the request and its connection are live for this call (the request thread's);
        // every pointer read is one of their fields, copied before the call returns.
        unsafe {
            let r = &*r.as_ptr();
            let c = &*c;
            p.push(Some(address(c.local_addr)));
            p.push(Some(address(c.client_addr)));
            let request: [*const c_char; REQUEST_STRINGS] = [
                r.the_request,
                r.protocol,
                r.method,
                r.uri,
                r.unparsed_uri,
                r.filename,
                r.path_info,
                r.args,
                r.hostname,
                r.user,
                r.ap_auth_type,
                r.handler,
                r.content_type,
                r.status_line,
                r.log_id,
                r.useragent_ip,
            ];
            let connection: [*const c_char; CONNECTION_STRINGS] =
                [c.client_ip, c.remote_host, c.local_ip, c.local_host, c.log_id];
            for s in request.into_iter().chain(connection) {
                p.push(bytes(s));
            }
            for t in [r.headers_in, r.headers_out, r.err_headers_out, r.subprocess_env] {
                p.push_table(table(t).into_iter());
            }
            LogRecord {
                server: Server::from_raw(r.server),
                request_time: r.request_time,
                proto_num: r.proto_num,
                method_number: r.method_number,
                conn_id: c.id,
                keepalives: c.keepalives,
                packed: p.into_boxed(),
            }
        }
    }

    /// Logs the tunnel's end with its bytes each way and `env` added to the request's
    /// environment, through every log module; false (and why, as a warning) if httpd would not
    /// make the connection or the request.
    pub fn log(
        self,
        client_to_backend: u64,
        backend_to_client: u64,
        env: Option<&[(&str, String); 5]>,
    ) -> bool {
        match self.log_in_private_pool(client_to_backend, backend_to_client, env) {
            Ok(()) => true,
            Err(why) => {
                slog!(
                    self.server,
                    WARNING,
                    "WST02023: the tunnel's end is not in the access log: {why}"
                );
                false
            }
        }
    }

    fn log_in_private_pool(
        &self,
        client_to_backend: u64,
        backend_to_client: u64,
        env: Option<&[(&str, String); 5]>,
    ) -> Result<(), String> {
        let mut rd = Reader::from_bytes(&self.packed);
        let local = rd.string().unwrap_or_default();
        let remote = rd.string().unwrap_or_default();
        let addresses = (
            ip_port(local).ok_or("the connection had no local address")?,
            ip_port(remote).ok_or("the connection had no remote address")?,
        );
        let fd = thread_socket().map_err(|e| format!("a socket for it: {e}"))?;
        let conn = Scratch::new(self.server, self.conn_id, fd, Some(addresses))?;
        // SAFETY: `conn` is a connection httpd made in the pool `Scratch` owns, used by this
        // thread alone; the request is httpd's own (ap_create_request) in a sub-pool of it.
        // Every string and table given to it is copied into the request's pool first, so it
        // lives as long as the request.
        unsafe {
            let c = &mut *conn.as_ptr();
            let r = ffi::ap_create_request(c);
            if r.is_null() {
                return Err("httpd made no request".into());
            }
            let r = &mut *r;
            let pool = super::Pool::from_raw(r.pool);
            let mut s =
                || -> *mut c_char { rd.string().map_or(ptr::null_mut(), |b| pool.strdup_bytes(b)) };
            r.the_request = s();
            r.protocol = s();
            r.method = s();
            r.uri = s();
            r.unparsed_uri = s();
            r.filename = s();
            r.path_info = s();
            r.args = s();
            r.hostname = s();
            r.user = s();
            r.ap_auth_type = s();
            r.handler = s();
            r.content_type = s();
            r.status_line = s();
            r.log_id = s();
            let useragent_ip = s();
            let client_ip = s();
            // A remote name never looked up stays so: "" stops mod_log_config's %h from
            // looking it up here, on the relay thread.
            let remote_host = s();
            c.remote_host = if remote_host.is_null() { pool.strdup("") } else { remote_host };
            let local_ip = s();
            c.local_host = s();
            c.log_id = s();
            if !client_ip.is_null() {
                c.client_ip = client_ip;
            }
            if !local_ip.is_null() {
                c.local_ip = local_ip;
            }
            r.useragent_ip = if useragent_ip.is_null() { c.client_ip } else { useragent_ip };
            c.keepalives = self.keepalives;
            c.keepalive = ffi::AP_CONN_CLOSE;
            r.request_time = self.request_time;
            r.proto_num = self.proto_num;
            r.method_number = self.method_number;
            r.status = ffi::HTTP_SWITCHING_PROTOCOLS as i32;
            for t in [r.headers_in, r.headers_out, r.err_headers_out, r.subprocess_env] {
                for (k, v) in rd.table() {
                    ffi::apr_table_addn(t, pool.strdup_bytes(k), pool.strdup_bytes(v));
                }
            }
            ffi::apr_table_unset(r.subprocess_env, c"wstunnel-handoff".as_ptr());
            ffi::apr_table_setn(r.subprocess_env, c"wstunnel-end".as_ptr(), c"1".as_ptr());
            for (k, v) in env.into_iter().flatten() {
                ffi::apr_table_setn(r.subprocess_env, pool.strdup(k), pool.strdup(v));
            }
            super::Connection::from_raw(c).logio_add(client_to_backend, backend_to_client);
            ffi::ap_run_log_transaction(r);
        }
        Ok(())
    }
}

/// A copy of this thread's self-connected socket ([`crate::sys::self_connected_socket`], made
/// on first use and kept for the thread's life): a `dup` costs far less than a TCP handshake
/// and reset on the loopback per tunnel end (asynchronous tunnels opened, echoed once and
/// closed, against the route before this one in the same run: 1.35 times its proxy CPU with a
/// handshake each, 1.08 times with a copy). APR closes the copy with its pool.
fn thread_socket() -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    thread_local! {
        static SOCKET: std::io::Result<std::os::fd::OwnedFd> = crate::sys::self_connected_socket();
    }
    SOCKET.with(|s| match s {
        Ok(fd) => fd.as_fd().try_clone_to_owned(),
        Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
    })
}

/// The numeric address, port and family of a `struct sockaddr` (IPv4 or IPv6).
pub fn ip_port(sa: &[u8]) -> Option<(String, u16, i32)> {
    use std::net::{Ipv4Addr, Ipv6Addr};
    let family = i32::from(u16::from_ne_bytes(sa.get(..2)?.try_into().ok()?));
    let port = u16::from_be_bytes(sa.get(2..4)?.try_into().ok()?);
    match family {
        libc::AF_INET => {
            let a: [u8; 4] = sa.get(4..8)?.try_into().ok()?;
            Some((Ipv4Addr::from(a).to_string(), port, family))
        }
        libc::AF_INET6 => {
            let a: [u8; 16] = sa.get(8..24)?.try_into().ok()?;
            Some((Ipv6Addr::from(a).to_string(), port, family))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_strings_and_tables_read_back_in_order() {
        let mut p = Packed::default();
        p.push(Some(b"GET /x HTTP/1.1"));
        p.push(None);
        p.push(Some(b""));
        p.push_table([(&b"Host"[..], &b"a"[..]), (&b"X"[..], &b""[..])].into_iter());
        p.push_table(std::iter::empty::<(&[u8], &[u8])>());
        let b = p.into_boxed();
        let mut r = Reader::from_bytes(&b);
        assert_eq!(r.string(), Some(&b"GET /x HTTP/1.1"[..]));
        assert_eq!(r.string(), None);
        assert_eq!(r.string(), Some(&b""[..]));
        assert_eq!(r.table(), vec![(&b"Host"[..], &b"a"[..]), (&b"X"[..], &b""[..])]);
        assert!(r.table().is_empty());
    }

    #[test]
    fn addresses_are_read_from_their_sockaddr_bytes() {
        let v4: libc::sockaddr_in = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 8080u16.to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from_be_bytes([192, 0, 2, 7]).to_be() },
            sin_zero: [0; 8],
        };
        // SAFETY: a plain C struct viewed as its bytes.
        let b = unsafe {
            std::slice::from_raw_parts((&v4 as *const libc::sockaddr_in).cast::<u8>(), 16)
        };
        assert_eq!(ip_port(b), Some(("192.0.2.7".to_string(), 8080, libc::AF_INET)));
        let mut v6 = vec![0u8; 28];
        v6[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&443u16.to_be_bytes());
        v6[8..24].copy_from_slice(&"2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        assert_eq!(ip_port(&v6), Some(("2001:db8::1".to_string(), 443, libc::AF_INET6)));
        let mut unix = vec![0u8; 16];
        unix[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        assert_eq!(ip_port(&unix), None);
        assert_eq!(ip_port(&[]), None);
    }
}
