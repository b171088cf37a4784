//! A WebSocket-aware relay (issue 27): the module's own Pings keep quiet clients alive and find
//! dead ones (a client process frozen with SIGSTOP), the backend never sees a Pong of ours,
//! every RFC 6455 section 5 rule ends the tunnel with its codes, and a message is bounded.
//! Synchronous tunnels on the main port, asynchronous ones on `ports[0]`.

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use wskit::backend::Event;
use wskit::raw;

fn server(b: &Backend) -> Httpd {
    Httpd::start(
        Config::new("frame_rules.conf.in")
            .ports(1)
            .var("BACKEND", format!("127.0.0.1:{}", b.port())),
    )
}

/// The main port (synchronous tunnels) and the asynchronous virtual host's.
fn both(h: &Httpd) -> [(u16, &'static str); 2] {
    [(h.port, "sync"), (h.ports[0], "async")]
}

fn closes(b: &Backend) -> Vec<Option<u16>> {
    b.events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Close(code) => Some(code),
            _ => None,
        })
        .collect()
}

fn pongs(b: &Backend) -> Vec<Vec<u8>> {
    b.events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Pong(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// Waits until the backend saw `n` Close frames; returns them.
fn wait_closes(b: &Backend, n: usize, t: Duration) -> Vec<Option<u16>> {
    let end = Instant::now() + t;
    loop {
        let c = closes(b);
        if c.len() >= n || Instant::now() > end {
            return c;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A raw client after its 101.
fn open_raw(port: u16, path: &str) -> (std::net::TcpStream, Vec<u8>) {
    let mut s = raw::connect(port);
    s.write_all(raw::handshake(path, "").as_bytes()).unwrap();
    let resp = raw::read_response(&mut s);
    assert_eq!(resp.status, 101, "{}", resp.head);
    (s, resp.rest)
}

/// Reads small frames until a Close; returns its code and the opcodes before it.
fn read_to_close(s: &mut std::net::TcpStream, pre: &mut Vec<u8>) -> (u16, Vec<u8>) {
    let mut before = Vec::new();
    loop {
        let (op, payload) = raw::read_small_frame(s, pre);
        if op == 8 {
            return (u16::from_be_bytes([payload[0], payload[1]]), before);
        }
        before.push(op);
    }
}

/// Pings every 300 ms keep a client that sends nothing (but answers them, as every WebSocket
/// client does) alive for 1.5 s; none of its Pongs reaches the backend, whose own Ping and
/// the client's answer to it pass untouched.
#[tokio::test(flavor = "multi_thread")]
async fn pings_keep_a_quiet_client_alive_and_its_pongs_stay_with_the_module() {
    let b = Backend::start("pings");
    let h = server(&b);
    for (port, mode) in both(&h) {
        let (mut ws, _) = connect(&format!("ws://127.0.0.1:{port}/ws/ping-client")).await.unwrap();
        let end = tokio::time::Instant::now() + Duration::from_millis(1500);
        let (mut ours, mut backends) = (0, 0);
        while let Ok(Some(m)) = tokio::time::timeout_at(end, ws.next()).await {
            match m.unwrap() {
                Message::Ping(p) if &p[..] == b"backend-ping" => backends += 1,
                Message::Ping(p) if p.len() == 12 => ours += 1,
                other => panic!("{mode}: {other:?}"),
            }
        }
        assert!(ours >= 3, "{mode}: {ours} Pings of the module in 1.5 s at 300 ms");
        assert_eq!(backends, 1, "{mode}: the backend's own Ping passes");
        let m = Message::text("still here");
        assert_eq!(echo(&mut ws, m.clone()).await, m, "{mode}");
        ws.close(None).await.ok();
        while let Some(Ok(_)) = ws.next().await {}
    }
    assert_eq!(pongs(&b), vec![b"backend-ping".to_vec(); 2], "only the backend's Pings' answers");
    let log = h.stop();
    assert_eq!(log.matches("WST02022").count(), 0, "{log}");
}

/// The client process for `a_frozen_client_is_found_dead`: opens a WebSocket, echoes once,
/// says READY, then reads (answering Pings) until it is stopped or killed.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by a_frozen_client_is_found_dead in a process of its own"]
async fn frozen_client_process() {
    let Ok(url) = std::env::var("WST_FROZEN_URL") else { return };
    let (mut ws, _) = connect(&url).await.unwrap();
    assert_eq!(echo(&mut ws, Message::text("hi")).await, Message::text("hi"));
    println!("READY");
    while let Some(Ok(_)) = ws.next().await {}
}

/// A client process (`frozen_client_process`, started through `launcher`, e.g. `ip netns exec
/// NAME`) for `url`, alive for a second while it answers the Pings; then `cut` stops it from
/// answering: within interval + timeout (and some slack) its backend gets Close 1001.
fn found_dead(
    b: &Backend,
    mode: &str,
    launcher: &[&str],
    url: &str,
    cut: impl FnOnce(&std::process::Child),
) {
    let seen = closes(b).len();
    let exe = std::env::current_exe().unwrap();
    let mut cmd = match launcher.split_first() {
        Some((program, args)) => {
            let mut c = std::process::Command::new(program);
            c.args(args).arg(exe);
            c
        }
        None => std::process::Command::new(exe),
    };
    let mut child = cmd
        .args(["--exact", "frozen_client_process", "--ignored", "--nocapture"])
        .env("WST_FROZEN_URL", url)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap().contains("READY")), "{mode}: the client did not start");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(closes(b).len(), seen, "{mode}: a live client was taken for dead");
    cut(&child);
    let t0 = Instant::now();
    let c = wait_closes(b, seen + 1, Duration::from_secs(5));
    let took = t0.elapsed();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(c.get(seen), Some(&Some(1001)), "{mode}: {c:?}");
    // A Ping is due at most 300 ms after the last answer, then 300 ms to answer.
    assert!(took < Duration::from_millis(1500), "{mode}: found after {took:?}");
}

/// A real client process, alive for a second (it answers the Pings), then frozen with
/// SIGSTOP: within interval + timeout its backend gets Close 1001 and the access log says
/// the proxy ended the tunnel; WST02022 says why.
#[test]
fn a_frozen_client_is_found_dead() {
    let b = Backend::start("frozen");
    let h = server(&b);
    for (port, mode) in both(&h) {
        let url = format!("ws://127.0.0.1:{port}/ws/frozen-{mode}");
        // SAFETY: the child's pid, ours to signal.
        found_dead(&b, mode, &[], &url, |c| unsafe {
            libc::kill(c.id() as i32, libc::SIGSTOP);
        });
    }
    assert!(h.wait_log("WST02022", Duration::from_secs(3)));
    let log = std::fs::read_to_string(h.root.join("closes_log")).unwrap_or_default();
    for mode in ["sync", "async"] {
        let want = format!("/ws/frozen-{mode} client=- backend=- by=proxy");
        assert!(
            wskit::httpd::wait_until(Duration::from_secs(3), || {
                std::fs::read_to_string(h.root.join("closes_log"))
                    .unwrap_or_default()
                    .contains(&want)
            }),
            "{want} in {log}"
        );
    }
    let log = h.stop();
    // WST02022 for the synchronous tunnel, WST02011 naming the same end for the other.
    assert_eq!(log.matches("client answered no Ping within 300ms").count(), 2, "{log}");
}

/// A length field with its top bit set (RFC 6455 §5.2) loses the breaker's frame positions:
/// nothing it sends after it can be told apart, a Close included, so none is waited for. The
/// client gets Close 1002 and the backend 1001 as for every broken rule, and the tunnel ends
/// as soon as the backend has answered, not at the 5 s bound for an answering Close.
#[test]
fn a_length_with_its_top_bit_set_ends_the_tunnel_without_waiting_for_a_close() {
    use std::io::Read;
    let b = Backend::start("topbit");
    let h = server(&b);
    for (n, (port, mode)) in both(&h).into_iter().enumerate() {
        let (mut s, mut pre) = open_raw(port, &format!("/ws/topbit-{mode}"));
        let mut bytes = raw::client_frame(1, b"good");
        bytes.extend([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0]);
        bytes.extend(raw::MASK);
        bytes.extend(b"what follows cannot be framed");
        let t0 = Instant::now();
        s.write_all(&bytes).unwrap();
        assert_eq!(read_to_close(&mut s, &mut pre).0, 1002, "{mode}");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rest = [0u8; 64];
        assert!(matches!(s.read(&mut rest), Ok(0)), "{mode}: the tunnel did not end");
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(2), "{mode}: ended after {took:?}");
        assert_eq!(wait_closes(&b, n + 1, Duration::from_secs(5)).last(), Some(&Some(1001)));
    }
    let log = h.stop();
    assert_eq!(log.matches("payload length with its top bit set").count(), 2, "{log}");
}

/// Every rule of RFC 6455 section 5, broken by the client after a good frame: the good frame
/// is echoed, the client gets Close 1002, the backend Close 1001, WST02021 names the rule.
#[test]
fn every_framing_violation_gets_its_close_codes() {
    let b = Backend::start("rules");
    let h = server(&b);
    let m = Some(raw::MASK);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("must be masked", raw::frame(1, true, b"plain", None)),
        ("reserved opcode", raw::frame(3, true, b"x", m)),
        ("RSV bit", {
            let mut f = raw::frame(1, true, b"x", m);
            f[0] |= 0x40;
            f
        }),
        ("fragmented control frame", raw::frame(9, false, b"", m)),
        ("control frame over 125 bytes", raw::frame(9, true, &[0; 126], m)),
        ("no message to continue", raw::frame(0, true, b"x", m)),
        ("new data frame inside", {
            let mut f = raw::frame(1, false, b"a", m);
            f.extend(raw::frame(1, true, b"b", m));
            f
        }),
    ];
    let mut n = 0;
    for (port, mode) in both(&h) {
        for (rule, bad) in &cases {
            let (mut s, mut pre) = open_raw(port, &format!("/ws/rule-{mode}"));
            let mut bytes = raw::client_frame(1, b"good");
            bytes.extend(bad);
            s.write_all(&bytes).unwrap();
            let (code, _) = read_to_close(&mut s, &mut pre);
            assert_eq!(code, 1002, "{mode}: {rule}");
            // As a client does: its Close answers, and the tunnel ends.
            s.write_all(&raw::client_frame(8, &code.to_be_bytes())).unwrap();
            n += 1;
            let c = wait_closes(&b, n, Duration::from_secs(5));
            assert_eq!(c.last(), Some(&Some(1001)), "{mode} {rule}: {c:?}");
            assert!(h.wait_log(rule, Duration::from_secs(3)), "{mode}: {rule} not logged");
        }
        // A backend that masks its frames: it gets 1002, the client 1001.
        let (mut s, mut pre) = open_raw(port, &format!("/ws/send-masked-{mode}"));
        assert_eq!(read_to_close(&mut s, &mut pre), (1001, vec![]), "{mode}");
        s.write_all(&raw::client_frame(8, &1001u16.to_be_bytes())).unwrap();
        n += 1;
        assert_eq!(wait_closes(&b, n, Duration::from_secs(5)).last(), Some(&Some(1002)));
    }
    let log = h.stop();
    assert_eq!(log.matches("broke a framing rule").count(), n, "{log}");
    assert!(log.contains("backend broke a framing rule: a server's frames must not be masked"));
}

/// A raw client's next data frame; the module's Pings that come first are answered and
/// counted in `pings`.
fn next_data(s: &mut std::net::TcpStream, pre: &mut Vec<u8>, pings: &mut u32) -> raw::Frame {
    loop {
        let f = raw::read_frame(s, pre);
        if f.opcode != 9 {
            return f;
        }
        *pings += 1;
        s.write_all(&raw::client_frame(10, &f.payload)).unwrap();
    }
}

/// Sends nothing for `t` but answers the module's Pings, as a client does between messages.
fn answer_pings_for(s: &mut std::net::TcpStream, pre: &mut Vec<u8>, pings: &mut u32, t: Duration) {
    use std::io::Read;
    let end = Instant::now() + t;
    let mut chunk = [0u8; 4096];
    while let Some(left) = end.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut chunk) {
            Ok(n) => pre.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => panic!("{e}"),
        }
        while let Some(f) = raw::take_frame(pre) {
            assert_eq!(f.opcode, 9, "only Pings come to a quiet client");
            *pings += 1;
            s.write_all(&raw::client_frame(10, &f.payload)).unwrap();
        }
    }
    s.set_read_timeout(None).unwrap();
}

/// permessage-deflate under strict frames (the Debian package's setting): the client's offer
/// reaches the backend and its answer the client, and compressed messages (RSV1 on a first
/// frame; one message in three frames) pass both ways under one compression context per
/// direction, the module's Pings between them; `ProxyWebsocketMaxMessageSize` counts what the
/// frames carry (a message of 17 MiB inflated, far less compressed, passes the 16M bound). RSV1
/// stays where RFC 7692 puts it: on a continuation frame it is refused with 1002, extension or
/// not.
#[test]
fn permessage_deflate_passes_strict_frames_both_ways() {
    use wskit::deflate::{compressed, Deflater, Inflater};
    let b = Backend::start("deflate");
    let h = server(&b);
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
    let m = Some(raw::MASK);
    for (port, mode) in both(&h) {
        let mut s = raw::connect(port);
        s.write_all(raw::handshake(&format!("/ws/deflate-{mode}"), offer).as_bytes()).unwrap();
        let resp = raw::read_response(&mut s);
        assert_eq!(resp.status, 101, "{}", resp.head);
        let answer = resp.header("Sec-WebSocket-Extensions");
        assert_eq!(answer.as_deref(), Some("permessage-deflate"), "{mode}: {}", resp.head);
        let (mut pre, mut pings) = (resp.rest, 0);
        let (mut tx, mut rx) = (Deflater::default(), Inflater::default());
        for i in 0..7 {
            let msg = match i {
                6 => "over the bound only once inflated; ".repeat((17 << 20) / 35 + 1),
                _ => format!("message {i} of the {mode} client; ").repeat(100 << i),
            };
            let z = tx.compress(msg.as_bytes());
            let bytes = match i {
                3 => {
                    let (a, rest) = z.split_at(z.len() / 3);
                    let (b, c) = rest.split_at(rest.len() / 2);
                    let mut f = compressed(raw::frame(1, false, a, m));
                    f.extend(raw::frame(0, false, b, m));
                    f.extend(raw::frame(0, true, c, m));
                    f
                }
                _ => compressed(raw::client_frame(1, &z)),
            };
            s.write_all(&bytes).unwrap();
            let f = next_data(&mut s, &mut pre, &mut pings);
            assert_eq!((f.fin, f.rsv, f.opcode), (true, 0x40, 1), "{mode}: message {i}");
            let echo = rx.inflate(&f.payload).unwrap_or_default();
            assert!(echo == msg.as_bytes(), "{mode}: message {i} came back otherwise");
            if i == 2 {
                answer_pings_for(&mut s, &mut pre, &mut pings, Duration::from_millis(700));
            }
        }
        assert!(pings >= 1, "{mode}: no Ping of the module between the messages");
        let mut bad = compressed(raw::frame(1, false, &tx.compress(b"x"), m));
        bad.extend(compressed(raw::frame(0, true, b"", m)));
        s.write_all(&bad).unwrap();
        let f = next_data(&mut s, &mut pre, &mut pings);
        assert_eq!((f.opcode, &f.payload[..2]), (8, &1002u16.to_be_bytes()[..]), "{mode}");
        s.write_all(&raw::client_frame(8, &1002u16.to_be_bytes())).unwrap();
    }
    let closes = wait_closes(&b, 2, Duration::from_secs(5));
    assert_eq!(closes, [Some(1001), Some(1001)]);
    let inflated = b.inflated();
    assert_eq!(inflated.len(), 14, "{inflated:?}");
    assert_eq!(inflated.iter().filter(|m| m.2 > 17 << 20).count(), 2, "{inflated:?}");
    assert_eq!(inflated.iter().filter(|m| m.1 == 3).count(), 2, "{inflated:?}");
    assert!(inflated.iter().all(|(wire, _, plain)| wire < plain), "{inflated:?}");
    let log = h.stop();
    let refused = "RSV bit that no negotiated extension defines";
    assert_eq!(log.matches(refused).count(), 2, "{log}");
    assert_eq!(log.matches("broke a framing rule").count(), 2, "{log}");
}

/// `ProxyWebsocketMaxMessageSize 16M`: a 16 MiB message passes both ways; one byte more is
/// refused with Close 1009 to its sender, 1001 to the backend.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_of_the_bound_passes_and_one_byte_more_is_refused() {
    let b = Backend::start("bound");
    let h = server(&b);
    for (i, (port, mode)) in both(&h).into_iter().enumerate() {
        let (mut ws, _) = connect(&format!("ws://127.0.0.1:{port}/ws/bound")).await.unwrap();
        let m = Message::binary(payload(16 << 20, 3));
        assert_eq!(echo(&mut ws, m.clone()).await, m, "{mode}: 16 MiB passes");
        // Sent while reading: the proxy refuses the message from its header and reads no more
        // of it, so the client learns why while its send is still under way.
        let (mut tx, mut rx) = ws.split();
        let send = tokio::spawn(async move {
            let _ = tx.send(Message::binary(payload((16 << 20) + 1, 4))).await;
        });
        match next_data_or_close(&mut rx).await {
            Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1009, "{mode}"),
            other => panic!("{mode}: {other:?}"),
        }
        send.abort();
        assert_eq!(wait_closes(&b, i + 1, Duration::from_secs(5)).last(), Some(&Some(1001)));
    }
    let log = h.stop();
    assert_eq!(log.matches("message over ProxyWebsocketMaxMessageSize").count(), 2, "{log}");
}

async fn next_data_or_close(
    ws: &mut (impl futures_util::Stream<Item = tokio_tungstenite::tungstenite::Result<Message>> + Unpin),
) -> Message {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), ws.next()).await.unwrap();
        match m {
            Some(Ok(m)) if m.is_ping() || m.is_pong() => continue,
            Some(Ok(m)) => return m,
            other => panic!("{other:?}"),
        }
    }
}

/// Through TLS ends (wss:// clients, to ws:// and wss:// backends, in the request thread and
/// asynchronously): a client that answers stays alive through the Pings, one that never
/// reads again is found dead and its backend gets Close 1001.
#[tokio::test(flavor = "multi_thread")]
async fn pings_work_through_tls_ends() {
    let site = tls_site("pings-tls", "frame_rules_tls.conf.in", |c| c.ports(2));
    let h = &site.h;
    let mut dead = 0;
    for (port, mode) in [(h.ports[0], "sync"), (h.ports[1], "async")] {
        for (prefix, backend) in [("/ws/", &site.b), ("/wss/", &site.tb)] {
            let what = format!("{mode} {prefix}");
            let url = format!("wss://localhost:{port}{prefix}alive");
            let (mut ws, _) = connect_tls(&url, &site.pki).await.unwrap();
            let end = tokio::time::Instant::now() + Duration::from_millis(1500);
            let mut pings = 0;
            while let Ok(Some(m)) = tokio::time::timeout_at(end, ws.next()).await {
                assert!(matches!(m.unwrap(), Message::Ping(p) if p.len() == 12), "{what}");
                pings += 1;
            }
            assert!(pings >= 3, "{what}: {pings} Pings");
            let m = Message::text("alive");
            assert_eq!(echo(&mut ws, m.clone()).await, m, "{what}");
            ws.close(None).await.ok();
            while let Some(Ok(_)) = ws.next().await {}
            let before = closes(backend).len();
            // A client that never reads nor writes again.
            let (frozen, _) = tls_tunnel(port, &site.pki, &format!("{prefix}frozen")).await;
            let t0 = Instant::now();
            let c = wait_closes(backend, before + 1, Duration::from_secs(5));
            assert_eq!(c.get(before), Some(&Some(1001)), "{what}: {c:?}");
            assert!(t0.elapsed() < Duration::from_millis(1500), "{what}: {:?}", t0.elapsed());
            drop(frozen);
            dead += 1;
        }
    }
    assert!(h.wait_log("answered no Ping", Duration::from_secs(3)));
    assert!(wskit::httpd::wait_until(Duration::from_secs(5), || {
        h.error_log().matches("client answered no Ping").count() == dead
    }));
    assert!(pongs(&site.b).is_empty() && pongs(&site.tb).is_empty(), "a Pong of ours passed");
}

/// A network namespace with one end of a veth pair, the other end here; removed on drop.
struct Netns {
    name: String,
    host_if: String,
    host_addr: String,
    ns_addr: String,
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip").args(args).output().expect("ip (Debian: iproute2)");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Netns {
    fn new() -> Netns {
        let id = std::process::id();
        let (name, host_if, ns_if) =
            (format!("wst-{id}"), format!("wsth{}", id % 100_000), format!("wstn{}", id % 100_000));
        let net = format!("10.231.{}", id % 250);
        let n = Netns {
            name: name.clone(),
            host_if: host_if.clone(),
            host_addr: format!("{net}.1"),
            ns_addr: format!("{net}.2"),
        };
        ip(&["netns", "add", &name]);
        ip(&["link", "add", &host_if, "type", "veth", "peer", "name", &ns_if]);
        ip(&["link", "set", &ns_if, "netns", &name]);
        ip(&["addr", "add", &format!("{}/30", n.host_addr), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&["-n", &name, "addr", "add", &format!("{}/30", n.ns_addr), "dev", &ns_if]);
        ip(&["-n", &name, "link", "set", &ns_if, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        n
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["link", "del", &self.host_if]).status();
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A client whose network vanishes (its veth brought down: no FIN, no reset, nothing) is
/// found dead within interval + timeout, and its backend gets Close 1001. The client runs in a
/// network namespace of its own on this machine; nothing leaves it.
#[test]
fn a_client_cut_off_the_network_is_found_dead() {
    let ns = Netns::new();
    let b = Backend::start("netns");
    let h = Httpd::start(
        Config::new("frame_rules_netns.conf.in")
            .ports(2)
            .var("BACKEND", format!("127.0.0.1:{}", b.port()))
            .var("HOSTADDR", &ns.host_addr),
    );
    for (port, mode) in [(h.ports[0], "sync"), (h.ports[1], "async")] {
        ip(&["link", "set", &ns.host_if, "up"]);
        let url = format!("ws://{}:{port}/ws/cut-{mode}", ns.host_addr);
        found_dead(&b, mode, &["ip", "netns", "exec", &ns.name], &url, |_| {
            ip(&["link", "set", &ns.host_if, "down"])
        });
    }
    let log = h.stop();
    assert_eq!(log.matches("client answered no Ping within 300ms").count(), 2, "{log}");
}
