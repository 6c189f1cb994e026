//! The data commands on the table in use: `set`, `get`, `del`, `exist`, `ttl`, `multi_*`,
//! `sort_key_count`, scans and `count_data`.

use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use pegasus_client::{MultiGetOptions, ScanOptions};

use super::{Output, Shell, describe, text};

impl Shell {
    pub(super) async fn data(&mut self, cmd: &str, a: &[String]) -> Output {
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

/// One `"hash" : "sort" => "value"` line of a scan, as Pegasus's shell prints it.
fn push_row(out: &mut String, h: &[u8], s: &[u8], v: &[u8]) {
    let _ = writeln!(out, "\"{}\" : \"{}\" => \"{}\"", text(h), text(s), text(v));
}
