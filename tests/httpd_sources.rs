//! The two behaviours of httpd a suspended TLS client's tunnel relies on without an API
//! (docs/DESIGN.md §6.3), checked in the sources of the httpd 2.4 releases the suite runs:
//! every release `scripts/second-httpd.sh` fetched (the second httpd's, and the installed one's
//! when the mirror has it). The module checks each behaviour in the running httpd too
//! (`src/httpd/behaviours.rs`: WST00010 at startup, WST02024 at a hand-over).
//!
//! 1. The event MPM lets go of a suspended connection right after its suspend_connection hooks:
//!    it clears the connection's scoreboard handle (`c->sbh`, which the module waits for), then
//!    sets one flag of its own and returns, never touching the connection again.
//! 2. Core's output filter, called with no brigade, writes what it holds without blocking: the
//!    event MPM's write completion calls it so, and so does the module's relay.

use std::path::PathBuf;
use std::process::Command;

/// The source trees, fetched once per test binary (both tests read them).
fn source_trees() -> &'static [PathBuf] {
    static TREES: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();
    TREES.get_or_init(fetch_source_trees)
}

fn fetch_source_trees() -> Vec<PathBuf> {
    let root = wskit::httpd::workspace_root();
    let out = Command::new(root.join("scripts/second-httpd.sh")).output().expect("second-httpd.sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut trees: Vec<PathBuf> = std::fs::read_dir(root.join("target/second-httpd"))
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            let name = p.file_name()?.to_str()?.strip_prefix("src-")?.to_string();
            let tree = p.join(format!("httpd-{name}"));
            tree.join("server/core.c").exists().then_some(tree)
        })
        .collect();
    trees.sort();
    assert!(!trees.is_empty(), "no httpd source tree under target/second-httpd");
    trees
}

/// The statements of a C function's body, whitespace collapsed.
fn body(source: &str, signature: &str) -> Vec<String> {
    let start = source.find(signature).unwrap_or_else(|| panic!("{signature} not found"));
    let open = start + source[start..].find('{').unwrap();
    let mut depth = 0;
    let mut end = open;
    for (i, ch) in source[open..].char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    end = open + i;
                    break;
                }
            }
            _ => {}
        }
    }
    source[open + 1..end]
        .split(';')
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .collect()
}

fn squeeze(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn the_event_mpm_lets_go_of_a_suspended_connection_right_after_its_hooks() {
    for tree in source_trees() {
        let event = std::fs::read_to_string(tree.join("server/mpm/event/event.c")).unwrap();
        assert_eq!(
            body(&event, "static void notify_suspend(event_conn_state_t *cs)"),
            ["ap_run_suspend_connection(cs->c, cs->r)", "cs->c->sbh = NULL", "cs->suspended = 1"],
            "{}: the hooks run, then the scoreboard handle is cleared, then one flag of the MPM's",
            tree.display()
        );
        assert!(
            squeeze(&event).contains(
                "if (cs->pub.state == CONN_STATE_SUSPENDED) { apr_atomic_inc32(&suspended_count); \
                 notify_suspend(cs); return; }"
            ),
            "{}: a suspended connection is left as soon as it is announced",
            tree.display()
        );
    }
}

#[test]
fn core_output_filter_called_with_no_brigade_writes_what_it_holds_without_blocking() {
    for tree in source_trees() {
        let event = std::fs::read_to_string(tree.join("server/mpm/event/event.c")).unwrap();
        assert!(
            event.contains("filter_func.out_func(output_filter, NULL)"),
            "{}: the MPM's write completion calls core's output filter with no brigade",
            tree.display()
        );
        let core = squeeze(&std::fs::read_to_string(tree.join("server/core_filters.c")).unwrap());
        let f = &core[core
            .find("apr_status_t ap_core_output_filter(ap_filter_t *f, apr_bucket_brigade *new_bb)")
            .unwrap()..];
        for must in [
            // Nothing held: nothing to do.
            "else if (new_bb == NULL) { c->data_in_output_filters = 0; return APR_SUCCESS; }",
            // Something held and no brigade: written now...
            "if (!new_bb || should_send_brigade(bb, c, NULL)) {",
            // ... without blocking...
            "apr_socket_timeout_set(sock, 0);",
            // ... and waited for only when a brigade was passed.
            "if (new_bb && APR_STATUS_IS_EAGAIN(rv)) {",
        ] {
            assert!(f.contains(must), "{}: ap_core_output_filter lacks `{must}`", tree.display());
        }
    }
}
