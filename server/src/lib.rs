//! `pegasus_server`: the Pegasus MetaServer, ReplicaServer and Collector roles in one binary,
//! reading the same `config.ini` through the configcheck library.
//!
//! # Layout
//! - [`start`]: command line (`config.ini -app_list …`), checks, logging, the roles' lifetime
//! - [`config`]: the typed view of `config.ini` the roles need
//! - [`format`]: the format of data dirs and the cluster root, and the refusal of a newer one
//! - [`net`]: the RPC listener: THFT frames, bounded connections and in-flight requests
//! - [`http`]: HTTP beside RPC on every role's port: Pegasus's HTTP API, status pages
//! - [`metrics`]: every role's metrics, as Prometheus text at `GET /metrics`
//! - [`meta`]: the MetaServer: ZooKeeper, leader election (`meta/election.rs`), tables,
//!   assignment and the balancer ([`meta::state`], `meta/state/balance.rs`), admin RPCs
//!   (`meta/admin.rs`)
//! - [`replica`]: the ReplicaServer: partitions and their PacificA drivers
//!   (`replica/partition/driver.rs`), replication to other servers ([`replica::link`]), plog,
//!   RocksDB, reads and scans; client requests in `replica/serve.rs`, prepares, learning and
//!   the meta's proposals in `replica/learn.rs`, pages in `replica/status.rs`
//! - [`collector`]: the Collector: availability detection, `/metrics`
//! - [`backup`]: cold backup and restore: block services, a backup's layout (the meta's side in
//!   `meta/backup.rs`, the replica servers' in `replica/backup.rs`)
//!
//! One write, end to end: [`net`] decodes the frame → [`replica::ReplicaStub`] routes it by
//! `(app_id, partition_index)` → the partition's driver (`replica/partition/driver.rs`) turns it
//! into a mutation with a ballot and a decree → the driver prepares the mutation to every
//! secondary over [`replica::link`], while [`replica::plog`] appends it here (unsynced) and
//! [`replica::slog`], the node's shared log, makes it durable with every other partition's
//! batches waiting (one fsync for the group; its thread wakes the driver) → the mutation commits
//! once it is logged here and acknowledged by every secondary → [`replica::storage`] applies it
//! (RocksDB WAL off) → the answer goes back through [`net::Reply`]. On a secondary the prepare
//! goes through its own driver: logged the same way, acknowledged once the shared log says it
//! is durable, and applied once the primary's commit point passes it.

pub mod backup;
pub mod collector;
pub mod config;
pub mod format;
pub mod http;
pub mod meta;
pub mod metrics;
pub mod net;
pub mod replica;
pub mod running;
pub mod start;
