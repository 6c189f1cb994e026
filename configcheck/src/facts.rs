//! Host facts: what the host-dependent rules need to know about a machine (its host name, its
//! interfaces with their IPv4 addresses in kernel order, its disks), collected live or read from
//! a JSON file recorded on the target host with `configcheck facts`.
//!
//! ```json
//! {
//!   "format": 1,
//!   "hostname": "node1",
//!   "hostname_ipv4": ["10.0.0.3"],
//!   "interfaces": [{ "name": "lo", "ipv4": ["127.0.0.1"] }, { "name": "eth0", "ipv4": ["10.0.0.3"] }],
//!   "disks": [{ "mount_point": "/", "device": "/dev/vda1", "kind": "ssd", "total_bytes": 270465425408 }]
//! }
//! ```

use std::net::{Ipv4Addr, ToSocketAddrs};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The facts-file format this version writes and reads.
pub const FORMAT: u32 = 1;

/// The largest facts file read (they are a few KiB).
const MAX_FACTS_BYTES: u64 = 4 * 1024 * 1024;

/// Why facts could not be collected or read.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// The file could not be read.
    #[error("cannot read facts file `{path}`: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid facts JSON.
    #[error("`{path}` is not a facts file: {source}")]
    Json {
        /// The path.
        path: String,
        /// What the JSON parser said.
        source: serde_json::Error,
    },
    /// The file is of a newer format.
    #[error("`{path}` has facts format {found}; this configcheck reads format {FORMAT}")]
    Format {
        /// The path.
        path: String,
        /// The format found.
        found: u32,
    },
    /// The interfaces could not be listed.
    #[error("cannot list network interfaces: {0}")]
    Interfaces(std::io::Error),
    /// The disks could not be listed.
    #[error("cannot list disks: {0}")]
    Disks(String),
}

/// Everything the host-dependent rules know about one machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    /// Facts-file format, [`FORMAT`].
    #[serde(default = "format_default")]
    pub format: u32,
    /// The host name (`gethostname`).
    pub hostname: String,
    /// What the host name resolved to on that host (the last-resort advertised address).
    #[serde(default)]
    pub hostname_ipv4: Vec<Ipv4Addr>,
    /// Interfaces in the kernel's order, which decides the automatic address choice.
    pub interfaces: Vec<Interface>,
    /// Mounted disks.
    #[serde(default)]
    pub disks: Vec<Disk>,
    /// Files a config names (credentials), as recorded on the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileFact>,
    /// Collected on this host, now: files not recorded are looked at directly.
    #[serde(skip)]
    pub live: bool,
}

/// A file a config names, as found on its host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFact {
    /// Its path.
    pub path: String,
    /// Its permission bits; `None` when it is not there.
    pub mode: Option<u32>,
}

fn format_default() -> u32 {
    FORMAT
}

/// A network interface and its IPv4 addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// The name (`eth0`).
    pub name: String,
    /// Its IPv4 addresses, possibly none.
    #[serde(default)]
    pub ipv4: Vec<Ipv4Addr>,
}

/// Solid state or spinning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskKind {
    /// Solid state.
    Ssd,
    /// Rotational.
    Hdd,
    /// Not known (virtual disks, network file systems).
    Unknown,
}

/// A mounted file system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    /// Where it is mounted.
    pub mount_point: String,
    /// The device (`/dev/nvme0n1p1`).
    pub device: String,
    /// SSD, HDD or unknown.
    pub kind: DiskKind,
    /// Size in bytes.
    pub total_bytes: u64,
    /// Free bytes when recorded.
    #[serde(default)]
    pub available_bytes: u64,
}

impl HostFacts {
    /// The permission bits of `path` on the host: `Some(None)` when it is not there, `None` when
    /// unknown (recorded facts that do not mention it).
    pub fn file_mode(&self, path: &str) -> Option<Option<u32>> {
        if let Some(f) = self.files.iter().find(|f| f.path == path) {
            return Some(f.mode);
        }
        use std::os::unix::fs::PermissionsExt;
        self.live.then(|| {
            std::fs::metadata(path)
                .ok()
                .map(|m| m.permissions().mode() & 0o7777)
        })
    }

    /// Collects the facts of this machine.
    pub fn collect() -> Result<HostFacts, FactsError> {
        let hostname = sysinfo::System::host_name().unwrap_or_default();
        let hostname_ipv4 = resolve_ipv4(&hostname).into_iter().collect();
        Ok(HostFacts {
            format: FORMAT,
            hostname,
            hostname_ipv4,
            interfaces: collect_interfaces()?,
            disks: collect_disks()?,
            files: Vec::new(),
            live: true,
        })
    }

    /// Reads a facts file written by `configcheck facts`.
    pub fn load(path: &Path) -> Result<HostFacts, FactsError> {
        use std::io::Read;
        let name = path.display().to_string();
        let io = |source| FactsError::Io {
            path: name.clone(),
            source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(io)?
            .take(MAX_FACTS_BYTES)
            .read_to_string(&mut text)
            .map_err(io)?;
        let facts: HostFacts = serde_json::from_str(&text).map_err(|source| FactsError::Json {
            path: name.clone(),
            source,
        })?;
        if facts.format > FORMAT {
            return Err(FactsError::Format {
                path: name,
                found: facts.format,
            });
        }
        Ok(facts)
    }

    /// The interface named `name`.
    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    /// The disk holding `path`: the mount point that is the longest whole-component prefix.
    /// `path` need not exist yet (data dirs are created at start).
    pub fn disk_for(&self, path: &str) -> Option<&Disk> {
        let path = Path::new(path);
        self.disks
            .iter()
            .filter(|d| path.starts_with(&d.mount_point))
            .max_by_key(|d| d.mount_point.len())
    }

    /// Resolves a name as this host would: a literal IPv4, the recorded host name, or `None`.
    pub fn resolve_recorded(&self, name: &str) -> Option<Ipv4Addr> {
        name.parse().ok().or_else(|| {
            (name == self.hostname)
                .then(|| self.hostname_ipv4.first().copied())
                .flatten()
        })
    }
}

/// Resolves `name` with the system resolver, taking the first IPv4 address.
pub fn resolve_ipv4(name: &str) -> Option<Ipv4Addr> {
    if name.is_empty() {
        return None;
    }
    (name, 0)
        .to_socket_addrs()
        .ok()?
        .find_map(|a| match a.ip() {
            std::net::IpAddr::V4(ip) => Some(ip),
            std::net::IpAddr::V6(_) => None,
        })
}

fn collect_interfaces() -> Result<Vec<Interface>, FactsError> {
    let mut interfaces: Vec<Interface> = Vec::new();
    // getifaddrs order is the order Pegasus walks; keep it.
    for entry in if_addrs::get_if_addrs().map_err(FactsError::Interfaces)? {
        let ip = match entry.ip() {
            std::net::IpAddr::V4(ip) => Some(ip),
            std::net::IpAddr::V6(_) => None,
        };
        match interfaces.iter_mut().find(|i| i.name == entry.name) {
            Some(i) => i.ipv4.extend(ip),
            None => interfaces.push(Interface {
                name: entry.name,
                ipv4: ip.into_iter().collect(),
            }),
        }
    }
    // Interfaces without any address are not in getifaddrs; list them so a `primary_interface`
    // naming one is reported as "has no IPv4", not "does not exist".
    if let Ok(dir) = std::fs::read_dir("/sys/class/net") {
        let mut names: Vec<String> = dir
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            if interfaces.iter().all(|i| i.name != name) {
                interfaces.push(Interface {
                    name,
                    ipv4: Vec::new(),
                });
            }
        }
    }
    Ok(interfaces)
}

fn collect_disks() -> Result<Vec<Disk>, FactsError> {
    let disks =
        sysinfo::Disks::new_with_refreshed_list().map_err(|e| FactsError::Disks(e.to_string()))?;
    let mut out: Vec<Disk> = disks
        .iter()
        .map(|d| Disk {
            mount_point: d.mount_point().to_string_lossy().into_owned(),
            device: d.name().to_string_lossy().into_owned(),
            kind: match d.kind() {
                sysinfo::DiskKind::SSD => DiskKind::Ssd,
                sysinfo::DiskKind::HDD => DiskKind::Hdd,
                sysinfo::DiskKind::Unknown(_) => DiskKind::Unknown,
            },
            total_bytes: d.total_space(),
            available_bytes: d.available_space(),
        })
        .collect();
    out.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_of_a_path_is_the_longest_mount_prefix_by_component() {
        let disk = |m: &str, d: &str| Disk {
            mount_point: m.into(),
            device: d.into(),
            kind: DiskKind::Ssd,
            total_bytes: 1,
            available_bytes: 0,
        };
        let facts = HostFacts {
            disks: vec![
                disk("/", "/dev/a"),
                disk("/home/work/ssd1", "/dev/b"),
                disk("/home/work/ssd", "/dev/c"),
            ],
            ..HostFacts::default()
        };
        assert_eq!(
            facts.disk_for("/home/work/ssd1/pegasus").unwrap().device,
            "/dev/b"
        );
        assert_eq!(
            facts.disk_for("/home/work/ssd10/pegasus").unwrap().device,
            "/dev/a"
        );
        assert_eq!(facts.disk_for("/home/work/ssd/x").unwrap().device, "/dev/c");
    }

    #[test]
    fn live_collection_finds_loopback() {
        let facts = HostFacts::collect().expect("collect");
        assert!(
            facts
                .interface("lo")
                .is_some_and(|lo| lo.ipv4.contains(&Ipv4Addr::LOCALHOST))
        );
    }
}
