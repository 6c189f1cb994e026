//! The Pegasus wire protocol and an async Rust client for it.
//!
//! # Layout
//! - [`protocol`]: frames, Thrift structs, codes, key schema (shared with the server)
//! - [`client`]: the async client: routing through the metas, one connection per replica
//! - [`bench`]: the workloads of `pegasus_bench`
//! - [`shell`]: the commands of `pegasus_shell`
//!
//! The binaries `pegasus_bench` and `pegasus_shell` are built on [`client`].

pub mod bench;
pub mod client;
pub mod protocol;
pub mod shell;

pub use client::{Client, ClientError, ClientOptions, Table};

/// The meta list of `./run.sh start_onebox`: the default of `pegasus_shell` and `pegasus_bench`.
pub const ONEBOX_METAS: &str = "127.0.0.1:34601,127.0.0.1:34602,127.0.0.1:34603";
