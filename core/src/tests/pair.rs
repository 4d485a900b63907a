//! A deterministic in-memory client↔server pair: two connections, virtual
//! time, and a chunk-size knob that splits every transfer, so tests read as
//! scripts and never touch a socket.

use std::string::String;
use std::vec::Vec;

use std::boxed::Box;

use crate::message::{Assembled, Incoming, MessageReader, Storage, TooLarge};
use crate::{
    CloseCode, Config, Connection, Duration, Event, Instant, MessageKind, ProtocolError, State, Timeout,
    handshake::{ClientRequest, HandshakeError},
};

/// A deterministic key source (tests only: real keys must be random).
pub(crate) fn test_keys() -> impl FnMut() -> [u8; 4] {
    let mut x = 0x9E37_79B9u32;
    move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x.to_le_bytes()
    }
}

pub(crate) type TestClient = Connection<Box<dyn FnMut() -> [u8; 4]>>;

/// An event with its borrowed data copied out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    Request { target: String, protocols: Vec<String> },
    Open { protocol: Option<String> },
    HandshakeFailed(HandshakeError),
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<CloseCode>, String),
    ProtocolError(ProtocolError),
    Timeout(Timeout),
}

/// Growable reassembly storage for tests (the crate's own `VecStorage`
/// needs the `alloc` feature, which plain `cargo test -p` leaves off).
pub(crate) struct GrowStorage(Vec<u8>, usize);

impl Storage for GrowStorage {
    fn bytes(&self, len: usize) -> &[u8] {
        &self.0[..len]
    }
    fn store(&mut self, at: usize, data: &[u8]) -> Result<(), TooLarge> {
        if at + data.len() > self.1 {
            return Err(TooLarge);
        }
        self.0.truncate(at);
        self.0.extend_from_slice(data);
        Ok(())
    }
    fn limit(&self) -> usize {
        self.1
    }
}

/// One side's inbox: bytes not yet consumed, and reassembly.
pub(crate) struct Inbox {
    pub buf: Vec<u8>,
    pub events: Vec<Seen>,
    reader: MessageReader<GrowStorage>,
    /// Compressed messages are read through it (permessage-deflate).
    pub inflater: Option<Box<dyn crate::deflate::Inflate>>,
}

impl Inbox {
    /// An inbox holding messages of up to `limit` bytes.
    fn new(limit: u64) -> Self {
        Self {
            buf: Vec::new(),
            events: Vec::new(),
            reader: MessageReader::new(GrowStorage(Vec::new(), usize::try_from(limit).unwrap_or(usize::MAX))),
            inflater: None,
        }
    }
}

/// Feed `inbox.buf` to `conn` until it needs more, recording events.
/// Returns whether anything was consumed or reported.
pub(crate) fn pump<K: crate::MaskKeySource>(conn: &mut Connection<K>, now: Instant, inbox: &mut Inbox) -> bool {
    let mut progress = false;
    loop {
        // The same whole-message reader the adapters use.
        let read = match inbox.inflater.as_deref_mut() {
            #[cfg(feature = "deflate")]
            Some(inflater) => inbox.reader.read_inflating(conn, now, &mut inbox.buf, inflater),
            _ => inbox.reader.read(conn, now, &mut inbox.buf),
        };
        let consumed = read.consumed;
        let seen = match read.incoming {
            None => None,
            Some(Incoming::Message(Assembled::Text(t))) => Some(Seen::Text(t.into())),
            Some(Incoming::Message(Assembled::Binary(b))) => Some(Seen::Binary(b.to_vec())),
            Some(Incoming::Event(event)) => match event {
                Event::Request(r) => Some(Seen::Request {
                    target: r.target().into(),
                    protocols: r.protocols().map(String::from).collect(),
                }),
                Event::Open { protocol } => Some(Seen::Open { protocol: protocol.map(String::from) }),
                Event::HandshakeFailed(e) => Some(Seen::HandshakeFailed(e)),
                Event::Ping(p) => Some(Seen::Ping(p.to_vec())),
                Event::Pong(p) => Some(Seen::Pong(p.to_vec())),
                Event::Close { code, reason } => Some(Seen::Close(code, reason.into())),
                Event::ProtocolError(e) => Some(Seen::ProtocolError(e)),
                Event::Data { .. } => unreachable!("the reader reports whole messages"),
            },
        };
        let had_event = seen.is_some() || consumed > 0;
        if let Some(seen) = seen {
            inbox.events.push(seen);
        }
        inbox.buf.drain(..consumed);
        if !had_event {
            return progress;
        }
        progress = true;
        if consumed == 0 && inbox.buf.is_empty() {
            return progress;
        }
    }
}

/// Drain `poll_transmit` into a byte vector.
pub(crate) fn transmit<K: crate::MaskKeySource>(conn: &mut Connection<K>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let wants = conn.wants_transmit();
        match conn.poll_transmit(&mut buf) {
            Ok(0) => {
                assert!(!wants, "wants_transmit said yes, poll_transmit wrote nothing");
                return out;
            }
            Ok(n) => {
                assert!(wants, "poll_transmit wrote what wants_transmit denied");
                out.extend_from_slice(&buf[..n]);
            }
            Err(e) => panic!("poll_transmit needs {} bytes", e.required),
        }
    }
}

/// The pair. Bytes written by one side wait in `wire_to_*` and are
/// delivered `chunk` bytes at a time.
pub(crate) struct Pair {
    pub client: TestClient,
    pub server: Connection,
    pub now: Instant,
    pub chunk: usize,
    pub to_server: Vec<u8>,
    pub to_client: Vec<u8>,
    pub server_in: Inbox,
    pub client_in: Inbox,
    /// Put both sides to [`crate::Rest`] and wake them after every step
    /// in which they may rest, as an adapter holding idle connections does.
    pub rest_between_steps: bool,
    /// How many times a side went to rest.
    pub rested: usize,
    configs: (Config, Config),
}

impl Pair {
    pub fn new(config: Config, chunk: usize) -> Self {
        Self::with_configs(config, config, chunk)
    }

    pub fn with_configs(client: Config, server: Config, chunk: usize) -> Self {
        let now = Instant::from_millis(1_000);
        Self {
            client: Connection::client(client, now, Box::new(test_keys())),
            server: Connection::server(server, now),
            now,
            chunk: chunk.max(1),
            to_server: Vec::new(),
            to_client: Vec::new(),
            server_in: Inbox::new(server.max_message_size),
            client_in: Inbox::new(client.max_message_size),
            rest_between_steps: false,
            rested: 0,
            configs: (client, server),
        }
    }

    /// Run the opening handshake, offering `protocols` and accepting the
    /// first one.
    pub fn connect_with(&mut self, protocols: &[&str]) {
        let req = ClientRequest { host: "localhost", target: "/ws", protocols, headers: &[] };
        let mut buf = [0u8; 1024];
        let n = self.client.write_request(&req, &mut buf).unwrap();
        self.to_server.extend_from_slice(&buf[..n]);
        self.drive();
        assert!(matches!(self.server_in.events.last(), Some(Seen::Request { .. })), "{:?}", self.server_in.events);
        let n = self.server.accept(self.now, protocols.first().copied(), &[], &mut buf).unwrap();
        self.to_client.extend_from_slice(&buf[..n]);
        self.drive();
        assert_eq!(self.client.state(), State::Open);
        assert_eq!(self.server.state(), State::Open);
        self.server_in.events.clear();
        self.client_in.events.clear();
    }

    pub fn connect(&mut self) {
        self.connect_with(&[]);
    }

    /// Move bytes both ways until neither side does anything; fails if that
    /// takes unreasonably many steps.
    pub fn drive(&mut self) {
        assert!(!self.drive_bounded(100_000), "pair never went idle");
    }

    /// Returns true if the bound was exceeded.
    pub fn drive_bounded(&mut self, max_steps: usize) -> bool {
        for _ in 0..max_steps {
            if !self.step() {
                return false;
            }
        }
        true
    }

    /// One round: deliver a chunk each way, pump both sides, drain outputs.
    pub fn step(&mut self) -> bool {
        let mut progress = false;
        let n = self.chunk.min(self.to_server.len());
        if n > 0 {
            self.server_in.buf.extend(self.to_server.drain(..n));
            progress = true;
        }
        let n = self.chunk.min(self.to_client.len());
        if n > 0 {
            self.client_in.buf.extend(self.to_client.drain(..n));
            progress = true;
        }
        progress |= pump(&mut self.server, self.now, &mut self.server_in);
        progress |= pump(&mut self.client, self.now, &mut self.client_in);
        let out = transmit(&mut self.server);
        progress |= !out.is_empty();
        self.to_client.extend(out);
        let out = transmit(&mut self.client);
        progress |= !out.is_empty();
        self.to_server.extend(out);
        if self.rest_between_steps {
            self.rest_and_wake();
        }
        progress
    }

    /// Each side that may rest goes to [`crate::Rest`] and wakes again.
    pub fn rest_and_wake(&mut self) {
        let (client_config, server_config) = self.configs;
        let placeholder = Connection::server(server_config, self.now);
        self.rested += usize::from(rest_and_wake(&mut self.server, placeholder));
        let placeholder =
            Connection::client(client_config, self.now, Box::new(test_keys()) as Box<dyn FnMut() -> [u8; 4]>);
        self.rested += usize::from(rest_and_wake(&mut self.client, placeholder));
    }

    /// Advance virtual time by `d`, firing due timeouts on both sides.
    pub fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
        if let Some(t) = self.server.handle_timeout(self.now) {
            self.server_in.events.push(Seen::Timeout(t));
        }
        if let Some(t) = self.client.handle_timeout(self.now) {
            self.client_in.events.push(Seen::Timeout(t));
        }
    }

    /// Client sends a whole message.
    pub fn client_send(&mut self, kind: MessageKind, payload: &[u8]) {
        let mut buf = std::vec![0u8; payload.len() + 14];
        let n = self.client.send_fragment(kind, payload, true, &mut buf).unwrap();
        self.to_server.extend_from_slice(&buf[..n]);
    }

    /// Server sends a whole message.
    pub fn server_send(&mut self, kind: MessageKind, payload: &[u8]) {
        let mut buf = std::vec![0u8; payload.len() + 14];
        let n = self.server.send_fragment(kind, payload, true, &mut buf).unwrap();
        self.to_client.extend_from_slice(&buf[..n]);
    }
}

/// `conn` to rest and awake again, if it may rest (`placeholder` holds
/// its place meanwhile, with its configuration); whether it rested.
fn rest_and_wake<K: crate::MaskKeySource>(conn: &mut Connection<K>, placeholder: Connection<K>) -> bool {
    let config = *placeholder.config();
    match core::mem::replace(conn, placeholder).rest() {
        Ok(rest) => {
            *conn = rest.wake(config);
            true
        }
        Err(unchanged) => {
            *conn = unchanged;
            false
        }
    }
}

/// Build a raw frame: the test's way of sending what no well-behaved peer would.
pub(crate) fn raw_frame(b0: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = std::vec![b0];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
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
    let mut body = payload.to_vec();
    if let Some(key) = mask {
        out.extend_from_slice(&key);
        crate::frame::apply_mask(&mut body, key, 0);
    }
    out.extend(body);
    out
}

/// A masked client frame (what a server must receive).
pub(crate) fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(b0, Some([0xA1, 0xB2, 0xC3, 0xD4]), payload)
}

/// The close code in a close frame sent by a server (unmasked).
pub(crate) fn close_code_of(server_bytes: &[u8]) -> Option<u16> {
    let (header, n) = crate::FrameHeader::parse(server_bytes).ok()??;
    if header.opcode != crate::Opcode::Close {
        return None;
    }
    let payload = server_bytes.get(n..)?;
    Some(u16::from_be_bytes([*payload.first()?, *payload.get(1)?]))
}
