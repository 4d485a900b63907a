//! The bytes under a client connection: an embassy-net [`TcpSocket`] with
//! the firmware's read and write buffers. Opening, writing out, reading
//! with a deadline and releasing the socket; no protocol. The raw
//! [`WebSocket`](crate::ws::WebSocket) and the room
//! [`Client`](crate::client::Client) both move their bytes through it.

use embassy_futures::select::{Either, select};
use embassy_net::tcp::{State as TcpState, TcpSocket};
use embassy_net::{IpAddress, Ipv4Address, Stack};
use embassy_time::{Timer, with_deadline, with_timeout};

use crate::ws::Error;

/// How long a finished connection may take to close its TCP side cleanly
/// before it is reset.
const LINGER: embassy_time::Duration = embassy_time::Duration::from_millis(500);

/// Bytes `start..end` of a buffer are in use.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: usize,
    end: usize,
}

/// What [`Transport::read`] waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woke {
    /// Bytes arrived ([`Transport::input`]).
    Input,
    /// The deadline passed.
    Deadline,
}

/// A TCP socket and its buffers.
pub(crate) struct Transport<'a> {
    stack: Stack<'a>,
    socket: TcpSocket<'a>,
    read: &'a mut [u8],
    write: &'a mut [u8],
    input: Span,
    output: Span,
    /// How long written data may stay unacknowledged.
    write_timeout: embassy_time::Duration,
    /// When the release under way gives up waiting for a clean close (see
    /// [`Transport::release`]); kept across calls so that a release whose
    /// future is dropped goes on where it stopped.
    release_by: Option<embassy_time::Instant>,
}

impl<'a> Transport<'a> {
    pub(crate) fn new(
        stack: Stack<'a>,
        socket: TcpSocket<'a>,
        read: &'a mut [u8],
        write: &'a mut [u8],
        write_timeout: embassy_time::Duration,
    ) -> Self {
        Self {
            stack,
            socket,
            read,
            write,
            input: Span::default(),
            output: Span::default(),
            write_timeout,
            release_by: None,
        }
    }

    pub(crate) fn socket(&self) -> &TcpSocket<'a> {
        &self.socket
    }

    pub(crate) fn set_write_timeout(&mut self, timeout: embassy_time::Duration) {
        self.write_timeout = timeout;
    }

    /// Resolves `host` and connects to it, giving up at `deadline`
    /// ([`Error::ConnectTimeout`]). Whatever happened before is forgotten.
    pub(crate) async fn open(&mut self, host: &str, port: u16, deadline: embassy_time::Instant) -> Result<(), Error> {
        self.release(false).await;
        self.clear();
        let address = self.resolve(host).await?;
        self.socket.set_timeout(Some(self.write_timeout));
        let result = match select(self.socket.connect((address, port)), Timer::at(deadline)).await {
            Either::First(Ok(())) => Ok(()),
            Either::First(Err(e)) => Err(Error::Connect(e)),
            Either::Second(()) => Err(Error::ConnectTimeout),
        };
        match result {
            Ok(()) => self.socket.set_nagle_enabled(false),
            // The reset goes out with the stack's next poll.
            Err(_) => self.socket.abort(),
        }
        result
    }

    async fn resolve(&self, host: &str) -> Result<IpAddress, Error> {
        if let Some(ip) = parse_ipv4(host) {
            return Ok(IpAddress::Ipv4(ip));
        }
        #[cfg(feature = "dns")]
        {
            let found =
                self.stack.dns_query(host, embassy_net::dns::DnsQueryType::A).await.map_err(|_| Error::Resolve)?;
            found.first().copied().ok_or(Error::Resolve)
        }
        #[cfg(not(feature = "dns"))]
        {
            let _ = self.stack;
            Err(Error::Resolve)
        }
    }

    /// The free end of the write buffer; [`Transport::wrote`] commits what
    /// was put there.
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        self.write.get_mut(self.output.end..).unwrap_or(&mut [])
    }

    pub(crate) fn wrote(&mut self, n: usize) {
        self.output.end = (self.output.end + n).min(self.write.len());
    }

    /// Whether bytes wait to be written.
    pub(crate) fn has_output(&self) -> bool {
        self.output.start < self.output.end
    }

    /// Writes the write buffer out. Cancel safe: progress is recorded
    /// after every write.
    pub(crate) async fn write_out(&mut self) -> Result<(), Error> {
        while self.output.start < self.output.end {
            let pending = self.write.get(self.output.start..self.output.end).unwrap_or(&[]);
            match with_timeout(self.write_timeout, self.socket.write(pending)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Err(Error::Reset),
                Ok(Ok(n)) => self.output.start += n,
                Err(_) => return Err(Error::WriteTimeout),
            }
        }
        self.output = Span::default();
        Ok(())
    }

    /// The bytes read and not consumed yet.
    pub(crate) fn input(&mut self) -> &mut [u8] {
        self.read.get_mut(self.input.start..self.input.end).unwrap_or(&mut [])
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.input.start = (self.input.start + n).min(self.input.end);
    }

    /// Waits for bytes (appended to [`Transport::input`]) or `deadline`.
    /// The server's end of TCP, or a failure, is [`Error::Reset`]; an input
    /// that fills the read buffer is [`Error::BufferTooSmall`] (only a
    /// handshake response can: frames stream through).
    pub(crate) async fn read(&mut self, deadline: embassy_time::Instant) -> Result<Woke, Error> {
        if self.input.start > 0 {
            self.read.copy_within(self.input.start..self.input.end, 0);
            self.input = Span { start: 0, end: self.input.end - self.input.start };
        }
        if self.input.end >= self.read.len() {
            return Err(Error::BufferTooSmall(self.read.len() + 1));
        }
        let free = self.read.get_mut(self.input.end..).unwrap_or(&mut []);
        match select(self.socket.read(free), Timer::at(deadline)).await {
            Either::First(Ok(0)) | Either::First(Err(_)) => Err(Error::Reset),
            Either::First(Ok(n)) => {
                self.input.end += n;
                Ok(Woke::Input)
            }
            Either::Second(()) => Ok(Woke::Deadline),
        }
    }

    /// Forgets buffered bytes (a new connection starts).
    pub(crate) fn clear(&mut self) {
        self.input = Span::default();
        self.output = Span::default();
    }

    /// Brings the socket back to `Closed`: cleanly (FIN, then a reset if
    /// the server has not finished within [`LINGER`]) or with a reset.
    ///
    /// Its deadlines are set by the first call and kept until it ends: the
    /// callers' futures are cancel safe (an application selects on
    /// `next_event` and a ticker), and a release that started over on each
    /// call would never end under a caller that cancels more often than
    /// [`LINGER`]: the socket would stay half closed and the client would
    /// not reconnect.
    pub(crate) async fn release(&mut self, clean: bool) {
        if self.socket.state() == TcpState::Closed {
            self.release_by = None;
            return;
        }
        let linger_until = *self.release_by.get_or_insert_with(|| embassy_time::Instant::now() + LINGER);
        if clean {
            self.socket.close();
            let _ = with_deadline(linger_until, async {
                while !matches!(self.socket.state(), TcpState::Closed | TcpState::TimeWait) {
                    Timer::after_millis(10).await;
                }
            })
            .await;
        }
        if self.socket.state() != TcpState::Closed {
            self.socket.abort();
            let flush_until = if clean { linger_until + LINGER } else { linger_until };
            let _ = with_deadline(flush_until, self.socket.flush()).await;
        }
        self.release_by = None;
    }
}

/// A dotted-quad IPv4 address (`192.0.2.1`: four decimal octets, no
/// leading zeros, as `Ipv4Addr`'s `FromStr` reads them), in a few dozen
/// bytes of code where the standard parser takes over half a KiB. Split as
/// bytes: a `str` splitter made a room client's image about 200 bytes
/// larger.
fn parse_ipv4(host: &str) -> Option<Ipv4Address> {
    let mut octets = [0u8; 4];
    let mut parts = host.as_bytes().split(|&b| b == b'.');
    for octet in &mut octets {
        let part = parts.next()?;
        let leading_zero = part.len() > 1 && part.first() == Some(&b'0');
        if part.is_empty() || part.len() > 3 || leading_zero {
            return None;
        }
        let mut value: u16 = 0;
        for &digit in part {
            if !digit.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u16::from(digit - b'0');
        }
        *octet = u8::try_from(value).ok()?;
    }
    parts.next().is_none().then_some(Ipv4Address::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_quads_read_as_the_standard_parser_reads_them() {
        for host in [
            "192.0.2.1",
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.10",
            "256.0.0.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.2.3.04",
            "1..3.4",
            "",
            "1.2.3.",
            ".1.2.3",
            "+1.2.3.4",
            "1.2.3.4 ",
            "a.b.c.d",
            "1.2.3.1000",
            "example.com",
            "::1",
            "1.2.3.-4",
            "001.2.3.4",
            "0.0.0.00",
        ] {
            assert_eq!(parse_ipv4(host), host.parse::<Ipv4Address>().ok(), "{host:?}");
        }
    }
}
