//! The harnesses behind roomwire-core's cargo-fuzz targets.
//!
//! Each `fuzz_targets/NAME.rs` calls `NAME::run(data)`. They live in a
//! library so that `examples/gen_seeds.rs` can write the seed corpus and
//! replay it through the same checks without libFuzzer.
//!
//! The central property, checked by `frame_decoder`, `server_connection`
//! and `client_connection`, is split independence: the same bytes fed in
//! different chunks must produce the same normalized transcript (messages,
//! control frames, close codes, protocol errors, handshake results and
//! transmitted bytes) as feeding them whole.

pub mod alepha_wire;
pub mod client_connection;
pub mod client_session;
pub mod cluster_message;
pub mod cluster_order;
pub mod deflate_negotiation;
pub mod driver;
pub mod envelope;
pub mod frame_decoder;
pub mod frame_header;
pub mod handshake_request;
pub mod handshake_response;
pub mod seeds;
pub mod server_connection;
pub mod stateful_room;

/// Prefix lengths worth checking for an input of `len` bytes: all of them
/// for short inputs, otherwise the first and last 64 and 64 spread between.
pub(crate) fn prefix_lengths(len: usize) -> Vec<usize> {
    if len <= 256 {
        return (0..len).collect();
    }
    let mut out: Vec<usize> = (0..64).chain(len - 64..len).collect();
    out.extend((1..64).map(|i| i * len / 64));
    out.sort_unstable();
    out.dedup();
    out.retain(|&k| k < len);
    out
}

/// Whether `bytes` is valid UTF-8 or a valid prefix of it (cut inside a
/// character at the very end).
pub(crate) fn is_utf8_prefix(bytes: &[u8]) -> bool {
    match core::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}
