//! See [`roomwire_fuzz::deflate_negotiation`] for what this target feeds and asserts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| roomwire_fuzz::deflate_negotiation::run(data));
