//! The room client over real TCP on loopback, against a small room server
//! built here from the raw layer and the core's `dispatch` (as the core's
//! in-memory hub does), and against scripted misbehaving servers.
//!
//! Every wait is bounded by a guard timeout; no test asserts on timing.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use roomwire_tokio::client::{
    Client, ClientOptions, ConnectError, ConnectionError, ConnectionState, ReconnectPolicy, RoomError, SendError,
};
use roomwire_tokio::roomwire_core::channel::Channel;
use roomwire_tokio::roomwire_core::dispatch::{self, Inbound};
use roomwire_tokio::roomwire_core::room::{GrowableRoomTable, MemberId, RoomTable, TableLimits};
use roomwire_tokio::roomwire_core::target::FrameKey;
use roomwire_tokio::roomwire_core::{self, RoomId, Timeout, WireFormat, envelope, handshake, payload};
use roomwire_tokio::{Config, Decision, Error, Message, MessageKind, WebSocket};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------
// Channels
// ---------------------------------------------------------------------------

/// Client → server, the seed's `{"content"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Say {
    pub content: String,
}

/// Server → client, the seed's union (internally tagged: JSON wires only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ChatIn {
    Append { content: String, username: String },
    System { message: String },
}

/// The same union externally tagged, which postcard decodes too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    Append { content: String, username: String },
    System { message: String },
}

roomwire_core::channel! {
    /// The seed's chat channel.
    pub struct Chat { path: "/ws/chat", in: ChatIn, out: Say }
}

roomwire_core::channel! {
    /// The chat channel for every wire, postcard included.
    pub struct AnyChat { path: "/ws/chat", in: Event, out: Say }
}

/// What the test server needs to know of a channel.
trait TestChannel: Channel + Send + Sync + 'static {
    fn append(content: &str, username: &str) -> Self::In<'static>;
    fn system(message: &str) -> Self::In<'static>;
    fn content(message: &Self::Out<'_>) -> String;
    fn say(content: &str) -> Self::Out<'static>;
}

impl TestChannel for Chat {
    fn append(content: &str, username: &str) -> ChatIn {
        ChatIn::Append { content: content.into(), username: username.into() }
    }
    fn system(message: &str) -> ChatIn {
        ChatIn::System { message: message.into() }
    }
    fn content(message: &Say) -> String {
        message.content.clone()
    }
    fn say(content: &str) -> Say {
        say(content)
    }
}

impl TestChannel for AnyChat {
    fn append(content: &str, username: &str) -> Event {
        Event::Append { content: content.into(), username: username.into() }
    }
    fn system(message: &str) -> Event {
        Event::System { message: message.into() }
    }
    fn content(message: &Say) -> String {
        message.content.clone()
    }
    fn say(content: &str) -> Say {
        say(content)
    }
}

fn say(content: &str) -> Say {
    Say { content: content.into() }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Bound any wait: a hang fails the test instead of blocking it.
async fn guard<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), future).await.expect("guard timeout: the test hung")
}

/// Options with quick retries.
fn fast() -> ClientOptions {
    ClientOptions::new().reconnect(ReconnectPolicy {
        initial: Duration::from_millis(20).into(),
        max: Duration::from_millis(200).into(),
        ..ReconnectPolicy::default()
    })
}

/// A loopback port nobody listens on (bound, then released).
async fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}")
}

fn rooms(list: &[RoomId]) -> Vec<&str> {
    list.iter().map(|r| r.as_str()).collect()
}

// ---------------------------------------------------------------------------
// The test room server
// ---------------------------------------------------------------------------

/// What the server saw, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Connected { id: u32, format: WireFormat, query: Option<String> },
    Handled { id: u32, room: String, content: String },
    Disconnected { id: u32, code: Option<u16> },
}

enum ToConn {
    Send(Message),
    /// Drop the socket without a closing handshake.
    Drop,
}

struct Conn {
    format: WireFormat,
    tx: mpsc::UnboundedSender<ToConn>,
}

struct Hub {
    table: GrowableRoomTable,
    conns: HashMap<u32, Conn>,
    next: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Both wires, as the roomwire server.
    Both,
    /// Never selects a subprotocol, as Alepha's server.
    AlephaOnly,
}

/// A room server: admission and inbound messages by `dispatch`, the seed's
/// chat handler (reply `append` to the sender's room, except the sender,
/// username `ws-<id>`).
struct TestServer<T> {
    addr: SocketAddr,
    hub: Arc<Mutex<Hub>>,
    seen: mpsc::UnboundedReceiver<Seen>,
    accept: JoinHandle<()>,
    channel: PhantomData<T>,
}

impl<T: TestChannel> TestServer<T>
where
    T::In<'static>: Serialize,
{
    async fn start(mode: Mode) -> Self {
        Self::bind("127.0.0.1:0".parse().unwrap(), mode, TableLimits::UNLIMITED).await
    }

    async fn bind(addr: SocketAddr, mode: Mode, limits: TableLimits) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hub =
            Arc::new(Mutex::new(Hub { table: GrowableRoomTable::with_limits(limits), conns: HashMap::new(), next: 1 }));
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let accept = tokio::spawn({
            let hub = hub.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else { return };
                    tokio::spawn(serve::<T>(stream, hub.clone(), seen_tx.clone(), mode));
                }
            }
        });
        Self { addr, hub, seen, accept, channel: PhantomData }
    }

    fn url(&self) -> String {
        url(self.addr)
    }

    /// The next event.
    async fn next(&mut self) -> Seen {
        guard(self.seen.recv()).await.expect("server events ended")
    }

    async fn connected(&mut self) -> (u32, WireFormat, Option<String>) {
        match self.next().await {
            Seen::Connected { id, format, query } => (id, format, query),
            other => panic!("expected a connection, saw {other:?}"),
        }
    }

    async fn handled(&mut self) -> (u32, String, String) {
        match self.next().await {
            Seen::Handled { id, room, content } => (id, room, content),
            other => panic!("expected a handled message, saw {other:?}"),
        }
    }

    /// No event is waiting.
    fn quiet(&mut self) -> bool {
        self.seen.try_recv().is_err()
    }

    fn rooms_of(&self, id: u32) -> Vec<String> {
        let hub = self.hub.lock().unwrap();
        hub.table.rooms_of(MemberId(id)).map(|r| r.to_string()).collect()
    }

    /// Emit to a room (labelled) or to every connection (unlabelled).
    fn emit(&self, room: Option<&str>, message: &T::In<'static>) {
        let mut hub = self.hub.lock().unwrap();
        let Hub { table, conns, .. } = &mut *hub;
        deliver(table, conns, room, None, message);
    }

    /// Stop: every connection dropped without a close frame, the listener
    /// closed (the port is free again when this returns).
    async fn stop(self) {
        self.accept.abort();
        let _ = self.accept.await;
        let hub = self.hub.lock().unwrap();
        for conn in hub.conns.values() {
            let _ = conn.tx.send(ToConn::Drop);
        }
    }
}

async fn serve<T: TestChannel>(stream: TcpStream, hub: Arc<Mutex<Hub>>, seen: mpsc::UnboundedSender<Seen>, mode: Mode)
where
    T::In<'static>: Serialize,
{
    let accepted = WebSocket::accept_with(stream, Config::default(), |request| {
        if request.path() != T::PATH {
            return Decision::refuse(404, "no such channel");
        }
        let format = match mode {
            Mode::AlephaOnly => WireFormat::Alepha,
            Mode::Both => WireFormat::negotiate(request.protocols()),
        };
        match format.protocol() {
            Some(protocol) => Decision::accept_protocol(protocol),
            None => Decision::accept(),
        }
    })
    .await;
    let Ok((mut ws, info)) = accepted else { return };
    let format = info.protocol.as_deref().map_or(WireFormat::Alepha, |p| WireFormat::negotiate(std::iter::once(p)));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = {
        let mut hub = hub.lock().unwrap();
        let id = hub.next;
        hub.next += 1;
        dispatch::join_handshake_rooms::<T, _>(
            format,
            MemberId(id),
            info.query.as_deref(),
            None,
            &roomwire_core::dispatch::AnyRoom,
            &mut hub.table,
        )
        .unwrap();
        hub.conns.insert(id, Conn { format, tx });
        id
    };
    seen.send(Seen::Connected { id, format, query: info.query.clone() }).unwrap();
    let mut scratch = vec![0u8; 4096];
    let mut out = vec![0u8; 4096];
    let code = loop {
        tokio::select! {
            received = ws.recv() => match received {
                Some(Ok(message)) => {
                    let reply = handle::<T>(&hub, &seen, id, format, message.as_bytes(), &mut scratch, &mut out);
                    if let Some(reply) = reply
                        && ws.send(&reply).await.is_err()
                    {
                        break None;
                    }
                }
                Some(Err(_)) => break None,
                None => break ws.peer_close().and_then(|close| close.code).map(u16::from),
            },
            command = rx.recv() => match command {
                Some(ToConn::Send(message)) => {
                    if ws.send(&message).await.is_err() {
                        break None;
                    }
                }
                Some(ToConn::Drop) | None => break None,
            },
        }
    };
    drop(ws);
    {
        let mut hub = hub.lock().unwrap();
        hub.conns.remove(&id);
        hub.table.leave_all(MemberId(id));
    }
    let _ = seen.send(Seen::Disconnected { id, code });
}

/// The adapter's job for one message: dispatch, then the chat handler.
fn handle<T: TestChannel>(
    hub: &Mutex<Hub>,
    seen: &mpsc::UnboundedSender<Seen>,
    id: u32,
    format: WireFormat,
    data: &[u8],
    scratch: &mut [u8],
    out: &mut [u8],
) -> Option<Message>
where
    T::In<'static>: Serialize,
{
    let mut hub = hub.lock().unwrap();
    let Hub { table, conns, .. } = &mut *hub;
    match dispatch::handle_message::<T, _>(
        format,
        MemberId(id),
        &mut *table,
        &roomwire_core::dispatch::AnyRoom,
        data,
        scratch,
        out,
    ) {
        Inbound::Message { room, message } => {
            let content = T::content(&message);
            seen.send(Seen::Handled { id, room: room.to_string(), content: content.clone() }).unwrap();
            let reply = T::append(&content, &format!("ws-{id}"));
            deliver(table, conns, Some(room.as_str()), Some(id), &reply);
            None
        }
        Inbound::Answer { len, .. } => Some(message_of(format, out[..len].to_vec())),
        Inbound::Ignored => None,
    }
}

fn message_of(format: WireFormat, body: Vec<u8>) -> Message {
    match format.message_kind() {
        MessageKind::Text => Message::Text(String::from_utf8(body).unwrap()),
        MessageKind::Binary => Message::Binary(body),
    }
}

/// Send `message` to the members of `room` (labelled), or to everyone.
fn deliver<M: Serialize>(
    table: &GrowableRoomTable,
    conns: &HashMap<u32, Conn>,
    room: Option<&str>,
    except: Option<u32>,
    message: &M,
) {
    let encode = |format| {
        let mut payload = vec![0u8; 64 * 1024];
        let n = payload::encode_payload(format, message, &mut payload).unwrap();
        payload.truncate(n);
        payload
    };
    let (json, postcard) = (encode(WireFormat::Json), encode(WireFormat::Postcard));
    let members: Vec<u32> = match room {
        Some(room) => table.members(room).iter().map(|m| m.0).collect(),
        None => conns.keys().copied().collect(),
    };
    for member in members {
        let Some(conn) = conns.get(&member).filter(|_| Some(member) != except) else { continue };
        let payload = if conn.format == WireFormat::Postcard { &postcard } else { &json };
        let mut frame = vec![0u8; payload.len() + 256];
        let range = dispatch::encode_frame(FrameKey { format: conn.format, label: room }, payload, &mut frame).unwrap();
        let body = frame[dispatch::MAX_SERVER_HEADER..range.end].to_vec();
        let _ = conn.tx.send(ToConn::Send(message_of(conn.format, body)));
    }
}

// ---------------------------------------------------------------------------
// Typed messages on each wire
// ---------------------------------------------------------------------------

async fn chat_in_a_room<T: TestChannel>(wire: WireFormat)
where
    T::In<'static>: Serialize + DeserializeOwned + Send + PartialEq + Debug,
{
    let mut server = TestServer::<T>::start(Mode::Both).await;
    let options = fast().wire(wire).room("lobby");
    let (alice, mut alice_in) = Client::<T>::connect(&server.url(), options.clone()).unwrap();
    guard(alice.join("lobby")).await.unwrap();
    let (alice_id, format, query) = server.connected().await;
    let expected_query = (wire == WireFormat::Alepha).then(|| "roomIds=lobby".to_string());
    assert_eq!((format, query), (wire, expected_query.clone()), "{wire:?}");
    let (bob, mut bob_in) = Client::<T>::connect(&server.url(), options).unwrap();
    guard(bob.join("lobby")).await.unwrap();
    assert_eq!(server.connected().await.1, wire);
    assert_eq!(alice.wait_connected().await, Some(wire));
    assert_eq!(rooms(&alice.rooms()), ["lobby"]);

    alice.send("lobby", &T::say("hello")).unwrap();
    assert_eq!(server.handled().await, (alice_id, "lobby".into(), "hello".into()));
    let (room, message) = guard(bob_in.next()).await.unwrap();
    assert_eq!(room.as_deref(), Some("lobby"), "{wire:?}");
    assert_eq!(message, T::append("hello", &format!("ws-{alice_id}")), "{wire:?}");

    // Alice got nothing back (except self): a channel-wide emit, which is
    // unlabelled, is the first message she receives.
    server.emit(None, &T::system("everyone"));
    assert_eq!(guard(alice_in.recv()).await.unwrap(), (None, T::system("everyone")), "{wire:?}");
    assert_eq!(guard(bob_in.recv()).await.unwrap(), (None, T::system("everyone")), "{wire:?}");

    guard(alice.close()).await;
    assert!(alice.state().is_closed());
    assert!(guard(alice_in.recv()).await.is_none(), "the stream ends after close");
    assert_eq!(alice.send("lobby", &T::say("late")), Err(SendError::Closed));
    assert_eq!(server.next().await, Seen::Disconnected { id: alice_id, code: Some(1000) }, "closed with 1000");
    guard(bob.close()).await;
    assert_eq!(alice.dropped() + alice.rejected() + bob.dropped() + bob.rejected(), 0);
}

#[tokio::test]
async fn typed_messages_in_a_room_on_the_alepha_wire() {
    chat_in_a_room::<Chat>(WireFormat::Alepha).await;
}

#[tokio::test]
async fn typed_messages_in_a_room_on_the_roomwire_json_wire() {
    chat_in_a_room::<Chat>(WireFormat::Json).await;
}

#[tokio::test]
async fn typed_messages_in_a_room_on_the_roomwire_postcard_wire() {
    chat_in_a_room::<AnyChat>(WireFormat::Postcard).await;
}

// ---------------------------------------------------------------------------
// Joining and leaving
// ---------------------------------------------------------------------------

#[tokio::test]
async fn join_and_leave_without_reconnecting_on_the_roomwire_wire() {
    for wire in [WireFormat::Json, WireFormat::Postcard] {
        let limits = TableLimits { max_rooms_per_member: 2, ..TableLimits::UNLIMITED };
        let mut server = TestServer::<AnyChat>::bind("127.0.0.1:0".parse().unwrap(), Mode::Both, limits).await;
        let (client, mut incoming) = Client::<AnyChat>::connect(&server.url(), fast().wire(wire).room("a")).unwrap();
        guard(client.join("a")).await.unwrap();
        let (id, _, query) = server.connected().await;
        assert_eq!(query, None, "rooms are joined with requests, not in the URL");

        guard(client.join("b")).await.unwrap();
        assert_eq!(server.rooms_of(id), ["a", "b"]);
        assert_eq!(rooms(&client.rooms()), ["a", "b"]);
        server.emit(Some("b"), &AnyChat::system("to b"));
        assert_eq!(guard(incoming.recv()).await.unwrap(), (Some(RoomId::new("b").unwrap()), AnyChat::system("to b")));

        // The server refuses a third room: the join fails, the room is not wanted.
        let refused = guard(client.join("c")).await;
        assert!(matches!(refused, Err(RoomError::Refused { code: envelope::code::TOO_MANY_ROOMS, .. })), "{refused:?}");
        assert_eq!(rooms(&client.wanted_rooms()), ["a", "b"]);

        guard(client.leave("a")).await.unwrap();
        assert_eq!(server.rooms_of(id), ["b"]);
        assert_eq!(rooms(&client.rooms()), ["b"]);
        server.emit(Some("a"), &AnyChat::system("to a"));
        server.emit(Some("b"), &AnyChat::system("to b again"));
        assert_eq!(
            guard(incoming.recv()).await.unwrap(),
            (Some(RoomId::new("b").unwrap()), AnyChat::system("to b again")),
            "nothing from the room left"
        );

        assert_eq!(guard(client.join("")).await, Err(RoomError::InvalidRoomId));
        assert!(server.quiet(), "one connection throughout, no reconnect");
        guard(client.close()).await;
        assert!(matches!(server.next().await, Seen::Disconnected { code: Some(1000), .. }));
    }
}

#[tokio::test]
async fn join_and_leave_reconnect_with_the_new_rooms_on_the_alepha_wire() {
    let mut server = TestServer::<Chat>::start(Mode::Both).await;
    let (client, mut incoming) =
        Client::<Chat>::connect(&server.url(), fast().wire(WireFormat::Alepha).room("a")).unwrap();
    let (first, _, query) = server.connected().await;
    assert_eq!(query.as_deref(), Some("roomIds=a"));

    guard(client.join("b")).await.unwrap();
    let mut events = vec![server.next().await, server.next().await];
    events.sort_by_key(|e| matches!(e, Seen::Connected { .. }));
    let [Seen::Disconnected { id, code }, Seen::Connected { id: second, format, query }] = &events[..] else {
        panic!("expected a reconnection, saw {events:?}");
    };
    assert_eq!((*id, *code), (first, Some(1000)), "the old connection closed normally");
    assert_eq!((*format, query.as_deref()), (WireFormat::Alepha, Some("roomIds=a,b")));
    assert_eq!(server.rooms_of(*second), ["a", "b"]);
    let second = *second;

    server.emit(Some("b"), &Chat::system("to b"));
    assert_eq!(guard(incoming.recv()).await.unwrap(), (Some(RoomId::new("b").unwrap()), Chat::system("to b")));
    client.send("b", &say("in b")).unwrap();
    assert_eq!(server.handled().await, (second, "b".into(), "in b".into()));

    guard(client.leave("a")).await.unwrap();
    assert_eq!(rooms(&client.wanted_rooms()), ["b"]);
    let mut events = vec![server.next().await, server.next().await];
    events.sort_by_key(|e| matches!(e, Seen::Connected { .. }));
    assert!(matches!(&events[0], Seen::Disconnected { id, .. } if *id == second), "{events:?}");
    assert!(matches!(&events[1], Seen::Connected { query: Some(q), .. } if q == "roomIds=b"), "{events:?}");
    guard(client.close()).await;
}

#[tokio::test]
async fn a_roomwire_client_falls_back_to_the_alepha_wire() {
    let mut server = TestServer::<Chat>::start(Mode::AlephaOnly).await;
    let (client, _incoming) = Client::<Chat>::connect(&server.url(), fast().rooms(["a", "b"])).unwrap();
    assert_eq!(client.wire(), WireFormat::Json);
    guard(client.join("b")).await.unwrap();
    // First the roomwire offer, answered without a subprotocol (in
    // "default"), then the Alepha wire with the rooms in the URL.
    assert_eq!(server.connected().await.2, None);
    let (id, format, query) = loop {
        if let Seen::Connected { id, format, query } = server.next().await {
            break (id, format, query);
        }
    };
    assert_eq!((format, query.as_deref()), (WireFormat::Alepha, Some("roomIds=a,b")));
    assert_eq!(client.wire(), WireFormat::Alepha);
    client.send("b", &say("hi")).unwrap();
    assert_eq!(server.handled().await, (id, "b".into(), "hi".into()));
    guard(client.close()).await;
}

// ---------------------------------------------------------------------------
// Reconnection, the offline queue, state
// ---------------------------------------------------------------------------

#[tokio::test]
async fn reconnecting_after_a_server_restart_restores_the_rooms() {
    for wire in [WireFormat::Json, WireFormat::Alepha] {
        let mut server = TestServer::<Chat>::start(Mode::Both).await;
        let addr = server.addr;
        let (client, mut incoming) = Client::<Chat>::connect(&server.url(), fast().wire(wire).room("a")).unwrap();
        guard(client.join("b")).await.unwrap();
        while !matches!(server.next().await, Seen::Connected { query, .. } if wire != WireFormat::Alepha || query.as_deref() == Some("roomIds=a,b"))
        {
        }

        let mut states = client.state_changes();
        server.stop().await;
        let state = guard(states.wait_for(|s| s.is_error())).await.unwrap().clone();
        assert!(state.error().is_some());
        assert_eq!(rooms(&client.wanted_rooms()), ["a", "b"], "the wanted rooms outlive the connection");

        let mut server = TestServer::<Chat>::bind(addr, Mode::Both, TableLimits::UNLIMITED).await;
        guard(client.join("a")).await.unwrap();
        guard(client.join("b")).await.unwrap();
        let (id, format, query) = server.connected().await;
        assert_eq!(format, wire);
        if wire == WireFormat::Alepha {
            assert_eq!(query.as_deref(), Some("roomIds=a,b"));
        }
        assert_eq!(server.rooms_of(id), ["a", "b"], "{wire:?}: rooms restored");
        server.emit(Some("b"), &Chat::system("back"));
        assert_eq!(guard(incoming.recv()).await.unwrap(), (Some(RoomId::new("b").unwrap()), Chat::system("back")));
        guard(client.close()).await;
        server.stop().await;
    }
}

/// `disconnect` closes the connection but not the client: the state says
/// so, sends queue up, joins update the wanted rooms, and `reconnect`
/// connects again at once with every room and the queued messages.
#[tokio::test]
async fn disconnect_is_not_final_and_reconnect_restores_everything() {
    for wire in [WireFormat::Json, WireFormat::Alepha] {
        let mut server = TestServer::<Chat>::start(Mode::Both).await;
        let (client, mut incoming) = Client::<Chat>::connect(&server.url(), fast().wire(wire).room("a")).unwrap();
        guard(client.join("a")).await.unwrap();
        let (first, _, _) = server.connected().await;

        guard(client.disconnect()).await;
        assert!(matches!(client.state(), ConnectionState::Disconnected), "{:?}", client.state());
        assert!(!client.is_closed());
        assert!(client.rooms().is_empty());
        client.send("a", &say("queued while away")).unwrap();
        let joining = client.join("b");
        // Nothing connects by itself meanwhile.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(matches!(client.state(), ConnectionState::Disconnected));

        client.reconnect();
        guard(joining).await.unwrap();
        let (second, format, _) = loop {
            if let Seen::Connected { id, format, query } = server.next().await {
                break (id, format, query);
            }
        };
        assert_ne!(first, second);
        assert_eq!(format, wire);
        assert_eq!(rooms(&client.wanted_rooms()), ["a", "b"]);
        loop {
            if let Seen::Handled { id, room, content } = server.next().await {
                assert_eq!((id, room.as_str(), content.as_str()), (second, "a", "queued while away"), "{wire:?}");
                break;
            }
        }
        server.emit(Some("b"), &Chat::system("welcome back"));
        assert_eq!(
            guard(incoming.recv()).await.unwrap(),
            (Some(RoomId::new("b").unwrap()), Chat::system("welcome back"))
        );

        // `reconnect` on an open connection replaces it.
        client.reconnect();
        let third = loop {
            if let Seen::Connected { id, .. } = server.next().await {
                break id;
            }
        };
        assert_ne!(third, second);
        guard(client.close()).await;
        server.stop().await;
    }
}

/// Per-room streams carry their room's messages and the unlabelled ones;
/// the merged stream still carries everything.
#[tokio::test]
async fn per_room_streams_split_the_traffic() {
    let server = TestServer::<Chat>::start(Mode::Both).await;
    let (client, mut all) = Client::<Chat>::connect(&server.url(), fast().rooms(["a", "b"])).unwrap();
    let mut only_a = client.room_messages("a").unwrap();
    let mut only_b = client.room_messages("b").unwrap();
    assert!(matches!(client.room_messages(""), Err(RoomError::InvalidRoomId)));
    guard(client.join("a")).await.unwrap();
    guard(client.join("b")).await.unwrap();
    server.emit(Some("a"), &Chat::system("for a"));
    server.emit(Some("b"), &Chat::system("for b"));
    server.emit(None, &Chat::system("for everyone"));
    assert_eq!(guard(only_a.recv()).await.unwrap(), Chat::system("for a"));
    assert_eq!(guard(only_a.recv()).await.unwrap(), Chat::system("for everyone"));
    assert_eq!(guard(only_b.recv()).await.unwrap(), Chat::system("for b"));
    assert_eq!(guard(only_b.recv()).await.unwrap(), Chat::system("for everyone"));
    for expected in ["for a", "for b", "for everyone"] {
        assert_eq!(guard(all.recv()).await.unwrap().1, Chat::system(expected));
    }
    // A dropped room stream is forgotten; the others go on.
    drop(only_b);
    server.emit(Some("b"), &Chat::system("b again"));
    server.emit(Some("a"), &Chat::system("a again"));
    assert_eq!(guard(only_a.recv()).await.unwrap(), Chat::system("a again"));
    guard(client.close()).await;
    assert_eq!(guard(only_a.recv()).await, None, "the stream ends with the client");
    server.stop().await;
}

/// A per-room stream the application does not read fills up: the client
/// stops reading its socket and waits for room there, without spinning
/// (it used to wait on the merged stream only, which, dropped, is always
/// ready, and took a worker for good). Read again, the stream gets every
/// message, in order. Run on a runtime of its own, watched from outside:
/// a client that spins can starve the timers a test would wait on.
/// The same when the streams are full by their bytes
/// ([`ClientOptions::incoming_bytes`]) rather than their count.
#[test]
fn a_full_room_stream_is_waited_for_without_spinning() {
    for options in [fast().incoming_capacity(4), fast().incoming_bytes(1)] {
        let (done, outcome) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            let _ = done.send(runtime.block_on(full_room_stream(options)));
        });
        let busy = outcome.recv_timeout(Duration::from_secs(60)).expect("the client starved its runtime");
        assert!(busy < Duration::from_millis(250), "the client spun: busy {busy:?} of 500 ms");
    }
}

/// The runtime's busy time while a client waits for a full room stream.
async fn full_room_stream(options: ClientOptions) -> Duration {
    let server = TestServer::<Chat>::start(Mode::Both).await;
    let (client, all) = Client::<Chat>::connect(&server.url(), options.rooms(["a"])).unwrap();
    let mut only_a = client.room_messages("a").unwrap();
    drop(all);
    guard(client.join("a")).await.unwrap();
    for i in 0..20 {
        server.emit(Some("a"), &Chat::system(&format!("{i}")));
    }
    // The stream fills; then the client only waits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let busy = || (0..metrics.num_workers()).map(|w| metrics.worker_total_busy_duration(w)).sum::<Duration>();
    let before = busy();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy = busy() - before;
    for i in 0..20 {
        assert_eq!(guard(only_a.recv()).await.unwrap(), Chat::system(&format!("{i}")));
    }
    guard(client.close()).await;
    server.stop().await;
    busy
}

/// Large messages the application does not read are bounded by their
/// bytes, not only by their count: past `incoming_bytes` the client stops
/// reading its socket (the rest waits in the server's outbox and the
/// socket), and takes the rest, in order, as the application reads. A
/// message larger than the bound still goes through, alone.
#[tokio::test]
async fn waiting_messages_are_bounded_by_their_bytes() {
    const MESSAGES: usize = 40;
    let server = TestServer::<Chat>::start(Mode::Both).await;
    for (bytes, most) in [(100_000, 4), (1, 1)] {
        let options = fast().rooms(["a"]).incoming_capacity(1024).incoming_bytes(bytes);
        let (client, mut all) = Client::<Chat>::connect(&server.url(), options).unwrap();
        guard(client.join("a")).await.unwrap();
        let text = |i: usize| format!("{i:05}{}", "x".repeat(32 * 1024));
        for i in 0..MESSAGES {
            server.emit(Some("a"), &Chat::system(&text(i)));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!((1..=most).contains(&all.len()), "{bytes} B: {} messages of 32 KiB wait", all.len());
        for i in 0..MESSAGES {
            let (room, message) = guard(all.next()).await.unwrap();
            assert_eq!((room.as_deref(), message), (Some("a"), Chat::system(&text(i))), "{bytes} B: message {i}");
        }
        guard(client.close()).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn messages_sent_while_disconnected_are_sent_after_reconnecting() {
    for wire in [WireFormat::Json, WireFormat::Alepha] {
        let addr = free_addr().await;
        let (client, _incoming) = Client::<Chat>::connect(&url(addr), fast().wire(wire).room("a")).unwrap();
        guard(client.state_changes().wait_for(|s| s.is_error())).await.unwrap();
        for content in ["one", "two", "three"] {
            client.send("a", &say(content)).unwrap();
        }
        assert_eq!(client.queued(), 3);

        let mut server = TestServer::<Chat>::bind(addr, Mode::Both, TableLimits::UNLIMITED).await;
        let (id, _, _) = server.connected().await;
        for content in ["one", "two", "three"] {
            assert_eq!(server.handled().await, (id, "a".into(), content.into()), "{wire:?}: in order, in the room");
        }
        assert_eq!((client.queued(), client.dropped(), client.rejected()), (0, 0, 0));
        guard(client.close()).await;
    }
}

#[tokio::test]
async fn a_full_offline_queue_drops_the_oldest_and_counts() {
    let addr = free_addr().await;
    let (client, _incoming) = Client::<Chat>::connect(&url(addr), fast().room("a").queue_capacity(3)).unwrap();
    for n in 1..=5 {
        client.send("a", &say(&n.to_string())).unwrap();
    }
    assert_eq!((client.queued(), client.dropped()), (3, 2), "the two oldest were dropped");

    let mut server = TestServer::<Chat>::bind(addr, Mode::Both, TableLimits::UNLIMITED).await;
    let (id, _, _) = server.connected().await;
    for n in 3..=5 {
        assert_eq!(server.handled().await, (id, "a".into(), n.to_string()));
    }
    // A message for a room the client does not want is discarded, and
    // counted apart; the next one goes through.
    client.send("elsewhere", &say("nowhere")).unwrap();
    client.send("a", &say("6")).unwrap();
    assert_eq!(server.handled().await.2, "6");
    assert_eq!((client.dropped(), client.rejected()), (2, 1));
    guard(client.close()).await;
}

#[tokio::test]
async fn state_transitions_are_observable() {
    let mut server = TestServer::<Chat>::start(Mode::Both).await;
    let addr = server.addr;
    let (client, mut incoming) = Client::<Chat>::connect(&server.url(), fast().room("a")).unwrap();
    // The task has not run yet (single-threaded test runtime).
    assert!(matches!(client.state(), ConnectionState::Connecting { attempt: 0 }), "{:?}", client.state());
    let mut states = client.state_changes();
    let connected = guard(states.wait_for(|s| s.is_connected())).await.unwrap().clone();
    assert!(matches!(connected, ConnectionState::Connected { format: WireFormat::Json }), "{connected:?}");
    server.connected().await;

    // Server gone: an error, with the attempt count and the delay.
    server.stop().await;
    let error = guard(states.wait_for(|s| s.is_error())).await.unwrap().clone();
    let ConnectionState::Error { error, attempt, retry_in } = error else { unreachable!() };
    assert!(attempt >= 1 && retry_in <= Duration::from_millis(200), "{attempt} {retry_in:?}");
    assert!(matches!(error, ConnectionError::WebSocket(_)), "{error:?}");
    assert!(client.rooms().is_empty());

    // A server that accepts TCP but never answers the handshake holds the
    // client in `Connecting`.
    let listener = TcpListener::bind(addr).await.unwrap();
    let (held, _) = guard(listener.accept()).await.unwrap();
    let state = client.state();
    assert!(matches!(state, ConnectionState::Connecting { attempt } if attempt >= 1), "{state:?}");
    drop((held, listener));

    let mut server = TestServer::<Chat>::bind(addr, Mode::Both, TableLimits::UNLIMITED).await;
    guard(states.wait_for(|s| s.is_connected())).await.unwrap();
    assert_eq!(client.wait_connected().await, Some(WireFormat::Json));
    server.connected().await;

    guard(client.close()).await;
    assert!(matches!(client.state(), ConnectionState::Closed { error: None }));
    assert!(client.is_closed());
    assert_eq!(client.wait_connected().await, None);
    assert_eq!(guard(client.join("b")).await, Err(RoomError::Closed));
    assert!(guard(incoming.recv()).await.is_none());
}

#[tokio::test]
async fn a_client_out_of_retries_closes_with_the_last_error() {
    let addr = free_addr().await;
    let backoff = ReconnectPolicy {
        initial: Duration::from_millis(5).into(),
        max_retries: Some(2),
        ..ReconnectPolicy::default()
    };
    let (client, mut incoming) = Client::<Chat>::connect(&url(addr), ClientOptions::new().reconnect(backoff)).unwrap();
    let waiting = client.join("a");
    let state = guard(client.state_changes().wait_for(|s| s.is_closed())).await.unwrap().clone();
    let ConnectionState::Closed { error: Some(ConnectionError::WebSocket(error)) } = state else { panic!("{state:?}") };
    assert!(matches!(&*error, Error::Io(_)), "connection refused: {error:?}");
    assert_eq!(guard(waiting).await, Err(RoomError::Closed));
    assert!(guard(incoming.recv()).await.is_none());
    assert_eq!(client.send("a", &say("x")), Err(SendError::Closed));
}

// ---------------------------------------------------------------------------
// Misbehaving servers
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Answer the handshake with garbage.
    Garbage,
    /// Complete the handshake, then send a frame with a reserved opcode.
    BadFrame,
    /// Complete the handshake, then read nothing and send nothing.
    Silent,
    /// Complete the handshake on the roomwire JSON wire and answer pings,
    /// but never a join.
    Unanswering,
    /// A working server (Alepha wire, no rooms protocol).
    Fine,
    /// Complete the handshake (Alepha wire), then close with this code and
    /// reason.
    CloseWith(u16, &'static str),
    /// Answer the upgrade request with this HTTP status.
    Refuse(u16),
    /// Alepha wire: send a text frame that is not JSON, then a labelled
    /// message, then keep the connection open.
    NotJsonThenMessage,
    /// Alepha wire: this many labelled messages in one write.
    Burst(usize),
}

/// A server acting out `script`, one behaviour per accepted connection;
/// sends the index of each connection it accepts.
async fn scripted(script: Vec<Behaviour>) -> (SocketAddr, mpsc::UnboundedReceiver<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for (i, behaviour) in script.into_iter().enumerate() {
            let (stream, _) = listener.accept().await.unwrap();
            tx.send(i).unwrap();
            tokio::spawn(act(stream, behaviour));
        }
        // Keep the listener (and so the port) until the test ends.
        std::future::pending::<()>().await;
    });
    (addr, rx)
}

async fn act(mut stream: TcpStream, behaviour: Behaviour) {
    match behaviour {
        Behaviour::Garbage => {
            read_request(&mut stream).await;
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnope").await;
            std::future::pending::<()>().await;
        }
        Behaviour::BadFrame => {
            accept_by_hand(&mut stream).await;
            let _ = stream.write_all(&[0x83, 0x00]).await;
            std::future::pending::<()>().await;
        }
        Behaviour::Silent => {
            accept_by_hand(&mut stream).await;
            std::future::pending::<()>().await;
        }
        Behaviour::Unanswering => {
            let decision =
                |_: &roomwire_tokio::Request<'_>| Decision::accept_protocol(roomwire_core::wire::PROTOCOL_JSON);
            let (mut ws, _) = WebSocket::accept_with(stream, Config::default(), decision).await.unwrap();
            // `recv` answers pings; requests are read and ignored.
            while let Some(Ok(_)) = ws.recv().await {}
        }
        Behaviour::Fine => {
            let (mut ws, _) = WebSocket::accept(stream, Config::default()).await.unwrap();
            while let Some(Ok(_)) = ws.recv().await {}
        }
        Behaviour::CloseWith(code, reason) => {
            let (mut ws, _) = WebSocket::accept(stream, Config::default()).await.unwrap();
            ws.close(roomwire_core::CloseCode::from(code), reason).await.unwrap();
            while let Some(Ok(_)) = ws.recv().await {}
        }
        Behaviour::Refuse(status) => {
            read_request(&mut stream).await;
            let answer = format!("HTTP/1.1 {status} No\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(answer.as_bytes()).await;
            std::future::pending::<()>().await;
        }
        Behaviour::Burst(n) => {
            accept_by_hand(&mut stream).await;
            let mut frames = Vec::new();
            for i in 0..n {
                let text = format!(r#"{{"type":"system","message":"{i}","__alephaRoom":"a"}}"#);
                frames.extend_from_slice(&[0x81, text.len() as u8]);
                frames.extend_from_slice(text.as_bytes());
            }
            let _ = stream.write_all(&frames).await;
            std::future::pending::<()>().await;
        }
        Behaviour::NotJsonThenMessage => {
            let (mut ws, _) = WebSocket::accept(stream, Config::default()).await.unwrap();
            ws.send(roomwire_tokio::MessageRef::Text("not json")).await.unwrap();
            let labelled = r#"{"type":"system","message":"after","__alephaRoom":"a"}"#;
            ws.send(roomwire_tokio::MessageRef::Text(labelled)).await.unwrap();
            while let Some(Ok(_)) = ws.recv().await {}
        }
    }
}

/// Read an Upgrade request; its `Sec-WebSocket-Accept` value.
async fn read_request(stream: &mut TcpStream) -> [u8; 28] {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "client closed during the handshake");
        buf.extend_from_slice(&chunk[..n]);
        if let Some((request, _)) = handshake::parse_request(&buf, 8192).unwrap() {
            return request.accept_key();
        }
    }
}

/// Accept an Upgrade request by hand (101, no subprotocol).
async fn accept_by_hand(stream: &mut TcpStream) {
    let accept = read_request(stream).await;
    let mut out = [0u8; 512];
    let n = handshake::write_accept(&accept, None, &[], &mut out).unwrap();
    stream.write_all(&out[..n]).await.unwrap();
}

/// Options that find a silent server fast.
fn impatient() -> ClientOptions {
    let mut config = Config::default();
    config.core.keepalive_interval = Some(roomwire_core::Duration::from_millis(100));
    // A server that broke the protocol or went silent never answers a
    // close frame: do not wait the default 5 s for it.
    config.core.close_timeout = roomwire_core::Duration::from_millis(100);
    fast().config(config).request_timeout(Duration::from_millis(200))
}

#[tokio::test]
async fn a_misbehaving_server_makes_the_client_reconnect() {
    use Behaviour::*;
    let (addr, mut accepted) = scripted(vec![Garbage, BadFrame, Silent, Fine]).await;
    let (client, _incoming) = Client::<Chat>::connect(&url(addr), impatient().wire(WireFormat::Alepha)).unwrap();
    for i in 0..4 {
        assert_eq!(guard(accepted.recv()).await, Some(i), "a new connection after each failure");
    }
    assert_eq!(guard(client.wait_connected()).await, Some(WireFormat::Alepha));
    guard(client.close()).await;
}

/// The error a client with no retry gives up with, facing `behaviour`.
async fn give_up_on(behaviour: Behaviour, wire: WireFormat) -> ConnectionError {
    let (addr, _accepted) = scripted(vec![behaviour]).await;
    let backoff = ReconnectPolicy { max_retries: Some(0), ..ReconnectPolicy::default() };
    let (client, _incoming) =
        Client::<Chat>::connect(&url(addr), impatient().wire(wire).room("a").reconnect(backoff)).unwrap();
    let state = guard(client.state_changes().wait_for(|s| s.is_closed())).await.unwrap().clone();
    match state {
        ConnectionState::Closed { error: Some(error) } => error,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn each_kind_of_misbehaviour_is_reported() {
    let garbage = give_up_on(Behaviour::Garbage, WireFormat::Alepha).await;
    assert!(matches!(&garbage, ConnectionError::WebSocket(e) if matches!(**e, Error::Handshake(_))), "{garbage:?}");
    let bad = give_up_on(Behaviour::BadFrame, WireFormat::Alepha).await;
    assert!(matches!(&bad, ConnectionError::WebSocket(e) if matches!(**e, Error::Protocol(_))), "{bad:?}");
    let silent = give_up_on(Behaviour::Silent, WireFormat::Alepha).await;
    assert!(
        matches!(&silent, ConnectionError::WebSocket(e) if matches!(**e, Error::Timeout(Timeout::Keepalive))),
        "{silent:?}"
    );
    let unanswering = give_up_on(Behaviour::Unanswering, WireFormat::Json).await;
    assert!(matches!(unanswering, ConnectionError::RequestTimeout), "{unanswering:?}");
}

/// Answers that retrying cannot help stop a client even with the default,
/// unlimited policy: the error reaches the caller, and no second connection
/// is attempted (the core's `Ending::is_final`).
#[tokio::test]
async fn final_answers_stop_the_client_and_reach_the_caller() {
    for behaviour in [
        Behaviour::CloseWith(1008, "Room full"),
        Behaviour::CloseWith(1008, "Too many rooms"),
        Behaviour::CloseWith(4000, "kicked"),
        Behaviour::Refuse(403),
        Behaviour::Refuse(404),
    ] {
        let label = format!("{behaviour:?}");
        let (addr, mut accepted) = scripted(vec![behaviour, Behaviour::Fine, Behaviour::Fine]).await;
        let (client, _incoming) =
            Client::<Chat>::connect(&url(addr), ClientOptions::new().wire(WireFormat::Alepha).room("a")).unwrap();
        let state = guard(client.state_changes().wait_for(|s| s.is_closed())).await.unwrap().clone();
        let ConnectionState::Closed { error: Some(error) } = state else { panic!("{label}: {state:?}") };
        match (&behaviour, &error) {
            (Behaviour::CloseWith(code, reason), ConnectionError::ClosedByServer { code: Some(got), reason: why }) => {
                assert_eq!((u16::from(*got), why.as_str()), (*code, *reason), "{label}");
            }
            (Behaviour::Refuse(status), ConnectionError::WebSocket(e)) => assert!(
                matches!(&**e, Error::Handshake(handshake::HandshakeError::Rejected { status: s }) if s == status),
                "{label}: {e:?}"
            ),
            _ => panic!("{label}: {error:?}"),
        }
        assert_eq!(accepted.recv().await, Some(0));
        assert!(accepted.try_recv().is_err(), "{label}: a stopped client connected again");
    }
}

/// Endings that may pass (a restart, try again later) are retried.
#[tokio::test]
async fn passing_closes_are_retried() {
    let (addr, mut accepted) =
        scripted(vec![Behaviour::CloseWith(1013, "Try again later"), Behaviour::CloseWith(1012, ""), Behaviour::Fine])
            .await;
    let (client, _incoming) = Client::<Chat>::connect(&url(addr), fast().wire(WireFormat::Alepha).room("a")).unwrap();
    for i in 0..3 {
        assert_eq!(guard(accepted.recv()).await, Some(i));
    }
    guard(client.state_changes().wait_for(|s| matches!(s, ConnectionState::Connected { .. }))).await.unwrap();
}

/// On the Alepha wire a frame that is not JSON is dropped (as Alepha's
/// browser client does), and the connection goes on.
#[tokio::test]
async fn alepha_frames_that_are_not_json_are_dropped() {
    let (addr, mut accepted) = scripted(vec![Behaviour::NotJsonThenMessage]).await;
    let (client, mut incoming) =
        Client::<Chat>::connect(&url(addr), fast().wire(WireFormat::Alepha).room("a")).unwrap();
    let (room, message) = guard(incoming.next()).await.expect("a message");
    assert_eq!((room.as_deref(), message), (Some("a"), ChatIn::System { message: "after".into() }));
    assert!(client.state().is_connected(), "{:?}", client.state());
    assert_eq!(accepted.recv().await, Some(0));
    assert!(accepted.try_recv().is_err());
}

/// A burst larger than the application's queue, arriving while the
/// application is not reading: every message is kept (in the socket and
/// its buffers) until the application takes it, none dropped.
#[tokio::test]
async fn a_burst_beyond_the_incoming_queue_waits_for_the_application() {
    const BURST: usize = 3000;
    let (addr, _accepted) = scripted(vec![Behaviour::Burst(BURST)]).await;
    let (client, mut incoming) =
        Client::<Chat>::connect(&url(addr), fast().wire(WireFormat::Alepha).room("a").incoming_capacity(64)).unwrap();
    guard(client.state_changes().wait_for(|s| matches!(s, ConnectionState::Connected { .. }))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..BURST {
        let (_, message) = guard(incoming.next()).await.expect("a message");
        assert_eq!(message, ChatIn::System { message: i.to_string() }, "message {i}");
    }
}

// ---------------------------------------------------------------------------
// Setup errors
// ---------------------------------------------------------------------------

#[tokio::test]
async fn connect_refuses_bad_setups() {
    let connect = |url: &str, options| Client::<Chat>::connect(url, options).map(|_| ());
    assert!(matches!(connect("http://h", ClientOptions::new()), Err(ConnectError::InvalidUrl(_))));
    assert!(matches!(connect("ws://h/x#frag", ClientOptions::new()), Err(ConnectError::InvalidUrl(_))));
    assert!(connect("wss://h/x?token=1", ClientOptions::new()).is_ok(), "TLS and a query are fine");
    assert_eq!(connect("ws://h", ClientOptions::new().room("")), Err(ConnectError::InvalidRoom(String::new())));
    let many = (0..=roomwire_tokio::client::MAX_ROOMS).map(|i| i.to_string());
    assert_eq!(connect("ws://h", ClientOptions::new().rooms(many)), Err(ConnectError::TooManyRooms));
}

#[test]
fn handles_and_streams_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Client<Chat>>();
    send_sync::<ClientOptions>();
    send_sync::<ConnectionState>();
    send::<roomwire_tokio::client::Incoming<Chat>>();
}

#[test]
fn connect_needs_a_runtime() {
    assert_eq!(Client::<Chat>::connect("ws://h", ClientOptions::new()).map(|_| ()), Err(ConnectError::NoRuntime));
}

/// A channel whose messages can be falsy in JavaScript.
struct Counts;

impl Channel for Counts {
    const PATH: &'static str = "/ws/counts";
    type In<'a> = Option<u32>;
    type Out<'a> = Option<u32>;
}

/// On the Alepha wire a falsy message (`null`, `0`) would be read as the
/// whole frame: `send` refuses it at once, before it is queued; the
/// roomwire wire carries it.
#[tokio::test]
async fn a_falsy_message_is_refused_on_the_alepha_wire_when_sent() {
    let url = url(free_addr().await);
    let (alepha, _incoming) = Client::<Counts>::connect(&url, fast().wire(WireFormat::Alepha).room("a")).unwrap();
    for falsy in [None, Some(0)] {
        assert_eq!(alepha.send("a", &falsy), Err(SendError::FalsyOnAlepha), "{falsy:?}");
    }
    assert_eq!(alepha.send("a", &Some(3)), Ok(()));
    let (json, _incoming) = Client::<Counts>::connect(&url, fast().wire(WireFormat::Json).room("a")).unwrap();
    assert_eq!(json.send("a", &None), Ok(()));
}
