//! RocksDB for one partition replica, at `<replica dir>/data/rdb`.
//!
//! Keys and values are stored in Pegasus's schemas ([`pegasus_protocol::key`]). The
//! RocksDB WAL is off: the [plog](super::plog) is the write-ahead log. Every applied batch also
//! writes the last applied decree under a key no user key can have (hash-key length `0xFFFF`),
//! so after a crash the store says which decree its flushed state reached and the plog replays
//! from there. A compaction filter drops expired values.

use std::path::Path;

use pegasus_protocol::key;
use rocksdb::{
    DB, DBCompressionType, Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions,
};

use super::metrics::StoreStats;
use super::plog::{Mutation, Op};

/// `rocksdb.usage_scenario` (a table environment): how the store's options are tuned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scenario {
    /// The configured options.
    #[default]
    Normal,
    /// Larger write buffers, later level-0 compactions.
    PreferWrite,
    /// No automatic compactions and no level-0 write stalls, for loading a table.
    BulkLoad,
}

/// The key holding the last applied decree.
const APPLIED_DECREE_KEY: &[u8] = b"\xff\xffpegasus.applied_decree";
/// The server's own keys start so; a user key cannot (its hash key would be 65,535 bytes).
const INTERNAL_PREFIX: &[u8] = b"\xff\xff";

/// The key holding when the last manual compaction finished (unix seconds).
const MANUAL_COMPACT_KEY: &[u8] = b"\xff\xffpegasus.manual_compact_finish";

/// A RocksDB failure.
#[derive(Debug, thiserror::Error)]
#[error("rocksdb: {0}")]
pub struct StorageError(#[from] rocksdb::Error);

/// What a store holds ([`Storage::digest`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreDigest {
    /// The last decree applied.
    pub decree: u64,
    /// User keys.
    pub keys: u64,
    /// CRC-64/XZ over every user key and value, in key order.
    pub crc64: u64,
}

/// The `[pegasus.server]` RocksDB options this server applies.
#[derive(Clone)]
pub struct RocksOptions {
    /// `rocksdb_write_buffer_size`.
    pub write_buffer_size: usize,
    /// `rocksdb_max_write_buffer_number`.
    pub max_write_buffer_number: i32,
    /// `rocksdb_compression_type`: `none`, `snappy`, `lz4`, `zstd`.
    pub compression: DBCompressionType,
    /// `rocksdb_max_open_files`.
    pub max_open_files: i32,
    /// `rocksdb_max_background_compactions` + flushes, as background jobs.
    pub max_background_jobs: i32,
    /// `rocksdb_block_cache_capacity`, shared by every partition of the node.
    pub block_cache: Option<rocksdb::Cache>,
    /// Whether dropping the store flushes what it holds in memory (RocksDB's default). The
    /// whole-server simulation turns it off: its crashed node drops its stores, which must then
    /// lose what a killed process loses (the WAL is off: everything since the last flush).
    pub flush_on_close: bool,
}

impl std::fmt::Debug for RocksOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksOptions")
            .field("write_buffer_size", &self.write_buffer_size)
            .field("compression", &self.compression)
            .field("block_cache", &self.block_cache.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for RocksOptions {
    fn default() -> Self {
        RocksOptions {
            write_buffer_size: 64 << 20,
            max_write_buffer_number: 3,
            compression: DBCompressionType::Lz4,
            max_open_files: -1,
            max_background_jobs: 4,
            block_cache: None,
            flush_on_close: true,
        }
    }
}

/// RocksDB's options as the config gives them (`[pegasus.server] rocksdb_*`): values only;
/// [`RocksOptions::new`] makes the node's block cache from them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RocksSettings {
    /// `rocksdb_write_buffer_size`.
    pub write_buffer_size: usize,
    /// `rocksdb_max_write_buffer_number`.
    pub max_write_buffer_number: i32,
    /// `rocksdb_compression_type`.
    pub compression: DBCompressionType,
    /// `rocksdb_max_open_files`.
    pub max_open_files: i32,
    /// `rocksdb_max_background_compactions`, as background jobs (2 to 16).
    pub max_background_jobs: i32,
    /// `rocksdb_block_cache_capacity` in bytes (0: none).
    pub block_cache_bytes: usize,
}

impl RocksOptions {
    /// The options of `settings`, with a block cache of its capacity for every partition of the
    /// node.
    pub fn new(settings: &RocksSettings) -> Self {
        RocksOptions {
            write_buffer_size: settings.write_buffer_size,
            max_write_buffer_number: settings.max_write_buffer_number,
            compression: settings.compression,
            max_open_files: settings.max_open_files,
            max_background_jobs: settings.max_background_jobs,
            block_cache: (settings.block_cache_bytes > 0)
                .then(|| rocksdb::Cache::new_lru_cache(settings.block_cache_bytes)),
            flush_on_close: true,
        }
    }
}

/// The store of one partition replica.
pub struct Storage {
    db: DB,
    /// Its options, kept for the statistics they collect (block-cache hits and misses).
    opts: Options,
    /// The options `opts` were copied from, if they were ([`RocksOptions::flush_on_close`]).
    _base: Option<Options>,
    /// Read options of memory-only reads, made once: they are the same for every read.
    memory_tier: ReadOptions,
    /// The configured write buffer, which `rocksdb.usage_scenario` scales.
    write_buffer_size: usize,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("path", &self.db.path())
            .finish()
    }
}

fn expired_filter(_level: u32, key: &[u8], value: &[u8]) -> rocksdb::compaction_filter::Decision {
    use rocksdb::compaction_filter::Decision;
    if key.starts_with(b"\xff\xff") {
        return Decision::Keep;
    }
    if key::is_expired(key::value::expire_ts(value), key::epoch_now()) {
        Decision::Remove
    } else {
        Decision::Keep
    }
}

impl Storage {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path, o: &RocksOptions) -> Result<Storage, StorageError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_write_buffer_size(o.write_buffer_size);
        opts.set_max_write_buffer_number(o.max_write_buffer_number);
        opts.set_compression_type(o.compression);
        opts.set_max_open_files(o.max_open_files);
        opts.set_max_background_jobs(o.max_background_jobs);
        opts.set_compaction_filter("pegasus_ttl", expired_filter);
        // RocksDB's own warnings go to the server's log, not to a LOG file per store: one open
        // file less per replica (a node with thousands holds 6 each instead of 7), and one
        // place to read.
        let store = path.display().to_string();
        opts.set_info_logger(rocksdb::InfoLogger::new_callback_logger(
            rocksdb::LogLevel::Warn,
            move |level, message| {
                let message = message.trim_end();
                match level {
                    rocksdb::LogLevel::Warn => tracing::warn!(%store, "rocksdb: {message}"),
                    rocksdb::LogLevel::Error | rocksdb::LogLevel::Fatal => {
                        tracing::error!(%store, "rocksdb: {message}")
                    }
                    // The options dump at every open (headers), and what is below warnings.
                    _ => {}
                }
            },
        ));
        // Tickers only (block-cache hits and misses for the metrics), no timers.
        opts.enable_statistics();
        opts.set_statistics_level(rocksdb::statistics::StatsLevel::ExceptHistogramOrTimers);
        if let Some(cache) = &o.block_cache {
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_block_cache(cache);
            table.set_bloom_filter(10.0, false);
            opts.set_block_based_table_factory(&table);
        }
        let mut memory_tier = ReadOptions::default();
        memory_tier.set_read_tier(rocksdb::ReadTier::BlockCache);
        // The crate has no setter for it: the options are copied with it set (the copy's
        // callbacks are the original's, kept alive with it in `_base`).
        let (opts, base) = if o.flush_on_close {
            (opts, None)
        } else {
            (
                opts.get_options_from_string("avoid_flush_during_shutdown=true")?,
                Some(opts),
            )
        };
        Ok(Storage {
            db: DB::open(&opts, path)?,
            opts,
            _base: base,
            memory_tier,
            write_buffer_size: o.write_buffer_size,
        })
    }

    /// What the store holds now, for the metrics.
    pub fn stats(&self) -> StoreStats {
        let int = |name: &str| self.db.property_int_value(name).ok().flatten().unwrap_or(0);
        let files = (0..7)
            .map(|l| int(&format!("rocksdb.num-files-at-level{l}")))
            .sum();
        StoreStats {
            sst_bytes: int("rocksdb.total-sst-files-size"),
            sst_files: files,
            memtable_bytes: int("rocksdb.cur-size-all-mem-tables"),
            pending_compaction_bytes: int("rocksdb.estimate-pending-compaction-bytes"),
            block_cache_hits: self
                .opts
                .get_ticker_count(rocksdb::statistics::Ticker::BlockCacheHit),
            block_cache_misses: self
                .opts
                .get_ticker_count(rocksdb::statistics::Ticker::BlockCacheMiss),
        }
    }

    /// The last decree applied to the store (0 for a new store).
    pub fn applied_decree(&self) -> Result<u64, StorageError> {
        Ok(self
            .db
            .get_pinned(APPLIED_DECREE_KEY)?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    /// What the store holds, from one snapshot: its applied decree, its number of user keys and
    /// a CRC-64 over every user key and value in order (the server's own keys, which differ
    /// between copies, left out). Two copies at one decree must have equal digests. Reads the
    /// whole store: an operator's or a test's check, not a request path.
    pub fn digest(&self) -> Result<StoreDigest, StorageError> {
        const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_XZ);
        let snapshot = self.db.snapshot();
        let decree = snapshot
            .get(APPLIED_DECREE_KEY)?
            .and_then(|v| v.as_slice().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0);
        let mut digest = CRC64.digest();
        let mut keys = 0;
        for item in snapshot.iterator(IteratorMode::Start) {
            let (k, v) = item?;
            if k.starts_with(INTERNAL_PREFIX) {
                continue;
            }
            for part in [&k, &v] {
                digest.update(&(part.len() as u64).to_be_bytes());
                digest.update(part);
            }
            keys += 1;
        }
        Ok(StoreDigest {
            decree,
            keys,
            crc64: digest.finalize(),
        })
    }

    /// Applies mutations in one atomic batch, without the RocksDB WAL.
    pub fn apply(&self, mutations: &[Mutation]) -> Result<(), StorageError> {
        let Some(last) = mutations.last() else {
            return Ok(());
        };
        let mut batch = WriteBatch::default();
        for m in mutations {
            for op in &m.ops {
                match op {
                    Op::Put(k, v) => batch.put(k, v),
                    Op::Delete(k) => batch.delete(k),
                }
            }
        }
        batch.put(APPLIED_DECREE_KEY, last.decree.to_be_bytes());
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        self.db.write_opt(batch, &wo)?;
        Ok(())
    }

    /// The stored value of a stored key (expiry not checked).
    pub fn get_raw(
        &self,
        key: &[u8],
    ) -> Result<Option<rocksdb::DBPinnableSlice<'_>>, StorageError> {
        Ok(self.db.get_pinned(key)?)
    }

    /// The stored value of a key, answered only from memory (memtables and block cache):
    /// `Ok(None)` when answering would need a disk read. Never blocks on I/O, so it may run on
    /// an async worker.
    pub fn get_raw_in_memory(
        &self,
        key: &[u8],
    ) -> Result<Option<Option<rocksdb::DBPinnableSlice<'_>>>, StorageError> {
        match self.db.get_pinned_opt(key, &self.memory_tier) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == rocksdb::ErrorKind::Incomplete => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The user value of a key, `None` if absent or expired at `now`.
    pub fn get(&self, key: &[u8], now: u32) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.get_raw(key)?.and_then(|v| {
            (!key::is_expired(key::value::expire_ts(&v), now))
                .then(|| key::value::user_data(&v).to_vec())
        }))
    }

    /// An iterator from `start` (inclusive) in `direction`; `upper` bounds forward scans.
    pub fn iter(
        &self,
        start: &[u8],
        direction: Direction,
        upper: Option<&[u8]>,
    ) -> rocksdb::DBIterator<'_> {
        let mut ro = ReadOptions::default();
        if let Some(upper) = upper {
            ro.set_iterate_upper_bound(upper.to_vec());
        }
        self.db
            .iterator_opt(IteratorMode::From(start, direction), ro)
    }

    /// A raw iterator, for callers that seek themselves.
    pub fn raw_iter(&self) -> rocksdb::DBRawIterator<'_> {
        self.db.raw_iterator()
    }

    /// Writes a consistent copy of the store (hard links where it can) to `dir`, which must
    /// not exist: a new copy is learned from it.
    pub fn checkpoint(&self, dir: &Path) -> Result<(), StorageError> {
        rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(dir)?;
        Ok(())
    }

    /// Applies `rocksdb.usage_scenario`: Pegasus's three sets of write-buffer and level-0
    /// options, changed on the open store.
    pub fn set_scenario(&self, scenario: Scenario) -> Result<(), StorageError> {
        let base = self.write_buffer_size;
        let (buffer, trigger, slowdown, stop, auto) = match scenario {
            Scenario::Normal => (base, 4, 20, 36, true),
            Scenario::PreferWrite => (base * 4, 8, 48, 64, true),
            Scenario::BulkLoad => (base * 4, 1 << 30, 1 << 30, 1 << 30, false),
        };
        let (buffer, trigger, slowdown, stop) = (
            buffer.to_string(),
            trigger.to_string(),
            slowdown.to_string(),
            stop.to_string(),
        );
        self.db.set_options(&[
            ("write_buffer_size", buffer.as_str()),
            ("level0_file_num_compaction_trigger", trigger.as_str()),
            ("level0_slowdown_writes_trigger", slowdown.as_str()),
            ("level0_stop_writes_trigger", stop.as_str()),
            (
                "disable_auto_compactions",
                if auto { "false" } else { "true" },
            ),
        ])?;
        Ok(())
    }

    /// Compacts the whole store into `target_level` (-1: the bottommost), then records
    /// `finished` (unix seconds) as the last manual compaction.
    pub fn compact(
        &self,
        target_level: i32,
        finished: impl FnOnce() -> i64,
    ) -> Result<i64, StorageError> {
        let mut o = rocksdb::CompactOptions::default();
        o.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        if target_level >= 1 {
            o.set_change_level(true);
            o.set_target_level(target_level);
        }
        self.db.compact_range_opt(None::<&[u8]>, None::<&[u8]>, &o);
        let at = finished();
        self.db.put(MANUAL_COMPACT_KEY, at.to_be_bytes())?;
        self.db.flush()?;
        Ok(at)
    }

    /// When the last manual compaction finished (unix seconds, 0: never).
    pub fn manual_compacted(&self) -> Result<i64, StorageError> {
        Ok(self
            .db
            .get(MANUAL_COMPACT_KEY)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, i64::from_be_bytes))
    }

    /// Writes the memtables to SST files: everything applied so far becomes durable without the
    /// plog. Returns the decree that is now durable.
    pub fn flush(&self) -> Result<u64, StorageError> {
        let decree = self.applied_decree()?;
        self.db.flush()?;
        Ok(decree)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applied_decree_survives_a_flush_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path(), &RocksOptions::default()).unwrap();
        assert_eq!(s.applied_decree().unwrap(), 0);
        let key = key::encode_key(b"h", b"s").unwrap();
        let m = Mutation {
            ballot: 1,
            decree: 3,
            ops: vec![Op::Put(key.clone(), key::value::encode(0, 1, b"v"))],
        };
        s.apply(&[m]).unwrap();
        assert_eq!(s.get(&key, 0).unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(s.flush().unwrap(), 3);
        drop(s);
        let s = Storage::open(dir.path(), &RocksOptions::default()).unwrap();
        assert_eq!(s.applied_decree().unwrap(), 3);
        assert_eq!(s.get(&key, 0).unwrap().as_deref(), Some(&b"v"[..]));
    }

    /// Guards the simulation's crash: with `flush_on_close` off, a dropped store is back at its
    /// last flush when reopened (as after a killed process), with it on, it kept everything.
    #[test]
    fn a_store_dropped_without_flush_on_close_is_back_at_its_last_flush() {
        for flush_on_close in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let o = RocksOptions {
                flush_on_close,
                ..RocksOptions::default()
            };
            let s = Storage::open(dir.path(), &o).unwrap();
            let put = |decree: u64| Mutation {
                ballot: 1,
                decree,
                ops: vec![Op::Put(
                    key::encode_key(format!("h{decree}").as_bytes(), b"s").unwrap(),
                    key::value::encode(0, 1, b"v"),
                )],
            };
            s.apply(&[put(1)]).unwrap();
            s.flush().unwrap();
            s.apply(&[put(2)]).unwrap();
            drop(s);
            let s = Storage::open(dir.path(), &o).unwrap();
            let want = if flush_on_close { 2 } else { 1 };
            assert_eq!(
                s.applied_decree().unwrap(),
                want,
                "flush_on_close {flush_on_close}"
            );
        }
    }

    /// Level-0 files of the store.
    fn level0(s: &Storage) -> u64 {
        s.db.property_int_value("rocksdb.num-files-at-level0")
            .unwrap()
            .unwrap()
    }

    #[test]
    fn usage_scenarios_change_the_open_store_and_a_manual_compaction_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path(), &RocksOptions::default()).unwrap();
        let flush_one = |decree: u64| {
            let key = key::encode_key(format!("h{decree}").as_bytes(), b"s").unwrap();
            s.apply(&[Mutation {
                ballot: 1,
                decree,
                ops: vec![Op::Put(key, key::value::encode(0, 1, b"v"))],
            }])
            .unwrap();
            s.flush().unwrap();
        };
        // bulk_load: no automatic compaction, so level-0 files pile up past the trigger (4).
        s.set_scenario(Scenario::BulkLoad).unwrap();
        for d in 1..=6 {
            flush_one(d);
        }
        // Time for a compaction, were one allowed (tiny files: milliseconds).
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert_eq!(level0(&s), 6);
        // normal again: compactions resume and level 0 drains below the trigger.
        s.set_scenario(Scenario::Normal).unwrap();
        flush_one(7);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while level0(&s) >= 4 {
            assert!(std::time::Instant::now() < deadline, "no compaction");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        s.set_scenario(Scenario::PreferWrite).unwrap();
        assert_eq!(s.manual_compacted().unwrap(), 0);
        assert_eq!(s.compact(-1, || 1_700_000_000).unwrap(), 1_700_000_000);
        // Everything compacted below level 0; the one file there holds the finish record, written
        // (and flushed) once the compaction finished.
        assert_eq!(level0(&s), 1);
        assert_eq!(s.manual_compacted().unwrap(), 1_700_000_000);
        assert_eq!(s.applied_decree().unwrap(), 7);
    }

    #[test]
    fn expired_values_are_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path(), &RocksOptions::default()).unwrap();
        let key = key::encode_key(b"h", b"s").unwrap();
        s.apply(&[Mutation {
            ballot: 1,
            decree: 1,
            ops: vec![Op::Put(key.clone(), key::value::encode(100, 1, b"v"))],
        }])
        .unwrap();
        assert!(s.get(&key, 99).unwrap().is_some());
        assert!(s.get(&key, 100).unwrap().is_none());
    }
}
