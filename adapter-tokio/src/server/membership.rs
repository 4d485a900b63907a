//! The application's own room membership (Alepha's room manager): join
//! or leave a connection by id, and the rooms' statistics, on this server
//! or across its cluster. Which rooms are valid and what the limits say is
//! the core's ([`roomwire_core::dispatch::join_for_application`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use roomwire_core::dispatch::Refusal;
use roomwire_core::room::RoomTable;
use tracing::debug;

use super::Server;
use super::lifecycle::Shared;
use super::registry::ConnectionInfo;

/// What [`Server::join_room`] or [`Server::leave_room`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MembershipChange {
    /// The connection is on this server and its rooms changed.
    Changed,
    /// The connection is on this server and was already in (joining) or
    /// not in (leaving) the room.
    Unchanged,
    /// The connection belongs to another node of the cluster (its id
    /// carries that node's tag): the request was published to that node,
    /// which applies it under the same rules (PROTOCOL.md §9.1).
    Sent,
}

/// Why [`Server::join_room`] or [`Server::leave_room`] did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MembershipError {
    /// No such connection is open on this server, and no other node of
    /// its cluster can hold it.
    NoSuchConnection,
    /// The room cannot be joined: not a valid room id of the channel
    /// ("Invalid room id"), over a room limit ("Too many rooms for this
    /// connection", "Room full", …), or the connection is a stateful
    /// room's, which is in its room only.
    Refused(&'static str),
}

impl fmt::Display for MembershipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchConnection => f.write_str("no such connection"),
            Self::Refused(reason) => write!(f, "room refused: {reason}"),
        }
    }
}

impl std::error::Error for MembershipError {}

/// The rooms of a server (or of its cluster) and their sizes: Alepha's
/// `getStats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoomStats {
    /// Every room with at least one member, with how many, by endpoint
    /// path and room id (rooms are per endpoint: the same id on two
    /// endpoints is two rooms).
    pub rooms: BTreeMap<(&'static str, String), usize>,
    /// Connections in at least one room (each counted once).
    pub connections: usize,
    /// Whether every node answered ([`Server::cluster_room_stats`]); always
    /// true for [`Server::room_stats`].
    pub complete: bool,
}

impl RoomStats {
    /// How many rooms have members.
    pub fn total_rooms(&self) -> usize {
        self.rooms.len()
    }

    /// The members of `room` on the endpoint at `path` (0 for a room with
    /// none).
    pub fn room_size(&self, path: &'static str, room: &str) -> usize {
        self.rooms.get(&(path, room.to_owned())).copied().unwrap_or(0)
    }

    /// What the connections listed say of their rooms.
    fn of_connections(connections: &[ConnectionInfo], complete: bool) -> Self {
        let mut rooms = BTreeMap::new();
        let mut members = BTreeSet::new();
        for info in connections {
            for room in &info.rooms {
                *rooms.entry((info.path, room.clone())).or_insert(0) += 1;
                members.insert(info.id.as_str());
            }
        }
        Self { rooms, connections: members.len(), complete }
    }
}

impl Shared {
    /// Join (or leave) connection `id` of this server to `room`; `None` if
    /// it is not open here.
    pub(crate) fn membership_local(&self, id: &str, room: &str, join: bool) -> Option<Result<bool, Refusal>> {
        for endpoint in &self.endpoints {
            // Found and changed under one lock: a member id freed and
            // given to a new connection meanwhile cannot be mistaken.
            let mut state = endpoint.cell().lock();
            let Some(member) = state.member_of(id) else { continue };
            let table = &mut state.table;
            return Some(if join {
                endpoint.join_for_application(table, member, room)
            } else {
                endpoint.leave_for_application(table, member, room)
            });
        }
        None
    }
}

impl Server {
    /// Put connection `id` in `room` of its endpoint, as the application
    /// decides (Alepha's `joinRoom`): the connection then gets what is
    /// emitted to the room, and on the Alepha wire its messages may name
    /// the room. The channel's room-id rule and the room limits apply; the
    /// endpoint's `authorize_room` is not asked (the application is the
    /// one deciding). A connection of another node of the cluster is
    /// joined by that node ([`MembershipChange::Sent`]).
    ///
    /// Server-side memberships last as long as the connection: a client
    /// that reconnects is a new connection, in the rooms it asks for.
    /// Clients are not told. A roomwire-wire client receives the room's
    /// messages, labelled with the room, but its own list of rooms does not
    /// change: it cannot `leave` a room the server joined, and after a
    /// server-side [`leave_room`](Self::leave_room) its messages to that
    /// room are answered "not a member". On the Alepha wire a connection's
    /// messages that name no room it is in are handled in its first room:
    /// leaving that one changes which room that is, and the messages of a
    /// connection left in no room are dropped (never handled in a room it
    /// is not in).
    ///
    /// For another node's connection, [`MembershipChange::Sent`] means the
    /// request was published; that node applies the channel's rule and the
    /// room limits, and logs a refusal (the room id's length is checked
    /// here).
    ///
    /// ```
    /// # async fn f(server: roomwire_tokio::server::Server, id: &str) -> Result<(), Box<dyn std::error::Error>> {
    /// use roomwire_tokio::server::MembershipChange;
    /// assert_eq!(server.join_room(id, "moderators")?, MembershipChange::Changed);
    /// assert!(server.connection(id).unwrap().rooms.contains(&"moderators".to_owned()));
    /// server.leave_room(id, "moderators")?;
    /// # Ok(()) }
    /// ```
    pub fn join_room(&self, id: &str, room: &str) -> Result<MembershipChange, MembershipError> {
        self.change_membership(id, room, true)
    }

    /// Take connection `id` out of `room` (Alepha's `leaveRoom`), on this
    /// server or, for another node's connection, on that node. A room left
    /// empty is deleted.
    pub fn leave_room(&self, id: &str, room: &str) -> Result<MembershipChange, MembershipError> {
        self.change_membership(id, room, false)
    }

    fn change_membership(&self, id: &str, room: &str, join: bool) -> Result<MembershipChange, MembershipError> {
        let shared = &self.shared;
        if roomwire_core::RoomId::new(room).is_err() {
            return Err(MembershipError::Refused(roomwire_core::dispatch::INVALID_ROOM_ID.reason));
        }
        match shared.membership_local(id, room, join) {
            Some(Ok(true)) => Ok(MembershipChange::Changed),
            Some(Ok(false)) => Ok(MembershipChange::Unchanged),
            Some(Err(refusal)) => Err(MembershipError::Refused(refusal.reason)),
            None => {
                if shared.ask_holder(|node, path| node.membership_remote(path, id, room, join)) {
                    Ok(MembershipChange::Sent)
                } else {
                    debug!(connection = id, room, join, "membership: no such connection");
                    Err(MembershipError::NoSuchConnection)
                }
            }
        }
    }

    /// Whether connection `id` of this server is in `room` (Alepha's
    /// `isInRoom`); false for a connection of another node (see
    /// [`cluster_connections`](Self::cluster_connections)).
    pub fn is_in_room(&self, id: &str, room: &str) -> bool {
        self.shared.endpoints.iter().any(|endpoint| {
            let state = endpoint.cell().lock();
            state.member_of(id).is_some_and(|member| state.table.is_in_room(member, room))
        })
    }

    /// The rooms of this server and their sizes (Alepha's `getStats`).
    pub fn room_stats(&self) -> RoomStats {
        let mut stats = RoomStats { complete: true, ..RoomStats::default() };
        for endpoint in &self.shared.endpoints {
            let state = endpoint.cell().lock();
            for (room, members) in state.table.rooms() {
                stats.rooms.insert((endpoint.path(), room.as_str().to_owned()), members);
            }
            stats.connections += state.table.member_count();
        }
        stats
    }

    /// The rooms of the whole cluster and their sizes, from every node's
    /// connections ([`cluster_connections`](Self::cluster_connections): the
    /// same timeout, and `complete` false when a node did not answer). A
    /// server without a backplane answers [`room_stats`](Self::room_stats).
    /// Every node sends its whole list of connections for it: an
    /// operator's view, not something to call per message.
    pub async fn cluster_room_stats(&self) -> RoomStats {
        let all = self.cluster_connections().await;
        RoomStats::of_connections(&all.connections, all.complete)
    }
}
