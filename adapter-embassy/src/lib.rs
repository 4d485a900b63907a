//! # roomwire-embassy
//!
//! The embassy adapter of roomwire: a room client and a small room server
//! over [`embassy_net`] TCP sockets, for microcontrollers. `#![no_std]`,
//! nothing allocated: every buffer belongs to the caller.
//!
//! Like the tokio adapter, this crate is a thin loop that moves bytes and
//! time between a socket and the sans-IO [`roomwire_core`] engine. Every
//! protocol decision (framing, close codes, handshake checks, keepalive,
//! room requests, typed decoding, dispatch and targeting) is the core's.
//!
//! * [`ws::WebSocket`]: one raw WebSocket connection (whole text and
//!   binary messages, keepalive, deadlines, one pong per ping), for any
//!   WebSocket server;
//! * [`client::Client`]: joins rooms of a channel on a roomwire or
//!   Alepha-compatible server; typed send and receive in postcard (the
//!   default) or JSON; keepalive; reconnects with backoff and restores its
//!   rooms. It moves its bytes through the same TCP transport as a
//!   [`ws::WebSocket`].
//! * [`server::Server`]: a few connections (browsers on the Alepha wire,
//!   or roomwire clients), rooms in a [`FixedRoomTable`](roomwire_core::FixedRoomTable).
//!
//! Masking keys (RFC 6455 §10.3) come from an RNG the firmware provides,
//! through [`KeySource`]: any `MaskKeySource` (a closure
//! `FnMut() -> [u8; 4]`) in a [`RefCell`](core::cell::RefCell), or a
//! hardware RNG through [`RngKeys`] (features `rand_core_06` /
//! `rand_core_09`).
//!
//! Time is [`embassy_time`]'s: a firmware provides a time driver, a host
//! build enables `embassy-time/std`.
//!
//! ## What it costs
//!
//! Flash over a bare embassy-net TCP firmware, on a Cortex-M4F
//! (thumbv7em-none-eabihf, `opt-level = "z"`, LTO), measured by
//! `scripts/firmware-size.sh`: a room client whose channel speaks postcard
//! only about 27 KiB, the Alepha JSON wire only about 31 KiB, every wire
//! about 38 KiB (a channel's `wires` choose what is linked); a
//! [`ws::WebSocket`] without rooms about 19 KiB. RAM: the room client's
//! state about 1.7 KiB beside the buffers the firmware lends it; stack: a
//! poll of [`Client::next_event`] takes a frame of about 1.4 KiB (the
//! core's session, connection and decoder inlined into it), beside the
//! firmware's own tasks and embassy-net's runner (about 3.8 KiB). Make the
//! client and its buffers in their statics (`StaticCell::uninit`,
//! `ConstStaticCell`), not on the stack first: a task reserves its largest
//! temporary on every poll.
//!
//! ## Features
//!
//! * `defmt`: logs through `defmt` (nothing is logged without it);
//! * `dns`: [`client::ClientConfig::host`] (and the host of
//!   [`ws::WebSocket::connect`]) may be a name, resolved by the stack's DNS
//!   client (else an IPv4 literal);
//! * `rand_core_06`, `rand_core_09`: [`RngKeys`] over a `rand_core` RNG.
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

#[macro_use]
mod log;
pub mod client;
mod keys;
pub mod server;
mod time;
mod transport;
pub mod ws;

pub use client::{Client, ClientBuffers, ClientConfig, Disconnect, Event};
pub use keys::{KeySource, RngKeys, RngKeys09};
pub use roomwire_core;
pub use server::{Handler, Server, ServerConfig, SharedBuffers, SlotBuffers};
pub use ws::WebSocket;
