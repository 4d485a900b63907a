//! Close codes (RFC 6455 §7.4) and close frame payloads (§5.5.1).

use crate::utf8;

/// A close status code. Every `u16` converts; unassigned values become
/// [`CloseCode::Unknown`]. Whether a peer may *send* a code is a separate
/// question answered by [`CloseCode::is_valid_on_wire`].
///
/// ```
/// use roomwire_core::CloseCode;
/// assert_eq!(CloseCode::from(1009), CloseCode::MessageTooBig);
/// assert_eq!(u16::from(CloseCode::Policy), 1008);
/// assert!(CloseCode::from(4000).is_valid_on_wire());
/// assert!(!CloseCode::from(1005).is_valid_on_wire());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: normal closure.
    Normal,
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    Away,
    /// 1002: protocol error.
    Protocol,
    /// 1003: a data type the endpoint cannot accept.
    Unsupported,
    /// 1005: no status code was present. Never sent on the wire.
    Status,
    /// 1006: the connection dropped without a close frame. Never sent.
    Abnormal,
    /// 1007: message data inconsistent with its type (invalid UTF-8 text).
    Invalid,
    /// 1008: the message violates the endpoint's policy.
    Policy,
    /// 1009: message too big to process.
    MessageTooBig,
    /// 1010: the client expected an extension the server did not negotiate.
    Extension,
    /// 1011: the server hit an unexpected condition.
    Error,
    /// 1012: the service is restarting.
    Restart,
    /// 1013: try again later.
    Again,
    /// 1014: bad gateway.
    BadGateway,
    /// 1015: TLS handshake failure. Never sent.
    Tls,
    /// Any other value.
    Unknown(u16),
}

impl CloseCode {
    /// Whether this code may appear in a close frame on the wire.
    ///
    /// Valid: 1000–1003, 1007–1014 (assigned by IANA), 3000–4999
    /// (registered and private use). Invalid: below 1000, 1004–1006, 1015,
    /// 1016–2999 and 5000 up. A close frame carrying an invalid code is a
    /// protocol error (1002).
    pub fn is_valid_on_wire(self) -> bool {
        matches!(u16::from(self), 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(n: u16) -> Self {
        match n {
            1000 => CloseCode::Normal,
            1001 => CloseCode::Away,
            1002 => CloseCode::Protocol,
            1003 => CloseCode::Unsupported,
            1005 => CloseCode::Status,
            1006 => CloseCode::Abnormal,
            1007 => CloseCode::Invalid,
            1008 => CloseCode::Policy,
            1009 => CloseCode::MessageTooBig,
            1010 => CloseCode::Extension,
            1011 => CloseCode::Error,
            1012 => CloseCode::Restart,
            1013 => CloseCode::Again,
            1014 => CloseCode::BadGateway,
            1015 => CloseCode::Tls,
            other => CloseCode::Unknown(other),
        }
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        match code {
            CloseCode::Normal => 1000,
            CloseCode::Away => 1001,
            CloseCode::Protocol => 1002,
            CloseCode::Unsupported => 1003,
            CloseCode::Status => 1005,
            CloseCode::Abnormal => 1006,
            CloseCode::Invalid => 1007,
            CloseCode::Policy => 1008,
            CloseCode::MessageTooBig => 1009,
            CloseCode::Extension => 1010,
            CloseCode::Error => 1011,
            CloseCode::Restart => 1012,
            CloseCode::Again => 1013,
            CloseCode::BadGateway => 1014,
            CloseCode::Tls => 1015,
            CloseCode::Unknown(n) => n,
        }
    }
}

/// Why a received close payload is unacceptable, with the code to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosePayloadError {
    /// One byte: too short for a code (1002).
    Truncated,
    /// A code no endpoint may send (1002).
    InvalidCode(u16),
    /// The reason is not UTF-8 (1007).
    InvalidReason,
}

impl ClosePayloadError {
    /// The close code this error is answered with.
    pub fn close_code(self) -> CloseCode {
        match self {
            ClosePayloadError::Truncated | ClosePayloadError::InvalidCode(_) => CloseCode::Protocol,
            ClosePayloadError::InvalidReason => CloseCode::Invalid,
        }
    }
}

/// Split a received close payload into its code and reason, validating both.
///
/// An empty payload has no code (`Ok((None, ""))`).
///
/// ```
/// use roomwire_core::close::parse_close_payload;
/// use roomwire_core::CloseCode;
/// assert_eq!(parse_close_payload(&[0x03, 0xE8, b'o', b'k']), Ok((Some(CloseCode::Normal), "ok")));
/// assert!(parse_close_payload(&[0x03]).is_err());
/// ```
pub fn parse_close_payload(payload: &[u8]) -> Result<(Option<CloseCode>, &str), ClosePayloadError> {
    match payload {
        [] => Ok((None, "")),
        [_] => Err(ClosePayloadError::Truncated),
        [hi, lo, reason @ ..] => {
            let code = CloseCode::from(u16::from_be_bytes([*hi, *lo]));
            if !code.is_valid_on_wire() {
                return Err(ClosePayloadError::InvalidCode(u16::from(code)));
            }
            let reason = utf8::validate_whole(reason).ok_or(ClosePayloadError::InvalidReason)?;
            Ok((Some(code), reason))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn test_code_validity_table() {
        for n in 0..=u16::MAX {
            let expect = matches!(n, 1000..=1003 | 1007..=1014 | 3000..=4999);
            assert_eq!(CloseCode::from(n).is_valid_on_wire(), expect, "{n}");
            assert_eq!(u16::from(CloseCode::from(n)), n);
        }
    }

    #[test]
    fn test_parse_payloads() {
        assert_eq!(parse_close_payload(&[]), Ok((None, "")));
        assert_eq!(parse_close_payload(&[3]), Err(ClosePayloadError::Truncated));
        assert_eq!(parse_close_payload(&[0x03, 0xED]), Err(ClosePayloadError::InvalidCode(1005)));
        assert_eq!(parse_close_payload(&[0x0F, 0xA0, 0xFF]), Err(ClosePayloadError::InvalidReason));
        assert_eq!(parse_close_payload(&[0x0F, 0xA0, b'x']).unwrap(), (Some(CloseCode::Unknown(4000)), "x"));
    }
}
