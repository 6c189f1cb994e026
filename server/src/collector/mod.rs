//! The Collector: an availability detector over the `available_detect_app` table, with its
//! counters served as Prometheus text at `GET /metrics` on the collector's port.
//!
//! Every `available_detect_interval_seconds` it writes and reads back one key per partition
//! (`detect_available_p<pidx>_<n>`, the first `n` whose hash lands on the partition, as Pegasus's
//! detector does), each within `available_detect_timeout` milliseconds; a partition is available
//! when both succeed.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pegasus_client::{Client, ClientOptions, Table};
use pegasus_protocol::codes::ErrorCode;
use pegasus_protocol::frame::Request;
use pegasus_protocol::key;
use tracing::{info, warn};

use crate::net::{Reply, Service};

/// What the collector role needs from the config (`[pegasus.collector]`).
#[derive(Clone, Debug)]
pub struct CollectorOptions {
    /// The metas.
    pub metas: Vec<SocketAddr>,
    /// `[replication] cluster_name`.
    pub cluster_name: String,
    /// `available_detect_app`.
    pub app: String,
    /// `available_detect_interval_seconds`.
    pub interval: Duration,
    /// `available_detect_timeout` (milliseconds).
    pub timeout: Duration,
}

/// The detector's counters.
#[derive(Default)]
struct Metrics {
    rounds: AtomicU64,
    detects: AtomicU64,
    failures: AtomicU64,
    /// Whether each partition passed its last check.
    partitions: Mutex<Vec<bool>>,
}

/// The collector role.
pub struct Collector {
    options: CollectorOptions,
    metrics: Metrics,
}

/// The detect key of partition `pidx` out of `count`: the first `detect_available_p<pidx>_<n>`
/// whose hash lands on it.
pub fn detect_key(pidx: i32, count: i32) -> String {
    (0..)
        .map(|n| format!("detect_available_p{pidx}_{n}"))
        .find(|k| key::partition_index(key::crc64(k.as_bytes()), count) == pidx)
        .expect("some key lands on every partition")
}

impl Collector {
    /// A collector with `options`.
    pub fn new(options: CollectorOptions) -> Arc<Collector> {
        Arc::new(Collector {
            options,
            metrics: Metrics::default(),
        })
    }

    /// Detects until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future) {
        let mut client_options = ClientOptions::new(self.options.metas.clone());
        client_options.timeout = self.options.timeout;
        let client = Client::new(client_options);
        let mut table: Option<(Table, Vec<String>)> = None;
        let mut ticker = tokio::time::interval(self.options.interval);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = ticker.tick() => {}
            }
            if table.is_none() {
                match client.open_table(&self.options.app).await {
                    Ok(t) => {
                        let keys = (0..t.partition_count())
                            .map(|p| detect_key(p, t.partition_count()))
                            .collect();
                        info!(
                            app = self.options.app,
                            partitions = t.partition_count(),
                            "availability detection starts"
                        );
                        table = Some((t, keys));
                    }
                    Err(e) => {
                        warn!(app = self.options.app, "cannot open the detect table: {e}");
                        continue;
                    }
                }
            }
            let Some((t, keys)) = &table else { continue };
            let value = format!(
                "detect_value_{}",
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            );
            let mut results = Vec::with_capacity(keys.len());
            for k in keys {
                let check = tokio::time::timeout(self.options.timeout, async {
                    t.set(k.as_bytes(), b"", value.as_bytes(), None).await?;
                    t.get(k.as_bytes(), b"").await
                });
                results.push(matches!(check.await, Ok(Ok(Some(v))) if v == value.as_bytes()));
            }
            let failed = results.iter().filter(|ok| !**ok).count() as u64;
            self.metrics.rounds.fetch_add(1, Ordering::Relaxed);
            self.metrics
                .detects
                .fetch_add(results.len() as u64, Ordering::Relaxed);
            self.metrics.failures.fetch_add(failed, Ordering::Relaxed);
            if failed > 0 {
                warn!(app = self.options.app, failed, "partitions unavailable");
            }
            *self.metrics.partitions.lock().expect("partitions") = results;
        }
    }

    /// The counters as Prometheus text.
    pub fn metrics_text(&self) -> String {
        let m = &self.metrics;
        let labels = format!(
            "cluster=\"{}\",app=\"{}\"",
            self.options.cluster_name, self.options.app
        );
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# TYPE pegasus_collector_detect_rounds_total counter\npegasus_collector_detect_rounds_total{{{labels}}} {}",
            m.rounds.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# TYPE pegasus_collector_detect_total counter\npegasus_collector_detect_total{{{labels}}} {}",
            m.detects.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# TYPE pegasus_collector_detect_failures_total counter\npegasus_collector_detect_failures_total{{{labels}}} {}",
            m.failures.load(Ordering::Relaxed)
        );
        let partitions = m.partitions.lock().expect("partitions");
        let _ = writeln!(out, "# TYPE pegasus_collector_partition_available gauge");
        for (p, ok) in partitions.iter().enumerate() {
            let _ = writeln!(
                out,
                "pegasus_collector_partition_available{{{labels},pidx=\"{p}\"}} {}",
                u8::from(*ok)
            );
        }
        let available = if partitions.is_empty() {
            0.0
        } else {
            partitions.iter().filter(|ok| **ok).count() as f64 / partitions.len() as f64
        };
        let _ = writeln!(
            out,
            "# TYPE pegasus_collector_available_ratio gauge\npegasus_collector_available_ratio{{{labels}}} {available}"
        );
        out
    }
}

impl Service for Collector {
    fn handle(self: &Arc<Self>, batch: Vec<(Request, Reply)>) {
        for (_, reply) in batch {
            reply.error(ErrorCode::HandlerNotFound);
        }
    }

    fn http(&self, path: &str) -> Option<String> {
        (path == "/metrics").then(|| self.metrics_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_keys_land_on_their_partitions() {
        for p in 0..8 {
            let k = detect_key(p, 8);
            assert_eq!(key::partition_index(key::crc64(k.as_bytes()), 8), p);
            assert!(k.starts_with(&format!("detect_available_p{p}_")));
        }
    }
}
