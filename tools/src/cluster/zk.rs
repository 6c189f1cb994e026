//! The cluster's root in ZooKeeper, as the tool sees it: whether it is free, this cluster's, or
//! another's (a cluster is never deployed over another's root), and the mark `deploy` leaves.
//!
//! The mark is `<cluster_root>/pegasus_cluster`: the cluster's name and its metas. A root
//! without it, or whose metas are none of this topology's, belongs to another cluster.

use std::time::Duration;

use zookeeper_client::{Acls, Client, CreateMode};

use super::topology::Topology;

/// The mark's name under the cluster root.
pub const MARK: &str = "pegasus_cluster";

/// A maintenance plan in progress, under the cluster root.
pub const PLAN: &str = "pegasus_cluster_plan";

/// Who holds the cluster root.
#[derive(Debug, PartialEq, Eq)]
pub enum Root {
    /// Nothing is there.
    Free,
    /// This cluster (its mark names one of our metas).
    Ours,
    /// Another cluster: what is there.
    Foreign(String),
}

/// Connects to the topology's ensemble (10 s at most).
pub async fn connect(topology: &Topology) -> Result<Client, String> {
    let hosts = topology.zookeeper.join(",");
    let connect = Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .with_connection_timeout(Duration::from_secs(5))
        .connect(&hosts);
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(format!("cannot connect to ZooKeeper `{hosts}`: {e}")),
        Err(_) => Err(format!("cannot connect to ZooKeeper `{hosts}` within 10s")),
    }
}

fn mark_text(topology: &Topology) -> String {
    format!(
        "cluster={}\nmetas={}\n",
        topology.name,
        topology.meta_list()
    )
}

/// Who holds `topology`'s cluster root.
pub async fn root(zk: &Client, topology: &Topology) -> Result<Root, String> {
    let root = topology.cluster_root();
    let children = match zk.list_children(&root).await {
        Ok(c) => c,
        Err(zookeeper_client::Error::NoNode) => return Ok(Root::Free),
        Err(e) => return Err(format!("ZooKeeper `{root}`: {e}")),
    };
    let mark = format!("{root}/{MARK}");
    match zk.get_data(&mark).await {
        Ok((data, _)) => {
            let text = String::from_utf8_lossy(&data).into_owned();
            let ours: Vec<String> = topology
                .of(super::topology::Role::Meta)
                .map(|m| m.addr())
                .collect();
            let theirs = text
                .lines()
                .find_map(|l| l.strip_prefix("metas="))
                .unwrap_or_default();
            if theirs.split(',').any(|m| ours.iter().any(|o| o == m)) {
                Ok(Root::Ours)
            } else {
                Ok(Root::Foreign(format!(
                    "deployed by pegasus_cluster for metas `{theirs}`"
                )))
            }
        }
        Err(zookeeper_client::Error::NoNode) if children.is_empty() => Ok(Root::Free),
        Err(zookeeper_client::Error::NoNode) => Ok(Root::Foreign(format!(
            "a cluster not deployed by pegasus_cluster (holds `{}`)",
            children.join("`, `")
        ))),
        Err(e) => Err(format!("ZooKeeper `{mark}`: {e}")),
    }
}

/// Marks the cluster root as this cluster's (creating it); refuses another's.
pub async fn claim(zk: &Client, topology: &Topology) -> Result<bool, String> {
    match root(zk, topology).await? {
        Root::Foreign(what) => {
            return Err(format!(
                "ZooKeeper `{}` belongs to {what}: not deploying over it",
                topology.cluster_root()
            ));
        }
        Root::Ours => {
            let mark = format!("{}/{MARK}", topology.cluster_root());
            let (data, _) = zk.get_data(&mark).await.map_err(|e| e.to_string())?;
            if data == mark_text(topology).as_bytes() {
                return Ok(false);
            }
            zk.set_data(&mark, mark_text(topology).as_bytes(), None)
                .await
                .map_err(|e| format!("ZooKeeper `{mark}`: {e}"))?;
            return Ok(true);
        }
        Root::Free => {}
    }
    let mode = CreateMode::Persistent.with_acls(Acls::anyone_all());
    let root = topology.cluster_root();
    let mut path = String::new();
    for part in root.trim_start_matches('/').split('/') {
        path.push('/');
        path.push_str(part);
        match zk.create(&path, b"", &mode).await {
            Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
            Err(e) => return Err(format!("ZooKeeper `{path}`: {e}")),
        }
    }
    let mark = format!("{root}/{MARK}");
    zk.create(&mark, mark_text(topology).as_bytes(), &mode)
        .await
        .map_err(|e| format!("ZooKeeper `{mark}`: {e}"))?;
    Ok(true)
}

/// Whether the cluster root exists.
pub async fn root_exists(zk: &Client, topology: &Topology) -> Result<bool, String> {
    match zk.check_stat(&topology.cluster_root()).await {
        Ok(stat) => Ok(stat.is_some()),
        Err(e) => Err(e.to_string()),
    }
}

/// Removes the cluster root and everything under it; how many nodes.
pub async fn remove_root(zk: &Client, topology: &Topology) -> Result<usize, String> {
    let mut order = vec![topology.cluster_root()];
    let mut i = 0;
    while i < order.len() {
        let node = order[i].clone();
        match zk.list_children(&node).await {
            Ok(children) => order.extend(children.into_iter().map(|c| format!("{node}/{c}"))),
            Err(zookeeper_client::Error::NoNode) => {}
            Err(e) => return Err(format!("ZooKeeper `{node}`: {e}")),
        }
        i += 1;
    }
    let mut removed = 0;
    for node in order.iter().rev() {
        match zk.delete(node, None).await {
            Ok(()) => removed += 1,
            Err(zookeeper_client::Error::NoNode) => {}
            Err(e) => return Err(format!("ZooKeeper `{node}`: {e}")),
        }
    }
    Ok(removed)
}

fn plan_path(topology: &Topology) -> String {
    format!("{}/{PLAN}", topology.cluster_root())
}

/// The maintenance plan in progress, if any.
pub async fn load_plan(
    zk: &Client,
    topology: &Topology,
) -> Result<Option<super::rolling::Plan>, String> {
    let path = plan_path(topology);
    match zk.get_data(&path).await {
        Ok((data, _)) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| format!("ZooKeeper `{path}` is not a plan: {e}")),
        Err(zookeeper_client::Error::NoNode) => Ok(None),
        Err(e) => Err(format!("ZooKeeper `{path}`: {e}")),
    }
}

/// Writes `plan`: created (refused if one exists) with `new`, else updated.
pub async fn save_plan(
    zk: &Client,
    topology: &Topology,
    plan: &super::rolling::Plan,
    new: bool,
) -> Result<(), String> {
    let path = plan_path(topology);
    let data = serde_json::to_vec_pretty(plan).expect("serializable");
    let done = if new {
        let mode = CreateMode::Persistent.with_acls(Acls::anyone_all());
        zk.create(&path, &data, &mode).await.map(drop)
    } else {
        zk.set_data(&path, &data, None).await.map(drop)
    };
    done.map_err(|e| format!("ZooKeeper `{path}`: {e}"))
}

/// Removes the plan (done or aborted).
pub async fn delete_plan(zk: &Client, topology: &Topology) -> Result<(), String> {
    let path = plan_path(topology);
    match zk.delete(&path, None).await {
        Ok(()) | Err(zookeeper_client::Error::NoNode) => Ok(()),
        Err(e) => Err(format!("ZooKeeper `{path}`: {e}")),
    }
}

/// The data format the cluster root records (`<cluster_root>/format`, written by the metas), if
/// any.
pub async fn cluster_format(zk: &Client, topology: &Topology) -> Result<Option<u32>, String> {
    let path = format!("{}/format", topology.cluster_root());
    match zk.get_data(&path).await {
        Ok((data, _)) => Ok(String::from_utf8_lossy(&data).trim().parse().ok()),
        Err(zookeeper_client::Error::NoNode) => Ok(None),
        Err(e) => Err(format!("ZooKeeper `{path}`: {e}")),
    }
}

/// A ZooKeeper member's own account (`srvr`): its mode and version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberState {
    /// `leader`, `follower` or `standalone`.
    pub mode: String,
    /// Its version (`3.8.0-…`).
    pub version: String,
}

/// Whether the topology's ZooKeeper can be used now: an existing ensemble always counts as
/// serving (connecting tells); one the tool runs serves once a member answers in its quorum
/// (before the first `start`, none does).
pub fn ensemble_serves(topology: &Topology) -> bool {
    !topology.runs_zookeeper()
        || topology
            .of(super::topology::Role::Zookeeper)
            .any(|i| member_state(std::net::SocketAddr::new(i.ip, i.port)).is_ok())
}

/// Asks the ZooKeeper member at `addr` for `srvr` (2 s at most): see [`parse_srvr`].
pub fn member_state(addr: std::net::SocketAddr) -> Result<MemberState, String> {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(2);
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.write_all(b"srvr").map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.take(64 << 10)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    parse_srvr(&text)
}

/// A member's answer to `srvr`: serving in a quorum (or alone) when it names its mode; what
/// it said otherwise (one without a quorum answers "This ZooKeeper instance is not currently
/// serving requests").
pub fn parse_srvr(text: &str) -> Result<MemberState, String> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    match field("Mode:") {
        Some(mode) => Ok(MemberState {
            mode,
            version: field("Zookeeper version:")
                .and_then(|v| v.split([',', '-']).next().map(str::to_owned))
                .unwrap_or_default(),
        }),
        None if text.trim().is_empty() => Err("no answer to `srvr`".into()),
        None => Err(text.lines().next().unwrap_or_default().trim().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_members_mode_and_version_come_from_srvr() {
        let answer = "Zookeeper version: 3.8.0-5a02a05eddb59aee6ac762f7ea82e92a68eb9c0f, built on 2022-02-25 08:49 UTC\nLatency min/avg/max: 0/0.0/0\nReceived: 1\nSent: 0\nConnections: 1\nOutstanding: 0\nZxid: 0x100000000\nMode: follower\nNode count: 5\n";
        assert_eq!(
            parse_srvr(answer),
            Ok(MemberState {
                mode: "follower".into(),
                version: "3.8.0".into()
            })
        );
        assert_eq!(
            parse_srvr("This ZooKeeper instance is not currently serving requests\n"),
            Err("This ZooKeeper instance is not currently serving requests".into())
        );
        assert_eq!(parse_srvr(""), Err("no answer to `srvr`".into()));
    }
}
