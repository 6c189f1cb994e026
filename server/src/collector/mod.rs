//! The Collector: an availability detector over the `available_detect_app` table, with its
//! counters served as Prometheus text at `GET /metrics` on the collector's port.
//!
//! Every `available_detect_interval_seconds` it writes and reads back one key per partition
//! (`detect_available_p<pidx>_<n>`, the first `n` whose hash lands on the partition, as Pegasus's
//! detector does), each within `available_detect_timeout` milliseconds; a partition is available
//! when both succeed.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pegasus_client::{Client, ClientOptions, Table};
use pegasus_protocol::codes::{ErrorCode, rpc};
use pegasus_protocol::frame::Request;
use pegasus_protocol::key;
use pegasus_protocol::types::{AvailabilityReport, AvailabilityReportResponse, RpcAddress};
use tracing::{info, warn};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::http::{self, HttpRequest, HttpResponse};
use crate::metrics::{self, PartitionLabels, TableLabels};
use crate::net::{Reply, Service};

/// What the collector role needs from the config (`[pegasus.collector]`).
#[derive(Clone, Debug)]
pub struct CollectorOptions {
    /// This collector's address (in its reports to the meta).
    pub me: std::net::SocketAddrV4,
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

/// The detector's metrics.
struct Metrics {
    registry: Registry,
    labels: TableLabels,
    rounds: Family<TableLabels, Counter>,
    detects: Family<TableLabels, Counter>,
    failures: Family<TableLabels, Counter>,
    /// Whether each partition passed its last check.
    available: Family<PartitionLabels, Gauge>,
    ratio: Family<TableLabels, Gauge<f64, AtomicU64>>,
}

impl Metrics {
    fn new(cluster: &str, table: &str) -> Metrics {
        let mut registry = metrics::registry(cluster, "collector");
        let m = Metrics {
            registry: Registry::default(),
            labels: TableLabels::of(table),
            rounds: Family::default(),
            detects: Family::default(),
            failures: Family::default(),
            available: Family::default(),
            ratio: Family::default(),
        };
        registry.register(
            "collector_detect_rounds",
            "Rounds of availability detection",
            m.rounds.clone(),
        );
        registry.register(
            "collector_detect",
            "Partition checks (a write and a read back)",
            m.detects.clone(),
        );
        registry.register(
            "collector_detect_failures",
            "Partition checks that failed or timed out",
            m.failures.clone(),
        );
        registry.register(
            "collector_partition_available",
            "Whether the partition passed its last check (1) or not (0)",
            m.available.clone(),
        );
        registry.register(
            "collector_available_ratio",
            "Share of the table's partitions that passed their last check",
            m.ratio.clone(),
        );
        for family in [&m.rounds, &m.detects, &m.failures] {
            let _ = family.get_or_create(&m.labels);
        }
        Metrics { registry, ..m }
    }
}

/// The collector role.
pub struct Collector {
    options: CollectorOptions,
    metrics: Metrics,
    started: SystemTime,
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
            metrics: Metrics::new(&options.cluster_name, &options.app),
            options,
            started: SystemTime::now(),
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
            let m = &self.metrics;
            m.rounds.get_or_create(&m.labels).inc();
            m.detects
                .get_or_create(&m.labels)
                .inc_by(results.len() as u64);
            m.failures.get_or_create(&m.labels).inc_by(failed);
            if failed > 0 {
                warn!(app = self.options.app, failed, "partitions unavailable");
            }
            for (p, ok) in results.iter().enumerate() {
                let labels = PartitionLabels {
                    table: self.options.app.clone(),
                    partition: p as i32,
                };
                m.available.get_or_create(&labels).set(i64::from(*ok));
            }
            let passed = results.iter().filter(|ok| **ok).count();
            m.ratio
                .get_or_create(&m.labels)
                .set(passed as f64 / results.len().max(1) as f64);
            // The meta leader shows the round on its status page.
            let report = AvailabilityReport {
                app_name: self.options.app.clone(),
                partition_count: results.len() as i32,
                unavailable: (0..results.len() as i32)
                    .filter(|p| !results[*p as usize])
                    .collect(),
                collector: RpcAddress::new(self.options.me),
            };
            if let Err(e) = client
                .admin::<_, AvailabilityReportResponse>(rpc::REPORT_AVAILABILITY, report)
                .await
            {
                warn!("reporting availability to the meta: {e}");
            }
        }
    }

    /// The metrics in Prometheus's text format.
    pub fn metrics_text(&self) -> String {
        metrics::encode(&self.metrics.registry)
    }
}

impl Service for Collector {
    fn handle(self: &Arc<Self>, batch: Vec<(Request, Reply)>) {
        for (_, reply) in batch {
            reply.error(ErrorCode::HandlerNotFound);
        }
    }

    fn http(self: &Arc<Self>, req: HttpRequest) -> impl Future<Output = HttpResponse> + Send {
        let response = match req.path.as_str() {
            "/metrics" => HttpResponse::ok(metrics::CONTENT_TYPE, self.metrics_text()),
            _ => http::builtin(&req, self.started)
                .unwrap_or_else(|| HttpResponse::not_found(&req.path)),
        };
        std::future::ready(response)
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
