//! Table environments reach the replicas with their configurations and do what Pegasus's do:
//! default TTL, throttling, denied requests, manual compaction.

use std::time::{Duration, Instant};

use pegasus_protocol::codes::ErrorCode;
use pegasus_protocol::types::*;
use pegasus_tests::cluster::{TestCluster, check_all, eventually, write_all};

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
    let within = Duration::from_secs(20);

    // default_ttl: a write without a TTL gets it, and expires.
    set_env(&client, "fx", "default_ttl", "3").await;
    eventually(within, "default_ttl taken up", || async {
        table.set(b"short", b"lived", b"v", None).await.unwrap();
        table.ttl(b"short", b"lived").await.unwrap() != Some(-1)
    })
    .await;
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
    eventually(Duration::from_secs(10), "the value expires", || async {
        table.get(b"short", b"lived").await.unwrap().is_none()
    })
    .await;
    del_env(&client, "fx", "default_ttl").await;

    // Write throttling, 5 a second for the table (6 for its one partition), rejecting.
    set_env(&client, "fx", "replica.write_throttling", "5*reject*0").await;
    let busy = |e: &pegasus_client::ClientError| {
        matches!(e, pegasus_client::ClientError::Server(ErrorCode::Busy))
    };
    eventually(within, "write throttling taken up", || async {
        match table.set(b"t", b"0", b"v", None).await {
            Ok(()) => false,
            Err(e) => {
                assert!(busy(&e), "{e}");
                true
            }
        }
    })
    .await;
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
    eventually(within, "deny taken up", || async {
        quick.set(b"d", b"0", b"v", None).await.is_err()
    })
    .await;
    assert_eq!(
        quick.get(b"k1", b"s").await.unwrap(),
        Some(pegasus_tests::cluster::b("v1"))
    );
    set_env(&client, "fx", "replica.deny_client_request", "timeout*all").await;
    eventually(within, "timeout*all taken up", || async {
        quick.get(b"k1", b"s").await.is_err()
    })
    .await;
    assert!(matches!(
        quick.get(b"k1", b"s").await,
        Err(pegasus_client::ClientError::Timeout)
    ));
    del_env(&client, "fx", "replica.deny_client_request").await;
    eventually(within, "deny lifted", || async {
        quick.set(b"d", b"0", b"v", None).await.is_ok()
    })
    .await;

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
    eventually(Duration::from_secs(30), "the compaction done", || async {
        let (progress, hint) = client.manual_compact_progress("fx").await.unwrap();
        if progress == 100 {
            assert!(hint.starts_with("3 of 3"), "{hint}");
        }
        progress == 100
    })
    .await;
    check_all(&table, "k", 20).await;
}
