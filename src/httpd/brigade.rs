//! `apr_bucket_brigade`: the buffers httpd's filters pass around.

use crate::ffi;
use std::marker::PhantomData;

/// A brigade allocated from a pool that outlives `'p` (or one a filter was given).
pub struct Brigade<'p> {
    raw: *mut ffi::apr_bucket_brigade,
    _life: PhantomData<&'p ()>,
}

impl<'p> Brigade<'p> {
    /// Creates an empty brigade in `pool`, using the bucket allocator of a connection.
    ///
    /// # Safety
    /// `alloc` must be the bucket allocator of a connection that outlives `'p`.
    pub unsafe fn new(pool: super::Pool<'p>, alloc: *mut ffi::apr_bucket_alloc_t) -> Self {
        // SAFETY: pool and allocator are live (caller's contract); the brigade is registered
        // for cleanup with the pool.
        let raw = unsafe { ffi::apr_brigade_create(pool.as_ptr(), alloc) };
        Brigade { raw, _life: PhantomData }
    }

    /// # Safety
    /// `raw` must be a live brigade for `'p` (e.g. the one a filter was passed).
    pub unsafe fn from_raw(raw: *mut ffi::apr_bucket_brigade) -> Self {
        Brigade { raw, _life: PhantomData }
    }

    pub(crate) fn as_ptr(&self) -> *mut ffi::apr_bucket_brigade {
        self.raw
    }

    pub fn is_empty(&self) -> bool {
        // SAFETY: a live brigade (APR_BRIGADE_EMPTY).
        unsafe { ffi::wst_brigade_first(self.raw).is_null() }
    }

    /// Its first bucket is end of stream.
    pub fn starts_with_eos(&self) -> bool {
        // SAFETY: a live brigade; the shim tests the first bucket's type.
        unsafe { ffi::wst_brigade_starts_with_eos(self.raw) != 0 }
    }

    /// Copies its bytes into `buf` (at most `buf.len()`): the APR status and how many.
    pub fn flatten(&self, buf: &mut [u8]) -> (i32, usize) {
        let mut len = buf.len() as ffi::apr_size_t;
        // SAFETY: `buf` is writable for `len` bytes; APR writes back how many it copied.
        let rv = unsafe { ffi::apr_brigade_flatten(self.raw, buf.as_mut_ptr().cast(), &mut len) };
        (rv, len as usize)
    }

    /// Empties it (its buckets are destroyed).
    pub fn cleanup(&self) {
        // SAFETY: a live brigade.
        unsafe { ffi::apr_brigade_cleanup(self.raw.cast()) };
    }

    /// Passes `bytes` down the filter chain from `f` without copying them (a transient bucket:
    /// a filter that keeps it sets it aside, as APR requires), and leaves the brigade empty.
    /// A copy would take an allocator block as large as `bytes`, which the connection's
    /// allocator keeps on its free list for as long as the connection lives.
    pub(super) fn pass_borrowed(&self, f: *mut ffi::ap_filter_t, bytes: &[u8], flush: bool) -> i32 {
        // SAFETY: a live brigade and filter chain; the bucket refers to `bytes` only until the
        // shim empties the brigade, before returning.
        unsafe {
            ffi::wst_pass_transient(f, self.raw, bytes.as_ptr().cast(), bytes.len(), flush as i32)
        }
    }

    /// Appends `bytes` with `apr_brigade_write` (coalesced into the brigade's buckets).
    pub fn write(&self, bytes: &[u8]) -> i32 {
        // SAFETY: a live brigade; APR copies the bytes; no flush callback.
        unsafe {
            ffi::apr_brigade_write(
                self.raw,
                None,
                std::ptr::null_mut(),
                bytes.as_ptr().cast(),
                bytes.len(),
            )
        }
    }
}
