//! In-process cost of reading and checking the production template, beside rust-ini parsing
//! the same text (a plain ini parser: the floor for any parser of this file).
//!
//! `cargo bench -p configcheck --bench check`

use std::hint::black_box;

use configcheck::{CheckOptions, Config};
use criterion::{Criterion, criterion_group, criterion_main};

fn template() -> String {
    // The run-time folder, not the compiled-in one (stale when two checkouts share a cache).
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    std::fs::read_to_string(root.join("tests/fixtures/good/config.ini")).expect("good/config.ini")
}

fn bench(c: &mut Criterion) {
    let text = template();
    let mut group = c.benchmark_group("production-config");
    group.bench_function("rust-ini parse", |b| {
        b.iter(|| ini::Ini::load_from_str(black_box(&text)).expect("parse"))
    });
    group.bench_function("configcheck parse", |b| {
        b.iter(|| Config::from_text("config.ini", black_box(text.as_str())))
    });
    let options = CheckOptions::default();
    group.bench_function("configcheck parse+check", |b| {
        b.iter(|| {
            let config = Config::from_text("config.ini", black_box(text.as_str()));
            configcheck::check(&config, &options)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
