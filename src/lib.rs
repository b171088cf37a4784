//! mod_proxy_wstunnel-rs: a drop-in replacement for httpd's mod_proxy_wstunnel.
//!
//! Layout, from the bottom up:
//! - [`ffi`]: bindgen bindings and the C shim's helpers (the `-sys` layer);
//! - [`httpd`]: small safe wrappers named after the C concepts (pool, request, connection, brigade, log);
//! - pure logic, unit-tested without httpd: [`canon`], [`upgrade`], [`response`], [`config`], [`frames`], [`status`] (the board mod_status shows);
//! - [`handler`]: the request's path through mod_proxy's hooks;
//! - [`tunnel`]: the relay between client and backend; [`child`]: what a child process keeps
//!   for its tunnels, in one object, and when each part exists;
//! - [`module`]: the module record and the `extern "C"` entry points (panics stop there).

//!
//! httpd and mod_proxy symbols only exist inside httpd. The unit-test executable compiles
//! every module all the same and links, because the module's entry points are exported only
//! outside tests (`cfg_attr(not(test), no_mangle)` in `module.rs`): nothing a unit test runs
//! reaches httpd, so the linker drops every call into it.
//! Without the default `httpd` feature the crate is only that pure core (an rlib that the
//! fuzz targets in `fuzz/` link, with no apxs or httpd headers needed).

pub mod canon;
pub mod child;
pub mod config;
pub mod frame_rules;
pub mod frames;
pub mod httpd;
pub mod response;
pub mod scheme;
pub mod status;
pub mod sys;
pub mod tunnel;
pub mod upgrade;

#[cfg(feature = "httpd")]
pub mod ffi;
#[cfg(feature = "httpd")]
pub mod handler;
#[cfg(feature = "httpd")]
pub mod module;
