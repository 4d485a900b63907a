//! See [`roomwire_fuzz::stateful_room`] for what this target feeds and asserts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| roomwire_fuzz::stateful_room::run(data));
