//! The hosts of one topology, reached in parallel, and the release being deployed.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::ssh::{Remote, SshError, StepLog};
use super::topology::Topology;

/// A release tarball on the operator's machine.
#[derive(Clone, Debug)]
pub struct Package {
    /// The tarball.
    pub path: PathBuf,
    /// Its name: the tarball's one top folder (`pegasus-server-…-release`).
    pub name: String,
    /// Its sha256.
    pub sha256: String,
    /// The glibc it was built against (`2.36`), from its name.
    pub glibc: Option<String>,
    /// Its `VERSION` line.
    pub version: String,
    /// The data format its server writes and the newest it reads (`FORMAT`; 1 for packages
    /// made before it was recorded).
    pub format: u32,
}

/// Why a package cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// It cannot be read or listed.
    #[error("cannot read package `{path}`: {why}")]
    Unreadable {
        /// The tarball.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// It is not a `pack_server` tarball.
    #[error("`{path}` is not a pegasus-server package: {why}")]
    NotAPackage {
        /// The tarball.
        path: String,
        /// What is missing.
        why: String,
    },
}

impl Package {
    /// Opens `path`: its name, checksum and version, from the tarball itself.
    pub fn open(path: &Path) -> Result<Package, PackageError> {
        let unreadable = |why: String| PackageError::Unreadable {
            path: path.display().to_string(),
            why,
        };
        let not = |why: &str| PackageError::NotAPackage {
            path: path.display().to_string(),
            why: why.into(),
        };
        let sha256 = super::ssh::sha256_file(path).map_err(|e| unreadable(e.to_string()))?;
        let list = Command::new("tar")
            .arg("tzf")
            .arg(path)
            .output()
            .map_err(|e| unreadable(e.to_string()))?;
        if !list.status.success() {
            return Err(unreadable(
                String::from_utf8_lossy(&list.stderr).trim().to_owned(),
            ));
        }
        let listing = String::from_utf8_lossy(&list.stdout);
        let name = listing
            .lines()
            .next()
            .and_then(|l| l.split('/').next())
            .filter(|n| n.starts_with("pegasus-server-"))
            .ok_or_else(|| not("its top folder is not `pegasus-server-…`"))?
            .to_owned();
        for needed in [
            "bin/pegasus_server",
            "bin/configcheck",
            "bin/config.ini",
            "VERSION",
        ] {
            if !listing.lines().any(|l| l == format!("{name}/{needed}")) {
                return Err(not(&format!("it has no `{needed}`")));
            }
        }
        let version = String::from_utf8_lossy(&extract(path, &name, "VERSION")?)
            .trim()
            .to_owned();
        let format = extract(path, &name, "FORMAT")
            .ok()
            .and_then(|f| String::from_utf8_lossy(&f).trim().parse().ok())
            .unwrap_or(1);
        let glibc = name
            .split('-')
            .find_map(|p| p.strip_prefix("glibc"))
            .map(str::to_owned);
        Ok(Package {
            path: path.to_path_buf(),
            name,
            sha256,
            glibc,
            version,
            format,
        })
    }

    /// One file of the package (`bin/config.ini`).
    pub fn file(&self, inner: &str) -> Result<Vec<u8>, PackageError> {
        extract(&self.path, &self.name, inner)
    }
}

fn extract(path: &Path, name: &str, inner: &str) -> Result<Vec<u8>, PackageError> {
    let out = Command::new("tar")
        .arg("xzOf")
        .arg(path)
        .arg(format!("{name}/{inner}"))
        .output()
        .map_err(|e| PackageError::Unreadable {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(PackageError::NotAPackage {
            path: path.display().to_string(),
            why: format!("no `{inner}`"),
        });
    }
    Ok(out.stdout)
}

/// The topology's hosts, each reached over one multiplexed SSH connection.
pub struct Fleet {
    /// The topology.
    pub topology: Topology,
    /// Where remote steps are recorded.
    pub log: StepLog,
    control: tempfile::TempDir,
}

impl Fleet {
    /// Reaches `topology`'s hosts, recording steps in `log`.
    pub fn new(topology: Topology, log: StepLog) -> std::io::Result<Fleet> {
        // Control sockets need a short path (108 bytes): /tmp, not the user's cache.
        let control = tempfile::Builder::new().prefix("pgc").tempdir_in("/tmp")?;
        Ok(Fleet {
            topology,
            log,
            control,
        })
    }

    /// Host `host`.
    pub fn remote(&self, host: &str) -> Remote<'_> {
        Remote::new(host, &self.topology.ssh, self.control.path(), &self.log)
    }

    /// Runs `f` on every host at once; the results in host order.
    pub fn each_host<T: Send>(&self, f: impl Fn(&Remote<'_>) -> T + Sync) -> Vec<(String, T)> {
        let hosts = self.topology.hosts();
        std::thread::scope(|s| {
            let handles: Vec<_> = hosts
                .iter()
                .map(|h| {
                    let f = &f;
                    s.spawn(move || f(&self.remote(h)))
                })
                .collect();
            hosts
                .iter()
                .cloned()
                .zip(handles.into_iter().map(|h| h.join().expect("host thread")))
                .collect()
        })
    }

    /// Every host answers over SSH; the first that does not, as an error.
    pub fn reach_all(&self) -> Result<(), SshError> {
        for (_, r) in self.each_host(|r| r.run("true")) {
            r?;
        }
        Ok(())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Close the shared connections (ControlPersist would keep them a minute).
        for host in self.topology.hosts() {
            let _ = Command::new("ssh")
                .arg("-o")
                .arg(format!("ControlPath={}/%C", self.control.path().display()))
                .args(["-p", &self.topology.ssh.port.to_string()])
                .args(["-l", &self.topology.ssh.user])
                .args(["-O", "exit", &host])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}
