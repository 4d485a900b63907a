//! The adapter's error type.

use std::{fmt, io};

use roomwire_core::handshake::HandshakeError;
use roomwire_core::{ProtocolError, SendError, Timeout};

/// Everything that can go wrong with a [`WebSocket`](crate::WebSocket).
///
/// Protocol decisions (which frames are invalid, which close code answers
/// them, which handshakes are acceptable) are the core's; this type only
/// carries them to the application.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The stream failed, or the peer closed it without a close handshake
    /// ([`io::ErrorKind::UnexpectedEof`]).
    Io(io::Error),
    /// The opening handshake failed. A server has answered the client with
    /// [`HandshakeError::status`]; a client got a refusal
    /// ([`HandshakeError::Rejected`]) or an invalid answer.
    Handshake(HandshakeError),
    /// Server: the application refused the request (a
    /// [`Decision::Refuse`](crate::Decision::Refuse)); the refusal was sent.
    Refused {
        /// The HTTP status that was sent.
        status: u16,
    },
    /// The peer broke RFC 6455 or a configured limit. The close frame with
    /// [`ProtocolError::code`] has been sent and the connection is closed.
    Protocol(ProtocolError),
    /// A deadline passed: the opening handshake
    /// ([`Timeout::Handshake`]) or keepalive ([`Timeout::Keepalive`]). A
    /// server answers a handshake timeout with 408.
    Timeout(Timeout),
    /// The connection is closing or closed: messages can no longer be sent.
    Closed,
    /// The outbound queue is over [`Config::max_outbound`](crate::Config::max_outbound):
    /// [`flush`](crate::WebSocket::flush) before feeding more.
    QueueFull,
    /// The process's bound on queued bytes
    /// ([`set_outbound_limit`](crate::set_outbound_limit)) has no room for
    /// the message beyond this connection's first 64 KiB: nothing was
    /// queued. Flushing gives back only this connection's share; what
    /// other connections hold must be written (or their connections end)
    /// first. A server closes such a reader with 1013.
    OutboundLimit,
    /// A call the connection does not allow (e.g. a close code that may not
    /// be sent, a close reason over 123 bytes, a whole message while a
    /// fragmented one is in progress).
    Send(SendError),
    /// The URL given to [`WebSocket::connect`](crate::WebSocket::connect) is
    /// not a `ws://` URL this adapter can connect to.
    InvalidUrl(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Handshake(e) => write!(f, "handshake failed: {e}"),
            Error::Refused { status } => write!(f, "request refused with {status}"),
            Error::Protocol(e) => write!(f, "protocol error: {e}"),
            Error::Timeout(Timeout::Handshake) => f.write_str("opening handshake timed out"),
            Error::Timeout(Timeout::Close) => f.write_str("closing handshake timed out"),
            Error::Timeout(Timeout::Keepalive) => f.write_str("peer did not answer keepalive ping"),
            Error::Timeout(Timeout::Message) => f.write_str("peer did not finish a message in time"),
            Error::Closed => f.write_str("connection closed"),
            Error::QueueFull => f.write_str("outbound queue full"),
            Error::OutboundLimit => f.write_str("the process's outbound bound is reached"),
            Error::Send(e) => write!(f, "cannot send: {e}"),
            Error::InvalidUrl(why) => write!(f, "invalid URL: {why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Handshake(e) => Some(e),
            Error::Protocol(e) => Some(e),
            Error::Send(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Error::Handshake(e)
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Error::Protocol(e)
    }
}

impl From<SendError> for Error {
    /// [`SendError::NotOpen`] becomes [`Error::Closed`]; the rest
    /// [`Error::Send`].
    fn from(e: SendError) -> Self {
        match e {
            SendError::NotOpen => Error::Closed,
            e => Error::Send(e),
        }
    }
}
