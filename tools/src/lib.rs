//! The operator's tools on the Rust client: `pegasus_shell`, `pegasus_bench`, `pegasus_onebox`
//! and `pegasus_cluster`. None of this is in the server: the onebox starts servers as processes.
//!
//! # Layout
//! - [`shell`]: the commands of `pegasus_shell` (Pegasus's shell: `ls`, `app`, `nodes`, `use`,
//!   `set`, `get`, scans, …), each a method that returns its printed output
//! - [`cluster`]: `pegasus_cluster`, a cluster on real hosts from a topology file: check,
//!   deploy, start, display, stop, destroy, over SSH, under systemd
//! - [`bench`]: the workloads of `pegasus_bench` (`fillrandom`, `readrandom`, …), with latency
//!   histograms, against a table or, for comparison, etcd
//! - [`etcd`]: etcd's gRPC KV API (`Put`, `Range`), for `pegasus_bench --etcd`
//! - [`onebox`]: a whole cluster on one machine, as Pegasus's `./run.sh start_onebox` lays it
//!   out (ZooKeeper, metas, replicas and a collector as processes)
//! - [`scrape`]: a plain HTTP GET and Prometheus samples, for `server_stat` and `app_stat`
//! - `bin/`: the four thin binaries (arguments, runtime, one call into the library)

pub mod bench;
pub mod cluster;
pub mod etcd;
pub mod onebox;
pub mod redis;
pub mod scrape;
pub mod shell;

/// The meta list of `./run.sh start_onebox`: the default of `pegasus_shell` and `pegasus_bench`.
pub const ONEBOX_METAS: &str = "127.0.0.1:34601,127.0.0.1:34602,127.0.0.1:34603";
