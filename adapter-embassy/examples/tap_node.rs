//! An embassy-net node on a TAP device (192.0.2.2/24), for the end-to-end
//! tests (scripts/embassy-e2e.sh): a room client of the chat server at
//! `--server` (Alepha wire, room `lobby`) and a room server on `--listen`.
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

struct Args {
    tap: String,
    server: Option<(String, u16)>,
    listen: Option<u16>,
    wire: WireFormat,
    rooms: Vec<String>,
    silent: bool,
}

fn args() -> Args {
    let mut args = Args {
        tap: "tap0".into(),
        server: None,
        listen: None,
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

struct Replier;

impl Handler<Chat> for Replier {
    fn on_message(&mut self, ctx: &mut Context<'_, '_, Chat>, from: MemberId, room: &RoomId, message: ChatOut<'_>) {
        let username = format!("member-{}", from.0);
        let append =
            ChatIn { kind: "append", content: Some(message.content), username: Some(&username), message: None };
        let reached = ctx.reply(from, room, true, &append);
        say!("server: {:?} from member {} in {room}: reached {reached}", message.content, from.0);
    }

    fn on_connect(&mut self, _: &mut Context<'_, '_, Chat>, member: MemberId, format: WireFormat) {
        say!("server: member {} connected ({format:?})", member.0);
    }

    fn on_disconnect(&mut self, member: MemberId) {
        say!("server: member {} disconnected", member.0);
    }
}

const SLOTS: usize = 4;
type Rooms = FixedRoomTable<8, SLOTS, SLOTS, 4>;

#[embassy_executor::task]
async fn server(stack: Stack<'static>, port: u16) {
    type Slot = ([u8; 2048], [u8; 4096], [u8; 1024], [u8; 1024]);
    static SLOT_BUFS: StaticCell<[Slot; SLOTS]> = StaticCell::new();
    type Shared = ([u8; 1024], [u8; 512], [u8; 1024], [u8; 1200]);
    static SHARED: StaticCell<Shared> = StaticCell::new();
    static SERVER: StaticCell<Server<'static, Chat, SLOTS, Rooms>> = StaticCell::new();
    let bufs = SLOT_BUFS.init([([0; 2048], [0; 4096], [0; 1024], [0; 1024]); SLOTS]);
    let [a, b, c, d] = bufs;
    let slot = |s: &'static mut Slot| SlotBuffers { rx: &mut s.0, tx: &mut s.1, read: &mut s.2, message: &mut s.3 };
    let (inbox, scratch, payload, frame) = SHARED.init(([0; 1024], [0; 512], [0; 1024], [0; 1200]));
    let shared = SharedBuffers { inbox, scratch, payload, frame };
    let server = SERVER.init(Server::new(
        stack,
        [slot(a), slot(b), slot(c), slot(d)],
        Rooms::new(),
        shared,
        ServerConfig::new(port),
    ));
    say!("server: listening on {port}");
    server.run(&mut Replier).await
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
        static RESOURCES: StaticCell<StackResources<8>> = StaticCell::new();
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
            spawner.spawn(server(stack, port).unwrap());
        }
        say!("node: up on {}", args.tap);
    });
}
