//! Error types shared across the core.
//!
//! Buffer-capacity errors are kept apart from protocol errors: the first is
//! the caller's to fix (give a bigger buffer), the second is the peer's
//! fault and ends in a close code or a handshake refusal.

use core::fmt;

use crate::close::CloseCode;

/// The output buffer is too small. Nothing was written; retry with at
/// least `required` bytes.
///
/// ```
/// use roomwire_core::{FrameHeader, Opcode};
/// let err = FrameHeader::new(Opcode::Binary, 70_000).encode(&mut [0u8; 2]).unwrap_err();
/// assert_eq!(err.required, 10);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsufficientSize {
    /// Bytes needed for the whole output.
    pub required: usize,
}

impl fmt::Display for InsufficientSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "output buffer too small: {} bytes required", self.required)
    }
}

impl core::error::Error for InsufficientSize {}

/// A peer broke RFC 6455 (or a configured limit): the connection is being
/// failed with [`ProtocolError::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolError {
    /// The close code sent to the peer.
    pub code: CloseCode,
    /// What was wrong, for logs; also sent as the close reason.
    pub reason: &'static str,
}

impl ProtocolError {
    pub(crate) const fn new(code: CloseCode, reason: &'static str) -> Self {
        Self { code, reason }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, u16::from(self.code))
    }
}

impl core::error::Error for ProtocolError {}
