//! Opening a [`WebSocket`]: the server's accept and the client's connect.

use roomwire_core::handshake::{ClientRequest, Request};
use roomwire_core::url::WsUrl;
use roomwire_core::{Connection, Event};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant as TokioInstant;
use tracing::{debug, debug_span};

use crate::config::Config;
use crate::error::Error;
use crate::message::{Decision, HandshakeInfo, Response};
use crate::socket::{Io, RandomKeys, WebSocket, close_timeout, encode_into, server_conn};

/// Room first reserved for a handshake request or response.
const HANDSHAKE_ROOM: usize = 512;

/// What the handshake loop found in the input.
enum Found {
    /// Nothing yet: read more.
    Nothing,
    /// Done (server: accepted; client: open).
    Done(Outcome),
}

enum Outcome {
    Accepted(HandshakeInfo),
    Open(Response),
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Server: run the opening handshake on `stream`, accepting any path
    /// with no subprotocol. See [`accept_with`](Self::accept_with).
    ///
    /// ```no_run
    /// use roomwire_tokio::{Config, WebSocket};
    /// # async fn f(stream: tokio::net::TcpStream) -> Result<(), roomwire_tokio::Error> {
    /// let (mut ws, info) = WebSocket::accept(stream, Config::default()).await?;
    /// println!("client connected to {}", info.path);
    /// # Ok(()) }
    /// ```
    pub async fn accept(stream: S, config: Config) -> Result<(Self, HandshakeInfo), Error> {
        Self::accept_with(stream, config, |_| Decision::accept()).await
    }

    /// Server: run the opening handshake on `stream`, letting `decide` look
    /// at the valid Upgrade request (path, query, `Authorization`, offered
    /// subprotocols …) and accept or refuse it.
    ///
    /// The core validates the request and writes the answer. Invalid
    /// requests are refused with the status of the
    /// [`HandshakeError`](roomwire_core::handshake::HandshakeError)
    /// ([`Error::Handshake`]); a refusal by `decide` ends in
    /// [`Error::Refused`]; a client that does not complete its request
    /// within [`handshake_timeout`](roomwire_core::Config::handshake_timeout)
    /// gets 408 ([`Error::Timeout`]). The stream is shut down in each case.
    ///
    /// ```no_run
    /// use roomwire_tokio::{Config, Decision, WebSocket};
    /// # async fn f(stream: tokio::net::TcpStream) -> Result<(), roomwire_tokio::Error> {
    /// let (mut ws, info) = WebSocket::accept_with(stream, Config::default(), |req| {
    ///     if req.path() != "/chat" {
    ///         return Decision::refuse(404, "no such endpoint");
    ///     }
    ///     match req.protocols().find(|p| *p == "chat.v1") {
    ///         Some(p) => Decision::accept_protocol(p),
    ///         None => Decision::accept(),
    ///     }
    /// })
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub async fn accept_with<F>(stream: S, config: Config, decide: F) -> Result<(Self, HandshakeInfo), Error>
    where
        F: FnOnce(&Request<'_>) -> Decision,
    {
        let origin = TokioInstant::now();
        let conn = server_conn(config.core, roomwire_core::Instant::ZERO);
        let span = debug_span!("websocket", role = "server");
        let mut ws = WebSocket::new(stream, conn, config, origin, span);
        let mut decide = Some(decide);
        match ws.handshake(&mut decide).await? {
            Outcome::Accepted(info) => Ok((ws, info)),
            Outcome::Open(_) => Err(Error::Closed),
        }
    }

    /// Client: run the opening handshake on `stream` (already connected to
    /// the server), sending `request`: `Host` value, request target,
    /// subprotocols to offer and extra headers.
    ///
    /// Masking keys and the handshake nonce come from the operating
    /// system's random number generator. The handshake is bounded by
    /// [`handshake_timeout`](roomwire_core::Config::handshake_timeout).
    ///
    /// ```no_run
    /// use roomwire_tokio::{ClientRequest, Config, WebSocket};
    /// # async fn f() -> Result<(), roomwire_tokio::Error> {
    /// let stream = tokio::net::TcpStream::connect("127.0.0.1:9001").await?;
    /// let request = ClientRequest {
    ///     host: "127.0.0.1:9001",
    ///     target: "/chat?room=a",
    ///     protocols: &["chat.v1"],
    ///     headers: &[("Authorization", "Bearer t0ken")],
    /// };
    /// let (ws, response) = WebSocket::connect_with_stream(stream, &request, Config::default()).await?;
    /// println!("protocol: {:?}", response.protocol);
    /// # Ok(()) }
    /// ```
    pub async fn connect_with_stream(
        stream: S,
        request: &ClientRequest<'_>,
        config: Config,
    ) -> Result<(Self, Response), Error> {
        let span = debug_span!("websocket", role = "client", peer = request.host);
        Self::connect_inner(stream, request, config, span).await
    }

    async fn connect_inner(
        stream: S,
        request: &ClientRequest<'_>,
        config: Config,
        span: tracing::Span,
    ) -> Result<(Self, Response), Error> {
        let origin = TokioInstant::now();
        let keys = RandomKeys::new()?;
        let conn = Connection::client(config.core, roomwire_core::Instant::ZERO, keys);
        let mut ws = WebSocket::new(stream, conn, config, origin, span);
        {
            let WebSocket { conn, wbuf, .. } = &mut ws;
            encode_into(wbuf, HANDSHAKE_ROOM, |out| conn.write_request(request, out))?;
        }
        let mut no_decision: Option<fn(&Request<'_>) -> Decision> = None;
        match ws.handshake(&mut no_decision).await? {
            Outcome::Open(response) => Ok((ws, response)),
            Outcome::Accepted(_) => Err(Error::Closed),
        }
    }

    /// The handshake loop of both roles: write what is queued, read, let
    /// the core judge, until it is open, refused or failed.
    async fn handshake<F>(&mut self, decide: &mut Option<F>) -> Result<Outcome, Error>
    where
        F: FnOnce(&Request<'_>) -> Decision,
    {
        loop {
            match self.handshake_input(decide) {
                Err(error) => {
                    debug!(parent: &self.span, %error, "handshake failed");
                    self.abandon().await;
                    return Err(error);
                }
                Ok(Found::Done(outcome)) => {
                    // The 101 response (server) goes out before returning.
                    let deadline = TokioInstant::now() + close_timeout(self.conn.config());
                    self.flush_until(deadline).await?;
                    debug!(parent: &self.span, "open");
                    return Ok(outcome);
                }
                Ok(Found::Nothing) => {}
            }
            let deadline = self.core_deadline();
            match self.drive(true, deadline).await? {
                Io::Read(0) => return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into())),
                Io::Read(_) | Io::Written => {}
                Io::Timer => {
                    if let Some(timeout) = self.handle_timeout() {
                        debug!(parent: &self.span, "handshake timeout");
                        self.pump_transmit(); // server: the 408
                        self.abandon().await;
                        return Err(Error::Timeout(timeout));
                    }
                }
            }
        }
    }

    /// Give the buffered input to the core and act on its verdict.
    fn handshake_input<F>(&mut self, decide: &mut Option<F>) -> Result<Found, Error>
    where
        F: FnOnce(&Request<'_>) -> Decision,
    {
        if self.rstart == self.rend {
            return Ok(Found::Nothing);
        }
        let now = self.now();
        let WebSocket { conn, rbuf, rstart, rend, wbuf, .. } = self;
        let received = conn.handle_input(now, &mut rbuf[*rstart..*rend]);
        let consumed = received.consumed;
        let (mut info, decision) = match received.event {
            None => return Ok(Found::Nothing),
            // Server: the request, judged by `decide`.
            Some(Event::Request(request)) => {
                let info = HandshakeInfo::from_request(&request);
                let decision = match decide.take() {
                    Some(decide) => decide(&request),
                    None => Decision::accept(),
                };
                (info, decision)
            }
            // Client: the server's 101.
            Some(Event::Open { protocol }) => {
                let response = Response { protocol: protocol.map(str::to_owned) };
                *rstart += consumed;
                return Ok(Found::Done(Outcome::Open(response)));
            }
            Some(Event::HandshakeFailed(error)) => {
                *rstart += consumed;
                self.pump_transmit(); // a server's refusal
                return Err(Error::Handshake(error));
            }
            Some(_) => return Err(Error::Closed),
        };
        *rstart += consumed;
        match decision {
            Decision::Accept { protocol, headers } => {
                let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                encode_into(wbuf, HANDSHAKE_ROOM, |out| conn.accept(now, protocol.as_deref(), &headers, out))?;
                info.protocol = protocol;
                Ok(Found::Done(Outcome::Accepted(info)))
            }
            Decision::Refuse { status, headers, body } => {
                let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                encode_into(wbuf, HANDSHAKE_ROOM, |out| conn.refuse(status, &headers, &body, out))?;
                Err(Error::Refused { status })
            }
        }
    }
}

impl WebSocket<TcpStream> {
    /// Client: connect to a `ws://host[:port][/path][?query]` URL over TCP
    /// (`TCP_NODELAY` set) and run the opening handshake, offering no
    /// subprotocol. `wss://` is not supported: open a TLS stream yourself
    /// and use [`connect_with_stream`](Self::connect_with_stream).
    ///
    /// ```no_run
    /// use roomwire_tokio::{Config, WebSocket, MessageRef};
    /// # async fn f() -> Result<(), roomwire_tokio::Error> {
    /// let (mut ws, _) = WebSocket::connect("ws://127.0.0.1:9001/chat", Config::default()).await?;
    /// ws.send(MessageRef::Text("hello")).await?;
    /// if let Some(reply) = ws.recv().await {
    ///     println!("{:?}", reply?);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str, config: Config) -> Result<(Self, Response), Error> {
        let url = WsUrl::parse(url).map_err(|e| Error::InvalidUrl(e.as_str()))?;
        if url.secure {
            return Err(Error::InvalidUrl("wss:// is not supported here; use connect_with_stream over TLS"));
        }
        let path = if url.path.is_empty() { "/" } else { url.path };
        let target = match url.query {
            Some(query) => format!("{path}?{query}"),
            None => path.to_owned(),
        };
        let stream = TcpStream::connect((url.host, url.port)).await?;
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr().ok();
        let span = debug_span!("websocket", role = "client", peer = peer.map(tracing::field::display));
        let request = ClientRequest { host: url.authority, target: &target, protocols: &[], headers: &[] };
        Self::connect_inner(stream, &request, config, span).await
    }
}
