//! The driver against a fake register block.
//!
//! [`Fake`] models the parts of the LAN9118 the driver uses, with the
//! chip's FIFO semantics, and is stricter than the chip where the driver
//! could go wrong unnoticed: reading an RX data word that belongs to no
//! popped status, popping a status before the previous frame's words were
//! all read, and a TX frame whose command words disagree, are all recorded
//! as violations. Self-clearing bits (soft reset, MAC CSR busy, MII busy,
//! PHY reset) stay set for a configurable number of reads, so the driver's
//! waits are exercised.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::drop_non_drop)]

extern crate std;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Wake, Waker};
use std::vec::Vec;
use std::{format, vec};

use core::task::Context;

use embassy_net_driver::{Driver, HardwareAddress, LinkState, RxToken as _, TxToken as _};

use super::*;

const QEMU_ID_REV: u32 = 0x0118_0001;
const LAN9220_ID_REV: u32 = 0x9220_0003;
const EEPROM_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const TX_FIFO_BYTES: u32 = 4608;

#[derive(Debug, Default, PartialEq, Eq)]
enum TxState {
    #[default]
    Idle,
    B {
        a: u32,
    },
    Data {
        a: u32,
        b: u32,
        words_left: usize,
        bytes: Vec<u8>,
    },
}

/// A fake LAN9118 register block.
struct Fake {
    byte_test: u32,
    id_rev: u32,
    /// Reads of HW_CFG that still show SRST after a reset (`u32::MAX`:
    /// forever).
    srst_reads: u32,
    srst_left: u32,
    hw_cfg: u32,
    pmt_ready: bool,
    irq_cfg: u32,
    int_sts: u32,
    int_en: u32,
    rx_cfg: u32,
    tx_cfg: u32,
    /// MAC CSR interface.
    csr_cmd: u32,
    csr_data: u32,
    csr_busy_reads: u32,
    csr_busy_left: u32,
    mac_cr: u32,
    mac: [u8; 6],
    /// What the EEPROM holds (loaded into `mac` at reset).
    eeprom: [u8; 6],
    mii_acc: u32,
    mii_data: u32,
    /// The PHY's address and registers.
    phy_addr: u32,
    phy: [u16; 32],
    phy_reset_reads: u32,
    phy_reset_left: u32,
    phy_writes: Vec<(u32, u16)>,
    /// TX side.
    tx: TxState,
    tx_words: u32,
    tx_free_override: Option<u32>,
    tx_status: VecDeque<u32>,
    sent: Vec<Vec<u8>>,
    commands: Vec<(u32, u32)>,
    /// RX side: statuses, then each frame's words (FCS included).
    rx_status: VecDeque<u32>,
    rx_frames: VecDeque<VecDeque<u32>>,
    /// Words of the frame whose status was popped, not yet read.
    rx_current: Option<VecDeque<u32>>,
    /// Everything the driver did that the chip would not forgive.
    violations: Vec<std::string::String>,
}

impl Fake {
    fn new(id_rev: u32) -> Self {
        let mut fake = Self {
            byte_test: BYTE_TEST_VALUE,
            id_rev,
            srst_reads: 3,
            srst_left: 0,
            hw_cfg: 0x0005_0004,
            pmt_ready: true,
            irq_cfg: 0,
            int_sts: 0,
            int_en: 0,
            rx_cfg: 0,
            tx_cfg: 0,
            csr_cmd: 0,
            csr_data: 0,
            csr_busy_reads: 2,
            csr_busy_left: 0,
            mac_cr: MAC_CR_PRMS,
            mac: EEPROM_MAC,
            eeprom: EEPROM_MAC,
            mii_acc: 0,
            mii_data: 0,
            phy_addr: 1,
            phy: [0; 32],
            phy_reset_reads: 2,
            phy_reset_left: 0,
            phy_writes: Vec::new(),
            tx: TxState::Idle,
            tx_words: 0,
            tx_free_override: None,
            tx_status: VecDeque::new(),
            sent: Vec::new(),
            commands: Vec::new(),
            rx_status: VecDeque::new(),
            rx_frames: VecDeque::new(),
            rx_current: None,
            violations: Vec::new(),
        };
        fake.phy_reset();
        fake
    }

    fn phy_reset(&mut self) {
        self.phy = [0; 32];
        self.phy[PHY_BCR as usize] = 0x3000;
        self.phy[PHY_BSR as usize] = 0x782D; // link up, auto-negotiation complete
        self.phy[PHY_ID1 as usize] = 0x0007;
        self.phy[3] = 0xC0D1;
        self.phy[PHY_ANAR as usize] = 0x01E1;
        self.phy[PHY_ANLPAR as usize] = 0x0F71; // partner: everything up to 100 full
    }

    /// A frame arrives from the wire (`status_bits` ORed into its status).
    fn deliver(&mut self, frame: &[u8], status_bits: u32) {
        let mut bytes = frame.to_vec();
        bytes.extend_from_slice(&[0xC0, 0xFF, 0xEE, 0x00]); // the FCS
        let words = bytes
            .chunks(4)
            .map(|c| {
                let mut w = [0u8; 4];
                w[..c.len()].copy_from_slice(c);
                u32::from_le_bytes(w)
            })
            .collect();
        self.rx_status.push_back((((frame.len() + 4) as u32) << 16) | status_bits);
        self.rx_frames.push_back(words);
        self.int_sts |= INT_RSFL;
    }

    fn rx_bytes_used(&self) -> u32 {
        let queued: usize = self.rx_frames.iter().map(VecDeque::len).sum();
        let current = self.rx_current.as_ref().map_or(0, VecDeque::len);
        ((queued + current) * 4) as u32
    }

    fn mac_reg_read(&mut self, index: u32) -> u32 {
        match index {
            MAC_CR => self.mac_cr,
            MAC_ADDRH => u32::from_le_bytes([self.mac[4], self.mac[5], 0, 0]),
            MAC_ADDRL => u32::from_le_bytes([self.mac[0], self.mac[1], self.mac[2], self.mac[3]]),
            MAC_MII_ACC => self.mii_acc,
            MAC_MII_DATA => self.mii_data,
            other => {
                self.violations.push(format!("read of unmodelled MAC CSR {other}"));
                0
            }
        }
    }

    fn mac_reg_write(&mut self, index: u32, value: u32) {
        match index {
            MAC_CR => self.mac_cr = value,
            MAC_ADDRH => {
                let [a, b, _, _] = value.to_le_bytes();
                self.mac[4] = a;
                self.mac[5] = b;
            }
            MAC_ADDRL => self.mac[..4].copy_from_slice(&value.to_le_bytes()),
            MAC_MII_DATA => self.mii_data = value & 0xFFFF,
            MAC_MII_ACC => {
                let phy = (value >> 11) & 0x1F;
                let reg = (value >> 6) & 0x1F;
                self.mii_acc = value & !MII_ACC_BUSY;
                if phy != self.phy_addr {
                    self.mii_data = 0xFFFF;
                } else if value & MII_ACC_WRITE != 0 {
                    let v = self.mii_data as u16;
                    self.phy_writes.push((reg, v));
                    if reg == PHY_BCR && v & BCR_RESET != 0 {
                        self.phy_reset();
                        self.phy_reset_left = self.phy_reset_reads;
                    } else {
                        self.phy[reg as usize] = v;
                    }
                } else {
                    let mut v = self.phy[reg as usize];
                    if reg == PHY_BCR && self.phy_reset_left > 0 {
                        if self.phy_reset_left != u32::MAX {
                            self.phy_reset_left -= 1;
                        }
                        v |= BCR_RESET;
                    }
                    self.mii_data = u32::from(v);
                }
            }
            other => self.violations.push(format!("write of unmodelled MAC CSR {other}")),
        }
    }

    fn tx_push(&mut self, value: u32) {
        match core::mem::take(&mut self.tx) {
            TxState::Idle => {
                self.tx_words += 1;
                self.tx = TxState::B { a: value };
            }
            TxState::B { a } => {
                self.tx_words += 1;
                let len = (a & 0x7FF) as usize;
                if a & (TX_CMD_A_FIRST_SEG | TX_CMD_A_LAST_SEG) != TX_CMD_A_FIRST_SEG | TX_CMD_A_LAST_SEG {
                    self.violations.push(format!("command A {a:#x}: not a single-segment frame"));
                }
                if a & 0x031F_0000 != 0 {
                    self.violations.push(format!("command A {a:#x}: alignment or data offset set"));
                }
                if (b_len(value)) != len {
                    self.violations.push(format!("command B length {} != command A length {len}", b_len(value)));
                }
                self.tx = TxState::Data { a, b: value, words_left: len.div_ceil(4), bytes: Vec::new() };
                if len == 0 {
                    self.violations.push("zero-length frame".into());
                    self.tx = TxState::Idle;
                }
            }
            TxState::Data { a, b, words_left, mut bytes } => {
                self.tx_words += 1;
                bytes.extend_from_slice(&value.to_le_bytes());
                if words_left == 1 {
                    bytes.truncate((a & 0x7FF) as usize);
                    self.sent.push(bytes);
                    self.commands.push((a, b));
                    self.tx_status.push_back(b & 0xFFFF_0000);
                    self.tx_words = 0;
                } else {
                    self.tx = TxState::Data { a, b, words_left: words_left - 1, bytes };
                }
            }
        }
    }

    fn soft_reset(&mut self) {
        let (id_rev, srst_reads, busy, phy_reset_reads, phy_addr) =
            (self.id_rev, self.srst_reads, self.csr_busy_reads, self.phy_reset_reads, self.phy_addr);
        let violations = core::mem::take(&mut self.violations);
        let eeprom = self.eeprom;
        let override_ = self.tx_free_override;
        let byte_test = self.byte_test;
        *self = Self::new(id_rev);
        self.srst_reads = srst_reads;
        self.srst_left = srst_reads;
        self.csr_busy_reads = busy;
        self.phy_reset_reads = phy_reset_reads;
        self.phy_addr = phy_addr;
        self.eeprom = eeprom;
        self.mac = eeprom;
        self.violations = violations;
        self.tx_free_override = override_;
        self.byte_test = byte_test;
    }
}

fn b_len(b: u32) -> usize {
    (b & 0x7FF) as usize
}

impl Registers for Fake {
    fn read(&mut self, offset: usize) -> u32 {
        match offset {
            0x00..=0x1C => {
                let Some(current) = self.rx_current.as_mut() else {
                    self.violations.push("RX data read with no status popped".into());
                    self.int_sts |= INT_RXE;
                    return 0;
                };
                let word = current.pop_front();
                if current.is_empty() {
                    self.rx_current = None;
                }
                word.unwrap_or(0)
            }
            RX_STATUS_FIFO => {
                if self.rx_current.is_some() {
                    self.violations.push("RX status popped before the previous frame was read".into());
                }
                match self.rx_status.pop_front() {
                    Some(status) => {
                        self.rx_current = self.rx_frames.pop_front();
                        status
                    }
                    None => {
                        self.violations.push("RX status popped from an empty FIFO".into());
                        0
                    }
                }
            }
            TX_STATUS_FIFO => self.tx_status.pop_front().unwrap_or_else(|| {
                self.violations.push("TX status popped from an empty FIFO".into());
                0
            }),
            ID_REV => self.id_rev,
            IRQ_CFG => self.irq_cfg,
            INT_STS => self.int_sts,
            INT_EN => self.int_en,
            BYTE_TEST => self.byte_test,
            RX_CFG => self.rx_cfg,
            TX_CFG => self.tx_cfg,
            HW_CFG => {
                if self.srst_left > 0 {
                    if self.srst_left != u32::MAX {
                        self.srst_left -= 1;
                    }
                    self.hw_cfg | HW_CFG_SRST
                } else {
                    self.hw_cfg
                }
            }
            RX_FIFO_INF => ((self.rx_status.len() as u32) << 16) | self.rx_bytes_used(),
            TX_FIFO_INF => {
                let free = self.tx_free_override.unwrap_or(TX_FIFO_BYTES - self.tx_words * 4);
                ((self.tx_status.len() as u32) << 16) | free
            }
            PMT_CTRL => u32::from(self.pmt_ready),
            MAC_CSR_CMD => {
                if self.csr_busy_left > 0 {
                    if self.csr_busy_left != u32::MAX {
                        self.csr_busy_left -= 1;
                    }
                    self.csr_cmd | MAC_CSR_BUSY
                } else {
                    self.csr_cmd & !MAC_CSR_BUSY
                }
            }
            MAC_CSR_DATA => self.csr_data,
            other => {
                self.violations.push(format!("read of unmodelled register {other:#x}"));
                0
            }
        }
    }

    fn write(&mut self, offset: usize, value: u32) {
        match offset {
            0x20..=0x3C => self.tx_push(value),
            IRQ_CFG => self.irq_cfg = value,
            INT_STS => self.int_sts &= !value,
            INT_EN => self.int_en = value,
            RX_CFG => self.rx_cfg = value,
            TX_CFG => self.tx_cfg = value,
            HW_CFG => {
                if value & HW_CFG_SRST != 0 {
                    self.soft_reset();
                } else {
                    self.hw_cfg = value;
                }
            }
            MAC_CSR_CMD => {
                if self.csr_busy_left > 0 {
                    self.violations.push("MAC CSR command written while busy".into());
                }
                self.csr_cmd = value;
                if value & MAC_CSR_BUSY != 0 {
                    let index = value & 0xFF;
                    if value & MAC_CSR_READ != 0 {
                        self.csr_data = self.mac_reg_read(index);
                    } else {
                        self.mac_reg_write(index, self.csr_data);
                    }
                    self.csr_busy_left = self.csr_busy_reads;
                }
            }
            MAC_CSR_DATA => {
                if self.csr_busy_left > 0 {
                    self.violations.push("MAC CSR data written while busy".into());
                }
                self.csr_data = value;
            }
            other => self.violations.push(format!("write of unmodelled register {other:#x} = {value:#x}")),
        }
    }
}

/// A waker that counts its wake-ups.
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Waker, Arc<Count>) {
    let count = Arc::new(Count(AtomicUsize::new(0)));
    (Waker::from(count.clone()), count)
}

fn up(fake: &mut Fake, config: Config) -> Lan9118<'static, &mut Fake> {
    static STATE: State = State::new();
    Lan9118::new(fake, &STATE, config).expect("bring-up")
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect();
    f[..6].copy_from_slice(&[0x02, 0, 0, 0x12, 0x34, 0x56]);
    f
}

fn receive_one(dev: &mut Lan9118<'_, &mut Fake>) -> Option<Vec<u8>> {
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let (rx, _tx) = dev.receive(&mut cx)?;
    Some(rx.consume(|bytes| bytes.to_vec()))
}

fn send_one(dev: &mut Lan9118<'_, &mut Fake>, bytes: &[u8]) -> bool {
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let Some(tx) = dev.transmit(&mut cx) else { return false };
    tx.consume(bytes.len(), |buf| buf.copy_from_slice(bytes));
    true
}

#[test]
fn brings_up_the_chip_qemu_reports() {
    let mut fake = Fake::new(QEMU_ID_REV);
    let mac = [0x02, 0x00, 0x00, 0x12, 0x34, 0x56];
    let dev = up(&mut fake, Config { mac: Some(mac), ..Config::default() });
    assert_eq!(dev.chip(), Chip::Lan9118);
    assert_eq!(dev.id_rev(), QEMU_ID_REV);
    assert_eq!(dev.mac_address(), mac);
    assert_eq!(dev.hardware_address(), HardwareAddress::Ethernet(mac));
    let caps = dev.capabilities();
    assert_eq!(caps.max_transmission_unit, MTU);
    drop(dev);
    assert_eq!(fake.mac, mac, "programmed through MAC_ADDRL/ADDRH");
    // Receiver and transmitter on, promiscuous off, full duplex resolved
    // from the partner's 100BASE-TX full duplex.
    assert_eq!(fake.mac_cr, MAC_CR_TXEN | MAC_CR_RXEN | MAC_CR_FDPX);
    assert_eq!(fake.tx_cfg, TX_CFG_TX_ON | TX_CFG_TXSAO);
    assert_eq!(fake.rx_cfg, 0);
    assert_eq!(fake.hw_cfg, HW_CFG_TX_FIF_SZ_5K | HW_CFG_MBO);
    assert_eq!((fake.int_en, fake.irq_cfg), (0, 0), "polled: no interrupts");
    // PHY: reset, advertise 10/100 half/full, auto-negotiate.
    assert_eq!(
        fake.phy_writes,
        vec![(PHY_BCR, BCR_RESET), (PHY_ANAR, ANAR_ALL_10_100), (PHY_BCR, BCR_AN_ENABLE | BCR_AN_RESTART)]
    );
    assert!(fake.violations.is_empty(), "{:?}", fake.violations);
}

#[test]
fn brings_up_a_lan9220_and_keeps_the_eeprom_mac() {
    let mut fake = Fake::new(LAN9220_ID_REV);
    let dev = up(&mut fake, Config::default());
    assert_eq!(dev.chip(), Chip::Lan9220);
    assert_eq!(dev.mac_address(), EEPROM_MAC);
    drop(dev);
    assert!(fake.violations.is_empty(), "{:?}", fake.violations);
}

#[test]
fn chip_ids() {
    assert_eq!(Chip::from_id_rev(0x0118_0001), Some(Chip::Lan9118));
    assert_eq!(Chip::from_id_rev(0x118A_0001), Some(Chip::Lan9118));
    assert_eq!(Chip::from_id_rev(0x9220_0000), Some(Chip::Lan9220));
    assert_eq!(Chip::from_id_rev(0x9221_0000), Some(Chip::Other(0x9221)));
    assert_eq!(Chip::from_id_rev(0x0117_0000), Some(Chip::Other(0x0117)));
    assert_eq!(Chip::from_id_rev(0x1234_0000), None);
    assert_eq!(Chip::from_id_rev(0), None);
}

#[test]
fn bring_up_failures_are_errors_not_hangs() {
    static STATE: State = State::new();
    let quick = Config { poll_limit: 1000, ..Config::default() };

    let mut fake = Fake::new(QEMU_ID_REV);
    fake.byte_test = 0x4321_8765; // 16-bit bus, words swapped
    assert_eq!(Lan9118::new(&mut fake, &STATE, quick).err(), Some(Error::ByteTest(0x4321_8765)));

    let mut fake = Fake::new(0x1234_0001);
    assert_eq!(Lan9118::new(&mut fake, &STATE, quick).err(), Some(Error::UnknownChip(0x1234_0001)));

    let mut fake = Fake::new(QEMU_ID_REV);
    fake.srst_reads = u32::MAX;
    assert_eq!(Lan9118::new(&mut fake, &STATE, quick).err(), Some(Error::Timeout(Step::SoftReset)));

    let mut fake = Fake::new(QEMU_ID_REV);
    fake.pmt_ready = false;
    // The soft reset keeps `pmt_ready` as the fake models a chip that
    // never wakes up.
    let mut never_ready = NeverReady(fake);
    assert_eq!(Lan9118::new(&mut never_ready, &STATE, quick).err(), Some(Error::Timeout(Step::Ready)));

    let mut fake = Fake::new(QEMU_ID_REV);
    fake.csr_busy_reads = u32::MAX;
    assert_eq!(
        Lan9118::new(&mut fake, &STATE, Config { mac: Some([2, 0, 0, 0, 0, 1]), ..quick }).err(),
        Some(Error::Timeout(Step::MacCsr))
    );

    let mut fake = Fake::new(QEMU_ID_REV);
    fake.phy_reset_reads = u32::MAX;
    assert_eq!(
        Lan9118::new(&mut fake, &STATE, Config { poll_limit: 50, ..quick }).err(),
        Some(Error::Timeout(Step::PhyReset))
    );

    let mut fake = Fake::new(QEMU_ID_REV);
    fake.phy_addr = 7; // nothing at address 1
    assert_eq!(Lan9118::new(&mut fake, &STATE, quick).err(), Some(Error::NoPhy));

    let mut fake = Fake::new(QEMU_ID_REV);
    fake.eeprom = [0; 6]; // no EEPROM
    assert_eq!(Lan9118::new(&mut fake, &STATE, quick).err(), Some(Error::InvalidMac([0; 6])));
    let mut fake = Fake::new(QEMU_ID_REV);
    assert_eq!(
        Lan9118::new(&mut fake, &STATE, Config { mac: Some([0xFF; 6]), ..quick }).err(),
        Some(Error::InvalidMac([0xFF; 6]))
    );
}

/// A chip whose PMT_CTRL.READY never sets.
struct NeverReady(Fake);

impl Registers for NeverReady {
    fn read(&mut self, offset: usize) -> u32 {
        if offset == PMT_CTRL { 0 } else { self.0.read(offset) }
    }

    fn write(&mut self, offset: usize, value: u32) {
        self.0.write(offset, value);
    }
}

#[test]
fn transmits_frames_word_exactly() {
    let mut fake = Fake::new(QEMU_ID_REV);
    let mut dev = up(&mut fake, Config { mac: Some([2, 0, 0, 0x12, 0x34, 0x56]), ..Config::default() });
    let lengths = [42, 60, 61, 62, 63, 64, 1513, MTU];
    let frames: Vec<Vec<u8>> = lengths.iter().enumerate().map(|(i, &n)| frame(n, i as u8)).collect();
    for f in &frames {
        assert!(send_one(&mut dev, f));
    }
    let stats = dev.stats();
    assert_eq!(stats.tx_frames, lengths.len() as u32);
    assert_eq!(stats.tx_errors, 0);
    drop(dev);
    assert_eq!(fake.sent, frames);
    for (i, ((a, b), &len)) in fake.commands.iter().zip(&lengths).enumerate() {
        assert_eq!(*a, TX_CMD_A_FIRST_SEG | TX_CMD_A_LAST_SEG | len as u32);
        assert_eq!(*b, ((i as u32 + 1) << 16) | len as u32, "tag {} and length", i + 1);
    }
    assert!(fake.tx_status.is_empty(), "statuses drained");
    assert!(fake.violations.is_empty(), "{:?}", fake.violations);
}

#[test]
fn counts_tx_errors_from_the_status_fifo() {
    static STATE: State = State::new();
    let mut fake = Fake::new(QEMU_ID_REV);
    // Statuses of earlier frames, one with the error summary bit.
    fake.tx_status.push_back(0x0005_0000 | TX_STS_ES);
    fake.tx_status.push_back(0x0006_0000);
    let mut dev = resume(&mut fake, &STATE);
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    assert!(dev.transmit(&mut cx).is_some());
    assert_eq!(dev.stats().tx_errors, 1);
    drop(dev);
    assert!(fake.tx_status.is_empty());
    assert!(fake.violations.is_empty(), "{:?}", fake.violations);
}

/// A driver over a fake that is already up (no second reset).
fn resume<'a>(fake: &'a mut Fake, state: &'static State) -> Lan9118<'static, &'a mut Fake> {
    Lan9118 {
        dev: Device { regs: fake, poll_limit: 1000, interrupts: false, tag: 0, stats: Stats::default() },
        state,
        chip: Chip::Lan9118,
        id_rev: QEMU_ID_REV,
        mac: EEPROM_MAC,
        phy: 1,
        mac_cr: MAC_CR_TXEN | MAC_CR_RXEN | MAC_CR_FDPX,
        link: LinkState::Up,
        link_polls: 0,
        rx: [0; BUFFER_LEN],
        tx: [0; BUFFER_LEN],
    }
}

#[test]
fn a_full_tx_fifo_gives_no_token_and_registers_the_waker() {
    static STATE: State = State::new();
    let mut fake = Fake::new(QEMU_ID_REV);
    fake.tx_free_override = Some(1000);
    let mut dev = resume(&mut fake, &STATE);
    let (waker, count) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(dev.transmit(&mut cx).is_none());
    STATE.wake();
    assert_eq!(count.0.load(Ordering::SeqCst), 1, "the tick wakes the stack");
    dev.dev.regs.tx_free_override = None;
    assert!(dev.transmit(&mut cx).is_some());
}

#[test]
fn a_tx_fifo_that_stays_full_drops_the_frame_without_writing() {
    static STATE: State = State::new();
    let mut fake = Fake::new(QEMU_ID_REV);
    let mut dev = resume(&mut fake, &STATE);
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let tx = dev.transmit(&mut cx).unwrap();
    // Something else filled the FIFO between the token and its use.
    tx.dev.regs.tx_free_override = Some(100);
    tx.consume(MTU, |buf| buf.fill(1));
    assert_eq!(dev.stats().tx_dropped, 1);
    drop(dev);
    assert!(fake.sent.is_empty());
    assert!(fake.violations.is_empty(), "{:?}", fake.violations);
}

#[test]
fn receives_frames_word_exactly_without_the_fcs() {
    let mut fake = Fake::new(QEMU_ID_REV);
    let mut dev = up(&mut fake, Config::default());
    let lengths = [14, 42, 60, 61, 62, 63, 64, 1513, MTU];
    let frames: Vec<Vec<u8>> = lengths.iter().enumerate().map(|(i, &n)| frame(n, i as u8)).collect();
    for f in &frames {
        dev.dev.regs.deliver(f, 0);
    }
    for f in &frames {
        assert_eq!(receive_one(&mut dev).as_ref(), Some(f));
    }
    assert_eq!(receive_one(&mut dev), None);
    assert_eq!(dev.stats().rx_frames, lengths.len() as u32);
    drop(dev);
    assert!(fake.rx_status.is_empty() && fake.rx_current.is_none());
    assert_eq!(fake.int_sts & INT_RXE, 0, "never over-read");
    assert!(fake.violations.is_empty(), "{:?}", fake.violations);
}

#[test]
fn skips_bad_frames_and_keeps_step() {
    let mut fake = Fake::new(QEMU_ID_REV);
    let mut dev = up(&mut fake, Config::default());
    let good = frame(99, 1);
    let fake_ = &mut dev.dev.regs;
    fake_.deliver(&frame(77, 2), RX_STS_ES); // CRC error
    fake_.deliver(&frame(1600, 3), 0); // longer than the MTU
    fake_.deliver(&frame(8, 4), 0); // runt
    fake_.deliver(&frame(64, 5), RX_STS_FILTER_FAIL);
    fake_.deliver(&good, 0);
    assert_eq!(receive_one(&mut dev), Some(good));
    assert_eq!(receive_one(&mut dev), None);
    let stats = dev.stats();
    assert_eq!((stats.rx_frames, stats.rx_dropped), (1, 4));
    drop(dev);
    assert!(fake.rx_frames.is_empty() && fake.rx_current.is_none());
    assert!(fake.violations.is_empty(), "{:?}", fake.violations);
}

#[test]
fn a_dropped_rx_token_loses_nothing_of_the_fifo() {
    let mut fake = Fake::new(QEMU_ID_REV);
    let mut dev = up(&mut fake, Config::default());
    dev.dev.regs.deliver(&frame(100, 1), 0);
    dev.dev.regs.deliver(&frame(200, 2), 0);
    {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let tokens = dev.receive(&mut cx);
        assert!(tokens.is_some());
        // dropped unconsumed
    }
    assert_eq!(receive_one(&mut dev), Some(frame(200, 2)));
    drop(dev);
    assert!(fake.violations.is_empty(), "{:?}", fake.violations);
}

#[test]
fn an_empty_fifo_registers_the_waker_for_the_tick() {
    static STATE: State = State::new();
    let mut fake = Fake::new(QEMU_ID_REV);
    let mut dev = Lan9118::new(&mut fake, &STATE, Config::default()).unwrap();
    let (waker, count) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(dev.receive(&mut cx).is_none());
    assert_eq!(count.0.load(Ordering::SeqCst), 0);
    STATE.wake();
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
}

#[test]
fn interrupts_mask_on_irq_and_unmask_when_drained() {
    static STATE: State = State::new();
    let mut fake = Fake::new(QEMU_ID_REV);
    let mut dev = Lan9118::new(&mut fake, &STATE, Config { interrupts: true, ..Config::default() }).unwrap();
    assert_eq!(dev.dev.regs.irq_cfg, IRQ_CFG_IRQ_EN | IRQ_CFG_IRQ_POL | IRQ_CFG_IRQ_TYPE);
    assert_eq!(dev.dev.regs.int_en, INT_RSFL);

    let (waker, count) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(dev.receive(&mut cx).is_none());

    // A frame arrives; the IRQ handler runs.
    dev.dev.regs.deliver(&frame(60, 9), 0);
    assert_ne!(dev.dev.regs.int_sts & dev.dev.regs.int_en, 0, "the IRQ line is asserted");
    on_interrupt(&mut dev.dev.regs, &STATE);
    assert_eq!(dev.dev.regs.int_en, 0, "masked until the driver drained the FIFO");
    assert_eq!(dev.dev.regs.int_sts & INT_RSFL, 0, "acknowledged");
    assert_eq!(count.0.load(Ordering::SeqCst), 1, "the stack is woken");

    let (rx, _) = dev.receive(&mut cx).unwrap();
    assert_eq!(rx.consume(|b| b.to_vec()), frame(60, 9));
    assert_eq!(dev.dev.regs.int_en, 0);
    assert!(dev.receive(&mut cx).is_none());
    assert_eq!(dev.dev.regs.int_en, INT_RSFL, "unmasked once empty");
    drop(dev);
    assert!(fake.violations.is_empty(), "{:?}", fake.violations);
}

#[test]
fn link_follows_the_phy_and_sets_the_duplex() {
    static STATE: State = State::new();
    let mut fake = Fake::new(QEMU_ID_REV);
    fake.phy_reset_reads = 0;
    let mut dev = Lan9118::new(&mut fake, &STATE, Config::default()).unwrap();
    let (waker, count) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(dev.link_state(&mut cx) == LinkState::Up);
    assert_ne!(dev.mac_cr() & MAC_CR_FDPX, 0);

    // Cable out: seen within LINK_POLL_EVERY calls; the waker is then
    // registered for the tick.
    dev.dev.regs.phy[PHY_BSR as usize] &= !(BSR_LINK | BSR_AN_COMPLETE);
    let mut polls = 0;
    while dev.link_state(&mut cx) == LinkState::Up {
        polls += 1;
        assert!(polls <= usize::from(LINK_POLL_EVERY));
    }
    STATE.wake();
    assert_eq!(count.0.load(Ordering::SeqCst), 1);

    // Back in, to a half-duplex-only partner.
    dev.dev.regs.phy[PHY_ANLPAR as usize] = 0x00A1; // 100 half, 10 half
    dev.dev.regs.phy[PHY_BSR as usize] |= BSR_LINK | BSR_AN_COMPLETE;
    assert!(dev.link_state(&mut cx) == LinkState::Up);
    assert_eq!(dev.mac_cr() & MAC_CR_FDPX, 0);
    assert_eq!(dev.dev.regs.mac_cr, MAC_CR_TXEN | MAC_CR_RXEN);
    drop(dev);
    assert!(fake.violations.is_empty(), "{:?}", fake.violations);
}

#[test]
fn multicast_option_sets_mcpas() {
    let mut fake = Fake::new(QEMU_ID_REV);
    let dev = up(&mut fake, Config { multicast: true, ..Config::default() });
    drop(dev);
    assert_ne!(fake.mac_cr & MAC_CR_MCPAS, 0);
    assert_eq!(fake.mac_cr & MAC_CR_PRMS, 0);
}

/// The driver under a stack: embassy-net's own loop, run by hand. Two
/// drivers wired back to back through their fakes exchange what one
/// transmits as what the other receives.
#[test]
fn frames_cross_between_two_drivers() {
    static A: State = State::new();
    static B: State = State::new();
    let mut fa = Fake::new(QEMU_ID_REV);
    let mut fb = Fake::new(LAN9220_ID_REV);
    let mut a = Lan9118::new(&mut fa, &A, Config { mac: Some([2, 0, 0, 0, 0, 0xA]), ..Config::default() }).unwrap();
    let mut b = Lan9118::new(&mut fb, &B, Config { mac: Some([2, 0, 0, 0, 0, 0xB]), ..Config::default() }).unwrap();
    for n in [60usize, 333, MTU] {
        let f = frame(n, n as u8);
        assert!(send_one(&mut a, &f));
        let sent = a.dev.regs.sent.pop().unwrap();
        b.dev.regs.deliver(&sent, 0);
        assert_eq!(receive_one(&mut b), Some(f.clone()));
        // And the answer, through the TX token of the receive pair.
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let (rx, tx) = b.receive_or_none(&mut cx, &f);
        assert!(rx);
        tx.consume(n, |buf| buf.copy_from_slice(&f));
        let back = b.dev.regs.sent.pop().unwrap();
        assert_eq!(back, f);
    }
    drop((a, b));
    assert!(fa.violations.is_empty() && fb.violations.is_empty(), "{:?} {:?}", fa.violations, fb.violations);
}

impl<'a> Lan9118<'static, &'a mut Fake> {
    /// Delivers `f` and takes the receive pair: whether the frame matched,
    /// and the TX token.
    fn receive_or_none(&mut self, cx: &mut Context<'_>, f: &[u8]) -> (bool, TxToken<'_, &'a mut Fake>) {
        self.dev.regs.deliver(f, 0);
        let (rx, tx) = self.receive(cx).unwrap();
        let same = rx.consume(|bytes| bytes == f);
        (same, tx)
    }
}
