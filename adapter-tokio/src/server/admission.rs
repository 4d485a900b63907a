//! What admission hooks see and answer.

use std::borrow::Cow;
use std::net::SocketAddr;

use roomwire_core::wire::WireFormat;

use crate::message::HandshakeInfo;

/// A valid WebSocket Upgrade request, as `authorize` and `resolve_user`
/// hooks see it (Alepha passes `{ url, headers: { authorization, cookie } }`;
/// here every header is available).
///
/// ```
/// # use roomwire_tokio::server::Handshake;
/// fn user_of(handshake: &Handshake) -> Option<String> {
///     // Browsers cannot set Authorization on a WebSocket: accept ?token= too.
///     handshake.bearer_token().map(str::to_owned).or_else(|| handshake.query_param("token").map(|t| t.into_owned()))
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    info: HandshakeInfo,
    wire: WireFormat,
    peer: Option<SocketAddr>,
}

impl Handshake {
    pub(crate) fn new(info: HandshakeInfo, wire: WireFormat, peer: Option<SocketAddr>) -> Self {
        Self { info, wire, peer }
    }

    /// The request path, without the query (the endpoint's path).
    pub fn path(&self) -> &str {
        &self.info.path
    }

    /// The raw query string after `?`, if any (not decoded).
    pub fn query(&self) -> Option<&str> {
        self.info.query.as_deref()
    }

    /// The first value of query parameter `name`, decoded like the
    /// browser's `URLSearchParams` (`+` is a space, `%XX` escapes; invalid
    /// UTF-8 becomes U+FFFD).
    ///
    /// Not for the rooms: a request may name several
    /// (`?roomId=public&roomId=private`) and joins them all. Check
    /// [`rooms`](Self::rooms), or each room in an
    /// [`authorize_room`](crate::server::Endpoint::authorize_room) rule.
    pub fn query_param(&self, name: &str) -> Option<Cow<'_, str>> {
        self.query_params(name).next()
    }

    /// Every value of query parameter `name`, in order, decoded as
    /// [`query_param`](Self::query_param) decodes the first.
    pub fn query_params<'h>(&'h self, name: &str) -> impl Iterator<Item = Cow<'h, str>> {
        let query = self.query().unwrap_or("");
        // A fragment is not part of the query (the server reads rooms so).
        let query = query.split_once('#').map_or(query, |(before, _)| before);
        query.split('&').filter(|pair| !pair.is_empty()).filter_map(move |pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(key) == name).then(|| form_decode(value))
        })
    }

    /// The rooms the request asks to join on the Alepha wire, as the
    /// server reads them (the core's
    /// [`for_each_query_room`](roomwire_core::alepha::for_each_query_room)):
    /// every `roomId` value, then the items of the first `roomIds`, or
    /// [`DEFAULT_ROOM`](roomwire_core::alepha::DEFAULT_ROOM) when it names
    /// none. Empty if the query names a room that is not valid (such a
    /// request is refused unless the hook answers with a room of its own,
    /// which replaces them). On the roomwire wire rooms are joined by
    /// request, each through the endpoint's room rules, not by the URL.
    ///
    /// ```
    /// # use roomwire_tokio::server::Handshake;
    /// fn public_only(handshake: &Handshake) -> bool {
    ///     // Every room, not the first `roomId`: `?roomId=public&roomId=admin` names two.
    ///     handshake.rooms().iter().all(|room| room.starts_with("public"))
    /// }
    /// ```
    pub fn rooms(&self) -> Vec<String> {
        let mut rooms = Vec::new();
        match roomwire_core::alepha::for_each_query_room(self.query(), |room| {
            rooms.push(room.as_str().to_owned());
            Ok::<(), roomwire_core::alepha::QueryRoomsError>(())
        }) {
            Ok(true) => rooms,
            Ok(false) => vec![roomwire_core::alepha::DEFAULT_ROOM.to_owned()],
            Err(_) => Vec::new(),
        }
    }

    /// Every header line, in order, as (name, value).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.info.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// The first header named `name` (ASCII case-insensitive), as text if
    /// it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.info.header_str(name)
    }

    /// The `Authorization` header.
    pub fn authorization(&self) -> Option<&str> {
        self.header("authorization")
    }

    /// The token of an `Authorization: Bearer <token>` header (scheme
    /// case-insensitive, token trimmed).
    pub fn bearer_token(&self) -> Option<&str> {
        let value = self.authorization()?.trim_start();
        let (scheme, token) = value.split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
    }

    /// The `Cookie` header.
    pub fn cookie(&self) -> Option<&str> {
        self.header("cookie")
    }

    /// The value of cookie `name`, if the `Cookie` header has it.
    pub fn cookie_value(&self, name: &str) -> Option<&str> {
        self.cookie()?.split(';').find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value)
        })
    }

    /// The wire the client asked for (by its subprotocol offer).
    pub fn wire(&self) -> WireFormat {
        self.wire
    }

    /// The client's address, when the server knows it.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }
}

/// `application/x-www-form-urlencoded` decoding.
pub(crate) fn form_decode(raw: &str) -> Cow<'_, str> {
    if !raw.contains(['%', '+']) {
        return Cow::Borrowed(raw);
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|d| (*d as char).to_digit(16));
        match b {
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The answer of an admission hook (Alepha's `admit` result).
///
/// ```
/// use roomwire_tokio::server::Admission;
/// let anonymous = Admission::accept();
/// let alice_in_her_room = Admission::user("alice").with_room("alice-inbox");
/// let no = Admission::refuse(403, "Forbidden");
/// # let _ = (anonymous, alice_in_her_room, no);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Admission {
    /// Upgrade the connection.
    Accept {
        /// The authenticated user, if any.
        user_id: Option<String>,
        /// A room that replaces the rooms the URL asked for (on the
        /// roomwire wire: the room the connection starts in).
        room_id: Option<String>,
    },
    /// Refuse with an HTTP status (401, 403, 429, 503 …) and a text body.
    Refuse {
        /// The HTTP status.
        status: u16,
        /// The response body (`text/plain`).
        body: String,
    },
}

impl Admission {
    /// Accept an anonymous connection.
    pub fn accept() -> Self {
        Admission::Accept { user_id: None, room_id: None }
    }

    /// Accept a connection of `user`.
    pub fn user(user: impl Into<String>) -> Self {
        Admission::Accept { user_id: Some(user.into()), room_id: None }
    }

    /// Put the connection in `room` instead of the rooms it asked for
    /// (no effect on a refusal).
    pub fn with_room(self, room: impl Into<String>) -> Self {
        match self {
            Admission::Accept { user_id, .. } => Admission::Accept { user_id, room_id: Some(room.into()) },
            refuse => refuse,
        }
    }

    /// Refuse with `status` and `body`.
    pub fn refuse(status: u16, body: impl Into<String>) -> Self {
        Admission::Refuse { status, body: body.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake(query: Option<&str>, headers: &[(&str, &str)]) -> Handshake {
        let info = HandshakeInfo {
            path: "/ws".into(),
            query: query.map(str::to_owned),
            headers: headers.iter().map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec())).collect(),
            protocol: None,
        };
        Handshake::new(info, WireFormat::Alepha, None)
    }

    #[test]
    fn reads_tokens_query_and_cookies() {
        let h = handshake(
            Some("roomId=a&token=J%C3%BCrgen+K&empty"),
            &[("Authorization", "bearer  abc "), ("Cookie", "a=1; session=xyz")],
        );
        assert_eq!(h.bearer_token(), Some("abc"));
        assert_eq!(h.query_param("token").as_deref(), Some("Jürgen K"));
        assert_eq!(h.query_param("empty").as_deref(), Some(""));
        assert_eq!(h.query_param("nope"), None);
        assert_eq!(h.cookie_value("session"), Some("xyz"));
        assert_eq!(h.cookie_value("b"), None);
        assert_eq!(handshake(None, &[("Authorization", "Basic abc")]).bearer_token(), None);
        assert_eq!(form_decode("%zz%4"), "%zz%4");
    }

    /// An `authorize` hook that checked the first `roomId` would let a
    /// second one in: the rooms are every one the server joins.
    #[test]
    fn rooms_are_every_room_the_request_names() {
        let h = handshake(Some("roomId=public&token=t&roomId=admin&roomIds=x,%20y,,z&roomIds=ignored#roomId=f"), &[]);
        assert_eq!(h.query_param("roomId").as_deref(), Some("public"));
        assert_eq!(h.query_params("roomId").collect::<Vec<_>>(), ["public", "admin"]);
        assert_eq!(h.rooms(), ["public", "admin", "x", "y", "z"]);
        assert_eq!(handshake(Some("token=t"), &[]).rooms(), ["default"]);
        assert_eq!(handshake(None, &[]).rooms(), ["default"]);
        assert!(handshake(Some("roomId="), &[]).rooms().is_empty());
    }
}
