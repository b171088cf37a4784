//! The access-log record of a request whose tunnel outlives it (asynchronous tunnels): a
//! compact copy taken at the hand-over, given to mod_log_config when the tunnel ends
//! (c_shim/record.c says how it is rebuilt and why only mod_log_config sees it).

use super::assumptions::{self, Facts, Logio, Unusable};
use super::log::{INFO, WARNING};
use super::{Request, Server};
use crate::ffi;
use crate::slog;
use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set at startup: every assumption of the record holds in this httpd.
static USABLE: AtomicBool = AtomicBool::new(false);

/// What the running httpd shows of the record's assumptions.
fn facts() -> Facts {
    let mut running = ffi::ap_version_t::default();
    // SAFETY: fills the struct we pass with the running httpd's version.
    unsafe { ffi::ap_get_server_revision(&mut running) };
    let mut p = ffi::wst_logio_probe::default();
    // SAFETY: the shim fills `p`; it runs mod_logio's functions on a scratch connection.
    unsafe { ffi::wst_record_probe_logio(&mut p) };
    let at = |o: std::os::raw::c_long| (o >= 0).then_some(o as usize);
    let built_for = (
        ffi::AP_SERVER_MAJORVERSION_NUMBER as i32,
        ffi::AP_SERVER_MINORVERSION_NUMBER as i32,
        ffi::AP_SERVER_PATCHLEVEL_NUMBER as i32,
    );
    Facts {
        built_for: probe_built_for().unwrap_or(built_for),
        running: (running.major, running.minor, running.patch),
        // SAFETY: looks the hook up in httpd's hook array, read-only.
        log_config: unsafe { ffi::wst_record_has_log_config() } != 0,
        logio: Logio {
            loaded: p.loaded != 0,
            functions: p.functions != 0,
            in_at: at(p.in_at),
            out_at: at(p.out_at),
            beyond: p.beyond != 0,
        },
    }
}

/// Test builds only (feature `panic-probe`): `Define WST_PROBE_FOREIGN_HTTPD` in the
/// configuration makes the module believe it was built for another httpd, to prove the
/// fallback.
fn probe_built_for() -> Option<assumptions::Version> {
    // SAFETY: reads httpd's list of defines.
    (cfg!(feature = "panic-probe")
        && unsafe { ffi::ap_exists_config_define(c"WST_PROBE_FOREIGN_HTTPD".as_ptr()) } != 0)
        .then_some((2, 4, 0))
}

/// Checks, once per configuration (in httpd's parent, before the children), whether the
/// end-of-tunnel record can go to mod_log_config; says why not when it matters.
pub fn check(s: Server) {
    let verdict = assumptions::check(&facts());
    USABLE.store(verdict.is_ok(), Ordering::Relaxed);
    if !super::mpm::final_config_pass() {
        return;
    }
    match verdict {
        Ok(()) => {}
        Err(Unusable::NoLogConfig) => slog!(s, INFO, "WST00006: mod_log_config is not loaded: asynchronous tunnels' ends are logged by WST02011 only"),
        Err(Unusable::Broken(why)) => slog!(
            s,
            WARNING,
            "WST00007: asynchronous tunnels' ends will not reach the access log, only the error log (WST02011): {why}"
        ),
    }
}

pub struct LogRecord(NonNull<ffi::wst_record>);

// SAFETY: the record is a malloc'd block of copies plus a pointer to the request's server_rec,
// which lives in the configuration pool for the child's whole life; nothing in it is tied to
// the thread that made it, and only its owner touches it.
unsafe impl Send for LogRecord {}

impl LogRecord {
    /// Copies what the access log may need from the request; None if out of memory, or if
    /// the startup check found the record unusable in this httpd.
    pub fn take(r: &Request) -> Option<LogRecord> {
        if !USABLE.load(Ordering::Relaxed) {
            return None;
        }
        // SAFETY: the request is live for the duration of the call; the copy owns its bytes.
        NonNull::new(unsafe { ffi::wst_record_take(r.as_ptr()) }).map(LogRecord)
    }

    /// Logs the tunnel's end with its bytes each way and `env` added to the request's
    /// environment; false when mod_log_config is not loaded.
    pub fn log(
        self,
        client_to_backend: u64,
        backend_to_client: u64,
        env: Option<&[(&str, String); 5]>,
    ) -> bool {
        let strings: Vec<CString> = env
            .into_iter()
            .flatten()
            .flat_map(|(k, v)| [k.to_string(), v.clone()])
            .filter_map(|s| CString::new(s).ok())
            .collect();
        let mut ptrs: Vec<*const std::os::raw::c_char> =
            strings.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        // SAFETY: the record is ours and valid until dropped (below); logging may run on any
        // thread (a private pool, mod_log_config's writers). `ptrs` is a NULL-terminated array
        // of NUL-terminated strings (`strings`) that outlive the call; the shim copies them.
        unsafe {
            ffi::wst_record_log(
                self.0.as_ptr(),
                client_to_backend as ffi::apr_off_t,
                backend_to_client as ffi::apr_off_t,
                ptrs.as_ptr(),
            ) != 0
        }
    }
}

impl Drop for LogRecord {
    fn drop(&mut self) {
        // SAFETY: frees the block wst_record_take allocated, once.
        unsafe { ffi::wst_record_free(self.0.as_ptr()) }
    }
}
