//! WebSockets over HTTP/2 (RFC 8441): an extended CONNECT with `:protocol websocket` on an
//! h2 connection (cleartext prior knowledge or TLS with ALPN `h2`), the stream's DATA frames
//! then carrying the WebSocket frames. Built on the `h2` crate; the stream is bridged to a
//! tokio duplex pipe, over which tungstenite speaks WebSocket ([`connect`]) or a test its own
//! frames ([`connect_raw`]).

use bytes::Bytes;
pub use h2::Error;
pub use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

/// How an extended CONNECT ended.
pub enum H2Outcome<S = WebSocketStream<DuplexStream>> {
    /// 200: a WebSocket over the stream.
    Open(S),
    /// The server did not enable extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL).
    NotEnabled,
    /// The server answered with this status (and this body).
    Refused(u16, String),
}

/// Speaks HTTP/2 on `io` and asks for a WebSocket at `https_or_http://authority/path`.
pub async fn connect<T>(io: T, url: &str, cfg: WebSocketConfig) -> Result<H2Outcome, h2::Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    Ok(match connect_raw(io, url, &[]).await? {
        H2Outcome::Open((pipe, _)) => {
            H2Outcome::Open(WebSocketStream::from_raw_socket(pipe, Role::Client, Some(cfg)).await)
        }
        H2Outcome::NotEnabled => H2Outcome::NotEnabled,
        H2Outcome::Refused(status, body) => H2Outcome::Refused(status, body),
    })
}

/// The same with `headers` added to the CONNECT: the stream as a pipe of raw WebSocket frames
/// and the answer's headers.
pub async fn connect_raw<T>(
    io: T,
    url: &str,
    headers: &[(&'static str, &str)],
) -> Result<H2Outcome<(DuplexStream, http::HeaderMap)>, h2::Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = h2::client::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    // The server's SETTINGS arrive with the first exchange; wait until the handle is ready.
    let mut send = send.ready().await?;
    if !send.is_extended_connect_protocol_enabled() {
        // One round trip more: SETTINGS may not have been processed yet.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        if !send.is_extended_connect_protocol_enabled() {
            return Ok(H2Outcome::NotEnabled);
        }
    }
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(url)
        .header("sec-websocket-version", "13");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let mut req = req.body(()).unwrap();
    req.extensions_mut().insert(h2::ext::Protocol::from_static("websocket"));
    let (resp, mut tx) = send.send_request(req, false)?;
    let resp = resp.await?;
    let status = resp.status().as_u16();
    let answer = resp.headers().clone();
    let mut rx = resp.into_body();
    if status != 200 {
        let mut body = Vec::new();
        while let Some(chunk) = rx.data().await {
            let chunk = chunk?;
            let _ = rx.flow_control().release_capacity(chunk.len());
            body.extend_from_slice(&chunk);
        }
        return Ok(H2Outcome::Refused(status, String::from_utf8_lossy(&body).into_owned()));
    }
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (mut pipe_rx, mut pipe_tx) = tokio::io::split(theirs);
    // Stream → pipe, returning flow-control credit as bytes are taken.
    tokio::spawn(async move {
        while let Some(Ok(chunk)) = rx.data().await {
            let _ = rx.flow_control().release_capacity(chunk.len());
            if pipe_tx.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = pipe_tx.shutdown().await;
    });
    // Pipe → stream, sending only what the peer's window allows.
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16384];
        loop {
            let n = match pipe_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut off = 0;
            while off < n {
                tx.reserve_capacity(n - off);
                let cap = match std::future::poll_fn(|cx| tx.poll_capacity(cx)).await {
                    Some(Ok(0)) => continue,
                    Some(Ok(c)) => c,
                    _ => return,
                };
                if tx.send_data(Bytes::copy_from_slice(&buf[off..off + cap]), false).is_err() {
                    return;
                }
                off += cap;
            }
        }
        let _ = tx.send_data(Bytes::new(), true);
    });
    Ok(H2Outcome::Open((ours, answer)))
}
