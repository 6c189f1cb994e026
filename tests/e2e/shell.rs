//! `pegasus_shell` against a real cluster: every command family, table environments, drops
//! that expire, the meta level, and a closed output.

use std::time::Duration;

use pegasus_protocol::types::*;
use pegasus_tests::cluster::{TestCluster, eventually, write_all};
use pegasus_tools::onebox::Node;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shell_drives_a_cluster() {
    let cluster = TestCluster::start(1, 1, 4);
    cluster.healthy().await;
    let mut shell = pegasus_tools::shell::Shell::new(cluster.onebox.options.meta_addrs());
    let mut run = async |line: &str| shell.run_line(line).await.expect("not exit");
    let app: serde_json::Value =
        serde_json::from_str(&run("app temp -d -j").await.unwrap()).unwrap();
    assert_eq!(app["summary"]["fully_healthy_partition_count"], 4);
    assert_eq!(app["replicas"].as_object().unwrap().len(), 4);
    assert!(
        run("app temp -d")
            .await
            .unwrap()
            .contains("fully_healthy_partition_count    : 4")
    );
    assert!(run("get a b").await.is_err(), "no table in use yet");
    run("use temp").await.unwrap();
    assert_eq!(run("set a b \"hello world\"").await.unwrap(), "OK");
    assert_eq!(run("get a b").await.unwrap(), "\"hello world\"");
    assert_eq!(run("exist a b").await.unwrap(), "True");
    run("multi_set m x 1 y 2").await.unwrap();
    assert!(
        run("multi_get m")
            .await
            .unwrap()
            .ends_with("2 key-value pairs got.")
    );
    assert_eq!(
        run("count_data").await.unwrap(),
        "Count done, total 3 rows."
    );
    assert!(
        run("create t2 -p 2 -r 1")
            .await
            .unwrap()
            .contains("succeed")
    );
    let ls: serde_json::Value = serde_json::from_str(&run("ls -j").await.unwrap()).unwrap();
    assert_eq!(ls["summary"]["total_app_count"], 3, "temp, stat, t2");
    assert!(run("drop t2").await.unwrap().contains("succeed"));
    let nodes: serde_json::Value = serde_json::from_str(&run("nodes -j").await.unwrap()).unwrap();
    assert_eq!(nodes["summary"]["alive_node_count"], 1);
    let info: serde_json::Value =
        serde_json::from_str(&run("cluster_info -j").await.unwrap()).unwrap();
    assert_eq!(info["cluster_info"]["cluster_name"], "onebox");
    assert!(run("bogus").await.is_err());
    assert!(shell.run_line("exit").await.is_none());
}

/// The admin commands of Pegasus's shell over Pegasus's admin IDL: table environments, drops
/// that expire, and the meta level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shell_sets_envs_and_the_meta_level_and_dropped_tables_expire() {
    let cluster = TestCluster::start(1, 3, 4);
    cluster.healthy().await;
    let mut shell = pegasus_tools::shell::Shell::new(cluster.onebox.options.meta_addrs());
    let mut run = async |line: &str| shell.run_line(line).await.expect("not exit");
    // For polls: a shell of its own each time (connections are made lazily).
    let ask = async |line: &str| {
        pegasus_tools::shell::Shell::new(cluster.onebox.options.meta_addrs())
            .run_line(line)
            .await
            .expect("not exit")
    };
    let json = |out: String| serde_json::from_str::<serde_json::Value>(&out).unwrap();

    // Environments: given at create, set, refused when malformed, deleted, cleared.
    let bad = run("create bad -e nonsense=1").await.unwrap_err();
    assert!(bad.contains("unknown table env"), "{bad}");
    let created = run("create envs -p 2 -r 3 -e default_ttl=3600")
        .await
        .unwrap();
    assert!(created.contains("succeed"), "{created}");
    run("use envs").await.unwrap();
    let envs = json(run("get_app_envs -j").await.unwrap());
    assert_eq!(envs["app_envs"]["default_ttl"], "3600");
    run("set_app_envs replica.write_throttling 100*reject*0")
        .await
        .unwrap();
    let refused = run("set_app_envs default_ttl soon").await.unwrap_err();
    assert!(refused.contains("expected seconds"), "{refused}");
    // The meta refuses it too, naming the valid form, whatever the client checked.
    let refused = cluster
        .client()
        .update_app_env(UpdateAppEnvRequest {
            app_name: "envs".into(),
            op: app_env_operation::SET,
            keys: Some(vec!["replica.deny_client_request".into()]),
            values: Some(vec!["always".into()]),
            clear_prefix: None,
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("ERR_INVALID_PARAMETERS") && refused.contains("timeout*write"),
        "{refused}"
    );
    run("del_app_envs default_ttl").await.unwrap();
    let envs = json(run("get_app_envs -j").await.unwrap());
    assert_eq!(
        envs["app_envs"],
        serde_json::json!({ "replica.write_throttling": "100*reject*0" })
    );
    run("clear_app_envs -p replica").await.unwrap();
    let envs = json(run("get_app_envs -j").await.unwrap());
    assert_eq!(envs["app_envs"], serde_json::json!({}));

    // A drop reserved for 10 s: the replicas close (the table stops serving) and keep their
    // folders (closed, and still reported); once the reserve runs out the leader retires the
    // table and the replica servers delete them.
    let app_id = json(run("ls -j").await.unwrap())["general_info"]
        .as_object()
        .unwrap()
        .values()
        .find(|a| a["app_name"] == "envs")
        .unwrap()["app_id"]
        .as_i64()
        .unwrap() as i32;
    let envs = cluster.client().open_table("envs").await.unwrap();
    write_all(&envs, "e", 20).await;
    assert_eq!(
        cluster.replica_folders(None, app_id).len(),
        6,
        "2 partitions x 3"
    );
    assert!(run("drop envs -r 10").await.unwrap().contains("succeed"));
    eventually(
        Duration::from_secs(20),
        "a dropped table stops serving",
        || async { envs.get(b"e1", b"s").await.is_err() },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the expired table's replicas are removed",
        || async { cluster.replica_folders(None, app_id).is_empty() },
    )
    .await;
    let all = json(run("ls -a -j").await.unwrap());
    assert!(
        all["general_info"].get(app_id.to_string()).is_none(),
        "{all}"
    );

    // `freezed`: a dead node keeps its place in every configuration until `steady`.
    let level = run("set_meta_level freezed").await.unwrap();
    assert!(level.contains("the old level is fl_steady"), "{level}");
    assert_eq!(
        json(run("cluster_info -j").await.unwrap())["cluster_info"]["meta_function_level"],
        "freezed"
    );
    let before = json(run("app temp -d -j").await.unwrap());
    let victim = format!("127.0.0.1:{}", cluster.onebox.options.replica_base_port + 3);
    cluster.onebox.kill_node(Node::Replica(3)).unwrap();
    // Past the grace period (4 s): the meta takes it for dead.
    eventually(
        Duration::from_secs(30),
        "the killed node is UNALIVE",
        || async {
            json(ask("nodes -d -j").await.unwrap())["details"][&victim]["status"] == "UNALIVE"
        },
    )
    .await;
    // A cure would be decided in the detector's next rounds (one every 2 s): none comes.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        json(run("app temp -d -j").await.unwrap())["replicas"],
        before["replicas"],
        "nothing moved while freezed"
    );
    assert_eq!(
        run("get_meta_level").await.unwrap(),
        "current meta level is fl_freezed"
    );
    run("set_meta_level steady").await.unwrap();
    eventually(Duration::from_secs(30), "a cure after steady", || async {
        let app = json(ask("app temp -d -j").await.unwrap());
        let members: Vec<String> = app["replicas"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|p| {
                let secondaries = p["secondaries"].as_array().unwrap().clone();
                std::iter::once(p["primary"].clone()).chain(secondaries)
            })
            .map(|m| m.as_str().unwrap().to_owned())
            .collect();
        !members.contains(&victim) && app["summary"]["read_unhealthy_partition_count"] == 0
    })
    .await;
}

/// `pegasus_shell … | head`: once its output is closed the shell stops quietly with status 0.
/// Regression guard: `println!` panicked on the broken pipe.
#[test]
fn the_shell_stops_quietly_when_its_output_is_closed() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let shell = pegasus_tests::bins::built("pegasus-tools", "pegasus_shell");
    let mut child = pegasus_tests::process::Guarded::spawn(
        Command::new(shell)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut stdin = child.stdin.take().unwrap();
    // `help` needs no cluster; far more of it than a pipe holds.
    let feeder = std::thread::spawn(move || {
        for _ in 0..2000 {
            if stdin.write_all(b"help\n").is_err() {
                break;
            }
        }
    });
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The read end is dropped here: the next write fails with EPIPE.
    let out = child.wait_with_output();
    feeder.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
