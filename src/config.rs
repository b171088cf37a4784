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

/// Per-server configuration (server config, virtual host).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerConfig {
    /// `ProxyWebsocketIdleTimeout` in microseconds; 0 = no idle timeout.
    pub idle_timeout_us: i64,
    pub idle_timeout_set: i32,
}

impl ServerConfig {
    /// A virtual host inherits what it does not set itself.
    pub fn merge(base: &ServerConfig, add: &ServerConfig) -> ServerConfig {
        if add.idle_timeout_set != 0 {
            *add
        } else {
            *base
        }
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
    fn vhost_inherits_idle_timeout() {
        let base = ServerConfig { idle_timeout_us: 5, idle_timeout_set: 1 };
        assert_eq!(ServerConfig::merge(&base, &ServerConfig::default()).idle_timeout_us, 5);
        let add = ServerConfig { idle_timeout_us: 0, idle_timeout_set: 1 };
        assert_eq!(ServerConfig::merge(&base, &add).idle_timeout_us, 0);
    }
}
