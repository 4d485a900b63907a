//! A terminal client of the chat demo (`cargo run -p roomwire-tokio --example chat`).
//!
//! ```text
//! cargo run -p roomwire-tokio --example chat_client -- lobby
//! cargo run -p roomwire-tokio --example chat_client -- lobby --name alice --url ws://127.0.0.1:8080 --wire alepha
//! ```
//!
//! Joins the room given on the command line (default `lobby`), prints what
//! the server sends, and sends each line typed on standard input to that
//! room. `/join ROOM` and `/leave ROOM` change rooms (`/room ROOM` picks the
//! room lines go to), `/quit` (or end of input) leaves. With `--name`, the
//! handshake carries `Authorization: Bearer <name>`, which the demo server
//! takes as the user id (demo only). If the server is not running, the
//! client keeps retrying, and lines typed meanwhile are sent once it is; an
//! answer that retrying cannot help (a full room, a refused name) stops it.
//!
//! It works as it is against an Alepha server on Node too: it asks for the
//! roomwire wire, sees the server echo its probe subprotocol, and goes on
//! over the Alepha wire.

use std::time::Duration;

use roomwire_tokio::client::{Client, ClientOptions};
use roomwire_tokio::roomwire_core::WireFormat;
use roomwire_tokio::{ConnectionState, roomwire_core};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Client → server: a chat line.
#[derive(Debug, Serialize, Deserialize)]
pub struct Say {
    /// The text.
    pub content: String,
}

/// Server → client: the demo's union.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ChatEvent {
    /// Someone said something.
    Append {
        /// The text.
        content: String,
        /// Who: the user id, else the connection id.
        username: String,
    },
    /// An announcement.
    System {
        /// The text.
        message: String,
    },
}

roomwire_core::channel! {
    /// The demo's chat channel.
    pub struct Chat { path: "/ws/chat", in: ChatEvent, out: Say }
}

struct Args {
    room: String,
    url: String,
    name: Option<String>,
    wire: WireFormat,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { room: "lobby".into(), url: "ws://127.0.0.1:8080".into(), name: None, wire: WireFormat::Json };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--url" => args.url = value()?,
            "--name" => args.name = Some(value()?),
            "--wire" => {
                args.wire = match value()?.as_str() {
                    "alepha" => WireFormat::Alepha,
                    "json" => WireFormat::Json,
                    "postcard" => WireFormat::Postcard,
                    other => return Err(format!("unknown wire {other:?} (alepha, json or postcard)")),
                }
            }
            "-h" | "--help" => {
                return Err(
                    "usage: chat_client [ROOM] [--url ws://HOST:PORT] [--name NAME] [--wire alepha|json]".into()
                );
            }
            room if !room.starts_with('-') => args.room = room.to_owned(),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into())).init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let mut options = ClientOptions::new().room(&args.room).wire(args.wire);
    if let Some(name) = &args.name {
        options = options.header("Authorization", format!("Bearer {name}"));
    }
    let (client, mut incoming) = Client::<Chat>::connect(&args.url, options)?;
    eprintln!("chat client for {} in room {:?}; /join, /leave, /room, /quit", args.url, args.room);

    // Print state changes.
    let mut states = client.state_changes();
    tokio::spawn(async move {
        while states.changed().await.is_ok() {
            let state = states.borrow_and_update().clone();
            match state {
                ConnectionState::Connected { format } => eprintln!("* connected ({format:?})"),
                ConnectionState::Error { error, retry_in, .. } => {
                    eprintln!("* {error}; retrying in {:.1} s", retry_in.as_secs_f64())
                }
                ConnectionState::Closed { error: Some(error) } => {
                    // An answer retrying cannot help (a full room, a
                    // refused name) or retries ran out: say it and stop.
                    eprintln!("* stopped: {error}");
                    std::process::exit(1);
                }
                ConnectionState::Closed { error: None } => break,
                _ => {}
            }
        }
    });

    // Print what arrives.
    let printer = tokio::spawn(async move {
        while let Some((room, event)) = incoming.recv().await {
            let room = room.as_deref().unwrap_or("*").to_owned();
            match event {
                ChatEvent::Append { content, username } => println!("[{room}] {username}: {content}"),
                ChatEvent::System { message } => println!("[{room}] ** {message}"),
            }
        }
    });

    // Send what is typed.
    let mut room = args.room.clone();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let line = line.trim();
        let (command, rest) = line.split_once(' ').map_or((line, ""), |(c, r)| (c, r.trim()));
        match command {
            "" => {}
            "/quit" => break,
            "/join" if !rest.is_empty() => {
                // The request is made now; it resolves when joined. Do not
                // block typing meanwhile.
                let join = client.join(rest);
                room = rest.to_owned();
                let joining = room.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(30), join).await {
                        Ok(Ok(())) => eprintln!("* joined {joining:?}"),
                        Ok(Err(e)) => eprintln!("* cannot join {joining:?}: {e}"),
                        Err(_) => eprintln!("* still joining {joining:?}…"),
                    }
                });
            }
            "/leave" if !rest.is_empty() => {
                let (leave, leaving) = (client.leave(rest), rest.to_owned());
                tokio::spawn(async move {
                    match leave.await {
                        Ok(()) => eprintln!("* left {leaving:?}"),
                        Err(e) => eprintln!("* cannot leave {leaving:?}: {e}"),
                    }
                });
            }
            "/room" if !rest.is_empty() => room = rest.to_owned(),
            _ => {
                if let Err(e) = client.send(&room, &Say { content: line.to_owned() }) {
                    eprintln!("* not sent: {e}");
                }
            }
        }
    }
    client.close().await;
    printer.await?;
    Ok(())
}
