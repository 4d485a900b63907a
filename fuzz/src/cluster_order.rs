//! The cluster sequencer (`roomwire_core::cluster::order`): copies of up
//! to 64 messages of one publisher on three topics, each topic's copies in
//! publish order, interleaved as the input says; some copies may be lost.
//!
//! Asserts:
//! * no message goes out twice, and none is lost once the hold limit has
//!   passed;
//! * with no copy lost, every message goes out before any time passes,
//!   and in publish order on each topic.

use std::collections::BTreeSet;

use roomwire_core::cluster::order::{Copy, HOLD_LIMIT, Sequencer};
use roomwire_core::time::Instant;

const TOPICS: [&str; 3] = ["a", "b", "c"];

/// Run one input.
pub fn run(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else { return };
    let lossy = head & 0x80 != 0;
    let n = usize::from(head & 0x3f).min(rest.len());
    let (masks, picks) = rest.split_at(n);
    // Each message goes to a non-empty set of topics.
    let masks: Vec<u8> = masks.iter().map(|m| (m & 7).max(1)).collect();
    let mut streams: Vec<Vec<usize>> =
        (0..3).map(|t| (0..masks.len()).rev().filter(|&m| masks[m] & (1 << t) != 0).collect()).collect();
    let mut seq = Sequencer::new();
    let mut out: Vec<usize> = Vec::new();
    let now = Instant::from_micros(0);
    let mut picks = picks.iter();
    loop {
        let pick = picks.next().copied();
        let t = match pick {
            Some(p) => usize::from(p % 3),
            None => match (0..3).find(|&t| !streams[t].is_empty()) {
                Some(t) => t,
                None => break,
            },
        };
        let Some(m) = streams[t].pop() else { continue };
        if lossy && pick.is_some_and(|p| p >= 0xf0) {
            continue; // this copy is lost
        }
        let expected: Vec<&str> = (0..3).filter(|&u| masks[m] & (1 << u) != 0).map(|u| TOPICS[u]).collect();
        let copy = if expected.len() == 1 { Copy::Single } else { Copy::Multi { seq: m as u64, expected: &expected, release_by: None } };
        seq.heard(now, 7, TOPICS[t], copy, m, &mut |d| out.push(d));
    }
    if !lossy {
        assert_eq!(seq.held(), 0, "every copy heard, yet messages wait");
        assert_eq!(out.len(), masks.len(), "not all delivered: {out:?}");
        for (t, name) in TOPICS.iter().enumerate() {
            let on_t: Vec<usize> = out.iter().copied().filter(|&m| masks[m] & (1 << t) != 0).collect();
            assert!(on_t.windows(2).all(|w| w[0] < w[1]), "topic {name} out of order: {on_t:?}");
        }
    }
    seq.expire(Instant::from_micros(HOLD_LIMIT.as_micros()), &mut |d| out.push(d));
    assert_eq!(seq.held(), 0, "messages wait past the hold limit");
    let unique: BTreeSet<usize> = out.iter().copied().collect();
    assert_eq!(unique.len(), out.len(), "delivered twice: {out:?}");
}
