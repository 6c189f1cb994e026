//! ZooKeeper outages (stopped past the session timeout, a leader frozen until its session
//! expired, an ensemble losing a member) and the security basics (a digest ACL on the cluster's
//! nodes, the admin allow-list).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pegasus_client::ClientError;
use pegasus_protocol::codes::{ErrorCode, rpc};
use pegasus_protocol::frame::{RequestMeta, decode_response, encode_request_v0};
use pegasus_protocol::types::*;
use pegasus_tests::cluster::{
    TestCluster, Writers, create_request as create, eventually, free_port_block, lost,
};
use pegasus_tests::history::LeaderWatch;
use pegasus_tools::onebox::{Node, Onebox, OneboxOptions};

/// `[zookeeper] timeout_ms` in these tests: short, so that sessions expire within a test.
const SESSION_TIMEOUT_MS: u64 = 4000;

fn with_session_timeout(o: &mut OneboxOptions) {
    o.extra_config.push((
        "zookeeper".into(),
        "timeout_ms".into(),
        SESSION_TIMEOUT_MS.to_string(),
    ));
}

fn meta_pids(cluster: &TestCluster) -> Vec<Option<i32>> {
    (1..=cluster.onebox.options.metas)
        .map(|i| cluster.onebox.pid(Node::Meta(i)))
        .collect()
}

/// ZooKeeper killed under write load and kept down past the session timeout: the metas stop
/// acting as leader, the replicas serve until their lease runs out, then wait; once ZooKeeper is
/// back a meta leads again (in the same process), writes resume, nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_down_past_the_session_timeout_then_back_the_cluster_resumes() {
    let _alone = pegasus_tests::cluster::HEAVY.lock().await;
    let cluster = TestCluster::start_tweaked(2, 3, 4, &with_session_timeout);
    cluster.healthy().await;
    let pids = meta_pids(&cluster);
    let watch = LeaderWatch::start(cluster.onebox.options.meta_addrs());
    let table = Arc::new(cluster.client().open_table("temp").await.unwrap());
    let writers = Writers::paced(&table, 4, "zk", Duration::from_millis(2));
    eventually(Duration::from_secs(30), "writes", || async {
        writers.count() > 200
    })
    .await;

    cluster.onebox.kill_zookeeper().unwrap();
    let down = Instant::now();
    let at_down = writers.count();
    // Past the session timeout, and past every lease.
    let mut last = (at_down, Instant::now());
    while down.elapsed() < Duration::from_millis(3 * SESSION_TIMEOUT_MS) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n = writers.count();
        if n != last.0 {
            last = (n, Instant::now());
        }
    }
    let served_for = last.1.duration_since(down);
    let during = last.0 - at_down;
    assert!(
        served_for < Duration::from_secs(6),
        "writes went on {served_for:?} without a meta (lease 3 s)"
    );

    cluster.onebox.start_zookeeper().unwrap();
    let up = Instant::now();
    let at_up = writers.count();
    eventually(Duration::from_secs(60), "writes resume", || async {
        writers.count() > at_up + 100
    })
    .await;
    let resumed = up.elapsed();
    let acked = writers.stop().await;
    assert!(
        lost(&table, &acked).await.is_empty(),
        "acknowledged writes lost"
    );
    assert_eq!(meta_pids(&cluster), pids, "a meta exited");
    assert!(watch.most() <= 1, "two metas acted as leader at once");
    eprintln!(
        "ZooKeeper down {:.1?}: writes went on {served_for:.1?} ({during} acknowledged), resumed {resumed:.1?} after it came back; {} acknowledged in all, 0 lost",
        up.duration_since(down),
        acked.len()
    );
}

/// The leader frozen (SIGSTOP) until its ZooKeeper session expired: the other meta takes over;
/// woken up, the old one never acts as leader beside it, and joins the election again in the
/// same process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_whose_session_expired_never_leads_beside_the_new_one() {
    let _alone = pegasus_tests::cluster::HEAVY.lock().await;
    let cluster = TestCluster::start_tweaked(2, 3, 4, &with_session_timeout);
    cluster.healthy().await;
    let pids = meta_pids(&cluster);
    let old = cluster.leader().await;
    let new = 3 - old;
    let watch = LeaderWatch::start(cluster.onebox.options.meta_addrs());
    let table = Arc::new(cluster.client().open_table("temp").await.unwrap());
    let writers = Writers::paced(&table, 2, "frozen", Duration::from_millis(2));

    cluster.onebox.pause_node(Node::Meta(old));
    let frozen = Instant::now();
    let new_addr = cluster.onebox.options.meta_addrs()[new - 1];
    eventually(Duration::from_secs(60), "the other meta leads", || async {
        pegasus_tools::scrape::get(new_addr, "/metrics", Duration::from_secs(2))
            .ok()
            .and_then(|r| pegasus_tests::http::metric(&r.body, "pegasus_meta_leader", &[]))
            == Some(1.0)
    })
    .await;
    let took_over = frozen.elapsed();
    // Frozen a little longer, then woken up with its old belief in memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.onebox.resume_node(Node::Meta(old));
    eventually(
        Duration::from_secs(30),
        "the old leader rejoins",
        || async {
            cluster
                .node_log(Node::Meta(old))
                .contains("joined the election again")
        },
    )
    .await;
    // Tables still change: through the new leader.
    let created: CreateAppResponse = cluster
        .admin(rpc::CREATE_APP, create("after_freeze", 2, 3))
        .await;
    assert_eq!(created.err.0, "ERR_OK");
    let acked = writers.stop().await;
    assert!(
        lost(&table, &acked).await.is_empty(),
        "acknowledged writes lost"
    );
    assert_eq!(meta_pids(&cluster), pids, "a meta exited");
    assert_eq!(cluster.leader().await, new);
    assert!(watch.most() <= 1, "two metas acted as leader at once");
    eprintln!(
        "leader frozen: the other took over {took_over:.1?} after (session timeout {SESSION_TIMEOUT_MS} ms); the old one rejoined as a follower; {} writes acknowledged, 0 lost",
        acked.len()
    );
}

/// A three-server ZooKeeper ensemble loses one member, then another after the first is back:
/// the metas follow to a live member, tables are still created, writes go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zookeeper_ensemble_losing_one_member_keeps_the_cluster_working() {
    let _alone = pegasus_tests::cluster::HEAVY.lock().await;
    let members: Vec<(u16, u16, u16)> = (0..3)
        .map(|_| {
            let p = free_port_block(2);
            (p, p + 1, p + 2)
        })
        .collect();
    let hosts = members
        .iter()
        .map(|(c, _, _)| format!("127.0.0.1:{c}"))
        .collect::<Vec<_>>()
        .join(",");
    let cluster = TestCluster::start_tweaked(1, 3, 4, &|o| {
        with_session_timeout(o);
        o.zk_port = members[0].0;
        o.extra_config
            .push(("zookeeper".into(), "hosts_list".into(), hosts.clone()));
        let ensemble = Onebox::new(o.clone());
        for i in 1..=3 {
            ensemble.start_zookeeper_member(i, &members, false).unwrap();
        }
        for i in 1..=3 {
            ensemble.wait_zookeeper_member(i, &members).unwrap();
        }
    });
    cluster.healthy().await;
    let table = Arc::new(cluster.client().open_table("temp").await.unwrap());
    let writers = Writers::paced(&table, 2, "ens", Duration::from_millis(2));
    for (round, lose) in [1usize, 2].into_iter().enumerate() {
        if round > 0 {
            cluster
                .onebox
                .start_zookeeper_member(round, &members, true)
                .unwrap();
        }
        cluster.onebox.kill_zookeeper_member(lose).unwrap();
        let name = format!("after_member_{lose}");
        let request = create(&name, 2, 3);
        // The meta may be between members for a moment: ask until it answers.
        let took = eventually(
            Duration::from_secs(60),
            &format!("a create after member {lose} died"),
            || async {
                let r: CreateAppResponse = cluster.admin(rpc::CREATE_APP, request.clone()).await;
                r.err.0 == "ERR_OK" || r.err.0 == "ERR_APP_EXIST"
            },
        )
        .await;
        let n = writers.count();
        eventually(Duration::from_secs(30), "writes go on", || async {
            writers.count() > n + 50
        })
        .await;
        eprintln!("ZooKeeper member {lose} of 3 killed: `create {name}` done {took:.1?} after");
    }
    let acked = writers.stop().await;
    assert!(
        lost(&table, &acked).await.is_empty(),
        "acknowledged writes lost"
    );
}

/// With `[zookeeper] auth_digest_file`, the cluster's nodes belong to that identity: another
/// ZooKeeper client, without credentials or with others, can neither read nor rewrite nor
/// delete them, nor add to them; the cluster works throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_acl_keeps_other_zookeeper_clients_out() {
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "pegasus:s3cret\n").unwrap();
    let path = secret.path().display().to_string();
    let cluster = TestCluster::start_tweaked(1, 1, 4, &|o| {
        o.extra_config
            .push(("zookeeper".into(), "auth_digest_file".into(), path.clone()));
    });
    cluster.healthy().await;
    let o = &cluster.onebox.options;
    let zk = format!("127.0.0.1:{}", o.zk_port);
    let apps = format!("/pegasus/onebox/{}/apps", o.meta_base_port);
    use zookeeper_client::{Acls, Client, CreateMode, Error};
    for auth in [None, Some("pegasus:wrong"), Some("intruder:s3cret")] {
        let mut connector = Client::connector();
        if let Some(a) = auth {
            connector = connector.with_auth("digest", a.as_bytes());
        }
        let other = connector.connect(&zk).await.unwrap();
        let who = auth.unwrap_or("no credentials");
        let ids = other.list_children(&apps).await;
        assert!(matches!(ids, Err(Error::NoAuth)), "{who}: listed {ids:?}");
        let first = format!("{apps}/1");
        assert!(
            matches!(other.get_data(&first).await, Err(Error::NoAuth)),
            "{who}: read"
        );
        assert!(
            matches!(
                other.set_data(&first, b"{}", None).await,
                Err(Error::NoAuth)
            ),
            "{who}: rewrote"
        );
        assert!(
            matches!(
                other.delete(&format!("{first}/0"), None).await,
                Err(Error::NoAuth)
            ),
            "{who}: deleted"
        );
        let created = other
            .create(
                &format!("{apps}/999"),
                b"{}",
                &CreateMode::Persistent.with_acls(Acls::anyone_all()),
            )
            .await;
        assert!(
            matches!(created, Err(Error::NoAuth)),
            "{who}: created {created:?}"
        );
    }
    // The right identity reads it (as an operator with the file would).
    let owner = Client::connector()
        .with_auth("digest", b"pegasus:s3cret")
        .connect(&zk)
        .await
        .unwrap();
    assert!(!owner.list_children(&apps).await.unwrap().is_empty());
    let table = cluster.client().open_table("temp").await.unwrap();
    pegasus_tests::cluster::write_all(&table, "acl", 20).await;
    pegasus_tests::cluster::check_all(&table, "acl", 20).await;
}

/// Sends `name` with `args` to `meta` from a socket bound to `from`; the answer's error name.
fn admin_from<A: pegasus_protocol::codec::Field + Default + Clone>(
    from: &str,
    meta: SocketAddr,
    name: &str,
    args: &A,
) -> String {
    use std::io::{Read, Write};
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&format!("{from}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.connect(&meta.into()).unwrap();
    let mut stream: std::net::TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let frame = encode_request_v0(&RequestMeta::default(), name, 7, &Args(args.clone())).unwrap();
    stream.write_all(&frame).unwrap();
    let mut buf = bytes::BytesMut::new();
    loop {
        if let Some(r) = decode_response(&mut buf, 1 << 20).unwrap() {
            return r.error;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed without an answer");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// With `[security] admin_allowed_hosts`, admin RPCs from elsewhere get `ERR_ACL_DENY` (the
/// shell says so), from a listed address they work, and reads and client traffic are not
/// affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_rpcs_from_outside_the_allow_list_get_acl_deny() {
    let cluster = TestCluster::start_tweaked(1, 1, 4, &|o| {
        o.extra_config.push((
            "security".into(),
            "admin_allowed_hosts".into(),
            "127.0.0.2, 10.0.0.0/8".into(),
        ));
    });
    cluster.healthy().await;
    let meta = cluster.onebox.options.meta_addrs()[0];
    // From 127.0.0.1 (the client's and the shell's address): refused, whatever the request.
    let refused = cluster
        .client()
        .call::<_, CreateAppResponse>(
            meta,
            RequestMeta::default(),
            rpc::CREATE_APP,
            &Args(create("denied", 2, 1)),
            Duration::from_secs(10),
        )
        .await;
    assert!(
        matches!(refused, Err(ClientError::Server(ErrorCode::AclDeny))),
        "{refused:?}"
    );
    for name in [
        rpc::DROP_APP,
        rpc::RECALL_APP,
        rpc::UPDATE_APP_ENV,
        rpc::CONTROL_META,
    ] {
        assert_eq!(
            admin_from("127.0.0.1", meta, name, &0i32),
            "ERR_ACL_DENY",
            "{name}"
        );
    }
    let shell = {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = pegasus_tests::process::Guarded::spawn(
            Command::new(pegasus_tests::bins::built("pegasus-tools", "pegasus_shell"))
                .args(["--cluster", &meta.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"create shelled -p 2 -r 1\n").unwrap();
        drop(stdin);
        child.wait_with_output()
    };
    let said = String::from_utf8_lossy(&shell.stdout).into_owned()
        + &String::from_utf8_lossy(&shell.stderr);
    assert!(said.contains("ERR_ACL_DENY"), "the shell said: {said}");
    // From a listed address: done.
    assert_eq!(
        admin_from("127.0.0.2", meta, rpc::CREATE_APP, &create("allowed", 2, 1)),
        "ERR_OK"
    );
    // Reads and client traffic from anywhere.
    let apps: ListAppsResponse = cluster
        .admin(rpc::LIST_APPS, ListAppsRequest::default())
        .await;
    let names: Vec<&str> = apps.infos.iter().map(|a| a.app_name.as_str()).collect();
    assert!(
        names.contains(&"allowed") && !names.contains(&"denied"),
        "{names:?}"
    );
    let table = cluster.client().open_table("temp").await.unwrap();
    pegasus_tests::cluster::write_all(&table, "acl", 10).await;
    pegasus_tests::cluster::check_all(&table, "acl", 10).await;
}

/// Regression guard (issue "Replication correctness", defect 5): the meta wrote ZooKeeper with
/// no version and no check that it still led, so a handler queued behind a slow write, or
/// running across a renewed session, could write after another meta took over (overwritten
/// tables, regressed ballots). Every write of the cluster's state is now a transaction that
/// first checks this meta's lock node: two metas' sessions on a real ZooKeeper, the first
/// deposed (its lock node gone, as its session's expiry removes it), then renewed: each of its
/// late writes is refused and changes nothing; the new leader's land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leaders_late_writes_are_refused_by_zookeeper() {
    use pegasus_server::meta::state::Cluster;
    use pegasus_server::meta::zk::{Zk, ZkConfig, ZkError};
    let cluster = TestCluster::start(1, 1, 1);
    cluster.healthy().await;
    let config = ZkConfig {
        hosts: format!("127.0.0.1:{}", cluster.onebox.options.zk_port),
        session_timeout: Duration::from_millis(SESSION_TIMEOUT_MS),
        digest: None,
    };
    let (root, lock_root) = ("/fence_test/cluster", "/fence_test/lock");
    let old = Zk::connect(&config, root, lock_root).await.unwrap();
    let new = Zk::connect(&config, root, lock_root).await.unwrap();
    let fenced = |r: Result<(), ZkError>, what: &str| match r {
        Err(ZkError::Fenced { .. }) => {}
        other => panic!("{what}: {other:?}, expected a refusal"),
    };
    // Not leading yet: a meta writes nothing.
    fenced(old.save_level("freezed").await, "before the election");
    let old_lock = old.join_election("old").await.unwrap();
    let new_lock = new.join_election("new").await.unwrap();
    assert_eq!(old.leader().await.unwrap().unwrap().0, old_lock);
    old.lead_with(Some(&old_lock));
    old.init_apps().await.unwrap();
    old.save_level("steady").await.unwrap();
    // The old leader's session ends as far as ZooKeeper is concerned (its ephemeral lock node
    // goes, as at expiry); the new one takes over and writes.
    let raw = zookeeper_client::Client::connector()
        .connect(&config.hosts)
        .await
        .unwrap();
    raw.delete(
        &format!("{lock_root}/dsn.meta.server.leader/{old_lock}"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(new.leader().await.unwrap().unwrap().0, new_lock);
    new.lead_with(Some(&new_lock));
    new.save_level("lively").await.unwrap();
    let tables = Cluster::default();
    let app = tables.new_app("fenced", 4, 3, 0);
    // The old one, still believing it leads: a level, a table (a transaction of creates), a
    // table's partitions (a transaction of set_data) and a deletion, each refused.
    fenced(old.save_level("freezed").await, "a late level");
    fenced(old.save_app(&app).await, "a late table");
    let partitions: Vec<(i32, i32, &_)> = app
        .partitions
        .iter()
        .enumerate()
        .map(|(p, c)| (app.info.app_id, p as i32, c))
        .collect();
    for saved in old.save_partitions(&partitions).await {
        fenced(saved, "a late partition");
    }
    assert!(matches!(
        old.delete_tree(&format!("{root}/apps")).await,
        Err(ZkError::Fenced { .. })
    ));
    // Renewed under its running handlers (a new session): still refused.
    old.renew().await.unwrap();
    fenced(old.save_level("freezed").await, "a late level after renew");
    assert_eq!(new.load_level().await.unwrap().as_deref(), Some("lively"));
    assert!(
        raw.get_data(&format!("{root}/apps/{}", app.info.app_id))
            .await
            .is_err(),
        "the deposed leader's table must not exist"
    );
    // The leader's writes of the same land.
    new.save_app(&app).await.unwrap();
    for saved in new.save_partitions(&partitions).await {
        saved.unwrap();
    }
    assert!(
        new.load()
            .await
            .unwrap()
            .unwrap()
            .apps
            .contains_key(&app.info.app_id)
    );
}
