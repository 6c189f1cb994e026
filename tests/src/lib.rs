//! Support for the workspace's end-to-end tests (`tests/e2e/`): the tests that start real
//! processes (ZooKeeper, `pegasus_server`, Python with pypegasus3, shell scripts) or a whole
//! replica in process behind real sockets.
//!
//! # Layout
//! - [`bed`]: [`bed::Bed`], hosts booted with systemd and sshd (`systemd-nspawn`) on a
//!   network of namespaces, for the deploy tool
//! - [`bins`]: the workspace's binaries, built on first use with the running test's profile
//! - [`cluster`]: [`cluster::TestCluster`], a onebox (ZooKeeper, metas, replicas) in a temp dir
//!   on free ports, and helpers that write and check keys
//! - [`harness`]: [`harness::Harness`], a replica in process with a routing service that
//!   answers `query_cfg` for it, without ZooKeeper
//! - [`history`]: [`history::History`], writers of increasing versions and readers, checked for
//!   lost and stale versions; [`history::LeaderWatch`], how many metas lead at once
//! - [`hostile`]: what hostile clients send (random, cut, oversized and lying frames, mistyped
//!   Thrift, HTTP junk, slowloris, churn), and a process's RSS and open files
//! - [`http`]: a plain HTTP GET, Prometheus samples, promtool, a headless Chromium
//! - [`netns`]: three hosts and a client in network namespaces on a bridge, with cuts
//! - [`process`]: [`process::Guarded`], a child process killed when the test that started it ends
//! - [`proxy`]: [`proxy::SlowProxy`], a TCP proxy whose latency a test sets (a slow ZooKeeper)

pub mod bed;
pub mod bins;
pub mod cluster;
pub mod harness;
pub mod history;
pub mod hostile;
pub mod http;
pub mod netns;
pub mod process;
pub mod proxy;
