//! One connection's own rooms.

use core::fmt;

use super::RoomId;

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
