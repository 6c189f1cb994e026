//! The meta server's metrics: whether it leads, nodes alive and dead, partitions by health per
//! table (set when scraped, from the tables as last persisted), configuration changes, and
//! ZooKeeper's latency.

use std::collections::BTreeMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use pegasus_protocol::health::PartitionHealth;

use super::state::App;
use crate::metrics::{self, Latency, TableLabels};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HealthLabels {
    table: String,
    health: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ZkLabels {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The meta server's metrics.
#[derive(Debug)]
pub struct MetaMetrics {
    registry: Registry,
    leader: Gauge,
    nodes: Family<NodeLabels, Gauge>,
    partitions: Family<HealthLabels, Gauge>,
    changes: Family<TableLabels, Counter>,
    zk: Family<ZkLabels, Latency>,
    backups: Family<OutcomeLabels, Counter>,
    backup_duration: Latency,
}

/// What the gauges show, as scraped.
#[derive(Debug, Default)]
pub struct MetaSample<'a> {
    /// Whether this meta leads.
    pub leader: bool,
    /// Replica servers alive and dead (the leader's view).
    pub alive: usize,
    /// See `alive`.
    pub dead: usize,
    /// The tables (the leader's; empty on a follower).
    pub apps: Option<&'a BTreeMap<i32, App>>,
}

impl MetaMetrics {
    /// The metrics of a meta server of `cluster`.
    pub fn new(cluster: &str) -> Self {
        let mut r = metrics::registry(cluster, "meta");
        let m = MetaMetrics {
            registry: Registry::default(),
            leader: Gauge::default(),
            nodes: Family::default(),
            partitions: Family::default(),
            changes: Family::default(),
            zk: Family::default(),
            backups: Family::default(),
            backup_duration: Latency::default(),
        };
        r.register(
            "meta_leader",
            "Whether this meta server leads (1) or follows (0)",
            m.leader.clone(),
        );
        r.register(
            "meta_nodes",
            "Replica servers by state, as the leader sees them",
            m.nodes.clone(),
        );
        r.register(
            "meta_partitions",
            "Partitions by health per table (healthy, writable_ill, unwritable, unreadable, dead)",
            m.partitions.clone(),
        );
        r.register(
            "meta_configuration_changes",
            "Partition configuration changes persisted, per table",
            m.changes.clone(),
        );
        r.register_with_unit(
            "meta_zookeeper_latency",
            "ZooKeeper reads and writes of the cluster's state",
            Unit::Seconds,
            m.zk.clone(),
        );
        r.register(
            "meta_backups",
            "One-time backups by outcome (started, complete, failed)",
            m.backups.clone(),
        );
        r.register_with_unit(
            "meta_backup_duration",
            "One-time backups from start to complete or failed",
            Unit::Seconds,
            m.backup_duration.clone(),
        );
        MetaMetrics { registry: r, ..m }
    }

    /// The latencies ZooKeeper reads and writes go to.
    pub fn zookeeper(&self) -> (Latency, Latency) {
        // One at a time: a family's guard must go before it is asked again.
        let read = self.zk.get_or_create(&ZkLabels { op: "read" }).clone();
        let write = self.zk.get_or_create(&ZkLabels { op: "write" }).clone();
        (read, write)
    }

    /// Counts a backup `outcome` (`started`, `complete`, `failed`).
    pub fn backup(&self, outcome: &'static str) {
        self.backups.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Times a backup that ended.
    pub fn backup_duration(&self, took: std::time::Duration) {
        self.backup_duration.observe(took);
    }

    /// Counts a configuration change of `table`.
    pub fn changed(&self, table: &str) {
        self.changes.get_or_create(&TableLabels::of(table)).inc();
    }

    /// The metrics as Prometheus text, with the gauges set from `sample` first.
    pub fn encode(&self, sample: &MetaSample<'_>, min_members: usize) -> String {
        self.leader.set(i64::from(sample.leader));
        self.nodes.clear();
        self.partitions.clear();
        if sample.leader {
            for (state, n) in [("alive", sample.alive), ("dead", sample.dead)] {
                self.nodes
                    .get_or_create(&NodeLabels { state })
                    .set(n as i64);
            }
        }
        for app in sample
            .apps
            .into_iter()
            .flat_map(|a| a.values())
            .filter(|a| a.info.available())
        {
            for health in PartitionHealth::ALL {
                let n = app
                    .partitions
                    .iter()
                    .filter(|p| p.health(min_members) == health)
                    .count();
                self.partitions
                    .get_or_create(&HealthLabels {
                        table: app.info.app_name.clone(),
                        health: health.name(),
                    })
                    .set(n as i64);
            }
        }
        metrics::encode(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::state::PartitionConfig;

    fn config(primary: &str, secondaries: &[&str]) -> PartitionConfig {
        PartitionConfig {
            primary: primary.to_owned(),
            secondaries: secondaries.iter().map(|s| (*s).to_owned()).collect(),
            max_replica_count: 3,
            ..PartitionConfig::default()
        }
    }

    #[test]
    fn partitions_are_sorted_by_health_as_pegasus_does() {
        let a = "127.0.0.1:1";
        let b = "127.0.0.1:2";
        let c = "127.0.0.1:3";
        let of = |p: PartitionConfig| p.health(2);
        assert_eq!(of(config(a, &[b, c])), PartitionHealth::Healthy);
        assert_eq!(of(config(a, &[b])), PartitionHealth::WritableIll);
        assert_eq!(of(config(a, &[])), PartitionHealth::Unwritable);
        assert_eq!(of(config("", &[b])), PartitionHealth::Unreadable);
        assert_eq!(of(config("", &[])), PartitionHealth::Dead);
    }
}
