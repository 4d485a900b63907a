//! Drives a whole [`Connection`] the way an adapter does, recording a
//! normalized transcript, for `server_connection` and `client_connection`.
//!
//! The caller-side discipline is the one in the `connection` module docs:
//! bytes read are appended to a pending buffer; `handle_input` is called
//! on it until it returns no event, dropping `consumed` bytes from the front
//! each time (the handshake consumes 0 until the header section is
//! complete); then `poll_transmit` is drained into a 256-byte buffer until
//! `Ok(0)`, `wants_transmit` agreeing with each answer.
//!
//! Transmit is drained after every `handle_input` call, not only after each
//! read: the connection answers only the latest of several pings received
//! before a drain (RFC 6455 §5.5.3 allows it), so draining per read would
//! make the number of pongs, and so the transmitted bytes, depend on how
//! the reads were split.

use roomwire_core::handshake::HandshakeError;
use roomwire_core::message::{Incoming, MessageReader};
use roomwire_core::{
    Config, Connection, Duration, Event, Instant, MaskKeySource, MessageKind, ProtocolError, SendError, State, Timeout,
};

/// One entry of the normalized transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// Server: the Upgrade request (target, offered protocols, accept key).
    Request(String, Vec<String>, [u8; 28]),
    /// The answer the harness gave to a request (true: accepted).
    Answered(bool),
    /// Client: the connection opened with this subprotocol.
    Open(Option<String>),
    /// The handshake failed; with the status a server answers it with.
    HandshakeFailed(HandshakeError, u16),
    /// A whole data message.
    Message(MessageKind, Vec<u8>),
    /// A data message still open at the end of the input.
    PartialMessage(MessageKind, Vec<u8>),
    /// A ping's payload.
    Ping(Vec<u8>),
    /// A pong's payload.
    Pong(Vec<u8>),
    /// The peer's close frame: code and reason.
    Close(Option<u16>, String),
    /// The peer broke the protocol: close code and reason.
    ProtocolError(u16, &'static str),
    /// An event this harness does not know (the enum is non-exhaustive).
    Other(String),
    /// The state after the input, and after each final timeout.
    State(State),
    /// What a final `handle_timeout` returned.
    Timeout(Option<Timeout>),
    /// A late answer to the request was refused by the connection.
    LateAnswerRefused,
}

/// How the harness answers an Upgrade request (server only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Accept, selecting the first offered subprotocol or none.
    Accept {
        /// Select the first offered subprotocol.
        protocol: bool,
    },
    /// Refuse with 403.
    Refuse,
    /// Answer only after the final timeouts, when the handshake deadline
    /// has closed the connection: `accept` must then fail.
    Late,
}

/// The configuration presets the connection targets choose from.
pub fn config(preset: u8, keepalive: bool) -> Config {
    let base = match preset & 3 {
        0 => Config::default(),
        1 => Config { max_message_size: 64, max_fragments: 3, max_handshake_size: 512, ..Config::default() },
        2 => Config { max_message_size: 0, max_fragments: 1, max_handshake_size: 64, ..Config::default() },
        // Unlimited, and permessage-deflate offered or accepted (RSV1 then
        // marks compressed messages, whatever the handshake agreed).
        _ => Config {
            max_message_size: u64::MAX,
            max_fragments: u32::MAX,
            max_handshake_size: usize::MAX,
            deflate: Some(roomwire_core::deflate::DeflateConfig::DEFAULT),
            ..Config::default()
        },
    };
    Config { keepalive_interval: keepalive.then(|| Duration::from_secs(30)), ..base }
}

/// Time advances by at most this much during the input (less than every
/// deadline: handshake 10 s, close 5 s, keepalive 30 s), so timeouts
/// checked between reads never fire and the two runs stay comparable.
const INPUT_TIME_BUDGET_MICROS: u64 = 4_000_000;

/// A connection, the caller's pending read buffer and the transcript.
pub struct Driver<K> {
    conn: Connection<K>,
    answer: Answer,
    now: Instant,
    pending: Vec<u8>,
    message: Option<(MessageKind, Vec<u8>)>,
    /// A request waits for its late answer.
    late: bool,
    /// The transcript.
    pub items: Vec<Item>,
    /// Every byte the connection gave to send (101/refusal, frames).
    pub tx: Vec<u8>,
    /// Read whole messages through the core's reader (storage of
    /// [`READER_LIMIT`] bytes) instead of chunk by chunk.
    reader: Option<MessageReader<Vec<u8>>>,
    /// The most bytes a message reached, complete or not.
    pub longest: usize,
}

/// The reader's storage in [`compare_splits`]: small, so that fuzzed
/// messages overflow it.
pub const READER_LIMIT: usize = 96;

impl<K: MaskKeySource> Driver<K> {
    /// Drive `conn`, answering requests with `answer`.
    pub fn new(conn: Connection<K>, answer: Answer) -> Self {
        Self {
            conn,
            answer,
            now: Instant::ZERO,
            pending: Vec::new(),
            message: None,
            late: false,
            items: Vec::new(),
            tx: Vec::new(),
            reader: None,
            longest: 0,
        }
    }

    /// Read through a [`MessageReader`] with [`READER_LIMIT`] bytes of
    /// storage, as every adapter does.
    pub fn with_reader(mut self) -> Self {
        self.reader = Some(MessageReader::new(vec![0; READER_LIMIT]));
        self
    }

    /// The connection, e.g. to write the client's request.
    pub fn conn(&mut self) -> &mut Connection<K> {
        &mut self.conn
    }

    /// Let `micros` pass (within the input budget) and, if `check`, call
    /// `handle_timeout`, which must find nothing due.
    pub fn advance(&mut self, micros: u64, check: bool) {
        let t = (self.now.as_micros() + micros).min(INPUT_TIME_BUDGET_MICROS);
        self.now = Instant::from_micros(t);
        if check {
            let state = self.conn.state();
            assert_eq!(self.conn.handle_timeout(self.now), None, "a deadline fired within the input budget");
            assert_eq!(self.conn.state(), state);
            self.drain();
        }
    }

    /// One read: append `chunk` and process everything it completes.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.pending.extend_from_slice(chunk);
        let mut stalled = 0;
        loop {
            let len = self.pending.len();
            let (consumed, event) = match self.reader.as_mut() {
                None => {
                    let got = self.conn.handle_input(self.now, &mut self.pending[..]);
                    (got.consumed, got.event.map(own))
                }
                Some(reader) => {
                    let got = reader.read(&mut self.conn, self.now, &mut self.pending[..]);
                    (got.consumed, got.incoming.map(own_incoming))
                }
            };
            assert!(consumed <= len, "consumed {consumed} of {len}");
            let state = self.conn.state();
            if event.is_none() && self.reader.is_some() && consumed > 0 && consumed < len {
                // A chunk of a message went into the reader's storage.
                self.pending.drain(..consumed);
                continue;
            }
            let Some(event) = event else {
                assert!(
                    consumed == len || (consumed == 0 && state == State::Connecting),
                    "no event, yet {consumed} of {len} consumed in {state:?}"
                );
                self.pending.drain(..consumed);
                self.drain();
                break;
            };
            stalled = if consumed == 0 { stalled + 1 } else { 0 };
            assert!(stalled < 3, "events without progress: {event:?}");
            self.pending.drain(..consumed);
            self.record(event);
            self.drain();
            if matches!(self.items.last(), Some(Item::ProtocolError(..) | Item::Close(..) | Item::HandshakeFailed(..)))
            {
                assert_eq!(self.conn.state(), State::Closed, "not closed after {:?}", self.items.last());
            }
        }
    }

    fn record(&mut self, event: Owned) {
        match event {
            Owned::Request { target, protocols, accept } => {
                let first = protocols.first().cloned();
                self.items.push(Item::Request(target, protocols, accept));
                // Answers can be up to the request's size (the protocol is
                // echoed), so give them room.
                let mut out = vec![0u8; 512 + first.as_ref().map_or(0, String::len)];
                let result = match self.answer {
                    Answer::Accept { protocol } => {
                        let protocol = first.as_deref().filter(|_| protocol);
                        self.conn.accept(self.now, protocol, &[("X-Fuzz", "1")], &mut out)
                    }
                    Answer::Refuse => self.conn.refuse(403, &[("X-Fuzz", "1")], "refused", &mut out),
                    Answer::Late => {
                        self.late = true;
                        assert_eq!(self.conn.state(), State::Connecting);
                        return;
                    }
                };
                let n = result.unwrap_or_else(|e| panic!("answering the request failed: {e:?}"));
                self.tx.extend_from_slice(&out[..n]);
                self.items.push(Item::Answered(matches!(self.answer, Answer::Accept { .. })));
                let expected = if self.answer == Answer::Refuse { State::Closed } else { State::Open };
                assert_eq!(self.conn.state(), expected);
            }
            Owned::Open(protocol) => {
                assert_eq!(self.conn.state(), State::Open);
                self.items.push(Item::Open(protocol));
            }
            Owned::HandshakeFailed(e) => self.items.push(Item::HandshakeFailed(e, e.status())),
            Owned::Data { kind, payload, message_start, message_end, compressed } => {
                assert!(!compressed || self.conn.deflate().is_some(), "RSV1 accepted without permessage-deflate");
                if message_start {
                    assert!(self.message.is_none(), "message_start inside a message");
                    self.message = Some((kind, Vec::new()));
                }
                let Some((open_kind, bytes)) = self.message.as_mut() else {
                    panic!("data with no message started");
                };
                assert_eq!(*open_kind, kind, "message changed kind");
                bytes.extend_from_slice(&payload);
                self.longest = self.longest.max(bytes.len());
                if message_end {
                    let Some((kind, bytes)) = self.message.take() else { unreachable!() };
                    // Compressed text is checked once inflated, not here.
                    if kind == MessageKind::Text && !compressed {
                        assert!(core::str::from_utf8(&bytes).is_ok(), "complete text message is not UTF-8");
                    }
                    self.items.push(Item::Message(kind, bytes));
                }
            }
            Owned::Ping(p) => self.items.push(Item::Ping(p)),
            Owned::Pong(p) => self.items.push(Item::Pong(p)),
            Owned::Close(code, reason) => {
                assert!(self.conn.close_received());
                self.items.push(Item::Close(code, reason));
            }
            Owned::ProtocolError(ProtocolError { code, reason }) => {
                // A message cut by a protocol error has split-dependent
                // bytes (UTF-8 fails fast per chunk): only the error counts.
                self.message = None;
                self.items.push(Item::ProtocolError(u16::from(code), reason));
            }
            Owned::Other(s) => self.items.push(Item::Other(s)),
        }
    }

    /// Drain `poll_transmit` into a 256-byte buffer until `Ok(0)`.
    pub fn drain(&mut self) {
        let mut buf = [0u8; 256];
        for _ in 0..8 {
            let wants = self.conn.wants_transmit();
            match self.conn.poll_transmit(&mut buf) {
                Ok(0) => {
                    assert!(!wants, "wants_transmit said yes, poll_transmit wrote nothing");
                    return;
                }
                Ok(n) => {
                    assert!(wants, "poll_transmit wrote what wants_transmit denied");
                    self.tx.extend_from_slice(&buf[..n]);
                }
                Err(e) => panic!("256 bytes must suffice for poll_transmit: {e:?}"),
            }
        }
        panic!("poll_transmit never returned Ok(0)");
    }

    /// End of input: note what is unfinished, then let every deadline pass.
    pub fn finish(mut self) -> (Vec<Item>, Vec<u8>) {
        self.items.push(Item::State(self.conn.state()));
        if let Some((kind, bytes)) = self.message.take() {
            if kind == MessageKind::Text && self.conn.deflate().is_none() {
                assert!(crate::is_utf8_prefix(&bytes), "partial text message is not a UTF-8 prefix");
            }
            self.items.push(Item::PartialMessage(kind, bytes));
        }
        for secs in [1_000, 2_000, 3_000] {
            let timeout = self.conn.handle_timeout(Instant::from_micros(secs * 1_000_000));
            self.items.push(Item::Timeout(timeout));
            self.drain();
            self.items.push(Item::State(self.conn.state()));
            if self.late && self.conn.state() == State::Closed {
                // The handshake deadline closed it: too late to accept.
                let mut out = vec![0u8; 8192];
                let now = Instant::from_micros(secs * 1_000_000);
                assert_eq!(self.conn.accept(now, None, &[], &mut out), Err(SendError::InvalidState));
                assert_eq!(self.conn.refuse(403, &[], "", &mut out), Err(SendError::InvalidState));
                assert_eq!(self.conn.state(), State::Closed, "a late answer reopened a closed connection");
                self.items.push(Item::LateAnswerRefused);
                self.late = false;
            }
        }
        assert!(!self.late, "the handshake deadline never closed a connection waiting for an answer");
        let state = self.conn.state();
        assert!(state == State::Closed || self.conn.poll_timeout().is_none(), "{state:?} with a deadline left");
        if state == State::Closed {
            assert_eq!(self.conn.poll_timeout(), None);
            let mut more = *b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
            let got = self.conn.handle_input(Instant::from_micros(4_000_000_000), &mut more);
            assert_eq!(got.event, None, "a closed connection produced an event");
            assert_eq!(self.conn.state(), State::Closed, "input reopened a closed connection");
            let mut buf = [0u8; 256];
            assert_eq!(self.conn.poll_transmit(&mut buf), Ok(0), "a closed connection transmitted");
        }
        (self.items, self.tx)
    }
}

/// What a [`MessageReader`] read, copied out of its borrow: a whole
/// message is one complete data event.
fn own_incoming(incoming: Incoming<'_>) -> Owned {
    match incoming {
        Incoming::Message(message) => Owned::Data {
            kind: match message {
                roomwire_core::message::Assembled::Text(_) => MessageKind::Text,
                roomwire_core::message::Assembled::Binary(_) => MessageKind::Binary,
            },
            payload: message.bytes().to_vec(),
            message_start: true,
            message_end: true,
            compressed: false,
        },
        Incoming::Event(event) => own(event),
    }
}

/// An [`Event`] copied out of the connection's borrow.
#[derive(Debug)]
enum Owned {
    Request { target: String, protocols: Vec<String>, accept: [u8; 28] },
    Open(Option<String>),
    HandshakeFailed(HandshakeError),
    Data { kind: MessageKind, payload: Vec<u8>, message_start: bool, message_end: bool, compressed: bool },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
    ProtocolError(ProtocolError),
    Other(String),
}

fn own(event: Event<'_>) -> Owned {
    match event {
        Event::Request(req) => {
            crate::handshake_request::check_accessors(&req);
            Owned::Request {
                target: req.target().to_owned(),
                protocols: req.protocols().map(str::to_owned).collect(),
                accept: req.accept_key(),
            }
        }
        Event::Open { protocol } => Owned::Open(protocol.map(str::to_owned)),
        Event::HandshakeFailed(e) => Owned::HandshakeFailed(e),
        Event::Data { kind, payload, message_start, message_end, compressed } => {
            Owned::Data { kind, payload: payload.to_vec(), message_start, message_end, compressed }
        }
        Event::Ping(p) => {
            assert!(p.len() <= 125);
            Owned::Ping(p.to_vec())
        }
        Event::Pong(p) => {
            assert!(p.len() <= 125);
            Owned::Pong(p.to_vec())
        }
        Event::Close { code, reason } => {
            if let Some(code) = code {
                assert!(code.is_valid_on_wire(), "{code:?} reported as received");
            }
            Owned::Close(code.map(u16::from), reason.to_owned())
        }
        Event::ProtocolError(e) => Owned::ProtocolError(e),
        other => Owned::Other(format!("{other:?}")),
    }
}

/// Feed `input` to a fresh driver from `make` in chunks whose lengths cycle
/// through `lens` (each 1..=256; time advances per chunk, with a checked
/// timeout after it when `timeouts`), and whole; assert the transcripts
/// and transmitted bytes are equal. A third run, split the same way, reads
/// whole messages through the core's `MessageReader`
/// ([`Driver::with_reader`]), as the adapters do: its transcript must be
/// the same up to the first message that outgrows the reader's storage,
/// which must then be closed with 1009.
pub fn compare_splits<K: MaskKeySource>(
    mut make: impl FnMut() -> Driver<K>,
    input: &[u8],
    lens: &[u8],
    timeouts: bool,
) {
    let mut whole = make();
    whole.feed(input);
    let (whole_items, whole_tx) = whole.finish();

    let split = feed_split(make(), input, lens, timeouts);
    // Split reads hand out text before a later bad byte fails it (UTF-8
    // fails fast per chunk), so they are the measure for the reader's run.
    let split_longest = split.longest;
    let (split_items, split_tx) = split.finish();
    assert_eq!(whole_items, split_items, "transcript depends on the split (chunk lengths {lens:?})");
    assert!(whole_tx == split_tx, "transmitted bytes depend on the split:\n whole {whole_tx:?}\n split {split_tx:?}");

    // The same input, split the same way, read through the core's
    // MessageReader: the same transcript, until a message outgrows its
    // storage; then close 1009, and only then.
    let (read_items, read_tx) = feed_split(make().with_reader(), input, lens, timeouts).finish();
    // A reader keeps an unfinished message to itself.
    let whole_items: Vec<Item> =
        whole_items.into_iter().filter(|item| !matches!(item, Item::PartialMessage(..))).collect();
    let differ = whole_items.iter().zip(&read_items).position(|(w, r)| w != r);
    match differ {
        None => {
            assert_eq!(whole_items, read_items, "the reader changed the transcript");
            assert!(whole_tx == read_tx, "the reader changed the transmitted bytes");
        }
        Some(at) => {
            // The decoder's own limit gives the same item in both runs, so
            // the first difference is the reader's.
            let item = &read_items[at];
            match item {
                Item::ProtocolError(1009, "message too big") => assert!(
                    split_longest > READER_LIMIT,
                    "1009 from the reader, yet no message exceeded {READER_LIMIT} bytes"
                ),
                // A compressed message (a preset with permessage-deflate):
                // this reader runs without an inflater.
                Item::ProtocolError(1011, "compressed message with no inflater") => {}
                other => panic!("the reader changed the transcript: {other:?}"),
            }
        }
    }
}

/// Feed `input` to `driver` in chunks whose lengths cycle through `lens`,
/// time advancing per chunk (see [`compare_splits`]).
fn feed_split<K: MaskKeySource>(mut driver: Driver<K>, input: &[u8], lens: &[u8], timeouts: bool) -> Driver<K> {
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let seed = lens.get(i % lens.len().max(1)).copied().unwrap_or(0);
        let n = (usize::from(seed) + 1).min(rest.len());
        let (chunk, after) = rest.split_at(n);
        driver.feed(chunk);
        driver.advance(u64::from(seed) * 3 + 1, timeouts && seed & 1 == 1);
        rest = after;
        i += 1;
    }
    driver
}
