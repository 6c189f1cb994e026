//! One TCP connection to one server, shared by every request to it: a writer task that batches
//! frames into few writes, a reader task that matches answers to requests by sequence id.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::ClientError;
use crate::protocol::codec::Field;
use crate::protocol::frame::{self, RequestMeta, Response};

/// Requests queued for one connection before callers wait.
const QUEUE: usize = 1024;
/// Largest response accepted.
pub(crate) const MAX_RESPONSE: usize = 64 << 20;

type Pending = Arc<Mutex<HashMap<i32, oneshot::Sender<Result<Response, ClientError>>>>>;

/// A live connection.
pub(crate) struct Session {
    addr: SocketAddr,
    seqid: AtomicI32,
    tx: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    alive: Arc<AtomicBool>,
}

impl Session {
    /// Connects to `addr` and starts the reader and writer tasks.
    pub(crate) async fn connect(
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Arc<Session>, ClientError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(|e| ClientError::Connect(addr, e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| ClientError::Connect(addr, e))?;
        let (mut reader, mut writer) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE);
        let pending: Pending = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));

        let writer_alive = Arc::clone(&alive);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(64 << 10);
            while let Some(first) = rx.recv().await {
                let more = || rx.try_recv().ok();
                if frame::write_coalesced(&mut writer, &mut batch, &first, more)
                    .await
                    .is_err()
                {
                    break;
                }
            }
            writer_alive.store(false, Ordering::Release);
        });

        let reader_pending = Arc::clone(&pending);
        let reader_alive = Arc::clone(&alive);
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(64 << 10);
            let reason = loop {
                match frame::decode_response(&mut buf, MAX_RESPONSE) {
                    Ok(Some(response)) => {
                        let waiter = reader_pending
                            .lock()
                            .expect("pending")
                            .remove(&response.message.seqid);
                        if let Some(waiter) = waiter {
                            let _ = waiter.send(Ok(response));
                        }
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => break format!("bad response from {addr}: {e}"),
                }
                match reader.read_buf(&mut buf).await {
                    Ok(0) => break format!("{addr} closed the connection"),
                    Ok(_) => {}
                    Err(e) => break format!("reading from {addr}: {e}"),
                }
            };
            reader_alive.store(false, Ordering::Release);
            for (_, waiter) in reader_pending.lock().expect("pending").drain() {
                let _ = waiter.send(Err(ClientError::Disconnected(reason.clone())));
            }
        });

        Ok(Arc::new(Session {
            addr,
            seqid: AtomicI32::new(1),
            tx,
            pending,
            alive,
        }))
    }

    /// Whether the connection is still usable.
    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Sends one request and waits for its answer, at most `timeout`.
    pub(crate) async fn call<A: Field>(
        &self,
        meta: RequestMeta,
        name: &str,
        args: &A,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        let seqid = self.seqid.fetch_add(1, Ordering::Relaxed);
        let bytes = frame::encode_request_v0(&meta, name, seqid, args)?;
        let (done, wait) = oneshot::channel();
        self.pending.lock().expect("pending").insert(seqid, done);
        let result = tokio::time::timeout(timeout, async {
            self.tx
                .send(bytes)
                .await
                .map_err(|_| ClientError::Disconnected(format!("{} is closed", self.addr)))?;
            wait.await
                .map_err(|_| ClientError::Disconnected(format!("{} is closed", self.addr)))?
        })
        .await;
        match result {
            Ok(r) => r,
            Err(_) => {
                self.pending.lock().expect("pending").remove(&seqid);
                Err(ClientError::Timeout)
            }
        }
    }

    /// Sends a one-way request (no answer).
    pub(crate) async fn send_oneway<A: Field>(
        &self,
        meta: RequestMeta,
        name: &str,
        args: &A,
    ) -> Result<(), ClientError> {
        let seqid = self.seqid.fetch_add(1, Ordering::Relaxed);
        let bytes = frame::encode_request_v0(&meta, name, seqid, args)?;
        self.tx
            .send(bytes)
            .await
            .map_err(|_| ClientError::Disconnected(format!("{} is closed", self.addr)))
    }
}
