//! What operators watch: every role's `/metrics` (checked by promtool, counters rising with
//! traffic), Pegasus's HTTP API on the metas (JSON shapes, argument rules, followers
//! redirecting), and the status page in a real browser.

use std::net::SocketAddr;
use std::time::Duration;

use pegasus_protocol::codes::rpc;
use pegasus_protocol::types::{ListAppsRequest, ListAppsResponse};
use pegasus_tests::cluster::{TestCluster, check_all, eventually, write_all};
use pegasus_tests::http::{self, Answer, metric};
use pegasus_tools::onebox::Node;

/// `GET path` from `addr`, which must answer.
fn get(addr: SocketAddr, path: &str) -> Answer {
    http::get(addr, path).unwrap_or_else(|| panic!("no answer from {addr}{path}"))
}

/// The leader's and a follower's addresses.
async fn metas(cluster: &TestCluster) -> (SocketAddr, SocketAddr) {
    let addrs = cluster.onebox.options.meta_addrs();
    let leader = cluster.leader().await;
    (addrs[leader - 1], addrs[2 - leader])
}

/// Asserts that `keys` appear in `json` in this order (Pegasus writes them in a fixed order).
fn in_order(json: &str, keys: &[&str]) {
    let mut at = 0;
    for k in keys {
        let needle = format!("\"{k}\":");
        let found = json[at..]
            .find(&needle)
            .unwrap_or_else(|| panic!("no {needle} after byte {at} in {json}"));
        at += found + needle.len();
    }
}

/// Every role's `/metrics`: the families named in the README, each accepted by promtool, and
/// the request counters rising with traffic; the collector's availability among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_serves_metrics_that_promtool_accepts_and_counters_rise() {
    let cluster = TestCluster::start_with_collector(2, 3);
    cluster.healthy().await;
    let table = cluster.client().open_table("temp").await.unwrap();
    write_all(&table, "m", 100).await;
    check_all(&table, "m", 100).await;
    let replicas: Vec<SocketAddr> = (1..=3)
        .map(|j| SocketAddr::V4(cluster.replica_addr(j)))
        .collect();
    let scrape = |addrs: &[SocketAddr]| -> Vec<String> {
        addrs.iter().map(|a| get(*a, "/metrics").body).collect()
    };
    let sum = |bodies: &[String], name: &str, labels: &[&str]| -> f64 {
        bodies.iter().filter_map(|b| metric(b, name, labels)).sum()
    };
    let before = scrape(&replicas);
    let temp = "table=\"temp\"";
    let puts = sum(
        &before,
        "pegasus_replica_requests_total",
        &[temp, "op=\"put\""],
    );
    let gets = sum(
        &before,
        "pegasus_replica_requests_total",
        &[temp, "op=\"get\""],
    );
    assert!(puts >= 100.0 && gets >= 100.0, "puts {puts}, gets {gets}");
    for (name, labels) in [
        (
            "pegasus_replica_request_latency_seconds_count",
            &[temp, "op=\"put\""][..],
        ),
        ("pegasus_replica_written_bytes_total", &[temp][..]),
        ("pegasus_replica_read_bytes_total", &[temp][..]),
        ("pegasus_plog_appends_total", &[][..]),
        ("pegasus_plog_appended_bytes_total", &[][..]),
        ("pegasus_plog_fsync_latency_seconds_count", &[][..]),
        ("pegasus_replica_prepare_latency_seconds_count", &[][..]),
        ("pegasus_rocksdb_memtable_bytes", &[temp][..]),
    ] {
        assert!(
            sum(&before, name, labels) > 0.0,
            "{name}{labels:?} is 0 or missing in\n{}",
            before[0]
        );
    }
    // Every partition (of `temp` and of the collector's `stat`) has one primary.
    let apps: ListAppsResponse = cluster
        .admin(rpc::LIST_APPS, ListAppsRequest::default())
        .await;
    let partitions: i32 = apps.infos.iter().map(|a| a.partition_count).sum();
    assert_eq!(
        sum(&before, "pegasus_replicas", &["replica_role=\"primary\""]),
        f64::from(partitions)
    );
    assert!(
        before
            .iter()
            .all(|b| b.contains("pegasus_rocksdb_sst_bytes")
                && b.contains("pegasus_rocksdb_block_cache_hits_total")
                && b.contains("cluster=\"onebox\",role=\"replica\""))
    );
    // More traffic: the counters rise.
    check_all(&table, "m", 100).await;
    let after = scrape(&replicas);
    assert!(
        sum(
            &after,
            "pegasus_replica_requests_total",
            &[temp, "op=\"get\""]
        ) >= gets + 100.0
    );

    let (leader, follower) = metas(&cluster).await;
    let lead = get(leader, "/metrics").body;
    let follow = get(follower, "/metrics").body;
    assert_eq!(
        metric(&lead, "pegasus_meta_leader", &[]),
        Some(1.0),
        "{lead}"
    );
    assert_eq!(
        metric(&follow, "pegasus_meta_leader", &[]),
        Some(0.0),
        "{follow}"
    );
    assert_eq!(
        metric(&lead, "pegasus_meta_nodes", &["state=\"alive\""]),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &lead,
            "pegasus_meta_partitions",
            &[temp, "health=\"healthy\""]
        ),
        Some(4.0),
        "{lead}"
    );
    assert!(
        metric(&lead, "pegasus_meta_configuration_changes_total", &[temp]).unwrap_or(0.0) > 0.0
    );
    assert!(
        metric(
            &lead,
            "pegasus_meta_zookeeper_latency_seconds_count",
            &["op=\"write\""]
        )
        .unwrap_or(0.0)
            > 0.0
    );

    // The collector: rounds of set-then-get on every partition of `stat`, all passing.
    let collector = SocketAddr::from(([127, 0, 0, 1], cluster.onebox.options.collector_port));
    let mut body = String::new();
    eventually(Duration::from_secs(30), "two detection rounds", || {
        body = get(collector, "/metrics").body;
        let rounds = metric(&body, "pegasus_collector_detect_rounds_total", &[]);
        std::future::ready(rounds.is_some_and(|r| r >= 2.0))
    })
    .await;
    assert_eq!(
        metric(
            &body,
            "pegasus_collector_available_ratio",
            &["table=\"stat\""]
        ),
        Some(1.0),
        "{body}"
    );
    assert!(metric(&body, "pegasus_collector_detect_total", &[]).is_some_and(|n| n >= 8.0));
    assert_eq!(
        metric(
            &body,
            "pegasus_collector_partition_available",
            &["partition=\"3\""]
        ),
        Some(1.0)
    );

    // promtool finds nothing wrong with any of them.
    for (role, text) in [
        ("replica", &after[0]),
        ("meta leader", &lead),
        ("meta follower", &follow),
        ("collector", &body),
    ] {
        let problems = http::promtool_problems(text);
        assert!(problems.is_empty(), "{role}: {problems}\n{text}");
        assert!(
            text.contains("# HELP ") && text.contains("# TYPE "),
            "{role}"
        );
    }
    let answer = get(replicas[0], "/metrics");
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );

    // The shell's `server_stat` and `app_stat`, read from those metrics while reads go on.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reading = {
        let table = table.clone();
        let stop = std::sync::Arc::clone(&stop);
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                check_all(&table, "m", 100).await;
            }
        })
    };
    let mut shell = pegasus_tools::shell::Shell::new(cluster.onebox.options.meta_addrs());
    let stat = shell.run_line("server_stat -j").await.unwrap().unwrap();
    let stat: serde_json::Value = serde_json::from_str(&stat).unwrap();
    let nodes = stat.as_object().unwrap();
    assert_eq!(nodes.len(), 3, "{stat}");
    let qps: f64 = nodes
        .values()
        .map(|n| n["get_qps"].as_str().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(qps > 0.0, "{stat}");
    assert!(
        nodes
            .values()
            .all(|n| n["replicas"].as_str().is_some_and(|r| r != "0"))
    );
    let apps = shell
        .run_line("app_stat -a temp -j")
        .await
        .unwrap()
        .unwrap();
    let apps: serde_json::Value = serde_json::from_str(&apps).unwrap();
    let get_qps: f64 = apps["app_stat"]["temp"]["GET"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(get_qps > 0.0, "{apps}");
    assert!(
        apps["app_stat"].get("stat").is_none(),
        "only the table asked for"
    );
    let text = shell.run_line("app_stat").await.unwrap().unwrap();
    assert!(
        text.starts_with("app_name") && text.contains("\ntemp "),
        "{text}"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reading.await.unwrap();
}

/// Pegasus's HTTP API on the metas: the JSON shapes (keys in Pegasus's order, every value a
/// string), the argument rules, and followers redirecting to the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_meta_http_api_answers_as_pegasus_does() {
    let cluster = TestCluster::start(2, 3, 4);
    cluster.healthy().await;
    let (leader, follower) = metas(&cluster).await;
    let json = |a: &Answer| -> serde_json::Value {
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.header("content-type"), Some("text/plain"));
        assert!(a.body.ends_with("}\n"), "{:?}", a.body);
        serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{e}: {}", a.body))
    };

    let a = get(leader, "/meta/cluster");
    let c = json(&a);
    in_order(
        &a.body,
        &[
            "meta_servers",
            "primary_meta_server",
            "zookeeper_hosts",
            "zookeeper_root",
            "meta_function_level",
            "balance_operation_count",
            "primary_replica_count_stddev",
            "total_replica_count_stddev",
        ],
    );
    let metas: Vec<String> = cluster
        .onebox
        .options
        .meta_addrs()
        .iter()
        .map(|m| m.to_string())
        .collect();
    assert_eq!(c["meta_servers"], metas.join(","));
    assert_eq!(c["primary_meta_server"], leader.to_string());
    assert_eq!(c["meta_function_level"], "steady");
    assert!(
        c["balance_operation_count"]
            .as_str()
            .unwrap()
            .starts_with("move_pri=")
    );

    let a = get(leader, "/meta/nodes?detail");
    let n = json(&a);
    in_order(
        &a.body,
        &[
            "details",
            "summary",
            "total_node_count",
            "alive_node_count",
            "unalive_node_count",
        ],
    );
    let details = n["details"].as_object().unwrap();
    assert_eq!(details.len(), 3);
    for (addr, row) in details {
        assert_eq!(row["address"], addr.as_str());
        assert_eq!(row["status"], "ALIVE");
        assert!(row["replica_count"].is_string() && row["primary_count"].is_string());
    }
    in_order(
        &a.body,
        &[
            "address",
            "status",
            "replica_count",
            "primary_count",
            "secondary_count",
        ],
    );
    assert_eq!(n["summary"]["alive_node_count"], "3");
    let plain = json(&get(leader, "/meta/nodes"));
    assert!(
        plain["details"]
            .as_object()
            .unwrap()
            .values()
            .all(|r| r.get("replica_count").is_none())
    );

    let a = get(leader, "/meta/apps?detail");
    let apps = json(&a);
    in_order(
        &a.body,
        &[
            "general_info",
            "app_id",
            "status",
            "app_name",
            "app_type",
            "partition_count",
            "replica_count",
            "is_stateful",
            "create_time",
            "drop_time",
            "drop_expire",
            "envs_count",
            "healthy_info",
            "summary",
            "total_app_count",
            "fully_healthy_app_count",
        ],
    );
    let temp = apps["general_info"]
        .as_object()
        .unwrap()
        .values()
        .find(|a| a["app_name"] == "temp")
        .unwrap();
    assert_eq!(temp["status"], "AVAILABLE");
    assert_eq!(temp["partition_count"], "4");
    assert_eq!(temp["replica_count"], "3");
    assert_eq!(temp["drop_time"], "-");
    let created = temp["create_time"].as_str().unwrap();
    assert_eq!(created.len(), "2019-07-30 14:04:26.000".len(), "{created}");
    let tables = apps["general_info"].as_object().unwrap().len();
    assert_eq!(
        apps["summary"]["total_app_count"],
        tables.to_string().as_str()
    );
    assert_eq!(apps["healthy_info"].as_object().unwrap().len(), tables);
    assert!(
        json(&get(leader, "/meta/apps"))
            .get("healthy_info")
            .is_none()
    );

    let a = get(leader, "/meta/app?name=temp&detail");
    let app = json(&a);
    in_order(
        &a.body,
        &[
            "general",
            "app_name",
            "app_id",
            "partition_count",
            "max_replica_count",
            "replicas",
            "nodes",
            "healthy",
        ],
    );
    let replicas = app["replicas"].as_object().unwrap();
    assert_eq!(replicas.len(), 4);
    for (pidx, r) in replicas {
        assert_eq!(r["pidx"], pidx.as_str());
        assert_eq!(r["replica_count"], "3/3");
        let secondaries = r["secondaries"].as_str().unwrap();
        assert!(
            secondaries.starts_with('[')
                && secondaries.ends_with(']')
                && !secondaries.contains(' ')
        );
    }
    assert_eq!(app["nodes"]["total"]["total"], "12");
    assert_eq!(app["healthy"]["fully_healthy_partition_count"], "4");
    assert_eq!(
        get(leader, "/meta/app?name=temp").body,
        format!(
            "{{\"general\":{{\"app_name\":\"temp\",\"app_id\":\"{}\",\"partition_count\":\"4\",\"max_replica_count\":\"3\"}}}}\n",
            app["general"]["app_id"].as_str().unwrap()
        )
    );

    // Argument rules and errors, as Pegasus answers them.
    let a = get(leader, "/meta/app?name=nope");
    assert_eq!(
        (a.status, a.body.as_str()),
        (404, "table not found: \"nope\"")
    );
    assert_eq!(get(leader, "/meta/app?name=temp&detailed").status, 400);
    assert_eq!(get(leader, "/meta/apps?bogus=1").status, 400);
    assert_eq!(get(leader, "/meta/nope").status, 404);

    // A follower sends the leader's paths to the leader.
    let a = get(follower, "/meta/app?name=temp&detail");
    assert_eq!(a.status, 307);
    assert_eq!(
        a.header("location"),
        Some(format!("http://{leader}/meta/app?name=temp&detail=").as_str())
    );
    assert_eq!(a.body, "");
    assert_eq!(
        get(follower, "/meta/cluster").header("location"),
        Some(format!("http://{leader}/meta/cluster").as_str())
    );
    // Arguments are checked before the redirect.
    assert_eq!(get(follower, "/meta/nodes?x").status, 400);

    // What every server answers itself.
    for addr in [leader, follower, SocketAddr::V4(cluster.replica_addr(1))] {
        let v = json(&get(addr, "/version"));
        assert_eq!(v["Version"], env!("CARGO_PKG_VERSION"));
        assert!(v["GitCommit"].is_string());
        let t = json(&get(addr, "/recentStartTime"));
        let t = t["RecentStartTime"].as_str().unwrap();
        assert!(
            t.len() == 19 && t.as_bytes()[4] == b'-' && t.as_bytes()[13] == b':',
            "{t}"
        );
    }
}

/// The status page in a real (headless) browser: every node and table, one cell per
/// partition coloured by health; a node stopped shows dead; a replica server's page shows its
/// replicas. A screenshot is kept under `<target>/test-artifacts/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_cluster_in_a_real_browser() {
    let cluster = TestCluster::start_with_collector(2, 3);
    cluster.healthy().await;
    let (leader, follower) = metas(&cluster).await;
    let artifacts = pegasus_tests::bins::target_dir().join("test-artifacts");
    let dom = tokio::task::spawn_blocking(move || {
        // Loaded from the follower: it redirects the browser to the leader.
        http::chromium_dom(
            &format!("http://{follower}/"),
            Some(&artifacts.join("status-page.png")),
        )
    })
    .await
    .unwrap();
    assert!(
        dom.contains(&format!("<b id=\"leader\">{leader}</b>")),
        "{dom}"
    );
    for j in 1..=3 {
        let node = cluster.replica_addr(j);
        assert!(
            dom.contains(&format!("<tr class=\"node alive\" data-node=\"{node}\">")),
            "node {node} alive in {dom}"
        );
    }
    assert!(
        dom.contains("<tr class=\"table\" data-table=\"temp\">"),
        "{dom}"
    );
    let map = dom
        .split("<div class=\"map\" data-table=\"temp\">")
        .nth(1)
        .and_then(|m| m.split("</div>\n").next())
        .unwrap_or_else(|| panic!("no map of temp in {dom}"));
    let cells = map.matches("class=\"cell healthy\"").count();
    assert_eq!(cells, 4, "one healthy cell per partition of temp: {map}");
    assert!(
        dom.contains("title=\"1.0 ballot"),
        "the cell tells its members: {dom}"
    );

    assert!(
        dom.contains("<tr class=\"table\" data-table=\"stat\">"),
        "{dom}"
    );
    // The collector's last round, as it reported it to the leader.
    let mut page = String::new();
    eventually(Duration::from_secs(30), "the collector reported", || {
        page = get(leader, "/").body;
        std::future::ready(
            page.contains("id=\"availability\" data-passed=\"4\" data-partitions=\"4\""),
        )
    })
    .await;
    assert!(page.contains("4 of 4 passed"), "{page}");

    // `stop_onebox_instance -r 1`: shown dead once the meta counts it dead.
    cluster.onebox.stop_node(Node::Replica(1)).unwrap();
    let dead = cluster.replica_addr(1);
    let mut dom = String::new();
    for _ in 0..60 {
        dom = tokio::task::spawn_blocking(move || {
            http::chromium_dom(&format!("http://{leader}/"), None)
        })
        .await
        .unwrap();
        if dom.contains(&format!("<tr class=\"node dead\" data-node=\"{dead}\">")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        dom.contains(&format!("<tr class=\"node dead\" data-node=\"{dead}\">")),
        "node {dead} dead in {dom}"
    );

    // A replica server's own page: its replicas and its role in each.
    let replica = cluster.replica_addr(2);
    let page = tokio::task::spawn_blocking(move || {
        http::chromium_dom(&format!("http://{replica}/"), None)
    })
    .await
    .unwrap();
    let rows = page.matches("<tr class=\"replica ").count();
    assert!(rows >= 4, "{page}");
    assert!(page.contains("<tr class=\"replica primary\""), "{page}");
}
