//! What this httpd child process keeps for its tunnels, in one object ([`Child`], the static
//! [`CHILD`]), and its life cycle. Each part belongs to the module that uses it and stays
//! private to it; this file says what exists when.
//!
//! 1. **Configured** in httpd's parent (post_config): the drain timeout and the board's
//!    shared block, inherited by every child through fork. Nothing else exists yet: no
//!    descriptor and no thread (an eventfd made before the fork would be shared by every
//!    child, a thread would not survive it).
//! 2. **Started** in the child (child_init): its slot on the board, the check that tells a
//!    server-wide stop from this child's retirement.
//! 3. **Serving**: the first relay on a request thread makes the stop eventfd; the first
//!    hand-over starts the runtime (its thread and its phase channel); live asynchronous
//!    tunnels, the wss:// backend connections they hold and the suspended tunnels waiting
//!    for the MPM to let go of their connections are counted here, and so is each tunnel on
//!    the board while it lives.
//! 4. **Stopping** (the child_stopping hook, or a relay noticing the MPM's state): the drain
//!    thread starts once, sets the deadline, begins the polite end, then stops every tunnel
//!    (the eventfd for request threads, the phase for the runtime's tasks).
//! 5. **Exiting** (the child's pool cleanup): waits until the runtime's tunnels ended and were
//!    logged, then the process goes, and everything with it.
//!
//! Configuration the parent decides once (whether mod_proxy_http can take a fallback,
//! whether the end-of-tunnel record is usable) stays with the code that reads it.

/// The state of this child process's tunnels (see the module's documentation).
pub struct Child {
    pub(crate) drain: crate::tunnel::shutdown::State,
    pub(crate) runtime: crate::tunnel::detached::State,
    #[cfg(feature = "httpd")]
    pub(crate) handoff: crate::tunnel::handoff::State,
    pub(crate) board: crate::status::State,
}

/// This process's.
pub static CHILD: Child = Child {
    drain: crate::tunnel::shutdown::State::new(),
    runtime: crate::tunnel::detached::State::new(),
    #[cfg(feature = "httpd")]
    handoff: crate::tunnel::handoff::State::new(),
    board: crate::status::State::new(),
};
