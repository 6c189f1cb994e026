//! pegasus_server's integration tests: the binary as a process, alone (clusters, clients and
//! faults are the workspace's end-to-end tests, in `tests/` at the root).

/// Start-up refusals: a bad config, a port in use, bad arguments, ZooKeeper unreachable.
mod startup;
