//! The baseline plus roomwire-embassy's WebSocket client (no rooms) doing
//! what `ews` does with embedded-websocket: connect, handshake, send a
//! postcard reading every 10 s, decode postcard commands, answer pings,
//! ping to keep alive, reconnect after a doubling delay. For the size
//! comparison only: what the WebSocket layer costs before rooms.
#![no_std]
#![no_main]

use core::cell::RefCell;

use embassy_executor::Spawner;
use embassy_futures::select::{Either, select};
use embassy_net::tcp::TcpSocket;
use embassy_time::{Ticker, Timer};
use roomwire_embassy::roomwire_core::{Duration, Message};
use roomwire_embassy::ws::{Buffers, Event, Options, WebSocket};
use roomwire_firmware::app::{Command, Reading};
use roomwire_firmware::{Keys, PORT, Runner, SERVER, mask_key, output, stack};
use static_cell::{ConstStaticCell, StaticCell};

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    cortex_m::asm::udf()
}

#[embassy_executor::task]
async fn net(mut runner: Runner) -> ! {
    runner.run().await
}

struct Memory {
    rx: [u8; 1024],
    tx: [u8; 1024],
    read: [u8; 512],
    write: [u8; 512],
    message: [u8; 512],
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let (stack, runner) = stack();
    spawner.spawn(net(runner).unwrap());
    // Zeroed in place, not built on the stack first (as `client_main.rs`).
    static MEMORY: ConstStaticCell<Memory> = ConstStaticCell::new(Memory {
        rx: [0; 1024],
        tx: [0; 1024],
        read: [0; 512],
        write: [0; 512],
        message: [0; 512],
    });
    static KEYS: StaticCell<Keys> = StaticCell::new();
    let m = MEMORY.take();
    let keys: &'static Keys = KEYS.init(RefCell::new(mask_key as fn() -> [u8; 4]));
    let socket = TcpSocket::new(stack, &mut m.rx, &mut m.tx);
    let mut options = Options::default();
    options.websocket.keepalive_interval = Some(Duration::from_secs(10));
    let buffers = Buffers { read: &mut m.read, write: &mut m.write, message: &mut m.message };
    let mut ws = WebSocket::new(stack, socket, keys, buffers, options);
    let mut set_point = 20;
    let mut backoff = 500;
    loop {
        if ws.connect(SERVER, PORT, "/ws/telemetry", &[], &[]).await.is_ok() {
            backoff = 500;
            let mut ticker = Ticker::every(embassy_time::Duration::from_secs(10));
            loop {
                match select(ws.recv(), ticker.next()).await {
                    Either::First(Ok(Event::Message(Message::Binary(bytes)))) => {
                        match postcard::from_bytes::<Command<'_>>(bytes) {
                            Ok(Command::SetPoint { value }) => set_point = value,
                            Ok(Command::Say { text }) => output(text.len() as u32),
                            Err(_) => {}
                        }
                    }
                    Either::First(Ok(Event::Closed(_)) | Err(_)) => break,
                    Either::First(Ok(_)) => {}
                    Either::Second(()) => {
                        let mut payload = [0u8; 64];
                        let Ok(p) = postcard::to_slice(&Reading { sensor: "t0", value: set_point }, &mut payload)
                        else {
                            break;
                        };
                        if ws.send(Message::Binary(p)).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
        output(0xdead);
        Timer::after_millis(backoff).await;
        backoff = (backoff * 2).min(30_000);
    }
}
