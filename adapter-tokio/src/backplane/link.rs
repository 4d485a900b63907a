//! What a server and its backplane share: the messages to publish, the
//! topics to hear, the delivery of what is heard, and the counters.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use tokio::sync::{Notify, oneshot};
use tracing::{info, warn};

use crate::lock;
use crate::server::Signal;

/// At most this many bytes wait to be published (a message counted once
/// per topic, with the topic's name; one larger message alone goes over
/// it); beyond it, messages are dropped and counted (a bus slower than the
/// emits cannot grow memory).
const MAX_PENDING_BYTES: usize = 64 << 20;

/// Past this many bytes waiting to be published, a connection whose
/// handler just ran waits for the queue to drain before its next message
/// is handled ([`Link::uncongested`]): a client relaying faster than the
/// bus carries is slowed to the bus's pace instead of filling the queue,
/// which the node's other clients share, until their messages are dropped.
const CONGESTED_BYTES: usize = MAX_PENDING_BYTES / 2;

/// The queue is drained enough once it is down to this: well below where
/// congestion starts, so that one wake lets many waiting connections on
/// rather than one per batch published.
const DRAINED_BYTES: usize = MAX_PENDING_BYTES / 4;

/// What one call of [`Link::take_publishes`] hands over, on the wire, at
/// most (one larger message alone goes over it): a batch is one round trip
/// to the bus, within its timeout.
pub const BATCH_BYTES: usize = 1 << 20;

/// At most this many lease requests wait for the backplane.
const MAX_PENDING_LEASES: usize = 65_536;

/// One message to publish on each of its topics.
#[derive(Debug)]
pub struct Publish {
    /// The topics, in order.
    pub topics: Vec<String>,
    /// The message (a [`roomwire_core::cluster`] message).
    pub bytes: Bytes,
    /// Who waits to learn how many nodes heard it (a query).
    receivers: Option<oneshot::Sender<usize>>,
}

impl Publish {
    /// Whether the server waits for [`report_receivers`](Self::report_receivers):
    /// a query, published on one topic, whose asker counts the answers it
    /// should get.
    pub fn wants_receivers(&self) -> bool {
        self.receivers.is_some()
    }

    /// Say how many nodes (subscribers) received it on its first topic.
    pub fn report_receivers(&mut self, receivers: usize) {
        if let Some(tx) = self.receivers.take() {
            let _ = tx.send(receivers);
        }
    }
}

/// A backplane's counters and state, as [`Server::backplane_stats`](crate::Server::backplane_stats)
/// reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackplaneStats {
    /// Whether the backplane is connected to its bus.
    pub connected: bool,
    /// Times it connected again after losing the bus.
    pub reconnects: u64,
    /// Messages published (each counted once, whatever its topics).
    pub published: u64,
    /// Messages not published: the bus was disconnected or too slow, or a
    /// publish failed.
    pub publish_dropped: u64,
    /// Messages handed to the bus whose outcome is unknown: the bus
    /// failed before confirming them (each reached every node or none).
    pub publish_unconfirmed: u64,
    /// Messages received from other nodes and delivered.
    pub received: u64,
    /// Messages the bus brought faster than this node could take them in
    /// (more than a backplane's bound waiting), dropped.
    pub receive_dropped: u64,
    /// Messages received again on a second topic, and dropped.
    pub duplicates: u64,
    /// Messages dropped because they arrived too late to be told apart
    /// from duplicates, or the node could not track their origin.
    pub stale: u64,
    /// Messages on the bus that were not cluster messages of this version.
    pub invalid: u64,
    /// Lease and claim commands the bus refused (out of memory, a replica,
    /// no permission) while it stayed up: each server that asked decided
    /// alone, as when the bus is down.
    pub leases_refused: u64,
    /// Topics currently wanted.
    pub subscriptions: usize,
}

type Receiver = Box<dyn Fn(&str, &[u8]) + Send + Sync>;
type Forgetter = Box<dyn Fn(&str) + Send + Sync>;

/// A request about the places users hold under a cluster-wide per-user
/// cap: each is a set per (endpoint, user) of connection ids with an
/// expiry ([`roomwire_core::cluster::lease_key`]), kept by the bus (a
/// Redis sorted set), expiries in the bus's own clock.
#[derive(Debug)]
#[non_exhaustive]
pub enum LeaseRequest {
    /// Drop the expired places of `key`; if fewer than `cap` remain, add
    /// `member` for `ttl` and answer true, else answer false.
    Acquire {
        /// The set.
        key: String,
        /// The connection id.
        member: String,
        /// The cap.
        cap: usize,
        /// How long the place lasts unless renewed.
        ttl: std::time::Duration,
        /// Where the answer goes (dropped unanswered: the server decides
        /// alone, as if the bus were down).
        answer: oneshot::Sender<bool>,
    },
    /// Extend (or add back) these places by `ttl`.
    Renew {
        /// `(key, member)` pairs.
        places: Vec<(String, String)>,
        /// The new lifetime.
        ttl: std::time::Duration,
    },
    /// Give a place up.
    Release {
        /// The set.
        key: String,
        /// The connection id.
        member: String,
    },
    /// Make `holder` the holder of `key` for `ttl` if it already is (then
    /// its time starts again) or if it has none (then `restore`, if given,
    /// else `holder`); answer who holds it now. The owner of a stateful
    /// room ([`roomwire_core::cluster::room_owner_key`]).
    Claim {
        /// The key.
        key: String,
        /// Who asks (a node tag, as text).
        holder: String,
        /// Who to put back if the key has none: the owner the asker knows
        /// ([`roomwire_core::cluster::ownership::restore`]), whose claim
        /// the bus lost.
        restore: Option<String>,
        /// How long the claim lasts unless claimed again.
        ttl: std::time::Duration,
        /// Where the holder goes (dropped unanswered: the bus could not
        /// say).
        answer: oneshot::Sender<String>,
    },
    /// Give `key` up if `holder` holds it.
    Disclaim {
        /// The key.
        key: String,
        /// Who gives it up.
        holder: String,
    },
}

#[derive(Default)]
struct Pending {
    queue: VecDeque<Publish>,
    bytes: usize,
}

#[derive(Default)]
struct Interest {
    wanted: HashSet<String>,
    /// Changes not yet taken by the backplane: `true` subscribe.
    changes: HashMap<String, bool>,
}

#[derive(Default)]
struct Counters {
    reconnects: AtomicU64,
    published: AtomicU64,
    publish_dropped: AtomicU64,
    publish_unconfirmed: AtomicU64,
    received: AtomicU64,
    receive_dropped: AtomicU64,
    duplicates: AtomicU64,
    stale: AtomicU64,
    invalid: AtomicU64,
    leases_refused: AtomicU64,
}

struct Inner {
    pending: Mutex<Pending>,
    pending_ready: Notify,
    /// More than [`CONGESTED_BYTES`] wait to be published (read without
    /// the lock, on every message a connection handles).
    congested: AtomicBool,
    /// Told when the queue is taken below [`CONGESTED_BYTES`].
    drained: Notify,
    interest: Mutex<Interest>,
    interest_ready: Notify,
    leases: Mutex<VecDeque<LeaseRequest>>,
    leases_ready: Notify,
    receiver: OnceLock<Receiver>,
    /// Told when the node stops hearing a topic.
    forgetter: OnceLock<Forgetter>,
    /// Topics the bus confirmed subscribed, and since when.
    subscribed: Mutex<HashMap<String, std::time::Instant>>,
    connected: AtomicBool,
    ever_connected: AtomicBool,
    counters: Counters,
    closed: Signal,
}

/// The two-way link between a server and its [`Backplane`](super::Backplane).
///
/// Cloning is cheap; every clone is the same link.
#[derive(Clone)]
pub struct Link {
    inner: Arc<Inner>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link").field("stats", &self.stats()).finish()
    }
}

impl Default for Link {
    fn default() -> Self {
        Self::new()
    }
}

/// What a message costs on the wire: its bytes and its topic once per
/// topic it is published on.
fn wire_size(publish: &Publish) -> usize {
    publish.topics.iter().map(|t| t.len() + publish.bytes.len()).sum()
}

impl Link {
    /// A link with nothing pending, not connected.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                pending: Mutex::default(),
                pending_ready: Notify::new(),
                congested: AtomicBool::new(false),
                drained: Notify::new(),
                interest: Mutex::default(),
                interest_ready: Notify::new(),
                leases: Mutex::default(),
                leases_ready: Notify::new(),
                receiver: OnceLock::new(),
                forgetter: OnceLock::new(),
                subscribed: Mutex::default(),
                connected: AtomicBool::new(false),
                ever_connected: AtomicBool::new(false),
                counters: Counters::default(),
                closed: Signal::default(),
            }),
        }
    }

    // The backplane's side.

    /// Wait for messages to publish and take up to `max` of them, oldest
    /// first. Empty once the link is closed.
    pub async fn next_publishes(&self, max: usize) -> Vec<Publish> {
        loop {
            let ready = self.inner.pending_ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            let taken = self.take_publishes(max);
            if !taken.is_empty() || self.is_closed() {
                return taken;
            }
            tokio::select! {
                () = ready => {}
                () = self.inner.closed.wait() => {}
            }
        }
    }

    /// Take up to `max` messages to publish without waiting, and no more
    /// than about [`BATCH_BYTES`] of them on the wire (at least one).
    pub fn take_publishes(&self, max: usize) -> Vec<Publish> {
        let mut pending = lock(&self.inner.pending);
        let mut taken = Vec::new();
        let mut size = 0;
        while taken.len() < max && (taken.is_empty() || size < BATCH_BYTES) {
            let Some(publish) = pending.queue.pop_front() else { break };
            size += wire_size(&publish);
            taken.push(publish);
        }
        pending.bytes -= size;
        let drained = pending.bytes <= DRAINED_BYTES && self.inner.congested.swap(false, Ordering::Relaxed);
        drop(pending);
        if drained {
            self.inner.drained.notify_waiters();
        }
        taken
    }

    /// Count `n` messages taken but not published (the bus failed them).
    pub fn publish_failed(&self, n: usize) {
        self.inner.counters.publish_dropped.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Count `n` messages handed to the bus that it did not confirm (the
    /// connection failed with them in flight).
    pub fn publish_unconfirmed(&self, n: usize) {
        self.inner.counters.publish_unconfirmed.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Count `n` messages heard but dropped before reaching the server
    /// (the backplane's receive queue was full).
    pub fn receive_dropped(&self, n: usize) {
        self.inner.counters.receive_dropped.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Count `n` messages published.
    pub fn published(&self, n: usize) {
        self.inner.counters.published.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Count `n` lease or claim commands the bus refused (their answers
    /// dropped: the servers decide alone). The bus stays up.
    pub fn leases_refused(&self, n: usize) {
        self.inner.counters.leases_refused.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Every topic the server wants to hear now (to subscribe again after
    /// a reconnect). Takes the pending changes too: they are in it.
    pub fn interest(&self) -> Vec<String> {
        let mut interest = lock(&self.inner.interest);
        interest.changes.clear();
        interest.wanted.iter().cloned().collect()
    }

    /// Wait until the wanted topics change (or the link closes), then take
    /// the changes: `(subscribe, unsubscribe)`.
    pub async fn interest_changes(&self) -> (Vec<String>, Vec<String>) {
        loop {
            let ready = self.inner.interest_ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            let changes = self.take_interest_changes();
            if !changes.0.is_empty() || !changes.1.is_empty() || self.is_closed() {
                return changes;
            }
            tokio::select! {
                () = ready => {}
                () = self.inner.closed.wait() => {}
            }
        }
    }

    /// Take the changes to the wanted topics without waiting.
    pub fn take_interest_changes(&self) -> (Vec<String>, Vec<String>) {
        let mut interest = lock(&self.inner.interest);
        let mut subscribe = Vec::new();
        let mut unsubscribe = Vec::new();
        for (topic, wanted) in interest.changes.drain() {
            if wanted { subscribe.push(topic) } else { unsubscribe.push(topic) }
        }
        (subscribe, unsubscribe)
    }

    /// Take the lease requests waiting, without waiting.
    pub fn take_leases(&self) -> Vec<LeaseRequest> {
        lock(&self.inner.leases).drain(..).collect()
    }

    /// Wait for lease requests (or the link to close) and take them all.
    pub async fn next_leases(&self) -> Vec<LeaseRequest> {
        loop {
            let ready = self.inner.leases_ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            let taken = self.take_leases();
            if !taken.is_empty() || self.is_closed() {
                return taken;
            }
            tokio::select! {
                () = ready => {}
                () = self.inner.closed.wait() => {}
            }
        }
    }

    /// Say the bus confirmed these subscriptions: copies of messages on
    /// them are expected from now on (after a short grace).
    pub fn confirm_subscribed(&self, topics: &[String]) {
        let now = std::time::Instant::now();
        let mut subscribed = lock(&self.inner.subscribed);
        for topic in topics {
            subscribed.entry(topic.clone()).or_insert(now);
        }
    }

    /// Whether the server wants `topic` heard now. A bus told that a
    /// subscription ended tells one it ended itself (of a topic no longer
    /// wanted) from one its server ended (a resharding moved the topic's
    /// slot), whether or not the subscription was confirmed yet.
    pub fn wants(&self, topic: &str) -> bool {
        lock(&self.inner.interest).wanted.contains(topic)
    }

    /// Say these topics are being unsubscribed (call it before asking the
    /// bus): their copies are no longer expected.
    pub fn confirm_unsubscribed(&self, topics: &[String]) {
        let mut subscribed = lock(&self.inner.subscribed);
        for topic in topics {
            subscribed.remove(topic);
        }
        drop(subscribed);
        if let Some(forget) = self.inner.forgetter.get() {
            topics.iter().for_each(|t| forget(t));
        }
    }

    /// Hand a message received on `topic` to the server.
    pub fn receive(&self, topic: &str, bytes: &[u8]) {
        if let Some(receiver) = self.inner.receiver.get() {
            receiver(topic, bytes);
        }
    }

    /// Say whether the bus is reachable. While it is not, messages to
    /// publish are dropped (and counted) instead of queued.
    pub fn set_connected(&self, connected: bool) {
        let was = self.inner.connected.swap(connected, Ordering::SeqCst);
        if was == connected {
            return;
        }
        if connected {
            if self.inner.ever_connected.swap(true, Ordering::SeqCst) {
                self.inner.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                info!("backplane connected again");
            } else {
                info!("backplane connected");
            }
        } else {
            warn!("backplane disconnected: cross-node messages are dropped until it is back");
            let lost: Vec<String> = lock(&self.inner.subscribed).drain().map(|(t, _)| t).collect();
            if let Some(forget) = self.inner.forgetter.get() {
                lost.iter().for_each(|t| forget(t));
            }
            // What waits would reach other nodes late or never: drop it.
            let dropped = self.take_publishes(usize::MAX).len();
            self.publish_failed(dropped);
            lock(&self.inner.leases).clear();
        }
    }

    /// Whether the publish queue went past half its bound and has not
    /// drained to a quarter since.
    pub(crate) fn is_congested(&self) -> bool {
        self.inner.congested.load(Ordering::Relaxed)
    }

    /// Wait until the publish queue has drained to a quarter of its bound,
    /// the bus is gone (its queue is then dropped) or the server closes.
    /// Callers bound the wait: a bus whose backplane takes nothing and
    /// stays connected would never end it.
    pub(crate) async fn uncongested(&self) {
        loop {
            let drained = self.inner.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if !self.is_congested() || self.is_closed() {
                return;
            }
            tokio::select! {
                () = drained => {}
                () = self.inner.closed.wait() => {}
            }
        }
    }

    /// Whether the bus is reachable (as the backplane last said).
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::SeqCst)
    }

    /// Whether the server has shut down.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.is_set()
    }

    /// Resolves once the server has shut down.
    pub async fn closed(&self) {
        self.inner.closed.wait().await;
    }

    /// The counters and state.
    pub fn stats(&self) -> BackplaneStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BackplaneStats {
            connected: self.inner.connected.load(Ordering::SeqCst),
            reconnects: get(&c.reconnects),
            published: get(&c.published),
            publish_dropped: get(&c.publish_dropped),
            publish_unconfirmed: get(&c.publish_unconfirmed),
            received: get(&c.received),
            receive_dropped: get(&c.receive_dropped),
            duplicates: get(&c.duplicates),
            stale: get(&c.stale),
            invalid: get(&c.invalid),
            leases_refused: get(&c.leases_refused),
            subscriptions: lock(&self.inner.interest).wanted.len(),
        }
    }

    // The server's side.

    /// Queue a message; false if it was dropped (and counted).
    pub(crate) fn publish(&self, topics: Vec<String>, bytes: Bytes) -> bool {
        self.enqueue(Publish { topics, bytes, receivers: None })
    }

    /// Publish and learn how many nodes heard it (`Err` if it was not
    /// published).
    pub(crate) fn publish_counted(&self, topic: String, bytes: Bytes) -> oneshot::Receiver<usize> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(Publish { topics: vec![topic], bytes, receivers: Some(tx) });
        rx
    }

    fn enqueue(&self, publish: Publish) -> bool {
        if publish.bytes.is_empty() || !self.inner.connected.load(Ordering::SeqCst) {
            self.publish_failed(1);
            return false;
        }
        let size = wire_size(&publish);
        let mut pending = lock(&self.inner.pending);
        // One message larger than the bound (a megabyte relayed to a
        // member's 32 rooms) goes alone into an empty queue: else it could
        // never cross, however idle the bus.
        if pending.bytes > 0 && pending.bytes + size > MAX_PENDING_BYTES {
            drop(pending);
            self.publish_failed(1);
            return false;
        }
        pending.bytes += size;
        if pending.bytes > CONGESTED_BYTES {
            self.inner.congested.store(true, Ordering::Relaxed);
        }
        pending.queue.push_back(publish);
        drop(pending);
        self.inner.pending_ready.notify_one();
        true
    }

    /// Queue a lease request; dropped (so an acquire is answered by
    /// nobody) while the bus is unreachable.
    pub(crate) fn lease(&self, request: LeaseRequest) {
        if !self.is_connected() {
            return;
        }
        let mut leases = lock(&self.inner.leases);
        // A backplane drains these as they come; one that cannot keep up
        // loses the excess (an unanswered acquire makes its server count
        // alone; a lost release or renewal ends in the place's expiry).
        if leases.len() >= MAX_PENDING_LEASES {
            return;
        }
        leases.push_back(request);
        drop(leases);
        self.inner.leases_ready.notify_one();
    }

    /// How long ago the bus confirmed `topic` subscribed; `None` if it is
    /// not.
    pub(crate) fn subscribed_for(&self, topic: &str) -> Option<std::time::Duration> {
        lock(&self.inner.subscribed).get(topic).map(std::time::Instant::elapsed)
    }

    pub(crate) fn set_forgetter(&self, forget: impl Fn(&str) + Send + Sync + 'static) {
        let _ = self.inner.forgetter.set(Box::new(forget));
    }

    pub(crate) fn want(&self, topic: String, wanted: bool) {
        let mut interest = lock(&self.inner.interest);
        let changed = if wanted { interest.wanted.insert(topic.clone()) } else { interest.wanted.remove(&topic) };
        if changed {
            // A change that undoes one the backplane has not taken yet
            // leaves the bus as it is: forget both, so that churn while the
            // bus is away costs nothing.
            match interest.changes.get(&topic) {
                Some(&pending) if pending != wanted => {
                    interest.changes.remove(&topic);
                }
                _ => {
                    interest.changes.insert(topic, wanted);
                }
            }
            drop(interest);
            self.inner.interest_ready.notify_one();
        }
    }

    pub(crate) fn set_receiver(&self, receiver: impl Fn(&str, &[u8]) + Send + Sync + 'static) {
        let _ = self.inner.receiver.set(Box::new(receiver));
    }

    pub(crate) fn close(&self) {
        self.inner.closed.set();
    }

    pub(crate) fn count_received(&self) {
        self.inner.counters.received.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_duplicate(&self) {
        self.inner.counters.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_stale(&self) {
        self.inner.counters.stale.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_invalid(&self) {
        self.inner.counters.invalid.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past half the bound the link says it is congested, and a wait for
    /// it to drain ends when the backplane takes the queue below that.
    #[tokio::test]
    async fn a_congested_queue_is_waited_for_until_it_drains() {
        let link = Link::new();
        link.set_connected(true);
        let mega = Bytes::from(vec![0u8; 1 << 20]);
        while !link.is_congested() {
            assert!(link.publish(vec!["room".into()], mega.clone()));
        }
        let mut waiting = tokio::spawn({
            let link = link.clone();
            async move { link.uncongested().await }
        });
        assert!(!waiting.is_finished(), "the wait ended while congested");
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the wait ended while congested");
        while link.is_congested() {
            assert!(!waiting.is_finished(), "the wait ended while congested");
            link.take_publishes(1);
            tokio::task::yield_now().await;
        }
        tokio::time::timeout(std::time::Duration::from_secs(5), &mut waiting).await.expect("never woken").unwrap();
        assert!(!link.is_congested());
    }

    /// A message whose copies on all its topics are more than the queue's
    /// bound goes in alone, not dropped however idle the bus; behind it
    /// the bound holds.
    #[test]
    fn one_message_over_the_bound_goes_into_an_empty_queue() {
        let link = Link::new();
        link.set_connected(true);
        let topics: Vec<String> = (0..33).map(|i| format!("room-{i}")).collect();
        let big = Bytes::from(vec![0u8; 2 << 20]);
        assert!(link.publish(topics.clone(), big.clone()), "dropped although nothing waited");
        assert!(!link.publish(vec!["room-0".into()], Bytes::from_static(b"x")), "the bound did not hold behind it");
        assert_eq!(link.stats().publish_dropped, 1);
    }

    #[test]
    fn churn_while_the_bus_is_away_leaves_no_change_behind() {
        let link = Link::new();
        for i in 0..1000 {
            link.want(format!("room-{i}"), true);
            link.want(format!("room-{i}"), false);
        }
        link.want("kept".into(), true);
        assert_eq!(link.take_interest_changes(), (vec!["kept".to_owned()], vec![]));
        link.want("kept".into(), false);
        link.want("kept".into(), true);
        assert_eq!(link.take_interest_changes(), (vec![], vec![]), "undone before taken");
        assert_eq!(link.interest(), ["kept"]);
    }

    #[test]
    fn a_batch_stops_near_batch_bytes_and_the_pending_count_follows() {
        let link = Link::new();
        link.set_connected(true);
        let big = Bytes::from(vec![1u8; BATCH_BYTES / 3]);
        for _ in 0..5 {
            assert!(link.publish(vec!["t".into()], big.clone()));
        }
        let first = link.take_publishes(usize::MAX);
        assert_eq!(first.len(), 3, "a batch stops once it reaches BATCH_BYTES");
        assert_eq!(link.take_publishes(usize::MAX).len(), 2);
        assert_eq!(lock(&link.inner.pending).bytes, 0);
    }
}
