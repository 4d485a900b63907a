//! A minimal, strict JSON toolkit: validation, raw access to an object's
//! members, string unescaping and escaping. No allocation, no recursion.
//!
//! Both wires need what a deserializer does not offer: the *raw* text of a
//! member (the Alepha `message` payload, the roomwire `data` payload) so it
//! can be handed on or typed later, and cheap checks on values (is this
//! member a string, an integer, JavaScript-falsy?). This module provides
//! them over `&[u8]`:
//!
//! * [`validate`] checks a whole document against the RFC 8259 grammar,
//!   with nesting bounded by [`MAX_DEPTH`] (tracked in a bit stack, so the
//!   check runs in constant stack space and linear time);
//! * [`object_members`] iterates over the top-level members of an object,
//!   as `(key, raw value)` pairs;
//! * [`RawStr`] is a string as it appears in the document, compared and
//!   unescaped without allocation;
//! * [`as_string`], [`as_u32`] and [`is_falsy`] read single values.
//!
//! Strings are checked strictly: control characters must be escaped, every
//! escape must be one of RFC 8259's, and a `\uXXXX` escape of a UTF-16
//! surrogate must be a high surrogate followed by a low one (a lone
//! surrogate has no UTF-8 form). Documents must be UTF-8.
//!
//! ```
//! use roomwire_core::json::{self, JsonKind};
//!
//! let doc = br#"{"roomId":"lobby","message":{"content":"hi"}}"#;
//! assert_eq!(json::validate(doc), Ok(JsonKind::Object));
//!
//! let mut members = json::object_members(doc)?.unwrap();
//! let (key, value) = members.next().unwrap();
//! assert!(key.eq_str("roomId"));
//! assert_eq!(json::as_string(value).unwrap().as_borrowed(), Some("lobby"));
//! let (key, value) = members.next().unwrap();
//! assert!(key.eq_str("message"));
//! assert_eq!(value, br#"{"content":"hi"}"#);
//! assert!(members.next().is_none());
//! # Ok::<(), json::JsonError>(())
//! ```

use core::fmt;

use crate::error::InsufficientSize;
use crate::writer::{Writer, write_twice};

/// The deepest nesting of arrays and objects [`validate`] accepts.
///
/// This also bounds the recursion of the deserializers that run after
/// validation (typed messages).
pub const MAX_DEPTH: usize = 64;

// The container stack is one bit per level in a `u64`.
const _: () = assert!(MAX_DEPTH <= 64);

/// What a JSON value is, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JsonKind {
    /// `{ ... }`
    Object,
    /// `[ ... ]`
    Array,
    /// `"..."`
    String,
    /// A number.
    Number,
    /// `true` or `false`.
    Bool,
    /// `null`.
    Null,
}

/// Why bytes are not (acceptable) JSON, or why an output did not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonError {
    /// The document is not UTF-8; the first `offset` bytes are.
    InvalidUtf8 {
        /// Length of the valid UTF-8 prefix.
        offset: usize,
    },
    /// The grammar is broken at byte `offset` (unexpected byte or end).
    Syntax {
        /// Byte offset of the first error.
        offset: usize,
    },
    /// Arrays and objects are nested deeper than [`MAX_DEPTH`]; `offset`
    /// is the opening bracket that goes too deep.
    TooDeep {
        /// Byte offset of the bracket.
        offset: usize,
    },
    /// An output buffer is too small.
    InsufficientSize(InsufficientSize),
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUtf8 { offset } => write!(f, "invalid UTF-8 at byte {offset}"),
            Self::Syntax { offset } => write!(f, "invalid JSON at byte {offset}"),
            Self::TooDeep { offset } => write!(f, "JSON nested deeper than {MAX_DEPTH} levels at byte {offset}"),
            Self::InsufficientSize(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl core::error::Error for JsonError {}

impl From<InsufficientSize> for JsonError {
    fn from(e: InsufficientSize) -> Self {
        Self::InsufficientSize(e)
    }
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

/// Checks that `doc` is exactly one JSON value, optionally surrounded by
/// whitespace, and says what kind of value it is.
///
/// Linear time, constant space; nesting deeper than [`MAX_DEPTH`] is
/// refused.
///
/// ```
/// use roomwire_core::json::{validate, JsonError, JsonKind};
///
/// assert_eq!(validate(b" [1, 2.5e3, \"\\u00e9\", null] "), Ok(JsonKind::Array));
/// assert_eq!(validate(b"-0"), Ok(JsonKind::Number));
/// assert_eq!(validate(b"[1,]"), Err(JsonError::Syntax { offset: 3 }));
/// assert_eq!(validate(b"01"), Err(JsonError::Syntax { offset: 1 }));
/// assert!(validate(b"{'a':1}").is_err());
/// ```
pub fn validate(doc: &[u8]) -> Result<JsonKind, JsonError> {
    core::str::from_utf8(doc).map_err(|e| JsonError::InvalidUtf8 { offset: e.valid_up_to() })?;
    let start = skip_ws(doc, 0);
    let (kind, end) = scan_value(doc, start)?;
    let end = skip_ws(doc, end);
    if end != doc.len() {
        return Err(JsonError::Syntax { offset: end });
    }
    Ok(kind)
}

/// Index of the first non-whitespace byte at or after `i`.
pub(crate) fn skip_ws(doc: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = doc.get(i) {
        i += 1;
    }
    i
}

/// `bytes` without leading and trailing JSON whitespace.
pub(crate) fn trim(bytes: &[u8]) -> &[u8] {
    let start = skip_ws(bytes, 0);
    let mut end = bytes.len();
    while end > start {
        match bytes.get(end - 1) {
            Some(b' ' | b'\t' | b'\n' | b'\r') => end -= 1,
            _ => break,
        }
    }
    bytes.get(start..end).unwrap_or(&[])
}

fn syntax(offset: usize) -> JsonError {
    JsonError::Syntax { offset }
}

/// Scans the value starting at `start` (no leading whitespace) and returns
/// its kind and the index just past it. Iterative: containers are tracked
/// in a 64-bit stack (bit set = object).
fn scan_value(doc: &[u8], start: usize) -> Result<(JsonKind, usize), JsonError> {
    let mut stack: u64 = 0;
    let mut depth: usize = 0;
    let mut i = start;
    let mut top: Option<JsonKind> = None;
    'value: loop {
        let first = doc.get(i).copied();
        let kind = match first {
            Some(b'{') => JsonKind::Object,
            Some(b'[') => JsonKind::Array,
            Some(b'"') => JsonKind::String,
            Some(b'-' | b'0'..=b'9') => JsonKind::Number,
            Some(b't' | b'f') => JsonKind::Bool,
            Some(b'n') => JsonKind::Null,
            _ => return Err(syntax(i)),
        };
        let top_kind = *top.get_or_insert(kind);
        match first {
            Some(open @ (b'{' | b'[')) => {
                if depth >= MAX_DEPTH {
                    return Err(JsonError::TooDeep { offset: i });
                }
                let is_object = open == b'{';
                let bit = 1u64 << depth;
                if is_object {
                    stack |= bit;
                } else {
                    stack &= !bit;
                }
                depth += 1;
                i = skip_ws(doc, i + 1);
                let close = if is_object { b'}' } else { b']' };
                if doc.get(i) == Some(&close) {
                    i += 1;
                    depth -= 1;
                } else {
                    if is_object {
                        i = scan_key(doc, i)?;
                    }
                    continue 'value;
                }
            }
            Some(b'"') => i = scan_string(doc, i)?.0,
            Some(b't') => i = scan_literal(doc, i, b"true")?,
            Some(b'f') => i = scan_literal(doc, i, b"false")?,
            Some(b'n') => i = scan_literal(doc, i, b"null")?,
            _ => i = scan_number(doc, i)?,
        }
        // A value is complete: close containers until one continues.
        loop {
            if depth == 0 {
                return Ok((top_kind, i));
            }
            i = skip_ws(doc, i);
            let in_object = stack & (1u64 << (depth - 1)) != 0;
            match (in_object, doc.get(i)) {
                (true, Some(b',')) => {
                    i = scan_key(doc, skip_ws(doc, i + 1))?;
                    continue 'value;
                }
                (false, Some(b',')) => {
                    i = skip_ws(doc, i + 1);
                    continue 'value;
                }
                (true, Some(b'}')) | (false, Some(b']')) => {
                    i += 1;
                    depth -= 1;
                }
                _ => return Err(syntax(i)),
            }
        }
    }
}

/// Scans `"key"` `:` and the whitespace after it; returns the index of the
/// member's value.
fn scan_key(doc: &[u8], i: usize) -> Result<usize, JsonError> {
    if doc.get(i) != Some(&b'"') {
        return Err(syntax(i));
    }
    let (end, _) = scan_string(doc, i)?;
    let colon = skip_ws(doc, end);
    if doc.get(colon) != Some(&b':') {
        return Err(syntax(colon));
    }
    Ok(skip_ws(doc, colon + 1))
}

fn scan_literal(doc: &[u8], i: usize, literal: &[u8]) -> Result<usize, JsonError> {
    let end = i + literal.len();
    if doc.get(i..end) == Some(literal) { Ok(end) } else { Err(syntax(i)) }
}

fn skip_digits(doc: &[u8], mut i: usize) -> usize {
    while let Some(b'0'..=b'9') = doc.get(i) {
        i += 1;
    }
    i
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
fn scan_number(doc: &[u8], start: usize) -> Result<usize, JsonError> {
    let mut i = start;
    if doc.get(i) == Some(&b'-') {
        i += 1;
    }
    match doc.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = skip_digits(doc, i + 1),
        _ => return Err(syntax(i)),
    }
    if doc.get(i) == Some(&b'.') {
        i += 1;
        if !matches!(doc.get(i), Some(b'0'..=b'9')) {
            return Err(syntax(i));
        }
        i = skip_digits(doc, i);
    }
    if let Some(b'e' | b'E') = doc.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = doc.get(i) {
            i += 1;
        }
        if !matches!(doc.get(i), Some(b'0'..=b'9')) {
            return Err(syntax(i));
        }
        i = skip_digits(doc, i);
    }
    Ok(i)
}

fn hex4(doc: &[u8], i: usize) -> Result<u32, JsonError> {
    let digits = doc.get(i..i + 4).ok_or(syntax(i))?;
    let mut value = 0;
    for (k, &d) in digits.iter().enumerate() {
        let nibble = (d as char).to_digit(16).ok_or(syntax(i + k))?;
        value = value << 4 | nibble;
    }
    Ok(value)
}

/// Scans the string whose opening quote is at `start`; returns the index
/// past the closing quote and whether it contains escapes. The bytes are
/// assumed UTF-8 (checked by the callers); `"` and `\` never occur inside
/// a multi-byte sequence.
fn scan_string(doc: &[u8], start: usize) -> Result<(usize, bool), JsonError> {
    let mut i = start + 1;
    let mut escaped = false;
    loop {
        match doc.get(i) {
            None => return Err(syntax(i)),
            Some(b'"') => return Ok((i + 1, escaped)),
            Some(b'\\') => {
                escaped = true;
                match doc.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                    Some(b'u') => {
                        let unit = hex4(doc, i + 2)?;
                        if (0xDC00..0xE000).contains(&unit) {
                            return Err(syntax(i)); // lone low surrogate
                        }
                        if (0xD800..0xDC00).contains(&unit) {
                            let low_at = i + 6;
                            if doc.get(low_at..low_at + 2) != Some(b"\\u") {
                                return Err(syntax(low_at)); // lone high surrogate
                            }
                            let low = hex4(doc, low_at + 2)?;
                            if !(0xDC00..0xE000).contains(&low) {
                                return Err(syntax(low_at));
                            }
                            i += 12;
                        } else {
                            i += 6;
                        }
                    }
                    _ => return Err(syntax(i)),
                }
            }
            Some(&b) if b < 0x20 => return Err(syntax(i)),
            Some(_) => i += 1,
        }
    }
}

// ---------------------------------------------------------------------------
// Object members
// ---------------------------------------------------------------------------

/// If `doc` is a valid JSON object, an iterator over its top-level members
/// in document order; `Ok(None)` if it is valid JSON of another kind.
///
/// Keys may repeat: JavaScript's `JSON.parse` keeps the *last* value, and
/// so do this crate's wires.
///
/// ```
/// use roomwire_core::json::object_members;
///
/// let members = object_members(br#"{"a":1, "b" : [true] }"#)?.unwrap();
/// let pairs: Vec<_> = members.map(|(k, v)| (k.as_borrowed().unwrap(), v)).collect();
/// assert_eq!(pairs, [("a", &b"1"[..]), ("b", &b"[true]"[..])]);
///
/// assert!(object_members(b"[1]")?.is_none());
/// assert!(object_members(b"{").is_err());
/// # Ok::<(), roomwire_core::json::JsonError>(())
/// ```
pub fn object_members(doc: &[u8]) -> Result<Option<Members<'_>>, JsonError> {
    match validate(doc)? {
        JsonKind::Object => Ok(Some(Members { doc, pos: skip_ws(doc, 0), done: false })),
        _ => Ok(None),
    }
}

/// Iterator over the top-level members of a validated object: see
/// [`object_members`]. Yields each key and its raw value (without
/// surrounding whitespace).
#[derive(Debug, Clone)]
pub struct Members<'a> {
    doc: &'a [u8],
    /// At the opening brace, or just past the previous value.
    pos: usize,
    done: bool,
}

impl<'a> Iterator for Members<'a> {
    type Item = (RawStr<'a>, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.step();
        if item.is_none() {
            self.done = true;
        }
        item
    }
}

impl<'a> Members<'a> {
    fn step(&mut self) -> Option<(RawStr<'a>, &'a [u8])> {
        let doc = self.doc;
        let i = skip_ws(doc, self.pos);
        match doc.get(i) {
            Some(b'{' | b',') => {}
            _ => return None,
        }
        let key_at = skip_ws(doc, i + 1);
        if doc.get(key_at) != Some(&b'"') {
            return None; // `{}`
        }
        let (key_end, escaped) = scan_string(doc, key_at).ok()?;
        let key = core::str::from_utf8(doc.get(key_at + 1..key_end - 1)?).ok()?;
        let value_at = scan_key(doc, key_at).ok()?;
        let (_, value_end) = scan_value(doc, value_at).ok()?;
        self.pos = value_end;
        Some((RawStr { raw: key, escaped }, doc.get(value_at..value_end)?))
    }
}

/// If `doc` is a valid JSON array, an iterator over its elements' raw
/// values (without surrounding whitespace), in order; `Ok(None)` if it is
/// valid JSON of another kind.
///
/// ```
/// use roomwire_core::json::array_elements;
///
/// let elements: Vec<_> = array_elements(br#"[ "a", {"b":[1]} ,2]"#)?.unwrap().collect();
/// assert_eq!(elements, [&br#""a""#[..], br#"{"b":[1]}"#, b"2"]);
/// assert_eq!(array_elements(b"[]")?.unwrap().count(), 0);
/// assert!(array_elements(b"{}")?.is_none());
/// # Ok::<(), roomwire_core::json::JsonError>(())
/// ```
pub fn array_elements(doc: &[u8]) -> Result<Option<Elements<'_>>, JsonError> {
    match validate(doc)? {
        JsonKind::Array => Ok(Some(Elements { doc, pos: skip_ws(doc, 0) })),
        _ => Ok(None),
    }
}

/// Iterator over the elements of a validated array: see
/// [`array_elements`].
#[derive(Debug, Clone)]
pub struct Elements<'a> {
    doc: &'a [u8],
    /// At the opening bracket, or just past the previous element.
    pos: usize,
}

impl<'a> Iterator for Elements<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let doc = self.doc;
        let i = skip_ws(doc, self.pos);
        match doc.get(i) {
            Some(b'[' | b',') => {}
            _ => return None,
        }
        let value_at = skip_ws(doc, i + 1);
        if doc.get(value_at) == Some(&b']') {
            return None; // `[]`
        }
        let (_, value_end) = scan_value(doc, value_at).ok()?;
        self.pos = value_end;
        doc.get(value_at..value_end)
    }
}

// ---------------------------------------------------------------------------
// Strings
// ---------------------------------------------------------------------------

/// A JSON string as it appears in a document: the bytes between the
/// quotes, escapes not yet decoded. Always well formed (it only comes from
/// validated input).
///
/// ```
/// use roomwire_core::json::as_string;
///
/// let s = as_string(br#""caf\u00e9 \"au lait\"""#).unwrap();
/// assert_eq!(s.raw(), r#"caf\u00e9 \"au lait\""#);
/// assert!(s.eq_str("café \"au lait\""));
/// assert_eq!(s.as_borrowed(), None); // has escapes
///
/// let mut buf = [0u8; 32];
/// assert_eq!(s.unescape_into(&mut buf)?, "café \"au lait\"");
/// assert_eq!(s.to_string(), "café \"au lait\""); // Display unescapes
/// # Ok::<(), roomwire_core::json::JsonError>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RawStr<'a> {
    raw: &'a str,
    escaped: bool,
}

impl<'a> RawStr<'a> {
    /// The text between the quotes of a validated string.
    pub(crate) fn new(raw: &'a str) -> Self {
        Self { raw, escaped: raw.as_bytes().contains(&b'\\') }
    }

    /// The text between the quotes, escapes included.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// The value itself when it contains no escape (so needs no copy).
    pub fn as_borrowed(&self) -> Option<&'a str> {
        if self.escaped { None } else { Some(self.raw) }
    }

    /// Whether the unescaped value equals `s`.
    pub fn eq_str(&self, s: &str) -> bool {
        if !self.escaped {
            return self.raw == s;
        }
        let mut rest = s.as_bytes();
        for fragment in self.fragments() {
            let mut utf8 = [0u8; 4];
            let bytes = match fragment {
                Fragment::Str(text) => text.as_bytes(),
                Fragment::Char(c) => c.encode_utf8(&mut utf8).as_bytes(),
            };
            match rest.strip_prefix(bytes) {
                Some(tail) => rest = tail,
                None => return false,
            }
        }
        rest.is_empty()
    }

    /// The length in bytes of the unescaped value.
    pub fn unescaped_len(&self) -> usize {
        if !self.escaped {
            return self.raw.len();
        }
        self.fragments()
            .map(|f| match f {
                Fragment::Str(text) => text.len(),
                Fragment::Char(c) => c.len_utf8(),
            })
            .sum()
    }

    /// Unescapes the value into `out` and returns it as a `&str`. If `out`
    /// is too small, nothing is written and the error says how many bytes
    /// are needed.
    pub fn unescape_into<'b>(&self, out: &'b mut [u8]) -> Result<&'b str, JsonError> {
        let required = self.unescaped_len();
        let out = out.get_mut(..required).ok_or(InsufficientSize { required })?;
        let mut at = 0;
        for fragment in self.fragments() {
            let mut utf8 = [0u8; 4];
            let bytes = match fragment {
                Fragment::Str(text) => text.as_bytes(),
                Fragment::Char(c) => c.encode_utf8(&mut utf8).as_bytes(),
            };
            if let Some(dst) = out.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
            at += bytes.len();
        }
        core::str::from_utf8(out).map_err(|e| JsonError::InvalidUtf8 { offset: e.valid_up_to() })
    }

    /// The unescaped value, character by character.
    pub fn chars(&self) -> impl Iterator<Item = char> + 'a {
        self.fragments().flat_map(|f| {
            let (text, c) = match f {
                Fragment::Str(text) => (text, None),
                Fragment::Char(c) => ("", Some(c)),
            };
            text.chars().chain(c)
        })
    }

    fn fragments(&self) -> Fragments<'a> {
        Fragments { rest: self.raw }
    }
}

impl PartialEq for RawStr<'_> {
    /// Compares the unescaped values.
    fn eq(&self, other: &Self) -> bool {
        match (self.as_borrowed(), other.as_borrowed()) {
            (Some(a), _) => other.eq_str(a),
            (_, Some(b)) => self.eq_str(b),
            _ => self.chars().eq(other.chars()),
        }
    }
}

impl Eq for RawStr<'_> {}

impl fmt::Display for RawStr<'_> {
    /// Writes the unescaped value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for fragment in self.fragments() {
            match fragment {
                Fragment::Str(text) => f.write_str(text)?,
                Fragment::Char(c) => fmt::Write::write_char(f, c)?,
            }
        }
        Ok(())
    }
}

/// A run of unescaped text, or one decoded escape.
enum Fragment<'a> {
    Str(&'a str),
    Char(char),
}

struct Fragments<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Fragments<'a> {
    type Item = Fragment<'a>;

    fn next(&mut self) -> Option<Fragment<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        match self.rest.find('\\') {
            Some(0) => {
                let (c, len) = decode_escape(self.rest.as_bytes());
                // `len` bytes are ASCII (an escape) or 1 (the backslash).
                self.rest = self.rest.get(len..).unwrap_or("");
                Some(Fragment::Char(c))
            }
            Some(n) => {
                let (text, rest) = self.rest.split_at_checked(n)?;
                self.rest = rest;
                Some(Fragment::Str(text))
            }
            None => Some(Fragment::Str(core::mem::take(&mut self.rest))),
        }
    }
}

/// Decodes the escape at the start of `bytes` (which starts with `\`):
/// the character and the escape's length. Input is validated, so the
/// fallback (U+FFFD, consuming only the backslash) is never taken.
fn decode_escape(bytes: &[u8]) -> (char, usize) {
    const FALLBACK: (char, usize) = (char::REPLACEMENT_CHARACTER, 1);
    let simple = match bytes.get(1) {
        Some(b'"') => '"',
        Some(b'\\') => '\\',
        Some(b'/') => '/',
        Some(b'b') => '\u{8}',
        Some(b'f') => '\u{c}',
        Some(b'n') => '\n',
        Some(b'r') => '\r',
        Some(b't') => '\t',
        Some(b'u') => {
            let Ok(unit) = hex4(bytes, 2) else { return FALLBACK };
            if (0xD800..0xDC00).contains(&unit) {
                let Ok(low) = hex4(bytes, 8) else { return FALLBACK };
                let code = 0x10000 + ((unit - 0xD800) << 10) + (low.wrapping_sub(0xDC00) & 0x3FF);
                return char::from_u32(code).map_or(FALLBACK, |c| (c, 12));
            }
            return char::from_u32(unit).map_or(FALLBACK, |c| (c, 6));
        }
        _ => return FALLBACK,
    };
    (simple, 2)
}

// ---------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------

/// If `value` (surrounding whitespace allowed) is a JSON string, that
/// string.
///
/// ```
/// use roomwire_core::json::as_string;
/// assert_eq!(as_string(b" \"lobby\" ").unwrap().as_borrowed(), Some("lobby"));
/// assert!(as_string(b"42").is_none());
/// assert!(as_string(b"\"bad \\x escape\"").is_none());
/// ```
pub fn as_string(value: &[u8]) -> Option<RawStr<'_>> {
    let value = trim(value);
    if value.first() != Some(&b'"') {
        return None;
    }
    let text = core::str::from_utf8(value).ok()?;
    let (end, escaped) = scan_string(value, 0).ok()?;
    if end != value.len() {
        return None;
    }
    Some(RawStr { raw: text.get(1..end - 1)?, escaped })
}

/// If `value` (surrounding whitespace allowed) is a plain non-negative
/// integer that fits a `u32` (`0`, `42`; not `-1`, `1.0`, `1e3`, `01`),
/// its value.
///
/// ```
/// use roomwire_core::json::as_u32;
/// assert_eq!(as_u32(b"4294967295"), Some(u32::MAX));
/// assert_eq!(as_u32(b"4294967296"), None);
/// assert_eq!(as_u32(b"1.0"), None);
/// ```
pub fn as_u32(value: &[u8]) -> Option<u32> {
    let digits = trim(value);
    if digits.is_empty() || (digits.len() > 1 && digits.first() == Some(&b'0')) {
        return None;
    }
    let mut n: u32 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u32::from(d - b'0'))?;
    }
    Some(n)
}

/// [`is_falsy`] without reading numbers as doubles (core's float parser
/// is many kilobytes of flash): `false`, `null`, `""` and numbers whose
/// digits are all zeros. Exact for every value serde writes (it writes a
/// double's shortest form, never one that rounds to zero); a literal such
/// as `1e-400`, zero only once rounded, counts as truthy here.
///
/// ```
/// use roomwire_core::json::is_falsy_as_written;
/// for falsy in ["0", "-0", "0.0", "\"\"", "false", "null", " 0e10 "] {
///     assert!(is_falsy_as_written(falsy.as_bytes()), "{falsy}");
/// }
/// for truthy in ["1", "\"0\"", "true", "{}", "[]", "-1e-3", "0.5", "1e-400"] {
///     assert!(!is_falsy_as_written(truthy.as_bytes()), "{truthy}");
/// }
/// ```
pub fn is_falsy_as_written(value: &[u8]) -> bool {
    let value = trim(value);
    match value {
        b"false" | b"null" | b"\"\"" => true,
        [b'-' | b'0'..=b'9', ..] => {
            // The digits before any exponent; zero whatever the exponent.
            let mantissa = value.split(|&b| b == b'e' || b == b'E').next().unwrap_or(value);
            scan_number(value, 0) == Ok(value.len()) && mantissa.iter().all(|&b| matches!(b, b'0' | b'-' | b'.'))
        }
        _ => false,
    }
}

/// Whether a JSON value is falsy in JavaScript: `false`, `null`, `""` and
/// numbers equal to zero (`0`, `-0`, `0.0`, `0e5`, and numbers so small a
/// double rounds them to zero, like `1e-400`). Objects and arrays, even
/// empty, are truthy, as are strings like `"0"` and `"false"`.
///
/// `value` should be valid JSON; anything else counts as truthy.
///
/// ```
/// use roomwire_core::json::is_falsy;
/// for falsy in ["0", "-0", "0.0", "\"\"", "false", "null", " 0e10 "] {
///     assert!(is_falsy(falsy.as_bytes()), "{falsy}");
/// }
/// for truthy in ["1", "\"0\"", "\" \"", "true", "{}", "[]", "-1e-3"] {
///     assert!(!is_falsy(truthy.as_bytes()), "{truthy}");
/// }
/// ```
pub fn is_falsy(value: &[u8]) -> bool {
    if is_falsy_as_written(value) {
        return true;
    }
    // What is left: a number with a digit other than 0, zero only if it
    // rounds to zero. A JSON number is valid Rust float syntax; core's
    // parser rounds correctly, like JavaScript's.
    let value = trim(value);
    matches!(value, [b'-' | b'0'..=b'9', ..])
        && scan_number(value, 0) == Ok(value.len())
        && core::str::from_utf8(value).ok().and_then(|s| s.parse::<f64>().ok()).is_some_and(|n| n == 0.0)
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// Writes `s` as a JSON string literal, quotes included, escaped like
/// JavaScript's `JSON.stringify` (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`,
/// other control characters as `\u00XX`; everything else as is). If `out`
/// is too small, nothing is written.
///
/// ```
/// use roomwire_core::json::write_str_literal;
/// let mut out = [0u8; 32];
/// let n = write_str_literal("a\"b\n\u{1}é", &mut out).unwrap();
/// assert_eq!(&out[..n], "\"a\\\"b\\n\\u0001é\"".as_bytes());
/// assert_eq!(write_str_literal("abc", &mut [0u8; 4]).unwrap_err().required, 5);
/// ```
pub fn write_str_literal(s: &str, out: &mut [u8]) -> Result<usize, InsufficientSize> {
    write_twice(out, |w| write_escaped_str(s, w))
}

/// Writes `s` as a JSON string literal, quotes included: see
/// [`write_str_literal`].
pub(crate) fn write_escaped_str(s: &str, w: &mut Writer<'_>) {
    w.put(b"\"");
    write_escaped_contents(s, w);
    w.put(b"\"");
}

/// Writes `s` escaped, without quotes.
pub(crate) fn write_escaped_contents(s: &str, w: &mut Writer<'_>) {
    let bytes = s.as_bytes();
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0C => b"\\f",
            0..=0x1F => b"",
            _ => continue,
        };
        w.put(bytes.get(run_start..i).unwrap_or(&[]));
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
            let lo = HEX.get(usize::from(b & 0xF)).copied().unwrap_or(b'0');
            w.put(&[b'\\', b'u', b'0', b'0', hi, lo]);
        } else {
            w.put(escape);
        }
        run_start = i + 1;
    }
    w.put(bytes.get(run_start..).unwrap_or(&[]));
}

/// A [`fmt::Write`] that escapes what it is given as JSON string contents
/// (no quotes): formats any `Display` straight into a JSON string.
pub(crate) struct EscapingWriter<'w, 'a>(pub(crate) &'w mut Writer<'a>);

impl fmt::Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_escaped_contents(s, self.0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

    use std::format;
    use std::string::String;
    use std::vec::Vec;

    use super::*;

    fn ok(doc: &str) -> JsonKind {
        validate(doc.as_bytes()).unwrap_or_else(|e| panic!("{doc:?}: {e}"))
    }

    fn bad(doc: &str) -> JsonError {
        validate(doc.as_bytes()).expect_err(doc)
    }

    #[test]
    fn rfc8259_examples() {
        // RFC 8259 §13.
        let image = r#"{
      "Image": {
          "Width":  800,
          "Height": 600,
          "Title":  "View from 15th Floor",
          "Thumbnail": {
              "Url":    "http://www.example.com/image/481989943",
              "Height": 125,
              "Width":  100
          },
          "Animated" : false,
          "IDs": [116, 943, 234, 38793]
        }
    }"#;
        assert_eq!(ok(image), JsonKind::Object);
        let places = r#"[
        {
           "precision": "zip",
           "Latitude":  37.7668,
           "Longitude": -122.3959,
           "Address":   "",
           "City":      "SAN FRANCISCO",
           "State":     "CA",
           "Zip":       "94107",
           "Country":   "US"
        },
        {
           "precision": "zip",
           "Latitude":  37.371991,
           "Longitude": -122.026020,
           "Address":   "",
           "City":      "SUNNYVALE",
           "State":     "CA",
           "Zip":       "94085",
           "Country":   "US"
        }
    ]"#;
        assert_eq!(ok(places), JsonKind::Array);
        assert_eq!(ok("\"Hello world!\""), JsonKind::String);
        assert_eq!(ok("42"), JsonKind::Number);
        assert_eq!(ok("true"), JsonKind::Bool);
        assert_eq!(ok("false"), JsonKind::Bool);
        assert_eq!(ok(" null "), JsonKind::Null);
    }

    #[test]
    fn numbers() {
        for n in [
            "0",
            "-0",
            "1",
            "-1",
            "10",
            "0.5",
            "-0.5",
            "1e5",
            "1E5",
            "1e+5",
            "1e-5",
            "1.25e-10",
            "123456789012345678901234567890",
        ] {
            assert_eq!(ok(n), JsonKind::Number, "{n}");
        }
        for n in
            ["01", "-01", "+1", ".5", "5.", "1e", "1e+", "-", "0x10", "NaN", "Infinity", "-Infinity", "1.e5", "--1"]
        {
            assert!(validate(n.as_bytes()).is_err(), "{n}");
        }
    }

    #[test]
    fn every_escape() {
        let s = as_string(br#""\"\\\/\b\f\n\r\t\u0041\u00e9\u20ac\ud83d\ude00""#).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(s.unescape_into(&mut buf).unwrap(), "\"\\/\u{8}\u{c}\n\r\tAé€😀");
        assert!(s.eq_str("\"\\/\u{8}\u{c}\n\r\tAé€😀"));
        assert!(!s.eq_str("\"\\/\u{8}\u{c}\n\r\tAé€"));
        assert!(!s.eq_str("\"\\/\u{8}\u{c}\n\r\tAé€😀!"));
        assert_eq!(s.unescaped_len(), "\"\\/\u{8}\u{c}\n\r\tAé€😀".len());
        assert_eq!(format!("{s}"), "\"\\/\u{8}\u{c}\n\r\tAé€😀");
        // Upper-case hex digits too.
        assert!(as_string(br#""\u00E9\uD83D\uDE00""#).unwrap().eq_str("é😀"));
        // Overflow leaves the output untouched and reports the size.
        let mut small = [7u8; 3];
        assert_eq!(
            s.unescape_into(&mut small),
            Err(JsonError::InsufficientSize(InsufficientSize { required: s.unescaped_len() }))
        );
        assert_eq!(small, [7; 3]);
    }

    #[test]
    fn invalid_documents() {
        for doc in [
            "",
            " ",
            "[1,]",
            "{\"a\":1,}",
            "{'a':1}",
            "['a']",
            "NaN",
            "[01]",
            "\"unterminated",
            "[1",
            "{\"a\"",
            "{\"a\":",
            "{\"a\" 1}",
            "{1:1}",
            "[1 2]",
            "{\"a\":1 \"b\":2}",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"\\ud800x\"",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\u12g4\"",
            "\"tab\tinside\"",
            "\"nl\ninside\"",
            "tru",
            "nul",
            "True",
            "1 2",
            "{} x",
            "[]]",
            "// comment\n1",
            "\u{feff}1",
        ] {
            assert!(validate(doc.as_bytes()).is_err(), "{doc:?} should be invalid");
        }
        assert_eq!(validate(b"\"\xff\""), Err(JsonError::InvalidUtf8 { offset: 1 }));
        assert_eq!(bad("[1,]"), JsonError::Syntax { offset: 3 });
        assert_eq!(bad("\"abc"), JsonError::Syntax { offset: 4 });
    }

    #[test]
    fn nesting_limit() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(ok(&deep(MAX_DEPTH)), JsonKind::Array);
        assert_eq!(bad(&deep(MAX_DEPTH + 1)), JsonError::TooDeep { offset: MAX_DEPTH });
        let objects = |n: usize| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
        assert_eq!(ok(&objects(MAX_DEPTH)), JsonKind::Object);
        assert!(matches!(bad(&objects(MAX_DEPTH + 1)), JsonError::TooDeep { .. }));
        // Mixed: the bit stack must tell arrays and objects apart at every level.
        let mut mixed = String::new();
        for i in 0..MAX_DEPTH {
            mixed.push_str(if i % 2 == 0 { "[" } else { "{\"k\":" });
        }
        mixed.push('0');
        for i in (0..MAX_DEPTH).rev() {
            mixed.push(if i % 2 == 0 { ']' } else { '}' });
        }
        assert_eq!(ok(&mixed), JsonKind::Array);
        // Huge depth is refused fast and without recursion.
        assert!(matches!(bad(&"[".repeat(1_000_000)), JsonError::TooDeep { .. }));
        // Wrong closer at depth.
        assert!(bad("[{\"a\":[1}]}").eq(&JsonError::Syntax { offset: 8 }));
    }

    #[test]
    fn members() {
        let doc = br#" { "a" : 1 , "b\u0021":{"x":[1,{}]}, "c":"s" , "a":null } "#;
        let pairs: Vec<(String, &[u8])> =
            object_members(doc).unwrap().unwrap().map(|(k, v)| (format!("{k}"), v)).collect();
        assert_eq!(
            pairs,
            [
                ("a".into(), &b"1"[..]),
                ("b!".into(), &br#"{"x":[1,{}]}"#[..]),
                ("c".into(), &br#""s""#[..]),
                ("a".into(), &b"null"[..])
            ]
        );
        assert_eq!(object_members(b"{}").unwrap().unwrap().count(), 0);
        assert_eq!(object_members(b" { } ").unwrap().unwrap().count(), 0);
        assert!(object_members(b"\"{}\"").unwrap().is_none());
        assert!(object_members(b"{\"a\":1,}").is_err());
    }

    #[test]
    fn raw_str_equality() {
        let a = as_string(br#""\u0061b""#).unwrap();
        let b = as_string(br#""ab""#).unwrap();
        let c = as_string(br#""a\u0062""#).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_ne!(a, as_string(br#""abc""#).unwrap());
        assert_eq!(b.as_borrowed(), Some("ab"));
    }

    #[test]
    fn values() {
        assert_eq!(as_u32(b"0"), Some(0));
        assert_eq!(as_u32(b" 7 "), Some(7));
        for v in ["", "-1", "01", "1e2", "1.0", "\"1\"", "99999999999", "+1", "null"] {
            assert_eq!(as_u32(v.as_bytes()), None, "{v}");
        }
        assert!(as_string(b"\"a\" x").is_none());
        assert!(as_string(b"\"a\"\"b\"").is_none());
        assert!(as_string(b"\"\xff\"").is_none());
        assert!(as_string(b"\"\\ud800\"").is_none());
    }

    #[test]
    fn truthiness_table() {
        let falsy = ["0", "-0", "0.0", "-0.0", "0e0", "0E-7", "0.000e+99", "\"\"", "false", "null", "1e-400", " 0 "];
        let truthy = [
            "1",
            "-1",
            "0.1",
            "1e-300",
            "5e-324",
            "1e400",
            "\"0\"",
            "\"false\"",
            "\" \"",
            "true",
            "{}",
            "[]",
            "[0]",
            "{\"a\":0}",
            "\"\\u0000\"",
        ];
        for v in falsy {
            assert!(is_falsy(v.as_bytes()), "{v} should be falsy");
        }
        for v in truthy {
            assert!(!is_falsy(v.as_bytes()), "{v} should be truthy");
        }
    }

    #[test]
    fn escaping_matches_json_stringify() {
        let mut out = [0u8; 256];
        let all_controls: String = (0u8..0x20).map(char::from).collect();
        let n = write_str_literal(&all_controls, &mut out).unwrap();
        assert_eq!(
            core::str::from_utf8(&out[..n]).unwrap(),
            concat!(
                "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f",
                "\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\""
            )
        );
        let n = write_str_literal("/ é \u{2028} \u{7f}", &mut out).unwrap();
        assert_eq!(core::str::from_utf8(&out[..n]).unwrap(), "\"/ é \u{2028} \u{7f}\"");
        // Escaping round-trips through the unescaper.
        let text = "q\"b\\s\u{1}\u{1f}t\té😀";
        let n = write_str_literal(text, &mut out).unwrap();
        assert!(as_string(&out[..n]).unwrap().eq_str(text));
    }

    #[test]
    fn writer_varints() {
        let cases: [(u32, &[u8]); 7] = [
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (16_384, &[0x80, 0x80, 0x01]),
            (u32::MAX, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for (n, bytes) in cases {
            let mut out = [0u8; 8];
            let len = write_twice(&mut out, |w| w.put_varint(n)).unwrap();
            assert_eq!(&out[..len], bytes, "{n}");
            let mut pc = [0u8; 8];
            assert_eq!(postcard::to_slice(&n, &mut pc).unwrap(), bytes);
        }
    }
}
