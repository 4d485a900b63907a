//! The process's bound on what outbound queues hold (`set_outbound_limit`),
//! in a test binary of its own: the bound is process-wide, and no other
//! test may share it.

mod server_support;

use std::net::SocketAddr;
use std::time::Duration;

use roomwire_tokio::{CloseCode, Error, MessageRef, outbound_held, outbound_limit, set_outbound_limit};
use server_support::{LIMIT, config, harness_with, raw_request, recv_json, say};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{sleep, timeout};

/// A member of room `r` that never reads, with a receive buffer of 4 KiB
/// so that the server's queue for it fills after a few frames.
async fn non_reader(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    tcp.write_all(&raw_request("/ws/chat?roomId=r", "")).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(timeout(LIMIT, tcp.read_u8()).await.unwrap().unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    tcp
}

/// A room's frame is encoded once, but each reader's queue holds its own
/// copy: eight members that never read, each under its own bound (64 MiB
/// here), would together hold tens of MiB (what the kernel's buffers do
/// not take of 6 MiB each). Under a process bound of 2 MiB beyond each
/// queue's first 64 KiB, the queues that would pass it are closed with
/// 1013, what is held never passes the bound, the member that reads gets
/// every message, and all is given back once they are gone.
#[tokio::test]
async fn readers_that_do_not_read_hold_at_most_the_process_bound() {
    set_outbound_limit(2 << 20);
    assert_eq!(outbound_limit(), 2 << 20);
    let mut h = harness_with(config(|c| c.socket.max_outbound = 64 << 20), |e| e).await;
    let (mut sender, _) = h.connect("/ws/chat?roomId=r").await;
    let (mut reader, _) = h.connect("/ws/chat?roomId=r").await;
    let mut stalled = Vec::new();
    for _ in 0..8 {
        stalled.push(non_reader(h.addr).await);
        h.connects.recv().await.unwrap();
    }
    let content = "x".repeat(50 << 10);
    let mut most = 0;
    for i in 0..120 {
        say(&mut sender, "r", &format!("{i} {content}")).await;
        let heard = recv_json(&mut reader).await;
        assert!(heard["content"].as_str().unwrap().starts_with(&format!("{i} ")), "message {i}");
        most = most.max(outbound_held());
    }
    assert!(most <= 2 << 20, "held {most} bytes");
    // The queues that would have passed the bound were closed with 1013
    // (each was under its own bound: without the process's, none).
    let mut overflowed = 0;
    while let Ok(Some(gone)) = timeout(LIMIT, h.disconnects.recv()).await {
        assert_eq!(gone.code, Some(CloseCode::Again), "{gone:?}");
        overflowed += 1;
        if overflowed == stalled.len() {
            break;
        }
    }
    assert!(overflowed > 0, "no queue was refused past the process bound");
    // The bound refuses a message even into an empty queue, with an error
    // of its own (flushing would not make room); within a queue's first
    // 64 KiB nothing is asked of it.
    set_outbound_limit(0);
    let big = format!(r#"{{"roomId":"r","message":{{"content":"{}"}}}}"#, "y".repeat(100 << 10));
    assert!(matches!(sender.feed(MessageRef::Text(&big)), Err(Error::OutboundLimit)));
    assert_eq!(sender.queued(), 0);
    sender.feed(MessageRef::Text(r#"{"roomId":"r","message":{"content":"small"}}"#)).unwrap();
    sender.flush().await.unwrap();
    assert_eq!(recv_json(&mut reader).await["content"], "small");
    drop(stalled);
    drop(sender);
    drop(reader);
    timeout(LIMIT, async {
        while outbound_held() != 0 {
            sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} bytes still held", outbound_held()));
}
