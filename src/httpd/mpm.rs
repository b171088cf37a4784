//! What the MPM says about this child: threaded or not, stopping, its generation, and the
//! scoreboard's processes (`ap_mpm_query`, `ap_scoreboard_image`).

use super::outcome::Process;
use crate::ffi;

fn query(code: u32) -> Option<i32> {
    let mut v = 0;
    // SAFETY: ap_mpm_query writes one int for a known query code.
    (unsafe { ffi::ap_mpm_query(code as i32, &mut v) } == 0).then_some(v)
}

/// The MPM runs worker threads (event, worker), not one request per process (prefork).
pub fn is_threaded() -> bool {
    query(ffi::AP_MPMQ_IS_THREADED).is_some_and(|v| v != ffi::AP_MPMQ_NOT_SUPPORTED as i32)
}

/// The MPM can hold connections whose handler returned SUSPENDED (event).
pub fn is_async() -> bool {
    query(ffi::AP_MPMQ_IS_ASYNC).is_some_and(|v| v != 0)
}

/// `ThreadsPerChild` (1 for prefork).
pub fn threads_per_child() -> usize {
    query(ffi::AP_MPMQ_MAX_THREADS).unwrap_or(1).max(1) as usize
}

/// The event MPM's `AsyncRequestWorkerFactor` (a decimal; 2 unless set): the last one in the
/// configuration tree, sections included (the MPM keeps the value to itself). Read at
/// post_config, when the tree is complete.
pub fn async_request_worker_factor() -> (f64, bool) {
    // SAFETY: httpd builds the tree while reading the configuration and keeps it until the
    // next read; post_config runs on the main thread between the two.
    let root = unsafe { ffi::ap_conftree };
    match last_directive(root, "AsyncRequestWorkerFactor").and_then(|v| v.trim().parse().ok()) {
        Some(f) => (f, true),
        None => (2.0, false),
    }
}

/// `StartServers` as the configuration sets it (the last one in the tree); None when unset
/// (the MPM's own default applies). Read at post_config, when the tree is complete.
pub fn start_servers() -> Option<u32> {
    // SAFETY: as in async_request_worker_factor.
    let root = unsafe { ffi::ap_conftree };
    last_directive(root, "StartServers").and_then(|v| v.trim().parse().ok())
}

/// The arguments of the last `name` directive in the tree from `node` on.
fn last_directive(mut node: *const ffi::ap_directive_t, name: &str) -> Option<String> {
    let mut found = None;
    while !node.is_null() {
        // SAFETY: a node of httpd's configuration tree (see async_request_worker_factor):
        // its strings are NUL-terminated, its links null or nodes of the same tree.
        let d = unsafe { &*node };
        let is = !d.directive.is_null()
            && unsafe { std::ffi::CStr::from_ptr(d.directive) }
                .to_bytes()
                .eq_ignore_ascii_case(name.as_bytes());
        if is && !d.args.is_null() {
            // SAFETY: as above.
            found =
                Some(unsafe { std::ffi::CStr::from_ptr(d.args) }.to_string_lossy().into_owned());
        }
        if let Some(inner) = last_directive(d.first_child, name) {
            found = Some(inner);
        }
        node = d.next;
    }
    found
}

/// httpd reads its configuration twice at startup; false during the first (pre-config) pass,
/// where what a module says at startup would be said twice.
pub fn final_config_pass() -> bool {
    // SAFETY: a query of httpd's state, no arguments besides the code.
    unsafe {
        ffi::ap_state_query(ffi::AP_SQ_MAIN_STATE as i32) != ffi::AP_SQ_MS_CREATE_PRE_CONFIG as i32
    }
}

/// The MPM is stopping this child (graceful restart or stop).
pub fn stopping() -> bool {
    query(ffi::AP_MPMQ_MPM_STATE) == Some(ffi::AP_MPMQ_STOPPING as i32)
}

/// This child's generation (one per restart).
pub fn generation() -> i32 {
    query(ffi::AP_MPMQ_GENERATION).unwrap_or(0)
}

/// `ServerLimit`: how many child processes httpd may run at once.
pub fn hard_limit_daemons() -> i32 {
    query(ffi::AP_MPMQ_HARD_LIMIT_DAEMONS).unwrap_or(0)
}

/// `GracefulShutdownTimeout` in seconds (0: none).
pub fn graceful_shutdown_timeout() -> i32 {
    // SAFETY: a plain int httpd sets while reading its configuration, before children run.
    unsafe { ffi::ap_graceful_shutdown_timeout }
}

/// The generation httpd runs now and the scoreboard's processes; None without a scoreboard.
/// Other processes write the scoreboard as we read it, so its fields are read one by one as
/// volatile copies, never through references.
pub fn scoreboard() -> Option<(i32, Vec<Process>)> {
    use std::ptr::{addr_of, read_volatile};
    // SAFETY: the scoreboard is shared memory httpd maps before it forks the children and
    // keeps for their whole life; the image pointer is NULL before that.
    let image = unsafe { ffi::ap_scoreboard_image };
    if image.is_null() {
        return None;
    }
    // SAFETY: `global` points into the same mapping, set when it was made.
    let global = unsafe { (*image).global };
    if global.is_null() {
        return None;
    }
    // SAFETY: a field of the live mapping (above).
    let running = unsafe { read_volatile(addr_of!((*global).running_generation)) };
    let procs = (0..hard_limit_daemons())
        .filter_map(|i| {
            // SAFETY: slots below the hard limit are in the mapping (NULL otherwise).
            let p = unsafe { ffi::ap_get_scoreboard_process(i) };
            if p.is_null() {
                return None;
            }
            // SAFETY: fields of a live slot, copied.
            let (pid, generation, quiescing) = unsafe {
                (
                    read_volatile(addr_of!((*p).pid)),
                    read_volatile(addr_of!((*p).generation)),
                    read_volatile(addr_of!((*p).quiescing)),
                )
            };
            Some(Process { pid: pid.max(0) as u32, generation, quiescing: quiescing != 0 })
        })
        .collect();
    Some((running, procs))
}
