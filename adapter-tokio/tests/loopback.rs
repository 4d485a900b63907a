//! Server ↔ client over loopback TCP, through roomwire-tokio on both ends
//! (and a raw TCP peer where the wire bytes matter).

use std::net::SocketAddr;
use std::time::Duration;

use roomwire_tokio::roomwire_core::handshake::HandshakeError;
use roomwire_tokio::roomwire_core::{self, Timeout};
use roomwire_tokio::{CloseCode, Config, Decision, Error, Message, MessageKind, MessageRef, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

/// A listener on a free loopback port.
async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// A server accepting one connection and echoing until it ends; returns
/// the peer's close frame and the error recv reported, if any.
async fn echo_server(config: Config) -> (SocketAddr, JoinHandle<(Option<roomwire_tokio::CloseFrame>, Option<Error>)>) {
    let (listener, addr) = listener().await;
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (mut ws, info) = WebSocket::accept(stream, config).await.unwrap();
        assert_eq!(info.path, "/echo");
        let mut error = None;
        while let Some(received) = ws.recv().await {
            match received {
                Ok(message) => drop(ws.send(&message).await),
                Err(e) => error = Some(e),
            }
        }
        (ws.peer_close().cloned(), error)
    });
    (addr, task)
}

async fn connect(addr: SocketAddr, config: Config) -> WebSocket<TcpStream> {
    let (ws, response) = WebSocket::connect(&format!("ws://{addr}/echo"), config).await.unwrap();
    assert_eq!(response.protocol, None);
    ws
}

async fn recv(ws: &mut WebSocket<TcpStream>) -> Message {
    timeout(LIMIT, ws.recv()).await.expect("recv timed out").expect("connection ended").expect("recv failed")
}

/// Close from the client and wait for the end on both sides.
async fn close_client(mut ws: WebSocket<TcpStream>) {
    ws.close(CloseCode::Normal, "done").await.unwrap();
    assert!(timeout(LIMIT, ws.recv()).await.unwrap().is_none());
}

#[tokio::test]
async fn text_binary_and_large_messages_roundtrip() {
    let (addr, server) = echo_server(Config::default()).await;
    let mut ws = connect(addr, Config::default()).await;

    ws.send(MessageRef::Text("hello, wörld")).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::Text("hello, wörld".into()));

    ws.send(MessageRef::Binary(&[0, 1, 2, 255])).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::Binary(vec![0, 1, 2, 255]));

    ws.send(MessageRef::Text("")).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::Text(String::new()));

    // 1 MiB: exactly the default max_message_size.
    let large: Vec<u8> = (0..1 << 20).map(|i: u32| (i.wrapping_mul(31) >> 3) as u8).collect();
    ws.send(MessageRef::Binary(&large)).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::Binary(large));

    // Batched: several frames fed, one flush.
    for i in 0..100 {
        ws.feed(&Message::Text(format!("m{i}"))).unwrap();
    }
    ws.flush().await.unwrap();
    for i in 0..100 {
        assert_eq!(recv(&mut ws).await, Message::Text(format!("m{i}")));
    }

    close_client(ws).await;
    let (close, error) = server.await.unwrap();
    assert!(error.is_none(), "{error:?}");
    assert_eq!(close.unwrap().code, Some(CloseCode::Normal));
}

/// `recv_into` makes each message in the buffer of the last, whatever the
/// kinds: a text message after a binary one and back, an empty one, a
/// fragmented one; the buffer, once grown, is not given up; cancelled, or
/// at the end (reported as `recv` reports it), the message is left as it
/// was.
#[tokio::test]
async fn recv_into_reuses_the_message_buffer_across_kinds() {
    let (addr, server) = echo_server(Config::default()).await;
    let mut ws = connect(addr, Config::default()).await;
    // Cancelled while nothing has come: the message is as it was.
    let mut message = Message::Text("left over".into());
    assert!(timeout(Duration::from_millis(50), ws.recv_into(&mut message)).await.is_err());
    assert_eq!(message, Message::Text("left over".into()), "a cancelled recv_into changed the message");
    let big = vec![7u8; 64 * 1024];
    ws.feed(MessageRef::Binary(&big)).unwrap();
    ws.feed(MessageRef::Text("hello, wörld")).unwrap();
    ws.feed(MessageRef::Binary(&[1, 2, 3])).unwrap();
    ws.feed(MessageRef::Text("")).unwrap();
    ws.feed_fragment(MessageKind::Text, "frag".as_bytes(), false).unwrap();
    ws.feed_fragment(MessageKind::Text, "mented".as_bytes(), true).unwrap();
    ws.flush().await.unwrap();

    let next = async |ws: &mut WebSocket<TcpStream>, message: &mut Message| {
        timeout(LIMIT, ws.recv_into(message)).await.expect("recv_into timed out").expect("ended").expect("failed");
    };
    next(&mut ws, &mut message).await;
    assert_eq!(message, Message::Binary(big.clone()));
    let grown = message.as_bytes().as_ptr();
    next(&mut ws, &mut message).await;
    assert_eq!(message, Message::Text("hello, wörld".into()));
    assert_eq!(message.as_bytes().as_ptr(), grown, "the buffer was given up");
    next(&mut ws, &mut message).await;
    assert_eq!(message, Message::Binary(vec![1, 2, 3]));
    next(&mut ws, &mut message).await;
    assert_eq!(message, Message::Text(String::new()));
    next(&mut ws, &mut message).await;
    assert_eq!(message, Message::Text("fragmented".into()));
    assert_eq!(message.as_bytes().as_ptr(), grown, "the buffer was given up");

    ws.close(CloseCode::Normal, "done").await.unwrap();
    assert!(timeout(LIMIT, ws.recv_into(&mut message)).await.unwrap().is_none());
    assert_eq!(message, Message::Text("fragmented".into()), "the end changed the message");
    let (close, error) = server.await.unwrap();
    assert!(error.is_none(), "{error:?}");
    assert_eq!(close.unwrap().code, Some(CloseCode::Normal));
}

#[tokio::test]
async fn fragmented_messages_are_reassembled() {
    let (addr, server) = echo_server(Config::default()).await;
    let mut ws = connect(addr, Config::default()).await;

    // "héllo" split inside the two-byte "é".
    let text = "héllo".as_bytes();
    ws.feed_fragment(MessageKind::Text, &text[..2], false).unwrap();
    ws.ping(b"between fragments").await.unwrap();
    ws.feed_fragment(MessageKind::Text, &text[2..4], false).unwrap();
    ws.feed_fragment(MessageKind::Text, &text[4..], true).unwrap();
    ws.flush().await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::Text("héllo".into()));

    // A whole message while a fragmented one is in progress is refused.
    ws.feed_fragment(MessageKind::Binary, &[1; 1000], false).unwrap();
    assert!(matches!(ws.feed(MessageRef::Binary(b"x")), Err(Error::Send(_))));
    for _ in 0..9 {
        ws.feed_fragment(MessageKind::Binary, &[1; 1000], false).unwrap();
    }
    ws.feed_fragment(MessageKind::Binary, &[], true).unwrap();
    ws.flush().await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::Binary(vec![1; 10_000]));

    close_client(ws).await;
    server.await.unwrap();
}

/// Read from a raw stream until `pattern` has been seen; returns everything read.
async fn read_until(stream: &mut TcpStream, pattern: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(pattern.len()).any(|w| w == pattern) {
        let n = timeout(LIMIT, stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "EOF before {pattern:?}; got {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// A raw client that has completed the handshake (RFC 6455 §1.3 sample key).
async fn raw_client(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let response = read_until(&mut stream, b"\r\n\r\n").await;
    assert!(response.starts_with(b"HTTP/1.1 101 "));
    assert!(response.windows(28).any(|w| w == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    stream
}

/// A masked client frame.
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![first, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

#[tokio::test]
async fn ping_is_answered_while_receiving() {
    let (addr, server) = echo_server(Config::default()).await;
    let mut raw = raw_client(addr).await;

    raw.write_all(&masked(0x89, b"are you there")).await.unwrap();
    let mut pong = [0u8; 15];
    timeout(LIMIT, raw.read_exact(&mut pong)).await.unwrap().unwrap();
    assert_eq!(&pong[..2], &[0x8a, 13]);
    assert_eq!(&pong[2..], b"are you there");

    // A text message is still echoed after it.
    raw.write_all(&masked(0x81, b"hi")).await.unwrap();
    let mut echo = [0u8; 4];
    timeout(LIMIT, raw.read_exact(&mut echo)).await.unwrap().unwrap();
    assert_eq!(echo, [0x81, 2, b'h', b'i']);

    // Close 1000; the server echoes it and closes TCP.
    raw.write_all(&masked(0x88, &1000u16.to_be_bytes())).await.unwrap();
    let mut rest = Vec::new();
    timeout(LIMIT, raw.read_to_end(&mut rest)).await.unwrap().unwrap();
    assert_eq!(rest, [0x88, 2, 0x03, 0xe8]);
    let (close, error) = server.await.unwrap();
    assert_eq!(close.unwrap().code, Some(CloseCode::Normal));
    assert!(error.is_none());
}

#[tokio::test]
async fn every_ping_of_a_burst_is_answered() {
    let (addr, server) = echo_server(Config::default()).await;
    let mut raw = raw_client(addr).await;
    // Ten pings in one write (Autobahn case 2.10 expects ten pongs).
    let burst: Vec<u8> = (0..10).flat_map(|i| masked(0x89, format!("payload-{i}").as_bytes())).collect();
    raw.write_all(&burst).await.unwrap();
    for i in 0..10 {
        let mut pong = [0u8; 11];
        timeout(LIMIT, raw.read_exact(&mut pong)).await.unwrap().unwrap();
        assert_eq!(&pong[..2], &[0x8a, 9]);
        assert_eq!(&pong[2..], format!("payload-{i}").as_bytes());
    }
    raw.write_all(&masked(0x88, &1000u16.to_be_bytes())).await.unwrap();
    let mut rest = Vec::new();
    timeout(LIMIT, raw.read_to_end(&mut rest)).await.unwrap().unwrap();
    assert_eq!(rest, [0x88, 2, 0x03, 0xe8]);
    server.await.unwrap();
}

#[tokio::test]
async fn protocol_error_sends_close_code_and_is_reported() {
    let (addr, server) = echo_server(Config::default()).await;
    let mut raw = raw_client(addr).await;
    // Unmasked frame from a client: 1002.
    raw.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    let mut rest = Vec::new();
    timeout(LIMIT, raw.read_to_end(&mut rest)).await.unwrap().unwrap();
    assert_eq!(&rest[..4], &[0x88, rest[1], 0x03, 0xea]);
    let (close, error) = server.await.unwrap();
    assert!(close.is_none());
    match error {
        Some(Error::Protocol(e)) => assert_eq!(e.code, CloseCode::Protocol),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[tokio::test]
async fn client_initiated_close_with_code() {
    let (addr, server) = echo_server(Config::default()).await;
    let mut ws = connect(addr, Config::default()).await;
    ws.close(CloseCode::from(4001), "client leaving").await.unwrap();
    // Closing: no more messages may be sent.
    assert!(matches!(ws.feed(MessageRef::Text("late")), Err(Error::Closed)));
    assert!(matches!(ws.close(CloseCode::Normal, "").await, Err(Error::Closed)));
    assert!(timeout(LIMIT, ws.recv()).await.unwrap().is_none());
    // The server echoed the code.
    assert_eq!(ws.peer_close().unwrap().code, Some(CloseCode::from(4001)));
    assert!(ws.recv().await.is_none());

    let (close, error) = server.await.unwrap();
    assert!(error.is_none(), "{error:?}");
    let close = close.unwrap();
    assert_eq!(close.code, Some(CloseCode::from(4001)));
    assert_eq!(close.reason, "client leaving");
}

#[tokio::test]
async fn server_initiated_close_with_code() {
    let (listener, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (mut ws, _) = WebSocket::accept(stream, Config::default()).await.unwrap();
        ws.send(MessageRef::Text("going away")).await.unwrap();
        ws.close(CloseCode::Away, "restart").await.unwrap();
        // Messages sent by the client before its close echo still arrive.
        let mut got = Vec::new();
        while let Some(received) = timeout(LIMIT, ws.recv()).await.unwrap() {
            got.push(received.unwrap());
        }
        (got, ws.peer_close().cloned())
    });
    let mut ws = connect(addr, Config::default()).await;
    assert_eq!(recv(&mut ws).await, Message::Text("going away".into()));
    ws.send(MessageRef::Text("last words")).await.unwrap();
    assert!(timeout(LIMIT, ws.recv()).await.unwrap().is_none());
    let close = ws.peer_close().unwrap();
    assert_eq!((close.code, close.reason.as_str()), (Some(CloseCode::Away), "restart"));

    let (got, close) = server.await.unwrap();
    assert_eq!(got, [Message::Text("last words".into())]);
    assert_eq!(close.unwrap().code, Some(CloseCode::Away));
}

#[tokio::test]
async fn refusal_reaches_the_client_as_handshake_error() {
    let (listener, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let result = WebSocket::accept_with(stream, Config::default(), |req| {
            assert_eq!(req.path(), "/nowhere");
            assert_eq!(req.query(), Some("x=1"));
            Decision::refuse(404, "no such endpoint")
        })
        .await;
        matches!(result, Err(Error::Refused { status: 404 }))
    });
    let result = WebSocket::connect(&format!("ws://{addr}/nowhere?x=1"), Config::default()).await;
    match result {
        Err(Error::Handshake(HandshakeError::Rejected { status })) => assert_eq!(status, 404),
        other => panic!("expected a 404 rejection, got {other:?}"),
    }
    assert!(server.await.unwrap());
}

#[tokio::test]
async fn accept_with_selects_protocol_and_sees_headers() {
    let (listener, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (mut ws, info) =
            WebSocket::accept_with(stream, Config::default(), |req| match req.protocols().find(|p| *p == "chat.v2") {
                Some(p) => Decision::accept_protocol(p),
                None => Decision::refuse(400, "no protocol"),
            })
            .await
            .unwrap();
        assert_eq!(info.path, "/chat");
        assert_eq!(info.protocol.as_deref(), Some("chat.v2"));
        assert_eq!(info.header_str("authorization"), Some("Bearer abc"));
        while let Some(Ok(m)) = ws.recv().await {
            drop(ws.send(&m).await);
        }
    });
    let stream = TcpStream::connect(addr).await.unwrap();
    let request = roomwire_tokio::ClientRequest {
        host: "localhost",
        target: "/chat",
        protocols: &["chat.v1", "chat.v2"],
        headers: &[("Authorization", "Bearer abc")],
    };
    let (mut ws, response) = WebSocket::connect_with_stream(stream, &request, Config::default()).await.unwrap();
    assert_eq!(response.protocol.as_deref(), Some("chat.v2"));
    ws.send(MessageRef::Text("x")).await.unwrap();
    assert_eq!(timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap(), Message::Text("x".into()));
    ws.close(CloseCode::Normal, "").await.unwrap();
    assert!(timeout(LIMIT, ws.recv()).await.unwrap().is_none());
    server.await.unwrap();
}

#[tokio::test]
async fn silent_client_is_dropped_after_handshake_timeout() {
    let (listener, addr) = listener().await;
    let mut config = Config::default();
    config.core.handshake_timeout = Some(roomwire_core::Duration::from_millis(200));
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let started = tokio::time::Instant::now();
        let result = WebSocket::accept(stream, config).await;
        (result.map(|_| ()), started.elapsed())
    });
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap(); // never finished
    let mut answer = Vec::new();
    timeout(LIMIT, raw.read_to_end(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 408 "), "{:?}", String::from_utf8_lossy(&answer));

    let (result, elapsed) = server.await.unwrap();
    assert!(matches!(result, Err(Error::Timeout(Timeout::Handshake))), "{result:?}");
    assert!(elapsed >= Duration::from_millis(200) && elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn bad_request_is_refused_by_the_core() {
    let (listener, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        WebSocket::accept(stream, Config::default()).await.map(|_| ())
    });
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    timeout(LIMIT, raw.read_to_end(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 426 "), "{:?}", String::from_utf8_lossy(&answer));
    assert!(matches!(server.await.unwrap(), Err(Error::Handshake(HandshakeError::UnsupportedVersion))));
}

#[tokio::test]
async fn feed_refuses_over_the_outbound_bound() {
    let (addr, server) = echo_server(Config::default()).await;
    let config = Config { max_outbound: 1000, ..Config::default() };
    let mut ws = connect(addr, config).await;

    ws.feed(MessageRef::Binary(&[7; 600])).unwrap();
    assert_eq!(ws.queued(), 600 + 4 + 4); // 16-bit length, mask key
    assert!(matches!(ws.feed(MessageRef::Binary(&[7; 600])), Err(Error::QueueFull)));
    assert_eq!(ws.queued(), 608, "a refused message is not queued");
    ws.feed(MessageRef::Binary(&[7; 100])).unwrap(); // still fits
    ws.flush().await.unwrap();
    assert_eq!(ws.queued(), 0);
    // An empty queue takes a message of any size.
    ws.feed(MessageRef::Binary(&[8; 5000])).unwrap();
    ws.flush().await.unwrap();

    assert_eq!(recv(&mut ws).await.len(), 600);
    assert_eq!(recv(&mut ws).await.len(), 100);
    assert_eq!(recv(&mut ws).await.len(), 5000);
    close_client(ws).await;
    server.await.unwrap();
}

#[tokio::test]
async fn recv_is_cancel_safe() {
    let (listener, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (mut ws, _) = WebSocket::accept(stream, Config::default()).await.unwrap();
        // A large message written in small pieces, slowly.
        let payload: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        for (i, chunk) in payload.chunks(20_000).enumerate() {
            ws.feed_fragment(MessageKind::Binary, chunk, i == 9).unwrap();
            ws.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        while ws.recv().await.is_some() {}
        payload
    });
    let mut ws = connect(addr, Config::default()).await;
    let mut cancelled = 0;
    let message = loop {
        tokio::select! {
            received = ws.recv() => break received.unwrap().unwrap(),
            _ = tokio::time::sleep(Duration::from_millis(1)) => cancelled += 1,
        }
    };
    assert!(cancelled > 0);
    close_client(ws).await;
    assert_eq!(message, Message::Binary(server.await.unwrap()));
}

#[tokio::test]
async fn too_large_message_closes_with_1009() {
    let mut small = Config::default();
    small.core.max_message_size = 1000;
    let (addr, server) = echo_server(small).await;
    let mut ws = connect(addr, Config::default()).await;
    ws.send(MessageRef::Binary(&[0; 1001])).await.unwrap();
    assert!(timeout(LIMIT, ws.recv()).await.unwrap().is_none());
    assert_eq!(ws.peer_close().unwrap().code, Some(CloseCode::MessageTooBig));
    let (_, error) = server.await.unwrap();
    assert!(matches!(error, Some(Error::Protocol(e)) if e.code == CloseCode::MessageTooBig));
}

#[tokio::test]
async fn keepalive_drops_a_silent_peer() {
    let mut config = Config::default();
    config.core.keepalive_interval = Some(roomwire_core::Duration::from_millis(100));
    let (listener, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (mut ws, _) = WebSocket::accept(stream, config).await.unwrap();
        let first = timeout(LIMIT, ws.recv()).await.unwrap();
        (first.map(|r| r.map(|_| ())), ws.recv().await.is_none())
    });
    // A raw client that completes the handshake and never answers pings.
    let mut raw = raw_client(addr).await;
    let (first, then_none) = server.await.unwrap();
    assert!(matches!(first, Some(Err(Error::Timeout(Timeout::Keepalive)))), "{first:?}");
    assert!(then_none);
    // It did receive a ping, with the keepalive's payload (its number).
    let got = read_until(&mut raw, &[0x89, 0x04, 0, 0, 0, 1]).await;
    assert!(!got.is_empty());
}
