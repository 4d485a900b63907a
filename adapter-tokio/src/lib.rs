//! # roomwire-tokio
//!
//! The tokio adapter of roomwire: WebSocket (RFC 6455) servers and clients
//! over any `AsyncRead + AsyncWrite + Unpin` stream.
//!
//! This is a thin loop that moves bytes and time between a stream and the
//! sans-IO [`roomwire_core::Connection`]. Every protocol decision (frame
//! validation, close codes, handshake checks, deadlines) is the core's; the
//! adapter owns the buffers, the clock and the socket.
//!
//! * [`WebSocket::accept`] / [`WebSocket::accept_with`]: server handshake,
//!   with an application [`Decision`] on the request;
//! * [`WebSocket::connect`] (`ws://` URLs over TCP) /
//!   [`WebSocket::connect_with_stream`] (any stream): client handshake;
//! * [`WebSocket::recv`]: whole [`Message`]s; pings, keepalive and close
//!   handled while waiting; cancel safe;
//! * [`WebSocket::feed`] / [`WebSocket::flush`] / [`WebSocket::send`]:
//!   batched, bounded sending;
//! * [`WebSocket::close`]: the closing handshake.
//!
//! ```no_run
//! use roomwire_tokio::{Config, Message, MessageRef, WebSocket};
//!
//! # async fn run() -> Result<(), roomwire_tokio::Error> {
//! let (mut ws, _) = WebSocket::connect("ws://127.0.0.1:9001/", Config::default()).await?;
//! ws.send(MessageRef::Text("hello")).await?;
//! while let Some(message) = ws.recv().await {
//!     match message? {
//!         Message::Text(text) => println!("{text}"),
//!         Message::Binary(bytes) => println!("{} bytes", bytes.len()),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Each connection records a `tracing` span named `websocket` with its
//! role (and, for [`WebSocket::connect`], the peer address); events are at
//! `debug` and `trace` level. The span is created inside the current one:
//! a server names the peer by instrumenting the connection's task, as the
//! `echo` example does.
//!
//! [`server`]: the room server (Alepha's `$websocket`): endpoints with
//! typed handlers, rooms, emit, admission, keepalive, backpressure,
//! graceful shutdown; standalone, over any stream, or on an axum router
//! (feature `axum`).
//!
//! [`client`]: the room client (Alepha's `WebSocketClient`): typed send per
//! room, typed receive as a `Stream`, join and leave, reconnection with
//! backoff that restores the rooms, a bounded offline queue, observable
//! state.
//!
//! Examples: `chat` (the room server's demo chat), `chat_client` (a
//! terminal client of it), `tls` (wss through tokio-rustls), `echo` (an
//! echo server, the Autobahn|Testsuite server under test) and
//! `autobahn-client` (the Autobahn fuzzing-server client).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod backplane;
mod budget;
pub mod client;
mod config;
mod deflate;
mod error;
mod handshake;
mod message;
pub mod server;
mod socket;

pub use client::{Client, ClientOptions, ConnectionState, Incoming};
pub use config::{Config, DEFAULT_MAX_OUTBOUND, DEFAULT_MAX_READ_CHUNK};
pub use deflate::{DEFAULT_INFLATING_LIMIT, inflating_held, inflating_limit, set_inflating_limit};
pub use error::Error;
pub use message::{CloseFrame, Decision, HandshakeInfo, Message, MessageRef, Response};
pub use roomwire_core;
pub use roomwire_core::handshake::{ClientRequest, Request};
pub use roomwire_core::{CloseCode, MessageKind};
pub use server::Server;
pub use socket::{DEFAULT_OUTBOUND_LIMIT, WebSocket, outbound_held, outbound_limit, set_outbound_limit};

/// Lock, ignoring poisoning: every critical section in this crate leaves
/// its data valid, so a panic elsewhere while one was held changes nothing.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
