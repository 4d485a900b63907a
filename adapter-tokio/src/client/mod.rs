//! The room client: Alepha's `WebSocketClient` / `useRoom` in Rust.
//!
//! A [`Client`] connects to one channel of a room server, is in a set of
//! rooms, sends typed messages to them and receives the server's typed
//! messages as a [`Stream`](futures_core::Stream) ([`Incoming`]). Every protocol decision (the
//! handshake target and subprotocols, join and leave requests, restoring
//! rooms after a reconnect, encoding and decoding frames) is made by the
//! sans-IO [`RoomClient`] of the core; this module adds the socket, the
//! clock, reconnection and the queues.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use roomwire_tokio::client::{Client, ClientOptions};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! pub struct Say { pub content: String }
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! #[serde(tag = "type", rename_all = "lowercase")]
//! pub enum Event {
//!     Append { content: String, username: String },
//!     System { message: String },
//! }
//!
//! roomwire_tokio::roomwire_core::channel! {
//!     /// The chat channel.
//!     pub struct Chat { path: "/ws/chat", in: Event, out: Say }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let (client, mut incoming) = Client::<Chat>::connect("ws://127.0.0.1:8080", ClientOptions::new().room("lobby"))?;
//! client.send("lobby", &Say { content: "hello".into() })?;
//! client.join("games").await?; // roomwire wire: a request; Alepha wire: a reconnect
//! while let Some((room, event)) = incoming.next().await {
//!     println!("{room:?}: {event:?}");
//! }
//! # Ok(()) }
//! ```
//!
//! # Wires
//!
//! The client asks for the wire of [`ClientOptions::wire`]:
//!
//! * [`WireFormat::Json`] (the default) or [`WireFormat::Postcard`]: the
//!   roomwire wire. Rooms are joined and left with requests on the open
//!   connection, each answered by the server; [`Client::join`] resolves
//!   with that answer. If the server does not speak it (an Alepha server
//!   answers without a subprotocol), the client reconnects at once on the
//!   Alepha wire and stays on it.
//! * [`WireFormat::Alepha`]: what Alepha's browser client speaks. Rooms
//!   are named in the handshake URL (`?roomIds=a,b`); joining or leaving a
//!   room reconnects with the new list, as Alepha does.
//!
//! JSON is the default because it works with every channel and every
//! server: postcard is smaller, but cannot decode some serde types (an
//! internally tagged `enum`, as Alepha's `t.union` of objects maps to, is
//! one: see [`roomwire_core::channel`](mod@roomwire_core::channel)), so it is a choice made per channel.
//!
//! # Sending and the offline queue
//!
//! [`Client::send`] never waits: it validates and encodes the message at
//! once (so the message may borrow, and errors are the caller's), then
//! puts it in a bounded queue ([`ClientOptions::queue_capacity`], 1000 by
//! default, as Alepha's client). The connection's task writes a queued
//! message as soon as its room is joined on an open connection: at once
//! when connected, after the rooms are restored when reconnecting. Messages
//! of one room go out in the order sent. When the queue is full the oldest
//! message is dropped and counted ([`Client::dropped`]); a message whose
//! room is no longer wanted when its turn comes (left, or refused by the
//! server) is discarded and counted apart ([`Client::rejected`]).
//!
//! The payload is encoded at send time in the encoding of the wire the
//! client is on (JSON, or postcard). The frame around it is made when the
//! message is written, by [`RoomClient::send`] for the connection of that
//! moment: the queued payload is decoded back into the channel's `Out` type
//! (borrowing from the stored bytes) and encoded by the core. That extra
//! decode is what lets a queued message survive a change of wire (a
//! postcard client falling back to an Alepha server) and keeps every frame
//! the core's; see the crate's `PROTOCOL.md` for the frames.
//!
//! A message handed to the socket is delivered at most once: if the
//! connection drops before the server reads it, it is lost, as with any
//! WebSocket client.
//!
//! # Receiving
//!
//! [`Incoming`] yields `(room, message)`: the room the server sent it to,
//! or `None` for a message sent to this connection, its user or the whole
//! channel (Alepha's client hands those to every room's handlers). Frames
//! that do not decode as the channel's `In` type, and the server's error
//! frames, are logged (`tracing`, `warn`) and skipped, as Alepha's client
//! does. When the application does not keep up, the task stops reading the
//! socket once [`ClientOptions::incoming_capacity`] messages wait in a
//! stream, or the waiting messages arrived as
//! [`ClientOptions::incoming_bytes`] (16 MiB by default), and the server's
//! own flow control takes over. Messages keep flowing across
//! reconnects; the stream ends after [`Client::close`] (or when the client
//! gives up reconnecting).
//!
//! # Reconnection
//!
//! A failed attempt or a lost connection is retried after a delay that the
//! core's [`ReconnectPolicy`] decides (exponential, with full jitter,
//! unlimited by default), the same decision as on embassy. Answers that
//! say retrying cannot help (close 1008 `Room full` or `Too many rooms for this connection`,
//! 1003, an application close code 4000–4999, an upgrade refused with a
//! 4xx other than 408 and 429) stop the client instead:
//! [`ConnectionState::Closed`] with the error (see
//! [`roomwire_core::reconnect`]). On every new
//! connection the wanted rooms are restored (joins on the roomwire wire,
//! the handshake URL on the Alepha wire), then the queue is flushed. A
//! keepalive ping (every 30 s by default, see [`ClientOptions::config`])
//! finds a server that stopped answering; on the roomwire wire a join or
//! leave unanswered for [`ClientOptions::request_timeout`] does too.
//!
//! # State
//!
//! [`Client::state`] is the [`ConnectionState`] (connecting, connected,
//! error with the retry delay, closed); [`Client::state_changes`] is a
//! `tokio::sync::watch` receiver to await its changes.
//!
//! # Tasks and tracing
//!
//! [`Client::connect`] spawns one task on the current tokio runtime. It
//! owns the socket and the core's [`RoomClient`]; the handles talk to it
//! through channels and a queue whose lock is never held across an
//! `.await`. The task runs in a `tracing` span named `room_client` (with
//! the channel path and URL); each connection opens a `websocket` span
//! inside it.

mod driver;
mod error;
mod incoming;
mod options;
mod stream;

pub use error::{ConnectError, ConnectionError, ConnectionState, RoomError, SendError};
use incoming::{Charged, Held};
pub use incoming::{Incoming, RoomMessages};
pub use options::ClientOptions;

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use roomwire_core::channel::Channel;
use roomwire_core::client::{RoomClient, client_room_id};
use roomwire_core::payload;
use roomwire_core::payload::EncodeError;
use roomwire_core::{RoomId, WireFormat};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tracing::Instrument;

pub use roomwire_core::reconnect::ReconnectPolicy;

use driver::{Command, Driver, Outlets, ServerUrl};

use crate::lock;

/// Default bound of the send queue, as Alepha's client: see
/// [`ClientOptions::queue_capacity`].
pub const DEFAULT_QUEUE_CAPACITY: usize = 1000;

/// Default number of received messages that may wait for the application:
/// see [`ClientOptions::incoming_capacity`].
pub const DEFAULT_INCOMING_CAPACITY: usize = 1024;

/// Default bound of the bytes received messages waiting for the
/// application arrived as: see [`ClientOptions::incoming_bytes`].
pub const DEFAULT_INCOMING_BYTES: usize = 16 << 20;

/// Most rooms a client can be in at once (and most join or leave requests
/// waiting for an answer): the capacity of the core's [`RoomClient`]. It
/// matches the room server's default rooms per connection
/// ([`ServerConfig::rooms`](crate::server::ServerConfig::rooms)).
pub const MAX_ROOMS: usize = 32;

/// Default keepalive interval of a client connection: see
/// [`ClientOptions::config`].
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_micros(roomwire_core::session::KEEPALIVE.as_micros());

/// Default time the server has to answer a join or leave: see
/// [`ClientOptions::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One received message: the room it was sent to (`None`: to this
/// connection, its user or the whole channel) and the message.
pub type Received<C> = (Option<RoomId>, <C as Channel>::In<'static>);

/// A message waiting to be written: its room and its payload, encoded in
/// the payload encoding of `format`.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) room: RoomId,
    pub(crate) payload: Vec<u8>,
    pub(crate) format: WireFormat,
}

/// The rooms of the client, as last published by the task.
#[derive(Debug, Default)]
pub(crate) struct Rooms {
    pub(crate) joined: Vec<RoomId>,
    pub(crate) wanted: Vec<RoomId>,
}

/// What the handles and the task share. Locks are held for a push, a swap
/// or a copy, never across an `.await`.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) queue: Mutex<VecDeque<Outgoing>>,
    pub(crate) capacity: usize,
    /// Wakes the task when a message is queued.
    pub(crate) notify: Notify,
    pub(crate) dropped: AtomicU64,
    pub(crate) rejected: AtomicU64,
    /// The wire of the last connection (or the one asked for): new
    /// messages are encoded for it.
    format: AtomicU8,
    pub(crate) closed: AtomicBool,
    pub(crate) rooms: Mutex<Rooms>,
}

impl Shared {
    fn new(capacity: usize, format: WireFormat) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            capacity,
            notify: Notify::new(),
            dropped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            format: AtomicU8::new(format_code(format)),
            closed: AtomicBool::new(false),
            rooms: Mutex::new(Rooms::default()),
        }
    }

    pub(crate) fn format(&self) -> WireFormat {
        match self.format.load(Ordering::Acquire) {
            0 => WireFormat::Alepha,
            1 => WireFormat::Json,
            _ => WireFormat::Postcard,
        }
    }

    pub(crate) fn set_format(&self, format: WireFormat) {
        self.format.store(format_code(format), Ordering::Release);
    }

    /// Queue `item`, dropping the oldest messages beyond the capacity.
    fn push(&self, item: Outgoing) {
        let mut dropped = 0;
        {
            let mut queue = lock(&self.queue);
            while queue.len() >= self.capacity {
                queue.pop_front();
                dropped += 1;
            }
            queue.push_back(item);
        }
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
            tracing::warn!(dropped, "send queue full: oldest message dropped");
        }
        self.notify.notify_one();
    }
}

fn format_code(format: WireFormat) -> u8 {
    match format {
        WireFormat::Alepha => 0,
        WireFormat::Json => 1,
        WireFormat::Postcard => 2,
    }
}

// ---------------------------------------------------------------------------
// The channel as the core's client sees it
// ---------------------------------------------------------------------------

/// Channel `C` receiving `M` (its `In<'static>`, owned): the core's
/// [`RoomClient`] decodes received messages straight into `M`, which
/// outlives the frame. (`M` is a parameter of its own, rather than
/// `C::In<'static>` written out, so that the task's future is `Send`
/// whatever lifetimes the compiler erases.)
pub(crate) struct Owned<C, M>(PhantomData<fn() -> (C, M)>);

impl<C, M> Channel for Owned<C, M>
where
    C: Channel,
    M: serde::Serialize + DeserializeOwned,
{
    const PATH: &'static str = C::PATH;
    const DESCRIPTION: &'static str = C::DESCRIPTION;
    const ROOM_ID: roomwire_core::channel::RoomIdRule = C::ROOM_ID;
    const WIRES: roomwire_core::wire::Wires = C::WIRES;
    type In<'a> = M;
    type Out<'a> = C::Out<'a>;

    fn validate_room_id(room: &str) -> bool {
        C::validate_room_id(room)
    }

    fn validate(message: &Self::Out<'_>) -> Result<(), &'static str> {
        C::validate(message)
    }
}

/// The core's client of channel `C` receiving `M`, as the task drives it.
pub(crate) type Core<C, M> = RoomClient<Owned<C, M>, MAX_ROOMS>;

// ---------------------------------------------------------------------------
// The handle
// ---------------------------------------------------------------------------

/// A handle on a room client connection of channel `C`: see the
/// [module docs](self). Cheap to clone; every clone drives the same
/// connection.
///
/// The channel's received type must be owned
/// (`C::In<'static>: DeserializeOwned`, e.g. `String` fields rather than
/// `&str`); its sent type may borrow.
pub struct Client<C: Channel> {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<ConnectionState>,
    sinks: Sinks<C::In<'static>>,
    incoming_capacity: usize,
    channel: PhantomData<fn() -> C>,
}

/// One [`RoomMessages`] stream, as the task sees it.
pub(crate) struct RoomSink<M> {
    pub(crate) room: RoomId,
    pub(crate) tx: mpsc::Sender<Charged<M>>,
    /// `M: Clone` is known where the stream is made, not in the task.
    pub(crate) clone: fn(&M) -> M,
}

/// The per-room streams of a client.
pub(crate) type Sinks<M> = Arc<Mutex<Vec<RoomSink<M>>>>;

impl<C: Channel> Clone for Client<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            commands: self.commands.clone(),
            state: self.state.clone(),
            sinks: self.sinks.clone(),
            incoming_capacity: self.incoming_capacity,
            channel: PhantomData,
        }
    }
}

impl<C: Channel> fmt::Debug for Client<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("path", &C::PATH)
            .field("state", &*self.state.borrow())
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

impl<C> Client<C>
where
    C: Channel + 'static,
    C::In<'static>: DeserializeOwned + Send,
{
    /// Start a client of channel `C` at `url`, `ws://host[:port]` or
    /// `wss://host[:port]` (TLS with the `tls` feature, see
    /// `ClientOptions::tls_config`),
    /// optionally followed by a path prefix that the channel's
    /// [`PATH`](Channel::PATH) is appended to (as Alepha's
    /// `WEBSOCKET_URL`), and by a query that every handshake carries (an
    /// auth token: `ws://host/?token=…`; on the Alepha wire the rooms
    /// follow it). Returns at once: the connection is made by a task
    /// spawned on the current tokio runtime, which retries until it
    /// succeeds (see [`ReconnectPolicy`]); watch [`state`](Self::state) or await
    /// [`wait_connected`](Self::wait_connected).
    ///
    /// The connection lives while the [`Client`] (any clone) or the
    /// [`Incoming`] stream does, or until [`close`](Self::close).
    pub fn connect(url: &str, options: ClientOptions) -> Result<(Self, Incoming<C>), ConnectError> {
        let endpoint = ServerUrl::parse(url)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConnectError::NoRuntime)?;
        if let Some(room) =
            options.rooms.iter().find(|room| Core::<C, C::In<'static>>::with_rooms(options.wire, &[room]).is_err())
        {
            return Err(ConnectError::InvalidRoom(room.clone()));
        }
        let rooms: Vec<&str> = options.rooms.iter().map(String::as_str).collect();
        let core =
            Core::<C, C::In<'static>>::with_rooms(options.wire, &rooms).map_err(|_| ConnectError::TooManyRooms)?;
        let shared = Arc::new(Shared::new(options.queue_capacity, core.format()));
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (incoming_tx, incoming_rx) = mpsc::channel(options.incoming_capacity);
        let (state_tx, state_rx) = watch::channel(ConnectionState::Connecting { attempt: 0 });
        let sinks = Sinks::default();
        let incoming_capacity = options.incoming_capacity;
        let held = Held::new(options.incoming_bytes);
        let span = tracing::info_span!("room_client", path = C::PATH, url);
        let driver = Driver::<C, C::In<'static>>::new(
            endpoint,
            options,
            core,
            shared.clone(),
            command_rx,
            Outlets { incoming: incoming_tx, sinks: sinks.clone(), held },
            state_tx,
        )
        .map_err(|e| ConnectError::Random(e.to_string()))?;
        runtime.spawn(driver.run().instrument(span));
        let client = Self {
            shared,
            commands: commands.clone(),
            state: state_rx,
            sinks,
            incoming_capacity,
            channel: PhantomData,
        };
        Ok((client, Incoming { rx: incoming_rx, _alive: commands }))
    }

    /// Send `message` to the server's handler in `room`: validated and
    /// encoded now, written as soon as the room is joined on an open
    /// connection (see the [module docs](self#sending-and-the-offline-queue)).
    /// Never waits.
    ///
    /// A room the client does not want (never joined, or left) is not an
    /// error here: the message is discarded when its turn comes and
    /// counted in [`rejected`](Self::rejected).
    pub fn send(&self, room: &str, message: &C::Out<'_>) -> Result<(), SendError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(SendError::Closed);
        }
        let format = self.shared.format();
        let room = client_room_id::<C>(format, room).map_err(|_| SendError::InvalidRoomId)?;
        C::validate(message).map_err(SendError::Invalid)?;
        let payload = encode_payload(format, message).map_err(SendError::Encode)?;
        roomwire_core::client::wire_carries(format, &payload).map_err(|_| SendError::FalsyOnAlepha)?;
        self.shared.push(Outgoing { room, payload, format });
        Ok(())
    }

    /// Join `room`. The request is made when this is called; the future
    /// resolves once the room is joined on the current connection (or, if
    /// disconnected, on the next one).
    ///
    /// * roomwire wire: a `join` request, answered by the server (`Ok`, or
    ///   [`RoomError::Refused`]); no reconnection.
    /// * Alepha wire: the client reconnects with the new room list, as
    ///   Alepha's client does; resolves when the new connection is open.
    ///
    /// The room is wanted from now on, and restored after each reconnect.
    pub fn join(&self, room: &str) -> impl Future<Output = Result<(), RoomError>> + Send + 'static + use<C> {
        let (reply, answer) = oneshot::channel();
        let sent = self.commands.send(Command::Join { room: room.to_owned(), reply }).is_ok();
        async move {
            if !sent {
                return Err(RoomError::Closed);
            }
            answer.await.unwrap_or(Err(RoomError::Closed))
        }
    }

    /// Leave `room`: it is no longer wanted. The request is made when this
    /// is called; the future resolves once the connection is out of the
    /// room (roomwire wire: the server's answer; Alepha wire: the
    /// connection is replaced by one without the room).
    pub fn leave(&self, room: &str) -> impl Future<Output = Result<(), RoomError>> + Send + 'static + use<C> {
        let (reply, answer) = oneshot::channel();
        let sent = self.commands.send(Command::Leave { room: room.to_owned(), reply }).is_ok();
        async move {
            if !sent {
                return Err(RoomError::Closed);
            }
            answer.await.unwrap_or(Err(RoomError::Closed))
        }
    }

    /// Close the client: messages already queued for joined rooms are
    /// written, then the connection is closed with 1000 (normal) and the
    /// task ends; [`Incoming`] ends after the messages already received.
    /// Later [`send`](Self::send)s fail with [`SendError::Closed`]. The
    /// request is made when this is called; the future resolves when the
    /// closing handshake is over (bounded by the close timeout).
    pub fn close(&self) -> impl Future<Output = ()> + Send + 'static + use<C> {
        self.shared.closed.store(true, Ordering::Release);
        let (reply, done) = oneshot::channel();
        let sent = self.commands.send(Command::Close { reply }).is_ok();
        async move {
            if sent {
                let _ = done.await;
            }
        }
    }
}

impl<C> Client<C>
where
    C: Channel + 'static,
    C::In<'static>: Clone + Send,
{
    /// A stream of the messages of `room` alone: those labelled with it,
    /// and those sent to this connection, its user or the whole channel
    /// (which Alepha's client hands to every room). Each message also goes
    /// to the merged [`Incoming`] stream; drop that one if you read only
    /// per-room streams, since the client stops reading the socket while
    /// any live stream is full (flow control, as for [`Incoming`]).
    ///
    /// This does not join the room: call [`join`](Self::join) (or name it
    /// in [`ClientOptions::rooms`]). The stream ends when the client is
    /// closed.
    pub fn room_messages(&self, room: &str) -> Result<RoomMessages<C>, RoomError> {
        let room = RoomId::new(room).map_err(|_| RoomError::InvalidRoomId)?;
        let (tx, rx) = mpsc::channel(self.incoming_capacity);
        lock(&self.sinks).push(RoomSink { room, tx, clone: <C::In<'static> as Clone>::clone });
        Ok(RoomMessages { rx, _alive: self.commands.clone() })
    }
}

impl<C: Channel> Client<C> {
    /// Close the connection (1000, after writing what is queued for joined
    /// rooms) and stay disconnected, without closing the client: the
    /// wanted rooms, the send queue and the [`Incoming`] stream stay,
    /// joins and leaves update the wanted rooms, and
    /// [`reconnect`](Self::reconnect) connects again. The state is
    /// [`ConnectionState::Disconnected`] meanwhile. Resolves once the
    /// connection is closed.
    pub fn disconnect(&self) -> impl Future<Output = ()> + Send + 'static + use<C> {
        let (reply, done) = oneshot::channel();
        let sent = self.commands.send(Command::Disconnect { reply }).is_ok();
        async move {
            if sent {
                let _ = done.await;
            }
        }
    }

    /// Connect again now: after [`disconnect`](Self::disconnect), or while
    /// waiting to retry (the wait is skipped), or on an open connection
    /// (closed with 1000 first). The rooms are restored as after any
    /// reconnect, and the failure count starts again. No effect once the
    /// client is closed.
    pub fn reconnect(&self) {
        let _ = self.commands.send(Command::Reconnect);
    }

    /// The connection's state now.
    pub fn state(&self) -> ConnectionState {
        self.state.borrow().clone()
    }

    /// A receiver of the connection's state, to await its changes
    /// (`changed()`, `wait_for(…)`). Like any `watch`, it sees the latest
    /// state, not every intermediate one.
    pub fn state_changes(&self) -> watch::Receiver<ConnectionState> {
        self.state.clone()
    }

    /// Wait until the client is connected; `Some(wire)` then, `None` if it
    /// closed (or gave up) instead.
    pub async fn wait_connected(&self) -> Option<WireFormat> {
        let mut state = self.state.clone();
        let state = state.wait_for(|s| s.is_connected() || s.is_closed()).await.ok()?;
        match &*state {
            ConnectionState::Connected { format } => Some(*format),
            _ => None,
        }
    }

    /// The rooms the current connection is in (empty while disconnected).
    pub fn rooms(&self) -> Vec<RoomId> {
        lock(&self.shared.rooms).joined.clone()
    }

    /// The rooms the client wants, restored after each reconnect.
    pub fn wanted_rooms(&self) -> Vec<RoomId> {
        lock(&self.shared.rooms).wanted.clone()
    }

    /// The wire new messages are encoded for: the one asked for until a
    /// server selects one.
    pub fn wire(&self) -> WireFormat {
        self.shared.format()
    }

    /// Messages waiting in the send queue.
    pub fn queued(&self) -> usize {
        lock(&self.shared.queue).len()
    }

    /// Messages dropped because the send queue was full (oldest first).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Messages discarded because their room was not wanted when their
    /// turn came, or they could not be re-encoded for the connection.
    pub fn rejected(&self) -> u64 {
        self.shared.rejected.load(Ordering::Relaxed)
    }

    /// Whether the client is closed (by [`close`](Client::close), or after
    /// giving up).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }
}

/// Encode `message` as a payload of `format` into a new buffer of the exact
/// size.
fn encode_payload<T: serde::Serialize + ?Sized>(format: WireFormat, message: &T) -> Result<Vec<u8>, EncodeError> {
    let mut payload = Vec::new();
    payload::encode_payload_to_vec(format, message, &mut payload)?;
    Ok(payload)
}

// ---------------------------------------------------------------------------
// The receive stream
// ---------------------------------------------------------------------------
