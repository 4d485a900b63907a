//! Runs under QEMU (mps2-an386, Cortex-M4) with semihosting: the core,
//! compiled for thumbv7em, decodes two recorded server sessions
//! (`session/*.bin`, produced by the core's server side, see
//! adapter-embassy/tests/recorded_session.rs), fed in chunks split at odd
//! points, through `Connection` + `RoomClient`, and checks every event and
//! typed message. Exits 0 on success, 1 on any mismatch or panic.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use roomwire_core::client::{ClientEvent, Opened, RoomClient};
use roomwire_core::handshake::ClientRequest;
use roomwire_core::{CloseCode, Config, Connection, Event, Instant, WireFormat};
use roomwire_firmware::app::{Command, Telemetry};

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("qemu-decode: panic: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {}
}

/// The same deterministic key source as the session generator.
fn keys() -> impl FnMut() -> [u8; 4] {
    let mut state = 0x2545_f491_u32;
    move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state.to_le_bytes()
    }
}

/// What the session must produce, in order.
#[derive(Debug, PartialEq)]
enum Seen {
    Open,
    Joined,
    SetPoint { room_plant: bool, value: i32 },
    Ping,
    Say { labelled: bool, text_ok: bool },
    ServerError { code: Option<u16>, boom: bool },
    Close(Option<CloseCode>),
}

/// Odd chunk sizes the session is split into.
const CHUNKS: [usize; 9] = [1, 2, 7, 3, 13, 5, 64, 11, 17];

fn run(name: &str, format: WireFormat, session: &[u8]) -> Result<(), &'static str> {
    let now = Instant::ZERO;
    let mut client = RoomClient::<Telemetry, 2>::with_rooms(format, &["plant-1"]).map_err(|_| "rooms")?;
    let mut target = [0u8; 128];
    let n = client.write_target(&mut target).map_err(|_| "target")?;
    let target = core::str::from_utf8(&target[..n]).map_err(|_| "target utf-8")?;
    let mut conn = Connection::client(Config::default(), now, keys());
    let mut out = [0u8; 512];
    let request = ClientRequest { host: "192.0.2.1:8080", target, protocols: client.protocols(), headers: &[] };
    conn.write_request(&request, &mut out).map_err(|_| "request")?;

    let mut read = [0u8; 256];
    let (mut start, mut end) = (0usize, 0usize);
    let mut message = [0u8; 256];
    let mut message_len = 0usize;
    let mut scratch = [0u8; 256];
    let mut seen: heapless_seen::Seen = heapless_seen::Seen::new();
    let mut fed = 0usize;
    let mut chunk = 0usize;
    while fed < session.len() || start < end {
        let before = (fed, start, end);
        // Feed the next odd-sized piece.
        if fed < session.len() {
            if start > 0 {
                read.copy_within(start..end, 0);
                end -= start;
                start = 0;
            }
            let take = CHUNKS[chunk % CHUNKS.len()].min(session.len() - fed).min(read.len() - end);
            chunk += 1;
            read[end..end + take].copy_from_slice(&session[fed..fed + take]);
            end += take;
            fed += take;
        }
        loop {
            let got = conn.handle_input(now, &mut read[start..end]);
            start += got.consumed;
            let Some(event) = got.event else {
                if got.consumed == 0 || start == end {
                    break;
                }
                continue;
            };
            match event {
                Event::Open { protocol } => {
                    if client.opened(protocol) != Ok(Opened::Ready) {
                        return Err("opened");
                    }
                    seen.push(Seen::Open)?;
                    // The joins the client sends (roomwire wire).
                    while client.poll_transmit(&mut out).map_err(|_| "poll_transmit")? > 0 {}
                }
                Event::Data { payload, message_start, message_end, .. } => {
                    if message_start {
                        message_len = 0;
                    }
                    message[message_len..message_len + payload.len()].copy_from_slice(payload);
                    message_len += payload.len();
                    if message_end {
                        let text = core::str::from_utf8(&message[..message_len]).unwrap_or("<binary>");
                        let event = client.handle_message(&message[..message_len], &mut scratch);
                        seen.push(match event.map_err(|_| "handle_message")? {
                            ClientEvent::Joined(room) if room == "plant-1" => Seen::Joined,
                            ClientEvent::Message { room, message: Command::SetPoint { value } } => {
                                Seen::SetPoint { room_plant: room.as_deref() == Some("plant-1"), value }
                            }
                            ClientEvent::Message { room, message: Command::Say { text } } => {
                                Seen::Say { labelled: room.is_some(), text_ok: text == "hello, device" }
                            }
                            ClientEvent::ServerError { code, text } => {
                                Seen::ServerError { code, boom: text.eq_str("boom") }
                            }
                            other => {
                                hprintln!("qemu-decode: {}: unexpected {:?} for {:?}", name, other, text);
                                return Err("unexpected client event");
                            }
                        })?;
                    }
                }
                Event::Ping(payload) => {
                    if payload != b"hb" {
                        return Err("ping payload");
                    }
                    seen.push(Seen::Ping)?;
                }
                Event::Close { code, reason } => {
                    if reason != "bye" {
                        return Err("close reason");
                    }
                    seen.push(Seen::Close(code))?;
                }
                _ => return Err("unexpected connection event"),
            }
        }
        if (fed, start, end) == before {
            return Err("no progress: input left over");
        }
    }
    let mut expected: heapless_seen::Seen = heapless_seen::Seen::new();
    expected.push(Seen::Open)?;
    if format != WireFormat::Alepha {
        expected.push(Seen::Joined)?;
    }
    expected.push(Seen::SetPoint { room_plant: true, value: 21 })?;
    expected.push(Seen::Ping)?;
    expected.push(Seen::Say { labelled: false, text_ok: true })?;
    let code = if format == WireFormat::Alepha { None } else { Some(4005) };
    expected.push(Seen::ServerError { code, boom: true })?;
    expected.push(Seen::Close(Some(CloseCode::Normal)))?;
    if seen.as_slice() != expected.as_slice() {
        hprintln!("qemu-decode: {}: got {:?}", name, seen.as_slice());
        hprintln!("qemu-decode: {}: expected {:?}", name, expected.as_slice());
        return Err("events differ");
    }
    if !client.is_joined("plant-1") {
        return Err("not joined");
    }
    hprintln!("qemu-decode: {}: {} bytes in {} chunks, {} events: ok", name, session.len(), chunk, seen.len);
    Ok(())
}

/// A fixed list of events (no allocation).
mod heapless_seen {
    pub struct Seen {
        items: [Option<super::Seen>; 8],
        pub len: usize,
    }
    impl Seen {
        pub fn new() -> Self {
            Self { items: [const { None }; 8], len: 0 }
        }
        pub fn push(&mut self, item: super::Seen) -> Result<(), &'static str> {
            *self.items.get_mut(self.len).ok_or("too many events")? = Some(item);
            self.len += 1;
            Ok(())
        }
        pub fn as_slice(&self) -> &[Option<super::Seen>] {
            &self.items[..self.len]
        }
    }
}

#[entry]
fn main() -> ! {
    let sessions: [(&str, WireFormat, &[u8]); 2] = [
        ("postcard", WireFormat::Postcard, include_bytes!("../../session/postcard.bin")),
        ("alepha", WireFormat::Alepha, include_bytes!("../../session/alepha.bin")),
    ];
    let mut ok = true;
    for (name, format, bytes) in sessions {
        if let Err(why) = run(name, format, bytes) {
            hprintln!("qemu-decode: {}: FAILED: {}", name, why);
            ok = false;
        }
    }
    if ok {
        hprintln!("qemu-decode: all sessions decoded");
        debug::exit(debug::EXIT_SUCCESS);
    } else {
        debug::exit(debug::EXIT_FAILURE);
    }
    // Semihosting's exit does not return under QEMU; on a probe it may.
    loop {
        cortex_m::asm::wfi();
    }
}
