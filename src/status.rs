//! The tunnels' status board, for mod_status: one slot per httpd child in memory shared by all
//! children (`httpd::shm` makes it once, in httpd's parent, and every child inherits it through
//! fork), so whichever child serves `/server-status` sees every child's tunnels. A child
//! claims a slot when it starts and gives it back when it exits; what it did then goes into
//! the board's first slot, so the totals cover children that are gone too.
//!
//! Plain Rust over a block of memory (no httpd calls): the tests run it on a heap block.
#![forbid(unsafe_code)]

use once_cell::sync::OnceCell;
use std::collections::BTreeSet;
use std::fmt::Write;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// One child's counters. Only atomics: children update their own slot while any child reads.
#[repr(C)]
pub struct Slot {
    /// The child's pid; 0 for a free slot.
    pid: AtomicU32,
    generation: AtomicU32,
    sync: AtomicU32,
    detached: AtomicU32,
    /// Tunnels established since the child started.
    served: AtomicU64,
    client_to_backend: AtomicU64,
    backend_to_client: AtomicU64,
    /// When the oldest live tunnel started (µs since the epoch); 0 with none.
    oldest_us: AtomicU64,
    /// Relay threads the child runs for its asynchronous tunnels (0 until the first).
    relay_threads: AtomicU32,
    /// Asynchronous tunnels on each of those threads (the first [`THREADS_SHOWN`]).
    per_thread: [AtomicU32; THREADS_SHOWN],
}

impl Default for Slot {
    /// All zero, as the shared block starts.
    fn default() -> Slot {
        let zero = || AtomicU64::new(0);
        Slot {
            pid: AtomicU32::new(0),
            generation: AtomicU32::new(0),
            sync: AtomicU32::new(0),
            detached: AtomicU32::new(0),
            served: zero(),
            client_to_backend: zero(),
            backend_to_client: zero(),
            oldest_us: zero(),
            relay_threads: AtomicU32::new(0),
            per_thread: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

/// Relay threads whose tunnels the board shows one by one (a child's further threads are
/// counted in its total only).
pub const THREADS_SHOWN: usize = 64;

/// The board's part of the child's state ([`crate::child::Child`]).
pub struct State {
    /// The shared block: slot 0 holds what exited children did, the others one child each.
    board: OnceCell<&'static [Slot]>,
    /// This child's slot, claimed at child start.
    mine: OnceCell<&'static Slot>,
    /// The slot counted in when the board is missing or full (not shown then).
    private: OnceCell<Slot>,
    /// Start times (and a tie-breaker) of this child's live tunnels: the first is the oldest.
    live: Mutex<BTreeSet<(u64, u64)>>,
    /// The next tie-breaker.
    next: AtomicU64,
}

impl State {
    pub(crate) const fn new() -> State {
        State {
            board: OnceCell::new(),
            mine: OnceCell::new(),
            private: OnceCell::new(),
            live: Mutex::new(BTreeSet::new()),
            next: AtomicU64::new(0),
        }
    }
}

fn state() -> &'static State {
    &crate::child::CHILD.board
}

/// How many slots the board needs for `ServerLimit` children: one per child process httpd
/// may run, twice over for the generations that overlap in a graceful restart, and slot 0
/// for children that are gone. An MPM that does not say gets room for 16.
pub fn board_slots(server_limit: i32) -> usize {
    2 * (if server_limit > 0 { server_limit as usize } else { 16 }) + 1
}

/// Uses `slots` (zeroed memory shared by all children, or the same block again after a
/// restart). Called in httpd's parent before it forks the children.
pub fn attach(slots: &'static [Slot]) {
    let _ = state().board.set(slots);
}

fn board() -> &'static [Slot] {
    state().board.get().copied().unwrap_or(&[])
}

fn alive(pid: u32) -> bool {
    crate::sys::process_exists(pid)
}

/// This process's slot; a private one when the board is missing or full (not shown then).
fn mine() -> &'static Slot {
    let st = state();
    st.mine.get_or_init(|| claim().unwrap_or_else(|| st.private.get_or_init(Slot::default)))
}

/// This child runs `n` relay threads for its asynchronous tunnels.
pub fn relay_threads(n: usize) {
    mine().relay_threads.store(n as u32, Relaxed);
}

/// One asynchronous tunnel more (`up`) or less on relay thread `i`.
pub fn on_thread(i: usize, up: bool) {
    if let Some(c) = mine().per_thread.get(i) {
        if up {
            c.fetch_add(1, Relaxed);
        } else {
            c.fetch_sub(1, Relaxed);
        }
    }
}

/// Claims a slot for this child (at child start; later calls return the same one).
pub fn child_started(generation: u32) {
    let s = mine();
    s.generation.store(generation, Relaxed);
}

/// A free slot, or one whose child died without giving it back (a crash), made ours.
fn claim() -> Option<&'static Slot> {
    let me = crate::sys::getpid();
    let board = board();
    for s in board.iter().skip(1) {
        let pid = s.pid.load(Relaxed);
        if (pid == 0 || !alive(pid)) && s.pid.compare_exchange(pid, me, Relaxed, Relaxed).is_ok() {
            if pid != 0 {
                retire(s);
            }
            for c in [&s.sync, &s.detached, &s.generation] {
                c.store(0, Relaxed);
            }
            for c in [&s.served, &s.client_to_backend, &s.backend_to_client, &s.oldest_us] {
                c.store(0, Relaxed);
            }
            return Some(s);
        }
    }
    None
}

/// Adds a slot's totals to slot 0's.
fn retire(s: &Slot) {
    if let Some(total) = board().first() {
        total.served.fetch_add(s.served.swap(0, Relaxed), Relaxed);
        total.client_to_backend.fetch_add(s.client_to_backend.swap(0, Relaxed), Relaxed);
        total.backend_to_client.fetch_add(s.backend_to_client.swap(0, Relaxed), Relaxed);
    }
}

/// The child is exiting: its totals go to slot 0 and the slot is free again.
pub fn child_exited() {
    let s = mine();
    let me = crate::sys::getpid();
    if s.pid.load(Relaxed) == me {
        retire(s);
        s.sync.store(0, Relaxed);
        s.detached.store(0, Relaxed);
        s.oldest_us.store(0, Relaxed);
        s.pid.store(0, Relaxed);
    }
}

/// Now, in microseconds since the epoch (httpd's apr_time_t scale).
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64
}

fn publish_oldest(live: &BTreeSet<(u64, u64)>) {
    mine().oldest_us.store(live.first().map_or(0, |k| k.0), Relaxed);
}

/// A live tunnel's entry on the board, from its 101 until it ends (drop).
pub struct Entry {
    key: (u64, u64),
    detached: bool,
}

impl Entry {
    pub fn start() -> Entry {
        let s = mine();
        s.sync.fetch_add(1, Relaxed);
        s.served.fetch_add(1, Relaxed);
        let key = (now_us(), state().next.fetch_add(1, Relaxed));
        let mut live = state().live.lock().unwrap_or_else(|e| e.into_inner());
        live.insert(key);
        publish_oldest(&live);
        Entry { key, detached: false }
    }

    /// The tunnel left its request thread for the asynchronous relay.
    pub fn detach(&mut self) {
        if !self.detached {
            let s = mine();
            s.sync.fetch_sub(1, Relaxed);
            s.detached.fetch_add(1, Relaxed);
            self.detached = true;
        }
    }

    /// The tunnel came back to its request thread (the hand-over failed).
    pub fn attach(&mut self) {
        if self.detached {
            let s = mine();
            s.detached.fetch_sub(1, Relaxed);
            s.sync.fetch_add(1, Relaxed);
            self.detached = false;
        }
    }

    pub fn meter(&self) -> Meter {
        let s = mine();
        Meter { client_to_backend: &s.client_to_backend, backend_to_client: &s.backend_to_client }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let s = mine();
        if self.detached { &s.detached } else { &s.sync }.fetch_sub(1, Relaxed);
        let mut live = state().live.lock().unwrap_or_else(|e| e.into_inner());
        live.remove(&self.key);
        publish_oldest(&live);
    }
}

/// Where a relay counts the bytes it moves, as they move.
#[derive(Clone, Copy)]
pub struct Meter {
    pub client_to_backend: &'static AtomicU64,
    pub backend_to_client: &'static AtomicU64,
}

impl Meter {
    /// Adds bytes moved each way (relays add them in batches: the board is shared memory).
    pub fn add(&self, client_to_backend: u64, backend_to_client: u64) {
        if client_to_backend > 0 {
            self.client_to_backend.fetch_add(client_to_backend, Relaxed);
        }
        if backend_to_client > 0 {
            self.backend_to_client.fetch_add(backend_to_client, Relaxed);
        }
    }
}

impl Default for Meter {
    /// Counters nobody shows (tests, or a relay outside httpd).
    fn default() -> Meter {
        static NOWHERE: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
        Meter { client_to_backend: &NOWHERE[0], backend_to_client: &NOWHERE[1] }
    }
}

/// One row of the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    pub pid: u32,
    pub generation: u32,
    pub sync: u64,
    pub detached: u64,
    pub served: u64,
    pub client_to_backend: u64,
    pub backend_to_client: u64,
    /// Age of the oldest live tunnel, in seconds.
    pub oldest_s: Option<u64>,
    /// Asynchronous tunnels on each relay thread (one entry per thread shown).
    pub per_thread: Vec<u64>,
}

/// The board now: children that are alive and have served tunnels, and the totals (with
/// what exited children did).
pub fn snapshot() -> (Vec<Row>, Row) {
    let now = now_us();
    let row = |s: &Slot| {
        let oldest = s.oldest_us.load(Relaxed);
        Row {
            pid: s.pid.load(Relaxed),
            generation: s.generation.load(Relaxed),
            sync: s.sync.load(Relaxed) as u64,
            detached: s.detached.load(Relaxed) as u64,
            served: s.served.load(Relaxed),
            client_to_backend: s.client_to_backend.load(Relaxed),
            backend_to_client: s.backend_to_client.load(Relaxed),
            oldest_s: (oldest != 0).then(|| now.saturating_sub(oldest) / 1_000_000),
            per_thread: {
                let n = (s.relay_threads.load(Relaxed) as usize).min(THREADS_SHOWN);
                s.per_thread[..n].iter().map(|c| c.load(Relaxed) as u64).collect()
            },
        }
    };
    let board = board();
    let mut total = board.first().map(row).unwrap_or_default();
    let mut rows = Vec::new();
    for r in board.iter().skip(1).filter(|s| alive(s.pid.load(Relaxed))).map(row) {
        total.sync += r.sync;
        total.detached += r.detached;
        total.served += r.served;
        total.client_to_backend += r.client_to_backend;
        total.backend_to_client += r.backend_to_client;
        total.oldest_s = total.oldest_s.max(r.oldest_s);
        if r.served > 0 {
            rows.push(r);
        }
    }
    (rows, total)
}

/// `/server-status?auto`: one `Key: value` line per figure, then one line per child.
pub fn render_auto(rows: &[Row], total: &Row) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "WebSocketTunnels: {}", total.sync + total.detached);
    let _ = writeln!(o, "WebSocketSyncTunnels: {}", total.sync);
    let _ = writeln!(o, "WebSocketAsyncTunnels: {}", total.detached);
    let _ = writeln!(o, "WebSocketTunnelsServed: {}", total.served);
    let _ = writeln!(o, "WebSocketBytesClientToBackend: {}", total.client_to_backend);
    let _ = writeln!(o, "WebSocketBytesBackendToClient: {}", total.backend_to_client);
    let _ = writeln!(o, "WebSocketOldestTunnelSeconds: {}", total.oldest_s.unwrap_or(0));
    for r in rows {
        let _ = writeln!(
            o,
            "WebSocketChild: pid={} generation={} sync={} async={} served={} client_to_backend={} backend_to_client={} oldest_seconds={} async_per_thread={}",
            r.pid,
            r.generation,
            r.sync,
            r.detached,
            r.served,
            r.client_to_backend,
            r.backend_to_client,
            r.oldest_s.unwrap_or(0),
            per_thread(r)
        );
    }
    o
}

/// Asynchronous tunnels per relay thread, comma-separated ("-" before the first).
fn per_thread(r: &Row) -> String {
    if r.per_thread.is_empty() {
        return "-".into();
    }
    r.per_thread.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// Bytes the way mod_status shows traffic (B, kB, MB, GB).
fn human(bytes: u64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1 << 20 => format!("{:.1} kB", b as f64 / 1024.0),
        b if b < 1 << 30 => format!("{:.1} MB", b as f64 / (1u64 << 20) as f64),
        b => format!("{:.2} GB", b as f64 / (1u64 << 30) as f64),
    }
}

fn age(s: Option<u64>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s < 120 => format!("{s} s"),
        Some(s) if s < 7200 => format!("{} min", s / 60),
        Some(s) => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// The HTML section of `/server-status`: totals, and with `per_child` (ExtendedStatus) a
/// table of the children.
pub fn render_html(rows: &[Row], total: &Row, per_child: bool, tables: bool) -> String {
    let mut o = String::from("<hr />\n<h2>WebSocket tunnels (mod_proxy_wstunnel)</h2>\n<dl>\n");
    let _ = writeln!(
        o,
        "<dt>{} live tunnels: {} synchronous, {} asynchronous; oldest {}</dt>",
        total.sync + total.detached,
        total.sync,
        total.detached,
        age(total.oldest_s)
    );
    let _ = writeln!(
        o,
        "<dt>{} tunnels served; {} client to backend, {} backend to client</dt>\n</dl>",
        total.served,
        human(total.client_to_backend),
        human(total.backend_to_client)
    );
    if !per_child || rows.is_empty() {
        return o;
    }
    let cells = |r: &Row| {
        [
            r.pid.to_string(),
            r.generation.to_string(),
            r.sync.to_string(),
            r.detached.to_string(),
            r.served.to_string(),
            human(r.client_to_backend),
            human(r.backend_to_client),
            age(r.oldest_s),
            per_thread(r),
        ]
    };
    let head = [
        "PID",
        "Gen",
        "Sync",
        "Async",
        "Served",
        "Client&rarr;backend",
        "Backend&rarr;client",
        "Oldest",
        "Async per relay thread",
    ];
    if tables {
        o += "<table border=\"0\"><tr>";
        for h in head {
            let _ = write!(o, "<th>{h}</th>");
        }
        o += "</tr>\n";
        for r in rows {
            o += "<tr>";
            for c in cells(r) {
                let _ = write!(o, "<td>{c}</td>");
            }
            o += "</tr>\n";
        }
        o += "</table>\n";
    } else {
        for r in rows {
            let line: Vec<String> =
                head.iter().zip(cells(r)).map(|(h, c)| format!("{h} {c}")).collect();
            let _ = writeln!(o, "<p>{}</p>", line.join(", "));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test drives the process-wide board (it is a static, as in httpd).
    #[test]
    fn the_board_has_room_for_two_generations_and_the_gone() {
        assert_eq!(board_slots(16), 33);
        assert_eq!(board_slots(0), 33);
        assert_eq!(board_slots(-1), 33);
        assert_eq!(board_slots(1), 3);
    }

    #[test]
    fn tunnels_show_on_the_board_and_totals_survive_the_child() {
        let n = 4;
        let block: &'static [Slot] = Box::leak((0..n).map(|_| Slot::default()).collect());
        // A dead child's slot (a crash) is reclaimed, its totals kept.
        block[1].pid.store(0x7fff_fff0, Relaxed);
        block[1].served.store(5, Relaxed);
        attach(block);
        child_started(3);
        let mut a = Entry::start();
        let b = Entry::start();
        a.meter().client_to_backend.fetch_add(100, Relaxed);
        b.meter().backend_to_client.fetch_add(7, Relaxed);
        a.detach();
        let (rows, total) = snapshot();
        assert_eq!(rows.len(), 1);
        let me = &rows[0];
        assert_eq!(
            (me.pid, me.generation, me.sync, me.detached, me.served),
            (std::process::id(), 3, 1, 1, 2)
        );
        assert_eq!((me.client_to_backend, me.backend_to_client, me.oldest_s), (100, 7, Some(0)));
        assert_eq!(total.served, 7, "the crashed child's 5 count in the totals");
        let auto = render_auto(&rows, &total);
        assert!(
            auto.contains(
                "WebSocketTunnels: 2\nWebSocketSyncTunnels: 1\nWebSocketAsyncTunnels: 1\n"
            ),
            "{auto}"
        );
        assert!(auto.contains(&format!(
            "WebSocketChild: pid={} generation=3 sync=1 async=1 served=2 client_to_backend=100",
            std::process::id()
        )));
        let html = render_html(&rows, &total, true, true);
        assert!(html.contains("<td>100 B</td><td>7 B</td>"), "{html}");
        assert!(auto.contains("async_per_thread=-\n"), "no relay thread yet: {auto}");
        relay_threads(2);
        on_thread(1, true);
        let (rows, total) = snapshot();
        assert_eq!(rows[0].per_thread, [0, 1]);
        assert!(render_auto(&rows, &total).contains("async_per_thread=0,1\n"));
        assert!(render_html(&rows, &total, true, true).contains("<td>0,1</td>"));
        on_thread(1, false);
        drop(a);
        drop(b);
        let (rows, total) = snapshot();
        assert_eq!((rows[0].sync, rows[0].detached, rows[0].oldest_s), (0, 0, None));
        child_exited();
        let (rows, total2) = snapshot();
        assert!(rows.is_empty());
        assert_eq!(
            (total2.served, total2.client_to_backend, total2.backend_to_client),
            (total.served, 100, 7)
        );
    }

    #[test]
    fn sizes_and_ages_read_like_mod_status() {
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 kB");
        assert_eq!(human(3 << 30), "3.00 GB");
        assert_eq!(age(Some(90)), "90 s");
        assert_eq!(age(Some(3700)), "61 min");
        assert_eq!(age(Some(7500)), "2 h 5 min");
    }
}
