//! The structs of Pegasus's `rrdb` and `meta` services (`idl/rrdb.thrift`, `replication.thrift`,
//! `base.thrift`), with the field ids the clients use.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use bytes::Bytes;
use thrift::protocol::{TInputProtocol, TOutputProtocol, TType};

use super::codec::Field;
use crate::thrift_struct;

/// `base.blob`: raw bytes, declared a struct but written as a Thrift binary.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Blob(pub Bytes);

impl Blob {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({:?})", String::from_utf8_lossy(&self.0))
    }
}

impl<T: Into<Bytes>> From<T> for Blob {
    fn from(value: T) -> Self {
        Blob(value.into())
    }
}

impl Field for Blob {
    const TTYPE: TType = TType::Struct;
    fn write_to<P: TOutputProtocol>(&self, o: &mut P) -> thrift::Result<()> {
        o.write_bytes(&self.0)
    }
    fn read_from<P: TInputProtocol>(i: &mut P) -> thrift::Result<Self> {
        i.read_bytes().map(|b| Blob(Bytes::from(b)))
    }
}

/// `base.error_code`: declared a struct, written as the error's name (`"ERR_OK"`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorName(pub String);

impl Field for ErrorName {
    const TTYPE: TType = TType::Struct;
    fn write_to<P: TOutputProtocol>(&self, o: &mut P) -> thrift::Result<()> {
        o.write_string(&self.0)
    }
    fn read_from<P: TInputProtocol>(i: &mut P) -> thrift::Result<Self> {
        i.read_string().map(ErrorName)
    }
}

/// `base.gpid`: a partition of a table, written as one `i64` (`partition_index << 32 | app_id`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gpid {
    /// The table.
    pub app_id: i32,
    /// The partition.
    pub partition_index: i32,
}

impl Gpid {
    /// `app_id.partition_index`.
    pub fn new(app_id: i32, partition_index: i32) -> Self {
        Gpid {
            app_id,
            partition_index,
        }
    }

    /// The wire form.
    pub fn to_i64(self) -> i64 {
        ((self.partition_index as i64) << 32) | (self.app_id as u32 as i64)
    }

    /// From the wire form.
    pub fn from_i64(v: i64) -> Self {
        Gpid {
            app_id: v as i32,
            partition_index: (v >> 32) as i32,
        }
    }

    /// The thread hash clients put in the request header.
    pub fn thread_hash(self) -> i32 {
        self.app_id
            .wrapping_mul(7919)
            .wrapping_add(self.partition_index)
    }
}

impl fmt::Display for Gpid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.app_id, self.partition_index)
    }
}

impl Field for Gpid {
    const TTYPE: TType = TType::Struct;
    fn write_to<P: TOutputProtocol>(&self, o: &mut P) -> thrift::Result<()> {
        o.write_i64(self.to_i64())
    }
    fn read_from<P: TInputProtocol>(i: &mut P) -> thrift::Result<Self> {
        i.read_i64().map(Gpid::from_i64)
    }
}

/// `base.rpc_address`: an IPv4 endpoint, written as one `i64`
/// (`ip << 32 | port << 16 | 1`, the low bits being the address type "IPv4"); `0` is invalid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RpcAddress(pub u64);

impl RpcAddress {
    /// The invalid (empty) address.
    pub const INVALID: RpcAddress = RpcAddress(0);

    /// The address of `ip:port`.
    pub fn new(addr: SocketAddrV4) -> Self {
        RpcAddress(((u32::from(*addr.ip()) as u64) << 32) | ((addr.port() as u64) << 16) | 1)
    }

    /// `ip:port`, or `None` for an invalid address.
    pub fn socket_addr(self) -> Option<SocketAddrV4> {
        (self.0 & 0xFFFF == 1).then(|| {
            SocketAddrV4::new(
                Ipv4Addr::from((self.0 >> 32) as u32),
                ((self.0 >> 16) & 0xFFFF) as u16,
            )
        })
    }
}

impl fmt::Display for RpcAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.socket_addr() {
            Some(a) => f.pad(&a.to_string()),
            None => f.pad("-"),
        }
    }
}

impl Field for RpcAddress {
    const TTYPE: TType = TType::Struct;
    fn write_to<P: TOutputProtocol>(&self, o: &mut P) -> thrift::Result<()> {
        o.write_i64(self.0 as i64)
    }
    fn read_from<P: TInputProtocol>(i: &mut P) -> thrift::Result<Self> {
        i.read_i64().map(|v| RpcAddress(v as u64))
    }
}

/// `rrdb.filter_type`.
pub mod filter_type {
    /// No filter.
    pub const NO_FILTER: i32 = 0;
    /// The pattern appears anywhere.
    pub const MATCH_ANYWHERE: i32 = 1;
    /// The key starts with the pattern.
    pub const MATCH_PREFIX: i32 = 2;
    /// The key ends with the pattern.
    pub const MATCH_POSTFIX: i32 = 3;
}

/// `rrdb.cas_check_type`.
pub mod cas_check_type {
    #![allow(missing_docs)]
    pub const NO_CHECK: i32 = 0;
    pub const VALUE_NOT_EXIST: i32 = 1;
    pub const VALUE_NOT_EXIST_OR_EMPTY: i32 = 2;
    pub const VALUE_EXIST: i32 = 3;
    pub const VALUE_NOT_EMPTY: i32 = 4;
    pub const VALUE_MATCH_ANYWHERE: i32 = 5;
    pub const VALUE_MATCH_PREFIX: i32 = 6;
    pub const VALUE_MATCH_POSTFIX: i32 = 7;
    pub const VALUE_BYTES_LESS: i32 = 8;
    pub const VALUE_BYTES_LESS_OR_EQUAL: i32 = 9;
    pub const VALUE_BYTES_EQUAL: i32 = 10;
    pub const VALUE_BYTES_GREATER_OR_EQUAL: i32 = 11;
    pub const VALUE_BYTES_GREATER: i32 = 12;
    pub const VALUE_INT_LESS: i32 = 13;
    pub const VALUE_INT_LESS_OR_EQUAL: i32 = 14;
    pub const VALUE_INT_EQUAL: i32 = 15;
    pub const VALUE_INT_GREATER_OR_EQUAL: i32 = 16;
    pub const VALUE_INT_GREATER: i32 = 17;
}

/// `rrdb.mutate_operation`.
pub mod mutate_operation {
    /// Put a value.
    pub const PUT: i32 = 0;
    /// Delete the key.
    pub const DELETE: i32 = 1;
}

thrift_struct! {
    /// A single put.
    pub struct UpdateRequest {
        1: key: Blob,
        2: value: Blob,
        /// Seconds since the Pegasus epoch; 0 = never expires.
        3: expire_ts_seconds: i32,
    }
}

thrift_struct! {
    /// The answer to every single write.
    pub struct UpdateResponse {
        1: error: i32,
        2: app_id: i32,
        3: partition_index: i32,
        4: decree: i64,
        5: server: String,
    }
}

thrift_struct! {
    /// The answer to `get`.
    pub struct ReadResponse {
        1: error: i32,
        2: value: Blob,
        3: app_id: i32,
        4: partition_index: i32,
        6: server: String,
    }
}

thrift_struct! {
    /// The answer to `ttl`.
    pub struct TtlResponse {
        1: error: i32,
        /// Seconds left; -1 = forever.
        2: ttl_seconds: i32,
        3: app_id: i32,
        4: partition_index: i32,
        6: server: String,
    }
}

thrift_struct! {
    /// The answer to `sortkey_count`.
    pub struct CountResponse {
        1: error: i32,
        2: count: i64,
        3: app_id: i32,
        4: partition_index: i32,
        6: server: String,
    }
}

thrift_struct! {
    /// A key and its value.
    pub struct KeyValue {
        1: key: Blob,
        2: value: Blob,
        /// Only with `return_expire_ts`.
        3: expire_ts_seconds: Option<i32>,
    }
}

thrift_struct! {
    /// Puts several sort keys of one hash key.
    pub struct MultiPutRequest {
        1: hash_key: Blob,
        2: kvs: Vec<KeyValue>,
        3: expire_ts_seconds: i32,
    }
}

thrift_struct! {
    /// Removes sort keys of one hash key.
    pub struct MultiRemoveRequest {
        1: hash_key: Blob,
        2: sort_keys: Vec<Blob>,
        /// Deprecated; pypegasus3 leaves it out.
        3: max_count: Option<i64>,
    }
}

thrift_struct! {
    /// The answer to `multi_remove`.
    pub struct MultiRemoveResponse {
        1: error: i32,
        2: count: i64,
        3: app_id: i32,
        4: partition_index: i32,
        5: decree: i64,
        6: server: String,
    }
}

thrift_struct! {
    /// Reads sort keys of one hash key: a list, or a range with filters and limits.
    pub struct MultiGetRequest {
        1: hash_key: Blob,
        /// Absent or empty: a range read.
        2: sort_keys: Option<Vec<Blob>>,
        3: max_kv_count: i32,
        4: max_kv_size: i32,
        5: no_value: bool,
        // Fields 6 to 12 are left out by pypegasus3's plain `multi_get`: absent means the
        // whole hash key, start inclusive, stop exclusive, no filter, forward.
        6: start_sortkey: Option<Blob>,
        7: stop_sortkey: Option<Blob>,
        8: start_inclusive: Option<bool>,
        9: stop_inclusive: Option<bool>,
        10: sort_key_filter_type: Option<i32>,
        11: sort_key_filter_pattern: Option<Blob>,
        12: reverse: Option<bool>,
    }
}

thrift_struct! {
    /// The answer to `multi_get`: sort key → value.
    pub struct MultiGetResponse {
        1: error: i32,
        2: kvs: Vec<KeyValue>,
        3: app_id: i32,
        4: partition_index: i32,
        6: server: String,
    }
}

thrift_struct! {
    /// A hash key and sort key.
    pub struct FullKey {
        1: hash_key: Blob,
        2: sort_key: Blob,
    }
}

thrift_struct! {
    /// Reads several full keys of one partition.
    pub struct BatchGetRequest {
        1: keys: Vec<FullKey>,
    }
}

thrift_struct! {
    /// A found key and its value.
    pub struct FullData {
        1: hash_key: Blob,
        2: sort_key: Blob,
        3: value: Blob,
    }
}

thrift_struct! {
    /// The answer to `batch_get`.
    pub struct BatchGetResponse {
        1: error: i32,
        2: data: Vec<FullData>,
        3: app_id: i32,
        4: partition_index: i32,
        6: server: String,
    }
}

thrift_struct! {
    /// Adds to an integer value.
    pub struct IncrRequest {
        1: key: Blob,
        2: increment: i64,
        /// 0 keeps the TTL, > 0 sets it, < 0 clears it.
        3: expire_ts_seconds: i32,
    }
}

thrift_struct! {
    /// The answer to `incr`.
    pub struct IncrResponse {
        1: error: i32,
        2: new_value: i64,
        3: app_id: i32,
        4: partition_index: i32,
        5: decree: i64,
        6: server: String,
    }
}

thrift_struct! {
    /// Sets a value if a check on (maybe another) sort key passes.
    pub struct CheckAndSetRequest {
        1: hash_key: Blob,
        2: check_sort_key: Blob,
        3: check_type: i32,
        4: check_operand: Blob,
        5: set_diff_sort_key: bool,
        6: set_sort_key: Blob,
        7: set_value: Blob,
        8: set_expire_ts_seconds: i32,
        9: return_check_value: bool,
    }
}

thrift_struct! {
    /// The answer to `check_and_set` (`error` is kTryAgain when the check fails).
    pub struct CheckAndSetResponse {
        1: error: i32,
        2: check_value_returned: bool,
        3: check_value_exist: bool,
        4: check_value: Blob,
        5: app_id: i32,
        6: partition_index: i32,
        7: decree: i64,
        8: server: String,
    }
}

thrift_struct! {
    /// One mutation of `check_and_mutate`.
    pub struct Mutate {
        1: operation: i32,
        2: sort_key: Blob,
        3: value: Blob,
        4: set_expire_ts_seconds: i32,
    }
}

thrift_struct! {
    /// Applies mutations if a check passes.
    pub struct CheckAndMutateRequest {
        1: hash_key: Blob,
        2: check_sort_key: Blob,
        3: check_type: i32,
        4: check_operand: Blob,
        5: mutate_list: Vec<Mutate>,
        6: return_check_value: bool,
    }
}

thrift_struct! {
    /// The answer to `check_and_mutate`.
    pub struct CheckAndMutateResponse {
        1: error: i32,
        2: check_value_returned: bool,
        3: check_value_exist: bool,
        4: check_value: Blob,
        5: app_id: i32,
        6: partition_index: i32,
        7: decree: i64,
        8: server: String,
    }
}

thrift_struct! {
    /// Opens a scanner over a key range of one partition.
    pub struct GetScannerRequest {
        1: start_key: Blob,
        2: stop_key: Blob,
        3: start_inclusive: bool,
        4: stop_inclusive: bool,
        5: batch_size: i32,
        // Fields 6 to 10 are left out by pypegasus3: absent means values and no filters.
        6: no_value: Option<bool>,
        7: hash_key_filter_type: Option<i32>,
        8: hash_key_filter_pattern: Option<Blob>,
        9: sort_key_filter_type: Option<i32>,
        10: sort_key_filter_pattern: Option<Blob>,
        11: validate_partition_hash: Option<bool>,
        12: return_expire_ts: Option<bool>,
        13: full_scan: Option<bool>,
        14: only_return_count: Option<bool>,
    }
}

thrift_struct! {
    /// Continues a scanner.
    pub struct ScanRequest {
        1: context_id: i64,
    }
}

thrift_struct! {
    /// A batch of a scan; `context_id` -1 means the scan is complete.
    pub struct ScanResponse {
        1: error: i32,
        2: kvs: Vec<KeyValue>,
        3: context_id: i64,
        4: app_id: i32,
        5: partition_index: i32,
        6: server: String,
        7: kv_count: Option<i32>,
    }
}

thrift_struct! {
    /// A partition's replicas (`replication.partition_configuration`).
    pub struct PartitionConfiguration {
        1: pid: Gpid,
        2: ballot: i64,
        3: max_replica_count: i32,
        4: primary: RpcAddress,
        5: secondaries: Vec<RpcAddress>,
        6: last_drops: Vec<RpcAddress>,
        7: last_committed_decree: i64,
        8: partition_flags: i32,
    }
}

thrift_struct! {
    /// Asks a meta server for a table's routing (`RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX`).
    pub struct QueryCfgRequest {
        1: app_name: String,
        /// Empty: every partition.
        2: partition_indices: Vec<i32>,
    }
}

thrift_struct! {
    /// A table's routing. A follower answers `ERR_FORWARD_TO_OTHERS` with the leader as
    /// `partitions[0].primary`.
    pub struct QueryCfgResponse {
        1: err: ErrorName,
        2: app_id: i32,
        3: partition_count: i32,
        4: is_stateful: bool,
        5: partitions: Vec<PartitionConfiguration>,
    }
}

/// The arguments of a service call: one field, id 1.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args<T>(pub T);

impl<T: Field + Default> Field for Args<T> {
    const TTYPE: TType = TType::Struct;
    fn write_to<P: TOutputProtocol>(&self, o: &mut P) -> thrift::Result<()> {
        super::codec::write_struct_begin(o, "args")?;
        super::codec::write_field(o, 1, &self.0)?;
        super::codec::write_struct_end(o)
    }
    fn read_from<P: TInputProtocol>(i: &mut P) -> thrift::Result<Self> {
        read_single_field(i, 1).map(Args)
    }
}

/// The result of a service call: one field, id 0 (`success`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply<T>(pub T);

impl<T: Field + Default> Field for Reply<T> {
    const TTYPE: TType = TType::Struct;
    fn write_to<P: TOutputProtocol>(&self, o: &mut P) -> thrift::Result<()> {
        super::codec::write_struct_begin(o, "result")?;
        super::codec::write_field(o, 0, &self.0)?;
        super::codec::write_struct_end(o)
    }
    fn read_from<P: TInputProtocol>(i: &mut P) -> thrift::Result<Self> {
        read_single_field(i, 0).map(Reply)
    }
}

fn read_single_field<P: TInputProtocol, T: Field + Default>(
    i: &mut P,
    id: i16,
) -> thrift::Result<T> {
    let mut out = T::default();
    i.read_struct_begin()?;
    loop {
        let field = i.read_field_begin()?;
        if field.field_type == TType::Stop {
            break;
        }
        if field.id == Some(id) && field.field_type == T::TTYPE {
            out = T::read_from(i)?;
        } else {
            i.skip(field.field_type)?;
        }
        i.read_field_end()?;
    }
    i.read_struct_end()?;
    Ok(out)
}

thrift_struct! {
    /// A replica server's beacon to the meta leader (`RPC_FD_FAILURE_DETECTOR_PING`): who it is,
    /// which replicas it has on disk, and which it lost (found damaged and moved aside, or
    /// unable to open): the meta must not count those as copies.
    pub struct BeaconRequest {
        1: node: RpcAddress,
        2: replicas: Vec<Gpid>,
        3: errors: Vec<Gpid>,
        /// The commit point of each replica in `replicas`, in the same order (a primary's is
        /// its partition's `last_committed_decree`).
        4: committed: Vec<i64>,
        /// When each replica in `replicas` last finished a manual compaction (unix seconds, 0:
        /// never), in the same order.
        5: compacted: Vec<i64>,
        /// The configuration ballot each replica in `replicas` runs, in the same order.
        6: ballots: Vec<i64>,
        /// Replicas of dropped tables it closed and keeps on disk (for a recall; deleted once
        /// the meta says they are gone).
        7: closed: Vec<Gpid>,
        /// The id made when the node's data dirs were first used (0: unknown): another one
        /// than before means its disks were replaced or wiped.
        8: disk_id: i64,
        /// Replicas that may lack writes they acknowledged (reopened after the machine
        /// restarted, with `plog_force_flush = false`) and have not learned again since.
        9: lossy: Vec<Gpid>,
        /// The node's last beacon on a clean stop, sent before it stops serving (its beacons
        /// stopped): the meta takes it for dead at once instead of after its grace.
        10: leaving: bool,
    }
}

thrift_struct! {
    /// A partition's configuration as the meta tells a replica server: with every beacon answer
    /// for each partition the node is a member of or holds a copy of, and in the answer to a
    /// configuration change. A node that is neither primary nor secondary is inactive.
    pub struct Assignment {
        1: pid: Gpid,
        2: partition_count: i32,
        3: ballot: i64,
        4: primary: RpcAddress,
        5: secondaries: Vec<RpcAddress>,
        6: max_replica_count: i32,
        /// To the primary only: a node to learn and become a secondary (ADD_SECONDARY).
        7: learner: RpcAddress,
        /// The table's environments.
        8: envs: BTreeMap<String, String>,
        /// A partition just placed (first ballot, nothing written, no copy reported yet): a
        /// member creates its copy empty. Otherwise a member without its copy asks to leave.
        9: fresh: bool,
        /// The table's name (for metrics and status pages; a recall may rename it).
        10: app_name: String,
    }
}

thrift_struct! {
    /// The leader's answer to a beacon: the node's configurations (the config sync), or
    /// `ERR_FORWARD_TO_OTHERS` with the leader.
    pub struct BeaconResponse {
        1: err: ErrorName,
        2: leader: RpcAddress,
        3: configs: Vec<Assignment>,
        /// Reported replicas of dropped tables: close them, keep their files (a recall opens
        /// them again).
        4: dropped: Vec<Gpid>,
        /// Reported replicas to delete: their table's reserve ran out, or the balancer moved
        /// the copy to another node.
        5: gone: Vec<Gpid>,
    }
}

/// Pegasus's `config_type` values (`idl/metadata.thrift`), those this server uses.
pub mod config_type {
    /// A partition without members gets a primary.
    pub const ASSIGN_PRIMARY: i32 = 1;
    /// A secondary becomes primary.
    pub const UPGRADE_TO_PRIMARY: i32 = 2;
    /// A new copy learns from the primary (`copy_secondary`'s first action).
    pub const ADD_SECONDARY: i32 = 3;
    /// A primary becomes a secondary (the first action of a `move_primary` proposal).
    pub const DOWNGRADE_TO_SECONDARY: i32 = 5;
    /// A learner that caught up becomes a secondary.
    pub const UPGRADE_TO_SECONDARY: i32 = 4;
    /// A member leaves the configuration.
    pub const DOWNGRADE_TO_INACTIVE: i32 = 6;
    /// A member is removed (`copy_secondary`'s second action).
    pub const REMOVE: i32 = 7;
    /// A new copy for the balancer (as [`ADD_SECONDARY`]).
    pub const ADD_SECONDARY_FOR_LB: i32 = 8;
    /// The same members under the next ballot (a restarted primary takes it up).
    pub const PRIMARY_FORCE_UPDATE_BALLOT: i32 = 9;
}

thrift_struct! {
    /// One effect of a write, as the private log holds it: `kind` 0 puts `value` at `key`
    /// (the stored, encoded forms), 1 deletes `key`.
    pub struct WireOp {
        1: kind: i32,
        2: key: Blob,
        3: value: Blob,
    }
}

thrift_struct! {
    /// `RPC_PREPARE`: the primary of `ballot` asks a secondary to log a mutation. `committed` is
    /// the primary's commit point (it rides on every prepare); `ballot_start` its commit point
    /// when it took up `ballot`. `empty` marks a mutation that only carries the commit point.
    pub struct PrepareRequest {
        1: pid: Gpid,
        2: ballot: i64,
        3: ballot_start: i64,
        4: committed: i64,
        5: mutation_ballot: i64,
        6: decree: i64,
        7: empty: bool,
        8: ops: Vec<WireOp>,
        /// The primary's advertised address.
        9: primary: RpcAddress,
    }
}

thrift_struct! {
    /// The answer to a prepare: logged under `ballot` (`rejected` false), or refused because the
    /// secondary knows the higher `ballot`. `err` is not `ERR_OK` when the secondary cannot take
    /// part (inactive, not a member, closing).
    pub struct PrepareResponse {
        1: err: ErrorName,
        2: ballot: i64,
        3: decree: i64,
        4: rejected: bool,
    }
}

thrift_struct! {
    /// A mutation as a learner copies it from the primary's prepared list.
    pub struct LearnMutation {
        1: ballot: i64,
        2: decree: i64,
        3: empty: bool,
        4: ops: Vec<WireOp>,
    }
}

thrift_struct! {
    /// `RPC_LEARN_ADD_LEARNER`: the primary of `ballot` tells a node to learn; every mutation
    /// from `prepare_start` on is prepared to it.
    pub struct LearnAddRequest {
        1: pid: Gpid,
        2: ballot: i64,
        3: primary: RpcAddress,
        4: prepare_start: i64,
        5: max_replica_count: i32,
    }
}

thrift_struct! {
    /// `RPC_LEARN`: a learner asks its primary for a copy.
    pub struct LearnRequest {
        1: pid: Gpid,
        2: ballot: i64,
        3: learner: RpcAddress,
        /// The decree the learner's own store is at (0: none, or empty): a primary whose log
        /// still holds every decree past it sends those instead of a checkpoint.
        4: applied: i64,
    }
}

thrift_struct! {
    /// One file of a checkpoint, with its CRC-32C.
    pub struct LearnFile {
        1: name: String,
        2: size: i64,
        3: crc: i64,
    }
}

thrift_struct! {
    /// The answer to `RPC_LEARN`: a RocksDB checkpoint of the primary's store at
    /// `checkpoint_decree` (its files, to fetch), and the primary's mutations past it. Without
    /// a checkpoint (no name, no files) `checkpoint_decree` is the learner's own `applied`: the
    /// tail, from the primary's log and memory, is all it needs.
    pub struct LearnResponse {
        1: err: ErrorName,
        2: checkpoint_decree: i64,
        3: checkpoint: String,
        4: files: Vec<LearnFile>,
        5: tail: Vec<LearnMutation>,
    }
}

thrift_struct! {
    /// `RPC_LEARN_FETCH`: a chunk of a checkpoint file.
    pub struct LearnFetchRequest {
        1: pid: Gpid,
        2: checkpoint: String,
        3: name: String,
        4: offset: i64,
        5: len: i32,
    }
}

thrift_struct! {
    /// The chunk, with its CRC-32C.
    pub struct LearnFetchResponse {
        1: err: ErrorName,
        2: data: Blob,
        3: crc: i64,
    }
}

thrift_struct! {
    /// `RPC_LEARN_COMPLETION_NOTIFY`: a learner holds every decree up to `logged_through`.
    pub struct LearnDoneRequest {
        1: pid: Gpid,
        2: ballot: i64,
        3: learner: RpcAddress,
        4: logged_through: i64,
    }
}

thrift_struct! {
    /// `RPC_CM_UPDATE_PARTITION_CONFIGURATION`: a member asks the meta leader for a change of
    /// configuration `ballot` (a compare-and-swap: any other ballot gets `ERR_INVALID_VERSION`
    /// with the current configuration). Served: `DOWNGRADE_TO_INACTIVE` of `node`, and
    /// `PRIMARY_FORCE_UPDATE_BALLOT` by the primary `node`.
    pub struct UpdateConfigRequest {
        1: pid: Gpid,
        2: ballot: i64,
        3: node: RpcAddress,
        4: config_type: i32,
    }
}

thrift_struct! {
    /// The answer: the configuration after the change, or the current one.
    pub struct UpdateConfigResponse {
        1: err: ErrorName,
        2: config: Assignment,
    }
}

/// Pegasus's `app_status` (`idl/dsn.layer2.thrift`).
pub mod app_status {
    #![allow(missing_docs)]
    pub const INVALID: i32 = 0;
    pub const AVAILABLE: i32 = 1;
    pub const CREATING: i32 = 2;
    pub const DROPPING: i32 = 4;
    pub const DROPPED: i32 = 6;
    pub const RECALLING: i32 = 7;

    /// The name Pegasus's shell prints (`AVAILABLE`, `DROPPED`, ...).
    pub fn name(status: i32) -> &'static str {
        match status {
            AVAILABLE => "AVAILABLE",
            CREATING => "CREATING",
            3 => "CREATE_FAILED",
            DROPPING => "DROPPING",
            5 => "DROP_FAILED",
            DROPPED => "DROPPED",
            RECALLING => "RECALLING",
            _ => "INVALID",
        }
    }
}

/// Pegasus's `node_status` (`idl/meta_admin.thrift`).
pub mod node_status {
    #![allow(missing_docs)]
    pub const INVALID: i32 = 0;
    pub const ALIVE: i32 = 1;
    pub const UNALIVE: i32 = 2;
}

/// Pegasus's `app_env_operation`.
pub mod app_env_operation {
    #![allow(missing_docs)]
    pub const INVALID: i32 = 0;
    pub const SET: i32 = 1;
    pub const DEL: i32 = 2;
    pub const CLEAR: i32 = 3;
}

/// Pegasus's `meta_function_level`: what the meta leader may change on its own.
pub mod meta_function_level {
    #![allow(missing_docs)]
    pub const STOPPED: i32 = 100;
    pub const BLIND: i32 = 200;
    /// Table DDL and taking dead nodes' primaries away; nothing else moves.
    pub const FREEZED: i32 = 300;
    /// Also cures (adds copies, answers members' requests); no balancing.
    pub const STEADY: i32 = 400;
    /// Also balances.
    pub const LIVELY: i32 = 500;
    /// In a request: change nothing, tell the level.
    pub const INVALID: i32 = 10000;

    /// `freezed`, `steady`, ... as the shell names them.
    pub fn name(level: i32) -> &'static str {
        match level {
            STOPPED => "stopped",
            BLIND => "blind",
            FREEZED => "freezed",
            STEADY => "steady",
            LIVELY => "lively",
            _ => "invalid",
        }
    }

    /// The level named `name` (`freezed`, or Pegasus's `fl_freezed`).
    pub fn parse(name: &str) -> Option<i32> {
        let name = name.strip_prefix("fl_").unwrap_or(name);
        [STOPPED, BLIND, FREEZED, STEADY, LIVELY]
            .into_iter()
            .find(|l| self::name(*l) == name)
    }
}

thrift_struct! {
    /// A table (`app_info`, `idl/dsn.layer2.thrift`).
    pub struct AppInfo {
        /// [`app_status`].
        1: status: i32,
        2: app_type: String,
        3: app_name: String,
        4: app_id: i32,
        5: partition_count: i32,
        6: envs: BTreeMap<String, String>,
        7: is_stateful: bool,
        8: max_replica_count: i32,
        /// Unix seconds after which a dropped table is gone for good (0 while available).
        9: expire_second: i64,
        10: create_second: i64,
        11: drop_second: i64,
        12: duplicating: Option<bool>,
        13: init_partition_count: i32,
        14: is_bulk_loading: Option<bool>,
    }
}

thrift_struct! {
    /// `create_app_options`.
    pub struct CreateAppOptions {
        1: partition_count: i32,
        2: replica_count: i32,
        3: success_if_exist: bool,
        4: app_type: String,
        5: is_stateful: bool,
        6: envs: BTreeMap<String, String>,
    }
}

thrift_struct! {
    /// `RPC_CM_CREATE_APP` (`configuration_create_app_request`).
    pub struct CreateAppRequest {
        1: app_name: String,
        2: options: CreateAppOptions,
    }
}

thrift_struct! {
    /// `configuration_create_app_response`.
    pub struct CreateAppResponse {
        1: err: ErrorName,
        2: appid: i32,
    }
}

thrift_struct! {
    /// `drop_app_options`.
    pub struct DropAppOptions {
        1: success_if_not_exist: bool,
        /// How long the dropped table can be recalled; absent: the meta's
        /// `hold_seconds_for_dropped_app`.
        2: reserve_seconds: Option<i64>,
    }
}

thrift_struct! {
    /// `RPC_CM_DROP_APP` (`configuration_drop_app_request`).
    pub struct DropAppRequest {
        1: app_name: String,
        2: options: DropAppOptions,
    }
}

thrift_struct! {
    /// `configuration_drop_app_response`.
    pub struct DropAppResponse {
        1: err: ErrorName,
    }
}

thrift_struct! {
    /// `RPC_CM_RECALL_APP` (`configuration_recall_app_request`): brings a dropped table back,
    /// under `new_app_name` when not empty.
    pub struct RecallAppRequest {
        1: app_id: i32,
        2: new_app_name: String,
    }
}

thrift_struct! {
    /// `configuration_recall_app_response`.
    pub struct RecallAppResponse {
        1: err: ErrorName,
        2: info: AppInfo,
    }
}

thrift_struct! {
    /// `RPC_CM_LIST_APPS` (`configuration_list_apps_request`): [`app_status::INVALID`] lists
    /// every table, dropped ones included.
    pub struct ListAppsRequest {
        1: status: i32,
    }
}

thrift_struct! {
    /// `configuration_list_apps_response`.
    pub struct ListAppsResponse {
        1: err: ErrorName,
        2: infos: Vec<AppInfo>,
    }
}

thrift_struct! {
    /// `RPC_CM_UPDATE_APP_ENV` (`configuration_update_app_env_request`).
    pub struct UpdateAppEnvRequest {
        1: app_name: String,
        /// [`app_env_operation`].
        2: op: i32,
        /// Set and del.
        3: keys: Option<Vec<String>>,
        /// Set.
        4: values: Option<Vec<String>>,
        /// Clear: empty clears every env, else those named `<clear_prefix>.*`.
        5: clear_prefix: Option<String>,
    }
}

thrift_struct! {
    /// `configuration_update_app_env_response`.
    pub struct UpdateAppEnvResponse {
        1: err: ErrorName,
        2: hint_message: String,
    }
}

thrift_struct! {
    /// `node_info`.
    pub struct NodeInfo {
        /// [`node_status`].
        1: status: i32,
        2: address: RpcAddress,
    }
}

thrift_struct! {
    /// `RPC_CM_LIST_NODES` (`configuration_list_nodes_request`): [`node_status::INVALID`]
    /// lists every node.
    pub struct ListNodesRequest {
        1: status: i32,
    }
}

thrift_struct! {
    /// `configuration_list_nodes_response`.
    pub struct ListNodesResponse {
        1: err: ErrorName,
        2: infos: Vec<NodeInfo>,
    }
}

thrift_struct! {
    /// `RPC_CM_CLUSTER_INFO` (`configuration_cluster_info_request`).
    pub struct ClusterInfoRequest {}
}

thrift_struct! {
    /// `configuration_cluster_info_response`: parallel key and value lists.
    pub struct ClusterInfoResponse {
        1: err: ErrorName,
        2: keys: Vec<String>,
        3: values: Vec<String>,
    }
}

thrift_struct! {
    /// `RPC_CM_QUERY_MANUAL_COMPACT_STATUS` (`query_app_manual_compact_request`).
    pub struct QueryManualCompactRequest {
        1: app_name: String,
    }
}

thrift_struct! {
    /// `query_app_manual_compact_response`: `progress` is the percentage of the table's
    /// replicas that finished the compaction `manual_compact.once.trigger_time` asked for.
    pub struct QueryManualCompactResponse {
        1: err: ErrorName,
        2: hint_msg: String,
        3: progress: Option<i32>,
    }
}

thrift_struct! {
    /// `RPC_CM_CONTROL_META` (`configuration_meta_control_request`):
    /// [`meta_function_level::INVALID`] only asks.
    pub struct MetaControlRequest {
        1: level: i32,
    }
}

thrift_struct! {
    /// `configuration_proposal_action`: `type` ([`config_type`]) applied to `node` in the
    /// configuration `target` holds.
    pub struct ProposalAction {
        1: target: RpcAddress,
        2: node: RpcAddress,
        3: config_type: i32,
    }
}

/// `balancer_request_type` (`idl/meta_admin.thrift`).
pub mod balancer_request_type {
    /// Hand the primary to a secondary.
    pub const MOVE_PRIMARY: i32 = 0;
    /// Move a secondary's copy to another node.
    pub const COPY_SECONDARY: i32 = 2;
}

thrift_struct! {
    /// `RPC_CM_PROPOSE_BALANCER` (`configuration_balancer_request`), as Pegasus shell's
    /// `propose` sends it; a `move_primary` is `[DOWNGRADE_TO_SECONDARY old, UPGRADE_TO_PRIMARY
    /// new]`.
    pub struct BalancerRequest {
        1: gpid: Gpid,
        2: action_list: Vec<ProposalAction>,
        3: force: Option<bool>,
        4: balance_type: Option<i32>,
    }
}

thrift_struct! {
    /// `configuration_balancer_response`.
    pub struct BalancerResponse {
        1: err: ErrorName,
    }
}

thrift_struct! {
    /// `configuration_meta_control_response`: the level before the request.
    pub struct MetaControlResponse {
        1: err: ErrorName,
        2: old_level: i32,
    }
}

thrift_struct! {
    /// The collector's last round of availability detection (ours): which partitions of its
    /// table failed the write-then-read check.
    pub struct AvailabilityReport {
        1: app_name: String,
        2: partition_count: i32,
        /// The partitions that failed.
        3: unavailable: Vec<i32>,
        /// The collector's address.
        4: collector: RpcAddress,
    }
}

thrift_struct! {
    /// The meta's answer to an [`AvailabilityReport`].
    pub struct AvailabilityReportResponse {
        1: err: ErrorName,
    }
}

thrift_struct! {
    /// An argument-less request.
    pub struct Empty {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode};

    #[test]
    fn custom_wire_types_round_trip_inside_lists_and_structs() {
        let b = BeaconRequest {
            node: RpcAddress::new("10.1.2.3:34801".parse().unwrap()),
            replicas: vec![Gpid::new(1, 0), Gpid::new(2, 7)],
            errors: vec![Gpid::new(4, 1)],
            committed: vec![12, 0],
            compacted: vec![1_700_000_000, 0],
            ballots: vec![3, 1],
            closed: vec![Gpid::new(5, 2)],
            disk_id: 0x1234_5678_9abc,
            lossy: vec![Gpid::new(2, 7)],
            leaving: true,
        };
        let mut bytes = Vec::new();
        encode(&b, &mut bytes).unwrap();
        assert_eq!(decode::<BeaconRequest>(&bytes).unwrap(), b);
        assert_eq!(b.node.to_string(), "10.1.2.3:34801");
        assert_eq!(Gpid::from_i64(Gpid::new(3, 5).to_i64()), Gpid::new(3, 5));
    }
}
