//! Which rooms protocol a connection speaks, chosen at the handshake.
//!
//! * No subprotocol offered (a plain `new WebSocket(url)`, Alepha's browser
//!   client): the **Alepha wire** ([`crate::alepha`]), JSON text frames,
//!   rooms fixed by the handshake query.
//! * `roomwire.v1.postcard` or `roomwire.v1.json` offered: the **roomwire
//!   wire** ([`crate::envelope`]), one envelope model in two encodings, with
//!   join and leave at any time.
//!
//! The byte-level specification of both is `PROTOCOL.md` at the repository
//! root.

/// Subprotocol name of the roomwire wire in its binary (postcard) encoding.
pub const PROTOCOL_POSTCARD: &str = "roomwire.v1.postcard";
/// Subprotocol name of the roomwire wire in its JSON encoding.
pub const PROTOCOL_JSON: &str = "roomwire.v1.json";

/// A subprotocol a roomwire client offers **first**, before the one it
/// wants, and that a roomwire server never selects.
///
/// Node's `ws` server, on which Alepha's Node provider runs, answers with
/// the first subprotocol a client offers when the application sets no
/// `handleProtocols`, whatever it is, and then speaks the Alepha wire. A
/// server that selects this name has therefore echoed the offer without
/// understanding it: the client knows at the handshake, without a round
/// trip, that the server speaks the Alepha wire (`PROTOCOL.md` section 1).
pub const PROTOCOL_PROBE: &str = "roomwire.probe";

/// The protocol and encoding of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireFormat {
    /// Alepha-compatible JSON (no subprotocol).
    Alepha,
    /// roomwire envelopes, JSON encoding (`roomwire.v1.json`).
    Json,
    /// roomwire envelopes, postcard encoding (`roomwire.v1.postcard`).
    Postcard,
}

impl WireFormat {
    /// The subprotocol to answer with, if any.
    pub const fn protocol(self) -> Option<&'static str> {
        match self {
            WireFormat::Alepha => None,
            WireFormat::Json => Some(PROTOCOL_JSON),
            WireFormat::Postcard => Some(PROTOCOL_POSTCARD),
        }
    }

    /// Whether payloads are JSON text (as opposed to postcard bytes).
    pub const fn is_json(self) -> bool {
        !matches!(self, WireFormat::Postcard)
    }

    /// The WebSocket message type frames of this format travel in.
    pub const fn message_kind(self) -> crate::MessageKind {
        match self {
            WireFormat::Postcard => crate::MessageKind::Binary,
            _ => crate::MessageKind::Text,
        }
    }

    /// Pick the format for a client's offered subprotocols, in its order of
    /// preference. No offer, or no roomwire offer, means the Alepha wire
    /// (and no `Sec-WebSocket-Protocol` in the answer). Unknown names,
    /// [`PROTOCOL_PROBE`] among them, are skipped.
    ///
    /// ```
    /// use roomwire_core::wire::WireFormat;
    /// assert_eq!(WireFormat::negotiate([].into_iter()), WireFormat::Alepha);
    /// assert_eq!(WireFormat::negotiate(["x", "roomwire.v1.json"].into_iter()), WireFormat::Json);
    /// assert_eq!(
    ///     WireFormat::negotiate(["roomwire.probe", "roomwire.v1.postcard"].into_iter()),
    ///     WireFormat::Postcard
    /// );
    /// ```
    pub fn negotiate<'a>(offered: impl Iterator<Item = &'a str>) -> WireFormat {
        for protocol in offered {
            match protocol {
                PROTOCOL_POSTCARD => return WireFormat::Postcard,
                PROTOCOL_JSON => return WireFormat::Json,
                _ => {}
            }
        }
        WireFormat::Alepha
    }
}
