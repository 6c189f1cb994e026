//! PC11x: cold backup's block services (`[block_service.<name>]`).

use super::{Context, Rule, Scope, is_templated};
use crate::finding::{Finding, Severity};

/// The block service kinds Pegasus has.
const KINDS: &[&str] = &["local_service", "hdfs_service", "fds_service"];

/// PC110.
pub static UNKNOWN_BLOCK_SERVICE: Rule = Rule {
    code: "PC110",
    name: "unknown-block-service",
    severity: Severity::Error,
    scope: Scope::File,
    summary: "a block service of no known type, or none",
    doc: "## What it does
Reports a `[block_service.<name>]` section whose `type` is missing or not a kind Pegasus has
(`local_service`, `hdfs_service`, `fds_service`).

## Why it matters
Backups name their block service by the section's `<name>` (`start_backup_app <app_id>
<name>`, `add_backup_policy -b <name>`). A service of no known type takes no backup: every
backup to it is refused, and a policy using it never runs one, which is found out when a
restore is needed.

## Example
```ini
[block_service.nfs]
  type = nfs
  args = /mnt/backup
```

## How to fix
`type = local_service` for a folder (a local disk or an NFS mount every server shares), with
its root in `args`. This server keeps backups in `local_service` only.
",
};

/// PC111.
pub static BLOCK_SERVICE_ROOT: Rule = Rule {
    code: "PC111",
    name: "block-service-root",
    severity: Severity::Error,
    scope: Scope::File,
    summary: "a local_service without a root folder",
    doc: "## What it does
Reports a `local_service` block service whose `args` (its root folder) is empty.

## Why it matters
A `local_service` is a folder every meta and replica server shares (an NFS mount): the
replica servers upload checkpoints into it and the meta writes each backup's metadata there.
Without a root there is nowhere to write: every backup to it fails.

## Example
```ini
[block_service.local_service]
  type = local_service
  args =
```

## How to fix
`args = /mnt/pegasus-backup`: an absolute folder on the mount every server shares.
",
};

/// PC113.
pub static BLOCK_SERVICE_ROOT_UNAVAILABLE: Rule = Rule {
    code: "PC113",
    name: "block-service-root-unavailable",
    severity: Severity::Warning,
    scope: Scope::Host,
    summary: "a local_service root missing or not writable on the host",
    doc: "## What it does
With the host's facts, reports a `local_service` root that does not exist there or that its
owner cannot write.

## Why it matters
Every backup to it fails (an unmounted NFS share is the usual cause). A warning, not an
error: a server whose backup folder is missing still starts and serves its data; only its
backups fail, each saying why.

## Example
```ini
[block_service.local_service]
  type = local_service
  args = /mnt/pegasus-backup
```
on a host where `/mnt/pegasus-backup` is not mounted.

## How to fix
Mount the shared folder (or create it), writable by the user the servers run as, before the
servers start.
",
};

/// PC112.
pub static RELATIVE_BLOCK_SERVICE_ROOT: Rule = Rule {
    code: "PC112",
    name: "relative-block-service-root",
    severity: Severity::Warning,
    scope: Scope::File,
    summary: "a local_service root relative to each server's working folder",
    doc: "## What it does
Warns when `args` of a `local_service` block service is a relative path.

## Why it matters
Each server resolves it from its own working folder: servers started from different folders
(or on different hosts) write a backup's parts to different places, and no backup is whole
where the meta looks for it. Pegasus's onebox relies on every instance's folder being a
sibling; a deployment should not.

## Example
```ini
[block_service.local_service]
  type = local_service
  args = ../block_service/local_service
```

## How to fix
An absolute path on the mount every server shares: `args = /mnt/pegasus-backup`.
",
};

pub(super) fn check(ctx: &Context<'_>, out: &mut Vec<Finding>) {
    let source = ctx.source();
    for section in ctx.config.sections() {
        let name = &section.name.value;
        let Some(service) = name.strip_prefix("block_service.") else {
            continue;
        };
        let kind = ctx.config.value(name, "type");
        match kind {
            None => out.push(
                Finding::new(
                    &UNKNOWN_BLOCK_SERVICE,
                    source,
                    section.name.span,
                    "no `type`",
                    format!("block service `{service}` has no `type`"),
                )
                .help("`type = local_service`, with its root folder in `args`"),
            ),
            Some(k) if !is_templated(&k.value) && !KINDS.contains(&k.value.as_str()) => out.push(
                Finding::new(
                    &UNKNOWN_BLOCK_SERVICE,
                    source,
                    k.span,
                    "unknown type",
                    format!(
                        "block service `{service}` is of type `{}`, which Pegasus does not have",
                        k.value
                    ),
                )
                .help(format!("one of {}", KINDS.join(", "))),
            ),
            _ => {}
        }
        if kind.is_none_or(|k| k.value != "local_service") {
            continue;
        }
        let args = ctx.config.value(name, "args");
        let Some(args) = args.filter(|a| !a.value.trim().is_empty()) else {
            out.push(
                Finding::new(
                    &BLOCK_SERVICE_ROOT,
                    source,
                    args.map_or(section.name.span, |a| a.span),
                    "no root",
                    format!("local_service `{service}` has no root folder (`args`)"),
                )
                .help("`args = /mnt/pegasus-backup`: an absolute folder every server shares"),
            );
            continue;
        };
        let root = args.value.trim();
        if is_templated(root) {
            continue;
        }
        if !root.starts_with('/') {
            out.push(
                Finding::new(
                    &RELATIVE_BLOCK_SERVICE_ROOT,
                    source,
                    args.span,
                    "relative",
                    format!(
                        "local_service `{service}` root `{root}` is relative: each server takes it from its own working folder"
                    ),
                )
                .help("an absolute path on the mount every server shares"),
            );
            continue;
        }
        let Some(host) = &ctx.options.host else {
            continue;
        };
        match host.file_mode(root) {
            Some(None) => out.push(
                Finding::new(
                    &BLOCK_SERVICE_ROOT_UNAVAILABLE,
                    source,
                    args.span,
                    "not there",
                    format!(
                        "local_service `{service}` root `{root}` does not exist on host `{}`",
                        host.hostname
                    ),
                )
                .help("mount the shared folder (or create it) before the servers start"),
            ),
            Some(Some(mode)) if mode & 0o200 == 0 => out.push(
                Finding::new(
                    &BLOCK_SERVICE_ROOT_UNAVAILABLE,
                    source,
                    args.span,
                    format!("mode {mode:o}"),
                    format!(
                        "local_service `{service}` root `{root}` (mode {mode:o}) is not writable on host `{}`",
                        host.hostname
                    ),
                )
                .help("make it writable by the user the servers run as, or mount it read-write"),
            ),
            _ => {}
        }
    }
}
