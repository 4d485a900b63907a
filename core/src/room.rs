//! Rooms: which connections are in which named groups.
//!
//! This is the membership model of Alepha's WebSocket rooms, without any I/O:
//! connections ([`MemberId`], the adapter's connection slot) join and leave
//! rooms ([`RoomId`]), and the server looks up the members of a room to emit
//! to it. A room table keeps two indexes in step, room → members and
//! member → rooms, and everything here holds for every implementation:
//!
//! * **Join order.** A member's rooms are listed in the order it joined them.
//!   The first one is the member's *default room* in the Alepha wire
//!   protocol ([`RoomTable::first_room`]).
//! * **Idempotent joins.** Joining a room twice reports
//!   [`Joined::AlreadyMember`] and changes nothing (in particular, it does
//!   not move the room in the member's join order).
//! * **No empty rooms, no idle members.** A room disappears with its last
//!   member and a member with its last room, so [`RoomTable::room_count`] and
//!   [`RoomTable::member_count`] only count live ones.
//! * **Errors, not panics.** A full table refuses a join with a [`JoinError`]
//!   and changes nothing. Leaving a room one is not in, or disconnecting an
//!   unknown member, is a no-op.
//!
//! ## Two tables, one trait
//!
//! The channel layer is generic over [`RoomTable`]; pick the table that fits
//! the target:
//!
//! * [`FixedRoomTable`] holds at most `ROOMS` rooms of at most `PER_ROOM`
//!   members and at most `MEMBERS` members in at most `PER_MEMBER` rooms each,
//!   in fixed arrays: no allocation, `const` constructible (so it can live in
//!   a `static`), sized for a microcontroller. Lookups are linear scans,
//!   which is the fastest option at that size. With `R = ROOMS`,
//!   `M = MEMBERS`, `P = PER_ROOM` and `Q = PER_MEMBER`:
//!
//!   | operation | cost |
//!   |---|---|
//!   | [`join`](RoomTable::join), [`leave`](RoomTable::leave) | O(R + M + P + Q) |
//!   | [`leave_all`](RoomTable::leave_all) | O(M + Q·P) |
//!   | [`is_in_room`](RoomTable::is_in_room) | O(R + P) |
//!   | [`members`](RoomTable::members), [`room_size`](RoomTable::room_size) | O(R) |
//!   | [`rooms_of`](RoomTable::rooms_of) | O(M), then O(1) per room |
//!   | [`room_count`](RoomTable::room_count), [`member_count`](RoomTable::member_count) | O(R), O(M) |
//!
//! * `GrowableRoomTable` (feature `alloc`) grows with the server: hundreds of
//!   thousands of connections, rooms of tens of thousands of members. Rooms
//!   are interned to `u32` keys; each room keeps its members in a contiguous
//!   `Vec` (so emitting to a room walks a slice), and one hash map of
//!   memberships records each membership's position on both sides, so that
//!   leaving is a `swap_remove` on the room side and a tombstone on the
//!   member side (compacted once half of the member's list is tombstones).
//!   Optional [`TableLimits`] cap it like a fixed table. With `k` the number
//!   of rooms of the member concerned:
//!
//!   | operation | cost |
//!   |---|---|
//!   | [`join`](RoomTable::join) | O(1) amortized |
//!   | [`leave`](RoomTable::leave) | O(1) amortized |
//!   | [`leave_all`](RoomTable::leave_all) | O(k) |
//!   | [`is_in_room`](RoomTable::is_in_room), [`room_size`](RoomTable::room_size) | O(1) |
//!   | [`members`](RoomTable::members) | O(1), a slice |
//!   | [`rooms_of`](RoomTable::rooms_of) | O(1), then O(1) amortized per room |
//!   | [`room_count`](RoomTable::room_count), [`member_count`](RoomTable::member_count) | O(1) |
//!
//! A connection that tracks its own rooms, apart from any table, can use a
//! [`RoomSet`].
//!
//! ## Example
//!
//! ```
//! use roomwire_core::room::{FixedRoomTable, Joined, MemberId, RoomId, RoomTable};
//!
//! /// Generic code, as in the channel layer: works with any table.
//! fn announce<T: RoomTable>(table: &T, room: &str, mut send: impl FnMut(MemberId)) {
//!     table.for_each_member(room, &mut send);
//! }
//!
//! let mut table = FixedRoomTable::<8, 4, 4, 8>::new();
//! let lobby = RoomId::new("lobby")?;
//! assert_eq!(table.join(MemberId(1), &lobby), Ok(Joined::Added));
//! assert_eq!(table.join(MemberId(2), &lobby), Ok(Joined::Added));
//!
//! let mut sent = Vec::new();
//! announce(&table, "lobby", |m| sent.push(m));
//! assert_eq!(sent, [MemberId(1), MemberId(2)]);
//!
//! assert_eq!(table.leave_all(MemberId(1)), 1);
//! assert_eq!(table.members("lobby"), [MemberId(2)]);
//! # Ok::<(), roomwire_core::room::RoomIdError>(())
//! ```

use core::borrow::Borrow;
use core::cmp::Ordering;
use core::fmt;
use core::hash::{Hash, Hasher};
use core::ops::Deref;
use core::str::FromStr;

#[cfg(feature = "alloc")]
pub use growable::GrowableRoomTable;

/// The longest room id, in bytes.
pub const MAX_ROOM_ID_LEN: usize = 64;

// ---------------------------------------------------------------------------
// Room ids and member handles
// ---------------------------------------------------------------------------

/// The name of a room: a non-empty string of at most [`MAX_ROOM_ID_LEN`]
/// bytes, stored inline (no allocation).
///
/// [`RoomId::new`] only checks the length; a channel may apply a stricter
/// validation (allowed characters, prefixes) before building one.
/// Comparison, ordering and hashing are those of the string, so a room id
/// can be looked up by `&str` in maps keyed by `RoomId`.
///
/// ```
/// use roomwire_core::room::{RoomId, RoomIdError};
///
/// let room = RoomId::new("chat:general")?;
/// assert_eq!(room.as_str(), "chat:general");
/// assert_eq!(room, "chat:general");
/// assert_eq!(room.len(), 12); // through Deref<Target = str>
/// assert_eq!(format!("{room}"), "chat:general");
///
/// assert_eq!(RoomId::new(""), Err(RoomIdError::Empty));
/// assert_eq!(RoomId::new(&"x".repeat(65)), Err(RoomIdError::TooLong { len: 65 }));
/// # Ok::<(), RoomIdError>(())
/// ```
#[derive(Clone)]
pub struct RoomId(heapless::String<MAX_ROOM_ID_LEN, u8>);

impl RoomId {
    /// Checks and copies a room id: it must be non-empty and at most
    /// [`MAX_ROOM_ID_LEN`] bytes long.
    ///
    /// ```
    /// use roomwire_core::room::RoomId;
    /// assert!(RoomId::new("lobby").is_ok());
    /// assert!(RoomId::new("").is_err());
    /// ```
    pub fn new(id: &str) -> Result<Self, RoomIdError> {
        if id.is_empty() {
            return Err(RoomIdError::Empty);
        }
        let mut s = heapless::String::new();
        s.push_str(id).map_err(|_| RoomIdError::TooLong { len: id.len() })?;
        Ok(Self(s))
    }

    /// The room id as a string slice.
    ///
    /// ```
    /// use roomwire_core::room::RoomId;
    /// assert_eq!(RoomId::new("lobby").unwrap().as_str(), "lobby");
    /// ```
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl Deref for RoomId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for RoomId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for RoomId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for RoomId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RoomId {}

impl PartialEq<str> for RoomId {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for RoomId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialOrd for RoomId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RoomId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for RoomId {
    // Hashes exactly like `str`, as `Borrow<str>` requires.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RoomId").field(&self.as_str()).finish()
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl TryFrom<&str> for RoomId {
    type Error = RoomIdError;
    fn try_from(id: &str) -> Result<Self, RoomIdError> {
        Self::new(id)
    }
}

impl FromStr for RoomId {
    type Err = RoomIdError;
    fn from_str(id: &str) -> Result<Self, RoomIdError> {
        Self::new(id)
    }
}

/// Why a string is not a [`RoomId`].
///
/// ```
/// use roomwire_core::room::{RoomId, RoomIdError};
/// assert_eq!(RoomId::new("").unwrap_err().to_string(), "room id is empty");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoomIdError {
    /// The id is the empty string.
    Empty,
    /// The id is longer than [`MAX_ROOM_ID_LEN`] bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
}

impl fmt::Display for RoomIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("room id is empty"),
            Self::TooLong { len } => write!(f, "room id is {len} bytes long, more than {MAX_ROOM_ID_LEN}"),
        }
    }
}

impl core::error::Error for RoomIdError {}

/// A member of rooms: the adapter's handle for one connection (its slot).
///
/// ```
/// use roomwire_core::room::MemberId;
/// let a = MemberId(7);
/// assert_eq!(a.0, 7);
/// assert!(MemberId(1) < a);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(pub u32);

// ---------------------------------------------------------------------------
// RoomSet: one connection's own rooms
// ---------------------------------------------------------------------------

/// A [`RoomSet`] is full.
///
/// ```
/// use roomwire_core::room::{CapacityError, RoomId, RoomSet};
/// let mut set = RoomSet::<1>::new();
/// set.join(RoomId::new("a").unwrap()).unwrap();
/// assert_eq!(set.join(RoomId::new("b").unwrap()), Err(CapacityError { capacity: 1 }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CapacityError {
    /// How many rooms the set holds at most.
    pub capacity: usize,
}

impl fmt::Display for CapacityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "room set full ({} rooms)", self.capacity)
    }
}

impl core::error::Error for CapacityError {}

/// The rooms of one connection, at most `N`, in join order, without
/// duplicates and without allocation.
///
/// Membership tests are linear, which is the right trade-off for the few
/// rooms a connection is in. The first room is the connection's default
/// room.
///
/// ```
/// use roomwire_core::room::{RoomId, RoomSet};
///
/// let mut rooms = RoomSet::<4>::new();
/// assert_eq!(rooms.join(RoomId::new("lobby").unwrap()), Ok(true));
/// assert_eq!(rooms.join(RoomId::new("game:1").unwrap()), Ok(true));
/// assert_eq!(rooms.join(RoomId::new("lobby").unwrap()), Ok(false)); // already in, order unchanged
/// assert_eq!(rooms.first().map(|r| r.as_str()), Some("lobby"));
///
/// assert!(rooms.leave("lobby"));
/// assert!(!rooms.leave("lobby"));
/// assert_eq!(rooms.iter().map(|r| r.as_str()).collect::<Vec<_>>(), ["game:1"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoomSet<const N: usize> {
    rooms: heapless::Vec<RoomId, N>,
}

impl<const N: usize> RoomSet<N> {
    /// An empty set.
    ///
    /// ```
    /// use roomwire_core::room::RoomSet;
    /// static EMPTY: RoomSet<4> = RoomSet::new();
    /// assert!(EMPTY.is_empty());
    /// ```
    pub const fn new() -> Self {
        Self { rooms: heapless::Vec::new() }
    }

    /// Adds `room` at the end of the join order. `Ok(true)` if it was
    /// added, `Ok(false)` if it was already there (nothing changes), an
    /// error if the set is full.
    ///
    /// ```
    /// use roomwire_core::room::{RoomId, RoomSet};
    /// let mut rooms = RoomSet::<1>::new();
    /// assert_eq!(rooms.join(RoomId::new("a").unwrap()), Ok(true));
    /// assert_eq!(rooms.join(RoomId::new("a").unwrap()), Ok(false));
    /// assert!(rooms.join(RoomId::new("b").unwrap()).is_err());
    /// ```
    pub fn join(&mut self, room: RoomId) -> Result<bool, CapacityError> {
        if self.contains(&room) {
            return Ok(false);
        }
        self.rooms.push(room).map(|()| true).map_err(|_| CapacityError { capacity: N })
    }

    /// Removes `room`, keeping the order of the others. Returns whether it
    /// was there.
    ///
    /// ```
    /// use roomwire_core::room::{RoomId, RoomSet};
    /// let mut rooms = RoomSet::<2>::new();
    /// rooms.join(RoomId::new("a").unwrap()).unwrap();
    /// assert!(rooms.leave("a"));
    /// assert!(!rooms.leave("a"));
    /// ```
    pub fn leave(&mut self, room: &str) -> bool {
        let before = self.rooms.len();
        self.rooms.retain(|r| r.as_str() != room);
        self.rooms.len() != before
    }

    /// Whether `room` is in the set.
    ///
    /// ```
    /// use roomwire_core::room::{RoomId, RoomSet};
    /// let mut rooms = RoomSet::<2>::new();
    /// rooms.join(RoomId::new("a").unwrap()).unwrap();
    /// assert!(rooms.contains("a"));
    /// assert!(!rooms.contains("b"));
    /// ```
    pub fn contains(&self, room: &str) -> bool {
        self.rooms.iter().any(|r| r.as_str() == room)
    }

    /// The room joined first (of those still joined): the default room.
    ///
    /// ```
    /// use roomwire_core::room::{RoomId, RoomSet};
    /// let mut rooms = RoomSet::<2>::new();
    /// assert!(rooms.first().is_none());
    /// rooms.join(RoomId::new("a").unwrap()).unwrap();
    /// rooms.join(RoomId::new("b").unwrap()).unwrap();
    /// assert_eq!(rooms.first().unwrap(), "a");
    /// ```
    pub fn first(&self) -> Option<&RoomId> {
        self.rooms.first()
    }

    /// The rooms, in join order.
    ///
    /// ```
    /// use roomwire_core::room::{RoomId, RoomSet};
    /// let mut rooms = RoomSet::<2>::new();
    /// rooms.join(RoomId::new("b").unwrap()).unwrap();
    /// rooms.join(RoomId::new("a").unwrap()).unwrap();
    /// assert_eq!(rooms.iter().map(|r| r.as_str()).collect::<Vec<_>>(), ["b", "a"]);
    /// ```
    pub fn iter(&self) -> core::slice::Iter<'_, RoomId> {
        self.rooms.iter()
    }

    /// The rooms, in join order, as a slice.
    ///
    /// ```
    /// use roomwire_core::room::{RoomId, RoomSet};
    /// let mut rooms = RoomSet::<2>::new();
    /// rooms.join(RoomId::new("a").unwrap()).unwrap();
    /// assert_eq!(rooms.as_slice(), [RoomId::new("a").unwrap()]);
    /// ```
    pub fn as_slice(&self) -> &[RoomId] {
        &self.rooms
    }

    /// How many rooms are in the set.
    ///
    /// ```
    /// use roomwire_core::room::{RoomId, RoomSet};
    /// let mut rooms = RoomSet::<2>::new();
    /// rooms.join(RoomId::new("a").unwrap()).unwrap();
    /// assert_eq!(rooms.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// Whether the set is empty.
    ///
    /// ```
    /// use roomwire_core::room::RoomSet;
    /// assert!(RoomSet::<2>::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// Whether the set holds `N` rooms, so that joining a new one fails.
    ///
    /// ```
    /// use roomwire_core::room::{RoomId, RoomSet};
    /// let mut rooms = RoomSet::<1>::new();
    /// rooms.join(RoomId::new("a").unwrap()).unwrap();
    /// assert!(rooms.is_full());
    /// ```
    pub fn is_full(&self) -> bool {
        self.rooms.is_full()
    }

    /// The most rooms the set holds: `N`.
    ///
    /// ```
    /// use roomwire_core::room::RoomSet;
    /// assert_eq!(RoomSet::<3>::new().capacity(), 3);
    /// ```
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Leaves every room.
    ///
    /// ```
    /// use roomwire_core::room::{RoomId, RoomSet};
    /// let mut rooms = RoomSet::<2>::new();
    /// rooms.join(RoomId::new("a").unwrap()).unwrap();
    /// rooms.clear();
    /// assert!(rooms.is_empty());
    /// ```
    pub fn clear(&mut self) {
        self.rooms.clear();
    }
}

impl<'a, const N: usize> IntoIterator for &'a RoomSet<N> {
    type Item = &'a RoomId;
    type IntoIter = core::slice::Iter<'a, RoomId>;
    fn into_iter(self) -> Self::IntoIter {
        self.rooms.iter()
    }
}

// ---------------------------------------------------------------------------
// The RoomTable trait
// ---------------------------------------------------------------------------

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
/// See the [module documentation](self) for the guarantees every
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

// ---------------------------------------------------------------------------
// FixedRoomTable
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct FixedRoom<const PER_ROOM: usize> {
    id: RoomId,
    /// In join order.
    members: heapless::Vec<MemberId, PER_ROOM>,
}

#[derive(Debug, Clone)]
struct FixedMember<const PER_MEMBER: usize> {
    id: MemberId,
    /// Indexes into `FixedRoomTable::rooms`, in join order.
    rooms: heapless::Vec<usize, PER_MEMBER>,
}

/// Where a join puts a room or a member: an existing entry or a free slot.
#[derive(Clone, Copy)]
enum Slot {
    Existing(usize),
    Free(usize),
}

impl Slot {
    fn index(self) -> usize {
        match self {
            Self::Existing(i) | Self::Free(i) => i,
        }
    }
}

/// A room table in fixed arrays: no allocation, `const` constructible, for
/// microcontrollers and small servers.
///
/// It holds at most `ROOMS` rooms of at most `PER_ROOM` members each, and at
/// most `MEMBERS` distinct members in at most `PER_MEMBER` rooms each. The
/// slots of emptied rooms and departed members are reused. Lookups are
/// linear scans (see the [module documentation](self) for costs). Members of
/// a room are listed in join order.
///
/// Every slot is reserved up front. On a 64-bit target the table takes
/// `ROOMS × (88 + 4·PER_ROOM) + MEMBERS × (24 + 8·PER_MEMBER)` bytes (each
/// slot rounded up to 8): 1184 bytes for `FixedRoomTable<8, 4, 4, 8>`; less
/// on 32-bit targets.
///
/// ```
/// use roomwire_core::room::{FixedRoomTable, JoinError, MemberId, RoomId, RoomTable};
///
/// // 8 rooms, 4 connections, 4 connections per room, 8 rooms per connection.
/// type Rooms = FixedRoomTable<8, 4, 4, 8>;
/// static EMPTY: Rooms = Rooms::new(); // const constructible
///
/// let mut table = Rooms::new();
/// for m in 0..4 {
///     table.join(MemberId(m), &RoomId::new("lobby").unwrap()).unwrap();
/// }
/// assert_eq!(table.join(MemberId(4), &RoomId::new("other").unwrap()), Err(JoinError::TooManyMembers));
/// assert_eq!(table.room_size("lobby"), 4);
/// assert_eq!(EMPTY.room_count(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct FixedRoomTable<const ROOMS: usize, const MEMBERS: usize, const PER_ROOM: usize, const PER_MEMBER: usize> {
    rooms: [Option<FixedRoom<PER_ROOM>>; ROOMS],
    members: [Option<FixedMember<PER_MEMBER>>; MEMBERS],
}

impl<const ROOMS: usize, const MEMBERS: usize, const PER_ROOM: usize, const PER_MEMBER: usize>
    FixedRoomTable<ROOMS, MEMBERS, PER_ROOM, PER_MEMBER>
{
    /// The capacities of this table type.
    ///
    /// ```
    /// use roomwire_core::room::FixedRoomTable;
    /// assert_eq!(FixedRoomTable::<8, 4, 2, 3>::LIMITS.max_members, 4);
    /// ```
    pub const LIMITS: TableLimits = TableLimits {
        max_rooms: ROOMS,
        max_members: MEMBERS,
        max_members_per_room: PER_ROOM,
        max_rooms_per_member: PER_MEMBER,
    };

    /// An empty table.
    ///
    /// ```
    /// use roomwire_core::room::{FixedRoomTable, RoomTable};
    /// const TABLE: FixedRoomTable<8, 4, 4, 8> = FixedRoomTable::new();
    /// assert_eq!(TABLE.member_count(), 0);
    /// ```
    pub const fn new() -> Self {
        Self { rooms: [const { None }; ROOMS], members: [const { None }; MEMBERS] }
    }

    fn find_room(&self, room: &str) -> Option<usize> {
        self.rooms.iter().position(|slot| slot.as_ref().is_some_and(|r| r.id.as_str() == room))
    }

    fn find_member(&self, member: MemberId) -> Option<usize> {
        self.members.iter().position(|slot| slot.as_ref().is_some_and(|m| m.id == member))
    }

    fn room_at(&self, index: usize) -> Option<&FixedRoom<PER_ROOM>> {
        self.rooms.get(index).and_then(Option::as_ref)
    }

    fn member_at(&self, index: usize) -> Option<&FixedMember<PER_MEMBER>> {
        self.members.get(index).and_then(Option::as_ref)
    }

    /// Removes `member` from the room in slot `room_slot`, freeing the slot
    /// if the room is now empty. Returns whether the member was there.
    fn remove_from_room(&mut self, room_slot: usize, member: MemberId) -> bool {
        let Some(slot) = self.rooms.get_mut(room_slot) else { return false };
        let Some(room) = slot.as_mut() else { return false };
        let before = room.members.len();
        room.members.retain(|&m| m != member);
        let removed = room.members.len() != before;
        if room.members.is_empty() {
            *slot = None;
        }
        removed
    }

    /// Removes room slot `room_slot` from the member in slot `member_slot`,
    /// freeing the slot if the member is now in no room.
    fn remove_from_member(&mut self, member_slot: usize, room_slot: usize) {
        let Some(slot) = self.members.get_mut(member_slot) else { return };
        let Some(member) = slot.as_mut() else { return };
        member.rooms.retain(|&r| r != room_slot);
        if member.rooms.is_empty() {
            *slot = None;
        }
    }
}

impl<const ROOMS: usize, const MEMBERS: usize, const PER_ROOM: usize, const PER_MEMBER: usize> Default
    for FixedRoomTable<ROOMS, MEMBERS, PER_ROOM, PER_MEMBER>
{
    fn default() -> Self {
        Self::new()
    }
}

impl<const ROOMS: usize, const MEMBERS: usize, const PER_ROOM: usize, const PER_MEMBER: usize> RoomTable
    for FixedRoomTable<ROOMS, MEMBERS, PER_ROOM, PER_MEMBER>
{
    fn limits(&self) -> TableLimits {
        Self::LIMITS
    }

    fn join(&mut self, member: MemberId, room: &RoomId) -> Result<Joined, JoinError> {
        // Check everything first, in the order documented on `JoinError`;
        // change nothing unless the join succeeds.
        let room_slot = match self.find_room(room) {
            Some(i) => {
                let members = self.room_at(i).map_or(&[][..], |r| r.members.as_slice());
                if members.contains(&member) {
                    return Ok(Joined::AlreadyMember);
                }
                if members.len() >= PER_ROOM {
                    return Err(JoinError::RoomFull);
                }
                Slot::Existing(i)
            }
            None => {
                let free = self.rooms.iter().position(Option::is_none).ok_or(JoinError::TooManyRooms)?;
                if PER_ROOM == 0 {
                    return Err(JoinError::RoomFull);
                }
                Slot::Free(free)
            }
        };
        let member_slot = match self.find_member(member) {
            Some(i) => {
                if self.member_at(i).map_or(0, |m| m.rooms.len()) >= PER_MEMBER {
                    return Err(JoinError::MemberFull);
                }
                Slot::Existing(i)
            }
            None => {
                let free = self.members.iter().position(Option::is_none).ok_or(JoinError::TooManyMembers)?;
                if PER_MEMBER == 0 {
                    return Err(JoinError::MemberFull);
                }
                Slot::Free(free)
            }
        };

        // Commit. The pushes cannot fail after the checks above; should one
        // fail anyway, undo the half-made membership and report it.
        let (ri, mi) = (room_slot.index(), member_slot.index());
        if let (Slot::Free(_), Some(slot)) = (room_slot, self.rooms.get_mut(ri)) {
            *slot = Some(FixedRoom { id: room.clone(), members: heapless::Vec::new() });
        }
        if let (Slot::Free(_), Some(slot)) = (member_slot, self.members.get_mut(mi)) {
            *slot = Some(FixedMember { id: member, rooms: heapless::Vec::new() });
        }
        let room_ok = self.rooms.get_mut(ri).and_then(Option::as_mut).is_some_and(|r| r.members.push(member).is_ok());
        let member_ok = self.members.get_mut(mi).and_then(Option::as_mut).is_some_and(|m| m.rooms.push(ri).is_ok());
        if room_ok && member_ok {
            Ok(Joined::Added)
        } else {
            self.remove_from_room(ri, member);
            self.remove_from_member(mi, ri);
            Err(if room_ok { JoinError::MemberFull } else { JoinError::RoomFull })
        }
    }

    fn leave(&mut self, member: MemberId, room: &str) -> bool {
        let (Some(ri), Some(mi)) = (self.find_room(room), self.find_member(member)) else { return false };
        if !self.remove_from_room(ri, member) {
            return false;
        }
        self.remove_from_member(mi, ri);
        true
    }

    fn leave_all(&mut self, member: MemberId) -> usize {
        let Some(mi) = self.find_member(member) else { return 0 };
        let Some(entry) = self.members.get_mut(mi).and_then(Option::take) else { return 0 };
        let mut left = 0;
        for &ri in &entry.rooms {
            if self.remove_from_room(ri, member) {
                left += 1;
            }
        }
        left
    }

    fn is_in_room(&self, member: MemberId, room: &str) -> bool {
        self.members(room).contains(&member)
    }

    fn members(&self, room: &str) -> &[MemberId] {
        self.find_room(room).and_then(|i| self.room_at(i)).map_or(&[], |r| r.members.as_slice())
    }

    fn rooms_of(&self, member: MemberId) -> impl Iterator<Item = &RoomId> {
        let rooms = self.find_member(member).and_then(|i| self.member_at(i)).map_or(&[][..], |m| m.rooms.as_slice());
        rooms.iter().filter_map(|&ri| self.room_at(ri).map(|r| &r.id))
    }

    fn rooms(&self) -> impl Iterator<Item = (&RoomId, usize)> {
        self.rooms.iter().flatten().map(|r| (&r.id, r.members.len()))
    }

    fn room_count(&self) -> usize {
        self.rooms.iter().flatten().count()
    }

    fn member_count(&self) -> usize {
        self.members.iter().flatten().count()
    }

    fn room_count_of(&self, member: MemberId) -> usize {
        self.find_member(member).and_then(|i| self.member_at(i)).map_or(0, |m| m.rooms.len())
    }
}

// ---------------------------------------------------------------------------
// GrowableRoomTable
// ---------------------------------------------------------------------------

#[cfg(feature = "alloc")]
mod growable {
    use alloc::vec::Vec;
    use core::hash::BuildHasher;

    use hashbrown::{DefaultHashBuilder, HashMap};

    use super::{JoinError, Joined, MemberId, RoomId, RoomTable, TableLimits};

    /// A room; its key is its index in `GrowableRoomTable::slab`.
    #[derive(Debug, Clone)]
    struct Room {
        id: RoomId,
        /// In no particular order (leaving is a `swap_remove`).
        members: Vec<MemberId>,
    }

    /// A member's rooms, by key, in join order. `None` marks a room left
    /// since the last compaction.
    #[derive(Debug, Clone, Default)]
    struct Member {
        rooms: Vec<Option<u32>>,
        /// The `Some` entries of `rooms`.
        live: usize,
    }

    /// Where one membership sits on each side.
    #[derive(Debug, Clone, Copy)]
    struct Position {
        /// Index in `Room::members`.
        in_room: u32,
        /// Index in `Member::rooms`.
        in_member: u32,
    }

    /// Rooms whose member list has at least this capacity give memory back
    /// when they drop below a quarter of it.
    const SHRINK_ABOVE: usize = 64;

    fn index(key: u32) -> usize {
        usize::try_from(key).unwrap_or(usize::MAX)
    }

    /// A growable room table (feature `alloc`), for servers with many
    /// connections and large rooms.
    ///
    /// Every membership operation is O(1) amortized, except
    /// [`leave_all`](RoomTable::leave_all), which is linear in the rooms the
    /// member leaves (see the [module documentation](super) for the layout).
    /// The members of a room are a contiguous slice in no particular order.
    /// Optional [`TableLimits`] bound it; by default it has none. Each
    /// membership costs about 30 bytes (a position entry, a slot in the
    /// room's slice and one in the member's list), each room about 170
    /// (its id is stored twice: in the name index and in the room).
    ///
    /// `S` hashes room ids and member handles. The default, foldhash, is
    /// fast and randomly seeded but only minimally resistant to collision
    /// attacks; where clients choose room names and `std` is available,
    /// [`with_limits_and_hasher`](Self::with_limits_and_hasher) can take
    /// `std::hash::RandomState` (SipHash) instead.
    ///
    /// ```
    /// use roomwire_core::room::{GrowableRoomTable, Joined, MemberId, RoomId, RoomTable};
    ///
    /// let mut table = GrowableRoomTable::new();
    /// let lobby = RoomId::new("lobby").unwrap();
    /// for m in 0..10_000 {
    ///     assert_eq!(table.join(MemberId(m), &lobby), Ok(Joined::Added));
    /// }
    /// assert_eq!(table.room_size("lobby"), 10_000);
    /// assert_eq!(table.members("lobby").len(), 10_000); // one slice
    /// assert!(table.leave(MemberId(42), "lobby"));
    /// assert_eq!(table.member_count(), 9_999);
    /// ```
    #[derive(Debug, Clone)]
    pub struct GrowableRoomTable<S = DefaultHashBuilder> {
        /// Room id → key.
        by_name: HashMap<RoomId, u32, S>,
        /// Rooms by key; `None` slots are listed in `free`.
        slab: Vec<Option<Room>>,
        free: Vec<u32>,
        members: HashMap<MemberId, Member, S>,
        /// Every membership, by (room key, member).
        positions: HashMap<(u32, MemberId), Position, S>,
        limits: TableLimits,
    }

    impl GrowableRoomTable {
        /// An empty table without limits.
        ///
        /// ```
        /// use roomwire_core::room::{GrowableRoomTable, RoomTable, TableLimits};
        /// let table = GrowableRoomTable::new();
        /// assert_eq!(table.limits(), TableLimits::UNLIMITED);
        /// ```
        pub fn new() -> Self {
            Self::default()
        }

        /// An empty table with `limits`.
        ///
        /// ```
        /// use roomwire_core::room::{GrowableRoomTable, JoinError, MemberId, RoomId, RoomTable, TableLimits};
        /// let mut table =
        ///     GrowableRoomTable::with_limits(TableLimits { max_rooms_per_member: 1, ..TableLimits::UNLIMITED });
        /// table.join(MemberId(1), &RoomId::new("a").unwrap()).unwrap();
        /// assert_eq!(table.join(MemberId(1), &RoomId::new("b").unwrap()), Err(JoinError::MemberFull));
        /// ```
        pub fn with_limits(limits: TableLimits) -> Self {
            Self { limits, ..Self::default() }
        }
    }

    impl<S: Default> Default for GrowableRoomTable<S> {
        fn default() -> Self {
            Self {
                by_name: HashMap::default(),
                slab: Vec::new(),
                free: Vec::new(),
                members: HashMap::default(),
                positions: HashMap::default(),
                limits: TableLimits::UNLIMITED,
            }
        }
    }

    impl<S: BuildHasher + Clone> GrowableRoomTable<S> {
        /// An empty table with `limits`, hashing with `hasher`.
        ///
        /// ```
        /// use roomwire_core::room::{GrowableRoomTable, MemberId, RoomId, RoomTable, TableLimits};
        /// let mut table = GrowableRoomTable::with_limits_and_hasher(TableLimits::UNLIMITED, std::hash::RandomState::new());
        /// table.join(MemberId(1), &RoomId::new("a").unwrap()).unwrap();
        /// assert!(table.is_in_room(MemberId(1), "a"));
        /// ```
        pub fn with_limits_and_hasher(limits: TableLimits, hasher: S) -> Self {
            Self {
                by_name: HashMap::with_hasher(hasher.clone()),
                slab: Vec::new(),
                free: Vec::new(),
                members: HashMap::with_hasher(hasher.clone()),
                positions: HashMap::with_hasher(hasher),
                limits,
            }
        }
    }

    impl<S: BuildHasher> GrowableRoomTable<S> {
        /// Gives back memory kept from busier times: hash tables, room
        /// slots and member lists shrink to what is in use.
        ///
        /// ```
        /// use roomwire_core::room::{GrowableRoomTable, MemberId, RoomId, RoomTable};
        /// let mut table = GrowableRoomTable::new();
        /// for m in 0..1000 {
        ///     table.join(MemberId(m), &RoomId::new("a").unwrap()).unwrap();
        /// }
        /// for m in 0..1000 {
        ///     table.leave_all(MemberId(m));
        /// }
        /// table.shrink_to_fit();
        /// assert_eq!(table.room_count(), 0);
        /// ```
        pub fn shrink_to_fit(&mut self) {
            while matches!(self.slab.last(), Some(None)) {
                self.slab.pop();
            }
            let len = self.slab.len();
            self.free.retain(|&key| index(key) < len);
            self.slab.shrink_to_fit();
            self.free.shrink_to_fit();
            for room in self.slab.iter_mut().flatten() {
                room.members.shrink_to_fit();
            }
            for (&member, entry) in &mut self.members {
                compact(member, entry, &mut self.positions);
                entry.rooms.shrink_to_fit();
            }
            self.by_name.shrink_to_fit();
            self.members.shrink_to_fit();
            self.positions.shrink_to_fit();
        }

        fn room(&self, key: u32) -> Option<&Room> {
            self.slab.get(index(key)).and_then(Option::as_ref)
        }

        /// Removes the membership at `in_room` from room `key`, fixing the
        /// position of the member moved into its place, and deletes the room
        /// if it is now empty.
        fn unlink_room_side(&mut self, key: u32, in_room: u32) {
            let Some(slot) = self.slab.get_mut(index(key)) else { return };
            let Some(room) = slot.as_mut() else { return };
            let at = index(in_room);
            if at < room.members.len() {
                room.members.swap_remove(at);
                if let Some(&moved) = room.members.get(at)
                    && let Some(position) = self.positions.get_mut(&(key, moved))
                {
                    position.in_room = in_room;
                }
            }
            if room.members.is_empty() {
                if let Some(room) = slot.take() {
                    self.by_name.remove(room.id.as_str());
                }
                self.free.push(key);
            } else {
                let capacity = room.members.capacity();
                if capacity >= SHRINK_ABOVE && room.members.len() < capacity / 4 {
                    room.members.shrink_to(capacity / 2);
                }
            }
        }

        /// Tombstones the room at `in_member` in `member`'s list, forgetting
        /// the member if it is now in no room and compacting its list once it
        /// is mostly tombstones.
        fn unlink_member_side(&mut self, member: MemberId, in_member: u32) {
            let Some(entry) = self.members.get_mut(&member) else { return };
            if entry.rooms.get_mut(index(in_member)).and_then(Option::take).is_some() {
                entry.live = entry.live.saturating_sub(1);
            }
            if entry.live == 0 {
                self.members.remove(&member);
                return;
            }
            while matches!(entry.rooms.last(), Some(None)) {
                entry.rooms.pop();
            }
            if entry.rooms.len().saturating_sub(entry.live) > entry.live {
                compact(member, entry, &mut self.positions);
            }
        }
    }

    /// Drops the tombstones of `member`'s list and records the new positions.
    /// Runs after at least as many leaves as there are rooms left, so it is
    /// O(1) amortized per leave.
    fn compact<S: BuildHasher>(
        member: MemberId,
        entry: &mut Member,
        positions: &mut HashMap<(u32, MemberId), Position, S>,
    ) {
        entry.rooms.retain(Option::is_some);
        entry.live = entry.rooms.len();
        for (i, key) in entry.rooms.iter().enumerate() {
            if let (Some(key), Ok(i)) = (key, u32::try_from(i))
                && let Some(position) = positions.get_mut(&(*key, member))
            {
                position.in_member = i;
            }
        }
    }

    impl<S: BuildHasher> RoomTable for GrowableRoomTable<S> {
        fn limits(&self) -> TableLimits {
            self.limits
        }

        fn join(&mut self, member: MemberId, room: &RoomId) -> Result<Joined, JoinError> {
            // Check everything first, in the order documented on
            // `JoinError`; change nothing unless the join succeeds.
            let existing = self.by_name.get(room.as_str()).copied();
            let (key, room_len) = match existing {
                Some(key) => {
                    if self.positions.contains_key(&(key, member)) {
                        return Ok(Joined::AlreadyMember);
                    }
                    (key, self.room(key).map_or(0, |r| r.members.len()))
                }
                None => {
                    if self.by_name.len() >= self.limits.max_rooms {
                        return Err(JoinError::TooManyRooms);
                    }
                    let key = match self.free.last() {
                        Some(&key) => key,
                        None => u32::try_from(self.slab.len()).map_err(|_| JoinError::TooManyRooms)?,
                    };
                    (key, 0)
                }
            };
            if room_len >= self.limits.max_members_per_room {
                return Err(JoinError::RoomFull);
            }
            let in_room = u32::try_from(room_len).map_err(|_| JoinError::RoomFull)?;
            let (joined, listed) = match self.members.get(&member) {
                Some(entry) => (entry.live, entry.rooms.len()),
                None if self.members.len() >= self.limits.max_members => return Err(JoinError::TooManyMembers),
                None => (0, 0),
            };
            if joined >= self.limits.max_rooms_per_member {
                return Err(JoinError::MemberFull);
            }
            let in_member = u32::try_from(listed).map_err(|_| JoinError::MemberFull)?;

            // Commit.
            if existing.is_none() {
                let new_room = Some(Room { id: room.clone(), members: Vec::new() });
                if self.free.last() == Some(&key) {
                    self.free.pop();
                    if let Some(slot) = self.slab.get_mut(index(key)) {
                        *slot = new_room;
                    }
                } else {
                    self.slab.push(new_room);
                }
                self.by_name.insert(room.clone(), key);
            }
            if let Some(r) = self.slab.get_mut(index(key)).and_then(Option::as_mut) {
                r.members.push(member);
            }
            let entry = self.members.entry(member).or_default();
            entry.rooms.push(Some(key));
            entry.live += 1;
            self.positions.insert((key, member), Position { in_room, in_member });
            Ok(Joined::Added)
        }

        fn leave(&mut self, member: MemberId, room: &str) -> bool {
            let Some(&key) = self.by_name.get(room) else { return false };
            let Some(position) = self.positions.remove(&(key, member)) else { return false };
            self.unlink_room_side(key, position.in_room);
            self.unlink_member_side(member, position.in_member);
            true
        }

        fn leave_all(&mut self, member: MemberId) -> usize {
            let Some(entry) = self.members.remove(&member) else { return 0 };
            let mut left = 0;
            for key in entry.rooms.into_iter().flatten() {
                if let Some(position) = self.positions.remove(&(key, member)) {
                    self.unlink_room_side(key, position.in_room);
                    left += 1;
                }
            }
            left
        }

        fn is_in_room(&self, member: MemberId, room: &str) -> bool {
            self.by_name.get(room).is_some_and(|&key| self.positions.contains_key(&(key, member)))
        }

        fn members(&self, room: &str) -> &[MemberId] {
            self.by_name.get(room).and_then(|&key| self.room(key)).map_or(&[], |r| r.members.as_slice())
        }

        fn rooms_of(&self, member: MemberId) -> impl Iterator<Item = &RoomId> {
            self.members
                .get(&member)
                .into_iter()
                .flat_map(|entry| entry.rooms.iter().flatten())
                .filter_map(|&key| self.room(key).map(|r| &r.id))
        }

        fn rooms(&self) -> impl Iterator<Item = (&RoomId, usize)> {
            self.slab.iter().flatten().map(|r| (&r.id, r.members.len()))
        }

        fn room_count(&self) -> usize {
            self.by_name.len()
        }

        fn member_count(&self) -> usize {
            self.members.len()
        }

        fn room_count_of(&self, member: MemberId) -> usize {
            self.members.get(&member).map_or(0, |entry| entry.live)
        }
    }
}
