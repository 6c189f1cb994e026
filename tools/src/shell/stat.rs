//! `server_stat`, `app_stat`: request rates, p99 latencies and storage, from every replica
//! server's `/metrics` scraped twice a window apart.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use pegasus_protocol::types::*;

use super::{Line, Output, Shell, describe, option, pretty};
use crate::scrape::{self, Sample, Window};

impl Shell {
    /// Runs `c` if it is a command of statistics; `None` if it is not.
    pub(super) async fn run_stat(&mut self, c: &Line<'_>) -> Option<Output> {
        let out = match c.name {
            "server_stat" => self.server_stat(c.json).await,
            "app_stat" => self.app_stat(option(c.rest, "-a"), c.json).await,
            _ => return None,
        };
        Some(out)
    }

    /// Every alive replica server's `/metrics`, twice, `STAT_WINDOW` apart.
    pub(super) async fn scrape_replicas(&self) -> Result<Vec<(SocketAddr, Window)>, String> {
        let nodes: Vec<SocketAddr> = self
            .client
            .list_nodes()
            .await
            .map_err(describe)?
            .iter()
            .filter(|n| n.status == node_status::ALIVE)
            .filter_map(|n| n.address.socket_addr().map(SocketAddr::V4))
            .collect();
        tokio::task::spawn_blocking(move || {
            let scrape = |a: &SocketAddr| {
                scrape::get(*a, "/metrics", Duration::from_secs(5))
                    .map(|answer| scrape::parse(&answer.body))
                    .map_err(|e| format!("{a}: {e}"))
            };
            let before: Vec<Vec<Sample>> = nodes.iter().map(scrape).collect::<Result<_, _>>()?;
            let started = std::time::Instant::now();
            std::thread::sleep(STAT_WINDOW);
            let mut out = Vec::new();
            for (a, before) in nodes.iter().zip(before) {
                out.push((
                    *a,
                    Window {
                        after: scrape(a)?,
                        before,
                        seconds: started.elapsed().as_secs_f64(),
                    },
                ));
            }
            Ok(out)
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// `server_stat`: per replica server, QPS by kind and p99 latency of reads and writes over
    /// a second, its replicas and storage.
    pub(super) async fn server_stat(&self, json: bool) -> Output {
        let windows = self.scrape_replicas().await?;
        let mut doc = serde_json::Map::new();
        let mut out = String::new();
        for (addr, w) in &windows {
            let mut stats: Vec<(String, String)> = Vec::new();
            for op in STAT_OPS {
                let qps = w.rate(REQUESTS, &[("op", op)]);
                stats.push((format!("{op}_qps"), format!("{qps:.2}")));
            }
            for op in ["get", "put"] {
                let p99 = w.p99_ms(LATENCY, &[("op", op)]);
                stats.push((format!("{op}_p99_ms"), format!("{p99:.2}")));
            }
            for (key, name) in [
                ("replicas", "pegasus_replicas"),
                ("sst_bytes", "pegasus_rocksdb_sst_bytes"),
                ("sst_files", "pegasus_rocksdb_sst_files"),
                ("memtable_bytes", "pegasus_rocksdb_memtable_bytes"),
            ] {
                stats.push((
                    key.into(),
                    format!("{}", scrape::total(&w.after, name, &[])),
                ));
            }
            if json {
                doc.insert(
                    addr.to_string(),
                    stats
                        .iter()
                        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
                        .collect(),
                );
            } else {
                let line: Vec<String> = stats.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = writeln!(out, "[{addr}] replica: {}", line.join(", "));
            }
        }
        if json {
            return pretty(&serde_json::Value::Object(doc));
        }
        let _ = write!(
            out,
            "\n{} replica servers, over {:?}",
            windows.len(),
            STAT_WINDOW
        );
        Ok(out)
    }

    /// `app_stat [-a table]`: per table, QPS by kind over a second, and its storage (one copy's
    /// worth: what every copy holds, divided by the copies).
    pub(super) async fn app_stat(&self, only: Option<String>, json: bool) -> Output {
        let apps = self
            .client
            .list_apps(app_status::AVAILABLE)
            .await
            .map_err(describe)?;
        let names: Vec<String> = apps
            .iter()
            .map(|a| a.app_name.clone())
            .filter(|n| only.as_ref().is_none_or(|o| o == n))
            .collect();
        if let Some(o) = &only
            && names.is_empty()
        {
            return Err(format!("no table `{o}`"));
        }
        let windows = self.scrape_replicas().await?;
        let columns: Vec<String> = STAT_OPS
            .iter()
            .map(|o| o.to_uppercase())
            .chain(["file_mb", "file_num", "mem_tbl_mb"].map(String::from))
            .collect();
        let mut rows: Vec<(String, Vec<f64>)> = Vec::new();
        for name in &names {
            let t = [("table", name.as_str())];
            let mut row: Vec<f64> = STAT_OPS
                .iter()
                .map(|op| {
                    windows
                        .iter()
                        .map(|(_, w)| w.rate(REQUESTS, &[("table", name.as_str()), ("op", op)]))
                        .sum()
                })
                .collect();
            let sum = |metric: &str| -> f64 {
                windows
                    .iter()
                    .map(|(_, w)| scrape::total(&w.after, metric, &t))
                    .sum()
            };
            // Every copy holds the table once: the primaries' share is one copy's worth.
            let copies = apps
                .iter()
                .find(|a| &a.app_name == name)
                .map_or(1, |a| a.max_replica_count.max(1)) as f64;
            row.push(sum("pegasus_rocksdb_sst_bytes") / copies / (1 << 20) as f64);
            row.push(sum("pegasus_rocksdb_sst_files") / copies);
            row.push(sum("pegasus_rocksdb_memtable_bytes") / copies / (1 << 20) as f64);
            rows.push((name.clone(), row));
        }
        if json {
            let doc: serde_json::Map<String, serde_json::Value> = rows
                .iter()
                .map(|(name, row)| {
                    let stats: serde_json::Map<String, serde_json::Value> = columns
                        .iter()
                        .zip(row)
                        .map(|(c, v)| (c.clone(), format!("{v:.2}").into()))
                        .collect();
                    (name.clone(), stats.into())
                })
                .collect();
            return pretty(&serde_json::json!({ "app_stat": doc }));
        }
        let mut out = format!("{:<20}", "app_name");
        for c in &columns {
            let _ = write!(out, "{c:>12}");
        }
        out.push('\n');
        for (name, row) in &rows {
            let _ = write!(out, "{name:<20}");
            for v in row {
                let _ = write!(out, "{v:>12.2}");
            }
            out.push('\n');
        }
        let _ = write!(out, "\n{} tables, over {:?}", rows.len(), STAT_WINDOW);
        Ok(out)
    }
}

/// The window `server_stat` and `app_stat` measure rates over.
const STAT_WINDOW: Duration = Duration::from_secs(1);
/// The request kinds they show, as the replica servers label them.
const STAT_OPS: [&str; 11] = [
    "get",
    "multi_get",
    "batch_get",
    "put",
    "multi_put",
    "remove",
    "multi_remove",
    "incr",
    "check_and_set",
    "check_and_mutate",
    "scan",
];
const REQUESTS: &str = "pegasus_replica_requests_total";
const LATENCY: &str = "pegasus_replica_request_latency_seconds";
