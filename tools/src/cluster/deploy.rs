//! `pegasus_cluster deploy`: the package, configs and units on every host; nothing started.
//!
//! Idempotent: each file is compared with what the host has and written only when it differs
//! (the tarball by its sha256, verified on the host after the copy), so a second `deploy`
//! changes nothing and says so.

use super::fleet::{Fleet, Package};
use super::layout::Layout;
use super::ssh::{Remote, SshError, quote};
use super::topology::{Instance, Role, Topology};

/// What `deploy` did on one host.
#[derive(Debug, Default)]
pub struct HostChanges {
    /// What changed, one line each; empty when the host already had it all.
    pub changes: Vec<String>,
}

/// Why a deploy stopped.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// A remote step failed.
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// A config could not be rendered.
    #[error(transparent)]
    Render(#[from] super::layout::RenderError),
    /// The tarball arrived damaged.
    #[error("{host}: the package arrived with sha256 {got}, not {want}")]
    Corrupt {
        /// The host.
        host: String,
        /// What arrived.
        got: String,
        /// What was sent.
        want: String,
    },
    /// The package cannot be read.
    #[error(transparent)]
    Package(#[from] super::fleet::PackageError),
    /// The local tarball cannot be read.
    #[error("cannot read `{0}`: {1}")]
    Read(String, std::io::Error),
    /// A `[[zookeeper]]` host has no ZooKeeper installed.
    #[error(
        "{host}: no ZooKeeper installed (no bin/zkServer.sh in {looked}): install it (Debian: `apt install zookeeper`) or set `home` in its `[[zookeeper]]`"
    )]
    NoZookeeper {
        /// The host.
        host: String,
        /// Where it was looked for.
        looked: String,
    },
}

/// Puts `package` on every host (for an upgrade): the release only, no instance switched to it.
pub fn push(fleet: &Fleet, package: &Package) -> Vec<(String, Result<HostChanges, DeployError>)> {
    let layout = Layout {
        topology: &fleet.topology,
        package: package.name.clone(),
    };
    with_tarball(fleet, package, |r, tarball| {
        if fleet.topology.serves_on(&r.host) {
            push_release(r, &layout, package, tarball)
        } else {
            Ok(HostChanges::default())
        }
    })
}

/// What `check --apply` fixes on every host, in parallel: the service user, and every
/// instance's folders and data dirs (made, and given to the service user).
pub fn prepare(fleet: &Fleet) -> Vec<(String, Result<HostChanges, SshError>)> {
    let topology = &fleet.topology;
    fleet.each_host(|r| {
        let mut done = HostChanges::default();
        if ensure_user(r, topology)? {
            done.changes
                .push(format!("created user `{}`", topology.service_user));
        }
        for i in topology.on_host(&r.host) {
            if ensure_folders(r, topology, i)? {
                done.changes.push(format!("{}: made its folders", i.id()));
            }
        }
        Ok(done)
    })
}

/// Deploys `package` with configs from `template` to every host, in parallel.
pub fn deploy(
    fleet: &Fleet,
    package: &Package,
    template: &str,
) -> Vec<(String, Result<HostChanges, DeployError>)> {
    let layout = Layout {
        topology: &fleet.topology,
        package: package.name.clone(),
    };
    with_tarball(fleet, package, |r, tarball| {
        deploy_host(r, &layout, package, tarball, template)
    })
}

/// Runs `f` on every host in parallel with the package's bytes (read once).
fn with_tarball(
    fleet: &Fleet,
    package: &Package,
    f: impl Fn(&Remote<'_>, &[u8]) -> Result<HostChanges, DeployError> + Sync,
) -> Vec<(String, Result<HostChanges, DeployError>)> {
    match std::fs::read(&package.path) {
        Ok(tarball) => fleet.each_host(|r| f(r, &tarball)),
        Err(e) => fleet
            .topology
            .hosts()
            .into_iter()
            .map(|h| {
                let err = DeployError::Read(package.path.display().to_string(), clone_io(&e));
                (h, Err(err))
            })
            .collect(),
    }
}

fn clone_io(e: &std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), e.to_string())
}

/// The release on one host: the tarball pushed when the host lacks it
/// (verified there), unpacked once. Instances are left as they are.
fn push_release(
    remote: &Remote<'_>,
    layout: &Layout<'_>,
    package: &Package,
    tarball: &[u8],
) -> Result<HostChanges, DeployError> {
    let mut changes = HostChanges::default();
    // The package: pushed when the host lacks it, verified there, unpacked once.
    let path = layout.tarball();
    if remote.sha256(&path)?.as_deref() != Some(package.sha256.as_str()) {
        remote.put(&path, tarball, 0o644)?;
        let got = remote.sha256(&path)?.unwrap_or_default();
        if got != package.sha256 {
            return Err(DeployError::Corrupt {
                host: remote.host.clone(),
                got,
                want: package.sha256.clone(),
            });
        }
        changes.changes.push(format!("copied {}", package.name));
    }
    let release = layout.release();
    let unpacked = remote.run(&format!(
        "set -e; if [ -x {r}/bin/pegasus_server ]; then echo have; exit 0; fi; \
         t={r}.unpack; rm -rf \"$t\"; mkdir -p \"$t\"; {gently} tar xzf {p} -C \"$t\"; \
         mv \"$t\"/{name} {r}; rm -rf \"$t\"; echo made",
        r = quote(&release),
        p = quote(&path),
        name = quote(&package.name),
        gently = super::ssh::GENTLY,
    ))?;
    if unpacked.trim() == "made" {
        changes.changes.push(format!("unpacked {release}"));
    }
    Ok(changes)
}

fn deploy_host(
    remote: &Remote<'_>,
    layout: &Layout<'_>,
    package: &Package,
    tarball: &[u8],
    template: &str,
) -> Result<HostChanges, DeployError> {
    let topology = layout.topology;
    let instances: Vec<&Instance> = topology.on_host(&remote.host).collect();
    let mut changes = HostChanges::default();
    if ensure_user(remote, topology)? {
        changes
            .changes
            .push(format!("created user `{}`", topology.service_user));
    }
    // A host of ZooKeeper members only runs no release.
    if topology.serves_on(&remote.host) {
        changes
            .changes
            .extend(push_release(remote, layout, package, tarball)?.changes);
    }
    let mut units_changed = false;
    for i in instances {
        instance(
            remote,
            layout,
            template,
            i,
            &mut changes,
            &mut units_changed,
        )?;
    }
    if units_changed {
        remote.run("systemctl daemon-reload")?;
    }
    Ok(changes)
}

fn instance(
    remote: &Remote<'_>,
    layout: &Layout<'_>,
    template: &str,
    i: &Instance,
    changes: &mut HostChanges,
    units_changed: &mut bool,
) -> Result<(), DeployError> {
    let topology: &Topology = layout.topology;
    let dir = Layout::instance_dir(topology, i);
    if ensure_folders(remote, topology, i)? {
        changes
            .changes
            .push(format!("{}: made its folders", i.id()));
    }
    if i.role == Role::Zookeeper {
        return zookeeper_member(remote, layout, i, changes, units_changed);
    }
    // The release it runs.
    let target = format!("../../releases/{}", layout.package);
    let linked = remote.run(&format!(
        "if [ \"$(readlink {l})\" = {t} ]; then echo have; else ln -sfn {t} {l}; echo made; fi",
        l = quote(&format!("{dir}/release")),
        t = quote(&target),
    ))?;
    if linked.trim() == "made" {
        changes
            .changes
            .push(format!("{}: runs {}", i.id(), layout.package));
    }
    let config = Layout::config(topology, template, i)?;
    let config_path = format!("{dir}/config.ini");
    if remote.read(&config_path)?.as_deref() != Some(config.as_str()) {
        remote.put(&config_path, config.as_bytes(), 0o644)?;
        changes
            .changes
            .push(format!("{}: wrote config.ini", i.id()));
    }
    let unit = layout.unit_file(i);
    let unit_path = Layout::unit_path(topology, i);
    if remote.read(&unit_path)?.as_deref() != Some(unit.as_str()) {
        remote.put(&unit_path, unit.as_bytes(), 0o644)?;
        *units_changed = true;
        changes
            .changes
            .push(format!("{}: wrote {}", i.id(), Layout::unit(topology, i)));
    }
    Ok(())
}

/// The service user on the host, made when missing (a system account without a login);
/// whether it was made.
pub fn ensure_user(remote: &Remote<'_>, topology: &Topology) -> Result<bool, SshError> {
    let made = remote.run(&format!(
        "if id -u {u} >/dev/null 2>&1; then echo have; else useradd --system --no-create-home --shell /usr/sbin/nologin {u} && echo made; fi",
        u = quote(&topology.service_user)
    ))?;
    Ok(made.trim() == "made")
}

/// Instance `i`'s folders (its own and its data dirs), made and given to the service user
/// where they are not; whether any was.
pub fn ensure_folders(
    remote: &Remote<'_>,
    topology: &Topology,
    i: &Instance,
) -> Result<bool, SshError> {
    let user = quote(&topology.service_user);
    let dirs: Vec<String> = Layout::writable(topology, i)
        .iter()
        .map(|d| quote(d))
        .collect();
    let made = remote.run(&format!(
        "n=0; for d in {dirs}; do if [ ! -d \"$d\" ]; then mkdir -p \"$d\"; n=$((n+1)); fi; \
         if [ \"$(stat -c %U \"$d\")\" != {user} ]; then chown -R {user}: \"$d\"; n=$((n+1)); fi; done; echo $n",
        dirs = dirs.join(" "),
    ))?;
    Ok(made.trim() != "0")
}

/// A ZooKeeper member: its `myid`, `zoo.cfg` and unit, for the ZooKeeper installed on its host.
fn zookeeper_member(
    remote: &Remote<'_>,
    layout: &Layout<'_>,
    i: &Instance,
    changes: &mut HostChanges,
    units_changed: &mut bool,
) -> Result<(), DeployError> {
    let topology = layout.topology;
    let dir = Layout::instance_dir(topology, i);
    let Some(member) = &i.ensemble else {
        return Ok(());
    };
    let found = remote.run(&member.find_home_script())?;
    let home = found.trim();
    if home == "-" || home.is_empty() {
        return Err(DeployError::NoZookeeper {
            host: remote.host.clone(),
            looked: member.homes().join(", "),
        });
    }
    let made = remote.run(&format!(
        "set -e; cd {d}; n=0; for s in data logs; do if [ ! -d $s ]; then mkdir $s; chown {u}: $s; n=1; fi; done; \
         if [ \"$(cat data/myid 2>/dev/null)\" != {id} ]; then echo {id} > data/myid; chown {u}: data/myid; n=1; fi; echo $n",
        d = quote(&dir),
        u = quote(&topology.service_user),
        id = member.id,
    ))?;
    if made.trim() != "0" {
        changes
            .changes
            .push(format!("{}: myid {}", i.id(), member.id));
    }
    let cfg = Layout::zoo_cfg(topology, i);
    let cfg_path = format!("{dir}/zoo.cfg");
    if remote.read(&cfg_path)?.as_deref() != Some(cfg.as_str()) {
        remote.put(&cfg_path, cfg.as_bytes(), 0o644)?;
        changes.changes.push(format!("{}: wrote zoo.cfg", i.id()));
    }
    let unit = layout.zookeeper_unit_file(i, home);
    let unit_path = Layout::unit_path(topology, i);
    if remote.read(&unit_path)?.as_deref() != Some(unit.as_str()) {
        remote.put(&unit_path, unit.as_bytes(), 0o644)?;
        *units_changed = true;
        changes.changes.push(format!(
            "{}: wrote {} (ZooKeeper in {home})",
            i.id(),
            Layout::unit(topology, i)
        ));
    }
    Ok(())
}
