//! `data_dirs` values (`tag:path,tag:path`), split as Pegasus splits them, with spans: read by the
//! server through [`crate::Config::data_dirs`] and checked by [`crate::rules`] (PC040–PC047).

use crate::source::Span;

/// One `tag:path` item of `data_dirs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir {
    /// The tag.
    pub tag: String,
    /// The path, as written.
    pub path: String,
    /// The whole item.
    pub span: Span,
    /// The tag.
    pub tag_span: Span,
    /// The path.
    pub path_span: Span,
}

impl DataDir {
    /// The path without trailing slashes, for comparisons.
    pub fn normalized(&self) -> &str {
        match self.path.trim_end_matches('/') {
            "" => "/",
            p => p,
        }
    }
}

/// Splits `data_dirs` as Pegasus does: items on `,` (empty ones skipped), then `tag:path`.
/// A malformed item comes back as its span and the reason.
pub fn parse(raw: &str, offset: usize) -> Vec<Result<DataDir, (Span, &'static str)>> {
    let mut out = Vec::new();
    let mut at = 0;
    for piece in raw.split(',') {
        let lead = piece.len() - piece.trim_start().len();
        let item = piece.trim();
        let start = offset + at + lead;
        at += piece.len() + 1;
        if item.is_empty() {
            continue;
        }
        let span = Span::new(start, item.len());
        let parts: Vec<&str> = item.split(':').collect();
        let [tag, path] = parts[..] else {
            out.push(Err((
                span,
                if parts.len() == 1 {
                    "no `tag:` before the path"
                } else {
                    "more than one `:`"
                },
            )));
            continue;
        };
        let (tag_trim, path_trim) = (tag.trim(), path.trim());
        if tag_trim.is_empty() || path_trim.is_empty() {
            out.push(Err((
                span,
                if tag_trim.is_empty() {
                    "empty tag"
                } else {
                    "empty path"
                },
            )));
            continue;
        }
        let tag_span = Span::new(start + (tag.len() - tag.trim_start().len()), tag_trim.len());
        let path_start = start + tag.len() + 1;
        let path_span = Span::new(
            path_start + (path.len() - path.trim_start().len()),
            path_trim.len(),
        );
        out.push(Ok(DataDir {
            tag: tag_trim.to_owned(),
            path: path_trim.to_owned(),
            span,
            tag_span,
            path_span,
        }));
    }
    out
}
