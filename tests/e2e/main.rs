//! The workspace's end-to-end tests: one binary, one module per concern. Each test starts what
//! it needs (ZooKeeper, `pegasus_server` processes, Python) in its own temp dir on its own ports.

/// Cold backup and restore to the onebox's `local_service`: under the history checker, with a
/// replica server or the meta leader killed during the upload, and a damaged file.
mod backup;
/// Whole clusters (ZooKeeper, metas, replicas) as processes: tables, failover, restarts.
mod cluster;
/// `pegasus_cluster` on five hosts booted with systemd and sshd: check, deploy, start, display,
/// destroy.
mod deploy;
/// Acknowledged writes survive `kill -9` of a replica (plog fsynced, and not).
mod durability;
/// Table environments on the replicas: TTL, throttling, denied requests, compaction.
mod envs;
/// Hostile bytes on every port: random, cut, oversized, lying frames, mistyped Thrift, HTTP
/// junk, slowloris and churn.
mod hostile;
/// Leases: no serving without one, beacons never held up by ZooKeeper, no stale read from a
/// deposed primary.
mod leases;
/// Three hosts in network namespaces, cut apart and healed, from the release tarball.
mod network;
/// What operators watch: `/metrics` of every role, Pegasus's HTTP API, the status page.
mod observe;
/// Every rrdb operation through the Rust client, against a real replica and real RocksDB.
mod operations;
/// The official Python client, pypegasus3: its frames byte for byte, and every operation.
mod pypegasus;
/// Three copies per partition (PacificA): membership, two-phase writes, failover.
mod replication;
/// run.sh's set-up: the one package list, checked against a fake package database.
mod setup;
/// `pegasus_shell` against a real cluster.
mod shell;
/// ZooKeeper outages (down, a frozen leader, an ensemble member lost), its digest ACL, and the
/// admin allow-list.
mod zookeeper;
