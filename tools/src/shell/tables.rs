//! `ls`, `app`, `create`, `drop`, `recall`, `query_compact`: tables and their partitions.

use std::fmt::Write as _;

use pegasus_protocol::health::{DEFAULT_MIN_WRITE_MEMBERS, Health};
use pegasus_protocol::types::*;

use super::{Line, Output, Shell, describe, flag, format_unix, option, pretty};

impl Shell {
    /// Runs `c` if it is a command of tables; `None` if it is not.
    pub(super) async fn run_tables(&mut self, c: &Line<'_>) -> Option<Output> {
        let out = match c.name {
            "ls" => {
                self.ls(flag(c.rest, "-d"), flag(c.rest, "-a"), c.json)
                    .await
            }
            "app" => match c.positional.first() {
                Some(name) => self.app(name, flag(c.rest, "-d"), c.json).await,
                None => Err("usage: app <table> [-d] [-j]".into()),
            },
            "create" => match c.positional.first() {
                Some(name) => self.create(name, c.rest).await,
                None => {
                    Err("usage: create <table> [-p partitions] [-r replicas] [-e k=v,k=v…]".into())
                }
            },
            "drop" => match c.positional.first() {
                Some(name) => {
                    let reserve = match option(c.rest, "-r") {
                        Some(r) => match r.parse() {
                            Ok(r) => Some(r),
                            Err(_) => return Some(Err(format!("-r {r}: not a number of seconds"))),
                        },
                        None => None,
                    };
                    self.drop_app(name, reserve).await
                }
                None => Err("usage: drop <table> [-r reserve_seconds]".into()),
            },
            "recall" => match c.positional.first().map(|id| id.parse::<i32>()) {
                Some(Ok(id)) => {
                    let new_name = c.positional.get(1).map_or("", |n| n.as_str());
                    self.recall(id, new_name).await
                }
                _ => Err("usage: recall <app_id> [new_app_name]".into()),
            },
            "query_compact" => match option(c.rest, "-a") {
                Some(table) => self.query_compact(&table, c.json).await,
                None => Err("usage: query_compact -a <table> [-j]".into()),
            },
            _ => return None,
        };
        Some(out)
    }

    pub(super) async fn ls(&self, detailed: bool, all: bool, json: bool) -> Output {
        let mut apps = self
            .client
            .list_apps(app_status::INVALID)
            .await
            .map_err(describe)?;
        if !all {
            apps.retain(|a| a.status == app_status::AVAILABLE);
        }
        let mut health = Vec::new();
        if detailed {
            for r in self.routings(&apps).await? {
                health.push((
                    r.app_id,
                    Health::of(&r.partitions, DEFAULT_MIN_WRITE_MEMBERS),
                ));
            }
        }
        let health_of = |id: i32| health.iter().find(|(a, _)| *a == id).map(|(_, h)| *h);
        let time = |secs: i64| {
            if secs == 0 {
                "-".to_owned()
            } else {
                format_unix(secs)
            }
        };
        if json {
            let general: serde_json::Map<String, serde_json::Value> = apps
                .iter()
                .map(|a| (a.app_id.to_string(), serde_json::json!({ "app_id": a.app_id, "status": app_status::name(a.status), "app_name": a.app_name, "app_type": a.app_type, "partition_count": a.partition_count, "replica_count": a.max_replica_count, "is_stateful": a.is_stateful, "create_time": time(a.create_second), "drop_time": time(a.drop_second), "drop_expire": time(a.expire_second), "envs_count": a.envs.len() })))
                .collect();
            let mut doc = serde_json::json!({ "general_info": general, "summary": { "total_app_count": apps.len() } });
            if detailed {
                let healthy: serde_json::Map<String, serde_json::Value> = apps
                    .iter()
                    .filter_map(|a| Some((a, health_of(a.app_id)?)))
                    .map(|(a, h)| (a.app_id.to_string(), serde_json::json!({ "app_id": a.app_id, "app_name": a.app_name, "partition_count": a.partition_count, "fully_healthy": h.fully_healthy, "unhealthy": h.unhealthy, "write_unhealthy": h.write_unhealthy, "read_unhealthy": h.read_unhealthy })))
                    .collect();
                doc["healthy_info"] = healthy.into();
            }
            return pretty(&doc);
        }
        let mut out = String::from("[general_info]\n");
        let _ = writeln!(
            out,
            "{:<8}{:<14}{:<16}{:<10}{:<17}{:<15}{:<13}{:<21}{:<21}{:<21}envs_count",
            "app_id",
            "status",
            "app_name",
            "app_type",
            "partition_count",
            "replica_count",
            "is_stateful",
            "create_time",
            "drop_time",
            "drop_expire",
        );
        for a in &apps {
            let _ = writeln!(
                out,
                "{:<8}{:<14}{:<16}{:<10}{:<17}{:<15}{:<13}{:<21}{:<21}{:<21}{}",
                a.app_id,
                app_status::name(a.status),
                a.app_name,
                a.app_type,
                a.partition_count,
                a.max_replica_count,
                a.is_stateful,
                time(a.create_second),
                time(a.drop_second),
                time(a.expire_second),
                a.envs.len()
            );
        }
        if detailed {
            out.push_str("\n[healthy_info]\n");
            let _ = writeln!(
                out,
                "{:<8}{:<16}{:<17}{:<15}{:<11}{:<17}{:<16}",
                "app_id",
                "app_name",
                "partition_count",
                "fully_healthy",
                "unhealthy",
                "write_unhealthy",
                "read_unhealthy"
            );
            for a in &apps {
                if let Some(h) = health_of(a.app_id) {
                    let _ = writeln!(
                        out,
                        "{:<8}{:<16}{:<17}{:<15}{:<11}{:<17}{:<16}",
                        a.app_id,
                        a.app_name,
                        a.partition_count,
                        h.fully_healthy,
                        h.unhealthy,
                        h.write_unhealthy,
                        h.read_unhealthy
                    );
                }
            }
        }
        let _ = writeln!(out, "\n[summary]\ntotal_app_count     : {}", apps.len());
        Ok(out)
    }

    /// The routing of every available table.
    pub(super) async fn routings(&self, apps: &[AppInfo]) -> Result<Vec<QueryCfgResponse>, String> {
        let mut out = Vec::with_capacity(apps.len());
        for a in apps.iter().filter(|a| a.status == app_status::AVAILABLE) {
            out.push(
                self.client
                    .query_config(&a.app_name)
                    .await
                    .map_err(describe)?,
            );
        }
        Ok(out)
    }

    pub(super) async fn app(&mut self, name: &str, detailed: bool, json: bool) -> Output {
        let config = self.client.query_config(name).await.map_err(describe)?;
        let max_replicas = config.partitions.first().map_or(0, |p| p.max_replica_count);
        let h = Health::of(&config.partitions, DEFAULT_MIN_WRITE_MEMBERS);
        let members = |p: &PartitionConfiguration| {
            usize::from(p.primary.socket_addr().is_some()) + p.secondaries.len()
        };
        if json {
            let mut doc = serde_json::json!({
                "parameters": { "app_name": name, "detailed": detailed },
                "general": { "app_name": name, "app_id": config.app_id, "partition_count": config.partition_count, "max_replica_count": max_replicas },
            });
            if detailed {
                let replicas: serde_json::Map<String, serde_json::Value> = config
                    .partitions
                    .iter()
                    .map(|p| (p.pid.partition_index.to_string(), serde_json::json!({ "pidx": p.pid.partition_index, "ballot": p.ballot, "replica_count": format!("{}/{}", members(p), p.max_replica_count), "primary": p.primary.to_string(), "secondaries": p.secondaries.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "last_committed_decree": p.last_committed_decree })))
                    .collect();
                doc["replicas"] = replicas.into();
                doc["summary"] = serde_json::json!({ "fully_healthy_partition_count": h.fully_healthy, "unhealthy_partition_count": h.unhealthy, "write_unhealthy_partition_count": h.write_unhealthy, "read_unhealthy_partition_count": h.read_unhealthy });
            }
            return pretty(&doc);
        }
        let mut out = String::from("[parameters]\n");
        let _ = writeln!(
            out,
            "app_name            : {name}\ndetailed            : {detailed}\n\n[general]"
        );
        let _ = writeln!(
            out,
            "app_name            : {name}\napp_id              : {}\npartition_count     : {}\nmax_replica_count   : {max_replicas}",
            config.app_id, config.partition_count
        );
        if detailed {
            out.push_str("\n[replicas]\n");
            let _ = writeln!(
                out,
                "{:<6}{:<8}{:<15}{:<24}secondaries",
                "pidx", "ballot", "replica_count", "primary"
            );
            for p in &config.partitions {
                let secondaries: Vec<String> =
                    p.secondaries.iter().map(|s| s.to_string()).collect();
                let _ = writeln!(
                    out,
                    "{:<6}{:<8}{:<15}{:<24}[{}]",
                    p.pid.partition_index,
                    p.ballot,
                    format!("{}/{}", members(p), p.max_replica_count),
                    p.primary,
                    secondaries.join(",")
                );
            }
            let _ = writeln!(
                out,
                "\n[summary]\nfully_healthy_partition_count    : {}\nunhealthy_partition_count        : {}\nwrite_unhealthy_partition_count  : {}\nread_unhealthy_partition_count   : {}",
                h.fully_healthy, h.unhealthy, h.write_unhealthy, h.read_unhealthy
            );
        }
        Ok(out)
    }

    pub(super) async fn create(&self, name: &str, rest: &[String]) -> Output {
        let number = |flag: &str, default: i32| match option(rest, flag) {
            Some(v) => v
                .parse::<i32>()
                .map_err(|_| format!("{flag} {v}: not a number")),
            None => Ok(default),
        };
        let envs = match option(rest, "-e") {
            Some(list) => configcheck::envs::parse_list(&list)
                .map_err(|e| format!("-e: {e}"))?
                .into_iter()
                .collect(),
            None => Default::default(),
        };
        let options = CreateAppOptions {
            partition_count: number("-p", 4)?,
            replica_count: number("-r", 3)?,
            success_if_exist: false,
            app_type: "pegasus".into(),
            is_stateful: true,
            envs,
        };
        match self.client.create_app(name, options).await {
            Ok(id) => Ok(format!("create app \"{name}\" succeed, app_id = {id}")),
            Err(e) => Err(format!("create app \"{name}\" failed: {e}")),
        }
    }

    pub(super) async fn drop_app(&mut self, name: &str, reserve: Option<i64>) -> Output {
        self.tables.remove(name);
        match self.client.drop_app(name, reserve).await {
            Ok(()) => Ok(format!("drop app {name} succeed")),
            Err(e) => Err(format!("drop app {name} failed: {e}")),
        }
    }

    pub(super) async fn recall(&mut self, id: i32, new_name: &str) -> Output {
        match self.client.recall_app(id, new_name).await {
            Ok(info) => {
                self.tables.remove(&info.app_name);
                Ok(format!(
                    "recall app ok, id({}), name({}), partition_count({})",
                    info.app_id, info.app_name, info.partition_count
                ))
            }
            Err(e) => Err(format!("recall app failed: {e}")),
        }
    }

    pub(super) async fn query_compact(&self, table: &str, json: bool) -> Output {
        let (progress, hint) = self
            .client
            .manual_compact_progress(table)
            .await
            .map_err(describe)?;
        if json {
            return pretty(
                &serde_json::json!({ "app_name": table, "progress": progress, "hint": hint }),
            );
        }
        Ok(format!(
            "manual compaction of {table}: {progress}% ({hint})"
        ))
    }
}
