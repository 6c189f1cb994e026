//! `pegasus_cluster` on five real hosts: Debian trees booted with systemd as PID 1 and sshd
//! (`systemd-nspawn --boot`), each in its own network namespace (`pegasus_tests::bed`), ZooKeeper
//! on the first. The tool runs from the client's namespace, as from an operator's machine, with
//! the release tarball `./run.sh pack_server` makes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pegasus_client::{Client, ClientOptions};
use pegasus_protocol::types::meta_function_level;
use pegasus_tests::bed::{self, Bed};
use pegasus_tests::history::{History, Stall, Verdict};
use pegasus_tests::process::Guarded;

/// Hosts of the bed: ZooKeeper and a meta on 1; metas on 2 and 3; replica servers on 2–5; the
/// collector on 5.
const HOSTS: usize = 5;

/// A topology for the bed; `replica_dirs` gives each replica server's data dirs (hosts 2–5).
fn topology(bed: &Bed, name: &str, replica_dirs: [&[&str]; 4]) -> String {
    let mut t = format!(
        "name = \"{name}\"\n\
         deploy_dir = \"/opt/pegasus\"\n\
         zookeeper = [\"{zk}:2181\"]\n\
         \n[ssh]\nuser = \"root\"\nidentity_file = \"{key}\"\nknown_hosts = \"{known}\"\n",
        zk = bed.addr(1),
        key = bed::key_path().display(),
        known = bed.known_hosts().display(),
    );
    for h in 1..=3 {
        t.push_str(&format!(
            "\n[[meta]]\nhost = \"{}\"\nport = 34601\n",
            bed.addr(h)
        ));
    }
    for (k, dirs) in replica_dirs.iter().enumerate() {
        let list: Vec<String> = dirs.iter().map(|d| format!("\"{d}\"")).collect();
        t.push_str(&format!(
            "\n[[replica]]\nhost = \"{}\"\nport = 34801\ndata_dirs = [{}]\n",
            bed.addr(k + 2),
            list.join(", ")
        ));
    }
    t.push_str(&format!(
        "\n[[collector]]\nhost = \"{}\"\nport = 34101\n",
        bed.addr(5)
    ));
    t
}

const DISKS: &[&str] = &["/data1/pegasus", "/data2/pegasus"];

/// Runs `pegasus_cluster ARGS` from the client's namespace.
fn tool(bed: &Bed, args: &[&str]) -> Output {
    tool_timed(bed, args).0
}

/// [`tool`], with when each line of its output came: `(when, line)`.
fn tool_timed(bed: &Bed, args: &[&str]) -> (Output, Vec<(Instant, String)>) {
    use std::io::{BufRead, Read};
    let bin = pegasus_tests::bins::built("pegasus-tools", "pegasus_cluster");
    let mut child = Guarded::spawn(
        bed.client_command(&bin)
            .args(args)
            .env("XDG_STATE_HOME", bed.dir().join("state"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    );
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        lines.push((Instant::now(), line.unwrap()));
    }
    let status = child.wait().unwrap();
    let out = Output {
        status,
        stdout: lines
            .iter()
            .flat_map(|(_, l)| format!("{l}\n").into_bytes())
            .collect(),
        stderr: errors.join().unwrap(),
    };
    eprintln!(
        "$ pegasus_cluster {}\n{}{}[exit {:?}]",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status.code()
    );
    (out, lines)
}

/// The tool's lines from 3 s before `stall` to its end, with their time from `origin`, and the
/// servers' log lines of the same span from every host: what a failed stall check shows.
fn around(
    bed: &Bed,
    stall: &pegasus_tests::history::Stall,
    lines: &[(Instant, String)],
    origin: (Instant, std::time::SystemTime),
) -> String {
    let from = stall.began - Duration::from_secs(3);
    let to = stall.began + stall.length + Duration::from_secs(1);
    let at = |t: Instant| t.saturating_duration_since(origin.0).as_secs_f64();
    let mut out = format!("stall: {}\ntool:\n", stall.describe(origin));
    for (t, line) in lines.iter().filter(|(t, _)| *t >= from && *t <= to) {
        out.push_str(&format!("  {:.2}s {line}\n", at(*t)));
    }
    // The servers log RFC 3339 times in UTC: a span of them compares as text.
    let unix = |t: Instant| {
        (origin.1 + t.saturating_duration_since(origin.0))
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let script = format!(
        "lo=$(date -u -d @{lo} +%Y-%m-%dT%H:%M:%S); hi=$(date -u -d @{hi} +%Y-%m-%dT%H:%M:%S); \
         for f in $(find /opt/pegasus/bed -path '*/log/*' -type f 2>/dev/null); do \
         awk -v lo=$lo -v hi=$hi -v f=$f 'substr($1,1,19)>=lo && substr($1,1,19)<=hi {{print f\": \"$0}}' $f; done",
        lo = unix(from),
        hi = unix(to) + 1,
    );
    for h in 1..=HOSTS {
        for line in bed.run(h, &script).unwrap_or_default().lines() {
            out.push_str(&format!("  host {h} {line}\n"));
        }
    }
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write(bed: &Bed, name: &str, text: &str) -> PathBuf {
    let path = bed.dir().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `check` run on `topology`: its exit code and its error findings (`check host: message`).
fn check_errors(bed: &Bed, topology: &Path, package: &Path) -> (i32, Vec<String>) {
    let out = tool(
        bed,
        &[
            "check",
            topology.to_str().unwrap(),
            package.to_str().unwrap(),
            "-j",
        ],
    );
    let findings: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let errors = findings
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["severity"] == "error")
        .map(|f| {
            format!(
                "{} {}: {}",
                f["check"].as_str().unwrap_or_default(),
                f["host"].as_str().unwrap_or_default(),
                f["message"].as_str().unwrap_or_default()
            )
        })
        .collect();
    (out.status.code().unwrap_or(-1), errors)
}

/// Runs `f` on a thread inside the client's namespace (the bed is not reachable from here).
fn in_client<T: Send + 'static>(bed: &Bed, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = bed.net().client();
    std::thread::spawn(move || {
        pegasus_tests::netns::enter(&ns);
        f()
    })
    .join()
    .expect("client thread")
}

/// Runs `f` with a ZooKeeper session to the bed's ensemble (from a thread in the client's
/// namespace, see [`in_client`]).
fn with_zk<T>(zk: SocketAddr, f: impl AsyncFnOnce(zookeeper_client::Client) -> T) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let client = zookeeper_client::Client::connect(&zk.to_string())
                .await
                .expect("ZooKeeper");
            f(client).await
        })
}

/// ZooKeeper's children of `path` (none when it does not exist).
fn zk_children(zk: SocketAddr, path: &'static str) -> Result<Vec<String>, String> {
    with_zk(zk, async |client| match client.list_children(path).await {
        Ok(c) => Ok(c),
        Err(zookeeper_client::Error::NoNode) => Ok(vec![]),
        Err(e) => Err(e.to_string()),
    })
}

/// Creates `path` (and its parents) in ZooKeeper with a child `apps`, as another cluster's root.
fn zk_plant(zk: SocketAddr, path: &'static str) {
    with_zk(zk, async |client| {
        let mode = zookeeper_client::CreateMode::Persistent
            .with_acls(zookeeper_client::Acls::anyone_all());
        let mut p = String::new();
        for part in format!("{path}/apps").trim_start_matches('/').split('/') {
            p.push('/');
            p.push_str(part);
            let _ = client.create(&p, b"", &mode).await;
        }
    })
}

/// Sets ZooKeeper node `path` to `data`.
fn zk_set(zk: SocketAddr, path: &'static str, data: &'static str) {
    with_zk(zk, async |client| {
        client.set_data(path, data.as_bytes(), None).await.unwrap();
    })
}

/// Removes what [`zk_plant`] made under `path`.
fn zk_remove(zk: SocketAddr, path: &'static str) {
    with_zk(zk, async |client| {
        let _ = client.delete(&format!("{path}/apps"), None).await;
        let _ = client.delete(path, None).await;
    })
}

/// Polls `display -j` until `ok` holds for it (or panics after `within`).
fn display_until(
    bed: &Bed,
    topology: &Path,
    within: Duration,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let out = tool(bed, &["display", topology.to_str().unwrap(), "-j"]);
        let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if ok(&view) {
            return view;
        }
        assert!(
            start.elapsed() < within,
            "not within {within:?}: {what}: {view:#}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn python() -> PathBuf {
    std::env::var_os("PEGASUS_PYTHON")
        .map(PathBuf::from)
        .expect(
            "PEGASUS_PYTHON must name a Python with pypegasus3: run the tests with `./run.sh test`",
        )
}

/// Needs root (namespaces, nspawn); CI runs as root. Skipped, saying so, elsewhere.
#[test]
fn from_nothing_to_a_healthy_cluster_on_five_hosts_and_back_to_nothing() {
    if !bed_or_skip() {
        return;
    }
    let _heavy = pegasus_tests::cluster::HEAVY.blocking_lock();
    let work = tempfile::tempdir().unwrap();
    let package = pegasus_tests::bins::release_tarball(work.path());
    let pkg = package.to_str().unwrap();
    let booted = Instant::now();
    let bed = Bed::boot(HOSTS);
    let zk = bed.start_zookeeper(1);
    eprintln!(
        "bed: {HOSTS} hosts and ZooKeeper up in {:?}",
        booted.elapsed()
    );
    let good = write(&bed, "bed.toml", &topology(&bed, "bed", [DISKS; 4]));
    let good_s = good.to_str().unwrap();

    // A bad topology: exit 2 with its place, and no host contacted (no step log).
    let bad = write(
        &bed,
        "bad.toml",
        &topology(&bed, "bed", [DISKS; 4]).replace("port = 34101", "port = 34801"),
    );
    let out = tool(&bed, &["check", bad.to_str().unwrap(), pkg]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("two instances on `10.77.0.15:34801`"));
    assert!(
        !bed.dir().join("state").exists(),
        "a bad topology touched no host"
    );

    // `check` finds each problem, on its host, and only it.
    let (code, errors) = check_errors(&bed, &good, &package);
    assert_eq!((code, errors.len()), (0, 0), "a clean fleet: {errors:?}");
    bed.run(
        3,
        "systemd-run --unit squat systemd-socket-activate -l 0.0.0.0:34801 cat",
    )
    .unwrap();
    let (code, errors) = check_errors(&bed, &good, &package);
    bed.run(3, "systemctl stop squat").unwrap();
    assert_eq!(code, 1);
    assert_eq!(
        errors,
        vec!["port 10.77.0.13: port 34801 of replica 10.77.0.13:34801 is already in use"]
    );
    let short = write(
        &bed,
        "short.toml",
        &topology(&bed, "bed", [DISKS, DISKS, DISKS, &["/data1/pegasus"]]),
    );
    let (code, errors) = check_errors(&bed, &short, &package);
    assert_eq!(code, 1);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .starts_with("disks 10.77.0.15: replica 10.77.0.15:34801 has 1 data dir(s), others 2")
    );
    in_client(&bed, move || zk_plant(zk, "/pegasus/bed"));
    let (code, errors) = check_errors(&bed, &good, &package);
    in_client(&bed, move || zk_remove(zk, "/pegasus/bed"));
    assert_eq!(code, 1);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("cluster-root zookeeper: `/pegasus/bed` belongs to a cluster not deployed by pegasus_cluster"));
    bed.net().block_port(4, 2181);
    let (code, errors) = check_errors(&bed, &good, &package);
    bed.net().unblock_port(4, 2181);
    assert_eq!(code, 1);
    assert_eq!(
        errors,
        vec!["zookeeper 10.77.0.14: ZooKeeper `10.77.0.11:2181` is unreachable from this host"]
    );

    // Deploy, twice: the second changes nothing.
    let started = Instant::now();
    let out = tool(&bed, &["deploy", good_s, pkg]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("10.77.0.12: copied pegasus-server-"));
    let out = tool(&bed, &["deploy", good_s, pkg]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert_eq!(text.matches(": unchanged").count(), HOSTS, "{text}");
    assert!(text.contains("nothing to change"));
    // Each unit passes systemd's own check.
    let verify = bed.run(
        2,
        "systemd-analyze verify /etc/systemd/system/pegasus-bed-*.service 2>&1",
    );
    assert!(verify.is_ok(), "systemd-analyze verify: {verify:?}");

    // Start, and the cluster is whole.
    let out = tool(&bed, &["start", good_s]);
    assert_eq!(out.status.code(), Some(0));
    let view = display_until(
        &bed,
        &good,
        Duration::from_secs(120),
        "every table fully healthy",
        |v| {
            v["tables"].as_array().is_some_and(|t| {
                !t.is_empty() && t.iter().all(|t| t["fully_healthy"] == t["partitions"])
            })
        },
    );
    let healthy_in = started.elapsed();
    let instances = view["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 8);
    assert!(
        instances
            .iter()
            .all(|i| i["unit"] == "active" && i["health"] == "ok"),
        "{view:#}"
    );
    assert_eq!(
        instances.iter().filter(|i| i["status"] == "leader").count(),
        1
    );
    assert_eq!(
        instances.iter().filter(|i| i["status"] == "alive").count(),
        4
    );
    eprintln!("deploy + start to fully healthy, 8 instances on {HOSTS} hosts: {healthy_in:?}");
    // The services run as the service user, under systemd, shut in.
    let user = bed
        .run(2, "ps -o user= -C pegasus_server | sort -u")
        .unwrap();
    assert_eq!(user.trim(), "pegasus");

    // pypegasus3 sets and gets through the metas' addresses.
    set_get(&bed, work.path());

    // Destroy leaves nothing on any host and no cluster root.
    let out = tool(&bed, &["destroy", good_s, "--yes"]);
    assert_eq!(out.status.code(), Some(0));
    nothing_left(
        &bed,
        "ls -d /opt/pegasus /data1/pegasus/bed /data2/pegasus/bed /etc/systemd/system/pegasus-* 2>/dev/null; \
         pgrep -c pegasus_server; true",
        "0",
    );
    let roots = in_client(&bed, move || zk_children(zk, "/pegasus")).unwrap();
    assert!(!roots.contains(&"bed".to_owned()), "{roots:?}");

    // The same cluster on a ZooKeeper ensemble the tool runs: three members on hosts 1–3,
    // Debian's ZooKeeper installed there (the bed's own keeps 2181 on host 1: these use 2182,
    // 2889 and 3889).
    let mut text = topology(&bed, "ens", [DISKS, DISKS, DISKS, DISKS])
        .replace(&format!("zookeeper = [\"{}:2181\"]\n", bed.addr(1)), "");
    for h in 1..=3 {
        text.push_str(&format!(
            "\n[[zookeeper]]\nhost = \"{}\"\nport = 2182\npeer_port = 2889\nelection_port = 3889\n",
            bed.addr(h)
        ));
    }
    let ens = write(&bed, "ens.toml", &text);
    let e = ens.to_str().unwrap();
    let (code, errors) = check_errors(&bed, &ens, &package);
    assert_eq!((code, errors.len()), (0, 0), "{errors:?}");
    // `check --apply` makes the folders (as `deploy` would), then checks.
    let out = tool(&bed, &["check", e, pkg, "--apply"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "applied: {}: replica-34801: made its folders",
            bed.addr(4)
        )),
        "{out:?}"
    );
    let owner = bed
        .run(4, "stat -c %U /data2/pegasus/ens/replica-34801")
        .unwrap();
    assert_eq!(owner.trim(), "pegasus");
    let out = tool(&bed, &["deploy", e, pkg]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains(
            "zookeeper-2182: wrote pegasus-ens-zookeeper-2182.service (ZooKeeper in /usr/share/zookeeper)"
        ),
        "{out:?}"
    );
    for h in 1..=3 {
        let myid = bed
            .run(h, "cat /opt/pegasus/ens/zookeeper-2182/data/myid")
            .unwrap();
        assert_eq!(myid.trim(), h.to_string());
    }
    let verify = bed.run(
        1,
        "systemd-analyze verify /etc/systemd/system/pegasus-ens-*.service 2>&1",
    );
    assert!(verify.is_ok(), "systemd-analyze verify: {verify:?}");
    let out = tool(&bed, &["start", e]);
    assert_eq!(out.status.code(), Some(0));
    let said = stdout(&out);
    assert!(
        said.find("zookeeper: marked /pegasus/ens").unwrap() < said.find("meta ").unwrap(),
        "the root claimed before a meta starts: {said}"
    );
    let view = fully_healthy(&bed, &ens);
    let modes: Vec<&str> = view["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["role"] == "zookeeper")
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(modes.len(), 3, "{view:#}");
    assert_eq!(
        modes.iter().filter(|m| **m == "leader").count(),
        1,
        "{modes:?}"
    );
    assert_eq!(
        modes.iter().filter(|m| **m == "follower").count(),
        2,
        "{modes:?}"
    );
    set_get(&bed, work.path());
    // A member down: the quorum of two carries on, once it has a leader (stopping the
    // ensemble's leader makes the other two elect one; the metas' sessions move meanwhile).
    bed.run(2, "systemctl stop pegasus-ens-zookeeper-2182")
        .unwrap();
    let stopped = Instant::now();
    let deadline = stopped + Duration::from_secs(60);
    while let Err(e) = try_set_get(&bed, work.path()) {
        assert!(
            Instant::now() < deadline,
            "not serving 60 s after a member stopped: {e}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    println!(
        "ensemble: serving again {:?} after one of three members stopped",
        stopped.elapsed()
    );
    let out = tool(&bed, &["destroy", e, "--yes"]);
    assert_eq!(out.status.code(), Some(0));
    nothing_left(
        &bed,
        "ls -d /opt/pegasus /etc/systemd/system/pegasus-* 2>/dev/null; \
         pgrep -c pegasus_server; pgrep -c -f '[z]ookeeper-2182/zoo.cfg'; true",
        "0\n0",
    );
}

/// After a `destroy`: `check` (a shell line listing what is left and counting processes)
/// prints just `counts` on every host.
fn nothing_left(bed: &Bed, check: &str, counts: &str) {
    for h in 1..=HOSTS {
        let left = bed.run(h, check).unwrap();
        assert_eq!(left.trim(), counts, "host {h} still has: {left}");
    }
}

/// pypegasus3 writes keys through the bed's metas (hosts 1–3, port 34601), then reads them.
fn set_get(bed: &Bed, work: &Path) {
    if let Err(e) = try_set_get(bed, work) {
        panic!("{e}");
    }
}

/// [`set_get`], or what pypegasus3 said when a phase failed.
fn try_set_get(bed: &Bed, work: &Path) -> Result<(), String> {
    let metas: Vec<String> = (1..=3).map(|h| format!("{}:34601", bed.addr(h))).collect();
    let script = pegasus_tests::bins::workspace_root().join("tests/compose/set_get.py");
    for phase in ["write", "read"] {
        let out = bed
            .client_command(&python())
            .current_dir(work)
            .arg(&script)
            .args([phase, &metas.join(",")])
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(format!(
                "pypegasus3 {phase}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(())
}

/// Skips (saying why) where the bed cannot be made; CI must make it.
fn bed_or_skip() -> bool {
    if let Some(why) = bed::unavailable() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to boot the bed: {why}"
        );
        eprintln!("skipped: {why}");
        return false;
    }
    true
}

/// The bed booted, ZooKeeper up, the cluster deployed and started, every table fully healthy:
/// the bed, its topology file, ZooKeeper's address, the metas' addresses.
fn running_cluster(work: &Path) -> (Bed, PathBuf, SocketAddr, Vec<SocketAddr>) {
    let package = pegasus_tests::bins::release_tarball(&work.join("first"));
    let bed = Bed::boot(HOSTS);
    let zk = bed.start_zookeeper(1);
    let topo = write(&bed, "bed.toml", &topology(&bed, "bed", [DISKS; 4]));
    let t = topo.to_str().unwrap();
    assert_eq!(
        tool(&bed, &["deploy", t, package.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(tool(&bed, &["start", t]).status.code(), Some(0));
    fully_healthy(&bed, &topo);
    let metas = (1..=3)
        .map(|h| SocketAddr::from((bed.addr(h), 34601)))
        .collect();
    (bed, topo, zk, metas)
}

fn fully_healthy(bed: &Bed, topology: &Path) -> serde_json::Value {
    display_until(
        bed,
        topology,
        Duration::from_secs(180),
        "every table fully healthy",
        |v| {
            v["tables"].as_array().is_some_and(|t| {
                !t.is_empty() && t.iter().all(|t| t["fully_healthy"] == t["partitions"])
            }) && v["instances"]
                .as_array()
                .is_some_and(|i| i.iter().all(|i| i["health"] == "ok"))
        },
    )
}

/// Sets the meta level (`INVALID`: only asks) from the client's namespace; the level before.
fn set_meta_level(bed: &Bed, metas: &[SocketAddr], level: i32) -> i32 {
    let metas = metas.to_vec();
    in_client(bed, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(Client::new(ClientOptions::new(metas)).meta_level(level))
            .unwrap()
    })
}

/// The meta level, asked from the client's namespace.
fn meta_level(bed: &Bed, metas: &[SocketAddr]) -> i32 {
    set_meta_level(bed, metas, meta_function_level::INVALID)
}

/// A running history: send it the windows to measure; join it for their stalls and the verdict.
type Running = (
    mpsc::Sender<Vec<(Instant, Instant)>>,
    std::thread::JoinHandle<(Vec<Stall>, Verdict)>,
);

/// Writers and readers on table `stat`, from the client's namespace, until the returned
/// sender is given the windows to measure: then the longest write stall in each, and the
/// verdict.
fn history(bed: &Bed, metas: &[SocketAddr]) -> Running {
    let (tx, rx) = mpsc::channel::<Vec<(Instant, Instant)>>();
    let (ready_tx, ready_rx) = mpsc::channel();
    let ns = bed.net().client();
    let metas = metas.to_vec();
    let handle = std::thread::spawn(move || {
        pegasus_tests::netns::enter(&ns);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut options = ClientOptions::new(metas);
            options.timeout = Duration::from_secs(3);
            let client = Client::new(options);
            let table = Arc::new(client.open_table("stat").await.unwrap());
            let history = History::start(&table, 8, 2);
            tokio::time::sleep(Duration::from_secs(1)).await;
            ready_tx.send(()).unwrap();
            let windows = tokio::task::spawn_blocking(move || rx.recv().unwrap())
                .await
                .unwrap();
            let stalls = windows
                .iter()
                .map(|(from, to)| history.longest_stall(*from, *to))
                .collect();
            (stalls, history.finish(&table).await)
        })
    });
    ready_rx.recv().expect("history started");
    (tx, handle)
}

/// The name of the package packed in `dir`.
fn release_name(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("PACKAGE"))
        .unwrap()
        .trim()
        .to_owned()
}

/// The release each instance runs, by `display`.
fn releases(bed: &Bed, topology: &Path) -> Vec<String> {
    let out = tool(bed, &["display", topology.to_str().unwrap(), "-j"]);
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    view["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["release"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A replica server holding primaries now, by `display`: its host number in the bed.
fn host_with_primaries(bed: &Bed, topology: &Path) -> usize {
    let view = fully_healthy(bed, topology);
    let addr = view["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["role"] == "replica" && i["copies"][0].as_u64().unwrap_or(0) > 0)
        .expect("a replica server with primaries")["addr"]
        .as_str()
        .unwrap()
        .to_owned();
    (1..=HOSTS)
        .find(|h| addr == format!("{}:34801", bed.addr(*h)))
        .unwrap()
}

/// A rolling restart of every instance, an upgrade to a second package and a rollback, under
/// writers and readers: nothing lost or stale, and no writer waits a second; beside them, a
/// naive restart of a replica server holding primaries (`systemctl restart`, no hand-over),
/// measured the same way. An upgrade is refused while the cluster's data is of a newer format.
/// Then the tool killed in the middle of a rolling restart: `display` shows the plan, `abort`
/// restores the meta level.
#[test]
fn a_rolling_restart_loses_nothing_and_no_write_waits_a_second() {
    if !bed_or_skip() {
        return;
    }
    let _heavy = pegasus_tests::cluster::HEAVY.blocking_lock();
    let work = tempfile::tempdir().unwrap();
    let (bed, topo, zk, metas) = running_cluster(work.path());
    let t = topo.to_str().unwrap();
    // The template starts the metas `steady`; the operator had set `lively`, which the plan
    // must give back.
    set_meta_level(&bed, &metas, meta_function_level::LIVELY);
    // The plan, without acting: replica servers first, the meta leader last.
    let out = tool(&bed, &["restart", t, "--rolling", "--dry-run"]);
    let plan = stdout(&out);
    assert_eq!(plan.matches(". replica ").count(), 4, "{plan}");
    assert_eq!(plan.matches(". meta ").count(), 3, "{plan}");

    let (windows, history) = history(&bed, &metas);
    let origin = (Instant::now(), std::time::SystemTime::now());
    // Each window's tool output, with when each line came.
    let mut said = Vec::new();
    // A naive restart of a replica server holding primaries.
    let h = host_with_primaries(&bed, &topo);
    let naive_from = Instant::now();
    bed.run(h, "systemctl restart pegasus-bed-replica-34801")
        .unwrap();
    fully_healthy(&bed, &topo);
    let naive_to = Instant::now();
    // The rolling restart of all 8 instances.
    let rolling_from = Instant::now();
    let (out, lines) = tool_timed(&bed, &["restart", t, "--rolling"]);
    said.push(lines);
    assert_eq!(out.status.code(), Some(0));
    let rolling_to = Instant::now();
    assert!(stdout(&out).contains("restart --rolling done: 8 steps"));

    // An upgrade to a second package (the same binaries under another version string), then
    // a rollback, each a rolling restart.
    let first = release_name(&work.path().join("first"));
    let second_tarball =
        pegasus_tests::bins::release_tarball_as(&work.path().join("second"), Some("0.1.1-next"));
    let second = release_name(&work.path().join("second"));
    assert_ne!(first, second);
    // Refused, touching nothing, while the cluster's data is of a newer format than it reads.
    in_client(&bed, move || zk_set(zk, "/pegasus/bed/format", "2"));
    let refused = tool(&bed, &["upgrade", t, second_tarball.to_str().unwrap()]);
    in_client(&bed, move || zk_set(zk, "/pegasus/bed/format", "1"));
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("the cluster's data is of format 2"),
        "{refused:?}"
    );
    assert!(releases(&bed, &topo).iter().all(|r| *r == first));
    let upgrade_from = Instant::now();
    let (out, lines) = tool_timed(&bed, &["upgrade", t, second_tarball.to_str().unwrap()]);
    said.push(lines);
    assert_eq!(out.status.code(), Some(0));
    let upgrade_to = Instant::now();
    assert!(
        releases(&bed, &topo).iter().all(|r| *r == second),
        "display shows the new release"
    );
    let (out, lines) = tool_timed(&bed, &["rollback", t]);
    said.push(lines);
    assert_eq!(out.status.code(), Some(0));
    let rollback_to = Instant::now();
    assert!(
        releases(&bed, &topo).iter().all(|r| *r == first),
        "display shows the old release"
    );

    // Scale out to five replica servers (host 1 gets one), balanced; then scale that one in:
    // every copy moved off it before it stops, and it leaves the topology file.
    let first_tarball = work.path().join("first").join(format!("{first}.tar.gz"));
    let bigger = write(
        &bed,
        "bigger.toml",
        &format!(
            "{}\n[[replica]]\nhost = \"{}\"\nport = 34801\ndata_dirs = [\"/data1/pegasus\", \"/data2/pegasus\"]\n",
            std::fs::read_to_string(&topo).unwrap(),
            bed.addr(1)
        ),
    );
    let b = bigger.to_str().unwrap();
    let (out, lines) = tool_timed(&bed, &["scale-out", b, first_tarball.to_str().unwrap()]);
    said.push(lines);
    assert_eq!(out.status.code(), Some(0));
    let view = fully_healthy(&bed, &bigger);
    let new_one = format!("{}:34801", bed.addr(1));
    let copies_on = |view: &serde_json::Value| -> u64 {
        view["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["addr"] == new_one.as_str() && i["role"] == "replica")
            .map_or(0, |i| {
                i["copies"][0].as_u64().unwrap() + i["copies"][1].as_u64().unwrap()
            })
    };
    // 4 partitions × 3 copies over 5 nodes: at least 2 each.
    assert!(
        copies_on(&view) >= 2,
        "the new node got its share: {view:#}"
    );
    assert_eq!(meta_level(&bed, &metas), meta_function_level::LIVELY);
    let scaled_out = Instant::now();
    let (out, lines) = tool_timed(&bed, &["scale-in", b, "-N", &new_one]);
    said.push(lines);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let drained = text
        .find(&format!("replica {new_one}: 0 copies left"))
        .expect("drained to 0 copies");
    let stopped = text.find("stopped, its unit and folders removed").unwrap();
    assert!(drained < stopped, "0 copies on it before its stop: {text}");
    let scaled_in = Instant::now();
    assert!(
        !std::fs::read_to_string(&bigger)
            .unwrap()
            .contains(&format!("host = \"{}\"\nport = 34801", bed.addr(1)))
    );
    let left = bed
        .run(1, "ls /etc/systemd/system/pegasus-bed-replica-* /opt/pegasus/bed/replica-34801 2>/dev/null; true")
        .unwrap();
    assert_eq!(left.trim(), "", "host 1 keeps nothing of it");
    let view = fully_healthy(&bed, &bigger);
    assert_eq!(view["instances"].as_array().unwrap().len(), 8);

    windows
        .send(vec![
            (naive_from, naive_to),
            (rolling_from, rolling_to),
            (upgrade_from, upgrade_to),
            (upgrade_to, rollback_to),
            (rollback_to, scaled_out),
            (scaled_out, scaled_in),
        ])
        .unwrap();
    let (stalls, verdict) = history.join().expect("history thread");
    eprintln!("history: {verdict}");
    eprintln!(
        "longest write stall of one writer: naive restart of a replica server holding primaries {:?}; rolling restart of 8 instances {:?} (took {:?}); upgrade {:?} (took {:?}); rollback {:?} (took {:?}); scale-out to 5 replica servers {:?} (took {:?}); scale-in of one {:?} (took {:?})",
        stalls[0].length,
        stalls[1].length,
        rolling_to - rolling_from,
        stalls[2].length,
        upgrade_to - upgrade_from,
        stalls[3].length,
        rollback_to - upgrade_to,
        stalls[4].length,
        scaled_out - rollback_to,
        stalls[5].length,
        scaled_in - scaled_out
    );
    let windows = [
        "rolling restart",
        "upgrade",
        "rollback",
        "scale-out",
        "scale-in",
    ];
    for (what, stall) in windows.iter().zip(&stalls[1..]) {
        eprintln!("{what}: {}", stall.describe(origin));
    }
    verdict.assert_nothing_lost_or_stale();
    assert!(verdict.acked > 1000, "{verdict}");
    // A rolling restart, and an upgrade and a rollback (each one), keep every stall under a
    // second; scaling is only measured (a new copy's learning may hold a write longer), with
    // what happened around a long stall shown all the same.
    let mut late = Vec::new();
    for (k, ((what, stall), lines)) in windows.iter().zip(&stalls[1..]).zip(&said).enumerate() {
        if stall.length >= Duration::from_millis(500) {
            let text = format!("{what}: {}", around(&bed, stall, lines, origin));
            eprintln!("{text}");
            if k < 3 && stall.length >= Duration::from_secs(1) {
                late.push(text);
            }
        }
    }
    assert!(
        late.is_empty(),
        "a writer waited a second:\n{}",
        late.join("\n")
    );
    assert_eq!(meta_level(&bed, &metas), meta_function_level::LIVELY);

    // The tool killed in the middle: the plan stays, with the level it changed. `resume`
    // carries out the rest; killed again, `abort` ends it.
    let bin = pegasus_tests::bins::built("pegasus-tools", "pegasus_cluster");
    let kill_after_the_first_step = || {
        let mut child = Guarded::spawn(
            bed.client_command(&bin)
                .args(["restart", t, "--rolling"])
                .env("XDG_STATE_HOME", bed.dir().join("state"))
                .stdout(std::process::Stdio::piped()),
        );
        let mut first = String::new();
        {
            use std::io::BufRead;
            let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
            for line in lines.by_ref() {
                let line = line.unwrap();
                eprintln!("(rolling) {line}");
                if line.starts_with("[1/8]") {
                    first = line;
                    break;
                }
            }
            child.kill().unwrap();
            child.wait().unwrap();
        }
        assert!(!first.is_empty(), "the first step never finished");
        assert_eq!(meta_level(&bed, &metas), meta_function_level::STEADY);
        let shown = stdout(&tool(&bed, &["display", t]));
        assert!(
            shown.contains("maintenance plan in progress: `restart --rolling`"),
            "{shown}"
        );
        assert!(
            shown.contains("1 of 8 steps done; meta level `lively` before it"),
            "{shown}"
        );
    };
    kill_after_the_first_step();
    let out = tool(&bed, &["resume", t]);
    assert_eq!(out.status.code(), Some(0));
    let said = stdout(&out);
    assert!(said.contains(": 1 of 8 steps done"), "{said}");
    assert!(!said.contains("[1/8]") && said.contains("[8/8]"), "{said}");
    assert_eq!(meta_level(&bed, &metas), meta_function_level::LIVELY);
    let shown = stdout(&tool(&bed, &["display", t]));
    assert!(!shown.contains("maintenance plan"), "{shown}");
    kill_after_the_first_step();
    let refused = tool(&bed, &["restart", t, "--rolling"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("a maintenance plan is in progress"));
    let out = tool(&bed, &["abort", t]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(meta_level(&bed, &metas), meta_function_level::LIVELY);
    let shown = stdout(&tool(&bed, &["display", t]));
    assert!(!shown.contains("maintenance plan"), "{shown}");
    fully_healthy(&bed, &topo);
}
