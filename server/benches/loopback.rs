//! The replica over loopback against the same work on RocksDB in process (the limit), in one run:
//! `cargo bench -p pegasus-server --bench loopback [-- --threads 16 --num 200000]`.
//!
//! The network side is `pegasus_bench`'s workloads (the Rust client) against one in-process
//! replica (8 partitions) on 127.0.0.1. The in-process side does the same puts and gets straight
//! on a RocksDB with the same options, from the same number of threads (writes with RocksDB's
//! default WAL, unsynced; the replica syncs its private log once per batch).

#[path = "../tests/it/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::sync::Arc;
use std::time::Instant;

use pegasus_client::bench::{self, BenchOptions, Report, Workload};
use pegasus_client::protocol::key;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The same puts (then gets) on an embedded RocksDB, `threads` OS threads.
fn in_process(dir: &std::path::Path, o: &BenchOptions, write: bool) -> Report {
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    let db = Arc::new(rocksdb::DB::open(&opts, dir).expect("open"));
    let order = Arc::new(bench::permutation(o.num, 1));
    let value = key::value::encode(0, 0, &bench::value(o.value_size));
    let run = |write: bool| {
        let start = Instant::now();
        let handles: Vec<_> = (0..o.threads)
            .map(|t| {
                let (db, order, o, value) = (
                    Arc::clone(&db),
                    Arc::clone(&order),
                    o.clone(),
                    value.clone(),
                );
                std::thread::spawn(move || {
                    let mut h = bench::new_histogram();
                    for &i in order.iter().skip(t).step_by(o.threads) {
                        let k = key::encode_key(
                            &bench::key("h", i, o.hashkey_size),
                            &bench::key("s", i, o.sortkey_size),
                        )
                        .expect("key");
                        let began = Instant::now();
                        if write {
                            db.put(&k, &value).expect("put");
                        } else {
                            assert!(db.get_pinned(&k).expect("get").is_some());
                        }
                        let _ = h.record(began.elapsed().as_micros().max(1) as u64);
                    }
                    h
                })
            })
            .collect();
        let samples: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        (start.elapsed(), samples)
    };
    if !write {
        run(true);
    }
    let (elapsed, samples) = run(write);
    Report::from_samples(
        if write {
            "rocksdb in-process put"
        } else {
            "rocksdb in-process get"
        },
        elapsed,
        samples,
        0,
    )
}

fn main() {
    let o = BenchOptions {
        threads: arg("--threads", 16),
        num: arg("--num", 200_000),
        ..BenchOptions::default()
    };
    println!(
        "threads {}, {} ops per workload, {} B values, 16 B hash and sort keys",
        o.threads, o.num, o.value_size
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (net_write, net_read) = runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = harness::Harness::start(dir.path(), 8).await;
        let table = h.client().open_table("temp").await.expect("table");
        let w = bench::run(&table, Workload::Fillrandom, &o).await;
        let r = bench::run(&table, Workload::Readrandom, &o).await;
        h.stop().await;
        (w, r)
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let local_write = in_process(&dir.path().join("w"), &o, true);
    let local_read = in_process(&dir.path().join("r"), &o, false);
    for r in [&net_write, &local_write, &net_read, &local_read] {
        println!("{r}");
    }
    println!(
        "replica/in-process: writes {:.0}% of ops/s, reads {:.0}% of ops/s",
        100.0 * net_write.ops_per_sec() / local_write.ops_per_sec(),
        100.0 * net_read.ops_per_sec() / local_read.ops_per_sec()
    );
}
