//! A whole cluster on one machine, as Pegasus's `./run.sh start_onebox` lays it out:
//!
//! ```text
//! onebox/zookeeper/        ZooKeeper's config, data and log (port 22181)
//! onebox/meta1/            config.ini, data/, result (stdout+stderr), pid   (ports 34601…)
//! onebox/replica1/         config.ini, data/, result, pid                  (ports 34801…)
//! ```
//!
//! Each node's `config.ini` is rendered from one template with configcheck and checked before the
//! node starts. Nodes run in their own process groups, so they outlive the command that started
//! them; `stop` finds them again through their pid files.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pegasus_client::{Client, ClientOptions};
use pegasus_protocol::health::{DEFAULT_MIN_WRITE_MEMBERS, Health};
use pegasus_protocol::types::app_status;

/// The environment variable naming a replica server's faults file (the server's
/// `replica::faults`; the tools do not link the server).
const FAULTS_FILE_ENV: &str = "PEGASUS_FAULTS_FILE";
/// The file a replica server reads its machine's boot id from, when it holds one (tests emulate
/// a reboot by writing a new one).
const BOOT_ID_FILE_ENV: &str = "PEGASUS_BOOT_ID_FILE";
/// The file a replica server writes each log fsync down in (tests emulate a power loss by
/// keeping only what was fsynced).
const SYNC_LEDGER_ENV: &str = "PEGASUS_SYNC_LEDGER";

/// The node template.
pub const TEMPLATE: &str = include_str!("config.min.ini");

/// Why a onebox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OneboxError {
    /// ZooKeeper is not installed.
    #[error(
        "no ZooKeeper installation found (looked in $ZOOKEEPER_HOME and /usr/share/java/zookeeper.jar)"
    )]
    NoZooKeeper,
    /// Java is missing.
    #[error("`java` is not on PATH; ZooKeeper needs it")]
    NoJava,
    /// A file operation failed.
    #[error("{what} `{path}`: {source}")]
    Io {
        /// What.
        what: &'static str,
        /// Where.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Rendering a config failed.
    #[error("rendering the node config: {0}")]
    Render(#[from] configcheck::render::RenderError),
    /// Something did not become ready in time.
    #[error("{0}")]
    Timeout(String),
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> OneboxError {
    let path = path.display().to_string();
    move |source| OneboxError::Io { what, path, source }
}

/// A new file for a child's standard output, and a second handle to it for its standard error.
fn output_file(path: &Path) -> Result<(fs::File, fs::File), OneboxError> {
    let out = fs::File::create(path).map_err(io("cannot create", path))?;
    let err = out.try_clone().map_err(io("cannot open", path))?;
    Ok((out, err))
}

/// A onebox's shape.
#[derive(Clone, Debug)]
pub struct OneboxOptions {
    /// The `onebox/` folder.
    pub root: PathBuf,
    /// The `pegasus_server` binary.
    pub server: PathBuf,
    /// MetaServers.
    pub metas: usize,
    /// ReplicaServers.
    pub replicas: usize,
    /// ZooKeeper's port.
    pub zk_port: u16,
    /// The port the metas reach ZooKeeper on, when not `zk_port` (a test's proxy).
    pub meta_zk_port: Option<u16>,
    /// Meta `i` listens on `meta_base_port + i`.
    pub meta_base_port: u16,
    /// Replica `j` listens on `replica_base_port + j`.
    pub replica_base_port: u16,
    /// The table created at bootstrap.
    pub app_name: String,
    /// Its partitions.
    pub partitions: u32,
    /// `fd_lease_seconds` (grace is one more).
    pub fd_lease_seconds: u32,
    /// Run a collector too.
    pub collector: bool,
    /// The collector's port.
    pub collector_port: u16,
    /// `[replication] plog_force_flush` of the replicas.
    pub plog_force_flush: bool,
    /// `[replication] log_private_file_size_mb` of the replicas.
    pub plog_file_mb: u32,
    /// More keys for every node's `config.ini`: `(section, key, value)`, added to the section
    /// (which is made when the template has none).
    pub extra_config: Vec<(String, String, String)>,
    /// Replica servers follow a faults file, `<node dir>/faults` (`PEGASUS_FAULTS_FILE`: disk
    /// faults injected by tests, see [`Onebox::inject_faults`]), and take their machine's boot
    /// id from `<node dir>/boot_id` when it holds one (`PEGASUS_BOOT_ID_FILE`: a test emulates a
    /// reboot by writing a new one), and write each fsync of their logs down in
    /// `<node dir>/sync-ledger` (`PEGASUS_SYNC_LEDGER`: a test emulates a power loss by keeping
    /// of each log file only what was fsynced).
    pub faults: bool,
}

impl OneboxOptions {
    /// Pegasus's onebox defaults under `root`.
    pub fn new(root: PathBuf, server: PathBuf) -> Self {
        OneboxOptions {
            root,
            server,
            metas: 3,
            replicas: 3,
            zk_port: 22181,
            meta_zk_port: None,
            meta_base_port: 34600,
            replica_base_port: 34800,
            app_name: "temp".into(),
            partitions: 8,
            fd_lease_seconds: 6,
            collector: false,
            collector_port: 34101,
            plog_force_flush: true,
            plog_file_mb: 32,
            extra_config: Vec::new(),
            faults: false,
        }
    }

    /// The metas' addresses.
    pub fn meta_addrs(&self) -> Vec<SocketAddr> {
        (1..=self.metas)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], self.meta_base_port + i as u16)))
            .collect()
    }

    fn meta_list(&self) -> String {
        self.meta_addrs()
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A node of the onebox: `meta1`, `replica2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Node {
    /// A MetaServer, from 1.
    Meta(usize),
    /// A ReplicaServer, from 1.
    Replica(usize),
    /// The Collector.
    Collector,
}

impl Node {
    /// `meta1`, `replica2`.
    pub fn name(self) -> String {
        match self {
            Node::Meta(i) => format!("meta{i}"),
            Node::Replica(i) => format!("replica{i}"),
            Node::Collector => "collector".into(),
        }
    }

    fn role(self) -> &'static str {
        match self {
            Node::Meta(_) => "meta",
            Node::Replica(_) => "replica",
            Node::Collector => "collector",
        }
    }
}

/// A onebox.
pub struct Onebox {
    /// Its shape.
    pub options: OneboxOptions,
}

/// The ZooKeeper jars: `$ZOOKEEPER_HOME/lib/*` or Debian's.
pub fn zookeeper_classpath() -> Result<String, OneboxError> {
    if let Some(home) = std::env::var_os("ZOOKEEPER_HOME") {
        let home = PathBuf::from(home);
        let mut jars: Vec<String> = fs::read_dir(home.join("lib"))
            .map_err(io("cannot list", &home.join("lib")))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "jar"))
            .map(|p| p.display().to_string())
            .collect();
        jars.sort();
        if !jars.is_empty() {
            return Ok(jars.join(":"));
        }
    }
    let debian = Path::new("/usr/share/java/zookeeper.jar");
    if debian.exists() {
        return Ok("/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar".into());
    }
    Err(OneboxError::NoZooKeeper)
}

/// Whether ZooKeeper at `port` serves requests: its `srvr` answer names its mode. (`ruok` is
/// not enough: ZooKeeper answers `imok` as soon as it listens, before it loads its data and
/// takes sessions, and a member of an ensemble without a quorum answers it too.)
pub fn zookeeper_ok(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut answer = Vec::new();
    s.write_all(b"srvr").is_ok()
        && (&mut s).take(4096).read_to_end(&mut answer).is_ok()
        && String::from_utf8_lossy(&answer).contains("\nMode: ")
}

/// `text` (an ini file) with `extra`'s keys set: in place of the key where its section has it,
/// else at the section's top, or in a new section at the end.
fn with_extra(text: &str, extra: &[(String, String, String)]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for (section, key, value) in extra {
        let header = format!("[{section}]");
        let line = format!("  {key} = {value}");
        let Some(at) = lines.iter().position(|l| l.trim() == header) else {
            lines.extend([String::new(), header, line]);
            continue;
        };
        let end = lines[at + 1..]
            .iter()
            .position(|l| l.trim_start().starts_with('['))
            .map_or(lines.len(), |n| at + 1 + n);
        let existing = (at + 1..end).find(|&i| {
            lines[i]
                .split_once('=')
                .is_some_and(|(k, _)| k.trim() == key)
        });
        match existing {
            Some(i) => lines[i] = line,
            None => lines.insert(at + 1, line),
        }
    }
    lines.join("\n") + "\n"
}

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether the process still runs, or still holds what it had open (its ports): a zombie
/// thread-group leader whose other threads are still exiting (one in the middle of a disk write)
/// counts as alive until the last of them is gone.
fn alive(pid: i32) -> bool {
    let zombie = || {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
    };
    let threads = || fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
    Path::new(&format!("/proc/{pid}")).exists() && (!zombie() || threads() > 1)
}

fn signal(pid: i32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Onebox {
    /// A onebox with `options`.
    pub fn new(options: OneboxOptions) -> Self {
        Onebox { options }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.options.root.join(name)
    }

    /// Starts ZooKeeper unless it already answers; waits until it does.
    pub fn start_zookeeper(&self) -> Result<(), OneboxError> {
        let port = self.options.zk_port;
        if zookeeper_ok(port) {
            return Ok(());
        }
        self.spawn_zookeeper("zookeeper", port, "")?;
        self.wait_zookeeper("zookeeper", port)
    }

    /// Starts member `i` of a ZooKeeper ensemble (folder `zookeeper<i>`, from 1) whose members
    /// listen on `members[k] = (client, peer, election)` ports, unless it runs; `wait`: until it
    /// answers (once a quorum runs).
    pub fn start_zookeeper_member(
        &self,
        i: usize,
        members: &[(u16, u16, u16)],
        wait: bool,
    ) -> Result<(), OneboxError> {
        let name = format!("zookeeper{i}");
        let dir = self.dir(&name);
        fs::create_dir_all(dir.join("data")).map_err(io("cannot create", &dir))?;
        fs::write(dir.join("data").join("myid"), i.to_string())
            .map_err(io("cannot write", &dir.join("data")))?;
        let servers: String = members
            .iter()
            .enumerate()
            .map(|(k, (_, peer, election))| {
                format!("server.{}=127.0.0.1:{peer}:{election}\n", k + 1)
            })
            .collect();
        let port = members[i - 1].0;
        self.spawn_zookeeper(&name, port, &servers)?;
        if wait {
            self.wait_zookeeper(&name, port)?;
        }
        Ok(())
    }

    /// Waits until member `i` of the ensemble answers (once a quorum runs).
    pub fn wait_zookeeper_member(
        &self,
        i: usize,
        members: &[(u16, u16, u16)],
    ) -> Result<(), OneboxError> {
        self.wait_zookeeper(&format!("zookeeper{i}"), members[i - 1].0)
    }

    /// Kills member `i` of the ensemble (SIGKILL).
    pub fn kill_zookeeper_member(&self, i: usize) -> Result<(), OneboxError> {
        self.stop_pid_file(&self.dir(&format!("zookeeper{i}")).join("pid"), true)
    }

    /// Starts the ZooKeeper of folder `name` unless its pid file names a live process (a second
    /// would overwrite the pid file, and the first would outlive `stop`).
    fn spawn_zookeeper(&self, name: &str, port: u16, servers: &str) -> Result<(), OneboxError> {
        let classpath = zookeeper_classpath()?;
        let dir = self.dir(name);
        if read_pid(&dir.join("pid")).is_some_and(alive) {
            return Ok(());
        }
        fs::create_dir_all(dir.join("data")).map_err(io("cannot create", &dir))?;
        let config = format!(
            "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=ruok,srvr\n{servers}",
            dir.join("data").display()
        );
        fs::write(dir.join("zoo.cfg"), config).map_err(io("cannot write", &dir.join("zoo.cfg")))?;
        let (log, err) = output_file(&dir.join("zookeeper.log"))?;
        let child = spawn_detached(
            Command::new("java")
                .args([
                    "-Xmx256m",
                    "-cp",
                    &classpath,
                    "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                ])
                .arg(dir.join("zoo.cfg"))
                .stdout(log)
                .stderr(err),
        )
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                OneboxError::NoJava
            } else {
                OneboxError::Io {
                    what: "cannot start",
                    path: "java".into(),
                    source: e,
                }
            }
        })?;
        fs::write(dir.join("pid"), child.to_string()).map_err(io("cannot write", &dir.join("pid")))
    }

    fn wait_zookeeper(&self, name: &str, port: u16) -> Result<(), OneboxError> {
        let dir = self.dir(name);
        wait_for(
            Duration::from_secs(30),
            || zookeeper_ok(port),
            || {
                format!(
                    "ZooKeeper did not answer on 127.0.0.1:{port}; see {}",
                    dir.join("zookeeper.log").display()
                )
            },
        )
    }

    /// The `local_service` block service every node shares: `<onebox>/backup`.
    pub fn backup_dir(&self) -> PathBuf {
        self.dir("backup")
    }

    /// Writes a node's `config.ini` (rendered and checked).
    pub fn write_config(&self, node: Node) -> Result<PathBuf, OneboxError> {
        let o = &self.options;
        let dir = self.dir(&node.name());
        fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
        // The shared block service's root is there before any node is checked or started.
        let backup = self.backup_dir();
        fs::create_dir_all(&backup).map_err(io("cannot create", &backup))?;
        let (meta_port, replica_port) = match node {
            Node::Meta(i) => (o.meta_base_port + i as u16, o.replica_base_port),
            Node::Replica(j) => (o.meta_base_port, o.replica_base_port + j as u16),
            Node::Collector => (o.meta_base_port, o.replica_base_port),
        };
        let cluster_id = format!("{}", o.meta_base_port);
        let vars: BTreeMap<String, String> = [
            ("META_PORT", meta_port.to_string()),
            ("REPLICA_PORT", replica_port.to_string()),
            ("DATA_DIR", dir.join("data").display().to_string()),
            ("BACKUP_DIR", self.backup_dir().display().to_string()),
            ("META_LIST", o.meta_list()),
            ("CLUSTER_ID", cluster_id),
            ("APP_NAME", o.app_name.clone()),
            ("PARTITION_COUNT", o.partitions.to_string()),
            ("FD_LEASE", o.fd_lease_seconds.to_string()),
            ("FD_GRACE", (o.fd_lease_seconds + 1).to_string()),
            ("ZK_PORT", o.meta_zk_port.unwrap_or(o.zk_port).to_string()),
            // Three copies, or one per replica server when there are fewer.
            ("MAX_REPLICA_COUNT", o.replicas.clamp(1, 3).to_string()),
            ("COLLECTOR_PORT", o.collector_port.to_string()),
            ("PLOG_FORCE_FLUSH", o.plog_force_flush.to_string()),
            ("PLOG_FILE_MB", o.plog_file_mb.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let rendered = configcheck::render::render(TEMPLATE, &vars)?;
        let path = dir.join("config.ini");
        let text = with_extra(&rendered.text, &o.extra_config);
        configcheck::render::write_atomically(&path, &text)?;
        Ok(path)
    }

    /// Starts a node (if it is not running) and waits until it listens (at most 10 s).
    pub fn start_node(&self, node: Node) -> Result<(), OneboxError> {
        self.spawn_node(node)?;
        self.settle(node)
    }

    /// The port `node` listens on.
    pub fn port(&self, node: Node) -> u16 {
        let o = &self.options;
        match node {
            Node::Meta(i) => o.meta_base_port + i as u16,
            Node::Replica(j) => o.replica_base_port + j as u16,
            Node::Collector => o.collector_port,
        }
    }

    /// Waits until a started node listens. The onebox's fixed ports (Pegasus's 34601…, 34801…)
    /// lie in the kernel's range for outgoing connections, so one can be held for a moment by
    /// a client's connection: a node that exits because its port is in use is started again (a
    /// few times, half a second apart). One still starting after 10 s is left to it.
    fn settle(&self, node: Node) -> Result<(), OneboxError> {
        let dir = self.dir(&node.name());
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port(node)));
        for _ in 0..5 {
            // A node binds its ports first thing: one alive half a second after its start got
            // them (whoever else may have answered on the port before).
            let trusted = Instant::now() + Duration::from_millis(500);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if !read_pid(&dir.join("pid")).is_some_and(alive) {
                    break;
                }
                if Instant::now() > trusted
                    && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let said = fs::read_to_string(dir.join("result")).unwrap_or_default();
            if !said.contains("Address already in use") {
                // It failed for another reason: its `result` says which.
                return Ok(());
            }
            // What the failed start said stays, as `result.port_in_use`.
            let _ = fs::rename(dir.join("result"), dir.join("result.port_in_use"));
            std::thread::sleep(Duration::from_millis(500));
            self.spawn_node(node)?;
        }
        Ok(())
    }

    /// Starts a node's process (if it is not running).
    fn spawn_node(&self, node: Node) -> Result<(), OneboxError> {
        let dir = self.dir(&node.name());
        if read_pid(&dir.join("pid")).is_some_and(alive) {
            return Ok(());
        }
        let config = self.write_config(node)?;
        let (result, err) = output_file(&dir.join("result"))?;
        let mut command = Command::new(&self.options.server);
        command
            .arg(&config)
            .args(["-app_list", node.role()])
            .current_dir(&dir)
            .stdout(result)
            .stderr(err);
        if self.options.faults && matches!(node, Node::Replica(_)) {
            command.env(FAULTS_FILE_ENV, dir.join("faults"));
            command.env(BOOT_ID_FILE_ENV, dir.join("boot_id"));
            command.env(SYNC_LEDGER_ENV, dir.join("sync-ledger"));
        }
        let pid = spawn_detached(&mut command).map_err(io("cannot start", &self.options.server))?;
        fs::write(dir.join("pid"), pid.to_string())
            .map_err(io("cannot write", &dir.join("pid")))?;
        Ok(())
    }

    /// Sets the disk faults a replica server injects from now on (with
    /// [`OneboxOptions::faults`]): `point = fault` lines, e.g. `plog.sync = eio`; empty for none.
    pub fn inject_faults(&self, node: Node, faults: &str) -> Result<(), OneboxError> {
        let dir = self.dir(&node.name());
        let (tmp, file) = (dir.join("faults.tmp"), dir.join("faults"));
        fs::write(&tmp, faults).map_err(io("cannot write", &tmp))?;
        fs::rename(&tmp, &file).map_err(io("cannot write", &file))
    }

    /// Stops a node: SIGTERM, then SIGKILL after 10 s.
    pub fn stop_node(&self, node: Node) -> Result<(), OneboxError> {
        self.stop_pid_file(&self.dir(&node.name()).join("pid"), false)
    }

    /// Kills a node at once (SIGKILL), as a crash would.
    pub fn kill_node(&self, node: Node) -> Result<(), OneboxError> {
        self.stop_pid_file(&self.dir(&node.name()).join("pid"), true)
    }

    /// Freezes a node (SIGSTOP): it keeps its sockets but answers nothing, as a hung process or
    /// a partitioned host looks to the others.
    pub fn pause_node(&self, node: Node) {
        if let Some(pid) = read_pid(&self.dir(&node.name()).join("pid")) {
            signal(pid, "STOP");
        }
    }

    /// The process id of a running node.
    pub fn pid(&self, node: Node) -> Option<i32> {
        read_pid(&self.dir(&node.name()).join("pid")).filter(|p| alive(*p))
    }

    /// Stops ZooKeeper (SIGKILL: its clients see the connection drop, as when its host dies);
    /// [`Onebox::start_zookeeper`] brings it back with its data.
    pub fn kill_zookeeper(&self) -> Result<(), OneboxError> {
        self.stop_pid_file(&self.dir("zookeeper").join("pid"), true)
    }

    /// Lets a paused node run again (SIGCONT).
    pub fn resume_node(&self, node: Node) {
        if let Some(pid) = read_pid(&self.dir(&node.name()).join("pid")) {
            signal(pid, "CONT");
        }
    }

    fn stop_pid_file(&self, path: &Path, kill: bool) -> Result<(), OneboxError> {
        let Some(pid) = read_pid(path) else {
            return Ok(());
        };
        if alive(pid) {
            signal(pid, if kill { "KILL" } else { "TERM" });
            let gone = wait_for(Duration::from_secs(10), || !alive(pid), String::new);
            if gone.is_err() {
                signal(pid, "KILL");
                let _ = wait_for(Duration::from_secs(5), || !alive(pid), String::new);
            }
        }
        let _ = fs::remove_file(path);
        Ok(())
    }

    /// Every node of the shape.
    pub fn nodes(&self) -> Vec<Node> {
        let collector = self.options.collector.then_some(Node::Collector);
        (1..=self.options.metas)
            .map(Node::Meta)
            .chain((1..=self.options.replicas).map(Node::Replica))
            .chain(collector)
            .collect()
    }

    /// Starts ZooKeeper and every node.
    pub fn start(&self) -> Result<(), OneboxError> {
        self.start_zookeeper()?;
        for node in self.nodes() {
            self.spawn_node(node)?;
        }
        for node in self.nodes() {
            self.settle(node)?;
        }
        Ok(())
    }

    /// Stops every node found under the onebox folder, then ZooKeeper.
    pub fn stop(&self) -> Result<(), OneboxError> {
        for (node, _) in self.list() {
            self.stop_node(node)?;
        }
        // An ensemble's members too (`zookeeper1`, ...), when a test started one.
        for i in 1..=9 {
            let pid = self.dir(&format!("zookeeper{i}")).join("pid");
            if pid.exists() {
                self.stop_pid_file(&pid, false)?;
            }
        }
        self.stop_pid_file(&self.dir("zookeeper").join("pid"), false)
    }

    /// Stops everything and removes the onebox folder (ZooKeeper's data included).
    pub fn clear(&self) -> Result<(), OneboxError> {
        self.stop()?;
        if self.options.root.exists() {
            fs::remove_dir_all(&self.options.root)
                .map_err(io("cannot remove", &self.options.root))?;
        }
        Ok(())
    }

    /// Nodes with a pid file, and whether they run.
    pub fn list(&self) -> Vec<(Node, bool)> {
        let Ok(entries) = fs::read_dir(&self.options.root) else {
            return Vec::new();
        };
        let mut nodes: Vec<(Node, bool)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let node = if name == "collector" {
                    Node::Collector
                } else if let Some(i) = name.strip_prefix("meta") {
                    Node::Meta(i.parse().ok()?)
                } else {
                    Node::Replica(name.strip_prefix("replica")?.parse().ok()?)
                };
                let pid = read_pid(&e.path().join("pid"))?;
                Some((node, alive(pid)))
            })
            .collect();
        nodes.sort();
        nodes
    }

    /// Waits until the bootstrap table has a live primary for every partition that serves a
    /// read, and the meta counts every partition fully healthy (each copy in place), printing
    /// progress with `progress`.
    pub async fn wait_healthy(
        &self,
        timeout: Duration,
        mut progress: impl FnMut(&str),
    ) -> Result<(), OneboxError> {
        let deadline = Instant::now() + timeout;
        let mut options = ClientOptions::new(self.options.meta_addrs());
        options.timeout = Duration::from_secs(2);
        let client = Client::new(options);
        let mut last = String::new();
        loop {
            let status = match client.open_table(&self.options.app_name).await {
                Ok(table) => {
                    let mut healthy = 0;
                    for p in 0..table.partition_count() {
                        // A read of a key of partition p: served only by its live primary.
                        let key = (0..)
                            .map(|i: u32| format!("health{i}"))
                            .find(|k| table.partition_of(k.as_bytes()) == p)
                            .expect("some key");
                        if table.get(key.as_bytes(), b"").await.is_ok() {
                            healthy += 1;
                        }
                    }
                    // And the meta counts each fully healthy: every copy in place.
                    let fully = self.fully_healthy(&client).await;
                    if healthy == table.partition_count() && fully == Some(healthy) {
                        progress(&format!(
                            "table `{}`: {healthy}/{healthy} partitions healthy",
                            self.options.app_name
                        ));
                        return Ok(());
                    }
                    format!(
                        "table `{}`: {healthy}/{} partitions serve, {} fully healthy",
                        self.options.app_name,
                        table.partition_count(),
                        fully.map_or("?".to_owned(), |f| f.to_string())
                    )
                }
                Err(e) => format!("waiting for the meta servers: {e}"),
            };
            if status != last {
                progress(&status);
                last = status;
            }
            if Instant::now() > deadline {
                return Err(OneboxError::Timeout(format!(
                    "onebox not healthy after {timeout:?}: {last}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Onebox {
    /// The bootstrap table's fully healthy partitions, as its routing shows them.
    async fn fully_healthy(&self, client: &Client) -> Option<i32> {
        let routing = client.query_config(&self.options.app_name).await.ok()?;
        Some(Health::of(&routing.partitions, DEFAULT_MIN_WRITE_MEMBERS).fully_healthy)
    }

    /// Waits until a meta leads (a client can ask it for tables), at most `timeout`.
    pub async fn wait_leader(&self, timeout: Duration) -> Result<(), OneboxError> {
        let client = Client::new(ClientOptions::new(self.options.meta_addrs()));
        let deadline = Instant::now() + timeout;
        while client.list_apps(app_status::INVALID).await.is_err() {
            if Instant::now() > deadline {
                return Err(OneboxError::Timeout(format!(
                    "no meta server leads after {timeout:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }
}

/// Starts a process in its own process group (it outlives its starter); returns its pid.
fn spawn_detached(cmd: &mut Command) -> std::io::Result<u32> {
    use std::os::unix::process::CommandExt;
    let child = cmd.stdin(Stdio::null()).process_group(0).spawn()?;
    Ok(child.id())
}

fn wait_for(
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
    what: impl FnOnce() -> String,
) -> Result<(), OneboxError> {
    let deadline = Instant::now() + timeout;
    while !ready() {
        if Instant::now() > deadline {
            return Err(OneboxError::Timeout(what()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_config_renders_and_passes_configcheck() {
        let root = tempfile::tempdir().unwrap();
        let onebox = Onebox::new(OneboxOptions::new(
            root.path().to_owned(),
            PathBuf::from("pegasus_server"),
        ));
        for node in onebox.nodes() {
            let path = onebox.write_config(node).unwrap();
            let config = configcheck::Config::load(&path, "config.ini").unwrap();
            let findings = configcheck::check(&config, &configcheck::CheckOptions::default());
            assert!(findings.is_empty(), "{node:?}: {findings:?}");
        }
        let meta2 = fs::read_to_string(root.path().join("meta2/config.ini")).unwrap();
        assert!(meta2.contains("ports = 34602") && meta2.contains("127.0.0.1:22181"));
    }
}
