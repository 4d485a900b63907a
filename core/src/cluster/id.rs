//! A connection id kept as its 16 bytes: `ws-` and a version 4 UUID in
//! text is how every API shows it, and what Alepha's clients see; a server
//! holding many connections keeps the bytes (16, no allocation) and writes
//! the text when asked.

use core::fmt;

/// Lowercase hexadecimal digits.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Bytes of an id's text: `ws-`, 32 hex digits and 4 dashes.
pub const CONNECTION_ID_LEN: usize = 39;

/// The byte positions (of the 16) that a dash precedes in the text.
fn dash_before(byte: usize) -> bool {
    matches!(byte, 4 | 6 | 8 | 10)
}

/// A connection id: `ws-<uuid>` whose first eight hex digits are the tag of
/// the node that holds it, kept as the UUID's 16 bytes.
///
/// Its text ([`text`](Self::text), [`Display`](fmt::Display)) is lowercase,
/// and [`parse`](Self::parse) takes exactly that form back, so ids compare
/// and hash as their texts would: a text this type would not print (upper
/// case, another prefix or length) is no connection's id.
///
/// ```
/// use roomwire_core::cluster::ConnectionId;
/// let id = ConnectionId::new(0x1b4e28ba, [0xff; 16]);
/// assert_eq!(id.text().as_str(), "ws-1b4e28ba-ffff-4fff-bfff-ffffffffffff");
/// assert_eq!(ConnectionId::parse("ws-1b4e28ba-ffff-4fff-bfff-ffffffffffff"), Some(id));
/// assert_eq!(ConnectionId::parse("ws-1B4E28BA-FFFF-4FFF-BFFF-FFFFFFFFFFFF"), None);
/// assert_eq!(id.node_tag(), 0x1b4e28ba);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId([u8; 16]);

impl ConnectionId {
    /// An id for a connection of the node with `tag`: the tag's 32 bits,
    /// then `random`'s bits, with the version (4) and variant (RFC 9562)
    /// bits of a random UUID.
    pub fn new(tag: u32, random: [u8; 16]) -> Self {
        let mut bytes = random;
        if let Some(head) = bytes.get_mut(..4) {
            head.copy_from_slice(&tag.to_be_bytes());
        }
        if let Some(b) = bytes.get_mut(6) {
            *b = (*b & 0x0f) | 0x40;
        }
        if let Some(b) = bytes.get_mut(8) {
            *b = (*b & 0x3f) | 0x80;
        }
        Self(bytes)
    }

    /// The id whose text is `text`, if `text` is the form [`text`](Self::text)
    /// writes: `ws-`, then lowercase hex digits grouped 8-4-4-4-12.
    pub fn parse(text: &str) -> Option<Self> {
        let digits = text.strip_prefix("ws-")?;
        if digits.len() != CONNECTION_ID_LEN - 3 {
            return None;
        }
        let mut bytes = [0u8; 16];
        let mut out = bytes.iter_mut();
        let mut high = None;
        for (at, c) in digits.bytes().enumerate() {
            if matches!(at, 8 | 13 | 18 | 23) {
                if c != b'-' {
                    return None;
                }
                continue;
            }
            let value = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => return None,
            };
            match high.take() {
                None => high = Some(value),
                Some(high) => *out.next()? = (high << 4) | value,
            }
        }
        // 32 digits: every byte written, no digit left over.
        (out.next().is_none() && high.is_none()).then_some(Self(bytes))
    }

    /// Its text, `ws-<uuid>`, written into a value of its own.
    pub fn text(&self) -> ConnectionIdText {
        let mut text = [b'-'; CONNECTION_ID_LEN];
        let mut slots = text.iter_mut();
        let mut put = |b: u8| {
            if let Some(slot) = slots.next() {
                *slot = b;
            }
        };
        b"ws-".iter().for_each(|&b| put(b));
        for (at, &byte) in self.0.iter().enumerate() {
            if dash_before(at) {
                put(b'-');
            }
            put(HEX.get(usize::from(byte >> 4)).copied().unwrap_or(b'0'));
            put(HEX.get(usize::from(byte & 0x0f)).copied().unwrap_or(b'0'));
        }
        ConnectionIdText(text)
    }

    /// The tag of the node that holds it (its first 32 bits).
    pub fn node_tag(&self) -> u32 {
        let [a, b, c, d, ..] = self.0;
        u32::from_be_bytes([a, b, c, d])
    }

    /// Its 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_str())
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({})", self.text().as_str())
    }
}

/// A [`ConnectionId`]'s text, on the stack.
///
/// ```
/// use roomwire_core::cluster::ConnectionId;
/// let text = ConnectionId::new(1, [0; 16]).text();
/// assert_eq!(&*text, "ws-00000001-0000-4000-8000-000000000000");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionIdText([u8; CONNECTION_ID_LEN]);

impl ConnectionIdText {
    /// The text.
    pub fn as_str(&self) -> &str {
        // Written from ASCII only ([`ConnectionId::text`]); never empty.
        core::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl core::ops::Deref for ConnectionIdText {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ConnectionIdText {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for ConnectionIdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ConnectionIdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}
