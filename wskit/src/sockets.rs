//! Loopback TCP for tests: socket pairs around a relay under test, reading one to its end, and
//! what the kernel holds for a connection, asked from outside the process that owns it
//! (sock_diag: tests watch a proxy's sockets to tell when bytes last moved through them,
//! whoever moved them).

use std::net::TcpStream;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// The send and receive queues (bytes) of the established IPv4 socket whose local port is
/// `local` and whose peer's port is `remote`, both on loopback; None if there is no such
/// socket or it is closing (its owner closed or shut it down: a FIN counts in its queue).
/// Asked of the kernel for that one socket (sock_diag), so that the cost does not grow with
/// the sockets on the machine (a test before may leave tens of thousands in TIME_WAIT, which
/// made a read of `/proc/net/tcp` every 20 ms per watched connection load the machine).
pub fn queues(local: u16, remote: u16) -> Option<(u64, u64)> {
    let loopback = u32::from_ne_bytes([127, 0, 0, 1]);
    let id = SockId {
        sport: local.to_be_bytes(),
        dport: remote.to_be_bytes(),
        src: [loopback, 0, 0, 0],
        dst: [loopback, 0, 0, 0],
        interface: 0,
        cookie: [!0, !0],
    };
    let req = DiagRequest {
        h: NlMsgHdr {
            len: std::mem::size_of::<DiagRequest>() as u32,
            ty: SOCK_DIAG_BY_FAMILY,
            flags: NLM_F_REQUEST,
            seq: 1,
            pid: 0,
        },
        r: DiagReqV2 {
            family: libc::AF_INET as u8,
            protocol: libc::IPPROTO_TCP as u8,
            ext: 0,
            pad: 0,
            states: !0,
            id,
        },
    };
    let mut buf = [0u8; 1024];
    // SAFETY: a netlink socket of our own, closed below; the request is a plain C struct sent
    // by its size, and the answer lands in `buf`, whose size is passed.
    let got = unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        );
        if fd < 0 {
            return None;
        }
        let sent = libc::send(
            fd,
            (&req as *const DiagRequest).cast(),
            std::mem::size_of::<DiagRequest>(),
            0,
        );
        let got = if sent < 0 { -1 } else { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        libc::close(fd);
        got
    };
    let hdr = std::mem::size_of::<NlMsgHdr>();
    if got < (hdr + std::mem::size_of::<DiagMsg>()) as isize {
        return None;
    }
    // SAFETY: `got` bytes were written, enough for a header and a message, read unaligned.
    let (h, m) = unsafe {
        (
            std::ptr::read_unaligned(buf.as_ptr().cast::<NlMsgHdr>()),
            std::ptr::read_unaligned(buf[hdr..].as_ptr().cast::<DiagMsg>()),
        )
    };
    // State 1: established (a lookup that finds none answers with an error, or the listener).
    (h.ty == SOCK_DIAG_BY_FAMILY && m.state == 1).then_some((m.wqueue as u64, m.rqueue as u64))
}

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;

/// `struct nlmsghdr`.
#[repr(C)]
struct NlMsgHdr {
    len: u32,
    ty: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

/// `struct inet_diag_sockid`: ports and addresses in network order.
#[repr(C)]
#[derive(Clone, Copy)]
struct SockId {
    sport: [u8; 2],
    dport: [u8; 2],
    src: [u32; 4],
    dst: [u32; 4],
    interface: u32,
    cookie: [u32; 2],
}

/// `struct inet_diag_req_v2`.
#[repr(C)]
struct DiagReqV2 {
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: SockId,
}

#[repr(C)]
struct DiagRequest {
    h: NlMsgHdr,
    r: DiagReqV2,
}

/// `struct inet_diag_msg`.
#[repr(C)]
#[derive(Clone, Copy)]
struct DiagMsg {
    family: u8,
    state: u8,
    timer: u8,
    retrans: u8,
    id: SockId,
    expires: u32,
    rqueue: u32,
    wqueue: u32,
    uid: u32,
    inode: u32,
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
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut v = Vec::new();
    s.read_to_end(&mut v).unwrap();
    v
}

/// What [`watch`] saw of a connection.
pub struct Watched {
    /// When bytes moved (the first entry: when the watch began).
    pub moved: Vec<Instant>,
    /// When the peer ended it (a FIN or a reset), if it did in time.
    pub end: Option<Instant>,
}

impl Watched {
    /// When bytes last moved before the end at `t`, not counting the two samples just before
    /// it: an end writes bytes of its own first (a TLS close_notify, a Close frame) that a
    /// sample may catch a moment before the FIN or reset it sees next, and those are the
    /// end, not traffic.
    pub fn last_before(&self, t: Instant) -> Instant {
        let ending = t.checked_sub(2 * SAMPLE).unwrap_or(t);
        self.moved.iter().copied().filter(|m| *m < ending).max().unwrap_or(self.moved[0])
    }
}

/// Watches a loopback connection from one end, socket `fd` on port `me` whose peer (a proxy)
/// is on port `peer`, every 20 ms for at most `t`: when bytes moved (a queue of `fd` or of the
/// peer's socket changed: the peer wrote or read, or the kernel moved them) and when the peer
/// ended it. Neither end needs to read for this.
pub async fn watch(fd: RawFd, me: u16, peer: u16, t: Duration) -> Watched {
    let sample = || (unread(fd), unsent(fd), queues(peer, me));
    let (mut seen, mut w) = (sample(), Watched { moved: vec![Instant::now()], end: None });
    let until = Instant::now() + t;
    while Instant::now() < until {
        // The end is checked after the queues are read: a reset empties them, a FIN counts
        // in the peer's (which is no longer established then), and either may come between.
        let now = sample();
        if peer_ended(fd) || now.2.is_none() {
            w.end = Some(Instant::now());
            break;
        }
        if now != seen {
            seen = now;
            w.moved.push(Instant::now());
        }
        tokio::time::sleep(SAMPLE).await;
    }
    w
}

/// How often [`watch`] samples a connection.
const SAMPLE: Duration = Duration::from_millis(20);

/// Bytes in a socket's receive queue.
pub fn unread(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through a valid pointer.
    unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    n.max(0) as usize
}

/// Bytes in a socket's send queue (not yet acknowledged by the peer).
pub fn unsent(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one int through a valid pointer.
    unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) };
    n.max(0) as usize
}

/// The peer sent its FIN or reset the connection.
pub fn peer_ended(fd: RawFd) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLRDHUP, revents: 0 };
    // SAFETY: one valid pollfd, no wait.
    unsafe { libc::poll(&mut p, 1, 0) };
    p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
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
