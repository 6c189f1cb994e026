//! Where everything lives on a host, and the files `deploy` writes there: each instance's
//! `config.ini` (the template filled for it) and its systemd unit.
//!
//! ```text
//! <deploy_dir>/packages/<package>.tar.gz       the release tarball, as pushed (sha256 checked)
//! <deploy_dir>/releases/<package>/bin/         unpacked, shared by the host's instances
//! <deploy_dir>/<cluster>/<role>-<port>/        one instance:
//!     config.ini   release -> ../../releases/<package>   data/ (app.dir, logs)
//! /etc/systemd/system/pegasus-<cluster>-<role>-<port>.service
//! ```
//!
//! A ZooKeeper member the tool runs (`[[zookeeper]]`) has the same folder and unit names
//! (`zookeeper-<port>`), with `zoo.cfg`, `data/myid` and `logs/` in its folder; its unit runs
//! the host's installed ZooKeeper (`bin/zkServer.sh start-foreground`).

use std::collections::BTreeMap;

use super::topology::{Instance, Role, Topology};

/// A file an instance's template could not be filled into.
#[derive(Debug, thiserror::Error)]
#[error("{instance}: {source}")]
pub struct RenderError {
    /// The instance (`meta 10.0.0.1:34601`).
    pub instance: String,
    /// Why.
    pub source: configcheck::render::RenderError,
}

/// Paths of one cluster on its hosts.
pub struct Layout<'t> {
    /// The topology.
    pub topology: &'t Topology,
    /// The release's name (`pegasus-server-<version>-<sha>-glibc<v>-release`).
    pub package: String,
}

impl Layout<'_> {
    /// Where the tarball is kept on each host.
    pub fn tarball(&self) -> String {
        format!(
            "{}/packages/{}.tar.gz",
            self.topology.deploy_dir, self.package
        )
    }

    /// Where the release is unpacked on each host.
    pub fn release(&self) -> String {
        format!("{}/releases/{}", self.topology.deploy_dir, self.package)
    }

    /// The cluster's folder on each host.
    pub fn cluster_dir(topology: &Topology) -> String {
        format!("{}/{}", topology.deploy_dir, topology.name)
    }

    /// An instance's folder.
    pub fn instance_dir(topology: &Topology, i: &Instance) -> String {
        format!("{}/{}", Self::cluster_dir(topology), i.id())
    }

    /// An instance's unit.
    pub fn unit(topology: &Topology, i: &Instance) -> String {
        format!("pegasus-{}-{}.service", topology.name, i.id())
    }

    /// An instance's unit file.
    pub fn unit_path(topology: &Topology, i: &Instance) -> String {
        format!("/etc/systemd/system/{}", Self::unit(topology, i))
    }

    /// An instance's data directories, as Pegasus's `data_dirs` (`tag:path,…`), each a folder
    /// of its own under the listed disk (two instances may share a disk).
    pub fn data_dirs(topology: &Topology, i: &Instance) -> Vec<(String, String)> {
        i.data_dirs
            .iter()
            .enumerate()
            .map(|(n, d)| {
                (
                    format!("data{}", n + 1),
                    format!("{}/{}/{}", d.trim_end_matches('/'), topology.name, i.id()),
                )
            })
            .collect()
    }

    /// The folders an instance writes: its own, and its data directories.
    pub fn writable(topology: &Topology, i: &Instance) -> Vec<String> {
        let mut dirs = vec![Self::instance_dir(topology, i)];
        dirs.extend(Self::data_dirs(topology, i).into_iter().map(|(_, d)| d));
        dirs
    }

    /// The template's variables for instance `i`.
    pub fn vars(topology: &Topology, i: &Instance) -> BTreeMap<String, String> {
        let dir = Self::instance_dir(topology, i);
        let mut vars = topology.vars.clone();
        vars.entry("hdfs_service_args".into()).or_default();
        let data_dirs: Vec<String> = Self::data_dirs(topology, i)
            .into_iter()
            .map(|(tag, d)| format!("{tag}:{d}"))
            .collect();
        for (k, v) in [
            ("cluster.name", topology.name.clone()),
            ("home.dir", dir.clone()),
            ("app.dir", format!("{dir}/data")),
            ("data.dirs", data_dirs.join(",")),
            ("meta.server.list", topology.meta_list()),
            ("zk.server.list", topology.zookeeper.join(",")),
        ] {
            vars.insert(k.into(), v);
        }
        vars
    }

    /// Instance `i`'s `config.ini`: `template` filled, its port set, and its interface.
    pub fn config(
        topology: &Topology,
        template: &str,
        i: &Instance,
    ) -> Result<String, RenderError> {
        let err = |source| RenderError {
            instance: format!("{} {}", i.role, i.addr()),
            source,
        };
        let rendered =
            configcheck::render::render(template, &Self::vars(topology, i)).map_err(err)?;
        let section = format!("apps.{}", i.role);
        let port = i.port.to_string();
        let mut sets = vec![(section.as_str(), "ports", port.as_str())];
        if let Some(nic) = &i.primary_interface {
            sets.push(("network", "primary_interface", nic));
        }
        configcheck::render::set_values(&rendered.text, &sets).map_err(err)
    }

    /// Instance `i`'s systemd unit: restarted on failure, its config checked before each start,
    /// and shut in (it writes only its own folders).
    pub fn unit_file(&self, i: &Instance) -> String {
        let dir = Self::instance_dir(self.topology, i);
        let bin = format!("{dir}/release/bin");
        let what = match i.role {
            Role::Meta => "MetaServer",
            Role::Replica => "ReplicaServer",
            Role::Collector => "Collector",
            Role::Zookeeper => "ZooKeeper",
        };
        self.unit_text(
            i,
            &format!("Pegasus {what}"),
            &format!(
                "ExecStartPre={bin}/configcheck check --quiet {dir}/config.ini\n\
                 ExecStart={bin}/pegasus_server {dir}/config.ini -app_list {role}\n",
                role = i.role
            ),
            "TimeoutStopSec=60s\nLimitNOFILE=65536\nLimitCORE=infinity\n",
        )
    }

    /// A unit for `i` described as `what`, running `run` (its `Exec…` and `Environment`
    /// lines) with `limits` (its stop timeout and limits): as the service user in its folder,
    /// restarted on failure, shut in (it writes only its own folders).
    fn unit_text(&self, i: &Instance, what: &str, run: &str, limits: &str) -> String {
        let t = self.topology;
        let dir = Self::instance_dir(t, i);
        format!(
            "# Written by pegasus_cluster for cluster `{cluster}`; `pegasus_cluster deploy` rewrites it.\n\
             [Unit]\n\
             Description={what} {addr} (cluster {cluster})\n\
             After=network-online.target\n\
             Wants=network-online.target\n\
             \n\
             [Service]\n\
             Type=simple\n\
             User={user}\n\
             Group={user}\n\
             WorkingDirectory={dir}\n\
             {run}\
             Restart=on-failure\n\
             RestartSec=5s\n\
             {limits}\
             NoNewPrivileges=yes\n\
             PrivateTmp=yes\n\
             ProtectSystem=strict\n\
             ProtectHome=yes\n\
             ProtectKernelTunables=yes\n\
             ProtectControlGroups=yes\n\
             ReadWritePaths={rw}\n\
             \n\
             [Install]\n\
             WantedBy=multi-user.target\n",
            cluster = t.name,
            addr = i.addr(),
            user = t.service_user,
            rw = Self::writable(t, i).join(" "),
        )
    }

    /// A ZooKeeper member's `zoo.cfg`: its data in its folder, the four-letter words the tool
    /// and operators use (`ruok`, `srvr`, `mntr`), old snapshots purged daily, and every member
    /// of the ensemble (none for a lone one).
    pub fn zoo_cfg(topology: &Topology, i: &Instance) -> String {
        let dir = Self::instance_dir(topology, i);
        let mut cfg = format!(
            "# Written by pegasus_cluster for cluster `{cluster}`; `pegasus_cluster deploy` rewrites it.\n\
             tickTime=2000\n\
             initLimit=10\n\
             syncLimit=5\n\
             dataDir={dir}/data\n\
             clientPort={port}\n\
             maxClientCnxns=1000\n\
             admin.enableServer=false\n\
             4lw.commands.whitelist=ruok,srvr,mntr\n\
             autopurge.snapRetainCount=5\n\
             autopurge.purgeInterval=24\n",
            cluster = topology.name,
            port = i.port,
        );
        let members: Vec<&Instance> = topology.of(Role::Zookeeper).collect();
        if members.len() > 1 {
            for m in members {
                if let Some(e) = &m.ensemble {
                    cfg.push_str(&format!(
                        "server.{}={}:{}:{}\n",
                        e.id, m.ip, e.peer_port, e.election_port
                    ));
                }
            }
        }
        cfg
    }

    /// A ZooKeeper member's unit: the installed ZooKeeper at `home` in the foreground, its logs
    /// in the journal, shut in like a Pegasus server's.
    pub fn zookeeper_unit_file(&self, i: &Instance, home: &str) -> String {
        let dir = Self::instance_dir(self.topology, i);
        self.unit_text(
            i,
            "ZooKeeper",
            &format!(
                "Environment=ZOO_LOG_DIR={dir}/logs\n\
                 Environment=\"JVMFLAGS=-Xmx512m -Dzookeeper.log.dir={dir}/logs -Dzookeeper.root.logger=INFO,CONSOLE\"\n\
                 ExecStart={home}/bin/zkServer.sh start-foreground {dir}/zoo.cfg\n"
            ),
            // A JVM stopped by SIGTERM exits 143.
            "TimeoutStopSec=30s\nSuccessExitStatus=143\nLimitNOFILE=65536\n",
        )
    }
}
