//! Where a client's connection is, and what can fail.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use roomwire_core::client::ClientError;
use roomwire_core::payload::EncodeError;
use roomwire_core::{CloseCode, WireFormat};

use super::MAX_ROOMS;

/// Where a [`Client`](super::Client)'s connection is (Alepha's `isConnecting`,
/// `isConnected`, `isError` and `error`, as one value).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Disconnected by [`Client::disconnect`](super::Client::disconnect), until
    /// [`Client::reconnect`](super::Client::reconnect).
    Disconnected,
    /// Connecting (TCP, then the opening handshake).
    Connecting {
        /// Consecutive failures before this attempt (0 for the first).
        attempt: u32,
    },
    /// Connected. On the roomwire wire, the wanted rooms are being joined
    /// (see [`Client::rooms`](super::Client::rooms) and [`Client::join`](super::Client::join)).
    Connected {
        /// The wire the server selected.
        format: WireFormat,
    },
    /// The last attempt failed or the connection was lost; the next
    /// attempt starts after `retry_in`.
    Error {
        /// What went wrong.
        error: ConnectionError,
        /// Consecutive failures so far (1 after the first).
        attempt: u32,
        /// The delay before the next attempt.
        retry_in: Duration,
    },
    /// The client is closed: by [`Client::close`](super::Client::close) (or when every handle
    /// and the [`Incoming`](super::Incoming) stream were dropped), with `error: None`; or
    /// it stopped with an error: one that retrying cannot help
    /// ([`Ending::is_final`](roomwire_core::reconnect::Ending::is_final),
    /// such as a full room), or the last after
    /// [`ReconnectPolicy::max_retries`](super::ReconnectPolicy::max_retries) failures in a row.
    Closed {
        /// Why it gave up, if it did.
        error: Option<ConnectionError>,
    },
}

impl ConnectionState {
    /// Whether a connection attempt is in progress.
    pub fn is_connecting(&self) -> bool {
        matches!(self, Self::Connecting { .. })
    }

    /// Whether the client is connected.
    pub fn is_connected(&self) -> bool {
        matches!(self, Self::Connected { .. })
    }

    /// Whether the client is waiting to retry after an error.
    pub fn is_error(&self) -> bool {
        matches!(self, Self::Error { .. })
    }

    /// Whether the client is closed for good.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed { .. })
    }

    /// The error of an [`Error`](Self::Error) or of a
    /// [`Closed`](Self::Closed) client that gave up.
    pub fn error(&self) -> Option<&ConnectionError> {
        match self {
            Self::Error { error, .. } | Self::Closed { error: Some(error) } => Some(error),
            _ => None,
        }
    }
}

/// Why a connection attempt failed or a connection ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The socket failed: TCP connect, the opening handshake (refused,
    /// invalid, timed out), a frame the server should not have sent, an
    /// I/O error, a keepalive ping left unanswered.
    WebSocket(Arc<crate::Error>),
    /// The server closed the connection with a close frame.
    ClosedByServer {
        /// Its close code (`None`: an empty close frame).
        code: Option<CloseCode>,
        /// Its reason.
        reason: String,
    },
    /// The server broke the rooms protocol (on the roomwire wire, a frame
    /// that is not an envelope; a subprotocol the client did not offer; a
    /// message too big for the client). The client closed with the code the core
    /// chose for it ([`ClientError::close_code`]: 1002, or 1009).
    Protocol(ClientError),
    /// The server did not answer a join or leave within
    /// [`ClientOptions::request_timeout`](super::ClientOptions::request_timeout).
    RequestTimeout,
    /// The handshake request target could not be built.
    Target,
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WebSocket(e) => fmt::Display::fmt(e, f),
            Self::ClosedByServer { code: Some(code), reason } => {
                write!(f, "server closed the connection ({}: {reason:?})", u16::from(*code))
            }
            Self::ClosedByServer { code: None, .. } => f.write_str("server closed the connection"),
            Self::Protocol(e) => write!(f, "server broke the rooms protocol: {e}"),
            Self::RequestTimeout => f.write_str("server did not answer a room request in time"),
            Self::Target => f.write_str("cannot build the handshake request target"),
        }
    }
}

impl std::error::Error for ConnectionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::WebSocket(e) => Some(&**e),
            Self::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

impl From<crate::Error> for ConnectionError {
    fn from(e: crate::Error) -> Self {
        Self::WebSocket(Arc::new(e))
    }
}

/// Why [`Client::connect`](super::Client::connect) refused to start.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is not `ws[s]://host[:port][/prefix][?query]` (`wss://`
    /// needs the `tls` feature, on by default).
    InvalidUrl(&'static str),
    /// A room of [`ClientOptions::rooms`](super::ClientOptions::rooms) is not a valid room id for the
    /// channel.
    InvalidRoom(String),
    /// More rooms than [`MAX_ROOMS`].
    TooManyRooms,
    /// Not called from within a tokio runtime.
    NoRuntime,
    /// The operating system's random number generator (masking keys,
    /// handshake nonces) failed.
    Random(String),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUrl(why) => write!(f, "invalid URL: {why}"),
            Self::InvalidRoom(room) => write!(f, "invalid room id {room:?}"),
            Self::TooManyRooms => write!(f, "more than {MAX_ROOMS} rooms"),
            Self::NoRuntime => f.write_str("no tokio runtime"),
            Self::Random(e) => write!(f, "random number generator: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Why [`Client::send`](super::Client::send) refused a message. Nothing was queued.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The room id is empty, too long, or not one the channel's
    /// [`validate_room_id`](roomwire_core::Channel::validate_room_id) allows.
    InvalidRoomId,
    /// The channel's [`validate`](roomwire_core::Channel::validate) refused the message,
    /// with this reason.
    Invalid(&'static str),
    /// The message has no encoding in the wire's format.
    Encode(EncodeError),
    /// The client is on (or asks for) the Alepha wire, which cannot carry
    /// a message whose JSON is `null`, `false`, `0` or `""`
    /// ([`ClientError::FalsyOnAlepha`](roomwire_core::client::ClientError::FalsyOnAlepha)).
    FalsyOnAlepha,
    /// The client is closed.
    Closed,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRoomId => f.write_str("invalid room id"),
            Self::Invalid(reason) => write!(f, "Message validation failed: {reason}"),
            Self::Encode(e) => write!(f, "cannot encode the message: {e}"),
            Self::FalsyOnAlepha => fmt::Display::fmt(&roomwire_core::client::ClientError::FalsyOnAlepha, f),
            Self::Closed => f.write_str("client closed"),
        }
    }
}

impl std::error::Error for SendError {}

/// Why a [`Client::join`](super::Client::join) or [`Client::leave`](super::Client::leave) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoomError {
    /// The room id is empty, too long, or refused by the channel's
    /// [`validate_room_id`](roomwire_core::Channel::validate_room_id).
    InvalidRoomId,
    /// The client already wants [`MAX_ROOMS`] rooms.
    TooManyRooms,
    /// The server refused (roomwire wire); for a join, the room is no
    /// longer wanted.
    Refused {
        /// One of the [error codes](roomwire_core::envelope::code).
        code: u16,
        /// The server's explanation.
        text: String,
    },
    /// A later leave (of a join) or join (of a leave) of the same room
    /// overrode this request before it completed.
    Superseded,
    /// The core refused the request for another reason.
    Client(ClientError),
    /// The client closed before the request completed.
    Closed,
}

impl fmt::Display for RoomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRoomId => f.write_str("invalid room id"),
            Self::TooManyRooms => write!(f, "more than {MAX_ROOMS} rooms"),
            Self::Refused { code, text } => write!(f, "refused by the server ({code}): {text}"),
            Self::Superseded => f.write_str("superseded by a later request for the same room"),
            Self::Client(e) => fmt::Display::fmt(e, f),
            Self::Closed => f.write_str("client closed"),
        }
    }
}

impl std::error::Error for RoomError {}
