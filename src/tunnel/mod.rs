//! The tunnel, once the backend's 101 went to the client. Two kinds of ends (docs/DESIGN.md §5):
//! raw ends (plain TCP sockets, nothing in httpd's filters transforms their bytes) are relayed
//! by [`relay`] on the sockets themselves; filtered ends (TLS on either side, HTTP/2 streams)
//! must keep passing through httpd's filters and are relayed by mod_proxy's filter-aware
//! tunnel ([`filtered`]). The request thread relays until the tunnel ends, unless `ProxyWebsocketAsync`
//! lets it move on to the child's runtime ([`detached`], via `handoff`): a raw tunnel, or under
//! the event MPM one whose client speaks TLS (its request suspended, its filters driven
//! without blocking).
//!
//! No `unsafe` here or below: the syscalls it needs are `crate::sys`'s, httpd's are `crate::httpd`'s.
#![forbid(unsafe_code)]

mod bulk;
#[cfg(test)]
mod conformance;
pub mod core;
pub mod detached;
pub mod limits;
pub mod polite;
mod pump;
pub mod relay;
pub mod shutdown;

#[cfg(all(feature = "httpd", not(test)))]
pub(crate) use crate::sys::{wait_backend, Waited};

#[cfg(all(feature = "httpd", not(test)))]
mod ends;
#[cfg(all(feature = "httpd", not(test)))]
mod filtered;
#[cfg(all(feature = "httpd", not(test)))]
mod handoff;

#[cfg(all(feature = "httpd", not(test)))]
pub use ends::run;
#[cfg(all(feature = "httpd", not(test)))]
pub use handoff::connection_suspended;
