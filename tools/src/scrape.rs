//! Reading what the servers serve over HTTP: a plain GET, and the samples of Prometheus's text
//! format (`/metrics`), for the shell's `server_stat` and `app_stat`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// An HTTP answer.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Header lines, `name: value` with the name lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Answer {
    /// The value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` from `addr` (blocking; the servers close the connection after one answer), at
/// most `timeout` to connect and for each read.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<Answer> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer");
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Answer {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// A scraper as Prometheus is one: `GET /metrics` from every server, every interval, on a
/// thread of its own, until stopped (`pegasus_bench --scrape` measures what that costs).
pub struct Scraper {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(usize, usize)>,
}

impl Scraper {
    /// Starts scraping `servers` every `interval`.
    pub fn start(servers: Vec<SocketAddr>, interval: Duration) -> Scraper {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let (mut ok, mut failed) = (0, 0);
            while !stopped.load(Ordering::Relaxed) {
                let round = std::time::Instant::now();
                for s in &servers {
                    match get(*s, "/metrics", Duration::from_secs(5)) {
                        Ok(a) if a.status == 200 => ok += 1,
                        _ => failed += 1,
                    }
                }
                while round.elapsed() < interval && !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            (ok, failed)
        });
        Scraper { stop, thread }
    }

    /// Stops; the scrapes that succeeded and failed.
    pub fn stop(self) -> (usize, usize) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or((0, 0))
    }
}

/// One sample of Prometheus's text format.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series name (`pegasus_replica_requests_total`, `…_bucket`, …).
    pub name: String,
    /// The labels, unescaped, in order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The samples of `text` (comments skipped; a line that does not parse is skipped too).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let mut labels = Vec::new();
    let mut rest = rest;
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let mut end = None;
        loop {
            // `name="value",` … `}`
            while chars.peek().is_some_and(|(_, c)| *c == ',' || *c == ' ') {
                chars.next();
            }
            match chars.peek() {
                Some((i, '}')) => {
                    end = Some(*i);
                    break;
                }
                None => break,
                _ => {}
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            labels.push((key.trim().to_owned(), value));
        }
        rest = &after[end? + 1..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Two scrapes of one server `seconds` apart: rates and latencies over that window.
#[derive(Clone, Debug)]
pub struct Window {
    /// The first scrape.
    pub before: Vec<Sample>,
    /// The second.
    pub after: Vec<Sample>,
    /// Between them.
    pub seconds: f64,
}

/// Whether `s` has every label of `labels`.
fn has(s: &Sample, labels: &[(&str, &str)]) -> bool {
    labels.iter().all(|(k, v)| s.label(k) == Some(*v))
}

/// The sum of series `name` over samples with `labels`.
pub fn total(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && has(s, labels))
        .map(|s| s.value)
        .sum()
}

impl Window {
    /// The rate per second of counter `name` (summed over samples with `labels`).
    pub fn rate(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let d = total(&self.after, name, labels) - total(&self.before, name, labels);
        if self.seconds > 0.0 {
            d.max(0.0) / self.seconds
        } else {
            0.0
        }
    }

    /// The 99th percentile (the bucket bound it falls in) of histogram `name` (without its
    /// `_bucket` suffix) over the window, in milliseconds; 0 without observations.
    pub fn p99_ms(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let bucket = format!("{name}_bucket");
        let mut bounds: Vec<(f64, f64)> = Vec::new();
        for s in self
            .after
            .iter()
            .filter(|s| s.name == bucket && has(s, labels))
        {
            let Some(le) = s.label("le").and_then(|l| match l {
                "+Inf" => Some(f64::INFINITY),
                l => l.parse().ok(),
            }) else {
                continue;
            };
            let was: f64 = self
                .before
                .iter()
                .filter(|b| b.name == bucket && b.labels == s.labels)
                .map(|b| b.value)
                .sum();
            match bounds.iter_mut().find(|(b, _)| *b == le) {
                Some((_, n)) => *n += s.value - was,
                None => bounds.push((le, s.value - was)),
            }
        }
        bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        let Some(&(_, count)) = bounds.last() else {
            return 0.0;
        };
        if count <= 0.0 {
            return 0.0;
        }
        // Buckets are cumulative: the first bound holding 99 % of the observations.
        let finite = bounds
            .iter()
            .rev()
            .find(|(b, _)| b.is_finite())
            .map_or(0.0, |b| b.0);
        bounds
            .iter()
            .find(|(_, n)| *n >= count * 0.99)
            .map_or(0.0, |(b, _)| if b.is_finite() { *b } else { finite })
            * 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_parse_with_escaped_labels() {
        let text = "# HELP x_total X.\n# TYPE x_total counter\n\
                    x_total{cluster=\"c\",table=\"we\\\"ird\\\\t\\n\"} 3\n\
                    up 1\n\
                    h_bucket{le=\"+Inf\"} 7\n";
        let s = parse(text);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "x_total");
        assert_eq!(s[0].label("table"), Some("we\"ird\\t\n"));
        assert_eq!(s[0].value, 3.0);
        assert_eq!(s[1].labels, vec![]);
        assert_eq!(s[2].label("le"), Some("+Inf"));
        assert_eq!(s[2].value, 7.0);
    }

    #[test]
    fn windows_give_rates_and_percentiles() {
        let before = parse(
            "r_total{op=\"get\"} 10\nl_bucket{op=\"get\",le=\"0.001\"} 0\nl_bucket{op=\"get\",le=\"0.01\"} 0\nl_bucket{op=\"get\",le=\"+Inf\"} 0\n",
        );
        let after = parse(
            "r_total{op=\"get\"} 30\nl_bucket{op=\"get\",le=\"0.001\"} 90\nl_bucket{op=\"get\",le=\"0.01\"} 100\nl_bucket{op=\"get\",le=\"+Inf\"} 100\n",
        );
        let w = Window {
            before,
            after,
            seconds: 2.0,
        };
        assert_eq!(w.rate("r_total", &[("op", "get")]), 10.0);
        assert_eq!(w.rate("r_total", &[("op", "put")]), 0.0);
        assert_eq!(w.p99_ms("l", &[("op", "get")]), 10.0);
    }
}
