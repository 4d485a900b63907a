//! Mounting the room server: over TLS (tokio-rustls, a certificate made at
//! test time with rcgen) and on an axum router.

mod server_support;

use std::sync::Arc;

use roomwire_tokio::roomwire_core::Duration as CoreDuration;
use roomwire_tokio::roomwire_core::handshake::HandshakeError;
use roomwire_tokio::roomwire_core::wire::PROTOCOL_JSON;
use roomwire_tokio::server::{Emit, Server};
use roomwire_tokio::{ClientRequest, CloseCode, Config, Error, Message, MessageRef, WebSocket};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::json;
use server_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed certificate for `localhost`, and TLS configs trusting it.
fn tls_configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// `server` behind TLS on a loopback port of its own
/// ([`Server::serve_tls`]); its address.
async fn serve_tls(server: &Server, server_tls: Arc<rustls::ServerConfig>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = server.clone();
    tokio::spawn(async move { server.serve_tls(listener, tokio_rustls::TlsAcceptor::from(server_tls)).await });
    addr
}

/// Whether the server ends `tcp` within [`LIMIT`] (an answer, then the
/// end, or the end alone); the bytes it sent.
async fn ended(mut tcp: TcpStream) -> Vec<u8> {
    let mut answer = Vec::new();
    match timeout(LIMIT, tcp.read_to_end(&mut answer)).await.expect("the server kept the stream") {
        Ok(_) => answer,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => answer,
        Err(e) => panic!("{e}"),
    }
}

/// TLS gets the limits of plain TCP: a client that never starts its TLS
/// handshake is dropped at the first-byte deadline, one that stops within
/// it at the handshake deadline, and the server goes on serving.
#[tokio::test]
async fn serve_tls_bounds_the_tls_handshake() {
    let h = harness_with(
        config(|c| {
            c.socket.core.first_byte_timeout = Some(CoreDuration::from_millis(200));
            c.socket.core.handshake_timeout = Some(CoreDuration::from_millis(400));
        }),
        |e| e,
    )
    .await;
    let (server_tls, client_tls) = tls_configs();
    let addr = serve_tls(&h.server, server_tls).await;
    let silent = TcpStream::connect(addr).await.unwrap();
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap(); // the start of a ClientHello
    assert!(ended(silent).await.is_empty());
    assert!(ended(stalled).await.is_empty());
    let tcp = TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_tls);
    let tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let request = ClientRequest { host: "localhost", target: "/ws/chat", protocols: &[], headers: &[] };
    timeout(LIMIT, WebSocket::connect_with_stream(tls, &request, Config::default())).await.unwrap().unwrap();
}

/// `serve_router` gives an axum application the limits `axum::serve` does
/// not: a header that never ends closes the connection at the handshake
/// deadline, and the peer's address reaches the handshake caps.
#[tokio::test]
async fn serve_router_bounds_headers_and_knows_the_peer() {
    let h = harness_with(
        config(|c| {
            c.socket.core.handshake_timeout = Some(CoreDuration::from_millis(300));
            c.max_handshakes_per_address = 0;
            c.address_cap_on_loopback = true;
        }),
        |e| e,
    )
    .await;
    let app = axum::Router::new().merge(h.server.router());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = h.server.clone();
    tokio::spawn(async move { server.serve_router(listener, app).await });
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /ws/chat HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let answer = ended(slow).await;
    assert!(answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"), "{}", String::from_utf8_lossy(&answer));
    // No place for any address: the peer was known.
    match try_connect(addr, "/ws/chat", &[], &[]).await {
        Err(Error::Handshake(HandshakeError::Rejected { status: 429 })) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn wss_round_trip_over_tokio_rustls() {
    let h = harness().await;
    let (server_tls, client_tls) = tls_configs();
    let addr = serve_tls(&h.server, server_tls).await;
    let connector = tokio_rustls::TlsConnector::from(client_tls);
    let mut clients = Vec::new();
    for _ in 0..2 {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
        let host = format!("localhost:{}", addr.port());
        let request = ClientRequest { host: &host, target: "/ws/chat?roomId=secret", protocols: &[], headers: &[] };
        let (ws, _) =
            timeout(LIMIT, WebSocket::connect_with_stream(tls, &request, Config::default())).await.unwrap().unwrap();
        clients.push(ws);
    }
    let [mut a, mut b] = <[_; 2]>::try_from(clients).ok().unwrap();
    a.send(MessageRef::Text(r#"{"roomId":"secret","message":{"content":"over tls"}}"#)).await.unwrap();
    let got = match timeout(LIMIT, b.recv()).await.unwrap() {
        Some(Ok(Message::Text(text))) => serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(got["content"], "over tls");
    assert_eq!(got["__alephaRoom"], "secret");
    assert_eq!(h.server.room_connections("secret").len(), 2);
    a.close(CloseCode::Normal, "done").await.unwrap();
    while timeout(LIMIT, a.recv()).await.unwrap().is_some() {}
    assert_eq!(a.peer_close().unwrap().code, Some(CloseCode::Normal));
}

/// The room client over `wss://`, with the application's TLS config and a
/// token in the URL's query, on the Alepha wire and on the roomwire wire:
/// the server sees the token's user, rooms are joined, messages flow.
#[tokio::test]
async fn room_client_over_wss_with_a_query_token() {
    use futures_util::StreamExt;
    use roomwire_tokio::client::{Client, ClientOptions};
    use roomwire_tokio::roomwire_core::WireFormat;
    use std::borrow::Cow;

    let mut h = harness().await;
    let (server_tls, client_tls) = tls_configs();
    let addr = serve_tls(&h.server, server_tls).await;
    let url = format!("wss://localhost:{}/?token=carol", addr.port());
    // The harness's server type is internally tagged: the JSON wires.
    for wire in [WireFormat::Alepha, WireFormat::Json] {
        let options = ClientOptions::new().wire(wire).room("tls-room").tls_config(client_tls.clone());
        let (client, mut incoming) = Client::<Chat>::connect(&url, options).unwrap();
        assert_eq!(timeout(LIMIT, client.wait_connected()).await.unwrap(), Some(wire), "{wire:?}");
        let event = h.next_connect().await;
        assert_eq!(event.user_id.as_deref(), Some("carol"), "{wire:?}: the query reached the server");
        timeout(LIMIT, client.join("tls-room")).await.unwrap().unwrap();
        let (mut raw, _) = h.connect("/ws/chat?roomId=tls-room").await;
        raw.send(MessageRef::Text(r#"{"roomId":"tls-room","message":{"content":"to carol"}}"#)).await.unwrap();
        let (room, message) = timeout(LIMIT, incoming.next()).await.unwrap().unwrap();
        assert_eq!(room.as_deref(), Some("tls-room"));
        assert!(matches!(&message, ChatIn::Append { content, .. } if content == "to carol"), "{message:?}");
        client.send("tls-room", &ChatOut { content: Cow::Borrowed("from carol") }).unwrap();
        assert_eq!(
            recv_json(&mut raw).await,
            json!({"type": "append", "content": "from carol", "username": "carol", "__alephaRoom": "tls-room"})
        );
        client.close().await;
        raw.close(CloseCode::Normal, "").await.unwrap();
    }
    // A certificate nobody vouches for: the default roots refuse it.
    let (client, _incoming) = Client::<Chat>::connect(&url, ClientOptions::new()).unwrap();
    let mut states = client.state_changes();
    let state = timeout(LIMIT, states.wait_for(|s| matches!(s, roomwire_tokio::ConnectionState::Error { .. })))
        .await
        .unwrap()
        .unwrap()
        .clone();
    assert!(format!("{state:?}").contains("Certificate"), "{state:?}");
}

/// Through axum as on the server's own listener, a client that has its 101
/// is in its rooms: the connection is registered before hyper gets the
/// 101 to write (it writes it before it hands the stream over), and what
/// is sent to its rooms before its stream comes reaches it. One whose
/// stream never comes leaves its rooms again.
#[tokio::test]
async fn through_axum_a_client_with_its_101_is_in_its_rooms() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let h = harness().await;
    // The room's size when hyper is handed the 101, seen by a layer
    // around the router.
    let at_101 = Arc::new(AtomicUsize::new(usize::MAX));
    let (server, seen) = (h.server.clone(), at_101.clone());
    let app = h.server.router().layer(axum::middleware::map_response(move |response: axum::response::Response| {
        if response.status() == 101 {
            seen.store(server.room_stats().room_size("/ws/chat", "early"), Ordering::SeqCst);
            // Sent to the room before the client has its 101 or the
            // server its stream: it waits, then comes first.
            server.emit::<Chat>(&Emit::to_room("early"), &ChatIn::System { message: "first".into() }).unwrap();
        }
        async move { response }
    }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (mut client, _) = try_connect(addr, "/ws/chat?roomId=early", &[], &[]).await.unwrap();
    assert_eq!(at_101.load(Ordering::SeqCst), 1, "hyper had the 101 before the connection was in its room");
    assert_eq!(recv_json(&mut client).await, json!({"type": "system", "message": "first", "__alephaRoom": "early"}));

    // A request that came through no HTTP connection: no stream will come.
    let request = axum::http::Request::builder()
        .uri("/ws/chat?roomId=never")
        .header("host", "x")
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(h.server.upgrade(request).await.status(), 101);
    timeout(LIMIT, async {
        while h.server.room_stats().room_size("/ws/chat", "never") != 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a connection whose upgrade failed stayed in its room");
}

/// Through axum, a connection refused a place after its upgrade (a full
/// room) gets its 101 and then the close with the reason, as on the
/// server's own listener; the room keeps its member.
#[tokio::test]
async fn through_axum_a_refused_client_gets_its_101_then_the_close() {
    let h = harness_with(config(|c| c.rooms.max_members_per_room = 1), |e| e).await;
    let app = axum::Router::new().merge(h.server.router());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (_first, _) = try_connect(addr, "/ws/chat?roomId=a", &[], &[]).await.unwrap();
    let (mut second, _) = try_connect(addr, "/ws/chat?roomId=a", &[], &[]).await.unwrap();
    assert_eq!(closed_with(&mut second).await, Some((Some(CloseCode::Policy), "Room full".to_owned())));
    assert_eq!(h.server.room_stats().room_size("/ws/chat", "a"), 1);
}

#[tokio::test]
async fn mounted_on_an_axum_router() {
    let mut h = harness().await;
    let app = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" })).merge(h.server.router());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The application's own routes still work.
    let mut http = TcpStream::connect(addr).await.unwrap();
    http.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    timeout(LIMIT, http.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"), "{answer}");

    // Two clients through axum, one speaking the roomwire wire.
    let (mut a, _) = try_connect(addr, "/ws/chat?roomId=lobby", &[], &[]).await.unwrap();
    let ea = h.next_connect().await;
    let (mut b, selected) = try_connect(addr, "/ws/chat?token=bo", &[PROTOCOL_JSON], &[]).await.unwrap();
    assert_eq!(selected.as_deref(), Some(PROTOCOL_JSON));
    let eb = h.next_connect().await;
    assert_eq!(eb.user_id.as_deref(), Some("bo"));
    b.send(MessageRef::Text(r#"{"type":"join","ref":1,"room":"lobby"}"#)).await.unwrap();
    assert_eq!(recv_text(&mut b).await, r#"{"type":"ok","ref":1}"#);
    b.send(MessageRef::Text(r#"{"type":"message","room":"lobby","data":{"content":"via axum"}}"#)).await.unwrap();
    assert_eq!(
        recv_json(&mut a).await,
        json!({"type": "append", "content": "via axum", "username": "bo", "__alephaRoom": "lobby"})
    );
    h.server.emit::<Chat>(&Emit::to_connection(&ea.connection_id), &ChatIn::System { message: "hi".into() }).unwrap();
    assert_eq!(recv_json(&mut a).await, json!({"type": "system", "message": "hi"}));

    // Refusals come back as HTTP statuses through axum.
    let status = |r: Result<(Client, Option<String>), Error>| match r {
        Err(Error::Handshake(HandshakeError::Rejected { status })) => status,
        other => panic!("{:?}", other.map(|_| ())),
    };
    assert_eq!(status(try_connect(addr, "/ws/secure-chat", &[], &[]).await), 401);
    assert_eq!(status(try_connect(addr, "/ws/unknown", &[], &[]).await), 404, "axum's own 404");
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"GET /ws/chat HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    timeout(LIMIT, plain.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "the core judges a plain GET: {answer}");
    let mut old = TcpStream::connect(addr).await.unwrap();
    old.write_all(
        b"GET /ws/chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = vec![0u8; 1024];
    let n = timeout(LIMIT, old.read(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).to_lowercase();
    assert!(answer.starts_with("http/1.1 426") && answer.contains("sec-websocket-version: 13"), "{answer}");

    // Shutdown reaches connections upgraded by axum too.
    let server: Server = h.server.clone();
    let shutdown = tokio::spawn(async move { server.shutdown().await });
    for ws in [&mut a, &mut b] {
        assert_eq!(closed_with(ws).await.and_then(|(code, _)| code), Some(CloseCode::Away));
    }
    timeout(LIMIT, shutdown).await.unwrap().unwrap();
}
