//! Cluster identity: `[replication] cluster_name`, `[meta_server] cluster_root` and the leader
//! lock path must name the same cluster.

use super::{Context, Rule, Scope, is_templated};
use crate::finding::{Finding, Severity};

/// PC030.
pub static MISSING_CLUSTER_NAME: Rule = Rule {
    code: "PC030",
    name: "missing-cluster-name",
    severity: Severity::Warning,
    scope: Scope::File,
    summary: "`[replication] cluster_name` is not set",
    doc: "## What it does
Checks that a server config sets `[replication] cluster_name`.

## Why it matters
The cluster name labels metrics, names the cluster to the collector and the shell (through
`[pegasus.clusters]`) and to duplication. Left empty, tools cannot tell clusters apart.

## Example
```ini
[replication]
  cluster_name =
```

## How to fix
Set it to the name in `cluster_root`: `cluster_name = my_cluster`.
",
};

/// PC031.
pub static CLUSTER_ROOT_MISMATCH: Rule = Rule {
    code: "PC031",
    name: "cluster-root-mismatch",
    severity: Severity::Error,
    scope: Scope::File,
    summary: "`cluster_root` does not name this cluster",
    doc: "## What it does
Checks that `[meta_server] cluster_root` is an absolute ZooKeeper path with the cluster name as
one of its components (`/pegasus/<cluster_name>` in the template).

## Why it matters
All of a cluster's state lives under `cluster_root`. Two clusters that share one root (a config
copied from another cluster with only `cluster_name` changed) overwrite each other's tables.
Cleaning a cluster means removing `/pegasus/<cluster_name>`, which then misses the real root.

## Example
```ini
[meta_server]
  cluster_root = /pegasus/staging
[replication]
  cluster_name = production
```

## How to fix
`cluster_root = /pegasus/production`.
",
};

/// PC032.
pub static LOCK_PATH_MISMATCH: Rule = Rule {
    code: "PC032",
    name: "lock-path-mismatch",
    severity: Severity::Error,
    scope: Scope::File,
    summary: "the leader lock path is outside `cluster_root`",
    doc: "## What it does
Checks that `[meta_server] distributed_lock_service_parameters` (the ZooKeeper path of the
leader lock) is `cluster_root` itself or below it.

## Why it matters
MetaServers elect their leader with an ephemeral node under this path. If two clusters share a
lock path, one leader is elected for both and the other cluster's MetaServers stay followers
forever.

## Example
```ini
[meta_server]
  cluster_root = /pegasus/production
  distributed_lock_service_parameters = /pegasus/staging/lock
```

## How to fix
`distributed_lock_service_parameters = /pegasus/production/lock`.
",
};

pub(super) fn check(ctx: &Context<'_>, out: &mut Vec<Finding>) {
    let config = ctx.config;
    let source = ctx.source();
    let is_server_config =
        config.section("meta_server").is_some() || config.section("replication").is_some();
    if !is_server_config {
        return;
    }
    let name_entry = config.value("replication", "cluster_name");
    let name = match name_entry {
        Some(v) if is_templated(&v.value) => return,
        Some(v) if !v.value.is_empty() => Some(v),
        _ => {
            let (span, label) = match (name_entry, config.section("replication")) {
                (Some(v), _) => (v.span, "empty"),
                (None, Some(s)) => (s.name.span, "no `cluster_name` here"),
                (None, None) => return,
            };
            out.push(
                Finding::new(
                    &MISSING_CLUSTER_NAME,
                    source,
                    span,
                    label,
                    "`[replication] cluster_name` is not set",
                )
                .help("set `cluster_name` to the name used in `cluster_root`, e.g. `my_cluster`"),
            );
            None
        }
    };
    let root = config
        .value("meta_server", "cluster_root")
        .filter(|r| !is_templated(&r.value));
    if let (Some(root), Some(name)) = (root, name) {
        let absolute = root.value.starts_with('/');
        if !absolute || !root.value.split('/').any(|c| c == name.value) {
            let (label, message) = if absolute {
                (
                    format!("does not contain `{}`", name.value),
                    format!(
                        "`cluster_root` `{}` does not name cluster `{}`",
                        root.value, name.value
                    ),
                )
            } else {
                (
                    "not an absolute path".to_owned(),
                    format!(
                        "`cluster_root` `{}` is not an absolute ZooKeeper path",
                        root.value
                    ),
                )
            };
            out.push(
                Finding::new(&CLUSTER_ROOT_MISMATCH, source, root.span, label, message)
                    .related(name.span, "the cluster name")
                    .help(format!("set `cluster_root = /pegasus/{}`", name.value)),
            );
        }
    }
    let lock_type = config.str_or(
        "meta_server",
        "distributed_lock_service_type",
        "distributed_lock_service_zookeeper",
    );
    let lock = config
        .value("meta_server", "distributed_lock_service_parameters")
        .filter(|l| !is_templated(&l.value) && !l.value.is_empty());
    if let (Some(root), Some(lock)) = (root, lock) {
        let root_path = root.value.trim_end_matches('/');
        let inside = lock.value == root_path || lock.value.starts_with(&format!("{root_path}/"));
        if lock_type == "distributed_lock_service_zookeeper" && !inside {
            out.push(
                Finding::new(
                    &LOCK_PATH_MISMATCH,
                    source,
                    lock.span,
                    "outside `cluster_root`",
                    format!(
                        "leader lock path `{}` is not under `cluster_root` `{}`",
                        lock.value, root.value
                    ),
                )
                .related(root.span, "the cluster root")
                .help(format!(
                    "set `distributed_lock_service_parameters = {root_path}/lock`"
                )),
            );
        }
    }
}
