//! The server handshake split in two, so that the decision can be async:
//! read and validate the request (the core does), then accept or refuse.
//!
//! [`WebSocket::accept_with`] takes a synchronous decision; an `authorize`
//! hook may await (a database, a token service), so the room server reads
//! the request first, decides, then answers. The core allows it: a server
//! connection waits in its "awaiting decision" state, its handshake
//! deadline still running.

use roomwire_core::session::{ServerSession, StepError};
use roomwire_core::{CloseCode, Event, SendError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant as TokioInstant;
use tracing::debug;

use crate::config::Config;
use crate::error::Error;
use crate::message::HandshakeInfo;
use crate::socket::{Io, WebSocket, close_timeout, core_clock, encode_into, server_conn};

/// Room first reserved for a handshake answer.
const ANSWER_ROOM: usize = 512;

/// A valid Upgrade request, owned.
pub(crate) struct RequestHead {
    pub(crate) info: HandshakeInfo,
    /// The connection's session, its wire chosen by the subprotocols
    /// offered.
    pub(crate) session: ServerSession,
}

impl RequestHead {
    pub(crate) fn from_request(request: &roomwire_core::handshake::Request<'_>) -> Self {
        Self { info: HandshakeInfo::from_request(request), session: ServerSession::new(request) }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Server: read the Upgrade request from `stream` and let the core
    /// validate it; the connection then waits for
    /// [`queue_accept`](Self::queue_accept) or
    /// [`refuse_request`](Self::refuse_request). Invalid requests are answered by the core
    /// (400, 426, 431 …) and a request not complete within the handshake
    /// timeout gets 408; the stream is shut down in those cases. `origin`:
    /// its clock's (the server's, which all its connections share).
    pub(crate) async fn read_request(
        stream: S,
        config: Config,
        origin: TokioInstant,
    ) -> Result<(Self, RequestHead), Error> {
        let conn = server_conn(config.core, core_clock(origin, TokioInstant::now()));
        let mut ws = WebSocket::new(stream, conn, config, origin, tracing::Span::current());
        loop {
            if ws.rstart < ws.rend {
                let now = ws.now();
                let WebSocket { conn, rbuf, rstart, rend, .. } = &mut ws;
                let received = conn.handle_input(now, &mut rbuf[*rstart..*rend]);
                let consumed = received.consumed;
                let outcome = match received.event {
                    None => None,
                    Some(Event::Request(request)) => Some(Ok(RequestHead::from_request(&request))),
                    Some(Event::HandshakeFailed(error)) => Some(Err(Error::Handshake(error))),
                    Some(_) => Some(Err(Error::Closed)),
                };
                *rstart += consumed;
                match outcome {
                    None => {}
                    Some(Ok(head)) => return Ok((ws, head)),
                    Some(Err(error)) => {
                        debug!(%error, "handshake failed");
                        ws.pump_transmit(); // the core's refusal
                        ws.abandon().await;
                        return Err(error);
                    }
                }
            }
            let deadline = ws.core_deadline();
            match ws.drive(true, deadline).await? {
                Io::Read(0) => return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into())),
                Io::Read(_) | Io::Written => {}
                Io::Timer => {
                    if let Some(timeout) = ws.handle_timeout() {
                        debug!("handshake timeout");
                        ws.pump_transmit(); // the 408
                        ws.abandon().await;
                        return Err(Error::Timeout(timeout));
                    }
                }
            }
        }
    }

    /// Queue the 101 on the session's wire ([`ServerSession::accept`]);
    /// [`send_accept`](Self::send_accept) writes it out. Between the two
    /// the connection is put in its rooms, so that a client that has its
    /// 101 is in them: a message sent to a room it joined in its request,
    /// once it could know it joined, reaches it.
    pub(crate) fn queue_accept(&mut self, session: &mut ServerSession) -> Result<(), Error> {
        let now = self.now();
        let WebSocket { conn, wbuf, .. } = self;
        encode_into(wbuf, ANSWER_ROOM, |out| {
            session.accept(conn, now, out).map_err(|e| match e {
                StepError::Send(e) => e,
                StepError::Order(_) => SendError::InvalidState,
            })
        })?;
        Ok(())
    }

    /// Write the queued 101 out, within the close timeout.
    pub(crate) async fn send_accept(&mut self) -> Result<(), Error> {
        let deadline = TokioInstant::now() + close_timeout(self.conn.config());
        self.flush_until(deadline).await
    }

    /// Refuse the request with `status` and `body`, then drop the stream.
    pub(crate) async fn refuse_request(&mut self, status: u16, body: &str) -> Result<(), Error> {
        let WebSocket { conn, wbuf, .. } = self;
        encode_into(wbuf, ANSWER_ROOM, |out| conn.refuse(status, &[], body, out))?;
        self.abandon().await;
        Err(Error::Refused { status })
    }

    /// The handshake deadline of a connection still in its handshake.
    pub(crate) fn handshake_deadline(&self) -> Option<TokioInstant> {
        self.core_deadline()
    }

    /// Queue a close frame without writing it (the next `recv` or `flush`
    /// writes it). Fails like [`close`](Self::close).
    pub(crate) fn start_close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        let now = self.now();
        self.conn.close(now, code, reason)?;
        debug!(code = u16::from(code), reason, "closing");
        Ok(())
    }

    /// Ping the peer now; close if it does not answer `within`
    /// ([`Connection::check_alive`](roomwire_core::Connection::check_alive)).
    pub(crate) fn check_alive(&mut self, within: roomwire_core::Duration) {
        let now = self.now();
        self.conn.check_alive(now, within);
        self.pump_transmit();
    }
}

#[cfg(feature = "axum")]
impl<S> WebSocket<S> {
    /// A server connection whose handshake was completed elsewhere (the
    /// axum integration): `conn` has accepted the request and is open.
    pub(crate) fn from_accepted(stream: S, conn: crate::socket::Conn, config: Config, origin: TokioInstant) -> Self {
        WebSocket::new(stream, conn, config, origin, tracing::Span::current())
    }
}
