//! Configuration: the per-directory and per-server records httpd stores for us, their
//! merges, and the parsing of directive arguments (pure, unit-tested).
#![forbid(unsafe_code)]

use std::time::Duration;

/// Per-directory configuration (server, vhost, `<Location>`, `<Directory>`, `<Proxy>`).
/// httpd keeps it in a pool and hands it back as `void *`; only Rust reads it. `None` is
/// "not set here", so that a merge can tell an inherited value from an explicit one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirConfig {
    /// `ProxyWebsocketFallbackToProxyHttp`.
    pub fallback_to_proxy_http: Option<bool>,
    /// `ProxyWebsocketUpgradeHttp`.
    pub upgrade_http: Option<bool>,
}

impl DirConfig {
    /// The innermost explicitly set value wins.
    pub fn merge(base: &DirConfig, add: &DirConfig) -> DirConfig {
        DirConfig {
            fallback_to_proxy_http: add.fallback_to_proxy_http.or(base.fallback_to_proxy_http),
            upgrade_http: add.upgrade_http.or(base.upgrade_http),
        }
    }

    /// Whether mod_proxy_http takes the upgrade (default On, as stock).
    pub fn fallback(&self) -> bool {
        self.fallback_to_proxy_http.unwrap_or(true)
    }

    /// Whether this module also tunnels the upgrade requests of mod_proxy_http's `http://`
    /// and `https://` workers (default Off, as stock: they are mod_proxy_http's).
    pub fn upgrade_http(&self) -> bool {
        self.upgrade_http.unwrap_or(false)
    }
}

/// Per-server configuration (server config, virtual host): each value `None` until a
/// directive sets it; a virtual host inherits every value it does not set itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerConfig {
    /// `ProxyWebsocketIdleTimeout`; zero means no idle limit.
    pub idle_timeout: Option<Duration>,
    /// `ProxyWebsocketAsync` (default Off).
    pub async_on: Option<bool>,
    /// `ProxyWebsocketAsyncDelay` (default 0).
    pub async_delay: Option<Duration>,
    /// `ProxyWebsocketAsyncMaxTunnels`, per child (default: from the open-files limit).
    pub async_max: Option<u64>,
    /// `ProxyWebsocketDrainTimeout` (server config only): how long tunnels live on once a
    /// graceful restart or stop begins; unset means GracefulShutdownTimeout.
    pub drain: Option<Duration>,
    /// `ProxyWebsocketAsyncThreads` (server config only): the relay threads of a child;
    /// unset means the CPUs httpd may run on shared out over its children ([`async_threads`]).
    pub async_threads: Option<u64>,
    /// `ProxyWebsocketPingInterval` (default 0: no Pings).
    pub ping_interval: Option<Duration>,
    /// `ProxyWebsocketPingTimeout` (default: the interval).
    pub ping_timeout: Option<Duration>,
    /// `ProxyWebsocketStrictFrames` (default Off).
    pub strict_frames: Option<bool>,
    /// `ProxyWebsocketMaxMessageSize` in bytes (default 0: unlimited).
    pub max_message: Option<u64>,
}

impl ServerConfig {
    pub fn merge(base: &ServerConfig, add: &ServerConfig) -> ServerConfig {
        ServerConfig {
            idle_timeout: add.idle_timeout.or(base.idle_timeout),
            async_on: add.async_on.or(base.async_on),
            async_delay: add.async_delay.or(base.async_delay),
            async_max: add.async_max.or(base.async_max),
            drain: add.drain.or(base.drain),
            async_threads: add.async_threads.or(base.async_threads),
            ping_interval: add.ping_interval.or(base.ping_interval),
            ping_timeout: add.ping_timeout.or(base.ping_timeout),
            strict_frames: add.strict_frames.or(base.strict_frames),
            max_message: add.max_message.or(base.max_message),
        }
    }

    pub fn strict_frames(&self) -> bool {
        self.strict_frames.unwrap_or(false)
    }

    /// The bound on a message, if there is one.
    pub fn max_message(&self) -> Option<u64> {
        self.max_message.filter(|n| *n > 0)
    }

    /// The idle limit, if there is one.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout.filter(|d| !d.is_zero())
    }

    pub fn async_on(&self) -> bool {
        self.async_on.unwrap_or(false)
    }

    pub fn async_delay(&self) -> Duration {
        self.async_delay.unwrap_or_default()
    }
}

/// The default per-child cap on asynchronous tunnels: each holds two descriptors, and the
/// child keeps room for everything else it opens (listeners, logs, synchronous requests).
pub fn default_async_max(open_files_limit: u64) -> u64 {
    (open_files_limit.saturating_sub(1024) / 2).clamp(64, 1_000_000)
}

/// Parses `ProxyWebsocketAsyncMaxTunnels`: a positive integer.
pub fn parse_count(arg: &str) -> Result<u64, String> {
    match arg.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("'{arg}' is not a positive number of tunnels")),
    }
}

/// The most relay threads a child may have: more than any machine's cores would only cost
/// memory and wake-ups.
pub const ASYNC_THREADS_MAX: u64 = 1024;

/// Parses `ProxyWebsocketAsyncThreads`: 1 to [`ASYNC_THREADS_MAX`].
pub fn parse_threads(arg: &str) -> Result<u64, String> {
    match arg.trim().parse::<u64>() {
        Ok(n) if (1..=ASYNC_THREADS_MAX).contains(&n) => Ok(n),
        _ => Err(format!("'{arg}' is not a number of threads from 1 to {ASYNC_THREADS_MAX}")),
    }
}

/// How many relay threads a child runs: `configured`, or the CPUs httpd may run on shared out
/// over the children it starts (`StartServers`, or the MPM's default: 3 for event and worker,
/// 5 for prefork). Asynchronous tunnels leave their request threads idle, so the MPM keeps
/// about that many children: together they relay on about one thread per CPU, with no more
/// threads than cores to fight over them (measured: two relay threads per child on two cores
/// with two children cost 14 to 21 % more CPU per message than one).
pub fn async_threads(
    configured: Option<u64>,
    cpus: usize,
    start_servers: Option<u32>,
    threaded: bool,
) -> usize {
    let children = start_servers.unwrap_or(if threaded { 3 } else { 5 }).max(1) as usize;
    configured.map_or(cpus.div_ceil(children), |n| n as usize).max(1)
}

/// Parses `ProxyWebsocketMaxMessageSize`: a number of bytes, optionally with a unit K, M or G
/// (powers of 1024); 0 means unlimited.
pub fn parse_bytes(arg: &str) -> Result<u64, String> {
    let arg = arg.trim();
    let digits_end = arg.find(|c: char| !c.is_ascii_digit()).unwrap_or(arg.len());
    let (num, unit) = arg.split_at(digits_end);
    let scale: u64 = match unit.to_ascii_uppercase().as_str() {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => {
            return Err(format!(
                "'{arg}' is not a size: a number of bytes, optionally with K, M or G"
            ))
        }
    };
    num.parse::<u64>().ok().and_then(|n| n.checked_mul(scale)).ok_or_else(|| {
        format!("'{arg}' is not a size: a number of bytes, optionally with K, M or G")
    })
}

/// Parses a duration as httpd's timeout directives write it: a non-negative integer with
/// an optional unit `ms`, `s`, `mi` (minutes) or `h`; no unit means seconds. Stricter than
/// `ap_timeout_parameter_parse`: trailing garbage is an error.
pub fn parse_duration(arg: &str) -> Result<Duration, String> {
    // Digits only, so never negative.
    parse_duration_us(arg).map(|us| Duration::from_micros(us as u64))
}

fn parse_duration_us(arg: &str) -> Result<i64, String> {
    let arg = arg.trim();
    let digits_end = arg.find(|c: char| !c.is_ascii_digit()).unwrap_or(arg.len());
    let (num, unit) = arg.split_at(digits_end);
    if num.is_empty() {
        return Err(format!("'{arg}' is not a duration: expected a non-negative number, optionally followed by ms, s, mi or h"));
    }
    let n: i64 = num.parse().map_err(|_| format!("'{arg}' is too large"))?;
    let scale: i64 = match unit.to_ascii_lowercase().as_str() {
        "" | "s" => 1_000_000,
        "ms" => 1_000,
        "mi" => 60_000_000,
        "h" => 3_600_000_000,
        _ => {
            return Err(format!(
                "'{arg}' has an unknown unit '{unit}': use ms, s, mi or h (no unit means seconds)"
            ))
        }
    };
    n.checked_mul(scale).ok_or_else(|| format!("'{arg}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_us("0"), Ok(0));
        assert_eq!(parse_duration_us("5"), Ok(5_000_000));
        assert_eq!(parse_duration_us("5s"), Ok(5_000_000));
        assert_eq!(parse_duration_us("250ms"), Ok(250_000));
        assert_eq!(parse_duration_us("2mi"), Ok(120_000_000));
        assert_eq!(parse_duration_us("1H"), Ok(3_600_000_000));
        for bad in ["", "5x", "5sx", "-1", "ms", "1.5", "99999999999999999999", "9999999999999h"] {
            assert!(parse_duration_us(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("16777216"), Ok(16 << 20));
        assert_eq!(parse_bytes("16M"), Ok(16 << 20));
        assert_eq!(parse_bytes("64k"), Ok(64 << 10));
        for bad in ["", "M", "1.5M", "-1", "16MB", "99999999999999999999", "99999999999G"] {
            assert!(parse_bytes(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn durations_as_directives_take_them() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn innermost_explicit_fallback_wins() {
        let unset = DirConfig::default();
        let off = DirConfig { fallback_to_proxy_http: Some(false), ..unset };
        let on = DirConfig { fallback_to_proxy_http: Some(true), ..unset };
        assert!(!DirConfig::merge(&off, &unset).fallback());
        assert!(DirConfig::merge(&off, &on).fallback());
        assert!(!DirConfig::merge(&on, &off).fallback());
        assert!(DirConfig::merge(&unset, &unset).fallback());
        assert_eq!(DirConfig::merge(&unset, &unset).fallback_to_proxy_http, None);
    }

    #[test]
    fn upgrade_http_is_off_unless_set_and_innermost_wins() {
        let unset = DirConfig::default();
        let on = DirConfig { upgrade_http: Some(true), ..unset };
        let off = DirConfig { upgrade_http: Some(false), ..unset };
        assert!(!unset.upgrade_http());
        assert!(DirConfig::merge(&on, &unset).upgrade_http());
        assert!(!DirConfig::merge(&on, &off).upgrade_http());
        // The two directives are independent.
        assert!(DirConfig::merge(&on, &DirConfig { fallback_to_proxy_http: Some(true), ..unset })
            .upgrade_http());
    }

    #[test]
    fn vhost_inherits_each_value_it_does_not_set() {
        let secs = Duration::from_secs;
        let base = ServerConfig {
            idle_timeout: Some(secs(5)),
            async_on: Some(true),
            ..Default::default()
        };
        let merged = ServerConfig::merge(&base, &ServerConfig::default());
        assert_eq!((merged.idle_timeout(), merged.async_on()), (Some(secs(5)), true));
        let add = ServerConfig {
            idle_timeout: Some(Duration::ZERO),
            async_delay: Some(secs(7)),
            ..Default::default()
        };
        let merged = ServerConfig::merge(&base, &add);
        assert_eq!(
            (merged.idle_timeout(), merged.async_on(), merged.async_delay()),
            (None, true, secs(7))
        );
        let off = ServerConfig { async_on: Some(false), ..Default::default() };
        assert!(!ServerConfig::merge(&base, &off).async_on());
        let unset = ServerConfig::default();
        assert_eq!(
            (unset.idle_timeout(), unset.async_on(), unset.async_delay(), unset.drain),
            (None, false, Duration::ZERO, None)
        );
    }

    #[test]
    fn async_caps() {
        assert_eq!(parse_count("500"), Ok(500));
        assert!(
            parse_count("0").is_err() && parse_count("-3").is_err() && parse_count("many").is_err()
        );
        assert_eq!(default_async_max(20_000), 9_488);
        assert_eq!(parse_threads("4"), Ok(4));
        assert!(parse_threads("0").is_err() && parse_threads("1025").is_err());
        assert!(parse_threads("two").is_err());
        assert_eq!(async_threads(None, 16, Some(2), true), 8, "Debian's StartServers 2");
        assert_eq!(async_threads(None, 2, Some(2), true), 1);
        assert_eq!(async_threads(None, 16, Some(1), true), 16);
        assert_eq!(async_threads(None, 16, None, true), 6, "event's default: 3 children");
        assert_eq!(async_threads(None, 16, None, false), 4, "prefork's default: 5 children");
        assert_eq!(async_threads(Some(3), 16, Some(2), true), 3);
        assert_eq!(async_threads(None, 0, Some(0), true), 1);
        assert_eq!(default_async_max(1_024), 64);
    }
}
