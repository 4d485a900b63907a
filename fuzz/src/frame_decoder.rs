//! `frame_decoder`: [`FrameDecoder::decode`] on arbitrary bytes, split.
//!
//! Input: byte 0 picks the role (bit 7: client, else server), the limits
//! (bits 5–6) and a chunk size of 1–32 bytes (bits 0–4); the rest is the
//! wire. The wire is decoded twice, in chunks of that size and whole, each
//! chunk handed back as `&mut chunk[consumed..]` until `decode` returns
//! `None`. Asserted:
//!
//! * both runs give the same normalized transcript: each data message's
//!   chunks concatenated with its kind, each control frame's whole payload,
//!   each violation's code and reason, and whatever was left unfinished at
//!   the end of the input;
//! * `consumed <= input.len()`; a piece always consumes at least one byte;
//!   `None` consumes the whole input;
//! * after a violation nothing more comes out and every byte is swallowed,
//!   and `is_failed` agrees;
//! * chunk flags are coherent: `message_start` opens a message,
//!   continuations keep its kind, control payloads stay within 125 bytes and
//!   never interleave with each other, complete text is UTF-8 and partial
//!   text a UTF-8 prefix.

use roomwire_core::decoder::{Decoded, DecoderLimits, FrameDecoder, MessageKind, Role};
use roomwire_core::frame::MAX_CONTROL_PAYLOAD;
use roomwire_core::{Opcode, ProtocolError};

use crate::is_utf8_prefix;

/// One entry of the normalized transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A whole data message, and whether it came compressed (RSV1).
    Message(MessageKind, Vec<u8>, bool),
    /// A whole control frame.
    Control(Opcode, Vec<u8>),
    /// A violation, as close code and reason.
    Violation(u16, &'static str),
    /// A data message still open at the end of the input.
    PartialMessage(MessageKind, Vec<u8>),
    /// A control frame still open at the end of the input.
    PartialControl(Opcode, Vec<u8>),
}

/// What one run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The transcript.
    pub items: Vec<Item>,
    /// `is_failed()` at the end.
    pub failed: bool,
    /// `is_idle()` at the end.
    pub idle: bool,
}

/// The limit presets bits 5–6 of the first byte choose from.
pub fn limits(preset: u8) -> DecoderLimits {
    match preset & 3 {
        0 => DecoderLimits::default(),
        1 => DecoderLimits { max_message_size: 64, max_fragments: 4 },
        2 => DecoderLimits { max_message_size: 0, max_fragments: 1 },
        _ => DecoderLimits { max_message_size: u64::MAX, max_fragments: u32::MAX },
    }
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let Some((&sel, wire)) = data.split_first() else {
        return;
    };
    let role = if sel & 0x80 != 0 { Role::Client } else { Role::Server };
    let limits = limits(sel >> 5);
    let chunk = usize::from(sel & 0x1F) + 1;
    // Once as a plain connection, once with permessage-deflate (RSV1 allowed).
    for deflate in [false, true] {
        let whole = decode_in_chunks(role, limits, deflate, wire, wire.len().max(1));
        let split = decode_in_chunks(role, limits, deflate, wire, chunk);
        assert_eq!(whole, split, "transcript depends on the split (chunk size {chunk}, {role:?}, deflate {deflate})");
    }
}

/// Decode `wire` fed in `chunk`-byte pieces and return the transcript.
pub fn decode_in_chunks(role: Role, limits: DecoderLimits, deflate: bool, wire: &[u8], chunk: usize) -> Outcome {
    let mut buf = wire.to_vec();
    let mut dec = FrameDecoder::new(role, limits);
    dec.allow_compressed(deflate);
    let mut rec = Recorder { deflate, ..Recorder::default() };
    for piece in buf.chunks_mut(chunk) {
        let mut at = 0;
        loop {
            let input = &mut piece[at..];
            let len = input.len();
            let (used, out) = dec.decode(input);
            assert!(used <= len, "consumed {used} of {len}");
            let Some(out) = out else {
                assert_eq!(used, len, "None must mean the whole input was consumed");
                break;
            };
            assert!(used > 0, "a piece came out without consuming input: {out:?}");
            rec.record(out);
            assert_eq!(dec.is_failed(), rec.violated);
            at += used;
        }
    }
    assert_eq!(dec.is_failed(), rec.violated);
    if rec.violated {
        // Spent: a valid frame of either role is swallowed too.
        for mut frame in [*b"\x81\x05Hello", *b"\x89\x80\0\0\0\0\x00"] {
            let len = frame.len();
            assert_eq!(dec.decode(&mut frame), (len, None));
        }
        assert!(dec.is_failed());
    }
    let idle = dec.is_idle();
    rec.finish(dec.is_failed(), idle)
}

#[derive(Default)]
struct Recorder {
    /// RSV1 may mark a message compressed.
    deflate: bool,
    items: Vec<Item>,
    /// The message in progress, and whether it is compressed.
    message: Option<(MessageKind, Vec<u8>, bool)>,
    control: Option<(Opcode, Vec<u8>)>,
    violated: bool,
}

impl Recorder {
    fn record(&mut self, out: Decoded<'_>) {
        assert!(!self.violated, "decoder produced {out:?} after a violation");
        match out {
            Decoded::Data { kind, payload, message_start, message_end, compressed } => {
                assert!(self.control.is_none(), "data inside a control frame");
                assert!(self.deflate || !compressed, "a compressed message without permessage-deflate");
                if message_start {
                    assert!(self.message.is_none(), "message_start inside a message");
                    self.message = Some((kind, Vec::new(), compressed));
                }
                let Some((open_kind, bytes, open_compressed)) = self.message.as_mut() else {
                    panic!("data chunk with no message started");
                };
                assert_eq!(*open_kind, kind, "message changed kind");
                assert_eq!(*open_compressed, compressed, "message changed compression");
                bytes.extend_from_slice(payload);
                if message_end {
                    let Some((kind, bytes, compressed)) = self.message.take() else { unreachable!() };
                    // Compressed text is checked once inflated, not here.
                    if kind == MessageKind::Text && !compressed {
                        assert!(core::str::from_utf8(&bytes).is_ok(), "complete text message is not UTF-8");
                    }
                    self.items.push(Item::Message(kind, bytes, compressed));
                }
            }
            Decoded::Control { opcode, payload, frame_start, frame_end } => {
                assert!(matches!(opcode, Opcode::Close | Opcode::Ping | Opcode::Pong), "{opcode:?}");
                if frame_start {
                    assert!(self.control.is_none(), "control frame_start inside a control frame");
                    self.control = Some((opcode, Vec::new()));
                }
                let Some((open_op, bytes)) = self.control.as_mut() else {
                    panic!("control chunk with no frame started");
                };
                assert_eq!(*open_op, opcode);
                bytes.extend_from_slice(payload);
                assert!(bytes.len() <= MAX_CONTROL_PAYLOAD);
                if frame_end {
                    let Some((opcode, bytes)) = self.control.take() else { unreachable!() };
                    self.items.push(Item::Control(opcode, bytes));
                }
            }
            Decoded::Violation(ProtocolError { code, reason }) => {
                assert!(self.control.is_none(), "violation inside a control frame");
                // The bytes of a message cut by a violation depend on the
                // split (UTF-8 fails fast per chunk): only the violation counts.
                self.message = None;
                self.violated = true;
                self.items.push(Item::Violation(u16::from(code), reason));
            }
        }
    }

    fn finish(mut self, failed: bool, idle: bool) -> Outcome {
        if let Some((kind, bytes, compressed)) = self.message.take() {
            if kind == MessageKind::Text && !compressed {
                assert!(is_utf8_prefix(&bytes), "partial text message is not a UTF-8 prefix");
            }
            self.items.push(Item::PartialMessage(kind, bytes));
        }
        if let Some((opcode, bytes)) = self.control.take() {
            self.items.push(Item::PartialControl(opcode, bytes));
        }
        Outcome { items: self.items, failed, idle }
    }
}
