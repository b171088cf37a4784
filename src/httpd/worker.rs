//! A mod_proxy worker's busy count (`worker->s->busy`, in shared memory), which
//! mod_proxy_balancer raises for a request's life and `lbmethod=bybusyness` reads. An
//! asynchronous tunnel outlives its request, so it holds the count itself.

use crate::ffi;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One unit of a worker's busy count, released on drop.
pub struct Busy {
    counter: &'static AtomicUsize,
}

impl Busy {
    /// Raises `worker`'s busy count; None if the worker has no shared record.
    ///
    /// # Safety
    /// `worker` must be NULL or a worker of this child's configuration: workers and their
    /// shared records live in the configuration pool and shared memory, which a child keeps
    /// until it exits, so the counter outlives every tunnel of the child.
    pub unsafe fn hold(worker: *const ffi::proxy_worker) -> Option<Busy> {
        // SAFETY: guaranteed by the caller (see above).
        let shared = unsafe { worker.as_ref()?.s.as_mut()? };
        // SAFETY: apr_size_t is usize, the field is aligned, and the memory lives as long as
        // the process (see above); other updaters are httpd threads (plain increments under
        // the balancer's lock), atomics here keep ours from tearing.
        let counter = unsafe { AtomicUsize::from_ptr(std::ptr::addr_of_mut!(shared.busy)) };
        counter.fetch_add(1, Ordering::AcqRel);
        Some(Busy { counter })
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = self.counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1));
    }
}
