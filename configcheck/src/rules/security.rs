//! Security settings: ZooKeeper credentials kept from other users, the admin allow-list.

use super::{Context, Rule, Scope, is_templated};
use crate::address::AllowList;
use crate::finding::{Finding, Severity};

/// PC100.
pub static READABLE_ZOOKEEPER_CREDENTIALS: Rule = Rule {
    code: "PC100",
    name: "readable-zookeeper-credentials",
    severity: Severity::Error,
    scope: Scope::Host,
    summary: "`[zookeeper] auth_digest_file` is missing, or others may read it",
    doc: "## What it does
Looks at the file `[zookeeper] auth_digest_file` names on the host: it must exist, and only its
owner (or its group) may read it: no permission bit for others (`chmod 600` or `640`).

## Why it matters
The file holds the `user:password` the MetaServers give ZooKeeper's `digest` scheme; every node
under `cluster_root` is readable and writable by that identity only. Anyone who can read the
file can rewrite the cluster's metadata (tables, partition configurations, the meta level), as
if there were no ACL. A missing file stops every meta at start-up.

## Example
```ini
[zookeeper]
  auth_digest_file = /etc/pegasus/zk.digest
```
with `/etc/pegasus/zk.digest` of mode `0644`.

## How to fix
`chmod 600 /etc/pegasus/zk.digest` (owned by the user the server runs as).
",
};

/// PC101.
pub static MALFORMED_ADMIN_ALLOW_LIST: Rule = Rule {
    code: "PC101",
    name: "malformed-admin-allow-list",
    severity: Severity::Error,
    scope: Scope::File,
    summary: "`[security] admin_allowed_hosts` has an item that is not an address or a CIDR block",
    doc: "## What it does
Checks each comma-separated item of `[security] admin_allowed_hosts` is an IP address
(`10.0.0.5`, `::1`) or a CIDR block (`10.0.0.0/8`).

## Why it matters
The MetaServer refuses to start with a list it cannot read: a host name or a typo would
otherwise leave the admin RPCs (create, drop, recall, table envs, the meta level) open to
everyone, or to no one.

## Example
```ini
[security]
  admin_allowed_hosts = 10.0.0.0/8, ops-host
```

## How to fix
Write addresses or blocks only: `admin_allowed_hosts = 10.0.0.0/8, 192.168.3.7`.
",
};

pub(super) fn check(ctx: &Context<'_>, out: &mut Vec<Finding>) {
    let config = ctx.config;
    let source = ctx.source();
    if let Some(list) = config.value("security", "admin_allowed_hosts")
        && !is_templated(&list.value)
        && let Err(why) = AllowList::parse(&list.value)
    {
        out.push(
            Finding::new(
                &MALFORMED_ADMIN_ALLOW_LIST,
                source,
                list.span,
                "not an address",
                format!("`[security] admin_allowed_hosts`: {why}"),
            )
            .help("list IP addresses and CIDR blocks only, e.g. `10.0.0.0/8, 192.168.3.7`"),
        );
    }
    let (Some(host), Some(file)) = (
        &ctx.options.host,
        config.value("zookeeper", "auth_digest_file"),
    ) else {
        return;
    };
    if file.value.is_empty() || is_templated(&file.value) {
        return;
    }
    match host.file_mode(&file.value) {
        Some(None) => out.push(
            Finding::new(
                &READABLE_ZOOKEEPER_CREDENTIALS,
                source,
                file.span,
                "not there",
                format!(
                    "`{}` does not exist on host `{}`",
                    file.value, host.hostname
                ),
            )
            .help("create it with `user:password` on one line, mode 600"),
        ),
        Some(Some(mode)) if mode & 0o007 != 0 => out.push(
            Finding::new(
                &READABLE_ZOOKEEPER_CREDENTIALS,
                source,
                file.span,
                format!("mode {mode:o}"),
                format!(
                    "`{}` (mode {mode:o}) may be read by every user of host `{}`",
                    file.value, host.hostname
                ),
            )
            .help(format!("`chmod 600 {}`", file.value)),
        ),
        _ => {}
    }
}
