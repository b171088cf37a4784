//! Configuration: the per-directory and per-server records httpd stores for us, their
//! merges, and the parsing of directive arguments (pure, unit-tested).

/// Per-directory configuration (server, vhost, `<Location>`, `<Directory>`, `<Proxy>`).
/// Lives in an APR pool; `repr(C)` because httpd hands it back to us as `void *`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DirConfig {
    /// `ProxyWebsocketFallbackToProxyHttp`: 1 = On (default), 0 = Off.
    pub fallback_to_proxy_http: i32,
    pub fallback_set: i32,
}

impl Default for DirConfig {
    fn default() -> Self {
        DirConfig { fallback_to_proxy_http: 1, fallback_set: 0 }
    }
}

impl DirConfig {
    /// The innermost explicitly set value wins.
    pub fn merge(base: &DirConfig, add: &DirConfig) -> DirConfig {
        DirConfig {
            fallback_to_proxy_http: if add.fallback_set != 0 { add.fallback_to_proxy_http } else { base.fallback_to_proxy_http },
            fallback_set: (base.fallback_set != 0 || add.fallback_set != 0) as i32,
        }
    }
}

/// Per-server configuration (server config, virtual host). Each value has a `_set` flag:
/// a virtual host inherits every value it does not set itself.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerConfig {
    /// `ProxyWebsocketIdleTimeout` in microseconds; 0 = no idle timeout.
    pub idle_timeout_us: i64,
    pub idle_timeout_set: i32,
    /// `ProxyWebsocketAsync`: 1 = On; default Off.
    pub async_on: i32,
    pub async_set: i32,
    /// `ProxyWebsocketAsyncDelay` in microseconds; default 0.
    pub async_delay_us: i64,
    pub async_delay_set: i32,
    /// `ProxyWebsocketAsyncMaxTunnels`: per child; 0 = derived from the open-files limit.
    pub async_max: i64,
    pub async_max_set: i32,
    /// `ProxyWebsocketDrainTimeout` in microseconds (server config only): how long tunnels
    /// live on once a graceful restart or stop begins; unset = GracefulShutdownTimeout.
    pub drain_us: i64,
    pub drain_set: i32,
}

impl ServerConfig {
    pub fn merge(base: &ServerConfig, add: &ServerConfig) -> ServerConfig {
        let pick = |set: i32| if set != 0 { add } else { base };
        let (idle, asy, delay, max) = (pick(add.idle_timeout_set), pick(add.async_set), pick(add.async_delay_set), pick(add.async_max_set));
        let drain = pick(add.drain_set);
        ServerConfig {
            idle_timeout_us: idle.idle_timeout_us,
            idle_timeout_set: idle.idle_timeout_set,
            async_on: asy.async_on,
            async_set: asy.async_set,
            async_delay_us: delay.async_delay_us,
            async_delay_set: delay.async_delay_set,
            async_max: max.async_max,
            async_max_set: max.async_max_set,
            drain_us: drain.drain_us,
            drain_set: drain.drain_set,
        }
    }
}

/// The default per-child cap on asynchronous tunnels: each holds two descriptors, and the
/// child keeps room for everything else it opens (listeners, logs, synchronous requests).
pub fn default_async_max(open_files_limit: u64) -> i64 {
    (open_files_limit.saturating_sub(1024) / 2).clamp(64, 1_000_000) as i64
}

/// Parses `ProxyWebsocketAsyncMaxTunnels`: a positive integer.
pub fn parse_count(arg: &str) -> Result<i64, String> {
    match arg.trim().parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("'{arg}' is not a positive number of tunnels")),
    }
}

/// Parses a duration as httpd's timeout directives write it: a non-negative integer with
/// an optional unit `ms`, `s`, `mi` (minutes) or `h`; no unit means seconds. Returns
/// microseconds. Stricter than `ap_timeout_parameter_parse`: trailing garbage is an error.
pub fn parse_duration_us(arg: &str) -> Result<i64, String> {
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
        _ => return Err(format!("'{arg}' has an unknown unit '{unit}': use ms, s, mi or h (no unit means seconds)")),
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
    fn innermost_explicit_fallback_wins() {
        let unset = DirConfig::default();
        let off = DirConfig { fallback_to_proxy_http: 0, fallback_set: 1 };
        let on = DirConfig { fallback_to_proxy_http: 1, fallback_set: 1 };
        assert_eq!(DirConfig::merge(&off, &unset).fallback_to_proxy_http, 0);
        assert_eq!(DirConfig::merge(&off, &on).fallback_to_proxy_http, 1);
        assert_eq!(DirConfig::merge(&on, &off).fallback_to_proxy_http, 0);
        assert_eq!(DirConfig::merge(&unset, &unset).fallback_to_proxy_http, 1);
    }

    #[test]
    fn vhost_inherits_each_value_it_does_not_set() {
        let base = ServerConfig { idle_timeout_us: 5, idle_timeout_set: 1, async_on: 1, async_set: 1, ..Default::default() };
        let merged = ServerConfig::merge(&base, &ServerConfig::default());
        assert_eq!((merged.idle_timeout_us, merged.async_on), (5, 1));
        let add = ServerConfig { idle_timeout_us: 0, idle_timeout_set: 1, async_delay_us: 7, async_delay_set: 1, ..Default::default() };
        let merged = ServerConfig::merge(&base, &add);
        assert_eq!((merged.idle_timeout_us, merged.async_on, merged.async_delay_us), (0, 1, 7));
        let off = ServerConfig { async_on: 0, async_set: 1, ..Default::default() };
        assert_eq!(ServerConfig::merge(&base, &off).async_on, 0);
    }

    #[test]
    fn async_caps() {
        assert_eq!(parse_count("500"), Ok(500));
        assert!(parse_count("0").is_err() && parse_count("-3").is_err() && parse_count("many").is_err());
        assert_eq!(default_async_max(20_000), 9_488);
        assert_eq!(default_async_max(1_024), 64);
    }
}
