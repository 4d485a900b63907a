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
//! * [`message`]: optional reassembly of whole messages;
//! * [`time`]: time as an input.
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
//! * `alloc`: `message::VecStorage`, a growable reassembly buffer.
//! * `std`: implies `alloc`.
//!
//! Both add conveniences over the same engine, never a second one.
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod alepha;
pub mod channel;
pub mod close;
pub mod connection;
pub mod decoder;
pub mod dispatch;
pub mod envelope;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod json;
pub mod message;
pub mod room;
pub mod target;
pub mod time;
pub mod utf8;
pub mod wire;
mod writer;

#[cfg(test)]
mod tests;

pub use close::CloseCode;
pub use connection::{
    Config, Connection, Event, MaskKeySource, Message, NoMasking, Received, SendError, State, Timeout,
};
pub use decoder::{MessageKind, Role};
pub use error::{InsufficientSize, ProtocolError};
pub use frame::{FrameHeader, Opcode};
#[cfg(feature = "alloc")]
pub use room::GrowableRoomTable;
pub use room::{FixedRoomTable, JoinError, Joined, MemberId, RoomId, RoomIdError, RoomSet, RoomTable, TableLimits};
pub use time::{Duration, Instant};
