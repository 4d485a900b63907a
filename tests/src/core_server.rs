//! A roomwire server made of the core and nothing else, over an in-memory
//! transport: bytes in, bytes out, synchronously. Every decision is the
//! core's. The server conformance sessions run against it, and the client
//! session runs against it without sockets.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;

use roomwire_core::admission::Gates;
use roomwire_core::dispatch::{self, Inbound};
use roomwire_core::message::{Incoming, MessageReader};
use roomwire_core::payload::encode_payload;
use roomwire_core::room::{FixedRoomTable, MemberId};
use roomwire_core::session::ServerSession;
use roomwire_core::target::{Directory, FrameKey, SeenBits, Target, resolve};
use roomwire_core::{Config, Connection, Event, Instant, State, WireFormat};

use crate::chat::{Chat, ChatIn};
use crate::conformance::{Connect, Stream};

/// The server: [`Connect::connect`] opens an in-memory connection to it.
/// Clones share one server.
#[derive(Default, Clone)]
pub struct CoreServer(Rc<RefCell<Hub>>);

/// The connections and the room table.
#[derive(Default)]
struct Hub {
    table: FixedRoomTable<8, 8, 8, 4>,
    slots: Vec<Slot>,
}

struct Slot {
    conn: Connection,
    reader: MessageReader<[u8; 4096]>,
    session: ServerSession,
    input: Vec<u8>,
    output: Vec<u8>,
}

impl Slot {
    fn open(&self) -> bool {
        self.conn.state() == State::Open
    }
}

struct Live<'a>(&'a [Slot]);

impl Directory for Live<'_> {
    fn user_of(&self, _: MemberId) -> Option<&str> {
        None
    }
    fn for_each_connection_of_user(&self, _: &str, _: impl FnMut(MemberId)) {}
    fn for_each_connection(&self, mut f: impl FnMut(MemberId)) {
        (0..self.0.len()).filter(|&i| self.0[i].open()).for_each(|i| f(MemberId(i as u32)));
    }
    fn contains(&self, member: MemberId) -> bool {
        self.0.get(member.0 as usize).is_some_and(Slot::open)
    }
}

impl Connect for CoreServer {
    fn connect(&mut self) -> io::Result<Box<dyn Stream>> {
        let mut hub = self.0.borrow_mut();
        // A closed connection's slot is reused, as a fixed server would.
        let now = Instant::ZERO;
        let fresh = Slot {
            conn: Connection::server(Config { max_message_size: 4096, ..Config::default() }, now),
            reader: MessageReader::new([0; 4096]),
            session: ServerSession::on_wire(WireFormat::Alepha),
            input: Vec::new(),
            output: Vec::new(),
        };
        let index = match hub.slots.iter().position(|s| s.conn.state() == State::Closed && s.output.is_empty()) {
            Some(index) => {
                hub.slots[index] = fresh;
                index
            }
            None => {
                hub.slots.push(fresh);
                hub.slots.len() - 1
            }
        };
        Ok(Box::new(CoreStream { hub: self.0.clone(), index }))
    }
}

/// One connection's client end.
pub struct CoreStream {
    hub: Rc<RefCell<Hub>>,
    index: usize,
}

impl Stream for CoreStream {
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut hub = self.hub.borrow_mut();
        hub.slots[self.index].input.extend_from_slice(bytes);
        hub.process(self.index);
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut hub = self.hub.borrow_mut();
        let slot = &mut hub.slots[self.index];
        if slot.output.is_empty() {
            return if slot.conn.state() == State::Closed {
                Ok(0)
            } else {
                Err(io::Error::new(io::ErrorKind::TimedOut, "nothing to read"))
            };
        }
        let n = buf.len().min(slot.output.len());
        buf[..n].copy_from_slice(&slot.output[..n]);
        slot.output.drain(..n);
        Ok(n)
    }
}

impl Hub {
    fn process(&mut self, index: usize) {
        let now = Instant::ZERO;
        let member = MemberId(index as u32);
        let Hub { table, slots } = self;
        loop {
            let slot = &mut slots[index];
            let mut input = std::mem::take(&mut slot.input);
            let read = slot.reader.read(&mut slot.conn, now, &mut input);
            let consumed = read.consumed;
            let mut frame = [0u8; 4096];
            let mut handled = read.incoming.is_some();
            match read.incoming {
                None => {}
                Some(Incoming::Event(Event::Request(request))) => {
                    let (mut session, screened) = ServerSession::admit::<Chat, _>(
                        &request,
                        Gates::default(),
                        member,
                        &roomwire_core::dispatch::AnyRoom,
                        &mut *table,
                    );
                    let n = session.answer(screened, &mut slot.conn, now, &mut frame);
                    slot.session = session;
                    slot.output.extend_from_slice(&frame[..n]);
                }
                Some(Incoming::Message(message)) => {
                    let data = message.bytes().to_vec();
                    let format = slot.session.format();
                    let mut scratch = [0u8; 1024];
                    match slot.session.handle_message::<Chat, _>(
                        slot.conn.state(),
                        &mut *table,
                        &roomwire_core::dispatch::AnyRoom,
                        &data,
                        &mut scratch,
                        &mut frame,
                    ) {
                        Inbound::Message { room, message } => {
                            let line = ChatIn::Append { content: message.content, username: format!("m{index}") };
                            input.drain(..consumed);
                            slots[index].input = input;
                            reply(table, slots, member, room.as_str(), &line);
                            continue;
                        }
                        Inbound::Answer { len, .. } => {
                            let message = match format.message_kind() {
                                roomwire_core::MessageKind::Text => {
                                    roomwire_core::Message::Text(std::str::from_utf8(&frame[..len]).expect("text"))
                                }
                                roomwire_core::MessageKind::Binary => roomwire_core::Message::Binary(&frame[..len]),
                            };
                            let mut out = [0u8; 4200];
                            if let Ok(n) = slot.conn.send(message, &mut out) {
                                slot.output.extend_from_slice(&out[..n]);
                            }
                        }
                        Inbound::Ignored => {}
                    }
                }
                Some(Incoming::Event(_)) => {}
            }
            input.drain(..consumed);
            let slot = &mut slots[index];
            slot.input = input;
            while let Ok(n) = slot.conn.poll_transmit(&mut frame) {
                if n == 0 {
                    break;
                }
                slot.output.extend_from_slice(&frame[..n]);
            }
            if slot.conn.state() == State::Closed {
                slot.session.leave(table);
            }
            handled |= consumed > 0;
            if !handled || slot.input.is_empty() {
                return;
            }
        }
    }
}

/// Alepha's `reply` except the sender: the core resolves and frames it.
fn reply(table: &FixedRoomTable<8, 8, 8, 4>, slots: &mut [Slot], from: MemberId, room: &str, line: &ChatIn) {
    let mut one = [""];
    let target = Target::reply(&mut one, from, room, None, true);
    let mut deliveries = Vec::new();
    resolve(&target, table, &Live(slots), &mut SeenBits::<1>::new(), |member, label| deliveries.push((member, label)));
    for (member, label) in deliveries {
        let slot = &mut slots[member.0 as usize];
        let mut payload = [0u8; 1024];
        let Ok(len) = encode_payload(slot.session.format(), line, &mut payload) else { continue };
        let mut frame = [0u8; 2048];
        if let Ok(range) =
            dispatch::encode_frame(FrameKey { format: slot.session.format(), label }, &payload[..len], &mut frame)
        {
            slot.output.extend_from_slice(&frame[range]);
        }
    }
}
