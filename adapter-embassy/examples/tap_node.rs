//! An embassy-net node on a TAP device (192.0.2.2/24), for the end-to-end
//! tests (scripts/embassy-e2e.sh): a room client of the chat server at
//! `--server` (Alepha wire, room `lobby`) and a room server on `--listen`
//! (and another on `--listen-short-keepalive`, pinging every 2 s and
//! greeting each new member's room).
//!
//! ```text
//! ip netns exec NS cargo run -p roomwire-embassy --example tap_node -- --tap tap0 --server 192.0.2.1:8080 --listen 8081
//! ```
//!
//! The client sends `hello from embassy` until it receives `hello from
//! tokio`, then answers `ack from embassy` (with `--silent` it sends
//! nothing: the client conformance sessions script the server byte by
//! byte). `--wire json|alepha` and `--rooms a,b` choose its wire and
//! rooms. The server replies each chat
//! message to its room, except the sender, as `append` (username
//! `member-N`). Progress goes to stdout, one line per step.

#[path = "common/chat_types.rs"]
mod chat_types;

use core::cell::RefCell;

use chat_types::{Chat, ChatIn, ChatOut};
use embassy_executor::{Executor, Spawner};
use embassy_futures::select::{Either, select};
use embassy_net::tcp::TcpSocket;
use embassy_net::{Ipv4Address, Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;
use embassy_time::{Duration, Ticker};
use roomwire_embassy::client::{Client, ClientBuffers, ClientConfig, Event};
use roomwire_embassy::roomwire_core::WireFormat;
use roomwire_embassy::roomwire_core::client::ClientEvent;
use roomwire_embassy::roomwire_core::room::{FixedRoomTable, MemberId, RoomId};
use roomwire_embassy::server::{Context, Handler, Server, ServerConfig, SharedBuffers, SlotBuffers};
use static_cell::StaticCell;

/// A line on standard output, stamped with the milliseconds since the node
/// started (on the clock the stack runs on), so that a log says when each
/// thing happened.
macro_rules! say {
    ($($arg:tt)*) => {
        println!("[{:>6} ms] {}", embassy_time::Instant::now().as_millis(), format_args!($($arg)*))
    };
}

/// The keepalive of the `--listen-short-keepalive` server: short enough
/// that a hold of the room (at most the slow-reader grace, 5 s) spans two.
const SHORT_KEEPALIVE_SECS: u64 = 2;

struct Args {
    tap: String,
    server: Option<(String, u16)>,
    listen: Option<u16>,
    listen_short_keepalive: Option<u16>,
    wire: WireFormat,
    rooms: Vec<String>,
    silent: bool,
}

fn args() -> Args {
    let mut args = Args {
        tap: "tap0".into(),
        server: None,
        listen: None,
        listen_short_keepalive: None,
        // The chat server's In type is an internally tagged union: JSON.
        wire: WireFormat::Alepha,
        rooms: vec!["lobby".into()],
        silent: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        if arg == "--silent" {
            args.silent = true;
            continue;
        }
        let value = it.next().unwrap_or_default();
        match arg.as_str() {
            "--wire" => {
                args.wire = match value.as_str() {
                    "json" => WireFormat::Json,
                    "postcard" => WireFormat::Postcard,
                    _ => WireFormat::Alepha,
                }
            }
            "--rooms" => args.rooms = value.split(',').map(str::to_owned).collect(),
            "--tap" => args.tap = value,
            "--server" => {
                let (host, port) = value.rsplit_once(':').expect("--server HOST:PORT");
                args.server = Some((host.into(), port.parse().expect("port")));
            }
            "--listen" => args.listen = Some(value.parse().expect("port")),
            "--listen-short-keepalive" => args.listen_short_keepalive = Some(value.parse().expect("port")),
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

#[embassy_executor::task]
async fn net(mut runner: embassy_net::Runner<'static, TunTapDevice>) -> ! {
    runner.run().await
}

/// The OS RNG through a closure, shared by the client's connections.
type Keys = RefCell<fn() -> [u8; 4]>;

fn os_key() -> [u8; 4] {
    let mut key = [0u8; 4];
    getrandom::fill(&mut key).expect("OS RNG");
    key
}

/// What the client is asked to do.
struct ClientArgs {
    host: &'static str,
    port: u16,
    wire: WireFormat,
    rooms: &'static [&'static str],
    silent: bool,
}

#[embassy_executor::task]
async fn client(stack: Stack<'static>, args: ClientArgs) {
    let ClientArgs { host, port, wire, rooms, silent } = args;
    static KEYS: StaticCell<Keys> = StaticCell::new();
    static TCP: StaticCell<([u8; 4096], [u8; 4096])> = StaticCell::new();
    type Buffers = ([u8; 1024], [u8; 1024], [u8; 1024], [u8; 1024]);
    static BUFS: StaticCell<Buffers> = StaticCell::new();
    let keys: &'static Keys = KEYS.init(RefCell::new(os_key as fn() -> [u8; 4]));
    let (rx, tx) = TCP.init(([0; 4096], [0; 4096]));
    let (read, write, message, scratch) = BUFS.init(([0; 1024], [0; 1024], [0; 1024], [0; 1024]));
    let socket = TcpSocket::new(stack, rx, tx);
    let buffers = ClientBuffers { read, write, message, scratch };
    let mut config = ClientConfig::new(host, port);
    config.format = wire;
    config.websocket.keepalive_interval = Some(roomwire_embassy::roomwire_core::Duration::from_secs(5));
    config.reconnect.max = roomwire_embassy::roomwire_core::Duration::from_secs(2);
    let mut client = Client::<Chat, 2, Keys>::new(stack, socket, keys, buffers, config, rooms).expect("client");
    // Faster than the client's 500 ms linger on a closed socket: the select
    // below drops `next_event` often, as its cancel safety allows, and the
    // client conformance sessions then show that the client still
    // reconnects in time (a release that started over at each call would
    // never end).
    let mut ticker = Ticker::every(Duration::from_millis(100));
    let mut heard = false;
    loop {
        match select(client.next_event(), ticker.next()).await {
            Either::First(Event::Connected { format }) => say!("client: connected ({format:?})"),
            Either::First(Event::Room(ClientEvent::Message { room, message })) => {
                say!("client: {} in {:?}: {:?} from {:?}", message.kind, room, message.content, message.username);
                if message.content == Some("hello from tokio") && !heard && !silent {
                    heard = true;
                    let sent = client.send("lobby", &ChatOut { content: "ack from embassy" }).await;
                    say!("client: sent ack ({sent:?})");
                }
            }
            Either::First(Event::Room(other)) => say!("client: {other:?}"),
            Either::First(Event::Invalid(e)) => say!("client: invalid message: {e}"),
            Either::First(Event::Disconnected(why)) => say!("client: disconnected: {why}"),
            Either::First(Event::Stopped(why)) => say!("client: stopped: {why}"),
            Either::First(_) => {}
            Either::Second(()) => {
                if !heard && !silent && client.is_open() {
                    let _ = client.send("lobby", &ChatOut { content: "hello from embassy" }).await;
                }
            }
        }
    }
}

/// The server's handler; `port` tells the servers' lines apart. With
/// `greet`, a new member's room hears of it, in a frame of most of a KiB.
struct Replier {
    port: u16,
    greet: bool,
}

impl Handler<Chat> for Replier {
    fn on_message(&mut self, ctx: &mut Context<'_, '_, Chat>, from: MemberId, room: &RoomId, message: ChatOut<'_>) {
        let username = format!("member-{}", from.0);
        let append =
            ChatIn { kind: "append", content: Some(message.content), username: Some(&username), message: None };
        let reached = ctx.reply(from, room, true, &append);
        say!("server {}: {:?} from member {} in {room}: reached {reached}", self.port, message.content, from.0);
    }

    fn on_connect(&mut self, ctx: &mut Context<'_, '_, Chat>, member: MemberId, format: WireFormat) {
        say!("server {}: member {} connected ({format:?})", self.port, member.0);
        if self.greet {
            let welcome = format!("welcome member-{} {}", member.0, "w".repeat(800));
            let system = ChatIn { kind: "system", message: Some(&welcome), ..ChatIn::default() };
            let reached = ctx.reply(member, "lobby", true, &system);
            say!("server {}: member {} greeted: reached {reached}", self.port, member.0);
        }
    }

    fn on_disconnect(&mut self, member: MemberId) {
        say!("server {}: member {} disconnected", self.port, member.0);
    }
}

const SLOTS: usize = 4;
type Rooms = FixedRoomTable<8, SLOTS, SLOTS, 4>;

/// A room server on `port`, pinging every `keepalive` if given (else the
/// default 30 s), and then greeting new members. Two can run: the buffers
/// are the host's heap.
#[embassy_executor::task(pool_size = 2)]
async fn server(stack: Stack<'static>, port: u16, keepalive: Option<u64>) {
    type Slot = ([u8; 2048], [u8; 4096], [u8; 1024], [u8; 1024]);
    let bufs: &'static mut [Slot; SLOTS] = Box::leak(Box::new([([0; 2048], [0; 4096], [0; 1024], [0; 1024]); SLOTS]));
    let [a, b, c, d] = bufs;
    let slot = |s: &'static mut Slot| SlotBuffers { rx: &mut s.0, tx: &mut s.1, read: &mut s.2, message: &mut s.3 };
    type Shared = ([u8; 1024], [u8; 512], [u8; 1024], [u8; 1200]);
    let shared: &'static mut Shared = Box::leak(Box::new(([0; 1024], [0; 512], [0; 1024], [0; 1200])));
    let (inbox, scratch, payload, frame) = shared;
    let shared = SharedBuffers { inbox, scratch, payload, frame };
    let mut config = ServerConfig::new(port);
    if let Some(secs) = keepalive {
        config.websocket.keepalive_interval = Some(roomwire_embassy::roomwire_core::Duration::from_secs(secs));
    }
    let server: &'static mut Server<'static, Chat, SLOTS, Rooms> =
        Box::leak(Box::new(Server::new(stack, [slot(a), slot(b), slot(c), slot(d)], Rooms::new(), shared, config)));
    say!("server {port}: listening (keepalive {:?} s)", keepalive.unwrap_or(30));
    server.run(&mut Replier { port, greet: keepalive.is_some() }).await
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
        // Two servers of four slots, and the client.
        static RESOURCES: StaticCell<StackResources<12>> = StaticCell::new();
        let seed = u64::from_le_bytes(std::array::from_fn(|i| os_key()[i % 4]));
        let (stack, runner) = embassy_net::new(device, config, RESOURCES.init(StackResources::new()), seed);
        spawner.spawn(net(runner).unwrap());
        if let Some((host, port)) = args.server {
            let host: &'static str = Box::leak(host.into_boxed_str());
            let rooms: Vec<&'static str> = args.rooms.into_iter().map(|r| &*Box::leak(r.into_boxed_str())).collect();
            let rooms: &'static [&'static str] = Box::leak(rooms.into_boxed_slice());
            let client_args = ClientArgs { host, port, wire: args.wire, rooms, silent: args.silent };
            spawner.spawn(client(stack, client_args).unwrap());
        }
        if let Some(port) = args.listen {
            spawner.spawn(server(stack, port, None).unwrap());
        }
        if let Some(port) = args.listen_short_keepalive {
            spawner.spawn(server(stack, port, Some(SHORT_KEEPALIVE_SECS)).unwrap());
        }
        say!("node: up on {}", args.tap);
    });
}
