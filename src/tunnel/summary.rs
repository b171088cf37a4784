//! Why a WebSocket tunnel ended, as the logs say it: the status code in each side's Close
//! frame, who ended it, and the messages each way. Every driver's end goes through
//! [`Summary::of`]; the request's environment (`wstunnel-*`, for `%{...}e` in any
//! `LogFormat`), the end lines (`WST02001`...) and `WST02011` all use it.

use super::end::{End, Side};
use crate::frames::Frames;
use std::sync::atomic::{AtomicU64, Ordering};

/// Who ended a tunnel: the side that first sent its Close (or its FIN, or failed), or the
/// proxy (a limit, a drain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    Client,
    Backend,
    Proxy,
}

impl EndedBy {
    pub fn name(self) -> &'static str {
        match self {
            EndedBy::Client => "client",
            EndedBy::Backend => "backend",
            EndedBy::Proxy => "proxy",
        }
    }
}

/// What the logs say of a WebSocket tunnel's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The status code in the client's Close frame (1005: a Close without one); None: it sent
    /// no Close.
    pub close_client: Option<u16>,
    pub close_backend: Option<u16>,
    pub ended_by: EndedBy,
    /// Whole messages client to backend, and backend to client.
    pub messages_in: u64,
    pub messages_out: u64,
    /// Pings the module sent the client (`ProxyWebsocketPingInterval`).
    pub pings: u32,
}

/// A number that grows with every call, across threads: which side began to end first. Taken
/// at most twice per tunnel, never per message.
pub fn order() -> u64 {
    static ORDER: AtomicU64 = AtomicU64::new(0);
    ORDER.fetch_add(1, Ordering::Relaxed)
}

impl Summary {
    /// From the tunnel's `end`, each direction's frames (client's, backend's) and when each
    /// sender began to end ([`order`]).
    pub fn of(end: &End, frames: [Frames; 2], ending: [Option<u64>; 2]) -> Option<Summary> {
        let first = match ending {
            [Some(c), Some(b)] => Some(if c < b { Side::Client } else { Side::Backend }),
            [Some(_), None] => Some(Side::Client),
            [None, Some(_)] => Some(Side::Backend),
            [None, None] => None,
        };
        let ended_by = match end {
            End::Idle(_)
            | End::WriteStalled(..)
            | End::Shutdown
            | End::GoingAway
            | End::Broke(..)
            | End::DeadClient(_) => EndedBy::Proxy,
            End::Failed(side, _) => side_of(first.unwrap_or(*side)),
            End::Closed => side_of(first.unwrap_or(Side::Client)),
            // Not an end: the tunnel goes on elsewhere.
            End::Handoff => return None,
        };
        Some(Summary {
            close_client: frames[0].close_code(),
            close_backend: frames[1].close_code(),
            ended_by,
            messages_in: frames[0].messages(),
            messages_out: frames[1].messages(),
            pings: 0,
        })
    }

    /// The request's environment variables, for `%{NAME}e` in a `LogFormat`.
    pub fn env(&self) -> [(&'static str, String); 5] {
        [
            ("wstunnel-close-client", code(self.close_client)),
            ("wstunnel-close-backend", code(self.close_backend)),
            ("wstunnel-ended-by", self.ended_by.name().to_string()),
            ("wstunnel-messages-in", self.messages_in.to_string()),
            ("wstunnel-messages-out", self.messages_out.to_string()),
        ]
    }

    /// The same facts in the error log's words.
    pub fn describe(&self) -> String {
        let pings = match self.pings {
            0 => String::new(),
            n => format!(", {n} Pings of the module to the client"),
        };
        format!(
            "ended by the {}, Close from client {}, from backend {}, {} messages client to backend, {} backend to client{pings}",
            self.ended_by.name(),
            code(self.close_client),
            code(self.close_backend),
            self.messages_in,
            self.messages_out
        )
    }
}

fn side_of(side: Side) -> EndedBy {
    match side {
        Side::Client => EndedBy::Client,
        Side::Backend => EndedBy::Backend,
    }
}

/// A close code as logged: the number, or `-` for no Close.
fn code(c: Option<u16>) -> String {
    c.map_or("-".to_string(), |c| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::close_frame;
    use std::time::Duration;

    fn fed(bytes: &[u8]) -> Frames {
        let mut f = Frames::default();
        f.feed(bytes);
        f
    }

    #[test]
    fn the_side_that_closed_first_ended_it_and_limits_are_the_proxys() {
        let mut c = wskit::raw::client_frame(1, b"hi");
        c.extend(close_frame(4000, Some([1, 2, 3, 4])));
        let b = close_frame(1000, None);
        let frames = [fed(&c), fed(&b)];
        let s = Summary::of(&End::Closed, frames, [Some(7), Some(9)]).unwrap();
        assert_eq!(
            s,
            Summary {
                close_client: Some(4000),
                close_backend: Some(1000),
                ended_by: EndedBy::Client,
                messages_in: 1,
                messages_out: 0,
                pings: 0
            }
        );
        assert_eq!(
            s.env().map(|(_, v)| v),
            ["4000", "1000", "client", "1", "0"].map(str::to_string)
        );
        let s = Summary::of(&End::Closed, frames, [Some(9), Some(7)]).unwrap();
        assert_eq!(s.ended_by, EndedBy::Backend);
        // A reset with no Close before it: the side that failed.
        let none = [Frames::default(), Frames::default()];
        let reset = End::Failed(Side::Backend, std::io::ErrorKind::ConnectionReset.into());
        let s = Summary::of(&reset, none, [None, None]).unwrap();
        assert_eq!((s.ended_by, s.env()[0].1.as_str()), (EndedBy::Backend, "-"));
        for end in [End::Idle(Duration::from_secs(1)), End::Shutdown, End::GoingAway] {
            assert_eq!(
                Summary::of(&end, frames, [Some(1), None]).unwrap().ended_by,
                EndedBy::Proxy
            );
        }
        assert_eq!(Summary::of(&End::Handoff, frames, [None, None]), None);
        assert!(order() < order());
    }
}
