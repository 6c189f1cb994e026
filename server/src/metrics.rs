//! Metrics of every role, served as Prometheus text at `GET /metrics` on the role's port.
//!
//! The registry is `prometheus-client`'s; every metric is named `pegasus_…` and carries the
//! `cluster` and `role` labels. On the hot path a metric is a handle fetched once (per table,
//! per partition) and bumped with atomics: counters are `prometheus-client`'s, latencies are
//! [`Latency`], a histogram of atomic buckets (the crate's own takes a lock per observation).
//! Gauges that describe state (stores, replicas, partitions) are set when scraped.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A new registry for one process: names prefixed `pegasus_`, labels `cluster` and `role`.
pub fn registry(cluster: &str, role: &str) -> Registry {
    Registry::with_prefix_and_labels(
        "pegasus",
        [
            (Cow::Borrowed("cluster"), Cow::Owned(cluster.to_owned())),
            (Cow::Borrowed("role"), Cow::Owned(role.to_owned())),
        ]
        .into_iter(),
    )
}

/// The registry in Prometheus's text format (0.0.4, which `promtool check metrics` reads).
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, registry)
        .expect("writing to a String does not fail");
    out
}

/// Upper bounds (seconds) of latency buckets: 50 µs to 10 s.
const BOUNDS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram (seconds) of atomic buckets: observing is two atomic adds and a search
/// over 17 bounds, with no lock.
#[derive(Clone, Debug, Default)]
pub struct Latency(Arc<LatencyInner>);

#[derive(Debug, Default)]
struct LatencyInner {
    /// One per bound, and one past the last.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Latency {
    /// Counts one observation of `d`.
    pub fn observe(&self, d: Duration) {
        let nanos = d.as_nanos().min(u128::from(u64::MAX)) as u64;
        let secs = d.as_secs_f64();
        let i = BOUNDS.partition_point(|b| *b < secs);
        self.0.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl TypedMetric for Latency {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let counts: Vec<u64> = self
            .0
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let mut buckets: Vec<(f64, u64)> = BOUNDS.iter().copied().zip(counts.clone()).collect();
        buckets.push((f64::INFINITY, counts[BOUNDS.len()]));
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, counts.iter().sum(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// The labels of a table's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    /// The table's name.
    pub table: String,
}

impl TableLabels {
    /// Of table `name`.
    pub fn of(name: &str) -> Self {
        TableLabels {
            table: name.to_owned(),
        }
    }
}

/// The labels of a partition's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// Its table's name.
    pub table: String,
    /// Its index.
    pub partition: i32,
}

/// One kind of request: how many were served, and how long each took.
#[derive(Clone, Debug, Default)]
pub struct OpStats {
    /// Requests.
    pub requests: Counter,
    /// From read to answered.
    pub latency: Latency,
    /// Bytes of the answers, where they count (reads).
    pub answered_bytes: Option<Counter>,
}

impl OpStats {
    /// Counts one request read at `received`, answered now.
    pub fn done(&self, received: Instant) {
        self.requests.inc();
        self.latency.observe(received.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::registry::Unit;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Labels {
        table: String,
    }

    #[test]
    fn latencies_land_in_their_buckets_and_sum_up() {
        let l = Latency::default();
        l.observe(Duration::from_micros(30));
        l.observe(Duration::from_millis(3));
        l.observe(Duration::from_secs(60));
        let mut r = registry("c1", "replica");
        r.register_with_unit("op_latency", "Latency", Unit::Seconds, l.clone());
        let text = encode(&r);
        let line = |le: &str| {
            text.lines()
                .find(|x| x.contains(&format!("le=\"{le}\"")))
                .unwrap_or_else(|| panic!("no bucket {le} in\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_owned()
        };
        assert_eq!(line("5e-05"), "1", "{text}");
        assert_eq!(line("0.0025"), "1");
        assert_eq!(line("0.005"), "2");
        assert_eq!(line("10"), "2");
        assert_eq!(line("+Inf"), "3");
        assert!(
            text.contains("pegasus_op_latency_seconds_count{cluster=\"c1\",role=\"replica\"} 3")
        );
        assert!(
            text.contains(
                "pegasus_op_latency_seconds_sum{cluster=\"c1\",role=\"replica\"} 60.00303"
            )
        );
    }

    #[test]
    fn label_values_are_escaped() {
        // A table name is user input.
        let f = Family::<Labels, Counter>::default();
        f.get_or_create(&Labels {
            table: "we\"ird\\name\n".into(),
        })
        .inc();
        let mut r = registry("c\"1", "meta");
        r.register("requests", "Requests", f);
        let text = encode(&r);
        assert!(
            text.contains(
                "pegasus_requests_total{cluster=\"c\\\"1\",role=\"meta\",table=\"we\\\"ird\\\\name\\n\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("# HELP pegasus_requests_total Requests."));
        assert!(text.contains("# TYPE pegasus_requests_total counter"));
    }
}
