//! The Redis backplane against a real `redis-server` (and a real
//! three-master Redis Cluster): servers on one Redis serve the same rooms,
//! users and connections, exactly once and in order; a node hears only the
//! rooms it has members in (Redis's own subscriber counts say so); a Redis
//! killed and restarted, or paused, costs the cross-node messages of the
//! outage (dropped and counted, never duplicated) and nothing else.
//!
//! The servers are in this process, each with its own Redis connection
//! (Redis sees them as separate nodes); `redis_nodes.rs` runs them as
//! separate processes.

#[path = "../../adapter-tokio/tests/server_support/mod.rs"]
mod server_support;

use std::time::Duration;

use roomwire_redis::RedisBackplane;
use roomwire_tests::redis_server::{RedisCluster, RedisServer};
use roomwire_tokio::CloseCode;
use roomwire_tokio::backplane::BackplaneStats;
use roomwire_tokio::roomwire_core::cluster::Topic;
use roomwire_tokio::server::Emit;
use serde_json::json;
use server_support::*;

async fn node(backplane: RedisBackplane) -> Harness {
    let harness = harness_with(move |b| b.backplane(backplane), |e| e).await;
    connected(&harness).await;
    harness
}

async fn connected(h: &Harness) {
    tokio::time::timeout(LIMIT, async {
        while !h.server.backplane_stats().unwrap().connected {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the backplane did not connect to Redis");
}

/// Wait until `n` subscribers hear `topic`, as Redis counts them.
async fn heard_by(count: impl Fn(&str) -> usize, topic: Topic<'_>, n: usize) {
    let name = topic.to_string();
    tokio::time::timeout(LIMIT, async {
        while count(&name) != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{name} heard by {} subscribers, not {n}", count(&name)));
}

fn room(room: &str) -> Topic<'_> {
    Topic::Room { path: "/ws/chat", room }
}

fn system(message: &str) -> ChatIn {
    ChatIn::System { message: message.into() }
}

#[tokio::test]
async fn every_target_kind_crosses_nodes_once_over_redis() {
    let Some(redis) = RedisServer::start() else { return };
    let mut a = node(RedisBackplane::new(&redis.url()).unwrap()).await;
    let mut b = node(RedisBackplane::new(&redis.url()).unwrap()).await;
    let (mut ca, ea) = a.connect("/ws/chat?roomId=r").await;
    let (mut alice, e_alice) = b.connect("/ws/chat?roomId=r&token=alice").await;
    let (mut bob, e_bob) = b.connect("/ws/chat?roomIds=r,s&token=bob").await;
    let subs = |t: &str| redis.subscribers(t);
    heard_by(subs, room("r"), 2).await;
    heard_by(subs, room("s"), 1).await;
    heard_by(subs, Topic::User { path: "/ws/chat", user: "alice" }, 1).await;

    // A client's reply on a reaches b's members with the sender's id.
    say(&mut ca, "r", "hello").await;
    let hello = json!({"type": "append", "content": "hello", "username": ea.connection_id, "__alephaRoom": "r"});
    assert_eq!(recv_json(&mut alice).await, hello);
    assert_eq!(recv_json(&mut bob).await, hello);
    // Users, connections, exclusions, the whole channel, two rooms at once.
    a.server.emit::<Chat>(&Emit::to_user("alice"), &system("to alice")).unwrap();
    a.server.emit::<Chat>(&Emit::to_connection(e_bob.connection_id.clone()), &system("to bob")).unwrap();
    a.server.emit::<Chat>(&Emit::to_room("r").except_user("bob"), &system("not bob")).unwrap();
    a.server
        .emit::<Chat>(&Emit::to_room("r").room("s").except_connection(e_alice.connection_id.clone()), &system("r+s"))
        .unwrap();
    a.server.emit::<Chat>(&Emit::new(), &system("everyone")).unwrap();
    let in_r = |m: &str| json!({"type": "system", "message": m, "__alephaRoom": "r"});
    expect_marker(&mut alice, "to alice").await;
    assert_eq!(recv_json(&mut alice).await, in_r("not bob"));
    expect_marker(&mut alice, "everyone").await;
    expect_marker(&mut bob, "to bob").await;
    assert_eq!(recv_json(&mut bob).await, in_r("r+s"));
    expect_marker(&mut bob, "everyone").await;
    // a's own member got the room emits and the channel-wide one, once.
    assert_eq!(recv_json(&mut ca).await, in_r("not bob"));
    assert_eq!(recv_json(&mut ca).await, in_r("r+s"));
    expect_marker(&mut ca, "everyone").await;
    for (h, id, ws) in [(&b, &e_alice.connection_id, &mut alice), (&b, &e_bob.connection_id, &mut bob)] {
        h.mark(id, "end");
        expect_marker(ws, "end").await;
    }
    // Close across nodes.
    assert!(a.server.close_connection(&e_bob.connection_id, CloseCode::from(4000), "bye"));
    assert_eq!(closed_with(&mut bob).await, Some((Some(CloseCode::from(4000)), "bye".into())));
    b.next_disconnect().await;
}

#[tokio::test]
async fn a_node_hears_only_rooms_it_has_members_in_and_order_holds() {
    let Some(redis) = RedisServer::start() else { return };
    let a = node(RedisBackplane::new(&redis.url()).unwrap()).await;
    let mut b = node(RedisBackplane::new(&redis.url()).unwrap()).await;
    let mut c = node(RedisBackplane::new(&redis.url()).unwrap()).await;
    let (mut member, e) = b.connect("/ws/chat?roomIds=x,y").await;
    let (_quiet, _) = c.connect("/ws/chat?roomId=elsewhere").await;
    let subs = |t: &str| redis.subscribers(t);
    heard_by(subs, room("x"), 1).await;
    heard_by(subs, room("y"), 1).await;
    // Copies are expected on topics heard for a moment (SUBSCRIBE_GRACE).
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..300 {
        let target =
            if i % 3 == 0 { Emit::to_room("x").room("y") } else { Emit::to_room(if i % 2 == 0 { "x" } else { "y" }) };
        a.server.emit::<Chat>(&target, &system(&i.to_string())).unwrap();
    }
    for i in 0..300 {
        let got = recv_json(&mut member).await;
        assert_eq!(got["message"], i.to_string(), "in publish order, once each");
    }
    b.mark(&e.connection_id, "end");
    expect_marker(&mut member, "end").await;
    let (sb, sc) = (b.server.backplane_stats().unwrap(), c.server.backplane_stats().unwrap());
    // The 100 two-room messages were heard twice each, as expected, and
    // delivered once.
    assert_eq!((sb.received, sb.duplicates, sb.stale), (300, 0, 0));
    assert_eq!(sc.received, 0, "c has no member of x or y and heard none of it");
    drop(member);
    b.next_disconnect().await;
    heard_by(subs, room("x"), 0).await;
    heard_by(subs, room("y"), 0).await;
}

#[tokio::test]
async fn queries_span_the_nodes_over_redis() {
    let Some(redis) = RedisServer::start() else { return };
    let mut a = node(RedisBackplane::new(&redis.url()).unwrap()).await;
    let mut b = node(RedisBackplane::new(&redis.url()).unwrap()).await;
    let (_a1, _) = a.connect("/ws/chat?roomId=r&token=alice").await;
    let (_b1, _) = b.connect("/ws/chat?roomId=r&token=alice").await;
    let (_b2, _) = b.connect("/ws/chat?roomId=s").await;
    let subs = |t: &str| redis.subscribers(t);
    heard_by(subs, room("r"), 2).await;
    heard_by(subs, Topic::User { path: "/ws/chat", user: "alice" }, 2).await;
    heard_by(subs, Topic::Channel { path: "/ws/chat" }, 2).await;
    let in_r = a.server.cluster_room_connections("r").await;
    assert!(in_r.complete);
    assert_eq!(in_r.connections.len(), 2);
    assert_eq!(b.server.cluster_user_connections("alice").await.connections.len(), 2);
    let all = a.server.cluster_connections().await;
    assert!(all.complete);
    assert_eq!(all.connections.len(), 3);
}

/// The application's membership over Redis: one node joins another's
/// connection to a room and reads the cluster's room statistics.
#[tokio::test]
async fn join_room_by_id_and_room_stats_span_the_nodes_over_redis() {
    use roomwire_tokio::server::MembershipChange;
    let Some(redis) = RedisServer::start() else { return };
    let mut a = node(RedisBackplane::new(&redis.url()).unwrap()).await;
    let mut b = node(RedisBackplane::new(&redis.url()).unwrap()).await;
    let (_a1, _) = a.connect("/ws/chat?roomId=r").await;
    let (mut b1, e) = b.connect("/ws/chat?roomId=r").await;
    let subs = |t: &str| redis.subscribers(t);
    heard_by(subs, room("r"), 2).await;
    let tag = u32::from_str_radix(&e.connection_id[3..11], 16).unwrap();
    heard_by(subs, Topic::Node { tag }, 1).await;
    assert_eq!(a.server.join_room(&e.connection_id, "vip"), Ok(MembershipChange::Sent));
    heard_by(subs, room("vip"), 1).await;
    a.server.emit::<Chat>(&Emit::to_room("vip"), &system("vip only")).unwrap();
    assert_eq!(recv_json(&mut b1).await, json!({"type": "system", "message": "vip only", "__alephaRoom": "vip"}));
    let stats = a.server.cluster_room_stats().await;
    assert!(stats.complete);
    assert_eq!((stats.room_size("/ws/chat", "r"), stats.room_size("/ws/chat", "vip")), (2, 1));
    assert_eq!(stats.connections, 2);
}

/// Emit `n` numbered messages from `a` to room `r`, a millisecond apart.
async fn numbered(a: &Harness, from: usize, n: usize) {
    for i in from..from + n {
        a.server.emit::<Chat>(&Emit::to_room("r"), &system(&i.to_string())).unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Read numbered messages until `last` arrives; they must rise strictly.
async fn rising_until(ws: &mut Client, last: usize) -> usize {
    let mut seen = 0;
    let mut previous: Option<usize> = None;
    loop {
        let got = recv_json(ws).await;
        let n: usize = got["message"].as_str().unwrap().parse().unwrap();
        assert!(previous.is_none_or(|p| n > p), "{n} after {previous:?}: duplicated or out of order");
        previous = Some(n);
        seen += 1;
        if n == last {
            return seen;
        }
    }
}

/// `node`'s backplane statistics once every one of `sent` messages since
/// `before` is counted: the other node may deliver the last message before
/// the publishing node has read Redis's answer to it and counted it.
async fn settled(node: &Harness, before: &BackplaneStats, sent: u64) -> BackplaneStats {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let after = node.server.backplane_stats().unwrap();
        let counted = (after.published - before.published)
            + (after.publish_unconfirmed - before.publish_unconfirmed)
            + (after.publish_dropped - before.publish_dropped);
        if counted >= sent || tokio::time::Instant::now() > deadline {
            return after;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Across an outage, `sent` messages of a node whose backplane counted
/// `before` then `after`: what the other node got (`crossed`) is what was
/// published, plus at most what was in flight when the bus failed, never a
/// duplicate; every message is published, dropped or unconfirmed.
fn accounted(before: &BackplaneStats, after: &BackplaneStats, crossed: u64, sent: u64) {
    let published = after.published - before.published;
    let unconfirmed = after.publish_unconfirmed - before.publish_unconfirmed;
    let dropped = after.publish_dropped - before.publish_dropped;
    assert!(dropped > 0, "the outage dropped nothing: {after:?}");
    assert!(crossed >= published && crossed <= published + unconfirmed, "{crossed} crossed, {after:?}");
    assert_eq!(published + unconfirmed + dropped, sent, "every message accounted for: {after:?}");
}

async fn outage_costs_only_the_outage(
    fault: impl FnOnce(&mut RedisServer),
    outage: Duration,
    heal: impl FnOnce(&mut RedisServer),
    redis: &mut RedisServer,
) {
    let mut a = node(RedisBackplane::new(&redis.url()).unwrap()).await;
    let mut b = node(RedisBackplane::new(&redis.url()).unwrap()).await;
    let (mut local, _) = a.connect("/ws/chat?roomId=r").await;
    let (mut remote, _) = b.connect("/ws/chat?roomId=r").await;
    heard_by(|t| redis.subscribers(t), room("r"), 2).await;
    let before = a.server.backplane_stats().unwrap();
    // Traffic, the fault in the middle of it, more traffic during it.
    let sending = numbered(&a, 0, 200);
    tokio::pin!(sending);
    tokio::time::timeout(Duration::from_millis(100), &mut sending).await.ok();
    fault(redis);
    sending.await;
    numbered(&a, 200, 500).await;
    tokio::time::sleep(outage).await;
    heal(redis);
    connected(&a).await;
    connected(&b).await;
    heard_by(|t| redis.subscribers(t), room("r"), 2).await;
    numbered(&a, 700, 1).await;
    // Local delivery never stopped: all 701, in order.
    assert_eq!(rising_until(&mut local, 700).await, 701);
    let crossed = rising_until(&mut remote, 700).await as u64;
    let after = settled(&a, &before, 701).await;
    accounted(&before, &after, crossed, 701);
    assert!(after.reconnects >= 1 && b.server.backplane_stats().unwrap().reconnects >= 1);
}

#[tokio::test]
async fn redis_killed_and_restarted_mid_traffic() {
    let Some(mut redis) = RedisServer::start() else { return };
    outage_costs_only_the_outage(RedisServer::kill, Duration::ZERO, RedisServer::restart, &mut redis).await;
}

#[tokio::test]
async fn redis_paused_mid_traffic() {
    let Some(mut redis) = RedisServer::start() else { return };
    // Paused longer than the bus timeout: the backplane takes the bus as
    // lost, then finds it again.
    outage_costs_only_the_outage(|r| r.pause(), Duration::from_secs(3), |r| r.resume(), &mut redis).await;
}

#[tokio::test]
async fn a_redis_cluster_carries_rooms_on_their_shards() {
    let Some(cluster) = RedisCluster::start() else { return };
    let mut a = node(RedisBackplane::cluster(cluster.urls()).unwrap()).await;
    let mut b = node(RedisBackplane::cluster(cluster.urls()).unwrap()).await;
    let rooms = ["a", "b", "c", "d", "e", "f"];
    let query = format!("/ws/chat?roomIds={}&token=alice", rooms.join(","));
    let (mut ca, _) = a.connect("/ws/chat?roomId=a").await;
    let (mut cb, eb) = b.connect(&query).await;
    for r in rooms {
        heard_by(|t| cluster.subscribers(t), room(r), if r == "a" { 2 } else { 1 }).await;
    }
    // The rooms' channels live on more than one shard.
    let shards = cluster.nodes.iter().filter(|n| rooms.iter().any(|r| n.subscribers(&room(r).to_string()) > 0)).count();
    assert!(shards >= 2, "all six rooms on one shard");
    for r in rooms {
        a.server.emit::<Chat>(&Emit::to_room(r), &system(r)).unwrap();
    }
    a.server.emit::<Chat>(&Emit::to_user("alice"), &system("alice")).unwrap();
    // In order per room; rooms on different shards arrive in any order.
    let mut got = Vec::new();
    for _ in 0..=rooms.len() {
        got.push(recv_json(&mut cb).await);
    }
    let mut expected: Vec<serde_json::Value> =
        rooms.iter().map(|r| json!({"type": "system", "message": r, "__alephaRoom": r})).collect();
    expected.push(json!({"type": "system", "message": "alice"}));
    let key = |v: &serde_json::Value| v.to_string();
    got.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(got, expected);
    assert_eq!(recv_json(&mut ca).await["message"], "a");
    say(&mut ca, "a", "from a").await;
    assert_eq!(recv_json(&mut cb).await["content"], "from a");
    let found = a.server.cluster_room_connections("c").await;
    assert!(found.complete);
    assert_eq!(found.connections.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), [eb.connection_id.as_str()]);
    b.mark(&eb.connection_id, "end");
    expect_marker(&mut cb, "end").await;
}

/// The demo's counter room on two servers of a Redis Cluster: one owner
/// (its claim on the shard of the key's slot), one counter for members on
/// both, a call from the other node reaching the owner's state.
#[tokio::test]
async fn a_stateful_room_on_a_redis_cluster_has_one_owner() {
    let Some(cluster) = RedisCluster::start() else { return };
    let counter = || roomwire_tests::counter::counter_room();
    let a =
        harness_with(|b| b.backplane(RedisBackplane::cluster(cluster.urls()).unwrap()).room(counter()), |e| e).await;
    connected(&a).await;
    let b =
        harness_with(|b| b.backplane(RedisBackplane::cluster(cluster.urls()).unwrap()).room(counter()), |e| e).await;
    connected(&b).await;
    let count = |value: u64, members: usize| json!({"type": "count", "value": value, "members": members});
    async fn until(ws: &mut Client, want: serde_json::Value) {
        recv_json_until(ws, &want, LIMIT).await;
    }
    let (mut on_a, _) = a.try_connect("/ws/counter?roomId=deck", &[], &[]).await.unwrap();
    until(&mut on_a, count(0, 1)).await;
    let (mut on_b, _) = b.try_connect("/ws/counter?roomId=deck", &[], &[]).await.unwrap();
    until(&mut on_b, count(0, 2)).await;
    send_text(&mut on_a, r#"{"type":"inc","by":4}"#).await;
    send_text(&mut on_b, r#"{"type":"inc","by":5}"#).await;
    until(&mut on_a, count(9, 2)).await;
    until(&mut on_b, count(9, 2)).await;
    let reset: u64 = b.server.call::<roomwire_tests::counter::CounterRoom, _, _>("deck", "reset", &()).await.unwrap();
    assert_eq!(reset, 9);
    until(&mut on_a, count(0, 2)).await;
    let key = roomwire_tokio::roomwire_core::cluster::room_owner_key("/ws/counter", "deck").to_string();
    // The shard holding the key answers it; the others redirect (MOVED).
    let claims: Vec<String> =
        cluster.nodes.iter().filter_map(|n| n.get(&key)).filter(|v| !v.starts_with("MOVED")).collect();
    assert_eq!(claims.len(), 1, "one claim, on one shard: {claims:?}");
    assert!(u32::from_str_radix(&claims[0], 16).is_ok(), "a node tag: {claims:?}");
}

/// `(member, expiry ms)` of a lease set, and Redis's clock in ms.
fn places(redis: &RedisServer, key: &str) -> (Vec<(String, u64)>, u64) {
    let listed = redis.cli(&["zrange", key, "0", "-1", "withscores"]).unwrap_or_default();
    let lines: Vec<&str> = listed.lines().filter(|l| !l.is_empty()).collect();
    let places = lines.chunks(2).map(|p| (p[0].to_owned(), p[1].parse().unwrap())).collect();
    let time = redis.cli(&["time"]).unwrap();
    let mut t = time.lines().map(|l| l.trim().parse::<u64>().unwrap());
    let now = t.next().unwrap() * 1000 + t.next().unwrap() / 1000;
    (places, now)
}

/// Wait, at most `limit`, until lease set `key` holds `n` places.
async fn places_become(redis: &RedisServer, key: &str, n: usize, limit: Duration, why: &str) {
    tokio::time::timeout(limit, async {
        while places(redis, key).0.len() != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect(why);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_user_cap_spans_nodes_and_a_dead_nodes_places_expire() {
    let Some(redis) = RedisServer::start() else { return };
    let url = redis.url();
    let capped = |e: roomwire_tokio::server::Endpoint<SecureChat>| e.max_connections_per_user(2);
    let mut a = harness_with(
        {
            let url = url.clone();
            move |x| x.backplane(RedisBackplane::new(&url).unwrap())
        },
        capped,
    )
    .await;
    connected(&a).await;
    // Node b runs in a runtime of its own, dropped at once later: a node
    // that dies without a word (nothing of it reaches Redis any more).
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
    let b_thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let b = harness_with(move |x| x.backplane(RedisBackplane::new(&url).unwrap()), capped).await;
            connected(&b).await;
            addr_tx.send(b.addr).unwrap();
            let _ = kill_rx.await;
        });
        drop(runtime);
    });
    let b_addr = addr_rx.await.unwrap();
    let (mut on_a, ea) = a.connect("/ws/secure-chat?token=alice").await;
    // Read on (answering pings): the refusal below has the server check
    // that alice's other connections are alive.
    let reading = tokio::spawn(async move { while on_a.recv().await.is_some() {} });
    let (_on_b, _) = try_connect(b_addr, "/ws/secure-chat?token=alice", &[], &[]).await.unwrap();
    let key = roomwire_tokio::roomwire_core::cluster::lease_key("/ws/secure-chat", "alice").to_string();
    places_become(&redis, &key, 2, LIMIT, "two places leased").await;
    let (mut third, _) = a.try_connect("/ws/secure-chat?token=alice", &[], &[]).await.unwrap();
    assert_eq!(closed_with(&mut third).await.unwrap().0, Some(CloseCode::Policy), "the cap counts b's connection");

    kill_tx.send(()).unwrap();
    b_thread.join().unwrap();
    let (before, now) = places(&redis, &key);
    assert_eq!(before.len(), 2, "b died without giving its place back");
    for (_, expiry) in &before {
        assert!(*expiry <= now + 30_000, "a place outlives the lease time: {before:?} at {now}");
    }
    // a renews its own place (every 10 s); b's is never renewed and expires.
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let (after, _) = places(&redis, &key);
    let expiry = |list: &[(String, u64)], id: &str| list.iter().find(|(m, _)| m == id).map(|(_, e)| *e);
    assert!(expiry(&after, &ea.connection_id) > expiry(&before, &ea.connection_id), "a's place was not renewed");
    let dead = before.iter().find(|(m, _)| *m != ea.connection_id).unwrap();
    assert_eq!(expiry(&after, &dead.0), Some(dead.1), "the dead node's place was renewed");
    assert!(!reading.is_finished(), "a's connection ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_holds_under_publish_load_and_shutdown_gives_places_back() {
    let Some(redis) = RedisServer::start() else { return };
    let capped = |e: roomwire_tokio::server::Endpoint<SecureChat>| e.max_connections_per_user(2);
    let url = redis.url();
    let mut a = harness_with(
        {
            let url = url.clone();
            move |x| x.backplane(RedisBackplane::new(&url).unwrap())
        },
        capped,
    )
    .await;
    let mut b = harness_with(move |x| x.backplane(RedisBackplane::new(&url).unwrap()), capped).await;
    connected(&a).await;
    connected(&b).await;
    // b has a member in the room a floods, so a publishes all the time.
    let (mut listener, _) = b.connect("/ws/chat?roomId=flood").await;
    heard_by(|t| redis.subscribers(t), room("flood"), 1).await;
    let flooding = {
        let server = a.server.clone();
        // About 20 000 messages a second: always some waiting to be
        // published, as on a busy server.
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(1));
            loop {
                every.tick().await;
                for _ in 0..20 {
                    let _ = server.emit::<Chat>(&Emit::to_room("flood"), &system("x"));
                }
            }
        })
    };
    let draining = tokio::spawn(async move { while listener.recv().await.is_some() {} });
    // Meanwhile the per-user cap is asked of the bus, and answered.
    let (mut first, _) = a.connect("/ws/secure-chat?token=alice").await;
    let (_second, _) = b.connect("/ws/secure-chat?token=alice").await;
    let reading = tokio::spawn(async move { while first.recv().await.is_some() {} });
    let (mut third, _) = a.try_connect("/ws/secure-chat?token=alice", &[], &[]).await.unwrap();
    assert_eq!(
        closed_with(&mut third).await.unwrap().0,
        Some(CloseCode::Policy),
        "the cap was decided by a alone: the lease was not answered under load"
    );
    flooding.abort();
    draining.abort();
    // A node that shuts down gives its places back on its way out.
    let key = roomwire_tokio::roomwire_core::cluster::lease_key("/ws/secure-chat", "alice").to_string();
    places_become(&redis, &key, 2, LIMIT, "two places").await;
    a.server.shutdown().await;
    reading.abort();
    places_become(&redis, &key, 1, Duration::from_secs(3), "a's place was not given back at shutdown").await;
}

/// A resharding moves a room's slot to another master: Redis ends the
/// subscriptions to the slot's channels (an `sunsubscribe` no node asked
/// for). The node subscribes again where the slot now is, and hears the
/// room as before.
#[tokio::test]
async fn a_room_whose_slot_moves_is_heard_again_on_its_new_shard() {
    let Some(cluster) = RedisCluster::start() else { return };
    let mut a = node(RedisBackplane::cluster(cluster.urls()).unwrap()).await;
    let mut b = node(RedisBackplane::cluster(cluster.urls()).unwrap()).await;
    let (mut ca, _) = a.connect("/ws/chat?roomId=r").await;
    let (mut cb, _) = b.connect("/ws/chat?roomId=r").await;
    let topic = room("r").to_string();
    heard_by(|t| cluster.subscribers(t), room("r"), 2).await;
    say(&mut ca, "r", "before").await;
    assert_eq!(recv_json(&mut cb).await["content"], "before");
    let to = cluster.move_slot_of(&topic);
    // Both nodes subscribe again, on the slot's new master.
    heard_by(|t| cluster.nodes[to].subscribers(t), room("r"), 2).await;
    // A publish may meet a stale slot map once (the session starts over):
    // said again until it crosses.
    for i in 0.. {
        assert!(i < 50, "the room was not heard again after its slot moved");
        say(&mut ca, "r", &format!("after {i}")).await;
        if let Ok(heard) = tokio::time::timeout(Duration::from_millis(200), recv_json(&mut cb)).await {
            assert!(heard["content"].as_str().is_some_and(|c| c.starts_with("after")), "{heard}");
            break;
        }
    }
    say(&mut cb, "r", "and back").await;
    let back = tokio::time::timeout(LIMIT, async {
        loop {
            let heard = recv_json(&mut ca).await;
            if heard["content"] == "and back" {
                return heard;
            }
        }
    })
    .await
    .expect("b's message after the move reached a");
    assert_eq!(back["content"], "and back");
}

#[tokio::test]
async fn a_redis_cluster_shard_killed_and_restarted_mid_traffic() {
    let Some(mut cluster) = RedisCluster::start() else { return };
    let mut a = node(RedisBackplane::cluster(cluster.urls()).unwrap()).await;
    let mut b = node(RedisBackplane::cluster(cluster.urls()).unwrap()).await;
    let (mut local, _) = a.connect("/ws/chat?roomId=r").await;
    let (mut remote, _) = b.connect("/ws/chat?roomId=r").await;
    heard_by(|t| cluster.subscribers(t), room("r"), 2).await;
    let shard = cluster.nodes.iter().position(|n| n.subscribers(&room("r").to_string()) > 0).unwrap();
    let before = a.server.backplane_stats().unwrap();
    numbered(&a, 0, 100).await;
    // The shard that carries room r dies: without replicas the cluster
    // refuses every command until it is back.
    cluster.nodes[shard].kill();
    numbered(&a, 100, 400).await;
    cluster.nodes[shard].restart();
    tokio::time::timeout(Duration::from_secs(30), async {
        while !cluster.nodes.iter().all(|n| n.cli(&["cluster", "info"]).is_some_and(|i| i.contains("cluster_state:ok")))
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the cluster did not heal");
    tokio::time::timeout(Duration::from_secs(30), async {
        while cluster.subscribers(&room("r").to_string()) != 2
            || !a.server.backplane_stats().unwrap().connected
            || !b.server.backplane_stats().unwrap().connected
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the nodes did not subscribe again");
    numbered(&a, 500, 1).await;
    assert_eq!(rising_until(&mut local, 500).await, 501, "local delivery never stopped");
    let crossed = rising_until(&mut remote, 500).await as u64;
    accounted(&before, &settled(&a, &before, 501).await, crossed, 501);
}

/// A Redis that refuses the lease commands (here an ACL without `EVAL`;
/// out of memory under `noeviction` or a replica's `READONLY` are the same
/// kind of answer) but still carries pub/sub: the servers count alone, as
/// when the bus is down, and the bus stays up. Rooms go on crossing nodes;
/// nothing reconnects or is dropped.
#[tokio::test]
async fn a_redis_that_refuses_lease_commands_keeps_the_bus_up() {
    let Some(redis) = RedisServer::start() else { return };
    let url = redis.url();
    let refuse = || {
        redis.cli(&["ACL", "SETUSER", "default", "-eval"]).expect("acl");
    };
    refused_leases_keep_the_bus_up(move || RedisBackplane::new(&url).unwrap(), |t| redis.subscribers(t), refuse).await;
}

/// The same on a Redis Cluster, where each lease command goes to its
/// key's shard on its own.
#[tokio::test]
async fn a_redis_cluster_that_refuses_lease_commands_keeps_the_bus_up() {
    let Some(cluster) = RedisCluster::start() else { return };
    let urls = cluster.urls();
    let refuse = || {
        for node in &cluster.nodes {
            node.cli(&["ACL", "SETUSER", "default", "-eval"]).expect("acl");
        }
    };
    refused_leases_keep_the_bus_up(
        move || RedisBackplane::cluster(urls.clone()).unwrap(),
        |t| cluster.subscribers(t),
        refuse,
    )
    .await;
}

async fn refused_leases_keep_the_bus_up(
    backplane: impl Fn() -> RedisBackplane + Send + Clone + 'static,
    subscribers: impl Fn(&str) -> usize,
    refuse: impl FnOnce(),
) {
    let capped = |e: roomwire_tokio::server::Endpoint<SecureChat>| e.max_connections_per_user(2);
    let mut a = harness_with(
        {
            let backplane = backplane.clone();
            move |x| x.backplane(backplane())
        },
        capped,
    )
    .await;
    connected(&a).await;
    let mut b = node(backplane()).await;
    let (mut on_b, _) = b.connect("/ws/chat?roomId=r").await;
    heard_by(subscribers, room("r"), 1).await;
    refuse();
    // Its place cannot be leased: admitted on a's own count.
    let (_alice, event) = a.connect("/ws/secure-chat?token=alice").await;
    assert_eq!(event.user_id.as_deref(), Some("alice"));
    tokio::time::timeout(LIMIT, async {
        while a.server.backplane_stats().unwrap().leases_refused == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no refusal counted: {:?}", a.server.backplane_stats()));
    assert!(a.server.backplane_stats().unwrap().connected);
    for n in 0..20 {
        a.server.emit::<Chat>(&Emit::to_room("r"), &system(&format!("{n}"))).unwrap();
    }
    for n in 0..20 {
        assert_eq!(
            recv_json(&mut on_b).await,
            json!({"type": "system", "message": format!("{n}"), "__alephaRoom": "r"})
        );
    }
    let stats = a.server.backplane_stats().unwrap();
    assert_eq!((stats.reconnects, stats.publish_dropped), (0, 0), "{stats:?}");
}

/// A Redis that loses its keys while the counter room's owner lives (here
/// `FLUSHALL`, as a restart without persistence): the room stays with its
/// owner and its count goes on, on three nodes, for as long as the keys
/// keep being lost.
#[tokio::test]
async fn a_redis_that_loses_a_rooms_claim_keeps_the_live_owner() {
    let Some(redis) = RedisServer::start() else { return };
    let url = redis.url();
    let counter = || roomwire_tests::counter::counter_room();
    let mut nodes = Vec::new();
    let mut members = Vec::new();
    let count = |value: u64, members: usize| json!({"type": "count", "value": value, "members": members});
    for n in 0..3 {
        let url = url.clone();
        let node = harness_with(move |b| b.backplane(RedisBackplane::new(&url).unwrap()).room(counter()), |e| e).await;
        connected(&node).await;
        let (mut ws, _) = node.try_connect("/ws/counter?roomId=hall", &[], &[]).await.unwrap();
        recv_json_until(&mut ws, &count(0, n + 1), LIMIT).await;
        members.push(ws);
        nodes.push(node);
        // Each node checks the claim every 2 s from its own start: apart.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    send_text(&mut members[2], r#"{"type":"inc","by":100}"#).await;
    recv_json_until(&mut members[0], &count(100, 3), LIMIT).await;
    // Lost every 150 ms for 8 s: every node asks at least once with no claim there.
    for _ in 0..53 {
        redis.cli(&["FLUSHALL"]).expect("flushall");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    send_text(&mut members[1], r#"{"type":"inc","by":11}"#).await;
    for ws in &mut members {
        recv_json_until(ws, &count(111, 3), LIMIT).await;
    }
}
