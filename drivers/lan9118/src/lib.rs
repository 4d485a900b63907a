//! # embassy-net-lan9118
//!
//! An [`embassy_net_driver::Driver`] for the SMSC (Microchip) LAN9118 and
//! LAN9220 Ethernet controllers: the LAN9220 of Arm's MPS2 FPGA boards and
//! the LAN9118 that QEMU's `mps2-an385` / `mps2-an386` machines emulate.
//! `#![no_std]`, nothing allocated, no `unsafe` outside [`Mmio`].
//!
//! * Bring-up ([`Lan9118::new`]): byte-order test, chip id (LAN9118 family
//!   or LAN9220), soft reset, MAC address through the MAC CSRs (programmed,
//!   or the one the chip loaded from its EEPROM), PHY reset and
//!   auto-negotiation through MII, then receiver and transmitter on.
//! * Transmit: one frame per TX token, written as command words A and B and
//!   the frame's little-endian words; the TX status FIFO is drained (error
//!   statuses are counted in [`Stats`]).
//! * Receive: one RX status word per frame, then exactly its number of data
//!   words (over-reading the FIFO is an error on this chip), the frame check
//!   sequence dropped. Frames with an error status or that do not fit are
//!   skipped word-exactly, so the FIFO never loses step.
//! * Polled, with an optional interrupt path ([`Config::interrupts`],
//!   [`on_interrupt`]).
//!
//! Every register access goes through the [`Registers`] trait, so the
//! driver's logic is tested on the host against a fake register block with
//! the chip's FIFO semantics (the crate's unit tests).
//!
//! ## Waking
//!
//! The chip has no way to wake a task by itself: the driver registers the
//! network stack's waker in a [`State`] and something must call
//! [`State::wake`]:
//!
//! * polled: a periodic tick (a timer interrupt every millisecond, say);
//! * interrupts: [`on_interrupt`] from the controller's IRQ handler (IRQ 13
//!   on MPS2 AN385/AN386), plus a slow tick (every 100 ms or so) for the
//!   link state, which is polled from the PHY.
//!
//! ## Example
//!
//! ```no_run
//! use embassy_net_lan9118::{Config, Lan9118, Mmio, State};
//!
//! static STATE: State = State::new();
//!
//! // SAFETY: the controller of an MPS2 board, driven by nothing else.
//! let regs = unsafe { Mmio::new(Mmio::MPS2_BASE) };
//! let config = Config { mac: Some([0x02, 0, 0, 0x12, 0x34, 0x56]), ..Config::default() };
//! let device = Lan9118::new(regs, &STATE, config).unwrap();
//! // `embassy_net::new(device, ...)`; and in the SysTick handler: `STATE.wake()`.
//! ```
#![no_std]

pub mod regs;

#[cfg(test)]
mod tests;

use core::task::Context;

use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};
use embassy_sync::waitqueue::AtomicWaker;

use crate::regs::*;
pub use crate::regs::{Mmio, Registers};

/// The largest frame handed to or accepted from the stack: 1500 bytes of
/// payload and the 14-byte Ethernet header (no VLAN tag, no FCS).
pub const MTU: usize = 1514;

/// The frame buffers: a maximal frame plus its 4-byte FCS, in whole words.
const BUFFER_LEN: usize = 1520;

/// The TX data FIFO space one frame takes at most: command words A and B
/// and the frame's words.
const TX_SLOT: u32 = BUFFER_LEN as u32 + 8;

/// Full-size frames the RX data FIFO surely holds (it has about 10 KiB
/// with the 5 KiB TX FIFO this driver configures).
const RX_BURST: usize = 4;

/// Link checks while the link is up: the PHY is asked again every this
/// many calls (it is asked on every call while the link is down).
const LINK_POLL_EVERY: u8 = 64;

/// Bring-up options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The MAC address to program; `None` keeps the one the chip loaded
    /// from its EEPROM (QEMU's `-nic ...,mac=`), which must then be a valid
    /// unicast address.
    pub mac: Option<[u8; 6]>,
    /// The PHY's MII address: 1 for the LAN9118/LAN9220 internal PHY.
    pub phy_address: u8,
    /// Drive the IRQ pin (active high, push-pull) on received frames; the
    /// firmware's IRQ handler calls [`on_interrupt`]. Without it the driver
    /// is purely polled.
    pub interrupts: bool,
    /// Accept every multicast frame (IPv6 neighbour discovery, mDNS).
    /// Unicast to this address and broadcast are always accepted.
    pub multicast: bool,
    /// How many times a self-clearing bit (soft reset, MAC CSR and MII busy,
    /// PHY reset) is polled before bring-up gives up.
    pub poll_limit: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self { mac: None, phy_address: 1, interrupts: false, multicast: false, poll_limit: 1_000_000 }
    }
}

/// Which controller answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chip {
    /// LAN9118 (and LAN9118A): ids 0x0118 and 0x118A. QEMU reports
    /// `0x0118_0001`.
    Lan9118,
    /// LAN9220 (Arm MPS2 boards): id 0x9220.
    Lan9220,
    /// Another member of the family with the same register interface
    /// (LAN9115/9116/9117 and their A parts, LAN9210/9211/9215–9218/9221):
    /// its id.
    Other(u16),
}

impl Chip {
    /// The chip of an `ID_REV` value (bits 31:16), if it is one this driver
    /// knows.
    pub fn from_id_rev(id_rev: u32) -> Option<Self> {
        let id = (id_rev >> 16) as u16;
        match id {
            0x0118 | 0x118A => Some(Self::Lan9118),
            0x9220 => Some(Self::Lan9220),
            0x0115..=0x0117 | 0x115A | 0x116A | 0x117A | 0x9210 | 0x9211 | 0x9215..=0x9218 | 0x9221 => {
                Some(Self::Other(id))
            }
            _ => None,
        }
    }
}

/// What a bring-up step found wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// `BYTE_TEST` did not read 0x87654321: no chip there, or the bus is
    /// not a little-endian 32-bit one. The value read.
    ByteTest(u32),
    /// `ID_REV` names no chip of the family. The value read.
    UnknownChip(u32),
    /// A self-clearing bit stayed set for [`Config::poll_limit`] polls.
    Timeout(Step),
    /// No PHY answered at [`Config::phy_address`].
    NoPhy,
    /// No MAC address configured and the chip's (from its EEPROM) is zero,
    /// multicast or broadcast.
    InvalidMac([u8; 6]),
}

/// The bring-up step of an [`Error::Timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `HW_CFG.SRST` never cleared.
    SoftReset,
    /// `PMT_CTRL.READY` never set.
    Ready,
    /// `MAC_CSR_CMD.BUSY` never cleared.
    MacCsr,
    /// `MII_ACC.MIIBZY` never cleared.
    Mii,
    /// The PHY's reset bit never cleared.
    PhyReset,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::ByteTest(v) => write!(f, "BYTE_TEST read {v:#010x}, expected 0x87654321"),
            Self::UnknownChip(v) => write!(f, "ID_REV {v:#010x} is not a LAN9118-family chip"),
            Self::Timeout(step) => write!(f, "timed out waiting for {step:?}"),
            Self::NoPhy => f.write_str("no PHY answered"),
            Self::InvalidMac(m) => write!(f, "invalid MAC address {m:02x?}"),
        }
    }
}

impl core::error::Error for Error {}

/// Counters since bring-up (wrapping).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames handed to the stack.
    pub rx_frames: u32,
    /// Frames skipped: error status, too short, or larger than [`MTU`].
    pub rx_dropped: u32,
    /// Frames written to the TX FIFO.
    pub tx_frames: u32,
    /// TX statuses with the error summary bit.
    pub tx_errors: u32,
    /// Frames the stack produced that could not be written (TX FIFO still
    /// full after [`Config::poll_limit`] polls).
    pub tx_dropped: u32,
}

/// What the driver shares with interrupt handlers and timers: the waker of
/// the task that polls it. Put it in a `static`.
pub struct State {
    waker: AtomicWaker,
}

impl core::fmt::Debug for State {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("State")
    }
}

impl State {
    /// A new state.
    pub const fn new() -> Self {
        Self { waker: AtomicWaker::new() }
    }

    /// Wakes the task polling the driver (the embassy-net runner), so it
    /// looks at the FIFOs and the link again. Call it from a periodic tick
    /// (polled mode), or let [`on_interrupt`] call it.
    pub fn wake(&self) {
        self.waker.wake();
    }
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

/// The controller's interrupt handler: masks the chip's interrupts,
/// acknowledges them, and wakes the driver, which unmasks them once it has
/// drained the RX FIFO. Call it from the IRQ handler (IRQ 13 on MPS2
/// AN385/AN386) with a copy of the driver's [`Mmio`].
pub fn on_interrupt<R: Registers>(regs: &mut R, state: &State) {
    regs.write(INT_EN, 0);
    let pending = regs.read(INT_STS);
    regs.write(INT_STS, pending);
    state.wake();
}

/// The register block and what transmit and receive share.
struct Device<R> {
    regs: R,
    poll_limit: u32,
    interrupts: bool,
    tag: u16,
    stats: Stats,
}

impl<R: Registers> Device<R> {
    /// Reads `BYTE_TEST`: the datasheet's way to let a write settle before
    /// the next read of a register it affects.
    fn settle(&mut self) {
        let _ = self.regs.read(BYTE_TEST);
    }

    /// Polls `offset` until `done` holds, at most `poll_limit` times.
    fn wait(&mut self, offset: usize, step: Step, done: impl Fn(u32) -> bool) -> Result<u32, Error> {
        for _ in 0..self.poll_limit.max(1) {
            let value = self.regs.read(offset);
            if done(value) {
                return Ok(value);
            }
        }
        Err(Error::Timeout(step))
    }

    fn mac_read(&mut self, index: u32) -> Result<u32, Error> {
        self.wait(MAC_CSR_CMD, Step::MacCsr, |v| v & MAC_CSR_BUSY == 0)?;
        self.regs.write(MAC_CSR_CMD, MAC_CSR_BUSY | MAC_CSR_READ | index);
        self.settle();
        self.wait(MAC_CSR_CMD, Step::MacCsr, |v| v & MAC_CSR_BUSY == 0)?;
        Ok(self.regs.read(MAC_CSR_DATA))
    }

    fn mac_write(&mut self, index: u32, value: u32) -> Result<(), Error> {
        self.wait(MAC_CSR_CMD, Step::MacCsr, |v| v & MAC_CSR_BUSY == 0)?;
        self.regs.write(MAC_CSR_DATA, value);
        self.regs.write(MAC_CSR_CMD, MAC_CSR_BUSY | index);
        self.settle();
        self.wait(MAC_CSR_CMD, Step::MacCsr, |v| v & MAC_CSR_BUSY == 0)?;
        Ok(())
    }

    fn mii_wait(&mut self) -> Result<(), Error> {
        for _ in 0..self.poll_limit.max(1) {
            if self.mac_read(MAC_MII_ACC)? & MII_ACC_BUSY == 0 {
                return Ok(());
            }
        }
        Err(Error::Timeout(Step::Mii))
    }

    fn phy_read(&mut self, phy: u8, reg: u32) -> Result<u16, Error> {
        self.mii_wait()?;
        self.mac_write(MAC_MII_ACC, (u32::from(phy & 0x1F) << 11) | ((reg & 0x1F) << 6) | MII_ACC_BUSY)?;
        self.mii_wait()?;
        Ok(self.mac_read(MAC_MII_DATA)? as u16)
    }

    fn phy_write(&mut self, phy: u8, reg: u32, value: u16) -> Result<(), Error> {
        self.mii_wait()?;
        self.mac_write(MAC_MII_DATA, u32::from(value))?;
        self.mac_write(
            MAC_MII_ACC,
            (u32::from(phy & 0x1F) << 11) | ((reg & 0x1F) << 6) | MII_ACC_WRITE | MII_ACC_BUSY,
        )?;
        self.mii_wait()
    }

    /// Pops every TX status, counting errors.
    fn drain_tx_status(&mut self) {
        // At most the FIFO's depth: a chip that keeps reporting statuses
        // cannot hold the driver here.
        for _ in 0..512 {
            if (self.regs.read(TX_FIFO_INF) >> 16) & 0xFF == 0 {
                break;
            }
            if self.regs.read(TX_STATUS_FIFO) & TX_STS_ES != 0 {
                self.stats.tx_errors = self.stats.tx_errors.wrapping_add(1);
            }
        }
    }

    fn tx_free(&mut self) -> u32 {
        self.regs.read(TX_FIFO_INF) & 0xFFFF
    }

    /// Reads and throws away `words` words of the RX data FIFO.
    fn discard(&mut self, words: usize) {
        for _ in 0..words {
            let _ = self.regs.read(RX_DATA_FIFO);
        }
    }

    /// Writes one frame to the TX data FIFO. The caller checked the space.
    fn send(&mut self, frame: &[u8]) {
        let len = frame.len() as u32;
        self.tag = self.tag.wrapping_add(1);
        self.regs.write(TX_DATA_FIFO, TX_CMD_A_FIRST_SEG | TX_CMD_A_LAST_SEG | len);
        self.regs.write(TX_DATA_FIFO, (u32::from(self.tag) << 16) | len);
        let mut words = frame.chunks_exact(4);
        for word in &mut words {
            let mut bytes = [0u8; 4];
            bytes.copy_from_slice(word);
            self.regs.write(TX_DATA_FIFO, u32::from_le_bytes(bytes));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut bytes = [0u8; 4];
            for (dst, src) in bytes.iter_mut().zip(rest) {
                *dst = *src;
            }
            self.regs.write(TX_DATA_FIFO, u32::from_le_bytes(bytes));
        }
        self.stats.tx_frames = self.stats.tx_frames.wrapping_add(1);
        self.drain_tx_status();
    }
}

/// The driver: give it to `embassy_net::new`.
pub struct Lan9118<'d, R: Registers> {
    dev: Device<R>,
    state: &'d State,
    chip: Chip,
    id_rev: u32,
    mac: [u8; 6],
    phy: u8,
    mac_cr: u32,
    link: LinkState,
    link_polls: u8,
    rx: [u8; BUFFER_LEN],
    tx: [u8; BUFFER_LEN],
}

impl<'d, R: Registers> Lan9118<'d, R> {
    /// Brings the controller up (see the crate docs for the steps) and
    /// returns the driver. It does not wait for the link: the stack sees it
    /// come up through [`embassy_net_driver::Driver::link_state`].
    pub fn new(regs: R, state: &'d State, config: Config) -> Result<Self, Error> {
        let mut dev = Device {
            regs,
            poll_limit: config.poll_limit,
            interrupts: config.interrupts,
            tag: 0,
            stats: Stats::default(),
        };

        let byte_test = dev.regs.read(BYTE_TEST);
        if byte_test != BYTE_TEST_VALUE {
            return Err(Error::ByteTest(byte_test));
        }
        let id_rev = dev.regs.read(ID_REV);
        let chip = Chip::from_id_rev(id_rev).ok_or(Error::UnknownChip(id_rev))?;

        // Soft reset: the device is ready again (PMT_CTRL, readable during
        // reset, says so) before the other registers may be read.
        dev.regs.write(HW_CFG, HW_CFG_SRST);
        dev.settle();
        dev.wait(PMT_CTRL, Step::Ready, |v| v & PMT_CTRL_READY != 0)?;
        dev.wait(HW_CFG, Step::SoftReset, |v| v & HW_CFG_SRST == 0)?;
        dev.regs.write(HW_CFG, HW_CFG_TX_FIF_SZ_5K | HW_CFG_MBO);

        // No interrupts until the end; everything pending acknowledged.
        dev.regs.write(INT_EN, 0);
        dev.regs.write(INT_STS, u32::MAX);
        dev.regs.write(IRQ_CFG, 0);
        dev.settle();

        // The MAC address.
        let mac = match config.mac {
            Some(mac) => {
                let [a, b, c, d, e, f] = mac;
                dev.mac_write(MAC_ADDRL, u32::from_le_bytes([a, b, c, d]))?;
                dev.mac_write(MAC_ADDRH, u32::from_le_bytes([e, f, 0, 0]))?;
                mac
            }
            None => {
                let [a, b, c, d] = dev.mac_read(MAC_ADDRL)?.to_le_bytes();
                let [e, f, _, _] = dev.mac_read(MAC_ADDRH)?.to_le_bytes();
                [a, b, c, d, e, f]
            }
        };
        if mac == [0; 6] || mac[0] & 1 != 0 {
            return Err(Error::InvalidMac(mac));
        }

        // The PHY: present, reset, advertise 10/100 half and full duplex,
        // auto-negotiate.
        let phy = config.phy_address;
        let id1 = dev.phy_read(phy, PHY_ID1)?;
        if id1 == 0 || id1 == 0xFFFF {
            return Err(Error::NoPhy);
        }
        dev.phy_write(phy, PHY_BCR, BCR_RESET)?;
        let mut reset_done = false;
        for _ in 0..dev.poll_limit.max(1) {
            if dev.phy_read(phy, PHY_BCR)? & BCR_RESET == 0 {
                reset_done = true;
                break;
            }
        }
        if !reset_done {
            return Err(Error::Timeout(Step::PhyReset));
        }
        dev.phy_write(phy, PHY_ANAR, ANAR_ALL_10_100)?;
        dev.phy_write(phy, PHY_BCR, BCR_AN_ENABLE | BCR_AN_RESTART)?;

        // Receiver (no data offset, word end alignment) and transmitter on;
        // promiscuous mode (QEMU's reset value) off.
        let mut mac_cr = MAC_CR_TXEN | MAC_CR_RXEN;
        if config.multicast {
            mac_cr |= MAC_CR_MCPAS;
        }
        dev.regs.write(RX_CFG, 0);
        dev.mac_write(MAC_CR, mac_cr)?;
        dev.regs.write(TX_CFG, TX_CFG_TX_ON | TX_CFG_TXSAO);

        let mut this = Self {
            dev,
            state,
            chip,
            id_rev,
            mac,
            phy,
            mac_cr,
            link: LinkState::Down,
            link_polls: 0,
            rx: [0; BUFFER_LEN],
            tx: [0; BUFFER_LEN],
        };
        // A link already up (QEMU's always is) sets the duplex now.
        this.refresh_link();

        if config.interrupts {
            this.dev.regs.write(IRQ_CFG, IRQ_CFG_IRQ_EN | IRQ_CFG_IRQ_POL | IRQ_CFG_IRQ_TYPE);
            this.dev.regs.write(INT_EN, INT_RSFL);
            this.dev.settle();
        }
        Ok(this)
    }

    /// The chip found at bring-up.
    pub fn chip(&self) -> Chip {
        self.chip
    }

    /// The raw `ID_REV` value (id in bits 31:16, revision in 15:0).
    pub fn id_rev(&self) -> u32 {
        self.id_rev
    }

    /// The MAC address in use.
    pub fn mac_address(&self) -> [u8; 6] {
        self.mac
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.dev.stats
    }

    /// The MAC control register as last written (full duplex follows the
    /// link partner).
    pub fn mac_cr(&self) -> u32 {
        self.mac_cr
    }

    /// Asks the PHY for the link state; on a change to up, sets the MAC's
    /// duplex to what auto-negotiation resolved.
    fn refresh_link(&mut self) {
        let Ok(bsr) = self.dev.phy_read(self.phy, PHY_BSR) else { return };
        let up = bsr & BSR_LINK != 0;
        if up && self.link == LinkState::Down {
            let full = if bsr & BSR_AN_COMPLETE != 0 {
                let ours = self.dev.phy_read(self.phy, PHY_ANAR).unwrap_or(0);
                let theirs = self.dev.phy_read(self.phy, PHY_ANLPAR).unwrap_or(0);
                let common = ours & theirs;
                // The best common mode, in 802.3's priority order.
                common & AN_100_FULL != 0 || (common & AN_100_HALF == 0 && common & AN_10_FULL != 0)
            } else {
                false
            };
            let mac_cr = if full { self.mac_cr | MAC_CR_FDPX } else { self.mac_cr & !MAC_CR_FDPX };
            if mac_cr != self.mac_cr && self.dev.mac_write(MAC_CR, mac_cr).is_ok() {
                self.mac_cr = mac_cr;
            }
        }
        self.link = if up { LinkState::Up } else { LinkState::Down };
    }
}

/// A received frame, already copied out of the RX FIFO.
pub struct RxToken<'a> {
    frame: &'a mut [u8],
}

impl embassy_net_driver::RxToken for RxToken<'_> {
    fn consume<T, F: FnOnce(&mut [u8]) -> T>(self, f: F) -> T {
        f(self.frame)
    }
}

/// Room for one frame to send.
pub struct TxToken<'a, R: Registers> {
    dev: &'a mut Device<R>,
    buffer: &'a mut [u8; BUFFER_LEN],
}

impl<R: Registers> embassy_net_driver::TxToken for TxToken<'_, R> {
    fn consume<T, F: FnOnce(&mut [u8]) -> T>(self, len: usize, f: F) -> T {
        let len = len.min(MTU);
        let frame = self.buffer.get_mut(..len).unwrap_or(&mut []);
        let result = f(frame);
        // The token was handed out with room for a frame; on hardware the
        // FIFO may be shared with statuses still draining, so check again.
        let needed = len as u32 + 8;
        let mut free = self.dev.tx_free();
        for _ in 0..self.dev.poll_limit {
            if free >= needed {
                break;
            }
            self.dev.drain_tx_status();
            free = self.dev.tx_free();
        }
        if free >= needed {
            self.dev.send(frame);
        } else {
            self.dev.stats.tx_dropped = self.dev.stats.tx_dropped.wrapping_add(1);
        }
        result
    }
}

impl<R: Registers> embassy_net_driver::Driver for Lan9118<'_, R> {
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, R>
    where
        Self: 'a;

    fn receive(&mut self, cx: &mut Context) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        // Bounded by the status FIFO's depth: every turn pops one status.
        let mut registered = false;
        let mut len = None;
        for _ in 0..1024 {
            if (self.dev.regs.read(RX_FIFO_INF) >> 16) & 0xFF == 0 {
                if registered {
                    break;
                }
                // Register first, then look once more: a frame arriving in
                // between is either seen now or wakes the waker.
                self.state.waker.register(cx.waker());
                if self.dev.interrupts {
                    self.dev.regs.write(INT_EN, INT_RSFL);
                }
                registered = true;
                continue;
            }
            let status = self.dev.regs.read(RX_STATUS_FIFO);
            let frame_len = ((status >> 16) & 0x3FFF) as usize;
            let words = frame_len.div_ceil(4);
            // The frame as the stack sees it: without the 4-byte FCS.
            let data_len = frame_len.saturating_sub(4);
            if status & (RX_STS_ES | RX_STS_FILTER_FAIL) != 0 || !(14..=MTU).contains(&data_len) {
                self.dev.discard(words);
                self.dev.stats.rx_dropped = self.dev.stats.rx_dropped.wrapping_add(1);
                continue;
            }
            // Exactly `words` words: the FCS comes along and is dropped.
            for chunk in self.rx.chunks_exact_mut(4).take(words) {
                chunk.copy_from_slice(&self.dev.regs.read(RX_DATA_FIFO).to_le_bytes());
            }
            self.dev.stats.rx_frames = self.dev.stats.rx_frames.wrapping_add(1);
            len = Some(data_len);
            break;
        }
        let len = len?;
        let Self { dev, rx, tx, .. } = self;
        let frame = rx.get_mut(..len)?;
        Some((RxToken { frame }, TxToken { dev, buffer: tx }))
    }

    fn transmit(&mut self, cx: &mut Context) -> Option<Self::TxToken<'_>> {
        self.dev.drain_tx_status();
        if self.dev.tx_free() < TX_SLOT {
            if self.dev.interrupts {
                // No TX-space interrupt is used: look again soon. The FIFO
                // drains at wire speed, so this is brief.
                cx.waker().wake_by_ref();
            } else {
                self.state.waker.register(cx.waker());
            }
            return None;
        }
        Some(TxToken { dev: &mut self.dev, buffer: &mut self.tx })
    }

    fn link_state(&mut self, cx: &mut Context) -> LinkState {
        self.link_polls = self.link_polls.wrapping_add(1);
        if self.link == LinkState::Down || self.link_polls.is_multiple_of(LINK_POLL_EVERY) {
            self.refresh_link();
        }
        if self.link == LinkState::Down {
            self.state.waker.register(cx.waker());
        }
        self.link
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = MTU;
        // Caps a TCP peer's window at RX_BURST full segments, which the RX
        // data FIFO (about 10 KiB) holds: the chip drops frames silently
        // when it is full.
        caps.max_burst_size = Some(RX_BURST);
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet(self.mac)
    }
}
