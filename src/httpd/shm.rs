//! Anonymous shared memory made once in httpd's parent and kept across restarts
//! (`ap_retained_data_*`, `apr_shm_create` from the process-wide pool): children inherit it
//! through fork, and children of an old generation still draining stay on it.

use crate::ffi;
use std::ffi::CStr;
use std::os::raw::c_int;

/// Types that are valid when all their bytes are zero and may be shared between threads and
/// processes (only atomics inside).
///
/// # Safety
/// Implementors must be `repr(C)` plain data of atomics (or other types that are valid as
/// zero bytes and need no drop).
pub unsafe trait SharedZeroed: Sync {}

// SAFETY: `Slot` is repr(C) and made of atomic integers only.
unsafe impl SharedZeroed for crate::status::Slot {}

/// What survives a restart: the segment and how many `T` it holds.
#[repr(C)]
struct Retained {
    shm: *mut ffi::apr_shm_t,
    count: c_int,
}

/// `count` zeroed `T`s shared by the parent and every child, under `key`; made on the first
/// call of the process, the same memory on later ones (restarts, where `count` is ignored).
pub fn retained_array<T: SharedZeroed>(
    key: &'static CStr,
    count: usize,
) -> Result<&'static [T], i32> {
    // SAFETY: retained data lives in the process-wide pool, zeroed when created, `size`
    // bytes; only this function touches it, in httpd's parent while it reads the
    // configuration (single-threaded).
    let kept = unsafe {
        let p = ffi::ap_retained_data_get(key.as_ptr()) as *mut Retained;
        let p = if p.is_null() {
            ffi::ap_retained_data_create(key.as_ptr(), std::mem::size_of::<Retained>())
                as *mut Retained
        } else {
            p
        };
        &mut *p
    };
    if kept.shm.is_null() {
        let bytes = count * std::mem::size_of::<T>();
        let mut shm = std::ptr::null_mut();
        // SAFETY: anonymous shared memory (no file name) of `bytes` from the process-wide
        // pool, which lives until httpd exits.
        let rv = unsafe { ffi::apr_shm_create(&mut shm, bytes, std::ptr::null(), ffi::ap_pglobal) };
        if rv != 0 {
            return Err(rv);
        }
        // SAFETY: the segment is `bytes` long, ours, and not yet seen by anyone else.
        unsafe { std::ptr::write_bytes(ffi::apr_shm_baseaddr_get(shm) as *mut u8, 0, bytes) };
        kept.shm = shm;
        kept.count = count as c_int;
    }
    // SAFETY: page-aligned (mmap), `count` zeroed or previously used `T`s, which are valid as
    // zero bytes and shareable (SharedZeroed); never unmapped while the process lives.
    Ok(unsafe {
        std::slice::from_raw_parts(
            ffi::apr_shm_baseaddr_get(kept.shm) as *const T,
            kept.count as usize,
        )
    })
}
