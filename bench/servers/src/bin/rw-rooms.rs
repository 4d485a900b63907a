//! roomwire-tokio room server for the fan-out and idle cells: the room
//! `Server` (public API only) on the Alepha wire. Clients join with
//! `/ws/bench?roomId=r`; every message is relayed to every other member of
//! the sender's room (`reply_with(.., Reply::new().except_self())`), which
//! adds the `__alephaRoom` label as Alepha does.
//!
//! With `BENCH_REDIS=redis://…` it is one node of a cluster on that Redis
//! (the roomwire-redis backplane). With `BENCH_DEFLATE=1` it accepts
//! permessage-deflate (default settings: a room message is compressed once
//! and shared); with `BENCH_DEFLATE=socket`, keeping its context, each
//! connection compresses what it sends with its own compressor.

use std::borrow::Cow;

use roomwire_tokio::roomwire_core::deflate::DeflateConfig;
use roomwire_tokio::server::{Endpoint, Reply, Server, ServerConfig};
use serde::{Deserialize, Serialize};

/// The bench message: one string field, borrowed from the received frame.
#[derive(Serialize, Deserialize)]
pub struct Relay<'a> {
    #[serde(borrow)]
    pub p: Cow<'a, str>,
}

roomwire_tokio::roomwire_core::channel! {
    /// The bench channel.
    pub struct Bench { path: "/ws/bench", in: Relay<'a>, out: Relay<'a> }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = roomwire_bench_servers::addr();
    let builder = match std::env::var("BENCH_REDIS") {
        Ok(url) => Server::builder().backplane(roomwire_redis::RedisBackplane::new(&url)?),
        Err(_) => Server::builder(),
    };
    let mut config = ServerConfig::default();
    config.socket.core.deflate = match std::env::var("BENCH_DEFLATE").as_deref() {
        Ok("1") => Some(DeflateConfig::DEFAULT),
        Ok("socket") => Some(DeflateConfig { send_context_takeover: true, ..DeflateConfig::DEFAULT }),
        _ => None,
    };
    let server = builder
        .config(config)
        .endpoint(Endpoint::<Bench>::new(|ctx| {
            Box::pin(async move {
                ctx.reply_with(&ctx.message, &Reply::new().except_self())?;
                Ok(())
            })
        }))
        .build()?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    roomwire_bench_servers::ready(&addr);
    server.serve(listener).await?;
    Ok(())
}
