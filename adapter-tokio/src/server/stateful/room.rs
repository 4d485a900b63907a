//! What a stateful room's callbacks see: its state, its connections, and
//! ways to reach them.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use roomwire_core::CloseCode;
use roomwire_core::channel::Channel;
use roomwire_core::payload;
use roomwire_core::stateful::frame_key;
use roomwire_core::wire::WireFormat;

use super::super::Server;
use super::super::emit::{EmitError, SharedFrames};
use super::super::outbox::Outbox;
use roomwire_core::deflate::Deflate;

/// One connection of a stateful room (Alepha's `RoomConnection`).
pub struct RoomConnection<D = ()> {
    id: Arc<str>,
    user_id: Option<Arc<str>>,
    query: Vec<(String, String)>,
    /// The application's data for this connection, `D::default()` when it
    /// joins; set it in `on_join`, read it in any later callback.
    pub data: D,
    pub(crate) format: WireFormat,
    /// Where its frames go: its outbox on this node, or the node holding
    /// it (its tag).
    pub(crate) place: Place,
}

/// Where a room's connection is.
#[derive(Clone)]
pub(crate) enum Place {
    /// On this node: its outbox, and permessage-deflate for shared frames
    /// if agreed.
    Here(Arc<Outbox>, Option<Deflate>),
    /// On another node of the cluster (its tag).
    Node(u32),
}

impl<D> RoomConnection<D> {
    /// `ws-<uuid v4>`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The authenticated user, if any.
    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    /// The first value of query parameter `name` in the connection's
    /// handshake URL, percent-decoded. Untrusted: the client chose it.
    /// The connection keeps the first 64 names of its query; later ones
    /// read as absent.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// Every query parameter of the handshake, first value per name, in
    /// order: the first 64 names.
    pub fn query_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.query.iter().map(|(key, value)| (key.as_str(), value.as_str()))
    }

    /// The wire the connection speaks.
    pub fn wire(&self) -> WireFormat {
        self.format
    }

    /// Whether the connection is on this server (not on another node of
    /// the cluster).
    pub fn is_local(&self) -> bool {
        matches!(self.place, Place::Here(..))
    }
}

impl<D: fmt::Debug> fmt::Debug for RoomConnection<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomConnection")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

/// A connection about to join, as its connection task (or its node)
/// describes it.
#[derive(Clone)]
pub(crate) struct Joining {
    pub(crate) id: Arc<str>,
    pub(crate) user_id: Option<Arc<str>>,
    /// The handshake query, as sent (without `?`).
    pub(crate) query: Option<String>,
    pub(crate) format: WireFormat,
    pub(crate) place: Place,
}

impl Joining {
    pub(crate) fn into_connection<D: Default>(self) -> RoomConnection<D> {
        let Joining { id, user_id, query, format, place } = self;
        let query = query_pairs(query.as_deref());
        RoomConnection { id, user_id, query, data: D::default(), format, place }
    }

    /// Close this connection (a local one) with 1011 "Room join failed".
    pub(crate) fn refuse(&self) {
        if let Place::Here(outbox, _) = &self.place {
            let failed = roomwire_core::stateful::JOIN_FAILED;
            outbox.request_close(failed.code, failed.reason);
        }
    }
}

/// How many query parameters a stateful room's connection keeps decoded:
/// the first names, in order. The query is the client's (up to the
/// handshake limit, thousands of names): decoded whole, a connection would
/// hold thousands of small allocations, thirty times the bytes sent, and
/// each join would compare every name with every other in the room's task.
/// (The raw query, at most the handshake limit, is kept as sent.)
pub(crate) const MAX_QUERY_PAIRS: usize = 64;

/// A handshake query's parameters, first value per name, percent-decoded
/// (what a stateful room's connection shows as its query): the first
/// [`MAX_QUERY_PAIRS`] names.
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = crate::server::admission::form_decode(name);
        if !pairs.iter().any(|(seen, _)| *seen == name) {
            if pairs.len() == MAX_QUERY_PAIRS {
                break;
            }
            pairs.push((name.into_owned(), crate::server::admission::form_decode(value).into_owned()));
        }
    }
    pairs
}

/// A message encoded for every wire: JSON always, postcard if the
/// message has a postcard encoding.
pub(crate) struct Encoded {
    pub(crate) json: Vec<u8>,
    pub(crate) postcard: Option<Vec<u8>>,
}

impl Encoded {
    /// `message` encoded (postcard only if `postcard` asks).
    pub(crate) fn new<M: serde::Serialize + ?Sized>(message: &M, postcard: bool) -> Result<Self, EmitError> {
        let mut json = Vec::new();
        payload::encode_payload_to_vec(WireFormat::Json, message, &mut json)?;
        let postcard = if postcard {
            let mut bytes = Vec::new();
            payload::encode_payload_to_vec(WireFormat::Postcard, message, &mut bytes)?;
            Some(bytes)
        } else {
            None
        };
        Ok(Self { json, postcard })
    }
}

/// A live stateful room, as its callbacks see it (Alepha's `RoomContext`):
/// `state` is the room's, owned by the room's task, so callbacks change it
/// freely (`room.state.count += 1`) without locks; the connections are in
/// join order.
///
/// Frames sent with [`send`](Self::send) and [`broadcast`](Self::broadcast)
/// are the channel's `In` type, never labelled with the room on the
/// Alepha wire (as Alepha's `$room` sends them).
pub struct Room<C: Channel, S, D = ()> {
    /// The room's state, built by the endpoint's state factory.
    pub state: S,
    room_id: Arc<str>,
    pub(crate) connections: Vec<RoomConnection<D>>,
    postcard_members: usize,
    server: Server,
    _channel: PhantomData<fn() -> C>,
}

impl<C: Channel, S: fmt::Debug, D: fmt::Debug> fmt::Debug for Room<C, S, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Room")
            .field("room_id", &self.room_id)
            .field("state", &self.state)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

impl<C: Channel, S, D> Room<C, S, D> {
    pub(crate) fn new(room_id: Arc<str>, state: S, server: Server) -> Self {
        Self { state, room_id, connections: Vec::new(), postcard_members: 0, server, _channel: PhantomData }
    }

    /// The room id.
    pub fn room_id(&self) -> &str {
        &self.room_id
    }

    /// How many connections are in the room.
    pub fn size(&self) -> usize {
        self.connections.len()
    }

    /// The connections, in join order.
    pub fn connections(&self) -> &[RoomConnection<D>] {
        &self.connections
    }

    /// The connection `id`, if it is in the room.
    pub fn connection(&self, id: &str) -> Option<&RoomConnection<D>> {
        self.connections.iter().find(|c| &*c.id == id)
    }

    /// The connection `id`, to change its `data`.
    pub fn connection_mut(&mut self, id: &str) -> Option<&mut RoomConnection<D>> {
        self.connections.iter_mut().find(|c| &*c.id == id)
    }

    /// The server (to emit on other channels, look up connections …).
    pub fn server(&self) -> &Server {
        &self.server
    }

    pub(crate) fn add(&mut self, connection: RoomConnection<D>) {
        if connection.format == WireFormat::Postcard {
            self.postcard_members += 1;
        }
        self.connections.push(connection);
    }

    pub(crate) fn remove(&mut self, id: &str) -> Option<RoomConnection<D>> {
        let index = self.connections.iter().position(|c| &*c.id == id)?;
        let connection = self.connections.remove(index);
        if connection.format == WireFormat::Postcard {
            self.postcard_members -= 1;
        }
        Some(connection)
    }

    /// Send `message` to the connection `id` alone. Returns whether it is
    /// in the room. Fails if the message cannot be encoded.
    pub fn send(&self, id: &str, message: &C::In<'_>) -> Result<bool, EmitError> {
        let Some(connection) = self.connection(id) else { return Ok(false) };
        let encoded = Encoded::new(message, connection.format == WireFormat::Postcard)?;
        Ok(self.deliver(&encoded, |c| &*c.id == id) == 1)
    }

    /// Send `message` to every connection of the room. Returns how many
    /// it reached.
    pub fn broadcast(&self, message: &C::In<'_>) -> Result<usize, EmitError> {
        self.broadcast_except(message, &[])
    }

    /// Send `message` to every connection of the room but those in
    /// `except` (Alepha's `exceptConnectionIds`).
    pub fn broadcast_except(&self, message: &C::In<'_>, except: &[&str]) -> Result<usize, EmitError> {
        let encoded = Encoded::new(message, self.postcard_members > 0)?;
        Ok(self.deliver(&encoded, |c| !except.contains(&&*c.id)))
    }

    /// Close the connection `id` with `code` and `reason` (Alepha's
    /// `room.close`). It leaves the room when its closing handshake ends.
    pub fn close(&self, id: &str, code: CloseCode, reason: &str) -> bool {
        self.server.close_connection(id, code, reason)
    }

    /// Queue `encoded` to the connections `to` picks, framed once per wire
    /// for this node's, sent once per other node for theirs.
    pub(crate) fn deliver(&self, encoded: &Encoded, to: impl Fn(&RoomConnection<D>) -> bool) -> usize {
        let mut frames = SharedFrames::default();
        let mut count = 0;
        let mut elsewhere: Vec<(u32, &str)> = Vec::new();
        for connection in self.connections.iter().filter(|c| to(c)) {
            let payload = match (connection.format, &encoded.postcard) {
                (WireFormat::Postcard, Some(postcard)) => postcard,
                (WireFormat::Postcard, None) => continue,
                (WireFormat::Alepha | WireFormat::Json, _) => &encoded.json,
            };
            match &connection.place {
                Place::Here(outbox, deflate) => {
                    outbox.push(frames.get(frame_key(connection.format), payload, deflate.as_ref()));
                }
                Place::Node(tag) => elsewhere.push((*tag, &connection.id)),
            }
            count += 1;
        }
        if !elsewhere.is_empty() {
            elsewhere.sort_unstable();
            let node = &self.server.shared.node;
            for group in elsewhere.chunk_by(|a, b| a.0 == b.0) {
                let ids: Vec<&str> = group.iter().map(|(_, id)| *id).collect();
                let tag = group.first().map_or(0, |(tag, _)| *tag);
                node.emit_to_node(tag, C::PATH, &ids, &encoded.json, encoded.postcard.as_deref());
            }
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_keeps_its_first_value_per_name_decoded() {
        let pairs = query_pairs(Some("roomId=a%20b&x&roomId=c&&y=1+2"));
        let expected = [("roomId", "a b"), ("x", ""), ("y", "1 2")];
        assert_eq!(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>(), expected);
    }

    #[test]
    fn a_query_of_thousands_of_names_keeps_the_first_64() {
        // What fits a 16 KiB handshake: thousands of short names, repeated
        // names in between (which are not new names and count for nothing).
        let query: Vec<String> = (0..4000).map(|i| format!("n{i}=v&n0=again")).collect();
        let pairs = query_pairs(Some(&query.join("&")));
        assert_eq!(pairs.len(), MAX_QUERY_PAIRS);
        assert_eq!(pairs.first().map(|(k, v)| (k.as_str(), v.as_str())), Some(("n0", "v")));
        assert_eq!(pairs.last().map(|(k, _)| k.as_str()), Some("n63"));
    }
}
