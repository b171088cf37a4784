//! The layering docs/DESIGN.md promises, checked on the sources (what a module attribute
//! cannot say): module logic (`handler.rs`, `canon.rs`, `tunnel/`) uses no `ffi::` and no
//! `unsafe`; `unsafe` lives only in the wrappers (`src/httpd/`), the entry points
//! (`module.rs`), the syscall layer (`sys.rs`) and the bindings (`ffi.rs`), each block with
//! its SAFETY line; no method hands out `&mut` from `&self`; the shim makes no calls that
//! decide (the httpd calls it may make are its registrations and macro adapters).

use std::path::{Path, PathBuf};

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(sources(&p));
        } else if p.extension().is_some_and(|x| x == "rs" || x == "c" || x == "h") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The file's code lines (comments and strings dropped well enough for these checks).
fn code(p: &Path) -> Vec<(usize, String)> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split("//").next().unwrap_or("").to_string()))
        .filter(|(_, l)| {
            !l.trim().is_empty()
                && !l.trim_start().starts_with('*')
                && !l.trim_start().starts_with("/*")
        })
        .collect()
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap().display().to_string()
}

#[test]
fn module_logic_has_no_ffi_and_no_unsafe() {
    let logic: Vec<PathBuf> = [root().join("src/handler.rs"), root().join("src/canon.rs")]
        .into_iter()
        .chain(sources(&root().join("src/tunnel")))
        .collect();
    let mut bad = Vec::new();
    for p in &logic {
        for (n, l) in code(p) {
            let ffi = l.replace("std::ffi::", "").contains("ffi::");
            if ffi || (l.contains("unsafe") && !l.contains("forbid(unsafe_code)")) {
                bad.push(format!("{}:{n}: {}", rel(p), l.trim()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "module logic must go through src/httpd/ and src/sys.rs:\n{}",
        bad.join("\n")
    );
    for p in ["src/handler.rs", "src/canon.rs", "src/tunnel/mod.rs"] {
        assert!(
            std::fs::read_to_string(root().join(p)).unwrap().contains("#![forbid(unsafe_code)]"),
            "{p} forbids unsafe code"
        );
    }
}

#[test]
fn unsafe_lives_in_the_wrappers_entry_points_and_syscalls_each_with_its_safety_line() {
    let allowed = |r: &str| {
        r.starts_with("src/httpd/") || ["src/module.rs", "src/sys.rs", "src/ffi.rs"].contains(&r)
    };
    let mut bad = Vec::new();
    for p in sources(&root().join("src")) {
        let r = rel(&p);
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (n, l) in code(&p) {
            let block = l.contains("unsafe {") || l.contains("unsafe impl");
            if !(block || l.contains("unsafe fn")) {
                continue;
            }
            if !allowed(&r) {
                bad.push(format!("{r}:{n}: unsafe outside the wrappers: {}", l.trim()));
            } else if block
                && r != "src/ffi.rs"
                && !lines[n.saturating_sub(6)..n].iter().any(|x| x.contains("SAFETY"))
            {
                bad.push(format!("{r}:{n}: no SAFETY line: {}", l.trim()));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn no_method_hands_out_mut_from_shared_self() {
    let mut bad = Vec::new();
    for p in sources(&root().join("src")) {
        for (n, l) in code(&p) {
            let Some(sig) = l.split("(&self").nth(1) else { continue };
            if let Some(ret) = sig.split("->").nth(1) {
                let ret = ret.trim_start();
                if ret.starts_with("&mut")
                    || (ret.starts_with("&'") && ret.split_whitespace().nth(1) == Some("mut"))
                {
                    bad.push(format!("{}:{n}: {}", rel(&p), l.trim()));
                }
            }
        }
    }
    assert!(bad.is_empty(), "aliasing &mut from &self:\n{}", bad.join("\n"));
}

#[test]
fn the_shim_registers_and_adapts_only() {
    // What the shim may call: registration, the macros it adapts, and the few functions those
    // adapters stand for. A call that decides (an MPM query, the scoreboard, a tunnel run,
    // shared memory) belongs in Rust.
    let forbidden = [
        "ap_mpm_query",
        "ap_scoreboard_image",
        "ap_get_scoreboard_process",
        "apr_shm_",
        "ap_retained_data",
        "ap_proxy_tunnel",
        "ap_proxy_pass_brigade",
        "apr_brigade_printf",
        "ap_get_brigade",
        "keepalive",
        "->replied",
        "getpid",
        // Issue 28: no record of httpd's or another module's made by the build's sizeof, no
        // hook picked out of a hook array by its name.
        "apr_pcalloc",
        "sizeof(request_rec",
        "sizeof(conn_rec",
        "szName",
        "ap_hook_get_",
    ];
    let mut files: Vec<_> = std::fs::read_dir(root().join("c_shim"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "c" || x == "h"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let mut bad = Vec::new();
    for p in &files {
        for (n, l) in code(p) {
            for f in forbidden {
                if l.contains(f) {
                    bad.push(format!("{}:{n}: {}", rel(p), l.trim()));
                }
            }
        }
    }
    assert!(bad.is_empty(), "decisions in the shim:\n{}", bad.join("\n"));
}
