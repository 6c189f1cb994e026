//! Durability of acknowledged writes across `kill -9` of a replica process, and damage to its
//! private log found at restart.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pegasus_client::{Client, ClientOptions};
use pegasus_tests::cluster::{TestCluster, eventually, write_all};
use pegasus_tools::onebox::Node;

/// Regression guard for the write path's durability: every write the server acknowledged is
/// there after `kill -9` in the middle of a write storm and a restart (plog replay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_writes_loses_no_acknowledged_write() {
    kill_9_during_writes(TestCluster::start(1, 1, 4)).await;
}

/// The same with `plog_force_flush = false`: a crash of the process (not of the machine) loses
/// nothing either, since the plog had every acknowledged write in the operating system.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_unsynced_writes_loses_no_acknowledged_write() {
    kill_9_during_writes(TestCluster::start_unsynced(4)).await;
}

async fn kill_9_during_writes(cluster: TestCluster) {
    cluster.healthy().await;
    let table = cluster.client().open_table("temp").await.unwrap();
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (table, acked, stop) = (table.clone(), Arc::clone(&acked), Arc::clone(&stop));
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let (k, v) = (format!("w{w}-{i}"), format!("value-{w}-{i}"));
                if table
                    .set(k.as_bytes(), b"s", v.as_bytes(), None)
                    .await
                    .is_ok()
                {
                    acked.lock().unwrap().push((k, v));
                }
                i += 1;
            }
        }));
    }
    eventually(
        Duration::from_secs(60),
        "3,000 writes acknowledged",
        || async { acked.lock().unwrap().len() >= 3000 },
    )
    .await;
    cluster.onebox.kill_node(Node::Replica(1)).unwrap(); // SIGKILL, writes in flight
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let restarted = Instant::now();
    cluster.onebox.start_node(Node::Replica(1)).unwrap();
    cluster.healthy().await;
    eprintln!(
        "kill -9: {} acknowledged writes, healthy {:?} after the restart",
        acked.len(),
        restarted.elapsed()
    );
    for (k, v) in &acked {
        let got = table.get(k.as_bytes(), b"s").await.unwrap();
        assert_eq!(
            got.as_deref(),
            Some(v.as_bytes()),
            "acknowledged write {k} lost"
        );
    }
    assert!(acked.len() >= 3000);
}

/// The written part of a file sized up front: up to its last non-zero byte.
fn written_len(path: &Path) -> usize {
    let data = std::fs::read(path).unwrap();
    data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

fn plog_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            plog_files(&path, out);
        } else if path.parent().is_some_and(|p| p.ends_with("plog")) {
            out.push(path);
        }
    }
}

/// 8 bytes overwritten in the middle of the written part of replica server 1's largest plog
/// file (after `kill -9`): the replica's folder, its name and its partition index.
fn damage_largest_plog(cluster: &TestCluster) -> (PathBuf, String, i32) {
    cluster.onebox.kill_node(Node::Replica(1)).unwrap();
    let node_dir = cluster.onebox.options.root.join("replica1");
    let mut files = Vec::new();
    plog_files(&node_dir, &mut files);
    let largest = files
        .iter()
        .max_by_key(|f| written_len(f))
        .expect("plog files")
        .clone();
    let written = written_len(&largest);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&largest)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[0xAB; 8], (written / 2) as u64).unwrap();
    drop(file);
    // .../reps/<app>.<pidx>.pegasus/plog/log.N.M
    let replica_dir = largest.parent().unwrap().parent().unwrap().to_path_buf();
    let name = replica_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let pidx: i32 = name.split('.').nth(1).unwrap().parse().unwrap();
    (replica_dir, name, pidx)
}

/// A damaged plog record the shared log still holds (it keeps every batch until the private
/// logs are synced): the private log is cut there and rebuilt from the shared log, and every
/// acknowledged key is served, by the same copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_plog_record_the_shared_log_holds_is_rebuilt_from_it() {
    let cluster = TestCluster::start(1, 1, 4);
    cluster.healthy().await;
    let table = cluster.client().open_table("temp").await.unwrap();
    let n = 2000;
    write_all(&table, "k", n).await;
    let (replica_dir, ..) = damage_largest_plog(&cluster);
    cluster.onebox.start_node(Node::Replica(1)).unwrap();
    cluster.healthy().await;
    for i in 0..n {
        let got = table.get(format!("k{i}").as_bytes(), b"s").await.unwrap();
        assert_eq!(got.as_deref(), Some(format!("v{i}").as_bytes()), "k{i}");
    }
    assert!(replica_dir.exists(), "the copy stayed in place");
    let log = cluster.node_log(Node::Replica(1));
    assert!(
        log.contains("rebuilt from there from the shared log"),
        "{log}"
    );
}

/// Regression guard: after `kill -9`, 8 bytes overwritten in the middle of the written part of
/// a replica's largest plog file were taken for a torn tail: 418 of 5,000 acknowledged keys were
/// cut and the partition served what was left. Now, with nothing to rebuild it from (the shared
/// log's disk replaced too), that replica is moved aside with a reason, reported to the meta,
/// which stops routing to it, and no read answers a stale "not found"; the node and its other
/// replicas serve everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_plog_record_is_corruption_not_a_torn_tail() {
    let cluster = TestCluster::start(1, 1, 4);
    cluster.healthy().await;
    let client = cluster.client();
    let table = client.open_table("temp").await.unwrap();
    let n = 2000;
    write_all(&table, "k", n).await;
    let (replica_dir, name, pidx) = damage_largest_plog(&cluster);
    let slog = cluster
        .onebox
        .options
        .root
        .join("replica1/data/replica/slog");
    std::fs::remove_dir_all(&slog).expect("the shared log's folder");

    let restarted = Instant::now();
    cluster.onebox.start_node(Node::Replica(1)).unwrap();
    // The node starts and serves its other partitions: every key there is intact.
    let deadline = Instant::now() + Duration::from_secs(60);
    let lost_keys: Vec<usize> = (0..n)
        .filter(|i| table.partition_of(format!("k{i}").as_bytes()) == pidx)
        .collect();
    assert!(!lost_keys.is_empty() && lost_keys.len() < n);
    for i in (0..n).filter(|i| !lost_keys.contains(i)) {
        let key = format!("k{i}");
        loop {
            match table.get(key.as_bytes(), b"s").await {
                Ok(v) => {
                    assert_eq!(v.as_deref(), Some(format!("v{i}").as_bytes()), "{key}");
                    break;
                }
                Err(e) => assert!(Instant::now() < deadline, "{key}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The damaged copy is aside, whole, with its reason, and nothing took its place.
    let reps = replica_dir.parent().unwrap();
    let aside: Vec<PathBuf> = std::fs::read_dir(reps)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let f = p.file_name().unwrap().to_string_lossy();
            f.starts_with(&format!("{name}.")) && f.ends_with(".err")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let reason = std::fs::read_to_string(aside[0].join("reason")).unwrap();
    assert!(reason.contains("damaged"), "{reason}");
    assert!(!replica_dir.exists(), "no empty replica replaced it");
    // The meta no longer routes to the lost copy; its keys answer an error, never "not found".
    eventually(
        Duration::from_secs(30),
        "the lost copy unrouted",
        || async {
            let config = client.query_config("temp").await.unwrap();
            config.partitions[pidx as usize]
                .primary
                .socket_addr()
                .is_none()
        },
    )
    .await;
    eprintln!(
        "damaged plog: the other partitions served and the lost copy unrouted {:?} after the \
         restart; {} keys of partition {pidx} answer errors",
        restarted.elapsed(),
        lost_keys.len()
    );
    let mut quick = ClientOptions::new(cluster.onebox.options.meta_addrs());
    quick.timeout = Duration::from_secs(2);
    let quick = Client::new(quick).open_table("temp").await.unwrap();
    for i in lost_keys.iter().take(3) {
        let got = quick.get(format!("k{i}").as_bytes(), b"s").await;
        assert!(got.is_err(), "k{i}: {got:?}");
    }
}

/// A small tmpfs mounted for a test, unmounted when dropped (lazily: a process may still hold
/// it open).
struct Tmpfs(std::sync::Mutex<Option<PathBuf>>);

impl Tmpfs {
    fn mount(&self, at: &Path, size: &str) {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount a tmpfs at {}", at.display());
        *self.0.lock().unwrap() = Some(at.to_owned());
    }

    fn resize(&self, size: &str) {
        let at = self.0.lock().unwrap().clone().expect("mounted");
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&at)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "resize {}", at.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Some(at) = self.0.lock().unwrap().take() {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(at)
                .status();
        }
    }
}

fn can_mount() -> bool {
    let dir = tempfile::tempdir().unwrap();
    let t = Tmpfs(std::sync::Mutex::new(None));
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(dir.path())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        *t.0.lock().unwrap() = Some(dir.path().to_owned());
    }
    ok
}

/// The status line and body of `GET path` on `port`.
fn http_status(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

/// A real full disk: the replica's data dir is a 12 MiB tmpfs. Writes fill it; the write that
/// finds no space is refused (never acknowledged), the partition reports itself lost to the meta
/// (which stops routing to it) and to `/health` (503). Once space returns and the replica
/// restarts, every acknowledged write is there. Needs root to mount; CI runs as root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_the_write_reports_the_replica_and_loses_nothing() {
    if !can_mount() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to mount a tmpfs"
        );
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let disk = Tmpfs(std::sync::Mutex::new(None));
    let cluster = TestCluster::start_prepared(1, 1, 4, &|root| {
        disk.mount(&root.join("replica1/data"), "12m");
    });
    cluster.healthy().await;
    let table = cluster.client().open_table("temp").await.unwrap();
    let value = vec![b'x'; 64 << 10];
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..1000 {
        let key = format!("big{i}");
        match table.set(key.as_bytes(), b"s", &value, None).await {
            Ok(()) => acked.push(key),
            Err(e) => {
                refused = Some((key, e));
                break;
            }
        }
    }
    let (key, error) = refused.expect("a 12 MiB disk fills");
    eprintln!(
        "full disk: {} writes acknowledged, then {key}: {error}",
        acked.len()
    );
    let pidx = table.partition_of(key.as_bytes());
    // The replica says so, and the meta stops routing to that partition.
    let port = cluster.onebox.options.replica_base_port + 1;
    let health = http_status(port, "/health");
    assert!(health.starts_with("HTTP/1.1 503"), "{health}");
    assert!(health.contains("a write failed"), "{health}");
    let client = cluster.client();
    eventually(
        Duration::from_secs(30),
        "the full replica unrouted",
        || async {
            client.query_config("temp").await.unwrap().partitions[pidx as usize]
                .primary
                .socket_addr()
                .is_none()
        },
    )
    .await;
    // Space returns; the replica restarts, replays its log, and serves every acknowledged write.
    disk.resize("256m");
    cluster.onebox.kill_node(Node::Replica(1)).unwrap();
    cluster.onebox.start_node(Node::Replica(1)).unwrap();
    cluster.healthy().await;
    let table = cluster.client().open_table("temp").await.unwrap();
    for key in &acked {
        let got = table.get(key.as_bytes(), b"s").await.unwrap();
        assert_eq!(
            got.as_deref(),
            Some(&value[..]),
            "acknowledged write {key} lost"
        );
    }
    assert!(http_status(port, "/health").starts_with("HTTP/1.1 200"));
    drop(cluster);
}

/// Each injected disk fault — a private-log write failing with EIO, one failing with ENOSPC
/// (half of it landing, as a failing disk may), an fsync failing with EIO — refuses the write it
/// hits and never acknowledges it; the replica stops at once (the next write is refused too, even
/// with the fault gone: after a failed fsync the file cannot be trusted) and reports itself lost,
/// to the meta with its beacons and to `/health`. Reopened on a sound disk, it has every
/// acknowledged write, and a write cut in half is not taken for one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_disk_fault_refuses_the_write_reports_the_replica_and_loses_nothing() {
    use pegasus_server::replica::faults::Faults;
    use pegasus_server::replica::partition::PartitionOptions;
    use pegasus_tests::harness::Harness;

    for (fault, said) in [
        ("plog.write = eio", "Input/output error"),
        ("plog.write = enospc", "No space left on device"),
        ("plog.sync = eio", "Input/output error"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let faults = Arc::new(Faults::default());
        let options = PartitionOptions {
            faults: Arc::clone(&faults),
            ..PartitionOptions::default()
        };
        let h = Harness::start_with(dir.path(), 1, (0, 0), options).await;
        let mut quick = ClientOptions::new(vec![std::net::SocketAddr::V4(h.meta)]);
        quick.timeout = Duration::from_secs(1);
        let table = Client::new(quick).open_table("temp").await.unwrap();
        for i in 0..100 {
            let k = format!("k{i}");
            table.set(k.as_bytes(), b"s", b"v", None).await.unwrap();
        }
        assert!(http_status(h.replica.port(), "/health").starts_with("HTTP/1.1 200"));
        faults.apply(fault).unwrap();
        let refused = table.set(b"refused", b"s", b"v", None).await;
        assert!(refused.is_err(), "{fault}: the write was acknowledged");
        let lost = h.stub.lost();
        let why = lost
            .get(&pegasus_protocol::types::Gpid::new(1, 0))
            .unwrap_or_else(|| panic!("{fault}: not reported lost: {lost:?}"));
        assert!(why.contains(said), "{fault}: {why}");
        let health = http_status(h.replica.port(), "/health");
        assert!(health.starts_with("HTTP/1.1 503"), "{fault}: {health}");
        assert!(health.contains(said), "{fault}: {health}");
        faults.apply("").unwrap();
        let after = table.set(b"after", b"s", b"v", None).await;
        assert!(after.is_err(), "{fault}: a stopped replica took a write");
        h.stop().await;

        let h = Harness::start(dir.path(), 1).await;
        let table = h.client().open_table("temp").await.unwrap();
        for i in 0..100 {
            let k = format!("k{i}");
            let got = table.get(k.as_bytes(), b"s").await.unwrap();
            assert_eq!(got.as_deref(), Some(&b"v"[..]), "{fault}: {k} lost");
        }
        if fault.starts_with("plog.write") {
            let got = table.get(b"refused", b"s").await.unwrap();
            assert_eq!(got, None, "{fault}: a torn write was replayed");
        }
        table.set(b"again", b"s", b"v", None).await.unwrap();
        h.stop().await;
    }
}

/// Regression guard (issue "Replication correctness", defect 1): with `plog_force_flush =
/// false` a replica server whose machine lost power came back within the failure detector's
/// grace still a member; as primary it raised its ballot and proposed new writes at decrees its
/// secondaries had committed, which they acknowledged unchecked: acknowledged writes gone from
/// the serving primary, copies diverged. A copy reopened in a new boot with fsync off now asks
/// to leave its group and learns again. Checked under the history checker (0 lost, 0 stale),
/// with every key written before the power loss read back, and every partition's copies
/// compared at one decree (equal digests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_loss_with_fsync_off_and_a_fast_restart_loses_nothing_and_copies_agree() {
    let cluster = TestCluster::start_tweaked(1, 3, 4, &|o| {
        o.plog_force_flush = false;
        o.faults = true;
        // A grace the restart fits in on a loaded machine: the node must come back a member.
        o.fd_lease_seconds = 15;
    });
    cluster.healthy().await;
    let table = Arc::new(cluster.client().open_table("temp").await.unwrap());
    pegasus_tests::cluster::eventually(Duration::from_secs(60), "fully healthy", || async {
        cluster.health("temp").await.fully_healthy == 4
    })
    .await;
    write_all(&table, "before", 300).await;
    let history = pegasus_tests::history::History::start(&table, 16, 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The node with the most primaries loses power and is back at once.
    let routing = cluster.routing("temp").await;
    let primaries = pegasus_client::admin::role_counts(&[routing]);
    let victim = (1..=3)
        .max_by_key(|n| {
            let addr = pegasus_protocol::types::RpcAddress::new(cluster.replica_addr(*n));
            primaries.get(&addr).map_or(0, |c| c.0)
        })
        .expect("three nodes");
    let lost_power = Instant::now();
    // Its logs keep what the server's sync ledger says was fsynced: with fsync off, what
    // each log held when it was opened.
    let (cut, lost) = cluster.power_loss(Node::Replica(victim));
    println!("power loss: {cut} log files lost {lost} bytes past their last fsync");
    assert!(
        lost > 0,
        "the power loss cost the logs nothing: the test tests nothing"
    );
    cluster.onebox.start_node(Node::Replica(victim)).unwrap();
    // Back (serving beacons) within the grace (lease 15 s + 1): the meta still counts it a
    // member of what it held, so the fast path, not the failure detector, is what is tested.
    let back = lost_power.elapsed();
    assert!(
        back < Duration::from_secs(14),
        "the node took {back:?} to come back: past the grace, this tests nothing new"
    );
    pegasus_tests::cluster::eventually(
        Duration::from_secs(120),
        "fully healthy after the power loss",
        || async { cluster.health("temp").await.fully_healthy == 4 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let v = history.finish(&table).await;
    println!("power loss, fsync off, restart within the grace: {v}");
    v.assert_nothing_lost_or_stale();
    pegasus_tests::cluster::check_all(&table, "before", 300).await;
    // Its copies knew they may lack what they acknowledged (then asked to leave, or were
    // dropped by the meta on their beacon's report first, whichever came first).
    let log = cluster.node_log(Node::Replica(victim));
    assert!(
        log.contains(
            "this copy may lack acknowledged writes (reopened after the machine restarted"
        ),
        "the node's copies were not taken for lossy after the power loss"
    );
    // Every partition's copies hold the same keys and values once the last commit point has
    // reached the secondaries (an empty write carries it a second after the last write; the
    // primary's own last decree may be that empty write, so decrees may differ by one). Copies
    // that diverged never agree: 30 s.
    for pidx in 0..4 {
        let gpid = format!("1.{pidx}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let digests = loop {
            let mut digests = Vec::new();
            for n in 1..=3 {
                digests.push(cluster.digest(n, &gpid).await);
            }
            let data: Vec<(u64, &String)> = digests.iter().map(|d| (d.1, &d.2)).collect();
            if data.iter().all(|d| *d == data[0]) || Instant::now() > deadline {
                break digests;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        println!("copies of {gpid} (decree, keys, crc64): {digests:?}");
        let data: Vec<(u64, &String)> = digests.iter().map(|d| (d.1, &d.2)).collect();
        assert!(
            data.iter().all(|d| *d == data[0]) && data[0].0 > 0,
            "the copies of {gpid} differ: {digests:?}"
        );
    }
}

/// With `plog_force_flush = false`, a clean stop (SIGTERM) syncs every log before the process
/// ends, so a reboot of the machine after it (an operating system upgrade) loses nothing: the
/// copies come back as members, none is taken for one that may lack what it acknowledged, and
/// nothing needs to be learned again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reboot_after_a_clean_stop_with_fsync_off_keeps_every_copy() {
    let cluster = TestCluster::start_tweaked(1, 3, 4, &|o| {
        o.plog_force_flush = false;
        o.faults = true;
    });
    cluster.healthy().await;
    let table = cluster.client().open_table("temp").await.unwrap();
    write_all(&table, "clean", 200).await;
    cluster.onebox.stop_node(Node::Replica(1)).unwrap();
    // The machine reboots: a new boot id (its page cache would be gone, but the stop synced).
    let boot = cluster.onebox.options.root.join("replica1").join("boot_id");
    std::fs::write(&boot, "after-a-clean-reboot\n").unwrap();
    cluster.onebox.start_node(Node::Replica(1)).unwrap();
    pegasus_tests::cluster::eventually(
        Duration::from_secs(60),
        "fully healthy after the reboot",
        || async { cluster.health("temp").await.fully_healthy == 4 },
    )
    .await;
    pegasus_tests::cluster::check_all(&table, "clean", 200).await;
    let log = cluster.node_log(Node::Replica(1));
    assert!(
        !log.contains("may lack acknowledged writes"),
        "a copy stopped cleanly was taken for lossy"
    );
}
