//! A table: its cached routing and every data operation, in the spirit of the Java client.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{Client, ClientError};
use pegasus_protocol::codec::Field;
use pegasus_protocol::codes::{rpc, status};
use pegasus_protocol::frame::RequestMeta;
use pegasus_protocol::key;
use pegasus_protocol::types::*;

/// The cached answer of the metas.
#[derive(Clone, Debug)]
struct Routing {
    app_id: i32,
    primaries: Vec<Option<SocketAddr>>,
}

/// Options of a range `multi_get`.
#[derive(Clone, Debug)]
pub struct MultiGetOptions {
    /// Include the start sort key.
    pub start_inclusive: bool,
    /// Include the stop sort key.
    pub stop_inclusive: bool,
    /// Sort-key filter: one of [`filter_type`].
    pub sort_key_filter_type: i32,
    /// The filter's pattern.
    pub sort_key_filter_pattern: Bytes,
    /// Return keys only.
    pub no_value: bool,
    /// From the last sort key backwards.
    pub reverse: bool,
    /// At most this many pairs (≤ 0: no limit).
    pub max_kv_count: i32,
    /// At most this many bytes (≤ 0: no limit).
    pub max_kv_size: i32,
}

impl Default for MultiGetOptions {
    fn default() -> Self {
        MultiGetOptions {
            start_inclusive: true,
            stop_inclusive: false,
            sort_key_filter_type: filter_type::NO_FILTER,
            sort_key_filter_pattern: Bytes::new(),
            no_value: false,
            reverse: false,
            max_kv_count: 100,
            max_kv_size: 1_000_000,
        }
    }
}

/// Options of a scan.
#[derive(Clone, Debug)]
pub struct ScanOptions {
    /// Pairs per round trip.
    pub batch_size: i32,
    /// Include the start key.
    pub start_inclusive: bool,
    /// Include the stop key.
    pub stop_inclusive: bool,
    /// Hash-key filter: one of [`filter_type`].
    pub hash_key_filter_type: i32,
    /// Its pattern.
    pub hash_key_filter_pattern: Bytes,
    /// Sort-key filter.
    pub sort_key_filter_type: i32,
    /// Its pattern.
    pub sort_key_filter_pattern: Bytes,
    /// Keys only.
    pub no_value: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            batch_size: 1000,
            start_inclusive: true,
            stop_inclusive: false,
            hash_key_filter_type: filter_type::NO_FILTER,
            hash_key_filter_pattern: Bytes::new(),
            sort_key_filter_type: filter_type::NO_FILTER,
            sort_key_filter_pattern: Bytes::new(),
            no_value: false,
        }
    }
}

/// What `check_and_set` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckAndSetOutcome {
    /// The check passed and the value was set.
    pub set: bool,
    /// The checked value, when asked for and present.
    pub check_value: Option<Bytes>,
}

/// A table of a cluster.
#[derive(Clone)]
pub struct Table {
    client: Client,
    name: Arc<str>,
    routing: Arc<RwLock<Routing>>,
}

fn storage(status: i32) -> ClientError {
    ClientError::Storage { status }
}

/// The outcome of a check-and-set or check-and-mutate answer (`kTryAgain`: the check failed).
fn check_outcome(
    error: i32,
    has_value: bool,
    value: Blob,
) -> Result<CheckAndSetOutcome, ClientError> {
    let set = match error {
        status::OK => true,
        status::TRY_AGAIN => false,
        s => return Err(storage(s)),
    };
    Ok(CheckAndSetOutcome {
        set,
        check_value: has_value.then_some(value.0),
    })
}

fn full_key(hash_key: &[u8], sort_key: &[u8]) -> Result<Vec<u8>, ClientError> {
    key::encode_key(hash_key, sort_key).map_err(|e| ClientError::InvalidArgument(e.to_string()))
}

impl Table {
    pub(super) async fn open(client: Client, name: &str) -> Result<Table, ClientError> {
        let routing = Self::fetch(&client, name).await?;
        Ok(Table {
            client,
            name: name.into(),
            routing: Arc::new(RwLock::new(routing)),
        })
    }

    async fn fetch(client: &Client, name: &str) -> Result<Routing, ClientError> {
        let config = client.query_config(name).await?;
        let mut primaries = vec![None; config.partition_count.max(0) as usize];
        for p in &config.partitions {
            if let Some(slot) = primaries.get_mut(p.pid.partition_index as usize) {
                *slot = p.primary.socket_addr().map(SocketAddr::V4);
            }
        }
        Ok(Routing {
            app_id: config.app_id,
            primaries,
        })
    }

    /// Fetches the routing again.
    pub async fn refresh(&self) -> Result<(), ClientError> {
        let routing = Self::fetch(&self.client, &self.name).await?;
        *self.routing.write().expect("routing") = routing;
        Ok(())
    }

    /// Forgets `addr` as the primary of `partition` (if it still is in the routing).
    fn forget(&self, partition: i32, addr: SocketAddr) {
        let mut r = self.routing.write().expect("routing");
        if let Some(slot) = r.primaries.get_mut(partition as usize)
            && *slot == Some(addr)
        {
            *slot = None;
        }
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The table's id.
    pub fn app_id(&self) -> i32 {
        self.routing.read().expect("routing").app_id
    }

    /// The number of partitions.
    pub fn partition_count(&self) -> i32 {
        self.routing.read().expect("routing").primaries.len() as i32
    }

    /// The partition of a hash key.
    pub fn partition_of(&self, hash_key: &[u8]) -> i32 {
        key::partition_index(key::crc64(hash_key), self.partition_count())
    }

    /// Sends a request to the primary of `partition`, refreshing the routing and retrying while
    /// the answer says the routing is stale, until the client's timeout. A write that is not
    /// idempotent (`incr`, `check_and_set`, `check_and_mutate`) is never sent again once it may
    /// have been applied (a timeout, a connection lost after sending): applying it twice would
    /// be wrong, so the caller gets that error.
    async fn call<A: Field, R: Field + Default>(
        &self,
        partition: i32,
        hash: u64,
        name: &str,
        args: &A,
    ) -> Result<R, ClientError> {
        let timeout = self.client.options().timeout;
        let deadline = Instant::now() + timeout;
        let once = [rpc::INCR, rpc::CHECK_AND_SET, rpc::CHECK_AND_MUTATE].contains(&name);
        let mut attempt = 0u32;
        loop {
            let route = || {
                let r = self.routing.read().expect("routing");
                (
                    r.app_id,
                    r.primaries.get(partition as usize).copied().flatten(),
                )
            };
            let (mut app_id, mut primary) = route();
            if primary.is_none() {
                // Forgotten after a failure (or none known): ask the meta before sending.
                let _ = self.refresh().await;
                (app_id, primary) = route();
            }
            let result = match primary {
                Some(addr) => {
                    let meta = RequestMeta {
                        app_id,
                        partition_index: partition,
                        client_timeout_ms: timeout.as_millis() as i32,
                        partition_hash: hash,
                        ..RequestMeta::default()
                    };
                    let left = deadline.saturating_duration_since(Instant::now());
                    self.client
                        .call(addr, meta, name, args, left.max(Duration::from_millis(1)))
                        .await
                }
                None => Err(ClientError::Server(
                    pegasus_protocol::codes::ErrorCode::NoPrimary,
                )),
            };
            if let (Err(e), Some(addr)) = (&result, primary)
                && e.needs_new_route()
            {
                // Whether or not it is sent again, the next attempt (or the caller's next call,
                // once this one's time is up) asks the meta first: a primary that went silent
                // must not take every later call's whole timeout too.
                self.forget(partition, addr);
            }
            match result {
                Err(e)
                    if e.needs_new_route()
                        && !(once && e.maybe_applied())
                        && Instant::now() < deadline =>
                {
                    attempt += 1;
                    let pause = Duration::from_millis((50 * attempt as u64).min(500));
                    tokio::time::sleep(
                        pause.min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await;
                }
                other => return other,
            }
        }
    }

    async fn call_key<A: Field, R: Field + Default>(
        &self,
        full_key: &[u8],
        name: &str,
        args: &A,
    ) -> Result<R, ClientError> {
        let hash = key::key_hash(full_key).unwrap_or(0);
        let partition = key::partition_index(hash, self.partition_count());
        self.call(partition, hash, name, args).await
    }

    async fn call_hash_key<A: Field, R: Field + Default>(
        &self,
        hash_key: &[u8],
        name: &str,
        args: &A,
    ) -> Result<R, ClientError> {
        let hash = key::crc64(hash_key);
        self.call(
            key::partition_index(hash, self.partition_count()),
            hash,
            name,
            args,
        )
        .await
    }

    /// The value of a key, `None` if absent or expired.
    pub async fn get(
        &self,
        hash_key: &[u8],
        sort_key: &[u8],
    ) -> Result<Option<Bytes>, ClientError> {
        let k = full_key(hash_key, sort_key)?;
        let r: ReadResponse = self
            .call_key(&k, rpc::GET, &Args(Blob::from(k.clone())))
            .await?;
        match r.error {
            status::OK => Ok(Some(r.value.0)),
            status::NOT_FOUND => Ok(None),
            s => Err(storage(s)),
        }
    }

    /// Sets a value, with a TTL if given.
    pub async fn set(
        &self,
        hash_key: &[u8],
        sort_key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), ClientError> {
        let k = full_key(hash_key, sort_key)?;
        let request = UpdateRequest {
            key: Blob::from(k.clone()),
            value: Blob::from(value.to_vec()),
            expire_ts_seconds: ttl.map_or(0, |t| key::expire_ts(t.as_secs() as u32)),
        };
        let r: UpdateResponse = self.call_key(&k, rpc::PUT, &Args(request)).await?;
        if r.error != status::OK {
            return Err(storage(r.error));
        }
        Ok(())
    }

    /// Deletes a key.
    pub async fn del(&self, hash_key: &[u8], sort_key: &[u8]) -> Result<(), ClientError> {
        let k = full_key(hash_key, sort_key)?;
        let r: UpdateResponse = self
            .call_key(&k, rpc::REMOVE, &Args(Blob::from(k.clone())))
            .await?;
        if r.error != status::OK {
            return Err(storage(r.error));
        }
        Ok(())
    }

    /// Seconds to live: `None` if absent, `Some(-1)` if it never expires.
    pub async fn ttl(&self, hash_key: &[u8], sort_key: &[u8]) -> Result<Option<i32>, ClientError> {
        let k = full_key(hash_key, sort_key)?;
        let r: TtlResponse = self
            .call_key(&k, rpc::TTL, &Args(Blob::from(k.clone())))
            .await?;
        match r.error {
            status::OK => Ok(Some(r.ttl_seconds)),
            status::NOT_FOUND => Ok(None),
            s => Err(storage(s)),
        }
    }

    /// Whether a key exists.
    pub async fn exist(&self, hash_key: &[u8], sort_key: &[u8]) -> Result<bool, ClientError> {
        Ok(self.ttl(hash_key, sort_key).await?.is_some())
    }

    /// Sets several sort keys of one hash key atomically.
    pub async fn multi_set(
        &self,
        hash_key: &[u8],
        kvs: &[(Bytes, Bytes)],
        ttl: Option<Duration>,
    ) -> Result<(), ClientError> {
        let request = MultiPutRequest {
            hash_key: Blob::from(hash_key.to_vec()),
            kvs: kvs
                .iter()
                .map(|(k, v)| KeyValue {
                    key: Blob(k.clone()),
                    value: Blob(v.clone()),
                    expire_ts_seconds: None,
                })
                .collect(),
            expire_ts_seconds: ttl.map_or(0, |t| key::expire_ts(t.as_secs() as u32)),
        };
        let r: UpdateResponse = self
            .call_hash_key(hash_key, rpc::MULTI_PUT, &Args(request))
            .await?;
        if r.error != status::OK {
            return Err(storage(r.error));
        }
        Ok(())
    }

    /// Reads the given sort keys (all of the hash key if empty). Returns the pairs found and
    /// whether the read was complete (a limit may stop it).
    pub async fn multi_get(
        &self,
        hash_key: &[u8],
        sort_keys: &[Bytes],
        options: &MultiGetOptions,
    ) -> Result<(Vec<(Bytes, Bytes)>, bool), ClientError> {
        self.multi_get_request(hash_key, sort_keys, Bytes::new(), Bytes::new(), options)
            .await
    }

    /// Reads a sort-key range (`stop` empty: to the end).
    pub async fn multi_get_range(
        &self,
        hash_key: &[u8],
        start: &[u8],
        stop: &[u8],
        options: &MultiGetOptions,
    ) -> Result<(Vec<(Bytes, Bytes)>, bool), ClientError> {
        self.multi_get_request(
            hash_key,
            &[],
            Bytes::copy_from_slice(start),
            Bytes::copy_from_slice(stop),
            options,
        )
        .await
    }

    async fn multi_get_request(
        &self,
        hash_key: &[u8],
        sort_keys: &[Bytes],
        start: Bytes,
        stop: Bytes,
        o: &MultiGetOptions,
    ) -> Result<(Vec<(Bytes, Bytes)>, bool), ClientError> {
        let request = MultiGetRequest {
            hash_key: Blob::from(hash_key.to_vec()),
            sort_keys: (!sort_keys.is_empty())
                .then(|| sort_keys.iter().cloned().map(Blob).collect()),
            max_kv_count: o.max_kv_count,
            max_kv_size: o.max_kv_size,
            no_value: o.no_value,
            start_sortkey: Some(Blob(start)),
            stop_sortkey: Some(Blob(stop)),
            start_inclusive: Some(o.start_inclusive),
            stop_inclusive: Some(o.stop_inclusive),
            sort_key_filter_type: Some(o.sort_key_filter_type),
            sort_key_filter_pattern: Some(Blob(o.sort_key_filter_pattern.clone())),
            reverse: Some(o.reverse),
        };
        let r: MultiGetResponse = self
            .call_hash_key(hash_key, rpc::MULTI_GET, &Args(request))
            .await?;
        let complete = match r.error {
            status::OK => true,
            status::INCOMPLETE => false,
            status::NOT_FOUND => return Ok((Vec::new(), true)),
            s => return Err(storage(s)),
        };
        Ok((
            r.kvs.into_iter().map(|kv| (kv.key.0, kv.value.0)).collect(),
            complete,
        ))
    }

    /// Reads full keys of any hash keys; returns `(hash_key, sort_key, value)` of those found.
    pub async fn batch_get(
        &self,
        keys: &[(Bytes, Bytes)],
    ) -> Result<Vec<(Bytes, Bytes, Bytes)>, ClientError> {
        let mut by_partition: std::collections::BTreeMap<i32, Vec<FullKey>> = Default::default();
        for (h, s) in keys {
            by_partition
                .entry(self.partition_of(h))
                .or_default()
                .push(FullKey {
                    hash_key: Blob(h.clone()),
                    sort_key: Blob(s.clone()),
                });
        }
        let mut out = Vec::new();
        for (partition, keys) in by_partition {
            let hash = key::crc64(keys[0].hash_key.as_slice());
            let r: BatchGetResponse = self
                .call(
                    partition,
                    hash,
                    rpc::BATCH_GET,
                    &Args(BatchGetRequest { keys }),
                )
                .await?;
            if r.error != status::OK {
                return Err(storage(r.error));
            }
            out.extend(
                r.data
                    .into_iter()
                    .map(|d| (d.hash_key.0, d.sort_key.0, d.value.0)),
            );
        }
        Ok(out)
    }

    /// Deletes sort keys of one hash key; returns how many were deleted.
    pub async fn multi_del(
        &self,
        hash_key: &[u8],
        sort_keys: &[Bytes],
    ) -> Result<i64, ClientError> {
        let request = MultiRemoveRequest {
            hash_key: Blob::from(hash_key.to_vec()),
            sort_keys: sort_keys.iter().cloned().map(Blob).collect(),
            max_count: None,
        };
        let r: MultiRemoveResponse = self
            .call_hash_key(hash_key, rpc::MULTI_REMOVE, &Args(request))
            .await?;
        if r.error != status::OK {
            return Err(storage(r.error));
        }
        Ok(r.count)
    }

    /// Adds `increment` to an integer value (absent = 0); returns the new value.
    pub async fn incr(
        &self,
        hash_key: &[u8],
        sort_key: &[u8],
        increment: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, ClientError> {
        let k = full_key(hash_key, sort_key)?;
        let expire = ttl.map_or(0, |t| key::expire_ts(t.as_secs() as u32));
        let r: IncrResponse = self
            .call_key(
                &k,
                rpc::INCR,
                &Args(IncrRequest {
                    key: Blob::from(k.clone()),
                    increment,
                    expire_ts_seconds: expire,
                }),
            )
            .await?;
        if r.error != status::OK {
            return Err(storage(r.error));
        }
        Ok(r.new_value)
    }

    /// Sets `set_sort_key` to `value` if the check on `check_sort_key` passes.
    #[allow(clippy::too_many_arguments)]
    pub async fn check_and_set(
        &self,
        hash_key: &[u8],
        check_sort_key: &[u8],
        check_type: i32,
        operand: &[u8],
        set_sort_key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<CheckAndSetOutcome, ClientError> {
        let request = CheckAndSetRequest {
            hash_key: Blob::from(hash_key.to_vec()),
            check_sort_key: Blob::from(check_sort_key.to_vec()),
            check_type,
            check_operand: Blob::from(operand.to_vec()),
            set_diff_sort_key: set_sort_key != check_sort_key,
            set_sort_key: Blob::from(set_sort_key.to_vec()),
            set_value: Blob::from(value.to_vec()),
            set_expire_ts_seconds: ttl.map_or(0, |t| key::expire_ts(t.as_secs() as u32)),
            return_check_value: true,
        };
        let r: CheckAndSetResponse = self
            .call_hash_key(hash_key, rpc::CHECK_AND_SET, &Args(request))
            .await?;
        check_outcome(
            r.error,
            r.check_value_returned && r.check_value_exist,
            r.check_value,
        )
    }

    /// Applies `mutations` to one hash key if the check on `check_sort_key` passes.
    pub async fn check_and_mutate(
        &self,
        hash_key: &[u8],
        check_sort_key: &[u8],
        check_type: i32,
        operand: &[u8],
        mutations: Vec<Mutate>,
    ) -> Result<CheckAndSetOutcome, ClientError> {
        let request = CheckAndMutateRequest {
            hash_key: Blob::from(hash_key.to_vec()),
            check_sort_key: Blob::from(check_sort_key.to_vec()),
            check_type,
            check_operand: Blob::from(operand.to_vec()),
            mutate_list: mutations,
            return_check_value: true,
        };
        let r: CheckAndMutateResponse = self
            .call_hash_key(hash_key, rpc::CHECK_AND_MUTATE, &Args(request))
            .await?;
        check_outcome(
            r.error,
            r.check_value_returned && r.check_value_exist,
            r.check_value,
        )
    }

    /// The number of sort keys of a hash key.
    pub async fn sort_key_count(&self, hash_key: &[u8]) -> Result<i64, ClientError> {
        let r: CountResponse = self
            .call_hash_key(
                hash_key,
                rpc::SORTKEY_COUNT,
                &Args(Blob::from(hash_key.to_vec())),
            )
            .await?;
        match r.error {
            status::OK => Ok(r.count),
            status::NOT_FOUND => Ok(0),
            s => Err(storage(s)),
        }
    }

    /// A scanner over the sort keys `[start, stop)` of one hash key (`stop` empty: to the end).
    pub fn hash_scan(
        &self,
        hash_key: &[u8],
        start: &[u8],
        stop: &[u8],
        options: ScanOptions,
    ) -> Result<Scanner, ClientError> {
        let start_key = full_key(hash_key, start)?;
        let (stop_key, options) = if stop.is_empty() {
            // Every key of the hash key is below the encoded hash key with its last byte raised.
            (
                key::prefix_successor(&full_key(hash_key, b"")?),
                ScanOptions {
                    stop_inclusive: false,
                    ..options
                },
            )
        } else {
            (full_key(hash_key, stop)?, options)
        };
        let partition = self.partition_of(hash_key);
        Ok(Scanner::new(
            self.clone(),
            vec![partition],
            Bytes::from(start_key),
            Bytes::from(stop_key),
            options,
            false,
        ))
    }

    /// Scanners over the whole table, at most `max_splits`, each over some partitions.
    pub fn full_scan(&self, max_splits: usize, options: ScanOptions) -> Vec<Scanner> {
        let count = self.partition_count().max(0) as usize;
        let splits = max_splits.clamp(1, count.max(1));
        (0..splits)
            .map(|s| {
                let partitions = (0..count)
                    .filter(|p| p % splits == s)
                    .map(|p| p as i32)
                    .collect();
                Scanner::new(
                    self.clone(),
                    partitions,
                    Bytes::new(),
                    Bytes::new(),
                    options.clone(),
                    true,
                )
            })
            .collect()
    }
}

/// Walks key ranges partition by partition, a batch per round trip.
pub struct Scanner {
    table: Table,
    partitions: VecDeque<i32>,
    start_key: Bytes,
    stop_key: Bytes,
    options: ScanOptions,
    full_scan: bool,
    current: Option<(i32, i64)>,
    batch: VecDeque<KeyValue>,
}

/// The scan of this partition is complete.
const CONTEXT_COMPLETED: i64 = -1;

impl Scanner {
    fn new(
        table: Table,
        partitions: Vec<i32>,
        start_key: Bytes,
        stop_key: Bytes,
        options: ScanOptions,
        full_scan: bool,
    ) -> Self {
        Scanner {
            table,
            partitions: partitions.into(),
            start_key,
            stop_key,
            options,
            full_scan,
            current: None,
            batch: VecDeque::new(),
        }
    }

    /// The next `(hash_key, sort_key, value)`, or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<(Bytes, Bytes, Bytes)>, ClientError> {
        loop {
            if let Some(kv) = self.batch.pop_front() {
                let (h, s) = key::decode_key(&kv.key.0).ok_or_else(|| {
                    ClientError::Protocol(pegasus_protocol::ProtocolError::Bad(
                        "malformed key in scan".into(),
                    ))
                })?;
                let (h, s) = (kv.key.0.slice_ref(h), kv.key.0.slice_ref(s));
                return Ok(Some((h, s, kv.value.0)));
            }
            let response: ScanResponse = match self.current {
                Some((_, CONTEXT_COMPLETED)) | None => {
                    let Some(partition) = self.partitions.pop_front() else {
                        return Ok(None);
                    };
                    let o = &self.options;
                    let request = GetScannerRequest {
                        start_key: Blob(self.start_key.clone()),
                        stop_key: Blob(self.stop_key.clone()),
                        start_inclusive: o.start_inclusive,
                        stop_inclusive: o.stop_inclusive,
                        batch_size: o.batch_size,
                        no_value: Some(o.no_value),
                        hash_key_filter_type: Some(o.hash_key_filter_type),
                        hash_key_filter_pattern: Some(Blob(o.hash_key_filter_pattern.clone())),
                        sort_key_filter_type: Some(o.sort_key_filter_type),
                        sort_key_filter_pattern: Some(Blob(o.sort_key_filter_pattern.clone())),
                        validate_partition_hash: Some(!self.full_scan),
                        return_expire_ts: None,
                        full_scan: Some(self.full_scan),
                        only_return_count: None,
                    };
                    let hash = if self.full_scan {
                        0
                    } else {
                        key::key_hash(&self.start_key).unwrap_or(0)
                    };
                    let r: ScanResponse = self
                        .table
                        .call(partition, hash, rpc::GET_SCANNER, &Args(request))
                        .await?;
                    self.current = Some((partition, r.context_id));
                    r
                }
                Some((partition, context)) => {
                    let r: ScanResponse = self
                        .table
                        .call(
                            partition,
                            0,
                            rpc::SCAN,
                            &Args(ScanRequest {
                                context_id: context,
                            }),
                        )
                        .await?;
                    self.current = Some((partition, r.context_id));
                    r
                }
            };
            match response.error {
                status::OK => self.batch.extend(response.kvs),
                status::NOT_FOUND => self.current = Some((0, CONTEXT_COMPLETED)),
                s => return Err(storage(s)),
            }
        }
    }

    /// Releases the server-side context early (it also expires on its own).
    pub async fn close(mut self) -> Result<(), ClientError> {
        if let Some((partition, context)) = self.current.take().filter(|(_, c)| *c >= 0) {
            let (app_id, primary) = {
                let r = self.table.routing.read().expect("routing");
                (
                    r.app_id,
                    r.primaries.get(partition as usize).copied().flatten(),
                )
            };
            if let Some(addr) = primary {
                let meta = RequestMeta {
                    app_id,
                    partition_index: partition,
                    ..RequestMeta::default()
                };
                self.table
                    .client
                    .send_oneway(addr, meta, rpc::CLEAR_SCANNER, &Args(context))
                    .await?;
            }
        }
        Ok(())
    }
}
