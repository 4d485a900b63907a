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
//! The wrapper forwards every call and adds nothing but the count: a type
//! decodes to the same value through it as without it.

use core::cell::Cell;
use core::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};

/// The open-container count of one decode, shared by every wrapper of it.
#[derive(Debug)]
pub(crate) struct Nesting {
    depth: Cell<usize>,
    limit: usize,
    exceeded: Cell<bool>,
}

impl Nesting {
    /// A count that refuses to go past `limit` open containers.
    pub(crate) const fn new(limit: usize) -> Self {
        Self { depth: Cell::new(0), limit, exceeded: Cell::new(false) }
    }

    /// Whether a decode failed because it went too deep.
    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.get()
    }

    /// Run `decode` one container deeper.
    fn nest<T, E: de::Error>(&self, decode: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let depth = self.depth.get().saturating_add(1);
        if depth > self.limit {
            self.exceeded.set(true);
            return Err(E::custom("message nested too deeply"));
        }
        self.depth.set(depth);
        let decoded = decode();
        self.depth.set(depth - 1);
        decoded
    }
}

/// A deserializer, visitor, seed or access of one decode, with its count.
pub(crate) struct Bounded<'n, T> {
    inner: T,
    nesting: &'n Nesting,
}

impl<'n, T> Bounded<'n, T> {
    /// `inner`, counted in `nesting`.
    pub(crate) fn new(inner: T, nesting: &'n Nesting) -> Self {
        Self { inner, nesting }
    }

    fn wrap<U>(&self, inner: U) -> Bounded<'n, U> {
        Bounded { inner, nesting: self.nesting }
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

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Bounded<'_, D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any();
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
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
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

impl<'de, V: Visitor<'de>> Visitor<'de> for Bounded<'_, V> {
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
        let nesting = self.nesting;
        nesting.nest(|| self.inner.visit_seq(Bounded::new(seq, nesting)))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let nesting = self.nesting;
        nesting.nest(|| self.inner.visit_map(Bounded::new(map, nesting)))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        let nesting = self.nesting;
        nesting.nest(|| self.inner.visit_enum(Bounded::new(data, nesting)))
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Bounded<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let deserializer = self.wrap(deserializer);
        self.inner.deserialize(deserializer)
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Bounded<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Self::Error> {
        let seed = self.wrap(seed);
        self.inner.next_element_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Bounded<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Self::Error> {
        let seed = self.wrap(seed);
        self.inner.next_key_seed(seed)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Self::Error> {
        let seed = self.wrap(seed);
        self.inner.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, 'n, A: EnumAccess<'de>> EnumAccess<'de> for Bounded<'n, A> {
    type Error = A::Error;
    type Variant = Bounded<'n, A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self::Variant), Self::Error> {
        let nesting = self.nesting;
        let (value, variant) = self.inner.variant_seed(Bounded::new(seed, nesting))?;
        Ok((value, Bounded::new(variant, nesting)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Bounded<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), Self::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Self::Error> {
        let seed = self.wrap(seed);
        self.inner.newtype_variant_seed(seed)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Self::Error> {
        let visitor = self.wrap(visitor);
        self.inner.tuple_variant(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let visitor = self.wrap(visitor);
        self.inner.struct_variant(fields, visitor)
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
}
