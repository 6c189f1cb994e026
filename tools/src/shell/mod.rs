//! `pegasus_shell`: Pegasus's shell commands over the Rust client. Lines come from a terminal
//! (with line editing and history) or from standard input (`echo "app temp -d" | pegasus_shell`).
//!
//! One module per family of commands, each running its own (`Shell::run_<family>`):
//! - `nodes`: `cluster_info`, `nodes`, `get_meta_level`, `set_meta_level`
//! - `tables`: `ls`, `app`, `create`, `drop`, `recall`, `query_compact`
//! - `envs`: `get_app_envs`, `set_app_envs`, `del_app_envs`, `clear_app_envs`
//! - `stat`: `server_stat`, `app_stat`
//! - `backup`: `start_backup_app`, `query_backup_status`, `restore_app`, `query_restore_status`,
//!   the backup policies' commands
//! - `data`: `set`, `get`, `del`, scans and the other data commands on the table in use

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use pegasus_client::{Client, ClientError, Table};

mod backup;
mod data;
mod envs;
mod nodes;
mod stat;
mod tables;

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

/// One command line: the command's name and what follows it.
struct Line<'a> {
    name: &'a str,
    rest: &'a [String],
    /// `-j`: JSON output.
    json: bool,
    /// The arguments that are not flags.
    positional: Vec<&'a String>,
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
        let Some(name) = args.first().map(String::as_str) else {
            return Some(Ok(String::new()));
        };
        let rest = &args[1..];
        let c = Line {
            name,
            rest,
            json: flag(rest, "-j"),
            positional: positional(rest),
        };
        let out = match name {
            "exit" | "quit" => return None,
            "help" => Ok(HELP.to_owned()),
            "version" => Ok(format!("pegasus_shell {}", env!("CARGO_PKG_VERSION"))),
            "use" => match c.positional.first() {
                Some(name) => match self.table(Some(name)).await {
                    Ok(_) => {
                        self.current = Some((*name).clone());
                        Ok(format!("OK, now use table `{name}`"))
                    }
                    Err(e) => Err(e),
                },
                None => Err("usage: use <table>".into()),
            },
            _ => {
                if let Some(out) = self.run_nodes(&c).await {
                    out
                } else if let Some(out) = self.run_tables(&c).await {
                    out
                } else if let Some(out) = self.run_envs(&c).await {
                    out
                } else if let Some(out) = self.run_stat(&c).await {
                    out
                } else if let Some(out) = self.run_backup(&c).await {
                    out
                } else {
                    self.data(name, rest).await
                }
            }
        };
        Some(out)
    }
}

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
  start_backup_app <app_id> <provider> [backup_path]   one-time backup to a block service
  query_backup_status <app_id> [backup_id] [-j]        a table's backups
  restore_app -c <old_cluster> -a <old_app> -i <old_app_id> -t <backup_id> -b <provider>
              [-n new_name] [-s] [-r restore_path]     a backup as a new table
  query_restore_status <app_id> [-d] [-j]              how a restore goes
  add_backup_policy -p <name> -b <provider> -a <app_id,…> -i <interval_s> -s <HH:MM> -c <keep>
  ls_backup_policy [-j]     query_backup_policy -p <name,…> [-b count] [-j]
  modify_backup_policy -p <name> [-a app,…] [-r app,…] [-i s] [-c keep] [-s HH:MM]
  disable_backup_policy -p <name>       enable_backup_policy -p <name>
  server_stat [-j]                      per replica server: QPS, p99 latency, storage (over 1 s)
  app_stat [-a <table>] [-j]            per table: the same, summed over its partitions
  set <hk> <sk> <value> [ttl]           get <hk> <sk>         del <hk> <sk>
  exist <hk> <sk>                       ttl <hk> <sk>         sort_key_count <hk>
  multi_set <hk> <sk> <v> [<sk> <v>…]   multi_get <hk> [<sk>…]   multi_del <hk> <sk>…
  hash_scan <hk> [start] [stop]         full_scan             count_data
  exit";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_on_spaces_except_in_quotes() {
        assert_eq!(words(r#"set h s "a b"  "#), ["set", "h", "s", "a b"]);
        assert!(words("   ").is_empty());
    }
}
