//! `cmd_parms`: a directive being read, and the configuration it writes.

use super::{Pool, Server};
use crate::config::ServerConfig;
use crate::ffi;
use std::marker::PhantomData;
use std::os::raw::c_char;

/// The directive httpd is reading. Directives are read single-threaded, one at a time; the
/// `&mut self` of [`Cmd::server_config`] is the only way to our record while one runs.
pub struct Cmd<'a> {
    raw: *mut ffi::cmd_parms,
    _life: PhantomData<&'a mut ffi::cmd_parms>,
}

impl<'a> Cmd<'a> {
    /// # Safety
    /// `raw` must be the `cmd_parms` httpd passed to a directive handler, for that call.
    pub unsafe fn from_raw(raw: *mut ffi::cmd_parms) -> Self {
        Cmd { raw, _life: PhantomData }
    }

    /// The server (or virtual host) whose section is being read.
    pub fn server(&self) -> Server {
        // SAFETY: cmd->server is the configuration's server record.
        unsafe { Server::from_raw((*self.raw).server) }
    }

    /// An error message httpd prints before refusing to start.
    pub fn error(&self, msg: &str) -> *const c_char {
        // SAFETY: cmd->pool is the configuration pool, live while directives are read.
        unsafe { Pool::from_raw((*self.raw).pool) }.strdup(msg)
    }

    /// This module's record for the server being configured, to set a value in.
    pub fn server_config(&mut self) -> &mut ServerConfig {
        // SAFETY: our slot holds the ServerConfig create_server_config allocated in the
        // configuration pool for this server; `&mut self` makes this the only reference
        // (directives run one at a time and nothing else holds one meanwhile).
        unsafe { &mut *(ffi::wst_srv_conf((*self.raw).server) as *mut ServerConfig) }
    }
}
