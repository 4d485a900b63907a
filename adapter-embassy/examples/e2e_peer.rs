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
//!    hold the room back is reset. A request too large for a slot is
//!    answered 431; a peer's end frees its slot at once, even while the
//!    server is idle; SYNs from an address that never answers hold no slot
//!    for good.
//! 3. On a second embassy server pinging every 2 s, a reader that stops
//!    reading holds the room longer than a keepalive interval: the members
//!    whose pongs wait unread behind the hold are not closed as dead. A
//!    newcomer is admitted while a reader is short, but the handler's
//!    greeting waits until the reader has room.

use std::time::Duration;

use roomwire_tokio::{Config, Message, MessageRef, WebSocket};
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, timeout};

const CHAT: &str = "ws://192.0.2.1:8080/ws/chat?roomId=lobby";
const EMBASSY: &str = "ws://192.0.2.2:8081/ws/chat?roomId=lobby";
const EMBASSY_ADDR: &str = "192.0.2.2:8081";
/// The embassy server that pings every 2 s (`--listen-short-keepalive`).
const SHORT_KEEPALIVE: &str = "ws://192.0.2.2:8082/ws/chat?roomId=lobby";
const SHORT_KEEPALIVE_ADDR: &str = "192.0.2.2:8082";

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
    tcp_connect_to(EMBASSY_ADDR).await
}

/// [`tcp_connect`] to the server at `addr`.
async fn tcp_connect_to(addr: &str) -> Result<tokio::net::TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) if Instant::now() < deadline => eprintln!("peer: connect {addr}: {e}; retrying"),
            Err(e) => return Err(format!("connect {addr}: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for an `append` whose content is `content`; returns the frame.
async fn expect_append<S>(ws: &mut WebSocket<S>, content: &str, within: Duration) -> Result<serde_json::Value>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    expect_frame(ws, None, within, &format!("append {content:?}"), |v| is_append(v, content)).await
}

fn is_append(frame: &serde_json::Value, content: &str) -> bool {
    frame["type"] == "append" && frame["content"] == content
}

/// Waits for a JSON text frame that `wanted` accepts (others are skipped)
/// within `within`; returns it. Meanwhile `other`, if given, reads too
/// (and so answers its pings): its end fails the wait.
async fn expect_frame<S>(
    ws: &mut WebSocket<S>,
    mut other: Option<&mut WebSocket<S>>,
    within: Duration,
    what: &str,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let other_ends = async {
            match other.as_deref_mut() {
                Some(other) => loop {
                    match other.recv().await {
                        None => return "the other member was closed".to_string(),
                        Some(Err(e)) => return format!("the other member failed: {e}"),
                        Some(Ok(_)) => {}
                    }
                },
                None => std::future::pending().await,
            }
        };
        let message = match timeout(left, async {
            tokio::select! {
                message = ws.recv() => Ok(message),
                ended = other_ends => Err(ended),
            }
        })
        .await
        {
            Err(_) => return Err(format!("no {what} within {within:?}")),
            Ok(Err(ended)) => return Err(ended),
            Ok(Ok(None)) => return Err("connection closed".into()),
            Ok(Ok(Some(Err(e)))) => return Err(format!("recv: {e}")),
            Ok(Ok(Some(Ok(m)))) => m,
        };
        let Message::Text(text) = message else { continue };
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{text}: {e}"))?;
        if wanted(&value) {
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
    trickle(&mut a, &mut b).await?;
    oversized_request().await?;
    ends_free_slots_at_once().await?;
    unanswered_syns_let_go().await?;
    // And a and b were served all along.
    say(&mut a, "after the slot cases").await?;
    expect_append(&mut b, "after the slot cases", Duration::from_secs(10)).await?;
    Ok(())
}

/// A client's text frame (masked with a zero key, so built here whole)
/// saying `content` to room `lobby`; short contents only (one length byte).
fn room_message_frame(content: &str) -> Vec<u8> {
    let payload = format!(r#"{{"roomId":"lobby","message":{{"content":"{content}"}}}}"#);
    assert!(payload.len() < 126, "a short message");
    let mut frame = vec![0x81, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload.as_bytes());
    frame
}

/// A request larger than a slot's `read` buffer (1 KiB in tap_node) is
/// answered 431 by the core, not cut off with a reset.
async fn oversized_request() -> Result<()> {
    use tokio::io::AsyncReadExt;
    let mut stream = tcp_connect().await?;
    let request = format!(
        "GET /ws/chat?roomId=lobby HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Cookie: {}\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "c".repeat(1500)
    );
    // The server may stop reading once it has answered: what it took is enough.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut response = Vec::new();
    match timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await {
        Err(_) => return Err("oversized request: no answer in 10 s".into()),
        Ok(Err(e)) if response.is_empty() => return Err(format!("oversized request: {e}, no answer")),
        Ok(_) => {}
    }
    if !response.starts_with(b"HTTP/1.1 431") {
        return Err(format!("oversized request: answered {:?}", String::from_utf8_lossy(&response)));
    }
    println!("peer: a request too large for a slot was answered 431");
    Ok(())
}

/// Connects a member when a slot is free, and says how long that took
/// (a full server refuses connections until a slot listens again).
async fn timed_member() -> Result<(tokio::net::TcpStream, Duration)> {
    let start = Instant::now();
    let member = raw_member(None).await?;
    Ok((member, start.elapsed()))
}

/// Two members fill the free slots and leave (FIN) while nothing else
/// happens on the server: the next member gets in at once, not at the
/// server's next timer (a keepalive, up to 30 s away).
async fn ends_free_slots_at_once() -> Result<()> {
    let (c, _) = timed_member().await?;
    let (d, _) = timed_member().await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop((c, d));
    let (e, took) = timed_member().await?;
    if took > Duration::from_secs(3) {
        return Err(format!("ends: a slot freed by a FIN was taken again only after {took:?}"));
    }
    drop(e);
    println!("peer: a member that left freed its slot at once ({took:?})");
    Ok(())
}

/// SYNs to the two free slots from an address on the link that never
/// answers (nothing has it, so the SYN-ACKs wait on ARP for good): the
/// slots are held until TCP gives up on them (10 s after each SYN), then
/// taken again.
async fn unanswered_syns_let_go() -> Result<()> {
    // Ten SYNs, 150 ms apart, each from its own port: a slot still
    // finishing the last case's close listens again within that time and
    // takes one of the later ones (a SYN no socket listens for is answered
    // with a reset, which goes nowhere).
    let sent = std::process::Command::new("python3")
        .args(["-c", SPOOFED_SYNS, "192.0.2.77", "192.0.2.2", "8081", "10"])
        .status()
        .map_err(|e| format!("syns: python3: {e}"))?;
    if !sent.success() {
        return Err(format!("syns: sending them failed: {sent}"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (member, took) = timed_member().await?;
    drop(member);
    // Taken at once, the SYNs never held a slot, and this case proves nothing.
    if took < Duration::from_secs(5) {
        return Err(format!("syns: a member got in after {took:?}: the SYNs held no slot"));
    }
    println!("peer: slots held by SYNs nobody answers were let go: a member got in after {took:?}");
    Ok(())
}

/// Sends N TCP SYNs 150 ms apart from a spoofed source (argv: SRC DST
/// PORT N), by hand through a raw socket: the IP header with IP_HDRINCL
/// (the kernel fills its checksum), the TCP header's checksum over the
/// pseudo-header.
const SPOOFED_SYNS: &str = r#"
import socket, struct, sys, time
src, dst, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for i in range(n):
    sport = 40000 + i
    tcp = struct.pack("!HHIIBBHHH", sport, port, 1000 + i, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    s.sendto(ip + tcp, (dst, 0))
    time.sleep(0.15)
"#;

/// A raw client upgraded into room `lobby` on the embassy server, with
/// its receive buffer kept small if `receive_buffer` says so (so that its
/// server-side send buffer fills after a few KiB it does not read).
async fn raw_member(receive_buffer: Option<u32>) -> Result<tokio::net::TcpStream> {
    raw_member_of(EMBASSY_ADDR, receive_buffer).await
}

/// [`raw_member`] of the server at `addr`.
async fn raw_member_of(addr: &str, receive_buffer: Option<u32>) -> Result<tokio::net::TcpStream> {
    use tokio::io::AsyncReadExt;
    let mut stream = match receive_buffer {
        // Connected again and again while slots free up, as `tcp_connect`.
        None => tcp_connect_to(addr).await?,
        Some(size) => {
            let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
            socket.set_recv_buffer_size(size).map_err(|e| e.to_string())?;
            let address = addr.parse().map_err(|e| format!("{e}"))?;
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
    let frames: Vec<u8> = (0..MESSAGES).flat_map(|i| room_message_frame(&format!("f{i}"))).collect();
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
    sender.write_all(&room_message_frame("last")).await.map_err(|e| e.to_string())?;
    expect_append(reader, "last", Duration::from_secs(10)).await?;
    println!("peer: the readers and the sender are all still connected after the flood");
    Ok(())
}

/// Waits for an `append` of `content` on `reader`, as [`expect_append`],
/// while `other` reads too (and so answers its pings); fails if `other`
/// is closed meanwhile.
async fn expect_append_while_answering<S>(
    reader: &mut WebSocket<S>,
    other: &mut WebSocket<S>,
    content: &str,
    within: Duration,
) -> Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    expect_frame(reader, Some(other), within, &format!("append {content:?}"), |v| is_append(v, content)).await.map(drop)
}

/// Case 3, on the server that pings every 2 s: a reader that stops
/// reading holds the room back (every member's input waits, pongs
/// included) until it is closed, longer than a keepalive interval. The
/// members that answered their pings are not closed as dead for pongs the
/// server held unread: both get every message, and talk on.
///
/// The staller joins a second after them, so its pings come a second
/// after theirs: it never answers, and is closed two intervals after it
/// joined, which ends the hold; a member's ping sent in the hold's first
/// second is judged a second before that.
async fn held_members_keep_their_keepalive() -> Result<()> {
    let mut reader = connect(SHORT_KEEPALIVE).await?;
    let mut speaker = connect(SHORT_KEEPALIVE).await?;
    say(&mut speaker, "first").await?;
    expect_append_while_answering(&mut reader, &mut speaker, "first", Duration::from_secs(5)).await?;
    let joined = Instant::now();
    while joined.elapsed() < Duration::from_secs(1) {
        expect_append_while_answering(&mut reader, &mut speaker, "(none)", Duration::from_millis(100)).await.ok();
    }
    let staller = raw_member_of(SHORT_KEEPALIVE_ADDR, Some(4096)).await?;
    let staller_joined = Instant::now();
    let padding = "p".repeat(400);
    let (mut longest, mut longest_at, mut after_hold) = (Duration::ZERO, Duration::ZERO, 0);
    for i in 0.. {
        let content = format!("h{i} {padding}");
        say(&mut speaker, &content).await?;
        let sent = Instant::now();
        expect_append_while_answering(&mut reader, &mut speaker, &content, Duration::from_secs(15))
            .await
            .map_err(|e| format!("held members: message {i}: {e}"))?;
        let took = sent.elapsed();
        if took > longest {
            (longest, longest_at) = (took, sent - staller_joined);
        }
        if longest >= Duration::from_secs(2) {
            after_hold += 1;
            if after_hold == 10 {
                break;
            }
        } else if staller_joined.elapsed() > Duration::from_secs(10) {
            return Err(format!("held members: no hold of the room in 10 s ({i} messages, longest {longest:?})"));
        }
    }
    drop(staller);
    println!(
        "peer: the room was held {longest:?} from {longest_at:?} after the staller joined; \
         both members answered their pings and were served on"
    );
    say(&mut reader, "after the hold").await?;
    expect_append_while_answering(&mut speaker, &mut reader, "after the hold", Duration::from_secs(5)).await
}

/// Waits for a `system` frame whose message starts with `prefix` on `ws`,
/// while `other` reads too (and so answers its pings).
async fn expect_system_while_answering<S>(
    ws: &mut WebSocket<S>,
    other: &mut WebSocket<S>,
    prefix: &str,
    within: Duration,
) -> Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let wanted =
        |v: &serde_json::Value| v["type"] == "system" && v["message"].as_str().is_some_and(|m| m.starts_with(prefix));
    expect_frame(ws, Some(other), within, &format!("system message {prefix:?}"), wanted).await.map(drop)
}

/// Case 4, on the server that greets each new member's room (in a frame of
/// most of a KiB): while a reader's send buffer is short of a frame, a
/// newcomer is admitted at once, but the handler hears of it (and greets
/// the room) only once every reader has room again, as a message would be
/// held: the greeting never finds the short reader without room, which
/// would be reset for it.
async fn a_greeting_waits_for_readers() -> Result<()> {
    use tokio::io::AsyncReadExt;
    let mut reader = connect(SHORT_KEEPALIVE).await?;
    let mut speaker = connect(SHORT_KEEPALIVE).await?;
    let mut short = raw_member_of(SHORT_KEEPALIVE_ADDR, Some(4096)).await?;
    // The room's traffic until a message is held: the short reader is.
    let padding = "p".repeat(400);
    let mut held = None;
    for i in 0..100 {
        let content = format!("g{i} {padding}");
        say(&mut speaker, &content).await?;
        if expect_append_while_answering(&mut reader, &mut speaker, &content, Duration::from_millis(300)).await.is_err()
        {
            held = Some(content);
            break;
        }
    }
    let held = held.ok_or("greeting: the reader never ran short")?;
    let newcomer = connect(SHORT_KEEPALIVE).await?;
    println!("peer: a newcomer was admitted while a reader was short");
    if expect_system_while_answering(&mut reader, &mut speaker, "welcome", Duration::from_millis(500)).await.is_ok() {
        return Err("greeting: the handler greeted the room while a reader was short".into());
    }
    // The short reader reads all it holds: the greeting follows, and it is
    // not reset.
    let (mut stream, mut chunk) = (Vec::new(), [0u8; 4096]);
    let reading = Instant::now();
    while !stream.windows(7).any(|w| w == b"welcome") {
        match timeout(Duration::from_millis(1500).saturating_sub(reading.elapsed()), short.read(&mut chunk)).await {
            Err(_) => return Err("greeting: the short reader got no greeting once it read".into()),
            Ok(Ok(0)) => return Err("greeting: the short reader was closed".into()),
            Ok(Err(e)) => return Err(format!("greeting: the short reader was reset: {e}")),
            Ok(Ok(n)) => stream.extend_from_slice(&chunk[..n]),
        }
    }
    expect_append_while_answering(&mut reader, &mut speaker, &held, Duration::from_secs(2)).await?;
    expect_system_while_answering(&mut reader, &mut speaker, "welcome", Duration::from_secs(2)).await?;
    println!("peer: the room was greeted once the short reader had read ({} bytes); it was not reset", stream.len());
    drop((short, newcomer));
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cases: [(&str, _); 4] = [
        (
            "embassy client <-> tokio chat server",
            Box::pin(embassy_client_on_tokio_server())
                as std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>>>>,
        ),
        ("tokio clients <-> embassy server", Box::pin(tokio_clients_on_embassy_server())),
        ("held members keep their keepalive", Box::pin(held_members_keep_their_keepalive())),
        ("a greeting waits for readers", Box::pin(a_greeting_waits_for_readers())),
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
