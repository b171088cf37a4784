//! A connection httpd makes for the module on a socket of the module's own, through httpd's
//! public API only (as mod_proxy makes its backend connections): the access-log record of an
//! asynchronous tunnel's end is a request on one (`record`), and the startup check of core's
//! output filter writes through one (`behaviours`).

use super::Server;
use crate::ffi;
use std::os::fd::{IntoRawFd, OwnedFd};
use std::ptr;

/// A numeric address, its port and family (`AF_INET`, `AF_INET6`).
pub type Address = (String, u16, i32);

/// The connection and the pool it lives in (with an allocator of its own: it may be made on
/// any thread), freed on drop: the pool's cleanups close the socket.
pub struct Scratch {
    pool: *mut ffi::apr_pool_t,
    c: *mut ffi::conn_rec,
}

impl Scratch {
    /// Makes a connection on `fd`, a connected TCP socket (APR asks the kernel for its
    /// addresses), that says it has `addresses` (local, remote) if given. It goes through
    /// httpd's create_connection hook and every module's pre_connection, mod_ssl told to stay
    /// off it; no scoreboard slot (NULL, as mod_proxy makes its connections).
    pub fn new(
        server: Server,
        id: i64,
        fd: OwnedFd,
        addresses: Option<(Address, Address)>,
    ) -> Result<Scratch, String> {
        let mut pool = ptr::null_mut();
        // SAFETY: makes a new root pool with its own allocator; NULL abort function (APR's
        // default).
        if unsafe { ffi::apr_pool_create_unmanaged_ex(&mut pool, None, ptr::null_mut()) } != 0 {
            return Err("no memory for a pool".into());
        }
        let mut me = Scratch { pool, c: ptr::null_mut() };
        let mut os_fd = fd.into_raw_fd();
        let mut info = ffi::apr_os_sock_info_t {
            os_sock: &mut os_fd,
            local: ptr::null_mut(),
            remote: ptr::null_mut(),
            family: libc::AF_INET,
            type_: libc::SOCK_STREAM,
            protocol: 0,
        };
        let mut sock = ptr::null_mut();
        // SAFETY: APR's socket owns the descriptor from here (closed by the pool's cleanup) and
        // asks the kernel for its addresses. The connection is made by httpd's create_connection
        // hook in our pool; its addresses, if given, are made by APR in the same pool, before
        // any pre_connection hook looks at them.
        unsafe {
            if ffi::apr_os_sock_make(&mut sock, &mut info, me.pool) != 0 {
                libc::close(os_fd);
                return Err("APR took no socket".into());
            }
            let ba = ffi::apr_bucket_alloc_create(me.pool);
            let server = server.as_ptr().cast_mut();
            me.c =
                ffi::ap_run_create_connection(me.pool, server, sock, id as _, ptr::null_mut(), ba);
            if me.c.is_null() {
                return Err("httpd made no connection".into());
            }
            if let Some((local, remote)) = addresses {
                let c = &mut *me.c;
                c.local_addr = me.address(&local)?;
                c.client_addr = me.address(&remote)?;
            }
            ffi::ap_ssl_bind_outgoing(me.c, ptr::null_mut(), 0);
            let rv = ffi::ap_pre_connection(me.c, sock.cast());
            if rv != ffi::OK as i32 && rv != ffi::DONE {
                return Err(format!("a pre_connection hook refused the connection ({rv})"));
            }
        }
        Ok(me)
    }

    pub fn as_ptr(&self) -> *mut ffi::conn_rec {
        self.c
    }

    /// An APR address in the pool for a numeric address and port (no name is looked up).
    fn address(&self, (ip, port, family): &Address) -> Result<*mut ffi::apr_sockaddr_t, String> {
        let ip = std::ffi::CString::new(ip.as_str()).map_err(|_| "an address with a NUL")?;
        let mut sa = ptr::null_mut();
        // SAFETY: a numeric address string and port; APR fills `sa` in our pool.
        let rv = unsafe {
            ffi::apr_sockaddr_info_get(&mut sa, ip.as_ptr(), *family, *port, 0, self.pool)
        };
        if rv != 0 || sa.is_null() {
            return Err(format!("APR made no address of {ip:?} ({rv})"));
        }
        Ok(sa)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: the pool is ours, made in `new`; destroying it frees the connection and what
        // was made on it, and closes the socket.
        unsafe { ffi::apr_pool_destroy(self.pool) }
    }
}
