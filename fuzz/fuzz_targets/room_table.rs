//! Room tables against a reference model.
//!
//! The input is a sequence of two-byte operations:
//!
//! * byte 0, bits 0–1: the kind (0 and 1: join, 2: leave, 3: leave all,
//!   after a `shrink_to_fit` of the growable tables when byte 1 has its top
//!   bit set);
//! * byte 0, bits 2–4: the member (0–6, and 7 for `u32::MAX`);
//! * byte 1: the room, from a small alphabet (so rooms collide).
//!
//! Each operation is applied to three tables and two models: a
//! `FixedRoomTable<4, 5, 3, 3>` and a `GrowableRoomTable` with the same
//! limits against one model (so all four `JoinError`s happen), and an
//! unlimited `GrowableRoomTable` against another. Results must match the
//! model, and after every operation so must everything the `RoomTable`
//! trait can observe: counts, per-room members and sizes, per-member rooms
//! in join order, and `is_in_room` for every pair.
//!
//! The whole input, when it is UTF-8, also checks `RoomId::new` validation.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use roomwire_core::room::{
    FixedRoomTable, GrowableRoomTable, JoinError, Joined, MAX_ROOM_ID_LEN, MemberId, RoomId, RoomIdError, RoomTable,
    TableLimits,
};

/// Room names: short, multi-byte, and the longest allowed.
const ROOMS: [&str; 6] =
    ["a", "b", "lobby", "é", "chat:1", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"];

/// Never joined; only looked up.
const UNKNOWN_ROOM: &str = "unknown";

/// Member handles: 0–6 and `u32::MAX`.
const MEMBERS: [u32; 8] = [0, 1, 2, 3, 4, 5, 6, u32::MAX];

/// Fewer slots than rooms and members, so that every limit is hit.
type Fixed = FixedRoomTable<4, 5, 3, 3>;

#[derive(Debug, Clone, Copy)]
enum Op {
    Join(u32, &'static str),
    Leave(u32, &'static str),
    LeaveAll { member: u32, shrink: bool },
}

fn decode(chunk: &[u8]) -> Op {
    let b0 = chunk.first().copied().unwrap_or(0);
    let b1 = chunk.get(1).copied().unwrap_or(0);
    let member = MEMBERS[usize::from((b0 >> 2) & 7)];
    let room = ROOMS[usize::from(b1 & 0x7f) % ROOMS.len()];
    match b0 & 3 {
        0 | 1 => Op::Join(member, room),
        2 => Op::Leave(member, room),
        _ => Op::LeaveAll { member, shrink: b1 & 0x80 != 0 },
    }
}

/// The obvious implementation, with the check order documented on
/// `JoinError`.
struct Model {
    limits: TableLimits,
    /// Room → members in join order.
    rooms: BTreeMap<String, Vec<u32>>,
    /// Member → rooms in join order.
    members: BTreeMap<u32, Vec<String>>,
}

impl Model {
    fn new(limits: TableLimits) -> Self {
        Self { limits, rooms: BTreeMap::new(), members: BTreeMap::new() }
    }

    fn join(&mut self, member: u32, room: &str) -> Result<Joined, JoinError> {
        let in_room = self.rooms.get(room);
        if in_room.is_some_and(|ms| ms.contains(&member)) {
            return Ok(Joined::AlreadyMember);
        }
        if in_room.is_none() && self.rooms.len() >= self.limits.max_rooms {
            return Err(JoinError::TooManyRooms);
        }
        if in_room.map_or(0, Vec::len) >= self.limits.max_members_per_room {
            return Err(JoinError::RoomFull);
        }
        let of_member = self.members.get(&member);
        if of_member.is_none() && self.members.len() >= self.limits.max_members {
            return Err(JoinError::TooManyMembers);
        }
        if of_member.map_or(0, Vec::len) >= self.limits.max_rooms_per_member {
            return Err(JoinError::MemberFull);
        }
        self.rooms.entry(room.to_string()).or_default().push(member);
        self.members.entry(member).or_default().push(room.to_string());
        Ok(Joined::Added)
    }

    fn leave(&mut self, member: u32, room: &str) -> bool {
        let Some(ms) = self.rooms.get_mut(room) else { return false };
        let Some(at) = ms.iter().position(|&m| m == member) else { return false };
        ms.remove(at);
        if ms.is_empty() {
            self.rooms.remove(room);
        }
        let rs = self.members.get_mut(&member).expect("model: member of a room but not indexed");
        rs.retain(|r| r != room);
        if rs.is_empty() {
            self.members.remove(&member);
        }
        true
    }

    fn leave_all(&mut self, member: u32) -> usize {
        let Some(rooms) = self.members.remove(&member) else { return 0 };
        for room in &rooms {
            let ms = self.rooms.get_mut(room).expect("model: room of a member but not indexed");
            ms.retain(|&m| m != member);
            if ms.is_empty() {
                self.rooms.remove(room);
            }
        }
        rooms.len()
    }
}

/// Everything observable through the trait equals the model.
fn check<T: RoomTable>(name: &str, table: &T, model: &Model, members_in_join_order: bool) {
    assert_eq!(table.room_count(), model.rooms.len(), "{name}: room_count");
    assert_eq!(table.member_count(), model.members.len(), "{name}: member_count");

    let mut listed = 0;
    for (room, size) in table.rooms() {
        listed += 1;
        assert_eq!(Some(size), model.rooms.get(room.as_str()).map(Vec::len), "{name}: rooms() size of {room}");
    }
    assert_eq!(listed, model.rooms.len(), "{name}: rooms() count");

    for room in ROOMS.into_iter().chain([UNKNOWN_ROOM]) {
        let want = model.rooms.get(room).map(Vec::as_slice).unwrap_or_default();
        let mut got: Vec<u32> = table.members(room).iter().map(|m| m.0).collect();
        assert_eq!(table.room_size(room), want.len(), "{name}: room_size({room})");
        if members_in_join_order {
            assert_eq!(got, want, "{name}: members({room}) in join order");
        } else {
            let mut want = want.to_vec();
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want, "{name}: members({room})");
        }
        for m in MEMBERS {
            assert_eq!(table.is_in_room(MemberId(m), room), want.contains(&m), "{name}: is_in_room({m}, {room})");
        }
    }

    for m in MEMBERS {
        let want = model.members.get(&m).map(Vec::as_slice).unwrap_or_default();
        let got: Vec<&str> = table.rooms_of(MemberId(m)).map(|r| r.as_str()).collect();
        assert_eq!(got, want, "{name}: rooms_of({m}) in join order");
        assert_eq!(table.room_count_of(MemberId(m)), want.len(), "{name}: room_count_of({m})");
        assert_eq!(
            table.first_room(MemberId(m)).map(|r| r.as_str()),
            want.first().map(String::as_str),
            "{name}: first_room({m})"
        );
    }
}

fn room_id(name: &str) -> RoomId {
    RoomId::new(name).expect("alphabet names are valid room ids")
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let want = if text.is_empty() {
            Err(RoomIdError::Empty)
        } else if text.len() > MAX_ROOM_ID_LEN {
            Err(RoomIdError::TooLong { len: text.len() })
        } else {
            Ok(text)
        };
        assert_eq!(RoomId::new(text).as_ref().map(RoomId::as_str), want.as_deref());
    }

    let mut fixed = Fixed::new();
    let mut tight = GrowableRoomTable::with_limits(Fixed::LIMITS);
    let mut tight_model = Model::new(Fixed::LIMITS);
    let mut unlimited = GrowableRoomTable::new();
    let mut unlimited_model = Model::new(TableLimits::UNLIMITED);

    for chunk in data.chunks(2) {
        let op = decode(chunk);
        match op {
            Op::Join(m, room) => {
                let id = room_id(room);
                let want = tight_model.join(m, room);
                assert_eq!(fixed.join(MemberId(m), &id), want, "fixed: {op:?}");
                assert_eq!(tight.join(MemberId(m), &id), want, "tight: {op:?}");
                assert_eq!(unlimited.join(MemberId(m), &id), unlimited_model.join(m, room), "unlimited: {op:?}");
            }
            Op::Leave(m, room) => {
                let want = tight_model.leave(m, room);
                assert_eq!(fixed.leave(MemberId(m), room), want, "fixed: {op:?}");
                assert_eq!(tight.leave(MemberId(m), room), want, "tight: {op:?}");
                assert_eq!(unlimited.leave(MemberId(m), room), unlimited_model.leave(m, room), "unlimited: {op:?}");
            }
            Op::LeaveAll { member, shrink } => {
                if shrink {
                    tight.shrink_to_fit();
                    unlimited.shrink_to_fit();
                }
                let want = tight_model.leave_all(member);
                assert_eq!(fixed.leave_all(MemberId(member)), want, "fixed: {op:?}");
                assert_eq!(tight.leave_all(MemberId(member)), want, "tight: {op:?}");
                assert_eq!(
                    unlimited.leave_all(MemberId(member)),
                    unlimited_model.leave_all(member),
                    "unlimited: {op:?}"
                );
            }
        }
        check("fixed", &fixed, &tight_model, true);
        check("tight", &tight, &tight_model, false);
        check("unlimited", &unlimited, &unlimited_model, false);
    }
});
