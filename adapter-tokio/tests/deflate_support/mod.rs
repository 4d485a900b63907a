//! Shared by the permessage-deflate tests (`deflate`, `server_deflate`):
//! zlib on the peer's side.
#![allow(dead_code)]

use flate2::{Decompress, FlushDecompress};

/// One whole permessage-deflate payload, inflated as RFC 7692 §7.2.2 says
/// (the four-byte tail appended), by zlib.
pub fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    Decompress::new(false).decompress_vec(&input, &mut out, FlushDecompress::Sync).unwrap();
    out
}
