//! What each rrdb read returns. Expired values are never returned; every iteration is bounded.

use bytes::Bytes;
use pegasus_protocol::codes::status;
use pegasus_protocol::key::{self, value};
use pegasus_protocol::types::*;

use super::storage::{Storage, StorageError};

/// Bounds on one read (`[pegasus.server] rocksdb_multi_get_max_iteration_*`).
#[derive(Clone, Copy, Debug)]
pub struct ReadLimits {
    /// Keys a `multi_get` may look at, expired and filtered ones included.
    pub max_iteration_count: usize,
    /// Bytes a `multi_get` may return.
    pub max_iteration_size: usize,
    /// Largest scan batch.
    pub max_batch: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_iteration_count: 3000,
            max_iteration_size: 30 << 20,
            max_batch: 10_000,
        }
    }
}

fn matches(filter: i32, pattern: &[u8], data: &[u8]) -> bool {
    match filter {
        filter_type::MATCH_ANYWHERE => {
            pattern.is_empty() || data.windows(pattern.len()).any(|w| w == pattern)
        }
        filter_type::MATCH_PREFIX => data.starts_with(pattern),
        filter_type::MATCH_POSTFIX => data.ends_with(pattern),
        _ => true,
    }
}

fn live(stored: &[u8], now: u32) -> bool {
    !key::is_expired(value::expire_ts(stored), now)
}

/// Where a point read looks: anywhere, or only in memory (never blocking on disk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// Memtables, block cache, and the disk.
    All,
    /// Memtables and block cache only: `None` answers when the disk would be needed.
    Memory,
}

/// The stored value of `key` from `tier`: `Ok(None)` when `tier` cannot answer.
fn lookup<'a>(
    s: &'a Storage,
    key: &[u8],
    tier: Tier,
) -> Result<Option<Option<rocksdb::DBPinnableSlice<'a>>>, StorageError> {
    match tier {
        Tier::All => s.get_raw(key).map(Some),
        Tier::Memory => s.get_raw_in_memory(key),
    }
}

/// `get`; `None` when `tier` cannot answer.
pub fn get(
    s: &Storage,
    k: &Blob,
    now: u32,
    tier: Tier,
) -> Result<Option<ReadResponse>, StorageError> {
    if key::decode_key(k.as_slice()).is_none() {
        return Ok(Some(ReadResponse {
            error: status::INVALID_ARGUMENT,
            ..Default::default()
        }));
    }
    Ok(lookup(s, k.as_slice(), tier)?.map(|raw| match raw {
        Some(v) if live(&v, now) => ReadResponse {
            error: status::OK,
            value: Blob(Bytes::copy_from_slice(value::user_data(&v))),
            ..Default::default()
        },
        _ => ReadResponse {
            error: status::NOT_FOUND,
            ..Default::default()
        },
    }))
}

/// `ttl`: seconds left, -1 for no expiry; `None` when `tier` cannot answer.
pub fn ttl(
    s: &Storage,
    k: &Blob,
    now: u32,
    tier: Tier,
) -> Result<Option<TtlResponse>, StorageError> {
    Ok(lookup(s, k.as_slice(), tier)?.map(|raw| match raw {
        Some(v) if live(&v, now) => {
            let expire = value::expire_ts(&v);
            let ttl_seconds = if expire == 0 {
                -1
            } else {
                (expire - now) as i32
            };
            TtlResponse {
                error: status::OK,
                ttl_seconds,
                ..Default::default()
            }
        }
        _ => TtlResponse {
            error: status::NOT_FOUND,
            ..Default::default()
        },
    }))
}

/// `sortkey_count`: live sort keys of a hash key.
pub fn sortkey_count(
    s: &Storage,
    hash_key: &Blob,
    now: u32,
) -> Result<CountResponse, StorageError> {
    let Ok(prefix) = key::encode_key(hash_key.as_slice(), b"") else {
        return Ok(CountResponse {
            error: status::INVALID_ARGUMENT,
            ..Default::default()
        });
    };
    let mut it = s.raw_iter();
    it.seek(&prefix);
    let mut count = 0;
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        if !k.starts_with(&prefix) {
            break;
        }
        if live(v, now) {
            count += 1;
        }
        it.next();
    }
    it.status()?;
    Ok(CountResponse {
        error: status::OK,
        count,
        ..Default::default()
    })
}

/// `multi_get`: the listed sort keys, or a range with filters and limits.
pub fn multi_get(
    s: &Storage,
    r: &MultiGetRequest,
    now: u32,
    limits: ReadLimits,
) -> Result<MultiGetResponse, StorageError> {
    let hash_key = r.hash_key.as_slice();
    let Ok(prefix) = key::encode_key(hash_key, b"") else {
        return Ok(MultiGetResponse {
            error: status::INVALID_ARGUMENT,
            ..Default::default()
        });
    };
    let max_count = if r.max_kv_count > 0 {
        r.max_kv_count as usize
    } else {
        usize::MAX
    };
    let max_size = if r.max_kv_size > 0 {
        r.max_kv_size as usize
    } else {
        usize::MAX
    };
    // One bound for both forms: the request's own, and the server's iteration limits.
    let full = |found: usize, seen: usize, size: usize| {
        found >= max_count
            || size >= max_size
            || seen >= limits.max_iteration_count
            || size >= limits.max_iteration_size
    };
    let mut kvs = Vec::new();
    if let Some(sort_keys) = r.sort_keys.as_ref().filter(|k| !k.is_empty()) {
        // Listed keys are bounded like a range: past a bound, what was found so far comes back
        // with `INCOMPLETE`.
        let (mut size, mut complete) = (0usize, true);
        for (n, sort_key) in sort_keys.iter().enumerate() {
            if full(kvs.len(), n, size) {
                complete = false;
                break;
            }
            let Ok(k) = key::encode_key(hash_key, sort_key.as_slice()) else {
                continue;
            };
            if let Some(v) = s.get_raw(&k)?.filter(|v| live(v, now)) {
                let value = if r.no_value {
                    Blob::default()
                } else {
                    Blob(Bytes::copy_from_slice(value::user_data(&v)))
                };
                size += sort_key.0.len() + value.0.len();
                kvs.push(KeyValue {
                    key: sort_key.clone(),
                    value,
                    expire_ts_seconds: None,
                });
            }
        }
        return Ok(MultiGetResponse {
            error: if complete {
                status::OK
            } else {
                status::INCOMPLETE
            },
            kvs,
            ..Default::default()
        });
    }
    let empty = Blob::default();
    let start_sortkey = r.start_sortkey.as_ref().unwrap_or(&empty);
    let stop_sortkey = r.stop_sortkey.as_ref().unwrap_or(&empty);
    let start_inclusive = r.start_inclusive.unwrap_or(true);
    let reverse = r.reverse.unwrap_or(false);
    let filter = r.sort_key_filter_type.unwrap_or(filter_type::NO_FILTER);
    let pattern = r.sort_key_filter_pattern.as_ref().unwrap_or(&empty);
    let start = key::encode_key(hash_key, start_sortkey.as_slice()).unwrap_or_default();
    let (stop, stop_inclusive) = if stop_sortkey.0.is_empty() {
        (key::prefix_successor(&prefix), false)
    } else {
        (
            key::encode_key(hash_key, stop_sortkey.as_slice()).unwrap_or_default(),
            r.stop_inclusive.unwrap_or(false),
        )
    };
    let in_range = |k: &[u8]| {
        (k > start.as_slice() || (k == start.as_slice() && start_inclusive))
            && (k < stop.as_slice() || (k == stop.as_slice() && stop_inclusive))
    };
    let mut it = s.raw_iter();
    if reverse {
        it.seek_for_prev(&stop);
    } else {
        it.seek(&start);
    }
    let (mut seen, mut size, mut complete) = (0usize, 0usize, true);
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        let past_end = if reverse {
            k < start.as_slice() || (k == start.as_slice() && !start_inclusive)
        } else {
            k > stop.as_slice() || (k == stop.as_slice() && !stop_inclusive)
        };
        if past_end {
            break;
        }
        if in_range(k) {
            if full(kvs.len(), seen, size) {
                complete = false;
                break;
            }
            seen += 1;
            let sort_key = &k[prefix.len()..];
            if live(v, now) && matches(filter, pattern.as_slice(), sort_key) {
                let value = if r.no_value {
                    Blob::default()
                } else {
                    Blob(Bytes::copy_from_slice(value::user_data(v)))
                };
                size += sort_key.len() + value.0.len();
                kvs.push(KeyValue {
                    key: Blob(Bytes::copy_from_slice(sort_key)),
                    value,
                    expire_ts_seconds: None,
                });
            }
        }
        if reverse {
            it.prev();
        } else {
            it.next();
        }
    }
    it.status()?;
    let error = if complete {
        status::OK
    } else {
        status::INCOMPLETE
    };
    Ok(MultiGetResponse {
        error,
        kvs,
        ..Default::default()
    })
}

/// `batch_get`: the full keys found. No keys is `INVALID_ARGUMENT`, as in Pegasus; more keys
/// than `rocksdb_multi_get_max_iteration_count` too (nothing is read); values past
/// `rocksdb_multi_get_max_iteration_size` stop the read with `INCOMPLETE` and what was found.
pub fn batch_get(
    s: &Storage,
    r: &BatchGetRequest,
    now: u32,
    limits: ReadLimits,
) -> Result<BatchGetResponse, StorageError> {
    if r.keys.is_empty() || r.keys.len() > limits.max_iteration_count {
        return Ok(BatchGetResponse {
            error: status::INVALID_ARGUMENT,
            ..Default::default()
        });
    }
    let mut data = Vec::new();
    let mut size = 0usize;
    for k in &r.keys {
        if size >= limits.max_iteration_size {
            return Ok(BatchGetResponse {
                error: status::INCOMPLETE,
                data,
                ..Default::default()
            });
        }
        let Ok(full) = key::encode_key(k.hash_key.as_slice(), k.sort_key.as_slice()) else {
            return Ok(BatchGetResponse {
                error: status::INVALID_ARGUMENT,
                ..Default::default()
            });
        };
        if let Some(v) = s.get_raw(&full)?.filter(|v| live(v, now)) {
            let value = Blob(Bytes::copy_from_slice(value::user_data(&v)));
            size += k.hash_key.0.len() + k.sort_key.0.len() + value.0.len();
            data.push(FullData {
                hash_key: k.hash_key.clone(),
                sort_key: k.sort_key.clone(),
                value,
            });
        }
    }
    Ok(BatchGetResponse {
        error: status::OK,
        data,
        ..Default::default()
    })
}

/// Where a scan is and what it returns.
#[derive(Clone, Debug)]
pub struct ScanContext {
    /// Next key to look at (inclusive unless `start_inclusive` is false).
    pub start: Vec<u8>,
    /// Whether `start` itself may be returned.
    pub start_inclusive: bool,
    /// End of the range (empty: none).
    pub stop: Vec<u8>,
    /// Whether `stop` itself may be returned.
    pub stop_inclusive: bool,
    /// Pairs per batch.
    pub batch_size: usize,
    /// Keys only.
    pub no_value: bool,
    /// Hash-key filter.
    pub hash_key_filter: (i32, Bytes),
    /// Sort-key filter.
    pub sort_key_filter: (i32, Bytes),
    /// Return each value's expiry.
    pub return_expire_ts: bool,
}

impl ScanContext {
    /// The context a `get_scanner` request describes.
    pub fn from_request(r: &GetScannerRequest, limits: ReadLimits) -> Self {
        ScanContext {
            start: r.start_key.0.to_vec(),
            start_inclusive: r.start_inclusive,
            stop: r.stop_key.0.to_vec(),
            stop_inclusive: r.stop_inclusive,
            batch_size: (r.batch_size.max(1) as usize).min(limits.max_batch),
            no_value: r.no_value.unwrap_or(false),
            hash_key_filter: (
                r.hash_key_filter_type.unwrap_or(0),
                r.hash_key_filter_pattern.clone().unwrap_or_default().0,
            ),
            sort_key_filter: (
                r.sort_key_filter_type.unwrap_or(0),
                r.sort_key_filter_pattern.clone().unwrap_or_default().0,
            ),
            return_expire_ts: r.return_expire_ts.unwrap_or(false),
        }
    }
}

/// Reads the next batch of a scan. Returns the pairs (full keys) and whether more may follow;
/// the context moves past what was returned.
pub fn scan_batch(
    s: &Storage,
    ctx: &mut ScanContext,
    now: u32,
) -> Result<(Vec<KeyValue>, bool), StorageError> {
    let mut it = s.raw_iter();
    it.seek(&ctx.start);
    let mut kvs = Vec::new();
    let mut looked = 0usize;
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        if !ctx.stop.is_empty()
            && (k > ctx.stop.as_slice() || (k == ctx.stop.as_slice() && !ctx.stop_inclusive))
        {
            it.status()?;
            return Ok((kvs, false));
        }
        if k.starts_with(b"\xff\xff") {
            // Only the store's own bookkeeping keys live here; nothing after them is user data.
            it.status()?;
            return Ok((kvs, false));
        }
        let skip_start = k == ctx.start.as_slice() && !ctx.start_inclusive;
        if !skip_start
            && live(v, now)
            && let Some((h, sk)) = key::decode_key(k)
            && matches(ctx.hash_key_filter.0, &ctx.hash_key_filter.1, h)
            && matches(ctx.sort_key_filter.0, &ctx.sort_key_filter.1, sk)
        {
            let value = if ctx.no_value {
                Blob::default()
            } else {
                Blob(Bytes::copy_from_slice(value::user_data(v)))
            };
            let expire = ctx.return_expire_ts.then(|| value::expire_ts(v) as i32);
            kvs.push(KeyValue {
                key: Blob(Bytes::copy_from_slice(k)),
                value,
                expire_ts_seconds: expire,
            });
        }
        looked += 1;
        if kvs.len() >= ctx.batch_size || looked >= ctx.batch_size.saturating_mul(10).max(1000) {
            ctx.start = k.to_vec();
            ctx.start_inclusive = false;
            it.next();
            let more = it.valid();
            it.status()?;
            return Ok((kvs, more));
        }
        it.next();
    }
    it.status()?;
    Ok((kvs, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::plog::{Mutation, Op};
    use crate::replica::storage::RocksOptions;

    fn store(pairs: &[(&str, &str, u32)]) -> (tempfile::TempDir, Storage) {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path(), &RocksOptions::default()).unwrap();
        let ops = pairs
            .iter()
            .map(|(sk, v, exp)| {
                Op::Put(
                    key::encode_key(b"h", sk.as_bytes()).unwrap(),
                    value::encode(*exp, 0, v.as_bytes()),
                )
            })
            .collect();
        s.apply(&[Mutation {
            ballot: 1,
            decree: 1,
            ops,
        }])
        .unwrap();
        (dir, s)
    }

    fn sort_keys(r: &MultiGetResponse) -> Vec<String> {
        r.kvs
            .iter()
            .map(|kv| String::from_utf8(kv.key.0.to_vec()).unwrap())
            .collect()
    }

    fn request(start: &str, stop: &str) -> MultiGetRequest {
        MultiGetRequest {
            hash_key: Blob::from("h"),
            start_sortkey: Some(Blob::from(start.to_owned())),
            stop_sortkey: Some(Blob::from(stop.to_owned())),
            start_inclusive: Some(true),
            ..Default::default()
        }
    }

    #[test]
    fn ranges_honour_inclusivity_filters_limits_and_direction() {
        let (_d, s) = store(&[
            ("a", "1", 0),
            ("b", "2", 0),
            ("c", "3", 0),
            ("d", "4", 5),
            ("e", "5", 0),
        ]);
        let all = multi_get(&s, &request("", ""), 10, ReadLimits::default()).unwrap();
        assert_eq!(sort_keys(&all), ["a", "b", "c", "e"], "d expired");
        let r = MultiGetRequest {
            start_inclusive: Some(false),
            stop_inclusive: Some(true),
            ..request("a", "c")
        };
        assert_eq!(
            sort_keys(&multi_get(&s, &r, 0, ReadLimits::default()).unwrap()),
            ["b", "c"]
        );
        let r = MultiGetRequest {
            reverse: Some(true),
            ..request("b", "e")
        };
        assert_eq!(
            sort_keys(&multi_get(&s, &r, 0, ReadLimits::default()).unwrap()),
            ["d", "c", "b"]
        );
        let r = MultiGetRequest {
            max_kv_count: 2,
            ..request("", "")
        };
        let limited = multi_get(&s, &r, 0, ReadLimits::default()).unwrap();
        assert_eq!(
            (limited.error, sort_keys(&limited)),
            (status::INCOMPLETE, vec!["a".into(), "b".into()])
        );
        let r = MultiGetRequest {
            sort_key_filter_type: Some(filter_type::MATCH_PREFIX),
            sort_key_filter_pattern: Some(Blob::from("c")),
            ..request("", "")
        };
        assert_eq!(
            sort_keys(&multi_get(&s, &r, 0, ReadLimits::default()).unwrap()),
            ["c"]
        );
    }

    #[test]
    fn scans_resume_after_the_last_key_and_stop_at_the_end() {
        let (_d, s) = store(&[("a", "1", 0), ("b", "2", 0), ("c", "3", 0)]);
        let r = GetScannerRequest {
            batch_size: 2,
            start_inclusive: true,
            ..Default::default()
        };
        let mut ctx = ScanContext::from_request(&r, ReadLimits::default());
        let (first, more) = scan_batch(&s, &mut ctx, 0).unwrap();
        assert_eq!((first.len(), more), (2, true));
        let (second, more) = scan_batch(&s, &mut ctx, 0).unwrap();
        assert_eq!((second.len(), more), (1, false));
        assert_eq!(key::decode_key(&second[0].key.0).unwrap().1, b"c");
    }

    #[test]
    fn memory_reads_answer_from_memtable_and_cache_and_defer_disk_reads() {
        let dir = tempfile::tempdir().unwrap();
        let k = Blob::from(key::encode_key(b"h", b"a").unwrap());
        {
            let s = Storage::open(dir.path(), &RocksOptions::default()).unwrap();
            s.apply(&[Mutation {
                ballot: 1,
                decree: 1,
                ops: vec![Op::Put(k.0.to_vec(), value::encode(0, 0, b"v"))],
            }])
            .unwrap();
            // In the memtable: answered from memory.
            assert_eq!(
                get(&s, &k, 0, Tier::Memory).unwrap().unwrap().value.0,
                &b"v"[..]
            );
            s.flush().unwrap();
        }
        // Reopened: the value is only in an SST file on disk.
        let s = Storage::open(dir.path(), &RocksOptions::default()).unwrap();
        assert!(
            get(&s, &k, 0, Tier::Memory).unwrap().is_none(),
            "needs the disk"
        );
        assert_eq!(
            get(&s, &k, 0, Tier::All).unwrap().unwrap().error,
            status::OK
        );
        // The disk read filled the block cache.
        assert_eq!(
            get(&s, &k, 0, Tier::Memory).unwrap().unwrap().value.0,
            &b"v"[..]
        );
    }

    #[test]
    fn counts_and_ttls_skip_expired_values() {
        let (_d, s) = store(&[("a", "1", 0), ("b", "2", 100), ("c", "3", 50)]);
        assert_eq!(sortkey_count(&s, &Blob::from("h"), 60).unwrap().count, 2);
        let k = Blob::from(key::encode_key(b"h", b"b").unwrap());
        assert_eq!(ttl(&s, &k, 60, Tier::All).unwrap().unwrap().ttl_seconds, 40);
        let k = Blob::from(key::encode_key(b"h", b"a").unwrap());
        assert_eq!(ttl(&s, &k, 60, Tier::All).unwrap().unwrap().ttl_seconds, -1);
        let k = Blob::from(key::encode_key(b"h", b"c").unwrap());
        assert_eq!(
            ttl(&s, &k, 60, Tier::All).unwrap().unwrap().error,
            status::NOT_FOUND
        );
    }

    /// Regression guard: listed-key `multi_get` and `batch_get` ignored the response bounds, so
    /// one request could make the server read and answer any amount.
    #[test]
    fn listed_keys_and_batch_get_are_bounded() {
        let pairs: Vec<(String, String)> = (0..50)
            .map(|i| (format!("s{i:02}"), "v".repeat(100)))
            .collect();
        let refs: Vec<(&str, &str, u32)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str(), 0))
            .collect();
        let (_d, s) = store(&refs);
        let limits = ReadLimits {
            max_iteration_count: 10,
            max_iteration_size: 1000,
            ..ReadLimits::default()
        };
        let listed = |n: usize| MultiGetRequest {
            hash_key: Blob::from(&b"h"[..]),
            sort_keys: Some(
                (0..n)
                    .map(|i| Blob::from(format!("s{i:02}").into_bytes()))
                    .collect(),
            ),
            ..Default::default()
        };
        let few = multi_get(&s, &listed(5), 0, limits).unwrap();
        assert_eq!((few.error, few.kvs.len()), (status::OK, 5));
        let many = multi_get(&s, &listed(40), 0, limits).unwrap();
        assert_eq!(many.error, status::INCOMPLETE);
        assert!(many.kvs.len() <= 10, "{}", many.kvs.len());
        let mut counted = listed(40);
        counted.max_kv_count = 3;
        assert_eq!(multi_get(&s, &counted, 0, limits).unwrap().kvs.len(), 3);

        let keys = |n: usize| BatchGetRequest {
            keys: (0..n)
                .map(|i| FullKey {
                    hash_key: Blob::from(&b"h"[..]),
                    sort_key: Blob::from(format!("s{i:02}").into_bytes()),
                })
                .collect(),
        };
        let few = batch_get(&s, &keys(5), 0, limits).unwrap();
        assert_eq!((few.error, few.data.len()), (status::OK, 5));
        assert_eq!(
            batch_get(&s, &keys(0), 0, limits).unwrap().error,
            status::INVALID_ARGUMENT
        );
        assert_eq!(
            batch_get(&s, &keys(11), 0, limits).unwrap().error,
            status::INVALID_ARGUMENT
        );
        let big = ReadLimits {
            max_iteration_count: 100,
            max_iteration_size: 1000,
            ..ReadLimits::default()
        };
        let sized = batch_get(&s, &keys(40), 0, big).unwrap();
        assert_eq!(sized.error, status::INCOMPLETE);
        assert!(
            sized.data.len() < 40 && sized.data.len() >= 9,
            "{}",
            sized.data.len()
        );
    }
}
