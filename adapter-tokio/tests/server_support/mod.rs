//! Shared by the `server_*` tests (and `deflate`): the seed's chat
//! channel, a test handler, a server on loopback with its hooks
//! observable, raw clients and their frames.
#![allow(dead_code)]

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

use roomwire_tokio::server::{
    ConnectEvent, DisconnectEvent, Emit, Endpoint, HandlerResult, Reply, Server, ServerBuilder,
};
use roomwire_tokio::{ClientRequest, CloseCode, Config, Message, MessageRef, WebSocket};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Guard for anything awaited in a test.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Client → server.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ChatOut<'a> {
    #[serde(borrow)]
    pub content: Cow<'a, str>,
}

/// Server → client.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ChatIn {
    Append { content: String, username: String },
    System { message: String },
}

roomwire_tokio::roomwire_core::channel! {
    /// The seed's chat channel.
    pub struct Chat { path: "/ws/chat", in: ChatIn, out: ChatOut<'a> }
}

roomwire_tokio::roomwire_core::channel! {
    /// The same, secure.
    pub struct SecureChat { path: "/ws/secure-chat", in: ChatIn, out: ChatOut<'a> }
}

/// What a handler saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    pub path: &'static str,
    pub connection_id: String,
    pub user_id: Option<String>,
    pub room_id: String,
    pub content: String,
}

/// The test handler's decision: the seed's `append` reply (except self),
/// or with a command prefix: `!all x` replies to the room including the
/// sender, `!to:ROOM x` replies to ROOM, `!except-conn:ID x` and
/// `!except-user:USER x` reply to the room but that connection or user, `!fail` returns an error,
/// `!fail-blank` returns an error whose text is blank, `!panic` panics,
/// `!hang` never returns.
fn decide(content: &str, username: &str) -> Result<(Reply, ChatIn), &'static str> {
    let append = |text: &str| ChatIn::Append { content: text.to_owned(), username: username.to_owned() };
    if let Some(rest) = content.strip_prefix("!all ") {
        Ok((Reply::new(), append(rest)))
    } else if let Some(rest) = content.strip_prefix("!to:") {
        let (room, text) = rest.split_once(' ').unwrap_or((rest, ""));
        Ok((Reply::new().room(room), append(text)))
    } else if let Some(rest) = content.strip_prefix("!except-conn:") {
        let (id, text) = rest.split_once(' ').unwrap_or((rest, ""));
        Ok((Reply::new().except_connection(id), append(text)))
    } else if let Some(rest) = content.strip_prefix("!except-user:") {
        let (user, text) = rest.split_once(' ').unwrap_or((rest, ""));
        Ok((Reply::new().except_user(user), append(text)))
    } else if content == "!fail" {
        Err("handler boom")
    } else if content == "!fail-blank" {
        Err(" ")
    } else if content == "!panic" {
        panic!("handler panicked on purpose");
    } else {
        Ok((Reply::new().except_self(), append(content)))
    }
}

/// One body for both channels' handlers.
macro_rules! handler {
    ($channel:ty, $handled:expr) => {{
        let handled: mpsc::UnboundedSender<Handled> = $handled;
        Endpoint::<$channel>::new(move |ctx| {
            let handled = handled.clone();
            Box::pin(async move {
                let _ = handled.send(Handled {
                    path: <$channel as roomwire_tokio::roomwire_core::channel::Channel>::PATH,
                    connection_id: ctx.connection_id().to_owned(),
                    user_id: ctx.user_id().map(str::to_owned),
                    room_id: ctx.room_id().to_owned(),
                    content: ctx.message.content.to_string(),
                });
                if ctx.message.content == "!hang" {
                    std::future::pending::<()>().await;
                }
                let username = ctx.user_id().unwrap_or(ctx.connection_id());
                let (options, line) = decide(&ctx.message.content, username)?;
                ctx.reply_with(&line, &options)?;
                HandlerResult::Ok(())
            })
        })
    }};
}

/// A server on loopback, with everything its hooks saw.
pub struct Harness {
    pub server: Server,
    pub addr: SocketAddr,
    pub handled: mpsc::UnboundedReceiver<Handled>,
    pub connects: mpsc::UnboundedReceiver<ConnectEvent>,
    pub disconnects: mpsc::UnboundedReceiver<DisconnectEvent>,
    pub messages: mpsc::UnboundedReceiver<(String, &'static str, Vec<u8>)>,
    pub serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// The chat endpoints (`/ws/chat` open, `/ws/secure-chat` secure) with a
/// resolver taking `Authorization: Bearer <user>` or `?token=<user>`;
/// `configure` may change the builder and the secure endpoint.
pub async fn harness_with(
    configure: impl FnOnce(ServerBuilder) -> ServerBuilder,
    secure: impl FnOnce(Endpoint<SecureChat>) -> Endpoint<SecureChat>,
) -> Harness {
    let (handled_tx, handled) = mpsc::unbounded_channel();
    let (connect_tx, connects) = mpsc::unbounded_channel();
    let (disconnect_tx, disconnects) = mpsc::unbounded_channel();
    let (message_tx, messages) = mpsc::unbounded_channel();
    let builder = Server::builder()
        .resolve_user(|handshake| {
            let user = handshake
                .bearer_token()
                .map(str::to_owned)
                .or_else(|| handshake.query_param("token").map(Cow::into_owned));
            async move { user }
        })
        .endpoint(handler!(Chat, handled_tx.clone()))
        .endpoint(secure(handler!(SecureChat, handled_tx).secure()))
        .on_connect(move |e| drop(connect_tx.send(e.clone())))
        .on_disconnect(move |e| drop(disconnect_tx.send(e.clone())))
        .on_message(move |e| drop(message_tx.send((e.connection_id.to_owned(), e.path, e.data.to_vec()))));
    let server = configure(builder).build().expect("valid endpoints");
    let (addr, serving) = serve_on_loopback(&server).await;
    Harness { server, addr, handled, connects, disconnects, messages, serving }
}

/// Serve `server` on a fresh loopback port: its address, and the task.
pub async fn serve_on_loopback(server: &Server) -> (SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve(listener).await }
    });
    (addr, serving)
}

pub async fn harness() -> Harness {
    harness_with(|b| b, |e| e).await
}

pub type Client = WebSocket<TcpStream>;

impl Harness {
    /// Connect to `target` (path and query) with extra headers and
    /// subprotocols; the handshake outcome.
    pub async fn try_connect(
        &self,
        target: &str,
        protocols: &[&str],
        headers: &[(&str, &str)],
    ) -> Result<(Client, Option<String>), roomwire_tokio::Error> {
        try_connect(self.addr, target, protocols, headers).await
    }

    /// Connect on the Alepha wire and wait for the server's connect event.
    pub async fn connect(&mut self, target: &str) -> (Client, ConnectEvent) {
        self.connect_with(target, &[], &[]).await
    }

    /// Connect and wait for the server's connect event.
    pub async fn connect_with(
        &mut self,
        target: &str,
        protocols: &[&str],
        headers: &[(&str, &str)],
    ) -> (Client, ConnectEvent) {
        let (ws, _) = self.try_connect(target, protocols, headers).await.expect("connect");
        let event = self.next_connect().await;
        (ws, event)
    }

    pub async fn next_connect(&mut self) -> ConnectEvent {
        timeout(LIMIT, self.connects.recv()).await.expect("no connect event").expect("hook gone")
    }

    pub async fn next_disconnect(&mut self) -> DisconnectEvent {
        timeout(LIMIT, self.disconnects.recv()).await.expect("no disconnect event").expect("hook gone")
    }

    pub async fn next_handled(&mut self) -> Handled {
        timeout(LIMIT, self.handled.recv()).await.expect("handler not called").expect("handler gone")
    }

    /// Send a marker to connection `id` only: the next message it reads
    /// is that marker iff nothing else was queued for it before. How the
    /// tests assert that something was *not* received, without sleeping.
    pub fn mark(&self, id: &str, marker: &str) {
        let target = Emit::to_connection(id);
        let message = ChatIn::System { message: marker.to_owned() };
        let n = self.server.emit::<Chat>(&target, &message).expect("emit")
            + self.server.emit::<SecureChat>(&target, &message).expect("emit");
        assert_eq!(n, 1, "marker to {id} reached {n} connections");
    }
}

pub async fn try_connect(
    addr: SocketAddr,
    target: &str,
    protocols: &[&str],
    headers: &[(&str, &str)],
) -> Result<(Client, Option<String>), roomwire_tokio::Error> {
    let stream = TcpStream::connect(addr).await?;
    let host = addr.to_string();
    let request = ClientRequest { host: &host, target, protocols, headers };
    let (ws, response) = timeout(LIMIT, WebSocket::connect_with_stream(stream, &request, Config::default()))
        .await
        .expect("handshake hung")?;
    Ok((ws, response.protocol))
}

/// The next message, as text.
pub async fn recv_text(ws: &mut Client) -> String {
    match timeout(LIMIT, ws.recv()).await.expect("recv timed out") {
        Some(Ok(Message::Text(text))) => text,
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// The next message, as JSON.
pub async fn recv_json(ws: &mut Client) -> serde_json::Value {
    let text = recv_text(ws).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Read JSON messages until one is `want`, within `limit`; the failure
/// lists what came instead.
pub async fn recv_json_until(ws: &mut Client, want: &serde_json::Value, limit: Duration) {
    let mut seen = Vec::new();
    let found = timeout(limit, async {
        loop {
            let frame = recv_json(ws).await;
            if frame == *want {
                return;
            }
            seen.push(frame);
        }
    })
    .await;
    assert!(found.is_ok(), "never {want}; saw {seen:?}");
}

/// The next message must be the marker `marker`.
pub async fn expect_marker(ws: &mut Client, marker: &str) {
    assert_eq!(recv_json(ws).await, serde_json::json!({"type": "system", "message": marker}));
}

/// Send text.
pub async fn send_text(ws: &mut Client, text: &str) {
    ws.send(MessageRef::Text(text)).await.expect("send");
}

/// Send an Alepha frame `{"roomId": room, "message": {"content": content}}`.
pub async fn say(ws: &mut Client, room: &str, content: &str) {
    let frame = serde_json::json!({"roomId": room, "message": {"content": content}});
    send_text(ws, &frame.to_string()).await;
}

/// Read until the connection ends; the close code and reason the server
/// sent (`None`: no close frame).
pub async fn closed_with(ws: &mut Client) -> Option<(Option<CloseCode>, String)> {
    timeout(LIMIT, async {
        while let Some(received) = ws.recv().await {
            if received.is_err() {
                break;
            }
        }
    })
    .await
    .expect("connection did not end");
    ws.peer_close().map(|c| (c.code, c.reason.clone()))
}

/// `ws-` and a UUID v4, lowercase hex.
pub fn is_ws_uuid(id: &str) -> bool {
    let Some(uuid) = id.strip_prefix("ws-") else { return false };
    let groups: Vec<&str> = uuid.split('-').collect();
    groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && uuid.chars().all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        && groups[2].starts_with('4')
        && matches!(groups[3].chars().next(), Some('8' | '9' | 'a' | 'b'))
}

/// An Upgrade request written by hand, for clients that misbehave: for
/// `target`, with `headers` (each `Name: value\r\n`).
pub fn raw_request(target: &str, headers: &str) -> Vec<u8> {
    format!(
        "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{headers}\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// A raw client upgraded to `target` (the 101 read and checked); what it
/// sends from then on is the test's to write, frame by frame.
pub async fn raw_upgrade(addr: SocketAddr, target: &str, headers: &str) -> TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(&raw_request(target, headers)).await.expect("request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(timeout(LIMIT, tcp.read_u8()).await.expect("no answer").expect("answer"));
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    tcp
}

/// A builder change for [`harness_with`]: the default server configuration
/// changed by `change`.
pub fn config(
    change: impl FnOnce(&mut roomwire_tokio::server::ServerConfig),
) -> impl FnOnce(ServerBuilder) -> ServerBuilder {
    let mut config = roomwire_tokio::server::ServerConfig::default();
    change(&mut config);
    move |b| b.config(config)
}

/// A masked client frame of any length (zero key: the payload as is) with
/// the given first byte (FIN, RSV bits, opcode), its header written by the
/// core's encoder.
pub fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    use roomwire_tokio::roomwire_core::{FrameHeader, Opcode};
    let header = FrameHeader {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 0x07,
        opcode: Opcode::from(b0 & 0x0f),
        mask: Some([0; 4]),
        payload_len: payload.len() as u64,
    };
    let mut frame = vec![0u8; 14];
    let n = header.encode(&mut frame).expect("14 bytes hold any header");
    frame.truncate(n);
    frame.extend_from_slice(payload);
    frame
}

/// Read one unmasked server frame of any length: (first byte, payload).
pub async fn server_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let b0 = timeout(LIMIT, stream.read_u8()).await.expect("no frame").unwrap();
    let len = match stream.read_u8().await.unwrap() {
        126 => u64::from(stream.read_u16().await.unwrap()),
        127 => stream.read_u64().await.unwrap(),
        n => u64::from(n),
    };
    let mut payload = vec![0; len as usize];
    stream.read_exact(&mut payload).await.unwrap();
    (b0, payload)
}
