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

mod fixed;
#[cfg(feature = "alloc")]
mod growable;
mod id;
mod set;
#[cfg(feature = "alloc")]
mod slot_index;
mod table;

pub use fixed::FixedRoomTable;
#[cfg(feature = "alloc")]
pub use growable::GrowableRoomTable;
pub use id::{MAX_ROOM_ID_LEN, MemberId, RoomId, RoomIdError};
pub use set::{CapacityError, RoomSet};
#[cfg(feature = "alloc")]
pub use slot_index::SlotIndex;
pub use table::{JoinError, Joined, RoomTable, TableAccess, TableLimits};
