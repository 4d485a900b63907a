//! Adapter configuration.

/// Default bound on bytes queued for sending, see [`Config::max_outbound`].
pub const DEFAULT_MAX_OUTBOUND: usize = 4 * 1024 * 1024;

/// Default largest read, see [`Config::max_read_chunk`].
pub const DEFAULT_MAX_READ_CHUNK: usize = 64 * 1024;

/// Configuration of one [`WebSocket`](crate::WebSocket): the core's protocol
/// limits and deadlines plus the adapter's buffer bounds.
///
/// ```
/// use roomwire_tokio::Config;
/// use roomwire_tokio::roomwire_core::Duration;
///
/// let mut config = Config::default();
/// config.core.max_message_size = 16 << 20;
/// config.core.keepalive_interval = Some(Duration::from_secs(30));
/// config.max_outbound = 1 << 20;
/// assert_eq!(Config::default().max_outbound, 4 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Protocol limits and deadlines, enforced by the core:
    /// `max_message_size` (also the limit of the reassembly buffer),
    /// `max_fragments`, `max_handshake_size`, `handshake_timeout`,
    /// `close_timeout` and `keepalive_interval`.
    pub core: roomwire_core::Config,
    /// Bound on bytes queued for sending and not yet written to the stream
    /// (default 4 MiB). [`WebSocket::feed`](crate::WebSocket::feed) refuses a
    /// message with [`Error::QueueFull`](crate::Error::QueueFull) when the
    /// queue is not empty and the encoded message would take it over this
    /// bound; a message is always accepted into an empty queue, however
    /// large, within the process's bound
    /// ([`set_outbound_limit`](crate::set_outbound_limit), else
    /// [`Error::OutboundLimit`](crate::Error::OutboundLimit)). Control frames (pongs, close) are never refused; but while
    /// the queue is at or over this bound the connection reads nothing more
    /// and queues no pong, so a peer that does not read is slowed by TCP
    /// and dropped by keepalive rather than buffered for.
    pub max_outbound: usize,
    /// Largest single read from the stream (default 64 KiB). The read buffer
    /// starts at 4 KiB and doubles up to this size while reads fill it.
    /// At most 4 GiB (a larger value reads as 4 GiB).
    pub max_read_chunk: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            core: roomwire_core::Config::default(),
            max_outbound: DEFAULT_MAX_OUTBOUND,
            max_read_chunk: DEFAULT_MAX_READ_CHUNK,
        }
    }
}

impl From<roomwire_core::Config> for Config {
    fn from(core: roomwire_core::Config) -> Self {
        Self { core, ..Self::default() }
    }
}
