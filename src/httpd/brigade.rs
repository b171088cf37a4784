//! `apr_bucket_brigade`: the buffers httpd's filters pass around, and their buckets.

use crate::ffi;
use std::marker::PhantomData;

/// A brigade allocated from a pool that outlives `'p` (or one a filter was given).
pub struct Brigade<'p> {
    raw: *mut ffi::apr_bucket_brigade,
    _life: PhantomData<&'p ()>,
}

/// A bucket of a brigade (valid until it is deleted or the brigade is cleaned up).
#[derive(Clone, Copy)]
pub struct Bucket(*mut ffi::apr_bucket);

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

    /// Appends a copy of `bytes` (a heap bucket).
    pub fn append(&self, bytes: &[u8]) {
        // SAFETY: a live brigade; the shim copies the bytes into a bucket of its allocator.
        unsafe { ffi::wst_brigade_append(self.raw, bytes.as_ptr().cast(), bytes.len()) }
    }

    /// Passes `bytes` down the filter chain from `f` without copying them (a transient bucket:
    /// a filter that keeps it sets it aside, as APR requires), and leaves the brigade empty.
    /// A copy would take an allocator block as large as `bytes`, which the connection's
    /// allocator keeps on its free list for as long as the connection lives.
    pub(super) fn pass_borrowed(&self, f: *mut ffi::ap_filter_t, bytes: &[u8]) -> i32 {
        // SAFETY: a live brigade and filter chain; the bucket refers to `bytes` only until the
        // shim empties the brigade, before returning.
        unsafe { ffi::wst_pass_transient(f, self.raw, bytes.as_ptr().cast(), bytes.len()) }
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

    pub fn last(&self) -> Option<Bucket> {
        // SAFETY: a live brigade (NULL when empty).
        let b = unsafe { ffi::wst_brigade_last(self.raw) };
        (!b.is_null()).then_some(Bucket(b))
    }

    /// The bucket after `b`, or the first one for None; None at the end.
    pub fn next(&self, b: Option<Bucket>) -> Option<Bucket> {
        // SAFETY: `b` is a bucket of this brigade (NULL asks for the first).
        let n = unsafe { ffi::wst_bucket_next(self.raw, b.map_or(std::ptr::null_mut(), |b| b.0)) };
        (!n.is_null()).then_some(Bucket(n))
    }

    /// Lets `keep` decide, for each data bucket from `from` on (all of them for None), how
    /// many of its bytes stay; the rest is deleted. Metadata buckets, and buckets that cannot
    /// be read, stay. Returns (whether anything stayed, whether anything was dropped).
    pub fn cut_data(
        &self,
        from: Option<Bucket>,
        mut keep: impl FnMut(&[u8]) -> usize,
    ) -> (bool, bool) {
        use super::outcome::{cut, Cut};
        let (mut kept, mut dropped) = (false, false);
        let mut at = from;
        while let Some(b) = at {
            at = self.next(Some(b));
            let Some(bytes) = b.data() else {
                kept = true;
                continue;
            };
            match cut(bytes.len(), keep(bytes)) {
                Cut::Keep => kept = true,
                Cut::Delete => {
                    b.delete();
                    dropped = true;
                }
                Cut::Split(n) => {
                    kept = true;
                    // SAFETY: a live data bucket longer than `n`; the shim splits it and
                    // deletes the part after `n`.
                    unsafe { ffi::wst_bucket_truncate(b.0, n) };
                }
            }
        }
        (kept, dropped)
    }
}

impl Bucket {
    /// A data bucket's bytes (read blocking, as filters do), or None for metadata and
    /// unreadable buckets. Valid until the bucket changes.
    fn data<'b>(self) -> Option<&'b [u8]> {
        let (mut data, mut len): (*const std::os::raw::c_char, ffi::apr_size_t) =
            (std::ptr::null(), 0);
        // SAFETY: a live bucket; APR points `data` at its `len` bytes.
        if unsafe { ffi::wst_bucket_read(self.0, &mut data, &mut len) } != 0 {
            return None;
        }
        if data.is_null() || len == 0 {
            return Some(&[]);
        }
        // SAFETY: as above; the bytes stay until the bucket is split or deleted, after the
        // caller is done with them.
        Some(unsafe { std::slice::from_raw_parts(data.cast(), len) })
    }

    fn delete(self) {
        // SAFETY: a live bucket of a brigade; removed and destroyed once.
        unsafe { ffi::wst_bucket_delete(self.0) }
    }
}
