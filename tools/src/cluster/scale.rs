//! `scale-out` and `scale-in`: replica servers added and balanced, or drained and removed.
//!
//! Scale-out deploys and starts the new instances of a larger topology, then lets the meta's
//! balancer (level `lively` for the plan's length) spread copies and primaries over them until
//! every table's counts differ by at most one between nodes. Scale-in drains a replica server
//! first — its primaries handed over (`move_primary`), each of its copies learned by another
//! node before it replaces this one (`copy_secondary`), so no partition is ever short of a copy
//! — then stops it, removes its unit and folders, and takes it out of the topology file.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pegasus_client::Client;
use pegasus_protocol::types::QueryCfgResponse;

use super::fleet::Fleet;
use super::layout::Layout;
use super::rolling::{RollingError, routing};
use super::ssh::quote;
use super::topology::{Instance, Role};

/// How long draining a node, or balancing new ones, may take.
pub const MOVES_WITHIN: Duration = Duration::from_secs(600);
/// A move not done after this is proposed again.
const REPROPOSE: Duration = Duration::from_secs(10);

/// Copies (primaries + secondaries) per node over `tables`, and primaries per node.
fn loads(
    tables: &[QueryCfgResponse],
) -> (HashMap<SocketAddrV4, usize>, HashMap<SocketAddrV4, usize>) {
    let mut copies = HashMap::new();
    let mut primaries = HashMap::new();
    for p in tables.iter().flat_map(|t| &t.partitions) {
        if let Some(a) = p.primary.socket_addr() {
            *copies.entry(a).or_default() += 1;
            *primaries.entry(a).or_default() += 1;
        }
        for s in p.secondaries.iter().filter_map(|s| s.socket_addr()) {
            *copies.entry(s).or_default() += 1;
        }
    }
    (copies, primaries)
}

/// What [`drain`] moves off a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drain {
    /// Its primaries, handed to its secondaries (before a restart).
    Primaries,
    /// Every copy, its primaries first (before it leaves the cluster).
    Copies,
}

/// Moves `what` off `node` onto `targets`, proposing each move to the meta (again after a
/// while if it did not happen), until none is left and every partition has a primary;
/// `progress` hears how many are left. How many moves were proposed.
pub fn drain(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    node: SocketAddrV4,
    targets: &[SocketAddrV4],
    what: Drain,
    interrupted: &AtomicBool,
    progress: &mut dyn FnMut(&str),
) -> Result<usize, RollingError> {
    let start = Instant::now();
    let mut proposed: HashMap<(i32, i32), Instant> = HashMap::new();
    let mut last_said = None;
    loop {
        let tables = routing(rt, client).map_err(RollingError::Failed)?;
        let (copies, primaries) = loads(&tables);
        let (left, noun) = match what {
            Drain::Primaries => (primaries.get(&node).copied().unwrap_or(0), "primaries"),
            Drain::Copies => (copies.get(&node).copied().unwrap_or(0), "copies"),
        };
        if last_said != Some(left) {
            progress(&format!("replica {node}: {left} {noun} left"));
            last_said = Some(left);
        }
        let headless = tables
            .iter()
            .flat_map(|t| &t.partitions)
            .any(|p| p.primary.socket_addr().is_none());
        if left == 0 && !headless {
            return Ok(proposed.len());
        }
        for p in tables.iter().flat_map(|t| &t.partitions) {
            let key = (p.pid.app_id, p.pid.partition_index);
            if proposed
                .get(&key)
                .is_some_and(|at| at.elapsed() < REPROPOSE)
            {
                continue;
            }
            let secondaries: Vec<SocketAddrV4> = p
                .secondaries
                .iter()
                .filter_map(|s| s.socket_addr())
                .collect();
            let Some(primary) = p.primary.socket_addr() else {
                continue;
            };
            let asked = if primary == node {
                // Its primary first: to the secondary with the fewest primaries.
                secondaries
                    .iter()
                    .filter(|s| targets.contains(s))
                    .min_by_key(|s| primaries.get(s).copied().unwrap_or(0))
                    .map(|to| rt.block_on(client.move_primary(p.pid, node, *to)))
            } else if what == Drain::Copies && secondaries.contains(&node) {
                // Its copy: learned by the node with the fewest copies that lacks one.
                targets
                    .iter()
                    .filter(|t| **t != primary && !secondaries.contains(t))
                    .min_by_key(|t| copies.get(t).copied().unwrap_or(0))
                    .map(|to| rt.block_on(client.copy_secondary(p.pid, primary, node, *to)))
            } else {
                continue;
            };
            if let Some(result) = asked {
                proposed.insert(key, Instant::now());
                if let Err(e) = result {
                    eprintln!("moving {}.{} off {node}: {e}", key.0, key.1);
                }
            }
        }
        give_up_after(start, MOVES_WITHIN, interrupted, || {
            format!("{node} still holds {left} {noun}")
        })?;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `Err` once `interrupted` is set, or `within` has passed since `start` (with `why`).
pub fn give_up_after(
    start: Instant,
    within: Duration,
    interrupted: &AtomicBool,
    why: impl FnOnce() -> String,
) -> Result<(), RollingError> {
    if interrupted.load(Ordering::Acquire) {
        return Err(RollingError::Interrupted);
    }
    if start.elapsed() > within {
        return Err(RollingError::Failed(format!("{} after {within:?}", why())));
    }
    Ok(())
}

/// Waits until every table's copies and primaries differ by at most one between `nodes`.
pub fn wait_balanced(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    nodes: &[SocketAddrV4],
    interrupted: &AtomicBool,
    progress: &mut dyn FnMut(&str),
) -> Result<(), RollingError> {
    let start = Instant::now();
    let mut last_said = String::new();
    loop {
        let tables = routing(rt, client).map_err(RollingError::Failed)?;
        let mut even = true;
        let mut summary = Vec::new();
        for t in &tables {
            let (copies, primaries) = loads(std::slice::from_ref(t));
            let spread = |m: &HashMap<SocketAddrV4, usize>| {
                let counts: Vec<usize> = nodes
                    .iter()
                    .map(|n| m.get(n).copied().unwrap_or(0))
                    .collect();
                (
                    counts.iter().min().copied().unwrap_or(0),
                    counts.iter().max().copied().unwrap_or(0),
                )
            };
            let (cmin, cmax) = spread(&copies);
            let (pmin, pmax) = spread(&primaries);
            let healthy = t.partitions.iter().all(|p| {
                p.primary.socket_addr().is_some()
                    && p.secondaries.len() + 1 >= p.max_replica_count as usize
            });
            even &= cmax - cmin <= 1 && pmax - pmin <= 1 && healthy;
            summary.push(format!(
                "copies {cmin}..{cmax} primaries {pmin}..{pmax} per node"
            ));
        }
        let said = summary.join("; ");
        if said != last_said {
            progress(&format!("balancing: {said}"));
            last_said = said;
        }
        if even {
            return Ok(());
        }
        give_up_after(start, MOVES_WITHIN, interrupted, || {
            format!("not balanced ({last_said})")
        })?;
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Scale-in's step for replica server `i`: drained, stopped, its unit and folders removed.
pub fn remove_replica(
    fleet: &Fleet,
    rt: &tokio::runtime::Runtime,
    client: &Client,
    i: &Instance,
    interrupted: &AtomicBool,
    progress: &mut dyn FnMut(&str),
) -> Result<(), RollingError> {
    let topology = &fleet.topology;
    let node = v4(i)?;
    let targets: Vec<SocketAddrV4> = topology
        .of(Role::Replica)
        .filter(|r| r.addr() != i.addr())
        .map(v4)
        .collect::<Result<_, _>>()?;
    drain(
        rt,
        client,
        node,
        &targets,
        Drain::Copies,
        interrupted,
        progress,
    )?;
    let unit = Layout::unit(topology, i);
    let mut dirs: Vec<String> = Layout::writable(topology, i);
    dirs.push(Layout::unit_path(topology, i));
    fleet.remote(&i.host).run(&format!(
        "systemctl disable --now {unit} >/dev/null 2>&1 || true; rm -rf {}; systemctl daemon-reload; \
         systemctl reset-failed >/dev/null 2>&1 || true",
        dirs.iter().map(|d| quote(d)).collect::<Vec<_>>().join(" ")
    ))?;
    progress(&format!(
        "replica {node}: stopped, its unit and folders removed"
    ));
    Ok(())
}

fn v4(i: &Instance) -> Result<SocketAddrV4, RollingError> {
    match std::net::SocketAddr::new(i.ip, i.port) {
        std::net::SocketAddr::V4(a) => Ok(a),
        std::net::SocketAddr::V6(_) => Err(RollingError::Failed(format!(
            "{} is not an IPv4 address",
            i.addr()
        ))),
    }
}

/// The replica servers of the topology, as the metas know them.
pub fn replica_addrs(fleet: &Fleet) -> Result<Vec<SocketAddrV4>, RollingError> {
    fleet.topology.of(Role::Replica).map(v4).collect()
}

/// Removes the `[[replica]]` table of `addr` (`host:port` or `ip:port`) from topology text,
/// keeping every other byte (comments, layout); `None` if no such instance is there.
pub fn without_replica(
    text: &str,
    topology: &super::topology::Topology,
    addr: &str,
) -> Option<String> {
    let target = topology
        .of(Role::Replica)
        .position(|i| i.addr() == addr || format!("{}:{}", i.host, i.port) == addr)?;
    let mut doc: toml_edit::DocumentMut = text.parse().ok()?;
    let replicas = doc.get_mut("replica")?.as_array_of_tables_mut()?;
    replicas.remove(target);
    Some(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_is_taken_out_of_the_topology_and_nothing_else_changes() {
        let resolve = |h: &str| h.parse().ok();
        let text = &super::super::topology::TEMPLATE.replace("copies = 3", "copies = 2");
        let t = super::super::topology::parse("t.toml", text, &resolve).unwrap();
        let out = without_replica(text, &t, "10.0.0.5:34801").unwrap();
        let after = super::super::topology::parse("t.toml", &out, &resolve).unwrap();
        assert_eq!(
            after.of(Role::Replica).count(),
            t.of(Role::Replica).count() - 1
        );
        assert!(after.find("10.0.0.5:34801").is_none());
        assert!(
            out.contains("# A Pegasus cluster for `pegasus_cluster`"),
            "comments stay"
        );
        assert!(without_replica(text, &t, "10.9.9.9:1").is_none());
    }
}
