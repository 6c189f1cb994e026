//! The config a process runs with, as Pegasus serves it: `GET /config?name=<key>` and
//! `GET /configs` on every role's port. Each key the server reads (`configcheck::keys`), with
//! its section, type (Pegasus's `FV_*` names), description and the value this process took at
//! start: the file's, or the default where the file has none. What a file now says and what a
//! process still runs with can differ until it restarts; these pages show the second.

use std::collections::BTreeMap;

use configcheck::Config;
use configcheck::keys::{self, Kind, Reader};
use serde::Serialize;

use crate::http::{HttpRequest, HttpResponse, content};

/// Keys whose values are secrets: shown as [`HIDDEN`] when set. The HTTP port answers anyone
/// who reaches it; a password must not be one request away.
const SECRETS: &[keys::Key] = &[keys::ZK_AUTH_DIGEST];

/// What a secret's value is shown as.
pub const HIDDEN: &str = "<hidden>";

/// One key as the process runs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunningKey {
    /// The key.
    pub name: String,
    /// Its section (a role's own section for `apps.*` keys).
    pub section: String,
    /// `FV_BOOL`, `FV_INT64`, `FV_UINT64` or `FV_STRING`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Pegasus's flag tags; none here (no key changes while the process runs).
    pub tags: &'static str,
    /// What it does.
    pub description: &'static str,
    /// The value taken at start.
    pub value: String,
}

/// Every key the server reads, by the name `/config?name=` takes: the key's own name, or
/// `<section>.<name>` where several sections have it (`apps.meta.ports`).
#[derive(Clone, Debug, Default)]
pub struct RunningConfig {
    keys: BTreeMap<String, RunningKey>,
}

impl RunningConfig {
    /// The values `config` gives, as the server took them at start.
    pub fn of(config: &Config) -> RunningConfig {
        let mut found = Vec::new();
        for key in keys::ALL.iter().filter(|k| k.reader == Reader::Server) {
            let sections: Vec<String> = if key.section.ends_with('*') {
                config
                    .sections()
                    .iter()
                    .map(|s| s.name.value.clone())
                    .filter(|s| key.applies_to(s))
                    .collect()
            } else {
                vec![key.section.to_owned()]
            };
            let secret = SECRETS
                .iter()
                .any(|s| s.section == key.section && s.name == key.name);
            for section in sections {
                let value = config.text_in(&section, key);
                found.push(RunningKey {
                    name: key.name.to_owned(),
                    value: if secret && !value.is_empty() {
                        HIDDEN.to_owned()
                    } else {
                        value.to_owned()
                    },
                    section,
                    kind: match key.kind {
                        Kind::Bool => "FV_BOOL",
                        Kind::Integer => "FV_INT64",
                        Kind::Unsigned => "FV_UINT64",
                        Kind::Text => "FV_STRING",
                    },
                    tags: "",
                    description: key.doc,
                });
            }
        }
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for k in &found {
            *count.entry(k.name.clone()).or_default() += 1;
        }
        let keys = found
            .into_iter()
            .map(|k| {
                let id = if count[&k.name] == 1 {
                    k.name.clone()
                } else {
                    format!("{}.{}", k.section, k.name)
                };
                (id, k)
            })
            .collect();
        RunningConfig { keys }
    }

    /// The key `name` (see [`RunningConfig`]).
    pub fn get(&self, name: &str) -> Option<&RunningKey> {
        self.keys.get(name)
    }

    /// Answers `/config` and `/configs`; `None` for other paths.
    pub fn answer(&self, req: &HttpRequest) -> Option<HttpResponse> {
        match req.path.as_str() {
            "/configs" if req.args.is_empty() => Some(json(&self.keys)),
            "/configs" => Some(HttpResponse::error(400, "/configs takes no arguments\n")),
            "/config" => Some(match req.args.as_slice() {
                [(arg, name)] if arg == "name" => match self.get(name) {
                    Some(key) => json(key),
                    None => HttpResponse::error(
                        404,
                        format!("ERR_OBJECT_NOT_FOUND: {name} is not found\n"),
                    ),
                },
                _ => HttpResponse::error(400, "/config takes one argument: name=<key>\n"),
            }),
            _ => None,
        }
    }
}

/// `v` as compact JSON, as Pegasus answers (`text/plain`).
fn json(v: &impl Serialize) -> HttpResponse {
    HttpResponse::ok(
        content::TEXT,
        serde_json::to_string(v).expect("keys serialize"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(running: &RunningConfig, path: &str, args: &[(&str, &str)]) -> HttpResponse {
        running
            .answer(&HttpRequest {
                method: "GET".into(),
                path: path.into(),
                args: args
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            })
            .expect("answered")
    }

    #[test]
    fn config_pages_show_the_file_value_or_the_default() {
        let config = Config::from_text(
            "config.ini",
            "[apps.meta]\n  ports = 34601\n[apps.replica]\n  ports = 34801\n\
             [replication]\n  fd_lease_seconds = 11\n\
             [zookeeper]\n  auth_digest = pegasus:s3cret\n",
        );
        let running = RunningConfig::of(&config);
        let lease = get(&running, "/config", &[("name", "fd_lease_seconds")]);
        assert_eq!(lease.status, 200);
        let v: serde_json::Value = serde_json::from_str(&lease.body).unwrap();
        assert_eq!(v["value"], "11");
        assert_eq!(v["section"], "replication");
        assert_eq!(v["type"], "FV_UINT64");
        // Absent from the file: its default.
        let grace = running.get("fd_grace_seconds").unwrap();
        assert_eq!(grace.value, keys::FD_GRACE.default);
        // A name two sections have is asked for with its section.
        assert_eq!(running.get("apps.replica.ports").unwrap().value, "34801");
        assert!(running.get("ports").is_none());
        assert_eq!(get(&running, "/config", &[("name", "nope")]).status, 404);
        assert_eq!(get(&running, "/config", &[]).status, 400);
        let all: serde_json::Value =
            serde_json::from_str(&get(&running, "/configs", &[]).body).unwrap();
        assert_eq!(all["fd_lease_seconds"]["value"], "11");
        assert_eq!(all["apps.meta.ports"]["value"], "34601");
        // A password is not one request away.
        assert_eq!(running.get("auth_digest").unwrap().value, HIDDEN);
        assert!(!get(&running, "/configs", &[]).body.contains("s3cret"));
    }
}
