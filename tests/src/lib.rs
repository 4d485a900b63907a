//! Cross-crate and real-peer tests live in `tests/`.

pub mod chat;
pub mod conformance;
pub mod core_server;
