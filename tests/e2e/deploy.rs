//! `pegasus_cluster` on five real hosts: Debian trees booted with systemd as PID 1 and sshd
//! (`systemd-nspawn --boot`), each in its own network namespace (`pegasus_tests::bed`), ZooKeeper
//! on the first. The tool runs from the client's namespace, as from an operator's machine, with
//! the release tarball `./run.sh pack_server` makes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use pegasus_tests::bed::{self, Bed};

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
    let bin = pegasus_tests::bins::built("pegasus-tools", "pegasus_cluster");
    let out = bed
        .client_command(&bin)
        .args(args)
        .env("XDG_STATE_HOME", bed.dir().join("state"))
        .output()
        .expect("pegasus_cluster");
    eprintln!(
        "$ pegasus_cluster {}\n{}{}[exit {:?}]",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status.code()
    );
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
    let file = std::fs::File::open(format!("/var/run/netns/{ns}")).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("client thread")
}

/// ZooKeeper paths under `/pegasus` (in the bed's ensemble).
fn zk_children(zk: SocketAddr, path: &'static str) -> Result<Vec<String>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = zookeeper_client::Client::connect(&zk.to_string())
            .await
            .map_err(|e| e.to_string())?;
        match client.list_children(path).await {
            Ok(c) => Ok(c),
            Err(zookeeper_client::Error::NoNode) => Ok(vec![]),
            Err(e) => Err(e.to_string()),
        }
    })
}

/// Creates `path` (and its parents) in ZooKeeper with a child `apps`, as another cluster's root.
fn zk_plant(zk: SocketAddr, path: &'static str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = zookeeper_client::Client::connect(&zk.to_string())
            .await
            .unwrap();
        let mode = zookeeper_client::CreateMode::Persistent
            .with_acls(zookeeper_client::Acls::anyone_all());
        let mut p = String::new();
        for part in format!("{path}/apps").trim_start_matches('/').split('/') {
            p.push('/');
            p.push_str(part);
            let _ = client.create(&p, b"", &mode).await;
        }
    });
}

fn zk_remove(zk: SocketAddr, path: &'static str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = zookeeper_client::Client::connect(&zk.to_string())
            .await
            .unwrap();
        let _ = client.delete(&format!("{path}/apps"), None).await;
        let _ = client.delete(path, None).await;
    });
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
    if let Some(why) = bed::unavailable() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to boot the bed: {why}"
        );
        eprintln!("skipped: {why}");
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
    let metas: Vec<String> = (1..=3).map(|h| format!("{}:34601", bed.addr(h))).collect();
    let script = pegasus_tests::bins::workspace_root().join("tests/compose/set_get.py");
    for phase in ["write", "read"] {
        let out = bed
            .client_command(&python())
            .current_dir(work.path())
            .arg(&script)
            .args([phase, &metas.join(",")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pypegasus3 {phase}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Destroy leaves nothing on any host and no cluster root.
    let out = tool(&bed, &["destroy", good_s, "--yes"]);
    assert_eq!(out.status.code(), Some(0));
    for h in 1..=HOSTS {
        let left = bed
            .run(
                h,
                "ls -d /opt/pegasus /data1/pegasus/bed /data2/pegasus/bed /etc/systemd/system/pegasus-* 2>/dev/null; \
                 pgrep -c pegasus_server; true",
            )
            .unwrap();
        assert_eq!(left.trim(), "0", "host {h} still has: {left}");
    }
    let roots = in_client(&bed, move || zk_children(zk, "/pegasus")).unwrap();
    assert!(!roots.contains(&"bed".to_owned()), "{roots:?}");
}
