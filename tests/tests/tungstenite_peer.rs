//! roomwire against an independent implementation: tungstenite (through
//! tokio-tungstenite), over loopback TCP, in both roles.
//!
//! Our server ↔ tungstenite client, and our client ↔ tungstenite server:
//! text, binary, large, fragmented, ping/pong, and the close handshake
//! started from either side.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use roomwire_tokio::{CloseCode, Config, Message, MessageKind, MessageRef, WebSocket};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::{
    self,
    protocol::frame::{Frame, coding::CloseCode as TCloseCode, coding::Data, coding::OpCode},
    protocol::{CloseFrame, WebSocketConfig},
};

const LIMIT: Duration = Duration::from_secs(10);

async fn listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, format!("ws://{addr}/peer?roomId=a"))
}

fn big_payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

/// Our echo server, for one connection: echoes messages, answers the close.
async fn roomwire_echo_once(listener: TcpListener) -> Option<roomwire_tokio::CloseFrame> {
    let (stream, _) = listener.accept().await.unwrap();
    let (mut ws, info) = WebSocket::accept(stream, Config::default()).await.unwrap();
    assert_eq!(info.path, "/peer");
    while let Some(message) = ws.recv().await {
        let message = message.unwrap();
        ws.send(&message).await.unwrap();
    }
    ws.peer_close().cloned()
}

#[tokio::test]
async fn roomwire_server_and_tungstenite_client() {
    let (listener, url) = listener().await;
    let server = tokio::spawn(roomwire_echo_once(listener));
    let (mut client, response) = timeout(LIMIT, tokio_tungstenite::connect_async(url)).await.unwrap().unwrap();
    assert_eq!(response.status(), 101);

    // Text, binary, empty, and a 300 KiB binary message.
    let big = big_payload(300 * 1024);
    for message in [
        tungstenite::Message::text("héllo wörld"),
        tungstenite::Message::binary(vec![0u8, 1, 2, 255]),
        tungstenite::Message::text(""),
        tungstenite::Message::binary(big.clone()),
    ] {
        client.send(message.clone()).await.unwrap();
        let echoed = timeout(LIMIT, client.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(echoed, message);
    }

    // A text message in three fragments, with a ping between two of them.
    let parts: [(&str, OpCode, bool); 3] = [
        ("κόσ", OpCode::Data(Data::Text), false),
        ("με ", OpCode::Data(Data::Continue), false),
        ("ok", OpCode::Data(Data::Continue), true),
    ];
    for (i, (text, opcode, fin)) in parts.into_iter().enumerate() {
        client.send(tungstenite::Message::Frame(Frame::message(text.as_bytes().to_vec(), opcode, fin))).await.unwrap();
        if i == 1 {
            client.send(tungstenite::Message::Ping(b"mid".to_vec().into())).await.unwrap();
        }
    }
    let mut got_pong = false;
    loop {
        match timeout(LIMIT, client.next()).await.unwrap().unwrap().unwrap() {
            tungstenite::Message::Pong(p) => {
                assert_eq!(&p[..], b"mid");
                got_pong = true;
            }
            tungstenite::Message::Text(t) => {
                assert_eq!(t.as_str(), "κόσμε ok");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(got_pong, "ping between fragments not answered");

    // tungstenite closes; we echo the code.
    client.close(Some(CloseFrame { code: TCloseCode::Away, reason: "bye".into() })).await.unwrap();
    let end = timeout(LIMIT, client.next()).await.unwrap();
    match end {
        Some(Ok(tungstenite::Message::Close(Some(frame)))) => assert_eq!(frame.code, TCloseCode::Away),
        other => panic!("expected the close echo, got {other:?}"),
    }
    let peer_close = timeout(LIMIT, server).await.unwrap().unwrap().unwrap();
    assert_eq!(peer_close.code, Some(CloseCode::Away));
    assert_eq!(peer_close.reason, "bye");
}

#[tokio::test]
async fn roomwire_server_closes_and_tungstenite_client_answers() {
    let (listener, url) = listener().await;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (mut ws, _) = WebSocket::accept(stream, Config::default()).await.unwrap();
        ws.send(MessageRef::Text("before close")).await.unwrap();
        ws.close(CloseCode::from(4000), "kicked").await.unwrap();
        // recv drives the handshake to its end.
        while let Some(m) = ws.recv().await {
            m.unwrap();
        }
        ws.peer_close().cloned()
    });
    let (mut client, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let first = timeout(LIMIT, client.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first, tungstenite::Message::text("before close"));
    match timeout(LIMIT, client.next()).await.unwrap() {
        Some(Ok(tungstenite::Message::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 4000);
            assert_eq!(frame.reason.as_str(), "kicked");
        }
        other => panic!("expected close 4000, got {other:?}"),
    }
    // tungstenite answers the close on its own; drain to the end.
    while let Ok(Some(_)) = timeout(LIMIT, client.next()).await {}
    let echoed = timeout(LIMIT, server).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed.code, Some(CloseCode::from(4000)));
}

#[tokio::test]
async fn roomwire_server_fails_a_bad_tungstenite_frame_with_1007() {
    let (listener, url) = listener().await;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (mut ws, _) = WebSocket::accept(stream, Config::default()).await.unwrap();
        ws.recv().await
    });
    let (mut client, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    // A text frame that is not UTF-8, sent raw.
    client
        .send(tungstenite::Message::Frame(Frame::message(vec![b'a', 0xFF], OpCode::Data(Data::Text), true)))
        .await
        .unwrap();
    match timeout(LIMIT, client.next()).await.unwrap() {
        Some(Ok(tungstenite::Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1007),
        other => panic!("expected close 1007, got {other:?}"),
    }
    match timeout(LIMIT, server).await.unwrap().unwrap() {
        Some(Err(roomwire_tokio::Error::Protocol(e))) => assert_eq!(e.code, CloseCode::Invalid),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

/// A stream that keeps a copy of every byte read from it.
struct Recording {
    inner: TcpStream,
    heard: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl tokio::io::AsyncRead for Recording {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let new = buf.filled()[before..].to_vec();
        self.heard.lock().unwrap().extend_from_slice(&new);
        polled
    }
}

impl tokio::io::AsyncWrite for Recording {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A tungstenite echo server for one connection; returns the close frame it got.
async fn tungstenite_echo_once(listener: TcpListener) -> Option<CloseFrame> {
    let (stream, _) = listener.accept().await.unwrap();
    let config = WebSocketConfig::default().max_message_size(Some(64 << 20));
    let mut ws = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await.unwrap();
    let mut close = None;
    // Keep polling after the close frame: tungstenite sends its echo while
    // the stream is driven to its end.
    while let Some(message) = ws.next().await {
        match message.unwrap() {
            tungstenite::Message::Close(frame) => close = frame,
            m @ (tungstenite::Message::Text(_) | tungstenite::Message::Binary(_)) => ws.send(m).await.unwrap(),
            _ => {}
        }
    }
    close
}

#[tokio::test]
async fn roomwire_client_and_tungstenite_server() {
    let (listener, url) = listener().await;
    let server = tokio::spawn(tungstenite_echo_once(listener));
    // Every byte the server sends is recorded, to see its pong.
    let tcp = TcpStream::connect(url.trim_start_matches("ws://").split('/').next().unwrap()).await.unwrap();
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stream = Recording { inner: tcp, heard: heard.clone() };
    let request = roomwire_tokio::ClientRequest { host: "localhost", target: "/", protocols: &[], headers: &[] };
    let (mut ws, response) =
        timeout(LIMIT, WebSocket::connect_with_stream(stream, &request, Config::default())).await.unwrap().unwrap();
    assert_eq!(response.protocol, None);

    let big = big_payload(200 * 1024);
    for message in [Message::from("héllo"), Message::from(vec![9u8; 3]), Message::from(""), Message::from(big)] {
        ws.send(&message).await.unwrap();
        let echoed = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(echoed, message);
    }

    // Fragmented binary from our side, reassembled by tungstenite.
    ws.feed_fragment(MessageKind::Binary, b"abc", false).unwrap();
    ws.feed_fragment(MessageKind::Binary, b"def", false).unwrap();
    ws.feed_fragment(MessageKind::Binary, b"g", true).unwrap();
    ws.flush().await.unwrap();
    let echoed = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed, Message::from(b"abcdefg".to_vec()));

    // Our ping is answered by tungstenite: its pong (unmasked, payload
    // "ping-42") is on the wire before the echo of the next message.
    ws.ping(b"ping-42").await.unwrap();
    ws.send(MessageRef::Text("after ping")).await.unwrap();
    assert_eq!(timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap(), Message::from("after ping"));
    let pong = [&[0x8a, 7][..], b"ping-42"].concat();
    assert!(heard.lock().unwrap().windows(pong.len()).any(|w| w == pong), "no pong for our ping");

    // We close; tungstenite sees our code and reason.
    ws.close(CloseCode::Normal, "done").await.unwrap();
    assert!(timeout(LIMIT, ws.recv()).await.unwrap().is_none());
    let frame = timeout(LIMIT, server).await.unwrap().unwrap().unwrap();
    assert_eq!(frame.code, TCloseCode::Normal);
    assert_eq!(frame.reason.as_str(), "done");
}

#[tokio::test]
async fn tungstenite_server_closes_and_roomwire_client_answers() {
    let (listener, url) = listener().await;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
        ws.send(tungstenite::Message::Ping(b"p".to_vec().into())).await.unwrap();
        let pong = ws.next().await.unwrap().unwrap();
        assert_eq!(pong, tungstenite::Message::Pong(b"p".to_vec().into()));
        ws.close(Some(CloseFrame { code: TCloseCode::Library(4321), reason: "server says bye".into() })).await.unwrap();
        // Our echo of the close ends tungstenite's stream.
        let mut echoed = None;
        while let Some(m) = ws.next().await {
            if let Ok(tungstenite::Message::Close(frame)) = m {
                echoed = frame;
            }
        }
        echoed
    });
    let stream = TcpStream::connect(url.trim_start_matches("ws://").split('/').next().unwrap()).await.unwrap();
    let request = roomwire_tokio::ClientRequest { host: "localhost", target: "/", protocols: &[], headers: &[] };
    let (mut ws, _) = WebSocket::connect_with_stream(stream, &request, Config::default()).await.unwrap();
    assert!(timeout(LIMIT, ws.recv()).await.unwrap().is_none());
    let close = ws.peer_close().cloned().unwrap();
    assert_eq!(close.code, Some(CloseCode::from(4321)));
    assert_eq!(close.reason, "server says bye");
    let echoed = timeout(LIMIT, server).await.unwrap().unwrap().unwrap();
    assert_eq!(u16::from(echoed.code), 4321);
}
