//! The server session: one connection of a room server, from its Upgrade
//! request to its end.
//!
//! A [`ServerSession`] holds the connection's rooms-layer state (its wire,
//! its member id, where it is in admission, the close the server chose)
//! and makes every decision of that layer. It does not own the WebSocket
//! [`Connection`]: an adapter keeps that with its transport buffers and
//! lends it to each step that writes (the 101, a close). The steps, in
//! their one order:
//!
//! | the adapter | the session |
//! |---|---|
//! | reads the request ([`Event::Request`](crate::Event::Request)) and makes a session with [`new`](ServerSession::new) | negotiates the wire from the offered subprotocols |
//! | looks up the endpoint of the path, then [`screen`](ServerSession::screen)s with its gates | 404, 503 during shutdown or at the connection cap |
//! | asks the application (authorization, user), if it has one, and answers its refusal; answers [`refusal`](ServerSession::refusal) if no decision comes in time or the server starts shutting down | the HTTP status and body of those |
//! | [`register`](ServerSession::register)s the connection under a member id | its rooms (the Alepha query, or the application's room), the per-user cap; on refusal the close code and reason |
//! | [`accept`](ServerSession::accept)s: writes the 101 (before or after registering) | the subprotocol of the wire; the close of a refused registration right after the 101 |
//! | passes each whole message to [`handle_message`](ServerSession::handle_message) | the room it is handled in, joins and leaves, acknowledgements and error frames |
//! | reports a failed handler with [`handler_failed`](ServerSession::handler_failed) | the error frame and its text |
//! | reports a full outbound queue or shutdown with [`close`](ServerSession::close) (or [`closing`](ServerSession::closing) for its own socket) | the close code and reason, once |
//! | calls [`leave`](ServerSession::leave) when the connection ends | |
//!
//! The tokio server, its axum mount and the embassy server each drive one
//! session per connection, so they admit, answer and close alike.
//!
//! ```
//! use roomwire_core::admission::Gates;
//! use roomwire_core::dispatch::Inbound;
//! use roomwire_core::handshake::parse_request;
//! use roomwire_core::room::{FixedRoomTable, MemberId, RoomTable};
//! use roomwire_core::session::ServerSession;
//! use roomwire_core::{Config, Connection, Event, Instant, WireFormat};
//! #[derive(Debug, serde::Serialize, serde::Deserialize)]
//! pub struct Say<'a> { pub content: &'a str }
//! roomwire_core::channel! { /// Chat.
//!     pub struct Chat { path: "/ws/chat", in: Say<'a>, out: Say<'a> } }
//!
//! let now = Instant::ZERO;
//! let mut conn = Connection::server(Config::default(), now);
//! let mut request = *b"GET /ws/chat?roomId=lobby HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\
//!     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
//! let Some(Event::Request(request)) = conn.handle_input(now, &mut request).event else { unreachable!() };
//! let mut session = ServerSession::new(&request);
//! let query = request.query().map(str::to_owned);
//! session.screen(request.path() == "/ws/chat", Gates::default())?;
//! let mut out = [0u8; 256];
//! let n = session.accept(&mut conn, now, &mut out)?;
//! assert!(out[..n].starts_with(b"HTTP/1.1 101"));
//! let mut table = FixedRoomTable::<8, 4, 4, 4>::new();
//! session.register::<Chat, _>(MemberId(0), query.as_deref(), None, false, &roomwire_core::dispatch::AnyRoom, &mut table)?;
//! assert!(table.is_in_room(MemberId(0), "lobby"));
//! let message = br#"{"message":{"content":"hi"}}"#;
//! match session.handle_message::<Chat, _>(conn.state(), &mut table, &roomwire_core::dispatch::AnyRoom, message, &mut [0; 64], &mut out) {
//!     Inbound::Message { room, message } => assert_eq!((room.as_str(), message.content), ("lobby", "hi")),
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;

use crate::admission::{self, Gates, HttpRefusal};
use crate::channel::Channel;
use crate::connection::{Connection, MaskKeySource, SendError, State};
use crate::dispatch::{self, Inbound, Refusal, RoomGate};
use crate::error::InsufficientSize;
use crate::handshake::Request;
use crate::room::{MemberId, RoomTable, TableAccess};
use crate::time::Instant;
use crate::wire::WireFormat;

/// Longest handler error text sent back to the sender; longer is cut (at a
/// character boundary).
pub const MAX_ERROR_TEXT: usize = 1024;

/// Where a [`ServerSession`] is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerPhase {
    /// The request was read; the endpoint and the gates are next.
    Screening,
    /// Screened: the application decides; the 101 and the registration
    /// follow, in either order.
    Deciding,
    /// Answered 101, not yet registered.
    Accepted,
    /// Answered 101 and registered in its rooms: messages flow.
    Open,
    /// Refused (HTTP or, after the 101, with a close), closing or left.
    Ended,
}

/// Why the application's decision did not come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undecided {
    /// The handshake deadline passed first.
    TimedOut,
    /// The server started shutting down first.
    ShuttingDown,
}

/// A step called out of order (e.g. a message before registration): the
/// session is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfOrder {
    /// Where the session was.
    pub phase: ServerPhase,
}

impl fmt::Display for OutOfOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "server session step out of order (in {:?})", self.phase)
    }
}

impl core::error::Error for OutOfOrder {}

/// Why a [`ServerSession`] step that writes failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepError {
    /// Called out of order.
    Order(OutOfOrder),
    /// The connection refused to write (buffer too small, not open).
    Send(SendError),
}

impl From<SendError> for StepError {
    fn from(e: SendError) -> Self {
        Self::Send(e)
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Order(e) => e.fmt(f),
            Self::Send(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for StepError {}

/// Why the server closes a connection it has registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerClose {
    /// The connection's outbound queue overflowed (a slow consumer).
    OutboundFull,
    /// The server is shutting down.
    Shutdown,
}

impl ServerClose {
    /// The close code and reason sent.
    pub fn refusal(self) -> Refusal {
        match self {
            Self::OutboundFull => admission::OUTBOUND_FULL,
            Self::Shutdown => admission::SERVER_SHUTDOWN,
        }
    }
}

/// One connection of a room server: see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ServerSession {
    format: WireFormat,
    screened: bool,
    accepted: bool,
    /// The member id, once registered.
    member: Option<MemberId>,
    /// The close the server sent or must send (the first one): a refused
    /// registration, a full queue, shutdown. Reported as the end.
    ours: Option<Refusal>,
    ended: bool,
}

impl ServerSession {
    /// A session for a parsed Upgrade `request`: the wire is the first
    /// roomwire subprotocol offered, else Alepha's.
    pub fn new(request: &Request<'_>) -> Self {
        Self::on_wire(WireFormat::negotiate(request.protocols()))
    }

    /// The admission of a server that asks the application nothing (the
    /// embassy server): a session for `request`, [`screen`](Self::screen)ed
    /// on channel `C`'s path and `gates`, then [`register`](Self::register)ed
    /// with the rooms the request names while it is at hand (a refusal
    /// there closes the connection after the 101). Answer with
    /// [`answer`](Self::answer).
    pub fn admit<C: Channel, A: TableAccess>(
        request: &Request<'_>,
        gates: Gates,
        member: MemberId,
        gate: &impl RoomGate,
        table: A,
    ) -> (Self, Result<(), HttpRefusal>) {
        let mut session = Self::new(request);
        let screened = session.screen(request.path() == C::PATH, gates);
        if screened.is_ok() {
            // A refusal here is the session's to send after the 101.
            let _ = session.register::<C, _>(member, request.query(), None, false, gate, table);
        }
        (session, screened)
    }

    /// The answer to [`admit`](Self::admit)'s request: the 101, or the
    /// HTTP refusal, written into `out`. Returns the bytes written (none if
    /// `out` is too small).
    pub fn answer<K: MaskKeySource>(
        &mut self,
        screened: Result<(), HttpRefusal>,
        conn: &mut Connection<K>,
        now: Instant,
        out: &mut [u8],
    ) -> usize {
        let written = match screened {
            Ok(()) => self.accept(conn, now, out).ok(),
            Err(refusal) => conn.refuse(refusal.status, &[], refusal.body, out).ok(),
        };
        written.unwrap_or(0)
    }

    /// A session for a request whose wire was already negotiated
    /// ([`WireFormat::negotiate`]), for adapters that keep the request's
    /// parts rather than the request.
    pub fn on_wire(format: WireFormat) -> Self {
        Self { format, screened: false, accepted: false, member: None, ours: None, ended: false }
    }

    /// The wire the connection speaks.
    pub fn format(&self) -> WireFormat {
        self.format
    }

    /// Where the session is.
    pub fn phase(&self) -> ServerPhase {
        match (self.ended || self.ours.is_some(), self.screened, self.accepted, self.member.is_some()) {
            (true, ..) => ServerPhase::Ended,
            (_, false, ..) => ServerPhase::Screening,
            (_, true, false, _) => ServerPhase::Deciding,
            (_, true, true, false) => ServerPhase::Accepted,
            (_, true, true, true) => ServerPhase::Open,
        }
    }

    /// The member id given at registration.
    pub fn member(&self) -> Option<MemberId> {
        self.member
    }

    /// The close the server sent or queued, if it closed first: what a
    /// disconnect report gives before the client's close.
    pub fn our_close(&self) -> Option<Refusal> {
        self.ours
    }

    /// Steps 1 and 2: whether an endpoint serves the path (`found`) and the
    /// server's `gates`. `Err`: answer with this refusal (the session has
    /// ended).
    pub fn screen(&mut self, found: bool, gates: Gates) -> Result<(), HttpRefusal> {
        if self.phase() != ServerPhase::Screening {
            self.ended = true;
            return Err(admission::INTERNAL_ERROR);
        }
        let screened = admission::screen(found, gates);
        self.screened = screened.is_ok();
        self.ended = screened.is_err();
        screened
    }

    /// The answer when the application's decision does not come. (When it
    /// comes and refuses, its own status and body are the answer.) The
    /// session has ended.
    pub fn refusal(&mut self, why: Undecided) -> HttpRefusal {
        self.ended = true;
        match why {
            Undecided::TimedOut => admission::DECISION_TIMED_OUT,
            Undecided::ShuttingDown => admission::SHUTTING_DOWN,
        }
    }

    /// Step 5: write the 101 (with the wire's subprotocol) into `out`.
    /// If the registration came first and was refused, `conn` queues its
    /// close right after.
    pub fn accept<K: MaskKeySource>(
        &mut self,
        conn: &mut Connection<K>,
        now: Instant,
        out: &mut [u8],
    ) -> Result<usize, StepError> {
        if !self.screened || self.accepted || self.ended {
            return Err(StepError::Order(OutOfOrder { phase: self.phase() }));
        }
        let n = conn.accept(now, self.format.protocol(), &[], out)?;
        self.accepted = true;
        if let Some(refusal) = self.ours {
            let _ = conn.close(now, refusal.code, refusal.reason);
        }
        Ok(n)
    }

    /// Step 6, before or after the 101: put the connection, as `member`,
    /// in its rooms: refused with [`admission::USER_CAP`] when
    /// `over_user_cap`, else as [`dispatch::join_handshake_rooms`] decides
    /// (the query's rooms on the Alepha wire, or the application's
    /// `room`). On refusal the member is
    /// in no room and the connection must close with the refusal's code
    /// and reason right after its 101 (as Alepha does for its limits):
    /// [`accept`](Self::accept) queues that close if it comes later; if
    /// the 101 was already written, close with the refusal returned.
    pub fn register<C: Channel, A: TableAccess>(
        &mut self,
        member: MemberId,
        query: Option<&str>,
        room: Option<&str>,
        over_user_cap: bool,
        gate: &impl RoomGate,
        table: A,
    ) -> Result<(), Refusal> {
        if !self.screened || self.member.is_some() || self.ours.is_some() || self.ended {
            return Err(OUT_OF_ORDER);
        }
        let registered = if over_user_cap {
            Err(admission::USER_CAP)
        } else {
            dispatch::join_handshake_rooms::<C, A>(self.format, member, query, room, gate, table)
        };
        match registered {
            Ok(()) => self.member = Some(member),
            Err(refusal) => self.ours = Some(refusal),
        }
        registered
    }

    /// Handle one whole message of the connection (see
    /// [`dispatch::handle_message`]); `state` is the connection's
    /// ([`Connection::state`]). Only an open connection's messages are
    /// handled: before registration, after the session ended, and once
    /// either side has started the closing handshake (the server's close
    /// is final: no handler runs for what the client sends after it), the
    /// message is [`Inbound::Ignored`].
    pub fn handle_message<'a, C: Channel, A: TableAccess>(
        &self,
        state: State,
        table: A,
        gate: &impl RoomGate,
        data: &'a [u8],
        scratch: &'a mut [u8],
        out: &mut [u8],
    ) -> Inbound<C::Out<'a>> {
        match (self.phase(), self.member) {
            (ServerPhase::Open, Some(member)) if state == State::Open => {
                dispatch::handle_message::<C, A>(self.format, member, table, gate, data, scratch, out)
            }
            _ => Inbound::Ignored,
        }
    }

    /// The handler of a message failed with `error`: write the frame
    /// telling the sender (see [`dispatch::write_handler_error`]) into
    /// `out`, its text cut at [`MAX_ERROR_TEXT`] bytes. Send it as a
    /// message of kind [`WireFormat::message_kind`]. `error` is `None` for
    /// a handler that panicked or gave no text.
    pub fn handler_failed(&self, error: Option<&str>, out: &mut [u8]) -> Result<usize, InsufficientSize> {
        let text = dispatch::handler_error_text(error.unwrap_or(""));
        let mut cut = text.len().min(MAX_ERROR_TEXT);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        dispatch::write_handler_error(self.format, text.get(..cut).unwrap_or(""), out)
    }

    /// The server closes the connection for `why`. Only the first close
    /// counts: returns the close to send (code and reason), or `None` if
    /// the server already closed. [`close`](Self::close) sends it on a
    /// core [`Connection`]; an adapter with its own socket sends it there.
    pub fn closing(&mut self, why: ServerClose) -> Option<Refusal> {
        if self.ours.is_some() {
            return None;
        }
        self.ours = Some(why.refusal());
        self.ours
    }

    /// [`closing`](Self::closing), sent on `conn`. Returns whether a close
    /// was queued.
    pub fn close<K: MaskKeySource>(&mut self, conn: &mut Connection<K>, now: Instant, why: ServerClose) -> bool {
        self.closing(why).is_some_and(|close| conn.close(now, close.code, close.reason).is_ok())
    }

    /// The connection has ended: take it out of every room. Returns the
    /// member id it had, if it was registered.
    pub fn leave<T: RoomTable>(&mut self, table: &mut T) -> Option<MemberId> {
        self.ended = true;
        let member = self.member.take()?;
        table.leave_all(member);
        Some(member)
    }
}

/// A registration called out of order: a bug of the adapter, closed as a
/// server error.
const OUT_OF_ORDER: Refusal = Refusal { code: crate::CloseCode::Error, reason: "Server error" };

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::connection::{Config, Event};
    use crate::room::FixedRoomTable;

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    pub struct Say<'a> {
        pub content: &'a str,
    }
    crate::channel! { /// Chat.
    pub struct Chat { path: "/ws/chat", in: Say<'a>, out: Say<'a> } }

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn request(target: &str, protocols: Option<&str>) -> std::vec::Vec<u8> {
        let mut raw = std::format!(
            "GET {target} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
        );
        if let Some(p) = protocols {
            raw.push_str(&std::format!("Sec-WebSocket-Protocol: {p}\r\n"));
        }
        raw.push_str("\r\n");
        raw.into_bytes()
    }

    fn open(target: &str, protocols: Option<&str>) -> (Connection, ServerSession, Option<std::string::String>) {
        let mut conn = Connection::server(Config::default(), Instant::ZERO);
        let mut raw = request(target, protocols);
        let (session, query) = {
            let Some(Event::Request(request)) = conn.handle_input(Instant::ZERO, &mut raw).event else { panic!() };
            (ServerSession::new(&request), request.query().map(std::string::ToString::to_string))
        };
        (conn, session, query)
    }

    #[test]
    fn screens_then_negotiates_then_registers() {
        let (mut conn, mut session, query) = open("/ws/chat", Some("roomwire.v1.json"));
        assert_eq!(session.format(), WireFormat::Json);
        let mut out = [0u8; 512];
        // Out of order: no 101 before screening.
        assert!(matches!(session.accept(&mut conn, Instant::ZERO, &mut out), Err(StepError::Order(_))));
        session.screen(true, Gates::default()).unwrap();
        let n = session.accept(&mut conn, Instant::ZERO, &mut out).unwrap();
        let answer = core::str::from_utf8(&out[..n]).unwrap();
        assert!(answer.contains("Sec-WebSocket-Protocol: roomwire.v1.json\r\n"), "{answer}");
        let mut table = FixedRoomTable::<8, 4, 4, 4>::new();
        // No message is handled before registration.
        assert!(matches!(
            session.handle_message::<Chat, _>(
                conn.state(),
                &mut table,
                &crate::dispatch::AnyRoom,
                br#"{"type":"join","room":"a"}"#,
                &mut [0; 64],
                &mut out
            ),
            Inbound::Ignored
        ));
        session
            .register::<Chat, _>(MemberId(3), query.as_deref(), None, false, &crate::dispatch::AnyRoom, &mut table)
            .unwrap();
        assert_eq!(session.phase(), ServerPhase::Open);
        assert_eq!(session.member(), Some(MemberId(3)));
        let mut join = |conn: &Connection, table: &mut FixedRoomTable<8, 4, 4, 4>, room: &str| {
            let message = std::format!(r#"{{"type":"join","room":"{room}","ref":1}}"#);
            let any = crate::dispatch::AnyRoom;
            matches!(
                session.handle_message::<Chat, _>(
                    conn.state(),
                    table,
                    &any,
                    message.as_bytes(),
                    &mut [0; 64],
                    &mut out
                ),
                Inbound::Answer { .. }
            )
        };
        assert!(join(&conn, &mut table, "a"));
        // Once the connection closes (here the application's close), what
        // the client still sends is not handled.
        conn.close(Instant::ZERO, crate::CloseCode::Normal, "bye").unwrap();
        assert!(!join(&conn, &mut table, "b"));
        assert!(!table.is_in_room(MemberId(3), "b"));
    }

    #[test]
    fn refusals_come_from_the_session() {
        let (_, mut session, _) = open("/nope", None);
        assert_eq!(session.screen(false, Gates::default()), Err(admission::NOT_FOUND));
        assert_eq!(session.phase(), ServerPhase::Ended);
        let (_, mut session, _) = open("/ws/chat", None);
        assert_eq!(
            session.screen(true, Gates { shutting_down: true, ..Gates::default() }),
            Err(admission::SHUTTING_DOWN)
        );
        let (_, mut session, _) = open("/ws/chat", None);
        session.screen(true, Gates::default()).unwrap();
        assert_eq!(session.refusal(Undecided::TimedOut), admission::DECISION_TIMED_OUT);
        assert_eq!(session.phase(), ServerPhase::Ended);
    }

    #[test]
    fn a_refused_registration_closes_after_the_101() {
        let many = (0..40).map(|i| std::format!("r{i}")).collect::<std::vec::Vec<_>>().join(",");
        let (mut conn, mut session, query) = open(&std::format!("/ws/chat?roomIds={many}"), None);
        let mut out = [0u8; 512];
        session.screen(true, Gates::default()).unwrap();
        // Registered before the 101 (as every server does): the 101
        // carries the close after it.
        let mut table = FixedRoomTable::<8, 4, 4, 4>::new();
        let got = session.register::<Chat, _>(
            MemberId(0),
            query.as_deref(),
            None,
            false,
            &crate::dispatch::AnyRoom,
            &mut table,
        );
        assert_eq!(got.unwrap_err().reason, "Too many rooms for this connection");
        assert_eq!(session.our_close().map(|r| r.reason), Some("Too many rooms for this connection"));
        let n = session.accept(&mut conn, Instant::ZERO, &mut out).unwrap();
        assert!(out[..n].starts_with(b"HTTP/1.1 101"));
        assert_eq!(session.phase(), ServerPhase::Ended);
        let n = conn.poll_transmit(&mut out).unwrap();
        assert_eq!(&out[..4], &[0x88, 36, 0x03, 0xf0]);
        assert_eq!(&out[4..n], b"Too many rooms for this connection");
        // Over the per-user cap.
        let (mut conn, mut session, query) = open("/ws/chat", None);
        session.screen(true, Gates::default()).unwrap();
        session.accept(&mut conn, Instant::ZERO, &mut out).unwrap();
        let got = session.register::<Chat, _>(
            MemberId(1),
            query.as_deref(),
            None,
            true,
            &crate::dispatch::AnyRoom,
            &mut table,
        );
        assert_eq!(got, Err(admission::USER_CAP));
        assert!(!table.is_in_room(MemberId(1), "default"));
        // A second registration is out of order.
        assert_eq!(
            session.register::<Chat, _>(MemberId(1), None, None, false, &crate::dispatch::AnyRoom, &mut table),
            Err(OUT_OF_ORDER)
        );
    }

    #[test]
    fn handler_errors_are_cut_and_framed_by_wire() {
        let (_, session, _) = open("/ws/chat", None);
        let mut out = [0u8; 4096];
        let n = session.handler_failed(None, &mut out).unwrap();
        assert_eq!(&out[..n], br#"{"error":"Unknown error"}"#);
        let long = "é".repeat(1000);
        let n = session.handler_failed(Some(&long), &mut out).unwrap();
        // 512 two-byte characters, cut at a boundary.
        assert_eq!(n, r#"{"error":""}"#.len() + MAX_ERROR_TEXT);
        let (_, session, _) = open("/ws/chat", Some("roomwire.v1.json"));
        let n = session.handler_failed(Some("boom"), &mut out).unwrap();
        assert_eq!(&out[..n], br#"{"type":"error","code":4006,"text":"boom"}"#);
    }

    #[test]
    fn only_the_first_server_close_counts() {
        let (mut conn, mut session, _) = open("/ws/chat", None);
        let mut out = [0u8; 512];
        let mut table = FixedRoomTable::<8, 4, 4, 4>::new();
        session.screen(true, Gates::default()).unwrap();
        session.register::<Chat, _>(MemberId(0), None, None, false, &crate::dispatch::AnyRoom, &mut table).unwrap();
        session.accept(&mut conn, Instant::ZERO, &mut out).unwrap();
        assert!(session.close(&mut conn, Instant::ZERO, ServerClose::OutboundFull));
        assert!(!session.close(&mut conn, Instant::ZERO, ServerClose::Shutdown));
        assert_eq!(session.closing(ServerClose::Shutdown), None);
        assert_eq!(session.our_close(), Some(admission::OUTBOUND_FULL));
        assert_eq!(session.leave(&mut table), Some(MemberId(0)));
        assert!(!table.is_in_room(MemberId(0), "default"));
    }
}
