//! Real hosts for the deploy tool's tests: each host is a Debian 12 tree booted with
//! `systemd-nspawn --boot` (systemd as PID 1, journald, dbus, sshd) in a network namespace of
//! its own ([`crate::netns`]: 10.77.0.x on a bridge, the client at 10.77.0.100), so the tool
//! reaches them over SSH and runs its units under systemd exactly as on a fleet.
//!
//! The tree is made once per machine with `debootstrap` and cached
//! (`$PEGASUS_BED_ROOTFS`, default `~/.cache/pegasus-bed/rootfs`, made again when its recipe
//! changes); every host boots it with `--volatile=overlay` (read-only, with a tmpfs on top), so
//! hosts share nothing, start from the same state every time, and leave nothing behind. The tree
//! has sshd with a test key for root, Debian's ZooKeeper (a unit `bed-zookeeper.service`, not
//! enabled) and a JRE. Needs root, `systemd-nspawn` (`systemd-container`) and `debootstrap`.

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::Net;
use crate::process::Guarded;

/// What the tree holds; a cached tree with another recipe is made again.
const RECIPE: &str = "bookworm minbase +systemd,systemd-sysv,dbus,openssh-server,zookeeper,\
default-jre-headless,ca-certificates,iproute2,procps v1";

/// Packages debootstrap adds to `minbase`.
const PACKAGES: &str = "systemd,systemd-sysv,dbus,openssh-server,zookeeper,default-jre-headless,\
ca-certificates,iproute2,procps";

/// ZooKeeper on a host of the bed (Debian's install), when a test starts it.
const ZOOKEEPER_UNIT: &str = "[Unit]\nDescription=ZooKeeper of the test bed\n\n[Service]\n\
ExecStart=/usr/bin/java -Xmx256m -cp /usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar \
org.apache.zookeeper.server.quorum.QuorumPeerMain /etc/bed-zookeeper.cfg\n";

/// ZooKeeper's configuration on the bed.
const ZOOKEEPER_CFG: &str = "tickTime=1000\ninitLimit=10\nsyncLimit=5\n\
dataDir=/var/lib/bed-zookeeper\nclientPort=2181\nadmin.enableServer=false\n\
4lw.commands.whitelist=ruok,srvr\n";

/// Booted hosts; powered off and removed when dropped.
pub struct Bed {
    net: Net,
    hosts: Vec<Guarded>,
    dir: tempfile::TempDir,
}

/// Why the bed cannot be made here, if it cannot.
pub fn unavailable() -> Option<String> {
    if !Net::available() {
        return Some("network namespaces cannot be made here (not root?)".into());
    }
    for tool in ["systemd-nspawn", "debootstrap", "ssh"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

fn cache() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/pegasus-bed")
}

/// The cached tree, made first if missing or of another recipe (several test processes may
/// ask at once: one makes it, under a lock, the others wait).
pub fn rootfs() -> PathBuf {
    let root = std::env::var_os("PEGASUS_BED_ROOTFS")
        .map_or_else(|| cache().join("rootfs"), PathBuf::from);
    let parent = root.parent().expect("rootfs has a parent").to_path_buf();
    fs::create_dir_all(&parent).expect("bed cache dir");
    let stamp = root.join("etc/pegasus-bed-recipe");
    if fs::read_to_string(&stamp).is_ok_and(|r| r == RECIPE) {
        return root;
    }
    // flock(1) around the whole build: the build runs under it.
    let script = format!(
        "set -e\n\
         [ \"$(cat {stamp} 2>/dev/null)\" = '{RECIPE}' ] && exit 0\n\
         rm -rf {tmp}\n\
         debootstrap --variant=minbase --include={PACKAGES} bookworm {tmp} > {log} 2>&1\n\
         rm -rf {root}\n\
         mv {tmp} {root}\n",
        stamp = stamp.display(),
        tmp = parent.join("rootfs.tmp").display(),
        log = parent.join("debootstrap.log").display(),
        root = root.display(),
    );
    let out = Command::new("flock")
        .arg("-x")
        .arg(parent.join("rootfs.lock"))
        .args(["-c", &script])
        .output()
        .expect("flock");
    assert!(
        out.status.success(),
        "debootstrap of the bed failed (see {}): {}",
        parent.join("debootstrap.log").display(),
        String::from_utf8_lossy(&out.stderr)
    );
    finish_tree(&root);
    fs::write(&stamp, RECIPE).expect("stamp");
    root
}

/// What the tree needs beyond its packages: root's key, a name from the machine, ZooKeeper's
/// unit. Runs on the freshly made tree, before it is stamped.
fn finish_tree(root: &Path) {
    let key = key_path();
    if !key.exists() {
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen");
        assert!(ok.success(), "ssh-keygen");
    }
    let ssh = root.join("root/.ssh");
    fs::create_dir_all(&ssh).unwrap();
    fs::copy(key.with_extension("pub"), ssh.join("authorized_keys")).unwrap();
    let chmod = |p: &Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    };
    chmod(&ssh, 0o700);
    chmod(&ssh.join("authorized_keys"), 0o600);
    // nspawn names each host after its machine (`--machine`) when the tree names none.
    let _ = fs::remove_file(root.join("etc/hostname"));
    fs::write(root.join("etc/machine-id"), "").unwrap();
    fs::write(
        root.join("etc/systemd/system/bed-zookeeper.service"),
        ZOOKEEPER_UNIT,
    )
    .unwrap();
    fs::write(root.join("etc/bed-zookeeper.cfg"), ZOOKEEPER_CFG).unwrap();
    fs::create_dir_all(root.join("var/lib/bed-zookeeper")).unwrap();
}

/// The SSH key the bed's root accepts (made once, beside the tree).
pub fn key_path() -> PathBuf {
    cache().join("id_ed25519")
}

impl Bed {
    /// Boots `hosts` hosts (10.77.0.11, .12, …), waits until each one's sshd answers, and writes
    /// a `known_hosts` with the tree's host key for every address (so the tool's host-key
    /// checking stays strict).
    pub fn boot(hosts: usize) -> Bed {
        let rootfs = rootfs();
        let net = Net::create_named(&format!("bed{}", std::process::id()), hosts);
        let dir = tempfile::tempdir().expect("bed dir");
        let mut children = Vec::new();
        for i in 1..=hosts {
            let log = File::create(dir.path().join(format!("h{i}.console"))).unwrap();
            let child = Guarded::spawn(
                Command::new("systemd-nspawn")
                    .arg("-D")
                    .arg(&rootfs)
                    .args([
                        "--volatile=overlay",
                        "--boot",
                        "--register=no",
                        "--keep-unit",
                    ])
                    .arg(format!(
                        "--network-namespace-path=/run/netns/{}",
                        net.host(i)
                    ))
                    .arg(format!("--machine=h{i}"))
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log),
            );
            children.push(child);
        }
        let bed = Bed {
            net,
            hosts: children,
            dir,
        };
        let host_key = fs::read_to_string(rootfs.join("etc/ssh/ssh_host_ed25519_key.pub"))
            .expect("the tree's host key");
        let mut known = String::new();
        for i in 1..=hosts {
            let key: Vec<&str> = host_key.split_whitespace().take(2).collect();
            known.push_str(&format!("{} {}\n", bed.addr(i), key.join(" ")));
        }
        fs::write(bed.known_hosts(), known).unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        for i in 1..=hosts {
            while bed
                .run(i, "systemctl is-system-running --wait >/dev/null; true")
                .is_err()
            {
                assert!(
                    Instant::now() < deadline,
                    "host {i} did not boot: {}",
                    bed.console(i)
                );
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        bed
    }

    /// The network the hosts are on (cuts, the client's namespace).
    pub fn net(&self) -> &Net {
        &self.net
    }

    /// Host `i`'s address (from 1).
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        self.net.addr(i)
    }

    /// The `known_hosts` file the tool must use.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// A folder for the test's files (topologies, logs), removed with the bed.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What host `i` printed on its console so far.
    pub fn console(&self, i: usize) -> String {
        fs::read_to_string(self.dir.path().join(format!("h{i}.console"))).unwrap_or_default()
    }

    /// Runs `script` as root on host `i` over SSH (from the client's namespace); its stdout, or
    /// what went wrong.
    pub fn run(&self, i: usize, script: &str) -> Result<String, String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.net.client(), "ssh"])
            .args(self.ssh_args())
            .arg(format!("root@{}", self.addr(i)))
            .arg(script)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// `ssh` options that reach the bed's hosts.
    fn ssh_args(&self) -> Vec<String> {
        vec![
            "-i".into(),
            key_path().display().to_string(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "ConnectTimeout=3".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts().display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
        ]
    }

    /// Starts ZooKeeper on host `i` (port 2181) and waits until it answers.
    pub fn start_zookeeper(&self, i: usize) -> SocketAddr {
        self.run(i, "systemctl start bed-zookeeper")
            .unwrap_or_else(|e| panic!("zookeeper on host {i}: {e}"));
        let addr = SocketAddr::from((self.addr(i), 2181));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = self
                .run(
                    i,
                    "exec 3<>/dev/tcp/127.0.0.1/2181 && echo srvr >&3 && timeout 2 cat <&3",
                )
                // Serving (`ruok` answers before ZooKeeper takes sessions).
                .is_ok_and(|s| s.contains("Mode: "));
            if ok {
                return addr;
            }
            assert!(
                Instant::now() < deadline,
                "zookeeper did not start on host {i}: {:?}",
                self.run(i, "journalctl -u bed-zookeeper -n 30 --no-pager")
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Runs `program` with `args` in the client's namespace (as the operator's machine).
    pub fn client_command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.net.client()]).arg(program);
        cmd
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        // SIGTERM asks nspawn to power the host off; SIGKILL (the guard's drop) after a few
        // seconds.
        for child in &self.hosts {
            child.ask_to_end();
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for child in &mut self.hosts {
            child.end_within(deadline.saturating_duration_since(Instant::now()));
        }
    }
}
