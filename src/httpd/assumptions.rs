//! What the module assumes of the httpd it runs in, decided at startup (plain Rust, unit-tested
//! without httpd; src/httpd/release.rs gathers the facts).
//!
//! httpd's promise to its modules is the module magic number (MMN, `ap_mmn.h`): within one
//! major number, records only grow at their end and functions are only added, each addition
//! raising the minor number. A module built against headers of MMN major.minor therefore
//! works in every httpd of the same major and a minor at least as high, whatever its release;
//! in one with a lower minor it may read a field or call a function that httpd does not have.
//! httpd itself refuses a module of another major at `LoadModule`; the module refuses to
//! start in an httpd of a lower minor (`WST00009`), and checks nothing else by version.

/// A module magic number: major, minor.
pub type Mmn = (i32, i32);

/// Whether a module built against `built` may run in an httpd of `running`; why not if not.
pub fn check_mmn(built: Mmn, running: Mmn) -> Result<(), String> {
    let show = |(a, b): Mmn| format!("{a}.{b}");
    if built.0 != running.0 {
        return Err(format!(
            "the module was built against httpd headers of module magic number {} and this httpd's is {}: \
             another major number (install the build made for this httpd)",
            show(built),
            show(running)
        ));
    }
    if running.1 < built.1 {
        return Err(format!(
            "the module was built against httpd headers of module magic number {} and this httpd's is {}: it is \
             older than the headers and may lack what the module uses (install the build made for this httpd, or \
             build the module against its headers)",
            show(built),
            show(running)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_major_and_a_minor_at_least_the_builds_run() {
        let built = (20120211, 142);
        assert_eq!(check_mmn(built, built), Ok(()));
        assert_eq!(check_mmn(built, (20120211, 150)), Ok(()), "a later 2.4 release");
        let older = check_mmn(built, (20120211, 131)).unwrap_err();
        assert!(older.contains("20120211.142") && older.contains("20120211.131"), "{older}");
        let other = check_mmn(built, (20211221, 0)).unwrap_err();
        assert!(other.contains("major"), "{other}");
    }
}
