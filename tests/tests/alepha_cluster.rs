//! A roomwire node in an Alepha cluster: a roomwire server with the Redis
//! backplane on Alepha's wire and the Alepha-style Node server of
//! `tests/alepha-node` (which publishes and subscribes as Alepha's Redis
//! topic provider does) share one real redis-server and one room. Replies
//! and emits cross both ways, with their exclusions and labels, once each.

#[path = "../../adapter-tokio/tests/server_support/mod.rs"]
mod server_support;

use std::time::Duration;

use roomwire_redis::RedisBackplane;
use roomwire_tests::alepha_node::NodeServer;
use roomwire_tests::redis_server::RedisServer;
use roomwire_tokio::roomwire_core::cluster::ALEPHA_TOPIC;
use roomwire_tokio::server::Emit;
use serde_json::json;
use server_support::*;

/// POST Alepha's emit options to the Node server, which publishes them.
async fn node_emit(node: &NodeServer, options: serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = options.to_string();
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", node.port)).await.unwrap();
    let request = format!(
        "POST /emit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_roomwire_node_and_an_alepha_node_share_rooms_over_redis() {
    let Some(redis) = RedisServer::start() else { return };
    let Some(alepha) = NodeServer::start_with(0, Some(&redis.url())) else { return };
    let backplane = RedisBackplane::alepha(&redis.url()).unwrap();
    let mut rw = harness_with(move |b| b.backplane(backplane), |e| e).await;
    let (mut alice, e_alice) = rw.connect("/ws/chat?roomId=r&token=alice").await;
    let addr = format!("127.0.0.1:{}", alepha.port).parse().unwrap();
    let (mut bob, _) = try_connect(addr, "/ws/chat?roomId=r&user=bob", &[], &[]).await.unwrap();
    let (mut carol, _) = try_connect(addr, "/ws/chat?roomId=r&user=carol", &[], &[]).await.unwrap();
    tokio::time::timeout(LIMIT, async {
        while redis.subscribers(ALEPHA_TOPIC) != 2 || !rw.server.backplane_stats().unwrap().connected {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("both nodes on the Alepha topic");

    // roomwire → Alepha: a reply except the sender.
    say(&mut alice, "r", "from roomwire").await;
    let from_alice = json!({"type": "append", "content": "from roomwire", "username": "alice", "__alephaRoom": "r"});
    assert_eq!(recv_json(&mut bob).await, from_alice);
    assert_eq!(recv_json(&mut carol).await, from_alice);
    // Alepha → roomwire: the Node server's reply, except its sender.
    say(&mut bob, "r", "from alepha").await;
    let from_bob = json!({"type": "append", "content": "from alepha", "username": "bob", "__alephaRoom": "r"});
    assert_eq!(recv_json(&mut alice).await, from_bob);
    assert_eq!(recv_json(&mut carol).await, from_bob);
    // Alepha's emit options: a user on the roomwire node, a room minus a
    // user across both.
    node_emit(&alepha, json!({"userIds": ["alice"], "message": {"type": "system", "message": "to alice"}})).await;
    expect_marker(&mut alice, "to alice").await;
    node_emit(
        &alepha,
        json!({"roomIds": ["r"], "exceptUserIds": ["carol"], "message": {"type": "system", "message": "not carol"}}),
    )
    .await;
    let not_carol = json!({"type": "system", "message": "not carol", "__alephaRoom": "r"});
    assert_eq!(recv_json(&mut alice).await, not_carol);
    assert_eq!(recv_json(&mut bob).await, not_carol);
    // roomwire's emit reaches the Alepha node's users, and its own once.
    rw.server
        .emit::<Chat>(&Emit::to_room("r").except_user("bob"), &ChatIn::System { message: "not bob".into() })
        .unwrap();
    let not_bob = json!({"type": "system", "message": "not bob", "__alephaRoom": "r"});
    assert_eq!(recv_json(&mut alice).await, not_bob);
    assert_eq!(recv_json(&mut carol).await, not_bob);
    // Nothing else arrived anywhere: fences through the same paths.
    node_emit(&alepha, json!({"message": {"type": "system", "message": "fence"}})).await;
    for ws in [&mut alice, &mut bob, &mut carol] {
        expect_marker(ws, "fence").await;
    }
    rw.mark(&e_alice.connection_id, "end");
    expect_marker(&mut alice, "end").await;
    let stats = rw.server.backplane_stats().unwrap();
    assert_eq!(stats.invalid, 0);
    assert_eq!(stats.received, 4, "bob's reply, two Node emits, the fence; not its own: {stats:?}");
}
