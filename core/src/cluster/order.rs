//! Delivery in publish order across topics: a message published on several
//! topics (an emit to two rooms) is delivered once its copy on every topic
//! this node expects it on has reached the head of that topic's queue, so
//! that every earlier message of the same publisher on each of those
//! topics is delivered first. Topics on different servers (a Redis
//! Cluster's shards) may run at different paces; this puts each
//! publisher's messages back in order for every room.
//!
//! Sans-IO: time is passed in, and a held message waits at most
//! [`HOLD_LIMIT`] for copies that do not come (a copy the bus lost), then
//! goes out anyway; a topic the node stops hearing is no longer waited for
//! ([`Sequencer::forget_topic`]).

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use super::window::{Seen, SeqWindow};
use crate::time::{Duration, Instant};

/// The longest a message waits for its other copies.
pub const HOLD_LIMIT: Duration = Duration::from_secs(2);

/// At most this many messages wait (held, or queued behind one that is),
/// over all publishers; beyond, the oldest held message goes out early.
pub const MAX_WAITING: usize = 65_536;

/// At most this many bytes wait, by the weight a [weighed](Sequencer::weighed)
/// sequencer gives its messages (their size, say); beyond, the oldest
/// held message goes out early, as beyond [`MAX_WAITING`].
pub const MAX_WAITING_BYTES: usize = 64 << 20;

/// At most this many publishers are tracked; one silent for a minute with
/// nothing waiting is forgotten first.
pub const MAX_ORIGINS: usize = 4096;

const ORIGIN_IDLE: Duration = Duration::from_secs(60);

/// When a multi-topic message heard `now` stops waiting for its copies,
/// if that is sooner than [`HOLD_LIMIT`] ([`Copy::Multi`]'s `release_by`):
/// given how long ago this node's subscription to each of the topics it
/// expects a copy on was confirmed, `now` plus the most any of them has
/// left of its [`SUBSCRIBE_GRACE`](super::SUBSCRIBE_GRACE); `None` if none
/// is within its grace. A copy on a topic subscribed to only just never
/// comes if it was published before the subscription reached the bus; one
/// published after it keeps that topic's order, so it is waited for, until
/// then.
///
/// ```
/// use roomwire_core::cluster::order::release_by;
/// use roomwire_core::time::{Duration, Instant};
/// let now = Instant::from_millis(1_000);
/// let ages = [Duration::from_secs(60), Duration::from_millis(50)];
/// assert_eq!(release_by(now, ages), Some(Instant::from_millis(1_150)));
/// assert_eq!(release_by(now, [Duration::from_secs(60)]), None);
/// ```
pub fn release_by(now: Instant, subscribed_for: impl IntoIterator<Item = Duration>) -> Option<Instant> {
    let grace = super::SUBSCRIBE_GRACE.as_micros();
    let left = subscribed_for.into_iter().map(|age| grace.saturating_sub(age.as_micros())).max().unwrap_or(0);
    (left > 0).then(|| now + Duration::from_micros(left))
}

/// What a heard copy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy<'t> {
    /// A message published on one topic only.
    Single,
    /// One copy of a message published on several topics: its number, and
    /// the topics this node should hear it on (those of its topics the node
    /// is subscribed to; the one it came on is always counted).
    Multi {
        /// The publisher's number for it.
        seq: u64,
        /// The topics its copies are expected on.
        expected: &'t [&'t str],
        /// When to stop waiting for its copies if that is sooner than
        /// [`HOLD_LIMIT`]: the end of the grace of a topic among
        /// `expected` that this node subscribed to only just. Its copy
        /// there comes unless it was published before the subscription
        /// reached the bus; waited for until then, it keeps the order of
        /// what was published on that topic after the subscription.
        release_by: Option<Instant>,
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
    /// Too far behind to be told from a duplicate: dropped.
    Stale,
}

enum Entry<T> {
    Single(T),
    Copy { seq: u64, counted: bool },
}

struct Held<T> {
    item: T,
    /// Expected topics whose copy has not reached its queue's head.
    waiting: BTreeSet<String>,
    since: Instant,
    /// When it goes out whatever still waits: [`HOLD_LIMIT`] after
    /// `since`, or its copy's `release_by` if sooner.
    until: Instant,
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
/// let m2 = Copy::Multi { seq: 2, expected: &["a", "c"], release_by: None };
/// assert_eq!(s.heard(now, 7, "c", m2, "m2", &mut |m| out.push(m)), Heard::Held);
/// assert_eq!(s.heard(now, 7, "a", Copy::Single, "m1", &mut |m| out.push(m)), Heard::Delivered);
/// assert_eq!(s.heard(now, 7, "a", m2, "m2", &mut |m| out.push(m)), Heard::Delivered);
/// assert_eq!(out, ["m1", "m2"]);
/// ```
pub struct Sequencer<T> {
    origins: BTreeMap<u64, Origin<T>>,
    /// Held messages and queued entries, and what they weigh, over all
    /// publishers.
    waiting: Waiting<T>,
}

/// What waits, over all publishers.
struct Waiting<T> {
    /// Held messages and queued entries.
    count: usize,
    /// What the messages held or queued weigh.
    bytes: usize,
    weigh: fn(&T) -> usize,
}

impl<T> Waiting<T> {
    /// An entry (a queued copy, or a held message already counted) is gone.
    fn entry_gone(&mut self) {
        self.count = self.count.saturating_sub(1);
    }

    /// `item` leaves, as held or queued: it goes out.
    fn deliver(&mut self, item: T, deliver: &mut impl FnMut(T)) {
        self.count = self.count.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub((self.weigh)(&item));
        deliver(item);
    }
}

impl<T> Default for Sequencer<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Sequencer<T> {
    /// Nothing heard yet; messages weigh nothing (only their number is
    /// bounded).
    pub const fn new() -> Self {
        Self::weighed(|_| 0)
    }

    /// Nothing heard yet; what waits is also bounded by what `weigh` says
    /// each message weighs, at most [`MAX_WAITING_BYTES`] in all.
    ///
    /// ```
    /// use roomwire_core::cluster::order::{Copy, MAX_WAITING_BYTES, Sequencer};
    /// use roomwire_core::time::Instant;
    /// let mut s = Sequencer::weighed(|m: &Vec<u8>| m.len());
    /// let (now, mut out) = (Instant::from_micros(0), Vec::new());
    /// let held = Copy::Multi { seq: 1, expected: &["a", "b"], release_by: None };
    /// s.heard(now, 7, "a", held, vec![0; MAX_WAITING_BYTES], &mut |m| out.push(m.len()));
    /// assert_eq!(s.held_bytes(), MAX_WAITING_BYTES);
    /// // Past the bound, the oldest held message goes out before another waits.
    /// let next = Copy::Multi { seq: 2, expected: &["a", "b"], release_by: None };
    /// s.heard(now, 7, "b", next, vec![1], &mut |m| out.push(m.len()));
    /// assert_eq!((out, s.held_bytes()), (vec![MAX_WAITING_BYTES], 1));
    /// ```
    pub const fn weighed(weigh: fn(&T) -> usize) -> Self {
        Self { origins: BTreeMap::new(), waiting: Waiting { count: 0, bytes: 0, weigh } }
    }

    /// What the messages held or queued weigh, over all publishers.
    pub fn held_bytes(&self) -> usize {
        self.waiting.bytes
    }

    /// Whether something of `origin` waits on `topic` (a single-topic
    /// message heard there now would wait too).
    ///
    /// ```
    /// use roomwire_core::cluster::order::Sequencer;
    /// assert!(!Sequencer::<()>::new().is_queued(7, "a"));
    /// ```
    pub fn is_queued(&self, origin: u64, topic: &str) -> bool {
        self.origins.get(&origin).and_then(|o| o.queues.get(topic)).is_some_and(|q| !q.is_empty())
    }

    /// Messages held, over all publishers.
    pub fn held(&self) -> usize {
        self.origins.values().map(|o| o.held.len()).sum()
    }

    /// A copy of a message of publisher `origin`, heard on `topic`;
    /// `deliver` gets what is now ready, in order.
    pub fn heard(
        &mut self,
        now: Instant,
        origin: u64,
        topic: &str,
        copy: Copy<'_>,
        item: T,
        deliver: &mut impl FnMut(T),
    ) -> Heard {
        if !self.origins.contains_key(&origin) && self.origins.len() >= MAX_ORIGINS {
            self.origins.retain(|_, o| !(o.idle() && now.saturating_duration_since(o.last) >= ORIGIN_IDLE));
            if self.origins.len() >= MAX_ORIGINS {
                // Untracked: what needs no ordering goes out; the rest
                // cannot be told from a duplicate.
                if copy == Copy::Single {
                    deliver(item);
                    return Heard::Delivered;
                }
                return Heard::Stale;
            }
        }
        while (self.waiting.count >= MAX_WAITING || self.waiting.bytes >= MAX_WAITING_BYTES)
            && self.release_oldest(deliver)
        {}
        let weight = (self.waiting.weigh)(&item);
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
            Copy::Single => {
                self.waiting.bytes = self.waiting.bytes.saturating_add(weight);
                Entry::Single(item)
            }
            Copy::Multi { seq, expected, release_by } => {
                if !o.held.contains_key(&seq) {
                    match o.window.accept(seq) {
                        Seen::Fresh => {}
                        Seen::Duplicate => return Heard::Duplicate,
                        Seen::Stale => return Heard::Stale,
                    }
                    let mut waiting: BTreeSet<String> = expected.iter().map(|t| String::from(*t)).collect();
                    waiting.insert(String::from(topic));
                    if waiting.len() == 1 && !queued {
                        deliver(item);
                        return Heard::Delivered;
                    }
                    let until = release_by.map_or(now + HOLD_LIMIT, |by| by.min(now + HOLD_LIMIT));
                    o.held.insert(seq, Held { item, waiting, since: now, until });
                    self.waiting.count = self.waiting.count.saturating_add(1);
                    self.waiting.bytes = self.waiting.bytes.saturating_add(weight);
                }
                Entry::Copy { seq, counted: false }
            }
        };
        o.queues.entry(String::from(topic)).or_default().push_back(entry);
        self.waiting.count = self.waiting.count.saturating_add(1);
        if pump(o, topic, deliver, &mut self.waiting) { Heard::Delivered } else { Heard::Held }
    }

    /// This node no longer hears `topic`: held messages stop waiting for a
    /// copy there (those it was all they waited for go out).
    pub fn forget_topic(&mut self, topic: &str, deliver: &mut impl FnMut(T)) {
        for o in self.origins.values_mut() {
            let mut ready = Vec::new();
            for (&seq, h) in o.held.iter_mut() {
                if h.waiting.remove(topic) && h.waiting.is_empty() {
                    ready.push(seq);
                }
            }
            for seq in ready {
                force(o, seq, deliver, &mut self.waiting);
            }
        }
    }

    /// Let out what waited longer than [`HOLD_LIMIT`], or past its
    /// copy's `release_by` (call it now and then, as time passes), oldest
    /// number first.
    pub fn expire(&mut self, now: Instant, deliver: &mut impl FnMut(T)) {
        for o in self.origins.values_mut() {
            let late: Vec<u64> = o.held.iter().filter(|(_, h)| now >= h.until).map(|(&seq, _)| seq).collect();
            for seq in late {
                force(o, seq, deliver, &mut self.waiting);
            }
        }
    }

    /// Let out the held message heard first; false if none is held.
    fn release_oldest(&mut self, deliver: &mut impl FnMut(T)) -> bool {
        let oldest = self
            .origins
            .iter()
            .flat_map(|(&origin, o)| o.held.iter().map(move |(&seq, h)| (h.since, origin, seq)))
            .min_by_key(|&(since, _, _)| since);
        match oldest {
            Some((_, origin, seq)) => match self.origins.get_mut(&origin) {
                Some(o) => {
                    force(o, seq, deliver, &mut self.waiting);
                    true
                }
                None => false,
            },
            None => false,
        }
    }
}

/// Deliver held message `seq` now, wherever its copies are, and whatever
/// it was holding up.
fn force<T>(o: &mut Origin<T>, seq: u64, deliver: &mut impl FnMut(T), waiting: &mut Waiting<T>) {
    let Some(h) = o.held.remove(&seq) else { return };
    waiting.deliver(h.item, deliver);
    let mut touched = Vec::new();
    for (topic, queue) in o.queues.iter_mut() {
        let before = queue.len();
        queue.retain(|e| !matches!(e, Entry::Copy { seq: s, .. } if *s == seq));
        if queue.len() != before {
            waiting.count = waiting.count.saturating_sub(before - queue.len());
            touched.push(topic.clone());
        }
    }
    for topic in touched {
        pump(o, &topic, deliver, waiting);
    }
}

/// Deliver from the head of `topic`'s queue, and of any queue a delivery
/// unblocks, while they can go. Whether anything was delivered.
fn pump<T>(o: &mut Origin<T>, topic: &str, deliver: &mut impl FnMut(T), waiting: &mut Waiting<T>) -> bool {
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
                        waiting.deliver(item, deliver);
                        delivered = true;
                    }
                    continue;
                }
                Some(Entry::Copy { seq, counted }) => {
                    let seq = *seq;
                    let Some(h) = o.held.get_mut(&seq) else {
                        // Delivered already: a leftover copy.
                        queue.pop_front();
                        waiting.entry_gone();
                        continue;
                    };
                    if !*counted {
                        *counted = true;
                        h.waiting.remove(&topic);
                    }
                    if !h.waiting.is_empty() {
                        break;
                    }
                    seq
                }
            };
            // Every expected copy of it is at the head of its queue: out,
            // with its copies at the heads of other queues.
            if let Some(h) = o.held.remove(&ready_seq) {
                waiting.deliver(h.item, deliver);
                delivered = true;
            }
            for (other, queue) in o.queues.iter_mut() {
                if matches!(queue.front(), Some(Entry::Copy { seq, counted: true }) if *seq == ready_seq) {
                    queue.pop_front();
                    waiting.entry_gone();
                    if *other != topic {
                        work.push(other.clone());
                    }
                }
            }
        }
    }
    delivered
}
