//! What the end-of-tunnel access-log record (c_shim/record.c) assumes of the running httpd,
//! and the startup check of each assumption (plain Rust, unit-tested without httpd). The
//! record is rebuilt from the request and connection layouts of the headers the module was
//! built with, and fills mod_logio's private per-connection record through mod_logio's own
//! functions in a block of record.c's size; when any of that cannot be trusted, the record is
//! never given to mod_log_config and the error log's WST02011 line stands alone.

/// An httpd version: major, minor, patch.
pub type Version = (i32, i32, i32);

/// mod_logio tried on a scratch connection (see c_shim/shim.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Logio {
    pub loaded: bool,
    pub functions: bool,
    /// Byte offsets in the block where 1 byte in and 2 bytes out landed.
    pub in_at: Option<usize>,
    pub out_at: Option<usize>,
    /// Something past the block changed.
    pub beyond: bool,
}

/// What the running httpd showed at startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub built_for: Version,
    pub running: Version,
    pub log_config: bool,
    pub logio: Logio,
}

/// Why asynchronous tunnels' ends cannot go to mod_log_config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// Not an error: there is no access log to write to.
    NoLogConfig,
    /// Anything else: the administrator loses records and should know why.
    Broken(String),
}

fn v((a, b, c): Version) -> String {
    format!("{a}.{b}.{c}")
}

/// Whether every assumption holds.
pub fn check(f: &Facts) -> Result<(), Unusable> {
    if !f.log_config {
        return Err(Unusable::NoLogConfig);
    }
    if f.built_for != f.running {
        return Err(Unusable::Broken(format!(
            "the module was built with httpd {}'s headers and runs in httpd {}: their request and connection records may be \
             laid out differently (rebuild the module against this httpd)",
            v(f.built_for),
            v(f.running)
        )));
    }
    let l = f.logio;
    if l.loaded && !l.functions {
        return Err(Unusable::Broken(
            "mod_logio is loaded without its ap_logio_add_bytes_in/out functions".into(),
        ));
    }
    if l.loaded && (l.in_at.is_none() || l.out_at.is_none() || l.in_at == l.out_at || l.beyond) {
        return Err(Unusable::Broken(format!(
            "mod_logio's per-connection counters are not where the module expects them (bytes in at {:?}, out at {:?}, \
             written past the block: {})",
            l.in_at, l.out_at, l.beyond
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            built_for: (2, 4, 71),
            running: (2, 4, 71),
            log_config: true,
            logio: Logio {
                loaded: true,
                functions: true,
                in_at: Some(0),
                out_at: Some(8),
                beyond: false,
            },
        }
    }

    #[test]
    fn the_record_goes_to_mod_log_config_only_when_every_assumption_holds() {
        assert_eq!(check(&facts()), Ok(()));
        let without_logio = Facts {
            logio: Logio {
                loaded: false,
                functions: false,
                in_at: None,
                out_at: None,
                beyond: false,
            },
            ..facts()
        };
        assert_eq!(check(&without_logio), Ok(()), "no %I/%O then, but the record is sound");
        assert_eq!(check(&Facts { log_config: false, ..facts() }), Err(Unusable::NoLogConfig));
        let other = check(&Facts { running: (2, 4, 72), ..facts() });
        assert!(
            matches!(&other, Err(Unusable::Broken(m)) if m.contains("2.4.71") && m.contains("2.4.72")),
            "{other:?}"
        );
        for logio in [
            Logio { functions: false, ..facts().logio },
            Logio { in_at: None, ..facts().logio },
            Logio { out_at: Some(0), ..facts().logio },
            Logio { beyond: true, ..facts().logio },
        ] {
            assert!(
                matches!(check(&Facts { logio, ..facts() }), Err(Unusable::Broken(_))),
                "{logio:?}"
            );
        }
    }
}
