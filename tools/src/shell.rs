//! `pegasus_shell`: Pegasus's shell commands over the Rust client. Lines come from a terminal
//! (with line editing and history) or from standard input (`echo "app temp -d" | pegasus_shell`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use pegasus_client::admin::{Health, MIN_WRITE_MEMBERS, role_counts};
use pegasus_client::{Client, ClientError, Table};
use pegasus_client::{MultiGetOptions, ScanOptions};
use pegasus_protocol::types::*;

use crate::scrape::{self, Sample, Window};

/// A shell session: the cluster and the table in use.
pub struct Shell {
    client: Client,
    tables: HashMap<String, Table>,
    current: Option<String>,
}

/// What a command printed, or why it failed (printed as `ERROR: …`).
pub type Output = Result<String, String>;

fn words(line: &str) -> Vec<String> {
    // Quotes group words: `set h s "a value"`.
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn flag(args: &[String], name: &str) -> bool {
    args.iter().any(|a| a == name)
}

fn option(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn describe(e: ClientError) -> String {
    e.to_string()
}

/// The arguments that are neither flags nor flag values (`-p 8`).
fn positional(args: &[String]) -> Vec<&String> {
    const VALUED: [&str; 4] = ["-p", "-r", "-e", "-a"];
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
        } else if a.starts_with('-') && a.len() > 1 && a.parse::<i64>().is_err() {
            skip = VALUED.contains(&a.as_str());
        } else {
            out.push(a);
        }
    }
    out
}

fn pretty(value: &serde_json::Value) -> Output {
    serde_json::to_string_pretty(value).map_err(|e| e.to_string())
}

/// `2026-12-01 17:05:31` (UTC) for Unix seconds.
fn format_unix(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (proleptic Gregorian), after Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

impl Shell {
    /// A shell of the cluster whose metas are `metas`.
    pub fn new(metas: Vec<SocketAddr>) -> Self {
        let mut options = pegasus_client::ClientOptions::new(metas);
        options.timeout = Duration::from_secs(10);
        Shell {
            client: Client::new(options),
            tables: HashMap::new(),
            current: None,
        }
    }

    /// The prompt: `>>> ` or `table >>> `.
    pub fn prompt(&self) -> String {
        match &self.current {
            Some(t) => format!("{t} >>> "),
            None => ">>> ".into(),
        }
    }

    async fn table(&mut self, name: Option<&str>) -> Result<Table, String> {
        let name = name
            .map(str::to_owned)
            .or_else(|| self.current.clone())
            .ok_or("no table in use: `use <table>` first")?;
        if let Some(t) = self.tables.get(&name) {
            return Ok(t.clone());
        }
        let t = self.client.open_table(&name).await.map_err(describe)?;
        self.tables.insert(name, t.clone());
        Ok(t)
    }

    /// Runs one line; `None` means exit.
    pub async fn run_line(&mut self, line: &str) -> Option<Output> {
        let args = words(line);
        let Some(cmd) = args.first().map(String::as_str) else {
            return Some(Ok(String::new()));
        };
        let rest = &args[1..];
        let json = flag(rest, "-j");
        let positional: Vec<&String> = positional(rest);
        let out = match cmd {
            "exit" | "quit" => return None,
            "help" => Ok(HELP.to_owned()),
            "version" => Ok(format!("pegasus_shell {}", env!("CARGO_PKG_VERSION"))),
            "cluster_info" => self.cluster_info(json).await,
            "nodes" => self.nodes(flag(rest, "-d"), json).await,
            "ls" => self.ls(flag(rest, "-d"), flag(rest, "-a"), json).await,
            "app" => match positional.first() {
                Some(name) => self.app(name, flag(rest, "-d"), json).await,
                None => Err("usage: app <table> [-d] [-j]".into()),
            },
            "create" => match positional.first() {
                Some(name) => self.create(name, rest).await,
                None => {
                    Err("usage: create <table> [-p partitions] [-r replicas] [-e k=v,k=v…]".into())
                }
            },
            "drop" => match positional.first() {
                Some(name) => {
                    let reserve = match option(rest, "-r") {
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
            "recall" => match positional.first().map(|id| id.parse::<i32>()) {
                Some(Ok(id)) => {
                    let new_name = positional.get(1).map_or("", |n| n.as_str());
                    self.recall(id, new_name).await
                }
                _ => Err("usage: recall <app_id> [new_app_name]".into()),
            },
            "get_app_envs" => self.get_app_envs(json).await,
            "set_app_envs" => self.set_app_envs(&positional).await,
            "del_app_envs" => self.del_app_envs(&positional).await,
            "clear_app_envs" => {
                let prefix = if flag(rest, "-a") {
                    Some(String::new())
                } else {
                    option(rest, "-p")
                };
                match prefix {
                    Some(prefix) => self.clear_app_envs(prefix).await,
                    None => Err("usage: clear_app_envs [-a | -p prefix]".into()),
                }
            }
            "query_compact" => match option(rest, "-a") {
                Some(table) => self.query_compact(&table, json).await,
                None => Err("usage: query_compact -a <table> [-j]".into()),
            },
            "server_stat" => self.server_stat(json).await,
            "app_stat" => self.app_stat(option(rest, "-a"), json).await,
            "get_meta_level" => self.meta_level(None, json).await,
            "set_meta_level" => match positional.first() {
                Some(level) => match meta_function_level::parse(level) {
                    Some(l) => self.meta_level(Some(l), json).await,
                    None => Err(format!(
                        "unknown level `{level}`: freezed, steady or lively"
                    )),
                },
                None => Err("usage: set_meta_level <freezed|steady|lively>".into()),
            },
            "use" => match positional.first() {
                Some(name) => match self.table(Some(name)).await {
                    Ok(_) => {
                        self.current = Some((*name).clone());
                        Ok(format!("OK, now use table `{name}`"))
                    }
                    Err(e) => Err(e),
                },
                None => Err("usage: use <table>".into()),
            },
            _ => self.data(cmd, rest).await,
        };
        Some(out)
    }

    /// Every alive replica server's `/metrics`, twice, `STAT_WINDOW` apart.
    async fn scrape_replicas(&self) -> Result<Vec<(SocketAddr, Window)>, String> {
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
    async fn server_stat(&self, json: bool) -> Output {
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
    async fn app_stat(&self, only: Option<String>, json: bool) -> Output {
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

    async fn cluster_info(&self, json: bool) -> Output {
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

    /// The routing of every available table.
    async fn routings(&self, apps: &[AppInfo]) -> Result<Vec<QueryCfgResponse>, String> {
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

    async fn nodes(&self, detailed: bool, json: bool) -> Output {
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

    async fn ls(&self, detailed: bool, all: bool, json: bool) -> Output {
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
                health.push((r.app_id, Health::of(&r.partitions, MIN_WRITE_MEMBERS)));
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

    async fn app(&mut self, name: &str, detailed: bool, json: bool) -> Output {
        let config = self.client.query_config(name).await.map_err(describe)?;
        let max_replicas = config.partitions.first().map_or(0, |p| p.max_replica_count);
        let h = Health::of(&config.partitions, MIN_WRITE_MEMBERS);
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

    async fn create(&self, name: &str, rest: &[String]) -> Output {
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

    async fn drop_app(&mut self, name: &str, reserve: Option<i64>) -> Output {
        self.tables.remove(name);
        match self.client.drop_app(name, reserve).await {
            Ok(()) => Ok(format!("drop app {name} succeed")),
            Err(e) => Err(format!("drop app {name} failed: {e}")),
        }
    }

    async fn recall(&mut self, id: i32, new_name: &str) -> Output {
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

    /// The table in use, for the env commands.
    fn current(&self) -> Result<String, String> {
        self.current
            .clone()
            .ok_or_else(|| "no table in use: `use <table>` first".to_owned())
    }

    async fn get_app_envs(&self, json: bool) -> Output {
        let name = self.current()?;
        let envs = self.client.app_envs(&name).await.map_err(describe)?;
        if json {
            return pretty(&serde_json::json!({ "app_envs": envs }));
        }
        let mut out = String::from("[app_envs]\n");
        let width = envs.keys().map(String::len).max().unwrap_or(0);
        for (k, v) in &envs {
            let _ = writeln!(out, "{k:<width$} : {v}");
        }
        Ok(out)
    }

    async fn update_envs(
        &self,
        op: i32,
        keys: Vec<String>,
        values: Vec<String>,
        prefix: Option<String>,
    ) -> Output {
        let name = self.current()?;
        let request = UpdateAppEnvRequest {
            app_name: name,
            op,
            keys: (op != app_env_operation::CLEAR).then_some(keys),
            values: (op == app_env_operation::SET).then_some(values),
            clear_prefix: prefix,
        };
        match self.client.update_app_env(request).await {
            Ok(hint) => Ok(format!(
                "{} app envs succeed ({hint})",
                ["set", "del", "clear"][(op - 1) as usize]
            )),
            Err(e) => Err(format!("update app envs failed: {e}")),
        }
    }

    async fn set_app_envs(&self, args: &[&String]) -> Output {
        let [k, v] = args else {
            return Err("usage: set_app_envs <key> <value>".into());
        };
        configcheck::envs::check(k, v)?;
        self.update_envs(
            app_env_operation::SET,
            vec![(*k).clone()],
            vec![(*v).clone()],
            None,
        )
        .await
    }

    async fn del_app_envs(&self, args: &[&String]) -> Output {
        if args.is_empty() {
            return Err("usage: del_app_envs <key>…".into());
        }
        let keys = args.iter().map(|k| (*k).clone()).collect();
        self.update_envs(app_env_operation::DEL, keys, Vec::new(), None)
            .await
    }

    async fn clear_app_envs(&self, prefix: String) -> Output {
        self.update_envs(
            app_env_operation::CLEAR,
            Vec::new(),
            Vec::new(),
            Some(prefix),
        )
        .await
    }

    async fn query_compact(&self, table: &str, json: bool) -> Output {
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

    async fn meta_level(&self, set: Option<i32>, json: bool) -> Output {
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

    async fn data(&mut self, cmd: &str, a: &[String]) -> Output {
        let t = self.table(None).await?;
        let need = |n: usize, usage: &str| {
            if a.len() < n {
                Err(format!("usage: {usage}"))
            } else {
                Ok(())
            }
        };
        let b = |s: &String| Bytes::copy_from_slice(s.as_bytes());
        match cmd {
            "set" => {
                need(3, "set <hash_key> <sort_key> <value> [ttl_seconds]")?;
                let ttl = a
                    .get(3)
                    .and_then(|s| s.parse().ok())
                    .map(Duration::from_secs);
                t.set(a[0].as_bytes(), a[1].as_bytes(), a[2].as_bytes(), ttl)
                    .await
                    .map_err(describe)?;
                Ok("OK".into())
            }
            "get" => {
                need(2, "get <hash_key> <sort_key>")?;
                match t
                    .get(a[0].as_bytes(), a[1].as_bytes())
                    .await
                    .map_err(describe)?
                {
                    Some(v) => Ok(format!("\"{}\"", text(&v))),
                    None => Err("Not found".into()),
                }
            }
            "del" => {
                need(2, "del <hash_key> <sort_key>")?;
                t.del(a[0].as_bytes(), a[1].as_bytes())
                    .await
                    .map_err(describe)?;
                Ok("OK".into())
            }
            "exist" => {
                need(2, "exist <hash_key> <sort_key>")?;
                Ok(
                    if t.exist(a[0].as_bytes(), a[1].as_bytes())
                        .await
                        .map_err(describe)?
                    {
                        "True".into()
                    } else {
                        "False".into()
                    },
                )
            }
            "ttl" => {
                need(2, "ttl <hash_key> <sort_key>")?;
                match t
                    .ttl(a[0].as_bytes(), a[1].as_bytes())
                    .await
                    .map_err(describe)?
                {
                    Some(-1) => Ok("Infinite".into()),
                    Some(s) => Ok(format!("{s}")),
                    None => Err("Not found".into()),
                }
            }
            "multi_set" => {
                if a.len() < 3 || a.len().is_multiple_of(2) {
                    return Err(
                        "usage: multi_set <hash_key> <sort_key> <value> [<sort_key> <value> …]"
                            .into(),
                    );
                }
                let kvs: Vec<(Bytes, Bytes)> =
                    a[1..].chunks(2).map(|c| (b(&c[0]), b(&c[1]))).collect();
                t.multi_set(a[0].as_bytes(), &kvs, None)
                    .await
                    .map_err(describe)?;
                Ok("OK".into())
            }
            "multi_get" => {
                need(1, "multi_get <hash_key> [<sort_key> …]")?;
                let keys: Vec<Bytes> = a[1..].iter().map(b).collect();
                let options = MultiGetOptions {
                    max_kv_count: -1,
                    max_kv_size: -1,
                    ..Default::default()
                };
                let (kvs, _) = t
                    .multi_get(a[0].as_bytes(), &keys, &options)
                    .await
                    .map_err(describe)?;
                let mut out = String::new();
                for (k, v) in &kvs {
                    push_row(&mut out, a[0].as_bytes(), k, v);
                }
                let _ = write!(out, "\n{} key-value pairs got.", kvs.len());
                Ok(out)
            }
            "multi_del" => {
                need(2, "multi_del <hash_key> <sort_key> [<sort_key> …]")?;
                let keys: Vec<Bytes> = a[1..].iter().map(b).collect();
                let n = t
                    .multi_del(a[0].as_bytes(), &keys)
                    .await
                    .map_err(describe)?;
                Ok(format!("{n} key-value pairs deleted."))
            }
            "sort_key_count" => {
                need(1, "sort_key_count <hash_key>")?;
                Ok(format!(
                    "{}",
                    t.sort_key_count(a[0].as_bytes()).await.map_err(describe)?
                ))
            }
            "hash_scan" => {
                need(1, "hash_scan <hash_key> [start_sort_key] [stop_sort_key]")?;
                let start = a.get(1).map_or(&b""[..], |s| s.as_bytes());
                let stop = a.get(2).map_or(&b""[..], |s| s.as_bytes());
                let mut scanner = t
                    .hash_scan(a[0].as_bytes(), start, stop, ScanOptions::default())
                    .map_err(describe)?;
                let mut out = String::new();
                let mut n = 0;
                while let Some((h, s, v)) = scanner.next().await.map_err(describe)? {
                    push_row(&mut out, &h, &s, &v);
                    n += 1;
                }
                let _ = write!(out, "\n{n} key-value pairs got.");
                Ok(out)
            }
            "full_scan" | "count_data" => {
                let print = cmd == "full_scan";
                let mut out = String::new();
                let mut n = 0u64;
                for mut scanner in t.full_scan(
                    4,
                    ScanOptions {
                        no_value: !print,
                        ..Default::default()
                    },
                ) {
                    while let Some((h, s, v)) = scanner.next().await.map_err(describe)? {
                        if print {
                            push_row(&mut out, &h, &s, &v);
                        }
                        n += 1;
                    }
                }
                if print {
                    let _ = write!(out, "\n{n} key-value pairs got.");
                } else {
                    let _ = write!(out, "Count done, total {n} rows.");
                }
                Ok(out)
            }
            other => Err(format!("unknown command `{other}`; `help` lists them")),
        }
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

const HELP: &str = "Commands:
  cluster_info [-j]                     the cluster's metas, leader, ZooKeeper, meta level
  nodes [-d] [-j]                       replica servers (with -d: primaries, secondaries)
  ls [-d] [-a] [-j]                     tables (-d: their health; -a: dropped ones too)
  app <table> [-d] [-j]                 a table (with -d: its partitions); -j: JSON
  create <table> [-p n] [-r n] [-e k=v,…]  create a table (with environments)
  drop <table> [-r reserve_seconds]     drop a table (recallable for the reserve)
  recall <app_id> [new_name]            bring a dropped table back
  use <table>                           the table later commands use
  get_app_envs [-j]                     set_app_envs <k> <v>     del_app_envs <k>…
  clear_app_envs [-a | -p prefix]       (the table in use)
  query_compact -a <table> [-j]         progress of the manual compaction the envs asked for
  get_meta_level [-j]                   set_meta_level <freezed|steady|lively>
  server_stat [-j]                      per replica server: QPS, p99 latency, storage (over 1 s)
  app_stat [-a <table>] [-j]            per table: the same, summed over its partitions
  set <hk> <sk> <value> [ttl]           get <hk> <sk>         del <hk> <sk>
  exist <hk> <sk>                       ttl <hk> <sk>         sort_key_count <hk>
  multi_set <hk> <sk> <v> [<sk> <v>…]   multi_get <hk> [<sk>…]   multi_del <hk> <sk>…
  hash_scan <hk> [start] [stop]         full_scan             count_data
  exit";

/// One `"hash" : "sort" => "value"` line of a scan, as Pegasus's shell prints it.
fn push_row(out: &mut String, h: &[u8], s: &[u8], v: &[u8]) {
    let _ = writeln!(out, "\"{}\" : \"{}\" => \"{}\"", text(h), text(s), text(v));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_on_spaces_except_in_quotes() {
        assert_eq!(words(r#"set h s "a b"  "#), ["set", "h", "s", "a b"]);
        assert!(words("   ").is_empty());
    }
}
