//! The real `pegasus_server` binary, as a process: start-up refusals that write nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(root: &Path, replica_port: u16, server_list: &str) -> PathBuf {
    let text = format!(
        "[apps..default]\n  run = true\n  count = 1\n[apps.replica]\n  type = replica\n  ports = {replica_port}\n\
         [core]\n  data_dir = {data}\n[network]\n  primary_interface = lo\n\
         [meta_server]\n  server_list = {server_list}\n  cluster_root = /pegasus/test\n  distributed_lock_service_parameters = /pegasus/test/lock\n\
         [replication]\n  cluster_name = test\n[pegasus.clusters]\n  test = {server_list}\n[zookeeper]\n  hosts_list = 127.0.0.1:2181\n\
         [pegasus.server]\n  rocksdb_block_cache_capacity = 67108864\n",
        data = root.join("data").display()
    );
    let path = root.join("config.ini");
    std::fs::write(&path, text).unwrap();
    path
}

fn run_to_exit(config: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pegasus_server"))
        .arg(config)
        .args(["-app_list", "replica"])
        .current_dir(config.parent().unwrap())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_config_with_an_error_finding_stops_start_up_before_anything_is_written() {
    let root = tempfile::tempdir().unwrap();
    let config = write_config(
        root.path(),
        free_port(),
        "meta1.example.com:34601,10.0.0.2:34601",
    );
    let (code, stderr) = run_to_exit(&config);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("PC020") && stderr.contains("meta1.example.com"),
        "{stderr}"
    );
    assert!(!root.path().join("data").exists(), "nothing may be written");
}

#[test]
fn a_port_in_use_stops_start_up_before_anything_is_written() {
    let root = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let config = write_config(
        root.path(),
        busy.local_addr().unwrap().port(),
        "127.0.0.1:34601,127.0.0.2:34601",
    );
    let (code, stderr) = run_to_exit(&config);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    assert!(!root.path().join("data").exists(), "nothing may be written");
}

#[test]
fn unknown_arguments_are_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_pegasus_server"))
        .args(["config.ini", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument `--bogus`"));
}

#[test]
fn an_unreachable_zookeeper_stops_a_meta_before_anything_is_written() {
    let root = tempfile::tempdir().unwrap();
    let meta_port = free_port();
    let zk_port = free_port(); // nothing listens there
    let text = format!(
        "[apps.meta]\n  ports = {meta_port}\n[core]\n  data_dir = {data}\n[network]\n  primary_interface = lo\n\
         [meta_server]\n  server_list = 127.0.0.1:{meta_port},127.0.0.2:{meta_port}\n  cluster_root = /pegasus/t\n  distributed_lock_service_parameters = /pegasus/t/lock\n\
         [replication]\n  cluster_name = t\n[pegasus.clusters]\n  t = 127.0.0.1:{meta_port},127.0.0.2:{meta_port}\n[zookeeper]\n  hosts_list = 127.0.0.1:{zk_port}\n  timeout_ms = 3000\n",
        data = root.path().join("data").display()
    );
    let config = root.path().join("config.ini");
    std::fs::write(&config, text).unwrap();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_pegasus_server"))
        .arg(&config)
        .args(["-app_list", "meta"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect to ZooKeeper"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(!root.path().join("data").exists(), "nothing may be written");
}

#[test]
fn a_data_dir_of_a_newer_format_stops_a_replica_server_with_its_reason() {
    let root = tempfile::tempdir().unwrap();
    let config = write_config(root.path(), free_port(), "127.0.0.1:34601");
    // What a newer release left behind, then a rollback to this one.
    let replica = root.path().join("data/replica");
    std::fs::create_dir_all(replica.join("reps")).unwrap();
    std::fs::write(replica.join("format"), "99\n").unwrap();
    let (code, stderr) = run_to_exit(&config);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("holds data of format 99")
            && stderr.contains(&format!(
                "knows formats up to {}",
                pegasus_server::format::FORMAT
            )),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(replica.join("format")).unwrap(),
        "99\n",
        "the mark is left as it was"
    );
}
