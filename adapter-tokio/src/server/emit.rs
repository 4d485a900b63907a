//! Emitting: resolve a target with the core, encode once per (wire
//! format, label), queue the shared frame to every recipient.

use std::cell::RefCell;
use std::fmt;

use bytes::Bytes;
use roomwire_core::InsufficientSize;
use roomwire_core::deflate::Deflate;
use roomwire_core::dispatch::{self, MAX_SERVER_HEADER};
use roomwire_core::payload;
use roomwire_core::payload::EncodeError;
use roomwire_core::room::MemberId;
use roomwire_core::target::{FrameKey, Target, resolve};
use roomwire_core::wire::WireFormat;
use serde::Serialize;
use tracing::{debug, debug_span, trace};

use super::registry::ChannelCell;

/// Who an [`emit`](super::Server::emit) reaches: Alepha's `EmitOptions`
/// without the message.
///
/// Rooms, users and connections are united; excluded connections and
/// users are then removed. Naming no room, user or connection means the
/// whole channel (every connection of the endpoint).
///
/// ```
/// use roomwire_tokio::server::Emit;
/// let everyone = Emit::new();
/// let lobby_but_me = Emit::to_room("lobby").except_connection("ws-1b4e28ba-2fa1-11d2-883f-0016d3cca427");
/// let two_rooms_and_alice = Emit::to_room("a").room("b").user("alice");
/// assert!(everyone.is_channel_wide());
/// assert!(!lobby_but_me.is_channel_wide());
/// assert_eq!(two_rooms_and_alice.rooms, ["a", "b"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Emit {
    /// Rooms whose connections are reached, in label priority order (a
    /// connection in several is labelled with the first).
    pub rooms: Vec<String>,
    /// Users whose connections are reached.
    pub users: Vec<String>,
    /// Connections reached, by id.
    pub connections: Vec<String>,
    /// Connections never reached.
    pub except_connections: Vec<String>,
    /// Users whose connections are never reached.
    pub except_users: Vec<String>,
}

impl Emit {
    /// No target named: the whole channel.
    pub fn new() -> Self {
        Self::default()
    }

    /// The connections in `room`.
    pub fn to_room(room: impl Into<String>) -> Self {
        Self::new().room(room)
    }

    /// The connections of `user`.
    pub fn to_user(user: impl Into<String>) -> Self {
        Self::new().user(user)
    }

    /// The connection `id`.
    pub fn to_connection(id: impl Into<String>) -> Self {
        Self::new().connection(id)
    }

    /// Also the connections in `room`.
    pub fn room(mut self, room: impl Into<String>) -> Self {
        self.rooms.push(room.into());
        self
    }

    /// Also the connections of `user`.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.users.push(user.into());
        self
    }

    /// Also the connection `id`.
    pub fn connection(mut self, id: impl Into<String>) -> Self {
        self.connections.push(id.into());
        self
    }

    /// Never the connection `id`.
    pub fn except_connection(mut self, id: impl Into<String>) -> Self {
        self.except_connections.push(id.into());
        self
    }

    /// Never the connections of `user`.
    pub fn except_user(mut self, user: impl Into<String>) -> Self {
        self.except_users.push(user.into());
        self
    }

    /// Whether no room, user or connection is named.
    pub fn is_channel_wide(&self) -> bool {
        self.rooms.is_empty() && self.users.is_empty() && self.connections.is_empty()
    }
}

/// Why an emit or a reply sent nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmitError {
    /// No endpoint of this server serves that channel (its path).
    UnknownChannel(&'static str),
    /// The message has no encoding in a wire format a recipient speaks.
    Encode(EncodeError),
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmitError::UnknownChannel(path) => write!(f, "no endpoint serves the channel {path}"),
            EmitError::Encode(e) => write!(f, "cannot encode the message: {e}"),
        }
    }
}

impl std::error::Error for EmitError {}

impl From<EncodeError> for EmitError {
    fn from(e: EncodeError) -> Self {
        EmitError::Encode(e)
    }
}

/// A target with borrowed lists: from an [`Emit`], a reply, or another
/// node's emit.
pub(crate) struct Spec<'a, R = String, U = String> {
    pub(crate) rooms: &'a [R],
    pub(crate) users: &'a [U],
    pub(crate) connections: &'a [U],
    pub(crate) except_connections: &'a [U],
    pub(crate) except_users: &'a [U],
    pub(crate) except_member: Option<MemberId>,
}

impl<'a> Spec<'a> {
    pub(crate) fn from_emit(emit: &'a Emit) -> Self {
        Self {
            rooms: &emit.rooms,
            users: &emit.users,
            connections: &emit.connections,
            except_connections: &emit.except_connections,
            except_users: &emit.except_users,
            except_member: None,
        }
    }
}

/// The postcard payload of a delivery.
pub(crate) enum Payloads<'m> {
    /// Encoded already, or `None`: it has none (postcard recipients are
    /// skipped).
    Encoded(Option<&'m [u8]>),
    /// Encoded only if a postcard recipient shows up.
    Typed(&'m dyn Fn(&mut Vec<u8>) -> Result<(), EncodeError>),
}

thread_local! {
    /// Where payloads are serialized before being copied into frames.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// One complete frame for every recipient with `key`.
pub(crate) fn frame(key: FrameKey<'_>, payload: &[u8]) -> Bytes {
    // Room for the header, the payload and a label or envelope; grown to
    // what the core asks for if short.
    let mut out = vec![0u8; MAX_SERVER_HEADER + payload.len() + 96 + key.label.map_or(0, |l| 2 * l.len())];
    loop {
        match dispatch::encode_frame(key, payload, &mut out) {
            Ok(range) => return Bytes::from(out).slice(range),
            Err(InsufficientSize { required }) if required > out.len() => out.resize(required, 0),
            // The core asked for no more than it had: cannot happen; an
            // empty frame would be refused by the connection, not sent.
            Err(_) => return Bytes::new(),
        }
    }
}

/// The frames of one message for one label, encoded at most once per wire
/// format, and compressed at most once more per format for the recipients
/// that agreed to permessage-deflate without server context takeover.
#[derive(Default)]
pub(crate) struct SharedFrames {
    plain: [Option<Bytes>; 3],
    /// Compressed twins, per format, one per compressor setting (level,
    /// window, size worth compressing) that recipients agreed to; `None`
    /// for a message too short to compress. Recipients whose clients asked
    /// for smaller windows share one entry
    /// ([`Deflate::shared_window_bits`]), not one per window.
    compressed: [Vec<(CompressedKey, Option<Bytes>)>; 3],
}

/// What makes two agreements compress a frame to the same bytes.
type CompressedKey = (u8, u8, usize);

impl SharedFrames {
    /// The frame of `payload` for a recipient with `key` and `deflate`.
    pub(crate) fn get(&mut self, key: FrameKey<'_>, payload: &[u8], deflate: Option<&Deflate>) -> Bytes {
        let index = match key.format {
            WireFormat::Alepha => 0,
            WireFormat::Json => 1,
            WireFormat::Postcard => 2,
        };
        let (Some(plain), Some(compressed)) = (self.plain.get_mut(index), self.compressed.get_mut(index)) else {
            return frame(key, payload);
        };
        let plain = plain.get_or_insert_with(|| frame(key, payload));
        let Some(agreed) = deflate else { return plain.clone() };
        let made_for = (agreed.level, agreed.shared_window_bits(), agreed.min_size);
        let twin = match compressed.iter().find(|(key, _)| *key == made_for) {
            Some((_, twin)) => twin.clone(),
            None => {
                let twin = crate::deflate::compress_frame(plain, agreed);
                compressed.push((made_for, twin.clone()));
                twin
            }
        };
        twin.unwrap_or_else(|| plain.clone())
    }
}

/// Resolve `spec` on `cell`'s connections and queue `message` to each;
/// with a backplane, publish it to the other nodes too. Returns how many
/// connections of this node it reached.
pub(crate) fn deliver<M: Serialize + ?Sized, R: AsRef<str>, U: AsRef<str>>(
    cell: &ChannelCell,
    spec: &Spec<'_, R, U>,
    message: &M,
) -> Result<usize, EmitError> {
    let span = match spec.rooms.first() {
        Some(room) => debug_span!("room", room = room.as_ref(), channel = cell.path),
        None => debug_span!("emit", channel = cell.path),
    };
    let _entered = span.enter();
    SCRATCH.with(|scratch| {
        let mut json = scratch.try_borrow_mut().map_or_else(|_| Vec::new(), |mut s| std::mem::take(&mut *s));
        let result = encode_and_deliver(cell, spec, message, &mut json);
        json.clear();
        if json.capacity() <= 64 * 1024
            && let Ok(mut s) = scratch.try_borrow_mut()
        {
            *s = json;
        }
        result
    })
}

fn encode_and_deliver<M: Serialize + ?Sized, R: AsRef<str>, U: AsRef<str>>(
    cell: &ChannelCell,
    spec: &Spec<'_, R, U>,
    message: &M,
    json: &mut Vec<u8>,
) -> Result<usize, EmitError> {
    // Payloads are encoded outside the lock: JSON (Alepha and roomwire JSON
    // share it) always, postcard if a postcard client is connected here or
    // other nodes may have some. Only a postcard client that registered in
    // between makes it encode under the lock.
    payload::encode_payload_to_vec(WireFormat::Json, message, json)?;
    let clustered = cell.node.link.is_some();
    let local_postcard = cell.lock().postcard_members > 0;
    let mut postcard = Vec::new();
    let has_postcard = (local_postcard || clustered)
        && match payload::encode_payload_to_vec(WireFormat::Postcard, message, &mut postcard) {
            Ok(()) => true,
            Err(e) if local_postcard => return Err(e.into()),
            Err(_) => false,
        };
    let typed = |out: &mut Vec<u8>| payload::encode_payload_to_vec(WireFormat::Postcard, message, out);
    let payloads = if has_postcard { Payloads::Encoded(Some(&postcard)) } else { Payloads::Typed(&typed) };
    let count = deliver_encoded(cell, spec, json, payloads)?;
    if clustered {
        let except_self = spec.except_member.and_then(|m| cell.lock().slot(m).map(|slot| slot.id.text()));
        cell.node.publish(cell.path, spec, except_self.as_deref(), json, has_postcard.then_some(&postcard[..]));
    }
    Ok(count)
}

/// Resolve `spec` on `cell`'s connections and queue the payloads, framed
/// once per (wire format, label), to each.
pub(crate) fn deliver_encoded<R: AsRef<str>, U: AsRef<str>>(
    cell: &ChannelCell,
    spec: &Spec<'_, R, U>,
    json: &[u8],
    payloads: Payloads<'_>,
) -> Result<usize, EmitError> {
    let mut state = cell.lock();
    let mut encoded_here = Vec::new();
    let postcard: Option<&[u8]> = match payloads {
        Payloads::Encoded(postcard) => postcard,
        Payloads::Typed(encode) if state.postcard_members > 0 => {
            encode(&mut encoded_here)?;
            Some(&encoded_here)
        }
        Payloads::Typed(_) => None,
    };
    let map = |ids: &[U]| -> Vec<MemberId> { ids.iter().filter_map(|id| state.member_of(id.as_ref())).collect() };
    let connections = map(spec.connections);
    let except_connections = map(spec.except_connections);
    let named = !(spec.rooms.is_empty() && spec.users.is_empty() && spec.connections.is_empty());
    if named && spec.rooms.is_empty() && spec.users.is_empty() && connections.is_empty() {
        // Only connections of other endpoints or nodes (or closed ones)
        // were named: nobody here, and certainly not the whole channel.
        return Ok(0);
    }
    let target = Target {
        rooms: spec.rooms,
        users: spec.users,
        connections: &connections,
        except_connections: &except_connections,
        except_users: spec.except_users,
        except_connection: spec.except_member,
    };
    let (table, view, seen) = state.parts();
    let members = view.members;
    // Frames for the label being delivered, one per format and
    // compression; deliveries come grouped by label.
    let mut label_now: Option<Option<&str>> = None;
    let mut frames = SharedFrames::default();
    let mut skipped = 0usize;
    let count = resolve(&target, table, &view, seen, |member, label| {
        let Some(Some(slot)) = members.get(member.0 as usize) else { return };
        if label_now != Some(label) {
            label_now = Some(label);
            frames = SharedFrames::default();
        }
        let payload = match (slot.format, postcard) {
            (WireFormat::Postcard, Some(postcard)) => postcard,
            (WireFormat::Postcard, None) => {
                skipped += 1;
                return;
            }
            (WireFormat::Alepha | WireFormat::Json, _) => json,
        };
        let key = FrameKey { format: slot.format, label };
        slot.outbox.push(frames.get(key, payload, slot.deflate.as_deref()));
    });
    if skipped > 0 {
        debug!(skipped, "no postcard encoding of this message: postcard recipients skipped");
    }
    trace!(recipients = count - skipped, "emitted");
    Ok(count - skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomwire_core::deflate::{DeflateConfig, negotiate};

    /// Clients that asked for every window from 8 to 15 bits share two
    /// compressions of a room message (not one per window), and each
    /// client's inflater, at the window it asked for, reads its frame.
    #[test]
    fn clients_asking_for_any_window_share_two_compressions() {
        let payload = br#"{"type":"append","content":"hello everyone, hello again"}"#.repeat(20);
        let key = FrameKey { format: WireFormat::Alepha, label: Some("room") };
        let mut frames = SharedFrames::default();
        let mut got = Vec::new();
        for bits in 8..=15u8 {
            let offer = format!("permessage-deflate; server_max_window_bits={bits}");
            let agreed = negotiate([offer.as_bytes()], &DeflateConfig::DEFAULT).unwrap();
            got.push((bits, frames.get(key, &payload, Some(&agreed))));
        }
        assert_eq!(frames.compressed[0].len(), 2, "compressions made for 8 windows");
        let plain = frame(key, &payload);
        for (bits, frame) in got {
            let (header, at) = roomwire_core::FrameHeader::parse(&frame).unwrap().unwrap();
            assert_eq!(header.rsv, 0b100, "{bits}: sent uncompressed");
            let mut inflater = flate2::Decompress::new_with_window_bits(false, bits.max(9));
            let mut body = frame[at..].to_vec();
            body.extend_from_slice(&roomwire_core::deflate::TAIL);
            let mut out = Vec::with_capacity(plain.len() * 2);
            inflater.decompress_vec(&body, &mut out, flate2::FlushDecompress::Sync).unwrap();
            let (plain_header, plain_at) = roomwire_core::FrameHeader::parse(&plain).unwrap().unwrap();
            assert_eq!(plain_header.opcode, header.opcode);
            assert_eq!(&out[..], &plain[plain_at..], "{bits}: the client read another message");
        }
    }
}
