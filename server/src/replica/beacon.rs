//! Beacons: every `fd_beacon_interval_seconds` (every 200 ms while starting up) the replica
//! server tells the meta leader who it is and which replicas it holds; the answer is its
//! configurations (the config sync). A follower answers with the leader's address, which the next
//! beacon goes to. Each answered beacon extends the lease to when it was *sent* plus
//! `fd_lease_seconds`; every request checks it, so a replica server cut off from the meta stops
//! serving before the meta's `fd_grace_seconds` (counted from the beacon's arrival, later than
//! its sending) lets it give the partitions to another.

use std::collections::VecDeque;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pegasus_protocol::codes::{ErrorCode, rpc};
use pegasus_protocol::frame::RequestMeta;
use pegasus_protocol::types::{Args, BeaconRequest, BeaconResponse, RpcAddress};
use pegasus_transport::Transport;
use tracing::{debug, info, warn};

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
    metas: Vec<SocketAddr>,
    options: BeaconOptions,
    shutdown: impl std::future::Future,
) {
    let transport = Transport::new(options.interval.max(Duration::from_secs(1)));
    let mut leader: Option<SocketAddr> = None;
    let started = Instant::now();
    let mut next = Duration::ZERO;
    tokio::pin!(shutdown);
    let ballot_news = stub.ballot_news();
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(next) => {}
            // A ballot taken up: the meta hears of it now (briefly later, so that the other
            // partitions of one configuration round are in the same beacon).
            _ = ballot_news.notified() => {
                tokio::time::sleep(BALLOT_NEWS_DELAY).await;
            }
        }
        let sent = Instant::now();
        let request = Args(stub.beacon());
        let timeout = options.interval.max(Duration::from_secs(1));
        let mut answered = false;
        let mut assigned = false;
        if let Some((meta, r)) = to_leader(&transport, leader, &metas, &request, timeout).await {
            leader = Some(meta);
            if let Some(link) = stub.link() {
                link.set_leader(meta);
            }
            assigned = !r.configs.is_empty();
            // The lease holds from the answer on, whatever opening replicas then takes.
            stub.grant_lease(sent + options.lease);
            let opener = Arc::clone(&stub);
            // Opening replicas touches disks: not on the async workers.
            match tokio::task::spawn_blocking(move || {
                opener.retire(&r.dropped, &r.gone);
                opener.apply_configs(&r.configs)
            })
            .await
            {
                Ok(()) => answered = true,
                Err(e) => warn!("applying configurations: {e}"),
            }
        }
        next = next_beacon(options.interval, answered, assigned, started.elapsed())
            .saturating_sub(sent.elapsed());
    }
}

/// How long a beacon that reports a new ballot waits for the other changes of its round.
const BALLOT_NEWS_DELAY: Duration = Duration::from_millis(5);

/// The last beacon of a clean stop, sent once the beacons stopped and before the node stops
/// serving: the meta takes the node for dead at once, so its groups go on without it instead
/// of stalling for its grace period. Best effort: each meta is tried once, briefly.
pub async fn leave(me: SocketAddrV4, metas: &[SocketAddr]) {
    let transport = Transport::new(Duration::from_secs(1));
    let request = Args(BeaconRequest {
        node: RpcAddress::new(me),
        leaving: true,
        ..BeaconRequest::default()
    });
    match to_leader(&transport, None, metas, &request, Duration::from_secs(1)).await {
        Some((meta, _)) => info!(%meta, "told the meta leader this node is leaving"),
        None => warn!(
            "no meta leader heard that this node is leaving: its groups wait for its grace period"
        ),
    }
}

/// Sends beacon `request` to the meta leader: `known` (the leader last answering) first, then
/// every meta, a redirect going to the front; at most `metas + 2` tries. The leader and its
/// answer, if one accepted it.
async fn to_leader(
    transport: &Transport,
    known: Option<SocketAddr>,
    metas: &[SocketAddr],
    request: &Args<BeaconRequest>,
    timeout: Duration,
) -> Option<(SocketAddr, BeaconResponse)> {
    let mut candidates: VecDeque<SocketAddr> =
        known.into_iter().chain(metas.iter().copied()).collect();
    let mut tries = 0;
    while let Some(meta) = candidates.pop_front() {
        tries += 1;
        if tries > metas.len() + 2 {
            break;
        }
        match transport
            .call::<_, BeaconResponse>(meta, RequestMeta::default(), rpc::BEACON, request, timeout)
            .await
        {
            Ok(r) if ErrorCode::from_name(&r.err.0) == ErrorCode::Ok => return Some((meta, r)),
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
    None
}

/// Quick beacons while starting up: until a leader has answered, and while it assigns nothing
/// during the first minute (it waits for enough live nodes before it places partitions), a
/// beacon every 200 ms instead of every `interval`, so a cold cluster serves as soon as it can.
fn next_beacon(interval: Duration, answered: bool, assigned: bool, up: Duration) -> Duration {
    const QUICK: Duration = Duration::from_millis(200);
    const STARTING: Duration = Duration::from_secs(60);
    if !answered || (!assigned && up < STARTING) {
        interval.min(QUICK)
    } else {
        interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beacons_are_quick_only_while_starting_up() {
        let (second, quick) = (Duration::from_secs(1), Duration::from_millis(200));
        let early = Duration::from_secs(2);
        // No leader answered yet (electing, or all metas down): retry soon, at any age.
        assert_eq!(next_beacon(second, false, false, early), quick);
        assert_eq!(
            next_beacon(second, false, true, Duration::from_secs(3600)),
            quick
        );
        // A leader answered without assignments: it may be waiting for more live nodes.
        assert_eq!(next_beacon(second, true, false, early), quick);
        assert_eq!(
            next_beacon(second, true, false, Duration::from_secs(120)),
            second
        );
        // Serving: the configured interval.
        assert_eq!(next_beacon(second, true, true, early), second);
        // Never slower than configured.
        let fast = Duration::from_millis(50);
        assert_eq!(next_beacon(fast, false, false, early), fast);
    }
}
