//! Filling a template: `%{name}` (production template) and `@NAME@` (onebox template) tokens.
//!
//! Rendering is all or nothing: if any token has no value, nothing is produced and every missing
//! name is listed, so a half-filled config never reaches a node.
//!
//! ```
//! use std::collections::BTreeMap;
//! let vars = BTreeMap::from([("cluster.name".to_owned(), "prod".to_owned())]);
//! let out = configcheck::render::render("root = /pegasus/%{cluster.name}\n", &vars).unwrap();
//! assert_eq!(out.text, "root = /pegasus/prod\n");
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use crate::rules::template_vars::{self, TokenKind};

/// Why a template could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// Tokens without a value.
    #[error("no value for {}", .0.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))]
    Missing(Vec<String>),
    /// A line of a vars file that is not `name = value`.
    #[error("{path}:{line}: expected `name = value`, found `{text}`")]
    BadVarsLine {
        /// The vars file.
        path: String,
        /// Its line, from 1.
        line: usize,
        /// The line.
        text: String,
    },
    /// A `--set` argument that is not `name=value`.
    #[error("`--set {0}`: expected `name=value`")]
    BadSet(String),
    /// A key to set that the config does not have (only keys the template has can be set, so a
    /// typo cannot add a key the server ignores).
    #[error("no `{key}` in `[{section}]` to set")]
    NoKey {
        /// The section.
        section: String,
        /// The key.
        key: String,
    },
    /// Reading or writing failed.
    #[error("{what} `{path}`: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A rendered template.
#[derive(Debug, PartialEq, Eq)]
pub struct Rendered {
    /// The filled text.
    pub text: String,
    /// Given names no token used (likely typos).
    pub unused: Vec<String>,
}

/// Fills every `%{name}` and `@NAME@` token of `template` from `vars`.
pub fn render(template: &str, vars: &BTreeMap<String, String>) -> Result<Rendered, RenderError> {
    let tokens: Vec<_> = template_vars::tokens(template)
        .into_iter()
        .filter(|t| t.kind != TokenKind::Rdsn)
        .collect();
    let missing: BTreeSet<&str> = tokens
        .iter()
        .map(|t| t.name.as_str())
        .filter(|n| !vars.contains_key(*n))
        .collect();
    if !missing.is_empty() {
        return Err(RenderError::Missing(
            missing.into_iter().map(str::to_owned).collect(),
        ));
    }
    let mut text = String::with_capacity(template.len());
    let mut at = 0;
    for token in &tokens {
        text.push_str(&template[at..token.start]);
        text.push_str(&vars[&token.name]);
        at = token.start + token.len;
    }
    text.push_str(&template[at..]);
    let used: BTreeSet<&str> = tokens.iter().map(|t| t.name.as_str()).collect();
    let unused = vars
        .keys()
        .filter(|k| !used.contains(k.as_str()))
        .cloned()
        .collect();
    Ok(Rendered { text, unused })
}

/// Parses `--set name=value` arguments.
pub fn parse_sets(sets: &[String]) -> Result<BTreeMap<String, String>, RenderError> {
    sets.iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
            _ => Err(RenderError::BadSet(s.clone())),
        })
        .collect()
}

/// Reads a vars file: `name = value` per line; blank lines and lines starting with `#` are
/// skipped; the value is trimmed and may be empty.
pub fn read_vars(path: &Path) -> Result<BTreeMap<String, String>, RenderError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| RenderError::Io {
        what: "cannot read vars file",
        path: name.clone(),
        source,
    })?;
    let mut vars = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                vars.insert(k.trim().to_owned(), v.trim().to_owned());
            }
            _ => {
                return Err(RenderError::BadVarsLine {
                    path: name,
                    line: n + 1,
                    text: line.to_owned(),
                });
            }
        }
    }
    Ok(vars)
}

/// Replaces the values of existing keys of a rendered config, `(section, key, value)` each,
/// keeping every other byte (comments, layout) as it was.
///
/// ```
/// let text = "[apps.meta]\n  ports = 34601 ; the default\n";
/// let out = configcheck::render::set_values(text, &[("apps.meta", "ports", "34602")]).unwrap();
/// assert_eq!(out, "[apps.meta]\n  ports = 34602 ; the default\n");
/// ```
pub fn set_values(text: &str, sets: &[(&str, &str, &str)]) -> Result<String, RenderError> {
    let config = crate::config::Config::from_text("rendered", text);
    let mut edits = Vec::new();
    for (section, key, value) in sets {
        let entry = config
            .section(section)
            .and_then(|s| s.own(key))
            .ok_or_else(|| RenderError::NoKey {
                section: (*section).to_owned(),
                key: (*key).to_owned(),
            })?;
        edits.push((entry.value.span, *value));
    }
    edits.sort_by_key(|(span, _)| std::cmp::Reverse(span.offset));
    let mut out = text.to_owned();
    for (span, value) in edits {
        // An empty value sits right after `=`: keep the template's `key = value` spacing.
        let spaced = if span.len == 0 && text[..span.offset].ends_with('=') {
            format!(" {value}")
        } else {
            value.to_owned()
        };
        out.replace_range(span.offset..span.end(), &spaced);
    }
    Ok(out)
}

/// Writes `text` to `path` atomically: a temporary file in the same directory, synced, then
/// renamed over `path`. A reader sees the old file or the new one, never a part.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), RenderError> {
    let io = |what, source| RenderError::Io {
        what,
        path: path.display().to_string(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| io("cannot create a file beside", e))?;
    tmp.write_all(text.as_bytes())
        .map_err(|e| io("cannot write", e))?;
    tmp.as_file().sync_all().map_err(|e| io("cannot sync", e))?;
    tmp.persist(path)
        .map_err(|e| io("cannot replace", e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_fills_empty_values_and_refuses_missing_keys() {
        let text = "[network]\nprimary_interface =\n[apps.replica]\nports = 34801\n";
        let out = set_values(
            text,
            &[
                ("network", "primary_interface", "eth1"),
                ("apps.replica", "ports", "34802"),
            ],
        )
        .unwrap();
        assert_eq!(
            out,
            "[network]\nprimary_interface = eth1\n[apps.replica]\nports = 34802\n"
        );
        assert!(matches!(
            set_values(text, &[("network", "nope", "1")]),
            Err(RenderError::NoKey { .. })
        ));
    }

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn fills_both_token_kinds_and_reports_unused_names() {
        let out = render(
            "a=%{x} b=@PORT@ c=%keep%",
            &vars(&[("x", "1"), ("PORT", "2"), ("typo", "3")]),
        )
        .unwrap();
        assert_eq!(out.text, "a=1 b=2 c=%keep%");
        assert_eq!(out.unused, ["typo"]);
    }

    #[test]
    fn refuses_and_lists_every_missing_name_once() {
        let err = render("%{a} %{b} %{a}", &vars(&[])).unwrap_err();
        assert_eq!(err.to_string(), "no value for `a`, `b`");
    }

    #[test]
    fn set_arguments_need_a_name() {
        assert!(parse_sets(&["=x".into()]).is_err());
        assert_eq!(parse_sets(&["a=b=c".into()]).unwrap()["a"], "b=c");
    }
}
