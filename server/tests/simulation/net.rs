//! The simulated network: parcels delayed, reordered, dropped, and nodes cut off; the calls a
//! node's replicas make to the others and to the meta ([`Peers`]) travel on it.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pegasus_protocol::types::{
    Gpid, LearnAddRequest, LearnDoneRequest, LearnRequest, PrepareRequest,
};
use pegasus_replication::sim::Rng;
use pegasus_server::replica::partition::{CopyDone, Peers, PrepareDone};

use crate::World;
use crate::meta::{METAS, Work};

/// Where a parcel goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    Node(usize),
    Meta(usize),
    Client,
    /// A timer of a node's own (a call timing out): no network between.
    Timer,
}

/// What a parcel does when it arrives.
pub(crate) type Deliver = Box<dyn FnOnce(&World) + Send>;

pub(crate) struct Parcel {
    pub(crate) at: Duration,
    pub(crate) seq: u64,
    pub(crate) from: Place,
    pub(crate) to: Place,
    pub(crate) deliver: Deliver,
}

/// The network: parcels in flight, each delayed (sometimes long, so they reorder) or dropped.
pub(crate) struct Net {
    pub(crate) rng: Rng,
    pub(crate) now: Duration,
    pub(crate) seq: u64,
    pub(crate) parcels: Vec<Parcel>,
    /// Nodes cut off from everyone until then.
    pub(crate) cut: BTreeMap<usize, Duration>,
    /// Per mille of parcels dropped (while faults are on).
    pub(crate) drops: u64,
    /// Nodes whose links flap until then, just healed: half of what is sent them is lost.
    pub(crate) flaky: BTreeMap<usize, Duration>,
}

impl Net {
    pub(crate) fn send(&mut self, from: Place, to: Place, deliver: Deliver) {
        if self.drops > 0 && self.rng.chance(self.drops) {
            return;
        }
        if let Place::Node(n) = to
            && self.flaky.get(&n).is_some_and(|until| *until > self.now)
            && self.rng.chance(500)
        {
            return;
        }
        let delay = if self.rng.chance(20) {
            self.rng.millis(50, 400)
        } else {
            self.rng.millis(0, 3)
        };
        self.seq += 1;
        self.parcels.push(Parcel {
            at: self.now + delay,
            seq: self.seq,
            from,
            to,
            deliver,
        });
    }

    /// Cuts `node` off until `until`; its links flap for a few seconds after.
    pub(crate) fn cut_off(&mut self, node: usize, until: Duration) {
        self.cut.insert(node, until);
        self.flaky.insert(node, until + Duration::from_secs(3));
    }

    /// Ends `node`'s cut at `at` if it was to last longer.
    pub(crate) fn heal_at(&mut self, node: usize, at: Duration) {
        if self.cut.get(&node).is_some_and(|until| *until > at) {
            self.cut_off(node, at);
        }
    }

    pub(crate) fn is_cut(&self, place: Place) -> bool {
        match place {
            Place::Node(n) => self.cut.get(&n).is_some_and(|until| *until > self.now),
            _ => false,
        }
    }

    /// The next parcel due by `now`, in order of arrival (its sequence breaks ties); one from
    /// or to a node cut off is lost.
    pub(crate) fn take_due(&mut self) -> Option<Parcel> {
        loop {
            let (i, _) = self
                .parcels
                .iter()
                .enumerate()
                .filter(|(_, p)| p.at <= self.now)
                .min_by_key(|(_, p)| (p.at, p.seq))?;
            let parcel = self.parcels.swap_remove(i);
            if self.is_cut(parcel.from) || self.is_cut(parcel.to) {
                continue;
            }
            return Some(parcel);
        }
    }

    pub(crate) fn next_at(&self) -> Option<Duration> {
        self.parcels.iter().map(|p| p.at).min()
    }
}

pub(crate) fn addr(node: usize) -> SocketAddrV4 {
    SocketAddrV4::new([127, 0, 0, 1].into(), 40_000 + node as u16)
}

pub(crate) fn node_of(a: SocketAddrV4) -> usize {
    usize::from(a.port() - 40_000)
}

/// A callback that must be called once (the [`Peers`] contract): by its answer, or with a
/// failure once the call timed out (the link's `PREPARE_TIMEOUT`), whichever comes first.
pub(crate) struct Once<T>(Arc<Mutex<Option<Callback<T>>>>);

pub(crate) type Callback<T> = Box<dyn FnOnce(T) + Send>;

impl<T: 'static> Once<T> {
    pub(crate) fn new(
        net: &mut Net,
        timeout: Duration,
        failed: T,
        done: Box<dyn FnOnce(T) + Send>,
    ) -> Self
    where
        T: Send,
    {
        let slot = Arc::new(Mutex::new(Some(done)));
        let expired = Arc::clone(&slot);
        net.seq += 1;
        let seq = net.seq;
        net.parcels.push(Parcel {
            at: net.now + timeout,
            seq,
            from: Place::Timer,
            to: Place::Timer,
            deliver: Box::new(move |_| {
                if let Some(done) = expired.lock().expect("once").take() {
                    done(failed)
                }
            }),
        });
        Once(slot)
    }

    pub(crate) fn call(&self, value: T) {
        if let Some(done) = self.0.lock().expect("once").take() {
            done(value)
        }
    }
}

/// How long a call between nodes waits for its answer (the link's `PREPARE_TIMEOUT`).
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// How a node's replicas reach the others and the meta: through the simulated network.
pub(crate) struct SimPeers {
    pub(crate) me: usize,
    pub(crate) net: Arc<Mutex<Net>>,
    pub(crate) root: PathBuf,
}

impl SimPeers {
    pub(crate) fn send(&self, to: Place, deliver: Deliver) {
        self.net
            .lock()
            .expect("net")
            .send(Place::Node(self.me), to, deliver);
    }
}

impl Peers for SimPeers {
    fn prepare(&self, to: SocketAddrV4, request: PrepareRequest, done: PrepareDone) {
        let (me, to) = (self.me, node_of(to));
        let done = Once::new(&mut self.net.lock().expect("net"), CALL_TIMEOUT, None, done);
        self.send(
            Place::Node(to),
            Box::new(move |w: &World| {
                let Some(p) = w.stub(to).and_then(|s| s.partition(request.pid)) else {
                    return;
                };
                let net = Arc::clone(&w.net);
                p.prepare(
                    addr(me),
                    request,
                    Box::new(move |answer| {
                        if let Some(answer) = answer {
                            net.lock().expect("net").send(
                                Place::Node(to),
                                Place::Node(me),
                                Box::new(move |_| done.call(Some(answer))),
                            );
                        }
                    }),
                );
            }),
        );
    }

    fn learn_add(&self, to: SocketAddrV4, request: LearnAddRequest) {
        let (me, to) = (self.me, node_of(to));
        self.send(
            Place::Node(to),
            Box::new(move |w: &World| {
                if let Some(stub) = w.stub(to) {
                    let _ = stub.learn_from(addr(me), request);
                }
            }),
        );
    }

    fn learn_done(&self, to: SocketAddrV4, request: LearnDoneRequest) {
        let (me, to) = (self.me, node_of(to));
        self.send(
            Place::Node(to),
            Box::new(move |w: &World| {
                if let Some(p) = w.stub(to).and_then(|s| s.partition(request.pid)) {
                    p.learn_done(addr(me), request);
                }
            }),
        );
    }

    fn learn(&self, from: SocketAddrV4, request: LearnRequest, dest: PathBuf, done: CopyDone) {
        let (me, from) = (self.me, node_of(from));
        // The link gives a copy the time its files take; here they are small.
        let done = Once::new(
            &mut self.net.lock().expect("net"),
            CALL_TIMEOUT * 4,
            Err("the copy timed out".into()),
            done,
        );
        let wire = self.root.join("wire");
        self.send(
            Place::Node(from),
            Box::new(move |w: &World| {
                let net = Arc::clone(&w.net);
                let back = move |deliver: Deliver| {
                    net.lock()
                        .expect("net")
                        .send(Place::Node(from), Place::Node(me), deliver)
                };
                let Some(p) = w.stub(from).and_then(|s| s.partition(request.pid)) else {
                    return back(Box::new(move |_| done.call(Err("no such replica".into()))));
                };
                let seq = w.net.lock().expect("net").seq;
                p.checkpoint(
                    request,
                    Box::new(move |copy| {
                        // The checkpoint's files go on the wire now: the primary may remove
                        // them once the learner has them, or at its next ballot.
                        let copy = match copy {
                            Ok((Some(dir), decree, tail)) => {
                                let staged = wire.join(format!("{from}-{seq}"));
                                copy_dir(&dir, &staged)
                                    .map(|()| (Some(staged), decree, tail))
                                    .map_err(|e| format!("copying the checkpoint: {e}"))
                            }
                            other => other,
                        };
                        back(Box::new(move |_| {
                            let copy = copy.and_then(|(dir, decree, tail)| match dir {
                                Some(staged) => {
                                    let _ = std::fs::remove_dir_all(&dest);
                                    std::fs::create_dir_all(dest.parent().expect("parent"))
                                        .and_then(|()| std::fs::rename(&staged, &dest))
                                        .map(|()| (Some(dest), decree, tail))
                                        .map_err(|e| format!("placing the copy: {e}"))
                                }
                                None => Ok((None, decree, tail)),
                            });
                            done.call(copy)
                        }))
                    }),
                );
            }),
        );
    }

    fn update(&self, gpid: Gpid, ballot: u64, node: SocketAddrV4, kind: i32) {
        let me = self.me;
        // To every meta: only the leader takes it up.
        for m in 0..METAS {
            self.send(
                Place::Meta(m),
                Box::new(move |w: &World| {
                    let mut meta = w.meta(m);
                    if meta.is_leader(w.now) {
                        meta.work.push_back(Work::Update {
                            from: me,
                            gpid,
                            ballot,
                            node,
                            kind,
                        })
                    }
                }),
            );
        }
    }
}

pub(crate) fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}
