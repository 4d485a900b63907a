//! Alepha's `$websocket` behaviours (reference §4: 2–4, 82–85, 88–89,
//! 99–117) against the room server over loopback TCP, with raw clients on
//! the Alepha wire; plus the HTTP refusals and limits of admission.

mod server_support;

use roomwire_tokio::roomwire_core::handshake::HandshakeError;
use roomwire_tokio::server::{
    Admission, BuildError, Emit, Endpoint, HandlerFailure, MembershipChange, MembershipError, Server, ServerConfig,
};
use roomwire_tokio::{CloseCode, Error, MessageRef};
use serde_json::json;
use server_support::*;

fn rejected(result: Result<(Client, Option<String>), Error>) -> u16 {
    match result {
        Err(Error::Handshake(HandshakeError::Rejected { status })) => status,
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, the upgrade succeeded"),
    }
}

#[tokio::test]
async fn b2_reply_except_self_reaches_the_others_once_with_the_sender_id() {
    let mut h = harness().await;
    let (mut c1, e1) = h.connect("/ws/chat?roomId=room-1").await;
    let (mut c2, e2) = h.connect("/ws/chat?roomId=room-1").await;
    say(&mut c1, "room-1", "Hello from client 1!").await;
    let got = recv_json(&mut c2).await;
    assert_eq!(
        got,
        json!({"type": "append", "content": "Hello from client 1!", "username": e1.connection_id, "__alephaRoom": "room-1"})
    );
    assert!(got["username"].as_str().unwrap().contains("ws-"));
    // Exactly once to c2, never to c1.
    h.mark(&e2.connection_id, "after");
    expect_marker(&mut c2, "after").await;
    h.mark(&e1.connection_id, "after");
    expect_marker(&mut c1, "after").await;
}

#[tokio::test]
async fn b3_b4_a_room_emit_reaches_that_room_only() {
    let mut h = harness().await;
    let (mut c1, _) = h.connect("/ws/chat?roomId=room-1").await;
    let (mut c2, _) = h.connect("/ws/chat?roomId=room-1").await;
    let (mut other, eo) = h.connect("/ws/chat?roomId=room-2").await;
    say(&mut c1, "room-1", "first").await;
    assert_eq!(recv_json(&mut c2).await["content"], "first");
    let n = h.server.emit::<Chat>(&Emit::to_room("room-1"), &ChatIn::System { message: "to room-1".into() }).unwrap();
    assert_eq!(n, 2);
    let expected = json!({"type": "system", "message": "to room-1", "__alephaRoom": "room-1"});
    assert_eq!(recv_json(&mut c1).await, expected);
    assert_eq!(recv_json(&mut c2).await, expected, "client 2 gets it as its second message");
    h.mark(&eo.connection_id, "isolation");
    expect_marker(&mut other, "isolation").await;
}

#[tokio::test]
async fn b82_b83_b84_secure_endpoints_refuse_anonymous_with_401() {
    let mut h = harness().await;
    assert_eq!(rejected(h.try_connect("/ws/secure-chat?roomId=a", &[], &[]).await), 401);
    let (mut alice, event) =
        h.connect_with("/ws/secure-chat?roomId=a", &[], &[("Authorization", "Bearer alice")]).await;
    assert_eq!(event.user_id.as_deref(), Some("alice"));
    assert_eq!(event.path, "/ws/secure-chat");
    say(&mut alice, "a", "!all hi").await;
    assert_eq!(recv_json(&mut alice).await["username"], "alice");
    // The non-secure endpoint takes anonymous connections.
    let (_anonymous, event) = h.connect("/ws/chat").await;
    assert_eq!(event.user_id, None);
}

#[tokio::test]
async fn b85_the_connection_over_the_per_user_cap_is_closed_with_1008() {
    let mut h = harness_with(|b| b, |e| e.max_connections_per_user(1)).await;
    let auth = [("Authorization", "Bearer bob")];
    let (mut first, first_event) = h.connect_with("/ws/secure-chat", &[], &auth).await;
    let (mut second, _) = h.try_connect("/ws/secure-chat", &[], &auth).await.expect("accepted, then closed");
    assert_eq!(
        closed_with(&mut second).await,
        Some((Some(CloseCode::Policy), "Max connections per user exceeded".to_owned()))
    );
    // The first one is untouched; another user is not counted.
    h.mark(&first_event.connection_id, "still here");
    expect_marker(&mut first, "still here").await;
    let (_carol, event) = h.connect_with("/ws/secure-chat", &[], &[("Authorization", "Bearer carol")]).await;
    assert_eq!(event.user_id.as_deref(), Some("carol"));
    assert_eq!(h.server.user_connections("bob").len(), 1);
}

#[tokio::test]
async fn b88_b89_b99_hooks_fire_with_the_path_and_uuid_connection_ids() {
    let mut h = harness().await;
    let (mut ws, connected) = h.connect("/ws/chat?roomId=lobby").await;
    assert!(is_ws_uuid(&connected.connection_id), "{}", connected.connection_id);
    assert!(!connected.connection_id["ws-".len()..].chars().all(|c| c.is_ascii_digit()));
    assert_eq!(connected.rooms, ["lobby"]);
    assert_eq!(connected.path, "/ws/chat");
    say(&mut ws, "lobby", "hello").await;
    let (id, path, data) = tokio::time::timeout(LIMIT, h.messages.recv()).await.unwrap().unwrap();
    assert_eq!((id.as_str(), path), (connected.connection_id.as_str(), "/ws/chat"));
    assert_eq!(data, br#"{"message":{"content":"hello"},"roomId":"lobby"}"#);
    ws.close(CloseCode::Normal, "bye").await.unwrap();
    // The server echoes the code (RFC 6455 §5.5.1).
    assert_eq!(closed_with(&mut ws).await.and_then(|(code, _)| code), Some(CloseCode::Normal));
    let gone = h.next_disconnect().await;
    assert_eq!(gone.connection_id, connected.connection_id);
    assert_eq!(gone.rooms, ["lobby"]);
    assert_eq!(gone.path, "/ws/chat");
    assert_eq!(gone.code, Some(CloseCode::Normal));
    // Two connections never share an id.
    let (_a, a) = h.connect("/ws/chat").await;
    let (_b, b) = h.connect("/ws/chat").await;
    assert_ne!(a.connection_id, b.connection_id);
}

#[tokio::test]
async fn b100_b101_rooms_come_from_the_query() {
    let mut h = harness().await;
    let (_none, e) = h.connect("/ws/chat").await;
    assert_eq!(e.rooms, ["default"]);
    let (_abc, e) = h.connect("/ws/chat?roomIds=a,b,c").await;
    assert_eq!(e.rooms, ["a", "b", "c"]);
    let (_mixed, e) = h.connect("/ws/chat?roomId=x&roomIds=%20a,,b&roomId=y").await;
    assert_eq!(e.rooms, ["x", "y", "a", "b"]);
    assert_eq!(h.server.connection(&e.connection_id).unwrap().rooms, ["x", "y", "a", "b"]);
}

#[tokio::test]
async fn b102_b114_b115_registries_track_opens_and_closes() {
    let mut h = harness().await;
    assert!(h.server.connections().is_empty());
    let (mut a, ea) = h.connect("/ws/chat?roomId=lobby").await;
    let (mut b, _) = h.connect("/ws/chat?roomIds=lobby,other").await;
    assert_eq!(h.server.connections().len(), 2);
    assert_eq!(h.server.room_connections("lobby").len(), 2);
    assert_eq!(h.server.room_connections("other").len(), 1);
    assert_eq!(h.server.room_connections("nowhere").len(), 0);
    a.close(CloseCode::Normal, "").await.unwrap();
    closed_with(&mut a).await;
    assert_eq!(h.next_disconnect().await.connection_id, ea.connection_id);
    assert_eq!(h.server.connections().len(), 1);
    assert_eq!(h.server.room_connections("lobby").len(), 1);
    b.close(CloseCode::Normal, "").await.unwrap();
    closed_with(&mut b).await;
    h.next_disconnect().await;
    assert_eq!(h.server.connection_count(), 0);
    assert_eq!(h.server.room_connections("lobby").len(), 0);
}

#[tokio::test]
async fn b103_the_handler_sees_connection_room_and_message() {
    let mut h = harness().await;
    let (mut ws, e) = h.connect("/ws/chat?roomId=lobby").await;
    send_text(&mut ws, r#"{"content":"hello"}"#).await;
    let handled = h.next_handled().await;
    assert_eq!(handled.connection_id, e.connection_id);
    assert_eq!(handled.room_id, "lobby");
    assert_eq!(handled.content, "hello");
    assert_eq!(handled.user_id, None);
    // A string with escapes (borrowing is not possible) works too.
    send_text(&mut ws, r#"{"content":"say \"hi\"\n"}"#).await;
    assert_eq!(h.next_handled().await.content, "say \"hi\"\n");
}

#[tokio::test]
async fn b104_b105_invalid_messages_answer_an_error_and_non_json_is_ignored() {
    let mut h = harness().await;
    let (mut ws, e) = h.connect("/ws/chat?roomId=lobby").await;
    send_text(&mut ws, r#"{"message":{"content":42}}"#).await;
    let error = recv_json(&mut ws).await;
    assert!(error["error"].as_str().unwrap().starts_with("Message validation failed: "), "{error}");
    send_text(&mut ws, "not json at all").await;
    send_text(&mut ws, "!all ok").await; // not JSON either
    say(&mut ws, "lobby", "!all valid").await;
    // Only the valid one reached the handler, and nothing answered the rest.
    assert_eq!(h.next_handled().await.content, "!all valid");
    assert_eq!(recv_json(&mut ws).await["content"], "valid");
    h.mark(&e.connection_id, "end");
    expect_marker(&mut ws, "end").await;
    assert!(h.handled.try_recv().is_err());
}

#[tokio::test]
async fn handler_errors_and_panics_answer_the_sender_and_keep_the_connection() {
    let mut h = harness().await;
    let (mut ws, _) = h.connect("/ws/chat?roomId=lobby").await;
    let (mut other, eo) = h.connect("/ws/chat?roomId=lobby").await;
    say(&mut ws, "lobby", "!fail").await;
    assert_eq!(recv_json(&mut ws).await, json!({"error": "handler boom"}));
    say(&mut ws, "lobby", "!panic").await;
    // Like Alepha for a thrown non-Error (PROTOCOL.md §2.4); the panic's
    // message stays on the server.
    assert_eq!(recv_json(&mut ws).await, json!({"error": "Unknown error"}));
    say(&mut ws, "lobby", "!all still open").await;
    assert_eq!(recv_json(&mut ws).await["content"], "still open");
    // The other member saw only the successful reply.
    assert_eq!(recv_json(&mut other).await["content"], "still open");
    h.mark(&eo.connection_id, "end");
    expect_marker(&mut other, "end").await;
}

#[tokio::test]
async fn b90_a_frame_naming_an_unjoined_room_is_handled_in_the_first_room() {
    let mut h = harness().await;
    let (mut spy, _) = h.connect("/ws/chat?roomIds=a,b").await;
    let (mut victim, ev) = h.connect("/ws/chat?roomId=secret").await;
    say(&mut spy, "secret", "!all sneaky").await;
    assert_eq!(h.next_handled().await.room_id, "a");
    assert_eq!(recv_json(&mut spy).await["__alephaRoom"], "a");
    h.mark(&ev.connection_id, "clean");
    expect_marker(&mut victim, "clean").await;
    say(&mut spy, "b", "!all ok").await;
    assert_eq!(h.next_handled().await.room_id, "b");
}

/// Four clients: a1 and a2 (alice) in room a, b (bob) in room b, c (alice)
/// in room c.
async fn three_rooms(h: &mut Harness) -> Vec<(Client, String)> {
    let mut clients = Vec::new();
    for (target, user) in [
        ("/ws/chat?roomId=a", None),
        ("/ws/chat?roomId=a", Some("alice")),
        ("/ws/chat?roomId=b", Some("bob")),
        ("/ws/chat?roomId=c", Some("alice")),
    ] {
        let auth = user.map(|u| format!("Bearer {u}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let (ws, e) = h.connect_with(target, &[], &headers).await;
        clients.push((ws, e.connection_id));
    }
    clients
}

/// Emit `target`, then which of `clients` got it (each is then marked, so
/// a second copy or a stray frame would fail the next check).
async fn reached(h: &Harness, clients: &mut [(Client, String)], target: &Emit) -> Vec<usize> {
    let message = ChatIn::System { message: "x".into() };
    let n = h.server.emit::<Chat>(target, &message).unwrap();
    let mut got = Vec::new();
    for (index, (ws, id)) in clients.iter_mut().enumerate() {
        h.mark(id, "m");
        let first = recv_json(ws).await;
        if first["message"] == "x" {
            got.push(index);
            expect_marker(ws, "m").await;
        } else {
            assert_eq!(first, json!({"type": "system", "message": "m"}));
        }
    }
    assert_eq!(n, got.len(), "emit's count");
    got
}

#[tokio::test]
async fn b106_to_b110_emit_targets_and_exclusions() {
    let mut h = harness().await;
    let mut c = three_rooms(&mut h).await;
    let ids: Vec<String> = c.iter().map(|(_, id)| id.clone()).collect();
    // 106: no target: every room, unlabelled.
    h.server.emit::<Chat>(&Emit::new(), &ChatIn::System { message: "global".into() }).unwrap();
    for (ws, _) in &mut c {
        assert_eq!(recv_json(ws).await, json!({"type": "system", "message": "global"}));
    }
    // 107, 108: rooms.
    assert_eq!(reached(&h, &mut c, &Emit::to_room("a")).await, [0, 1]);
    assert_eq!(reached(&h, &mut c, &Emit::to_room("a").room("c")).await, [0, 1, 3]);
    // 109: except a connection.
    assert_eq!(reached(&h, &mut c, &Emit::to_room("a").except_connection(&ids[0])).await, [1]);
    // 110: one connection, unlabelled.
    h.server.emit::<Chat>(&Emit::to_connection(&ids[2]), &ChatIn::System { message: "direct".into() }).unwrap();
    assert_eq!(recv_json(&mut c[2].0).await, json!({"type": "system", "message": "direct"}));
    assert_eq!(reached(&h, &mut c, &Emit::to_connection(&ids[2])).await, [2]);
    // Users, and excluded users.
    assert_eq!(reached(&h, &mut c, &Emit::to_user("alice")).await, [1, 3]);
    assert_eq!(reached(&h, &mut c, &Emit::to_room("a").room("b").room("c").except_user("alice")).await, [0, 2]);
    assert_eq!(reached(&h, &mut c, &Emit::to_user("nobody")).await, Vec::<usize>::new());
    assert_eq!(reached(&h, &mut c, &Emit::to_connection("ws-gone")).await, Vec::<usize>::new());
    // A connection in several targeted rooms gets one frame, labelled with the first.
    let (mut both, eb) = h.connect("/ws/chat?roomIds=x,y").await;
    h.server.emit::<Chat>(&Emit::to_room("y").room("x"), &ChatIn::System { message: "hi".into() }).unwrap();
    assert_eq!(recv_json(&mut both).await, json!({"type": "system", "message": "hi", "__alephaRoom": "y"}));
    h.mark(&eb.connection_id, "once");
    expect_marker(&mut both, "once").await;
}

#[tokio::test]
async fn b111_b112_b113_reply_targets() {
    let mut h = harness().await;
    let (mut a1, e1) = h.connect("/ws/chat?roomId=room-a").await;
    let (mut a2, _) = h.connect("/ws/chat?roomId=room-a").await;
    let (mut b1, eb) = h.connect("/ws/chat?roomId=room-b").await;
    // 111: without exceptSelf the sender gets its own reply.
    say(&mut a1, "room-a", "!all one").await;
    assert_eq!(recv_json(&mut a1).await["content"], "one");
    assert_eq!(recv_json(&mut a2).await["content"], "one");
    // 112: exceptSelf.
    say(&mut a1, "room-a", "two").await;
    assert_eq!(recv_json(&mut a2).await["content"], "two");
    // 113: reply to another room, one the sender never joined.
    say(&mut a1, "room-a", "!to:room-b three").await;
    assert_eq!(
        recv_json(&mut b1).await,
        json!({"type": "append", "content": "three", "username": e1.connection_id, "__alephaRoom": "room-b"})
    );
    h.mark(&e1.connection_id, "end");
    expect_marker(&mut a1, "end").await;
    h.mark(&eb.connection_id, "end");
    expect_marker(&mut b1, "end").await;
}

#[tokio::test]
async fn b116_close_connection_sends_the_code() {
    let mut h = harness().await;
    let (mut ws, e) = h.connect("/ws/chat").await;
    // Codes no close frame may carry are refused, the connection left open.
    for code in [1005, 1006, 1015, 999, 5000] {
        assert!(!h.server.close_connection(&e.connection_id, CloseCode::from(code), "no"), "{code}");
    }
    assert!(h.server.close_connection(&e.connection_id, CloseCode::from(4000), "kicked"));
    assert_eq!(closed_with(&mut ws).await, Some((Some(CloseCode::from(4000)), "kicked".to_owned())));
    let gone = h.next_disconnect().await;
    assert_eq!((gone.code, gone.reason.as_str()), (Some(CloseCode::from(4000)), "kicked"));
    assert!(!h.server.close_connection(&e.connection_id, CloseCode::Normal, ""));
    assert!(!h.server.close_connection("ws-nope", CloseCode::Normal, ""));
}

#[tokio::test]
async fn b117_shutdown_closes_every_client_with_1001_and_stops_accepting() {
    let mut h = harness().await;
    let (mut a, _) = h.connect("/ws/chat?roomId=a").await;
    let (mut b, _) = h.connect("/ws/secure-chat?token=zoe").await;
    let server = h.server.clone();
    let shutdown = tokio::spawn(async move { server.shutdown().await });
    for ws in [&mut a, &mut b] {
        assert_eq!(closed_with(ws).await, Some((Some(CloseCode::Away), "Server shutting down".to_owned())));
    }
    tokio::time::timeout(LIMIT, shutdown).await.unwrap().unwrap();
    assert!(tokio::time::timeout(LIMIT, &mut h.serving).await.unwrap().unwrap().is_ok(), "serve returns");
    assert_eq!(h.server.connection_count(), 0);
    assert!(h.try_connect("/ws/chat", &[], &[]).await.is_err(), "no longer accepting");
}

#[tokio::test]
async fn unknown_paths_get_404() {
    let h = harness().await;
    assert_eq!(rejected(h.try_connect("/ws/nope", &[], &[]).await), 404);
    assert_eq!(rejected(h.try_connect("/ws/chat/extra", &[], &[]).await), 404);
}

#[tokio::test]
async fn the_global_cap_refuses_with_503() {
    let mut h = harness_with(
        |b| {
            let mut config = ServerConfig::default();
            config.max_connections = 1;
            b.config(config)
        },
        |e| e,
    )
    .await;
    let (mut first, _) = h.connect("/ws/chat").await;
    assert_eq!(rejected(h.try_connect("/ws/chat", &[], &[]).await), 503);
    first.close(CloseCode::Normal, "").await.unwrap();
    closed_with(&mut first).await;
    h.next_disconnect().await;
    let (_again, _) = h.connect("/ws/chat").await;
}

#[tokio::test]
async fn an_oversized_message_closes_with_1009_and_frees_the_connection() {
    let mut h = harness_with(
        |b| {
            let mut config = ServerConfig::default();
            config.socket.core.max_message_size = 1024;
            b.config(config)
        },
        |e| e,
    )
    .await;
    let (mut ws, _) = h.connect("/ws/chat?roomId=lobby").await;
    let big = format!(r#"{{"content":"{}"}}"#, "x".repeat(2000));
    ws.send(MessageRef::Text(&big)).await.unwrap();
    let (code, _) = closed_with(&mut ws).await.expect("a close frame");
    assert_eq!(code, Some(CloseCode::MessageTooBig));
    let gone = h.next_disconnect().await;
    assert_eq!(gone.code, None, "the core failed the connection");
    assert!(h.handled.try_recv().is_err());
    assert_eq!(h.server.connection_count(), 0);
}

#[tokio::test]
async fn authorize_decides_alone_and_can_override_the_room() {
    let server = Server::builder()
        .endpoint(
            Endpoint::<Chat>::new(|ctx| {
                Box::pin(async move {
                    ctx.reply(&ChatIn::System {
                        message: format!("{}@{}", ctx.user_id().unwrap_or("-"), ctx.room_id()),
                    })?;
                    Ok(())
                })
            })
            .authorize(|handshake| {
                let token = handshake.query_param("token").map(|t| t.into_owned());
                let cookie = handshake.cookie_value("session").map(str::to_owned);
                async move {
                    // Await something, as a real hook would.
                    tokio::task::yield_now().await;
                    match (token.as_deref(), cookie) {
                        (Some("let-me-in"), _) => Admission::user("ann").with_room("ann-room"),
                        (_, Some(session)) => Admission::user(session),
                        (Some("slow"), None) => Admission::refuse(429, "Too Many Requests"),
                        _ => Admission::refuse(403, "Forbidden"),
                    }
                }
            }),
        )
        .build()
        .unwrap();
    let (addr, _serving) = serve_on_loopback(&server).await;
    assert_eq!(rejected(try_connect(addr, "/ws/chat?roomId=x", &[], &[]).await), 403);
    assert_eq!(rejected(try_connect(addr, "/ws/chat?token=slow", &[], &[]).await), 429);
    let (mut ws, _) = try_connect(addr, "/ws/chat?roomId=x&token=let-me-in", &[], &[]).await.unwrap();
    send_text(&mut ws, r#"{"content":"?"}"#).await;
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type": "system", "message": "ann@ann-room", "__alephaRoom": "ann-room"})
    );
    let (mut ws, _) = try_connect(addr, "/ws/chat?roomId=r", &[], &[("Cookie", "a=b; session=sid-7")]).await.unwrap();
    send_text(&mut ws, r#"{"content":"?"}"#).await;
    assert_eq!(recv_json(&mut ws).await["message"], "sid-7@r");
}

#[test]
fn an_endpoint_has_one_way_in() {
    let endpoint =
        Endpoint::<Chat>::new(|_| Box::pin(async { Ok(()) })).authorize(|_| async { Admission::accept() }).secure();
    let err = Server::builder().endpoint(endpoint).build().unwrap_err();
    assert_eq!(err, BuildError::AuthorizeAndSecure("/ws/chat"));
    assert!(err.to_string().contains("declares both authorize and secure"));
    let secure_alone = Endpoint::<Chat>::new(|_| Box::pin(async { Ok(()) })).secure();
    assert_eq!(
        Server::builder().endpoint(secure_alone).build().unwrap_err(),
        BuildError::SecureWithoutResolver("/ws/chat")
    );
    let twice = || Endpoint::<Chat>::new(|_| Box::pin(async { Ok(()) }));
    assert_eq!(
        Server::builder().endpoint(twice()).endpoint(twice()).build().unwrap_err(),
        BuildError::DuplicatePath("/ws/chat")
    );
}

#[tokio::test]
async fn emitting_on_a_channel_the_server_does_not_serve_fails() {
    roomwire_tokio::roomwire_core::channel! {
        /// Not registered.
        pub struct Elsewhere { path: "/ws/elsewhere", in: ChatIn, out: ChatOut<'a> }
    }
    roomwire_tokio::roomwire_core::channel! {
        /// Same path as the registered chat, another type.
        pub struct Impostor { path: "/ws/chat", in: ChatIn, out: ChatOut<'a> }
    }
    let h = harness().await;
    let message = ChatIn::System { message: "x".into() };
    assert!(h.server.emit::<Elsewhere>(&Emit::new(), &message).is_err());
    assert!(h.server.emit::<Impostor>(&Emit::new(), &message).is_err());
    assert_eq!(h.server.emit::<Chat>(&Emit::new(), &message), Ok(0));
}

/// Alepha's `websocket:error`: every handler failure (an error, a blank
/// error, a panic, a timeout) reaches `on_error` with the sender, its
/// user, the path and the room, while the sender gets PROTOCOL.md §2.4's
/// text and keeps its connection.
#[tokio::test]
async fn handler_failures_reach_the_error_hook_and_the_sender() {
    let (tx, mut failures) = tokio::sync::mpsc::unbounded_channel();
    let mut h = harness_with(
        |builder| {
            config(|c| c.handler_timeout = Some(std::time::Duration::from_millis(300)))(builder).on_error(
                move |event| {
                    let failure = match event.failure {
                        HandlerFailure::Error(error) => format!("error: {error}"),
                        HandlerFailure::Panic(message) => format!("panic: {message}"),
                        HandlerFailure::TimedOut(limit) => format!("timeout: {limit:?}"),
                        other => format!("{other}"),
                    };
                    let _ = tx.send((
                        event.connection_id.to_owned(),
                        event.user_id.map(str::to_owned),
                        event.path,
                        event.room_id.to_owned(),
                        failure,
                    ));
                },
            )
        },
        |e| e,
    )
    .await;
    let (mut ws, e) = h.connect("/ws/chat?roomIds=a,b&token=ann").await;
    let mut next_failure =
        async || tokio::time::timeout(LIMIT, failures.recv()).await.expect("no error event").unwrap();
    let expect = |room: &str, failure: &str| {
        (e.connection_id.clone(), Some("ann".to_owned()), "/ws/chat", room.to_owned(), failure.to_owned())
    };

    say(&mut ws, "b", "!fail").await;
    assert_eq!(recv_json(&mut ws).await, json!({"error": "handler boom"}));
    assert_eq!(next_failure().await, expect("b", "error: handler boom"));

    say(&mut ws, "a", "!fail-blank").await;
    assert_eq!(recv_json(&mut ws).await, json!({"error": "Unknown error"}));
    assert_eq!(next_failure().await, expect("a", "error:  "));

    say(&mut ws, "a", "!panic").await;
    assert_eq!(recv_json(&mut ws).await, json!({"error": "Unknown error"}));
    assert_eq!(next_failure().await, expect("a", "panic: handler panicked on purpose"));

    say(&mut ws, "b", "!hang").await;
    assert_eq!(recv_json(&mut ws).await, json!({"error": "Handler timed out"}));
    assert_eq!(next_failure().await, expect("b", "timeout: 300ms"));

    // Still open, and a handler that succeeds reports nothing.
    say(&mut ws, "a", "!all fine").await;
    assert_eq!(recv_json(&mut ws).await["content"], "fine");
    assert!(failures.try_recv().is_err());
}

/// Alepha's room manager: the application joins and leaves a connection
/// by id, under the channel's rules and the room limits, and reads the
/// rooms' statistics from the server.
#[tokio::test]
async fn the_application_joins_and_leaves_connections_by_id_and_reads_room_stats() {
    use MembershipChange::{Changed, Unchanged};
    let mut h = harness_with(config(|c| c.rooms.max_rooms_per_member = 2), |e| e).await;
    let (mut ws, e) = h.connect("/ws/chat?roomId=lobby").await;
    let (mut other, eo) = h.connect("/ws/chat?roomId=lobby").await;
    let id = e.connection_id.as_str();
    assert_eq!(h.server.join_room(id, "mods"), Ok(Changed));
    assert_eq!(h.server.join_room(id, "mods"), Ok(Unchanged));
    assert!(h.server.is_in_room(id, "mods"));
    assert!(!h.server.is_in_room(&eo.connection_id, "mods"));
    assert_eq!(h.server.connection(id).unwrap().rooms, ["lobby", "mods"]);

    // The room's emits reach it, labelled; its own messages may name it.
    h.server.emit::<Chat>(&Emit::to_room("mods"), &ChatIn::System { message: "mods only".into() }).unwrap();
    assert_eq!(recv_json(&mut ws).await, json!({"type": "system", "message": "mods only", "__alephaRoom": "mods"}));
    say(&mut ws, "mods", "!all hi mods").await;
    assert_eq!(h.next_handled().await.room_id, "mods");
    assert_eq!(recv_json(&mut ws).await["__alephaRoom"], "mods");

    let stats = h.server.room_stats();
    assert_eq!(stats.total_rooms(), 2);
    assert_eq!(stats.room_size("/ws/chat", "lobby"), 2);
    assert_eq!(stats.room_size("/ws/chat", "mods"), 1);
    assert_eq!(stats.connections, 2);
    assert!(stats.complete);

    // The rules a client's join meets.
    let refused = |reason| Err(MembershipError::Refused(reason));
    assert_eq!(h.server.join_room(id, "third"), refused("Too many rooms for this connection"));
    assert_eq!(h.server.join_room(id, ""), refused("Invalid room id"));
    assert_eq!(h.server.join_room(id, &"x".repeat(65)), refused("Invalid room id"));
    assert_eq!(h.server.join_room("ws-nobody", "x"), Err(MembershipError::NoSuchConnection));
    assert_eq!(h.server.leave_room("ws-nobody", "x"), Err(MembershipError::NoSuchConnection));

    assert_eq!(h.server.leave_room(id, "mods"), Ok(Changed));
    assert_eq!(h.server.leave_room(id, "mods"), Ok(Unchanged));
    let stats = h.server.room_stats();
    assert_eq!((stats.total_rooms(), stats.room_size("/ws/chat", "mods")), (1, 0), "an emptied room is deleted");
    // The other member saw none of the room's traffic.
    h.mark(&eo.connection_id, "end");
    expect_marker(&mut other, "end").await;
    // A room the application gave is left when the connection ends.
    h.server.join_room(id, "mods").unwrap();
    drop(ws);
    assert_eq!(h.next_disconnect().await.rooms, ["lobby", "mods"]);
    assert_eq!(h.server.room_stats().room_size("/ws/chat", "mods"), 0);
}

/// `reply` with `exceptConnectionIds` / `exceptUserIds` (Alepha's reply
/// options): the room less those connections, or less every connection
/// of those users; without `exceptSelf` the sender is reached too.
#[tokio::test]
async fn reply_except_connections_and_users_skips_exactly_them() {
    let mut h = harness().await;
    let (mut sender, es) = h.connect("/ws/chat?roomId=r&token=sam").await;
    let (mut ann1, ea1) = h.connect("/ws/chat?roomId=r&token=ann").await;
    let (mut ann2, ea2) = h.connect("/ws/chat?roomId=r&token=ann").await;
    let (mut bob, eb) = h.connect("/ws/chat?roomId=r&token=bob").await;
    // Bob (the last) is reached every time: once he has the reply, every
    // recipient has it queued (one emit queues them all), so a marker sent
    // then comes after it wherever it was queued.
    let reached = async |h: &mut Harness, clients: &mut [&mut Client], ids: [&str; 4], text: &str| {
        let [.., bob] = clients else { unreachable!() };
        assert_eq!(recv_json(bob).await["content"], text);
        let mut got = Vec::new();
        for (i, (client, id)) in clients.iter_mut().zip(ids).take(3).enumerate() {
            h.mark(id, "fence");
            let first = recv_json(client).await;
            if first.get("content") == Some(&json!(text)) {
                got.push(i);
                expect_marker(client, "fence").await;
            } else {
                assert_eq!(first, json!({"type": "system", "message": "fence"}));
            }
        }
        got.push(3);
        got
    };
    let ids = [es.connection_id.as_str(), &ea1.connection_id, &ea2.connection_id, &eb.connection_id];

    say(&mut sender, "r", &format!("!except-conn:{} one", ea1.connection_id)).await;
    let mut all = [&mut sender, &mut ann1, &mut ann2, &mut bob];
    assert_eq!(reached(&mut h, &mut all, ids, "one").await, [0, 2, 3], "all but ann's first connection");

    say(all[0], "r", "!except-user:ann two").await;
    assert_eq!(reached(&mut h, &mut all, ids, "two").await, [0, 3], "all but both of ann's connections");

    say(all[0], "r", "!except-user:sam three").await;
    assert_eq!(reached(&mut h, &mut all, ids, "three").await, [1, 2, 3], "the sender's own user excluded");
}

/// An endpoint's `on_connect` that never ends is cancelled at the handler
/// timeout: the connection's messages are handled after it, not never.
#[tokio::test]
async fn an_on_connect_hook_that_never_ends_is_cancelled_at_the_handler_timeout() {
    let mut h = harness_with(config(|c| c.handler_timeout = Some(std::time::Duration::from_millis(300))), |endpoint| {
        endpoint.on_connect(|_, _| std::future::pending::<()>())
    })
    .await;
    let (mut ws, _) = h.connect_with("/ws/secure-chat?roomId=vault", &[], &[("Authorization", "Bearer ann")]).await;
    say(&mut ws, "vault", "!all after the hook").await;
    assert_eq!(recv_json(&mut ws).await["content"], "after the hook");
}

/// An endpoint's own `on_connect` and `on_disconnect` (Alepha's
/// `$websocket` hooks) get the server and the event; `on_connect` runs
/// once the connection is in its rooms and ends before its first message
/// is handled (what it emits goes first); `on_disconnect` runs once it
/// has left its rooms, after the server-wide hook.
#[tokio::test]
async fn endpoint_connect_and_disconnect_hooks_run_around_the_connection() {
    use std::sync::{Arc, Mutex};
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let (on_connect_log, on_disconnect_log) = (log.clone(), log.clone());
    let mut h = harness_with(
        |b| b,
        move |endpoint| {
            endpoint
                .on_connect(move |server, event| {
                    let log = on_connect_log.clone();
                    async move {
                        let welcome = ChatIn::System { message: "welcome".into() };
                        let to = Emit::to_connection(event.connection_id.clone());
                        server.emit::<SecureChat>(&to, &welcome).unwrap();
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        let members = server.room_connections("vault").len();
                        log.lock().unwrap().push(format!("connect {:?} {:?} {members}", event.user_id, event.rooms));
                    }
                })
                .on_disconnect(move |server, event| {
                    let log = on_disconnect_log.clone();
                    async move {
                        let left = server.room_connections("vault").len();
                        let line = format!("disconnect {:?} {:?} {} {left}", event.code, event.rooms, event.reason);
                        log.lock().unwrap().push(line);
                    }
                })
        },
    )
    .await;
    let (mut ws, _) = h.connect_with("/ws/secure-chat?roomId=vault", &[], &[("Authorization", "Bearer ann")]).await;
    // The client speaks at once; the hook is still running.
    say(&mut ws, "vault", "!all hi").await;
    assert_eq!(recv_json(&mut ws).await, json!({"type": "system", "message": "welcome"}));
    h.next_handled().await;
    assert_eq!(*log.lock().unwrap(), [r#"connect Some("ann") ["vault"] 1"#], "on_connect ended before the handler ran");
    assert_eq!(recv_json(&mut ws).await["content"], "hi");

    ws.close(CloseCode::from(4000), "bye").await.unwrap();
    while ws.recv().await.is_some() {}
    assert_eq!(h.next_disconnect().await.reason, "bye");
    tokio::time::timeout(LIMIT, async {
        while log.lock().unwrap().len() < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("on_disconnect never ran");
    assert_eq!(log.lock().unwrap()[1], r#"disconnect Some(Unknown(4000)) ["vault"] bye 0"#);
}
