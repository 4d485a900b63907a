//! Rooms across many servers: the message bus between the nodes of a
//! cluster.
//!
//! A [`Server`](crate::Server) built with a [`Backplane`]
//! ([`ServerBuilder::backplane`](crate::server::ServerBuilder::backplane))
//! keeps its whole API; its emits, replies and `close_connection` reach
//! the connections of every node. What crosses the bus, and which node
//! hears what, is decided by [`roomwire_core::cluster`]: a node subscribes
//! to a room's topic only while it has members in that room, to a user's
//! topic while it holds a connection of that user, to its channels' topics
//! and to its own node topic; an emit is encoded once and published on the
//! topics of its target.
//!
//! A backplane implementation only moves bytes: it takes what to publish
//! and what to (un)subscribe from its [`Link`], hands what it receives back
//! to the link, and says whether it is connected. [`MemoryBus`] connects
//! servers in one process (tests); the `roomwire-redis` crate connects them
//! over Redis.
//!
//! # Delivery
//!
//! Each node delivers its own emits to its own connections at once,
//! whatever the bus does, and other nodes' emits as the bus brings them.
//! While a backplane is disconnected, what would cross it is dropped and
//! counted ([`BackplaneStats::publish_dropped`]), never queued for later.
//! `PROTOCOL.md` (section 9) says what is guaranteed, and where.

mod link;
mod memory;

pub use link::{BATCH_BYTES, BackplaneStats, LeaseRequest, Link, Publish};
pub use memory::{MemoryBackplane, MemoryBus};

use std::sync::Arc;

pub use roomwire_core::cluster::ClusterWire;

use crate::server::BoxFuture;

/// A message bus between the nodes of a cluster.
///
/// `run` is spawned once, when the server is built, and should return
/// when [`Link::closed`] resolves (the server shut down). It publishes
/// what [`Link::next_publishes`] yields, keeps the subscriptions
/// [`Link::interest`] names (again after every reconnect), hands every
/// received message to [`Link::receive`], answers [`Link::next_leases`]
/// (cluster-wide per-user caps; a bus without leases may drop them, and
/// each server then caps its own connections), and reports its state with
/// [`Link::set_connected`].
pub trait Backplane: Send + Sync + 'static {
    /// Move bytes between `link` and the bus until the link closes.
    fn run(self: Arc<Self>, link: Link) -> BoxFuture<'static, ()>;

    /// What the nodes on this bus say to each other: roomwire's cluster
    /// messages (the default), or Alepha's, to share a bus with Alepha
    /// Node servers.
    fn wire(&self) -> ClusterWire {
        ClusterWire::Roomwire
    }
}
