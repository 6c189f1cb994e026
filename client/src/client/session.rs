//! One TCP connection to one server, shared by every request to it: callers append their frames
//! to an outbox that a writer task sends in few writes, a reader task matches answers to
//! requests by sequence id.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{Notify, oneshot};

use super::ClientError;
use crate::protocol::codec::Field;
use crate::protocol::frame::{self, RequestMeta, Response};

/// Largest response accepted.
pub(crate) const MAX_RESPONSE: usize = 64 << 20;

type Pending = Arc<Mutex<HashMap<i32, oneshot::Sender<Result<Response, ClientError>>>>>;

/// Frames not written yet. Every frame in it has a caller waiting for its answer (or a one-way
/// sender that has returned), so it holds at most one frame per concurrent caller.
#[derive(Default)]
struct Outbox {
    frames: Mutex<Vec<u8>>,
    /// Rung when frames are added to an empty outbox, and when the session closes.
    ready: Notify,
    closed: AtomicBool,
}

/// A live connection.
pub(crate) struct Session {
    addr: SocketAddr,
    seqid: AtomicI32,
    outbox: Arc<Outbox>,
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
        let outbox = Arc::new(Outbox::default());
        let pending: Pending = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));

        let writer_outbox = Arc::clone(&outbox);
        let writer_alive = Arc::clone(&alive);
        tokio::spawn(async move {
            let mut out = Vec::with_capacity(64 << 10);
            while !writer_outbox.closed.load(Ordering::Acquire) {
                writer_outbox.ready.notified().await;
                // Let the other callers that are ready to run add their frames first: one write
                // then carries the whole burst.
                tokio::task::yield_now().await;
                out.clear();
                std::mem::swap(&mut *writer_outbox.frames.lock().expect("outbox"), &mut out);
                if !out.is_empty() && writer.write_all(&out).await.is_err() {
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
            outbox,
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
        let (done, wait) = oneshot::channel();
        self.pending.lock().expect("pending").insert(seqid, done);
        if let Err(e) = self.queue(&meta, name, seqid, args) {
            self.pending.lock().expect("pending").remove(&seqid);
            return Err(e);
        }
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ClientError::Disconnected(format!(
                "{} is closed",
                self.addr
            ))),
            Err(_) => {
                self.pending.lock().expect("pending").remove(&seqid);
                Err(ClientError::Timeout)
            }
        }
    }

    /// Appends one request to the outbox, waking the writer if it was empty.
    fn queue<A: Field>(
        &self,
        meta: &RequestMeta,
        name: &str,
        seqid: i32,
        args: &A,
    ) -> Result<(), ClientError> {
        if !self.is_alive() {
            return Err(ClientError::Disconnected(format!(
                "{} is closed",
                self.addr
            )));
        }
        let first = {
            let mut frames = self.outbox.frames.lock().expect("outbox");
            let first = frames.is_empty();
            frame::append_request_v0(&mut frames, meta, name, seqid, args)?;
            first
        };
        if first {
            self.outbox.ready.notify_one();
        }
        Ok(())
    }

    /// Sends a one-way request (no answer).
    pub(crate) async fn send_oneway<A: Field>(
        &self,
        meta: RequestMeta,
        name: &str,
        args: &A,
    ) -> Result<(), ClientError> {
        let seqid = self.seqid.fetch_add(1, Ordering::Relaxed);
        self.queue(&meta, name, seqid, args)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.outbox.closed.store(true, Ordering::Release);
        self.outbox.ready.notify_one();
    }
}
