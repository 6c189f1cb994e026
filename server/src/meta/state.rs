//! The leader's picture of the cluster: tables, their partitions' primaries, and the replica
//! servers with their leases. Pure data and decisions; [`super::zk`] persists it.
//!
//! Assignment ("cure"): a partition without a live primary gets one. A new partition (never had a
//! primary) goes to the alive node with the fewest primaries. A partition whose primary died goes
//! only to a node that reports a copy on its disks; without a copy it waits for its node (copies
//! beyond the primary arrive with replication).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use pegasus_protocol::types::Gpid;
use serde::{Deserialize, Serialize};

/// A table, as stored in ZooKeeper at `<root>/apps/<app_id>` (Pegasus's `app_info` fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInfo {
    /// `AS_AVAILABLE` or `AS_DROPPED`.
    pub status: String,
    /// `pegasus`.
    pub app_type: String,
    /// The name.
    pub app_name: String,
    /// The id.
    pub app_id: i32,
    /// Partitions.
    pub partition_count: i32,
    /// Copies per partition wanted.
    pub max_replica_count: i32,
    /// Stateful table.
    pub is_stateful: bool,
    /// Unix seconds of creation.
    pub create_second: i64,
    /// Unix seconds of the drop (0: not dropped).
    pub drop_second: i64,
    /// Table environment variables.
    #[serde(default)]
    pub envs: BTreeMap<String, String>,
}

impl AppInfo {
    /// Whether the table serves.
    pub fn available(&self) -> bool {
        self.status == "AS_AVAILABLE"
    }
}

/// A partition, as stored at `<root>/apps/<app_id>/<pidx>` (Pegasus's
/// `partition_configuration` fields; addresses as `ip:port`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionConfig {
    /// `app_id.pidx`.
    pub pid: String,
    /// Bumped on every change of primary.
    pub ballot: i64,
    /// Copies wanted.
    pub max_replica_count: i32,
    /// The primary, `ip:port`, or empty.
    pub primary: String,
    /// Secondaries.
    #[serde(default)]
    pub secondaries: Vec<String>,
    /// Nodes that held it before.
    #[serde(default)]
    pub last_drops: Vec<String>,
    /// Last committed decree known.
    #[serde(default)]
    pub last_committed_decree: i64,
}

impl PartitionConfig {
    /// The primary's address, if any.
    pub fn primary_addr(&self) -> Option<SocketAddrV4> {
        self.primary.parse().ok()
    }
}

/// A table and its partitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    /// The table.
    pub info: AppInfo,
    /// Its partitions, by index.
    pub partitions: Vec<PartitionConfig>,
}

/// A replica server.
#[derive(Clone, Debug)]
pub struct Node {
    /// Last beacon received.
    pub last_beacon: Instant,
    /// Within its grace period.
    pub alive: bool,
    /// Replicas it reported on its disks.
    pub replicas: Vec<Gpid>,
    /// Replicas it reported lost (damaged and moved aside, or unable to open).
    pub errors: Vec<Gpid>,
}

/// The cluster.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    /// Tables by id.
    pub apps: BTreeMap<i32, App>,
    /// Replica servers by address.
    pub nodes: HashMap<SocketAddrV4, Node>,
}

impl Cluster {
    /// The table named `name`, dropped ones excluded.
    pub fn app_by_name(&self, name: &str) -> Option<&App> {
        self.apps
            .values()
            .find(|a| a.info.app_name == name && a.info.available())
    }

    /// The next free table id.
    pub fn next_app_id(&self) -> i32 {
        self.apps.keys().max().map_or(1, |m| m + 1)
    }

    /// A new table (not yet assigned).
    pub fn new_app(
        &self,
        name: &str,
        partition_count: i32,
        replica_count: i32,
        now_unix: i64,
    ) -> App {
        let app_id = self.next_app_id();
        let info = AppInfo {
            status: "AS_AVAILABLE".into(),
            app_type: "pegasus".into(),
            app_name: name.to_owned(),
            app_id,
            partition_count,
            max_replica_count: replica_count,
            is_stateful: true,
            create_second: now_unix,
            drop_second: 0,
            envs: BTreeMap::new(),
        };
        let partitions = (0..partition_count)
            .map(|p| PartitionConfig {
                pid: format!("{app_id}.{p}"),
                max_replica_count: replica_count,
                ..Default::default()
            })
            .collect();
        App { info, partitions }
    }

    /// Records a beacon: the replicas the node holds, and those it lost (damaged, moved aside);
    /// returns whether the node came (back) alive.
    pub fn beacon(
        &mut self,
        node: SocketAddrV4,
        replicas: Vec<Gpid>,
        errors: Vec<Gpid>,
        now: Instant,
    ) -> bool {
        let entry = self.nodes.entry(node).or_insert(Node {
            last_beacon: now,
            alive: false,
            replicas: Vec::new(),
            errors: Vec::new(),
        });
        let revived = !entry.alive;
        entry.last_beacon = now;
        entry.alive = true;
        entry.replicas = replicas;
        entry.errors = errors;
        revived
    }

    /// Whether `addr` serves `gpid`: alive, and it has not reported that copy lost.
    fn serves(&self, addr: &SocketAddrV4, gpid: Gpid) -> bool {
        self.nodes
            .get(addr)
            .is_some_and(|n| n.alive && !n.errors.contains(&gpid))
    }

    /// Marks nodes without a beacon for `grace` dead; returns them.
    pub fn expire(&mut self, now: Instant, grace: Duration) -> Vec<SocketAddrV4> {
        let mut dead = Vec::new();
        for (addr, node) in &mut self.nodes {
            if node.alive && now.duration_since(node.last_beacon) > grace {
                node.alive = false;
                dead.push(*addr);
            }
        }
        dead
    }

    fn alive(&self, addr: &SocketAddrV4) -> bool {
        self.nodes.get(addr).is_some_and(|n| n.alive)
    }

    fn primary_count(&self, addr: &SocketAddrV4) -> usize {
        self.apps
            .values()
            .filter(|a| a.info.available())
            .flat_map(|a| &a.partitions)
            .filter(|p| p.primary_addr().as_ref() == Some(addr))
            .count()
    }

    /// Gives every available partition without a live primary one where possible. Returns the
    /// partitions changed, to persist. With fewer than `min_live` alive nodes the cluster is
    /// frozen (`min_live_node_count_for_unfreeze`): nothing moves, so a cluster that is still
    /// starting does not put every partition on its first node.
    pub fn assign(&mut self, min_live: usize) -> Vec<(i32, i32)> {
        let mut changed = Vec::new();
        if self.nodes.values().filter(|n| n.alive).count() < min_live.max(1) {
            return changed;
        }
        let keys: Vec<(i32, i32)> = self
            .apps
            .values()
            .filter(|a| a.info.available())
            .flat_map(|a| (0..a.info.partition_count).map(move |p| (a.info.app_id, p)))
            .collect();
        for (app_id, pidx) in keys {
            let current = self.apps[&app_id].partitions[pidx as usize].clone();
            let gpid = Gpid::new(app_id, pidx);
            // A primary that reported its copy lost is as good as dead for this partition.
            if current
                .primary_addr()
                .is_some_and(|p| self.serves(&p, gpid))
            {
                continue;
            }
            let mut alive: Vec<SocketAddrV4> = self
                .nodes
                .iter()
                .filter(|(_, n)| n.alive)
                .map(|(a, _)| *a)
                .collect();
            alive.sort_by_key(|a| (self.primary_count(a), *a));
            // A node with a copy on disk first; a partition that never had a primary may go to
            // any node; one whose only copy is on a dead node waits for it.
            let with_copy = alive
                .iter()
                .find(|a| {
                    let n = &self.nodes[a];
                    n.replicas.contains(&gpid) && !n.errors.contains(&gpid)
                })
                .copied();
            let never_assigned = current.ballot == 0;
            let choice =
                with_copy.or_else(|| never_assigned.then(|| alive.first().copied()).flatten());
            let p = &mut self.apps.get_mut(&app_id).expect("app").partitions[pidx as usize];
            match choice {
                Some(node) => {
                    if let Some(old) = p.primary_addr().filter(|old| *old != node) {
                        p.last_drops.retain(|d| d != &old.to_string());
                        p.last_drops.push(old.to_string());
                    }
                    p.primary = node.to_string();
                    p.ballot += 1;
                    changed.push((app_id, pidx));
                }
                None if !p.primary.is_empty() => {
                    // Its primary is dead and no copy lives elsewhere: no primary until it returns.
                    let old = std::mem::take(&mut p.primary);
                    p.last_drops.retain(|d| d != &old);
                    p.last_drops.push(old);
                    p.ballot += 1;
                    changed.push((app_id, pidx));
                }
                None => {}
            }
        }
        changed
    }

    /// The partitions `node` must serve as primary.
    pub fn primaries_of(&self, node: SocketAddrV4) -> Vec<(Gpid, i32, i64)> {
        self.apps
            .values()
            .filter(|a| a.info.available())
            .flat_map(|a| {
                a.partitions
                    .iter()
                    .enumerate()
                    .filter(move |(_, p)| p.primary_addr() == Some(node))
                    .map(move |(i, p)| {
                        (
                            Gpid::new(a.info.app_id, i as i32),
                            a.info.partition_count,
                            p.ballot,
                        )
                    })
            })
            .collect()
    }

    /// For a partition whose node returned with a copy after it lost its primary: its last
    /// primary is among `last_drops`.
    pub fn healthy_partitions(&self, app: &App) -> i32 {
        app.partitions
            .iter()
            .filter(|p| p.primary_addr().is_some_and(|a| self.alive(&a)))
            .count() as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new([127, 0, 0, 1].into(), port)
    }

    #[test]
    fn new_partitions_spread_over_alive_nodes() {
        let mut c = Cluster::default();
        let now = Instant::now();
        for port in [1, 2, 3] {
            c.beacon(addr(port), vec![], vec![], now);
        }
        let app = c.new_app("temp", 8, 3, 0);
        c.apps.insert(app.info.app_id, app);
        assert!(c.assign(4).is_empty(), "frozen below the live-node minimum");
        assert_eq!(c.assign(1).len(), 8);
        let counts: Vec<usize> = [1, 2, 3]
            .iter()
            .map(|p| c.primaries_of(addr(*p)).len())
            .collect();
        assert_eq!(counts.iter().sum::<usize>(), 8);
        assert!(counts.iter().all(|&n| (2..=3).contains(&n)), "{counts:?}");
        assert!(c.assign(1).is_empty(), "stable once assigned");
    }

    #[test]
    fn a_dead_primary_moves_only_where_a_copy_exists() {
        let mut c = Cluster::default();
        let t0 = Instant::now();
        c.beacon(addr(1), vec![], vec![], t0);
        let app = c.new_app("t", 2, 1, 0);
        c.apps.insert(1, app);
        c.assign(1);
        assert_eq!(c.primaries_of(addr(1)).len(), 2);
        // Node 2 joins holding a copy of partition 0 only; node 1 dies.
        c.beacon(addr(2), vec![Gpid::new(1, 0)], vec![], t0);
        let later = t0 + Duration::from_secs(30);
        c.beacon(addr(2), vec![Gpid::new(1, 0)], vec![], later);
        assert_eq!(c.expire(later, Duration::from_secs(22)), vec![addr(1)]);
        let changed = c.assign(1);
        assert_eq!(changed.len(), 2);
        assert_eq!(c.primaries_of(addr(2)), vec![(Gpid::new(1, 0), 2, 2)]);
        assert_eq!(
            c.apps[&1].partitions[1].primary, "",
            "no copy: waits for its node"
        );
        // Node 1 returns with its copies: partition 1 comes back to it.
        c.beacon(
            addr(1),
            vec![Gpid::new(1, 0), Gpid::new(1, 1)],
            vec![],
            later,
        );
        c.assign(1);
        assert_eq!(c.primaries_of(addr(1)), vec![(Gpid::new(1, 1), 2, 3)]);
    }

    #[test]
    fn a_primary_that_lost_its_copy_is_dropped_and_nothing_empty_replaces_it() {
        let mut c = Cluster::default();
        let t0 = Instant::now();
        c.beacon(addr(1), vec![], vec![], t0);
        c.beacon(addr(2), vec![], vec![], t0);
        c.apps.insert(1, c.new_app("t", 2, 1, 0));
        c.assign(1);
        let (lost, other) = if c
            .primaries_of(addr(1))
            .iter()
            .any(|a| a.0 == Gpid::new(1, 0))
        {
            (addr(1), addr(2))
        } else {
            (addr(2), addr(1))
        };
        // The primary of partition 0 lost its copy: still on disk, reported lost (a failed
        // write on a full disk), or moved aside as damaged.
        c.beacon(
            lost,
            vec![Gpid::new(1, 0), Gpid::new(1, 1)],
            vec![Gpid::new(1, 0)],
            t0,
        );
        c.beacon(other, vec![Gpid::new(1, 1)], vec![], t0);
        assert_eq!(c.assign(1), vec![(1, 0)]);
        let p = &c.apps[&1].partitions[0];
        assert_eq!(p.primary, "", "no other copy: no primary, not an empty one");
        assert_eq!(p.last_drops, vec![lost.to_string()]);
        assert!(c.primaries_of(lost).iter().all(|a| a.0 != Gpid::new(1, 0)));
        assert!(c.assign(1).is_empty(), "and it stays so");
    }
}
