//! `cluster_info`, `nodes`, `get_meta_level`, `set_meta_level`: the cluster's metas and replica
//! servers, and the meta's function level.

use std::fmt::Write as _;

use pegasus_client::admin::role_counts;
use pegasus_protocol::types::*;

use super::{Line, Output, Shell, describe, flag, pretty};

impl Shell {
    /// Runs `c` if it is a command of the cluster and its nodes; `None` if it is not.
    pub(super) async fn run_nodes(&mut self, c: &Line<'_>) -> Option<Output> {
        let out = match c.name {
            "cluster_info" => self.cluster_info(c.json).await,
            "nodes" => self.nodes(flag(c.rest, "-d"), c.json).await,
            "get_meta_level" => self.meta_level(None, c.json).await,
            "set_meta_level" => match c.positional.first() {
                Some(level) => match meta_function_level::parse(level) {
                    Some(l) => self.meta_level(Some(l), c.json).await,
                    None => Err(format!(
                        "unknown level `{level}`: freezed, steady or lively"
                    )),
                },
                None => Err("usage: set_meta_level <freezed|steady|lively>".into()),
            },
            _ => return None,
        };
        Some(out)
    }

    pub(super) async fn cluster_info(&self, json: bool) -> Output {
        let pairs = self.client.cluster_info().await.map_err(describe)?;
        if json {
            let info: serde_json::Map<String, serde_json::Value> = pairs
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            return pretty(&serde_json::json!({ "cluster_info": info }));
        }
        let mut out = String::new();
        for (k, v) in &pairs {
            let _ = writeln!(out, "{k:<24}: {v}");
        }
        Ok(out)
    }

    pub(super) async fn nodes(&self, detailed: bool, json: bool) -> Output {
        let nodes = self.client.list_nodes().await.map_err(describe)?;
        let roles = if detailed {
            let apps = self
                .client
                .list_apps(app_status::AVAILABLE)
                .await
                .map_err(describe)?;
            role_counts(&self.routings(&apps).await?)
        } else {
            Default::default()
        };
        let alive = nodes
            .iter()
            .filter(|n| n.status == node_status::ALIVE)
            .count();
        let status = |n: &NodeInfo| {
            if n.status == node_status::ALIVE {
                "ALIVE"
            } else {
                "UNALIVE"
            }
        };
        let counts = |n: &NodeInfo| roles.get(&n.address).copied().unwrap_or_default();
        if json {
            let details: serde_json::Map<String, serde_json::Value> = nodes
                .iter()
                .map(|n| {
                    let (p, s) = counts(n);
                    let mut v = serde_json::json!({ "address": n.address.to_string(), "status": status(n) });
                    if detailed {
                        v["replica_count"] = (p + s).into();
                        v["primary_count"] = p.into();
                        v["secondary_count"] = s.into();
                    }
                    (n.address.to_string(), v)
                })
                .collect();
            return pretty(&serde_json::json!({
                "details": details,
                "summary": { "total_node_count": nodes.len(), "alive_node_count": alive, "unalive_node_count": nodes.len() - alive },
            }));
        }
        let mut out = String::new();
        if detailed {
            let _ = writeln!(
                out,
                "{:<24}{:<10}{:<15}{:<15}{:<15}",
                "address", "status", "replica_count", "primary_count", "secondary_count"
            );
        } else {
            let _ = writeln!(out, "{:<24}{:<10}", "address", "status");
        }
        for n in &nodes {
            if detailed {
                let (p, s) = counts(n);
                let _ = writeln!(
                    out,
                    "{:<24}{:<10}{:<15}{:<15}{:<15}",
                    n.address,
                    status(n),
                    p + s,
                    p,
                    s
                );
            } else {
                let _ = writeln!(out, "{:<24}{:<10}", n.address, status(n));
            }
        }
        let _ = writeln!(
            out,
            "\ntotal_node_count    : {}\nalive_node_count    : {alive}\nunalive_node_count  : {}",
            nodes.len(),
            nodes.len() - alive
        );
        Ok(out)
    }

    pub(super) async fn meta_level(&self, set: Option<i32>, json: bool) -> Output {
        let old = self
            .client
            .meta_level(set.unwrap_or(meta_function_level::INVALID))
            .await
            .map_err(describe)?;
        let name = meta_function_level::name(old);
        match (set, json) {
            (None, true) => pretty(&serde_json::json!({ "meta_level": format!("fl_{name}") })),
            (None, false) => Ok(format!("current meta level is fl_{name}")),
            (Some(new), _) => Ok(format!(
                "control meta level ok, the old level is fl_{name}, the new level is fl_{}",
                meta_function_level::name(new)
            )),
        }
    }
}
