//! Stateful rooms: a client message on each wire, and the lifecycle driven
//! by an arbitrary schedule of joins, leaves, calls and time.
//!
//! Asserts, on arbitrary bytes:
//! * `stateful::handle_message` never panics on any wire; a message it
//!   hands over decoded from valid JSON (Alepha wire), and a rejection is a
//!   non-empty frame (a JSON object on the JSON wires);
//! * the `Lifecycle` never ticks an empty room, never evicts a room with
//!   members, never asks for state it has, keeps beats in phase and moving
//!   forward, and reports vacancy exactly when it has no state and no member.

use roomwire_core::stateful::{self, Due, Lifecycle, NonJson, RoomInbound};
use roomwire_core::wire::WireFormat;
use roomwire_core::{Duration, Instant, RoomId};

/// Client → room.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Inc {
    /// How much.
    pub by: u32,
}

roomwire_core::channel! {
    /// A counter room.
    pub struct Counter { path: "/ws/counter", in: Inc, out: Inc }
}

/// Run one input.
pub fn run(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else { return };
    let room = RoomId::new("r").expect("room");
    let mut out = [0u8; 512];
    let non_json = if first & 0x80 == 0 { NonJson::Drop } else { NonJson::Refuse };
    for format in [WireFormat::Alepha, WireFormat::Json, WireFormat::Postcard] {
        match stateful::handle_message::<Counter>(format, &room, non_json, rest, &mut [0; 64], &mut out) {
            RoomInbound::Message { payload, .. } => {
                assert!(payload.len() <= rest.len(), "a payload longer than the message");
                if format == WireFormat::Alepha {
                    assert!(roomwire_core::json::validate(rest).is_ok(), "a message from text that is not JSON");
                }
            }
            RoomInbound::Reject { len } => {
                assert!(len > 0 && len <= out.len(), "an empty rejection");
                if format != WireFormat::Postcard {
                    let frame: serde_json::Value = serde_json::from_slice(&out[..len]).expect("a JSON rejection");
                    assert!(frame.is_object());
                }
            }
            RoomInbound::Ignored => {
                assert_eq!(format, WireFormat::Alepha, "only the Alepha wire ignores");
                assert_eq!(non_json, NonJson::Drop, "a refusing room answers what it ignores");
            }
        }
    }
    lifecycle(first, rest);
}

/// Each byte is one step: its low 2 bits the input, the rest how much time
/// passes first (in ms, scaled).
fn lifecycle(hz: u8, steps: &[u8]) {
    let mut life = Lifecycle::new(u32::from(hz % 64));
    let mut now = Instant::ZERO;
    let mut members = 0usize;
    let mut built = false;
    let mut last_beat: Option<Instant> = None;
    for &step in steps {
        now = now + Duration::from_millis(u64::from(step >> 2) * 7);
        match step & 3 {
            0 => {
                if life.needs_state() {
                    assert!(!built);
                    life.built(now);
                    built = true;
                }
                life.joined(now);
                members += 1;
            }
            1 if members > 0 => {
                members -= 1;
                let emptied = life.left();
                assert_eq!(emptied, members == 0);
                if emptied {
                    life.discarded();
                    built = false;
                }
            }
            2 => {
                if life.needs_state() {
                    life.built(now);
                    built = true;
                }
                life.called(now);
            }
            _ => {
                if let Some(at) = life.poll_timeout() {
                    assert!(members > 0 || built, "a timer for a vacant room");
                    now = now.max(at);
                }
                match life.handle_timeout(now) {
                    Some(Due::Beat(beat)) => {
                        assert!(members > 0, "a beat in an empty room");
                        if let Some(previous) = last_beat {
                            assert!(now > previous && beat.dt == now - previous, "dt is the time since the last beat");
                        }
                        last_beat = Some(now);
                        let _ = life.tick_done(now);
                        assert!(life.poll_timeout().is_some_and(|next| next > now), "the next beat is ahead");
                    }
                    Some(Due::Evict) => {
                        assert!(members == 0 && built, "evicted with members or without state");
                        life.discarded();
                        built = false;
                    }
                    None => {}
                }
            }
        }
        if members == 0 {
            last_beat = None;
        }
        assert_eq!(life.members(), members);
        assert_eq!(life.is_vacant(), !built && members == 0);
        assert_eq!(life.needs_state(), !built);
    }
}
