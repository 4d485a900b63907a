//! `client_session`: the core's whole client ([`ClientSession`]) against
//! arbitrary server bytes, split at arbitrary points.
//!
//! Input: byte 0 is flags: bits 0–1 pick the 101 the server answers with
//! (none at all, the roomwire JSON wire, the Alepha wire without a
//! subprotocol, or the probe echoed back), bit 2 asks for the Alepha wire
//! (else the roomwire JSON wire), bit 3 joins a third room while the
//! handshake is in flight; bytes 1–4 are the chunk lengths (each 1–256,
//! cycled); the rest is the wire (server frames, unmasked).
//!
//! Asserted: no panic; the transcript (what `poll` reports, every message
//! taken, every byte transmitted, the rooms joined) is the same split and
//! whole; and once the input is spent and an hour has passed, the session
//! holds no connection it still waits on (it reported the end, or the
//! connection is open and idle), with its output bounded.

use roomwire_core::client::{RoomClient, TargetBase};
use roomwire_core::handshake::{parse_request, write_accept};
use roomwire_core::message::VecStorage;
use roomwire_core::session::{ClientSession, SessionConfig};
use roomwire_core::wire::{PROTOCOL_JSON, PROTOCOL_PROBE};
use roomwire_core::{Duration, Instant, WireFormat};
use serde::{Deserialize, Serialize};

use crate::client_connection::keys;

/// The messages both ways.
#[derive(Debug, Serialize, Deserialize)]
pub struct Say {
    /// The text.
    pub content: String,
}

roomwire_core::channel! {
    /// The fuzzed channel.
    pub struct Chat { path: "/ws/chat", in: Say, out: Say }
}

type Session = ClientSession<Chat, 4, Box<dyn FnMut() -> [u8; 4]>, VecStorage>;

/// Most bytes a session may transmit for one fuzz input (requests, pongs,
/// closes): a bound far above what any input can cause.
const MAX_OUTPUT: usize = 1 << 20;

struct Run {
    session: Session,
    transcript: Vec<String>,
    sent: Vec<u8>,
    scratch: Vec<u8>,
    now: Instant,
}

impl Run {
    /// A session whose upgrade request is written, and the 101 answering it.
    fn start(flags: u8) -> (Self, Vec<u8>) {
        let format = if flags & 4 != 0 { WireFormat::Alepha } else { WireFormat::Json };
        let rooms = RoomClient::with_rooms(format, &["a", "b"]).unwrap_or_else(|e| panic!("{e:?}"));
        let mut keys = keys();
        let keys: Box<dyn FnMut() -> [u8; 4]> = Box::new(move || roomwire_core::MaskKeySource::next_key(&mut keys));
        let storage = VecStorage::new(4096, 0);
        let session = ClientSession::new(SessionConfig::default(), rooms, keys, storage, Instant::ZERO);
        let mut run =
            Self { session, transcript: Vec::new(), sent: Vec::new(), scratch: Vec::new(), now: Instant::ZERO };
        run.poll();
        let mut out = vec![0u8; 2048];
        let n = run
            .session
            .start(Instant::ZERO, &TargetBase::default(), "example.com", &[], &mut out)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let accept = match parse_request(&out[..n], usize::MAX) {
            Ok(Some((request, len))) if len == n => request.accept_key(),
            other => panic!("our own request does not parse: {other:?}"),
        };
        run.sent.extend_from_slice(&out[..n]);
        if flags & 8 != 0 {
            let joined = run.session.join(Instant::ZERO, "c", &mut out);
            run.transcript.push(format!("join c during the handshake: {joined:?}"));
        }
        let protocol = match flags & 3 {
            1 => Some(Some(PROTOCOL_JSON)),
            2 => Some(None),
            3 => Some(Some(PROTOCOL_PROBE)),
            _ => None,
        };
        let mut response = vec![0u8; 512];
        let m = match protocol {
            Some(protocol) => write_accept(&accept, protocol, &[], &mut response).unwrap_or_else(|e| panic!("{e:?}")),
            None => 0,
        };
        response.truncate(m);
        (run, response)
    }

    fn poll(&mut self) {
        while let Some(output) = self.session.poll(self.now) {
            self.transcript.push(format!("{output:?}"));
        }
        let mut out = vec![0u8; 512];
        loop {
            match self.session.poll_transmit(self.now, &mut out) {
                Ok(0) => break,
                Ok(n) => self.sent.extend_from_slice(&out[..n]),
                Err(e) => out.resize(e.required, 0),
            }
        }
        assert!(self.sent.len() <= MAX_OUTPUT, "unbounded output: {} bytes", self.sent.len());
    }

    /// Feed `chunk`, keeping what is not consumed in `pending`.
    fn feed(&mut self, pending: &mut Vec<u8>, chunk: &[u8]) {
        pending.extend_from_slice(chunk);
        loop {
            let input = self.session.handle_input(self.now, pending);
            assert!(input.consumed <= pending.len(), "consumed more than given");
            pending.drain(..input.consumed);
            if input.message {
                let event = self.session.take_message(self.now, &mut self.scratch);
                self.transcript.push(format!("{event:?}"));
            }
            self.poll();
            if input.consumed == 0 && !input.message {
                return;
            }
        }
    }

    fn finish(mut self) -> (Vec<String>, Vec<u8>) {
        self.now = self.now + Duration::from_secs(3600);
        self.session.handle_timeout(self.now);
        self.poll();
        let rooms = self.session.rooms();
        self.transcript.push(format!("joined {:?} wanted {:?}", rooms.rooms(), rooms.wanted()));
        (self.transcript, self.sent)
    }
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let [flags, l0, l1, l2, l3, wire @ ..] = data else {
        return;
    };
    let lengths = [*l0, *l1, *l2, *l3].map(|l| usize::from(l) + 1);

    let (mut whole, response) = Run::start(*flags);
    let mut input = response.clone();
    input.extend_from_slice(wire);
    let mut pending = Vec::new();
    whole.feed(&mut pending, &input);
    let whole = whole.finish();

    let (mut split, _) = Run::start(*flags);
    let mut pending = Vec::new();
    let mut at = 0;
    for length in lengths.iter().cycle() {
        if at >= input.len() {
            break;
        }
        let end = (at + length).min(input.len());
        split.feed(&mut pending, &input[at..end]);
        at = end;
    }
    let split = split.finish();
    assert_eq!(whole.0, split.0, "the transcript depends on how the bytes were split");
    assert_eq!(whole.1, split.1, "the bytes sent depend on how the input was split");
}
