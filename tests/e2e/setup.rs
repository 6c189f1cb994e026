//! `run.sh`'s set-up (the one package list, used by every verb and by CI) against a fake package
//! database: it names exactly the missing packages, installs them through apt-get as root, and
//! without root or sudo stops with status 2 and the line to run.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pegasus_tests::bins::workspace_root;

/// A dpkg database in which exactly `installed` are installed.
fn fake_dpkg(dir: &Path, installed: &[&str]) -> PathBuf {
    let admin = dir.join("dpkg");
    std::fs::create_dir_all(&admin).unwrap();
    let status: String = installed
        .iter()
        .map(|p| {
            format!(
                "Package: {p}\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n\
                 Maintainer: test\nDescription: test\n\n"
            )
        })
        .collect();
    std::fs::write(admin.join("status"), status).unwrap();
    admin
}

/// A copy of run.sh that any user can run, in a folder any user can read.
fn world_readable_run_sh(dir: &Path) -> PathBuf {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.join("run.sh");
    std::fs::copy(workspace_root().join("run.sh"), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

fn run(mut command: Command, admin: &Path) -> Output {
    command
        .env("PEGASUS_DPKG_ADMINDIR", admin)
        .env_remove("ZOOKEEPER_HOME")
        .env_remove("PEGASUS_SKIP_SETUP")
        .output()
        .unwrap()
}

/// Whether the test can act as root; CI runs as root, so there a skip would hide a failure.
fn is_root(test: &str) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test} must run as root in CI"
        );
        eprintln!("{test}: skipped, it needs root");
    }
    root
}

/// An apt-get that only records its arguments, one call a line, in the returned log.
fn apt_recorder(dir: &Path) -> (PathBuf, PathBuf) {
    let log = dir.join("apt.log");
    let apt = dir.join("apt-get");
    std::fs::write(
        &apt,
        format!("#!/bin/sh\necho \"$*\" >> '{}'\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&apt, std::fs::Permissions::from_mode(0o755)).unwrap();
    (apt, log)
}

const INSTALLED: &[&str] = &["g++", "ccache", "python3-venv", "zookeeper", "nix-bin"];
const MISSING: &[&str] = &[
    "libclang-dev",
    "default-jre-headless",
    "thrift-compiler",
    "docker.io",
    "docker-compose",
    "debootstrap",
    "systemd-container",
    "openssh-client",
    "prometheus",
    "chromium",
    "iproute2",
    "iptables",
];

#[test]
fn the_check_names_exactly_the_missing_packages() {
    let dir = tempfile::tempdir().unwrap();
    let admin = fake_dpkg(dir.path(), INSTALLED);
    let mut command = Command::new(workspace_root().join("run.sh"));
    command.args(["setup", "--check", "build", "onebox", "test"]);
    let out = run(command, &admin);
    assert_eq!(out.status.code(), Some(1));
    let listed: Vec<_> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(listed, MISSING);

    // With ZooKeeper from $ZOOKEEPER_HOME, the package is not needed.
    let admin = fake_dpkg(dir.path(), &["g++", "ccache"]);
    let mut command = Command::new(workspace_root().join("run.sh"));
    command.args(["setup", "--check", "build", "onebox"]);
    let out = command
        .env("PEGASUS_DPKG_ADMINDIR", &admin)
        .env("ZOOKEEPER_HOME", "/opt/zookeeper")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let listed: Vec<_> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(listed, ["libclang-dev", "default-jre-headless"]);

    let admin = fake_dpkg(dir.path(), &[MISSING, INSTALLED].concat());
    let mut command = Command::new(workspace_root().join("run.sh"));
    command.args(["setup", "--check", "build", "onebox", "test"]);
    let out = run(command, &admin);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());

    // A group that does not exist is an error, not "nothing missing".
    let mut command = Command::new(workspace_root().join("run.sh"));
    command.args(["setup", "--check", "tset"]);
    assert_eq!(run(command, &admin).status.code(), Some(2));
}

#[test]
fn without_root_or_sudo_it_stops_with_status_2_and_the_install_line() {
    if !is_root("the non-root set-up (run through setpriv)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let admin = fake_dpkg(dir.path(), INSTALLED);
    let run_sh = world_readable_run_sh(dir.path());
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&run_sh)
        .args(["setup", "build", "onebox", "test"])
        // Nothing may be compiled or installed: a target dir nobody can write proves it.
        .env("CARGO_TARGET_DIR", dir.path().join("no-target"))
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin");
    let out = run(command, &admin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let line = format!("apt-get update && apt-get install -y {}", MISSING.join(" "));
    assert!(stderr.contains(&line), "{stderr}");
    for p in MISSING {
        assert!(
            stderr.contains(&format!("  {p}: ")),
            "{p} has no reason: {stderr}"
        );
    }
    assert!(!dir.path().join("no-target").exists());
}

#[test]
fn as_root_it_installs_the_missing_packages_with_apt_get_saying_why() {
    if !is_root("the install path") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let admin = fake_dpkg(dir.path(), INSTALLED);
    // apt-get itself is replaced by a recorder: the test must not change this machine.
    let (apt, log) = apt_recorder(dir.path());
    let mut command = Command::new(workspace_root().join("run.sh"));
    command
        .args(["setup", "build", "onebox", "test"])
        .env("PEGASUS_APT_GET", &apt);
    let out = run(command, &admin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls,
        format!("update -q\ninstall -y -q {}\n", MISSING.join(" "))
    );
    let said: Vec<_> = stderr
        .lines()
        .filter(|l| l.starts_with("run.sh: installing "))
        .collect();
    assert_eq!(said.len(), MISSING.len(), "{stderr}");
    assert!(said[0].starts_with("run.sh: installing libclang-dev (bindgen"));
}

#[test]
fn plain_setup_installs_every_group_each_with_its_reason() {
    if !is_root("the install path") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Nothing installed: every package of every group is missing.
    let admin = fake_dpkg(dir.path(), &[]);
    let mut command = Command::new(workspace_root().join("run.sh"));
    command.args(["setup", "--check"]);
    let listed = String::from_utf8(run(command, &admin).stdout).unwrap();
    let listed: Vec<_> = listed.lines().collect();
    assert!(listed.contains(&"etcd-server"), "{listed:?}");

    let (apt, log) = apt_recorder(dir.path());
    let mut command = Command::new(workspace_root().join("run.sh"));
    command.arg("setup").env("PEGASUS_APT_GET", &apt);
    let out = run(command, &admin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for p in &listed {
        let said = format!("run.sh: installing {p} (");
        let line = stderr.lines().find(|l| l.starts_with(&said));
        assert!(
            line.is_some_and(|l| l.len() > said.len() + 1),
            "{p} is installed without a reason: {stderr}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("update -q\ninstall -y -q {}\n", listed.join(" "))
    );
}
