//! This server as a node of a cluster: its identity, what it publishes for
//! an emit, and what it does with what other nodes publish. Every rule
//! (message bytes, topics, deduplication) is the core's
//! ([`roomwire_core::cluster`]); this moves bytes between the endpoints and
//! the [`Link`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use roomwire_core::CloseCode;
use roomwire_core::cluster::order::{self, Copy, Heard, Sequencer};
use roomwire_core::cluster::{
    self, ALEPHA_TOPIC, About, AlephaBroadcast, BUS_TIMEOUT, Body, ClusterMessage, ClusterWire, Connection,
    ConnectionId, EmitBody, Encodable, LEASE_RENEW, LEASE_TTL, Origin, OwnEchoes, QUERY_TIMEOUT, ROOM_LEASE_TTL,
    RoomBody, RoomWatcher, Topic,
};
use roomwire_core::room::RoomId;
use tracing::{debug, trace};

use tokio::sync::mpsc;

use super::emit::{self, Payloads, Spec};
use super::lifecycle::Shared;
use super::registry::{ChannelCell, ConnectionInfo};
use crate::backplane::{LeaseRequest, Link};
use crate::lock;

/// The body of a message this node encodes.
type EncodableBody<'a> = Body<'a, &'a [&'a str], &'a [Connection<'a, &'a [&'a str]>]>;

/// Places renewed in one request (one bus round trip each).
const RENEW_CHUNK: usize = 1024;

/// This node: its id, the tag in its connection ids, its link if any.
pub(crate) struct Node {
    pub(crate) id: u64,
    pub(crate) tag: u32,
    seq: AtomicU64,
    pub(crate) link: Option<Link>,
    wire: ClusterWire,
    /// Alepha wire: what this node published and has not heard back yet
    /// (a hash of the bytes, and when), oldest first. Alepha's topic
    /// carries no origin, and every node hears its own broadcasts.
    own_echoes: Mutex<OwnEchoes>,
    /// Other nodes' emits and closes, put in their publishers' order.
    sequencer: Mutex<Sequencer<Vec<u8>>>,
    /// The sequencer's time origin.
    epoch: Instant,
    server: OnceLock<Weak<Shared>>,
    next_query: AtomicU64,
    /// Queries of this node waiting for answers, by number.
    queries: Mutex<HashMap<u64, mpsc::UnboundedSender<Vec<ConnectionInfo>>>>,
}

/// The connections of the whole cluster that a query matched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterConnections {
    /// The connections, node by node.
    pub connections: Vec<ConnectionInfo>,
    /// Whether every node that heard the query answered in time (false
    /// too while the backplane is disconnected: then only this node's
    /// connections are listed).
    pub complete: bool,
}

/// What a query asks about (owned, to be asked across an await).
pub(crate) enum Asked {
    Channel,
    Room(String),
    User(String),
}

impl Asked {
    fn about(&self) -> About<'_> {
        match self {
            Asked::Channel => About::Channel,
            Asked::Room(room) => About::Room(room),
            Asked::User(user) => About::User(user),
        }
    }
}

fn topic_of(path: &'static str, about: About<'_>) -> String {
    match about {
        About::Channel => Topic::Channel { path }.to_string(),
        About::Room(room) => Topic::Room { path, room }.to_string(),
        About::User(user) => Topic::User { path, user }.to_string(),
    }
}

/// Ask every node (this one included, through the bus, so that the count
/// of nodes that heard the query is the count of answers to wait for).
pub(crate) async fn query(shared: &Arc<Shared>, asked: Asked) -> ClusterConnections {
    let about = asked.about();
    let local = || -> Vec<ConnectionInfo> {
        shared.endpoints.iter().flat_map(|e| e.cell().lock().infos(e.path(), about)).collect()
    };
    let node = &shared.node;
    let Some(link) = &node.link else { return ClusterConnections { connections: local(), complete: true } };
    if node.wire == ClusterWire::Alepha {
        // Alepha nodes answer no queries.
        return ClusterConnections { connections: local(), complete: false };
    }
    if !link.stats().connected {
        return ClusterConnections { connections: local(), complete: false };
    }
    let number = node.next_query.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::unbounded_channel();
    lock(&node.queries).insert(number, tx);
    let _asking = Asking { node, number };
    let deadline = tokio::time::Instant::now() + Duration::from(QUERY_TIMEOUT);
    let mut expected = 0usize;
    let mut complete = true;
    for endpoint in &shared.endpoints {
        let path = endpoint.path();
        let message: Encodable<'_, &str> = ClusterMessage {
            origin: Origin { node: node.id, seq: 0, multi: false },
            path,
            body: Body::Query { asker: node.id, query: number, reply_to: node.tag, about },
        };
        let heard = link.publish_counted(topic_of(path, about), encode(&message));
        match tokio::time::timeout_at(deadline, heard).await {
            Ok(Ok(n)) => expected += n,
            _ => complete = false,
        }
    }
    let mut connections = Vec::new();
    let mut answers = 0;
    while answers < expected {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(answer)) => {
                connections.extend(answer);
                answers += 1;
            }
            _ => {
                complete = false;
                break;
            }
        }
    }
    ClusterConnections { connections, complete }
}

/// A query's entry in [`Node::queries`], removed however the query ends:
/// answered, timed out, or its future dropped (a caller's own timeout, an
/// HTTP client gone), which would otherwise leave it there for good.
struct Asking<'a> {
    node: &'a Node,
    number: u64,
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        lock(&self.node.queries).remove(&self.number);
    }
}

impl Node {
    pub(crate) fn new(link: Option<Link>, wire: ClusterWire) -> Arc<Self> {
        let mut random = [0u8; 8];
        let _ = getrandom::fill(&mut random);
        let id = u64::from_le_bytes(random);
        Arc::new(Self {
            id,
            tag: (id >> 32) as u32,
            seq: AtomicU64::new(1),
            link,
            wire,
            own_echoes: Mutex::default(),
            sequencer: Mutex::new(Sequencer::weighed(|message: &Vec<u8>| message.len())),
            epoch: Instant::now(),
            server: OnceLock::new(),
            next_query: AtomicU64::new(1),
            queries: Mutex::default(),
        })
    }

    /// Start hearing this node's topics and handing what it hears to
    /// `shared`'s endpoints.
    pub(crate) fn attach(self: &Arc<Self>, shared: &Arc<Shared>, runtime: Option<&tokio::runtime::Handle>) {
        let Some(link) = &self.link else { return };
        let _ = self.server.set(Arc::downgrade(shared));
        if let Some(runtime) = runtime {
            self.spawn_lease_renewal(runtime);
            self.spawn_hold_expiry(runtime, link.clone());
        }
        match self.wire {
            ClusterWire::Roomwire => {
                link.want(Topic::Node { tag: self.tag }.to_string(), true);
                for endpoint in &shared.endpoints {
                    link.want(Topic::Channel { path: endpoint.path() }.to_string(), true);
                }
            }
            ClusterWire::Alepha => link.want(ALEPHA_TOPIC.to_owned(), true),
        }
        let forgetting = Arc::downgrade(self);
        link.set_forgetter(move |topic| {
            if let Some(node) = forgetting.upgrade() {
                lock(&node.sequencer).forget_topic(topic, &mut |b: Vec<u8>| node.apply(&b));
            }
        });
        let node = Arc::downgrade(self);
        link.set_receiver(move |topic, bytes| {
            if let Some(node) = node.upgrade() {
                node.receive(topic, bytes);
            }
        });
    }

    /// Take a place for connection `id` of `user` under the cluster-wide
    /// cap `cap` of the endpoint at `path`: whether it was granted, or
    /// `None` if there is no bus or it did not answer in time (the caller
    /// then counts this node's connections only).
    pub(crate) async fn acquire_lease(&self, path: &'static str, user: &str, id: &str, cap: usize) -> Option<bool> {
        let link = self.link.as_ref()?;
        if !link.is_connected() {
            return None;
        }
        let (answer, granted) = tokio::sync::oneshot::channel();
        link.lease(LeaseRequest::Acquire {
            key: cluster::lease_key(path, user).to_string(),
            member: id.to_owned(),
            cap,
            ttl: LEASE_TTL.into(),
            answer,
        });
        tokio::time::timeout(BUS_TIMEOUT.into(), granted).await.ok()?.ok()
    }

    /// Give up the place of connection `id` of `user` (it ended).
    pub(crate) fn release_lease(&self, path: &'static str, user: &str, id: &str) {
        if let Some(link) = &self.link {
            link.lease(LeaseRequest::Release {
                key: cluster::lease_key(path, user).to_string(),
                member: id.to_owned(),
            });
        }
    }

    /// Renew, every [`LEASE_RENEW`], the places of this node's open
    /// connections under cluster-wide per-user caps (adding back any the
    /// bus lost, after an outage longer than [`LEASE_TTL`] say).
    fn spawn_lease_renewal(self: &Arc<Self>, runtime: &tokio::runtime::Handle) {
        let Some(link) = self.link.clone() else { return };
        let node = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut every = tokio::time::interval(LEASE_RENEW.into());
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = link.closed() => return,
                    _ = every.tick() => {}
                }
                let Some(node) = node.upgrade() else { return };
                let Some(shared) = node.server.get().and_then(Weak::upgrade) else { return };
                for endpoint in &shared.endpoints {
                    if endpoint.policy().max_connections_per_user.is_none() {
                        continue;
                    }
                    let path = endpoint.path();
                    // Queued under the endpoint's lock, as releases are: a
                    // connection that ended is either released after this
                    // renewal or not listed in it.
                    let state = endpoint.cell().lock();
                    let mut places = Vec::new();
                    state.for_each_user_connection(|user, id| {
                        places.push((cluster::lease_key(path, user).to_string(), id.to_owned()));
                    });
                    for chunk in places.chunks(RENEW_CHUNK) {
                        link.lease(LeaseRequest::Renew { places: chunk.to_vec(), ttl: LEASE_TTL.into() });
                    }
                }
            }
        });
    }

    /// Let out, now and then, messages that waited too long for copies
    /// that did not come.
    fn spawn_hold_expiry(self: &Arc<Self>, runtime: &tokio::runtime::Handle, link: Link) {
        let node = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    () = link.closed() => return,
                    _ = every.tick() => {}
                }
                let Some(node) = node.upgrade() else { return };
                let now = node.now();
                lock(&node.sequencer).expire(now, &mut |b: Vec<u8>| node.apply(&b));
            }
        });
    }

    /// Who owns the stateful room `room` of the endpoint at `path`, taking
    /// it if nobody does (or putting `restore` back, the owner this node
    /// knows), or renewing it if this node does: the owner's tag, or
    /// `None` if there is no bus or it did not answer in time.
    pub(crate) async fn claim_room(&self, path: &str, room: &str, restore: Option<u32>) -> Option<u32> {
        let link = self.interest_link()?;
        // A node just started (or reconnecting) waits a moment for its bus
        // rather than take a room another node may hold.
        let connected = async {
            while !link.is_connected() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(BUS_TIMEOUT.into(), connected).await.ok()?;
        let (answer, holder) = tokio::sync::oneshot::channel();
        link.lease(LeaseRequest::Claim {
            key: cluster::room_owner_key(path, room).to_string(),
            holder: cluster::ownership::holder(self.tag).to_string(),
            restore: restore.map(|tag| cluster::ownership::holder(tag).to_string()),
            ttl: ROOM_LEASE_TTL.into(),
            answer,
        });
        let holder = tokio::time::timeout(BUS_TIMEOUT.into(), holder).await.ok()?.ok()?;
        cluster::ownership::parse_holder(&holder)
    }

    /// Give up the ownership of `room` (it emptied, or the server stops).
    pub(crate) fn disclaim_room(&self, path: &str, room: &str) {
        if let Some(link) = self.interest_link() {
            let key = cluster::room_owner_key(path, room).to_string();
            link.lease(LeaseRequest::Disclaim { key, holder: cluster::ownership::holder(self.tag).to_string() });
        }
    }

    /// Send a stateful room's request or answer to the node `tag`.
    pub(crate) fn send_room(&self, tag: u32, path: &str, body: RoomBody<'_, &[&str]>) {
        let Some(link) = self.interest_link() else { return };
        let message: Encodable<'_, &str> =
            ClusterMessage { origin: Origin { node: self.id, seq: 0, multi: false }, path, body: Body::Room(body) };
        link.publish(vec![Topic::Node { tag }.to_string()], encode(&message));
    }

    /// Send a frame's payloads to connections `ids`, all of node `tag`
    /// (a stateful room's members there): one single-topic emit.
    pub(crate) fn emit_to_node(&self, tag: u32, path: &str, ids: &[&str], json: &[u8], postcard: Option<&[u8]>) {
        let Some(link) = self.interest_link() else { return };
        let none: &[&str] = &[];
        let message = ClusterMessage {
            origin: Origin { node: self.id, seq: 0, multi: false },
            path,
            body: Body::Emit(EmitBody {
                rooms: none,
                users: none,
                connections: ids,
                except_connections: none,
                except_users: none,
                json,
                postcard,
            }),
        };
        link.publish(vec![Topic::Node { tag }.to_string()], encode(&message));
    }

    /// The link, if rooms and users opening and closing change what this
    /// node hears (not on the Alepha wire, where every node hears all).
    pub(crate) fn interest_link(&self) -> Option<Link> {
        self.link.clone().filter(|_| self.wire == ClusterWire::Roomwire)
    }

    /// A fresh connection id carrying this node's tag.
    pub(crate) fn connection_id(&self) -> ConnectionId {
        let mut random = [0u8; 16];
        if getrandom::fill(&mut random).is_err() {
            random = *uuid::Uuid::new_v4().as_bytes();
        }
        ConnectionId::new(self.tag, random)
    }

    /// Publish an emit that this node has delivered to its own connections
    /// to the nodes that may hold others.
    pub(crate) fn publish<R: AsRef<str>, U: AsRef<str>>(
        &self,
        path: &'static str,
        spec: &Spec<'_, R, U>,
        except_self: Option<&str>,
        json: &[u8],
        postcard: Option<&[u8]>,
    ) {
        let Some(link) = &self.link else { return };
        if self.wire == ClusterWire::Alepha {
            return self.publish_alepha(link, path, spec, except_self, json);
        }
        let mut topics: Vec<String> = Vec::new();
        cluster::emit_topics(path, spec.rooms, spec.users, spec.connections, self.tag, |t| topics.push(t.to_string()));
        // Each once (a topic may come twice); the order does not matter.
        topics.sort_unstable();
        topics.dedup();
        if topics.is_empty() {
            return;
        }
        let [rooms, users, connections, except_connections, except_users] = target_lists(spec, except_self);
        let multi = topics.len() > 1;
        let message = ClusterMessage {
            origin: Origin {
                node: self.id,
                seq: if multi { self.seq.fetch_add(1, Ordering::Relaxed) } else { 0 },
                multi,
            },
            path,
            body: Body::Emit(EmitBody {
                rooms: &rooms[..],
                users: &users[..],
                connections: &connections[..],
                except_connections: &except_connections[..],
                except_users: &except_users[..],
                json,
                postcard,
            }),
        };
        link.publish(topics, encode(&message));
    }

    fn publish_alepha<R: AsRef<str>, U: AsRef<str>>(
        &self,
        link: &Link,
        path: &'static str,
        spec: &Spec<'_, R, U>,
        except_self: Option<&str>,
        json: &[u8],
    ) {
        let [rooms, users, connections, except_connections, except_users] = target_lists(spec, except_self);
        let broadcast = AlephaBroadcast {
            channel_path: path,
            rooms: &rooms[..],
            users: &users[..],
            connections: &connections[..],
            except_connections: &except_connections[..],
            except_users: &except_users[..],
            message: json,
        };
        let mut bytes = vec![0u8; cluster::encode_alepha_max_len(&broadcast)];
        let Ok(n) = cluster::encode_alepha(&broadcast, &mut bytes) else { return link.publish_failed(1) };
        bytes.truncate(n);
        let hash = hash_of(&bytes);
        // Remembered before it can echo, forgotten if it was not queued.
        lock(&self.own_echoes).published(hash, self.now());
        if !link.publish(vec![ALEPHA_TOPIC.to_owned()], Bytes::from(bytes)) {
            lock(&self.own_echoes).unpublished(hash);
        }
    }

    fn receive_alepha(&self, link: &Link, bytes: &[u8]) {
        if lock(&self.own_echoes).is_echo(hash_of(bytes), self.now()) {
            return;
        }
        let broadcast = match cluster::decode_alepha(bytes) {
            Ok(broadcast) => broadcast,
            Err(error) => {
                debug!(%error, "not an Alepha broadcast");
                return link.count_invalid();
            }
        };
        let Some(shared) = self.server.get().and_then(Weak::upgrade) else { return };
        let Some(endpoint) = shared.endpoint(broadcast.channel_path) else { return };
        let list = |l: cluster::JsonStrings<'_>| -> Vec<String> { l.iter().map(|s| s.to_string()).collect() };
        let lists = [
            broadcast.rooms,
            broadcast.users,
            broadcast.connections,
            broadcast.except_connections,
            broadcast.except_users,
        ]
        .map(list);
        // Alepha sends JSON only: postcard connections are skipped.
        match deliver_heard(endpoint.cell(), lists, broadcast.message, None) {
            Ok(reached) => trace!(reached, "delivered from an Alepha node"),
            Err(error) => debug!(%error, "not delivered from an Alepha node"),
        }
        link.count_received();
    }

    /// Ask the node holding connection `id` to close it (it looks the id
    /// up in all its endpoints; `path` is this node's first). False if no
    /// node's tag is in the id, or it is this node's, or there is no bus.
    pub(crate) fn close_remote(&self, path: &'static str, id: &str, code: CloseCode, reason: &str) -> bool {
        self.send_to_holder(path, id, Body::Close { connection: id, code, reason })
    }

    /// Ask the node holding connection `id` to join it to `room` (or take
    /// it out), as [`close_remote`](Self::close_remote) asks for a close.
    pub(crate) fn membership_remote(&self, path: &'static str, id: &str, room: &str, join: bool) -> bool {
        self.send_to_holder(path, id, Body::Membership { connection: id, room, join })
    }

    /// Publish `body` on the topic of the node whose tag connection `id`
    /// carries; false if it carries none, or this node's, or there is no bus.
    fn send_to_holder(&self, path: &'static str, id: &str, body: EncodableBody<'_>) -> bool {
        let Some(link) = self.interest_link() else { return false };
        let Some(tag) = cluster::node_tag_of(id).filter(|&tag| tag != self.tag) else { return false };
        let message: Encodable<'_, &str> =
            ClusterMessage { origin: Origin { node: self.id, seq: 0, multi: false }, path, body };
        link.publish(vec![Topic::Node { tag }.to_string()], encode(&message));
        true
    }

    fn receive(&self, topic: &str, bytes: &[u8]) {
        let Some(link) = &self.link else { return };
        if self.wire == ClusterWire::Alepha {
            if topic == ALEPHA_TOPIC {
                self.receive_alepha(link, bytes);
            }
            return;
        }
        let message = match cluster::decode(bytes) {
            Ok(message) => message,
            Err(error) => {
                debug!(topic, %error, "not a cluster message");
                link.count_invalid();
                return;
            }
        };
        if message.origin.node == self.id
            && matches!(message.body, Body::Emit(_) | Body::Close { .. } | Body::Membership { .. })
        {
            // Delivered here when it was published.
            return;
        }
        if let Body::Emit(_) | Body::Close { .. } | Body::Membership { .. } = message.body {
            // Emits, closes and memberships go out in their publisher's order on every
            // topic (see roomwire_core::cluster::order).
            let copy = match (&message.body, message.origin.multi) {
                (Body::Emit(e), true) => {
                    let (rooms, users, connections) = (
                        e.rooms.iter().collect::<Vec<_>>(),
                        e.users.iter().collect::<Vec<_>>(),
                        e.connections.iter().collect::<Vec<_>>(),
                    );
                    // The copies to wait for: on the topics this node is
                    // subscribed to. On one subscribed to only just, a copy
                    // published before the subscription reached the bus
                    // never comes: it is waited for until the topic's
                    // grace ends, which keeps the order of what was
                    // published there after the subscription.
                    let mut topics = std::collections::BTreeSet::new();
                    let publisher_tag = (message.origin.node >> 32) as u32;
                    cluster::emit_topics(message.path, &rooms, &users, &connections, publisher_tag, |t| {
                        topics.insert(t.to_string());
                    });
                    let mut youngest: Option<Duration> = None;
                    topics.retain(|t| match link.subscribed_for(t) {
                        Some(age) => {
                            youngest = Some(youngest.map_or(age, |y| y.min(age)));
                            true
                        }
                        None => false,
                    });
                    let release_by = order::release_by(self.now(), youngest.map(Into::into));
                    Some((message.origin.seq, topics, release_by))
                }
                _ => None,
            };
            let expected: Vec<&str> =
                copy.as_ref().map(|(_, t, _)| t.iter().map(String::as_str).collect()).unwrap_or_default();
            let copy = match &copy {
                Some((seq, _, release_by)) => Copy::Multi { seq: *seq, expected: &expected, release_by: *release_by },
                None => Copy::Single,
            };
            let mut sequencer = lock(&self.sequencer);
            if copy == Copy::Single && !sequencer.is_queued(message.origin.node, topic) {
                // Nothing of its publisher waits on this topic: out at once,
                // as decoded (the common case: no copy, no second decode).
                self.apply_message(message);
                return;
            }
            let now = self.now();
            let heard = sequencer
                .heard(now, message.origin.node, topic, copy, bytes.to_vec(), &mut |b: Vec<u8>| self.apply(&b));
            match heard {
                Heard::Duplicate => link.count_duplicate(),
                Heard::Stale => link.count_stale(),
                Heard::Delivered | Heard::Held => {}
            }
            return;
        }
        let Some(shared) = self.server.get().and_then(Weak::upgrade) else { return };
        let Some(endpoint) = shared.endpoint(message.path) else {
            trace!(path = message.path, "cluster message for a channel not served here");
            return;
        };
        match message.body {
            Body::Emit(_) | Body::Close { .. } | Body::Membership { .. } => {}
            Body::Room(room) => match endpoint.rooms() {
                Some(host) => host.heard(&super::Server { shared: shared.clone() }, room),
                None => trace!(path = message.path, "room traffic for an endpoint without stateful rooms"),
            },
            Body::Query { asker, query, reply_to, about } => {
                let path = endpoint.path();
                let infos = endpoint.cell().lock().infos(path, about);
                let answered: Vec<Connection<'_, &[String]>> = infos
                    .iter()
                    .map(|i| Connection { id: &i.id, user: i.user_id.as_deref(), wire: i.wire, rooms: &i.rooms[..] })
                    .collect();
                let answer: Encodable<'_, String> = ClusterMessage {
                    origin: Origin { node: self.id, seq: 0, multi: false },
                    path,
                    body: Body::Answer { asker, query, connections: &answered },
                };
                link.publish(vec![Topic::Node { tag: reply_to }.to_string()], encode(&answer));
            }
            Body::Answer { asker, query, connections } => {
                if asker != self.id {
                    return;
                }
                let path = endpoint.path();
                let infos = connections
                    .iter()
                    .map(|c| ConnectionInfo {
                        id: c.id.to_owned(),
                        user_id: c.user.map(str::to_owned),
                        path,
                        rooms: c.rooms.iter().map(str::to_owned).collect(),
                        wire: c.wire,
                    })
                    .collect();
                if let Some(waiting) = lock(&self.queries).get(&query) {
                    let _ = waiting.send(infos);
                }
            }
        }
    }

    /// Deliver an emit or close another node published (bytes already
    /// checked when heard).
    fn apply(&self, bytes: &[u8]) {
        if let Ok(message) = cluster::decode(bytes) {
            self.apply_message(message);
        }
    }

    /// Deliver an emit or close another node published.
    fn apply_message(&self, message: ClusterMessage<'_>) {
        let Some(link) = &self.link else { return };
        let Some(shared) = self.server.get().and_then(Weak::upgrade) else { return };
        if let Body::Close { connection, code, reason } = message.body {
            // Its code was checked as it was decoded.
            shared.close_local(connection, code, reason);
            return link.count_received();
        }
        if let Body::Membership { connection, room, join } = message.body {
            match shared.membership_local(connection, room, join) {
                Some(Ok(_)) => {}
                Some(Err(refusal)) => debug!(connection, room, join, reason = refusal.reason, "membership refused"),
                None => debug!(connection, room, join, "membership: no such connection here"),
            }
            return link.count_received();
        }
        let Some(endpoint) = shared.endpoint(message.path) else {
            trace!(path = message.path, "cluster message for a channel not served here");
            return;
        };
        match message.body {
            Body::Emit(e) => {
                let lists = [e.rooms, e.users, e.connections, e.except_connections, e.except_users]
                    .map(|l| l.iter().collect::<Vec<&str>>());
                match deliver_heard(endpoint.cell(), lists, e.json, e.postcard) {
                    Ok(reached) => trace!(reached, "delivered from another node"),
                    Err(error) => debug!(%error, "not delivered from another node"),
                }
                link.count_received();
            }
            Body::Close { .. } | Body::Membership { .. } | Body::Query { .. } | Body::Answer { .. } | Body::Room(_) => {
            }
        }
    }

    /// Now, on the sequencer's clock.
    fn now(&self) -> roomwire_core::time::Instant {
        roomwire_core::time::Instant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }
}

/// The five target lists of an emit as another node reads them: rooms,
/// users, connections, excluded connections (the sender of a reply except
/// self among them), excluded users.
fn target_lists<'s, R: AsRef<str>, U: AsRef<str>>(
    spec: &'s Spec<'_, R, U>,
    except_self: Option<&'s str>,
) -> [Vec<&'s str>; 5] {
    fn strs<S: AsRef<str>>(list: &[S]) -> Vec<&str> {
        list.iter().map(AsRef::as_ref).collect()
    }
    let mut except_connections = strs(spec.except_connections);
    except_connections.extend(except_self);
    [strs(spec.rooms), strs(spec.users), strs(spec.connections), except_connections, strs(spec.except_users)]
}

/// Deliver what another node published (the five target lists: rooms,
/// users, connections, excluded connections, excluded users) to this
/// node's connections of `cell`.
fn deliver_heard<S: AsRef<str>>(
    cell: &ChannelCell,
    lists: [Vec<S>; 5],
    json: &[u8],
    postcard: Option<&[u8]>,
) -> Result<usize, emit::EmitError> {
    let [rooms, users, connections, except_connections, except_users] = lists;
    // Only room ids this node could hold are looked up.
    let rooms: Vec<S> = rooms.into_iter().filter(|r| RoomId::new(r.as_ref()).is_ok()).collect();
    let spec = Spec {
        rooms: &rooms,
        users: &users,
        connections: &connections,
        except_connections: &except_connections,
        except_users: &except_users,
        except_member: None,
    };
    emit::deliver_encoded(cell, &spec, json, Payloads::Encoded(postcard))
}

fn hash_of(bytes: &[u8]) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(bytes)
}

fn encode<S: AsRef<str>>(message: &Encodable<'_, S>) -> Bytes {
    let mut bytes = vec![0u8; cluster::encoded_len(message)];
    match cluster::encode(message, &mut bytes) {
        Ok(n) => bytes.truncate(n),
        // encoded_len is exact; an over-long list (4 GiB) cannot be sent.
        Err(_) => bytes.clear(),
    }
    Bytes::from(bytes)
}

/// Tells the link which room topics this node wants, as rooms of an
/// endpoint open and close.
#[derive(Default)]
pub(crate) struct RoomInterest {
    pub(crate) link: Option<(Link, &'static str)>,
}

impl RoomInterest {
    pub(crate) fn user(&self, user: &str, wanted: bool) {
        if let Some((link, path)) = &self.link {
            link.want(Topic::User { path, user }.to_string(), wanted);
        }
    }
}

impl RoomWatcher for RoomInterest {
    fn opened(&mut self, room: &RoomId) {
        if let Some((link, path)) = &self.link {
            link.want(Topic::Room { path, room: room.as_str() }.to_string(), true);
        }
    }

    fn closed(&mut self, room: &RoomId) {
        if let Some((link, path)) = &self.link {
            link.want(Topic::Room { path, room: room.as_str() }.to_string(), false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{Endpoint, Server};

    roomwire_core::channel! { /// A channel.
    pub struct Ping { path: "/ws/ping", in: (), out: () } }

    /// A query whose caller stops waiting (its own timeout) leaves no
    /// entry behind, nor does one that runs to its end.
    #[tokio::test]
    async fn a_query_dropped_before_its_answers_leaves_no_entry() {
        let bus = crate::backplane::MemoryBus::new();
        let server = Server::builder()
            .endpoint(Endpoint::<Ping>::new(|_ctx| Box::pin(async { Ok(()) })))
            .backplane(bus.backplane())
            .build()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            while !server.backplane_stats().is_some_and(|stats| stats.connected) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .expect("the bus never came up");
        let mut query = Box::pin(server.cluster_connections());
        // Polled until it waits for the bus, then dropped.
        assert!(futures_poll_once(query.as_mut()).await.is_none(), "the query ended at once");
        assert_eq!(lock(&server.shared.node.queries).len(), 1);
        drop(query);
        assert!(lock(&server.shared.node.queries).is_empty(), "a dropped query left its entry");
        let answered = server.cluster_connections().await;
        assert!(answered.complete);
        assert!(lock(&server.shared.node.queries).is_empty());
    }

    /// `future` polled once: its output, if it had one.
    async fn futures_poll_once<F: Future + Unpin>(mut future: F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut future).poll(cx) {
                std::task::Poll::Ready(output) => Some(output),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
