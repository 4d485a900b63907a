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
//! Each connection is a `roomwire_embassy::ws::WebSocket`, the raw layer
//! the room client (`roomwire_embassy::Client`) runs on: the same loop
//! (read into `read`, feed the core's `Connection`, reassemble into
//! `message`, frame into `write`, flush, wait for bytes or the connection's
//! next deadline, one pong per ping), with raw messages instead of typed
//! room messages. This example only echoes: each message is copied out of
//! `message` (borrowed until the next `recv`) and sent back.
//!
//! ```text
//! ip netns exec NS target/debug/examples/autobahn_embassy --tap tap0 --server 192.0.2.1:9001 --agent roomwire-embassy
//! ```

use core::cell::RefCell;

use embassy_executor::{Executor, Spawner};
use embassy_net::tcp::TcpSocket;
use embassy_net::{Ipv4Address, Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;
use embassy_time::{Duration, with_timeout};
use roomwire_core::{Config, Message};
use roomwire_embassy::ws::{self, Error, Event, Options, WebSocket};
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

fn os_key() -> [u8; 4] {
    let mut key = [0u8; 4];
    getrandom::fill(&mut key).expect("OS RNG");
    key
}

type Keys = RefCell<fn() -> [u8; 4]>;

/// Every buffer of the connection, and the echo's copy of a message.
struct Buffers {
    rx: [u8; TCP_BUFFER],
    tx: [u8; TCP_BUFFER],
    read: [u8; READ_BUFFER],
    write: [u8; WRITE_BUFFER],
    message: [u8; MESSAGE_BUFFER],
    echo: [u8; MESSAGE_BUFFER],
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

impl From<Error> for End {
    fn from(e: Error) -> Self {
        match e {
            Error::Reset => End::Reset,
            Error::Timeout(timeout) => {
                println!("  timeout: {timeout:?}");
                End::Closed
            }
            // The suite's protocol violations: the core closed with the code.
            Error::Protocol(_) => End::Closed,
            e => End::Error(e.to_string()),
        }
    }
}

/// Runs one WebSocket connection to `target`: echoes every message when
/// `echo` is given; returns the first text message (for `/getCaseCount`)
/// and how it ended.
async fn connection(
    ws: &mut WebSocket<'static, Keys>,
    server: (Ipv4Address, u16),
    target: &str,
    mut echo: Option<&mut [u8]>,
) -> (Option<String>, End) {
    let host = server.0.to_string();
    if let Err(e) = ws.connect(&host, server.1, target, &[], &[]).await {
        return (None, End::Error(format!("connect: {e}")));
    }
    let mut first_text = None;
    loop {
        let message = match ws.recv().await {
            Ok(Event::Message(message)) => message,
            Ok(Event::Closed(_)) => return (first_text, End::Closed),
            Ok(_) => continue,
            Err(e) => return (first_text, e.into()),
        };
        if first_text.is_none()
            && let Message::Text(text) = message
        {
            first_text = Some(text.to_owned());
        }
        let Some(copy) = echo.as_deref_mut() else { continue };
        // The message is borrowed from the socket's buffer until the next
        // call: copy it out to send it back.
        let len = message.payload().len();
        copy[..len].copy_from_slice(message.payload());
        let reply = match message {
            Message::Text(_) => Message::Text(std::str::from_utf8(&copy[..len]).expect("copied text")),
            Message::Binary(_) => Message::Binary(&copy[..len]),
        };
        // Not sent while closing (the connection refuses it); a failed
        // write ends the connection, reported by the next `recv`.
        let _ = ws.send(reply).await;
    }
}

#[embassy_executor::task]
async fn net(mut runner: embassy_net::Runner<'static, TunTapDevice>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn run(stack: Stack<'static>, server: (Ipv4Address, u16), agent: String) {
    static BUFFERS: StaticCell<Buffers> = StaticCell::new();
    static KEYS: StaticCell<Keys> = StaticCell::new();
    let b = BUFFERS.init(Buffers {
        rx: [0; TCP_BUFFER],
        tx: [0; TCP_BUFFER],
        read: [0; READ_BUFFER],
        write: [0; WRITE_BUFFER],
        message: [0; MESSAGE_BUFFER],
        echo: [0; MESSAGE_BUFFER],
    });
    let keys = KEYS.init(RefCell::new(os_key as fn() -> [u8; 4]));
    let options = Options {
        websocket: Config { max_message_size: MESSAGE_BUFFER as u64, max_fragments: u32::MAX, ..Config::default() },
        ..Options::default()
    };
    let socket = TcpSocket::new(stack, &mut b.rx, &mut b.tx);
    let buffers = ws::Buffers { read: &mut b.read, write: &mut b.write, message: &mut b.message };
    let mut ws = WebSocket::new(stack, socket, keys, buffers, options);
    let echo = &mut b.echo[..];
    stack.wait_config_up().await;

    let (text, end) = connection(&mut ws, server, "/getCaseCount", None).await;
    let Some(count) = text.and_then(|t| t.trim().parse::<u32>().ok()) else {
        println!("getCaseCount failed: {end:?}");
        std::process::exit(1);
    };
    println!("{count} cases");
    let mut ended = [0u32; 3];
    for case in 1..=count {
        let target = format!("/runCase?case={case}&agent={agent}");
        let end = match with_timeout(CASE_TIMEOUT, connection(&mut ws, server, &target, Some(&mut *echo))).await {
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
    let (_, end) = connection(&mut ws, server, &format!("/updateReports?agent={agent}"), None).await;
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
