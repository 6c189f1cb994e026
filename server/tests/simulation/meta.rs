//! The metas: two, each running `meta::state`'s decisions and what `meta/mod.rs` does around
//! them, on a ZooKeeper with sessions, expiry, the leader election and fenced writes, whose
//! writes take time.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use pegasus_protocol::types::{Assignment, BeaconRequest, Gpid, RpcAddress, config_type};
use pegasus_server::meta::state::{self, App, Beat, Changed, Cluster};

use crate::net::{Place, addr, node_of};
use crate::{DROPOUT_DELAY, GRACE, LEASE, Plant, World};

/// The meta servers.
pub(crate) const METAS: usize = 2;
/// `[zookeeper] timeout_ms`: a session ZooKeeper has not heard from for this long expires,
/// and its lock node with it.
pub(crate) const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// ZooKeeper has it (what is left is waiting out a replaced primary's lease).
    pub(crate) written: bool,
}

/// ZooKeeper: the cluster's state as persisted, the sessions and the leader election.
#[derive(Default)]
pub(crate) struct Zk {
    pub(crate) apps: BTreeMap<i32, App>,
    /// Live sessions: whose, and when ZooKeeper last heard from it.
    pub(crate) sessions: BTreeMap<u64, (usize, Duration)>,
    /// The election's lock nodes (ephemeral, sequential), by session, in order: the first
    /// leads.
    pub(crate) lock: Vec<u64>,
    pub(crate) next_session: u64,
}

impl Zk {
    /// Sessions not heard from for [`SESSION_TIMEOUT`] expire, their lock nodes with them.
    pub(crate) fn expire(&mut self, now: Duration) {
        let expired: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, (_, heard))| *heard + SESSION_TIMEOUT <= now)
            .map(|(s, _)| *s)
            .collect();
        for s in expired {
            self.sessions.remove(&s);
            self.lock.retain(|l| *l != s);
        }
    }
}

/// A meta server: `meta::state`'s decisions, and what `meta/mod.rs` does around them (the
/// election, beacons answered from the published view while leading, leases, changes
/// persisted under the fence before anyone hears of them, a replaced primary's lease waited
/// out).
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
    /// Its process runs (else it is back then).
    pub(crate) up: bool,
    pub(crate) back_at: Option<Duration>,
    /// Cut off from ZooKeeper until then.
    pub(crate) zk_cut_until: Duration,
    /// Its ZooKeeper session, and the one whose lock node fences its writes (`Zk::lead_with`).
    pub(crate) session: Option<u64>,
    pub(crate) fence: Option<u64>,
    /// Acting as the leader, until then at the latest (two thirds of a session timeout after
    /// ZooKeeper last named it).
    pub(crate) leader: bool,
    pub(crate) leader_until: Duration,
}

impl Meta {
    pub(crate) fn new() -> Meta {
        Meta {
            cluster: Cluster::default(),
            view: BTreeMap::new(),
            beats: BTreeMap::new(),
            leased: HashMap::new(),
            deposing: BTreeSet::new(),
            work: VecDeque::new(),
            publishing: None,
            up: true,
            back_at: None,
            zk_cut_until: Duration::ZERO,
            session: None,
            fence: None,
            leader: false,
            leader_until: Duration::ZERO,
        }
    }

    pub(crate) fn is_leader(&self, now: Duration) -> bool {
        self.up && self.leader && now < self.leader_until
    }

    pub(crate) fn connected(&self, now: Duration) -> bool {
        self.up && self.zk_cut_until <= now
    }
}

impl World {
    pub(crate) fn meta(&self, m: usize) -> std::sync::MutexGuard<'_, Meta> {
        self.metas[m].lock().expect("meta")
    }

    /// The meta acting as the leader now, if one is.
    pub(crate) fn leader(&self) -> Option<usize> {
        (0..METAS).find(|m| self.meta(*m).is_leader(self.now))
    }

    /// What a client or an operator is told: the acting leader's published view, else what
    /// ZooKeeper holds.
    pub(crate) fn view(&self) -> BTreeMap<i32, App> {
        match self.leader() {
            Some(m) => self.meta(m).view.clone(),
            None => self.zk.lock().expect("zk").apps.clone(),
        }
    }

    /// Every node that is up sends its beacon (to every meta: the others ignore it).
    pub(crate) fn beacons(&self) {
        for (i, stub) in self.up_stubs() {
            let mut beat = stub.beacon();
            if self.plant == Some(Plant::LostUnreported) {
                beat.errors.clear();
            }
            let sent = self.now;
            for m in 0..METAS {
                let beat = beat.clone();
                self.net.lock().expect("net").send(
                    Place::Node(i),
                    Place::Meta(m),
                    Box::new(move |w: &World| w.on_beacon(m, i, sent, beat)),
                );
            }
        }
    }

    /// Meta `m` answers a beacon if it leads: from the published view; a lease unless the
    /// node is a primary being replaced.
    pub(crate) fn on_beacon(&self, m: usize, i: usize, sent: Duration, b: BeaconRequest) {
        let node = addr(i);
        let answer = {
            let mut meta = self.meta(m);
            if !meta.is_leader(self.now) {
                return;
            }
            if meta.deposing.contains(&node) && self.plant != Some(Plant::LeaseFromOldView) {
                None
            } else {
                if meta.deposing.contains(&node) {
                    self.trace(|| format!("node {i}, being replaced, gets a lease (planted)"));
                }
                let known: Vec<Gpid> = b.replicas.iter().chain(&b.errors).copied().collect();
                let mut configs: Vec<Assignment> = state::configs_for(&meta.view, node, &known)
                    .into_iter()
                    .map(|(gpid, app)| state::assignment(app, gpid.partition_index))
                    .collect();
                let now = self.instant(self.now);
                meta.leased.insert(node, now);
                // Stamped on arrival, as the meta stamps a beacon.
                meta.beats.insert(i, Beat::new(b, now));
                // A first-ballot partition another node holds is not fresh (see
                // `MetaServer::beacon`).
                for a in configs.iter_mut().filter(|a| a.fresh) {
                    a.fresh = !meta
                        .beats
                        .iter()
                        .any(|(n, b)| *n != i && b.replicas.contains(&a.pid));
                }
                Some(configs)
            }
        };
        let Some(configs) = answer else {
            return;
        };
        let until = self.instant(sent + LEASE);
        self.net.lock().expect("net").send(
            Place::Meta(m),
            Place::Node(i),
            Box::new(move |w: &World| {
                if let Some(stub) = w.stub(i) {
                    stub.grant_lease(until);
                    stub.apply_configs(&configs);
                }
            }),
        );
    }

    /// Meta `m`'s part in the election, once a second (`MetaServer::elect` and the session
    /// watcher): a session ZooKeeper dropped is renewed with a new place in the election; the
    /// first lock node's meta leads, and takes over by loading the state from ZooKeeper.
    pub(crate) fn elect(&self, m: usize) {
        let mut meta = self.meta(m);
        if !meta.up {
            return;
        }
        if !meta.connected(self.now) {
            // Not leader while the session is in doubt; regained on reconnect.
            meta.leader = false;
            return;
        }
        let mut zk = self.zk.lock().expect("zk");
        let alive = meta.session.is_some_and(|s| zk.sessions.contains_key(&s));
        if !alive {
            // Expired (or never opened): not the leader; a new session, and the election
            // joined again at its end.
            meta.leader = false;
            meta.fence = None;
            zk.next_session += 1;
            let session = zk.next_session;
            zk.sessions.insert(session, (m, self.now));
            zk.lock.push(session);
            meta.session = Some(session);
            self.trace(|| format!("meta {m} opens session {session}"));
        }
        let session = meta.session.expect("a session");
        zk.sessions.insert(session, (m, self.now));
        if zk.lock.first() != Some(&session) {
            meta.fence = None;
            meta.leader = false;
            return;
        }
        meta.leader_until = self.now + SESSION_TIMEOUT * 2 / 3;
        // Taking over waits for the state lock, which a change being persisted holds.
        if meta.leader || meta.publishing.is_some() {
            return;
        }
        meta.fence = Some(session);
        let mut cluster = Cluster::default();
        cluster.apps = zk.apps.clone();
        cluster.presume_alive(self.instant(self.now));
        meta.view = cluster.apps.clone();
        meta.cluster = cluster;
        // The leases it gave and the beacons it has are its own (`MetaServer::leased`): kept.
        meta.deposing.clear();
        meta.work.clear();
        meta.leader = true;
        self.trace(|| format!("meta {m} leads (session {session})"));
    }

    /// Meta `m`'s next piece of work, unless a change is being persisted.
    pub(crate) fn meta_step(&self, m: usize) {
        let mut meta = self.meta(m);
        if !meta.up {
            return;
        }
        if let Some(p) = &meta.publishing {
            // A write waits for ZooKeeper while the meta cannot reach it.
            if p.done_at > self.now || !meta.connected(self.now) {
                return;
            }
            let mut p = meta.publishing.take().expect("publishing");
            if !p.written {
                let mut zk = self.zk.lock().expect("zk");
                // The fence: the write is a transaction that checks this meta's lock node.
                let fenced = meta.fence.is_some_and(|s| zk.lock.contains(&s));
                if !fenced && self.plant != Some(Plant::Unfenced) {
                    drop(zk);
                    self.trace(|| format!("meta {m}'s write refused by the fence"));
                    // What it decided is not the cluster's: it leads again only by loading.
                    meta.leader = false;
                    meta.deposing.clear();
                    return;
                }
                for c in &p.changed {
                    let config = meta.cluster.apps[&c.app_id].partitions[c.pidx as usize].clone();
                    if let Some(app) = zk.apps.get_mut(&c.app_id) {
                        app.partitions[c.pidx as usize] = config;
                    }
                }
                p.written = true;
            }
            self.published(m, &mut meta, p);
            return;
        }
        if !meta.is_leader(self.now) {
            meta.work.clear();
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
                    self.propose_learners(m, &mut meta);
                } else {
                    self.publish(m, &mut meta, changed, Vec::new(), true);
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
                        self.publish(m, &mut meta, vec![c], vec![(from, gpid, granted)], true)
                    }
                    Ok(None) => self.answer(m, &meta, from, gpid, granted),
                    Err(_) => self.answer(m, &meta, from, gpid, false),
                }
            }
        }
    }

    /// Starts persisting `changed` (ZooKeeper takes a while, sometimes seconds); primaries it
    /// replaces get no lease meanwhile.
    pub(crate) fn publish(
        &self,
        m: usize,
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
        // Now and then ZooKeeper becomes unreachable just as the leader writes: the write
        // waits, and another meta may lead meanwhile.
        let others_fine = (0..METAS)
            .filter(|o| *o != m)
            .all(|o| self.meta(o).connected(self.now));
        if self.faults_on && others_fine && meta.connected(self.now) && self.rng().chance(20) {
            let back_in = self.rng().millis(2000, 25_000);
            self.trace(|| format!("meta {m} cut off from ZooKeeper for {back_in:?} as it writes"));
            meta.zk_cut_until = self.now + back_in;
            self.totals.lock().expect("totals").meta_faults += 1;
        }
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
            written: false,
        });
    }

    /// A change is persisted: a replaced primary's last lease is waited out, then the view is
    /// published and the members hear of it.
    pub(crate) fn published(&self, m: usize, meta: &mut Meta, mut p: Publishing) {
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
            format!("meta {m} published {changes:?}")
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
                self.propose(m, node_of(node), proposal.clone());
            }
        }
        for (from, gpid, granted) in std::mem::take(&mut p.answers) {
            self.answer(m, meta, from, gpid, granted);
        }
        if p.then_learners {
            self.propose_learners(m, meta);
        }
    }

    pub(crate) fn propose_learners(&self, m: usize, meta: &mut Meta) {
        let now = self.instant(self.now);
        for (gpid, primary, learner) in meta.cluster.learners(now, DROPOUT_DELAY) {
            let mut proposal =
                state::assignment(&meta.cluster.apps[&gpid.app_id], gpid.partition_index);
            proposal.learner = RpcAddress::new(learner);
            self.propose(m, node_of(primary), proposal);
        }
    }

    pub(crate) fn propose(&self, m: usize, node: usize, proposal: Assignment) {
        self.net.lock().expect("net").send(
            Place::Meta(m),
            Place::Node(node),
            Box::new(move |w: &World| {
                if let Some(stub) = w.stub(node) {
                    stub.apply_configs(&[proposal]);
                }
            }),
        );
    }

    /// Answers a member's request with the partition's configuration (as the link applies it).
    pub(crate) fn answer(&self, m: usize, meta: &Meta, from: usize, gpid: Gpid, granted: bool) {
        let Some(app) = meta.cluster.apps.get(&gpid.app_id) else {
            return;
        };
        let config = state::assignment(app, gpid.partition_index);
        self.net.lock().expect("net").send(
            Place::Meta(m),
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
