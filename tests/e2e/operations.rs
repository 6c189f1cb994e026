use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use pegasus_client::ClientError;
use pegasus_client::{MultiGetOptions, ScanOptions};
use pegasus_protocol::types::{Blob, Mutate, cas_check_type, filter_type, mutate_operation};

use pegasus_tests::cluster::{eventually, write_all};
use pegasus_tests::harness::Harness;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_key_operations_and_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path(), 8).await;
    let t = h.client().open_table("temp").await.unwrap();
    assert_eq!(t.partition_count(), 8);

    t.set(b"hk", b"sk", b"v1", None).await.unwrap();
    assert_eq!(t.get(b"hk", b"sk").await.unwrap(), Some(b("v1")));
    assert!(t.exist(b"hk", b"sk").await.unwrap());
    assert_eq!(t.ttl(b"hk", b"sk").await.unwrap(), Some(-1));
    t.del(b"hk", b"sk").await.unwrap();
    assert_eq!(t.get(b"hk", b"sk").await.unwrap(), None);
    assert!(!t.exist(b"hk", b"sk").await.unwrap());
    assert_eq!(t.ttl(b"hk", b"sk").await.unwrap(), None);

    // An empty value and binary keys are values like any other.
    t.set(b"\x00\xff", b"", b"", None).await.unwrap();
    assert_eq!(t.get(b"\x00\xff", b"").await.unwrap(), Some(Bytes::new()));

    t.set(b"hk", b"ttl", b"soon", Some(Duration::from_secs(1)))
        .await
        .unwrap();
    let ttl = t.ttl(b"hk", b"ttl").await.unwrap().unwrap();
    assert!((0..=1).contains(&ttl), "{ttl}");
    // Expired data is never returned: poll until the second ends.
    eventually(Duration::from_secs(5), "the value expires", || async {
        t.get(b"hk", b"ttl").await.unwrap().is_none()
    })
    .await;
    assert_eq!(t.ttl(b"hk", b"ttl").await.unwrap(), None);

    let long = vec![b'x'; 65535];
    assert!(matches!(
        t.set(&long, b"s", b"v", None).await,
        Err(ClientError::InvalidArgument(_))
    ));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_key_operations() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path(), 4).await;
    let t = h.client().open_table("temp").await.unwrap();
    let kvs: Vec<(Bytes, Bytes)> = (0..10)
        .map(|i| (b(&format!("s{i}")), b(&format!("v{i}"))))
        .collect();
    t.multi_set(b"user", &kvs, None).await.unwrap();
    assert_eq!(t.sort_key_count(b"user").await.unwrap(), 10);

    let (all, complete) = t
        .multi_get(b"user", &[], &MultiGetOptions::default())
        .await
        .unwrap();
    assert!(complete);
    assert_eq!(all.len(), 10);
    let (some, _) = t
        .multi_get(
            b"user",
            &[b("s1"), b("s9"), b("missing")],
            &MultiGetOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(some, vec![(b("s1"), b("v1")), (b("s9"), b("v9"))]);

    let range = MultiGetOptions {
        stop_inclusive: true,
        ..Default::default()
    };
    let (r, _) = t
        .multi_get_range(b"user", b"s2", b"s4", &range)
        .await
        .unwrap();
    assert_eq!(
        r.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        [b("s2"), b("s3"), b("s4")]
    );
    let reverse = MultiGetOptions {
        reverse: true,
        max_kv_count: 2,
        ..Default::default()
    };
    let (r, complete) = t
        .multi_get_range(b"user", b"", b"", &reverse)
        .await
        .unwrap();
    assert_eq!(
        r.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        [b("s9"), b("s8")]
    );
    assert!(!complete, "a limit stops the read early");
    let filtered = MultiGetOptions {
        sort_key_filter_type: filter_type::MATCH_POSTFIX,
        sort_key_filter_pattern: b("7"),
        no_value: true,
        ..Default::default()
    };
    let (r, _) = t
        .multi_get_range(b"user", b"", b"", &filtered)
        .await
        .unwrap();
    assert_eq!(r, vec![(b("s7"), Bytes::new())]);

    assert_eq!(t.multi_del(b"user", &[b("s0"), b("s1")]).await.unwrap(), 2);
    assert_eq!(t.sort_key_count(b"user").await.unwrap(), 8);

    for i in 0..20 {
        t.set(
            format!("h{i}").as_bytes(),
            b"s",
            format!("{i}").as_bytes(),
            None,
        )
        .await
        .unwrap();
    }
    let keys: Vec<(Bytes, Bytes)> = (0..25).map(|i| (b(&format!("h{i}")), b("s"))).collect();
    let found = t.batch_get(&keys).await.unwrap();
    assert_eq!(found.len(), 20, "h20..h24 do not exist");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomic_operations() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path(), 4).await;
    let t = h.client().open_table("temp").await.unwrap();
    assert_eq!(t.incr(b"c", b"n", 5, None).await.unwrap(), 5);
    assert_eq!(t.incr(b"c", b"n", -7, None).await.unwrap(), -2);
    t.set(b"c", b"text", b"abc", None).await.unwrap();
    assert!(matches!(
        t.incr(b"c", b"text", 1, None).await,
        Err(ClientError::Storage { status: 4 })
    ));

    let failed = t
        .check_and_set(
            b"c",
            b"n",
            cas_check_type::VALUE_INT_GREATER,
            b"0",
            b"flag",
            b"on",
            None,
        )
        .await
        .unwrap();
    assert!(!failed.set);
    assert_eq!(failed.check_value, Some(b("-2")));
    assert_eq!(t.get(b"c", b"flag").await.unwrap(), None);
    let passed = t
        .check_and_set(
            b"c",
            b"n",
            cas_check_type::VALUE_INT_LESS,
            b"0",
            b"flag",
            b"on",
            None,
        )
        .await
        .unwrap();
    assert!(passed.set);
    assert_eq!(t.get(b"c", b"flag").await.unwrap(), Some(b("on")));

    let mutations = vec![
        Mutate {
            operation: mutate_operation::PUT,
            sort_key: Blob::from("m1"),
            value: Blob::from("x"),
            set_expire_ts_seconds: 0,
        },
        Mutate {
            operation: mutate_operation::DELETE,
            sort_key: Blob::from("flag"),
            ..Default::default()
        },
    ];
    let outcome = t
        .check_and_mutate(
            b"c",
            b"m1",
            cas_check_type::VALUE_NOT_EXIST,
            b"",
            mutations.clone(),
        )
        .await
        .unwrap();
    assert!(outcome.set);
    assert_eq!(t.get(b"c", b"m1").await.unwrap(), Some(b("x")));
    assert_eq!(t.get(b"c", b"flag").await.unwrap(), None);
    assert!(
        !t.check_and_mutate(b"c", b"m1", cas_check_type::VALUE_NOT_EXIST, b"", mutations)
            .await
            .unwrap()
            .set
    );

    // Concurrent increments of one key: each is applied exactly once, in one order.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                t.incr(b"c", b"shared", 1, None).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(t.get(b"c", b"shared").await.unwrap(), Some(b("200")));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_across_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path(), 8).await;
    let t = h.client().open_table("temp").await.unwrap();
    let mut expected = BTreeSet::new();
    for i in 0..50 {
        let hk = format!("hash{i}");
        let kvs: Vec<(Bytes, Bytes)> = (0..7)
            .map(|j| (b(&format!("sort{j}")), b(&format!("{i}-{j}"))))
            .collect();
        t.multi_set(hk.as_bytes(), &kvs, None).await.unwrap();
        for j in 0..7 {
            expected.insert((hk.clone(), format!("sort{j}")));
        }
    }
    // A full scan in small batches, split three ways, sees every pair exactly once.
    let mut seen = BTreeSet::new();
    for mut scanner in t.full_scan(
        3,
        ScanOptions {
            batch_size: 10,
            ..Default::default()
        },
    ) {
        while let Some((hk, sk, v)) = scanner.next().await.unwrap() {
            let pair = (
                String::from_utf8(hk.to_vec()).unwrap(),
                String::from_utf8(sk.to_vec()).unwrap(),
            );
            assert!(v.starts_with(pair.0.trim_start_matches("hash").as_bytes()));
            assert!(seen.insert(pair), "duplicate");
        }
    }
    assert_eq!(seen, expected);

    // A hash scan of one hash key, with a sort-key range.
    let mut scanner = t
        .hash_scan(
            b"hash7",
            b"sort2",
            b"sort5",
            ScanOptions {
                batch_size: 2,
                ..Default::default()
            },
        )
        .unwrap();
    let mut sorts = Vec::new();
    while let Some((hk, sk, _)) = scanner.next().await.unwrap() {
        assert_eq!(&hk[..], b"hash7");
        sorts.push(String::from_utf8(sk.to_vec()).unwrap());
    }
    assert_eq!(sorts, ["sort2", "sort3", "sort4"]);

    // Filters and an early close.
    let options = ScanOptions {
        hash_key_filter_type: filter_type::MATCH_PREFIX,
        hash_key_filter_pattern: b("hash4"),
        batch_size: 3,
        ..Default::default()
    };
    let mut count = 0;
    for mut scanner in t.full_scan(1, options) {
        while scanner.next().await.unwrap().is_some() {
            count += 1;
        }
    }
    assert_eq!(count, 7 * 11, "hash4 and hash40..hash49");
    let mut early = t
        .hash_scan(
            b"hash1",
            b"",
            b"",
            ScanOptions {
                batch_size: 2,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(early.next().await.unwrap().is_some());
    early.close().await.unwrap();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_restart_through_plog_replay() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path(), 4).await;
    let t = h.client().open_table("temp").await.unwrap();
    write_all(&t, "k", 200).await;
    t.del(b"k7", b"s").await.unwrap();
    h.stop().await;
    // Replicas are found again on the data dirs and their logs replayed.
    let h = Harness::start(dir.path(), 4).await;
    assert_eq!(h.loaded, 4, "replicas found on disk");
    let t = h.client().open_table("temp").await.unwrap();
    for i in 0..200 {
        let expected = (i != 7).then(|| b(&format!("v{i}")));
        assert_eq!(
            t.get(format!("k{i}").as_bytes(), b"s").await.unwrap(),
            expected,
            "k{i}"
        );
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_this_node_does_not_hold_is_refused_with_a_routing_error() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(dir.path(), 2).await;
    let client = h.client();
    let meta = pegasus_protocol::frame::RequestMeta {
        app_id: 1,
        partition_index: 9,
        ..Default::default()
    };
    let key = pegasus_protocol::key::encode_key(b"h", b"s").unwrap();
    let err = client
        .call::<_, pegasus_protocol::types::ReadResponse>(
            std::net::SocketAddr::V4(h.replica),
            meta,
            pegasus_protocol::codes::rpc::GET,
            &pegasus_protocol::types::Args(Blob::from(key)),
            Duration::from_secs(2),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Server(pegasus_protocol::codes::ErrorCode::ObjectNotFound)
        ),
        "{err}"
    );
    assert!(err.needs_new_route());
    assert!(matches!(
        client.open_table("nope").await,
        Err(ClientError::NoTable(_))
    ));
    h.stop().await;
}

/// Regression guard: the client resent `incr`, `check_and_set` and `check_and_mutate` after a
/// lost answer, so one call could apply twice. A replica that reads each request and closes the
/// connection without answering sees a non-idempotent write once, and a read many times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_may_have_been_applied_is_not_sent_again_unless_idempotent() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let replica = match listener.local_addr().unwrap() {
        std::net::SocketAddr::V4(a) => a,
        std::net::SocketAddr::V6(_) => unreachable!("bound on IPv4"),
    };
    let received = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            if socket.read(&mut buf).await.is_ok_and(|n| n > 0) {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            // Dropped: the request was read, the answer never comes.
        }
    });
    let routing = Arc::new(pegasus_tests::harness::Routing {
        table: "temp".into(),
        app_id: 1,
        partition_count: 1,
        replica,
    });
    let (meta, _stop) = pegasus_tests::harness::serve(routing, 0).await;
    let mut options = pegasus_client::ClientOptions::new(vec![std::net::SocketAddr::V4(meta)]);
    options.timeout = Duration::from_secs(2);
    let table = pegasus_client::Client::new(options)
        .open_table("temp")
        .await
        .unwrap();

    let incr = table.incr(b"h", b"counter", 1, None).await;
    assert!(
        incr.as_ref().is_err_and(ClientError::maybe_applied),
        "{incr:?}"
    );
    assert_eq!(received.load(Ordering::SeqCst), 1, "incr was sent once");

    received.store(0, Ordering::SeqCst);
    assert!(table.get(b"h", b"s").await.is_err());
    assert!(received.load(Ordering::SeqCst) > 1, "a read is retried");
}
