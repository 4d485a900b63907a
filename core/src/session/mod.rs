//! Sessions: the layer between a WebSocket [`Connection`](crate::Connection)
//! and the rooms, with every decision made here and nothing done.
//!
//! - [`ClientSession`]: a reconnecting room client (the tokio and the
//!   embassy clients are loops over it).
//! - [`ServerSession`]: one connection of a room server, from its Upgrade
//!   request to its end: the admission steps in their one order, the
//!   connection's rooms, its messages, its error frames and the closes the
//!   server chooses (the tokio server, its axum mount and the embassy
//!   server drive it).

pub mod client;
pub mod server;

use crate::connection::Config;
use crate::time::Duration;

/// How often a room session pings its peer, on both sides: long enough to
/// cost nothing on an idle link, short enough that a peer gone without a
/// close (a phone out of coverage, a reset MCU) is noticed, and its slot
/// and per-user count freed, within two intervals (a ping left unanswered
/// until the next one ends the connection).
pub const KEEPALIVE: Duration = Duration::from_secs(30);

/// The core's [`Config`] defaults with the room sessions' [`KEEPALIVE`]:
/// what every room client and room server starts from.
///
/// ```
/// use roomwire_core::session::{self, KEEPALIVE};
/// assert_eq!(session::connection_config().keepalive_interval, Some(KEEPALIVE));
/// ```
pub const fn connection_config() -> Config {
    let mut config = Config::DEFAULT;
    config.keepalive_interval = Some(KEEPALIVE);
    config
}

/// How long a room server lets a client take over one message.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest handshake header section a room server accepts by default:
/// 16 KiB, as Node's HTTP server (and so Alepha) does, so that a browser
/// with a large cookie jar that Alepha admits is admitted here too.
pub const SERVER_MAX_HANDSHAKE_SIZE: usize = 16 * 1024;

/// [`connection_config`] for a room server: also [`MESSAGE_TIMEOUT`], so
/// that a client that begins a message and never ends it does not hold
/// its reassembly buffer for the connection's life, and header sections
/// up to [`SERVER_MAX_HANDSHAKE_SIZE`].
///
/// ```
/// use roomwire_core::session::{self, MESSAGE_TIMEOUT};
/// assert_eq!(session::server_connection_config().message_timeout, Some(MESSAGE_TIMEOUT));
/// assert_eq!(session::server_connection_config().max_handshake_size, 16 * 1024);
/// assert_eq!(session::connection_config().message_timeout, None);
/// ```
pub const fn server_connection_config() -> Config {
    let mut config = connection_config();
    config.message_timeout = Some(MESSAGE_TIMEOUT);
    config.max_handshake_size = SERVER_MAX_HANDSHAKE_SIZE;
    config
}

pub use client::*;
pub use server::*;
