//! Beacons: every `fd_beacon_interval_seconds` the replica server tells the meta leader who it
//! is and which replicas it holds; the answer is its assignments (the config sync). A follower
//! answers with the leader's address, which the next beacon goes to. Without a successful beacon
//! for `fd_lease_seconds` the lease is lost and every replica goes inactive until one succeeds.

use std::collections::VecDeque;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pegasus_client::protocol::codes::{ErrorCode, rpc};
use pegasus_client::protocol::frame::RequestMeta;
use pegasus_client::protocol::types::{Args, BeaconRequest, BeaconResponse, RpcAddress};
use pegasus_client::{Client, ClientOptions};
use tracing::{debug, warn};

use super::ReplicaStub;

/// Timing of the failure detector, from `[replication] fd_*`.
#[derive(Clone, Copy, Debug)]
pub struct BeaconOptions {
    /// `fd_beacon_interval_seconds`.
    pub interval: Duration,
    /// `fd_lease_seconds`.
    pub lease: Duration,
}

/// Sends beacons until `shutdown`.
pub async fn run(
    stub: Arc<ReplicaStub>,
    me: SocketAddrV4,
    metas: Vec<SocketAddr>,
    options: BeaconOptions,
    shutdown: impl std::future::Future,
) {
    let client = Client::new(ClientOptions {
        metas: metas.clone(),
        timeout: options.interval.max(Duration::from_secs(1)),
    });
    let mut leader: Option<SocketAddr> = None;
    let mut last_ok = Instant::now();
    let mut ticker = tokio::time::interval(options.interval);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        let request = Args(BeaconRequest {
            node: RpcAddress::new(me),
            replicas: stub.gpids(),
        });
        let timeout = options.interval.max(Duration::from_secs(1));
        // The known leader first, then every meta; a redirect goes to the front.
        let mut candidates: VecDeque<SocketAddr> =
            leader.into_iter().chain(metas.iter().copied()).collect();
        let mut answered = false;
        let mut tries = 0;
        while let Some(meta) = candidates.pop_front() {
            tries += 1;
            if tries > metas.len() + 2 {
                break;
            }
            match client
                .call::<_, BeaconResponse>(
                    meta,
                    RequestMeta::default(),
                    rpc::BEACON,
                    &request,
                    timeout,
                )
                .await
            {
                Ok(r) if ErrorCode::from_name(&r.err.0) == ErrorCode::Ok => {
                    leader = Some(meta);
                    let gpids: Vec<_> = r.primaries.iter().map(|a| a.pid).collect();
                    let stub = Arc::clone(&stub);
                    // Opening replicas touches disks: not on the async workers.
                    match tokio::task::spawn_blocking(move || stub.apply_assignments(&gpids)).await
                    {
                        Ok(Ok(())) => {
                            last_ok = Instant::now();
                            answered = true;
                        }
                        Ok(Err(e)) => warn!("applying assignments: {e}"),
                        Err(e) => warn!("applying assignments: {e}"),
                    }
                    break;
                }
                Ok(r) => {
                    debug!(%meta, err = r.err.0, "beacon redirected");
                    if let Some(l) = r
                        .leader
                        .socket_addr()
                        .map(SocketAddr::V4)
                        .filter(|l| *l != meta)
                    {
                        candidates.push_front(l);
                    }
                }
                Err(e) => debug!(%meta, "beacon: {e}"),
            }
        }
        if !answered && last_ok.elapsed() > options.lease {
            stub.set_active(false);
        }
    }
}
