//! Fail-fast, incremental UTF-8 validation.
//!
//! RFC 6455 §8.1 lets an endpoint fail a connection as soon as text stops
//! being valid UTF-8. Validating whole frames would notice an invalid byte
//! only when its frame completes; this validator sees bytes as they arrive,
//! across frame and read boundaries, and rejects the first byte that no
//! valid continuation can follow.
//!
//! The state is three bytes: how many continuation bytes the current code
//! point still needs, and the inclusive range the next byte must fall in
//! (which is how overlong forms, surrogates and values past U+10FFFF are
//! ruled out at their second byte, per the table in RFC 3629 §4). Long runs
//! of complete characters go through `core::str::from_utf8`, which is
//! vectorised; the state machine only handles code points cut by a boundary.

/// Incremental validator state. `Default` is the start of a message.
///
/// ```
/// use roomwire_core::utf8::Utf8Validator;
/// let mut v = Utf8Validator::default();
/// // "é" = C3 A9, fed one byte at a time.
/// assert!(v.feed(&[0xC3]).is_ok());
/// assert!(!v.is_complete());
/// assert!(v.feed(&[0xA9]).is_ok());
/// assert!(v.is_complete());
/// // ED A0 starts a UTF-16 surrogate: rejected at the second byte.
/// let mut v = Utf8Validator::default();
/// assert!(v.feed(&[0xED]).is_ok());
/// assert!(v.feed(&[0xA0]).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Validator {
    remaining: u8,
    lo: u8,
    hi: u8,
}

impl Default for Utf8Validator {
    fn default() -> Self {
        Self::new()
    }
}

/// The input is not, and cannot become, valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

impl Utf8Validator {
    /// A validator at the start of a message (same as `default()`, usable in `const`).
    pub const fn new() -> Self {
        Self { remaining: 0, lo: 0x80, hi: 0xBF }
    }

    /// Whether the bytes so far end on a character boundary.
    pub fn is_complete(&self) -> bool {
        self.remaining == 0
    }

    /// Validate the next bytes of the stream.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), InvalidUtf8> {
        // Finish a code point cut by the previous boundary, byte by byte.
        while self.remaining != 0 {
            let Some((&b, rest)) = bytes.split_first() else {
                return Ok(());
            };
            self.step(b)?;
            bytes = rest;
        }
        match core::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                // A valid prefix of a code point ends the input: keep its
                // state for the next call.
                for &b in bytes.get(e.valid_up_to()..).unwrap_or(&[]) {
                    self.step(b)?;
                }
                Ok(())
            }
        }
    }

    fn step(&mut self, b: u8) -> Result<(), InvalidUtf8> {
        if self.remaining == 0 {
            let (remaining, lo, hi) = match b {
                0x00..=0x7F => return Ok(()),
                0xC2..=0xDF => (1, 0x80, 0xBF),
                0xE0 => (2, 0xA0, 0xBF),
                0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
                0xED => (2, 0x80, 0x9F),
                0xF0 => (3, 0x90, 0xBF),
                0xF1..=0xF3 => (3, 0x80, 0xBF),
                0xF4 => (3, 0x80, 0x8F),
                _ => return Err(InvalidUtf8),
            };
            *self = Self { remaining, lo, hi };
            Ok(())
        } else if b < self.lo || b > self.hi {
            Err(InvalidUtf8)
        } else {
            *self = Self { remaining: self.remaining - 1, lo: 0x80, hi: 0xBF };
            Ok(())
        }
    }
}

/// Validate a complete byte string, such as a close reason.
pub fn validate_whole(bytes: &[u8]) -> Option<&str> {
    core::str::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn stream_ok(bytes: &[u8], split: usize) -> (bool, bool) {
        let mut v = Utf8Validator::default();
        let mut ok = true;
        for chunk in bytes.chunks(split.max(1)) {
            if v.feed(chunk).is_err() {
                ok = false;
                break;
            }
        }
        (ok, ok && v.is_complete())
    }

    #[test]
    fn test_agrees_with_core_on_all_short_sequences() {
        // Every 1- and 2-byte sequence, and 3-byte ones starting at lead bytes.
        let mut buf = [0u8; 3];
        for a in 0..=255u8 {
            buf[0] = a;
            for b in 0..=255u8 {
                buf[1] = b;
                let whole = core::str::from_utf8(&buf[..2]).is_ok();
                for split in 1..=2 {
                    assert_eq!(stream_ok(&buf[..2], split).1, whole, "{a:x} {b:x}");
                }
                if a >= 0xE0 {
                    for c in [0x00, 0x80, 0x90, 0xA0, 0xBF, 0xC0] {
                        buf[2] = c;
                        let whole = core::str::from_utf8(&buf).is_ok();
                        assert_eq!(stream_ok(&buf, 1).1, whole, "{a:x} {b:x} {c:x}");
                    }
                }
            }
        }
    }

    #[test]
    fn test_fails_fast() {
        // Autobahn 6.4.1: the invalid byte F4 90 is rejected at 0x90, before
        // the rest of the message arrives.
        let mut v = Utf8Validator::default();
        v.feed("κόσμε".as_bytes()).unwrap();
        assert!(v.feed(&[0xF4]).is_ok());
        assert!(v.feed(&[0x90]).is_err());
    }

    #[test]
    fn test_valid_text_at_every_split() {
        let text = "Hello-µ@ßöäüàá-UTF-8!! κόσμε 𝄞 \u{10FFFF}";
        for split in 1..text.len() {
            assert_eq!(stream_ok(text.as_bytes(), split), (true, true));
        }
        let cut = &text.as_bytes()[..text.len() - 1];
        assert_eq!(stream_ok(cut, 3), (true, false));
    }
}
