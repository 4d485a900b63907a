// The room client firmware's program, included by the `client*` binaries,
// which name its channel (`Telemetry`, whose `WIRES` decide what is linked)
// and the wire it asks for (`FORMAT`).

use core::cell::RefCell;

use embassy_executor::Spawner;
use embassy_futures::select::{Either, select};
use embassy_net::tcp::TcpSocket;
use embassy_time::Ticker;
use roomwire_embassy::client::{Client, ClientBuffers, ClientConfig, Event};
use roomwire_embassy::roomwire_core::client::ClientEvent;
use roomwire_firmware::app::{Command, Reading};
use roomwire_firmware::{Keys, PORT, Runner, SERVER, mask_key, output, stack};
use static_cell::{ConstStaticCell, StaticCell};

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    cortex_m::asm::udf()
}

/// Rooms the client can be in at once.
const ROOMS: usize = 2;

type TelemetryClient = Client<'static, Telemetry, ROOMS, Keys>;

/// The client's own state, beyond the buffers, for the size report.
#[used]
#[unsafe(no_mangle)]
static ROOMWIRE_CLIENT_STATE_SIZE: usize = core::mem::size_of::<TelemetryClient>();
/// Of which the core's room client...
#[used]
#[unsafe(no_mangle)]
static ROOMWIRE_ROOM_CLIENT_SIZE: usize =
    core::mem::size_of::<roomwire_embassy::roomwire_core::RoomClient<Telemetry, ROOMS>>();
/// ... and the core's connection.
#[used]
#[unsafe(no_mangle)]
static ROOMWIRE_CONNECTION_SIZE: usize =
    core::mem::size_of::<roomwire_embassy::roomwire_core::Connection<roomwire_embassy::roomwire_core::NoMasking>>();

#[embassy_executor::task]
async fn net(mut runner: Runner) -> ! {
    runner.run().await
}

struct Buffers {
    rx: [u8; 1024],
    tx: [u8; 1024],
    read: [u8; 512],
    write: [u8; 512],
    message: [u8; 512],
    scratch: [u8; 256],
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let (stack, runner) = stack();
    spawner.spawn(net(runner).unwrap());

    // Zeroed in place: `StaticCell::init` would build the 3.8 KiB on the
    // stack first, in the frame of every poll of this task.
    static BUFFERS: ConstStaticCell<Buffers> = ConstStaticCell::new(Buffers {
        rx: [0; 1024],
        tx: [0; 1024],
        read: [0; 512],
        write: [0; 512],
        message: [0; 512],
        scratch: [0; 256],
    });
    static KEYS: StaticCell<Keys> = StaticCell::new();
    static CLIENT: StaticCell<TelemetryClient> = StaticCell::new();
    let b = BUFFERS.take();
    let keys: &'static Keys = KEYS.init(RefCell::new(mask_key as fn() -> [u8; 4]));
    let socket = TcpSocket::new(stack, &mut b.rx, &mut b.tx);
    let buffers =
        ClientBuffers { read: &mut b.read, write: &mut b.write, message: &mut b.message, scratch: &mut b.scratch };
    let mut config = ClientConfig::new(SERVER, PORT);
    config.format = FORMAT;
    // Written into its static as it is made (`init` would copy it there
    // from a second place on the stack).
    let client = CLIENT.uninit();
    let Ok(client) = Client::new(stack, socket, keys, buffers, config, &["plant-1"]).map(|c| client.write(c)) else {
        return;
    };

    let mut ticker = Ticker::every(embassy_time::Duration::from_secs(10));
    let mut set_point = 20;
    loop {
        match select(client.next_event(), ticker.next()).await {
            Either::First(Event::Room(ClientEvent::Message { message, .. })) => match message {
                Command::SetPoint { value } => set_point = value,
                Command::Say { text } => output(text.len() as u32),
            },
            Either::First(Event::Disconnected(_)) => output(0xdead),
            Either::First(_) => {}
            Either::Second(()) => {
                let reading = Reading { sensor: "t0", value: set_point };
                let _ = client.send("plant-1", &reading).await;
            }
        }
    }
}
