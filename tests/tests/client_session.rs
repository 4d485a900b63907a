//! The core's client session (`roomwire_core::session`) against the core
//! server (`roomwire_tests::core_server`), in memory, driven by a loop
//! that only moves bytes and time as an adapter does: connecting, rooms,
//! messages both ways, a join while the handshake is in flight, the Alepha
//! wire, a lost transport and the reconnect that restores the rooms.

use std::io;

use roomwire_core::client::{ClientEvent, Requested, TargetBase};
use roomwire_core::reconnect::ReconnectPolicy;
use roomwire_core::session::{ClientSession, Disconnect, Next, Output, SessionConfig, SessionEvent, TransportError};
use roomwire_core::{Duration, Instant, RoomClient, WireFormat};
use roomwire_tests::chat::{Chat, ChatIn, Say};
use roomwire_tests::conformance::{Connect, Stream};
use roomwire_tests::core_server::CoreServer;

type Keys = Box<dyn FnMut() -> [u8; 4]>;
type Session = ClientSession<Chat, 4, Keys, Vec<u8>>;

fn keys(seed: u32) -> Keys {
    let mut state = seed;
    Box::new(move || {
        state = state.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
        state.to_le_bytes()
    })
}

/// A client as an adapter drives it: a session, a transport, buffers, and
/// a record of what happened.
struct Driven {
    session: Session,
    link: Option<Box<dyn Stream>>,
    input: Vec<u8>,
    scratch: Vec<u8>,
    seen: Vec<String>,
    now: Instant,
}

impl Driven {
    fn new(format: WireFormat, rooms: &[&str], seed: u32) -> Self {
        let rooms = RoomClient::with_rooms(format, rooms).expect("rooms");
        let config = SessionConfig {
            reconnect: ReconnectPolicy { jitter_percent: 0, ..ReconnectPolicy::default() },
            ..SessionConfig::default()
        };
        let now = Instant::ZERO;
        let session = ClientSession::new(config, rooms, keys(seed), vec![0u8; 4096], now);
        Self { session, link: None, input: Vec::new(), scratch: Vec::new(), seen: Vec::new(), now }
    }

    fn send_out(&mut self, bytes: &[u8]) {
        if let Some(link) = self.link.as_mut()
            && link.send(bytes).is_err()
        {
            self.session.transport_failed(self.now, TransportError::Reset);
        }
    }

    /// Run until nothing moves: outputs, transmits, input.
    fn run(&mut self, server: &mut CoreServer) {
        let mut out = vec![0u8; 1024];
        for _ in 0..1000 {
            let mut moved = false;
            while let Some(output) = self.session.poll(self.now) {
                moved = true;
                self.seen.push(format!("{output:?}"));
                match output {
                    Output::Connect => {
                        self.link = Some(server.connect().expect("connect"));
                        let n = self
                            .session
                            .start(self.now, &TargetBase::default(), "localhost", &[], &mut out)
                            .expect("request fits");
                        let request = out[..n].to_vec();
                        self.send_out(&request);
                    }
                    Output::Disconnected { .. } => {
                        self.link = None;
                        self.input.clear();
                    }
                    Output::Connected { .. } => {}
                }
            }
            loop {
                let n = self.session.poll_transmit(self.now, &mut out).expect("fits");
                if n == 0 {
                    break;
                }
                moved = true;
                let bytes = out[..n].to_vec();
                self.send_out(&bytes);
            }
            if let Some(link) = self.link.as_mut() {
                let mut buf = [0u8; 4096];
                match link.recv(&mut buf) {
                    Ok(0) => {
                        moved = true;
                        self.session.transport_failed(self.now, TransportError::Reset);
                    }
                    Ok(n) => {
                        moved = true;
                        self.input.extend_from_slice(&buf[..n]);
                    }
                    Err(e) => assert_eq!(e.kind(), io::ErrorKind::TimedOut),
                }
            }
            moved |= self.read_input();
            if !moved {
                return;
            }
        }
        panic!("the session never settled");
    }

    fn read_input(&mut self) -> bool {
        let mut moved = false;
        loop {
            let got = self.session.handle_input(self.now, &mut self.input);
            self.input.drain(..got.consumed);
            // A reported message has its size until it is taken.
            assert_eq!(self.session.message_len().is_some(), got.message);
            let seen = match self.session.take_message(self.now, &mut self.scratch) {
                Some(SessionEvent::Room(ClientEvent::Message { room, message: ChatIn::Append { content, .. } })) => {
                    Some(format!("message {} {content}", room.as_deref().unwrap_or("-")))
                }
                Some(SessionEvent::Room(event)) => Some(format!("{event:?}")),
                Some(SessionEvent::Invalid(error)) => Some(format!("invalid {error}")),
                None => None,
            };
            self.seen.extend(seen);
            assert_eq!(self.session.message_len(), None);
            moved |= got.consumed > 0 || got.message;
            if got.consumed == 0 && !got.message {
                return moved;
            }
        }
    }

    fn advance(&mut self, server: &mut CoreServer, by: Duration) {
        self.now = self.now + by;
        self.session.handle_timeout(self.now);
        self.run(server);
    }

    fn take_seen(&mut self) -> Vec<String> {
        std::mem::take(&mut self.seen)
    }

    fn say(&mut self, server: &mut CoreServer, room: &str, content: &str) {
        let mut out = vec![0u8; 1024];
        let n = self.session.send(room, &Say { content: content.to_owned() }, &mut out).expect("send");
        let bytes = out[..n].to_vec();
        self.send_out(&bytes);
        self.run(server);
    }
}

fn has(seen: &[String], needle: &str) -> bool {
    seen.iter().any(|s| s.contains(needle))
}

#[test]
fn connects_joins_and_talks_on_both_wires() {
    // Postcard joins too, but the shared chat channel's `ChatIn` is an
    // internally tagged enum (Alepha's `{"type": …}`), which postcard
    // cannot carry.
    for format in [WireFormat::Json, WireFormat::Alepha] {
        let mut server = CoreServer::default();
        let mut alice = Driven::new(format, &["lobby"], 1);
        let mut bob = Driven::new(format, &["lobby"], 2);
        alice.run(&mut server);
        bob.run(&mut server);
        let seen = alice.take_seen();
        assert_eq!(seen[0], "Connect", "{format:?}: {seen:?}");
        assert!(has(&seen, &format!("Connected {{ format: {format:?} }}")), "{format:?}: {seen:?}");
        if format != WireFormat::Alepha {
            assert!(has(&seen, "Joined(RoomId(\"lobby\"))"), "{format:?}: {seen:?}");
        }
        assert!(alice.session.rooms().is_joined("lobby"));
        bob.take_seen();
        alice.say(&mut server, "lobby", "hi");
        bob.run(&mut server);
        assert_eq!(bob.take_seen(), ["message lobby hi"], "{format:?}");
        // The sender is excepted.
        assert!(!has(&alice.take_seen(), "message"), "{format:?}");
    }
}

#[test]
fn a_join_during_the_handshake_is_in_the_connection() {
    for format in [WireFormat::Json, WireFormat::Alepha] {
        let mut server = CoreServer::default();
        let mut client = Driven::new(format, &["a"], 3);
        // The request is written but no answer has been read yet.
        assert_eq!(client.session.poll(client.now), Some(Output::Connect));
        client.link = Some(server.connect().expect("connect"));
        let mut out = vec![0u8; 1024];
        let n = client.session.start(client.now, &TargetBase::default(), "h", &[], &mut out).expect("request");
        let request = out[..n].to_vec();
        client.send_out(&request);
        assert_eq!(client.session.join(client.now, "b", &mut out), Ok(Requested::NotSent));
        client.run(&mut server);
        let seen = client.take_seen();
        assert!(client.session.rooms().is_joined("a"), "{format:?}: {seen:?}");
        assert!(client.session.rooms().is_joined("b"), "{format:?}: {seen:?}");
        if format == WireFormat::Alepha {
            // The handshake named only "a": the client reconnected for "b".
            assert!(has(&seen, "why: Replaced"), "{seen:?}");
        }
    }
}

#[test]
fn a_lost_transport_reconnects_after_the_backoff_and_restores_the_rooms() {
    let mut server = CoreServer::default();
    let mut client = Driven::new(WireFormat::Json, &["a"], 4);
    client.run(&mut server);
    let mut out = vec![0u8; 256];
    let Ok(Requested::Sent { len, .. }) = client.session.join(client.now, "b", &mut out) else { panic!("join") };
    let request = out[..len].to_vec();
    client.send_out(&request);
    client.run(&mut server);
    assert!(client.session.rooms().is_joined("b"));
    client.take_seen();

    client.session.transport_failed(client.now, TransportError::Reset);
    assert_eq!(
        client.session.poll(client.now),
        Some(Output::Disconnected {
            why: Disconnect::Transport(TransportError::Reset),
            next: Next::After(Duration::from_millis(500)),
        })
    );
    client.link = None;
    assert!(!client.session.rooms().is_joined("a"));
    // Not before the delay.
    client.advance(&mut server, Duration::from_millis(499));
    assert!(client.take_seen().is_empty());
    client.advance(&mut server, Duration::from_millis(1));
    let seen = client.take_seen();
    assert_eq!(seen[0], "Connect", "{seen:?}");
    assert!(client.session.rooms().is_joined("a") && client.session.rooms().is_joined("b"), "{seen:?}");
}

/// A transport that ends halfway through a server frame is reported as
/// such, not as a plain reset.
#[test]
fn a_transport_ending_mid_frame_is_told_apart_from_a_reset() {
    let mut server = CoreServer::default();
    let mut client = Driven::new(WireFormat::Json, &["a"], 6);
    client.run(&mut server);
    // A binary frame announcing 100 bytes, 10 of them received.
    let mut cut = vec![0x82, 100];
    cut.extend_from_slice(&[7; 10]);
    let got = client.session.handle_input(client.now, &mut cut);
    assert_eq!(got.consumed, cut.len());
    client.session.transport_failed(client.now, TransportError::Reset);
    let Some(Output::Disconnected { why, .. }) = client.session.poll(client.now) else { panic!("not disconnected") };
    assert_eq!(why, Disconnect::Transport(TransportError::Truncated));
    assert_eq!(why.to_string(), "connection ended mid-frame");
}

#[test]
fn a_room_change_on_the_alepha_wire_reconnects_at_once() {
    let mut server = CoreServer::default();
    let mut client = Driven::new(WireFormat::Alepha, &["a"], 5);
    client.run(&mut server);
    client.take_seen();
    let mut out = vec![0u8; 256];
    assert_eq!(client.session.join(client.now, "b", &mut out), Ok(Requested::Reconnect));
    client.run(&mut server);
    let seen = client.take_seen();
    assert!(has(&seen, "Disconnected { why: Replaced, next: After(Duration(0)) }"), "{seen:?}");
    assert!(client.session.rooms().is_joined("a") && client.session.rooms().is_joined("b"), "{seen:?}");
}

#[test]
fn disconnect_stays_offline_until_reconnect() {
    let mut server = CoreServer::default();
    let mut client = Driven::new(WireFormat::Json, &["a"], 6);
    client.run(&mut server);
    client.take_seen();
    client.session.disconnect(client.now);
    client.run(&mut server);
    let seen = client.take_seen();
    assert_eq!(seen, ["Disconnected { why: Local, next: Offline }"]);
    client.advance(&mut server, Duration::from_secs(3600));
    assert!(client.take_seen().is_empty());
    assert_eq!(client.session.poll_timeout(), None);
    client.session.reconnect(client.now);
    client.run(&mut server);
    let seen = client.take_seen();
    assert_eq!(seen[0], "Connect", "{seen:?}");
    assert!(client.session.rooms().is_joined("a"));
}

#[test]
fn rooms_beyond_the_capacity_are_refused_before_sending() {
    let mut server = CoreServer::default();
    let mut client = Driven::new(WireFormat::Json, &["a"], 7);
    client.run(&mut server);
    let mut out = vec![0u8; 256];
    for room in ["b", "c", "d"] {
        let Ok(Requested::Sent { len, .. }) = client.session.join(client.now, room, &mut out) else { panic!("join") };
        let request = out[..len].to_vec();
        client.send_out(&request);
    }
    assert!(client.session.join(client.now, "e", &mut out).is_err(), "a fifth room does not fit");
    client.run(&mut server);
    assert_eq!(client.session.rooms().rooms().len(), 4);
}
