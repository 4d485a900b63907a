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

/// The wires a channel's clients may speak, fixed at compile time
/// ([`Channel::WIRES`](crate::Channel::WIRES), `wires:` in
/// [`crate::channel!`]).
///
/// A room client of a channel that allows one wire knows its wire at
/// compile time, so a firmware that speaks postcard alone links no Alepha
/// frames, JSON envelopes, JSON scanner nor JSON codec. With more than one
/// allowed ([`Wires::JSON`], [`Wires::ALL`]), the client's configuration
/// chooses among them at run time and the code of each is linked. A client
/// falls back to the Alepha wire against an Alepha server only when the
/// Alepha wire is allowed; otherwise it refuses that server for good
/// ([`ClientError::WireNotAllowed`](crate::client::ClientError::WireNotAllowed)).
/// Servers serve every wire whatever the channel says.
///
/// ```
/// use roomwire_core::wire::{WireFormat, Wires};
/// assert_eq!(Wires::POSTCARD.only(), Some(WireFormat::Postcard));
/// assert_eq!(Wires::ALL.only(), None);
/// // A wire the channel does not allow is replaced by one it does.
/// assert_eq!(Wires::POSTCARD.choose(WireFormat::Alepha), WireFormat::Postcard);
/// assert_eq!(Wires::JSON.choose(WireFormat::Postcard), WireFormat::Json);
/// assert_eq!(Wires::ALL.choose(WireFormat::Alepha), WireFormat::Alepha);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Wires {
    alepha: bool,
    json: bool,
    postcard: bool,
}

impl Wires {
    /// Every wire, chosen at run time (the default).
    pub const ALL: Wires = Wires { alepha: true, json: true, postcard: true };
    /// The roomwire wire in postcard only: the smallest client.
    pub const POSTCARD: Wires = Wires { alepha: false, json: false, postcard: true };
    /// The Alepha wire only: a client of Alepha servers.
    pub const ALEPHA: Wires = Wires { alepha: true, json: false, postcard: false };
    /// The JSON wires (Alepha's, and roomwire's in JSON), chosen at run
    /// time: the client never speaks postcard (two wires, so the postcard
    /// code is still linked).
    pub const JSON: Wires = Wires { alepha: true, json: true, postcard: false };

    /// Whether `format` is one of these wires.
    pub const fn allows(self, format: WireFormat) -> bool {
        match format {
            WireFormat::Alepha => self.alepha,
            WireFormat::Json => self.json,
            WireFormat::Postcard => self.postcard,
        }
    }

    /// The wire, when there is only one.
    pub const fn only(self) -> Option<WireFormat> {
        match (self.alepha, self.json, self.postcard) {
            (true, false, false) => Some(WireFormat::Alepha),
            (false, true, false) => Some(WireFormat::Json),
            (false, false, true) => Some(WireFormat::Postcard),
            _ => None,
        }
    }

    /// `wanted` if allowed, else the first allowed of postcard, roomwire
    /// JSON, Alepha (a set allowing none gives postcard).
    pub const fn choose(self, wanted: WireFormat) -> WireFormat {
        if self.allows(wanted) {
            wanted
        } else if self.postcard {
            WireFormat::Postcard
        } else if self.json {
            WireFormat::Json
        } else if self.alepha {
            WireFormat::Alepha
        } else {
            WireFormat::Postcard
        }
    }

    /// `format`, or the only wire when there is one: what a client of
    /// these wires speaks, a constant when the set has one wire.
    pub const fn narrow(self, format: WireFormat) -> WireFormat {
        match self.only() {
            Some(only) => only,
            None => format,
        }
    }
}
