//! WebSocket URLs (`ws://` and `wss://`, RFC 6455 section 3): the one
//! parser every client uses.
//!
//! A room client's URL names the server and, optionally, a path prefix
//! (the channel's path follows it) and a query of the application's (an
//! auth token, say), which every handshake carries before the rooms:
//!
//! ```
//! use roomwire_core::url::WsUrl;
//!
//! let url = WsUrl::parse("wss://example.com/api?token=abc")?;
//! assert!(url.secure);
//! assert_eq!((url.host, url.port, url.authority), ("example.com", 443, "example.com"));
//! assert_eq!((url.path, url.prefix(), url.query), ("/api", "/api", Some("token=abc")));
//!
//! let url = WsUrl::parse("ws://[::1]:9000")?;
//! assert_eq!((url.host, url.port, url.path, url.query), ("::1", 9000, "", None));
//! # Ok::<(), roomwire_core::url::UrlError>(())
//! ```

use core::fmt;

/// A parsed `ws://` or `wss://` URL, borrowing from the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WsUrl<'a> {
    /// `wss://`: TLS.
    pub secure: bool,
    /// `host[:port]` as written: the `Host` header.
    pub authority: &'a str,
    /// The host to connect to, without IPv6 brackets.
    pub host: &'a str,
    /// The port: as written, else 80 (`ws`) or 443 (`wss`).
    pub port: u16,
    /// The path as written, from its `/` (empty when the URL has none).
    /// A room client puts the channel's path after its
    /// [`prefix`](Self::prefix).
    pub path: &'a str,
    /// The query after `?`, without it; `None` when absent or empty.
    pub query: Option<&'a str>,
}

/// Why a URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UrlError {
    /// No `scheme://`.
    MissingScheme,
    /// A scheme other than `ws` and `wss` (case-insensitive).
    UnsupportedScheme,
    /// No host.
    MissingHost,
    /// `user@host`: credentials belong in a header.
    UserInfo,
    /// A `[` without its `]`.
    UnclosedBracket,
    /// The port is not a number from 0 to 65535.
    BadPort,
    /// A `#fragment` (RFC 6455 forbids them in WebSocket URIs).
    Fragment,
    /// A space or control character.
    InvalidCharacter,
}

impl UrlError {
    /// What is wrong, for people.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MissingScheme => "missing scheme (ws:// or wss://)",
            Self::UnsupportedScheme => "scheme must be ws or wss",
            Self::MissingHost => "missing host",
            Self::UserInfo => "user information is not supported (send credentials in a header)",
            Self::UnclosedBracket => "unclosed IPv6 bracket",
            Self::BadPort => "bad port",
            Self::Fragment => "WebSocket URLs have no fragment",
            Self::InvalidCharacter => "space or control character in the URL",
        }
    }
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::error::Error for UrlError {}

impl<'a> WsUrl<'a> {
    /// Parses `ws[s]://host[:port][/prefix][?query]`.
    ///
    /// ```
    /// use roomwire_core::url::{UrlError, WsUrl};
    /// assert_eq!(WsUrl::parse("http://h").unwrap_err(), UrlError::UnsupportedScheme);
    /// assert_eq!(WsUrl::parse("ws://h/#x").unwrap_err(), UrlError::Fragment);
    /// assert_eq!(WsUrl::parse("WS://h/").unwrap().prefix(), "");
    /// ```
    pub fn parse(url: &'a str) -> Result<Self, UrlError> {
        if url.bytes().any(|b| b <= b' ' || b == 0x7F) {
            return Err(UrlError::InvalidCharacter);
        }
        if url.contains('#') {
            return Err(UrlError::Fragment);
        }
        let (scheme, rest) = url.split_once("://").ok_or(UrlError::MissingScheme)?;
        let secure = if scheme.eq_ignore_ascii_case("wss") {
            true
        } else if scheme.eq_ignore_ascii_case("ws") {
            false
        } else {
            return Err(UrlError::UnsupportedScheme);
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query).filter(|q| !q.is_empty())),
            None => (rest, None),
        };
        let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() {
            return Err(UrlError::MissingHost);
        }
        if authority.contains('@') {
            return Err(UrlError::UserInfo);
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']').ok_or(UrlError::UnclosedBracket)?;
                match after {
                    "" => (host, None),
                    _ => (host, Some(after.strip_prefix(':').ok_or(UrlError::BadPort)?)),
                }
            }
            None => match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return Err(UrlError::MissingHost);
        }
        let port = match port {
            None if secure => 443,
            None => 80,
            Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                port.parse().map_err(|_| UrlError::BadPort)?
            }
            Some(_) => return Err(UrlError::BadPort),
        };
        Ok(Self { secure, authority, host, port, path: prefix, query })
    }

    /// The path without its trailing `/`s: what a room client writes
    /// before the channel's path.
    pub fn prefix(&self) -> &'a str {
        self.path.trim_end_matches('/')
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_every_form() {
        let u = WsUrl::parse("ws://127.0.0.1:8080").unwrap();
        assert_eq!(
            (u.secure, u.authority, u.host, u.port, u.path, u.query),
            (false, "127.0.0.1:8080", "127.0.0.1", 8080, "", None)
        );
        let u = WsUrl::parse("WSS://Example.com/api/v1/?a=1&b=2").unwrap();
        assert_eq!(
            (u.secure, u.host, u.port, u.path, u.prefix(), u.query),
            (true, "Example.com", 443, "/api/v1/", "/api/v1", Some("a=1&b=2"))
        );
        let u = WsUrl::parse("ws://[::1]:9000/").unwrap();
        assert_eq!((u.authority, u.host, u.port), ("[::1]:9000", "::1", 9000));
        let u = WsUrl::parse("ws://h?").unwrap();
        assert_eq!((u.path, u.query), ("", None));
        let u = WsUrl::parse("ws://h?token=x/y").unwrap();
        assert_eq!((u.authority, u.path, u.query), ("h", "", Some("token=x/y")));
    }

    #[test]
    fn refuses_what_is_not_a_websocket_url() {
        for (bad, why) in [
            ("h:80", UrlError::MissingScheme),
            ("http://h/", UrlError::UnsupportedScheme),
            ("ws://", UrlError::MissingHost),
            ("ws://:80", UrlError::MissingHost),
            ("ws:///x", UrlError::MissingHost),
            ("ws://h:99999", UrlError::BadPort),
            ("ws://h:+80", UrlError::BadPort),
            ("ws://h:", UrlError::BadPort),
            ("ws://[::1", UrlError::UnclosedBracket),
            ("ws://[::1]x", UrlError::BadPort),
            ("ws://u@h", UrlError::UserInfo),
            ("ws://h/#f", UrlError::Fragment),
            ("ws://h /", UrlError::InvalidCharacter),
            ("ws://h/\n", UrlError::InvalidCharacter),
        ] {
            assert_eq!(WsUrl::parse(bad), Err(why), "{bad:?}");
        }
    }
}
