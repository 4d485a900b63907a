//! The baseline plus an embedded-websocket client doing what the roomwire
//! firmware does minus rooms: connect, handshake, send a postcard reading
//! every 10 s, decode postcard commands, answer pings, ping to keep alive,
//! reconnect. For the size comparison only.
#![no_std]
#![no_main]

use embassy_executor::Spawner;
use embassy_futures::select::{Either, select};
use embassy_net::tcp::TcpSocket;
use embassy_net::{IpAddress, Ipv4Address};
use embassy_time::{Duration, Ticker, Timer};
use embedded_websocket::{
    WebSocketClient, WebSocketOptions, WebSocketReceiveMessageType, WebSocketSendMessageType, WebSocketState,
};
use roomwire_firmware::app::{Command, Reading};
use roomwire_firmware::{PORT, Runner, SERVER, output, stack, trng};

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    cortex_m::asm::udf()
}

struct Trng;

impl rand_core::RngCore for Trng {
    fn next_u32(&mut self) -> u32 {
        trng()
    }
    fn next_u64(&mut self) -> u64 {
        (u64::from(trng()) << 32) | u64::from(trng())
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(4) {
            let bytes = trng().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

#[embassy_executor::task]
async fn net(mut runner: Runner) -> ! {
    runner.run().await
}

async fn write_all(socket: &mut TcpSocket<'_>, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        match socket.write(data).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => data = &data[n..],
        }
    }
    true
}

async fn session(socket: &mut TcpSocket<'_>, read: &mut [u8], write: &mut [u8], message: &mut [u8]) {
    let mut ws = WebSocketClient::new_client(Trng);
    let options = WebSocketOptions {
        path: "/ws/telemetry",
        host: SERVER,
        origin: "",
        sub_protocols: None,
        additional_headers: None,
    };
    let Ok((n, key)) = ws.client_connect(&options, write) else { return };
    if !write_all(socket, &write[..n]).await {
        return;
    }
    // Handshake response.
    let mut len = 0;
    loop {
        match socket.read(&mut read[len..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
        match ws.client_accept(&key, &read[..len]) {
            Ok((used, _)) => {
                read.copy_within(used..len, 0);
                len -= used;
                break;
            }
            Err(embedded_websocket::Error::HttpHeaderIncomplete) if len < read.len() => {}
            Err(_) => return,
        }
    }
    let mut ticker = Ticker::every(Duration::from_secs(10));
    let mut set_point = 20;
    let mut msg_len = 0;
    let mut awaiting_pong = false;
    loop {
        // Frames already buffered.
        while len > 0 {
            let Ok(result) = ws.read(&read[..len], &mut message[msg_len..]) else { return };
            read.copy_within(result.len_from..len, 0);
            len -= result.len_from;
            msg_len += result.len_to;
            match result.message_type {
                WebSocketReceiveMessageType::Binary if result.end_of_message => {
                    if let Ok(command) = postcard::from_bytes::<Command<'_>>(&message[..msg_len]) {
                        match command {
                            Command::SetPoint { value } => set_point = value,
                            Command::Say { text } => output(text.len() as u32),
                        }
                    }
                    msg_len = 0;
                }
                WebSocketReceiveMessageType::Ping => {
                    let payload = &message[..msg_len];
                    let Ok(n) = ws.write(WebSocketSendMessageType::Pong, true, payload, write) else { return };
                    msg_len = 0;
                    if !write_all(socket, &write[..n]).await {
                        return;
                    }
                }
                WebSocketReceiveMessageType::Pong => {
                    awaiting_pong = false;
                    msg_len = 0;
                }
                WebSocketReceiveMessageType::CloseMustReply => {
                    let payload = &message[..msg_len.min(2)];
                    if let Ok(n) = ws.write(WebSocketSendMessageType::CloseReply, true, payload, write) {
                        let _ = write_all(socket, &write[..n]).await;
                    }
                    return;
                }
                WebSocketReceiveMessageType::CloseCompleted => return,
                _ if result.end_of_message => msg_len = 0,
                _ => {}
            }
            if result.len_from == 0 {
                break;
            }
        }
        if ws.state != WebSocketState::Open {
            return;
        }
        match select(socket.read(&mut read[len..]), ticker.next()).await {
            Either::First(Ok(0)) | Either::First(Err(_)) => return,
            Either::First(Ok(n)) => len += n,
            Either::Second(()) => {
                if awaiting_pong {
                    return; // keepalive: the server stopped answering
                }
                let Ok(n) = ws.write(WebSocketSendMessageType::Ping, true, &[], write) else { return };
                awaiting_pong = true;
                if !write_all(socket, &write[..n]).await {
                    return;
                }
                let mut payload = [0u8; 64];
                let Ok(p) = postcard::to_slice(&Reading { sensor: "t0", value: set_point }, &mut payload) else {
                    return;
                };
                let Ok(n) = ws.write(WebSocketSendMessageType::Binary, true, p, write) else { return };
                if !write_all(socket, &write[..n]).await {
                    return;
                }
            }
        }
    }
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let (stack, runner) = stack();
    spawner.spawn(net(runner).unwrap());
    let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
    let (mut read, mut write, mut message) = ([0u8; 512], [0u8; 512], [0u8; 512]);
    let mut socket = TcpSocket::new(stack, &mut rx, &mut tx);
    let mut backoff = 500;
    loop {
        let server = IpAddress::Ipv4(Ipv4Address::new(192, 0, 2, 1));
        if socket.connect((server, PORT)).await.is_ok() {
            session(&mut socket, &mut read, &mut write, &mut message).await;
        }
        socket.abort();
        let _ = socket.flush().await;
        output(0xdead);
        Timer::after_millis(backoff).await;
        backoff = (backoff * 2).min(30_000);
    }
}
