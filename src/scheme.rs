//! The backend schemes this module tunnels to: its own `ws://` and `wss://`, and, under
//! `ProxyWebsocketUpgradeHttp On`, the upgrade requests of mod_proxy_http's `http://` and
//! `https://` workers.
#![forbid(unsafe_code)]

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Ws,
    Wss,
    Http,
    Https,
}

impl Scheme {
    /// Recognises `ws:`, `wss:`, `http:`, `https:` (any case) at the start of `url`; returns
    /// the rest after the colon.
    pub fn parse(url: &[u8]) -> Option<(Scheme, &[u8])> {
        let colon = url.iter().take(6).position(|&b| b == b':')?;
        let scheme = match url[..colon].to_ascii_lowercase().as_slice() {
            b"ws" => Scheme::Ws,
            b"wss" => Scheme::Wss,
            b"http" => Scheme::Http,
            b"https" => Scheme::Https,
            _ => return None,
        };
        Some((scheme, &url[colon + 1..]))
    }

    /// `ws://` and `wss://`: this module's own schemes, which it canonicalises and for which
    /// `ProxyWebsocketFallbackToProxyHttp` decides. The others are mod_proxy_http's.
    pub fn is_websocket(self) -> bool {
        matches!(self, Scheme::Ws | Scheme::Wss)
    }

    /// The backend speaks TLS (through mod_ssl's proxy engine).
    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Wss | Scheme::Https)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// The name mod_proxy's connection functions log with.
    pub fn proxy_function(self) -> &'static std::ffi::CStr {
        match self {
            Scheme::Ws => c"WS",
            Scheme::Wss => c"WSS",
            Scheme::Http => c"HTTP",
            Scheme::Https => c"HTTPS",
        }
    }

    /// ws uses http's port, wss https's.
    pub fn default_port(self) -> u16 {
        if self.is_tls() {
            443
        } else {
            80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_case_insensitive() {
        assert_eq!(Scheme::parse(b"WS://h/"), Some((Scheme::Ws, &b"//h/"[..])));
        assert_eq!(Scheme::parse(b"wSs://h/"), Some((Scheme::Wss, &b"//h/"[..])));
        assert_eq!(Scheme::parse(b"HTTP://h/"), Some((Scheme::Http, &b"//h/"[..])));
        assert_eq!(Scheme::parse(b"https:"), Some((Scheme::Https, &b""[..])));
        for other in [&b"ws"[..], b"wsx://", b"balancer://b/", b"h2c://h/", b"", b":", b"httpss://"]
        {
            assert_eq!(Scheme::parse(other), None, "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn only_ws_and_wss_are_ours_and_the_s_means_tls() {
        assert!(Scheme::Ws.is_websocket() && Scheme::Wss.is_websocket());
        assert!(!Scheme::Http.is_websocket() && !Scheme::Https.is_websocket());
        assert!(
            Scheme::Wss.is_tls()
                && Scheme::Https.is_tls()
                && !Scheme::Ws.is_tls()
                && !Scheme::Http.is_tls()
        );
        assert_eq!((Scheme::Ws.default_port(), Scheme::Https.default_port()), (80, 443));
    }
}
