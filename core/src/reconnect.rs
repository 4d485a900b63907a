//! When a client connects again, and when it stops trying: one policy for
//! every adapter.
//!
//! A [`Reconnector`] is told when a connection opened and how each one
//! ended ([`Ending`]), with a random draw the adapter supplies, and answers
//! with a [`Reconnect`] decision: at once, after a delay, or never again.
//! It reads no clock and draws no random number itself, so the tokio and
//! the embassy clients make exactly the same decisions.
//!
//! ## Which endings are final
//!
//! Some answers from a server say that trying again cannot help, and a
//! client that loops on them only loads the server (and, with thousands of
//! devices, floods it). These stop the client, and the ending reaches the
//! application ([`Ending::is_final`]):
//!
//! | ending | why it is final |
//! |---|---|
//! | close 1008 (policy: `Room full`, `Too many rooms for this connection`, `Invalid room id`, `Max connections per user exceeded`, refused authorization) | the server refuses this client as it is |
//! | close 1003 (unsupported data) | the server cannot take what this client sends |
//! | close 4000–4999 | the application closed this connection on purpose (a kick) |
//! | upgrade refused with 4xx, except 408 and 429 | wrong path, refused credentials, refused origin, headers too large: the same request gets the same answer |
//!
//! Everything else (a connection refused or reset, a timeout, a close
//! 1000, 1001, 1011, 1012, 1013, a 5xx, 408 or 429 answer, a server that
//! broke the protocol) is retried after an exponential backoff with
//! jitter, until [`ReconnectPolicy::max_retries`] failures in a row.
//!
//! ```
//! use roomwire_core::reconnect::{Ending, Reconnect, ReconnectPolicy, Reconnector};
//! use roomwire_core::{CloseCode, Duration, Instant};
//!
//! let policy = ReconnectPolicy { jitter_percent: 0, ..ReconnectPolicy::default() };
//! let mut reconnector = Reconnector::new(policy);
//! let t0 = Instant::ZERO;
//!
//! // The server is down: 500 ms, then 1 s, then 2 s...
//! assert_eq!(reconnector.ended(t0, Ending::Failed, 0), Reconnect::After(Duration::from_millis(500)));
//! assert_eq!(reconnector.ended(t0, Ending::Failed, 0), Reconnect::After(Duration::from_secs(1)));
//!
//! // A connection that stayed up long enough starts the count again.
//! reconnector.opened(t0);
//! let later = t0 + Duration::from_secs(60);
//! let ending = Ending::Closed(Some(CloseCode::Away));
//! assert_eq!(reconnector.ended(later, ending, 0), Reconnect::After(Duration::from_millis(500)));
//!
//! // A full room is final.
//! let full = Ending::Closed(Some(CloseCode::Policy));
//! assert!(matches!(reconnector.ended(later, full, 0), Reconnect::Stop(_)));
//! ```

use crate::close::CloseCode;
use crate::time::{Duration, Instant};

/// How a connection (or an attempt at one) ended, as a [`Reconnector`]
/// needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ending {
    /// No answer from the server: the TCP connection or TLS failed, timed
    /// out, or was reset, or the handshake response never came.
    Failed,
    /// The server answered the upgrade request with this HTTP status
    /// instead of 101.
    Refused(u16),
    /// The server closed the connection with this close code (`None`: a
    /// close frame without a code, or the stream ended without one).
    Closed(Option<CloseCode>),
    /// The client closed the connection because the server broke the
    /// protocol or stopped answering.
    Broken,
    /// The client closed the connection to open another at once: the
    /// rooms changed on the Alepha wire, or the server turned out to speak
    /// only the Alepha wire. Not a failure.
    Replaced,
}

impl Ending {
    /// Whether trying again cannot help: see the [module docs](self).
    ///
    /// ```
    /// use roomwire_core::reconnect::Ending;
    /// use roomwire_core::CloseCode;
    /// assert!(Ending::Closed(Some(CloseCode::Policy)).is_final());
    /// assert!(Ending::Closed(Some(CloseCode::Unknown(4000))).is_final());
    /// assert!(Ending::Refused(404).is_final());
    /// assert!(!Ending::Refused(503).is_final());
    /// assert!(!Ending::Closed(Some(CloseCode::Restart)).is_final());
    /// assert!(!Ending::Failed.is_final());
    /// ```
    pub fn is_final(self) -> bool {
        match self {
            Ending::Closed(Some(code)) => {
                matches!(code, CloseCode::Policy | CloseCode::Unsupported) || (4000..=4999).contains(&u16::from(code))
            }
            Ending::Refused(status) => (400..=499).contains(&status) && status != 408 && status != 429,
            Ending::Failed | Ending::Closed(None) | Ending::Broken | Ending::Replaced => false,
        }
    }
}

/// Why a [`Reconnector`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stop {
    /// The ending was final ([`Ending::is_final`]).
    Final,
    /// [`ReconnectPolicy::max_retries`] failures in a row.
    RetriesExhausted,
}

/// A [`Reconnector`]'s decision after a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reconnect {
    /// Connect again at once ([`Ending::Replaced`]).
    Now,
    /// Connect again after this delay.
    After(Duration),
    /// Do not connect again; report the ending to the application.
    Stop(Stop),
}

/// When to try again after a failure: exponential backoff with jitter,
/// forever by default.
///
/// The `n`-th failure in a row (counting from 0) waits
/// [`delay(n, r)`](Self::delay): `base = min(max, initial × multiplierⁿ)`,
/// less a random part of up to `jitter_percent` % of it. By default the
/// jitter spans the whole window (`jitter_percent: 100`, "full jitter"):
/// clients dropped together by a server restart come back spread evenly
/// over `[0, base]`, not in the same instant or in one half of it.
///
/// Alepha's browser client retries every 3 s, at most 10 times; this
/// grows, spreads and does not give up unless told to.
///
/// ```
/// use roomwire_core::reconnect::ReconnectPolicy;
/// use roomwire_core::Duration;
///
/// let policy = ReconnectPolicy { jitter_percent: 0, ..ReconnectPolicy::default() };
/// assert_eq!(policy.delay(0, 7), Duration::from_millis(500));
/// assert_eq!(policy.delay(1, 7), Duration::from_secs(1));
/// assert_eq!(policy.delay(30, 7), Duration::from_secs(30)); // capped at `max`
///
/// let jittered = ReconnectPolicy::default(); // anywhere in [0, base]
/// assert_eq!(jittered.delay(1, 0), Duration::from_secs(1));
/// assert_eq!(jittered.delay(1, u32::MAX / 2 + 1), Duration::from_millis(500));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReconnectPolicy {
    /// The delay after the first failure (default 500 ms).
    pub initial: Duration,
    /// The longest delay (default 30 s).
    pub max: Duration,
    /// How much the delay grows after each further failure (default 2; 0
    /// counts as 1).
    pub multiplier: u32,
    /// The largest part of each delay taken off at random, in percent: 0
    /// for none, 100 (the default) for anywhere between 0 and the delay.
    /// Values above 100 count as 100.
    pub jitter_percent: u8,
    /// How many failures in a row to retry before giving up; `None` (the
    /// default) retries forever.
    pub max_retries: Option<u32>,
    /// How long a connection must stay open for the next failure to count
    /// as the first again (default 10 s). A server that accepts
    /// connections and drops them at once is retried with growing delays,
    /// not at the initial pace forever.
    pub reset_after: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            multiplier: 2,
            jitter_percent: 100,
            max_retries: None,
            reset_after: Duration::from_secs(10),
        }
    }
}

impl ReconnectPolicy {
    /// The delay after the `failures`-th failure in a row (0 for the
    /// first), with `random` a uniform draw over all of `u32`. A pure
    /// function.
    pub fn delay(&self, failures: u32, random: u32) -> Duration {
        let max = self.max.as_micros();
        let multiplier = u64::from(self.multiplier.max(1));
        let mut base = self.initial.as_micros().min(max);
        for _ in 0..failures {
            if base >= max || multiplier == 1 {
                break;
            }
            base = base.saturating_mul(multiplier).min(max);
        }
        // The part taken off: base × f / 2³², with f = jitter × random / 100
        // (at most 2³²). Split base in halves so that no product overflows
        // 64 bits (and no 128-bit division is linked into firmware).
        let f = u64::from(self.jitter_percent.min(100)) * u64::from(random) / 100;
        let off = (base >> 32) * f + (((base & 0xFFFF_FFFF) * f) >> 32);
        Duration::from_micros(base.saturating_sub(off))
    }

    /// Whether to stop after `failures` failures in a row.
    pub fn exhausted(&self, failures: u32) -> bool {
        self.max_retries.is_some_and(|max| failures > max)
    }
}

/// The reconnect state of one client: counts failures in a row and decides
/// after each ending (see the [module docs](self)). Pure: the adapter
/// passes the time and a random draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnector {
    policy: ReconnectPolicy,
    failures: u32,
    opened_at: Option<Instant>,
}

impl Reconnector {
    /// A reconnector with no failure yet.
    pub const fn new(policy: ReconnectPolicy) -> Self {
        Self { policy, failures: 0, opened_at: None }
    }

    /// The policy.
    pub fn policy(&self) -> &ReconnectPolicy {
        &self.policy
    }

    /// Failures in a row so far (0 after a connection that lasted
    /// [`ReconnectPolicy::reset_after`]).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forget the failures: the application asked to connect again (after
    /// a [`Reconnect::Stop`], or to skip a wait).
    pub fn restart(&mut self) {
        self.failures = 0;
        self.opened_at = None;
    }

    /// After a [`Reconnect::Stop`] that the application chose to ignore:
    /// the failures are forgotten and the next attempt waits the policy's
    /// longest delay, so a device that keeps trying a full room does so at
    /// the slowest pace.
    pub fn resume_after_stop(&mut self) -> Duration {
        self.restart();
        self.policy.max
    }

    /// A connection opened at `now`.
    pub fn opened(&mut self, now: Instant) {
        self.opened_at = Some(now);
    }

    /// The connection (or the attempt) ended at `now` this way; `random` is
    /// a uniform draw over all of `u32` for the jitter. Says when to
    /// connect again, if ever.
    pub fn ended(&mut self, now: Instant, ending: Ending, random: u32) -> Reconnect {
        if let Some(opened) = self.opened_at.take()
            && now.saturating_duration_since(opened) >= self.policy.reset_after
        {
            self.failures = 0;
        }
        if ending == Ending::Replaced {
            return Reconnect::Now;
        }
        if ending.is_final() {
            return Reconnect::Stop(Stop::Final);
        }
        self.failures = self.failures.saturating_add(1);
        if self.policy.exhausted(self.failures) {
            return Reconnect::Stop(Stop::RetriesExhausted);
        }
        Reconnect::After(self.policy.delay(self.failures - 1, random))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn grows_exponentially_up_to_max() {
        let p =
            ReconnectPolicy { initial: ms(100), max: ms(5000), multiplier: 3, jitter_percent: 0, ..Default::default() };
        let delays: std::vec::Vec<_> = (0..6).map(|n| p.delay(n, u32::MAX)).collect();
        assert_eq!(delays, [100, 300, 900, 2700, 5000, 5000].map(ms));
        assert_eq!(p.delay(u32::MAX, 0), ms(5000));
        let constant = ReconnectPolicy { multiplier: 0, ..p };
        assert_eq!(constant.delay(9, 0), ms(100));
        let tiny_max = ReconnectPolicy { max: ms(10), ..p };
        assert_eq!(tiny_max.delay(0, 0), ms(10), "initial above max is capped");
    }

    #[test]
    fn jitter_spans_its_fraction_of_the_window() {
        let p = ReconnectPolicy { initial: ms(1000), jitter_percent: 25, ..Default::default() };
        assert_eq!(p.delay(0, 0), ms(1000));
        assert_eq!(p.delay(0, 1 << 31), ms(875));
        assert!(p.delay(0, u32::MAX) > ms(750) && p.delay(0, u32::MAX) < ms(751));
        let full = ReconnectPolicy { jitter_percent: 255, ..p };
        assert!(full.delay(0, u32::MAX) < ms(1), "above 100 % counts as 100 %");
        // Every draw lands in the window; evenly spread draws spread evenly.
        let p = ReconnectPolicy::default();
        let draws: std::vec::Vec<_> = (0..=8u64).map(|i| p.delay(2, (i * (u64::from(u32::MAX) / 8)) as u32)).collect();
        for pair in draws.windows(2) {
            assert!(pair[0] >= pair[1]);
        }
        assert_eq!(draws[0], ms(2000));
        assert!(draws[8] < ms(1));
        assert!(draws[4] > ms(999) && draws[4] < ms(1001));
    }

    #[test]
    fn final_endings_stop_others_retry() {
        for code in [1008u16, 1003, 4000, 4003, 4999] {
            assert!(Ending::Closed(Some(CloseCode::from(code))).is_final(), "{code}");
        }
        for code in [1000u16, 1001, 1002, 1006, 1009, 1011, 1012, 1013, 3000] {
            assert!(!Ending::Closed(Some(CloseCode::from(code))).is_final(), "{code}");
        }
        for status in [400u16, 401, 403, 404, 426, 431] {
            assert!(Ending::Refused(status).is_final(), "{status}");
        }
        for status in [408u16, 429, 500, 502, 503, 301] {
            assert!(!Ending::Refused(status).is_final(), "{status}");
        }
        assert!(!Ending::Broken.is_final());
        assert!(!Ending::Closed(None).is_final());
    }

    #[test]
    fn counts_failures_and_resets_after_a_lasting_connection() {
        let policy = ReconnectPolicy { jitter_percent: 0, max_retries: Some(2), ..Default::default() };
        let mut r = Reconnector::new(policy);
        let t = Instant::from_millis(1_000);
        assert_eq!(r.ended(t, Ending::Failed, 0), Reconnect::After(ms(500)));
        assert_eq!(r.ended(t, Ending::Refused(503), 0), Reconnect::After(ms(1000)));
        // A short-lived connection does not reset the count...
        r.opened(t);
        assert_eq!(r.ended(t + ms(9_999), Ending::Closed(None), 0), Reconnect::Stop(Stop::RetriesExhausted));
        // ...a lasting one does.
        let mut r = Reconnector::new(policy);
        for _ in 0..2 {
            r.ended(t, Ending::Failed, 0);
        }
        r.opened(t);
        assert_eq!(r.ended(t + ms(10_000), Ending::Closed(None), 0), Reconnect::After(ms(500)));
        assert_eq!(r.failures(), 1);
        // Replacing a connection is no failure and waits for nothing.
        assert_eq!(r.ended(t, Ending::Replaced, 0), Reconnect::Now);
        assert_eq!(r.failures(), 1);
        assert_eq!(r.ended(t, Ending::Closed(Some(CloseCode::Policy)), 0), Reconnect::Stop(Stop::Final));
        assert_eq!(r.resume_after_stop(), policy.max);
        assert_eq!(r.failures(), 0);
        let mut forever = Reconnector::new(ReconnectPolicy::default());
        for _ in 0..10_000 {
            assert!(matches!(forever.ended(t, Ending::Failed, 12345), Reconnect::After(_)));
        }
    }
}
