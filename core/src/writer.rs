//! Writing into caller-owned output buffers.
//!
//! Every encoder of the core (handshake responses, JSON, envelopes) writes
//! through one [`Writer`], which counts what does not fit instead of
//! failing half-way, and [`write_twice`], which measures first so that an
//! undersized buffer is reported with the size it needs and left untouched.

use crate::error::InsufficientSize;

/// Run `write` once to measure, then once for real if it fits, so that an
/// undersized `out` is left untouched. `write` must be deterministic.
pub(crate) fn write_twice(out: &mut [u8], write: impl Fn(&mut Writer<'_>)) -> Result<usize, InsufficientSize> {
    let mut measure = Writer { out: &mut [], len: 0 };
    write(&mut measure);
    let required = measure.len;
    if required > out.len() {
        return Err(InsufficientSize { required });
    }
    let mut real = Writer { out, len: 0 };
    write(&mut real);
    Ok(real.len)
}

/// Appends to a byte slice, counting (but dropping) what does not fit, so
/// one pass over an empty slice measures the output. Shared by both wires.
pub(crate) struct Writer<'a> {
    out: &'a mut [u8],
    len: usize,
}

// `new` and `len` serve `std`'s `io::Write` path.
#[cfg_attr(not(feature = "std"), allow(dead_code))]
impl<'a> Writer<'a> {
    /// A writer at the start of `out`.
    pub(crate) fn new(out: &'a mut [u8]) -> Self {
        Self { out, len: 0 }
    }

    /// Bytes written (or that would have been).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends `bytes`.
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        let end = self.len.saturating_add(bytes.len());
        if let Some(dst) = self.out.get_mut(self.len..end) {
            dst.copy_from_slice(bytes);
        }
        self.len = end;
    }

    /// Appends `n` in decimal.
    pub(crate) fn put_decimal(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            if let Some(d) = digits.get_mut(at) {
                *d = b'0' + (n % 10) as u8;
            }
            n /= 10;
            if n == 0 || at == 0 {
                break;
            }
        }
        self.put(digits.get(at..).unwrap_or(&[]));
    }

    /// Appends `n` as an unsigned LEB128 varint (postcard's integers).
    pub(crate) fn put_varint(&mut self, mut n: u32) {
        let mut bytes = [0u8; 5];
        let mut len = 0;
        for slot in bytes.iter_mut() {
            len += 1;
            if n < 0x80 {
                *slot = n as u8;
                break;
            }
            *slot = (n as u8 & 0x7F) | 0x80;
            n >>= 7;
        }
        self.put(bytes.get(..len).unwrap_or(&[]));
    }
}

#[cfg(feature = "std")]
impl std::io::Write for Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.put(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
