//! httpd's connections as ends whose bytes pass through its filters ([`Filters`]), for both
//! drivers: a TLS connection (mod_ssl; a client's or a wss:// backend's), driven without
//! blocking as the event MPM's write completion drives one, and an HTTP/2 stream (mod_http2's
//! secondary connection; a client's), whose writes wait in mod_http2 for the stream's window.

use super::detached::FilteredEnd;
use super::filters::Filters;
use crate::httpd::nonblocking::NonBlocking;
use crate::httpd::outcome::{apr_error, Read};
use crate::httpd::{Brigade, Connection};
use std::io;

/// What a TLS end is driven through, and what becomes of its connection: the request
/// thread's own (nothing), or on the runtime the suspended client's or a held wss:// backend's.
pub(super) trait Owner {
    fn io(&self) -> &NonBlocking;
    /// See [`FilteredEnd::let_go`]; only a suspended connection has to wait.
    fn let_go(&self) -> bool {
        true
    }
    fn handed_over(&mut self) {}
    fn ended(&mut self) {}
    fn finish(self);
}

/// The request thread's own connection: nothing to wait for or to do at the end.
impl Owner for NonBlocking {
    fn io(&self) -> &NonBlocking {
        self
    }
    fn finish(self) {}
}

/// A TLS end: its connection's filters, used without waiting.
pub(super) struct Tls<T: Owner> {
    owner: T,
    may_hold_input: bool,
}

impl<T: Owner> Tls<T> {
    /// mod_ssl may already hold input read before the relay began.
    pub(super) fn new(owner: T) -> Tls<T> {
        Tls { owner, may_hold_input: true }
    }

    /// Boxed for a tunnel on the runtime.
    pub(super) fn boxed(owner: T) -> Box<dyn FilteredEnd>
    where
        T: Send + 'static,
    {
        Box::new(Tls::new(owner))
    }
}

impl<T: Owner> Filters for Tls<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let got = self.owner.io().read(buf);
        self.may_hold_input = matches!(got, Read::Data(_));
        got.into_io()
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.owner.io().write(bytes).map_err(apr_error)
    }

    fn holds(&self) -> bool {
        self.owner.io().holds()
    }

    fn may_hold_input(&self) -> bool {
        self.may_hold_input
    }

    fn push(&mut self) -> io::Result<()> {
        self.owner.io().push().map_err(apr_error)
    }

    fn shut_write(&mut self) -> io::Result<()> {
        self.owner.io().shutdown_write()
    }
}

impl<T: Owner + Send> FilteredEnd for Tls<T> {
    fn let_go(&self) -> bool {
        self.owner.let_go()
    }

    fn handed_over(&mut self) {
        self.owner.io().never_wait();
        self.owner.handed_over();
    }

    fn ended(&mut self) {
        self.owner.ended();
    }

    fn finish(self: Box<Self>) {
        self.owner.finish();
    }
}

/// An HTTP/2 stream (a client's): read without blocking through mod_http2's input, written
/// with a flush that waits in mod_http2 for room in the stream's window. It has no FIN of its
/// own: what goes to the client ends with the stream, when the request does (as through
/// mod_proxy's tunnel).
pub(super) struct Stream<'c> {
    c: Connection<'c>,
    bb: Brigade<'c>,
    may_hold_input: bool,
}

impl<'c> Stream<'c> {
    pub(super) fn new(c: Connection<'c>) -> Stream<'c> {
        let bb = c.brigade();
        Stream { c, bb, may_hold_input: true }
    }
}

impl Filters for Stream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let got = self.c.read_stream(&self.bb, buf);
        self.may_hold_input = matches!(got, Read::Data(_));
        got.into_io()
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.c.write_flushed(&self.bb, bytes).map_err(apr_error)
    }

    fn holds(&self) -> bool {
        false
    }

    fn may_hold_input(&self) -> bool {
        self.may_hold_input
    }

    fn push(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn shut_write(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn polls_writable(&self) -> bool {
        false
    }
}
