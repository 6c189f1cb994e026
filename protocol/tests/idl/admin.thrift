// The admin RPCs this server answers, restated field for field (ids, types, optional fields,
// defaults) from apache/incubator-pegasus's idl/meta_admin.thrift and idl/dsn.layer2.thrift.
// The golden-byte test (`../admin_idl.rs`) generates Python from this file with Debian's
// thrift-compiler and checks that our Rust encoding and the generated code agree, both ways.
include "base.thrift"

namespace py admin

enum app_status {
    AS_INVALID, AS_AVAILABLE, AS_CREATING, AS_CREATE_FAILED, AS_DROPPING, AS_DROP_FAILED,
    AS_DROPPED, AS_RECALLING
}

struct app_info {
    1: app_status status = app_status.AS_INVALID;
    2: string app_type;
    3: string app_name;
    4: i32 app_id;
    5: i32 partition_count;
    6: map<string, string> envs;
    7: bool is_stateful;
    8: i32 max_replica_count;
    9: i64 expire_second;
    10: i64 create_second;
    11: i64 drop_second;
    12: optional bool duplicating = false;
    13: i32 init_partition_count = -1;
    14: optional bool is_bulk_loading = false;
}

struct partition_configuration {
    1: base.gpid pid;
    2: i64 ballot;
    3: i32 max_replica_count;
    4: base.rpc_address primary;
    5: list<base.rpc_address> secondaries;
    6: list<base.rpc_address> last_drops;
    7: i64 last_committed_decree;
    8: i32 partition_flags;
}

struct query_cfg_request {
    1: string app_name;
    2: list<i32> partition_indices;
}

struct query_cfg_response {
    1: base.error_code err;
    2: i32 app_id;
    3: i32 partition_count;
    4: bool is_stateful;
    5: list<partition_configuration> partitions;
}

struct create_app_options {
    1: i32 partition_count;
    2: i32 replica_count;
    3: bool success_if_exist;
    4: string app_type;
    5: bool is_stateful;
    6: map<string, string> envs;
}

struct configuration_create_app_request {
    1: string app_name;
    2: create_app_options options;
}

struct configuration_create_app_response {
    1: base.error_code err;
    2: i32 appid;
}

struct drop_app_options {
    1: bool success_if_not_exist;
    2: optional i64 reserve_seconds;
}

struct configuration_drop_app_request {
    1: string app_name;
    2: drop_app_options options;
}

struct configuration_drop_app_response {
    1: base.error_code err;
}

struct configuration_recall_app_request {
    1: i32 app_id;
    2: string new_app_name;
}

struct configuration_recall_app_response {
    1: base.error_code err;
    2: app_info info;
}

struct configuration_list_apps_request {
    1: app_status status = app_status.AS_INVALID;
}

struct configuration_list_apps_response {
    1: base.error_code err;
    2: list<app_info> infos;
}

enum app_env_operation { APP_ENV_OP_INVALID, APP_ENV_OP_SET, APP_ENV_OP_DEL, APP_ENV_OP_CLEAR }

struct configuration_update_app_env_request {
    1: string app_name;
    2: app_env_operation op = app_env_operation.APP_ENV_OP_INVALID;
    3: optional list<string> keys;
    4: optional list<string> values;
    5: optional string clear_prefix;
}

struct configuration_update_app_env_response {
    1: base.error_code err;
    2: string hint_message;
}

enum node_status { NS_INVALID, NS_ALIVE, NS_UNALIVE }

struct node_info {
    1: node_status status = node_status.NS_INVALID;
    2: base.rpc_address address;
}

struct configuration_list_nodes_request {
    1: node_status status = node_status.NS_INVALID;
}

struct configuration_list_nodes_response {
    1: base.error_code err;
    2: list<node_info> infos;
}

struct configuration_cluster_info_request {}

struct configuration_cluster_info_response {
    1: base.error_code err;
    2: list<string> keys;
    3: list<string> values;
}

struct query_app_manual_compact_request {
    1: string app_name;
}

struct query_app_manual_compact_response {
    1: base.error_code err;
    2: string hint_msg;
    3: optional i32 progress;
}

enum meta_function_level {
    fl_stopped = 100, fl_blind = 200, fl_freezed = 300, fl_steady = 400, fl_lively = 500,
    fl_invalid = 10000
}

struct configuration_meta_control_request {
    1: meta_function_level level;
}

struct configuration_meta_control_response {
    1: base.error_code err;
    2: meta_function_level old_level;
}

enum config_type {
    CT_INVALID, CT_ASSIGN_PRIMARY, CT_UPGRADE_TO_PRIMARY, CT_ADD_SECONDARY, CT_UPGRADE_TO_SECONDARY,
    CT_DOWNGRADE_TO_SECONDARY, CT_DOWNGRADE_TO_INACTIVE, CT_REMOVE, CT_ADD_SECONDARY_FOR_LB,
    CT_PRIMARY_FORCE_UPDATE_BALLOT, CT_REGISTER_CHILD
}

enum balancer_request_type {
    move_primary, copy_primary, copy_secondary
}

struct configuration_proposal_action {
    1: base.rpc_address target;
    2: base.rpc_address node;
    3: config_type type;
}

struct configuration_balancer_request {
    1: base.gpid gpid;
    2: list<configuration_proposal_action> action_list;
    3: optional bool force = false;
    4: optional balancer_request_type balance_type;
}

struct configuration_balancer_response {
    1: base.error_code err;
}

// Cold backup and restore, restated from idl/backup.thrift.
struct policy_info {
    1: string policy_name;
    2: string backup_provider_type;
}

struct configuration_restore_request {
    1: string cluster_name;
    2: string policy_name;
    3: i64 time_stamp;
    4: string app_name;
    5: i32 app_id;
    6: string new_app_name;
    7: string backup_provider_name;
    8: bool skip_bad_partition;
    9: optional string restore_path;
}

struct backup_request {
    1: base.gpid pid;
    2: policy_info policy;
    3: string app_name;
    4: i64 backup_id;
    5: optional string backup_path;
}

struct backup_response {
    1: base.error_code err;
    2: base.gpid pid;
    3: i32 progress;
    4: string policy_name;
    5: i64 backup_id;
    6: i64 checkpoint_total_size;
}

struct configuration_report_restore_status_request {
    1: base.gpid pid;
    2: base.error_code restore_status;
    3: i32 progress;
    4: optional string reason;
}

struct configuration_report_restore_status_response {
    1: base.error_code err;
}

struct configuration_query_restore_request {
    1: i32 restore_app_id;
}

struct configuration_query_restore_response {
    1: base.error_code err;
    2: list<base.error_code> restore_status;
    3: list<i32> restore_progress;
}

struct start_backup_app_request {
    1: string backup_provider_type;
    2: i32 app_id;
    3: optional string backup_path;
}

struct start_backup_app_response {
    1: base.error_code err;
    2: string hint_message;
    3: optional i64 backup_id;
}

struct backup_item {
    1: i64 backup_id;
    2: string app_name;
    3: string backup_provider_type;
    4: string backup_path;
    5: i64 start_time_ms;
    6: i64 end_time_ms;
    7: bool is_backup_failed;
}

struct query_backup_status_request {
    1: i32 app_id;
    2: optional i64 backup_id;
}

struct query_backup_status_response {
    1: base.error_code err;
    2: string hint_message;
    3: optional list<backup_item> backup_items;
}

struct configuration_modify_backup_policy_request {
    1: string policy_name;
    2: optional list<i32> add_appids;
    3: optional list<i32> removal_appids;
    4: optional i64 new_backup_interval_sec;
    5: optional i32 backup_history_count_to_keep;
    6: optional bool is_disable;
    7: optional string start_time;
}

struct configuration_modify_backup_policy_response {
    1: base.error_code err;
    2: string hint_message;
}

struct configuration_add_backup_policy_request {
    1: string backup_provider_type;
    2: string policy_name;
    3: list<i32> app_ids;
    4: i64 backup_interval_seconds;
    5: i32 backup_history_count_to_keep;
    6: string start_time;
}

struct configuration_add_backup_policy_response {
    1: base.error_code err;
    2: string hint_message;
}

struct policy_entry {
    1: string policy_name;
    2: string backup_provider_type;
    3: string backup_interval_seconds;
    4: set<i32> app_ids;
    5: i32 backup_history_count_to_keep;
    6: string start_time;
    7: bool is_disable;
}

struct backup_entry {
    1: i64 backup_id;
    2: i64 start_time_ms;
    3: i64 end_time_ms;
    4: set<i32> app_ids;
}

struct configuration_query_backup_policy_request {
    1: list<string> policy_names;
    2: i32 backup_info_count;
}

struct configuration_query_backup_policy_response {
    1: base.error_code err;
    2: list<policy_entry> policys;
    3: list<list<backup_entry>> backup_infos;
    4: optional string hint_msg;
}
