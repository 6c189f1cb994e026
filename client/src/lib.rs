//! The Pegasus wire protocol and an async Rust client for it.
//!
//! # Layout
//! - [`protocol`]: frames, Thrift structs, codes, key schema (shared with the server)
//! - [`client`]: the async client: routing through the metas, one connection per replica
//! - [`bench`]: the workloads of `pegasus_bench`
//!
//! The binary `pegasus_bench` is built on [`client`].

pub mod bench;
pub mod client;
pub mod protocol;

pub use client::{Client, ClientError, ClientOptions, Table};
