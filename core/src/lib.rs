//! # roomwire-core
//!
//! A sans-IO WebSocket (RFC 6455) engine: `#![no_std]`, no allocation, no
//! clock, no sockets, and no panic reachable from wire input. The tokio and
//! embassy adapters of roomwire drive this same engine.
//!
//! One file per concept:
//!
//! * [`frame`]: frame headers and masking;
//! * [`utf8`]: fail-fast incremental UTF-8 validation;
//! * [`close`]: close codes and close payloads;
//! * [`decoder`]: the streaming frame decoder and every framing rule;
//! * [`handshake`]: the opening handshake, both roles;
//! * [`connection`]: the connection state machine that ties them together,
//!   with its driving loop documented on [`Connection`];
//! * [`message`]: whole messages ([`message::MessageReader`]), and 1009;
//! * [`deflate`]: permessage-deflate (RFC 7692): negotiation, and what a
//!   compressed message means (the adapter brings the compressor);
//! * [`time`]: time as an input.
//!
//! The rooms protocol (Alepha's `$channel` / `$websocket`) on top, shared by
//! every adapter so none re-decides it:
//!
//! * [`channel`](mod@channel): a channel's path and typed messages ([`channel!`]);
//! * [`wire`]: which rooms protocol a connection speaks (subprotocols);
//! * [`alepha`]: the Alepha-compatible JSON wire; [`json`]: its scanner;
//! * [`envelope`]: the roomwire wire (postcard and JSON envelopes);
//! * [`room`]: room ids and room tables (fixed capacity, or growable);
//! * [`target`]: who an emit or reply reaches, with which room label;
//! * [`admission`]: the order of admitting an Upgrade, and its answers;
//! * [`dispatch`]: the server side (joining rooms, inbound messages, frames);
//! * [`client`]: the client side (room requests, typed receive);
//! * [`reconnect`]: when a client connects again, and when it stops;
//! * [`url`]: `ws://` and `wss://` URLs;
//! * [`stateful`]: stateful rooms (Alepha's `$room`): their lifecycle and
//!   tick loop;
//! * [`cluster`]: rooms across many nodes (what nodes tell each other).
//!
//! `PROTOCOL.md` at the repository root specifies both wires byte for byte.
//!
//! ## Panic policy
//!
//! Errors come from input; panics would be bugs. The crate denies
//! `unwrap`, `expect`, `panic!` and slice indexing outside tests, and
//! fuzzers check that any byte sequence, split anywhere, ends in an event,
//! a close code or a handshake refusal.
//!
//! ## Features
//!
//! * `alloc`: `message::VecStorage` (a growable reassembly buffer),
//!   `GrowableRoomTable`, `target::SeenVec`, and decoding of internally
//!   tagged enums (serde buffers them).
//! * `std`: implies `alloc`; typed JSON goes through `serde_json`.
//! * `deflate`: [`Config`] gets a `deflate` field, and connections
//!   negotiate permessage-deflate themselves. Off, no negotiation code is
//!   linked (firmware).
//!
//! These add conveniences over the same engine, never a second one.
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod admission;
pub mod alepha;
pub mod channel;
pub mod client;
pub mod close;
pub mod cluster;
pub mod connection;
pub mod decoder;
pub mod deflate;
pub mod dispatch;
pub mod envelope;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod json;
pub mod message;
mod nesting;
pub mod payload;
pub mod reconnect;
pub mod room;
pub mod session;
pub mod slow_reader;
pub mod stateful;
pub mod target;
pub mod time;
pub mod url;
pub mod utf8;
pub mod wire;
mod writer;

#[cfg(test)]
mod tests;

pub use channel::Channel;
pub use client::{ClientEvent, RoomClient};
pub use close::CloseCode;
pub use connection::{
    Config, Connection, Event, MaskKeySource, Message, NoMasking, Received, Rest, SendError, State, Timeout,
};
pub use decoder::{MessageKind, Role};
pub use error::{InsufficientSize, ProtocolError};
pub use frame::{FrameHeader, Opcode};
#[cfg(feature = "alloc")]
pub use room::GrowableRoomTable;
pub use room::{FixedRoomTable, JoinError, Joined, MemberId, RoomId, RoomIdError, RoomSet, RoomTable, TableLimits};
pub use time::{Duration, Instant};
pub use wire::WireFormat;
