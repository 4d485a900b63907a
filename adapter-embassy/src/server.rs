//! A small room server: `N` connection slots (one [`TcpSocket`] each) on
//! one port, one channel, rooms in a fixed-capacity table from the core.
//!
//! Browsers connect with a plain `new WebSocket("ws://device/ws/chat?roomId=lobby")`
//! (the Alepha wire); roomwire clients offering `roomwire.v1.postcard` or
//! `roomwire.v1.json` get the roomwire wire, with joins and leaves at any
//! time. Admission, inbound dispatch, targeting and frame encoding are the
//! core's ([`dispatch`], [`target`](roomwire_core::target)); the server
//! moves bytes between the sockets and the core, in one task.
//!
//! Each received message goes to the firmware's [`Handler`] with a
//! [`Context`] to emit typed messages to rooms, users or connections
//! ([`Context::emit`], [`Context::reply`]).
//!
//! **Limits.** A full table refuses joins with the protocol's answers (an
//! `error` envelope, or close 1008 on the Alepha wire), a message larger
//! than a slot's `message` buffer is refused with close 1009, a handshake
//! larger than `read` with HTTP 431, a silent client with 408 and a dead
//! one by keepalive. A TCP handshake that the peer never completes (a SYN
//! from a spoofed address) gives its slot back after the handshake
//! timeout, and a peer's FIN or reset frees its slot at once. When all
//! slots are busy, new connections are refused (a TCP reset: no socket
//! listens) until a slot listens again.
//!
//! **Senders wait for readers.** Before a client's next message is
//! handled, every open connection's TCP send buffer must have room for a
//! whole frame (the `frame` buffer, or the socket's whole send buffer if
//! smaller). If one has not, the sender's input waits, in its buffers and
//! then in TCP's window, so a client sending many small messages is slowed
//! to the pace of the room instead of overflowing its readers. A reader
//! that keeps its send buffer that full for [`SLOW_READER_GRACE`] (in one
//! stretch, or in all: a reader that takes a little just before each grace
//! ends is not let off) is too slow for a device with fixed buffers and is
//! reset, as is one that cannot take a frame when it is written (a handler
//! emitting more than one frame's worth per message). [`Handler::on_connect`]
//! waits the same way (a newcomer is admitted at once). A connection whose
//! input waits is not judged by its deadlines while it does (its pong may
//! be waiting too): a stalled room does not get its members closed as
//! dead.

use core::fmt;

use embassy_futures::poll_once;
use embassy_futures::select::{Either, select, select_array};
use embassy_net::Stack;
use embassy_net::tcp::{State as TcpState, TcpSocket};
use embassy_time::Timer;
use roomwire_core::admission::Gates;
use roomwire_core::dispatch::{self, Inbound};
use roomwire_core::message::{Incoming, MessageReader};
use roomwire_core::room::{MemberId, RoomId, RoomTable};
use roomwire_core::session::ServerSession;
use roomwire_core::slow_reader::{self, SlowReader};
use roomwire_core::target::{Directory, FrameKey, Members, SeenBits, Target, resolve};
use roomwire_core::{Channel, Config, Connection, Duration, Event, Message, MessageKind, State, WireFormat};

use crate::time::{duration, now, to_embassy};

/// How long a closed connection may take to finish its TCP close before
/// its slot is reset and reused.
const LINGER: Duration = Duration::from_millis(500);

/// How long a connection may keep its send buffer too full to take a
/// frame, holding back every sender, before it is reset: in one stretch,
/// or in all, net of the time it had room, counted four times slower
/// ([`slow_reader`]).
pub const SLOW_READER_GRACE: Duration = slow_reader::GRACE;

/// While a sender is held back, how often the server looks again.
const HELD_RECHECK: Duration = Duration::from_millis(5);

/// The server's settings.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// The TCP port to listen on.
    pub port: u16,
    /// Limits and deadlines of each connection (`max_message_size` is
    /// capped at the slot's `message` buffer). Default: 10 s handshake
    /// timeout, 30 s keepalive, 60 s to finish a message.
    pub websocket: Config,
}

impl ServerConfig {
    /// Listen on `port` with the default limits and a 30 s keepalive.
    pub fn new(port: u16) -> Self {
        Self { port, websocket: roomwire_core::session::server_connection_config() }
    }
}

/// The buffers of one connection slot, lent by the firmware.
#[derive(Debug)]
pub struct SlotBuffers<'b> {
    /// TCP receive buffer.
    pub rx: &'b mut [u8],
    /// TCP send buffer: frames to this client are dropped (and the client
    /// reset) when they do not fit.
    pub tx: &'b mut [u8],
    /// Bytes read: must hold a browser's whole upgrade request (about
    /// 600 bytes; larger requests are refused with 431).
    pub read: &'b mut [u8],
    /// Whole-message reassembly: the largest message accepted.
    pub message: &'b mut [u8],
}

/// Buffers shared by all slots.
#[derive(Debug)]
pub struct SharedBuffers<'b> {
    /// The message being handled (as large as the largest slot `message`).
    pub inbox: &'b mut [u8],
    /// Decoding: unescaped JSON strings.
    pub scratch: &'b mut [u8],
    /// An emitted message's encoded payload.
    pub payload: &'b mut [u8],
    /// One encoded frame (payload plus room label plus 14 bytes) and
    /// handshake answers (at least 256 bytes).
    pub frame: &'b mut [u8],
}

/// What the firmware does with client messages.
pub trait Handler<C: Channel> {
    /// A typed message from connection `from`, handled in `room` (see
    /// [`Inbound::Message`]).
    fn on_message(&mut self, ctx: &mut Context<'_, '_, C>, from: MemberId, room: &RoomId, message: C::Out<'_>);

    /// A connection completed its handshake, on `format`. Told once every
    /// reader has room for a frame, as a message is handled: what it
    /// emits never finds a reader short (the handshake itself is answered
    /// at once).
    fn on_connect(&mut self, ctx: &mut Context<'_, '_, C>, member: MemberId, format: WireFormat) {
        let _ = (ctx, member, format);
    }

    /// A connection ended: one that [`on_connect`](Self::on_connect)
    /// was told of (a TCP connection that never completed its WebSocket
    /// handshake is not reported at either end).
    fn on_disconnect(&mut self, member: MemberId) {
        let _ = member;
    }
}

/// One connection slot.
struct Slot<'b> {
    socket: TcpSocket<'b>,
    conn: Option<Connection>,
    /// The connection's rooms-layer state, from its request on.
    session: Option<ServerSession>,
    read: &'b mut [u8],
    read_len: usize,
    /// Whole messages (a fragmented one reassembled in the slot's
    /// `message` buffer); the core decides 1009.
    reader: MessageReader<&'b mut [u8]>,
    /// The connection ended: reset the socket at this time (or once its
    /// TCP close completes).
    draining: Option<roomwire_core::Instant>,
    /// The socket was reset (client too slow): clean up on the next turn.
    broken: bool,
    /// Input waits until every reader has room (see the module docs).
    held: bool,
    /// The handler was told of this connection ([`Handler::on_connect`]):
    /// it is told of its end.
    connected: bool,
    /// The connection is open and the handler is yet to be told: it is,
    /// once every reader has room for what it may emit.
    connect_owed: bool,
    /// How long the send buffer has had no room for a frame, in all.
    slow: SlowReader,
}

impl Slot<'_> {
    fn is_open(&self) -> bool {
        !self.broken && self.conn.as_ref().is_some_and(Connection::can_send)
    }

    /// The wire of an open connection.
    fn format(&self) -> Option<WireFormat> {
        self.session.as_ref().filter(|_| self.is_open()).map(ServerSession::format)
    }

    /// Whether its connection's deadlines may be judged now: not while
    /// its input is held with bytes of its peer unread (the core's rule).
    fn deadlines_apply(&self) -> bool {
        let unread = self.read_len > 0 || self.socket.recv_queue() > 0;
        slow_reader::may_judge_deadlines(self.held, unread)
    }

    /// Whether the send buffer can take `need` bytes now (at most its whole
    /// capacity); a slot not open needs no room.
    fn has_room(&self, need: usize) -> bool {
        let capacity = self.socket.send_capacity();
        !self.is_open() || capacity.saturating_sub(self.socket.send_queue()) >= need.min(capacity)
    }

    /// Writes `frame` whole, without waiting, or resets a client too slow
    /// to take it. Returns whether it was written.
    fn write_now(&mut self, frame: &[u8]) -> bool {
        let free = self.socket.send_capacity().saturating_sub(self.socket.send_queue());
        if self.socket.may_send()
            && free >= frame.len()
            && matches!(poll_once(self.socket.write(frame)), core::task::Poll::Ready(Ok(n)) if n == frame.len())
        {
            return true;
        }
        warn!("roomwire server: client too slow, resetting it");
        self.socket.abort();
        self.broken = true;
        false
    }
}

/// The live connections, for targeting (no users on this server).
struct Live<'s, 'b>(&'s [Slot<'b>]);

impl Directory for Live<'_, '_> {
    fn user_of(&self, _: MemberId) -> Option<&str> {
        None
    }
    fn for_each_connection_of_user(&self, _: &str, _: impl FnMut(MemberId)) {}
    fn for_each_connection(&self, mut f: impl FnMut(MemberId)) {
        for (i, slot) in self.0.iter().enumerate() {
            if slot.is_open() {
                f(MemberId(i as u32));
            }
        }
    }
    fn contains(&self, member: MemberId) -> bool {
        self.0.get(member.0 as usize).is_some_and(Slot::is_open)
    }
}

/// What a [`Handler`] can do: emit typed messages.
pub struct Context<'c, 'b, C: Channel> {
    slots: &'c mut [Slot<'b>],
    table: &'c dyn Members,
    payload: &'c mut [u8],
    frame: &'c mut [u8],
    channel: core::marker::PhantomData<fn() -> C>,
}

impl<C: Channel> fmt::Debug for Context<'_, '_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").field("path", &C::PATH).finish_non_exhaustive()
    }
}

impl<'c, 'b, C: Channel> Context<'c, 'b, C> {
    fn new(slots: &'c mut [Slot<'b>], table: &'c dyn Members, payload: &'c mut [u8], frame: &'c mut [u8]) -> Self {
        Context { slots, table, payload, frame, channel: core::marker::PhantomData }
    }

    /// Sends `message` to everyone `target` reaches (each once, labelled
    /// with the first targeted room it is in); returns how many were
    /// reached. A message too large for the `payload` or `frame` buffer
    /// reaches no one.
    pub fn emit(&mut self, target: &Target<'_>, message: &C::In<'_>) -> usize {
        let mut deliveries: heapless::Vec<(MemberId, Option<&str>), 32> = heapless::Vec::new();
        let mut seen = SeenBits::<1>::new();
        resolve(target, self.table, &Live(self.slots), &mut seen, |member, label| {
            let _ = deliveries.push((member, label));
        });
        let mut reached = 0;
        for json in [true, false] {
            let format = if json { WireFormat::Alepha } else { WireFormat::Postcard };
            let format_of = |m: MemberId| self.slots.get(m.0 as usize).and_then(Slot::format);
            if !deliveries.iter().any(|(m, _)| format_of(*m).is_some_and(|f| f.is_json() == json)) {
                continue;
            }
            let Ok(len) = roomwire_core::payload::encode_payload(format, message, self.payload) else { continue };
            let payload = self.payload.get(..len).unwrap_or(&[]);
            for &(member, label) in &deliveries {
                let Some(slot) = self.slots.get_mut(member.0 as usize) else { continue };
                let Some(format) = slot.format().filter(|f| f.is_json() == json) else { continue };
                let Ok(range) = dispatch::encode_frame(FrameKey { format, label }, payload, self.frame) else {
                    continue;
                };
                if slot.write_now(self.frame.get(range).unwrap_or(&[])) {
                    reached += 1;
                }
            }
        }
        reached
    }

    /// Alepha's `reply`: emit to `room` (the room the message was handled
    /// in), except the sender when `except_self`.
    pub fn reply(&mut self, from: MemberId, room: &str, except_self: bool, message: &C::In<'_>) -> usize {
        let mut one = [""];
        self.emit(&Target::reply(&mut one, from, room, None, except_self), message)
    }
}

/// A room server of channel `C` with `N` connection slots (at most 32)
/// and room table `T` (e.g. `FixedRoomTable<8, N, N, 4>`): see the
/// [module docs](self).
pub struct Server<'b, C: Channel, const N: usize, T: RoomTable> {
    slots: [Slot<'b>; N],
    table: T,
    shared: SharedBuffers<'b>,
    config: ServerConfig,
    channel: core::marker::PhantomData<fn() -> C>,
}

impl<C: Channel, const N: usize, T: RoomTable> fmt::Debug for Server<'_, C, N, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("path", &C::PATH)
            .field("port", &self.config.port)
            .field("open", &self.slots.iter().filter(|s| s.is_open()).count())
            .finish_non_exhaustive()
    }
}

impl<'b, C: Channel, const N: usize, T: RoomTable> Server<'b, C, N, T> {
    /// A server on `stack` with one slot per element of `slots`.
    pub fn new(
        stack: Stack<'b>,
        slots: [SlotBuffers<'b>; N],
        table: T,
        shared: SharedBuffers<'b>,
        config: ServerConfig,
    ) -> Self {
        let slots = slots.map(|b| Slot {
            socket: TcpSocket::new(stack, b.rx, b.tx),
            conn: None,
            session: None,
            read: b.read,
            read_len: 0,
            reader: MessageReader::new(b.message),
            draining: None,
            broken: false,
            held: false,
            connected: false,
            connect_owed: false,
            slow: SlowReader::new(),
        });
        Self { slots, table, shared, config, channel: core::marker::PhantomData }
    }

    /// The room table.
    pub fn table(&self) -> &T {
        &self.table
    }

    /// How many connections are open.
    pub fn connections(&self) -> usize {
        self.slots.iter().filter(|s| s.is_open()).count()
    }

    /// Serves forever: accepts, reads, dispatches to `handler`, keeps
    /// connections alive.
    pub async fn run(&mut self, handler: &mut impl Handler<C>) -> ! {
        // How long a TCP handshake may wait for the peer's ACK: the
        // configured handshake timeout, or the core's default one.
        let tcp_handshake = (self.config.websocket.handshake_timeout)
            .or(roomwire_core::session::server_connection_config().handshake_timeout)
            .map(duration);
        loop {
            self.turn(handler);
            let deadline = self.next_deadline().map_or(embassy_time::Instant::MAX, to_embassy);
            let port = self.config.port;
            let waits = self.slots.each_mut().map(|slot| wait(slot, port, tcp_handshake));
            match select(select_array(waits), Timer::at(deadline)).await {
                Either::First(_) | Either::Second(()) => {}
            }
        }
    }

    fn next_deadline(&self) -> Option<roomwire_core::Instant> {
        let held = self.slots.iter().any(|s| s.held).then(|| now() + HELD_RECHECK);
        self.slots
            .iter()
            .filter_map(|s| match (&s.conn, s.draining) {
                (_, Some(at)) => Some(at),
                // Held with input unread, its deadlines wait (`held` looks
                // again soon): one past would wake the loop for nothing.
                (Some(conn), None) if s.deadlines_apply() => conn.poll_timeout(),
                _ => None,
            })
            .chain(held)
            .min()
    }

    /// Handles everything ready on every slot, without waiting.
    fn turn(&mut self, handler: &mut impl Handler<C>) {
        self.watch_readers(now());
        for index in 0..N {
            self.service(index, handler);
        }
    }

    /// Resets the readers that have held every sender back too long.
    fn watch_readers(&mut self, now: roomwire_core::Instant) {
        let need = self.shared.frame.len();
        for slot in &mut self.slots {
            let short = !slot.has_room(need);
            if slot.slow.observe(now, short) {
                warn!("roomwire server: client too slow, resetting it");
                slot.socket.abort();
                slot.broken = true;
                slot.slow = SlowReader::new();
            }
        }
    }

    fn service(&mut self, index: usize, handler: &mut impl Handler<C>) {
        let member = MemberId(index as u32);
        let now = now();
        let readers_have_room = readers_have_room(&self.slots, self.shared.frame.len());
        let Some(slot) = self.slots.get_mut(index) else { return };
        // Held back last turn, and the readers have room again: read now,
        // so that the input waiting (a pong, say) is there before the
        // connection's deadlines are judged.
        if readers_have_room {
            slot.held = false;
        }
        // A finished connection: let TCP close, then free the slot.
        if let Some(at) = slot.draining {
            if slot.socket.state() == TcpState::Closed {
                slot.draining = None;
            } else if matches!(slot.socket.state(), TcpState::TimeWait) || now >= at {
                slot.socket.abort();
                slot.draining = None;
            }
            return;
        }
        if slot.conn.is_none() {
            if !matches!(slot.socket.state(), TcpState::Established | TcpState::CloseWait) {
                return;
            }
            let mut websocket = self.config.websocket;
            // The core refuses (1009) what the buffers could not hold.
            let room = slot.reader.storage_mut().len().min(self.shared.inbox.len());
            websocket.max_message_size = websocket.max_message_size.min(room as u64);
            // ... and answers 431 to a request that would fill `read`,
            // rather than the slot finding its buffer full.
            websocket.max_handshake_size = websocket.max_handshake_size.min(slot.read.len());
            slot.conn = Some(Connection::server(websocket, now));
            slot.session = None;
            slot.broken = false;
            slot.held = false;
            slot.slow = SlowReader::new();
            slot.read_len = 0;
            slot.reader.reset();
            slot.socket.set_nagle_enabled(false);
            // Established: from here the core's deadlines and keepalive
            // judge the peer (smoltcp's timeout would drop one merely
            // silent that long; see `wait`).
            slot.socket.set_timeout(None);
            debug!("roomwire server: connection on slot {}", index);
        }
        let mut eof = false;
        // Read what is there, unless the slot's input is held back: then
        // it waits in the socket, and TCP slows the sender.
        if let Some(free) = slot.read.get_mut(slot.read_len..)
            && !free.is_empty()
            && !slot.held
        {
            match poll_once(slot.socket.read(free)) {
                core::task::Poll::Ready(Ok(0)) | core::task::Poll::Ready(Err(_)) => eof = true,
                core::task::Poll::Ready(Ok(n)) => slot.read_len += n,
                core::task::Poll::Pending => {}
            }
        }
        self.process(index, handler);
        let Some(slot) = self.slots.get_mut(index) else { return };
        if slot.deadlines_apply()
            && let Some(conn) = slot.conn.as_mut()
            && conn.handle_timeout(now).is_some()
        {
            debug!("roomwire server: slot {} timed out", index);
        }
        self.transmit(index);
        let Some(slot) = self.slots.get_mut(index) else { return };
        let closed = slot.conn.as_ref().is_none_or(|c| c.state() == State::Closed);
        if eof || closed || slot.broken || (slot.read_len == slot.read.len() && !slot.held) {
            // A request too large for `read` was refused by the core (431)
            // before the buffer filled; a full buffer otherwise means a
            // stuck peer.
            slot.conn = None;
            let was_connected = core::mem::take(&mut slot.connected);
            slot.connect_owed = false;
            if let Some(session) = slot.session.as_mut() {
                session.leave(&mut self.table);
            }
            if closed && !eof && !slot.broken {
                slot.socket.close();
            } else {
                slot.socket.abort();
            }
            slot.draining = Some(now + LINGER);
            slot.read_len = 0;
            slot.held = false;
            if was_connected {
                handler.on_disconnect(member);
            }
        }
    }

    /// Feeds the slot's buffered input to its connection.
    fn process(&mut self, index: usize, handler: &mut impl Handler<C>) {
        let member = MemberId(index as u32);
        let mut start = 0;
        loop {
            let Self { slots, table, shared, .. } = self;
            let need = shared.frame.len();
            let readers_have_room = readers_have_room(slots, need);
            let Some(slot) = slots.get_mut(index) else { return };
            if slot.broken {
                // Reset (too slow): what it sent is not handled, and its
                // slot is freed this turn.
                return;
            }
            // An open connection's next message, and the handler's word of
            // a new one, wait until every reader can take what handling it
            // may send.
            slot.held = slot.session.is_some() && slot.is_open() && !readers_have_room;
            if slot.held {
                break;
            }
            if core::mem::take(&mut slot.connect_owed) && slot.is_open() {
                slot.connected = true;
                let format = slot.session.as_ref().map_or(WireFormat::Alepha, ServerSession::format);
                let mut ctx = Context::<C>::new(slots.as_mut_slice(), table, shared.payload, shared.frame);
                handler.on_connect(&mut ctx, member, format);
                continue;
            }
            let Some(conn) = slot.conn.as_mut() else { return };
            let end = slot.read_len;
            let Some(input) = slot.read.get_mut(start..end) else { break };
            if input.is_empty() {
                break;
            }
            let now = now();
            let got = slot.reader.read(conn, now, input);
            start += got.consumed;
            let Some(incoming) = got.incoming else {
                if got.consumed == 0 {
                    break;
                }
                continue;
            };
            let event = match incoming {
                Incoming::Message(message) => {
                    // Into the shared inbox: the handler's context borrows
                    // every slot, this one too.
                    let bytes = message.bytes();
                    // Always fits: max_message_size is capped at its length.
                    let Some(inbox) = shared.inbox.get_mut(..bytes.len()) else { continue };
                    inbox.copy_from_slice(bytes);
                    let Some(session) = slot.session.as_mut() else { continue };
                    let format = session.format();
                    let state = slot.conn.as_ref().map_or(State::Closed, Connection::state);
                    match session.handle_message::<C, _>(
                        state,
                        &mut *table,
                        &roomwire_core::dispatch::AnyRoom,
                        inbox,
                        shared.scratch,
                        shared.frame,
                    ) {
                        Inbound::Message { room, message } => {
                            let mut ctx = Context::<C>::new(slots.as_mut_slice(), table, shared.payload, shared.frame);
                            handler.on_message(&mut ctx, member, &room, message);
                        }
                        Inbound::Answer { len, .. } => {
                            send_answer(slot, format, shared.frame, shared.payload, len);
                        }
                        Inbound::Ignored => {}
                    }
                    continue;
                }
                Incoming::Event(event) => event,
            };
            match event {
                Event::Request(request) => {
                    // Registered before the 101 (there is no application
                    // decision here), while the request is at hand.
                    let (mut session, screened) = ServerSession::admit::<C, _>(
                        &request,
                        Gates::default(),
                        member,
                        &roomwire_core::dispatch::AnyRoom,
                        &mut *table,
                    );
                    let n = session.answer(screened, conn, now, shared.frame);
                    slot.session = Some(session);
                    // The handler is told on the next round, held like a
                    // message while a reader lacks room.
                    slot.connect_owed = slot.write_now(shared.frame.get(..n).unwrap_or(&[])) && slot.is_open();
                }
                Event::Ping(_) => {
                    // One pong per ping of a burst (the core owes only the
                    // latest): write it now.
                    let n = conn.poll_transmit(shared.frame).unwrap_or(0);
                    slot.write_now(shared.frame.get(..n).unwrap_or(&[]));
                }
                _ => {}
            }
        }
        if let Some(slot) = self.slots.get_mut(index)
            && start > 0
        {
            slot.read.copy_within(start..slot.read_len, 0);
            slot.read_len -= start;
        }
    }

    /// Writes what the slot's connection owes (pongs, pings, close frames,
    /// handshake refusals).
    fn transmit(&mut self, index: usize) {
        let Some(slot) = self.slots.get_mut(index) else { return };
        loop {
            let Some(conn) = slot.conn.as_mut() else { return };
            match conn.poll_transmit(self.shared.frame) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if !slot.write_now(self.shared.frame.get(..n).unwrap_or(&[])) {
                        return;
                    }
                }
            }
        }
    }
}

/// Whether every open connection's send buffer can take a frame of
/// `need` bytes: what handling a message (or a new connection) waits for.
fn readers_have_room(slots: &[Slot<'_>], need: usize) -> bool {
    slots.iter().all(|s| s.has_room(need))
}

/// Frames the `len`-byte answer at the start of `body` for the sender
/// (through `framed`) and writes it.
fn send_answer(slot: &mut Slot<'_>, format: WireFormat, body: &[u8], framed: &mut [u8], len: usize) {
    let Some(conn) = slot.conn.as_mut() else { return };
    let bytes = body.get(..len).unwrap_or(&[]);
    let message = match format.message_kind() {
        MessageKind::Text => match core::str::from_utf8(bytes) {
            Ok(text) => Message::Text(text),
            Err(_) => return,
        },
        MessageKind::Binary => Message::Binary(bytes),
    };
    if let Ok(n) = conn.send(message, framed) {
        slot.write_now(framed.get(..n).unwrap_or(&[]));
    }
}

/// Waits until the slot has something to do: a connection to accept,
/// bytes to read, or the peer's end (FIN or reset).
///
/// A listening socket has smoltcp's timeout set to `tcp_handshake`: a SYN
/// whose SYN-ACK is never answered (a spoofed address) would otherwise
/// keep the slot in SYN-RECEIVED for good, and a few such packets would
/// shut the server. It is cleared once the connection is established.
async fn wait(slot: &mut Slot<'_>, port: u16, tcp_handshake: Option<embassy_time::Duration>) {
    // Held input is looked at again on the server's timer.
    if slot.draining.is_some() || slot.held {
        core::future::pending::<()>().await;
    }
    if slot.conn.is_none() {
        match slot.socket.state() {
            TcpState::Established | TcpState::CloseWait => {}
            TcpState::Closed | TcpState::Listen | TcpState::SynReceived => {
                // Listening again on the same port is a no-op for smoltcp,
                // so a cancelled accept resumes here.
                slot.socket.set_timeout(tcp_handshake);
                if slot.socket.accept(port).await.is_err() {
                    Timer::after(duration(LINGER)).await;
                }
            }
            _ => slot.socket.abort(),
        }
        return;
    }
    // Not `wait_read_ready`, which waits for bytes and misses an end: a
    // peer gone while the server is idle would keep its slot until the
    // next timer. This looks without taking anything.
    let _ = slot.socket.read_with(|_| (0, ())).await;
}
