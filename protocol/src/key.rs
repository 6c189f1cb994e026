//! Keys, values and partition hashing, byte for byte as Pegasus clients and servers do them.
//!
//! - A stored key is `[u16 big-endian hash_key length][hash_key][sort_key]`.
//! - A key's partition is `crc64(hash_key) % partition_count` (the sort-key bytes when the hash
//!   key is empty), with Pegasus's CRC-64 (reflected polynomial `0x9a6c9329ac4bc9b5`, initial
//!   value and final XOR all ones).
//! - Expiry times are seconds since the Pegasus epoch, 2016-01-01 00:00:00 UTC; 0 = never.

use std::time::{SystemTime, UNIX_EPOCH};

/// 2016-01-01 00:00:00 UTC in Unix seconds.
pub const PEGASUS_EPOCH: u64 = 1_451_606_400;

const POLY: u64 = 0x9a6c_9329_ac4b_c9b5;

const TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// Pegasus's CRC-64 of `data`.
pub fn crc64(data: &[u8]) -> u64 {
    let mut crc = u64::MAX;
    for &b in data {
        crc = TABLE[((crc ^ b as u64) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// Why a key cannot be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("hash key of {0} bytes is too long (the limit is 65534)")]
pub struct HashKeyTooLong(pub usize);

/// Encodes a hash key and sort key into a stored key.
pub fn encode_key(hash_key: &[u8], sort_key: &[u8]) -> Result<Vec<u8>, HashKeyTooLong> {
    let len = u16::try_from(hash_key.len())
        .ok()
        .filter(|&l| l != u16::MAX)
        .ok_or(HashKeyTooLong(hash_key.len()))?;
    let mut key = Vec::with_capacity(2 + hash_key.len() + sort_key.len());
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(hash_key);
    key.extend_from_slice(sort_key);
    Ok(key)
}

/// Splits a stored key into hash key and sort key; `None` if it is malformed.
pub fn decode_key(key: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u16::from_be_bytes([*key.first()?, *key.get(1)?]) as usize;
    let rest = &key[2..];
    (len <= rest.len()).then(|| rest.split_at(len))
}

/// The partition hash of a stored key, as clients compute it; `None` if malformed.
pub fn key_hash(key: &[u8]) -> Option<u64> {
    let (hash_key, sort_key) = decode_key(key)?;
    Some(if hash_key.is_empty() {
        crc64(sort_key)
    } else {
        crc64(hash_key)
    })
}

/// The partition of a hash.
pub fn partition_index(hash: u64, partition_count: i32) -> i32 {
    (hash % partition_count.max(1) as u64) as i32
}

/// The smallest key above every key that starts with `prefix` (empty: no such key, no bound).
pub fn prefix_successor(prefix: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.last_mut() {
        if *last < 0xFF {
            *last += 1;
            return out;
        }
        out.pop();
    }
    Vec::new()
}

/// Seconds since the Pegasus epoch, now.
pub fn epoch_now() -> u32 {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    unix.saturating_sub(PEGASUS_EPOCH) as u32
}

/// The expiry time of a value written now with a TTL in seconds (0: never expires).
pub fn expire_ts(ttl_seconds: u32) -> i32 {
    if ttl_seconds == 0 {
        0
    } else {
        epoch_now().saturating_add(ttl_seconds) as i32
    }
}

/// Whether a value with expiry `expire_ts` has expired at `now` (both in epoch seconds).
pub fn is_expired(expire_ts: u32, now: u32) -> bool {
    expire_ts > 0 && expire_ts <= now
}

/// A stored value: Pegasus value schema v1, `[u32 expire_ts][u64 timetag][user value]`, all
/// big-endian. The timetag is `timestamp_us << 8 | cluster_id << 1 | deleted`.
pub mod value {
    /// Bytes before the user value.
    pub const HEADER: usize = 12;

    /// Encodes a user value.
    pub fn encode(expire_ts: u32, timetag: u64, user: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER + user.len());
        v.extend_from_slice(&expire_ts.to_be_bytes());
        v.extend_from_slice(&timetag.to_be_bytes());
        v.extend_from_slice(user);
        v
    }

    /// The expiry time of a stored value (0 if it is too short to have one).
    pub fn expire_ts(stored: &[u8]) -> u32 {
        stored
            .get(..4)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The user value of a stored value.
    pub fn user_data(stored: &[u8]) -> &[u8] {
        stored.get(HEADER..).unwrap_or_default()
    }

    /// A timetag for a write now by cluster `cluster_id`.
    pub fn timetag(cluster_id: u8) -> u64 {
        let us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        (us << 8) | ((cluster_id as u64 & 0x7F) << 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_refuse_long_hash_keys() {
        let key = encode_key(b"hk", b"sk").unwrap();
        assert_eq!(key, b"\x00\x02hksk");
        assert_eq!(decode_key(&key), Some((&b"hk"[..], &b"sk"[..])));
        assert_eq!(decode_key(b"\x00\x09ab"), None);
        assert!(encode_key(&vec![0; 65535], b"").is_err());
        assert!(encode_key(&vec![0; 65534], b"").is_ok());
    }

    #[test]
    fn the_hash_of_an_empty_hash_key_covers_the_sort_key() {
        let key = encode_key(b"", b"sort").unwrap();
        assert_eq!(key_hash(&key), Some(crc64(b"sort")));
        assert_eq!(
            key_hash(&encode_key(b"h", b"x").unwrap()),
            Some(crc64(b"h"))
        );
    }

    #[test]
    fn values_carry_their_expiry() {
        let v = value::encode(77, 5, b"data");
        assert_eq!(value::expire_ts(&v), 77);
        assert_eq!(value::user_data(&v), b"data");
        assert!(is_expired(77, 77) && !is_expired(77, 76) && !is_expired(0, u32::MAX));
    }
}

#[cfg(test)]
mod golden {
    use super::*;

    /// Regression: the partition of a key must be the one pypegasus3's `PegasusHash` computes
    /// (values printed by its own code, `pypegasus/pgclient.py`, version 0.0.1.1).
    #[test]
    fn crc64_matches_pypegasus3() {
        assert_eq!(crc64(b""), 0);
        assert_eq!(crc64(b"a"), 10101437924136188988);
        assert_eq!(crc64(b"hash_key"), 7305998816215738733);
        assert_eq!(crc64(b"123456789"), 12577168950296156296);
        assert_eq!(
            crc64(&(0u8..=255).collect::<Vec<_>>()),
            18406741721021519470
        );
        assert_eq!(partition_index(crc64(b"hash_key"), 8), 5);
        assert_eq!(partition_index(crc64(b"a"), 16), 12);
    }
}
