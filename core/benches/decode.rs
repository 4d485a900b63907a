//! Frame decode + unmask throughput, server role (client→server frames are
//! masked, so every byte is unmasked), against tungstenite and fastwebsockets.
//!
//! Run: `cargo bench -p roomwire-core --bench decode`
//! (see BENCHMARKS.md at the repository root for results and the exact flags).
//!
//! # What is measured
//!
//! For each payload size (20 B, 1 KiB, 16 KiB, 1 MiB) one binary, final,
//! masked frame is built once (`Wire`). One iteration receives that frame:
//! the wire bytes are copied once into memory the contender may mutate (the
//! unmasking is in place), the header is parsed, the payload unmasked and
//! handed to `black_box`. Every contender does exactly one copy of the wire
//! bytes per iteration:
//!
//! * `memcpy`: only that copy, into a preallocated buffer: the ceiling.
//! * `roomwire`: the same copy, then `FrameDecoder::decode` until the data
//!   piece with `message_end`.
//! * `roomwire-connection`: the same copy, then `Connection::handle_input` on
//!   an open server connection (handshake done once, outside the timing).
//! * `parse+apply_mask` (not a contender, a floor): the same copy, then
//!   `FrameHeader::parse` on the buffer and `apply_mask` on the payload,
//!   with no decoder state machine; its gap to `roomwire` is the decoder's
//!   per-call overhead.
//! * `tungstenite`: `WebSocket::read` (what a tungstenite server calls to
//!   receive) over an in-memory `Read + Write` stream; the copy is the
//!   stream's `read` into tungstenite's own input buffer. Its config is the
//!   default but for the limits, so `read_buffer_size` is 128 KiB:
//!   tungstenite zero-fills up to that much of its input buffer before each
//!   `read` (`FrameCodec::read_in`), which dominates small frames.
//!   `tungstenite-8KiB-buf` is the same with `read_buffer_size` 8 KiB, a
//!   tuning a user could pick, to show the comparison does not hinge on it.
//! * `fastwebsockets`: `WebSocket::read_frame` (auto_close/auto_pong
//!   defaults) over an in-memory `AsyncRead + AsyncWrite` stream; the copy is
//!   the stream's `poll_read` into fastwebsockets' own buffer. The in-memory
//!   stream is always ready, so the future completes on its first poll: it is
//!   polled once with a no-op waker, no runtime at all, the least overhead an
//!   async API can have. `fastwebsockets-tokio` is the same read driven by
//!   `Runtime::block_on` of a tokio current_thread runtime, per iteration, to
//!   show what a runtime entry costs on top.
//!
//! Every contender is a long-lived connection reading frame after frame: the
//! decoder / socket is built once and reused, so its buffers are in steady
//! state (tungstenite and fastwebsockets reclaim their `BytesMut` once the
//! previous payload is dropped). The in-memory streams replay the frame:
//! one `read` never crosses the end of the frame and the next read starts it
//! again, so each `read`/`read_frame` sees exactly one frame.
//!
//! All limits are 2 MiB. Before timing, each contender's output is checked
//! against the unmasked payload.

// Benches are not wire-facing: the crate's panic-freedom lints guard the
// library, not this harness, which asserts freely.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::future::Future;
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use roomwire_core::decoder::{Decoded, DecoderLimits, FrameDecoder, MessageKind, Role};
use roomwire_core::handshake::ClientRequest;
use roomwire_core::{Config, Connection, Event, Instant, Message};

const LIMIT: usize = 2 << 20;
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const SIZES: [(&str, usize); 4] = [("20B", 20), ("1KiB", 1024), ("16KiB", 16 * 1024), ("1MiB", 1 << 20)];

/// One masked client→server binary frame, and its unmasked payload.
struct Wire {
    frame: Vec<u8>,
    payload: Vec<u8>,
}

impl Wire {
    /// Built by hand (not with roomwire's encoder or mask) so the check
    /// below is independent of the code under test.
    fn new(len: usize) -> Self {
        // Deterministic, non-repeating bytes (xorshift).
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let payload: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let mut frame = vec![0x82]; // FIN, binary
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        frame.extend_from_slice(&MASK);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        Self { frame, payload }
    }
}

// ---------------------------------------------------------------- roomwire

fn limits() -> DecoderLimits {
    DecoderLimits { max_message_size: LIMIT as u64, max_fragments: 4096 }
}

/// Decode the frame in `buf` (already holding the wire bytes); returns the
/// payload length seen (and checks it with `f`).
fn roomwire_decode(dec: &mut FrameDecoder, buf: &mut [u8], mut f: impl FnMut(&[u8])) {
    let mut at = 0;
    loop {
        let (used, out) = dec.decode(&mut buf[at..]);
        at += used;
        match out {
            Some(Decoded::Data { kind: MessageKind::Binary, payload, message_end, .. }) => {
                f(payload);
                if message_end {
                    return;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Not a contender: the floor under `roomwire`, what is left of a decode
/// with no decoder state machine at all (parse the header in place with
/// `FrameHeader::parse`, unmask with `apply_mask`). The gap to `roomwire`
/// is the decoder's per-call overhead.
fn parse_and_mask(buf: &mut [u8]) -> &[u8] {
    let (header, at) = roomwire_core::FrameHeader::parse(buf).unwrap().unwrap();
    let payload = &mut buf[at..at + header.payload_len as usize];
    roomwire_core::frame::apply_mask(payload, header.mask.unwrap(), 0);
    payload
}

fn open_server() -> Connection {
    let now = Instant::ZERO;
    let config = Config { max_message_size: LIMIT as u64, ..Config::default() };
    let mut client = Connection::client(config, now, || [1, 2, 3, 4]);
    let mut server = Connection::server(config, now);
    let mut wire = [0u8; 512];
    let req = ClientRequest { host: "localhost", target: "/", protocols: &[], headers: &[] };
    let n = client.write_request(&req, &mut wire).unwrap();
    let got = server.handle_input(now, &mut wire[..n]);
    assert!(matches!(got.event, Some(Event::Request(_))));
    let n = server.accept(now, None, &[], &mut wire).unwrap();
    let got = client.handle_input(now, &mut wire[..n]);
    assert!(matches!(got.event, Some(Event::Open { .. })));
    // Sanity: the connection takes a client message.
    let n = client.send(Message::Binary(b"x"), &mut wire).unwrap();
    let got = server.handle_input(now, &mut wire[..n]);
    assert!(matches!(got.event, Some(Event::Data { payload: b"x", message_end: true, .. })));
    server
}

fn connection_decode(conn: &mut Connection, buf: &mut [u8], mut f: impl FnMut(&[u8])) {
    let mut at = 0;
    loop {
        let got = conn.handle_input(Instant::ZERO, &mut buf[at..]);
        at += got.consumed;
        match got.event {
            Some(Event::Data { kind: MessageKind::Binary, payload, message_end, .. }) => {
                f(payload);
                if message_end {
                    return;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

// ----------------------------------------------------- in-memory streams

/// Replays `wire` forever: each read copies the next bytes of the frame and
/// never crosses its end; a read at the end starts the frame again. Writes
/// are discarded (nothing is written for binary frames anyway).
struct Replay {
    wire: &'static [u8],
    pos: usize,
}

impl Replay {
    fn new(wire: &'static [u8]) -> Self {
        Self { wire, pos: 0 }
    }

    fn fill(&mut self, dst: &mut [u8]) -> usize {
        if self.pos == self.wire.len() {
            self.pos = 0;
        }
        let src = &self.wire[self.pos..];
        let n = src.len().min(dst.len());
        dst[..n].copy_from_slice(&src[..n]);
        self.pos += n;
        n
    }
}

impl Read for Replay {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.fill(buf))
    }
}

impl Write for Replay {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl tokio::io::AsyncRead for Replay {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // `initialize_unfilled` zeroes only never-initialized capacity, once.
        let n = this.fill(buf.initialize_unfilled());
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Replay {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

// ------------------------------------------------------------- tungstenite

type Tungstenite = tungstenite::WebSocket<Replay>;

/// `read_buffer_size: None` keeps tungstenite's default (128 KiB).
fn tungstenite_socket(wire: &'static [u8], read_buffer_size: Option<usize>) -> Tungstenite {
    let mut config =
        tungstenite::protocol::WebSocketConfig::default().max_message_size(Some(LIMIT)).max_frame_size(Some(LIMIT));
    if let Some(size) = read_buffer_size {
        config = config.read_buffer_size(size);
    }
    tungstenite::WebSocket::from_raw_socket(Replay::new(wire), tungstenite::protocol::Role::Server, Some(config))
}

fn tungstenite_read(ws: &mut Tungstenite) -> tungstenite::Bytes {
    match ws.read().unwrap() {
        tungstenite::Message::Binary(payload) => payload,
        other => panic!("unexpected {other:?}"),
    }
}

// ---------------------------------------------------------- fastwebsockets

type Fast = fastwebsockets::WebSocket<Replay>;

fn fast_socket(wire: &'static [u8]) -> Fast {
    let mut ws = fastwebsockets::WebSocket::after_handshake(Replay::new(wire), fastwebsockets::Role::Server);
    ws.set_max_message_size(LIMIT + 1); // it rejects `len >= max`
    ws
}

/// Poll a future that must be ready at once (the stream never blocks).
fn poll_once<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("in-memory read returned Pending"),
    }
}

async fn fast_read(ws: &mut Fast, f: impl FnOnce(&[u8])) {
    let frame = ws.read_frame().await.unwrap();
    assert!(frame.fin && frame.opcode == fastwebsockets::OpCode::Binary);
    f(&frame.payload);
}

// ------------------------------------------------- apply_mask prototype

/// A candidate replacement for `roomwire_core::frame::apply_mask`, same
/// contract, safe code only (the crate forbids `unsafe`). Differences:
///
/// * the key is rotated to the phase with `u32::rotate_right` instead of
///   `<[u8; 4]>::rotate_left`, which with a runtime `phase` compiles to
///   out-of-line `memcpy`/`memmove` calls;
/// * the body works on 32-byte chunks XORed with a 32-byte key pattern, a
///   shape LLVM turns into 16-byte (SSE2) or wider vector XORs without
///   relying on the loop vectoriser, then 8-byte words, then bytes;
/// * `#[inline]`, so small payloads don't pay a call and the constant
///   phase 0 of whole frames folds away.
#[inline]
pub fn proto_apply_mask(buf: &mut [u8], key: [u8; 4], phase: usize) -> usize {
    let phase = phase & 3;
    // Byte i of `rotated` is key[(i + phase) % 4], on any endianness.
    let rotated = u32::from_le_bytes(key).rotate_right(8 * phase as u32).to_le_bytes();
    let pattern: [u8; 32] = core::array::from_fn(|i| rotated[i & 3]);
    let (chunks, rest) = buf.as_chunks_mut::<32>();
    for chunk in chunks {
        for (b, k) in chunk.iter_mut().zip(pattern) {
            *b ^= k;
        }
    }
    // The rotated key twice, in memory order, on any endianness.
    let word = u64::from(u32::from_ne_bytes(rotated)) * 0x1_0000_0001;
    let (words, tail) = rest.as_chunks_mut::<8>();
    for w in words {
        *w = (u64::from_ne_bytes(*w) ^ word).to_ne_bytes();
    }
    for (b, k) in tail.iter_mut().zip(pattern) {
        *b ^= k;
    }
    (phase + buf.len()) & 3
}

fn bench_mask(c: &mut Criterion) {
    // Correctness of the prototype against roomwire's own, all phases and
    // lengths around the chunk boundaries.
    for len in 0..100 {
        for phase in 0..4 {
            let data: Vec<u8> = (0..len as u8).collect();
            let (mut a, mut b) = (data.clone(), data.clone());
            let pa = roomwire_core::frame::apply_mask(&mut a, MASK, phase);
            let pb = proto_apply_mask(&mut b, MASK, phase);
            assert_eq!((a, pa), (b, pb), "len {len} phase {phase}");
        }
    }
    for (label, len) in SIZES {
        let mut buf = Wire::new(len).payload;
        let mut group = c.benchmark_group(format!("mask/{label}"));
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function("roomwire", |b| {
            b.iter(|| roomwire_core::frame::apply_mask(black_box(&mut buf), black_box(MASK), black_box(0)))
        });
        group.bench_function("roomwire-phase1", |b| {
            b.iter(|| roomwire_core::frame::apply_mask(black_box(&mut buf), black_box(MASK), black_box(1)))
        });
        group.bench_function("prototype", |b| {
            b.iter(|| proto_apply_mask(black_box(&mut buf), black_box(MASK), black_box(0)))
        });
        group.bench_function("prototype-phase1", |b| {
            b.iter(|| proto_apply_mask(black_box(&mut buf), black_box(MASK), black_box(1)))
        });
        group.bench_function("fastwebsockets", |b| {
            b.iter(|| fastwebsockets::unmask(black_box(&mut buf), black_box(MASK)))
        });
        group.finish();
    }
}

// ------------------------------------------------------------------ groups

fn bench_decode(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for (label, len) in SIZES {
        let wire = Wire::new(len);
        let frame: &'static [u8] = Vec::leak(wire.frame.clone());
        let expected = wire.payload.as_slice();
        let mut buf = vec![0u8; frame.len()];

        let mut dec = FrameDecoder::new(Role::Server, limits());
        let mut conn = open_server();
        let mut tung = tungstenite_socket(frame, None);
        let mut tung_8k = tungstenite_socket(frame, Some(8 * 1024));
        let mut fast = fast_socket(frame);
        let mut fast_rt = fast_socket(frame);

        // Correctness, once, outside the timing: every contender yields the
        // unmasked payload (twice, to exercise the reused state).
        for _ in 0..2 {
            let mut got = Vec::new();
            buf.copy_from_slice(frame);
            roomwire_decode(&mut dec, &mut buf, |p| got.extend_from_slice(p));
            assert_eq!(got, expected, "roomwire {label}");
            got.clear();
            buf.copy_from_slice(frame);
            connection_decode(&mut conn, &mut buf, |p| got.extend_from_slice(p));
            assert_eq!(got, expected, "roomwire-connection {label}");
            assert_eq!(tungstenite_read(&mut tung), expected, "tungstenite {label}");
            assert_eq!(tungstenite_read(&mut tung_8k), expected, "tungstenite-8KiB-buf {label}");
            buf.copy_from_slice(frame);
            assert_eq!(parse_and_mask(&mut buf), expected, "parse+apply_mask {label}");
            poll_once(fast_read(&mut fast, |p| assert_eq!(p, expected, "fastwebsockets {label}")));
            rt.block_on(fast_read(&mut fast_rt, |p| assert_eq!(p, expected, "fastwebsockets-tokio {label}")));
        }

        let mut group = c.benchmark_group(format!("decode/{label}"));
        group.throughput(Throughput::Bytes(len as u64));
        if len >= 1 << 20 {
            group.sample_size(30);
        }
        group.bench_function("memcpy", |b| {
            b.iter(|| {
                buf.copy_from_slice(black_box(frame));
                black_box(&mut buf);
            })
        });
        group.bench_function("roomwire", |b| {
            b.iter(|| {
                buf.copy_from_slice(black_box(frame));
                roomwire_decode(&mut dec, &mut buf, |p| {
                    black_box(p);
                });
            })
        });
        group.bench_function("roomwire-connection", |b| {
            b.iter(|| {
                buf.copy_from_slice(black_box(frame));
                connection_decode(&mut conn, &mut buf, |p| {
                    black_box(p);
                });
            })
        });
        group.bench_function("parse+apply_mask", |b| {
            b.iter(|| {
                buf.copy_from_slice(black_box(frame));
                black_box(parse_and_mask(&mut buf));
            })
        });
        group.bench_function("tungstenite", |b| b.iter(|| black_box(tungstenite_read(&mut tung))));
        group.bench_function("tungstenite-8KiB-buf", |b| b.iter(|| black_box(tungstenite_read(&mut tung_8k))));
        group.bench_function("fastwebsockets", |b| {
            b.iter(|| {
                poll_once(fast_read(&mut fast, |p| {
                    black_box(p);
                }))
            })
        });
        group.bench_function("fastwebsockets-tokio", |b| {
            b.iter(|| {
                rt.block_on(fast_read(&mut fast_rt, |p| {
                    black_box(p);
                }))
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench_decode, bench_mask);
criterion_main!(benches);
