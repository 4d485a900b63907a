//! Rooms across many nodes: what one roomwire node says to the others over
//! a message bus (Redis pub/sub), and what it listens to.
//!
//! Every decision of the cluster protocol lives here; a backplane adapter
//! only moves bytes between a bus and a server:
//!
//! * [`message`](mod@message): the cluster message, encoded once per emit
//!   whatever the number of nodes and recipients;
//! * [`topic`]: which topic carries which traffic ([`Topic`]), and the node
//!   tag inside connection ids ([`connection_id`], [`node_tag_of`]);
//! * `id`: a connection id kept as its 16 bytes ([`ConnectionId`]);
//! * [`interest`]: which rooms a node has members in, as they change
//!   ([`WatchedTable`]): a node subscribes to a room's topic only then;
//! * [`window`]: deduplication of a message published on several topics
//!   ([`SeqWindow`]);
//! * `order` (feature `alloc`): publish order across topics on different
//!   servers (a Redis Cluster's shards);
//! * [`ownership`]: who owns a stateful room, and what a claim's answer
//!   means;
//! * [`alepha`](mod@alepha): Alepha's cluster wire (one topic, JSON), to join
//!   a cluster of Alepha Node servers.
//!
//! # Routing
//!
//! An emit is published on the topics of the rooms it names, of the users
//! it names and of the nodes holding the connections it names; an emit
//! naming none of them (the whole channel) on the channel's topic. Each
//! receiving node resolves the whole target against its own connections,
//! so a connection reached through several of the named rooms, users or
//! itself still gets the message once; a node that hears the message on
//! several topics delivers it once, when the last copy it expects comes
//! (the message is marked `multi` and numbered for that), so that every
//! earlier message on each of those topics goes first (`order`). Messages
//! from one publisher to one room stay in order: they share that room's
//! topic, and a multi message waits for its copy on it.

use crate::time::Duration;

use crate::reconnect::ReconnectPolicy;

pub mod alepha;
mod id;
pub mod interest;
pub mod message;
#[cfg(feature = "alloc")]
pub mod order;
pub mod ownership;
pub mod topic;
pub mod window;

#[cfg(feature = "alloc")]
pub use alepha::OwnEchoes;
pub use alepha::{
    ALEPHA_TOPIC, AlephaBroadcast, AlephaTopicError, JsonStrings, MAX_OWN_ECHOES, OWN_ECHO_AGE, decode_alepha,
    encode_alepha, encode_alepha_max_len,
};
pub use id::{CONNECTION_ID_LEN, ConnectionId, ConnectionIdText};
pub use interest::{RoomWatcher, WatchedTable};
pub use message::{
    About, Body, ClusterMessage, Connection, ConnectionList, DecodeError, EmitBody, Encodable, Origin, RoomBody,
    RoomOp, RoomStatus, StrList, decode, encode, encoded_len,
};
pub use topic::{Topic, connection_id, emit_topics, node_tag_of};
pub use window::{Seen, SeqWindow};

/// What nodes of a cluster say to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClusterWire {
    /// roomwire's: [`message`](mod@message) bytes on per-room, per-user,
    /// per-channel and per-node [`Topic`]s; nodes hear only what they hold.
    #[default]
    Roomwire,
    /// Alepha's: JSON on the one [`ALEPHA_TOPIC`], which every node hears
    /// whole; for a cluster that has Alepha Node servers in it. No
    /// cluster-wide `close_connection` or queries (Alepha has none).
    Alepha,
}

/// How long a node waits for the answers to a cluster-wide query (and
/// for the bus to say how many nodes will answer); a node silent that long
/// makes the answer incomplete.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// How a backplane connects to its bus again after losing it: at once
/// (within 100 ms), backing off to every 2 s, forever; a bus that stayed
/// up 10 s counts as healthy again. Cross-node messages are dropped (and
/// counted) meanwhile, so the wait is short.
pub const BUS_RECONNECT: ReconnectPolicy = ReconnectPolicy {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(2),
    multiplier: 2,
    jitter_percent: 50,
    max_retries: None,
    reset_after: Duration::from_secs(10),
};

/// How often a backplane checks that its bus answers.
pub const BUS_HEARTBEAT: Duration = Duration::from_secs(1);

/// How long the bus may take to answer a command (a heartbeat, a
/// publish, a subscription) before the backplane takes it as lost: a
/// paused bus is told from a slow one by this.
pub const BUS_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a connection's place under a cluster-wide per-user cap lasts
/// unless its node renews it: a node that dies holds its users' places
/// this long at most.
pub const LEASE_TTL: Duration = Duration::from_secs(30);

/// How often a node renews the places of its open connections.
pub const LEASE_RENEW: Duration = Duration::from_secs(10);

/// The name of the set of places a user holds under an endpoint's
/// cluster-wide per-user cap (a Redis sorted set: connection id, expiry).
///
/// ```
/// assert_eq!(roomwire_core::cluster::lease_key("/ws/chat", "alice").to_string(), "rw:8:/ws/chat:lease:alice");
/// ```
pub fn lease_key<'a>(path: &'a str, user: &'a str) -> impl core::fmt::Display + 'a {
    struct Key<'a>(&'a str, &'a str);
    impl core::fmt::Display for Key<'_> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            write!(f, "rw:{}:{}:lease:{}", self.0.len(), self.0, self.1)
        }
    }
    Key(path, user)
}

/// How long a node's ownership of a stateful room lasts unless renewed: a
/// node that dies holds its rooms this long at most, then the next node
/// with members in a room takes it (with a new state).
pub const ROOM_LEASE_TTL: Duration = Duration::from_secs(6);

/// How often the owner of a stateful room renews its ownership, and how
/// often every other node with members in the room asks who owns it (and
/// takes it if nobody does) and tells the owner which members it has.
pub const ROOM_LEASE_RENEW: Duration = Duration::from_secs(2);

/// How long a node waits for the owner of a stateful room to answer a
/// join, a message or a call before failing it.
pub const ROOM_REQUEST_TIMEOUT: Duration = QUERY_TIMEOUT;

/// The key naming the node that owns a stateful room (a Redis string: the
/// owner's node tag, expiring after [`ROOM_LEASE_TTL`] unless renewed).
///
/// ```
/// assert_eq!(roomwire_core::cluster::room_owner_key("/ws/counter", "r1").to_string(), "rw:11:/ws/counter:owner:r1");
/// ```
pub fn room_owner_key<'a>(path: &'a str, room: &'a str) -> impl core::fmt::Display + 'a {
    struct Key<'a>(&'a str, &'a str);
    impl core::fmt::Display for Key<'_> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            write!(f, "rw:{}:{}:owner:{}", self.0.len(), self.0, self.1)
        }
    }
    Key(path, room)
}

/// How long after its subscription is confirmed a node may miss a topic's
/// copies of a multi-topic message: copies published just before the
/// subscription reached the bus never come, so within it a copy is waited
/// for only until the grace ends (`order::release_by`, feature `alloc`).
pub const SUBSCRIBE_GRACE: Duration = Duration::from_millis(200);
