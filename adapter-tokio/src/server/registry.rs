//! Who is connected to an endpoint: its room table, its connections and
//! their users, behind one `std` mutex that is never held across an await.

use std::collections::HashMap;
use std::hash::RandomState;
use std::sync::{Arc, Mutex, MutexGuard};

use roomwire_core::CloseCode;
use roomwire_core::cluster::{About, ConnectionId, WatchedTable};
use roomwire_core::deflate::Deflate;
use roomwire_core::room::{GrowableRoomTable, MemberId, RoomTable, SlotIndex, TableAccess, TableLimits};
use roomwire_core::session::ServerSession;
use roomwire_core::target::{Directory, SeenVec};
use roomwire_core::wire::WireFormat;

use super::cluster::{Node, RoomInterest};
use super::outbox::Outbox;
use super::{Permit, Server};

/// An endpoint's room table. Clients choose room names, so it hashes with
/// `RandomState` (SipHash, randomly keyed) against hash flooding. Rooms
/// opening and closing tell the backplane which room topics to hear.
pub(crate) type Table = WatchedTable<GrowableRoomTable<RandomState>, RoomInterest>;

/// An open connection, as the server's lookups report it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// `ws-<uuid v4>`.
    pub id: String,
    /// The authenticated user, if any.
    pub user_id: Option<String>,
    /// The endpoint path.
    pub path: &'static str,
    /// Its rooms, in join order.
    pub rooms: Vec<String>,
    /// The wire it speaks.
    pub wire: WireFormat,
}

/// A connection was registered (Alepha's `onConnect`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectEvent {
    /// `ws-<uuid v4>`.
    pub connection_id: String,
    /// The authenticated user, if any.
    pub user_id: Option<String>,
    /// The rooms it joined at the handshake, in order (none on the roomwire
    /// wire unless `authorize` named one).
    pub rooms: Vec<String>,
    /// The endpoint path.
    pub path: &'static str,
}

/// A connection ended and left its rooms (Alepha's `onDisconnect`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DisconnectEvent {
    /// `ws-<uuid v4>`.
    pub connection_id: String,
    /// The authenticated user, if any.
    pub user_id: Option<String>,
    /// The rooms it was in when it ended.
    pub rooms: Vec<String>,
    /// The endpoint path.
    pub path: &'static str,
    /// The close code of the closing handshake: ours if the server closed
    /// first, else the client's; `None` if the connection dropped without
    /// one (keepalive timeout, I/O error, protocol error answered by the
    /// core).
    pub code: Option<CloseCode>,
    /// The close reason, or why the connection dropped.
    pub reason: String,
}

/// A client sent a whole message (Alepha's `websocket:message`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MessageEvent<'a> {
    /// The sender.
    pub connection_id: &'a str,
    /// The endpoint path.
    pub path: &'static str,
    /// The message as received (JSON text on the Alepha wire).
    pub data: &'a [u8],
}

/// A handler failed on a client's message (Alepha's `websocket:error`):
/// the sender was told (see [the module docs](super#handlers-and-typed-messages))
/// and its connection stays open.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ErrorEvent<'a> {
    /// The sender.
    pub connection_id: &'a str,
    /// The sender's user, if any.
    pub user_id: Option<&'a str>,
    /// The endpoint path.
    pub path: &'static str,
    /// The room the message was handled in.
    pub room_id: &'a str,
    /// What went wrong.
    pub failure: HandlerFailure<'a>,
}

/// How a handler failed.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum HandlerFailure<'a> {
    /// It returned this error (whose text the sender got).
    Error(&'a (dyn std::error::Error + Send + Sync + 'static)),
    /// It panicked, with this message (empty if the panic's payload was
    /// not text); the sender got `Unknown error`.
    Panic(&'a str),
    /// It ran longer than [`ServerConfig::handler_timeout`](super::ServerConfig::handler_timeout)
    /// and was cancelled; the sender got `Handler timed out`.
    TimedOut(std::time::Duration),
}

impl std::fmt::Display for HandlerFailure<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Error(error) => write!(f, "handler failed: {error}"),
            Self::Panic(message) => write!(f, "handler panicked: {message}"),
            Self::TimedOut(limit) => write!(f, "handler timed out after {limit:?}"),
        }
    }
}

pub(crate) struct MemberSlot {
    pub(crate) id: ConnectionId,
    pub(crate) user: Option<Arc<str>>,
    pub(crate) format: WireFormat,
    pub(crate) outbox: Arc<Outbox>,
    /// permessage-deflate for frames shared with others, if agreed
    /// ([`crate::deflate::for_shared_frames`]). Boxed: most connections
    /// have none, and every slot is 8 bytes smaller (56, not 64).
    pub(crate) deflate: Option<Box<Deflate>>,
}

pub(crate) struct ChannelState {
    pub(crate) table: Table,
    /// By `MemberId`; `None` slots are in `free`.
    pub(crate) members: Vec<Option<MemberSlot>>,
    free: Vec<u32>,
    /// Members found by the ids in their slots (4 bytes a bucket, where a
    /// map holding each id again took 20).
    by_id: SlotIndex<RandomState>,
    users: HashMap<Arc<str>, Vec<MemberId>, RandomState>,
    pub(crate) seen: SeenVec,
    /// Members speaking postcard (their payloads are encoded separately).
    pub(crate) postcard_members: usize,
    /// Members speaking JSON (Alepha or roomwire JSON).
    pub(crate) json_members: usize,
}

impl ChannelState {
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn slot(&self, member: MemberId) -> Option<&MemberSlot> {
        slot_of(&self.members, member)
    }

    /// The member whose id's text is `id` (none if `id` is no id's text).
    pub(crate) fn member_of(&self, id: &str) -> Option<MemberId> {
        self.by_id.find(&ConnectionId::parse(id)?, id_in(&self.members)).map(MemberId)
    }

    pub(crate) fn members_of_user(&self, user: &str) -> Vec<MemberId> {
        self.users.get(user).cloned().unwrap_or_default()
    }

    pub(crate) fn outbox_of(&self, id: &str) -> Option<Arc<Outbox>> {
        self.member_of(id).and_then(|m| self.slot(m)).map(|s| s.outbox.clone())
    }

    pub(crate) fn rooms_of(&self, member: MemberId) -> Vec<String> {
        self.table.rooms_of(member).map(|r| r.as_str().to_owned()).collect()
    }

    pub(crate) fn info_of_member(&self, path: &'static str, member: MemberId) -> Option<ConnectionInfo> {
        let slot = self.slot(member)?;
        Some(ConnectionInfo {
            id: slot.id.to_string(),
            user_id: slot.user.as_deref().map(str::to_owned),
            path,
            rooms: self.rooms_of(member),
            wire: slot.format,
        })
    }

    pub(crate) fn info_of(&self, path: &'static str, id: &str) -> Option<ConnectionInfo> {
        self.info_of_member(path, self.member_of(id)?)
    }

    pub(crate) fn for_each_info(&self, path: &'static str, mut f: impl FnMut(ConnectionInfo)) {
        for index in 0..self.members.len() {
            if let Some(info) = self.info_of_member(path, MemberId(index as u32)) {
                f(info);
            }
        }
    }

    /// This endpoint's connections a cluster query asks about.
    pub(crate) fn infos(&self, path: &'static str, about: About<'_>) -> Vec<ConnectionInfo> {
        let mut found = Vec::new();
        match about {
            About::Channel => self.for_each_info(path, |info| found.push(info)),
            About::Room(room) => {
                found.extend(self.table.members(room).iter().filter_map(|&m| self.info_of_member(path, m)));
            }
            About::User(user) => {
                found.extend(self.members_of_user(user).into_iter().filter_map(|m| self.info_of_member(path, m)));
            }
        }
        found
    }

    /// Every connection that has a user: `(user, connection id)`.
    pub(crate) fn for_each_user_connection(&self, mut f: impl FnMut(&str, &str)) {
        for (user, members) in &self.users {
            for member in members {
                if let Some(slot) = self.slot(*member) {
                    f(user, &slot.id.text());
                }
            }
        }
    }

    pub(crate) fn for_each_outbox(&self, mut f: impl FnMut(&Outbox)) {
        for slot in self.members.iter().flatten() {
            f(&slot.outbox);
        }
    }

    /// Whether `user` already has `max_per_user` connections here.
    pub(crate) fn at_user_cap(&self, user: Option<&Arc<str>>, max_per_user: Option<usize>) -> bool {
        match (user, max_per_user) {
            (Some(user), Some(max)) => self.users.get(user).map_or(0, Vec::len) >= max,
            _ => false,
        }
    }

    /// Add a connection.
    pub(crate) fn register(
        &mut self,
        id: ConnectionId,
        user: Option<Arc<str>>,
        format: WireFormat,
        outbox: Arc<Outbox>,
        deflate: Option<Deflate>,
    ) -> MemberId {
        let member = match self.free.pop() {
            Some(index) => MemberId(index),
            None => {
                self.members.push(None);
                MemberId((self.members.len() - 1) as u32)
            }
        };
        if let Some(user) = &user {
            let connections = self.users.entry(user.clone()).or_default();
            if connections.is_empty() {
                self.table.watcher().user(user, true);
            }
            connections.push(member);
        }
        if format == WireFormat::Postcard {
            self.postcard_members += 1;
        } else {
            self.json_members += 1;
        }
        if let Some(slot) = self.members.get_mut(member.0 as usize) {
            *slot = Some(MemberSlot { id, user, format, outbox, deflate: deflate.map(Box::new) });
        }
        // After its slot: the index hashes members by the ids in theirs.
        self.by_id.insert(member.0, &id, id_in(&self.members));
        member
    }

    /// Remove a connection from its rooms and from the registry; returns
    /// the rooms it was in.
    pub(crate) fn unregister(&mut self, member: MemberId) -> Vec<String> {
        let rooms = self.rooms_of(member);
        self.table.leave_all(member);
        let Some(slot) = self.members.get_mut(member.0 as usize).and_then(Option::take) else {
            return rooms;
        };
        self.by_id.remove(member.0, &slot.id);
        if let Some(user) = &slot.user
            && let Some(list) = self.users.get_mut(user)
        {
            list.retain(|&m| m != member);
            if list.is_empty() {
                self.users.remove(user);
                self.table.watcher().user(user, false);
            }
        }
        if slot.format == WireFormat::Postcard {
            self.postcard_members -= 1;
        } else {
            self.json_members -= 1;
        }
        if member.0 as usize + 1 == self.members.len() {
            self.members.pop();
            // Trailing free slots go too, so the table shrinks back.
            while matches!(self.members.last(), Some(None)) {
                self.members.pop();
            }
            let len = self.members.len();
            self.free.retain(|&i| (i as usize) < len);
        } else {
            self.free.push(member.0);
        }
        if self.by_id.is_empty() {
            self.by_id.shrink_to_fit(id_in(&self.members));
            self.table.table_mut().shrink_to_fit();
            self.members.shrink_to_fit();
            self.free.shrink_to_fit();
        }
        rooms
    }
}

/// The id in the slot of a member, as the id index reads it. Ids are
/// hashed with SipHash, randomly keyed: whoever names ids to look up cannot
/// aim at one bucket.
fn id_in<'a>(members: &'a [Option<MemberSlot>]) -> impl Fn(u32) -> Option<&'a ConnectionId> + 'a {
    move |member| slot_of(members, MemberId(member)).map(|slot| &slot.id)
}

fn slot_of(members: &[Option<MemberSlot>], member: MemberId) -> Option<&MemberSlot> {
    members.get(member.0 as usize).and_then(Option::as_ref)
}

/// The connections of an endpoint as the core's targeting sees them.
pub(crate) struct View<'s> {
    pub(crate) members: &'s [Option<MemberSlot>],
    pub(crate) users: &'s HashMap<Arc<str>, Vec<MemberId>, RandomState>,
}

impl ChannelState {
    /// Split into the parts [`roomwire_core::target::resolve`] needs.
    pub(crate) fn parts(&mut self) -> (&Table, View<'_>, &mut SeenVec) {
        (&self.table, View { members: &self.members, users: &self.users }, &mut self.seen)
    }
}

impl Directory for View<'_> {
    fn user_of(&self, member: MemberId) -> Option<&str> {
        self.members.get(member.0 as usize)?.as_ref()?.user.as_deref()
    }

    fn for_each_connection_of_user(&self, user: &str, mut f: impl FnMut(MemberId)) {
        for &member in self.users.get(user).map_or(&[][..], Vec::as_slice) {
            f(member);
        }
    }

    fn for_each_connection(&self, mut f: impl FnMut(MemberId)) {
        for (index, slot) in self.members.iter().enumerate() {
            if slot.is_some() {
                f(MemberId(index as u32));
            }
        }
    }

    fn contains(&self, member: MemberId) -> bool {
        matches!(self.members.get(member.0 as usize), Some(Some(_)))
    }
}

/// An endpoint's shared state.
pub(crate) struct ChannelCell {
    pub(crate) path: &'static str,
    /// This server as a node of its cluster.
    pub(crate) node: Arc<Node>,
    state: Mutex<ChannelState>,
}

impl ChannelCell {
    pub(crate) fn new(path: &'static str, limits: TableLimits, node: Arc<Node>) -> Self {
        let interest = RoomInterest { link: node.interest_link().map(|link| (link, path)) };
        Self {
            path,
            node,
            state: Mutex::new(ChannelState {
                table: WatchedTable::new(
                    GrowableRoomTable::with_limits_and_hasher(limits, RandomState::new()),
                    interest,
                ),
                members: Vec::new(),
                free: Vec::new(),
                by_id: SlotIndex::new(RandomState::new()),
                users: HashMap::default(),
                seen: SeenVec::default(),
                postcard_members: 0,
                json_members: 0,
            }),
        }
    }

    /// Lock the state. A panic while it was held (none of this module's
    /// code panics) leaves consistent data, so poisoning is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, ChannelState> {
        crate::lock(&self.state)
    }
}

/// The core reads and changes memberships through this, one step at a
/// time: the lock is held for the step, never while a client's message is
/// decoded or the application's room gate runs.
impl TableAccess for &ChannelCell {
    type Table = Table;

    fn with<R>(&mut self, step: impl FnOnce(&mut Table) -> R) -> R {
        step(&mut self.lock().table)
    }
}

/// A registered connection, as its handler context needs it: who it is,
/// its core session, where its endpoint's state lives, the server.
pub(crate) struct Registered {
    pub(crate) id: ConnectionId,
    pub(crate) user: Option<Arc<str>>,
    pub(crate) member: MemberId,
    pub(crate) session: ServerSession,
    pub(crate) cell: Arc<ChannelCell>,
    /// Its place in its stateful room (stateful room endpoints only;
    /// boxed, so that every other connection's task is 88 B smaller).
    pub(crate) seat: Option<Box<super::stateful::Seat>>,
    /// Still in the endpoint's registry: taken out on drop if the task
    /// ends early (panic, abort), else by [`Registered::unregister`].
    pub(crate) listed: bool,
    /// It holds a place under a cluster-wide per-user cap (its user and
    /// id), given back when it ends.
    pub(crate) leased: bool,
    /// Its place under the server's connection cap (and its count among
    /// the server's tasks), and its server. Last: given back after the
    /// rest is let go.
    pub(crate) open: Permit,
}

impl Registered {
    /// Its server.
    pub(crate) fn server(&self) -> &Server {
        self.open.server()
    }

    /// Take the connection out of its endpoint's registry and rooms (once);
    /// the rooms it was in.
    pub(crate) fn unregister(&mut self) -> Vec<String> {
        if !std::mem::take(&mut self.listed) {
            return Vec::new();
        }
        let lease = match (std::mem::take(&mut self.leased), &self.user) {
            (true, Some(user)) => Some((user.clone(), self.id)),
            _ => None,
        };
        super::conn::unregister_member(&self.cell, self.member, lease)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        // Its stateful room first, as on a normal end.
        drop(self.seat.take());
        self.unregister();
    }
}

#[cfg(test)]
mod tests {
    use roomwire_core::cluster::ClusterWire;
    use roomwire_core::room::TableLimits;

    use super::*;

    /// Members are found by their ids' texts, as they come and go (slots
    /// reused, the index grown and shrunk), and no other text finds one.
    #[test]
    fn members_are_found_by_their_ids() {
        let node = Node::new(None, ClusterWire::Roomwire);
        let cell = ChannelCell::new("/p", TableLimits::UNLIMITED, node.clone());
        let mut state = cell.lock();
        let mut live = Vec::new();
        for round in 0..3 {
            for _ in 0..200 {
                let id = node.connection_id();
                let outbox = Arc::new(Outbox::new(1 << 16));
                live.push((state.register(id, None, WireFormat::Alepha, outbox, None), id));
            }
            // Every other one leaves; its id finds no one after.
            let mut gone = Vec::new();
            let mut index = 0;
            live.retain(|&(member, id)| {
                index += 1;
                if (index + round) % 2 == 0 {
                    return true;
                }
                state.unregister(member);
                gone.push(id);
                false
            });
            for &(member, id) in &live {
                assert_eq!(state.member_of(&id.text()), Some(member), "{id}");
            }
            for id in gone {
                assert_eq!(state.member_of(&id.text()), None, "{id}");
            }
            assert_eq!(state.len(), live.len());
        }
        let upper = live[0].1.text().to_uppercase();
        assert_eq!(state.member_of(&upper), None);
        assert_eq!(state.member_of("ws-"), None);
        for (member, _) in live.drain(..) {
            state.unregister(member);
        }
        assert_eq!(state.len(), 0);
    }

    /// Every connection has a slot in its endpoint's member list, which
    /// grows by doubling: each byte here is a byte per connection
    /// (BENCHMARKS, tenth pass).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_member_slot_stays_small() {
        let size = std::mem::size_of::<Option<MemberSlot>>();
        assert!(size <= 56, "a member slot is {size} bytes");
    }
}
