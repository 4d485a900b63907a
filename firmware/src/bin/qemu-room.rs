//! A device in a room, on an emulated Cortex-M4 (QEMU `mps2-an386`): the
//! LAN9118 driver (`embassy-net-lan9118`), embassy-net with a static
//! address, and the roomwire-embassy client joining room `plant-1` of
//! `/ws/telemetry` on the tokio server (`telemetry_peer server`) on the
//! postcard wire. Run by scripts/qemu-e2e.sh.
//!
//! The device sends a typed reading every 250 ms while it is in the room,
//! carries out the commands an operator sends to the room (a new set point)
//! and acknowledges each; when one says it is the last, it acknowledges,
//! closes the connection cleanly and exits 0 through semihosting. Whatever
//! ends a connection (the server restarted, garbage, a frame cut short, a
//! server that stops answering: the keepalive finds it) it reconnects with
//! backoff and rejoins its room. Any failure to start, or no last command
//! within [`DEADLINE_S`] seconds, exits 1. Progress goes to the semihosting
//! console, one line per step.
//!
//! Board: SYSCLK 25 MHz; SysTick at 1 kHz drives embassy-time (its own
//! 16-entry timer queue) and polls the Ethernet controller every tick (or,
//! with feature `qemu-irq`, the controller's IRQ 13 wakes the
//! stack and the tick only checks the link every 100 ms). The executor
//! sleeps with WFI: QEMU treats WFE as a no-op, so the stock executor would
//! spin a host core.
//!
//! Build: `cargo build --release --no-default-features --features qemu --bin qemu-room`.
#![no_std]
#![no_main]

#[path = "../../../adapter-embassy/examples/common/telemetry_types.rs"]
mod telemetry_types;

use core::cell::{Cell, RefCell};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use core::task::Waker;

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::{debug, hprintln};
use critical_section::Mutex;
use embassy_executor::{Spawner, raw};
use embassy_futures::select::{Either3, select3};
use embassy_net::tcp::TcpSocket;
use embassy_net::{Ipv4Address, Ipv4Cidr, StackResources, StaticConfigV4};
use embassy_net_lan9118::{Config as NicConfig, Lan9118, Mmio, Registers, State as NicState, on_interrupt};
use embassy_time::{Duration, Instant, Ticker, Timer};
use embassy_time_queue_utils::Queue;
use roomwire_embassy::client::{Client, ClientBuffers, ClientConfig, Event};
use roomwire_embassy::roomwire_core::client::ClientEvent;
use roomwire_embassy::roomwire_core::{self, WireFormat};
use static_cell::StaticCell;
use telemetry_types::{Ack, Frame, Reading};

roomwire_core::channel! {
    /// The telemetry room, as the device sees it (strings borrowed from the frame).
    pub struct Telemetry { path: telemetry_types::PATH, in: Frame<&'a str>, out: Frame<&'a str> }
}

/// What the device calls itself.
const DEVICE: &str = "qemu-m4";
/// Its room.
const ROOM: &str = "plant-1";
/// The server, inside the test's network namespace.
const SERVER: &str = "192.0.2.1";
const PORT: u16 = 8080;
/// The device's own address (static; the namespace has no DHCP).
const ADDRESS: Ipv4Address = Ipv4Address::new(192, 0, 2, 2);
/// A locally administered MAC address.
const MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x12, 0x34, 0x56];
/// Give up (exit 1) after this long without the last command.
const DEADLINE_S: u64 = 90;
/// A reading this often while in the room.
const READING_EVERY_MS: u64 = 250;
/// The core clock, and SysTick's rate.
const SYSCLK_HZ: u32 = 25_000_000;
const TICK_HZ: u32 = 1_000;
/// The LAN9118's interrupt on MPS2 AN385/AN386.
const LAN9118_IRQ: i16 = 13;
/// Interrupt-driven receive instead of the 1 ms poll (feature `qemu-irq`).
const USE_IRQ: bool = cfg!(feature = "qemu-irq");

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("qemu-room: FAIL: panic: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

fn fail(why: &str) -> ! {
    hprintln!("qemu-room: FAIL: {}", why);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

// --- time: SysTick at 1 kHz ---------------------------------------------------

static TICKS: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));
static NEXT_ALARM: Mutex<Cell<u64>> = Mutex::new(Cell::new(u64::MAX));
static TIMERS: Mutex<RefCell<Queue>> = Mutex::new(RefCell::new(Queue::new()));

struct SysTickTime;

impl embassy_time_driver::Driver for SysTickTime {
    fn now(&self) -> u64 {
        critical_section::with(|cs| TICKS.borrow(cs).get())
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        critical_section::with(|cs| {
            let mut timers = TIMERS.borrow_ref_mut(cs);
            if timers.schedule_wake(at, waker) {
                // Wakes what is already due, returns the next deadline.
                let next = timers.next_expiration(TICKS.borrow(cs).get());
                NEXT_ALARM.borrow(cs).set(next);
            }
        });
    }
}

embassy_time_driver::time_driver_impl!(static TIME: SysTickTime = SysTickTime);

/// The controller's waker.
static NIC: NicState = NicState::new();

#[exception]
fn SysTick() {
    let ticks = critical_section::with(|cs| {
        let ticks = TICKS.borrow(cs).get() + 1;
        TICKS.borrow(cs).set(ticks);
        if ticks >= NEXT_ALARM.borrow(cs).get() {
            let next = TIMERS.borrow_ref_mut(cs).next_expiration(ticks);
            NEXT_ALARM.borrow(cs).set(next);
        }
        ticks
    });
    // Polled receive: look at the FIFOs every tick. With the IRQ, only the
    // link (polled from the PHY) needs a tick, a slow one.
    if !USE_IRQ || ticks.is_multiple_of(100) {
        NIC.wake();
    }
}

/// Every device interrupt lands here (no device crate, so cortex-m-rt's
/// vector table points them all at `DefaultHandler`).
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == LAN9118_IRQ {
        NIC_IRQS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the controller's block; the handler only masks and
        // acknowledges its interrupts, which the driver tolerates.
        let mut regs = unsafe { Mmio::new(Mmio::MPS2_BASE) };
        on_interrupt(&mut regs, &NIC);
    }
}

/// LAN9118 interrupts taken.
static NIC_IRQS: AtomicU32 = AtomicU32::new(0);

#[derive(Clone, Copy)]
struct Irq(u16);

// SAFETY: a valid MPS2 interrupt number.
unsafe impl cortex_m::interrupt::InterruptNumber for Irq {
    fn number(self) -> u16 {
        self.0
    }
}

// --- executor: poll, then WFI ---------------------------------------------------

/// Set by the pender: a task was woken, poll again before sleeping.
static WOKEN: AtomicBool = AtomicBool::new(true);

#[unsafe(export_name = "__pender")]
fn pender(_context: *mut ()) {
    WOKEN.store(true, Ordering::SeqCst);
}

#[entry]
fn main() -> ! {
    let Some(mut cp) = cortex_m::Peripherals::take() else { fail("core peripherals taken") };
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(SYSCLK_HZ / TICK_HZ - 1);
    cp.SYST.clear_current();
    cp.SYST.enable_interrupt();
    cp.SYST.enable_counter();

    static EXECUTOR: StaticCell<raw::Executor> = StaticCell::new();
    let executor: &'static raw::Executor = EXECUTOR.init(raw::Executor::new(core::ptr::null_mut()));
    let spawner = executor.spawner();
    match app(spawner) {
        Ok(token) => spawner.spawn(token),
        Err(_) => fail("spawn app"),
    }
    loop {
        WOKEN.store(false, Ordering::SeqCst);
        // SAFETY: not reentrant: only this loop polls.
        unsafe { executor.poll() };
        // Sleep unless woken meanwhile; with interrupts masked, a pending
        // interrupt still ends the WFI and is taken after `enable`.
        cortex_m::interrupt::disable();
        if !WOKEN.load(Ordering::SeqCst) {
            cortex_m::asm::wfi();
        }
        // SAFETY: re-enables what `disable` masked, outside any critical section.
        unsafe { cortex_m::interrupt::enable() };
    }
}

// --- the device -------------------------------------------------------------------

type Nic = Lan9118<'static, Mmio>;
type TelemetryClient = Client<'static, Telemetry, 1, Keys>;

/// Sizes for the footprint report (scripts/qemu-e2e.sh reads them from the
/// ELF): the driver's state (its two frame buffers included), and the
/// client's state beyond the buffers the firmware lends it.
#[used]
#[unsafe(no_mangle)]
static QEMU_ROOM_DRIVER_STATE_SIZE: usize = core::mem::size_of::<Nic>();
#[used]
#[unsafe(no_mangle)]
static QEMU_ROOM_CLIENT_STATE_SIZE: usize = core::mem::size_of::<TelemetryClient>();
/// The buffers lent to the client: TCP 1024 + 1024, read, write, message
/// 512 each, scratch 256.
#[used]
#[unsafe(no_mangle)]
static QEMU_ROOM_CLIENT_BUFFERS_SIZE: usize = 1024 + 1024 + 512 * 3 + 256;

#[embassy_executor::task]
async fn net(mut runner: embassy_net::Runner<'static, Nic>) -> ! {
    runner.run().await
}

/// Masking keys and the stack's seed. The MPS2 has no RNG: the seed mixes
/// the controller's free-running counter and SysTick; a real device uses
/// its TRNG.
static KEY_STATE: AtomicU32 = AtomicU32::new(0x2545_F491);

fn next_key() -> [u8; 4] {
    let mut x = KEY_STATE.load(Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    KEY_STATE.store(x, Ordering::Relaxed);
    x.to_le_bytes()
}

type Keys = RefCell<fn() -> [u8; 4]>;

/// A command note, copied out of the received frame.
struct Note {
    bytes: [u8; 48],
    len: usize,
}

impl Note {
    fn copy(text: &str) -> Self {
        let mut note = Self { bytes: [0; 48], len: 0 };
        // Whole characters only, up to the buffer.
        for c in text.chars() {
            let mut utf8 = [0u8; 4];
            let c = c.encode_utf8(&mut utf8).as_bytes();
            let Some(dst) = note.bytes.get_mut(note.len..note.len + c.len()) else { break };
            dst.copy_from_slice(c);
            note.len += c.len();
        }
        note
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(self.bytes.get(..self.len).unwrap_or(&[])).unwrap_or("")
    }
}

#[embassy_executor::task]
async fn app(spawner: Spawner) {
    let booted = Instant::now();

    // The controller.
    // SAFETY: the MPS2's LAN9118, driven by nothing else (the IRQ handler
    // only touches the interrupt registers).
    let mut regs = unsafe { Mmio::new(Mmio::MPS2_BASE) };
    let free_run = regs.read(0x9C); // FREE_RUN: a 25 MHz counter
    let seed = u64::from(free_run) << 32 | u64::from(cortex_m::peripheral::SYST::get_current());
    KEY_STATE.store((seed as u32 ^ (seed >> 32) as u32) | 1, Ordering::Relaxed);
    let nic_config = NicConfig { mac: Some(MAC), interrupts: USE_IRQ, ..NicConfig::default() };
    let device = match Lan9118::new(regs, &NIC, nic_config) {
        Ok(device) => device,
        Err(e) => {
            hprintln!("qemu-room: LAN9118 bring-up failed: {}", e);
            fail("no Ethernet controller");
        }
    };
    hprintln!(
        "qemu-room: {:?} (ID_REV {:#010x}), MAC {:02x?}, MAC_CR {:#010x}, {}",
        device.chip(),
        device.id_rev(),
        device.mac_address(),
        device.mac_cr(),
        if USE_IRQ { "interrupt-driven receive (IRQ 13)" } else { "receive polled every 1 ms" }
    );
    if USE_IRQ {
        // SAFETY: the handler (DefaultHandler) is ready.
        unsafe { cortex_m::peripheral::NVIC::unmask(Irq(LAN9118_IRQ as u16)) };
    }

    // The stack.
    static RESOURCES: StaticCell<StackResources<2>> = StaticCell::new();
    let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(ADDRESS, 24),
        gateway: None,
        dns_servers: Default::default(),
    });
    let (stack, runner) = embassy_net::new(device, config, RESOURCES.init(StackResources::new()), seed);
    match net(runner) {
        Ok(token) => spawner.spawn(token),
        Err(_) => fail("spawn net"),
    }
    stack.wait_config_up().await;
    hprintln!("qemu-room: {} up after {} ms", ADDRESS, booted.elapsed().as_millis());

    // The client: its buffers live in this task.
    let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
    let (mut read, mut write, mut message, mut scratch) = ([0u8; 512], [0u8; 512], [0u8; 512], [0u8; 256]);
    let keys: Keys = RefCell::new(next_key);
    let socket = TcpSocket::new(stack, &mut rx, &mut tx);
    let buffers = ClientBuffers { read: &mut read, write: &mut write, message: &mut message, scratch: &mut scratch };
    let mut config = ClientConfig::new(SERVER, PORT);
    config.format = WireFormat::Postcard;
    // Quick to notice and quick to come back: this is a test. A real device
    // keeps the defaults (30 s keepalive, backoff up to 30 s).
    config.websocket.keepalive_interval = Some(roomwire_core::Duration::from_secs(1));
    config.websocket.handshake_timeout = Some(roomwire_core::Duration::from_secs(2));
    config.websocket.close_timeout = roomwire_core::Duration::from_secs(2);
    config.connect_timeout = roomwire_core::Duration::from_secs(2);
    config.write_timeout = roomwire_core::Duration::from_secs(3);
    config.reconnect.initial = roomwire_core::Duration::from_millis(100);
    config.reconnect.max = roomwire_core::Duration::from_millis(1000);
    let Ok(mut client) = Client::<Telemetry, 1, Keys>::new(stack, socket, &keys, buffers, config, &[ROOM]) else {
        fail("client set-up");
    };

    let deadline = booted + Duration::from_secs(DEADLINE_S);
    let mut ticker = Ticker::every(Duration::from_millis(READING_EVERY_MS));
    let mut joined = false;
    let mut finishing = false;
    let (mut connections, mut disconnects, mut readings, mut acks) = (0u32, 0u32, 0u32, 0u32);
    let mut set_point_mc = 20_000;
    let mut temperature_mc = 18_000;
    loop {
        match select3(client.next_event(), ticker.next(), Timer::at(deadline)).await {
            Either3::First(Event::Connected { format }) => {
                connections += 1;
                let again = if connections > 1 { " (reconnected)" } else { "" };
                hprintln!("qemu-room: connected #{} ({:?}){}", connections, format, again);
            }
            Either3::First(Event::Room(ClientEvent::Joined(room))) => {
                joined = true;
                hprintln!("qemu-room: joined {}", room.as_str());
            }
            Either3::First(Event::Room(ClientEvent::JoinFailed { room, code, .. })) => {
                hprintln!("qemu-room: join of {} refused ({})", room.as_str(), code);
                fail("join refused");
            }
            Either3::First(Event::Room(ClientEvent::Message { message: Frame::Command(command), .. })) => {
                let (id, last) = (command.id, command.last);
                set_point_mc = command.set_point_mc;
                let note = Note::copy(command.note);
                hprintln!(
                    "qemu-room: command {} received: set point {} m°C, note {:?}, last {}",
                    id,
                    set_point_mc,
                    note.as_str(),
                    last
                );
                let ack = Ack { device: DEVICE, id, set_point_mc, note: note.as_str(), readings, connections };
                match client.send(ROOM, &Frame::Ack(ack)).await {
                    Ok(()) => {
                        acks += 1;
                        hprintln!("qemu-room: ack {} sent", id);
                        if last {
                            finishing = true;
                            client.close().await;
                        }
                    }
                    // The connection went away meanwhile: the operator
                    // sends again; next_event reconnects.
                    Err(e) => hprintln!("qemu-room: ack {} not sent: {}", id, e),
                }
            }
            Either3::First(Event::Room(ClientEvent::Message { .. })) => {}
            Either3::First(Event::Room(other)) => hprintln!("qemu-room: room event {:?}", other),
            Either3::First(Event::Invalid(e)) => hprintln!("qemu-room: unreadable message: {}", e),
            Either3::First(Event::Disconnected(why)) => {
                joined = false;
                if finishing {
                    hprintln!(
                        "qemu-room: done: {} readings, {} acks, {} connections, {} disconnects, {} ms, {} LAN9118 interrupts",
                        readings,
                        acks,
                        connections,
                        disconnects,
                        booted.elapsed().as_millis(),
                        NIC_IRQS.load(Ordering::Relaxed)
                    );
                    hprintln!("qemu-room: PASS");
                    debug::exit(debug::EXIT_SUCCESS);
                }
                disconnects += 1;
                hprintln!("qemu-room: disconnected: {} (reconnecting)", why);
            }
            Either3::First(_) => {}
            Either3::Second(()) => {
                if joined && !finishing && client.is_open() {
                    // Drift towards the set point.
                    temperature_mc += (set_point_mc - temperature_mc) / 4;
                    let reading = Reading {
                        device: DEVICE,
                        seq: readings + 1,
                        uptime_ms: booted.elapsed().as_millis(),
                        temperature_mc,
                        set_point_mc,
                    };
                    match client.send(ROOM, &Frame::Reading(reading)).await {
                        Ok(()) => {
                            readings += 1;
                            if readings <= 3 || readings.is_multiple_of(20) {
                                hprintln!("qemu-room: reading {} sent", readings);
                            }
                        }
                        Err(e) => hprintln!("qemu-room: reading not sent: {}", e),
                    }
                }
            }
            Either3::Third(()) => {
                hprintln!(
                    "qemu-room: {} readings, {} acks, {} connections, {} disconnects",
                    readings,
                    acks,
                    connections,
                    disconnects
                );
                fail("deadline passed without the last command");
            }
        }
    }
}
