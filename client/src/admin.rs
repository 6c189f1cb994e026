//! The meta's admin RPCs in Pegasus's IDL (`meta_admin.thrift`): each goes to whichever meta
//! leads (a follower answers `ERR_FORWARD_TO_OTHERS`), and an answer other than `ERR_OK` is
//! [`ClientError::Refused`] with the server's hint. Nodes' roles counted from routing (a
//! partition's health is [`pegasus_protocol::health`]'s).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use pegasus_protocol::backup::*;
use pegasus_protocol::codec::Field;
use pegasus_protocol::codes::{ErrorCode, rpc};
use pegasus_protocol::frame::RequestMeta;
use pegasus_protocol::types::*;

use crate::{Client, ClientError};

/// An admin answer: its error name and hint.
pub trait AdminResponse: Field + Default {
    /// The rDSN error.
    fn err(&self) -> &ErrorName;
    /// The server's explanation, where the IDL has one.
    fn hint(&self) -> &str {
        ""
    }
}

macro_rules! admin_response {
    ($($ty:ty),*) => {$(
        impl AdminResponse for $ty {
            fn err(&self) -> &ErrorName {
                &self.err
            }
        }
    )*};
}

admin_response!(
    CreateAppResponse,
    DropAppResponse,
    RecallAppResponse,
    ListAppsResponse,
    ListNodesResponse,
    ClusterInfoResponse,
    MetaControlResponse,
    BalancerResponse,
    AvailabilityReportResponse
);

impl AdminResponse for QueryManualCompactResponse {
    fn err(&self) -> &ErrorName {
        &self.err
    }
    fn hint(&self) -> &str {
        &self.hint_msg
    }
}

macro_rules! admin_response_with_hint {
    ($($ty:ty),*) => {$(
        impl AdminResponse for $ty {
            fn err(&self) -> &ErrorName {
                &self.err
            }
            fn hint(&self) -> &str {
                &self.hint_message
            }
        }
    )*};
}

admin_response_with_hint!(
    StartBackupAppResponse,
    QueryBackupStatusResponse,
    AddBackupPolicyResponse,
    ModifyBackupPolicyResponse
);

impl AdminResponse for QueryBackupPolicyResponse {
    fn err(&self) -> &ErrorName {
        &self.err
    }
    fn hint(&self) -> &str {
        self.hint_msg.as_deref().unwrap_or("")
    }
}

impl AdminResponse for QueryRestoreResponse {
    fn err(&self) -> &ErrorName {
        &self.err
    }
}

impl AdminResponse for UpdateAppEnvResponse {
    fn err(&self) -> &ErrorName {
        &self.err
    }
    fn hint(&self) -> &str {
        &self.hint_message
    }
}

/// Per node: (primaries, secondaries) over `tables`' routing.
pub fn role_counts(tables: &[QueryCfgResponse]) -> HashMap<RpcAddress, (usize, usize)> {
    let mut counts: HashMap<RpcAddress, (usize, usize)> = HashMap::new();
    for p in tables.iter().flat_map(|t| &t.partitions) {
        if p.primary.socket_addr().is_some() {
            counts.entry(p.primary).or_default().0 += 1;
        }
        for s in &p.secondaries {
            counts.entry(*s).or_default().1 += 1;
        }
    }
    counts
}

impl Client {
    /// Sends admin RPC `name` to the meta leader: each meta in turn until one answers other
    /// than `ERR_FORWARD_TO_OTHERS`.
    pub async fn admin<A: Field + Default, R: AdminResponse>(
        &self,
        name: &str,
        args: A,
    ) -> Result<R, ClientError> {
        let args = Args(args);
        let metas: Vec<SocketAddr> = self.options().metas.clone();
        let timeout = self.options().timeout;
        let mut last = String::from("no meta server configured");
        let mut forwarded = 0;
        for meta in &metas {
            match self
                .call::<_, R>(*meta, RequestMeta::default(), name, &args, timeout)
                .await
            {
                Ok(r) => match ErrorCode::from_name(&r.err().0) {
                    ErrorCode::Ok => return Ok(r),
                    ErrorCode::ForwardToOthers => forwarded += 1,
                    _ => {
                        return Err(ClientError::Refused {
                            code: r.err().0.clone(),
                            hint: r.hint().to_owned(),
                        });
                    }
                },
                Err(e) => last = format!("{meta}: {e}"),
            }
        }
        if forwarded > 0 && forwarded == metas.len() {
            last = format!(
                "no meta server leads yet (all {forwarded} answered \"forward to others\"); retry in a moment"
            );
        }
        Err(ClientError::NoMeta(last))
    }

    /// Creates table `name`; its id.
    pub async fn create_app(
        &self,
        name: &str,
        options: CreateAppOptions,
    ) -> Result<i32, ClientError> {
        let request = CreateAppRequest {
            app_name: name.to_owned(),
            options,
        };
        let r: CreateAppResponse = self.admin(rpc::CREATE_APP, request).await?;
        Ok(r.appid)
    }

    /// Drops table `name`; it can be recalled for `reserve_seconds` (default: the meta's
    /// `hold_seconds_for_dropped_app`).
    pub async fn drop_app(
        &self,
        name: &str,
        reserve_seconds: Option<i64>,
    ) -> Result<(), ClientError> {
        let request = DropAppRequest {
            app_name: name.to_owned(),
            options: DropAppOptions {
                success_if_not_exist: false,
                reserve_seconds,
            },
        };
        let _: DropAppResponse = self.admin(rpc::DROP_APP, request).await?;
        Ok(())
    }

    /// Brings dropped table `app_id` back, as `new_name` if not empty.
    pub async fn recall_app(&self, app_id: i32, new_name: &str) -> Result<AppInfo, ClientError> {
        let request = RecallAppRequest {
            app_id,
            new_app_name: new_name.to_owned(),
        };
        let r: RecallAppResponse = self.admin(rpc::RECALL_APP, request).await?;
        Ok(r.info)
    }

    /// Every table, dropped ones included (`status` [`app_status::INVALID`]), or those in
    /// `status`.
    pub async fn list_apps(&self, status: i32) -> Result<Vec<AppInfo>, ClientError> {
        let r: ListAppsResponse = self
            .admin(rpc::LIST_APPS, ListAppsRequest { status })
            .await?;
        Ok(r.infos)
    }

    /// Every replica server the meta knows.
    pub async fn list_nodes(&self) -> Result<Vec<NodeInfo>, ClientError> {
        let r: ListNodesResponse = self
            .admin(
                rpc::LIST_NODES,
                ListNodesRequest {
                    status: node_status::INVALID,
                },
            )
            .await?;
        Ok(r.infos)
    }

    /// The cluster's key/value description.
    pub async fn cluster_info(&self) -> Result<Vec<(String, String)>, ClientError> {
        let r: ClusterInfoResponse = self.admin(rpc::CLUSTER_INFO, ClusterInfoRequest {}).await?;
        Ok(r.keys.into_iter().zip(r.values).collect())
    }

    /// Changes table `name`'s environment.
    pub async fn update_app_env(
        &self,
        request: UpdateAppEnvRequest,
    ) -> Result<String, ClientError> {
        let r: UpdateAppEnvResponse = self.admin(rpc::UPDATE_APP_ENV, request).await?;
        Ok(r.hint_message)
    }

    /// Table `name`'s environment.
    pub async fn app_envs(&self, name: &str) -> Result<BTreeMap<String, String>, ClientError> {
        self.list_apps(app_status::AVAILABLE)
            .await?
            .into_iter()
            .find(|a| a.app_name == name)
            .map(|a| a.envs)
            .ok_or_else(|| ClientError::NoTable(name.to_owned()))
    }

    /// The progress of table `name`'s manual compaction, in percent of its replicas, with
    /// the meta's account of it.
    pub async fn manual_compact_progress(&self, name: &str) -> Result<(i32, String), ClientError> {
        let r: QueryManualCompactResponse = self
            .admin(
                rpc::QUERY_MANUAL_COMPACT,
                QueryManualCompactRequest {
                    app_name: name.to_owned(),
                },
            )
            .await?;
        Ok((r.progress.unwrap_or(0), r.hint_msg))
    }

    /// Starts a one-time backup of table `app_id` to block service `provider` (under
    /// `backup_path` in it, if given): its id and the meta's account.
    pub async fn start_backup_app(
        &self,
        app_id: i32,
        provider: &str,
        backup_path: Option<&str>,
    ) -> Result<(i64, String), ClientError> {
        let r: StartBackupAppResponse = self
            .admin(
                rpc::START_BACKUP_APP,
                StartBackupAppRequest {
                    backup_provider_type: provider.to_owned(),
                    app_id,
                    backup_path: backup_path.map(str::to_owned),
                },
            )
            .await?;
        Ok((r.backup_id.unwrap_or(0), r.hint_message))
    }

    /// Adds a backup policy.
    pub async fn add_backup_policy(
        &self,
        request: AddBackupPolicyRequest,
    ) -> Result<(), ClientError> {
        let _: AddBackupPolicyResponse = self.admin(rpc::ADD_BACKUP_POLICY, request).await?;
        Ok(())
    }

    /// Changes a backup policy (what the request gives).
    pub async fn modify_backup_policy(
        &self,
        request: ModifyBackupPolicyRequest,
    ) -> Result<(), ClientError> {
        let _: ModifyBackupPolicyResponse = self.admin(rpc::MODIFY_BACKUP_POLICY, request).await?;
        Ok(())
    }

    /// The policies `names` (none: all), each with its latest `backups` complete backups.
    pub async fn query_backup_policy(
        &self,
        names: Vec<String>,
        backups: i32,
    ) -> Result<QueryBackupPolicyResponse, ClientError> {
        self.admin(
            rpc::QUERY_BACKUP_POLICY,
            QueryBackupPolicyRequest {
                policy_names: names,
                backup_info_count: backups,
            },
        )
        .await
    }

    /// Table `app_id`'s one-time backups (only `backup_id`, if given).
    pub async fn query_backup_status(
        &self,
        app_id: i32,
        backup_id: Option<i64>,
    ) -> Result<Vec<BackupItem>, ClientError> {
        let r: QueryBackupStatusResponse = self
            .admin(
                rpc::QUERY_BACKUP_STATUS,
                QueryBackupStatusRequest { app_id, backup_id },
            )
            .await?;
        Ok(r.backup_items.unwrap_or_default())
    }

    /// Restores a backup as a new table: its id.
    pub async fn restore_app(&self, request: RestoreRequest) -> Result<i32, ClientError> {
        let r: CreateAppResponse = self.admin(rpc::START_RESTORE, request).await?;
        Ok(r.appid)
    }

    /// A restored table's partitions: each one's status and progress (1000: serving).
    pub async fn query_restore_status(
        &self,
        app_id: i32,
    ) -> Result<QueryRestoreResponse, ClientError> {
        self.admin(
            rpc::QUERY_RESTORE_STATUS,
            QueryRestoreRequest {
                restore_app_id: app_id,
            },
        )
        .await
    }

    /// Sets the meta level ([`meta_function_level`]); `INVALID` only asks. The level before.
    pub async fn meta_level(&self, level: i32) -> Result<i32, ClientError> {
        let r: MetaControlResponse = self
            .admin(rpc::CONTROL_META, MetaControlRequest { level })
            .await?;
        Ok(r.old_level)
    }

    /// Pegasus shell's `propose` of a `copy_secondary`: `to` learns `gpid` from its primary
    /// and then replaces the secondary `from`.
    pub async fn copy_secondary(
        &self,
        gpid: Gpid,
        primary: std::net::SocketAddrV4,
        from: std::net::SocketAddrV4,
        to: std::net::SocketAddrV4,
    ) -> Result<(), ClientError> {
        self.propose(
            gpid,
            balancer_request_type::COPY_SECONDARY,
            [
                (primary, to, config_type::ADD_SECONDARY_FOR_LB),
                (primary, from, config_type::REMOVE),
            ],
        )
        .await
    }

    /// Pegasus shell's `propose --type move_primary`: `gpid`'s primary `from` hands it to its
    /// secondary `to`.
    pub async fn move_primary(
        &self,
        gpid: Gpid,
        from: std::net::SocketAddrV4,
        to: std::net::SocketAddrV4,
    ) -> Result<(), ClientError> {
        self.propose(
            gpid,
            balancer_request_type::MOVE_PRIMARY,
            [
                (from, from, config_type::DOWNGRADE_TO_SECONDARY),
                (to, to, config_type::UPGRADE_TO_PRIMARY),
            ],
        )
        .await
    }

    /// `RPC_CM_PROPOSE_BALANCER` with `(target, node, config_type)` actions.
    async fn propose(
        &self,
        gpid: Gpid,
        balance_type: i32,
        actions: [(std::net::SocketAddrV4, std::net::SocketAddrV4, i32); 2],
    ) -> Result<(), ClientError> {
        let action_list = actions
            .into_iter()
            .map(|(target, node, config_type)| ProposalAction {
                target: RpcAddress::new(target),
                node: RpcAddress::new(node),
                config_type,
            })
            .collect();
        let _: BalancerResponse = self
            .admin(
                rpc::PROPOSE_BALANCER,
                BalancerRequest {
                    gpid,
                    action_list,
                    force: Some(false),
                    balance_type: Some(balance_type),
                },
            )
            .await?;
        Ok(())
    }
}
