//! HTTP beside RPC on every role's port, as Pegasus serves it: a request head parsed into a
//! path and arguments, answers with a status and a content type, and the JSON Pegasus's HTTP
//! API writes (compact, keys in the order written, every value a string, a newline at the end).
//!
//! Paths every role answers: `/` (the list of paths, or a status page), `/version`,
//! `/recentStartTime`, `/metrics`, `/health`. The meta adds `/meta/*` (see `meta::http`).

use std::fmt::Write as _;
use std::time::SystemTime;

/// A parsed request: the method, the path (percent-decoded, empty segments dropped, with a
/// leading `/`, so `/meta//app/` is `/meta/app`), and the query arguments in order (`k` alone
/// is `k` = ``).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// The normalised path.
    pub path: String,
    /// The arguments.
    pub args: Vec<(String, String)>,
}

/// Why a request is refused before a handler sees it.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    /// Not `METHOD target HTTP/x`.
    #[error("malformed request line")]
    Malformed,
    /// An argument given twice (Pegasus refuses these).
    #[error("duplicate parameter: {0}")]
    Duplicate(String),
}

impl HttpRequest {
    /// Parses the first line of a request head.
    pub fn parse(head: &str) -> Result<HttpRequest, BadRequest> {
        let line = head.lines().next().unwrap_or_default();
        let mut parts = line.split_whitespace();
        let (Some(method), Some(target), Some(version)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(BadRequest::Malformed);
        };
        if !version.starts_with("HTTP/") {
            return Err(BadRequest::Malformed);
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let path = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut args: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            if args.iter().any(|(seen, _)| *seen == k) {
                return Err(BadRequest::Duplicate(k.into_owned()));
            }
            args.push((k.into_owned(), v.into_owned()));
        }
        Ok(HttpRequest {
            method: method.to_owned(),
            path: format!("/{}", segments.join("/")),
            args,
        })
    }

    /// The value of argument `name`.
    pub fn arg(&self, name: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether every argument is one of `allowed`.
    pub fn args_within(&self, allowed: &[&str]) -> bool {
        self.args.iter().all(|(k, _)| allowed.contains(&k.as_str()))
    }

    /// The request again as a path with its arguments (for a redirect).
    pub fn target(&self) -> String {
        if self.args.is_empty() {
            return self.path.clone();
        }
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&self.args)
            .finish();
        format!("{}?{query}", self.path)
    }
}

/// Content types.
pub mod content {
    /// Pegasus answers everything, JSON included, as `text/plain`.
    pub const TEXT: &str = "text/plain";
    /// The status pages.
    pub const HTML: &str = "text/html; charset=utf-8";
}

/// An answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// 200, 307, 400, 404, 500 or 503.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// `Location`, for a redirect.
    pub location: Option<String>,
    /// The body.
    pub body: String,
}

impl HttpResponse {
    /// 200 with `body` of `content_type`.
    pub fn ok(content_type: &'static str, body: String) -> Self {
        HttpResponse {
            status: 200,
            content_type,
            location: None,
            body,
        }
    }

    /// 200 with Pegasus's JSON.
    pub fn json(body: &Json) -> Self {
        Self::ok(content::TEXT, body.to_pegasus())
    }

    /// An error `status` with a plain-text body.
    pub fn error(status: u16, body: impl Into<String>) -> Self {
        HttpResponse {
            status,
            content_type: content::TEXT,
            location: None,
            body: body.into(),
        }
    }

    /// 404 for a path nothing serves (Pegasus's words).
    pub fn not_found(path: &str) -> Self {
        Self::error(
            404,
            format!("service not found for \"{}\"", path.trim_start_matches('/')),
        )
    }

    /// 307 to `location`, with an empty body (a follower meta's answer).
    pub fn redirect(location: String) -> Self {
        HttpResponse {
            status: 307,
            content_type: content::TEXT,
            location: Some(location),
            body: String::new(),
        }
    }

    /// The status line's reason.
    pub fn reason(&self) -> &'static str {
        match self.status {
            200 => "OK",
            307 => "Temporary Redirect",
            400 => "Bad Request",
            404 => "Not Found",
            408 => "Request Timeout",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "Internal Server Error",
        }
    }

    /// The whole answer on the wire (the connection closes after it).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status,
            self.reason(),
            self.content_type,
            self.body.len()
        );
        if let Some(location) = &self.location {
            let _ = write!(head, "Location: {location}\r\n");
        }
        head.push_str("Connection: close\r\n\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(self.body.as_bytes());
        bytes
    }
}

/// Pegasus's JSON: objects keep the order keys were added in; every leaf is a string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Json {
    /// A string.
    Str(String),
    /// An object, in order.
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// An empty object.
    pub fn obj() -> Json {
        Json::Obj(Vec::new())
    }

    /// Adds `key`: a string, a number (written as a string, as Pegasus does) or an object.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Json>) -> Json {
        self.push(key, value);
        self
    }

    /// Adds `key` in place.
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<Json>) {
        if let Json::Obj(pairs) = self {
            pairs.push((key.into(), value.into()));
        }
    }

    /// Compact, with a newline at the end, as Pegasus's HTTP API prints it.
    pub fn to_pegasus(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out.push('\n');
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Str(s) => out.push_str(&serde_json::to_string(s).expect("a string encodes")),
            Json::Obj(pairs) => {
                out.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).expect("a string encodes"));
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

impl From<String> for Json {
    fn from(s: String) -> Json {
        Json::Str(s)
    }
}

impl From<&str> for Json {
    fn from(s: &str) -> Json {
        Json::Str(s.to_owned())
    }
}

macro_rules! json_from_number {
    ($($t:ty),*) => {$(
        impl From<$t> for Json {
            fn from(n: $t) -> Json {
                Json::Str(n.to_string())
            }
        }
    )*};
}
json_from_number!(i32, i64, u32, u64, usize);

impl From<bool> for Json {
    fn from(b: bool) -> Json {
        Json::Str(b.to_string())
    }
}

/// What every role answers the same way: `/version`, `/recentStartTime`.
pub fn builtin(req: &HttpRequest, started: SystemTime) -> Option<HttpResponse> {
    match req.path.as_str() {
        "/version" => Some(HttpResponse::json(
            &Json::obj().with("Version", env!("CARGO_PKG_VERSION")).with(
                "GitCommit",
                option_env!("PEGASUS_GIT_COMMIT").unwrap_or("unknown"),
            ),
        )),
        "/recentStartTime" => Some(HttpResponse::json(
            &Json::obj().with("RecentStartTime", date_time(started, false)),
        )),
        _ => None,
    }
}

/// `yyyy-MM-dd hh:mm:ss` (with `.SSS` when `millis`), as Pegasus prints times in its HTTP API;
/// in UTC (a multi-threaded process cannot soundly read its local offset; containers run in UTC).
pub fn date_time(t: SystemTime, millis: bool) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(since.as_nanos() as i128)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut s = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    if millis {
        let _ = write!(s, ".{:03}", at.millisecond());
    }
    s
}

/// A status page: one HTML document with its style inline and nothing fetched from elsewhere
/// (it works on an air-gapped network), reloading itself every 5 seconds. `body` is HTML.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\"><title>{title}</title>\n<style>{STYLE}</style></head>\n\
         <body><h1>{title}</h1>\n{body}<footer>pegasus_server {version}; refreshed every 5 s</footer></body></html>\n",
        title = escape_html(title),
        version = env!("CARGO_PKG_VERSION"),
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}\
th{background:#f3f3f3}.alive{color:#176f2c}.dead{color:#b00020;font-weight:bold}\
.map{display:flex;flex-wrap:wrap;gap:3px;margin:.3em 0 1em}\
.cell{width:22px;height:22px;border-radius:3px;font-size:10px;line-height:22px;text-align:center;color:#fff}\
.healthy{background:#2e7d32}.writable_ill{background:#f9a825}.unwritable{background:#ef6c00}\
.unreadable{background:#c62828}.dead_partition{background:#111}footer{margin-top:2em;color:#888;font-size:.8em}\
.legend .cell{display:inline-block;width:12px;height:12px;vertical-align:middle}";

/// `s` with HTML's special characters escaped (for the status pages).
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_and_arguments_decoded() {
        let r = HttpRequest::parse("GET /meta//app/?name=my%20t&detail HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/meta/app");
        assert_eq!(r.arg("name"), Some("my t"));
        assert_eq!(r.arg("detail"), Some(""));
        assert!(r.args_within(&["name", "detail"]));
        assert!(!r.args_within(&["name"]));
        assert_eq!(r.target(), "/meta/app?name=my+t&detail=");
        assert_eq!(HttpRequest::parse("GET / HTTP/1.0\r\n").unwrap().path, "/");
        assert_eq!(
            HttpRequest::parse("GET /x?a=1&a=2 HTTP/1.1"),
            Err(BadRequest::Duplicate("a".into()))
        );
        assert_eq!(HttpRequest::parse("GET /x"), Err(BadRequest::Malformed));
    }

    #[test]
    fn json_is_pegasus_s_compact_all_strings_in_order() {
        let j = Json::obj()
            .with("b", 2)
            .with("a", "x\"y")
            .with("nested", Json::obj().with("t", true));
        assert_eq!(
            j.to_pegasus(),
            "{\"b\":\"2\",\"a\":\"x\\\"y\",\"nested\":{\"t\":\"true\"}}\n"
        );
    }

    #[test]
    fn answers_carry_status_type_length_and_location() {
        let r = HttpResponse::redirect("http://127.0.0.1:34601/meta/apps".into());
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 307 Temporary Redirect\r\n"),
            "{text}"
        );
        assert!(text.contains("Content-Length: 0\r\n"));
        assert!(text.contains("Location: http://127.0.0.1:34601/meta/apps\r\n"));
        assert_eq!(
            HttpResponse::not_found("/meta/x").body,
            "service not found for \"meta/x\""
        );
        assert_eq!(
            escape_html("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn times_are_printed_as_pegasus_prints_them() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_564_495_465_123);
        assert_eq!(date_time(t, true), "2019-07-30 14:04:25.123");
        assert_eq!(date_time(t, false), "2019-07-30 14:04:25");
    }
}
