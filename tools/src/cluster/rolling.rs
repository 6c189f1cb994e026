//! `pegasus_cluster restart --rolling`: every instance restarted one at a time, the cluster
//! serving throughout, as a maintenance plan that survives the tool.
//!
//! Replica servers first, one at a time: every primary it holds is handed to a secondary
//! through the meta (Pegasus's `propose move_primary`; the meta level is set to `steady` so
//! nothing balances meanwhile), then it is stopped (a clean stop: its last beacon tells the
//! meta it leaves, so its groups go on without it at once), started, and waited for until it is
//! alive and every partition is fully healthy again. Then the metas, followers first and the
//! leader last; then the collector.
//!
//! The plan is written to ZooKeeper (`<cluster_root>/pegasus_cluster_plan`) before the first
//! step, with the meta level it found, and each step is marked there when done. On success,
//! failure or Ctrl-C the level is restored and the plan removed; if the tool itself is killed,
//! `display` shows the plan, `resume` carries out what is left of it and `abort` starts every
//! instance, restores the level and removes it.

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pegasus_client::Client;
use pegasus_protocol::types::{QueryCfgResponse, meta_function_level, node_status};
use serde::{Deserialize, Serialize};

use super::control::{self, HEALTHY_WITHIN};
use super::fleet::Fleet;
use super::topology::{Instance, Role};

/// A maintenance plan, as kept in ZooKeeper.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Plan {
    /// What it does (`restart --rolling`).
    pub verb: String,
    /// When it began (unix seconds).
    pub started: u64,
    /// Who runs it (`user@host`).
    pub by: String,
    /// The meta level before it (restored at its end).
    pub meta_level_before: String,
    /// Its steps, in order.
    pub steps: Vec<Step>,
}

/// One step of a plan: one instance restarted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Step {
    /// The instance's role.
    pub role: String,
    /// Its `ip:port`.
    pub addr: String,
    /// Whether it is done.
    pub done: bool,
    /// The release it runs from this step on (an upgrade or rollback), if it changes.
    #[serde(default)]
    pub release: Option<String>,
    /// What the step does to it.
    #[serde(default)]
    pub action: Action,
}

/// What a step does to its instance.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Restarted (a replica server's primaries handed over first).
    #[default]
    Restart,
    /// Drained of every copy, stopped and removed (scale-in).
    Remove,
}

/// Why a rolling restart stopped.
#[derive(Debug, thiserror::Error)]
pub enum RollingError {
    /// A plan is in progress already.
    #[error(
        "a maintenance plan is in progress ({0}): finish it with `pegasus_cluster resume` or `abort`"
    )]
    InProgress(String),
    /// Stopped by Ctrl-C.
    #[error("interrupted")]
    Interrupted,
    /// A step failed.
    #[error("{0}")]
    Failed(String),
}

impl From<control::ControlError> for RollingError {
    fn from(e: control::ControlError) -> Self {
        RollingError::Failed(e.to_string())
    }
}

impl From<super::ssh::SshError> for RollingError {
    fn from(e: super::ssh::SshError) -> Self {
        RollingError::Failed(e.to_string())
    }
}

/// How long after a restart every partition has to be fully healthy again.
const HEAL_WITHIN: Duration = Duration::from_secs(300);

/// The steps of a rolling restart of the selected instances: replica servers, metas (the
/// leader, if the metas answer, last), the collector.
pub fn steps(selected: &[&Instance], leader: Option<&str>) -> Vec<Step> {
    let mut metas: Vec<&&Instance> = selected.iter().filter(|i| i.role == Role::Meta).collect();
    metas.sort_by_key(|i| Some(i.addr().as_str()) == leader);
    let step = |i: &Instance| Step {
        role: i.role.name().into(),
        addr: i.addr(),
        done: false,
        release: None,
        action: Action::Restart,
    };
    let mut out: Vec<Step> = selected
        .iter()
        .filter(|i| i.role == Role::Replica)
        .map(|i| step(i))
        .collect();
    out.extend(metas.into_iter().map(|i| step(i)));
    out.extend(
        selected
            .iter()
            .filter(|i| i.role == Role::Collector)
            .map(|i| step(i)),
    );
    out
}

fn who() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "?".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    format!("{user}@{host}")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The meta leader's address, if the metas answer.
pub fn leader(rt: &tokio::runtime::Runtime, client: &Client) -> Option<String> {
    rt.block_on(client.cluster_info())
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "primary_meta_server")
        .map(|(_, v)| v)
}

/// A new plan for `steps`, written to ZooKeeper, with the meta level set to `steady` (the
/// level found is kept in the plan first). Refused while another plan is in progress.
pub fn begin(
    fleet: &Fleet,
    rt: &tokio::runtime::Runtime,
    verb: &str,
    steps: Vec<Step>,
) -> Result<Plan, RollingError> {
    let topology = &fleet.topology;
    let zk = rt
        .block_on(super::zk::connect(topology))
        .map_err(RollingError::Failed)?;
    if let Some(plan) = rt
        .block_on(super::zk::load_plan(&zk, topology))
        .map_err(RollingError::Failed)?
    {
        return Err(RollingError::InProgress(format!(
            "`{}` by {} since {}",
            plan.verb, plan.by, plan.started
        )));
    }
    let client = control::client(topology);
    let level = rt
        .block_on(client.meta_level(meta_function_level::INVALID))
        .map_err(|e| RollingError::Failed(format!("reading the meta level: {e}")))?;
    let plan = Plan {
        verb: verb.into(),
        started: unix_now(),
        by: who(),
        meta_level_before: meta_function_level::name(level).into(),
        steps,
    };
    rt.block_on(super::zk::save_plan(&zk, topology, &plan, true))
        .map_err(RollingError::Failed)?;
    if level > meta_function_level::STEADY {
        rt.block_on(client.meta_level(meta_function_level::STEADY))
            .map_err(|e| RollingError::Failed(format!("setting the meta level: {e}")))?;
    }
    Ok(plan)
}

/// Ends a plan: the meta level it found restored, the plan removed.
pub fn end(fleet: &Fleet, rt: &tokio::runtime::Runtime, plan: &Plan) -> Result<(), String> {
    let topology = &fleet.topology;
    let client = control::client(topology);
    let level =
        meta_function_level::parse(&plan.meta_level_before).unwrap_or(meta_function_level::LIVELY);
    // A meta leader may be being elected (the last step restarted it): retried meanwhile.
    let start = Instant::now();
    loop {
        match rt.block_on(client.meta_level(level)) {
            Ok(_) => break,
            Err(e) if start.elapsed() > HEALTHY_WITHIN => {
                return Err(format!(
                    "restoring the meta level `{}`: {e}",
                    plan.meta_level_before
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
    let zk = rt.block_on(super::zk::connect(topology))?;
    rt.block_on(super::zk::delete_plan(&zk, topology))
}

/// Carries out the steps of `plan` not done yet, marking each in ZooKeeper.
pub fn carry_out(
    fleet: &Fleet,
    rt: &tokio::runtime::Runtime,
    plan: &mut Plan,
    interrupted: &AtomicBool,
    progress: &mut dyn FnMut(&str),
) -> Result<(), RollingError> {
    let topology = &fleet.topology;
    let client = control::client(topology);
    let zk = rt
        .block_on(super::zk::connect(topology))
        .map_err(RollingError::Failed)?;
    for k in 0..plan.steps.len() {
        if plan.steps[k].done {
            continue;
        }
        if interrupted.load(Ordering::Acquire) {
            return Err(RollingError::Interrupted);
        }
        let step = plan.steps[k].clone();
        let instance = topology
            .instances
            .iter()
            .find(|i| i.addr() == step.addr)
            .ok_or_else(|| {
                RollingError::Failed(format!("{} is not in the topology any more", step.addr))
            })?;
        let began = Instant::now();
        if let Some(release) = &step.release
            && switch_release(fleet, instance, release)?
        {
            progress(&format!("{} {}: now runs {release}", step.role, step.addr));
        }
        match instance.role {
            _ if step.action == Action::Remove => {
                super::scale::remove_replica(fleet, rt, &client, instance, interrupted, progress)?
            }
            Role::Replica => restart_replica(fleet, rt, &client, instance, interrupted, progress)?,
            _ => {
                control::systemctl(fleet, "restart", &[instance])?;
                wait(HEALTHY_WITHIN, interrupted, || {
                    control::health(instance).is_ok()
                })
                .map_err(|e| e.context(&format!("{} {} healthy", instance.role, step.addr)))?;
                if instance.role == Role::Meta {
                    // A leader answers admin requests (a follower still answers `cluster_info`).
                    wait(HEALTHY_WITHIN, interrupted, || {
                        rt.block_on(client.meta_level(meta_function_level::INVALID))
                            .is_ok()
                    })
                    .map_err(|e| e.context("a meta leader"))?;
                }
            }
        }
        plan.steps[k].done = true;
        rt.block_on(super::zk::save_plan(&zk, topology, plan, false))
            .map_err(RollingError::Failed)?;
        progress(&format!(
            "[{}/{}] {} {} {} in {:.1?}",
            k + 1,
            plan.steps.len(),
            step.role,
            step.addr,
            match step.action {
                Action::Restart => "restarted",
                Action::Remove => "removed",
            },
            began.elapsed()
        ));
    }
    Ok(())
}

/// Points instance `i`'s `release` link at `release` (under the deploy dir's `releases/`),
/// keeping the one it replaces as `release.previous`; whether it changed. The running process
/// keeps its binary; the restart that follows runs the new one.
pub fn switch_release(fleet: &Fleet, i: &Instance, release: &str) -> Result<bool, RollingError> {
    let topology = &fleet.topology;
    let dir = super::layout::Layout::instance_dir(topology, i);
    let want = format!("../../releases/{release}");
    let out = fleet.remote(&i.host).run(&format!(
        "set -e; cd {dir};          [ -x {want}/bin/pegasus_server ] || {{ echo \"no release {release} on this host\" >&2; exit 3; }};          cur=$(readlink release);          if [ \"$cur\" = {want} ]; then echo same; exit 0; fi;          ln -sfn \"$cur\" release.previous; ln -sfn {want} release.next; mv -Tf release.next release; echo switched",
        dir = super::ssh::quote(&dir),
        want = super::ssh::quote(&want),
    ))?;
    Ok(out.trim() == "switched")
}

/// The release instance `i` ran before its last switch, if any.
pub fn previous_release(fleet: &Fleet, i: &Instance) -> Result<Option<String>, RollingError> {
    let dir = super::layout::Layout::instance_dir(&fleet.topology, i);
    let out = fleet.remote(&i.host).run(&format!(
        "readlink {}/release.previous || true",
        super::ssh::quote(&dir)
    ))?;
    Ok(out
        .trim()
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .map(str::to_owned))
}

/// The data format release `release` on `host` writes (its `FORMAT`; 1 when it has none).
pub fn release_format(fleet: &Fleet, host: &str, release: &str) -> Result<u32, RollingError> {
    let path = format!("{}/releases/{release}/FORMAT", fleet.topology.deploy_dir);
    let text = fleet.remote(host).read(&path)?;
    Ok(text.and_then(|t| t.trim().parse().ok()).unwrap_or(1))
}

/// A wait that ran out or was interrupted.
struct Waited(RollingError);

impl Waited {
    fn context(self, what: &str) -> RollingError {
        match self.0 {
            RollingError::Failed(why) => RollingError::Failed(format!("waiting for {what}: {why}")),
            e => e,
        }
    }
}

/// Polls `ok` every 100 ms for `within`.
fn wait(
    within: Duration,
    interrupted: &AtomicBool,
    mut ok: impl FnMut() -> bool,
) -> Result<(), Waited> {
    let start = Instant::now();
    loop {
        if ok() {
            return Ok(());
        }
        super::scale::give_up_after(start, within, interrupted, || "not yet".into())
            .map_err(Waited)?;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every available table's routing.
pub(super) fn routing(
    rt: &tokio::runtime::Runtime,
    client: &Client,
) -> Result<Vec<QueryCfgResponse>, String> {
    rt.block_on(async {
        let apps = client.list_apps(0).await.map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for app in apps.iter().filter(|a| a.status == 1) {
            out.push(
                client
                    .query_config(&app.app_name)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(out)
    })
}

fn alive(rt: &tokio::runtime::Runtime, client: &Client) -> Vec<SocketAddrV4> {
    rt.block_on(client.list_nodes())
        .unwrap_or_default()
        .iter()
        .filter(|n| n.status == node_status::ALIVE)
        .filter_map(|n| n.address.socket_addr())
        .collect()
}

/// Every partition of every table fully healthy.
fn all_healthy(rt: &tokio::runtime::Runtime, client: &Client) -> bool {
    routing(rt, client).is_ok_and(|tables| {
        tables.iter().all(|t| {
            let h = pegasus_protocol::health::Health::of(
                &t.partitions,
                pegasus_protocol::health::DEFAULT_MIN_WRITE_MEMBERS,
            );
            h.fully_healthy as usize == t.partitions.len()
        })
    })
}

fn restart_replica(
    fleet: &Fleet,
    rt: &tokio::runtime::Runtime,
    client: &Client,
    instance: &Instance,
    interrupted: &AtomicBool,
    progress: &mut dyn FnMut(&str),
) -> Result<(), RollingError> {
    let SocketAddr::V4(node) = SocketAddr::new(instance.ip, instance.port) else {
        return Err(RollingError::Failed(format!(
            "{} is not an IPv4 address",
            instance.addr()
        )));
    };
    wait(HEAL_WITHIN, interrupted, || all_healthy(rt, client))
        .map_err(|e| e.context("every partition fully healthy before the step"))?;
    let moved = super::scale::drain(
        rt,
        client,
        node,
        &alive(rt, client),
        super::scale::Drain::Primaries,
        interrupted,
        progress,
    )?;
    progress(&format!("replica {node}: {moved} primaries handed over"));
    control::systemctl(fleet, "stop", &[instance])?;
    control::systemctl(fleet, "start", &[instance])?;
    wait(HEALTHY_WITHIN, interrupted, || {
        control::health(instance).is_ok()
    })
    .map_err(|e| e.context(&format!("replica {node} healthy")))?;
    wait(HEALTHY_WITHIN, interrupted, || {
        alive(rt, client).contains(&node)
    })
    .map_err(|e| e.context(&format!("the meta seeing {node} alive")))?;
    wait(HEAL_WITHIN, interrupted, || all_healthy(rt, client))
        .map_err(|e| e.context("every partition fully healthy again"))?;
    Ok(())
}

/// Ctrl-C sets the returned flag (the plan then ends at the next check, restoring the level).
pub fn interrupt_flag(rt: &tokio::runtime::Runtime) -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = Arc::clone(&flag);
    rt.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: ending the plan after this wait");
            set.store(true, Ordering::Release);
        }
    });
    flag
}
