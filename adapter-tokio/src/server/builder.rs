//! Building a server: its limits, its endpoints, its hooks.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use roomwire_core::channel::Channel;
use roomwire_core::room::TableLimits;
use tokio::sync::Notify;

use super::cluster::Node;
use super::endpoint::{ErasedEndpoint, Resolver};
use super::{
    ConnectEvent, DisconnectEvent, Endpoint, ErrorEvent, Handshake, MessageEvent, Server, Shared, Signal, endpoint,
};
use crate::backplane::{Backplane, Link};

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
    /// it the connection closes with 1009), `core.max_handshake_size`
    /// (default 16 KiB of request headers, as Node's HTTP server; beyond
    /// it, or beyond [`MAX_HEADERS`](roomwire_core::handshake::MAX_HEADERS)
    /// header lines, 431), `core.handshake_timeout`
    /// (default 10 s, then 408), `core.close_timeout`,
    /// `core.keepalive_interval` (here default **30 s**: a ping every
    /// interval, a client that did not answer the previous one is dropped
    /// and its slots freed) and `max_outbound`, the bound of the outbound
    /// queue (default 4 MiB, see the [module docs](super#backpressure)).
    pub socket: crate::Config,
    /// Most open WebSocket connections on this server; an upgrade beyond
    /// it is refused with 503. Default 100 000.
    pub max_connections: usize,
    /// Most connections still in their opening handshake (reading the
    /// request, authorizing); a stream beyond it is answered 503 without
    /// its request being read. With `core.first_byte_timeout` (default
    /// 3 s) and `core.handshake_timeout`, this bounds what slow or silent
    /// clients hold. Default 1024.
    pub max_handshakes: usize,
    /// Most of those from one address (an IPv4 address, an IPv6 /64); a
    /// stream beyond it is answered 429, so one host cannot take every
    /// place. Addresses behind one NAT share it: it is well above what
    /// real clients use (a handshake takes a round trip or two).
    /// Default 32.
    pub max_handshakes_per_address: usize,
    /// Most open connections from one address (an IPv4 address, an IPv6
    /// /64); an upgrade beyond it is refused with 429, so one host cannot
    /// take every place under `max_connections`. Default `None` (no cap):
    /// many users can share one IPv4 address behind a carrier's NAT, so
    /// the right figure depends on who the clients are.
    pub max_connections_per_address: Option<usize>,
    /// Whether loopback peers (127.0.0.0/8, ::1) are held to
    /// `max_handshakes_per_address` and `max_connections_per_address` too. Default `false`: behind a reverse
    /// proxy on the same host every client arrives from the proxy's
    /// loopback address, and the proxy is where per-client limits belong.
    pub address_cap_on_loopback: bool,
    /// Room limits of each endpoint's room table (per connection, per
    /// room, rooms and members per endpoint). Default: at most 32 rooms
    /// per connection, no other limit. An Alepha handshake query naming
    /// more rooms than `max_rooms_per_member` is closed with 1008 "Too
    /// many rooms for this connection"; the query is not otherwise capped
    /// (Alepha has no cap: raise it to admit clients that name more).
    pub rooms: TableLimits,
    /// How long a handler may run for one message; then it is cancelled
    /// (its future dropped) and the sender told `Handler timed out` as
    /// for a handler error. While a handler runs, its connection reads on
    /// up to the client's next message, answering pings and keeping its
    /// deadlines meanwhile (then it only writes until the handler ends); a
    /// close from the client waits until the handler's answer is out.
    /// Default 60 s; `None`: no limit.
    pub handler_timeout: Option<Duration>,
    /// How long [`Server::shutdown`] waits for the closing handshakes
    /// before dropping the remaining connections. Default 5 s.
    pub shutdown_timeout: Duration,
    /// Stateful rooms' beats on time: a thread per room endpoint wakes
    /// each room about 0.1 ms from its beat (tokio's timers alone wake it
    /// 0–2 ms late, at random: a millisecond of jitter between beats). It
    /// costs a thread, and some of the server's CPU under load (beats
    /// woken one by one rather than batched by the millisecond; up to a
    /// fifth more in BENCHMARKS.md, stateful rooms). Default true.
    pub precise_ticks: bool,
    /// Whether a connection that waits with nothing under way gives up its
    /// task and parks in the server (see the [module docs](super#waiting-connections)):
    /// about 360 bytes less per waiting connection, for about 2 µs more
    /// per message that reaches one (the task made again, the connection
    /// parked again after). Where messages reach many waiting connections
    /// at once on a multi-threaded runtime (a room whose members heard
    /// nothing for a second), that is about a fifth more CPU per delivery
    /// (BENCHMARKS.md, ninth pass); on a current-thread runtime emitters
    /// write to waiting members themselves, which parking does not change.
    /// Default true.
    pub park_waiting: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let socket =
            crate::Config { core: roomwire_core::session::server_connection_config(), ..crate::Config::default() };
        Self {
            socket,
            max_connections: 100_000,
            max_handshakes: 1024,
            max_handshakes_per_address: 32,
            max_connections_per_address: None,
            address_cap_on_loopback: false,
            handler_timeout: Some(Duration::from_secs(60)),
            rooms: TableLimits { max_rooms_per_member: 32, ..TableLimits::UNLIMITED },
            shutdown_timeout: Duration::from_secs(5),
            precise_ticks: true,
            park_waiting: true,
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
    /// A backplane was given but `build` was called outside a tokio
    /// runtime, where its task cannot start.
    NoRuntime,
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
            BuildError::NoRuntime => f.write_str("a server with a backplane is built inside a tokio runtime"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Server-level observers: called synchronously, for every endpoint
/// (Alepha's `websocket:connect`, `websocket:disconnect`,
/// `websocket:message` and `websocket:error` events).
#[derive(Default)]
pub(crate) struct Hooks {
    pub(crate) connect: Option<Observer<ConnectEvent>>,
    pub(crate) disconnect: Option<Observer<DisconnectEvent>>,
    pub(crate) message: Option<MessageObserver>,
    pub(crate) error: Option<ErrorObserver>,
}

type Observer<E> = Box<dyn Fn(&E) + Send + Sync>;
type MessageObserver = Box<dyn for<'a> Fn(&MessageEvent<'a>) + Send + Sync>;
type ErrorObserver = Box<dyn for<'a> Fn(&ErrorEvent<'a>) + Send + Sync>;

/// An endpoint waiting for the server's room limits.
pub(super) struct PendingEndpoint {
    path: &'static str,
    erase: Box<dyn FnOnce(TableLimits, Arc<Node>) -> Arc<dyn ErasedEndpoint> + Send>,
}

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
    pub(super) config: ServerConfig,
    /// Endpoints as registered; their room tables are made at
    /// [`build`](Self::build), with the configuration as it is then.
    pub(super) endpoints: Vec<PendingEndpoint>,
    pub(super) hooks: Hooks,
    pub(super) resolver: Option<Resolver>,
    pub(super) backplane: Option<Arc<dyn Backplane>>,
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let paths: Vec<&str> = self.endpoints.iter().map(|e| e.path).collect();
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
        let path = C::PATH;
        self.endpoints
            .push(PendingEndpoint { path, erase: Box::new(move |limits, node| endpoint.into_erased(limits, node)) });
        self
    }

    /// Register a stateful room endpoint (Alepha's `$room`).
    pub fn room<C, S, D>(mut self, room: super::RoomEndpoint<C, S, D>) -> Self
    where
        C: Channel + 'static,
        for<'a> C::Out<'a>: Send,
        S: Send + 'static,
        D: Default + Send + 'static,
    {
        let path = C::PATH;
        self.endpoints
            .push(PendingEndpoint { path, erase: Box::new(move |limits, node| room.into_erased(limits, node)) });
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

    /// Called when an endpoint's handler fails on a client's message: it
    /// returned an error, panicked, or outran
    /// [`ServerConfig::handler_timeout`] (Alepha's `websocket:error`, which
    /// Alepha too emits for `$websocket` endpoints only: a stateful room's
    /// callbacks' failures are answered to the sender and logged). The sender has been answered as
    /// usual; this is where failures reach the application's logs or
    /// metrics, with the connection, its user, the path and the room.
    ///
    /// ```
    /// use roomwire_tokio::server::{HandlerFailure, Server};
    /// let builder = Server::builder().on_error(|event| {
    ///     if let HandlerFailure::Panic(message) = event.failure {
    ///         eprintln!("{} on {}: panicked: {message}", event.connection_id, event.path);
    ///     }
    /// });
    /// # let _ = builder;
    /// ```
    pub fn on_error(mut self, hook: impl Fn(&ErrorEvent<'_>) + Send + Sync + 'static) -> Self {
        self.hooks.error = Some(Box::new(hook));
        self
    }

    /// Join a cluster: emits, replies and `close_connection` reach the
    /// connections of every server on the same bus, and this server hears
    /// only the traffic of rooms and users it holds (see
    /// [`crate::backplane`]). Building then needs a tokio runtime (the
    /// backplane runs in its own task until [`Server::shutdown`]).
    pub fn backplane(mut self, backplane: impl Backplane) -> Self {
        self.backplane = Some(Arc::new(backplane));
        self
    }

    /// Check the endpoints and build the server.
    pub fn build(self) -> Result<Server, BuildError> {
        let limits = self.config.rooms;
        let runtime = match &self.backplane {
            Some(_) => Some(tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?),
            None => None,
        };
        let wire = self.backplane.as_ref().map(|b| b.wire()).unwrap_or_default();
        let node = Node::new(self.backplane.as_ref().map(|_| Link::new()), wire);
        let endpoints: Vec<Arc<dyn ErasedEndpoint>> =
            self.endpoints.into_iter().map(|pending| (pending.erase)(limits, node.clone())).collect();
        let mut by_path = HashMap::new();
        for (index, endpoint) in endpoints.iter().enumerate() {
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
        let shared = Arc::new(Shared {
            config: self.config,
            endpoints,
            by_path,
            hooks: self.hooks,
            resolver: self.resolver,
            open: AtomicUsize::new(0),
            handshakes: Mutex::default(),
            open_by_address: Mutex::default(),
            answering: AtomicUsize::new(0),
            tasks: AtomicUsize::new(0),
            idle: Notify::new(),
            origin: tokio::time::Instant::now(),
            closing: Signal::default(),
            node: node.clone(),
            parking: std::sync::OnceLock::new(),
        });
        node.attach(&shared, runtime.as_ref());
        if let (Some(backplane), Some(runtime), Some(link)) = (self.backplane, runtime, &node.link) {
            runtime.spawn(backplane.run(link.clone()));
        }
        Ok(Server { shared })
    }
}
