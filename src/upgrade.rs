//! Upgrade policy: which client `Upgrade` requests a worker's `upgrade=` parameter allows,
//! what we ask the backend for, and whether the backend's `101` answers that.
//!
//! mod_proxy parses `upgrade=` into `worker->s->upgrade` (`ANY` is stored as `*`). We follow
//! the manual (stock 2.4 code does not match it for NONE and ANY):
//! - empty: the client must ask for `WebSocket` (any case);
//! - a name or comma list: the client must ask for one of them;
//! - `*` (ANY): any protocol the client asks for, except those that are smuggling routes
//!   (`h2c`, `TLS/x`), which are never tunnelled unless a worker names them;
//! - `NONE`: no check of the client's header; the backend is always asked for `WebSocket`.
#![forbid(unsafe_code)]

/// Protocols that turn a proxied connection into something the proxy cannot police.
const NEVER_UNDER_ANY: &[&str] = &["h2c", "h2"];

/// What the worker's `upgrade=` parameter says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// `upgrade=` unset: WebSocket only.
    Default,
    /// `upgrade=NONE`: no check, always WebSocket towards the backend.
    None,
    /// `upgrade=ANY` (stored by mod_proxy as `*`).
    Any,
    /// `upgrade=a,b,...`: one of these.
    List(Vec<String>),
}

impl Policy {
    /// Interprets `worker->s->upgrade` as stored by mod_proxy.
    pub fn from_worker(stored: &str) -> Policy {
        let s = stored.trim();
        if s.is_empty() {
            Policy::Default
        } else if s == "*" || s.eq_ignore_ascii_case("ANY") {
            Policy::Any
        } else if s.eq_ignore_ascii_case("NONE") {
            Policy::None
        } else {
            Policy::List(tokens(s).map(str::to_string).collect())
        }
    }

    /// The `Upgrade` value advertised in a 426 answer.
    pub fn advertised(&self) -> String {
        match self {
            Policy::List(l) => l.join(", "),
            _ => "WebSocket".to_string(),
        }
    }
}

/// The outcome of checking a client's request against the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward the upgrade: the exact `Upgrade` value to send to the backend.
    Forward(String),
    /// Refuse with 426; the reason is for the log.
    Refuse(&'static str),
}

/// Comma-separated tokens of a header value, trimmed, empty ones skipped.
pub fn tokens(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|t| !t.is_empty())
}

/// True if the comma-separated header value contains `token` (case-insensitive).
pub fn has_token(v: &str, token: &str) -> bool {
    tokens(v).any(|t| t.eq_ignore_ascii_case(token))
}

fn protocol_name(token: &str) -> &str {
    // "websocket/13" style versions compare by name.
    token.split('/').next().unwrap_or(token)
}

/// Whether an `Upgrade` token names WebSocket (any case, with or without a version): the one
/// rule for "is this WebSocket", for the client's offer and the backend's 101 alike.
pub fn is_websocket(token: &str) -> bool {
    protocol_name(token.trim()).eq_ignore_ascii_case("websocket")
}

/// Decides what to do with the client's `Upgrade` header (None if absent).
/// `http10` is true for HTTP/1.0 requests, which cannot upgrade (RFC 9110 §7.8).
pub fn decide(policy: &Policy, client: Option<&str>, http10: bool) -> Decision {
    if http10 {
        return Decision::Refuse("HTTP/1.0 requests cannot upgrade");
    }
    if *policy == Policy::None {
        return Decision::Forward("WebSocket".to_string());
    }
    let Some(client) = client.filter(|c| !c.trim().is_empty()) else {
        return Decision::Refuse("no Upgrade header");
    };
    let chosen: Vec<&str> = match policy {
        Policy::Default => tokens(client).filter(|t| is_websocket(t)).collect(),
        Policy::List(allowed) => tokens(client)
            .filter(|t| {
                allowed
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(t) || a.eq_ignore_ascii_case(protocol_name(t)))
            })
            .collect(),
        Policy::Any => tokens(client)
            .filter(|t| {
                let name = protocol_name(t);
                !NEVER_UNDER_ANY.iter().any(|n| n.eq_ignore_ascii_case(name))
                    && !name.eq_ignore_ascii_case("TLS")
            })
            .collect(),
        Policy::None => unreachable!("handled above"),
    };
    if chosen.is_empty() {
        return Decision::Refuse("Upgrade header names no protocol allowed for this worker");
    }
    Decision::Forward(chosen.join(", "))
}

/// Whether an upgrade request to an `http://` or `https://` worker is one this module takes
/// from mod_proxy_http (`ProxyWebsocketUpgradeHttp On`): exactly those mod_proxy_http itself
/// would tunnel (`ap_proxy_worker_can_upgrade`: the worker's `upgrade=` is `ANY` or names the
/// client's whole `Upgrade` value), naming one protocol (mod_proxy_http wants the 101 to
/// repeat the whole value, which a backend switching to one of several never does), that
/// this module's own rules forward unchanged (so never `h2c` under ANY, never HTTP/1.0), with
/// no request body (a tunnel has no room for one).
/// Ok is the value to offer the backend; Err says why mod_proxy_http keeps the request.
pub fn claim_http(
    policy: &Policy,
    client: Option<&str>,
    http10: bool,
    has_body: bool,
) -> Result<String, &'static str> {
    let client = client.map(str::trim).filter(|c| !c.is_empty()).ok_or("no Upgrade header")?;
    let tunnelled_by_proxy_http = match policy {
        Policy::Any => true,
        Policy::List(allowed) => allowed.iter().any(|a| a.eq_ignore_ascii_case(client)),
        Policy::Default | Policy::None => return Err("the worker has no upgrade= protocol"),
    };
    if !tunnelled_by_proxy_http {
        return Err("the worker's upgrade= does not name the Upgrade header's value");
    }
    if tokens(client).nth(1).is_some() {
        return Err("the Upgrade header names more than one protocol");
    }
    if has_body {
        return Err("the request has a body");
    }
    match decide(policy, Some(client), http10) {
        Decision::Forward(offer) if offer == client => Ok(offer),
        Decision::Forward(_) => {
            Err("the Upgrade header names a protocol never tunnelled under upgrade=ANY")
        }
        Decision::Refuse(why) => Err(why),
    }
}

/// Checks a backend's `101` against what we asked for: its `Upgrade` must name exactly one
/// of the protocols we offered (case-insensitive).
pub fn accepts_101(offered: &str, answered: Option<&str>) -> bool {
    let Some(answered) = answered else { return false };
    let mut it = tokens(answered);
    let (Some(proto), None) = (it.next(), it.next()) else { return false };
    tokens(offered).any(|o| o.eq_ignore_ascii_case(proto))
}

/// The lines that end our request head to the backend: the protocol offered, the hop-by-hop
/// `Connection: Upgrade` mod_proxy purged from the client's, and the blank line; in the
/// stock module's order for ws:// and wss://, in mod_proxy_http's for its workers.
pub fn request_lines(offer: &str, as_proxy_http: bool) -> String {
    if as_proxy_http {
        format!("Connection: Upgrade\r\nUpgrade: {offer}\r\n\r\n")
    } else {
        format!("Upgrade: {offer}\r\nConnection: Upgrade\r\n\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(s: &str) -> Decision {
        Decision::Forward(s.to_string())
    }

    #[test]
    fn websocket_is_named_with_or_without_a_version() {
        for t in ["websocket", "WebSocket", " websocket/13 ", "WEBSOCKET/8"] {
            assert!(is_websocket(t), "{t}");
        }
        for t in ["h2c", "websockets", "web socket", "", "/websocket"] {
            assert!(!is_websocket(t), "{t}");
        }
        // The client's offer and the backend's 101 follow the same rule.
        assert_eq!(decide(&Policy::Default, Some("websocket/13"), false), fwd("websocket/13"));
    }

    #[test]
    fn parses_worker_values_as_mod_proxy_stores_them() {
        assert_eq!(Policy::from_worker(""), Policy::Default);
        assert_eq!(Policy::from_worker("*"), Policy::Any);
        assert_eq!(Policy::from_worker("NONE"), Policy::None);
        assert_eq!(Policy::from_worker("none"), Policy::None);
        assert_eq!(Policy::from_worker("a, b"), Policy::List(vec!["a".into(), "b".into()]));
    }

    #[test]
    fn default_wants_websocket_in_any_case_and_keeps_client_spelling() {
        assert_eq!(decide(&Policy::Default, Some("websocket"), false), fwd("websocket"));
        assert_eq!(decide(&Policy::Default, Some("WebSocket"), false), fwd("WebSocket"));
        assert_eq!(decide(&Policy::Default, Some("foo, websocket"), false), fwd("websocket"));
        assert!(matches!(decide(&Policy::Default, Some("h2c"), false), Decision::Refuse(_)));
        assert!(matches!(decide(&Policy::Default, None, false), Decision::Refuse(_)));
        assert!(matches!(decide(&Policy::Default, Some("  "), false), Decision::Refuse(_)));
        assert!(matches!(decide(&Policy::Default, Some("websocket"), true), Decision::Refuse(_)));
    }

    #[test]
    fn list_matches_one_of_its_tokens() {
        let p = Policy::from_worker("foo,bar");
        assert_eq!(decide(&p, Some("BAR"), false), fwd("BAR"));
        assert!(matches!(decide(&p, Some("websocket"), false), Decision::Refuse(_)));
        assert_eq!(p.advertised(), "foo, bar");
    }

    #[test]
    fn any_forwards_the_client_choice_but_never_h2c() {
        assert_eq!(decide(&Policy::Any, Some("chat"), false), fwd("chat"));
        assert!(matches!(decide(&Policy::Any, Some("h2c"), false), Decision::Refuse(_)));
        assert!(matches!(decide(&Policy::Any, Some("H2C"), false), Decision::Refuse(_)));
        assert!(matches!(decide(&Policy::Any, Some("TLS/1.2"), false), Decision::Refuse(_)));
        assert_eq!(decide(&Policy::Any, Some("h2c, websocket"), false), fwd("websocket"));
        assert!(matches!(decide(&Policy::Any, None, false), Decision::Refuse(_)));
        // h2c only when a worker names it explicitly
        assert_eq!(decide(&Policy::from_worker("h2c"), Some("h2c"), false), fwd("h2c"));
    }

    #[test]
    fn none_skips_the_check_and_asks_for_websocket() {
        assert_eq!(decide(&Policy::None, None, false), fwd("WebSocket"));
        assert_eq!(decide(&Policy::None, Some("h2c"), false), fwd("WebSocket"));
    }

    #[test]
    fn the_101_must_name_one_offered_protocol() {
        assert!(accepts_101("websocket", Some("WebSocket")));
        assert!(accepts_101("foo, websocket", Some("websocket")));
        assert!(!accepts_101("websocket", Some("h2c")));
        assert!(!accepts_101("websocket", None));
        assert!(!accepts_101("websocket", Some("websocket, h2c")));
        assert!(!accepts_101("websocket", Some("")));
    }

    #[test]
    fn token_helpers() {
        assert!(has_token("keep-alive, Upgrade", "upgrade"));
        assert!(!has_token("keep-alive", "upgrade"));
    }

    #[test]
    fn the_head_ends_with_our_upgrade_lines() {
        assert_eq!(
            request_lines("websocket", false),
            "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        );
        assert_eq!(
            request_lines("websocket", true),
            "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        );
    }

    #[test]
    fn http_workers_give_up_what_mod_proxy_http_would_tunnel_and_nothing_else() {
        let ws = Policy::from_worker("websocket");
        assert_eq!(claim_http(&ws, Some("WebSocket"), false, false), Ok("WebSocket".into()));
        assert_eq!(
            claim_http(&Policy::from_worker("foo, websocket"), Some("websocket"), false, false),
            Ok("websocket".into())
        );
        assert_eq!(
            claim_http(&Policy::Any, Some("websocket"), false, false),
            Ok("websocket".into())
        );
        assert_eq!(claim_http(&Policy::Any, Some("chat"), false, false), Ok("chat".into()));
        // mod_proxy_http would not tunnel these: its plain HTTP path keeps them.
        for (p, c) in [
            (&Policy::Default, Some("websocket")),
            (&Policy::None, Some("websocket")),
            (&ws, None),
            (&ws, Some(" ")),
        ] {
            assert!(claim_http(p, c, false, false).is_err(), "{p:?} {c:?}");
        }
        assert!(claim_http(&ws, Some("websocket, foo"), false, false).is_err());
        assert!(claim_http(&ws, Some("websocket/13"), false, false).is_err());
        // Ours would refuse or rewrite these: mod_proxy_http keeps its own behaviour.
        assert!(claim_http(&Policy::Any, Some("h2c"), false, false).is_err());
        assert!(claim_http(&Policy::Any, Some("websocket, h2c"), false, false).is_err());
        assert!(claim_http(&Policy::Any, Some("websocket, foo"), false, false).is_err());
        assert!(claim_http(&ws, Some("websocket"), true, false).is_err());
        assert!(claim_http(&ws, Some("websocket"), false, true).is_err());
    }
}
