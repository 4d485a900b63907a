//! Tests of the whole engine on the in-memory pair.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod channel_protocol;
mod client_session;
mod cluster;
#[cfg(feature = "deflate")]
mod deflate;
pub(crate) mod pair;
mod rest;
mod rfc6455;
mod room_model;
mod wire_golden;
