//! The chat channel of `adapter-tokio/examples/chat.rs`, as an allocation-free
//! device sees it (shared by `tap_node` and `e2e_peer`).
//!
//! The server sends an internally tagged union, `{"type":"append","content","username"}`
//! or `{"type":"system","message"}`. Decoding an internally tagged enum needs
//! serde's `alloc`; without it, one flat struct with optional fields reads both.

use serde::{Deserialize, Serialize};

/// Client → server.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChatOut<'a> {
    /// The message text.
    pub content: &'a str,
}

/// Server → client: `append` or `system`, flattened.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ChatIn<'a> {
    /// `"append"` or `"system"`.
    #[serde(rename = "type", borrow)]
    pub kind: &'a str,
    /// `append`: the text.
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub content: Option<&'a str>,
    /// `append`: who wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub username: Option<&'a str>,
    /// `system`: the announcement.
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub message: Option<&'a str>,
}

roomwire_embassy::roomwire_core::channel! {
    /// `/ws/chat`.
    pub struct Chat { path: "/ws/chat", in: ChatIn<'a>, out: ChatOut<'a> }
}
