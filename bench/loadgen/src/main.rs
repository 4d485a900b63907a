//! roomwire-loadgen: the load generator of `scripts/bench.sh`.
//!
//! ```text
//! roomwire-loadgen echo   --addr A --server-pid P [--path /] --conns N --size S [--warmup s] [--duration s]
//! roomwire-loadgen fanout --addr A --server-pid P --path '/ws/bench?roomId=r' [--proto ws|sio]
//!                         --members M --senders K --inflight W [--rate DELIVERIES_PER_S] [--size S]
//!                         [--addr2 B --redis-pid R]   (a cluster: members alternate between A and
//!                         B; P may list every node, `P1,P2`; R is the bus, measured apart)
//!                         [--fan-rooms N]   (members spread over N rooms, the path's `roomId`
//!                         value with the room's number appended; a delivery across rooms fails)
//!                         [--deflate 1]   (offer permessage-deflate as browsers do; the server
//!                         must accept it; compressed relays are inflated, then checked)
//! roomwire-loadgen idle   --addr A --server-pid P [--path ..] [--proto ws|sio] --conns C
//!                         [--own-rooms 1]   (each connection in a room of its own)
//!                         [--spoken 1]   (each connection, in a room of its own, sends one
//!                         message once connected, then goes quiet: memory after traffic)
//! roomwire-loadgen soak   --addr A --server-pid P --conns C --rooms R --duration s --rate MSG_PER_S
//!                         [--max-rss-mib M]   (the rw-soak server; see soak.rs)
//! roomwire-loadgen summarize RESULTS_FILE [--markdown]
//! ```
//!
//! One tokio `current_thread` runtime (pin it with `taskset`), raw TCP,
//! hand-encoded masked frames, server frames parsed in place. Every mode
//! checks what it receives and exits non-zero, printing no figure, when a
//! server drops, duplicates, misroutes or corrupts a message, closes a
//! connection, or stalls. A relayed fan-out frame must be, byte for byte,
//! the message as sent (or the same labelled with the room of `--path`, as
//! Alepha's servers label): the whole frame is checked, not a field. Results are one line, `RESULT key=value …`
//! (plus the `--tag` text), for `summarize`.

mod soak;
mod stats;
mod summarize;
mod wire;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use stats::Histogram;
use wire::{OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, Proto, err};

/// Command-line options (`--name value`).
struct Args {
    mode: String,
    addr: SocketAddr,
    /// A second node of the same cluster: odd members connect there.
    addr2: Option<SocketAddr>,
    /// The cluster's bus (redis-server), whose CPU is reported apart.
    redis_pid: String,
    path: String,
    proto: Proto,
    server_pid: String,
    conns: usize,
    size: usize,
    warmup: f64,
    duration: f64,
    members: usize,
    senders: usize,
    inflight: u32,
    rate: f64,
    tag: String,
    connect_parallel: usize,
    rooms: usize,
    max_rss_mib: u64,
    /// Fan-out: rooms the members are spread over.
    fan_rooms: usize,
    /// Fan-out: offer permessage-deflate.
    deflate: bool,
    /// Idle: every connection in a room of its own.
    own_rooms: bool,
    /// Idle: every connection sends one message (to its own room) before
    /// it goes quiet.
    spoken: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: roomwire-loadgen echo|fanout|idle|soak --addr HOST:PORT --server-pid PID [options]\n       \
         roomwire-loadgen summarize RESULTS [--markdown]\n(see the source header for the options)"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let mode = it.next().unwrap_or_else(|| usage());
    let mut a = Args {
        mode,
        addr: "127.0.0.1:9001".parse().unwrap_or_else(|_| usage()),
        addr2: None,
        redis_pid: String::new(),
        path: "/".into(),
        proto: Proto::Ws,
        server_pid: String::new(),
        conns: 100,
        size: 20,
        warmup: 1.0,
        duration: 5.0,
        members: 1000,
        senders: 10,
        inflight: 4,
        rate: 0.0,
        tag: String::new(),
        connect_parallel: 128,
        rooms: 100,
        max_rss_mib: 0,
        fan_rooms: 1,
        deflate: false,
        own_rooms: false,
        spoken: false,
    };
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| {
            eprintln!("{flag}: missing value");
            usage()
        });
        fn bad<E: std::fmt::Display>(flag: &str, value: &str, e: E) -> ! {
            eprintln!("{flag}: bad value {value:?}: {e}");
            usage()
        }
        match flag.as_str() {
            "--addr" => a.addr = value.parse().unwrap_or_else(|e| bad(&flag, &value, e)),
            "--addr2" => a.addr2 = Some(value.parse().unwrap_or_else(|e| bad(&flag, &value, e))),
            "--redis-pid" => a.redis_pid = value.clone(),
            "--path" => a.path = value.clone(),
            "--proto" => {
                a.proto = match value.as_str() {
                    "ws" => Proto::Ws,
                    "sio" => Proto::Sio,
                    _ => usage(),
                }
            }
            "--server-pid" => a.server_pid = value.clone(),
            "--conns" => a.conns = value.parse().unwrap_or_else(|e| bad(&flag, &value, e)),
            "--size" => a.size = value.parse().unwrap_or_else(|e| bad(&flag, &value, e)),
            "--warmup" => a.warmup = value.parse().unwrap_or_else(|e| bad(&flag, &value, e)),
            "--duration" => a.duration = value.parse().unwrap_or_else(|e| bad(&flag, &value, e)),
            "--members" => a.members = value.parse().unwrap_or_else(|e| bad(&flag, &value, e)),
            "--senders" => a.senders = value.parse().unwrap_or_else(|e| bad(&flag, &value, e)),
            "--inflight" => a.inflight = value.parse().unwrap_or_else(|e| bad(&flag, &value, e)),
            "--rate" => a.rate = value.parse().unwrap_or_else(|e| bad(&flag, &value, e)),
            "--tag" => a.tag = value.clone(),
            "--connect-parallel" => a.connect_parallel = value.parse().unwrap_or_else(|e| bad(&flag, &value, e)),
            "--rooms" => a.rooms = value.parse().unwrap_or_else(|e| bad(&flag, &value, e)),
            "--fan-rooms" => a.fan_rooms = value.parse().unwrap_or_else(|e| bad(&flag, &value, e)),
            "--deflate" => a.deflate = value != "0",
            "--own-rooms" => a.own_rooms = value != "0",
            "--spoken" => a.spoken = value != "0",
            "--max-rss-mib" => a.max_rss_mib = value.parse().unwrap_or_else(|e| bad(&flag, &value, e)),
            _ => {
                eprintln!("unknown option {flag}");
                usage()
            }
        }
    }
    if a.deflate && a.mode != "fanout" {
        eprintln!("--deflate: fan-out only");
        usage()
    }
    if (a.spoken || a.own_rooms) && a.mode != "idle" {
        eprintln!("--spoken, --own-rooms: idle only");
        usage()
    }
    // A message to a room of one is delivered to no one: the server's work
    // is the same for every connection.
    a.own_rooms |= a.spoken;
    wire::offer_deflate(a.deflate);
    if a.server_pid.is_empty() && a.mode != "summarize" {
        eprintln!("--server-pid is required (server CPU and memory are read from /proc)");
        usage()
    }
    a
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("summarize") {
        let file = std::env::args().nth(2).unwrap_or_else(|| usage());
        let markdown = std::env::args().any(|a| a == "--markdown");
        match summarize::run(&file, markdown) {
            Ok(()) => return,
            Err(e) => {
                eprintln!("summarize: {e}");
                std::process::exit(1)
            }
        }
    }
    let args = parse_args();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1)
        }
    };
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&rt, async {
        match args.mode.as_str() {
            "echo" => echo(&args).await,
            "fanout" => fanout(&args).await,
            "idle" => idle(&args).await,
            "soak" => soak::soak(&args).await,
            _ => usage(),
        }
    });
    match result {
        Ok(line) => {
            let tag = if args.tag.is_empty() { String::new() } else { format!(" {}", args.tag) };
            println!("RESULT{tag} {line}");
        }
        Err(e) => {
            let tag = if args.tag.is_empty() { String::new() } else { format!(" [{}]", args.tag) };
            eprintln!("loadgen FAILED{tag}: {e}");
            std::process::exit(1)
        }
    }
}

/// Connect `n` clients, `parallel` at a time.
/// `path` for a member of room `room` of `rooms`: the `roomId` value with
/// the room's number appended (the path itself for one room).
fn room_path(path: &str, room: usize, rooms: usize) -> String {
    if rooms <= 1 {
        return path.to_owned();
    }
    match path.find("roomId=") {
        Some(at) => {
            let end = path[at..].find('&').map_or(path.len(), |e| at + e);
            format!("{}{room}{}", &path[..end], &path[end..])
        }
        None => path.to_owned(),
    }
}

async fn connect_all(args: &Args, n: usize, first_index: usize) -> io::Result<Vec<(TcpStream, Vec<u8>)>> {
    connect_rooms(args, n, first_index, 1).await
}

/// Connect `n` members, member `i` to room `i % rooms`.
async fn connect_rooms(
    args: &Args,
    n: usize,
    first_index: usize,
    rooms: usize,
) -> io::Result<Vec<(TcpStream, Vec<u8>)>> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let batch = args.connect_parallel.min(n - i);
        let handles: Vec<_> = (0..batch)
            .map(|j| {
                let index = first_index + i + j;
                let addr = match args.addr2 {
                    Some(second) if index % 2 == 1 => second,
                    _ => args.addr,
                };
                let (path, proto) = (room_path(&args.path, index % rooms.max(1), rooms), args.proto);
                let key = wire::key_for(index);
                tokio::task::spawn_local(async move {
                    tokio::time::timeout(Duration::from_secs(10), wire::connect(addr, &path, proto, key)).await
                })
            })
            .collect();
        for h in handles {
            let r = h.await.map_err(|e| err(format!("connect task: {e}")))?;
            out.push(r.map_err(|_| err("connect timed out"))??);
        }
        i += batch;
    }
    Ok(out)
}

/// Snapshot of the CPU counters at one instant.
struct CpuMark {
    at: Instant,
    server: u64,
    me: u64,
}

impl CpuMark {
    fn take(pid: &str) -> io::Result<Self> {
        Ok(Self { at: Instant::now(), server: stats::cpu_ns(pid)?, me: stats::cpu_ns("self")? })
    }
}

/// Sleep `secs`, failing early if a task reported an error.
async fn watch(secs: f64, error: &RefCell<Option<String>>) -> io::Result<()> {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        if let Some(e) = error.borrow().clone() {
            return Err(err(e));
        }
        let left = end.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_millis(50))).await;
    }
    match error.borrow().clone() {
        Some(e) => Err(err(e)),
        None => Ok(()),
    }
}

/// A connection's read side: a buffer with unprocessed bytes `start..end`.
struct ReadBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    fn new(leftover: Vec<u8>, capacity: usize) -> Self {
        let end = leftover.len();
        let mut buf = leftover;
        buf.resize(capacity.max(end * 2), 0);
        Self { buf, start: 0, end }
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Read more from `stream`; error on end of stream.
    async fn fill(&mut self, stream: &mut TcpStream) -> io::Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.buf.len() {
                let len = self.buf.len() * 2;
                self.buf.resize(len, 0);
            }
        }
        let n = stream.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(err("server closed the TCP connection"));
        }
        self.end += n;
        Ok(())
    }
}

/// Describe a close frame's payload.
fn close_text(payload: &[u8]) -> String {
    if payload.len() >= 2 {
        let code = u16::from_be_bytes([payload[0], payload[1]]);
        format!("server closed the connection: {code} {:?}", String::from_utf8_lossy(&payload[2..]))
    } else {
        "server closed the connection (no code)".into()
    }
}

// ---------------------------------------------------------------- echo --

struct EchoShared {
    stop: Cell<bool>,
    measuring: Cell<bool>,
    done: Cell<u64>,
    hist: RefCell<Histogram>,
    error: RefCell<Option<String>>,
}

async fn echo(args: &Args) -> io::Result<String> {
    if args.size < 12 {
        return Err(err("--size must be at least 12 (sequence number and connection id)"));
    }
    let conns = connect_all(args, args.conns, 0).await?;
    let shared = Rc::new(EchoShared {
        stop: Cell::new(false),
        measuring: Cell::new(false),
        done: Cell::new(0),
        hist: RefCell::default(),
        error: RefCell::new(None),
    });
    let epoch = Instant::now();
    let handles: Vec<JoinHandle<()>> = conns
        .into_iter()
        .enumerate()
        .map(|(i, (stream, rest))| {
            let shared = shared.clone();
            let size = args.size;
            tokio::task::spawn_local(async move {
                if let Err(e) = echo_conn(i, stream, rest, size, &shared, epoch).await {
                    shared.error.borrow_mut().get_or_insert(format!("echo connection {i}: {e}"));
                }
            })
        })
        .collect();
    watch(args.warmup, &shared.error).await?;
    let start = CpuMark::take(&args.server_pid)?;
    let done0 = shared.done.get();
    shared.measuring.set(true);
    watch(args.duration, &shared.error).await?;
    let end = CpuMark::take(&args.server_pid)?;
    let msgs = shared.done.get() - done0;
    shared.measuring.set(false);
    shared.stop.set(true);
    // Every connection finishes its message in flight, or the server lost one.
    let deadline = Instant::now() + Duration::from_secs(10);
    for (i, h) in handles.into_iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, h).await {
            Ok(_) => {}
            Err(_) => return Err(err(format!("connection {i}: its echo never came back (lost message)"))),
        }
    }
    if let Some(e) = shared.error.borrow().clone() {
        return Err(err(e));
    }
    if msgs == 0 {
        return Err(err("no message echoed in the window"));
    }
    let secs = end.at.duration_since(start.at).as_secs_f64();
    let server_cpu = (end.server - start.server) as f64 / 1e9;
    let gen_cpu = (end.me - start.me) as f64 / 1e9;
    let hist = shared.hist.borrow();
    Ok(format!(
        "mode=echo conns={} size={} msgs={msgs} secs={secs:.3} msg_per_s={:.0} server_cpu={:.3} \
         msg_per_core_s={:.0} gen_cpu={:.3} p50_us={} p99_us={}",
        args.conns,
        args.size,
        msgs as f64 / secs,
        server_cpu / secs,
        msgs as f64 / server_cpu.max(1e-9),
        gen_cpu / secs,
        hist.quantile(0.5),
        hist.quantile(0.99),
    ))
}

/// One closed-loop echo connection: one binary message of `size` bytes in
/// flight, carrying a sequence number and the connection's index; the echo
/// must come back byte for byte, in order, exactly once.
async fn echo_conn(
    index: usize,
    mut stream: TcpStream,
    leftover: Vec<u8>,
    size: usize,
    shared: &EchoShared,
    epoch: Instant,
) -> io::Result<()> {
    let key = wire::key_for(index);
    let mut expected: Vec<u8> = (0..size).map(|j| (j as u8).wrapping_mul(31).wrapping_add(index as u8)).collect();
    expected[8..12].copy_from_slice(&(index as u32).to_le_bytes());
    // Pre-encoded masked frame; only the sequence number is re-masked per message.
    let mut frame = Vec::with_capacity(size + 14);
    wire::encode_frame(&mut frame, OP_BINARY, &expected, key);
    let header = frame.len() - size;
    let mut rb = ReadBuf::new(leftover, (size + 14).max(16 * 1024) * 2);
    let mut seq = 0u64;
    while !shared.stop.get() {
        seq += 1;
        expected[..8].copy_from_slice(&seq.to_le_bytes());
        frame[header..header + 8].copy_from_slice(&seq.to_le_bytes());
        wire::mask(&mut frame[header..header + 8], key, 0);
        let sent = epoch.elapsed();
        stream.write_all(&frame).await?;
        loop {
            let parsed = wire::parse_frame(rb.pending())?;
            let Some(f) = parsed else {
                rb.fill(&mut stream).await?;
                continue;
            };
            let payload = &rb.buf[rb.start + f.payload.start..rb.start + f.payload.end];
            let opcode = f.opcode;
            match opcode {
                OP_BINARY => {
                    if payload != expected.as_slice() {
                        let got_seq = payload.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
                        return Err(err(format!(
                            "echo mismatch: expected message {seq} ({size} bytes), got {} bytes with sequence {got_seq:?} \
                             (duplicate, lost or corrupted message)",
                            payload.len()
                        )));
                    }
                    rb.start += f.end;
                    break;
                }
                OP_PING => {
                    let mut pong = Vec::with_capacity(payload.len() + 6);
                    wire::encode_frame(&mut pong, OP_PONG, payload, key);
                    rb.start += f.end;
                    stream.write_all(&pong).await?;
                }
                OP_PONG => rb.start += f.end,
                OP_CLOSE => return Err(err(close_text(payload))),
                OP_TEXT => return Err(err("echo of a binary message came back as text")),
                op => return Err(err(format!("unexpected opcode {op}"))),
            }
        }
        if shared.measuring.get() {
            let rtt = epoch.elapsed() - sent;
            shared.hist.borrow_mut().record(rtt.as_micros() as u64);
        }
        shared.done.set(shared.done.get() + 1);
    }
    if rb.start != rb.end {
        return Err(err(format!("{} unexpected bytes after the last echo (duplicate?)", rb.end - rb.start)));
    }
    Ok(())
}

// -------------------------------------------------------------- fanout --

/// A sender's messages not yet delivered to every other member, in order.
struct SenderState {
    /// Sequence number of `remaining[0]`.
    base: u64,
    /// Deliveries still due, per message in flight.
    remaining: VecDeque<u32>,
    /// Messages the sender may send now.
    credits: u32,
    next_seq: u64,
    notify: Rc<Notify>,
}

struct FanState {
    members: usize,
    /// Rooms the members are spread over (member `i` in room `i % rooms`).
    rooms: usize,
    senders: Vec<SenderState>,
    /// Next sequence number each member expects from each sender.
    expected: Vec<u64>,
    closed_loop: bool,
    hist: Histogram,
}

struct FanShared {
    state: RefCell<FanState>,
    /// What every relayed frame must be, byte for byte.
    expect: Expect,
    stop: Cell<bool>,
    measuring: Cell<bool>,
    deliveries: Cell<u64>,
    completed: Cell<u64>,
    /// Bytes of the frames received (compressed as they came).
    wire_bytes: Cell<u64>,
    /// Frames that came compressed.
    compressed: Cell<u64>,
    error: RefCell<Option<String>>,
    epoch: Instant,
}

const FIELD: &[u8] = b"\"p\":\"";

/// The exact frames a relay may send: the message as sent, or (a server
/// labelling relays with the room, as Alepha's does) the same with the
/// room's `__alephaRoom` member before its closing brace; nothing else.
struct Expect {
    proto: Proto,
    size: usize,
    /// Per room, `,"__alephaRoom":"<room>"}` for the room of its path, if
    /// the path names one.
    labels: Vec<Option<Vec<u8>>>,
    /// Where the expected message is written (no allocation per delivery:
    /// the generator must not become the bottleneck).
    scratch: RefCell<Vec<u8>>,
}

impl Expect {
    fn new(proto: Proto, size: usize, path: &str, rooms: usize) -> Self {
        let labels = (0..rooms.max(1))
            .map(|room| {
                let path = room_path(path, room, rooms);
                let name =
                    path.split_once('?').map_or("", |(_, q)| q).split('&').find_map(|p| p.strip_prefix("roomId="));
                name.map(|name| format!(",\"__alephaRoom\":\"{name}\"}}").into_bytes())
            })
            .collect();
        Self { proto, size, labels, scratch: RefCell::new(Vec::with_capacity(size + 64)) }
    }

    /// Whether `payload` is exactly message `(sender, seq, micros)`, as a
    /// member of `room` receives it.
    fn matches(&self, payload: &[u8], room: usize, sender: usize, seq: u64, micros: u64) -> bool {
        let mut sent = self.scratch.borrow_mut();
        sent.clear();
        encode_message(&mut sent, self.proto, sender, seq, micros, self.size);
        if payload == sent.as_slice() {
            return true;
        }
        match (self.labels.get(room).and_then(Option::as_ref), self.proto, sent.split_last()) {
            (Some(label), Proto::Ws, Some((b'}', body))) => {
                payload.len() == body.len() + label.len() && payload.starts_with(body) && payload.ends_with(label)
            }
            _ => false,
        }
    }
}

/// The `p` field: `SSSSS.NNNNNNNNNN.TTTTTTTTTTTTTT` then padding.
fn encode_message(out: &mut Vec<u8>, proto: Proto, sender: usize, seq: u64, micros: u64, size: usize) {
    let start = out.len();
    if proto == Proto::Sio {
        out.extend_from_slice(b"42[\"m\",");
    }
    out.extend_from_slice(b"{\"p\":\"");
    push_digits(out, sender as u64, 5);
    out.push(b'.');
    push_digits(out, seq, 10);
    out.push(b'.');
    push_digits(out, micros, 14);
    let tail: &[u8] = if proto == Proto::Sio { b"\"}]" } else { b"\"}" };
    // Padding: prose, from a place that differs per message, so that a
    // compressing server meets text that compresses as chat does.
    let mut at = (seq as usize * 7 + sender * 13) % PROSE.len();
    while out.len() - start + tail.len() < size {
        let want = size - (out.len() - start + tail.len());
        let piece = &PROSE[at..(at + want).min(PROSE.len())];
        out.extend_from_slice(piece);
        at = (at + piece.len()) % PROSE.len();
    }
    out.extend_from_slice(tail);
}

/// The padding of every message (plain ASCII: no escapes in JSON).
const PROSE: &[u8] = b"the north room was quiet until the kettle started to sing and someone asked \
who had moved the map of the harbour again; three of us looked up, two shrugged, and the cat on \
the windowsill kept counting boats as if the tide depended on it. by noon the queue for the \
printer reached the stairs, the build had failed twice for reasons nobody could name, and the \
lunch order was still missing one soup. ";

fn push_digits(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let at = out.len();
    out.resize(at + width, b'0');
    for i in (0..width).rev() {
        out[at + i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

fn parse_digits(b: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u64;
    }
    Some(v)
}

/// (sender, seq, micros) of a relayed message.
fn parse_message(payload: &[u8]) -> Option<(usize, u64, u64)> {
    let head = &payload[..payload.len().min(48)];
    let at = head.windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len();
    let f = payload.get(at..at + 31)?;
    if f[5] != b'.' || f[16] != b'.' {
        return None;
    }
    Some((parse_digits(&f[..5])? as usize, parse_digits(&f[6..16])?, parse_digits(&f[17..31])?))
}

async fn fanout(args: &Args) -> io::Result<String> {
    let (m, k) = (args.members, args.senders);
    if m < 2 || k == 0 || k > m || k >= 100_000 {
        return Err(err("need 2+ members and 1..=members senders"));
    }
    let r = args.fan_rooms.max(1);
    if m < 2 * r || k < r {
        return Err(err("need 2+ members and 1+ sender per room"));
    }
    let conns = connect_rooms(args, m, 0, r).await?;
    // Every member is in the room (the server may still be registering the
    // last ones when their 101 arrives; a cluster's nodes subscribing to
    // the room on their bus): give it a moment.
    tokio::time::sleep(Duration::from_millis(if args.addr2.is_some() { 1000 } else { 300 })).await;
    let closed_loop = args.rate <= 0.0;
    let senders = (0..k)
        .map(|_| SenderState {
            base: 0,
            remaining: VecDeque::new(),
            credits: if closed_loop { args.inflight } else { 0 },
            next_seq: 0,
            notify: Rc::new(Notify::new()),
        })
        .collect();
    let shared = Rc::new(FanShared {
        expect: Expect::new(args.proto, args.size, &args.path, r),
        state: RefCell::new(FanState {
            members: m,
            rooms: r,
            senders,
            expected: vec![0; m * k],
            closed_loop,
            hist: Histogram::default(),
        }),
        stop: Cell::new(false),
        measuring: Cell::new(false),
        deliveries: Cell::new(0),
        completed: Cell::new(0),
        wire_bytes: Cell::new(0),
        compressed: Cell::new(0),
        error: RefCell::new(None),
        epoch: Instant::now(),
    });
    let mut handles = Vec::with_capacity(m + 1);
    for (i, (stream, rest)) in conns.into_iter().enumerate() {
        let shared = shared.clone();
        let notify = (i < k).then(|| shared.state.borrow().senders[i].notify.clone());
        let (proto, size) = (args.proto, args.size);
        handles.push(tokio::task::spawn_local(async move {
            if let Err(e) = fan_conn(i, stream, rest, notify, proto, size, &shared).await {
                shared.error.borrow_mut().get_or_insert(format!("member {i}: {e}"));
            }
        }));
    }
    if !closed_loop {
        // Offered load: `rate` deliveries/s, that is rate/(m-1) messages/s,
        // spread over the senders round robin.
        let shared = shared.clone();
        let per_s = args.rate / (m - 1) as f64;
        handles.push(tokio::task::spawn_local(async move {
            let start = Instant::now();
            let mut issued = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            while !shared.stop.get() {
                tick.tick().await;
                let due = (start.elapsed().as_secs_f64() * per_s) as u64;
                let mut state = shared.state.borrow_mut();
                while issued < due {
                    let s = (issued % k as u64) as usize;
                    state.senders[s].credits += 1;
                    state.senders[s].notify.notify_one();
                    issued += 1;
                }
                let backlog: usize = state.senders.iter().map(|s| s.remaining.len() + s.credits as usize).sum();
                if backlog > 100_000 {
                    drop(state);
                    shared.error.borrow_mut().get_or_insert("the server does not sustain the offered rate".into());
                    return;
                }
            }
        }));
    }
    watch(args.warmup, &shared.error).await?;
    let start = CpuMark::take(&args.server_pid)?;
    let redis_start = if args.redis_pid.is_empty() { 0 } else { stats::cpu_ns(&args.redis_pid)? };
    let (d0, c0, w0, z0) =
        (shared.deliveries.get(), shared.completed.get(), shared.wire_bytes.get(), shared.compressed.get());
    shared.measuring.set(true);
    watch(args.duration, &shared.error).await?;
    let end = CpuMark::take(&args.server_pid)?;
    // The server's memory while every member is connected and busy (the
    // first PID of a cluster's list).
    let rss_kib = stats::rss_kib(args.server_pid.split(',').next().unwrap_or_default()).unwrap_or(0);
    let redis_cpu =
        if args.redis_pid.is_empty() { 0.0 } else { (stats::cpu_ns(&args.redis_pid)? - redis_start) as f64 / 1e9 };
    let (deliveries, completed) = (shared.deliveries.get() - d0, shared.completed.get() - c0);
    let (wire_bytes, compressed) = (shared.wire_bytes.get() - w0, shared.compressed.get() - z0);
    if args.deflate && compressed == 0 {
        return Err(err("permessage-deflate was agreed but no relay came compressed"));
    }
    shared.measuring.set(false);
    shared.stop.set(true);
    // Drain: every message sent must reach every other member.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(e) = shared.error.borrow().clone() {
            return Err(err(e));
        }
        let missing: u64 =
            shared.state.borrow().senders.iter().flat_map(|s| s.remaining.iter()).map(|&r| r as u64).sum();
        if missing == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(err(format!("{missing} deliveries never arrived (lost by the server)")));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Late duplicates would show up now.
    watch(0.3, &shared.error).await?;
    for h in &handles {
        h.abort();
    }
    let secs = end.at.duration_since(start.at).as_secs_f64();
    let server_cpu = (end.server - start.server) as f64 / 1e9;
    let gen_cpu = (end.me - start.me) as f64 / 1e9;
    if deliveries == 0 {
        return Err(err("no delivery in the window"));
    }
    let deliv_per_s = deliveries as f64 / secs;
    if !closed_loop && deliv_per_s < 0.9 * args.rate {
        return Err(err(format!("offered {:.0} deliveries/s, the server delivered only {deliv_per_s:.0}", args.rate)));
    }
    let state = shared.state.borrow();
    let redis = if args.redis_pid.is_empty() {
        String::new()
    } else {
        format!(" redis_cpu={:.3} redis_us_per_msg={:.3}", redis_cpu / secs, redis_cpu * 1e6 / completed.max(1) as f64)
    };
    Ok(format!(
        "mode=fanout members={m} senders={k} inflight={} rate={} msgs={completed} deliveries={deliveries} secs={secs:.3} \
         deliv_per_s={deliv_per_s:.0} server_cpu={:.3} us_per_delivery={:.3} gen_cpu={:.3} p50_us={} p99_us={} \
         wire_bytes_per_delivery={:.1} rss_kib={rss_kib}{redis}",
        if closed_loop { args.inflight.to_string() } else { "-".into() },
        args.rate,
        server_cpu / secs,
        server_cpu * 1e6 / deliveries as f64,
        gen_cpu / secs,
        state.hist.quantile(0.5),
        state.hist.quantile(0.99),
        wire_bytes as f64 / deliveries as f64,
    ))
}

/// One room member: reads and checks every relayed message; a sender also
/// writes its messages when it has credits.
async fn fan_conn(
    index: usize,
    mut stream: TcpStream,
    leftover: Vec<u8>,
    notify: Option<Rc<Notify>>,
    proto: Proto,
    size: usize,
    shared: &FanShared,
) -> io::Result<()> {
    let key = wire::key_for(index);
    let mut rb = ReadBuf::new(leftover, 64 * 1024);
    let mut out = Vec::with_capacity(4096);
    let mut msg = Vec::with_capacity(size + 64);
    let mut inflater = wire::Inflater::for_connection();
    let mut inflated = Vec::with_capacity(size + 64);
    loop {
        // Write what is due: messages (a sender with credits), pongs.
        if notify.is_some() && !shared.stop.get() {
            let mut state = shared.state.borrow_mut();
            let (members, rooms) = (state.members, state.rooms);
            // The other members of the sender's room.
            let room = index % rooms;
            let others = (members / rooms + usize::from(room < members % rooms) - 1) as u32;
            let s = &mut state.senders[index];
            while s.credits > 0 {
                s.credits -= 1;
                let seq = s.next_seq;
                s.next_seq += 1;
                s.remaining.push_back(others);
                msg.clear();
                let micros = shared.epoch.elapsed().as_micros() as u64;
                encode_message(&mut msg, proto, index, seq, micros, size);
                wire::encode_frame(&mut out, OP_TEXT, &msg, key);
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        tokio::select! {
            biased;
            filled = rb.fill(&mut stream) => filled?,
            () = async { match &notify { Some(n) => n.notified().await, None => std::future::pending().await } } => continue,
        }
        while let Some(f) = wire::parse_frame(rb.pending())? {
            let mut payload = &rb.buf[rb.start + f.payload.start..rb.start + f.payload.end];
            shared.wire_bytes.set(shared.wire_bytes.get() + f.end as u64);
            if f.compressed {
                let Some(inflater) = inflater.as_mut() else {
                    return Err(err("a compressed frame without permessage-deflate"));
                };
                inflater.inflate(payload, &mut inflated)?;
                payload = &inflated;
                shared.compressed.set(shared.compressed.get() + 1);
            }
            match f.opcode {
                OP_TEXT | OP_BINARY => {
                    if proto == Proto::Sio && payload == b"2" {
                        wire::encode_frame(&mut out, OP_TEXT, b"3", key);
                    } else {
                        deliver(index, payload, shared)?;
                    }
                }
                OP_PING => wire::encode_frame(&mut out, OP_PONG, payload, key),
                OP_PONG => {}
                OP_CLOSE => return Err(err(close_text(payload))),
                op => return Err(err(format!("unexpected opcode {op}"))),
            }
            rb.start += f.end;
        }
    }
}

/// Check and count one delivery to `member`.
fn deliver(member: usize, payload: &[u8], shared: &FanShared) -> io::Result<()> {
    let shown = || String::from_utf8_lossy(&payload[..payload.len().min(120)]).into_owned();
    let Some((sender, seq, micros)) = parse_message(payload) else {
        return Err(err(format!("unexpected message {:?}", shown())));
    };
    let mut guard = shared.state.borrow_mut();
    let state = &mut *guard;
    let rooms = state.rooms;
    if !shared.expect.matches(payload, member % rooms, sender, seq, micros) {
        return Err(err(format!("corrupt relay (not the message as sent, or the wrong room): {:?}", shown())));
    }
    let k = state.senders.len();
    if sender >= k {
        return Err(err(format!("message from unknown sender {sender}")));
    }
    if sender % rooms != member % rooms {
        return Err(err(format!(
            "member {member} of room {} received message {seq} of sender {sender} of room {} (misrouted across rooms)",
            member % rooms,
            sender % rooms
        )));
    }
    if sender == member {
        return Err(err(format!("sender {sender} received its own message {seq} (misrouted)")));
    }
    let expected = &mut state.expected[member * k + sender];
    if seq != *expected {
        let what = if seq < *expected { "duplicate" } else { "gap: lost message(s)" };
        return Err(err(format!("from sender {sender}: got message {seq}, expected {} ({what})", *expected)));
    }
    *expected += 1;
    let s = &mut state.senders[sender];
    let slot = seq.checked_sub(s.base).and_then(|i| s.remaining.get_mut(i as usize));
    let Some(slot) = slot else {
        return Err(err(format!("message {seq} of sender {sender} was never sent, or already complete")));
    };
    *slot -= 1;
    let mut done = 0;
    while s.remaining.front() == Some(&0) {
        s.remaining.pop_front();
        s.base += 1;
        done += 1;
    }
    if done > 0 {
        if state.closed_loop {
            s.credits += done;
            s.notify.notify_one();
        }
        shared.completed.set(shared.completed.get() + done as u64);
    }
    shared.deliveries.set(shared.deliveries.get() + 1);
    if shared.measuring.get() {
        let now = shared.epoch.elapsed().as_micros() as u64;
        state.hist.record(now.saturating_sub(micros));
    }
    Ok(())
}

// ---------------------------------------------------------------- idle --

async fn idle(args: &Args) -> io::Result<String> {
    const WARM: usize = 50;
    let rooms = if args.own_rooms { WARM + args.conns } else { 1 };
    let mut held = connect_rooms(args, WARM, 0, rooms).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = stats::rss_kib(&args.server_pid)?;
    let started = Instant::now();
    let mut connected = connect_rooms(args, args.conns, WARM, rooms).await?;
    if args.spoken {
        let mut out = Vec::new();
        let mut message = Vec::new();
        for (i, (stream, _)) in connected.iter_mut().enumerate() {
            let index = WARM + i;
            message.clear();
            out.clear();
            encode_message(&mut message, args.proto, index, 0, 0, args.size);
            wire::encode_frame(&mut out, OP_TEXT, &message, wire::key_for(index));
            stream.write_all(&out).await?;
        }
    }
    held.append(&mut connected);
    let connect_secs = started.elapsed().as_secs_f64();
    // Let every connection task reach its idle wait, and a runtime with a
    // garbage collector settle.
    tokio::time::sleep(Duration::from_secs_f64(args.warmup.max(1.0))).await;
    let after = stats::rss_kib(&args.server_pid)?;
    // Still connected, and usable? A server that dropped idle connections
    // (a close frame, a reset, an end of stream) has freed them: every
    // connection must answer a ping once more.
    let mut closed = 0;
    for (i, (stream, leftover)) in held.iter_mut().enumerate() {
        if !answers_ping(stream, leftover, wire::key_for(i)).await {
            closed += 1;
        }
    }
    if closed > 0 {
        return Err(err(format!("{closed} idle connections were closed by the server, or no longer answer")));
    }
    let per_conn = (after as f64 - before as f64) * 1024.0 / args.conns as f64;
    Ok(format!(
        "mode=idle conns={} own_rooms={} spoken={} rss_before_kib={before} rss_after_kib={after} bytes_per_conn={per_conn:.0} connect_secs={connect_secs:.2}",
        args.conns,
        u8::from(args.own_rooms),
        u8::from(args.spoken)
    ))
}

/// Whether the connection answers a ping with its pong within 2 s (a
/// server's own pings meanwhile are answered; its other frames skipped).
async fn answers_ping(stream: &mut TcpStream, leftover: &mut Vec<u8>, key: [u8; 4]) -> bool {
    const PROBE: &[u8] = b"still there?";
    let mut out = Vec::new();
    wire::encode_frame(&mut out, OP_PING, PROBE, key);
    if stream.write_all(&out).await.is_err() {
        return false;
    }
    let mut buf = std::mem::take(leftover);
    let answered = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            while let Ok(Some(f)) = wire::parse_frame(&buf) {
                let payload = buf[f.payload.clone()].to_vec();
                buf.drain(..f.end);
                match f.opcode {
                    OP_PONG if payload == PROBE => return true,
                    OP_CLOSE => return false,
                    OP_PING => {
                        out.clear();
                        wire::encode_frame(&mut out, OP_PONG, &payload, key);
                        if stream.write_all(&out).await.is_err() {
                            return false;
                        }
                    }
                    _ => {}
                }
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    answered.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_roundtrip() {
        for proto in [Proto::Ws, Proto::Sio] {
            let mut out = Vec::new();
            encode_message(&mut out, proto, 7, 123, 4_567_890, 64);
            assert_eq!(out.len(), 64);
            assert_eq!(parse_message(&out), Some((7, 123, 4_567_890)));
        }
        let relabelled = br#"{"p":"00003.0000000009.00000000000012---","__alephaRoom":"r"}"#;
        assert_eq!(parse_message(relabelled), Some((3, 9, 12)));
        assert_eq!(parse_message(b"{}"), None);
    }

    #[test]
    fn relays_must_be_the_message_as_sent() {
        let expect = Expect::new(Proto::Ws, 40, "/ws/bench?roomId=r", 1);
        let mut sent = Vec::new();
        encode_message(&mut sent, Proto::Ws, 3, 9, 12, 40);
        assert!(expect.matches(&sent, 0, 3, 9, 12));
        let mut labelled = sent[..sent.len() - 1].to_vec();
        labelled.extend_from_slice(br#","__alephaRoom":"r"}"#);
        assert!(expect.matches(&labelled, 0, 3, 9, 12));
        let other_room = String::from_utf8(labelled.clone()).unwrap().replace("\"r\"}", "\"s\"}");
        assert!(!expect.matches(other_room.as_bytes(), 0, 3, 9, 12), "the wrong room");
        let mut cut = sent.clone();
        cut.remove(sent.len() - 3);
        assert!(!expect.matches(&cut, 0, 3, 9, 12), "padding lost");
        let mut extra = sent[..sent.len() - 1].to_vec();
        extra.extend_from_slice(br#","x":1}"#);
        assert!(!expect.matches(&extra, 0, 3, 9, 12), "a member added");
        let sio = Expect::new(Proto::Sio, 40, "/socket.io/?EIO=4", 1);
        let mut event = Vec::new();
        encode_message(&mut event, Proto::Sio, 1, 2, 3, 40);
        assert!(sio.matches(&event, 0, 1, 2, 3));
        let renamed = String::from_utf8(event).unwrap().replace("[\"m\"", "[\"n\"");
        assert!(!sio.matches(renamed.as_bytes(), 0, 1, 2, 3), "another event name");
        // Several rooms: each its own label.
        let rooms = Expect::new(Proto::Ws, 40, "/ws/bench?roomId=r&x=1", 3);
        let mut in_r2 = sent[..sent.len() - 1].to_vec();
        in_r2.extend_from_slice(br#","__alephaRoom":"r2"}"#);
        assert!(rooms.matches(&in_r2, 2, 3, 9, 12));
        assert!(!rooms.matches(&in_r2, 1, 3, 9, 12), "labelled with another room");
        assert_eq!(room_path("/ws/bench?roomId=r&x=1", 2, 3), "/ws/bench?roomId=r2&x=1");
        assert_eq!(room_path("/?roomId=r", 0, 4), "/?roomId=r0");
        assert_eq!(room_path("/?roomId=r", 0, 1), "/?roomId=r");
    }
}
