//! Time as an input.
//!
//! The core never reads a clock. Adapters convert their own clock
//! (`tokio::time::Instant`, `embassy_time::Instant`) into these microsecond
//! counts and pass them to every call that can start or check a deadline.
//! The only requirement is monotonicity: `now` never goes backwards for one
//! connection.

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
        Duration(self.0.saturating_sub(earlier.0))
    }
}

/// A span of time, in microseconds.
///
/// ```
/// use roomwire_core::Duration;
/// assert_eq!(Duration::from_secs(30).as_millis(), 30_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(u64);

impl Duration {
    /// No time at all.
    pub const ZERO: Self = Self(0);

    /// A duration of `micros` microseconds.
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }

    /// A duration of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis.saturating_mul(1_000))
    }

    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1_000_000))
    }

    /// Whole microseconds.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Whole milliseconds, rounded down.
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        Instant(self.0.saturating_add(rhs.0))
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
        Self(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
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
        core::time::Duration::from_micros(d.0)
    }
}

impl Add for Duration {
    type Output = Duration;
    fn add(self, rhs: Duration) -> Duration {
        Duration(self.0.saturating_add(rhs.0))
    }
}
