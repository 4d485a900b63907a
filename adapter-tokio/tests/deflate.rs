//! permessage-deflate over loopback TCP: roomwire on both ends, and a raw
//! peer that compresses and inflates with zlib itself (what goes over the
//! wire, and what a peer sending a decompression bomb gets).

mod deflate_support;
mod server_support;

use std::net::SocketAddr;

use deflate_support::{deflate, inflate, raw_client};
use roomwire_tokio::roomwire_core::deflate::DeflateConfig;
use roomwire_tokio::{Config, Message, MessageRef, WebSocket};
use server_support::{LIMIT, client_frame, server_frame};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::time::timeout;

fn config(deflate: Option<DeflateConfig>) -> Config {
    let mut config = Config::default();
    config.core.deflate = deflate;
    config
}

/// An echo server for one connection.
async fn echo_server(config: Config) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (mut ws, _) = WebSocket::accept(stream, config).await.unwrap();
        while let Some(received) = ws.recv().await {
            if let Ok(message) = received {
                drop(ws.send(&message).await);
            }
        }
    });
    addr
}

fn chat_json(n: usize) -> String {
    (0..n)
        .map(|i| format!("{{\"event\":\"message\",\"data\":{{\"user\":\"ann\",\"n\":{i}}}}}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test]
async fn a_roomwire_client_and_server_agree_and_echo_compressed_messages() {
    let addr = echo_server(config(Some(DeflateConfig::DEFAULT))).await;
    let keep = DeflateConfig { send_context_takeover: true, ..DeflateConfig::DEFAULT };
    let (mut ws, _) = WebSocket::connect(&format!("ws://{addr}/"), config(Some(keep))).await.unwrap();
    for text in [chat_json(300), "short".to_owned(), chat_json(3)] {
        ws.send(MessageRef::Text(&text)).await.unwrap();
        let echoed = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(echoed, Message::Text(text));
    }
    let bytes: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
    ws.send(MessageRef::Binary(&bytes)).await.unwrap();
    assert_eq!(timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap(), Message::Binary(bytes));
}

#[tokio::test]
async fn the_server_compresses_what_it_sends_and_inflates_what_a_zlib_peer_sends() {
    let addr = echo_server(config(Some(DeflateConfig::DEFAULT))).await;
    let (mut stream, response) = raw_client(addr, "permessage-deflate; client_max_window_bits").await;
    assert!(
        response.contains(
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"
        ),
        "{response}"
    );
    let text = chat_json(200);
    let compressed = deflate(text.as_bytes());
    assert!(compressed.len() * 10 < text.len(), "{} of {}", compressed.len(), text.len());
    stream.write_all(&client_frame(0xC1, &compressed)).await.unwrap();
    let (b0, payload) = timeout(LIMIT, server_frame(&mut stream)).await.unwrap();
    // FIN, RSV1 (compressed), text; much smaller than the text.
    assert_eq!(b0, 0xC1);
    assert!(payload.len() * 5 < text.len(), "{} of {}", payload.len(), text.len());
    assert_eq!(inflate(&payload), text.as_bytes());
    // Below the size worth compressing, the echo goes out as it is.
    stream.write_all(&client_frame(0xC1, &deflate(b"hi"))).await.unwrap();
    assert_eq!(timeout(LIMIT, server_frame(&mut stream)).await.unwrap(), (0x81, b"hi".to_vec()));
}

#[tokio::test]
async fn a_small_frame_that_inflates_past_the_limit_closes_with_1009() {
    let mut server = config(Some(DeflateConfig::DEFAULT));
    server.core.max_message_size = 1 << 20;
    let addr = echo_server(server).await;
    let (mut stream, _) = raw_client(addr, "permessage-deflate").await;
    let bomb = deflate(&vec![0u8; 16 << 20]);
    assert!(bomb.len() < 128 * 1024, "{}", bomb.len());
    stream.write_all(&client_frame(0xC2, &bomb)).await.unwrap();
    let (b0, payload) = timeout(LIMIT, server_frame(&mut stream)).await.unwrap();
    assert_eq!(b0, 0x88);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1009);
}

#[tokio::test]
async fn without_deflate_configured_the_offer_is_ignored_and_rsv1_refused() {
    let addr = echo_server(config(None)).await;
    let (mut stream, response) = raw_client(addr, "permessage-deflate").await;
    assert!(!response.to_ascii_lowercase().contains("sec-websocket-extensions"), "{response}");
    stream.write_all(&client_frame(0xC1, &deflate(b"hello"))).await.unwrap();
    let (b0, payload) = timeout(LIMIT, server_frame(&mut stream)).await.unwrap();
    assert_eq!((b0, u16::from_be_bytes([payload[0], payload[1]])), (0x88, 1002));
}
