//! Which boot of the machine a copy last ran in, and whether it may lack what it acknowledged.
//!
//! With `[replication] plog_force_flush = false` an append is acknowledged once written to the
//! operating system. A crash of the process keeps it (the page cache), a restart of the machine
//! (a power loss) may not: the log may then end before what the copy acknowledged, and its
//! store, RocksDB without a WAL, is back at its last flush. Such a copy must not take part in
//! its group as the copy it was (`pegasus_replication::Replica::set_lossy`): it asks the meta to
//! remove it and learns again.
//!
//! Each copy's folder holds `boot_id`, the boot it last opened in (Linux's
//! `/proc/sys/kernel/random/boot_id`, or the file `PEGASUS_BOOT_ID_FILE` names: tests emulate a
//! reboot with it). A copy opened in another boot with fsync off is marked: `lossy` in its folder,
//! synced, so that a second restart before it learned again does not forget it; the mark goes
//! once it holds a copy learned from its primary (or is granted its group's primary as the last
//! copy). A clean stop syncs the log and forgets the boot, so a reboot after it is not a loss.

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::sync::OnceLock;

use super::plog::sync_parent;

/// The environment variable naming a file that holds the boot id instead of Linux's.
pub const BOOT_ID_FILE_ENV: &str = "PEGASUS_BOOT_ID_FILE";
const LINUX_BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
/// The file in a copy's folder with the boot it last opened in.
const BOOT_FILE: &str = "boot_id";
/// The file in a copy's folder that says it may lack what it acknowledged.
const LOSSY_FILE: &str = "lossy";

/// This boot of the machine: read once per process, from the file `PEGASUS_BOOT_ID_FILE` names
/// when it holds one, else Linux's; empty when neither can be read (then no copy is ever taken
/// for lossy: a system without boot ids gets Pegasus's behaviour).
pub fn machine_boot_id() -> &'static str {
    static BOOT: OnceLock<String> = OnceLock::new();
    BOOT.get_or_init(|| {
        let read = |path: &std::ffi::OsStr| {
            fs::read_to_string(path)
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        std::env::var_os(BOOT_ID_FILE_ENV)
            .and_then(|p| read(&p))
            .or_else(|| read(LINUX_BOOT_ID.as_ref()))
            .unwrap_or_default()
    })
}

/// Opening the copy in `dir` in boot `boot`: whether it may lack what it acknowledged (marked
/// before, or last opened in another boot with `fsync_off`). Records `boot` in `dir` and, when
/// lossy, the mark, both synced before it returns.
pub fn open_in_boot(dir: &Path, boot: &str, fsync_off: bool) -> io::Result<bool> {
    let marker = dir.join(LOSSY_FILE);
    let before = match fs::read_to_string(dir.join(BOOT_FILE)) {
        Ok(s) => Some(s.trim().to_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let rebooted = before
        .as_deref()
        .is_some_and(|b| !boot.is_empty() && b != boot);
    let lossy = marker.exists() || (fsync_off && rebooted);
    if lossy && !marker.exists() {
        write_synced(
            &marker,
            b"the machine restarted with plog_force_flush = false\n",
        )?;
    }
    if before.as_deref() != Some(boot) && !boot.is_empty() {
        write_synced(&dir.join(BOOT_FILE), format!("{boot}\n").as_bytes())?;
    }
    Ok(lossy)
}

/// The copy in `dir` stopped cleanly, its log synced: a restart of the machine before it opens
/// again loses nothing it acknowledged, so the boot it ran in is forgotten (a lossy mark stays).
/// An operator's reboot of one machine after another then costs no copy a relearning.
pub fn mark_clean(dir: &Path) -> io::Result<()> {
    remove_synced(&dir.join(BOOT_FILE))
}

/// The copy in `dir` holds what its group committed again: the mark goes.
pub fn clear_lossy(dir: &Path) -> io::Result<()> {
    remove_synced(&dir.join(LOSSY_FILE))
}

/// Removes `path` if it is there, the removal synced with its folder.
fn remove_synced(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => sync_parent(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `path` whole (through a temporary file renamed over it), synced with its folder.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    sync_parent(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_reopened_in_another_boot_with_fsync_off_is_lossy_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(!open_in_boot(d, "boot-1", true).unwrap(), "first open");
        assert!(
            !open_in_boot(d, "boot-1", true).unwrap(),
            "a process restart"
        );
        // A reboot with fsync on loses nothing acknowledged.
        assert!(!open_in_boot(d, "boot-2", false).unwrap());
        // A reboot with fsync off may have.
        assert!(open_in_boot(d, "boot-3", true).unwrap());
        // Restarted again in the same boot before it learned: still lossy.
        assert!(open_in_boot(d, "boot-3", true).unwrap());
        assert!(open_in_boot(d, "boot-3", false).unwrap(), "the mark stays");
        clear_lossy(d).unwrap();
        clear_lossy(d).unwrap();
        assert!(!open_in_boot(d, "boot-3", true).unwrap());
        // Without a boot id nothing is taken for a reboot.
        assert!(!open_in_boot(d, "", true).unwrap());
        // The boot recorded stays the last one known: a later reboot is still seen.
        assert!(open_in_boot(d, "boot-4", true).unwrap());
        // A clean stop (its log synced) forgets the boot: the next one after a reboot is sound.
        clear_lossy(d).unwrap();
        mark_clean(d).unwrap();
        assert!(!open_in_boot(d, "boot-5", true).unwrap());
        // But a lossy mark outlives a clean stop.
        assert!(open_in_boot(d, "boot-6", true).unwrap());
        mark_clean(d).unwrap();
        assert!(open_in_boot(d, "boot-7", true).unwrap());
    }
}
