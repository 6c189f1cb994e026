//! An async Rust client for Pegasus: asks any meta server for a table's routing (following the
//! leader redirect), caches it, sends each request straight to the partition's primary over one
//! shared connection per server, and refreshes the routing when a replica says it is not the
//! primary. The wire format is [`pegasus_protocol`]'s, shared with the server; connections and
//! calls are [`pegasus_transport`]'s.
//!
//! # Layout
//! - this file: [`Client`], [`ClientOptions`], [`ClientError`], routing and meta calls
//! - `table`: [`Table`], every `rrdb` operation, scanners
//! - [`admin`]: the meta's admin RPCs (create, drop, recall, envs, meta level), node counts
//!
//! ```no_run
//! # async fn demo() -> Result<(), pegasus_client::ClientError> {
//! use pegasus_client::{Client, ClientOptions};
//! let client = Client::new(ClientOptions::new(vec!["127.0.0.1:34601".parse().unwrap()]));
//! let table = client.open_table("temp").await?;
//! table.set(b"hash", b"sort", b"value", None).await?;
//! assert_eq!(table.get(b"hash", b"sort").await?.as_deref(), Some(&b"value"[..]));
//! # Ok(()) }
//! ```

pub mod admin;
mod table;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use table::{CheckAndSetOutcome, MultiGetOptions, ScanOptions, Scanner, Table};

use pegasus_protocol::ProtocolError;
use pegasus_protocol::codec::Field;
use pegasus_protocol::codes::{ErrorCode, rpc};
use pegasus_protocol::frame::RequestMeta;
use pegasus_protocol::types::{Args, QueryCfgRequest, QueryCfgResponse};
use pegasus_transport::{CallError, Transport};

/// What went wrong with a call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The server could not be reached.
    #[error("cannot connect to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    /// The connection broke, maybe after the request was sent.
    #[error("disconnected: {0}")]
    Disconnected(String),
    /// The connection was already closed: the request was never sent.
    #[error("not sent: {0}")]
    NotSent(String),
    /// The server answered with an rDSN error.
    #[error("server error {0}")]
    Server(ErrorCode),
    /// The storage engine answered with a RocksDB status.
    #[error("storage error {status} ({})", status_name(*.status))]
    Storage {
        /// The RocksDB status code.
        status: i32,
    },
    /// No meta server answered.
    #[error("no meta server could be reached ({0})")]
    NoMeta(String),
    /// The table does not exist.
    #[error("table `{0}` does not exist")]
    NoTable(String),
    /// An argument cannot be sent (a hash key too long).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The meta refused an admin request.
    #[error("{code}{}", if hint.is_empty() { String::new() } else { format!(": {hint}") })]
    Refused {
        /// The rDSN error name (`ERR_APP_EXIST`).
        code: String,
        /// The meta's explanation, if any.
        hint: String,
    },
    /// The bytes did not decode.
    #[error("protocol: {0}")]
    Protocol(#[from] ProtocolError),
}

impl From<CallError> for ClientError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Timeout => ClientError::Timeout,
            CallError::Connect(addr, e) => ClientError::Connect(addr, e),
            CallError::Disconnected(why) => ClientError::Disconnected(why),
            CallError::NotSent(why) => ClientError::NotSent(why),
            CallError::Server(code) => ClientError::Server(code),
            CallError::Protocol(e) => ClientError::Protocol(e),
        }
    }
}

fn status_name(status: i32) -> &'static str {
    use pegasus_protocol::codes::status::*;
    match status {
        NOT_FOUND => "not found",
        CORRUPTION => "corruption",
        NOT_SUPPORTED => "not supported",
        INVALID_ARGUMENT => "invalid argument",
        IO_ERROR => "I/O error",
        INCOMPLETE => "incomplete",
        TRY_AGAIN => "try again",
        _ => "unknown",
    }
}

impl ClientError {
    /// Whether the request may have been applied although no answer came: it was sent, and the
    /// answer was lost (a timeout, a connection closed after sending).
    pub fn maybe_applied(&self) -> bool {
        matches!(self, ClientError::Timeout | ClientError::Disconnected(_))
    }

    /// Whether the routing may be stale, or the partition briefly cannot write (too few
    /// members, too many writes in flight): the request goes again, after a pause, to a fresh
    /// primary.
    pub fn needs_new_route(&self) -> bool {
        matches!(
            self,
            ClientError::Timeout
                | ClientError::Connect(..)
                | ClientError::Disconnected(_)
                | ClientError::NotSent(_)
                | ClientError::Server(
                    ErrorCode::ObjectNotFound
                        | ErrorCode::InvalidState
                        | ErrorCode::InactiveState
                        | ErrorCode::NotEnoughMember
                        | ErrorCode::CapacityExceeded
                        | ErrorCode::NoPrimary
                        | ErrorCode::ForwardToOthers
                )
        )
    }
}

/// How the client behaves.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Meta servers, any of them.
    pub metas: Vec<SocketAddr>,
    /// Time for one request, retries included.
    pub timeout: Duration,
}

impl ClientOptions {
    /// Options with the default 5 s timeout.
    pub fn new(metas: Vec<SocketAddr>) -> Self {
        ClientOptions {
            metas,
            timeout: Duration::from_secs(5),
        }
    }
}

/// A handle to a cluster; cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    options: ClientOptions,
    transport: Transport,
    /// The meta that answered the last routing query: asked first next time.
    leader: Mutex<Option<SocketAddr>>,
}

impl Client {
    /// A client of the cluster whose metas are in `options`. Connects lazily.
    pub fn new(options: ClientOptions) -> Self {
        Client {
            inner: Arc::new(Inner {
                transport: Transport::new(options.timeout),
                options,
                leader: Mutex::default(),
            }),
        }
    }

    /// The options.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// Opens a table: fetches its routing.
    pub async fn open_table(&self, name: &str) -> Result<Table, ClientError> {
        Table::open(self.clone(), name).await
    }

    /// Sends `args` as RPC `name` to `addr` and decodes the result; an rDSN error other than
    /// `ERR_OK` is [`ClientError::Server`].
    pub async fn call<A: Field, R: Field + Default>(
        &self,
        addr: SocketAddr,
        meta: RequestMeta,
        name: &str,
        args: &A,
        timeout: Duration,
    ) -> Result<R, ClientError> {
        Ok(self
            .inner
            .transport
            .call(addr, meta, name, args, timeout)
            .await?)
    }

    /// Sends a one-way request.
    pub(crate) async fn send_oneway<A: Field>(
        &self,
        addr: SocketAddr,
        meta: RequestMeta,
        name: &str,
        args: &A,
    ) -> Result<(), ClientError> {
        Ok(self
            .inner
            .transport
            .send_oneway(addr, meta, name, args)
            .await?)
    }

    /// Asks the metas for a table's routing, trying each and following the leader redirect.
    pub async fn query_config(&self, table: &str) -> Result<QueryCfgResponse, ClientError> {
        let request = Args(QueryCfgRequest {
            app_name: table.to_owned(),
            partition_indices: Vec::new(),
        });
        let metas = &self.inner.options.metas;
        // Each meta gets a share of the timeout: one that went silent must not take it all.
        let timeout = (self.inner.options.timeout / metas.len().max(1) as u32)
            .max(Duration::from_secs(1))
            .min(self.inner.options.timeout);
        let leader = *self.inner.leader.lock().expect("leader");
        let mut candidates: Vec<SocketAddr> = leader
            .into_iter()
            .chain(metas.iter().copied().filter(|m| Some(*m) != leader))
            .collect();
        let mut last = String::from("no meta server configured");
        let mut tried = 0;
        while let Some(addr) = candidates.first().copied() {
            candidates.remove(0);
            tried += 1;
            if tried > 8 {
                break;
            }
            let meta = RequestMeta::default();
            match self
                .call::<_, QueryCfgResponse>(addr, meta, rpc::QUERY_CONFIG, &request, timeout)
                .await
            {
                Ok(resp) => match ErrorCode::from_name(&resp.err.0) {
                    ErrorCode::Ok => {
                        *self.inner.leader.lock().expect("leader") = Some(addr);
                        return Ok(resp);
                    }
                    ErrorCode::ObjectNotFound | ErrorCode::AppNotExist => {
                        return Err(ClientError::NoTable(table.to_owned()));
                    }
                    ErrorCode::ForwardToOthers => {
                        let leader = resp
                            .partitions
                            .first()
                            .and_then(|p| p.primary.socket_addr())
                            .map(SocketAddr::V4);
                        match leader {
                            Some(leader) if leader != addr => candidates.insert(0, leader),
                            _ => last = format!("{addr} knows no leader"),
                        }
                    }
                    other => last = format!("{addr}: {other}"),
                },
                Err(e) => {
                    let mut leader = self.inner.leader.lock().expect("leader");
                    if *leader == Some(addr) {
                        *leader = None;
                    }
                    last = format!("{addr}: {e}");
                }
            }
        }
        Err(ClientError::NoMeta(last))
    }
}
