//! The controller's register block: offsets, bits, and how it is reached.
//!
//! Offsets are in bytes from the base of the 256-byte block (the LAN9118
//! and LAN9220 share the map). Every access is 32 bits wide. The MAC's own
//! registers sit behind [`MAC_CSR_CMD`] / [`MAC_CSR_DATA`] (index constants
//! `MAC_*`), and the PHY's behind the MAC's [`MAC_MII_ACC`] /
//! [`MAC_MII_DATA`] (index constants `PHY_*`).

/// Access to the controller's 32-bit registers, by byte offset.
///
/// The driver never touches the hardware except through this trait, so its
/// logic runs on the host against a fake register block (see the crate's
/// tests). On a board, use [`Mmio`].
///
/// Reads are not pure: reading a FIFO port ([`RX_DATA_FIFO`],
/// [`RX_STATUS_FIFO`], [`TX_STATUS_FIFO`]) pops it.
pub trait Registers {
    /// Reads the register at `offset` (a multiple of 4 below 0x100).
    fn read(&mut self, offset: usize) -> u32;
    /// Writes the register at `offset` (a multiple of 4 below 0x100).
    fn write(&mut self, offset: usize, value: u32);
}

impl<R: Registers + ?Sized> Registers for &mut R {
    fn read(&mut self, offset: usize) -> u32 {
        (**self).read(offset)
    }

    fn write(&mut self, offset: usize, value: u32) {
        (**self).write(offset, value);
    }
}

/// The register block mapped in memory: volatile 32-bit accesses at
/// `base + offset`.
#[derive(Debug, Clone, Copy)]
pub struct Mmio {
    base: *mut u32,
}

// SAFETY: `Mmio` is an address; the hardware it names is not tied to a
// thread. Whoever created it promised exclusive use of the block (see
// `Mmio::new`), and the interrupt path only touches the interrupt
// registers, which the datasheet allows at any time.
unsafe impl Send for Mmio {}

impl Mmio {
    /// Base address of the controller on Arm's MPS2 AN385/AN386/AN500
    /// boards and QEMU's `mps2-an385` / `mps2-an386` machines.
    pub const MPS2_BASE: usize = 0x4020_0000;

    /// The register block at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be the address of a LAN9118-family register block (256
    /// bytes, 32-bit accesses), and nothing else may drive the controller
    /// while the driver owns it (an interrupt handler calling
    /// [`crate::on_interrupt`] with a copy is fine).
    pub const unsafe fn new(base: usize) -> Self {
        Self { base: base as *mut u32 }
    }
}

impl Registers for Mmio {
    fn read(&mut self, offset: usize) -> u32 {
        // SAFETY: `new`'s contract: a 256-byte device block; offsets are
        // the constants of this module (all below 0x100, 4-aligned).
        unsafe { self.base.add(offset / 4).read_volatile() }
    }

    fn write(&mut self, offset: usize, value: u32) {
        // SAFETY: as in `read`.
        unsafe { self.base.add(offset / 4).write_volatile(value) }
    }
}

// --- system control and status registers (byte offsets) -----------------

/// RX data FIFO port (0x00–0x1C alias the same port).
pub const RX_DATA_FIFO: usize = 0x00;
/// TX data FIFO port (0x20–0x3C alias the same port).
pub const TX_DATA_FIFO: usize = 0x20;
/// RX status FIFO port (pops one status word).
pub const RX_STATUS_FIFO: usize = 0x40;
/// TX status FIFO port (pops one status word).
pub const TX_STATUS_FIFO: usize = 0x48;
/// Chip id (bits 31:16) and revision (bits 15:0).
pub const ID_REV: usize = 0x50;
/// Interrupt pin configuration.
pub const IRQ_CFG: usize = 0x54;
/// Interrupt status (write 1 to clear).
pub const INT_STS: usize = 0x58;
/// Interrupt enables.
pub const INT_EN: usize = 0x5C;
/// Reads [`BYTE_TEST_VALUE`] on a correctly wired 32-bit bus.
pub const BYTE_TEST: usize = 0x64;
/// FIFO interrupt levels.
pub const FIFO_INT: usize = 0x68;
/// Receive configuration.
pub const RX_CFG: usize = 0x6C;
/// Transmit configuration.
pub const TX_CFG: usize = 0x70;
/// Hardware configuration (soft reset, TX FIFO size).
pub const HW_CFG: usize = 0x74;
/// Receive datapath control (fast-forward).
pub const RX_DP_CTRL: usize = 0x78;
/// RX FIFO information: status words used (23:16), data bytes used (15:0).
pub const RX_FIFO_INF: usize = 0x7C;
/// TX FIFO information: status words used (23:16), data bytes free (15:0).
pub const TX_FIFO_INF: usize = 0x80;
/// Power management control (bit 0: device ready).
pub const PMT_CTRL: usize = 0x84;
/// MAC CSR command: busy (31), read (30), register index (7:0).
pub const MAC_CSR_CMD: usize = 0xA4;
/// MAC CSR data.
pub const MAC_CSR_DATA: usize = 0xA8;

/// What [`BYTE_TEST`] reads.
pub const BYTE_TEST_VALUE: u32 = 0x8765_4321;

// --- bits --------------------------------------------------------------

/// HW_CFG: soft reset (self-clearing).
pub const HW_CFG_SRST: u32 = 1 << 0;
/// HW_CFG: must be written as one.
pub const HW_CFG_MBO: u32 = 1 << 20;
/// HW_CFG: TX FIFO size in KiB (bits 19:16); 5 is the reset value.
pub const HW_CFG_TX_FIF_SZ_5K: u32 = 5 << 16;
/// PMT_CTRL: the device is ready after reset.
pub const PMT_CTRL_READY: u32 = 1 << 0;

/// IRQ_CFG: enable the IRQ pin.
pub const IRQ_CFG_IRQ_EN: u32 = 1 << 8;
/// IRQ_CFG: active-high polarity.
pub const IRQ_CFG_IRQ_POL: u32 = 1 << 4;
/// IRQ_CFG: push-pull output.
pub const IRQ_CFG_IRQ_TYPE: u32 = 1 << 0;

/// INT_STS / INT_EN: RX status FIFO level reached (a frame arrived).
pub const INT_RSFL: u32 = 1 << 3;
/// INT_STS / INT_EN: receiver error (the RX FIFO was over-read).
pub const INT_RXE: u32 = 1 << 14;
/// INT_STS / INT_EN: transmitter error.
pub const INT_TXE: u32 = 1 << 13;

/// TX_CFG: transmitter on.
pub const TX_CFG_TX_ON: u32 = 1 << 1;
/// TX_CFG: TX status FIFO may overrun (statuses are optional).
pub const TX_CFG_TXSAO: u32 = 1 << 2;

/// TX command A: first segment of a frame.
pub const TX_CMD_A_FIRST_SEG: u32 = 1 << 13;
/// TX command A: last segment of a frame.
pub const TX_CMD_A_LAST_SEG: u32 = 1 << 12;

/// TX status: error summary.
pub const TX_STS_ES: u32 = 1 << 15;

/// RX status: the frame failed the address filter (only with RXALL).
pub const RX_STS_FILTER_FAIL: u32 = 1 << 30;
/// RX status: error summary (CRC, length, collision, too long, runt…).
pub const RX_STS_ES: u32 = 1 << 15;

// --- MAC CSRs (indexes through MAC_CSR_CMD) --------------------------------

/// MAC_CSR_CMD: busy (set to start, cleared when done).
pub const MAC_CSR_BUSY: u32 = 1 << 31;
/// MAC_CSR_CMD: read (else write).
pub const MAC_CSR_READ: u32 = 1 << 30;

/// MAC control register.
pub const MAC_CR: u32 = 1;
/// MAC address, bytes 4–5.
pub const MAC_ADDRH: u32 = 2;
/// MAC address, bytes 0–3.
pub const MAC_ADDRL: u32 = 3;
/// MII (PHY management) access.
pub const MAC_MII_ACC: u32 = 6;
/// MII data.
pub const MAC_MII_DATA: u32 = 7;

/// MAC_CR: receiver enable.
pub const MAC_CR_RXEN: u32 = 1 << 2;
/// MAC_CR: transmitter enable.
pub const MAC_CR_TXEN: u32 = 1 << 3;
/// MAC_CR: pass all multicast frames.
pub const MAC_CR_MCPAS: u32 = 1 << 19;
/// MAC_CR: promiscuous.
pub const MAC_CR_PRMS: u32 = 1 << 18;
/// MAC_CR: full duplex.
pub const MAC_CR_FDPX: u32 = 1 << 20;

/// MII_ACC: busy.
pub const MII_ACC_BUSY: u32 = 1 << 0;
/// MII_ACC: write (else read).
pub const MII_ACC_WRITE: u32 = 1 << 1;

// --- PHY registers (through MII) ------------------------------------------

/// Basic control.
pub const PHY_BCR: u32 = 0;
/// Basic status.
pub const PHY_BSR: u32 = 1;
/// PHY identifier 1.
pub const PHY_ID1: u32 = 2;
/// Auto-negotiation advertisement.
pub const PHY_ANAR: u32 = 4;
/// Auto-negotiation link partner ability.
pub const PHY_ANLPAR: u32 = 5;

/// BCR: reset (self-clearing).
pub const BCR_RESET: u16 = 1 << 15;
/// BCR: auto-negotiation enable.
pub const BCR_AN_ENABLE: u16 = 1 << 12;
/// BCR: restart auto-negotiation.
pub const BCR_AN_RESTART: u16 = 1 << 9;
/// BSR: link up.
pub const BSR_LINK: u16 = 1 << 2;
/// BSR: auto-negotiation complete.
pub const BSR_AN_COMPLETE: u16 = 1 << 5;
/// ANAR: 10/100, half and full duplex, IEEE 802.3 selector.
pub const ANAR_ALL_10_100: u16 = 0x01E1;
/// ANAR/ANLPAR: 100BASE-TX full duplex.
pub const AN_100_FULL: u16 = 1 << 8;
/// ANAR/ANLPAR: 100BASE-TX half duplex.
pub const AN_100_HALF: u16 = 1 << 7;
/// ANAR/ANLPAR: 10BASE-T full duplex.
pub const AN_10_FULL: u16 = 1 << 6;
