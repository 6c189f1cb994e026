//! Hosts on a real network, made of Linux network namespaces: `hosts` hosts and a client, each
//! in a namespace of its own with one interface (`eth0`, 10.77.0.x/24), joined by a bridge in
//! a fifth namespace, so nothing touches the machine's own network. Tests cut links for real
//! (iptables in a host's namespace): every packet of a host dropped, or a port closed to a
//! host's outgoing traffic. Needs root; everything is removed when dropped.

use std::fs::File;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::process::Guarded;

/// The namespaces of one test, named after its process.
pub struct Net {
    prefix: String,
    hosts: usize,
}

/// `ip` (or `tc`, `iptables`) with `args`; panics with what it said if it fails.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Net {
    /// Whether namespaces can be made here (root, and a kernel that allows it).
    pub fn available() -> bool {
        let name = format!("pgprobe{}", std::process::id());
        let made = Command::new("ip")
            .args(["netns", "add", &name])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if made {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
        made
    }

    /// Makes `hosts` hosts (10.77.0.11, .12, …) and the client (10.77.0.100) on one bridge.
    pub fn create(hosts: usize) -> Net {
        Net::create_named(&format!("pg{}", std::process::id()), hosts)
    }

    /// As [`Net::create`], with namespaces named after `prefix` (unique per live `Net`).
    pub fn create_named(prefix: &str, hosts: usize) -> Net {
        let net = Net {
            prefix: prefix.to_owned(),
            hosts,
        };
        let switch = net.ns("sw");
        run("ip", &["netns", "add", &switch]);
        run(
            "ip",
            &["-n", &switch, "link", "add", "br0", "type", "bridge"],
        );
        run("ip", &["-n", &switch, "link", "set", "br0", "up"]);
        let members: Vec<(String, Ipv4Addr)> = (1..=hosts)
            .map(|i| (net.host(i), net.addr(i)))
            .chain([(net.client(), Ipv4Addr::new(10, 77, 0, 100))])
            .collect();
        for (k, (ns, addr)) in members.iter().enumerate() {
            let port = format!("p{k}");
            run("ip", &["netns", "add", ns]);
            run(
                "ip",
                &[
                    "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                    "netns", ns,
                ],
            );
            run(
                "ip",
                &["-n", &switch, "link", "set", &port, "master", "br0"],
            );
            run("ip", &["-n", &switch, "link", "set", &port, "up"]);
            run(
                "ip",
                &[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{addr}/24"),
                    "dev",
                    "eth0",
                ],
            );
            run("ip", &["-n", ns, "link", "set", "eth0", "up"]);
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        net
    }

    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// Host `i`'s namespace (from 1).
    pub fn host(&self, i: usize) -> String {
        self.ns(&format!("h{i}"))
    }

    /// The client's namespace.
    pub fn client(&self) -> String {
        self.ns("c")
    }

    /// Host `i`'s address.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, 10 + i as u8)
    }

    /// Starts `program` with `args` in namespace `ns`, its output to `log`; killed when the
    /// returned [`Guarded`] is dropped.
    pub fn spawn(&self, ns: &str, program: &str, args: &[&str], log: &std::path::Path) -> Guarded {
        let out = File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        Guarded::spawn(
            Command::new("ip")
                .args(["netns", "exec", ns, program])
                .args(args)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err),
        )
    }

    /// Moves the calling thread into namespace `ns`: its sockets, and the threads it starts
    /// (a runtime's workers), are there from now on.
    pub fn enter(&self, ns: &str) {
        enter(ns);
    }

    /// Every packet in or out of host `i`'s interface is dropped: it is cut off from every
    /// other host and the client, silently, as a pulled cable or a 100 % loss would (iptables:
    /// this machine's kernel has no netem).
    pub fn isolate(&self, i: usize) {
        self.cable(i, "-A");
    }

    /// Undoes [`Net::isolate`].
    pub fn rejoin(&self, i: usize) {
        self.cable(i, "-D");
    }

    fn cable(&self, i: usize, op: &str) {
        let ns = self.host(i);
        for (chain, dir) in [("INPUT", "-i"), ("OUTPUT", "-o")] {
            run(
                "ip",
                &[
                    "netns", "exec", &ns, "iptables", op, chain, dir, "eth0", "-j", "DROP",
                ],
            );
        }
    }

    /// Drops host `i`'s outgoing packets to TCP port `port` (of any host, itself included).
    pub fn block_port(&self, i: usize, port: u16) {
        self.port_rule(i, port, "-A");
    }

    /// Undoes [`Net::block_port`].
    pub fn unblock_port(&self, i: usize, port: u16) {
        self.port_rule(i, port, "-D");
    }

    fn port_rule(&self, i: usize, port: u16, op: &str) {
        let ns = self.host(i);
        let port = port.to_string();
        run(
            "ip",
            &[
                "netns", "exec", &ns, "iptables", op, "OUTPUT", "-p", "tcp", "--dport", &port,
                "-j", "DROP",
            ],
        );
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let all = (1..=self.hosts)
            .map(|i| self.host(i))
            .chain([self.client(), self.ns("sw")]);
        for ns in all {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

/// Moves the calling thread into network namespace `ns` (see [`Net::enter`]), for a thread
/// that cannot borrow its [`Net`].
pub fn enter(ns: &str) {
    let file = File::open(format!("/var/run/netns/{ns}")).expect("namespace");
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}
