//! How a [`Client`](super::Client) connects, queues and reconnects.

use std::time::Duration;

use roomwire_core::WireFormat;

use super::{
    DEFAULT_INCOMING_BYTES, DEFAULT_INCOMING_CAPACITY, DEFAULT_QUEUE_CAPACITY, DEFAULT_REQUEST_TIMEOUT, ReconnectPolicy,
};
use crate::config::Config;

/// How a [`Client`](super::Client) connects: rooms, wire, headers, reconnection, queue
/// bounds and the connection's configuration. Built with chained calls:
///
/// ```
/// use std::time::Duration;
/// use roomwire_tokio::client::{ClientOptions, ReconnectPolicy};
/// use roomwire_tokio::roomwire_core::WireFormat;
///
/// let options = ClientOptions::new()
///     .rooms(["lobby", "news"])
///     .wire(WireFormat::Postcard)
///     .header("Authorization", "Bearer alice")
///     .reconnect(ReconnectPolicy { initial: Duration::from_millis(100).into(), ..ReconnectPolicy::default() })
///     .queue_capacity(100);
/// assert_eq!(options.wanted_rooms(), ["lobby", "news"]);
/// ```
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub(super) rooms: Vec<String>,
    pub(super) wire: WireFormat,
    pub(super) headers: Vec<(String, String)>,
    pub(super) reconnect: ReconnectPolicy,
    #[cfg(feature = "tls")]
    pub(super) tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    pub(super) queue_capacity: usize,
    pub(super) incoming_capacity: usize,
    pub(super) incoming_bytes: usize,
    pub(super) request_timeout: Duration,
    pub(super) config: Config,
}

impl Default for ClientOptions {
    fn default() -> Self {
        let config = Config { core: roomwire_core::session::connection_config(), ..Config::default() };
        Self {
            rooms: Vec::new(),
            wire: WireFormat::Json,
            headers: Vec::new(),
            reconnect: ReconnectPolicy::default(),
            #[cfg(feature = "tls")]
            tls: None,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            incoming_capacity: DEFAULT_INCOMING_CAPACITY,
            incoming_bytes: DEFAULT_INCOMING_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            config,
        }
    }
}

impl ClientOptions {
    /// The defaults: no room, the roomwire JSON wire, no extra header,
    /// [`ReconnectPolicy::default`], a queue of 1000, a keepalive ping every 30 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a room to be in from the start (in order; the first is the
    /// connection's default room on the Alepha wire). With no room, an
    /// Alepha server puts the connection in its room `"default"`.
    pub fn room(mut self, room: impl Into<String>) -> Self {
        self.rooms.push(room.into());
        self
    }

    /// Add several rooms, as [`room`](Self::room).
    pub fn rooms<I>(mut self, rooms: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.rooms.extend(rooms.into_iter().map(Into::into));
        self
    }

    /// The wire to ask for (default [`WireFormat::Json`]); see the
    /// [module docs](super#wires).
    pub fn wire(mut self, wire: WireFormat) -> Self {
        self.wire = wire;
        self
    }

    /// Add a header to every handshake request (`Authorization`, `Cookie`,
    /// `Origin` …).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// When to reconnect (default [`ReconnectPolicy::default`]: unlimited,
    /// from 500 ms to 30 s with full jitter).
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// The TLS configuration for `wss://` URLs (default: rustls with the
    /// Mozilla root certificates of `webpki-roots`). Give one to trust
    /// your own certificate authority, or to present a client certificate.
    #[cfg(feature = "tls")]
    pub fn tls_config(mut self, config: std::sync::Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Bound of the send queue (default 1000, at least 1): when full, the
    /// oldest message is dropped and counted in [`Client::dropped`](super::Client::dropped).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// How many received messages may wait for the application (default
    /// 1024, at least 1) before the client stops reading the socket.
    pub fn incoming_capacity(mut self, capacity: usize) -> Self {
        self.incoming_capacity = capacity.max(1);
        self
    }

    /// How many bytes the received messages waiting for the application
    /// may have arrived as, every stream together (default 16 MiB, at
    /// least 1), before the client stops reading the socket, whatever the
    /// size of the server's messages. Each message counts its size as
    /// received (after inflating), once per stream it waits in; what its
    /// decoded value takes in memory may differ (larger for many small
    /// fields). A message is taken whenever the streams hold less than
    /// this, so the streams may go past it by one message per stream, and
    /// one message larger than the bound still goes through.
    pub fn incoming_bytes(mut self, bytes: usize) -> Self {
        self.incoming_bytes = bytes.max(1);
        self
    }

    /// How long the server has to answer a join or leave on the roomwire
    /// wire (default 10 s) before the connection is deemed dead and
    /// replaced.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The connection's configuration: protocol limits, deadlines and
    /// buffer bounds. The default is [`Config::default`] with a keepalive
    /// ping every 30 s (`core.keepalive_interval`); its
    /// `core.handshake_timeout` also bounds the TCP connect.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The rooms given so far.
    pub fn wanted_rooms(&self) -> &[String] {
        &self.rooms
    }
}
