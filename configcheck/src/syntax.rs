//! The lossless, span-carrying syntax of a Pegasus `config.ini`.
//!
//! One [`Line`] per line of the file, in order, each with its byte span, so the file can be
//! reproduced exactly and every finding can point at the text it is about. The rules are the rDSN
//! loader's (`src/utils/configuration.cpp`):
//!
//! - `#` or `;` anywhere in a line starts a comment, unless escaped as `^#` or `^;`;
//! - `[name]` opens a section;
//! - `key = value`, with both sides trimmed; a line with no `=` is a key with an empty value.
//!
//! What the lines *mean* (repeated keys and sections, template sections) is [`crate::config`]'s.

use nom::bytes::complete::{take_till, take_until};
use nom::character::complete::char;
use nom::combinator::{all_consuming, rest};
use nom::sequence::delimited;
use nom::{IResult, Offset, Parser};

use crate::source::{Span, Spanned};

/// Every line of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The lines in file order; line `n` (from 1) is `lines[n - 1]`.
    pub lines: Vec<Line>,
}

/// One line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Line number, from 1.
    pub number: usize,
    /// The line without its `\n` or `\r\n` terminator.
    pub span: Span,
    /// What the part before the comment holds.
    pub kind: LineKind,
    /// The comment, from its `#` or `;` to the end of the line.
    pub comment: Option<Span>,
}

/// What a line holds once its comment is cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind {
    /// Only whitespace (and maybe a comment).
    Blank,
    /// `[name]`.
    Section {
        /// The name between the brackets, trimmed.
        name: Spanned<String>,
    },
    /// `key = value`, or a bare `key` (empty value).
    Entry {
        /// The key, trimmed.
        key: Spanned<String>,
        /// The value, trimmed; for a bare key, an empty value at the end of the key.
        value: Spanned<String>,
    },
    /// A line the loader rejects.
    Malformed {
        /// The content that could not be read.
        span: Span,
        /// Why, in a few words.
        reason: &'static str,
    },
}

/// Parses a whole file. Never fails: a line that cannot be read becomes [`LineKind::Malformed`].
pub fn parse(text: &str) -> Document {
    let mut lines = Vec::new();
    let mut offset = 0;
    for (index, raw) in text.split('\n').enumerate() {
        let body = raw.strip_suffix('\r').unwrap_or(raw);
        lines.push(parse_line(text, offset, body, index + 1));
        offset += raw.len() + 1;
    }
    // A final newline does not start another line.
    if text.ends_with('\n') {
        lines.pop();
    }
    Document { lines }
}

fn parse_line(text: &str, offset: usize, body: &str, number: usize) -> Line {
    let (content_len, comment_at) = split_comment(body);
    let comment = comment_at.map(|at| Span::new(offset + at, body.len() - at));
    let content = &body[..content_len];
    let trimmed = content.trim();
    let kind = if trimmed.is_empty() {
        LineKind::Blank
    } else {
        classify(text, trimmed)
    };
    Line {
        number,
        span: Span::new(offset, body.len()),
        kind,
        comment,
    }
}

/// Finds where the comment starts: the first `#` or `;` not escaped by a preceding `^`.
/// Returns the length of the content before it and the comment's start.
fn split_comment(line: &str) -> (usize, Option<usize>) {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'^' if matches!(bytes.get(i + 1), Some(b'#' | b';')) => i += 2,
            b'#' | b';' => return (i, Some(i)),
            _ => i += 1,
        }
    }
    (bytes.len(), None)
}

/// Resolves the loader's comment escapes.
fn unescape(raw: &str) -> String {
    if raw.contains('^') {
        raw.replace("^#", "#").replace("^;", ";")
    } else {
        raw.to_owned()
    }
}

fn classify(text: &str, content: &str) -> LineKind {
    let spanned = |s: &str| {
        let s = s.trim();
        Spanned {
            value: unescape(s),
            span: Span::new(text.offset(s), s.len()),
        }
    };
    if content.starts_with('[') {
        return match all_consuming(section_header).parse(content) {
            Ok((_, name)) => LineKind::Section {
                name: spanned(name),
            },
            Err(_) => LineKind::Malformed {
                span: Span::new(text.offset(content), content.len()),
                reason: "a section header must be `[name]` alone on its line",
            },
        };
    }
    match key_value.parse(content) {
        Ok((_, (key, Some(value)))) if !key.trim().is_empty() => LineKind::Entry {
            key: spanned(key),
            value: spanned(value),
        },
        Ok((_, (key, None))) => {
            let key = spanned(key);
            let value = Spanned {
                value: String::new(),
                span: Span::new(key.span.end(), 0),
            };
            LineKind::Entry { key, value }
        }
        _ => LineKind::Malformed {
            span: Span::new(text.offset(content), content.len()),
            reason: "an entry needs a key before its `=`",
        },
    }
}

/// `[name]`, the name trimmed by the caller.
fn section_header(input: &str) -> IResult<&str, &str> {
    delimited(char('['), take_until("]"), char(']')).parse(input)
}

/// `key = value` or a bare `key`; the value is `None` when there is no `=`.
fn key_value(input: &str) -> IResult<&str, (&str, Option<&str>)> {
    let (input, key) = take_till(|c| c == '=').parse(input)?;
    if input.is_empty() {
        return Ok((input, (key, None)));
    }
    let (input, _) = char('=').parse(input)?;
    let (input, value) = rest.parse(input)?;
    Ok((input, (key, Some(value))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<LineKind> {
        parse(text).lines.into_iter().map(|l| l.kind).collect()
    }

    #[test]
    fn comments_start_anywhere_unless_escaped() {
        let text = "[a]\nk = v # c\nx = 1^#2 ; c\n; whole\n";
        let doc = parse(text);
        assert_eq!(doc.lines.len(), 4);
        let LineKind::Entry { value, .. } = &doc.lines[1].kind else {
            panic!()
        };
        assert_eq!(value.value, "v");
        let LineKind::Entry { value, .. } = &doc.lines[2].kind else {
            panic!()
        };
        assert_eq!(value.value, "1#2");
        assert_eq!(&text[value.span.offset..value.span.end()], "1^#2");
        assert_eq!(doc.lines[3].kind, LineKind::Blank);
        assert!(doc.lines[3].comment.is_some());
    }

    #[test]
    fn a_line_without_equals_is_a_key_with_an_empty_value() {
        let k = kinds("[a]\n  lonely  \n");
        let LineKind::Entry { key, value } = &k[1] else {
            panic!()
        };
        assert_eq!(key.value, "lonely");
        assert_eq!(value.value, "");
    }

    #[test]
    fn malformed_lines_are_kept_not_dropped() {
        let k = kinds("[a\n= v\n[b] x\n");
        assert!(
            k.iter().all(|k| matches!(k, LineKind::Malformed { .. })),
            "{k:?}"
        );
    }

    #[test]
    fn spans_cover_the_trimmed_text_and_crlf_is_a_line_end() {
        let text = "[ sec ]\r\n key =  va lue  \r\n";
        let doc = parse(text);
        let LineKind::Section { name } = &doc.lines[0].kind else {
            panic!()
        };
        assert_eq!(name.value, "sec");
        assert_eq!(&text[name.span.offset..name.span.end()], "sec");
        let LineKind::Entry { key, value } = &doc.lines[1].kind else {
            panic!()
        };
        assert_eq!(&text[key.span.offset..key.span.end()], "key");
        assert_eq!(value.value, "va lue");
        assert_eq!(doc.lines[1].span, Span::new(9, 16));
    }

    #[test]
    fn the_lines_reproduce_the_file() {
        let text = "a\r\n\n[b] ; c\nk=v";
        let doc = parse(text);
        let rebuilt: Vec<&str> = doc
            .lines
            .iter()
            .map(|l| &text[l.span.offset..l.span.end()])
            .collect();
        assert_eq!(rebuilt, ["a", "", "[b] ; c", "k=v"]);
    }
}
