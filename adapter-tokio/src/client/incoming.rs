//! The client's receive streams: every room merged, or one room.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use roomwire_core::channel::Channel;
use tokio::sync::mpsc;

use super::Received;
use super::driver::Command;

/// The messages the server sends to a [`Client`](super::Client), as a [`Stream`] of
/// [`Received`] `(room, message)` (or with [`recv`](Self::recv)). Ends when
/// the client is closed.
pub struct Incoming<C: Channel> {
    pub(super) rx: mpsc::Receiver<Received<C>>,
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
        self.rx.recv().await
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Option<Received<C>> {
        self.rx.try_recv().ok()
    }

    /// Poll for the next message (the [`Stream`] implementation).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Received<C>>> {
        self.rx.poll_recv(cx)
    }
}

/// The messages of one room, from [`Client::room_messages`](super::Client::room_messages): a [`Stream`]
/// of the channel's `In` messages (or [`recv`](Self::recv)).
pub struct RoomMessages<C: Channel> {
    pub(super) rx: mpsc::Receiver<C::In<'static>>,
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
        self.rx.recv().await
    }
}

impl<C: Channel> Stream for RoomMessages<C> {
    type Item = C::In<'static>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

impl<C: Channel> Stream for Incoming<C> {
    type Item = Received<C>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().rx.poll_recv(cx)
    }
}
