//! The process's bound on what unfinished compressed messages hold
//! (`set_inflating_limit`), in a test binary of its own: the bound is
//! process-wide, and no other test may share it.

mod deflate_support;
mod server_support;

use std::net::SocketAddr;
use std::time::Duration;

use deflate_support::{deflate, inflate, raw_client};
use roomwire_tokio::roomwire_core::deflate::DeflateConfig;
use roomwire_tokio::{Config, WebSocket, inflating_held, set_inflating_limit};
use server_support::{LIMIT, client_frame, server_frame};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, timeout};

/// An echo server for any number of connections, offering deflate.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = Config::default();
    config.core.deflate = Some(DeflateConfig::DEFAULT);
    config.core.max_message_size = 1 << 20;
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let Ok((mut ws, _)) = WebSocket::accept(stream, config).await else { return };
                while let Some(Ok(message)) = ws.recv().await {
                    drop(ws.send(&message).await);
                }
            });
        }
    });
    addr
}

/// A peer that has begun a compressed binary message of `len` zeros and
/// not finished it.
async fn unfinished(addr: SocketAddr, len: usize) -> TcpStream {
    let (mut stream, response) = raw_client(addr, "permessage-deflate").await;
    assert!(response.contains("permessage-deflate"), "{response}");
    // RSV1 (compressed), binary, no FIN.
    stream.write_all(&client_frame(0x42, &deflate(&vec![0; len]))).await.unwrap();
    stream
}

async fn held_becomes(bytes: usize) {
    timeout(LIMIT, async {
        while inflating_held() != bytes {
            sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("held {} bytes, not {bytes}", inflating_held()));
}

#[tokio::test]
async fn the_process_bound_set_at_run_time_decides_which_unfinished_message_is_refused() {
    // Each message's first 64 KiB are its own; past them, 256 KiB for all.
    set_inflating_limit(256 << 10);
    let addr = echo_server().await;

    let first = unfinished(addr, 200 << 10).await;
    held_becomes(136 << 10).await;

    // 236 KiB more would pass the bound: refused with 1009, taking nothing.
    let mut second = unfinished(addr, 300 << 10).await;
    let (b0, payload) = timeout(LIMIT, server_frame(&mut second)).await.unwrap();
    assert_eq!(b0, 0x88);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1009);
    held_becomes(136 << 10).await;

    // The first peer goes: what its message held is given back, and the
    // same message now fits.
    drop(first);
    held_becomes(0).await;
    let mut third = unfinished(addr, 300 << 10).await;
    held_becomes(236 << 10).await;
    // Its end (an empty final fragment) completes it: the echo is the
    // whole message, and nothing stays held.
    third.write_all(&client_frame(0x80, &[])).await.unwrap();
    let (b0, payload) = timeout(LIMIT, server_frame(&mut third)).await.unwrap();
    assert_eq!(b0, 0xC2, "FIN, RSV1, binary");
    assert_eq!(inflate(&payload), vec![0; 300 << 10]);
    held_becomes(0).await;
}
