//! What a running server counts and awaits: its shutdown signal, its
//! tasks, its places under the caps.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use roomwire_core::admission::{self, HandshakeLoad, HttpRefusal};

use tokio::sync::Notify;

use super::endpoint::{ErasedEndpoint, Resolver};
use super::{Hooks, Server, ServerConfig};

/// A flag that can be awaited.
#[derive(Default)]
pub(crate) struct Signal {
    set: AtomicBool,
    notify: Notify,
}

impl Signal {
    pub(crate) fn set(&self) {
        self.set.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    pub(crate) async fn wait(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_set() {
            return;
        }
        notified.await;
    }
}

pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) endpoints: Vec<Arc<dyn ErasedEndpoint>>,
    pub(super) by_path: HashMap<&'static str, usize>,
    pub(crate) hooks: Hooks,
    pub(crate) resolver: Option<Resolver>,
    /// Open WebSocket connections (counted from the decision to accept).
    pub(super) open: AtomicUsize,
    /// Connections in their opening handshake.
    pub(super) handshakes: Mutex<Handshakes>,
    /// Open connections per address, when they are capped.
    pub(super) open_by_address: Mutex<PerAddress>,
    /// Refusals being answered to streams with no place to handshake.
    pub(crate) answering: AtomicUsize,
    /// Tasks serving a stream, whatever their stage, and open connections
    /// (counted by their [`Permit<Open>`], whether their task runs or they
    /// are parked without one).
    pub(crate) tasks: AtomicUsize,
    pub(crate) idle: Notify,
    /// The origin of every connection's core clock (a resting connection
    /// keeps none of its own: 16 bytes less in each).
    pub(crate) origin: tokio::time::Instant,
    /// Shutdown started: stop accepting, close everything with 1001.
    pub(crate) closing: Signal,
    /// This server as a node of its cluster (alone without a backplane).
    pub(crate) node: Arc<super::cluster::Node>,
    /// Where its waiting connections park, made when the first parks.
    pub(crate) parking: std::sync::OnceLock<super::parking::Owner<Box<super::conn::Running>>>,
}

impl Shared {
    pub(crate) fn endpoint(&self, path: &str) -> Option<&Arc<dyn ErasedEndpoint>> {
        self.by_path.get(path).and_then(|&i| self.endpoints.get(i))
    }

    /// Ask, through `send`, the node holding another node's connection to
    /// act on it, on this server's behalf (the message names this node's
    /// first endpoint; the holder looks the id up in all of its own):
    /// whether it was published.
    pub(crate) fn ask_holder(&self, send: impl FnOnce(&super::cluster::Node, &'static str) -> bool) -> bool {
        self.endpoints.first().is_some_and(|first| send(&self.node, first.path()))
    }

    /// Close connection `id` of this server, whichever its endpoint;
    /// false if it is not open here.
    pub(crate) fn close_local(&self, id: &str, code: roomwire_core::CloseCode, reason: &str) -> bool {
        for endpoint in &self.endpoints {
            if let Some(outbox) = endpoint.cell().lock().outbox_of(id) {
                outbox.request_close(code, reason);
                return true;
            }
        }
        false
    }
}

/// Counts a task serving a stream; shutdown waits for none to remain.
pub(crate) struct TaskGuard(Arc<Shared>);

impl TaskGuard {
    pub(crate) fn new(shared: &Arc<Shared>) -> Self {
        shared.task_begun();
        Self(shared.clone())
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.task_done();
    }
}

impl Shared {
    /// One task (or open connection) more: the shutdown waits for it.
    fn task_begun(&self) {
        self.tasks.fetch_add(1, Ordering::SeqCst);
    }

    /// One task (or open connection) fewer: the shutdown waits for none.
    fn task_done(&self) {
        if self.tasks.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}

/// The handshakes in progress, on the whole server and per address.
#[derive(Default)]
pub(crate) struct Handshakes {
    total: usize,
    by_address: PerAddress,
}

/// A count per address; only addresses counted now are kept, so there are
/// never more entries than what is counted.
#[derive(Default)]
pub(crate) struct PerAddress(HashMap<AddressKey, usize>);

impl PerAddress {
    fn count(&self, key: AddressKey) -> usize {
        self.0.get(&key).copied().unwrap_or(0)
    }

    fn add(&mut self, key: AddressKey) {
        *self.0.entry(key).or_insert(0) += 1;
    }

    fn remove(&mut self, key: AddressKey) {
        if let Some(count) = self.0.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.0.remove(&key);
            }
        }
    }
}

/// What counts as one address for the per-address cap: an IPv4 address, or
/// an IPv6 /64 (what one subscriber is usually given, so one host cannot
/// multiply its share by changing its low 64 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum AddressKey {
    V4(u32),
    V6(u64),
}

impl AddressKey {
    fn of(peer: SocketAddr) -> Self {
        match peer.ip().to_canonical() {
            IpAddr::V4(ip) => Self::V4(u32::from(ip)),
            IpAddr::V6(ip) => Self::V6((u128::from(ip) >> 64) as u64),
        }
    }
}

/// A place under one of the server's caps (`K`: [`Open`] connections,
/// [`Handshake`]s in progress), given back on drop. Which cap is in the
/// type, not in a field: every open connection holds one, and so it is
/// 24 bytes rather than 32 (BENCHMARKS, tenth pass).
pub(crate) struct Permit<K: Cap = Open> {
    /// Its server, which a registered connection reaches through it
    /// ([`Registered::server`](super::registry::Registered::server)).
    server: Server,
    /// The client's address, if its address is capped.
    key: Option<AddressKey>,
    cap: PhantomData<K>,
}

/// The cap a [`Permit`] holds a place under.
pub(crate) trait Cap {
    /// Give a place back.
    fn give_back(shared: &Shared, key: Option<AddressKey>);
}

/// The open connections. An open connection's permit also counts it among
/// the server's tasks (which shutdown waits for), so that it needs no
/// [`TaskGuard`] of its own while it runs or is parked.
pub(crate) struct Open;

/// The handshakes in progress.
pub(crate) struct Handshake;

impl Cap for Open {
    fn give_back(shared: &Shared, key: Option<AddressKey>) {
        shared.open.fetch_sub(1, Ordering::SeqCst);
        if let Some(key) = key {
            shared.open_by_address().remove(key);
        }
        shared.task_done();
    }
}

impl Cap for Handshake {
    fn give_back(shared: &Shared, key: Option<AddressKey>) {
        let mut handshakes = shared.handshakes();
        handshakes.total = handshakes.total.saturating_sub(1);
        if let Some(key) = key {
            handshakes.by_address.remove(key);
        }
    }
}

/// Why there is no place among the open connections.
pub(crate) enum NoPlace {
    /// The server's cap.
    Full,
    /// The cap of the client's address.
    AddressFull,
}

impl<K: Cap> Permit<K> {
    /// The server it holds a place in.
    pub(crate) fn server(&self) -> &Server {
        &self.server
    }
}

impl Permit<Open> {
    /// A place among the open connections for a client from `peer`, if
    /// the server's cap and its address's allow.
    pub(crate) fn open(shared: &Arc<Shared>, peer: Option<SocketAddr>) -> Result<Self, NoPlace> {
        let config = &shared.config;
        let max = config.max_connections;
        shared
            .open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1))
            .map_err(|_| NoPlace::Full)?;
        // From here the place is held: dropping the permit gives it back,
        // and the count among the tasks.
        shared.task_begun();
        let mut permit = Self { server: Server { shared: shared.clone() }, key: None, cap: PhantomData };
        if let (Some(cap), Some(key)) = (config.max_connections_per_address, shared.address_key(peer)) {
            let mut open = shared.open_by_address();
            if open.count(key) >= cap {
                return Err(NoPlace::AddressFull);
            }
            open.add(key);
            permit.key = Some(key);
        }
        Ok(permit)
    }
}

impl Permit<Handshake> {
    /// A place among the handshakes in progress for a stream from `peer`,
    /// or the core's answer when there is none
    /// ([`admission::handshake_place`]).
    pub(crate) fn handshake(shared: &Arc<Shared>, peer: Option<SocketAddr>) -> Result<Self, HttpRefusal> {
        let config = &shared.config;
        let key = shared.address_key(peer);
        let mut handshakes = shared.handshakes();
        let load = HandshakeLoad {
            in_progress: handshakes.total,
            max: config.max_handshakes,
            from_address: key.map_or(0, |key| handshakes.by_address.count(key)),
            max_per_address: config.max_handshakes_per_address,
        };
        admission::handshake_place(load)?;
        handshakes.total += 1;
        if let Some(key) = key {
            handshakes.by_address.add(key);
        }
        Ok(Self { server: Server { shared: shared.clone() }, key, cap: PhantomData })
    }
}

impl Shared {
    fn handshakes(&self) -> std::sync::MutexGuard<'_, Handshakes> {
        // Counting only: a poisoned lock holds consistent counts.
        crate::lock(&self.handshakes)
    }

    fn open_by_address(&self) -> std::sync::MutexGuard<'_, PerAddress> {
        crate::lock(&self.open_by_address)
    }

    /// The key `peer` is counted under for the per-address caps, if any.
    /// Behind a reverse proxy on the same host every client has the
    /// proxy's loopback address: loopback is not capped, unless asked.
    fn address_key(&self, peer: Option<SocketAddr>) -> Option<AddressKey> {
        let capped = |p: &SocketAddr| self.config.address_cap_on_loopback || !p.ip().to_canonical().is_loopback();
        peer.filter(capped).map(AddressKey::of)
    }
}

impl<K: Cap> Drop for Permit<K> {
    fn drop(&mut self) {
        K::give_back(&self.server.shared, self.key);
    }
}
