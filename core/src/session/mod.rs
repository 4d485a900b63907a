//! Sessions: the layer between a WebSocket [`Connection`](crate::Connection)
//! and the rooms, with every decision made here and nothing done.
//!
//! - [`ClientSession`]: a reconnecting room client (the tokio and the
//!   embassy clients are loops over it).
//! - [`ServerSession`]: one connection of a room server, from its Upgrade
//!   request to its end: the admission steps in their one order, the
//!   connection's rooms, its messages, its error frames and the closes the
//!   server chooses (the tokio server, its axum mount and the embassy
//!   server drive it).

pub mod client;
pub mod server;

pub use client::*;
pub use server::*;
