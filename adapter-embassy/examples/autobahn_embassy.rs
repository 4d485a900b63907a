//! Autobahn|Testsuite client over embassy-net (scripts/autobahn-embassy.sh):
//! an embassy-net stack on a TAP device (192.0.2.2/24, in the script's
//! network namespace) runs every case of a `wstest -m fuzzingserver` at
//! `--server HOST:PORT`, echoing each text and binary message, with the
//! buffers a microcontroller would give a connection:
//!
//! * TCP: 4096 bytes each way; `read`: 1024; `write`: 4608 (one echoed
//!   message of up to 4096 bytes, framed);
//! * `message`: 4096 bytes, whole-message reassembly, so larger messages are
//!   refused with 1009 (the script leaves those cases out, each listed with
//!   that reason in the expected file).
//!
//! The loop is the one of `roomwire_embassy::Client` (read into `read`,
//! feed the core's `Connection`, reassemble into `message`, frame into
//! `write`, flush, wait for bytes or the connection's next deadline), with
//! raw messages instead of typed room messages: the room client decodes
//! every message as its channel's type, so it cannot echo the suite's
//! arbitrary payloads.
//!
//! ```text
//! ip netns exec NS target/debug/examples/autobahn_embassy --tap tap0 --server 192.0.2.1:9001 --agent roomwire-embassy
//! ```

use embassy_executor::{Executor, Spawner};
use embassy_futures::select::{Either, select};
use embassy_net::tcp::{State as TcpState, TcpSocket};
use embassy_net::{IpAddress, Ipv4Address, Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;
use embassy_time::{Duration, Timer, with_timeout};
use roomwire_core::handshake::ClientRequest;
use roomwire_core::{Config, Connection, Event, Instant, Message, MessageKind, Received, State};
use static_cell::StaticCell;

/// The connection's buffers (see the module docs).
const TCP_BUFFER: usize = 4096;
const READ_BUFFER: usize = 1024;
const WRITE_BUFFER: usize = 4608;
const MESSAGE_BUFFER: usize = 4096;

/// How long one case may take, end to end.
const CASE_TIMEOUT: Duration = Duration::from_secs(60);

struct Args {
    tap: String,
    server: (Ipv4Address, u16),
    agent: String,
}

fn args() -> Args {
    let mut args =
        Args { tap: "tap0".into(), server: (Ipv4Address::new(192, 0, 2, 1), 9001), agent: "roomwire-embassy".into() };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let value = it.next().unwrap_or_default();
        match arg.as_str() {
            "--tap" => args.tap = value,
            "--server" => {
                let (host, port) = value.rsplit_once(':').expect("--server HOST:PORT");
                args.server = (host.parse().expect("an IPv4 address"), port.parse().expect("a port"));
            }
            "--agent" => args.agent = value,
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

fn now() -> Instant {
    Instant::from_micros(embassy_time::Instant::now().as_micros())
}

fn to_embassy(at: Instant) -> embassy_time::Instant {
    embassy_time::Instant::from_micros(at.as_micros())
}

fn os_key() -> [u8; 4] {
    let mut key = [0u8; 4];
    getrandom::fill(&mut key).expect("OS RNG");
    key
}

/// Every buffer of one connection.
struct Buffers {
    rx: [u8; TCP_BUFFER],
    tx: [u8; TCP_BUFFER],
    read: [u8; READ_BUFFER],
    write: [u8; WRITE_BUFFER],
    message: [u8; MESSAGE_BUFFER],
}

/// How a connection ended.
#[derive(Debug)]
enum End {
    /// The closing handshake completed (or the server closed TCP after it).
    Closed,
    /// The server closed or reset TCP without a closing handshake.
    Reset,
    /// Something this loop cannot go on with.
    Error(String),
}

/// Runs one WebSocket connection to `target`: echoes every message when
/// `echo`; returns the first text message (for `/getCaseCount`) and how it
/// ended.
async fn connection(
    stack: Stack<'static>,
    server: (Ipv4Address, u16),
    target: &str,
    echo: bool,
    b: &mut Buffers,
) -> (Option<String>, End) {
    let mut socket = TcpSocket::new(stack, &mut b.rx, &mut b.tx);
    socket.set_timeout(Some(Duration::from_secs(10)));
    if let Err(e) = socket.connect((IpAddress::Ipv4(server.0), server.1)).await {
        return (None, End::Error(format!("TCP connect: {e:?}")));
    }
    socket.set_nagle_enabled(false);

    let config = Config { max_message_size: MESSAGE_BUFFER as u64, max_fragments: u32::MAX, ..Config::default() };
    let mut conn = Connection::client(config, now(), os_key as fn() -> [u8; 4]);
    let host = format!("{}:{}", server.0, server.1);
    let request = ClientRequest { host: &host, target, protocols: &[], headers: &[] };
    let mut written = match conn.write_request(&request, &mut b.write) {
        Ok(n) => n,
        Err(e) => return (None, End::Error(format!("request: {e:?}"))),
    };

    let (mut start, mut end) = (0usize, 0usize);
    let mut len = 0usize;
    let mut kind = MessageKind::Text;
    let mut first_text = None;
    let outcome = 'conn: loop {
        // Feed what was read. After every event, what the connection owes
        // (a pong, a close frame) goes out first, in order: one pong per
        // ping, and a pong before the echo of a message it interrupted.
        while start < end {
            let Received { consumed, event } = conn.handle_input(now(), &mut b.read[start..end]);
            start += consumed;
            let mut complete = false;
            match event {
                None if consumed == 0 => break,
                None => continue,
                Some(Event::Data { kind: k, payload, message_start, message_end }) => {
                    if message_start {
                        len = 0;
                        kind = k;
                    }
                    // The core refuses (1009) any message longer than the buffer.
                    let Some(dst) = b.message.get_mut(len..len + payload.len()) else {
                        break 'conn End::Error("message buffer overflow".into());
                    };
                    dst.copy_from_slice(payload);
                    len += payload.len();
                    complete = message_end;
                }
                Some(_) => {}
            }
            if let Err(e) = owed(&mut conn, &mut socket, &mut b.write, &mut written).await {
                break 'conn e;
            }
            if complete {
                let message = match kind {
                    MessageKind::Text => match std::str::from_utf8(&b.message[..len]) {
                        Ok(text) => Message::Text(text),
                        Err(_) => break 'conn End::Error("the core passed invalid UTF-8".into()),
                    },
                    MessageKind::Binary => Message::Binary(&b.message[..len]),
                };
                if first_text.is_none()
                    && let Message::Text(text) = message
                {
                    first_text = Some(text.to_owned());
                }
                if echo && conn.can_send() {
                    loop {
                        match conn.send(message, &mut b.write[written..]) {
                            Ok(n) => {
                                written += n;
                                break;
                            }
                            Err(_) if written > 0 => {
                                if let Err(e) = write_all(&mut socket, &b.write[..written]).await {
                                    break 'conn e;
                                }
                                written = 0;
                            }
                            // Closing, or larger than the write buffer.
                            Err(_) => break,
                        }
                    }
                }
            }
        }
        // Owed without input: a keepalive or a close after a timeout.
        if let Err(e) = owed(&mut conn, &mut socket, &mut b.write, &mut written).await {
            break 'conn e;
        }
        if written > 0 {
            if let Err(e) = write_all(&mut socket, &b.write[..written]).await {
                break 'conn e;
            }
            written = 0;
        }
        if conn.state() == State::Closed {
            break End::Closed;
        }
        // Wait for bytes or the next deadline.
        if start > 0 {
            b.read.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        if end == b.read.len() {
            break End::Error("read buffer full (handshake response too large)".into());
        }
        let deadline = conn.poll_timeout().map_or(embassy_time::Instant::MAX, to_embassy);
        match select(socket.read(&mut b.read[end..]), Timer::at(deadline)).await {
            Either::First(Ok(0)) | Either::First(Err(_)) => {
                break if conn.close_received() { End::Closed } else { End::Reset };
            }
            Either::First(Ok(n)) => end += n,
            Either::Second(()) => {
                if let Some(timeout) = conn.handle_timeout(now()) {
                    println!("  timeout: {timeout:?}");
                }
            }
        }
    };
    // As the room client does: a clean close lets TCP finish, else reset.
    if matches!(outcome, End::Closed) {
        socket.close();
        let _ = with_timeout(Duration::from_secs(2), async {
            while !matches!(socket.state(), TcpState::Closed | TcpState::TimeWait) {
                Timer::after_millis(5).await;
            }
        })
        .await;
    }
    if socket.state() != TcpState::Closed {
        socket.abort();
        let _ = with_timeout(Duration::from_millis(500), socket.flush()).await;
    }
    (first_text, outcome)
}

/// Frames what the connection owes into `write` (after `written` bytes),
/// writing the buffer out when it is full.
async fn owed(
    conn: &mut Connection<fn() -> [u8; 4]>,
    socket: &mut TcpSocket<'_>,
    write: &mut [u8],
    written: &mut usize,
) -> Result<(), End> {
    loop {
        match conn.poll_transmit(&mut write[*written..]) {
            Ok(0) => return Ok(()),
            Ok(n) => *written += n,
            Err(_) if *written > 0 => {
                write_all(socket, &write[..*written]).await?;
                *written = 0;
            }
            Err(e) => return Err(End::Error(format!("write buffer: {e:?}"))),
        }
    }
}

async fn write_all(socket: &mut TcpSocket<'_>, mut bytes: &[u8]) -> Result<(), End> {
    while !bytes.is_empty() {
        match with_timeout(Duration::from_secs(10), socket.write(bytes)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(End::Reset),
            Ok(Ok(n)) => bytes = &bytes[n..],
            Err(_) => return Err(End::Error("write timed out".into())),
        }
    }
    Ok(())
}

#[embassy_executor::task]
async fn net(mut runner: embassy_net::Runner<'static, TunTapDevice>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn run(stack: Stack<'static>, server: (Ipv4Address, u16), agent: String) {
    static BUFFERS: StaticCell<Buffers> = StaticCell::new();
    let b = BUFFERS.init(Buffers {
        rx: [0; TCP_BUFFER],
        tx: [0; TCP_BUFFER],
        read: [0; READ_BUFFER],
        write: [0; WRITE_BUFFER],
        message: [0; MESSAGE_BUFFER],
    });
    stack.wait_config_up().await;

    let (text, end) = connection(stack, server, "/getCaseCount", false, b).await;
    let Some(count) = text.and_then(|t| t.trim().parse::<u32>().ok()) else {
        println!("getCaseCount failed: {end:?}");
        std::process::exit(1);
    };
    println!("{count} cases");
    let mut ended = [0u32; 3];
    for case in 1..=count {
        let target = format!("/runCase?case={case}&agent={agent}");
        let end = match with_timeout(CASE_TIMEOUT, connection(stack, server, &target, true, b)).await {
            Ok((_, end)) => end,
            Err(_) => End::Error("case timed out".into()),
        };
        match end {
            End::Closed => ended[0] += 1,
            End::Reset => ended[1] += 1,
            End::Error(e) => {
                ended[2] += 1;
                println!("case {case}: {e}");
            }
        }
        if case % 50 == 0 || case == count {
            println!(
                "{case}/{count} cases run ({} closed cleanly, {} reset by the server, {} errors)",
                ended[0], ended[1], ended[2]
            );
        }
    }
    let (_, end) = connection(stack, server, &format!("/updateReports?agent={agent}"), false, b).await;
    println!("reports updated ({end:?})");
    std::process::exit(0);
}

fn main() {
    let args = args();
    static EXECUTOR: StaticCell<Executor> = StaticCell::new();
    let executor = EXECUTOR.init(Executor::new());
    executor.run(move |spawner: Spawner| {
        let device = TunTapDevice::new(&args.tap).expect("open the TAP device (root, in the test's namespace)");
        let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
            address: Ipv4Cidr::new(Ipv4Address::new(192, 0, 2, 2), 24),
            gateway: None,
            dns_servers: Default::default(),
        });
        static RESOURCES: StaticCell<StackResources<4>> = StaticCell::new();
        let seed = u64::from_le_bytes(std::array::from_fn(|i| os_key()[i % 4]));
        let (stack, runner) = embassy_net::new(device, config, RESOURCES.init(StackResources::new()), seed);
        spawner.spawn(net(runner).unwrap());
        spawner.spawn(run(stack, args.server, args.agent).unwrap());
    });
}
