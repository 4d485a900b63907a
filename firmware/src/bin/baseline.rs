//! Size baseline: the executor, embassy-net TCP on the stub driver, and a
//! plain TCP client that connects, writes and reads. Every other firmware
//! is this plus a WebSocket client.
#![no_std]
#![no_main]

use embassy_executor::Spawner;
use embassy_net::tcp::TcpSocket;
use embassy_net::{IpAddress, Ipv4Address};
use embassy_time::Timer;
use roomwire_firmware::{PORT, Runner, output, stack};

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    cortex_m::asm::udf()
}

#[embassy_executor::task]
async fn net(mut runner: Runner) -> ! {
    runner.run().await
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let (stack, runner) = stack();
    spawner.spawn(net(runner).unwrap());
    let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
    let mut buf = [0u8; 512];
    let mut socket = TcpSocket::new(stack, &mut rx, &mut tx);
    loop {
        let server = IpAddress::Ipv4(Ipv4Address::new(192, 0, 2, 1));
        if socket.connect((server, PORT)).await.is_ok() {
            let _ = socket.write(b"hello").await;
            while let Ok(n) = socket.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                output(u32::from(buf[0]) + n as u32);
            }
        }
        socket.abort();
        let _ = socket.flush().await;
        Timer::after_secs(1).await;
    }
}
