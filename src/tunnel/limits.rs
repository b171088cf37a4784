//! Which time limits end a tunnel, decided once for every kind of relay (the poll relay on the
//! request thread and the asynchronous one alike): `ProxyWebsocketIdleTimeout` (no byte either
//! way for that long) and the write stall (bytes waiting to be written to a side that takes
//! none for as long as httpd would let a blocking write wait on either connection).

use std::time::Duration;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    pub idle: Option<Duration>,
    pub write_stall: Option<Duration>,
}

impl Timeouts {
    /// `backend_us` is the backend socket's timeout (the worker's `timeout=`, `ProxyTimeout` or
    /// `Timeout`), `server_us` the server's `Timeout`, both in microseconds (0 or less: none).
    pub fn new(idle: Option<Duration>, backend_us: i64, server_us: i64) -> Timeouts {
        let stall = backend_us.max(server_us);
        Timeouts { idle, write_stall: (stall > 0).then(|| Duration::from_micros(stall as u64)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_write_stall_is_the_longer_of_both_timeouts() {
        let t = Timeouts::new(None, 3_000_000, 300_000_000);
        assert_eq!(t.write_stall, Some(Duration::from_secs(300)));
        assert_eq!(Timeouts::new(None, 5_000_000, 0).write_stall, Some(Duration::from_secs(5)));
        assert_eq!(Timeouts::new(Some(Duration::from_secs(1)), 0, 0), Timeouts { idle: Some(Duration::from_secs(1)), write_stall: None });
    }
}
