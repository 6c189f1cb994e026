//! `pegasus_bench`: load a Pegasus table and report ops/s and latency (see
//! [`pegasus_tools::bench`]).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use pegasus_client::{Client, ClientOptions};
use pegasus_tools::bench::{self, BenchOptions, Workload};

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
        let client = Client::new(ClientOptions::new(args.metas.clone()));
        let table = match client.open_table(&args.table).await {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot open table `{}`: {e}", args.table);
                return ExitCode::from(2);
            }
        };
        let options = BenchOptions {
            threads: args.threads,
            num: args.num,
            value_size: args.value_size,
            ..BenchOptions::default()
        };
        let mut failed = false;
        for workload in &args.benchmarks {
            let report = bench::run(&table, *workload, &options).await;
            failed |= report.errors > 0;
            println!("{report}");
        }
        if failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        }
    })
}
