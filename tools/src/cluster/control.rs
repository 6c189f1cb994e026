//! `start`, `stop` and `display`: the deployed units under systemd, in the guide's order, and
//! what the cluster says about itself.
//!
//! `start` starts the ZooKeeper ensemble when the tool runs it (until every member serves in
//! its quorum) and checks ZooKeeper, then starts the metas, the replica servers and the
//! collector, each group only once the one before is healthy (`GET /health`), and waits until
//! the meta leader sees every replica server alive. A unit that does not become healthy stops
//! the start, with its last log lines (the guide's "check the logs"). `stop` goes in reverse.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pegasus_client::{Client, ClientOptions};
use serde::Serialize;

use super::fleet::Fleet;
use super::layout::Layout;
use super::ssh::SshError;
use super::topology::{Instance, Role, Topology};
use crate::scrape;

/// Why `start` or `stop` stopped.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A remote step failed.
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// ZooKeeper cannot be reached.
    #[error("{0}")]
    ZooKeeper(String),
    /// An instance did not become healthy in time.
    #[error("{role} {addr} is not healthy after {waited:?}: {why}\n{logs}")]
    Unhealthy {
        /// Its role.
        role: Role,
        /// Its address.
        addr: String,
        /// How long it was given.
        waited: Duration,
        /// What it last answered.
        why: String,
        /// Its unit's last log lines.
        logs: String,
    },
    /// The metas do not see every replica server.
    #[error("the meta leader sees {alive} of {want} replica servers alive after {waited:?}")]
    NotAlive {
        /// Alive ones.
        alive: usize,
        /// Deployed ones.
        want: usize,
        /// How long it was given.
        waited: Duration,
    },
}

/// How long one instance has to answer `/health` after its start.
pub const HEALTHY_WITHIN: Duration = Duration::from_secs(90);

/// Which instances a verb acts on: `-R role`, `-N host:port` (none: all).
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Only these roles.
    pub roles: Vec<Role>,
    /// Only these instances (`host:port` or `ip:port`).
    pub nodes: Vec<String>,
}

impl Selection {
    /// Whether `i` is selected.
    pub fn has(&self, i: &Instance) -> bool {
        (self.roles.is_empty() || self.roles.contains(&i.role))
            && (self.nodes.is_empty()
                || self
                    .nodes
                    .iter()
                    .any(|n| *n == i.addr() || *n == format!("{}:{}", i.host, i.port)))
    }
}

/// `GET /health` of `i`: `Ok` when it answers 200, else what it said. A ZooKeeper member:
/// `Ok` when it serves in its quorum (`srvr` names its mode).
pub fn health(i: &Instance) -> Result<(), String> {
    let addr = SocketAddr::new(i.ip, i.port);
    if i.role == Role::Zookeeper {
        return super::zk::member_state(addr).map(drop);
    }
    match scrape::get(addr, "/health", Duration::from_secs(2)) {
        Ok(a) if a.status == 200 => Ok(()),
        Ok(a) => Err(format!("{} {}", a.status, a.body.trim())),
        Err(e) => Err(e.to_string()),
    }
}

/// The last `lines` lines of `i`'s unit's journal.
pub fn logs(fleet: &Fleet, i: &Instance, lines: usize) -> String {
    let unit = Layout::unit(&fleet.topology, i);
    fleet
        .remote(&i.host)
        .run(&format!(
            "journalctl -u {unit} -n {lines} --no-pager -o cat 2>&1 || true"
        ))
        .unwrap_or_else(|e| e.to_string())
}

fn wait_healthy(fleet: &Fleet, i: &Instance, within: Duration) -> Result<(), ControlError> {
    let start = Instant::now();
    loop {
        match health(i) {
            Ok(()) => return Ok(()),
            Err(why) if start.elapsed() > within => {
                return Err(ControlError::Unhealthy {
                    role: i.role,
                    addr: i.addr(),
                    waited: within,
                    why,
                    logs: logs(fleet, i, 20),
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// Runs `systemctl VERB` for `instances`, one SSH call per host, hosts in parallel.
pub fn systemctl(fleet: &Fleet, verb: &str, instances: &[&Instance]) -> Result<(), SshError> {
    let results = fleet.each_host(|r| {
        let units: Vec<String> = instances
            .iter()
            .filter(|i| i.host == r.host)
            .map(|i| Layout::unit(&fleet.topology, i))
            .collect();
        if units.is_empty() {
            return Ok(());
        }
        r.run(&format!("systemctl {verb} {}", units.join(" ")))
            .map(drop)
    });
    results.into_iter().try_for_each(|(_, r)| r)
}

/// A client of the topology's metas.
pub fn client(topology: &Topology) -> Client {
    let metas = topology
        .of(Role::Meta)
        .map(|m| SocketAddr::new(m.ip, m.port))
        .collect();
    let mut options = ClientOptions::new(metas);
    options.timeout = Duration::from_secs(5);
    Client::new(options)
}

/// How many of the topology's replica servers the meta leader sees alive.
pub async fn alive_replicas(client: &Client, topology: &Topology) -> Result<usize, String> {
    let nodes = client.list_nodes().await.map_err(|e| e.to_string())?;
    let alive: Vec<String> = nodes
        .iter()
        .filter(|n| n.status == pegasus_protocol::types::node_status::ALIVE)
        .filter_map(|n| n.address.socket_addr().map(|a| a.to_string()))
        .collect();
    Ok(topology
        .of(Role::Replica)
        .filter(|i| alive.contains(&i.addr()))
        .count())
}

/// Starts the selected instances in the guide's order; `progress` hears each step.
pub fn start(
    fleet: &Fleet,
    rt: &tokio::runtime::Runtime,
    selection: &Selection,
    progress: &mut dyn FnMut(&str),
) -> Result<(), ControlError> {
    let topology = &fleet.topology;
    let members: Vec<&Instance> = topology
        .of(Role::Zookeeper)
        .filter(|i| selection.has(i))
        .collect();
    if !members.is_empty() {
        start_group(fleet, &members)?;
        for i in &members {
            let mode = super::zk::member_state(SocketAddr::new(i.ip, i.port))
                .map_or_else(|e| e, |m| m.mode);
            progress(&format!("zookeeper {} serves ({mode})", i.addr()));
        }
    }
    let zk = rt
        .block_on(super::zk::connect(topology))
        .map_err(ControlError::ZooKeeper)?;
    progress(&format!(
        "ZooKeeper {} answers",
        topology.zookeeper.join(",")
    ));
    if topology.runs_zookeeper() {
        // The ensemble is the tool's: the root is claimed at the first start (`deploy` ran
        // before anything served), never over another cluster's.
        match rt.block_on(super::zk::root(&zk, topology)) {
            Ok(super::zk::Root::Foreign(what)) => {
                return Err(ControlError::ZooKeeper(format!(
                    "ZooKeeper `{}` belongs to {what}: not starting over it",
                    topology.cluster_root()
                )));
            }
            Ok(_) => {
                if rt
                    .block_on(super::zk::claim(&zk, topology))
                    .map_err(ControlError::ZooKeeper)?
                {
                    progress(&format!(
                        "zookeeper: marked {} as this cluster's",
                        topology.cluster_root()
                    ));
                }
            }
            Err(e) => return Err(ControlError::ZooKeeper(e)),
        }
    }
    for role in [Role::Meta, Role::Replica, Role::Collector] {
        let group: Vec<&Instance> = topology.of(role).filter(|i| selection.has(i)).collect();
        if group.is_empty() {
            continue;
        }
        start_group(fleet, &group)?;
        for i in &group {
            progress(&format!("{role} {} is healthy", i.addr()));
        }
        if role == Role::Replica {
            let want = topology.of(Role::Replica).count();
            let client = client(topology);
            let start = Instant::now();
            loop {
                let alive = rt.block_on(alive_replicas(&client, topology)).unwrap_or(0);
                if alive == want {
                    progress(&format!(
                        "the meta leader sees all {want} replica servers alive"
                    ));
                    break;
                }
                if start.elapsed() > HEALTHY_WITHIN {
                    return Err(ControlError::NotAlive {
                        alive,
                        want,
                        waited: HEALTHY_WITHIN,
                    });
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    Ok(())
}

/// Starts `group` and waits until each one is healthy.
fn start_group(fleet: &Fleet, group: &[&Instance]) -> Result<(), ControlError> {
    systemctl(fleet, "start", group)?;
    std::thread::scope(|s| {
        let waits: Vec<_> = group
            .iter()
            .map(|i| s.spawn(move || wait_healthy(fleet, i, HEALTHY_WITHIN)))
            .collect();
        waits
            .into_iter()
            .map(|w| w.join().expect("wait thread"))
            .collect::<Result<Vec<()>, _>>()
    })
    .map(drop)
}

/// Stops the selected instances: collector, replica servers, metas, the ZooKeeper members.
pub fn stop(
    fleet: &Fleet,
    selection: &Selection,
    progress: &mut dyn FnMut(&str),
) -> Result<(), ControlError> {
    for role in [Role::Collector, Role::Replica, Role::Meta, Role::Zookeeper] {
        let group: Vec<&Instance> = fleet
            .topology
            .of(role)
            .filter(|i| selection.has(i))
            .collect();
        if group.is_empty() {
            continue;
        }
        systemctl(fleet, "stop", &group)?;
        for i in &group {
            progress(&format!("{role} {} stopped", i.addr()));
        }
    }
    Ok(())
}

/// One instance in `display`.
#[derive(Debug, Serialize)]
pub struct InstanceView {
    /// Its role.
    pub role: Role,
    /// `ip:port`.
    pub addr: String,
    /// Its unit's state (`active`, `inactive`, `failed`, …).
    pub unit: String,
    /// The release it runs (its `release` link), `-` before a deploy.
    pub release: String,
    /// `/health`: `ok` or why not.
    pub health: String,
    /// Its version (`/version`), when it answers.
    pub version: Option<String>,
    /// Metas: whether it leads. Replica servers: whether the leader sees it alive. ZooKeeper
    /// members: their mode (`leader`, `follower`, `standalone`).
    pub status: String,
    /// Replica servers: primaries and secondaries it holds.
    pub copies: Option<(usize, usize)>,
    /// Its folder and data directories.
    pub dirs: Vec<String>,
}

/// One table in `display`.
#[derive(Debug, Serialize)]
pub struct TableView {
    /// Its name.
    pub name: String,
    /// Partitions.
    pub partitions: usize,
    /// Fully healthy partitions.
    pub fully_healthy: i32,
    /// Partitions that cannot take writes.
    pub write_unhealthy: i32,
    /// Partitions without a primary.
    pub read_unhealthy: i32,
}

/// What `display` shows.
#[derive(Debug, Serialize)]
pub struct ClusterView {
    /// The cluster's name.
    pub name: String,
    /// Every instance.
    pub instances: Vec<InstanceView>,
    /// Every table, when the metas answer.
    pub tables: Vec<TableView>,
    /// Why the metas could not be asked, if they could not.
    pub meta_error: Option<String>,
    /// A maintenance plan in progress (an interrupted one: `resume` or `abort` it).
    pub plan: Option<super::rolling::Plan>,
}

impl Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Per instance (`ip:port`): its unit's state (`active`, `inactive`, …, or why its host is
/// unreachable) and the release its `release` link points at (`-` before a deploy).
pub fn unit_states(fleet: &Fleet) -> BTreeMap<String, (String, String)> {
    let topology = &fleet.topology;
    fleet
        .each_host(|r| {
            let mine: Vec<&Instance> = topology.on_host(&r.host).collect();
            let script: String = mine
                .iter()
                .map(|i| {
                    format!(
                        "echo \"$(systemctl is-active {u} 2>/dev/null) $(basename \"$(readlink {d}/release)\" 2>/dev/null)\"\n",
                        u = Layout::unit(topology, i),
                        d = super::ssh::quote(&Layout::instance_dir(topology, i)),
                    )
                })
                .collect();
            let states: Vec<(String, String)> = match r.run(&script) {
                Ok(out) => out
                    .lines()
                    .map(|l| {
                        let mut cols = l.split_whitespace();
                        let state = cols.next().unwrap_or("unknown").to_owned();
                        let release = cols.next().unwrap_or("-").to_owned();
                        (state, release)
                    })
                    .collect(),
                Err(e) => vec![(format!("unreachable: {e}"), "-".to_owned()); mine.len()],
            };
            mine.iter()
                .map(|i| i.addr())
                .zip(states)
                .collect::<Vec<_>>()
        })
        .into_iter()
        .flat_map(|(_, v)| v)
        .collect()
}

/// Gathers [`ClusterView`]: units over SSH, health and version over HTTP, the rest from the
/// meta leader.
pub fn display(fleet: &Fleet, rt: &tokio::runtime::Runtime) -> ClusterView {
    let topology = &fleet.topology;
    let units = unit_states(fleet);
    let client = client(topology);
    let meta = rt.block_on(async {
        let info = client.cluster_info().await.map_err(|e| e.to_string())?;
        let leader = info
            .iter()
            .find(|(k, _)| k == "primary_meta_server")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let nodes = client.list_nodes().await.map_err(|e| e.to_string())?;
        let apps = client.list_apps(0).await.map_err(|e| e.to_string())?;
        let mut configs = Vec::new();
        for app in apps.iter().filter(|a| a.status == 1) {
            if let Ok(c) = client.query_config(&app.app_name).await {
                configs.push((app.app_name.clone(), c));
            }
        }
        Ok::<_, String>((leader, nodes, configs))
    });
    let mut view = ClusterView {
        name: topology.name.clone(),
        instances: Vec::new(),
        tables: Vec::new(),
        meta_error: None,
        plan: rt
            .block_on(async {
                let zk = super::zk::connect(topology).await?;
                super::zk::load_plan(&zk, topology).await
            })
            .ok()
            .flatten(),
    };
    let (leader, nodes, configs) = match meta {
        Ok(m) => m,
        Err(e) => {
            view.meta_error = Some(e);
            Default::default()
        }
    };
    let responses: Vec<_> = configs.iter().map(|(_, c)| c.clone()).collect();
    let counts = pegasus_client::admin::role_counts(&responses);
    for (name, c) in &configs {
        let h = pegasus_protocol::health::Health::of(
            &c.partitions,
            pegasus_protocol::health::DEFAULT_MIN_WRITE_MEMBERS,
        );
        view.tables.push(TableView {
            name: name.clone(),
            partitions: c.partitions.len(),
            fully_healthy: h.fully_healthy,
            write_unhealthy: h.write_unhealthy,
            read_unhealthy: h.read_unhealthy,
        });
    }
    for i in &topology.instances {
        let (unit, release) = units
            .get(&i.addr())
            .cloned()
            .unwrap_or_else(|| ("unknown".into(), "-".into()));
        if i.role == Role::Zookeeper {
            let state = super::zk::member_state(SocketAddr::new(i.ip, i.port));
            view.instances.push(InstanceView {
                role: i.role,
                addr: i.addr(),
                unit,
                release,
                health: state.as_ref().map_or_else(Clone::clone, |_| "ok".into()),
                version: state.as_ref().ok().map(|m| m.version.clone()),
                status: state.map_or_else(|_| "-".into(), |m| m.mode),
                copies: None,
                dirs: Layout::writable(topology, i),
            });
            continue;
        }
        let version = scrape::get(
            SocketAddr::new(i.ip, i.port),
            "/version",
            Duration::from_secs(2),
        )
        .ok()
        .filter(|a| a.status == 200)
        .and_then(|a| serde_json::from_str::<serde_json::Value>(&a.body).ok())
        .and_then(|v| v["Version"].as_str().map(str::to_owned));
        let status = match i.role {
            Role::Meta if view.meta_error.is_some() => "?".into(),
            Role::Meta if leader == i.addr() => "leader".into(),
            Role::Meta => "follower".into(),
            Role::Replica => nodes
                .iter()
                .find(|n| n.address.socket_addr().map(|a| a.to_string()) == Some(i.addr()))
                .map_or("unknown to the meta".into(), |n| {
                    if n.status == pegasus_protocol::types::node_status::ALIVE {
                        "alive".into()
                    } else {
                        "dead".into()
                    }
                }),
            Role::Collector | Role::Zookeeper => "-".into(),
        };
        let copies = (i.role == Role::Replica).then(|| {
            counts
                .iter()
                .find(|(a, _)| a.socket_addr().map(|a| a.to_string()) == Some(i.addr()))
                .map_or((0, 0), |(_, c)| *c)
        });
        view.instances.push(InstanceView {
            role: i.role,
            addr: i.addr(),
            unit,
            release,
            health: health(i).map_or_else(|e| e, |()| "ok".into()),
            version,
            status,
            copies,
            dirs: Layout::writable(topology, i),
        });
    }
    view
}

/// `display`'s human form.
pub fn render_view(view: &ClusterView) -> String {
    let mut out = format!("cluster {}\n", view.name);
    out.push_str(&format!(
        "{:<10} {:<22} {:<9} {:<8} {:<12} {:<10} {:<8} {}\n",
        "ROLE", "ADDRESS", "UNIT", "HEALTH", "STATUS", "PRI/SEC", "VERSION", "RELEASE"
    ));
    for i in &view.instances {
        out.push_str(&format!(
            "{:<10} {:<22} {:<9} {:<8} {:<12} {:<10} {:<8} {}\n",
            i.role.name(),
            i.addr,
            i.unit,
            if i.health.len() > 8 {
                "down"
            } else {
                &i.health
            },
            i.status,
            i.copies.map_or("-".into(), |(p, s)| format!("{p}/{s}")),
            i.version.as_deref().unwrap_or("-"),
            i.release
        ));
    }
    if let Some(plan) = &view.plan {
        out.push_str(&format!(
            "maintenance plan in progress: `{}` by {} since {} ({} of {} steps done; meta level `{}` before it): `resume` or `abort` it\n",
            plan.verb,
            plan.by,
            plan.started,
            plan.steps.iter().filter(|s| s.done).count(),
            plan.steps.len(),
            plan.meta_level_before
        ));
    }
    match &view.meta_error {
        Some(e) => out.push_str(&format!("metas: {e}\n")),
        None => {
            out.push_str(&format!(
                "\n{:<16} {:>10} {:>14} {:>16} {:>15}\n",
                "TABLE", "PARTITIONS", "FULLY_HEALTHY", "WRITE_UNHEALTHY", "READ_UNHEALTHY"
            ));
            for t in &view.tables {
                out.push_str(&format!(
                    "{:<16} {:>10} {:>14} {:>16} {:>15}\n",
                    t.name, t.partitions, t.fully_healthy, t.write_unhealthy, t.read_unhealthy
                ));
            }
        }
    }
    out
}
