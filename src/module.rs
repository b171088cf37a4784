//! The module record httpd loads (`LoadModule proxy_wstunnel_module ...`) and every
//! `extern "C"` entry point. Each entry point catches panics: a panic is logged and fails
//! only the request (500) or the directive, it never unwinds into C.

use crate::config::{parse_duration_us, DirConfig, ServerConfig};
use crate::ffi;
use crate::handler::{self, HandlerArgs, CAN_FALLBACK};
use crate::httpd::log::{ERR, TRACE1};
use crate::httpd::{Pool, Request};
use crate::tunnel::Half;
use crate::{rlog, slog};
use std::cell::UnsafeCell;
use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

use ffi::wst_register_hooks;

extern "C" {
    /// The shim's directive table (AP_INIT_* macros), an array ending with a NULL entry.
    static wst_cmds: ffi::command_rec;
}

/// httpd writes into the record when it loads it (`module_index`, `next`, ...), so it lives
/// in writable memory behind an `UnsafeCell`; `repr(transparent)` keeps the C layout so the
/// exported symbol *is* the `module` struct.
#[repr(transparent)]
pub struct ModuleRecord(UnsafeCell<ffi::module>);

// SAFETY: httpd mutates the record only while loading the configuration, single-threaded,
// before any request thread exists; afterwards it is read-only.
unsafe impl Sync for ModuleRecord {}

/// The module record. Its name is what `<IfModule mod_proxy_wstunnel.c>`, other modules' hook
/// ordering and `ap_find_linked_module` match.
#[no_mangle]
#[used]
pub static proxy_wstunnel_module: ModuleRecord = ModuleRecord(UnsafeCell::new(ffi::module {
    version: ffi::MODULE_MAGIC_NUMBER_MAJOR as c_int,
    minor_version: ffi::MODULE_MAGIC_NUMBER_MINOR as c_int,
    module_index: -1,
    name: c"mod_proxy_wstunnel.c".as_ptr(),
    dynamic_load_handle: std::ptr::null_mut(),
    next: std::ptr::null_mut(),
    magic: ffi::MODULE_MAGIC_COOKIE as _,
    rewrite_args: None,
    create_dir_config: Some(wst_rs_create_dir_config),
    merge_dir_config: Some(wst_rs_merge_dir_config),
    create_server_config: Some(wst_rs_create_server_config),
    merge_server_config: Some(wst_rs_merge_server_config),
    // Only the address of the C shim's static table is taken; httpd reads it.
    cmds: &raw const wst_cmds,
    register_hooks: Some(wst_register_hooks),
    flags: 0,
}));

/// Runs `f`, turning a panic into `on_panic` after logging it.
fn guard<T>(what: &str, log: impl FnOnce(&str), on_panic: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            log(&format!("WST00001: internal error in {what}: {msg}; failing this request"));
            on_panic
        }
    }
}

fn request_guard(r: *mut ffi::request_rec, what: &str, f: impl FnOnce(&Request) -> c_int) -> c_int {
    // SAFETY: httpd passes a live request to its hooks for the duration of the call.
    let req = unsafe { Request::from_raw(r) };
    guard(
        what,
        |m| crate::httpd::log::request(file!(), line!(), r, ERR, 0, m),
        ffi::HTTP_INTERNAL_SERVER_ERROR as c_int,
        || f(&req),
    )
}

#[no_mangle]
pub extern "C" fn wst_rs_create_dir_config(p: *mut ffi::apr_pool_t, _dir: *mut c_char) -> *mut c_void {
    // SAFETY: httpd passes the configuration pool.
    let pool = unsafe { Pool::from_raw(p) };
    guard("create_dir_config", |_| {}, std::ptr::null_mut(), || pool.alloc(DirConfig::default()).cast())
}

#[no_mangle]
pub extern "C" fn wst_rs_merge_dir_config(p: *mut ffi::apr_pool_t, base: *mut c_void, add: *mut c_void) -> *mut c_void {
    // SAFETY: as above; base and add are records we created with create_dir_config.
    let pool = unsafe { Pool::from_raw(p) };
    guard("merge_dir_config", |_| {}, std::ptr::null_mut(), || {
        // SAFETY: both are DirConfig records written by Pool::alloc.
        let (b, a) = unsafe { (&*(base as *const DirConfig), &*(add as *const DirConfig)) };
        pool.alloc(DirConfig::merge(b, a)).cast()
    })
}

#[no_mangle]
pub extern "C" fn wst_rs_create_server_config(p: *mut ffi::apr_pool_t, _s: *mut ffi::server_rec) -> *mut c_void {
    // SAFETY: httpd passes the configuration pool.
    let pool = unsafe { Pool::from_raw(p) };
    guard("create_server_config", |_| {}, std::ptr::null_mut(), || pool.alloc(ServerConfig::default()).cast())
}

#[no_mangle]
pub extern "C" fn wst_rs_merge_server_config(p: *mut ffi::apr_pool_t, base: *mut c_void, add: *mut c_void) -> *mut c_void {
    // SAFETY: as above.
    let pool = unsafe { Pool::from_raw(p) };
    guard("merge_server_config", |_| {}, std::ptr::null_mut(), || {
        // SAFETY: both are ServerConfig records written by Pool::alloc.
        let (b, a) = unsafe { (&*(base as *const ServerConfig), &*(add as *const ServerConfig)) };
        pool.alloc(ServerConfig::merge(b, a)).cast()
    })
}

/// A directive error message in the configuration pool (httpd prints it and refuses to start).
fn cmd_error(cmd: *mut ffi::cmd_parms, msg: &str) -> *const c_char {
    // SAFETY: cmd->pool is the configuration pool, live while directives are read.
    unsafe { Pool::from_raw((*cmd).pool) }.strdup(msg)
}

#[no_mangle]
pub extern "C" fn wst_rs_cmd_fallback(cmd: *mut ffi::cmd_parms, dconf: *mut c_void, flag: c_int) -> *const c_char {
    guard("ProxyWebsocketFallbackToProxyHttp", |_| {}, c"internal error".as_ptr(), || {
        // SAFETY: httpd passes the per-dir record of the section being read.
        let d = unsafe { &mut *(dconf as *mut DirConfig) };
        d.fallback_to_proxy_http = (flag != 0) as i32;
        d.fallback_set = 1;
        let _ = cmd;
        std::ptr::null()
    })
}

#[no_mangle]
pub extern "C" fn wst_rs_cmd_idle_timeout(cmd: *mut ffi::cmd_parms, _dconf: *mut c_void, arg: *const c_char) -> *const c_char {
    guard("ProxyWebsocketIdleTimeout", |_| {}, c"internal error".as_ptr(), || {
        // SAFETY: httpd passes the directive's argument as a NUL-terminated string.
        let arg = unsafe { CStr::from_ptr(arg) }.to_string_lossy();
        match parse_duration_us(&arg) {
            Ok(us) => {
                let s = server_conf(cmd);
                s.idle_timeout_us = us;
                s.idle_timeout_set = 1;
                std::ptr::null()
            }
            Err(e) => cmd_error(cmd, &format!("ProxyWebsocketIdleTimeout: {e}")),
        }
    })
}

/// The per-server record of the server (or virtual host) whose directives are being read.
fn server_conf(cmd: *mut ffi::cmd_parms) -> &'static mut ServerConfig {
    // SAFETY: cmd->server is the server being configured; its record is ours (a ServerConfig
    // allocated in the configuration pool, which outlives directive processing).
    unsafe { &mut *(ffi::wst_srv_conf((*cmd).server) as *mut ServerConfig) }
}

#[no_mangle]
pub extern "C" fn wst_rs_cmd_async(cmd: *mut ffi::cmd_parms, _dconf: *mut c_void, flag: c_int) -> *const c_char {
    guard("ProxyWebsocketAsync", |_| {}, c"internal error".as_ptr(), || {
        let s = server_conf(cmd);
        s.async_on = (flag != 0) as i32;
        s.async_set = 1;
        std::ptr::null()
    })
}

#[no_mangle]
pub extern "C" fn wst_rs_cmd_async_delay(cmd: *mut ffi::cmd_parms, _dconf: *mut c_void, arg: *const c_char) -> *const c_char {
    guard("ProxyWebsocketAsyncDelay", |_| {}, c"internal error".as_ptr(), || {
        // SAFETY: httpd passes the directive's argument as a NUL-terminated string.
        let arg = unsafe { CStr::from_ptr(arg) }.to_string_lossy();
        match parse_duration_us(&arg) {
            Ok(us) => {
                let s = server_conf(cmd);
                s.async_delay_us = us;
                s.async_delay_set = 1;
                std::ptr::null()
            }
            Err(e) => cmd_error(cmd, &format!("ProxyWebsocketAsyncDelay: {e}")),
        }
    })
}

#[no_mangle]
pub extern "C" fn wst_rs_cmd_drain_timeout(cmd: *mut ffi::cmd_parms, _dconf: *mut c_void, arg: *const c_char) -> *const c_char {
    guard("ProxyWebsocketDrainTimeout", |_| {}, c"internal error".as_ptr(), || {
        // SAFETY: httpd passes the directive's argument as a NUL-terminated string, and a live
        // cmd_parms whose server is the one being configured.
        let (arg, virtual_host) = unsafe { (CStr::from_ptr(arg).to_string_lossy(), (*(*cmd).server).is_virtual != 0) };
        if virtual_host {
            return cmd_error(cmd, "ProxyWebsocketDrainTimeout: only in the server configuration (it applies to whole child processes)");
        }
        match parse_duration_us(&arg) {
            Ok(us) => {
                let s = server_conf(cmd);
                s.drain_us = us;
                s.drain_set = 1;
                std::ptr::null()
            }
            Err(e) => cmd_error(cmd, &format!("ProxyWebsocketDrainTimeout: {e}")),
        }
    })
}

#[no_mangle]
pub extern "C" fn wst_rs_cmd_async_max(cmd: *mut ffi::cmd_parms, _dconf: *mut c_void, arg: *const c_char) -> *const c_char {
    guard("ProxyWebsocketAsyncMaxTunnels", |_| {}, c"internal error".as_ptr(), || {
        // SAFETY: httpd passes the directive's argument as a NUL-terminated string.
        let arg = unsafe { CStr::from_ptr(arg) }.to_string_lossy();
        match crate::config::parse_count(&arg) {
            Ok(n) => {
                let s = server_conf(cmd);
                s.async_max = n;
                s.async_max_set = 1;
                std::ptr::null()
            }
            Err(e) => cmd_error(cmd, &format!("ProxyWebsocketAsyncMaxTunnels: {e}")),
        }
    })
}

#[no_mangle]
pub extern "C" fn wst_rs_post_config(
    _pconf: *mut ffi::apr_pool_t,
    _plog: *mut ffi::apr_pool_t,
    _ptemp: *mut ffi::apr_pool_t,
    s: *mut ffi::server_rec,
) -> c_int {
    guard("post_config", |m| crate::httpd::log::server(file!(), line!(), s, ERR, 0, m), ffi::HTTP_INTERNAL_SERVER_ERROR as c_int, || {
        // SAFETY: looks up a module by name in httpd's loaded-module list.
        let http = unsafe { !ffi::ap_find_linked_module(c"mod_proxy_http.c".as_ptr()).is_null() };
        CAN_FALLBACK.store(http, Ordering::Relaxed);
        // SAFETY: `s` is the main server; its configuration lives in pconf.
        let cfg = unsafe { *(ffi::wst_srv_conf(s) as *const crate::config::ServerConfig) };
        let drain = (cfg.drain_set != 0).then(|| std::time::Duration::from_micros(cfg.drain_us.max(0) as u64));
        crate::tunnel::shutdown::set_drain_timeout(drain);
        slog!(s, TRACE1, "WST00002: mod_proxy_http is {}loaded: fallback {}possible", if http { "" } else { "not " }, if http { "" } else { "im" });
        handler::OK
    })
}

/// Cleanup of the child's pool: the child process is exiting.
#[no_mangle]
pub extern "C" fn wst_rs_child_exit(graceful_shutdown_timeout: c_int) {
    guard("child_exit", |_| {}, (), || {
        crate::tunnel::shutdown::child_exit(graceful_shutdown_timeout);
        crate::status::child_exited();
    })
}

/// httpd's child_init hook: the child takes its slot on the status board.
#[no_mangle]
pub extern "C" fn wst_rs_child_init(generation: c_int) {
    guard("child_init", |_| {}, (), || {
        crate::status::child_started(generation.max(0) as u32);
        // SAFETY: reads httpd's scoreboard, shared memory that lives as long as the child.
        crate::tunnel::shutdown::set_server_draining_check(|| unsafe { ffi::wst_server_draining() != 0 });
    })
}

#[no_mangle]
pub extern "C" fn wst_rs_status_board_size(slots: c_int) -> usize {
    crate::status::board_size(slots.max(0) as usize)
}

/// The shim made the board's shared memory (post_config, in httpd's parent).
#[no_mangle]
pub extern "C" fn wst_rs_status_attach(base: *mut c_void, slots: c_int) {
    // SAFETY: the shim passes apr_shm memory of wst_rs_status_board_size(slots) bytes, zeroed
    // when made, page-aligned, from httpd's process-wide pool: it lives as long as the process.
    guard("post_config", |_| {}, (), || unsafe { crate::status::attach(base.cast(), slots.max(0) as usize) })
}

/// Runs a callback of the watch filter on a filtered end (shim.h); a panic is logged on the
/// tunnel's request and turns into `on_panic`.
fn watch_guard<T>(half: *mut c_void, on_panic: T, f: impl FnOnce(&Half) -> T) -> T {
    // SAFETY: `half` is the context the tunnel gave this filter, live while it is installed.
    let h = unsafe { &*half.cast::<Half>() };
    guard("watch filter", |m| crate::httpd::log::request(file!(), line!(), h.request(), ERR, 0, m), on_panic, || f(h))
}

/// The watch filter: whether to read at all (a panic fails the read: the tunnel ends).
#[no_mangle]
pub extern "C" fn wst_rs_watch_verdict(half: *mut c_void) -> c_int {
    watch_guard(half, ffi::WST_WATCH_ABORT as c_int, |h| h.verdict() as c_int)
}

/// The watch filter: bytes of a bucket it read; how many go on.
#[no_mangle]
pub extern "C" fn wst_rs_watch_read(half: *mut c_void, data: *const c_char, len: usize) -> usize {
    watch_guard(half, len, |h| {
        if data.is_null() {
            return len;
        }
        // SAFETY: `data` holds `len` bytes of a bucket apr_bucket_read just returned.
        h.read(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
    })
}

/// The watch filter, after a read: bytes to append (a Close frame) into `buf`, at most `cap`.
#[no_mangle]
pub extern "C" fn wst_rs_watch_closes(half: *mut c_void, c: *mut ffi::conn_rec, buf: *mut c_char, cap: usize) -> usize {
    watch_guard(half, 0, |h| {
        // SAFETY: `c` is the connection of the filter that calls us.
        let Some(close) = (unsafe { h.closes(c) }) else { return 0 };
        assert!(close.len() <= cap, "a Close frame fits WST_WATCH_CLOSE_MAX");
        // SAFETY: `buf` has room for `cap` bytes, and we write no more.
        unsafe { std::ptr::copy_nonoverlapping(close.as_ptr(), buf.cast::<u8>(), close.len()) };
        close.len()
    })
}

/// mod_status's hook: our section of /server-status (HTML, or `?auto` lines).
#[no_mangle]
pub extern "C" fn wst_rs_status(r: *mut ffi::request_rec, short_report: c_int, tables: c_int, extended: c_int) {
    request_guard(r, "status", |req| {
        let (rows, total) = crate::status::snapshot();
        let text = if short_report != 0 {
            crate::status::render_auto(&rows, &total)
        } else {
            crate::status::render_html(&rows, &total, extended != 0, tables != 0)
        };
        req.write(text.as_bytes());
        handler::OK
    });
}

/// httpd's child_stopping hook (graceful restart, graceful stop, stop).
#[no_mangle]
pub extern "C" fn wst_rs_child_stopping(graceful: c_int, graceful_shutdown_timeout: c_int) {
    guard("child_stopping", |_| {}, (), || {
        crate::tunnel::shutdown::child_stopping(graceful != 0, graceful_shutdown_timeout)
    })
}

#[no_mangle]
pub extern "C" fn wst_rs_check_trans(r: *mut ffi::request_rec, url: *const c_char) -> c_int {
    request_guard(r, "check_trans", |req| {
        // SAFETY: mod_proxy passes the alias target as a NUL-terminated string.
        let url = unsafe { CStr::from_ptr(url) }.to_bytes();
        handler::check_trans(req, url)
    })
}

#[no_mangle]
pub extern "C" fn wst_rs_canon(r: *mut ffi::request_rec, url: *mut c_char) -> c_int {
    request_guard(r, "canon", |req| {
        // SAFETY: mod_proxy passes the URL (after "proxy:") as a NUL-terminated string.
        let url = unsafe { CStr::from_ptr(url) }.to_bytes();
        handler::canon(req, url)
    })
}

#[no_mangle]
pub extern "C" fn wst_rs_handler(
    r: *mut ffi::request_rec,
    worker: *mut ffi::proxy_worker,
    conf: *mut ffi::proxy_server_conf,
    url: *mut c_char,
    proxyname: *const c_char,
    proxyport: ffi::apr_port_t,
) -> c_int {
    request_guard(r, "scheme handler", |req| {
        let status = handler::handle(req, &HandlerArgs { worker, conf, url, proxyname, proxyport });
        rlog!(req, TRACE1, "WST00003: scheme handler returns {status}");
        status
    })
}
