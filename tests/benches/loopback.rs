//! The replica over loopback against the same work on RocksDB in process (the limit), in one run:
//! `./run.sh bench_replica` or `cargo bench -p pegasus-tests --bench loopback [-- --threads 16
//! --num 200000]`.
//!
//! The network side is `pegasus_bench`'s workloads (the Rust client) against one replica
//! (8 partitions) on 127.0.0.1, server and client on runtimes of their own as if in two
//! processes (`--server-threads`, `--client-threads`). The in-process side does the same puts
//! and gets straight on a RocksDB, from the same number of threads (writes with RocksDB's
//! default WAL, unsynced; the replica fsyncs its private log once per batch, or only writes it
//! with `plog_force_flush = false`, which is measured too).
//!
//! Two floors show what the machine allows: the same client and listener with a service that
//! answers every `get` from a constant (no storage), and plain blocking sockets echoing
//! `--threads` requests per write (no protocol, no runtime). Every row gives the CPU time the
//! whole process spent per operation.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pegasus_client::{Client, ClientOptions};
use pegasus_protocol::codes::ErrorCode;
use pegasus_protocol::frame::Request;
use pegasus_protocol::key;
use pegasus_protocol::types::{Blob, ReadResponse};
use pegasus_server::net::{Reply, Service};
use pegasus_server::replica::partition::PartitionOptions;
use pegasus_tests::harness;
use pegasus_tools::bench::{self, BenchOptions, Report, Workload};

/// The network floor: answers every `get` with the same value, touching no storage, through the
/// same listener, frames and client as the replica.
struct Constant {
    value: Blob,
}

impl Service for Constant {
    fn handle(self: &Arc<Self>, batch: Vec<(Request, Reply)>) {
        for (_, reply) in batch {
            reply.send(
                ErrorCode::Ok,
                Some(&ReadResponse {
                    error: 0,
                    value: self.value.clone(),
                    ..Default::default()
                }),
            );
        }
    }
}

/// Bytes of one `get` request and of its answer on the wire (16 B keys, 100 B values), about.
const REQUEST_BYTES: usize = 128;
const ANSWER_BYTES: usize = 160;

/// The kernel's floor: one connection carrying `threads` requests per write, each answered by a
/// plain echo thread with blocking sockets: no protocol, no runtime, no storage. This is the
/// best batching the client can reach with `threads` callers; what it costs is the loopback.
fn kernel_floor(o: &BenchOptions) -> Report {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let echo = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let (mut buf, mut pending) = (vec![0u8; 1 << 16], 0);
        let answers = vec![1u8; ANSWER_BYTES * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => pending += n,
            }
            let whole = (pending / REQUEST_BYTES).min(1024);
            pending -= whole * REQUEST_BYTES;
            if s.write_all(&answers[..whole * ANSWER_BYTES]).is_err() {
                return;
            }
        }
    });
    let mut c = TcpStream::connect(addr).expect("connect");
    c.set_nodelay(true).expect("nodelay");
    let batch = o.threads.clamp(1, 1024);
    let (requests, mut buf) = (vec![0u8; REQUEST_BYTES * batch], vec![0u8; 1 << 16]);
    let mut h = bench::new_histogram();
    let start = Instant::now();
    for _ in 0..o.num / batch {
        let began = Instant::now();
        c.write_all(&requests).expect("write");
        let mut got = 0;
        while got < ANSWER_BYTES * batch {
            got += c.read(&mut buf).expect("read");
        }
        // Every request of the round waited the whole round.
        let _ = h.record_n(began.elapsed().as_micros().max(1) as u64, batch as u64);
    }
    let elapsed = start.elapsed();
    drop(c);
    let _ = echo.join();
    Report::from_samples(&format!("loopback, {batch} per write"), elapsed, [h], 0)
}

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
    let value = key::value::encode(0, 0, &bench::value(o.value_size));
    let run = |write: bool| {
        let workload = if write {
            Workload::Fillrandom
        } else {
            Workload::Readrandom
        };
        let order = Arc::new(bench::order(workload, o.num));
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
    let cpu = cpu_time();
    let (elapsed, samples) = run(write);
    let cpu = cpu_time() - cpu;
    let report = Report::from_samples(
        if write {
            "rocksdb in-process put"
        } else {
            "rocksdb in-process get"
        },
        elapsed,
        samples,
        0,
    );
    print(&report, cpu);
    report
}

/// CPU time (user + system) of this whole process so far: client, server and RocksDB threads.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|t| t.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    // Linux reports them in USER_HZ, which is 100 on every supported architecture.
    Duration::from_millis(ticks * 10)
}

/// Prints a report with the CPU it cost per operation.
fn print(r: &Report, cpu: Duration) {
    println!(
        "{r}  cpu {:.1} us/op",
        cpu.as_secs_f64() * 1e6 / r.ops.max(1) as f64
    );
}

/// A workload's report under another name.
async fn named(name: &str, work: impl std::future::Future<Output = Report>) -> Report {
    let mut report = work.await;
    report.name = name.to_owned();
    report
}

/// Runs one network workload, printing its report and CPU per operation.
async fn measured(work: impl std::future::Future<Output = Report>) -> Report {
    let cpu = cpu_time();
    let report = work.await;
    print(&report, cpu_time() - cpu);
    report
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
    // Server and client each get their own runtime, as in two processes.
    let runtime = |name: &str, flag: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(arg(flag, 2))
            .thread_name(name)
            .enable_all()
            .build()
            .expect("runtime")
    };
    let (server, client) = (
        runtime("server", "--server-threads"),
        runtime("client", "--client-threads"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let h = server.block_on(harness::Harness::start(dir.path(), 8));
    let (net_write, net_read) = client.block_on(async {
        let table = h.client().open_table("temp").await.expect("table");
        let w = measured(bench::run(&table, Workload::Fillrandom, &o)).await;
        let r = measured(bench::run(&table, Workload::Readrandom, &o)).await;
        (w, r)
    });
    server.block_on(h.stop());
    let unsynced = tempfile::tempdir().expect("tempdir");
    let h = server.block_on(harness::Harness::start_with(
        unsynced.path(),
        8,
        (0, 0),
        PartitionOptions {
            plog_force_flush: false,
            ..PartitionOptions::default()
        },
    ));
    let net_write_unsynced = client.block_on(async {
        let table = h.client().open_table("temp").await.expect("table");
        measured(named(
            "fillrandom, plog not fsynced",
            bench::run(&table, Workload::Fillrandom, &o),
        ))
        .await
    });
    server.block_on(h.stop());
    let floor = server.block_on(async {
        let (replica, stop_replica) = harness::serve(
            Arc::new(Constant {
                value: Blob(bench::value(o.value_size)),
            }),
            0,
        )
        .await;
        let routing = harness::Routing {
            table: "temp".into(),
            app_id: 1,
            partition_count: 8,
            replica,
        };
        let (meta, stop_meta) = harness::serve(Arc::new(routing), 0).await;
        (meta, [stop_replica, stop_meta])
    });
    let net_floor = client.block_on(async {
        let client = Client::new(ClientOptions::new(vec![SocketAddr::V4(floor.0)]));
        let table = client.open_table("temp").await.expect("table");
        measured(named(
            "readrandom, no storage",
            bench::run(&table, Workload::Readrandom, &o),
        ))
        .await
    });
    for stop in floor.1 {
        let _ = stop.send(());
    }
    let cpu = cpu_time();
    let kernel = kernel_floor(&o);
    print(&kernel, cpu_time() - cpu);
    let dir = tempfile::tempdir().expect("tempdir");
    let local_write = in_process(&dir.path().join("w"), &o, true);
    let local_read = in_process(&dir.path().join("r"), &o, false);
    println!(
        "replica/in-process: writes {:.0}% of ops/s ({:.0}% with plog_force_flush = false), reads {:.0}% of ops/s",
        100.0 * net_write.ops_per_sec() / local_write.ops_per_sec(),
        100.0 * net_write_unsynced.ops_per_sec() / local_write.ops_per_sec(),
        100.0 * net_read.ops_per_sec() / local_read.ops_per_sec()
    );
    println!(
        "floors/in-process reads: no storage {:.0}%, loopback alone {:.0}% of ops/s",
        100.0 * net_floor.ops_per_sec() / local_read.ops_per_sec(),
        100.0 * kernel.ops_per_sec() / local_read.ops_per_sec()
    );
}
