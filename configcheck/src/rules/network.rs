//! The advertised address: `[network] primary_interface` against the host's interfaces.

use super::{Context, Rule, Scope, is_templated};
use crate::address::{self, NetworkSettings};
use crate::facts::HostFacts;
use crate::finding::{Finding, Severity};
use crate::source::Span;

/// PC060.
pub static AMBIGUOUS_PRIMARY_INTERFACE: Rule = Rule {
    code: "PC060",
    name: "ambiguous-primary-interface",
    severity: Severity::Warning,
    scope: Scope::Host,
    summary: "`primary_interface` is empty and the host has several private addresses",
    doc: "## What it does
With `[network] primary_interface` empty, lists the host's candidate addresses (IPv4 in 10/8,
172.16/12 or 192.168/16, on an interface whose name does not contain `docker`, not
`172.17.42.1`) and warns when there is more than one, naming the one that would be chosen.

## Why it matters
The node advertises the first candidate in the kernel's interface order. On a host with a
service network and a storage or management network, that may be the wrong one, and which one
is first can change after a reboot or a new VLAN.

## Example
```ini
[network]
  primary_interface =
```
on a host with `eth0` 10.0.0.3 and `eth1` 192.168.7.3.

## How to fix
Name the interface: `primary_interface = eth0` (or set `explicit_host_address`).
",
};

/// PC061.
pub static NO_PRIVATE_ADDRESS: Rule = Rule {
    code: "PC061",
    name: "no-private-address",
    severity: Severity::Warning,
    scope: Scope::Host,
    summary: "`primary_interface` is empty and the host has no private address",
    doc: "## What it does
With `[network] primary_interface` empty, warns when the host has no candidate address at all,
and says what the node falls back to: its host name, resolved.

## Why it matters
Public addresses are never chosen automatically. The fallback is often `127.0.1.1` (Debian's
`/etc/hosts`), which other nodes cannot reach.

## Example
```ini
[network]
  primary_interface =
```
on a host whose only address is 203.0.113.5.

## How to fix
Name the interface to use (`primary_interface = eth0`) or set `explicit_host_address`.
",
};

/// PC062.
pub static UNKNOWN_INTERFACE: Rule = Rule {
    code: "PC062",
    name: "unknown-interface",
    severity: Severity::Error,
    scope: Scope::Host,
    summary: "`primary_interface` names an interface the host does not have",
    doc: "## What it does
Checks that the interface named by `[network] primary_interface` exists on the host.

## Why it matters
Pegasus logs \"get ip address from network interface failed\" and falls back to resolving the
host name, so the node advertises an address nobody chose. A host name or an address in this key
(a common mistake, see Pegasus PR #2300) has the same effect.

## Example
```ini
[network]
  primary_interface = eth9
```

## How to fix
Use one of the host's interface names: `primary_interface = eth0`.
",
};

/// PC063.
pub static INTERFACE_WITHOUT_IPV4: Rule = Rule {
    code: "PC063",
    name: "interface-without-ipv4",
    severity: Severity::Error,
    scope: Scope::Host,
    summary: "`primary_interface` names an interface with no IPv4 address",
    doc: "## What it does
Checks that the interface named by `[network] primary_interface` has an IPv4 address.

## Why it matters
Pegasus advertises IPv4 only; with no address on the interface it falls back to the host name.

## Example
```ini
[network]
  primary_interface = eth1
```
where `eth1` is down or IPv6-only.

## How to fix
Configure an IPv4 address on the interface, or name another one.
",
};

pub(super) fn check(ctx: &Context<'_>, out: &mut Vec<Finding>) {
    let Some(host) = &ctx.options.host else {
        return;
    };
    let config = ctx.config;
    let settings = NetworkSettings::from_config(config);
    if is_templated(&settings.primary_interface) || !settings.explicit_host_address.is_empty() {
        return;
    }
    let source = ctx.source();
    let entry = config.value("network", "primary_interface");
    let span = entry
        .map(|v| v.span)
        .or_else(|| config.section("network").map(|s| s.name.span))
        .unwrap_or(Span::new(0, 0));
    if settings.primary_interface.is_empty() {
        let candidates = address::candidates(host);
        let list = candidates
            .iter()
            .map(|(name, ip)| format!("`{name}` {ip}"))
            .collect::<Vec<_>>()
            .join(", ");
        match candidates.as_slice() {
            [] => out.push(
                Finding::new(&NO_PRIVATE_ADDRESS, source, span, "no interface to pick", format!("no private IPv4 address on host `{}`: the node falls back to {}", host.hostname, fallback(host)))
                    .help(format!("name the interface to advertise, e.g. `primary_interface = {}`", some_interface(host))),
            ),
            [_] => {}
            [(name, ip), ..] => out.push(
                Finding::new(&AMBIGUOUS_PRIMARY_INTERFACE, source, span, format!("picks `{name}` {ip}"), format!("`primary_interface` is empty and host `{}` has {} private addresses: {list}", host.hostname, candidates.len()))
                    .help(format!("name the interface to advertise, e.g. `primary_interface = {name}`")),
            ),
        }
        return;
    }
    let name = &settings.primary_interface;
    match host.interface(name) {
        None => {
            let hint = if name.contains('.') {
                " (it takes an interface name, not a host name or address)"
            } else {
                ""
            };
            out.push(
                Finding::new(
                    &UNKNOWN_INTERFACE,
                    source,
                    span,
                    "no such interface",
                    format!("host `{}` has no interface `{name}`{hint}", host.hostname),
                )
                .help(format!("use one of: {}", interface_list(host))),
            );
        }
        Some(i) if i.ipv4.is_empty() => out.push(
            Finding::new(
                &INTERFACE_WITHOUT_IPV4,
                source,
                span,
                "no IPv4 address",
                format!(
                    "interface `{name}` has no IPv4 address on host `{}`",
                    host.hostname
                ),
            )
            .help(format!(
                "configure an IPv4 address on `{name}`, or use one of: {}",
                interface_list(host)
            )),
        ),
        Some(_) => {}
    }
}

fn fallback(host: &HostFacts) -> String {
    match host.hostname_ipv4.first() {
        Some(ip) => format!("its host name, which resolves to {ip}"),
        None => "its host name, which does not resolve".to_owned(),
    }
}

fn some_interface(host: &HostFacts) -> &str {
    host.interfaces
        .iter()
        .find(|i| i.name != "lo" && !i.ipv4.is_empty())
        .map_or("eth0", |i| i.name.as_str())
}

fn interface_list(host: &HostFacts) -> String {
    let names: Vec<String> = host
        .interfaces
        .iter()
        .filter(|i| !i.ipv4.is_empty())
        .map(|i| format!("`{}` ({})", i.name, i.ipv4[0]))
        .collect();
    if names.is_empty() {
        "(no interface has an IPv4 address)".to_owned()
    } else {
        names.join(", ")
    }
}
