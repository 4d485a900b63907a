//! Time as an input.
//!
//! The core never reads a clock. Adapters convert their own clock
//! (`tokio::time::Instant`, `embassy_time::Instant`) into these microsecond
//! counts and pass them to every call that can start or check a deadline.
//! The only requirement is monotonicity: `now` never goes backwards for one
//! connection.

use core::cmp::Ordering;
use core::fmt;
use core::num::NonZeroU64;
use core::ops::{Add, Sub};

/// A point in time, in microseconds since an origin the adapter chooses.
///
/// ```
/// use roomwire_core::{Duration, Instant};
/// let t = Instant::from_millis(1_000) + Duration::from_secs(2);
/// assert_eq!(t.as_micros(), 3_000_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The origin.
    pub const ZERO: Self = Self(0);

    /// An instant `micros` microseconds after the origin.
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }

    /// An instant `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis.saturating_mul(1_000))
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub const fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

/// A span of time, in microseconds: up to `u64::MAX - 1` of them (about
/// 584 000 years; longer spans saturate there).
///
/// An `Option<Duration>` takes 8 bytes, as a `Duration` does: a timeout
/// that may be off costs no more than one that may not (every connection's
/// [`Config`](crate::Config) holds several).
///
/// ```
/// use roomwire_core::Duration;
/// assert_eq!(Duration::from_secs(30).as_millis(), 30_000);
/// assert_eq!(Duration::from_micros(u64::MAX).as_micros(), u64::MAX - 1);
/// assert_eq!(size_of::<Option<Duration>>(), 8);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Duration(
    // The count of microseconds, bitwise inverted: never zero, which is
    // the niche `Option` uses.
    NonZeroU64,
);

/// The longest span, inverted: where every longer one saturates, and what
/// [`Instant`] `+` reads as forever.
const LONGEST: NonZeroU64 = NonZeroU64::MIN;

impl Duration {
    /// No time at all.
    pub const ZERO: Self = Self::from_micros(0);

    /// A duration of `micros` microseconds.
    pub const fn from_micros(micros: u64) -> Self {
        match NonZeroU64::new(!micros) {
            Some(inverted) => Self(inverted),
            // `u64::MAX` microseconds: the longest span there is, one less.
            None => Self(LONGEST),
        }
    }

    /// A duration of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Self::from_micros(millis.saturating_mul(1_000))
    }

    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self::from_micros(secs.saturating_mul(1_000_000))
    }

    /// Whole microseconds.
    pub const fn as_micros(self) -> u64 {
        !self.0.get()
    }

    /// Whole milliseconds, rounded down.
    pub const fn as_millis(self) -> u64 {
        self.as_micros() / 1_000
    }
}

impl Default for Duration {
    fn default() -> Self {
        Self::ZERO
    }
}

impl PartialOrd for Duration {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Duration {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_micros().cmp(&other.as_micros())
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Duration").field(&self.as_micros()).finish()
    }
}

/// The instant `rhs` after `self`, saturating at the end of time. The
/// longest span (`u64::MAX - 1` microseconds, where every longer one
/// saturates) stands for forever: added to any instant, even the origin, it
/// gives the end of time, the deadline that never comes.
///
/// ```
/// use roomwire_core::{Duration, Instant};
/// let forever = Duration::from_micros(u64::MAX);
/// assert_eq!(Instant::ZERO + forever, Instant::from_micros(u64::MAX));
/// assert_eq!(Instant::ZERO + Duration::from_micros(u64::MAX - 2), Instant::from_micros(u64::MAX - 2));
/// ```
impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        if rhs.0 == LONGEST {
            return Instant(u64::MAX);
        }
        Instant(self.0.saturating_add(rhs.as_micros()))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

/// Whole microseconds of a standard duration (saturating at `u64::MAX`).
///
/// ```
/// let d: roomwire_core::Duration = core::time::Duration::from_millis(1500).into();
/// assert_eq!(d.as_millis(), 1500);
/// ```
impl From<core::time::Duration> for Duration {
    fn from(d: core::time::Duration) -> Self {
        Self::from_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }
}

/// The same span as a standard duration.
///
/// ```
/// let d: core::time::Duration = roomwire_core::Duration::from_millis(20).into();
/// assert_eq!(d, core::time::Duration::from_millis(20));
/// ```
impl From<Duration> for core::time::Duration {
    fn from(d: Duration) -> Self {
        core::time::Duration::from_micros(d.as_micros())
    }
}

impl Add for Duration {
    type Output = Duration;
    fn add(self, rhs: Duration) -> Duration {
        Duration::from_micros(self.as_micros().saturating_add(rhs.as_micros()))
    }
}
