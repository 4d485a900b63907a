//! Reconnection delays: exponential backoff with jitter.

use std::time::Duration;

/// When to try again after a connection attempt failed or a connection was
/// lost: exponential backoff with jitter, forever by default.
///
/// The `n`-th consecutive failure (counting from 0) waits
/// [`delay(n, r)`](Self::delay) with `r` drawn uniformly from `[0, 1)`:
/// `min(max, initial × multiplierⁿ)`, of which a random fraction of up to
/// `jitter` is taken off, so that many clients dropped at once by a server
/// restart do not all come back in the same instant.
///
/// Alepha's browser client retries at a fixed 3 s interval, at most 10
/// times; this is the same idea with growth, jitter and no limit.
///
/// ```
/// use std::time::Duration;
/// use roomwire_tokio::client::Backoff;
///
/// let backoff = Backoff { jitter: 0.0, ..Backoff::default() };
/// assert_eq!(backoff.delay(0, 0.7), Duration::from_millis(500));
/// assert_eq!(backoff.delay(1, 0.7), Duration::from_secs(1));
/// assert_eq!(backoff.delay(30, 0.7), Duration::from_secs(30)); // capped at `max`
///
/// let jittered = Backoff::default(); // jitter 0.5: between half and all of the delay
/// assert_eq!(jittered.delay(1, 0.0), Duration::from_secs(1));
/// assert_eq!(jittered.delay(1, 1.0), Duration::from_millis(500));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The delay after the first failure (default 500 ms).
    pub initial: Duration,
    /// The longest delay (default 30 s).
    pub max: Duration,
    /// How much the delay grows after each further failure (default 2;
    /// values below 1 count as 1).
    pub multiplier: f64,
    /// The largest fraction of each delay taken off at random, from 0 (no
    /// jitter) to 1 ("full jitter", anywhere between 0 and the delay).
    /// Default 0.5.
    pub jitter: f64,
    /// How many times in a row to try again after a failure before giving
    /// up; `None` (the default) retries forever. After giving up, the
    /// client is [`Closed`](super::ConnectionState::Closed) with the last
    /// error.
    pub max_retries: Option<u32>,
    /// How long a connection must stay open for the next failure to count
    /// as the first again (default 10 s). A server that accepts
    /// connections and drops them at once is thus retried with growing
    /// delays, not at the initial pace forever.
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.5,
            max_retries: None,
            reset_after: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The delay before retrying after the `failures`-th consecutive failure
    /// (0 for the first), with `random` the jitter draw in `[0, 1]` (values
    /// outside are clamped). A pure function: the client calls it with a
    /// draw from the operating system's random number generator.
    pub fn delay(&self, failures: u32, random: f64) -> Duration {
        let max = self.max.as_secs_f64();
        let multiplier = if self.multiplier.is_finite() { self.multiplier.max(1.0) } else { 1.0 };
        // Past 1024 steps any multiplier > 1 has long reached `max`.
        let growth = multiplier.powi(i32::try_from(failures.min(1024)).unwrap_or(1024));
        let base = (self.initial.as_secs_f64() * growth).min(max);
        let jitter = if self.jitter.is_nan() { 0.0 } else { self.jitter.clamp(0.0, 1.0) };
        let random = if random.is_nan() { 0.0 } else { random.clamp(0.0, 1.0) };
        let seconds = base * (1.0 - jitter * random);
        Duration::try_from_secs_f64(seconds).unwrap_or(self.max)
    }

    /// Whether to give up after `failures` consecutive failures.
    pub(crate) fn gives_up_after(&self, failures: u32) -> bool {
        self.max_retries.is_some_and(|max| failures > max)
    }
}

/// A uniform draw from `[0, 1)` from the operating system's generator (0.5
/// if it fails: the jitter is then only lost, nothing else).
pub(crate) fn random_unit() -> f64 {
    match getrandom::u64() {
        // 53 random bits: every value is an exact f64 below 1.
        Ok(bits) => (bits >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_up_to_max() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            multiplier: 3.0,
            jitter: 0.0,
            ..Backoff::default()
        };
        let delays: Vec<_> = (0..6).map(|n| b.delay(n, 0.9)).collect();
        assert_eq!(
            delays,
            [100, 300, 900, 2700, 5000, 5000].map(Duration::from_millis),
            "each failure multiplies the delay until the cap"
        );
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(b.delay(u32::MAX, 0.0), Duration::from_secs(5));
    }

    #[test]
    fn jitter_takes_off_at_most_its_fraction() {
        let b = Backoff { initial: Duration::from_secs(1), jitter: 0.25, ..Backoff::default() };
        assert_eq!(b.delay(0, 0.0), Duration::from_secs(1));
        assert_eq!(b.delay(0, 1.0), Duration::from_millis(750));
        assert_eq!(b.delay(0, 0.5), Duration::from_millis(875));
        let full = Backoff { jitter: 1.0, ..b };
        assert_eq!(full.delay(0, 1.0), Duration::ZERO);
        // Out-of-range inputs are clamped, never a panic.
        let odd = Backoff { jitter: 7.0, multiplier: f64::NAN, ..b };
        assert_eq!(odd.delay(3, -2.0), Duration::from_secs(1));
        assert_eq!(odd.delay(3, f64::NAN), Duration::from_secs(1));
        let shrinking = Backoff { multiplier: 0.1, jitter: 0.0, ..b };
        assert_eq!(shrinking.delay(4, 0.0), Duration::from_secs(1));
    }

    #[test]
    fn jittered_delays_stay_in_range_and_vary() {
        let b = Backoff::default();
        let draws: Vec<_> = (0..64).map(|_| b.delay(2, random_unit())).collect();
        for d in &draws {
            assert!(*d >= Duration::from_secs(1) && *d <= Duration::from_secs(2), "{d:?}");
        }
        assert!(draws.iter().any(|d| *d != draws[0]), "the operating system generator varies");
    }

    #[test]
    fn unlimited_by_default() {
        assert!(!Backoff::default().gives_up_after(u32::MAX));
        let b = Backoff { max_retries: Some(2), ..Backoff::default() };
        assert!(!b.gives_up_after(2));
        assert!(b.gives_up_after(3));
        assert!(Backoff { max_retries: Some(0), ..b }.gives_up_after(1));
    }
}
