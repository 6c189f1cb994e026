//! `pegasus_bench`: load a Pegasus table (or, with `--etcd`, an etcd cluster, for comparison)
//! and report ops/s and latency (see [`pegasus_tools::bench`]).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pegasus_client::{Client, ClientOptions};
use pegasus_tools::bench::{self, BenchOptions, Target, Workload};
use pegasus_tools::etcd::Etcd;
use pegasus_tools::scrape::Scraper;

/// Benchmarks a Pegasus table, like `./run.sh bench`.
#[derive(Debug, Parser)]
#[command(name = "pegasus_bench", version)]
struct Args {
    /// Meta servers, comma-separated.
    #[arg(
        long,
        default_value = pegasus_tools::ONEBOX_METAS,
        value_delimiter = ','
    )]
    metas: Vec<SocketAddr>,
    /// The table.
    #[arg(long, default_value = "temp")]
    table: String,
    /// Workloads, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "fillrandom,readrandom,multi-set,multi-get,deleterandom"
    )]
    benchmarks: Vec<Workload>,
    /// Concurrent callers.
    #[arg(long, default_value_t = 16)]
    threads: usize,
    /// Operations per workload.
    #[arg(long, default_value_t = 100_000)]
    num: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Run against this etcd member's client URL (host:port) instead of a Pegasus table:
    /// `fillrandom` and `readrandom` only, the same keys and values.
    #[arg(long)]
    etcd: Option<SocketAddr>,
    /// Run against this Redis primary (host:port) instead: `fillrandom` and `readrandom` only,
    /// the same keys and values, each caller on its own connection, each `SET` followed by
    /// `WAIT <--redis-replicas> 0`.
    #[arg(long)]
    redis_wait: Option<SocketAddr>,
    /// See `--redis-wait`.
    #[arg(long, default_value_t = 2)]
    redis_replicas: i64,
    /// Open loop: start this many operations a second whatever the answers' pace, latency
    /// counted from when each was due (not with `--redis-wait`). 0: `--threads` callers, each
    /// waiting for its answer.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Scrape `/metrics` of these servers (comma-separated) every `--scrape-interval-ms` while
    /// the workloads run, as Prometheus would: what scraping costs.
    #[arg(long, value_delimiter = ',')]
    scrape: Vec<SocketAddr>,
    /// See `--scrape`.
    #[arg(long, default_value_t = 1000)]
    scrape_interval_ms: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async {
        let target = match args.etcd {
            None if args.redis_wait.is_some() => Target::RedisWait {
                addr: args.redis_wait.expect("given"),
                replicas: args.redis_replicas,
            },
            Some(addr) => match Etcd::connect(addr).await {
                Ok(etcd) => Target::Etcd(etcd),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            },
            None => {
                let client = Client::new(ClientOptions::new(args.metas.clone()));
                match client.open_table(&args.table).await {
                    Ok(t) => Target::Table(t),
                    Err(e) => {
                        eprintln!("error: cannot open table `{}`: {e}", args.table);
                        return ExitCode::from(2);
                    }
                }
            }
        };
        if (args.etcd.is_some() || args.redis_wait.is_some())
            && let Some(w) = args
                .benchmarks
                .iter()
                .find(|w| !matches!(w, Workload::Fillrandom | Workload::Readrandom))
        {
            eprintln!(
                "error: --etcd and --redis-wait run fillrandom and readrandom only, not {w:?}"
            );
            return ExitCode::from(2);
        }
        let options = BenchOptions {
            threads: args.threads,
            num: args.num,
            value_size: args.value_size,
            rate: args.rate,
            ..BenchOptions::default()
        };
        let scraper = (!args.scrape.is_empty()).then(|| {
            Scraper::start(
                args.scrape.clone(),
                Duration::from_millis(args.scrape_interval_ms),
            )
        });
        let mut failed = false;
        for workload in &args.benchmarks {
            let report = bench::run_on(&target, *workload, &options).await;
            failed |= report.errors > 0;
            println!("{report}");
        }
        if let Some(s) = scraper {
            let (ok, bad) = s.stop();
            println!("scraped /metrics {ok} times ({bad} failed)");
            failed |= bad > 0;
        }
        if failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        }
    })
}
