//! Optional whole-message reassembly into a caller-owned buffer.
//!
//! The connection hands out message payload as it arrives
//! ([`crate::Event::Data`]); most applications want whole messages. A
//! [`Reassembler`] collects the chunks of one message into storage the
//! caller chooses: a borrowed slice or array (fixed, nothing allocated), or
//! with the `alloc` feature a `Vec<u8>` that grows up to a limit.

use crate::decoder::MessageKind;

/// A complete message, borrowed from the reassembly buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assembled<'a> {
    /// A text message.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

/// The message does not fit the reassembly storage. Answer with 1009.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

/// Where a [`Reassembler`] keeps message bytes.
pub trait Storage {
    /// The bytes stored so far, `len` of them.
    fn bytes(&self, len: usize) -> &[u8];
    /// Store `data` at offset `at`, after `at` bytes already stored.
    fn store(&mut self, at: usize, data: &[u8]) -> Result<(), TooLarge>;
    /// A message ended: storage may release memory (a no-op for slices).
    fn reset(&mut self) {}
}

/// Any fixed buffer: `&mut [u8]`, `[u8; N]`, a boxed slice.
impl<B: AsRef<[u8]> + AsMut<[u8]>> Storage for B {
    fn bytes(&self, len: usize) -> &[u8] {
        self.as_ref().get(..len).unwrap_or(&[])
    }
    fn store(&mut self, at: usize, data: &[u8]) -> Result<(), TooLarge> {
        let end = at.checked_add(data.len()).ok_or(TooLarge)?;
        self.as_mut().get_mut(at..end).ok_or(TooLarge)?.copy_from_slice(data);
        Ok(())
    }
}

/// Growable storage with a byte limit (feature `alloc`). Shrinks back after
/// a message larger than `keep` bytes, so one big message does not pin
/// memory for the connection's life.
#[cfg(feature = "alloc")]
#[derive(Debug, Default, Clone)]
pub struct VecStorage {
    buf: alloc::vec::Vec<u8>,
    limit: usize,
    keep: usize,
}

#[cfg(feature = "alloc")]
impl VecStorage {
    /// Storage for messages up to `limit` bytes, keeping up to `keep` bytes
    /// of capacity between messages.
    pub fn new(limit: usize, keep: usize) -> Self {
        Self { buf: alloc::vec::Vec::new(), limit, keep }
    }
}

#[cfg(feature = "alloc")]
impl Storage for VecStorage {
    fn bytes(&self, len: usize) -> &[u8] {
        self.buf.get(..len).unwrap_or(&[])
    }
    fn store(&mut self, at: usize, data: &[u8]) -> Result<(), TooLarge> {
        let end = at.checked_add(data.len()).ok_or(TooLarge)?;
        if end > self.limit || at != self.buf.len() {
            return Err(TooLarge);
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }
    fn reset(&mut self) {
        self.buf.clear();
        if self.buf.capacity() > self.keep {
            self.buf.shrink_to(self.keep);
        }
    }
}

/// Collects [`crate::Event::Data`] chunks into whole messages.
///
/// ```
/// use roomwire_core::message::{Assembled, Reassembler};
/// use roomwire_core::MessageKind;
/// let mut r = Reassembler::new([0u8; 16]);
/// assert_eq!(r.push(MessageKind::Text, b"he", true, false), Ok(None));
/// assert_eq!(r.push(MessageKind::Text, b"llo", false, true), Ok(Some(Assembled::Text("hello"))));
/// // Too big for the storage.
/// assert!(r.push(MessageKind::Binary, &[0; 17], true, true).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct Reassembler<S> {
    storage: S,
    len: usize,
    kind: Option<MessageKind>,
    /// The previous message must be released before the next one starts.
    finished: bool,
}

impl<S: Storage> Reassembler<S> {
    /// A reassembler over `storage`.
    pub fn new(storage: S) -> Self {
        Self { storage, len: 0, kind: None, finished: false }
    }

    /// Add the next chunk of a message (the fields of
    /// [`crate::Event::Data`]). Returns the message when `message_end`.
    pub fn push(
        &mut self,
        kind: MessageKind,
        payload: &[u8],
        message_start: bool,
        message_end: bool,
    ) -> Result<Option<Assembled<'_>>, TooLarge> {
        if message_start || self.finished {
            self.len = 0;
            self.finished = false;
            self.storage.reset();
            self.kind = Some(kind);
        }
        let kind = self.kind.unwrap_or(kind);
        if let Err(e) = self.storage.store(self.len, payload) {
            self.len = 0;
            self.kind = None;
            self.storage.reset();
            return Err(e);
        }
        self.len += payload.len();
        if !message_end {
            return Ok(None);
        }
        self.finished = true;
        self.kind = None;
        let bytes = self.storage.bytes(self.len);
        Ok(Some(match kind {
            MessageKind::Binary => Assembled::Binary(bytes),
            // The decoder validated the text; a caller feeding unvalidated
            // bytes gets the error instead of a wrong `str`.
            MessageKind::Text => Assembled::Text(core::str::from_utf8(bytes).map_err(|_| TooLarge)?),
        }))
    }

    /// Bytes of the message in progress.
    pub fn pending_len(&self) -> usize {
        if self.finished { 0 } else { self.len }
    }
}

#[cfg(feature = "alloc")]
impl Reassembler<VecStorage> {
    /// Take the bytes of the message [`Reassembler::push`] just completed,
    /// without copying them (`None` if no message is complete). The next
    /// message starts in a fresh buffer.
    ///
    /// ```
    /// use roomwire_core::message::{Reassembler, VecStorage};
    /// use roomwire_core::MessageKind;
    /// let mut r = Reassembler::new(VecStorage::new(1024, 0));
    /// r.push(MessageKind::Binary, b"ab", true, false).unwrap();
    /// assert_eq!(r.take_finished(), None);
    /// r.push(MessageKind::Binary, b"c", false, true).unwrap();
    /// assert_eq!(r.take_finished(), Some(b"abc".to_vec()));
    /// ```
    pub fn take_finished(&mut self) -> Option<alloc::vec::Vec<u8>> {
        if !self.finished {
            return None;
        }
        self.finished = false;
        self.len = 0;
        Some(core::mem::take(&mut self.storage.buf))
    }
}
