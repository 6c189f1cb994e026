//! Hostile bytes on every port (meta, replica, collector; RPC and HTTP share each): the server
//! stays up, answers what can be answered, closes what cannot, holds nothing for slow clients,
//! keeps its memory bounded, and a normal client is served throughout and afterwards.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pegasus_protocol::codes::rpc;
use pegasus_tests::cluster::{TestCluster, Writers, eventually, lost};
use pegasus_tests::hostile::{self, Rng};
use pegasus_tools::onebox::Node;

/// `[network] request_read_timeout_seconds` of the cluster under attack.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// What each process's resident set may grow by, from before the attacks to its peak (KiB).
const RSS_GROWTH_BOUND_KIB: u64 = 64 << 10;

/// The RPCs a port serves, to send with mistyped args.
fn rpc_names(node: Node) -> Vec<&'static str> {
    match node {
        Node::Meta(_) => vec![
            rpc::QUERY_CONFIG,
            rpc::BEACON,
            rpc::UPDATE_CONFIG,
            rpc::CREATE_APP,
            rpc::DROP_APP,
            rpc::RECALL_APP,
            rpc::LIST_APPS,
            rpc::LIST_NODES,
            rpc::CLUSTER_INFO,
            rpc::UPDATE_APP_ENV,
            rpc::CONTROL_META,
            rpc::QUERY_MANUAL_COMPACT,
            rpc::REPORT_AVAILABILITY,
            "RPC_NO_SUCH_THING",
        ],
        _ => vec![
            rpc::PUT,
            rpc::MULTI_PUT,
            rpc::REMOVE,
            rpc::MULTI_REMOVE,
            rpc::INCR,
            rpc::CHECK_AND_SET,
            rpc::CHECK_AND_MUTATE,
            rpc::GET,
            rpc::MULTI_GET,
            rpc::BATCH_GET,
            rpc::SORTKEY_COUNT,
            rpc::TTL,
            rpc::GET_SCANNER,
            rpc::SCAN,
            // (`CLEAR_SCANNER` is one-way: it has no answer to count.)
            "RPC_NO_SUCH_THING",
        ],
    }
}

/// Every attack on one port, each judged; `healthy` is asked while slow clients hold
/// connections.
fn attack(addr: SocketAddr, node: Node, app_id: i32, seed: u64, healthy: &dyn Fn()) {
    let started = std::time::Instant::now();
    let mut rng = Rng(seed);
    let wait = READ_TIMEOUT + Duration::from_secs(15);
    let name = node.name();

    // Random bytes, and bytes that start as a THFT header: each connection is closed.
    let seen = hostile::send_all(addr, &hostile::random_payloads(&mut rng, 64), false, wait);
    for (i, s) in seen.iter().enumerate() {
        assert!(s.closed, "{name}: random payload {i} left open");
    }

    // A frame cut short, then the client's end closed: closed, nothing answered.
    let frame = hostile::valid_put(app_id, "cut");
    for s in hostile::send_all(addr, &hostile::truncated_payloads(&frame), true, wait) {
        assert!(s.closed && s.answer.is_empty(), "{name}: {s:?}");
    }

    // Oversized claims: refused at the header, at once (long before the read timeout).
    for (i, s) in hostile::send_all(addr, &hostile::oversized_payloads(), false, wait)
        .iter()
        .enumerate()
    {
        assert!(s.closed, "{name}: oversized header {i} left open");
        assert!(
            s.after < READ_TIMEOUT,
            "{name}: oversized header {i} read on: {s:?}"
        );
    }

    // A body shorter than its header says: the connection is held until the read timeout,
    // no longer, and nothing is answered.
    let s = hostile::send(addr, &hostile::short_body(app_id), false, wait);
    assert!(s.closed && s.answer.is_empty(), "{name}: {s:?}");
    assert!(
        s.after >= READ_TIMEOUT - Duration::from_millis(200),
        "{name}: {s:?}"
    );

    // Envelopes that lie (a name of 2 GiB, a reply where a call belongs, a bad CRC): closed.
    for (i, s) in hostile::send_all(addr, &hostile::lying_payloads(app_id), false, wait)
        .iter()
        .enumerate()
    {
        assert!(s.closed, "{name}: lying frame {i} left open");
    }

    // Args of the wrong Thrift types: every request answered with an error name (or an empty
    // default taken as such), the connection kept.
    let (requests, n) = hostile::mistyped_requests(&rpc_names(node), app_id);
    let mut answered = 0;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(&mut stream, &requests).unwrap();
    let mut bytes = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while answered < n && std::time::Instant::now() < deadline {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 65536];
        if let Ok(k) = std::io::Read::read(&mut stream, &mut buf) {
            assert!(
                k > 0,
                "{name}: closed after {answered} of {n} mistyped requests"
            );
            bytes.extend_from_slice(&buf[..k]);
        }
        answered = hostile::count_answers(&bytes).unwrap_or(answered);
    }
    assert_eq!(answered, n, "{name}: mistyped requests answered");
    hostile::count_answers(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));

    // HTTP junk: each a 4xx (404 for paths nothing serves), or closed when it is not HTTP.
    for (i, s) in hostile::send_all(addr, &hostile::http_junk(), false, wait)
        .iter()
        .enumerate()
    {
        assert!(s.closed, "{name}: HTTP junk {i} left open");
        let head = String::from_utf8_lossy(&s.answer[..s.answer.len().min(12)]).into_owned();
        assert!(
            s.answer.is_empty() || head.starts_with("HTTP/1.1 4"),
            "{name}: HTTP junk {i} answered {head:?}"
        );
        // A complete (or overlong) head is answered.
        if !(5..7).contains(&i) {
            assert!(
                head.starts_with("HTTP/1.1 4"),
                "{name}: HTTP junk {i} not answered"
            );
        }
    }

    // Slowloris: 200 connections trickling a byte every 300 ms are all closed within the read
    // timeout (and a bit), while the others are served.
    eprintln!(
        "{name}: frames and HTTP junk judged ({:.1?} in)",
        started.elapsed()
    );
    let held = hostile::slowloris(addr, 200, Duration::from_millis(300), wait, healthy)
        .unwrap_or_else(|| panic!("{name}: slow clients still held after {wait:?}"));
    eprintln!("{name}: 200 slow clients closed within {held:.1?}");

    // Churn: 10,000 connections opened and closed.
    let took = hostile::churn(addr, 10_000, 1);
    eprintln!("{name}: 10,000 connects and disconnects in {took:.1?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bytes_on_every_port_leave_every_role_serving() {
    let _alone = pegasus_tests::cluster::HEAVY.lock().await;
    let cluster = TestCluster::start_tweaked(1, 1, 4, &|o| {
        o.collector = true;
        for (k, v) in [
            ("request_read_timeout_seconds", "2"),
            ("conn_idle_timeout_seconds", "5"),
        ] {
            o.extra_config.push(("network".into(), k.into(), v.into()));
        }
    });
    cluster.healthy().await;
    let table = Arc::new(cluster.client().open_table("temp").await.unwrap());
    let app_id = table.app_id();
    // A steady client: two writers, a write each every 5 ms.
    let writers = Writers::paced(&table, 2, "calm", Duration::from_millis(5));
    let addr = |node: Node| SocketAddr::from(([127, 0, 0, 1], cluster.onebox.port(node)));
    let nodes = [Node::Replica(1), Node::Meta(1), Node::Collector];
    let pids: Vec<i32> = nodes
        .iter()
        .map(|n| cluster.onebox.pid(*n).expect("running"))
        .collect();
    let before: Vec<(u64, usize)> = pids
        .iter()
        .map(|p| (hostile::rss_kib(*p).0, hostile::open_fds(*p)))
        .collect();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| addr(*n)).collect();

    for (k, node) in nodes.iter().enumerate() {
        let acked = writers.count();
        let target = addrs[k];
        let health_addrs = addrs.clone();
        let node = *node;
        tokio::task::spawn_blocking(move || {
            attack(target, node, app_id, 1 + k as u64, &|| {
                // While slow clients hold connections, every role answers a new one.
                for a in &health_addrs {
                    let answer = pegasus_tests::http::get(*a, "/health")
                        .unwrap_or_else(|| panic!("{a}: /health unanswered under slowloris"));
                    assert_eq!(answer.status, 200, "{a}: {answer:?}");
                }
            })
        })
        .await
        .unwrap();
        // The normal client was served throughout.
        eventually(Duration::from_secs(30), "writes go on", || async {
            writers.count() > acked + 10
        })
        .await;
    }

    for (k, node) in nodes.iter().enumerate() {
        let name = node.name();
        assert_eq!(
            cluster.onebox.pid(*node),
            Some(pids[k]),
            "{name} is the same process"
        );
        let (rss, peak) = hostile::rss_kib(pids[k]);
        let (rss0, fds0) = before[k];
        eprintln!(
            "{name}: RSS {} MiB before, {} MiB after, peak {} MiB",
            rss0 >> 10,
            rss >> 10,
            peak >> 10
        );
        assert!(
            peak < rss0 + RSS_GROWTH_BOUND_KIB,
            "{name}: peak RSS {peak} KiB from {rss0} KiB"
        );
        // Every hostile connection is gone.
        eventually(
            Duration::from_secs(15),
            "hostile connections closed",
            || async { hostile::open_fds(pids[k]) <= fds0 + 8 },
        )
        .await;
    }
    // The meta's state is untouched: the level, the tables, the nodes.
    let cluster_json = pegasus_tests::http::get(addrs[1], "/meta/cluster")
        .unwrap()
        .body;
    assert!(
        cluster_json.contains("\"meta_function_level\":\"steady\""),
        "{cluster_json}"
    );
    let nodes_json = pegasus_tests::http::get(addrs[1], "/meta/nodes")
        .unwrap()
        .body;
    assert!(
        nodes_json.contains("\"alive_node_count\":\"1\""),
        "{nodes_json}"
    );
    let acked = writers.stop().await;
    assert!(
        lost(&table, &acked).await.is_empty(),
        "acknowledged writes lost"
    );
    eprintln!(
        "{} writes acknowledged during the attacks, 0 lost",
        acked.len()
    );
}
