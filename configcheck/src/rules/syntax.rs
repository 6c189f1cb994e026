//! What the rDSN loader rejects or silently drops.

use super::{Context, Rule, Scope};
use crate::config::StructureProblem;
use crate::finding::{Finding, Severity};
use crate::source::Span;
use crate::syntax::LineKind;

/// PC010.
pub static MALFORMED_LINE: Rule = Rule {
    code: "PC010",
    name: "malformed-line",
    severity: Severity::Error,
    scope: Scope::File,
    summary: "a line the config loader cannot read",
    doc: "## What it does
Finds lines that are neither a `[section]` header, a `key = value` entry, a bare key, a comment
nor blank: a header without its `]`, text after the `]`, an entry with nothing before its `=`.

## Why it matters
The loader refuses the whole file, so the server does not start.

## Example
```ini
[replication
  data_dirs = ssd1:/data1/pegasus
```

## How to fix
Close the header (`[replication]`), or remove the stray text.
",
};

/// PC011.
pub static DUPLICATE_KEY: Rule = Rule {
    code: "PC011",
    name: "duplicate-key",
    severity: Severity::Warning,
    scope: Scope::File,
    summary: "a key given twice in one section; the first value wins",
    doc: "## What it does
Finds a key defined a second time in the same section.

## Why it matters
The loader keeps the *first* value and only logs a warning, so an edit appended at the end of a
section (a common way to override) silently has no effect.

## Example
```ini
[replication]
  fd_lease_seconds = 20
  fd_lease_seconds = 9
```

## How to fix
Keep one definition: edit the first one and delete the other.
",
};

/// PC012.
pub static DUPLICATE_SECTION: Rule = Rule {
    code: "PC012",
    name: "duplicate-section",
    severity: Severity::Error,
    scope: Scope::File,
    summary: "a section header given twice",
    doc: "## What it does
Finds a `[section]` header that appears a second time.

## Why it matters
The loader treats a repeated section as an error and the server does not start.

## Example
```ini
[network]
  primary_interface = eth0
[network]
  io_service_worker_count = 4
```

## How to fix
Merge the two sections into the first one.
",
};

/// PC013.
pub static KEY_OUTSIDE_SECTION: Rule = Rule {
    code: "PC013",
    name: "key-outside-section",
    severity: Severity::Error,
    scope: Scope::File,
    summary: "an entry before the first section header",
    doc: "## What it does
Finds `key = value` lines above the first `[section]` header.

## Why it matters
Every Pegasus key lives in a section; an entry outside one is read by nobody, so the setting
the author meant to make does not happen.

## Example
```ini
data_dirs = ssd1:/data1/pegasus
[replication]
```

## How to fix
Move the entry under the section it belongs to.
",
};

/// PC014.
pub static COMMENT_CUTS_LIST: Rule = Rule {
    code: "PC014",
    name: "comment-cuts-list",
    severity: Severity::Error,
    scope: Scope::File,
    summary: "a `;` or `#` inside a list value: the rest of the list is a comment",
    doc: "## What it does
Finds a list value (`server_list`, `hosts_list`, `data_dirs`, a `[pegasus.clusters]` entry, ...)
with a `;` or `#` written straight after an item and more text straight after it.

## Why it matters
The config loader starts a comment at a `;` or `#` anywhere on a line. A list written with `;`
between its items keeps only its first item, silently: a meta list of one meta server (clients
and replica servers never find the others; a leader change leaves them stranded), a replica
server with one disk of several.

## Example
```ini
[meta_server]
  server_list = 10.0.0.1:34601;10.0.0.2:34601;10.0.0.3:34601
```

## How to fix
Separate the items with `,`: `server_list = 10.0.0.1:34601,10.0.0.2:34601,10.0.0.3:34601`.
",
};

/// PC015.
pub static COMMENT_CUTS_VALUE: Rule = Rule {
    code: "PC015",
    name: "comment-cuts-value",
    severity: Severity::Warning,
    scope: Scope::File,
    summary: "a `;` or `#` inside a value: the rest of the value is a comment",
    doc: "## What it does
Finds a value with a `;` or `#` written straight after it and more text straight after that,
for keys that do not hold lists (those are `comment-cuts-list`).

## Why it matters
The config loader starts a comment at a `;` or `#` anywhere on a line, so the value ends
there: a password, a path or a name with a `;` or `#` in it is silently shorter than written.

## Example
```ini
[pegasus.server]
  perf_counter_cluster_name = onebox;staging
```

## How to fix
Write `^;` (or `^#`) for a `;` (or `#`) that belongs to the value; or, if the rest is a
comment, put a space before it: `value ; comment`.
",
};

/// Whether `key` in `[section]` holds a `,`-separated list.
fn is_list(section: &str, key: &str) -> bool {
    section == "pegasus.clusters"
        || matches!(
            key,
            "server_list" | "hosts_list" | "data_dirs" | "toollets" | "pools" | "ports"
        )
}

/// A value cut by a comment marker written straight after it, with text straight after the
/// marker: `a;b`, not `a ; b` or `a ;b` or `a; b`, nor a `configcheck:` directive.
fn check_cuts(ctx: &Context<'_>, out: &mut Vec<Finding>) {
    let source = ctx.source();
    let text = source.text();
    let mut section = String::new();
    for line in &ctx.config.document().lines {
        let (key, value) = match &line.kind {
            LineKind::Section { name } => {
                section.clone_from(&name.value);
                continue;
            }
            LineKind::Entry { key, value } => (key, value),
            _ => continue,
        };
        let Some(comment) = line.comment else {
            continue;
        };
        let marker = &text[comment.offset..comment.offset + 1];
        let rest = &text[comment.offset + 1..comment.offset + comment.len];
        let touches_value =
            !value.value.is_empty() && value.span.offset + value.span.len == comment.offset;
        let cut = rest.split_whitespace().next().unwrap_or("");
        if !touches_value
            || rest.starts_with(char::is_whitespace)
            || cut.is_empty()
            || rest.trim_start().starts_with("configcheck:")
        {
            continue;
        }
        let span = Span::new(comment.offset, cut.len() + 1);
        let read_as = format!("`{}` is read as `{}`", key.value, value.value);
        out.push(if is_list(&section, &key.value) {
            Finding::new(
                &COMMENT_CUTS_LIST,
                source,
                span,
                "the list ends here",
                format!("{read_as}: the list ends at this `{marker}`"),
            )
            .help(format!(
                "separate the items with `,`: `{} = {},{}`",
                key.value,
                value.value,
                cut.replace([';', '#'], ",")
            ))
        } else {
            Finding::new(
                &COMMENT_CUTS_VALUE,
                source,
                span,
                "the value ends here",
                format!("{read_as}: the value ends at this `{marker}`"),
            )
            .help(format!(
                "write `^{marker}` if the `{marker}` belongs to the value; put a space before it if the rest is a comment"
            ))
        });
    }
}

pub(super) fn check(ctx: &Context<'_>, out: &mut Vec<Finding>) {
    check_cuts(ctx, out);
    let source = ctx.source();
    for problem in ctx.config.problems() {
        out.push(match problem {
            StructureProblem::Malformed { span, reason } => Finding::new(
                &MALFORMED_LINE,
                source,
                *span,
                *reason,
                "the config loader cannot read this line",
            )
            .help("write `[section]`, `key = value`, or start a comment with `#` or `;`"),
            StructureProblem::OutsideSection { span } => Finding::new(
                &KEY_OUTSIDE_SECTION,
                source,
                *span,
                "not in any section",
                format!(
                    "`{}` comes before the first section header",
                    source.slice(*span)
                ),
            )
            .help("move it under the `[section]` it belongs to"),
            StructureProblem::DuplicateKey {
                section,
                key,
                first,
                again,
            } => Finding::new(
                &DUPLICATE_KEY,
                source,
                *again,
                "ignored",
                format!("`{key}` is set twice in `[{section}]`; the first value wins"),
            )
            .related(*first, "this value is used")
            .help(format!("keep one `{key}` in `[{section}]`")),
            StructureProblem::DuplicateSection { name, first, again } => Finding::new(
                &DUPLICATE_SECTION,
                source,
                *again,
                "repeated",
                format!("section `[{name}]` appears twice"),
            )
            .related(*first, "first defined here")
            .help(format!("merge the two `[{name}]` sections into one")),
        });
    }
}
