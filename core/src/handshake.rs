//! The opening handshake (RFC 6455 §4), both roles.
//!
//! HTTP parsing is `httparse`'s; SHA-1 (`hmac-sha1-compact`, a rolled loop: about 0.5 KiB of
//! flash where an unrolled one takes 2.5) and base64 come from their crates.
//! What is ours: which requests and responses are acceptable, the refusal
//! for each fault, and writing responses into a caller-owned buffer.
//!
//! Server side: [`parse_request`] reads the client's Upgrade request into a
//! borrowed [`Request`]; the application looks at its path, query,
//! `Authorization`, `Cookie` and offered subprotocols, then answers with
//! [`write_accept`] or [`write_refusal`].
//!
//! Client side: [`write_request`] emits the Upgrade request and
//! [`parse_response`] checks the server's answer (status 101, `Upgrade`,
//! `Connection`, `Sec-WebSocket-Accept`, and a subprotocol we offered).
//!
//! Every header section is bounded: [`MAX_HEADERS`] headers and a byte limit
//! the caller passes (`max_handshake_size` in [`crate::Config`]: 8 KiB by
//! default, 16 KiB for a room server).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use core::fmt;
use hmac_sha1_compact::Hash as Sha1;

use crate::error::InsufficientSize;
use crate::writer::{Writer, write_twice};

/// Most header lines a request or response may have; more are refused as
/// too large (431). 100 with the `alloc` feature: a server behind a CDN or
/// proxies sees their headers added to a browser's dozen or so. 32
/// without: the parsed headers sit on the stack while a handshake is read
/// (16 bytes each on a 32-bit MCU), and a device talks to known peers.
pub const MAX_HEADERS: usize = if cfg!(feature = "alloc") { 100 } else { 32 };

/// The GUID of RFC 6455 §1.3, appended to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why a handshake failed, and the HTTP status a server answers it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The header section is not valid HTTP/1.1, or misses a required part
    /// (400). The text says which.
    BadRequest(&'static str),
    /// `Sec-WebSocket-Version` is not 13 (426, with `Sec-WebSocket-Version: 13`).
    UnsupportedVersion,
    /// The header section is over the byte limit or has too many lines (431).
    TooLarge,
    /// Client side: the server answered with a status other than 101.
    Rejected {
        /// The server's status code.
        status: u16,
    },
    /// Client side: the 101 response is not a valid WebSocket upgrade.
    BadResponse(&'static str),
    /// The handshake did not complete in time.
    Timeout,
}

impl HandshakeError {
    /// The HTTP status a server sends for this error.
    pub fn status(self) -> u16 {
        match self {
            HandshakeError::UnsupportedVersion => 426,
            HandshakeError::TooLarge => 431,
            HandshakeError::Timeout => 408,
            _ => 400,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::BadRequest(why) => write!(f, "bad upgrade request: {why}"),
            HandshakeError::UnsupportedVersion => f.write_str("unsupported Sec-WebSocket-Version"),
            HandshakeError::TooLarge => f.write_str("handshake header section too large"),
            HandshakeError::Rejected { status } => write!(f, "server refused the upgrade with {status}"),
            HandshakeError::BadResponse(why) => write!(f, "bad upgrade response: {why}"),
            HandshakeError::Timeout => f.write_str("handshake timed out"),
        }
    }
}

impl core::error::Error for HandshakeError {}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`.
///
/// ```
/// // RFC 6455 §1.3.
/// let accept = roomwire_core::handshake::accept_key(b"dGhlIHNhbXBsZSBub25jZQ==");
/// assert_eq!(&accept, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    let digest = sha.finalize();
    let mut out = [0u8; 28];
    // 20 bytes always encode to exactly 28 base64 characters.
    let _ = BASE64.encode_slice(digest, &mut out);
    out
}

/// A client key (`Sec-WebSocket-Key`) from 16 random bytes.
///
/// ```
/// let key = roomwire_core::handshake::client_key([0; 16]);
/// assert_eq!(&key, b"AAAAAAAAAAAAAAAAAAAAAA==");
/// ```
pub fn client_key(nonce: [u8; 16]) -> [u8; 24] {
    let mut out = [0u8; 24];
    // 16 bytes always encode to exactly 24 base64 characters.
    let _ = BASE64.encode_slice(nonce, &mut out);
    out
}

/// A client's Upgrade request, borrowed from the bytes it was parsed from.
///
/// Only the header section is kept (as a slice); header accessors re-read
/// it, which keeps this value, and every [`crate::Event`], small.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    raw: &'a [u8],
    target: &'a str,
    key: &'a [u8],
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request").field("target", &self.target).finish_non_exhaustive()
    }
}

impl<'a> Request<'a> {
    /// The request target as sent: path and query.
    pub fn target(&self) -> &'a str {
        self.target
    }

    /// The path, without the query.
    pub fn path(&self) -> &'a str {
        self.target.split_once('?').map_or(self.target, |(path, _)| path)
    }

    /// The query string after `?`, if any (not percent-decoded).
    pub fn query(&self) -> Option<&'a str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// Every header line, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + use<'a> {
        let (headers, count) = parse_headers(self.raw);
        headers.into_iter().take(count).map(|h| (h.name, h.value))
    }

    /// The first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// The first header named `name` as text, if it is UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.header(name).and_then(|v| core::str::from_utf8(v).ok())
    }

    /// The `Host` header.
    pub fn host(&self) -> Option<&'a str> {
        self.header_str("host")
    }

    /// The `Origin` header, sent by browsers.
    pub fn origin(&self) -> Option<&'a str> {
        self.header_str("origin")
    }

    /// The `Authorization` header.
    pub fn authorization(&self) -> Option<&'a str> {
        self.header_str("authorization")
    }

    /// The `Cookie` header.
    pub fn cookie(&self) -> Option<&'a str> {
        self.header_str("cookie")
    }

    /// The `Sec-WebSocket-Key` the client sent.
    pub fn key(&self) -> &'a [u8] {
        self.key
    }

    /// Subprotocols the client offered, in its order of preference, from
    /// every `Sec-WebSocket-Protocol` line.
    pub fn protocols(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.headers()
            .filter(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-protocol"))
            .filter_map(|(_, value)| core::str::from_utf8(value).ok())
            .flat_map(|v| v.split(','))
            .map(|p| p.trim_matches([' ', '\t']))
            .filter(|p| !p.is_empty())
    }

    /// The `Sec-WebSocket-Accept` value that answers this request.
    pub fn accept_key(&self) -> [u8; 28] {
        accept_key(self.key)
    }
}

/// Re-read the headers of a header section `parse_request` accepted.
fn parse_headers(raw: &[u8]) -> ([httparse::Header<'_>; MAX_HEADERS], usize) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let count = match req.parse(raw) {
        Ok(httparse::Status::Complete(_)) => req.headers.len(),
        _ => 0,
    };
    (headers, count)
}

fn find_header<'a>(headers: &[httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
}

/// Whether a comma-separated header value holds `token` (ASCII case-insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    list_items(value).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// The items of a comma-separated list, trimmed: bytes, not `str`, so that
/// a client firmware links no string searching for its handshake.
pub(crate) fn list_items(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// Parse a client's Upgrade request from the start of `buf`.
///
/// `Ok(None)`: the header section is not complete yet (and is still within
/// `max_len`); keep the bytes and call again with more. `Ok(Some((request,
/// len)))`: `len` bytes formed the request; anything after belongs to the
/// WebSocket stream. `Err`: refuse with [`HandshakeError::status`].
///
/// ```
/// use roomwire_core::handshake::parse_request;
/// let raw = b"GET /chat?roomId=a HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
///     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
///     Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: roomwire.v1.json, x\r\n\r\n";
/// let (req, len) = parse_request(raw, 8192).unwrap().unwrap();
/// assert_eq!(len, raw.len());
/// assert_eq!(req.path(), "/chat");
/// assert_eq!(req.query(), Some("roomId=a"));
/// assert_eq!(req.protocols().collect::<Vec<_>>(), ["roomwire.v1.json", "x"]);
/// ```
pub fn parse_request(buf: &[u8], max_len: usize) -> Result<Option<(Request<'_>, usize)>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    // Never look past the limit, so the verdict cannot depend on how the bytes arrived.
    let len = match req.parse(buf.get(..max_len).unwrap_or(buf)) {
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= max_len { Err(HandshakeError::TooLarge) } else { Ok(None) };
        }
        Ok(httparse::Status::Complete(len)) => len,
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooLarge),
        Err(_) => return Err(HandshakeError::BadRequest("malformed HTTP request")),
    };
    if len > max_len {
        return Err(HandshakeError::TooLarge);
    }
    if req.method != Some("GET") {
        return Err(HandshakeError::BadRequest("method must be GET"));
    }
    if req.version != Some(1) {
        return Err(HandshakeError::BadRequest("HTTP/1.1 required"));
    }
    let target = req.path.unwrap_or("");
    let parsed = req.headers.get(..).unwrap_or(&[]);
    if find_header(parsed, "host").is_none() {
        return Err(HandshakeError::BadRequest("missing Host"));
    }
    if !find_header(parsed, "upgrade").is_some_and(|v| has_token(v, "websocket")) {
        return Err(HandshakeError::BadRequest("Upgrade must be websocket"));
    }
    if !find_header(parsed, "connection").is_some_and(|v| has_token(v, "upgrade")) {
        return Err(HandshakeError::BadRequest("Connection must include Upgrade"));
    }
    if find_header(parsed, "sec-websocket-version").map(<[u8]>::trim_ascii) != Some(b"13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let key = find_header(parsed, "sec-websocket-key").map(<[u8]>::trim_ascii);
    let key = key.ok_or(HandshakeError::BadRequest("missing Sec-WebSocket-Key"))?;
    let mut nonce = [0u8; 24];
    if BASE64.decode_slice(key, &mut nonce) != Ok(16) {
        return Err(HandshakeError::BadRequest("Sec-WebSocket-Key must be 16 bytes in base64"));
    }
    let raw = buf.get(..len).unwrap_or(&[]);
    Ok(Some((Request { raw, target, key }, len)))
}

/// A server's successful answer to an Upgrade request, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    /// The subprotocol the server selected, if any.
    pub protocol: Option<&'a str>,
}

/// Parse a server's handshake response from the start of `buf`, checking it
/// answers a request whose key gives `expected_accept` and that offered the
/// comma-separated `offered` subprotocols.
///
/// Same `Ok(None)` / `Ok(Some)` contract as [`parse_request`].
pub fn parse_response<'a>(
    buf: &'a [u8],
    max_len: usize,
    expected_accept: &[u8; 28],
    offered: &str,
) -> Result<Option<(Response<'a>, usize)>, HandshakeError> {
    parse_response_with(buf, max_len, expected_accept, offered, |values| no_extension(values))
}

/// The verdict on a response's `Sec-WebSocket-Extensions` values when the
/// request offered none: any value fails the handshake (RFC 6455 §4.1).
pub(crate) fn no_extension(values: &mut dyn Iterator<Item = &[u8]>) -> Result<(), &'static str> {
    match values.next() {
        Some(_) => Err("extension not offered"),
        None => Ok(()),
    }
}

/// [`parse_response`], with the `Sec-WebSocket-Extensions` values judged
/// by `extensions` (which answers why they are unacceptable).
pub(crate) fn parse_response_with<'a>(
    buf: &'a [u8],
    max_len: usize,
    expected_accept: &[u8; 28],
    offered: &str,
    extensions: impl FnOnce(&mut dyn Iterator<Item = &'a [u8]>) -> Result<(), &'static str>,
) -> Result<Option<(Response<'a>, usize)>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    // Never look past the limit, so the verdict cannot depend on how the bytes arrived.
    let len = match res.parse(buf.get(..max_len).unwrap_or(buf)) {
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= max_len { Err(HandshakeError::TooLarge) } else { Ok(None) };
        }
        Ok(httparse::Status::Complete(len)) => len,
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooLarge),
        Err(_) => return Err(HandshakeError::BadResponse("malformed HTTP response")),
    };
    if len > max_len {
        return Err(HandshakeError::TooLarge);
    }
    let status = res.code.unwrap_or(0);
    if status != 101 {
        return Err(HandshakeError::Rejected { status });
    }
    let parsed = res.headers.get(..).unwrap_or(&[]);
    if !find_header(parsed, "upgrade").is_some_and(|v| has_token(v, "websocket")) {
        return Err(HandshakeError::BadResponse("Upgrade must be websocket"));
    }
    if !find_header(parsed, "connection").is_some_and(|v| has_token(v, "upgrade")) {
        return Err(HandshakeError::BadResponse("Connection must include Upgrade"));
    }
    if find_header(parsed, "sec-websocket-accept").map(<[u8]>::trim_ascii) != Some(expected_accept.as_slice()) {
        return Err(HandshakeError::BadResponse("wrong Sec-WebSocket-Accept"));
    }
    let mut values = parsed.iter().filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions")).map(|h| h.value);
    extensions(&mut values).map_err(HandshakeError::BadResponse)?;
    let protocol = match find_header(parsed, "sec-websocket-protocol") {
        None => None,
        Some(value) => {
            let value = core::str::from_utf8(value.trim_ascii())
                .map_err(|_| HandshakeError::BadResponse("subprotocol not UTF-8"))?;
            if value.is_empty() || !list_items(offered.as_bytes()).any(|p| p == value.as_bytes()) {
                return Err(HandshakeError::BadResponse("subprotocol not offered"));
            }
            Some(value)
        }
    };
    Ok(Some((Response { protocol }, len)))
}

/// What a client asks for when it opens a connection.
#[derive(Debug, Clone, Copy)]
pub struct ClientRequest<'a> {
    /// `Host` header value (`host` or `host:port`).
    pub host: &'a str,
    /// Request target: path and optional query, e.g. `/chat?roomId=a`.
    pub target: &'a str,
    /// Subprotocols to offer, most preferred first.
    pub protocols: &'a [&'a str],
    /// Extra header lines (e.g. `Authorization`, `Cookie`, `Origin`).
    pub headers: &'a [(&'a str, &'a str)],
}

/// Write a client's Upgrade request for `key` (see [`client_key`]).
///
/// `out` is untouched on error.
///
/// ```
/// use roomwire_core::handshake::{ClientRequest, client_key, write_request};
/// let mut out = [0u8; 256];
/// let req = ClientRequest { host: "h:9001", target: "/", protocols: &[], headers: &[] };
/// let n = write_request(&req, &client_key([1; 16]), &mut out).unwrap();
/// assert!(out[..n].starts_with(b"GET / HTTP/1.1\r\nHost: h:9001\r\n"));
/// ```
pub fn write_request(req: &ClientRequest<'_>, key: &[u8; 24], out: &mut [u8]) -> Result<usize, InsufficientSize> {
    write_request_with(req, key, None, out)
}

/// Writes a `Sec-WebSocket-Extensions` value.
pub(crate) type PutExtension<'e> = Option<&'e dyn Fn(&mut Writer<'_>)>;

/// [`write_request`], offering the extensions `extension` writes.
pub(crate) fn write_request_with(
    req: &ClientRequest<'_>,
    key: &[u8; 24],
    extension: PutExtension<'_>,
    out: &mut [u8],
) -> Result<usize, InsufficientSize> {
    write_twice(out, |w| {
        w.put(b"GET ");
        w.put(req.target.as_bytes());
        w.put(b" HTTP/1.1\r\nHost: ");
        w.put(req.host.as_bytes());
        w.put(b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
        w.put(key);
        w.put(b"\r\nSec-WebSocket-Version: 13\r\n");
        for (i, p) in req.protocols.iter().enumerate() {
            w.put(if i == 0 { b"Sec-WebSocket-Protocol: ".as_slice() } else { b", " });
            w.put(p.as_bytes());
            if i + 1 == req.protocols.len() {
                w.put(b"\r\n");
            }
        }
        put_extension(w, extension);
        put_headers(w, req.headers);
        w.put(b"\r\n");
    })
}

fn put_extension(w: &mut Writer<'_>, extension: PutExtension<'_>) {
    if let Some(put) = extension {
        w.put(b"Sec-WebSocket-Extensions: ");
        put(w);
        w.put(b"\r\n");
    }
}

/// Write the `101 Switching Protocols` answer for a request whose key gives
/// `accept` (see [`Request::accept_key`]), selecting `protocol`.
///
/// `out` is untouched on error.
pub fn write_accept(
    accept: &[u8; 28],
    protocol: Option<&str>,
    headers: &[(&str, &str)],
    out: &mut [u8],
) -> Result<usize, InsufficientSize> {
    write_accept_with(accept, protocol, None, headers, out)
}

/// [`write_accept`], accepting the extensions `extension` writes.
pub(crate) fn write_accept_with(
    accept: &[u8; 28],
    protocol: Option<&str>,
    extension: PutExtension<'_>,
    headers: &[(&str, &str)],
    out: &mut [u8],
) -> Result<usize, InsufficientSize> {
    write_twice(out, |w| {
        w.put(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
        );
        w.put(accept);
        w.put(b"\r\n");
        if let Some(p) = protocol {
            w.put(b"Sec-WebSocket-Protocol: ");
            w.put(p.as_bytes());
            w.put(b"\r\n");
        }
        put_extension(w, extension);
        put_headers(w, headers);
        w.put(b"\r\n");
    })
}

/// Write a refusal: `status` with its reason phrase, `Connection: close`,
/// the extra `headers`, and `body` as text. A 426 carries
/// `Sec-WebSocket-Version: 13` (RFC 6455 §4.4).
///
/// `out` is untouched on error.
///
/// ```
/// use roomwire_core::handshake::write_refusal;
/// let mut out = [0u8; 256];
/// let n = write_refusal(404, &[], "no such endpoint", &mut out).unwrap();
/// assert!(out[..n].starts_with(b"HTTP/1.1 404 Not Found\r\n"));
/// assert!(out[..n].ends_with(b"\r\n\r\nno such endpoint"));
/// ```
pub fn write_refusal(
    status: u16,
    headers: &[(&str, &str)],
    body: &str,
    out: &mut [u8],
) -> Result<usize, InsufficientSize> {
    write_twice(out, |w| {
        w.put(b"HTTP/1.1 ");
        w.put_decimal(u64::from(status));
        w.put(b" ");
        w.put(reason_phrase(status).as_bytes());
        w.put(b"\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ");
        w.put_decimal(body.len() as u64);
        w.put(b"\r\n");
        if status == 426 {
            w.put(b"Sec-WebSocket-Version: 13\r\n");
        }
        put_headers(w, headers);
        w.put(b"\r\n");
        w.put(body.as_bytes());
    })
}

/// The reason phrase for the statuses a WebSocket server refuses with.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn put_headers(w: &mut Writer<'_>, headers: &[(&str, &str)]) {
    for (name, value) in headers {
        w.put(name.as_bytes());
        w.put(b": ");
        w.put(value.as_bytes());
        w.put(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const GOOD: &[u8] = b"GET /chat?roomId=a&roomId=b HTTP/1.1\r\nHost: server.example.com\r\n\
Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://example.com\r\nAuthorization: Bearer t0k\r\nCookie: sid=1\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Protocol: other\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn replace(from: &str, to: &str) -> std::string::String {
        std::string::String::from_utf8(GOOD.to_vec()).unwrap().replace(from, to)
    }

    #[test]
    fn test_parse_good_request() {
        let (req, n) = parse_request(GOOD, 8192).unwrap().unwrap();
        assert_eq!(n, GOOD.len());
        assert_eq!(req.path(), "/chat");
        assert_eq!(req.query(), Some("roomId=a&roomId=b"));
        assert_eq!(req.host(), Some("server.example.com"));
        assert_eq!(req.origin(), Some("http://example.com"));
        assert_eq!(req.authorization(), Some("Bearer t0k"));
        assert_eq!(req.cookie(), Some("sid=1"));
        assert_eq!(req.protocols().collect::<std::vec::Vec<_>>(), ["chat", "superchat", "other"]);
        assert_eq!(&req.accept_key(), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn test_every_prefix_is_incomplete() {
        for n in 0..GOOD.len() {
            assert!(matches!(parse_request(&GOOD[..n], 8192), Ok(None)), "prefix {n}");
        }
    }

    #[test]
    fn test_refusals() {
        let cases = [
            (replace("GET", "POST"), 400),
            (replace("HTTP/1.1", "HTTP/1.0"), 400),
            (replace("Host: server.example.com\r\n", ""), 400),
            (replace("Upgrade: websocket", "Upgrade: h2c"), 400),
            (replace("keep-alive, Upgrade", "keep-alive"), 400),
            (replace("Version: 13", "Version: 8"), 426),
            (replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ=="), 400),
            (replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""), 400),
        ];
        for (raw, status) in cases {
            let err = parse_request(raw.as_bytes(), 8192).unwrap_err();
            assert_eq!(err.status(), status, "{raw}");
        }
        assert_eq!(parse_request(GOOD, 64).unwrap_err(), HandshakeError::TooLarge);
        assert_eq!(parse_request(&GOOD[..100], 64).unwrap_err(), HandshakeError::TooLarge);
        let mut many = std::string::String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&std::format!("X-{i}: y\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(parse_request(many.as_bytes(), 8192).unwrap_err(), HandshakeError::TooLarge);
        assert!(parse_request(b"\x00\x01garbage\r\n\r\n", 8192).is_err());
    }

    #[test]
    fn test_accept_and_response_roundtrip() {
        let key = client_key([7; 16]);
        let mut out = [0u8; 512];
        let protocols = ["roomwire.v1.json", "roomwire.v1.postcard"];
        let req = ClientRequest {
            host: "localhost:1",
            target: "/x",
            protocols: &protocols,
            headers: &[("Authorization", "Bearer a")],
        };
        let n = write_request(&req, &key, &mut out).unwrap();
        let (parsed, _) = parse_request(&out[..n], 8192).unwrap().unwrap();
        assert_eq!(parsed.authorization(), Some("Bearer a"));
        assert_eq!(parsed.protocols().collect::<std::vec::Vec<_>>(), protocols);
        let accept = parsed.accept_key();
        let mut resp = [0u8; 512];
        let m = write_accept(&accept, Some("roomwire.v1.postcard"), &[], &mut resp).unwrap();
        let offered = "roomwire.v1.json,roomwire.v1.postcard";
        let (r, len) = parse_response(&resp[..m], 8192, &accept_key(&key), offered).unwrap().unwrap();
        assert_eq!(len, m);
        assert_eq!(r.protocol, Some("roomwire.v1.postcard"));
        // Wrong accept, unoffered protocol, refusal.
        assert!(parse_response(&resp[..m], 8192, &accept_key(b"x"), offered).is_err());
        assert!(parse_response(&resp[..m], 8192, &accept_key(&key), "other").is_err());
        let r = write_refusal(401, &[], "", &mut resp).unwrap();
        assert_eq!(parse_response(&resp[..r], 8192, &accept, offered), Err(HandshakeError::Rejected { status: 401 }));
    }

    #[test]
    fn test_write_with_buffer_size_checks() {
        let mut tiny = [0xEEu8; 10];
        let err = write_refusal(426, &[], "upgrade", &mut tiny).unwrap_err();
        assert_eq!(tiny, [0xEE; 10]);
        let mut exact = std::vec![0u8; err.required];
        let n = write_refusal(426, &[], "upgrade", &mut exact).unwrap();
        assert_eq!(n, err.required);
        assert!(std::str::from_utf8(&exact).unwrap().contains("Sec-WebSocket-Version: 13\r\n"));
    }
}
