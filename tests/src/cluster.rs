//! Whole clusters as processes: a real ZooKeeper, real metas and replicas started by the
//! onebox library, each test in its own folder with its own ports.
#![allow(missing_docs)]

use std::net::TcpListener;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pegasus_client::{Client, ClientOptions, Table};
use pegasus_protocol::codes::rpc;
use pegasus_protocol::frame::RequestMeta;
use pegasus_protocol::types::*;
use pegasus_tools::onebox::{Onebox, OneboxOptions};

/// A onebox in a temporary folder on free ports, stopped when dropped.
pub struct TestCluster {
    pub onebox: Onebox,
    _dir: tempfile::TempDir,
}

/// A create request for table `name`: `partitions` partitions of `replicas` copies.
pub fn create_request(
    name: &str,
    partitions: i32,
    replicas: i32,
) -> pegasus_protocol::types::CreateAppRequest {
    pegasus_protocol::types::CreateAppRequest {
        app_name: name.into(),
        options: pegasus_protocol::types::CreateAppOptions {
            partition_count: partitions,
            replica_count: replicas,
            app_type: "pegasus".into(),
            is_stateful: true,
            ..Default::default()
        },
    }
}

/// A base port with `n` free ports after it, below the kernel's ephemeral range (32768 and up):
/// a port there is never handed to an outgoing connection, so a node that is killed and
/// restarted gets its port back. Blocks are handed out in turn (tests run concurrently), from a
/// start that differs between processes, and checked free.
pub fn free_port_block(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const HIGH: u32 = 32_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let _ = NEXT.compare_exchange(
        0,
        LOW + (std::process::id() * 7919) % (HIGH - LOW),
        Ordering::AcqRel,
        Ordering::Acquire,
    );
    loop {
        let mut base = NEXT.fetch_add(u32::from(n) + 1, Ordering::AcqRel);
        if base + u32::from(n) >= HIGH {
            base = LOW + (base + u32::from(n)) % (HIGH - LOW);
            NEXT.store(base + u32::from(n) + 1, Ordering::Release);
        }
        let base = base as u16;
        // 22181 is `./run.sh start_onebox`'s ZooKeeper, which pypegasus3's fault suite starts.
        if (base..=base + n).contains(&22181) {
            continue;
        }
        let free = |p: u16| {
            TcpListener::bind(("0.0.0.0", p)).is_ok() && TcpListener::bind(("127.0.0.1", p)).is_ok()
        };
        if (0..=n).all(|i| free(base + i)) {
            return base;
        }
    }
}

impl TestCluster {
    pub fn start(metas: usize, replicas: usize, partitions: u32) -> TestCluster {
        Self::start_on_metas(free_port_block(metas as u16), metas, replicas, partitions)
    }

    /// A cluster with a collector too.
    pub fn start_with_collector(metas: usize, replicas: usize) -> TestCluster {
        Self::start_shaped(free_port_block(metas as u16), metas, replicas, 4, true)
    }

    /// As [`TestCluster::start`], with meta `i` on `meta_base_port + i`.
    pub fn start_on_metas(
        meta_base_port: u16,
        metas: usize,
        replicas: usize,
        partitions: u32,
    ) -> TestCluster {
        Self::start_shaped(meta_base_port, metas, replicas, partitions, false)
    }

    /// One meta and one replica whose plog is written but not fsynced.
    pub fn start_unsynced(partitions: u32) -> TestCluster {
        Self::start_full(free_port_block(1), 1, 1, partitions, false, &|o| {
            o.plog_force_flush = false;
        })
    }

    /// As [`TestCluster::start`], with the options changed by `tweak` first.
    pub fn start_tweaked(
        metas: usize,
        replicas: usize,
        partitions: u32,
        tweak: &dyn Fn(&mut OneboxOptions),
    ) -> TestCluster {
        let base = free_port_block(metas as u16);
        Self::start_full(base, metas, replicas, partitions, false, tweak)
    }

    /// As [`TestCluster::start_tweaked`], with the metas reaching ZooKeeper through a
    /// [`crate::proxy::SlowProxy`] (no delay until the test sets one), which it returns too.
    pub async fn behind_slow_zookeeper(
        metas: usize,
        replicas: usize,
        partitions: u32,
        tweak: impl Fn(&mut OneboxOptions) + Send + 'static,
    ) -> (TestCluster, crate::proxy::SlowProxy) {
        let zk_port = free_port_block(0);
        let proxy = crate::proxy::SlowProxy::start(free_port_block(0), zk_port).await;
        let proxy_port = proxy.port;
        let cluster = tokio::task::spawn_blocking(move || {
            TestCluster::start_tweaked(metas, replicas, partitions, &|o| {
                o.zk_port = zk_port;
                o.meta_zk_port = Some(proxy_port);
                tweak(o);
            })
        })
        .await
        .expect("the cluster starts");
        (cluster, proxy)
    }

    /// As [`TestCluster::start`], after `prepare` has seen the onebox folder (still empty), e.g.
    /// to mount a small file system where a node's data will be.
    pub fn start_prepared(
        metas: usize,
        replicas: usize,
        partitions: u32,
        prepare: &dyn Fn(&std::path::Path),
    ) -> TestCluster {
        let base = free_port_block(metas as u16);
        Self::start_full(base, metas, replicas, partitions, false, &|o| {
            prepare(&o.root)
        })
    }

    fn start_shaped(
        meta_base_port: u16,
        metas: usize,
        replicas: usize,
        partitions: u32,
        collector: bool,
    ) -> TestCluster {
        Self::start_full(
            meta_base_port,
            metas,
            replicas,
            partitions,
            collector,
            &|_| {},
        )
    }

    fn start_full(
        meta_base_port: u16,
        metas: usize,
        replicas: usize,
        partitions: u32,
        collector: bool,
        tweak: &dyn Fn(&mut OneboxOptions),
    ) -> TestCluster {
        let dir = tempfile::tempdir().unwrap();
        let mut options =
            OneboxOptions::new(dir.path().join("onebox"), crate::bins::pegasus_server());
        options.metas = metas;
        options.replicas = replicas;
        options.partitions = partitions;
        options.zk_port = free_port_block(0);
        options.meta_base_port = meta_base_port;
        options.replica_base_port = free_port_block(replicas as u16);
        options.fd_lease_seconds = 3;
        options.collector = collector;
        options.collector_port = free_port_block(0);
        std::fs::create_dir_all(&options.root).unwrap();
        tweak(&mut options);
        let onebox = Onebox::new(options);
        onebox.start().expect("onebox starts");
        TestCluster { onebox, _dir: dir }
    }

    pub fn client(&self) -> Client {
        let mut options = ClientOptions::new(self.onebox.options.meta_addrs());
        options.timeout = Duration::from_secs(20);
        Client::new(options)
    }

    pub async fn healthy(&self) {
        if let Err(e) = self
            .onebox
            .wait_healthy(Duration::from_secs(60), |_| {})
            .await
        {
            // Show what the nodes said: the test's folder is gone after it.
            for node in self.onebox.nodes() {
                let result = self.onebox.options.root.join(node.name()).join("result");
                eprintln!(
                    "--- {}:\n{}",
                    node.name(),
                    std::fs::read_to_string(result).unwrap_or_default()
                );
            }
            panic!("not healthy: {e}");
        }
    }

    /// What a node logged (`<data_dir>/log/*.log*`), oldest file first.
    pub fn node_log(&self, node: pegasus_tools::onebox::Node) -> String {
        let dir = self
            .onebox
            .options
            .root
            .join(node.name())
            .join("data")
            .join("log");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .collect()
    }

    /// Replica server `j`'s address (from 1).
    pub fn replica_addr(&self, j: usize) -> std::net::SocketAddrV4 {
        std::net::SocketAddrV4::new(
            [127, 0, 0, 1].into(),
            self.onebox.options.replica_base_port + j as u16,
        )
    }

    /// The replica folders (`<app_id>.<pidx>.pegasus`) of table `app_id` on `node`, or on every
    /// node.
    pub fn replica_folders(
        &self,
        node: Option<pegasus_tools::onebox::Node>,
        app_id: i32,
    ) -> Vec<std::path::PathBuf> {
        let root = &self.onebox.options.root;
        let prefix = format!("{app_id}.");
        let mut out = Vec::new();
        let mut todo = vec![node.map_or_else(|| root.clone(), |n| root.join(n.name()))];
        while let Some(dir) = todo.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !entry.path().is_dir() {
                    continue;
                }
                if name.starts_with(&prefix) && name.ends_with(".pegasus") {
                    out.push(entry.path());
                } else {
                    todo.push(entry.path());
                }
            }
        }
        out
    }

    /// Empties a (stopped) node's disks, as a replaced disk would: everything under its data
    /// folder but its logs.
    pub fn wipe_disks(&self, node: pegasus_tools::onebox::Node) {
        let data = self.onebox.options.root.join(node.name()).join("data");
        for entry in std::fs::read_dir(&data).unwrap().flatten() {
            if entry.file_name() != "log" && entry.path().is_dir() {
                std::fs::remove_dir_all(entry.path()).unwrap();
            }
        }
    }

    /// Emulates a power loss of `node`'s machine (a replica server started with `faults`): the
    /// process is killed (RocksDB, without its WAL, is back at its last flush), each of its
    /// log files (private and shared) keeps what the server's sync ledger (`<node dir>/sync-ledger`, one
    /// line per fsync) last says was durable and reads as zeros past it (a file never fsynced
    /// keeps its length, its creation was synced, and nothing else), and the machine comes
    /// back in a new boot. Returns the log files cut and the bytes they lost.
    pub fn power_loss(&self, node: pegasus_tools::onebox::Node) -> (usize, u64) {
        self.onebox.kill_node(node).unwrap();
        let dir = self.onebox.options.root.join(node.name());
        let canonical = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or(p.to_owned());
        // The last note for each file counts (a log cut back at open is durable that far).
        let mut synced = std::collections::HashMap::new();
        let ledger = std::fs::read_to_string(dir.join("sync-ledger")).unwrap_or_default();
        for line in ledger.lines() {
            let (len, path) = line.split_once('\t').expect("a ledger line");
            synced.insert(
                canonical(std::path::Path::new(path)),
                len.parse::<u64>().expect("a length"),
            );
        }
        let (mut cut, mut lost) = (0, 0);
        let mut stack = vec![dir.join("data")];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap().flatten() {
                let path = entry.path();
                if !path.is_dir() {
                    continue;
                }
                // The private logs and the shared log.
                if entry.file_name() != "plog" && entry.file_name() != "slog" {
                    stack.push(path);
                    continue;
                }
                for log in std::fs::read_dir(&path).unwrap().flatten() {
                    let keep = synced.get(&canonical(&log.path())).copied().unwrap_or(0);
                    let file = std::fs::OpenOptions::new()
                        .write(true)
                        .open(log.path())
                        .unwrap();
                    let len = file.metadata().unwrap().len();
                    if keep < len {
                        // Bytes past what was written read as zeros already: count what held
                        // data (the log's files are preallocated).
                        lost += written_between(&log.path(), keep, len);
                        file.set_len(keep).unwrap();
                        file.set_len(len).unwrap();
                        cut += 1;
                    }
                }
            }
        }
        let boot = dir.join("boot_id");
        let before = std::fs::read_to_string(&boot).unwrap_or_default();
        std::fs::write(&boot, format!("{}-rebooted\n", before.trim())).unwrap();
        (cut, lost)
    }

    /// The digest of replica `gpid` (`app_id.partition_index`) on replica server `n` (from 1):
    /// `(decree, keys, crc64)` from its `/replica/digest`.
    pub async fn digest(&self, n: usize, gpid: &str) -> (u64, u64, String) {
        let addr = self.replica_addr(n).into();
        let path = format!("/replica/digest?gpid={gpid}");
        let answer = tokio::task::spawn_blocking(move || crate::http::get(addr, &path))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("digest of {gpid} on replica {n}: no answer"));
        let body = answer.body;
        let json: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("digest of {gpid} on replica {n}: {e}: {body}"));
        let field = |k: &str| json[k].as_str().unwrap_or_default().to_owned();
        (
            field("decree").parse().unwrap(),
            field("keys").parse().unwrap(),
            field("crc64"),
        )
    }

    /// Table `name`'s routing, from the meta leader.
    pub async fn routing(&self, name: &str) -> pegasus_protocol::types::QueryCfgResponse {
        self.admin(
            pegasus_protocol::codes::rpc::QUERY_CONFIG,
            pegasus_protocol::types::QueryCfgRequest {
                app_name: name.into(),
                partition_indices: Vec::new(),
            },
        )
        .await
    }

    /// Table `name`'s health, counted from its routing as Pegasus's shell counts it.
    pub async fn health(&self, name: &str) -> pegasus_protocol::health::Health {
        pegasus_protocol::health::Health::of(
            &self.routing(name).await.partitions,
            pegasus_protocol::health::DEFAULT_MIN_WRITE_MEMBERS,
        )
    }

    /// The leader meta, by asking each.
    pub async fn leader(&self) -> usize {
        let client = self.client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for (i, addr) in self.onebox.options.meta_addrs().into_iter().enumerate() {
                let r = client
                    .call::<_, ListAppsResponse>(
                        addr,
                        RequestMeta::default(),
                        rpc::LIST_APPS,
                        &Args(ListAppsRequest::default()),
                        Duration::from_secs(2),
                    )
                    .await;
                if r.is_ok_and(|r| r.err.0 == "ERR_OK") {
                    return i + 1;
                }
            }
            assert!(Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends an admin request to whichever meta leads.
    pub async fn admin<
        A: pegasus_protocol::codec::Field + Default,
        R: pegasus_protocol::codec::Field + Default,
    >(
        &self,
        name: &str,
        args: A,
    ) -> R {
        let leader = self.leader().await;
        let addr = self.onebox.options.meta_addrs()[leader - 1];
        self.client()
            .call(
                addr,
                RequestMeta::default(),
                name,
                &Args(args),
                Duration::from_secs(10),
            )
            .await
            .expect("admin call")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let _ = self.onebox.stop();
        if std::thread::panicking() || std::env::var_os("PEGASUS_KEEP_LOGS").is_some() {
            self.keep_logs();
        }
    }
}

impl TestCluster {
    /// A failed test's node logs (every test's with `PEGASUS_KEEP_LOGS` set), kept as
    /// `<target>/test-logs/<test>/<node>.log`, with what each process printed
    /// (`<node>.result`) and ZooKeeper's log (its folder is deleted with it): what a failure
    /// that happens once in many runs leaves to read.
    fn keep_logs(&self) {
        let test = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .replace("::", "-");
        let dir = crate::bins::target_dir().join("test-logs").join(test);
        if std::fs::create_dir_all(&dir).is_err() {
            return;
        }
        let root = &self.onebox.options.root;
        for node in self.onebox.nodes() {
            let _ = std::fs::write(
                dir.join(format!("{}.log", node.name())),
                self.node_log(node),
            );
            // What the process printed (a start-up failure is only there).
            let _ = std::fs::copy(
                root.join(node.name()).join("result"),
                dir.join(format!("{}.result", node.name())),
            );
        }
        let _ = std::fs::copy(
            root.join("zookeeper").join("zookeeper.log"),
            dir.join("zookeeper.log"),
        );
        eprintln!("node logs kept in {}", dir.display());
    }
}

/// Held by the tests that must not overlap: pypegasus3's suites (they hard-code the onebox's
/// ports, and its fault suite waits without end for a cluster that a loaded machine keeps from
/// settling) and the tests that load the machine most (hostile clients, a ZooKeeper ensemble,
/// ZooKeeper outages).
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The bytes of `s`.
pub fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Sets `<prefix><i>`/`s` to `v<i>` for `i` in `0..n`.
pub async fn write_all(table: &Table, prefix: &str, n: usize) {
    for i in 0..n {
        table
            .set(
                format!("{prefix}{i}").as_bytes(),
                b"s",
                format!("v{i}").as_bytes(),
                None,
            )
            .await
            .unwrap();
    }
}

/// Acknowledged writes, key to value, shared by writer tasks.
type Acked = std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, String>>>;

/// Writers on tasks, each setting its own keys `<prefix><w>-<i>` until stopped, keeping what
/// was acknowledged.
pub struct Writers {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked: Acked,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    /// Starts `n` writers on `table`.
    pub fn start(table: &std::sync::Arc<Table>, n: usize, prefix: &str) -> Writers {
        Self::paced(table, n, prefix, Duration::ZERO)
    }

    /// As [`Writers::start`], each writer pausing `pause` after each write: a steady client
    /// beside a test's real load.
    pub fn paced(
        table: &std::sync::Arc<Table>,
        n: usize,
        prefix: &str,
        pause: Duration,
    ) -> Writers {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acked: Acked = std::sync::Arc::default();
        let tasks = (0..n)
            .map(|w| {
                let (table, stop) = (std::sync::Arc::clone(table), std::sync::Arc::clone(&stop));
                let acked = std::sync::Arc::clone(&acked);
                let prefix = format!("{prefix}{w}-");
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Acquire) {
                        let (key, value) = (format!("{prefix}{i}"), format!("v{i}"));
                        if table
                            .set(key.as_bytes(), b"s", value.as_bytes(), None)
                            .await
                            .is_ok()
                        {
                            acked.lock().unwrap().insert(key, value);
                        }
                        i += 1;
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                })
            })
            .collect();
        Writers { stop, acked, tasks }
    }

    /// Writes acknowledged so far.
    pub fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Stops the writers; what was acknowledged, key by key.
    pub async fn stop(self) -> std::collections::BTreeMap<String, String> {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        for t in self.tasks {
            t.await.unwrap();
        }
        self.acked.lock().unwrap().clone()
    }
}

/// The keys of `acked` whose acknowledged value `table` does not return.
pub async fn lost(
    table: &Table,
    acked: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    let mut lost = Vec::new();
    for (key, value) in acked {
        if table.get(key.as_bytes(), b"s").await.unwrap() != Some(b(value)) {
            lost.push(key.clone());
        }
    }
    lost
}

/// Checks that `<prefix><i>`/`s` is `v<i>` for `i` in `0..n`.
pub async fn check_all(table: &Table, prefix: &str, n: usize) {
    for i in 0..n {
        assert_eq!(
            table
                .get(format!("{prefix}{i}").as_bytes(), b"s")
                .await
                .unwrap(),
            Some(b(&format!("v{i}"))),
            "{prefix}{i}"
        );
    }
}

/// Polls `check` every 100 ms until it holds; fails after `within`. How long it took.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

/// How many partitions of `table` are fully healthy, as `client`'s routing shows them (0 when
/// no routing can be had).
pub async fn fully_healthy(client: &Client, table: &str) -> i32 {
    client.query_config(table).await.map_or(0, |r| {
        pegasus_protocol::health::Health::of(
            &r.partitions,
            pegasus_protocol::health::DEFAULT_MIN_WRITE_MEMBERS,
        )
        .fully_healthy
    })
}

/// How many bytes of `path` between `from` and `to` are not zero (that range only is read).
fn written_between(path: &std::path::Path, from: u64, to: u64) -> u64 {
    use std::io::{Read, Seek, SeekFrom};
    let mut range = Vec::new();
    let read = std::fs::File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(from))?;
        f.take(to.saturating_sub(from)).read_to_end(&mut range)
    });
    read.expect("a log file");
    range.iter().filter(|b| **b != 0).count() as u64
}
