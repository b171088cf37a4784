//! Why a tunnel ended, and its two sides: the words every driver logs and the message ids of
//! the end lines. The core decides the end; the summary (`summary`) and the drivers report it.

use crate::frame_rules::Violation;
use std::io;
use std::time::Duration;

/// One end of a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Backend,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Backend => "backend",
        }
    }

    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Backend,
            Side::Backend => Side::Client,
        }
    }

    /// 0 for the client, 1 for the backend: the index of the direction this side sends.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why a tunnel ended, whichever driver relayed it.
#[derive(Debug)]
pub enum End {
    /// Both directions finished with a FIN.
    Closed,
    /// A read or write on this side failed (reset, broken pipe, ...).
    Failed(Side, io::Error),
    /// No byte either way for this long (`ProxyWebsocketIdleTimeout`).
    Idle(Duration),
    /// Bytes waited this long for this side, which took none.
    WriteStalled(Side, Duration),
    /// The httpd child is stopping.
    Shutdown,
    /// The httpd child is stopping and both sides got a WebSocket Close (1001, or their
    /// peer's own) at a frame boundary and answered with theirs.
    GoingAway,
    /// The hand-over moment passed with nothing in flight: the sockets may change hands.
    Handoff,
    /// This side broke a framing rule (`ProxyWebsocketStrictFrames`,
    /// `ProxyWebsocketMaxMessageSize`): it got a Close with the violation's code, the other
    /// side a Close 1001.
    Broke(Side, Violation),
    /// The client answered no Ping of the module within this long
    /// (`ProxyWebsocketPingTimeout`): the backend got a Close 1001.
    DeadClient(Duration),
}

impl End {
    /// The error log's message id for this end.
    pub fn id(&self) -> &'static str {
        match self {
            End::Closed => "WST02001",
            End::Failed(..) => "WST02003",
            End::Idle(_) => "WST02004",
            End::WriteStalled(..) => "WST02005",
            End::Shutdown => "WST02007",
            End::GoingAway => "WST02014",
            End::Handoff => "WST02010",
            End::Broke(..) => "WST02021",
            End::DeadClient(_) => "WST02022",
        }
    }

    /// Whether an administrator wants to hear of it at `info` (else `debug`): the ends that
    /// httpd, not a peer, chose.
    pub fn is_notable(&self) -> bool {
        !matches!(self, End::Closed | End::Failed(..) | End::Handoff)
    }

    /// What happened, in the words every driver logs.
    pub fn describe(&self) -> String {
        match self {
            End::Closed => "tunnel closed by both sides".into(),
            End::Failed(side, e) => format!("tunnel ended: {} connection failed: {e}", side.name()),
            End::Idle(d) => {
                format!("tunnel idle for {d:?} (ProxyWebsocketIdleTimeout): closing both sides")
            }
            End::WriteStalled(side, d) => format!(
                "{} took no data for {d:?} (Timeout/ProxyTimeout): closing both sides",
                side.name()
            ),
            End::Shutdown => "httpd child is stopping: tunnel closed".into(),
            End::GoingAway => {
                "httpd child is stopping: both sides closed with WebSocket Close 1001 (Going Away)"
                    .into()
            }
            End::Handoff => "tunnel handed to the asynchronous relay".into(),
            End::Broke(side, v) => format!(
                "{} broke a framing rule: {}: sent it Close {}, the other side Close 1001",
                side.name(),
                v.rule,
                v.code
            ),
            End::DeadClient(d) => format!(
                "client answered no Ping within {d:?} (ProxyWebsocketPingTimeout): taken for dead, \
                 backend sent Close 1001"
            ),
        }
    }

    /// Whether the client connection should be closed at once, without httpd's lingering
    /// close: the tunnel is over on both sides, or one of them is gone.
    pub fn abort_client(&self) -> bool {
        !matches!(self, End::Closed)
    }
}
