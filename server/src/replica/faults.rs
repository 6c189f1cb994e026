//! Injected disk faults, for tests: the private log's writes and fsyncs and a learner's copied
//! files can be made to fail with `ENOSPC` or `EIO`, as a full or failing disk makes them fail,
//! so that what the replica does then (refuse the write, report itself, give up the copy, learn
//! it again once the disk is back) can be tested without a broken disk.
//!
//! Off unless the process is started with `PEGASUS_FAULTS_FILE` naming a file; it is read ten
//! times a second, one `point = fault` per line, so a test can turn faults on and off while
//! the server runs. A missing or empty file means no fault. Points are `plog.write`,
//! `plog.sync`, `learn.write` and `replica.open`; faults are `enospc`, `eio` and `none`. A line
//! that does not parse is logged and ignored (the earlier setting stays).
//!
//! A check costs one relaxed atomic load when nothing is injected.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{info, warn};

/// The environment variable naming the faults file.
pub const FAULTS_FILE_ENV: &str = "PEGASUS_FAULTS_FILE";

/// The environment variable naming the sync ledger: a file to which every fsync of a log file
/// appends a line `<bytes durable>\t<path>`, so that a test can emulate a power loss on a
/// killed process (each log file keeps what its last line says, the rest reads as zeros).
pub const SYNC_LEDGER_ENV: &str = "PEGASUS_SYNC_LEDGER";

/// How often the faults file is read.
const POLL: Duration = Duration::from_millis(100);

/// Where a fault can be injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// A private-log append's write (and a new log file's creation).
    PlogWrite = 0,
    /// A private-log append's fsync.
    PlogSync = 1,
    /// A learner writing a copied checkpoint file.
    LearnWrite = 2,
    /// Opening (or creating) a copy while the server runs, as a disk that fails or a process
    /// out of file descriptors makes it fail.
    ReplicaOpen = 3,
}

impl Point {
    const ALL: [Point; 4] = [
        Point::PlogWrite,
        Point::PlogSync,
        Point::LearnWrite,
        Point::ReplicaOpen,
    ];

    fn name(self) -> &'static str {
        match self {
            Point::PlogWrite => "plog.write",
            Point::PlogSync => "plog.sync",
            Point::LearnWrite => "learn.write",
            Point::ReplicaOpen => "replica.open",
        }
    }
}

/// What an injected fault makes the operation fail with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `ENOSPC`: the disk is full.
    NoSpace = 1,
    /// `EIO`: the disk failed.
    Io = 2,
}

impl Fault {
    fn from_code(code: u8) -> Option<Fault> {
        match code {
            1 => Some(Fault::NoSpace),
            2 => Some(Fault::Io),
            _ => None,
        }
    }

    fn errno(self) -> i32 {
        match self {
            Fault::NoSpace => libc::ENOSPC,
            Fault::Io => libc::EIO,
        }
    }
}

/// The faults injected now, one per point; shared by every replica of a server.
#[derive(Debug, Default)]
pub struct Faults {
    set: [AtomicU8; 4],
    /// Whether fsyncs are recorded in `synced`.
    recording: AtomicBool,
    /// How far each log file was last fsynced, if recording: a power loss emulated by a test
    /// keeps that much of each file and zeroes the rest.
    synced: Mutex<HashMap<PathBuf, u64>>,
    /// Where fsyncs are also written down, if recording for another process
    /// ([`SYNC_LEDGER_ENV`]).
    ledger: Mutex<Option<std::fs::File>>,
}

impl Faults {
    /// Makes `point` fail with `fault` from now on, or succeed again (`None`).
    pub fn inject(&self, point: Point, fault: Option<Fault>) {
        let code = fault.map_or(0, |f| f as u8);
        if self.set[point as usize].swap(code, Ordering::Relaxed) != code {
            match fault {
                Some(f) => warn!(point = point.name(), fault = ?f, "disk fault injected"),
                None => info!(point = point.name(), "disk fault cleared"),
            }
        }
    }

    /// `Err` with the injected fault's error if `point` is to fail.
    pub fn check(&self, point: Point) -> io::Result<()> {
        match Fault::from_code(self.set[point as usize].load(Ordering::Relaxed)) {
            None => Ok(()),
            Some(f) => Err(io::Error::from_raw_os_error(f.errno())),
        }
    }

    /// Records from now on how far each log file is fsynced ([`Faults::synced`]).
    pub fn record_syncs(&self) {
        self.recording.store(true, Ordering::Relaxed);
    }

    /// Notes that `path` is durable through byte `len` (a log's fsync), if recording. The
    /// last note counts: a log cut back to its intact records at open is durable that far.
    pub fn note_synced(&self, path: &Path, len: u64) {
        if self.recording.load(Ordering::Relaxed) {
            self.synced
                .lock()
                .expect("synced")
                .insert(path.to_owned(), len);
            if let Some(ledger) = self.ledger.lock().expect("ledger").as_mut() {
                use std::io::Write;
                // One write per line (the file is opened to append): whole lines only.
                let line = format!("{len}\t{}\n", path.display());
                if let Err(e) = ledger.write_all(line.as_bytes()) {
                    warn!("sync ledger: {e}");
                }
            }
        }
    }

    /// How far `path` was fsynced since recording began (0: never).
    pub fn synced(&self, path: &Path) -> u64 {
        let synced = self.synced.lock().expect("synced");
        synced.get(path).copied().unwrap_or(0)
    }

    /// Applies a faults file's text: every point it names is set, the others cleared.
    pub fn apply(&self, text: &str) -> Result<(), String> {
        let mut wanted = [None; 4];
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (point, fault) = line
                .split_once('=')
                .map(|(p, f)| (p.trim(), f.trim()))
                .ok_or_else(|| format!("`{line}`: expected `point = fault`"))?;
            let point = Point::ALL
                .into_iter()
                .find(|p| p.name() == point)
                .ok_or_else(|| {
                    format!(
                        "`{point}`: no such point (plog.write, plog.sync, learn.write, replica.open)"
                    )
                })?;
            wanted[point as usize] = match fault {
                "enospc" => Some(Fault::NoSpace),
                "eio" => Some(Fault::Io),
                "none" => None,
                other => return Err(format!("`{other}`: no such fault (enospc, eio, none)")),
            };
        }
        for point in Point::ALL {
            self.inject(point, wanted[point as usize]);
        }
        Ok(())
    }

    /// Follows the file named by [`FAULTS_FILE_ENV`], if the process has it, on a thread of
    /// its own.
    /// With [`SYNC_LEDGER_ENV`], writes every fsync down there too.
    pub fn watch_env(self: &Arc<Self>) {
        if let Some(ledger) = std::env::var_os(SYNC_LEDGER_ENV).map(PathBuf::from) {
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&ledger)
            {
                Ok(f) => {
                    warn!(file = %ledger.display(), "log fsyncs are written down in this file (a test hook)");
                    *self.ledger.lock().expect("ledger") = Some(f);
                    self.record_syncs();
                }
                Err(e) => warn!(file = %ledger.display(), "sync ledger: {e}"),
            }
        }
        let Some(file) = std::env::var_os(FAULTS_FILE_ENV).map(PathBuf::from) else {
            return;
        };
        warn!(file = %file.display(), "disk faults are injected from this file (a test hook)");
        let faults = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("faults".into())
            .spawn(move || {
                let mut last = None;
                loop {
                    let text = std::fs::read_to_string(&file).unwrap_or_default();
                    if last.as_ref() != Some(&text) {
                        if let Err(e) = faults.apply(&text) {
                            warn!(file = %file.display(), "faults file: {e}");
                        }
                        last = Some(text);
                    }
                    std::thread::sleep(POLL);
                }
            });
        if let Err(e) = spawned {
            warn!("faults file: no thread to read it: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_faults_file_sets_what_it_names_and_clears_the_rest() {
        let f = Faults::default();
        assert!(f.check(Point::PlogSync).is_ok());
        f.apply("# a full disk\nplog.write = enospc\n plog.sync=eio \n")
            .unwrap();
        let e = f.check(Point::PlogWrite).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(
            f.check(Point::PlogSync).unwrap_err().raw_os_error(),
            Some(libc::EIO)
        );
        assert!(f.check(Point::LearnWrite).is_ok());
        f.apply("plog.sync = eio").unwrap();
        assert!(f.check(Point::PlogWrite).is_ok());
        assert!(f.check(Point::PlogSync).is_err());
        f.apply("").unwrap();
        assert!(f.check(Point::PlogSync).is_ok());
        assert!(
            f.apply("plog.fsync = eio")
                .unwrap_err()
                .contains("no such point")
        );
        assert!(
            f.apply("plog.sync = full")
                .unwrap_err()
                .contains("no such fault")
        );
        assert!(f.apply("plog.sync").is_err());
    }
}
