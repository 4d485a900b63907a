//! Waiting connections parked without a task of their own.
//!
//! A tokio task costs a connection its cell (256 bytes, aligned to 128)
//! for as long as the task lives, and a waiting connection's timer 112
//! more; most of a room server's connections wait most of the time. So a
//! connection that waits with nothing under way ends its task and parks
//! in its server's [`Lot`]: one slot (its state's pointer, its tracing
//! span, its deadline) and the waker that what it waits for (its socket,
//! its outbox, its own timer if it could not rest) was polled with. When
//! that waker is woken, or its deadline comes, it leaves its slot, and the lot's one task (which keeps every
//! deadline) runs it in a new task of its own (the lot's `resume`). See
//! BENCHMARKS.md, ninth pass.
//!
//! A connection parks in two steps, without a lock held while it polls:
//! it [reserves](Lot::reserve) a space, polls what it waits for with the
//! space's [`Ticket::waker`], and only then [parks](Ticket::park) its
//! state there. A wake that comes in between is kept in the space, and
//! the connection does not park but runs on in its task.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Wake, Waker};

use slab::Slab;
use tokio::runtime::{Handle, Id};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::Span;

/// What is parked: a connection's state and the span its task ran in.
pub(crate) struct Parked<T> {
    pub(crate) state: T,
    pub(crate) span: Span,
}

/// How a parked connection runs again: spawn its task on `handle`.
pub(crate) type Resume<T> = fn(&Handle, Parked<T>);

/// Where a server's waiting connections are parked, on one runtime.
pub(crate) struct Lot<T> {
    handle: Handle,
    runtime: Id,
    resume: Resume<T>,
    spaces: Mutex<Spaces<T>>,
    /// Wakes the lot's task: connections woken out of their spaces, a
    /// deadline earlier than the one it waits for, or the lot closed.
    timer: Notify,
}

/// A deadline in microseconds from the lot's origin: 8 bytes where an
/// `Instant` takes 16, in every slot and every entry of the deadlines.
type Ticks = u64;

/// The `due` of a space without a deadline.
const NEVER: Ticks = Ticks::MAX;

struct Spaces<T> {
    slots: Slab<Space<T>>,
    /// Parked connections' deadlines, earliest first. An entry stays when
    /// its connection leaves early, and is dropped when it comes to the top
    /// or the heap is purged ([`Spaces::purge`]): 16 bytes an entry, where
    /// a B-tree's half-full nodes took about 35 per parked connection.
    deadlines: BinaryHeap<Reverse<Deadline>>,
    /// Parked connections with a deadline: the live entries of `deadlines`.
    timed: usize,
    /// What deadlines are counted from.
    origin: Instant,
    /// Woken out of their spaces, to be resumed by the lot's task: never
    /// by the waker's caller, which may hold a lock the connection takes
    /// if its task is dropped at once (a runtime shutting down drops what
    /// is spawned on it).
    woken: Vec<Parked<T>>,
    /// Counts reservations: a slot's occupant is told from an earlier
    /// one's by it, whose wakers may still be held by a socket or an
    /// outbox.
    generation: u32,
    /// The lot's timer has stopped (its runtime shut down, or the server
    /// let go of the lot): nothing parks any more.
    closed: bool,
}

/// A parked connection's deadline: when, and which occupant of which slot
/// (its key, under 2³², checked as it is reserved). Live while that slot
/// holds that occupant.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Deadline {
    due: Ticks,
    key: u32,
    generation: u32,
}

/// Stale deadlines are purged once there are more than this many beyond
/// twice the live ones.
const STALE_SLACK: usize = 64;

enum Space<T> {
    /// A connection polls with the space's waker before it parks.
    /// `woken`: the waker was woken meanwhile, so it must not park.
    Reserved { generation: u32, woken: bool },
    /// Parked: its state, its span boxed (if it has one; without a
    /// tracing subscriber it has none), whether it has a deadline among
    /// the lot's (`timed`): 24 bytes, in every slot.
    Taken { generation: u32, timed: bool, state: T, span: Option<Box<Span>> },
}

impl<T> Spaces<T> {
    /// `at` in ticks, rounded up (a connection resumed at its deadline
    /// finds it passed): the origin at the earliest, just short of
    /// [`NEVER`] at the latest.
    fn ticks(&self, at: Instant) -> Ticks {
        clamped(at.saturating_duration_since(self.origin).as_nanos().div_ceil(1_000))
    }

    /// `now` in ticks, rounded down: what is due by then.
    fn ticks_past(&self, now: Instant) -> Ticks {
        clamped(now.saturating_duration_since(self.origin).as_micros())
    }

    /// `due` as an instant; past what the clock can hold, in 30 years.
    fn instant(&self, due: Ticks) -> Instant {
        const FAR: std::time::Duration = std::time::Duration::from_secs(30 * 365 * 86_400);
        self.origin.checked_add(std::time::Duration::from_micros(due)).unwrap_or(self.origin + FAR)
    }

    /// Empty the space at `key`; what was parked there, if anything (its
    /// deadline's entry, if it had one, is stale from now).
    fn take(&mut self, key: usize) -> Option<Parked<T>> {
        match self.slots.try_remove(key)? {
            Space::Reserved { .. } => None,
            Space::Taken { timed, state, span, .. } => {
                if timed {
                    self.timed = self.timed.saturating_sub(1);
                }
                Some(unboxed(state, span))
            }
        }
    }

    /// Whether `deadline`'s occupant is still parked in its slot.
    fn is_live(&self, deadline: &Deadline) -> bool {
        matches!(self.slots.get(deadline.key as usize),
            Some(Space::Taken { generation, .. }) if *generation == deadline.generation)
    }

    /// Empty every space whose deadline is `now` or earlier.
    fn take_due(&mut self, now: Instant) -> Vec<Parked<T>> {
        let now = self.ticks_past(now);
        let mut due = Vec::new();
        while let Some(&Reverse(deadline)) = self.deadlines.peek()
            && deadline.due <= now
        {
            self.deadlines.pop();
            if self.is_live(&deadline)
                && let Some(parked) = self.take(deadline.key as usize)
            {
                due.push(parked);
            }
        }
        due
    }

    /// The earliest live deadline (stale ones before it are dropped), and
    /// the heap's memory given back once it is mostly unused.
    fn next(&mut self) -> Option<Instant> {
        let capacity = self.deadlines.capacity();
        if capacity > STALE_SLACK && self.deadlines.len() < capacity / 4 {
            self.deadlines.shrink_to((self.deadlines.len() * 2).max(STALE_SLACK));
        }
        while let Some(&Reverse(deadline)) = self.deadlines.peek() {
            if self.is_live(&deadline) {
                return Some(self.instant(deadline.due));
            }
            self.deadlines.pop();
        }
        None
    }

    /// Drop the stale deadlines once they outnumber the live ones (plus
    /// [`STALE_SLACK`]): the heap stays within about twice the parked
    /// connections with a deadline (16 to 32 bytes each, with churn), at
    /// a cost linear in what is dropped.
    fn purge(&mut self) {
        if self.deadlines.len() > 2 * self.timed + STALE_SLACK {
            let mut deadlines = std::mem::take(&mut self.deadlines);
            deadlines.retain(|Reverse(deadline)| self.is_live(deadline));
            self.deadlines = deadlines;
        }
    }
}

/// Microseconds as ticks, just short of [`NEVER`] at the most.
fn clamped(micros: u128) -> Ticks {
    Ticks::try_from(micros).unwrap_or(NEVER).min(NEVER - 1)
}

fn unboxed<T>(state: T, span: Option<Box<Span>>) -> Parked<T> {
    Parked { state, span: span.map_or_else(Span::none, |span| *span) }
}

/// The server's hold on its lot: when it lets go, the lot's timer stops.
pub(crate) struct Owner<T>(Arc<Lot<T>>);

impl<T> Owner<T> {
    pub(crate) fn lot(&self) -> &Arc<Lot<T>> {
        &self.0
    }
}

impl<T> Drop for Owner<T> {
    fn drop(&mut self) {
        // Nothing is parked (a parked connection holds its server, which
        // holds this), but the lot is closed all the same.
        drop(self.0.close());
    }
}

impl<T> Lot<T> {
    fn lock(&self) -> MutexGuard<'_, Spaces<T>> {
        // Nothing panics under the lock but the allocator; what it guards
        // stays consistent at every step.
        crate::lock(&self.spaces)
    }

    /// Close the lot: nothing parks any more; what was parked, to be
    /// dropped by the caller (outside the lock).
    fn close(&self) -> Vec<Parked<T>> {
        let mut spaces = self.lock();
        spaces.closed = true;
        spaces.deadlines.clear();
        spaces.timed = 0;
        let woken = std::mem::take(&mut spaces.woken);
        let parked = spaces.slots.drain().filter_map(|space| match space {
            Space::Taken { state, span, .. } => Some(unboxed(state, span)),
            Space::Reserved { .. } => None,
        });
        let parked = woken.into_iter().chain(parked).collect();
        drop(spaces);
        self.timer.notify_one();
        parked
    }
}

impl<T: Send + 'static> Lot<T> {
    /// A lot on `handle`'s runtime, its timer started there. Connections
    /// leave it through `resume`.
    pub(crate) fn start(handle: Handle, resume: Resume<T>) -> Owner<T> {
        let spaces = Spaces {
            slots: Slab::new(),
            deadlines: BinaryHeap::new(),
            timed: 0,
            origin: Instant::now(),
            woken: Vec::new(),
            generation: 0,
            closed: false,
        };
        let lot = Arc::new(Lot {
            runtime: handle.id(),
            handle: handle.clone(),
            resume,
            spaces: Mutex::new(spaces),
            timer: Notify::new(),
        });
        drop(handle.spawn(keep_time(lot.clone())));
        Owner(lot)
    }

    /// A space for a connection about to park, unless the lot is closed or
    /// on another runtime than the current one (a connection is resumed on
    /// the runtime it ran on).
    pub(crate) fn reserve(self: &Arc<Self>) -> Option<Ticket<T>> {
        if Handle::try_current().ok()?.id() != self.runtime {
            return None;
        }
        let mut spaces = self.lock();
        if spaces.closed {
            return None;
        }
        spaces.generation = spaces.generation.wrapping_add(1);
        let generation = spaces.generation;
        let key = spaces.slots.insert(Space::Reserved { generation, woken: false });
        if u32::try_from(key).is_err() {
            // Four billion parked: its deadline could not be listed.
            spaces.slots.remove(key);
            return None;
        }
        drop(spaces);
        let waker = Waker::from(Arc::new(SpaceWaker { lot: self.clone(), key, generation }));
        Some(Ticket { lot: self.clone(), key, generation, waker })
    }

    /// How many connections are parked.
    #[cfg(test)]
    pub(crate) fn parked(&self) -> usize {
        self.lock().slots.iter().filter(|(_, space)| matches!(space, Space::Taken { .. })).count()
    }

    /// A waker of the space at `key` was woken.
    fn wake(&self, key: usize, generation: u32) {
        // One critical section: a lot closed meanwhile (by its task's
        // drop) would never resume what was pushed after.
        let mut spaces = self.lock();
        let parked = match spaces.slots.get_mut(key) {
            Some(Space::Reserved { generation: reserved, woken }) if *reserved == generation => {
                *woken = true;
                None
            }
            Some(Space::Taken { generation: taken, .. }) if *taken == generation => spaces.take(key),
            // A waker of an earlier occupant, or of one resumed already.
            _ => None,
        };
        let Some(parked) = parked else { return };
        spaces.woken.push(parked);
        let first = spaces.woken.len() == 1;
        drop(spaces);
        if first {
            self.timer.notify_one();
        }
    }
}

/// The lot's task: resumes parked connections that were woken, or whose
/// deadline has come. When its task is dropped (its runtime shutting down,
/// even before its first poll), the lot closes and what is parked there is
/// dropped, as the runtime drops its tasks.
fn keep_time<T: Send + 'static>(lot: Arc<Lot<T>>) -> impl Future<Output = ()> + Send {
    struct CloseOnDrop<T>(Arc<Lot<T>>);
    impl<T> Drop for CloseOnDrop<T> {
        fn drop(&mut self) {
            drop(self.0.close());
        }
    }
    // Made here, not in the async block: a future dropped unpolled drops
    // only what it captured.
    let lot = CloseOnDrop(lot);
    async move {
        let lot = lot;
        loop {
            let (due, next) = {
                let mut spaces = lot.0.lock();
                if spaces.closed {
                    return;
                }
                let mut due = std::mem::take(&mut spaces.woken);
                due.extend(spaces.take_due(Instant::now()));
                (due, spaces.next())
            };
            for parked in due {
                (lot.0.resume)(&lot.0.handle, parked);
            }
            match next {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = lot.0.timer.notified() => {}
                    }
                }
                None => lot.0.timer.notified().await,
            }
        }
    }
}

/// A space reserved in a [`Lot`]: poll what the connection waits for with
/// its [`waker`](Self::waker), then [`park`](Self::park). Dropped unparked,
/// the space is given back.
pub(crate) struct Ticket<T> {
    lot: Arc<Lot<T>>,
    key: usize,
    generation: u32,
    waker: Waker,
}

impl<T: Send + 'static> Ticket<T> {
    /// The waker to wait with: woken, it resumes the parked connection.
    pub(crate) fn waker(&self) -> &Waker {
        &self.waker
    }

    /// Park `parked` in the reserved space, to be resumed when the waker is
    /// woken or at `deadline`. Given back if the waker was woken since the
    /// reservation (it must run on) or the lot has closed.
    pub(crate) fn park(self, parked: Parked<T>, deadline: Option<Instant>) -> Result<(), Parked<T>> {
        let mut spaces = self.lot.lock();
        // Maybe stale, so maybe earlier than the earliest live one: then
        // the timer is not told, and finds this one when it wakes for that.
        let earliest = spaces.deadlines.peek().map(|Reverse(deadline)| deadline.due);
        let due = deadline.map_or(NEVER, |at| spaces.ticks(at));
        let Ok(key) = u32::try_from(self.key) else { return Err(parked) };
        let timed = due != NEVER;
        let Some(space) = spaces.slots.get_mut(self.key) else { return Err(parked) };
        match space {
            Space::Reserved { generation, woken: false } if *generation == self.generation => {
                let Parked { state, span } = parked;
                let span = (!span.is_none()).then(|| Box::new(span));
                *space = Space::Taken { generation: self.generation, timed, state, span };
            }
            _ => return Err(parked),
        }
        if timed {
            spaces.timed += 1;
            spaces.purge();
            spaces.deadlines.push(Reverse(Deadline { due, key, generation: self.generation }));
            drop(spaces);
            if earliest.is_none_or(|earliest| due < earliest) {
                self.lot.timer.notify_one();
            }
        }
        Ok(())
    }
}

impl<T> Drop for Ticket<T> {
    fn drop(&mut self) {
        let mut spaces = self.lot.lock();
        if let Some(&Space::Reserved { generation, .. }) = spaces.slots.get(self.key)
            && generation == self.generation
        {
            spaces.slots.remove(self.key);
        }
    }
}

/// The waker of one space: wakes its connection out of the lot.
struct SpaceWaker<T> {
    lot: Arc<Lot<T>>,
    key: usize,
    generation: u32,
}

impl<T: Send + 'static> Wake for SpaceWaker<T> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.lot.wake(self.key, self.generation);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// A parked value that counts its resumptions and drops.
    struct Counted {
        resumed: Arc<AtomicUsize>,
        dropped: Arc<AtomicUsize>,
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn resume(_: &Handle, parked: Parked<Counted>) {
        parked.state.resumed.fetch_add(1, Ordering::SeqCst);
    }

    fn counted() -> (Counted, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let (resumed, dropped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        (Counted { resumed: resumed.clone(), dropped: dropped.clone() }, resumed, dropped)
    }

    fn parked(state: Counted) -> Parked<Counted> {
        Parked { state, span: Span::none() }
    }

    /// A lot on the current runtime.
    fn new_lot() -> Owner<Counted> {
        Lot::start(Handle::current(), resume)
    }

    /// Park `state` in `lot` until `deadline`: the waker it waits with.
    fn park_in(lot: &Arc<Lot<Counted>>, state: Counted, deadline: Option<Instant>) -> Waker {
        let ticket = lot.reserve().unwrap();
        let waker = ticket.waker().clone();
        assert!(ticket.park(parked(state), deadline).is_ok());
        waker
    }

    /// Let the lot's task run.
    async fn lot_runs() {
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_wake_resumes_the_parked_once_and_a_stale_waker_does_nothing() {
        let owner = new_lot();
        let lot = owner.lot();
        let (state, resumed, _) = counted();
        let waker = park_in(lot, state, None);
        assert_eq!(lot.parked(), 1);
        waker.wake_by_ref();
        assert_eq!(lot.parked(), 0);
        // Resumed by the lot's task, never by the waker's caller (which may
        // hold a lock that the connection's drop would take).
        assert_eq!(resumed.load(Ordering::SeqCst), 0);
        lot_runs().await;
        assert_eq!(resumed.load(Ordering::SeqCst), 1);
        // The slot is taken again by another connection: the first one's
        // waker, still held somewhere, must not resume it.
        let (other, other_resumed, _) = counted();
        park_in(lot, other, None);
        waker.wake();
        lot_runs().await;
        assert_eq!(other_resumed.load(Ordering::SeqCst), 0);
        assert_eq!(lot.parked(), 1);
        assert_eq!(resumed.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn woken_before_it_parks_a_connection_runs_on() {
        let owner = new_lot();
        let lot = owner.lot();
        let (state, resumed, _) = counted();
        let ticket = lot.reserve().unwrap();
        ticket.waker().wake_by_ref();
        let back = ticket.park(parked(state), None);
        assert!(back.is_err(), "a wake before parking is not lost");
        assert_eq!(resumed.load(Ordering::SeqCst), 0);
        assert_eq!(lot.parked(), 0);
        assert_eq!(lot.lock().slots.len(), 0, "the reservation is given back");
    }

    #[tokio::test]
    async fn a_ticket_dropped_unparked_gives_its_space_back() {
        let owner = new_lot();
        let lot = owner.lot();
        let ticket = lot.reserve().unwrap();
        let waker = ticket.waker().clone();
        drop(ticket);
        assert_eq!(lot.lock().slots.len(), 0);
        waker.wake();
        assert_eq!(lot.lock().slots.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_lots_timer_resumes_each_at_its_deadline() {
        let owner = new_lot();
        let lot = owner.lot();
        let start = Instant::now();
        let (late, late_resumed, _) = counted();
        let (early, early_resumed, _) = counted();
        let (never, never_resumed, _) = counted();
        park_in(lot, late, Some(start + Duration::from_secs(30)));
        park_in(lot, never, None);
        // Earlier than the timer waits for: it is told.
        park_in(lot, early, Some(start + Duration::from_secs(10)));
        tokio::time::sleep(Duration::from_millis(9_999)).await;
        assert_eq!(early_resumed.load(Ordering::SeqCst), 0);
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(early_resumed.load(Ordering::SeqCst), 1);
        assert_eq!(late_resumed.load(Ordering::SeqCst), 0);
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(late_resumed.load(Ordering::SeqCst), 1);
        assert_eq!(never_resumed.load(Ordering::SeqCst), 0);
        assert_eq!(lot.parked(), 1);
        assert!(lot.lock().deadlines.is_empty());
        assert_eq!(lot.lock().timed, 0);
    }

    /// A deadline is kept rounded up and compared with the time rounded
    /// down: resumed at its deadline, a connection finds it passed.
    #[test]
    fn deadlines_round_up_and_the_time_down() {
        let origin = Instant::now();
        let spaces: Spaces<()> = Spaces {
            slots: Slab::new(),
            deadlines: BinaryHeap::new(),
            timed: 0,
            origin,
            woken: Vec::new(),
            generation: 0,
            closed: false,
        };
        let at = origin + Duration::from_nanos(1_500);
        assert_eq!((spaces.ticks(at), spaces.ticks_past(at)), (2, 1));
        assert!(spaces.instant(spaces.ticks(at)) >= at);
        assert_eq!(spaces.ticks(origin.checked_sub(Duration::from_secs(1)).unwrap_or(origin)), 0);
        // Past what ticks hold: the latest tick, which is a time the clock
        // can hold, far away.
        let far = origin.checked_add(Duration::from_secs(1 << 50)).unwrap();
        assert_eq!(spaces.ticks(far), NEVER - 1);
        assert!(spaces.instant(NEVER - 1) > origin + Duration::from_secs(20 * 365 * 86_400));
    }

    #[tokio::test(start_paused = true)]
    async fn woken_early_a_connections_deadline_goes_with_it() {
        let owner = new_lot();
        let lot = owner.lot();
        let (state, resumed, _) = counted();
        park_in(lot, state, Some(Instant::now() + Duration::from_secs(5))).wake();
        assert_eq!(lot.lock().timed, 0, "its deadline is stale");
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(resumed.load(Ordering::SeqCst), 1, "resumed once, not again at its deadline");
        assert!(lot.lock().deadlines.is_empty(), "the stale deadline is dropped when due");
    }

    /// Every parked connection holds a slot and a deadline's entry: each
    /// byte here is a byte per parked connection (BENCHMARKS, tenth pass).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_slot_and_a_deadline_stay_small() {
        assert!(std::mem::size_of::<Space<Box<crate::server::conn::Running>>>() <= 24);
        assert!(std::mem::size_of::<Reverse<Deadline>>() <= 16);
    }

    /// The stale deadline of a slot's earlier occupant does not resume the
    /// one parked there now, also when it comes due with a live one.
    #[tokio::test(start_paused = true)]
    async fn an_earlier_occupants_deadline_leaves_the_slot_alone() {
        let owner = new_lot();
        let lot = owner.lot();
        let start = Instant::now();
        let (live, live_resumed, _) = counted();
        park_in(lot, live, Some(start + Duration::from_secs(5)));
        let (first, _, _) = counted();
        park_in(lot, first, Some(start + Duration::from_secs(5))).wake();
        let (second, second_resumed, _) = counted();
        park_in(lot, second, None);
        assert_eq!(lot.lock().slots.len(), 2, "the woken one's slot is reused");
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(live_resumed.load(Ordering::SeqCst), 1);
        assert_eq!(second_resumed.load(Ordering::SeqCst), 0);
        assert_eq!(lot.parked(), 1);
    }

    /// Connections that park with a far deadline and are woken long before
    /// it leave stale deadlines: the heap stays within about twice the live
    /// ones, and the live ones still come due.
    #[tokio::test(start_paused = true)]
    async fn stale_deadlines_are_purged() {
        let owner = new_lot();
        let lot = owner.lot();
        let far = Instant::now() + Duration::from_secs(3600);
        let (kept, kept_resumed, _) = counted();
        park_in(lot, kept, Some(far));
        for _ in 0..1000 {
            let (state, _, _) = counted();
            park_in(lot, state, Some(far)).wake();
            lot_runs().await;
        }
        let (timed, stale) = {
            let spaces = lot.lock();
            (spaces.timed, spaces.deadlines.len())
        };
        assert_eq!(timed, 1);
        assert!(stale <= 2 * timed + STALE_SLACK + 1, "{stale} deadlines kept for one parked connection");
        tokio::time::sleep_until(far + Duration::from_millis(1)).await;
        lot_runs().await;
        assert_eq!(kept_resumed.load(Ordering::SeqCst), 1);
        assert!(lot.lock().deadlines.is_empty());
    }

    /// Once the connections with deadlines are gone, the heap gives its
    /// memory back.
    #[tokio::test(start_paused = true)]
    async fn the_deadlines_memory_is_given_back() {
        let owner = new_lot();
        let lot = owner.lot();
        let soon = Instant::now() + Duration::from_secs(1);
        for _ in 0..1000 {
            let (state, _, _) = counted();
            park_in(lot, state, Some(soon));
        }
        assert!(lot.lock().deadlines.capacity() >= 1000);
        tokio::time::sleep(Duration::from_secs(2)).await;
        lot_runs().await;
        assert_eq!(lot.parked(), 0);
        assert!(lot.lock().deadlines.capacity() <= STALE_SLACK);
    }

    /// When its runtime shuts down, the lot drops what is parked and what
    /// was woken but not yet resumed, whether its task ever ran
    /// (`started`) or was dropped before its first poll.
    fn shut_down_with(started: bool) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let (state, resumed, dropped) = counted();
        let (woken, woken_resumed, woken_dropped) = counted();
        let owner = runtime.block_on(async {
            let owner = new_lot();
            park_in(owner.lot(), state, None);
            if started {
                tokio::task::yield_now().await;
            }
            // Woken, not yet resumed when the runtime goes.
            park_in(owner.lot(), woken, None).wake();
            owner
        });
        drop(runtime);
        assert_eq!((dropped.load(Ordering::SeqCst), resumed.load(Ordering::SeqCst)), (1, 0));
        assert_eq!((woken_dropped.load(Ordering::SeqCst), woken_resumed.load(Ordering::SeqCst)), (1, 0));
        assert!(owner.lot().reserve().is_none(), "no runtime, no parking");
        let closed = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let _in_runtime = closed.enter();
        assert!(owner.lot().reserve().is_none(), "another runtime, no parking");
    }

    #[test]
    fn when_its_runtime_shuts_down_the_lot_drops_what_is_parked() {
        shut_down_with(true);
    }

    #[test]
    fn a_lot_whose_task_never_ran_drops_what_is_parked_with_its_runtime() {
        shut_down_with(false);
    }
}
