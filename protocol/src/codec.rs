//! Thrift binary encoding of Pegasus structs, on the Apache Thrift crate's `TBinaryProtocol`.
//!
//! The structs are written by hand through [`thrift_struct!`] rather than generated from the IDL:
//! Pegasus declares `blob`, `error_code`, `gpid` and `rpc_address` as structs in its IDL, but
//! serializes them with custom code as raw binary, a string and raw `i64`s, under the *struct*
//! field type. A generator would put the wrong bytes on the wire; [`Field`] encodes exactly what
//! the C++ server and every client do.

use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TFieldIdentifier, TInputProtocol, TListIdentifier,
    TMapIdentifier, TOutputProtocol, TSetIdentifier, TStructIdentifier, TType,
};

use super::ProtocolError;

/// A value that can be a field of a Thrift struct: its wire type and how it is read and written.
pub trait Field: Sized {
    /// The field type written in the field header.
    const TTYPE: TType;
    /// Writes the value (without the field header).
    fn write_to<P: TOutputProtocol>(&self, o: &mut P) -> thrift::Result<()>;
    /// Reads the value (after the field header).
    fn read_from<P: TInputProtocol>(i: &mut P) -> thrift::Result<Self>;
    /// Whether the field is written at all (`None` optional fields are not).
    fn present(&self) -> bool {
        true
    }
}

macro_rules! primitive_field {
    ($ty:ty, $ttype:expr, $write:ident, $read:ident) => {
        impl Field for $ty {
            const TTYPE: TType = $ttype;
            fn write_to<P: TOutputProtocol>(&self, o: &mut P) -> thrift::Result<()> {
                o.$write(*self)
            }
            fn read_from<P: TInputProtocol>(i: &mut P) -> thrift::Result<Self> {
                i.$read()
            }
        }
    };
}

primitive_field!(bool, TType::Bool, write_bool, read_bool);
primitive_field!(i32, TType::I32, write_i32, read_i32);
primitive_field!(i64, TType::I64, write_i64, read_i64);

impl Field for String {
    const TTYPE: TType = TType::String;
    fn write_to<P: TOutputProtocol>(&self, o: &mut P) -> thrift::Result<()> {
        o.write_string(self)
    }
    fn read_from<P: TInputProtocol>(i: &mut P) -> thrift::Result<Self> {
        i.read_string()
    }
}

impl<T: Field> Field for Option<T> {
    const TTYPE: TType = T::TTYPE;
    fn write_to<P: TOutputProtocol>(&self, o: &mut P) -> thrift::Result<()> {
        match self {
            Some(v) => v.write_to(o),
            None => Ok(()),
        }
    }
    fn read_from<P: TInputProtocol>(i: &mut P) -> thrift::Result<Self> {
        T::read_from(i).map(Some)
    }
    fn present(&self) -> bool {
        self.is_some()
    }
}

impl<T: Field> Field for Vec<T> {
    const TTYPE: TType = TType::List;
    fn write_to<P: TOutputProtocol>(&self, o: &mut P) -> thrift::Result<()> {
        let size = i32::try_from(self.len()).map_err(|_| size_error(self.len()))?;
        o.write_list_begin(&TListIdentifier::new(T::TTYPE, size))?;
        for item in self {
            item.write_to(o)?;
        }
        o.write_list_end()
    }
    fn read_from<P: TInputProtocol>(i: &mut P) -> thrift::Result<Self> {
        let list = i.read_list_begin()?;
        // The size comes from the peer: never trust it for an allocation.
        let mut items = Vec::with_capacity((list.size.max(0) as usize).min(1024));
        for _ in 0..list.size {
            items.push(T::read_from(i)?);
        }
        i.read_list_end()?;
        Ok(items)
    }
}

impl<T: Field + Ord> Field for std::collections::BTreeSet<T> {
    const TTYPE: TType = TType::Set;
    fn write_to<P: TOutputProtocol>(&self, o: &mut P) -> thrift::Result<()> {
        let size = i32::try_from(self.len()).map_err(|_| size_error(self.len()))?;
        o.write_set_begin(&TSetIdentifier::new(T::TTYPE, size))?;
        for item in self {
            item.write_to(o)?;
        }
        o.write_set_end()
    }
    fn read_from<P: TInputProtocol>(i: &mut P) -> thrift::Result<Self> {
        let set = i.read_set_begin()?;
        let mut items = Self::new();
        for _ in 0..set.size {
            items.insert(T::read_from(i)?);
        }
        i.read_set_end()?;
        Ok(items)
    }
}

impl<K: Field + Ord, V: Field> Field for std::collections::BTreeMap<K, V> {
    const TTYPE: TType = TType::Map;
    fn write_to<P: TOutputProtocol>(&self, o: &mut P) -> thrift::Result<()> {
        let size = i32::try_from(self.len()).map_err(|_| size_error(self.len()))?;
        o.write_map_begin(&TMapIdentifier::new(K::TTYPE, V::TTYPE, size))?;
        for (k, v) in self {
            k.write_to(o)?;
            v.write_to(o)?;
        }
        o.write_map_end()
    }
    fn read_from<P: TInputProtocol>(i: &mut P) -> thrift::Result<Self> {
        let map = i.read_map_begin()?;
        let mut items = Self::new();
        for _ in 0..map.size {
            let k = K::read_from(i)?;
            let v = V::read_from(i)?;
            items.insert(k, v);
        }
        i.read_map_end()?;
        Ok(items)
    }
}

fn size_error(len: usize) -> thrift::Error {
    thrift::Error::Protocol(thrift::ProtocolError::new(
        thrift::ProtocolErrorKind::SizeLimit,
        format!("list of {len} items is too long"),
    ))
}

/// Writes a field header and value, unless the value is an absent optional.
pub fn write_field<P: TOutputProtocol, F: Field>(
    o: &mut P,
    id: i16,
    value: &F,
) -> thrift::Result<()> {
    if !value.present() {
        return Ok(());
    }
    o.write_field_begin(&TFieldIdentifier::new::<Option<String>, String, i16>(
        None,
        F::TTYPE,
        id,
    ))?;
    value.write_to(o)?;
    o.write_field_end()
}

/// Begins writing a struct.
pub fn write_struct_begin<P: TOutputProtocol>(o: &mut P, name: &str) -> thrift::Result<()> {
    o.write_struct_begin(&TStructIdentifier::new(name))
}

/// Ends writing a struct.
pub fn write_struct_end<P: TOutputProtocol>(o: &mut P) -> thrift::Result<()> {
    o.write_field_stop()?;
    o.write_struct_end()
}

/// Defines a Thrift struct: its Rust fields, their field ids, and its [`Field`] impl (read skips
/// unknown fields and fields of an unexpected type, as generated Thrift code does).
#[macro_export]
macro_rules! thrift_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* $id:literal : $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fmeta])* #[allow(missing_docs)] pub $field: $ty, )*
        }

        impl $crate::codec::Field for $name {
            const TTYPE: ::thrift::protocol::TType = ::thrift::protocol::TType::Struct;
            fn write_to<P: ::thrift::protocol::TOutputProtocol>(&self, o: &mut P) -> ::thrift::Result<()> {
                $crate::codec::write_struct_begin(o, stringify!($name))?;
                $( $crate::codec::write_field(o, $id, &self.$field)?; )*
                $crate::codec::write_struct_end(o)
            }
            fn read_from<P: ::thrift::protocol::TInputProtocol>(i: &mut P) -> ::thrift::Result<Self> {
                #[allow(unused_mut)]
                let mut out = Self::default();
                i.read_struct_begin()?;
                loop {
                    let field = i.read_field_begin()?;
                    if field.field_type == ::thrift::protocol::TType::Stop {
                        break;
                    }
                    match field.id {
                        $( Some($id) if field.field_type == <$ty as $crate::codec::Field>::TTYPE => {
                            out.$field = <$ty as $crate::codec::Field>::read_from(i)?;
                        } )*
                        _ => i.skip(field.field_type)?,
                    }
                    i.read_field_end()?;
                }
                i.read_struct_end()?;
                Ok(out)
            }
        }
    };
}

/// Encodes a value into `out` with the binary protocol (strict).
pub fn encode<F: Field>(value: &F, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    let mut o = TBinaryOutputProtocol::new(out, true);
    value.write_to(&mut o).map_err(ProtocolError::from)
}

/// Encodes `value` as the `success` field (id 0) of a service call's result struct.
pub fn encode_reply<F: Field>(value: &F, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    let mut o = TBinaryOutputProtocol::new(out, true);
    write_struct_begin(&mut o, "result")?;
    write_field(&mut o, 0, value)?;
    write_struct_end(&mut o)?;
    Ok(())
}

/// A binary-protocol reader over a byte slice whose strings and lists cannot claim more than
/// the slice holds (a 4-byte length of 2 GiB in a 100-byte body allocates nothing).
pub fn reader(bytes: &[u8]) -> TBinaryInputProtocol<&[u8]> {
    let config = thrift::TConfiguration::builder()
        .max_string_size(Some(bytes.len()))
        .max_container_size(Some(bytes.len()))
        .max_message_size(Some(bytes.len().max(64)))
        .max_recursion_depth(Some(16))
        .build()
        .unwrap_or_default();
    TBinaryInputProtocol::with_config(bytes, false, config)
}

/// Decodes a value from the start of `bytes`.
pub fn decode<F: Field>(bytes: &[u8]) -> Result<F, ProtocolError> {
    F::read_from(&mut reader(bytes)).map_err(ProtocolError::from)
}
