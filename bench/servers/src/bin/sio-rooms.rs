//! socketioxide room server (peer) on axum: every socket joins room `r`
//! on connect; an `m` event is relayed to the other members of `r`
//! (`socket.to("r").emit`, which leaves the sender out).

use axum::serve::ListenerExt;
use serde::{Deserialize, Serialize};
use socketioxide::SocketIo;
use socketioxide::extract::{Data, SocketRef};

#[derive(Serialize, Deserialize)]
struct Relay {
    p: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = roomwire_bench_servers::addr();
    let (layer, io) = SocketIo::new_layer();
    io.ns("/", async |s: SocketRef| {
        s.join("r");
        s.on("m", async |s: SocketRef, Data::<Relay>(data)| {
            let _ = s.to("r").emit("m", &data).await;
        });
    });
    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind(&addr).await?.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    roomwire_bench_servers::ready(&addr);
    axum::serve(listener, app).await
}
