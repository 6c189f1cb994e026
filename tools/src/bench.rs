//! `pegasus_bench`, like Pegasus's `./run.sh bench`: fillrandom, readrandom, deleterandom,
//! multi_set and multi_get against a table, with `threads` concurrent callers, reporting ops/s
//! and latency percentiles. The same fill and read workloads also run against etcd, for a
//! comparison in one run.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;

use pegasus_client::{MultiGetOptions, Table};

use crate::etcd::Etcd;
use crate::redis::Redis;

/// One benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// `set` of random keys.
    Fillrandom,
    /// `get` of the keys `fillrandom` wrote.
    Readrandom,
    /// `del` of those keys.
    Deleterandom,
    /// `multi_set` of 10 sort keys per hash key.
    MultiSet,
    /// `multi_get` of those.
    MultiGet,
}

/// Parameters of a run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Concurrent callers.
    pub threads: usize,
    /// Operations in all.
    pub num: usize,
    /// Value size in bytes.
    pub value_size: usize,
    /// Hash key size in bytes.
    pub hashkey_size: usize,
    /// Sort key size in bytes.
    pub sortkey_size: usize,
    /// Open loop: operations started at this many a second, whatever the answers' pace (0:
    /// closed loop, `threads` callers each waiting for its answer). Latency is then counted
    /// from when each operation was due, so a stall shows in every operation it delays.
    pub rate: u64,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            threads: 16,
            num: 100_000,
            value_size: 100,
            hashkey_size: 16,
            sortkey_size: 16,
            rate: 0,
        }
    }
}

/// The outcome of one workload.
#[derive(Clone, Debug)]
pub struct Report {
    /// What ran.
    pub name: String,
    /// Operations completed.
    pub ops: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Latencies in microseconds.
    pub latency: Histogram<u64>,
    /// Operations that failed.
    pub errors: u64,
}

impl Report {
    /// Operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A latency percentile in microseconds.
    pub fn percentile(&self, p: f64) -> u64 {
        self.latency.value_at_quantile(p / 100.0)
    }

    /// Summarizes samples taken by several callers.
    pub fn from_samples(
        name: &str,
        elapsed: Duration,
        samples: impl IntoIterator<Item = Histogram<u64>>,
        errors: u64,
    ) -> Report {
        let mut latency = new_histogram();
        for s in samples {
            let _ = latency.add(&s);
        }
        Report {
            name: name.to_owned(),
            ops: latency.len(),
            elapsed,
            latency,
            errors,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<28} {:>10.0} ops/s  avg {:>7.1} us  p50 {:>6} us  p99 {:>6} us  p999 {:>6} us  errors {}",
            self.name,
            self.ops_per_sec(),
            self.latency.mean(),
            self.percentile(50.0),
            self.percentile(99.0),
            self.percentile(99.9),
            self.errors
        )
    }
}

/// An empty latency histogram (1 µs to 60 s, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// The `i`-th key of a run, padded to its size: deterministic so reads find what fills wrote.
pub fn key(prefix: &str, i: usize, size: usize) -> Bytes {
    let mut k = format!(
        "{prefix}{i:0>width$}",
        width = size.saturating_sub(prefix.len())
    );
    k.truncate(size.max(prefix.len() + 1));
    Bytes::from(k)
}

/// A value of `size` bytes.
pub fn value(size: usize) -> Bytes {
    Bytes::from(vec![b'v'; size])
}

/// A scrambled order of `0..n`, so "random" workloads do not walk keys in order.
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut state = seed | 1;
    for i in (1..n).rev() {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        v.swap(i, (r % (i as u64 + 1)) as usize);
    }
    v
}

/// The order in which `workload` visits keys `0..n`: a permutation of its own, so a read
/// workload does not walk the keys in the order the fill wrote them.
pub fn order(workload: Workload, n: usize) -> Vec<usize> {
    permutation(n, 0x9E37_79B9_7F4A_7C15 ^ workload as u64)
}

/// What the workloads run against.
#[derive(Clone)]
pub enum Target {
    /// A Pegasus table.
    Table(Table),
    /// An etcd cluster (fillrandom and readrandom only; the key is the hash key followed by the
    /// sort key).
    Etcd(Etcd),
    /// A Redis primary (fillrandom and readrandom only, keys as etcd's), each caller on a
    /// connection of its own, each write followed by `WAIT replicas 0`.
    RedisWait {
        /// The primary.
        addr: std::net::SocketAddr,
        /// Replicas each write waits for.
        replicas: i64,
    },
}

/// Runs one workload against `table`.
pub async fn run(table: &Table, workload: Workload, o: &BenchOptions) -> Report {
    run_on(&Target::Table(table.clone()), workload, o).await
}

/// Operations in flight at most in an open loop: past it, an operation due is counted as an
/// error (the server fell that far behind).
const OPEN_LOOP_IN_FLIGHT: usize = 4096;

/// Runs one workload against `target` in an open loop (`o.rate` operations a second).
async fn run_open(target: &Target, workload: Workload, o: &BenchOptions) -> Report {
    let order = order(workload, o.num);
    let histogram = Arc::new(std::sync::Mutex::new(new_histogram()));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let slots = Arc::new(tokio::sync::Semaphore::new(OPEN_LOOP_IN_FLIGHT));
    let v = value(o.value_size);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (n, &i) in order.iter().enumerate() {
        let due = start + Duration::from_secs_f64(n as f64 / o.rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            continue;
        };
        let (target, v, o) = (target.clone(), v.clone(), o.clone());
        let (histogram, errors) = (Arc::clone(&histogram), Arc::clone(&errors));
        tasks.spawn(async move {
            if one(&target, workload, i, &v, &o).await {
                let us = due.elapsed().as_micros().max(1) as u64;
                let _ = histogram.lock().expect("histogram").record(us);
            } else {
                errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            drop(slot);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let h = histogram.lock().expect("histogram").clone();
    Report::from_samples(
        &format!("{workload:?}@{}/s", o.rate).to_lowercase(),
        start.elapsed(),
        vec![h],
        errors.load(std::sync::atomic::Ordering::Relaxed),
    )
}

/// Runs one workload against `target`.
pub async fn run_on(target: &Target, workload: Workload, o: &BenchOptions) -> Report {
    if o.rate > 0 && !matches!(target, Target::RedisWait { .. }) {
        return run_open(target, workload, o).await;
    }
    let order = Arc::new(order(workload, o.num));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..o.threads.max(1) {
        let (target, order, o) = (target.clone(), Arc::clone(&order), o.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = new_histogram();
            let mut errors = 0u64;
            let v = value(o.value_size);
            let mut redis = match &target {
                Target::RedisWait { addr, .. } => match Redis::connect(*addr).await {
                    Ok(r) => Some(r),
                    Err(_) => return (h, order.len().div_ceil(o.threads.max(1)) as u64),
                },
                _ => None,
            };
            for &i in order.iter().skip(t).step_by(o.threads.max(1)) {
                let began = Instant::now();
                let ok = match (&target, redis.as_mut()) {
                    (Target::RedisWait { replicas, .. }, Some(redis)) => {
                        let k = [
                            &key("h", i, o.hashkey_size)[..],
                            &key("s", i, o.sortkey_size)[..],
                        ]
                        .concat();
                        match workload {
                            Workload::Fillrandom => redis.set_wait(&k, &v, *replicas).await.is_ok(),
                            Workload::Readrandom => redis.get(&k).await.is_ok(),
                            _ => false,
                        }
                    }
                    _ => one(&target, workload, i, &v, &o).await,
                };
                if ok {
                    let _ = h.record(began.elapsed().as_micros().max(1) as u64);
                } else {
                    errors += 1;
                }
            }
            (h, errors)
        }));
    }
    let mut samples = Vec::new();
    let mut errors = 0;
    for task in tasks {
        if let Ok((h, e)) = task.await {
            samples.push(h);
            errors += e;
        }
    }
    Report::from_samples(
        &format!("{workload:?}").to_lowercase(),
        start.elapsed(),
        samples,
        errors,
    )
}

/// One operation; whether it succeeded.
async fn one(target: &Target, workload: Workload, i: usize, v: &Bytes, o: &BenchOptions) -> bool {
    let hk = key("h", i, o.hashkey_size);
    let sk = key("s", i, o.sortkey_size);
    let table = match target {
        Target::Table(table) => table,
        Target::Etcd(etcd) => {
            let k = [&hk[..], &sk[..]].concat();
            return match workload {
                Workload::Fillrandom => etcd.put(&k, v).await.is_ok(),
                Workload::Readrandom => etcd.get(&k).await.is_ok(),
                _ => false,
            };
        }
        // Each caller's own connection: see `run_on`.
        Target::RedisWait { .. } => return false,
    };
    match workload {
        Workload::Fillrandom => table.set(&hk, &sk, v, None).await.is_ok(),
        Workload::Readrandom => table.get(&hk, &sk).await.is_ok(),
        Workload::Deleterandom => table.del(&hk, &sk).await.is_ok(),
        Workload::MultiSet => {
            let kvs: Vec<(Bytes, Bytes)> = (0..10)
                .map(|j| (key("s", j, o.sortkey_size), v.clone()))
                .collect();
            table.multi_set(&hk, &kvs, None).await.is_ok()
        }
        Workload::MultiGet => table
            .multi_get(&hk, &[], &MultiGetOptions::default())
            .await
            .is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_their_size_and_orders_are_permutations() {
        assert_eq!(key("h", 42, 16).len(), 16);
        assert_eq!(&key("h", 42, 16)[..], b"h000000000000042");
        let mut p = permutation(1000, 7);
        assert_ne!(p[..10], (0..10).collect::<Vec<_>>()[..]);
        p.sort_unstable();
        assert_eq!(p, (0..1000).collect::<Vec<_>>());
    }
}
