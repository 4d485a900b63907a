//! Bounded nesting for a deserializer that has no bound of its own.
//!
//! Decoding a recursive type recurses once per level of the input, on the
//! stack. JSON payloads are bounded before serde sees them
//! ([`json::MAX_DEPTH`](crate::json::MAX_DEPTH)); postcard has no limit, and
//! one byte per level is enough to nest (`enum List { Nil, Cons(Box<List>) }`
//! is a run of `1`s), so a 1 MiB message would overflow any stack. [`Bounded`]
//! wraps a deserializer and counts the containers open around the value
//! being decoded: sequences, tuples, structs, maps, enum variants, `Some` and
//! newtype structs each open one. Past the limit, decoding fails with an
//! error instead of going deeper.
//!
//! It bounds two more things a peer controls:
//!
//! * **Items.** A list or map announces its length; items that take no
//!   bytes (`()`, empty structs) would let a few bytes claiming 2⁶⁴ of them
//!   loop that often. The elements of lists and entries of maps of one
//!   decode (not the fields of structs and tuples, whose number the type
//!   fixes) are counted against a budget (the payload's length plus
//!   [`ZERO_SIZED_ITEMS`]), past which decoding fails.
//! * **Map keys** ([`Nesting::string_keys`]). serde-json-core panics when
//!   a map key is asked for as anything but a borrowed string (a number, a
//!   `String`, an enum): keys are handed to the type as strings, or refused
//!   with an error, never to the deserializer that would panic.
//! * **Escaped strings** ([`Nesting::unescaping_into`]). serde-json-core
//!   unescapes each `\u` escape on its own, so a surrogate pair
//!   (`"\ud83d\ude00"`, which is how Python's `json.dumps` writes every
//!   emoji) fails to decode. Given no buffer, it hands strings over raw,
//!   escapes included: they are unescaped here, pairs joined, into the
//!   caller's buffer.
//!
//! The wrapper forwards every call and adds nothing but the counts, the
//! key guard and the unescaping: a type decodes to the same value through
//! it as with serde_json under `std` (serde-json-core's
//! `EscapedStr`, which would hand the raw text over, is read as a string
//! like any other, as serde_json reads it).

use core::cell::Cell;
use core::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};

use crate::json::RawStr;

/// Items beyond the payload's length that a decode may visit: room for
/// lists of values that take no bytes, and a bound on them.
pub(crate) const ZERO_SIZED_ITEMS: usize = 1024;

/// Why a decode was stopped by the bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Nested past the limit.
    TooDeep,
    /// More sequence elements and map entries than the budget.
    TooManyItems,
    /// A map key asked for as something other than a string.
    KeyNotString,
    /// An escaped string longer, unescaped, than the buffer it is
    /// unescaped into.
    LongString,
}

/// The bounds of one decode, shared by every wrapper of it.
pub(crate) struct Nesting<'s> {
    depth: Cell<usize>,
    limit: usize,
    items: Cell<usize>,
    string_keys: bool,
    /// Where strings that arrive raw are unescaped: `Some` when they do
    /// (lent out while one is being visited).
    unescape: Option<Cell<Option<&'s mut [u8]>>>,
    refused: Cell<Option<Refused>>,
}

impl<'s> Nesting<'s> {
    /// Bounds that refuse to go past `limit` open containers, or past
    /// `payload_len` + [`ZERO_SIZED_ITEMS`] items.
    pub(crate) const fn new(limit: usize, payload_len: usize) -> Self {
        Self {
            depth: Cell::new(0),
            limit,
            items: Cell::new(payload_len.saturating_add(ZERO_SIZED_ITEMS)),
            string_keys: false,
            unescape: None,
            refused: Cell::new(None),
        }
    }

    /// Map keys are strings (JSON): they are asked for as strings only.
    #[cfg_attr(feature = "std", allow(dead_code))]
    pub(crate) const fn string_keys(mut self) -> Self {
        self.string_keys = true;
        self
    }

    /// Strings arrive raw, escapes included (serde-json-core given no
    /// buffer): they are unescaped into `buffer`, which must hold the
    /// longest of them unescaped.
    #[cfg_attr(feature = "std", allow(dead_code))]
    pub(crate) fn unescaping_into(mut self, buffer: &'s mut [u8]) -> Self {
        self.unescape = Some(Cell::new(Some(buffer)));
        self
    }

    /// Whether, and why, a decode was stopped by the bounds.
    pub(crate) fn refused(&self) -> Option<Refused> {
        self.refused.get()
    }

    fn refuse<E: de::Error>(&self, why: Refused, message: &'static str) -> E {
        self.refused.set(Some(why));
        E::custom(message)
    }

    /// Run `decode` one container deeper.
    fn nest<T, E: de::Error>(&self, decode: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let depth = self.depth.get().saturating_add(1);
        if depth > self.limit {
            return Err(self.refuse(Refused::TooDeep, "message nested too deeply"));
        }
        self.depth.set(depth);
        let decoded = decode();
        self.depth.set(depth - 1);
        decoded
    }

    /// Count one more item (an element of a list, or a map entry), once
    /// decoded: every such item that is not of a zero-sized type took a
    /// byte at least (an empty list its length, `None` its tag, a struct
    /// its fields'), so only those can pass the payload's length.
    fn item<E: de::Error>(&self) -> Result<(), E> {
        match self.items.get().checked_sub(1) {
            Some(left) => {
                self.items.set(left);
                Ok(())
            }
            None => Err(self.refuse(Refused::TooManyItems, "message has too many items")),
        }
    }

    /// Reads a string from `inner` for `visitor`, unescaped first, when
    /// strings arrive raw; when they do not, gives both back to be
    /// forwarded.
    fn read_string<'de, D: Deserializer<'de>, V: Visitor<'de>>(
        &self,
        inner: D,
        visitor: V,
    ) -> Result<Result<V::Value, D::Error>, (D, V)> {
        let Some(unescape) = &self.unescape else { return Err((inner, visitor)) };
        Ok(inner.deserialize_str(RawString).and_then(|raw| {
            let raw = RawStr::new(raw);
            if let Some(text) = raw.as_borrowed() {
                return visitor.visit_borrowed_str(text);
            }
            let mut buffer = unescape.take();
            let read = match buffer.as_deref_mut().map(|buffer| raw.unescape_into(buffer)) {
                Some(Ok(text)) => visitor.visit_str(text),
                _ => Err(self.refuse(Refused::LongString, "escaped string longer than the unescape buffer")),
            };
            unescape.set(buffer);
            read
        }))
    }
}

/// The text of a string as the deserializer hands it over.
struct RawString;

impl<'de> Visitor<'de> for RawString {
    type Value = &'de str;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<&'de str, E> {
        Ok(v)
    }
}

/// A deserializer, visitor, seed or access of one decode, with its count.
pub(crate) struct Bounded<'n, 's, T> {
    inner: T,
    nesting: &'n Nesting<'s>,
    /// A sequence visited through this visitor counts its elements: one
    /// whose length the peer announces (a list, a map). Not the fields of
    /// a struct or tuple, which postcard also reads as a sequence: their
    /// number is the type's, and a list of small structs has more fields
    /// than bytes.
    counts_items: bool,
}

impl<'n, 's, T> Bounded<'n, 's, T> {
    /// `inner`, counted in `nesting`.
    pub(crate) fn new(inner: T, nesting: &'n Nesting<'s>) -> Self {
        Self { inner, nesting, counts_items: true }
    }

    fn wrap<U>(&self, inner: U) -> Bounded<'n, 's, U> {
        Bounded::new(inner, self.nesting)
    }

    /// A visitor of a struct's or tuple's fields.
    fn fields<U>(&self, inner: U) -> Bounded<'n, 's, U> {
        Bounded { inner, nesting: self.nesting, counts_items: false }
    }
}

/// Forward `deserialize_*` methods, wrapping the visitor.
macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self $(, $arg: $ty)*, visitor: V) -> Result<V::Value, Self::Error> {
            let visitor = self.wrap(visitor);
            self.inner.$method($($arg,)* visitor)
        }
    )*};
}

/// `deserialize_*` methods of strings (and what serde-json-core reads as
/// one): through [`Nesting::read_string`], else forwarded.
macro_rules! read_strings {
    ($($method:ident();)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            let nesting = self.nesting;
            match nesting.read_string(self.inner, visitor) {
                Ok(read) => read,
                Err((inner, visitor)) => inner.$method(Bounded::new(visitor, nesting)),
            }
        }
    )*};
}

/// Calls `$apply!` with the `deserialize_*` methods of every kind of value
/// but strings, characters, structs and tuples: the one list that
/// [`Bounded`] forwards and a map key ([`StringKeyDeserializer`]) refuses.
macro_rules! value_methods {
    ($apply:ident) => {
        $apply! {
            deserialize_bool();
            deserialize_i8();
            deserialize_i16();
            deserialize_i32();
            deserialize_i64();
            deserialize_i128();
            deserialize_u8();
            deserialize_u16();
            deserialize_u32();
            deserialize_u64();
            deserialize_u128();
            deserialize_f32();
            deserialize_f64();
            deserialize_bytes();
            deserialize_byte_buf();
            deserialize_option();
            deserialize_unit();
            deserialize_unit_struct(name: &'static str);
            deserialize_newtype_struct(name: &'static str);
            deserialize_seq();
            deserialize_map();
            deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        }
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Bounded<'_, '_, D> {
    type Error = D::Error;

    value_methods!(forward_deserialize);
    forward_deserialize! {
        deserialize_any();
        deserialize_ignored_any();
    }
    read_strings! {
        deserialize_str();
        deserialize_string();
        deserialize_char();
        deserialize_identifier();
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Self::Error> {
        let visitor = self.fields(visitor);
        self.inner.deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let visitor = self.fields(visitor);
        self.inner.deserialize_tuple_struct(name, len, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let visitor = self.fields(visitor);
        self.inner.deserialize_struct(name, fields, visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Forward `visit_*` methods of values that hold no other value.
macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Bounded<'_, '_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let nesting = self.nesting;
        nesting.nest(|| self.inner.visit_some(Bounded::new(deserializer, nesting)))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let nesting = self.nesting;
        nesting.nest(|| self.inner.visit_newtype_struct(Bounded::new(deserializer, nesting)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let (nesting, counts_items) = (self.nesting, self.counts_items);
        nesting.nest(|| self.inner.visit_seq(Bounded { inner: seq, nesting, counts_items }))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let (nesting, counts_items) = (self.nesting, self.counts_items);
        nesting.nest(|| self.inner.visit_map(Bounded { inner: map, nesting, counts_items }))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        let nesting = self.nesting;
        nesting.nest(|| self.inner.visit_enum(Bounded::new(data, nesting)))
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Bounded<'_, '_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let deserializer = self.wrap(deserializer);
        self.inner.deserialize(deserializer)
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Bounded<'_, '_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Self::Error> {
        let seed = self.wrap(seed);
        let element = self.inner.next_element_seed(seed)?;
        if element.is_some() && self.counts_items {
            self.nesting.item()?;
        }
        Ok(element)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Bounded<'_, '_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Self::Error> {
        let key = if self.nesting.string_keys {
            self.inner.next_key_seed(StringKey { seed, nesting: self.nesting })?
        } else {
            let seed = self.wrap(seed);
            self.inner.next_key_seed(seed)?
        };
        if key.is_some() && self.counts_items {
            self.nesting.item()?;
        }
        Ok(key)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Self::Error> {
        let seed = self.wrap(seed);
        self.inner.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, 'n, 's, A: EnumAccess<'de>> EnumAccess<'de> for Bounded<'n, 's, A> {
    type Error = A::Error;
    type Variant = Bounded<'n, 's, A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self::Variant), Self::Error> {
        let nesting = self.nesting;
        let (value, variant) = self.inner.variant_seed(Bounded::new(seed, nesting))?;
        Ok((value, Bounded::new(variant, nesting)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Bounded<'_, '_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), Self::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Self::Error> {
        let seed = self.wrap(seed);
        self.inner.newtype_variant_seed(seed)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Self::Error> {
        let visitor = self.fields(visitor);
        self.inner.tuple_variant(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let visitor = self.fields(visitor);
        self.inner.struct_variant(fields, visitor)
    }
}

/// A map key's seed that hands it a [`StringKeyDeserializer`].
struct StringKey<'n, 's, K> {
    seed: K,
    nesting: &'n Nesting<'s>,
}

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for StringKey<'_, '_, K> {
    type Value = K::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        self.seed.deserialize(StringKeyDeserializer { inner: deserializer, nesting: self.nesting })
    }
}

/// A map key: asked for as a string (or as anything, which a string is),
/// it is read as one; asked for as another type, it is refused.
struct StringKeyDeserializer<'n, 's, D> {
    inner: D,
    nesting: &'n Nesting<'s>,
}

impl<'de, D: Deserializer<'de>> StringKeyDeserializer<'_, '_, D> {
    /// The key, read as a string (unescaped if strings arrive raw).
    fn read_key<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        match self.nesting.read_string(self.inner, visitor) {
            Ok(read) => read,
            Err((inner, visitor)) => inner.deserialize_str(visitor),
        }
    }
}

/// `deserialize_*` methods of a map key that is not asked for as a string.
macro_rules! refuse_key {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self $(, $arg: $ty)*, _: V) -> Result<V::Value, Self::Error> {
            $(let _ = $arg;)*
            Err(self.nesting.refuse(Refused::KeyNotString, "map keys must be strings"))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for StringKeyDeserializer<'_, '_, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.read_key(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.read_key(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.read_key(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.read_key(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.inner.deserialize_ignored_any(visitor)
    }

    value_methods!(refuse_key);
    refuse_key! {
        deserialize_char();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use std::boxed::Box;
    use std::string::{String, ToString};
    use std::vec;
    use std::vec::Vec;

    use serde::{Deserialize, Serialize};

    use crate::json::MAX_DEPTH;
    use crate::payload::{decode_payload, encode_payload};
    use crate::wire::WireFormat;

    /// One byte per level in postcard: `1` (Cons) repeated, then `0` (Nil).
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum List {
        Nil,
        Cons(Box<List>),
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Tree<'a> {
        name: &'a str,
        note: Option<String>,
        children: Vec<Tree<'a>>,
        tagged: Option<Box<Tree<'a>>>,
    }

    fn list(depth: usize) -> List {
        (0..depth).fold(List::Nil, |inner, _| List::Cons(Box::new(inner)))
    }

    #[test]
    fn a_deep_postcard_message_is_an_error_not_a_stack_overflow() {
        // A mebibyte of nesting; without the bound this overflows any
        // thread's stack.
        let mut payload = vec![1u8; 1 << 20];
        payload.push(0);
        let error = decode_payload::<List>(WireFormat::Postcard, &payload, &mut []).unwrap_err();
        assert_eq!(error.to_string(), "message nested deeper than 64 levels");
        assert!(!error.is_syntax());
    }

    #[test]
    fn the_limit_is_the_json_limit_in_both_formats() {
        // `List` at depth d opens d enum containers (the Nil unit variant
        // opens one more): MAX_DEPTH - 1 Cons fit, MAX_DEPTH do not.
        for (depth, fits) in [(MAX_DEPTH - 1, true), (MAX_DEPTH, false)] {
            let mut payload = [0u8; 2 * MAX_DEPTH];
            let len = encode_payload(WireFormat::Postcard, &list(depth), &mut payload).unwrap();
            let payload = &payload[..len];
            let decoded = decode_payload::<List>(WireFormat::Postcard, payload, &mut []);
            assert_eq!(decoded.is_ok(), fits, "postcard, depth {depth}");
        }
        // JSON refuses the level after the same limit, before serde runs.
        let json = |depth: usize| "[".repeat(depth) + &"]".repeat(depth);
        assert!(crate::json::validate(json(MAX_DEPTH).as_bytes()).is_ok());
        assert!(crate::json::validate(json(MAX_DEPTH + 1).as_bytes()).is_err());
    }

    #[test]
    fn values_decode_through_the_bound_as_without_it() {
        let leaf = |name| Tree { name, note: None, children: Vec::new(), tagged: None };
        let tree = Tree {
            name: "root",
            note: Some("a \"quoted\" note".to_string()),
            children: vec![leaf("a"), Tree { tagged: Some(Box::new(leaf("c"))), ..leaf("b") }],
            tagged: None,
        };
        let mut payload = [0u8; 256];
        let len = encode_payload(WireFormat::Postcard, &tree, &mut payload).unwrap();
        let payload = &payload[..len];
        let decoded: Tree = decode_payload(WireFormat::Postcard, payload, &mut []).unwrap();
        assert_eq!(decoded, tree);
        assert_eq!(decoded, postcard::from_bytes::<Tree>(payload).unwrap());
        assert!(decode_payload::<Tree>(WireFormat::Postcard, &payload[..payload.len() - 1], &mut []).is_err());
    }

    #[test]
    fn items_that_take_no_bytes_are_bounded_by_the_payloads_length() {
        // A million `()` claimed in four bytes: refused, not looped over.
        let mut payload = [0u8; 8];
        let len = encode_payload(WireFormat::Postcard, &vec![(); 1_000_000], &mut payload).unwrap();
        let error = decode_payload::<Vec<()>>(WireFormat::Postcard, &payload[..len], &mut []).unwrap_err();
        assert!(error.to_string().contains("more list items and map entries"), "{error}");
        // Up to the allowance beyond the payload's length, they decode.
        let fits = super::ZERO_SIZED_ITEMS;
        let len = encode_payload(WireFormat::Postcard, &vec![(); fits], &mut payload).unwrap();
        let units: Vec<()> = decode_payload(WireFormat::Postcard, &payload[..len], &mut []).unwrap();
        assert_eq!(units.len(), fits);
        let len = encode_payload(WireFormat::Postcard, &vec![(); fits + len + 1], &mut payload).unwrap();
        assert!(decode_payload::<Vec<()>>(WireFormat::Postcard, &payload[..len], &mut []).is_err());
        // Items that take bytes never reach the bound: one per byte at most,
        // empty lists inside a list included.
        let bytes = vec![7u8; 4000];
        let mut payload = vec![0u8; 30_000];
        let len = encode_payload(WireFormat::Postcard, &bytes, &mut payload).unwrap();
        assert_eq!(decode_payload::<Vec<u8>>(WireFormat::Postcard, &payload[..len], &mut []).unwrap(), bytes);
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Point(u8, u8);
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        enum Shape {
            Dot { x: u8, y: u8 },
            Pair(u8, u8),
        }
        let shape = |i| if i % 2 == 0 { Shape::Dot { x: 6, y: 7 } } else { Shape::Pair(8, 9) };
        let points: Vec<(Point, [u8; 3], Shape)> = (0..3000).map(|i| (Point(1, 2), [3, 4, 5], shape(i))).collect();
        let len = encode_payload(WireFormat::Postcard, &points, &mut payload).unwrap();
        let decoded: Vec<(Point, [u8; 3], Shape)> =
            decode_payload(WireFormat::Postcard, &payload[..len], &mut []).unwrap();
        assert_eq!(decoded, points);
        let empties = vec![Vec::<u8>::new(); 20_000];
        let len = encode_payload(WireFormat::Postcard, &empties, &mut payload).unwrap();
        assert_eq!(decode_payload::<Vec<Vec<u8>>>(WireFormat::Postcard, &payload[..len], &mut []).unwrap(), empties);
    }

    /// Escapes decode the same with and without `std`: surrogate pairs (as
    /// Python's `json.dumps` writes every emoji) included, in values, map
    /// keys, field names, characters and enum variants.
    #[test]
    fn escaped_json_strings_decode_pairs_included() {
        use std::collections::BTreeMap;
        #[derive(Debug, PartialEq, Deserialize)]
        enum Mood {
            Happy,
        }
        #[derive(Debug, PartialEq, Deserialize)]
        struct Note {
            text: String,
            plain: heapless::String<8>,
            letter: char,
            tags: BTreeMap<String, u8>,
            mood: Mood,
            borrowed: Option<&'static str>,
        }
        let json = br#"{"text":"caf\u00e9 \ud83d\ude00 \"ok\"\n","pl\u0061in":"\ud834\udd1e","letter":"\u00e9","tags":{"\ud83d\udc4d":1,"a\/b":2},"mood":"H\u0061ppy","borrowed":null}"#;
        let note: Note = decode_payload(WireFormat::Json, json, &mut [0; 32]).unwrap();
        assert_eq!(note.text, "café 😀 \"ok\"\n");
        assert_eq!(note.plain.as_str(), "𝄞");
        assert_eq!(note.letter, 'é');
        assert_eq!(note.tags.get("👍"), Some(&1));
        assert_eq!(note.tags.get("a/b"), Some(&2));
        assert_eq!(note.mood, Mood::Happy);
        // Strings without escapes are still borrowed from the payload.
        #[derive(Debug, Deserialize)]
        struct Borrowed<'a> {
            text: &'a str,
        }
        let json = br#"{"text":"plain"}"#;
        assert_eq!(decode_payload::<Borrowed>(WireFormat::Json, json, &mut []).unwrap().text, "plain");
        // A lone surrogate is not JSON roomwire reads, with or without std.
        let error = decode_payload::<Note>(WireFormat::Json, br#"{"text":"\ud83d"}"#, &mut [0; 32]).unwrap_err();
        assert!(error.is_syntax(), "{error}");
    }

    /// Without `std`, escaped strings are unescaped into the caller's
    /// buffer: one that does not fit is an error that says so.
    #[cfg(not(feature = "std"))]
    #[test]
    fn an_escaped_string_longer_than_the_scratch_buffer_is_an_error() {
        #[derive(Debug, Deserialize)]
        struct Text {
            #[allow(dead_code)]
            text: String,
        }
        let json = br#"{"text":"\ud83d\ude00\ud83d\ude00"}"#;
        assert!(decode_payload::<Text>(WireFormat::Json, json, &mut [0; 8]).is_ok());
        let error = decode_payload::<Text>(WireFormat::Json, json, &mut [0; 7]).unwrap_err();
        assert_eq!(error.to_string(), "an escaped string is longer, unescaped, than the scratch buffer");
        assert!(!error.is_syntax());
    }

    /// Without `std`, JSON is decoded by serde-json-core, which panics when
    /// a map key is asked for as anything but a borrowed string.
    #[cfg(not(feature = "std"))]
    #[test]
    fn json_map_keys_of_other_types_are_an_error_not_a_panic() {
        use std::collections::BTreeMap;
        #[derive(Debug, Deserialize)]
        struct Scores<K: Ord> {
            #[allow(dead_code)]
            scores: BTreeMap<K, u32>,
        }
        let json = br#"{"scores":{"1":5,"2":7}}"#;
        for error in [
            decode_payload::<Scores<u8>>(WireFormat::Json, json, &mut [0; 16]).unwrap_err(),
            decode_payload::<Scores<char>>(WireFormat::Json, json, &mut [0; 16]).unwrap_err(),
            decode_payload::<heapless::LinearMap<u8, u8, 4>>(WireFormat::Json, br#"{"1":5}"#, &mut [0; 16])
                .unwrap_err(),
        ] {
            assert_eq!(error.to_string(), "map keys must be strings");
        }
        // String keys, owned or borrowed, and ignored ones, decode.
        let owned: Scores<String> = decode_payload(WireFormat::Json, json, &mut [0; 16]).unwrap();
        assert_eq!(owned.scores.get("2"), Some(&7));
        let borrowed: Scores<&str> = decode_payload(WireFormat::Json, json, &mut [0; 16]).unwrap();
        assert_eq!(borrowed.scores.get("1"), Some(&5));
        #[derive(Debug, Deserialize)]
        struct Other {
            #[allow(dead_code)]
            other: u8,
        }
        let json = br#"{"scores":{"1":5},"other":3}"#;
        assert_eq!(decode_payload::<Other>(WireFormat::Json, json, &mut [0; 16]).unwrap().other, 3);
    }
}
