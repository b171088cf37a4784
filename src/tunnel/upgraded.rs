//! An upgraded request as the tunnel takes it over: what the backend's 101 left to relay
//! (from the handler), and the request on its thread while it relays (for the hand-over).

use super::limits::Ping;
use crate::frames::Frames;
use crate::httpd::proxy::Backend;
use crate::httpd::{Connection, Request};
use crate::scheme::Scheme;
use std::time::Duration;

/// What the backend's 101 left to relay: the backend connection and what came with it.
pub struct Established<'a, 'r> {
    pub backend: &'a mut Backend<'r>,
    pub backconn: &'a Connection<'r>,
    /// Bytes the backend sent right behind its 101.
    pub surplus: Vec<u8>,
    /// `ProxyWebsocketIdleTimeout`, if any.
    pub idle: Option<Duration>,
    pub scheme: Scheme,
    /// Where each direction's WebSocket frames stand, with the rules they must obey (client's,
    /// backend's); None: the 101 upgraded to another protocol.
    pub frames: Option<(Frames, Frames)>,
    /// The module's Pings to the client (WebSocket tunnels only).
    pub ping: Option<Ping>,
}

/// An upgraded request on its thread: the request, its two connections, and the backend
/// they go through.
pub(super) struct Upgraded<'a, 'r> {
    pub r: &'a Request<'r>,
    pub client: Connection<'r>,
    pub backend: &'a mut Backend<'r>,
    pub backconn: &'a Connection<'r>,
}
