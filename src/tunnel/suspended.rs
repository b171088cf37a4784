//! SPIKE (issue 16): a tunnel whose client end is TLS (mod_ssl) leaves its request thread under
//! the event MPM: the handler returns SUSPENDED, and once the MPM has let go of the connection
//! (its suspend_connection hook) the child's runtime relays between the client's filters
//! (non-blocking reads and writes through mod_ssl) and the raw backend socket.

use crate::httpd::log::{DEBUG, INFO};
use crate::httpd::outcome::Read;
use crate::httpd::proxy::Backend;
use crate::httpd::suspended::Suspended;
use crate::httpd::{Connection, Request};
use crate::rlog;
use crate::sys::dup_cloexec;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;
use tokio::io::unix::AsyncFd;

type Start = Box<dyn FnOnce() + Send>;

/// Tunnels waiting for the MPM to let go of their connection, by connection.
static WAITING: Mutex<Option<HashMap<usize, Start>>> = Mutex::new(None);

/// Prepares the hand-over; the handler returns SUSPENDED when this returns true.
pub fn hand_over(r: &Request, client: &Connection, backend: &Backend, backconn: &Connection, surplus: Vec<u8>) -> bool {
    let (Some(cfd), Some(bfd)) = (client.fd(), backconn.fd()) else { return false };
    let (Ok(cfd), Ok(bfd)) = (dup_cloexec(cfd), dup_cloexec(bfd)) else { return false };
    r.enter_tunnel_mode();
    let s = Suspended::take(r);
    if !surplus.is_empty() && s.send(&surplus).is_err() {
        return false;
    }
    let busy = backend.worker().hold_busy();
    let key = client.as_ptr() as usize;
    let start: Start = Box::new(move || {
        let _ = crate::tunnel::detached::spawn_task(async move {
            let mut s = s;
            let end = relay(&mut s, cfd, bfd).await;
            crate::httpd::log::server(file!(), line!(), crate::httpd::Server::main(), INFO, 0, &format!("WST02014: suspended TLS tunnel ended: {end:?}"));
            drop(busy);
            s.finish();
        });
    });
    WAITING.lock().unwrap().get_or_insert_with(HashMap::new).insert(key, start);
    rlog!(r, DEBUG, "WST02015: TLS tunnel suspended: the runtime takes it once the MPM lets go");
    true
}

/// The MPM let go of connection `c` (its suspend_connection hook): start its tunnel, if any.
pub fn suspended(c: usize) {
    let start = WAITING.lock().unwrap().as_mut().and_then(|m| m.remove(&c));
    if let Some(start) = start {
        start();
    }
}

#[derive(Debug)]
enum Ended {
    Closed,
    Failed(&'static str, io::Error),
    Filters(&'static str, i32),
}

async fn write_all(b: &AsyncFd<OwnedFd>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let mut g = b.writable().await?;
        match g.try_io(|fd| crate::sys::send(fd.as_raw_fd(), bytes)) {
            Ok(Ok(n)) => bytes = &bytes[n..],
            Ok(Err(e)) => return Err(e),
            Err(_) => continue,
        }
    }
    Ok(())
}

async fn relay(s: &mut Suspended, cfd: OwnedFd, bfd: OwnedFd) -> Ended {
    let (c, b) = match (crate::sys::async_fd(cfd), crate::sys::async_fd(bfd)) {
        (Ok(c), Ok(b)) => (c, b),
        (Err(e), _) | (_, Err(e)) => return Ended::Failed("register", e),
    };
    let mut cbuf = vec![0u8; 16384];
    let mut bbuf = vec![0u8; 16384];
    let (mut c_eof, mut b_eof, mut pending) = (false, false, false);
    // mod_ssl may hold bytes already (read with the handshake's last record).
    let mut client_first = true;
    while !(c_eof && b_eof) {
        tokio::select! {
            g = c.readable(), if !c_eof => {
                let mut g = match g { Ok(g) => g, Err(e) => return Ended::Failed("client poll", e) };
                loop {
                    match s.read(&mut cbuf) {
                        Read::Data(n) => if let Err(e) = write_all(&b, &cbuf[..n]).await { return Ended::Failed("backend write", e) },
                        Read::WouldBlock => { g.clear_ready(); break }
                        Read::Eof => { let _ = crate::sys::shutdown_write(b.as_raw_fd()); c_eof = true; break }
                        Read::Error(e) => return Ended::Filters("read", e),
                    }
                }
            }
            g = b.readable(), if !b_eof && !pending => {
                let mut g = match g { Ok(g) => g, Err(e) => return Ended::Failed("backend poll", e) };
                match g.try_io(|fd| crate::sys::recv(fd.as_raw_fd(), &mut bbuf)) {
                    Ok(Ok(0)) => { b_eof = true; if c_eof { break } }
                    Ok(Ok(n)) => match s.send(&bbuf[..n]) { Ok(p) => pending = p, Err(e) => return Ended::Filters("send", e) },
                    Ok(Err(e)) => return Ended::Failed("backend read", e),
                    Err(_) => {}
                }
            }
            g = c.writable(), if pending => {
                let mut g = match g { Ok(g) => g, Err(e) => return Ended::Failed("client poll", e) };
                match s.push() { Ok(p) => { pending = p; if p { g.clear_ready() } }, Err(e) => return Ended::Filters("push", e) }
            }
        }
        let _ = &mut client_first;
        if b_eof && !pending {
            // The backend closed: end the client side too (no half-close through TLS here).
            return Ended::Closed;
        }
    }
    Ended::Closed
}
