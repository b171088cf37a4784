//! One conformance suite for every driver: each case runs through the poll driver
//! (`relay::run` on a thread of its own) and the runtime driver (`detached`'s task on a
//! runtime), with raw ends and with ends through filters (a stand-in that buffers input and
//! output as mod_ssl does, `filters::stand_in`), over real TCP sockets on loopback. httpd's
//! own filters (mod_ssl, mod_http2) are the integration tests' (tests/tls.rs,
//! tests/tls_async.rs, tests/drain.rs, tests/http2.rs).

use super::core::{Buffers, Core, End, Side, Tick};
use super::detached::{relay as runtime_relay, FilteredEnd, Phase, Socket};
use super::filters::stand_in::Buffering;
use super::limits::Timeouts;
use super::relay::{self, Ends, Peer, Stops};
use crate::frames::{close_frame, Frames};
use crate::status::Meter;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use wskit::sockets::{pairs, read_all};

#[derive(Debug, Clone, Copy)]
enum Driver {
    Poll,
    Runtime,
    /// Both ends through the buffering stand-in for httpd's filters.
    PollFiltered,
    RuntimeFiltered,
}

const DRIVERS: [Driver; 4] =
    [Driver::Poll, Driver::Runtime, Driver::PollFiltered, Driver::RuntimeFiltered];

/// How a relay is set up for a case.
#[derive(Clone, Copy, Default)]
struct Setup {
    timeouts: Timeouts,
    /// WebSocket framing tracked.
    frames: bool,
    /// The drain lets the tunnel end politely (else it ends at once).
    polite: bool,
}

/// A relay running on its own thread, and the child's drain signal for it.
struct Running {
    join: JoinHandle<(u64, u64, End)>,
    stop: OwnedFd,
    phase: tokio::sync::watch::Sender<Phase>,
    setup: Setup,
}

impl Running {
    /// The child starts draining.
    fn drain(&self) {
        crate::sys::eventfd_signal(self.stop.as_raw_fd());
        self.phase.send_replace(if self.setup.polite { Phase::Polite } else { Phase::Stop });
    }

    fn done(self) -> (u64, u64, End) {
        self.join.join().expect("the relay panicked")
    }
}

fn polite_for_5s() -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(5))
}

/// The stand-in on the runtime: nothing to wait for, nothing to do at the end.
impl FilteredEnd for Buffering {
    fn let_go(&self) -> bool {
        true
    }
    fn handed_over(&mut self) {}
    fn ended(&mut self) {}
    fn finish(self: Box<Self>) {}
}

fn start(driver: Driver, rc: TcpStream, rb: TcpStream, setup: Setup) -> Running {
    let stop = crate::sys::eventfd().expect("an eventfd");
    let stop_fd = stop.as_raw_fd();
    let (phase, rx) = tokio::sync::watch::channel(Phase::Run);
    let frames = setup.frames.then(|| (Frames::default(), Frames::default()));
    let join = thread::spawn(move || match driver {
        Driver::Poll | Driver::PollFiltered => {
            let polite: fn() -> Option<Instant> =
                if setup.polite { polite_for_5s } else { || None };
            let stops = Stops { stop_fd: Some(stop_fd), polite: Some(polite), ..Stops::default() };
            let (mut cf, mut bf) = (filtered(&rc), filtered(&rb));
            let filtered_ends = matches!(driver, Driver::PollFiltered);
            let ends = Ends {
                client: peer(filtered_ends, &rc, &mut cf),
                backend: peer(filtered_ends, &rb, &mut bf),
                core: relay::core(setup.timeouts, frames, &[]),
                meter: Meter::default(),
            };
            let out = relay::run(ends, stops);
            drop((rc, rb));
            let (c2b, b2c) = out.moved();
            (c2b, b2c, out.end)
        }
        Driver::Runtime | Driver::RuntimeFiltered => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (core, end) = if matches!(driver, Driver::Runtime) {
                rt.block_on(runtime_relay(
                    Socket::Own(OwnedFd::from(rc)),
                    [None, None],
                    Socket::Own(OwnedFd::from(rb)),
                    Box::new(runtime_core(setup.timeouts, frames)),
                    Meter::default(),
                    rx,
                ))
            } else {
                let (mut cf, mut bf) = (filtered(&rc), filtered(&rb));
                let out = rt.block_on(runtime_relay(
                    Socket::Lent(rc.as_raw_fd()),
                    [Some(&mut cf), Some(&mut bf)],
                    Socket::Lent(rb.as_raw_fd()),
                    Box::new(runtime_core(setup.timeouts, frames)),
                    Meter::default(),
                    rx,
                ));
                drop((rc, rb));
                out
            };
            let (c2b, b2c) = core.moved();
            (c2b, b2c, end)
        }
    });
    Running { join, stop, phase, setup }
}

/// A core as the runtime makes one for a tunnel that starts there.
fn runtime_core(timeouts: Timeouts, frames: Option<(Frames, Frames)>) -> Core {
    Core::new(timeouts, Buffers::Share, frames, &[], Tick::now())
}

/// `s` as the poll driver's end: raw, or through the stand-in `f`.
fn peer<'a>(filtered: bool, s: &TcpStream, f: &'a mut Buffering) -> Peer<'a> {
    match filtered {
        true => Peer::Filtered { poll_fd: s.as_raw_fd(), filters: f },
        false => Peer::Raw { fd: s.as_raw_fd(), buffered: None },
    }
}

/// The stand-in for httpd's filters over `s` (non-blocking, as httpd's sockets are).
fn filtered(s: &TcpStream) -> Buffering {
    s.set_nonblocking(true).unwrap();
    Buffering::new(s.as_raw_fd())
}

/// A binary frame with `len` payload bytes, masked (client to backend) or not.
fn frame(len: usize, masked: bool) -> Vec<u8> {
    wskit::raw::frame(2, true, &wskit::raw::pattern(len), masked.then_some(wskit::raw::MASK))
}

/// Whether `close` is a masked Close 1001 (what goes to the backend).
fn is_masked_going_away(close: &[u8]) -> bool {
    close.len() == 8
        && close[0] == 0x88
        && close[1] == 0x82
        && [close[6] ^ close[2], close[7] ^ close[3]] == [0x03, 0xe9]
}

#[test]
fn half_close_passes_each_way_after_every_earlier_byte() {
    for driver in DRIVERS {
        let ((mut cl, rc), (rb, mut be)) = pairs();
        let r = start(driver, rc, rb, Setup::default());
        cl.write_all(b"from the client").unwrap();
        cl.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_all(&mut be), b"from the client", "{driver:?}");
        // The other direction keeps flowing after the client's FIN.
        be.write_all(b"from the backend").unwrap();
        be.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_all(&mut cl), b"from the backend", "{driver:?}");
        let (c2b, b2c, end) = r.done();
        assert!(matches!(end, End::Closed), "{driver:?}: {end:?}");
        assert_eq!((c2b, b2c), (15, 16), "{driver:?}");
    }
}

/// Each side writes 8 MiB before reading anything: only independent, back-pressured
/// directions finish; big reads take the bulk (splice) path.
#[test]
fn both_directions_at_once_never_deadlock() {
    const N: usize = 8 << 20;
    let data: Vec<u8> = (0..N).map(|i| (i % 251) as u8).collect();
    for driver in DRIVERS {
        let ((cl, rc), (rb, be)) = pairs();
        let r = start(driver, rc, rb, Setup::default());
        let writer = |mut s: TcpStream, d: Vec<u8>| {
            thread::spawn(move || {
                s.write_all(&d).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
            })
        };
        let reader = |mut s: TcpStream| thread::spawn(move || read_all(&mut s));
        let (w1, w2) = (
            writer(cl.try_clone().unwrap(), data.clone()),
            writer(be.try_clone().unwrap(), data.clone()),
        );
        let (r1, r2) = (reader(cl), reader(be));
        w1.join().unwrap();
        w2.join().unwrap();
        assert!(
            r1.join().unwrap() == data && r2.join().unwrap() == data,
            "{driver:?}: bytes lost or reordered"
        );
        let (c2b, b2c, end) = r.done();
        assert!(matches!(end, End::Closed), "{driver:?}: {end:?}");
        assert_eq!((c2b, b2c), (N as u64, N as u64), "{driver:?}");
    }
}

/// Frames of 0 B to 16 MiB, copied and spliced: the bytes arrive intact, and the frame
/// boundaries are still known at the end (the polite end closes right behind the last frame).
#[test]
fn frames_of_every_size_pass_and_their_boundaries_stay_known() {
    let mut stream = Vec::new();
    for len in [1, 10, 125, 126, 300_000, 5, 65_536, 70_000, 0, 1_000_000, 16 << 20, 3] {
        stream.extend(frame(len, true));
    }
    for driver in DRIVERS {
        let ((mut cl, rc), (rb, mut be)) = pairs();
        let r = start(driver, rc, rb, Setup { frames: true, polite: true, ..Setup::default() });
        let sent = stream.clone();
        let w = thread::spawn(move || {
            cl.write_all(&sent).unwrap();
            cl
        });
        let mut got = vec![0u8; stream.len()];
        be.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        be.read_exact(&mut got).unwrap();
        assert!(got == stream, "{driver:?}: bytes lost or reordered");
        let mut cl = w.join().unwrap();
        r.drain();
        assert_eq!(read_all(&mut cl), close_frame(1001, None), "{driver:?}");
        assert!(
            is_masked_going_away(&read_all(&mut be)),
            "{driver:?}: the Close follows the last frame at once"
        );
        cl.write_all(&close_frame(1001, Some([1, 2, 3, 4]))).unwrap();
        be.write_all(&close_frame(1001, None)).unwrap();
        let (c2b, _, end) = r.done();
        assert!(matches!(end, End::GoingAway), "{driver:?}: {end:?}");
        assert_eq!(c2b, stream.len() as u64 + 8, "{driver:?}");
    }
}

/// The polite end with a frame half in flight: the resting direction gets its Close at once,
/// the busy one after the rest of its frame; both answer, and the tunnel went away politely.
#[test]
fn the_polite_end_closes_each_side_at_its_next_frame_boundary() {
    let f = frame(70_000, true);
    let half = f.len() / 2;
    for driver in DRIVERS {
        let ((mut cl, rc), (rb, mut be)) = pairs();
        let r = start(driver, rc, rb, Setup { frames: true, polite: true, ..Setup::default() });
        cl.write_all(&f[..half]).unwrap();
        let mut got = vec![0u8; half];
        be.read_exact(&mut got).unwrap();
        r.drain();
        assert_eq!(
            read_all(&mut cl),
            close_frame(1001, None),
            "{driver:?}: the client is between frames"
        );
        thread::sleep(Duration::from_millis(100));
        cl.write_all(&f[half..]).unwrap();
        let rest = read_all(&mut be);
        let (tail, close) = rest.split_at(f.len() - half);
        assert!(tail == &f[half..], "{driver:?}: the frame in flight arrives whole");
        assert!(is_masked_going_away(close), "{driver:?}: {close:?}");
        cl.write_all(&close_frame(1001, Some([1, 2, 3, 4]))).unwrap();
        be.write_all(&close_frame(1001, None)).unwrap();
        let (_, _, end) = r.done();
        assert!(matches!(end, End::GoingAway), "{driver:?}: {end:?}");
    }
}

#[test]
fn a_drain_ends_a_tunnel_without_framing_at_once() {
    for (driver, polite) in DRIVERS.into_iter().flat_map(|d| [(d, true), (d, false)]) {
        let ((_cl, rc), (rb, _be)) = pairs();
        let r = start(driver, rc, rb, Setup { polite, ..Setup::default() });
        thread::sleep(Duration::from_millis(50));
        let t0 = Instant::now();
        r.drain();
        let (_, _, end) = r.done();
        assert!(matches!(end, End::Shutdown), "{driver:?}: {end:?}");
        assert!(t0.elapsed() < Duration::from_secs(1), "{driver:?}");
    }
}

#[test]
fn a_reset_on_one_side_ends_the_tunnel_promptly() {
    for driver in DRIVERS {
        let ((cl, rc), (rb, mut be)) = pairs();
        let r = start(driver, rc, rb, Setup::default());
        // Then close: an RST.
        crate::sys::set_linger_zero(cl.as_raw_fd());
        drop(cl);
        let (_, _, end) = r.done();
        assert!(matches!(end, End::Failed(Side::Client, _) | End::Closed), "{driver:?}: {end:?}");
        // The backend sees the end of its stream once the relay's sockets are closed.
        read_all(&mut be);
    }
}

#[test]
fn the_idle_limit_fires_and_traffic_defers_it() {
    for driver in DRIVERS {
        let ((mut cl, rc), (rb, mut be)) = pairs();
        let t0 = Instant::now();
        let setup = Setup {
            timeouts: Timeouts {
                idle: Some(Duration::from_millis(300)),
                write_stall: None,
                ping: None,
            },
            ..Setup::default()
        };
        let r = start(driver, rc, rb, setup);
        for _ in 0..4 {
            thread::sleep(Duration::from_millis(150));
            cl.write_all(b"x").unwrap();
            let mut b = [0u8; 1];
            be.read_exact(&mut b).unwrap();
        }
        let (c2b, _, end) = r.done();
        assert!(
            matches!(end, End::Idle(d) if d == Duration::from_millis(300)),
            "{driver:?}: {end:?}"
        );
        assert!(t0.elapsed() >= Duration::from_millis(850), "{driver:?}: {:?}", t0.elapsed());
        assert_eq!(c2b, 4, "{driver:?}");
        assert!(read_all(&mut cl).is_empty(), "{driver:?}: both sockets closed");
    }
}

/// A side that takes nothing stalls its writer (no memory grows) and, after the write-stall
/// limit, ends the tunnel naming that side, whatever the other side sends.
#[test]
fn a_reader_that_takes_nothing_ends_the_tunnel_after_the_write_stall() {
    for driver in DRIVERS {
        let ((cl, rc), (rb, mut be)) = pairs();
        let setup = Setup {
            timeouts: Timeouts {
                idle: None,
                write_stall: Some(Duration::from_millis(400)),
                ping: None,
            },
            ..Setup::default()
        };
        let r = start(driver, rc, rb, setup);
        let flood = thread::spawn(move || {
            be.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
            let block = vec![7u8; 65536];
            let mut sent = 0usize;
            while sent < (256 << 20) && be.write_all(&block).is_ok() {
                sent += block.len();
            }
            sent
        });
        let t0 = Instant::now();
        let (_, b2c, end) = r.done();
        assert!(
            matches!(end, End::WriteStalled(Side::Client, d) if d == Duration::from_millis(400)),
            "{driver:?}: {end:?}"
        );
        assert!(
            t0.elapsed() >= Duration::from_millis(350) && t0.elapsed() < Duration::from_secs(5),
            "{driver:?}: {:?}",
            t0.elapsed()
        );
        assert!(b2c < 64 << 20, "{driver:?}: {b2c} bytes went into a stalled tunnel");
        drop(cl);
        assert!(flood.join().unwrap() < 256 << 20, "{driver:?}");
    }
}
