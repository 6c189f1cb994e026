//! Whole clusters as processes: tables created, served, dropped and recalled, a leader meta
//! killed, replica servers restarted, the healthcheck and cluster cleaning, a held port.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use pegasus_protocol::codes::ErrorCode;
use pegasus_protocol::frame::RequestMeta;
use pegasus_protocol::types::*;
use pegasus_tests::cluster::{TestCluster, check_all, eventually, write_all};
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
            "RPC_CM_START_BULK_LOAD",
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
    eventually(
        Duration::from_secs(20),
        "a dropped table stops serving",
        || async { orders.get(b"o1", b"s").await.is_err() },
    )
    .await;
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
    eventually(
        Duration::from_secs(30),
        "another meta takes over",
        || async { cluster.leader().await != leader },
    )
    .await;
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

    // `/config?name=` and `/configs` on each role's port: what the process took from its file.
    let lease = cluster.onebox.options.fd_lease_seconds.to_string();
    for node in cluster.onebox.nodes() {
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], cluster.onebox.port(node)).into();
        let one = pegasus_tests::http::get(addr, "/config?name=fd_lease_seconds").unwrap();
        assert_eq!(one.status, 200, "{node:?}: {}", one.body);
        let one: serde_json::Value = serde_json::from_str(&one.body).unwrap();
        assert_eq!(
            (one["section"].as_str(), one["value"].as_str()),
            (Some("replication"), Some(lease.as_str())),
            "{node:?}"
        );
        let all = pegasus_tests::http::get(addr, "/configs").unwrap();
        let all: serde_json::Value = serde_json::from_str(&all.body).unwrap();
        assert_eq!(
            all["fd_grace_seconds"]["value"],
            (cluster.onebox.options.fd_lease_seconds + 1).to_string()
        );
        let missing = pegasus_tests::http::get(addr, "/config?name=no_such_key").unwrap();
        assert_eq!(missing.status, 404);
    }

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
