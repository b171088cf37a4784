//! mod_proxy_wstunnel-rs: a drop-in replacement for httpd's mod_proxy_wstunnel.
//!
//! Layout, from the bottom up:
//! - [`ffi`]: bindgen bindings and the C shim's helpers (the `-sys` layer);
//! - [`httpd`]: small safe wrappers named after the C concepts (pool, request, connection, brigade, log);
//! - pure logic, unit-tested without httpd: [`canon`], [`upgrade`], [`response`], [`config`], [`frames`], [`status`] (the board mod_status shows);
//! - [`handler`]: the request's path through mod_proxy's hooks;
//! - [`tunnel`]: the relay between client and backend;
//! - [`module`]: the module record and the `extern "C"` entry points (panics stop there).

//!
//! httpd and mod_proxy symbols only exist inside httpd, so the unit-test executable is built
//! without the modules that call them (`cfg(not(test))`); the pure ones are tested alone.
//! Without the default `httpd` feature the crate is only that pure core (an rlib that the
//! fuzz targets in `fuzz/` link, with no apxs or httpd headers needed).

pub mod canon;
pub mod config;
pub mod frames;
pub mod httpd;
pub mod response;
pub mod scheme;
pub mod status;
pub mod sys;
pub mod tunnel;
pub mod upgrade;

#[cfg(all(feature = "httpd", not(test)))]
pub mod ffi;
#[cfg(all(feature = "httpd", not(test)))]
pub mod handler;
#[cfg(all(feature = "httpd", not(test)))]
pub mod module;
