//! Ports: two roles of one host configured on the same port.

use super::{Context, Rule, Scope, is_templated};
use crate::finding::{Finding, Severity};
use crate::source::Span;

/// PC070.
pub static PORT_CONFLICT: Rule = Rule {
    code: "PC070",
    name: "port-conflict",
    severity: Severity::Error,
    scope: Scope::File,
    summary: "two roles of one host on the same port",
    doc: "## What it does
Collects the ports of every `[apps.*]` role that runs (`run = true`, inheriting from
`[apps..default]`), with the shifted ports of `count > 1` instances, plus the Prometheus port when
`perf_counter_sink = prometheus`, and reports a port used twice.

## Why it matters
Every role of a host reads the same config.ini. The second process to start cannot bind its
port and exits, often long after the deploy looked finished.

## Example
```ini
[apps.meta]
  ports = 34601
[apps.replica]
  ports = 34601
```

## How to fix
Give each role its own port: meta 34601, replica 34801, collector 34101.
",
};

/// A port some role will bind, and where it comes from.
pub struct Binding {
    /// The port.
    pub port: u16,
    /// The role (`apps.meta`, or `pegasus.server prometheus`).
    pub owner: String,
    /// The value it comes from.
    pub span: Span,
}

/// The ports each running `[apps.*]` role binds: its `ports`, shifted by the port span for each
/// extra instance of `count` (rDSN's `ports_gap`). Items that are not ports are returned apart.
pub fn app_bindings(config: &crate::Config) -> (Vec<Binding>, Vec<(String, Span)>) {
    let mut bindings = Vec::new();
    let mut bad = Vec::new();
    for section in config.sections() {
        let name = &section.name.value;
        if !name.starts_with("apps.") || name.starts_with("apps..") {
            continue;
        }
        if !config.bool_or(name, "run", true).unwrap_or(true) {
            continue;
        }
        let Some(ports) = config
            .value(name, "ports")
            .filter(|v| !is_templated(&v.value))
        else {
            continue;
        };
        let count = config.parse_or::<u16>(name, "count", 1).unwrap_or(1).max(1);
        let mut parsed = Vec::new();
        for item in ports.value.split([',', ' ']).filter(|p| !p.is_empty()) {
            match item.parse::<u16>() {
                Ok(p) if p > 0 => parsed.push(p),
                _ => bad.push((item.to_owned(), ports.span)),
            }
        }
        let (Some(&low), Some(&high)) = (parsed.iter().min(), parsed.iter().max()) else {
            continue;
        };
        let gap = high - low + 1;
        for instance in 0..count {
            for &p in &parsed {
                if let Some(port) = gap
                    .checked_mul(instance)
                    .and_then(|shift| p.checked_add(shift))
                {
                    let owner = if count > 1 {
                        format!("apps.{}{}", &name[5..], instance + 1)
                    } else {
                        name.clone()
                    };
                    bindings.push(Binding {
                        port,
                        owner,
                        span: ports.span,
                    });
                }
            }
        }
    }
    (bindings, bad)
}

pub(super) fn check(ctx: &Context<'_>, out: &mut Vec<Finding>) {
    let config = ctx.config;
    let source = ctx.source();
    let (mut bindings, bad) = app_bindings(config);
    for (item, span) in bad {
        out.push(
            Finding::new(
                &super::startup::INVALID_VALUE,
                source,
                span,
                format!("`{item}` is not a port"),
                format!("`ports` item `{item}` is not a port number"),
            )
            .help("give a port from 1 to 65535, e.g. `ports = 34601`"),
        );
    }
    if config.str_or("pegasus.server", "perf_counter_sink", "") == "prometheus"
        && let Some(v) = config.value("pegasus.server", "prometheus_port")
        && let Ok(port) = v.value.parse::<u16>()
    {
        bindings.push(Binding {
            port,
            owner: "the Prometheus exporter".into(),
            span: v.span,
        });
    }
    for (n, b) in bindings.iter().enumerate() {
        if let Some(first) = bindings[..n]
            .iter()
            .find(|f| f.port == b.port && f.owner != b.owner)
        {
            out.push(
                Finding::new(
                    &PORT_CONFLICT,
                    source,
                    b.span,
                    format!("{} binds {}", b.owner, b.port),
                    format!(
                        "port {} is used by both `{}` and `{}`",
                        b.port, first.owner, b.owner
                    ),
                )
                .related(first.span, format!("{} binds {}", first.owner, first.port))
                .help("give each role its own port: meta 34601, replica 34801, collector 34101"),
            );
        }
    }
}
