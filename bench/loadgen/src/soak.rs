//! `soak`: thousands of connections in rooms of the `rw-soak` server, with
//! members joining and leaving all the time, slow readers, readers that
//! stop, peers that vanish without a close, floods of tiny frames and a few
//! 1 MiB messages; every room message accounted for (`scripts/soak.sh`).
//!
//! Rooms and roles. Room `r0` is the big-message room: one sender (who also
//! sends the 1 MiB messages), three readers, a slow reader and a reader
//! that stops (its receive buffer shrunk to a few KiB). Every other room
//! has two senders, a slow reader, a peer that vanishes (never reads or
//! writes again, never closes), one room in ten a flooder (hundreds of
//! tiny frames that are not JSON, every 50 ms), and readers. Apart from
//! those, a twentieth of the connections churn: join a room, stay a moment,
//! close, again, until the traffic ends.
//!
//! What must hold, else the run fails:
//! * every sender, reader and flooder (the *keeping-up* members) receives
//!   each message of each other sender of its room exactly once, in the
//!   order it was sent, never its own, and is never closed;
//! * a slow reader either does the same or is closed with 1013 (or by
//!   keepalive, whose ping waits behind its backlog);
//! * a stopped reader and a vanished peer are closed by the server by the
//!   end (their memory released);
//! * every churn cycle is admitted (101);
//! * the server's RSS stays under `--max-rss-mib` (if given) all along.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::wire::{self, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, Proto, err};
use crate::{Args, stats};

/// Bytes of a 1 MiB-class message: under the server's 1 MiB limit with the
/// JSON around it.
const BIG: usize = 1_000_000;
/// Most violations described in the result (all are counted).
const SHOWN: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Sender,
    Reader,
    Slow,
    Stopped,
    Vanisher,
    Flooder,
}

impl Role {
    /// Must receive everything and never be closed.
    fn keeps_up(self) -> bool {
        matches!(self, Role::Sender | Role::Reader | Role::Flooder)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Traffic,
    Drain,
    Done,
}

/// One member connection's record.
struct Member {
    room: usize,
    role: Role,
    sender: Option<usize>,
    /// Per sender of its room: the next sequence number expected.
    next: HashMap<usize, u64>,
    /// How it ended, if the server ended it: the close code (0: none).
    closed: Option<u16>,
}

/// What every task writes into.
struct Book {
    phase: Cell<Phase>,
    sent: RefCell<Vec<u64>>,
    room_senders: Vec<Vec<usize>>,
    members: RefCell<Vec<Member>>,
    violations: Cell<u64>,
    shown: RefCell<Vec<String>>,
    delivered: Cell<u64>,
    churn_cycles: Cell<u64>,
    flood_frames: Cell<u64>,
}

impl Book {
    fn violation(&self, what: String) {
        self.violations.set(self.violations.get() + 1);
        let mut shown = self.shown.borrow_mut();
        if shown.len() < SHOWN {
            shown.push(what);
        }
    }

    /// Whether `member` has every message of every other sender of its room.
    fn complete(&self, member: &Member) -> bool {
        let sent = self.sent.borrow();
        self.room_senders[member.room]
            .iter()
            .filter(|&&s| Some(s) != member.sender)
            .all(|s| member.next.get(s).copied().unwrap_or(0) == sent[*s])
    }
}

fn room_path(room: usize) -> String {
    format!("/ws/soak?roomId=r{room}")
}

/// The roles of each room's members, and the churners' count.
fn plan(conns: usize, rooms: usize) -> io::Result<(Vec<Vec<Role>>, usize)> {
    if rooms < 2 {
        return Err(err("--rooms must be at least 2"));
    }
    let churners = conns / 20;
    let first = vec![Role::Sender, Role::Reader, Role::Reader, Role::Reader, Role::Slow, Role::Stopped];
    let per_room = (conns.saturating_sub(first.len() + churners)) / (rooms - 1);
    if per_room < 6 {
        return Err(err("too few connections for the rooms: at least 6 per room"));
    }
    let mut plan = vec![first];
    for r in 1..rooms {
        let mut roles = vec![Role::Sender, Role::Sender, Role::Slow, Role::Vanisher];
        if r % 10 == 1 {
            roles.push(Role::Flooder);
        }
        roles.resize(per_room, Role::Reader);
        plan.push(roles);
    }
    Ok((plan, churners))
}

pub async fn soak(args: &Args) -> io::Result<String> {
    let (plan, churners) = plan(args.conns, args.rooms)?;
    let mut room_senders = vec![Vec::new(); plan.len()];
    let mut members = Vec::new();
    let mut senders = 0;
    for (room, roles) in plan.iter().enumerate() {
        for &role in roles {
            let sender = (role == Role::Sender).then(|| {
                senders += 1;
                room_senders[room].push(senders - 1);
                senders - 1
            });
            members.push(Member { room, role, sender, next: HashMap::new(), closed: None });
        }
    }
    let book = Rc::new(Book {
        phase: Cell::new(Phase::Traffic),
        sent: RefCell::new(vec![0; senders]),
        room_senders,
        members: RefCell::new(members),
        violations: Cell::new(0),
        shown: RefCell::new(Vec::new()),
        delivered: Cell::new(0),
        churn_cycles: Cell::new(0),
        flood_frames: Cell::new(0),
    });
    let pid = args.server_pid.clone();
    let rss_start = stats::rss_kib(&pid)?;

    // Everyone in, before any message: from then on each keeping-up
    // member must see every message of its room.
    let started = Instant::now();
    let count = book.members.borrow().len();
    let mut streams = Vec::with_capacity(count);
    let mut i = 0;
    while i < count {
        let batch = args.connect_parallel.min(count - i);
        let handles: Vec<_> = (i..i + batch)
            .map(|m| {
                let (room, role) = {
                    let members = book.members.borrow();
                    (members[m].room, members[m].role)
                };
                let addr = args.addr;
                tokio::task::spawn_local(async move {
                    tokio::time::timeout(Duration::from_secs(20), open(addr, room, role, m)).await
                })
            })
            .collect();
        for h in handles {
            let opened = h.await.map_err(|e| err(format!("connect task: {e}")))?;
            streams.push(opened.map_err(|_| err("connect timed out"))??);
        }
        i += batch;
    }
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = stats::rss_kib(&pid)?;

    // Memory, sampled all along.
    let rss_max = Rc::new(Cell::new(rss_idle));
    let sampler = {
        let (book, rss_max, pid) = (book.clone(), rss_max.clone(), pid.clone());
        tokio::task::spawn_local(async move {
            while book.phase.get() != Phase::Done {
                if let Ok(kib) = stats::rss_kib(&pid) {
                    rss_max.set(rss_max.get().max(kib));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let mut tasks = Vec::new();
    let mut held = Vec::new();
    for (m, (stream, rest)) in streams.into_iter().enumerate() {
        let role = book.members.borrow()[m].role;
        match role {
            Role::Stopped | Role::Vanisher => held.push((m, stream)),
            _ => tasks.push(tokio::task::spawn_local(member(book.clone(), m, stream, rest, args.rate))),
        }
    }
    for c in 0..churners {
        tasks.push(tokio::task::spawn_local(churn(book.clone(), args.addr, args.rooms, c)));
    }

    let traffic = Duration::from_secs_f64(args.duration);
    tokio::time::sleep(traffic).await;
    book.phase.set(Phase::Drain);
    // Everything sent must arrive: wait for every member still reading
    // (a slow one catches up on its backlog meanwhile).
    let drained = Instant::now();
    let keeping_up_complete = |book: &Book| {
        book.members
            .borrow()
            .iter()
            .filter(|m| (m.role.keeps_up() || m.role == Role::Slow) && m.closed.is_none())
            .all(|m| book.complete(m))
    };
    while !keeping_up_complete(&book) && drained.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drain_secs = drained.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after_traffic = stats::rss_kib(&pid)?;

    // The peers that stopped or vanished must have been closed by now.
    let mut abandoned_closed = 0;
    for (m, mut stream) in held {
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            let mut sink = vec![0u8; 64 * 1024];
            loop {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => {}
                }
            }
        })
        .await
        .unwrap_or(false);
        let role = book.members.borrow()[m].role;
        if closed {
            abandoned_closed += 1;
        } else {
            book.violation(format!("member {m} ({role:?}) was still open at the end"));
        }
    }
    book.phase.set(Phase::Done);
    for t in tasks {
        let _ = t.await;
    }
    let _ = sampler.await;
    // Every connection is gone now (the tasks dropped theirs): what the
    // server holds once it has seen them end.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_end = stats::rss_kib(&pid)?;

    // The verdicts of the members that read.
    let (mut slow_1013, mut slow_closed, mut slow_complete) = (0, 0, 0);
    for (m, member) in book.members.borrow().iter().enumerate() {
        match (member.role, member.closed) {
            (Role::Stopped | Role::Vanisher, _) => {}
            (Role::Slow, Some(1013)) => slow_1013 += 1,
            (Role::Slow, Some(0)) => slow_closed += 1,
            (role, Some(code)) => {
                book.violation(format!("member {m} ({role:?}, room r{}) was closed ({code})", member.room));
            }
            (role, None) => {
                if book.complete(member) {
                    if role == Role::Slow {
                        slow_complete += 1;
                    }
                } else {
                    let sent = book.sent.borrow();
                    let missing: u64 = book.room_senders[member.room]
                        .iter()
                        .filter(|&&s| Some(s) != member.sender)
                        .map(|s| sent[*s] - member.next.get(s).copied().unwrap_or(0))
                        .sum();
                    book.violation(format!(
                        "member {m} ({role:?}, room r{}) is missing {missing} messages",
                        member.room
                    ));
                }
            }
        }
    }
    let messages: u64 = book.sent.borrow().iter().sum();
    let rss_max = rss_max.get();
    let line = format!(
        "mode=soak conns={} rooms={} churners={churners} traffic_secs={:.0} connect_secs={connect_secs:.1} \
         drain_secs={drain_secs:.1} messages={messages} deliveries={} churn_cycles={} flood_frames={} \
         slow_1013={slow_1013} slow_closed_other={slow_closed} slow_complete={slow_complete} \
         abandoned_closed={abandoned_closed} rss_start_kib={rss_start} rss_idle_kib={rss_idle} rss_max_kib={rss_max} \
         rss_after_traffic_kib={rss_after_traffic} rss_end_kib={rss_end} violations={}",
        count + churners,
        args.rooms,
        args.duration,
        book.delivered.get(),
        book.churn_cycles.get(),
        book.flood_frames.get(),
        book.violations.get(),
    );
    if args.max_rss_mib > 0 && rss_max > args.max_rss_mib * 1024 {
        book.violation(format!("server RSS reached {rss_max} KiB, over the bound of {} MiB", args.max_rss_mib));
    }
    if book.violations.get() > 0 {
        return Err(err(format!("{line}\n  {}", book.shown.borrow().join("\n  "))));
    }
    Ok(line)
}

/// Connect member `m` of `room`; a reader that will stop gets a receive
/// buffer of a few KiB, so that the server's queue for it fills.
async fn open(addr: SocketAddr, room: usize, role: Role, m: usize) -> io::Result<(TcpStream, Vec<u8>)> {
    let socket = TcpSocket::new_v4()?;
    if role == Role::Stopped {
        socket.set_recv_buffer_size(4096)?;
    }
    let stream = socket.connect(addr).await?;
    wire::upgrade(stream, addr, &room_path(room), Proto::Ws, wire::key_for(m)).await
}

/// A member that reads (and answers pings), and sends if it is a sender
/// or a flooder, until the run is done.
async fn member(book: Rc<Book>, m: usize, mut stream: TcpStream, mut buf: Vec<u8>, rate: f64) {
    let (role, room, sender) = {
        let members = book.members.borrow();
        (members[m].role, members[m].room, members[m].sender)
    };
    let key = wire::key_for(m);
    let period = match role {
        Role::Sender => Duration::from_secs_f64(1.0 / rate.max(0.01)),
        Role::Flooder => Duration::from_millis(50),
        _ => Duration::from_secs(3600),
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut check = tokio::time::interval(Duration::from_millis(100));
    // The big-message room's sender sends its 1 MiB messages first, 100 ms
    // apart: a reader that keeps up takes each long before the next, one
    // that stopped overflows its queue.
    let mut big_left = if room == 0 && role == Role::Sender { 8 } else { 0 };
    let mut big_tick = tokio::time::interval(Duration::from_millis(100));
    let mut out = Vec::new();
    // A slow reader takes 16 KiB every 10 ms: 1.6 MB/s, well behind a
    // burst of 1 MiB messages.
    let mut chunk = vec![0u8; if role == Role::Slow { 16 * 1024 } else { 64 * 1024 }];
    loop {
        tokio::select! {
            read = stream.read(&mut chunk) => {
                let n = match read {
                    Ok(0) | Err(_) => {
                        finish(&book, m, 0);
                        return;
                    }
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                match take_frames(&book, m, &mut buf, &mut out, key) {
                    Ok(None) => {}
                    Ok(Some(code)) => {
                        finish(&book, m, code);
                        return;
                    }
                    Err(e) => {
                        book.violation(format!("member {m}: {e}"));
                        finish(&book, m, 0);
                        return;
                    }
                }
                if !out.is_empty() {
                    if stream.write_all(&out).await.is_err() {
                        finish(&book, m, 0);
                        return;
                    }
                    out.clear();
                }
                if role == Role::Slow {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            _ = big_tick.tick(), if book.phase.get() == Phase::Traffic && big_left > 0 => {
                big_left -= 1;
                if !send(&book, sender, &mut stream, &mut out, key, BIG).await {
                    finish(&book, m, 0);
                    return;
                }
            }
            _ = tick.tick(), if book.phase.get() == Phase::Traffic && matches!(role, Role::Sender | Role::Flooder) => {
                out.clear();
                if sender.is_some() {
                    if !send(&book, sender, &mut stream, &mut out, key, 48).await {
                        finish(&book, m, 0);
                        return;
                    }
                    continue;
                }
                // Tiny frames that are not JSON: dropped by the server.
                for _ in 0..200 {
                    wire::encode_frame(&mut out, OP_TEXT, b"x", key);
                }
                book.flood_frames.set(book.flood_frames.get() + 200);
                if stream.write_all(&out).await.is_err() {
                    finish(&book, m, 0);
                    return;
                }
                out.clear();
            }
            _ = check.tick() => {
                if book.phase.get() == Phase::Done {
                    return;
                }
            }
        }
    }
}

/// Send sender's next message, padded with `pad` bytes; false if the
/// stream failed.
async fn send(
    book: &Book,
    sender: Option<usize>,
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    key: [u8; 4],
    pad: usize,
) -> bool {
    let Some(sender) = sender else { return true };
    let seq = book.sent.borrow()[sender];
    let payload = format!(r#"{{"p":"S{sender}#{seq}#{}"}}"#, "x".repeat(pad));
    out.clear();
    wire::encode_frame(out, OP_TEXT, payload.as_bytes(), key);
    // Counted before it is written: a message half-written when the run
    // ends is still one that must arrive.
    book.sent.borrow_mut()[sender] += 1;
    let written = stream.write_all(out).await.is_ok();
    out.clear();
    written
}

/// Record how the server ended member `m` (`0`: without a close code).
fn finish(book: &Book, m: usize, code: u16) {
    if book.phase.get() != Phase::Done {
        book.members.borrow_mut()[m].closed = Some(code);
    }
}

/// Handle the whole frames at the front of `buf`: account for messages,
/// queue pongs into `out`. `Some(code)`: the server closed.
fn take_frames(book: &Book, m: usize, buf: &mut Vec<u8>, out: &mut Vec<u8>, key: [u8; 4]) -> io::Result<Option<u16>> {
    let mut at = 0;
    let mut closed = None;
    while let Some(frame) = wire::parse_frame(&buf[at..])? {
        let payload = &buf[at + frame.payload.start..at + frame.payload.end];
        match frame.opcode {
            OP_TEXT => account(book, m, payload),
            OP_PING => wire::encode_frame(out, OP_PONG, payload, key),
            OP_PONG => {}
            OP_CLOSE => {
                closed = Some(if payload.len() >= 2 { u16::from_be_bytes([payload[0], payload[1]]) } else { 0 });
                at += frame.end;
                break;
            }
            op => return Err(err(format!("unexpected opcode {op}"))),
        }
        at += frame.end;
    }
    buf.drain(..at);
    Ok(closed)
}

/// One room message received by member `m`: the next of its sender, never
/// its own.
fn account(book: &Book, m: usize, payload: &[u8]) {
    let Some((sender, seq)) = parse(payload) else {
        book.violation(format!(
            "member {m}: unreadable message {:?}",
            String::from_utf8_lossy(&payload[..payload.len().min(80)])
        ));
        return;
    };
    book.delivered.set(book.delivered.get() + 1);
    let mut members = book.members.borrow_mut();
    let member = &mut members[m];
    if member.sender == Some(sender) {
        drop(members);
        book.violation(format!("member {m} received its own message {seq}"));
        return;
    }
    if !book.room_senders[member.room].contains(&sender) {
        let room = member.room;
        drop(members);
        book.violation(format!("member {m} (room r{room}) received sender {sender}'s message of another room"));
        return;
    }
    let next = member.next.entry(sender).or_insert(0);
    if seq == *next {
        *next += 1;
    } else {
        let expected = *next;
        drop(members);
        book.violation(format!("member {m}: sender {sender}'s message {seq} came when {expected} was due"));
    }
}

/// `{"p":"S<sender>#<seq>#...` → (sender, seq).
fn parse(payload: &[u8]) -> Option<(usize, u64)> {
    let at = payload.windows(6).position(|w| w == br#""p":"S"#)? + 6;
    let rest = payload.get(at..)?;
    let mut fields = rest.splitn(3, |&b| b == b'#');
    let sender = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
    let seq = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
    Some((sender, seq))
}

/// A connection that joins a room, stays a moment, closes cleanly, and
/// again, until the traffic ends. Each cycle must be admitted.
async fn churn(book: Rc<Book>, addr: SocketAddr, rooms: usize, c: usize) {
    let mut state = (c as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut random = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let key = wire::key_for(1_000_000 + c);
    while book.phase.get() == Phase::Traffic {
        let room = 1 + random(rooms as u64 - 1) as usize;
        let (mut stream, mut buf) = match wire::connect(addr, &room_path(room), Proto::Ws, key).await {
            Ok(opened) => opened,
            Err(e) => {
                book.violation(format!("churner {c}: not admitted to r{room}: {e}"));
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let stay = Duration::from_millis(200 + random(1800));
        let until = Instant::now() + stay;
        let mut chunk = vec![0u8; 16 * 1024];
        let mut out = Vec::new();
        // Read (answering pings) while it stays; messages are not counted.
        while let Ok(Ok(n)) = tokio::time::timeout_at(until.into(), stream.read(&mut chunk)).await {
            if n == 0 {
                book.violation(format!("churner {c}: closed by the server in r{room}"));
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut at = 0;
            while let Ok(Some(frame)) = wire::parse_frame(&buf[at..]) {
                if frame.opcode == OP_PING {
                    wire::encode_frame(&mut out, OP_PONG, &buf[at + frame.payload.start..at + frame.payload.end], key);
                }
                at += frame.end;
            }
            buf.drain(..at);
            if !out.is_empty() {
                let _ = stream.write_all(&out).await;
                out.clear();
            }
        }
        out.clear();
        wire::encode_frame(&mut out, OP_CLOSE, &1000u16.to_be_bytes(), key);
        let _ = stream.write_all(&out).await;
        // Until the server's close (or the end of the stream).
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        book.churn_cycles.set(book.churn_cycles.get() + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_relayed_messages() {
        assert_eq!(parse(br#"{"p":"S12#345#xxxx","__alephaRoom":"r3"}"#), Some((12, 345)));
        assert_eq!(parse(br#"{"p":"x"}"#), None);
    }

    #[test]
    fn plans_every_connection() {
        let (plan, churners) = plan(10_000, 100).unwrap();
        let members: usize = plan.iter().map(Vec::len).sum();
        assert!(members + churners <= 10_000 && members + churners > 9_900, "{members} {churners}");
        assert_eq!(plan[0].iter().filter(|r| **r == Role::Stopped).count(), 1);
    }
}
