//! The balancer, and the moves an operator proposes (`move_primary`, `copy_secondary`): which
//! primaries and copies move where, and the moves under way. Moves change membership through
//! the same configuration changes as the cure, so a partition never has fewer copies than
//! wanted and never two primaries that serve.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use pegasus_protocol::types::Gpid;

use super::{Changed, Cluster};

/// How long a balancer's copy may take to learn before the move is given up.
const COPY_PATIENCE: Duration = Duration::from_secs(120);

/// How often a balancer's copy is proposed again to the primary while it has not learned (a
/// proposal can be lost, or come to a primary not serving yet).
const COPY_REPROPOSE: Duration = Duration::from_secs(5);

/// What a balancer round decided: primaries stepping down (configuration changes), and copies
/// to make (`(partition, primary, learner)` proposals, ADD_SECONDARY as for a short partition).
#[derive(Debug, Default)]
pub struct Balance {
    /// First steps of primary moves.
    pub moves: Vec<Changed>,
    /// Copies to learn.
    pub copies: Vec<(Gpid, SocketAddrV4, SocketAddrV4)>,
}

impl Cluster {
    /// Pegasus's `move_primary` proposal: `from`, `gpid`'s primary, hands it to `to`, one of its
    /// serving secondaries, in the balancer's two steps ([`Cluster::balance`]): it steps down
    /// now, and `to` is promoted once every member runs that ballot.
    pub fn move_primary(
        &mut self,
        gpid: Gpid,
        from: SocketAddrV4,
        to: SocketAddrV4,
    ) -> Result<Changed, &'static str> {
        let p = self.partition(gpid).ok_or("no such partition")?;
        if p.primary_addr() != Some(from) {
            return Err("the node to move from is not its primary");
        }
        if !p.secondary_addrs().contains(&to) {
            return Err("the node to move to is not one of its secondaries");
        }
        if !self.serves(&to, gpid) {
            return Err("the node to move to does not serve it (dead, lost or lossy)");
        }
        if self.moving.contains_key(&gpid) {
            return Err("its primary is moving already");
        }
        Ok(self.step_down(gpid, to))
    }

    /// Primary moves under way.
    pub fn moves(&self) -> usize {
        self.moving.len()
    }

    /// How evenly primaries, and all copies, are spread over the alive nodes: the standard
    /// deviations of their counts per node (Pegasus's cluster balance score).
    pub fn balance_score(&self) -> (f64, f64) {
        let counts: Vec<(usize, usize)> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.alive)
            .map(|(a, _)| self.role_counts(a))
            .collect();
        let stddev = |xs: &[f64]| {
            if xs.is_empty() {
                return 0.0;
            }
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64).sqrt()
        };
        let primaries: Vec<f64> = counts.iter().map(|c| c.0 as f64).collect();
        let totals: Vec<f64> = counts.iter().map(|c| (c.0 + c.1) as f64).collect();
        (stddev(&primaries), stddev(&totals))
    }

    /// Moves under way (the balancer's or an operator's proposals): those done or given up are
    /// forgotten; copies still learning are proposed again now and then (`(partition, primary,
    /// learner)`, as ADD_SECONDARY proposals).
    pub fn moves_in_flight(&mut self, now: Instant) -> Vec<(Gpid, SocketAddrV4, SocketAddrV4)> {
        let mut out = Vec::new();
        let done: Vec<Gpid> = self
            .moving
            .keys()
            .copied()
            .filter(|g| self.partition(*g).is_none_or(|p| !p.primary.is_empty()))
            .collect();
        for g in done {
            self.moving.remove(&g);
        }
        let copied: Vec<Gpid> = self
            .copying
            .iter()
            .filter(|(g, (from, to, since, _))| {
                self.partition(**g)
                    .is_none_or(|p| p.has_member(*to) || !p.has_member(*from))
                    || now.duration_since(*since) > COPY_PATIENCE
            })
            .map(|(g, _)| *g)
            .collect();
        for g in copied {
            self.copying.remove(&g);
        }
        for (gpid, (_, to, _, proposed)) in &mut self.copying {
            let primary = self
                .apps
                .get(&gpid.app_id)
                .and_then(|a| a.partitions.get(gpid.partition_index as usize))
                .and_then(|p| p.primary_addr());
            if let Some(primary) = primary
                && now.duration_since(*proposed) >= COPY_REPROPOSE
            {
                *proposed = now;
                out.push((*gpid, primary, *to));
            }
        }
        out
    }

    /// Pegasus's `copy_secondary` proposal: `to` learns `gpid` from its primary, and its upgrade
    /// replaces the secondary `from` in one change (as the balancer moves a copy), so the
    /// partition never has fewer copies than wanted. The primary, to propose the learner to.
    pub fn copy_secondary(
        &mut self,
        gpid: Gpid,
        from: SocketAddrV4,
        to: SocketAddrV4,
        now: Instant,
    ) -> Result<SocketAddrV4, &'static str> {
        let p = self.partition(gpid).ok_or("no such partition")?;
        let primary = p.primary_addr().ok_or("it has no primary")?;
        if !p.secondary_addrs().contains(&from) {
            return Err("the node to copy from is not one of its secondaries");
        }
        if p.has_member(to) {
            return Err("the node to copy to is a member already");
        }
        if !self.may_learn(&to, gpid) {
            return Err("the node to copy to cannot learn it (dead, or it lost it)");
        }
        if self.copying.contains_key(&gpid) || self.moving.contains_key(&gpid) {
            return Err("it is moving already");
        }
        self.copying.insert(gpid, (from, to, now, now));
        Ok(primary)
    }

    /// The balancer (meta level `lively`): when every partition is fully healthy and no move
    /// is under way, it evens out, per table, first the primaries, then the copies, over the
    /// alive nodes, until counts differ by at most one, at most `max_moves` at a time
    /// (`balance_op_count_per_round`).
    ///
    /// - A primary moves in two steps, as Pegasus's `move_primary`: here it steps down (the
    ///   partition keeps every member, without a primary, under the next ballot);
    ///   [`Cluster::assign`] promotes the chosen secondary once every member runs that ballot,
    ///   so the old primary serves no read after the new one took a write.
    /// - A copy moves as Pegasus's `copy_secondary`: the node with the fewest copies learns the
    ///   partition from its primary; its upgrade replaces the secondary on the node with the
    ///   most in one change ([`Cluster::upgrade`]), so the partition never has fewer copies than
    ///   wanted; that node then deletes its copy.
    pub fn balance(&mut self, max_moves: usize, now: Instant) -> Balance {
        let mut out = Balance {
            copies: self.moves_in_flight(now),
            ..Balance::default()
        };
        if !self.moving.is_empty() || !self.copying.is_empty() {
            return out;
        }
        let apps: Vec<i32> = self
            .apps
            .values()
            .filter(|a| a.info.available())
            .map(|a| a.info.app_id)
            .collect();
        let healthy = apps.iter().all(|id| {
            self.apps[id].partitions.iter().enumerate().all(|(i, p)| {
                let gpid = Gpid::new(*id, i as i32);
                p.primary_addr().is_some_and(|a| self.serves(&a, gpid))
                    && p.secondary_addrs().iter().all(|s| self.serves(s, gpid))
                    && 1 + p.secondaries.len() >= p.max_replica_count.max(1) as usize
            })
        });
        if !healthy {
            return out;
        }
        let alive: Vec<SocketAddrV4> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.alive)
            .map(|(a, _)| *a)
            .collect();
        for &app_id in &apps {
            let mut counts = self.load(app_id, &alive, false);
            while out.moves.len() < max_moves {
                let Some(path) = self.primary_path(app_id, &counts) else {
                    break;
                };
                if out.moves.len() + path.len() > max_moves && !out.moves.is_empty() {
                    break;
                }
                let (first, _) = path[0];
                let from = self.partition(first).and_then(|p| p.primary_addr());
                let (_, last) = path[path.len() - 1];
                for (gpid, to) in path {
                    out.moves.push(self.step_down(gpid, to));
                }
                *counts.get_mut(&from.expect("led")).expect("counted") -= 1;
                *counts.get_mut(&last).expect("counted") += 1;
            }
        }
        if !out.moves.is_empty() {
            return out;
        }
        for &app_id in &apps {
            let mut counts = self.load(app_id, &alive, true);
            while out.copies.len() < max_moves {
                let Some((&hi, &most)) = counts.iter().max_by_key(|(a, c)| (**c, **a)) else {
                    break;
                };
                // A partition with a secondary on the most loaded node, and a node with at
                // least two copies fewer that is no member of it (the least loaded first).
                let app = &self.apps[&app_id];
                let candidate = app
                    .partitions
                    .iter()
                    .enumerate()
                    .filter(|(i, p)| {
                        p.secondary_addrs().contains(&hi)
                            && !self.copying.contains_key(&Gpid::new(app_id, *i as i32))
                    })
                    .flat_map(|(i, p)| {
                        counts
                            .iter()
                            .filter(|(a, c)| **c + 1 < most && !p.has_member(**a))
                            .map(move |(a, c)| (*c, *a, i))
                    })
                    .min();
                let Some((_, lo, pidx)) = candidate else {
                    break;
                };
                let gpid = Gpid::new(app_id, pidx as i32);
                let primary = app.partitions[pidx].primary_addr().expect("healthy");
                self.copying.insert(gpid, (hi, lo, now, now));
                self.retired.remove(&(lo, gpid));
                out.copies.push((gpid, primary, lo));
                *counts.get_mut(&hi).expect("counted") -= 1;
                *counts.get_mut(&lo).expect("counted") += 1;
            }
        }
        if out.copies.is_empty() {
            // Copies uneven, but every copy that could move is a primary (the most loaded
            // node leads each partition the least loaded one lacks): it steps aside for a
            // secondary with fewer primaries, and its copy, a secondary now, moves next.
            for &app_id in &apps {
                if let Some((gpid, to)) = self.primary_in_the_way(app_id, &alive) {
                    out.moves.push(self.step_down(gpid, to));
                    break;
                }
            }
        }
        out
    }

    /// A chain of primary moves that takes one primary of table `app_id` off a node with the
    /// most (`counts`) and gives one to a node with at least two fewer, every node in between
    /// keeping its count: `(partition, secondary to promote)`, each partition led by the node
    /// the previous one promotes. The shortest chain to the least loaded node reachable, as
    /// Pegasus's flow-based primary balancer finds augmenting paths (one hop when the most
    /// loaded node leads a partition of the least loaded one).
    fn primary_path(
        &self,
        app_id: i32,
        counts: &BTreeMap<SocketAddrV4, usize>,
    ) -> Option<Vec<(Gpid, SocketAddrV4)>> {
        // Edges: a node leads a partition that has a secondary on the other node.
        let mut edges: BTreeMap<SocketAddrV4, Vec<(Gpid, SocketAddrV4)>> = BTreeMap::new();
        for (i, p) in self.apps[&app_id].partitions.iter().enumerate() {
            let gpid = Gpid::new(app_id, i as i32);
            if let Some(primary) = p.primary_addr()
                && !self.moving.contains_key(&gpid)
            {
                for s in p.secondary_addrs() {
                    if counts.contains_key(&s) {
                        edges.entry(primary).or_default().push((gpid, s));
                    }
                }
            }
        }
        let mut sources: Vec<(usize, SocketAddrV4)> =
            counts.iter().map(|(a, c)| (*c, *a)).collect();
        sources.sort_by(|a, b| b.cmp(a));
        for (most, source) in sources {
            // Breadth first from `source`: how each node was reached.
            let mut reached: BTreeMap<SocketAddrV4, Option<(Gpid, SocketAddrV4)>> =
                BTreeMap::from([(source, None)]);
            let mut frontier = vec![source];
            let mut best: Option<(usize, SocketAddrV4)> = None;
            while !frontier.is_empty() {
                let mut next = Vec::new();
                for node in frontier {
                    for &(gpid, to) in edges.get(&node).into_iter().flatten() {
                        if reached.contains_key(&to) {
                            continue;
                        }
                        reached.insert(to, Some((gpid, node)));
                        next.push(to);
                        let c = counts[&to];
                        if c + 1 < most && best.is_none_or(|b| (c, to) < b) {
                            best = Some((c, to));
                        }
                    }
                }
                if best.is_some() {
                    break;
                }
                frontier = next;
            }
            if let Some((_, target)) = best {
                let mut path = Vec::new();
                let mut at = target;
                while let Some(Some((gpid, from))) = reached.get(&at) {
                    path.push((*gpid, at));
                    at = *from;
                }
                path.reverse();
                return Some(path);
            }
        }
        None
    }

    /// First step of a primary move: `gpid`'s primary steps down, every member stays (under
    /// the next ballot), and `to` is promoted once they all run it.
    fn step_down(&mut self, gpid: Gpid, to: SocketAddrV4) -> Changed {
        let p = &mut self.apps.get_mut(&gpid.app_id).expect("app").partitions
            [gpid.partition_index as usize];
        let before = p.clone();
        let old = std::mem::take(&mut p.primary);
        p.secondaries.push(old);
        p.ballot += 1;
        self.moving.insert(gpid, to);
        Changed::new(gpid, before)
    }

    /// For table `app_id` with copies uneven: a partition whose primary is on the node with the
    /// most copies and that a node with at least two fewer lacks, and the secondary (with fewer
    /// primaries than that node, so primaries stay as even as they were) it can step aside for.
    fn primary_in_the_way(
        &self,
        app_id: i32,
        alive: &[SocketAddrV4],
    ) -> Option<(Gpid, SocketAddrV4)> {
        let copies = self.load(app_id, alive, true);
        let primaries = self.load(app_id, alive, false);
        let (&hi, &most) = copies.iter().max_by_key(|(a, c)| (**c, **a))?;
        self.apps[&app_id]
            .partitions
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                p.primary_addr() == Some(hi)
                    && copies
                        .iter()
                        .any(|(a, c)| c + 1 < most && !p.has_member(*a))
            })
            .flat_map(|(i, p)| p.secondary_addrs().into_iter().map(move |s| (i, s)))
            .filter(|(_, s)| primaries.get(s).is_some_and(|n| *n < primaries[&hi]))
            .min_by_key(|(i, s)| (primaries[s], *s, *i))
            .map(|(i, s)| (Gpid::new(app_id, i as i32), s))
    }

    /// Per node (`alive` ones at least, from 0): table `app_id`'s primaries there, or all its
    /// copies there with `copies`.
    fn load(
        &self,
        app_id: i32,
        alive: &[SocketAddrV4],
        copies: bool,
    ) -> BTreeMap<SocketAddrV4, usize> {
        let mut counts: BTreeMap<SocketAddrV4, usize> = alive.iter().map(|a| (*a, 0)).collect();
        for p in &self.apps[&app_id].partitions {
            let secondaries = if copies {
                p.secondary_addrs()
            } else {
                Vec::new()
            };
            for a in p.primary_addr().into_iter().chain(secondaries) {
                *counts.entry(a).or_default() += 1;
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{addr, cluster, report_all};
    use super::*;

    #[test]
    fn a_move_primary_proposal_goes_to_a_serving_secondary_in_two_steps_or_is_refused() {
        let mut c = cluster(&[1, 2, 3, 4], 1, 3);
        c.assign(1);
        report_all(&mut c, &[1, 2, 3, 4]);
        let g = Gpid::new(1, 0);
        let p = c.partition(g).unwrap().clone();
        let (from, to) = (p.primary_addr().unwrap(), p.secondary_addrs()[0]);
        let outsider = [1, 2, 3, 4]
            .map(addr)
            .into_iter()
            .find(|a| !p.has_member(*a))
            .unwrap();
        // Refused: from a node that is not the primary, to one that is not a secondary, to a
        // dead secondary.
        assert!(c.move_primary(g, to, from).is_err());
        assert!(c.move_primary(g, from, outsider).is_err());
        c.leave(to);
        assert!(
            c.move_primary(g, from, to).is_err(),
            "a dead secondary serves nothing"
        );
        report_all(&mut c, &[1, 2, 3, 4]);
        let changed = c.move_primary(g, from, to).unwrap();
        assert_eq!(changed.before.primary_addr(), Some(from));
        assert!(c.move_primary(g, from, to).is_err(), "it is moving already");
        let now = c.partition(g).unwrap().clone();
        assert_eq!(now.primary, "", "the primary steps down first");
        assert_eq!(now.ballot, p.ballot + 1);
        // Promoted only once every member runs the primary-less ballot.
        assert!(c.assign(1).is_empty());
        report_all(&mut c, &[1, 2, 3, 4]);
        assert_eq!(c.assign(1).len(), 1);
        assert_eq!(c.partition(g).unwrap().primary_addr(), Some(to));
    }

    #[test]
    fn a_copy_secondary_proposal_replaces_the_secondary_once_the_copy_learned() {
        let mut c = cluster(&[1, 2, 3, 4], 1, 3);
        c.assign(1);
        report_all(&mut c, &[1, 2, 3, 4]);
        c.learning.clear();
        let g = Gpid::new(1, 0);
        let p = c.partition(g).unwrap().clone();
        let from = p.secondary_addrs()[0];
        let to = [1, 2, 3, 4]
            .map(addr)
            .into_iter()
            .find(|a| !p.has_member(*a))
            .unwrap();
        assert!(
            c.copy_secondary(g, p.primary_addr().unwrap(), to, Instant::now())
                .is_err()
        );
        assert!(
            c.copy_secondary(g, from, p.secondary_addrs()[1], Instant::now())
                .is_err()
        );
        let primary = c.copy_secondary(g, from, to, Instant::now()).unwrap();
        assert_eq!(Some(primary), p.primary_addr());
        assert!(
            c.copy_secondary(g, from, to, Instant::now()).is_err(),
            "moving already"
        );
        // Proposed again while it learns.
        let later = Instant::now() + COPY_REPROPOSE;
        assert_eq!(c.moves_in_flight(later), vec![(g, primary, to)]);
        // Its upgrade replaces `from`: three copies throughout.
        let changed = c.upgrade(g, p.ballot, to).unwrap().unwrap();
        assert_eq!(changed.before.secondaries.len(), 2);
        let now = c.partition(g).unwrap();
        assert!(now.has_member(to) && !now.has_member(from));
        assert_eq!(now.secondaries.len(), 2);
        assert!(c.moves_in_flight(later).is_empty());
    }

    #[test]
    fn the_balancer_moves_primaries_in_two_steps_and_evens_them_out() {
        let mut c = cluster(&[1, 2, 3], 6, 3);
        c.assign(1);
        // Every primary on node 1 (as after nodes 2 and 3 came back from a failure).
        for p in &mut c.apps.get_mut(&1).unwrap().partitions {
            p.primary = addr(1).to_string();
            p.secondaries = vec![addr(2).to_string(), addr(3).to_string()];
        }
        report_all(&mut c, &[1, 2, 3]);
        c.learning.clear();
        let (primaries, totals) = c.balance_score();
        assert!(
            (primaries - 8f64.sqrt()).abs() < 1e-9,
            "6, 0, 0: {primaries}"
        );
        assert_eq!(totals, 0.0);
        let now = Instant::now();
        let moves = c.balance(10, now).moves;
        assert_eq!(moves.len(), 4, "6 primaries on 3 nodes: 2 each");
        assert!(c.balance(10, now).moves.is_empty(), "one round at a time");
        for m in &moves {
            let p = c.partition(Gpid::new(m.app_id, m.pidx)).unwrap();
            assert_eq!(p.primary, "", "the primary steps down first");
            assert_eq!(p.ballot, m.before.ballot + 1);
            assert_eq!(p.secondaries.len(), 3, "every member stays");
        }
        // Not promoted before every member runs the primary-less ballot (the old primary
        // could still be serving reads).
        assert!(c.assign(1).is_empty());
        report_all(&mut c, &[1, 2, 3]);
        let promoted = c.assign(1);
        assert_eq!(promoted.len(), 4);
        let counts: Vec<usize> = [1, 2, 3]
            .iter()
            .map(|n| c.role_counts(&addr(*n)).0)
            .collect();
        assert_eq!(counts, vec![2, 2, 2]);
        report_all(&mut c, &[1, 2, 3]);
        let round = c.balance(10, now);
        assert!(
            round.moves.is_empty() && round.copies.is_empty(),
            "balanced"
        );
        assert!(c.assign(1).is_empty());
    }

    #[test]
    fn the_balancer_moves_copies_to_an_empty_node_without_a_short_partition() {
        let mut c = cluster(&[1, 2, 3], 4, 3);
        c.assign(1);
        // Node 4 joins, empty: 4, 4, 4, 0 copies.
        c.beacon(addr(4), vec![], vec![], Instant::now());
        report_all(&mut c, &[1, 2, 3]);
        let now = Instant::now();
        let round = c.balance(10, now);
        assert!(round.moves.is_empty());
        assert_eq!(round.copies.len(), 3, "12 copies on 4 nodes: 3 each");
        assert!(c.balance(10, now).copies.is_empty(), "one round at a time");
        let again = c.balance(10, now + Duration::from_secs(6)).copies;
        assert_eq!(again.len(), 3, "proposed again while learning");
        for (gpid, primary, learner) in &round.copies {
            assert_eq!(*learner, addr(4));
            let p = c.partition(*gpid).unwrap().clone();
            assert_eq!(p.primary_addr(), Some(*primary));
            // The learner caught up: its upgrade replaces a secondary in one change.
            let changed = c.upgrade(*gpid, p.ballot, addr(4)).unwrap().unwrap();
            let after = c.partition(*gpid).unwrap();
            assert_eq!(after.secondaries.len(), 2, "never more or fewer copies");
            assert!(after.has_member(addr(4)));
            let from = changed
                .before
                .secondary_addrs()
                .into_iter()
                .find(|s| !after.has_member(*s))
                .unwrap();
            assert!(c.retired.contains(&(from, *gpid)));
        }
        let copies: Vec<usize> = [1, 2, 3, 4]
            .iter()
            .map(|n| {
                let (p, s) = c.role_counts(&addr(*n));
                p + s
            })
            .collect();
        assert_eq!(copies, vec![3, 3, 3, 3]);
        // The nodes the copies left are told to delete them while they still report them.
        assert_eq!(c.retired_copies().len(), 3);
        report_all(&mut c, &[4]);
        c.beacon(addr(1), vec![], vec![], Instant::now());
        c.beacon(addr(2), vec![], vec![], Instant::now());
        c.beacon(addr(3), vec![], vec![], Instant::now());
        assert!(c.retired_copies().is_empty(), "deleted, so forgotten");
    }

    /// Applies balancer rounds the way the cluster would (members run each new ballot, steps
    /// down are completed, learners catch up) until a round has nothing to do.
    fn balance_fully(c: &mut Cluster, nodes: &[u16]) -> usize {
        let mut rounds = 0;
        let mut now = Instant::now();
        loop {
            report_all(c, nodes);
            c.assign(1);
            report_all(c, nodes);
            let round = c.balance(10, now);
            if round.moves.is_empty() && round.copies.is_empty() && c.moving.is_empty() {
                return rounds;
            }
            rounds += 1;
            assert!(rounds < 20, "the balancer does not settle");
            report_all(c, nodes);
            c.assign(1);
            for (gpid, _, learner) in round.copies {
                let ballot = c.partition(gpid).unwrap().ballot;
                c.upgrade(gpid, ballot, learner).unwrap();
            }
            now += Duration::from_secs(1);
        }
    }

    fn spread(c: &Cluster, nodes: &[u16]) -> (Vec<usize>, Vec<usize>) {
        nodes
            .iter()
            .map(|n| {
                let (p, s) = c.role_counts(&addr(*n));
                (p, p + s)
            })
            .unzip()
    }

    #[test]
    fn a_primary_in_the_way_of_a_copy_move_steps_aside_first() {
        // As a cluster test once left it: node 1 has four copies and node 4 two, but node 1
        // leads both partitions node 4 lacks, so no secondary can move.
        let mut c = cluster(&[1, 2, 3, 4], 4, 3);
        c.assign(1);
        let layout = [(2, [1, 4]), (3, [1, 4]), (1, [3, 2]), (1, [3, 2])];
        for (p, (primary, secondaries)) in c
            .apps
            .get_mut(&1)
            .unwrap()
            .partitions
            .iter_mut()
            .zip(layout)
        {
            p.primary = addr(primary).to_string();
            p.secondaries = secondaries.iter().map(|s| addr(*s).to_string()).collect();
        }
        c.learning.clear();
        assert_eq!(spread(&c, &[1, 2, 3, 4]).1, vec![4, 3, 3, 2]);
        let rounds = balance_fully(&mut c, &[1, 2, 3, 4]);
        let (primaries, copies) = spread(&c, &[1, 2, 3, 4]);
        assert_eq!(copies, vec![3, 3, 3, 3], "after {rounds} rounds");
        assert!(
            primaries.iter().max().unwrap() - primaries.iter().min().unwrap() <= 1,
            "{primaries:?}"
        );
    }

    #[test]
    fn the_balancer_evens_out_any_layout() {
        // Seeded layouts: 3 copies of 4 to 12 partitions on 4 to 6 nodes, placed at random.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((seed >> 33) % n as u64) as usize
        };
        for case in 0..300 {
            let nodes: Vec<u16> = (1..=4 + next(3) as u16).collect();
            let partitions = 4 + next(9) as i32;
            let mut c = cluster(&nodes, partitions, 3);
            c.assign(1);
            for p in &mut c.apps.get_mut(&1).unwrap().partitions {
                let mut members: Vec<u16> = Vec::new();
                while members.len() < 3 {
                    let n = nodes[next(nodes.len())];
                    if !members.contains(&n) {
                        members.push(n);
                    }
                }
                p.primary = addr(members[0]).to_string();
                p.secondaries = members[1..].iter().map(|s| addr(*s).to_string()).collect();
            }
            c.learning.clear();
            let before = spread(&c, &nodes);
            let rounds = balance_fully(&mut c, &nodes);
            let (primaries, copies) = spread(&c, &nodes);
            let even = |v: &[usize]| v.iter().max().unwrap() - v.iter().min().unwrap() <= 1;
            assert!(
                even(&copies) && even(&primaries),
                "case {case}: {before:?} -> {primaries:?} {copies:?} in {rounds} rounds"
            );
        }
    }
}
