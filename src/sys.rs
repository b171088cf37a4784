//! The syscall layer: every system call the module makes outside httpd's own API, each behind
//! a small safe function. The relays' non-blocking reads and writes, `splice(2)`, pipes and
//! socket options; the clock, eventfds, descriptors and processes.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// One read or splice moves at most this much (a default pipe's capacity).
pub const CHUNK: usize = 64 * 1024;
/// Splices smaller than this take a direction back to plain reads: for small messages two
/// splices cost more than a read and a write (HAProxy's "splice-auto" idea).
pub const SPLICE_SMALL: usize = 16 * 1024;

/// Bytes in memory mapped from the kernel (anonymous, private), for a relay's buffers. Its
/// pages read as zero until written, take memory only once touched, and go back to the system
/// the moment it is dropped. A malloc'd buffer does neither: calloc zeroes (touches) all of it
/// in the thread's arena, and a freed one stays resident there, so every request thread that
/// once polled a synchronous tunnel's ends kept two 64 KiB buffers in its RSS (idle synchronous
/// tunnel: 168 KiB of PSS against stock's 66).
pub struct PageBuffer {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping belongs to this value alone (nothing else holds its address), so it may
// move to and be used from another thread like a Box<[u8]>.
unsafe impl Send for PageBuffer {}

impl PageBuffer {
    /// `len` zero bytes (at least 1); aborts as a failed allocation would if the kernel has no
    /// memory to map.
    pub fn zeroed(len: usize) -> PageBuffer {
        let len = len.max(1);
        // SAFETY: a new anonymous private mapping at an address of the kernel's choosing; no
        // existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        match std::ptr::NonNull::new(p as *mut u8).filter(|_| p != libc::MAP_FAILED) {
            Some(ptr) => PageBuffer { ptr, len },
            None => std::alloc::handle_alloc_error(
                std::alloc::Layout::from_size_align(len, 4096).expect("a page-aligned layout"),
            ),
        }
    }
}

impl std::ops::Deref for PageBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len` readable bytes (zero-filled by the kernel or written since) mapped at
        // `ptr` for as long as self lives; &self keeps them from being written meanwhile.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for PageBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref; &mut self makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PageBuffer {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `zeroed`; no reference to it outlives self.
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len) };
    }
}

impl std::fmt::Debug for PageBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PageBuffer({} bytes)", self.len)
    }
}

pub fn make_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two new fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: splice(2) between fds the caller owns (a socket and a pipe); no offsets.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

pub fn send(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: `data` is a valid readable slice; MSG_NOSIGNAL turns a closed peer into EPIPE
    // instead of SIGPIPE.
    let n = unsafe {
        libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOTSOCK) {
            // SAFETY: as above, for non-socket fds (pipes in tests).
            let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
            return if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) };
        }
        return Err(e);
    }
    Ok(n as usize)
}

pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid writable slice of the given length.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOTSOCK) {
            // SAFETY: as above.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            return if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) };
        }
        return Err(e);
    }
    Ok(n as usize)
}

pub fn socket_error(fd: RawFd) -> io::Error {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `err`, a valid c_int.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 && err != 0 {
        io::Error::from_raw_os_error(err)
    } else {
        io::Error::from_raw_os_error(libc::ECONNRESET)
    }
}

/// Sets O_NONBLOCK on `fd` (the relay never blocks in read/write, only in poll).
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an open fd with integer arguments only.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl < 0 || libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sends the FIN on `fd` (shutdown(2) for writing); a peer already gone is no error.
pub fn shutdown_write(fd: RawFd) -> io::Result<()> {
    // SAFETY: shutdown(2) on an fd the caller keeps open; integer arguments only.
    if unsafe { libc::shutdown(fd, libc::SHUT_WR) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOTCONN) {
        Ok(())
    } else {
        Err(e)
    }
}

/// Bytes received on socket `fd` and not yet read (0 if it cannot tell).
#[cfg(feature = "httpd")]
pub fn unread(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int into `n`.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) } == 0 {
        n.max(0) as usize
    } else {
        0
    }
}

/// Turns on TCP keep-alive so that a vanished peer is eventually noticed.
pub fn set_keepalive(fd: RawFd) {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt with a valid pointer to a c_int of the right size; failure (e.g. not
    // a socket) is harmless and ignored.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_KEEPALIVE,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// A Close frame with `code` for `to`: masked with a fresh key towards the backend (frames
/// from a client must be masked, RFC 6455 §5.3), unmasked towards the client.
pub fn close_frame(code: u16, to_backend: bool) -> Vec<u8> {
    crate::frames::close_frame(code, to_backend.then(random_bytes::<4>))
}

/// `N` bytes no peer can predict: a masking key (RFC 6455 §5.3), or a Ping's token.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut k = [0u8; N];
    // SAFETY: getrandom(2) writes at most N bytes into `k`, which has N.
    let n = unsafe { libc::getrandom(k.as_mut_ptr().cast(), N, libc::GRND_NONBLOCK) };
    if n != N as isize {
        // The bytes only keep intermediaries from mistaking frames for requests and tell the
        // module's Pongs from others; any the peer cannot predict will do.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_le_bytes();
        k.iter_mut().zip(nanos.iter().cycle()).for_each(|(b, n)| *b = *n);
    }
    k
}

/// Asynchronous signals held back while a relay thread works and let in only while it waits
/// in [`SignalsHeld::poll`], so a signal can never slip in between two waits unnoticed: prefork
/// tells a busy child about a graceful stop only by a signal, which must interrupt the wait.
pub struct SignalsHeld {
    old: libc::sigset_t,
}

impl Default for SignalsHeld {
    fn default() -> Self {
        SignalsHeld::new()
    }
}

impl SignalsHeld {
    pub fn new() -> SignalsHeld {
        // SAFETY: sigset_t is plain data; the sig* calls initialise and edit sets we own, and
        // pthread_sigmask changes only this thread's mask (restored on drop).
        unsafe {
            let mut held: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut held);
            // Faults must stay deliverable where they happen.
            for s in [
                libc::SIGSEGV,
                libc::SIGBUS,
                libc::SIGFPE,
                libc::SIGILL,
                libc::SIGTRAP,
                libc::SIGABRT,
            ] {
                libc::sigdelset(&mut held, s);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &held, &mut old);
            SignalsHeld { old }
        }
    }

    /// poll(2) with the thread's own signal mask in force while it waits (ppoll); a negative
    /// `timeout_ms` waits forever.
    pub fn poll(&self, fds: &mut [libc::pollfd], timeout_ms: i64) -> io::Result<usize> {
        let ts = (timeout_ms >= 0).then(|| libc::timespec {
            tv_sec: timeout_ms / 1000,
            tv_nsec: (timeout_ms % 1000) * 1_000_000,
        });
        let tsp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `fds` is a valid slice of pollfd, `tsp` is null or points to `ts`, which
        // outlives the call, and `old` is an initialised signal set.
        let n = unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, tsp, &self.old) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl Drop for SignalsHeld {
    fn drop(&mut self) {
        // SAFETY: restores the mask this thread had when the value was made.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

/// Starts a thread of the module's own (a relay thread, the drain's clock) that takes none of
/// the signals httpd's threads wait for. A signal sent to a process goes to any one of its
/// threads that does not hold it: prefork tells a busy child of a graceful stop by SIGUSR1
/// only, which its request thread must get to drain its tunnel; a thread of ours that let it
/// in took it (once, in CI: a prefork child whose relay was busy as the signal came never
/// drained, and its tunnel was cut at httpd's deadline without a Close). A new thread starts
/// with its creator's mask, so holding every signal around the spawn leaves no moment in
/// which it could take one; faults stay deliverable ([`SignalsHeld`]).
pub fn spawn_thread<F, T>(name: String, f: F) -> io::Result<std::thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let _held = SignalsHeld::new();
    std::thread::Builder::new().name(name).spawn(f)
}

/// Runs `f` (which starts threads of its own, as a runtime's builder does) holding every
/// signal, so the threads it starts take none; see [`spawn_thread`].
pub fn with_signals_held<T>(f: impl FnOnce() -> T) -> T {
    let _held = SignalsHeld::new();
    f()
}

/// What [`wait_backend`] saw.
#[cfg(feature = "httpd")]
#[derive(Debug, PartialEq, Eq)]
pub enum Waited {
    /// The backend has bytes (or an end) to read.
    Backend,
    /// The client hung up (FIN, reset or error on its socket).
    ClientGone,
    /// The time ran out, or a signal came: look at the clock and decide again.
    Nothing,
}

#[cfg(feature = "httpd")]
/// Waits up to `timeout_ms` for the backend's socket to be readable, watching the client's
/// socket for a hang-up only (POLLRDHUP: bytes a client pipelined do not wake us).
pub fn wait_backend(backend: RawFd, client: Option<RawFd>, timeout_ms: i32) -> io::Result<Waited> {
    let mut fds = [
        libc::pollfd { fd: backend, events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: client.unwrap_or(-1), events: libc::POLLRDHUP, revents: 0 },
    ];
    // SAFETY: `fds` is a valid array of two pollfd; a negative fd is ignored by poll(2).
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok(Waited::Nothing) } else { Err(e) };
    }
    if fds[1].revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
        return Ok(Waited::ClientGone);
    }
    Ok(if fds[0].revents != 0 { Waited::Backend } else { Waited::Nothing })
}

/// Milliseconds of `CLOCK_MONOTONIC_COARSE` (the tick-resolution clock: no vDSO fallback to
/// a full read, which the relays would pay per message).
pub fn monotonic_coarse_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// A new non-blocking, close-on-exec eventfd.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd(2) with constant flags returns a new fd or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just created; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes an eventfd readable (adds one to its counter); nobody needs to read it back.
pub fn eventfd_signal(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64 to an eventfd.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// A close-on-exec duplicate of `fd`, owned by the caller.
pub fn dup_cloexec(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd or -1; a bad `fd` is EBADF, nothing worse.
    let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if d < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `d` was just created and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(d) })
}

/// The process's soft limit on open files (1024 if it cannot be read).
pub fn open_files_limit() -> u64 {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } == 0 {
        l.rlim_cur
    } else {
        1024
    }
}

/// How many CPUs this process may run on (its affinity mask: `taskset`, cgroups' cpusets);
/// the machine's count if the mask cannot be read.
pub fn cpus_allowed() -> usize {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills the set we pass, of its size.
    let n = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            libc::CPU_COUNT(&set) as usize
        } else {
            0
        }
    };
    if n > 0 {
        n
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

pub fn getpid() -> u32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() as u32 }
}

/// Whether process `pid` exists (signal 0: a check, nothing is sent).
pub fn process_exists(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    pid != 0
        && (unsafe { libc::kill(pid as libc::pid_t, 0) } == 0
            || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH))
}

/// Registers a socket with the tokio reactor of the current runtime, for reads and writes.
pub fn async_fd<T: std::os::fd::AsRawFd>(fd: T) -> io::Result<tokio::io::unix::AsyncFd<T>> {
    use tokio::io::{unix::AsyncFd, Interest};
    set_nonblocking(std::os::fd::AsRawFd::as_raw_fd(&fd))?;
    // SAFETY: tokio's contract is that the fd stays open and is not registered elsewhere
    // while the AsyncFd lives: an OwnedFd moved into it is closed only when it drops, and a
    // socket lent by a suspended connection is closed only by `finish`, after the relay
    // that registered it returned (and dropped its AsyncFd).
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE) }
        .map_err(|e| e.into())
}

/// A TCP socket connected to itself on the loopback (bound to 127.0.0.1 and an ephemeral port,
/// then connected to that same address: TCP's simultaneous open), closed with a reset (no
/// TIME_WAIT left behind). httpd makes an access-log record's connection on it
/// (`httpd::record`): its addresses are known to the kernel, as APR asks for them, and no peer
/// can send or receive a byte on it.
pub fn self_connected_socket() -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    // SAFETY: socket(2) with constant flags; a non-negative result is a new descriptor we own.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be() },
        sin_zero: [0; 8],
    };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let at = (&mut sa as *mut libc::sockaddr_in).cast::<libc::sockaddr>();
    // SAFETY: bind, getsockname and connect read or fill one sockaddr_in of `len` bytes.
    let ok = unsafe {
        libc::bind(fd.as_raw_fd(), at, len) == 0
            && libc::getsockname(fd.as_raw_fd(), at, &mut len) == 0
            && libc::connect(fd.as_raw_fd(), at, len) == 0
    };
    if !ok {
        return Err(io::Error::last_os_error());
    }
    set_linger_zero(fd.as_raw_fd());
    Ok(fd)
}

/// A small kernel send buffer (`SO_SNDBUF`), so that a few writes fill it.
pub fn set_send_buffer(fd: RawFd, bytes: i32) {
    // SAFETY: setsockopt reads one int of the given size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&bytes as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        )
    };
}

/// Waits up to `ms` for `fd` to be readable (an error counts as readable: the read says it).
pub fn wait_readable(fd: RawFd, ms: i32) {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: poll(2) on one pollfd we own for the call.
    unsafe { libc::poll(&mut p, 1, ms) };
}

/// Makes `close` on a socket send a reset (SO_LINGER with a zero timeout).
pub fn set_linger_zero(fd: RawFd) {
    let lin = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt reads one linger struct of the given size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&lin as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as u32,
        )
    };
}

/// What the calling thread has used so far: CPU time, and how often it gave up the CPU to
/// wait (voluntary context switches: a blocking call, a lock taken by another thread).
pub fn thread_usage() -> (std::time::Duration, u64) {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we pass.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    let tv = |t: libc::timeval| std::time::Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(u.ru_utime) + tv(u.ru_stime), u.ru_nvcsw as u64)
}

/// Gives back to the kernel the pages of the calling thread's stack below the caller's frame.
/// A request thread that relays a synchronous tunnel waits in poll(2) for as long as the
/// tunnel lasts; the pages that deeper calls touched before (the handshake through mod_proxy
/// and the filters, the core's set-up) are unused until it returns, but stay in its memory:
/// a page more than stock's tunnel per idle tunnel. Nothing lives below the stack pointer of a
/// function that calls out (no red zone across a call), so what lies below this function's
/// frame, less a margin for the madvise call itself, reads as zero pages if touched again.
#[inline(never)]
pub fn trim_stack() {
    thread_local! {
        /// The lowest address of this thread's stack above its guard, once asked.
        static LOW: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
    }
    let Some(low) = LOW.with(|l| {
        if l.get().is_none() {
            l.set(stack_low());
        }
        l.get()
    }) else {
        return;
    };
    let marker = 0u8;
    let here = std::hint::black_box(&marker) as *const u8 as usize;
    let end = here.saturating_sub(MARGIN) & !(PAGE - 1);
    // At most TRIM below: deeper excursions are rare, and a process's main thread (prefork's
    // request thread) has a stack that grows on demand, which the kernel keeps a megabyte
    // of gap below, so the window holds nothing but that stack.
    let start = low.max(end.saturating_sub(TRIM));
    if end > start {
        // SAFETY: [start, end) is this thread's own stack below every live frame (the
        // caller's and this one's are above `here`, and the madvise call needs less than
        // MARGIN); MADV_DONTNEED only drops its pages, which read as zeros when touched
        // again (a hole not yet mapped is skipped).
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}

/// How far below the caller [`trim_stack`] looks.
const TRIM: usize = 256 * 1024;
/// Room left below [`trim_stack`]'s frame: its call to madvise, a plain system call stub.
const MARGIN: usize = 256;

const PAGE: usize = 4096;

/// The lowest usable address of the calling thread's stack (above its guard pages).
fn stack_low() -> Option<usize> {
    // SAFETY: an all-zero pthread_attr_t is only storage for pthread_getattr_np to fill; the
    // attributes are read, then destroyed once filled.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let (mut addr, mut size, mut guard) = (std::ptr::null_mut(), 0usize, 0usize);
        let ok = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0
            && libc::pthread_attr_getguardsize(&attr, &mut guard) == 0;
        libc::pthread_attr_destroy(&mut attr);
        ok.then(|| (addr as usize + guard + PAGE - 1) & !(PAGE - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signals the calling thread holds, as `(signal, held)`.
    fn held(signals: &[i32]) -> Vec<(i32, bool)> {
        // SAFETY: a zeroed sigset_t is storage for pthread_sigmask to fill; with a null new
        // set it only reads this thread's mask.
        let set = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut set);
            set
        };
        // SAFETY: `set` is initialised.
        signals.iter().map(|&s| (s, unsafe { libc::sigismember(&set, s) } == 1)).collect()
    }

    #[test]
    fn the_modules_threads_hold_httpds_signals_and_leave_their_creators_as_they_were() {
        let httpds = [libc::SIGHUP, libc::SIGINT, libc::SIGUSR1, libc::SIGTERM, libc::SIGWINCH];
        let faults = [libc::SIGSEGV, libc::SIGBUS, libc::SIGABRT];
        let before = held(&httpds);
        let (ours, theirs) =
            spawn_thread("wst-test".into(), move || (held(&httpds), held(&faults)))
                .unwrap()
                .join()
                .unwrap();
        assert!(ours.iter().all(|(_, h)| *h), "{ours:?}");
        assert!(theirs.iter().all(|(_, h)| !*h), "faults stay deliverable: {theirs:?}");
        assert_eq!(held(&httpds), before, "the spawning thread's mask is restored");
        assert!(with_signals_held(|| held(&httpds)).iter().all(|(_, h)| *h));
        assert_eq!(held(&httpds), before);
    }

    /// mincore(2) of [addr, addr+len): one byte per page (bit 0: in memory); None when part
    /// of the range is not mapped (ENOMEM).
    fn residency(addr: usize, len: usize) -> Option<Vec<u8>> {
        let mut vec = vec![0u8; len.div_ceil(4096)];
        // SAFETY: mincore only reports on the range; it writes one byte per page into vec.
        let rc = unsafe { libc::mincore(addr as *mut libc::c_void, len, vec.as_mut_ptr()) };
        (rc == 0).then_some(vec)
    }

    /// Touches `kib` KiB of stack below the caller, and returns the lowest address touched.
    #[inline(never)]
    fn go_deep(kib: usize) -> usize {
        let mut page = [0u8; 1024];
        std::hint::black_box(&mut page)[0] = 1;
        let here = page.as_ptr() as usize;
        if kib <= 1 {
            here
        } else {
            go_deep(kib - 1).min(here)
        }
    }

    /// The stack pages a deep call touched stay resident after it returned, and go once
    /// trimmed; the caller's own frames stay.
    #[test]
    fn trimming_the_stack_gives_back_the_pages_below_the_caller() {
        std::thread::spawn(|| {
            let low = go_deep(64) & !(PAGE - 1);
            let marker = 0u8;
            let here = std::hint::black_box(&marker) as *const u8 as usize & !(PAGE - 1);
            let resident = |from: usize, to: usize| {
                residency(from, to - from)
                    .expect("the stack is mapped")
                    .iter()
                    .filter(|p| *p & 1 == 1)
                    .count()
            };
            let below = here - 2 * PAGE;
            assert_eq!(resident(low, below), (below - low) / PAGE, "the deep call's pages");
            trim_stack();
            assert_eq!(resident(low, below), 0, "given back");
            assert_eq!(resident(here, here + PAGE), 1, "the caller's page stays");
        })
        .join()
        .unwrap();
    }

    /// Pages of `b` the kernel holds in memory: the buffer's own cost (process RSS moves with
    /// whatever the test harness allocates).
    fn resident_pages(b: &PageBuffer) -> usize {
        let vec = residency(b.as_ptr() as usize, b.len()).expect("a live buffer is mapped");
        vec.iter().filter(|&&v| v & 1 == 1).count()
    }

    /// The unit tests beside it map and unmap buffers of the same size on other threads, which
    /// take the addresses this test frees at once (CI saw 98 of 400): it runs alone, in a
    /// process of its own (this test binary, asked for that one test).
    #[test]
    fn page_buffers_cost_memory_only_where_written() {
        let name = "sys::tests::page_buffers_alone";
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", name, "--test-threads=1"])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && said.contains("1 passed"), "{said}");
    }

    #[test]
    #[ignore = "run alone by page_buffers_cost_memory_only_where_written"]
    fn page_buffers_alone() {
        let mut bufs: Vec<PageBuffer> = (0..400).map(|_| PageBuffer::zeroed(CHUNK)).collect();
        // 400 x 64 KiB = 25 MiB if they were touched; a polled buffer gets nothing written.
        let resident: usize = bufs.iter().map(resident_pages).sum();
        assert_eq!(resident, 0, "{resident} pages resident before any write");
        assert!(bufs.iter().all(|b| b.len() == CHUNK && b[0] == 0 && b[CHUNK - 1] == 0));
        for b in &mut bufs {
            b[..5].copy_from_slice(b"bytes");
        }
        assert!(bufs.iter().all(|b| &b[..5] == b"bytes" && b[5] == 0));
        // The first page of each is written now (reading the last one maps at most the shared
        // zero page); nothing else of it costs memory.
        for b in &bufs {
            let pages = resident_pages(b);
            assert!((1..=2).contains(&pages), "{pages} pages resident after one write");
        }
        // Every mapping goes back when its buffer goes (nothing else runs in this process to
        // take the addresses).
        let ranges: Vec<(usize, usize)> =
            bufs.iter().map(|b| (b.as_ptr() as usize, b.len())).collect();
        drop(bufs);
        let still = ranges.iter().filter(|&&(a, l)| residency(a, l).is_some()).count();
        assert_eq!(still, 0, "{still} of 400 buffers still mapped after drop");
    }
}
