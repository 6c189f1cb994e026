//! Whole clusters as processes: tables, failover, restarts, the collector, the shell.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use pegasus_protocol::codes::{ErrorCode, rpc};
use pegasus_protocol::frame::RequestMeta;
use pegasus_protocol::types::*;
use pegasus_tests::cluster::{TestCluster, check_all, write_all};
use pegasus_tools::onebox::Node;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_creates_serves_and_drops_tables_and_survives_its_leader() {
    let cluster = TestCluster::start(3, 3, 8);
    cluster.healthy().await;
    let client = cluster.client();
    let temp = client.open_table("temp").await.unwrap();
    assert_eq!(temp.partition_count(), 8);
    write_all(&temp, "k", 100).await;

    // Create a table through the leader, use it, list it, drop it, recall it.
    let orders = || CreateAppOptions {
        partition_count: 4,
        replica_count: 3,
        app_type: "pegasus".into(),
        is_stateful: true,
        ..Default::default()
    };
    // Regression guard: a create for 2^31-1 partitions aborted the leader (and each next one)
    // allocating their configurations; now it is refused and the same leader goes on.
    let leader = cluster.leader().await;
    for (partition_count, replica_count) in [(i32::MAX, 3), (0, 3), (4, 0), (4, 1000)] {
        let huge = CreateAppOptions {
            partition_count,
            replica_count,
            ..orders()
        };
        let refused = client.create_app("huge", huge).await.unwrap_err();
        assert!(
            refused.to_string().contains("ERR_INVALID_PARAMETERS"),
            "{refused}"
        );
    }
    assert_eq!(cluster.leader().await, leader, "the leader survived");
    // An admin RPC not served gets Pegasus's answer for it, and the connection goes on.
    let meta = cluster.onebox.options.meta_addrs()[leader - 1];
    let unknown = client
        .call::<_, Empty>(
            meta,
            RequestMeta::default(),
            "RPC_CM_START_BACKUP_APP",
            &Args(Empty {}),
            Duration::from_secs(5),
        )
        .await;
    assert!(
        matches!(
            unknown,
            Err(pegasus_client::ClientError::Server(
                ErrorCode::HandlerNotFound
            ))
        ),
        "{unknown:?}"
    );
    let orders_id = client.create_app("orders", orders()).await.unwrap();
    let again = client.create_app("orders", orders()).await.unwrap_err();
    assert!(again.to_string().contains("ERR_APP_EXIST"), "{again}");
    let same = CreateAppOptions {
        success_if_exist: true,
        ..orders()
    };
    assert_eq!(client.create_app("orders", same).await.unwrap(), orders_id);
    let orders = client.open_table("orders").await.unwrap();
    write_all(&orders, "o", 50).await;
    let apps = client.list_apps(app_status::INVALID).await.unwrap();
    let names: Vec<&str> = apps.iter().map(|a| a.app_name.as_str()).collect();
    assert!(
        names.contains(&"temp") && names.contains(&"stat") && names.contains(&"orders"),
        "{names:?}"
    );
    let nodes = client.list_nodes().await.unwrap();
    assert_eq!(
        nodes
            .iter()
            .filter(|n| n.status == node_status::ALIVE)
            .count(),
        3
    );
    client.drop_app("orders", Some(3600)).await.unwrap();
    assert!(matches!(
        client.open_table("orders").await,
        Err(pegasus_client::ClientError::NoTable(_))
    ));
    let dropped = client.list_apps(app_status::DROPPED).await.unwrap();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].app_id, orders_id);
    assert!(dropped[0].expire_second >= dropped[0].drop_second + 3600);
    // The replica servers close the dropped table's replicas: its old primaries stop serving.
    let deadline = Instant::now() + Duration::from_secs(20);
    while orders.get(b"o1", b"s").await.is_ok() {
        assert!(Instant::now() < deadline, "a dropped table still serves");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Recalled under a new name, with every write it had.
    let info = client.recall_app(orders_id, "orders_back").await.unwrap();
    assert_eq!(
        (info.app_name.as_str(), info.status),
        ("orders_back", app_status::AVAILABLE)
    );
    let back = cluster.client().open_table("orders_back").await.unwrap();
    check_all(&back, "o", 50).await;
    let twice = client.recall_app(orders_id, "").await.unwrap_err();
    assert!(twice.to_string().contains("ERR_APP_EXIST"), "{twice}");

    // Kill the leader meta: another takes over and clients keep working.
    let leader = cluster.leader().await;
    cluster.onebox.kill_node(Node::Meta(leader)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let new_leader = cluster.leader().await;
        if new_leader != leader {
            break;
        }
        assert!(Instant::now() < deadline, "no takeover");
    }
    let fresh = cluster.client().open_table("temp").await.unwrap();
    check_all(&fresh, "k", 100).await;
    write_all(&fresh, "after-failover", 20).await;
    check_all(&temp, "after-failover", 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_come_back_with_their_data_and_a_full_restart_loses_nothing() {
    let cluster = TestCluster::start(1, 3, 8);
    cluster.healthy().await;
    let temp = cluster.client().open_table("temp").await.unwrap();
    write_all(&temp, "k", 200).await;

    // A replica is killed: its partitions have no copy elsewhere yet (no replication), so they
    // wait for it; once it is back it serves them again with its data.
    cluster.onebox.kill_node(Node::Replica(2)).unwrap();
    cluster.onebox.start_node(Node::Replica(2)).unwrap();
    cluster.healthy().await;
    check_all(&temp, "k", 200).await;

    // Everything stops and starts again: tables from ZooKeeper, data from the replicas.
    cluster.onebox.stop().unwrap();
    cluster.onebox.start().unwrap();
    cluster.healthy().await;
    let temp = cluster.client().open_table("temp").await.unwrap();
    check_all(&temp, "k", 200).await;
}

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
    let deadline = Instant::now() + Duration::from_secs(20);
    while envs.get(b"e1", b"s").await.is_ok() {
        assert!(Instant::now() < deadline, "a dropped table still serves");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cluster.replica_folders(None, app_id).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the expired table's replicas remain"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
    // Past the grace period (4 s) and a few detector rounds.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let nodes = json(run("nodes -d -j").await.unwrap());
    assert_eq!(nodes["details"][&victim]["status"], "UNALIVE", "{nodes}");
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
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let app = json(run("app temp -d -j").await.unwrap());
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
        if !members.contains(&victim) && app["summary"]["read_unhealthy_partition_count"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no cure after steady: {app}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sets table `table`'s env `key` to `value` (through the meta leader).
async fn set_env(client: &pegasus_client::Client, table: &str, key: &str, value: &str) {
    client
        .update_app_env(UpdateAppEnvRequest {
            app_name: table.into(),
            op: app_env_operation::SET,
            keys: Some(vec![key.into()]),
            values: Some(vec![value.into()]),
            clear_prefix: None,
        })
        .await
        .unwrap();
}

/// Deletes table `table`'s env `key`.
async fn del_env(client: &pegasus_client::Client, table: &str, key: &str) {
    client
        .update_app_env(UpdateAppEnvRequest {
            app_name: table.into(),
            op: app_env_operation::DEL,
            keys: Some(vec![key.into()]),
            values: None,
            clear_prefix: None,
        })
        .await
        .unwrap();
}

/// Table environments reach the replicas with their configurations and do what Pegasus's do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_envs_take_effect_on_the_replicas() {
    let cluster = TestCluster::start(1, 3, 4);
    cluster.healthy().await;
    let client = cluster.client();
    let options = CreateAppOptions {
        partition_count: 1,
        replica_count: 3,
        ..Default::default()
    };
    client.create_app("fx", options).await.unwrap();
    let table = client.open_table("fx").await.unwrap();
    write_all(&table, "k", 20).await;
    let within = |secs| Instant::now() + Duration::from_secs(secs);

    // default_ttl: a write without a TTL gets it, and expires.
    set_env(&client, "fx", "default_ttl", "3").await;
    let deadline = within(20);
    loop {
        table.set(b"short", b"lived", b"v", None).await.unwrap();
        if table.ttl(b"short", b"lived").await.unwrap() != Some(-1) {
            break;
        }
        assert!(Instant::now() < deadline, "default_ttl not taken up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(matches!(
        table.ttl(b"short", b"lived").await.unwrap(),
        Some(1..=3)
    ));
    table
        .set(b"kept", b"ttl", b"v", Some(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert!(
        table.ttl(b"kept", b"ttl").await.unwrap() > Some(3000),
        "an explicit TTL stays"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        table.get(b"short", b"lived").await.unwrap(),
        None,
        "expired"
    );
    del_env(&client, "fx", "default_ttl").await;

    // Write throttling, 5 a second for the table (6 for its one partition), rejecting.
    set_env(&client, "fx", "replica.write_throttling", "5*reject*0").await;
    let deadline = within(20);
    let busy = |e: &pegasus_client::ClientError| {
        matches!(e, pegasus_client::ClientError::Server(ErrorCode::Busy))
    };
    loop {
        if let Err(e) = table.set(b"t", b"0", b"v", None).await {
            assert!(busy(&e), "{e}");
            break;
        }
        assert!(Instant::now() < deadline, "write throttling not taken up");
    }
    let started = Instant::now();
    let (mut ok, mut rejected) = (0, 0);
    for i in 0..60 {
        match table.set(b"t", format!("{i}").as_bytes(), b"v", None).await {
            Ok(()) => ok += 1,
            Err(e) => {
                assert!(busy(&e), "{e}");
                rejected += 1;
            }
        }
    }
    let seconds = started.elapsed().as_secs() + 1;
    println!(
        "throttled: {ok} written, {rejected} rejected in {:?}",
        started.elapsed()
    );
    assert!(ok <= 6 * seconds, "{ok} writes passed in {seconds} s");
    assert!(rejected >= 60 - 6 * seconds as i32, "{rejected}");
    assert!(
        table.get(b"k1", b"s").await.is_ok(),
        "reads are not throttled"
    );
    del_env(&client, "fx", "replica.write_throttling").await;

    // Denied writes: `reconfig*write` answers ERR_INVALID_STATE (the client retries until its
    // timeout), reads go on; `timeout*all` answers nothing at all.
    let mut quick = pegasus_client::ClientOptions::new(cluster.onebox.options.meta_addrs());
    quick.timeout = Duration::from_secs(2);
    let quick = pegasus_client::Client::new(quick)
        .open_table("fx")
        .await
        .unwrap();
    set_env(
        &client,
        "fx",
        "replica.deny_client_request",
        "reconfig*write",
    )
    .await;
    let deadline = within(20);
    while quick.set(b"d", b"0", b"v", None).await.is_ok() {
        assert!(Instant::now() < deadline, "deny not taken up");
    }
    assert_eq!(
        quick.get(b"k1", b"s").await.unwrap(),
        Some(pegasus_tests::cluster::b("v1"))
    );
    set_env(&client, "fx", "replica.deny_client_request", "timeout*all").await;
    let deadline = within(20);
    while quick.get(b"k1", b"s").await.is_ok() {
        assert!(Instant::now() < deadline, "timeout*all not taken up");
    }
    assert!(matches!(
        quick.get(b"k1", b"s").await,
        Err(pegasus_client::ClientError::Timeout)
    ));
    del_env(&client, "fx", "replica.deny_client_request").await;
    let deadline = within(20);
    while quick.set(b"d", b"0", b"v", None).await.is_err() {
        assert!(Instant::now() < deadline, "deny not lifted");
    }

    // A manual compaction: asked through the envs, reported by every replica when done.
    let none = client.manual_compact_progress("fx").await.unwrap_err();
    assert!(none.to_string().contains("ERR_INVALID_STATE"), "{none}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    set_env(
        &client,
        "fx",
        "manual_compact.once.trigger_time",
        &now.to_string(),
    )
    .await;
    let deadline = within(30);
    loop {
        let (progress, hint) = client.manual_compact_progress("fx").await.unwrap();
        if progress == 100 {
            assert!(hint.starts_with("3 of 3"), "{hint}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "compaction not done: {progress}% {hint}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    check_all(&table, "k", 20).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_and_cluster_cleaning() {
    let cluster = TestCluster::start(1, 1, 2);
    cluster.healthy().await;
    let server = pegasus_tests::bins::pegasus_server();
    let meta = cluster.onebox.options.meta_addrs()[0].to_string();
    let status = |args: &[&str]| {
        std::process::Command::new(&server)
            .args(args)
            .output()
            .unwrap()
    };
    assert_eq!(status(&["healthcheck", &meta]).status.code(), Some(0));
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    assert_eq!(status(&["healthcheck", &free]).status.code(), Some(1));

    let temp = cluster.client().open_table("temp").await.unwrap();
    temp.set(b"before", b"clean", b"x", None).await.unwrap();
    for node in cluster.onebox.nodes() {
        cluster.onebox.stop_node(node).unwrap();
    }
    let root = &cluster.onebox.options.root;
    let meta_config = root.join("meta1/config.ini").display().to_string();
    let replica_config = root.join("replica1/config.ini").display().to_string();
    // Without --yes: a list, nothing removed.
    let dry = status(&["clean", &meta_config]);
    let listed = String::from_utf8_lossy(&dry.stdout);
    assert!(
        listed.contains("would remove directory") && listed.contains("would remove ZooKeeper"),
        "{listed}"
    );
    assert!(root.join("meta1/data").exists());
    for config in [&meta_config, &replica_config] {
        let out = status(&["clean", config, "--yes"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(!root.join("meta1/data").exists() && !root.join("replica1/data").exists());
    // A fresh cluster: bootstrapped again, the old data gone.
    cluster.onebox.start().unwrap();
    cluster.healthy().await;
    let temp = cluster.client().open_table("temp").await.unwrap();
    assert_eq!(temp.get(b"before", b"clean").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_go_inactive_without_a_lease_and_serve_again_with_one() {
    let cluster = TestCluster::start(1, 1, 2);
    cluster.healthy().await;
    let replica = SocketAddr::from(([127, 0, 0, 1], cluster.onebox.options.replica_base_port + 1));
    let key = pegasus_protocol::key::encode_key(b"k", b"s").unwrap();
    let client = cluster.client();
    let get = async || {
        let meta = RequestMeta {
            app_id: 1,
            partition_index: pegasus_protocol::key::partition_index(
                pegasus_protocol::key::crc64(b"k"),
                2,
            ),
            ..Default::default()
        };
        client
            .call::<_, ReadResponse>(
                replica,
                meta,
                rpc::GET,
                &Args(Blob::from(key.clone())),
                Duration::from_secs(2),
            )
            .await
    };
    assert!(get().await.is_ok());
    // The meta hangs (SIGSTOP: beacons time out instead of failing at once). The lease (counted
    // from the last answered beacon's sending) runs out and the replica stops serving, before
    // the meta's grace (one second more, from the beacon's arrival) could give the partitions to
    // another node. Regression guard: the lease was stamped when the answer came and checked
    // once per round of beacons, whose timeouts let a replica serve past the grace.
    let lease = Duration::from_secs(cluster.onebox.options.fd_lease_seconds.into());
    let grace = lease + Duration::from_secs(1);
    let killed = Instant::now();
    cluster.onebox.pause_node(Node::Meta(1));
    loop {
        match get().await {
            Err(pegasus_client::ClientError::Server(ErrorCode::InactiveState)) => break,
            other => assert!(
                killed.elapsed() < grace,
                "still serving {:?} after the last beacon: {other:?}",
                killed.elapsed()
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let inactive = killed.elapsed();
    assert!(
        inactive <= lease + Duration::from_millis(300),
        "inactive after {inactive:?}"
    );
    // The meta returns: beacons succeed again and so do reads.
    cluster.onebox.resume_node(Node::Meta(1));
    cluster.healthy().await;
    assert!(get().await.is_ok());
}

/// A slow ZooKeeper delays configuration changes, never the answer to a beacon (the replica
/// servers' leases hang on those) or a routing query. Regression guard: the meta answered
/// beacons under the state lock, which a create holds through its ZooKeeper writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_zookeeper_delays_changes_not_beacons() {
    let (cluster, proxy) = TestCluster::behind_slow_zookeeper(1, 1, 2, |_| {}).await;
    cluster.healthy().await;
    let meta = cluster.onebox.options.meta_addrs()[0];
    let client = cluster.client();

    // Each ZooKeeper request and answer now waits a second (the session, 10 s, survives that).
    proxy.set_delay(Duration::from_secs(1));
    let create = {
        let client = cluster.client();
        tokio::spawn(async move {
            let started = Instant::now();
            let r = client
                .call::<_, CreateAppResponse>(
                    meta,
                    RequestMeta::default(),
                    rpc::CREATE_APP,
                    &Args(CreateAppRequest {
                        app_name: "slow".into(),
                        options: CreateAppOptions {
                            partition_count: 1,
                            replica_count: 1,
                            ..Default::default()
                        },
                    }),
                    Duration::from_secs(60),
                )
                .await
                .expect("create answered");
            (r.err.0, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let beacon = BeaconRequest {
        node: RpcAddress::new("127.0.0.1:9".parse().unwrap()),
        replicas: Vec::new(),
        ..Default::default()
    };
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        let r: BeaconResponse = client
            .call(
                meta,
                RequestMeta::default(),
                rpc::BEACON,
                &Args(beacon.clone()),
                Duration::from_secs(10),
            )
            .await
            .expect("beacon answered");
        assert_eq!(r.err.0, "ERR_OK");
        let routing: QueryCfgResponse = client
            .call(
                meta,
                RequestMeta::default(),
                rpc::QUERY_CONFIG,
                &Args(QueryCfgRequest {
                    app_name: "temp".into(),
                    partition_indices: Vec::new(),
                }),
                Duration::from_secs(10),
            )
            .await
            .expect("routing answered");
        assert_eq!(routing.partitions.len(), 2);
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        slowest < Duration::from_millis(500),
        "a beacon and a routing query took {slowest:?} while ZooKeeper was slow"
    );
    assert!(
        !create.is_finished(),
        "the create was not slow: the test shows nothing"
    );
    let (code, took) = create.await.unwrap();
    eprintln!("beacon + query_cfg at most {slowest:?}; the create took {took:?}");
    assert_eq!(code, "ERR_OK");
    proxy.set_delay(Duration::ZERO);
}

/// A node whose port is held for a moment when it starts (the onebox's fixed ports lie in the
/// kernel's range for outgoing connections, so a client's connection can hold one) is started
/// again once the port is free. Regression guard: pypegasus3's fault suite waited forever on a
/// replica that had exited with "Address already in use".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_port_is_held_for_a_moment_starts_once_it_is_free() {
    let cluster = tokio::task::spawn_blocking(|| {
        TestCluster::start_tweaked(1, 1, 2, &|o| {
            let held = TcpListener::bind(("0.0.0.0", o.replica_base_port + 1)).unwrap();
            // Held until the node found it in use, however long the nodes before it took to
            // start on a loaded machine (it is started again half a second later).
            let refused = o
                .root
                .join(Node::Replica(1).name())
                .join("result.port_in_use");
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(60);
                while !refused.exists() && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(20));
                }
                drop(held);
            });
        })
    })
    .await
    .unwrap();
    cluster.healthy().await;
    let result = cluster
        .onebox
        .options
        .root
        .join(Node::Replica(1).name())
        .join("result.port_in_use");
    assert!(
        std::fs::read_to_string(result)
            .unwrap_or_default()
            .contains("Address already in use"),
        "the first start found the port in use"
    );
}

/// Regression guard (issue "Replication correctness", defect 2): beacons were answered from
/// the tables as last republished, which happened only when the state lock was released, after
/// the ZooKeeper writes of a change: a primary back from past its grace while the meta was
/// persisting its replacement got a fresh lease, and "primary of b", from the view before the
/// decision; its lease outlived the persisting, so it served reads while its replacement took
/// writes. Here three replica servers are played by the test (beacons only), ZooKeeper is slow
/// (2 s each way: a write takes 4 s; the lease is 3 s), and the primary falls silent until the
/// meta finds it past its grace, then beacons every 100 ms: no answer may give it a lease that
/// lasts past the moment ZooKeeper holds its replacement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_primary_gets_no_lease_that_outlives_its_replacement() {
    use pegasus_tests::cluster::{eventually, free_port_block};
    const LEASE: Duration = Duration::from_secs(3);
    let (cluster, proxy) = TestCluster::behind_slow_zookeeper(1, 0, 1, |o| {
        o.fd_lease_seconds = LEASE.as_secs() as u32;
        // A session that a slow ZooKeeper (4 s a round trip) keeps.
        o.extra_config
            .push(("zookeeper".into(), "timeout_ms".into(), "30000".into()));
    })
    .await;
    let meta = cluster.onebox.options.meta_addrs()[0];
    let client = cluster.client();
    let nodes: Vec<std::net::SocketAddrV4> = (0..3)
        .map(|_| std::net::SocketAddrV4::new([127, 0, 0, 1].into(), free_port_block(0)))
        .collect();
    let beacon = |node: std::net::SocketAddrV4, held: Option<(Gpid, i64)>| {
        let client = client.clone();
        async move {
            let request = BeaconRequest {
                node: RpcAddress::new(node),
                replicas: held.iter().map(|h| h.0).collect(),
                committed: held.iter().map(|_| 0).collect(),
                compacted: held.iter().map(|_| 0).collect(),
                ballots: held.iter().map(|h| h.1).collect(),
                ..Default::default()
            };
            let sent = Instant::now();
            let r = client
                .call::<_, BeaconResponse>(
                    meta,
                    RequestMeta::default(),
                    rpc::BEACON,
                    &Args(request),
                    Duration::from_secs(10),
                )
                .await;
            (sent, r.ok())
        }
    };
    // The three nodes alive, then a table of one partition with a copy on each.
    eventually(
        Duration::from_secs(60),
        "the meta answers beacons",
        || async {
            let mut ok = true;
            for n in &nodes {
                ok &= beacon(*n, None)
                    .await
                    .1
                    .is_some_and(|r| r.err.0 == "ERR_OK");
            }
            ok
        },
    )
    .await;
    // Refused until the meta counts the three alive.
    let deadline = Instant::now() + Duration::from_secs(30);
    let created = loop {
        for n in &nodes {
            beacon(*n, None).await;
        }
        let created: CreateAppResponse = cluster
            .admin(
                rpc::CREATE_APP,
                pegasus_tests::cluster::create_request("lease", 1, 3),
            )
            .await;
        if created.err.0 == "ERR_OK" {
            break created;
        }
        assert!(Instant::now() < deadline, "create: {}", created.err.0);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let gpid = Gpid::new(created.appid, 0);
    let config = || async {
        let r: QueryCfgResponse = cluster
            .admin(
                rpc::QUERY_CONFIG,
                QueryCfgRequest {
                    app_name: "lease".into(),
                    partition_indices: Vec::new(),
                },
            )
            .await;
        r.partitions.first().cloned().unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        for n in &nodes {
            beacon(*n, Some((gpid, 1))).await;
        }
        let c = config().await;
        if c.ballot >= 1 && c.primary.socket_addr().is_some() {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "the partition was not placed: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let old = first.primary.socket_addr().unwrap();
    let ballot = first.ballot;
    let others: Vec<std::net::SocketAddrV4> = nodes.iter().copied().filter(|n| *n != old).collect();
    // Slow ZooKeeper from now on; the primary falls silent, the others beacon on, until the
    // meta finds it past its grace (and decides to replace it).
    let graced = |log: &str| {
        log.matches("replica servers past their grace period")
            .count()
    };
    let graced_before = graced(&cluster.node_log(Node::Meta(1)));
    proxy.set_delay(Duration::from_secs(2));
    let silent = Instant::now();
    while graced(&cluster.node_log(Node::Meta(1))) == graced_before {
        assert!(
            silent.elapsed() < Duration::from_secs(30),
            "the meta never found the silent primary past its grace"
        );
        for n in &others {
            beacon(*n, Some((gpid, ballot))).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let found = silent.elapsed();
    // ZooKeeper itself (not through the proxy): when it holds the replacement.
    let zk = zookeeper_client::Client::connector()
        .connect(&format!("127.0.0.1:{}", cluster.onebox.options.zk_port))
        .await
        .unwrap();
    let path = format!(
        "/pegasus/onebox/{}/apps/{}/0",
        cluster.onebox.options.meta_base_port, created.appid
    );
    let mut persisted: Option<Instant> = None;
    let mut answers: Vec<(Instant, BeaconResponse)> = Vec::new();
    let until = silent + Duration::from_secs(40);
    while Instant::now() < until {
        for n in &others {
            beacon(*n, Some((gpid, ballot))).await;
        }
        // The old primary is back, beaconing as primary of `ballot`, 10 times a second, while
        // its replacement is written to ZooKeeper (4 s) and after.
        for _ in 0..3 {
            let (sent, r) = beacon(old, Some((gpid, ballot))).await;
            if let Some(r) = r {
                answers.push((sent, r));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if persisted.is_none()
            && let Ok((data, _)) = zk.get_data(&path).await
        {
            let now: serde_json::Value = serde_json::from_slice(&data).unwrap();
            if now["ballot"].as_i64().unwrap_or(0) > ballot {
                persisted = Some(Instant::now());
            }
        }
        if persisted.is_some_and(|p| p.elapsed() > LEASE) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let persisted = persisted.expect("the meta replaced the silent primary");
    let new = config().await;
    assert_ne!(new.primary.socket_addr(), Some(old), "the primary moved");
    let leased_as_primary = |r: &BeaconResponse| {
        r.err.0 == "ERR_OK"
            && r.configs.iter().any(|a| {
                a.pid == gpid && a.primary.socket_addr() == Some(old) && a.ballot <= ballot
            })
    };
    let bad: Vec<Duration> = answers
        .iter()
        .filter(|(sent, r)| leased_as_primary(r) && *sent + LEASE > persisted)
        .map(|(sent, _)| persisted.saturating_duration_since(*sent))
        .collect();
    let busy = answers
        .iter()
        .filter(|(_, r)| r.err.0 == "ERR_BUSY")
        .count();
    println!(
        "deposed primary: found past its grace {found:?} after it fell silent, its replacement \
         persisted {:?} after; {} beacons answered ({busy} busy) meanwhile and after; leases \
         that outlived the replacement's write: {}",
        persisted - silent - found,
        answers.len(),
        bad.len()
    );
    assert!(
        bad.is_empty(),
        "{} beacons of the replaced primary got a lease lasting past the write of its \
         replacement (sent that long before it: {bad:?})",
        bad.len()
    );
    drop(proxy);
}

/// Stale read at heal, end to end (issue "Replication correctness", defect 2): a primary's
/// process frozen (SIGSTOP) past its grace with ZooKeeper slow (each chunk 2 s each way), and
/// back (SIGCONT) as soon as the meta has taken it for dead, while the meta is still writing
/// its replacement, under the history checker, whose writers and readers routed their
/// requests before the freeze. The primary beacons during the write: it must get no lease
/// from the view before the change (it would serve reads from its store while its replacement
/// takes writes). 0 lost, 0 stale; the test checks that the view still named it primary when
/// it was back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_back_while_its_replacement_is_written_serves_no_stale_read() {
    use std::sync::Arc;

    use pegasus_tests::cluster::eventually;
    let (cluster, proxy) = TestCluster::behind_slow_zookeeper(1, 3, 4, |o| {
        // A session that a slow ZooKeeper keeps.
        o.extra_config
            .push(("zookeeper".into(), "timeout_ms".into(), "30000".into()));
    })
    .await;
    cluster.healthy().await;
    let table = Arc::new(cluster.client().open_table("temp").await.unwrap());
    eventually(Duration::from_secs(60), "fully healthy", || async {
        cluster.health("temp").await.fully_healthy == 4
    })
    .await;
    let history = pegasus_tests::history::History::start(&table, 8, 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let primary_of = |routing: &QueryCfgResponse, n: usize| {
        let addr = RpcAddress::new(cluster.replica_addr(n));
        routing
            .partitions
            .iter()
            .filter(|p| p.primary == addr)
            .count()
    };
    let routing = cluster.routing("temp").await;
    let victim = (1..=3)
        .max_by_key(|n| primary_of(&routing, *n))
        .expect("three nodes");
    assert!(primary_of(&routing, victim) > 0);
    let victim_addr = cluster.replica_addr(victim).to_string();
    let metas: Vec<Node> = cluster
        .onebox
        .nodes()
        .into_iter()
        .filter(|n| matches!(n, Node::Meta(_)))
        .collect();
    let taken_for_dead = || {
        metas.iter().any(|m| {
            cluster
                .node_log(*m)
                .lines()
                .any(|l| l.contains("past their grace period") && l.contains(&victim_addr))
        })
    };
    cluster.onebox.pause_node(Node::Replica(victim));
    proxy.set_delay(Duration::from_secs(2));
    let frozen = Instant::now();
    // Back as soon as the meta has taken it for dead: its replacement is being written.
    eventually(
        Duration::from_secs(90),
        "the meta takes the frozen primary for dead",
        || async { taken_for_dead() },
    )
    .await;
    cluster.onebox.resume_node(Node::Replica(victim));
    let resumed = frozen.elapsed();
    // The view still names it (the write is not done): it was back during the write.
    let during = cluster.routing("temp").await;
    let still = primary_of(&during, victim);
    tokio::time::sleep(Duration::from_secs(8)).await;
    proxy.set_delay(Duration::ZERO);
    eventually(Duration::from_secs(120), "fully healthy again", || async {
        cluster.health("temp").await.fully_healthy == 4
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let v = history.finish(&table).await;
    println!(
        "a primary frozen {resumed:?}, back while ZooKeeper was slow and its replacement was \
         being written, still named primary of {still} partitions then: {v}"
    );
    v.assert_nothing_lost_or_stale();
    assert!(
        still > 0,
        "the replacement was published before the primary came back: the window was missed"
    );
    // No lease while its replacement was being written: the frozen primary's first lease after
    // the meta took it for dead comes once the replacement is published (the logs' times, on
    // one clock, compare as text).
    let stamp = |l: &str| l.split_whitespace().next().unwrap_or_default().to_owned();
    let meta_log: String = metas.iter().map(|m| cluster.node_log(*m)).collect();
    let dead_at = meta_log
        .lines()
        .find(|l| l.contains("past their grace period") && l.contains(&victim_addr))
        .map(stamp)
        .expect("taken for dead");
    let replaced_at = meta_log
        .lines()
        .filter(|l| {
            l.contains("configuration changed")
                && l.contains(&format!("last_drops=[\"{victim_addr}\""))
        })
        .map(stamp)
        .find(|t| *t > dead_at)
        .expect("a replacement published after the meta took it for dead");
    let leases: Vec<String> = cluster
        .node_log(Node::Replica(victim))
        .lines()
        .filter(|l| l.contains("lease from the meta: serving"))
        .map(stamp)
        .filter(|t| *t > dead_at)
        .collect();
    println!("taken for dead at {dead_at}, replaced at {replaced_at}, leases after: {leases:?}");
    assert!(
        leases.iter().all(|t| *t >= replaced_at),
        "the frozen primary got a lease while its replacement was being written (taken for dead \
         {dead_at}, replaced {replaced_at}, leases {leases:?})"
    );
}
