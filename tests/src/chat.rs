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

/// The chat endpoint of the tokio server: the handler replies `append` to
/// the sender's room, except the sender, with `username` the connection id
/// (as every chat server of these tests does).
pub fn tokio_endpoint() -> roomwire_tokio::server::Endpoint<Chat> {
    use roomwire_tokio::server::{Endpoint, Reply};
    Endpoint::<Chat>::new(|ctx| {
        Box::pin(async move {
            let line =
                ChatIn::Append { content: ctx.message.content.clone(), username: ctx.connection_id().to_owned() };
            ctx.reply_with(&line, &Reply::new().except_self())?;
            Ok(())
        })
    })
}
