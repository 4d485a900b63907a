//! The chat channel the cross-crate tests share: `/ws/chat`, as the demo
//! server, Alepha's Node provider (`tests/alepha-node/server.js`) and the
//! embassy test node serve it.

use serde::{Deserialize, Serialize};

/// Client → server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Say {
    /// The text.
    pub content: String,
}

/// Server → client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ChatIn {
    /// A line in a room.
    Append {
        /// The text.
        content: String,
        /// Who wrote it.
        username: String,
    },
}

roomwire_core::channel! {
    /// The chat channel.
    pub struct Chat { path: "/ws/chat", in: ChatIn, out: Say }
}
