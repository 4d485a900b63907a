//! roomwire-tokio room server for the reliability soak (`scripts/soak.sh`):
//! the room `Server` (public API only) on a multi-threaded runtime, as an
//! application would run it, on the Alepha wire. Clients join with
//! `/ws/soak?roomId=r`; every message is relayed to every other member of
//! the sender's room. Keepalive every 2 s, so peers that vanish are found
//! within seconds; the other limits are the defaults (4 MiB outbound queue,
//! 1 MiB messages).
//!
//! Every 500 ms it prints one line the soak reads:
//! `stats open=N connects=N disconnects=N code_1000=N code_1013=N ...`
//! (`code_none`: ended without a close code, such as a keepalive timeout).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use roomwire_tokio::roomwire_core::Duration as CoreDuration;
use roomwire_tokio::server::{Endpoint, Reply, Server, ServerConfig};
use serde::{Deserialize, Serialize};

/// The soak message: one string field, borrowed from the received frame.
#[derive(Serialize, Deserialize)]
pub struct Relay<'a> {
    #[serde(borrow)]
    pub p: Cow<'a, str>,
}

roomwire_tokio::roomwire_core::channel! {
    /// The soak channel.
    pub struct Soak { path: "/ws/soak", in: Relay<'a>, out: Relay<'a> }
}

#[derive(Default)]
struct Counts {
    connects: u64,
    disconnects: u64,
    by_code: BTreeMap<String, u64>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The address to listen on: the first argument, as for the bench servers.
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let counts = Arc::new(Mutex::new(Counts::default()));
    let mut config = ServerConfig::default();
    config.socket.core.keepalive_interval = Some(CoreDuration::from_secs(2));
    let (on_connect, on_disconnect) = (counts.clone(), counts.clone());
    let server = Server::builder()
        .config(config)
        .endpoint(Endpoint::<Soak>::new(|ctx| {
            Box::pin(async move {
                ctx.reply_with(&ctx.message, &Reply::new().except_self())?;
                Ok(())
            })
        }))
        .on_connect(move |_| on_connect.lock().unwrap_or_else(|p| p.into_inner()).connects += 1)
        .on_disconnect(move |e| {
            let mut counts = on_disconnect.lock().unwrap_or_else(|p| p.into_inner());
            counts.disconnects += 1;
            let code = e.code.map_or_else(|| "none".to_owned(), |c| u16::from(c).to_string());
            *counts.by_code.entry(code).or_insert(0) += 1;
        })
        .build()?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    {
        // The line scripts/soak.sh waits for.
        let mut out = std::io::stdout();
        let _ = writeln!(out, "listening on {addr}");
        let _ = out.flush();
    }
    let reporting = server.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let line = {
                let counts = counts.lock().unwrap_or_else(|p| p.into_inner());
                let codes: String = counts.by_code.iter().map(|(code, n)| format!(" code_{code}={n}")).collect();
                format!(
                    "stats open={} connects={} disconnects={}{codes}",
                    reporting.connection_count(),
                    counts.connects,
                    counts.disconnects
                )
            };
            let mut out = std::io::stdout();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    });
    server.serve(listener).await?;
    Ok(())
}
