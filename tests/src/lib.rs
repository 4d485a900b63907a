//! Cross-crate and real-peer tests live in `tests/`.

pub mod conformance;
