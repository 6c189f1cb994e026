//! The typed view of a `config.ini` that the checker's rules and the server both read.
//!
//! [`Config`] groups the [`syntax`](crate::syntax) lines into sections the way the rDSN loader
//! does: a repeated key keeps its first value, a repeated section is an error (its keys are merged
//! into the first so the rest of the file can still be checked), and a section `[x..default]` is a
//! template whose keys every `[x.*]` section inherits (`apps..default`, `threadpool..default`,
//! `task..default`). Every value keeps its span, so a caller that rejects a value can point at it.
//!
//! ```
//! use configcheck::Config;
//! let config = Config::from_text("config.ini", "[apps..default]\nrun = true\n[apps.meta]\nports = 34601\n");
//! assert_eq!(config.str_or("apps.meta", "run", "false"), "true"); // inherited
//! assert_eq!(config.parse_or::<u16>("apps.meta", "ports", 0).unwrap(), 34601);
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use crate::keys::Key;
use crate::source::{SourceFile, Span, Spanned};
use crate::syntax::{self, Document, LineKind};

/// The largest file [`Config::load`] reads. Real configs are about 20 KiB.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Why a file could not be read as a config at all (as opposed to findings *in* a config).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be opened or read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The path as given.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The path is a directory where a file was expected.
    #[error("`{path}` is a directory")]
    IsDirectory {
        /// The path as given.
        path: String,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("`{path}` is larger than {limit} bytes; a Pegasus config.ini is about 20 KiB")]
    TooLarge {
        /// The path as given.
        path: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// The file holds a NUL byte: it is binary, not an ini file.
    #[error("`{path}` is a binary file (NUL byte at line {line}), not an ini file")]
    Binary {
        /// The path as given.
        path: String,
        /// The line of the first NUL byte.
        line: usize,
    },
    /// The file is not UTF-8 text.
    #[error("`{path}` is not UTF-8 text (invalid byte at line {line}, column {column})")]
    NotUtf8 {
        /// The path as given.
        path: String,
        /// Line of the first invalid byte.
        line: usize,
        /// Byte column of the first invalid byte, from 1.
        column: usize,
    },
}

/// A problem in the file's structure, turned into findings by [`crate::rules::syntax`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StructureProblem {
    /// A line the loader rejects.
    Malformed {
        /// The line's content.
        span: Span,
        /// Why.
        reason: &'static str,
    },
    /// An entry before the first section header.
    OutsideSection {
        /// The key.
        span: Span,
    },
    /// A key given twice in one section; the first value wins.
    DuplicateKey {
        /// The section.
        section: String,
        /// The key.
        key: String,
        /// The first definition.
        first: Span,
        /// The ignored one.
        again: Span,
    },
    /// A section header given twice.
    DuplicateSection {
        /// The section.
        name: String,
        /// The first header.
        first: Span,
        /// The repeated one.
        again: Span,
    },
}

/// One `key = value` line, as it sits in its section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: Spanned<String>,
    /// The value.
    pub value: Spanned<String>,
    /// The line number, from 1.
    pub line: usize,
}

/// One `[section]` with its entries in file order (first definitions only).
#[derive(Debug, Clone)]
pub struct Section {
    /// The name between the brackets.
    pub name: Spanned<String>,
    entries: Vec<Entry>,
    by_key: HashMap<String, usize>,
}

impl Section {
    /// The entries in file order, without repeated keys.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry for `key` in this section only (no template inheritance).
    pub fn own(&self, key: &str) -> Option<&Entry> {
        self.by_key.get(key).map(|&i| &self.entries[i])
    }
}

/// A value that does not have the type its key needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`[{section}] {key} = {value}` is not {expected}")]
pub struct ValueError {
    /// The section.
    pub section: String,
    /// The key.
    pub key: String,
    /// The value as written.
    pub value: String,
    /// Where the value is.
    pub span: Span,
    /// What was expected, e.g. "an unsigned integer".
    pub expected: &'static str,
}

/// A parsed `config.ini`.
pub struct Config {
    source: Arc<SourceFile>,
    document: Document,
    sections: Vec<Section>,
    by_name: HashMap<String, usize>,
    problems: Vec<StructureProblem>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("source", &self.source.name())
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Reads and parses the file at `path`, shown to users as `name`.
    ///
    /// Reads at most [`MAX_FILE_BYTES`]; refuses directories, binary files and non-UTF-8 text.
    pub fn load(path: &Path, name: &str) -> Result<Config, LoadError> {
        let io = |source| LoadError::Io {
            path: name.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        if file.metadata().map_err(io)?.is_dir() {
            return Err(LoadError::IsDirectory {
                path: name.to_owned(),
            });
        }
        Self::read(file, name)
    }

    /// Reads a config from any reader (standard input, for one), with the same limits as
    /// [`Config::load`].
    pub fn read(reader: impl Read, name: &str) -> Result<Config, LoadError> {
        let mut bytes = Vec::new();
        reader
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| LoadError::Io {
                path: name.to_owned(),
                source,
            })?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(LoadError::TooLarge {
                path: name.to_owned(),
                limit: MAX_FILE_BYTES,
            });
        }
        Self::from_bytes(bytes, name)
    }

    /// Parses bytes, refusing binary and non-UTF-8 content.
    pub fn from_bytes(bytes: Vec<u8>, name: &str) -> Result<Config, LoadError> {
        let line_of =
            |bytes: &[u8], at: usize| bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        if let Some(at) = bytes.iter().position(|&b| b == 0) {
            return Err(LoadError::Binary {
                path: name.to_owned(),
                line: line_of(&bytes, at),
            });
        }
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Self::from_text(name, text)),
            Err(err) => {
                let bytes = err.as_bytes();
                let at = err.utf8_error().valid_up_to();
                let line_start = bytes[..at]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1);
                Err(LoadError::NotUtf8 {
                    path: name.to_owned(),
                    line: line_of(bytes, at),
                    column: at - line_start + 1,
                })
            }
        }
    }

    /// Parses text. Never fails: structural problems are kept for the checker
    /// ([`Config::problems`]) and the rest of the file is still usable.
    pub fn from_text(name: &str, text: impl Into<Arc<str>>) -> Config {
        let source = Arc::new(SourceFile::new(name, text));
        let document = syntax::parse(source.text());
        let mut config = Config {
            source,
            document,
            sections: Vec::new(),
            by_name: HashMap::new(),
            problems: Vec::new(),
        };
        config.group();
        config
    }

    fn group(&mut self) {
        // Index of the section the following entries belong to.
        let mut current: Option<usize> = None;
        for line in &self.document.lines {
            match &line.kind {
                LineKind::Blank => {}
                LineKind::Malformed { span, reason } => {
                    self.problems.push(StructureProblem::Malformed {
                        span: *span,
                        reason,
                    });
                }
                LineKind::Section { name } => {
                    if let Some(&first) = self.by_name.get(&name.value) {
                        self.problems.push(StructureProblem::DuplicateSection {
                            name: name.value.clone(),
                            first: self.sections[first].name.span,
                            again: name.span,
                        });
                        current = Some(first);
                    } else {
                        self.by_name.insert(name.value.clone(), self.sections.len());
                        current = Some(self.sections.len());
                        self.sections.push(Section {
                            name: name.clone(),
                            entries: Vec::new(),
                            by_key: HashMap::new(),
                        });
                    }
                }
                LineKind::Entry { key, value } => {
                    let Some(index) = current else {
                        self.problems
                            .push(StructureProblem::OutsideSection { span: key.span });
                        continue;
                    };
                    let section = &mut self.sections[index];
                    if let Some(&first) = section.by_key.get(&key.value) {
                        self.problems.push(StructureProblem::DuplicateKey {
                            section: section.name.value.clone(),
                            key: key.value.clone(),
                            first: section.entries[first].key.span,
                            again: key.span,
                        });
                        continue;
                    }
                    section
                        .by_key
                        .insert(key.value.clone(), section.entries.len());
                    section.entries.push(Entry {
                        key: key.clone(),
                        value: value.clone(),
                        line: line.number,
                    });
                }
            }
        }
    }

    /// The file this config was read from.
    pub fn source(&self) -> &Arc<SourceFile> {
        &self.source
    }

    /// The syntax lines, for rules that look at raw text and comments.
    pub fn document(&self) -> &Document {
        &self.document
    }

    /// Structural problems found while grouping lines into sections.
    pub fn problems(&self) -> &[StructureProblem] {
        &self.problems
    }

    /// Every section in file order (a repeated section appears once).
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// The section named `name`.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.by_name.get(name).map(|&i| &self.sections[i])
    }

    /// The template section `[x..default]` that `[x.y]` inherits from, if the file has one.
    pub fn template_of(&self, name: &str) -> Option<&Section> {
        let (family, rest) = name.split_once('.')?;
        if rest.is_empty() || rest.starts_with('.') {
            return None; // `name` is itself a template
        }
        self.section(&format!("{family}..default"))
    }

    /// The entry for `key` in `section`, or in the section's template.
    pub fn entry(&self, section: &str, key: &str) -> Option<&Entry> {
        self.section(section)
            .and_then(|s| s.own(key))
            .or_else(|| self.template_of(section).and_then(|t| t.own(key)))
    }

    /// The value of `key` in `section` (or its template).
    pub fn value(&self, section: &str, key: &str) -> Option<&Spanned<String>> {
        self.entry(section, key).map(|e| &e.value)
    }

    /// `key`'s value (in its own section) parsed as `T`, or the table's default when absent
    /// or empty.
    pub fn get<T: FromStr>(&self, key: &Key) -> Result<T, ValueError> {
        self.get_in(key.section, key)
    }

    /// As [`Config::get`], in `section` (one of `key`'s family, e.g. `apps.meta`).
    pub fn get_in<T: FromStr>(&self, section: &str, key: &Key) -> Result<T, ValueError> {
        let default = key.default.parse::<T>().unwrap_or_else(|_| {
            panic!(
                "{}: the key table's default `{}` is not of its type",
                key.path(),
                key.default
            )
        });
        self.parse_or(section, key.name, default)
    }

    /// `key`'s value as a boolean, or the table's default when absent or empty.
    pub fn flag(&self, key: &Key) -> Result<bool, ValueError> {
        self.flag_in(key.section, key)
    }

    /// As [`Config::flag`], in `section` (one of `key`'s family).
    pub fn flag_in(&self, section: &str, key: &Key) -> Result<bool, ValueError> {
        self.bool_or(section, key.name, key.default == "true")
    }

    /// `key`'s text, or the table's default when absent.
    pub fn text(&self, key: &Key) -> &str {
        self.text_in(key.section, key)
    }

    /// As [`Config::text`], in `section` (one of `key`'s family).
    pub fn text_in(&self, section: &str, key: &Key) -> &str {
        self.str_or(section, key.name, key.default)
    }

    /// The value of `key`, or `default` when the key is absent.
    pub fn str_or<'a>(&'a self, section: &str, key: &str, default: &'a str) -> &'a str {
        self.value(section, key)
            .map_or(default, |v| v.value.as_str())
    }

    /// The value of `key` parsed as `T`, or `default` when the key is absent or empty.
    pub fn parse_or<T: FromStr>(
        &self,
        section: &str,
        key: &str,
        default: T,
    ) -> Result<T, ValueError> {
        match self.value(section, key) {
            None => Ok(default),
            Some(v) if v.value.is_empty() => Ok(default),
            Some(v) => v.value.parse().map_err(|_| ValueError {
                section: section.to_owned(),
                key: key.to_owned(),
                value: v.value.clone(),
                span: v.span,
                expected: type_description::<T>(),
            }),
        }
    }

    /// A `tag:path,…` list such as `[replication] data_dirs` (empty when absent); a malformed
    /// item is an error at its own text.
    pub fn data_dirs(
        &self,
        section: &str,
        key: &str,
    ) -> Result<Vec<crate::data_dir::DataDir>, ValueError> {
        let Some(v) = self.value(section, key) else {
            return Ok(Vec::new());
        };
        crate::data_dir::parse(&v.value, v.span.offset)
            .into_iter()
            .map(|item| {
                item.map_err(|(span, reason)| ValueError {
                    section: section.to_owned(),
                    key: key.to_owned(),
                    value: v.value.clone(),
                    span,
                    expected: reason,
                })
            })
            .collect()
    }

    /// A boolean as rDSN reads it (`true`/`false`, any case), or `default` when absent or empty.
    pub fn bool_or(&self, section: &str, key: &str, default: bool) -> Result<bool, ValueError> {
        match self.value(section, key) {
            None => Ok(default),
            Some(v) if v.value.is_empty() => Ok(default),
            Some(v) if v.value.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.value.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(ValueError {
                section: section.to_owned(),
                key: key.to_owned(),
                value: v.value.clone(),
                span: v.span,
                expected: "`true` or `false`",
            }),
        }
    }
}

fn type_description<T>() -> &'static str {
    match std::any::type_name::<T>() {
        "u8" | "u16" | "u32" | "u64" | "usize" => "an unsigned integer",
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer",
        "f32" | "f64" => "a number",
        _ => "a valid value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_value_wins_and_the_repeat_is_reported() {
        let c = Config::from_text("t", "[a]\nk = 1\nk = 2\n");
        assert_eq!(c.str_or("a", "k", ""), "1");
        assert!(matches!(
            c.problems(),
            [StructureProblem::DuplicateKey { .. }]
        ));
    }

    #[test]
    fn a_repeated_section_is_merged_into_the_first_and_reported() {
        let c = Config::from_text("t", "[a]\nx = 1\n[b]\n[a]\ny = 2\n");
        assert_eq!(c.str_or("a", "y", ""), "2");
        assert!(matches!(
            c.problems(),
            [StructureProblem::DuplicateSection { .. }]
        ));
    }

    #[test]
    fn template_sections_are_inherited_by_their_family_only() {
        let c = Config::from_text(
            "t",
            "[apps..default]\nrun = true\n[apps.meta]\nrun = false\n[apps.replica]\n[core]\n",
        );
        assert_eq!(c.str_or("apps.meta", "run", ""), "false");
        assert_eq!(c.str_or("apps.replica", "run", ""), "true");
        assert!(c.value("core", "run").is_none());
        assert!(c.template_of("apps..default").is_none());
    }

    #[test]
    fn typed_getters_report_the_span_of_a_bad_value() {
        let c = Config::from_text("t", "[r]\nn = 12x\nb = yes\n");
        let err = c.parse_or::<u32>("r", "n", 0).unwrap_err();
        assert_eq!(c.source().slice(err.span), "12x");
        assert_eq!(err.to_string(), "`[r] n = 12x` is not an unsigned integer");
        assert!(c.bool_or("r", "b", false).is_err());
        assert_eq!(c.parse_or::<u32>("r", "missing", 7), Ok(7));
    }

    #[test]
    fn binary_and_non_utf8_input_is_refused_with_its_position() {
        let err = Config::from_bytes(b"[a]\nk = \xff\n".to_vec(), "x").unwrap_err();
        assert!(
            matches!(
                err,
                LoadError::NotUtf8 {
                    line: 2,
                    column: 5,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = Config::from_bytes(b"\n\n\0".to_vec(), "x").unwrap_err();
        assert!(matches!(err, LoadError::Binary { line: 3, .. }), "{err:?}");
    }
}
