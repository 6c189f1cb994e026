//! Cross-file rules: every node of one cluster must agree on the meta list, the cluster name,
//! the ZooKeeper list and the number of data dirs.
//!
//! Each node is reduced to a small [`NodeSummary`] as its file is checked, so a folder of
//! thousands of configs is never held in memory at once. The value most nodes share is taken as
//! the cluster's; each node that differs gets one finding, which the caller turns into a
//! [`Finding`] with the node's source ([`NodeFinding::into_finding`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{Rule, Scope, is_templated};
use crate::config::Config;
use crate::finding::{Finding, Severity};
use crate::source::{SourceFile, Span};

/// PC090.
pub static META_LIST_DIFFERS: Rule = Rule {
    code: "PC090",
    name: "meta-list-differs",
    severity: Severity::Error,
    scope: Scope::Cluster,
    summary: "nodes of one cluster list different MetaServers",
    doc: "## What it does
In a folder of per-node configs, compares `[meta_server] server_list` across nodes (as sets) and
reports the nodes that differ from the list most nodes use.

## Why it matters
A replica server given another meta list beacons to MetaServers that do not know it, never gets
partitions, or joins another cluster altogether.

## Example
```ini
; node1.ini
server_list = 10.0.0.1:34601,10.0.0.2:34601
; node2.ini
server_list = 10.0.0.1:34601,10.0.0.3:34601
```

## How to fix
Render every node's config from one set of variables (`configcheck render --vars cluster.vars`).
",
};

/// PC091.
pub static CLUSTER_NAME_DIFFERS: Rule = Rule {
    code: "PC091",
    name: "cluster-name-differs",
    severity: Severity::Error,
    scope: Scope::Cluster,
    summary: "nodes of one cluster have different cluster names",
    doc: "## What it does
Compares `[replication] cluster_name` across the nodes of a folder.

## Why it matters
Metrics, the collector and duplication identify the cluster by name; a node with another name
reports into another cluster's dashboards.

## Example
```ini
; node1.ini
cluster_name = production
; node2.ini
cluster_name = prodution
```

## How to fix
Use one cluster name on every node.
",
};

/// PC092.
pub static ZOOKEEPER_LIST_DIFFERS: Rule = Rule {
    code: "PC092",
    name: "zookeeper-list-differs",
    severity: Severity::Error,
    scope: Scope::Cluster,
    summary: "nodes of one cluster use different ZooKeeper servers",
    doc: "## What it does
Compares `[zookeeper] hosts_list` across the nodes of a folder (as sets).

## Why it matters
A MetaServer pointed at another ZooKeeper ensemble elects its own leader and keeps its own
tables: a split-brain cluster.

## Example
```ini
; meta1.ini
hosts_list = 10.0.0.1:2181,10.0.0.2:2181,10.0.0.3:2181
; meta2.ini
hosts_list = 10.0.0.1:2181
```

## How to fix
Use the same ZooKeeper list on every node.
",
};

/// PC093.
pub static DATA_DIR_COUNT_DIFFERS: Rule = Rule {
    code: "PC093",
    name: "data-dir-count-differs",
    severity: Severity::Warning,
    scope: Scope::Cluster,
    summary: "nodes of one cluster have different numbers of data dirs",
    doc: "## What it does
Compares the number of `[replication] data_dirs` items across the nodes of a folder.

## Why it matters
The guide: each server should mount the same number and performance of disks. The MetaServer
balances replicas per node, not per disk, so a node with fewer disks puts more load on each.

## Example
```ini
; node1.ini
data_dirs = ssd1:/ssd1/pegasus,ssd2:/ssd2/pegasus
; node2.ini
data_dirs = ssd1:/ssd1/pegasus
```

## How to fix
Mount the same number of disks on every replica server, and list them all.
",
};

/// One compared value of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Value {
    /// What is compared (a sorted set rendered as text, or a count).
    key: String,
    /// As written, for messages.
    shown: String,
    /// Where.
    span: Span,
}

/// What the cross-file rules need of one node.
#[derive(Clone, Debug)]
pub struct NodeSummary {
    /// The file's name as shown to users.
    pub name: String,
    meta_list: Option<Value>,
    cluster_name: Option<Value>,
    zookeeper_list: Option<Value>,
    data_dir_count: Option<Value>,
}

fn list_value(config: &Config, section: &str, key: &str) -> Option<Value> {
    let v = config
        .value(section, key)
        .filter(|v| !v.value.is_empty() && !is_templated(&v.value))?;
    let set: BTreeSet<&str> = v
        .value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    Some(Value {
        key: set.into_iter().collect::<Vec<_>>().join(","),
        shown: v.value.clone(),
        span: v.span,
    })
}

impl NodeSummary {
    /// Takes what the cluster rules compare from `config`.
    pub fn of(config: &Config) -> Self {
        let data_dir_count = config
            .value("replication", "data_dirs")
            .filter(|v| !is_templated(&v.value))
            .map(|v| {
                let n = crate::data_dir::parse(&v.value, 0).len();
                Value {
                    key: n.to_string(),
                    shown: n.to_string(),
                    span: v.span,
                }
            });
        NodeSummary {
            name: config.source().name().to_owned(),
            meta_list: list_value(config, "meta_server", "server_list"),
            cluster_name: config
                .value("replication", "cluster_name")
                .filter(|v| !v.value.is_empty() && !is_templated(&v.value))
                .map(|v| Value {
                    key: v.value.clone(),
                    shown: v.value.clone(),
                    span: v.span,
                }),
            zookeeper_list: list_value(config, "zookeeper", "hosts_list"),
            data_dir_count,
        }
    }
}

/// Reads one compared value of a node.
type Field = fn(&NodeSummary) -> &Option<Value>;

/// A cross-file finding about node `node` (an index into the summaries given to [`check`]).
#[derive(Clone, Debug)]
pub struct NodeFinding {
    /// Which node.
    pub node: usize,
    rule: &'static Rule,
    span: Span,
    label: String,
    message: String,
    help: String,
}

impl NodeFinding {
    /// The rule.
    pub fn rule(&self) -> &'static Rule {
        self.rule
    }

    /// Attaches the node's source to make a renderable finding.
    pub fn into_finding(self, source: &Arc<SourceFile>) -> Finding {
        Finding::new(self.rule, source, self.span, self.label, self.message).help(self.help)
    }
}

/// Compares the nodes; needs at least two.
pub fn check(nodes: &[NodeSummary]) -> Vec<NodeFinding> {
    let mut out = Vec::new();
    let fields: [(&'static Rule, &str, Field); 4] = [
        (&META_LIST_DIFFERS, "`[meta_server] server_list`", |n| {
            &n.meta_list
        }),
        (&CLUSTER_NAME_DIFFERS, "`[replication] cluster_name`", |n| {
            &n.cluster_name
        }),
        (&ZOOKEEPER_LIST_DIFFERS, "`[zookeeper] hosts_list`", |n| {
            &n.zookeeper_list
        }),
        (&DATA_DIR_COUNT_DIFFERS, "the number of `data_dirs`", |n| {
            &n.data_dir_count
        }),
    ];
    for (rule, what, field) in fields {
        // Count each distinct value, remembering the first node that has it.
        let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for (i, node) in nodes.iter().enumerate() {
            if let Some(v) = field(node) {
                counts.entry(v.key.as_str()).or_insert((0, i)).0 += 1;
            }
        }
        if counts.len() < 2 {
            continue;
        }
        let total: usize = counts.values().map(|c| c.0).sum();
        // The most common value; ties go to the one seen first.
        let (&common, &(count, example)) = counts
            .iter()
            .max_by(|a, b| a.1.0.cmp(&b.1.0).then(b.1.1.cmp(&a.1.1)))
            .expect("two values");
        let reference = field(&nodes[example]).as_ref().expect("counted");
        for (i, node) in nodes.iter().enumerate() {
            let Some(v) = field(node) else { continue };
            if v.key == common {
                continue;
            }
            out.push(NodeFinding {
                node: i,
                rule,
                span: v.span,
                label: format!("{count} of {total} nodes differ"),
                message: format!(
                    "{what} `{}` differs from the other nodes (`{}` uses `{}`)",
                    v.shown, nodes[example].name, reference.shown
                ),
                help: format!("use the same value on every node: `{}`", reference.shown),
            });
        }
    }
    out.sort_by_key(|f| f.node);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, metas: &str, dirs: &str) -> NodeSummary {
        let text = format!(
            "[meta_server]\nserver_list = {metas}\n[replication]\ndata_dirs = {dirs}\ncluster_name = c\n"
        );
        NodeSummary::of(&Config::from_text(name, text))
    }

    #[test]
    fn the_minority_node_is_reported_and_list_order_does_not_matter() {
        let nodes = [
            node("a", "10.0.0.1:1,10.0.0.2:1", "x:/a,y:/b"),
            node("b", "10.0.0.2:1, 10.0.0.1:1", "x:/a,y:/b"),
            node("c", "10.0.0.1:1", "x:/a"),
        ];
        let found = check(&nodes);
        let codes: Vec<_> = found.iter().map(|f| (f.node, f.rule.code)).collect();
        assert_eq!(codes, [(2, "PC090"), (2, "PC093")]);
        assert!(
            found[0]
                .message
                .contains("`a` uses `10.0.0.1:1,10.0.0.2:1`"),
            "{}",
            found[0].message
        );
    }
}
