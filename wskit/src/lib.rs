//! Test kit for mod_proxy_wstunnel-rs: a real WebSocket backend with scripted behaviours
//! ([`backend`]), a private httpd per test ([`httpd`]), and raw HTTP helpers ([`raw`]).

pub mod backend;
pub mod httpd;
pub mod raw;

pub use backend::Backend;
pub use httpd::{Config, Httpd};
