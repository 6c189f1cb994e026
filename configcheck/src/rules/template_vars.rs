//! Template tokens left in the file: `%{xxx}` (the production template), `@NAME@` (the onebox
//! template) and rDSN `%key%` tokens.

use super::{Context, Rule, Scope};
use crate::finding::{Finding, Severity};
use crate::source::Span;

/// PC001.
pub static UNREPLACED_TEMPLATE_VARIABLE: Rule = Rule {
    code: "PC001",
    name: "unreplaced-template-variable",
    severity: Severity::Error,
    scope: Scope::File,
    summary: "a `%{xxx}` variable of the deploy template is still in the file",
    doc: "## What it does
Finds every `%{xxx}` variable of Pegasus's production template (`src/server/config.ini`), in
keys, values and section names.

## Why it matters
Pegasus does not substitute `%{xxx}` itself: the deploy tool must. A variable left in stays in
the value literally, so `data_dirs = %{data.dirs}` is a data dir named `%{data.dirs}` and
`server_list = %{meta.server.list}` makes the server fail at start-up. The same variable appears
in several places (`%{cluster.name}` five times), so one missed occurrence is easy.

## Example
```ini
[meta_server]
  server_list = %{meta.server.list}
```

## How to fix
Replace every occurrence with its value, or fill them all at once:
`configcheck render config.ini --set meta.server.list=10.0.0.1:34601,10.0.0.2:34601 … -o out.ini`.
",
};

/// PC002.
pub static UNREPLACED_PLACEHOLDER: Rule = Rule {
    code: "PC002",
    name: "unreplaced-placeholder",
    severity: Severity::Error,
    scope: Scope::File,
    summary: "an `@NAME@` placeholder of the onebox template is still in the file",
    doc: "## What it does
Finds `@NAME@` placeholders of the onebox template (`config.min.ini`): `@META_PORT@`,
`@REPLICA_PORT@`, `@LOCAL_HOSTNAME@`, `@APP_NAME@`, `@PARTITION_COUNT@`, `@PROMETHEUS_PORT@`.

## Why it matters
`run.sh start_onebox` replaces them with `sed`; a file copied from the template by hand keeps
them, and `ports = @META_PORT@` is not a port.

## Example
```ini
[apps.meta]
  ports = @META_PORT@
```

## How to fix
Replace the placeholder (`ports = 34601`), or render the file:
`configcheck render config.min.ini --set META_PORT=34601 … -o config.ini`.
",
};

/// PC003.
pub static UNREPLACED_RDSN_TOKEN: Rule = Rule {
    code: "PC003",
    name: "unreplaced-rdsn-token",
    severity: Severity::Warning,
    scope: Scope::File,
    summary: "an rDSN `%key%` token is only replaced through `-cargs`",
    doc: "## What it does
Finds `%key%` tokens, which the rDSN loader replaces with the values given on the command line
as `-cargs key=value`.

## Why it matters
Without a matching `-cargs` entry, a value that still has the form `%key%` becomes empty, so
the server starts with a default nobody chose.

## Example
```ini
[apps.meta]
  ports = %meta_port%
```

## How to fix
Write the value itself (`ports = 34601`), or always start the server with
`-cargs meta_port=34601`.
",
};

/// Which kind of token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// `%{name}`.
    Variable,
    /// `@NAME@`.
    Placeholder,
    /// `%name%`.
    Rdsn,
}

/// A template token found in a text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// Which kind.
    pub kind: TokenKind,
    /// The name inside the delimiters.
    pub name: String,
    /// Byte offset in the scanned text.
    pub start: usize,
    /// Byte length of the whole token.
    pub len: usize,
}

fn is_var_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// Every template token in `text`, left to right.
pub fn tokens(text: &str) -> Vec<Token> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let token = match bytes[i] {
            b'%' if bytes.get(i + 1) == Some(&b'{') => delimited(bytes, i + 2, b'}', is_var_char)
                .map(|end| (TokenKind::Variable, i + 2, end)),
            b'%' => delimited(bytes, i + 1, b'%', |b| {
                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.')
            })
            .map(|end| (TokenKind::Rdsn, i + 1, end)),
            b'@' if bytes.get(i + 1).is_some_and(u8::is_ascii_uppercase) => {
                delimited(bytes, i + 1, b'@', |b| {
                    b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'
                })
                .map(|end| (TokenKind::Placeholder, i + 1, end))
            }
            _ => None,
        };
        match token {
            Some((kind, name_start, name_end)) => {
                out.push(Token {
                    kind,
                    name: text[name_start..name_end].to_owned(),
                    start: i,
                    len: name_end + 1 - i,
                });
                i = name_end + 1;
            }
            None => i += 1,
        }
    }
    out
}

/// The end of a non-empty run of `allowed` bytes from `start` that is closed by `close`.
fn delimited(bytes: &[u8], start: usize, close: u8, allowed: impl Fn(u8) -> bool) -> Option<usize> {
    let run = bytes[start..].iter().take_while(|&&b| allowed(b)).count();
    (run > 0 && bytes.get(start + run) == Some(&close)).then_some(start + run)
}

/// What each variable of the production template stands for (the deployment guide's table).
fn describe(variable: &str) -> Option<&'static str> {
    Some(match variable {
        "cluster.name" => "the cluster name, e.g. `my_cluster`",
        "home.dir" => "the Pegasus home dir, e.g. `/home/work`",
        "app.dir" => "the working dir for data and logs, e.g. `/home/work/app/pegasus`",
        "slog.dir" => "the shared-log dir (deprecated since 2.6, may be empty)",
        "data.dirs" => {
            "the data dirs as `tag:path` pairs, e.g. `ssd2:/home/work/ssd2/pegasus,ssd3:/home/work/ssd3/pegasus`"
        }
        "meta.server.list" => {
            "the MetaServers' `ip:port` list, e.g. `10.0.0.1:34601,10.0.0.2:34601`"
        }
        "zk.server.list" => "the ZooKeeper `ip:port` list, e.g. `10.0.0.1:2181,10.0.0.2:2181`",
        "hdfs_service_args" => "the HDFS name node and path for cold backups, or empty",
        _ => return None,
    })
}

pub(super) fn check(ctx: &Context<'_>, out: &mut Vec<Finding>) {
    let source = ctx.source();
    for line in &ctx.config.document().lines {
        // Tokens in comments are documentation, not configuration.
        let content_len = line
            .comment
            .map_or(line.span.len, |c| c.offset - line.span.offset);
        let content = &source.text()[line.span.offset..line.span.offset + content_len];
        for token in tokens(content) {
            let span = Span::new(line.span.offset + token.start, token.len);
            let text = source.slice(span);
            let finding = match token.kind {
                TokenKind::Variable => {
                    let what = describe(&token.name).unwrap_or("its value");
                    Finding::new(
                        &UNREPLACED_TEMPLATE_VARIABLE,
                        source,
                        span,
                        "never replaced",
                        format!("unreplaced template variable `{text}`"),
                    )
                    .help(format!(
                        "replace every `{text}` with {what}, or fill them all with `configcheck render --set {}=…`",
                        token.name
                    ))
                }
                TokenKind::Placeholder => Finding::new(
                    &UNREPLACED_PLACEHOLDER,
                    source,
                    span,
                    "never replaced",
                    format!("unreplaced onebox placeholder `{text}`"),
                )
                .help(format!(
                    "replace `{text}` with its value, or fill it with `configcheck render --set {}=…`",
                    token.name
                )),
                TokenKind::Rdsn => Finding::new(
                    &UNREPLACED_RDSN_TOKEN,
                    source,
                    span,
                    "empty unless given with `-cargs`",
                    format!("rDSN token `{text}` is replaced only by `-cargs {}=…`", token.name),
                )
                .help(format!("write the value itself, or start the server with `-cargs {}=<value>`", token.name)),
            };
            out.push(finding);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_kind_of_token_with_its_offsets() {
        let t = tokens("/pegasus/%{cluster.name}/x @APP_NAME@ %port% 100% a@b.c");
        let kinds: Vec<_> = t
            .iter()
            .map(|t| (t.kind, t.name.as_str(), t.start, t.len))
            .collect();
        assert_eq!(
            kinds,
            [
                (TokenKind::Variable, "cluster.name", 9, 15),
                (TokenKind::Placeholder, "APP_NAME", 27, 10),
                (TokenKind::Rdsn, "port", 38, 6),
            ]
        );
    }

    #[test]
    fn ordinary_text_has_no_tokens() {
        for text in [
            "%",
            "%{}",
            "@@",
            "user@example.com",
            "50%",
            "%{a b}",
            "@lower@",
        ] {
            assert!(tokens(text).is_empty(), "{text}");
        }
    }
}
