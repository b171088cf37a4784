//! Safe wrappers over the httpd and APR structures the module touches, named after the C
//! concepts they wrap. Each wrapper borrows a pointer httpd guarantees valid for a known
//! lifetime (a request, a connection, a pool); module logic only sees these types.

pub mod brigade;
pub mod connection;
pub mod log;
pub mod pool;
pub mod proxy;
pub mod record;
pub mod request;
pub mod worker;

pub use brigade::Brigade;
pub use connection::Connection;
pub use pool::Pool;
pub use request::Request;

use std::ffi::CStr;
use std::os::raw::c_char;

/// Reads a NUL-terminated C string httpd owns as `&str` (lossy for non-UTF-8 bytes, which
/// httpd's own string handling treats as opaque octets).
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn cstr<'a>(p: *const c_char) -> Option<std::borrow::Cow<'a, str>> {
    if p.is_null() {
        None
    } else {
        // SAFETY: guaranteed by the caller.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy())
    }
}
