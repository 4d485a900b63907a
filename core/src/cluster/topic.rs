//! The names of the topics (Redis channels) nodes publish on and subscribe
//! to, so that a node hears a room's traffic only while it has members in
//! that room.
//!
//! | Topic | Name | Subscribed by |
//! |---|---|---|
//! | a room | `rw:<n>:<path>:r:<room>` | nodes with a member in the room |
//! | a user | `rw:<n>:<path>:u:<user>` | nodes with a connection of the user |
//! | a channel | `rw:<n>:<path>:all` | every node serving the channel |
//! | a node | `rw:node:<tag>` | the node whose connection ids carry `tag` |
//!
//! `<n>` is the path's length in bytes, so that no path and room can spell
//! another pair's topic; `<tag>` is eight lowercase hex digits.

use core::fmt;

use super::ConnectionId;

/// A topic, by what it carries. Its [`Display`](fmt::Display) is its name.
///
/// ```
/// use roomwire_core::cluster::Topic;
/// assert_eq!(Topic::Room { path: "/ws/chat", room: "lobby" }.to_string(), "rw:8:/ws/chat:r:lobby");
/// assert_eq!(Topic::Channel { path: "/ws/chat" }.to_string(), "rw:8:/ws/chat:all");
/// assert_eq!(Topic::Node { tag: 0x1b4e28ba }.to_string(), "rw:node:1b4e28ba");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic<'a> {
    /// A room of a channel.
    Room {
        /// The channel's path.
        path: &'a str,
        /// The room.
        room: &'a str,
    },
    /// The connections of a user on a channel.
    User {
        /// The channel's path.
        path: &'a str,
        /// The user id.
        user: &'a str,
    },
    /// Every connection of a channel.
    Channel {
        /// The channel's path.
        path: &'a str,
    },
    /// One node: messages for connections it holds.
    Node {
        /// The node's tag (see [`node_tag_of`]).
        tag: u32,
    },
}

impl fmt::Display for Topic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Room { path, room } => write!(f, "rw:{}:{path}:r:{room}", path.len()),
            Topic::User { path, user } => write!(f, "rw:{}:{path}:u:{user}", path.len()),
            Topic::Channel { path } => write!(f, "rw:{}:{path}:all", path.len()),
            Topic::Node { tag } => write!(f, "rw:node:{tag:08x}"),
        }
    }
}

/// The node tag a connection id carries: ids minted by a clustered node
/// are `ws-<uuid>` whose first eight hex digits are the node's tag (see
/// [`connection_id`]). `None` for any other id.
///
/// ```
/// use roomwire_core::cluster::node_tag_of;
/// assert_eq!(node_tag_of("ws-1b4e28ba-2fa1-41d2-883f-0016d3cca427"), Some(0x1b4e28ba));
/// assert_eq!(node_tag_of("ws-1"), None);
/// ```
pub fn node_tag_of(connection_id: &str) -> Option<u32> {
    let hex = connection_id.strip_prefix("ws-")?.get(..8)?;
    if !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// A connection id for a node with `tag`: `ws-` and a version 4 UUID
/// whose first 32 bits are the tag and whose other bits come from
/// `random`, so that any node can tell which node holds a connection.
///
/// ```
/// use roomwire_core::cluster::{connection_id, node_tag_of};
/// let id = connection_id(0x1b4e28ba, [0xff; 16]);
/// assert_eq!(id.as_str(), "ws-1b4e28ba-ffff-4fff-bfff-ffffffffffff");
/// assert_eq!(node_tag_of(&id), Some(0x1b4e28ba));
/// ```
pub fn connection_id(tag: u32, random: [u8; 16]) -> heapless::String<39> {
    let mut id = heapless::String::new();
    let _ = id.push_str(ConnectionId::new(tag, random).text().as_str());
    id
}

/// The topics an emit is published on, in this order: the channel's if it
/// names no room, user or connection; each room's; each user's; the node
/// topic of each named connection not held by the publisher
/// (`publisher_tag`), and the channel's for a connection id with no tag.
/// A topic may come more than once (a room named twice, two connections
/// of one node): callers publish on, or expect, each once. The publisher
/// publishes on them and a receiver computes the same list to know which
/// copies of a message to expect. Linear in the lists.
///
/// ```
/// use roomwire_core::cluster::{Topic, connection_id, emit_topics};
/// let mine = connection_id(1, [0; 16]);
/// let theirs = connection_id(2, [0; 16]);
/// let mut topics = Vec::new();
/// emit_topics("/p", &["a"], &["u"], &[mine.as_str(), theirs.as_str()], 1, |t| topics.push(t.to_string()));
/// assert_eq!(topics, ["rw:2:/p:r:a", "rw:2:/p:u:u", "rw:node:00000002"]);
/// let _ = Topic::Channel { path: "/p" };
/// ```
pub fn emit_topics<'a, R: AsRef<str>, U: AsRef<str>, C: AsRef<str>>(
    path: &'a str,
    rooms: &'a [R],
    users: &'a [U],
    connections: &[C],
    publisher_tag: u32,
    mut topic: impl FnMut(Topic<'a>),
) {
    let channel_wide = rooms.is_empty() && users.is_empty() && connections.is_empty();
    if channel_wide {
        topic(Topic::Channel { path });
    }
    for room in rooms {
        topic(Topic::Room { path, room: room.as_ref() });
    }
    for user in users {
        topic(Topic::User { path, user: user.as_ref() });
    }
    let mut untagged = false;
    for id in connections {
        match node_tag_of(id.as_ref()) {
            Some(tag) if tag == publisher_tag => {}
            Some(tag) => topic(Topic::Node { tag }),
            None => untagged = true,
        }
    }
    if untagged && !channel_wide {
        // An id no node minted as its own: every node looks.
        topic(Topic::Channel { path });
    }
}
