//! Cross-crate and real-peer tests live in `tests/`.

pub mod alepha_node;
pub mod chat;
pub mod client_conformance;
pub mod conformance;
pub mod core_server;
pub mod redis_server;
pub mod session_client;
