//! Optional whole-message reassembly into a caller-owned buffer.
//!
//! The connection hands out message payload as it arrives
//! ([`crate::Event::Data`]); most applications want whole messages. A
//! [`Reassembler`] collects the chunks of one message into storage the
//! caller chooses: a borrowed slice or array (fixed, nothing allocated), or
//! with the `alloc` feature a `Vec<u8>` that grows up to a limit.
//!
//! A [`MessageReader`] puts the two together: every adapter reads whole
//! messages through it, so what happens to a message that does not fit its
//! storage (close 1009) is decided here, once.

use crate::close::CloseCode;
use crate::connection::{Connection, Control, Event, MaskKeySource, Step};
use crate::decoder::MessageKind;
use crate::deflate::Inflate;
#[cfg(feature = "deflate")]
use crate::deflate::{INFLATE_FAILED, InflateError, TAIL};
use crate::error::ProtocolError;
use crate::time::Instant;

/// A complete message, borrowed from the reassembly buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assembled<'a> {
    /// A text message.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Assembled<'a> {
    /// The message's bytes (a text message's UTF-8).
    pub fn bytes(&self) -> &'a [u8] {
        match self {
            Assembled::Text(text) => text.as_bytes(),
            Assembled::Binary(bytes) => bytes,
        }
    }
}

/// The message does not fit the reassembly storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

/// The close for a message larger than the reader's storage.
pub const TOO_BIG: ProtocolError = ProtocolError::new(CloseCode::MessageTooBig, "message too big");

/// The close for a compressed message read without an inflater (the
/// adapter negotiated permessage-deflate and then read with
/// [`MessageReader::read`]): a bug of the adapter, not of the peer.
pub const NO_INFLATER: ProtocolError = ProtocolError::new(CloseCode::Error, "compressed message with no inflater");

/// The close for text that is not UTF-8 (the decoder refuses it first; a
/// caller feeding the reassembler unvalidated bytes gets this).
pub const NOT_UTF8: ProtocolError = ProtocolError::new(CloseCode::Invalid, "text message is not UTF-8");

/// Where a [`Reassembler`] keeps message bytes.
pub trait Storage {
    /// The bytes stored so far, `len` of them.
    fn bytes(&self, len: usize) -> &[u8];
    /// Store `data` at offset `at`, after `at` bytes already stored.
    fn store(&mut self, at: usize, data: &[u8]) -> Result<(), TooLarge>;
    /// A message ended: storage may release memory (a no-op for slices).
    fn reset(&mut self) {}
    /// The largest message it can hold.
    fn limit(&self) -> usize;
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
    fn limit(&self) -> usize {
        self.as_ref().len()
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

    /// The bytes it holds allocated now.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
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
    fn limit(&self) -> usize {
        self.limit
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
/// assert_eq!(r.push(MessageKind::Binary, &[0; 17], true, true), Err(roomwire_core::message::TOO_BIG));
/// ```
#[derive(Debug, Clone)]
pub struct Reassembler<S> {
    storage: S,
    len: usize,
    kind: Option<MessageKind>,
    /// The previous message must be released before the next one starts;
    /// `kind` is then its kind.
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
    ) -> Result<Option<Assembled<'_>>, ProtocolError> {
        if message_start || self.finished {
            self.len = 0;
            self.finished = false;
            self.storage.reset();
            self.kind = Some(kind);
        }
        let kind = self.kind.unwrap_or(kind);
        if self.storage.store(self.len, payload).is_err() {
            self.len = 0;
            self.kind = None;
            self.storage.reset();
            return Err(TOO_BIG);
        }
        self.len += payload.len();
        if !message_end {
            return Ok(None);
        }
        self.finished = true;
        self.kind = Some(kind);
        assembled(kind, self.storage.bytes(self.len)).map(Some)
    }

    /// Bytes of the message in progress.
    pub fn pending_len(&self) -> usize {
        if self.finished { 0 } else { self.len }
    }

    /// The message the last [`Reassembler::push`] completed, until the
    /// next one starts.
    pub fn finished(&self) -> Option<Assembled<'_>> {
        if !self.finished {
            return None;
        }
        assembled(self.kind?, self.storage.bytes(self.len)).ok()
    }

    /// Drop the message in progress or finished.
    pub fn reset(&mut self) {
        self.len = 0;
        self.kind = None;
        self.finished = false;
        self.storage.reset();
    }
}

/// What [`MessageReader::read`] found in the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A whole message.
    Message(Assembled<'a>),
    /// Any other connection event ([`Event::Data`] never appears here). A
    /// message too big for the reader's storage is
    /// [`Event::ProtocolError`] with [`TOO_BIG`], the close already queued.
    Event(Event<'a>),
}

/// What [`MessageReader::read`] did with its input.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub struct Read<'a> {
    /// Bytes of the input used; drop them from the front of the buffer.
    pub consumed: usize,
    /// What the bytes completed, if anything. `None` with `consumed == 0`:
    /// read more bytes.
    pub incoming: Option<Incoming<'a>>,
}

/// One step of [`MessageReader::step`].
pub(crate) enum ReadStep<'a> {
    /// A whole message, from the input or the reader's storage.
    Message(Assembled<'a>),
    /// A control frame; its event borrows the connection.
    Control(Control),
    /// Any other event, borrowing the input.
    Event(Event<'a>),
}

/// Reads whole messages from a [`Connection`], reassembling fragmented
/// ones into its storage. A message that arrives in one frame (the common
/// case) is handed out straight from the input, never copied.
///
/// A message larger than the storage fails the connection with close 1009
/// ([`TOO_BIG`]), the same as one over [`crate::Config::max_message_size`].
///
/// ```
/// use roomwire_core::message::{Assembled, Incoming, MessageReader};
/// use roomwire_core::{Config, Connection, Event, Instant};
///
/// let now = Instant::ZERO;
/// let mut server = Connection::server(Config::default(), now);
/// # let mut req = *b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
/// # let _ = server.handle_input(now, &mut req);
/// # server.accept(now, None, &[], &mut [0; 256]).unwrap();
/// let mut reader = MessageReader::new([0u8; 64]);
/// // "hel" then "lo", masked with a zero key, in two frames.
/// let mut input = *b"\x01\x83\0\0\0\0hel\x80\x82\0\0\0\0lo";
/// let first = reader.read(&mut server, now, &mut input);
/// assert_eq!((first.consumed, first.incoming), (9, None));
/// let second = reader.read(&mut server, now, &mut input[9..]);
/// assert_eq!(second.incoming, Some(Incoming::Message(Assembled::Text("hello"))));
///
/// // A message larger than the storage: close 1009.
/// let mut big = [0; 108];
/// big[..4].copy_from_slice(&[0x82, 0xFE, 0, 100]);
/// let got = reader.read(&mut server, now, &mut big);
/// assert!(matches!(got.incoming, Some(Incoming::Event(Event::ProtocolError(e))) if u16::from(e.code) == 1009));
/// ```
#[derive(Debug, Clone)]
pub struct MessageReader<S> {
    reassembler: Reassembler<S>,
    /// Every message goes through the storage, also one-frame ones.
    copy_all: bool,
}

impl<S: Storage> MessageReader<S> {
    /// A reader reassembling into `storage`.
    pub fn new(storage: S) -> Self {
        Self { reassembler: Reassembler::new(storage), copy_all: false }
    }

    /// A reader that copies every message into `storage`, also one that
    /// came in one frame, so that it outlives the input buffer: read it
    /// again with [`MessageReader::last_message`] after the input is
    /// compacted (what a loop that cannot hold the borrow needs).
    pub fn copying(storage: S) -> Self {
        Self { reassembler: Reassembler::new(storage), copy_all: true }
    }

    /// The message the last [`MessageReader::read`] completed, if the
    /// storage holds it (always for [`MessageReader::copying`]), until the
    /// next call of [`MessageReader::read`] (which gives its room back) or
    /// [`MessageReader::reset`].
    pub fn last_message(&self) -> Option<Assembled<'_>> {
        self.reassembler.finished()
    }

    /// Forget any message in progress (a new connection starts).
    pub fn reset(&mut self) {
        self.reassembler.reset();
    }

    /// The storage, e.g. as scratch space between connections (call
    /// [`MessageReader::reset`] before reading again).
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.reassembler.storage
    }

    /// The storage, as [`MessageReader::storage_mut`] lends it.
    pub fn storage(&self) -> &S {
        &self.reassembler.storage
    }

    /// Bytes of a fragmented message received so far.
    pub fn pending_len(&self) -> usize {
        self.reassembler.pending_len()
    }

    /// Feed `input` (bytes read from the peer) to `conn`, as
    /// [`Connection::handle_input`] does, and report whole messages
    /// instead of their chunks. Call again while it returns something.
    pub fn read<'a, K: MaskKeySource>(
        &'a mut self,
        conn: &'a mut Connection<K>,
        now: Instant,
        input: &'a mut [u8],
    ) -> Read<'a> {
        let (consumed, step) = self.step(conn, now, input, None);
        let incoming = step.map(|step| match step {
            ReadStep::Message(message) => Incoming::Message(message),
            ReadStep::Control(control) => Incoming::Event(conn.control_event(control)),
            ReadStep::Event(event) => Incoming::Event(event),
        });
        Read { consumed, incoming }
    }

    /// [`MessageReader::read`] on a connection that may receive compressed
    /// messages (permessage-deflate, feature `deflate`): they go through
    /// `inflater` into the storage, under its limit (see [`crate::deflate`]).
    #[cfg(feature = "deflate")]
    pub fn read_inflating<'a, K: MaskKeySource>(
        &'a mut self,
        conn: &'a mut Connection<K>,
        now: Instant,
        input: &'a mut [u8],
        inflater: &mut dyn Inflate,
    ) -> Read<'a> {
        let (consumed, step) = self.step(conn, now, input, Some(inflater));
        let incoming = step.map(|step| match step {
            ReadStep::Message(message) => Incoming::Message(message),
            ReadStep::Control(control) => Incoming::Event(conn.control_event(control)),
            ReadStep::Event(event) => Incoming::Event(event),
        });
        Read { consumed, incoming }
    }

    /// [`MessageReader::read`], with control frames left for
    /// [`Connection::control_event`]: what it returns borrows the input
    /// and the reader only, so the caller can still act on the connection
    /// (close it) while it holds a message.
    #[inline]
    pub(crate) fn step<'a, K: MaskKeySource>(
        &'a mut self,
        conn: &mut Connection<K>,
        now: Instant,
        input: &'a mut [u8],
        inflater: Option<&mut dyn Inflate>,
    ) -> (usize, Option<ReadStep<'a>>) {
        if self.reassembler.finished {
            // The last reassembled message has been handed out: give its
            // room back now (a growable storage shrinks to what it keeps),
            // not when the next fragmented message starts, which may be
            // never.
            self.reassembler.reset();
        }
        #[cfg(not(feature = "deflate"))]
        let _ = inflater;
        let (consumed, step) = conn.read_step(now, input);
        let step = match step {
            None => None,
            Some(Step::Control(control)) => Some(ReadStep::Control(control)),
            // Only a connection with permessage-deflate reports compressed data.
            #[cfg(feature = "deflate")]
            Some(Step::Event(Event::Data { kind, payload, message_start, message_end, compressed: true })) => {
                let reset = conn.deflate().is_some_and(|agreed| agreed.receive_no_context_takeover);
                let inflated = match inflater {
                    Some(inflater) => self.inflate(inflater, kind, payload, message_start, message_end, reset),
                    None => Err(NO_INFLATER),
                };
                match inflated {
                    Ok(None) => None,
                    Ok(Some(message)) => Some(ReadStep::Message(message)),
                    Err(error) => Some(ReadStep::Event(fail(conn, now, error))),
                }
            }
            Some(Step::Event(Event::Data { kind, payload, message_start: true, message_end: true, .. }))
                if self.reassembler.pending_len() == 0 && !self.copy_all =>
            {
                // The same limit as a reassembled message, however it came.
                let whole = if payload.len() > self.reassembler.storage.limit() {
                    Err(TOO_BIG)
                } else {
                    assembled(kind, payload)
                };
                match whole {
                    Ok(message) => Some(ReadStep::Message(message)),
                    Err(error) => Some(ReadStep::Event(fail(conn, now, error))),
                }
            }
            Some(Step::Event(Event::Data { kind, payload, message_start, message_end, .. })) => {
                match self.reassembler.push(kind, payload, message_start, message_end) {
                    Ok(None) => None,
                    Ok(Some(message)) => Some(ReadStep::Message(message)),
                    Err(error) => Some(ReadStep::Event(fail(conn, now, error))),
                }
            }
            Some(Step::Event(event)) => Some(ReadStep::Event(event)),
        };
        (consumed, step)
    }

    /// Inflate the next compressed bytes of a message into the storage;
    /// the message once `end`.
    #[cfg(feature = "deflate")]
    fn inflate(
        &mut self,
        inflater: &mut dyn Inflate,
        kind: MessageKind,
        payload: &[u8],
        start: bool,
        end: bool,
        reset: bool,
    ) -> Result<Option<Assembled<'_>>, ProtocolError> {
        if start {
            self.reassembler.push(kind, &[], true, false)?;
        }
        let reassembler = &mut self.reassembler;
        let mut sink = |piece: &[u8]| reassembler.push(kind, piece, false, false).map(|_| ()).map_err(|_| TooLarge);
        let mut inflated = inflater.inflate(payload, &mut sink);
        if end && inflated.is_ok() {
            inflated = inflater.inflate(&TAIL, &mut sink);
        }
        if end && reset {
            // The peer starts its next message with an empty window.
            inflater.reset();
        }
        if end || inflated.is_err() {
            inflater.message_done();
        }
        match inflated {
            Ok(()) if end => self.reassembler.push(kind, &[], false, true),
            Ok(()) => Ok(None),
            Err(InflateError::TooLarge) => Err(TOO_BIG),
            Err(InflateError::Corrupt) => {
                self.reassembler.reset();
                Err(INFLATE_FAILED)
            }
        }
    }

    /// The storage, e.g. to reuse it for another connection.
    pub fn into_storage(self) -> S {
        self.reassembler.storage
    }
}

/// A whole message of `kind`. The decoder validated the text; a caller
/// feeding unvalidated bytes gets [`NOT_UTF8`] instead of a wrong `str`.
fn assembled(kind: MessageKind, bytes: &[u8]) -> Result<Assembled<'_>, ProtocolError> {
    match kind {
        MessageKind::Binary => Ok(Assembled::Binary(bytes)),
        MessageKind::Text => core::str::from_utf8(bytes).map(Assembled::Text).map_err(|_| NOT_UTF8),
    }
}

fn fail<'a, K: MaskKeySource>(conn: &mut Connection<K>, now: Instant, error: ProtocolError) -> Event<'a> {
    conn.fail(now, error);
    Event::ProtocolError(error)
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
        self.kind = None;
        Some(core::mem::take(&mut self.storage.buf))
    }
}

/// Working memory for decoding a message, sized by what it decodes: a
/// fixed slice is used as it is (a message it cannot hold fails to decode
/// with [`ClientError::Scratch`](crate::client::ClientError::Scratch)); a
/// `Vec` (feature `alloc`) grows to the message's length.
pub trait Scratch {
    /// At least `len` bytes if this scratch can grow, else all it has.
    fn space(&mut self, len: usize) -> &mut [u8];
}

impl Scratch for [u8] {
    fn space(&mut self, _len: usize) -> &mut [u8] {
        self
    }
}

#[cfg(feature = "alloc")]
impl Scratch for alloc::vec::Vec<u8> {
    fn space(&mut self, len: usize) -> &mut [u8] {
        if self.len() < len {
            self.resize(len, 0);
        }
        self
    }
}
