//! `apr_bucket_brigade`: the buffers httpd's filters pass around.

use crate::ffi;
use std::marker::PhantomData;

/// A brigade allocated from a pool that outlives `'p`.
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

    pub fn as_ptr(&self) -> *mut ffi::apr_bucket_brigade {
        self.raw
    }
}
