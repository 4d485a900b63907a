//! permessage-deflate's compressor and inflater: zlib (the pure-Rust
//! zlib-rs, through flate2) driven by the core's rules
//! ([`roomwire_core::deflate`]): what was agreed, when a window is
//! forgotten, which messages are worth compressing, and what a message
//! that inflates past the limit gets.
//!
//! Memory per connection, bounded by what was negotiated:
//!
//! * a few bytes until the first compressed message either way;
//! * receiving: zlib-rs's inflate state, 47.5 KiB whatever the window
//!   (measured), while a compressed message is read, and between messages
//!   only while the peer keeps its context; with the default settings the
//!   peer starts each message afresh and the inflater goes back to the
//!   thread after it (one spare per thread, for the next message);
//! * sending with context takeover: a compressor of its own (zlib-rs at
//!   level 1: 250 KiB at 9 window bits, 380 KiB at 15, measured); without
//!   it (the default), none: the thread's compressors (one per level and
//!   window in use, four at most) serve every connection, reset per
//!   message.
//!
//! A compressed message that is begun and never finished is failed after
//! [`roomwire_core::deflate::MESSAGE_TIMEOUT`] (60 s) when no message
//! timeout is configured: a few compressed bytes can fill the reassembly
//! buffer, and a stalled peer must not hold it for the connection's life.
//!
//! Inflating writes into the reassembly buffer through an 8 KiB piece on
//! the stack, under the connection's `max_message_size`: a decompression
//! bomb stops at the limit with 1009.
//!
//! What unfinished compressed messages hold is also bounded across the
//! process ([`DEFAULT_INFLATING_LIMIT`], 256 MiB, or what
//! [`set_inflating_limit`] set): a message's first 64 KiB are
//! its own, and beyond them each inflated byte it holds before its end
//! counts against the bound, until the message ends or its connection
//! goes. Past the bound a message that grows is closed with 1009. Without
//! it, a kilobyte of compressed zeros left unfinished holds a megabyte for
//! the message timeout, on every connection an attacker opens; a plain
//! message holds only what its peer sent.

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use roomwire_core::MessageKind;
use roomwire_core::deflate::{Deflate, Inflate, InflateError, strip_tail, write_server_header};
use roomwire_core::message::TooLarge;

use crate::budget::ProcessBudget;

/// Size of one piece of inflated output, on the stack.
const INFLATE_PIECE: usize = 8 * 1024;

/// The process's bound on bytes that unfinished compressed messages hold
/// (permessage-deflate, RFC 7692), until [`set_inflating_limit`] sets
/// another: 256 MiB.
pub const DEFAULT_INFLATING_LIMIT: usize = 256 << 20;

/// What unfinished compressed messages hold, process-wide.
static INFLATING: ProcessBudget = ProcessBudget::new(DEFAULT_INFLATING_LIMIT);

/// Sets the process's bound on bytes held by compressed messages that have
/// not ended yet, over every connection of every server and client in the
/// process ([`DEFAULT_INFLATING_LIMIT`] until set).
///
/// A message's first 64 KiB are its own; beyond them each inflated byte it
/// holds before its end counts against this bound until the message ends
/// or its connection goes, and a message that would pass it is closed with
/// 1009 (message too big). It is the memory a crowd of peers can pin with
/// small compressed frames that inflate far and never finish: size it to
/// what the machine can spare. Lowering it below what is held now takes
/// nothing back; messages that grow are refused until enough is released.
///
/// ```standalone_crate
/// // A small machine: at most 32 MiB in unfinished compressed messages.
/// // (A doctest of its own process: the bound is the process's.)
/// roomwire_tokio::set_inflating_limit(32 << 20);
/// assert_eq!(roomwire_tokio::inflating_limit(), 32 << 20);
/// ```
pub fn set_inflating_limit(bytes: usize) {
    INFLATING.set_limit(bytes);
}

/// The process's bound on bytes held by unfinished compressed messages
/// (see [`set_inflating_limit`]).
pub fn inflating_limit() -> usize {
    INFLATING.limit()
}

/// Bytes unfinished compressed messages hold now against
/// [`inflating_limit`], over the process (a message's first 64 KiB not
/// counted): for metrics.
pub fn inflating_held() -> usize {
    INFLATING.held()
}

/// Capacity the thread's compression output buffer keeps between messages.
const OUTPUT_KEEP: usize = 64 * 1024;

/// One connection's permessage-deflate state, made at first use.
pub(crate) struct Codec {
    inflater: Inflater,
    /// Our compressor, kept between messages (context takeover only).
    compressor: Option<Compress>,
}

impl Codec {
    pub(crate) fn new() -> Self {
        Self { inflater: Inflater::new(&INFLATING), compressor: None }
    }

    /// The inflater for compressed messages from the peer.
    pub(crate) fn inflater(&mut self) -> &mut dyn Inflate {
        &mut self.inflater
    }

    /// Compress `payload` as one message as `agreed` says, and hand the
    /// frame payload (tail stripped) to `frame`.
    pub(crate) fn compress<R>(&mut self, agreed: &Deflate, payload: &[u8], frame: impl FnOnce(&[u8]) -> R) -> R {
        if agreed.send_no_context_takeover {
            return compress_fresh(agreed, payload, frame);
        }
        let zlib = self.compressor.get_or_insert_with(|| new_compressor(agreed, agreed.zlib_send_window_bits()));
        with_output(|out| {
            deflate_into(zlib, payload, out);
            frame(strip_tail(out))
        })
    }

    /// The message just compressed was not sent: our window now holds
    /// bytes the peer never saw. A fresh compressor refers to nothing
    /// before it, which the peer's inflater reads whatever it kept.
    pub(crate) fn forget_context(&mut self) {
        self.compressor = None;
    }
}

/// Compress `payload` as one message with an empty window (no context
/// takeover), with the thread's compressor, and hand the frame payload to
/// `frame`.
fn compress_fresh<R>(agreed: &Deflate, payload: &[u8], frame: impl FnOnce(&[u8]) -> R) -> R {
    with_output(|out| {
        SHARED.with_borrow_mut(|shared| {
            let zlib = shared.for_agreement(agreed);
            zlib.reset();
            deflate_into(zlib, payload, out);
        });
        frame(strip_tail(out))
    })
}

/// Run `f` with the thread's (cleared) output buffer.
fn with_output<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    OUTPUT.with_borrow_mut(|out| {
        out.clear();
        let result = f(out);
        out.clear();
        if out.capacity() > OUTPUT_KEEP {
            out.shrink_to(OUTPUT_KEEP);
        }
        result
    })
}

/// What a room's shared frames may be compressed with for a connection
/// ([`Deflate::takes_shared_frames`]), if anything.
pub(crate) fn for_shared_frames(agreed: Option<&Deflate>) -> Option<Deflate> {
    agreed.filter(|agreed| agreed.takes_shared_frames()).copied()
}

/// The kind and payload of a whole, uncompressed data frame.
pub(crate) fn plain_message(frame: &[u8]) -> Option<(MessageKind, &[u8])> {
    let (header, at) = roomwire_core::FrameHeader::parse(frame).ok()??;
    let kind = match header.opcode {
        roomwire_core::Opcode::Text => MessageKind::Text,
        roomwire_core::Opcode::Binary => MessageKind::Binary,
        _ => return None,
    };
    (header.fin && header.rsv == 0).then_some(())?;
    Some((kind, frame.get(at..)?))
}

/// The compressed twin of a whole server frame `plain` (as the room
/// server encodes once per emit), for connections that agreed to
/// `agreed`; `None` when its payload is too short to be worth it.
pub(crate) fn compress_frame(plain: &[u8], agreed: &Deflate) -> Option<Bytes> {
    let (kind, payload) = plain_message(plain)?;
    if !agreed.compresses(payload.len()) {
        return None;
    }
    compress_fresh(agreed, payload, |deflated| {
        let mut frame = vec![0u8; 10 + deflated.len()];
        let n = write_server_header(kind, deflated.len() as u64, &mut frame).ok()?;
        frame.truncate(n);
        frame.extend_from_slice(deflated);
        Some(Bytes::from(frame))
    })
}

thread_local! {
    /// Compressed output of the message being sent.
    static OUTPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// The thread's compressor for connections without context takeover.
    static SHARED: RefCell<SharedCompressor> = const { RefCell::new(SharedCompressor { zlib: Vec::new() }) };
    /// An inflater given back by a connection between messages, for the
    /// next compressed message on this thread.
    static SPARE_INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// The thread's compressors for connections without context takeover,
/// one per (level, window) in use, at most [`SHARED_COMPRESSORS`] (the
/// oldest made is dropped for a new one). Their windows are
/// [`Deflate::shared_window_bits`]: two per level, whatever windows the
/// clients asked for, so connections that agreed to different windows do
/// not remake one compressor in turn.
struct SharedCompressor {
    zlib: Vec<((u8, u8), Compress)>,
}

/// Most compressors a thread keeps (250 to 380 KiB each).
const SHARED_COMPRESSORS: usize = 4;

impl SharedCompressor {
    fn for_agreement(&mut self, agreed: &Deflate) -> &mut Compress {
        let key = (agreed.level, agreed.shared_window_bits());
        let at = match self.zlib.iter().position(|(made_for, _)| *made_for == key) {
            Some(at) => at,
            None => {
                if self.zlib.len() >= SHARED_COMPRESSORS {
                    self.zlib.remove(0);
                }
                self.zlib.push((key, new_compressor(agreed, key.1)));
                self.zlib.len() - 1
            }
        };
        match self.zlib.get_mut(at) {
            Some((_, zlib)) => zlib,
            None => unreachable!("found or pushed above"),
        }
    }
}

fn new_compressor(agreed: &Deflate, window_bits: u8) -> Compress {
    Compress::new_with_window_bits(Compression::new(u32::from(agreed.level)), false, window_bits)
}

/// Compress `payload` with a sync flush into `out` (cleared first).
fn deflate_into(zlib: &mut Compress, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(payload.len() / 2 + 64);
    let mut input = payload;
    loop {
        let before = zlib.total_in();
        // Raw deflate of bytes in memory: zlib reports no error for it.
        if zlib.compress_vec(input, out, FlushCompress::Sync).is_err() {
            break;
        }
        let used = usize::try_from(zlib.total_in() - before).unwrap_or(input.len());
        input = input.get(used..).unwrap_or(&[]);
        // The flush is complete when zlib stops with room to spare.
        if input.is_empty() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(1024));
    }
}

/// zlib's raw inflate, taken at the first compressed message and given
/// back to the thread when the core resets it (the next message starts a
/// fresh stream). Always with a 15-bit window, which reads a stream
/// written with any smaller one: zlib-rs allocates the same state
/// whatever the window, and resets a 15-bit one without remaking it (a
/// peer sending a final block every two bytes costs no allocation).
struct Inflater {
    zlib: Option<Decompress>,
    budget: &'static ProcessBudget,
    /// Bytes the message being inflated has produced so far: what is
    /// beyond its own share ([`OWN_SHARE`](crate::budget::OWN_SHARE)) is taken from `budget`.
    made: usize,
}

impl Inflater {
    fn new(budget: &'static ProcessBudget) -> Self {
        Self { zlib: None, budget, made: 0 }
    }
}

impl Drop for Inflater {
    fn drop(&mut self) {
        self.message_done();
    }
}

impl Inflate for Inflater {
    fn message_done(&mut self) {
        self.budget.resize(self.made, 0);
        self.made = 0;
    }

    fn inflate(
        &mut self,
        mut input: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> Result<(), TooLarge>,
    ) -> Result<(), InflateError> {
        let Inflater { zlib, budget, made: made_so_far } = self;
        let zlib = zlib.get_or_insert_with(|| {
            SPARE_INFLATER.with_borrow_mut(Option::take).unwrap_or_else(|| Decompress::new_with_window_bits(false, 15))
        });
        let mut piece = [0u8; INFLATE_PIECE];
        loop {
            let (was_in, was_out) = (zlib.total_in(), zlib.total_out());
            let status =
                zlib.decompress(input, &mut piece, FlushDecompress::Sync).map_err(|_| InflateError::Corrupt)?;
            let used = usize::try_from(zlib.total_in() - was_in).unwrap_or(input.len());
            let made = usize::try_from(zlib.total_out() - was_out).unwrap_or(0);
            input = input.get(used..).unwrap_or(&[]);
            if let Some(out) = piece.get(..made).filter(|out| !out.is_empty()) {
                let after = made_so_far.saturating_add(out.len());
                if !budget.resize(*made_so_far, after) {
                    return Err(InflateError::TooLarge);
                }
                *made_so_far = after;
                sink(out).map_err(|_| InflateError::TooLarge)?;
            }
            if status == Status::StreamEnd {
                // A block with BFINAL set (RFC 7692 §7.2.3.4): that stream
                // is over; what follows starts a new one.
                zlib.reset(false);
            }
            let drained = made < piece.len();
            if input.is_empty() && drained {
                return Ok(());
            }
            if used == 0 && made == 0 && status != Status::StreamEnd {
                // No progress with input left: it cannot be inflated.
                return Err(InflateError::Corrupt);
            }
        }
    }

    fn reset(&mut self) {
        // Given back, not kept: a peer that starts every message afresh
        // costs no inflater between messages, and the thread one at most.
        if let Some(mut zlib) = self.zlib.take() {
            zlib.reset(false);
            SPARE_INFLATER.with_borrow_mut(|spare| *spare = Some(zlib));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::OWN_SHARE;
    use roomwire_core::deflate::{DeflateConfig, negotiate};

    fn agreed(offer: &str, config: DeflateConfig) -> Deflate {
        negotiate([offer.as_bytes()], &config).unwrap()
    }

    fn inflate_all(codec: &mut Codec, compressed: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        let mut sink = |piece: &[u8]| {
            if out.len() + piece.len() > limit {
                return Err(TooLarge);
            }
            out.extend_from_slice(piece);
            Ok(())
        };
        codec.inflater().inflate(compressed, &mut sink)?;
        codec.inflater().inflate(&roomwire_core::deflate::TAIL, &mut sink)?;
        Ok(out)
    }

    #[test]
    fn what_one_side_compresses_the_other_inflates_at_every_window() {
        let text = "{\"event\":\"tick\",\"data\":{\"count\":12345}}".repeat(500);
        for bits in 8..=15 {
            let offer = format!("permessage-deflate; server_max_window_bits={bits}; client_max_window_bits={bits}");
            let both = agreed(&offer, DeflateConfig { send_context_takeover: true, ..DeflateConfig::DEFAULT });
            let (mut sender, mut receiver) = (Codec::new(), Codec::new());
            for _ in 0..3 {
                let compressed = sender.compress(&both, text.as_bytes(), <[u8]>::to_vec);
                assert!(compressed.len() < text.len() / 5, "{bits}: {}", compressed.len());
                assert_eq!(inflate_all(&mut receiver, &compressed, 1 << 20).unwrap(), text.as_bytes());
            }
        }
    }

    /// Unfinished compressed messages hold at most the budget beyond
    /// their first 64 KiB each: past it, a message that grows fails with
    /// TooLarge (1009); what a message held comes back at its end, and
    /// when its inflater goes.
    #[test]
    fn unfinished_compressed_messages_are_bounded_together() {
        let budget: &'static ProcessBudget = Box::leak(Box::new(ProcessBudget::new(1 << 20)));
        let fresh = agreed("permessage-deflate", DeflateConfig::DEFAULT);
        // About 10 KiB (at level 1) that inflate to 1 MiB, a message not ended.
        let bomb = Codec::new().compress(&fresh, &vec![0u8; 1 << 20], <[u8]>::to_vec);
        assert!(bomb.len() < 16 * 1024, "{}", bomb.len());
        let mut discard = |_: &[u8]| Ok(());
        let mut first = Inflater::new(budget);
        assert_eq!(first.inflate(&bomb, &mut discard), Ok(()));
        assert_eq!(budget.held(), (1 << 20) - OWN_SHARE);
        let mut second = Inflater::new(budget);
        assert_eq!(second.inflate(&bomb, &mut discard), Err(InflateError::TooLarge));
        // Small messages go on meanwhile: their first 64 KiB are their own.
        let small = Codec::new().compress(&fresh, &vec![7u8; 60 * 1024], <[u8]>::to_vec);
        let mut third = Inflater::new(budget);
        assert_eq!(third.inflate(&small, &mut discard), Ok(()));
        // The first ends: what it held comes back.
        first.message_done();
        second.message_done();
        assert_eq!(budget.held(), 0);
        let mut fourth = Inflater::new(budget);
        assert_eq!(fourth.inflate(&bomb, &mut discard), Ok(()));
        drop(fourth);
        assert_eq!(budget.held(), 0, "a dropped inflater kept its share");
    }

    #[test]
    fn the_shared_compressor_starts_every_message_afresh() {
        let fresh = agreed("permessage-deflate", DeflateConfig::DEFAULT);
        assert!(fresh.send_no_context_takeover);
        let mut codec = Codec::new();
        let first = codec.compress(&fresh, b"hello hello hello hello", <[u8]>::to_vec);
        let second = codec.compress(&fresh, b"hello hello hello hello", <[u8]>::to_vec);
        // Context takeover would make the second a back-reference only.
        assert_eq!(first, second);
        // Each inflates on its own.
        assert_eq!(inflate_all(&mut Codec::new(), &second, 100).unwrap(), b"hello hello hello hello");
    }

    #[test]
    fn a_shared_frame_is_compressed_once_and_only_when_worth_it() {
        let fresh = agreed("permessage-deflate", DeflateConfig::DEFAULT);
        let text = "{\"event\":\"message\",\"data\":{\"text\":\"hello everyone\"}}".repeat(20);
        let mut plain = vec![0x81, 126];
        plain.extend_from_slice(&(text.len() as u16).to_be_bytes());
        plain.extend_from_slice(text.as_bytes());
        let frame = compress_frame(&plain, &fresh).unwrap();
        let (header, at) = roomwire_core::FrameHeader::parse(&frame).unwrap().unwrap();
        assert_eq!((header.rsv, header.opcode, header.fin), (0b100, roomwire_core::Opcode::Text, true));
        assert_eq!(inflate_all(&mut Codec::new(), &frame[at..], 1 << 20).unwrap(), text.as_bytes());
        assert_eq!(compress_frame(&[0x81, 2, b'h', b'i'], &fresh), None);
        let keeps =
            agreed("permessage-deflate", DeflateConfig { send_context_takeover: true, ..DeflateConfig::DEFAULT });
        assert_eq!(for_shared_frames(Some(&keeps)), None);
        assert_eq!(for_shared_frames(Some(&fresh)), Some(fresh));
    }

    #[test]
    fn inflating_stops_at_the_limit_and_on_garbage() {
        let fresh = agreed("permessage-deflate", DeflateConfig::DEFAULT);
        let mut codec = Codec::new();
        let bomb = codec.compress(&fresh, &vec![0u8; 8 << 20], <[u8]>::to_vec);
        assert!(bomb.len() < (8 << 20) / 100, "{}", bomb.len());
        assert_eq!(inflate_all(&mut Codec::new(), &bomb, 1 << 20), Err(InflateError::TooLarge));
        assert_eq!(inflate_all(&mut Codec::new(), &[0xff; 8], 1 << 20), Err(InflateError::Corrupt));
        // RFC 7692 §7.2.3.4: "Hello" in a final block, then a 0x00.
        let final_block = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inflate_all(&mut Codec::new(), &final_block, 100).unwrap(), b"Hello");
    }
}
