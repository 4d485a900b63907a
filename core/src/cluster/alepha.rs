//! Alepha's cluster wire, so that a roomwire node can join a cluster of
//! Alepha Node servers: every node publishes each emit and reply on one
//! topic, and every node delivers what it hears to its own matching
//! connections.
//!
//! The topic is [`ALEPHA_TOPIC`] (Alepha's `$topic` `websocket:broadcast`
//! with the Redis provider's default prefix) and a message is
//! `JSON.stringify({ payload })`:
//!
//! ```text
//! {"payload":{"channelPath":"/ws/chat","roomIds":["lobby"],"exceptConnectionIds":["ws-…"],"message":{…}}}
//! ```
//!
//! with `roomIds`, `userIds`, `connectionIds`, `exceptConnectionIds` and
//! `exceptUserIds` optional arrays of strings and `message` any JSON value.

use core::fmt;

use crate::error::InsufficientSize;
use crate::json::{self, JsonError, RawStr};

/// The Redis channel an Alepha cluster broadcasts on.
pub const ALEPHA_TOPIC: &str = "topic:websocket:broadcast";

/// One broadcast, decoded (borrowing the input) or to encode.
///
/// `L` is a list of strings: [`JsonStrings`] when decoded, any
/// `&[impl AsRef<str>]` when encoding.
#[derive(Debug, Clone, Copy)]
pub struct AlephaBroadcast<'a, L = JsonStrings<'a>> {
    /// The channel (endpoint path).
    pub channel_path: &'a str,
    /// Rooms whose connections are reached.
    pub rooms: L,
    /// Users whose connections are reached.
    pub users: L,
    /// Connections reached, by id.
    pub connections: L,
    /// Connections never reached.
    pub except_connections: L,
    /// Users whose connections are never reached.
    pub except_users: L,
    /// The message, as JSON.
    pub message: &'a [u8],
}

/// An array of JSON strings in a decoded broadcast (or none), already
/// checked.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonStrings<'a> {
    array: Option<&'a [u8]>,
}

impl<'a> JsonStrings<'a> {
    /// The strings, escapes not yet decoded (compare with
    /// [`RawStr::eq_str`], decode with [`RawStr::unescape_into`] or
    /// `to_string`).
    pub fn iter(&self) -> impl Iterator<Item = RawStr<'a>> + use<'a> {
        self.array
            .and_then(|a| json::array_elements(a).ok().flatten())
            .into_iter()
            .flatten()
            .filter_map(json::as_string)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

/// Why bytes on the Alepha topic are not a broadcast this node can deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlephaTopicError {
    /// Not JSON.
    Json(JsonError),
    /// Not `{"payload": {…}}`.
    NoPayload,
    /// No `channelPath` string, or one with escapes a path never has.
    ChannelPath,
    /// A target list is not an array of strings.
    List,
    /// No `message`.
    NoMessage,
}

impl fmt::Display for AlephaTopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlephaTopicError::Json(e) => write!(f, "not JSON: {e}"),
            AlephaTopicError::NoPayload => f.write_str("no payload object"),
            AlephaTopicError::ChannelPath => f.write_str("no channelPath string"),
            AlephaTopicError::List => f.write_str("a target list is not an array of strings"),
            AlephaTopicError::NoMessage => f.write_str("no message"),
        }
    }
}

impl core::error::Error for AlephaTopicError {}

fn strings(value: &[u8]) -> Result<JsonStrings<'_>, AlephaTopicError> {
    if value == b"null" {
        return Ok(JsonStrings { array: None });
    }
    let elements = json::array_elements(value).map_err(|_| AlephaTopicError::List)?.ok_or(AlephaTopicError::List)?;
    for element in elements {
        json::as_string(element).ok_or(AlephaTopicError::List)?;
    }
    Ok(JsonStrings { array: Some(value) })
}

/// Decode a message heard on [`ALEPHA_TOPIC`]. Later duplicate keys win,
/// as with `JSON.parse`.
///
/// ```
/// use roomwire_core::cluster::decode_alepha;
/// let heard = br#"{"payload":{"channelPath":"/ws/chat","roomIds":["lobby"],"message":{"type":"system","message":"hi"}}}"#;
/// let b = decode_alepha(heard).unwrap();
/// assert_eq!(b.channel_path, "/ws/chat");
/// assert!(b.rooms.iter().next().unwrap().eq_str("lobby"));
/// assert!(b.users.is_empty());
/// assert_eq!(b.message, br#"{"type":"system","message":"hi"}"#);
/// ```
pub fn decode_alepha(doc: &[u8]) -> Result<AlephaBroadcast<'_>, AlephaTopicError> {
    let members = json::object_members(doc).map_err(AlephaTopicError::Json)?.ok_or(AlephaTopicError::NoPayload)?;
    let mut payload = None;
    for (key, value) in members {
        if key.eq_str("payload") {
            payload = Some(value);
        }
    }
    let payload = payload.ok_or(AlephaTopicError::NoPayload)?;
    let members = json::object_members(payload).map_err(AlephaTopicError::Json)?.ok_or(AlephaTopicError::NoPayload)?;
    let mut path = None;
    let mut message = None;
    let mut lists: [JsonStrings<'_>; 5] = Default::default();
    const LISTS: [&str; 5] = ["roomIds", "userIds", "connectionIds", "exceptConnectionIds", "exceptUserIds"];
    for (key, value) in members {
        if key.eq_str("channelPath") {
            path = Some(json::as_string(value).and_then(|s| s.as_borrowed()).ok_or(AlephaTopicError::ChannelPath)?);
        } else if key.eq_str("message") {
            message = Some(value);
        } else if let Some(slot) = LISTS.iter().position(|name| key.eq_str(name)).and_then(|i| lists.get_mut(i)) {
            *slot = strings(value)?;
        }
    }
    let [rooms, users, connections, except_connections, except_users] = lists;
    Ok(AlephaBroadcast {
        channel_path: path.ok_or(AlephaTopicError::ChannelPath)?,
        rooms,
        users,
        connections,
        except_connections,
        except_users,
        message: message.ok_or(AlephaTopicError::NoMessage)?,
    })
}

/// The most bytes [`encode_alepha`] writes for `b` (every character of
/// every string escaped at worst).
pub fn encode_alepha_max_len<S: AsRef<str>>(b: &AlephaBroadcast<'_, &[S]>) -> usize {
    let string = |s: &str| 6 * s.len() + 3;
    let list = |l: &[S]| 20 + l.iter().map(|s| string(s.as_ref())).sum::<usize>();
    40 + string(b.channel_path)
        + list(b.rooms)
        + list(b.users)
        + list(b.connections)
        + list(b.except_connections)
        + list(b.except_users)
        + b.message.len()
}

/// Encode a broadcast as Alepha publishes it (empty lists left out), into
/// `out`; returns the bytes written. `message` must be one JSON value.
///
/// ```
/// use roomwire_core::cluster::{AlephaBroadcast, encode_alepha, encode_alepha_max_len};
/// let none: &[&str] = &[];
/// let b = AlephaBroadcast {
///     channel_path: "/ws/chat",
///     rooms: &["lobby"][..],
///     users: none,
///     connections: none,
///     except_connections: &["ws-1"][..],
///     except_users: none,
///     message: br#"{"n":1}"#,
/// };
/// let mut out = vec![0; encode_alepha_max_len(&b)];
/// let n = encode_alepha(&b, &mut out).unwrap();
/// assert_eq!(
///     &out[..n],
///     br#"{"payload":{"channelPath":"/ws/chat","roomIds":["lobby"],"exceptConnectionIds":["ws-1"],"message":{"n":1}}}"#
/// );
/// ```
pub fn encode_alepha<S: AsRef<str>>(b: &AlephaBroadcast<'_, &[S]>, out: &mut [u8]) -> Result<usize, InsufficientSize> {
    let short = InsufficientSize { required: encode_alepha_max_len(b) };
    let mut at = 0usize;
    let put = |bytes: &[u8], at: &mut usize, out: &mut [u8]| -> Result<(), InsufficientSize> {
        let end = *at + bytes.len();
        out.get_mut(*at..end).ok_or(short)?.copy_from_slice(bytes);
        *at = end;
        Ok(())
    };
    let string = |s: &str, at: &mut usize, out: &mut [u8]| -> Result<(), InsufficientSize> {
        let n = json::write_str_literal(s, out.get_mut(*at..).ok_or(short)?).map_err(|_| short)?;
        *at += n;
        Ok(())
    };
    put(br#"{"payload":{"channelPath":"#, &mut at, out)?;
    string(b.channel_path, &mut at, out)?;
    let lists = [
        ("roomIds", b.rooms),
        ("userIds", b.users),
        ("connectionIds", b.connections),
        ("exceptConnectionIds", b.except_connections),
        ("exceptUserIds", b.except_users),
    ];
    for (name, list) in lists {
        if list.is_empty() {
            continue;
        }
        put(b",\"", &mut at, out)?;
        put(name.as_bytes(), &mut at, out)?;
        put(b"\":[", &mut at, out)?;
        for (i, s) in list.iter().enumerate() {
            if i > 0 {
                put(b",", &mut at, out)?;
            }
            string(s.as_ref(), &mut at, out)?;
        }
        put(b"]", &mut at, out)?;
    }
    put(br#","message":"#, &mut at, out)?;
    put(b.message, &mut at, out)?;
    put(b"}}", &mut at, out)?;
    Ok(at)
}

/// What a node published on [`ALEPHA_TOPIC`] and has not heard back yet,
/// to tell its own broadcasts when they come back: Alepha's messages carry
/// no origin, and every node hears its own. A broadcast is known by a hash
/// of its bytes (the caller's), remembered for [`OWN_ECHO_AGE`], at most
/// [`MAX_OWN_ECHOES`] at once; an echo later than that is taken for
/// another node's message.
///
/// ```
/// use roomwire_core::cluster::OwnEchoes;
/// use roomwire_core::time::Instant;
/// let (mut echoes, now) = (OwnEchoes::new(), Instant::from_micros(0));
/// echoes.published(1, now);
/// echoes.published(2, now);
/// assert!(echoes.is_echo(2, now), "1 never came back: forgotten with 2");
/// assert!(!echoes.is_echo(1, now));
/// ```
#[cfg(feature = "alloc")]
#[derive(Debug, Default)]
pub struct OwnEchoes {
    /// Hash and when, oldest first.
    sent: alloc::collections::VecDeque<(u64, crate::time::Instant)>,
}

/// How long a node remembers a broadcast of its own.
pub const OWN_ECHO_AGE: crate::time::Duration = crate::time::Duration::from_secs(10);

/// How many broadcasts of its own a node remembers at most.
pub const MAX_OWN_ECHOES: usize = 65_536;

#[cfg(feature = "alloc")]
impl OwnEchoes {
    /// None yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Broadcast `hash` was handed to the bus at `now`.
    pub fn published(&mut self, hash: u64, now: crate::time::Instant) {
        if self.sent.len() >= MAX_OWN_ECHOES {
            self.sent.pop_front();
        }
        self.sent.push_back((hash, now));
    }

    /// Broadcast `hash`, the latest, never reached the bus after all.
    pub fn unpublished(&mut self, hash: u64) {
        if let Some(at) = self.sent.iter().rposition(|&(h, _)| h == hash) {
            self.sent.remove(at);
        }
    }

    /// Whether `hash`, heard at `now`, is one of ours coming back
    /// (forgotten then, with any older one never heard back).
    pub fn is_echo(&mut self, hash: u64, now: crate::time::Instant) -> bool {
        while self.sent.front().is_some_and(|&(_, at)| now.saturating_duration_since(at) > OWN_ECHO_AGE) {
            self.sent.pop_front();
        }
        // Echoes come back in publish order: almost always the oldest.
        if self.sent.front().is_some_and(|&(h, _)| h == hash) {
            self.sent.pop_front();
            return true;
        }
        match self.sent.iter().position(|&(h, _)| h == hash) {
            Some(at) => {
                self.sent.drain(..=at);
                true
            }
            None => false,
        }
    }
}
