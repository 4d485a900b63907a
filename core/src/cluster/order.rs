//! Delivery in publish order across topics: a message published on several
//! topics (an emit to two rooms) is delivered once every copy this node
//! expects has reached the head of its topic's queue, so that every earlier
//! message of the same publisher on each of those topics is delivered
//! first. Topics on different servers (a Redis Cluster's shards) may run
//! at different paces; this puts each publisher's messages back in order
//! for every room.
//!
//! Sans-IO: time is passed in, and a held message waits at most
//! [`HOLD_LIMIT`] for copies that do not come (a subscription that ended,
//! a copy the bus lost), then goes out anyway.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use super::window::{Seen, SeqWindow};
use crate::time::{Duration, Instant};

/// The longest a message waits for its other copies.
pub const HOLD_LIMIT: Duration = Duration::from_secs(2);

/// At most this many messages wait, over all publishers; the oldest goes
/// out early beyond it.
pub const MAX_HELD: usize = 65_536;

/// At most this many publishers are tracked; one silent for a minute with
/// nothing waiting is forgotten first.
pub const MAX_ORIGINS: usize = 4096;

const ORIGIN_IDLE: Duration = Duration::from_secs(60);

/// What a heard copy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    /// A message published on one topic only.
    Single,
    /// One copy of a message published on several topics: its number, and
    /// on how many of those topics this node should hear it (those it
    /// subscribes to; at least the one it came on).
    Multi {
        /// The publisher's number for it.
        seq: u64,
        /// Copies this node expects.
        expected: usize,
    },
}

/// What became of a heard copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// It went out, or it let out what waited for it.
    Delivered,
    /// Waiting: for other copies, or behind a message that waits.
    Held,
    /// A later copy of a message already delivered: dropped.
    Duplicate,
    /// Too far behind to be told from a duplicate, or from a publisher
    /// that cannot be tracked: dropped.
    Stale,
}

enum Entry<T> {
    Single(T),
    Copy { seq: u64, counted: bool },
}

struct Held<T> {
    item: T,
    /// Expected copies not yet at the head of their queue.
    waiting: usize,
    since: Instant,
}

struct Origin<T> {
    queues: BTreeMap<String, VecDeque<Entry<T>>>,
    held: BTreeMap<u64, Held<T>>,
    window: SeqWindow,
    last: Instant,
}

impl<T> Origin<T> {
    fn idle(&self) -> bool {
        self.queues.is_empty() && self.held.is_empty()
    }
}

/// The messages of every publisher, put back in order. `T` is what a
/// message is (its bytes, say).
///
/// ```
/// use roomwire_core::cluster::order::{Copy, Heard, Sequencer};
/// use roomwire_core::time::Instant;
/// let now = Instant::from_micros(0);
/// let mut out = Vec::new();
/// let mut s = Sequencer::new();
/// // m2 (rooms a and c) is heard on c first: it waits for its copy on a,
/// // behind which m1 (room a only) is still on its way.
/// let m2 = Copy::Multi { seq: 2, expected: 2 };
/// assert_eq!(s.heard(now, 7, "c", m2, "m2", &mut |m| out.push(m)), Heard::Held);
/// assert_eq!(s.heard(now, 7, "a", Copy::Single, "m1", &mut |m| out.push(m)), Heard::Delivered);
/// assert_eq!(s.heard(now, 7, "a", m2, "m2", &mut |m| out.push(m)), Heard::Delivered);
/// assert_eq!(out, ["m1", "m2"]);
/// ```
pub struct Sequencer<T> {
    origins: BTreeMap<u64, Origin<T>>,
    held: usize,
}

impl<T> Default for Sequencer<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Sequencer<T> {
    /// Nothing heard yet.
    pub const fn new() -> Self {
        Self { origins: BTreeMap::new(), held: 0 }
    }

    /// Messages waiting.
    pub fn held(&self) -> usize {
        self.held
    }

    /// A copy of a message of publisher `origin`, heard on `topic`;
    /// `deliver` gets what is now ready, in order.
    pub fn heard(
        &mut self,
        now: Instant,
        origin: u64,
        topic: &str,
        copy: Copy,
        item: T,
        deliver: &mut impl FnMut(T),
    ) -> Heard {
        if !self.origins.contains_key(&origin) && self.origins.len() >= MAX_ORIGINS {
            self.origins.retain(|_, o| !(o.idle() && now.saturating_duration_since(o.last) >= ORIGIN_IDLE));
            if self.origins.len() >= MAX_ORIGINS {
                return Heard::Stale;
            }
        }
        if self.held >= MAX_HELD {
            self.release_oldest(deliver);
        }
        let o = self.origins.entry(origin).or_insert_with(|| Origin {
            queues: BTreeMap::new(),
            held: BTreeMap::new(),
            window: SeqWindow::new(),
            last: now,
        });
        o.last = now;
        let queued = o.queues.get(topic).is_some_and(|q| !q.is_empty());
        let entry = match copy {
            Copy::Single if !queued => {
                deliver(item);
                return Heard::Delivered;
            }
            Copy::Single => Entry::Single(item),
            Copy::Multi { seq, expected } => {
                if !o.held.contains_key(&seq) {
                    match o.window.accept(seq) {
                        Seen::Fresh => {}
                        Seen::Duplicate => return Heard::Duplicate,
                        Seen::Stale => return Heard::Stale,
                    }
                    if expected <= 1 && !queued {
                        deliver(item);
                        return Heard::Delivered;
                    }
                    o.held.insert(seq, Held { item, waiting: expected.max(1), since: now });
                    self.held += 1;
                }
                Entry::Copy { seq, counted: false }
            }
        };
        o.queues.entry(String::from(topic)).or_default().push_back(entry);
        let before = self.held;
        let delivered_any = pump(o, topic, deliver, &mut self.held);
        if delivered_any || self.held < before { Heard::Delivered } else { Heard::Held }
    }

    /// Let out what waited longer than [`HOLD_LIMIT`] (call it now and
    /// then, as time passes).
    pub fn expire(&mut self, now: Instant, deliver: &mut impl FnMut(T)) {
        for o in self.origins.values_mut() {
            while let Some((&seq, held)) = o.held.first_key_value() {
                if now.saturating_duration_since(held.since) < HOLD_LIMIT {
                    break;
                }
                force(o, seq, deliver, &mut self.held);
            }
        }
    }

    fn release_oldest(&mut self, deliver: &mut impl FnMut(T)) {
        let oldest = self
            .origins
            .iter()
            .filter_map(|(&origin, o)| o.held.iter().next().map(|(&seq, h)| (h.since, origin, seq)))
            .min_by_key(|&(since, _, _)| since);
        if let Some((_, origin, seq)) = oldest
            && let Some(o) = self.origins.get_mut(&origin)
        {
            force(o, seq, deliver, &mut self.held);
        }
    }
}

/// Deliver held message `seq` now, wherever its copies are, and whatever
/// it was holding up.
fn force<T>(o: &mut Origin<T>, seq: u64, deliver: &mut impl FnMut(T), held: &mut usize) {
    let Some(h) = o.held.remove(&seq) else { return };
    *held -= 1;
    deliver(h.item);
    let mut touched = Vec::new();
    for (topic, queue) in o.queues.iter_mut() {
        let before = queue.len();
        queue.retain(|e| !matches!(e, Entry::Copy { seq: s, .. } if *s == seq));
        if queue.len() != before {
            touched.push(topic.clone());
        }
    }
    for topic in touched {
        pump(o, &topic, deliver, held);
    }
}

/// Deliver from the head of `topic`'s queue, and of any queue a delivery
/// unblocks, while they can go. Whether anything was delivered.
fn pump<T>(o: &mut Origin<T>, topic: &str, deliver: &mut impl FnMut(T), held: &mut usize) -> bool {
    let mut work: Vec<String> = Vec::new();
    work.push(String::from(topic));
    let mut delivered = false;
    while let Some(topic) = work.pop() {
        while let Some(queue) = o.queues.get_mut(&topic) {
            let ready_seq = match queue.front_mut() {
                None => {
                    o.queues.remove(&topic);
                    break;
                }
                Some(Entry::Single(_)) => {
                    if let Some(Entry::Single(item)) = queue.pop_front() {
                        deliver(item);
                        delivered = true;
                    }
                    continue;
                }
                Some(Entry::Copy { seq, counted }) => {
                    let seq = *seq;
                    let Some(h) = o.held.get_mut(&seq) else {
                        // Delivered already (forced, or fewer copies
                        // expected than came): a leftover copy.
                        queue.pop_front();
                        continue;
                    };
                    if !*counted {
                        *counted = true;
                        h.waiting = h.waiting.saturating_sub(1);
                    }
                    if h.waiting > 0 {
                        break;
                    }
                    seq
                }
            };
            // Every counted copy of it is at the head of its queue: out.
            if let Some(h) = o.held.remove(&ready_seq) {
                *held -= 1;
                deliver(h.item);
                delivered = true;
            }
            for (other, queue) in o.queues.iter_mut() {
                if matches!(queue.front(), Some(Entry::Copy { seq, counted: true }) if *seq == ready_seq) {
                    queue.pop_front();
                    if *other != topic {
                        work.push(other.clone());
                    }
                }
            }
        }
    }
    delivered
}
