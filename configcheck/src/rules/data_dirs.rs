//! Data disks: `[replication] data_dirs` and `slog_dir`, alone and against the host's disks.

use std::path::Path;

use super::{Context, Rule, Scope, is_templated};
use crate::data_dir::{DataDir, parse};
use crate::facts::{Disk, DiskKind, HostFacts};
use crate::finding::{Finding, Severity};
use crate::source::Span;

/// PC040.
pub static MALFORMED_DATA_DIR: Rule = Rule {
    code: "PC040",
    name: "malformed-data-dir",
    severity: Severity::Error,
    scope: Scope::File,
    summary: "a `data_dirs` item that is not `tag:path`",
    doc: "## What it does
Checks every comma-separated item of `[replication] data_dirs` is `tag:path`: exactly one `:`
with a non-empty tag and a non-empty path.

## Why it matters
The replica server refuses to start (\"invalid data_dir item\").

## Example
```ini
[replication]
  data_dirs = /home/work/ssd2/pegasus,ssd3:/home/work/ssd3/pegasus
```

## How to fix
Name every dir: `data_dirs = ssd2:/home/work/ssd2/pegasus,ssd3:/home/work/ssd3/pegasus`.
",
};

/// PC041.
pub static DUPLICATE_DATA_DIR_TAG: Rule = Rule {
    code: "PC041",
    name: "duplicate-data-dir-tag",
    severity: Severity::Error,
    scope: Scope::File,
    summary: "two data dirs with the same tag",
    doc: "## What it does
Finds a tag used by two `data_dirs` items.

## Why it matters
Tags name disks in disk-level commands and metrics; the replica server refuses duplicates.

## Example
```ini
[replication]
  data_dirs = ssd:/data1/pegasus,ssd:/data2/pegasus
```

## How to fix
Give each disk its own tag: `ssd1:/data1/pegasus,ssd2:/data2/pegasus`.
",
};

/// PC042.
pub static DUPLICATE_DATA_DIR: Rule = Rule {
    code: "PC042",
    name: "duplicate-data-dir",
    severity: Severity::Error,
    scope: Scope::File,
    summary: "the same path listed twice in `data_dirs`",
    doc: "## What it does
Finds a path listed twice in `data_dirs` (a trailing `/` does not make it different).

## Why it matters
The replica server refuses duplicate dirs.

## Example
```ini
[replication]
  data_dirs = ssd1:/data1/pegasus,ssd2:/data1/pegasus/
```

## How to fix
List each disk once; the second item was probably meant to be another disk.
",
};

/// PC043.
pub static NESTED_DATA_DIRS: Rule = Rule {
    code: "PC043",
    name: "nested-data-dirs",
    severity: Severity::Warning,
    scope: Scope::File,
    summary: "one data dir inside another",
    doc: "## What it does
Finds a `data_dirs` path inside another one.

## Why it matters
Both dirs live on the same disk, so the disk is counted twice: replica placement (fewest replicas
per dir) puts twice the load on it, and disk-space metrics double.

## Example
```ini
[replication]
  data_dirs = a:/data/pegasus,b:/data/pegasus/more
```

## How to fix
List each disk's dir once, at the same depth: `a:/data1/pegasus,b:/data2/pegasus`.
",
};

/// PC044.
pub static RELATIVE_DATA_DIR: Rule = Rule {
    code: "PC044",
    name: "relative-data-dir",
    severity: Severity::Warning,
    scope: Scope::File,
    summary: "a relative path in `data_dirs`",
    doc: "## What it does
Finds `data_dirs` paths that do not start with `/`.

## Why it matters
A relative path is resolved against the directory the server happens to be started from; a
restart from another directory opens an empty data dir and the node's replicas are lost to it.

## Example
```ini
[replication]
  data_dirs = ssd1:data/pegasus
```

## How to fix
Use an absolute path: `ssd1:/home/work/ssd1/pegasus`.
",
};

/// PC045.
pub static DATA_DIRS_SHARE_DEVICE: Rule = Rule {
    code: "PC045",
    name: "data-dirs-share-device",
    severity: Severity::Warning,
    scope: Scope::Host,
    summary: "two data dirs on the same disk",
    doc: "## What it does
Maps each data dir to the disk it will live on (the longest matching mount point in the host
facts) and reports two dirs on the same device.

## Why it matters
Pegasus spreads replicas evenly over data dirs, assuming one dir per disk. Two dirs on one
device double that disk's share of the load while the other disks idle; a mount that was
forgotten (`/home/work/ssd3` not mounted, so it lands on `/`) looks exactly like this.

## Example
```ini
[replication]
  data_dirs = ssd1:/home/work/ssd1/pegasus,ssd2:/home/work/ssd2/pegasus
```
with only `/home/work/ssd1` mounted.

## How to fix
Mount the missing disk, or list one dir per disk.
",
};

/// PC046.
pub static MIXED_DISK_KINDS: Rule = Rule {
    code: "PC046",
    name: "mixed-disk-kinds",
    severity: Severity::Warning,
    scope: Scope::Host,
    summary: "data dirs on both SSDs and HDDs",
    doc: "## What it does
Reports data dirs of one node whose disks differ in kind (SSD and HDD).

## Why it matters
The guide: each server should mount the same number and performance of disks. Replicas are
placed by count, so the HDD-backed ones become the slowest partitions and set the cluster's
tail latency.

## Example
```ini
[replication]
  data_dirs = ssd1:/ssd1/pegasus,hdd1:/hdd1/pegasus
```

## How to fix
Use disks of one kind for data dirs.
",
};

/// PC047.
pub static DISK_SIZE_MISMATCH: Rule = Rule {
    code: "PC047",
    name: "disk-size-mismatch",
    severity: Severity::Warning,
    scope: Scope::Host,
    summary: "data disks of very different sizes",
    doc: "## What it does
Reports a data dir whose disk is smaller than the node's largest data disk by more than the
tolerance (20% by default, `--disk-size-tolerance`).

## Why it matters
Replicas are placed by count, never by bytes, so every disk fills at the same rate: the small
disk runs out of space first and its replicas stop taking writes while the others have room.

## Example
```ini
[replication]
  data_dirs = ssd1:/ssd1/pegasus,ssd2:/ssd2/pegasus
```
with a 4 TB `/ssd1` and a 1 TB `/ssd2`.

## How to fix
Use disks of the same size, or leave the small disk out.
",
};

/// PC048.
pub static DEPRECATED_SLOG_DIR: Rule = Rule {
    code: "PC048",
    name: "deprecated-slog-dir",
    severity: Severity::Warning,
    scope: Scope::File,
    summary: "`slog_dir` is set, but the shared log is gone since Pegasus 2.6",
    doc: "## What it does
Warns when `[replication] slog_dir` is set for Pegasus 2.6 or later (`--pegasus-version`).

## Why it matters
2.6 removed the shared log; the private logs are the write-ahead log. The key only matters for
an upgrade: a 2.6 replica server refuses to start while `<slog_dir>/replica/slog` still has
files, so an upgrade from 2.4 or older must pass through 2.5.0 first.

## Example
```ini
[replication]
  slog_dir = /home/work/ssd1/pegasus
```

## How to fix
On a new 2.6 cluster, remove the key. When upgrading from 2.5.0, leave it unchanged.
",
};

/// PC049.
pub static SLOG_SHARES_DATA_DEVICE: Rule = Rule {
    code: "PC049",
    name: "slog-shares-data-device",
    severity: Severity::Warning,
    scope: Scope::Host,
    summary: "the shared log shares a disk with a data dir while a free SSD exists",
    doc: "## What it does
For Pegasus before 2.6: reports a `slog_dir` on the same disk as a data dir when the host has an
SSD that holds neither a data dir nor the root file system.

## Why it matters
Every write goes through the shared log first; the guide recommends a dedicated SSD for it so
log appends do not queue behind compactions of a data disk.

## Example
```ini
[replication]
  slog_dir = /home/work/ssd2/pegasus
  data_dirs = ssd2:/home/work/ssd2/pegasus,ssd3:/home/work/ssd3/pegasus
```
with `/home/work/ssd1` mounted and unused.

## How to fix
`slog_dir = /home/work/ssd1/pegasus`.
",
};

pub(super) fn check(ctx: &Context<'_>, out: &mut Vec<Finding>) {
    let source = ctx.source();
    let slog = ctx
        .config
        .value("replication", "slog_dir")
        .filter(|s| !s.value.is_empty() && !is_templated(&s.value));
    if let Some(slog) = slog {
        let (major, minor) = ctx.options.pegasus_version;
        if (major, minor) >= (2, 6) {
            out.push(
                Finding::new(&DEPRECATED_SLOG_DIR, source, slog.span, "unused since 2.6", "`slog_dir` is deprecated since Pegasus 2.6")
                    .help("on a new cluster remove `slog_dir`; when upgrading from 2.5.0 leave it unchanged"),
            );
        }
    }
    let Some(value) = ctx.config.value("replication", "data_dirs") else {
        return;
    };
    if is_templated(&value.value) {
        return;
    }
    let mut dirs: Vec<DataDir> = Vec::new();
    for item in parse(source.slice(value.span), value.span.offset) {
        match item {
            Err((span, reason)) => out.push(
                Finding::new(
                    &MALFORMED_DATA_DIR,
                    source,
                    span,
                    reason,
                    format!("data dir `{}` is not `tag:path`", source.slice(span)),
                )
                .help(
                    "write each item as `tag:/absolute/path`, e.g. `ssd1:/home/work/ssd1/pegasus`",
                ),
            ),
            Ok(dir) => dirs.push(dir),
        }
    }
    for (n, dir) in dirs.iter().enumerate() {
        if let Some(first) = dirs[..n].iter().find(|d| d.tag == dir.tag) {
            out.push(
                Finding::new(
                    &DUPLICATE_DATA_DIR_TAG,
                    source,
                    dir.tag_span,
                    "tag used again",
                    format!("data dir tag `{}` is used twice", dir.tag),
                )
                .related(first.tag_span, "first used here")
                .help(format!(
                    "give each disk its own tag, e.g. `{}{}`",
                    dir.tag,
                    n + 1
                )),
            );
        }
        if let Some(first) = dirs[..n]
            .iter()
            .find(|d| d.normalized() == dir.normalized())
        {
            out.push(
                Finding::new(
                    &DUPLICATE_DATA_DIR,
                    source,
                    dir.path_span,
                    "listed again",
                    format!("data dir `{}` is listed twice", dir.path),
                )
                .related(first.path_span, "first listed here")
                .help("list each disk once"),
            );
        } else if let Some(outer) = dirs.iter().find(|d| {
            d.normalized() != dir.normalized()
                && Path::new(dir.normalized()).starts_with(d.normalized())
        }) {
            out.push(
                Finding::new(
                    &NESTED_DATA_DIRS,
                    source,
                    dir.path_span,
                    format!("inside `{}`", outer.path),
                    format!(
                        "data dir `{}` is inside data dir `{}`",
                        dir.path, outer.path
                    ),
                )
                .related(outer.path_span, "the outer dir")
                .help("list one dir per disk, none inside another"),
            );
        }
        if !dir.path.starts_with('/') {
            out.push(
                Finding::new(
                    &RELATIVE_DATA_DIR,
                    source,
                    dir.path_span,
                    "relative to the start directory",
                    format!("data dir `{}` is a relative path", dir.path),
                )
                .help(format!(
                    "use an absolute path, e.g. `/home/work/{}/pegasus`",
                    dir.tag
                )),
            );
        }
    }
    if let Some(host) = &ctx.options.host {
        check_disks(
            ctx,
            host,
            &dirs,
            slog.map(|s| (s.value.as_str(), s.span)),
            out,
        );
    }
}

fn check_disks(
    ctx: &Context<'_>,
    host: &HostFacts,
    dirs: &[DataDir],
    slog: Option<(&str, Span)>,
    out: &mut Vec<Finding>,
) {
    let source = ctx.source();
    let placed: Vec<(&DataDir, &Disk)> = dirs
        .iter()
        .filter(|d| d.path.starts_with('/'))
        .filter_map(|d| host.disk_for(&d.path).map(|disk| (d, disk)))
        .collect();
    // Distinct disks, each with the first dir on it.
    let mut disks: Vec<(&DataDir, &Disk)> = Vec::new();
    for &(dir, disk) in &placed {
        match disks.iter().find(|(_, d)| d.device == disk.device) {
            Some((first, _)) => out.push(
                Finding::new(
                    &DATA_DIRS_SHARE_DEVICE,
                    source,
                    dir.path_span,
                    format!("on `{}` too", disk.device),
                    format!(
                        "data dirs `{}` and `{}` are on the same disk `{}` (mounted at `{}`)",
                        first.tag, dir.tag, disk.device, disk.mount_point
                    ),
                )
                .related(first.path_span, format!("on `{}`", disk.device))
                .help(format!(
                    "mount a disk of its own for `{}`, or drop it from `data_dirs`",
                    dir.path
                )),
            ),
            None => disks.push((dir, disk)),
        }
    }
    let known: Vec<&(&DataDir, &Disk)> = disks
        .iter()
        .filter(|(_, d)| d.kind != DiskKind::Unknown)
        .collect();
    if let Some((first_dir, first_disk)) = known.first()
        && let Some((dir, disk)) = known.iter().find(|(_, d)| d.kind != first_disk.kind)
    {
        out.push(
            Finding::new(
                &MIXED_DISK_KINDS,
                source,
                dir.path_span,
                format!("{:?}", disk.kind).to_uppercase(),
                format!(
                    "data dir `{}` is on an {} while `{}` is on an {}",
                    dir.tag,
                    kind_name(disk.kind),
                    first_dir.tag,
                    kind_name(first_disk.kind)
                ),
            )
            .related(first_dir.path_span, kind_name(first_disk.kind))
            .help("use disks of one kind for all data dirs"),
        );
    }
    if let Some((big_dir, big)) = disks.iter().max_by_key(|(_, d)| d.total_bytes) {
        let tolerance = ctx.options.disk_size_tolerance_percent.min(100);
        for (dir, disk) in &disks {
            if disk.total_bytes.saturating_mul(100)
                < big.total_bytes.saturating_mul(100 - tolerance)
            {
                out.push(
                    Finding::new(
                        &DISK_SIZE_MISMATCH,
                        source,
                        dir.path_span,
                        format!("{} on `{}`", human_bytes(disk.total_bytes), disk.device),
                        format!(
                            "data dir `{}` has a {} disk, the largest has {}",
                            dir.tag,
                            human_bytes(disk.total_bytes),
                            human_bytes(big.total_bytes)
                        ),
                    )
                    .related(big_dir.path_span, human_bytes(big.total_bytes))
                    .help("replicas are placed by count, not bytes: use disks of the same size"),
                );
            }
        }
    }
    let Some((slog_path, slog_span)) = slog else {
        return;
    };
    if ctx.options.pegasus_version >= (2, 6) || !slog_path.starts_with('/') {
        return;
    }
    let Some(slog_disk) = host.disk_for(slog_path) else {
        return;
    };
    let Some((shared, _)) = disks.iter().find(|(_, d)| d.device == slog_disk.device) else {
        return;
    };
    let dedicated = host.disks.iter().find(|d| {
        d.kind == DiskKind::Ssd
            && d.mount_point != "/"
            && d.device != slog_disk.device
            && disks.iter().all(|(_, used)| used.device != d.device)
    });
    if let Some(free) = dedicated {
        out.push(
            Finding::new(
                &SLOG_SHARES_DATA_DEVICE,
                source,
                slog_span,
                format!("on `{}`", slog_disk.device),
                format!(
                    "the shared log shares disk `{}` with data dir `{}` while SSD `{}` is unused",
                    slog_disk.device, shared.tag, free.mount_point
                ),
            )
            .related(shared.path_span, format!("also on `{}`", slog_disk.device))
            .help(format!(
                "set `slog_dir = {}/pegasus`",
                free.mount_point.trim_end_matches('/')
            )),
        );
    }
}

fn kind_name(kind: DiskKind) -> &'static str {
    match kind {
        DiskKind::Ssd => "SSD",
        DiskKind::Hdd => "HDD",
        DiskKind::Unknown => "unknown disk",
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_split_with_spans_on_tag_and_path() {
        let raw = "ssd1:/a, ssd2 : /b ,,/c,x:y:z";
        let items = parse(raw, 10);
        assert_eq!(items.len(), 4);
        let b = items[1].as_ref().unwrap();
        assert_eq!((b.tag.as_str(), b.path.as_str()), ("ssd2", "/b"));
        assert_eq!(&raw[b.tag_span.offset - 10..b.tag_span.end() - 10], "ssd2");
        assert_eq!(&raw[b.path_span.offset - 10..b.path_span.end() - 10], "/b");
        assert_eq!(
            items[2],
            Err((Span::new(31, 2), "no `tag:` before the path"))
        );
        assert_eq!(items[3], Err((Span::new(34, 5), "more than one `:`")));
    }
}
