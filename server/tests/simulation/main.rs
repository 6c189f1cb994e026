//! A seeded, deterministic simulation of a whole cluster, on the server's own code: every node
//! is a real [`ReplicaStub`] whose partitions run the real driver (batching, bounded mailboxes),
//! the real private log and a real RocksDB store, on a stepped driver pool; the meta is the
//! real decision code of `meta::state` ([`Cluster`]: beacons, failure detection, assignment,
//! learners, members' requests) with a ZooKeeper whose writes take time (sometimes seconds).
//! One thread plays the rest: the network (delays, drops, reordering, a node cut off for a
//! while, its links flapping once it heals), the clock, and the faults: a node's process killed
//! (its stores lose what they had not flushed), or its machine losing power (its logs also lose
//! what was not fsynced, and it comes back in another boot), and back within the grace or past
//! it; a node's disk failing for a while (full or failing: log writes and opens of copies
//! refused). A primary replaced while cut off often heals during the slow write of its
//! replacement. Half the seeds run with `plog_force_flush = false`. Clients write increasing
//! values to keys and read them back, routed by the meta's published view as a Pegasus client
//! is (asked again on an error or a timeout, and now and then by a client just started).
//!
//! Checked:
//! - no stale read: a read returns at least the last value acknowledged before it was sent;
//! - one reader: while a node serves a read of a partition, no other node would;
//! - no acknowledged write lost: once the faults stop and the cluster healed, every key reads
//!   at least its last acknowledged value from its primary;
//! - groups heal: within a bound after the faults stop, every partition has its copies, and a
//!   new write to every partition is acknowledged;
//! - copies agree: once writes stop, every copy of a partition holds the same data (the
//!   replicas' digests, as `GET /replica/digest` serves them).
//!
//! `cargo test --release -p pegasus-server --test simulation` runs `PEGASUS_WORLD_SEEDS` seeds
//! (24 by default) after the kept regression seeds; `PEGASUS_WORLD_SEED=n` replays one
//! (`RUST_LOG=info` shows the servers' logs, with the simulation's own lines and its clock).
//! Then it plants each bug of [`Plant`] in turn and fails unless some seed catches each;
//! `PEGASUS_WORLD_PLANT=<name>` searches for one only (with `PEGASUS_WORLD_SEED`, replays
//! that seed with it).
//!
//! Nothing of a run is random but the seed: the pool runs rounds in the order the simulation
//! picks, on its clock; the meta's maps are ordered; RocksDB flushes only when the log asks.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pegasus_protocol::types::Gpid;
use pegasus_replication::sim::Rng;
use pegasus_server::meta::state::Cluster;
use pegasus_server::replica::ReplicaStub;
use pegasus_server::replica::dirs::DataDirs;
use pegasus_server::replica::faults::{Fault, Faults, Point};
use pegasus_server::replica::partition::{PartitionOptions, TICK};
use pegasus_server::replica::pool::{DriverPool, LazyPool};
use pegasus_server::replica::slog::{self, SlogOptions};
use pegasus_server::replica::storage::RocksOptions;

/// Seeds that once failed, replayed first (each fails with its fix undone, on this schedule).
/// 5: a copy whose disk failed, the partition's last member, stayed reported lost after its
/// disk served again, and the partition stayed without a primary for good
/// (`ReplicaStub::reopen_stopped`). 343: a node back without its copy asked to leave; the
/// proposal that had placed the partition on it, fresh, arrived late, and it made an empty
/// copy the primary of the old ballot, serving reads beside the new primary (`ReplicaStub::
/// left`). 200, 201: a deposed primary's beacon answer brought a lease and the news of its
/// replacement; until its driver took the news up it served reads of the old ballot with the
/// new lease (`Status::told`).
/// Found under earlier schedules (the faults and clients have changed since, so they are kept
/// as schedules of their own; each defect's unit test in `replication/src/replica.rs` guards
/// it): 6, 8, 24: a secondary answered a new primary's prepare of a decree it had committed
/// with an acknowledgement alone; its store lost the decree in a crash and its log held it
/// only under the old ballot: back within the grace, it acknowledged and never applied again
/// (copies differ). 570: a learner just made a secondary refused the new ballot's first
/// prepare, sent once, which came before its configuration: removed at the timeout, it learned
/// again and raced again, a copy behind for good. 16, 33, 165: a learner missed a committed
/// decree with nothing prepared after (`a_learner_whose_report_shows_a_committed_decree_
/// missing_copies_again`).
const REGRESSIONS: &[u64] = &[5, 343, 200, 201, 6, 8, 24, 570, 16, 33, 165];

/// The table: its partitions, and copies of each.
const PARTITIONS: i32 = 4;
const REPLICAS: i32 = 3;
/// The failure detector, as `[replication] fd_*` (Pegasus's defaults but the beacon's).
const BEACON: Duration = Duration::from_secs(1);
const LEASE: Duration = Duration::from_secs(9);
const GRACE: Duration = Duration::from_secs(10);
/// `[meta_server] replica_assign_delay_ms_for_dropouts`.
const DROPOUT_DELAY: Duration = Duration::from_secs(3);
/// How often the meta folds beacons in and cures.
const TEND: Duration = Duration::from_secs(1);
/// How long faults are injected, and how long the cluster then has to heal.
const FAULTS_FOR: Duration = Duration::from_secs(60);
const HEAL_WITHIN: Duration = Duration::from_secs(120);
/// A client gives up on a request after this long.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);

mod clients;
mod meta;
mod net;

use crate::clients::{History, key_bytes};
use crate::meta::{METAS, Meta, Work, Zk};
use crate::net::{Net, Place, SimPeers, addr, node_of};

/// A node: its folder, fault layer and boot, and its processes while up.
struct Slot {
    dir: PathBuf,
    faults: Arc<Faults>,
    boot: u64,
    up: Option<(Arc<ReplicaStub>, Arc<DriverPool>)>,
    /// Down until then (`None`: up, or down for good until the faults stop).
    back_at: Option<Duration>,
    /// The driver is busy until then (a round took that long).
    busy_until: Duration,
    /// Its disk fails (full, or failing) until then: logs refuse writes and copies do not open.
    disk_bad_until: Option<Duration>,
}

#[derive(Default, Clone, Copy)]
struct Totals {
    seeds: u64,
    acked: u64,
    failed: u64,
    reads: u64,
    crashes: u64,
    power_losses: u64,
    cuts: u64,
    disk_faults: u64,
    meta_faults: u64,
    configurations: u64,
    rounds: u64,
}

struct World {
    rng: Mutex<Rng>,
    base: Instant,
    now: Duration,
    root: tempfile::TempDir,
    fsync_off: bool,
    nodes: Mutex<Vec<Slot>>,
    net: Arc<Mutex<Net>>,
    metas: Vec<Mutex<Meta>>,
    zk: Mutex<Zk>,
    history: Mutex<History>,
    /// Clients' routing: the view as they last queried it, the writers' and the readers'
    /// (each refreshed on its own errors only, as separate clients are).
    routes: Mutex<BTreeMap<i32, SocketAddrV4>>,
    read_routes: Mutex<BTreeMap<i32, SocketAddrV4>>,
    totals: Mutex<Totals>,
    faults_on: bool,
    tracing: bool,
    /// The bug planted, if any.
    plant: Option<Plant>,
}

/// A bug the simulation plants, one at a time, each a defect once found and fixed: a run
/// fails unless some seed catches each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plant {
    /// A machine that lost power comes back in the same boot, so its copies trust logs that
    /// lost their unsynced tails (as before copies were marked lossy).
    SameBoot,
    /// The meta grants a lease to a primary whose replacement it is persisting, from the view
    /// before it, and tells the successor without waiting that lease out (stale reads).
    LeaseFromOldView,
    /// A copy that cannot open or whose log write failed (a full or failing disk) is never
    /// reported in the beacons: the meta keeps a live node that serves nothing.
    LostUnreported,
    /// The meta's writes to ZooKeeper are not fenced with its lock node: a deposed leader's
    /// late write lands after another meta took over.
    Unfenced,
    /// The shared log counts its groups durable without syncing them: a power loss takes it
    /// whole, and the private logs (unsynced) lose what their copies acknowledged.
    SlogUnsynced,
}

impl Plant {
    const ALL: [Plant; 5] = [
        Plant::SameBoot,
        Plant::LeaseFromOldView,
        Plant::LostUnreported,
        Plant::Unfenced,
        Plant::SlogUnsynced,
    ];

    fn name(self) -> &'static str {
        match self {
            Plant::SameBoot => "same-boot",
            Plant::LeaseFromOldView => "lease-from-old-view",
            Plant::LostUnreported => "lost-unreported",
            Plant::Unfenced => "unfenced-writes",
            Plant::SlogUnsynced => "slog-unsynced",
        }
    }

    /// What it does when caught (the failures that count).
    fn harm(self) -> &'static [&'static str] {
        match self {
            Plant::SameBoot => &["lost", "differ", "stale"],
            Plant::LeaseFromOldView => &["stale read", "two primaries serve reads"],
            Plant::LostUnreported => &["not healed"],
            Plant::SlogUnsynced => &["lost", "differ", "stale"],
            Plant::Unfenced => &[
                "stale read",
                "two primaries",
                "lost",
                "differ",
                "never written",
            ],
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Plant::SameBoot => {
                "a machine back from a power loss in the same boot: its copies trust what their \
                 logs kept"
            }
            Plant::LeaseFromOldView => {
                "a lease from the view before a change being persisted, and the successor told \
                 without waiting it out"
            }
            Plant::LostUnreported => "a copy that cannot open or write never reported lost",
            Plant::Unfenced => "the meta's ZooKeeper writes unfenced",
            Plant::SlogUnsynced => "the shared log's groups counted durable without a sync",
        }
    }
}

impl World {
    fn new(seed: u64, plant: Option<Plant>) -> World {
        let mut rng = Rng(seed);
        let fsync_off = rng.chance(500);
        let count = 4 + rng.below(2) as usize;
        let shm = Path::new("/dev/shm");
        let root = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("a temporary folder");
        let nodes = (0..count)
            .map(|i| Slot {
                dir: root.path().join(format!("node{i}")),
                faults: Arc::new({
                    let f = Faults::default();
                    f.record_syncs();
                    f
                }),
                boot: 1,
                up: None,
                back_at: None,
                busy_until: Duration::ZERO,
                disk_bad_until: None,
            })
            .collect();
        let mut cluster = Cluster::default();
        let app = cluster.new_app("sim", PARTITIONS, REPLICAS, 0);
        cluster.apps.insert(app.info.app_id, app);
        let net = Net {
            rng: Rng(seed ^ 0x5EED),
            now: Duration::ZERO,
            seq: 0,
            parcels: Vec::new(),
            cut: BTreeMap::new(),
            drops: 5,
            flaky: BTreeMap::new(),
        };
        let world = World {
            rng: Mutex::new(rng),
            base: Instant::now(),
            now: Duration::ZERO,
            root,
            fsync_off,
            nodes: Mutex::new(nodes),
            net: Arc::new(Mutex::new(net)),
            metas: (0..METAS).map(|_| Mutex::new(Meta::new())).collect(),
            zk: Mutex::new(Zk {
                apps: cluster.apps,
                ..Zk::default()
            }),
            history: Mutex::default(),
            routes: Mutex::default(),
            read_routes: Mutex::default(),
            totals: Mutex::default(),
            faults_on: true,
            tracing: std::env::var_os("RUST_LOG").is_some(),
            plant,
        };
        for i in 0..count {
            world.start(i);
        }
        world
    }

    /// With `RUST_LOG` set, what the simulation does goes to stderr between the servers' lines.
    fn trace(&self, what: impl FnOnce() -> String) {
        if self.tracing {
            eprintln!("[{:?}] world: {}", self.now, what());
        }
    }

    fn rng(&self) -> std::sync::MutexGuard<'_, Rng> {
        self.rng.lock().expect("rng")
    }

    /// The stubs of the nodes that are up, with their numbers.
    pub(crate) fn up_stubs(&self) -> Vec<(usize, Arc<ReplicaStub>)> {
        let nodes = self.nodes.lock().expect("nodes");
        nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.up.as_ref().map(|(s, _)| (i, Arc::clone(s))))
            .collect()
    }

    fn stub(&self, node: usize) -> Option<Arc<ReplicaStub>> {
        let nodes = self.nodes.lock().expect("nodes");
        nodes[node].up.as_ref().map(|(s, _)| Arc::clone(s))
    }

    fn instant(&self, at: Duration) -> Instant {
        self.base + at
    }

    /// Starts node `i`'s process: its stub opens every replica on its disk.
    fn start(&self, i: usize) {
        let (dir, faults, boot) = {
            let nodes = self.nodes.lock().expect("nodes");
            let n = &nodes[i];
            (n.dir.clone(), Arc::clone(&n.faults), n.boot)
        };
        let pool = DriverPool::stepped(self.instant(self.now));
        // Small files: the shared log moves to its next file, and drops the one before, often.
        let slog = SlogOptions {
            sync: !self.fsync_off,
            file_size: 256 << 10,
            pool: Arc::clone(&pool),
            faults: Arc::clone(&faults),
            metrics: Default::default(),
        };
        let (slog, damaged) =
            slog::open_or_set_aside(&dir.join("slog"), slog).expect("the shared log opens");
        assert!(!damaged, "node {i}'s shared log was damaged");
        let options = PartitionOptions {
            rocks: RocksOptions {
                write_buffer_size: 8 << 20,
                max_background_jobs: 2,
                compression: rocksdb::DBCompressionType::None,
                flush_on_close: false,
                ..RocksOptions::default()
            },
            plog_file_size: 64 << 10,
            plog_force_flush: !self.fsync_off,
            write_queue: 64,
            me: addr(i),
            server: addr(i).to_string(),
            pool: LazyPool::of(Arc::clone(&pool)),
            faults,
            boot_id: format!("boot-{boot}").into(),
            slog: Some(slog),
            ..PartitionOptions::default()
        };
        let dirs = DataDirs::new(&[], "replica", &dir, None).expect("data dirs");
        let peers = Arc::new(SimPeers {
            me: i,
            net: Arc::clone(&self.net),
            root: self.root.path().to_owned(),
        });
        self.trace(|| format!("node {i} starts (boot {boot})"));
        let stub = ReplicaStub::open_with_peers(dirs, options, peers).expect("the stub opens");
        let mut nodes = self.nodes.lock().expect("nodes");
        nodes[i].up = Some((stub, pool));
        nodes[i].back_at = None;
    }

    /// Kills node `i`'s process; with `power`, its machine loses power too.
    fn kill(&self, i: usize, power: bool, back_at: Option<Duration>) {
        let up = {
            let mut nodes = self.nodes.lock().expect("nodes");
            nodes[i].back_at = back_at;
            nodes[i].up.take()
        };
        let Some((stub, pool)) = up else {
            return;
        };
        self.trace(|| {
            format!(
                "node {i} {}, back at {back_at:?}",
                if power { "loses power" } else { "is killed" }
            )
        });
        pool.crash();
        drop(stub);
        drop(pool);
        let mut totals = self.totals.lock().expect("totals");
        if power {
            totals.power_losses += 1;
            drop(totals);
            let mut nodes = self.nodes.lock().expect("nodes");
            let n = &mut nodes[i];
            if self.plant != Some(Plant::SameBoot) {
                n.boot += 1;
            }
            lose_unsynced(&n.dir, &n.faults, self.plant == Some(Plant::SlogUnsynced));
        } else {
            totals.crashes += 1;
        }
    }

    /// Node `i` runs one ready round or background work if it has one; whether it did.
    fn run_node(&self, i: usize) -> bool {
        let pool = {
            let nodes = self.nodes.lock().expect("nodes");
            match &nodes[i].up {
                Some((_, pool)) if nodes[i].busy_until <= self.now => Arc::clone(pool),
                _ => return false,
            }
        };
        pool.set_now(self.instant(self.now));
        let (ready, background) = (pool.ready_count(), pool.background_count());
        if ready + background == 0 {
            return false;
        }
        let pick = self.rng().below((ready + background) as u64) as usize;
        let _node = tracing::info_span!("node", n = i).entered();
        if pick < ready {
            pool.run_ready(pick);
        } else {
            pool.run_background(pick - ready);
        }
        self.totals.lock().expect("totals").rounds += 1;
        // Most rounds take no time; some hold the node's driver up (a slow disk, a checkpoint).
        let cost = {
            let mut rng = self.rng();
            if rng.chance(5) {
                rng.millis(100, 1500)
            } else {
                rng.millis(0, 1)
            }
        };
        self.nodes.lock().expect("nodes")[i].busy_until = self.now + cost;
        true
    }

    /// One reader: leases make the primary that serves reads of a partition the only node
    /// that would; two at once could answer from a store that misses writes.
    fn check_one_reader(&self) {
        let stubs = self.up_stubs();
        for pidx in 0..PARTITIONS {
            let gpid = Gpid::new(1, pidx);
            let serving: Vec<(usize, u64)> = stubs
                .iter()
                .filter_map(|(i, s)| {
                    let p = s.serves(gpid, false).ok()?;
                    Some((*i, p.ballot()))
                })
                .collect();
            if serving.len() > 1 {
                self.history
                    .lock()
                    .expect("history")
                    .violations
                    .push(format!(
                        "two primaries serve reads of {gpid} at {:?}: (node, ballot) {serving:?}",
                        self.now
                    ));
            }
        }
    }

    fn tick_nodes(&self) {
        let pools: Vec<Arc<DriverPool>> = {
            let nodes = self.nodes.lock().expect("nodes");
            nodes
                .iter()
                .filter_map(|n| n.up.as_ref().map(|(_, p)| Arc::clone(p)))
                .collect()
        };
        for pool in pools {
            pool.set_now(self.instant(self.now));
            pool.tick();
        }
    }

    /// One fault, now and then, while they are on.
    fn fault_step(&self) {
        let count = self.nodes.lock().expect("nodes").len();
        let (which, node, back_in) = {
            let mut rng = self.rng();
            let which = rng.below(100);
            let node = rng.below(count as u64) as usize;
            // Back within the grace (a quick restart) or past it (replaced meanwhile; often
            // just past it, while the meta persists the replacement).
            let back_in = match rng.below(3) {
                0 => rng.millis(200, 5000),
                1 => rng.millis(10_500, 14_000),
                _ => rng.millis(14_000, 25_000),
            };
            (which, node, back_in)
        };
        // A node down or with a failing disk is the one failure the cluster must survive.
        let down = self
            .nodes
            .lock()
            .expect("nodes")
            .iter()
            .filter(|n| n.up.is_none() || n.disk_bad_until.is_some())
            .count();
        // With fsync off, a power loss loses what a copy acknowledged and had not synced: the
        // promise (server/DEPLOY.md) is for one failure at a time, so it strikes only a
        // cluster whose every partition has all its copies up, reachable and in one ballot.
        let power_safe = !self.fsync_off
            || (self.healed()
                && !self
                    .net
                    .lock()
                    .expect("net")
                    .cut
                    .values()
                    .any(|u| *u > self.now));
        match which {
            // At most one node down at a time: three copies survive one failure.
            0..40 if down == 0 => self.kill(node, false, Some(self.now + back_in)),
            40..60 if down == 0 && power_safe => self.kill(node, true, Some(self.now + back_in)),
            80..86 if down == 0 => {
                let (fault, until) = {
                    let mut rng = self.rng();
                    let fault = if rng.chance(500) {
                        Fault::NoSpace
                    } else {
                        Fault::Io
                    };
                    (fault, self.now + rng.millis(2000, 20_000))
                };
                self.trace(|| format!("node {node}'s disk fails ({fault:?}) until {until:?}"));
                let mut nodes = self.nodes.lock().expect("nodes");
                nodes[node].disk_bad_until = Some(until);
                for point in [Point::PlogWrite, Point::ReplicaOpen] {
                    nodes[node].faults.inject(point, Some(fault));
                }
                drop(nodes);
                self.totals.lock().expect("totals").disk_faults += 1;
            }
            86..92 if self.metas_fine() => {
                let leader = self.leader();
                let (m, kill, back_in) = {
                    let mut rng = self.rng();
                    let m = match leader {
                        Some(l) if rng.chance(700) => l,
                        _ => rng.below(METAS as u64) as usize,
                    };
                    (m, rng.chance(400), rng.millis(2000, 25_000))
                };
                let mut meta = self.meta(m);
                if kill {
                    self.trace(|| format!("meta {m} is killed, back at {:?}", self.now + back_in));
                    meta.up = false;
                    meta.back_at = Some(self.now + back_in);
                    meta.publishing = None;
                } else {
                    self.trace(|| format!("meta {m} cut off from ZooKeeper for {back_in:?}"));
                    meta.zk_cut_until = self.now + back_in;
                }
                drop(meta);
                self.totals.lock().expect("totals").meta_faults += 1;
            }
            60..80 => {
                let mut net = self.net.lock().expect("net");
                if net.cut.values().all(|until| *until <= self.now) {
                    net.cut_off(node, self.now + back_in);
                    self.trace(|| format!("node {node} cut off until {:?}", self.now + back_in));
                    drop(net);
                    self.totals.lock().expect("totals").cuts += 1;
                }
            }
            _ => {}
        }
    }

    /// Disks that serve again from now on (`all`: every one).
    fn disks_back(&self, all: bool) {
        let mut nodes = self.nodes.lock().expect("nodes");
        for (i, n) in nodes.iter_mut().enumerate() {
            if n.disk_bad_until
                .is_some_and(|until| all || until <= self.now)
            {
                n.disk_bad_until = None;
                for point in [Point::PlogWrite, Point::ReplicaOpen] {
                    n.faults.inject(point, None);
                }
                self.trace(|| format!("node {i}'s disk serves again"));
            }
        }
    }

    /// Restarts the nodes whose time has come.
    fn restarts(&self) {
        let due: Vec<usize> = {
            let nodes = self.nodes.lock().expect("nodes");
            nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.up.is_none() && n.back_at.is_some_and(|at| at <= self.now))
                .map(|(i, _)| i)
                .collect()
        };
        for i in due {
            self.start(i);
        }
        for m in 0..METAS {
            let mut meta = self.meta(m);
            if !meta.up && meta.back_at.is_some_and(|at| at <= self.now) {
                *meta = Meta::new();
                self.trace(|| format!("meta {m} starts"));
            }
        }
    }

    /// Whether every meta runs and reaches ZooKeeper (a meta's fault strikes only then: the
    /// promise is for one failure at a time).
    pub(crate) fn metas_fine(&self) -> bool {
        (0..METAS).all(|m| self.meta(m).connected(self.now))
    }

    /// Whether every partition has its copies, each serving in the same ballot.
    fn healed(&self) -> bool {
        let Some(m) = self.leader() else {
            return false;
        };
        let view = self.meta(m).view.clone();
        view[&1].partitions.iter().enumerate().all(|(pidx, p)| {
            let gpid = Gpid::new(1, pidx as i32);
            let members: Vec<SocketAddrV4> = p
                .primary_addr()
                .into_iter()
                .chain(p.secondary_addrs())
                .collect();
            members.len() == REPLICAS as usize
                && p.primary_addr().is_some()
                && members.iter().all(|m| {
                    self.stub(node_of(*m))
                        .and_then(|s| s.partition(gpid))
                        .is_some_and(|r| r.ballot() == p.ballot as u64)
                })
        })
    }

    /// Advances the clock to `until`, doing whatever falls due.
    fn run_until(&mut self, until: Duration, clients: bool, stop: impl Fn(&World) -> bool) -> bool {
        let mut next_tick = self.now;
        let mut next_beacon = self.now;
        let mut next_tend = self.now;
        let mut next_client = self.now;
        let mut next_fault = self.now + Duration::from_secs(2);
        while self.now < until {
            if stop(self) {
                return true;
            }
            // Whatever is runnable now, in an order the seed picks.
            let count = self.nodes.lock().expect("nodes").len();
            let start = self.rng().below(count as u64) as usize;
            let mut ran = false;
            for j in 0..count {
                let i = (start + j) % count;
                if self.run_node(i) {
                    ran = true;
                    break;
                }
            }
            let parcel = if ran && self.rng().chance(500) {
                None
            } else {
                self.net.lock().expect("net").take_due()
            };
            if let Some(p) = parcel {
                let _node = match p.to {
                    Place::Node(n) => Some(tracing::info_span!("node", n).entered()),
                    _ => None,
                };
                (p.deliver)(self);
                continue;
            }
            if ran {
                continue;
            }
            for m in 0..METAS {
                self.meta_step(m);
            }
            if self.now >= next_tick {
                self.check_one_reader();
                self.tick_nodes();
                next_tick = self.now + TICK;
            }
            if self.now >= next_beacon {
                self.beacons();
                next_beacon = self.now + BEACON;
            }
            if self.now >= next_tend {
                for m in 0..METAS {
                    self.elect(m);
                    self.meta(m).work.push_back(Work::Tend);
                }
                next_tend = self.now + TEND;
            }
            self.zk.lock().expect("zk").expire(self.now);
            if clients && self.now >= next_client {
                self.client_step();
                next_client = self.now + self.rng().millis(2, 30);
            }
            if self.faults_on && self.now >= next_fault {
                self.fault_step();
                next_fault = self.now + self.rng().millis(1000, 6000);
            }
            self.restarts();
            self.disks_back(false);
            // Nothing runnable: the clock moves to the next thing due.
            let busy_until = {
                let nodes = self.nodes.lock().expect("nodes");
                nodes
                    .iter()
                    .filter(|n| n.up.is_some() && n.busy_until > self.now)
                    .map(|n| n.busy_until)
                    .min()
            };
            // A meta's write lands when due, or once it reaches ZooKeeper again.
            let publishing = (0..METAS)
                .filter_map(|m| {
                    let meta = self.meta(m);
                    let p = meta.publishing.as_ref()?;
                    Some(p.done_at.max(meta.zk_cut_until))
                })
                .min();
            let working = (0..METAS).any(|m| {
                let meta = self.meta(m);
                meta.publishing.is_none() && !meta.work.is_empty() && meta.is_leader(self.now)
            });
            let mut next = [
                Some(next_tick),
                Some(next_beacon),
                clients.then_some(next_client),
                self.net.lock().expect("net").next_at(),
                busy_until,
                publishing,
                Some(next_tend),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(until);
            if working {
                next = self.now;
            }
            let step = next.max(self.now + Duration::from_micros(100)).min(until);
            self.now = step;
            self.net.lock().expect("net").now = step;
        }
        stop(self)
    }

    /// The faults stop, every node comes back; the cluster must heal and serve every partition.
    fn settle(&mut self) -> Result<(), String> {
        self.faults_on = false;
        {
            let mut net = self.net.lock().expect("net");
            net.cut.clear();
            net.flaky.clear();
            net.drops = 0;
        }
        self.disks_back(true);
        for m in 0..METAS {
            let mut meta = self.meta(m);
            meta.zk_cut_until = Duration::ZERO;
            if !meta.up {
                meta.back_at = Some(self.now);
            }
        }
        let down: Vec<usize> = {
            let nodes = self.nodes.lock().expect("nodes");
            (0..nodes.len())
                .filter(|i| nodes[*i].up.is_none())
                .collect()
        };
        for i in down {
            self.start(i);
        }
        let deadline = self.now + HEAL_WITHIN;
        if !self.run_until(deadline, true, |w| w.healed()) {
            return Err(format!(
                "not healed {HEAL_WITHIN:?} after the faults stopped: {}",
                self.describe()
            ));
        }
        // Every partition takes a new write.
        let healed_at = self.now;
        let until = self.now + Duration::from_secs(30);
        let wrote = move |w: &World| {
            let h = w.history.lock().expect("history");
            (0..PARTITIONS).all(|p| {
                h.keys
                    .range((p, 0)..(p + 1, 0))
                    .any(|(_, k)| k.acked.last().is_some_and(|(at, _)| *at > healed_at))
            })
        };
        if !self.run_until(until, true, wrote) {
            return Err(format!("writes did not resume: {}", self.describe()));
        }
        // Writes stop; the copies catch up.
        let until = self.now + Duration::from_secs(10);
        self.run_until(until, false, |_| false);
        Ok(())
    }

    /// The final checks: every acknowledged write is there, every copy holds the same.
    fn check(&self) -> Result<(), String> {
        let view = self.view();
        let h = self.history.lock().expect("history");
        if let Some(v) = h.violations.first() {
            return Err(v.clone());
        }
        for (pidx, p) in view[&1].partitions.iter().enumerate() {
            let gpid = Gpid::new(1, pidx as i32);
            let mut digests = BTreeMap::new();
            for m in p.primary_addr().into_iter().chain(p.secondary_addrs()) {
                let store = self
                    .stub(node_of(m))
                    .and_then(|s| s.partition(gpid))
                    .and_then(|r| r.storage())
                    .ok_or_else(|| format!("{gpid}: member {m} has no store"))?;
                if Some(m) == p.primary_addr() {
                    for ((kp, k), key) in h.keys.range((pidx as i32, 0)..(pidx as i32 + 1, 0)) {
                        let want = key.acked_by(self.now);
                        let got = store
                            .get(&key_bytes(*kp, *k), 0)
                            .map_err(|e| e.to_string())?
                            .map_or(0, |v| u64::from_be_bytes(v[..8].try_into().expect("8")));
                        if got < want {
                            return Err(format!(
                                "acknowledged write lost: key {kp}.{k} holds {got} on primary {m}, {want} was acknowledged"
                            ));
                        }
                    }
                }
                let d = store.digest().map_err(|e| e.to_string())?;
                // The decree may differ by what is committed and not yet known to be (a
                // secondary learns of a commit with the next prepare): the data may not.
                digests.insert(m, (d.keys, d.crc64));
            }
            let distinct: BTreeSet<_> = digests.values().collect();
            if distinct.len() > 1 {
                return Err(format!(
                    "{gpid}: copies differ: {digests:?}; values: {}",
                    self.values(gpid, &h)
                ));
            }
        }
        Ok(())
    }

    /// Each member's value of each key of `gpid` (to see how copies differ).
    fn values(&self, gpid: Gpid, h: &History) -> String {
        let view = self.view();
        let p = &view[&1].partitions[gpid.partition_index as usize];
        let pidx = gpid.partition_index;
        let mut out = String::new();
        for m in p.primary_addr().into_iter().chain(p.secondary_addrs()) {
            let Some(store) = self
                .stub(node_of(m))
                .and_then(|s| s.partition(gpid))
                .and_then(|r| r.storage())
            else {
                continue;
            };
            let values: Vec<u64> = h
                .keys
                .range((pidx, 0)..(pidx + 1, 0))
                .map(|((kp, k), _)| {
                    store
                        .get(&key_bytes(*kp, *k), 0)
                        .ok()
                        .flatten()
                        .map_or(0, |v| u64::from_be_bytes(v[..8].try_into().expect("8")))
                })
                .collect();
            out.push_str(&format!(
                "\n  {m}: decree {} {values:?}",
                store.applied_decree().unwrap_or(0)
            ));
        }
        out
    }

    fn describe(&self) -> String {
        let view = self.view();
        let mut out = String::new();
        for (pidx, p) in view[&1].partitions.iter().enumerate() {
            let gpid = Gpid::new(1, pidx as i32);
            out.push_str(&format!(
                "\n  {gpid}: ballot {} primary {} secondaries {:?};",
                p.ballot, p.primary, p.secondaries
            ));
            let nodes = self.nodes.lock().expect("nodes").len();
            for i in 0..nodes {
                if let Some(r) = self.stub(i).and_then(|s| s.partition(gpid)) {
                    out.push_str(&format!(
                        " n{i}: {:?} b{} c{}{}",
                        r.role(),
                        r.ballot(),
                        r.committed(),
                        if r.lossy() { " lossy" } else { "" }
                    ));
                }
            }
        }
        out
    }

    fn shut_down(&self) {
        let count = self.nodes.lock().expect("nodes").len();
        for i in 0..count {
            self.kill(i, false, None);
        }
    }
}

/// A power loss: each log file keeps what was fsynced (the rest reads as zeros, as a
/// preallocated file's unwritten blocks do); with `slog_unsynced` (planted), the shared log
/// keeps nothing.
fn lose_unsynced(node_dir: &Path, faults: &Faults, slog_unsynced: bool) {
    let Ok(reps) = std::fs::read_dir(node_dir.join("reps")) else {
        return;
    };
    let logs = reps
        .flatten()
        .map(|replica| replica.path().join("plog"))
        .chain([node_dir.join("slog")]);
    for log in logs {
        let Ok(files) = std::fs::read_dir(log) else {
            continue;
        };
        for file in files.flatten() {
            let path = file.path();
            let shared = path.parent().is_some_and(|p| p.ends_with("slog"));
            let synced = if shared && slog_unsynced {
                0
            } else {
                faults.synced(&path)
            };
            let Ok(len) = file.metadata().map(|m| m.len()) else {
                continue;
            };
            if synced < len {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .expect("a log file");
                f.set_len(synced).expect("cut");
                f.set_len(len).expect("zeroes");
            }
        }
    }
}

fn run_seed(seed: u64, plant: Option<Plant>, totals: &mut Totals) -> Result<(), String> {
    let mut world = World::new(seed, plant);
    let result = (|| {
        let until = FAULTS_FOR;
        world.run_until(until, true, |w| {
            !w.history.lock().expect("history").violations.is_empty()
        });
        world.settle()?;
        world.check()
    })();
    let mode = if world.fsync_off {
        "fsync off"
    } else {
        "fsync on"
    };
    let nodes = world.nodes.lock().expect("nodes").len();
    let result = result.map_err(|e| format!("{e} ({mode}, {nodes} nodes)"));
    {
        let t = *world.totals.lock().expect("totals");
        let h = world.history.lock().expect("history");
        totals.seeds += 1;
        totals.acked += h.acked;
        totals.failed += h.failed;
        totals.reads += h.reads;
        totals.crashes += t.crashes;
        totals.power_losses += t.power_losses;
        totals.cuts += t.cuts;
        totals.disk_faults += t.disk_faults;
        totals.meta_faults += t.meta_faults;
        totals.configurations += t.configurations;
        totals.rounds += t.rounds;
    }
    world.shut_down();
    result
}

fn main() -> ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let started = Instant::now();
    let mut totals = Totals::default();
    let one = std::env::var("PEGASUS_WORLD_SEED").ok();
    let seeds: Vec<u64> = match &one {
        Some(one) => vec![one.parse().expect("PEGASUS_WORLD_SEED is a number")],
        None => {
            let count: u64 = std::env::var("PEGASUS_WORLD_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(24);
            REGRESSIONS.iter().copied().chain(0..count).collect()
        }
    };
    // `PEGASUS_WORLD_PLANT=<name>` searches for one planted bug only; with
    // `PEGASUS_WORLD_SEED`, replays that seed with it.
    let only = std::env::var("PEGASUS_WORLD_PLANT").ok();
    let replayed = only
        .as_ref()
        .filter(|_| one.is_some())
        .and_then(|o| Plant::ALL.into_iter().find(|p| p.name() == o));
    let mut failed = BTreeSet::new();
    for seed in seeds {
        if let Err(e) = run_seed(seed, replayed, &mut totals) {
            println!("world: seed {seed} failed: {e}");
            failed.insert(seed);
            if failed.len() >= 3 {
                break;
            }
        }
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "world: {} seeds in {took:.1} s ({:.2} seeds/s): {} writes acknowledged, {} refused, {} \
         reads checked; {} process kills, {} power losses, {} nodes cut off, {} disks failing, {} \
         metas killed or cut off from ZooKeeper; {} configurations persisted; {} driver rounds",
        totals.seeds,
        totals.seeds as f64 / took.max(1e-9),
        totals.acked,
        totals.failed,
        totals.reads,
        totals.crashes,
        totals.power_losses,
        totals.cuts,
        totals.disk_faults,
        totals.meta_faults,
        totals.configurations,
        totals.rounds
    );
    // Each planted bug must be caught, by some seed within the budget.
    let mut missed = Vec::new();
    if one.is_none() {
        let budget: u64 = std::env::var("PEGASUS_WORLD_PLANTED_SEEDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(200);
        for plant in Plant::ALL
            .into_iter()
            .filter(|p| only.as_ref().is_none_or(|o| o == p.name()))
        {
            let started = Instant::now();
            let caught = (0..budget).find_map(|seed| {
                run_seed(seed, Some(plant), &mut Totals::default())
                    .err()
                    .filter(|e| plant.harm().iter().any(|what| e.contains(what)))
                    .map(|e| (seed, e))
            });
            let took = started.elapsed().as_secs_f64();
            match &caught {
                Some((seed, e)) => println!(
                    "world: the planted bug ({}) is caught at seed {seed} ({took:.1} s): {e}",
                    plant.describe()
                ),
                None => {
                    println!(
                        "world: the planted bug ({}) went unnoticed in {budget} seeds",
                        plant.describe()
                    );
                    missed.push(plant);
                }
            }
        }
    }
    if !missed.is_empty() {
        ExitCode::FAILURE
    } else if failed.is_empty() {
        println!("world: {} passed, 0 failed", totals.seeds);
        ExitCode::SUCCESS
    } else {
        println!(
            "world: {} failed (replay: PEGASUS_WORLD_SEED={})",
            failed.len(),
            failed.first().expect("one")
        );
        ExitCode::FAILURE
    }
}
