//! What the rDSN loader rejects or silently drops.

use super::{Context, Rule, Scope};
use crate::config::StructureProblem;
use crate::finding::{Finding, Severity};

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

pub(super) fn check(ctx: &Context<'_>, out: &mut Vec<Finding>) {
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
