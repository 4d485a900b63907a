//! Servers joined by a backplane keep the whole emit API across nodes:
//! rooms, users, connections, exclusions, the whole channel, close, in
//! order and exactly once; a node hears only the rooms it has members in;
//! a node cut off the bus goes on serving its own connections. Over the
//! in-memory bus (the Redis backplane runs the same tests against a real
//! redis-server in the `tests` crate).

mod server_support;

use std::time::Duration;

use roomwire_tokio::CloseCode;
use roomwire_tokio::backplane::{MemoryBackplane, MemoryBus};
use roomwire_tokio::roomwire_core::cluster::Topic;
use roomwire_tokio::server::Emit;
use serde_json::json;
use server_support::*;

async fn node(bus: &MemoryBus) -> (Harness, MemoryBackplane) {
    let backplane = bus.backplane();
    let given = backplane.clone();
    (harness_with(move |b| b.backplane(given), |e| e).await, backplane)
}

/// Wait until `n` nodes hear `topic`.
async fn heard_by(bus: &MemoryBus, topic: Topic<'_>, n: usize) {
    let name = topic.to_string();
    tokio::time::timeout(LIMIT, async {
        while bus.subscribers(&name) != n {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{name} heard by {} nodes, not {n}", bus.subscribers(&name)));
}

fn room(room: &str) -> Topic<'_> {
    Topic::Room { path: "/ws/chat", room }
}

fn system(message: &str) -> ChatIn {
    ChatIn::System { message: message.into() }
}

#[tokio::test]
async fn a_reply_reaches_the_rooms_members_on_the_other_node_once() {
    let bus = MemoryBus::new();
    let (mut a, _) = node(&bus).await;
    let (mut b, _) = node(&bus).await;
    let (mut ca, ea) = a.connect("/ws/chat?roomId=room-1").await;
    let (mut cb, eb) = b.connect("/ws/chat?roomId=room-1").await;
    heard_by(&bus, room("room-1"), 2).await;
    say(&mut ca, "room-1", "hello").await;
    assert_eq!(
        recv_json(&mut cb).await,
        json!({"type": "append", "content": "hello", "username": ea.connection_id, "__alephaRoom": "room-1"})
    );
    // Except self held across nodes too: the sender got nothing.
    a.mark(&ea.connection_id, "after");
    expect_marker(&mut ca, "after").await;
    // A server emit on b reaches a's member and b's, once each.
    assert_eq!(b.server.emit::<Chat>(&Emit::to_room("room-1"), &system("both")).unwrap(), 1);
    let labelled = json!({"type": "system", "message": "both", "__alephaRoom": "room-1"});
    assert_eq!(recv_json(&mut ca).await, labelled);
    assert_eq!(recv_json(&mut cb).await, labelled);
    // Nothing more: a fence from a, through the bus, comes next on b.
    a.server.emit::<Chat>(&Emit::to_connection(eb.connection_id.clone()), &system("fence")).unwrap();
    expect_marker(&mut cb, "fence").await;
    assert_eq!(a.server.backplane_stats().unwrap().duplicates, 0);
}

#[tokio::test]
async fn users_connections_exclusions_and_the_whole_channel_cross_nodes() {
    let bus = MemoryBus::new();
    let (a, _) = node(&bus).await;
    let (mut b, _) = node(&bus).await;
    let (mut alice, e_alice) = b.connect("/ws/chat?roomId=r&token=alice").await;
    let (mut bob, e_bob) = b.connect("/ws/chat?roomId=r&token=bob").await;
    heard_by(&bus, Topic::User { path: "/ws/chat", user: "alice" }, 1).await;
    heard_by(&bus, room("r"), 1).await;

    a.server.emit::<Chat>(&Emit::to_user("alice"), &system("to alice")).unwrap();
    expect_marker(&mut alice, "to alice").await;
    a.server.emit::<Chat>(&Emit::to_connection(e_bob.connection_id.clone()), &system("to bob")).unwrap();
    expect_marker(&mut bob, "to bob").await;
    a.server
        .emit::<Chat>(&Emit::to_room("r").except_connection(e_alice.connection_id.clone()), &system("not alice"))
        .unwrap();
    a.server.emit::<Chat>(&Emit::to_room("r").except_user("bob"), &system("not bob")).unwrap();
    a.server.emit::<Chat>(&Emit::new(), &system("everyone")).unwrap();
    let labelled = |m: &str| json!({"type": "system", "message": m, "__alephaRoom": "r"});
    assert_eq!(recv_json(&mut bob).await, labelled("not alice"));
    expect_marker(&mut bob, "everyone").await;
    assert_eq!(recv_json(&mut alice).await, labelled("not bob"));
    expect_marker(&mut alice, "everyone").await;
    // The user and the room named together: alice once, through either.
    a.server.emit::<Chat>(&Emit::to_room("r").user("alice"), &system("once")).unwrap();
    assert_eq!(recv_json(&mut alice).await, labelled("once"));
    assert_eq!(recv_json(&mut bob).await, labelled("once"));
    b.mark(&e_alice.connection_id, "end");
    expect_marker(&mut alice, "end").await;
}

/// Two nodes, and a member of rooms x and y on the second, whose node has
/// heard both rooms long enough to expect copies on both (SUBSCRIBE_GRACE).
async fn member_of_x_and_y() -> (MemoryBus, Harness, Harness, Client, roomwire_tokio::server::ConnectEvent) {
    let bus = MemoryBus::new();
    let (a, _) = node(&bus).await;
    let (mut b, _) = node(&bus).await;
    let (both, e) = b.connect("/ws/chat?roomIds=x,y").await;
    heard_by(&bus, room("x"), 1).await;
    heard_by(&bus, room("y"), 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    (bus, a, b, both, e)
}

#[tokio::test]
async fn a_connection_in_two_named_rooms_gets_an_emit_once_and_order_holds() {
    let (_bus, a, b, mut both, e) = member_of_x_and_y().await;
    for i in 0..200 {
        let target = if i % 2 == 0 { Emit::to_room("x").room("y") } else { Emit::to_room("y") };
        a.server.emit::<Chat>(&target, &system(&i.to_string())).unwrap();
    }
    for i in 0..200 {
        let got = recv_json(&mut both).await;
        let label = if i % 2 == 0 { "x" } else { "y" };
        assert_eq!(got, json!({"type": "system", "message": i.to_string(), "__alephaRoom": label}));
    }
    b.mark(&e.connection_id, "end");
    expect_marker(&mut both, "end").await;
    let stats = b.server.backplane_stats().unwrap();
    // Each two-room message was heard twice, as expected, and delivered
    // once: no copy was unexpected.
    assert_eq!((stats.received, stats.duplicates, stats.stale), (200, 0, 0));
}

#[tokio::test]
async fn a_node_without_members_of_a_room_hears_none_of_its_traffic() {
    let bus = MemoryBus::new();
    let (a, _) = node(&bus).await;
    let (mut b, _) = node(&bus).await;
    let (mut c, _) = node(&bus).await;
    let (mut member, _) = b.connect("/ws/chat?roomId=busy").await;
    let (_elsewhere, _) = c.connect("/ws/chat?roomId=quiet").await;
    heard_by(&bus, room("busy"), 1).await;
    for i in 0..50 {
        a.server.emit::<Chat>(&Emit::to_room("busy"), &system(&i.to_string())).unwrap();
    }
    for _ in 0..50 {
        recv_json(&mut member).await;
    }
    assert_eq!(b.server.backplane_stats().unwrap().received, 50);
    assert_eq!(c.server.backplane_stats().unwrap().received, 0, "c has no member of busy");
    // When the last member leaves, its node stops hearing the room.
    drop(member);
    b.next_disconnect().await;
    heard_by(&bus, room("busy"), 0).await;
}

#[tokio::test]
async fn close_connection_closes_a_connection_of_another_node() {
    let bus = MemoryBus::new();
    let (a, _) = node(&bus).await;
    let (mut b, _) = node(&bus).await;
    let (mut victim, e) = b.connect("/ws/chat?roomId=r").await;
    tokio::time::timeout(LIMIT, async {
        while b.server.backplane_stats().unwrap().subscriptions < 3 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap();
    heard_by(&bus, Topic::Node { tag: u32::from_str_radix(&e.connection_id[3..11], 16).unwrap() }, 1).await;
    assert!(a.server.close_connection(&e.connection_id, CloseCode::from(4000), "kicked"));
    assert_eq!(closed_with(&mut victim).await, Some((Some(CloseCode::from(4000)), "kicked".into())));
    assert!(!a.server.close_connection("ws-unknown", CloseCode::Normal, ""), "no node's id");
}

#[tokio::test]
async fn a_node_cut_off_the_bus_serves_its_own_and_counts_what_it_drops() {
    let bus = MemoryBus::new();
    let (mut a, backplane_a) = node(&bus).await;
    let (mut b, _) = node(&bus).await;
    let (mut ca, ea) = a.connect("/ws/chat?roomId=r").await;
    let (mut cb, eb) = b.connect("/ws/chat?roomId=r").await;
    heard_by(&bus, room("r"), 2).await;
    bus.set_cut(&backplane_a, true);
    assert!(!a.server.backplane_stats().unwrap().connected);
    assert_eq!(a.server.emit::<Chat>(&Emit::to_room("r"), &system("local only")).unwrap(), 1);
    assert_eq!(recv_json(&mut ca).await["message"], "local only");
    assert_eq!(a.server.backplane_stats().unwrap().publish_dropped, 1);
    bus.set_cut(&backplane_a, false);
    let stats = a.server.backplane_stats().unwrap();
    assert!(stats.connected);
    assert_eq!(stats.reconnects, 1);
    // Back: the next message crosses; the dropped one never arrives.
    a.server.emit::<Chat>(&Emit::to_connection(eb.connection_id.clone()), &system("back")).unwrap();
    expect_marker(&mut cb, "back").await;
    a.mark(&ea.connection_id, "end");
    expect_marker(&mut ca, "end").await;
}

#[tokio::test]
async fn room_user_and_channel_queries_answer_for_the_whole_cluster() {
    let bus = MemoryBus::new();
    let (mut a, _) = node(&bus).await;
    let (mut b, _) = node(&bus).await;
    let (mut c, _) = node(&bus).await;
    let (_a1, ea) = a.connect("/ws/chat?roomId=r").await;
    let (_b1, eb1) = b.connect("/ws/chat?roomId=r&token=alice").await;
    let (_b2, eb2) = b.connect("/ws/chat?roomIds=r,s").await;
    let (_c1, ec) = c.connect("/ws/chat?roomId=other&token=alice").await;
    heard_by(&bus, room("r"), 2).await;
    heard_by(&bus, Topic::User { path: "/ws/chat", user: "alice" }, 2).await;
    heard_by(&bus, Topic::Channel { path: "/ws/chat" }, 3).await;
    let ids = |answer: &roomwire_tokio::server::ClusterConnections| {
        let mut ids: Vec<String> = answer.connections.iter().map(|i| i.id.clone()).collect();
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let in_r = c.server.cluster_room_connections("r").await;
    assert!(in_r.complete);
    assert_eq!(
        ids(&in_r),
        sorted(vec![ea.connection_id.clone(), eb1.connection_id.clone(), eb2.connection_id.clone()])
    );
    let both = in_r.connections.iter().find(|i| i.id == eb2.connection_id).unwrap();
    assert_eq!(both.rooms, ["r", "s"]);
    let alice = a.server.cluster_user_connections("alice").await;
    assert!(alice.complete);
    assert_eq!(ids(&alice), sorted(vec![eb1.connection_id.clone(), ec.connection_id.clone()]));
    assert!(alice.connections.iter().all(|i| i.user_id.as_deref() == Some("alice")));
    let all = b.server.cluster_connections().await;
    assert!(all.complete);
    assert_eq!(all.connections.len(), 4);
    assert!(a.server.cluster_room_connections("nobody-here").await.connections.is_empty());
    // The local lookups stay local.
    assert_eq!(a.server.room_connections("r").len(), 1);
}

#[tokio::test]
async fn the_per_user_cap_counts_the_users_connections_on_every_node() {
    let bus = MemoryBus::new();
    let capped = |e: roomwire_tokio::server::Endpoint<SecureChat>| e.max_connections_per_user(2);
    let mut a = harness_with(
        {
            let b = bus.backplane();
            move |x| x.backplane(b)
        },
        capped,
    )
    .await;
    let mut b = harness_with(
        {
            let b = bus.backplane();
            move |x| x.backplane(b)
        },
        capped,
    )
    .await;
    for h in [&a, &b] {
        tokio::time::timeout(LIMIT, async {
            while !h.server.backplane_stats().unwrap().connected {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .unwrap();
    }
    let (first, _) = a.connect("/ws/secure-chat?token=alice").await;
    let (_second, _) = b.connect("/ws/secure-chat?token=alice").await;
    // A third anywhere is over the cap: accepted, then closed with 1008.
    let (mut third, _) = a.try_connect("/ws/secure-chat?token=alice", &[], &[]).await.unwrap();
    assert_eq!(
        closed_with(&mut third).await,
        Some((Some(CloseCode::Policy), "Max connections per user exceeded".into()))
    );
    let (mut fourth, _) = b.try_connect("/ws/secure-chat?token=alice", &[], &[]).await.unwrap();
    assert_eq!(closed_with(&mut fourth).await.unwrap().0, Some(CloseCode::Policy));
    // Another user is not affected; a place freed on a is taken on b.
    let (_bob, _) = b.connect("/ws/secure-chat?token=bob").await;
    drop(first);
    a.next_disconnect().await;
    // The place is given back on the bus a moment after the disconnect:
    // try until a connection stays open.
    let mut taken = false;
    for _ in 0..50 {
        let (mut ws, _) = b.try_connect("/ws/secure-chat?token=alice", &[], &[]).await.unwrap();
        if tokio::time::timeout(Duration::from_millis(300), ws.recv()).await.is_err() {
            taken = true;
            break;
        }
    }
    assert!(taken, "the freed place was never taken");
}

#[tokio::test]
async fn a_topic_that_lags_cannot_reorder_a_rooms_messages() {
    let (bus, a, b, mut both, e) = member_of_x_and_y().await;
    // Room x's topic lags (as a slower shard would): m1 to x waits there;
    // m2 to x and y reaches b on y first.
    bus.hold(&room("x").to_string(), true);
    a.server.emit::<Chat>(&Emit::to_room("x"), &system("m1")).unwrap();
    a.server.emit::<Chat>(&Emit::to_room("x").room("y"), &system("m2")).unwrap();
    tokio::time::timeout(LIMIT, async {
        while bus.held(&room("x").to_string()) < 2 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap();
    bus.hold(&room("x").to_string(), false);
    assert_eq!(recv_json(&mut both).await["message"], "m1", "m2 overtook m1 in room x");
    assert_eq!(recv_json(&mut both).await["message"], "m2");
    b.mark(&e.connection_id, "end");
    expect_marker(&mut both, "end").await;
}

/// The application's membership acts cluster-wide: a node joins a
/// connection of another node to a room (that node applies it, and hears
/// the room from then on), leaves it again, and reads the cluster's room
/// statistics.
#[tokio::test]
async fn join_room_and_room_stats_act_on_every_node() {
    use roomwire_tokio::server::{MembershipChange, MembershipError};
    let bus = MemoryBus::new();
    let (mut a, _) = node(&bus).await;
    let (mut b, _) = node(&bus).await;
    let (mut member, e) = b.connect("/ws/chat?roomId=lobby").await;
    let (_other, _) = a.connect("/ws/chat?roomId=lobby").await;
    heard_by(&bus, Topic::Node { tag: u32::from_str_radix(&e.connection_id[3..11], 16).unwrap() }, 1).await;
    heard_by(&bus, room("lobby"), 2).await;

    assert_eq!(a.server.join_room(&e.connection_id, "vip"), Ok(MembershipChange::Sent));
    heard_by(&bus, room("vip"), 1).await;
    assert!(b.server.is_in_room(&e.connection_id, "vip"));
    assert_eq!(a.server.emit::<Chat>(&Emit::to_room("vip"), &system("for vips")).unwrap(), 0);
    assert_eq!(recv_json(&mut member).await, json!({"type": "system", "message": "for vips", "__alephaRoom": "vip"}));

    let stats = a.server.cluster_room_stats().await;
    assert!(stats.complete);
    assert_eq!(stats.room_size("/ws/chat", "lobby"), 2);
    assert_eq!(stats.room_size("/ws/chat", "vip"), 1);
    assert_eq!(stats.connections, 2);
    assert_eq!(a.server.room_stats().room_size("/ws/chat", "vip"), 0, "room_stats is this node's");

    // A room id that cannot be one is refused before anything is sent.
    let invalid = Err(MembershipError::Refused("Invalid room id"));
    assert_eq!(a.server.join_room(&e.connection_id, ""), invalid);
    assert_eq!(a.server.leave_room(&e.connection_id, "vip"), Ok(MembershipChange::Sent));
    heard_by(&bus, room("vip"), 0).await;
    assert_eq!(b.server.connection(&e.connection_id).unwrap().rooms, ["lobby"]);
    assert_eq!(a.server.join_room("ws-unknown", "vip"), Err(MembershipError::NoSuchConnection));
}

/// A bus that connects and then carries nothing: the publish queue only
/// grows.
struct Stalled;

impl roomwire_tokio::backplane::Backplane for Stalled {
    fn run(
        self: std::sync::Arc<Self>,
        link: roomwire_tokio::backplane::Link,
    ) -> roomwire_tokio::server::BoxFuture<'static, ()> {
        Box::pin(async move {
            link.set_connected(true);
            link.closed().await;
        })
    }
}

/// A client relaying megabyte messages faster than the bus carries them
/// is slowed to the bus's pace (after each handler its connection waits
/// for the queue to drain, for the bus's timeout at most) rather than fill
/// the publish queue its node's other clients share: their messages still
/// go in, nothing is dropped, and a connection waiting so is still served.
#[tokio::test]
async fn a_client_relaying_faster_than_the_bus_is_slowed_and_the_others_keep_crossing() {
    let mut h = harness_with(|b| b.backplane(Stalled), |e| e).await;
    let (mut flooder, _) = h.connect("/ws/chat?roomId=r").await;
    let content = "x".repeat((1 << 20) - 200);
    let flooding = tokio::spawn(async move {
        // 80 MiB in all, more than the queue's bound.
        for _ in 0..80 {
            say(&mut flooder, "r", &content).await;
        }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (mut quiet, _) = h.connect("/ws/chat?roomId=q").await;
    say(&mut quiet, "q", "hello").await;
    while h.next_handled().await.room_id != "q" {}
    // Its handler has run: its connection waits for the bus, and is served
    // meanwhile as while a handler runs: what is emitted to it goes out.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = tokio::time::Instant::now();
    for n in 0..5 {
        h.server.emit::<Chat>(&Emit::to_room("q"), &system(&format!("s{n}"))).unwrap();
    }
    for n in 0..5 {
        assert_eq!(recv_json(&mut quiet).await["message"], format!("s{n}"));
    }
    // Half the wait's bound: not held until the wait ended.
    let bound = Duration::from(roomwire_tokio::roomwire_core::cluster::BUS_TIMEOUT) / 2;
    assert!(started.elapsed() < bound, "held until the wait ended: {:?}", started.elapsed());
    let stats = h.server.backplane_stats().unwrap();
    assert_eq!(stats.publish_dropped, 0, "{stats:?}");
    assert!(!flooding.is_finished(), "the flood was never slowed");
    flooding.abort();
}

/// A node that subscribed to a room's topic only just (within its grace)
/// hears a message to that room and an older one elsewhere on the older
/// topic first (the new topic lags, as another shard of a Redis Cluster
/// may): it waits for the message's copy on the new topic, so what was
/// published there before it still comes first.
#[tokio::test]
async fn order_per_room_holds_on_a_topic_subscribed_only_just() {
    let bus = MemoryBus::new();
    let (p, _) = node(&bus).await;
    let (mut n, _) = node(&bus).await;
    let (_in_u, _) = n.connect("/ws/chat?roomId=u").await;
    heard_by(&bus, room("u"), 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut in_t, _) = n.connect("/ws/chat?roomId=t").await;
    heard_by(&bus, room("t"), 1).await;
    let t = room("t").to_string();
    bus.hold(&t, true);
    p.server.emit::<Chat>(&Emit::to_room("t"), &system("m1")).unwrap();
    p.server.emit::<Chat>(&Emit::to_room("t").room("u"), &system("m2")).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    bus.hold(&t, false);
    assert_eq!(recv_json(&mut in_t).await["message"], "m1");
    assert_eq!(recv_json(&mut in_t).await["message"], "m2");
}
