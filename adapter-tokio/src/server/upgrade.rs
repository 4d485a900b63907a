//! The server handshake split in two, so that the decision can be async:
//! read and validate the request (the core does), then accept or refuse.
//!
//! [`WebSocket::accept_with`] takes a synchronous decision; an `authorize`
//! hook may await (a database, a token service), so the room server reads
//! the request first, decides, then answers. The core allows it: a server
//! connection waits in its "awaiting decision" state, its handshake
//! deadline still running.

use roomwire_core::wire::WireFormat;
use roomwire_core::{CloseCode, Event, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant as TokioInstant;
use tracing::debug;

use crate::config::Config;
use crate::error::Error;
use crate::message::{Decision, HandshakeInfo};
use crate::socket::{Conn, Io, WebSocket, close_timeout, encode_into, with_conn};

/// Room first reserved for a handshake answer.
const ANSWER_ROOM: usize = 512;

/// A valid Upgrade request, owned.
pub(crate) struct RequestHead {
    pub(crate) info: HandshakeInfo,
    /// The wire the client's subprotocol offer selects.
    pub(crate) format: WireFormat,
}

impl RequestHead {
    pub(crate) fn from_request(request: &roomwire_core::handshake::Request<'_>) -> Self {
        Self { info: HandshakeInfo::from_request(request), format: WireFormat::negotiate(request.protocols()) }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Server: read the Upgrade request from `stream` and let the core
    /// validate it; the connection then waits for
    /// [`answer`](Self::answer). Invalid requests are answered by the core
    /// (400, 426, 431 …) and a request not complete within the handshake
    /// timeout gets 408; the stream is shut down in those cases.
    pub(crate) async fn read_request(stream: S, config: Config) -> Result<(Self, RequestHead), Error> {
        let origin = TokioInstant::now();
        let conn = Conn::Server(roomwire_core::Connection::server(config.core, Instant::ZERO));
        let mut ws = WebSocket::new(stream, conn, config, origin, tracing::Span::current());
        loop {
            if ws.rstart < ws.rend {
                let now = ws.now();
                let WebSocket { conn, rbuf, rstart, rend, .. } = &mut ws;
                let Conn::Server(c) = conn else { return Err(Error::Closed) };
                let received = c.handle_input(now, &mut rbuf[*rstart..*rend]);
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

    /// Server: answer the request read by [`read_request`](Self::read_request).
    /// An acceptance writes the 101 and returns once it is sent; a refusal
    /// writes the status, shuts the stream down and fails with
    /// [`Error::Refused`].
    pub(crate) async fn answer(&mut self, decision: Decision) -> Result<(), Error> {
        let now = self.now();
        let deadline = TokioInstant::now() + close_timeout(&self.config);
        let WebSocket { conn, wbuf, .. } = self;
        let Conn::Server(c) = conn else { return Err(Error::Closed) };
        match decision {
            Decision::Accept { protocol, headers } => {
                let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                encode_into(wbuf, ANSWER_ROOM, |out| c.accept(now, protocol.as_deref(), &headers, out))?;
                self.flush_until(deadline).await
            }
            Decision::Refuse { status, headers, body } => {
                let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                encode_into(wbuf, ANSWER_ROOM, |out| c.refuse(status, &headers, &body, out))?;
                self.abandon().await;
                Err(Error::Refused { status })
            }
        }
    }

    /// The handshake deadline of a connection still in its handshake.
    pub(crate) fn handshake_deadline(&self) -> Option<TokioInstant> {
        self.core_deadline()
    }

    /// Queue a close frame without writing it (the next `recv` or `flush`
    /// writes it). Fails like [`close`](Self::close).
    pub(crate) fn start_close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        let now = self.now();
        with_conn!(&mut self.conn, c => c.close(now, code, reason))?;
        debug!(code = u16::from(code), reason, "closing");
        Ok(())
    }
}

#[cfg(feature = "axum")]
impl<S> WebSocket<S> {
    /// A server connection whose handshake was completed elsewhere (the
    /// axum integration): `conn` has accepted the request and is open.
    pub(crate) fn from_accepted(
        stream: S,
        conn: roomwire_core::Connection,
        config: Config,
        origin: TokioInstant,
    ) -> Self {
        WebSocket::new(stream, Conn::Server(conn), config, origin, tracing::Span::current())
    }
}
