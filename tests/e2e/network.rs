//! Three hosts on a real network: network namespaces with 10.x addresses on a bridge and a
//! fourth for the client (`pegasus_tests::netns`). Each host runs a meta and a replica server
//! from the release tarball with an empty `primary_interface` (each finds its one address
//! itself); ZooKeeper runs on the first. Under the history checker, the leader meta is cut off
//! from ZooKeeper, then a primary's host from everyone, then the network heals.

use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pegasus_client::{Client, ClientOptions};
use pegasus_tests::cluster::{eventually, fully_healthy};
use pegasus_tests::history::{History, LeaderWatch, leaders};
use pegasus_tests::netns::Net;
use pegasus_tests::process::Guarded;

const META_PORT: u16 = 34601;
const REPLICA_PORT: u16 = 34801;
const ZK_PORT: u16 = 2181;
const LEASE_S: u64 = 3;
const GRACE_S: u64 = 4;
const SESSION_TIMEOUT_MS: u64 = 4000;
const PARTITIONS: usize = 4;
/// Shorter than lease + grace: a write sent to the primary just cut off fails after it, and the
/// next goes to the new primary.
const CLIENT_TIMEOUT_S: u64 = 3;

/// The release tarball, packed from the built binaries and unpacked under `work`: its `bin/`.
fn unpacked_tarball(work: &Path) -> PathBuf {
    let tarball = pegasus_tests::bins::release_tarball(work);
    let unpacked = std::process::Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(work)
        .status()
        .unwrap();
    assert!(unpacked.success());
    let name = std::fs::read_to_string(work.join("PACKAGE")).unwrap();
    work.join(name.trim()).join("bin")
}

/// A host's `config.ini`: a meta and a replica, the three metas, ZooKeeper on host 1, and no
/// `primary_interface`.
fn config(net: &Net, dir: &Path) -> PathBuf {
    let metas: Vec<String> = (1..=3)
        .map(|h| format!("{}:{META_PORT}", net.addr(h)))
        .collect();
    let text = format!(
        "[apps.meta]\ntype = meta\nports = {META_PORT}\n\n\
         [apps.replica]\ntype = replica\nports = {REPLICA_PORT}\n\n\
         [core]\ndata_dir = {data}\n\n\
         [network]\nprimary_interface =\n\n\
         [meta_server]\nserver_list = {metas}\ncluster_root = /pegasus/netns\n\
         min_live_node_count_for_unfreeze = 1\nreplica_assign_delay_ms_for_dropouts = 10000\n\n\
         [meta_server.apps.temp]\napp_name = temp\napp_type = pegasus\n\
         partition_count = {PARTITIONS}\nmax_replica_count = 3\n\n\
         [replication]\ncluster_name = netns\nfd_check_interval_seconds = 1\n\
         fd_beacon_interval_seconds = 1\nfd_lease_seconds = {LEASE_S}\n\
         fd_grace_seconds = {GRACE_S}\n\n\
         [pegasus.clusters]\nnetns = {metas}\n\n\
         [zookeeper]\nhosts_list = {zk}:{ZK_PORT}\ntimeout_ms = {SESSION_TIMEOUT_MS}\n",
        data = dir.join("data").display(),
        metas = metas.join(","),
        zk = net.addr(1),
    );
    let path = dir.join("config.ini");
    std::fs::write(&path, text).unwrap();
    path
}

/// ZooKeeper on host 1, listening on its address.
fn zookeeper(net: &Net, dir: &Path) -> Guarded {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let cfg = dir.join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "tickTime=1000\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={ZK_PORT}\n\
             clientPortAddress={}\nadmin.enableServer=false\n4lw.commands.whitelist=ruok\n",
            dir.join("data").display(),
            net.addr(1)
        ),
    )
    .unwrap();
    let classpath = pegasus_tools::onebox::zookeeper_classpath().expect("ZooKeeper installed");
    net.spawn(
        &net.host(1),
        "java",
        &[
            "-Xmx256m",
            "-cp",
            &classpath,
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            cfg.to_str().unwrap(),
        ],
        &dir.join("zookeeper.log"),
    )
}

/// The longest write stall since a fault at `cut`: measured once lease + grace have passed and
/// every writer had a write acknowledged after that (within `within`).
async fn stall_since(history: &History, cut: Instant, within: Duration, what: &str) -> Duration {
    tokio::time::sleep(Duration::from_secs(LEASE_S + GRACE_S)).await;
    let writing = Instant::now();
    eventually(within, what, || async {
        history.all_writing_after(writing)
    })
    .await;
    history.stall(cut, Instant::now())
}

/// Needs root (namespaces, iptables); CI runs as root. Skipped, saying so, elsewhere.
#[test]
fn three_hosts_cut_apart_and_healed_lose_nothing_and_never_have_two_leaders() {
    if !Net::available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to make network namespaces"
        );
        eprintln!("skipped: network namespaces need root");
        return;
    }
    let _heavy = pegasus_tests::cluster::HEAVY.blocking_lock();
    let work = tempfile::tempdir().unwrap();
    let bin = unpacked_tarball(work.path());
    let net = Arc::new(Net::create(3));
    let mut procs = vec![zookeeper(&net, &work.path().join("zookeeper"))];
    // Everything the test does from here is from the client's namespace.
    let n = Arc::clone(&net);
    let (work_dir, bin_dir) = (work.path().to_owned(), bin.clone());
    let outcome = std::thread::spawn(move || {
        n.enter(&n.client());
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(scenario(&n, &work_dir, &bin_dir, &mut procs))
    })
    .join();
    if outcome.is_err() {
        let kept = work.keep();
        panic!(
            "the scenario failed; every process's output and logs are kept in {}",
            kept.display()
        );
    }
}

async fn scenario(net: &Net, work: &Path, bin: &Path, procs: &mut Vec<Guarded>) {
    let server = bin.join("pegasus_server");
    let zk = SocketAddr::from((net.addr(1), ZK_PORT));
    eventually(Duration::from_secs(60), "ZooKeeper answers", || async {
        tokio::net::TcpStream::connect(zk).await.is_ok()
    })
    .await;
    for i in 1..=3 {
        let dir = work.join(format!("h{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = config(net, &dir);
        for role in ["meta", "replica"] {
            procs.push(net.spawn(
                &net.host(i),
                server.to_str().unwrap(),
                &[config.to_str().unwrap(), "-app_list", role],
                &dir.join(format!("{role}.log")),
            ));
        }
    }
    let metas: Vec<SocketAddr> = (1..=3)
        .map(|i| SocketAddr::from((net.addr(i), META_PORT)))
        .collect();
    let mut options = ClientOptions::new(metas.clone());
    options.timeout = Duration::from_secs(CLIENT_TIMEOUT_S);
    let client = Client::new(options);
    let started = eventually(
        Duration::from_secs(90),
        "every partition fully healthy",
        || async { fully_healthy(&client, "temp").await == PARTITIONS as i32 },
    )
    .await;
    // Each replica server found its address on the one interface it has.
    let routing = client.query_config("temp").await.unwrap();
    let hosts_of = |a: &pegasus_protocol::types::RpcAddress| {
        a.socket_addr()
            .and_then(|s: SocketAddrV4| (1..=3).find(|&i| *s.ip() == net.addr(i)))
    };
    for p in &routing.partitions {
        assert!(hosts_of(&p.primary).is_some(), "{:?}", p.primary);
    }
    let table = Arc::new(client.open_table("temp").await.unwrap());
    let history = History::start(&table, 12, 4);
    let watch = LeaderWatch::start(metas.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 1. The leader meta loses ZooKeeper.
    let leader = leaders(&metas);
    assert_eq!(leader.len(), 1, "one leader: {leader:?}");
    let l = metas.iter().position(|m| *m == leader[0]).unwrap() + 1;
    net.block_port(l, ZK_PORT);
    let cut = Instant::now();
    let taken_over = eventually(Duration::from_secs(30), "another meta leads", || async {
        let now = leaders(&metas);
        now.len() == 1 && now[0] != metas[l - 1]
    })
    .await;
    // Writes go on (or resume) with the new leader.
    let zk_stall = stall_since(
        &history,
        cut,
        Duration::from_secs(30),
        "every writer writes again",
    )
    .await;
    net.unblock_port(l, ZK_PORT);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 2. A host with a primary, whose meta does not lead, is cut off from everyone.
    let leader = leaders(&metas);
    let leading = metas.iter().position(|m| leader.contains(m)).map(|i| i + 1);
    let routing = client.query_config("temp").await.unwrap();
    let cut_host = routing
        .partitions
        .iter()
        .filter_map(|p| hosts_of(&p.primary))
        .find(|h| Some(*h) != leading && *h != 1)
        .expect("a primary on a host without ZooKeeper or the leader");
    net.isolate(cut_host);
    let cut = Instant::now();
    let partition_stall = stall_since(
        &history,
        cut,
        Duration::from_secs(60),
        "every writer writes again without the cut host",
    )
    .await;

    // 3. The network heals: the host's copies come back.
    net.rejoin(cut_host);
    let healed = Instant::now();
    let back = eventually(
        Duration::from_secs(90),
        "fully healthy after the heal",
        || async { fully_healthy(&client, "temp").await == PARTITIONS as i32 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let heal_stall = history.stall(healed, Instant::now());
    let verdict = history.finish(&table).await;
    let most_leaders = watch.most();
    println!(
        "three hosts: healthy {started:?} after start; leader meta (host {l}) cut from \
         ZooKeeper: another led {taken_over:?} after, longest write stall {zk_stall:?}; host \
         {cut_host} cut off: longest write stall {partition_stall:?} (lease {LEASE_S} s + grace \
         {GRACE_S} s, client timeout {CLIENT_TIMEOUT_S} s); healed: fully healthy {back:?} after, \
         longest write stall {heal_stall:?}; {} writes, {} reads, lost {}, stale {}; \
         most metas leading at once: {most_leaders}",
        verdict.acked,
        verdict.reads,
        verdict.lost.len(),
        verdict.stale.len()
    );
    assert!(verdict.lost.is_empty(), "lost: {:?}", verdict.lost);
    assert!(
        verdict.stale.is_empty(),
        "stale: {:?}",
        &verdict.stale[..verdict.stale.len().min(10)]
    );
    assert_eq!(most_leaders, 1, "two metas acted as leader at once");
    let bound = Duration::from_secs(LEASE_S + GRACE_S);
    assert!(
        partition_stall <= bound,
        "service back {partition_stall:?} after the cut, past lease + grace"
    );
    // The ZooKeeper cut: the new leader needs the old one's session to expire first.
    let bound = bound + Duration::from_millis(SESSION_TIMEOUT_MS);
    assert!(
        zk_stall <= bound,
        "service back {zk_stall:?} after the leader lost ZooKeeper"
    );
    drop(std::mem::take(procs));
}
