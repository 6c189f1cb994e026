//! The clients: writers of increasing values, one key at a time per partition, and readers,
//! each routed by the meta's published view as last queried; their history, checked.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pegasus_protocol::key;
use pegasus_protocol::types::{Blob, Gpid, UpdateRequest};
use pegasus_server::replica::write::WriteOp;

use crate::net::{Parcel, Place, node_of};
use crate::{CLIENT_TIMEOUT, PARTITIONS, World};

/// One key's history, written by one client at a time.
#[derive(Default)]
pub(crate) struct KeyHistory {
    /// The highest value sent.
    pub(crate) sent: u64,
    /// Values acknowledged, with when.
    pub(crate) acked: Vec<(Duration, u64)>,
    /// A write's outcome is unknown (timed out): no more writes to it.
    pub(crate) abandoned: bool,
    /// A write is in flight.
    pub(crate) busy: bool,
}

impl KeyHistory {
    pub(crate) fn acked_by(&self, t: Duration) -> u64 {
        self.acked
            .iter()
            .filter(|(at, _)| *at <= t)
            .map(|(_, v)| *v)
            .max()
            .unwrap_or(0)
    }
}

#[derive(Default)]
pub(crate) struct History {
    pub(crate) keys: BTreeMap<(i32, u64), KeyHistory>,
    pub(crate) violations: Vec<String>,
    pub(crate) acked: u64,
    pub(crate) failed: u64,
    pub(crate) reads: u64,
}

impl World {
    /// Clients: each partition has one writer at a time, to a key of its own; a read of a
    /// random key now and then.
    pub(crate) fn client_step(&self) {
        let (write, pidx) = {
            let mut rng = self.rng();
            (rng.chance(700), rng.below(PARTITIONS as u64) as i32)
        };
        let gpid = Gpid::new(1, pidx);
        // Now and then a client that just started: it asks the meta first (writers and
        // readers otherwise keep the routes they were given until an error or a timeout).
        if self.rng().chance(50) {
            self.refresh_route(
                if write {
                    &self.routes
                } else {
                    &self.read_routes
                },
                pidx,
            );
        }
        let routes = if write {
            &self.routes
        } else {
            &self.read_routes
        };
        let route = routes.lock().expect("routes").get(&pidx).copied();
        let Some(primary) = route else {
            self.refresh_route(routes, pidx);
            return;
        };
        let node = node_of(primary);
        let sent_at = self.now;
        if write {
            let (k, value) = {
                let mut h = self.history.lock().expect("history");
                let k = (0..)
                    .find(|k| h.keys.get(&(pidx, *k)).is_none_or(|key| !key.abandoned))
                    .expect("a key");
                let key = h.keys.entry((pidx, k)).or_default();
                if key.busy {
                    return;
                }
                key.busy = true;
                key.sent += 1;
                (k, key.sent)
            };
            self.net.lock().expect("net").send(
                Place::Client,
                Place::Node(node),
                Box::new(move |w: &World| w.serve_write(node, gpid, k, value)),
            );
            // Not answered in time: the outcome stays unknown, the key is left alone, and the
            // route is asked again (as a Pegasus client does on a timeout).
            self.net.lock().expect("net").parcels.push(Parcel {
                at: sent_at + CLIENT_TIMEOUT,
                seq: u64::MAX,
                from: Place::Timer,
                to: Place::Timer,
                deliver: Box::new(move |w: &World| {
                    let mut h = w.history.lock().expect("history");
                    let key = h.keys.get_mut(&(pidx, k)).expect("key");
                    if key.busy && key.sent == value {
                        key.busy = false;
                        key.abandoned = true;
                        drop(h);
                        w.refresh_route(&w.routes, pidx);
                    }
                }),
            });
        } else {
            // Half the reads are of the key being written now (where a stale read shows),
            // the others of any key written before.
            let k = {
                let h = self.history.lock().expect("history");
                let used = h.keys.range((pidx, 0)..(pidx + 1, 0)).count() as u64;
                drop(h);
                let mut rng = self.rng();
                if rng.chance(500) {
                    used.saturating_sub(1)
                } else {
                    rng.below(used.max(1))
                }
            };
            self.net.lock().expect("net").send(
                Place::Client,
                Place::Node(node),
                Box::new(move |w: &World| w.serve_read(node, gpid, k, sent_at)),
            );
        }
    }

    pub(crate) fn refresh_route(&self, routes: &Mutex<BTreeMap<i32, SocketAddrV4>>, pidx: i32) {
        // Asked of the metas: the leader answers from its published view.
        let primary = self
            .leader()
            .and_then(|m| self.meta(m).view[&1].partitions[pidx as usize].primary_addr());
        let mut routes = routes.lock().expect("routes");
        match primary {
            Some(p) => routes.insert(pidx, p),
            None => routes.remove(&pidx),
        };
    }

    pub(crate) fn serve_write(&self, node: usize, gpid: Gpid, k: u64, value: u64) {
        let served = self.stub(node).map(|s| s.serves(gpid, true));
        let net = Arc::clone(&self.net);
        let done = move |ok: bool| {
            net.lock().expect("net").send(
                Place::Node(node),
                Place::Client,
                Box::new(move |w: &World| w.write_answered(gpid.partition_index, k, value, ok)),
            );
        };
        match served {
            Some(Ok(p)) => p.submit(
                WriteOp::Put(UpdateRequest {
                    key: Blob(key_bytes(gpid.partition_index, k).into()),
                    value: Blob(value.to_be_bytes().to_vec().into()),
                    expire_ts_seconds: 0,
                }),
                Box::new(move |r| done(r.is_ok())),
            ),
            Some(Err(_)) => done(false),
            None => {}
        }
    }

    pub(crate) fn write_answered(&self, pidx: i32, k: u64, value: u64, ok: bool) {
        let mut h = self.history.lock().expect("history");
        let key = h.keys.get_mut(&(pidx, k)).expect("key");
        if !key.busy || key.sent != value {
            // Answered after the client gave up on it.
            return;
        }
        key.busy = false;
        self.trace(|| {
            format!(
                "write {pidx}.{k} = {value}: {}",
                if ok { "acknowledged" } else { "refused" }
            )
        });
        if ok {
            key.acked.push((self.now, value));
            h.acked += 1;
        } else {
            // Refused before it was proposed (not the primary, no lease, busy): never applied.
            h.failed += 1;
            drop(h);
            self.refresh_route(&self.routes, pidx);
        }
    }

    pub(crate) fn serve_read(&self, node: usize, gpid: Gpid, k: u64, sent_at: Duration) {
        let Some(stub) = self.stub(node) else {
            return;
        };
        let value = match stub.serves(gpid, false) {
            Ok(p) => {
                let Some(store) = p.storage() else {
                    return;
                };
                match store.get(&key_bytes(gpid.partition_index, k), 0) {
                    Ok(v) => v.map_or(0, |v| {
                        u64::from_be_bytes(v[..8].try_into().expect("8 bytes"))
                    }),
                    Err(_) => return,
                }
            }
            Err(_) => {
                self.refresh_route(&self.read_routes, gpid.partition_index);
                return;
            }
        };
        let pidx = gpid.partition_index;
        self.net.lock().expect("net").send(
            Place::Node(node),
            Place::Client,
            Box::new(move |w: &World| w.read_answered(node, pidx, k, value, sent_at)),
        );
    }

    pub(crate) fn read_answered(
        &self,
        node: usize,
        pidx: i32,
        k: u64,
        value: u64,
        sent_at: Duration,
    ) {
        let mut h = self.history.lock().expect("history");
        h.reads += 1;
        let Some(key) = h.keys.get(&(pidx, k)) else {
            return;
        };
        let (floor, sent) = (key.acked_by(sent_at), key.sent);
        self.trace(|| format!("read {pidx}.{k} = {value} from node {node} (sent {sent_at:?})"));
        if value < floor {
            let v = format!(
                "stale read: key {pidx}.{k} read {value} from node {node} at {:?}, but {floor} was \
                 acknowledged before the read was sent at {sent_at:?}",
                self.now
            );
            h.violations.push(v);
        } else if value > sent {
            let v = format!("key {pidx}.{k} read {value}, never written (last sent {sent})");
            h.violations.push(v);
        }
    }
}

pub(crate) fn key_bytes(pidx: i32, k: u64) -> Vec<u8> {
    key::encode_key(format!("p{pidx}k{k}").as_bytes(), b"").expect("a short key")
}
