//! The workspace's binaries for tests in another package: cargo's `CARGO_BIN_EXE_*` names only a
//! package's own binaries, so each one is built here, once per test process, with the profile and
//! target dir of the running test (a no-op when it is fresh: cargo decides, so a binary is never
//! stale).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// `pegasus_server`.
pub fn pegasus_server() -> PathBuf {
    built("pegasus-server", "pegasus_server")
}

/// The workspace's root folder (at run time: a build cache shared by two checkouts must not
/// send a test to the other one's files).
pub fn workspace_root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The target dir of the running test (`<target>/<profile>/deps/<test>-<hash>`): where logs
/// and screenshots of a run are kept.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .nth(3)
        .expect("a test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// Builds `bin` of `package` (once per process) and returns its path.
pub fn built(package: &str, bin: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(path) = built.get(bin) {
        return path.clone();
    }
    // The test runs as <target>/<profile dir>/deps/<test>-<hash>.
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary lives in <target>/<profile>/deps");
    let target = profile_dir.parent().expect("target dir");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(name) => name,
        None => "release",
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "-q",
            "--profile",
            profile,
            "-p",
            package,
            "--bin",
            bin,
        ])
        .arg("--manifest-path")
        .arg(workspace_root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target)
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo build -p {package} --bin {bin} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = profile_dir.join(bin);
    built.insert(bin.to_owned(), path.clone());
    path
}

/// The release tarball (`server/pack_server.sh`), packed under `dir` from the built binaries:
/// its path (`dir/PACKAGE` holds its name).
pub fn release_tarball(dir: &Path) -> PathBuf {
    release_tarball_as(dir, None)
}

/// As [`release_tarball`], named with `version` instead of the workspace's (a second package of
/// the same binaries, for an upgrade).
pub fn release_tarball_as(dir: &Path, version: Option<&str>) -> PathBuf {
    for (package, bin) in [
        ("pegasus-server", "pegasus_server"),
        ("pegasus-tools", "pegasus_shell"),
        ("pegasus-tools", "pegasus_bench"),
        ("pegasus-tools", "pegasus_onebox"),
        ("pegasus-tools", "pegasus_cluster"),
        ("configcheck", "configcheck"),
    ] {
        built(package, bin);
    }
    std::fs::create_dir_all(dir).expect("package dir");
    let mut pack = Command::new(workspace_root().join("server/pack_server.sh"));
    pack.arg(dir).env("CARGO_TARGET_DIR", target_dir());
    if let Some(v) = version {
        pack.env("PEGASUS_PACKAGE_VERSION", v);
    }
    let out = pack.output().expect("pack_server.sh");
    assert!(
        out.status.success(),
        "pack: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).expect("a path").trim())
}
