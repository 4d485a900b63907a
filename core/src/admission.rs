//! Admitting an Upgrade request to a channel: the one order of steps every
//! roomwire server follows (the tokio server, its axum mount and the
//! embassy server), with every answer a client can get on the way.
//!
//! 0. **A place to handshake** ([`handshake_place`]), before a byte of the
//!    request is read: a server holding as many handshakes in progress
//!    as it may answers 503 ([`HANDSHAKES_FULL`]); one address holding as
//!    many as it may, 429 ([`ADDRESS_BUSY`]). A client that then sends
//!    nothing is answered 408 at the connection's
//!    [`first_byte_timeout`](crate::Config::first_byte_timeout), one that
//!    does not finish its request at the
//!    [`handshake_timeout`](crate::Config::handshake_timeout).
//! 1. **Route** ([`screen`]): the request path must name a channel, else
//!    404 ([`NOT_FOUND`]).
//! 2. **Server gates** ([`screen`]): a server that is shutting down answers
//!    503 ([`SHUTTING_DOWN`]); one at its connection cap 503
//!    ([`UNAVAILABLE`]); one whose client's address holds as many open
//!    connections as one address may, 429 ([`ADDRESS_FULL`]).
//!    A browser from an origin the endpoint does not allow gets 403
//!    ([`FORBIDDEN_ORIGIN`], see [`Origins`]), before any hook sees its
//!    cookies.
//! 3. **Wire**: the subprotocols offered choose the wire
//!    ([`WireFormat::negotiate`](crate::WireFormat::negotiate)).
//! 4. **The application's decision** (authorize, resolve the user): accept
//!    with an optional user and room, or refuse with any status (a
//!    `secure` endpoint without a user: [`UNAUTHORIZED`]). A decision that
//!    misses the handshake deadline is 503 ([`DECISION_TIMED_OUT`]).
//! 5. **101**, selecting the wire's subprotocol
//!    ([`WireFormat::protocol`](crate::WireFormat::protocol)).
//! 6. **Registration**
//!    ([`ServerSession::register`](crate::session::ServerSession::register)):
//!    over the per-user connection cap the connection is closed with 1008
//!    ([`USER_CAP`]); then it joins its rooms
//!    ([`dispatch::join_handshake_rooms`](crate::dispatch::join_handshake_rooms)), and a refusal there closes it
//!    with 1008 and the reason. Alepha accepts first and closes after, so a
//!    browser sees the reason; roomwire does the same.
//!
//! A server takes these steps through a
//! [`ServerSession`](crate::session::ServerSession), which holds the
//! order; the answers here are its parts. Every server registers before
//! the 101 goes out (the tokio server queues its 101 until then; the
//! embassy server, with no application decision, registers before writing
//! it), so that a client with its 101 is in its rooms; to the client it is
//! the same: the close of a refused registration still follows the 101.
//!
//! Once open, a connection can still be closed by the server for two
//! reasons of its own: [`SERVER_SHUTDOWN`] and [`OUTBOUND_FULL`].

use crate::close::CloseCode;
use crate::dispatch::Refusal;

/// An HTTP answer instead of the 101: a status and a `text/plain` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpRefusal {
    /// The HTTP status.
    pub status: u16,
    /// The response body.
    pub body: &'static str,
}

impl core::fmt::Display for HttpRefusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "refused with HTTP {}: {}", self.status, self.body)
    }
}

impl core::error::Error for HttpRefusal {}

/// No channel at the request's path.
pub const NOT_FOUND: HttpRefusal = HttpRefusal { status: 404, body: "Not Found" };
/// The server is shutting down: no new connections.
pub const SHUTTING_DOWN: HttpRefusal = HttpRefusal { status: 503, body: "Server shutting down" };
/// The server holds as many connections as it may.
pub const UNAVAILABLE: HttpRefusal = HttpRefusal { status: 503, body: "Service Unavailable" };
/// A `secure` endpoint and no user: the application's decision found no
/// credentials.
pub const UNAUTHORIZED: HttpRefusal = HttpRefusal { status: 401, body: "Unauthorized" };
/// The request reached an upgrade handler but is no WebSocket Upgrade the
/// core could read (a framework routed it there).
pub const BAD_REQUEST: HttpRefusal = HttpRefusal { status: 400, body: "Bad Request" };
/// The server could not write its own answer.
pub const INTERNAL_ERROR: HttpRefusal = HttpRefusal { status: 500, body: "Internal Server Error" };
/// The application did not decide before the handshake deadline.
pub const DECISION_TIMED_OUT: HttpRefusal = HttpRefusal { status: 503, body: "Authorization timed out" };

/// The user already has as many connections as the endpoint allows.
///
/// Some of them may be dead (a phone that lost its network and reconnects)
/// and would stand in the way until keepalive notices. So a server that
/// refuses a connection for the cap also checks the user's other
/// connections ([`Connection::check_alive`](crate::Connection::check_alive)
/// within [`USER_CAP_PROBE`]): the dead ones close, and a later attempt
/// finds room (a browser's, or the application's: roomwire's own client
/// takes the 1008 as final and does not retry by itself, see
/// [`crate::reconnect`]).
pub const USER_CAP: Refusal = Refusal { code: CloseCode::Policy, reason: "Max connections per user exceeded" };
/// How long a user's connections get to answer the ping of a
/// [`USER_CAP`] refusal.
pub const USER_CAP_PROBE: crate::Duration = crate::Duration::from_secs(5);
/// The server is shutting down: every open connection is closed with this.
pub const SERVER_SHUTDOWN: Refusal = Refusal { code: CloseCode::Away, reason: "Server shutting down" };
/// The client reads slower than the server must send: its outbound queue
/// is full, so it is closed rather than let its backlog grow.
pub const OUTBOUND_FULL: Refusal = Refusal { code: CloseCode::Again, reason: "Outbound queue full" };

/// As many handshakes are in progress as the server allows.
pub const HANDSHAKES_FULL: HttpRefusal = HttpRefusal { status: 503, body: "Too many handshakes in progress" };
/// As many handshakes from the client's address are in progress as the
/// server allows one address.
pub const ADDRESS_BUSY: HttpRefusal = HttpRefusal { status: 429, body: "Too many handshakes from this address" };

/// The client's address already holds as many open connections as the
/// server allows one address.
pub const ADDRESS_FULL: HttpRefusal = HttpRefusal { status: 429, body: "Too many connections from this address" };

/// Handshakes in progress, as [`handshake_place`] weighs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HandshakeLoad {
    /// In progress on the whole server.
    pub in_progress: usize,
    /// The server's cap.
    pub max: usize,
    /// In progress from the new stream's address (0 if the address is
    /// unknown).
    pub from_address: usize,
    /// The cap for one address.
    pub max_per_address: usize,
}

/// Whether a new stream may start its handshake (step 0): the address's
/// cap first, so that one busy address is told so (429) rather than that
/// the server is full (503).
///
/// ```
/// use roomwire_core::admission::{handshake_place, HandshakeLoad, ADDRESS_BUSY, HANDSHAKES_FULL};
/// let load = HandshakeLoad { in_progress: 10, max: 1024, from_address: 2, max_per_address: 32 };
/// assert_eq!(handshake_place(load), Ok(()));
/// assert_eq!(handshake_place(HandshakeLoad { from_address: 32, ..load }), Err(ADDRESS_BUSY));
/// assert_eq!(handshake_place(HandshakeLoad { in_progress: 1024, ..load }), Err(HANDSHAKES_FULL));
/// ```
pub fn handshake_place(load: HandshakeLoad) -> Result<(), HttpRefusal> {
    if load.from_address >= load.max_per_address {
        Err(ADDRESS_BUSY)
    } else if load.in_progress >= load.max {
        Err(HANDSHAKES_FULL)
    } else {
        Ok(())
    }
}

/// A browser page from an origin the endpoint does not allow.
pub const FORBIDDEN_ORIGIN: HttpRefusal = HttpRefusal { status: 403, body: "Origin not allowed" };

/// The server's own state, as [`screen`] needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gates {
    /// The server is shutting down.
    pub shutting_down: bool,
    /// The server is at its connection cap.
    pub full: bool,
    /// The client's address holds as many open connections as the server
    /// allows one address.
    pub address_full: bool,
    /// The request's `Origin` is not one the endpoint allows
    /// ([`Origins::allows`]).
    pub foreign_origin: bool,
}

/// Which web pages may open a connection to an endpoint.
///
/// A browser sends its cookies with a WebSocket handshake whatever page
/// opens it, so an endpoint that authenticates by cookie can be used by any
/// site the user visits (cross-site WebSocket hijacking) unless it checks
/// the `Origin` header, which browsers always send and pages cannot forge.
/// Requests without `Origin` come from programs, not from pages, and pass:
/// they carry no ambient credentials. Names are anything that is a `str`
/// (`&str` or `String`).
///
/// ```
/// use roomwire_core::admission::Origins;
/// let host = Some("chat.example");
/// assert!(Origins::<&str>::SameHost.allows(Some("https://chat.example"), host));
/// assert!(!Origins::<&str>::SameHost.allows(Some("https://evil.example"), host));
/// assert!(Origins::<&str>::SameHost.allows(None, host)); // not a browser
/// let list = ["https://app.example"];
/// assert!(Origins::Only(&list).allows(Some("https://APP.example"), host));
/// assert!(!Origins::Only(&list).allows(Some("null"), host));
/// ```
#[derive(Debug, PartialEq, Eq)]
pub enum Origins<'a, S = &'a str> {
    /// Every origin (the default, and Alepha's behaviour).
    Any,
    /// Pages served by the host the request names: the origin's
    /// `host[:port]` equals the `Host` header.
    SameHost,
    /// Exactly these origins (`scheme://host[:port]`, compared without
    /// regard to ASCII case).
    Only(&'a [S]),
}

impl<S> Clone for Origins<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for Origins<'_, S> {}

impl<S: AsRef<str>> Origins<'_, S> {
    /// Whether a request with this `Origin` header (`None`: absent) and
    /// this `Host` header may go on.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else { return true };
        match self {
            Origins::Any => true,
            Origins::SameHost => {
                let authority = origin.split_once("://").map(|(_, rest)| rest);
                matches!((authority, host), (Some(a), Some(h)) if !a.is_empty() && a.eq_ignore_ascii_case(h.trim()))
            }
            Origins::Only(list) => list.iter().any(|allowed| allowed.as_ref().eq_ignore_ascii_case(origin.trim())),
        }
    }
}

/// Steps 1 and 2: whether a request for a channel (`found`: its path
/// names one) may go on to the application's decision.
///
/// ```
/// use roomwire_core::admission::{screen, Gates, ADDRESS_FULL, FORBIDDEN_ORIGIN, NOT_FOUND, SHUTTING_DOWN};
/// assert_eq!(screen(true, Gates::default()), Ok(()));
/// let all = Gates { shutting_down: true, full: true, address_full: true, foreign_origin: true };
/// assert_eq!(screen(false, all), Err(NOT_FOUND));
/// assert_eq!(screen(true, all), Err(SHUTTING_DOWN));
/// assert_eq!(screen(true, Gates { foreign_origin: true, ..Gates::default() }), Err(FORBIDDEN_ORIGIN));
/// assert_eq!(screen(true, Gates { address_full: true, ..Gates::default() }), Err(ADDRESS_FULL));
/// ```
pub fn screen(found: bool, gates: Gates) -> Result<(), HttpRefusal> {
    if !found {
        Err(NOT_FOUND)
    } else if gates.shutting_down {
        Err(SHUTTING_DOWN)
    } else if gates.full {
        Err(UNAVAILABLE)
    } else if gates.address_full {
        Err(ADDRESS_FULL)
    } else if gates.foreign_origin {
        Err(FORBIDDEN_ORIGIN)
    } else {
        Ok(())
    }
}
