//! socketioxide room server (peer) on axum: every socket joins room `r`
//! on connect; an `m` event is relayed to the other members of `r`
//! (`socket.to("r").emit`, which leaves the sender out).
//!
//! With `BENCH_REDIS=redis://…` it is one node of a cluster on that Redis
//! (socketioxide-redis, its Redis adapter).

use axum::serve::ListenerExt;
use serde::{Deserialize, Serialize};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{Data, SocketRef};
use socketioxide_redis::{RedisAdapter, RedisAdapterCtr};

#[derive(Serialize, Deserialize)]
struct Relay {
    p: String,
}

async fn on_connect<A: Adapter>(s: SocketRef<A>) {
    s.join("r");
    s.on("m", async |s: SocketRef<A>, Data::<Relay>(data)| {
        let _ = s.to("r").emit("m", &data).await;
    });
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = roomwire_bench_servers::addr();
    let app = match std::env::var("BENCH_REDIS") {
        Ok(url) => {
            let client = redis::Client::open(format!("{url}/?protocol=resp3")).map_err(std::io::Error::other)?;
            let adapter = RedisAdapterCtr::new_with_redis(&client).await.map_err(std::io::Error::other)?;
            let (layer, io) = SocketIo::builder().with_adapter::<RedisAdapter<_>>(adapter).build_layer();
            io.ns("/", on_connect).await.map_err(std::io::Error::other)?;
            axum::Router::new().layer(layer)
        }
        Err(_) => {
            let (layer, io) = SocketIo::new_layer();
            io.ns("/", on_connect);
            axum::Router::new().layer(layer)
        }
    };
    let listener = tokio::net::TcpListener::bind(&addr).await?.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    roomwire_bench_servers::ready(&addr);
    axum::serve(listener, app).await
}
