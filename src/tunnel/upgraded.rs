//! An upgraded request as the tunnel takes it over: what the backend's 101 left to relay
//! (from the handler), and the request on its thread while it relays (for the hand-over).

use super::core::Core;
use super::limits::{Ping, Timeouts};
use super::relay;
use crate::frames::Frames;
use crate::httpd::proxy::Backend;
use crate::httpd::{Connection, Request};
use crate::scheme::Scheme;
use std::time::Duration;

/// What the backend's 101 left to relay: the backend connection and the tunnel's core.
pub struct Established<'a, 'r> {
    pub backend: &'a mut Backend<'r>,
    pub backconn: &'a Connection<'r>,
    pub scheme: Scheme,
    /// From [`Established::core`].
    pub core: Box<Core>,
}

impl Established<'_, '_> {
    /// The core of a tunnel that `backend` upgraded for `r`: `frames` where each direction's
    /// WebSocket frames stand, with the rules they must obey (client's, backend's; None: the
    /// 101 upgraded to another protocol), `surplus` the bytes the backend sent right behind
    /// its 101, `idle` the tunnel's `ProxyWebsocketIdleTimeout`, `ping` the module's Pings to
    /// the client. Made at the end of the handshake, so that building it deepens the request
    /// thread's stack there rather than under the relay, whose frames last as long as the
    /// tunnel.
    pub fn core(
        r: &Request,
        backend: &Backend,
        frames: Option<(Frames, Frames)>,
        surplus: &[u8],
        idle: Option<Duration>,
        ping: Option<Ping>,
    ) -> Box<Core> {
        // Writes may wait as long as httpd would let a blocking write wait on either side.
        let timeouts = Timeouts {
            ping,
            ..Timeouts::new(idle, backend.socket_timeout(), r.server().timeout())
        };
        relay::core(timeouts, frames, surplus)
    }
}

/// An upgraded request on its thread: the request, its two connections, and the backend
/// they go through.
pub(super) struct Upgraded<'a, 'r> {
    pub r: &'a Request<'r>,
    pub client: Connection<'r>,
    pub backend: &'a mut Backend<'r>,
    pub backconn: &'a Connection<'r>,
}
