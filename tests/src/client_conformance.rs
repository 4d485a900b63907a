//! Client conformance: scripted servers, written byte by byte, that every
//! room client must answer the same way: the core's session driven by the
//! thinnest loop ([`crate::session_client`]), the tokio client, the
//! embassy client. Each session starts a client on the chat channel
//! (`/ws/chat`) with a wire and rooms, plays a server and checks what
//! comes back on the wire: the requests, the close codes, whether (and
//! how) it connects again.
//!
//! The server side is hand-written here on purpose, so that it shares no
//! code with the clients under test.

use std::any::Any;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use roomwire_core::WireFormat;
use roomwire_core::envelope::{self, ClientEnvelope, ServerEnvelope};
use roomwire_core::handshake::accept_key;
use roomwire_core::wire::{PROTOCOL_JSON, PROTOCOL_PROBE};

use crate::conformance::{Failure, Frame, Outcome, frame, op, parse_frame};

/// Starts a client under test: connect to `url` (`ws://127.0.0.1:PORT`)
/// on `wire`, wanting `rooms`. Dropping what it returns stops the client.
pub trait Launch {
    /// Starts one client.
    fn launch(&mut self, url: &str, wire: WireFormat, rooms: &[&str]) -> Box<dyn Any>;

    /// The address the scripted servers listen on, reachable from the
    /// client.
    fn server_ip(&self) -> &str {
        "127.0.0.1"
    }
}

/// How long a client has to act.
const PATIENCE: Duration = Duration::from_secs(5);

/// A scripted server: one listener; connections are taken one at a time.
pub struct Script {
    listener: TcpListener,
}

/// One accepted, upgraded connection.
pub struct Upgraded {
    stream: TcpStream,
    /// The request target (`/ws/chat?…`).
    pub target: String,
    /// The subprotocols offered, in order.
    pub offered: Vec<String>,
    /// Frames read ahead.
    buf: Vec<u8>,
}

impl Script {
    /// A listener on a free port of `ip`.
    pub fn new(ip: &str) -> io::Result<Self> {
        let listener = TcpListener::bind((ip, 0))?;
        listener.set_nonblocking(true)?;
        Ok(Self { listener })
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("ws://{}", self.listener.local_addr().map(|a| a.to_string()).unwrap_or_default())
    }

    /// The next TCP connection within `within`, its request read.
    pub fn accept(&self, within: Duration) -> Result<(TcpStream, String), Failure> {
        let deadline = Instant::now() + within;
        let mut stream = loop {
            match self.listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(Failure("the client did not connect".into()));
                }
                Err(e) => return Err(Failure(format!("accept: {e}"))),
            }
        };
        stream.set_nonblocking(false).map_err(io_failure)?;
        stream.set_read_timeout(Some(PATIENCE)).map_err(io_failure)?;
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => request.push(byte[0]),
                _ => return Err(Failure("the upgrade request did not come".into())),
            }
        }
        Ok((stream, String::from_utf8_lossy(&request).into_owned()))
    }

    /// Whether a client connects within `within` (the connection is
    /// dropped).
    pub fn connects_within(&self, within: Duration) -> bool {
        self.accept(within).is_ok()
    }

    /// Accept the next connection and upgrade it, selecting `protocol`:
    /// `Some(None)` answers without one, `None` echoes the first offered
    /// (as Node's `ws` does by default).
    pub fn upgrade(&self, protocol: Option<Option<&str>>) -> Result<Upgraded, Failure> {
        let (mut stream, request) = self.accept(PATIENCE)?;
        let header = |name: &str| {
            request.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
            })
        };
        let key = header("sec-websocket-key").ok_or_else(|| Failure("no Sec-WebSocket-Key".into()))?;
        let offered: Vec<String> = header("sec-websocket-protocol")
            .map(|v| v.split(',').map(|p| p.trim().to_owned()).collect())
            .unwrap_or_default();
        let target = request.split_whitespace().nth(1).unwrap_or_default().to_owned();
        let selected = match protocol {
            Some(p) => p.map(str::to_owned),
            None => offered.first().cloned(),
        };
        let accept = accept_key(key.as_bytes());
        let mut response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
            String::from_utf8_lossy(&accept)
        );
        if let Some(p) = selected {
            response.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
        }
        response.push_str("\r\n");
        stream.write_all(response.as_bytes()).map_err(io_failure)?;
        Ok(Upgraded { stream, target, offered, buf: Vec::new() })
    }

    /// Accept the next connection and refuse it with `status`.
    pub fn refuse(&self, status: u16) -> Outcome {
        let (mut stream, _) = self.accept(PATIENCE)?;
        let response = format!("HTTP/1.1 {status} Refused\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        stream.write_all(response.as_bytes()).map_err(io_failure)
    }
}

fn io_failure(e: io::Error) -> Failure {
    Failure(format!("I/O: {e}"))
}

/// A server frame: unmasked, one frame.
fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(true, opcode, payload, false)
}

impl Upgraded {
    /// Send raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Outcome {
        self.stream.write_all(bytes).map_err(io_failure)
    }

    /// Send one text frame.
    pub fn text(&mut self, text: &str) -> Outcome {
        self.send_raw(&server_frame(op::TEXT, text.as_bytes()))
    }

    /// The next frame from the client, unmasked (it must be masked).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, Failure> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf, true)? {
                self.buf.drain(..used);
                return Ok(Some(frame));
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(Failure("the client sent nothing in time".into()));
                }
                Err(_) => return Ok(None),
            }
        }
    }

    /// The next data frame's payload, answering pings on the way.
    pub fn next_data(&mut self) -> Result<Vec<u8>, Failure> {
        loop {
            match self.next_frame()? {
                Some(Frame::Ping(payload)) => self.send_raw(&server_frame(op::PONG, &payload))?,
                Some(Frame::Pong(_)) => {}
                Some(Frame::Data(_, _, payload)) => return Ok(payload),
                Some(Frame::Close(code, _)) => return Err(Failure(format!("the client closed with {code:?}"))),
                None => return Err(Failure("the client closed TCP".into())),
            }
        }
    }

    /// The client's close frame must come next (data before it is
    /// skipped), with `code`; it is echoed.
    pub fn expect_close(&mut self, code: u16) -> Outcome {
        loop {
            match self.next_frame()? {
                Some(Frame::Close(got, _)) => {
                    // Echoed, as a server does: the closing handshake ends.
                    let _ = self.send_raw(&server_frame(op::CLOSE, &got.map(u16::to_be_bytes).unwrap_or_default()));
                    return check(got == Some(code), || format!("closed with {got:?}, expected {code}"));
                }
                Some(_) => {}
                None => return Err(Failure(format!("TCP closed without a close frame (expected {code})"))),
            }
        }
    }

    /// The client must still answer: a ping gets its pong.
    pub fn expect_alive(&mut self) -> Outcome {
        self.send_raw(&server_frame(op::PING, b"alive?"))?;
        loop {
            match self.next_frame()? {
                Some(Frame::Pong(payload)) if payload == b"alive?" => return Ok(()),
                Some(Frame::Close(..)) => return Err(Failure("the client closed".into())),
                Some(_) => {}
                None => return Err(Failure("the client closed TCP".into())),
            }
        }
    }

    /// Answer the client's join requests (JSON wire) until `rooms` are
    /// joined, in any order.
    pub fn accept_joins(&mut self, rooms: &[&str]) -> Outcome {
        let mut left: Vec<&str> = rooms.to_vec();
        while !left.is_empty() {
            let payload = self.next_data()?;
            let request = match envelope::decode_client(WireFormat::Json, &payload) {
                Ok(ClientEnvelope::Join { reference, room }) => {
                    left.retain(|r| *r != room.as_str());
                    reference
                }
                other => return Err(Failure(format!("expected a join, got {other:?}"))),
            };
            let mut out = [0u8; 64];
            let n = envelope::encode_server(WireFormat::Json, &ServerEnvelope::Ok { reference: request }, &mut out)
                .map_err(|e| Failure(format!("{e}")))?;
            self.text(std::str::from_utf8(&out[..n]).unwrap_or_default())?;
        }
        Ok(())
    }

    /// Close with `code` and read the client's answer.
    pub fn close(&mut self, code: u16) -> Outcome {
        self.send_raw(&server_frame(op::CLOSE, &code.to_be_bytes()))?;
        loop {
            match self.next_frame()? {
                Some(Frame::Close(got, _)) => {
                    return check(got == Some(code), || format!("echoed {got:?}, expected {code}"));
                }
                Some(_) => {}
                None => return Err(Failure(format!("TCP closed without echoing {code}"))),
            }
        }
    }
}

fn check(condition: bool, why: impl FnOnce() -> String) -> Outcome {
    if condition { Ok(()) } else { Err(Failure(why())) }
}

/// One session: a name, and the script against a client `launch` starts.
type Session = fn(&mut dyn Launch) -> Outcome;

/// Every session, by name.
pub const SESSIONS: &[(&str, Session)] = &[
    ("roomwire wire: offers the probe first, joins its rooms after the upgrade", offers_probe_and_joins),
    ("roomwire wire: a frame that is not an envelope: 1002", not_an_envelope),
    ("Alepha wire: the rooms are in the query, text that is not JSON is dropped", alepha_query_and_not_json),
    ("a message over the client's limit: 1009", over_the_limit),
    ("a masked frame from the server: 1002", masked_server_frame),
    ("a server that echoes the probe: reconnects on the Alepha wire", echoing_server),
    ("server close 1012: reconnects and restores its rooms", restart_reconnects),
    ("server close 1008: final, no reconnect", policy_close_is_final),
    ("upgrade refused with 404: final; with 503: retried", refusals),
];

/// Run every session against the clients `launch` starts.
pub fn run(launch: &mut dyn Launch) -> Vec<(&'static str, Outcome)> {
    run_observed(launch, |_, _, _| {})
}

/// [`run`], calling `after` once each session has ended (its client
/// dropped) with its name, outcome and duration.
pub fn run_observed(
    launch: &mut dyn Launch,
    mut after: impl FnMut(&str, &Outcome, std::time::Duration),
) -> Vec<(&'static str, Outcome)> {
    SESSIONS
        .iter()
        .map(|(name, session)| {
            let started = std::time::Instant::now();
            let outcome = session(launch);
            after(name, &outcome, started.elapsed());
            (*name, outcome)
        })
        .collect()
}

fn offers_probe_and_joins(launch: &mut dyn Launch) -> Outcome {
    let script = Script::new(launch.server_ip()).map_err(io_failure)?;
    let _client = launch.launch(&script.url(), WireFormat::Json, &["a", "b"]);
    let mut conn = script.upgrade(Some(Some(PROTOCOL_JSON)))?;
    check(conn.offered.first().map(String::as_str) == Some(PROTOCOL_PROBE), || {
        format!("offered {:?}, the probe must come first", conn.offered)
    })?;
    check(conn.target == "/ws/chat", || format!("target {:?}: rooms go in envelopes", conn.target))?;
    conn.accept_joins(&["a", "b"])?;
    conn.expect_alive()
}

fn not_an_envelope(launch: &mut dyn Launch) -> Outcome {
    let script = Script::new(launch.server_ip()).map_err(io_failure)?;
    let _client = launch.launch(&script.url(), WireFormat::Json, &["a"]);
    let mut conn = script.upgrade(Some(Some(PROTOCOL_JSON)))?;
    conn.accept_joins(&["a"])?;
    conn.text("this is not an envelope")?;
    conn.expect_close(1002)
}

fn alepha_query_and_not_json(launch: &mut dyn Launch) -> Outcome {
    let script = Script::new(launch.server_ip()).map_err(io_failure)?;
    let _client = launch.launch(&script.url(), WireFormat::Alepha, &["a", "b"]);
    let mut conn = script.upgrade(Some(None))?;
    check(conn.offered.is_empty(), || format!("offered {:?} on the Alepha wire", conn.offered))?;
    check(conn.target == "/ws/chat?roomIds=a,b" || conn.target == "/ws/chat?roomIds=a%2Cb", || {
        format!("target {:?}", conn.target)
    })?;
    conn.text("not json at all")?;
    conn.expect_alive()
}

fn over_the_limit(launch: &mut dyn Launch) -> Outcome {
    let script = Script::new(launch.server_ip()).map_err(io_failure)?;
    let _client = launch.launch(&script.url(), WireFormat::Alepha, &["a"]);
    let mut conn = script.upgrade(Some(None))?;
    // A header announcing 64 MiB: over every client's limit.
    let mut header = vec![0x81, 127];
    header.extend_from_slice(&(64u64 << 20).to_be_bytes());
    conn.send_raw(&header)?;
    conn.expect_close(1009)
}

fn masked_server_frame(launch: &mut dyn Launch) -> Outcome {
    let script = Script::new(launch.server_ip()).map_err(io_failure)?;
    let _client = launch.launch(&script.url(), WireFormat::Alepha, &["a"]);
    let mut conn = script.upgrade(Some(None))?;
    conn.send_raw(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i'])?;
    conn.expect_close(1002)
}

fn echoing_server(launch: &mut dyn Launch) -> Outcome {
    let script = Script::new(launch.server_ip()).map_err(io_failure)?;
    let _client = launch.launch(&script.url(), WireFormat::Json, &["a"]);
    let mut first = script.upgrade(None)?;
    // The client recognises the echoed probe and leaves.
    first.expect_close(1000)?;
    let second = script.upgrade(Some(None))?;
    check(second.offered.is_empty(), || format!("offered {:?} on the second connection", second.offered))?;
    check(second.target == "/ws/chat?roomIds=a", || format!("target {:?}", second.target))
}

fn restart_reconnects(launch: &mut dyn Launch) -> Outcome {
    let script = Script::new(launch.server_ip()).map_err(io_failure)?;
    let _client = launch.launch(&script.url(), WireFormat::Json, &["a"]);
    let mut conn = script.upgrade(Some(Some(PROTOCOL_JSON)))?;
    conn.accept_joins(&["a"])?;
    conn.close(1012)?;
    let mut again = script.upgrade(Some(Some(PROTOCOL_JSON)))?;
    again.accept_joins(&["a"])
}

fn policy_close_is_final(launch: &mut dyn Launch) -> Outcome {
    let script = Script::new(launch.server_ip()).map_err(io_failure)?;
    let _client = launch.launch(&script.url(), WireFormat::Alepha, &["a"]);
    let mut conn = script.upgrade(Some(None))?;
    conn.close(1008)?;
    check(!script.connects_within(Duration::from_millis(1500)), || "the client came back after a 1008".into())
}

fn refusals(launch: &mut dyn Launch) -> Outcome {
    let script = Script::new(launch.server_ip()).map_err(io_failure)?;
    let client = launch.launch(&script.url(), WireFormat::Alepha, &["a"]);
    script.refuse(503)?;
    script.refuse(404)?;
    check(!script.connects_within(Duration::from_millis(1500)), || "the client came back after a 404".into())?;
    drop(client);
    Ok(())
}
