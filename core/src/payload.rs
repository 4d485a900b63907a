//! Typed payloads: a channel's messages encoded for either wire.
//!
//! The same serde value is the payload of an Alepha frame (`message` of
//! `{roomId, message}`), of a roomwire JSON envelope (`data`) and of a
//! roomwire postcard envelope (the rest of the frame). JSON is
//! `serde_json` under the `std` feature and `serde-json-core` without;
//! postcard is postcard.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::channel::Channel;
use crate::envelope::Encoding;
use crate::error::InsufficientSize;
use crate::json;
use crate::nesting::{Bounded, Nesting, Refused};
use crate::wire::WireFormat;
#[cfg(feature = "std")]
use crate::writer::Writer;

/// A typed message could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// `out` is too small; the exact size needed is known (postcard, and
    /// JSON under the `std` feature). The contents of `out` are
    /// unspecified.
    InsufficientSize(InsufficientSize),
    /// `out` is too small and the encoder cannot tell by how much (JSON
    /// without `std`): retry with a bigger buffer. The contents of `out`
    /// are unspecified.
    BufferFull,
    /// The value has no encoding in this format (a serde error, such as a
    /// map with non-string keys in JSON, or a sequence of unknown length
    /// in postcard).
    Unsupported,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InsufficientSize(e) => fmt::Display::fmt(e, f),
            Self::BufferFull => f.write_str("output buffer too small"),
            Self::Unsupported => f.write_str("value cannot be encoded in this format"),
        }
    }
}

impl core::error::Error for EncodeError {}

impl From<InsufficientSize> for EncodeError {
    fn from(e: InsufficientSize) -> Self {
        Self::InsufficientSize(e)
    }
}

/// A payload is not a valid encoding of the expected type. `Display`
/// gives the detail (from the deserializer).
#[derive(Debug)]
pub struct DecodeError(DecodeRepr);

#[derive(Debug)]
enum DecodeRepr {
    Json(json::JsonError),
    #[cfg(feature = "std")]
    Serde(serde_json::Error),
    #[cfg(not(feature = "std"))]
    Serde(serde_json_core::de::Error),
    Postcard(postcard::Error),
    TooDeep,
    TooManyItems,
    #[cfg_attr(feature = "std", allow(dead_code))]
    KeyNotString,
    #[cfg_attr(feature = "std", allow(dead_code))]
    LongString,
    TrailingBytes,
}

impl DecodeError {
    /// Whether the payload was not even JSON (as opposed to JSON of the
    /// wrong shape). Always false for postcard payloads.
    pub fn is_syntax(&self) -> bool {
        matches!(self.0, DecodeRepr::Json(_))
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            DecodeRepr::Json(e) => fmt::Display::fmt(e, f),
            DecodeRepr::Serde(e) => fmt::Display::fmt(e, f),
            DecodeRepr::Postcard(e) => fmt::Display::fmt(e, f),
            DecodeRepr::TooDeep => write!(f, "message nested deeper than {} levels", json::MAX_DEPTH),
            DecodeRepr::TooManyItems => write!(
                f,
                "message has more list items and map entries than its length allows ({} beyond it)",
                crate::nesting::ZERO_SIZED_ITEMS
            ),
            DecodeRepr::KeyNotString => f.write_str("map keys must be strings"),
            DecodeRepr::LongString => f.write_str("an escaped string is longer, unescaped, than the scratch buffer"),
            DecodeRepr::TrailingBytes => f.write_str("trailing bytes after the message"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Encodes a typed message as the payload of `format`: postcard for
/// [`WireFormat::Postcard`], JSON otherwise (with `serde_json` under the
/// `std` feature, `serde-json-core` without). Returns the length written.
///
/// Without `std`, JSON serialization is `serde-json-core`'s, which does
/// not support `char` values or serde's `custom` errors (they panic
/// there), and serializes byte slices raw: keep such types out of
/// messages.
///
/// ```
/// use roomwire_core::payload::encode_payload;
/// use roomwire_core::wire::WireFormat;
///
/// #[derive(serde::Serialize)]
/// struct Chat<'a> { content: &'a str }
///
/// let mut out = [0u8; 32];
/// let n = encode_payload(WireFormat::Json, &Chat { content: "hi" }, &mut out)?;
/// assert_eq!(&out[..n], br#"{"content":"hi"}"#);
/// let n = encode_payload(WireFormat::Postcard, &Chat { content: "hi" }, &mut out)?;
/// assert_eq!(&out[..n], b"\x02hi");
/// # Ok::<(), roomwire_core::payload::EncodeError>(())
/// ```
pub fn encode_payload<T: Serialize + ?Sized>(
    format: WireFormat,
    value: &T,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    match Encoding::from(format) {
        Encoding::Postcard => match postcard::to_slice(value, out) {
            Ok(used) => Ok(used.len()),
            Err(postcard::Error::SerializeBufferFull) => {
                match postcard::serialize_with_flavor::<T, _, _>(value, postcard::ser_flavors::Size::default()) {
                    Ok(required) => Err(EncodeError::InsufficientSize(InsufficientSize { required })),
                    Err(_) => Err(EncodeError::Unsupported),
                }
            }
            Err(_) => Err(EncodeError::Unsupported),
        },
        Encoding::Json => encode_json(value, out),
    }
}

/// [`encode_payload`] into a growable buffer (feature `std`): `out` is
/// cleared and receives exactly the payload, growing as it is written, so
/// no caller guesses sizes or retries.
///
/// ```
/// use roomwire_core::payload::encode_payload_to_vec;
/// use roomwire_core::wire::WireFormat;
/// #[derive(serde::Serialize)]
/// struct Chat<'a> { content: &'a str }
/// let mut out = Vec::new();
/// encode_payload_to_vec(WireFormat::Json, &Chat { content: &"x".repeat(1000) }, &mut out)?;
/// assert_eq!(out.len(), 1000 + r#"{"content":""}"#.len());
/// # Ok::<(), roomwire_core::payload::EncodeError>(())
/// ```
#[cfg(feature = "std")]
pub fn encode_payload_to_vec<T: Serialize + ?Sized>(
    format: WireFormat,
    value: &T,
    out: &mut alloc::vec::Vec<u8>,
) -> Result<(), EncodeError> {
    out.clear();
    match Encoding::from(format) {
        Encoding::Postcard => {
            let taken = core::mem::take(out);
            *out = postcard::to_extend(value, taken).map_err(|_| EncodeError::Unsupported)?;
        }
        Encoding::Json => serde_json::to_writer(&mut *out, value).map_err(|_| EncodeError::Unsupported)?,
    }
    Ok(())
}

#[cfg(feature = "std")]
fn encode_json<T: Serialize + ?Sized>(value: &T, out: &mut [u8]) -> Result<usize, EncodeError> {
    let capacity = out.len();
    let mut w = Writer::new(out);
    // The writer never fails: it counts what does not fit.
    serde_json::to_writer(&mut w, value).map_err(|_| EncodeError::Unsupported)?;
    let required = w.len();
    if required > capacity { Err(EncodeError::InsufficientSize(InsufficientSize { required })) } else { Ok(required) }
}

#[cfg(not(feature = "std"))]
fn encode_json<T: Serialize + ?Sized>(value: &T, out: &mut [u8]) -> Result<usize, EncodeError> {
    serde_json_core::to_slice(value, out).map_err(|_| EncodeError::BufferFull)
}

/// Decodes a typed message from the payload of `format` (see
/// [`encode_payload`]). `T` may borrow strings from `payload`.
///
/// The whole payload must be consumed. Nesting is bounded by
/// [`json::MAX_DEPTH`] in both formats (JSON is first checked by
/// [`json::validate`]; postcard is counted as it decodes), so a recursive
/// type cannot be made to exhaust the stack;
/// without `std`, escaped strings are unescaped into `scratch`, which must
/// hold the longest escaped string of the message (escaped strings cannot
/// be borrowed as `&str`, with or without `std`).
///
/// ```
/// use roomwire_core::payload::decode_payload;
/// use roomwire_core::wire::WireFormat;
///
/// #[derive(serde::Deserialize, Debug, PartialEq)]
/// struct Chat<'a> { content: &'a str }
///
/// let chat: Chat = decode_payload(WireFormat::Json, br#"{"content":"hi"}"#, &mut [])?;
/// assert_eq!(chat, Chat { content: "hi" });
/// assert!(decode_payload::<Chat>(WireFormat::Json, br#"{"content":1}"#, &mut []).is_err());
/// # Ok::<(), roomwire_core::payload::DecodeError>(())
/// ```
pub fn decode_payload<'a, T: Deserialize<'a>>(
    format: WireFormat,
    payload: &'a [u8],
    scratch: &mut [u8],
) -> Result<T, DecodeError> {
    match Encoding::from(format) {
        Encoding::Postcard => {
            // postcard has no nesting limit of its own: the same as JSON's.
            let nesting = Nesting::new(json::MAX_DEPTH, payload.len());
            let mut deserializer = postcard::Deserializer::from_bytes(payload);
            let value = T::deserialize(Bounded::new(&mut deserializer, &nesting))
                .map_err(|e| DecodeError(refused_or(&nesting, DecodeRepr::Postcard(e))))?;
            let rest = deserializer.finalize().map_err(|e| DecodeError(DecodeRepr::Postcard(e)))?;
            if rest.is_empty() { Ok(value) } else { Err(DecodeError(DecodeRepr::TrailingBytes)) }
        }
        Encoding::Json => {
            json::validate(payload).map_err(|e| DecodeError(DecodeRepr::Json(e)))?;
            decode_json(payload, scratch)
        }
    }
}

#[cfg(feature = "std")]
fn decode_json<'a, T: Deserialize<'a>>(payload: &'a [u8], _scratch: &mut [u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(payload).map_err(|e| DecodeError(DecodeRepr::Serde(e)))
}

/// What the bounds of `nesting` refused, or else `other`.
fn refused_or(nesting: &Nesting, other: DecodeRepr) -> DecodeRepr {
    match nesting.refused() {
        Some(Refused::TooDeep) => DecodeRepr::TooDeep,
        Some(Refused::TooManyItems) => DecodeRepr::TooManyItems,
        Some(Refused::KeyNotString) => DecodeRepr::KeyNotString,
        Some(Refused::LongString) => DecodeRepr::LongString,
        None => other,
    }
}

/// Through the bounds, with string keys (serde-json-core panics when a map
/// key is asked for as anything else: a number, a `String`, an enum), and
/// strings unescaped by the core (serde-json-core fails on surrogate
/// pairs): given no buffer, serde-json-core hands them over raw.
#[cfg(not(feature = "std"))]
fn decode_json<'a, T: Deserialize<'a>>(payload: &'a [u8], scratch: &mut [u8]) -> Result<T, DecodeError> {
    let nesting = Nesting::new(json::MAX_DEPTH, payload.len()).string_keys().unescaping_into(scratch);
    let mut deserializer = serde_json_core::de::Deserializer::new(payload, None);
    let value = T::deserialize(Bounded::new(&mut deserializer, &nesting))
        .map_err(|e| DecodeError(refused_or(&nesting, DecodeRepr::Serde(e))))?;
    deserializer.end().map_err(|e| DecodeError(DecodeRepr::Serde(e)))?;
    Ok(value)
}

/// A client message was refused: its `Display` is Alepha's error text,
/// `Message validation failed: <detail>`, sent back as
/// [`code::VALIDATION_FAILED`](crate::envelope::code::VALIDATION_FAILED) (roomwire wire) or `{"error": ...}`
/// (Alepha wire).
#[derive(Debug)]
#[non_exhaustive]
pub enum MessageError {
    /// The payload does not decode as the channel's `Out` type.
    Decode(DecodeError),
    /// [`Channel::validate`] refused it, with this reason.
    Invalid(&'static str),
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Message validation failed: ")?;
        match self {
            Self::Decode(e) => fmt::Display::fmt(e, f),
            Self::Invalid(reason) => f.write_str(reason),
        }
    }
}

impl core::error::Error for MessageError {}

impl From<DecodeError> for MessageError {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e)
    }
}

/// Decodes a client message of channel `C` ([`decode_payload`] into
/// `C::Out`), then applies [`Channel::validate`].
///
/// ```
/// use roomwire_core::payload::decode_message;
/// use roomwire_core::wire::WireFormat;
///
/// #[derive(serde::Serialize, serde::Deserialize, Debug)]
/// pub struct Say<'a> { pub text: &'a str }
///
/// roomwire_core::channel! {
///     /// Echo.
///     pub struct Echo { path: "/ws/echo", in: Say<'a>, out: Say<'a> }
/// }
///
/// let say = decode_message::<Echo>(WireFormat::Postcard, b"\x02hi", &mut [])?;
/// assert_eq!(say.text, "hi");
/// let err = decode_message::<Echo>(WireFormat::Json, b"{}", &mut []).unwrap_err();
/// assert!(err.to_string().starts_with("Message validation failed: "));
/// # Ok::<(), roomwire_core::payload::MessageError>(())
/// ```
pub fn decode_message<'a, C: Channel>(
    format: WireFormat,
    payload: &'a [u8],
    scratch: &mut [u8],
) -> Result<C::Out<'a>, MessageError> {
    let message = decode_payload::<C::Out<'a>>(format, payload, scratch)?;
    C::validate(&message).map_err(MessageError::Invalid)?;
    Ok(message)
}
