//! A connection at rest ([`crate::Rest`]) wakes as it was: resting between
//! any two steps changes nothing either side sees.

use std::vec::Vec;

use super::pair::{Pair, Seen, client_frame, transmit};
use crate::{Config, Duration, MessageKind, State, Timeout};

/// What one run of a script left: every event each side saw, and the
/// states and deadlines at the end.
#[derive(Debug, PartialEq)]
struct Outcome {
    server_saw: Vec<Seen>,
    client_saw: Vec<Seen>,
    states: (State, State),
    deadlines: (Option<crate::Instant>, Option<crate::Instant>),
}

fn keepalive() -> Config {
    Config { keepalive_interval: Some(Duration::from_secs(30)), ..Config::default() }
}

/// Run `script` on a fresh pair, with or without resting between steps.
fn run(script: &dyn Fn(&mut Pair), chunk: usize, rest: bool) -> (Outcome, usize) {
    let mut pair = Pair::with_configs(keepalive(), keepalive(), chunk);
    pair.connect();
    pair.rest_between_steps = rest;
    script(&mut pair);
    pair.drive();
    let outcome = Outcome {
        server_saw: std::mem::take(&mut pair.server_in.events),
        client_saw: std::mem::take(&mut pair.client_in.events),
        states: (pair.server.state(), pair.client.state()),
        deadlines: (pair.server.poll_timeout(), pair.client.poll_timeout()),
    };
    (outcome, pair.rested)
}

fn messages(pair: &mut Pair) {
    pair.client_send(MessageKind::Text, b"hello");
    pair.drive();
    pair.server_send(MessageKind::Binary, &[1, 2, 3]);
    pair.client_send(MessageKind::Binary, &[0; 300]);
    pair.drive();
}

fn fragments_and_control_frames(pair: &mut Pair) {
    pair.to_server.extend(client_frame(0x01, b"frag"));
    pair.to_server.extend(client_frame(0x89, b"ping inside"));
    pair.to_server.extend(client_frame(0x00, b"ment"));
    pair.to_server.extend(client_frame(0x8A, b"unasked pong"));
    pair.to_server.extend(client_frame(0x80, b"ed"));
    pair.drive();
}

fn keepalive_rounds(pair: &mut Pair) {
    for _ in 0..3 {
        pair.advance(Duration::from_secs(30));
        pair.drive();
    }
    // The client stops answering: the ping goes out, no pong comes back.
    pair.advance(Duration::from_secs(30));
    let _ = transmit(&mut pair.server);
    if pair.rest_between_steps {
        pair.rest_and_wake(); // at rest awaiting the pong
    }
    pair.advance(Duration::from_secs(30));
}

fn peer_closes(pair: &mut Pair) {
    pair.client_send(MessageKind::Text, b"bye");
    pair.drive();
    pair.client.close(pair.now, crate::CloseCode::Normal, "done").unwrap();
    pair.drive();
}

fn protocol_error(pair: &mut Pair) {
    pair.client_send(MessageKind::Text, b"fine");
    pair.to_server.extend(client_frame(0x83, b"reserved opcode"));
    pair.drive();
}

#[test]
fn resting_between_any_two_steps_changes_nothing() {
    type Script<'a> = &'a dyn Fn(&mut Pair);
    let scripts: [(&str, Script<'_>); 5] = [
        ("messages", &messages),
        ("fragments and control frames", &fragments_and_control_frames),
        ("keepalive", &keepalive_rounds),
        ("peer closes", &peer_closes),
        ("protocol error", &protocol_error),
    ];
    for (name, script) in scripts {
        for chunk in [1, 2, 3, 7, 64, 4096] {
            let (plain, none) = run(script, chunk, false);
            let (rested, times) = run(script, chunk, true);
            assert_eq!(none, 0);
            assert!(times > 0, "{name}, chunks of {chunk}: never rested");
            assert_eq!(plain, rested, "{name}, chunks of {chunk}");
        }
    }
}

#[test]
fn keepalive_survives_rest_and_a_silent_peer_still_times_out() {
    let (outcome, _) = run(&keepalive_rounds, 4096, true);
    assert_eq!(outcome.server_saw.last(), Some(&Seen::Timeout(Timeout::Keepalive)));
    assert_eq!(outcome.states.0, State::Closed);
}

#[test]
fn only_an_idle_open_connection_rests() {
    let mut pair = Pair::with_configs(keepalive(), keepalive(), 4096);
    // Not open yet.
    let server = std::mem::replace(&mut pair.server, crate::Connection::server(keepalive(), pair.now));
    let server = server.rest().unwrap_err();
    assert_eq!(server.state(), State::Connecting);
    pair.server = server;
    pair.connect();
    assert!(pair.server.is_at_rest() && pair.client.is_at_rest());

    // Half a fragmented message in: not at rest until it ends.
    pair.server_in.buf.extend(client_frame(0x02, b"first half"));
    super::pair::pump(&mut pair.server, pair.now, &mut pair.server_in);
    assert!(!pair.server.is_at_rest());
    let deadline = pair.server.poll_timeout();
    let server = std::mem::replace(&mut pair.server, crate::Connection::server(keepalive(), pair.now));
    let server = server.rest().unwrap_err();
    assert_eq!(server.poll_timeout(), deadline, "given back unchanged");
    pair.server = server;
    pair.server_in.buf.extend(client_frame(0x80, b", second half"));
    super::pair::pump(&mut pair.server, pair.now, &mut pair.server_in);
    assert!(pair.server.is_at_rest());

    // Half a frame: not at rest.
    let ping = client_frame(0x89, b"are you there");
    pair.server_in.buf.extend(&ping[..3]);
    super::pair::pump(&mut pair.server, pair.now, &mut pair.server_in);
    assert!(!pair.server.is_at_rest());
    pair.server_in.buf.extend(&ping[3..]);
    super::pair::pump(&mut pair.server, pair.now, &mut pair.server_in);
    // A pong owed: not at rest until it is written.
    assert!(!pair.server.is_at_rest());
    assert!(!transmit(&mut pair.server).is_empty());
    assert!(pair.server.is_at_rest());

    // A keepalive ping due: not at rest; sent, it rests awaiting the pong.
    pair.advance(Duration::from_secs(30));
    assert!(!pair.server.is_at_rest());
    let _ = transmit(&mut pair.server);
    assert!(pair.server.is_at_rest());

    // Closing: never again.
    pair.server.close(pair.now, crate::CloseCode::Normal, "").unwrap();
    let _ = transmit(&mut pair.server);
    assert_eq!(pair.server.state(), State::Closing);
    assert!(!pair.server.is_at_rest());
}

#[test]
fn the_resting_form_is_small() {
    let rest = core::mem::size_of::<crate::Rest>();
    let whole = core::mem::size_of::<crate::Connection>();
    assert!(rest <= 48, "Rest is {rest} bytes");
    assert!(whole >= 8 * rest, "Connection {whole} bytes, Rest {rest}");
}
