//! Test kit for mod_proxy_wstunnel-rs: a real WebSocket backend with scripted behaviours
//! ([`backend`]), a private httpd per test ([`httpd`]), raw HTTP helpers ([`raw`]) and a
//! private PKI for TLS on both sides ([`tls`]), and other proxies as benchmark peers ([`peers`]).

pub mod backend;
pub mod cpus;
pub mod deflate;
pub mod h2ws;
pub mod hostile;
pub mod httpd;
pub mod peers;
pub mod raw;
pub mod sockets;
pub mod tls;

pub use backend::Backend;
pub use httpd::{Config, Httpd};
pub use tls::Pki;
