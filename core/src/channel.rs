//! Channels: an endpoint path and the typed messages of both directions.
//!
//! A channel is Alepha's `$channel`: a path (`/ws/chat`), the messages the
//! server sends to clients (`In`, as Alepha names them from the client's
//! point of view), the messages clients send to the server (`Out`), and
//! room-id validation. Validating a client message means deserializing it
//! into `Out` (serde does the shape checks a schema would), then
//! [`Channel::validate`] for anything serde cannot express.
//!
//! Both message types are generic over a lifetime so they may borrow
//! `&str` fields from the received frame: typed dispatch without
//! allocation. Owned types simply ignore the lifetime.
//!
//! Alepha's `t.union` of objects tagged by `t.const` is serde's internally
//! tagged enum, `#[serde(tag = "type")]`. Serializing one needs nothing;
//! *deserializing* one needs serde's `alloc` feature (serde buffers the
//! object to find the tag), which this crate's `alloc` feature enables.
//! Without `alloc`, received messages are structs or externally tagged
//! enums.
//!
//! The postcard encoding of the roomwire wire is not self-describing, so a
//! type *received* in postcard cannot use the serde features that need to
//! look ahead (internally tagged or untagged enums, `flatten`): they encode,
//! but do not decode. A channel used by postcard clients gives them
//! externally tagged enums (serde's default); JSON clients accept both.

use serde::{Deserialize, Serialize};

use crate::room::MAX_ROOM_ID_LEN;

/// A channel: see the [module docs](self). Usually declared with
/// [`crate::channel!`].
pub trait Channel {
    /// The endpoint path, e.g. `/ws/chat`, matched exactly.
    const PATH: &'static str;

    /// Server → client messages (`in` in Alepha's naming).
    type In<'a>: Serialize + Deserialize<'a>;

    /// Client → server messages (`out` in Alepha's naming).
    type Out<'a>: Serialize + Deserialize<'a>;

    /// What the channel is for, in a sentence (Alepha's `description`).
    /// [`crate::channel!`] puts it in the type's documentation too.
    const DESCRIPTION: &'static str = "";

    /// Which room ids the channel accepts (Alepha's `schema.roomId`):
    /// any, UUIDs, a pattern. Default [`RoomIdRule::Any`].
    const ROOM_ID: RoomIdRule = RoomIdRule::Any;

    /// The wires this channel's clients may speak, fixed at compile time
    /// (see [`Wires`](crate::wire::Wires)): a firmware whose channel says
    /// [`Wires::POSTCARD`](crate::wire::Wires::POSTCARD) links no JSON
    /// wire.
    /// Default [`Wires::ALL`](crate::wire::Wires::ALL), chosen at run time.
    const WIRES: crate::wire::Wires = crate::wire::Wires::ALL;

    /// Whether `room` is an acceptable room id: a non-empty id of at most
    /// [`MAX_ROOM_ID_LEN`] bytes that [`Self::ROOM_ID`] allows. Declare the
    /// rule with `room_id:` in [`crate::channel!`]; override this only for
    /// a rule [`RoomIdRule`] cannot say. The implicit `"default"` room of
    /// the Alepha wire is never checked, as in Alepha.
    fn validate_room_id(room: &str) -> bool {
        !room.is_empty() && room.len() <= MAX_ROOM_ID_LEN && Self::ROOM_ID.allows(room)
    }

    /// Checks on a client message beyond its shape; the error text is sent
    /// to the client.
    fn validate(message: &Self::Out<'_>) -> Result<(), &'static str> {
        let _ = message;
        Ok(())
    }
}

/// Which room ids a channel accepts: Alepha's `schema.roomId`, declared
/// with `room_id:` in [`crate::channel!`]. Every rule also requires what
/// every room id is: 1 to [`MAX_ROOM_ID_LEN`] bytes of UTF-8.
///
/// ```
/// use roomwire_core::channel::RoomIdRule;
/// assert!(RoomIdRule::Any.allows("lobby"));
/// assert!(RoomIdRule::Uuid.allows("0b5c3c2e-6a4f-4f0e-9d1e-3f8a2b7c9d10"));
/// assert!(!RoomIdRule::Uuid.allows("lobby"));
/// let games = RoomIdRule::Pattern("game-[0-9]*");
/// assert!(games.allows("game-42"));
/// assert!(!games.allows("game-x"));
/// assert!(RoomIdRule::Custom(|room| room.starts_with("inbox:")).allows("inbox:ann"));
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum RoomIdRule {
    /// Any room id (the default).
    Any,
    /// A UUID in its hyphenated text form, 8-4-4-4-12 hexadecimal digits
    /// in either case (Alepha's `t.uuid()`; any version).
    Uuid,
    /// Ids the whole of which match a glob pattern: `*` matches any run of
    /// characters (none too), `?` one character, `[abc]`, `[a-z0-9]` one
    /// character of a set and `[!a-z]` (or `[^a-z]`) one not of it, `\`
    /// escapes the character after it; any other character matches itself.
    /// A `[` without its `]` is a plain character. Matching takes at most
    /// (pattern length × id length) steps, and ids are at most
    /// [`MAX_ROOM_ID_LEN`] bytes.
    Pattern(&'static str),
    /// Ids this function accepts.
    Custom(fn(&str) -> bool),
}

impl RoomIdRule {
    /// Whether the rule allows `room` (the length bounds are
    /// [`Channel::validate_room_id`]'s).
    pub fn allows(&self, room: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Uuid => is_uuid(room),
            Self::Pattern(pattern) => glob_matches(pattern, room),
            Self::Custom(allows) => allows(room),
        }
    }
}

/// `8-4-4-4-12` hex digits.
fn is_uuid(text: &str) -> bool {
    let mut groups = text.split('-');
    let ok = [8usize, 4, 4, 4, 12]
        .iter()
        .all(|&len| groups.next().is_some_and(|g| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit())));
    ok && groups.next().is_none()
}

/// One element of a glob pattern.
enum Token<'p> {
    Any,
    Literal(char),
    /// A set's body (between `[` and `]`, negation marker removed).
    Set {
        body: &'p str,
        negated: bool,
    },
}

impl Token<'_> {
    fn matches(&self, c: char) -> bool {
        match self {
            Self::Any => true,
            Self::Literal(l) => *l == c,
            Self::Set { body, negated } => set_contains(body, c) != *negated,
        }
    }
}

/// The pattern's next token (not `*`) and the rest of the pattern.
fn next_token(pattern: &str) -> Option<(Token<'_>, &str)> {
    let mut chars = pattern.chars();
    let first = chars.next()?;
    let rest = chars.as_str();
    Some(match first {
        '?' => (Token::Any, rest),
        '\\' => {
            let mut after = rest.chars();
            match after.next() {
                Some(escaped) => (Token::Literal(escaped), after.as_str()),
                None => (Token::Literal('\\'), rest),
            }
        }
        '[' => {
            let (negated, body) = match rest.strip_prefix(['!', '^']) {
                Some(body) => (true, body),
                None => (false, rest),
            };
            // A `]` first in the set is one of its characters.
            let search_from = body.chars().next().filter(|&c| c == ']').map_or(0, char::len_utf8);
            match body.get(search_from..).and_then(|tail| tail.find(']')) {
                Some(end) => {
                    let end = end + search_from;
                    let set = Token::Set { body: body.get(..end).unwrap_or(""), negated };
                    (set, body.get(end + 1..).unwrap_or(""))
                }
                None => (Token::Literal('['), rest),
            }
        }
        c => (Token::Literal(c), rest),
    })
}

/// Whether the set body (`a-z0-9_`) holds `c`.
fn set_contains(body: &str, c: char) -> bool {
    let mut chars = body.chars().peekable();
    while let Some(low) = chars.next() {
        let mut ahead = chars.clone();
        if ahead.next() == Some('-')
            && let Some(high) = ahead.next()
        {
            if (low..=high).contains(&c) {
                return true;
            }
            chars = ahead;
        } else if low == c {
            return true;
        }
    }
    false
}

/// Whether all of `text` matches `pattern` ([`RoomIdRule::Pattern`]):
/// on a mismatch, the last `*` takes one more character and matching
/// resumes after it, so no step is tried twice from the same place.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let (mut p, mut t) = (pattern, text);
    // The pattern after the last `*` seen, and the text it resumes from.
    let mut star: Option<(&str, &str)> = None;
    loop {
        if let Some(rest) = p.strip_prefix('*') {
            star = Some((rest, t));
            p = rest;
            continue;
        }
        let mut text_chars = t.chars();
        match (next_token(p), text_chars.next()) {
            (None, None) => return true,
            (Some((token, rest)), Some(c)) if token.matches(c) => {
                p = rest;
                t = text_chars.as_str();
                continue;
            }
            _ => {}
        }
        let Some((after_star, from)) = star else { return false };
        let mut from_chars = from.chars();
        if from_chars.next().is_none() {
            return false;
        }
        star = Some((after_star, from_chars.as_str()));
        p = after_star;
        t = from_chars.as_str();
    }
}

/// Declare a [`Channel`]: Alepha's `$channel`.
///
/// `path`, `in` and `out` are required; between `path` and `in`, in this
/// order, an optional `description` (a string literal:
/// [`Channel::DESCRIPTION`], and a paragraph of the type's documentation),
/// an optional `room_id` rule ([`Channel::ROOM_ID`], a [`RoomIdRule`],
/// whose variants are in scope there: `Uuid`, `Pattern("game-*")`,
/// `Custom(my_fn)`) and optional `wires` ([`Channel::WIRES`]:
/// `Wires::POSTCARD` for a firmware that speaks postcard alone).
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// #[serde(tag = "type", rename_all = "lowercase")]
/// pub enum ChatIn {
///     Append { content: String, username: String },
///     System { message: String },
/// }
///
/// #[derive(Serialize, Deserialize)]
/// pub struct ChatOut<'a> {
///     pub content: &'a str,
/// }
///
/// roomwire_core::channel! {
///     /// The chat channel.
///     pub struct Chat {
///         path: "/ws/chat",
///         in: ChatIn,
///         out: ChatOut<'a>,
///     }
/// }
///
/// roomwire_core::channel! {
///     pub struct Match {
///         path: "/ws/match",
///         description: "Moves of one match; a room per match, named by its UUID.",
///         room_id: Uuid,
///         in: ChatIn,
///         out: ChatOut<'a>,
///     }
/// }
///
/// use roomwire_core::channel::{Channel, RoomIdRule};
/// assert_eq!(Chat::PATH, "/ws/chat");
/// assert!(Chat::validate_room_id("lobby"));
/// assert!(matches!(Match::ROOM_ID, RoomIdRule::Uuid));
/// assert!(Match::validate_room_id("0b5c3c2e-6a4f-4f0e-9d1e-3f8a2b7c9d10"));
/// assert!(!Match::validate_room_id("lobby"));
/// assert!(Match::DESCRIPTION.starts_with("Moves"));
/// ```
#[macro_export]
macro_rules! channel {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            path: $path:expr,
            $(description: $description:literal,)?
            $(room_id: $room_id:expr,)?
            $(wires: $wires:expr,)?
            in: $in:ty,
            out: $out:ty $(,)?
        }
    ) => {
        $(#[$meta])*
        $(
            #[doc = ""]
            #[doc = $description]
        )?
        #[derive(Debug, Clone, Copy, Default)]
        $vis struct $name;

        impl $crate::channel::Channel for $name {
            const PATH: &'static str = $path;
            $(const DESCRIPTION: &'static str = $description;)?
            $(
                const ROOM_ID: $crate::channel::RoomIdRule = {
                    #[allow(unused_imports)]
                    use $crate::channel::RoomIdRule::*;
                    $room_id
                };
            )?
            $(
                const WIRES: $crate::wire::Wires = {
                    #[allow(unused_imports)]
                    use $crate::wire::Wires;
                    $wires
                };
            )?
            type In<'a> = $in;
            type Out<'a> = $out;
        }
    };
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::{RoomIdRule, glob_matches, is_uuid};

    #[test]
    fn uuids_in_either_case_and_nothing_else() {
        assert!(is_uuid("0b5c3c2e-6a4f-4f0e-9d1e-3f8a2b7c9d10"));
        assert!(is_uuid("0B5C3C2E-6A4F-4F0E-9D1E-3F8A2B7C9D10"));
        for bad in [
            "",
            "0b5c3c2e6a4f4f0e9d1e3f8a2b7c9d10",
            "0b5c3c2e-6a4f-4f0e-9d1e-3f8a2b7c9d1",
            "0b5c3c2e-6a4f-4f0e-9d1e-3f8a2b7c9d100",
            "0b5c3c2e-6a4f-4f0e-9d1e-3f8a2b7c9d1g",
            "0b5c3c2e-6a4f-4f0e-9d1e-3f8a2b7c9d10-",
            "{0b5c3c2e-6a4f-4f0e-9d1e-3f8a2b7c9d10}",
        ] {
            assert!(!is_uuid(bad), "{bad}");
        }
    }

    #[test]
    fn glob_patterns() {
        let cases: &[(&str, &str, bool)] = &[
            ("lobby", "lobby", true),
            ("lobby", "lobby2", false),
            ("", "", true),
            ("", "a", false),
            ("*", "", true),
            ("*", "anything at all", true),
            ("game-*", "game-", true),
            ("game-*", "game-42", true),
            ("game-*", "gam", false),
            ("*-room", "big-room", true),
            ("*-room", "big-roomy", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("a*b*c", "abcabc", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a?c", "aéc", true),
            ("[0-9]*", "7up", true),
            ("[0-9]*", "up", false),
            ("team-[a-z][a-z0-9_]", "team-q_", true),
            ("team-[a-z][a-z0-9_]", "team-Q_", false),
            ("[!a-z]", "A", true),
            ("[^a-z]", "a", false),
            ("[]x]", "]", true),
            ("[]x]", "x", true),
            ("[a-]", "-", true),
            ("[a-]", "b", false),
            ("[a-]", "a", true),
            ("[abc", "[abc", true),
            ("\\*", "*", true),
            ("\\*", "x", false),
            ("\\", "\\", true),
            ("**x", "x", true),
        ];
        for &(pattern, text, want) in cases {
            assert_eq!(glob_matches(pattern, text), want, "{pattern:?} on {text:?}");
        }
    }

    #[test]
    fn a_pattern_of_many_stars_is_still_quick_on_the_longest_id() {
        // The classic blow-up for backtracking matchers: bounded here by
        // pattern × text steps.
        let text = "a".repeat(crate::room::MAX_ROOM_ID_LEN);
        assert!(!glob_matches("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", &text));
        assert!(RoomIdRule::Pattern("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*").allows(&text));
    }
}
