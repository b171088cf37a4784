//! Messages of every size and kind through the tunnel, with a real client and backend:
//! 1 byte to 16 MiB, text and binary, fragmented, ping/pong, the close handshake, many
//! connections at once, and both directions saturated at once (stock 2.4 deadlocks there).

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::Message;

fn echo_server() -> (Backend, Httpd) {
    let b = Backend::start("echo");
    let h =
        Httpd::start(Config::new("echo.conf.in").var("BACKEND", format!("127.0.0.1:{}", b.port())));
    (b, h)
}

#[tokio::test(flavor = "multi_thread")]
async fn sizes_from_1_byte_to_16_mib_text_and_binary() {
    let (_b, h) = echo_server();
    let (mut ws, _) = connect(&h.url("/echo/sizes")).await.unwrap();
    for n in [1usize, 125, 126, 127, 65535, 65536, 65537, 1 << 20, 16 << 20] {
        let bin = payload(n, 7);
        assert!(
            echo(&mut ws, Message::binary(bin.clone())).await == Message::binary(bin),
            "binary {n}"
        );
        let text: String = (0..n).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        assert!(
            echo(&mut ws, Message::text(text.clone())).await == Message::text(text),
            "text {n}"
        );
    }
    ws.close(None).await.unwrap();
    h.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn fragmented_messages_ping_pong_and_close_handshake() {
    let (_b, h) = echo_server();
    let (mut ws, _) = connect(&h.url("/echo/frames")).await.unwrap();
    // A text message in three frames.
    ws.send(Message::Frame(Frame::message(b"frag-".to_vec(), OpCode::Data(Data::Text), false)))
        .await
        .unwrap();
    ws.send(Message::Frame(Frame::message(b"men-".to_vec(), OpCode::Data(Data::Continue), false)))
        .await
        .unwrap();
    ws.send(Message::Frame(Frame::message(b"ted".to_vec(), OpCode::Data(Data::Continue), true)))
        .await
        .unwrap();
    let m =
        tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(m, Message::text("frag-men-ted"));
    // Ping: the backend's pong comes back with the same payload.
    ws.send(Message::Ping(b"are you there".to_vec().into())).await.unwrap();
    let m =
        tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(m, Message::Pong(b"are you there".to_vec().into()));
    // Close handshake: our close frame reaches the backend, its answer reaches us.
    ws.send(Message::Close(Some(CloseFrame { code: CloseCode::Away, reason: "bye".into() })))
        .await
        .unwrap();
    let m =
        tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
    match m {
        Message::Close(Some(f)) => {
            assert_eq!((f.code, f.reason.as_str()), (CloseCode::Away, "bye"))
        }
        other => panic!("expected the backend's close frame, got {other:?}"),
    }
    // ... and then the connection ends.
    let end = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap();
    assert!(matches!(end, None | Some(Err(_))), "{end:?}");
    h.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_large_messages_both_ways_never_stall() {
    let (_b, h) = echo_server();
    let (ws, _) = connect(&h.url("/echo/pipeline")).await.unwrap();
    let (mut tx, mut rx) = ws.split();
    const N: usize = 64;
    const SIZE: usize = 256 * 1024;
    // The writer never waits for echoes: 16 MiB in flight against the echo backend.
    let writer = tokio::spawn(async move {
        for i in 0..N {
            tx.send(Message::binary(payload(SIZE, i as u8))).await.unwrap();
        }
        tx
    });
    let reader = async {
        for i in 0..N {
            let m = rx.next().await.unwrap().unwrap();
            assert!(
                m == Message::binary(payload(SIZE, i as u8)),
                "message {i} corrupted or out of order"
            );
        }
    };
    tokio::time::timeout(Duration::from_secs(120), reader)
        .await
        .expect("tunnel stalled with both directions full");
    let _tx = writer.await.unwrap();
    h.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn many_tunnels_at_once() {
    let (_b, h) = echo_server();
    let url = h.url("/echo/many");
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let (mut ws, _) = connect(&url).await.unwrap();
                for j in 0..20 {
                    let m = Message::text(format!("{i}-{j}"));
                    assert_eq!(echo(&mut ws, m.clone()).await, m);
                }
                ws.close(None).await.ok();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    h.stop();
}
