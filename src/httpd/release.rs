//! The httpd the module runs in, against the headers it was built with: the startup check of
//! docs/DESIGN.md §9 (the rule itself is `assumptions::check_mmn`).

use super::assumptions::{self, Mmn};
use super::log::EMERG;
use super::Server;
use crate::ffi;
use crate::slog;

/// The MMN of the headers the module was built against.
pub fn built() -> Mmn {
    (ffi::MODULE_MAGIC_NUMBER_MAJOR as i32, ffi::MODULE_MAGIC_NUMBER_MINOR as i32)
}

/// The running httpd's MMN: the one its core module was built with (`core.c` is always part of
/// httpd itself, so its module record carries httpd's own numbers).
pub fn running() -> Mmn {
    // SAFETY: looks up a module by name in httpd's list of loaded modules; core is always there,
    // and its record's first fields (version, minor_version) are the same in every 2.4.
    let m = unsafe { ffi::ap_find_linked_module(c"core.c".as_ptr()) };
    if m.is_null() {
        return (0, 0);
    }
    // SAFETY: a live module record (above).
    let (major, minor) = unsafe { ((*m).version, (*m).minor_version) };
    (major, probe_older(minor))
}

/// Test builds only (feature `panic-probe`): `Define WST_PROBE_OLDER_HTTPD` makes the module see
/// an httpd one MMN minor older than its headers, to prove the refusal.
fn probe_older(minor: i32) -> i32 {
    // SAFETY: reads httpd's list of defines.
    let probe = cfg!(feature = "panic-probe")
        && unsafe { ffi::ap_exists_config_define(c"WST_PROBE_OLDER_HTTPD".as_ptr()) } != 0;
    if probe {
        built().1 - 1
    } else {
        minor
    }
}

/// Checks, once per configuration (in httpd's parent, before the children), that the module may
/// run in this httpd; says why not (`WST00009`) and returns false if it may not.
pub fn check(s: Server) -> bool {
    match assumptions::check_mmn(built(), running()) {
        Ok(()) => true,
        Err(why) => {
            slog!(s, EMERG, "WST00009: mod_proxy_wstunnel-rs cannot run in this httpd: {why}");
            false
        }
    }
}
