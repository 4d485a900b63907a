//! Who owns a stateful room across a cluster, and what a node does when
//! the bus answers its claim (`PROTOCOL.md` section 10.1).
//!
//! The owner holds the room's state and runs its callbacks; every other
//! node with members in the room sends it their requests. Ownership is a
//! claim on the bus ([`room_owner_key`](super::room_owner_key)) holding the
//! owner's [`holder`] text; a node asks for it (taking it if nobody holds
//! it) when the room starts on it and every [`ROOM_LEASE_RENEW`](super::ROOM_LEASE_RENEW),
//! and [`claimed`] says what the answer means.

use core::fmt;

/// How long a node waits for the owner to answer a join (the owner may be
/// building the room's state, or taking over a room whose members all join
/// again at once): a join not answered by then is closed with 1011.
pub const ROOM_JOIN_TIMEOUT: crate::time::Duration = crate::time::Duration::from_secs(10);

/// How many times one request follows the room to a new owner (its owner
/// answered that it no longer owns it) before it fails.
pub const MAX_REDIRECTS: u8 = 3;

/// What a member's message or a call is answered when the room's owner does
/// not answer in time (the owner may still have applied it).
pub const ROOM_UNAVAILABLE: &str = "The room is unavailable (its owner did not answer)";

/// Who owns a room, as one node knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Not asked yet (or to ask again).
    Unknown,
    /// This node: the state is here.
    Here,
    /// The node with this tag.
    Node(u32),
}

/// What a node does with the answer to its claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// Nothing changes (this node owns the room still, or the bus could
    /// not answer and this node keeps what it knew).
    Kept,
    /// Another node owns the room still: tell it which members this node
    /// has in it (`members`).
    Report,
    /// This node now owns the room: build a new state and join this node's
    /// members to it.
    Took,
    /// Another node (`to`) owns the room now, which this node owned: drop
    /// the state without `on_empty`, and join this node's members to `to`.
    Lost {
        /// The new owner.
        to: u32,
    },
    /// The room moved to another node (`to`): join this node's members to
    /// it.
    Moved {
        /// The new owner.
        to: u32,
    },
}

/// The answer to node `me`'s claim: the holder's tag, or `None` if the bus
/// could not say. Returns who owns the room now, and what to do.
///
/// A node that could not ask at all (`Unknown`, and no answer) serves the
/// room alone until it can ask: there may be no one else to serve it.
///
/// ```
/// use roomwire_core::cluster::ownership::{claimed, Claimed, Owner};
/// assert_eq!(claimed(Owner::Unknown, Some(7), 7), (Owner::Here, Claimed::Took));
/// assert_eq!(claimed(Owner::Node(3), Some(3), 7), (Owner::Node(3), Claimed::Report));
/// assert_eq!(claimed(Owner::Node(3), Some(7), 7), (Owner::Here, Claimed::Took));
/// assert_eq!(claimed(Owner::Here, Some(3), 7), (Owner::Node(3), Claimed::Lost { to: 3 }));
/// assert_eq!(claimed(Owner::Node(3), None, 7), (Owner::Node(3), Claimed::Kept));
/// ```
pub fn claimed(current: Owner, holder: Option<u32>, me: u32) -> (Owner, Claimed) {
    let Some(holder) = holder else {
        return match current {
            Owner::Unknown => (Owner::Here, Claimed::Took),
            known => (known, Claimed::Kept),
        };
    };
    match (current, holder == me) {
        (Owner::Here, true) => (Owner::Here, Claimed::Kept),
        (_, true) => (Owner::Here, Claimed::Took),
        (Owner::Here, false) => (Owner::Node(holder), Claimed::Lost { to: holder }),
        (Owner::Node(owner), false) if owner == holder => (current, Claimed::Report),
        (_, false) => (Owner::Node(holder), Claimed::Moved { to: holder }),
    }
}

/// Whom this node's claim puts back as the owner if the bus holds no
/// claim: the owner this node knows, if this node had word of it alive
/// (its claim on the bus, its answer to this node's `members` report)
/// `seen_ago`, less than [`ROOM_LEASE_TTL`](super::ROOM_LEASE_TTL) ago,
/// and it answered this node's last report (`report_pending` false); else
/// nobody (the asker takes the room).
///
/// A bus that loses its keys (a Redis restarted without persistence, a
/// failover that lost the last write, an eviction) must not hand a live
/// owner's room to whichever node asks first: that node would build a new
/// state while the owner still serves the old one. A silent owner is not
/// put back, so a room whose owner died and whose key was lost moves on
/// at the next claim but one.
///
/// ```
/// use roomwire_core::cluster::ownership::{restore, Owner};
/// use roomwire_core::time::Duration;
/// let recently = Some(Duration::from_secs(2));
/// assert_eq!(restore(Owner::Node(3), recently, false), Some(3));
/// assert_eq!(restore(Owner::Node(3), recently, true), None);
/// assert_eq!(restore(Owner::Node(3), Some(Duration::from_secs(60)), false), None);
/// assert_eq!(restore(Owner::Node(3), None, false), None);
/// assert_eq!(restore(Owner::Here, recently, false), None);
/// assert_eq!(restore(Owner::Unknown, recently, false), None);
/// ```
pub fn restore(current: Owner, seen_ago: Option<crate::time::Duration>, report_pending: bool) -> Option<u32> {
    match (current, seen_ago) {
        (Owner::Node(tag), Some(ago)) if ago < super::ROOM_LEASE_TTL && !report_pending => Some(tag),
        _ => None,
    }
}

/// The claim's value for the node with `tag`: eight lowercase hex digits,
/// as in its node topic.
///
/// ```
/// use roomwire_core::cluster::ownership::{holder, parse_holder};
/// assert_eq!(holder(0x1b4e28ba).to_string(), "1b4e28ba");
/// assert_eq!(parse_holder("1b4e28ba"), Some(0x1b4e28ba));
/// assert_eq!(parse_holder("nope"), None);
/// ```
pub fn holder(tag: u32) -> impl fmt::Display {
    struct Holder(u32);
    impl fmt::Display for Holder {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{:08x}", self.0)
        }
    }
    Holder(tag)
}

/// The tag in a claim's value, if it is one.
pub fn parse_holder(text: &str) -> Option<u32> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn every_claim_answer_has_one_meaning() {
        let me = 7;
        for current in [Owner::Unknown, Owner::Here, Owner::Node(3), Owner::Node(4)] {
            for holder in [None, Some(me), Some(3), Some(5)] {
                let (now, what) = claimed(current, holder, me);
                match what {
                    Claimed::Kept => assert_eq!(now, if current == Owner::Unknown { Owner::Here } else { current }),
                    Claimed::Report => assert!(matches!(now, Owner::Node(t) if Some(t) == holder && now == current)),
                    Claimed::Took => assert_eq!(now, Owner::Here),
                    Claimed::Lost { to } => assert!(current == Owner::Here && now == Owner::Node(to)),
                    Claimed::Moved { to } => assert!(current != Owner::Here && now == Owner::Node(to)),
                }
                if let Some(holder) = holder {
                    let expected = if holder == me { Owner::Here } else { Owner::Node(holder) };
                    assert_eq!(now, expected, "the bus's answer wins: {current:?} {holder}");
                }
            }
        }
    }

    #[test]
    fn holders_are_eight_hex_digits() {
        assert_eq!(parse_holder(&std::format!("{}", holder(0))), Some(0));
        assert_eq!(parse_holder("0000000g"), None);
        assert_eq!(parse_holder("123"), None);
        assert_eq!(parse_holder("+1234567"), None);
    }
}
