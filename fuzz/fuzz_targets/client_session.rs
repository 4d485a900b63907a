//! See [`roomwire_fuzz::client_session`] for what this target feeds and asserts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| roomwire_fuzz::client_session::run(data));
