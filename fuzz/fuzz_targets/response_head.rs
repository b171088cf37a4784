//! The backend's response head and the body framing of a refused upgrade.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mod_proxy_wstunnel::response::{framing, parse_head, BodyDecoder, MAX_HEAD};

fuzz_target!(|data: &[u8]| {
    let Ok((head, len)) = parse_head(data) else { return };
    assert!(len <= data.len() && len <= MAX_HEAD + 4);
    assert!((100..=999).contains(&head.status));
    let Ok(f) = framing(&head, data.first().is_some_and(|b| b & 1 == 1)) else { return };
    let mut dec = BodyDecoder::new(f);
    let mut out = Vec::new();
    let rest = &data[len..];
    // Feed in uneven pieces: the decoder must not care where reads split.
    let mut at = 0;
    let mut step = 1;
    while at < rest.len() && !dec.is_done() {
        let end = (at + step).min(rest.len());
        if dec.feed(&rest[at..end], &mut out).is_err() {
            return;
        }
        at = end;
        step = step * 3 % 17 + 1;
    }
    assert!(out.len() <= rest.len(), "decoded body longer than its input");
    let _ = dec.eof_ok();
});
