//! The RPC listener: accepts connections, decodes THFT frames with the client's protocol code,
//! hands requests to a [`Service`], and writes the answers back, batched into few writes.
//!
//! Everything is bounded: connections (a semaphore), the body of one request
//! ([`Limits::max_body`]), and the requests in flight on one connection (a semaphore whose
//! permits travel with each [`Reply`]: reading stops while the server is behind). A bad frame
//! closes its connection with one log line and nothing else.
//!
//! Shutdown follows mini-redis: a broadcast tells every connection to stop, and [`serve`]
//! returns once every connection task has dropped its completion sender.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use pegasus_protocol::codec::Field;
use pegasus_protocol::codes::{ErrorCode, rpc};
use pegasus_protocol::frame::{self, Request};
use pegasus_protocol::outbox::Outbox;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc};
use tracing::{debug, info, warn};

/// Bounds of one listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Open connections at most; more wait in the accept queue.
    pub max_connections: usize,
    /// Requests in flight per connection.
    pub max_in_flight: usize,
    /// Largest request body.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            max_in_flight: 1024,
            max_body: 64 << 20,
        }
    }
}

/// The answers of one connection: queued frames, and how many replies are still to come.
#[derive(Default)]
struct Answers {
    /// Appended by [`Reply::send`] from any thread, written by the connection's task; rung by
    /// every [`Reply`] as it is dropped (answered or not).
    outbox: Outbox,
    /// Replies not dropped yet.
    pending: AtomicUsize,
}

/// The answer slot of one request. Dropping it without answering answers nothing (one-way
/// requests); either way its in-flight permit is released.
pub struct Reply {
    answers: Arc<Answers>,
    seqid: i32,
    name: String,
    _permit: OwnedSemaphorePermit,
}

impl Reply {
    /// Sends the answer: `ErrorCode::Ok` with a result, or an error with none.
    pub fn send<T: Field>(self, code: ErrorCode, result: Option<&T>) {
        let ack = rpc::ack(&self.name);
        let encoded = self
            .answers
            .outbox
            .append(|frames| frame::encode_response(frames, code.name(), &ack, self.seqid, result));
        if let Err(e) = encoded {
            warn!(rpc = %self.name, "cannot encode answer: {e}");
        }
    }

    /// Sends an error answer.
    pub fn error(self, code: ErrorCode) {
        self.send::<i32>(code, None);
    }

    /// The RPC name of the request.
    pub fn rpc_name(&self) -> &str {
        &self.name
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        self.answers.pending.fetch_sub(1, Ordering::AcqRel);
        self.answers.outbox.ring();
    }
}

/// What serves requests. `handle` must not block: long work goes to tasks that answer later
/// through the [`Reply`]s.
pub trait Service: Send + Sync + 'static {
    /// Handles the requests read from one connection in one go.
    fn handle(self: &Arc<Self>, batch: Vec<(Request, Reply)>);

    /// Answers an HTTP `GET path` on the same port (Pegasus serves HTTP beside RPC); `None` is
    /// 404.
    fn http(&self, _path: &str) -> Option<String> {
        None
    }
}

/// Largest HTTP request head read.
const MAX_HTTP_HEAD: usize = 8192;

/// Serves one HTTP request whose first bytes are in `buf`, then the connection closes.
async fn http<S: Service>(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    mut buf: BytesMut,
    service: &S,
) {
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > MAX_HTTP_HEAD || matches!(reader.read_buf(&mut buf).await, Ok(0) | Err(_)) {
            return;
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let answer = if path == "/health" {
        Some("ok\n".to_owned())
    } else {
        service.http(&path)
    };
    let (status, body) = match answer {
        Some(body) => ("200 OK", body),
        None => ("404 Not Found", format!("no page {path}\n")),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = writer.write_all(response.as_bytes()).await;
}

/// Serves `service` on `listener` until `shutdown` completes, then waits for every connection
/// to finish.
pub async fn serve<S: Service>(
    listener: TcpListener,
    service: Arc<S>,
    limits: Limits,
    shutdown: impl Future,
) {
    let (notify, _) = broadcast::channel::<()>(1);
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let local = listener.local_addr().ok();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&connections).acquire_owned() => p.expect("semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!("accept on {local:?}: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = Arc::clone(&service);
        let mut stop = notify.subscribe();
        let done = done_tx.clone();
        tokio::spawn(async move {
            connection(stream, peer, service, limits, &mut stop).await;
            drop(permit);
            drop(done);
        });
    }
    info!("listener {local:?} stopping");
    drop(notify);
    drop(done_tx);
    let _ = done_rx.recv().await;
}

async fn connection<S: Service>(
    stream: TcpStream,
    peer: SocketAddr,
    service: Arc<S>,
    limits: Limits,
    stop: &mut broadcast::Receiver<()>,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, writer) = stream.into_split();
    let mut buf = BytesMut::with_capacity(64 << 10);
    // The first bytes decide the protocol: HTTP (`GET `, `POST`) or THFT frames.
    while buf.len() < 4 {
        tokio::select! {
            n = reader.read_buf(&mut buf) => if matches!(n, Ok(0) | Err(_)) { return },
            _ = stop.recv() => return,
        }
    }
    if &buf[..4] == b"GET " || &buf[..4] == b"POST" {
        return http(reader, writer, buf, &*service).await;
    }
    let mut writer = writer;
    let answers = Arc::new(Answers::default());
    let outbox = &answers.outbox;
    // Frames being written; swapped with the outbox's buffer, so both keep their capacity.
    let mut out = Vec::with_capacity(64 << 10);
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
    'read: loop {
        let mut batch = Vec::new();
        loop {
            match frame::decode_request(&mut buf, limits.max_body) {
                Ok(Some(request)) => {
                    let permit = match Arc::clone(&in_flight).try_acquire_owned() {
                        Ok(p) => p,
                        Err(_) => {
                            // Hand over what we have, and write what is answered, before
                            // waiting for answers to drain.
                            if !batch.is_empty() {
                                service.handle(std::mem::take(&mut batch));
                            }
                            if !flush(outbox, &mut out, &mut writer).await {
                                break 'read;
                            }
                            tokio::select! {
                                p = Arc::clone(&in_flight).acquire_owned() => match p {
                                    Ok(p) => p,
                                    Err(_) => break 'read,
                                },
                                _ = stop.recv() => break 'read,
                            }
                        }
                    };
                    answers.pending.fetch_add(1, Ordering::AcqRel);
                    let reply = Reply {
                        answers: Arc::clone(&answers),
                        seqid: request.message.seqid,
                        name: request.message.name.clone(),
                        _permit: permit,
                    };
                    batch.push((request, reply));
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(%peer, "closing connection: {e}");
                    break 'read;
                }
            }
        }
        if !batch.is_empty() {
            // Answers known at once (memory reads) are in the outbox when this returns and
            // leave in the same write; later ones (disk reads, writes) ring `ready`.
            service.handle(batch);
        }
        if !flush(outbox, &mut out, &mut writer).await {
            break;
        }
        tokio::select! {
            n = reader.read_buf(&mut buf) => match n {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    debug!(%peer, "read: {e}");
                    break;
                }
            },
            _ = outbox.rung() => {}
            _ = stop.recv() => break,
        }
    }
    // Answers still being computed are written as they come, until the last reply is gone.
    while answers.pending.load(Ordering::Acquire) > 0 {
        if !flush(outbox, &mut out, &mut writer).await {
            return;
        }
        outbox.rung().await;
    }
    flush(outbox, &mut out, &mut writer).await;
}

/// Writes every queued answer in one write; false when the connection is broken.
async fn flush(outbox: &Outbox, out: &mut Vec<u8>, writer: &mut OwnedWriteHalf) -> bool {
    if !outbox.take(out) {
        return true;
    }
    writer.write_all(out).await.is_ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pegasus_protocol::frame::{RequestMeta, decode_response, encode_request_v0};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Answers every request with its sequence id: at once, or later from another task.
    struct Echo {
        later: bool,
    }

    impl Service for Echo {
        fn handle(self: &Arc<Self>, batch: Vec<(Request, Reply)>) {
            for (request, reply) in batch {
                let seqid = request.message.seqid;
                if self.later {
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        reply.send(ErrorCode::Ok, Some(&seqid));
                    });
                } else {
                    reply.send(ErrorCode::Ok, Some(&seqid));
                }
            }
        }
    }

    /// Pipelines `n` requests in one write, closes the sending side, and returns the sequence
    /// ids of the answers in the order they came.
    async fn pipeline(later: bool, n: i32) -> Vec<i32> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let limits = Limits {
            max_in_flight: 16,
            ..Limits::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            Arc::new(Echo { later }),
            limits,
            async move {
                let _ = stopped.await;
            },
        ));
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut requests = Vec::new();
        for seqid in 0..n {
            let frame = encode_request_v0(&RequestMeta::default(), "RPC_ECHO", seqid, &seqid)
                .expect("encode");
            requests.extend_from_slice(&frame);
        }
        stream.write_all(&requests).await.expect("write");
        // Half-close: answers still being computed must be written all the same.
        stream.shutdown().await.expect("shutdown");
        let mut buf = BytesMut::new();
        let mut seqids = Vec::new();
        while stream.read_buf(&mut buf).await.expect("read") > 0 {
            while let Some(r) = decode_response(&mut buf, 1 << 20).expect("frame") {
                assert_eq!(r.error, "ERR_OK");
                assert_eq!(r.result::<i32>().expect("result"), r.message.seqid);
                seqids.push(r.message.seqid);
            }
        }
        let _ = stop.send(());
        server.await.expect("server");
        seqids
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pipelined_requests_beyond_the_in_flight_bound_are_all_answered_in_order() {
        assert_eq!(pipeline(false, 3000).await, (0..3000).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_computed_later_are_written_after_the_client_stops_sending() {
        let mut seqids = pipeline(true, 3000).await;
        seqids.sort_unstable();
        assert_eq!(seqids, (0..3000).collect::<Vec<_>>());
    }
}
