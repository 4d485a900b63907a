//! Autobahn|Testsuite client: echoes every case of a `wstest -m fuzzingserver`.
//!
//! ```text
//! cargo run --release -p roomwire-tokio --example autobahn-client -- ws://127.0.0.1:9002 AGENT
//! ```
//!
//! Asks `/getCaseCount`, runs `/runCase?case=N&agent=AGENT` for every case
//! (echoing text and binary messages until the connection ends; failures
//! are expected in some cases and do not stop the run), then
//! `/updateReports?agent=AGENT`.

use roomwire_tokio::roomwire_core::deflate::DeflateConfig;
use roomwire_tokio::{Config, Error, Message, WebSocket};

/// Limits for conformance testing: 64 MiB messages in any number of
/// fragments; offers permessage-deflate with the default settings.
fn config() -> Config {
    let mut config = Config::default();
    config.core.max_message_size = 64 << 20;
    config.core.max_fragments = u32::MAX;
    config.core.deflate = Some(DeflateConfig::DEFAULT);
    config
}

/// Echo until the connection ends; the first error, if any.
async fn echo(url: &str) -> Result<(), Error> {
    let (mut ws, _) = WebSocket::connect(url, config()).await?;
    let mut first_error = None;
    while let Some(received) = ws.recv().await {
        match received {
            // A failed send (the server started closing) ends at the next recv.
            Ok(message) => drop(ws.send(&message).await),
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| "ws://127.0.0.1:9002".to_owned());
    let agent = args.next().unwrap_or_else(|| "roomwire".to_owned());
    let base = base.trim_end_matches('/');

    let (mut ws, _) = WebSocket::connect(&format!("{base}/getCaseCount"), config()).await?;
    let count: u32 = match ws.recv().await {
        Some(Ok(Message::Text(text))) => text.trim().parse()?,
        other => return Err(format!("unexpected answer to getCaseCount: {other:?}").into()),
    };
    while ws.recv().await.is_some() {}
    println!("{count} cases");

    let mut errors = 0u32;
    for case in 1..=count {
        if let Err(e) = echo(&format!("{base}/runCase?case={case}&agent={agent}")).await {
            errors += 1;
            if matches!(e, Error::Io(_) | Error::Handshake(_)) {
                eprintln!("case {case}: {e}");
            }
        }
        if case % 50 == 0 || case == count {
            println!("{case}/{count} cases run ({errors} ended with an error, often expected)");
        }
    }

    let (mut ws, _) = WebSocket::connect(&format!("{base}/updateReports?agent={agent}"), config()).await?;
    while ws.recv().await.is_some() {}
    println!("reports updated");
    Ok(())
}
