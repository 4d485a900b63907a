//! Shared by the permessage-deflate tests (`deflate`, `server_deflate`,
//! `inflating_limit`): zlib on the peer's side, and a raw peer that
//! offers the extension. Test binaries that use it declare
//! `server_support` too.
#![allow(dead_code)]

use std::net::SocketAddr;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw client: sends an Upgrade offering `extensions`, returns the stream
/// and the response's header section.
pub async fn raw_client(addr: SocketAddr, extensions: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let offer = format!("Sec-WebSocket-Extensions: {extensions}\r\n");
    stream.write_all(&crate::server_support::raw_request("/", &offer)).await.unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        response.push(stream.read_u8().await.unwrap());
    }
    (stream, String::from_utf8(response).unwrap())
}

/// Raw deflate with a sync flush, the final empty block stripped.
pub fn deflate(payload: &[u8]) -> Vec<u8> {
    let mut zlib = Compress::new(Compression::best(), false);
    let mut out = Vec::with_capacity(payload.len() / 4 + 1024);
    loop {
        let used = zlib.total_in() as usize;
        zlib.compress_vec(&payload[used..], &mut out, FlushCompress::Sync).unwrap();
        if zlib.total_in() as usize == payload.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// One whole permessage-deflate payload, inflated as RFC 7692 §7.2.2 says
/// (the four-byte tail appended), by zlib.
pub fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    Decompress::new(false).decompress_vec(&input, &mut out, FlushDecompress::Sync).unwrap();
    out
}
