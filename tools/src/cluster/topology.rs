//! The topology file: which hosts run what, and how to reach them (TOML).
//!
//! Read with spans, so every mistake is reported at its place in the file, and checked whole
//! before any host is touched: unknown keys, two instances on one `host:port`, a host name that
//! does not resolve, fewer replica servers than the tables' copies.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{Diagnostic, NamedSource, SourceSpan};
use serde::Deserialize;
use toml::Spanned;

/// An annotated example, printed by `pegasus_cluster template`.
pub const TEMPLATE: &str = include_str!("template.toml");

/// The roles an instance can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A member of the ZooKeeper ensemble the tool runs (`[[zookeeper]]` hosts).
    Zookeeper,
    /// A MetaServer.
    Meta,
    /// A ReplicaServer.
    Replica,
    /// The Collector.
    Collector,
}

impl Role {
    /// Pegasus's name, as in `-app_list`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Zookeeper => "zookeeper",
            Role::Meta => "meta",
            Role::Replica => "replica",
            Role::Collector => "collector",
        }
    }

    /// Whether it is a Pegasus server (a release, a `config.ini`), not ZooKeeper.
    pub fn is_pegasus(self) -> bool {
        self != Role::Zookeeper
    }

    /// The port Pegasus's template gives this role.
    pub fn default_port(self) -> u16 {
        match self {
            Role::Zookeeper => 2181,
            Role::Meta => 34601,
            Role::Replica => 34801,
            Role::Collector => 34101,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How to reach the hosts: the system's OpenSSH, so `~/.ssh/config`, agents and `known_hosts`
/// work as for any `ssh`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ssh {
    /// The remote user (it must be root or have passwordless sudo).
    #[serde(default = "default_user")]
    pub user: String,
    /// The SSH port.
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// A private key, if not the agent's or `~/.ssh/config`'s.
    pub identity_file: Option<PathBuf>,
    /// A `known_hosts` file, if not the user's.
    pub known_hosts: Option<PathBuf>,
    /// `yes` (default: an unknown host key stops the tool) or `accept-new` (recorded on first
    /// contact, as `ssh -o StrictHostKeyChecking=accept-new`).
    #[serde(default = "default_host_key_checking")]
    pub host_key_checking: Spanned<String>,
}

impl Default for Ssh {
    fn default() -> Self {
        Ssh {
            user: default_user(),
            port: default_ssh_port(),
            identity_file: None,
            known_hosts: None,
            host_key_checking: Spanned::new(0..0, default_host_key_checking().into_inner()),
        }
    }
}

fn default_user() -> String {
    "root".into()
}

fn default_ssh_port() -> u16 {
    22
}

fn default_host_key_checking() -> Spanned<String> {
    Spanned::new(0..0, "yes".into())
}

fn default_deploy_dir() -> String {
    "/opt/pegasus".into()
}

fn default_service_user() -> String {
    "pegasus".into()
}

/// One instance as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    host: Spanned<String>,
    port: Option<Spanned<u16>>,
    /// Replica servers: their data directories (Pegasus's `data_dirs`, tagged by their last
    /// path component); default: under the instance's own directory.
    #[serde(default)]
    data_dirs: Vec<String>,
    /// Replica servers: the interface whose address it advertises.
    primary_interface: Option<String>,
}

/// A ZooKeeper member the tool configures and runs, as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZookeeper {
    host: String,
    port: Option<u16>,
    peer_port: Option<u16>,
    election_port: Option<u16>,
    home: Option<String>,
}

/// An entry of `zookeeper`: an existing ensemble's `host:port`, or a `[[zookeeper]]` host.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum ZookeeperEntry {
    Existing(String),
    Managed(RawZookeeper),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: Spanned<String>,
    #[serde(default = "default_deploy_dir")]
    deploy_dir: String,
    #[serde(default = "default_service_user")]
    service_user: String,
    template: Option<PathBuf>,
    zookeeper: Vec<Spanned<ZookeeperEntry>>,
    #[serde(default)]
    ssh: Ssh,
    #[serde(default)]
    vars: BTreeMap<String, String>,
    #[serde(default)]
    meta: Vec<RawInstance>,
    #[serde(default)]
    replica: Vec<RawInstance>,
    #[serde(default)]
    collector: Vec<RawInstance>,
    copies: Option<Spanned<usize>>,
}

/// One instance: a role on a host and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// Its role.
    pub role: Role,
    /// The host as written (an address or a name SSH resolves).
    pub host: String,
    /// The address the name resolved to.
    pub ip: IpAddr,
    /// Its port.
    pub port: u16,
    /// Replica servers: data directories.
    pub data_dirs: Vec<String>,
    /// Replica servers: the interface to advertise.
    pub primary_interface: Option<String>,
    /// ZooKeeper members: their place in the ensemble.
    pub ensemble: Option<Member>,
}

/// A ZooKeeper member's place in the ensemble the tool runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its `myid` (1, 2, … in file order).
    pub id: u32,
    /// The port the members replicate on.
    pub peer_port: u16,
    /// The port they elect a leader on.
    pub election_port: u16,
    /// The installed ZooKeeper (the folder with `bin/zkServer.sh`), if the topology names it;
    /// else the first of [`ZOOKEEPER_HOMES`] found on the host.
    pub home: Option<String>,
}

/// Where an installed ZooKeeper is looked for: Debian's and Ubuntu's package, then Apache's
/// tarball in the usual places.
pub const ZOOKEEPER_HOMES: [&str; 3] = [
    "/usr/share/zookeeper",
    "/opt/zookeeper",
    "/usr/local/zookeeper",
];

impl Member {
    /// Where its installed ZooKeeper may be: the topology's `home`, else [`ZOOKEEPER_HOMES`].
    pub fn homes(&self) -> Vec<String> {
        match &self.home {
            Some(h) => vec![h.clone()],
            None => ZOOKEEPER_HOMES.iter().map(|h| (*h).to_owned()).collect(),
        }
    }

    /// A shell line that prints the first of [`Member::homes`] with `bin/zkServer.sh`, or `-`.
    pub fn find_home_script(&self) -> String {
        let homes: Vec<String> = self.homes().iter().map(|h| super::ssh::quote(h)).collect();
        format!(
            "f=-; for h in {}; do if [ -x \"$h/bin/zkServer.sh\" ]; then f=$h; break; fi; done; echo \"$f\"",
            homes.join(" ")
        )
    }
}

impl Instance {
    /// `ip:port`, the address clients and the metas know it by.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// `meta-34601`: its folder under the deploy dir, and its unit's suffix.
    pub fn id(&self) -> String {
        format!("{}-{}", self.role, self.port)
    }
}

/// A checked topology.
#[derive(Clone, Debug)]
pub struct Topology {
    /// The cluster's name (`cluster_root` is `/pegasus/<name>`).
    pub name: String,
    /// Where releases and instances live on each host.
    pub deploy_dir: String,
    /// The user the services run as (created by `deploy` when missing).
    pub service_user: String,
    /// A template to fill instead of the package's `bin/config.ini`.
    pub template: Option<PathBuf>,
    /// The ZooKeeper ensemble, `host:port` each (the `[[zookeeper]]` members' when the tool
    /// runs it).
    pub zookeeper: Vec<String>,
    /// How to reach the hosts.
    pub ssh: Ssh,
    /// Values for the template's other `%{…}` tokens.
    pub vars: BTreeMap<String, String>,
    /// Every instance: ZooKeeper members (when the tool runs the ensemble), metas, replica
    /// servers, collectors.
    pub instances: Vec<Instance>,
    /// How many copies a table has (at least this many replica servers are needed).
    pub copies: usize,
}

impl Topology {
    /// Instances of `role`, in file order.
    pub fn of(&self, role: Role) -> impl Iterator<Item = &Instance> {
        self.instances.iter().filter(move |i| i.role == role)
    }

    /// The instances on `host`, in file order.
    pub fn on_host<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a Instance> + 'a {
        self.instances.iter().filter(move |i| i.host == host)
    }

    /// Every host, once, in file order.
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = Vec::new();
        for i in &self.instances {
            if !hosts.contains(&i.host) {
                hosts.push(i.host.clone());
            }
        }
        hosts
    }

    /// The Pegasus servers (every instance but ZooKeeper members).
    pub fn servers(&self) -> impl Iterator<Item = &Instance> {
        self.instances.iter().filter(|i| i.role.is_pegasus())
    }

    /// Whether the tool runs the ZooKeeper ensemble (`[[zookeeper]]` hosts).
    pub fn runs_zookeeper(&self) -> bool {
        self.of(Role::Zookeeper).next().is_some()
    }

    /// Whether `host` runs a Pegasus server (and so needs the release).
    pub fn serves_on(&self, host: &str) -> bool {
        self.on_host(host).any(|i| i.role.is_pegasus())
    }

    /// The metas' `ip:port`s, comma-separated (`meta.server.list`).
    pub fn meta_list(&self) -> String {
        self.of(Role::Meta)
            .map(Instance::addr)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The ZooKeeper path this cluster owns.
    pub fn cluster_root(&self) -> String {
        format!("/pegasus/{}", self.name)
    }

    /// Finds an instance by `host:port` or `ip:port`.
    pub fn find(&self, addr: &str) -> Option<&Instance> {
        self.instances
            .iter()
            .find(|i| i.addr() == addr || format!("{}:{}", i.host, i.port) == addr)
    }
}

/// What is wrong with a topology file: each with its place.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
pub struct Problem {
    message: String,
    #[label("{label}")]
    span: SourceSpan,
    label: String,
    #[help]
    help: Option<String>,
}

/// A topology that cannot be used.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum TopologyError {
    /// The file cannot be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file has problems, each at its place.
    #[error("`{name}` is not a usable topology ({count} problem{s})", count = problems.len(), s = if problems.len() == 1 { "" } else { "s" })]
    Invalid {
        /// The file's name.
        name: String,
        /// The file.
        #[source_code]
        text: NamedSource<Arc<str>>,
        /// What is wrong.
        #[related]
        problems: Vec<Problem>,
    },
}

fn problem(span: Range<usize>, message: String, label: &str, help: Option<String>) -> Problem {
    Problem {
        message,
        span: span.into(),
        label: label.into(),
        help,
    }
}

/// Reads and checks a topology file.
pub fn load(path: &Path) -> Result<Topology, TopologyError> {
    let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&path.display().to_string(), &text, &|host| {
        (host, 0)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .map(|a| a.ip())
    })
}

/// Names the tool computes for every instance: a topology may not set them in `vars`.
const COMPUTED: [&str; 6] = [
    "cluster.name",
    "app.dir",
    "home.dir",
    "data.dirs",
    "meta.server.list",
    "zk.server.list",
];

/// Checks topology `text` (named `name`), resolving host names with `resolve`.
pub fn parse(
    name: &str,
    text: &str,
    resolve: &dyn Fn(&str) -> Option<IpAddr>,
) -> Result<Topology, TopologyError> {
    let source: Arc<str> = Arc::from(text);
    let invalid = |problems: Vec<Problem>| TopologyError::Invalid {
        name: name.to_owned(),
        text: NamedSource::new(name, source.clone()),
        problems,
    };
    let raw: Raw = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            return Err(invalid(vec![problem(
                span,
                e.message().trim().to_owned(),
                "here",
                None,
            )]));
        }
    };
    let mut problems = Vec::new();
    let cluster = raw.name.get_ref();
    if cluster.is_empty()
        || !cluster
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        problems.push(problem(
            raw.name.span(),
            format!("cluster name `{cluster}` is not a plain name"),
            "this name",
            Some("use letters, digits, `_` and `-` (it names a ZooKeeper path and units)".into()),
        ));
    }
    let checking = raw.ssh.host_key_checking.get_ref();
    if checking != "yes" && checking != "accept-new" {
        problems.push(problem(
            raw.ssh.host_key_checking.span(),
            format!("`host_key_checking = \"{checking}\"` is not `yes` or `accept-new`"),
            "this value",
            Some("host keys are never accepted silently: use `yes` or `accept-new`".into()),
        ));
    }
    for key in raw.vars.keys() {
        if COMPUTED.contains(&key.as_str()) {
            let at = text.find(key.as_str()).unwrap_or(0);
            problems.push(problem(
                at..at + key.len(),
                format!("`{key}` is set by the tool for every instance"),
                "set here",
                Some("remove it: the tool derives it from the topology".into()),
            ));
        }
    }
    if raw.zookeeper.is_empty() {
        problems.push(problem(
            0..0,
            "no ZooKeeper: `zookeeper` is empty".into(),
            "",
            Some(
                "list an existing ensemble, `zookeeper = [\"10.0.0.1:2181\"]`, or hosts for the \
                 tool to run it on, `[[zookeeper]]` with `host`"
                    .into(),
            ),
        ));
    }
    let mut existing = Vec::new();
    let mut managed = Vec::new();
    for entry in &raw.zookeeper {
        match entry.get_ref() {
            ZookeeperEntry::Existing(zk) => {
                let ok = zk
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| p.parse::<u16>().is_ok() && resolve(h).is_some());
                if !ok {
                    problems.push(problem(
                        entry.span(),
                        format!("ZooKeeper `{zk}` is not a `host:port` that resolves"),
                        "this one",
                        Some("use `10.0.0.1:2181`".into()),
                    ));
                }
                existing.push(zk.clone());
            }
            ZookeeperEntry::Managed(z) => managed.push((entry.span(), z.clone())),
        }
    }
    if !existing.is_empty() && !managed.is_empty() {
        problems.push(problem(
            raw.zookeeper[0].span(),
            "`zookeeper` mixes an existing ensemble's addresses with `[[zookeeper]]` hosts".into(),
            "here",
            Some(
                "either list the ensemble you run, or give hosts for the tool to run it on".into(),
            ),
        ));
    }
    if managed.len() % 2 == 0 && !managed.is_empty() {
        problems.push(problem(
            managed[0].0.clone(),
            format!(
                "{} ZooKeeper members: an even ensemble survives no more failures than one member fewer",
                managed.len()
            ),
            "the ensemble",
            Some("run 1, 3 or 5 members".into()),
        ));
    }
    let mut instances = Vec::new();
    let mut seen: HashMap<(IpAddr, u16), Range<usize>> = HashMap::new();
    for (k, (span, z)) in managed.iter().enumerate() {
        let Some(ip) = resolve(&z.host) else {
            problems.push(problem(
                span.clone(),
                format!("host `{}` does not resolve", z.host),
                "this host",
                Some("use its address, or a name this machine resolves".into()),
            ));
            continue;
        };
        let port = z.port.unwrap_or(Role::Zookeeper.default_port());
        let member = Member {
            id: k as u32 + 1,
            peer_port: z.peer_port.unwrap_or(2888),
            election_port: z.election_port.unwrap_or(3888),
            home: z.home.clone(),
        };
        for p in [port, member.peer_port, member.election_port] {
            if seen.insert((ip, p), span.clone()).is_some() {
                problems.push(problem(
                    span.clone(),
                    format!("two instances on `{ip}:{p}`"),
                    "the second",
                    Some("give one of them another port or host".into()),
                ));
            }
        }
        instances.push(Instance {
            role: Role::Zookeeper,
            host: z.host.clone(),
            ip,
            port,
            data_dirs: Vec::new(),
            primary_interface: None,
            ensemble: Some(member),
        });
    }
    for (role, list) in [
        (Role::Meta, &raw.meta),
        (Role::Replica, &raw.replica),
        (Role::Collector, &raw.collector),
    ] {
        for raw_instance in list {
            let host = raw_instance.host.get_ref();
            let Some(ip) = resolve(host) else {
                problems.push(problem(
                    raw_instance.host.span(),
                    format!("host `{host}` does not resolve"),
                    "this host",
                    Some("use its address, or a name this machine resolves".into()),
                ));
                continue;
            };
            let (port, span) = match &raw_instance.port {
                Some(p) => (*p.get_ref(), p.span()),
                None => (role.default_port(), raw_instance.host.span()),
            };
            if let Some(first) = seen.get(&(ip, port)) {
                let mut p = problem(
                    span.clone(),
                    format!("two instances on `{ip}:{port}`"),
                    "the second",
                    Some("give one of them another port or host".into()),
                );
                p.label = format!("the second (the first is at byte {})", first.start);
                problems.push(p);
                continue;
            }
            seen.insert((ip, port), span.clone());
            if role != Role::Replica
                && (!raw_instance.data_dirs.is_empty() || raw_instance.primary_interface.is_some())
            {
                problems.push(problem(
                    raw_instance.host.span(),
                    format!(
                        "`data_dirs` and `primary_interface` are for replica servers, not a {role}"
                    ),
                    "this instance",
                    None,
                ));
            }
            for dir in &raw_instance.data_dirs {
                if !dir.starts_with('/') || dir.contains([',', ';', ':']) {
                    problems.push(problem(
                        raw_instance.host.span(),
                        format!("data dir `{dir}` is not an absolute path without `,;:`"),
                        "this instance",
                        Some("use `/data1/pegasus`".into()),
                    ));
                }
            }
            instances.push(Instance {
                role,
                host: host.clone(),
                ip,
                port,
                data_dirs: raw_instance.data_dirs.clone(),
                primary_interface: raw_instance.primary_interface.clone(),
                ensemble: None,
            });
        }
    }
    if raw.meta.is_empty() {
        problems.push(problem(
            0..0,
            "no `[[meta]]`: a cluster needs a MetaServer (2 or 3 in production)".into(),
            "",
            None,
        ));
    }
    let copies = raw.copies.as_ref().map_or(3, |c| *c.get_ref());
    let replicas = instances.iter().filter(|i| i.role == Role::Replica).count();
    if replicas < copies {
        let span = raw.copies.as_ref().map_or(0..0, Spanned::span);
        problems.push(problem(
            span,
            format!("{replicas} replica server(s) cannot hold {copies} copies of each partition"),
            "copies per partition",
            Some(format!(
                "add replica servers (at least {copies}), or lower `copies`"
            )),
        ));
    }
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    Ok(Topology {
        name: cluster.clone(),
        deploy_dir: raw.deploy_dir.trim_end_matches('/').to_owned(),
        service_user: raw.service_user,
        template: raw.template,
        zookeeper: if managed.is_empty() {
            existing
        } else {
            instances
                .iter()
                .filter(|i| i.role == Role::Zookeeper)
                .map(Instance::addr)
                .collect()
        },
        ssh: raw.ssh,
        vars: raw.vars,
        instances,
        copies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(host: &str) -> Option<IpAddr> {
        match host {
            "db1" => Some("10.0.0.1".parse().unwrap()),
            h => h.parse().ok(),
        }
    }

    fn problems(text: &str) -> Vec<String> {
        match parse("t.toml", text, &resolve) {
            Ok(_) => vec![],
            Err(TopologyError::Invalid { problems, .. }) => {
                problems.into_iter().map(|p| p.message).collect()
            }
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn the_template_is_a_valid_topology() {
        let t = parse("template.toml", TEMPLATE, &resolve).unwrap();
        assert_eq!(t.of(Role::Meta).count(), 3);
        assert!(t.of(Role::Replica).count() >= 3);
        assert_eq!(
            t.meta_list(),
            "10.0.0.1:34601,10.0.0.2:34601,10.0.0.3:34601"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = "name = \"a b\"\nzookeeper = [\"10.0.0.9:2181\"]\n\
                    [[meta]]\nhost = \"nowhere\"\n\
                    [[replica]]\nhost = \"db1\"\n[[replica]]\nhost = \"10.0.0.1\"\nport = 34801\n";
        let found = problems(text);
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(found[0].contains("not a plain name"));
        assert!(found[1].contains("`nowhere` does not resolve"));
        assert!(found[2].contains("two instances on `10.0.0.1:34801`"));
        assert!(found[3].contains("cannot hold 3 copies"));
    }

    #[test]
    fn unknown_keys_are_refused_with_their_place() {
        let text = "name = \"a\"\nzookeeper = [\"10.0.0.9:2181\"]\nmystery = 1\n";
        let found = problems(text);
        assert!(found[0].contains("unknown field `mystery`"), "{found:?}");
    }

    #[test]
    fn computed_variables_cannot_be_set() {
        let text = "name = \"a\"\nzookeeper = [\"10.0.0.9:2181\"]\ncopies = 1\n\
                    [vars]\n\"app.dir\" = \"/x\"\n[[meta]]\nhost = \"db1\"\n[[replica]]\nhost = \"db1\"\n";
        assert_eq!(
            problems(text),
            vec!["`app.dir` is set by the tool for every instance"]
        );
    }

    #[test]
    fn zookeeper_hosts_make_the_ensemble_the_tool_runs() {
        let text = "name = \"a\"\ncopies = 1\n\
                    [[zookeeper]]\nhost = \"10.0.0.1\"\n\
                    [[zookeeper]]\nhost = \"10.0.0.2\"\nport = 2182\nhome = \"/opt/zk\"\n\
                    [[zookeeper]]\nhost = \"10.0.0.3\"\npeer_port = 2999\n\
                    [[meta]]\nhost = \"10.0.0.1\"\n[[replica]]\nhost = \"10.0.0.2\"\n";
        let t = parse("t.toml", text, &resolve).unwrap();
        assert!(t.runs_zookeeper());
        assert_eq!(
            t.zookeeper,
            ["10.0.0.1:2181", "10.0.0.2:2182", "10.0.0.3:2181"]
        );
        let members: Vec<&Member> = t
            .of(Role::Zookeeper)
            .map(|i| i.ensemble.as_ref().unwrap())
            .collect();
        assert_eq!(members.iter().map(|m| m.id).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(members[1].home.as_deref(), Some("/opt/zk"));
        assert_eq!(members[2].peer_port, 2999);
        assert_eq!(t.servers().count(), 2);
    }

    #[test]
    fn an_ensemble_is_existing_or_run_by_the_tool_and_odd() {
        let mixed = "name = \"a\"\ncopies = 1\nzookeeper = [\"10.0.0.9:2181\", { host = \"db1\" }]\n\
                     [[meta]]\nhost = \"db1\"\n[[replica]]\nhost = \"db1\"\n";
        let found = problems(mixed);
        assert!(found[0].contains("mixes"), "{found:?}");
        let even = "name = \"a\"\ncopies = 1\n\
                    [[zookeeper]]\nhost = \"10.0.0.1\"\n[[zookeeper]]\nhost = \"10.0.0.2\"\n\
                    [[meta]]\nhost = \"db1\"\n[[replica]]\nhost = \"db1\"\n";
        let found = problems(even);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("2 ZooKeeper members"), "{found:?}");
    }
}
