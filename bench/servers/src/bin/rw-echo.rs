//! roomwire-tokio echo server for the echo cells: the raw `WebSocket`
//! (public API only), one task per connection, every message sent back.
//! Each connection receives into one `Message` (`recv_into`), so that no
//! message allocates, as fastwebsockets' echo reads its frames in place.

use roomwire_tokio::{Config, Message, WebSocket};
use tokio::net::TcpListener;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = roomwire_bench_servers::addr();
    let listener = TcpListener::bind(&addr).await?;
    roomwire_bench_servers::ready(&addr);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let Ok((mut ws, _)) = WebSocket::accept(stream, Config::default()).await else { return };
            let mut message = Message::Binary(Vec::new());
            while let Some(Ok(())) = ws.recv_into(&mut message).await {
                if ws.send(&message).await.is_err() {
                    break;
                }
            }
        });
    }
}
