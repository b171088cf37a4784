//! Which time limits end a tunnel, decided once for every kind of relay (the poll relay on the
//! request thread and the asynchronous one alike): `ProxyWebsocketIdleTimeout` (no byte either
//! way for that long) and the write stall (bytes waiting to be written to a side that takes
//! none for as long as httpd would let a blocking write wait on either connection). Also how
//! many wss:// backend connections suspended tunnels may hold.

use std::time::Duration;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    pub idle: Option<Duration>,
    pub write_stall: Option<Duration>,
    /// The module's Pings to a WebSocket client (`ProxyWebsocketPingInterval`).
    pub ping: Option<Ping>,
}

/// A Ping to the client once it sent nothing for `every`; no byte from it `wait` after one
/// ends the tunnel (`ProxyWebsocketPingTimeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping {
    pub every: Duration,
    pub wait: Duration,
}

impl Ping {
    /// From the directives: None when the interval is unset or zero; the timeout defaults to
    /// the interval.
    pub fn new(interval: Option<Duration>, timeout: Option<Duration>) -> Option<Ping> {
        let every = interval.filter(|d| !d.is_zero())?;
        Some(Ping { every, wait: timeout.filter(|d| !d.is_zero()).unwrap_or(every) })
    }
}

impl Timeouts {
    /// `backend` is the backend socket's timeout (the worker's `timeout=`, `ProxyTimeout` or
    /// `Timeout`), `server` the server's `Timeout` (zero: none).
    pub fn new(idle: Option<Duration>, backend: Option<Duration>, server: Duration) -> Timeouts {
        let stall = backend.unwrap_or_default().max(server);
        Timeouts { idle, write_stall: (!stall.is_zero()).then_some(stall), ping: None }
    }
}

/// Whether a suspended tunnel may hold one more of a worker's connections past its request
/// thread. mod_proxy's pool of them (per child, `max=`, ThreadsPerChild by default) must keep
/// one for each request thread besides the `held` ones, or a request would wait in mod_proxy
/// for a connection that only a tunnel's end gives back.
pub fn may_hold_backend(held: usize, threads: usize, max: usize) -> bool {
    held + 1 + threads <= max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_backends_leave_one_connection_per_request_thread() {
        assert!(!may_hold_backend(0, 25, 25), "the default max= (ThreadsPerChild) leaves no room");
        assert!(may_hold_backend(0, 25, 26));
        assert!(!may_hold_backend(1, 25, 26));
        assert!(may_hold_backend(974, 25, 1000));
        assert!(!may_hold_backend(975, 25, 1000));
    }

    #[test]
    fn the_write_stall_is_the_longer_of_both_timeouts() {
        let s = Duration::from_secs;
        assert_eq!(Timeouts::new(None, Some(s(3)), s(300)).write_stall, Some(s(300)));
        assert_eq!(Timeouts::new(None, Some(s(5)), Duration::ZERO).write_stall, Some(s(5)));
        assert_eq!(
            Timeouts::new(Some(s(1)), None, Duration::ZERO),
            Timeouts { idle: Some(s(1)), write_stall: None, ping: None }
        );
    }
}
