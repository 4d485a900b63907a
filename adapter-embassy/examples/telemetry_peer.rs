//! The tokio side of the QEMU end-to-end test (scripts/qemu-e2e.sh), where
//! the firmware `qemu-room` (firmware/src/bin/qemu-room.rs) joins room
//! `plant-1` of `/ws/telemetry` (common/telemetry_types.rs) on the postcard
//! wire. Three roles, run as separate processes so that the script can kill
//! and restart the server:
//!
//! * `server --listen ADDR`: a roomwire-tokio room server whose handler
//!   relays every message to the rest of its room.
//! * `operator --url ws://ADDR --room ROOM --id N ...`: a roomwire-tokio room
//!   client in the same room. Waits for `--readings K` readings from the
//!   device and checks them (device name, increasing sequence numbers, the
//!   set point of `--expect-set-point`), sends command N, and waits for its
//!   acknowledgement (id, set point, note, at least `--min-connections`
//!   connections). Exits 0 when all of it checked out, 1 otherwise.
//! * `hostile --listen ADDR --modes garbage,bad-frame,...`: a server that
//!   misbehaves once per mode, one connection each, then exits: `garbage`
//!   (an HTTP answer that is not an upgrade), `bad-frame` (a valid upgrade,
//!   then a frame with a reserved opcode), `cut-frame` (a valid upgrade,
//!   then half a frame and a closed socket), `silent` (reads the request,
//!   answers nothing: the client's handshake timeout), `stall` (a valid
//!   upgrade, then answers nothing, not even pings: the client's
//!   keepalive).
//!
//! One line per step on stdout.

#[path = "common/telemetry_types.rs"]
mod telemetry_types;

use std::time::Duration;

use roomwire_core::WireFormat;
use roomwire_tokio::client::{Client, ClientOptions};
use roomwire_tokio::server::{Endpoint, Reply, Server};
use telemetry_types::{Ack, Command, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};

roomwire_core::channel! {
    /// The telemetry room, as the host sees it (owned strings).
    pub struct Telemetry { path: telemetry_types::PATH, in: Frame<String>, out: Frame<String> }
}

/// What the device calls itself.
const DEVICE: &str = "qemu-m4";

type Result<T> = std::result::Result<T, String>;

fn usage() -> ! {
    eprintln!(
        "usage: telemetry_peer server --listen ADDR\n\
         \x20      telemetry_peer operator --url ws://ADDR --room ROOM --id N [--readings K] [--set-point MC]\n\
         \x20                              [--expect-set-point MC] [--min-connections N] [--last] [--timeout SECS]\n\
         \x20      telemetry_peer hostile --listen ADDR --modes garbage,bad-frame,cut-frame,silent,stall"
    );
    std::process::exit(2)
}

/// `--name value` pairs and bare `--flags`.
struct Args(Vec<(String, Option<String>)>);

impl Args {
    fn parse(args: impl Iterator<Item = String>) -> Self {
        let mut out = Vec::new();
        let mut args = args.peekable();
        while let Some(name) = args.next() {
            if !name.starts_with("--") {
                usage();
            }
            let value = args.next_if(|v| !v.starts_with("--"));
            out.push((name, value));
        }
        Self(out)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.as_deref())
    }

    fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.get(name) {
            Some(v) => v.parse().unwrap_or_else(|_| usage()),
            None => default,
        }
    }
}

// --- server -------------------------------------------------------------

async fn server(listen: &str) -> std::io::Result<()> {
    let server = Server::builder()
        .endpoint(Endpoint::<Telemetry>::new(|ctx| {
            Box::pin(async move {
                let reached = ctx.reply_with(&ctx.message, &Reply::new().except_self())?;
                let what = match &ctx.message {
                    Frame::Reading(r) => format!("reading seq {} from {}", r.seq, r.device),
                    Frame::Command(c) => format!("command {}", c.id),
                    Frame::Ack(a) => format!("ack {} from {}", a.id, a.device),
                };
                println!("server: {what} in {} relayed to {reached}", ctx.room_id());
                Ok(())
            })
        }))
        // The user is the peer's address: the end-to-end script tells the
        // firmware's connections from the operators' by it.
        .resolve_user(|handshake| {
            let user = handshake.peer_addr().map(|peer| peer.ip().to_string());
            async move { user }
        })
        .on_connect(|e| println!("server: connect {} rooms {:?} user {:?}", e.connection_id, e.rooms, e.user_id))
        .on_disconnect(|e| println!("server: disconnect {} code {:?} user {:?}", e.connection_id, e.code, e.user_id))
        .build()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let listener = TcpListener::bind(listen).await?;
    println!("server: listening on {}", listener.local_addr()?);
    server.serve(listener).await
}

// --- operator -----------------------------------------------------------

struct Operator {
    url: String,
    room: String,
    id: u32,
    readings: u32,
    set_point_mc: i32,
    expect_set_point_mc: Option<i32>,
    min_connections: u32,
    last: bool,
    timeout: Duration,
}

async fn operator(op: Operator) -> Result<()> {
    let options = ClientOptions::new().room(op.room.clone()).wire(WireFormat::Postcard);
    let (client, mut incoming) = Client::<Telemetry>::connect(&op.url, options).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + op.timeout;
    let format = timeout(op.timeout, client.wait_connected())
        .await
        .map_err(|_| "the operator could not connect".to_string())?
        .ok_or("the operator's client closed")?;
    println!("operator: connected ({format:?}), in room {}", op.room);

    // The device's readings.
    let mut seen = 0;
    let mut last_seq = 0;
    while seen < op.readings {
        let (room, frame) = next(&mut incoming, deadline).await?;
        let Frame::Reading(r) = frame else {
            println!("operator: (skipping {frame:?})");
            continue;
        };
        if room.as_deref() != Some(op.room.as_str()) {
            return Err(format!("reading labelled {room:?}, expected {}", op.room));
        }
        if r.device != DEVICE {
            return Err(format!("reading from {:?}, expected {DEVICE:?}", r.device));
        }
        if r.seq <= last_seq {
            return Err(format!("reading seq {} after {last_seq}", r.seq));
        }
        if let Some(expected) = op.expect_set_point_mc
            && r.set_point_mc != expected
        {
            return Err(format!("reading reports set point {} m°C, expected {expected}", r.set_point_mc));
        }
        last_seq = r.seq;
        seen += 1;
        println!(
            "operator: reading seq {} uptime {} ms temperature {} m°C set point {} m°C",
            r.seq, r.uptime_ms, r.temperature_mc, r.set_point_mc
        );
    }

    // The command, and its acknowledgement.
    let note = format!("command {} from tokio", op.id);
    let command = Command { id: op.id, set_point_mc: op.set_point_mc, note: note.clone(), last: op.last };
    client.send(&op.room, &Frame::Command(command)).map_err(|e| e.to_string())?;
    println!("operator: sent command {} (set point {} m°C, last {})", op.id, op.set_point_mc, op.last);
    loop {
        let (room, frame) = next(&mut incoming, deadline).await?;
        match frame {
            Frame::Ack(ack) if ack.id == op.id => {
                check_ack(&op, &note, room.as_deref(), &ack)?;
                println!(
                    "operator: ack {} from {} (set point {} m°C, note {:?}, {} readings, {} connections)",
                    ack.id, ack.device, ack.set_point_mc, ack.note, ack.readings, ack.connections
                );
                break;
            }
            Frame::Reading(r) => println!("operator: reading seq {} (set point {} m°C)", r.seq, r.set_point_mc),
            other => println!("operator: (skipping {other:?})"),
        }
    }
    client.close().await;
    Ok(())
}

fn check_ack(op: &Operator, note: &str, room: Option<&str>, ack: &Ack<String>) -> Result<()> {
    if room != Some(op.room.as_str()) {
        return Err(format!("ack labelled {room:?}, expected {}", op.room));
    }
    if ack.device != DEVICE || ack.set_point_mc != op.set_point_mc || ack.note != note {
        return Err(format!("ack does not match the command: {ack:?}"));
    }
    if ack.connections < op.min_connections {
        return Err(format!("ack reports {} connections, expected at least {}", ack.connections, op.min_connections));
    }
    Ok(())
}

async fn next(
    incoming: &mut roomwire_tokio::client::Incoming<Telemetry>,
    deadline: Instant,
) -> Result<(Option<String>, Frame<String>)> {
    match tokio::time::timeout_at(deadline, incoming.recv()).await {
        Err(_) => Err("timed out waiting for the device".into()),
        Ok(None) => Err("the operator's client closed".into()),
        Ok(Some((room, frame))) => Ok((room.map(|r| r.as_str().to_owned()), frame)),
    }
}

// --- hostile ------------------------------------------------------------

/// Reads an HTTP request head (up to the blank line); returns the
/// `Sec-WebSocket-Key` value.
async fn read_request(stream: &mut TcpStream) -> Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 {
            return Err("request head too long".into());
        }
        let n = stream.read(&mut byte).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("client closed during its request".into());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    text.lines()
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-key")))
        .map(|(_, v)| v.trim().to_owned())
        .ok_or_else(|| "no Sec-WebSocket-Key".into())
}

async fn upgrade(stream: &mut TcpStream, key: &str) -> Result<()> {
    let accept = roomwire_core::handshake::accept_key(key.as_bytes());
    let accept = std::str::from_utf8(&accept).map_err(|e| e.to_string())?;
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {}\r\n\r\n",
        roomwire_core::wire::PROTOCOL_POSTCARD
    );
    stream.write_all(response.as_bytes()).await.map_err(|e| e.to_string())
}

/// Reads until the client leaves: Ok if it closed or reset the
/// connection within `limit`, an error if it was still there.
async fn drain(stream: &mut TcpStream, limit: Duration) -> Result<()> {
    let mut buf = [0u8; 1024];
    let end = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(end, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
            Ok(Ok(_)) => {}
            Err(_) => return Err(format!("the client was still connected after {limit:?}")),
        }
    }
}

async fn misbehave(stream: &mut TcpStream, mode: &str) -> Result<String> {
    let key = read_request(stream).await?;
    let started = Instant::now();
    match mode {
        "garbage" => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n\x00\xffgarbage\x81\x7f")
                .await
                .map_err(|e| e.to_string())?;
            drain(stream, Duration::from_secs(10)).await?;
        }
        "bad-frame" => {
            upgrade(stream, &key).await?;
            // FIN + reserved opcode 0x3, then a junk length.
            stream.write_all(&[0x83, 0x05, 1, 2, 3, 4, 5]).await.map_err(|e| e.to_string())?;
            drain(stream, Duration::from_secs(10)).await?;
        }
        "cut-frame" => {
            upgrade(stream, &key).await?;
            // A binary frame announcing 100 bytes, 10 sent, then our end
            // of the stream: the client must see it end mid-frame, and go.
            stream.write_all(&[0x82, 100, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]).await.map_err(|e| e.to_string())?;
            stream.shutdown().await.map_err(|e| e.to_string())?;
            drain(stream, Duration::from_secs(10)).await?;
            return Ok(format!("closed mid-frame; the client left after {} ms", started.elapsed().as_millis()));
        }
        "silent" => {
            drain(stream, Duration::from_secs(20)).await?;
        }
        "stall" => {
            upgrade(stream, &key).await?;
            drain(stream, Duration::from_secs(20)).await?;
        }
        other => return Err(format!("unknown mode {other:?}")),
    }
    Ok(format!("the client left after {} ms", started.elapsed().as_millis()))
}

async fn hostile(listen: &str, modes: &[&str]) -> Result<()> {
    let listener = TcpListener::bind(listen).await.map_err(|e| e.to_string())?;
    println!("hostile: listening on {listen}: {}", modes.join(", "));
    for mode in modes {
        let (mut stream, peer) = timeout(Duration::from_secs(30), listener.accept())
            .await
            .map_err(|_| format!("no client for {mode}"))?
            .map_err(|e| e.to_string())?;
        let outcome = misbehave(&mut stream, mode).await.map_err(|e| format!("{mode}: {e}"))?;
        println!("hostile: {mode} to {peer}: {outcome}");
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let role = args.next().unwrap_or_else(|| usage());
    let args = Args::parse(args);
    let result = match role.as_str() {
        "server" => {
            let listen = args.get("--listen").unwrap_or_else(|| usage());
            server(listen).await.map_err(|e| e.to_string())
        }
        "operator" => {
            let op = Operator {
                url: args.get("--url").unwrap_or_else(|| usage()).to_owned(),
                room: args.get("--room").unwrap_or("plant-1").to_owned(),
                id: args.num("--id", 1),
                readings: args.num("--readings", 3),
                set_point_mc: args.num("--set-point", 21_500),
                expect_set_point_mc: args.get("--expect-set-point").map(|v| v.parse().unwrap_or_else(|_| usage())),
                min_connections: args.num("--min-connections", 1),
                last: args.flag("--last"),
                timeout: Duration::from_secs(args.num("--timeout", 30)),
            };
            operator(op).await
        }
        "hostile" => {
            let listen = args.get("--listen").unwrap_or_else(|| usage());
            let modes: Vec<&str> = args.get("--modes").unwrap_or_else(|| usage()).split(',').collect();
            hostile(listen, &modes).await
        }
        _ => usage(),
    };
    match result {
        Ok(()) => println!("{role}: PASS"),
        Err(e) => {
            println!("{role}: FAIL: {e}");
            std::process::exit(1);
        }
    }
}
