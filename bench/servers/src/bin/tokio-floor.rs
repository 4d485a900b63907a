//! Floors to read tokio servers' figures against; references, not peers,
//! and not WebSocket servers: they answer the opening handshake and what
//! the bench cells send, nothing else.
//!
//! - `tokio-floor ADDR`: the idle floor of a tokio server with one task per
//!   connection, what any such server holds per waiting connection before
//!   it keeps state of its own. Between reads a connection's task holds
//!   only its `TcpStream`; the read buffer lives on the stack of a plain
//!   function called once the socket is readable. So the figure is tokio's
//!   own: the task and the reactor's registration. It answers pings.
//! - `tokio-floor ADDR slab`: the idle floor on tokio's reactor without a
//!   task per connection: the connections sit in one slab, polled by one
//!   task through `poll_read_ready` with a waker per connection that names
//!   it (the design of an event loop of our own). Per connection: the
//!   reactor's registration, the stream's handle and its waker.
//! - `tokio-floor ADDR rooms`: the fan-out floor, one room of every
//!   connection: each text message is framed once and written to every
//!   other member with one `write` each, straight from the sender's task
//!   (no queue, no copy per member, no wake-up of the member's task). The
//!   CPU per delivery is the kernel's send plus the least of a loop. A
//!   member whose socket buffer is full misses the message (the cell then
//!   fails: at its rates none is).
//!
//! Assumes client frames are unfragmented, as the cells send them.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use roomwire_tokio::roomwire_core::frame::apply_mask;
use roomwire_tokio::roomwire_core::handshake::{parse_request, write_accept};
use roomwire_tokio::roomwire_core::{FrameHeader, Opcode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every connection of the rooms floor, by a slot that is freed on close.
type Members = Rc<RefCell<Vec<Option<Rc<TcpStream>>>>>;

fn main() -> io::Result<()> {
    let mode = std::env::args().nth(2).unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let addr = roomwire_bench_servers::addr();
        let listener = TcpListener::bind(&addr).await?;
        roomwire_bench_servers::ready(&addr);
        let members: Members = Rc::default();
        let slab = Rc::new(Slab::default());
        if mode == "slab" {
            tokio::task::spawn_local(slab.clone().run());
        }
        loop {
            let (stream, _) = listener.accept().await?;
            match mode.as_str() {
                "rooms" => tokio::task::spawn_local(member(stream, members.clone())),
                "slab" => {
                    let slab = slab.clone();
                    // The handshake in a task of its own, which ends once
                    // the connection is in the slab.
                    tokio::task::spawn_local(async move {
                        if let Ok(stream) = handshake(stream).await {
                            slab.insert(stream);
                        }
                    })
                }
                _ => tokio::task::spawn_local(idle(stream)),
            };
        }
    })
}

async fn idle(stream: TcpStream) {
    let Ok(stream) = handshake(stream).await else { return };
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match answer_ready(&stream) {
            Ok(true) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Ok(false) | Err(_) => return,
        }
    }
}

/// Connections polled by one task: each has a waker that, woken by the
/// reactor, queues its slot and wakes the task.
#[derive(Default)]
struct Slab {
    slots: RefCell<Vec<Option<(TcpStream, Waker)>>>,
    free: RefCell<Vec<usize>>,
    ready: Arc<Ready>,
}

#[derive(Default)]
struct Ready {
    slots: Mutex<Vec<usize>>,
    task: Mutex<Option<Waker>>,
}

/// The waker of one slot.
struct SlotWaker {
    slot: usize,
    ready: Arc<Ready>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.slots.lock().unwrap().push(self.slot);
        if let Some(task) = self.ready.task.lock().unwrap().as_ref() {
            task.wake_by_ref();
        }
    }
}

impl Slab {
    fn insert(&self, stream: TcpStream) {
        let mut slots = self.slots.borrow_mut();
        let slot = self.free.borrow_mut().pop().unwrap_or_else(|| {
            slots.push(None);
            slots.len() - 1
        });
        let waker = Waker::from(Arc::new(SlotWaker { slot, ready: self.ready.clone() }));
        slots[slot] = Some((stream, waker.clone()));
        // Polled once, which registers its interest.
        waker.wake();
    }

    async fn run(self: Rc<Self>) {
        poll_fn(|cx: &mut Context<'_>| {
            *self.ready.task.lock().unwrap() = Some(cx.waker().clone());
            let ready = std::mem::take(&mut *self.ready.slots.lock().unwrap());
            for slot in ready {
                let mut slots = self.slots.borrow_mut();
                let Some(Some((stream, waker))) = slots.get(slot) else { continue };
                let mut slot_cx = Context::from_waker(waker);
                let open = loop {
                    match stream.poll_read_ready(&mut slot_cx) {
                        Poll::Pending => break true,
                        Poll::Ready(Err(_)) => break false,
                        Poll::Ready(Ok(())) => match answer_ready(stream) {
                            Ok(true) => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Ok(false) | Err(_) => break false,
                        },
                    }
                };
                if !open {
                    slots[slot] = None;
                    self.free.borrow_mut().push(slot);
                }
            }
            Poll::<()>::Pending
        })
        .await
    }
}

/// Read the request and answer `101`; the buffers are freed before the
/// connection waits.
async fn handshake(mut stream: TcpStream) -> io::Result<TcpStream> {
    let _ = stream.set_nodelay(true);
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

/// One client frame at the start of `input` (the core's header parser):
/// (opcode, unmasked payload, frame length), or `None` until it is whole.
fn client_frame(input: &[u8]) -> Option<(Opcode, Vec<u8>, usize)> {
    let (header, at) = FrameHeader::parse(input).ok()??;
    let end = at.checked_add(usize::try_from(header.payload_len).ok()?)?;
    let mut payload = input.get(at..end)?.to_vec();
    if let Some(key) = header.mask {
        apply_mask(&mut payload, key, 0);
    }
    Some((header.opcode, payload, end))
}

/// A server frame (unmasked, final), with the core's header.
fn server_frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader::new(opcode, payload.len() as u64);
    let mut out = vec![0u8; header.encoded_len()];
    let _ = header.encode(&mut out);
    out.extend_from_slice(payload);
    out
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
    while let Some((opcode, payload, len)) = client_frame(input) {
        match opcode {
            Opcode::Ping => {
                stream.try_write(&server_frame(Opcode::Pong, &payload))?;
            }
            Opcode::Close => return Ok(false),
            _ => {}
        }
        input = &input[len..];
    }
    Ok(true)
}

async fn member(stream: TcpStream, members: Members) {
    let Ok(stream) = handshake(stream).await else { return };
    let stream = Rc::new(stream);
    let slot = {
        let mut all = members.borrow_mut();
        match all.iter().position(Option::is_none) {
            Some(free) => {
                all[free] = Some(stream.clone());
                free
            }
            None => {
                all.push(Some(stream.clone()));
                all.len() - 1
            }
        }
    };
    let mut input = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    'read: loop {
        if stream.readable().await.is_err() {
            break;
        }
        match stream.try_read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => input.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => break,
        }
        let mut at = 0;
        while let Some((opcode, payload, len)) = client_frame(&input[at..]) {
            at += len;
            match opcode {
                Opcode::Text => {
                    let frame = server_frame(Opcode::Text, &payload);
                    for (i, other) in members.borrow().iter().enumerate() {
                        if let Some(other) = other.as_ref().filter(|_| i != slot) {
                            let _ = other.try_write(&frame);
                        }
                    }
                }
                Opcode::Ping => {
                    let _ = stream.try_write(&server_frame(Opcode::Pong, &payload));
                }
                Opcode::Close => break 'read,
                _ => {}
            }
        }
        input.drain(..at);
    }
    members.borrow_mut()[slot] = None;
}
