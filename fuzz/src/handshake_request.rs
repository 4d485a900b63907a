//! `handshake_request`: [`handshake::parse_request`] on arbitrary bytes.
//!
//! Input: byte 0 picks the byte limit (bits 0–1: 8 KiB, small, unlimited,
//! or exactly the input's length; bits 2–7 size the small one); the rest is
//! the request. Asserted:
//!
//! * prefix consistency: for an accepted or incomplete request every
//!   (sampled) shorter prefix is `Ok(None)`; for a refused one every prefix
//!   is `Ok(None)` or the same error (so the refusal cannot depend on how
//!   the bytes arrived);
//! * `Ok(None)` only below the limit; an accepted request is at most the
//!   limit and the input long, parses the same from `input[..len]` and with
//!   bytes after it, and with the limit one below its length is `TooLarge`;
//! * the accessors (target, path, query, headers, host, origin,
//!   authorization, cookie, key, protocols, accept_key) do not panic and
//!   agree with each other: path and query rebuild the target, the key is 16
//!   bytes of base64, the accept key is the RFC 6455 §1.3 hash of it, the
//!   offered protocols are non-empty, comma-free and trimmed;
//! * answering with the first offered protocol (when it is an HTTP token)
//!   through `write_accept` is accepted by `parse_response`.

use roomwire_core::handshake::{self, HandshakeError, Request, parse_request};

use crate::prefix_lengths;

/// The byte limit byte 0 selects for an input of `len` bytes.
pub fn limit(sel: u8, len: usize) -> usize {
    match sel & 3 {
        0 => 8 * 1024,
        1 => 1 + usize::from(sel >> 2) * 8,
        2 => usize::MAX,
        _ => len,
    }
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let Some((&sel, raw)) = data.split_first() else {
        return;
    };
    let limit = limit(sel, raw.len());
    let whole = parse_request(raw, limit);
    match whole {
        Ok(None) => {
            assert!(raw.len() < limit, "Ok(None) at or over the limit");
            for k in prefix_lengths(raw.len()) {
                assert!(matches!(parse_request(&raw[..k], limit), Ok(None)), "prefix {k} of an incomplete request");
            }
        }
        Ok(Some((req, len))) => {
            assert!(len > 0 && len <= raw.len() && len <= limit, "len {len}, input {}, limit {limit}", raw.len());
            check_accessors(&req);
            let target = req.target();
            let key = req.key();
            match parse_request(&raw[..len], limit) {
                Ok(Some((again, n))) => {
                    assert_eq!(n, len);
                    assert_eq!((again.target(), again.key()), (target, key));
                }
                other => panic!("the request alone parses differently: {other:?}"),
            }
            let mut longer = raw[..len].to_vec();
            longer.extend_from_slice(b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58 GET / HTTP/1.1\r\n\r\n");
            match parse_request(&longer, limit) {
                Ok(Some((again, n))) => assert_eq!((n, again.target()), (len, target)),
                other => panic!("bytes after the request changed it: {other:?}"),
            }
            assert_eq!(parse_request(&raw[..len], len - 1).err(), Some(HandshakeError::TooLarge));
            for k in prefix_lengths(len) {
                let got = parse_request(&raw[..k], limit);
                assert!(matches!(got, Ok(None)), "prefix {k} of an accepted {len}-byte request: {got:?}");
            }
        }
        Err(error) => {
            assert!(matches!(error.status(), 400 | 426 | 431), "{error:?}");
            for k in prefix_lengths(raw.len()) {
                match parse_request(&raw[..k], limit) {
                    Ok(None) => {}
                    Err(e) if e == error => {}
                    other => panic!("prefix {k} gives {other:?}, the whole input {error:?}"),
                }
            }
        }
    }
}

/// Call every accessor of an accepted request and check they agree.
pub fn check_accessors(req: &Request<'_>) {
    let target = req.target();
    let path = req.path();
    match req.query() {
        Some(query) => assert_eq!(format!("{path}?{query}"), target),
        None => {
            assert_eq!(path, target);
            assert!(!target.contains('?'));
        }
    }
    let mut count = 0;
    for (name, value) in req.headers() {
        count += 1;
        assert!(!name.is_empty());
        assert!(!value.contains(&b'\n') && !value.contains(&b'\r'), "header value with CR/LF");
    }
    assert!((1..=handshake::MAX_HEADERS).contains(&count), "{count} headers");
    assert!(req.host().is_some() || req.header("host").is_some(), "accepted without Host");
    let _ = (req.origin(), req.authorization(), req.cookie(), req.header_str("x-unknown"));
    let key = req.key();
    assert_eq!(key.len(), 24, "a 16-byte nonce is 24 base64 characters");
    let accept = req.accept_key();
    assert_eq!(accept, handshake::accept_key(key));
    assert!(accept.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')));
    let protocols: Vec<&str> = req.protocols().collect();
    for p in &protocols {
        assert!(!p.is_empty() && !p.contains(','), "protocol {p:?}");
        assert_eq!(p.trim_matches([' ', '\t']), *p);
    }
    // The server picks the first offered protocol; the client that offered
    // them must accept the answer. (Only for RFC 7230 tokens, which is what
    // RFC 6455 §4.1 allows; see the report on non-ASCII whitespace.)
    if let Some(first) = protocols.first().filter(|p| is_token(p)) {
        let mut out = vec![0u8; 256 + first.len()];
        let n = handshake::write_accept(&accept, Some(first), &[], &mut out).unwrap_or_else(|e| panic!("{e:?}"));
        let offered = protocols.join(",");
        let expected = handshake::accept_key(key);
        match handshake::parse_response(&out[..n], usize::MAX, &expected, &offered) {
            Ok(Some((resp, len))) => {
                assert_eq!(len, n);
                assert_eq!(resp.protocol, Some(*first));
            }
            other => panic!("our own 101 for {first:?} (offered {offered:?}) was refused: {other:?}"),
        }
    }
}

/// An RFC 7230 token (`tchar`s only).
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
