//! Targeting: who an emit or a reply reaches, and with which room label.
//!
//! Alepha's `emit` names rooms, users and connections, minus excluded
//! connections and users; naming none of them means the whole channel.
//! `reply` is an emit to the sender's room (or another one) that may also
//! exclude the sender. This module resolves such a [`Target`] into
//! deliveries `(member, label)` so that adapters only move bytes:
//!
//! * each recipient is reached once, even when it is in several targeted
//!   rooms or also named as a user or a connection;
//! * a recipient reached through a room is labelled with the **first**
//!   targeted room it is in (in the order the target names them); one reached
//!   only as a user, a connection or channel-wide is unlabelled;
//! * deliveries come grouped by label, room by room, so a frame is encoded
//!   once per (wire format, label) and shared, never once per recipient
//!   (see [`FrameKey`]).
//!
//! Users are the adapter's business (who is logged in as what); it answers
//! through [`Directory`]. Deduplication needs a set of members already
//! reached: [`SeenSet`], with a fixed bitset for small servers
//! ([`SeenBits`]) and a growable one behind `alloc` (`SeenVec`).

use crate::room::{MemberId, RoomTable};
use crate::wire::WireFormat;

/// Who a message reaches (Alepha's `EmitOptions`, minus the message).
///
/// Names are anything that is a `str`: `&str` by default, or the `String`s
/// an application already holds, with no list to build (`R` for rooms, `U`
/// for users).
///
/// ```
/// use roomwire_core::target::Target;
/// use roomwire_core::room::MemberId;
/// // emit({ roomIds: ["a", "b"], exceptConnectionIds: [ws7] })
/// let t: Target = Target { rooms: &["a", "b"], except_connections: &[MemberId(7)], ..Target::default() };
/// assert!(!t.is_channel_wide());
/// assert!(Target::<&str>::default().is_channel_wide());
/// let owned = [String::from("a")];
/// let t: Target<String, String> = Target { rooms: &owned, ..Target::default() };
/// # let _ = t;
/// ```
#[derive(Debug, PartialEq, Eq)]
pub struct Target<'a, R = &'a str, U = &'a str> {
    /// Rooms whose members are reached, in label priority order.
    pub rooms: &'a [R],
    /// Users whose connections are reached.
    pub users: &'a [U],
    /// Connections reached directly.
    pub connections: &'a [MemberId],
    /// Connections never reached.
    pub except_connections: &'a [MemberId],
    /// Users whose connections are never reached.
    pub except_users: &'a [U],
    /// One more excluded connection: the sender of a `reply` with
    /// `exceptSelf` (kept apart so a reply needs no buffer to join lists).
    pub except_connection: Option<MemberId>,
}

impl<R, U> Default for Target<'_, R, U> {
    fn default() -> Self {
        Target {
            rooms: &[],
            users: &[],
            connections: &[],
            except_connections: &[],
            except_users: &[],
            except_connection: None,
        }
    }
}

impl<R, U> Clone for Target<'_, R, U> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R, U> Copy for Target<'_, R, U> {}

impl<R, U> Target<'_, R, U> {
    /// Whether no room, user or connection is named: the whole channel.
    pub fn is_channel_wide(&self) -> bool {
        self.rooms.is_empty() && self.users.is_empty() && self.connections.is_empty()
    }
}

impl<'a> Target<'a> {
    /// The target of a `reply` from `sender`, whose message was handled in
    /// `sender_room`: `room` if given, else `sender_room`; with `except_self`
    /// the sender is excluded.
    ///
    /// `rooms` is storage for the one-room list (a reply targets exactly
    /// one room).
    ///
    /// ```
    /// use roomwire_core::target::Target;
    /// use roomwire_core::room::MemberId;
    /// let mut one = [""];
    /// let t = Target::reply(&mut one, MemberId(1), "lobby", None, true);
    /// assert_eq!(t.rooms, ["lobby"]);
    /// assert_eq!(t.except_connection, Some(MemberId(1)));
    /// ```
    pub fn reply(
        rooms: &'a mut [&'a str; 1],
        sender: MemberId,
        sender_room: &'a str,
        room: Option<&'a str>,
        except_self: bool,
    ) -> Self {
        let [slot] = rooms;
        *slot = room.unwrap_or(sender_room);
        Target {
            rooms: core::slice::from_ref(slot),
            except_connection: if except_self { Some(sender) } else { None },
            ..Target::default()
        }
    }
}

/// Who is in a room: all [`resolve`] needs of a room table.
pub trait Members {
    /// The members of `room` (empty if there is no such room).
    fn members(&self, room: &str) -> &[MemberId];
}

impl<T: RoomTable + ?Sized> Members for T {
    fn members(&self, room: &str) -> &[MemberId] {
        RoomTable::members(self, room)
    }
}

/// What the adapter knows beyond room membership: users and the set of
/// live connections on the channel.
pub trait Directory {
    /// The user a connection is authenticated as, if any.
    fn user_of(&self, member: MemberId) -> Option<&str>;
    /// Calls `f` with each live connection of `user` on this channel.
    fn for_each_connection_of_user(&self, user: &str, f: impl FnMut(MemberId));
    /// Calls `f` with every live connection on this channel.
    fn for_each_connection(&self, f: impl FnMut(MemberId));
    /// Whether `member` is a live connection on this channel.
    fn contains(&self, member: MemberId) -> bool;
}

/// Members already reached by one resolution.
pub trait SeenSet {
    /// Forget everything (called at the start of each resolution).
    fn clear(&mut self);
    /// Record `member`; false if it was already there. A set that cannot
    /// hold `member` must return true (deliver rather than lose a message);
    /// fixed implementations size themselves to the member ids they hand out.
    fn insert(&mut self, member: MemberId) -> bool;
}

/// A fixed bitset over member ids `0..32*W`, for servers with a fixed
/// number of connection slots.
///
/// ```
/// use roomwire_core::target::{SeenBits, SeenSet};
/// use roomwire_core::room::MemberId;
/// let mut seen = SeenBits::<1>::new();
/// assert!(seen.insert(MemberId(3)));
/// assert!(!seen.insert(MemberId(3)));
/// ```
#[derive(Debug, Clone)]
pub struct SeenBits<const W: usize> {
    words: [u32; W],
}

impl<const W: usize> SeenBits<W> {
    /// An empty set.
    pub const fn new() -> Self {
        Self { words: [0; W] }
    }
}

impl<const W: usize> Default for SeenBits<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const W: usize> SeenSet for SeenBits<W> {
    fn clear(&mut self) {
        self.words = [0; W];
    }

    fn insert(&mut self, member: MemberId) -> bool {
        let index = (member.0 / 32) as usize;
        let bit = 1u32 << (member.0 % 32);
        match self.words.get_mut(index) {
            Some(word) => {
                let fresh = *word & bit == 0;
                *word |= bit;
                fresh
            }
            None => true,
        }
    }
}

/// A growable set for big servers (feature `alloc`): a generation stamp per
/// member id, so clearing costs nothing and a resolution touches only the
/// members it reaches.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, Default)]
pub struct SeenVec {
    stamps: alloc::vec::Vec<u32>,
    generation: u32,
}

#[cfg(feature = "alloc")]
impl SeenSet for SeenVec {
    fn clear(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            // Wrapped: old stamps could collide with the new generation.
            self.stamps.iter_mut().for_each(|s| *s = 0);
            self.generation = 1;
        }
    }

    fn insert(&mut self, member: MemberId) -> bool {
        let index = member.0 as usize;
        if index >= self.stamps.len() {
            self.stamps.resize(index + 1, 0);
        }
        match self.stamps.get_mut(index) {
            Some(stamp) if *stamp == self.generation => false,
            Some(stamp) => {
                *stamp = self.generation;
                true
            }
            None => true,
        }
    }
}

/// How deliveries of one resolution are grouped for encoding: frames are
/// identical for every recipient with the same format and label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameKey<'a> {
    /// The recipient's wire format.
    pub format: WireFormat,
    /// The room label (`__alephaRoom` on the Alepha wire, the push room on
    /// the roomwire wire), if the recipient was reached through a room.
    pub label: Option<&'a str>,
}

/// Resolve `target` and call `deliver(member, label)` once per recipient.
/// Returns the number of recipients.
///
/// Work is bounded by the sizes of the named rooms, users and connections
/// (or of the channel, when channel-wide), never by anything a client sends.
///
/// ```
/// use roomwire_core::room::{FixedRoomTable, MemberId, RoomId, RoomTable};
/// use roomwire_core::target::{resolve, Directory, SeenBits, Target};
///
/// struct NoUsers;
/// impl Directory for NoUsers {
///     fn user_of(&self, _: MemberId) -> Option<&str> { None }
///     fn for_each_connection_of_user(&self, _: &str, _: impl FnMut(MemberId)) {}
///     fn for_each_connection(&self, mut f: impl FnMut(MemberId)) { (0..3).for_each(|i| f(MemberId(i))) }
///     fn contains(&self, m: MemberId) -> bool { m.0 < 3 }
/// }
///
/// let mut table = FixedRoomTable::<4, 4, 4, 4>::new();
/// for (m, r) in [(0, "a"), (1, "a"), (1, "b"), (2, "b")] {
///     table.join(MemberId(m), &RoomId::new(r).unwrap()).unwrap();
/// }
/// let mut got = Vec::new();
/// let target: Target = Target { rooms: &["b", "a"], except_connection: Some(MemberId(2)), ..Target::default() };
/// resolve(&target, &table, &NoUsers, &mut SeenBits::<1>::new(), |m, label| got.push((m.0, label)));
/// // Member 1 is in both rooms: once, labelled with the first targeted room.
/// assert_eq!(got, [(1, Some("b")), (0, Some("a"))]);
/// ```
pub fn resolve<'t, R: AsRef<str>, U: AsRef<str>, T: Members + ?Sized, D: Directory>(
    target: &Target<'t, R, U>,
    table: &T,
    directory: &D,
    seen: &mut impl SeenSet,
    mut deliver: impl FnMut(MemberId, Option<&'t str>),
) -> usize {
    seen.clear();
    let excluded = |member: MemberId| {
        target.except_connection == Some(member)
            || target.except_connections.contains(&member)
            || (!target.except_users.is_empty()
                && directory.user_of(member).is_some_and(|user| target.except_users.iter().any(|u| u.as_ref() == user)))
    };
    let mut count = 0;
    let mut reach = |member: MemberId, label: Option<&'t str>| {
        if !excluded(member) && seen.insert(member) {
            deliver(member, label);
            count += 1;
        }
    };
    if target.is_channel_wide() {
        directory.for_each_connection(|member| reach(member, None));
    } else {
        for room in target.rooms {
            let room = room.as_ref();
            for &member in table.members(room) {
                reach(member, Some(room));
            }
        }
        for user in target.users {
            directory.for_each_connection_of_user(user.as_ref(), |member| reach(member, None));
        }
        for &member in target.connections {
            if directory.contains(member) {
                reach(member, None);
            }
        }
    }
    count
}
