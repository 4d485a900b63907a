//! The handler's view of one message: Alepha's `WebSocketHandlerContext`.

use std::fmt;

use roomwire_core::RoomId;
use roomwire_core::channel::Channel;
use roomwire_core::wire::WireFormat;

use super::Server;
use super::emit::{self, EmitError, Spec};
use super::registry::Registered;

/// Options of [`Context::reply_with`]: Alepha's `reply` options without
/// the message.
///
/// A reply goes to one room: the one the message was handled in, or
/// [`room`](Self::room) (any room, joined or not). Without
/// [`except_self`](Self::except_self) the sender receives its own reply
/// too, as in Alepha.
///
/// ```
/// use roomwire_tokio::server::Reply;
/// let others = Reply::new().except_self();
/// let elsewhere = Reply::new().room("room-b").except_user("mallory");
/// # let _ = (others, elsewhere);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Reply {
    room: Option<String>,
    except_self: bool,
    except_connections: Vec<String>,
    except_users: Vec<String>,
}

impl Reply {
    /// Reply to the message's room, the sender included.
    pub fn new() -> Self {
        Self::default()
    }

    /// Leave the sender out.
    pub fn except_self(mut self) -> Self {
        self.except_self = true;
        self
    }

    /// Reply to `room` instead of the message's room.
    pub fn room(mut self, room: impl Into<String>) -> Self {
        self.room = Some(room.into());
        self
    }

    /// Leave the connection `id` out.
    pub fn except_connection(mut self, id: impl Into<String>) -> Self {
        self.except_connections.push(id.into());
        self
    }

    /// Leave the connections of `user` out.
    pub fn except_user(mut self, user: impl Into<String>) -> Self {
        self.except_users.push(user.into());
        self
    }
}

/// One client message being handled: the typed message, who sent it, the
/// room it is handled in, and `reply`.
///
/// `message` may borrow from the received frame for `'a`, the life of the
/// handler's future.
pub struct Context<'a, C: Channel> {
    /// The validated client message (Alepha's `message`).
    pub message: C::Out<'a>,
    room: RoomId,
    registered: &'a Registered,
    /// The connection's id, as text.
    id: &'a str,
}

impl<C: Channel> fmt::Debug for Context<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("connection_id", &self.connection_id())
            .field("user_id", &self.user_id())
            .field("room_id", &self.room_id())
            .finish_non_exhaustive()
    }
}

impl<'a, C: Channel> Context<'a, C> {
    pub(crate) fn new(message: C::Out<'a>, room: RoomId, registered: &'a Registered, id: &'a str) -> Self {
        Self { message, room, registered, id }
    }

    /// The sender's connection id, `ws-<uuid v4>`.
    pub fn connection_id(&self) -> &'a str {
        self.id
    }

    /// The sender's user, if authenticated.
    pub fn user_id(&self) -> Option<&'a str> {
        self.registered.user.as_deref()
    }

    /// The room the message is handled in: the one the frame names if the
    /// sender joined it, else (Alepha wire) the sender's first room.
    pub fn room_id(&self) -> &str {
        &self.room
    }

    /// The wire the sender speaks.
    pub fn wire(&self) -> WireFormat {
        self.registered.session.format()
    }

    /// The server, to emit elsewhere or look connections up.
    pub fn server(&self) -> &'a Server {
        self.registered.server()
    }

    /// The message, consuming the context.
    pub fn into_message(self) -> C::Out<'a> {
        self.message
    }

    /// Send `message` to everyone in the message's room, the sender
    /// included. Returns how many connections it reached.
    pub fn reply(&self, message: &C::In<'_>) -> Result<usize, EmitError> {
        self.reply_with(message, &Reply::new())
    }

    /// Send `message` to a room with [`Reply`] options (Alepha's
    /// `reply({ message, roomId, exceptSelf, exceptConnectionIds,
    /// exceptUserIds })`). Returns how many connections it reached.
    pub fn reply_with(&self, message: &C::In<'_>, options: &Reply) -> Result<usize, EmitError> {
        let room = options.room.as_deref().unwrap_or(self.room.as_str());
        let spec = Spec {
            rooms: std::slice::from_ref(&room),
            users: &[],
            connections: &[],
            except_connections: &options.except_connections,
            except_users: &options.except_users,
            except_member: options.except_self.then_some(self.registered.member),
        };
        emit::deliver(&self.registered.cell, &spec, message)
    }
}
