//! The room tables against a plain reference model, plus the behaviours of
//! Alepha's `RoomManager` test suite (numbered 33–45 as in the port list).
//!
//! Every check runs on [`FixedRoomTable`] and, with the `alloc` feature, on
//! `GrowableRoomTable`, through generic code over [`RoomTable`].

use std::collections::BTreeMap;
use std::string::{String, ToString};
use std::vec::Vec;

use proptest::prelude::*;

#[cfg(feature = "alloc")]
use crate::room::GrowableRoomTable;
use crate::room::{
    CapacityError, FixedRoomTable, JoinError, Joined, MAX_ROOM_ID_LEN, MemberId, RoomId, RoomIdError, RoomSet,
    RoomTable, TableLimits,
};

// ---------------------------------------------------------------------------
// Reference model
// ---------------------------------------------------------------------------

/// Member ids used by the generated sequences: 0..MEMBER_IDS.
const MEMBER_IDS: u32 = 6;

/// Room names used by the generated sequences: short, multi-byte and the
/// longest allowed.
const ROOM_NAMES: [&str; 5] =
    ["lobby", "game:1", "é", "z", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"];

/// A room name that is never joined.
const UNKNOWN_ROOM: &str = "nope";

fn rid(name: &str) -> RoomId {
    RoomId::new(name).unwrap()
}

/// The obvious implementation: ordered maps and vectors, no cleverness.
#[derive(Debug)]
struct Model {
    limits: TableLimits,
    /// Room → members, in join order.
    rooms: BTreeMap<String, Vec<u32>>,
    /// Member → rooms, in join order.
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
        let rs = self.members.get_mut(&member).unwrap();
        rs.retain(|r| r != room);
        if rs.is_empty() {
            self.members.remove(&member);
        }
        true
    }

    fn leave_all(&mut self, member: u32) -> usize {
        let Some(rooms) = self.members.remove(&member) else { return 0 };
        for room in &rooms {
            let ms = self.rooms.get_mut(room).unwrap();
            ms.retain(|&m| m != member);
            if ms.is_empty() {
                self.rooms.remove(room);
            }
        }
        rooms.len()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Join(u32, usize),
    Leave(u32, usize),
    LeaveAll(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..MEMBER_IDS, 0..ROOM_NAMES.len()).prop_map(|(m, r)| Op::Join(m, r)),
        3 => (0..MEMBER_IDS, 0..ROOM_NAMES.len()).prop_map(|(m, r)| Op::Leave(m, r)),
        1 => (0..MEMBER_IDS).prop_map(Op::LeaveAll),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 0..200)
}

fn room_name(index: usize) -> &'static str {
    ROOM_NAMES[index]
}

/// Everything observable through the trait equals the model.
fn assert_matches<T: RoomTable>(table: &T, model: &Model, members_in_join_order: bool) {
    assert_eq!(table.room_count(), model.rooms.len(), "room_count");
    assert_eq!(table.member_count(), model.members.len(), "member_count");

    let sizes: BTreeMap<String, usize> = table.rooms().map(|(r, n)| (r.to_string(), n)).collect();
    let expected: BTreeMap<String, usize> = model.rooms.iter().map(|(r, ms)| (r.clone(), ms.len())).collect();
    assert_eq!(sizes, expected, "rooms()");
    assert_eq!(table.rooms().count(), model.rooms.len(), "rooms() lists a room twice");
    let mut each = BTreeMap::new();
    table.for_each_room(|r, n| {
        each.insert(r.to_string(), n);
    });
    assert_eq!(each, expected, "for_each_room");

    for room in ROOM_NAMES.iter().copied().chain([UNKNOWN_ROOM]) {
        let want = model.rooms.get(room).cloned().unwrap_or_default();
        let mut got: Vec<u32> = table.members(room).iter().map(|m| m.0).collect();
        let mut each = Vec::new();
        table.for_each_member(room, |m| each.push(m.0));
        assert_eq!(each, got, "for_each_member({room})");
        assert_eq!(table.room_size(room), want.len(), "room_size({room})");
        if members_in_join_order {
            assert_eq!(got, want, "members({room}) in join order");
        }
        got.sort_unstable();
        let mut want_sorted = want.clone();
        want_sorted.sort_unstable();
        assert_eq!(got, want_sorted, "members({room})");
        for m in 0..=MEMBER_IDS {
            assert_eq!(table.is_in_room(MemberId(m), room), want.contains(&m), "is_in_room({m}, {room})");
        }
    }

    for m in 0..=MEMBER_IDS {
        let want = model.members.get(&m).cloned().unwrap_or_default();
        let got: Vec<String> = table.rooms_of(MemberId(m)).map(|r| r.to_string()).collect();
        assert_eq!(got, want, "rooms_of({m}) in join order");
        assert_eq!(table.room_count_of(MemberId(m)), want.len(), "room_count_of({m})");
        assert_eq!(table.first_room(MemberId(m)).map(|r| r.to_string()), want.first().cloned(), "first_room({m})");
    }
}

/// Applies `ops` to `table` and to a model with the table's limits,
/// comparing results and state after every step.
fn run_model<T: RoomTable>(table: T, ops: &[Op], members_in_join_order: bool) {
    run_model_with(table, ops, members_in_join_order, |_| {});
}

/// [`run_model`], with `after_step` run on the table after every step.
fn run_model_with<T: RoomTable>(
    mut table: T,
    ops: &[Op],
    members_in_join_order: bool,
    mut after_step: impl FnMut(&mut T),
) {
    let mut model = Model::new(table.limits());
    assert_matches(&table, &model, members_in_join_order);
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Join(m, r) => {
                let room = room_name(r);
                assert_eq!(table.join(MemberId(m), &rid(room)), model.join(m, room), "step {step}: {op:?}");
            }
            Op::Leave(m, r) => {
                let room = room_name(r);
                assert_eq!(table.leave(MemberId(m), room), model.leave(m, room), "step {step}: {op:?}");
            }
            Op::LeaveAll(m) => {
                assert_eq!(table.leave_all(MemberId(m)), model.leave_all(m), "step {step}: {op:?}");
            }
        }
        after_step(&mut table);
        assert_matches(&table, &model, members_in_join_order);
    }
}

/// Fewer slots than names and ids, so every [`JoinError`] happens.
type Tight = FixedRoomTable<4, 5, 3, 3>;
/// Enough slots for every name and id: no join is ever refused.
type Roomy = FixedRoomTable<5, 6, 6, 5>;

#[cfg(feature = "alloc")]
const TIGHT: TableLimits = Tight::LIMITS;

proptest! {
    #[test]
    fn model_fixed_tight(ops in ops()) {
        run_model(Tight::new(), &ops, true);
    }

    #[test]
    fn model_fixed_roomy(ops in ops()) {
        run_model(Roomy::new(), &ops, true);
    }

    #[test]
    fn model_fixed_degenerate(ops in prop::collection::vec(op(), 0..40)) {
        run_model(FixedRoomTable::<0, 0, 0, 0>::new(), &ops, true);
        run_model(FixedRoomTable::<2, 3, 0, 2>::new(), &ops, true);
        run_model(FixedRoomTable::<2, 3, 2, 0>::new(), &ops, true);
        run_model(FixedRoomTable::<1, 1, 1, 1>::new(), &ops, true);
    }
}

#[cfg(feature = "alloc")]
proptest! {
    #[test]
    fn model_growable_unlimited(ops in ops()) {
        run_model(GrowableRoomTable::new(), &ops, false);
    }

    /// Giving memory back compacts every member's list (moving a member's
    /// first position from the index into its entry): any step may do it.
    #[test]
    fn model_growable_shrinking(ops in ops(), every in 1..4usize) {
        let mut step = 0;
        run_model_with(GrowableRoomTable::new(), &ops, false, |table| {
            step += 1;
            if step % every == 0 {
                table.shrink_to_fit();
            }
        });
    }

    #[test]
    fn model_growable_tight(ops in ops()) {
        run_model(GrowableRoomTable::with_limits(TIGHT), &ops, false);
    }

    #[test]
    fn model_growable_degenerate(ops in prop::collection::vec(op(), 0..40)) {
        let zero = TableLimits { max_rooms: 0, max_members: 0, max_members_per_room: 0, max_rooms_per_member: 0 };
        run_model(GrowableRoomTable::with_limits(zero), &ops, false);
        run_model(GrowableRoomTable::with_limits(TableLimits { max_members_per_room: 0, ..TIGHT }), &ops, false);
        run_model(GrowableRoomTable::with_limits(TableLimits { max_rooms_per_member: 0, ..TIGHT }), &ops, false);
    }

    /// The fixed and growable tables agree step by step with the same limits.
    #[test]
    fn fixed_and_growable_agree(ops in ops()) {
        let mut fixed = Tight::new();
        let mut growable = GrowableRoomTable::with_limits(TIGHT);
        for op in &ops {
            match *op {
                Op::Join(m, r) => {
                    let room = rid(room_name(r));
                    prop_assert_eq!(fixed.join(MemberId(m), &room), growable.join(MemberId(m), &room));
                }
                Op::Leave(m, r) => {
                    prop_assert_eq!(fixed.leave(MemberId(m), room_name(r)), growable.leave(MemberId(m), room_name(r)));
                }
                Op::LeaveAll(m) => prop_assert_eq!(fixed.leave_all(MemberId(m)), growable.leave_all(MemberId(m))),
            }
            for m in 0..MEMBER_IDS {
                let f: Vec<&RoomId> = fixed.rooms_of(MemberId(m)).collect();
                let g: Vec<&RoomId> = growable.rooms_of(MemberId(m)).collect();
                prop_assert_eq!(f, g);
            }
        }
    }
}

/// Many members and big rooms, with random joins and leaves: exercises the
/// growable table's position bookkeeping (`swap_remove` moves, compaction of
/// member lists, shrinking of emptied rooms) at a size proptest does not
/// reach.
#[cfg(feature = "alloc")]
#[test]
fn growable_large_random() {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move |bound: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound
    };
    let names: Vec<String> = (0..20).map(|i| std::format!("room-{i}")).collect();
    let mut table = GrowableRoomTable::new();
    let mut model = Model::new(TableLimits::UNLIMITED);
    for step in 0..60_000 {
        let m = u32::try_from(next(3000)).unwrap();
        // Skewed towards a few big rooms.
        let r = usize::try_from(next(20).min(next(20))).unwrap();
        let room = names[r].as_str();
        match next(10) {
            0..=5 => assert_eq!(table.join(MemberId(m), &rid(room)), model.join(m, room)),
            6..=8 => assert_eq!(table.leave(MemberId(m), room), model.leave(m, room)),
            _ => assert_eq!(table.leave_all(MemberId(m)), model.leave_all(m)),
        }
        if step % 10_000 == 0 {
            assert_large(&table, &model);
        }
    }
    assert_large(&table, &model);
    // Empty the big rooms, then shrink: everything still answers right.
    for m in 0..3000 {
        if m % 7 != 0 {
            assert_eq!(table.leave_all(MemberId(m)), model.leave_all(m));
        }
    }
    assert_large(&table, &model);
    table.shrink_to_fit();
    assert_large(&table, &model);
    for m in 0..3000 {
        assert_eq!(table.join(MemberId(m), &rid("room-0")), model.join(m, "room-0"));
    }
    assert_large(&table, &model);
}

#[cfg(feature = "alloc")]
fn assert_large<T: RoomTable>(table: &T, model: &Model) {
    assert_eq!(table.room_count(), model.rooms.len());
    assert_eq!(table.member_count(), model.members.len());
    for (room, want) in &model.rooms {
        let mut got: Vec<u32> = table.members(room).iter().map(|m| m.0).collect();
        got.sort_unstable();
        let mut want = want.clone();
        want.sort_unstable();
        assert_eq!(got, want, "members({room})");
    }
    for (&m, want) in &model.members {
        let got: Vec<&str> = table.rooms_of(MemberId(m)).map(|r| r.as_str()).collect();
        assert_eq!(got, *want, "rooms_of({m})");
        for room in want {
            assert!(table.is_in_room(MemberId(m), room));
        }
    }
}

// ---------------------------------------------------------------------------
// Alepha RoomManager behaviours
// ---------------------------------------------------------------------------

/// Runs the block, generic over `T: RoomTable`, on a fixed table and, with
/// `alloc`, on a growable one.
macro_rules! on_each_table {
    (|$t:ident| $body:block) => {{
        #[allow(unused_mut)]
        fn case<T: RoomTable>(mut $t: T) $body
        case(FixedRoomTable::<8, 8, 8, 8>::new());
        #[cfg(feature = "alloc")]
        case(GrowableRoomTable::new());
    }};
}

const C1: MemberId = MemberId(1);
const C2: MemberId = MemberId(2);
const C3: MemberId = MemberId(3);

fn rooms_of<T: RoomTable>(table: &T, member: MemberId) -> Vec<&str> {
    table.rooms_of(member).map(|r| r.as_str()).collect()
}

fn members_sorted<T: RoomTable>(table: &T, room: &str) -> Vec<MemberId> {
    let mut members = table.members(room).to_vec();
    members.sort_unstable();
    members
}

fn all_rooms<T: RoomTable>(table: &T) -> BTreeMap<String, usize> {
    table.rooms().map(|(r, n)| (r.to_string(), n)).collect()
}

#[test]
fn test_33_join_updates_both_indexes() {
    on_each_table!(|t| {
        assert_eq!(t.join(C1, &rid("room1")), Ok(Joined::Added));
        assert_eq!(t.members("room1"), [C1]);
        assert_eq!(rooms_of(&t, C1), ["room1"]);
    });
}

#[test]
fn test_34_join_several_rooms_at_once() {
    on_each_table!(|t| {
        for room in ["room1", "room2", "room3"] {
            assert_eq!(t.join(C1, &rid(room)), Ok(Joined::Added));
        }
        assert_eq!(rooms_of(&t, C1), ["room1", "room2", "room3"]);
        for room in ["room1", "room2", "room3"] {
            assert!(t.is_in_room(C1, room));
        }
    });
}

#[test]
fn test_35_room_holds_several_connections() {
    on_each_table!(|t| {
        for c in [C1, C2, C3] {
            t.join(c, &rid("room1")).unwrap();
        }
        assert_eq!(members_sorted(&t, "room1"), [C1, C2, C3]);
        assert_eq!(t.room_size("room1"), 3);
    });
}

#[test]
fn test_36_leave_removes_from_both_indexes() {
    on_each_table!(|t| {
        t.join(C1, &rid("room1")).unwrap();
        t.join(C1, &rid("room2")).unwrap();
        assert!(t.leave(C1, "room1"));
        assert!(!t.is_in_room(C1, "room1"));
        assert!(!t.members("room1").contains(&C1));
        assert_eq!(rooms_of(&t, C1), ["room2"]);
    });
}

#[test]
fn test_37_emptied_rooms_are_deleted() {
    on_each_table!(|t| {
        t.join(C1, &rid("room1")).unwrap();
        assert!(t.leave(C1, "room1"));
        assert_eq!(t.room_count(), 0);
        assert_eq!(t.rooms().count(), 0);
        assert!(t.members("room1").is_empty());
        assert_eq!(t.member_count(), 0);
    });
}

#[test]
fn test_38_leave_keeps_other_members() {
    on_each_table!(|t| {
        t.join(C1, &rid("room1")).unwrap();
        t.join(C2, &rid("room1")).unwrap();
        t.join(C3, &rid("room1")).unwrap();
        assert!(t.leave(C2, "room1"));
        assert_eq!(members_sorted(&t, "room1"), [C1, C3]);
        assert!(t.is_in_room(C1, "room1"));
        assert!(t.is_in_room(C3, "room1"));
    });
}

#[test]
fn test_39_leaving_a_room_not_joined_is_a_noop() {
    on_each_table!(|t| {
        t.join(C1, &rid("room1")).unwrap();
        t.join(C2, &rid("room2")).unwrap();
        assert!(!t.leave(C1, "room2"));
        assert!(!t.leave(C1, "unknown"));
        assert!(!t.leave(C3, "room1"));
        assert_eq!(rooms_of(&t, C1), ["room1"]);
        assert_eq!(t.members("room2"), [C2]);
        assert_eq!(t.room_count(), 2);
        assert_eq!(t.member_count(), 2);
    });
}

#[test]
fn test_40_leave_all_removes_from_every_room_and_cleans_up() {
    on_each_table!(|t| {
        t.join(C1, &rid("room1")).unwrap();
        t.join(C1, &rid("room2")).unwrap();
        t.join(C1, &rid("room3")).unwrap();
        t.join(C2, &rid("room2")).unwrap();
        assert_eq!(t.leave_all(C1), 3);
        assert!(rooms_of(&t, C1).is_empty());
        for room in ["room1", "room2", "room3"] {
            assert!(!t.is_in_room(C1, room));
        }
        assert_eq!(all_rooms(&t), BTreeMap::from([("room2".to_string(), 1)]));
    });
}

#[test]
fn test_41_leave_all_does_not_affect_other_connections() {
    on_each_table!(|t| {
        t.join(C1, &rid("room1")).unwrap();
        t.join(C2, &rid("room1")).unwrap();
        t.join(C2, &rid("room2")).unwrap();
        t.leave_all(C1);
        assert_eq!(t.members("room1"), [C2]);
        assert_eq!(rooms_of(&t, C2), ["room1", "room2"]);
        assert_eq!(t.member_count(), 1);
    });
}

#[test]
fn test_42_leave_all_unknown_connection_is_a_noop() {
    on_each_table!(|t| {
        assert_eq!(t.leave_all(C1), 0);
        assert_eq!(t.member_count(), 0);
        assert_eq!(t.room_count(), 0);
    });
}

#[test]
fn test_43_is_in_room() {
    on_each_table!(|t| {
        t.join(C1, &rid("room1")).unwrap();
        t.join(C2, &rid("room2")).unwrap();
        assert!(t.is_in_room(C1, "room1"));
        assert!(!t.is_in_room(C1, "room2"));
        assert!(!t.is_in_room(C3, "room1"));
        assert!(!t.is_in_room(C1, "unknown"));
    });
}

#[test]
fn test_44_stats() {
    on_each_table!(|t| {
        t.join(C1, &rid("room1")).unwrap();
        t.join(C2, &rid("room1")).unwrap();
        t.join(C1, &rid("room2")).unwrap();
        t.join(C3, &rid("room3")).unwrap();
        assert_eq!(t.room_count(), 3);
        assert_eq!(t.member_count(), 3); // distinct connections, C1 counted once
        let expected = BTreeMap::from([("room1".to_string(), 2), ("room2".to_string(), 1), ("room3".to_string(), 1)]);
        assert_eq!(all_rooms(&t), expected);
        let mut each = BTreeMap::new();
        t.for_each_room(|r, n| {
            each.insert(r.to_string(), n);
        });
        assert_eq!(each, expected);
    });
}

#[test]
fn test_45_stats_on_empty_table() {
    on_each_table!(|t| {
        assert_eq!(t.room_count(), 0);
        assert_eq!(t.member_count(), 0);
        assert_eq!(t.rooms().count(), 0);
        let mut calls = 0;
        t.for_each_room(|_, _| calls += 1);
        assert_eq!(calls, 0);
    });
}

// ---------------------------------------------------------------------------
// Further guarantees
// ---------------------------------------------------------------------------

#[test]
fn rooms_keep_join_order_and_first_is_default() {
    on_each_table!(|t| {
        for room in ["c", "a", "b"] {
            t.join(C1, &rid(room)).unwrap();
        }
        assert_eq!(rooms_of(&t, C1), ["c", "a", "b"]);
        assert_eq!(t.first_room(C1).unwrap(), "c");
        t.leave(C1, "c");
        assert_eq!(t.first_room(C1).unwrap(), "a");
        t.join(C1, &rid("c")).unwrap(); // rejoining goes to the end
        assert_eq!(rooms_of(&t, C1), ["a", "b", "c"]);
        assert_eq!(t.first_room(C2), None);
    });
}

#[test]
fn duplicate_join_is_idempotent_and_does_not_reorder() {
    on_each_table!(|t| {
        t.join(C1, &rid("a")).unwrap();
        t.join(C1, &rid("b")).unwrap();
        t.join(C2, &rid("a")).unwrap();
        assert_eq!(t.join(C1, &rid("a")), Ok(Joined::AlreadyMember));
        assert_eq!(rooms_of(&t, C1), ["a", "b"]);
        assert_eq!(t.room_size("a"), 2);
        assert_eq!(t.room_count_of(C1), 2);
    });
}

#[test]
fn fixed_capacity_errors_leave_the_table_unchanged() {
    // 2 rooms, 2 members, 2 per room, 2 per member.
    let mut t = FixedRoomTable::<2, 2, 2, 2>::new();
    t.join(C1, &rid("a")).unwrap();
    t.join(C1, &rid("b")).unwrap();
    assert_eq!(t.join(C1, &rid("c")), Err(JoinError::TooManyRooms));
    t.join(C2, &rid("a")).unwrap();
    assert_eq!(t.join(C3, &rid("a")), Err(JoinError::RoomFull));
    assert_eq!(t.join(C3, &rid("b")), Err(JoinError::TooManyMembers));
    assert_eq!((t.room_count(), t.member_count()), (2, 2));
    assert_eq!(rooms_of(&t, C1), ["a", "b"]);
    assert_eq!(members_sorted(&t, "a"), [C1, C2]);
    assert_eq!(t.members("b"), [C1]);
    assert!(t.members("c").is_empty());
    // Joining a room one is in succeeds however full the table is.
    assert_eq!(t.join(C1, &rid("a")), Ok(Joined::AlreadyMember));

    let mut t = FixedRoomTable::<3, 2, 2, 2>::new();
    t.join(C1, &rid("a")).unwrap();
    t.join(C1, &rid("b")).unwrap();
    assert_eq!(t.join(C1, &rid("c")), Err(JoinError::MemberFull));
    assert_eq!(rooms_of(&t, C1), ["a", "b"]);
    assert_eq!(t.room_count(), 2);
    assert!(t.members("c").is_empty());
    // Slots freed by leaving are reused.
    assert_eq!(t.leave_all(C1), 2);
    assert_eq!(t.join(MemberId(10), &rid("x")), Ok(Joined::Added));
    assert_eq!(t.join(MemberId(11), &rid("y")), Ok(Joined::Added));
    assert_eq!(t.join(MemberId(11), &rid("z")), Ok(Joined::Added));
    assert_eq!(t.join(MemberId(12), &rid("z")), Err(JoinError::TooManyMembers));
    assert_eq!(t.join(MemberId(10), &rid("w")), Err(JoinError::TooManyRooms));
    assert_eq!(t.room_count(), 3);
}

#[cfg(feature = "alloc")]
#[test]
fn growable_limits_report_each_error() {
    let limits = TableLimits { max_rooms: 2, max_members: 2, max_members_per_room: 2, max_rooms_per_member: 1 };
    let mut t = GrowableRoomTable::with_limits(limits);
    t.join(C1, &rid("a")).unwrap();
    assert_eq!(t.join(C1, &rid("b")), Err(JoinError::MemberFull));
    t.join(C2, &rid("b")).unwrap();
    assert_eq!(t.join(C3, &rid("c")), Err(JoinError::TooManyRooms));
    assert_eq!(t.join(C3, &rid("a")), Err(JoinError::TooManyMembers));
    t.leave_all(C2);
    t.join(C2, &rid("a")).unwrap();
    assert_eq!(t.join(C3, &rid("a")), Err(JoinError::RoomFull));
    assert_eq!(t.room_count(), 1);
    assert_eq!(t.limits(), limits);
}

#[test]
fn fixed_table_is_const_and_static() {
    static TABLE: FixedRoomTable<8, 4, 4, 8> = FixedRoomTable::new();
    assert_eq!(TABLE.room_count(), 0);
    assert!(TABLE.members("a").is_empty());
    assert_eq!(TABLE.rooms_of(C1).count(), 0);
}

#[test]
fn join_error_display() {
    for e in [JoinError::TooManyRooms, JoinError::RoomFull, JoinError::TooManyMembers, JoinError::MemberFull] {
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(JoinError::RoomFull.to_string(), "room full");
}

// ---------------------------------------------------------------------------
// RoomId and RoomSet
// ---------------------------------------------------------------------------

#[test]
fn room_id_validation() {
    assert_eq!(RoomId::new(""), Err(RoomIdError::Empty));
    let longest = "x".repeat(MAX_ROOM_ID_LEN);
    assert_eq!(RoomId::new(&longest).unwrap().as_str(), longest);
    assert_eq!(RoomId::new(&"x".repeat(65)), Err(RoomIdError::TooLong { len: 65 }));
    // Lengths are bytes, not characters.
    assert!(RoomId::new(&"é".repeat(32)).is_ok());
    assert_eq!(RoomId::new(&"é".repeat(33)), Err(RoomIdError::TooLong { len: 66 }));
    assert_eq!("lobby".parse::<RoomId>().unwrap(), "lobby");
    assert_eq!(RoomId::try_from("").unwrap_err().to_string(), "room id is empty");
    assert_eq!(RoomIdError::TooLong { len: 70 }.to_string(), "room id is 70 bytes long, more than 64");
}

#[test]
fn room_id_behaves_like_its_string() {
    use core::hash::BuildHasher;
    let a = rid("alpha");
    let b = rid("beta");
    assert!(a < b);
    assert_eq!(std::format!("{a}"), "alpha");
    assert_eq!(std::format!("{a:>7}"), "  alpha");
    assert_eq!(std::format!("{a:?}"), "RoomId(\"alpha\")");
    let hasher = std::hash::RandomState::new();
    assert_eq!(hasher.hash_one(&a), hasher.hash_one("alpha"));
    let mut map = std::collections::HashMap::new();
    map.insert(a.clone(), 1);
    assert_eq!(map.get("alpha"), Some(&1));
    let set = std::collections::BTreeSet::from([b.clone(), a.clone()]);
    assert!(set.contains("beta"));
    assert_eq!(&*a, "alpha");
}

#[test]
fn room_set_basics() {
    let mut set = RoomSet::<2>::new();
    assert_eq!(set.first(), None);
    assert_eq!(set.join(rid("b")), Ok(true));
    assert_eq!(set.join(rid("a")), Ok(true));
    assert_eq!(set.join(rid("b")), Ok(false));
    assert_eq!(set.join(rid("c")), Err(CapacityError { capacity: 2 }));
    assert!(set.is_full());
    assert_eq!((&set).into_iter().map(|r| r.as_str()).collect::<Vec<_>>(), ["b", "a"]);
    assert!(set.leave("b"));
    assert_eq!(set.first().unwrap(), "a");
    set.clear();
    assert!(set.is_empty());
    let mut none = RoomSet::<0>::new();
    assert_eq!(none.join(rid("a")), Err(CapacityError { capacity: 0 }));
    assert!(!none.leave("a"));
}

proptest! {
    /// A `RoomSet` is a bounded, join-ordered list without duplicates.
    #[test]
    fn room_set_model(ops in prop::collection::vec((0..3u8, 0..ROOM_NAMES.len()), 0..100)) {
        let mut set = RoomSet::<3>::new();
        let mut model: Vec<&str> = Vec::new();
        for (kind, r) in ops {
            let room = room_name(r);
            match kind {
                0 | 1 => {
                    let want = if model.contains(&room) {
                        Ok(false)
                    } else if model.len() == 3 {
                        Err(CapacityError { capacity: 3 })
                    } else {
                        model.push(room);
                        Ok(true)
                    };
                    prop_assert_eq!(set.join(rid(room)), want);
                }
                _ => {
                    let had = model.contains(&room);
                    model.retain(|r| *r != room);
                    prop_assert_eq!(set.leave(room), had);
                }
            }
            let got: Vec<&str> = set.iter().map(|r| r.as_str()).collect();
            prop_assert_eq!(&got, &model);
            prop_assert_eq!(set.len(), model.len());
            prop_assert_eq!(set.first().map(|r| r.as_str()), model.first().copied());
            for name in ROOM_NAMES {
                prop_assert_eq!(set.contains(name), model.contains(&name));
            }
        }
    }
}
