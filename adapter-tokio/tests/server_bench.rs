//! First measurements of the room server (not timed tests: ignored).
//!
//! ```text
//! cargo test --release -p roomwire-tokio --test server_bench -- --ignored --nocapture --test-threads 1
//! ```
//!
//! * fan-out: one room of 1000 members on loopback; the cost of `emit`
//!   (one encode, 1000 queue pushes) and the end-to-end delivery rate
//!   (clients run in the same process, so they share the CPU).
//! * idle memory: the process RSS growth per idle connection, clients
//!   being bare TCP sockets after a hand-written handshake.

mod server_support;

use std::time::{Duration, Instant};

use roomwire_tokio::server::{Emit, Endpoint, Server};
use roomwire_tokio::{Config, Message, WebSocket};
use server_support::{Chat, ChatIn};
use tokio::net::{TcpListener, TcpStream};

async fn server() -> (Server, std::net::SocketAddr) {
    let server = Server::builder().endpoint(Endpoint::<Chat>::new(|_| Box::pin(async { Ok(()) }))).build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn({
        let server = server.clone();
        async move { server.serve(listener).await }
    });
    (server, addr)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --release --ignored --nocapture"]
async fn fan_out_1000_members() {
    const MEMBERS: usize = 1000;
    const MESSAGES: usize = 500;
    let (server, addr) = server().await;
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..MEMBERS {
        let (mut ws, _) =
            WebSocket::connect(&format!("ws://{addr}/ws/chat?roomId=fan"), Config::default()).await.unwrap();
        let done_tx = done_tx.clone();
        tokio::spawn(async move {
            let mut got = 0;
            while got < MESSAGES {
                match ws.recv().await {
                    Some(Ok(Message::Text(_))) => got += 1,
                    other => panic!("{other:?}"),
                }
            }
            done_tx.send(()).unwrap();
        });
    }
    while server.room_connections("fan").len() < MEMBERS {
        tokio::task::yield_now().await;
    }
    let message = ChatIn::Append { content: "x".repeat(100), username: "bench".into() };
    let target = Emit::to_room("fan");
    let start = Instant::now();
    let mut in_emit = Duration::ZERO;
    for _ in 0..MESSAGES {
        let t = Instant::now();
        assert_eq!(server.emit::<Chat>(&target, &message).unwrap(), MEMBERS);
        in_emit += t.elapsed();
        tokio::task::yield_now().await;
    }
    for _ in 0..MEMBERS {
        done.recv().await.unwrap();
    }
    let total = start.elapsed();
    let deliveries = (MEMBERS * MESSAGES) as f64;
    println!(
        "fan-out 1 room x {MEMBERS} members, {MESSAGES} messages of ~150 B: emit() {:.1} us each ({:.0} ns per member); \
         end to end {:.2} s, {:.0} deliveries/s (clients in-process)",
        in_emit.as_secs_f64() * 1e6 / MESSAGES as f64,
        in_emit.as_secs_f64() * 1e9 / deliveries,
        total.as_secs_f64(),
        deliveries / total.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --release --ignored --nocapture"]
async fn idle_memory_per_connection() {
    const CONNECTIONS: usize = 5000;
    let (server, addr) = server().await;
    // Warm up allocator and runtime with a few connections first.
    let mut streams = Vec::with_capacity(CONNECTIONS + 10);
    for _ in 0..10 {
        streams.push(handshake(addr).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib();
    for _ in 0..CONNECTIONS {
        streams.push(handshake(addr).await);
    }
    while server.connection_count() < CONNECTIONS + 10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let every connection task reach its idle wait.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib();
    println!(
        "idle: {CONNECTIONS} connections, RSS +{} KiB, {:.0} bytes per connection (server side, plus a bare client socket)",
        after - before,
        (after - before) as f64 * 1024.0 / CONNECTIONS as f64
    );
}

/// A client that only does the handshake, then holds its socket.
async fn handshake(addr: std::net::SocketAddr) -> TcpStream {
    server_support::raw_upgrade(addr, "/ws/chat?roomId=idle", "").await
}

#[tokio::test]
#[ignore = "measurement"]
async fn connection_future_size() {
    let (server, _) = server().await;
    let (a, _b) = tokio::io::duplex(64);
    let future = server.serve_stream(a, None);
    println!("serve_stream future: {} bytes", std::mem::size_of_val(&future));
}
