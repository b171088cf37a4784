//! WebSocket frame tracking (src/frames.rs) on any byte stream: where the boundaries are, the
//! messages counted and the Close code read must not depend on how the stream is cut into
//! reads, and bounded reads (`to_boundary`, `skip` for spliced payloads) stop exactly there.
//! Checked directions (strict framing, a message bound, the module's Pongs watched): the first
//! broken rule and every Pong are found at the same stream offsets in any chunking, and what
//! is held back never exceeds a header and a Pong.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mod_proxy_wstunnel::frame_rules::{Rules, Violation};
use mod_proxy_wstunnel::frames::{Event, Frames, MAX_HEADER, PING_LEN};

/// Feeds `stream` in pieces of `piece` bytes to a checked direction: the offsets (just past)
/// where Pongs ended, and the first broken rule with its offset (nothing is fed after it).
fn checked(stream: &[u8], piece: usize, rules: Rules) -> (Vec<usize>, Option<(usize, Violation)>) {
    let mut f = Frames::checked(Some(rules));
    f.watch_pongs();
    let (mut pongs, mut fed) = (Vec::new(), 0);
    for chunk in stream.chunks(piece) {
        let mut at = 0;
        while at < chunk.len() {
            let (n, event) = f.feed_checked(&chunk[at..]);
            at += n;
            assert!(f.held() <= (fed + at).min(MAX_HEADER + PING_LEN));
            match event {
                Event::None => {}
                Event::Pong { frame_len, .. } => {
                    assert!(frame_len <= fed + at);
                    pongs.push(fed + at);
                }
                Event::Broke(v) => return (pongs, Some((fed + at, v))),
            }
        }
        fed += chunk.len();
    }
    (pongs, None)
}

/// What a stream fed to `f` left behind: boundaries seen after each read and the totals.
fn facts(f: &Frames) -> (bool, bool, u64, Option<u16>, bool) {
    (f.at_boundary(), f.lost(), f.messages(), f.close_code(), f.close_seen())
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else { return };
    let mut whole = Frames::default();
    whole.feed(stream);
    // The same stream in pieces of a size taken from the first byte.
    let mut pieces = Frames::default();
    for chunk in stream.chunks(cut as usize % 31 + 1) {
        pieces.feed(chunk);
    }
    assert_eq!(facts(&whole), facts(&pieces));
    // As a relay reads it: never past a boundary in one read, payloads skipped (spliced).
    let mut relay = Frames::default();
    let mut at = 0;
    while at < stream.len() {
        let step = relay.to_boundary().min(stream.len() - at).min(cut as usize % 7 + 1);
        if relay.payload_left() > 0 && !relay.lost() {
            relay.skip(step);
        } else {
            relay.feed(&stream[at..at + step]);
        }
        at += step;
    }
    // Boundaries and messages agree (a Close's code is read only from fed bytes).
    let agreed = |f: &Frames| (f.at_boundary(), f.lost(), f.messages(), f.close_seen());
    assert_eq!(agreed(&relay), agreed(&whole));
    // A Close that passed has a code (1005 when it carried none).
    assert_eq!(whole.close_seen(), whole.close_code().is_some());
    let max = Some(cut as u64 * 8 + 1);
    let (client, _) = Rules::for_tunnel(cut & 1 == 1, max, None).expect("a bound is set");
    assert_eq!(
        checked(stream, stream.len().max(1), client),
        checked(stream, cut as usize % 13 + 1, client)
    );
});
