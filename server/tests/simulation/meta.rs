//! The meta leader: `meta::state`'s decisions, and what `meta/mod.rs` does around them, on a
//! ZooKeeper whose writes take time.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pegasus_protocol::types::{Assignment, BeaconRequest, Gpid, RpcAddress, config_type};
use pegasus_server::meta::state::{self, App, Beat, Changed, Cluster};
use pegasus_server::replica::ReplicaStub;

use crate::net::{Place, addr, node_of};
use crate::{DROPOUT_DELAY, GRACE, LEASE, Plant, World};

/// What the meta does under its state lock, one at a time.
pub(crate) enum Work {
    Tend,
    Update {
        from: usize,
        gpid: Gpid,
        ballot: u64,
        node: SocketAddrV4,
        kind: i32,
    },
}

/// A change being persisted: what to do once ZooKeeper has it.
pub(crate) struct Publishing {
    pub(crate) done_at: Duration,
    pub(crate) changed: Vec<Changed>,
    pub(crate) deposed: Vec<SocketAddrV4>,
    /// Members' requests answered once it is persisted.
    pub(crate) answers: Vec<(usize, Gpid, bool)>,
    /// A tend cures (proposes learners) once it is persisted.
    pub(crate) then_learners: bool,
}

/// The meta leader: `meta::state`'s decisions, and what `meta/mod.rs` does around them
/// (beacons answered from the published view, leases, changes persisted before anyone hears
/// of them, a replaced primary's lease waited out).
pub(crate) struct Meta {
    pub(crate) cluster: Cluster,
    /// What beacons and routing read: the state as last persisted.
    pub(crate) view: BTreeMap<i32, App>,
    pub(crate) beats: BTreeMap<usize, Beat>,
    /// When each node was last answered a beacon (its lease runs from before then).
    pub(crate) leased: HashMap<SocketAddrV4, Instant>,
    /// Primaries a change in flight replaces: their beacons get no lease meanwhile.
    pub(crate) deposing: BTreeSet<SocketAddrV4>,
    pub(crate) work: VecDeque<Work>,
    pub(crate) publishing: Option<Publishing>,
}

impl World {
    /// Every node that is up sends its beacon.
    pub(crate) fn beacons(&self) {
        let stubs: Vec<(usize, Arc<ReplicaStub>)> = {
            let nodes = self.nodes.lock().expect("nodes");
            nodes
                .iter()
                .enumerate()
                .filter_map(|(i, n)| n.up.as_ref().map(|(s, _)| (i, Arc::clone(s))))
                .collect()
        };
        for (i, stub) in stubs {
            let mut beat = stub.beacon();
            if self.plant == Some(Plant::LostUnreported) {
                beat.errors.clear();
            }
            let sent = self.now;
            self.net.lock().expect("net").send(
                Place::Node(i),
                Place::Meta,
                Box::new(move |w: &World| w.on_beacon(i, sent, beat)),
            );
        }
    }

    /// The meta answers a beacon: from the published view; a lease unless the node is a
    /// primary being replaced.
    pub(crate) fn on_beacon(&self, i: usize, sent: Duration, b: BeaconRequest) {
        let node = addr(i);
        let answer = {
            let mut meta = self.meta.lock().expect("meta");
            if meta.deposing.contains(&node) && self.plant != Some(Plant::LeaseFromOldView) {
                None
            } else {
                if meta.deposing.contains(&node) {
                    self.trace(|| format!("node {i}, being replaced, gets a lease (planted)"));
                }
                let known: Vec<Gpid> = b.replicas.iter().chain(&b.errors).copied().collect();
                let configs: Vec<Assignment> = state::configs_for(&meta.view, node, &known)
                    .into_iter()
                    .map(|(gpid, app)| state::assignment(app, gpid.partition_index))
                    .collect();
                let now = self.instant(self.now);
                meta.leased.insert(node, now);
                // Stamped on arrival, as the meta stamps a beacon.
                meta.beats.insert(i, Beat::new(b, now));
                Some(configs)
            }
        };
        let Some(mut configs) = answer else {
            return;
        };
        // A first-ballot partition another node holds is not fresh (see `MetaServer::beacon`).
        {
            let meta = self.meta.lock().expect("meta");
            for a in configs.iter_mut().filter(|a| a.fresh) {
                a.fresh = !meta
                    .beats
                    .iter()
                    .any(|(n, b)| *n != i && b.replicas.contains(&a.pid));
            }
        }
        let until = self.instant(sent + LEASE);
        self.net.lock().expect("net").send(
            Place::Meta,
            Place::Node(i),
            Box::new(move |w: &World| {
                if let Some(stub) = w.stub(i) {
                    stub.grant_lease(until);
                    stub.apply_configs(&configs);
                }
            }),
        );
    }

    /// The meta's next piece of work, unless a change is being persisted.
    pub(crate) fn meta_step(&self) {
        let mut meta = self.meta.lock().expect("meta");
        if let Some(p) = &meta.publishing {
            if p.done_at > self.now {
                return;
            }
            let p = meta.publishing.take().expect("publishing");
            self.published(&mut meta, p);
            return;
        }
        let Some(work) = meta.work.pop_front() else {
            return;
        };
        match work {
            Work::Tend => {
                let beats = std::mem::take(&mut meta.beats);
                for (i, beat) in &beats {
                    let node = addr(*i);
                    // Only what came since it was last folded in (an old beat revives nothing).
                    if meta.cluster.is_new(node, beat.at) {
                        meta.cluster.fold(node, beat.clone());
                    }
                }
                meta.beats = beats;
                let now = self.instant(self.now);
                meta.cluster.expire(now, GRACE);
                let changed = meta.cluster.assign(1);
                if changed.is_empty() {
                    self.propose_learners(&mut meta);
                } else {
                    self.publish(&mut meta, changed, Vec::new(), true);
                }
            }
            Work::Update {
                from,
                gpid,
                ballot,
                node,
                kind,
            } => {
                let ballot = ballot as i64;
                let result = match kind {
                    config_type::DOWNGRADE_TO_INACTIVE => {
                        meta.cluster.remove_member(gpid, ballot, node)
                    }
                    config_type::PRIMARY_FORCE_UPDATE_BALLOT => {
                        meta.cluster.raise_ballot(gpid, ballot, node)
                    }
                    config_type::UPGRADE_TO_SECONDARY => meta.cluster.upgrade(gpid, ballot, node),
                    _ => return,
                };
                let granted = kind == config_type::PRIMARY_FORCE_UPDATE_BALLOT;
                match result {
                    Ok(Some(c)) => {
                        self.publish(&mut meta, vec![c], vec![(from, gpid, granted)], true)
                    }
                    Ok(None) => self.answer(&meta, from, gpid, granted),
                    Err(_) => self.answer(&meta, from, gpid, false),
                }
            }
        }
    }

    /// Starts persisting `changed` (ZooKeeper takes a while, sometimes seconds); primaries it
    /// replaces get no lease meanwhile.
    pub(crate) fn publish(
        &self,
        meta: &mut Meta,
        changed: Vec<Changed>,
        answers: Vec<(usize, Gpid, bool)>,
        then_learners: bool,
    ) {
        let deposed = meta.cluster.deposed(&changed);
        meta.deposing.extend(deposed.iter().copied());
        // A primary replaced while cut off is where a slow write matters most: healing during
        // it, the primary beacons while the view still names it (no lease may come of it).
        let cut_off: Vec<usize> = {
            let net = self.net.lock().expect("net");
            deposed
                .iter()
                .map(|n| node_of(*n))
                .filter(|n| net.is_cut(Place::Node(*n)))
                .collect()
        };
        let (write, heal) = {
            let mut rng = self.rng();
            let slow = if cut_off.is_empty() { 150 } else { 500 };
            let write = if self.faults_on && rng.chance(slow) {
                rng.millis(1000, 4000)
            } else {
                rng.millis(1, 20)
            };
            let heal = (write > Duration::from_secs(1) && !cut_off.is_empty() && rng.chance(700))
                .then(|| rng.millis(100, write.as_millis() as u64 - 100));
            (write, heal)
        };
        if let Some(heal) = heal {
            let mut net = self.net.lock().expect("net");
            for n in cut_off {
                net.heal_at(n, self.now + heal);
                self.trace(|| {
                    format!(
                        "node {n} heals during the slow write, at {:?}",
                        self.now + heal
                    )
                });
            }
        }
        meta.publishing = Some(Publishing {
            done_at: self.now + write,
            changed,
            deposed,
            answers,
            then_learners,
        });
    }

    /// A change is persisted: a replaced primary's last lease is waited out, then the view is
    /// published and the members hear of it.
    pub(crate) fn published(&self, meta: &mut Meta, mut p: Publishing) {
        let leased_until = meta
            .cluster
            .replaced_lease_ends(&p.deposed, &meta.leased, LEASE)
            .filter(|_| self.plant != Some(Plant::LeaseFromOldView));
        if let Some(until) = leased_until.filter(|u| *u > self.instant(self.now)) {
            p.done_at = until - self.base;
            meta.publishing = Some(p);
            return;
        }
        meta.view = meta.cluster.apps.clone();
        self.trace(|| {
            let changes: Vec<String> = p
                .changed
                .iter()
                .map(|c| {
                    let config = &meta.cluster.apps[&c.app_id].partitions[c.pidx as usize];
                    format!(
                        "{}.{} b{} {} {:?}",
                        c.app_id, c.pidx, config.ballot, config.primary, config.secondaries
                    )
                })
                .collect();
            format!("meta published {changes:?}")
        });
        for n in &p.deposed {
            meta.deposing.remove(n);
        }
        self.totals.lock().expect("totals").configurations += p.changed.len() as u64;
        for c in &p.changed {
            let app = &meta.cluster.apps[&c.app_id];
            let config = &app.partitions[c.pidx as usize];
            let proposal = state::assignment(app, c.pidx);
            for node in c.told(config) {
                self.propose(node_of(node), proposal.clone());
            }
        }
        for (from, gpid, granted) in std::mem::take(&mut p.answers) {
            self.answer(meta, from, gpid, granted);
        }
        if p.then_learners {
            self.propose_learners(meta);
        }
    }

    pub(crate) fn propose_learners(&self, meta: &mut Meta) {
        let now = self.instant(self.now);
        for (gpid, primary, learner) in meta.cluster.learners(now, DROPOUT_DELAY) {
            let mut proposal =
                state::assignment(&meta.cluster.apps[&gpid.app_id], gpid.partition_index);
            proposal.learner = RpcAddress::new(learner);
            self.propose(node_of(primary), proposal);
        }
    }

    pub(crate) fn propose(&self, node: usize, proposal: Assignment) {
        self.net.lock().expect("net").send(
            Place::Meta,
            Place::Node(node),
            Box::new(move |w: &World| {
                if let Some(stub) = w.stub(node) {
                    stub.apply_configs(&[proposal]);
                }
            }),
        );
    }

    /// Answers a member's request with the partition's configuration (as the link applies it).
    pub(crate) fn answer(&self, meta: &Meta, from: usize, gpid: Gpid, granted: bool) {
        let Some(app) = meta.cluster.apps.get(&gpid.app_id) else {
            return;
        };
        let config = state::assignment(app, gpid.partition_index);
        self.net.lock().expect("net").send(
            Place::Meta,
            Place::Node(from),
            Box::new(move |w: &World| {
                if let Some(stub) = w.stub(from) {
                    if granted && let Some(p) = stub.partition(gpid) {
                        p.granted(config.ballot.max(0) as u64);
                    }
                    stub.apply_configs(&[config]);
                }
            }),
        );
    }
}
