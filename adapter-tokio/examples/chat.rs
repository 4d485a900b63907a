//! The demo chat: the seed's chat channel on the room server, with a page.
//!
//! ```text
//! cargo run --release -p roomwire-tokio --example chat -- --listen 127.0.0.1:8080
//! ```
//!
//! Then open <http://127.0.0.1:8080/> in a few tabs. Without `--listen`
//! it serves the same address.
//!
//! Two or more nodes behind one Redis serve the same rooms (a user on one
//! node chats with a user on the other):
//!
//! ```text
//! cargo run --release -p roomwire-tokio --example chat -- --listen 127.0.0.1:8080 --redis redis://127.0.0.1:6379
//! cargo run --release -p roomwire-tokio --example chat -- --listen 127.0.0.1:8081 --redis redis://127.0.0.1:6379
//! ```
//!
//! (`--redis-cluster URL` instead, once per node of a Redis Cluster.) A
//! counter room is owned by one node of the cluster at a time: members on
//! every node share its one counter; if that node dies, another takes the
//! room over (within about 8 s) with a new counter at 0.
//! Without `--redis` it is a single node, all in memory. Routes (one axum
//! router):
//!
//! * `GET /`: the chat page (plain JS, the browser's own `WebSocket`,
//!   Alepha wire).
//! * `/ws/chat`: the chat channel. Client → server `{"content": "…"}`
//!   (bare, or as `{"roomId": "…", "message": {…}}`); server → client
//!   `{"type":"append","content","username"}` or
//!   `{"type":"system","message"}`. The handler replies `append` to the
//!   sender's room, except the sender, with `username` = the user id, else
//!   the connection id.
//! * `/ws/secure-chat`: the same channel, `secure` (anonymous upgrades get
//!   401) and at most 2 connections per user (the third is closed with
//!   1008).
//! * `POST /rooms/{roomId}/announce` with a text body: emits
//!   `{"type":"system","message": <body>}` to that room on both endpoints
//!   (the seed's `broadcastAnnouncement`).
//! * `/ws/counter?roomId=R`: a stateful room (Alepha's `$room`) ticking at
//!   10 Hz, whose state is a counter starting at 0. A client sends
//!   `{"type":"inc","by":N}` (N an integer from 1 to 100; anything else is
//!   answered `{"error": …}`); a member that joins receives
//!   `{"type":"count","value":V,"members":M}` at once, and every member
//!   receives it on each tick where the value or the member count changed.
//!   When the last member leaves the counter is discarded (a later join
//!   starts at 0).
//! * `POST /rooms/{roomId}/counter/reset`: calls the counter room's `reset`
//!   method (back to 0) and answers the value it had.
//!
//! **Demo-only authentication**: the user id is whatever follows
//! `Authorization: Bearer ` or, for browsers (which cannot set headers on a
//! WebSocket), the `token` query parameter. Anyone can claim any name. A
//! real server verifies a token (a JWT, a session cookie) in its
//! `resolve_user` or `authorize` hook.
//!
//! Ctrl-C shuts down gracefully: every socket is closed with 1001.
//!
//! ```text
//! curl -X POST --data 'maintenance at noon' http://127.0.0.1:8080/rooms/lobby/announce
//! curl -X POST http://127.0.0.1:8080/rooms/lobby/counter/reset
//! ```

use std::borrow::Cow;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Html;
use axum::routing::{get, post};
use roomwire_redis::RedisBackplane;
use roomwire_tokio::server::{Emit, Endpoint, Handshake, Reply, Server};

#[path = "chat/counter.rs"]
mod counter;
use counter::{CounterRoom, counter_room};
use serde::{Deserialize, Serialize};

/// Client → server (Alepha's `out`). Borrows the text from the frame when
/// it has no escapes.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChatOut<'a> {
    /// The message text.
    #[serde(borrow)]
    pub content: Cow<'a, str>,
}

/// Server → client (Alepha's `in`): a union tagged by `type`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ChatIn {
    /// A chat line.
    Append {
        /// The text.
        content: String,
        /// Who wrote it.
        username: String,
    },
    /// A system announcement.
    System {
        /// The text.
        message: String,
    },
}

roomwire_tokio::roomwire_core::channel! {
    /// The open chat.
    pub struct Chat { path: "/ws/chat", in: ChatIn, out: ChatOut<'a> }
}

roomwire_tokio::roomwire_core::channel! {
    /// The same channel, for signed-in users only.
    pub struct SecureChat { path: "/ws/secure-chat", in: ChatIn, out: ChatOut<'a> }
}

roomwire_tokio::roomwire_core::channel! {
    /// Each signed-in user's inbox: the room `inbox:<user>` and no other.
    pub struct Inbox { path: "/ws/inbox", in: ChatIn, out: ChatOut<'a> }
}

/// The seed's handler: `append` to the sender's room, except the sender.
fn append(content: &str, user: Option<&str>, connection: &str) -> ChatIn {
    ChatIn::Append { content: content.to_owned(), username: user.unwrap_or(connection).to_owned() }
}

/// DEMO ONLY: the user is whoever the client claims to be.
fn demo_user(handshake: &Handshake) -> Option<String> {
    let name = match handshake.bearer_token() {
        Some(token) => Cow::Borrowed(token),
        None => handshake.query_param("token")?,
    };
    let name = name.trim();
    (!name.is_empty() && name.len() <= 64).then(|| name.to_owned())
}

/// The handler of every endpoint here (one body for three channel types):
/// the sender's line, as `append`, to its room except itself.
macro_rules! relay {
    () => {
        |ctx| {
            Box::pin(async move {
                let line = append(&ctx.message.content, ctx.user_id(), ctx.connection_id());
                ctx.reply_with(&line, &Reply::new().except_self())?;
                Ok(())
            })
        }
    };
}

fn server(backplane: Option<RedisBackplane>) -> Server {
    let builder = Server::builder();
    let builder = match backplane {
        Some(backplane) => builder.backplane(backplane),
        None => builder,
    };
    builder
        .resolve_user(|handshake| {
            let user = demo_user(handshake);
            async move { user }
        })
        .endpoint(Endpoint::<Chat>::new(relay!()))
        .endpoint(
            Endpoint::<SecureChat>::new(relay!())
                .secure()
                // Signed-in browsers only from this server's own pages.
                .same_origin()
                .max_connections_per_user(2),
        )
        .endpoint(
            // A note to oneself, seen by one's other connections.
            Endpoint::<Inbox>::new(relay!())
                .secure()
                .same_origin()
                // Alepha clients name their room in the query (`?roomId=inbox:alice`),
                // roomwire clients join it: either way, only their own.
                .authorize_room(|access| {
                    access.user_id.is_some_and(|user| access.room.strip_prefix("inbox:") == Some(user))
                }),
        )
        .room(counter_room())
        .on_connect(
            |e| tracing::info!(id = e.connection_id, user = e.user_id, rooms = ?e.rooms, path = e.path, "connect"),
        )
        .on_disconnect(|e| tracing::info!(id = e.connection_id, code = ?e.code, reason = e.reason, "disconnect"))
        .on_error(|e| tracing::warn!(id = e.connection_id, path = e.path, room = e.room_id, "{}", e.failure))
        .build()
        .expect("valid endpoints")
}

/// The longest announcement, in bytes; longer bodies are refused with 413.
const MAX_ANNOUNCEMENT: usize = 4 * 1024;

/// Whether a request comes from the operator: from this machine, or, when
/// `ROOMWIRE_ANNOUNCE_TOKEN` is set, bearing that token (`Authorization:
/// Bearer …`) from anywhere.
fn operator(peer: SocketAddr, headers: &HeaderMap) -> bool {
    let bearer = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match std::env::var("ROOMWIRE_ANNOUNCE_TOKEN") {
        Ok(token) if !token.is_empty() => bearer == Some(token.as_str()),
        _ => peer.ip().to_canonical().is_loopback(),
    }
}

/// `POST /rooms/{roomId}/counter/reset`: the counter room's `reset`
/// method; answers the value it had. Operator only, as `announce`.
async fn reset_counter(
    State(server): State<Server>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> (StatusCode, String) {
    if !operator(peer, &headers) {
        return (StatusCode::FORBIDDEN, "resets come from the operator only\n".to_owned());
    }
    if !<CounterRoom as roomwire_tokio::roomwire_core::Channel>::validate_room_id(&room) {
        return (StatusCode::BAD_REQUEST, "invalid room id\n".to_owned());
    }
    match server.call::<CounterRoom, _, u64>(&room, "reset", &()).await {
        Ok(value) => (StatusCode::OK, format!("{value}\n")),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("error: {e}\n")),
    }
}

/// `POST /rooms/{roomId}/announce`: the seed's `broadcastAnnouncement`,
/// from the operator only.
async fn announce(
    State(server): State<Server>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(room): Path<String>,
    body: String,
) -> (StatusCode, String) {
    if !operator(peer, &headers) {
        return (StatusCode::FORBIDDEN, "announcements come from the operator only\n".to_owned());
    }
    let message = ChatIn::System { message: body };
    let target = Emit::to_room(room);
    let mut reached = 0;
    for sent in [server.emit::<Chat>(&target, &message), server.emit::<SecureChat>(&target, &message)] {
        match sent {
            Ok(n) => reached += n,
            Err(e) => return (StatusCode::BAD_REQUEST, format!("error: {e}\n")),
        }
    }
    let cluster = if server.backplane_stats().is_some() { " on this node, and published to the others" } else { "" };
    (StatusCode::OK, format!("delivered to {reached} connection(s){cluster}\n"))
}

fn app(server: Server) -> Router {
    Router::new()
        .route("/", get(|| async { Html(include_str!("chat/index.html")) }))
        .route("/rooms/{roomId}/announce", post(announce).layer(DefaultBodyLimit::max(MAX_ANNOUNCEMENT)))
        .route("/rooms/{roomId}/counter/reset", post(reset_counter))
        .merge(server.router())
        .with_state(server)
}

const USAGE: &str =
    "usage: chat [--listen ADDR] [--redis URL | --redis-cluster URL...]   (default 127.0.0.1:8080, in memory)";

/// The address to listen on, and the backplane if any.
fn arguments() -> Result<(String, Option<RedisBackplane>), String> {
    let mut args = std::env::args().skip(1);
    let mut listen = "127.0.0.1:8080".to_owned();
    let mut redis = None;
    let mut cluster = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs an address")?,
            "--redis" => redis = Some(args.next().ok_or("--redis needs a URL (redis://host:port)")?),
            "--redis-cluster" => cluster.push(args.next().ok_or("--redis-cluster needs a URL")?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}; {USAGE}")),
        }
    }
    let backplane = match (redis, cluster.is_empty()) {
        (Some(_), false) => return Err(format!("--redis or --redis-cluster, not both; {USAGE}")),
        (Some(url), true) => Some(RedisBackplane::new(&url).map_err(|e| format!("--redis {url}: {e}"))?),
        (None, false) => Some(RedisBackplane::cluster(&cluster).map_err(|e| format!("--redis-cluster: {e}"))?),
        (None, true) => None,
    };
    Ok((listen, backplane))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let (listen, backplane) = match arguments() {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let server = server(backplane);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("chat: http://{}/  (Ctrl-C to stop)", listener.local_addr()?);
    // `serve_router`, not `axum::serve`: a time limit on request headers,
    // and the peer's address for the handshake caps and `announce`.
    tokio::select! {
        served = server.serve_router(listener, app(server.clone())) => return served,
        _ = tokio::signal::ctrl_c() => {}
    }
    println!("shutting down");
    server.shutdown().await;
    Ok(())
}
