//! What clients ask of this node: the rrdb requests, admitted by the table's environments, then
//! written through the partition's driver or read from its store; and the [`Service`] the
//! network layer calls (requests, HTTP, health).

use std::future::Future;
use std::sync::Arc;

use pegasus_protocol::codes::{ErrorCode, rpc};
use pegasus_protocol::frame::Request;
use pegasus_protocol::key;
use pegasus_protocol::types::*;
use tracing::warn;

use super::envs::Admission;
use super::metrics::Op;
use super::partition::{Partition, PartitionError};
use super::read::{self, ScanContext, Tier};
use super::write::{WriteOp, WriteReply};
use super::{ReplicaStub, storage};
use crate::http::{HttpRequest, HttpResponse, content};
use crate::net::{Reply, Service};

impl ReplicaStub {
    fn submit(
        &self,
        partition: &Partition,
        op: Result<WriteOp, pegasus_protocol::ProtocolError>,
        reply: Reply,
    ) {
        let op = match op {
            // `default_ttl` is set here, on the primary: every copy logs the same value.
            Ok(op) => partition.envs().with_default_ttl(op),
            Err(e) => {
                warn!(rpc = reply.rpc_name(), "bad request: {e}");
                return reply.error(ErrorCode::InvalidParameters);
            }
        };
        partition.submit(
            op,
            Box::new(move |result| match result {
                Ok(WriteReply::Update(r)) => reply.send(ErrorCode::Ok, Some(&r)),
                Ok(WriteReply::MultiRemove(r)) => reply.send(ErrorCode::Ok, Some(&r)),
                Ok(WriteReply::Incr(r)) => reply.send(ErrorCode::Ok, Some(&r)),
                Ok(WriteReply::CheckAndSet(r)) => reply.send(ErrorCode::Ok, Some(&r)),
                Ok(WriteReply::CheckAndMutate(r)) => reply.send(ErrorCode::Ok, Some(&r)),
                Err(e @ (PartitionError::Storage(_) | PartitionError::Plog(_))) => {
                    warn!("write failed: {e}");
                    reply.error(e.code())
                }
                Err(e) => reply.error(e.code()),
            }),
        );
    }
}

fn is_read(name: &str) -> bool {
    matches!(
        name,
        rpc::GET
            | rpc::MULTI_GET
            | rpc::BATCH_GET
            | rpc::SORTKEY_COUNT
            | rpc::TTL
            | rpc::GET_SCANNER
            | rpc::SCAN
    )
}

impl Service for ReplicaStub {
    fn http(self: &Arc<Self>, req: HttpRequest) -> impl Future<Output = HttpResponse> + Send {
        let this = Arc::clone(self);
        async move {
            // Store properties are read from RocksDB: off the async workers.
            tokio::task::spawn_blocking(move || match req.path.as_str() {
                "/metrics" => HttpResponse::ok(
                    crate::metrics::CONTENT_TYPE,
                    this.options.metrics.encode(&this.samples()),
                ),
                "/" => HttpResponse::ok(content::HTML, this.status_page()),
                "/replica/digest" => this.digest(&req),
                _ => crate::http::builtin(&req, this.started)
                    .unwrap_or_else(|| HttpResponse::not_found(&req.path)),
            })
            .await
            .unwrap_or_else(|e| HttpResponse::error(500, e.to_string()))
        }
    }

    /// Unhealthy while a replica has stopped taking writes (a full disk, an I/O error): that
    /// needs the operator, and a restart once it is fixed. Replicas moved aside as damaged are
    /// reported to the meta and logged, but do not keep the node unhealthy for good.
    fn health(&self) -> Result<(), String> {
        let failed: Vec<String> = self
            .partitions
            .read()
            .expect("partitions")
            .iter()
            .filter_map(|(gpid, p)| p.failure().map(|why| format!("replica {gpid} lost: {why}")))
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("\n"))
        }
    }

    fn handle(self: &Arc<Self>, batch: Vec<(Request, Reply)>) {
        let mut admitted = Vec::new();
        for (request, mut reply) in batch {
            let gpid = Gpid::new(request.meta.app_id, request.meta.partition_index);
            let name = request.message.name.as_str();
            match name {
                rpc::PREPARE => {
                    self.on_prepare(gpid, &request, reply);
                    continue;
                }
                rpc::CONFIG_PROPOSAL => {
                    self.on_proposal(&request, reply);
                    continue;
                }
                rpc::LEARN_ADD_LEARNER => {
                    self.on_learn_add(&request, reply);
                    continue;
                }
                rpc::LEARN => {
                    self.on_learn(gpid, &request, reply);
                    continue;
                }
                rpc::LEARN_FETCH => {
                    self.on_learn_fetch(gpid, &request, reply);
                    continue;
                }
                rpc::LEARN_COMPLETION_NOTIFY => {
                    self.on_learn_done(gpid, &request, reply);
                    continue;
                }
                rpc::COLD_BACKUP => {
                    self.on_cold_backup(&request, reply);
                    continue;
                }
                _ => {}
            }
            let partition = match self.serves(gpid, !is_read(name) && name != rpc::CLEAR_SCANNER) {
                Ok(p) => p,
                Err(code) => {
                    // Not ours (any more), or inactive: the client refreshes its routing on these.
                    if name != rpc::CLEAR_SCANNER {
                        reply.error(code);
                    }
                    continue;
                }
            };
            if let Some(op) = Op::of_rpc(name) {
                let table = partition.table_metrics();
                reply.measure(table.op(op));
                if !op.reads() {
                    table.written_bytes.inc_by(request.args.len() as u64);
                }
            }
            match admission(&partition, name, &request) {
                Admission::Pass => admitted.push((partition, request, reply)),
                Admission::Delay(d) => {
                    let this = Arc::clone(self);
                    tokio::spawn(async move {
                        tokio::time::sleep(d).await;
                        this.dispatch(vec![(partition, request, reply)]);
                    });
                }
                Admission::Reject(d) if d.is_zero() => reply.error(ErrorCode::Busy),
                Admission::Reject(d) => {
                    tokio::spawn(async move {
                        tokio::time::sleep(d).await;
                        reply.error(ErrorCode::Busy);
                    });
                }
                // `timeout*…`: no answer; the client times out.
                Admission::Ignore => drop(reply),
                Admission::Reconfig => reply.error(ErrorCode::InvalidState),
            }
        }
        self.dispatch(admitted);
    }
}

/// What the table's environments make of a client request (deny, throttling).
fn admission(partition: &Partition, name: &str, request: &Request) -> Admission {
    if name == rpc::CLEAR_SCANNER {
        return Admission::Pass;
    }
    let envs = partition.envs();
    if is_read(name) {
        envs.admit_read()
    } else {
        envs.admit_write(request.args.len() as u64)
    }
}

impl ReplicaStub {
    /// Serves client requests that passed admission.
    fn dispatch(self: &Arc<Self>, batch: Vec<ReadJob>) {
        let mut point_reads = Vec::new();
        let mut reads = Vec::new();
        for (partition, request, reply) in batch {
            let name = request.message.name.as_str();
            match name {
                rpc::PUT => self.submit(&partition, request.args().map(WriteOp::Put), reply),
                rpc::MULTI_PUT => {
                    self.submit(&partition, request.args().map(WriteOp::MultiPut), reply)
                }
                rpc::REMOVE => self.submit(&partition, request.args().map(WriteOp::Remove), reply),
                rpc::MULTI_REMOVE => {
                    self.submit(&partition, request.args().map(WriteOp::MultiRemove), reply)
                }
                rpc::INCR => self.submit(&partition, request.args().map(WriteOp::Incr), reply),
                rpc::CHECK_AND_SET => {
                    self.submit(&partition, request.args().map(WriteOp::CheckAndSet), reply)
                }
                rpc::CHECK_AND_MUTATE => self.submit(
                    &partition,
                    request.args().map(WriteOp::CheckAndMutate),
                    reply,
                ),
                rpc::CLEAR_SCANNER => {
                    // One-way: no answer.
                    if let Ok(id) = request.args::<i64>() {
                        partition.clear_scanner(id);
                    }
                }
                rpc::GET | rpc::TTL => point_reads.push((partition, request, reply)),
                n if is_read(n) => reads.push((partition, request, reply)),
                _ => reply.error(ErrorCode::HandlerNotFound),
            }
        }
        // Point reads are answered from memory on async workers (RocksDB is asked with the
        // block-cache read tier, so they never wait for the disk): the first chunk right here,
        // further chunks on tasks that the runtime's other workers pick up, so one busy
        // connection's lookups use every core. What memory cannot answer joins the other reads.
        while point_reads.len() > POINT_READ_CHUNK {
            let chunk = point_reads.split_off(point_reads.len() - POINT_READ_CHUNK);
            let this = Arc::clone(self);
            tokio::spawn(async move {
                let misses = this.serve_from_memory(chunk);
                this.serve_from_disk(misses);
            });
        }
        reads.extend(self.serve_from_memory(point_reads));
        self.serve_from_disk(reads);
    }
}

/// One read waiting for its answer.
type ReadJob = (Arc<Partition>, Request, Reply);

/// Point reads one task answers from memory before the rest of its batch goes to other tasks.
const POINT_READ_CHUNK: usize = 8;

impl ReplicaStub {
    /// Answers the point reads memory can answer; returns the others.
    fn serve_from_memory(&self, reads: Vec<ReadJob>) -> Vec<ReadJob> {
        let now = key::epoch_now();
        reads
            .into_iter()
            .filter_map(|(partition, request, reply)| {
                serve_read(
                    &partition,
                    &request,
                    reply,
                    now,
                    &self.options.server,
                    Tier::Memory,
                )
                .map(|reply| (partition, request, reply))
            })
            .collect()
    }

    /// Answers reads that may need the disk, all on one blocking thread.
    fn serve_from_disk(&self, reads: Vec<ReadJob>) {
        if reads.is_empty() {
            return;
        }
        let server = self.options.server.clone();
        tokio::task::spawn_blocking(move || {
            let now = key::epoch_now();
            for (partition, request, reply) in reads {
                serve_read(&partition, &request, reply, now, &server, Tier::All);
            }
        });
    }
}

/// A read's answer.
enum ReadAnswer {
    Read(ReadResponse),
    Ttl(TtlResponse),
    Count(CountResponse),
    MultiGet(MultiGetResponse),
    BatchGet(BatchGetResponse),
    Scan(ScanResponse),
}

/// Why a read has no answer.
enum ReadFailure {
    Decode(pegasus_protocol::ProtocolError),
    Storage(storage::StorageError),
    /// Only memory was asked, and the answer needs the disk.
    NotInMemory,
    Unknown,
}

impl From<pegasus_protocol::ProtocolError> for ReadFailure {
    fn from(e: pegasus_protocol::ProtocolError) -> Self {
        ReadFailure::Decode(e)
    }
}

impl From<storage::StorageError> for ReadFailure {
    fn from(e: storage::StorageError) -> Self {
        ReadFailure::Storage(e)
    }
}

fn read_answer(
    p: &Partition,
    request: &Request,
    now: u32,
    tier: Tier,
) -> Result<ReadAnswer, ReadFailure> {
    let Some(s) = p.storage() else {
        return Err(ReadFailure::Unknown);
    };
    let s = &*s;
    Ok(match request.message.name.as_str() {
        rpc::GET => ReadAnswer::Read(
            read::get(s, &request.args::<Blob>()?, now, tier)?.ok_or(ReadFailure::NotInMemory)?,
        ),
        rpc::TTL => ReadAnswer::Ttl(
            read::ttl(s, &request.args::<Blob>()?, now, tier)?.ok_or(ReadFailure::NotInMemory)?,
        ),
        rpc::SORTKEY_COUNT => {
            ReadAnswer::Count(read::sortkey_count(s, &request.args::<Blob>()?, now)?)
        }
        rpc::MULTI_GET => ReadAnswer::MultiGet(read::multi_get(
            s,
            &request.args::<MultiGetRequest>()?,
            now,
            p.limits(),
        )?),
        rpc::BATCH_GET => ReadAnswer::BatchGet(read::batch_get(
            s,
            &request.args::<BatchGetRequest>()?,
            now,
            p.limits(),
        )?),
        rpc::GET_SCANNER => {
            let args = request.args::<GetScannerRequest>()?;
            let mut ctx = ScanContext::from_request(&args, p.limits());
            let (kvs, more) = read::scan_batch(s, &mut ctx, now)?;
            let context_id = if more { p.add_scanner(ctx) } else { -1 };
            ReadAnswer::Scan(scan_response(
                kvs,
                context_id,
                args.only_return_count.unwrap_or(false),
            ))
        }
        rpc::SCAN => {
            let id = request.args::<ScanRequest>()?.context_id;
            ReadAnswer::Scan(match p.take_scanner(id) {
                // Expired or evicted: the client restarts from its last key.
                None => ScanResponse {
                    error: pegasus_protocol::codes::status::NOT_FOUND,
                    context_id: -1,
                    ..Default::default()
                },
                Some(mut ctx) => {
                    let (kvs, more) = read::scan_batch(s, &mut ctx, now)?;
                    if more {
                        p.put_scanner(id, ctx);
                    }
                    scan_response(kvs, if more { id } else { -1 }, false)
                }
            })
        }
        _ => return Err(ReadFailure::Unknown),
    })
}

/// Answers one read from `tier`; hands the reply back when memory alone cannot answer.
fn serve_read(
    p: &Partition,
    request: &Request,
    reply: Reply,
    now: u32,
    server: &str,
    tier: Tier,
) -> Option<Reply> {
    macro_rules! send {
        ($r:expr) => {{
            let mut r = $r;
            r.app_id = p.gpid().app_id;
            r.partition_index = p.gpid().partition_index;
            r.server = server.to_owned();
            reply.send(ErrorCode::Ok, Some(&r))
        }};
    }
    match read_answer(p, request, now, tier) {
        Err(ReadFailure::NotInMemory) => return Some(reply),
        Ok(ReadAnswer::Read(r)) => send!(r),
        Ok(ReadAnswer::Ttl(r)) => send!(r),
        Ok(ReadAnswer::Count(r)) => send!(r),
        Ok(ReadAnswer::MultiGet(r)) => send!(r),
        Ok(ReadAnswer::BatchGet(r)) => send!(r),
        Ok(ReadAnswer::Scan(r)) => send!(r),
        Err(ReadFailure::Decode(e)) => {
            warn!(gpid = %p.gpid(), rpc = %request.message.name, "bad request: {e}");
            reply.error(ErrorCode::InvalidParameters)
        }
        Err(ReadFailure::Storage(e)) => {
            warn!(gpid = %p.gpid(), rpc = %request.message.name, "read failed: {e}");
            reply.error(ErrorCode::FileOperationFailed)
        }
        Err(ReadFailure::Unknown) => reply.error(ErrorCode::HandlerNotFound),
    }
    None
}

fn scan_response(kvs: Vec<KeyValue>, context_id: i64, only_count: bool) -> ScanResponse {
    if only_count {
        ScanResponse {
            error: 0,
            kv_count: Some(kvs.len() as i32),
            context_id,
            ..Default::default()
        }
    } else {
        ScanResponse {
            error: 0,
            kvs,
            context_id,
            ..Default::default()
        }
    }
}
