//! The format of what this server writes — replica data dirs on disk and the cluster root in
//! ZooKeeper — and the refusal to run on a newer one.
//!
//! Each data dir's role folder (`<dir>/replica/format`) and the cluster root
//! (`<cluster_root>/format`) record the format they were first written in. A server finding a
//! newer format than [`FORMAT`] (data written by a newer release, then a rollback) refuses to
//! start with a one-line reason and exit status 1, before it reads or writes anything there:
//! never a panic, never a partial read. `pegasus_server --format` prints [`FORMAT`];
//! `pack_server` records it in the tarball's `FORMAT` file, which `pegasus_cluster upgrade` and
//! `rollback` compare with the cluster's before they change a single host.

use std::io::Write;
use std::path::Path;

/// The format this build writes and the newest it reads. Raised when a release changes the
/// layout of a plog record, a ZooKeeper node or a data dir's files in a way older releases
/// cannot read.
pub const FORMAT: u32 = 1;

/// Why a server will not run on what it found.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum FormatError {
    /// Data of a newer format.
    #[error(
        "{place} holds data of format {found}; this pegasus_server {version} knows formats up to {known}"
    )]
    #[diagnostic(help(
        "run the release that wrote it or a newer one (`pegasus_cluster rollback` refuses this)"
    ))]
    Newer {
        /// Where the mark is.
        place: String,
        /// Its format.
        found: u32,
        /// [`FORMAT`].
        known: u32,
        /// This build's version.
        version: &'static str,
    },
    /// A mark that is not a format number.
    #[error("{place}: `{text}` is not a format number")]
    Unreadable {
        /// Where the mark is.
        place: String,
        /// What it holds.
        text: String,
    },
    /// The mark cannot be read or written.
    #[error("{place}: {source}")]
    Io {
        /// Where the mark is.
        place: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Checks a mark found at `place` (`None`: there is none yet): `Ok(true)` when it must be
/// written (absent), `Ok(false)` when it is this format or an older one.
pub fn check_mark(place: &str, text: Option<&str>) -> Result<bool, FormatError> {
    let Some(text) = text else {
        return Ok(true);
    };
    let found: u32 = text.trim().parse().map_err(|_| FormatError::Unreadable {
        place: place.to_owned(),
        text: text.trim().to_owned(),
    })?;
    if found > FORMAT {
        return Err(FormatError::Newer {
            place: place.to_owned(),
            found,
            known: FORMAT,
            version: env!("CARGO_PKG_VERSION"),
        });
    }
    Ok(false)
}

/// Checks the mark in folder `dir` (a data dir's role folder), writing it (synced) when absent.
pub fn check_dir(dir: &Path) -> Result<(), FormatError> {
    let path = dir.join("format");
    let place = path.display().to_string();
    let io = |source| FormatError::Io {
        place: place.clone(),
        source,
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    if check_mark(&place, text.as_deref())? {
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = dir.join("format.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        writeln!(f, "{FORMAT}").map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        crate::replica::plog::sync_parent(&path).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_mark_is_refused_an_older_or_equal_one_kept_an_absent_one_written() {
        let dir = tempfile::tempdir().unwrap();
        check_dir(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("format")).unwrap(),
            format!("{FORMAT}\n")
        );
        check_dir(dir.path()).unwrap();
        std::fs::write(dir.path().join("format"), format!("{}\n", FORMAT + 1)).unwrap();
        let e = check_dir(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(&format!("holds data of format {}", FORMAT + 1)),
            "{e}"
        );
        std::fs::write(dir.path().join("format"), "x").unwrap();
        assert!(matches!(
            check_dir(dir.path()),
            Err(FormatError::Unreadable { .. })
        ));
        assert!(
            !check_mark("z", Some("0")).unwrap(),
            "older formats are read"
        );
    }
}
