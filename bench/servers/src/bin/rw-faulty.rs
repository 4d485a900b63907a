//! Deliberately broken servers, built on roomwire-tokio, that
//! `scripts/bench.sh --smoke` runs the load generator against to prove it
//! fails loudly rather than report a number.
//!
//! ```text
//! rw-faulty MODE [ADDR]
//!   echo-dup    echo server sending every 50th message twice
//!   rooms-drop  room server skipping every 20th relay
//!   rooms-dup   room server relaying every 20th message twice
//!   rooms-self  room server relaying to the sender too
//!   rooms-cut   room server relaying every 20th message one byte short
//!               (the end of its padding: the head of the frame is intact)
//!   rooms-leak  room server relaying every 20th message to the whole
//!               channel (every room) instead of the sender's room
//! ```

use std::borrow::Cow;
use std::cell::Cell;

use roomwire_tokio::server::{Emit, Endpoint, Reply, Server};
use roomwire_tokio::{Config, WebSocket};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

#[derive(Serialize, Deserialize)]
pub struct Relay<'a> {
    #[serde(borrow)]
    pub p: Cow<'a, str>,
}

roomwire_tokio::roomwire_core::channel! {
    /// The bench channel.
    pub struct Bench { path: "/ws/bench", in: Relay<'a>, out: Relay<'a> }
}

thread_local! {
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn nth(every: u64) -> bool {
    COUNT.with(|c| {
        c.set(c.get() + 1);
        c.get() % every == 0
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let addr = std::env::args().nth(2).unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    if mode == "echo-dup" {
        roomwire_bench_servers::ready(&addr);
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                let Ok((mut ws, _)) = WebSocket::accept(stream, Config::default()).await else { return };
                while let Some(Ok(message)) = ws.recv().await {
                    if nth(50) {
                        let _ = ws.feed(&message);
                    }
                    let _ = ws.send(&message).await;
                }
            });
        }
    }
    let mode: &'static str = match mode.as_str() {
        "rooms-drop" => "drop",
        "rooms-dup" => "dup",
        "rooms-self" => "self",
        "rooms-cut" => "cut",
        "rooms-leak" => "leak",
        _ => return Err(format!("unknown mode {mode:?}").into()),
    };
    let server = Server::builder()
        .endpoint(Endpoint::<Bench>::new(move |ctx| {
            Box::pin(async move {
                match mode {
                    "drop" if nth(20) => {}
                    "dup" if nth(20) => {
                        ctx.reply_with(&ctx.message, &Reply::new().except_self())?;
                        ctx.reply_with(&ctx.message, &Reply::new().except_self())?;
                    }
                    "self" => {
                        ctx.reply_with(&ctx.message, &Reply::new())?;
                    }
                    "leak" if nth(20) => {
                        let everyone = Emit::new().except_connection(ctx.connection_id());
                        ctx.server().emit::<Bench>(&everyone, &ctx.message)?;
                    }
                    "cut" if nth(20) => {
                        let p = &ctx.message.p;
                        let cut = Relay { p: Cow::Borrowed(p.get(..p.len().saturating_sub(1)).unwrap_or("")) };
                        ctx.reply_with(&cut, &Reply::new().except_self())?;
                    }
                    _ => {
                        ctx.reply_with(&ctx.message, &Reply::new().except_self())?;
                    }
                }
                Ok(())
            })
        }))
        .build()?;
    roomwire_bench_servers::ready(&addr);
    server.serve(listener).await?;
    Ok(())
}
