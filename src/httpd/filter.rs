//! The watch: a connection input filter (registered by the shim as `WSTUNNEL_WATCH`, above
//! TLS and mod_http2's network filters) through which every byte mod_proxy's tunnel reads
//! passes in plaintext. What it does with them is the [`Watch`]'s business; this file only
//! connects it to httpd.

use super::outcome::{read_again, APR_ECONNABORTED, APR_EOF, APR_SUCCESS};
use super::{Brigade, Connection, Server};
use crate::ffi;
use std::marker::PhantomData;

/// What a watch wants of the next read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Read,
    /// Answer end of stream without reading.
    Eof,
    /// Fail the read (the tunnel ends).
    Abort,
}

/// The watch on one connection of a tunnel.
pub trait Watch {
    /// Before each read.
    fn verdict(&self) -> Verdict;
    /// Bytes just read: how many of them go on (the rest is dropped).
    fn read(&self, bytes: &[u8]) -> usize;
    /// After a read: bytes to append to it (a Close frame); it may also write to `sender`,
    /// the connection the filter reads from.
    fn closes(&self, sender: &Connection) -> Option<Vec<u8>>;
}

type Boxed<'w> = Box<dyn Watch + 'w>;

/// A watch in place on a connection; it comes off on drop, before the watch is freed.
pub struct Watched<'w> {
    filter: *mut ffi::ap_filter_t,
    ctx: *mut Boxed<'w>,
    _life: PhantomData<&'w ()>,
}

/// Puts `watch` on connection `c` (which outlives `'w`).
pub fn watch<'w>(c: &Connection<'w>, watch: Boxed<'w>) -> Watched<'w> {
    let ctx = Box::into_raw(Box::new(watch));
    // SAFETY: the filter gets `ctx` as its context; `Watched` removes the filter before it
    // frees `ctx`, and the connection outlives `'w`, so the filter never sees a freed one.
    let filter = unsafe { ffi::wst_watch_add(c.as_ptr(), ctx.cast()) };
    Watched { filter, ctx, _life: PhantomData }
}

impl Drop for Watched<'_> {
    fn drop(&mut self) {
        if !self.filter.is_null() {
            // SAFETY: a filter we added to a connection that is still live.
            unsafe { ffi::ap_remove_input_filter(self.filter) };
        }
        // SAFETY: made by Box::into_raw in `watch`; the filter that used it is gone.
        drop(unsafe { Box::from_raw(self.ctx) });
    }
}

/// The server of the filter's connection (to log on when its watch panics).
///
/// # Safety
/// `f` must be a live filter of a live connection.
pub unsafe fn server_of(f: *mut ffi::ap_filter_t) -> Server {
    // SAFETY: the caller's contract.
    unsafe { Connection::from_raw((*f).c) }.server()
}

/// The filter's work (module.rs's `wst_rs_watch_in` is its entry point): ask the watch, read
/// from the next filter, let the watch cut what came and append its Close; a read whose
/// every byte was dropped is read again, as if it had never come.
///
/// # Safety
/// The arguments must be those httpd passes to an input filter added by [`watch`].
pub unsafe fn input(
    f: *mut ffi::ap_filter_t,
    bb: *mut ffi::apr_bucket_brigade,
    mode: ffi::ap_input_mode_t,
    block: ffi::apr_read_type_e,
    readbytes: ffi::apr_off_t,
) -> i32 {
    // SAFETY: httpd passes a live filter; its context is the box `watch` made.
    let (next, c, w) =
        unsafe { ((*f).next, Connection::from_raw((*f).c), &**((*f).ctx as *const Boxed)) };
    if mode != ffi::AP_MODE_READBYTES {
        // SAFETY: passes the call on down the chain unchanged.
        return unsafe { ffi::ap_get_brigade(next, bb, mode, block, readbytes) };
    }
    // SAFETY: the brigade httpd passed, live for this call.
    let brigade = unsafe { Brigade::from_raw(bb) };
    loop {
        match w.verdict() {
            Verdict::Eof => return APR_EOF,
            Verdict::Abort => return APR_ECONNABORTED,
            Verdict::Read => {}
        }
        let before = brigade.last();
        // SAFETY: as above.
        let rv = unsafe { ffi::ap_get_brigade(next, bb, mode, block, readbytes) };
        if rv != APR_SUCCESS {
            return rv;
        }
        let (kept, dropped) = brigade.cut_data(brigade.next(before), |bytes| w.read(bytes));
        if let Some(close) = w.closes(&c) {
            brigade.append(&close);
            return APR_SUCCESS;
        }
        if !read_again(kept, dropped) {
            return APR_SUCCESS;
        }
    }
}
