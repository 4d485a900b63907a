//! The client side of the wire, kept lean: a hand-written HTTP upgrade,
//! masked frames encoded straight into a write buffer, server frames parsed
//! in place from the read buffer.

use std::io;
use std::net::SocketAddr;

use std::sync::atomic::{AtomicBool, Ordering};

use flate2::{Decompress, FlushDecompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const OP_TEXT: u8 = 1;
pub const OP_BINARY: u8 = 2;
pub const OP_CLOSE: u8 = 8;
pub const OP_PING: u8 = 9;
pub const OP_PONG: u8 = 10;

/// How the generator talks to a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// Plain WebSocket messages (the Alepha wire for room servers).
    Ws,
    /// socket.io over engine.io v4's websocket transport: `0{..}` open,
    /// `40` connect, `42["m",..]` events, `2`/`3` ping/pong.
    Sio,
}

/// Whether connections offer permessage-deflate (set once, from the
/// command line, before any connects).
static OFFER_DEFLATE: AtomicBool = AtomicBool::new(false);

/// Offer permessage-deflate on every connection from now on, as browsers
/// do; a server that declines fails the connect.
pub fn offer_deflate(on: bool) {
    OFFER_DEFLATE.store(on, Ordering::Relaxed);
}

fn deflate_offered() -> bool {
    OFFER_DEFLATE.load(Ordering::Relaxed)
}

/// Inflates a connection's compressed frames. It keeps its window between
/// messages, which reads both a server that keeps its context and one that
/// starts each message afresh.
pub struct Inflater {
    zlib: Decompress,
}

impl Inflater {
    /// An inflater if permessage-deflate is offered.
    pub fn for_connection() -> Option<Self> {
        deflate_offered().then(|| Self { zlib: Decompress::new(false) })
    }

    /// Inflate one message's payload (RFC 7692 §7.2.2) into `out`.
    pub fn inflate(&mut self, payload: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        out.clear();
        for mut input in [payload, &[0, 0, 0xff, 0xff][..]] {
            loop {
                if out.capacity() - out.len() < 1024 {
                    out.reserve(out.capacity().max(4096));
                }
                let (before, made) = (self.zlib.total_in(), out.len());
                let status = self
                    .zlib
                    .decompress_vec(input, out, FlushDecompress::Sync)
                    .map_err(|e| err(format!("a compressed relay does not inflate: {e}")))?;
                let used = (self.zlib.total_in() - before) as usize;
                input = &input[used..];
                if input.is_empty() && out.capacity() > out.len() {
                    break;
                }
                if status == flate2::Status::StreamEnd || (used == 0 && out.len() == made && out.capacity() > out.len())
                {
                    return Err(err("a compressed relay ends its stream or stalls the inflater"));
                }
                if out.len() > 64 << 20 {
                    return Err(err("a compressed relay inflates past 64 MiB"));
                }
            }
        }
        Ok(())
    }
}

pub fn err(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// Connect and upgrade. Returns the stream and bytes read past the 101
/// response (a server may speak first). For socket.io, also completes the
/// engine.io open and the namespace connect.
pub async fn connect(addr: SocketAddr, path: &str, proto: Proto, key: [u8; 4]) -> io::Result<(TcpStream, Vec<u8>)> {
    let stream = TcpStream::connect(addr).await?;
    upgrade(stream, addr, path, proto, key).await
}

/// [`connect`] on a stream already connected to `addr`.
pub async fn upgrade(
    mut stream: TcpStream,
    addr: SocketAddr,
    path: &str,
    proto: Proto,
    key: [u8; 4],
) -> io::Result<(TcpStream, Vec<u8>)> {
    stream.set_nodelay(true)?;
    let offer =
        if deflate_offered() { "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" } else { "" };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(err("server closed during the handshake"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 16 * 1024 {
            return Err(err("handshake response too long"));
        }
    };
    if !buf.starts_with(b"HTTP/1.1 101") {
        let head = String::from_utf8_lossy(&buf[..end.min(200)]).into_owned();
        return Err(err(format!("upgrade refused: {head:?}")));
    }
    if deflate_offered() && !buf[..end].to_ascii_lowercase().windows(18).any(|w| w == b"permessage-deflate") {
        return Err(err("the server declined permessage-deflate"));
    }
    let mut rest = buf.split_off(end);
    if proto == Proto::Sio {
        // engine.io open packet `0{...}`, then our namespace connect `40`.
        let open = read_data_frame(&mut stream, &mut rest).await?;
        if !open.starts_with(b"0{") {
            return Err(err(format!("socket.io: expected an open packet, got {:?}", String::from_utf8_lossy(&open))));
        }
        let mut out = Vec::new();
        encode_frame(&mut out, OP_TEXT, b"40", key);
        stream.write_all(&out).await?;
        // socketioxide pings (`2`) right after the open packet: answer `3`.
        let ack = loop {
            let packet = read_data_frame(&mut stream, &mut rest).await?;
            if packet != b"2" {
                break packet;
            }
            out.clear();
            encode_frame(&mut out, OP_TEXT, b"3", key);
            stream.write_all(&out).await?;
        };
        if !ack.starts_with(b"40") {
            return Err(err(format!("socket.io: expected a connect ack, got {:?}", String::from_utf8_lossy(&ack))));
        }
    }
    Ok((stream, rest))
}

/// Read one whole data frame during setup (control frames are answered or
/// fail the setup).
async fn read_data_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(frame) = parse_frame(buf)? {
            let payload = buf[frame.payload.clone()].to_vec();
            buf.drain(..frame.end);
            match frame.opcode {
                OP_TEXT | OP_BINARY => return Ok(payload),
                OP_PING | OP_PONG => continue,
                op => return Err(err(format!("unexpected opcode {op} during setup"))),
            }
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(err("server closed during setup"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One parsed server frame: opcode and where its payload is.
pub struct Frame {
    pub opcode: u8,
    /// RSV1: a compressed message (permessage-deflate offered).
    pub compressed: bool,
    pub payload: std::ops::Range<usize>,
    /// End of the frame in the buffer.
    pub end: usize,
}

/// Parse one server frame at the start of `buf`; `None` if incomplete.
/// Fragmented, masked or reserved-bit frames are errors: no server under
/// test sends them for these workloads, and the harness must not guess.
#[inline]
pub fn parse_frame(buf: &[u8]) -> io::Result<Option<Frame>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    let compressed = b0 & 0x70 == 0x40 && deflate_offered() && matches!(b0 & 0x0f, OP_TEXT | OP_BINARY);
    if b0 & 0x80 == 0 || (b0 & 0x70 != 0 && !compressed) {
        return Err(err(format!("unsupported frame: first byte {b0:#04x} (fragmented or RSV set)")));
    }
    if b1 & 0x80 != 0 {
        return Err(err("server sent a masked frame"));
    }
    let (len, header) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (n as usize, 2),
    };
    let end = header + len;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some(Frame { opcode: b0 & 0x0f, compressed, payload: header..end, end }))
}

/// Append a masked client frame.
#[inline]
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], key: [u8; 4]) {
    let start = out.len();
    encode_header(out, opcode, payload.len(), key);
    let at = out.len();
    out.extend_from_slice(payload);
    mask(&mut out[at..], key, 0);
    debug_assert!(out.len() > start);
}

/// Append a masked client frame header for a payload of `len` bytes.
#[inline]
pub fn encode_header(out: &mut Vec<u8>, opcode: u8, len: usize, key: [u8; 4]) {
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&key);
}

/// XOR `data` with the masking key, `data[0]` being payload byte `offset`.
#[inline]
pub fn mask(data: &mut [u8], key: [u8; 4], offset: usize) {
    let mut k = [0u8; 8];
    for (i, b) in k.iter_mut().enumerate() {
        *b = key[(offset + i) % 4];
    }
    let k = u64::from_ne_bytes(k);
    let len = data.len();
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ k;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    let rem = chunks.into_remainder();
    let base = len - rem.len();
    for (i, b) in rem.iter_mut().enumerate() {
        *b ^= key[(offset + base + i) % 4];
    }
}

/// A masking key per connection (the servers cannot tell; any key is valid).
pub fn key_for(index: usize) -> [u8; 4] {
    let x = (index as u32).wrapping_mul(0x9e37_79b9) ^ 0x5bd1_e995;
    x.to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_roundtrip_any_offset() {
        let key = [1, 2, 3, 4];
        let orig: Vec<u8> = (0..37u8).collect();
        let mut whole = orig.clone();
        mask(&mut whole, key, 0);
        let mut part = orig.clone();
        mask(&mut part[..5], key, 0);
        mask(&mut part[5..], key, 5);
        assert_eq!(whole, part);
        mask(&mut whole, key, 0);
        assert_eq!(whole, orig);
    }

    #[test]
    fn parse_lengths() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let mut f = vec![0x82];
            if len < 126 {
                f.push(len as u8);
            } else if len <= 0xffff {
                f.push(126);
                f.extend_from_slice(&(len as u16).to_be_bytes());
            } else {
                f.push(127);
                f.extend_from_slice(&(len as u64).to_be_bytes());
            }
            let header = f.len();
            f.resize(header + len, 7);
            let frame = parse_frame(&f).unwrap().unwrap();
            assert_eq!(frame.payload, header..header + len);
            assert!(parse_frame(&f[..f.len() - 1]).unwrap().is_none() || len == 0);
        }
    }
}
