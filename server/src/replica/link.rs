//! How a replica server reaches the others: prepares to the secondaries of its primaries, and
//! configuration changes to the meta leader. Both go through one [`Transport`]
//! (pegasus-transport): one pipelined connection per peer, the same frames as every RPC.

use std::collections::VecDeque;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use pegasus_protocol::backup::{ReportRestoreStatusRequest, ReportRestoreStatusResponse};
use pegasus_protocol::codes::{ErrorCode, rpc};
use pegasus_protocol::frame::RequestMeta;
use pegasus_protocol::types::{
    Args, Empty, Gpid, LearnAddRequest, LearnDoneRequest, LearnFetchRequest, LearnFetchResponse,
    LearnRequest, LearnResponse, PrepareRequest, PrepareResponse, RpcAddress, UpdateConfigRequest,
    UpdateConfigResponse, config_type,
};
use pegasus_transport::{CallError, Transport};
use tokio::runtime::Handle;
use tracing::{debug, info, warn};

use super::ReplicaStub;
use super::faults::{Faults, Point};
use super::metrics::ReplicaMetrics;
use super::partition::{Copy, CopyDone, Effects, Peers, PrepareDone};
use super::plog::CRC32C;

/// How long a connection to a peer or a meta may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The time a prepare has for its acknowledgement (Pegasus: 3 s), the state machine's timeout.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause before sending a prepare again that the secondary could not take yet (its
/// configuration was still on its way) or that found no connection.
const PREPARE_RETRY: Duration = Duration::from_millis(100);

/// A chunk of a learned file.
const CHUNK: i32 = 1 << 20;

/// The replica server's way out.
pub struct Link {
    transport: Transport,
    metas: Vec<SocketAddr>,
    leader: Mutex<Option<SocketAddr>>,
    runtime: Handle,
    stub: Weak<ReplicaStub>,
    /// Bytes per second a learner copies at most (`[nfs] max_copy_rate_megabytes_per_disk`).
    learn_rate: u64,
    metrics: Arc<ReplicaMetrics>,
    faults: Arc<Faults>,
}

impl Link {
    /// A link to `metas`, spawning its calls on `runtime`.
    pub fn new(
        metas: Vec<SocketAddr>,
        runtime: Handle,
        stub: Weak<ReplicaStub>,
        learn_rate: u64,
        metrics: Arc<ReplicaMetrics>,
        faults: Arc<Faults>,
    ) -> Self {
        Link {
            transport: Transport::new(CONNECT_TIMEOUT),
            metas,
            leader: Mutex::new(None),
            runtime,
            stub,
            learn_rate: learn_rate.max(1),
            metrics,
            faults,
        }
    }

    /// Sends a one-way notice (its answer, if any, is not needed).
    fn notify<A: pegasus_protocol::codec::Field + Default + Send + Sync + 'static>(
        &self,
        to: SocketAddrV4,
        pid: Gpid,
        name: &'static str,
        request: A,
    ) {
        let transport = self.transport.clone();
        self.runtime.spawn(async move {
            let meta = RequestMeta {
                app_id: pid.app_id,
                partition_index: pid.partition_index,
                ..RequestMeta::default()
            };
            if let Err(e) = transport
                .call::<_, Empty>(
                    SocketAddr::V4(to),
                    meta,
                    name,
                    &Args(request),
                    PREPARE_TIMEOUT,
                )
                .await
            {
                debug!(%to, name, "{e}");
            }
        });
    }

    /// Tells the meta leader how a restored copy stands (its answer is not needed: progress
    /// is reported again, and the outcome is repeated by the beacons' view of the copy).
    pub fn report_restore(
        &self,
        pid: Gpid,
        code: ErrorCode,
        progress: i32,
        reason: Option<String>,
    ) {
        let transport = self.transport.clone();
        let candidates = self.candidates();
        self.runtime.spawn(async move {
            let request = Args(ReportRestoreStatusRequest {
                pid,
                restore_status: pegasus_protocol::types::ErrorName(code.name().to_owned()),
                progress,
                reason,
            });
            for meta in candidates {
                let answer = transport
                    .call::<_, ReportRestoreStatusResponse>(
                        meta,
                        RequestMeta::default(),
                        rpc::REPORT_RESTORE_STATUS,
                        &request,
                        PREPARE_TIMEOUT,
                    )
                    .await;
                if answer.is_ok_and(|r| ErrorCode::from_name(&r.err.0) == ErrorCode::Ok) {
                    return;
                }
            }
            debug!(%pid, "restore status: no meta leader answered");
        });
    }

    /// The meta leader, as the beacons last found it.
    pub fn set_leader(&self, leader: SocketAddr) {
        *self.leader.lock().expect("leader") = Some(leader);
    }

    fn candidates(&self) -> VecDeque<SocketAddr> {
        let leader = *self.leader.lock().expect("leader");
        leader
            .into_iter()
            .chain(self.metas.iter().copied())
            .collect()
    }
}

/// Fetches a checkpoint and the log past it from the primary `from` into `dest`, each chunk
/// checked against its CRC-32C and each file against the primary's, at most `rate` bytes a
/// second; the files and the folder are synced.
async fn fetch(
    transport: &Transport,
    from: SocketAddrV4,
    request: LearnRequest,
    dest: &std::path::Path,
    rate: u64,
    metrics: &ReplicaMetrics,
    faults: &Faults,
) -> Copy {
    let pid = request.pid;
    let meta = RequestMeta {
        app_id: pid.app_id,
        partition_index: pid.partition_index,
        ..RequestMeta::default()
    };
    let to = SocketAddr::V4(from);
    let timeout = Duration::from_secs(60);
    let r: LearnResponse = transport
        .call(to, meta, rpc::LEARN, &Args(request), timeout)
        .await
        .map_err(|e| format!("asking {from} for a copy: {e}"))?;
    if ErrorCode::from_name(&r.err.0) != ErrorCode::Ok {
        return Err(format!("{from} gave no copy: {}", r.err.0));
    }
    let tail = r
        .tail
        .into_iter()
        .map(|m| pegasus_replication::Mutation {
            ballot: m.ballot.max(0) as u64,
            decree: m.decree.max(0) as u64,
            write: (!m.empty).then(|| -> Effects {
                Arc::new(m.ops.into_iter().map(super::partition::from_wire).collect())
            }),
        })
        .collect();
    let decree = r.checkpoint_decree.max(0) as u64;
    if r.checkpoint.is_empty() && r.files.is_empty() {
        info!(%pid, %from, from_decree = decree + 1, "learning from the primary's log");
        return Ok((None, decree, tail));
    }
    let _ = tokio::fs::remove_dir_all(dest).await;
    tokio::fs::create_dir_all(dest)
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut copied = 0u64;
    for f in &r.files {
        if f.name.is_empty() || f.name.contains('/') || f.name.starts_with('.') {
            return Err(format!("{from} offered a file named `{}`", f.name));
        }
        let path = dest.join(&f.name);
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| e.to_string())?;
        let mut digest = CRC32C.digest();
        let mut offset = 0i64;
        while offset < f.size {
            let chunk: LearnFetchResponse = transport
                .call(
                    to,
                    meta,
                    rpc::LEARN_FETCH,
                    &Args(LearnFetchRequest {
                        pid,
                        checkpoint: r.checkpoint.clone(),
                        name: f.name.clone(),
                        offset,
                        len: CHUNK,
                    }),
                    timeout,
                )
                .await
                .map_err(|e| format!("fetching `{}` from {from}: {e}", f.name))?;
            let data = chunk.data.as_slice();
            if ErrorCode::from_name(&chunk.err.0) != ErrorCode::Ok || data.is_empty() {
                return Err(format!(
                    "fetching `{}` from {from}: {}",
                    f.name, chunk.err.0
                ));
            }
            if i64::from(CRC32C.checksum(data)) != chunk.crc {
                return Err(format!("`{}` at {offset}: checksum mismatch", f.name));
            }
            digest.update(data);
            faults
                .check(Point::LearnWrite)
                .map_err(|e| format!("writing `{}`: {e}", f.name))?;
            tokio::io::AsyncWriteExt::write_all(&mut file, data)
                .await
                .map_err(|e| e.to_string())?;
            offset += data.len() as i64;
            copied += data.len() as u64;
            // The transfer rate is bounded: learning must not starve the primary's disk.
            let due = Duration::from_secs_f64(copied as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        if offset != f.size || i64::from(digest.finalize()) != f.crc {
            return Err(format!(
                "`{}`: size or checksum differs from the primary's",
                f.name
            ));
        }
        file.sync_all().await.map_err(|e| e.to_string())?;
    }
    let dir = dest.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir).and_then(|d| d.sync_all()))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    metrics.learn_bytes.inc_by(copied);
    metrics.learn_duration.observe(started.elapsed());
    info!(%pid, %from, files = r.files.len(), bytes = copied, took = ?started.elapsed(), "copy fetched");
    Ok((Some(dest.to_owned()), decree, tail))
}

impl Peers for Link {
    fn learn_add(&self, to: SocketAddrV4, request: LearnAddRequest) {
        self.notify(to, request.pid, rpc::LEARN_ADD_LEARNER, request);
    }

    fn learn_done(&self, to: SocketAddrV4, request: LearnDoneRequest) {
        self.notify(to, request.pid, rpc::LEARN_COMPLETION_NOTIFY, request);
    }

    fn learn(&self, from: SocketAddrV4, request: LearnRequest, dest: PathBuf, done: CopyDone) {
        let transport = self.transport.clone();
        let rate = self.learn_rate;
        let metrics = Arc::clone(&self.metrics);
        let faults = Arc::clone(&self.faults);
        self.runtime.spawn(async move {
            done(fetch(&transport, from, request, &dest, rate, &metrics, &faults).await);
        });
    }

    fn prepare(&self, to: SocketAddrV4, request: PrepareRequest, done: PrepareDone) {
        let transport = self.transport.clone();
        let rtt = self.metrics.prepare_rtt.clone();
        self.runtime.spawn(async move {
            let sent = Instant::now();
            let deadline = sent + PREPARE_TIMEOUT;
            let meta = RequestMeta {
                app_id: request.pid.app_id,
                partition_index: request.pid.partition_index,
                ..RequestMeta::default()
            };
            let args = Args(request);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return done(None);
                }
                let answer = transport
                    .call::<_, PrepareResponse>(SocketAddr::V4(to), meta, rpc::PREPARE, &args, left)
                    .await;
                match answer {
                    Ok(r) if ErrorCode::from_name(&r.err.0) == ErrorCode::Ok => {
                        rtt.observe(sent.elapsed());
                        return done(Some(r));
                    }
                    // Not configured there yet, no connection now, or the connection broke
                    // (the prepare may have arrived: a prepare is idempotent, the secondary
                    // acknowledges a repeat of one it logged): again shortly, within the
                    // prepare's time.
                    Ok(_)
                    | Err(CallError::Server(_))
                    | Err(CallError::Connect(..))
                    | Err(CallError::Disconnected(_))
                    | Err(CallError::NotSent(_)) => {
                        tokio::time::sleep(PREPARE_RETRY.min(left)).await;
                    }
                    Err(e) => {
                        debug!(%to, "prepare: {e}");
                        return done(None);
                    }
                }
            }
        });
    }

    fn update(&self, gpid: Gpid, ballot: u64, member: SocketAddrV4, kind: i32) {
        let transport = self.transport.clone();
        let mut candidates = self.candidates();
        let tries = candidates.len() + 1;
        let stub = self.stub.clone();
        self.runtime.spawn(async move {
            let request = Args(UpdateConfigRequest {
                pid: gpid,
                ballot: ballot as i64,
                node: RpcAddress::new(member),
                config_type: kind,
            });
            for _ in 0..tries {
                let Some(meta) = candidates.pop_front() else {
                    break;
                };
                let answer = transport
                    .call::<_, UpdateConfigResponse>(
                        meta,
                        RequestMeta::default(),
                        rpc::UPDATE_CONFIG,
                        &request,
                        PREPARE_TIMEOUT,
                    )
                    .await;
                match answer.map(|r| (ErrorCode::from_name(&r.err.0), r.config)) {
                    Ok((code @ (ErrorCode::Ok | ErrorCode::InvalidVersion), config)) => {
                        info!(%gpid, %member, ballot, kind, %code, new_ballot = config.ballot, "configuration change answered");
                        if let Some(stub) = stub.upgrade() {
                            stub.link().inspect(|l| l.set_leader(meta));
                            // A raised ballot was made at this request: the replica may be
                            // primary there (told before the configuration, in order).
                            let granted = code == ErrorCode::Ok
                                && kind == config_type::PRIMARY_FORCE_UPDATE_BALLOT;
                            // Applying may open a replica: not on the async workers.
                            tokio::task::spawn_blocking(move || {
                                if granted && let Some(p) = stub.partition(gpid) {
                                    p.granted(config.ballot.max(0) as u64);
                                }
                                stub.apply_configs(&[config])
                            });
                        }
                        return;
                    }
                    Ok((ErrorCode::ForwardToOthers, _)) | Err(_) => continue,
                    Ok((code, _)) => {
                        warn!(%gpid, %member, ballot, kind, %code, "configuration change refused");
                        return;
                    }
                }
            }
            warn!(%gpid, %member, ballot, kind, "configuration change: no meta leader answered; asked again later");
        });
    }
}
