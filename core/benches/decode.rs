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
//!   per-call overhead. `parse+proto_mask` is the same with the prototype
//!   `proto_apply_mask_aligned` (below) in place of `apply_mask`.
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
//!
//! # `mask/*` groups
//!
//! `apply_mask` alone, in place, on the payload where the decoder meets it
//! (inside a copy of the frame, 6/8/8/14 bytes after a 16-aligned start),
//! against the same bytes 16-aligned, against fastwebsockets' public
//! `unmask`, and against two safe prototypes for core (`proto_apply_mask`,
//! `proto_apply_mask_aligned`, below). BENCHMARKS.md has the findings.
//!
//! # Min mode
//!
//! `ROOMWIRE_BENCH_MIN=300 cargo bench -p roomwire-core --bench decode`
//! runs every function above without criterion and prints its best batch
//! mean: see [`min_batches`].

// Benches are not wire-facing: the crate's panic-freedom lints guard the
// library, not this harness, which asserts freely.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::future::Future;
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use roomwire_core::decoder::{Decoded, DecoderLimits, FrameDecoder, MessageKind, Role};
use roomwire_core::frame::apply_mask;
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

/// Decode the frame in `buf` (already holding the wire bytes), handing each
/// payload piece to `f`.
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
/// is the decoder's per-call overhead. With `proto_apply_mask_aligned` it
/// shows what the prototype mask saves in place.
#[inline(always)]
fn parse_and_mask(buf: &mut [u8], mask: impl Fn(&mut [u8], [u8; 4], usize) -> usize) -> &[u8] {
    let (header, at) = roomwire_core::FrameHeader::parse(buf).unwrap().unwrap();
    let payload = &mut buf[at..at + header.payload_len as usize];
    mask(payload, header.mask.unwrap(), 0);
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

    /// The next at most `max` bytes of the frame, restarting it when done.
    fn next(&mut self, max: usize) -> &'static [u8] {
        if self.pos == self.wire.len() {
            self.pos = 0;
        }
        let n = (self.wire.len() - self.pos).min(max);
        let chunk = &self.wire[self.pos..self.pos + n];
        self.pos += n;
        chunk
    }
}

impl Read for Replay {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let chunk = self.next(buf.len());
        buf[..chunk.len()].copy_from_slice(chunk);
        Ok(chunk.len())
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
        // `put_slice` copies into the unfilled part without initializing
        // the rest (`initialize_unfilled` would zero all spare capacity of
        // fastwebsockets' buffer on every read).
        let chunk = self.get_mut().next(buf.remaining());
        buf.put_slice(chunk);
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
/// contract and the same word loop, safe code only (the crate forbids
/// `unsafe`). One difference: the key is rotated to the phase with
/// `u32::rotate_right` instead of `<[u8; 4]>::rotate_left`, which with a
/// runtime `phase` compiles to out-of-line `memcpy`/`memmove` calls.
#[inline]
pub fn proto_apply_mask(buf: &mut [u8], key: [u8; 4], phase: usize) -> usize {
    let phase = phase & 3;
    // Byte i of `rotated` is key[(i + phase) % 4], on any endianness.
    let rotated = u32::from_le_bytes(key).rotate_right(8 * phase as u32).to_le_bytes();
    // The rotated key twice, in memory order, on any endianness.
    let word = u64::from(u32::from_ne_bytes(rotated)) * 0x1_0000_0001;
    let (words, tail) = buf.as_chunks_mut::<8>();
    for w in words {
        *w = (u64::from_ne_bytes(*w) ^ word).to_ne_bytes();
    }
    for (b, k) in tail.iter_mut().zip(rotated.iter().cycle()) {
        *b ^= k;
    }
    (phase + buf.len()) & 3
}

/// [`proto_apply_mask`] with its bulk aligned: the first up-to-31 bytes,
/// until `buf` sits on a 32-byte boundary, go through the word/byte path,
/// so the 16- (or 32-) byte vector loads and stores of the body never
/// straddle a cache line. A payload starts 2 + 0/2/8 + 4 bytes into a
/// frame, so in a 16-aligned read buffer it is never 16-aligned.
/// `align_offset` is safe; a useless answer only costs speed.
#[inline]
pub fn proto_apply_mask_aligned(buf: &mut [u8], key: [u8; 4], phase: usize) -> usize {
    if buf.len() < 64 {
        return proto_apply_mask(buf, key, phase);
    }
    let head = buf.as_ptr().align_offset(32).min(buf.len());
    let (head, body) = buf.split_at_mut(head);
    let phase = proto_apply_mask(head, key, phase);
    proto_apply_mask(body, key, phase)
}

type MaskFn = fn(&mut [u8], [u8; 4], usize) -> usize;

fn fast_unmask(buf: &mut [u8], key: [u8; 4], _phase: usize) -> usize {
    fastwebsockets::unmask(buf, key);
    0
}

fn bench_mask(c: &mut Criterion) {
    // Correctness of the prototypes against roomwire's own, all phases,
    // lengths around the chunk boundaries and every alignment.
    let candidates: [(&str, MaskFn); 2] =
        [("prototype", proto_apply_mask), ("prototype-aligned", proto_apply_mask_aligned)];
    let data: Vec<u8> = (0..300u16).map(|i| (i * 7) as u8).collect();
    for offset in 0..32 {
        for len in 0..data.len() - offset {
            for phase in 0..4 {
                let mut a = data.clone();
                let pa = apply_mask(&mut a[offset..offset + len], MASK, phase);
                for (name, f) in candidates {
                    let mut b = data.clone();
                    let pb = f(&mut b[offset..offset + len], MASK, phase);
                    assert_eq!((&a, pa), (&b, pb), "{name} offset {offset} len {len} phase {phase}");
                }
            }
        }
    }
    // (name, function, phase, where): `where` 0 is the payload inside a copy
    // of the frame, where the decoder unmasks it (6, 8, 8 and 14 bytes into
    // a 16-aligned allocation, so never 16-aligned); 8 is 8 bytes further
    // (16-aligned for the 1 KiB and 16 KiB frames); 1 is the payload alone
    // in its own, 16-aligned, allocation.
    let contenders: [(&str, MaskFn, usize, usize); 10] = [
        ("roomwire", apply_mask, 0, 0),
        ("roomwire-phase1", apply_mask, 1, 0),
        ("roomwire-16-aligned", apply_mask, 0, 1),
        ("roomwire-at+8", apply_mask, 0, 8),
        ("prototype", proto_apply_mask, 0, 0),
        ("prototype-phase1", proto_apply_mask, 1, 0),
        ("prototype-16-aligned", proto_apply_mask, 0, 1),
        ("prototype-aligned", proto_apply_mask_aligned, 0, 0),
        ("prototype-aligned-phase1", proto_apply_mask_aligned, 1, 0),
        ("fastwebsockets", fast_unmask, 0, 0),
    ];
    for (label, len) in SIZES {
        let mut frame = Wire::new(len).frame;
        let at = frame.len() - len;
        let mut alone = Wire::new(len).payload;
        assert_eq!(alone.as_ptr() as usize % 16, 0, "allocation not 16-aligned");
        let mut runner = Runner::new(c, "mask", label, len);
        for (name, f, phase, place) in contenders {
            let buf: &mut [u8] = match place {
                1 => &mut alone,
                off => &mut frame[at + off..],
            };
            runner.run(name, || {
                f(black_box(&mut *buf), black_box(MASK), black_box(phase));
            });
        }
    }
}

// ------------------------------------------------------------------ timing

/// `ROOMWIRE_BENCH_MIN=<batches>`: instead of criterion's estimates, print
/// for each function the best (minimum) mean time per iteration over that
/// many batches. On a busy shared machine the minimum is far less sensitive
/// to preemption than criterion's mean; BENCHMARKS.md uses it to check the
/// criterion numbers. A batch covers 256 KiB of payload (at least one
/// iteration), so costs that recur every so many frames are averaged in
/// rather than dodged: tungstenite walks its 128 KiB input buffer forward
/// frame by frame, zero-filling what is left of it on each read, and starts
/// over when it is used up. Filters are ignored in this mode.
fn min_batches() -> Option<u32> {
    std::env::var("ROOMWIRE_BENCH_MIN").ok().map(|v| v.parse().unwrap_or(300))
}

/// One group: criterion's, or the min-of-batches timer.
struct Runner<'a> {
    group: Option<BenchmarkGroup<'a, WallTime>>,
    id: String,
    len: usize,
}

impl<'a> Runner<'a> {
    fn new(c: &'a mut Criterion, kind: &str, label: &str, len: usize) -> Self {
        let id = format!("{kind}/{label}");
        let group = min_batches().is_none().then(|| {
            let mut group = c.benchmark_group(&id);
            group.throughput(Throughput::Bytes(len as u64));
            if len >= 1 << 20 {
                group.sample_size(30);
            }
            group
        });
        Self { group, id, len }
    }

    fn run(&mut self, name: &str, mut step: impl FnMut()) {
        let Some(group) = &mut self.group else {
            let batches = min_batches().unwrap_or(300);
            let per_batch = ((256 << 10) / self.len).max(1);
            let mut best = f64::MAX;
            for _ in 0..batches {
                let start = std::time::Instant::now();
                for _ in 0..per_batch {
                    step();
                }
                best = best.min(start.elapsed().as_nanos() as f64 / per_batch as f64);
            }
            let gib_s = self.len as f64 / best / 1.073_741_824;
            println!("{:<40} min {best:>12.1} ns {gib_s:>8.2} GiB/s", format!("{}/{name}", self.id));
            return;
        };
        group.bench_function(name, |b| b.iter(&mut step));
    }
}

// ------------------------------------------------------------------ decode

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
            assert_eq!(parse_and_mask(&mut buf, apply_mask), expected, "parse+apply_mask {label}");
            buf.copy_from_slice(frame);
            assert_eq!(parse_and_mask(&mut buf, proto_apply_mask_aligned), expected, "parse+proto_mask {label}");
            poll_once(fast_read(&mut fast, |p| assert_eq!(p, expected, "fastwebsockets {label}")));
            rt.block_on(fast_read(&mut fast_rt, |p| assert_eq!(p, expected, "fastwebsockets-tokio {label}")));
        }

        let mut runner = Runner::new(c, "decode", label, len);
        runner.run("memcpy", || {
            buf.copy_from_slice(black_box(frame));
            black_box(&mut buf);
        });
        runner.run("roomwire", || {
            buf.copy_from_slice(black_box(frame));
            roomwire_decode(&mut dec, &mut buf, |p| {
                black_box(p);
            });
        });
        runner.run("roomwire-connection", || {
            buf.copy_from_slice(black_box(frame));
            connection_decode(&mut conn, &mut buf, |p| {
                black_box(p);
            });
        });
        runner.run("parse+apply_mask", || {
            buf.copy_from_slice(black_box(frame));
            black_box(parse_and_mask(&mut buf, apply_mask));
        });
        runner.run("parse+proto_mask", || {
            buf.copy_from_slice(black_box(frame));
            black_box(parse_and_mask(&mut buf, proto_apply_mask_aligned));
        });
        runner.run("tungstenite", || {
            black_box(tungstenite_read(&mut tung));
        });
        runner.run("tungstenite-8KiB-buf", || {
            black_box(tungstenite_read(&mut tung_8k));
        });
        runner.run("fastwebsockets", || {
            poll_once(fast_read(&mut fast, |p| {
                black_box(p);
            }))
        });
        runner.run("fastwebsockets-tokio", || {
            rt.block_on(fast_read(&mut fast_rt, |p| {
                black_box(p);
            }))
        });
    }
}

criterion_group!(benches, bench_decode, bench_mask);
criterion_main!(benches);
