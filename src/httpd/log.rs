//! Logging through httpd's error log with this module's index, so that
//! `LogLevel proxy_wstunnel:trace5` works as for any native module. Messages carry a
//! `WST` number the way httpd's own carry `AH` numbers.

use super::{Request, Server};
use crate::ffi;
use std::ffi::CString;

pub use crate::ffi::{
    APLOG_DEBUG as DEBUG, APLOG_EMERG as EMERG, APLOG_ERR as ERR, APLOG_INFO as INFO,
    APLOG_NOTICE as NOTICE, APLOG_TRACE1 as TRACE1, APLOG_TRACE5 as TRACE5,
    APLOG_WARNING as WARNING,
};

fn c(msg: &str) -> CString {
    CString::new(msg.replace('\0', "\\0")).expect("NULs were replaced")
}

/// Logs for a request (error log line with client address and request context).
pub fn request(file: &'static str, line: u32, r: &Request, level: u32, status: i32, msg: &str) {
    let (f, m) = (c(file), c(msg));
    // SAFETY: `r` is a live request; strings are NUL-terminated and outlive the call; the
    // shim passes `msg` as a "%s" argument, never as a format.
    unsafe { ffi::wst_log_r(f.as_ptr(), line as i32, level as i32, status, r.as_ptr(), m.as_ptr()) }
}

pub fn request_enabled(r: &Request, level: u32) -> bool {
    // SAFETY: reads the log level configuration of a live request.
    unsafe { ffi::wst_log_r_enabled(r.as_ptr(), level as i32) != 0 }
}

/// Logs for a server (start-up, configuration, tunnels that outlived their request).
pub fn server(file: &'static str, line: u32, s: Server, level: u32, status: i32, msg: &str) {
    let (f, m) = (c(file), c(msg));
    // SAFETY: as in `request`; a NULL server logs to the main error log.
    unsafe { ffi::wst_log_s(f.as_ptr(), line as i32, level as i32, status, s.as_ptr(), m.as_ptr()) }
}

pub fn server_enabled(s: Server, level: u32) -> bool {
    if s.as_ptr().is_null() {
        return true;
    }
    // SAFETY: reads the log level configuration of a live server_rec.
    unsafe { ffi::wst_log_s_enabled(s.as_ptr(), level as i32) != 0 }
}

/// `rlog!(req, level, "fmt", args..)`: formats only if the level is enabled.
#[macro_export]
macro_rules! rlog {
    ($r:expr, $lvl:expr, $($arg:tt)+) => {{
        let r: &$crate::httpd::Request = &$r;
        if $crate::httpd::log::request_enabled(r, $lvl) {
            $crate::httpd::log::request(file!(), line!(), r, $lvl, 0, &format!($($arg)+));
        }
    }};
}

/// `slog!(server, level, "fmt", args..)`.
#[macro_export]
macro_rules! slog {
    ($s:expr, $lvl:expr, $($arg:tt)+) => {{
        let s: $crate::httpd::Server = $s;
        if $crate::httpd::log::server_enabled(s, $lvl) {
            $crate::httpd::log::server(file!(), line!(), s, $lvl, 0, &format!($($arg)+));
        }
    }};
}
