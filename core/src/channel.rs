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

    /// Whether `room` is an acceptable room id. The default accepts any
    /// non-empty id of at most [`MAX_ROOM_ID_LEN`] bytes; a channel may be
    /// stricter (e.g. UUIDs only). The implicit `"default"` room of the
    /// Alepha wire is never checked, as in Alepha.
    fn validate_room_id(room: &str) -> bool {
        !room.is_empty() && room.len() <= MAX_ROOM_ID_LEN
    }

    /// Checks on a client message beyond its shape; the error text is sent
    /// to the client.
    fn validate(message: &Self::Out<'_>) -> Result<(), &'static str> {
        let _ = message;
        Ok(())
    }
}

/// Declare a [`Channel`].
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
/// use roomwire_core::channel::Channel;
/// assert_eq!(Chat::PATH, "/ws/chat");
/// assert!(Chat::validate_room_id("lobby"));
/// ```
#[macro_export]
macro_rules! channel {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            path: $path:expr,
            in: $in:ty,
            out: $out:ty $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default)]
        $vis struct $name;

        impl $crate::channel::Channel for $name {
            const PATH: &'static str = $path;
            type In<'a> = $in;
            type Out<'a> = $out;
        }
    };
}
