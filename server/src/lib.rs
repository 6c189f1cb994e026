//! `pegasus_server`: the Pegasus MetaServer, ReplicaServer and Collector roles in one binary,
//! reading the same `config.ini` through the configcheck library.
//!
//! # Layout
//! - [`start`]: command line (`config.ini -app_list …`), checks, logging, the roles' lifetime
//! - [`config`]: the typed view of `config.ini` the roles need
//! - [`format`]: the format of data dirs and the cluster root, and the refusal of a newer one
//! - [`net`]: the RPC listener: THFT frames, bounded connections and in-flight requests
//! - [`meta`]: the MetaServer: ZooKeeper, leader election, tables, assignment
//! - [`replica`]: the ReplicaServer: partitions, write pipeline, plog, RocksDB, reads and scans
//! - [`collector`]: the Collector: availability detection, `/metrics`
//!
//! One write, end to end: [`net`] decodes the frame → [`replica::ReplicaStub`] routes it by
//! `(app_id, partition_index)` → [`replica::partition`]'s writer turns it into a mutation with a
//! decree → [`replica::plog`] appends it (one sync per batch) → [`replica::storage`] applies it
//! (RocksDB WAL off) → the answer goes back through [`net::Reply`].

pub mod collector;
pub mod config;
pub mod format;
pub mod http;
pub mod meta;
pub mod metrics;
pub mod net;
pub mod replica;
pub mod start;
