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
//! but reads nothing more from the client (TCP applies backpressure to a
//! client that sends faster than its handler runs). Handlers of different
//! connections run concurrently.
//!
//! A handler that returns an error (or panics) answers the sender alone
//! with `{"error": "<error text>"}` on the Alepha wire, an error envelope
//! with code 4006 on the roomwire wire; the connection stays open.
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
//! and memory stays bounded. No lock is held across an `await`.
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
mod conn;
mod context;
mod emit;
mod endpoint;
mod outbox;
mod registry;
mod upgrade;

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use roomwire_core::admission::SERVER_SHUTDOWN;
use roomwire_core::channel::Channel;
use roomwire_core::room::TableLimits;
use roomwire_core::{CloseCode, RoomTable};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::Notify;
use tracing::{Instrument, debug, info_span, warn};

pub use admission::{Admission, Handshake};
pub use context::{Context, Reply};
pub use emit::{Emit, EmitError};
pub use endpoint::{BoxFuture, Endpoint, HandlerError, HandlerResult};
pub use registry::{ConnectEvent, ConnectionInfo, DisconnectEvent, MessageEvent};

use endpoint::{ErasedEndpoint, Resolver};

/// Server-wide limits and deadlines. Every field has a safe default.
///
/// ```
/// use std::time::Duration;
/// use roomwire_tokio::server::ServerConfig;
/// use roomwire_tokio::roomwire_core::Duration as CoreDuration;
///
/// let mut config = ServerConfig::default();
/// config.socket.core.max_message_size = 64 * 1024; // Alepha's maxPayload
/// config.socket.core.keepalive_interval = Some(CoreDuration::from_secs(10));
/// config.max_connections = 50_000;
/// config.shutdown_timeout = Duration::from_secs(2);
/// assert_eq!(ServerConfig::default().socket.core.max_message_size, 1 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Per-connection limits, enforced by the core and the raw layer:
    /// `core.max_message_size` (Alepha's `maxPayload`, default 1 MiB, over
    /// it the connection closes with 1009), `core.handshake_timeout`
    /// (default 10 s, then 408), `core.close_timeout`,
    /// `core.keepalive_interval` (here default **30 s**: a ping every
    /// interval, a client that did not answer the previous one is dropped
    /// and its slots freed) and `max_outbound`, the bound of the outbound
    /// queue (default 4 MiB, see the [module docs](self#backpressure)).
    pub socket: crate::Config,
    /// Most open WebSocket connections on this server; an upgrade beyond
    /// it is refused with 503. Default 100 000.
    pub max_connections: usize,
    /// Most connections still in their opening handshake (reading the
    /// request, authorizing); a stream beyond it is dropped without an
    /// answer. With `handshake_timeout`, this bounds what slow or silent
    /// clients hold. Default 1024.
    pub max_handshakes: usize,
    /// Room limits of each endpoint's room table (per connection, per
    /// room, rooms and members per endpoint). Default: at most 32 rooms
    /// per connection, no other limit.
    pub rooms: TableLimits,
    /// How long [`Server::shutdown`] waits for the closing handshakes
    /// before dropping the remaining connections. Default 5 s.
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let mut socket = crate::Config::default();
        socket.core.keepalive_interval = Some(roomwire_core::Duration::from_secs(30));
        Self {
            socket,
            max_connections: 100_000,
            max_handshakes: 1024,
            rooms: TableLimits { max_rooms_per_member: 32, ..TableLimits::UNLIMITED },
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

/// Why [`ServerBuilder::build`] refused the endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// Two endpoints have the same path.
    DuplicatePath(&'static str),
    /// An endpoint declares both `authorize` and `secure`: an endpoint has
    /// one way in (as in Alepha).
    AuthorizeAndSecure(&'static str),
    /// A `secure` endpoint has no way to learn who the user is: give it (or
    /// the server) a `resolve_user` hook.
    SecureWithoutResolver(&'static str),
    /// An endpoint path does not start with `/`.
    InvalidPath(&'static str),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::DuplicatePath(p) => write!(f, "two endpoints on {p}"),
            BuildError::AuthorizeAndSecure(p) => write!(
                f,
                "WebSocket endpoint {p} declares both authorize and secure. An endpoint has one way in: \
                 authorize decides alone, secure refuses anonymous users"
            ),
            BuildError::SecureWithoutResolver(p) => {
                write!(f, "secure WebSocket endpoint {p} has no resolve_user hook (on it or on the server)")
            }
            BuildError::InvalidPath(p) => write!(f, "endpoint path {p:?} does not start with '/'"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Server-level observers: called synchronously, for every endpoint
/// (Alepha's `websocket:connect`, `websocket:disconnect` and
/// `websocket:message` events).
#[derive(Default)]
pub(crate) struct Hooks {
    pub(crate) connect: Option<Observer<ConnectEvent>>,
    pub(crate) disconnect: Option<Observer<DisconnectEvent>>,
    pub(crate) message: Option<MessageObserver>,
}

type Observer<E> = Box<dyn Fn(&E) + Send + Sync>;
type MessageObserver = Box<dyn for<'a> Fn(&MessageEvent<'a>) + Send + Sync>;

/// Builds a [`Server`]: endpoints, configuration, server-wide hooks.
///
/// ```
/// use roomwire_tokio::server::{Endpoint, Server, ServerConfig};
/// # #[derive(serde::Serialize, serde::Deserialize)] pub struct M;
/// roomwire_tokio::roomwire_core::channel! { /// A channel.
///     pub struct Ping { path: "/ws/ping", in: M, out: M } }
///
/// let server = Server::builder()
///     .config(ServerConfig::default())
///     .endpoint(Endpoint::<Ping>::new(|_ctx| Box::pin(async { Ok(()) })))
///     .on_connect(|event| println!("{} joined {:?}", event.connection_id, event.rooms))
///     .build()
///     .unwrap();
/// assert_eq!(server.connection_count(), 0);
/// ```
#[must_use]
pub struct ServerBuilder {
    config: ServerConfig,
    endpoints: Vec<Arc<dyn ErasedEndpoint>>,
    hooks: Hooks,
    resolver: Option<Resolver>,
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let paths: Vec<&str> = self.endpoints.iter().map(|e| e.path()).collect();
        f.debug_struct("ServerBuilder").field("config", &self.config).field("endpoints", &paths).finish()
    }
}

impl ServerBuilder {
    /// Use `config` (replacing the default).
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Register an endpoint.
    pub fn endpoint<C: Channel + 'static>(mut self, endpoint: Endpoint<C>) -> Self
    where
        for<'a> C::Out<'a>: Send,
    {
        self.endpoints.push(endpoint.into_erased(self.config.rooms));
        self
    }

    /// The server's user resolver: how endpoints without `authorize` or
    /// their own resolver learn the user of a handshake (Alepha's
    /// `resolveUserId`, which reads the `Authorization` header or the
    /// cookie). `None` means anonymous. Without any resolver every
    /// connection is anonymous.
    pub fn resolve_user<F, Fut>(mut self, resolve: F) -> Self
    where
        F: Fn(&Handshake) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<String>> + Send + 'static,
    {
        self.resolver = Some(endpoint::resolver(resolve));
        self
    }

    /// Called when a connection is registered and in its rooms, before its
    /// endpoint's `on_connect`.
    pub fn on_connect(mut self, hook: impl Fn(&ConnectEvent) + Send + Sync + 'static) -> Self {
        self.hooks.connect = Some(Box::new(hook));
        self
    }

    /// Called when a connection has ended and left its rooms, before its
    /// endpoint's `on_disconnect`.
    pub fn on_disconnect(mut self, hook: impl Fn(&DisconnectEvent) + Send + Sync + 'static) -> Self {
        self.hooks.disconnect = Some(Box::new(hook));
        self
    }

    /// Called with every whole message a client sends, before it is
    /// decoded (so also for messages that turn out invalid).
    pub fn on_message(mut self, hook: impl Fn(&MessageEvent<'_>) + Send + Sync + 'static) -> Self {
        self.hooks.message = Some(Box::new(hook));
        self
    }

    /// Check the endpoints and build the server.
    pub fn build(self) -> Result<Server, BuildError> {
        let mut by_path = HashMap::new();
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            let path = endpoint.path();
            if !path.starts_with('/') {
                return Err(BuildError::InvalidPath(path));
            }
            if by_path.insert(path, index).is_some() {
                return Err(BuildError::DuplicatePath(path));
            }
            let policy = endpoint.policy();
            if policy.authorize.is_some() && policy.secure {
                return Err(BuildError::AuthorizeAndSecure(path));
            }
            if policy.secure && policy.resolver.is_none() && self.resolver.is_none() {
                return Err(BuildError::SecureWithoutResolver(path));
            }
        }
        Ok(Server {
            shared: Arc::new(Shared {
                config: self.config,
                endpoints: self.endpoints,
                by_path,
                hooks: self.hooks,
                resolver: self.resolver,
                open: AtomicUsize::new(0),
                handshakes: AtomicUsize::new(0),
                tasks: AtomicUsize::new(0),
                idle: Notify::new(),
                closing: Signal::default(),
            }),
        })
    }
}

/// A flag that can be awaited.
#[derive(Default)]
pub(crate) struct Signal {
    set: AtomicBool,
    notify: Notify,
}

impl Signal {
    pub(crate) fn set(&self) {
        self.set.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    pub(crate) async fn wait(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_set() {
            return;
        }
        notified.await;
    }
}

pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) endpoints: Vec<Arc<dyn ErasedEndpoint>>,
    by_path: HashMap<&'static str, usize>,
    pub(crate) hooks: Hooks,
    pub(crate) resolver: Option<Resolver>,
    /// Open WebSocket connections (counted from the decision to accept).
    open: AtomicUsize,
    /// Connections in their opening handshake.
    handshakes: AtomicUsize,
    /// Tasks serving a stream, whatever their stage.
    tasks: AtomicUsize,
    idle: Notify,
    /// Shutdown started: stop accepting, close everything with 1001.
    pub(crate) closing: Signal,
}

impl Shared {
    pub(crate) fn endpoint(&self, path: &str) -> Option<&Arc<dyn ErasedEndpoint>> {
        self.by_path.get(path).and_then(|&i| self.endpoints.get(i))
    }
}

/// Counts a task serving a stream; shutdown waits for none to remain.
pub(crate) struct TaskGuard(Arc<Shared>);

impl TaskGuard {
    pub(crate) fn new(shared: &Arc<Shared>) -> Self {
        shared.tasks.fetch_add(1, Ordering::SeqCst);
        Self(shared.clone())
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.tasks.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A place under one of the server's caps (open connections, handshakes
/// in progress), given back on drop.
pub(crate) struct Permit {
    shared: Arc<Shared>,
    open: bool,
}

impl Permit {
    fn take(shared: &Arc<Shared>, open: bool) -> Option<Self> {
        let (counter, max) = if open {
            (&shared.open, shared.config.max_connections)
        } else {
            (&shared.handshakes, shared.config.max_handshakes)
        };
        counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1)).ok()?;
        Some(Self { shared: shared.clone(), open })
    }

    /// A place among the open connections, if the cap allows.
    pub(crate) fn open(shared: &Arc<Shared>) -> Option<Self> {
        Self::take(shared, true)
    }

    /// A place among the handshakes in progress, if the cap allows.
    pub(crate) fn handshake(shared: &Arc<Shared>) -> Option<Self> {
        Self::take(shared, false)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let counter = if self.open { &self.shared.open } else { &self.shared.handshakes };
        counter.fetch_sub(1, Ordering::SeqCst);
    }
}

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

    /// Every open connection, on every endpoint.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        let mut all = Vec::new();
        for endpoint in &self.shared.endpoints {
            endpoint.cell().lock().for_each_info(endpoint.path(), |info| all.push(info));
        }
        all
    }

    /// How many connections are open (registered in their endpoint).
    pub fn connection_count(&self) -> usize {
        self.shared.endpoints.iter().map(|e| e.cell().lock().len()).sum()
    }

    /// The connection with this id, if it is open.
    pub fn connection(&self, id: &str) -> Option<ConnectionInfo> {
        self.shared.endpoints.iter().find_map(|e| e.cell().lock().info_of(e.path(), id))
    }

    /// The connections in `room`, on every endpoint (rooms are per
    /// endpoint; the same room name on two endpoints is two rooms, both
    /// listed). Empty for an unknown room.
    pub fn room_connections(&self, room: &str) -> Vec<ConnectionInfo> {
        let mut found = Vec::new();
        for endpoint in &self.shared.endpoints {
            let state = endpoint.cell().lock();
            for &member in state.table.members(room) {
                found.extend(state.info_of_member(endpoint.path(), member));
            }
        }
        found
    }

    /// The connections of `user`, on every endpoint.
    pub fn user_connections(&self, user: &str) -> Vec<ConnectionInfo> {
        let mut found = Vec::new();
        for endpoint in &self.shared.endpoints {
            let state = endpoint.cell().lock();
            for member in state.members_of_user(user) {
                found.extend(state.info_of_member(endpoint.path(), member));
            }
        }
        found
    }

    /// Close the connection `id` with `code` and `reason` (at most 123
    /// bytes; longer is cut at a character boundary). Returns false if no
    /// such connection is open. The connection leaves its rooms when the
    /// closing handshake ends.
    pub fn close_connection(&self, id: &str, code: CloseCode, reason: &str) -> bool {
        for endpoint in &self.shared.endpoints {
            if let Some(outbox) = endpoint.cell().lock().outbox_of(id) {
                outbox.request_close(code, reason);
                return true;
            }
        }
        warn!(connection = id, "close_connection: no such connection");
        false
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
        for endpoint in &shared.endpoints {
            endpoint
                .cell()
                .lock()
                .for_each_outbox(|outbox| outbox.request_close(SERVER_SHUTDOWN.code, SERVER_SHUTDOWN.reason));
        }
        if tokio::time::timeout(shared.config.shutdown_timeout, self.tasks_done()).await.is_ok() {
            return;
        }
        debug!("shutdown timeout: dropping the remaining connections");
        for endpoint in &shared.endpoints {
            endpoint.cell().lock().for_each_outbox(|outbox| outbox.abort());
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.tasks_done()).await;
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
    pub async fn serve(&self, listener: TcpListener) -> io::Result<()> {
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
                    tokio::spawn(self.serve_future(stream, Some(peer)));
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
        self.serve_future(stream, peer).await
    }

    /// The future serving one stream, spawned as is by [`serve`](Self::serve):
    /// no `async fn` wrapper around it, whose copies of the arguments would
    /// stay in every connection's task.
    fn serve_future<S>(&self, stream: S, peer: Option<SocketAddr>) -> impl Future<Output = ()> + Send + 'static
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let span = info_span!(
            "connection",
            ?peer,
            id = tracing::field::Empty,
            path = tracing::field::Empty,
            user = tracing::field::Empty
        );
        conn::serve_stream(self.clone(), Box::new(stream), peer).instrument(span)
    }
}
