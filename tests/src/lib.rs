//! Cross-crate and real-peer tests live in `tests/`.
