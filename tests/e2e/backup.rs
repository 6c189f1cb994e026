use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pegasus_client::{Client, ClientError};
use pegasus_protocol::backup::{BackupItem, PROGRESS_FINISHED, RestoreRequest};
use pegasus_tests::cluster::{TestCluster, eventually};
use pegasus_tests::history::History;
use pegasus_tools::onebox::Node;

/// The onebox's block service (`local_service`), as the config names it.
const PROVIDER: &str = "local_service";

/// Waits until backup `id` of `app_id` ended; its item.
async fn backup_ended(client: &Client, app_id: i32, id: i64, within: Duration) -> BackupItem {
    let deadline = Instant::now() + within;
    loop {
        let items = client.query_backup_status(app_id, Some(id)).await.unwrap();
        let item = items.into_iter().next().expect("the backup is listed");
        if item.end_time_ms > 0 {
            return item;
        }
        assert!(
            Instant::now() < deadline,
            "backup {id} still running after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The backup's folder for table `app` in the onebox's block service.
fn backup_dir(cluster: &TestCluster, id: i64, app: &str, app_id: i32) -> PathBuf {
    cluster
        .onebox
        .backup_dir()
        .join("onebox")
        .join(id.to_string())
        .join(format!("{app}_{app_id}"))
}

fn restore_request(app: &str, app_id: i32, id: i64, new_name: &str) -> RestoreRequest {
    RestoreRequest {
        cluster_name: "onebox".into(),
        policy_name: String::new(),
        time_stamp: id,
        app_name: app.into(),
        app_id,
        new_app_name: new_name.into(),
        backup_provider_name: PROVIDER.into(),
        skip_bad_partition: false,
        restore_path: None,
    }
}

/// Waits until every partition of restored table `app_id` serves.
async fn restored(client: &Client, app_id: i32, within: Duration) -> Duration {
    eventually(within, "every restored partition serves", || async {
        client
            .query_restore_status(app_id)
            .await
            .is_ok_and(|r| r.restore_progress.iter().all(|p| *p == PROGRESS_FINISHED))
    })
    .await
}

fn backup_info(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("backup_info")).unwrap()).unwrap()
}

/// Under the history checker: a backup taken while writers run, the table dropped and
/// restored under a new name. Every write acknowledged before the backup started is in the
/// restored table with its value or a later one, none that was never written; each restored
/// partition is at the decree the backup recorded for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_table_holds_every_write_acknowledged_before_its_backup() {
    let cluster = TestCluster::start(1, 3, 4);
    cluster.healthy().await;
    let client = cluster.client();
    let table = Arc::new(client.open_table("temp").await.unwrap());
    let app_id = table.app_id();
    let history = History::start(&table, 8, 2);
    eventually(Duration::from_secs(30), "writes acknowledged", || async {
        history.acked() > 200
    })
    .await;
    let started = Instant::now();
    let floor = history.last_acked_before(started);
    let (id, _) = client
        .start_backup_app(app_id, PROVIDER, None)
        .await
        .unwrap();
    // A second backup of the table while this one runs is refused.
    if let Err(e) = client.start_backup_app(app_id, PROVIDER, None).await {
        assert!(
            matches!(&e, ClientError::Refused { code, .. } if code == "ERR_INVALID_STATE"),
            "{e}"
        );
    }
    let item = backup_ended(&client, app_id, id, Duration::from_secs(60)).await;
    assert!(!item.is_backup_failed, "the backup failed: {item:?}");
    let acked_during = history.acked();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ceiling = history.highest_sent();
    let verdict = history.finish(&table).await;
    verdict.assert_nothing_lost_or_stale();
    assert!(
        verdict.acked > acked_during,
        "writes went on during the backup"
    );

    let dir = backup_dir(&cluster, id, "temp", app_id);
    let info = backup_info(&dir);
    let decrees: Vec<i64> = info["decrees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_i64().unwrap())
        .collect();
    assert_eq!(decrees.len(), 4);

    client.drop_app("temp", Some(0)).await.unwrap();
    let new_id = client
        .restore_app(restore_request("temp", app_id, id, "temp_restored"))
        .await
        .unwrap();
    let took = restored(&client, new_id, Duration::from_secs(60)).await;
    // Nothing writes to the restored table: each partition's commit point, as its primary
    // reports it, is the backup's.
    eventually(
        Duration::from_secs(15),
        "restored commit points reported",
        || async {
            let routing = cluster.routing("temp_restored").await;
            routing
                .partitions
                .iter()
                .map(|p| p.last_committed_decree)
                .collect::<Vec<_>>()
                == decrees
        },
    )
    .await;
    let restored_table = client.open_table("temp_restored").await.unwrap();
    for (w, (floor, ceiling)) in floor.iter().zip(&ceiling).enumerate() {
        let v: Option<u64> = restored_table
            .get(format!("writer{w}").as_bytes(), b"v")
            .await
            .unwrap()
            .map(|v| std::str::from_utf8(&v).unwrap().parse().unwrap());
        if let Some(floor) = floor {
            assert!(
                v.is_some_and(|v| v >= *floor),
                "writer {w}: version {floor} was acknowledged before the backup; restored {v:?}"
            );
        }
        assert!(
            v.is_none_or(|v| v <= *ceiling),
            "writer {w}: restored {v:?}, never written past {ceiling}"
        );
    }
    // The official Python client reads the restored table as ours does.
    let ours: Vec<String> = {
        let mut lines = Vec::new();
        for w in 0..floor.len() {
            let v = restored_table
                .get(format!("writer{w}").as_bytes(), b"v")
                .await
                .unwrap();
            lines.push(format!(
                "writer{w} {}",
                v.map_or("-".into(), |v| String::from_utf8_lossy(&v).into_owned())
            ));
        }
        lines
    };
    let theirs = pypegasus_reads(
        cluster.onebox.options.meta_addrs()[0],
        "temp_restored",
        (0..floor.len()).map(|w| format!("writer{w}")).collect(),
    )
    .await;
    assert_eq!(
        theirs, ours,
        "pypegasus3 reads the restored table otherwise"
    );
    // The restored table takes writes as any other.
    restored_table
        .set(b"after", b"s", b"restore", None)
        .await
        .unwrap();
    println!(
        "backup {id}: {} acknowledged writes ({} before it started), decrees {decrees:?}; restored as table {new_id} in {took:?}",
        verdict.acked,
        floor.iter().flatten().sum::<u64>()
    );
}

/// What pypegasus3 reads of `keys` (sort key `v`) in `table`: `<key> <value>` lines.
async fn pypegasus_reads(
    meta: std::net::SocketAddr,
    table: &str,
    keys: Vec<String>,
) -> Vec<String> {
    let python = std::env::var_os("PEGASUS_PYTHON")
        .map(PathBuf::from)
        .expect("PEGASUS_PYTHON must name a Python with pypegasus3 installed: run the tests with `./run.sh test`");
    let script = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("python")
        .join("read_keys.py");
    let cwd = tempfile::tempdir().unwrap();
    let table = table.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .arg(meta.to_string())
            .arg(table)
            .args(keys)
            .current_dir(cwd.path())
            .output()
    })
    .await
    .unwrap()
    .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pypegasus3 failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = stdout.lines().map(str::to_owned).collect();
    assert!(
        lines.pop().is_some_and(|l| l.starts_with("OK ")),
        "{stdout}"
    );
    lines
}

/// A cluster of `metas` metas and 3 replica servers whose table holds 12 MiB, and a backup of
/// it running, its uploads bounded to 1 MB/s a node (a kill lands while they run): the cluster,
/// a client, the table's id, its rows, the backup's id.
async fn slow_backup_running(metas: usize) -> (TestCluster, Client, i32, usize, i64) {
    let cluster = TestCluster::start_tweaked(metas, 3, 4, &|o| {
        o.extra_config.push((
            "replication".into(),
            "cold_backup_rate_mb_per_sec".into(),
            "1".into(),
        ));
    });
    cluster.healthy().await;
    let client = cluster.client();
    let table = client.open_table("temp").await.unwrap();
    let app_id = table.app_id();
    let rows = fill(&table, 3000).await;
    let (id, _) = client
        .start_backup_app(app_id, PROVIDER, None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        client.query_backup_status(app_id, Some(id)).await.unwrap()[0].end_time_ms == 0,
        "the backup ended before the kill: the test needs slower uploads"
    );
    (cluster, client, app_id, rows, id)
}

/// A replica server killed (SIGKILL) while the primaries upload: the backup completes from
/// the copies that took over, or fails; complete, it restores whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_server_killed_during_an_upload_leaves_the_backup_failed_or_whole() {
    let (cluster, client, app_id, rows, id) = slow_backup_running(1).await;
    cluster.onebox.kill_node(Node::Replica(1)).unwrap();
    let item = backup_ended(&client, app_id, id, Duration::from_secs(120)).await;
    // Back, so that the restore has its three nodes.
    cluster.onebox.start_node(Node::Replica(1)).unwrap();
    let dir = backup_dir(&cluster, id, "temp", app_id);
    if item.is_backup_failed {
        assert!(
            !dir.join("backup_info").exists(),
            "a failed backup has a backup_info"
        );
        println!("backup {id} failed after the kill (no backup_info): as allowed");
        return;
    }
    let new_id = client
        .restore_app(restore_request("temp", app_id, id, "temp_restored"))
        .await
        .unwrap();
    restored(&client, new_id, Duration::from_secs(90)).await;
    let restored_table = client.open_table("temp_restored").await.unwrap();
    check(&restored_table, rows).await;
    println!("backup {id} completed from the copies that took over; restored whole ({rows} rows)");
}

/// The meta leader killed while a backup runs: the next leader carries it on from ZooKeeper,
/// to complete (or failed), never left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meta_leader_killed_during_a_backup_leaves_it_to_the_next_leader() {
    let (cluster, client, app_id, rows, id) = slow_backup_running(2).await;
    let leader = cluster.leader().await;
    cluster.onebox.kill_node(Node::Meta(leader - 1)).unwrap();
    let item = backup_ended(&client, app_id, id, Duration::from_secs(120)).await;
    assert!(
        !item.is_backup_failed,
        "the next leader failed it: {item:?}"
    );
    let new_id = client
        .restore_app(restore_request("temp", app_id, id, "temp_restored"))
        .await
        .unwrap();
    restored(&client, new_id, Duration::from_secs(90)).await;
    check(&client.open_table("temp_restored").await.unwrap(), rows).await;
    println!("backup {id}: the next leader finished it; restored whole ({rows} rows)");
}

/// A file of a complete backup damaged: the restore of its partition refuses, naming it, and
/// the other partitions restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_backup_file_fails_its_partitions_restore_naming_it() {
    let cluster = TestCluster::start(1, 3, 4);
    cluster.healthy().await;
    let client = cluster.client();
    let table = client.open_table("temp").await.unwrap();
    let app_id = table.app_id();
    fill(&table, 400).await;
    let (id, _) = client
        .start_backup_app(app_id, PROVIDER, None)
        .await
        .unwrap();
    let item = backup_ended(&client, app_id, id, Duration::from_secs(60)).await;
    assert!(!item.is_backup_failed);
    // The largest table file of partition 2's checkpoint: a byte in its middle flipped.
    let dir = backup_dir(&cluster, id, "temp", app_id);
    let chkpt = backup_info(&dir)["checkpoints"][2]
        .as_str()
        .unwrap()
        .to_owned();
    let files = dir.join("2").join(&chkpt);
    let victim = std::fs::read_dir(&files)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sst"))
        .max_by_key(|p| p.metadata().unwrap().len())
        .expect("an sst file");
    let mut bytes = std::fs::read(&victim).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&victim, bytes).unwrap();
    let name = victim.file_name().unwrap().to_string_lossy().into_owned();

    let new_id = client
        .restore_app(restore_request("temp", app_id, id, "temp_restored"))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(60),
        "partition 2 reported damaged, the others serving",
        || async {
            let r = client.query_restore_status(new_id).await.unwrap();
            r.restore_status[2].0 == "ERR_CORRUPTION"
                && r.restore_progress
                    .iter()
                    .enumerate()
                    .all(|(i, p)| i == 2 || *p == PROGRESS_FINISHED)
        },
    )
    .await;
    let r = client.query_restore_status(new_id).await.unwrap();
    assert!(r.restore_progress[2] < PROGRESS_FINISHED, "{r:?}");
    let named = (1..=3).any(|j| {
        cluster
            .node_log(Node::Replica(j))
            .lines()
            .any(|l| l.contains("restore failed") && l.contains(&name) && l.contains("damaged"))
    });
    assert!(named, "no replica server's log names {name} as damaged");
}

/// Writes `n` rows of 4 KiB values that do not compress; `n`.
async fn fill(table: &pegasus_client::Table, n: usize) -> usize {
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let table = table.clone();
            tokio::spawn(async move {
                for i in (t..n).step_by(8) {
                    table
                        .set(format!("row{i}").as_bytes(), b"s", &value(i), None)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    n
}

/// Row `i`'s value: 4 KiB from a generator seeded with `i`.
fn value(i: usize) -> Vec<u8> {
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn check(table: &pegasus_client::Table, n: usize) {
    for i in 0..n {
        let v = table.get(format!("row{i}").as_bytes(), b"s").await.unwrap();
        assert_eq!(v.as_deref(), Some(&value(i)[..]), "row {i}");
    }
}

/// A policy run through the shell's commands: every few seconds a backup; with a history of 2,
/// three runs keep the newest two (files and records); disabled, it stops; its newest backup
/// restores whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_keeps_its_history_count_and_its_backups_restore() {
    let cluster = TestCluster::start(1, 3, 4);
    cluster.healthy().await;
    let client = cluster.client();
    let table = client.open_table("temp").await.unwrap();
    let app_id = table.app_id();
    let rows = fill(&table, 200).await;
    let mut shell = pegasus_tools::shell::Shell::new(cluster.onebox.options.meta_addrs());
    let mut run = async |line: &str| shell.run_line(line).await.expect("not exit");
    // The first backup is due at the start time on or after the minute the policy is added:
    // this minute (not one about to end).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now % 60 > 50 {
        tokio::time::sleep(Duration::from_secs(61 - now % 60)).await;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let start = format!("{:02}:{:02}", now % 86_400 / 3600, now % 3600 / 60);
    run(&format!(
        "add_backup_policy -p every3s -b {PROVIDER} -a {app_id} -i 3 -s {start} -c 2"
    ))
    .await
    .unwrap();
    assert!(
        run(&format!(
            "add_backup_policy -p every3s -b {PROVIDER} -a {app_id} -i 3 -s {start} -c 2"
        ))
        .await
        .is_err(),
        "a second policy of the same name"
    );
    let listed = |out: &str| -> Vec<i64> {
        let v: serde_json::Value = serde_json::from_str(out).unwrap();
        v["policies"][0]["backups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["backup_id"].as_i64().unwrap())
            .collect()
    };
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = run("query_backup_policy -p every3s -b 10 -j")
            .await
            .unwrap();
        let ids = listed(&out);
        seen.extend(ids.iter().copied());
        if seen.len() >= 3 && ids.len() == 2 {
            break;
        }
        assert!(ids.len() <= 2, "more than the history count kept: {ids:?}");
        assert!(
            Instant::now() < deadline,
            "3 runs not seen: {seen:?}, listed {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    run("disable_backup_policy -p every3s").await.unwrap();
    assert!(
        run("ls_backup_policy")
            .await
            .unwrap()
            .contains("status               : disabled")
    );
    // Whatever ran when it was disabled ends; then the listing stays put.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let kept = listed(
        &run("query_backup_policy -p every3s -b 10 -j")
            .await
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        listed(
            &run("query_backup_policy -p every3s -b 10 -j")
                .await
                .unwrap()
        ),
        kept,
        "a disabled policy still backs up"
    );
    assert_eq!(kept.len(), 2, "{kept:?}");
    // On disk, the kept ones only.
    let on_disk: Vec<i64> =
        std::fs::read_dir(cluster.onebox.backup_dir().join("onebox").join("every3s"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
            .collect::<std::collections::BTreeSet<i64>>()
            .into_iter()
            .collect();
    let mut expected = kept.clone();
    expected.sort();
    assert_eq!(
        on_disk, expected,
        "files of backups past the history count remain"
    );
    let newest = kept[0];
    let out = run(&format!(
        "restore_app -c onebox -p every3s -a temp -i {app_id} -t {newest} -b {PROVIDER} -n temp_restored"
    ))
    .await
    .unwrap();
    let new_id: i32 = out
        .split("app_id ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    restored(&client, new_id, Duration::from_secs(60)).await;
    check(&client.open_table("temp_restored").await.unwrap(), rows).await;
    println!(
        "policy every3s: {} runs seen, kept {kept:?}; the newest restored whole",
        seen.len()
    );
}
