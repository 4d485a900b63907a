//! The tokio side of the end-to-end tests (scripts/embassy-e2e.sh), run in
//! the test's network namespace next to `tap_node` (192.0.2.2) and the
//! roomwire-tokio chat server (192.0.2.1:8080). Exits 0 when every case
//! passed, 1 otherwise; one line per step.
//!
//! 1. The embassy client in room `lobby` of the chat server and a tokio
//!    client (the raw `WebSocket::connect`) in the same room exchange typed
//!    messages both ways.
//! 2. Two tokio clients join room `lobby` on the embassy server and talk
//!    through it; the server survives garbage, a handshake cut short and a
//!    frame cut mid-way from other clients, and still serves; a flood is
//!    slowed to the room's pace, and a reader that trickles its reads to
//!    hold the room back is reset.

use std::time::Duration;

use roomwire_tokio::{Config, Message, MessageRef, WebSocket};
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, timeout};

const CHAT: &str = "ws://192.0.2.1:8080/ws/chat?roomId=lobby";
const EMBASSY: &str = "ws://192.0.2.2:8081/ws/chat?roomId=lobby";
const EMBASSY_ADDR: &str = "192.0.2.2:8081";

type Result<T> = std::result::Result<T, String>;

async fn connect(url: &str) -> Result<WebSocket<tokio::net::TcpStream>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match timeout(Duration::from_secs(5), WebSocket::connect(url, Config::default())).await {
            Ok(Ok((ws, _))) => return Ok(ws),
            Ok(Err(e)) if Instant::now() < deadline => eprintln!("peer: connect {url}: {e}; retrying"),
            Err(_) if Instant::now() < deadline => eprintln!("peer: connect {url}: timed out; retrying"),
            Ok(Err(e)) => return Err(format!("connect {url}: {e}")),
            Err(_) => return Err(format!("connect {url}: timed out")),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A raw TCP connection to the embassy server, retried like [`connect`]:
/// a slot listens again only once its previous connection is fully closed.
async fn tcp_connect() -> Result<tokio::net::TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::net::TcpStream::connect(EMBASSY_ADDR).await {
            Ok(stream) => return Ok(stream),
            Err(e) if Instant::now() < deadline => eprintln!("peer: connect {EMBASSY_ADDR}: {e}; retrying"),
            Err(e) => return Err(format!("connect {EMBASSY_ADDR}: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for an `append` whose content is `content`; returns the frame.
async fn expect_append<S>(ws: &mut WebSocket<S>, content: &str, within: Duration) -> Result<serde_json::Value>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = match timeout(left, ws.recv()).await {
            Err(_) => return Err(format!("no append {content:?} within {within:?}")),
            Ok(None) => return Err("connection closed".into()),
            Ok(Some(Err(e))) => return Err(format!("recv: {e}")),
            Ok(Some(Ok(m))) => m,
        };
        let Message::Text(text) = message else { continue };
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{text}: {e}"))?;
        if value["type"] == "append" && value["content"] == content {
            return Ok(value);
        }
        println!("peer: (skipping {text})");
    }
}

async fn say<S>(ws: &mut WebSocket<S>, content: &str) -> Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = serde_json::json!({ "roomId": "lobby", "message": { "content": content } }).to_string();
    ws.send(MessageRef::Text(&frame)).await.map_err(|e| format!("send: {e}"))
}

/// Case 1: the embassy client on the tokio chat server.
async fn embassy_client_on_tokio_server() -> Result<()> {
    let mut ws = connect(CHAT).await?;
    println!("peer: joined lobby on the chat server");
    let got = expect_append(&mut ws, "hello from embassy", Duration::from_secs(30)).await?;
    println!("peer: chat server relayed the embassy client's message: {got}");
    say(&mut ws, "hello from tokio").await?;
    let got = expect_append(&mut ws, "ack from embassy", Duration::from_secs(15)).await?;
    println!("peer: the embassy client received ours and answered: {got}");
    Ok(())
}

/// Bad clients of the embassy server: garbage, a handshake cut short, a
/// frame cut mid-way.
async fn bad_clients() -> Result<()> {
    let mut garbage = tcp_connect().await?;
    garbage.write_all(b"\x00\xffnot http at all\r\n\r\n").await.map_err(|e| e.to_string())?;
    let mut cut = tcp_connect().await?;
    cut.write_all(b"GET /ws/chat HTTP/1.1\r\nHost: x\r\nUpgr").await.map_err(|e| e.to_string())?;
    drop(cut);
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(garbage);
    // A real upgrade, then half a masked frame, then gone.
    let mut ws = connect(EMBASSY).await?;
    say(&mut ws, "from a client about to vanish").await?;
    drop(ws);
    let mut half = tcp_connect().await?;
    half.write_all(
        b"GET /ws/chat?roomId=lobby HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\xfe\x01",
    )
    .await
    .map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(half);
    tokio::time::sleep(Duration::from_millis(700)).await;
    println!("peer: sent garbage, a cut handshake and a cut frame to the embassy server");
    Ok(())
}

/// Case 2: tokio clients in a room of the embassy server.
async fn tokio_clients_on_embassy_server() -> Result<()> {
    let mut a = connect(EMBASSY).await?;
    let mut b = connect(EMBASSY).await?;
    println!("peer: two tokio clients joined lobby on the embassy server");
    say(&mut a, "via embassy").await?;
    let got = expect_append(&mut b, "via embassy", Duration::from_secs(10)).await?;
    if got["__alephaRoom"] != "lobby" {
        return Err(format!("expected the lobby label: {got}"));
    }
    println!("peer: b received a's message through the embassy server: {got}");
    say(&mut b, "and back").await?;
    let got = expect_append(&mut a, "and back", Duration::from_secs(10)).await?;
    println!("peer: a received b's answer: {got}");

    bad_clients().await?;
    say(&mut a, "still serving").await?;
    let got = expect_append(&mut b, "still serving", Duration::from_secs(10)).await?;
    println!("peer: the embassy server still serves after bad clients: {got}");
    let mut c = connect(EMBASSY).await?;
    say(&mut c, "new slot").await?;
    expect_append(&mut a, "new slot", Duration::from_secs(10)).await?;
    expect_append(&mut b, "new slot", Duration::from_secs(10)).await?;
    println!("peer: freed slots are reused");
    drop(c);
    flood(&mut a, &mut b).await?;
    trickle(&mut a, &mut b).await
}

/// A raw client upgraded into room `lobby` on the embassy server, with
/// its receive buffer kept small if `receive_buffer` says so (so that its
/// server-side send buffer fills after a few KiB it does not read).
async fn raw_member(receive_buffer: Option<u32>) -> Result<tokio::net::TcpStream> {
    use tokio::io::AsyncReadExt;
    let mut stream = match receive_buffer {
        // Connected again and again while slots free up, as `tcp_connect`.
        None => tcp_connect().await?,
        Some(size) => {
            let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
            socket.set_recv_buffer_size(size).map_err(|e| e.to_string())?;
            let address = EMBASSY_ADDR.parse().map_err(|e| format!("{e}"))?;
            timeout(Duration::from_secs(10), socket.connect(address))
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|e| e.to_string())?
        }
    };
    stream
        .write_all(
            b"GET /ws/chat?roomId=lobby HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        match timeout(Duration::from_secs(10), stream.read(&mut byte)).await {
            Ok(Ok(1)) => response.push(byte[0]),
            other => return Err(format!("no 101: {other:?}")),
        }
    }
    if !response.starts_with(b"HTTP/1.1 101") {
        return Err(String::from_utf8_lossy(&response).into_owned());
    }
    Ok(stream)
}

/// A reader that reads what it holds just before each grace ends (every
/// 4 s), holding every sender of the room back for most of the
/// time, is reset once its time short adds up to the grace, a second or
/// so into its second stretch; timed stretch by stretch it would never be.
/// The members that read are served on, and at once once it is gone.
async fn trickle<S>(speaker: &mut WebSocket<S>, reader: &mut WebSocket<S>) -> Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use std::cell::Cell;
    use tokio::io::AsyncReadExt;
    let mut trickler = raw_member(Some(4096)).await?;
    let start = Instant::now();
    let reset: Cell<Option<Duration>> = Cell::new(None);
    let sent = Cell::new(0usize);
    let padding = "p".repeat(400);
    // The room's traffic (to everyone but its sender), read by `reader`
    // as it comes: held back while the trickler is short.
    let traffic = async {
        while reset.get().is_none() {
            let content = format!("t{} {padding}", sent.get());
            say(speaker, &content).await?;
            expect_append(reader, &content, Duration::from_secs(10)).await?;
            sent.set(sent.get() + 1);
        }
        Ok::<_, String>(())
    };
    let trickle = async {
        let mut ticks = 0u32;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            ticks += 1;
            if trickler.take_error().map_err(|e| e.to_string())?.is_some() {
                reset.set(Some(start.elapsed()));
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(40) {
                return Err("trickle: the trickling reader was not reset within 40 s".to_string());
            }
            if ticks.is_multiple_of(40) {
                // About what it holds (its receive buffer and the
                // server's send buffer), and then nothing for 4 s again.
                let (mut chunk, mut taken) = ([0u8; 4096], 0);
                while taken < 16 * 1024 {
                    match timeout(Duration::from_millis(20), trickler.read(&mut chunk)).await {
                        Ok(Ok(0) | Err(_)) => {
                            reset.set(Some(start.elapsed()));
                            return Ok(());
                        }
                        Ok(Ok(n)) => taken += n,
                        Err(_) => break,
                    }
                }
            }
        }
    };
    let (traffic, trickle) = tokio::join!(traffic, trickle);
    trickle?;
    traffic?;
    let reset = reset.get().unwrap_or_default();
    println!("peer: the trickling reader was reset after {reset:?} ({} room messages meanwhile)", sent.get());
    if reset < Duration::from_secs(5) {
        return Err(format!("trickle: reset after {reset:?}, before one grace"));
    }
    let before = Instant::now();
    for i in 0..20 {
        say(speaker, &format!("after trickle {i}")).await?;
        expect_append(reader, &format!("after trickle {i}"), Duration::from_secs(5)).await?;
    }
    println!("peer: the room runs on without it: 20 messages in {:?}", before.elapsed());
    Ok(())
}

/// One client sends a thousand small messages in one write, as fast as
/// TCP takes them; the reader of its room, reading as fast as it can, gets
/// every reply once and in order, and neither is reset: the sender is
/// slowed to the pace of the room, not its readers cut off.
async fn flood<S>(speaker: &mut WebSocket<S>, reader: &mut WebSocket<S>) -> Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    const MESSAGES: usize = 1000;
    // A raw client: its frames are built here (masked with a zero key) so
    // all of them go out at once.
    let mut sender = raw_member(None).await.map_err(|e| format!("flood: {e}"))?;
    let mut frames = Vec::new();
    for i in 0..MESSAGES {
        let payload = format!(r#"{{"roomId":"lobby","message":{{"content":"f{i}"}}}}"#);
        frames.extend_from_slice(&[0x81, 0x80 | payload.len() as u8, 0, 0, 0, 0]);
        frames.extend_from_slice(payload.as_bytes());
    }
    let send = async { sender.write_all(&frames).await.map_err(|e| format!("flood: send: {e}")) };
    let read = async {
        for i in 0..MESSAGES {
            let message = match timeout(Duration::from_secs(30), reader.recv()).await {
                Err(_) => return Err(format!("flood: reply {i} never came")),
                Ok(None) => return Err(format!("flood: the reader was closed after {i} replies")),
                Ok(Some(Err(e))) => return Err(format!("flood: the reader failed after {i} replies: {e}")),
                Ok(Some(Ok(m))) => m,
            };
            let Message::Text(text) = message else { return Err(format!("flood: {message:?}")) };
            let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{text}: {e}"))?;
            if value["content"] != format!("f{i}") {
                return Err(format!("flood: reply {i} was {text}"));
            }
        }
        Ok(())
    };
    // The speaker is in the room too: it reads its copies the same way.
    let speaker_reads = async {
        for i in 0..MESSAGES {
            expect_append(speaker, &format!("f{i}"), Duration::from_secs(30)).await?;
        }
        Ok::<_, String>(())
    };
    let (sent, read, heard) = tokio::join!(send, read, speaker_reads);
    sent?;
    read?;
    heard?;
    println!("peer: {MESSAGES} messages sent in one write: each reached both readers once, in order");
    say(reader, "after the flood").await?;
    expect_append(speaker, "after the flood", Duration::from_secs(10)).await?;
    // And the sender is still served.
    let last = r#"{"roomId":"lobby","message":{"content":"last"}}"#;
    sender.write_all(&[0x81, 0x80 | last.len() as u8, 0, 0, 0, 0]).await.map_err(|e| e.to_string())?;
    sender.write_all(last.as_bytes()).await.map_err(|e| e.to_string())?;
    expect_append(reader, "last", Duration::from_secs(10)).await?;
    println!("peer: the readers and the sender are all still connected after the flood");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cases: [(&str, _); 2] = [
        (
            "embassy client <-> tokio chat server",
            Box::pin(embassy_client_on_tokio_server())
                as std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>>>>,
        ),
        ("tokio clients <-> embassy server", Box::pin(tokio_clients_on_embassy_server())),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, case) in cases {
        match timeout(Duration::from_secs(120), case).await {
            Ok(Ok(())) => {
                println!("peer: PASS {name}");
                passed += 1;
            }
            Ok(Err(e)) => {
                println!("peer: FAIL {name}: {e}");
                failed += 1;
            }
            Err(_) => {
                println!("peer: FAIL {name}: timed out");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
