//! Three roomwire nodes as separate processes (`rw_node`) on one real
//! redis-server: a node killed (SIGKILL) in the middle of a room's traffic
//! costs its own connections and nothing else: the other nodes' members
//! get every message, in order, once; Redis drops the dead node's
//! subscriptions; a node started again on its port serves the room again.

#[path = "../../adapter-tokio/tests/server_support/mod.rs"]
mod server_support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use roomwire_tests::redis_server::RedisServer;
use roomwire_tokio::roomwire_core::cluster::Topic;
use server_support::*;

/// A node process, killed on drop.
struct NodeProcess {
    child: Child,
    addr: SocketAddr,
}

impl NodeProcess {
    fn start(redis: &RedisServer, port: u16) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rw_node"))
            .args(["--redis", &redis.url(), "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rw_node");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("rw_node printed nothing").unwrap();
        let port: u16 = first.strip_prefix("listening on ").expect(&first).parse().unwrap();
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        Self { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn join(node: &NodeProcess, room: &str) -> Client {
    try_connect(node.addr, &format!("/ws/chat?roomId={room}"), &[], &[]).await.expect("connect").0
}

async fn subscribers_become(redis: &RedisServer, topic: &str, n: usize) {
    tokio::time::timeout(LIMIT, async {
        while redis.subscribers(topic) != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{topic}: {} subscribers, not {n}", redis.subscribers(topic)));
}

/// The contents of the next `n` appends, in arrival order.
async fn appends(ws: &mut Client, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    for _ in 0..n {
        got.push(recv_json(ws).await["content"].as_str().unwrap().to_owned());
    }
    got
}

#[tokio::test]
async fn a_node_killed_mid_traffic_costs_only_its_own_connections() {
    let Some(redis) = RedisServer::start() else { return };
    let a = NodeProcess::start(&redis, 0);
    let mut b = NodeProcess::start(&redis, 0);
    let c = NodeProcess::start(&redis, 0);
    let topic = Topic::Room { path: "/ws/chat", room: "r" }.to_string();
    let mut sender = join(&a, "r").await;
    let mut on_a = join(&a, "r").await;
    let mut on_b = join(&b, "r").await;
    let mut on_c = join(&c, "r").await;
    subscribers_become(&redis, &topic, 3).await;

    let expected: Vec<String> = (0..300).map(|i| i.to_string()).collect();
    for (i, line) in expected.iter().enumerate() {
        say(&mut sender, "r", line).await;
        if i == 100 {
            b.kill();
        }
    }
    assert_eq!(appends(&mut on_c, 300).await, expected, "c: every message, in order");
    assert_eq!(appends(&mut on_a, 300).await, expected, "a: every message, in order");
    // b's client lost its connection without a close frame.
    assert_eq!(closed_with(&mut on_b).await, None);
    subscribers_become(&redis, &topic, 2).await;

    // b again, on the same port: its new member hears the room again.
    let port = b.addr.port();
    let b = NodeProcess::start(&redis, port);
    let mut again = join(&b, "r").await;
    subscribers_become(&redis, &topic, 3).await;
    say(&mut sender, "r", "after").await;
    for ws in [&mut again, &mut on_a, &mut on_c] {
        assert_eq!(appends(ws, 1).await, ["after"]);
    }
    // Once each, and never to the sender: a fence from c comes next
    // everywhere else.
    say(&mut on_c, "r", "fence").await;
    for ws in [&mut sender, &mut on_a, &mut again] {
        assert_eq!(appends(ws, 1).await, ["fence"]);
    }
}

async fn counter(node: &NodeProcess, room: &str) -> Client {
    try_connect(node.addr, &format!("/ws/counter?roomId={room}"), &[], &[]).await.expect("connect").0
}

/// Read counts until one shows `value` and `members` (a takeover included).
async fn count_becomes(ws: &mut Client, value: u64, members: usize) {
    let want = serde_json::json!({"type": "count", "value": value, "members": members});
    recv_json_until(ws, &want, Duration::from_secs(30)).await;
}

async fn inc(ws: &mut Client, by: u32) {
    send_text(ws, &serde_json::json!({"type": "inc", "by": by}).to_string()).await;
}

/// The demo's counter room on three node processes: one owner, members on
/// every node sharing its counter; the owner killed (SIGKILL): the room
/// moves to another node within the claim's lifetime, with a new counter at
/// 0 (nothing survives: the demo stores nothing), and the members of the
/// other nodes go on in it without reconnecting.
#[tokio::test]
async fn a_stateful_room_has_one_owner_and_moves_when_it_is_killed() {
    let Some(redis) = RedisServer::start() else { return };
    let mut a = NodeProcess::start(&redis, 0);
    let b = NodeProcess::start(&redis, 0);
    let c = NodeProcess::start(&redis, 0);
    let mut on_a = counter(&a, "hall").await;
    count_becomes(&mut on_a, 0, 1).await;
    // a took the room (the first join): the claim names a's tag.
    let key = roomwire_tokio::roomwire_core::cluster::room_owner_key("/ws/counter", "hall").to_string();
    let owner_a = redis.get(&key).expect("the room has an owner");
    let mut on_b = counter(&b, "hall").await;
    let mut on_c = counter(&c, "hall").await;
    count_becomes(&mut on_c, 0, 3).await;
    inc(&mut on_a, 1).await;
    inc(&mut on_b, 10).await;
    inc(&mut on_c, 100).await;
    for ws in [&mut on_a, &mut on_b, &mut on_c] {
        count_becomes(ws, 111, 3).await;
    }
    assert_eq!(redis.get(&key).as_deref(), Some(owner_a.as_str()), "still one owner");

    a.kill();
    // b or c takes the room once a's claim expires; its members join it
    // again (a new counter) and the dead node's member is gone.
    count_becomes(&mut on_b, 0, 2).await;
    count_becomes(&mut on_c, 0, 2).await;
    let owner = redis.get(&key).expect("a new owner");
    assert_ne!(owner, owner_a);
    inc(&mut on_b, 5).await;
    inc(&mut on_c, 2).await;
    count_becomes(&mut on_b, 7, 2).await;
    count_becomes(&mut on_c, 7, 2).await;
    // The emptied room is given up: the next join anywhere starts at 0.
    drop((on_b, on_c));
    tokio::time::timeout(LIMIT, async {
        while redis.get(&key).is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the emptied room's claim is given up");
    let mut again = counter(&c, "hall").await;
    count_becomes(&mut again, 0, 1).await;
}
