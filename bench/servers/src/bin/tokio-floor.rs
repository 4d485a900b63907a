//! The idle floor of a tokio server with one task per connection: what any
//! such WebSocket server must hold per waiting connection before it keeps
//! any state of its own. Not a WebSocket server: it answers the opening
//! handshake and the pings of the idle cell, and nothing else.
//!
//! Between reads a connection's task holds only its `TcpStream`; the read
//! buffer lives on the stack of a plain function called once the socket is
//! readable. So the figure is tokio's own: the task and the reactor's
//! registration (and the kernel's socket, which every server pays).
//! Assumes a ping arrives whole in one read, as the idle cell sends it.

use std::io;

use roomwire_tokio::roomwire_core::handshake::{parse_request, write_accept};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const OP_PING: u8 = 0x9;
const OP_CLOSE: u8 = 0x8;
const OP_PONG: u8 = 0xA;

#[tokio::main(flavor = "current_thread")]
async fn main() -> io::Result<()> {
    let addr = roomwire_bench_servers::addr();
    let listener = TcpListener::bind(&addr).await?;
    roomwire_bench_servers::ready(&addr);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let Ok(stream) = handshake(stream).await else { return };
            loop {
                if stream.readable().await.is_err() {
                    return;
                }
                match answer_ready(&stream) {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        });
    }
}

/// Read the request and answer `101`; the buffer is freed before the
/// connection waits.
async fn handshake(mut stream: TcpStream) -> io::Result<TcpStream> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        match parse_request(&buf, 8192) {
            Ok(Some((request, _))) => {
                // Written from the heap: a buffer on the future would
                // count in every idle task.
                let mut out = vec![0u8; 256];
                let n =
                    write_accept(&request.accept_key(), None, &[], &mut out).map_err(|_| io::ErrorKind::InvalidData)?;
                drop(buf);
                stream.write_all(&out[..n]).await?;
                return Ok(stream);
            }
            Ok(None) => {}
            Err(_) => return Err(io::ErrorKind::InvalidData.into()),
        }
    }
}

/// Answer every whole ping in what is readable now with its pong.
/// `Ok(false)`: the peer closed.
fn answer_ready(stream: &TcpStream) -> io::Result<bool> {
    let mut buf = [0u8; 512];
    let n = stream.try_read(&mut buf)?;
    let mut input = &buf[..n];
    if input.is_empty() {
        return Ok(false);
    }
    // Client frames: FIN|opcode, MASK|len (control payloads are at most
    // 125 bytes), 4 key bytes, the masked payload.
    while let [head, len, rest @ ..] = input {
        let (opcode, len) = (head & 0x0F, usize::from(len & 0x7F));
        let Some((key, rest)) = rest.split_first_chunk::<4>() else { break };
        let Some((payload, rest)) = rest.split_at_checked(len) else { break };
        match opcode {
            OP_PING => {
                let mut pong = [0u8; 2 + 125];
                pong[0] = 0x80 | OP_PONG;
                pong[1] = len as u8;
                for (i, (out, byte)) in pong[2..2 + len].iter_mut().zip(payload).enumerate() {
                    *out = byte ^ key[i % 4];
                }
                stream.try_write(&pong[..2 + len])?;
            }
            OP_CLOSE => return Ok(false),
            _ => {}
        }
        input = rest;
    }
    Ok(true)
}
