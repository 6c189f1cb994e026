//! The Pegasus wire protocol, shared by the client and the server so they cannot drift apart.
//! Pure: bytes in, values out; no runtime (calls over connections are `pegasus-transport`'s).
//!
//! # Layout
//! - [`frame`]: THFT request headers (v0, v1), the Thrift envelope, response frames, bounds
//! - [`codec`]: Thrift binary encoding of structs (on the Apache Thrift crate)
//! - [`types`]: the `rrdb` and `meta` structs, with Pegasus's custom wire types
//! - [`backup`]: cold backup and restore (`backup.thrift`)
//! - [`codes`]: error names, RocksDB status codes, RPC names
//! - [`health`]: a partition's health from its configuration, and a table's counts
//! - [`key`]: key and value schemas, CRC-64 partition hashing, the Pegasus epoch
//! - [`fuzzing`]: every decoder untrusted bytes reach, for the fuzzers and their regressions

pub mod backup;
pub mod codec;
pub mod codes;
pub mod frame;
pub mod fuzzing;
pub mod health;
pub mod key;
pub mod types;

/// A Thrift body that cannot be decoded or encoded.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The Thrift library refused it.
    #[error("thrift: {0}")]
    Thrift(#[from] thrift::Error),
    /// It ends too early.
    #[error("message is truncated")]
    Truncated,
    /// It is malformed.
    #[error("{0}")]
    Bad(String),
}
