//! The tunnel, once the backend's 101 went to the client (docs/DESIGN.md §5). One core
//! ([`core`]) decides for every tunnel; two drivers do its I/O through one pump ([`pump`]): the
//! poll driver on the request thread ([`relay`]) and, when `ProxyWebsocketAsync` lets the
//! tunnel leave its thread (`handoff`), the child's runtime ([`detached`]). Each end is a raw
//! socket (plain TCP: nothing in httpd's filters transforms its bytes) or a connection whose
//! bytes pass through httpd's filters (TLS on either side, an HTTP/2 stream: [`filters`]).
//!
//! No `unsafe` here or below: the syscalls it needs are `crate::sys`'s, httpd's are `crate::httpd`'s.
#![forbid(unsafe_code)]

mod bulk;
#[cfg(test)]
mod conformance;
pub mod core;
pub mod detached;
mod end;
pub mod filters;
pub mod limits;
mod pump;
pub mod relay;
pub mod shutdown;
pub mod summary;

#[cfg(feature = "httpd")]
pub(crate) use crate::sys::{wait_backend, Waited};

#[cfg(feature = "httpd")]
mod ends;
#[cfg(feature = "httpd")]
mod filter_ends;
#[cfg(feature = "httpd")]
pub(crate) mod handoff;
#[cfg(feature = "httpd")]
mod upgraded;

pub use self::core::Core;
#[cfg(feature = "httpd")]
pub use ends::run;
#[cfg(feature = "httpd")]
pub use handoff::connection_suspended;
pub use limits::Ping;
#[cfg(feature = "httpd")]
pub use upgraded::Established;
