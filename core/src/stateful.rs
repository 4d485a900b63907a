//! Stateful rooms (Alepha's `$room`): a room with state of its own, a
//! lifecycle and an optional tick loop.
//!
//! Every rule of a stateful room lives here; an adapter owns the state and
//! runs the application's callbacks in the order this module says:
//!
//! * [`handshake_room`]: the one room a connection is in (the first room of
//!   its handshake query, or the room an authorization hook chose, else
//!   `"default"`); it never joins or leaves another;
//! * [`handle_message`]: how a client message is read (`message ?? frame`
//!   on the Alepha wire, an envelope for its own room on the roomwire wire)
//!   and what a refused one is answered ([`write_rejection`]);
//! * [`Lifecycle`]: when the state is built (first join or call), when the
//!   tick loop runs (while the room has members), when the room tears down
//!   (its last member left: `on_empty`, then the state is discarded) and
//!   when a headless room is evicted ([`IDLE_TTL`]);
//! * [`Ticker`]: the beat schedule at `tick_hz`, the real elapsed time of
//!   each beat, and the beats skipped while a tick was still running.
//!
//! ```
//! use roomwire_core::stateful::{Due, Lifecycle};
//! use roomwire_core::{Duration, Instant};
//!
//! let mut life = Lifecycle::new(20); // 20 Hz: a beat every 50 ms
//! let t0 = Instant::ZERO;
//! assert!(life.needs_state());
//! life.built(t0);
//! life.joined(t0);
//! assert_eq!(life.poll_timeout(), Some(t0 + Duration::from_millis(50)));
//! let Some(Due::Beat(beat)) = life.handle_timeout(t0 + Duration::from_millis(50)) else { panic!() };
//! assert_eq!(beat.dt, Duration::from_millis(50));
//! assert_eq!(life.tick_done(t0 + Duration::from_millis(51)), 0);
//! // The last member leaves: tear down (on_empty), then discard the state.
//! assert!(life.left());
//! life.discarded();
//! assert_eq!(life.poll_timeout(), None);
//! assert!(life.is_vacant());
//! ```

use crate::alepha;
use crate::channel::Channel;
use crate::close::CloseCode;
use crate::dispatch::Refusal;
use crate::envelope::{self, ClientEnvelope, code};
use crate::error::InsufficientSize;
use crate::json;
use crate::payload::{self, MessageError};
use crate::room::RoomId;
use crate::target::FrameKey;
use crate::time::{Duration, Instant};
use crate::wire::WireFormat;

/// How long a room with state and no member (one only ever `call`ed) lives
/// after its last call: then it is disposed of, without `on_empty`
/// (Alepha's `ROOM_IDLE_TTL_MS`).
pub const IDLE_TTL: Duration = Duration::from_secs(300);

/// How long before its time a beat may be taken. A driver woken for the
/// beats of several rooms at once (its timer fires for everything due
/// within this window) takes them together rather than sleeping again for
/// each: far below what a tick loop notices, and it lets a timer serve
/// thousands of rooms with one wake-up per window.
pub const BEAT_EARLY: Duration = Duration::from_micros(250);

/// The fastest tick loop: `tick_hz` above it ticks at it.
pub const MAX_TICK_HZ: u32 = 1_000;

/// The error a connection is answered, without its message being
/// handled, while the room still holds its previous message: one it
/// stopped waiting for at the handler deadline. A connection has at most
/// one message in its room's queue, however slow the room.
pub const ROOM_BUSY: &str = "Room busy: the previous message is still waiting";

/// The error a message to a stateful room gets when the room stopped
/// taking messages before it handled this one.
pub const ROOM_CLOSED: &str = "Room closed";

/// Building the room's state or its `on_join` failed: the joining
/// connection is accepted, then closed with 1011 "Room join failed".
pub const JOIN_FAILED: Refusal = Refusal { code: CloseCode::Error, reason: "Room join failed" };

/// The application asked to put a stateful room's connection in another
/// room, or to take it out of its own: refused with 1008. Its room's task
/// holds it (Alepha's `$room`, one room per socket).
pub const ONE_ROOM_ONLY: Refusal =
    Refusal { code: CloseCode::Policy, reason: "A stateful room's connection is in its room only" };

/// The error of a `call` naming a method the room does not have, as
/// Alepha words it: `Room method '<name>' is not defined on this room.`
///
/// ```
/// let text = roomwire_core::stateful::UnknownMethod("reset").to_string();
/// assert_eq!(text, "Room method 'reset' is not defined on this room.");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownMethod<'a>(pub &'a str);

impl core::fmt::Display for UnknownMethod<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Room method '{}' is not defined on this room.", self.0)
    }
}

impl core::error::Error for UnknownMethod<'_> {}

/// The room of a stateful room's connection, whatever wire it speaks: the
/// room `room_override` names (an authorization hook's choice), else the
/// first room of the handshake query (`roomId`, then `roomIds`), else
/// `"default"`. Any other room the query names is not joined (as Alepha's
/// `$room`), but must still decode as a room id. A room other than
/// `"default"` must pass [`Channel::validate_room_id`]: refused with 1008
/// "Invalid room id".
///
/// ```
/// use roomwire_core::stateful::handshake_room;
/// # #[derive(serde::Serialize, serde::Deserialize)] pub struct M;
/// roomwire_core::channel! { /// A room.
///     pub struct Game { path: "/ws/game", in: M, out: M } }
///
/// assert_eq!(handshake_room::<Game>(Some("roomIds=b,c&roomId=a"), None)?.as_str(), "a");
/// assert_eq!(handshake_room::<Game>(None, None)?.as_str(), "default");
/// assert_eq!(handshake_room::<Game>(Some("roomId=a"), Some("z"))?.as_str(), "z");
/// # Ok::<(), roomwire_core::dispatch::Refusal>(())
/// ```
pub fn handshake_room<C: Channel>(query: Option<&str>, room_override: Option<&str>) -> Result<RoomId, Refusal> {
    const INVALID: Refusal = Refusal { code: CloseCode::Policy, reason: "Invalid room id" };
    let room = match room_override {
        Some(room) => RoomId::new(room).map_err(|_| INVALID)?,
        None => {
            // Only the first room counts; the rest of the query is read
            // only to check that it decodes.
            let mut first = None;
            let read = alepha::for_each_query_room(query, |room| {
                first.get_or_insert(room);
                Ok::<(), alepha::QueryRoomsError>(())
            });
            match (read, first) {
                (Err(_), _) => return Err(INVALID),
                (Ok(_), Some(room)) => room,
                (Ok(_), None) => RoomId::new(alepha::DEFAULT_ROOM).map_err(|_| INVALID)?,
            }
        }
    };
    if !alepha::is_room_of::<C>(&room) {
        return Err(INVALID);
    }
    Ok(room)
}

/// What to do with one client message of a stateful room.
#[derive(Debug)]
pub enum RoomInbound<'a, M> {
    /// Hand it to `on_message`.
    Message {
        /// The decoded message.
        message: M,
        /// Its payload as received (what a node sends the room's owner,
        /// which decodes it again).
        payload: &'a [u8],
    },
    /// Answer the sender alone with the `len` bytes written to `out`, as a
    /// message of kind [`WireFormat::message_kind`]; the connection stays.
    Reject {
        /// Bytes written to `out`.
        len: usize,
    },
    /// Nothing (text that is not JSON, on the Alepha wire).
    Ignored,
}

/// What a stateful room does with text that is not JSON on the Alepha
/// wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NonJson {
    /// Drop it without an answer, as Alepha does (the default).
    #[default]
    Drop,
    /// Answer `{"error":"Received non-JSON message"}` (for clients that
    /// should learn of their mistake; the connection stays).
    Refuse,
}

/// The raw payload of a stateful room's client message on the Alepha wire:
/// the frame's `message` member unless it is absent or `null`, else the
/// whole frame (Alepha's `parsed?.message ?? parsed`). The frame's
/// `roomId` is never read: the socket's room is fixed.
///
/// ```
/// use roomwire_core::stateful::alepha_payload;
/// assert_eq!(alepha_payload(br#"{"roomId":"x","message":{"by":1}}"#), Ok(&br#"{"by":1}"#[..]));
/// assert_eq!(alepha_payload(br#" {"move":"left"} "#), Ok(&br#"{"move":"left"}"#[..]));
/// assert_eq!(alepha_payload(br#"{"message":0}"#), Ok(&b"0"[..]));
/// assert_eq!(alepha_payload(br#"{"message":null,"a":1}"#), Ok(&br#"{"message":null,"a":1}"#[..]));
/// assert!(alepha_payload(b"not json").is_err());
/// ```
pub fn alepha_payload(frame: &[u8]) -> Result<&[u8], alepha::NotJson> {
    let whole = json::trim(frame);
    let Some(members) = json::object_members(frame).map_err(|_| alepha::NotJson)? else {
        // Valid JSON that is not an object: the whole of it.
        return Ok(whole);
    };
    let mut message = None;
    for (key, value) in members {
        if key.eq_str("message") {
            message = Some(value);
        }
    }
    Ok(message.filter(|value| *value != b"null").unwrap_or(whole))
}

/// Handle one whole client message of a stateful room's connection in
/// `room`, speaking `format`. `scratch` is room for unescaping JSON strings
/// on the no-`std` path; `out` receives a rejection and must hold at least
/// 256 bytes.
///
/// * Alepha wire: the payload is [`alepha_payload`]; text that is not JSON
///   is ignored, or answered with an error frame if `non_json` says so; a
///   message that fails to decode or validate is answered
///   `{"error":"<reason>"}` (Alepha's `$room` sends the validator's text
///   without a prefix).
/// * roomwire wire: a message envelope for `room`; any other envelope
///   (join, leave, another room) is answered with an error envelope
///   ([`code::ROOM_NOT_ALLOWED`], [`code::NOT_A_MEMBER`]); an invalid
///   payload with [`code::VALIDATION_FAILED`].
///
/// ```
/// use roomwire_core::stateful::{handle_message, NonJson, RoomInbound};
/// use roomwire_core::{RoomId, wire::WireFormat};
///
/// #[derive(Debug, serde::Serialize, serde::Deserialize)]
/// pub struct Inc { pub by: u32 }
/// roomwire_core::channel! { /// A counter.
///     pub struct Counter { path: "/ws/counter", in: Inc, out: Inc } }
///
/// let room = RoomId::new("r")?;
/// let mut out = [0u8; 256];
/// let RoomInbound::Message { message: inc, .. } = handle_message::<Counter>(WireFormat::Alepha, &room, NonJson::Drop, br#"{"by":2}"#, &mut [], &mut out) else { panic!() };
/// assert_eq!(inc.by, 2);
/// let RoomInbound::Reject { len } = handle_message::<Counter>(WireFormat::Alepha, &room, NonJson::Drop, br#"{"by":"x"}"#, &mut [], &mut out) else { panic!() };
/// assert!(out[..len].starts_with(br#"{"error":"invalid type"#));
/// # Ok::<(), roomwire_core::RoomIdError>(())
/// ```
pub fn handle_message<'a, C: Channel>(
    format: WireFormat,
    room: &RoomId,
    non_json: NonJson,
    data: &'a [u8],
    scratch: &'a mut [u8],
    out: &mut [u8],
) -> RoomInbound<'a, C::Out<'a>> {
    let payload = match format {
        WireFormat::Alepha => match alepha_payload(data) {
            Ok(payload) => payload,
            Err(alepha::NotJson) => match non_json {
                NonJson::Drop => return RoomInbound::Ignored,
                NonJson::Refuse => return reject(format, None, code::MALFORMED, &alepha::NotJson, out),
            },
        },
        WireFormat::Json | WireFormat::Postcard => match envelope::decode_client(format, data) {
            Ok(ClientEnvelope::Message { room: to, payload }) if to == *room => payload,
            Ok(ClientEnvelope::Message { .. }) => {
                return reject(format, None, code::NOT_A_MEMBER, "Not a member of that room", out);
            }
            Ok(ClientEnvelope::Join { reference, .. } | ClientEnvelope::Leave { reference, .. }) => {
                let text = "A stateful room's connection stays in its room";
                return reject(format, Some(reference), code::ROOM_NOT_ALLOWED, text, out);
            }
            Err(e) => return reject(format, e.reference, e.code, e.reason, out),
        },
    };
    match payload::decode_message::<C>(format, payload, scratch) {
        Ok(message) => RoomInbound::Message { message, payload },
        Err(error) => match format {
            WireFormat::Alepha => reject(format, None, code::VALIDATION_FAILED, &Reason(error), out),
            _ => reject(format, None, code::VALIDATION_FAILED, &error, out),
        },
    }
}

/// A message error's reason without its "Message validation failed: "
/// prefix.
struct Reason(MessageError);

impl core::fmt::Display for Reason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.0 {
            MessageError::Decode(e) => core::fmt::Display::fmt(e, f),
            MessageError::Invalid(reason) => f.write_str(reason),
        }
    }
}

fn reject<'a, M, E: core::fmt::Display + ?Sized>(
    format: WireFormat,
    reference: Option<u32>,
    code: u16,
    text: &E,
    out: &mut [u8],
) -> RoomInbound<'a, M> {
    let written = write_rejection(format, reference, code, text, out)
        .or_else(|_| write_rejection(format, reference, code, code::default_text(code), out));
    RoomInbound::Reject { len: written.unwrap_or(0) }
}

/// Write the frame refusing a client message: `{"error":"<text>"}` on the
/// Alepha wire, an error envelope with `code` on the roomwire wire.
///
/// ```
/// use roomwire_core::stateful::write_rejection;
/// use roomwire_core::wire::WireFormat;
/// let mut out = [0u8; 64];
/// let n = write_rejection(WireFormat::Alepha, None, 4005, "bad shape", &mut out).unwrap();
/// assert_eq!(&out[..n], br#"{"error":"bad shape"}"#);
/// ```
pub fn write_rejection<E: core::fmt::Display + ?Sized>(
    format: WireFormat,
    reference: Option<u32>,
    code: u16,
    text: &E,
    out: &mut [u8],
) -> Result<usize, InsufficientSize> {
    match format {
        WireFormat::Alepha => alepha::write_error_frame(text, out),
        _ => envelope::write_error(format, reference, code, text, out),
    }
}

/// The key of the frames a stateful room sends a connection speaking
/// `format` (see [`crate::dispatch::encode_frame`]): never labelled, on
/// either wire. A stateful room's connection is in one room, so its frames
/// need no room name; on the Alepha wire they are the bare message, as
/// Alepha's `$room` sends them; on the roomwire wire a push without a room.
/// The same frames whether the room is owned by the connection's node or
/// another (which reaches it by connection id).
///
/// ```
/// use roomwire_core::stateful::frame_key;
/// use roomwire_core::wire::WireFormat;
/// assert_eq!(frame_key(WireFormat::Alepha).label, None);
/// assert_eq!(frame_key(WireFormat::Postcard).label, None);
/// ```
pub fn frame_key(format: WireFormat) -> FrameKey<'static> {
    FrameKey { format, label: None }
}

// ---------------------------------------------------------------------------
// The beat schedule
// ---------------------------------------------------------------------------

/// One beat of the tick loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    /// The real time since the previous beat started (or since the loop
    /// started): what `on_tick` is told.
    pub dt: Duration,
    /// How long after its scheduled time the beat came (the jitter).
    pub late: Duration,
    /// Beats that fell due before this one was taken and are skipped (the
    /// driver was that far behind): their time is in `dt`.
    pub missed: u32,
}

/// The beats of a tick loop: every `period` from its start, in phase (a
/// late beat does not shift the ones after it). A beat that falls due
/// while the previous tick is still running is skipped, not queued; the
/// next tick's `dt` covers the time.
///
/// ```
/// use roomwire_core::stateful::Ticker;
/// use roomwire_core::{Duration, Instant};
/// let ms = Duration::from_millis;
/// let t0 = Instant::ZERO;
/// let mut ticker = Ticker::start(ms(50), t0);
/// assert_eq!(ticker.next_beat(), t0 + ms(50));
/// let beat = ticker.beat(t0 + ms(52)); // 2 ms late
/// assert_eq!((beat.dt, beat.late), (ms(52), ms(2)));
/// assert_eq!(ticker.next_beat(), t0 + ms(100)); // still in phase
/// // That tick ran until 170 ms: the beats at 100 and 150 are skipped.
/// assert_eq!(ticker.finished(t0 + ms(170)), 2);
/// assert_eq!(ticker.next_beat(), t0 + ms(200));
/// assert_eq!(ticker.beat(t0 + ms(200)).dt, ms(148));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticker {
    period: Duration,
    next: Instant,
    last: Instant,
}

impl Ticker {
    /// A loop beating every `period` (at least 1 µs) from `now`.
    pub fn start(period: Duration, now: Instant) -> Self {
        let period = if period.as_micros() == 0 { Duration::from_micros(1) } else { period };
        Self { period, next: now + period, last: now }
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// When the next beat falls due.
    pub fn next_beat(&self) -> Instant {
        self.next
    }

    /// Whether a beat is due at `now` (from [`BEAT_EARLY`] before its
    /// time).
    pub fn is_due(&self, now: Instant) -> bool {
        now + BEAT_EARLY >= self.next
    }

    /// Take the beat due at `now` (call when [`is_due`](Self::is_due)):
    /// its `dt` (the real time since the previous beat was taken) and
    /// lateness (0 if taken early); the schedule moves to the first beat
    /// after both `now` and this one.
    pub fn beat(&mut self, now: Instant) -> Beat {
        let late = now - self.next;
        let dt = now - self.last;
        self.last = now;
        let missed = self.skip_through(now.max(self.next)).saturating_sub(1);
        Beat { dt, late, missed }
    }

    /// The tick taken at the last beat has finished at `now`: the beats
    /// that fell due meanwhile are skipped. Returns how many (0 for a tick
    /// that finished within its period).
    pub fn finished(&mut self, now: Instant) -> u32 {
        self.skip_through(now)
    }

    /// Move `next` past `now`, in phase; returns how many beats it passed.
    fn skip_through(&mut self, now: Instant) -> u32 {
        if now < self.next {
            return 0;
        }
        let behind = (now - self.next).as_micros();
        let beats = behind / self.period.as_micros() + 1;
        self.next = self.next + Duration::from_micros(beats.saturating_mul(self.period.as_micros()));
        u32::try_from(beats).unwrap_or(u32::MAX)
    }
}

// ---------------------------------------------------------------------------
// The lifecycle
// ---------------------------------------------------------------------------

/// What a room's timer calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Run `on_tick` with this beat (then call [`Lifecycle::tick_done`]).
    Beat(Beat),
    /// A headless room idle for [`IDLE_TTL`]: dispose of its state without
    /// `on_empty` (then call [`Lifecycle::discarded`]).
    Evict,
}

/// One stateful room's lifecycle, as Alepha's `RoomEngine` runs it, without
/// the state or the callbacks (the driver holds those):
///
/// 1. the first join or call builds the state ([`needs_state`](Self::needs_state),
///    then [`built`](Self::built)); a failed build leaves the room vacant,
///    and the next join or call tries again;
/// 2. a join ([`joined`](Self::joined)) starts the tick loop if the room
///    ticks and was empty;
/// 3. a leave ([`left`](Self::left)) that empties the room stops the loop
///    and calls for the teardown: `on_empty`, then the state is discarded
///    ([`discarded`](Self::discarded));
/// 4. the timer ([`poll_timeout`](Self::poll_timeout),
///    [`handle_timeout`](Self::handle_timeout)) gives beats while the room
///    has members, and evicts a room with state and no member idle for
///    [`IDLE_TTL`] since it was built or last called.
///
/// The driver handles one input at a time (a join, a leave, a message, a
/// call, a beat), so concurrent leavers share one teardown and a join
/// that comes during a teardown waits for it.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    period: Option<Duration>,
    ticker: Option<Ticker>,
    members: usize,
    built: bool,
    idle_since: Instant,
}

impl Lifecycle {
    /// A vacant room ticking at `tick_hz` while it has members (0: never;
    /// above [`MAX_TICK_HZ`]: at that rate).
    pub fn new(tick_hz: u32) -> Self {
        let period = match tick_hz {
            0 => None,
            hz => Some(Duration::from_micros(1_000_000 / u64::from(hz.min(MAX_TICK_HZ)))),
        };
        Self { period, ticker: None, members: 0, built: false, idle_since: Instant::ZERO }
    }

    /// The tick period, if the room ticks.
    pub fn period(&self) -> Option<Duration> {
        self.period
    }

    /// Whether the state must be built before a join or call is handled.
    pub fn needs_state(&self) -> bool {
        !self.built
    }

    /// The state was built at `now`.
    pub fn built(&mut self, now: Instant) {
        self.built = true;
        self.idle_since = now;
    }

    /// A method was called at `now`.
    pub fn called(&mut self, now: Instant) {
        self.idle_since = now;
    }

    /// A connection joined at `now` (after its `on_join` succeeded).
    pub fn joined(&mut self, now: Instant) {
        self.members += 1;
        if self.ticker.is_none()
            && let Some(period) = self.period
        {
            self.ticker = Some(Ticker::start(period, now));
        }
    }

    /// A member left. Returns whether the room is now empty: stop, run
    /// `on_empty`, discard the state, then call [`discarded`](Self::discarded).
    pub fn left(&mut self) -> bool {
        self.members = self.members.saturating_sub(1);
        if self.members == 0 {
            self.ticker = None;
            return true;
        }
        false
    }

    /// The state was discarded (teardown, eviction or shutdown).
    pub fn discarded(&mut self) {
        self.built = false;
        self.ticker = None;
        self.members = 0;
    }

    /// How many members the room has.
    pub fn members(&self) -> usize {
        self.members
    }

    /// Whether the room has no state and no member: its driver may end.
    pub fn is_vacant(&self) -> bool {
        !self.built && self.members == 0
    }

    /// When [`handle_timeout`](Self::handle_timeout) has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (&self.ticker, self.built && self.members == 0) {
            (Some(ticker), _) => Some(ticker.next_beat()),
            (None, true) => Some(self.idle_since + IDLE_TTL),
            (None, false) => None,
        }
    }

    /// What is due at `now`, if anything.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Due> {
        if let Some(ticker) = &mut self.ticker {
            return ticker.is_due(now).then(|| Due::Beat(ticker.beat(now)));
        }
        (self.built && self.members == 0 && now >= self.idle_since + IDLE_TTL).then_some(Due::Evict)
    }

    /// The tick taken at the last beat finished at `now`. Returns how many
    /// beats it made skip (warn when not 0: the tick is slower than the
    /// period).
    pub fn tick_done(&mut self, now: Instant) -> u32 {
        self.ticker.as_mut().map_or(0, |ticker| ticker.finished(now))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    pub struct Inc {
        pub by: u32,
    }
    crate::channel! { /// Counter.
    pub struct Counter { path: "/ws/counter", in: Inc, out: Inc } }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn at(n: u64) -> Instant {
        Instant::ZERO + ms(n)
    }

    #[test]
    fn no_beat_before_the_first_join_and_none_after_the_last_leave() {
        let mut life = Lifecycle::new(20);
        life.built(at(0));
        assert_eq!(life.poll_timeout(), Some(at(0) + IDLE_TTL), "headless: only eviction");
        assert_eq!(life.handle_timeout(at(60)), None);
        life.joined(at(100));
        life.joined(at(110));
        assert_eq!(life.poll_timeout(), Some(at(150)), "the second join does not restart the loop");
        assert!(!life.left());
        assert!(life.left());
        life.discarded();
        assert_eq!(life.poll_timeout(), None);
        assert_eq!(life.handle_timeout(at(10_000_000)), None);
        assert!(life.is_vacant() && life.needs_state());
        // A rejoin restarts the loop from its own time.
        life.built(at(500));
        life.joined(at(500));
        assert_eq!(life.poll_timeout(), Some(at(550)));
    }

    #[test]
    fn beats_carry_the_real_elapsed_time() {
        let mut life = Lifecycle::new(20);
        life.built(at(0));
        life.joined(at(0));
        let mut dts = std::vec::Vec::new();
        for t in [50, 100] {
            let Some(Due::Beat(beat)) = life.handle_timeout(at(t)) else { panic!() };
            dts.push(beat.dt);
            assert_eq!(life.tick_done(at(t)), 0);
        }
        assert_eq!(dts, [ms(50), ms(50)]);
    }

    #[test]
    fn a_slow_tick_skips_the_beats_it_overlaps() {
        let mut life = Lifecycle::new(20);
        life.built(at(0));
        life.joined(at(0));
        assert!(matches!(life.handle_timeout(at(50)), Some(Due::Beat(_))));
        // Still running at 100 and 150; done at 170.
        assert_eq!(life.tick_done(at(170)), 2);
        assert_eq!(life.handle_timeout(at(170)), None);
        let Some(Due::Beat(beat)) = life.handle_timeout(at(200)) else { panic!() };
        assert_eq!((beat.dt, beat.missed), (ms(150), 0));
    }

    #[test]
    fn a_beat_may_be_taken_a_little_early_and_only_once() {
        let mut ticker = Ticker::start(ms(10), at(0));
        let early = Instant::from_micros(at(10).as_micros() - BEAT_EARLY.as_micros());
        assert!(!ticker.is_due(Instant::from_micros(early.as_micros() - 1)));
        assert!(ticker.is_due(early));
        let beat = ticker.beat(early);
        assert_eq!((beat.late, beat.missed), (Duration::ZERO, 0));
        assert_eq!(ticker.next_beat(), at(20));
        assert!(!ticker.is_due(at(10)), "taken once");
    }

    #[test]
    fn a_late_driver_takes_one_beat_not_a_burst() {
        let mut ticker = Ticker::start(ms(10), at(0));
        let beat = ticker.beat(at(35));
        assert_eq!((beat.dt, beat.late, beat.missed), (ms(35), ms(25), 2));
        assert_eq!(ticker.next_beat(), at(40));
    }

    #[test]
    fn headless_rooms_are_evicted_after_the_idle_time_since_their_last_call() {
        let mut life = Lifecycle::new(0);
        life.built(at(0));
        life.called(at(1_000));
        assert_eq!(life.handle_timeout(Instant::from_micros((at(1_000) + IDLE_TTL).as_micros() - 1)), None);
        assert_eq!(life.handle_timeout(at(1_000) + IDLE_TTL), Some(Due::Evict));
        // A room with members is never evicted, and a 0 Hz room never ticks.
        life.joined(at(2_000));
        assert_eq!(life.poll_timeout(), None);
    }

    #[test]
    fn tick_rates_are_bounded() {
        assert_eq!(Lifecycle::new(1_000_000).period(), Some(ms(1)));
        assert_eq!(Lifecycle::new(3).period(), Some(Duration::from_micros(333_333)));
        assert_eq!(Lifecycle::new(0).period(), None);
    }

    #[test]
    fn roomwire_envelopes_stay_in_their_room() {
        let room = RoomId::new("r").unwrap();
        let mut out = [0u8; 256];
        let inbound = |data: &[u8], out: &mut [u8]| match handle_message::<Counter>(
            WireFormat::Json,
            &room,
            NonJson::Drop,
            data,
            &mut [],
            out,
        ) {
            RoomInbound::Message { message, .. } => Ok(message.by),
            RoomInbound::Reject { len } => Err(len),
            RoomInbound::Ignored => panic!("ignored"),
        };
        assert_eq!(inbound(br#"{"type":"message","room":"r","data":{"by":3}}"#, &mut out), Ok(3));
        let len = inbound(br#"{"type":"message","room":"s","data":{"by":3}}"#, &mut out).unwrap_err();
        assert!(out[..len].starts_with(br#"{"type":"error","code":4004"#));
        let len = inbound(br#"{"type":"join","room":"s","ref":7}"#, &mut out).unwrap_err();
        let text = core::str::from_utf8(&out[..len]).unwrap();
        assert!(text.starts_with(r#"{"type":"error","ref":7,"code":4007"#), "{text}");
        let len = inbound(br#"{"type":"message","room":"r","data":{"by":"x"}}"#, &mut out).unwrap_err();
        assert!(out[..len].starts_with(br#"{"type":"error","code":4005,"text":"Message validation failed"#));
        let len = inbound(b"nope", &mut out).unwrap_err();
        assert!(out[..len].starts_with(br#"{"type":"error","code":4000"#));
    }

    #[test]
    fn alepha_frames_ignore_their_room_and_refuse_bad_shapes_without_a_prefix() {
        let room = RoomId::new("r").unwrap();
        let mut out = [0u8; 256];
        let frame = br#"{"roomId":"elsewhere","message":{"by":5}}"#;
        assert!(matches!(
            handle_message::<Counter>(WireFormat::Alepha, &room, NonJson::Drop, frame, &mut [], &mut out),
            RoomInbound::Message { message: Inc { by: 5 }, payload: br#"{"by":5}"# }
        ));
        assert!(matches!(
            handle_message::<Counter>(WireFormat::Alepha, &room, NonJson::Drop, b"hello", &mut [], &mut out),
            RoomInbound::Ignored
        ));
        let RoomInbound::Reject { len } =
            handle_message::<Counter>(WireFormat::Alepha, &room, NonJson::Drop, br#"{"by":-1}"#, &mut [], &mut out)
        else {
            panic!()
        };
        let text = core::str::from_utf8(&out[..len]).unwrap();
        assert!(text.starts_with(r#"{"error":""#) && !text.contains("Message validation failed"), "{text}");
        // Refused rather than dropped, when the endpoint says so.
        let RoomInbound::Reject { len } =
            handle_message::<Counter>(WireFormat::Alepha, &room, NonJson::Refuse, b"hello", &mut [], &mut out)
        else {
            panic!()
        };
        assert_eq!(&out[..len], br#"{"error":"Received non-JSON message"}"#);
    }

    #[test]
    fn handshake_rooms_are_validated_except_default() {
        #[derive(Debug, serde::Serialize, serde::Deserialize)]
        pub struct M;
        /// Rooms must start with "g-".
        struct Strict;
        impl Channel for Strict {
            const PATH: &'static str = "/ws/s";
            type In<'a> = M;
            type Out<'a> = M;
            fn validate_room_id(room: &str) -> bool {
                room.starts_with("g-")
            }
        }
        assert_eq!(handshake_room::<Strict>(None, None).unwrap().as_str(), "default");
        assert_eq!(handshake_room::<Strict>(Some("roomId=g-1"), None).unwrap().as_str(), "g-1");
        assert_eq!(handshake_room::<Strict>(Some("roomId=x"), None).unwrap_err().reason, "Invalid room id");
        assert_eq!(handshake_room::<Strict>(None, Some("x")).unwrap_err().code, CloseCode::Policy);
    }
}
