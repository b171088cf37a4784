//! `server_rec`: the main server or a virtual host, as configured.

use crate::config::ServerConfig;
use crate::ffi;
use std::time::Duration;

/// A server record. Servers live in the configuration pool for the child's whole life and
/// are only read once requests run, so a `Server` may go to any thread (an asynchronous
/// tunnel logs its end on its virtual host).
#[derive(Clone, Copy)]
pub struct Server {
    raw: *const ffi::server_rec,
}

// SAFETY: see the type's documentation: the record outlives every user and is not written
// while they read it; `Server` only reads.
unsafe impl Send for Server {}
// SAFETY: as above.
unsafe impl Sync for Server {}

impl Server {
    /// # Safety
    /// `raw` must be NULL or a server record of the running configuration.
    pub unsafe fn from_raw(raw: *const ffi::server_rec) -> Server {
        Server { raw }
    }

    /// The main server (`ap_server_conf`), for what concerns no virtual host.
    pub fn main() -> Server {
        // SAFETY: httpd sets it while reading the configuration, before children run.
        Server { raw: unsafe { ffi::ap_server_conf } }
    }

    pub(crate) fn as_ptr(&self) -> *const ffi::server_rec {
        self.raw
    }

    fn rec(&self) -> Option<&ffi::server_rec> {
        // SAFETY: NULL or live for the child's life (constructor contract).
        unsafe { self.raw.as_ref() }
    }

    /// The main server and every virtual host after it (`s->next`).
    pub fn and_virtual_hosts(self) -> impl Iterator<Item = Server> {
        std::iter::successors(Some(self).filter(|s| !s.raw.is_null()), |s| {
            // SAFETY: `next` is NULL or the next server record of the configuration.
            let next = unsafe { (*s.raw).next };
            (!next.is_null()).then_some(Server { raw: next })
        })
    }

    /// `Timeout`.
    pub fn timeout(&self) -> Duration {
        Duration::from_micros(self.rec().map_or(0, |s| s.timeout.max(0) as u64))
    }

    /// The record is a `<VirtualHost>`'s.
    pub fn is_virtual(&self) -> bool {
        self.rec().is_some_and(|s| s.is_virtual != 0)
    }

    /// This module's per-server configuration (merged for a virtual host).
    pub fn config(&self) -> ServerConfig {
        if self.raw.is_null() {
            return ServerConfig::default();
        }
        // SAFETY: the shim reads our slot of the server's module config vector: NULL or the
        // record create/merge_server_config allocated as a ServerConfig (module.rs).
        let p = unsafe { ffi::wst_srv_conf(self.raw.cast_mut()) } as *const ServerConfig;
        // SAFETY: as above; ServerConfig is Copy.
        unsafe { p.as_ref() }.copied().unwrap_or_default()
    }
}
