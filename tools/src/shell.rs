//! `pegasus_shell`: Pegasus's shell commands over the Rust client. Lines come from a terminal
//! (with line editing and history) or from standard input (`echo "app temp -d" | pegasus_shell`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use pegasus_client::{Client, ClientError, Table};
use pegasus_client::{MultiGetOptions, ScanOptions};
use pegasus_protocol::codec::Field;
use pegasus_protocol::codes::{ErrorCode, rpc};
use pegasus_protocol::frame::RequestMeta;
use pegasus_protocol::types::*;

/// A shell session: the cluster and the table in use.
pub struct Shell {
    client: Client,
    metas: Vec<SocketAddr>,
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

impl Shell {
    /// A shell of the cluster whose metas are `metas`.
    pub fn new(metas: Vec<SocketAddr>) -> Self {
        let mut options = pegasus_client::ClientOptions::new(metas.clone());
        options.timeout = Duration::from_secs(10);
        Shell {
            client: Client::new(options),
            metas,
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

    /// Sends an admin request to whichever meta leads.
    async fn admin<A: Field + Default + Clone, R: Field + Default>(
        &self,
        name: &str,
        args: A,
        is_forward: impl Fn(&R) -> bool,
    ) -> Result<R, String> {
        let mut last = String::from("no meta server");
        let mut forwarded = 0;
        for meta in &self.metas {
            match self
                .client
                .call::<_, R>(
                    *meta,
                    RequestMeta::default(),
                    name,
                    &Args(args.clone()),
                    Duration::from_secs(5),
                )
                .await
            {
                Ok(r) if !is_forward(&r) => return Ok(r),
                Ok(_) => {
                    forwarded += 1;
                    last = format!("{meta} is not the leader");
                }
                Err(e) => last = format!("{meta}: {e}"),
            }
        }
        if forwarded == self.metas.len() {
            return Err(format!(
                "no meta server leads yet (all {forwarded} answered \"forward to others\"); retry in a moment"
            ));
        }
        Err(last)
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
        let out = match cmd {
            "exit" | "quit" => return None,
            "help" => Ok(HELP.to_owned()),
            "version" => Ok(format!("pegasus_shell {}", env!("CARGO_PKG_VERSION"))),
            "cluster_info" | "nodes" | "ls" | "app" if flag(rest, "-j") => {
                self.json(cmd, rest).await
            }
            "cluster_info" => self.cluster_info().await,
            "nodes" => self.nodes(flag(rest, "-d")).await,
            "ls" => self.ls(flag(rest, "-d")).await,
            "app" => match rest.first() {
                Some(name) => self.app(name, flag(rest, "-d")).await,
                None => Err("usage: app <table> [-d]".into()),
            },
            "create" => match rest.first() {
                Some(name) => {
                    let p = option(rest, "-p").and_then(|v| v.parse().ok()).unwrap_or(4);
                    let r = option(rest, "-r").and_then(|v| v.parse().ok()).unwrap_or(3);
                    self.create(name, p, r).await
                }
                None => Err("usage: create <table> [-p partitions] [-r replicas]".into()),
            },
            "drop" => match rest.first() {
                Some(name) => self.drop_app(name).await,
                None => Err("usage: drop <table>".into()),
            },
            "use" => match rest.first() {
                Some(name) => match self.table(Some(name)).await {
                    Ok(_) => {
                        self.current = Some(name.clone());
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

    /// `-j`: the same information as one JSON document, as Pegasus's shell prints it.
    async fn json(&mut self, cmd: &str, rest: &[String]) -> Output {
        use serde_json::{Map, Value, json};
        let value = match cmd {
            "cluster_info" => {
                let r: ClusterInfoResponse = self
                    .admin(rpc::CLUSTER_INFO, Empty {}, |_: &ClusterInfoResponse| false)
                    .await?;
                let info: Map<String, Value> = r
                    .keys
                    .into_iter()
                    .zip(r.values)
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect();
                json!({ "cluster_info": info })
            }
            "nodes" => {
                let r: ListNodesResponse = self
                    .admin(rpc::LIST_NODES, Empty {}, |r: &ListNodesResponse| {
                        r.err.0 != "ERR_OK"
                    })
                    .await?;
                let details: Map<String, Value> = r
                    .nodes
                    .iter()
                    .map(|n| {
                        let status = if n.alive { "ALIVE" } else { "UNALIVE" };
                        (n.address.to_string(), json!({ "address": n.address.to_string(), "status": status, "replica_count": n.replica_count, "primary_count": n.primary_count, "secondary_count": n.secondary_count }))
                    })
                    .collect();
                let alive = r.nodes.iter().filter(|n| n.alive).count();
                json!({ "details": details, "summary": { "total_node_count": r.nodes.len(), "alive_node_count": alive, "unalive_node_count": r.nodes.len() - alive } })
            }
            "ls" => {
                let apps = self.tables().await?;
                let general: Map<String, Value> = apps
                    .iter()
                    .map(|a| (a.app_id.to_string(), json!({ "app_id": a.app_id, "status": "AVAILABLE", "app_name": a.app_name, "app_type": a.app_type, "partition_count": a.partition_count, "replica_count": a.replica_count, "is_stateful": true })))
                    .collect();
                let healthy: Map<String, Value> = apps
                    .iter()
                    .map(|a| (a.app_id.to_string(), json!({ "app_id": a.app_id, "app_name": a.app_name, "partition_count": a.partition_count, "fully_healthy": a.fully_healthy, "unhealthy": a.unhealthy, "write_unhealthy": a.write_unhealthy, "read_unhealthy": a.read_unhealthy })))
                    .collect();
                json!({ "general_info": general, "healthy_info": healthy, "summary": { "total_app_count": apps.len() } })
            }
            _ => {
                let name = rest
                    .iter()
                    .find(|a| !a.starts_with('-'))
                    .ok_or("usage: app <table> [-d] [-j]")?;
                let summary = self
                    .tables()
                    .await?
                    .into_iter()
                    .find(|a| &a.app_name == name)
                    .ok_or(format!("table `{name}` does not exist"))?;
                let config = self.client.query_config(name).await.map_err(describe)?;
                let replicas: Map<String, Value> = config
                    .partitions
                    .iter()
                    .map(|p| {
                        let count = usize::from(p.primary.socket_addr().is_some()) + p.secondaries.len();
                        (p.pid.partition_index.to_string(), json!({ "pidx": p.pid.partition_index, "ballot": p.ballot, "replica_count": format!("{count}/{}", p.max_replica_count), "primary": p.primary.to_string(), "secondaries": p.secondaries.iter().map(|s| s.to_string()).collect::<Vec<_>>() }))
                    })
                    .collect();
                json!({
                    "parameters": { "app_name": name, "detailed": flag(rest, "-d") },
                    "general": { "app_name": name, "app_id": summary.app_id, "partition_count": summary.partition_count, "max_replica_count": summary.replica_count },
                    "replicas": replicas,
                    "summary": { "fully_healthy_partition_count": summary.fully_healthy, "unhealthy_partition_count": summary.unhealthy, "write_unhealthy_partition_count": summary.write_unhealthy, "read_unhealthy_partition_count": summary.read_unhealthy },
                })
            }
        };
        serde_json::to_string_pretty(&value).map_err(|e| e.to_string())
    }

    async fn cluster_info(&self) -> Output {
        let r: ClusterInfoResponse = self
            .admin(rpc::CLUSTER_INFO, Empty {}, |_: &ClusterInfoResponse| false)
            .await?;
        let mut out = String::new();
        for (k, v) in r.keys.iter().zip(&r.values) {
            let _ = writeln!(out, "{k:<24}: {v}");
        }
        Ok(out)
    }

    async fn nodes(&self, detailed: bool) -> Output {
        let r: ListNodesResponse = self
            .admin(rpc::LIST_NODES, Empty {}, |r: &ListNodesResponse| {
                r.err.0 != "ERR_OK"
            })
            .await?;
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
        for n in &r.nodes {
            let status = if n.alive { "ALIVE" } else { "UNALIVE" };
            if detailed {
                let _ = writeln!(
                    out,
                    "{:<24}{:<10}{:<15}{:<15}{:<15}",
                    n.address, status, n.replica_count, n.primary_count, n.secondary_count
                );
            } else {
                let _ = writeln!(out, "{:<24}{:<10}", n.address, status);
            }
        }
        let alive = r.nodes.iter().filter(|n| n.alive).count();
        let _ = writeln!(
            out,
            "\ntotal_node_count    : {}\nalive_node_count    : {alive}\nunalive_node_count  : {}",
            r.nodes.len(),
            r.nodes.len() - alive
        );
        Ok(out)
    }

    /// The tables that are available (not dropped).
    async fn tables(&self) -> Result<Vec<AppSummary>, String> {
        let r: ListAppsResponse = self
            .admin(rpc::LIST_APPS, Empty {}, |r: &ListAppsResponse| {
                r.err.0 != "ERR_OK"
            })
            .await?;
        Ok(r.apps
            .into_iter()
            .filter(|a| a.status == "AS_AVAILABLE")
            .collect())
    }

    async fn ls(&self, detailed: bool) -> Output {
        let apps = self.tables().await?;
        let mut out = String::from("[general_info]\n");
        let _ = writeln!(
            out,
            "{:<8}{:<14}{:<16}{:<10}{:<17}{:<15}{:<13}",
            "app_id",
            "status",
            "app_name",
            "app_type",
            "partition_count",
            "replica_count",
            "is_stateful"
        );
        for a in &apps {
            let _ = writeln!(
                out,
                "{:<8}{:<14}{:<16}{:<10}{:<17}{:<15}{:<13}",
                a.app_id,
                "AVAILABLE",
                a.app_name,
                a.app_type,
                a.partition_count,
                a.replica_count,
                "true"
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
                let _ = writeln!(
                    out,
                    "{:<8}{:<16}{:<17}{:<15}{:<11}{:<17}{:<16}",
                    a.app_id,
                    a.app_name,
                    a.partition_count,
                    a.fully_healthy,
                    a.unhealthy,
                    a.write_unhealthy,
                    a.read_unhealthy
                );
            }
        }
        let _ = writeln!(out, "\n[summary]\ntotal_app_count     : {}", apps.len());
        Ok(out)
    }

    async fn app(&mut self, name: &str, detailed: bool) -> Output {
        let summary = self
            .tables()
            .await?
            .into_iter()
            .find(|a| a.app_name == name)
            .ok_or(format!("table `{name}` does not exist"))?;
        let config = self.client.query_config(name).await.map_err(describe)?;
        let mut out = String::from("[parameters]\n");
        let _ = writeln!(
            out,
            "app_name            : {name}\ndetailed            : {detailed}\n\n[general]"
        );
        let _ = writeln!(
            out,
            "app_name            : {name}\napp_id              : {}\npartition_count     : {}\nmax_replica_count   : {}",
            summary.app_id, summary.partition_count, summary.replica_count
        );
        if detailed {
            out.push_str("\n[replicas]\n");
            let _ = writeln!(
                out,
                "{:<6}{:<8}{:<15}{:<24}secondaries",
                "pidx", "ballot", "replica_count", "primary"
            );
            for p in &config.partitions {
                let count = usize::from(p.primary.socket_addr().is_some()) + p.secondaries.len();
                let secondaries: Vec<String> =
                    p.secondaries.iter().map(|s| s.to_string()).collect();
                let _ = writeln!(
                    out,
                    "{:<6}{:<8}{:<15}{:<24}[{}]",
                    p.pid.partition_index,
                    p.ballot,
                    format!("{count}/{}", p.max_replica_count),
                    p.primary,
                    secondaries.join(",")
                );
            }
            let _ = writeln!(
                out,
                "\n[summary]\nfully_healthy_partition_count    : {}\nunhealthy_partition_count        : {}\nwrite_unhealthy_partition_count  : {}\nread_unhealthy_partition_count   : {}",
                summary.fully_healthy,
                summary.unhealthy,
                summary.write_unhealthy,
                summary.read_unhealthy
            );
        }
        Ok(out)
    }

    async fn create(&self, name: &str, partitions: i32, replicas: i32) -> Output {
        let r: AppResponse = self
            .admin(
                rpc::CREATE_APP,
                CreateAppRequest {
                    app_name: name.to_owned(),
                    partition_count: partitions,
                    replica_count: replicas,
                },
                |r: &AppResponse| r.err.0 == ErrorCode::ForwardToOthers.name(),
            )
            .await?;
        match r.err.0.as_str() {
            "ERR_OK" => Ok(format!(
                "create app `{name}` succeed, app_id = {}",
                r.app_id
            )),
            e => Err(format!("create app `{name}` failed: {e}")),
        }
    }

    async fn drop_app(&mut self, name: &str) -> Output {
        let r: AppResponse = self
            .admin(
                rpc::DROP_APP,
                DropAppRequest {
                    app_name: name.to_owned(),
                },
                |r: &AppResponse| r.err.0 == ErrorCode::ForwardToOthers.name(),
            )
            .await?;
        self.tables.remove(name);
        match r.err.0.as_str() {
            "ERR_OK" => Ok(format!("drop app `{name}` succeed")),
            e => Err(format!("drop app `{name}` failed: {e}")),
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

const HELP: &str = "Commands:
  cluster_info [-j]                     the cluster's metas, leader, ZooKeeper
  nodes [-d] [-j]                       replica servers and their status
  ls [-d] [-j]                          tables (with -d: their health)
  app <table> [-d] [-j]                 a table (with -d: its partitions); -j: JSON
  create <table> [-p n] [-r n]          create a table
  drop <table>                          drop a table
  use <table>                           the table later commands use
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
