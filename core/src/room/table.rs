//! What every room table does: the [`RoomTable`] trait, its outcomes and
//! its limits.

use core::fmt;

use super::{MemberId, RoomId};

/// The outcome of a successful [`RoomTable::join`].
///
/// ```
/// use roomwire_core::room::{FixedRoomTable, Joined, MemberId, RoomId, RoomTable};
/// let mut table = FixedRoomTable::<2, 2, 2, 2>::new();
/// let room = RoomId::new("a").unwrap();
/// assert_eq!(table.join(MemberId(1), &room), Ok(Joined::Added));
/// assert_eq!(table.join(MemberId(1), &room), Ok(Joined::AlreadyMember));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Joined {
    /// The member was not in the room and now is.
    Added,
    /// The member was already in the room; nothing changed.
    AlreadyMember,
}

/// Why a [`RoomTable::join`] was refused. Nothing changed.
///
/// When several limits are hit at once, the first in declaration order is
/// reported: table-wide room limit, room size, table-wide member limit,
/// member's room count. Joining a room the member is already in always
/// succeeds with [`Joined::AlreadyMember`], however full the table.
///
/// ```
/// use roomwire_core::room::{FixedRoomTable, JoinError, MemberId, RoomId, RoomTable};
/// let mut table = FixedRoomTable::<1, 2, 1, 2>::new();
/// let a = RoomId::new("a").unwrap();
/// let b = RoomId::new("b").unwrap();
/// table.join(MemberId(1), &a).unwrap();
/// assert_eq!(table.join(MemberId(1), &b), Err(JoinError::TooManyRooms));
/// assert_eq!(table.join(MemberId(2), &a), Err(JoinError::RoomFull));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinError {
    /// The room does not exist yet and the table holds as many rooms as it
    /// can.
    TooManyRooms,
    /// The room holds as many members as a room can.
    RoomFull,
    /// The member is in no room yet and the table holds as many members as
    /// it can.
    TooManyMembers,
    /// The member is in as many rooms as a member can be.
    MemberFull,
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooManyRooms => "room table full: no room for a new room",
            Self::RoomFull => "room full",
            Self::TooManyMembers => "room table full: no room for a new member",
            Self::MemberFull => "member is in too many rooms",
        })
    }
}

impl core::error::Error for JoinError {}

/// The capacities of a room table; `usize::MAX` means no limit.
///
/// ```
/// use roomwire_core::room::{FixedRoomTable, RoomTable, TableLimits};
/// let table = FixedRoomTable::<8, 4, 4, 2>::new();
/// assert_eq!(
///     table.limits(),
///     TableLimits { max_rooms: 8, max_members: 4, max_members_per_room: 4, max_rooms_per_member: 2 }
/// );
/// assert_eq!(TableLimits::default(), TableLimits::UNLIMITED);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TableLimits {
    /// Rooms in the table.
    pub max_rooms: usize,
    /// Distinct members (in at least one room) in the table.
    pub max_members: usize,
    /// Members in one room.
    pub max_members_per_room: usize,
    /// Rooms of one member.
    pub max_rooms_per_member: usize,
}

impl TableLimits {
    /// No limit at all.
    pub const UNLIMITED: Self = Self {
        max_rooms: usize::MAX,
        max_members: usize::MAX,
        max_members_per_room: usize::MAX,
        max_rooms_per_member: usize::MAX,
    };
}

impl Default for TableLimits {
    fn default() -> Self {
        Self::UNLIMITED
    }
}

/// Room memberships, indexed both ways: room → members and member → rooms.
///
/// See the [module documentation](crate::room) for the guarantees every
/// implementation gives (join order, idempotent joins, no empty rooms,
/// errors instead of panics) and for the costs of each implementation.
///
/// Room ids are passed as `&str` wherever nothing is stored, so a room can
/// be looked up without building a [`RoomId`].
///
/// ```
/// use roomwire_core::room::{FixedRoomTable, MemberId, RoomId, RoomTable};
///
/// fn default_room<T: RoomTable>(table: &T, member: MemberId) -> Option<&str> {
///     table.first_room(member).map(|r| r.as_str())
/// }
///
/// let mut table = FixedRoomTable::<4, 4, 4, 4>::new();
/// table.join(MemberId(1), &RoomId::new("b").unwrap()).unwrap();
/// table.join(MemberId(1), &RoomId::new("a").unwrap()).unwrap();
/// assert_eq!(default_room(&table, MemberId(1)), Some("b"));
/// ```
pub trait RoomTable {
    /// The capacities of this table.
    ///
    /// ```
    /// use roomwire_core::room::{FixedRoomTable, RoomTable};
    /// assert_eq!(FixedRoomTable::<8, 4, 2, 3>::new().limits().max_rooms_per_member, 3);
    /// ```
    fn limits(&self) -> TableLimits;

    /// Puts `member` in `room`, creating the room if needed and appending it
    /// to the member's join order. Joining a room twice is a no-op reported
    /// as [`Joined::AlreadyMember`]. On error nothing changed.
    ///
    /// ```
    /// use roomwire_core::room::{FixedRoomTable, JoinError, Joined, MemberId, RoomId, RoomTable};
    /// let mut table = FixedRoomTable::<4, 4, 1, 4>::new();
    /// let room = RoomId::new("a").unwrap();
    /// assert_eq!(table.join(MemberId(1), &room), Ok(Joined::Added));
    /// assert_eq!(table.join(MemberId(1), &room), Ok(Joined::AlreadyMember));
    /// assert_eq!(table.join(MemberId(2), &room), Err(JoinError::RoomFull));
    /// ```
    fn join(&mut self, member: MemberId, room: &RoomId) -> Result<Joined, JoinError>;

    /// Takes `member` out of `room`, keeping the join order of its other
    /// rooms. Deletes the room if it is now empty, and forgets the member if
    /// it is now in no room. Returns whether the member was in the room.
    ///
    /// ```
    /// use roomwire_core::room::{FixedRoomTable, MemberId, RoomId, RoomTable};
    /// let mut table = FixedRoomTable::<4, 4, 4, 4>::new();
    /// table.join(MemberId(1), &RoomId::new("a").unwrap()).unwrap();
    /// assert!(table.leave(MemberId(1), "a"));
    /// assert!(!table.leave(MemberId(1), "a"));
    /// assert_eq!(table.room_count(), 0);
    /// ```
    fn leave(&mut self, member: MemberId, room: &str) -> bool;

    /// Takes `member` out of every room (on disconnect), deleting the rooms
    /// that become empty. Returns how many rooms it left.
    ///
    /// ```
    /// use roomwire_core::room::{FixedRoomTable, MemberId, RoomId, RoomTable};
    /// let mut table = FixedRoomTable::<4, 4, 4, 4>::new();
    /// table.join(MemberId(1), &RoomId::new("a").unwrap()).unwrap();
    /// table.join(MemberId(1), &RoomId::new("b").unwrap()).unwrap();
    /// assert_eq!(table.leave_all(MemberId(1)), 2);
    /// assert_eq!(table.leave_all(MemberId(1)), 0);
    /// assert_eq!(table.room_count(), 0);
    /// ```
    fn leave_all(&mut self, member: MemberId) -> usize;

    /// Whether `member` is in `room`. False for an unknown member or room.
    ///
    /// ```
    /// use roomwire_core::room::{FixedRoomTable, MemberId, RoomId, RoomTable};
    /// let mut table = FixedRoomTable::<4, 4, 4, 4>::new();
    /// table.join(MemberId(1), &RoomId::new("a").unwrap()).unwrap();
    /// assert!(table.is_in_room(MemberId(1), "a"));
    /// assert!(!table.is_in_room(MemberId(2), "a"));
    /// assert!(!table.is_in_room(MemberId(1), "b"));
    /// ```
    fn is_in_room(&self, member: MemberId, room: &str) -> bool;

    /// The members of `room`, in no particular order (empty for an unknown
    /// room). Contiguous in every implementation, so emitting to a room is a
    /// walk over a slice.
    ///
    /// ```
    /// use roomwire_core::room::{FixedRoomTable, MemberId, RoomId, RoomTable};
    /// let mut table = FixedRoomTable::<4, 4, 4, 4>::new();
    /// table.join(MemberId(1), &RoomId::new("a").unwrap()).unwrap();
    /// assert_eq!(table.members("a"), [MemberId(1)]);
    /// assert!(table.members("b").is_empty());
    /// ```
    fn members(&self, room: &str) -> &[MemberId];

    /// The rooms of `member`, in join order (none for an unknown member).
    ///
    /// ```
    /// use roomwire_core::room::{FixedRoomTable, MemberId, RoomId, RoomTable};
    /// let mut table = FixedRoomTable::<4, 4, 4, 4>::new();
    /// table.join(MemberId(1), &RoomId::new("b").unwrap()).unwrap();
    /// table.join(MemberId(1), &RoomId::new("a").unwrap()).unwrap();
    /// let rooms: Vec<&str> = table.rooms_of(MemberId(1)).map(|r| r.as_str()).collect();
    /// assert_eq!(rooms, ["b", "a"]);
    /// ```
    fn rooms_of(&self, member: MemberId) -> impl Iterator<Item = &RoomId>;

    /// Every room with its number of members, in no particular order.
    ///
    /// ```
    /// use roomwire_core::room::{FixedRoomTable, MemberId, RoomId, RoomTable};
    /// let mut table = FixedRoomTable::<4, 4, 4, 4>::new();
    /// table.join(MemberId(1), &RoomId::new("a").unwrap()).unwrap();
    /// table.join(MemberId(2), &RoomId::new("a").unwrap()).unwrap();
    /// let rooms: Vec<(&str, usize)> = table.rooms().map(|(r, n)| (r.as_str(), n)).collect();
    /// assert_eq!(rooms, [("a", 2)]);
    /// ```
    fn rooms(&self) -> impl Iterator<Item = (&RoomId, usize)>;

    /// How many rooms exist (every room has at least one member).
    ///
    /// ```
    /// use roomwire_core::room::{FixedRoomTable, MemberId, RoomId, RoomTable};
    /// let mut table = FixedRoomTable::<4, 4, 4, 4>::new();
    /// assert_eq!(table.room_count(), 0);
    /// table.join(MemberId(1), &RoomId::new("a").unwrap()).unwrap();
    /// assert_eq!(table.room_count(), 1);
    /// ```
    fn room_count(&self) -> usize;

    /// How many distinct members are in at least one room.
    ///
    /// ```
    /// use roomwire_core::room::{FixedRoomTable, MemberId, RoomId, RoomTable};
    /// let mut table = FixedRoomTable::<4, 4, 4, 4>::new();
    /// table.join(MemberId(1), &RoomId::new("a").unwrap()).unwrap();
    /// table.join(MemberId(1), &RoomId::new("b").unwrap()).unwrap();
    /// assert_eq!(table.member_count(), 1);
    /// ```
    fn member_count(&self) -> usize;

    /// How many members `room` has (0 for an unknown room).
    ///
    /// ```
    /// use roomwire_core::room::{FixedRoomTable, MemberId, RoomId, RoomTable};
    /// let mut table = FixedRoomTable::<4, 4, 4, 4>::new();
    /// table.join(MemberId(1), &RoomId::new("a").unwrap()).unwrap();
    /// assert_eq!(table.room_size("a"), 1);
    /// assert_eq!(table.room_size("b"), 0);
    /// ```
    fn room_size(&self, room: &str) -> usize {
        self.members(room).len()
    }

    /// How many rooms `member` is in (0 for an unknown member).
    ///
    /// ```
    /// use roomwire_core::room::{FixedRoomTable, MemberId, RoomId, RoomTable};
    /// let mut table = FixedRoomTable::<4, 4, 4, 4>::new();
    /// table.join(MemberId(1), &RoomId::new("a").unwrap()).unwrap();
    /// assert_eq!(table.room_count_of(MemberId(1)), 1);
    /// assert_eq!(table.room_count_of(MemberId(2)), 0);
    /// ```
    fn room_count_of(&self, member: MemberId) -> usize {
        self.rooms_of(member).count()
    }

    /// The first room `member` joined among those it is still in: its
    /// default room in the Alepha wire protocol.
    ///
    /// ```
    /// use roomwire_core::room::{FixedRoomTable, MemberId, RoomId, RoomTable};
    /// let mut table = FixedRoomTable::<4, 4, 4, 4>::new();
    /// table.join(MemberId(1), &RoomId::new("a").unwrap()).unwrap();
    /// table.join(MemberId(1), &RoomId::new("b").unwrap()).unwrap();
    /// table.leave(MemberId(1), "a");
    /// assert_eq!(table.first_room(MemberId(1)).unwrap(), "b");
    /// ```
    fn first_room(&self, member: MemberId) -> Option<&RoomId> {
        self.rooms_of(member).next()
    }

    /// Calls `f` with each member of `room`.
    ///
    /// ```
    /// use roomwire_core::room::{FixedRoomTable, MemberId, RoomId, RoomTable};
    /// let mut table = FixedRoomTable::<4, 4, 4, 4>::new();
    /// table.join(MemberId(1), &RoomId::new("a").unwrap()).unwrap();
    /// let mut seen = Vec::new();
    /// table.for_each_member("a", |m| seen.push(m));
    /// assert_eq!(seen, [MemberId(1)]);
    /// ```
    fn for_each_member(&self, room: &str, mut f: impl FnMut(MemberId)) {
        for &member in self.members(room) {
            f(member);
        }
    }

    /// Calls `f` with each room and its number of members, for statistics.
    ///
    /// ```
    /// use roomwire_core::room::{FixedRoomTable, MemberId, RoomId, RoomTable};
    /// let mut table = FixedRoomTable::<4, 4, 4, 4>::new();
    /// table.join(MemberId(1), &RoomId::new("a").unwrap()).unwrap();
    /// let mut total = 0;
    /// table.for_each_room(|_, n| total += n);
    /// assert_eq!(total, 1);
    /// ```
    fn for_each_room(&self, mut f: impl FnMut(&RoomId, usize)) {
        for (room, size) in self.rooms() {
            f(room, size);
        }
    }
}

/// A room table lent one membership step at a time.
///
/// The server side of a channel ([`crate::dispatch`],
/// [`crate::session::ServerSession`]) reads and changes memberships only
/// inside [`with`](Self::with), and decodes messages and asks the
/// application's [`RoomGate`](crate::dispatch::RoomGate) outside it. A
/// single-threaded server passes `&mut table`; a server whose table is
/// shared behind a lock takes the lock in `with`, so the lock is held for
/// the membership step alone, never for decoding a client's message.
///
/// ```
/// use roomwire_core::room::{FixedRoomTable, MemberId, RoomId, RoomTable, TableAccess};
/// use std::sync::Mutex;
///
/// struct Shared<'a>(&'a Mutex<FixedRoomTable<4, 4, 4, 4>>);
/// impl TableAccess for Shared<'_> {
///     type Table = FixedRoomTable<4, 4, 4, 4>;
///     fn with<R>(&mut self, step: impl FnOnce(&mut Self::Table) -> R) -> R {
///         step(&mut self.0.lock().unwrap())
///     }
/// }
///
/// let table = Mutex::new(FixedRoomTable::new());
/// let lobby = RoomId::new("lobby").unwrap();
/// Shared(&table).with(|t| t.join(MemberId(1), &lobby)).unwrap();
/// let mut direct = FixedRoomTable::<4, 4, 4, 4>::new();
/// (&mut direct).with(|t| t.join(MemberId(1), &lobby)).unwrap();
/// assert!(table.lock().unwrap().is_in_room(MemberId(1), "lobby") && direct.is_in_room(MemberId(1), "lobby"));
/// ```
pub trait TableAccess {
    /// The table lent.
    type Table: RoomTable;

    /// Run one membership step on the table.
    fn with<R>(&mut self, step: impl FnOnce(&mut Self::Table) -> R) -> R;
}

impl<T: RoomTable> TableAccess for &mut T {
    type Table = T;

    fn with<R>(&mut self, step: impl FnOnce(&mut T) -> R) -> R {
        step(self)
    }
}
