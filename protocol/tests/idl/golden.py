"""Golden bytes for the admin IDL: encodes each sample below with code generated from
admin.thrift, and decodes the Rust encodings it is given (a JSON object name -> hex on stdin),
checking each equals the same sample. Prints {"python": {name: hex}, "mismatches": [...]}.

Usage: golden.py <dir with the generated `admin` package>. The samples must match those of
../admin_idl.rs field for field."""

import json
import os
import sys

sys.path.insert(0, sys.argv[1])
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import wire_base
sys.modules["wire_base.ttypes"] = wire_base
wire_base.ttypes = wire_base

from thrift.protocol import TBinaryProtocol
from thrift.transport import TTransport

from admin import ttypes as t
from wire_base import error_code, rpc_address, gpid


def addr(ip, port):
    a, b, c, d = (int(x) for x in ip.split("."))
    return rpc_address((((a << 24) | (b << 16) | (c << 8) | d) << 32) | (port << 16) | 1)


def err(name):
    return error_code(name)


def app_info(dropped):
    return t.app_info(
        status=t.app_status.AS_DROPPED if dropped else t.app_status.AS_AVAILABLE,
        app_type="pegasus", app_name="orders", app_id=7, partition_count=8,
        envs={"default_ttl": "86400", "replica.deny_client_request": "timeout*write"},
        is_stateful=True, max_replica_count=3,
        expire_second=1_700_604_800 if dropped else 0,
        create_second=1_700_000_000, drop_second=1_700_000_100 if dropped else 0,
        duplicating=None if dropped else True,
        init_partition_count=8,
        is_bulk_loading=None)


SAMPLES = {
    "create_app_request": t.configuration_create_app_request(
        app_name="orders",
        options=t.create_app_options(
            partition_count=8, replica_count=3, success_if_exist=True, app_type="pegasus",
            is_stateful=True, envs={"default_ttl": "86400", "rocksdb.usage_scenario": "normal"})),
    "create_app_response": t.configuration_create_app_response(err=err("ERR_OK"), appid=7),
    "drop_app_request": t.configuration_drop_app_request(
        app_name="orders",
        options=t.drop_app_options(success_if_not_exist=False, reserve_seconds=3600)),
    "drop_app_request_default_reserve": t.configuration_drop_app_request(
        app_name="orders", options=t.drop_app_options(success_if_not_exist=True)),
    "drop_app_response": t.configuration_drop_app_response(err=err("ERR_APP_NOT_EXIST")),
    "recall_app_request": t.configuration_recall_app_request(app_id=7, new_app_name="orders2"),
    "recall_app_response": t.configuration_recall_app_response(
        err=err("ERR_OK"), info=app_info(False)),
    "list_apps_request": t.configuration_list_apps_request(status=t.app_status.AS_INVALID),
    "list_apps_response": t.configuration_list_apps_response(
        err=err("ERR_OK"), infos=[app_info(False), app_info(True)]),
    "update_app_env_set": t.configuration_update_app_env_request(
        app_name="orders", op=t.app_env_operation.APP_ENV_OP_SET,
        keys=["default_ttl", "replica.write_throttling"], values=["3600", "100*reject*200"]),
    "update_app_env_del": t.configuration_update_app_env_request(
        app_name="orders", op=t.app_env_operation.APP_ENV_OP_DEL, keys=["default_ttl"]),
    "update_app_env_clear": t.configuration_update_app_env_request(
        app_name="orders", op=t.app_env_operation.APP_ENV_OP_CLEAR, clear_prefix="replica"),
    "update_app_env_response": t.configuration_update_app_env_response(
        err=err("ERR_INVALID_PARAMETERS"), hint_message="default_ttl: not a number"),
    "list_nodes_request": t.configuration_list_nodes_request(status=t.node_status.NS_INVALID),
    "list_nodes_response": t.configuration_list_nodes_response(
        err=err("ERR_OK"),
        infos=[t.node_info(status=t.node_status.NS_ALIVE, address=addr("127.0.0.1", 34801)),
               t.node_info(status=t.node_status.NS_UNALIVE, address=addr("10.0.0.2", 34802))]),
    "cluster_info_request": t.configuration_cluster_info_request(),
    "cluster_info_response": t.configuration_cluster_info_response(
        err=err("ERR_OK"), keys=["meta_servers", "primary_meta_server"],
        values=["127.0.0.1:34601,127.0.0.1:34602", "127.0.0.1:34601"]),
    "meta_control_request": t.configuration_meta_control_request(
        level=t.meta_function_level.fl_freezed),
    "meta_control_response": t.configuration_meta_control_response(
        err=err("ERR_OK"), old_level=t.meta_function_level.fl_steady),
    "balancer_request": t.configuration_balancer_request(
        gpid=gpid((3 << 32) | 7),
        action_list=[
            t.configuration_proposal_action(
                target=addr("10.0.0.1", 34801), node=addr("10.0.0.1", 34801),
                type=t.config_type.CT_DOWNGRADE_TO_SECONDARY),
            t.configuration_proposal_action(
                target=addr("10.0.0.2", 34801), node=addr("10.0.0.2", 34801),
                type=t.config_type.CT_UPGRADE_TO_PRIMARY)],
        force=False, balance_type=t.balancer_request_type.move_primary),
    "balancer_response": t.configuration_balancer_response(err=err("ERR_INVALID_PARAMETERS")),
    "query_manual_compact_request": t.query_app_manual_compact_request(app_name="orders"),
    "query_manual_compact_response": t.query_app_manual_compact_response(
        err=err("ERR_OK"), hint_msg="2 of 3 replicas done", progress=66),
    "query_cfg_request": t.query_cfg_request(app_name="orders", partition_indices=[]),
    "query_cfg_response": t.query_cfg_response(
        err=err("ERR_OK"), app_id=7, partition_count=1, is_stateful=True,
        partitions=[t.partition_configuration(
            pid=gpid((0 << 32) | 7), ballot=5, max_replica_count=3,
            primary=addr("127.0.0.1", 34801),
            secondaries=[addr("127.0.0.1", 34802), addr("127.0.0.1", 34803)],
            last_drops=[], last_committed_decree=42, partition_flags=0)]),
    "start_backup_app_request": t.start_backup_app_request(
        backup_provider_type="local_service", app_id=7, backup_path="/mnt/nfs"),
    "start_backup_app_request_default_path": t.start_backup_app_request(
        backup_provider_type="local_service", app_id=7),
    "start_backup_app_response": t.start_backup_app_response(
        err=err("ERR_OK"), hint_message="backup 1700000000123 of table 7 started",
        backup_id=1_700_000_000_123),
    "query_backup_status_request": t.query_backup_status_request(
        app_id=7, backup_id=1_700_000_000_123),
    "query_backup_status_response": t.query_backup_status_response(
        err=err("ERR_OK"), hint_message="",
        backup_items=[t.backup_item(
            backup_id=1_700_000_000_123, app_name="orders", backup_provider_type="local_service",
            backup_path="/mnt/nfs", start_time_ms=1_700_000_000_123,
            end_time_ms=1_700_000_060_000, is_backup_failed=False)]),
    "restore_request": t.configuration_restore_request(
        cluster_name="onebox", policy_name="", time_stamp=1_700_000_000_123, app_name="orders",
        app_id=7, new_app_name="orders_restored", backup_provider_name="local_service",
        skip_bad_partition=False, restore_path="/mnt/nfs"),
    "query_restore_request": t.configuration_query_restore_request(restore_app_id=9),
    "query_restore_response": t.configuration_query_restore_response(
        err=err("ERR_OK"), restore_status=[err("ERR_OK"), err("ERR_CORRUPTION")],
        restore_progress=[1000, 250]),
    "backup_request": t.backup_request(
        pid=gpid((3 << 32) | 7),
        policy=t.policy_info(policy_name="", backup_provider_type="local_service"),
        app_name="orders", backup_id=1_700_000_000_123, backup_path="/mnt/nfs"),
    "backup_response": t.backup_response(
        err=err("ERR_OK"), pid=gpid((3 << 32) | 7), progress=500, policy_name="",
        backup_id=1_700_000_000_123, checkpoint_total_size=1 << 30),
    "report_restore_status_request": t.configuration_report_restore_status_request(
        pid=gpid((3 << 32) | 7), restore_status=err("ERR_CORRUPTION"), progress=250,
        reason="3/000012.sst: checksum mismatch"),
    "report_restore_status_response": t.configuration_report_restore_status_response(
        err=err("ERR_OK")),
    "add_backup_policy_request": t.configuration_add_backup_policy_request(
        backup_provider_type="local_service", policy_name="daily", app_ids=[7, 9],
        backup_interval_seconds=86400, backup_history_count_to_keep=3, start_time="01:30"),
    "add_backup_policy_response": t.configuration_add_backup_policy_response(
        err=err("ERR_INVALID_PARAMETERS"), hint_message="policy daily exists"),
    "modify_backup_policy_request": t.configuration_modify_backup_policy_request(
        policy_name="daily", add_appids=[11], new_backup_interval_sec=3600, is_disable=True),
    "modify_backup_policy_request_bare": t.configuration_modify_backup_policy_request(
        policy_name="daily"),
    "modify_backup_policy_response": t.configuration_modify_backup_policy_response(
        err=err("ERR_OK"), hint_message=""),
    "query_backup_policy_request": t.configuration_query_backup_policy_request(
        policy_names=["daily"], backup_info_count=2),
    "query_backup_policy_response": t.configuration_query_backup_policy_response(
        err=err("ERR_OK"),
        policys=[t.policy_entry(
            policy_name="daily", backup_provider_type="local_service",
            backup_interval_seconds="86400", app_ids={7}, backup_history_count_to_keep=3,
            start_time="01:30", is_disable=False)],
        backup_infos=[[t.backup_entry(
            backup_id=1_700_000_000_123, start_time_ms=1_700_000_000_123,
            end_time_ms=1_700_000_060_000, app_ids={7})]]),
}


def encode(value):
    buf = TTransport.TMemoryBuffer()
    value.write(TBinaryProtocol.TBinaryProtocol(buf))
    return buf.getvalue()


def decode(cls, data):
    value = cls()
    value.read(TBinaryProtocol.TBinaryProtocol(TTransport.TMemoryBuffer(data)))
    return value


def main():
    rust = json.load(sys.stdin)
    mismatches = []
    for name, sample in SAMPLES.items():
        if name not in rust:
            mismatches.append("%s: no Rust encoding" % name)
            continue
        # Decoding fills an absent optional field with its IDL default: compare with what the
        # sample's own bytes decode to.
        expected = decode(type(sample), encode(sample))
        got = decode(type(sample), bytes.fromhex(rust[name]))
        if got != expected:
            mismatches.append("%s: Rust bytes decode to %r, expected %r" % (name, got, expected))
    for name in rust:
        if name not in SAMPLES:
            mismatches.append("%s: no Python sample" % name)
    python = {name: encode(sample).hex() for name, sample in SAMPLES.items()}
    json.dump({"python": python, "mismatches": mismatches}, sys.stdout)


main()
