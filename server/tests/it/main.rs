//! pegasus_server's integration tests: one binary, one module per concern.

/// Whole clusters (ZooKeeper, metas, replicas) as processes: tables, failover, restarts.
mod cluster;
/// A replica in process, with a routing service that answers `query_cfg` for it.
mod harness;
/// Every rrdb operation through the Rust client, against a real replica and real RocksDB.
mod operations;
/// The real binary: start-up refusals, kill -9 during writes, restart with plog replay.
mod process;
/// The official Python client, pypegasus3: its frames byte for byte, and every operation.
mod pypegasus;
