//! The streaming frame decoder.
//!
//! [`FrameDecoder`] turns a byte stream into payload chunks without holding
//! a payload buffer: each chunk is a slice of the caller's input, unmasked
//! in place. Its whole state is a partially received header (at most 14
//! bytes), the remaining length and mask phase of the current frame, the
//! message in progress (type, length, fragment count) and a 3-byte UTF-8
//! state, so an idle connection costs a few dozen bytes.
//!
//! Every RFC 6455 rule that can be judged from the frame stream alone is
//! enforced here, each with its close code (§7.4.1):
//!
//! | violation | code |
//! |---|---|
//! | RSV bit set, other than RSV1 on a message's first frame with permessage-deflate | 1002 |
//! | reserved opcode | 1002 |
//! | control frame fragmented or over 125 bytes | 1002 |
//! | unmasked frame to a server, masked frame to a client (§5.1) | 1002 |
//! | continuation with no message started | 1002 |
//! | text/binary frame inside an unfinished message | 1002 |
//! | 64-bit length with the high bit set | 1002 |
//! | text that is not UTF-8, detected at the first bad byte | 1007 |
//! | message over the configured size, or too many fragments | 1009 |
//!
//! After a violation the decoder is spent: it consumes and ignores all
//! further input.

use crate::close::CloseCode;
use crate::error::ProtocolError;
use crate::frame::{FrameHeader, HeaderError, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, Opcode, apply_mask};
use crate::utf8::Utf8Validator;

/// Which side of the connection this decoder reads for. A server reads
/// client frames, which must be masked; a client reads server frames, which
/// must not be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Accepts connections; reads masked frames, writes unmasked ones.
    Server,
    /// Opens connections; reads unmasked frames, writes masked ones.
    Client,
}

/// The type of a data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// UTF-8 text (opcode 0x1).
    Text,
    /// Arbitrary bytes (opcode 0x2).
    Binary,
}

impl MessageKind {
    /// The opcode of a message's first frame.
    pub const fn opcode(self) -> Opcode {
        match self {
            MessageKind::Text => Opcode::Text,
            MessageKind::Binary => Opcode::Binary,
        }
    }
}

/// Size limits the decoder enforces, answered with 1009 when exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderLimits {
    /// Largest message (sum of its frames' payloads), in bytes.
    pub max_message_size: u64,
    /// Most frames one message may be split into.
    pub max_fragments: u32,
}

impl Default for DecoderLimits {
    /// 1 MiB messages (as Alepha) in at most 4096 frames.
    fn default() -> Self {
        Self { max_message_size: 1 << 20, max_fragments: 4096 }
    }
}

/// A piece of the stream, borrowed from the caller's input.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// Payload bytes of a text or binary message, unmasked. For text, every
    /// byte so far is a valid UTF-8 prefix (a character may be cut at the
    /// chunk's end; the message as a whole is valid when `message_end`).
    Data {
        /// Text or binary.
        kind: MessageKind,
        /// The bytes, possibly empty (an empty frame still reports its end).
        payload: &'a [u8],
        /// This chunk starts the message.
        message_start: bool,
        /// This chunk ends the message.
        message_end: bool,
        /// The message is compressed (permessage-deflate, RSV1): `payload`
        /// is deflate data, not yet checked as UTF-8.
        compressed: bool,
    },
    /// Payload bytes of a control frame, unmasked. A control payload may
    /// arrive in several chunks; it is complete when `frame_end`.
    Control {
        /// [`Opcode::Close`], [`Opcode::Ping`] or [`Opcode::Pong`].
        opcode: Opcode,
        /// The bytes, possibly empty.
        payload: &'a [u8],
        /// This chunk starts the frame.
        frame_start: bool,
        /// This chunk ends the frame.
        frame_end: bool,
    },
    /// The stream broke a rule; the connection must be failed with this
    /// code. The decoder ignores everything after it.
    Violation(ProtocolError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Header,
    Payload { remaining: u64, mask: Option<[u8; 4]>, phase: u8, opcode: Opcode, fin: bool, start: bool },
    Failed,
}

/// Incremental RFC 6455 frame decoder. See the [module docs](self).
///
/// ```
/// use roomwire_core::decoder::{Decoded, FrameDecoder, MessageKind, Role};
/// let mut dec = FrameDecoder::new(Role::Server, Default::default());
/// let mut wire = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// let (used, out) = dec.decode(&mut wire[..4]); // a partial header
/// assert_eq!((used, out), (4, None));
/// let (_, out) = dec.decode(&mut wire[4..]);
/// assert_eq!(out, Some(Decoded::Data {
///     kind: MessageKind::Text, payload: b"Hello", message_start: true, message_end: true, compressed: false,
/// }));
/// ```
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    role: Role,
    limits: DecoderLimits,
    header: [u8; MAX_HEADER_LEN],
    header_len: u8,
    stage: Stage,
    message: Option<MessageKind>,
    message_len: u64,
    fragments: u32,
    utf8: Utf8Validator,
    /// permessage-deflate is negotiated: RSV1 may mark a message compressed.
    deflate: bool,
    /// The message in progress is compressed.
    compressed: bool,
}

impl FrameDecoder {
    /// A decoder at the start of a stream.
    pub const fn new(role: Role, limits: DecoderLimits) -> Self {
        Self {
            role,
            limits,
            header: [0; MAX_HEADER_LEN],
            header_len: 0,
            stage: Stage::Header,
            message: None,
            message_len: 0,
            fragments: 0,
            utf8: Utf8Validator::new(),
            deflate: false,
            compressed: false,
        }
    }

    /// Accept RSV1 on a message's first frame as "compressed"
    /// (permessage-deflate was negotiated, RFC 7692 §6).
    pub fn allow_compressed(&mut self, allow: bool) {
        self.deflate = allow;
    }

    /// Whether a violation has been reported.
    pub fn is_failed(&self) -> bool {
        self.stage == Stage::Failed
    }

    /// Whether the decoder sits between frames with nothing buffered.
    pub fn is_idle(&self) -> bool {
        self.stage == Stage::Header && self.header_len == 0
    }

    /// Whether the decoder is between messages: between frames, and no
    /// fragmented message begun.
    pub fn is_between_messages(&self) -> bool {
        self.is_idle() && self.message.is_none()
    }

    /// Decode from `input`, unmasking payload in place.
    ///
    /// Returns how many bytes of `input` were consumed and at most one
    /// decoded piece. `(n, None)` means all of `input` was consumed
    /// (`n == input.len()`) and more is needed; otherwise call again with
    /// `&mut input[n..]` after handling the piece. Never panics.
    #[inline]
    pub fn decode<'a>(&mut self, input: &'a mut [u8]) -> (usize, Option<Decoded<'a>>) {
        let mut consumed = 0;
        if self.stage == Stage::Header {
            let (used, header) = self.take_header(input);
            consumed = used;
            let header = match header {
                None => return (consumed, None),
                Some(Ok(header)) => header,
                Some(Err(violation)) => return (consumed, Some(self.fail(violation))),
            };
            if let Err(violation) = self.accept_header(&header) {
                return (consumed, Some(self.fail(violation)));
            }
        }
        let Stage::Payload { remaining, mask, phase, opcode, fin, start } = self.stage else {
            // Failed: swallow everything.
            return (input.len(), None);
        };
        let input = match input.get_mut(consumed..) {
            Some(rest) => rest,
            None => &mut [],
        };
        let available = u64::try_from(input.len()).unwrap_or(u64::MAX);
        let take = remaining.min(available);
        // `take <= input.len()`, so the conversion and split cannot fail.
        let take_usize = usize::try_from(take).unwrap_or(input.len());
        if take == 0 && remaining != 0 {
            return (consumed, None);
        }
        let (payload, _) = input.split_at_mut(take_usize.min(input.len()));
        consumed += payload.len();
        let phase = match mask {
            Some(key) => apply_mask(payload, key, usize::from(phase)) as u8,
            None => phase,
        };
        let remaining = remaining - take;
        let frame_end = remaining == 0;
        self.stage = if frame_end {
            Stage::Header
        } else {
            Stage::Payload { remaining, mask, phase, opcode, fin, start: false }
        };
        if opcode.is_control() {
            return (consumed, Some(Decoded::Control { opcode, payload, frame_start: start, frame_end }));
        }
        let Some(kind) = self.message else {
            return (consumed, Some(self.fail(ProtocolError::new(CloseCode::Error, "decoder state"))));
        };
        let compressed = self.compressed;
        // Compressed text is checked once inflated.
        if kind == MessageKind::Text && !compressed && self.utf8.feed(payload).is_err() {
            return (
                consumed,
                Some(self.fail(ProtocolError::new(CloseCode::Invalid, "invalid UTF-8 in text message"))),
            );
        }
        let message_end = frame_end && fin;
        let message_start = start && opcode != Opcode::Continuation;
        if message_end {
            if kind == MessageKind::Text && !compressed && !self.utf8.is_complete() {
                return (
                    consumed,
                    Some(self.fail(ProtocolError::new(CloseCode::Invalid, "text message ends inside a character"))),
                );
            }
            self.message = None;
        }
        (consumed, Some(Decoded::Data { kind, payload, message_start, message_end, compressed }))
    }

    /// Move header bytes from `input` into the header buffer until a whole
    /// header is there. Returns the bytes consumed and the header, if done.
    fn take_header(&mut self, input: &[u8]) -> (usize, Option<Result<FrameHeader, ProtocolError>>) {
        // Fast path: a whole header at the start of the input is parsed in
        // place. Only headers split across reads go through the buffer.
        if self.header_len == 0
            && let Ok(Some((header, len))) = FrameHeader::parse(input)
        {
            return (len, Some(Ok(header)));
        }
        let mut consumed = 0;
        loop {
            let have = usize::from(self.header_len);
            let buffered = self.header.get(..have).unwrap_or(&[]);
            let need = FrameHeader::needed(buffered).unwrap_or(2);
            if have >= need {
                return match FrameHeader::parse(buffered) {
                    Ok(Some((header, _))) => {
                        self.header_len = 0;
                        (consumed, Some(Ok(header)))
                    }
                    Ok(None) => (consumed, Some(Err(ProtocolError::new(CloseCode::Error, "decoder state")))),
                    Err(HeaderError::LengthHighBitSet) => (
                        consumed,
                        Some(Err(ProtocolError::new(CloseCode::Protocol, "64-bit length with high bit set"))),
                    ),
                };
            }
            let rest = input.get(consumed..).unwrap_or(&[]);
            if rest.is_empty() {
                return (consumed, None);
            }
            let n = (need - have).min(rest.len());
            if let (Some(dst), Some(src)) = (self.header.get_mut(have..have + n), rest.get(..n)) {
                dst.copy_from_slice(src);
            }
            self.header_len += n as u8;
            consumed += n;
        }
    }

    /// Judge a complete header against the connection's state.
    fn accept_header(&mut self, h: &FrameHeader) -> Result<(), ProtocolError> {
        use CloseCode::{MessageTooBig, Protocol};
        // RSV1 marks a compressed message, on its first frame only (RFC 7692 §6).
        let rsv1 = h.rsv == 0b100 && self.deflate && matches!(h.opcode, Opcode::Text | Opcode::Binary);
        if h.rsv != 0 && !rsv1 {
            return Err(ProtocolError::new(Protocol, "RSV bits set without a negotiated extension"));
        }
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::new(Protocol, "unmasked frame from client")),
            (Role::Client, true) => return Err(ProtocolError::new(Protocol, "masked frame from server")),
            _ => {}
        }
        match h.opcode {
            Opcode::Unknown(_) => return Err(ProtocolError::new(Protocol, "reserved opcode")),
            Opcode::Close | Opcode::Ping | Opcode::Pong => {
                if !h.fin {
                    return Err(ProtocolError::new(Protocol, "fragmented control frame"));
                }
                if h.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                    return Err(ProtocolError::new(Protocol, "control frame over 125 bytes"));
                }
            }
            Opcode::Continuation => {
                if self.message.is_none() {
                    return Err(ProtocolError::new(Protocol, "continuation with no message started"));
                }
                self.fragments = self.fragments.saturating_add(1);
                if self.fragments > self.limits.max_fragments {
                    return Err(ProtocolError::new(MessageTooBig, "too many fragments"));
                }
                self.message_len = self.message_len.saturating_add(h.payload_len);
            }
            Opcode::Text | Opcode::Binary => {
                if self.message.is_some() {
                    return Err(ProtocolError::new(Protocol, "new message inside an unfinished message"));
                }
                self.message = Some(if h.opcode == Opcode::Text { MessageKind::Text } else { MessageKind::Binary });
                self.message_len = h.payload_len;
                self.fragments = 1;
                self.utf8 = Utf8Validator::default();
                self.compressed = rsv1;
            }
        }
        if !h.opcode.is_control() && self.message_len > self.limits.max_message_size {
            return Err(ProtocolError::new(MessageTooBig, "message too big"));
        }
        self.stage = Stage::Payload {
            remaining: h.payload_len,
            mask: h.mask,
            phase: 0,
            opcode: h.opcode,
            fin: h.fin,
            start: true,
        };
        Ok(())
    }

    fn fail<'a>(&mut self, violation: ProtocolError) -> Decoded<'a> {
        self.stage = Stage::Failed;
        Decoded::Violation(violation)
    }
}
