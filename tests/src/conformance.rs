//! One behaviour for every server: scripted sessions of raw bytes, run
//! against any roomwire server of the chat channel (`/ws/chat`, whose
//! handler replies `{"type":"append","content",…}` to the sender's room,
//! except the sender).
//!
//! A session writes exactly the bytes a client (or an attacker) would,
//! frame by frame, and asserts the exact answer: HTTP status, frames, close
//! codes and reasons. Every server must give the same answers, so the
//! expectations hold no adapter's name: the tokio server
//! (`tests/tests/server_conformance.rs`, in process), the embassy server on an
//! embassy-net stack (`scripts/embassy-e2e.sh`, through the `conformance`
//! binary), and the core driven with no adapter at all (the same test file,
//! over an in-memory transport).
//!
//! Each session uses fresh connections and ends them, so sessions are
//! independent and a server with four connection slots runs them all.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A byte stream to a server: TCP, or an in-memory server.
pub trait Stream {
    /// Write all of `bytes`.
    fn send(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Read some bytes (`Ok(0)`: the server closed). Fails after a timeout.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

impl Stream for TcpStream {
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes)
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read(buf)
    }
}

/// Opens streams to the server under test.
pub trait Connect {
    /// A new connection.
    fn connect(&mut self) -> io::Result<Box<dyn Stream>>;
}

/// Connects over TCP to `addr` (host:port).
#[derive(Debug, Clone)]
pub struct Tcp(pub String);

impl Connect for Tcp {
    fn connect(&mut self) -> io::Result<Box<dyn Stream>> {
        let addr = self.0.to_socket_addrs()?.next().ok_or_else(|| io::Error::other("no address"))?;
        // A server with few connection slots frees one a moment after the
        // previous session's close: retry refusals for a while.
        let mut tries = 0;
        let stream = loop {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => break other?,
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_nodelay(true)?;
        Ok(Box::new(stream))
    }
}

/// Why a session failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure(format!("I/O: {e}"))
    }
}

/// What a session gives: `Ok`, or what went wrong.
pub type Outcome = Result<(), Failure>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(Failure(format!($($fmt)+)));
        }
    };
}

/// A frame, as [`parse_frame`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A data frame: FIN, opcode, payload.
    Data(bool, u8, Vec<u8>),
    /// A pong and its payload.
    Pong(Vec<u8>),
    /// A ping and its payload.
    Ping(Vec<u8>),
    /// A close frame: code and reason.
    Close(Option<u16>, String),
}

/// One client connection, speaking raw bytes.
pub struct Client {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("buffered", &self.buf.len()).finish_non_exhaustive()
    }
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Frame opcodes.
pub mod op {
    /// Continuation.
    pub const CONT: u8 = 0;
    /// Text.
    pub const TEXT: u8 = 1;
    /// Binary.
    pub const BINARY: u8 = 2;
    /// Close.
    pub const CLOSE: u8 = 8;
    /// Ping.
    pub const PING: u8 = 9;
    /// Pong.
    pub const PONG: u8 = 10;
}

/// A client frame: FIN, opcode, masked with a fixed key when `masked`.
pub fn frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

impl Client {
    /// Connect and send an Upgrade request for `target` offering
    /// `protocol`, with `version` as `Sec-WebSocket-Version`.
    fn request(
        connect: &mut dyn Connect,
        target: &str,
        protocol: Option<&str>,
        version: &str,
    ) -> Result<Self, Failure> {
        let mut stream = connect.connect()?;
        let protocol = protocol.map_or(String::new(), |p| format!("Sec-WebSocket-Protocol: {p}\r\n"));
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: conformance\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: {version}\r\n{protocol}\r\n"
        );
        stream.send(request.as_bytes())?;
        Ok(Client { stream, buf: Vec::new() })
    }

    /// The response head: status and header lines.
    fn response(&mut self) -> Result<(u16, String), Failure> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                return Ok((status, head));
            }
            ensure!(self.fill()?, "the server closed before answering the handshake");
        }
    }

    /// Open a WebSocket on `target`, offering `protocol`: expects 101 with
    /// the right accept value and `protocol` selected.
    pub fn open(connect: &mut dyn Connect, target: &str, protocol: Option<&str>) -> Result<Self, Failure> {
        let mut client = Self::request(connect, target, protocol, "13")?;
        let (status, head) = client.response()?;
        ensure!(status == 101, "{target}: expected 101, got {status}: {head}");
        let lower = head.to_ascii_lowercase();
        ensure!(
            lower.contains(&format!("sec-websocket-accept: {}", ACCEPT.to_ascii_lowercase())),
            "bad accept: {head}"
        );
        match protocol {
            Some(p) => ensure!(lower.contains(&format!("sec-websocket-protocol: {p}")), "{p} not selected: {head}"),
            None => ensure!(!lower.contains("sec-websocket-protocol"), "a protocol selected unasked: {head}"),
        }
        Ok(client)
    }

    /// Read more bytes; false when the server closed the stream.
    fn fill(&mut self) -> Result<bool, Failure> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.recv(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// Send raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Outcome {
        Ok(self.stream.send(bytes)?)
    }

    /// Send one masked frame.
    pub fn send(&mut self, fin: bool, opcode: u8, payload: &[u8]) -> Outcome {
        self.send_raw(&frame(fin, opcode, payload, true))
    }

    /// Send a whole text message in one frame.
    pub fn text(&mut self, text: &str) -> Outcome {
        self.send(true, op::TEXT, text.as_bytes())
    }

    /// The next frame from the server (`None`: the stream ended).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, Failure> {
        loop {
            if let Some((frame, used)) = parse(&self.buf)? {
                self.buf.drain(..used);
                return Ok(Some(frame));
            }
            if !self.fill()? {
                ensure!(self.buf.is_empty(), "the stream ended inside a frame");
                return Ok(None);
            }
        }
    }

    /// Expect the next frame to be a whole text message; returns it.
    pub fn expect_text(&mut self) -> Result<String, Failure> {
        match self.next_frame()? {
            Some(Frame::Data(true, op::TEXT, payload)) => {
                String::from_utf8(payload).map_err(|_| Failure("text frame is not UTF-8".into()))
            }
            other => Err(Failure(format!("expected a text message, got {other:?}"))),
        }
    }

    /// Expect a close frame with `code` (and `reason`, when given), then
    /// the end of the stream once the close is answered.
    pub fn expect_close(&mut self, code: u16, reason: Option<&str>) -> Outcome {
        match self.next_frame()? {
            Some(Frame::Close(got, text)) => {
                ensure!(got == Some(code), "expected close {code}, got {got:?} ({text:?})");
                if let Some(reason) = reason {
                    ensure!(text == reason, "close {code}: expected reason {reason:?}, got {text:?}");
                }
            }
            other => return Err(Failure(format!("expected close {code}, got {other:?}"))),
        }
        // Answer (the server may already have closed TCP), then expect EOF.
        let _ = self.send(true, op::CLOSE, &code.to_be_bytes());
        match self.next_frame() {
            Ok(None) | Err(_) => Ok(()),
            Ok(Some(frame)) => Err(Failure(format!("a frame after the close: {frame:?}"))),
        }
    }

    /// Nothing arrives before the answer to a ping sent now: proves that no
    /// message was sent to this client before it.
    pub fn expect_nothing(&mut self) -> Outcome {
        self.send(true, op::PING, b"sync")?;
        match self.next_frame()? {
            Some(Frame::Pong(payload)) if payload == b"sync" => Ok(()),
            other => Err(Failure(format!("expected nothing before the pong, got {other:?}"))),
        }
    }

    /// Close normally: 1000 echoed, then the stream ends.
    pub fn bye(mut self) -> Outcome {
        self.send(true, op::CLOSE, &1000u16.to_be_bytes())?;
        loop {
            match self.next_frame()? {
                Some(Frame::Close(code, _)) => {
                    ensure!(code == Some(1000), "close 1000 answered with {code:?}");
                    break;
                }
                Some(Frame::Pong(_)) => {}
                other => return Err(Failure(format!("expected the close echo, got {other:?}"))),
            }
        }
        match self.next_frame() {
            Ok(None) | Err(_) => Ok(()),
            Ok(Some(frame)) => Err(Failure(format!("a frame after the close: {frame:?}"))),
        }
    }
}

/// Parse one server frame (unmasked) from `buf`: the frame and the bytes
/// it used, or `None` if more bytes are needed.
fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, Failure> {
    parse_frame(buf, false)
}

/// Parse one frame from the start of `buf` (`None`: incomplete). A frame
/// `from_client` must be masked and is unmasked; a server's must not be.
pub fn parse_frame(buf: &[u8], from_client: bool) -> Result<Option<(Frame, usize)>, Failure> {
    let [b0, b1, ..] = *buf else { return Ok(None) };
    if from_client {
        ensure!(b1 & 0x80 != 0, "the client sent an unmasked frame");
    } else {
        ensure!(b1 & 0x80 == 0, "the server masked a frame");
    }
    ensure!(b0 & 0x70 == 0, "reserved bits set");
    let (len, mut at) = match b1 & 0x7F {
        126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().unwrap_or_default()), 10),
        126 | 127 => return Ok(None),
        n => (u64::from(n), 2),
    };
    let key = if from_client {
        let Some(key) = buf.get(at..at + 4) else { return Ok(None) };
        at += 4;
        [key[0], key[1], key[2], key[3]]
    } else {
        [0; 4]
    };
    let end = at + usize::try_from(len).map_err(|_| Failure("huge frame".into()))?;
    if buf.len() < end {
        return Ok(None);
    }
    let payload: Vec<u8> = buf[at..end].iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
    let fin = b0 & 0x80 != 0;
    let frame = match b0 & 0x0F {
        op::PONG => Frame::Pong(payload),
        op::PING => Frame::Ping(payload),
        op::CLOSE => {
            let code = (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            Frame::Close(code, String::from_utf8_lossy(payload.get(2..).unwrap_or(&[])).into_owned())
        }
        opcode => Frame::Data(fin, opcode, payload),
    };
    Ok(Some((frame, end)))
}

/// The chat channel's path.
pub const PATH: &str = "/ws/chat";

fn lobby(connect: &mut dyn Connect) -> Result<Client, Failure> {
    Client::open(connect, &format!("{PATH}?roomId=lobby"), None)
}

/// A server `append` frame for `content` in room `room` on the Alepha wire:
/// `{"type":"append","content":…,"username":…,"__alephaRoom":…}` (the
/// username is each server's own).
fn check_append(frame: &str, content: &str, room: &str) -> Outcome {
    let head = format!("{{\"type\":\"append\",\"content\":\"{content}\",\"username\":\"");
    let tail = format!("\",\"__alephaRoom\":\"{room}\"}}");
    ensure!(frame.starts_with(&head) && frame.ends_with(&tail), "unexpected append frame: {frame}");
    Ok(())
}

/// A session: its name and its script.
pub type Session = (&'static str, fn(&mut dyn Connect) -> Outcome);

/// Every session, in the order they run.
pub const SESSIONS: &[Session] = &[
    ("unknown path: 404", |c| {
        let mut client = Client::request(c, "/nowhere", None, "13")?;
        let (status, _) = client.response()?;
        ensure!(status == 404, "expected 404, got {status}");
        while client.fill().unwrap_or(false) {}
        let body = String::from_utf8_lossy(&client.buf);
        ensure!(body.trim_end() == "Not Found", "404 with body {body:?}");
        Ok(())
    }),
    ("unsupported version: 426", |c| {
        let mut client = Client::request(c, PATH, None, "8")?;
        let (status, head) = client.response()?;
        ensure!(status == 426, "expected 426, got {status}");
        ensure!(head.to_ascii_lowercase().contains("sec-websocket-version: 13"), "426 without the version: {head}");
        Ok(())
    }),
    ("Alepha wire: a message reaches the room, except the sender", |c| {
        let mut a = lobby(c)?;
        let mut b = lobby(c)?;
        a.text(r#"{"roomId":"lobby","message":{"content":"hi"}}"#)?;
        check_append(&b.expect_text()?, "hi", "lobby")?;
        a.expect_nothing()?;
        a.bye()?;
        b.bye()
    }),
    ("Alepha wire: a fragmented message with a ping inside", |c| {
        let mut a = lobby(c)?;
        let mut b = lobby(c)?;
        a.send(false, op::TEXT, br#"{"roomId":"lobby","#)?;
        a.send(true, op::PING, b"mid")?;
        a.send(false, op::CONT, br#""message":{"content":"#)?;
        a.send(true, op::CONT, br#""in parts"}}"#)?;
        ensure!(a.next_frame()? == Some(Frame::Pong(b"mid".to_vec())), "the ping inside a message was not answered");
        check_append(&b.expect_text()?, "in parts", "lobby")?;
        a.bye()?;
        b.bye()
    }),
    ("Alepha wire: text that is not JSON is dropped, the connection stays", |c| {
        let mut a = lobby(c)?;
        let mut b = lobby(c)?;
        a.text("hello?")?;
        a.expect_nothing()?;
        b.expect_nothing()?;
        a.bye()?;
        b.bye()
    }),
    ("Alepha wire: an invalid message gets an error frame", |c| {
        let mut a = lobby(c)?;
        a.text(r#"{"roomId":"lobby","message":{"nope":1}}"#)?;
        let frame = a.expect_text()?;
        ensure!(frame.starts_with(r#"{"error":"Message validation failed"#), "unexpected error frame: {frame}");
        a.bye()
    }),
    ("Alepha wire: more rooms in the query than a connection may join: 101, then 1008", |c| {
        let rooms: Vec<String> = (0..33).map(|i| format!("r{i}")).collect();
        let mut a = Client::open(c, &format!("{PATH}?roomIds={}", rooms.join(",")), None)?;
        a.expect_close(1008, Some("Too many rooms for this connection"))
    }),
    ("Alepha wire: an invalid room id: 101, then 1008", |c| {
        let mut a = Client::open(c, &format!("{PATH}?roomId={}", "x".repeat(65)), None)?;
        a.expect_close(1008, Some("Invalid room id"))
    }),
    ("roomwire JSON wire: join, message to the room, message to a room not joined", |c| {
        let proto = Some("roomwire.v1.json");
        let mut a = Client::open(c, PATH, proto)?;
        let mut b = Client::open(c, PATH, proto)?;
        a.text(r#"{"type":"join","ref":1,"room":"lobby"}"#)?;
        ensure!(a.expect_text()? == r#"{"type":"ok","ref":1}"#, "join not acknowledged");
        b.text(r#"{"type":"join","ref":7,"room":"lobby"}"#)?;
        ensure!(b.expect_text()? == r#"{"type":"ok","ref":7}"#, "join not acknowledged");
        a.text(r#"{"type":"message","room":"lobby","data":{"content":"hi"}}"#)?;
        let push = b.expect_text()?;
        let head = r#"{"type":"push","room":"lobby","data":{"type":"append","content":"hi","username":""#;
        ensure!(push.starts_with(head) && push.ends_with("\"}}"), "unexpected push: {push}");
        a.expect_nothing()?;
        a.text(r#"{"type":"message","room":"elsewhere","data":{"content":"hi"}}"#)?;
        let error = a.expect_text()?;
        ensure!(error.starts_with(r#"{"type":"error","code":4004,"text":"#), "unexpected error: {error}");
        a.bye()?;
        b.bye()
    }),
    ("a ping's payload comes back in its pong", |c| {
        let mut a = lobby(c)?;
        a.send(true, op::PING, b"payload of a ping")?;
        ensure!(a.next_frame()? == Some(Frame::Pong(b"payload of a ping".to_vec())), "pong payload differs");
        a.bye()
    }),
    ("an unmasked frame: 1002", |c| {
        let mut a = lobby(c)?;
        a.send_raw(&frame(true, op::TEXT, b"{}", false))?;
        a.expect_close(1002, None)
    }),
    ("a reserved opcode: 1002", |c| {
        let mut a = lobby(c)?;
        a.send(true, 3, b"")?;
        a.expect_close(1002, None)
    }),
    ("a fragmented ping: 1002", |c| {
        let mut a = lobby(c)?;
        a.send(false, op::PING, b"x")?;
        a.expect_close(1002, None)
    }),
    ("text that is not UTF-8: 1007", |c| {
        let mut a = lobby(c)?;
        a.send(true, op::TEXT, b"{\"a\":\"\xC3\x28\"}")?;
        a.expect_close(1007, None)
    }),
    ("a message over every limit: 1009", |c| {
        let mut a = lobby(c)?;
        // Only the header of a 1 TiB message: the length alone is refused.
        let mut header = vec![0x82, 0xFF];
        header.extend_from_slice(&(1u64 << 40).to_be_bytes());
        header.extend_from_slice(&MASK);
        a.send_raw(&header)?;
        a.expect_close(1009, None)
    }),
    ("a fragmented message over every limit: 1009", |c| {
        let mut a = lobby(c)?;
        let chunk = vec![b'x'; 60_000];
        for i in 0..20 {
            // The server may close (and stop reading) before all is sent.
            if a.send(false, if i == 0 { op::BINARY } else { op::CONT }, &chunk).is_err() {
                break;
            }
        }
        a.expect_close(1009, None)
    }),
    ("a close code that must not be sent (1005): 1002", |c| {
        let mut a = lobby(c)?;
        a.send(true, op::CLOSE, &1005u16.to_be_bytes())?;
        a.expect_close(1002, None)
    }),
    ("a close is echoed with its code", |c| {
        let mut a = lobby(c)?;
        a.send(true, op::CLOSE, &[0x0F, 0xA0, b'b', b'y', b'e'])?;
        match a.next_frame()? {
            Some(Frame::Close(Some(4000), _)) => Ok(()),
            other => Err(Failure(format!("expected the echo of 4000, got {other:?}"))),
        }
    }),
];

/// Run every session against `connect`; returns each one's name and
/// outcome.
pub fn run(connect: &mut dyn Connect) -> Vec<(&'static str, Outcome)> {
    SESSIONS.iter().map(|(name, session)| (*name, session(connect))).collect()
}

/// Print each session's outcome as `PASS`/`FAIL` lines and the count of
/// failures; the process exit code for it (`0`: all passed).
pub fn print_report(results: Vec<(&'static str, Outcome)>) -> i32 {
    let mut failed = 0;
    for (name, outcome) in results {
        match outcome {
            Ok(()) => println!("PASS  {name}"),
            Err(e) => {
                failed += 1;
                println!("FAIL  {name}: {e}");
            }
        }
    }
    println!("{failed} failed");
    i32::from(failed > 0)
}
