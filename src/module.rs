//! The module record httpd loads (`LoadModule proxy_wstunnel_module ...`) and every
//! `extern "C"` entry point. Each entry point catches panics: a panic is logged and fails
//! only the request (500) or the directive, it never unwinds into C.
//!
//! The entry points take httpd's raw pointers, valid by httpd's contract for the call; only C
//! calls them, so they are not `unsafe fn` (which would say a Rust caller must check), and
//! each dereference is an `unsafe` block with its SAFETY line.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use crate::config::{
    parse_bytes, parse_count, parse_duration, parse_threads, DirConfig, ServerConfig,
};
use crate::ffi;
use crate::handler::{self, CAN_FALLBACK};
use crate::httpd::codes::{INTERNAL_SERVER_ERROR, OK};
use crate::httpd::log::{DEBUG, ERR, NOTICE, TRACE1, WARNING};
use crate::httpd::outcome::APR_SUCCESS;
use crate::httpd::proxy::SchemeArgs;
use crate::httpd::{cmd::Cmd, mpm, shm, Pool, Request, Server};
use crate::tunnel::shutdown;
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
#[cfg_attr(not(test), no_mangle, used)]
#[allow(non_upper_case_globals)] // httpd's name for it
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
        |m| crate::httpd::log::request(file!(), line!(), &req, ERR, 0, m),
        INTERNAL_SERVER_ERROR,
        || f(&req),
    )
}

/// The check of a directive that applies to whole child processes: not in a virtual host.
fn main_server_only(cmd: &Cmd) -> Result<(), String> {
    if cmd.server().is_virtual() {
        return Err("only in the server configuration (it applies to whole child processes)".into());
    }
    Ok(())
}

/// Runs a directive's handler: its error message, or NULL when the value was taken.
fn directive(
    cmd: *mut ffi::cmd_parms,
    name: &str,
    f: impl FnOnce(&mut Cmd) -> Result<(), String>,
) -> *const c_char {
    // SAFETY: httpd passes the directive's live cmd_parms for this call.
    let mut cmd = unsafe { Cmd::from_raw(cmd) };
    guard(
        name,
        |_| {},
        c"internal error".as_ptr(),
        || match f(&mut cmd) {
            Ok(()) => std::ptr::null(),
            Err(e) => cmd.error(&format!("{name}: {e}")),
        },
    )
}

/// A directive's one argument.
///
/// # Safety
/// `arg` must be the NUL-terminated argument httpd passed.
unsafe fn arg(arg: *const c_char) -> String {
    // SAFETY: the caller's contract.
    unsafe { CStr::from_ptr(arg) }.to_string_lossy().into_owned()
}

/// Stores `v` in the pool as an httpd configuration record.
fn record<T: Copy>(p: *mut ffi::apr_pool_t, what: &str, v: impl FnOnce() -> T) -> *mut c_void {
    // SAFETY: httpd passes the configuration pool, live while the configuration is.
    let pool = unsafe { Pool::from_raw(p) };
    guard(what, |_| {}, std::ptr::null_mut(), || pool.alloc(v()).cast())
}

/// Reads back a record `record` stored (httpd hands it back as `void *`).
///
/// # Safety
/// `p` must be a record of type `T` made by `record`.
unsafe fn stored<T: Copy>(p: *mut c_void) -> T {
    // SAFETY: the caller's contract.
    unsafe { *(p as *const T) }
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn wst_rs_create_dir_config(
    p: *mut ffi::apr_pool_t,
    _dir: *mut c_char,
) -> *mut c_void {
    record(p, "create_dir_config", DirConfig::default)
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn wst_rs_merge_dir_config(
    p: *mut ffi::apr_pool_t,
    base: *mut c_void,
    add: *mut c_void,
) -> *mut c_void {
    // SAFETY: both are DirConfig records made by create_dir_config or an earlier merge.
    record(p, "merge_dir_config", || unsafe { DirConfig::merge(&stored(base), &stored(add)) })
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn wst_rs_create_server_config(
    p: *mut ffi::apr_pool_t,
    _s: *mut ffi::server_rec,
) -> *mut c_void {
    record(p, "create_server_config", ServerConfig::default)
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn wst_rs_merge_server_config(
    p: *mut ffi::apr_pool_t,
    base: *mut c_void,
    add: *mut c_void,
) -> *mut c_void {
    // SAFETY: both are ServerConfig records made by create_server_config or an earlier merge.
    record(p, "merge_server_config", || unsafe { ServerConfig::merge(&stored(base), &stored(add)) })
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn wst_rs_cmd_fallback(
    cmd: *mut ffi::cmd_parms,
    dconf: *mut c_void,
    flag: c_int,
) -> *const c_char {
    directive(cmd, "ProxyWebsocketFallbackToProxyHttp", |_| {
        section_config(dconf).fallback_to_proxy_http = Some(flag != 0);
        Ok(())
    })
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn wst_rs_cmd_upgrade_http(
    cmd: *mut ffi::cmd_parms,
    dconf: *mut c_void,
    flag: c_int,
) -> *const c_char {
    directive(cmd, "ProxyWebsocketUpgradeHttp", |_| {
        section_config(dconf).upgrade_http = Some(flag != 0);
        Ok(())
    })
}

/// The per-directory record a directive's handler is given: that of the section being read.
fn section_config<'a>(dconf: *mut c_void) -> &'a mut DirConfig {
    // SAFETY: httpd passes a directive handler the per-dir record of the section being read,
    // one made by our create_dir_config (a DirConfig), and only that handler's call uses it.
    unsafe { &mut *(dconf as *mut DirConfig) }
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn wst_rs_cmd_idle_timeout(
    cmd: *mut ffi::cmd_parms,
    _dconf: *mut c_void,
    a: *const c_char,
) -> *const c_char {
    // SAFETY: httpd passes the argument as a NUL-terminated string.
    let a = unsafe { arg(a) };
    directive(cmd, "ProxyWebsocketIdleTimeout", |cmd| {
        cmd.server_config().idle_timeout = Some(parse_duration(&a)?);
        Ok(())
    })
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn wst_rs_cmd_async(
    cmd: *mut ffi::cmd_parms,
    _dconf: *mut c_void,
    flag: c_int,
) -> *const c_char {
    directive(cmd, "ProxyWebsocketAsync", |cmd| {
        cmd.server_config().async_on = Some(flag != 0);
        Ok(())
    })
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn wst_rs_cmd_async_delay(
    cmd: *mut ffi::cmd_parms,
    _dconf: *mut c_void,
    a: *const c_char,
) -> *const c_char {
    // SAFETY: httpd passes the argument as a NUL-terminated string.
    let a = unsafe { arg(a) };
    directive(cmd, "ProxyWebsocketAsyncDelay", |cmd| {
        cmd.server_config().async_delay = Some(parse_duration(&a)?);
        Ok(())
    })
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn wst_rs_cmd_drain_timeout(
    cmd: *mut ffi::cmd_parms,
    _dconf: *mut c_void,
    a: *const c_char,
) -> *const c_char {
    // SAFETY: httpd passes the argument as a NUL-terminated string.
    let a = unsafe { arg(a) };
    directive(cmd, "ProxyWebsocketDrainTimeout", |cmd| {
        main_server_only(cmd)?;
        cmd.server_config().drain = Some(parse_duration(&a)?);
        Ok(())
    })
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn wst_rs_cmd_async_threads(
    cmd: *mut ffi::cmd_parms,
    _dconf: *mut c_void,
    a: *const c_char,
) -> *const c_char {
    // SAFETY: httpd passes the argument as a NUL-terminated string.
    let a = unsafe { arg(a) };
    directive(cmd, "ProxyWebsocketAsyncThreads", |cmd| {
        main_server_only(cmd)?;
        cmd.server_config().async_threads = Some(parse_threads(&a)?);
        Ok(())
    })
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn wst_rs_cmd_async_max(
    cmd: *mut ffi::cmd_parms,
    _dconf: *mut c_void,
    a: *const c_char,
) -> *const c_char {
    // SAFETY: httpd passes the argument as a NUL-terminated string.
    let a = unsafe { arg(a) };
    directive(cmd, "ProxyWebsocketAsyncMaxTunnels", |cmd| {
        cmd.server_config().async_max = Some(parse_count(&a)?);
        Ok(())
    })
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn wst_rs_cmd_ping_interval(
    cmd: *mut ffi::cmd_parms,
    _dconf: *mut c_void,
    a: *const c_char,
) -> *const c_char {
    // SAFETY: httpd passes the argument as a NUL-terminated string.
    let a = unsafe { arg(a) };
    directive(cmd, "ProxyWebsocketPingInterval", |cmd| {
        cmd.server_config().ping_interval = Some(parse_duration(&a)?);
        Ok(())
    })
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn wst_rs_cmd_ping_timeout(
    cmd: *mut ffi::cmd_parms,
    _dconf: *mut c_void,
    a: *const c_char,
) -> *const c_char {
    // SAFETY: httpd passes the argument as a NUL-terminated string.
    let a = unsafe { arg(a) };
    directive(cmd, "ProxyWebsocketPingTimeout", |cmd| {
        cmd.server_config().ping_timeout = Some(parse_duration(&a)?);
        Ok(())
    })
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn wst_rs_cmd_strict_frames(
    cmd: *mut ffi::cmd_parms,
    _dconf: *mut c_void,
    flag: c_int,
) -> *const c_char {
    directive(cmd, "ProxyWebsocketStrictFrames", |cmd| {
        cmd.server_config().strict_frames = Some(flag != 0);
        Ok(())
    })
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn wst_rs_cmd_max_message(
    cmd: *mut ffi::cmd_parms,
    _dconf: *mut c_void,
    a: *const c_char,
) -> *const c_char {
    // SAFETY: httpd passes the argument as a NUL-terminated string.
    let a = unsafe { arg(a) };
    directive(cmd, "ProxyWebsocketMaxMessageSize", |cmd| {
        cmd.server_config().max_message = Some(parse_bytes(&a)?);
        Ok(())
    })
}

/// The status board's shared memory: made once in httpd's parent, kept across restarts.
fn attach_status_board(s: Server) {
    let slots = crate::status::board_slots(mpm::hard_limit_daemons());
    // The key names the slots' layout: a module upgraded under a graceful restart makes a new
    // block rather than reading the old one's with another layout.
    match shm::retained_array(c"mod_proxy_wstunnel-board-2", slots) {
        Ok(board) => crate::status::attach(board),
        Err(rv) => slog!(
            s,
            WARNING,
            "WST00005: cannot create the shared memory for the tunnels' status (APR status {rv}): mod_status will not show them"
        ),
    }
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn wst_rs_post_config(
    _pconf: *mut ffi::apr_pool_t,
    _plog: *mut ffi::apr_pool_t,
    _ptemp: *mut ffi::apr_pool_t,
    s: *mut ffi::server_rec,
) -> c_int {
    // SAFETY: httpd passes the main server record of the configuration.
    let s = unsafe { Server::from_raw(s) };
    guard(
        "post_config",
        |m| crate::httpd::log::server(file!(), line!(), s, ERR, 0, m),
        INTERNAL_SERVER_ERROR,
        || {
            attach_status_board(s);
            // SAFETY: looks up a module by name in httpd's loaded-module list.
            let http =
                unsafe { !ffi::ap_find_linked_module(c"mod_proxy_http.c".as_ptr()).is_null() };
            CAN_FALLBACK.store(http, Ordering::Relaxed);
            shutdown::set_drain_timeout(s.config().drain);
            crate::tunnel::detached::set_threads(crate::config::async_threads(
                s.config().async_threads,
                crate::sys::cpus_allowed(),
                mpm::start_servers(),
                mpm::is_threaded(),
            ));
            if !crate::httpd::release::check(s) {
                return INTERNAL_SERVER_ERROR;
            }
            crate::httpd::behaviours::check(s);
            if mpm::is_async()
                && mpm::final_config_pass()
                && s.and_virtual_hosts().any(|v| v.config().async_on())
            {
                let (factor, set) = mpm::async_request_worker_factor();
                let threads = mpm::threads_per_child();
                let advice = if factor < 100.0 {
                    format!(
                        " To hold more per child, raise AsyncRequestWorkerFactor (100: about {}).",
                        event_connection_limit(threads, 100.0)
                    )
                } else {
                    String::new()
                };
                slog!(
                s,
                NOTICE,
                "WST00008: ProxyWebsocketAsync On under the event MPM: each wss:// WebSocket (TLS at httpd) that leaves \
                 its request thread stays one of its child's connections; with ThreadsPerChild {threads} and \
                 AsyncRequestWorkerFactor {factor}{}, a child accepts new connections only below {threads} + idle threads \
                 x {factor}: about {} such WebSockets per child, then the other children take new ones.{advice}",
                if set { "" } else { " (the default)" },
                event_connection_limit(threads, factor),
            );
            }
            slog!(
                s,
                TRACE1,
                "WST00002: mod_proxy_http is {}loaded: fallback {}possible",
                if http { "" } else { "not " },
                if http { "" } else { "im" }
            );
            OK
        },
    )
}

/// The event MPM's connection limit for a child whose threads are all idle.
fn event_connection_limit(threads: usize, factor: f64) -> u64 {
    (threads as f64 * (1.0 + factor)).floor() as u64
}

/// Cleanup of the child's pool: the child process is exiting, its worker threads are done.
extern "C" fn wst_rs_child_exit(_data: *mut c_void) -> ffi::apr_status_t {
    guard(
        "child_exit",
        |_| {},
        (),
        || {
            shutdown::child_exit(mpm::graceful_shutdown_timeout());
            crate::status::child_exited();
        },
    );
    APR_SUCCESS
}

/// httpd asks whether the whole server is stopping, from the scoreboard.
fn server_draining() -> bool {
    let board = mpm::scoreboard();
    shutdown::server_draining(
        mpm::is_threaded(),
        crate::sys::getpid(),
        mpm::generation(),
        board.as_ref().map(|(g, ps)| (*g, ps.as_slice())),
    )
}

/// httpd's child_init hook: the child takes its slot on the status board.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn wst_rs_child_init(pchild: *mut ffi::apr_pool_t, _s: *mut ffi::server_rec) {
    guard(
        "child_init",
        |_| {},
        (),
        || {
            crate::status::child_started(mpm::generation().max(0) as u32);
            shutdown::set_server_draining_check(server_draining);
            // SAFETY: the child's pool lives until the child exits; the cleanup runs then, once.
            unsafe {
                ffi::apr_pool_cleanup_register(
                    pchild,
                    std::ptr::null(),
                    Some(wst_rs_child_exit),
                    Some(ffi::apr_pool_cleanup_null),
                )
            };
        },
    )
}

/// httpd's child_stopping hook (graceful restart, graceful stop, stop).
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn wst_rs_child_stopping(_pchild: *mut ffi::apr_pool_t, graceful: c_int) {
    guard(
        "child_stopping",
        |_| {},
        (),
        || {
            let drains = shutdown::drains(graceful != 0, mpm::is_threaded());
            let grace = shutdown::grace(mpm::graceful_shutdown_timeout());
            slog!(
                Server::main(),
                DEBUG,
                "WST00004: child {} stopping ({}); {}",
                crate::sys::getpid(),
                if drains { "graceful" } else { "not graceful" },
                match grace {
                    Some(g) if drains => format!(
                        "once httpd stops or restarts, its tunnels get Close 1001 after {} ms \
                         and are closed after {} ms",
                        shutdown::polite_after(g).as_millis(),
                        g.as_millis()
                    ),
                    _ if drains => "its tunnels run until they end".to_string(),
                    _ => "its tunnels end now".to_string(),
                }
            );
            shutdown::child_stopping(drains, mpm::graceful_shutdown_timeout())
        },
    )
}

/// mod_status's hook: our section of /server-status (HTML, or `?auto` lines).
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn wst_rs_status(r: *mut ffi::request_rec, flags: c_int) -> c_int {
    let flag = |f: u32| flags & f as c_int != 0;
    request_guard(r, "status", |req| {
        let (rows, total) = crate::status::snapshot();
        let text = if flag(ffi::AP_STATUS_SHORT) {
            crate::status::render_auto(&rows, &total)
        } else {
            crate::status::render_html(
                &rows,
                &total,
                flag(ffi::AP_STATUS_EXTENDED),
                !flag(ffi::AP_STATUS_NOTABLE),
            )
        };
        req.write(text.as_bytes());
        OK
    });
    OK
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn wst_rs_check_trans(r: *mut ffi::request_rec, url: *const c_char) -> c_int {
    request_guard(r, "check_trans", |req| {
        // SAFETY: mod_proxy passes the alias target as a NUL-terminated string.
        let url = unsafe { CStr::from_ptr(url) }.to_bytes();
        handler::check_trans(req, url)
    })
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn wst_rs_canon(r: *mut ffi::request_rec, url: *mut c_char) -> c_int {
    request_guard(r, "canon", |req| {
        // SAFETY: mod_proxy passes the URL (after "proxy:") as a NUL-terminated string.
        let url = unsafe { CStr::from_ptr(url) }.to_bytes();
        handler::canon(req, url)
    })
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn wst_rs_handler(
    r: *mut ffi::request_rec,
    worker: *mut ffi::proxy_worker,
    conf: *mut ffi::proxy_server_conf,
    url: *mut c_char,
    proxyname: *const c_char,
    proxyport: ffi::apr_port_t,
) -> c_int {
    request_guard(r, "scheme handler", |req| {
        // SAFETY: mod_proxy's arguments to the scheme handler, for this call.
        let args = unsafe { SchemeArgs::from_raw(worker, conf, url, proxyname, proxyport) };
        let status = handler::handle(req, &args);
        rlog!(req, TRACE1, "WST00003: scheme handler returns {status}");
        status
    })
}

/// The MPM's suspend_connection hook: a connection leaves its worker thread (for a suspended
/// tunnel, the moment the runtime may take it).
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn wst_rs_suspend_connection(c: *mut ffi::conn_rec, _r: *mut ffi::request_rec) {
    // SAFETY: the MPM passes the live connection, on the thread that ran it.
    let c = unsafe { crate::httpd::Connection::from_raw(c) };
    guard("suspend_connection", |_| {}, (), || crate::tunnel::connection_suspended(&c))
}
