//! What other servers ask of this node's replicas to keep their groups whole: prepares from a
//! primary, a learner's requests for a copy (from the log or a checkpoint) and its files, a
//! learner's report, and the meta's proposals.

use std::net::SocketAddrV4;
use std::sync::Arc;

use pegasus_protocol::codes::ErrorCode;
use pegasus_protocol::frame::Request;
use pegasus_protocol::types::*;
use tracing::warn;

use super::{ReplicaError, ReplicaStub, partition, plog};
use crate::net::Reply;

impl ReplicaStub {
    /// A prepare from a primary to this node's replica.
    pub(super) fn on_prepare(&self, gpid: Gpid, request: &Request, reply: Reply) {
        let args = match request.args::<PrepareRequest>() {
            Ok(a) => a,
            Err(e) => {
                warn!("bad prepare: {e}");
                return reply.error(ErrorCode::InvalidParameters);
            }
        };
        let (Some(partition), Some(from)) = (self.partition(gpid), args.primary.socket_addr())
        else {
            return reply.error(ErrorCode::ObjectNotFound);
        };
        partition.prepare(
            from,
            args,
            Box::new(move |answer| match answer {
                Some(r) => reply.send(ErrorCode::Ok, Some(&r)),
                None => reply.error(ErrorCode::InvalidState),
            }),
        );
    }

    /// A primary tells this node to learn a partition: opened (created if needed) as a learner.
    pub(super) fn on_learn_add(self: &Arc<Self>, request: &Request, reply: Reply) {
        let r = match request.args::<LearnAddRequest>() {
            Ok(r) => r,
            Err(_) => return reply.error(ErrorCode::InvalidParameters),
        };
        let (Some(from), true) = (r.primary.socket_addr(), self.peers.is_some()) else {
            return reply.error(ErrorCode::InvalidParameters);
        };
        let stub = Arc::clone(self);
        // Opening touches the disk: not on the async workers.
        tokio::task::spawn_blocking(move || match stub.learn_from(from, r) {
            Ok(()) => reply.send(ErrorCode::Ok, Some(&Empty {})),
            Err(e) => {
                warn!("asked to learn: {e}");
                reply.error(ErrorCode::InvalidState);
            }
        });
    }

    /// The primary `from` tells this node to learn its partition: the replica is opened
    /// (created if needed) and learns.
    pub fn learn_from(&self, from: SocketAddrV4, r: LearnAddRequest) -> Result<(), ReplicaError> {
        self.open_partition(r.pid)?.learn(from, r);
        Ok(())
    }

    /// A learner asks this primary for a copy: a checkpoint (made on the replica's driver
    /// thread), its files listed with their CRC-32C, and the mutations past it.
    pub(super) fn on_learn(&self, gpid: Gpid, request: &Request, reply: Reply) {
        let (Ok(r), Some(p)) = (request.args::<LearnRequest>(), self.partition(gpid)) else {
            return reply.error(ErrorCode::ObjectNotFound);
        };
        // The checkpoint is made on the replica's driver thread, outside the runtime.
        let runtime = tokio::runtime::Handle::current();
        p.checkpoint(
            r,
            Box::new(move |copy| {
                let refuse = move |reply: Reply, why: String| {
                    warn!(%gpid, "no copy for a learner: {why}");
                    reply.error(ErrorCode::InvalidState)
                };
                let (dir, decree, tail) = match copy {
                    Ok(c) => c,
                    Err(why) => return refuse(reply, why),
                };
                // Listing and checksumming reads every file: on a blocking thread (no folder:
                // learning from the log, nothing to list).
                runtime.spawn_blocking(move || {
                    match dir.as_deref().map_or(Ok(Vec::new()), list_files) {
                        Ok(files) => {
                            let answer = LearnResponse {
                                err: ErrorName(ErrorCode::Ok.name().to_owned()),
                                checkpoint_decree: decree as i64,
                                checkpoint: dir
                                    .as_deref()
                                    .and_then(|d| d.file_name())
                                    .map(|n| n.to_string_lossy().into_owned())
                                    .unwrap_or_default(),
                                files,
                                tail: tail
                                    .into_iter()
                                    .map(|m| LearnMutation {
                                        ballot: m.ballot as i64,
                                        decree: m.decree as i64,
                                        empty: m.write.is_none(),
                                        ops: partition::wire_ops(m.write.as_ref()),
                                    })
                                    .collect(),
                            };
                            reply.send(ErrorCode::Ok, Some(&answer));
                        }
                        Err(e) => refuse(reply, e.to_string()),
                    }
                });
            }),
        );
    }

    /// A chunk of a checkpoint file for a learner.
    /// A learner reports to this node's primary how far it holds everything.
    pub(super) fn on_learn_done(&self, gpid: Gpid, request: &Request, reply: Reply) {
        match (request.args::<LearnDoneRequest>(), self.partition(gpid)) {
            (Ok(r), Some(p)) => match r.learner.socket_addr() {
                Some(from) => {
                    p.learn_done(from, r);
                    reply.send(ErrorCode::Ok, Some(&Empty {}));
                }
                None => reply.error(ErrorCode::InvalidParameters),
            },
            (Err(_), _) => reply.error(ErrorCode::InvalidParameters),
            (_, None) => reply.error(ErrorCode::ObjectNotFound),
        }
    }

    pub(super) fn on_learn_fetch(&self, gpid: Gpid, request: &Request, reply: Reply) {
        let (Ok(r), Some(p)) = (request.args::<LearnFetchRequest>(), self.partition(gpid)) else {
            return reply.error(ErrorCode::ObjectNotFound);
        };
        let plain = |n: &str| !n.is_empty() && !n.contains('/') && !n.starts_with('.');
        if !plain(&r.checkpoint) || !plain(&r.name) || r.offset < 0 || r.len <= 0 {
            return reply.error(ErrorCode::InvalidParameters);
        }
        let path = p.dir().join("learn").join(&r.checkpoint).join(&r.name);
        let len = (r.len as usize).min(4 << 20);
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let read = std::fs::File::open(&path).and_then(|f| {
                let mut buf = vec![0; len];
                let n = f.read_at(&mut buf, r.offset as u64)?;
                buf.truncate(n);
                Ok(buf)
            });
            match read {
                Ok(data) => {
                    let crc = i64::from(plog::CRC32C.checksum(&data));
                    reply.send(
                        ErrorCode::Ok,
                        Some(&LearnFetchResponse {
                            err: ErrorName(ErrorCode::Ok.name().to_owned()),
                            data: Blob::from(data),
                            crc,
                        }),
                    )
                }
                Err(e) => {
                    warn!(%gpid, path = %path.display(), "learner fetch: {e}");
                    reply.error(ErrorCode::FileOperationFailed)
                }
            }
        });
    }

    /// A configuration the meta leader announces.
    pub(super) fn on_proposal(self: &Arc<Self>, request: &Request, reply: Reply) {
        match request.args::<Assignment>() {
            Ok(config) if self.peers.is_some() => {
                let stub = Arc::clone(self);
                // Applying may open a replica: not on the async workers.
                tokio::task::spawn_blocking(move || {
                    stub.apply_configs(&[config]);
                    reply.send(ErrorCode::Ok, Some(&Empty {}));
                });
            }
            Ok(_) => reply.error(ErrorCode::InvalidState),
            Err(e) => {
                warn!("bad configuration proposal: {e}");
                reply.error(ErrorCode::InvalidParameters)
            }
        }
    }
}

/// The files of a checkpoint, with sizes and CRC-32C.
fn list_files(dir: &std::path::Path) -> std::io::Result<Vec<LearnFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let mut digest = plog::CRC32C.digest();
        let mut f = std::fs::File::open(entry.path())?;
        let mut buf = vec![0; 1 << 20];
        let mut size = 0i64;
        loop {
            let n = std::io::Read::read(&mut f, &mut buf)?;
            if n == 0 {
                break;
            }
            digest.update(&buf[..n]);
            size += n as i64;
        }
        files.push(LearnFile {
            name: entry.file_name().to_string_lossy().into_owned(),
            size,
            crc: i64::from(digest.finalize()),
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}
