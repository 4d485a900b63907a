//! Cross-crate and real-peer tests live in `tests/`.

pub mod alepha_node;
pub mod chat;
pub mod client_conformance;
pub mod conformance;
pub mod core_server;
/// The demo's counter room (the chat example's own module).
#[path = "../../adapter-tokio/examples/chat/counter.rs"]
pub mod counter;
pub mod redis_server;
pub mod session_client;
