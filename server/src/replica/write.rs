//! What each rrdb write does: turns a request into its effect ([`Op`]s) and its answer, reading
//! the current state through a [`View`] (the store plus the effects of earlier writes of the same
//! batch, so a batch behaves exactly like the same writes one by one).

use std::collections::HashMap;

use pegasus_protocol::codes::status;
use pegasus_protocol::key::{self, value};
use pegasus_protocol::types::*;

use super::plog::Op;
use super::storage::{Storage, StorageError};

/// A write request, decoded.
#[derive(Debug)]
pub enum WriteOp {
    /// `put`.
    Put(UpdateRequest),
    /// `multi_put`.
    MultiPut(MultiPutRequest),
    /// `remove`.
    Remove(Blob),
    /// `multi_remove`.
    MultiRemove(MultiRemoveRequest),
    /// `incr`.
    Incr(IncrRequest),
    /// `check_and_set`.
    CheckAndSet(CheckAndSetRequest),
    /// `check_and_mutate`.
    CheckAndMutate(CheckAndMutateRequest),
}

/// The answer to a write, before its decree is known.
#[derive(Debug)]
pub enum WriteReply {
    /// `put`, `multi_put`, `remove`.
    Update(UpdateResponse),
    /// `multi_remove`.
    MultiRemove(MultiRemoveResponse),
    /// `incr`.
    Incr(IncrResponse),
    /// `check_and_set`.
    CheckAndSet(CheckAndSetResponse),
    /// `check_and_mutate`.
    CheckAndMutate(CheckAndMutateResponse),
}

impl WriteReply {
    /// Fills in where it was applied.
    pub fn stamp(&mut self, app_id: i32, partition_index: i32, decree: i64, server: &str) {
        macro_rules! stamp {
            ($r:expr) => {{
                $r.app_id = app_id;
                $r.partition_index = partition_index;
                $r.decree = decree;
                $r.server = server.to_owned();
            }};
        }
        match self {
            WriteReply::Update(r) => stamp!(r),
            WriteReply::MultiRemove(r) => stamp!(r),
            WriteReply::Incr(r) => stamp!(r),
            WriteReply::CheckAndSet(r) => stamp!(r),
            WriteReply::CheckAndMutate(r) => stamp!(r),
        }
    }
}

/// The store as the current batch sees it.
pub struct View<'a> {
    storage: &'a Storage,
    overlay: HashMap<Vec<u8>, Option<Vec<u8>>>,
    now: u32,
    cluster_id: u8,
}

impl<'a> View<'a> {
    /// A view of `storage` at time `now` (epoch seconds).
    pub fn new(storage: &'a Storage, now: u32, cluster_id: u8) -> Self {
        View {
            storage,
            overlay: HashMap::new(),
            now,
            cluster_id,
        }
    }

    /// A view of `storage` with `pending` (effects prepared but not yet applied, in order)
    /// laid over it.
    pub fn with_pending<'b>(
        storage: &'a Storage,
        now: u32,
        cluster_id: u8,
        pending: impl IntoIterator<Item = &'b Op>,
    ) -> Self {
        let mut view = View::new(storage, now, cluster_id);
        for op in pending {
            match op {
                Op::Put(k, v) => view.overlay.insert(k.clone(), Some(v.clone())),
                Op::Delete(k) => view.overlay.insert(k.clone(), None),
            };
        }
        view
    }

    /// The stored value of a key, `None` if absent or expired.
    fn stored(&self, k: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let v = match self.overlay.get(k) {
            Some(v) => v.clone(),
            None => self.storage.get_raw(k)?.map(|v| v.to_vec()),
        };
        Ok(v.filter(|v| !key::is_expired(value::expire_ts(v), self.now)))
    }

    fn put(&mut self, ops: &mut Vec<Op>, k: Vec<u8>, expire_ts: u32, user: &[u8]) {
        let v = value::encode(expire_ts, value::timetag(self.cluster_id), user);
        self.overlay.insert(k.clone(), Some(v.clone()));
        ops.push(Op::Put(k, v));
    }

    fn delete(&mut self, ops: &mut Vec<Op>, k: Vec<u8>) {
        self.overlay.insert(k.clone(), None);
        ops.push(Op::Delete(k));
    }

    /// Computes a write's effect and answer; the effect is also visible to later writes.
    pub fn execute(&mut self, op: WriteOp) -> Result<(Vec<Op>, WriteReply), StorageError> {
        let mut ops = Vec::new();
        let reply = match op {
            WriteOp::Put(r) => {
                let error = if valid_key(r.key.as_slice()) {
                    self.put(
                        &mut ops,
                        r.key.0.to_vec(),
                        r.expire_ts_seconds.max(0) as u32,
                        r.value.as_slice(),
                    );
                    status::OK
                } else {
                    status::INVALID_ARGUMENT
                };
                updated(error)
            }
            WriteOp::MultiPut(r) => {
                let keys: Option<Vec<Vec<u8>>> = r
                    .kvs
                    .iter()
                    .map(|kv| key::encode_key(r.hash_key.as_slice(), kv.key.as_slice()).ok())
                    .collect();
                let error = match keys {
                    Some(keys) if !keys.is_empty() => {
                        for (k, kv) in keys.into_iter().zip(&r.kvs) {
                            self.put(
                                &mut ops,
                                k,
                                r.expire_ts_seconds.max(0) as u32,
                                kv.value.as_slice(),
                            );
                        }
                        status::OK
                    }
                    _ => status::INVALID_ARGUMENT,
                };
                updated(error)
            }
            WriteOp::Remove(k) => {
                let error = if valid_key(k.as_slice()) {
                    self.delete(&mut ops, k.0.to_vec());
                    status::OK
                } else {
                    status::INVALID_ARGUMENT
                };
                updated(error)
            }
            WriteOp::MultiRemove(r) => {
                let keys: Option<Vec<Vec<u8>>> = r
                    .sort_keys
                    .iter()
                    .map(|s| key::encode_key(r.hash_key.as_slice(), s.as_slice()).ok())
                    .collect();
                let (error, count) = match keys {
                    Some(keys) if !keys.is_empty() => {
                        let count = keys.len() as i64;
                        for k in keys {
                            self.delete(&mut ops, k);
                        }
                        (status::OK, count)
                    }
                    _ => (status::INVALID_ARGUMENT, 0),
                };
                WriteReply::MultiRemove(MultiRemoveResponse {
                    error,
                    count,
                    ..Default::default()
                })
            }
            WriteOp::Incr(r) => WriteReply::Incr(self.incr(&mut ops, r)?),
            WriteOp::CheckAndSet(r) => WriteReply::CheckAndSet(self.check_and_set(&mut ops, r)?),
            WriteOp::CheckAndMutate(r) => {
                WriteReply::CheckAndMutate(self.check_and_mutate(&mut ops, r)?)
            }
        };
        Ok((ops, reply))
    }

    fn incr(&mut self, ops: &mut Vec<Op>, r: IncrRequest) -> Result<IncrResponse, StorageError> {
        let fail = |error| IncrResponse {
            error,
            ..Default::default()
        };
        if !valid_key(r.key.as_slice()) {
            return Ok(fail(status::INVALID_ARGUMENT));
        }
        let old = self.stored(r.key.as_slice())?;
        let (current, old_expire) = match &old {
            None => (0, 0),
            Some(v) => match parse_int(value::user_data(v)) {
                Some(n) => (n, value::expire_ts(v)),
                None => return Ok(fail(status::INVALID_ARGUMENT)),
            },
        };
        let Some(new_value) = current.checked_add(r.increment) else {
            return Ok(fail(status::INVALID_ARGUMENT));
        };
        let expire = match r.expire_ts_seconds {
            0 => old_expire,
            t if t > 0 => t as u32,
            _ => 0,
        };
        self.put(
            ops,
            r.key.0.to_vec(),
            expire,
            new_value.to_string().as_bytes(),
        );
        Ok(IncrResponse {
            error: status::OK,
            new_value,
            ..Default::default()
        })
    }

    /// Evaluates a check; `Err(InvalidCheck)` for an int comparison with a non-integer.
    fn check(
        &self,
        hash_key: &[u8],
        sort_key: &[u8],
        check_type: i32,
        operand: &[u8],
    ) -> Result<CheckOutcome, StorageError> {
        let k = key::encode_key(hash_key, sort_key).unwrap_or_default();
        let current = self.stored(&k)?.map(|v| value::user_data(&v).to_vec());
        Ok((evaluate(check_type, current.as_deref(), operand), current))
    }

    /// A check-and-set is a check-and-mutate with one put.
    fn check_and_set(
        &mut self,
        ops: &mut Vec<Op>,
        r: CheckAndSetRequest,
    ) -> Result<CheckAndSetResponse, StorageError> {
        let sort_key = if r.set_diff_sort_key {
            r.set_sort_key
        } else {
            r.check_sort_key.clone()
        };
        let put = Mutate {
            operation: mutate_operation::PUT,
            sort_key,
            value: r.set_value,
            set_expire_ts_seconds: r.set_expire_ts_seconds,
        };
        let m = self.check_and_mutate(
            ops,
            CheckAndMutateRequest {
                hash_key: r.hash_key,
                check_sort_key: r.check_sort_key,
                check_type: r.check_type,
                check_operand: r.check_operand,
                mutate_list: vec![put],
                return_check_value: r.return_check_value,
            },
        )?;
        Ok(CheckAndSetResponse {
            error: m.error,
            check_value_returned: m.check_value_returned,
            check_value_exist: m.check_value_exist,
            check_value: m.check_value,
            ..Default::default()
        })
    }

    fn check_and_mutate(
        &mut self,
        ops: &mut Vec<Op>,
        r: CheckAndMutateRequest,
    ) -> Result<CheckAndMutateResponse, StorageError> {
        let mut resp = CheckAndMutateResponse::default();
        if r.mutate_list.is_empty() || key::encode_key(r.hash_key.as_slice(), b"").is_err() {
            resp.error = status::INVALID_ARGUMENT;
            return Ok(resp);
        }
        let (passed, current) = self.check(
            r.hash_key.as_slice(),
            r.check_sort_key.as_slice(),
            r.check_type,
            r.check_operand.as_slice(),
        )?;
        fill_check_value(
            r.return_check_value,
            current,
            &mut resp.check_value_returned,
            &mut resp.check_value_exist,
            &mut resp.check_value,
        );
        resp.error = match passed {
            Err(InvalidCheck) => status::INVALID_ARGUMENT,
            Ok(false) => status::TRY_AGAIN,
            Ok(true) => {
                for m in &r.mutate_list {
                    let k = key::encode_key(r.hash_key.as_slice(), m.sort_key.as_slice())
                        .unwrap_or_default();
                    if m.operation == mutate_operation::DELETE {
                        self.delete(ops, k);
                    } else {
                        self.put(
                            ops,
                            k,
                            m.set_expire_ts_seconds.max(0) as u32,
                            m.value.as_slice(),
                        );
                    }
                }
                status::OK
            }
        };
        Ok(resp)
    }
}

fn fill_check_value(
    wanted: bool,
    current: Option<Vec<u8>>,
    returned: &mut bool,
    exist: &mut bool,
    value: &mut Blob,
) {
    if wanted {
        *returned = true;
        *exist = current.is_some();
        if let Some(v) = current {
            *value = Blob::from(v);
        }
    }
}

/// A stored key a client may write: decodable, with a hash key under the limit.
fn valid_key(k: &[u8]) -> bool {
    key::decode_key(k).is_some() && !k.starts_with(b"\xff\xff")
}

/// An integer value as Pegasus reads it: empty is 0, otherwise a decimal `i64`.
fn parse_int(v: &[u8]) -> Option<i64> {
    if v.is_empty() {
        return Some(0);
    }
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// A check that cannot be evaluated: an unknown check type, or an integer comparison with a
/// value or operand that is not an integer (answered `kInvalidArgument`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidCheck;

/// The check's verdict and the checked value (`None`: absent).
type CheckOutcome = (Result<bool, InvalidCheck>, Option<Vec<u8>>);

/// Evaluates a `cas_check_type` against the current value (`None`: absent).
pub fn evaluate(
    check_type: i32,
    value: Option<&[u8]>,
    operand: &[u8],
) -> Result<bool, InvalidCheck> {
    use cas_check_type::*;
    Ok(match check_type {
        NO_CHECK => true,
        VALUE_NOT_EXIST => value.is_none(),
        VALUE_NOT_EXIST_OR_EMPTY => value.is_none_or(|v| v.is_empty()),
        VALUE_EXIST => value.is_some(),
        VALUE_NOT_EMPTY => value.is_some_and(|v| !v.is_empty()),
        VALUE_MATCH_ANYWHERE => value
            .is_some_and(|v| operand.is_empty() || v.windows(operand.len()).any(|w| w == operand)),
        VALUE_MATCH_PREFIX => value.is_some_and(|v| v.starts_with(operand)),
        VALUE_MATCH_POSTFIX => value.is_some_and(|v| v.ends_with(operand)),
        VALUE_BYTES_LESS..=VALUE_BYTES_GREATER => match value {
            None => false,
            Some(v) => {
                let ord = v.cmp(operand);
                match check_type {
                    VALUE_BYTES_LESS => ord.is_lt(),
                    VALUE_BYTES_LESS_OR_EQUAL => ord.is_le(),
                    VALUE_BYTES_EQUAL => ord.is_eq(),
                    VALUE_BYTES_GREATER_OR_EQUAL => ord.is_ge(),
                    _ => ord.is_gt(),
                }
            }
        },
        VALUE_INT_LESS..=VALUE_INT_GREATER => match value {
            None => false,
            Some(v) => {
                let a = std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or(InvalidCheck)?;
                let b = std::str::from_utf8(operand)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or(InvalidCheck)?;
                match check_type {
                    VALUE_INT_LESS => a < b,
                    VALUE_INT_LESS_OR_EQUAL => a <= b,
                    VALUE_INT_EQUAL => a == b,
                    VALUE_INT_GREATER_OR_EQUAL => a >= b,
                    _ => a > b,
                }
            }
        },
        _ => return Err(InvalidCheck),
    })
}

/// The reply to a put, multi_put or remove.
fn updated(error: i32) -> WriteReply {
    WriteReply::Update(UpdateResponse {
        error,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cas_check_type::*;

    #[test]
    fn checks_follow_the_idl() {
        assert_eq!(evaluate(VALUE_NOT_EXIST, None, b""), Ok(true));
        assert_eq!(evaluate(VALUE_NOT_EXIST_OR_EMPTY, Some(b""), b""), Ok(true));
        assert_eq!(
            evaluate(VALUE_MATCH_ANYWHERE, Some(b"abcdef"), b"cd"),
            Ok(true)
        );
        assert_eq!(
            evaluate(VALUE_MATCH_POSTFIX, Some(b"abcdef"), b"cd"),
            Ok(false)
        );
        assert_eq!(evaluate(VALUE_BYTES_LESS, Some(b"abc"), b"abd"), Ok(true));
        assert_eq!(evaluate(VALUE_INT_GREATER, Some(b"10"), b"9"), Ok(true));
        assert_eq!(
            evaluate(VALUE_INT_GREATER, Some(b"x"), b"9"),
            Err(InvalidCheck)
        );
        assert_eq!(evaluate(99, None, b""), Err(InvalidCheck));
    }
}
