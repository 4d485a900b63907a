//! The room server's limits over loopback TCP: slow consumers, keepalive,
//! handshake timeout, shutdown of clients that do not answer.

mod server_support;

use std::time::Duration;

use roomwire_tokio::roomwire_core::Duration as CoreDuration;
use roomwire_tokio::server::Emit;
use roomwire_tokio::{CloseCode, Message, WebSocket};
use server_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

#[tokio::test]
async fn a_slow_consumer_is_closed_with_1013_while_its_room_keeps_receiving() {
    let mut h = harness_with(
        config(|c| {
            c.socket.max_outbound = 256 * 1024;
            c.socket.core.close_timeout = CoreDuration::from_secs(30);
        }),
        |e| e,
    )
    .await;
    let (mut slow, slow_event) = h.connect("/ws/chat?roomId=room").await;
    let (mut fast, fast_event) = h.connect("/ws/chat?roomId=room").await;
    const FRAMES: usize = 400;
    let payload = "y".repeat(64 * 1024);
    // The fast reader reads everything as it comes.
    let reader = tokio::spawn(async move {
        let mut got = 0;
        while got < FRAMES {
            match timeout(LIMIT, fast.recv()).await.expect("fast reader stalled") {
                Some(Ok(Message::Text(text))) => {
                    assert!(text.contains(r#""__alephaRoom":"room""#));
                    got += 1;
                }
                other => panic!("fast reader: {other:?}"),
            }
        }
        fast
    });
    // 25 MiB to a room: far beyond the kernel's socket buffers and the
    // 256 KiB bound for the client that does not read.
    for _ in 0..FRAMES {
        h.server.emit::<Chat>(&Emit::to_room("room"), &ChatIn::System { message: payload.clone() }).unwrap();
        tokio::task::yield_now().await;
    }
    let mut fast = timeout(LIMIT, reader).await.expect("the room was slowed down").unwrap();
    // The slow client finds what was written before the close, then 1013.
    let mut before_close = 0;
    while let Some(Ok(_)) = timeout(LIMIT, slow.recv()).await.expect("slow client stalled") {
        before_close += 1;
    }
    assert!(before_close < FRAMES, "the slow client was never cut off");
    assert_eq!(slow.peer_close().map(|c| c.code), Some(Some(CloseCode::Again)));
    let gone = h.next_disconnect().await;
    assert_eq!(gone.connection_id, slow_event.connection_id);
    assert_eq!((gone.code, gone.reason.as_str()), (Some(CloseCode::Again), "Outbound queue full"));
    // The fast one is still served.
    h.mark(&fast_event.connection_id, "alive");
    expect_marker(&mut fast, "alive").await;
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_dropped_and_its_user_slot_freed() {
    let mut h =
        harness_with(config(|c| c.socket.core.keepalive_interval = Some(CoreDuration::from_millis(100))), |e| {
            e.max_connections_per_user(1)
        })
        .await;
    let auth = [("Authorization", "Bearer dana")];
    // Never reads, so never answers a ping.
    let (_silent, silent) = h.connect_with("/ws/secure-chat?roomId=r", &[], &auth).await;
    // Reads (and so answers pings) all along.
    let (mut alive, alive_event) = h.connect("/ws/chat?roomId=r").await;
    let keeps_reading = tokio::spawn(async move {
        let message = alive.recv().await;
        (alive, message)
    });
    let gone = h.next_disconnect().await;
    assert_eq!(gone.connection_id, silent.connection_id);
    assert_eq!(gone.code, None);
    assert!(gone.reason.contains("keepalive"), "{}", gone.reason);
    assert!(h.server.user_connections("dana").is_empty());
    assert!(h.server.room_connections("r").iter().all(|c| c.id == alive_event.connection_id));
    // Dana's slot is free again.
    let (_again, again) = h.connect_with("/ws/secure-chat", &[], &auth).await;
    assert_eq!(again.user_id.as_deref(), Some("dana"));
    assert_eq!(h.server.user_connections("dana").len(), 1);
    // The answering client outlived several intervals.
    h.mark(&alive_event.connection_id, "still here");
    let (_, message) = timeout(LIMIT, keeps_reading).await.unwrap().unwrap();
    let text = match message {
        Some(Ok(Message::Text(text))) => text,
        other => panic!("{other:?}"),
    };
    assert_eq!(text, r#"{"type":"system","message":"still here"}"#);
}

#[tokio::test]
async fn a_slow_handshake_gets_408() {
    let h =
        harness_with(config(|c| c.socket.core.handshake_timeout = Some(CoreDuration::from_millis(200))), |e| e).await;
    let mut tcp = TcpStream::connect(h.addr).await.unwrap();
    tcp.write_all(b"GET /ws/chat HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut answer = Vec::new();
    timeout(LIMIT, tcp.read_to_end(&mut answer)).await.expect("never answered").unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 408"), "{}", String::from_utf8_lossy(&answer));
}

/// The handshake places: one address holds at most its share (429 beyond
/// it), the server at most its cap (503 beyond it); both answered without
/// reading the request, and the places come back.
#[tokio::test]
async fn handshakes_beyond_the_caps_are_answered_429_and_503() {
    let h = harness_with(
        config(|c| {
            c.max_handshakes = 3;
            c.max_handshakes_per_address = 2;
            c.address_cap_on_loopback = true;
        }),
        |e| e,
    )
    .await;
    let stalled = [stall(h.addr, [127, 0, 0, 1]).await, stall(h.addr, [127, 0, 0, 1]).await];
    assert_eq!(refused_from(h.addr, [127, 0, 0, 1]).await, "HTTP/1.1 429 Too Many Requests");
    // Another address still finds a place: the server's last.
    let third = stall(h.addr, [127, 0, 0, 2]).await;
    assert_eq!(refused_from(h.addr, [127, 0, 0, 3]).await, "HTTP/1.1 503 Service Unavailable");
    drop((stalled, third));
    // The places come back once the server sees those streams end.
    assert!(connects_within_limit(&h, "/ws/chat").await, "the places never came back");
}

/// With a cap on open connections per address, one host cannot take every
/// place: beyond its share it gets 429, others still get in, and a place
/// comes back when one of its connections ends.
#[tokio::test]
async fn open_connections_beyond_an_address_cap_get_429() {
    let mut h = harness_with(
        config(|c| {
            c.max_connections_per_address = Some(2);
            c.address_cap_on_loopback = true;
        }),
        |e| e,
    )
    .await;
    let addr = h.addr;
    let open_from = |ip: [u8; 4]| async move {
        let tcp = connect_from(addr, ip).await;
        let request = roomwire_tokio::ClientRequest { host: "x", target: "/ws/chat", protocols: &[], headers: &[] };
        WebSocket::connect_with_stream(tcp, &request, roomwire_tokio::Config::default()).await.map(|(ws, _)| ws)
    };
    let first = open_from([127, 0, 0, 2]).await.unwrap();
    let _second = open_from([127, 0, 0, 2]).await.unwrap();
    assert_eq!(refused_status(&open_from([127, 0, 0, 2]).await), Some(429));
    let _other = open_from([127, 0, 0, 3]).await.unwrap();
    for _ in 0..3 {
        h.next_connect().await;
    }
    drop(first);
    h.next_disconnect().await;
    open_from([127, 0, 0, 2]).await.expect("the place came back");
}

/// Whether a client gets in at `target` within [`LIMIT`], trying again
/// every 20 ms: a place the server gives back comes back.
async fn connects_within_limit(h: &Harness, target: &str) -> bool {
    let served = async {
        while h.try_connect(target, &[], &[]).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(LIMIT, served).await.is_ok()
}

/// A stream from `ip` that starts a request and stops: it holds a place.
async fn stall(addr: std::net::SocketAddr, ip: [u8; 4]) -> TcpStream {
    let mut tcp = connect_from(addr, ip).await;
    tcp.write_all(b"GET /ws/chat HTTP/1.1\r\n").await.unwrap();
    // Its place is taken before any later stream's: one accept loop, and
    // this runtime runs the tasks it spawns in order.
    tcp
}

/// The status line a stream from `ip` is answered with, whole request sent.
async fn refused_from(addr: std::net::SocketAddr, ip: [u8; 4]) -> String {
    let mut tcp = connect_from(addr, ip).await;
    tcp.write_all(&raw_request("/ws/chat", "")).await.unwrap();
    let mut answer = Vec::new();
    timeout(LIMIT, tcp.read_to_end(&mut answer)).await.expect("never answered").expect("reset before the answer");
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned()
}

async fn connect_from(addr: std::net::SocketAddr, ip: [u8; 4]) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((std::net::Ipv4Addr::from(ip), 0).into()).unwrap();
    socket.connect(addr).await.unwrap()
}

#[tokio::test]
async fn shutdown_drops_clients_that_never_answer_the_close() {
    let mut h = harness_with(config(|c| c.shutdown_timeout = Duration::from_millis(200)), |e| e).await;
    let (_deaf, _) = h.connect("/ws/chat").await;
    let started = tokio::time::Instant::now();
    timeout(LIMIT, h.server.shutdown()).await.expect("shutdown hung");
    assert!(started.elapsed() >= Duration::from_millis(200));
    let gone = h.next_disconnect().await;
    assert_eq!(gone.reason, "Server shutting down");
    assert_eq!(h.server.connection_count(), 0);
}

/// Room limits given after the endpoints still reach the endpoints' tables
/// (the harness registers its endpoints first, then applies `config`).
#[tokio::test]
async fn room_limits_apply_whatever_the_builder_order() {
    let mut h = harness_with(config(|c| c.rooms.max_rooms_per_member = 2), |e| e).await;
    let (mut ok, _) = h.connect("/ws/chat?roomIds=a,b").await;
    let (mut over, _) = h.try_connect("/ws/chat?roomIds=a,b,c", &[], &[]).await.expect("101, then the close");
    assert_eq!(
        closed_with(&mut over).await,
        Some((Some(CloseCode::Policy), "Too many rooms for this connection".to_owned()))
    );
    h.server.emit::<Chat>(&Emit::to_room("b"), &ChatIn::System { message: "still here".into() }).unwrap();
    assert!(recv_text(&mut ok).await.contains("still here"));
}

/// A full room, a server that holds no more rooms and one that holds no
/// more members (PROTOCOL.md 3.4, 4): 1008 with the reason at an Alepha
/// handshake, error 4003 on a roomwire `join`, whose connection stays.
#[tokio::test]
async fn full_rooms_and_a_full_server_answer_1008_and_4003() {
    let closed = |reason: &str| Some((Some(CloseCode::Policy), reason.to_owned()));
    let join = |reference: u32, room: &str| format!(r#"{{"type":"join","room":"{room}","ref":{reference}}}"#);
    let mut h = harness_with(
        config(|c| {
            c.rooms.max_members_per_room = 1;
            c.rooms.max_rooms = 2;
        }),
        |e| e,
    )
    .await;
    let (a, a_event) = h.connect("/ws/chat?roomId=a").await;
    let (mut full, _) = h.try_connect("/ws/chat?roomId=a", &[], &[]).await.unwrap();
    assert_eq!(closed_with(&mut full).await, closed("Room full"));
    let (_b, _) = h.connect("/ws/chat?roomId=b").await;
    let (mut no_room, _) = h.try_connect("/ws/chat?roomId=c", &[], &[]).await.unwrap();
    assert_eq!(closed_with(&mut no_room).await, closed("Too many rooms on this server"));
    let (mut rw, _) = h.connect_with("/ws/chat", &["roomwire.v1.json"], &[]).await;
    for (reference, room) in [(1, "a"), (2, "c")] {
        send_text(&mut rw, &join(reference, room)).await;
        let refused = recv_json(&mut rw).await;
        assert_eq!((refused["type"].as_str(), refused["code"].as_u64()), (Some("error"), Some(4003)), "{refused}");
        assert_eq!(refused["ref"].as_u64(), Some(u64::from(reference)));
    }
    // Room a frees up: the same connection now joins it.
    drop(a);
    assert_eq!(h.next_disconnect().await.connection_id, a_event.connection_id);
    send_text(&mut rw, &join(3, "a")).await;
    assert_eq!(recv_json(&mut rw).await, serde_json::json!({"type": "ok", "ref": 3}));

    let mut h = harness_with(config(|c| c.rooms.max_members = 1), |e| e).await;
    let (_a, _) = h.connect("/ws/chat?roomId=a").await;
    let (mut over, _) = h.try_connect("/ws/chat?roomId=z", &[], &[]).await.unwrap();
    assert_eq!(closed_with(&mut over).await, closed("Server full"));
    let (mut rw, _) = h.connect_with("/ws/chat", &["roomwire.v1.json"], &[]).await;
    send_text(&mut rw, &join(1, "a")).await;
    let refused = recv_json(&mut rw).await;
    assert_eq!((refused["code"].as_u64(), refused["text"].as_str()), (Some(4003), Some("Server full")), "{refused}");
}

/// Once the server has decided to close a connection, what the client
/// still sends reaches no handler.
#[tokio::test]
async fn no_handler_runs_after_the_server_closes() {
    let mut h = harness().await;
    let (mut ws, event) = h.connect("/ws/chat?roomId=room").await;
    assert!(h.server.close_connection(&event.connection_id, CloseCode::Policy, "bye"));
    for n in 0..20 {
        say(&mut ws, "room", &format!("after the close {n}")).await;
    }
    assert_eq!(closed_with(&mut ws).await, Some((Some(CloseCode::Policy), "bye".to_owned())));
    let gone = h.next_disconnect().await;
    assert_eq!(gone.connection_id, event.connection_id);
    assert!(h.handled.try_recv().is_err(), "a handler ran after the close");
}

/// Cross-site WebSocket hijacking: a page of another site cannot open a
/// cookie-authenticated endpoint that allows only its own origin.
#[tokio::test]
async fn endpoints_refuse_foreign_origins_with_403() {
    let h = harness_with(|b| b, |e| e.same_origin()).await;
    let own = format!("http://{}", h.addr);
    let auth = ("Authorization", "Bearer alice");
    let refused = h.try_connect("/ws/secure-chat", &[], &[auth, ("Origin", "https://evil.example")]).await;
    assert_eq!(refused_status(&refused), Some(403), "{refused:?}");
    let refused = h.try_connect("/ws/secure-chat", &[], &[auth, ("Origin", "null")]).await;
    assert_eq!(refused_status(&refused), Some(403), "{refused:?}");
    // Its own pages, and programs (no Origin), get in; the open endpoint
    // allows every origin.
    assert!(h.try_connect("/ws/secure-chat", &[], &[auth, ("Origin", &own)]).await.is_ok());
    assert!(h.try_connect("/ws/secure-chat", &[], &[auth]).await.is_ok());
    assert!(h.try_connect("/ws/chat", &[], &[("Origin", "https://evil.example")]).await.is_ok());

    let h = harness_with(|b| b, |e| e.allowed_origins(["https://app.example"])).await;
    let allowed = h.try_connect("/ws/secure-chat", &[], &[auth, ("Origin", "https://app.example")]).await;
    assert!(allowed.is_ok());
    let refused = h.try_connect("/ws/secure-chat", &[], &[auth, ("Origin", &own)]).await;
    assert_eq!(refused_status(&refused), Some(403), "{refused:?}");
}

/// An endpoint that confines each user to its own inbox: neither the
/// handshake's rooms (Alepha wire) nor a `join` (roomwire wire) escapes it.
#[tokio::test]
async fn authorize_room_confines_joins_on_both_wires() {
    let own_inbox = |a: &roomwire_tokio::server::RoomAccess<'_>| {
        a.user_id.is_some_and(|u| a.room.strip_prefix("inbox:") == Some(u))
    };
    let mut h = harness_with(|b| b, move |e| e.authorize_room(own_inbox)).await;
    let alice = [("Authorization", "Bearer alice")];
    // Alepha wire: the rooms of the query.
    let (_own, event) = h.connect_with("/ws/secure-chat?roomId=inbox:alice", &[], &alice).await;
    assert_eq!(event.rooms, ["inbox:alice"]);
    let (mut other, _) = h.try_connect("/ws/secure-chat?roomId=inbox:bob", &[], &alice).await.unwrap();
    assert_eq!(closed_with(&mut other).await, Some((Some(CloseCode::Policy), "Room not allowed".to_owned())));
    // roomwire wire: joins.
    let (mut ws, _) = h.connect_with("/ws/secure-chat", &["roomwire.v1.json"], &alice).await;
    send_text(&mut ws, r#"{"type":"join","room":"inbox:bob","ref":1}"#).await;
    let refused = recv_json(&mut ws).await;
    assert_eq!((refused["type"].as_str(), refused["code"].as_u64()), (Some("error"), Some(4007)), "{refused}");
    send_text(&mut ws, r#"{"type":"join","room":"inbox:alice","ref":2}"#).await;
    let joined = recv_json(&mut ws).await;
    assert_eq!((joined["type"].as_str(), joined["ref"].as_u64()), (Some("ok"), Some(2)), "{joined}");
    let rooms = h.server.connections().into_iter().map(|c| c.rooms).collect::<Vec<_>>();
    assert!(rooms.iter().all(|r| r.iter().all(|room| room == "inbox:alice")), "{rooms:?}");
}

/// The application's room gate runs without the endpoint's lock: while it
/// takes its time over one connection's join, other connections of the
/// endpoint connect, join and receive.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_room_gate_holds_up_no_other_connection() {
    use std::sync::{Arc, Condvar, Mutex};
    // (entered, released, returned)
    let held = Arc::new((Mutex::new((false, false, false)), Condvar::new()));
    let gate = {
        let held = held.clone();
        move |a: &roomwire_tokio::server::RoomAccess<'_>| {
            if a.room == "hold" {
                let (lock, changed) = &*held;
                let mut state = lock.lock().unwrap();
                state.0 = true;
                changed.notify_all();
                // Blocking without stalling the runtime's other tasks:
                // what is measured is the endpoint's lock alone.
                let waited = tokio::task::block_in_place(|| changed.wait_timeout_while(state, 2 * LIMIT, |s| !s.1));
                waited.unwrap().0.2 = true;
            }
            true
        }
    };
    let mut h = harness_with(|b| b, move |e| e.authorize_room(gate)).await;
    let (mut slow, _) =
        h.connect_with("/ws/secure-chat", &["roomwire.v1.json"], &[("Authorization", "Bearer a")]).await;
    send_text(&mut slow, r#"{"type":"join","room":"hold","ref":1}"#).await;
    let entered = held.clone();
    tokio::task::spawn_blocking(move || {
        let (lock, changed) = &*entered;
        let state = changed.wait_timeout_while(lock.lock().unwrap(), LIMIT, |s| !s.0).unwrap().0;
        assert!(state.0, "the gate was never asked");
    })
    .await
    .unwrap();
    let other = async {
        let (mut ws, event) =
            h.connect_with("/ws/secure-chat?roomId=lobby", &[], &[("Authorization", "Bearer b")]).await;
        assert_eq!(event.rooms, ["lobby"]);
        h.mark(&event.connection_id, "served");
        expect_marker(&mut ws, "served").await;
    };
    let served = timeout(LIMIT, other).await;
    let (lock, changed) = &*held;
    let gate_returned_first = {
        let mut state = lock.lock().unwrap();
        state.1 = true;
        state.2
    };
    changed.notify_all();
    served.expect("another connection waited for the gate");
    assert!(!gate_returned_first, "another connection was served only once the gate returned");
    let joined = recv_json(&mut slow).await;
    assert_eq!((joined["type"].as_str(), joined["ref"].as_u64()), (Some("ok"), Some(1)), "{joined}");
}

/// A handler that never returns is cancelled at the handler deadline and
/// its sender told so; meanwhile its connection answers pings, and after
/// it the connection is served as before.
#[tokio::test]
async fn a_hung_handler_is_cancelled_and_its_connection_stays_alive_meanwhile() {
    let h = harness_with(config(|c| c.handler_timeout = Some(Duration::from_secs(2))), |e| e).await;
    let mut raw = raw_upgrade(h.addr, "/ws/chat?roomId=r", "").await;
    let started = tokio::time::Instant::now();
    raw.write_all(&masked(1, br#"{"roomId":"r","message":{"content":"!hang"}}"#)).await.unwrap();
    raw.write_all(&masked(9, b"alive?")).await.unwrap();
    let pong = timeout(LIMIT, read_frame(&mut raw)).await.expect("no pong while the handler ran");
    assert_eq!(pong, (0x8a, b"alive?".to_vec()));
    assert!(started.elapsed() < Duration::from_secs(2), "the pong waited for the handler");
    let (b0, error) = timeout(LIMIT, read_frame(&mut raw)).await.expect("the hung handler was never cancelled");
    assert_eq!(b0, 0x81);
    assert!(String::from_utf8_lossy(&error).contains("Handler timed out"), "{}", String::from_utf8_lossy(&error));
    raw.write_all(&masked(1, br#"{"roomId":"r","message":{"content":"!all again"}}"#)).await.unwrap();
    let (_, reply) = timeout(LIMIT, read_frame(&mut raw)).await.expect("not served after the cancelled handler");
    assert!(String::from_utf8_lossy(&reply).contains("again"), "{}", String::from_utf8_lossy(&reply));
}

/// A peer that pipelines thousands of small messages in one write does
/// not hold the runtime for all of them: read ahead, they need no I/O, so
/// the connection's task spends tokio's budget per message and yields when
/// it is spent. Counted on this test's one thread: another task that only
/// counts its turns gets one at every yield (before, a turn per 64 KiB
/// read: about three).
#[tokio::test]
async fn a_pipelined_burst_of_messages_lets_other_tasks_run_between_them() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let h = harness().await;
    let mut raw = raw_upgrade(h.addr, "/ws/chat?roomId=r", "").await;
    // 20 000 frames that are not Alepha frames, which the server reads and
    // ignores (no handler, no answer), then a ping.
    let mut burst: Vec<u8> = (0..20_000).flat_map(|_| masked(1, b"x")).collect();
    burst.extend(masked(9, b"end"));
    let turns = Arc::new(AtomicUsize::new(0));
    let counter = tokio::spawn({
        let turns = turns.clone();
        async move {
            loop {
                turns.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        }
    });
    raw.write_all(&burst).await.unwrap();
    let before = turns.load(Ordering::Relaxed);
    let pong = timeout(LIMIT, read_frame(&mut raw)).await.expect("no pong after the burst");
    assert_eq!(pong, (0x8a, b"end".to_vec()));
    let turns = turns.load(Ordering::Relaxed) - before;
    counter.abort();
    // 20 000 messages at tokio's budget of 128 per poll: over 150 yields.
    assert!(turns >= 50, "another task ran {turns} times while the burst was handled");
}

/// A connection refused for its user's cap has the user's other
/// connections checked at once: a dead one (its peer gone without a word)
/// is closed within the probe's window, not at the next keepalive, and the
/// user's next attempt is admitted.
#[tokio::test]
async fn a_refusal_at_the_user_cap_clears_the_users_dead_connections() {
    let mut h = harness_with(|b| b, |e| e.max_connections_per_user(1)).await;
    let dead = raw_upgrade(h.addr, "/ws/secure-chat?roomId=r", "Authorization: Bearer alice\r\n").await;
    let gone = h.next_connect().await;
    // From now on `dead` reads and writes nothing.
    let alice = [("Authorization", "Bearer alice")];
    let (mut refused, _) = h.try_connect("/ws/secure-chat?roomId=r", &[], &alice).await.unwrap();
    let (code, reason) = closed_with(&mut refused).await.unwrap();
    assert_eq!((code, reason.as_str()), (Some(CloseCode::Policy), "Max connections per user exceeded"));
    let started = tokio::time::Instant::now();
    let event = h.next_disconnect().await;
    assert_eq!(event.connection_id, gone.connection_id);
    assert!(started.elapsed() < Duration::from_secs(8), "the dead connection lasted until keepalive");
    let (_ws, event) = h.connect_with("/ws/secure-chat?roomId=r", &[], &alice).await;
    assert_eq!(event.user_id.as_deref(), Some("alice"));
    drop(dead);
}

/// A client that never reads and sends what earns it an answer (here
/// malformed envelopes, each answered with an error) fills its queue with
/// answers: it is a slow consumer like any other, closed with 1013, not
/// kept with its answers dropped in silence.
#[tokio::test]
async fn answers_to_a_client_that_never_reads_close_it_with_1013() {
    let mut h = harness_with(config(|c| c.socket.max_outbound = 32 * 1024), |e| e).await;
    let mut raw = raw_upgrade(h.addr, "/ws/chat", "Sec-WebSocket-Protocol: roomwire.v1.json\r\n").await;
    let event = h.next_connect().await;
    // Never read from here on. A masked text frame "x" (zero key), many.
    let garbage: Vec<u8> = std::iter::repeat_n([0x81u8, 0x81, 0, 0, 0, 0, b'x'], 20_000).flatten().collect();
    let writer = tokio::spawn(async move {
        let _ = raw.write_all(&garbage).await;
        raw
    });
    let gone = h.next_disconnect().await;
    assert_eq!(gone.connection_id, event.connection_id);
    assert_eq!((gone.code, gone.reason.as_str()), (Some(CloseCode::Again), "Outbound queue full"));
    writer.abort();
}

/// A client that sends a message and closes at once gets the handler's
/// answer before the closing handshake (here the answer of a handler cut
/// off by its deadline): its close waits unread while the handler runs.
#[tokio::test]
async fn a_close_right_after_a_message_waits_for_the_handlers_answer() {
    let h = harness_with(config(|c| c.handler_timeout = Some(Duration::from_millis(500))), |e| e).await;
    let mut raw = raw_upgrade(h.addr, "/ws/chat?roomId=r", "").await;
    let mut both = masked(1, br#"{"roomId":"r","message":{"content":"!hang"}}"#);
    both.extend(masked(8, &1000u16.to_be_bytes()));
    raw.write_all(&both).await.unwrap();
    let (b0, answer) = timeout(LIMIT, read_frame(&mut raw)).await.expect("no answer");
    assert_eq!(b0, 0x81, "the close came before the answer");
    assert!(String::from_utf8_lossy(&answer).contains("Handler timed out"), "{}", String::from_utf8_lossy(&answer));
    let (b0, code) = timeout(LIMIT, read_frame(&mut raw)).await.expect("no close");
    assert_eq!((b0, code.as_slice()), (0x88, &1000u16.to_be_bytes()[..]));
}

/// A short client frame, final, masked with a zero key (the payload as is).
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    [&[0x80 | opcode, 0x80 | payload.len() as u8, 0, 0, 0, 0], payload].concat()
}

/// One short unmasked frame from the server: its first byte and payload.
async fn read_frame(raw: &mut TcpStream) -> (u8, Vec<u8>) {
    let b0 = raw.read_u8().await.unwrap();
    let len = raw.read_u8().await.unwrap() as usize;
    assert!(len < 126);
    let mut payload = vec![0u8; len];
    raw.read_exact(&mut payload).await.unwrap();
    (b0, payload)
}

/// The HTTP status of a refused handshake.
fn refused_status<T>(result: &Result<T, roomwire_tokio::Error>) -> Option<u16> {
    use roomwire_tokio::roomwire_core::handshake::HandshakeError;
    match result {
        Err(roomwire_tokio::Error::Handshake(HandshakeError::Rejected { status })) => Some(*status),
        _ => None,
    }
}

/// The status line the server answers `request` with.
async fn answer_to(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut answer = vec![0u8; 64];
    let n = timeout(LIMIT, tcp.read(&mut answer)).await.expect("never answered").expect("reset before the answer");
    String::from_utf8_lossy(&answer[..n]).lines().next().unwrap_or_default().to_owned()
}

/// Alepha (Node's HTTP server) accepts 16 KiB of request headers: a
/// browser with a 12 KiB cookie jar is admitted by default, 17 KiB is
/// refused with 431, and the limit is the server's configuration.
#[tokio::test]
async fn request_headers_up_to_16_kib_are_accepted_by_default_and_the_limit_is_configurable() {
    let h = harness().await;
    let cookie = |len: usize| format!("Cookie: jar={}\r\n", "c".repeat(len));
    assert_eq!(
        answer_to(h.addr, &raw_request("/ws/chat", &cookie(12 * 1024))).await,
        "HTTP/1.1 101 Switching Protocols"
    );
    assert_eq!(
        answer_to(h.addr, &raw_request("/ws/chat", &cookie(17 * 1024))).await,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    // A proxy's worth of headers: 80 lines pass, over MAX_HEADERS do not.
    let lines = |n: usize| (0..n).map(|i| format!("X-Hop-{i}: v\r\n")).collect::<String>();
    assert_eq!(answer_to(h.addr, &raw_request("/ws/chat", &lines(80))).await, "HTTP/1.1 101 Switching Protocols");
    let over = roomwire_tokio::roomwire_core::handshake::MAX_HEADERS;
    assert_eq!(
        answer_to(h.addr, &raw_request("/ws/chat", &lines(over))).await,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );

    let small = harness_with(config(|c| c.socket.core.max_handshake_size = 4 * 1024), |e| e).await;
    assert_eq!(
        answer_to(small.addr, &raw_request("/ws/chat", &cookie(5 * 1024))).await,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
}

/// The rooms an Alepha handshake may name are bounded by the configured
/// rooms per connection alone: raised to 100, a query of 100 rooms joins
/// them all, and 101 closes with 1008.
#[tokio::test]
async fn a_handshake_may_name_as_many_rooms_as_the_configuration_allows() {
    let mut h = harness_with(config(|c| c.rooms.max_rooms_per_member = 100), |e| e).await;
    let rooms = |n: usize| (0..n).map(|i| format!("r{i}")).collect::<Vec<_>>().join(",");
    let (mut ws, event) = h.connect(&format!("/ws/chat?roomIds={}", rooms(100))).await;
    assert_eq!(event.rooms.len(), 100);
    assert_eq!(event.rooms.last().map(String::as_str), Some("r99"));
    h.server.emit::<Chat>(&Emit::to_room("r99"), &ChatIn::System { message: "last".into() }).unwrap();
    assert!(recv_text(&mut ws).await.contains("last"));
    let (mut over, _) = h.try_connect(&format!("/ws/chat?roomIds={}", rooms(101)), &[], &[]).await.unwrap();
    assert_eq!(
        closed_with(&mut over).await,
        Some((Some(CloseCode::Policy), "Too many rooms for this connection".to_owned()))
    );
    // Nothing of the refused connection stays in the rooms.
    assert_eq!(h.server.room_connections("r100").len(), 0);
    assert_eq!(h.server.room_connections("r0").len(), 1);
}

/// Alepha's heartbeat is the room server's default: a ping 30 s after
/// the upgrade and every 30 s; a client that answers stays, one that did
/// not answer the previous ping is dropped at the next (30–60 s, as
/// Alepha's). On tokio's paused clock, over an in-memory stream.
#[tokio::test(start_paused = true)]
async fn the_default_heartbeat_pings_every_30_s_and_drops_a_silent_client() {
    use roomwire_tokio::roomwire_core::session::KEEPALIVE;
    assert_eq!(
        roomwire_tokio::server::ServerConfig::default().socket.core.keepalive_interval,
        Some(KEEPALIVE),
        "the server's default"
    );
    assert_eq!(KEEPALIVE, CoreDuration::from_secs(30));
    let mut h = harness().await;
    let (mut client, server_side) = tokio::io::duplex(64 * 1024);
    let server = h.server.clone();
    tokio::spawn(async move { server.serve_stream(server_side, None).await });
    client.write_all(&raw_request("/ws/chat?roomId=r", "")).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(client.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    h.next_connect().await;
    let opened = tokio::time::Instant::now();

    // Two pings answered: at 30 s and 60 s.
    for n in 1..=2u32 {
        let (b0, payload) = duplex_frame(&mut client).await;
        assert_eq!(b0, 0x89, "a ping");
        assert_eq!(opened.elapsed().as_secs(), u64::from(30 * n));
        client.write_all(&client_frame(0x8a, &payload)).await.unwrap();
    }
    // The third goes unanswered: the fourth beat drops the client.
    let (b0, _) = duplex_frame(&mut client).await;
    assert_eq!((b0, opened.elapsed().as_secs()), (0x89, 90));
    // (Not `next_disconnect`: its 10 s guard runs on the paused clock too.)
    let gone = timeout(Duration::from_secs(60), h.disconnects.recv()).await.expect("never dropped").unwrap();
    assert_eq!(opened.elapsed().as_secs(), 120, "dropped at the next beat");
    assert_eq!(gone.code, None);
    assert!(h.server.room_connections("r").is_empty());
}

/// One server frame from an in-memory stream (short payloads).
async fn duplex_frame(stream: &mut tokio::io::DuplexStream) -> (u8, Vec<u8>) {
    let b0 = stream.read_u8().await.unwrap();
    let len = stream.read_u8().await.unwrap();
    assert!(len < 126);
    let mut payload = vec![0; usize::from(len)];
    stream.read_exact(&mut payload).await.unwrap();
    (b0, payload)
}

/// On a current-thread runtime, frames emitted to members waiting with
/// nothing to write, and getting them one at a time, go straight into their
/// sockets from the emitter; the others are queued. Emitters on four
/// threads of their own (racing the members' task for the sockets, and
/// switching members between the two ways as frames come apart or
/// together), messages from a few bytes to 40 KiB, one member reading in
/// bursts: every member gets every message whole, and each emitter's in the
/// order emitted. (A frame cut short by a full socket: the outbox's tests.)
#[tokio::test]
async fn frames_written_straight_to_members_arrive_whole_and_in_order() {
    const EMITTERS: usize = 4;
    const EACH: usize = 300;
    let mut h = harness_with(config(|c| c.socket.max_outbound = 256 << 20), |e| e).await;
    let (steady, _) = h.connect("/ws/chat?roomId=room").await;
    let (bursty, _) = h.connect("/ws/chat?roomId=room").await;
    let size = |e: usize, n: usize| (e * 7_919 + n * 104_729) % 40_000;
    let readers = [(steady, false), (bursty, true)].map(|(mut ws, bursty)| {
        tokio::spawn(async move {
            let mut next = [0usize; EMITTERS];
            for i in 0..EMITTERS * EACH {
                if bursty && i % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let text = match timeout(LIMIT, ws.recv()).await.expect("a member stalled") {
                    Some(Ok(Message::Text(text))) => text,
                    other => panic!("member: {other:?}"),
                };
                let message = text.split_once(r#""message":"e"#).expect("a system message").1;
                let (e, rest) = message.split_once(':').unwrap();
                let (n, rest) = rest.split_once(':').unwrap();
                let (e, n): (usize, usize) = (e.parse().unwrap(), n.parse().unwrap());
                assert_eq!(n, next[e], "emitter {e}'s messages out of order");
                next[e] += 1;
                let padding = rest.split_once('"').unwrap().0;
                assert!(padding.len() == size(e, n) && padding.bytes().all(|b| b == b'z'), "message {e}:{n} cut");
            }
            assert_eq!(next, [EACH; EMITTERS]);
        })
    });
    let emitters: Vec<_> = (0..EMITTERS)
        .map(|e| {
            let server = h.server.clone();
            std::thread::spawn(move || {
                for n in 0..EACH {
                    let message = format!("e{e}:{n}:{}", "z".repeat(size(e, n)));
                    server.emit::<Chat>(&Emit::to_room("room"), &ChatIn::System { message }).unwrap();
                    if n % 16 == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            })
        })
        .collect();
    for reader in readers {
        timeout(LIMIT * 3, reader).await.expect("a member did not get everything").unwrap();
    }
    for emitter in emitters {
        emitter.join().unwrap();
    }
}

/// A connection refused a place after its upgrade (a full room) keeps its
/// place under the server's connection cap until its closing handshake is
/// done: a client that never answers the close cannot open connections
/// past the cap with it.
#[tokio::test]
async fn a_refused_connection_holds_its_place_under_the_cap_until_closed() {
    let mut h = harness_with(
        config(|c| {
            c.max_connections = 2;
            c.rooms.max_members_per_room = 1;
            c.socket.core.close_timeout = CoreDuration::from_millis(300);
        }),
        |e| e,
    )
    .await;
    let (_member, _) = h.connect("/ws/chat?roomId=a").await;
    // Refused (the room is full): its 101, then a close it never answers.
    let silent = raw_upgrade(h.addr, "/ws/chat?roomId=a", "").await;
    match h.try_connect("/ws/chat?roomId=b", &[], &[]).await {
        Err(roomwire_tokio::Error::Handshake(roomwire_tokio::roomwire_core::handshake::HandshakeError::Rejected {
            status: 503,
        })) => {}
        other => panic!("the refused connection gave its place back early: {:?}", other.map(|_| ())),
    }
    // Its close timed out: the place is back.
    assert!(connects_within_limit(&h, "/ws/chat?roomId=b").await, "the place never came back");
    drop(silent);
}
