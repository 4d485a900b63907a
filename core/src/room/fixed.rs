//! The fixed-capacity room table: arrays, no allocation.

use super::{JoinError, Joined, MemberId, RoomId, RoomTable, TableLimits};

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
enum Place {
    Existing(usize),
    Free(usize),
}

impl Place {
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
/// linear scans (see the [module documentation](crate::room) for costs). Members of
/// a room are listed in join order.
///
/// Members share the table: one that joins `PER_MEMBER` new rooms takes
/// that many of the `ROOMS`. With `ROOMS ≥ MEMBERS × PER_MEMBER`, no member
/// can leave another without a room to create; with fewer, a few members
/// joining many rooms can fill it, and later joins are refused with
/// [`JoinError::TooManyRooms`] until they leave.
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
                Place::Existing(i)
            }
            None => {
                let free = self.rooms.iter().position(Option::is_none).ok_or(JoinError::TooManyRooms)?;
                if PER_ROOM == 0 {
                    return Err(JoinError::RoomFull);
                }
                Place::Free(free)
            }
        };
        let member_slot = match self.find_member(member) {
            Some(i) => {
                if self.member_at(i).map_or(0, |m| m.rooms.len()) >= PER_MEMBER {
                    return Err(JoinError::MemberFull);
                }
                Place::Existing(i)
            }
            None => {
                let free = self.members.iter().position(Option::is_none).ok_or(JoinError::TooManyMembers)?;
                if PER_MEMBER == 0 {
                    return Err(JoinError::MemberFull);
                }
                Place::Free(free)
            }
        };

        // Commit. The pushes cannot fail after the checks above; should one
        // fail anyway, undo the half-made membership and report it.
        let (ri, mi) = (room_slot.index(), member_slot.index());
        if let (Place::Free(_), Some(slot)) = (room_slot, self.rooms.get_mut(ri)) {
            *slot = Some(FixedRoom { id: room.clone(), members: heapless::Vec::new() });
        }
        if let (Place::Free(_), Some(slot)) = (member_slot, self.members.get_mut(mi)) {
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
