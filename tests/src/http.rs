//! A plain HTTP/1.1 GET, as a script or a browser sends it, for the tests of what the roles
//! serve over HTTP (the API, `/metrics`, the status pages); and the tools that check those
//! answers for real (promtool, a headless Chromium).

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

pub use pegasus_tools::scrape::Answer;

/// `GET path` from `addr`; `None` when the connection fails.
pub fn get(addr: SocketAddr, path: &str) -> Option<Answer> {
    pegasus_tools::scrape::get(addr, path, Duration::from_secs(30)).ok()
}

/// The value of series `name` summed over its samples whose labels include every one of
/// `labels` (`k="v"`); `None` when none matches.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let wanted: Vec<(&str, &str)> = labels
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k, v.trim_matches('"')))
        .collect();
    pegasus_tools::scrape::parse(text)
        .into_iter()
        .filter(|s| s.name == name && wanted.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .map(|s| s.value)
        .reduce(|a, b| a + b)
}

/// `promtool check metrics` on `text`: what it found wrong (empty when nothing).
pub fn promtool_problems(text: &str) -> String {
    let mut child = crate::process::Guarded::spawn(
        Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        said.trim().to_owned()
    } else {
        format!("exit {:?}: {said}", out.status.code())
    }
}

/// Headless Chromium's DOM of `url` after it loaded; with `screenshot`, a PNG of it there too.
pub fn chromium_dom(url: &str, screenshot: Option<&Path>) -> String {
    let profile = tempfile::tempdir().unwrap();
    let run = |extra: &[String]| {
        let out = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--window-size=1280,1600",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(url)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("chromium: {e} (`./run.sh setup test` installs it: package chromium)")
            });
        assert!(
            out.status.success(),
            "chromium {extra:?} {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    if let Some(png) = screenshot {
        std::fs::create_dir_all(png.parent().unwrap()).unwrap();
        run(&[format!("--screenshot={}", png.display())]);
    }
    run(&["--dump-dom".to_owned()])
}
