//! How a replica server reaches the others: prepares to the secondaries of its primaries, and
//! configuration changes to the meta leader. Both go through one client (pegasus-client): one
//! pipelined connection per peer, the same frames as every RPC.

use std::collections::VecDeque;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use pegasus_client::{Client, ClientError, ClientOptions};
use pegasus_protocol::codes::{ErrorCode, rpc};
use pegasus_protocol::frame::RequestMeta;
use pegasus_protocol::types::{
    Args, Gpid, PrepareRequest, PrepareResponse, RpcAddress, UpdateConfigRequest,
    UpdateConfigResponse,
};
use tokio::runtime::Handle;
use tracing::{debug, info, warn};

use super::ReplicaStub;
use super::partition::{Peers, PrepareDone};

/// The time a prepare has for its acknowledgement (Pegasus: 3 s), the state machine's timeout.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause before sending a prepare again that the secondary could not take yet (its
/// configuration was still on its way) or that found no connection.
const PREPARE_RETRY: Duration = Duration::from_millis(100);

/// The replica server's way out.
pub struct Link {
    client: Client,
    metas: Vec<SocketAddr>,
    leader: Mutex<Option<SocketAddr>>,
    runtime: Handle,
    stub: Weak<ReplicaStub>,
}

impl Link {
    /// A link to `metas`, spawning its calls on `runtime`.
    pub fn new(metas: Vec<SocketAddr>, runtime: Handle, stub: Weak<ReplicaStub>) -> Self {
        Link {
            client: Client::new(ClientOptions::new(metas.clone())),
            metas,
            leader: Mutex::new(None),
            runtime,
            stub,
        }
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

impl Peers for Link {
    fn prepare(&self, to: SocketAddrV4, request: PrepareRequest, done: PrepareDone) {
        let client = self.client.clone();
        self.runtime.spawn(async move {
            let deadline = Instant::now() + PREPARE_TIMEOUT;
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
                let answer = client
                    .call::<_, PrepareResponse>(SocketAddr::V4(to), meta, rpc::PREPARE, &args, left)
                    .await;
                match answer {
                    Ok(r) if ErrorCode::from_name(&r.err.0) == ErrorCode::Ok => {
                        return done(Some(r));
                    }
                    // Not configured there yet, or no connection now: again shortly, within
                    // the prepare's time (the secondary takes a repeat once).
                    Ok(_)
                    | Err(ClientError::Server(_))
                    | Err(ClientError::Connect(..))
                    | Err(ClientError::NotSent(_)) => {
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
        let client = self.client.clone();
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
                let answer = client
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
                            // Applying may open a replica: not on the async workers.
                            tokio::task::spawn_blocking(move || stub.apply_configs(&[config]));
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
