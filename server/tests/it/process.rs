//! The real `pegasus_server` binary, as a process.

use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pegasus_client::protocol::types::Gpid;
use pegasus_client::{Client, ClientOptions};
use pegasus_server::replica::ReplicaStub;
use pegasus_server::replica::dirs::DataDirs;
use pegasus_server::replica::partition::PartitionOptions;

use crate::harness::{Routing, serve};

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

fn start(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pegasus_server"))
        .arg(config)
        .args(["-app_list", "replica"])
        .current_dir(config.parent().unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pegasus_server")
}

fn wait_listening(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("pegasus_server exited with {status}: {err}");
        }
        assert!(
            Instant::now() < deadline,
            "pegasus_server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// Regression guard for the write path's durability: every write the server acknowledged is
/// there after `kill -9` in the middle of a write storm and a restart (plog replay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_writes_loses_no_acknowledged_write() {
    let root = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(root.path(), port, "127.0.0.1:34601,127.0.0.2:34601");
    // Create the table's replicas on disk; the server opens what it finds.
    {
        let dirs = DataDirs::new(&[], "replica", &root.path().join("data/replica"), None).unwrap();
        let stub = ReplicaStub::open(dirs, PartitionOptions::default()).unwrap();
        for p in 0..4 {
            stub.open_partition(Gpid::new(1, p)).unwrap();
        }
        stub.close();
    }
    let replica = SocketAddrV4::new([127, 0, 0, 1].into(), port);
    let (meta, _stop) = serve(
        Arc::new(Routing {
            table: "temp".into(),
            app_id: 1,
            partition_count: 4,
            replica,
        }),
        0,
    )
    .await;

    let mut child = start(&config);
    wait_listening(port, &mut child);
    let mut options = ClientOptions::new(vec![SocketAddr::V4(meta)]);
    options.timeout = Duration::from_secs(2);
    let table = Client::new(options.clone())
        .open_table("temp")
        .await
        .unwrap();
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (table, acked, stop) = (table.clone(), Arc::clone(&acked), Arc::clone(&stop));
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let (k, v) = (format!("w{w}-{i}"), format!("value-{w}-{i}"));
                match table.set(k.as_bytes(), b"s", v.as_bytes(), None).await {
                    Ok(()) => acked.lock().unwrap().push((k, v)),
                    Err(_) => break,
                }
                i += 1;
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 3000 {
        assert!(Instant::now() < deadline, "writes too slow");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL, writes in flight
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let mut child = start(&config);
    wait_listening(port, &mut child);
    let table = Client::new(options).open_table("temp").await.unwrap();
    for (k, v) in &acked {
        let got = table.get(k.as_bytes(), b"s").await.unwrap();
        assert_eq!(
            got.as_deref(),
            Some(v.as_bytes()),
            "acknowledged write {k} lost"
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(acked.len() >= 3000);
}
