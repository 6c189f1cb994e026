//! Leases: a replica server serves only under a lease from the meta leader; a slow ZooKeeper
//! delays changes, never beacons; a deposed primary gets no lease that outlives its
//! replacement, and serves no stale read when it is back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pegasus_protocol::codes::{ErrorCode, rpc};
use pegasus_protocol::frame::RequestMeta;
use pegasus_protocol::types::*;
use pegasus_tests::cluster::TestCluster;
use pegasus_tools::onebox::Node;

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
    let beacon = BeaconRequest {
        node: RpcAddress::new("127.0.0.1:9".parse().unwrap()),
        replicas: Vec::new(),
        ..Default::default()
    };
    // Beacons and routing queries the whole time the create runs (a fixed number of rounds
    // could all come before the create holds the state lock, and show nothing).
    let mut slowest = Duration::ZERO;
    let mut rounds = 0;
    while !create.is_finished() {
        rounds += 1;
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
    let (code, took) = create.await.unwrap();
    eprintln!(
        "beacon + query_cfg at most {slowest:?} over {rounds} rounds; the create took {took:?}"
    );
    assert_eq!(code, "ERR_OK");
    // Each of the create's ZooKeeper writes takes 2 s: it held the state lock for seconds,
    // through several rounds.
    assert!(
        took > Duration::from_secs(2) && rounds >= 5,
        "the create was not slow ({took:?}, {rounds} rounds): the test shows nothing"
    );
    assert!(
        slowest < Duration::from_millis(500),
        "a beacon and a routing query took {slowest:?} while ZooKeeper was slow"
    );
    proxy.set_delay(Duration::ZERO);
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
    eventually(
        Duration::from_secs(30),
        "the partition is placed",
        || async {
            for n in &nodes {
                beacon(*n, Some((gpid, 1))).await;
            }
            let c = config().await;
            c.ballot >= 1 && c.primary.socket_addr().is_some()
        },
    )
    .await;
    let first = config().await;
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
    let found = eventually(
        Duration::from_secs(30),
        "the meta finds the silent primary past its grace",
        || async {
            if graced(&cluster.node_log(Node::Meta(1))) != graced_before {
                return true;
            }
            for n in &others {
                beacon(*n, Some((gpid, ballot))).await;
            }
            false
        },
    )
    .await;
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
