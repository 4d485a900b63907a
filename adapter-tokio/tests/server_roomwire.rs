//! The roomwire wire (`roomwire.v1.json`, `roomwire.v1.postcard`) against
//! the room server: join, leave, message, push, errors; meeting Alepha
//! wire clients in the same rooms.

mod server_support;

use roomwire_tokio::roomwire_core::RoomId;
use roomwire_tokio::roomwire_core::envelope::{self, ClientEnvelope, ServerEnvelope, code};
use roomwire_tokio::roomwire_core::payload;
use roomwire_tokio::roomwire_core::wire::{PROTOCOL_JSON, PROTOCOL_POSTCARD, WireFormat};
use roomwire_tokio::server::Emit;
use roomwire_tokio::{Message, MessageRef};
use serde_json::json;
use server_support::*;
use tokio::time::timeout;

fn room(name: &str) -> RoomId {
    RoomId::new(name).unwrap()
}

async fn send(ws: &mut Client, format: WireFormat, envelope: &ClientEnvelope<'_>) {
    let mut out = vec![0u8; 1024];
    let n = envelope::encode_client(format, envelope, &mut out).unwrap();
    let frame = &out[..n];
    match format {
        WireFormat::Postcard => ws.send(MessageRef::Binary(frame)).await.unwrap(),
        _ => ws.send(MessageRef::Text(std::str::from_utf8(frame).unwrap())).await.unwrap(),
    }
}

async fn message(ws: &mut Client, format: WireFormat, to: &str, content: &str) {
    let mut payload = vec![0u8; 256];
    let n = payload::encode_payload(format, &ChatOut { content: content.into() }, &mut payload).unwrap();
    send(ws, format, &ClientEnvelope::Message { room: room(to), payload: &payload[..n] }).await;
}

/// The next server envelope, owned: (kind, reference, code, room, payload).
#[derive(Debug, PartialEq)]
enum Got {
    Ok(u32),
    Error(Option<u32>, u16, String),
    Push(Option<String>, Vec<u8>),
}

async fn next(ws: &mut Client, format: WireFormat) -> Got {
    let bytes = match timeout(LIMIT, ws.recv()).await.expect("recv timed out") {
        Some(Ok(Message::Binary(b))) if format == WireFormat::Postcard => b,
        Some(Ok(Message::Text(t))) if format == WireFormat::Json => t.into_bytes(),
        other => panic!("unexpected {other:?}"),
    };
    match envelope::decode_server(format, &bytes).unwrap() {
        ServerEnvelope::Ok { reference } => Got::Ok(reference),
        ServerEnvelope::Error { reference, code, text } => Got::Error(reference, code, text.to_string()),
        ServerEnvelope::Push { room, payload } => Got::Push(room.map(|r| r.to_string()), payload.to_vec()),
    }
}

/// The payload of `message` as `format` encodes it.
fn payload(format: WireFormat, message: &ChatIn) -> Vec<u8> {
    let mut out = vec![0u8; 256];
    let n = payload::encode_payload(format, message, &mut out).unwrap();
    out.truncate(n);
    out
}

async fn roomwire_wire(protocol: &str, format: WireFormat) {
    let mut h = harness().await;
    let (mut alepha, alepha_event) = h.connect("/ws/chat?roomId=lobby").await;
    let (mut rw, event) = h.connect_with("/ws/chat?roomId=ignored", &[protocol], &[]).await;
    assert!(event.rooms.is_empty(), "the roomwire wire starts in no room: {:?}", event.rooms);
    assert_eq!(h.server.connection(&event.connection_id).unwrap().wire, format);

    send(&mut rw, format, &ClientEnvelope::Join { reference: 1, room: room("lobby") }).await;
    assert_eq!(next(&mut rw, format).await, Got::Ok(1));
    send(&mut rw, format, &ClientEnvelope::Join { reference: 2, room: room("lobby") }).await;
    assert_eq!(next(&mut rw, format).await, Got::Ok(2), "a repeated join is acknowledged");
    assert_eq!(h.server.room_connections("lobby").len(), 2);

    // A message in the room: the handler replies to the room, the sender
    // included; the Alepha client gets the same reply, labelled.
    message(&mut rw, format, "lobby", "!all from rw").await;
    let handled = h.next_handled().await;
    assert_eq!((handled.room_id.as_str(), handled.content.as_str()), ("lobby", "!all from rw"));
    let reply = ChatIn::Append { content: "from rw".into(), username: event.connection_id.clone() };
    assert_eq!(next(&mut rw, format).await, Got::Push(Some("lobby".into()), payload(format, &reply)));
    assert_eq!(
        recv_json(&mut alepha).await,
        json!({"type": "append", "content": "from rw", "username": event.connection_id, "__alephaRoom": "lobby"})
    );
    // An Alepha client's message reaches the roomwire client as a push.
    say(&mut alepha, "lobby", "from alepha").await;
    let reply = ChatIn::Append { content: "from alepha".into(), username: alepha_event.connection_id.clone() };
    assert_eq!(next(&mut rw, format).await, Got::Push(Some("lobby".into()), payload(format, &reply)));

    // Emits: to a room (labelled), to the connection (unlabelled).
    let system = ChatIn::System { message: "sys".into() };
    h.server.emit::<Chat>(&Emit::to_room("lobby"), &system).unwrap();
    assert_eq!(next(&mut rw, format).await, Got::Push(Some("lobby".into()), payload(format, &system)));
    h.server.emit::<Chat>(&Emit::to_connection(&event.connection_id), &system).unwrap();
    assert_eq!(next(&mut rw, format).await, Got::Push(None, payload(format, &system)));

    // Errors keep the connection: a room not joined, a handler error, a
    // message that does not validate, a broken envelope.
    message(&mut rw, format, "elsewhere", "hi").await;
    assert!(matches!(next(&mut rw, format).await, Got::Error(None, code::NOT_A_MEMBER, _)));
    message(&mut rw, format, "lobby", "!fail").await;
    assert_eq!(next(&mut rw, format).await, Got::Error(None, code::HANDLER_ERROR, "handler boom".into()));
    let not_chat = match format {
        WireFormat::Postcard => vec![0x02, 0x05, b'l', b'o', b'b', b'b', b'y', 0xff],
        _ => br#"{"type":"message","room":"lobby","data":{"nope":1}}"#.to_vec(),
    };
    match format {
        WireFormat::Postcard => rw.send(MessageRef::Binary(&not_chat)).await.unwrap(),
        _ => rw.send(MessageRef::Text(std::str::from_utf8(&not_chat).unwrap())).await.unwrap(),
    }
    assert!(matches!(next(&mut rw, format).await, Got::Error(None, code::VALIDATION_FAILED, _)));
    match format {
        WireFormat::Postcard => rw.send(MessageRef::Binary(b"\xff\xff")).await.unwrap(),
        _ => rw.send(MessageRef::Text("{\"type\":")).await.unwrap(),
    }
    assert!(matches!(next(&mut rw, format).await, Got::Error(_, code::MALFORMED, _)));

    // Leave: acknowledged (twice too); room emits no longer reach it.
    send(&mut rw, format, &ClientEnvelope::Leave { reference: 3, room: room("lobby") }).await;
    assert_eq!(next(&mut rw, format).await, Got::Ok(3));
    send(&mut rw, format, &ClientEnvelope::Leave { reference: 4, room: room("lobby") }).await;
    assert_eq!(next(&mut rw, format).await, Got::Ok(4));
    assert_eq!(h.server.emit::<Chat>(&Emit::to_room("lobby"), &system).unwrap(), 1);
    recv_json(&mut alepha).await;
    h.mark(&event.connection_id, "end");
    assert_eq!(
        next(&mut rw, format).await,
        Got::Push(None, payload(format, &ChatIn::System { message: "end".into() }))
    );
    // Invalid room ids are refused with 4001.
    let long = "x".repeat(65);
    let mut join = Vec::new();
    if format == WireFormat::Json {
        join.extend_from_slice(format!(r#"{{"type":"join","ref":5,"room":"{long}"}}"#).as_bytes());
        rw.send(MessageRef::Text(std::str::from_utf8(&join).unwrap())).await.unwrap();
        assert!(matches!(next(&mut rw, format).await, Got::Error(Some(5), code::INVALID_ROOM_ID, _)));
    }
}

#[tokio::test]
async fn roomwire_json_wire() {
    roomwire_wire(PROTOCOL_JSON, WireFormat::Json).await;
}

#[tokio::test]
async fn roomwire_postcard_wire() {
    roomwire_wire(PROTOCOL_POSTCARD, WireFormat::Postcard).await;
}

#[tokio::test]
async fn the_server_selects_the_offered_subprotocol() {
    let h = harness().await;
    let (_, selected) = h.try_connect("/ws/chat", &["x-other", PROTOCOL_POSTCARD, PROTOCOL_JSON], &[]).await.unwrap();
    assert_eq!(selected.as_deref(), Some(PROTOCOL_POSTCARD));
    let (_, selected) = h.try_connect("/ws/chat", &["x-other"], &[]).await.unwrap();
    assert_eq!(selected, None, "no roomwire offer: the Alepha wire, no subprotocol answered");
}

#[tokio::test]
async fn one_emit_reaches_all_three_wires_encoded_once_per_wire() {
    let mut h = harness().await;
    let (mut alepha, _) = h.connect("/ws/chat?roomId=r").await;
    let (mut json, _) = h.connect_with("/ws/chat", &[PROTOCOL_JSON], &[]).await;
    let (mut postcard, _) = h.connect_with("/ws/chat", &[PROTOCOL_POSTCARD], &[]).await;
    for (ws, format) in [(&mut json, WireFormat::Json), (&mut postcard, WireFormat::Postcard)] {
        send(ws, format, &ClientEnvelope::Join { reference: 9, room: room("r") }).await;
        assert_eq!(next(ws, format).await, Got::Ok(9));
    }
    let system = ChatIn::System { message: "all".into() };
    assert_eq!(h.server.emit::<Chat>(&Emit::to_room("r"), &system).unwrap(), 3);
    assert_eq!(recv_json(&mut alepha).await, json!({"type": "system", "message": "all", "__alephaRoom": "r"}));
    assert_eq!(
        next(&mut json, WireFormat::Json).await,
        Got::Push(Some("r".into()), payload(WireFormat::Json, &system))
    );
    assert_eq!(
        next(&mut postcard, WireFormat::Postcard).await,
        Got::Push(Some("r".into()), payload(WireFormat::Postcard, &system))
    );
}

roomwire_tokio::roomwire_core::channel! {
    pub struct Matches {
        path: "/ws/matches",
        description: "Moves of one match; a room per match, named by its UUID.",
        room_id: Uuid,
        in: ChatIn,
        out: ChatOut<'a>,
    }
}

roomwire_tokio::roomwire_core::channel! {
    pub struct Teams {
        path: "/ws/teams",
        room_id: Pattern("team-[a-z]*"),
        in: ChatIn,
        out: ChatOut<'a>,
    }
}

/// A room-id rule declared in `channel!` (Alepha's `schema.roomId`) is
/// the server's: at the Alepha handshake (1008 "Invalid room id", the
/// implicit "default" room excepted) and for every roomwire `join` (4001).
#[tokio::test]
async fn a_room_id_rule_declared_in_the_channel_holds_on_both_wires() {
    use roomwire_tokio::roomwire_core::channel::{Channel, RoomIdRule};
    use roomwire_tokio::server::{Endpoint, Server};
    assert!(matches!(Matches::ROOM_ID, RoomIdRule::Uuid));
    assert!(Matches::DESCRIPTION.starts_with("Moves of one match"));
    let server = Server::builder()
        .endpoint(Endpoint::<Matches>::new(|_| Box::pin(async { Ok(()) })))
        .endpoint(Endpoint::<Teams>::new(|_| Box::pin(async { Ok(()) })))
        .build()
        .unwrap();
    let (addr, _serving) = serve_on_loopback(&server).await;
    let uuid = "0b5c3c2e-6a4f-4f0e-9d1e-3f8a2b7c9d10";
    let refused = |target: String| async move {
        let (mut ws, _) = try_connect(addr, &target, &[], &[]).await.expect("101, then the close");
        closed_with(&mut ws).await
    };
    let invalid = Some((Some(roomwire_tokio::CloseCode::Policy), "Invalid room id".to_owned()));
    assert_eq!(refused("/ws/matches?roomId=lobby".into()).await, invalid);
    assert_eq!(refused(format!("/ws/matches?roomIds={uuid},x")).await, invalid);
    assert_eq!(refused("/ws/teams?roomId=team-A".into()).await, invalid);
    assert_eq!(refused("/ws/teams?roomIds=team-red,team-".into()).await, invalid);
    let (_ok, _) = try_connect(addr, &format!("/ws/matches?roomId={uuid}"), &[], &[]).await.unwrap();
    let (_team, _) = try_connect(addr, "/ws/teams?roomIds=team-red,team-x", &[], &[]).await.unwrap();
    let (_default, _) = try_connect(addr, "/ws/teams", &[], &[]).await.unwrap();
    timeout(LIMIT, async {
        while server.room_connections(uuid).len() + server.room_connections("team-red").len() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the valid rooms were joined");
    assert_eq!(server.room_connections("default").len(), 1);

    let format = WireFormat::Json;
    let (mut rw, _) = try_connect(addr, "/ws/teams", &[PROTOCOL_JSON], &[]).await.unwrap();
    send(&mut rw, format, &ClientEnvelope::Join { reference: 1, room: room("team-blue") }).await;
    assert_eq!(next(&mut rw, format).await, Got::Ok(1));
    send(&mut rw, format, &ClientEnvelope::Join { reference: 2, room: room("blue") }).await;
    assert!(matches!(next(&mut rw, format).await, Got::Error(Some(2), code::INVALID_ROOM_ID, _)));
}
