//! The demo's counter room, as its contract says (the chat example's docs):
//! a member that joins gets the count at once; every member gets it again
//! on the tick after the value or the member count changed; `inc` takes an
//! integer from 1 to 100, and anything else, text that is not JSON too, is
//! answered with an `{"error": …}` frame; the counter is discarded when the
//! room empties.

#[path = "../../adapter-tokio/tests/server_support/mod.rs"]
mod server_support;

use roomwire_tokio::CloseCode;
use serde_json::json;
use server_support::*;

fn count(value: u64, members: usize) -> serde_json::Value {
    json!({"type": "count", "value": value, "members": members})
}

#[tokio::test]
async fn the_counter_room_keeps_its_contract() {
    let h = harness_with(|b| b.room(roomwire_tests::counter::counter_room()), |e| e).await;
    let (mut a, _) = h.try_connect("/ws/counter?roomId=c1", &[], &[]).await.unwrap();
    assert_eq!(recv_json(&mut a).await, count(0, 1), "at once on joining");
    let (mut b, _) = h.try_connect("/ws/counter?roomId=c1", &[], &[]).await.unwrap();
    assert_eq!(recv_json(&mut b).await, count(0, 2));
    assert_eq!(recv_json(&mut a).await, count(0, 2), "the member count changed");
    assert_eq!(recv_json(&mut b).await, count(0, 2), "every member, on the tick");
    for bad in [
        "hello",
        r#"{"type":"inc","by":0}"#,
        r#"{"type":"inc","by":101}"#,
        r#"{"type":"inc","by":1.5}"#,
        r#"{"type":"inc","by":"3"}"#,
        r#"{"type":"dec","by":1}"#,
        r#"{"by":1}"#,
        "[1]",
    ] {
        send_text(&mut a, bad).await;
        let answer = recv_json(&mut a).await;
        assert!(answer["error"].is_string(), "{bad} answered {answer}");
    }
    send_text(&mut a, r#"{"type":"inc","by":100}"#).await;
    send_text(&mut b, r#"{"type":"inc","by":1}"#).await;
    let mut last = recv_json(&mut a).await;
    while last != count(101, 2) {
        assert_eq!(last["type"], "count", "{last}");
        last = recv_json(&mut a).await;
    }
    // Both leave: the counter goes; a later join starts at 0.
    a.close(CloseCode::Normal, "").await.unwrap();
    b.close(CloseCode::Normal, "").await.unwrap();
    closed_with(&mut a).await;
    closed_with(&mut b).await;
    tokio::time::timeout(LIMIT, async {
        while h.server.live_rooms::<roomwire_tests::counter::CounterRoom>() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the emptied room ends");
    let (mut c, _) = h.try_connect("/ws/counter?roomId=c1", &[], &[]).await.unwrap();
    assert_eq!(recv_json(&mut c).await, count(0, 1));
}
