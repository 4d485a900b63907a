//! embassy-time ↔ core time.

use roomwire_core::{Duration, Instant};

/// Now, as the core's instant (microseconds since embassy-time's epoch).
pub(crate) fn now() -> Instant {
    Instant::from_micros(embassy_time::Instant::now().as_micros())
}

/// A core instant as an embassy-time instant.
pub(crate) fn to_embassy(at: Instant) -> embassy_time::Instant {
    embassy_time::Instant::from_micros(at.as_micros())
}

/// A core duration as an embassy-time duration.
pub(crate) fn duration(d: Duration) -> embassy_time::Duration {
    embassy_time::Duration::from_micros(d.as_micros())
}
