//! The roomwire-tokio room client, with default options, against a Node
//! `ws` server that serves a chat channel as Alepha's Node provider does
//! (`tests/alepha-node/server.js`): rooms from the query, `{roomId,
//! message}` frames, `__alephaRoom` labels, and `ws`'s default answer to
//! subprotocols, which echoes the first one offered.
//!
//! The client asks for the roomwire wire (JSON, the default, or postcard),
//! recognises the echoing server at the handshake by the probe it offers
//! first, and goes on over the Alepha wire: rooms in the query, messages
//! delivered, rooms restored after the server restarts, and a join on the
//! Alepha wire (a reconnect with the new rooms).
//!
//! Needs `node` and `npm ci` in `tests/alepha-node` (`scripts/test.sh` does
//! it). Without them the tests say so and pass, unless
//! `ROOMWIRE_REQUIRE_PEERS=1` (set by `scripts/test.sh`), where they fail.

use std::time::Duration;

use futures_util::StreamExt;
use roomwire_tests::alepha_node::NodeServer;
use roomwire_tests::chat::{Chat, ChatIn, Say};
use roomwire_tokio::client::{Client, ClientOptions, ConnectionState, Incoming};
use roomwire_tokio::roomwire_core::WireFormat;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(15);

fn rooms(client: &Client<Chat>) -> Vec<String> {
    client.rooms().iter().map(|r| r.as_str().to_owned()).collect()
}

async fn connected(client: &Client<Chat>) -> WireFormat {
    let mut states = client.state_changes();
    let state = timeout(LIMIT, states.wait_for(|s| matches!(s, ConnectionState::Connected { .. })))
        .await
        .expect("connected in time")
        .unwrap()
        .clone();
    match state {
        ConnectionState::Connected { format } => format,
        _ => unreachable!(),
    }
}

/// Waits until `client` has noticed the loss of its connection.
async fn disconnected(client: &Client<Chat>) {
    let mut states = client.state_changes();
    timeout(LIMIT, states.wait_for(|s| !matches!(s, ConnectionState::Connected { .. }))).await.unwrap().unwrap();
}

/// `from` says `text` in `room` until `to` receives it (the receiver's
/// connection may still be opening when the first copies leave); returns
/// who `to` heard it from.
async fn delivered(from: &Client<Chat>, to: &mut Incoming<Chat>, room: &str, text: &str) -> String {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        from.send(room, &Say { content: text.into() }).expect("send");
        match timeout(Duration::from_millis(300), to.next()).await {
            Ok(Some((got_room, ChatIn::Append { content, username }))) if content == text => {
                assert_eq!(got_room.as_deref(), Some(room), "labelled with the room");
                return username;
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("the receiver's stream ended"),
            Err(_) => assert!(tokio::time::Instant::now() < deadline, "{text:?} never arrived in {room}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_client_reaches_an_alepha_node_server_on_either_wire() {
    let Some(server) = NodeServer::start(0) else { return };
    for wire in [WireFormat::Json, WireFormat::Postcard] {
        let options = || ClientOptions::new().wire(wire).room("lobby");
        let (alice, mut alice_in) = Client::<Chat>::connect(&server.url(), options()).unwrap();
        let (bob, mut bob_in) = Client::<Chat>::connect(&server.url(), options()).unwrap();
        assert_eq!(connected(&alice).await, WireFormat::Alepha, "{wire:?}: the echoed probe means Alepha");
        assert_eq!(connected(&bob).await, WireFormat::Alepha);
        assert_eq!(rooms(&alice), ["lobby"], "{wire:?}");
        assert_eq!(alice.wire(), WireFormat::Alepha);

        delivered(&alice, &mut bob_in, "lobby", &format!("hi from alice on {wire:?}")).await;
        delivered(&bob, &mut alice_in, "lobby", &format!("hi from bob on {wire:?}")).await;
        // Replies go to the room except the sender: nothing of its own.
        while let Ok(Some((_, ChatIn::Append { content, .. }))) =
            timeout(Duration::from_millis(200), alice_in.next()).await
        {
            assert!(!content.contains("alice"), "alice received her own message: {content}");
        }
        alice.close().await;
        bob.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_survive_a_restart_and_joins_reconnect() {
    let Some(server) = NodeServer::start(0) else { return };
    let url = server.url();
    let (alice, mut alice_in) = Client::<Chat>::connect(&url, ClientOptions::new().room("lobby")).unwrap();
    let (bob, mut bob_in) = Client::<Chat>::connect(&url, ClientOptions::new().rooms(["lobby", "news"])).unwrap();
    connected(&alice).await;
    connected(&bob).await;
    delivered(&alice, &mut bob_in, "lobby", "before the restart").await;

    // The server dies and comes back on the same port: both clients
    // reconnect by themselves, on the Alepha wire, in the same rooms.
    let port = server.kill();
    disconnected(&alice).await;
    disconnected(&bob).await;
    let Some(_server) = NodeServer::start(port) else { return };
    connected(&alice).await;
    connected(&bob).await;
    assert_eq!(rooms(&bob), ["lobby", "news"]);
    delivered(&alice, &mut bob_in, "lobby", "after the restart").await;

    // Joining on the Alepha wire reconnects with the new room in the query.
    timeout(LIMIT, alice.join("news")).await.unwrap().unwrap();
    assert_eq!(rooms(&alice), ["lobby", "news"]);
    delivered(&bob, &mut alice_in, "news", "news for alice").await;
    delivered(&alice, &mut bob_in, "news", "news from alice").await;
    alice.close().await;
    bob.close().await;
}
