//! The room client against the room server (`roomwire_tokio::server`) over
//! real TCP on loopback, on both wires: the seed's chat handler (reply
//! `append` to the sender's room, except the sender, `username` = user id
//! else connection id).
//!
//! Every wait is bounded by a guard timeout; no test asserts on timing.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use roomwire_tokio::client::{Client, ClientOptions, ConnectionError, ReconnectPolicy};
use roomwire_tokio::roomwire_core::{self, RoomId, WireFormat};
use roomwire_tokio::server::{ConnectEvent, Emit, Endpoint, HandlerResult, Reply, Server};
use roomwire_tokio::{CloseCode, ConnectionState};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------
// Channels: the server's types may borrow, the client's are owned
// ---------------------------------------------------------------------------

/// Client → server, as the server reads it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChatOut<'a> {
    #[serde(borrow)]
    pub content: Cow<'a, str>,
}

/// Client → server, as the client sends it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Say {
    pub content: String,
}

/// Server → client: the seed's union (internally tagged: JSON wires only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ChatIn {
    Append { content: String, username: String },
    System { message: String },
}

/// Server → client, externally tagged: every wire, postcard included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AnyIn {
    Append { content: String, username: String },
    System { message: String },
}

roomwire_core::channel! {
    /// The seed's chat, server side.
    pub struct ServerChat { path: "/ws/chat", in: ChatIn, out: ChatOut<'a> }
}
roomwire_core::channel! {
    /// The seed's chat, client side.
    pub struct Chat { path: "/ws/chat", in: ChatIn, out: Say }
}
roomwire_core::channel! {
    /// A chat for every wire, server side.
    pub struct ServerAny { path: "/ws/any", in: AnyIn, out: ChatOut<'a> }
}
roomwire_core::channel! {
    /// A chat for every wire, client side.
    pub struct AnyChat { path: "/ws/any", in: AnyIn, out: Say }
}

fn say(content: &str) -> Say {
    Say { content: content.into() }
}

fn room(name: &str) -> Option<RoomId> {
    Some(RoomId::new(name).unwrap())
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

async fn guard<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), future).await.expect("guard timeout: the test hung")
}

fn fast() -> ClientOptions {
    ClientOptions::new().reconnect(ReconnectPolicy {
        initial: Duration::from_millis(20).into(),
        max: Duration::from_millis(200).into(),
        ..ReconnectPolicy::default()
    })
}

/// The room server on loopback, with its connect events.
struct Running {
    server: Server,
    addr: SocketAddr,
    connects: mpsc::UnboundedReceiver<ConnectEvent>,
    /// (connection id, room, content) of each message handled on `/ws/chat`.
    handled: mpsc::UnboundedReceiver<(String, String, String)>,
    serving: JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn start(addr: SocketAddr) -> Self {
        let (connect_tx, connects) = mpsc::unbounded_channel();
        let (handled_tx, handled) = mpsc::unbounded_channel();
        let chat = Endpoint::<ServerChat>::new(move |ctx| {
            let handled = handled_tx.clone();
            Box::pin(async move {
                let seen = (ctx.connection_id().to_owned(), ctx.room_id().to_owned(), ctx.message.content.to_string());
                let _ = handled.send(seen);
                let username = ctx.user_id().unwrap_or(ctx.connection_id()).to_owned();
                let line = ChatIn::Append { content: ctx.message.content.to_string(), username };
                ctx.reply_with(&line, &Reply::new().except_self())?;
                HandlerResult::Ok(())
            })
        });
        let any = Endpoint::<ServerAny>::new(|ctx| {
            Box::pin(async move {
                let username = ctx.user_id().unwrap_or(ctx.connection_id()).to_owned();
                let line = AnyIn::Append { content: ctx.message.content.to_string(), username };
                ctx.reply_with(&line, &Reply::new().except_self())?;
                HandlerResult::Ok(())
            })
        });
        let server = Server::builder()
            .resolve_user(|handshake| {
                let user = handshake.bearer_token().map(str::to_owned);
                async move { user }
            })
            .endpoint(chat)
            .endpoint(any)
            .on_connect(move |event| drop(connect_tx.send(event.clone())))
            .build()
            .expect("valid endpoints");
        let listener = TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let serving = tokio::spawn({
            let server = server.clone();
            async move { server.serve(listener).await }
        });
        Self { server, addr, connects, handled, serving }
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    async fn connected(&mut self) -> ConnectEvent {
        guard(self.connects.recv()).await.expect("server gone")
    }

    /// The wire and rooms of connection `id`.
    fn connection(&self, id: &str) -> (WireFormat, Vec<String>) {
        let info = self.server.connection(id).expect("connection open");
        (info.wire, info.rooms)
    }

    /// Graceful shutdown; the port is free when this returns.
    async fn stop(self) {
        self.server.shutdown().await;
        let _ = guard(self.serving).await;
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// Alice (anonymous) and Bob (`Authorization: Bearer bob`) chat in a room.
async fn chat_through_the_server(wire: WireFormat) {
    let mut server = Running::start("127.0.0.1:0".parse().unwrap()).await;
    let (alice, mut alice_in) = Client::<Chat>::connect(&server.url(), fast().wire(wire).room("lobby")).unwrap();
    guard(alice.join("lobby")).await.unwrap();
    let alice_id = server.connected().await.connection_id;
    assert!(alice_id.starts_with("ws-"), "{alice_id}");
    assert_eq!(server.connection(&alice_id), (wire, vec!["lobby".to_string()]));
    let bob_options = fast().wire(wire).room("lobby").header("Authorization", "Bearer bob");
    let (bob, mut bob_in) = Client::<Chat>::connect(&server.url(), bob_options).unwrap();
    guard(bob.join("lobby")).await.unwrap();
    let bob_event = server.connected().await;
    assert_eq!(bob_event.user_id.as_deref(), Some("bob"));

    alice.send("lobby", &say("hello bob")).unwrap();
    let expected = ChatIn::Append { content: "hello bob".into(), username: alice_id.clone() };
    assert_eq!(guard(bob_in.recv()).await.unwrap(), (room("lobby"), expected), "{wire:?}");
    bob.send("lobby", &say("hi alice")).unwrap();
    let expected = ChatIn::Append { content: "hi alice".into(), username: "bob".into() };
    assert_eq!(guard(alice_in.recv()).await.unwrap(), (room("lobby"), expected), "{wire:?}");

    // Neither got their own line back: a message to one connection, which
    // is unlabelled, is the next thing each receives.
    for (id, incoming) in [(&alice_id, &mut alice_in), (&bob_event.connection_id, &mut bob_in)] {
        let marker = ChatIn::System { message: format!("only {id}") };
        assert_eq!(server.server.emit::<ServerChat>(&Emit::to_connection(id.as_str()), &marker).unwrap(), 1);
        assert_eq!(guard(incoming.recv()).await.unwrap(), (None, marker), "{wire:?}");
    }
    guard(alice.close()).await;
    guard(bob.close()).await;
    server.stop().await;
}

#[tokio::test]
async fn the_client_chats_through_the_server_on_the_alepha_wire() {
    chat_through_the_server(WireFormat::Alepha).await;
}

#[tokio::test]
async fn the_client_chats_through_the_server_on_the_roomwire_wire() {
    chat_through_the_server(WireFormat::Json).await;
}

#[tokio::test]
async fn alepha_and_postcard_clients_share_a_room() {
    let mut server = Running::start("127.0.0.1:0".parse().unwrap()).await;
    let (alice, mut alice_in) =
        Client::<AnyChat>::connect(&server.url(), fast().wire(WireFormat::Alepha).room("lobby")).unwrap();
    guard(alice.join("lobby")).await.unwrap();
    let alice_id = server.connected().await.connection_id;
    let (bob, mut bob_in) =
        Client::<AnyChat>::connect(&server.url(), fast().wire(WireFormat::Postcard).room("lobby")).unwrap();
    guard(bob.join("lobby")).await.unwrap();
    let bob_id = server.connected().await.connection_id;
    assert_eq!(server.connection(&alice_id).0, WireFormat::Alepha);
    assert_eq!(server.connection(&bob_id).0, WireFormat::Postcard);

    alice.send("lobby", &say("from json")).unwrap();
    let expected = AnyIn::Append { content: "from json".into(), username: alice_id.clone() };
    assert_eq!(guard(bob_in.recv()).await.unwrap(), (room("lobby"), expected));
    bob.send("lobby", &say("from postcard")).unwrap();
    let expected = AnyIn::Append { content: "from postcard".into(), username: bob_id.clone() };
    assert_eq!(guard(alice_in.recv()).await.unwrap(), (room("lobby"), expected));

    let news = AnyIn::System { message: "news".into() };
    assert_eq!(server.server.emit::<ServerAny>(&Emit::to_room("lobby"), &news).unwrap(), 2);
    assert_eq!(guard(alice_in.recv()).await.unwrap(), (room("lobby"), news.clone()));
    assert_eq!(guard(bob_in.recv()).await.unwrap(), (room("lobby"), news));
    guard(alice.close()).await;
    guard(bob.close()).await;
    server.stop().await;
}

#[tokio::test]
async fn joining_and_leaving_on_each_wire() {
    let mut server = Running::start("127.0.0.1:0".parse().unwrap()).await;

    // roomwire wire: requests on the same connection.
    let (client, mut incoming) = Client::<Chat>::connect(&server.url(), fast().room("a")).unwrap();
    guard(client.join("a")).await.unwrap();
    let id = server.connected().await.connection_id;
    guard(client.join("b")).await.unwrap();
    assert_eq!(server.connection(&id), (WireFormat::Json, vec!["a".to_string(), "b".to_string()]));
    let line = ChatIn::System { message: "to b".into() };
    server.server.emit::<ServerChat>(&Emit::to_room("b"), &line).unwrap();
    assert_eq!(guard(incoming.recv()).await.unwrap(), (room("b"), line));
    guard(client.leave("a")).await.unwrap();
    assert_eq!(server.connection(&id).1, ["b"]);
    assert!(server.connects.try_recv().is_err(), "no reconnection on the roomwire wire");
    guard(client.close()).await;

    // Alepha wire: a new connection with the new rooms.
    let (client, _incoming) =
        Client::<Chat>::connect(&server.url(), fast().wire(WireFormat::Alepha).room("a")).unwrap();
    let first = server.connected().await;
    assert_eq!(first.rooms, ["a"]);
    guard(client.join("b")).await.unwrap();
    let second = server.connected().await;
    assert_ne!(second.connection_id, first.connection_id);
    assert_eq!(second.rooms, ["a", "b"]);
    assert!(server.server.connection(&first.connection_id).is_none(), "the first connection is gone");
    guard(client.close()).await;
    server.stop().await;
}

#[tokio::test]
async fn the_client_comes_back_after_a_server_restart() {
    for wire in [WireFormat::Json, WireFormat::Alepha] {
        let mut server = Running::start("127.0.0.1:0".parse().unwrap()).await;
        let addr = server.addr;
        // A steady first delay: the state seen after the shutdown is the
        // lost connection's, not a later refused attempt's.
        let steady = ReconnectPolicy {
            initial: Duration::from_millis(100).into(),
            jitter_percent: 0,
            ..ReconnectPolicy::default()
        };
        let (alice, _alice_in) =
            Client::<Chat>::connect(&server.url(), ClientOptions::new().reconnect(steady).wire(wire).room("a"))
                .unwrap();
        guard(alice.join("b")).await.unwrap();
        server.connected().await;

        let mut states = alice.state_changes();
        server.stop().await;
        let state = guard(states.wait_for(|s| s.is_error())).await.unwrap().clone();
        let Some(ConnectionError::ClosedByServer { code, reason }) = state.error() else { panic!("{state:?}") };
        assert_eq!((*code, reason.as_str()), (Some(CloseCode::Away), "Server shutting down"), "{wire:?}");

        // Sent while the server is down: delivered after the reconnection,
        // once the rooms are restored.
        alice.send("b", &say("while you were away")).unwrap();
        let mut server = Running::start(addr).await;
        let (id, in_room, content) = guard(server.handled.recv()).await.unwrap();
        assert_eq!((in_room.as_str(), content.as_str()), ("b", "while you were away"), "{wire:?}");
        guard(alice.join("a")).await.unwrap();
        guard(alice.join("b")).await.unwrap();
        assert!(matches!(alice.state(), ConnectionState::Connected { .. }));
        assert_eq!(server.connection(&id), (wire, vec!["a".to_string(), "b".to_string()]), "{wire:?}: rooms restored");
        guard(alice.close()).await;
        server.stop().await;
    }
}

/// The seed's chat, client side, with the checks Alepha's schema would
/// make: no empty message, rooms named `lobby…`.
struct StrictChat;

impl roomwire_core::channel::Channel for StrictChat {
    const PATH: &'static str = "/ws/chat";
    const ROOM_ID: roomwire_core::channel::RoomIdRule = roomwire_core::channel::RoomIdRule::Pattern("lobby*");
    type In<'a> = ChatIn;
    type Out<'a> = Say;

    fn validate(message: &Say) -> Result<(), &'static str> {
        if message.content.is_empty() { Err("content must not be empty") } else { Ok(()) }
    }
}

/// Alepha's client refuses a message its channel's schema refuses:
/// `send` fails with "Message validation failed: …" and nothing is sent or
/// queued; a room the channel does not allow is refused the same way.
#[tokio::test]
async fn typed_send_validates_before_anything_is_sent() {
    use roomwire_tokio::client::SendError;
    let mut server = Running::start("127.0.0.1:0".parse().unwrap()).await;
    for wire in [WireFormat::Alepha, WireFormat::Json] {
        let (client, _incoming) =
            Client::<StrictChat>::connect(&server.url(), fast().wire(wire).room("lobby")).unwrap();
        guard(client.join("lobby")).await.unwrap();
        server.connected().await;
        let refused = client.send("lobby", &say("")).unwrap_err();
        assert_eq!(refused, SendError::Invalid("content must not be empty"));
        assert_eq!(refused.to_string(), "Message validation failed: content must not be empty");
        assert_eq!(client.send("kitchen", &say("hi")), Err(SendError::InvalidRoomId), "not a lobby");
        assert_eq!(client.send("", &say("hi")), Err(SendError::InvalidRoomId));
        // The Alepha wire's implicit room is never checked against the
        // rule (as on the server): accepted, then discarded at its turn as
        // a room this client is not in.
        let default = client.send("default", &say("to default"));
        assert_eq!(default.is_ok(), wire == WireFormat::Alepha, "{wire:?}: {default:?}");
        // The next message the server handles is the valid one.
        client.send("lobby", &say("valid")).unwrap();
        let (_, room, content) = guard(server.handled.recv()).await.unwrap();
        assert_eq!((room.as_str(), content.as_str()), ("lobby", "valid"), "{wire:?}");
        let discarded = u64::from(wire == WireFormat::Alepha);
        assert_eq!(client.rejected(), discarded, "refused sends were never queued");
        guard(client.close()).await;
    }
    server.stop().await;
}

roomwire_core::channel! {
    /// The seed's chat for every wire, client side, fixed to postcard.
    pub struct PostcardChat { path: "/ws/any", wires: Wires::POSTCARD, in: AnyIn, out: Say }
}

/// A channel that fixes its wire is spoken on that wire whatever the
/// options ask, from before the first connection on.
#[tokio::test]
async fn a_channel_with_one_wire_is_spoken_on_it() {
    let mut server = Running::start("127.0.0.1:0".parse().unwrap()).await;
    let (client, _incoming) =
        Client::<PostcardChat>::connect(&server.url(), fast().wire(WireFormat::Json).room("lobby")).unwrap();
    assert_eq!(client.wire(), WireFormat::Postcard, "before any connection");
    guard(client.join("lobby")).await.unwrap();
    let event = server.connected().await;
    assert_eq!(server.connection(&event.connection_id), (WireFormat::Postcard, vec!["lobby".to_string()]));
    guard(client.close()).await;
    server.stop().await;
}
