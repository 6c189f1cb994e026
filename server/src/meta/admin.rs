//! The admin RPCs an operator's shell and tools send: tables (create, drop, recall, list,
//! environments, manual compaction), nodes, the cluster's summary, the meta's function level,
//! the balancer's proposals, and the collector's availability report.

use std::net::SocketAddrV4;
use std::sync::atomic::Ordering;
use std::time::Instant;

use pegasus_protocol::codes::ErrorCode;
use pegasus_protocol::types::*;
use tracing::{error, info, warn};

use super::state::{self, assignment};
use super::{MetaServer, err, unix_now};

impl MetaServer {
    /// `RPC_CM_PROPOSE_BALANCER` (Pegasus shell's `propose`): a `move_primary`, `[
    /// DOWNGRADE_TO_SECONDARY old, UPGRADE_TO_PRIMARY new]`, done in the balancer's two steps
    /// (the old primary steps down; the new one is promoted once every member runs that
    /// ballot), or a `copy_secondary`, `[ADD_SECONDARY(_FOR_LB) new, REMOVE or
    /// DOWNGRADE_TO_INACTIVE old]` (the new copy learns, then replaces the old in one change).
    /// Other proposals are refused with `ERR_INVALID_PARAMETERS`.
    pub(super) async fn propose_balancer(&self, r: BalancerRequest) -> BalancerResponse {
        let answer = |code: ErrorCode| BalancerResponse { err: err(code) };
        if !self.is_leader() {
            return answer(ErrorCode::ForwardToOthers);
        }
        let actions: Vec<(i32, Option<SocketAddrV4>)> = r
            .action_list
            .iter()
            .map(|a| (a.config_type, a.node.socket_addr()))
            .collect();
        let is = |t: i32| r.balance_type.is_none_or(|b| b == t);
        let (copy, from, to) = match actions.as_slice() {
            [
                (config_type::DOWNGRADE_TO_SECONDARY, Some(from)),
                (config_type::UPGRADE_TO_PRIMARY, Some(to)),
            ] if is(balancer_request_type::MOVE_PRIMARY) => (false, *from, *to),
            [
                (config_type::ADD_SECONDARY | config_type::ADD_SECONDARY_FOR_LB, Some(to)),
                (config_type::DOWNGRADE_TO_INACTIVE | config_type::REMOVE, Some(from)),
            ] if is(balancer_request_type::COPY_SECONDARY) => (true, *from, *to),
            _ => {
                warn!(gpid = %r.gpid, ?actions, "propose: only move_primary and copy_secondary are supported");
                return answer(ErrorCode::InvalidParameters);
            }
        };
        let mut state = self.lock().await;
        // Leadership may have moved while this waited for the state.
        if !self.is_leader() {
            return answer(ErrorCode::ForwardToOthers);
        }
        if self.level() < meta_function_level::STEADY {
            return answer(ErrorCode::InvalidState);
        }
        if copy {
            return match state.copy_secondary(r.gpid, from, to, Instant::now()) {
                Ok(primary) => {
                    info!(gpid = %r.gpid, %from, %to, %primary, "propose: a copy moves (ADD_SECONDARY)");
                    let mut proposal =
                        assignment(&state.apps[&r.gpid.app_id], r.gpid.partition_index);
                    proposal.learner = RpcAddress::new(to);
                    self.propose(r.gpid, primary, proposal);
                    answer(ErrorCode::Ok)
                }
                Err(why) => {
                    warn!(gpid = %r.gpid, %from, %to, "propose refused: {why}");
                    answer(ErrorCode::InvalidParameters)
                }
            };
        }
        match state.move_primary(r.gpid, from, to) {
            Ok(changed) => {
                info!(gpid = %r.gpid, %from, %to, "propose: the primary steps down to move");
                self.publish(&mut state, vec![changed]).await;
                answer(ErrorCode::Ok)
            }
            Err(why) => {
                warn!(gpid = %r.gpid, %from, %to, "propose refused: {why}");
                answer(ErrorCode::InvalidParameters)
            }
        }
    }

    /// `RPC_CM_CREATE_APP`.
    pub(super) async fn create_app(&self, r: CreateAppRequest) -> CreateAppResponse {
        let answer = |code: ErrorCode, appid: i32| CreateAppResponse {
            err: err(code),
            appid,
        };
        if !self.is_leader() {
            return answer(ErrorCode::ForwardToOthers, 0);
        }
        let o = &r.options;
        let checked = self
            .options
            .create_limits
            .check(&r.app_name, o.partition_count, o.replica_count)
            .and_then(|()| match o.app_type.as_str() {
                "" | "pegasus" => Ok(()),
                other => Err(format!("app type `{other}`: only `pegasus` tables exist")),
            })
            .and_then(|()| {
                o.envs
                    .iter()
                    .try_for_each(|(k, v)| configcheck::envs::check(k, v))
            });
        if let Err(why) = checked {
            warn!(table = r.app_name, "create refused: {why}");
            return answer(ErrorCode::InvalidParameters, 0);
        }
        if o.success_if_exist
            && let Some(existing) = state::app_named(&self.view(), &r.app_name)
            && existing.info.partition_count == o.partition_count
        {
            return answer(ErrorCode::Ok, existing.info.app_id);
        }
        match self
            .make_app(
                &r.app_name,
                o.partition_count,
                o.replica_count,
                o.envs.clone(),
            )
            .await
        {
            Ok(app_id) => answer(ErrorCode::Ok, app_id),
            Err(code) => answer(code, 0),
        }
    }

    /// Creates a table (a create, or a restore): persisted, then its partitions assigned.
    pub(super) async fn make_app(
        &self,
        name: &str,
        partitions: i32,
        replicas: i32,
        envs: std::collections::BTreeMap<String, String>,
    ) -> Result<i32, ErrorCode> {
        if let Err(why) = self.options.create_limits.check(name, partitions, replicas) {
            warn!(table = name, "create refused: {why}");
            return Err(ErrorCode::InvalidParameters);
        }
        let mut state = self.lock().await;
        // Leadership may have gone while this waited behind a slow change (ZooKeeper would
        // refuse the write anyway; this answers the client rightly).
        if !self.is_leader() {
            return Err(ErrorCode::ForwardToOthers);
        }
        if state.app_by_name(name).is_some() {
            return Err(ErrorCode::AppExist);
        }
        let alive = state.alive_count();
        if replicas as usize > alive {
            warn!(
                table = name,
                replicas, alive, "create refused: more copies than alive replica servers"
            );
            return Err(ErrorCode::InvalidParameters);
        }
        let mut app = state.new_app(name, partitions, replicas, unix_now());
        app.info.envs = envs;
        let app_id = app.info.app_id;
        if let Err(e) = self.zk.save_app(&app).await {
            error!("creating table {name}: {e}");
            return Err(ErrorCode::Unknown);
        }
        state.apps.insert(app_id, app);
        self.cure(&mut state).await;
        info!(table = name, app_id, partitions, "table created");
        Ok(app_id)
    }

    /// `RPC_CM_DROP_APP`: the table stops serving at once (its replicas close on their next
    /// beacon, keeping their files) and can be recalled for `reserve_seconds`; then the leader
    /// forgets it and the replica servers delete its files.
    pub(super) async fn drop_app(&self, r: DropAppRequest) -> DropAppResponse {
        let answer = |code: ErrorCode| DropAppResponse { err: err(code) };
        if !self.is_leader() {
            return answer(ErrorCode::ForwardToOthers);
        }
        let reserve = r
            .options
            .reserve_seconds
            .unwrap_or(self.options.hold_dropped.as_secs() as i64);
        if reserve < 0 {
            return answer(ErrorCode::InvalidParameters);
        }
        let mut state = self.lock().await;
        if !self.is_leader() {
            return answer(ErrorCode::ForwardToOthers);
        }
        let Some(app_id) = state.app_by_name(&r.app_name).map(|a| a.info.app_id) else {
            return answer(if r.options.success_if_not_exist {
                ErrorCode::Ok
            } else {
                ErrorCode::AppNotExist
            });
        };
        let mut info = state.apps[&app_id].info.clone();
        let now = unix_now();
        info.status = "AS_DROPPED".into();
        info.drop_second = now;
        info.expire_second = now.saturating_add(reserve);
        if let Err(e) = self.zk.save_app_info(&info).await {
            error!("dropping table {}: {e}", r.app_name);
            return answer(ErrorCode::Unknown);
        }
        state.apps.get_mut(&app_id).expect("found").info = info;
        info!(
            table = r.app_name,
            app_id, reserve, "table dropped (recallable for {reserve} s)"
        );
        answer(ErrorCode::Ok)
    }

    /// `RPC_CM_RECALL_APP`: a dropped table serves again, its partitions on the nodes that
    /// kept them.
    pub(super) async fn recall_app(&self, r: RecallAppRequest) -> RecallAppResponse {
        let answer = |code: ErrorCode| RecallAppResponse {
            err: err(code),
            info: Default::default(),
        };
        if !self.is_leader() {
            return answer(ErrorCode::ForwardToOthers);
        }
        let mut state = self.lock().await;
        if !self.is_leader() {
            return answer(ErrorCode::ForwardToOthers);
        }
        let Some(app) = state.apps.get(&r.app_id).filter(|a| !a.info.expired()) else {
            return answer(ErrorCode::AppNotExist);
        };
        if !app.info.dropped() {
            return answer(ErrorCode::AppExist);
        }
        let name = if r.new_app_name.is_empty() {
            app.info.app_name.clone()
        } else {
            r.new_app_name.clone()
        };
        if state.app_by_name(&name).is_some() {
            warn!(
                app_id = r.app_id,
                table = name,
                "recall refused: a table of that name exists"
            );
            return answer(ErrorCode::InvalidParameters);
        }
        let mut info = state.apps[&r.app_id].info.clone();
        info.status = "AS_AVAILABLE".into();
        info.app_name = name;
        info.drop_second = 0;
        info.expire_second = 0;
        if let Err(e) = self.zk.save_app_info(&info).await {
            error!("recalling table {}: {e}", info.app_name);
            return answer(ErrorCode::Unknown);
        }
        state.apps.get_mut(&r.app_id).expect("found").info = info.clone();
        self.cure(&mut state).await;
        info!(table = info.app_name, app_id = r.app_id, "table recalled");
        RecallAppResponse {
            err: err(ErrorCode::Ok),
            info: info.to_wire(),
        }
    }

    /// `RPC_CM_LIST_APPS`.
    pub(super) async fn list_apps(&self, r: ListAppsRequest) -> ListAppsResponse {
        if !self.is_leader() {
            return ListAppsResponse {
                err: err(ErrorCode::ForwardToOthers),
                infos: Vec::new(),
            };
        }
        let infos = self
            .view()
            .values()
            .filter(|a| !a.info.expired())
            .map(|a| a.info.to_wire())
            .filter(|a| r.status == app_status::INVALID || a.status == r.status)
            .collect();
        ListAppsResponse {
            err: err(ErrorCode::Ok),
            infos,
        }
    }

    /// `RPC_CM_LIST_NODES`.
    pub(super) async fn list_nodes(&self, r: ListNodesRequest) -> ListNodesResponse {
        if !self.is_leader() {
            return ListNodesResponse {
                err: err(ErrorCode::ForwardToOthers),
                infos: Vec::new(),
            };
        }
        let state = self.lock().await;
        let mut infos: Vec<NodeInfo> = state
            .nodes
            .iter()
            .map(|(addr, n)| NodeInfo {
                status: if n.alive {
                    node_status::ALIVE
                } else {
                    node_status::UNALIVE
                },
                address: RpcAddress::new(*addr),
            })
            .filter(|n| r.status == node_status::INVALID || n.status == r.status)
            .collect();
        infos.sort_by_key(|n| n.address.socket_addr());
        ListNodesResponse {
            err: err(ErrorCode::Ok),
            infos,
        }
    }

    /// `RPC_CM_CLUSTER_INFO`: Pegasus's keys and values, in its order.
    pub(super) async fn cluster_info(&self) -> ClusterInfoResponse {
        let metas = self
            .options
            .meta_servers
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let leader = self
            .leader_addr
            .lock()
            .expect("leader")
            .map_or_else(String::new, |a| a.to_string());
        let (moves, primary_stddev, total_stddev) = {
            let state = self.lock().await;
            let (primary, total) = state.balance_score();
            (state.moves(), primary, total)
        };
        let pairs = [
            ("meta_servers", metas),
            ("primary_meta_server", leader),
            ("zookeeper_hosts", self.options.zk.hosts.clone()),
            ("zookeeper_root", self.options.cluster_root.clone()),
            (
                "meta_function_level",
                meta_function_level::name(self.level()).to_owned(),
            ),
            (
                "balance_operation_count",
                format!("move_pri={moves},copy_pri=0,copy_sec=0,total={moves}"),
            ),
            (
                "primary_replica_count_stddev",
                format!("{primary_stddev:.2}"),
            ),
            ("total_replica_count_stddev", format!("{total_stddev:.2}")),
            ("cluster_name", self.options.cluster_name.clone()),
        ];
        ClusterInfoResponse {
            err: err(ErrorCode::Ok),
            keys: pairs.iter().map(|(k, _)| (*k).to_owned()).collect(),
            values: pairs.into_iter().map(|(_, v)| v).collect(),
        }
    }

    /// `RPC_CM_UPDATE_APP_ENV`: set, delete or clear table environments, each key and value
    /// checked ([`configcheck::envs`]); stored with the table, and pushed to its
    /// replicas with the configurations.
    pub(super) async fn update_app_env(&self, r: UpdateAppEnvRequest) -> UpdateAppEnvResponse {
        let answer = |code: ErrorCode, hint: String| UpdateAppEnvResponse {
            err: err(code),
            hint_message: hint,
        };
        if !self.is_leader() {
            return answer(ErrorCode::ForwardToOthers, String::new());
        }
        let mut state = self.lock().await;
        if !self.is_leader() {
            return answer(ErrorCode::ForwardToOthers, String::new());
        }
        let Some(app) = state.app_by_name(&r.app_name) else {
            return answer(
                ErrorCode::AppNotExist,
                format!("table `{}` does not exist", r.app_name),
            );
        };
        let mut info = app.info.clone();
        let keys = r.keys.unwrap_or_default();
        let hint = match r.op {
            app_env_operation::SET => {
                let values = r.values.unwrap_or_default();
                if keys.is_empty() || keys.len() != values.len() {
                    return answer(
                        ErrorCode::InvalidParameters,
                        format!("{} keys and {} values", keys.len(), values.len()),
                    );
                }
                for (k, v) in keys.iter().zip(&values) {
                    if let Err(why) = configcheck::envs::check(k, v) {
                        return answer(ErrorCode::InvalidParameters, why);
                    }
                }
                let n = keys.len();
                info.envs.extend(keys.into_iter().zip(values));
                format!("set {n} env(s)")
            }
            app_env_operation::DEL => {
                if keys.is_empty() {
                    return answer(ErrorCode::InvalidParameters, "no keys to delete".into());
                }
                let before = info.envs.len();
                for k in &keys {
                    info.envs.remove(k);
                }
                format!("deleted {} env(s)", before - info.envs.len())
            }
            app_env_operation::CLEAR => {
                let before = info.envs.len();
                match r.clear_prefix.as_deref().unwrap_or("") {
                    "" => info.envs.clear(),
                    prefix => {
                        let dotted = format!("{prefix}.");
                        info.envs.retain(|k, _| !k.starts_with(&dotted));
                    }
                }
                format!("cleared {} env(s)", before - info.envs.len())
            }
            op => {
                return answer(
                    ErrorCode::InvalidParameters,
                    format!("unknown operation {op}"),
                );
            }
        };
        if let Err(e) = self.zk.save_app_info(&info).await {
            error!("updating envs of {}: {e}", r.app_name);
            return answer(ErrorCode::Unknown, e.to_string());
        }
        info!(table = r.app_name, envs = ?info.envs, "table envs changed");
        let app_id = info.app_id;
        state.apps.get_mut(&app_id).expect("found").info = info;
        answer(ErrorCode::Ok, hint)
    }

    /// `RPC_CM_QUERY_MANUAL_COMPACT_STATUS`: how many of the table's replicas (members of its
    /// partitions) reported, with their beacons, a manual compaction finished after the
    /// trigger time its `manual_compact.once.trigger_time` env asks for.
    pub(super) fn query_manual_compact(
        &self,
        r: QueryManualCompactRequest,
    ) -> QueryManualCompactResponse {
        let answer =
            |code: ErrorCode, hint: String, progress: Option<i32>| QueryManualCompactResponse {
                err: err(code),
                hint_msg: hint,
                progress,
            };
        if !self.is_leader() {
            return answer(ErrorCode::ForwardToOthers, String::new(), None);
        }
        let view = self.view();
        let Some(app) = state::app_named(&view, &r.app_name) else {
            return answer(
                ErrorCode::AppNotExist,
                format!("table `{}` does not exist", r.app_name),
                None,
            );
        };
        let Some(trigger) = app
            .info
            .envs
            .get("manual_compact.once.trigger_time")
            .and_then(|t| t.parse::<i64>().ok())
        else {
            return answer(
                ErrorCode::InvalidState,
                "no manual compaction asked (`manual_compact.once.trigger_time` is not set)".into(),
                None,
            );
        };
        let beats = self.beats.lock().expect("beats");
        let finished = |node: SocketAddrV4, gpid: Gpid| {
            beats.get(&node).is_some_and(|b| {
                b.replicas
                    .iter()
                    .position(|g| *g == gpid)
                    .and_then(|i| b.compacted.get(i))
                    .is_some_and(|at| *at >= trigger)
            })
        };
        let (mut done, mut total) = (0, 0);
        for (i, p) in app.partitions.iter().enumerate() {
            let gpid = Gpid::new(app.info.app_id, i as i32);
            for node in p.primary_addr().into_iter().chain(p.secondary_addrs()) {
                total += 1;
                done += i32::from(finished(node, gpid));
            }
        }
        let progress = if total == 0 { 0 } else { done * 100 / total };
        answer(
            ErrorCode::Ok,
            format!("{done} of {total} replicas finished the compaction triggered at {trigger}"),
            Some(progress),
        )
    }

    /// `RPC_CM_REPORT_AVAILABILITY`: the collector's last round, kept for the status page.
    pub(super) fn availability_reported(
        &self,
        r: AvailabilityReport,
    ) -> AvailabilityReportResponse {
        if !self.is_leader() {
            return AvailabilityReportResponse {
                err: err(ErrorCode::ForwardToOthers),
            };
        }
        *self.availability.lock().expect("availability") = Some((Instant::now(), r));
        AvailabilityReportResponse {
            err: err(ErrorCode::Ok),
        }
    }

    /// The meta level ([`meta_function_level`]).
    pub(super) fn level(&self) -> i32 {
        self.level.load(Ordering::Acquire)
    }

    /// `RPC_CM_CONTROL_META`: sets the level (kept in ZooKeeper, so the next leader keeps
    /// it); `fl_invalid` only asks.
    pub(super) async fn control_meta(&self, r: MetaControlRequest) -> MetaControlResponse {
        let answer = |code: ErrorCode, old_level: i32| MetaControlResponse {
            err: err(code),
            old_level,
        };
        if !self.is_leader() {
            return answer(ErrorCode::ForwardToOthers, 0);
        }
        let _state = self.lock().await;
        let old = self.level();
        if r.level == meta_function_level::INVALID || r.level == old {
            return answer(ErrorCode::Ok, old);
        }
        if ![
            meta_function_level::FREEZED,
            meta_function_level::STEADY,
            meta_function_level::LIVELY,
        ]
        .contains(&r.level)
        {
            return answer(ErrorCode::InvalidParameters, old);
        }
        if let Err(e) = self.zk.save_level(meta_function_level::name(r.level)).await {
            error!("saving the meta level: {e}");
            return answer(ErrorCode::Unknown, old);
        }
        self.level.store(r.level, Ordering::Release);
        warn!(
            from = meta_function_level::name(old),
            to = meta_function_level::name(r.level),
            "meta level changed"
        );
        self.news.notify_one();
        answer(ErrorCode::Ok, old)
    }
}
