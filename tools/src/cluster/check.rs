//! `pegasus_cluster check`: every host, in parallel, before a deploy (and any time after).
//!
//! Per host: reachable over SSH; glibc new enough for the package; `fs.nr_open` room for the
//! units' `LimitNOFILE`; its clock against this machine's; every instance's port free (or held
//! by that instance's own running unit); every folder an instance writes creatable, with its
//! free space; ZooKeeper reachable from it (an ensemble the tool runs, once it serves; before,
//! each of its hosts has ZooKeeper installed and Java). Across hosts: the same number and size of data
//! disks on every replica server; the rendered configs checked as one cluster by configcheck
//! with each host's real facts (`configcheck facts`, run there). In ZooKeeper: the cluster root
//! free or this cluster's. Findings are data: one report for the fleet.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::fleet::{Fleet, Package};
use super::layout::Layout;
use super::ssh::{Remote, quote};
use super::topology::{Instance, Role, Topology};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Likely trouble.
    Warning,
    /// The deploy would fail or the cluster misbehave.
    Error,
}

/// One thing `check` found.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// The host (or `zookeeper`, `topology`).
    pub host: String,
    /// How bad.
    pub severity: Severity,
    /// Which check (`port`, `glibc`, `clock`, …).
    pub check: &'static str,
    /// What was found.
    pub message: String,
}

/// The units' `LimitNOFILE`.
pub const NOFILE: u64 = 65536;
/// A clock this far off another's is reported.
const CLOCK_WARN: f64 = 0.5;

/// Where `check` puts the package's configcheck on each host.
const PROBE_DIR: &str = "/tmp/pegasus_cluster_check";

/// A folder as seen on its host.
#[derive(Debug, Default)]
struct DirProbe {
    writable: bool,
    size_kb: u64,
    avail_kb: u64,
    device: String,
}

/// What one host told.
#[derive(Debug, Default)]
struct HostProbe {
    glibc: String,
    nr_open: u64,
    clock_offset: f64,
    listening: Vec<u16>,
    active: Vec<String>,
    dirs: BTreeMap<String, DirProbe>,
    zookeeper: Vec<(String, bool)>,
    /// ZooKeeper members here: their port and the installed ZooKeeper found (`-`: none).
    zookeeper_homes: Vec<(u16, String)>,
    java: bool,
    facts: Option<String>,
}

fn finding(host: &str, severity: Severity, check: &'static str, message: String) -> Finding {
    Finding {
        host: host.to_owned(),
        severity,
        check,
        message,
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Listening TCP ports from `/proc/net/tcp{,6}` (state `0A`).
fn listening_ports(text: &str) -> Vec<u16> {
    let mut ports: Vec<u16> = text
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() > 3 && cols[3] == "0A")
                .then(|| cols[1].rsplit(':').next())
                .flatten()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

fn probe_host(
    remote: &Remote<'_>,
    topology: &Topology,
    package: &Package,
    configcheck: &[u8],
) -> Result<HostProbe, String> {
    let instances: Vec<&Instance> = topology.on_host(&remote.host).collect();
    let units: Vec<String> = instances
        .iter()
        .map(|i| Layout::unit(topology, i))
        .collect();
    let mut dirs: Vec<String> = instances
        .iter()
        .flat_map(|i| Layout::writable(topology, i))
        .collect();
    dirs.push(topology.deploy_dir.clone());
    let mut script = String::from(
        "probe_dir() { d=$1; while [ ! -e \"$d\" ]; do d=$(dirname \"$d\"); done; \
         w=no; if [ -d \"$d\" ] && [ -w \"$d\" ]; then w=yes; fi; \
         df -Pk \"$d\" | awk -v w=$w -v p=\"$1\" 'NR==2 {print \"dir\", p, w, $2, $4, $1}'; }\n\
         echo \"glibc $(ldd --version 2>&1 | head -1 | awk '{print $NF}')\"\n\
         echo \"nr_open $(cat /proc/sys/fs/nr_open)\"\n\
         echo \"time $(date +%s.%N)\"\n\
         cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '{print \"tcp\", $2, $4}'\n",
    );
    if !units.is_empty() {
        script.push_str(&format!(
            "for u in {}; do echo \"unit $u $(systemctl is-active $u 2>/dev/null)\"; done\n",
            units.join(" ")
        ));
    }
    for d in &dirs {
        script.push_str(&format!("probe_dir {}\n", quote(d)));
    }
    for i in instances.iter().filter(|i| i.role == Role::Zookeeper) {
        if let Some(member) = &i.ensemble {
            script.push_str(&format!(
                "echo \"zkhome {} $({})\"\nif command -v java >/dev/null; then echo java yes; fi\n",
                i.port,
                member.find_home_script()
            ));
        }
    }
    for zk in &topology.zookeeper {
        let (h, p) = zk.rsplit_once(':').unwrap_or((zk, "2181"));
        script.push_str(&format!(
            "if timeout 3 bash -c {} 2>/dev/null; then echo \"zk {zk} yes\"; else echo \"zk {zk} no\"; fi\n",
            quote(&format!(
                "exec 3<>/dev/tcp/{h}/{p} && echo srvr >&3 && head -c1 <&3 | grep -q ."
            ))
        ));
    }
    let before = now();
    let out = remote.run(&script).map_err(|e| e.to_string())?;
    let after = now();
    let mut probe = HostProbe::default();
    let mut tcp = String::new();
    for line in out.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        match cols.as_slice() {
            ["glibc", v] => probe.glibc = (*v).to_owned(),
            ["nr_open", v] => probe.nr_open = v.parse().unwrap_or(0),
            ["time", t] => {
                probe.clock_offset = t.parse::<f64>().unwrap_or(0.0) - (before + after) / 2.0
            }
            ["tcp", local, state] => tcp.push_str(&format!("0 {local} 0 {state}\n")),
            ["unit", u, "active"] => probe.active.push((*u).to_owned()),
            ["dir", path, w, size, avail, dev] => {
                probe.dirs.insert(
                    (*path).to_owned(),
                    DirProbe {
                        writable: *w == "yes",
                        size_kb: size.parse().unwrap_or(0),
                        avail_kb: avail.parse().unwrap_or(0),
                        device: (*dev).to_owned(),
                    },
                );
            }
            ["zk", zk, ok] => probe.zookeeper.push(((*zk).to_owned(), *ok == "yes")),
            ["zkhome", port, home] => probe
                .zookeeper_homes
                .push((port.parse().unwrap_or(0), (*home).to_owned())),
            ["java", "yes"] => probe.java = true,
            _ => {}
        }
    }
    probe.listening = listening_ports(&tcp);
    // The host's facts, from the package's own configcheck, run there.
    let bin = format!("{PROBE_DIR}/{}/configcheck", package.name);
    if remote.sha256(&bin).ok().flatten().is_none() {
        remote
            .put(&bin, configcheck, 0o755)
            .map_err(|e| e.to_string())?;
    }
    probe.facts = remote.run(&format!("{bin} facts")).ok();
    Ok(probe)
}

/// Checks the fleet for `package`; every finding, worst first per host.
pub fn check(fleet: &Fleet, package: &Package, template: &str) -> Vec<Finding> {
    let topology = &fleet.topology;
    let mut findings = Vec::new();
    let configcheck = match package.file("bin/configcheck") {
        Ok(b) => b,
        Err(e) => {
            return vec![finding(
                "package",
                Severity::Error,
                "package",
                e.to_string(),
            )];
        }
    };
    let probes = fleet.each_host(|r| probe_host(r, topology, package, &configcheck));
    // An ensemble the tool runs serves only after `start`: until then, what is checked is that
    // it can run (installed, ports free), not that it answers.
    let serving = super::zk::ensemble_serves(topology);
    if !serving {
        findings.push(finding(
            "zookeeper",
            Severity::Info,
            "zookeeper",
            format!(
                "the ensemble ({}) does not serve yet: `pegasus_cluster start` starts it",
                topology.zookeeper.join(",")
            ),
        ));
    }
    let mut facts = BTreeMap::new();
    for (host, probe) in &probes {
        let probe = match probe {
            Ok(p) => p,
            Err(e) => {
                findings.push(finding(host, Severity::Error, "ssh", e.clone()));
                continue;
            }
        };
        host_findings(topology, package, host, probe, serving, &mut findings);
        if let Some(f) = &probe.facts {
            facts.insert(host.clone(), f.clone());
        }
    }
    disks(topology, &probes, &mut findings);
    findings.extend(configs(topology, template, &facts));
    if serving {
        findings.extend(zookeeper_root(topology));
    }
    findings.sort_by(|a, b| (&a.host, b.severity).cmp(&(&b.host, a.severity)));
    findings
}

fn host_findings(
    topology: &Topology,
    package: &Package,
    host: &str,
    probe: &HostProbe,
    zookeeper_serves: bool,
    findings: &mut Vec<Finding>,
) {
    if let Some(need) = &package.glibc
        && version_lt(&probe.glibc, need)
    {
        findings.push(finding(
            host,
            Severity::Error,
            "glibc",
            format!(
                "glibc {} is older than the package's {need}: its binaries will not start",
                probe.glibc
            ),
        ));
    }
    if probe.nr_open < NOFILE {
        findings.push(finding(
            host,
            Severity::Error,
            "nofile",
            format!(
                "fs.nr_open is {}: the units' LimitNOFILE={NOFILE} cannot be granted",
                probe.nr_open
            ),
        ));
    }
    if probe.clock_offset.abs() > CLOCK_WARN {
        findings.push(finding(
            host,
            Severity::Warning,
            "clock",
            format!(
                "clock is {:+.2}s off this machine's: leases and logs assume synchronized clocks (run NTP)",
                probe.clock_offset
            ),
        ));
    }
    for i in topology.on_host(host) {
        let own = probe.active.contains(&Layout::unit(topology, i));
        let ports = std::iter::once(i.port).chain(
            i.ensemble
                .iter()
                .flat_map(|e| [e.peer_port, e.election_port]),
        );
        for port in ports {
            if probe.listening.contains(&port) && !own {
                findings.push(finding(
                    host,
                    Severity::Error,
                    "port",
                    format!("port {port} of {} {} is already in use", i.role, i.addr()),
                ));
            }
        }
        for dir in Layout::writable(topology, i) {
            match probe.dirs.get(&dir) {
                Some(d) if !d.writable => findings.push(finding(
                    host,
                    Severity::Error,
                    "dir",
                    format!("`{dir}` cannot be created: its nearest folder is not writable"),
                )),
                Some(d) if d.avail_kb < 1 << 20 => findings.push(finding(
                    host,
                    Severity::Warning,
                    "dir",
                    format!(
                        "`{dir}` has {} MiB free (on {})",
                        d.avail_kb >> 10,
                        d.device
                    ),
                )),
                _ => {}
            }
        }
    }
    for (port, home) in &probe.zookeeper_homes {
        if home == "-" {
            findings.push(finding(
                host,
                Severity::Error,
                "zookeeper",
                format!(
                    "no ZooKeeper installed for member :{port} (no bin/zkServer.sh): install it (Debian: `apt install zookeeper`) or set `home`"
                ),
            ));
        }
    }
    if !probe.zookeeper_homes.is_empty() && !probe.java {
        findings.push(finding(
            host,
            Severity::Error,
            "zookeeper",
            "no `java` for ZooKeeper: install a JRE (Debian: `apt install default-jre-headless`)"
                .into(),
        ));
    }
    for (zk, ok) in &probe.zookeeper {
        if !ok && zookeeper_serves {
            findings.push(finding(
                host,
                Severity::Error,
                "zookeeper",
                format!("ZooKeeper `{zk}` is unreachable from this host"),
            ));
        }
    }
}

/// Hosts whose glibc is older than `package`'s (`host: found`): its binaries would not start
/// there.
pub fn glibc_too_old(fleet: &Fleet, package: &Package) -> Vec<String> {
    let Some(need) = &package.glibc else {
        return Vec::new();
    };
    fleet
        .each_host(|r| r.run("ldd --version 2>&1 | head -1 | awk '{print $NF}'"))
        .into_iter()
        .filter_map(|(host, found)| match found {
            Ok(v) if !version_lt(v.trim(), need) => None,
            Ok(v) => Some(format!("{host}: glibc {} < {need}", v.trim())),
            Err(e) => Some(e.to_string()),
        })
        .collect()
}

/// `a < b` for dotted versions.
fn version_lt(a: &str, b: &str) -> bool {
    let parse = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(a) < parse(b)
}

/// The guide's "same number and performance of disks" on every replica server.
fn disks(
    topology: &Topology,
    probes: &[(String, Result<HostProbe, String>)],
    findings: &mut Vec<Finding>,
) {
    let replicas: Vec<&Instance> = topology.of(Role::Replica).collect();
    let Some(most) = replicas.iter().map(|i| i.data_dirs.len()).max() else {
        return;
    };
    // The smallest data disk of any replica server against the largest.
    let sizes: Vec<(String, u64)> = replicas
        .iter()
        .filter_map(|i| {
            let Some(Ok(probe)) = probes.iter().find(|(h, _)| *h == i.host).map(|(_, p)| p) else {
                return None;
            };
            Layout::data_dirs(topology, i)
                .iter()
                .filter_map(|(_, d)| probe.dirs.get(d).map(|p| p.size_kb))
                .min()
                .map(|kb| (i.addr(), kb))
        })
        .collect();
    if let (Some(small), Some(large)) = (
        sizes.iter().min_by_key(|(_, kb)| *kb),
        sizes.iter().max_by_key(|(_, kb)| *kb),
    ) && small.1 * 10 < large.1 * 9
    {
        findings.push(finding(
            &small.0,
            Severity::Warning,
            "disks",
            format!(
                "replica {}'s smallest data disk has {} GiB, {}'s largest {} GiB: the small one fills first",
                small.0,
                small.1 >> 20,
                large.0,
                large.1 >> 20
            ),
        ));
    }
    for i in &replicas {
        if i.data_dirs.len() < most {
            findings.push(finding(
                &i.host,
                Severity::Error,
                "disks",
                format!(
                    "replica {} has {} data dir(s), others {most}: partitions are spread by disk count, so this node fills first",
                    i.addr(),
                    i.data_dirs.len()
                ),
            ));
        }
        let Some(Ok(probe)) = probes.iter().find(|(h, _)| *h == i.host).map(|(_, p)| p) else {
            continue;
        };
        let dirs = Layout::data_dirs(topology, i);
        let devices: Vec<&str> = dirs
            .iter()
            .filter_map(|(_, d)| probe.dirs.get(d).map(|p| p.device.as_str()))
            .collect();
        let mut unique = devices.clone();
        unique.sort_unstable();
        unique.dedup();
        if unique.len() < devices.len() {
            findings.push(finding(
                &i.host,
                Severity::Warning,
                "disks",
                format!(
                    "replica {}: several data dirs on one filesystem ({}): they share its I/O and space",
                    i.addr(),
                    unique.join(", ")
                ),
            ));
        }
    }
}

/// configcheck's rule that every node has as many data dirs: metas and collectors have none,
/// so it runs over the replica servers alone.
const SAME_DISK_COUNT: &str = "PC093";

/// The rendered configs, checked as one cluster by configcheck with each host's facts: every
/// instance together, then the replica servers alone for the disk-count rule.
fn configs(topology: &Topology, template: &str, facts: &BTreeMap<String, String>) -> Vec<Finding> {
    let all: Vec<&Instance> = topology.servers().collect();
    let replicas: Vec<&Instance> = topology.of(Role::Replica).collect();
    let mut findings = configs_of(
        topology,
        template,
        facts,
        &all,
        &["--ignore", SAME_DISK_COUNT],
    );
    findings.extend(
        configs_of(topology, template, facts, &replicas, &[])
            .into_iter()
            .filter(|f| f.message.contains(SAME_DISK_COUNT)),
    );
    findings
}

fn configs_of(
    topology: &Topology,
    template: &str,
    facts: &BTreeMap<String, String>,
    instances: &[&Instance],
    extra: &[&str],
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            return vec![finding("local", Severity::Error, "config", e.to_string())];
        }
    };
    let mut names = BTreeMap::new();
    for i in instances {
        let text = match Layout::config(topology, template, i) {
            Ok(t) => t,
            Err(e) => {
                findings.push(finding(&i.host, Severity::Error, "config", e.to_string()));
                continue;
            }
        };
        let name = format!("{}_{}", i.ip, i.id());
        let _ = std::fs::write(dir.path().join(format!("{name}.ini")), text);
        if let Some(f) = facts.get(&i.host) {
            let _ = std::fs::write(dir.path().join(format!("{name}.facts.json")), f);
        }
        names.insert(format!("{name}.ini"), i.host.clone());
    }
    let folder = dir.path().display().to_string();
    let mut args = vec!["configcheck", "check", "--format", "json", "--exit-zero"];
    args.extend(extra);
    args.push(&folder);
    let cli = <configcheck::cli::Cli as clap::Parser>::parse_from(args);
    let mut out = Vec::new();
    let mut err = Vec::new();
    if let Err(e) = configcheck::cli::run(cli, &mut out, &mut err) {
        findings.push(finding("local", Severity::Error, "config", e.to_string()));
        return findings;
    }
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
    for file in report["files"].as_array().into_iter().flatten() {
        let path = file["path"].as_str().unwrap_or_default();
        let base = path.rsplit('/').next().unwrap_or(path);
        let host = names.get(base).cloned().unwrap_or_else(|| base.to_owned());
        for f in file["findings"].as_array().into_iter().flatten() {
            let severity = match f["severity"].as_str() {
                Some("error") => Severity::Error,
                Some("warning") => Severity::Warning,
                _ => Severity::Info,
            };
            findings.push(finding(
                &host,
                severity,
                "config",
                format!(
                    "{} ({}): {}",
                    base.trim_end_matches(".ini"),
                    f["code"].as_str().unwrap_or_default(),
                    f["message"].as_str().unwrap_or_default()
                ),
            ));
        }
    }
    findings
}

fn zookeeper_root(topology: &Topology) -> Vec<Finding> {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return vec![finding(
                "local",
                Severity::Error,
                "zookeeper",
                e.to_string(),
            )];
        }
    };
    let result = rt.block_on(async {
        let zk = super::zk::connect(topology).await?;
        super::zk::root(&zk, topology).await
    });
    match result {
        Ok(super::zk::Root::Foreign(what)) => vec![finding(
            "zookeeper",
            Severity::Error,
            "cluster-root",
            format!(
                "`{}` belongs to {what}: deploying would mix two clusters",
                topology.cluster_root()
            ),
        )],
        Ok(_) => vec![],
        Err(e) => vec![finding("zookeeper", Severity::Error, "zookeeper", e)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_ports_come_from_proc_net_tcp() {
        let text = "0 0100007F:1F90 0 0A\n0 00000000:0016 0 0A\n0 0100007F:D431 0 01\n";
        assert_eq!(listening_ports(text), vec![22, 8080]);
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(version_lt("2.31", "2.36"));
        assert!(!version_lt("2.36", "2.36"));
        assert!(version_lt("2.9", "2.10"));
    }
}
