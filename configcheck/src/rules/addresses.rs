//! Address lists: `[meta_server] server_list`, every `[pegasus.clusters]` entry, and
//! `[zookeeper] hosts_list`.

use std::collections::BTreeSet;

use super::{Context, Rule, Scope, is_templated};
use crate::address::{self, AddressError, Host, ListItem};
use crate::finding::{Finding, Severity};
use crate::source::Spanned;

/// PC020.
pub static META_SERVER_HOSTNAME: Rule = Rule {
    code: "PC020",
    name: "meta-server-hostname",
    severity: Severity::Error,
    scope: Scope::File,
    summary: "a host name where the meta server list needs an IP address",
    doc: "## What it does
Finds host names in `[meta_server] server_list` and in `[pegasus.clusters]` entries.

## Why it matters
The deployment guide says: \"only IP addresses are supported and hostnames are not supported\".
Up to 2.3 a name is rejected outright; 2.4 and 2.5 resolve it once at start-up and keep the IP,
so a DNS change is never seen; on 2.6 names are kept but several tools (bulk load, the Java and Go
clients) still assume IPs.

## Example
```ini
[meta_server]
  server_list = meta1.example.com:34601,meta2.example.com:34601
```

## How to fix
Write each MetaServer's IP address: `server_list = 10.0.0.1:34601,10.0.0.2:34601`.
",
};

/// PC021.
pub static MALFORMED_ADDRESS: Rule = Rule {
    code: "PC021",
    name: "malformed-address",
    severity: Severity::Error,
    scope: Scope::File,
    summary: "an address list item that is not a valid `ip:port`",
    doc: "## What it does
Checks every item of the meta server lists and of `[zookeeper] hosts_list` is `host:port` with a
port from 1 to 65535 and an IPv4 address or host name.

## Why it matters
A server that cannot parse its meta list or ZooKeeper list stops at start-up (\"invalid
host_port\"); a client given a bad list cannot find the cluster.

## Example
```ini
[zookeeper]
  hosts_list = 10.0.0.1:2181,10.0.0.2
```

## How to fix
Give every item its port: `hosts_list = 10.0.0.1:2181,10.0.0.2:2181`.
",
};

/// PC022.
pub static DUPLICATE_ADDRESS: Rule = Rule {
    code: "PC022",
    name: "duplicate-address",
    severity: Severity::Error,
    scope: Scope::File,
    summary: "the same address twice in one list",
    doc: "## What it does
Finds an address listed twice in a meta server list or the ZooKeeper list.

## Why it matters
Pegasus 2.6 rejects a meta list with duplicates at start-up; with older versions one MetaServer
counts twice and the standby you think you have is not there.

## Example
```ini
[meta_server]
  server_list = 10.0.0.1:34601,10.0.0.1:34601
```

## How to fix
List each server once; the second was probably meant to be another host.
",
};

/// PC023.
pub static EMPTY_ADDRESS_LIST: Rule = Rule {
    code: "PC023",
    name: "empty-address-list",
    severity: Severity::Error,
    scope: Scope::File,
    summary: "an empty meta server or ZooKeeper list",
    doc: "## What it does
Finds an empty `[meta_server] server_list`, `[zookeeper] hosts_list` or `[pegasus.clusters]`
entry.

## Why it matters
Replica servers and clients cannot find any MetaServer (\"no meta server specified\"), and the
MetaServer cannot reach ZooKeeper.

## Example
```ini
[meta_server]
  server_list =
```

## How to fix
List the servers: `server_list = 10.0.0.1:34601,10.0.0.2:34601`.
",
};

/// PC024.
pub static CLUSTER_META_LIST_MISMATCH: Rule = Rule {
    code: "PC024",
    name: "cluster-meta-list-mismatch",
    severity: Severity::Error,
    scope: Scope::File,
    summary: "the `[pegasus.clusters]` entry of this cluster lists other metas than `server_list`",
    doc: "## What it does
Compares the `[pegasus.clusters]` entry named after `[replication] cluster_name` with
`[meta_server] server_list` (as sets: order does not matter).

## Why it matters
The collector and the shell find the cluster through `[pegasus.clusters]`; when it differs from
the list the servers use, they talk to other MetaServers, or to none.

## Example
```ini
[meta_server]
  server_list = 10.0.0.1:34601,10.0.0.2:34601
[pegasus.clusters]
  my_cluster = 10.0.0.1:34601
```

## How to fix
Make the entry the same list as `server_list`.
",
};

/// PC025.
pub static SINGLE_META_SERVER: Rule = Rule {
    code: "PC025",
    name: "single-meta-server",
    severity: Severity::Warning,
    scope: Scope::File,
    summary: "only one MetaServer: no standby to take over",
    doc: "## What it does
Warns when `[meta_server] server_list` has a single address.

## Why it matters
The guide asks for 2 or 3 MetaServers: one leader and standbys that take over when it fails.
With one, a failed MetaServer stops every membership change and every new client.

## Example
```ini
[meta_server]
  server_list = 10.0.0.1:34601
```

## How to fix
Run 2 or 3 MetaServers and list them all: `server_list = 10.0.0.1:34601,10.0.0.2:34601`.
",
};

/// PC026.
pub static MISSING_CLUSTER_ENTRY: Rule = Rule {
    code: "PC026",
    name: "missing-cluster-entry",
    severity: Severity::Warning,
    scope: Scope::File,
    summary: "`[pegasus.clusters]` has no entry for this cluster",
    doc: "## What it does
Checks that `[pegasus.clusters]` has an entry named after `[replication] cluster_name`.

## Why it matters
The collector and the shell look the meta list up by cluster name there; without the entry
the collector cannot detect availability.

## Example
```ini
[replication]
  cluster_name = my_cluster
[pegasus.clusters]
  other = 10.0.0.9:34601
```

## How to fix
Add `my_cluster = <the server_list>` under `[pegasus.clusters]`.
",
};

/// What kind of list, which decides the rules applied.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ListKind {
    Meta,
    Zookeeper,
}

pub(super) fn check(ctx: &Context<'_>, out: &mut Vec<Finding>) {
    let config = ctx.config;
    let server_list = config.value("meta_server", "server_list");
    let server_items =
        server_list.and_then(|v| check_list(ctx, v, "server_list", ListKind::Meta, out));
    if let (Some(items), Some(v)) = (&server_items, server_list)
        && items.len() == 1
    {
        out.push(
            Finding::new(
                &SINGLE_META_SERVER,
                ctx.source(),
                v.span,
                "the only MetaServer",
                "only one MetaServer is listed: no standby can take over",
            )
            .help(format!(
                "run 2 or 3 MetaServers and list them all, e.g. `{},10.0.0.2:34601`",
                items[0].text
            )),
        );
    }
    if let Some(v) = config.value("zookeeper", "hosts_list") {
        check_list(ctx, v, "hosts_list", ListKind::Zookeeper, out);
    }
    let Some(clusters) = config.section("pegasus.clusters") else {
        return;
    };
    let cluster_name = config
        .value("replication", "cluster_name")
        .filter(|n| !n.value.is_empty() && !is_templated(&n.value));
    let mut own_entry = None;
    for entry in clusters.entries() {
        let key = format!("[pegasus.clusters] {}", entry.key.value);
        let items = check_list(ctx, &entry.value, &key, ListKind::Meta, out);
        if cluster_name.is_some_and(|n| n.value == entry.key.value) {
            own_entry = Some((entry, items));
        }
    }
    let Some(name) = cluster_name else { return };
    let Some((entry, items)) = own_entry else {
        if server_list.is_some() {
            out.push(
                Finding::new(
                    &MISSING_CLUSTER_ENTRY,
                    ctx.source(),
                    clusters.name.span,
                    format!("no `{}` entry", name.value),
                    format!(
                        "`[pegasus.clusters]` has no entry for cluster `{}`",
                        name.value
                    ),
                )
                .related(name.span, "the cluster name")
                .help(format!(
                    "add `{} = <server_list>` under `[pegasus.clusters]`",
                    name.value
                )),
            );
        }
        return;
    };
    if let (Some(own), Some(servers), Some(server_list)) = (items, server_items, server_list) {
        let set = |items: &[ListItem]| {
            items
                .iter()
                .map(|i| i.text.clone())
                .collect::<BTreeSet<_>>()
        };
        if set(&own) != set(&servers) {
            out.push(
                Finding::new(
                    &CLUSTER_META_LIST_MISMATCH,
                    ctx.source(),
                    entry.value.span,
                    "the shell and collector use this list",
                    format!(
                        "`[pegasus.clusters] {}` differs from `[meta_server] server_list`",
                        name.value
                    ),
                )
                .related(server_list.span, "the servers use this list")
                .help(format!("set `{} = {}`", name.value, server_list.value)),
            );
        }
    }
}

/// Checks one list; returns its items when every one of them is valid.
fn check_list(
    ctx: &Context<'_>,
    value: &Spanned<String>,
    key: &str,
    kind: ListKind,
    out: &mut Vec<Finding>,
) -> Option<Vec<ListItem>> {
    let source = ctx.source();
    if is_templated(&value.value) {
        return None;
    }
    let raw = source.slice(value.span);
    let items = address::parse_list(raw, value.span.offset);
    if items.is_empty() {
        out.push(
            Finding::new(
                &EMPTY_ADDRESS_LIST,
                source,
                value.span,
                "empty",
                format!("`{key}` lists no address"),
            )
            .help(match kind {
                ListKind::Meta => "list the MetaServers, e.g. `10.0.0.1:34601,10.0.0.2:34601`",
                ListKind::Zookeeper => {
                    "list the ZooKeeper servers, e.g. `10.0.0.1:2181,10.0.0.2:2181`"
                }
            }),
        );
        return None;
    }
    let mut valid = true;
    for (n, item) in items.iter().enumerate() {
        match &item.parsed {
            Err(err) => {
                valid = false;
                let help = match err {
                    AddressError::MissingPort(_) => match kind {
                        ListKind::Meta => format!("add the port, e.g. `{}:34601`", item.text),
                        ListKind::Zookeeper => format!("add the port, e.g. `{}:2181`", item.text),
                    },
                    AddressError::Ipv6(_) => "use the server's IPv4 address".to_owned(),
                    _ => "write it as `ip:port`, e.g. `10.0.0.1:34601`".to_owned(),
                };
                out.push(
                    Finding::new(
                        &MALFORMED_ADDRESS,
                        source,
                        item.span,
                        err.to_string(),
                        format!("`{}` in `{key}` is not a valid `ip:port`", item.text),
                    )
                    .help(help),
                );
            }
            Ok(hp) => {
                if let (Host::Name(name), ListKind::Meta) = (&hp.host, kind) {
                    valid = false;
                    out.push(
                        Finding::new(&META_SERVER_HOSTNAME, source, item.span, "a host name", format!("meta server `{}` is given by host name", item.text))
                            .help(format!("use the IP address of `{name}`, e.g. `10.0.0.3:{}`: the meta server list takes IP addresses only", hp.port)),
                    );
                }
                if let Some(first) = items[..n]
                    .iter()
                    .find(|i| i.parsed.as_ref().ok() == Some(hp))
                {
                    out.push(
                        Finding::new(
                            &DUPLICATE_ADDRESS,
                            source,
                            item.span,
                            "listed again",
                            format!("`{}` is listed twice in `{key}`", item.text),
                        )
                        .related(first.span, "first listed here")
                        .help("list each server once"),
                    );
                }
            }
        }
    }
    valid.then_some(items)
}
