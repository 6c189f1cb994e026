//! Calls over Pegasus's wire protocol, for every side that makes them: the client's requests to
//! metas and replicas, and the servers' own traffic between each other (prepares and learning
//! between replica servers, beacons and configuration requests to the meta, the meta's
//! proposals to replica servers). The wire format is [`pegasus_protocol`]'s; this crate is the
//! runtime part: connections, call/response matching, deadlines.
//!
//! # Layout
//! - this file: [`Transport`] (one shared connection per server), [`CallError`]
//! - `session`: one connection: an outbox of frames, pending calls by sequence id, a sweeper of
//!   deadlines
//! - [`outbox`]: frames queued for one connection, written in bursts (the server's connections
//!   use it for their answers too)

pub mod outbox;
mod session;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pegasus_protocol::ProtocolError;
use pegasus_protocol::codec::Field;
use pegasus_protocol::codes::ErrorCode;
use pegasus_protocol::frame::RequestMeta;

use self::session::Session;

/// Why a call got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
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
    /// The bytes did not decode.
    #[error("protocol: {0}")]
    Protocol(#[from] ProtocolError),
}

/// Connections to servers, one per address, opened on first use and again after one broke;
/// cheap to clone (clones share the connections).
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    /// How long a connection may take to open.
    connect_timeout: Duration,
    sessions: Mutex<HashMap<SocketAddr, Arc<Session>>>,
}

impl Transport {
    /// Connections that each take at most `connect_timeout` to open.
    pub fn new(connect_timeout: Duration) -> Self {
        Transport {
            inner: Arc::new(Inner {
                connect_timeout,
                sessions: Mutex::default(),
            }),
        }
    }

    async fn session(&self, addr: SocketAddr) -> Result<Arc<Session>, CallError> {
        if let Some(s) = self
            .inner
            .sessions
            .lock()
            .expect("sessions")
            .get(&addr)
            .filter(|s| s.is_alive())
        {
            return Ok(Arc::clone(s));
        }
        let session = Session::connect(addr, self.inner.connect_timeout).await?;
        self.inner
            .sessions
            .lock()
            .expect("sessions")
            .insert(addr, Arc::clone(&session));
        Ok(session)
    }

    /// Sends `args` as RPC `name` to `addr` and decodes the result within `timeout`; an rDSN
    /// error other than `ERR_OK` is [`CallError::Server`].
    pub async fn call<A: Field, R: Field + Default>(
        &self,
        addr: SocketAddr,
        meta: RequestMeta,
        name: &str,
        args: &A,
        timeout: Duration,
    ) -> Result<R, CallError> {
        let session = self.session(addr).await?;
        let response = session.call(meta, name, args, timeout).await?;
        let code = ErrorCode::from_name(&response.error);
        if code != ErrorCode::Ok {
            return Err(CallError::Server(code));
        }
        Ok(response.result()?)
    }

    /// Sends a one-way request (no answer comes).
    pub async fn send_oneway<A: Field>(
        &self,
        addr: SocketAddr,
        meta: RequestMeta,
        name: &str,
        args: &A,
    ) -> Result<(), CallError> {
        self.session(addr)
            .await?
            .send_oneway(meta, name, args)
            .await
    }
}
