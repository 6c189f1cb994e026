//! The private log (plog) of one partition replica: every mutation, with its `(ballot, decree)`,
//! is appended and made durable here before it is applied to RocksDB (whose own WAL is off).
//!
//! Files are `plog/log.<index>.<start_offset>` as in Pegasus. A record is
//! `[u32 payload length][u32 CRC-32C of payload][payload]`, the payload being a [`Mutation`].
//! Replay stops at the first record that is short, zero or fails its CRC (the unwritten rest of
//! the file, or a torn tail from a crash), and zeroes the file from there, so the next append
//! starts on a clean boundary.
//!
//! One [`Plog::append`] call writes a whole batch of mutations and syncs once: group commit.
//! The file being written is sized to `log_private_file_size_mb` up front (a sparse file, so no
//! disk is used for it yet) and written in place: a sync then never has to record a new file
//! size (fsynced writes in `./run.sh bench_replica` went from 23.5k to 27.6k ops/s).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// The largest record replay accepts; anything larger is a corrupt length.
const MAX_RECORD: usize = 256 << 20;

/// What a mutation does to the store: the effect, not the request, so replay is exact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Put a stored key to a stored value.
    Put(Vec<u8>, Vec<u8>),
    /// Delete a stored key.
    Delete(Vec<u8>),
}

/// One logged write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mutation {
    /// The ballot (configuration epoch) of the primary that made it.
    pub ballot: u64,
    /// Its position in the partition's history, from 1, without gaps.
    pub decree: u64,
    /// Its effect.
    pub ops: Vec<Op>,
}

impl Mutation {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ballot.to_be_bytes());
        out.extend_from_slice(&self.decree.to_be_bytes());
        out.extend_from_slice(&(self.ops.len() as u32).to_be_bytes());
        for op in &self.ops {
            match op {
                Op::Put(k, v) => {
                    out.push(0);
                    out.extend_from_slice(&(k.len() as u32).to_be_bytes());
                    out.extend_from_slice(k);
                    out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                    out.extend_from_slice(v);
                }
                Op::Delete(k) => {
                    out.push(1);
                    out.extend_from_slice(&(k.len() as u32).to_be_bytes());
                    out.extend_from_slice(k);
                }
            }
        }
    }

    fn decode(mut b: &[u8]) -> Option<Mutation> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, tail) = (b.len() >= n).then(|| b.split_at(n))?;
            *b = tail;
            Some(head)
        }
        fn u32_(b: &mut &[u8]) -> Option<u32> {
            take(b, 4).map(|s| u32::from_be_bytes(s.try_into().expect("4")))
        }
        fn u64_(b: &mut &[u8]) -> Option<u64> {
            take(b, 8).map(|s| u64::from_be_bytes(s.try_into().expect("8")))
        }
        let ballot = u64_(&mut b)?;
        let decree = u64_(&mut b)?;
        let count = u32_(&mut b)? as usize;
        let mut ops = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            let kind = take(&mut b, 1)?[0];
            let klen = u32_(&mut b)? as usize;
            let k = take(&mut b, klen)?.to_vec();
            ops.push(match kind {
                0 => {
                    let vlen = u32_(&mut b)? as usize;
                    Op::Put(k, take(&mut b, vlen)?.to_vec())
                }
                1 => Op::Delete(k),
                _ => return None,
            });
        }
        b.is_empty().then_some(Mutation {
            ballot,
            decree,
            ops,
        })
    }
}

/// One log file and the decrees it holds.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    index: u64,
    start_offset: u64,
    /// Highest decree in the file (0 if empty).
    max_decree: u64,
    size: u64,
}

/// The private log of one replica.
pub struct Plog {
    dir: PathBuf,
    segments: Vec<Segment>,
    file: File,
    /// Rotate to a new file past this size.
    file_size_limit: u64,
    /// Whether appends are fsynced (`[replication] plog_force_flush`).
    sync: bool,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Plog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plog")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .finish()
    }
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("log.")?;
    let (index, offset) = rest.split_once('.')?;
    Some((index.parse().ok()?, offset.parse().ok()?))
}

impl Plog {
    /// Opens (creating if needed) the log in `dir` and replays it: every intact mutation with a
    /// decree above `applied` is passed to `apply`, in order. A torn tail is truncated.
    pub fn open(
        dir: &Path,
        file_size_limit: u64,
        applied: u64,
        mut apply: impl FnMut(Mutation) -> io::Result<()>,
    ) -> io::Result<Plog> {
        fs::create_dir_all(dir)?;
        let mut segments: Vec<Segment> = fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let (index, start_offset) = parse_name(&name)?;
                Some(Segment {
                    path: e.path(),
                    index,
                    start_offset,
                    max_decree: 0,
                    size: 0,
                })
            })
            .collect();
        segments.sort_by_key(|s| s.index);
        let mut last_decree = applied;
        let count = segments.len();
        for (n, segment) in segments.iter_mut().enumerate() {
            let (valid_len, max) = replay_file(&segment.path, &mut |m: Mutation| {
                if m.decree > last_decree {
                    last_decree = m.decree;
                    apply(m)
                } else {
                    Ok(())
                }
            })?;
            let actual = fs::metadata(&segment.path)?.len();
            if valid_len < actual && n + 1 != count && !zero_from(&segment.path, valid_len)? {
                // A torn tail can only be in the last file; anything else is damage we must not
                // silently skip past.
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is corrupt at byte {valid_len}", segment.path.display()),
                ));
            }
            segment.max_decree = max;
            segment.size = valid_len;
        }
        if segments.is_empty() {
            let path = dir.join("log.1.0");
            File::create(&path)?;
            segments.push(Segment {
                path,
                index: 1,
                start_offset: 0,
                max_decree: 0,
                size: 0,
            });
        }
        let last = segments.last().expect("one segment");
        let file = OpenOptions::new().write(true).open(&last.path)?;
        // Whatever follows the intact records (a torn record, or nothing) becomes a hole.
        file.set_len(last.size)?;
        file.set_len(last.size.max(file_size_limit))?;
        file.sync_all()?;
        sync_dir(dir)?;
        Ok(Plog {
            dir: dir.to_owned(),
            segments,
            file,
            file_size_limit,
            sync: true,
            buf: Vec::new(),
        })
    }

    /// Whether each append is fsynced before it returns (the default). Without it an append has
    /// reached the operating system when it returns: a crash of the process loses nothing, a
    /// crash of the machine may lose the last appends (Pegasus's `plog_force_flush = false`).
    pub fn set_sync(&mut self, sync: bool) {
        self.sync = sync;
    }

    /// The highest decree in the log.
    pub fn max_decree(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.max_decree)
            .max()
            .unwrap_or(0)
    }

    /// Appends mutations with one write, and makes them durable with one sync if syncing.
    pub fn append(&mut self, mutations: &[Mutation]) -> io::Result<()> {
        self.buf.clear();
        for m in mutations {
            let start = self.buf.len();
            self.buf.extend_from_slice(&[0; 8]);
            m.encode(&mut self.buf);
            let payload = &self.buf[start + 8..];
            let len = payload.len() as u32;
            let crc = CRC32C.checksum(payload);
            self.buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
            self.buf[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
        }
        let last = self.segments.last_mut().expect("one segment");
        self.file.write_all_at(&self.buf, last.size)?;
        if self.sync {
            self.file.sync_data()?;
        }
        last.size += self.buf.len() as u64;
        if let Some(m) = mutations.last() {
            last.max_decree = last.max_decree.max(m.decree);
        }
        if last.size >= self.file_size_limit {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let last = self.segments.last().expect("one segment");
        let (index, offset) = (last.index + 1, last.start_offset + last.size);
        let path = self.dir.join(format!("log.{index}.{offset}"));
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)?;
        file.set_len(self.file_size_limit)?;
        self.file = file;
        sync_dir(&self.dir)?;
        self.segments.push(Segment {
            path,
            index,
            start_offset: offset,
            max_decree: 0,
            size: 0,
        });
        Ok(())
    }

    /// Deletes whole files whose mutations are all durable elsewhere (decree ≤ `durable`),
    /// never the file being written.
    pub fn gc(&mut self, durable: u64) -> io::Result<usize> {
        let mut removed = 0;
        while self.segments.len() > 1 && self.segments[0].max_decree <= durable {
            let segment = self.segments.remove(0);
            fs::remove_file(&segment.path)?;
            removed += 1;
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// The number of files.
    pub fn file_count(&self) -> usize {
        self.segments.len()
    }
}

/// Reads one file; returns the length of its intact prefix and its highest decree.
fn replay_file(
    path: &Path,
    apply: &mut dyn FnMut(Mutation) -> io::Result<()>,
) -> io::Result<(u64, u64)> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut valid = 0u64;
    let mut max = 0;
    let mut header = [0u8; 8];
    loop {
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes(header[..4].try_into().expect("4")) as usize;
        let crc = u32::from_be_bytes(header[4..].try_into().expect("4"));
        if len == 0 || len > MAX_RECORD {
            // Zero: the unwritten part of the file. Too large: a corrupt length.
            break;
        }
        let mut payload = vec![0u8; len];
        match reader.read_exact(&mut payload) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        if CRC32C.checksum(&payload) != crc {
            break;
        }
        let Some(mutation) = Mutation::decode(&payload) else {
            break;
        };
        max = max.max(mutation.decree);
        apply(mutation)?;
        valid += 8 + len as u64;
    }
    Ok((valid, max))
}

/// Whether every byte of the file from `offset` on is zero.
fn zero_from(path: &Path, offset: u64) -> io::Result<bool> {
    let file = File::open(path)?;
    let mut buf = vec![0u8; 64 << 10];
    let mut at = offset;
    loop {
        let n = file.read_at(&mut buf, at)?;
        if n == 0 {
            return Ok(true);
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(decree: u64) -> Mutation {
        Mutation {
            ballot: 1,
            decree,
            ops: vec![
                Op::Put(format!("k{decree}").into_bytes(), vec![7; 10]),
                Op::Delete(b"x".to_vec()),
            ],
        }
    }

    fn replayed(dir: &Path, applied: u64) -> (Plog, Vec<u64>) {
        let mut seen = Vec::new();
        let plog = Plog::open(dir, 200, applied, |m| {
            seen.push(m.decree);
            Ok(())
        })
        .unwrap();
        (plog, seen)
    }

    #[test]
    fn appends_replay_in_order_after_the_applied_decree_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let (mut plog, seen) = replayed(dir.path(), 0);
        assert!(seen.is_empty());
        for d in 1..=10 {
            plog.append(&[m(d)]).unwrap();
        }
        assert!(plog.file_count() > 1, "small files rotate");
        drop(plog);
        let (_, seen) = replayed(dir.path(), 4);
        assert_eq!(seen, (5..=10).collect::<Vec<_>>());
    }

    #[test]
    fn a_torn_tail_is_cut_and_appending_continues_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let (mut plog, _) = replayed(dir.path(), 0);
        plog.append(&[m(1), m(2)]).unwrap();
        let valid = plog.segments[0].size;
        drop(plog);
        let file = dir.path().join("log.1.0");
        // A crash in the middle of the third record.
        let torn = [0, 0, 0, 40, 1, 2, 3];
        OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .write_all_at(&torn, valid)
            .unwrap();
        let (mut plog, seen) = replayed(dir.path(), 0);
        assert_eq!(seen, [1, 2]);
        assert!(zero_from(&file, valid).unwrap(), "the torn record is gone");
        plog.append(&[m(3)]).unwrap();
        drop(plog);
        assert_eq!(replayed(dir.path(), 0).1, [1, 2, 3]);
    }

    #[test]
    fn the_file_being_written_has_its_full_size_and_is_written_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let (mut plog, _) = replayed(dir.path(), 0);
        let file = dir.path().join("log.1.0");
        assert_eq!(fs::metadata(&file).unwrap().len(), 200);
        plog.append(&[m(1)]).unwrap();
        assert_eq!(
            fs::metadata(&file).unwrap().len(),
            200,
            "no growth, no size to sync"
        );
        drop(plog);
        assert_eq!(replayed(dir.path(), 0).1, [1]);
    }

    #[test]
    fn a_zero_tail_in_an_older_file_is_unwritten_space_but_garbage_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (mut plog, _) = replayed(dir.path(), 0);
        for d in 1..=6 {
            plog.append(&[m(d)]).unwrap();
        }
        assert!(plog.file_count() > 1);
        drop(plog);
        // As if the first file had been sized larger than what it holds (a smaller
        // log_private_file_size_mb since): zeros after its records.
        let first = dir.path().join("log.1.0");
        let len = fs::metadata(&first).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&first)
            .unwrap()
            .set_len(len + 300)
            .unwrap();
        assert_eq!(replayed(dir.path(), 0).1, (1..=6).collect::<Vec<_>>());
        // Garbage there instead is not a torn tail: the file is not the last one.
        OpenOptions::new()
            .write(true)
            .open(&first)
            .unwrap()
            .write_all_at(&[0, 0, 0, 9, 1], len)
            .unwrap();
        let err = Plog::open(dir.path(), 200, 0, |_| Ok(())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[test]
    fn gc_removes_only_durable_closed_files() {
        let dir = tempfile::tempdir().unwrap();
        let (mut plog, _) = replayed(dir.path(), 0);
        for d in 1..=10 {
            plog.append(&[m(d)]).unwrap();
        }
        let before = plog.file_count();
        // Records are about 56 bytes: the first file holds decrees 1 to 4.
        assert_eq!(plog.gc(3).unwrap(), 0, "decree 4 is not durable yet");
        assert_eq!(plog.gc(4).unwrap(), 1);
        assert_eq!(plog.file_count(), before - 1);
        plog.gc(u64::MAX).unwrap();
        assert_eq!(plog.file_count(), 1, "the file being written stays");
        drop(plog);
        let (_, seen) = replayed(dir.path(), 0);
        assert!(seen.iter().all(|&d| d > 4), "{seen:?}");
    }
}
