//! Safe wrappers over the httpd, APR and mod_proxy structures the module touches, named after
//! the C concepts they wrap (ngx-rust's model). Each wrapper borrows a pointer httpd
//! guarantees valid for a known lifetime (a request, a connection, a pool, the configuration);
//! module logic (`handler`, `canon`, `tunnel`) only sees these types and has no `unsafe`.
//! [`outcome`] (what httpd's answers mean) and [`assumptions`] (what the running httpd must be
//! for the end-of-tunnel record) are plain Rust, unit-tested without httpd.

pub mod assumptions;
pub mod outcome;

#[cfg(all(feature = "httpd", not(test)))]
pub mod brigade;
#[cfg(all(feature = "httpd", not(test)))]
pub mod cmd;
#[cfg(all(feature = "httpd", not(test)))]
pub mod codes;
#[cfg(all(feature = "httpd", not(test)))]
pub mod connection;
#[cfg(all(feature = "httpd", not(test)))]
pub mod log;
#[cfg(all(feature = "httpd", not(test)))]
pub mod mpm;
#[cfg(all(feature = "httpd", not(test)))]
pub mod nonblocking;
#[cfg(all(feature = "httpd", not(test)))]
pub mod pool;
#[cfg(all(feature = "httpd", not(test)))]
pub mod proxy;
#[cfg(all(feature = "httpd", not(test)))]
pub mod record;
#[cfg(all(feature = "httpd", not(test)))]
pub mod request;
#[cfg(all(feature = "httpd", not(test)))]
pub mod server;
#[cfg(all(feature = "httpd", not(test)))]
pub mod shm;
#[cfg(all(feature = "httpd", not(test)))]
pub mod suspended;
#[cfg(all(feature = "httpd", not(test)))]
pub use {brigade::Brigade, connection::Connection, pool::Pool, request::Request, server::Server};

/// Reads a NUL-terminated C string httpd owns as `&str` (lossy for non-UTF-8 bytes, which
/// httpd's own string handling treats as opaque octets).
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string valid for `'a`.
#[cfg(all(feature = "httpd", not(test)))]
pub(crate) unsafe fn cstr<'a>(p: *const std::os::raw::c_char) -> Option<std::borrow::Cow<'a, str>> {
    if p.is_null() {
        None
    } else {
        // SAFETY: guaranteed by the caller.
        Some(unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy())
    }
}
