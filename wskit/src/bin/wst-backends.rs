//! The WebSocket backends for suites that are not written in Rust (the Apache::Test suite):
//! two ws:// echo backends, one wss:// echo backend, a private CA and certificates, and a
//! port where nothing listens. Prints `NAME=VALUE` lines (to export into httpd's
//! environment, where the configuration reads them as `${NAME}`), then serves until its
//! standard input closes, so it never outlives the process that started it.
//!
//! Usage: wst-backends DIR   (DIR receives the CA and the certificates)

use std::io::Read;
use wskit::{Backend, Pki};

fn main() {
    let dir = std::env::args().nth(1).expect("usage: wst-backends DIR");
    let pki = Pki::generate(std::path::Path::new(&dir));
    let one = Backend::start("one");
    let two = Backend::start("two");
    let tls = Backend::start_tls("tls", &pki.server);
    // Reserved (bound, not listening) until we exit, so no other process can take it.
    let dead = wskit::httpd::DeadPort::reserve();
    let vars = [
        ("WST_BACKEND", one.addr.to_string()),
        ("WST_BACKEND2", two.addr.to_string()),
        ("WST_BACKEND_PORT", one.port().to_string()),
        ("WST_BACKEND2_PORT", two.port().to_string()),
        ("WST_TLSBACKEND_PORT", tls.port().to_string()),
        ("WST_DEADPORT", dead.port.to_string()),
        ("WST_CA", pki.ca_file.display().to_string()),
        ("WST_SERVERCERT", pki.server.cert_file.display().to_string()),
        ("WST_SERVERKEY", pki.server.key_file.display().to_string()),
    ];
    for (k, v) in vars {
        println!("{k}={v}");
    }
    println!("READY");
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}
