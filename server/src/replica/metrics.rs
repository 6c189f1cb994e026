//! The replica server's metrics: requests and their latency per table and kind, bytes read and
//! written, the plog, prepares and learning; and, set when scraped, replicas by role and what
//! each replica's RocksDB holds.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use pegasus_protocol::codes::rpc;
use pegasus_protocol::types::Gpid;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::metrics::{self, Latency, OpStats, PartitionLabels, TableLabels};

/// The kinds of client request, as Pegasus counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `RPC_RRDB_RRDB_GET`.
    Get,
    /// `RPC_RRDB_RRDB_MULTI_GET`.
    MultiGet,
    /// `RPC_RRDB_RRDB_BATCH_GET`.
    BatchGet,
    /// `RPC_RRDB_RRDB_SORTKEY_COUNT`.
    SortkeyCount,
    /// `RPC_RRDB_RRDB_TTL`.
    Ttl,
    /// `RPC_RRDB_RRDB_GET_SCANNER` and `RPC_RRDB_RRDB_SCAN`.
    Scan,
    /// `RPC_RRDB_RRDB_PUT`.
    Put,
    /// `RPC_RRDB_RRDB_MULTI_PUT`.
    MultiPut,
    /// `RPC_RRDB_RRDB_REMOVE`.
    Remove,
    /// `RPC_RRDB_RRDB_MULTI_REMOVE`.
    MultiRemove,
    /// `RPC_RRDB_RRDB_INCR`.
    Incr,
    /// `RPC_RRDB_RRDB_CHECK_AND_SET`.
    CheckAndSet,
    /// `RPC_RRDB_RRDB_CHECK_AND_MUTATE`.
    CheckAndMutate,
}

impl Op {
    /// Every kind, in label order.
    pub const ALL: [Op; 13] = [
        Op::Get,
        Op::MultiGet,
        Op::BatchGet,
        Op::SortkeyCount,
        Op::Ttl,
        Op::Scan,
        Op::Put,
        Op::MultiPut,
        Op::Remove,
        Op::MultiRemove,
        Op::Incr,
        Op::CheckAndSet,
        Op::CheckAndMutate,
    ];

    /// The kind of RPC `name`, if it is a client request.
    pub fn of_rpc(name: &str) -> Option<Op> {
        Some(match name {
            rpc::GET => Op::Get,
            rpc::MULTI_GET => Op::MultiGet,
            rpc::BATCH_GET => Op::BatchGet,
            rpc::SORTKEY_COUNT => Op::SortkeyCount,
            rpc::TTL => Op::Ttl,
            rpc::GET_SCANNER | rpc::SCAN => Op::Scan,
            rpc::PUT => Op::Put,
            rpc::MULTI_PUT => Op::MultiPut,
            rpc::REMOVE => Op::Remove,
            rpc::MULTI_REMOVE => Op::MultiRemove,
            rpc::INCR => Op::Incr,
            rpc::CHECK_AND_SET => Op::CheckAndSet,
            rpc::CHECK_AND_MUTATE => Op::CheckAndMutate,
            _ => return None,
        })
    }

    /// Its label value (Pegasus's metric names: `get`, `multi_get`, …).
    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::MultiGet => "multi_get",
            Op::BatchGet => "batch_get",
            Op::SortkeyCount => "sortkey_count",
            Op::Ttl => "ttl",
            Op::Scan => "scan",
            Op::Put => "put",
            Op::MultiPut => "multi_put",
            Op::Remove => "remove",
            Op::MultiRemove => "multi_remove",
            Op::Incr => "incr",
            Op::CheckAndSet => "check_and_set",
            Op::CheckAndMutate => "check_and_mutate",
        }
    }

    /// Whether it reads (its answer's bytes count as read).
    pub fn reads(self) -> bool {
        matches!(
            self,
            Op::Get | Op::MultiGet | Op::BatchGet | Op::SortkeyCount | Op::Ttl | Op::Scan
        )
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    table: String,
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    replica_role: &'static str,
}

/// One table's request metrics, fetched once per replica (and again if the table is renamed).
/// A kind's series are made on its first request, so a table shows only the kinds it serves.
#[derive(Debug)]
pub struct TableMetrics {
    name: String,
    ops: [std::sync::OnceLock<OpStats>; Op::ALL.len()],
    requests: Family<OpLabels, Counter>,
    latency: Family<OpLabels, Latency>,
    read_bytes: Counter,
    /// Bytes of write requests.
    pub written_bytes: Counter,
}

impl TableMetrics {
    /// The metrics of `op` (one atomic load once made).
    pub fn op(&self, op: Op) -> &OpStats {
        // `Op::ALL` lists the kinds in declaration order: the discriminant is the index.
        self.ops[op as usize].get_or_init(|| {
            let labels = OpLabels {
                table: self.name.clone(),
                op: op.name(),
            };
            let requests = self.requests.get_or_create(&labels).clone();
            let latency = self.latency.get_or_create(&labels).clone();
            OpStats {
                requests,
                latency,
                answered_bytes: op.reads().then(|| self.read_bytes.clone()),
            }
        })
    }
}

/// The private logs' metrics (every replica's log adds to them).
#[derive(Clone, Debug, Default)]
pub struct PlogMetrics {
    /// Appends (one per batch of mutations).
    pub appends: Counter,
    /// Bytes appended.
    pub bytes: Counter,
    /// Time of each fsync.
    pub fsync: Latency,
}

/// What a replica's store holds, as scraped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Bytes of SST files.
    pub sst_bytes: u64,
    /// SST files.
    pub sst_files: u64,
    /// Bytes in memtables.
    pub memtable_bytes: u64,
    /// Bytes compaction is estimated to rewrite.
    pub pending_compaction_bytes: u64,
    /// Block-cache hits and misses since the store opened.
    pub block_cache_hits: u64,
    /// See `block_cache_hits`.
    pub block_cache_misses: u64,
}

/// A replica as scraped.
#[derive(Clone, Debug)]
pub struct ReplicaSample {
    /// Which.
    pub gpid: Gpid,
    /// Its table's name.
    pub table: String,
    /// `primary`, `secondary`, `learner` or `inactive`.
    pub role: &'static str,
    /// Its store.
    pub store: StoreStats,
}

/// The replica server's metrics.
#[derive(Debug)]
pub struct ReplicaMetrics {
    registry: Registry,
    requests: Family<OpLabels, Counter>,
    latency: Family<OpLabels, Latency>,
    read_bytes: Family<TableLabels, Counter>,
    written_bytes: Family<TableLabels, Counter>,
    tables: Mutex<HashMap<String, Arc<TableMetrics>>>,
    /// The private logs.
    pub plog: PlogMetrics,
    /// The shared log (its appends are groups: one write and one fsync each).
    pub slog: PlogMetrics,
    /// From a prepare sent to its acknowledgement.
    pub prepare_rtt: Latency,
    /// Bytes copied by learners.
    pub learn_bytes: Counter,
    /// Time of each copy a learner fetched.
    pub learn_duration: Latency,
    /// Bytes of checkpoints uploaded for backups.
    pub backup_uploaded: Counter,
    /// Bytes of backups downloaded to restore copies.
    pub restore_downloaded: Counter,
    replicas: Family<RoleLabels, Gauge>,
    sst_bytes: Family<PartitionLabels, Gauge>,
    sst_files: Family<PartitionLabels, Gauge>,
    memtable_bytes: Family<PartitionLabels, Gauge>,
    pending_compaction_bytes: Family<PartitionLabels, Gauge>,
    block_cache_hits: Counter,
    block_cache_misses: Counter,
    block_cache_hit_ratio: Gauge<f64, AtomicU64>,
    /// Each store's hits and misses when last scraped (the counters add what is new).
    seen: Mutex<HashMap<Gpid, (u64, u64)>>,
}

impl Default for ReplicaMetrics {
    fn default() -> Self {
        Self::new("")
    }
}

impl ReplicaMetrics {
    /// The metrics of a replica server of `cluster`.
    pub fn new(cluster: &str) -> Self {
        let mut r = metrics::registry(cluster, "replica");
        let m = ReplicaMetrics {
            registry: Registry::default(),
            requests: Family::default(),
            latency: Family::default(),
            read_bytes: Family::default(),
            written_bytes: Family::default(),
            tables: Mutex::default(),
            plog: PlogMetrics::default(),
            slog: PlogMetrics::default(),
            prepare_rtt: Latency::default(),
            learn_bytes: Counter::default(),
            learn_duration: Latency::default(),
            backup_uploaded: Counter::default(),
            restore_downloaded: Counter::default(),
            replicas: Family::default(),
            sst_bytes: Family::default(),
            sst_files: Family::default(),
            memtable_bytes: Family::default(),
            pending_compaction_bytes: Family::default(),
            block_cache_hits: Counter::default(),
            block_cache_misses: Counter::default(),
            block_cache_hit_ratio: Gauge::default(),
            seen: Mutex::default(),
        };
        r.register(
            "replica_requests",
            "Client requests served, by table and kind",
            m.requests.clone(),
        );
        r.register_with_unit(
            "replica_request_latency",
            "Client requests from read to answered, by table and kind",
            Unit::Seconds,
            m.latency.clone(),
        );
        r.register_with_unit(
            "replica_read",
            "Bytes answered to reads",
            Unit::Bytes,
            m.read_bytes.clone(),
        );
        r.register_with_unit(
            "replica_written",
            "Bytes of write requests",
            Unit::Bytes,
            m.written_bytes.clone(),
        );
        r.register(
            "plog_appends",
            "Private-log appends (one per batch of mutations)",
            m.plog.appends.clone(),
        );
        r.register_with_unit(
            "plog_appended",
            "Bytes appended to private logs",
            Unit::Bytes,
            m.plog.bytes.clone(),
        );
        r.register_with_unit(
            "plog_fsync_latency",
            "Private-log fsyncs",
            Unit::Seconds,
            m.plog.fsync.clone(),
        );
        r.register(
            "slog_groups",
            "Shared-log writes (one per group of batches, fsynced once)",
            m.slog.appends.clone(),
        );
        r.register_with_unit(
            "slog_appended",
            "Bytes appended to the shared log",
            Unit::Bytes,
            m.slog.bytes.clone(),
        );
        r.register_with_unit(
            "slog_fsync_latency",
            "Shared-log fsyncs",
            Unit::Seconds,
            m.slog.fsync.clone(),
        );
        r.register_with_unit(
            "replica_prepare_latency",
            "Prepares from sent to acknowledged by the secondary or learner",
            Unit::Seconds,
            m.prepare_rtt.clone(),
        );
        r.register_with_unit(
            "replica_learned",
            "Bytes of checkpoints copied by learners",
            Unit::Bytes,
            m.learn_bytes.clone(),
        );
        r.register_with_unit(
            "replica_learn_duration",
            "Checkpoint copies fetched by learners",
            Unit::Seconds,
            m.learn_duration.clone(),
        );
        r.register_with_unit(
            "replica_backup_uploaded",
            "Bytes of checkpoints uploaded to block services for backups",
            Unit::Bytes,
            m.backup_uploaded.clone(),
        );
        r.register_with_unit(
            "replica_restore_downloaded",
            "Bytes downloaded from block services to restore copies",
            Unit::Bytes,
            m.restore_downloaded.clone(),
        );
        r.register(
            "replicas",
            "Replicas on this node by role",
            m.replicas.clone(),
        );
        r.register_with_unit(
            "rocksdb_sst",
            "Bytes of a replica's SST files",
            Unit::Bytes,
            m.sst_bytes.clone(),
        );
        r.register(
            "rocksdb_sst_files",
            "A replica's SST files",
            m.sst_files.clone(),
        );
        r.register_with_unit(
            "rocksdb_memtable",
            "Bytes in a replica's memtables",
            Unit::Bytes,
            m.memtable_bytes.clone(),
        );
        r.register_with_unit(
            "rocksdb_pending_compaction",
            "Bytes compaction is estimated to rewrite in a replica",
            Unit::Bytes,
            m.pending_compaction_bytes.clone(),
        );
        r.register(
            "rocksdb_block_cache_hits",
            "Block-cache hits of every replica",
            m.block_cache_hits.clone(),
        );
        r.register(
            "rocksdb_block_cache_misses",
            "Block-cache misses of every replica",
            m.block_cache_misses.clone(),
        );
        r.register(
            "rocksdb_block_cache_hit_ratio",
            "Block-cache hits over lookups, over the replicas open now",
            m.block_cache_hit_ratio.clone(),
        );
        ReplicaMetrics { registry: r, ..m }
    }

    /// The request metrics of table `name`, made on first use.
    pub fn table(&self, name: &str) -> Arc<TableMetrics> {
        let mut tables = self.tables.lock().expect("tables");
        if let Some(t) = tables.get(name) {
            return Arc::clone(t);
        }
        let read_bytes = self
            .read_bytes
            .get_or_create(&TableLabels::of(name))
            .clone();
        let written_bytes = self
            .written_bytes
            .get_or_create(&TableLabels::of(name))
            .clone();
        let t = Arc::new(TableMetrics {
            name: name.to_owned(),
            ops: Default::default(),
            requests: self.requests.clone(),
            latency: self.latency.clone(),
            read_bytes,
            written_bytes,
        });
        tables.insert(name.to_owned(), Arc::clone(&t));
        t
    }

    /// The metrics as Prometheus text, with the gauges set from `replicas` first.
    pub fn encode(&self, replicas: &[ReplicaSample]) -> String {
        self.replicas.clear();
        for role in ["primary", "secondary", "learner", "inactive"] {
            let n = replicas.iter().filter(|r| r.role == role).count();
            self.replicas
                .get_or_create(&RoleLabels { replica_role: role })
                .set(n as i64);
        }
        for family in [
            &self.sst_bytes,
            &self.sst_files,
            &self.memtable_bytes,
            &self.pending_compaction_bytes,
        ] {
            family.clear();
        }
        let mut seen = self.seen.lock().expect("seen");
        let (mut hits, mut lookups) = (0u64, 0u64);
        let mut now_seen = HashMap::new();
        for r in replicas {
            let labels = PartitionLabels {
                table: r.table.clone(),
                partition: r.gpid.partition_index,
            };
            let s = &r.store;
            let gauge = |v: u64| v.min(i64::MAX as u64) as i64;
            self.sst_bytes
                .get_or_create(&labels)
                .set(gauge(s.sst_bytes));
            self.sst_files
                .get_or_create(&labels)
                .set(gauge(s.sst_files));
            self.memtable_bytes
                .get_or_create(&labels)
                .set(gauge(s.memtable_bytes));
            self.pending_compaction_bytes
                .get_or_create(&labels)
                .set(gauge(s.pending_compaction_bytes));
            let (h0, m0) = seen.get(&r.gpid).copied().unwrap_or_default();
            // A store opened again starts from 0: all it counted is new.
            let (dh, dm) = if s.block_cache_hits < h0 || s.block_cache_misses < m0 {
                (s.block_cache_hits, s.block_cache_misses)
            } else {
                (s.block_cache_hits - h0, s.block_cache_misses - m0)
            };
            self.block_cache_hits.inc_by(dh);
            self.block_cache_misses.inc_by(dm);
            hits += s.block_cache_hits;
            lookups += s.block_cache_hits + s.block_cache_misses;
            now_seen.insert(r.gpid, (s.block_cache_hits, s.block_cache_misses));
        }
        *seen = now_seen;
        self.block_cache_hit_ratio.set(if lookups == 0 {
            0.0
        } else {
            hits as f64 / lookups as f64
        });
        metrics::encode(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pidx: i32, role: &'static str, hits: u64) -> ReplicaSample {
        ReplicaSample {
            gpid: Gpid::new(1, pidx),
            table: "temp".into(),
            role,
            store: StoreStats {
                sst_bytes: 100,
                block_cache_hits: hits,
                block_cache_misses: 1,
                ..StoreStats::default()
            },
        }
    }

    #[test]
    fn requests_count_per_table_and_kind_and_gauges_follow_the_replicas() {
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i, "{op:?} indexes its own slot");
        }
        let m = ReplicaMetrics::new("c");
        let t = m.table("temp");
        assert!(Arc::ptr_eq(&t, &m.table("temp")), "fetched once");
        t.op(Op::Get).done(std::time::Instant::now());
        t.op(Op::Get).done(std::time::Instant::now());
        t.op(Op::Put).done(std::time::Instant::now());
        let text = m.encode(&[sample(0, "primary", 5), sample(1, "secondary", 3)]);
        let has = |line: &str| assert!(text.contains(line), "no `{line}` in\n{text}");
        has(
            "pegasus_replica_requests_total{cluster=\"c\",role=\"replica\",table=\"temp\",op=\"get\"} 2",
        );
        has(
            "pegasus_replica_requests_total{cluster=\"c\",role=\"replica\",table=\"temp\",op=\"put\"} 1",
        );
        has(
            "pegasus_replica_request_latency_seconds_count{cluster=\"c\",role=\"replica\",table=\"temp\",op=\"get\"} 2",
        );
        has("pegasus_replicas{cluster=\"c\",role=\"replica\",replica_role=\"primary\"} 1");
        has(
            "pegasus_rocksdb_sst_bytes{cluster=\"c\",role=\"replica\",table=\"temp\",partition=\"1\"} 100",
        );
        has("pegasus_rocksdb_block_cache_hits_total{cluster=\"c\",role=\"replica\"} 8");
        // The counters add only what is new; a replica gone takes its gauges with it.
        let text = m.encode(&[sample(0, "primary", 7)]);
        assert!(
            text.contains(
                "pegasus_rocksdb_block_cache_hits_total{cluster=\"c\",role=\"replica\"} 10"
            ),
            "{text}"
        );
        assert!(!text.contains("partition=\"1\""), "{text}");
    }
}
