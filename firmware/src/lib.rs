//! What the size-report firmwares share: a stub Ethernet driver, a stub
//! time driver, the network stack set-up, and the application's channel.
//!
//! The stubs read "hardware registers" with volatile loads, so the compiler
//! must keep every path a real driver would exercise (frames in, frames
//! out, timers firing): the measured code is the code a real firmware
//! carries. Nothing here is meant to run.
#![no_std]

use core::task::{Context, Waker};

use embassy_net::{Ipv4Address, Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use embassy_net_driver::{Capabilities, HardwareAddress, LinkState, RxToken, TxToken};
use static_cell::StaticCell;

/// The server the firmwares talk to.
pub const SERVER: &str = "192.0.2.1";
/// Its port.
pub const PORT: u16 = 8080;

/// An Ethernet controller's receive status register (made up: frame
/// length, 0 when no frame is waiting) and its data window.
const RX_STATUS: *const u32 = 0x4002_8000 as *const u32;
const RX_DATA: *const u8 = 0x4002_8100 as *const u8;
/// Transmit data window and "go" register.
const TX_DATA: *mut u8 = 0x4002_9000 as *mut u8;
const TX_GO: *mut u32 = 0x4002_8004 as *mut u32;
/// A free-running microsecond counter.
const TIMER: *const u32 = 0x4000_0004 as *const u32;

const MTU: usize = 1514;

/// A stub Ethernet driver over made-up registers.
pub struct StubEthernet;

/// A received frame, copied out of the controller.
pub struct Rx {
    len: usize,
}

/// Room for a frame to send.
pub struct Tx;

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
        let mut frame = [0u8; MTU];
        for (i, byte) in frame.iter_mut().take(self.len).enumerate() {
            // SAFETY: a device register window (never touched at run time in this stub).
            *byte = unsafe { core::ptr::read_volatile(RX_DATA.add(i)) };
        }
        f(&mut frame[..self.len])
    }
}

impl TxToken for Tx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = [0u8; MTU];
        let len = len.min(MTU);
        let result = f(&mut frame[..len]);
        for (i, byte) in frame.iter().take(len).enumerate() {
            // SAFETY: as above.
            unsafe { core::ptr::write_volatile(TX_DATA.add(i), *byte) };
        }
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(TX_GO, len as u32) };
        result
    }
}

impl embassy_net_driver::Driver for StubEthernet {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx;

    fn receive(&mut self, cx: &mut Context) -> Option<(Rx, Tx)> {
        // SAFETY: as above.
        let len = unsafe { core::ptr::read_volatile(RX_STATUS) } as usize;
        if len == 0 {
            cx.waker().wake_by_ref();
            return None;
        }
        Some((Rx { len: len.min(MTU) }, Tx))
    }

    fn transmit(&mut self, _cx: &mut Context) -> Option<Tx> {
        Some(Tx)
    }

    fn link_state(&mut self, _cx: &mut Context) -> LinkState {
        LinkState::Up
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = MTU;
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet([0x02, 0, 0, 0, 0, 0x02])
    }
}

/// A stub time driver: reads a free-running counter, wakes at once.
struct StubTime;

impl embassy_time_driver::Driver for StubTime {
    fn now(&self) -> u64 {
        // SAFETY: as above.
        u64::from(unsafe { core::ptr::read_volatile(TIMER) })
    }

    fn schedule_wake(&self, _at: u64, waker: &Waker) {
        waker.wake_by_ref();
    }
}

embassy_time_driver::time_driver_impl!(static DRIVER: StubTime = StubTime);

/// The network stack's runner type.
pub type Runner = embassy_net::Runner<'static, StubEthernet>;

/// A static 192.0.2.2/24 stack on the stub driver.
pub fn stack() -> (Stack<'static>, Runner) {
    static RESOURCES: StaticCell<StackResources<2>> = StaticCell::new();
    let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(Ipv4Address::new(192, 0, 2, 2), 24),
        gateway: None,
        dns_servers: Default::default(),
    });
    embassy_net::new(StubEthernet, config, RESOURCES.init(StackResources::new()), 0x0123_4567_89ab_cdef)
}

/// Whatever the firmware does with what it received: a register write the
/// compiler must keep.
pub fn output(value: u32) {
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(0x4003_0000 as *mut u32, value) };
}

/// A hardware random number (the chip's TRNG data register).
pub fn trng() -> u32 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(0x5006_0808 as *const u32) }
}

/// The masking keys' source a client borrows (a `MaskKeySource` in a
/// `RefCell`): [`mask_key`].
pub type Keys = core::cell::RefCell<fn() -> [u8; 4]>;

/// A masking key: four bytes of the TRNG.
pub fn mask_key() -> [u8; 4] {
    trng().to_le_bytes()
}

/// The application's channel: sensor readings up, commands down.
pub mod app {
    use serde::{Deserialize, Serialize};

    /// A reading the device sends.
    #[derive(Debug, Serialize, Deserialize)]
    pub struct Reading<'a> {
        /// Which sensor.
        pub sensor: &'a str,
        /// Its value.
        pub value: i32,
    }

    /// A command the device receives.
    #[derive(Debug, Serialize, Deserialize)]
    pub enum Command<'a> {
        /// Change the set point.
        SetPoint {
            /// The new value.
            value: i32,
        },
        /// Show a text.
        Say {
            /// The text.
            text: &'a str,
        },
    }

    roomwire_core::channel! {
        /// Telemetry: readings up, commands down, on any wire.
        pub struct Telemetry { path: "/ws/telemetry", in: Command<'a>, out: Reading<'a> }
    }

    roomwire_core::channel! {
        /// [`Telemetry`] in postcard only.
        pub struct TelemetryPostcard {
            path: "/ws/telemetry",
            wires: Wires::POSTCARD,
            in: Command<'a>,
            out: Reading<'a>,
        }
    }

    roomwire_core::channel! {
        /// [`Telemetry`] on the Alepha wire only.
        pub struct TelemetryAlepha {
            path: "/ws/telemetry",
            wires: Wires::ALEPHA,
            in: Command<'a>,
            out: Reading<'a>,
        }
    }
}
