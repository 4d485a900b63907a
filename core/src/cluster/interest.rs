//! Which rooms a node has members in, reported as they change: what a node
//! subscribes to.

use crate::room::{JoinError, Joined, MemberId, RoomId, RoomTable, TableLimits};

/// Told when a room gains its first member or loses its last.
pub trait RoomWatcher {
    /// `room` now has a member (it had none).
    fn opened(&mut self, room: &RoomId);
    /// `room` now has no member.
    fn closed(&mut self, room: &RoomId);
}

/// A room table that tells a [`RoomWatcher`] when a room opens or closes,
/// in the same step as the change, so the watcher sees the changes in
/// their order.
///
/// ```
/// use roomwire_core::cluster::{RoomWatcher, WatchedTable};
/// use roomwire_core::room::{FixedRoomTable, MemberId, RoomId, RoomTable};
/// #[derive(Default)]
/// struct Log(Vec<(String, bool)>);
/// impl RoomWatcher for Log {
///     fn opened(&mut self, room: &RoomId) { self.0.push((room.as_str().into(), true)) }
///     fn closed(&mut self, room: &RoomId) { self.0.push((room.as_str().into(), false)) }
/// }
/// let mut table = WatchedTable::new(FixedRoomTable::<4, 4, 4, 4>::new(), Log::default());
/// let a = RoomId::new("a").unwrap();
/// table.join(MemberId(1), &a).unwrap();
/// table.join(MemberId(2), &a).unwrap();
/// table.leave(MemberId(1), "a");
/// table.leave_all(MemberId(2));
/// assert_eq!(table.watcher().0, [("a".to_string(), true), ("a".to_string(), false)]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct WatchedTable<T, W> {
    table: T,
    watcher: W,
}

impl<T: RoomTable, W: RoomWatcher> WatchedTable<T, W> {
    /// Watch `table` (whose rooms are taken as already known).
    pub fn new(table: T, watcher: W) -> Self {
        Self { table, watcher }
    }

    /// The table.
    pub fn table(&self) -> &T {
        &self.table
    }

    /// The table, to change it unwatched (shrinking, say).
    pub fn table_mut(&mut self) -> &mut T {
        &mut self.table
    }

    /// The watcher.
    pub fn watcher(&self) -> &W {
        &self.watcher
    }

    /// The watcher, mutably.
    pub fn watcher_mut(&mut self) -> &mut W {
        &mut self.watcher
    }
}

impl<T: RoomTable, W: RoomWatcher> RoomTable for WatchedTable<T, W> {
    fn limits(&self) -> TableLimits {
        self.table.limits()
    }

    fn join(&mut self, member: MemberId, room: &RoomId) -> Result<Joined, JoinError> {
        let was_empty = self.table.room_size(room.as_str()) == 0;
        let joined = self.table.join(member, room)?;
        if was_empty && joined == Joined::Added {
            self.watcher.opened(room);
        }
        Ok(joined)
    }

    fn leave(&mut self, member: MemberId, room: &str) -> bool {
        let closing = self.table.is_in_room(member, room) && self.table.room_size(room) == 1;
        let closing = if closing { RoomId::new(room).ok() } else { None };
        let left = self.table.leave(member, room);
        if let Some(room) = closing {
            self.watcher.closed(&room);
        }
        left
    }

    fn leave_all(&mut self, member: MemberId) -> usize {
        for room in self.table.rooms_of(member) {
            if self.table.room_size(room.as_str()) == 1 {
                self.watcher.closed(room);
            }
        }
        self.table.leave_all(member)
    }

    fn is_in_room(&self, member: MemberId, room: &str) -> bool {
        self.table.is_in_room(member, room)
    }

    fn members(&self, room: &str) -> &[MemberId] {
        self.table.members(room)
    }

    fn rooms_of(&self, member: MemberId) -> impl Iterator<Item = &RoomId> {
        self.table.rooms_of(member)
    }

    fn rooms(&self) -> impl Iterator<Item = (&RoomId, usize)> {
        self.table.rooms()
    }

    fn room_count(&self) -> usize {
        self.table.room_count()
    }

    fn member_count(&self) -> usize {
        self.table.member_count()
    }

    fn room_size(&self, room: &str) -> usize {
        self.table.room_size(room)
    }

    fn room_count_of(&self, member: MemberId) -> usize {
        self.table.room_count_of(member)
    }
}
