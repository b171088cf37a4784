//! CPU sets for the benchmark: a list as `taskset -c` takes it ("0-3,8"), and servers started
//! on a set of their own. A process inherits the CPU mask of the thread that forks it, so a
//! server spawned from a thread pinned to a set runs there with all its children and threads,
//! and sees that set as the CPUs it may use (as `taskset -c LIST server` would).

/// The CPUs in `list` ("0-3,8,10-11"), in order; None if it does not parse.
pub fn parse(list: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.trim().parse::<usize>().ok()?..=b.trim().parse().ok()?),
            None => cpus.push(part.parse().ok()?),
        }
    }
    (!cpus.is_empty()).then_some(cpus)
}

/// `cpus` written as a list again ("0,1,2").
pub fn list(cpus: &[usize]) -> String {
    cpus.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

/// The CPUs the calling thread may run on.
pub fn current() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data, valid all zeroes; sched_getaffinity writes at most
    // size_of::<cpu_set_t>() bytes into it, and CPU_ISSET reads within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    }
}

/// Pins the calling thread (not the whole process) to `cpus`.
pub fn pin(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: as in `current`; CPU_SET only writes bits below CPU_SETSIZE (checked).
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Runs `spawn` (which starts a process) with the calling thread pinned to `cpus`, so the
/// process and everything it forks stay on them; the thread's own set is restored after.
pub fn spawned_on<T>(cpus: Option<&[usize]>, spawn: impl FnOnce() -> T) -> T {
    let Some(cpus) = cpus else { return spawn() };
    let own = current();
    pin(cpus).unwrap_or_else(|e| panic!("pinning to CPUs {}: {e}", list(cpus)));
    let started = spawn();
    pin(&own).expect("the thread's own CPUs back");
    started
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_as_taskset_reads_them() {
        assert_eq!(parse("0-3,8"), Some(vec![0, 1, 2, 3, 8]));
        assert_eq!(parse("5"), Some(vec![5]));
        assert_eq!(parse(" 1 , 2-3 "), Some(vec![1, 2, 3]));
        assert_eq!(parse(""), None);
        assert_eq!(parse("a-3"), None);
        assert_eq!(list(&[0, 2]), "0,2");
    }

    #[test]
    fn a_process_spawned_on_a_set_sees_that_set() {
        let before = current();
        let first = before[0];
        let out = spawned_on(Some(&[first]), || {
            std::process::Command::new("grep")
                .args(["Cpus_allowed_list", "/proc/self/status"])
                .output()
        })
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.split_whitespace().nth(1), Some(first.to_string().as_str()), "{text}");
        // The calling thread got its own set back.
        assert_eq!(current(), before);
    }
}
