//! Loopback TCP for tests: socket pairs around a relay under test, reading one to its end, and
//! what the kernel holds for a connection, read from outside the process that owns it
//! (`/proc/net/tcp`: tests watch a proxy's sockets to tell when bytes last moved through
//! them, whoever moved them).

use std::net::TcpStream;

/// The send and receive queues (bytes) of the established IPv4 socket whose local port is
/// `local` and whose peer's port is `remote`, both on loopback; None if there is no such
/// socket or it is closing (its owner closed or shut it down: a FIN counts in its queue).
pub fn queues(local: u16, remote: u16) -> Option<(u64, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let want = (format!("0100007F:{local:04X}"), format!("0100007F:{remote:04X}"));
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // State 01: established.
        if f.len() < 5 || f[1] != want.0 || f[2] != want.1 || f[3] != "01" {
            return None;
        }
        let (tx, rx) = f[4].split_once(':')?;
        Some((u64::from_str_radix(tx, 16).ok()?, u64::from_str_radix(rx, 16).ok()?))
    })
}

/// Two connected loopback TCP pairs around a relay under test: (the test's client end, the
/// relay's client end), (the relay's backend end, the test's backend end).
pub fn pairs() -> ((TcpStream, TcpStream), (TcpStream, TcpStream)) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mk = || {
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    };
    (mk(), mk())
}

/// Reads until EOF; panics after 10 s.
pub fn read_all(s: &mut TcpStream) -> Vec<u8> {
    use std::io::Read;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut v = Vec::new();
    s.read_to_end(&mut v).unwrap();
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_connections_queues_are_found_from_either_end() {
        use std::io::Write;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        a.write_all(&[1u8; 1000]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let (ap, bp) = (a.local_addr().unwrap().port(), b.local_addr().unwrap().port());
        assert_eq!(super::queues(bp, ap), Some((0, 1000)), "the unread bytes wait at the receiver");
        assert_eq!(super::queues(ap, bp).map(|q| q.0), Some(0));
        assert_eq!(super::queues(ap, 1), None);
    }
}
