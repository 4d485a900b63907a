//! The Alepha JSON wire and the JSON scanner under it.
//!
//! Asserts, on arbitrary bytes:
//! * `json::validate` agrees with serde_json on what is JSON (within the
//!   nesting limit, and for UTF-8 input);
//! * `parse_client_frame` accepts exactly the JSON documents, and its
//!   payload is itself valid JSON;
//! * labelling a payload with a room and splitting the label off gives the
//!   payload back, and the room;
//! * `rooms_from_query` never panics and yields valid, distinct room ids;
//!   the room-id rules (UUID, glob patterns) answer for every such id.

use roomwire_core::alepha;
use roomwire_core::channel::RoomIdRule;
use roomwire_core::json;
use roomwire_core::room::RoomSet;

/// Run one input.
pub fn run(data: &[u8]) {
    let ours = json::validate(data).is_ok();
    if let Ok(text) = core::str::from_utf8(data) {
        let parsed = serde_json::from_str::<serde_json::Value>(text);
        // serde_json refuses numbers beyond f64 that the grammar (and
        // JavaScript's JSON.parse, which yields Infinity) accept.
        let out_of_range = parsed.as_ref().is_err_and(|e| e.to_string().contains("number out of range"));
        let theirs = parsed.is_ok();
        let deep = data.iter().filter(|&&b| b == b'[' || b == b'{').count() > json::MAX_DEPTH;
        if !deep && !out_of_range {
            assert_eq!(ours, theirs, "json::validate disagrees with serde_json on {text:?}");
        }
    }
    match alepha::parse_client_frame(data) {
        Ok(frame) => {
            assert!(ours, "a frame that is not JSON was accepted");
            assert!(json::validate(frame.message).is_ok(), "payload is not JSON");
        }
        Err(_) => assert!(!ours, "valid JSON was refused"),
    }
    if ours {
        let mut labelled = vec![0u8; data.len() + 128];
        let n = alepha::write_server_frame(data, Some("r\"\u{e9}"), &mut labelled).expect("fits");
        let mut out = vec![0u8; n];
        let (label, payload) = alepha::split_server_frame(&labelled[..n], &mut out).expect("labelled frame splits");
        if json::object_members(data).ok().flatten().is_some() {
            assert_eq!(label.as_deref(), Some("r\"\u{e9}"));
            // The payload may differ only in whitespace around the old end.
            assert!(json::validate(payload).is_ok());
        } else {
            assert_eq!(label, None);
            assert_eq!(payload, data);
        }
    }
    if let Ok(query) = core::str::from_utf8(data) {
        let mut rooms = RoomSet::<8>::new();
        if alepha::rooms_from_query(Some(query), |r| !r.contains('!'), &mut rooms).is_ok() {
            assert!(!rooms.is_empty());
            for (i, a) in rooms.iter().enumerate() {
                assert!(!a.is_empty() && a.len() <= 64);
                assert!(rooms.iter().skip(i + 1).all(|b| a != b), "duplicate room");
            }
        }
        // Client-chosen room ids against declared rules: any answer, and
        // no more than pattern × id steps (a hang shows as a timeout).
        let _ = alepha::for_each_query_room(Some(query), |room| {
            let _ = RoomIdRule::Uuid.allows(&room);
            let _ = RoomIdRule::Pattern("*a*?[!b-y]*\\**[]-]*").allows(&room);
            assert!(RoomIdRule::Pattern("*").allows(&room));
            assert!(RoomIdRule::Pattern("\\").allows(&room) == (room.as_str() == "\\"));
            Ok::<(), alepha::QueryRoomsError>(())
        });
    }
}
