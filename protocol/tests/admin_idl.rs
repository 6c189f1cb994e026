//! Golden bytes for the admin RPCs: Python code generated from Pegasus's IDL (restated in
//! `tests/idl/admin.thrift`) by Debian's `thrift-compiler`, at test time, encodes the samples of
//! `tests/idl/golden.py`; ours must be byte for byte the same, must decode from its bytes to the
//! same samples, and the generated code must decode ours to its samples.
//!
//! Needs `thrift` (package `thrift-compiler`) and a Python with the `thrift` module
//! (`$PEGASUS_PYTHON`, as `./run.sh test` sets it, else the onebox venv, else `python3`).

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pegasus_protocol::codec::{Field, decode, encode};
use pegasus_protocol::types::*;

fn addr(s: &str) -> RpcAddress {
    RpcAddress::new(s.parse::<SocketAddrV4>().unwrap())
}

fn err(name: &str) -> ErrorName {
    ErrorName(name.to_owned())
}

fn envs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn app_info(dropped: bool) -> AppInfo {
    AppInfo {
        status: if dropped {
            app_status::DROPPED
        } else {
            app_status::AVAILABLE
        },
        app_type: "pegasus".into(),
        app_name: "orders".into(),
        app_id: 7,
        partition_count: 8,
        envs: envs(&[
            ("default_ttl", "86400"),
            ("replica.deny_client_request", "timeout*write"),
        ]),
        is_stateful: true,
        max_replica_count: 3,
        expire_second: if dropped { 1_700_604_800 } else { 0 },
        create_second: 1_700_000_000,
        drop_second: if dropped { 1_700_000_100 } else { 0 },
        duplicating: (!dropped).then_some(true),
        init_partition_count: 8,
        is_bulk_loading: None,
    }
}

/// Checks that bytes decode to a sample.
type DecodesTo = Box<dyn Fn(&[u8]) -> Result<(), String>>;

/// One sample: its encoding, and a check that bytes decode to it.
struct Sample {
    bytes: Vec<u8>,
    decodes: DecodesTo,
}

fn sample<T: Field + PartialEq + std::fmt::Debug + 'static>(value: T) -> Sample {
    let mut bytes = Vec::new();
    encode(&value, &mut bytes).unwrap();
    Sample {
        bytes,
        decodes: Box::new(move |b| match decode::<T>(b) {
            Ok(v) if v == value => Ok(()),
            Ok(v) => Err(format!("decodes to {v:?}, expected {value:?}")),
            Err(e) => Err(format!("does not decode: {e}")),
        }),
    }
}

/// The samples of `golden.py`, in Rust.
fn samples() -> BTreeMap<&'static str, Sample> {
    let mut s = BTreeMap::new();
    s.insert(
        "create_app_request",
        sample(CreateAppRequest {
            app_name: "orders".into(),
            options: CreateAppOptions {
                partition_count: 8,
                replica_count: 3,
                success_if_exist: true,
                app_type: "pegasus".into(),
                is_stateful: true,
                envs: envs(&[
                    ("default_ttl", "86400"),
                    ("rocksdb.usage_scenario", "normal"),
                ]),
            },
        }),
    );
    s.insert(
        "create_app_response",
        sample(CreateAppResponse {
            err: err("ERR_OK"),
            appid: 7,
        }),
    );
    s.insert(
        "drop_app_request",
        sample(DropAppRequest {
            app_name: "orders".into(),
            options: DropAppOptions {
                success_if_not_exist: false,
                reserve_seconds: Some(3600),
            },
        }),
    );
    s.insert(
        "drop_app_request_default_reserve",
        sample(DropAppRequest {
            app_name: "orders".into(),
            options: DropAppOptions {
                success_if_not_exist: true,
                reserve_seconds: None,
            },
        }),
    );
    s.insert(
        "drop_app_response",
        sample(DropAppResponse {
            err: err("ERR_APP_NOT_EXIST"),
        }),
    );
    s.insert(
        "recall_app_request",
        sample(RecallAppRequest {
            app_id: 7,
            new_app_name: "orders2".into(),
        }),
    );
    s.insert(
        "recall_app_response",
        sample(RecallAppResponse {
            err: err("ERR_OK"),
            info: app_info(false),
        }),
    );
    s.insert(
        "list_apps_request",
        sample(ListAppsRequest {
            status: app_status::INVALID,
        }),
    );
    s.insert(
        "list_apps_response",
        sample(ListAppsResponse {
            err: err("ERR_OK"),
            infos: vec![app_info(false), app_info(true)],
        }),
    );
    s.insert(
        "update_app_env_set",
        sample(UpdateAppEnvRequest {
            app_name: "orders".into(),
            op: app_env_operation::SET,
            keys: Some(strings(&["default_ttl", "replica.write_throttling"])),
            values: Some(strings(&["3600", "100*reject*200"])),
            clear_prefix: None,
        }),
    );
    s.insert(
        "update_app_env_del",
        sample(UpdateAppEnvRequest {
            app_name: "orders".into(),
            op: app_env_operation::DEL,
            keys: Some(strings(&["default_ttl"])),
            values: None,
            clear_prefix: None,
        }),
    );
    s.insert(
        "update_app_env_clear",
        sample(UpdateAppEnvRequest {
            app_name: "orders".into(),
            op: app_env_operation::CLEAR,
            keys: None,
            values: None,
            clear_prefix: Some("replica".into()),
        }),
    );
    s.insert(
        "update_app_env_response",
        sample(UpdateAppEnvResponse {
            err: err("ERR_INVALID_PARAMETERS"),
            hint_message: "default_ttl: not a number".into(),
        }),
    );
    s.insert(
        "list_nodes_request",
        sample(ListNodesRequest {
            status: node_status::INVALID,
        }),
    );
    s.insert(
        "list_nodes_response",
        sample(ListNodesResponse {
            err: err("ERR_OK"),
            infos: vec![
                NodeInfo {
                    status: node_status::ALIVE,
                    address: addr("127.0.0.1:34801"),
                },
                NodeInfo {
                    status: node_status::UNALIVE,
                    address: addr("10.0.0.2:34802"),
                },
            ],
        }),
    );
    s.insert("cluster_info_request", sample(ClusterInfoRequest {}));
    s.insert(
        "cluster_info_response",
        sample(ClusterInfoResponse {
            err: err("ERR_OK"),
            keys: strings(&["meta_servers", "primary_meta_server"]),
            values: strings(&["127.0.0.1:34601,127.0.0.1:34602", "127.0.0.1:34601"]),
        }),
    );
    s.insert(
        "meta_control_request",
        sample(MetaControlRequest {
            level: meta_function_level::FREEZED,
        }),
    );
    s.insert(
        "meta_control_response",
        sample(MetaControlResponse {
            err: err("ERR_OK"),
            old_level: meta_function_level::STEADY,
        }),
    );
    let action = |node: &str, config_type| ProposalAction {
        target: addr(node),
        node: addr(node),
        config_type,
    };
    s.insert(
        "balancer_request",
        sample(BalancerRequest {
            gpid: Gpid::new(7, 3),
            action_list: vec![
                action("10.0.0.1:34801", config_type::DOWNGRADE_TO_SECONDARY),
                action("10.0.0.2:34801", config_type::UPGRADE_TO_PRIMARY),
            ],
            force: Some(false),
            balance_type: Some(balancer_request_type::MOVE_PRIMARY),
        }),
    );
    s.insert(
        "balancer_response",
        sample(BalancerResponse {
            err: err("ERR_INVALID_PARAMETERS"),
        }),
    );
    s.insert(
        "query_manual_compact_request",
        sample(QueryManualCompactRequest {
            app_name: "orders".into(),
        }),
    );
    s.insert(
        "query_manual_compact_response",
        sample(QueryManualCompactResponse {
            err: err("ERR_OK"),
            hint_msg: "2 of 3 replicas done".into(),
            progress: Some(66),
        }),
    );
    s.insert(
        "query_cfg_request",
        sample(QueryCfgRequest {
            app_name: "orders".into(),
            partition_indices: Vec::new(),
        }),
    );
    s.insert(
        "query_cfg_response",
        sample(QueryCfgResponse {
            err: err("ERR_OK"),
            app_id: 7,
            partition_count: 1,
            is_stateful: true,
            partitions: vec![PartitionConfiguration {
                pid: Gpid::new(7, 0),
                ballot: 5,
                max_replica_count: 3,
                primary: addr("127.0.0.1:34801"),
                secondaries: vec![addr("127.0.0.1:34802"), addr("127.0.0.1:34803")],
                last_drops: Vec::new(),
                last_committed_decree: 42,
                partition_flags: 0,
            }],
        }),
    );
    backup_samples(&mut s);
    s
}

/// The samples of `idl/backup.thrift`'s structs.
fn backup_samples(s: &mut BTreeMap<&'static str, Sample>) {
    use pegasus_protocol::backup::*;
    const ID: i64 = 1_700_000_000_123;
    s.insert(
        "start_backup_app_request",
        sample(StartBackupAppRequest {
            backup_provider_type: "local_service".into(),
            app_id: 7,
            backup_path: Some("/mnt/nfs".into()),
        }),
    );
    s.insert(
        "start_backup_app_request_default_path",
        sample(StartBackupAppRequest {
            backup_provider_type: "local_service".into(),
            app_id: 7,
            backup_path: None,
        }),
    );
    s.insert(
        "start_backup_app_response",
        sample(StartBackupAppResponse {
            err: err("ERR_OK"),
            hint_message: "backup 1700000000123 of table 7 started".into(),
            backup_id: Some(ID),
        }),
    );
    s.insert(
        "query_backup_status_request",
        sample(QueryBackupStatusRequest {
            app_id: 7,
            backup_id: Some(ID),
        }),
    );
    s.insert(
        "query_backup_status_response",
        sample(QueryBackupStatusResponse {
            err: err("ERR_OK"),
            hint_message: String::new(),
            backup_items: Some(vec![BackupItem {
                backup_id: ID,
                app_name: "orders".into(),
                backup_provider_type: "local_service".into(),
                backup_path: "/mnt/nfs".into(),
                start_time_ms: ID,
                end_time_ms: 1_700_000_060_000,
                is_backup_failed: false,
            }]),
        }),
    );
    s.insert(
        "restore_request",
        sample(RestoreRequest {
            cluster_name: "onebox".into(),
            policy_name: String::new(),
            time_stamp: ID,
            app_name: "orders".into(),
            app_id: 7,
            new_app_name: "orders_restored".into(),
            backup_provider_name: "local_service".into(),
            skip_bad_partition: false,
            restore_path: Some("/mnt/nfs".into()),
        }),
    );
    s.insert(
        "query_restore_request",
        sample(QueryRestoreRequest { restore_app_id: 9 }),
    );
    s.insert(
        "query_restore_response",
        sample(QueryRestoreResponse {
            err: err("ERR_OK"),
            restore_status: vec![err("ERR_OK"), err("ERR_CORRUPTION")],
            restore_progress: vec![1000, 250],
        }),
    );
    s.insert(
        "backup_request",
        sample(BackupRequest {
            pid: Gpid::new(7, 3),
            policy: PolicyInfo {
                policy_name: String::new(),
                backup_provider_type: "local_service".into(),
            },
            app_name: "orders".into(),
            backup_id: ID,
            backup_path: Some("/mnt/nfs".into()),
        }),
    );
    s.insert(
        "backup_response",
        sample(BackupResponse {
            err: err("ERR_OK"),
            pid: Gpid::new(7, 3),
            progress: 500,
            policy_name: String::new(),
            backup_id: ID,
            checkpoint_total_size: 1 << 30,
        }),
    );
    s.insert(
        "report_restore_status_request",
        sample(ReportRestoreStatusRequest {
            pid: Gpid::new(7, 3),
            restore_status: err("ERR_CORRUPTION"),
            progress: 250,
            reason: Some("3/000012.sst: checksum mismatch".into()),
        }),
    );
    s.insert(
        "report_restore_status_response",
        sample(ReportRestoreStatusResponse { err: err("ERR_OK") }),
    );
    // One table each: a set's order on the wire is the writer's (Python's is its hash order).
    let apps = |ids: &[i32]| {
        ids.iter()
            .copied()
            .collect::<std::collections::BTreeSet<i32>>()
    };
    s.insert(
        "add_backup_policy_request",
        sample(AddBackupPolicyRequest {
            backup_provider_type: "local_service".into(),
            policy_name: "daily".into(),
            app_ids: vec![7, 9],
            backup_interval_seconds: 86400,
            backup_history_count_to_keep: 3,
            start_time: "01:30".into(),
        }),
    );
    s.insert(
        "add_backup_policy_response",
        sample(AddBackupPolicyResponse {
            err: err("ERR_INVALID_PARAMETERS"),
            hint_message: "policy daily exists".into(),
        }),
    );
    s.insert(
        "modify_backup_policy_request",
        sample(ModifyBackupPolicyRequest {
            policy_name: "daily".into(),
            add_appids: Some(vec![11]),
            removal_appids: None,
            new_backup_interval_sec: Some(3600),
            backup_history_count_to_keep: None,
            is_disable: Some(true),
            start_time: None,
        }),
    );
    s.insert(
        "modify_backup_policy_request_bare",
        sample(ModifyBackupPolicyRequest {
            policy_name: "daily".into(),
            ..Default::default()
        }),
    );
    s.insert(
        "modify_backup_policy_response",
        sample(ModifyBackupPolicyResponse {
            err: err("ERR_OK"),
            hint_message: String::new(),
        }),
    );
    s.insert(
        "query_backup_policy_request",
        sample(QueryBackupPolicyRequest {
            policy_names: vec!["daily".into()],
            backup_info_count: 2,
        }),
    );
    s.insert(
        "query_backup_policy_response",
        sample(QueryBackupPolicyResponse {
            err: err("ERR_OK"),
            policys: vec![PolicyEntry {
                policy_name: "daily".into(),
                backup_provider_type: "local_service".into(),
                backup_interval_seconds: "86400".into(),
                app_ids: apps(&[7]),
                backup_history_count_to_keep: 3,
                start_time: "01:30".into(),
                is_disable: false,
            }],
            backup_infos: vec![vec![BackupEntry {
                backup_id: ID,
                start_time_ms: ID,
                end_time_ms: 1_700_000_060_000,
                app_ids: apps(&[7]),
            }]],
            hint_msg: None,
        }),
    );
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("PEGASUS_PYTHON") {
        return p.into();
    }
    let venv = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/pegasus-venv/bin/python"))
        .filter(|p| p.exists());
    venv.unwrap_or_else(|| "python3".into())
}

fn run(cmd: &mut Command, stdin: &[u8], what: &str) -> Vec<u8> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{what}: {e} (`./run.sh setup test` installs thrift-compiler and Python's thrift)"
            )
        });
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn admin_rpcs_match_code_generated_from_pegasus_idl_both_ways() {
    let idl = Path::new(&manifest_dir()).join("tests/idl");
    let gen_dir = tempfile::tempdir().unwrap();
    run(
        Command::new("thrift")
            .args(["--gen", "py", "-out"])
            .arg(gen_dir.path())
            .arg(idl.join("admin.thrift")),
        b"",
        "thrift --gen py",
    );
    let samples = samples();
    let ours: serde_json::Map<String, serde_json::Value> = samples
        .iter()
        .map(|(name, s)| {
            let hex: String = s.bytes.iter().map(|b| format!("{b:02x}")).collect();
            ((*name).to_owned(), hex.into())
        })
        .collect();
    let out = run(
        Command::new(python())
            .arg(idl.join("golden.py"))
            .arg(gen_dir.path()),
        serde_json::to_string(&ours).unwrap().as_bytes(),
        "golden.py",
    );
    let answer: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let mut failures: Vec<String> = answer["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("generated code: {}", m.as_str().unwrap()))
        .collect();
    let theirs = answer["python"].as_object().unwrap();
    for (name, s) in &samples {
        let Some(hex) = theirs.get(*name).and_then(|v| v.as_str()) else {
            failures.push(format!("{name}: no Python sample"));
            continue;
        };
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        if bytes != s.bytes {
            failures.push(format!(
                "{name}: ours {} differ from the IDL's {hex}",
                ours[*name]
            ));
        }
        if let Err(e) = (s.decodes)(&bytes) {
            failures.push(format!("{name}: the IDL's bytes {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(theirs.len(), samples.len());
}

/// This crate's folder: cargo's at run time (a test binary built in another clone of the
/// repository, and found fresh from a shared target dir, has that clone's path compiled in).
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    )
}
