//! Block services: where backups are kept. One trait, [`BlockService`], and the provider Pegasus
//! calls `local_service` (a directory: a local disk or an NFS mount every server shares). HDFS or
//! S3 would be other implementations of the same trait.
//!
//! Paths inside a service are `/`-separated and relative to its root; one that is absolute,
//! empty or climbs (`..`) is refused, so no request reaches outside the root. Every file is
//! whole or absent: written under a temporary name, synced, renamed, and its folder synced, so
//! a reader (a restore, the meta checking a backup) never sees half of one, and a file seen
//! after a crash is all there.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::fs::Advice;

/// The checksum of backup files (hardware-independent table CRC, 16 bytes a step).
pub const FILE_CRC: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// The copy buffer, and the writeback step of a copy (see [`copy`]).
const CHUNK: usize = 1 << 20;

/// Why a block service operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// A path that is empty, absolute or climbs out of the root.
    #[error("`{0}` is not a path inside the block service (relative, no `..`)")]
    BadPath(String),
    /// A file or folder operation failed.
    #[error("{what} `{path}`: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path, as the service sees it (the root joined).
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The size and CRC-32C of a file, as copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileSum {
    /// Bytes.
    pub size: u64,
    /// CRC-32C of the bytes.
    pub crc: u32,
}

/// Bounds the bytes a second shared by everyone holding it (0: no bound). Each chunk has its
/// slot after the one before; time left idle is not banked, so a pace that waited an hour
/// between backups still starts the next one at its rate, not with an hour of credit.
#[derive(Debug)]
pub struct Pace {
    rate: u64,
    /// When the next chunk may go.
    next: Mutex<Instant>,
}

impl Pace {
    /// `rate` bytes a second (0: unbounded).
    pub fn new(rate: u64) -> Arc<Pace> {
        Arc::new(Pace {
            rate,
            next: Mutex::new(Instant::now()),
        })
    }

    /// Takes `bytes` from the budget, sleeping until they are due.
    pub fn take(&self, bytes: usize) {
        if self.rate == 0 {
            return;
        }
        let now = Instant::now();
        let start = {
            let mut next = self.next.lock().expect("pace");
            let start = (*next).max(now);
            *next = start + Duration::from_secs_f64(bytes as f64 / self.rate as f64);
            start
        };
        if start > now {
            std::thread::sleep(start - now);
        }
    }
}

/// Where backups are kept.
pub trait BlockService: Send + Sync + std::fmt::Debug {
    /// Its kind (`local_service`) and root, for messages.
    fn describe(&self) -> String;
    /// Copies the local file `from` to `to` (replaced whole if there), at `pace`; the size and
    /// CRC-32C of what was read. `progress` hears of each chunk's bytes.
    fn upload(
        &self,
        from: &Path,
        to: &str,
        pace: &Pace,
        progress: &dyn Fn(u64),
    ) -> Result<FileSum, BlockError>;
    /// Copies `from` to the local file `to` (created; synced), at `pace`; the size and CRC-32C
    /// of what was read.
    fn download(
        &self,
        from: &str,
        to: &Path,
        pace: &Pace,
        progress: &dyn Fn(u64),
    ) -> Result<FileSum, BlockError>;
    /// Writes `bytes` as the file `to`, whole or not at all, durably.
    fn write(&self, to: &str, bytes: &[u8]) -> Result<(), BlockError>;
    /// The file `from`; `None` when there is none.
    fn read(&self, from: &str) -> Result<Option<Vec<u8>>, BlockError>;
    /// The names in folder `dir` (none when it does not exist), sorted.
    fn list(&self, dir: &str) -> Result<Vec<String>, BlockError>;
    /// Removes folder `dir` and everything in it (nothing when it does not exist).
    fn remove_all(&self, dir: &str) -> Result<(), BlockError>;
}

/// `local_service`: a directory.
#[derive(Debug)]
pub struct LocalService {
    root: PathBuf,
}

impl LocalService {
    /// The service rooted at `root` (created on first write).
    pub fn new(root: PathBuf) -> Self {
        LocalService { root }
    }

    fn resolve(&self, path: &str) -> Result<PathBuf, BlockError> {
        let p = Path::new(path);
        let plain = !path.is_empty()
            && p.components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !plain {
            return Err(BlockError::BadPath(path.to_owned()));
        }
        Ok(self.root.join(p))
    }

    /// Creates `path`'s parent folders; each one new is made durable in its own parent.
    fn make_parents(&self, path: &Path) -> Result<(), BlockError> {
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        if parent.is_dir() {
            return Ok(());
        }
        self.make_parents(parent)?;
        match fs::create_dir(parent) {
            Ok(()) => sync_parent(parent),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(source) => Err(io("creating folder", parent, source)),
        }
    }

    /// Writes through `fill` to a temporary file beside `path`, syncs it and renames it into
    /// place.
    fn write_whole(
        &self,
        path: &Path,
        fill: impl FnOnce(&mut File) -> Result<FileSum, BlockError>,
    ) -> Result<FileSum, BlockError> {
        self.make_parents(path)?;
        let tmp = temporary(path);
        let mut file = File::create(&tmp).map_err(|e| io("creating", &tmp, e))?;
        let done = fill(&mut file).and_then(|sum| {
            file.sync_all().map_err(|e| io("syncing", &tmp, e))?;
            fs::rename(&tmp, path).map_err(|e| io("renaming into place", path, e))?;
            sync_parent(path)?;
            Ok(sum)
        });
        if done.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        done
    }
}

fn io(what: &'static str, path: &Path, source: std::io::Error) -> BlockError {
    BlockError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

fn sync_parent(path: &Path) -> Result<(), BlockError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("syncing folder", parent, e)),
        _ => Ok(()),
    }
}

/// `<name>.tmp.<pid>.<n>`: unique within a process and across processes on one mount.
fn temporary(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}.{n}", std::process::id()));
    path.with_file_name(name)
}

/// Copies `from` into `to` in chunks at `pace`, checksumming what passes.
///
/// The copy keeps little of `to` in the page cache: each chunk's writeback starts as soon as it
/// is written (`POSIX_FADV_DONTNEED` on dirty pages starts it), and the chunks before it are
/// dropped from the cache once written. A copy then never leaves gigabytes dirty for one
/// `fsync` at its end, which stalls every other `fsync` on the disk behind it (the replica
/// logs'); the disk writes while the copy reads; the final `sync_all` has little left.
fn copy(
    from: &mut File,
    to: &mut File,
    pace: &Pace,
    progress: &dyn Fn(u64),
) -> std::io::Result<FileSum> {
    advise(from, 0, 0, Advice::Sequential);
    let mut buf = vec![0; CHUNK];
    let mut digest = FILE_CRC.digest();
    let mut size = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        pace.take(n);
        digest.update(&buf[..n]);
        to.write_all(&buf[..n])?;
        // This chunk's writeback starts; what was written before it and is clean leaves.
        advise(
            to,
            size.saturating_sub(WRITEBACK_LAG),
            n as u64 + WRITEBACK_LAG,
            Advice::DontNeed,
        );
        size += n as u64;
        progress(n as u64);
    }
    Ok(FileSum {
        size,
        crc: digest.finalize(),
    })
}

/// How far back a copy drops its written pages from the cache (those still being written stay).
const WRITEBACK_LAG: u64 = 8 * CHUNK as u64;

/// `posix_fadvise`: a hint; a copy is whole without it, so its failure is ignored.
fn advise(file: &File, offset: u64, len: u64, advice: Advice) {
    let _ = rustix::fs::fadvise(file, offset, std::num::NonZeroU64::new(len), advice);
}

impl BlockService for LocalService {
    fn describe(&self) -> String {
        format!("local_service at {}", self.root.display())
    }

    fn upload(
        &self,
        from: &Path,
        to: &str,
        pace: &Pace,
        progress: &dyn Fn(u64),
    ) -> Result<FileSum, BlockError> {
        let path = self.resolve(to)?;
        let mut source = File::open(from).map_err(|e| io("opening", from, e))?;
        self.write_whole(&path, |file| {
            copy(&mut source, file, pace, progress).map_err(|e| io("copying to", &path, e))
        })
    }

    fn download(
        &self,
        from: &str,
        to: &Path,
        pace: &Pace,
        progress: &dyn Fn(u64),
    ) -> Result<FileSum, BlockError> {
        let path = self.resolve(from)?;
        let mut source = File::open(&path).map_err(|e| io("opening", &path, e))?;
        let mut file = File::create(to).map_err(|e| io("creating", to, e))?;
        let sum = copy(&mut source, &mut file, pace, progress)
            .map_err(|e| io("copying from", &path, e))?;
        file.sync_all().map_err(|e| io("syncing", to, e))?;
        Ok(sum)
    }

    fn write(&self, to: &str, bytes: &[u8]) -> Result<(), BlockError> {
        let path = self.resolve(to)?;
        self.write_whole(&path, |file| {
            file.write_all(bytes).map_err(|e| io("writing", &path, e))?;
            Ok(FileSum {
                size: bytes.len() as u64,
                crc: FILE_CRC.checksum(bytes),
            })
        })
        .map(|_| ())
    }

    fn read(&self, from: &str) -> Result<Option<Vec<u8>>, BlockError> {
        let path = self.resolve(from)?;
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading", &path, e)),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, BlockError> {
        let path = self.resolve(dir)?;
        let entries = match fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("listing", &path, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io("listing", &path, e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn remove_all(&self, dir: &str) -> Result<(), BlockError> {
        let path = self.resolve(dir)?;
        match fs::remove_dir_all(&path) {
            Ok(()) => sync_parent(&path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("removing", &path, e)),
        }
    }
}

/// A provider the config names: `[block_service.<name>]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderConfig {
    /// `<name>`.
    pub name: String,
    /// `type`.
    pub kind: String,
    /// `args`: for `local_service`, its root folder.
    pub args: String,
}

/// The block services by name, as the config declares them; those of a kind this server does
/// not have are kept as a refusal that names it.
#[derive(Clone, Debug, Default)]
pub struct Providers {
    services: BTreeMap<String, Result<Arc<dyn BlockService>, String>>,
}

impl Providers {
    /// From the config's `[block_service.*]` sections (a `local_service` root made absolute
    /// by the config).
    pub fn new(configs: &[ProviderConfig]) -> Providers {
        let services = configs
            .iter()
            .map(|c| {
                let service: Result<Arc<dyn BlockService>, String> = match c.kind.as_str() {
                    "local_service" if c.args.trim().is_empty() => Err(format!(
                        "`[block_service.{}] args` is empty: a local_service needs its root folder",
                        c.name
                    )),
                    "local_service" => Ok(Arc::new(LocalService::new(PathBuf::from(c.args.trim())))),
                    other => Err(format!(
                        "block service `{}` is of type `{other}`, which this server does not have (local_service only)",
                        c.name
                    )),
                };
                (c.name.clone(), service)
            })
            .collect();
        Providers { services }
    }

    /// The service `name`, or why there is none.
    pub fn get(&self, name: &str) -> Result<Arc<dyn BlockService>, String> {
        match self.services.get(name) {
            Some(Ok(s)) => Ok(Arc::clone(s)),
            Some(Err(why)) => Err(why.clone()),
            None => Err(format!(
                "no block service `{name}`: the config declares {}",
                if self.services.is_empty() {
                    "none (`[block_service.<name>] type = local_service`, `args = <folder>`)"
                        .to_owned()
                } else {
                    self.services
                        .keys()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalService::new(dir.path().join("root"));
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a/.."] {
            assert!(
                matches!(s.write(bad, b"x"), Err(BlockError::BadPath(_))),
                "{bad:?} was taken"
            );
        }
        s.write("a/b/c", b"hello").unwrap();
        assert_eq!(s.read("a/b/c").unwrap().unwrap(), b"hello");
        assert_eq!(s.read("a/b/d").unwrap(), None);
        assert_eq!(s.list("a/b").unwrap(), ["c"]);
        assert!(s.list("nothing").unwrap().is_empty());
    }

    #[test]
    fn files_go_up_and_down_whole_with_their_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalService::new(dir.path().join("root"));
        let local = dir.path().join("f");
        let data: Vec<u8> = (0..(CHUNK * 2 + 17)).map(|i| (i % 251) as u8).collect();
        fs::write(&local, &data).unwrap();
        let moved = std::sync::atomic::AtomicU64::new(0);
        let count = |n| {
            moved.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        };
        let up = s.upload(&local, "x/y/f", &Pace::new(0), &count).unwrap();
        assert_eq!(up.size, data.len() as u64);
        assert_eq!(up.crc, FILE_CRC.checksum(&data));
        assert_eq!(moved.load(std::sync::atomic::Ordering::Relaxed), up.size);
        // Nothing but the file: its temporary is gone.
        assert_eq!(s.list("x/y").unwrap(), ["f"]);
        let back = dir.path().join("g");
        let down = s.download("x/y/f", &back, &Pace::new(0), &|_| {}).unwrap();
        assert_eq!(down, up);
        assert_eq!(fs::read(&back).unwrap(), data);
        s.remove_all("x").unwrap();
        assert!(s.list("x").unwrap().is_empty());
        s.remove_all("x").unwrap();
    }

    #[test]
    fn a_pace_bounds_the_rate() {
        let pace = Pace::new(10 << 20);
        let start = Instant::now();
        for _ in 0..4 {
            pace.take(1 << 20);
        }
        // 4 MiB at 10 MiB/s: the last MiB goes at 0.3 s.
        assert!(start.elapsed() >= Duration::from_millis(290));
        // Time left idle is not banked: after 0.5 s idle, 4 MiB more still take 0.3 s.
        std::thread::sleep(Duration::from_millis(500));
        let start = Instant::now();
        for _ in 0..4 {
            pace.take(1 << 20);
        }
        assert!(
            start.elapsed() >= Duration::from_millis(290),
            "{:?}: idle time was banked",
            start.elapsed()
        );
    }

    #[test]
    fn unknown_and_unusable_providers_say_why() {
        let providers = Providers::new(&[
            ProviderConfig {
                name: "local_service".into(),
                kind: "local_service".into(),
                args: "/data/backup".into(),
            },
            ProviderConfig {
                name: "hdfs_service".into(),
                kind: "hdfs_service".into(),
                args: "hdfs://nn:9000/".into(),
            },
        ]);
        assert!(
            providers
                .get("local_service")
                .unwrap()
                .describe()
                .ends_with("/data/backup")
        );
        assert!(
            providers
                .get("hdfs_service")
                .unwrap_err()
                .contains("local_service only")
        );
        assert!(providers.get("s3").unwrap_err().contains("`hdfs_service`"));
    }
}
