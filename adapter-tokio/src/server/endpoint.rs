//! Endpoints: a channel, its handler, its admission rules and hooks.

use std::any::TypeId;
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use roomwire_core::State;
use roomwire_core::admission::{Origins, UNAUTHORIZED};
use roomwire_core::channel::Channel;
use roomwire_core::dispatch::{Inbound, Membership, Refusal, RoomGate};
use roomwire_core::room::{MemberId, RoomId, TableLimits};
use roomwire_core::session::ServerSession;

use super::Server;
use super::admission::{Admission, Handshake};
use super::cluster::Node;
use super::context::Context;
use super::registry::{ChannelCell, ConnectEvent, DisconnectEvent, Registered, Table};

/// A boxed, sendable future borrowing for `'a`: what handlers return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The error a handler may return: anything that is an error. Its text
/// (`Display`) is sent to the sender alone.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// What a handler returns.
pub type HandlerResult = Result<(), HandlerError>;

type Handler<C> = dyn for<'a> Fn(Context<'a, C>) -> BoxFuture<'a, HandlerResult> + Send + Sync;
pub(crate) type Authorize = Arc<dyn Fn(&Handshake) -> BoxFuture<'static, Admission> + Send + Sync>;
pub(crate) type Resolver = Arc<dyn Fn(&Handshake) -> BoxFuture<'static, Option<String>> + Send + Sync>;
type ConnectHook = Arc<dyn Fn(Server, ConnectEvent) -> BoxFuture<'static, ()> + Send + Sync>;
type DisconnectHook = Arc<dyn Fn(Server, DisconnectEvent) -> BoxFuture<'static, ()> + Send + Sync>;

pub(crate) fn resolver<F, Fut>(resolve: F) -> Resolver
where
    F: Fn(&Handshake) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<String>> + Send + 'static,
{
    Arc::new(move |handshake| Box::pin(resolve(handshake)))
}

/// The admission rules and hooks of an endpoint (not typed by channel).
#[derive(Default)]
pub(crate) struct Policy {
    pub(crate) authorize: Option<Authorize>,
    pub(crate) resolver: Option<Resolver>,
    pub(crate) secure: bool,
    pub(crate) max_connections_per_user: Option<usize>,
    /// `None`: every origin.
    pub(crate) origins: Option<AllowedOrigins>,
    /// `None`: every room the channel's ids allow.
    pub(crate) rooms: Option<RoomRule>,
    pub(crate) on_connect: Option<ConnectHook>,
    pub(crate) on_disconnect: Option<DisconnectHook>,
}

/// Who asks to be in a room: what [`Endpoint::authorize_room`] decides on.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RoomAccess<'a> {
    /// The connection's user, if it has one.
    pub user_id: Option<&'a str>,
    /// The connection's id.
    pub connection_id: &'a str,
    /// The room.
    pub room: &'a str,
}

pub(crate) type RoomRule = Arc<dyn Fn(&RoomAccess<'_>) -> bool + Send + Sync>;

impl Policy {
    /// The core's [`RoomGate`] for one connection: this endpoint's rule,
    /// asked about that connection.
    pub(crate) fn room_gate<'a>(&'a self, user_id: Option<&'a str>, connection_id: &'a str) -> impl RoomGate + 'a {
        move |room: &RoomId| {
            self.rooms.as_ref().is_none_or(|rule| rule(&RoomAccess { user_id, connection_id, room: room.as_str() }))
        }
    }
}

/// The web pages allowed to open an endpoint's connections.
#[derive(Debug, Clone)]
pub(crate) enum AllowedOrigins {
    SameHost,
    Only(Vec<String>),
}

impl Policy {
    /// The core's check of the request's `Origin` ([`Origins::allows`]).
    pub(crate) fn allows_origin(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        match &self.origins {
            None => Origins::<&str>::Any.allows(origin, host),
            Some(AllowedOrigins::SameHost) => Origins::<&str>::SameHost.allows(origin, host),
            Some(AllowedOrigins::Only(list)) => Origins::Only(list).allows(origin, host),
        }
    }

    /// Alepha's `admit`: `authorize` alone decides if there is one;
    /// otherwise the user comes from the resolver (the endpoint's, else the
    /// server's) and a `secure` endpoint refuses anonymous users with 401.
    pub(crate) async fn decide(&self, handshake: &Handshake, server_resolver: Option<&Resolver>) -> Admission {
        if let Some(authorize) = &self.authorize {
            return authorize(handshake).await;
        }
        let user = match self.resolver.as_ref().or(server_resolver) {
            Some(resolve) => resolve(handshake).await,
            None => None,
        };
        match user {
            None if self.secure => Admission::refuse(UNAUTHORIZED.status, UNAUTHORIZED.body),
            user => Admission::Accept { user_id: user, room_id: None },
        }
    }
}

/// The admission rules and hooks of an endpoint, the same on
/// [`Endpoint`] and [`RoomEndpoint`](super::RoomEndpoint): builder
/// methods that fill the endpoint's `policy`.
macro_rules! admission_methods {
    () => {
        /// The authorization hook: it sees the handshake (path, query, headers
        /// including `Authorization` and `Cookie`, peer address) and accepts,
        /// with an optional user id and an optional room that **replaces** the
        /// rooms the URL asked for, or refuses with an HTTP status. It alone
        /// decides (no resolver runs). It runs within the handshake timeout; a
        /// hook still running then is answered with 503. A hook that judges
        /// the rooms reads [`Handshake::rooms`](crate::server::Handshake::rooms)
        /// (every room the URL names), not the first `roomId`.
        ///
        /// The hook takes the handshake by reference and returns a `'static`
        /// future: copy what it needs out of the handshake before the `async`
        /// block (see the example on [`Endpoint`](crate::server::Endpoint)).
        pub fn authorize<F, Fut>(mut self, authorize: F) -> Self
        where
            F: Fn(&$crate::server::Handshake) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = $crate::server::Admission> + Send + 'static,
        {
            self.policy.authorize = Some(std::sync::Arc::new(move |handshake| Box::pin(authorize(handshake))));
            self
        }

        /// How this endpoint learns the user of a handshake when it has no
        /// `authorize` hook (overrides the server's
        /// [`resolve_user`](super::ServerBuilder::resolve_user)). `None` means
        /// anonymous.
        pub fn resolve_user<F, Fut>(mut self, resolve: F) -> Self
        where
            F: Fn(&$crate::server::Handshake) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = Option<String>> + Send + 'static,
        {
            self.policy.resolver = Some($crate::server::endpoint::resolver(resolve));
            self
        }

        /// Refuse anonymous upgrades with HTTP 401 "Unauthorized".
        pub fn secure(mut self) -> Self {
            self.policy.secure = true;
            self
        }

        /// Accept browsers only from pages of the host the request names (the
        /// `Origin` header's `host[:port]` equals `Host`); others get 403
        /// "Origin not allowed" before any hook runs. Requests without
        /// `Origin` (not from a browser) pass. Use it on every endpoint that
        /// authenticates by cookie: a browser sends its cookies with a
        /// WebSocket whatever page opens it.
        ///
        /// ```
        /// use roomwire_tokio::server::Endpoint;
        /// # roomwire_tokio::roomwire_core::channel! { pub struct Inbox { path: "/ws/inbox", in: (), out: () } }
        /// let inbox = Endpoint::<Inbox>::new(|_ctx| Box::pin(async { Ok(()) })).secure().same_origin();
        /// # let _ = inbox;
        /// ```
        pub fn same_origin(mut self) -> Self {
            self.policy.origins = Some($crate::server::endpoint::AllowedOrigins::SameHost);
            self
        }

        /// Accept browsers only from these origins (`scheme://host[:port]`,
        /// e.g. `https://app.example`); others get 403 as with
        /// [`same_origin`](Self::same_origin).
        pub fn allowed_origins<I: IntoIterator<Item = O>, O: Into<String>>(mut self, origins: I) -> Self {
            self.policy.origins =
                Some($crate::server::endpoint::AllowedOrigins::Only(origins.into_iter().map(Into::into).collect()));
            self
        }

        /// Which rooms a connection may be in, beyond the channel's
        /// `validate_room_id`: asked, under the endpoint's lock (keep it
        /// quick), for every room a connection would join: those its
        /// handshake names (query rooms, or the room `authorize` chose) and
        /// each `join` on the roomwire wire. A refused handshake room closes
        /// the connection with 1008 "Room not allowed"; a refused `join` is
        /// answered with error 4007 and the connection stays.
        ///
        /// ```
        /// use roomwire_tokio::server::Endpoint;
        /// # roomwire_tokio::roomwire_core::channel! { pub struct Inbox { path: "/ws/inbox", in: (), out: () } }
        /// // A user's connections may only be in the user's own inbox.
        /// let inbox = Endpoint::<Inbox>::new(|_ctx| Box::pin(async { Ok(()) }))
        ///     .secure()
        ///     .authorize_room(|access| access.user_id.is_some_and(|u| access.room.strip_prefix("inbox:") == Some(u)));
        /// # let _ = inbox;
        /// ```
        pub fn authorize_room(
            mut self,
            rule: impl Fn(&$crate::server::RoomAccess<'_>) -> bool + Send + Sync + 'static,
        ) -> Self {
            self.policy.rooms = Some(std::sync::Arc::new(rule));
            self
        }

        /// At most `max` open connections per user on this endpoint (anonymous
        /// connections are not counted). The next one is accepted, then closed
        /// with 1008 "Max connections per user exceeded".
        pub fn max_connections_per_user(mut self, max: usize) -> Self {
            self.policy.max_connections_per_user = Some(max);
            self
        }

        /// Run after a connection is registered and in its rooms, before its
        /// first message is read. Errors are the hook's business (log them).
        /// Bounded by [`ServerConfig::handler_timeout`](crate::server::ServerConfig::handler_timeout):
        /// a hook still running then is cancelled (its future dropped), and
        /// the connection goes on.
        pub fn on_connect<F, Fut>(mut self, hook: F) -> Self
        where
            F: Fn($crate::server::Server, $crate::server::ConnectEvent) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = ()> + Send + 'static,
        {
            self.policy.on_connect = Some(std::sync::Arc::new(move |server, event| Box::pin(hook(server, event))));
            self
        }

        /// Run after a connection has ended and left its rooms.
        pub fn on_disconnect<F, Fut>(mut self, hook: F) -> Self
        where
            F: Fn($crate::server::Server, $crate::server::DisconnectEvent) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = ()> + Send + 'static,
        {
            self.policy.on_disconnect = Some(std::sync::Arc::new(move |server, event| Box::pin(hook(server, event))));
            self
        }
    };
}
pub(crate) use admission_methods;

/// One endpoint: Alepha's `$websocket({ channel, handler, … })`.
///
/// `C` is the [`Channel`] (its `PATH` is the endpoint's path, matched
/// exactly). Build it with the message handler, then add admission rules
/// and hooks, and register it with
/// [`ServerBuilder::endpoint`](super::ServerBuilder::endpoint).
///
/// Admission (Alepha semantics): an endpoint either has an
/// [`authorize`](Self::authorize) hook, which alone decides, or is open to
/// everyone, with the user (if any) from a [`resolve_user`](Self::resolve_user)
/// hook; [`secure`](Self::secure) then refuses anonymous upgrades with
/// HTTP 401. Declaring both `authorize` and `secure` is refused at
/// [`build`](super::ServerBuilder::build).
///
/// ```
/// use roomwire_tokio::server::{Admission, Endpoint, Reply};
/// # #[derive(serde::Serialize, serde::Deserialize)] pub struct M { n: u32 }
/// roomwire_tokio::roomwire_core::channel! { /// A channel.
///     pub struct Counter { path: "/ws/counter", in: M, out: M } }
///
/// let endpoint = Endpoint::<Counter>::new(|ctx| {
///     Box::pin(async move {
///         if ctx.message.n > 100 {
///             return Err("too big".into()); // {"error":"too big"} to the sender
///         }
///         ctx.reply(&M { n: ctx.message.n + 1 })?;
///         Ok(())
///     })
/// })
/// .authorize(|handshake| {
///     let token = handshake.bearer_token().map(str::to_owned);
///     async move {
///         match token {
///             Some(t) if t.starts_with("user-") => Admission::user(t),
///             _ => Admission::refuse(403, "Forbidden"),
///         }
///     }
/// })
/// .max_connections_per_user(3)
/// .on_connect(|_server, event| async move { println!("{} in {:?}", event.connection_id, event.rooms) });
/// ```
#[must_use]
pub struct Endpoint<C: Channel> {
    handler: Arc<Handler<C>>,
    policy: Policy,
    _channel: PhantomData<fn() -> C>,
}

impl<C: Channel> fmt::Debug for Endpoint<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("path", &C::PATH)
            .field("authorize", &self.policy.authorize.is_some())
            .field("secure", &self.policy.secure)
            .field("max_connections_per_user", &self.policy.max_connections_per_user)
            .finish_non_exhaustive()
    }
}

impl<C: Channel + 'static> Endpoint<C>
where
    for<'a> C::Out<'a>: Send,
{
    /// An endpoint for channel `C` whose client messages go to `handler`.
    ///
    /// The handler gets a [`Context`] (the typed message, the connection,
    /// the room, `reply`) and returns a boxed future:
    /// `|ctx| Box::pin(async move { …; Ok(()) })`. See the
    /// [module docs](super#handlers-and-typed-messages).
    pub fn new<F>(handler: F) -> Self
    where
        F: for<'a> Fn(Context<'a, C>) -> BoxFuture<'a, HandlerResult> + Send + Sync + 'static,
    {
        Self { handler: Arc::new(handler), policy: Policy::default(), _channel: PhantomData }
    }

    admission_methods!();

    pub(crate) fn into_erased(self, limits: TableLimits, node: Arc<Node>) -> Arc<dyn ErasedEndpoint> {
        Arc::new(Typed::<C> {
            handler: self.handler,
            policy: self.policy,
            cell: Arc::new(ChannelCell::new(C::PATH, limits, node)),
        })
    }
}

/// What one client message calls for.
pub(crate) enum Dispatched<'a> {
    /// Send the reply written in `out` to the sender.
    Answer { len: usize, membership: Option<Membership> },
    /// Nothing.
    Ignored,
    /// Run the handler's future, for a message handled in `room`.
    Handler { room: roomwire_core::RoomId, future: BoxFuture<'a, HandlerResult> },
}

/// An endpoint with its channel type erased, as the server stores it.
pub(crate) trait ErasedEndpoint: Send + Sync + 'static {
    fn path(&self) -> &'static str;
    fn channel_type(&self) -> TypeId;
    fn policy(&self) -> &Policy;
    fn cell(&self) -> &Arc<ChannelCell>;
    /// [`ServerSession::register`] for this channel (locking `cell` for
    /// each membership step).
    fn register(
        &self,
        session: &mut ServerSession,
        cell: &ChannelCell,
        // The member, its user and its connection id.
        who: (MemberId, Option<&str>, &str),
        query: Option<&str>,
        room: Option<&str>,
        over_user_cap: bool,
    ) -> Result<(), Refusal>;
    /// [`ServerSession::handle_message`] for this channel: the message of
    /// a connection in `state`, whose id's text is `id`.
    fn dispatch<'a>(
        &'a self,
        registered: &'a Registered,
        id: &'a str,
        state: State,
        data: &'a [u8],
        out: &mut [u8],
    ) -> Dispatched<'a>;
    /// The application puts `member` in `room` of `table` (this
    /// endpoint's, locked by the caller, who found `member` under the same
    /// lock: [`roomwire_core::dispatch::join_for_application`]); whether
    /// it was not in it. A stateful room's connection is in its room only.
    fn join_for_application(&self, table: &mut Table, member: MemberId, room: &str) -> Result<bool, Refusal> {
        let _ = (table, member, room);
        Err(roomwire_core::stateful::ONE_ROOM_ONLY)
    }
    /// The application takes `member` out of `room`; whether it was in it.
    fn leave_for_application(&self, table: &mut Table, member: MemberId, room: &str) -> Result<bool, Refusal> {
        let _ = (table, member, room);
        Err(roomwire_core::stateful::ONE_ROOM_ONLY)
    }
    /// A stateful room's endpoint: put the registered connection in its
    /// `room`'s task (`None`: this endpoint has no stateful rooms). The
    /// future ends with the connection's seat, or `None` if the join
    /// failed (close with [`roomwire_core::stateful::JOIN_FAILED`]).
    fn join_room(
        &self,
        server: &Server,
        joining: super::stateful::Joining,
        room: &str,
    ) -> Option<BoxFuture<'static, Option<super::stateful::Seat>>> {
        let _ = (server, joining, room);
        None
    }
    /// A stateful room's endpoint: its rooms.
    fn rooms(&self) -> Option<&Arc<super::stateful::RoomHost>> {
        None
    }
}

struct Typed<C: Channel> {
    handler: Arc<Handler<C>>,
    policy: Policy,
    cell: Arc<ChannelCell>,
}

impl<C: Channel + 'static> ErasedEndpoint for Typed<C>
where
    for<'a> C::Out<'a>: Send,
{
    fn path(&self) -> &'static str {
        C::PATH
    }

    fn channel_type(&self) -> TypeId {
        TypeId::of::<C>()
    }

    fn policy(&self) -> &Policy {
        &self.policy
    }

    fn cell(&self) -> &Arc<ChannelCell> {
        &self.cell
    }

    fn register(
        &self,
        session: &mut ServerSession,
        cell: &ChannelCell,
        (member, user_id, connection_id): (MemberId, Option<&str>, &str),
        query: Option<&str>,
        room: Option<&str>,
        over_user_cap: bool,
    ) -> Result<(), Refusal> {
        let gate = self.policy.room_gate(user_id, connection_id);
        session.register::<C, _>(member, query, room, over_user_cap, &gate, cell)
    }

    fn join_for_application(&self, table: &mut Table, member: MemberId, room: &str) -> Result<bool, Refusal> {
        roomwire_core::dispatch::join_for_application::<C, _>(member, room, table)
    }

    fn leave_for_application(&self, table: &mut Table, member: MemberId, room: &str) -> Result<bool, Refusal> {
        Ok(roomwire_core::dispatch::leave_for_application(member, room, table))
    }

    fn dispatch<'a>(
        &'a self,
        registered: &'a Registered,
        id: &'a str,
        state: State,
        data: &'a [u8],
        out: &mut [u8],
    ) -> Dispatched<'a> {
        // With `std`, JSON strings are unescaped by serde_json: no scratch.
        // The endpoint's lock is taken for each membership step only.
        let gate = self.policy.room_gate(registered.user.as_deref(), id);
        let inbound = registered.session.handle_message::<C, _>(state, &*self.cell, &gate, data, &mut [], out);
        match inbound {
            Inbound::Message { room, message } => {
                let context = Context::new(message, room.clone(), registered, id);
                Dispatched::Handler { room, future: (self.handler)(context) }
            }
            Inbound::Answer { len, membership } => Dispatched::Answer { len, membership },
            Inbound::Ignored => Dispatched::Ignored,
        }
    }
}
