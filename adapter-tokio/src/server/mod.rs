//! The room server: Alepha's `$websocket` on tokio.
//!
//! A [`Server`] holds [`Endpoint`]s, one per [`Channel`]: the channel's
//! path, an async handler for the typed client messages, admission rules
//! and hooks. The core decides every protocol question (which rooms a
//! handshake joins, how a client message is read and validated, who an
//! emit reaches and with which room label, how frames are encoded: see
//! [`roomwire_core::dispatch`] and [`roomwire_core::target`]); this module
//! adds the I/O, time, concurrency and integration around it.
//!
//! ```no_run
//! use std::borrow::Cow;
//! use roomwire_tokio::server::{Emit, Endpoint, Reply, Server};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! pub struct Say<'a> {
//!     #[serde(borrow)]
//!     pub content: Cow<'a, str>,
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! #[serde(tag = "type", rename_all = "lowercase")]
//! pub enum Event {
//!     Append { content: String, username: String },
//!     System { message: String },
//! }
//!
//! roomwire_tokio::roomwire_core::channel! {
//!     /// The chat channel.
//!     pub struct Chat { path: "/ws/chat", in: Event, out: Say<'a> }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::builder()
//!     .endpoint(Endpoint::<Chat>::new(|ctx| {
//!         Box::pin(async move {
//!             let username = ctx.user_id().unwrap_or(ctx.connection_id()).to_owned();
//!             let append = Event::Append { content: ctx.message.content.to_string(), username };
//!             ctx.reply_with(&append, &Reply::new().except_self())?;
//!             Ok(())
//!         })
//!     }))
//!     .build()?;
//!
//! // Anywhere else: a cloneable handle.
//! server.emit::<Chat>(&Emit::to_room("lobby"), &Event::System { message: "hello".into() })?;
//! server.listen("127.0.0.1:8080").await?;
//! # Ok(()) }
//! ```
//!
//! # Wires
//!
//! A client that offers no subprotocol speaks the **Alepha wire** (Alepha's
//! browser client, `new WebSocket(url)`): rooms come from the handshake
//! query (`?roomId=a&roomIds=b,c`, else `"default"`), frames are JSON. A
//! client offering `roomwire.v1.json` or `roomwire.v1.postcard` speaks the
//! **roomwire wire**: envelopes, join and leave at any time. Both meet in
//! the same rooms; `PROTOCOL.md` specifies them.
//!
//! # Handlers and typed messages
//!
//! A handler receives a [`Context`] whose `message` is the channel's
//! `Out<'a>`, which may borrow from the received frame (`&'a str`,
//! `Cow<'a, str>` with `#[serde(borrow)]`): no copy of the client's
//! strings. The frame lives as long as the handler's future, so the
//! handler's signature is the usual higher-ranked one,
//! `for<'a> Fn(Context<'a, C>) -> BoxFuture<'a, HandlerResult>`: write
//! `|ctx| Box::pin(async move { … })`. Channels whose `Out` is owned work
//! the same way.
//!
//! Messages of one connection are handled **one at a time, in order**.
//! While a handler runs, the connection keeps writing what is emitted to it
//! and reads ahead up to the client's next whole message (answering pings,
//! keeping its deadlines), then nothing more until the handler ends (TCP
//! applies backpressure to a client that sends faster than its handler
//! runs). Handlers of different connections run concurrently.
//!
//! A handler that returns an error answers the sender alone with
//! `{"error": "<error text>"}` on the Alepha wire, an error envelope with
//! code 4006 on the roomwire wire; one that panics, with `Unknown error`
//! (the panic's message stays on the server); one that outruns
//! [`ServerConfig::handler_timeout`] is cancelled and answered `Handler
//! timed out`. The connection stays open, and the failure reaches
//! [`ServerBuilder::on_error`] (Alepha's `websocket:error`).
//!
//! # Admission and limits
//!
//! See [`Endpoint`] for `authorize`, `secure`, `resolve_user` and
//! `max_connections_per_user`, and [`ServerConfig`] for the server-wide
//! limits. Every refusal ends in an HTTP status (404 unknown path, 401
//! anonymous on a secure endpoint, 503 at the connection cap or during
//! shutdown, whatever status `authorize` chose) or, after the upgrade, a
//! close code (1008 over the per-user cap or for refused room ids, 1009
//! for a message over `max_message_size`).
//!
//! # Backpressure
//!
//! Frames are encoded once per (wire format, room label) into a shared
//! [`bytes::Bytes`] and handed to each recipient's outbound queue. A
//! connection's queue is bounded in bytes by [`crate::Config::max_outbound`]
//! (in transit plus not yet written to the socket); a consumer that falls
//! that far behind is **closed with 1013 "Outbound queue full"** (try again
//! later) and its queue dropped, so one slow reader never slows its room
//! and memory stays bounded (the queue, plus at most the end of one frame
//! the socket took in part). No lock is held across an `await`.
//!
//! On a current-thread runtime ([`Server::serve`]), a recipient that sleeps
//! with nothing to write and has been getting its frames one at a time has
//! them written straight into its socket by the emitter (no wake-up of its
//! task, no copy): the emitter then makes that `write` while it holds the
//! channel's lock. Frames that come faster than the recipient's task runs
//! are queued, and it writes them together.
//!
//! # Waiting connections
//!
//! A connection served by the server's own tasks ([`Server::serve`],
//! `Server::serve_tls`, the axum mount) that waits with nothing under way
//! keeps a small resting form of its state and no task: it is parked in
//! the server, and runs in a new task when its client sends, frames are
//! queued for it (those its emitters write to its socket themselves do not
//! wake it), its keepalive is due or the server shuts down. One with
//! traffic stays awake for up to a second first. An idle connection costs
//! about 950 bytes in all with glibc's allocator, about 880 with
//! jemalloc, which keeps no free pieces around tokio's 128-byte-aligned
//! socket records as glibc does (BENCHMARKS.md). tokio's task list and
//! tools such as tokio-console show only the connections at work. A stream served
//! through [`Server::serve_stream`] keeps its task (the application awaits
//! it) and rests in it, as do connections on another runtime than the one
//! where the server's first connection parked. Parked connections are
//! dropped with that runtime, as its tasks are. [`ServerConfig::park_waiting`]
//! turns parking off, and says what it costs.
//!
//! # Mounting
//!
//! [`Server::listen`] / [`Server::serve`] run a standalone listener;
//! [`Server::serve_stream`] serves one accepted stream of any type (TLS
//! through tokio-rustls, a Unix socket …); with the `axum` feature,
//! `Server::router` and `Server::upgrade` mount the endpoints on an
//! axum 0.8 router.
//!
//! # Tracing
//!
//! Each connection runs in an `info` span `connection` (peer, id, path,
//! user); each message handled in a `debug` span `message` (room); an emit
//! or reply to rooms in a `debug` span `room` (the first room, the
//! channel), other emits in a `debug` span `emit`.

mod admission;
#[cfg(feature = "axum")]
mod axum;
mod builder;
mod cluster;
mod conn;
mod context;
mod emit;
mod endpoint;
mod lifecycle;
mod membership;
mod outbox;
mod parking;
mod registry;
mod stateful;
mod upgrade;

use std::any::TypeId;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use roomwire_core::CloseCode;
use roomwire_core::channel::Channel;
use roomwire_core::cluster::About;
use roomwire_core::session::ServerClose;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tracing::{Instrument, debug, info_span, warn};

pub use admission::{Admission, Handshake};
use conn::Incoming;
pub use context::{Context, Reply};
pub use emit::{Emit, EmitError};
pub use endpoint::{BoxFuture, Endpoint, HandlerError, HandlerResult, RoomAccess};
pub use membership::{MembershipChange, MembershipError, RoomStats};
pub use registry::{ConnectEvent, ConnectionInfo, DisconnectEvent, ErrorEvent, HandlerFailure, MessageEvent};
pub use stateful::{CallError, Room, RoomConnection, RoomEndpoint};

pub(crate) use builder::Hooks;
pub use builder::{BuildError, ServerBuilder, ServerConfig};
pub use cluster::ClusterConnections;
pub(crate) use lifecycle::{Permit, Shared, Signal, TaskGuard};

/// The room server, and its cloneable handle: emit, look up and close
/// connections, shut down. See the [module docs](self).
///
/// Cloning is cheap (an `Arc`); every clone is the same server.
#[derive(Clone)]
pub struct Server {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let paths: Vec<&str> = self.shared.endpoints.iter().map(|e| e.path()).collect();
        f.debug_struct("Server")
            .field("endpoints", &paths)
            .field("connections", &self.connection_count())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Start building a server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            config: ServerConfig::default(),
            endpoints: Vec::new(),
            hooks: Hooks::default(),
            resolver: None,
            backplane: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// Send `message` on channel `C` to the connections `target` names:
    /// rooms, users and connections, minus the excluded connections and
    /// users; naming none of them means every connection of the channel
    /// (Alepha's `emit`). Returns how many connections it reached.
    ///
    /// Recipients reached through a room get the frame labelled with the
    /// first targeted room they are in (`__alephaRoom` on the Alepha wire);
    /// others get it unlabelled. The frame is encoded once per (wire
    /// format, label) and shared.
    ///
    /// Fails with [`EmitError::UnknownChannel`] if no endpoint serves `C`,
    /// and with [`EmitError::Encode`] if the message cannot be encoded
    /// (nothing is sent then).
    pub fn emit<C: Channel + 'static>(&self, target: &Emit, message: &C::In<'_>) -> Result<usize, EmitError> {
        let endpoint = self
            .shared
            .endpoint(C::PATH)
            .filter(|e| e.channel_type() == TypeId::of::<C>())
            .ok_or(EmitError::UnknownChannel(C::PATH))?;
        emit::deliver(endpoint.cell(), &emit::Spec::from_emit(target), message)
    }

    /// Every open connection of this server, on every endpoint.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.local_infos(About::Channel)
    }

    /// How many connections are open (registered in their endpoint).
    pub fn connection_count(&self) -> usize {
        self.shared.endpoints.iter().map(|e| e.cell().lock().len()).sum()
    }

    /// The connection with this id, if it is open on this server.
    pub fn connection(&self, id: &str) -> Option<ConnectionInfo> {
        self.shared.endpoints.iter().find_map(|e| e.cell().lock().info_of(e.path(), id))
    }

    /// The connections of this server in `room`, on every endpoint (rooms
    /// are per endpoint; the same room name on two endpoints is two rooms,
    /// both listed). Empty for an unknown room.
    pub fn room_connections(&self, room: &str) -> Vec<ConnectionInfo> {
        self.local_infos(About::Room(room))
    }

    /// The connections of `user` on this server, on every endpoint.
    pub fn user_connections(&self, user: &str) -> Vec<ConnectionInfo> {
        self.local_infos(About::User(user))
    }

    fn local_infos(&self, about: About<'_>) -> Vec<ConnectionInfo> {
        let mut found = Vec::new();
        for endpoint in &self.shared.endpoints {
            found.extend(endpoint.cell().lock().infos(endpoint.path(), about));
        }
        found
    }

    /// Every open connection of the cluster: [`connections`](Self::connections)
    /// asked of every node over the backplane (of this server alone without
    /// one). Each node answers within [`QUERY_TIMEOUT`](roomwire_core::cluster::QUERY_TIMEOUT)
    /// or the answer is marked incomplete.
    pub async fn cluster_connections(&self) -> ClusterConnections {
        cluster::query(&self.shared, cluster::Asked::Channel).await
    }

    /// The connections in `room` on every node of the cluster, as
    /// [`cluster_connections`](Self::cluster_connections) asks (only nodes
    /// with members of the room are asked).
    pub async fn cluster_room_connections(&self, room: &str) -> ClusterConnections {
        cluster::query(&self.shared, cluster::Asked::Room(room.to_owned())).await
    }

    /// The connections of `user` on every node of the cluster, as
    /// [`cluster_connections`](Self::cluster_connections) asks (only nodes
    /// holding connections of the user are asked).
    pub async fn cluster_user_connections(&self, user: &str) -> ClusterConnections {
        cluster::query(&self.shared, cluster::Asked::User(user.to_owned())).await
    }

    /// Close the connection `id` with `code` and `reason` (at most 123
    /// bytes; longer is cut at a character boundary). Returns false if no
    /// such connection is open, or if `code` cannot be sent in a close
    /// frame (1005, 1006, 1015 and the others
    /// [`CloseCode::is_valid_on_wire`] refuses: the connection is left
    /// open). The connection leaves its rooms when the closing handshake
    /// ends.
    ///
    /// With a backplane, a connection of another node (its id carries that
    /// node's tag) is closed by that node: true then means the request was
    /// published, on every endpoint's behalf.
    pub fn close_connection(&self, id: &str, code: CloseCode, reason: &str) -> bool {
        if !code.is_valid_on_wire() {
            warn!(connection = id, code = u16::from(code), "close_connection: a code no close frame may carry");
            return false;
        }
        if self.shared.close_local(id, code, reason) {
            return true;
        }
        if self.shared.ask_holder(|node, path| node.close_remote(path, id, code, reason)) {
            return true;
        }
        warn!(connection = id, "close_connection: no such connection");
        false
    }

    /// The backplane's state and counters; `None` without a backplane.
    pub fn backplane_stats(&self) -> Option<crate::backplane::BackplaneStats> {
        self.shared.node.link.as_ref().map(crate::backplane::Link::stats)
    }

    /// Whether [`shutdown`](Self::shutdown) has started.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.closing.is_set()
    }

    /// Graceful shutdown: stop accepting (listeners return, upgrades are
    /// refused with 503), close every connection with 1001 "Server shutting
    /// down", and wait for the closing handshakes, at most
    /// [`ServerConfig::shutdown_timeout`]; connections still open then are
    /// dropped. Returns once every connection task has ended (or a further
    /// second has passed). Calling it again waits again.
    pub async fn shutdown(&self) {
        let shared = &self.shared;
        shared.closing.set();
        let shutdown = ServerClose::Shutdown.refusal();
        for endpoint in &shared.endpoints {
            endpoint.cell().lock().for_each_outbox(|outbox| outbox.request_close(shutdown.code, shutdown.reason));
        }
        if tokio::time::timeout(shared.config.shutdown_timeout, self.tasks_done()).await.is_err() {
            debug!("shutdown timeout: dropping the remaining connections");
            for endpoint in &shared.endpoints {
                endpoint.cell().lock().for_each_outbox(|outbox| outbox.abort());
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), self.tasks_done()).await;
        }
        // The backplane's task ends.
        if let Some(link) = &shared.node.link {
            link.close();
        }
    }

    async fn tasks_done(&self) {
        loop {
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.shared.tasks.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Accept connections from `listener` until [`shutdown`](Self::shutdown),
    /// serving each in its own task (`TCP_NODELAY` set). Errors of one
    /// accepted connection never end the loop; an error of the listener
    /// itself (such as too many open files) is logged and retried after a
    /// short pause.
    ///
    /// On a current-thread runtime, a frame emitted to a connection that
    /// waits with nothing to write is written into its socket by the
    /// emitting task itself, saving the connection's wake-up. Not on a
    /// multi-threaded one: there the connections' own tasks spread a room's
    /// writes over the workers, where the emitter would make them one after
    /// another.
    pub async fn serve(&self, listener: TcpListener) -> io::Result<()> {
        let writes_direct =
            tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread;
        self.accept_loop(listener, |stream, peer| {
            let incoming = Incoming::Tcp { stream, writes_direct };
            tokio::spawn(self.serve_future(incoming, Some(peer), true));
        })
        .await
    }

    /// Accept TLS connections (`wss://`) from `listener` until
    /// [`shutdown`](Self::shutdown), with the limits of
    /// [`serve`](Self::serve): the TLS handshake takes a place among the
    /// handshakes in progress (per address too) and must see its first
    /// byte within `core.first_byte_timeout` and end within
    /// `core.handshake_timeout`, after which the HTTP request has the same
    /// deadlines again (so a place is held at most twice
    /// `handshake_timeout`); a stream with no place is closed without an
    /// answer (its client expects TLS, not HTTP). Accept errors never end
    /// the loop.
    ///
    /// ```no_run
    /// # async fn f(server: roomwire_tokio::server::Server, tls: std::sync::Arc<rustls::ServerConfig>) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
    /// server.serve_tls(listener, tokio_rustls::TlsAcceptor::from(tls)).await
    /// # }
    /// ```
    #[cfg(feature = "tls")]
    pub async fn serve_tls(&self, listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor) -> io::Result<()> {
        let first_byte = self.shared.config.socket.core.first_byte_timeout.map(conn::to_std);
        self.accept_loop(listener, |tcp, peer| {
            let acceptor = acceptor.clone();
            let wrapping = async move {
                // A client that never starts its TLS handshake holds its
                // place no longer than one that never starts its request.
                let mut first = [0u8; 1];
                match conn::within(first_byte, tcp.peek(&mut first)).await {
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(error),
                    None => return Err(io::ErrorKind::TimedOut.into()),
                }
                let tls = acceptor.accept(tcp).await?;
                Ok::<conn::ServedStream, io::Error>(conn::ServedStream::boxed(tls))
            };
            tokio::spawn(self.serve_future(Incoming::Wrapped(Box::pin(wrapping)), Some(peer), true));
        })
        .await
    }

    /// Accept from `listener` until shutdown, handing each stream
    /// (`TCP_NODELAY` set) to `serve`. An error of the listener itself
    /// (such as too many open files) is logged and retried after a pause:
    /// the server goes on serving the connections it has.
    pub(crate) async fn accept_loop(
        &self,
        listener: TcpListener,
        serve: impl Fn(TcpStream, SocketAddr),
    ) -> io::Result<()> {
        let local = listener.local_addr().ok();
        debug!(?local, "serving");
        loop {
            let accepted = tokio::select! {
                biased;
                () = self.shared.closing.wait() => return Ok(()),
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    serve(stream, peer);
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Bind `addr` and [`serve`](Self::serve) it.
    pub async fn listen(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        let listener = TcpListener::bind(addr).await?;
        self.serve(listener).await
    }

    /// Serve one accepted stream (a `TcpStream`, a tokio-rustls
    /// `TlsStream`, …): the opening handshake, admission, then the
    /// connection until it ends. `peer` is shown to `authorize` and in
    /// logs. Returns when the connection is over; spawn it.
    ///
    /// ```no_run
    /// # async fn f(server: roomwire_tokio::server::Server, acceptor: ()) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
    /// loop {
    ///     let (tcp, peer) = listener.accept().await?;
    ///     let server = server.clone();
    ///     tokio::spawn(async move {
    ///         // let tls = acceptor.accept(tcp).await?; (tokio-rustls)
    ///         server.serve_stream(tcp, Some(peer)).await;
    ///     });
    /// }
    /// # }
    /// ```
    pub async fn serve_stream<S>(&self, stream: S, peer: Option<SocketAddr>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.serve_future(Incoming::Ready(conn::ServedStream::boxed(stream)), peer, false).await
    }

    /// The future serving one stream, spawned as is by [`serve`](Self::serve):
    /// no `async fn` wrapper around it, whose copies of the arguments would
    /// stay in every connection's task. `may_park`: the task is the
    /// server's own, so it may end while the connection waits, parked.
    fn serve_future(
        &self,
        stream: Incoming,
        peer: Option<SocketAddr>,
        may_park: bool,
    ) -> impl Future<Output = ()> + Send + 'static {
        let span = info_span!(
            "connection",
            ?peer,
            id = tracing::field::Empty,
            path = tracing::field::Empty,
            user = tracing::field::Empty
        );
        conn::serve_stream(self.clone(), stream, peer, may_park).instrument(span)
    }
}
