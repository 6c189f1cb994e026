//! Data dirs: where replicas live, as Pegasus lays them out.
//!
//! Each `[replication] data_dirs` item `tag:/path` holds replicas under `/path/replica/reps`
//! (the role's full name, then `reps`); with no data dirs, one dir tagged `default` under
//! `<[core] data_dir>/replica/reps`. A dir whose path starts with a line of the blacklist file
//! (`data_dirs_black_list_file`) is left out. A new replica goes to the dir holding the fewest
//! replicas of its table, then the fewest replicas in total.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use pegasus_protocol::types::Gpid;
use tracing::info;

/// Why the data dirs are unusable.
#[derive(Debug, thiserror::Error)]
pub enum DirsError {
    /// Every dir is blacklisted or none is configured.
    #[error("no replica data dir found, maybe not set or excluded by the black list `{0}`")]
    NoDir(String),
    /// A dir cannot be created or listed.
    #[error("data dir `{path}`: {source}")]
    Io {
        /// The dir.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// One data dir.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir {
    /// Its tag.
    pub tag: String,
    /// `<path>/replica/reps`.
    pub reps: PathBuf,
}

/// The node's data dirs.
#[derive(Clone, Debug)]
pub struct DataDirs {
    dirs: Vec<DataDir>,
}

impl DataDirs {
    /// The data dirs of `[replication]`, for the role whose data lives under `role_dir`
    /// (`<[core] data_dir>/replica`), minus blacklisted ones; creates them.
    pub fn new(
        configured: &[(String, PathBuf)],
        role_name: &str,
        role_dir: &Path,
        blacklist_file: Option<&Path>,
    ) -> Result<Self, DirsError> {
        let mut dirs: Vec<DataDir> = if configured.is_empty() {
            vec![DataDir {
                tag: "default".into(),
                reps: role_dir.join("reps"),
            }]
        } else {
            configured
                .iter()
                .map(|(tag, path)| DataDir {
                    tag: tag.clone(),
                    reps: path.join(role_name).join("reps"),
                })
                .collect()
        };
        if let Some(file) = blacklist_file
            && let Ok(text) = std::fs::read_to_string(file)
        {
            info!(
                "data_dirs_black_list_file[{}] found, apply it",
                file.display()
            );
            let entries: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| {
                    if l.ends_with('/') {
                        l.to_owned()
                    } else {
                        format!("{l}/")
                    }
                })
                .collect();
            dirs.retain(|d| {
                let base = d.reps.parent().and_then(Path::parent).unwrap_or(&d.reps);
                let path = format!("{}/", base.display().to_string().trim_end_matches('/'));
                !entries.iter().any(|e| path.starts_with(e.as_str()))
            });
        }
        if dirs.is_empty() {
            return Err(DirsError::NoDir(
                blacklist_file
                    .map(|f| f.display().to_string())
                    .unwrap_or_default(),
            ));
        }
        for d in &dirs {
            std::fs::create_dir_all(&d.reps).map_err(|source| DirsError::Io {
                path: d.reps.display().to_string(),
                source,
            })?;
        }
        Ok(DataDirs { dirs })
    }

    /// This node's disk id, made when its first data dir was first used (`<dir>/replica/disk_id`,
    /// written and fsynced before anything is served). A node back with another id had its disks
    /// replaced or wiped: the meta must not take it for the node that held its copies.
    pub fn disk_id(&self) -> std::io::Result<i64> {
        let Some(first) = self.dirs.first() else {
            return Ok(0);
        };
        let root = first.reps.parent().unwrap_or(&first.reps);
        let path = root.join("disk_id");
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(id) = text.trim().parse::<i64>()
        {
            return Ok(id);
        }
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        // Positive and never 0 (0: a node that does not say).
        let id = (h.finish() >> 2) as i64 + 1;
        std::fs::create_dir_all(root)?;
        let tmp = root.join("disk_id.tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            writeln!(f, "{id}")?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        super::plog::sync_parent(&path)?;
        Ok(id)
    }

    /// The dirs.
    pub fn dirs(&self) -> &[DataDir] {
        &self.dirs
    }

    /// Replica folders already on disk: `<reps>/<app_id>.<pidx>.pegasus`.
    pub fn existing(&self) -> Result<Vec<(Gpid, PathBuf)>, DirsError> {
        self.entries(parse_replica_dir)
    }

    /// Replica folders moved aside as damaged: `<reps>/<app_id>.<pidx>.pegasus.<unix µs>.err`.
    pub fn moved_aside(&self) -> Result<Vec<(Gpid, PathBuf)>, DirsError> {
        self.entries(|name| {
            let (live, _stamp) = name.strip_suffix(".err")?.rsplit_once('.')?;
            parse_replica_dir(live)
        })
    }

    /// The entries of every `reps` folder whose name `parse` recognizes, sorted.
    fn entries(
        &self,
        parse: impl Fn(&str) -> Option<Gpid>,
    ) -> Result<Vec<(Gpid, PathBuf)>, DirsError> {
        let mut found = Vec::new();
        for d in &self.dirs {
            let entries = std::fs::read_dir(&d.reps).map_err(|source| DirsError::Io {
                path: d.reps.display().to_string(),
                source,
            })?;
            for entry in entries.flatten() {
                if let Some(gpid) = parse(&entry.file_name().to_string_lossy()) {
                    found.push((gpid, entry.path()));
                }
            }
        }
        found.sort();
        Ok(found)
    }

    /// The folders of `gpid`'s replica on disk (one, unless a disk was moved by hand).
    pub fn folders(&self, gpid: Gpid) -> Vec<PathBuf> {
        let name = replica_dir_name(gpid);
        self.dirs
            .iter()
            .map(|d| d.reps.join(&name))
            .filter(|p| p.is_dir())
            .collect()
    }

    /// Where the replica of `gpid` is opened, given where replicas are now: its folder if one
    /// is on disk (a replica closed while its table was dropped, and recalled), else a new one
    /// on the dir with the fewest replicas of its table, then the fewest of all.
    pub fn place(&self, gpid: Gpid, current: &HashMap<Gpid, PathBuf>) -> PathBuf {
        if let Some(existing) = self.folders(gpid).into_iter().next() {
            return existing;
        }
        let count = |d: &DataDir, same_app: bool| {
            current
                .iter()
                .filter(|(g, p)| p.starts_with(&d.reps) && (!same_app || g.app_id == gpid.app_id))
                .count()
        };
        let best = self
            .dirs
            .iter()
            .min_by_key(|d| (count(d, true), count(d, false)))
            .expect("at least one dir");
        best.reps.join(replica_dir_name(gpid))
    }
}

/// `<app_id>.<pidx>.pegasus`.
fn replica_dir_name(gpid: Gpid) -> String {
    format!("{}.{}.pegasus", gpid.app_id, gpid.partition_index)
}

/// Moves a damaged replica's folder aside, whole, as `<dir>.<unix µs>.err` (Pegasus's name for a
/// corrupt replica), with a `reason` file in it: the evidence stays for the operator, and the
/// folder is no longer a replica.
pub fn move_aside(dir: &Path, reason: &str) -> std::io::Result<PathBuf> {
    use std::io::Write;
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let mut aside = dir.as_os_str().to_owned();
    aside.push(format!(".{micros}.err"));
    let aside = PathBuf::from(aside);
    std::fs::rename(dir, &aside)?;
    let mut file = std::fs::File::create(aside.join("reason"))?;
    writeln!(file, "{reason}")?;
    file.sync_all()?;
    std::fs::File::open(&aside)?.sync_all()?;
    if let Some(parent) = aside.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(aside)
}

fn parse_replica_dir(name: &str) -> Option<Gpid> {
    let rest = name.strip_suffix(".pegasus")?;
    let (app, pidx) = rest.split_once('.')?;
    Some(Gpid::new(app.parse().ok()?, pidx.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_spreads_a_table_then_total_load_and_honours_the_blacklist() {
        let root = tempfile::tempdir().unwrap();
        let configured: Vec<(String, PathBuf)> = ["a", "b", "c"]
            .iter()
            .map(|t| (t.to_string(), root.path().join(t)))
            .collect();
        let blacklist = root.path().join("black");
        std::fs::write(
            &blacklist,
            format!("{}\n\n", root.path().join("c").display()),
        )
        .unwrap();
        let dirs = DataDirs::new(
            &configured,
            "replica",
            &root.path().join("core/replica"),
            Some(&blacklist),
        )
        .unwrap();
        assert_eq!(
            dirs.dirs()
                .iter()
                .map(|d| d.tag.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        let mut current = HashMap::new();
        for pidx in 0..4 {
            let g = Gpid::new(1, pidx);
            current.insert(g, dirs.place(g, &current));
        }
        let on_a = current
            .values()
            .filter(|p| p.starts_with(root.path().join("a")))
            .count();
        assert_eq!(on_a, 2);
        assert!(current[&Gpid::new(1, 3)].ends_with("1.3.pegasus"));
        std::fs::create_dir_all(&current[&Gpid::new(1, 3)]).unwrap();
        assert_eq!(dirs.existing().unwrap().len(), 1);

        // A damaged replica moved aside is no longer a replica, but is known as moved aside.
        let aside = move_aside(&current[&Gpid::new(1, 3)], "plog damaged at byte 7").unwrap();
        assert!(aside.to_string_lossy().ends_with(".err"));
        assert_eq!(
            std::fs::read_to_string(aside.join("reason")).unwrap(),
            "plog damaged at byte 7\n"
        );
        assert!(dirs.existing().unwrap().is_empty());
        assert_eq!(dirs.moved_aside().unwrap(), vec![(Gpid::new(1, 3), aside)]);
    }

    #[test]
    fn everything_blacklisted_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let blacklist = root.path().join("black");
        std::fs::write(&blacklist, format!("{}/", root.path().display())).unwrap();
        let configured = vec![("a".to_string(), root.path().join("a"))];
        assert!(matches!(
            DataDirs::new(&configured, "replica", root.path(), Some(&blacklist)),
            Err(DirsError::NoDir(_))
        ));
    }
}
