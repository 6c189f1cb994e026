//! Inputs kept from the fuzzers (`protocol/fuzz/regressions/<target>/`: crashes they found once,
//! and hand-made hostile inputs), fed to the same functions on every test run.

use std::path::Path;

use pegasus_protocol::fuzzing;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(&manifest_dir())
        .join("fuzz/regressions")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        eprintln!("{}", path.display());
        run(&bytes);
        n += 1;
    }
    n
}

#[test]
fn kept_inputs_of_the_frames_target_decode_cleanly() {
    assert!(replay("frames", fuzzing::frames) > 0, "no inputs kept");
}

#[test]
fn kept_inputs_of_the_thrift_target_decode_cleanly() {
    assert!(
        replay("thrift", |b| {
            fuzzing::framed_body(b);
            fuzzing::thrift(b);
        }) > 0,
        "no inputs kept"
    );
}

/// This crate's folder: cargo's at run time (a test binary built in another clone of the
/// repository, and found fresh from a shared target dir, has that clone's path compiled in).
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    )
}
