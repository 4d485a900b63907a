//! Stateful rooms: Alepha's `$room` on tokio (see [`RoomEndpoint`]).

mod metronome;
mod room;
mod task;

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::hash::RandomState;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use roomwire_core::State;
use roomwire_core::channel::Channel;
use roomwire_core::cluster::{RoomBody, RoomOp, RoomStatus};
use roomwire_core::dispatch::Refusal;
use roomwire_core::room::{MemberId, TableLimits};
use roomwire_core::session::ServerSession;
use roomwire_core::stateful::{self, NonJson, ROOM_BUSY, ROOM_CLOSED, RoomInbound};
use roomwire_core::wire::WireFormat;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

pub(crate) use room::{Encoded, Joining, Place};
pub use room::{Room, RoomConnection};

use super::cluster::Node;
use super::endpoint::{BoxFuture, Dispatched, ErasedEndpoint, HandlerError, HandlerResult, Policy};
use super::registry::{ChannelCell, Registered};
use super::{EmitError, Server};

type StateFactory<S> = dyn Fn(&str) -> BoxFuture<'static, Result<S, HandlerError>> + Send + Sync;
type OnJoin<C, S, D> = dyn for<'a> Fn(&'a mut Room<C, S, D>, &'a str) -> BoxFuture<'a, HandlerResult> + Send + Sync;
type OnMessage<C, S, D> = dyn for<'a> Fn(&'a mut Room<C, S, D>, &'a str, <C as Channel>::Out<'a>) -> BoxFuture<'a, HandlerResult>
    + Send
    + Sync;
type OnTick<C, S, D> = dyn for<'a> Fn(&'a mut Room<C, S, D>, Duration) -> BoxFuture<'a, HandlerResult> + Send + Sync;
type OnLeave<C, S, D> =
    dyn for<'a> Fn(&'a mut Room<C, S, D>, RoomConnection<D>) -> BoxFuture<'a, HandlerResult> + Send + Sync;
type OnEmpty<C, S, D> = dyn for<'a> Fn(&'a mut Room<C, S, D>) -> BoxFuture<'a, HandlerResult> + Send + Sync;
type Method<C, S, D> =
    dyn for<'a> Fn(&'a mut Room<C, S, D>, &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, CallError>> + Send + Sync;

/// A stateful room's callbacks, shared by its rooms' tasks.
pub(crate) struct Callbacks<C: Channel, S, D> {
    state: Arc<StateFactory<S>>,
    tick_hz: u32,
    on_join: Option<Arc<OnJoin<C, S, D>>>,
    on_message: Option<Arc<OnMessage<C, S, D>>>,
    on_tick: Option<Arc<OnTick<C, S, D>>>,
    on_leave: Option<Arc<OnLeave<C, S, D>>>,
    on_empty: Option<Arc<OnEmpty<C, S, D>>>,
    methods: HashMap<String, Arc<Method<C, S, D>>>,
}

/// A stateful room endpoint: Alepha's `$room({ channel, state, tickHz,
/// onJoin, onMessage, onTick, onLeave, onEmpty, methods, … })`.
///
/// `C` is the channel (its path; clients send `C::Out`, the room sends
/// `C::In`), `S` the room's state, `D` the data kept per connection
/// ([`RoomConnection::data`], `()` if none). Every admission rule of an
/// [`Endpoint`](super::Endpoint) applies the same way (`authorize`,
/// `secure`, `resolve_user`, origins, `authorize_room`,
/// `max_connections_per_user`, the connect hooks) and so do the server's
/// limits. A connection is in one room: the first its handshake names
/// (`?roomId=…`), or the one `authorize` chose, else `"default"`.
///
/// Callbacks take the [`Room`] by `&mut` and return a boxed future:
/// `|room, …| Box::pin(async move { …; Ok(()) })`.
///
/// A room's state is built on its first join or [`call`](Server::call),
/// changed by the callbacks (`on_join`, `on_message`, `on_tick`,
/// `on_leave`, `on_empty`, methods), and discarded when the last member
/// leaves. The rules (which room, how messages are read and refused, when
/// the state is built, ticked, torn down and evicted) are the core's
/// [`roomwire_core::stateful`]; the endpoint runs them.
///
/// # One task per room
///
/// Each live room is owned by one task, which holds its state and runs its
/// callbacks **one at a time**, in the order their inputs came: joins,
/// leaves, messages, calls, beats. No lock guards the state and none is
/// held across an await. A callback that awaits holds the room meanwhile:
/// a tick still running when the next beat falls due makes that beat skip
/// (with a warning), and messages wait their turn. A join that comes during
/// a teardown waits for it; concurrent leavers share one teardown.
///
/// Each connection has at most one message in its room's queue (it waits
/// for the room to handle it before reading the next: TCP backpressure;
/// past the handler deadline its next messages are answered "Room busy"
/// until the room has dealt with the one it has), so a room's queue is
/// bounded by its connections and pending calls. A message whose sender
/// stopped waiting is dropped unhandled when its turn comes. The same
/// holds for another node's members when this node owns the room: the
/// owner refuses a member's next message ("Room busy") while it still
/// holds one. In a
/// cluster, a member's node gives up waiting after a while
/// ([`ROOM_REQUEST_TIMEOUT`](roomwire_core::cluster::ROOM_REQUEST_TIMEOUT));
/// the owner then drops that message unhandled when its turn comes.
///
/// # What survives what
///
/// The state lives in memory only: it is discarded when the room empties
/// (after `on_empty`), when a headless room is evicted
/// ([`IDLE_TTL`](roomwire_core::stateful::IDLE_TTL) after its last call)
/// and at [`Server::shutdown`] (without `on_empty`; running callbacks are
/// cancelled). An application that wants state to outlive those stores it
/// from `on_empty` or a method, and loads it in the state factory.
///
/// # Across a cluster
///
/// With a [backplane](super::ServerBuilder::backplane), a room has one
/// owner node at a time (a claim on the bus that expires when its node
/// dies): the state and every callback run there, and members connected
/// to any node reach it; what the room sends reaches members on every
/// node. When the owner dies the room moves to a node with members, which
/// builds a **new** state (the factory runs again, `on_join` for each
/// member; nothing of the old state survives unless the application stored
/// it) within about 8 s; members stay connected. `PROTOCOL.md` section 10.1
/// has the details, including what happens while the bus is cut.
///
/// ```no_run
/// use roomwire_tokio::server::{RoomEndpoint, Server};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// pub struct Inc { pub by: u32 }
/// #[derive(Serialize, Deserialize)]
/// pub struct Count { pub value: u64 }
///
/// roomwire_tokio::roomwire_core::channel! {
///     /// A shared counter.
///     pub struct Counter { path: "/ws/counter", in: Count, out: Inc }
/// }
///
/// #[derive(Default)]
/// struct Total { value: u64, sent: u64 }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let counter = RoomEndpoint::<Counter, Total>::new(|_room_id| async { Ok(Total::default()) })
///     .tick_hz(10)
///     .on_message(|room, _from, inc| Box::pin(async move {
///         room.state.value += u64::from(inc.by);
///         Ok(())
///     }))
///     .on_tick(|room, _dt| Box::pin(async move {
///         if room.state.value != room.state.sent {
///             room.state.sent = room.state.value;
///             room.broadcast(&Count { value: room.state.value })?;
///         }
///         Ok(())
///     }))
///     .method("reset", |room, (): ()| Box::pin(async move {
///         Ok(std::mem::take(&mut room.state.value))
///     }));
/// let server = Server::builder().room(counter).build()?;
/// let old: u64 = server.call::<Counter, _, _>("lobby", "reset", &()).await?;
/// # let _ = old;
/// # Ok(()) }
/// ```
#[must_use]
pub struct RoomEndpoint<C: Channel, S, D = ()> {
    callbacks: Callbacks<C, S, D>,
    policy: Policy,
    non_json: NonJson,
}

impl<C: Channel, S, D> fmt::Debug for RoomEndpoint<C, S, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut methods: Vec<&str> = self.callbacks.methods.keys().map(String::as_str).collect();
        methods.sort_unstable();
        f.debug_struct("RoomEndpoint")
            .field("path", &C::PATH)
            .field("tick_hz", &self.callbacks.tick_hz)
            .field("methods", &methods)
            .finish_non_exhaustive()
    }
}

impl<C, S, D> RoomEndpoint<C, S, D>
where
    C: Channel + 'static,
    for<'a> C::Out<'a>: Send,
    S: Send + 'static,
    D: Default + Send + 'static,
{
    /// A stateful room whose state `state(room_id)` builds, on the room's
    /// first join or call. A failure is not remembered: the next join or
    /// call builds again; the joining connection is closed with 1011 "Room
    /// join failed", the call fails with [`CallError::Failed`]. A joining
    /// connection waits for the state and its `on_join` at most
    /// [`ROOM_JOIN_TIMEOUT`](roomwire_core::cluster::ownership::ROOM_JOIN_TIMEOUT)
    /// (10 s), then is closed the same way (its join, once the room gets
    /// to it, is left at once).
    pub fn new<F, Fut>(state: F) -> Self
    where
        F: Fn(&str) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S, HandlerError>> + Send + 'static,
    {
        let state: Arc<StateFactory<S>> = Arc::new(move |room: &str| Box::pin(state(room)));
        Self {
            callbacks: Callbacks {
                state,
                tick_hz: 0,
                on_join: None,
                on_message: None,
                on_tick: None,
                on_leave: None,
                on_empty: None,
                methods: HashMap::new(),
            },
            policy: Policy::default(),
            non_json: NonJson::Drop,
        }
    }

    /// Answer text that is not JSON (Alepha wire) with
    /// `{"error":"Received non-JSON message"}` rather than drop it as
    /// Alepha does; the connection stays either way.
    pub fn refuse_non_json(mut self) -> Self {
        self.non_json = NonJson::Refuse;
        self
    }

    /// Tick `on_tick` `hz` times a second while the room has members (0,
    /// the default: never; at most
    /// [`MAX_TICK_HZ`](roomwire_core::stateful::MAX_TICK_HZ)). Beats keep
    /// their phase; one that falls due while the previous tick still runs
    /// is skipped, with a warning.
    pub fn tick_hz(mut self, hz: u32) -> Self {
        self.callbacks.tick_hz = hz;
        self
    }

    /// After a connection joined (it is in `room.connections()`; set its
    /// `data` here). An error closes the connection with 1011 "Room join
    /// failed"; it then leaves as any other (`on_leave`).
    pub fn on_join<F>(mut self, f: F) -> Self
    where
        F: for<'a> Fn(&'a mut Room<C, S, D>, &'a str) -> BoxFuture<'a, HandlerResult> + Send + Sync + 'static,
    {
        self.callbacks.on_join = Some(Arc::new(f));
        self
    }

    /// A valid client message from the connection with this id. An error
    /// is sent to that connection alone (`{"error": "<text>"}` on the
    /// Alepha wire); the connection stays. Messages that fail to decode or
    /// validate never reach it: the sender gets the validation error.
    pub fn on_message<F>(mut self, f: F) -> Self
    where
        F: for<'a> Fn(&'a mut Room<C, S, D>, &'a str, C::Out<'a>) -> BoxFuture<'a, HandlerResult>
            + Send
            + Sync
            + 'static,
    {
        self.callbacks.on_message = Some(Arc::new(f));
        self
    }

    /// Each beat of the tick loop, with the real time since the previous
    /// beat. Errors and panics are logged and never stop the loop.
    pub fn on_tick<F>(mut self, f: F) -> Self
    where
        F: for<'a> Fn(&'a mut Room<C, S, D>, Duration) -> BoxFuture<'a, HandlerResult> + Send + Sync + 'static,
    {
        self.callbacks.on_tick = Some(Arc::new(f));
        self
    }

    /// After a connection left (it is no longer in the room; its
    /// [`RoomConnection`] is handed over). Errors are logged.
    pub fn on_leave<F>(mut self, f: F) -> Self
    where
        F: for<'a> Fn(&'a mut Room<C, S, D>, RoomConnection<D>) -> BoxFuture<'a, HandlerResult> + Send + Sync + 'static,
    {
        self.callbacks.on_leave = Some(Arc::new(f));
        self
    }

    /// The last connection left: the loop has stopped, and the state is
    /// discarded after this returns. Errors are logged. Not called on
    /// eviction or shutdown.
    pub fn on_empty<F>(mut self, f: F) -> Self
    where
        F: for<'a> Fn(&'a mut Room<C, S, D>) -> BoxFuture<'a, HandlerResult> + Send + Sync + 'static,
    {
        self.callbacks.on_empty = Some(Arc::new(f));
        self
    }

    /// A method `name`, called from server code with
    /// [`Server::call`]: its arguments `A` and result `R` travel as JSON
    /// (so a call works the same from any node of a cluster). An error is
    /// the call's [`CallError::Failed`].
    pub fn method<A, R, F>(mut self, name: impl Into<String>, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: for<'a> Fn(&'a mut Room<C, S, D>, A) -> BoxFuture<'a, Result<R, HandlerError>> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let method: Arc<Method<C, S, D>> = Arc::new(move |room, args| {
            let f = f.clone();
            Box::pin(async move {
                let args: A = serde_json::from_slice(args).map_err(|e| CallError::Arguments(e.to_string()))?;
                let result = f(room, args).await.map_err(|e| CallError::Failed(e.to_string()))?;
                serde_json::to_vec(&result).map_err(|e| CallError::Result(e.to_string()))
            })
        });
        self.callbacks.methods.insert(name.into(), method);
        self
    }

    super::endpoint::admission_methods!();

    pub(crate) fn into_erased(self, limits: TableLimits, node: Arc<Node>) -> Arc<dyn ErasedEndpoint> {
        let callbacks = Arc::new(self.callbacks);
        let spawn: Arc<Spawn> = Arc::new(move |host, server, room, inputs| {
            Box::pin(task::run::<C, S, D>(callbacks.clone(), host, server, room, inputs))
        });
        Arc::new(Typed::<C> {
            policy: self.policy,
            non_json: self.non_json,
            cell: Arc::new(ChannelCell::new(C::PATH, limits, node)),
            host: Arc::new(RoomHost {
                path: C::PATH,
                next_request: std::sync::atomic::AtomicU64::new(1),
                valid_room: |room| {
                    roomwire_core::RoomId::new(room).is_ok()
                        && (room == roomwire_core::alepha::DEFAULT_ROOM || C::validate_room_id(room))
                },
                metronome: Default::default(),
                rooms: Mutex::default(),
                spawn,
                remote_queued: Mutex::default(),
            }),
            _channel: PhantomData,
        })
    }
}

/// Why a [`Server::call`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallError {
    /// No stateful room endpoint of this server serves the channel.
    UnknownChannel(&'static str),
    /// The room has no such method (Alepha's "Room method '…' is not
    /// defined on this room.").
    UnknownMethod(String),
    /// The arguments do not encode, or do not decode as the method's.
    Arguments(String),
    /// The result does not encode, or does not decode as the caller's.
    Result(String),
    /// The state could not be built, or the method returned this error.
    Failed(String),
    /// The server is shutting down.
    ShuttingDown,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::UnknownChannel(path) => write!(f, "no stateful room endpoint serves the channel {path}"),
            CallError::UnknownMethod(name) => fmt::Display::fmt(&stateful::UnknownMethod(name), f),
            CallError::Arguments(e) => write!(f, "bad arguments: {e}"),
            CallError::Result(e) => write!(f, "bad result: {e}"),
            CallError::Failed(e) => f.write_str(e),
            CallError::ShuttingDown => f.write_str("the server is shutting down"),
        }
    }
}

impl std::error::Error for CallError {}

/// What a room's task is asked to do: by this node's connections and code,
/// or (`Remote`, `Outcome`) by other nodes of the cluster.
pub(crate) enum Input {
    Join {
        joining: Joining,
        done: Option<oneshot::Sender<bool>>,
    },
    Leave {
        id: Arc<str>,
    },
    Message {
        id: Arc<str>,
        format: WireFormat,
        payload: Vec<u8>,
        done: oneshot::Sender<Result<(), String>>,
        /// Held while the message is queued or asked of the owner: its
        /// connection sends no other meanwhile ([`Seat::queued`]).
        queued: Arc<()>,
    },
    Call {
        method: String,
        args: Vec<u8>,
        done: oneshot::Sender<Result<Vec<u8>, CallError>>,
    },
    Broadcast {
        encoded: Encoded,
        except: Vec<String>,
    },
    /// A request of node `from` to this node as the room's owner, heard at
    /// `heard`.
    Remote {
        from: u32,
        request: u64,
        op: RemoteOp,
        heard: tokio::time::Instant,
    },
    /// The answer of node `from` (the owner, as this node took it) to this
    /// node's request `request`.
    Outcome {
        from: u32,
        request: u64,
        status: RoomStatus,
        body: Vec<u8>,
    },
}

/// A request of another node, owned.
pub(crate) enum RemoteOp {
    Join(Joining),
    Leave(Arc<str>),
    Message { id: Arc<str>, format: WireFormat, payload: Vec<u8>, queued: RemoteQueued },
    Call { method: String, args: Vec<u8> },
    Broadcast { encoded: Encoded, except: Vec<String> },
    Members(Vec<String>),
}

type Spawn =
    dyn Fn(Arc<RoomHost>, Server, Arc<str>, mpsc::UnboundedReceiver<Input>) -> BoxFuture<'static, ()> + Send + Sync;

/// An endpoint's live rooms: each room's task, by room id.
pub(crate) struct RoomHost {
    path: &'static str,
    /// Numbers for requests to rooms' owners, unique across the rooms'
    /// tasks (a late answer never matches a later task's request).
    pub(crate) next_request: std::sync::atomic::AtomicU64,
    /// Whether a room id is one of this endpoint's (the channel's check).
    valid_room: fn(&str) -> bool,
    /// Wakes the rooms at their beats.
    pub(crate) metronome: metronome::Metronome,
    rooms: Mutex<HashMap<Arc<str>, mpsc::UnboundedSender<Input>, RandomState>>,
    spawn: Arc<Spawn>,
    /// Other nodes' connections with a message in one of these rooms'
    /// queues (this node their owner): one each, as for this node's own
    /// connections ([`Seat`]).
    remote_queued: Mutex<std::collections::HashSet<Arc<str>, RandomState>>,
}

/// Another node's connection's message while it is in its room's queue:
/// its entry in [`RoomHost::remote_queued`], removed however the message
/// leaves the queue (handled, dropped as stale, or the task gone).
pub(crate) struct RemoteQueued {
    host: Arc<RoomHost>,
    id: Arc<str>,
}

impl Drop for RemoteQueued {
    fn drop(&mut self) {
        crate::lock(&self.host.remote_queued).remove(&self.id);
    }
}

impl RoomHost {
    /// The rooms' tasks. A panic while the lock was held (none of this
    /// module's code panics) leaves consistent data: poisoning is ignored.
    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, mpsc::UnboundedSender<Input>, RandomState>> {
        crate::lock(&self.rooms)
    }

    /// Hand `input` to `room`'s task, starting it if `start` and it is not
    /// running. Returns the input if no task took it.
    pub(crate) fn send(
        self: &Arc<Self>,
        server: &Server,
        room: &str,
        input: Input,
        start: bool,
    ) -> Result<mpsc::UnboundedSender<Input>, Input> {
        let mut rooms = self.rooms();
        let input = match rooms.get(room) {
            // Sent under the lock: a task retires (under the same lock)
            // only with its queue empty, so nothing sent is lost.
            Some(inputs) => match inputs.send(input) {
                Ok(()) => return Ok(inputs.clone()),
                // Its task ended without retiring (a panic outside the
                // application's callbacks): a new one takes the room.
                Err(mpsc::error::SendError(input)) => {
                    rooms.remove(room);
                    input
                }
            },
            None => input,
        };
        if !start || server.shared.closing.is_set() {
            return Err(input);
        }
        let (inputs, receiver) = mpsc::unbounded_channel();
        let room: Arc<str> = room.into();
        let _ = inputs.send(input);
        rooms.insert(room.clone(), inputs.clone());
        tokio::spawn((self.spawn)(self.clone(), server.clone(), room, receiver));
        Ok(inputs)
    }

    /// The task of `room` has nothing left (no state, no member): it ends
    /// if its queue is empty. Returns whether it must end.
    pub(crate) fn retire(&self, room: &str, inputs: &mpsc::UnboundedReceiver<Input>) -> bool {
        let mut rooms = self.rooms();
        if !inputs.is_empty() {
            return false;
        }
        rooms.remove(room);
        true
    }

    /// The task of `room` ends (shutdown).
    pub(crate) fn forget(&self, room: &str) {
        self.rooms().remove(room);
    }

    /// How many rooms have a task.
    pub(crate) fn len(&self) -> usize {
        self.rooms().len()
    }

    /// What another node sent about one of this endpoint's rooms.
    pub(crate) fn heard(self: &Arc<Self>, server: &Server, body: RoomBody<'_>) {
        let RoomBody { reply_to: from, request, room, op } = body;
        if !(self.valid_room)(room) {
            debug!(room, "room traffic for a room id this endpoint refuses");
            return;
        }
        let (input, start) = match op {
            RoomOp::Outcome { status, body } => (Input::Outcome { from, request, status, body: body.to_vec() }, false),
            op => {
                let op = match op {
                    RoomOp::Join { connection, user, wire, query } => RemoteOp::Join(Joining {
                        id: connection.into(),
                        user_id: user.map(Into::into),
                        query: Some(query.to_owned()),
                        format: wire,
                        place: Place::Node(from),
                    }),
                    RoomOp::Leave { connection } => RemoteOp::Leave(connection.into()),
                    RoomOp::Message { connection, wire, payload } => {
                        let id: Arc<str> = connection.into();
                        if !crate::lock(&self.remote_queued).insert(id.clone()) {
                            // Its last message still waits here (its node
                            // gave up waiting for it): refused, not queued.
                            let body = RoomBody {
                                reply_to: server.shared.node.tag,
                                request,
                                room,
                                op: RoomOp::Outcome { status: RoomStatus::Failed, body: ROOM_BUSY.as_bytes() },
                            };
                            server.shared.node.send_room(from, self.path, body);
                            return;
                        }
                        let queued = RemoteQueued { host: self.clone(), id: id.clone() };
                        RemoteOp::Message { id, format: wire, payload: payload.to_vec(), queued }
                    }
                    RoomOp::Call { method, args } => RemoteOp::Call { method: method.to_owned(), args: args.to_vec() },
                    RoomOp::Broadcast { except, json, postcard } => RemoteOp::Broadcast {
                        encoded: Encoded { json: json.to_vec(), postcard: postcard.map(<[u8]>::to_vec) },
                        except: except.iter().map(str::to_owned).collect(),
                    },
                    RoomOp::Members { connections } => {
                        RemoteOp::Members(connections.iter().map(str::to_owned).collect())
                    }
                    RoomOp::Outcome { .. } => return,
                };
                // A room with no task here is started for what could make
                // this node its owner (a join, a message, a call).
                let start = matches!(op, RemoteOp::Join(_) | RemoteOp::Message { .. } | RemoteOp::Call { .. });
                (Input::Remote { from, request, op, heard: tokio::time::Instant::now() }, start)
            }
        };
        if let Err(Input::Remote { from, request, .. }) = self.send(server, room, input, start)
            && request != 0
        {
            // Not started (shutting down): tell the asker to look again.
            let body = RoomBody {
                reply_to: server.shared.node.tag,
                request,
                room,
                op: RoomOp::Outcome { status: RoomStatus::NotOwner, body: &[] },
            };
            server.shared.node.send_room(from, self.path, body);
        }
    }

    /// Call `method` of `room` with JSON `args`.
    pub(crate) async fn call(
        self: &Arc<Self>,
        server: &Server,
        room: &str,
        method: &str,
        args: Vec<u8>,
    ) -> Result<Vec<u8>, CallError> {
        let (done, answer) = oneshot::channel();
        let input = Input::Call { method: method.to_owned(), args, done };
        if self.send(server, room, input, true).is_err() {
            return Err(CallError::ShuttingDown);
        }
        answer.await.unwrap_or(Err(CallError::ShuttingDown))
    }
}

/// A connection's place in its room: its task's queue. Dropping it (the
/// connection ended, or its task was cancelled, even while it was still
/// joining) tells the room it left.
pub(crate) struct Seat {
    id: Arc<str>,
    room: roomwire_core::RoomId,
    inputs: mpsc::UnboundedSender<Input>,
    /// Shared with the connection's message while the room has it: a
    /// connection whose handler deadline passed reads its next message,
    /// and without this each deadline would add one more to the queue of
    /// a room that is slow.
    queued: Arc<()>,
}

impl Seat {
    /// Whether a message of this connection is still in the room's queue
    /// (or still asked of the room's owner).
    fn has_queued(&self) -> bool {
        Arc::strong_count(&self.queued) > 1
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let _ = self.inputs.send(Input::Leave { id: self.id.clone() });
    }
}

struct Typed<C: Channel> {
    policy: Policy,
    non_json: NonJson,
    cell: Arc<ChannelCell>,
    host: Arc<RoomHost>,
    _channel: PhantomData<fn() -> C>,
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
        let room = stateful::handshake_room::<C>(query, room);
        let room = match room {
            Ok(room) => room,
            Err(refusal) => {
                // The session closes with it.
                let _ = session.register::<C, _>(member, None, Some(""), over_user_cap, &gate, cell);
                return Err(refusal);
            }
        };
        session.register::<C, _>(member, query, Some(room.as_str()), over_user_cap, &gate, cell)
    }

    fn dispatch<'a>(
        &'a self,
        registered: &'a Registered,
        _id: &'a str,
        state: State,
        data: &'a [u8],
        out: &mut [u8],
    ) -> Dispatched<'a> {
        let Some(seat) = registered.seat.as_ref() else { return Dispatched::Ignored };
        if state != State::Open || registered.session.phase() != roomwire_core::session::ServerPhase::Open {
            return Dispatched::Ignored;
        }
        let format = registered.session.format();
        let payload = match stateful::handle_message::<C>(format, &seat.room, self.non_json, data, &mut [], out) {
            RoomInbound::Message { payload, .. } => payload.to_vec(),
            RoomInbound::Reject { len } => return Dispatched::Answer { len, membership: None },
            RoomInbound::Ignored => return Dispatched::Ignored,
        };
        if seat.has_queued() {
            // Its last message outlived the handler deadline and still
            // waits for the room: this one is refused rather than queued.
            let future = Box::pin(async { Err(HandlerError::from(ROOM_BUSY)) });
            return Dispatched::Handler { room: seat.room.clone(), future };
        }
        let (done, outcome) = oneshot::channel();
        let input = Input::Message { id: seat.id.clone(), format, payload, done, queued: seat.queued.clone() };
        let sent = seat.inputs.send(input).is_ok();
        let future = Box::pin(async move {
            if !sent {
                return Err(HandlerError::from(ROOM_CLOSED));
            }
            match outcome.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(text)) => Err(HandlerError::from(text)),
                Err(_) => Err(HandlerError::from(ROOM_CLOSED)),
            }
        });
        Dispatched::Handler { room: seat.room.clone(), future }
    }

    fn join_room(&self, server: &Server, joining: Joining, room: &str) -> Option<BoxFuture<'static, Option<Seat>>> {
        let (done, joined) = oneshot::channel();
        let id = joining.id.clone();
        let room_id = roomwire_core::RoomId::new(room).ok()?;
        let sent = self.host.send(server, room, Input::Join { joining, done: Some(done) }, true);
        Some(Box::pin(async move {
            // Made before the answer comes: cancelled meanwhile, the
            // connection still leaves after its join.
            let seat = Seat { id, room: room_id, inputs: sent.ok()?, queued: Arc::new(()) };
            joined.await.ok().filter(|joined| *joined).map(|_| seat)
        }))
    }

    fn rooms(&self) -> Option<&Arc<RoomHost>> {
        Some(&self.host)
    }
}

impl Server {
    /// Call `method` of the stateful room `room` of channel `C` with
    /// `args` (Alepha's `$room.call(roomId, method, …args)`), building the
    /// room's state first if it has none. Returns the method's result.
    pub async fn call<C: Channel + 'static, A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        room: &str,
        method: &str,
        args: &A,
    ) -> Result<R, CallError> {
        let host = self.room_host::<C>().ok_or(CallError::UnknownChannel(C::PATH))?;
        let args = serde_json::to_vec(args).map_err(|e| CallError::Arguments(e.to_string()))?;
        let result = host.call(self, room, method, args).await?;
        serde_json::from_slice(&result).map_err(|e| CallError::Result(e.to_string()))
    }

    /// Send `message` to every connection of the stateful room `room` of
    /// channel `C` but those in `except` (Alepha's `$room.broadcast(roomId,
    /// message, { exceptConnectionIds })`). A room with no task (no state,
    /// no member) is not started for it: returns false then.
    pub fn broadcast_to_room<C: Channel + 'static>(
        &self,
        room: &str,
        message: &C::In<'_>,
        except: &[&str],
    ) -> Result<bool, EmitError> {
        let host = self.room_host::<C>().ok_or(EmitError::UnknownChannel(C::PATH))?;
        let encoded = Encoded::new(message, true).or_else(|_| Encoded::new(message, false))?;
        let except = except.iter().map(|&id| id.to_owned()).collect();
        Ok(host.send(self, room, Input::Broadcast { encoded, except }, false).is_ok())
    }

    /// How many stateful rooms of channel `C` have a task on this server
    /// (live rooms, and rooms finishing their teardown).
    pub fn live_rooms<C: Channel + 'static>(&self) -> usize {
        self.room_host::<C>().map_or(0, |host| host.len())
    }

    fn room_host<C: Channel + 'static>(&self) -> Option<&Arc<RoomHost>> {
        self.shared.endpoint(C::PATH).filter(|e| e.channel_type() == TypeId::of::<C>()).and_then(|e| e.rooms())
    }
}
