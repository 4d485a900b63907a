//! One roomwire node of a cluster, as a process the fault tests start and
//! kill: the chat channel (`/ws/chat`, Alepha wire or roomwire wire), whose
//! handler replies to the sender's room except the sender (`username` is
//! the connection id), and the demo's counter room (`/ws/counter`), with
//! the Redis backplane.
//!
//! ```text
//! rw_node --redis redis://127.0.0.1:6379 [--listen 127.0.0.1:0]
//! ```
//!
//! Prints `listening on PORT` once it accepts connections.

use roomwire_redis::RedisBackplane;
use roomwire_tokio::server::Server;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut listen = "127.0.0.1:0".to_owned();
    let mut redis = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().expect("--listen ADDR"),
            "--redis" => redis = args.next(),
            other => panic!("unknown argument {other}; usage: rw_node --redis URL [--listen ADDR]"),
        }
    }
    let redis = redis.expect("--redis URL");
    let server = Server::builder()
        .endpoint(roomwire_tests::chat::tokio_endpoint())
        .room(roomwire_tests::counter::counter_room())
        .backplane(RedisBackplane::new(&redis).expect("a redis:// URL"))
        .build()
        .expect("valid endpoints");
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on {}", listener.local_addr()?.port());
    server.serve(listener).await
}
