//! The client's receive streams: every room merged, or one room.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures_core::Stream;
use roomwire_core::channel::Channel;
use tokio::sync::{Notify, mpsc};

use super::Received;
use super::driver::Command;

/// The messages the server sends to a [`Client`](super::Client), as a [`Stream`] of
/// [`Received`] `(room, message)` (or with [`recv`](Self::recv)). Ends when
/// the client is closed.
pub struct Incoming<C: Channel> {
    pub(super) rx: mpsc::Receiver<Charged<Received<C>>>,
    /// Keeps the connection alive while the stream is.
    pub(super) _alive: mpsc::UnboundedSender<Command>,
}

impl<C: Channel> fmt::Debug for Incoming<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming").field("path", &C::PATH).field("waiting", &self.rx.len()).finish()
    }
}

// No field is structurally pinned.
impl<C: Channel> Unpin for Incoming<C> {}

impl<C: Channel> Incoming<C> {
    /// The next message; `None` once the client is closed. Cancel safe.
    pub async fn recv(&mut self) -> Option<Received<C>> {
        self.rx.recv().await.map(Charged::into_inner)
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Option<Received<C>> {
        self.rx.try_recv().ok().map(Charged::into_inner)
    }

    /// How many messages wait to be read.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether no message waits to be read.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Poll for the next message (the [`Stream`] implementation).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Received<C>>> {
        self.rx.poll_recv(cx).map(|item| item.map(Charged::into_inner))
    }
}

/// The messages of one room, from [`Client::room_messages`](super::Client::room_messages): a [`Stream`]
/// of the channel's `In` messages (or [`recv`](Self::recv)).
pub struct RoomMessages<C: Channel> {
    pub(super) rx: mpsc::Receiver<Charged<C::In<'static>>>,
    /// Keeps the connection alive while the stream is.
    pub(super) _alive: mpsc::UnboundedSender<Command>,
}

impl<C: Channel> fmt::Debug for RoomMessages<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomMessages").field("path", &C::PATH).field("waiting", &self.rx.len()).finish()
    }
}

impl<C: Channel> Unpin for RoomMessages<C> {}

impl<C: Channel> RoomMessages<C> {
    /// The next message of the room; `None` once the client is closed.
    /// Cancel safe.
    pub async fn recv(&mut self) -> Option<C::In<'static>> {
        self.rx.recv().await.map(Charged::into_inner)
    }
}

impl<C: Channel> Stream for RoomMessages<C> {
    type Item = C::In<'static>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().rx.poll_recv(cx).map(|item| item.map(Charged::into_inner))
    }
}

impl<C: Channel> Stream for Incoming<C> {
    type Item = Received<C>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

/// The bytes the received messages waiting in a client's streams arrived
/// as (after inflating), all streams together: past the bound the client
/// stops reading the socket, as it does when a stream is full. Counting
/// messages alone would let a server park `incoming_capacity` messages of
/// the largest size in every stream.
pub(crate) struct Held {
    bytes: AtomicUsize,
    limit: usize,
    /// Told when the bytes fall back under the limit.
    freed: Notify,
}

impl Held {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self { bytes: AtomicUsize::new(0), limit, freed: Notify::new() })
    }

    /// Whether the streams hold their limit or more: no message is taken
    /// from the socket until some are read. Under it, one more message of
    /// any size is taken, so a message larger than the limit still goes
    /// through, alone.
    pub(crate) fn is_full(&self) -> bool {
        self.bytes.load(Ordering::Acquire) >= self.limit
    }

    /// Waits until the held bytes fell under the limit since the last
    /// wait (or already had: a wakeup is kept until waited for).
    pub(crate) async fn freed(&self) {
        self.freed.notified().await;
    }

    /// `bytes` more are held until the [`Charge`] is dropped.
    pub(crate) fn charge(self: &Arc<Self>, bytes: usize) -> Charge {
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
        Charge { bytes, held: self.clone() }
    }
}

/// A waiting message's share of [`Held`], given back when the message
/// leaves its stream: read, or dropped with the stream.
pub(crate) struct Charge {
    bytes: usize,
    held: Arc<Held>,
}

impl Drop for Charge {
    fn drop(&mut self) {
        let before = self.held.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
        if before >= self.held.limit && before - self.bytes < self.held.limit {
            // `notify_one` keeps the wakeup for a driver not waiting yet.
            self.held.freed.notify_one();
        }
    }
}

/// A message in a stream, with its charge.
pub(crate) struct Charged<T> {
    item: T,
    _charge: Charge,
}

impl<T> Charged<T> {
    pub(crate) fn new(item: T, charge: Charge) -> Self {
        Self { item, _charge: charge }
    }

    fn into_inner(self) -> T {
        self.item
    }
}
