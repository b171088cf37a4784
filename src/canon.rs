//! Canonicalisation of `ws://` and `wss://` URLs into `r->filename`, as the stock module does:
//! `proxy:ws://host[:port]/path[?query]`, default ports omitted, IPv6 literals bracketed,
//! path encoded by mod_proxy's own encoder, control characters refused (CVE-2023-25690).
//!
//! The netloc parser and the path encoder are mod_proxy's exported functions, so our result is
//! byte-identical to stock by construction; the decisions around them are plain Rust here.
#![forbid(unsafe_code)]

#[cfg(feature = "httpd")]
use crate::httpd::{proxy, Request};

use crate::scheme::Scheme;

/// True if `s` holds a control character, a space or DEL: what `ap_scan_vchar_obstext`
/// stops at (VCHAR and obs-text pass).
pub fn has_ctl_or_space(s: &[u8]) -> bool {
    s.iter().any(|&b| b <= 0x20 || b == 0x7f)
}

/// Composes `proxy:scheme://host[:port]/path[?query]`.
pub fn filename(
    scheme: Scheme,
    host: &[u8],
    port: u16,
    path: &[u8],
    query: Option<&[u8]>,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(16 + host.len() + path.len() + query.map_or(0, |q| q.len() + 1));
    f.extend_from_slice(b"proxy:");
    f.extend_from_slice(scheme.as_str().as_bytes());
    f.extend_from_slice(b"://");
    if host.contains(&b':') {
        f.push(b'[');
        f.extend_from_slice(host);
        f.push(b']');
    } else {
        f.extend_from_slice(host);
    }
    if port != scheme.default_port() {
        f.extend_from_slice(format!(":{port}").as_bytes());
    }
    f.push(b'/');
    f.extend_from_slice(path);
    if let Some(q) = query {
        f.push(b'?');
        f.extend_from_slice(q);
    }
    f
}

/// Why a URL could not be canonicalised.
#[derive(Debug, PartialEq, Eq)]
pub enum CanonError {
    /// Bad netloc or bad %-escape: 400.
    BadRequest(String),
    /// Control characters or spaces would reach the backend: 403.
    Forbidden(&'static str),
}

/// How the path is taken, from mod_proxy's notes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathMode {
    /// `nocanon` / `[NE]`: raw, the query is already part of it.
    Raw,
    /// `mapping=encoded`: path as is, query from `r->args`.
    NoEncode,
    /// Encoded by mod_proxy's encoder; `keep_encoded_slashes` for `AllowEncodedSlashes NoDecode`.
    Encode { keep_encoded_slashes: bool },
}

/// Checks the control-character rules on the path and query that will be forwarded.
pub fn check_forwarded(
    path_is_raw: bool,
    path: &[u8],
    query: Option<&[u8]>,
) -> Result<(), CanonError> {
    if path_is_raw && has_ctl_or_space(path) {
        return Err(CanonError::Forbidden("path"));
    }
    if query.is_some_and(has_ctl_or_space) {
        return Err(CanonError::Forbidden("query string"));
    }
    Ok(())
}

/// Canonicalises `url` (the part after `proxy:`) for request `r`. Returns `r->filename`.
#[cfg(feature = "httpd")]
pub fn canonicalise(
    r: &Request,
    scheme: Scheme,
    after_scheme: &[u8],
) -> Result<Vec<u8>, CanonError> {
    let proxy::Netloc { host, port, rest } =
        proxy::canon_netloc(r.pool(), after_scheme, scheme.default_port())
            .map_err(CanonError::BadRequest)?;
    let mode = if r.has_note("proxy-nocanon") {
        PathMode::Raw
    } else if r.has_note("proxy-noencode") {
        PathMode::NoEncode
    } else {
        PathMode::Encode { keep_encoded_slashes: r.encoded_slashes_nodecode() }
    };
    let (path, query): (Vec<u8>, Option<&[u8]>) = match mode {
        PathMode::Raw => (rest, None),
        PathMode::NoEncode => (rest, r.args()),
        PathMode::Encode { keep_encoded_slashes } => {
            let enc = proxy::canonenc_path(r, &rest, keep_encoded_slashes)
                .ok_or_else(|| CanonError::BadRequest("bad %-escape in path".into()))?;
            (enc, r.args())
        }
    };
    check_forwarded(matches!(mode, PathMode::Raw | PathMode::NoEncode), &path, query)?;
    Ok(filename(scheme, &host, port, &path, query))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_like_stock() {
        assert_eq!(filename(Scheme::Ws, b"h", 80, b"a/b", None), b"proxy:ws://h/a/b");
        assert_eq!(filename(Scheme::Ws, b"h", 443, b"", Some(b"x=1")), b"proxy:ws://h:443/?x=1");
        assert_eq!(filename(Scheme::Wss, b"h", 443, b"p", None), b"proxy:wss://h/p");
        assert_eq!(filename(Scheme::Ws, b"::1", 8080, b"p", None), b"proxy:ws://[::1]:8080/p");
    }

    #[test]
    fn control_characters_are_refused() {
        assert!(has_ctl_or_space(b"a b"));
        assert!(has_ctl_or_space(b"a\r\nb"));
        assert!(has_ctl_or_space(b"a\x7f"));
        assert!(!has_ctl_or_space(b"a%20b\x80\xff"));
        assert_eq!(check_forwarded(true, b"a\nb", None), Err(CanonError::Forbidden("path")));
        assert_eq!(check_forwarded(false, b"a\nb", None), Ok(()));
        assert_eq!(
            check_forwarded(false, b"a", Some(b"x y")),
            Err(CanonError::Forbidden("query string"))
        );
    }
}
