//! `start_backup_app`, `query_backup_status`, `restore_app`, `query_restore_status`, and the
//! policies' `add_backup_policy`, `ls_backup_policy`, `query_backup_policy`,
//! `modify_backup_policy`, `disable_backup_policy`, `enable_backup_policy`: Pegasus's cold
//! backup commands, with its arguments.

use std::fmt::Write as _;

use pegasus_protocol::backup::{
    AddBackupPolicyRequest, ModifyBackupPolicyRequest, PROGRESS_FINISHED, RestoreRequest,
};

use super::{Line, Output, Shell, describe, flag, format_unix, pretty};

/// The value after `short` or `long` (`-c onebox`, `--old_cluster_name onebox`).
fn value(args: &[String], short: &str, long: &str) -> Option<String> {
    args.iter()
        .position(|a| a == short || a == long)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// `1,2,3` as ids.
fn ids(list: &str) -> Option<Vec<i32>> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().ok())
        .collect()
}

/// `2026-12-07 20:31:02` for Unix milliseconds (0: `-`).
fn format_ms(ms: i64) -> String {
    if ms <= 0 {
        "-".into()
    } else {
        format_unix(ms / 1000)
    }
}

const RESTORE_USAGE: &str = "usage: restore_app -c <old_cluster_name> -a <old_app_name> -i <old_app_id> -t <backup_id> -b <backup_provider_type> [-p old_policy_name] [-n new_app_name] [-s] [-r restore_path]";

impl Shell {
    /// Runs `c` if it is a backup command; `None` if it is not.
    pub(super) async fn run_backup(&mut self, c: &Line<'_>) -> Option<Output> {
        let out = match c.name {
            "start_backup_app" => self.start_backup_app(c).await,
            "query_backup_status" => self.query_backup_status(c).await,
            "restore_app" | "restore" => self.restore_app(c.rest).await,
            "query_restore_status" => self.query_restore_status(c).await,
            "add_backup_policy" => self.add_backup_policy(c.rest).await,
            "ls_backup_policy" => self.query_backup_policy(&[], 0, c.json).await,
            "query_backup_policy" => {
                let names: Vec<String> = value(c.rest, "-p", "--policy_name")
                    .map(|p| p.split(',').map(str::to_owned).collect())
                    .unwrap_or_default();
                let count = value(c.rest, "-b", "--backup_info_cnt")
                    .and_then(|b| b.parse().ok())
                    .unwrap_or(3);
                if names.is_empty() {
                    Err(
                        "usage: query_backup_policy -p <policy_name,…> [-b backup_info_cnt] [-j]"
                            .into(),
                    )
                } else {
                    self.query_backup_policy(&names, count, c.json).await
                }
            }
            "modify_backup_policy" => self.modify_backup_policy(c.rest, None).await,
            "disable_backup_policy" => self.modify_backup_policy(c.rest, Some(true)).await,
            "enable_backup_policy" => self.modify_backup_policy(c.rest, Some(false)).await,
            _ => return None,
        };
        Some(out)
    }

    async fn start_backup_app(&self, c: &Line<'_>) -> Output {
        let usage = || "usage: start_backup_app <app_id> <backup_provider_type> [backup_path]";
        let (Some(app_id), Some(provider)) = (
            c.positional.first().and_then(|a| a.parse::<i32>().ok()),
            c.positional.get(1),
        ) else {
            return Err(usage().into());
        };
        let path = c.positional.get(2).map(|p| p.as_str());
        let (id, hint) = self
            .client
            .start_backup_app(app_id, provider, path)
            .await
            .map_err(describe)?;
        if c.json {
            return pretty(&serde_json::json!({ "backup_id": id, "hint": hint }));
        }
        Ok(format!("backup started: backup_id {id} ({hint})"))
    }

    async fn query_backup_status(&self, c: &Line<'_>) -> Output {
        let usage = || "usage: query_backup_status <app_id> [backup_id] [-j]";
        let Some(app_id) = c.positional.first().and_then(|a| a.parse::<i32>().ok()) else {
            return Err(usage().into());
        };
        let backup_id = match c.positional.get(1) {
            Some(b) => Some(b.parse::<i64>().map_err(|_| usage().to_owned())?),
            None => None,
        };
        let items = self
            .client
            .query_backup_status(app_id, backup_id)
            .await
            .map_err(describe)?;
        let status = |failed: bool, end: i64| match (failed, end) {
            (true, _) => "failed",
            (false, 0) => "running",
            (false, _) => "complete",
        };
        if c.json {
            let rows: Vec<_> = items
                .iter()
                .map(|b| {
                    serde_json::json!({
                        "backup_id": b.backup_id,
                        "app_name": b.app_name,
                        "backup_provider_type": b.backup_provider_type,
                        "backup_path": b.backup_path,
                        "start_time_ms": b.start_time_ms,
                        "end_time_ms": b.end_time_ms,
                        "status": status(b.is_backup_failed, b.end_time_ms),
                    })
                })
                .collect();
            return pretty(&serde_json::json!({ "backups": rows }));
        }
        let mut out = format!(
            "{:<15} {:<16} {:<15} {:<19} {:<19} {:<9} backup_path\n",
            "backup_id", "app_name", "provider", "start_time", "end_time", "status"
        );
        for b in &items {
            let _ = writeln!(
                out,
                "{:<15} {:<16} {:<15} {:<19} {:<19} {:<9} {}",
                b.backup_id,
                b.app_name,
                b.backup_provider_type,
                format_ms(b.start_time_ms),
                format_ms(b.end_time_ms),
                status(b.is_backup_failed, b.end_time_ms),
                b.backup_path
            );
        }
        Ok(out)
    }

    async fn restore_app(&self, args: &[String]) -> Output {
        let get = |short, long| value(args, short, long);
        let (Some(cluster), Some(app_name), Some(app_id), Some(backup_id), Some(provider)) = (
            get("-c", "--old_cluster_name"),
            get("-a", "--old_app_name"),
            get("-i", "--old_app_id").and_then(|v| v.parse::<i32>().ok()),
            get("-t", "--timestamp").and_then(|v| v.parse::<i64>().ok()),
            get("-b", "--backup_provider_type"),
        ) else {
            return Err(RESTORE_USAGE.into());
        };
        let request = RestoreRequest {
            cluster_name: cluster,
            policy_name: get("-p", "--old_policy_name").unwrap_or_default(),
            time_stamp: backup_id,
            app_name,
            app_id,
            new_app_name: get("-n", "--new_app_name").unwrap_or_default(),
            backup_provider_name: provider,
            skip_bad_partition: flag(args, "-s") || flag(args, "--skip_bad_partition"),
            restore_path: get("-r", "--restore_path"),
        };
        let name = if request.new_app_name.is_empty() {
            request.app_name.clone()
        } else {
            request.new_app_name.clone()
        };
        let new_id = self.client.restore_app(request).await.map_err(describe)?;
        Ok(format!(
            "restore started: table `{name}` (app_id {new_id}); `query_restore_status {new_id}` follows it"
        ))
    }

    async fn add_backup_policy(&self, args: &[String]) -> Output {
        let get = |short, long| value(args, short, long);
        let usage = "usage: add_backup_policy -p <policy_name> -b <backup_provider_type> -a <app_id,…> -i <backup_interval_seconds> -s <HH:MM> -c <backup_history_cnt>";
        let (Some(name), Some(provider), Some(apps), Some(interval), Some(start), Some(keep)) = (
            get("-p", "--policy_name"),
            get("-b", "--backup_provider_type"),
            get("-a", "--app_ids"),
            get("-i", "--backup_interval_seconds").and_then(|v| v.parse::<i64>().ok()),
            get("-s", "--start_time"),
            get("-c", "--backup_history_cnt").and_then(|v| v.parse::<i32>().ok()),
        ) else {
            return Err(usage.into());
        };
        let app_ids = ids(&apps).ok_or(usage)?;
        self.client
            .add_backup_policy(AddBackupPolicyRequest {
                backup_provider_type: provider,
                policy_name: name.clone(),
                app_ids,
                backup_interval_seconds: interval,
                backup_history_count_to_keep: keep,
                start_time: start,
            })
            .await
            .map_err(describe)?;
        Ok(format!("policy {name} added"))
    }

    async fn modify_backup_policy(&self, args: &[String], disable: Option<bool>) -> Output {
        let get = |short, long| value(args, short, long);
        let Some(name) = get("-p", "--policy_name") else {
            return Err("usage: modify_backup_policy -p <policy_name> [-a add_app_id,…] [-r remove_app_id,…] [-i interval_seconds] [-c history_cnt] [-s HH:MM]".into());
        };
        let request = ModifyBackupPolicyRequest {
            policy_name: name.clone(),
            add_appids: get("-a", "--add_app").and_then(|a| ids(&a)),
            removal_appids: get("-r", "--remove_app").and_then(|a| ids(&a)),
            new_backup_interval_sec: get("-i", "--backup_interval_seconds")
                .and_then(|v| v.parse().ok()),
            backup_history_count_to_keep: get("-c", "--backup_history_cnt")
                .and_then(|v| v.parse().ok()),
            is_disable: disable,
            start_time: get("-s", "--start_time"),
        };
        self.client
            .modify_backup_policy(request)
            .await
            .map_err(describe)?;
        Ok(match disable {
            Some(true) => format!("policy {name} disabled"),
            Some(false) => format!("policy {name} enabled"),
            None => format!("policy {name} modified"),
        })
    }

    async fn query_backup_policy(&self, names: &[String], count: i32, json: bool) -> Output {
        let r = self
            .client
            .query_backup_policy(names.to_vec(), count)
            .await
            .map_err(describe)?;
        if json {
            let policies: Vec<_> = r
                .policys
                .iter()
                .zip(r.backup_infos.iter().chain(std::iter::repeat(&Vec::new())))
                .map(|(p, backups)| {
                    serde_json::json!({
                        "policy_name": p.policy_name,
                        "backup_provider_type": p.backup_provider_type,
                        "backup_interval_seconds": p.backup_interval_seconds,
                        "app_ids": p.app_ids,
                        "backup_history_count_to_keep": p.backup_history_count_to_keep,
                        "start_time": p.start_time,
                        "is_disable": p.is_disable,
                        "backups": backups.iter().map(|b| serde_json::json!({
                            "backup_id": b.backup_id,
                            "start_time_ms": b.start_time_ms,
                            "end_time_ms": b.end_time_ms,
                            "app_ids": b.app_ids,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            return pretty(&serde_json::json!({ "policies": policies }));
        }
        let mut out = String::new();
        for (i, p) in r.policys.iter().enumerate() {
            let apps: Vec<String> = p.app_ids.iter().map(i32::to_string).collect();
            let _ = writeln!(
                out,
                "policy_name          : {}\nbackup_provider_type : {}\nbackup_interval      : {}s\napp_ids              : {{{}}}\nstart_time           : {}\nstatus               : {}\nbackup_history_count : {}",
                p.policy_name,
                p.backup_provider_type,
                p.backup_interval_seconds,
                apps.join(", "),
                p.start_time,
                if p.is_disable { "disabled" } else { "enabled" },
                p.backup_history_count_to_keep
            );
            for b in r.backup_infos.get(i).into_iter().flatten() {
                let apps: Vec<String> = b.app_ids.iter().map(i32::to_string).collect();
                let _ = writeln!(
                    out,
                    "  backup {:<15} {} .. {}  app_ids {{{}}}",
                    b.backup_id,
                    format_ms(b.start_time_ms),
                    format_ms(b.end_time_ms),
                    apps.join(", ")
                );
            }
            out.push('\n');
        }
        Ok(out)
    }

    async fn query_restore_status(&self, c: &Line<'_>) -> Output {
        let Some(app_id) = c.positional.first().and_then(|a| a.parse::<i32>().ok()) else {
            return Err("usage: query_restore_status <restore_app_id> [-d] [-j]".into());
        };
        let r = self
            .client
            .query_restore_status(app_id)
            .await
            .map_err(describe)?;
        let n = r.restore_progress.len().max(1);
        let total: i64 = r.restore_progress.iter().map(|p| i64::from(*p)).sum();
        let percent = total * 100 / (n as i64 * i64::from(PROGRESS_FINISHED));
        let done = r
            .restore_progress
            .iter()
            .filter(|p| **p >= PROGRESS_FINISHED)
            .count();
        let failed: Vec<(usize, &str)> = r
            .restore_status
            .iter()
            .enumerate()
            .filter(|(_, s)| s.0 != "ERR_OK")
            .map(|(i, s)| (i, s.0.as_str()))
            .collect();
        if c.json {
            let partitions: Vec<_> = r
                .restore_status
                .iter()
                .zip(&r.restore_progress)
                .enumerate()
                .map(|(i, (s, p))| serde_json::json!({ "pidx": i, "status": s.0, "progress": p }))
                .collect();
            return pretty(&serde_json::json!({
                "app_id": app_id,
                "progress_percent": percent,
                "partitions_done": done,
                "partitions": partitions,
            }));
        }
        let state = if !failed.is_empty() {
            "failed"
        } else if done == r.restore_progress.len() {
            "done"
        } else {
            "restoring"
        };
        let mut out = format!(
            "table {app_id}: {state}, {percent}% ({done} of {} partitions serving)\n",
            r.restore_progress.len()
        );
        for (i, s) in &failed {
            let _ = writeln!(out, "  partition {i}: {s}");
        }
        if flag(c.rest, "-d") {
            for (i, (s, p)) in r.restore_status.iter().zip(&r.restore_progress).enumerate() {
                let _ = writeln!(out, "  {i:>4}  {:<22} {p}", s.0);
            }
        }
        Ok(out)
    }
}
