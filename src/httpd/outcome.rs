//! What the results of httpd's filter calls mean, decided in plain Rust (unit-tested without
//! httpd): a read through a connection's input filters, and what the scoreboard says of a
//! child process.

/// A child process as the scoreboard shows it.
#[derive(Debug, Clone, Copy)]
pub struct Process {
    pub pid: u32,
    pub generation: i32,
    /// Stopping: it accepts no more connections.
    pub quiescing: bool,
}

/// The result of a read from a connection's input filters.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    Data(usize),
    Eof,
    WouldBlock,
    /// An APR status.
    Error(i32),
}

impl Read {
    /// As `std::io` says it: bytes, 0 at the end of the stream, WouldBlock, or the APR status
    /// as an error.
    pub fn into_io(self) -> std::io::Result<usize> {
        match self {
            Read::Data(n) => Ok(n),
            Read::Eof => Ok(0),
            Read::WouldBlock => Err(std::io::ErrorKind::WouldBlock.into()),
            Read::Error(e) => Err(apr_error(e)),
        }
    }
}

/// An APR status as an `io::Error`.
pub fn apr_error(status: i32) -> std::io::Error {
    std::io::Error::other(format!("APR status {status}"))
}

pub const APR_SUCCESS: i32 = 0;
/// `APR_EAGAIN` is the errno value on Unix.
pub const APR_EAGAIN: i32 = libc::EAGAIN;
pub const APR_ECONNABORTED: i32 = libc::ECONNABORTED;
pub const APR_TIMEUP: i32 = 70007;
pub const APR_EOF: i32 = 70014;

/// What came back from `ap_get_brigade(AP_MODE_READBYTES)`, as the brigade holds it.
#[derive(Debug, Clone, Copy)]
pub enum Got {
    /// The call failed with this status.
    Failed(i32),
    /// It succeeded with nothing in the brigade.
    Empty,
    /// The brigade starts with end of stream.
    Eos,
    /// `len` bytes flattened out of it (status of the flatten).
    Bytes { status: i32, len: usize },
}

/// A read's meaning. A blocking read that brings nothing is the end of the stream (the
/// filters had nothing to wait for); a non-blocking one is "nothing now" (mod_ssl answers a
/// record without data that way too).
pub fn read_outcome(got: Got, block: bool) -> Read {
    let nothing = if block { Read::Eof } else { Read::WouldBlock };
    match got {
        Got::Failed(APR_EOF) | Got::Eos => Read::Eof,
        Got::Failed(APR_EAGAIN) => Read::WouldBlock,
        Got::Failed(e) => Read::Error(e),
        Got::Empty | Got::Bytes { status: APR_SUCCESS, len: 0 } => nothing,
        Got::Bytes { status: APR_SUCCESS, len } => Read::Data(len),
        Got::Bytes { status, .. } => Read::Error(status),
    }
}

/// A non-blocking read's meaning on an HTTP/2 stream's connection, where an end-of-stream
/// bucket is not the end: mod_http2 puts one before the data of an upgraded stream (its
/// request has no body) and one behind the client's last DATA frame, and then answers
/// APR_EOF, which is the end. None: read again.
pub fn stream_read_outcome(got: Got) -> Option<Read> {
    match got {
        Got::Eos => None,
        other => Some(read_outcome(other, false)),
    }
}

/// True if an APR status is a timeout.
pub fn is_timeout(rv: i32) -> bool {
    rv == APR_TIMEUP || rv == APR_EAGAIN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mean_what_httpd_says() {
        assert_eq!(read_outcome(Got::Bytes { status: 0, len: 5 }, false), Read::Data(5));
        assert_eq!(read_outcome(Got::Empty, true), Read::Eof);
        assert_eq!(read_outcome(Got::Empty, false), Read::WouldBlock);
        assert_eq!(read_outcome(Got::Bytes { status: 0, len: 0 }, false), Read::WouldBlock);
        assert_eq!(read_outcome(Got::Eos, false), Read::Eof);
        assert_eq!(read_outcome(Got::Failed(APR_EOF), false), Read::Eof);
        assert_eq!(read_outcome(Got::Failed(APR_EAGAIN), true), Read::WouldBlock);
        assert_eq!(read_outcome(Got::Failed(APR_TIMEUP), true), Read::Error(APR_TIMEUP));
        assert_eq!(read_outcome(Got::Bytes { status: 22, len: 3 }, true), Read::Error(22));
        assert!(is_timeout(APR_TIMEUP) && is_timeout(APR_EAGAIN) && !is_timeout(APR_EOF));
    }

    #[test]
    fn an_http2_streams_end_is_apr_eof_not_an_eos_bucket() {
        assert_eq!(stream_read_outcome(Got::Eos), None);
        assert_eq!(stream_read_outcome(Got::Failed(APR_EOF)), Some(Read::Eof));
        assert_eq!(stream_read_outcome(Got::Failed(APR_EAGAIN)), Some(Read::WouldBlock));
        assert_eq!(stream_read_outcome(Got::Bytes { status: 0, len: 7 }), Some(Read::Data(7)));
    }
}
