//! mod_proxy's backend connection (`proxy_conn_rec`): what the module reads and sets on it.

use crate::ffi;
use std::time::Duration;

/// The backend socket's timeout in microseconds, as mod_proxy set it when connecting (the
/// worker's `timeout=`, `ProxyTimeout` or `Timeout`); 0 if not connected.
pub fn socket_timeout_us(backend: &ffi::proxy_conn_rec) -> i64 {
    if backend.sock.is_null() {
        return 0;
    }
    let mut t: ffi::apr_interval_time_t = 0;
    // SAFETY: a non-NULL `sock` of a connection we hold is a live APR socket; APR writes the
    // timeout into `t`.
    unsafe { ffi::apr_socket_timeout_get(backend.sock, &mut t) };
    t
}

/// Sets the backend socket's timeout (each blocking read through the connection's filters
/// waits at most this long).
pub fn set_socket_timeout(backend: &ffi::proxy_conn_rec, t: Duration) {
    if backend.sock.is_null() {
        return;
    }
    // SAFETY: as in socket_timeout_us; APR only stores the value.
    unsafe { ffi::apr_socket_timeout_set(backend.sock, t.as_micros().clamp(1, i64::MAX as u128) as ffi::apr_interval_time_t) };
}
