//! `apr_pool_t`: memory that lives as long as the pool (a request, a connection, the configuration).

use crate::ffi;
use std::marker::PhantomData;
use std::os::raw::c_char;

/// A borrowed APR pool, valid for `'p`.
#[derive(Clone, Copy)]
pub struct Pool<'p> {
    raw: *mut ffi::apr_pool_t,
    _life: PhantomData<&'p ()>,
}

impl<'p> Pool<'p> {
    /// # Safety
    /// `raw` must be a live pool for all of `'p`.
    pub unsafe fn from_raw(raw: *mut ffi::apr_pool_t) -> Self {
        Pool { raw, _life: PhantomData }
    }

    pub fn as_ptr(&self) -> *mut ffi::apr_pool_t {
        self.raw
    }

    /// Copies `s` into the pool as a NUL-terminated C string. Interior NULs truncate, as
    /// they would in any C consumer.
    pub fn strdup(&self, s: &str) -> *mut c_char {
        self.strdup_bytes(s.as_bytes())
    }

    /// Copies raw bytes into the pool as a NUL-terminated C string (truncated at a NUL).
    pub fn strdup_bytes(&self, bytes: &[u8]) -> *mut c_char {
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        // SAFETY: apr_pstrmemdup copies `len` readable bytes and appends a NUL; the copy lives
        // as long as the pool.
        unsafe { ffi::apr_pstrmemdup(self.raw, bytes.as_ptr().cast(), len) }
    }

    /// Allocates a `T` in the pool, initialised with `v`. APR never runs destructors, so `T`
    /// must be plain data.
    pub fn alloc<T: Copy>(&self, v: T) -> *mut T {
        // SAFETY: apr_palloc returns memory aligned for any C type (APR_ALIGN_DEFAULT, 8 bytes),
        // enough for the repr(C) configuration records stored here; it aborts on OOM rather
        // than return NULL. We initialise it before handing it out.
        unsafe {
            let p = ffi::apr_palloc(self.raw, std::mem::size_of::<T>()) as *mut T;
            p.write(v);
            p
        }
    }
}
