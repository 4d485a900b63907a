//! Echo server: every text and binary message is sent back.
//!
//! ```text
//! cargo run --release -p roomwire-tokio --example echo -- 127.0.0.1:9001
//! ```
//!
//! Accepts any path. The limits are those of the Autobahn|Testsuite
//! (`scripts/autobahn.sh server`): messages up to 64 MiB in any number of
//! frames.

use roomwire_tokio::roomwire_core::deflate::DeflateConfig;
use roomwire_tokio::{Config, WebSocket};
use tokio::net::TcpListener;
use tracing::Instrument;

/// Limits for conformance testing: 64 MiB messages in any number of
/// fragments; accepts permessage-deflate with the default settings.
fn config() -> Config {
    let mut config = Config::default();
    config.core.max_message_size = 64 << 20;
    config.core.max_fragments = u32::MAX;
    config.core.deflate = Some(DeflateConfig::DEFAULT);
    config
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    println!("echo server listening on ws://{}", listener.local_addr()?);
    let config = config();
    loop {
        let (stream, peer) = listener.accept().await?;
        // The adapter's `websocket` span nests inside this one, which names the peer.
        let span = tracing::info_span!("connection", %peer);
        tokio::spawn(
            async move {
                let _ = stream.set_nodelay(true);
                let mut ws = match WebSocket::accept(stream, config).await {
                    Ok((ws, _)) => ws,
                    Err(e) => {
                        eprintln!("{peer}: handshake failed: {e}");
                        return;
                    }
                };
                while let Some(received) = ws.recv().await {
                    match received {
                        // A failed send (the peer started closing) ends at the next recv.
                        Ok(message) => drop(ws.send(&message).await),
                        Err(e) => {
                            if !matches!(e, roomwire_tokio::Error::Protocol(_)) {
                                eprintln!("{peer}: {e}");
                            }
                        }
                    }
                }
            }
            .instrument(span),
        );
    }
}
