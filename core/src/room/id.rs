//! Room and member identifiers.

use core::borrow::Borrow;
use core::cmp::Ordering;
use core::fmt;
use core::hash::{Hash, Hasher};
use core::ops::Deref;
use core::str::FromStr;

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
