//! `frame_header`: [`FrameHeader::parse`], `encode` and [`apply_mask`] on
//! arbitrary bytes.
//!
//! Asserted for the header (the whole input is parsed):
//!
//! * `needed` is `None` exactly below two bytes, and `parse` agrees with it:
//!   `Ok(None)` below `needed`, a result at or above it, `Ok(Some)` with
//!   `header_len == needed`; the only error is a 64-bit length with its high
//!   bit set;
//! * every field matches the bits; every shorter prefix is `Ok(None)`;
//!   parsing `input[..header_len]` gives the same header;
//! * `encode` writes `encoded_len()` bytes, never more than were parsed
//!   (the minimal length form), byte-identical when the input used the
//!   minimal form, and the output parses back to the same header; with a
//!   buffer one byte short it fails with `required` and leaves it untouched.
//!
//! Asserted for masking (key = bytes 0–3, phase = byte 4, split = byte 5,
//! payload = the rest): the result equals a bytewise XOR at every phase,
//! the returned phase is `(phase + len) % 4`, masking twice is the identity,
//! and masking in pieces (split in two, and in chunks) equals masking whole.

use roomwire_core::FrameHeader;
use roomwire_core::frame::{HeaderError, MAX_HEADER_LEN, apply_mask};

/// The fuzz target.
pub fn run(data: &[u8]) {
    check_header(data);
    check_mask(data);
}

fn check_header(data: &[u8]) {
    let needed = FrameHeader::needed(data);
    assert_eq!(needed.is_none(), data.len() < 2);
    let parsed = FrameHeader::parse(data);
    let Some(need) = needed else {
        assert_eq!(parsed, Ok(None));
        return;
    };
    assert!(matches!(need, 2 | 4 | 6 | 8 | 10 | 14), "needed {need}");
    if data.len() < need {
        assert_eq!(parsed, Ok(None), "short of needed ({need}) yet parsed");
        return;
    }
    let (header, len) = match parsed {
        Ok(Some(ok)) => ok,
        Ok(None) => panic!("{} bytes >= needed {need} but Ok(None)", data.len()),
        Err(HeaderError::LengthHighBitSet) => {
            assert_eq!(data[1] & 0x7F, 127);
            assert!(data[2] & 0x80 != 0);
            return;
        }
    };
    assert_eq!(len, need);
    assert_eq!(FrameHeader::parse(&data[..len]), Ok(Some((header, len))));
    for k in 0..len {
        assert_eq!(FrameHeader::parse(&data[..k]), Ok(None), "prefix {k} of a {len}-byte header");
    }

    // Fields against the bits.
    let (b0, b1) = (data[0], data[1]);
    assert_eq!(header.fin, b0 & 0x80 != 0);
    assert_eq!(header.rsv, (b0 >> 4) & 0x07);
    assert_eq!(u8::from(header.opcode), b0 & 0x0F);
    assert_eq!(header.mask.is_some(), b1 & 0x80 != 0);
    let len7 = b1 & 0x7F;
    let (ext, minimal) = match len7 {
        126 => {
            let n = u64::from(u16::from_be_bytes([data[2], data[3]]));
            (n, n >= 126)
        }
        127 => {
            let n = u64::from_be_bytes(data[2..10].try_into().unwrap_or_default());
            (n, n > 0xFFFF)
        }
        n => (u64::from(n), true),
    };
    assert_eq!(header.payload_len, ext);
    assert!(header.payload_len >> 63 == 0);
    if let Some(key) = header.mask {
        assert_eq!(key.as_slice(), &data[len - 4..len]);
    }

    // Re-encode: minimal form, parses back to the same header.
    let mut out = [0u8; MAX_HEADER_LEN];
    let n = header.encode(&mut out).unwrap_or_else(|e| panic!("14 bytes too small: {e:?}"));
    assert_eq!(n, header.encoded_len());
    assert!(n <= len, "re-encoded header ({n}) longer than parsed ({len})");
    if minimal {
        assert_eq!(&out[..n], &data[..len], "minimal header did not re-encode byte for byte");
    }
    assert_eq!(FrameHeader::needed(&out[..n]), Some(n));
    assert_eq!(FrameHeader::parse(&out[..n]), Ok(Some((header, n))));
    let mut short = [0xA5u8; MAX_HEADER_LEN];
    let err = header.encode(&mut short[..n - 1]).expect_err("encode into a buffer one byte short");
    assert_eq!(err.required, n);
    assert_eq!(short, [0xA5; MAX_HEADER_LEN], "failed encode touched the buffer");
}

fn check_mask(data: &[u8]) {
    let key = [0, 1, 2, 3].map(|i| data.get(i).copied().unwrap_or(0));
    let phase_byte = usize::from(data.get(4).copied().unwrap_or(0));
    let split_byte = usize::from(data.get(5).copied().unwrap_or(0));
    let payload = data.get(6..).unwrap_or(&[]);
    let len = payload.len();

    // The arbitrary phase (only its low two bits count), and every phase.
    for phase in [phase_byte, 0, 1, 2, 3] {
        let expected: Vec<u8> = payload.iter().enumerate().map(|(i, b)| b ^ key[(phase + i) % 4]).collect();
        let mut whole = payload.to_vec();
        let next = apply_mask(&mut whole, key, phase);
        assert_eq!(whole, expected, "phase {phase}");
        assert_eq!(next, (phase + len) % 4);

        // Twice is the identity.
        let mut twice = whole.clone();
        apply_mask(&mut twice, key, phase);
        assert_eq!(twice, payload);

        // Two pieces, carrying the phase.
        let at = if len == 0 { 0 } else { split_byte % (len + 1) };
        let mut pieces = payload.to_vec();
        let (a, b) = pieces.split_at_mut(at);
        let mid = apply_mask(a, key, phase);
        assert_eq!(apply_mask(b, key, mid), next);
        assert_eq!(pieces, expected, "split at {at}, phase {phase}");

        // Many pieces of a size chosen by the split byte.
        let step = split_byte % 13 + 1;
        let mut chunked = payload.to_vec();
        let mut p = phase;
        for chunk in chunked.chunks_mut(step) {
            p = apply_mask(chunk, key, p);
        }
        assert_eq!(p % 4, next, "phase after chunks");
        assert_eq!(chunked, expected, "chunks of {step}, phase {phase}");
    }
}
