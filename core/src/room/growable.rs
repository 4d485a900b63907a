//! The growable room table (feature `alloc`).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashMap};

use super::{JoinError, Joined, MemberId, RoomId, RoomTable, SlotIndex, TableLimits};

/// A room; its key is its index in `GrowableRoomTable::slab`.
#[derive(Debug, Clone)]
struct Room {
    id: RoomId,
    /// In no particular order (leaving is a `swap_remove`).
    members: Vec<MemberId>,
}

/// A member's rooms, by key, in join order; [`LEFT`] marks a room left
/// since the last compaction. The first is kept inline, with where the
/// member sits in that room's slice, and the rest boxed: most members are
/// in one room, and then their entry allocates nothing and their one
/// membership needs no entry in the position index (28 bytes a member at
/// 10 000, the index's load included). The entry is 16 bytes, in every
/// bucket of the member index.
#[derive(Debug, Clone)]
struct Member {
    /// The list's first key, [`NO_ROOM`] while the list is empty.
    first: u32,
    /// The first membership's index in its room's member slice, while
    /// `first` is a room's key. (Later memberships are in the position
    /// index.)
    first_in_room: u32,
    /// The rest of the list, and the live count; none while `first` is
    /// [`NO_ROOM`], and none again once the rest is emptied. Boxed for the
    /// entry's size, at one more allocation for members in two rooms or
    /// more.
    rest: Option<Box<Rest>>,
}

/// A member's rooms past its first.
#[derive(Debug, Clone, Default)]
struct Rest {
    keys: Vec<u32>,
    /// How many keys of the whole list (the first included) are not
    /// [`LEFT`].
    live: u32,
}

/// `Member::first` of an empty list. Room keys stay below both markers.
const NO_ROOM: u32 = u32::MAX;
/// A room left, in a member's list.
const LEFT: u32 = u32::MAX - 1;

impl Default for Member {
    fn default() -> Self {
        Self { first: NO_ROOM, first_in_room: 0, rest: None }
    }
}

impl Member {
    /// Entries in the list, [`LEFT`] ones included.
    fn len(&self) -> usize {
        if self.first == NO_ROOM { 0 } else { 1 + self.rest().len() }
    }

    /// Rooms the member is in: the keys of the list that are not [`LEFT`].
    fn live(&self) -> u32 {
        self.rest.as_ref().map_or(u32::from(self.first < LEFT), |rest| rest.live)
    }

    fn rest(&self) -> &[u32] {
        self.rest.as_deref().map_or(&[], |rest| rest.keys.as_slice())
    }

    /// Where the membership of room `key` sits, if it is the first (later
    /// ones are in the position index).
    fn first_position(&self, key: u32) -> Option<Position> {
        (self.first == key).then_some(Position { in_room: self.first_in_room, in_member: 0 })
    }

    /// Appends `key`, whose member slice holds the member at `in_room`;
    /// whether it went first (its position is then kept here).
    fn push(&mut self, key: u32, in_room: u32) -> bool {
        if self.first == NO_ROOM {
            self.first = key;
            self.first_in_room = in_room;
            return true;
        }
        let live = self.live();
        let rest = self.rest.get_or_insert_with(|| Box::new(Rest { keys: Vec::new(), live }));
        rest.keys.push(key);
        rest.live = rest.live.saturating_add(1);
        false
    }

    /// Mark the entry at `at` left; whether it was there and live.
    fn take(&mut self, at: usize) -> bool {
        let slot = match at.checked_sub(1) {
            None if self.first != NO_ROOM => &mut self.first,
            None => return false,
            Some(i) => match self.rest.as_mut().and_then(|rest| rest.keys.get_mut(i)) {
                Some(slot) => slot,
                None => return false,
            },
        };
        if *slot == LEFT {
            return false;
        }
        *slot = LEFT;
        if let Some(rest) = self.rest.as_mut() {
            rest.live = rest.live.saturating_sub(1);
        }
        true
    }

    /// Drop the entries left at the end of the list.
    fn trim(&mut self) {
        if let Some(rest) = self.rest.as_mut() {
            while rest.keys.last() == Some(&LEFT) {
                rest.keys.pop();
            }
        }
        self.drop_empty_rest();
        if self.first == LEFT && self.rest.is_none() {
            self.first = NO_ROOM;
        }
    }

    fn drop_empty_rest(&mut self) {
        if self.rest.as_ref().is_some_and(|rest| rest.keys.is_empty()) {
            self.rest = None;
        }
    }

    /// The live keys, in order, with their index in the list.
    fn keys(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        let first = (self.first != NO_ROOM).then_some(self.first);
        first.into_iter().chain(self.rest().iter().copied()).enumerate().filter(|&(_, key)| key != LEFT)
    }

    /// Drop every entry left. A room's key moved up to be the first is
    /// returned: its position is to be kept here from now on.
    fn retain_live(&mut self) -> Option<u32> {
        let mut promoted = None;
        if let Some(rest) = self.rest.as_mut() {
            rest.keys.retain(|&key| key != LEFT);
            if self.first == LEFT && !rest.keys.is_empty() {
                self.first = rest.keys.remove(0);
                promoted = Some(self.first);
            }
        }
        self.drop_empty_rest();
        if self.first == LEFT {
            self.first = NO_ROOM;
        }
        promoted
    }

    fn shrink_to_fit(&mut self) {
        if let Some(rest) = self.rest.as_mut() {
            rest.keys.shrink_to_fit();
        }
    }
}

/// Where one membership sits on each side. A member's first membership
/// has none in the position index: its member entry holds it.
#[derive(Debug, Clone, Copy)]
struct Position {
    /// Index in `Room::members`.
    in_room: u32,
    /// Index in the member's list (`Member::first`, then `Member::rest`).
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
/// member costs an entry of 24 bytes (and a control byte) in the member
/// index, which holds its first room and where it sits there; its first
/// membership costs a slot in the room's slice beside that, and each
/// further one about 30 bytes (a position entry, a slot in the room's
/// slice, one in the member's list); each room about 140 (its id inline in its slot, its member slice, its
/// key in the name index, which finds rooms by the ids in their slots).
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
    /// Room id → key: keys found by the ids in their rooms (a map holding
    /// every id a second time took 72 bytes a bucket, about 118 per room).
    by_name: SlotIndex<S>,
    /// Rooms by key; `None` slots are listed in `free`.
    slab: Vec<Option<Room>>,
    free: Vec<u32>,
    members: HashMap<MemberId, Member, S>,
    /// Every membership but each member's first, by (room key, member).
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
            by_name: SlotIndex::default(),
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
            by_name: SlotIndex::new(hasher.clone()),
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
            entry.shrink_to_fit();
        }
        self.by_name.shrink_to_fit(id_in(&self.slab));
        self.members.shrink_to_fit();
        self.positions.shrink_to_fit();
    }

    fn room(&self, key: u32) -> Option<&Room> {
        room_at(&self.slab, key)
    }

    /// The key of the room named `room`.
    fn key_of(&self, room: &str) -> Option<u32> {
        self.by_name.find(room, id_in(&self.slab))
    }

    /// Whether `member` is in the room of `key`: as its first room (in its
    /// entry), or in the position index.
    fn contains(&self, key: u32, member: MemberId) -> bool {
        self.members.get(&member).and_then(|entry| entry.first_position(key)).is_some()
            || self.positions.contains_key(&(key, member))
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
            if let Some(&moved) = room.members.get(at) {
                match self.members.get_mut(&moved) {
                    Some(entry) if entry.first == key => entry.first_in_room = in_room,
                    _ => {
                        if let Some(position) = self.positions.get_mut(&(key, moved)) {
                            position.in_room = in_room;
                        }
                    }
                }
            }
        }
        if room.members.is_empty() {
            if let Some(room) = slot.take() {
                self.by_name.remove(key, room.id.as_str());
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
        entry.take(index(in_member));
        if entry.live() == 0 {
            self.members.remove(&member);
            return;
        }
        entry.trim();
        let live = index(entry.live());
        if entry.len().saturating_sub(live) > live {
            compact(member, entry, &mut self.positions);
        }
    }
}

fn room_at(slab: &[Option<Room>], key: u32) -> Option<&Room> {
    slab.get(index(key)).and_then(Option::as_ref)
}

/// The id of the room at a key of `slab`, as the name index reads it.
fn id_in<'a>(slab: &'a [Option<Room>]) -> impl Fn(u32) -> Option<&'a str> + 'a {
    move |key| room_at(slab, key).map(|room| room.id.as_str())
}

/// Drops the tombstones of `member`'s list and records the new positions
/// (a membership moved up to be the first leaves the position index for
/// the member entry). Runs after at least as many leaves as there are
/// rooms left, so it is O(1) amortized per leave.
fn compact<S: BuildHasher>(
    member: MemberId,
    entry: &mut Member,
    positions: &mut HashMap<(u32, MemberId), Position, S>,
) {
    if let Some(first) = entry.retain_live()
        && let Some(position) = positions.remove(&(first, member))
    {
        entry.first_in_room = position.in_room;
    }
    for (i, key) in entry.keys().skip(1) {
        if let Ok(i) = u32::try_from(i)
            && let Some(position) = positions.get_mut(&(key, member))
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
        let existing = self.by_name.find(room.as_str(), id_in(&self.slab));
        let (key, room_len) = match existing {
            Some(key) => {
                if self.contains(key, member) {
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
                    // Below the list markers (`LEFT`, `NO_ROOM`).
                    None => {
                        u32::try_from(self.slab.len()).ok().filter(|&key| key < LEFT).ok_or(JoinError::TooManyRooms)?
                    }
                };
                (key, 0)
            }
        };
        if room_len >= self.limits.max_members_per_room {
            return Err(JoinError::RoomFull);
        }
        let in_room = u32::try_from(room_len).map_err(|_| JoinError::RoomFull)?;
        let (joined, listed) = match self.members.get(&member) {
            Some(entry) => (index(entry.live()), entry.len()),
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
            self.by_name.insert(key, room.as_str(), id_in(&self.slab));
        }
        if let Some(r) = self.slab.get_mut(index(key)).and_then(Option::as_mut) {
            r.members.push(member);
        }
        let entry = self.members.entry(member).or_default();
        if !entry.push(key, in_room) {
            self.positions.insert((key, member), Position { in_room, in_member });
        }
        Ok(Joined::Added)
    }

    fn leave(&mut self, member: MemberId, room: &str) -> bool {
        let Some(key) = self.key_of(room) else { return false };
        let first = self.members.get(&member).and_then(|entry| entry.first_position(key));
        let Some(position) = first.or_else(|| self.positions.remove(&(key, member))) else { return false };
        self.unlink_room_side(key, position.in_room);
        self.unlink_member_side(member, position.in_member);
        true
    }

    fn leave_all(&mut self, member: MemberId) -> usize {
        let Some(entry) = self.members.remove(&member) else { return 0 };
        let mut left = 0;
        for (_, key) in entry.keys() {
            if let Some(position) = entry.first_position(key).or_else(|| self.positions.remove(&(key, member))) {
                self.unlink_room_side(key, position.in_room);
                left += 1;
            }
        }
        left
    }

    fn is_in_room(&self, member: MemberId, room: &str) -> bool {
        self.key_of(room).is_some_and(|key| self.contains(key, member))
    }

    fn members(&self, room: &str) -> &[MemberId] {
        self.key_of(room).and_then(|key| self.room(key)).map_or(&[], |r| r.members.as_slice())
    }

    fn rooms_of(&self, member: MemberId) -> impl Iterator<Item = &RoomId> {
        self.members
            .get(&member)
            .into_iter()
            .flat_map(Member::keys)
            .filter_map(|(_, key)| self.room(key).map(|r| &r.id))
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
        self.members.get(&member).map_or(0, |entry| index(entry.live()))
    }
}

#[cfg(test)]
mod tests {
    /// The entry is in every bucket of the member index: holding a
    /// member's first position in it must not grow it.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_member_entry_stays_16_bytes() {
        assert_eq!(core::mem::size_of::<super::Member>(), 16);
    }
}
