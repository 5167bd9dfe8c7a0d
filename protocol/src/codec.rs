//! The one place where Porchlight bytes are encoded and decoded.
//!
//! Every message body, envelope and clip header goes through [`encode`] and [`decode`] with a
//! single fixed bincode configuration: little-endian, fixed-width integers, `u64` length
//! prefixes, `u32` enum tags, one byte for `bool` and for the `Option` tag. spec/wire.md
//! writes that layout out independently of the crate (spec/wire.md#encoding), so the format
//! does not depend on bincode: swapping it for a hand-written encoder means reimplementing
//! these two functions against that section and re-running the vectors.
//!
//! bincode is marked unmaintained (RUSTSEC-2025-0141); keeping it behind this module is what
//! makes that a contained risk.
//!
//! Decoding is strict ("full recognition before processing"): the input length is checked
//! against the caller's limit before anything is parsed, trailing bytes are an error, and
//! the decoded value must re-encode to exactly the input bytes, so every message has one
//! encoding and a signature covers one meaning.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::DecodeError;

/// The absolute ceiling on any single decoded value, whatever the caller's limit.
const DECODE_CEILING: usize = 1 << 20;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
    bincode::config::Limit<DECODE_CEILING>,
>;

const CONFIG: Config = bincode::config::standard()
    .with_little_endian()
    .with_fixed_int_encoding()
    .with_limit::<DECODE_CEILING>();

/// Encodes a value in Porchlight's canonical layout (spec/wire.md#encoding).
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, CONFIG)
        .expect("porchlight types are plain structs of sized fields; encoding to a Vec cannot fail")
}

/// Decodes exactly one value from `bytes`, which must be at most `max_len` long, contain
/// nothing after the value, and be the canonical encoding of that value.
pub(crate) fn decode<T: Serialize + DeserializeOwned>(
    bytes: &[u8],
    max_len: usize,
    what: &'static str,
) -> Result<T, DecodeError> {
    let max = max_len.min(DECODE_CEILING);
    if bytes.len() > max {
        return Err(DecodeError::TooLarge {
            what,
            len: bytes.len(),
            max,
        });
    }
    let (value, used) = decode_prefix::<T>(bytes, max, what)?;
    if used != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            what,
            extra: bytes.len() - used,
        });
    }
    Ok(value)
}

/// Decodes one value from the front of `bytes` and returns it with the number of bytes it
/// took. The value must be canonical and at most `max_len` bytes long.
pub(crate) fn decode_prefix<T: Serialize + DeserializeOwned>(
    bytes: &[u8],
    max_len: usize,
    what: &'static str,
) -> Result<(T, usize), DecodeError> {
    let max_len = max_len.min(DECODE_CEILING);
    let window = &bytes[..bytes.len().min(max_len)];
    let (value, used): (T, usize) = match bincode::serde::decode_from_slice(window, CONFIG) {
        Ok(decoded) => decoded,
        // Ran out of input only because the window stopped at the limit: the value is larger
        // than allowed. Any other failure is malformed input, whatever follows it.
        Err(bincode::error::DecodeError::UnexpectedEnd { .. }) if bytes.len() > max_len => {
            return Err(DecodeError::TooLarge {
                what,
                len: bytes.len(),
                max: max_len,
            });
        }
        Err(_) => return Err(DecodeError::Malformed { what }),
    };
    if encode(&value) != window[..used] {
        return Err(DecodeError::NonCanonical { what });
    }
    Ok((value, used))
}

/// The text form of a fixed-size id (`ClipId`, `RequestId`, `TokenId`): lowercase hex for
/// `Display` and `FromStr`, `Name(hex)` for `Debug`. One definition, so every id reads and
/// parses the same way in the CLI, the logs and the vectors.
macro_rules! hex_id_text {
    ($name:ident, $len:expr, $what:expr) => {
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::error::DecodeError;

            fn from_str(text: &str) -> Result<$name, $crate::error::DecodeError> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(text, &mut out)
                    .map_err(|_| $crate::error::DecodeError::Malformed { what: $what })?;
                Ok($name(out))
            }
        }
    };
}
pub(crate) use hex_id_text;

/// Serde adapter for fixed-size byte arrays: a bare run of `N` bytes in the binary encoding
/// (no length prefix), lowercase hex in human-readable formats such as the JSON test
/// vectors. Serde's own array support stops at 32 elements and prints numbers.
pub(crate) mod fixed {
    use serde::de::{Error as _, SeqAccess, Visitor};
    use serde::ser::SerializeTuple;
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            return serializer.serialize_str(&hex::encode(bytes));
        }
        let mut tuple = serializer.serialize_tuple(N)?;
        for byte in bytes {
            tuple.serialize_element(byte)?;
        }
        tuple.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        deserializer: D,
    ) -> Result<[u8; N], D::Error> {
        if deserializer.is_human_readable() {
            let text: String = serde::Deserialize::deserialize(deserializer)?;
            let mut out = [0u8; N];
            hex::decode_to_slice(&text, &mut out).map_err(D::Error::custom)?;
            return Ok(out);
        }
        deserializer.deserialize_tuple(N, FixedVisitor::<N>)
    }

    struct FixedVisitor<const N: usize>;

    impl<'de, const N: usize> Visitor<'de> for FixedVisitor<N> {
        type Value = [u8; N];

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "{N} bytes")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; N], A::Error> {
            let mut out = [0u8; N];
            for (i, slot) in out.iter_mut().enumerate() {
                *slot = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(i, &self))?;
            }
            Ok(out)
        }
    }
}

/// Serde adapter for variable-length byte strings (nested envelopes): a `u64` length and the
/// bytes in the binary encoding, exactly like a plain `Vec<u8>`, and lowercase hex in
/// human-readable formats.
pub(crate) mod bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex::encode(bytes))
        } else {
            serializer.serialize_bytes(bytes)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        Ok(ByteString::deserialize(deserializer)?.0)
    }

    /// One byte string, for use inside other containers.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct ByteString(pub(crate) Vec<u8>);

    impl serde::Serialize for ByteString {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serialize(&self.0, serializer)
        }
    }

    impl<'de> Deserialize<'de> for ByteString {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ByteString, D::Error> {
            if deserializer.is_human_readable() {
                let text = String::deserialize(deserializer)?;
                return hex::decode(text)
                    .map(ByteString)
                    .map_err(serde::de::Error::custom);
            }
            deserializer.deserialize_byte_buf(ByteStringVisitor)
        }
    }

    struct ByteStringVisitor;

    impl serde::de::Visitor<'_> for ByteStringVisitor {
        type Value = ByteString;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ByteString, E> {
            Ok(ByteString(v.to_vec()))
        }

        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<ByteString, E> {
            Ok(ByteString(v))
        }
    }
}

/// Serde adapter for a list of byte strings (a credential chain): a `u64` count, then each
/// string as in [`bytes`].
pub(crate) mod bytes_list {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::bytes::ByteString;

    pub(crate) fn serialize<S: Serializer>(
        list: &[Vec<u8>],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(list.iter().map(|item| ByteString(item.clone())))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Vec<u8>>, D::Error> {
        let list = Vec::<ByteString>::deserialize(deserializer)?;
        Ok(list.into_iter().map(|item| item.0).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        flag: bool,
        count: u32,
        text: String,
        maybe: Option<u16>,
        #[serde(with = "fixed")]
        key: [u8; 4],
    }

    fn sample() -> Sample {
        Sample {
            flag: true,
            count: 0x0102_0304,
            text: "hi".into(),
            maybe: Some(7),
            key: [9, 8, 7, 6],
        }
    }

    #[test]
    fn layout_matches_spec_wire_encoding() {
        // spec/wire.md#encoding: bool = 1 byte, u32 LE, string = u64 LE length + UTF-8,
        // Option = 1-byte tag + value, fixed arrays bare.
        let expected = [
            1, 4, 3, 2, 1, 2, 0, 0, 0, 0, 0, 0, 0, b'h', b'i', 1, 7, 0, 9, 8, 7, 6,
        ];
        assert_eq!(encode(&sample()), expected);
        assert_eq!(decode::<Sample>(&expected, 64, "sample").unwrap(), sample());
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Nested {
        #[serde(with = "bytes")]
        one: Vec<u8>,
        #[serde(with = "bytes_list")]
        many: Vec<Vec<u8>>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Plain {
        one: Vec<u8>,
        many: Vec<Vec<u8>>,
    }

    #[test]
    fn byte_string_adapters_keep_the_plain_vec_layout() {
        let nested = Nested {
            one: vec![1, 2, 3],
            many: vec![vec![], vec![9]],
        };
        let plain = Plain {
            one: vec![1, 2, 3],
            many: vec![vec![], vec![9]],
        };
        let bytes = encode(&nested);
        assert_eq!(bytes, encode(&plain));
        assert_eq!(decode::<Nested>(&bytes, 64, "nested").unwrap(), nested);
    }

    #[test]
    fn rejects_trailing_bytes() {
        let mut bytes = encode(&sample());
        bytes.push(0);
        assert_eq!(
            decode::<Sample>(&bytes, 64, "sample"),
            Err(DecodeError::TrailingBytes {
                what: "sample",
                extra: 1
            })
        );
    }

    #[test]
    fn rejects_oversized_input_before_parsing() {
        let bytes = encode(&sample());
        assert!(matches!(
            decode::<Sample>(&bytes, bytes.len() - 1, "sample"),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn rejects_non_canonical_bool_and_truncation() {
        let mut bytes = encode(&sample());
        bytes[0] = 2;
        assert!(decode::<Sample>(&bytes, 64, "sample").is_err());
        let bytes = encode(&sample());
        assert_eq!(
            decode::<Sample>(&bytes[..bytes.len() - 1], 64, "sample"),
            Err(DecodeError::Malformed { what: "sample" })
        );
    }

    #[test]
    fn huge_length_prefix_is_an_error_not_an_allocation() {
        let mut bytes = encode(&sample());
        // Overwrite the string length with 2^62.
        bytes[5..13].copy_from_slice(&(1u64 << 62).to_le_bytes());
        assert!(decode::<Sample>(&bytes, 64, "sample").is_err());
    }
}
