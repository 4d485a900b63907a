//! permessage-deflate (RFC 7692): what is negotiated, and what a
//! compressed message means for the frame stream.
//!
//! The core compresses nothing itself (no allocation, no zlib): it decides
//! everything around the compressor, once for every adapter.
//!
//! * **Negotiation.** A server picks the first acceptable offer of the
//!   client's `Sec-WebSocket-Extensions` ([`negotiate`]) and answers it
//!   ([`Deflate::write_response`]); a client writes its offer
//!   ([`DeflateConfig::write_offer`]) and checks the answer
//!   ([`accept_response`]). With the `deflate` feature and
//!   [`Config::deflate`](crate::Config) set, [`Connection`](crate::Connection)
//!   does all of this itself.
//! * **Framing.** Once negotiated, RSV1 on the first frame of a data
//!   message marks it compressed; RSV1 anywhere else is still 1002. The
//!   decoder reports the flag ([`Decoded::Data`](crate::decoder::Decoded)),
//!   and leaves UTF-8 checking of compressed text until it is inflated.
//! * **Messages.** [`MessageReader::read_inflating`](crate::message::MessageReader::read_inflating)
//!   feeds a compressed message through an [`Inflate`] the adapter supplies
//!   (zlib, miniz …), appends [`TAIL`] at its end, resets the inflater when
//!   the peer may not keep its window, and stores the output under the
//!   reader's limit: a message that inflates past it closes with 1009 as
//!   soon as it does, whatever its compressed size (a decompression bomb
//!   costs the limit, never more). Bad compressed data closes with
//!   [`INFLATE_FAILED`] (1007).
//! * **Sending.** The adapter compresses with a sync flush, strips the tail
//!   ([`strip_tail`]) and frames the rest with
//!   [`Connection::send_deflated`](crate::Connection::send_deflated).
//!   Whether a message is worth compressing ([`DeflateConfig::min_size`])
//!   and when the compressor forgets its window
//!   ([`Deflate::send_no_context_takeover`]) are decided here.
//!
//! ```
//! use roomwire_core::deflate::{DeflateConfig, accept_response, negotiate};
//!
//! // What Chromium offers.
//! let offer: &[u8] = b"permessage-deflate; client_max_window_bits";
//! let config = DeflateConfig { receive_max_window_bits: 12, ..DeflateConfig::DEFAULT };
//! let agreed = negotiate([offer], &config).unwrap();
//! assert_eq!(agreed.receive_window_bits, 12);
//!
//! let mut out = [0u8; 160];
//! let n = agreed.write_response(&mut out).unwrap();
//! let response = &out[..n];
//! assert_eq!(
//!     response,
//!     b"permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=12"
//! );
//!
//! // The client's view of the same answer.
//! let client = DeflateConfig::DEFAULT;
//! let seen = accept_response([response], &client).unwrap().unwrap();
//! assert_eq!((seen.send_window_bits, seen.receive_no_context_takeover), (12, true));
//! ```

use crate::close::CloseCode;
use crate::decoder::MessageKind;
use crate::error::{InsufficientSize, ProtocolError};
use crate::frame::FrameHeader;
use crate::message::TooLarge;
use crate::time::Duration;
use crate::writer::{Writer, write_twice};

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const EXTENSION: &str = "permessage-deflate";

/// Smallest LZ77 window RFC 7692 allows (256 bytes).
pub const MIN_WINDOW_BITS: u8 = 8;

/// Largest LZ77 window (32 KiB), the default when nothing limits it.
pub const MAX_WINDOW_BITS: u8 = 15;

/// The empty stored block a sync flush ends with: a sender strips it from
/// every compressed message (§7.2.1) and a receiver appends it before
/// inflating the message's end (§7.2.2).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The close for a compressed message that does not inflate.
pub const INFLATE_FAILED: ProtocolError = ProtocolError::new(CloseCode::Invalid, "invalid compressed data");

/// How long a compressed message may take from its first frame to its
/// last when [`Config::message_timeout`](crate::Config) sets none: a few
/// compressed bytes can fill `max_message_size` of reassembly buffer, so a
/// peer that starts such a message and stalls is not allowed to hold it
/// for the connection's life (closed with 1008, as for that timeout).
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest [`Deflate::write_response`] or [`DeflateConfig::write_offer`].
pub const MAX_HEADER_VALUE: usize = 128;

/// What this side lets permessage-deflate cost and promise. "Send" is what
/// this side compresses, "receive" what it inflates; the same settings
/// serve a server and a client.
///
/// Memory: receiving costs an inflater while a compressed message is read,
/// and between messages too if the peer may keep its context (zlib-rs:
/// 47.5 KiB at any window); sending with context takeover costs a
/// compressor per connection (zlib-rs at level 1: 250 KiB at 9 bits to
/// 380 KiB at 15), without it one compressor serves every connection of a
/// thread (and one compressed room message every recipient). The defaults
/// keep neither between messages: an idle connection costs nothing.
///
/// ```
/// use roomwire_core::deflate::DeflateConfig;
/// // Better ratios for what the peer sends, at an inflater per connection.
/// let keep = DeflateConfig { receive_context_takeover: true, receive_max_window_bits: 12, ..DeflateConfig::DEFAULT };
/// assert!(!keep.send_context_takeover);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Keep our compressor's window from one message to the next (a better
    /// ratio on similar messages, a compressor per connection). Default
    /// off: each message is compressed on its own, so one compressed copy
    /// can go to many connections.
    pub send_context_takeover: bool,
    /// Largest window our compressor uses, 8 to 15 (a peer may ask for
    /// less). Default 15.
    pub send_max_window_bits: u8,
    /// Let the peer keep its window between messages (our inflater keeps
    /// it too, for the connection's life: a better ratio on what the peer
    /// sends, an inflater per connection). Default off: the peer is asked
    /// to start each message afresh (browsers comply), and nothing is held
    /// between messages.
    pub receive_context_takeover: bool,
    /// Largest window we let the peer use, 8 to 15: it bounds our
    /// inflater's memory. A peer that cannot be limited (its offer lacks
    /// `client_max_window_bits`) is declined when this is under 15.
    /// Default 15.
    pub receive_max_window_bits: u8,
    /// Compression level, 0 (store) to 9 (smallest). Default 1: fast,
    /// and most of the gain on JSON.
    pub level: u8,
    /// Messages shorter than this go out uncompressed: for them the
    /// compressor costs more than it saves. Default 64 bytes.
    pub min_size: usize,
}

impl DeflateConfig {
    /// The defaults (see each field).
    pub const DEFAULT: DeflateConfig = DeflateConfig {
        send_context_takeover: false,
        send_max_window_bits: MAX_WINDOW_BITS,
        receive_context_takeover: false,
        receive_max_window_bits: MAX_WINDOW_BITS,
        level: 1,
        min_size: 64,
    };

    /// Client: write our offer (a `Sec-WebSocket-Extensions` value) into
    /// `out`. It always lets the server limit our window.
    ///
    /// ```
    /// use roomwire_core::deflate::DeflateConfig;
    /// let mut out = [0u8; 128];
    /// let n = DeflateConfig::DEFAULT.write_offer(&mut out).unwrap();
    /// assert_eq!(
    ///     &out[..n],
    ///     b"permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits"
    /// );
    /// ```
    pub fn write_offer(&self, out: &mut [u8]) -> Result<usize, InsufficientSize> {
        write_twice(out, |w| self.put_offer(w))
    }

    pub(crate) fn put_offer(&self, w: &mut Writer<'_>) {
        w.put(EXTENSION.as_bytes());
        if !self.receive_context_takeover {
            w.put(b"; server_no_context_takeover");
        }
        if !self.send_context_takeover {
            w.put(b"; client_no_context_takeover");
        }
        let receive = clamp_bits(self.receive_max_window_bits);
        if receive < MAX_WINDOW_BITS {
            w.put(b"; server_max_window_bits=");
            w.put_decimal(u64::from(receive));
        }
        w.put(b"; client_max_window_bits");
        let send = clamp_bits(self.send_max_window_bits);
        if send < MAX_WINDOW_BITS {
            w.put(b"=");
            w.put_decimal(u64::from(send));
        }
    }
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// permessage-deflate as agreed for one connection, from this side's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deflate {
    /// Our compressor starts every message with an empty window.
    pub send_no_context_takeover: bool,
    /// Our compressor's window, in bits (8 to 15).
    pub send_window_bits: u8,
    /// The peer starts every message with an empty window: our inflater
    /// is reset after each message.
    pub receive_no_context_takeover: bool,
    /// The peer's window, in bits (8 to 15): what our inflater needs.
    pub receive_window_bits: u8,
    /// Compression level to use, 0 to 9.
    pub level: u8,
    /// Messages shorter than this go out uncompressed.
    pub min_size: usize,
    /// Server: the answer names the server's window (offered, or limited).
    announce_send_window: bool,
    /// Server: the answer names the client's window (the offer allowed it).
    announce_receive_window: bool,
    /// The window our configuration offers (before the peer limits it).
    configured_send_window_bits: u8,
}

impl Deflate {
    /// Whether a message of `len` bytes is worth compressing.
    pub fn compresses(&self, len: usize) -> bool {
        len >= self.min_size
    }

    /// Whether this connection can take a frame compressed once for many
    /// (a room message): only if our compressor starts every message with
    /// an empty window, as the frame's compressor did. One that keeps its
    /// context compresses what it sends itself.
    pub fn takes_shared_frames(&self) -> bool {
        self.send_no_context_takeover
    }

    /// The window to give a zlib-style compressor. zlib refuses 8 bits for
    /// raw deflate; 9 is safe where 8 was agreed, because such a compressor
    /// never reaches further back than `2^bits - 262` bytes (250 < 256).
    pub fn zlib_send_window_bits(&self) -> u8 {
        self.send_window_bits.max(MIN_WINDOW_BITS + 1)
    }

    /// The window to give a zlib-style compressor that starts every
    /// message empty and may serve many connections (a room message
    /// compressed once): the configured window if the peer left it there,
    /// as nearly every peer does, else the smallest a zlib-style compressor
    /// uses. A deflate stream reads in any window at least as large as the
    /// one that wrote it, so a room's recipients share at most two
    /// compressions per level, however many windows their peers asked for
    /// (one per window would let peers asking for seven windows make every
    /// room message be compressed seven times).
    ///
    /// ```
    /// use roomwire_core::deflate::{DeflateConfig, negotiate};
    /// let plain = negotiate([&b"permessage-deflate"[..]], &DeflateConfig::DEFAULT).unwrap();
    /// assert_eq!(plain.shared_window_bits(), 15);
    /// for bits in 8..15 {
    ///     let offer = format!("permessage-deflate; server_max_window_bits={bits}");
    ///     let limited = negotiate([offer.as_bytes()], &DeflateConfig::DEFAULT).unwrap();
    ///     assert_eq!(limited.shared_window_bits(), 9);
    /// }
    /// ```
    pub fn shared_window_bits(&self) -> u8 {
        if self.send_window_bits >= self.configured_send_window_bits {
            self.zlib_send_window_bits()
        } else {
            MIN_WINDOW_BITS + 1
        }
    }

    /// The window to give a zlib-style inflater (9 where 8 was agreed: a
    /// larger window reads any stream a smaller one wrote).
    pub fn zlib_receive_window_bits(&self) -> u8 {
        self.receive_window_bits.max(MIN_WINDOW_BITS + 1)
    }

    /// Server: write the `Sec-WebSocket-Extensions` value accepting the
    /// offer [`negotiate`] chose.
    pub fn write_response(&self, out: &mut [u8]) -> Result<usize, InsufficientSize> {
        write_twice(out, |w| self.put_response(w))
    }

    pub(crate) fn put_response(&self, w: &mut Writer<'_>) {
        w.put(EXTENSION.as_bytes());
        if self.send_no_context_takeover {
            w.put(b"; server_no_context_takeover");
        }
        if self.receive_no_context_takeover {
            w.put(b"; client_no_context_takeover");
        }
        if self.announce_send_window {
            w.put(b"; server_max_window_bits=");
            w.put_decimal(u64::from(self.send_window_bits));
        }
        if self.announce_receive_window {
            w.put(b"; client_max_window_bits=");
            w.put_decimal(u64::from(self.receive_window_bits));
        }
    }
}

/// The parameters of one offer or response, parsed and checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value (allowed in an offer only).
    client_max_window_bits: Option<Option<u8>>,
}

/// Why an offer or response is unusable.
type Invalid = &'static str;

impl Params {
    /// Parse the parameters after the extension's name (`; a; b=1 …`).
    /// RFC 7692 §7: unknown, repeated or ill-valued parameters make the
    /// whole offer unusable.
    fn parse(mut rest: &[u8]) -> Result<Params, Invalid> {
        let mut params = Params::default();
        while !rest.is_empty() {
            let (param, after) = split_outside_quotes(rest, b';');
            rest = after;
            let param = param.trim_ascii();
            let (name, value) = match param.iter().position(|&b| b == b'=') {
                Some(at) => {
                    let (name, value) = param.split_at(at);
                    (name.trim_ascii(), Some(unquote(value.get(1..).unwrap_or(&[]).trim_ascii())?))
                }
                None => (param, None),
            };
            match (name, value) {
                (b"server_no_context_takeover", None) if !params.server_no_context_takeover => {
                    params.server_no_context_takeover = true;
                }
                (b"client_no_context_takeover", None) if !params.client_no_context_takeover => {
                    params.client_no_context_takeover = true;
                }
                (b"server_max_window_bits", Some(value)) if params.server_max_window_bits.is_none() => {
                    params.server_max_window_bits = Some(window_bits(value)?);
                }
                (b"client_max_window_bits", value) if params.client_max_window_bits.is_none() => {
                    params.client_max_window_bits = Some(value.map(window_bits).transpose()?);
                }
                _ => return Err("unknown, repeated or ill-formed permessage-deflate parameter"),
            }
        }
        Ok(params)
    }
}

/// A window size parameter: 8 to 15, digits only (no sign, no leading zero).
fn window_bits(value: &[u8]) -> Result<u8, Invalid> {
    match value {
        [d @ b'8'..=b'9'] => Ok(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Ok(10 + d - b'0'),
        _ => Err("window bits must be 8 to 15"),
    }
}

/// A parameter value without its quotes (RFC 7692 §7.1: a quoted-string
/// value must be a token once unquoted; escapes never are).
fn unquote(value: &[u8]) -> Result<&[u8], Invalid> {
    match value {
        [b'"', inner @ .., b'"'] if !inner.contains(&b'"') && !inner.contains(&b'\\') => Ok(inner),
        _ if value.contains(&b'"') => Err("ill-quoted parameter value"),
        _ => Ok(value),
    }
}

/// Split at the first `sep` outside a quoted string.
fn split_outside_quotes(input: &[u8], sep: u8) -> (&[u8], &[u8]) {
    let mut quoted = false;
    for (at, &b) in input.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            _ if b == sep && !quoted => {
                let (head, tail) = input.split_at(at);
                return (head, tail.get(1..).unwrap_or(&[]));
            }
            _ => {}
        }
    }
    (input, &[])
}

/// Every extension of some `Sec-WebSocket-Extensions` values, in order:
/// `(name, parameters)`.
fn extensions<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
    values.into_iter().flat_map(|value| {
        let mut rest = value;
        core::iter::from_fn(move || {
            loop {
                if rest.is_empty() {
                    return None;
                }
                let (item, after) = split_outside_quotes(rest, b',');
                rest = after;
                let item = item.trim_ascii();
                if item.is_empty() {
                    continue;
                }
                let (name, params) = split_outside_quotes(item, b';');
                return Some((name.trim_ascii(), params));
            }
        })
    })
}

const fn clamp_bits(bits: u8) -> u8 {
    if bits < MIN_WINDOW_BITS {
        MIN_WINDOW_BITS
    } else if bits > MAX_WINDOW_BITS {
        MAX_WINDOW_BITS
    } else {
        bits
    }
}

/// Server: the first offer among the client's `Sec-WebSocket-Extensions`
/// values that `config` can accept, as agreed. `None`: answer without the
/// extension. Invalid offers are declined, not refused (RFC 7692 §7).
///
/// ```
/// use roomwire_core::deflate::{DeflateConfig, negotiate};
/// // Firefox's offer; a malformed one first is skipped.
/// let offers: [&[u8]; 2] = [b"permessage-deflate; server_max_window_bits=7", b"permessage-deflate"];
/// let agreed = negotiate(offers, &DeflateConfig::DEFAULT).unwrap();
/// assert_eq!((agreed.receive_window_bits, agreed.receive_no_context_takeover), (15, true));
/// ```
pub fn negotiate<'a>(values: impl IntoIterator<Item = &'a [u8]>, config: &DeflateConfig) -> Option<Deflate> {
    extensions(values)
        .filter(|(name, _)| name.eq_ignore_ascii_case(EXTENSION.as_bytes()))
        .find_map(|(_, params)| accept_offer(Params::parse(params).ok()?, config))
}

fn accept_offer(offer: Params, config: &DeflateConfig) -> Option<Deflate> {
    let our_send = clamp_bits(config.send_max_window_bits);
    let our_receive = clamp_bits(config.receive_max_window_bits);
    let send_window_bits = offer.server_max_window_bits.map_or(our_send, |asked| asked.min(our_send));
    let receive_window_bits = match offer.client_max_window_bits {
        // The client cannot be told a window: it uses up to 32 KiB.
        None if our_receive < MAX_WINDOW_BITS => return None,
        None => MAX_WINDOW_BITS,
        Some(limit) => limit.map_or(our_receive, |own| own.min(our_receive)),
    };
    Some(Deflate {
        send_no_context_takeover: offer.server_no_context_takeover || !config.send_context_takeover,
        send_window_bits,
        // A client that hints it resets its window is held to it.
        receive_no_context_takeover: offer.client_no_context_takeover || !config.receive_context_takeover,
        receive_window_bits,
        level: config.level.min(9),
        min_size: config.min_size,
        announce_send_window: offer.server_max_window_bits.is_some() || send_window_bits < MAX_WINDOW_BITS,
        announce_receive_window: offer.client_max_window_bits.is_some() && receive_window_bits < MAX_WINDOW_BITS,
        configured_send_window_bits: our_send,
    })
}

/// Client: check the server's `Sec-WebSocket-Extensions` values against
/// the offer `config` wrote ([`DeflateConfig::write_offer`]). `Ok(None)`:
/// no extension (the server declined). `Err`: the answer is not one our
/// offer allows (fail the handshake, RFC 6455 §4.1).
pub fn accept_response<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
    config: &DeflateConfig,
) -> Result<Option<Deflate>, Invalid> {
    let mut agreed = None;
    for (name, params) in extensions(values) {
        if !name.eq_ignore_ascii_case(EXTENSION.as_bytes()) {
            return Err("extension not offered");
        }
        if agreed.is_some() {
            return Err("permessage-deflate answered twice");
        }
        agreed = Some(accept_answer(Params::parse(params)?, config)?);
    }
    Ok(agreed)
}

fn accept_answer(answer: Params, config: &DeflateConfig) -> Result<Deflate, Invalid> {
    let our_send = clamp_bits(config.send_max_window_bits);
    let our_receive = clamp_bits(config.receive_max_window_bits);
    if !config.receive_context_takeover && !answer.server_no_context_takeover {
        return Err("server_no_context_takeover was required");
    }
    let receive_window_bits = match answer.server_max_window_bits {
        Some(bits) if bits > our_receive => return Err("server_max_window_bits over the offer"),
        Some(bits) => bits,
        None => our_receive,
    };
    let send_window_bits = match answer.client_max_window_bits {
        None => our_send,
        Some(None) => return Err("client_max_window_bits needs a value"),
        Some(Some(bits)) if bits > our_send => return Err("client_max_window_bits over the offer"),
        Some(Some(bits)) => bits,
    };
    Ok(Deflate {
        send_no_context_takeover: answer.client_no_context_takeover || !config.send_context_takeover,
        send_window_bits,
        receive_no_context_takeover: answer.server_no_context_takeover,
        receive_window_bits,
        level: config.level.min(9),
        min_size: config.min_size,
        announce_send_window: false,
        announce_receive_window: false,
        configured_send_window_bits: our_send,
    })
}

/// What an [`Inflate`] could not do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// The input is not a valid deflate stream: close with
    /// [`INFLATE_FAILED`].
    Corrupt,
    /// The sink refused output (the message is over the limit): stop at
    /// once, close with 1009.
    TooLarge,
}

/// A raw-deflate (RFC 1951) decompressor, supplied by the adapter. It
/// holds the LZ77 window between calls; the core decides when it resets.
pub trait Inflate {
    /// Decompress all of `input`, the next compressed bytes of a message,
    /// handing every decompressed byte to `sink` before returning. Returns
    /// [`InflateError::TooLarge`] as soon as `sink` refuses, without
    /// producing more.
    fn inflate(
        &mut self,
        input: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> Result<(), TooLarge>,
    ) -> Result<(), InflateError>;

    /// Forget the window: the next message starts a fresh stream.
    fn reset(&mut self);

    /// The message being inflated is over, whole or failed (called once
    /// per compressed message, after its last [`Inflate::inflate`]). An
    /// inflater that accounts for what unfinished messages hold gives it
    /// back here.
    fn message_done(&mut self) {}
}

/// Server: write the header of a whole compressed message of `len` bytes
/// (FIN, RSV1, unmasked) into `out`, for a frame encoded once and sent to
/// many connections that agreed to permessage-deflate without server
/// context takeover. Returns the header's length.
///
/// ```
/// use roomwire_core::MessageKind;
/// use roomwire_core::deflate::write_server_header;
/// let mut out = [0u8; 10];
/// assert_eq!(write_server_header(MessageKind::Text, 300, &mut out), Ok(4));
/// assert_eq!(out[..4], [0xC1, 126, 0x01, 0x2C]);
/// ```
pub fn write_server_header(kind: MessageKind, len: u64, out: &mut [u8]) -> Result<usize, InsufficientSize> {
    FrameHeader { fin: true, rsv: 0b100, opcode: kind.opcode(), mask: None, payload_len: len }.encode(out)
}

/// A compressed message's payload: the output of a sync-flushed
/// compressor without its final [`TAIL`] (§7.2.1).
///
/// ```
/// use roomwire_core::deflate::strip_tail;
/// assert_eq!(strip_tail(&[0xf2, 0x48, 0x02, 0x00, 0x00, 0x00, 0xff, 0xff]), &[0xf2, 0x48, 0x02, 0x00]);
/// ```
pub fn strip_tail(compressed: &[u8]) -> &[u8] {
    compressed.strip_suffix(&TAIL).unwrap_or(compressed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn server(offer: &str, config: &DeflateConfig) -> Option<(Deflate, std::string::String)> {
        let agreed = negotiate([offer.as_bytes()], config)?;
        let mut out = [0u8; MAX_HEADER_VALUE];
        let n = agreed.write_response(&mut out).unwrap();
        Some((agreed, std::string::String::from_utf8(out[..n].to_vec()).unwrap()))
    }

    #[test]
    fn a_server_honours_what_the_offer_asks_and_limits_what_it_may() {
        let config = DeflateConfig { receive_context_takeover: true, ..DeflateConfig::DEFAULT };
        let (agreed, response) = server("permessage-deflate", &config).unwrap();
        assert_eq!(response, "permessage-deflate; server_no_context_takeover");
        let (_, response) = server("permessage-deflate", &DeflateConfig::DEFAULT).unwrap();
        assert_eq!(response, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
        assert_eq!((agreed.send_window_bits, agreed.receive_window_bits), (15, 15));

        let (agreed, response) =
            server("permessage-deflate; server_max_window_bits=8; client_max_window_bits", &config).unwrap();
        assert_eq!(response, "permessage-deflate; server_no_context_takeover; server_max_window_bits=8");
        assert_eq!((agreed.send_window_bits, agreed.zlib_send_window_bits()), (8, 9));

        let keep = DeflateConfig { send_context_takeover: true, receive_max_window_bits: 10, ..config };
        let (agreed, response) =
            server("permessage-deflate; client_no_context_takeover; client_max_window_bits=12", &keep).unwrap();
        assert_eq!(response, "permessage-deflate; client_no_context_takeover; client_max_window_bits=10");
        assert!(agreed.receive_no_context_takeover && !agreed.send_no_context_takeover);
        // A limit the client cannot be told declines its offer.
        assert_eq!(server("permessage-deflate", &keep), None);
    }

    #[test]
    fn invalid_offers_are_declined_and_the_next_one_taken() {
        let config = DeflateConfig::DEFAULT;
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=07",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; mystery",
            "permessage-deflate; server_max_window_bits=\"1\\0\"",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(server(bad, &config), None, "{bad}");
        }
        let two = "permessage-deflate; mystery, permessage-deflate; server_max_window_bits=\"10\"";
        assert_eq!(server(two, &config).unwrap().0.send_window_bits, 10);
        // Quoted commas belong to their parameter.
        let quoted = "foo; a=\"x,permessage-deflate\", permessage-deflate";
        assert!(server(quoted, &config).is_some());
    }

    #[test]
    fn a_client_takes_only_answers_its_offer_allows() {
        let config = DeflateConfig {
            receive_context_takeover: true,
            receive_max_window_bits: 12,
            send_max_window_bits: 10,
            ..DeflateConfig::DEFAULT
        };
        let mut out = [0u8; MAX_HEADER_VALUE];
        let n = config.write_offer(&mut out).unwrap();
        assert_eq!(
            &out[..n],
            b"permessage-deflate; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=10"
        );
        let answer = |value: &str| accept_response([value.as_bytes()], &config);
        let agreed = answer("permessage-deflate; client_max_window_bits=9").unwrap().unwrap();
        assert_eq!((agreed.send_window_bits, agreed.receive_window_bits), (9, 12));
        assert!(agreed.send_no_context_takeover);
        assert_eq!(answer("").unwrap(), None);
        assert!(answer("permessage-deflate; server_max_window_bits=13").is_err());
        assert!(answer("permessage-deflate; client_max_window_bits=11").is_err());
        assert!(answer("permessage-deflate; client_max_window_bits").is_err());
        assert!(answer("permessage-deflate, permessage-deflate").is_err());
        assert!(answer("x-other").is_err());
        let strict = DeflateConfig { receive_context_takeover: false, ..config };
        assert!(accept_response([b"permessage-deflate".as_slice()], &strict).is_err());
    }

    #[test]
    fn every_answer_a_server_writes_is_one_its_client_accepts() {
        let offers = [
            "permessage-deflate",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=9; client_max_window_bits=8",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ];
        for offer in offers {
            for bits in [8, 11, 15] {
                let config = DeflateConfig { send_max_window_bits: bits, ..DeflateConfig::DEFAULT };
                let Some((agreed, response)) = server(offer, &config) else { continue };
                let client = Params::parse(extensions([offer.as_bytes()]).next().unwrap().1).unwrap();
                let answer = Params::parse(extensions([response.as_bytes()]).next().unwrap().1).unwrap();
                assert!(answer.server_max_window_bits.unwrap_or(15) <= client.server_max_window_bits.unwrap_or(15));
                if client.server_no_context_takeover {
                    assert!(answer.server_no_context_takeover);
                }
                if client.client_max_window_bits.is_none() {
                    assert_eq!(answer.client_max_window_bits, None);
                }
                assert!(agreed.send_window_bits <= bits);
            }
        }
    }
}
