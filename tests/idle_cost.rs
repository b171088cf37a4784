//! What an idle synchronous tunnel costs its request thread, against stock's: the same
//! configuration runs once with httpd's stock mod_proxy_wstunnel and once with ours, each
//! holding the same idle WebSockets (no message after the 101), and the resident pages of
//! every thread's stack in the children are counted. A thread keeps every stack page it ever
//! touched; ours must keep no more than stock's (the handshake, the core's set-up and the
//! relay's frames cost a page per tunnel more before the stack was trimmed).

mod common;
use common::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

const TUNNELS: usize = 20;

/// The resident KiB of each thread's stack in `pid`, found by the stack pointer of the system
/// call the thread waits in (a thread that is running has none and is left out).
fn stacks(pid: u32) -> Vec<u64> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut maps: Vec<(u64, u64, u64)> = Vec::new();
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                maps.push((a, b, 0));
            }
        } else if first == "Rss:" {
            if let Some(m) = maps.last_mut() {
                m.2 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            }
        }
    }
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let syscall = std::fs::read_to_string(task.path().join("syscall")).unwrap_or_default();
        let fields: Vec<&str> = syscall.split_whitespace().collect();
        if fields.len() < 3 {
            continue;
        }
        let Ok(sp) = u64::from_str_radix(fields[fields.len() - 2].trim_start_matches("0x"), 16)
        else {
            continue;
        };
        if let Some(m) = maps.iter().find(|m| m.0 <= sp && sp < m.1) {
            out.push(m.2);
        }
    }
    out
}

/// Opens `TUNNELS` idle WebSockets through `module`, then counts the children's stack pages.
fn idle_stacks(module: std::path::PathBuf) -> Vec<u64> {
    let b = Backend::start("idle-cost");
    let h = Httpd::start(
        Config::new("echo.conf.in")
            .module(module)
            .var("BACKEND", format!("127.0.0.1:{}", b.port())),
    );
    let held: Vec<_> = (0..TUNNELS)
        .map(|_| {
            let mut s = wskit::raw::connect(h.port);
            s.write_all(wskit::raw::handshake("/echo/idle", "").as_bytes()).unwrap();
            let r = wskit::raw::read_response(&mut s);
            assert_eq!(r.status, 101, "{r:?}");
            s
        })
        .collect();
    // Well past the relay's quiet second, after which it trims its stack.
    std::thread::sleep(Duration::from_millis(2500));
    let all: Vec<u64> = h.children().into_iter().flat_map(stacks).collect();
    drop(held);
    h.stop();
    all
}

fn histogram(v: &[u64]) -> BTreeMap<u64, usize> {
    let mut h = BTreeMap::new();
    for k in v {
        *h.entry(*k).or_insert(0) += 1;
    }
    h
}

#[test]
fn an_idle_synchronous_tunnel_keeps_no_more_stack_than_stocks() {
    let stock = idle_stacks(wskit::httpd::stock_module());
    let ours = idle_stacks(wskit::httpd::our_module());
    let (s, o) = (stock.iter().sum::<u64>(), ours.iter().sum::<u64>());
    eprintln!(
        "{} MPM, {TUNNELS} idle tunnels: the children's thread stacks, resident KiB (KiB: threads): \
         stock {s} {:?}, ours {o} {:?}",
        mpm(),
        histogram(&stock),
        histogram(&ours)
    );
    assert!(stock.len() >= TUNNELS && ours.len() >= TUNNELS, "threads found: {stock:?} {ours:?}");
    assert!(o <= s, "ours keeps {o} KiB of stack against stock's {s}");
}
