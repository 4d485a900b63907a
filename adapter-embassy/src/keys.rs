//! Masking keys from the firmware's RNG.

use core::cell::RefCell;

use roomwire_core::MaskKeySource;

/// A source of masking keys shared by the connections a client opens over
/// time (one after each reconnect), hence `&self`.
///
/// Implemented for a [`RefCell`] around any [`MaskKeySource`] (a closure
/// `FnMut() -> [u8; 4]`, or [`RngKeys`] over a hardware RNG). Keys
/// must be unpredictable (RFC 6455 §10.3): use the chip's TRNG or a
/// CSPRNG seeded from it.
///
/// ```
/// use core::cell::RefCell;
/// use roomwire_embassy::KeySource;
/// let mut state = 7u32; // a real firmware reads its TRNG here
/// let keys = RefCell::new(move || { state = state.wrapping_mul(747796405).wrapping_add(1); state.to_le_bytes() });
/// assert_ne!(keys.next_key(), keys.next_key());
/// ```
pub trait KeySource {
    /// The next 4-byte key.
    fn next_key(&self) -> [u8; 4];
}

impl<K: MaskKeySource> KeySource for RefCell<K> {
    fn next_key(&self) -> [u8; 4] {
        // The cell is never borrowed across a call, so the borrow fails
        // only if the key source itself re-enters this cell; then no key
        // can be drawn and an all-zero key is used rather than a panic.
        self.try_borrow_mut().map(|mut keys| keys.next_key()).unwrap_or_default()
    }
}

impl<T: KeySource + ?Sized> KeySource for &T {
    fn next_key(&self) -> [u8; 4] {
        (**self).next_key()
    }
}

/// A rand_core 0.6 RNG (feature `rand_core_06`) as a [`MaskKeySource`]:
/// `RefCell::new(RngKeys(rng))` is a [`KeySource`]. rand_core 0.6 and 0.9
/// (see [`RngKeys09`]) are the traits embassy HALs' RNG drivers implement.
#[derive(Debug)]
pub struct RngKeys<R>(pub R);

#[cfg(feature = "rand_core_06")]
impl<R: rand_core_06::RngCore> MaskKeySource for RngKeys<R> {
    fn next_key(&mut self) -> [u8; 4] {
        self.0.next_u32().to_le_bytes()
    }
}

/// A rand_core 0.9 RNG (feature `rand_core_09`) as a [`MaskKeySource`]:
/// `RefCell::new(RngKeys09(rng))` is a [`KeySource`].
#[derive(Debug)]
pub struct RngKeys09<R>(pub R);

#[cfg(feature = "rand_core_09")]
impl<R: rand_core_09::RngCore> MaskKeySource for RngKeys09<R> {
    fn next_key(&mut self) -> [u8; 4] {
        self.0.next_u32().to_le_bytes()
    }
}

/// The key source handed to each core connection: a shared reference.
pub(crate) struct KeyRef<'k, K: ?Sized>(pub(crate) &'k K);

impl<K: KeySource + ?Sized> MaskKeySource for KeyRef<'_, K> {
    fn next_key(&mut self) -> [u8; 4] {
        self.0.next_key()
    }
}
