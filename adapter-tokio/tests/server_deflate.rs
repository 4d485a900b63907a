//! permessage-deflate on the room server: a room message is compressed
//! once and the same compressed frame goes to every member that agreed to
//! it; members that did not get the plain frame.

mod deflate_support;
mod server_support;

use deflate_support::inflate;
use flate2::{Decompress, FlushDecompress};
use roomwire_tokio::roomwire_core::deflate::DeflateConfig;
use serde_json::json;
use server_support::*;
use tokio::time::timeout;

#[tokio::test]
async fn a_room_message_is_compressed_once_for_the_members_that_agreed() {
    let deflate = DeflateConfig { min_size: 128, ..DeflateConfig::DEFAULT };
    let mut h = harness_with(config(|c| c.socket.core.deflate = Some(deflate)), |e| e).await;
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
    let mut compressing = Vec::new();
    for _ in 0..2 {
        compressing.push(raw_upgrade(h.addr, "/ws/chat?roomId=room-1", offer).await);
        h.next_connect().await;
    }
    let mut plain = raw_upgrade(h.addr, "/ws/chat?roomId=room-1", "").await;
    h.next_connect().await;
    let (mut sender, e) = h.connect("/ws/chat?roomId=room-1").await;

    let content = "a message long enough to be worth compressing, ".repeat(8);
    say(&mut sender, "room-1", &content).await;
    let expected = json!({"type": "append", "content": content, "username": e.connection_id, "__alephaRoom": "room-1"});
    let mut twins = Vec::new();
    for member in &mut compressing {
        let (b0, payload) = server_frame(member).await;
        // FIN, RSV1, text.
        assert_eq!(b0, 0xC1);
        assert!(payload.len() * 2 < content.len(), "{} bytes for {}", payload.len(), content.len());
        let text: serde_json::Value = serde_json::from_slice(&inflate(&payload)).unwrap();
        assert_eq!(text, expected);
        twins.push(payload);
    }
    assert_eq!(twins[0], twins[1], "the compressed frame is shared");
    let (b0, payload) = server_frame(&mut plain).await;
    assert_eq!(b0, 0x81);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&payload).unwrap(), expected);

    // A message shorter than `min_size` (about 95 bytes framed) goes out plain to everyone.
    say(&mut sender, "room-1", "hi").await;
    for member in compressing.iter_mut().chain([&mut plain]) {
        assert_eq!(server_frame(member).await.0, 0x81);
    }
}

#[tokio::test]
async fn a_server_keeping_its_context_compresses_room_messages_per_member() {
    let deflate = DeflateConfig { send_context_takeover: true, ..DeflateConfig::DEFAULT };
    let mut h = harness_with(config(|c| c.socket.core.deflate = Some(deflate)), |e| e).await;
    let offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    let mut member = raw_upgrade(h.addr, "/ws/chat?roomId=room-1", offer).await;
    h.next_connect().await;
    let (mut sender, e) = h.connect("/ws/chat?roomId=room-1").await;
    let content = "the same words again, and again, and again, ".repeat(4);
    // One inflater for the member's whole stream: the server keeps its window.
    let mut zlib = Decompress::new(false);
    let mut sizes = Vec::new();
    for _ in 0..3 {
        say(&mut sender, "room-1", &content).await;
        let (b0, payload) = server_frame(&mut member).await;
        assert_eq!(b0, 0xC1);
        let mut input = payload.clone();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(4096);
        zlib.decompress_vec(&input, &mut out, FlushDecompress::Sync).unwrap();
        let text: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(text["content"], content.as_str());
        assert_eq!(text["username"], e.connection_id.as_str());
        sizes.push(payload.len());
    }
    // The second message refers back to the first.
    assert!(sizes[1] * 3 < sizes[0], "{sizes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_client_reads_compressed_room_messages() {
    use futures_util::StreamExt;
    use roomwire_tokio::client::{Client, ClientOptions, ConnectionState};
    use std::borrow::Cow;

    let h = harness_with(config(|c| c.socket.core.deflate = Some(DeflateConfig::DEFAULT)), |e| e).await;
    let url = format!("ws://{}", h.addr);
    let mut socket = roomwire_tokio::Config::default();
    socket.core.deflate = Some(DeflateConfig::DEFAULT);
    let options = || ClientOptions::new().room("room-1").config(socket);
    let (alice, _alice_in) = Client::<Chat>::connect(&url, options()).unwrap();
    let (bob, mut bob_in) = Client::<Chat>::connect(&url, options()).unwrap();
    for client in [&alice, &bob] {
        let mut states = client.state_changes();
        let connected =
            timeout(LIMIT, states.wait_for(|s| matches!(s, ConnectionState::Connected { .. }))).await.unwrap().is_ok();
        assert!(connected, "{:?}", client.state());
    }
    let content = "compressed on the way, whole on arrival; ".repeat(10);
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        alice.send("room-1", &ChatOut { content: Cow::Borrowed(&content) }).unwrap();
        match timeout(std::time::Duration::from_millis(300), bob_in.next()).await {
            Ok(Some((_, ChatIn::Append { content: got, .. }))) => {
                assert_eq!(got, content);
                break;
            }
            Ok(other) => panic!("{other:?}"),
            Err(_) => assert!(tokio::time::Instant::now() < deadline, "never arrived"),
        }
    }
    alice.close().await;
    bob.close().await;
}
