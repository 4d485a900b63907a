//! Owned values handed to the application: messages, close frames and
//! handshake results.

use roomwire_core::handshake::Request;
use roomwire_core::{CloseCode, MessageKind};

/// The borrowed message type of the core, accepted by
/// [`WebSocket::feed`](crate::WebSocket::feed) and
/// [`WebSocket::send`](crate::WebSocket::send).
pub use roomwire_core::Message as MessageRef;

/// A whole text or binary message.
///
/// Received from [`WebSocket::recv`](crate::WebSocket::recv); sent with
/// [`WebSocket::send`](crate::WebSocket::send)`(&message)`.
///
/// ```
/// use roomwire_tokio::{Message, MessageRef};
/// let m = Message::from("hello");
/// assert_eq!(m.as_ref(), MessageRef::Text("hello"));
/// assert_eq!(Message::from(vec![1, 2]).len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Message {
    /// A text message (valid UTF-8, checked by the core).
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl Message {
    /// Text or binary.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Text(_) => MessageKind::Text,
            Message::Binary(_) => MessageKind::Binary,
        }
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }

    /// The text, if this is a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(t) => Some(t),
            Message::Binary(_) => None,
        }
    }

    /// Borrow as the core's message type, for sending.
    pub fn as_ref(&self) -> MessageRef<'_> {
        match self {
            Message::Text(t) => MessageRef::Text(t),
            Message::Binary(b) => MessageRef::Binary(b),
        }
    }

    /// The payload, consuming the message.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Message::Text(t) => t.into_bytes(),
            Message::Binary(b) => b,
        }
    }
}

impl<'a> From<&'a Message> for MessageRef<'a> {
    fn from(m: &'a Message) -> Self {
        m.as_ref()
    }
}

impl From<String> for Message {
    fn from(t: String) -> Self {
        Message::Text(t)
    }
}

impl From<&str> for Message {
    fn from(t: &str) -> Self {
        Message::Text(t.to_owned())
    }
}

impl From<Vec<u8>> for Message {
    fn from(b: Vec<u8>) -> Self {
        Message::Binary(b)
    }
}

impl From<&[u8]> for Message {
    fn from(b: &[u8]) -> Self {
        Message::Binary(b.to_vec())
    }
}

/// The close frame the peer sent, see
/// [`WebSocket::peer_close`](crate::WebSocket::peer_close).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The peer's close code; `None` for an empty close frame (1005, "no
    /// status received").
    pub code: Option<CloseCode>,
    /// The peer's reason (possibly empty).
    pub reason: String,
}

/// What a server learnt from the client's Upgrade request, owned.
///
/// Returned by [`WebSocket::accept`](crate::WebSocket::accept) and
/// [`WebSocket::accept_with`](crate::WebSocket::accept_with).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeInfo {
    /// The request path, without the query.
    pub path: String,
    /// The query string after `?`, if any (not percent-decoded).
    pub query: Option<String>,
    /// Every header line, in order, as (name, value).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The subprotocol the server selected, if any.
    pub protocol: Option<String>,
}

impl HandshakeInfo {
    pub(crate) fn from_request(request: &Request<'_>) -> Self {
        Self {
            path: request.path().to_owned(),
            query: request.query().map(str::to_owned),
            headers: request.headers().map(|(n, v)| (n.to_owned(), v.to_vec())).collect(),
            protocol: None,
        }
    }

    /// The first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }

    /// The first header named `name` as text, if it is UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// A server's answer to an Upgrade request, returned by the callback of
/// [`WebSocket::accept_with`](crate::WebSocket::accept_with).
///
/// ```
/// use roomwire_tokio::Decision;
/// let d = Decision::refuse(404, "no such room");
/// assert!(matches!(d, Decision::Refuse { status: 404, .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Upgrade the connection (101).
    Accept {
        /// The subprotocol to select; it should be one the client offered
        /// ([`Request::protocols`]).
        protocol: Option<String>,
        /// Extra header lines for the 101 response.
        headers: Vec<(String, String)>,
    },
    /// Refuse with an HTTP status (401, 403, 404, 503 …) and a text body.
    Refuse {
        /// The HTTP status.
        status: u16,
        /// Extra header lines (e.g. `WWW-Authenticate`).
        headers: Vec<(String, String)>,
        /// The response body, sent as `text/plain`.
        body: String,
    },
}

impl Decision {
    /// Accept without a subprotocol or extra headers.
    pub fn accept() -> Self {
        Decision::Accept { protocol: None, headers: Vec::new() }
    }

    /// Accept, selecting `protocol`.
    pub fn accept_protocol(protocol: impl Into<String>) -> Self {
        Decision::Accept { protocol: Some(protocol.into()), headers: Vec::new() }
    }

    /// Refuse with `status` and `body`.
    pub fn refuse(status: u16, body: impl Into<String>) -> Self {
        Decision::Refuse { status, headers: Vec::new(), body: body.into() }
    }
}

/// What a client learnt from the server's 101 response.
///
/// Returned by [`WebSocket::connect`](crate::WebSocket::connect) and
/// [`WebSocket::connect_with_stream`](crate::WebSocket::connect_with_stream).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Response {
    /// The subprotocol the server selected, if any.
    pub protocol: Option<String>,
}
