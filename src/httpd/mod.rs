//! Safe wrappers over the httpd, APR and mod_proxy structures the module touches, named after
//! the C concepts they wrap (ngx-rust's model). Each wrapper borrows a pointer httpd
//! guarantees valid for a known lifetime (a request, a connection, a pool, the configuration);
//! module logic (`handler`, `canon`, `tunnel`) only sees these types and has no `unsafe`.
//! [`outcome`] (what httpd's answers mean) and [`assumptions`] (which httpd the module may run in,
//! by its module magic number) are plain Rust, unit-tested without httpd.

pub mod assumptions;
pub mod outcome;

#[cfg(feature = "httpd")]
pub mod behaviours;
#[cfg(feature = "httpd")]
pub mod brigade;
#[cfg(feature = "httpd")]
pub mod cmd;
#[cfg(feature = "httpd")]
pub mod codes;
#[cfg(feature = "httpd")]
pub mod connection;
#[cfg(feature = "httpd")]
pub mod log;
#[cfg(feature = "httpd")]
pub mod mpm;
#[cfg(feature = "httpd")]
pub mod nonblocking;
#[cfg(feature = "httpd")]
pub mod pool;
#[cfg(feature = "httpd")]
pub mod proxy;
#[cfg(feature = "httpd")]
pub mod record;
#[cfg(feature = "httpd")]
pub mod release;
#[cfg(feature = "httpd")]
pub mod request;
#[cfg(feature = "httpd")]
pub mod scratch;
#[cfg(feature = "httpd")]
pub mod server;
#[cfg(feature = "httpd")]
pub mod shm;
#[cfg(feature = "httpd")]
pub mod suspended;
#[cfg(feature = "httpd")]
pub use {brigade::Brigade, connection::Connection, pool::Pool, request::Request, server::Server};

/// Reads a NUL-terminated C string httpd owns as `&str` (lossy for non-UTF-8 bytes, which
/// httpd's own string handling treats as opaque octets).
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string valid for `'a`.
#[cfg(feature = "httpd")]
pub(crate) unsafe fn cstr<'a>(p: *const std::os::raw::c_char) -> Option<std::borrow::Cow<'a, str>> {
    if p.is_null() {
        None
    } else {
        // SAFETY: guaranteed by the caller.
        Some(unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy())
    }
}
