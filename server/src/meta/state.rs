//! The leader's picture of the cluster: tables, their partitions' primaries, and the replica
//! servers with their leases. Pure data and decisions; [`super::zk`] persists it.
//!
//! Membership ("cure", see [`Cluster::assign`]): every partition has a primary and secondaries,
//! changed only by the leader, each change raising the ballot by one and persisted before anyone
//! hears of it.
//!
//! Moves (the balancer's, and an operator's `move_primary` and `copy_secondary`) are in
//! [`balance`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use pegasus_protocol::health::PartitionHealth;
use pegasus_protocol::types::{Assignment, BeaconRequest, Gpid, RpcAddress};
use serde::{Deserialize, Serialize};

mod balance;
pub use balance::Balance;

/// A table, as stored in ZooKeeper at `<root>/apps/<app_id>` (Pegasus's `app_info` fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInfo {
    /// `AS_AVAILABLE`, `AS_DROPPED`, or `AS_EXPIRED` (ours: a dropped table past its
    /// reserve, kept as a tombstone without partitions so that its id is never reused and
    /// replica servers learn that its copies are gone).
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
    /// Unix seconds after which a dropped table is gone for good.
    #[serde(default)]
    pub expire_second: i64,
    /// Table environment variables.
    #[serde(default)]
    pub envs: BTreeMap<String, String>,
}

impl AppInfo {
    /// Whether the table serves.
    pub fn available(&self) -> bool {
        self.status == "AS_AVAILABLE"
    }

    /// Whether the table is dropped (and can still be recalled).
    pub fn dropped(&self) -> bool {
        self.status == "AS_DROPPED"
    }

    /// Whether the table was dropped and its reserve ran out: a tombstone.
    pub fn expired(&self) -> bool {
        self.status == "AS_EXPIRED"
    }

    /// Pegasus's `app_info`.
    pub fn to_wire(&self) -> pegasus_protocol::types::AppInfo {
        use pegasus_protocol::types::app_status;
        pegasus_protocol::types::AppInfo {
            status: if self.available() {
                app_status::AVAILABLE
            } else if self.dropped() {
                app_status::DROPPED
            } else {
                app_status::INVALID
            },
            app_type: self.app_type.clone(),
            app_name: self.app_name.clone(),
            app_id: self.app_id,
            partition_count: self.partition_count,
            envs: self.envs.clone(),
            is_stateful: self.is_stateful,
            max_replica_count: self.max_replica_count,
            expire_second: self.expire_second,
            create_second: self.create_second,
            drop_second: self.drop_second,
            duplicating: None,
            init_partition_count: self.partition_count,
            is_bulk_loading: None,
        }
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

    /// The secondaries' addresses.
    pub fn secondary_addrs(&self) -> Vec<SocketAddrV4> {
        self.secondaries
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect()
    }

    /// Whether `node` is the primary or a secondary.
    pub fn has_member(&self, node: SocketAddrV4) -> bool {
        self.primary_addr() == Some(node) || self.secondary_addrs().contains(&node)
    }

    /// Makes the secondary `node` the primary (UPGRADE_TO_PRIMARY), or a node that is no member
    /// (ASSIGN_PRIMARY).
    fn promote(&mut self, node: SocketAddrV4) {
        let name = node.to_string();
        self.secondaries.retain(|s| s != &name);
        self.primary = name;
    }

    /// Its health, where a write needs `min_write_members` members
    /// (`[replication] mutation_2pc_min_replica_count`).
    pub fn health(&self, min_write_members: usize) -> PartitionHealth {
        PartitionHealth::of(
            self.primary_addr().is_some(),
            self.secondaries.len(),
            self.max_replica_count,
            min_write_members,
        )
    }

    /// The primary's address on the wire ([`RpcAddress::INVALID`] when none).
    pub fn primary_rpc(&self) -> RpcAddress {
        self.primary_addr()
            .map_or(RpcAddress::INVALID, RpcAddress::new)
    }

    /// The secondaries' addresses on the wire.
    pub fn secondary_rpcs(&self) -> Vec<RpcAddress> {
        self.secondary_addrs()
            .into_iter()
            .map(RpcAddress::new)
            .collect()
    }

    /// Takes `node` out of the members and puts it last in `last_drops`.
    fn drop_member(&mut self, node: SocketAddrV4) {
        let name = node.to_string();
        if self.primary == name {
            self.primary.clear();
        }
        self.secondaries.retain(|s| s != &name);
        self.last_drops.retain(|d| d != &name);
        self.last_drops.push(name);
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
    /// The configuration ballot each of its replicas last reported running.
    pub ballots: HashMap<Gpid, i64>,
    /// Replicas it reported may lack what they acknowledged (a power loss with
    /// `plog_force_flush = false`): not served from, passed over in `last_drops`, learned again.
    pub lossy: Vec<Gpid>,
}

/// A replica server's last beacon, as the meta keeps it until it folds it in.
#[derive(Clone, Debug)]
pub struct Beat {
    /// When it came.
    pub at: Instant,
    /// The replicas it holds.
    pub replicas: Vec<Gpid>,
    /// The replicas it lost.
    pub errors: Vec<Gpid>,
    /// The commit point of each of `replicas`.
    pub committed: Vec<i64>,
    /// When each of `replicas` last finished a manual compaction (unix seconds).
    pub compacted: Vec<i64>,
    /// The configuration ballot each of `replicas` runs.
    pub ballots: Vec<i64>,
    /// The replicas that may lack what they acknowledged.
    pub lossy: Vec<Gpid>,
}

impl Beat {
    /// What the meta keeps of beacon `b`, which came `at`.
    pub fn new(b: BeaconRequest, at: Instant) -> Beat {
        Beat {
            at,
            replicas: b.replicas,
            errors: b.errors,
            committed: b.committed,
            compacted: b.compacted,
            ballots: b.ballots,
            lossy: b.lossy,
        }
    }
}

/// The cluster.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    /// Tables by id.
    pub apps: BTreeMap<i32, App>,
    /// Replica servers by address.
    pub nodes: BTreeMap<SocketAddrV4, Node>,
    /// Partitions with a learner proposed to their primary: to whom, when, and in which ballot
    /// (a proposal made in an older ballot, to a primary that may not have been serving yet,
    /// is made again at once).
    learning: BTreeMap<Gpid, (SocketAddrV4, Instant, i64)>,
    /// Partitions with fewer copies than wanted, since when.
    short_since: BTreeMap<Gpid, Instant>,
    /// Primaries the balancer is moving: the partition's primary stepped down (first step),
    /// and this secondary is promoted once every member runs that ballot (second step).
    moving: BTreeMap<Gpid, SocketAddrV4>,
    /// Copies the balancer is moving: from which secondary, to which node (learning), since
    /// when, proposed last when. The learner's upgrade replaces the secondary in one change.
    copying: BTreeMap<Gpid, (SocketAddrV4, SocketAddrV4, Instant, Instant)>,
    /// Copies the balancer took off a node: deleted there (the node hears they are gone).
    retired: BTreeSet<(SocketAddrV4, Gpid)>,
}

/// How long a proposed learner has to become a secondary before another is proposed.
const LEARN_PATIENCE: Duration = Duration::from_secs(20);

impl Cluster {
    /// The table named `name`, dropped ones excluded.
    pub fn app_by_name(&self, name: &str) -> Option<&App> {
        app_named(&self.apps, name)
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
            expire_second: 0,
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

    /// Whether a beacon of `node` that came `at` is newer than the last one folded in (an
    /// older one must not revive a node taken for dead since).
    pub fn is_new(&self, node: SocketAddrV4, at: Instant) -> bool {
        self.nodes.get(&node).is_none_or(|n| n.last_beacon < at)
    }

    /// Folds a beacon in: the commit points, the replicas held and lost, the ballots they run,
    /// those lossy; whether the node came (back) alive.
    pub fn fold(&mut self, node: SocketAddrV4, beat: Beat) -> bool {
        self.note_committed(node, &beat.replicas, &beat.committed);
        let revived = self.beacon(node, beat.replicas.clone(), beat.errors, beat.at);
        self.note_ballots(node, &beat.replicas, &beat.ballots);
        self.note_lossy(node, beat.lossy);
        revived
    }

    /// The primaries `changed` (already applied) takes the place of: until the view names
    /// their successors, no beacon of theirs may renew their lease.
    pub fn deposed(&self, changed: &[Changed]) -> Vec<SocketAddrV4> {
        changed
            .iter()
            .filter_map(|c| {
                let old = c.before.primary_addr()?;
                let now = self.partition(Gpid::new(c.app_id, c.pidx))?.primary_addr();
                (now != Some(old)).then_some(old)
            })
            .collect()
    }

    /// A new leader's start: every node its tables name is taken as alive, as of `now`, and
    /// gets one grace period to beacon before it counts as dead (without it, a new leader
    /// would strip every primary at once).
    pub fn presume_alive(&mut self, now: Instant) {
        let known: Vec<SocketAddrV4> = self
            .apps
            .values()
            .flat_map(|a| {
                a.partitions
                    .iter()
                    .flat_map(|p| p.primary_addr().into_iter().chain(p.secondary_addrs()))
            })
            .collect();
        for node in known {
            self.nodes.entry(node).or_insert(Node {
                last_beacon: now,
                alive: true,
                replicas: Vec::new(),
                errors: Vec::new(),
                ballots: HashMap::new(),
                lossy: Vec::new(),
            });
        }
    }

    /// When the last lease given to one of the `deposed` primaries taken for dead runs out
    /// (`leased`: when each node was last answered a beacon; a lease runs `lease` from before
    /// then): their successors must not be told before. One replaced alive hears of it and
    /// steps down itself.
    pub fn replaced_lease_ends(
        &self,
        deposed: &[SocketAddrV4],
        leased: &HashMap<SocketAddrV4, Instant>,
        lease: Duration,
    ) -> Option<Instant> {
        deposed
            .iter()
            .filter(|n| self.nodes.get(n).is_none_or(|node| !node.alive))
            .filter_map(|n| leased.get(n))
            .max()
            .map(|at| *at + lease)
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
            ballots: HashMap::new(),
            lossy: Vec::new(),
        });
        let revived = !entry.alive;
        entry.last_beacon = now;
        entry.alive = true;
        entry.replicas = replicas;
        entry.errors = errors;
        revived
    }

    /// Takes up the commit points a node reported for the partitions it is primary of: the
    /// configurations' `last_committed_decree` (in `query_cfg`, and written to ZooKeeper with
    /// the next change of each). A commit point never goes back.
    pub fn note_committed(&mut self, node: SocketAddrV4, replicas: &[Gpid], committed: &[i64]) {
        for (gpid, decree) in replicas.iter().zip(committed) {
            let Some(p) = self.apps.get_mut(&gpid.app_id).and_then(|a| {
                a.partitions
                    .get_mut(usize::try_from(gpid.partition_index).ok()?)
            }) else {
                continue;
            };
            if p.primary_addr() == Some(node) {
                p.last_committed_decree = p.last_committed_decree.max(*decree);
            }
        }
    }

    /// Records the configuration ballot each replica of `node` reported running.
    pub fn note_ballots(&mut self, node: SocketAddrV4, replicas: &[Gpid], ballots: &[i64]) {
        if let Some(n) = self.nodes.get_mut(&node) {
            n.ballots = replicas
                .iter()
                .copied()
                .zip(ballots.iter().copied())
                .collect();
        }
    }

    /// Records the replicas `node` reported lossy (see [`Node::lossy`]).
    pub fn note_lossy(&mut self, node: SocketAddrV4, lossy: Vec<Gpid>) {
        if let Some(n) = self.nodes.get_mut(&node) {
            n.lossy = lossy;
        }
    }

    /// Whether `addr` runs and reports its copy of `gpid` lossy.
    fn reports_lossy(&self, addr: &SocketAddrV4, gpid: Gpid) -> bool {
        self.nodes
            .get(addr)
            .is_some_and(|n| n.alive && n.lossy.contains(&gpid))
    }

    /// Whether `addr`, reporting its copy of `gpid` lossy, is still the best copy there is: the
    /// partition's one member, and every other node that left it is back and lossy too (every
    /// machine lost power). It then goes on with what it holds.
    fn last_resort(&self, addr: &SocketAddrV4, gpid: Gpid) -> bool {
        let Some(p) = self.partition(gpid) else {
            return false;
        };
        p.primary_addr() == Some(*addr)
            && p.secondaries.is_empty()
            && p.last_drops
                .iter()
                .filter_map(|d| d.parse::<SocketAddrV4>().ok())
                .filter(|d| d != addr)
                .all(|d| self.reports_lossy(&d, gpid))
    }

    /// Whether `node` reported its replica of `gpid` running ballot `ballot` or a later one.
    fn runs(&self, node: &SocketAddrV4, gpid: Gpid, ballot: i64) -> bool {
        self.nodes
            .get(node)
            .and_then(|n| n.ballots.get(&gpid))
            .is_some_and(|b| *b >= ballot)
    }

    /// Whether `addr` serves `gpid`: alive, and it has not reported that copy lost, nor lossy
    /// (unless it is the [`Cluster::last_resort`]).
    fn serves(&self, addr: &SocketAddrV4, gpid: Gpid) -> bool {
        self.nodes.get(addr).is_some_and(|n| {
            n.alive
                && !n.errors.contains(&gpid)
                && (!n.lossy.contains(&gpid) || self.last_resort(addr, gpid))
        })
    }

    /// Whether `addr` may learn a copy of `gpid`: alive, and not holding it as lost (a lossy
    /// copy learns again).
    fn may_learn(&self, addr: &SocketAddrV4, gpid: Gpid) -> bool {
        self.nodes
            .get(addr)
            .is_some_and(|n| n.alive && !n.errors.contains(&gpid))
    }

    /// A node's clean stop (its last beacon says it is leaving, its replicas closed): dead at
    /// once, as if its grace had run out. Whether it was alive.
    pub fn leave(&mut self, node: SocketAddrV4) -> bool {
        match self.nodes.get_mut(&node) {
            Some(n) if n.alive => {
                n.alive = false;
                true
            }
            _ => false,
        }
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

    /// Replica servers alive.
    pub fn alive_count(&self) -> usize {
        self.nodes.values().filter(|n| n.alive).count()
    }

    /// Partitions `addr` is primary of, and secondary of (available tables).
    pub fn role_counts(&self, addr: &SocketAddrV4) -> (usize, usize) {
        let mut counts = (0, 0);
        for p in self
            .apps
            .values()
            .filter(|a| a.info.available())
            .flat_map(|a| &a.partitions)
        {
            if p.primary_addr().as_ref() == Some(addr) {
                counts.0 += 1;
            } else if p.secondary_addrs().contains(addr) {
                counts.1 += 1;
            }
        }
        counts
    }

    /// Cures what needs it and returns the partitions changed, with their configuration before,
    /// to persist (ballot + 1 each) and announce. With fewer than `min_live` alive nodes the
    /// cluster is frozen (`min_live_node_count_for_unfreeze`): nothing moves, so a cluster that
    /// is still starting does not put every partition on its first node.
    ///
    /// - A new partition (ballot 0) gets `max_replica_count` members on distinct alive nodes,
    ///   the least loaded first (ASSIGN_PRIMARY with its secondaries: every copy is empty); it
    ///   waits until that many nodes are alive.
    /// - A member that is dead, or reported its copy lost, leaves (DOWNGRADE_TO_INACTIVE): a
    ///   dead primary is replaced by a live secondary (UPGRADE_TO_PRIMARY), which holds every
    ///   committed write since each was acknowledged by every member.
    /// - A partition without members waits for the last node that left (`last_drops`), the
    ///   one that holds everything committed, and makes it primary again (ASSIGN_PRIMARY). It
    ///   never promotes another, possibly stale, copy.
    pub fn assign(&mut self, min_live: usize) -> Vec<Changed> {
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
            let before = self.apps[&app_id].partitions[pidx as usize].clone();
            let gpid = Gpid::new(app_id, pidx);
            let mut after = before.clone();
            if before.ballot == 0 {
                let wanted = before.max_replica_count.max(1) as usize;
                let mut alive: Vec<SocketAddrV4> = self
                    .nodes
                    .iter()
                    .filter(|(_, n)| n.alive)
                    .map(|(a, _)| *a)
                    .collect();
                // The copies on the least loaded nodes; the primary on the one of them with
                // the fewest primaries.
                alive.sort_by_key(|a| {
                    let (p, s) = self.role_counts(a);
                    (p + s, p, *a)
                });
                if alive.len() < wanted {
                    // Every copy is placed at once, while all are empty: wait for enough nodes.
                    continue;
                }
                alive.truncate(wanted);
                let Some(primary) = alive.iter().copied().min_by_key(|a| {
                    let (p, s) = self.role_counts(a);
                    (p, p + s, *a)
                }) else {
                    continue;
                };
                after.primary = primary.to_string();
                after.secondaries = alive
                    .iter()
                    .filter(|a| **a != primary)
                    .map(|s| s.to_string())
                    .collect();
            } else {
                let primary = before.primary_addr().filter(|p| self.serves(p, gpid));
                let (live, dead): (Vec<SocketAddrV4>, Vec<SocketAddrV4>) = before
                    .secondary_addrs()
                    .into_iter()
                    .partition(|s| self.serves(s, gpid));
                for d in &dead {
                    after.drop_member(*d);
                }
                match (primary, before.primary_addr()) {
                    (Some(_), _) => {}
                    (None, Some(old)) => {
                        after.drop_member(old);
                        if let Some(next) = live.first() {
                            after.promote(*next);
                        }
                    }
                    (None, None) if !live.is_empty() => {
                        // No primary, live secondaries: the primary stepped down (the
                        // balancer's first step) or left with no one to take over. A copy is
                        // promoted once every live member holding one runs this ballot: the
                        // one that was primary then serves no more (no stale read), and the
                        // promoted copy is one of them.
                        let holding: Vec<SocketAddrV4> = live
                            .iter()
                            .copied()
                            .filter(|s| self.nodes[s].replicas.contains(&gpid))
                            .collect();
                        if !holding.is_empty()
                            && holding.iter().all(|s| self.runs(s, gpid, before.ballot))
                        {
                            let target = self.moving.remove(&gpid);
                            let next = target.filter(|t| holding.contains(t)).unwrap_or(holding[0]);
                            after.promote(next);
                        }
                    }
                    (None, None) => {
                        // The last that left holds everything committed; one back that reports
                        // its copy lossy is passed over for the one that left before it, unless
                        // every one is such (then the last goes on with what it holds).
                        let drops: Vec<SocketAddrV4> = after
                            .last_drops
                            .iter()
                            .filter_map(|d| d.parse::<SocketAddrV4>().ok())
                            .collect();
                        let candidate = drops
                            .iter()
                            .rev()
                            .find(|d| !self.reports_lossy(d, gpid))
                            .or(drops.last())
                            .copied();
                        if after.secondaries.is_empty()
                            && let Some(last) = candidate
                            && self.nodes.get(&last).is_some_and(|n| {
                                n.alive && !n.errors.contains(&gpid) && n.replicas.contains(&gpid)
                            })
                        {
                            after.last_drops.retain(|d| *d != last.to_string());
                            after.primary = last.to_string();
                        }
                    }
                }
            }
            if after != before {
                after.ballot += 1;
                self.apps.get_mut(&app_id).expect("app").partitions[pidx as usize] = after;
                changed.push(Changed::new(gpid, before));
            }
        }
        changed
    }

    /// Copies the balancer took off nodes, still on their disks: `(node, partition)`, for the
    /// node to delete (it hears they are gone while it is no member). A node forgets one it no
    /// longer reports.
    pub fn retired_copies(&mut self) -> BTreeSet<(SocketAddrV4, Gpid)> {
        let nodes = &self.nodes;
        self.retired.retain(|(n, g)| {
            nodes
                .get(n)
                .is_some_and(|node| !node.alive || node.replicas.contains(g))
        });
        self.retired.clone()
    }

    /// A member asks to remove `node` from configuration `ballot` of `gpid` (a primary whose
    /// secondary did not acknowledge in time, or a restarted node leaving what it was in): a
    /// compare-and-swap on the ballot. `Ok(Some)` with the configuration before when it changed,
    /// `Ok(None)` when `node` is not a member, `Err` when `ballot` is not the current one (or
    /// there is no such partition).
    pub fn remove_member(
        &mut self,
        gpid: Gpid,
        ballot: i64,
        node: SocketAddrV4,
    ) -> Result<Option<Changed>, StaleBallot> {
        let live: Vec<SocketAddrV4> = {
            let p = self.partition(gpid).ok_or(StaleBallot)?;
            if p.ballot != ballot {
                return Err(StaleBallot);
            }
            if !p.has_member(node) {
                return Ok(None);
            }
            p.secondary_addrs()
                .into_iter()
                .filter(|s| *s != node && self.serves(s, gpid))
                .collect()
        };
        let p = self.at_ballot(gpid, ballot)?;
        let before = p.clone();
        let was_primary = p.primary_addr() == Some(node);
        p.drop_member(node);
        if was_primary && let Some(next) = live.first() {
            p.promote(*next);
        }
        p.ballot += 1;
        Ok(Some(Changed::new(gpid, before)))
    }

    /// A restarted primary asks for configuration `ballot` of `gpid` again under the next
    /// ballot (PRIMARY_FORCE_UPDATE_BALLOT): the process before it may have prepared under
    /// `ballot`. A compare-and-swap as [`Cluster::remove_member`]; `Ok(None)` when `node` is not
    /// the primary.
    pub fn raise_ballot(
        &mut self,
        gpid: Gpid,
        ballot: i64,
        node: SocketAddrV4,
    ) -> Result<Option<Changed>, StaleBallot> {
        // A copy that may lack what it acknowledged is granted a ballot only as the last
        // resort; otherwise it is replaced (see `assign`).
        if self.reports_lossy(&node, gpid) && !self.last_resort(&node, gpid) {
            return Err(StaleBallot);
        }
        let p = self.at_ballot(gpid, ballot)?;
        if p.primary_addr() != Some(node) {
            return Ok(None);
        }
        let before = p.clone();
        p.ballot += 1;
        Ok(Some(Changed::new(gpid, before)))
    }

    /// A learner that caught up becomes a secondary (UPGRADE_TO_SECONDARY), asked by the
    /// primary of configuration `ballot`: a compare-and-swap as [`Cluster::remove_member`].
    /// `Ok(None)` when `node` is already a member or the partition has every copy.
    pub fn upgrade(
        &mut self,
        gpid: Gpid,
        ballot: i64,
        node: SocketAddrV4,
    ) -> Result<Option<Changed>, StaleBallot> {
        let alive = self.serves(&node, gpid);
        // A balancer's copy takes the place of the secondary it moves away from.
        let replaces = self
            .copying
            .get(&gpid)
            .filter(|(_, to, ..)| *to == node)
            .map(|(from, ..)| *from);
        let p = self.at_ballot(gpid, ballot)?;
        let members = usize::from(p.primary_addr().is_some()) + p.secondaries.len();
        let replaces = replaces.filter(|from| p.secondary_addrs().contains(from));
        if !alive
            || p.has_member(node)
            || p.primary_addr().is_none()
            || (members >= p.max_replica_count.max(1) as usize && replaces.is_none())
        {
            return Ok(None);
        }
        let before = p.clone();
        if let Some(from) = replaces {
            p.drop_member(from);
        }
        let name = node.to_string();
        p.last_drops.retain(|d| d != &name);
        p.secondaries.push(name);
        p.ballot += 1;
        self.learning.remove(&gpid);
        if let Some(from) = replaces {
            self.copying.remove(&gpid);
            self.retired.insert((from, gpid));
        }
        Ok(Some(Changed::new(gpid, before)))
    }

    /// New copies to learn (ADD_SECONDARY), for partitions with a live primary and fewer copies
    /// than wanted: `(partition, primary, learner)`, for the leader to propose to the primary.
    /// The node that dropped the copy is asked first, as soon as it is back; another node (the
    /// least loaded) only once the partition has been short for `delay`
    /// (`replica_assign_delay_ms_for_dropouts`). A proposal stands for a while before another.
    pub fn learners(
        &mut self,
        now: Instant,
        delay: Duration,
    ) -> Vec<(Gpid, SocketAddrV4, SocketAddrV4)> {
        let mut out = Vec::new();
        let mut short = BTreeMap::new();
        let keys: Vec<Gpid> = self
            .apps
            .values()
            .filter(|a| a.info.available())
            .flat_map(|a| (0..a.info.partition_count).map(move |p| Gpid::new(a.info.app_id, p)))
            .collect();
        for gpid in keys {
            let Some(p) = self.partition(gpid) else {
                continue;
            };
            let Some(primary) = p.primary_addr().filter(|a| self.serves(a, gpid)) else {
                continue;
            };
            if 1 + p.secondaries.len() >= p.max_replica_count.max(1) as usize {
                continue;
            }
            let since = *self.short_since.get(&gpid).unwrap_or(&now);
            short.insert(gpid, since);
            let ballot = p.ballot;
            if self.learning.get(&gpid).is_some_and(|(_, at, asked_in)| {
                *asked_in == ballot && now.duration_since(*at) < LEARN_PATIENCE
            }) {
                continue;
            }
            let fit = |a: &SocketAddrV4| self.may_learn(a, gpid) && !p.has_member(*a);
            let returning = p
                .last_drops
                .iter()
                .rev()
                .filter_map(|d| d.parse::<SocketAddrV4>().ok())
                .find(|a| fit(a));
            let elsewhere = || {
                let mut alive: Vec<SocketAddrV4> = self
                    .nodes
                    .iter()
                    .filter(|(a, n)| n.alive && fit(a))
                    .map(|(a, _)| *a)
                    .collect();
                alive.sort_by_key(|a| {
                    let (p, s) = self.role_counts(a);
                    (p + s, *a)
                });
                alive.first().copied()
            };
            let learner = returning.or_else(|| {
                (now.duration_since(since) >= delay)
                    .then(elsewhere)
                    .flatten()
            });
            if let Some(learner) = learner {
                out.push((gpid, primary, learner));
            }
        }
        for (gpid, _, learner) in &out {
            let ballot = self.partition(*gpid).map_or(0, |p| p.ballot);
            self.learning.insert(*gpid, (*learner, now, ballot));
        }
        self.short_since = short;
        out
    }

    /// The configuration of `gpid` for a change asked against `ballot`: `StaleBallot` unless
    /// that is its current ballot.
    fn at_ballot(&mut self, gpid: Gpid, ballot: i64) -> Result<&mut PartitionConfig, StaleBallot> {
        let p = self
            .apps
            .get_mut(&gpid.app_id)
            .and_then(|a| {
                a.partitions
                    .get_mut(usize::try_from(gpid.partition_index).ok()?)
            })
            .ok_or(StaleBallot)?;
        if p.ballot == ballot {
            Ok(p)
        } else {
            Err(StaleBallot)
        }
    }

    /// The configuration of `gpid`, if it exists.
    pub fn partition(&self, gpid: Gpid) -> Option<&PartitionConfig> {
        self.apps
            .get(&gpid.app_id)?
            .partitions
            .get(usize::try_from(gpid.partition_index).ok()?)
    }
}

/// The table named `name` in `apps`, dropped ones excluded.
pub fn app_named<'a>(apps: &'a BTreeMap<i32, App>, name: &str) -> Option<&'a App> {
    apps.values()
        .find(|a| a.info.app_name == name && a.info.available())
}

/// The partitions (of available tables in `apps`) `node` must hear about: those it is a member
/// of, and those it reports a copy of (so a copy no longer a member goes inactive).
pub fn configs_for<'a>(
    apps: &'a BTreeMap<i32, App>,
    node: SocketAddrV4,
    reported: &[Gpid],
) -> Vec<(Gpid, &'a App)> {
    let mut out = Vec::new();
    for app in apps.values().filter(|a| a.info.available()) {
        for (i, p) in app.partitions.iter().enumerate() {
            let gpid = Gpid::new(app.info.app_id, i as i32);
            if p.has_member(node) || reported.contains(&gpid) {
                out.push((gpid, app));
            }
        }
    }
    out
}

/// What a member (or a node that reports a copy) is told of partition `pidx` of `app`.
pub fn assignment(app: &App, pidx: i32) -> Assignment {
    let p = &app.partitions[pidx as usize];
    Assignment {
        pid: Gpid::new(app.info.app_id, pidx),
        partition_count: app.info.partition_count,
        ballot: p.ballot,
        primary: p.primary_rpc(),
        secondaries: p.secondary_rpcs(),
        max_replica_count: p.max_replica_count,
        learner: RpcAddress::INVALID,
        envs: app.info.envs.clone(),
        fresh: p.ballot <= 1 && p.last_committed_decree == 0,
        app_name: app.info.app_name.clone(),
    }
}

/// Of the replicas a node `reported`: those of dropped tables (to close, keeping their files),
/// and those of expired ones (to delete). A table unknown here is left alone.
pub fn retired(apps: &BTreeMap<i32, App>, reported: &[Gpid]) -> (Vec<Gpid>, Vec<Gpid>) {
    let mut dropped = Vec::new();
    let mut gone = Vec::new();
    for gpid in reported {
        match apps.get(&gpid.app_id) {
            Some(app) if app.info.dropped() => dropped.push(*gpid),
            Some(app) if app.info.expired() => gone.push(*gpid),
            _ => {}
        }
    }
    (dropped, gone)
}

/// A change asked against a ballot that is not the partition's current one (or of a partition
/// that does not exist): `ERR_INVALID_VERSION`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaleBallot;

/// A partition whose configuration changed, with what it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changed {
    /// The table.
    pub app_id: i32,
    /// The partition.
    pub pidx: i32,
    /// The configuration before.
    pub before: PartitionConfig,
}

impl Changed {
    /// Who must hear of the change, `now` being the partition's new configuration: every node
    /// that was or is a member, once each, in order.
    pub fn told(&self, now: &PartitionConfig) -> Vec<SocketAddrV4> {
        let mut nodes: Vec<SocketAddrV4> = self
            .before
            .primary_addr()
            .into_iter()
            .chain(self.before.secondary_addrs())
            .chain(now.primary_addr())
            .chain(now.secondary_addrs())
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    fn new(gpid: Gpid, before: PartitionConfig) -> Self {
        Changed {
            app_id: gpid.app_id,
            pidx: gpid.partition_index,
            before,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn addr(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new([127, 0, 0, 1].into(), port)
    }

    pub(super) fn cluster(nodes: &[u16], partitions: i32, replicas: i32) -> Cluster {
        let mut c = Cluster::default();
        let now = Instant::now();
        for port in nodes {
            c.beacon(addr(*port), vec![], vec![], now);
        }
        let app = c.new_app("t", partitions, replicas, 0);
        c.apps.insert(app.info.app_id, app);
        c
    }

    pub(super) fn all(c: &Cluster) -> Vec<Gpid> {
        (0..c.apps[&1].info.partition_count)
            .map(|i| Gpid::new(1, i))
            .collect()
    }

    /// Every node reports every partition, each running its current ballot.
    pub(super) fn report_all(c: &mut Cluster, nodes: &[u16]) {
        let gpids = all(c);
        let ballots: Vec<i64> = gpids
            .iter()
            .map(|g| c.partition(*g).unwrap().ballot)
            .collect();
        for n in nodes {
            c.beacon(addr(*n), gpids.clone(), vec![], Instant::now());
            c.note_ballots(addr(*n), &gpids, &ballots);
        }
    }

    #[test]
    fn a_node_that_leaves_is_dead_at_once_and_its_groups_go_on_without_it() {
        let mut c = cluster(&[1, 2, 3, 4], 2, 3);
        c.assign(1);
        report_all(&mut c, &[1, 2, 3, 4]);
        let leaving = c.partition(Gpid::new(1, 0)).unwrap().secondary_addrs()[0];
        assert!(c.leave(leaving));
        assert!(!c.leave(leaving), "once");
        assert_eq!(c.alive_count(), 3);
        let changed = c.assign(1);
        assert!(!changed.is_empty());
        for g in all(&c) {
            assert!(!c.partition(g).unwrap().has_member(leaving), "{g}");
        }
    }

    #[test]
    fn new_partitions_get_every_copy_on_distinct_nodes_spread_evenly() {
        let mut c = cluster(&[1, 2, 3, 4], 8, 3);
        assert!(c.assign(5).is_empty(), "frozen below the live-node minimum");
        assert_eq!(c.assign(1).len(), 8);
        for p in &c.apps[&1].partitions {
            assert_eq!(p.ballot, 1);
            let mut members = p.secondary_addrs();
            members.push(p.primary_addr().unwrap());
            members.sort();
            members.dedup();
            assert_eq!(members.len(), 3, "{p:?}");
        }
        let counts: Vec<(usize, usize)> = [1, 2, 3, 4]
            .iter()
            .map(|n| c.role_counts(&addr(*n)))
            .collect();
        assert_eq!(counts.iter().map(|c| c.0).sum::<usize>(), 8);
        assert!(
            counts.iter().all(|c| c.0 == 2 && c.0 + c.1 == 6),
            "{counts:?}"
        );
        assert!(c.assign(1).is_empty(), "stable once assigned");
    }

    #[test]
    fn a_dead_primary_is_replaced_by_a_live_secondary_and_a_dead_secondary_leaves() {
        let mut c = cluster(&[1, 2, 3], 1, 3);
        c.assign(1);
        let before = c.apps[&1].partitions[0].clone();
        let primary = before.primary_addr().unwrap();
        let later = Instant::now() + Duration::from_secs(30);
        for n in [1, 2, 3].map(addr).into_iter().filter(|n| *n != primary) {
            c.beacon(n, all(&c), vec![], later);
        }
        assert_eq!(c.expire(later, Duration::from_secs(10)), vec![primary]);
        assert_eq!(c.assign(1).len(), 1);
        let p = c.apps[&1].partitions[0].clone();
        assert_eq!(p.ballot, 2);
        assert_eq!(p.primary, before.secondaries[0], "UPGRADE_TO_PRIMARY");
        assert_eq!(p.secondaries, &before.secondaries[1..]);
        assert_eq!(p.last_drops, vec![primary.to_string()]);
        // The other secondary reports its copy lost: it leaves; one member cannot write.
        let s = p.secondary_addrs()[0];
        c.beacon(s, all(&c), all(&c), later);
        c.assign(1);
        let p = c.apps[&1].partitions[0].clone();
        assert_eq!((p.ballot, p.secondaries.len()), (3, 0));
    }

    #[test]
    fn without_members_only_the_last_to_leave_comes_back_as_primary() {
        let mut c = cluster(&[1, 2, 3], 1, 3);
        c.assign(1);
        let p = c.apps[&1].partitions[0].clone();
        let order = [
            p.secondary_addrs()[0],
            p.secondary_addrs()[1],
            p.primary_addr().unwrap(),
        ];
        let later = Instant::now() + Duration::from_secs(30);
        // Node 4 stays (with every node gone the cluster is frozen and nothing moves).
        c.beacon(addr(4), vec![], vec![], later);
        assert_eq!(c.expire(later, Duration::from_secs(10)).len(), 3);
        c.assign(1);
        let p = c.apps[&1].partitions[0].clone();
        assert_eq!((p.primary.as_str(), p.secondaries.len()), ("", 0));
        assert_eq!(
            p.last_drops,
            order.map(|a| a.to_string()),
            "the primary last"
        );
        // The other two come back with their copies: they wait.
        for n in &order[..2] {
            c.beacon(*n, all(&c), vec![], later);
        }
        assert!(c.assign(1).is_empty());
        // The last one to leave returns: ASSIGN_PRIMARY.
        c.beacon(order[2], all(&c), vec![], later);
        assert_eq!(c.assign(1).len(), 1);
        assert_eq!(c.apps[&1].partitions[0].primary, order[2].to_string());
    }

    #[test]
    fn removal_is_a_compare_and_swap_on_the_ballot() {
        let mut c = cluster(&[1, 2, 3], 1, 3);
        c.assign(1);
        let gpid = Gpid::new(1, 0);
        let p = c.apps[&1].partitions[0].clone();
        let s = p.secondary_addrs()[0];
        assert!(c.remove_member(gpid, 7, s).is_err(), "stale ballot");
        let changed = c.remove_member(gpid, 1, s).unwrap().unwrap();
        assert_eq!(changed.before, p);
        let now = c.apps[&1].partitions[0].clone();
        assert_eq!(now.ballot, 2);
        assert!(!now.has_member(s));
        assert_eq!(c.remove_member(gpid, 2, s), Ok(None), "not a member");
        // The primary leaving hands over to a live secondary.
        let primary = now.primary_addr().unwrap();
        c.remove_member(gpid, 2, primary).unwrap().unwrap();
        let after = c.apps[&1].partitions[0].clone();
        assert_eq!(after.primary, now.secondaries[0]);
        assert!(after.secondaries.is_empty());
        assert_eq!(after.last_drops, vec![s.to_string(), primary.to_string()]);
    }

    #[test]
    fn a_primary_that_lost_its_only_copy_is_dropped_and_nothing_empty_replaces_it() {
        let mut c = cluster(&[1, 2], 2, 1);
        c.assign(1);
        let p = c.apps[&1].partitions[0].clone();
        let lost = p.primary_addr().unwrap();
        c.beacon(lost, all(&c), vec![Gpid::new(1, 0)], Instant::now());
        assert_eq!(c.assign(1).len(), 1);
        let p = &c.apps[&1].partitions[0];
        assert_eq!(p.primary, "", "no other copy: no primary, not an empty one");
        assert_eq!(p.last_drops, vec![lost.to_string()]);
        assert!(c.assign(1).is_empty(), "and it stays so");
    }

    /// Regression guard (simulation seed 67541): a primary that lost power with fsync off came
    /// back its partition's one member (its secondary had just been removed) and went on without
    /// what the removed copy held. A copy reported lossy serves nothing, is passed over in
    /// `last_drops` for the copy that left before it, learns again, and is granted a ballot only
    /// when every other copy that left is lossy too.
    #[test]
    fn a_lossy_copy_is_passed_over_for_the_copy_that_left_before_it() {
        let mut c = cluster(&[1, 2], 1, 2);
        let gpid = Gpid::new(1, 0);
        c.assign(1);
        let p = c.apps[&1].partitions[0].clone();
        let (primary, secondary) = (p.primary_addr().unwrap(), p.secondary_addrs()[0]);
        let now = Instant::now();
        for n in [primary, secondary] {
            c.beacon(n, all(&c), vec![], now);
        }
        // The secondary is removed (its primary asked), then the primary is back lossy.
        c.remove_member(gpid, p.ballot, secondary).unwrap();
        c.note_lossy(primary, vec![gpid]);
        assert!(
            c.raise_ballot(gpid, c.apps[&1].partitions[0].ballot, primary)
                .is_err(),
            "no ballot for a lossy copy while the removed one may take over"
        );
        // Dropped (it serves nothing), then the copy that left before it takes over.
        c.assign(1);
        assert_eq!(c.apps[&1].partitions[0].primary, "");
        c.assign(1);
        let p = &c.apps[&1].partitions[0];
        assert_eq!(p.primary, secondary.to_string(), "{p:?}");
        // The lossy copy learns again there.
        let learners = c.learners(now, Duration::ZERO);
        assert_eq!(learners, vec![(gpid, secondary, primary)]);
        // Every copy lossy (every machine lost power): the last goes on with what it holds.
        let mut c = cluster(&[1, 2], 1, 2);
        c.assign(1);
        let p = c.apps[&1].partitions[0].clone();
        let (primary, secondary) = (p.primary_addr().unwrap(), p.secondary_addrs()[0]);
        for n in [primary, secondary] {
            c.beacon(n, all(&c), vec![], now);
            c.note_lossy(n, vec![gpid]);
        }
        c.remove_member(gpid, p.ballot, secondary).unwrap();
        let ballot = c.apps[&1].partitions[0].ballot;
        assert!(c.raise_ballot(gpid, ballot, primary).unwrap().is_some());
        assert!(
            c.assign(1).is_empty(),
            "it stays primary: {:?}",
            c.apps[&1].partitions[0]
        );
    }
}
