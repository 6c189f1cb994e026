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
use std::time::{Duration, Instant};

use bytes::BytesMut;
use pegasus_protocol::codec::Field;
use pegasus_protocol::codes::{ErrorCode, rpc};
use pegasus_protocol::frame::{self, Request};
use pegasus_transport::outbox::Outbox;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc};
use tracing::{debug, info, warn};

use crate::http::{HttpRequest, HttpResponse};
use crate::metrics::OpStats;
use crate::running::RunningConfig;

/// Bounds of one listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Open connections at most; more wait in the accept queue (`[network] max_connections`).
    pub max_connections: usize,
    /// Open connections from one IP address at most, 0 for no bound; one more is closed at once
    /// (`[network] conn_threshold_per_ip`, as in Pegasus).
    pub max_connections_per_ip: usize,
    /// Requests in flight per connection; more wait unread (`[network] max_in_flight_per_connection`).
    pub max_in_flight: usize,
    /// Largest request body; a larger frame closes the connection (`[network] max_frame_bytes`).
    pub max_body: usize,
    /// A connection with nothing in flight and no byte from its client for this long is closed
    /// (`[network] conn_idle_timeout_seconds`; 0: never).
    pub idle_timeout: Duration,
    /// A request (or HTTP head) begun and not finished within this long closes its connection:
    /// a client that trickles bytes holds no connection (`[network] request_read_timeout_seconds`).
    pub read_timeout: Duration,
    /// Answers not taken by the client within this long close its connection: a client that
    /// stops reading holds no connection, nor the server's shutdown
    /// (`[network] response_write_timeout_seconds`).
    pub write_timeout: Duration,
    /// Connections the kernel completes before we accept them (`[network] listen_backlog`,
    /// capped by `net.core.somaxconn`): a burst of connects beyond it waits a second each (the
    /// client's SYN is dropped and sent again).
    pub listen_backlog: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            max_connections_per_ip: 0,
            max_in_flight: 1024,
            max_body: 64 << 20,
            idle_timeout: Duration::from_secs(600),
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(60),
            listen_backlog: 1024,
        }
    }
}

impl Limits {
    /// When a connection times out: `read_timeout` after the unfinished request it holds began,
    /// else `idle_timeout` after its last activity; `None`: never.
    fn deadline(&self, last: Instant, partial_since: Option<Instant>) -> Option<Instant> {
        if let Some(began) = partial_since {
            Some(began + self.read_timeout)
        } else if self.idle_timeout.is_zero() {
            None
        } else {
            Some(last + self.idle_timeout)
        }
    }
}

/// Open connections per client IP address, for `max_connections_per_ip`.
#[derive(Default)]
struct PerIp(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

impl PerIp {
    /// Counts one more from `ip`, unless it has `max` already (0: no bound).
    fn enter(&self, ip: std::net::IpAddr, max: usize) -> bool {
        let mut map = self.0.lock().expect("per-ip");
        let n = map.entry(ip).or_insert(0);
        if max > 0 && *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn leave(&self, ip: std::net::IpAddr) {
        let mut map = self.0.lock().expect("per-ip");
        if let Some(n) = map.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
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
    /// When its bytes were read.
    received: Instant,
    /// Counted and timed (from `received`) when it goes, if the service asked.
    stats: Option<OpStats>,
    /// Who sent it.
    peer: SocketAddr,
}

impl Reply {
    /// Counts this request in `stats`, and its latency (from when it was read to its answer)
    /// when it is answered or dropped.
    pub fn measure(&mut self, stats: &OpStats) {
        self.stats = Some(stats.clone());
    }

    /// Sends the answer: `ErrorCode::Ok` with a result, or an error with none.
    pub fn send<T: Field>(self, code: ErrorCode, result: Option<&T>) {
        let ack = rpc::ack(&self.name);
        let mut size = 0;
        let encoded = self.answers.outbox.append(|frames| {
            let before = frames.len();
            let r = frame::encode_response(frames, code.name(), &ack, self.seqid, result);
            size = frames.len().saturating_sub(before);
            r
        });
        if let Some(bytes) = self.stats.as_ref().and_then(|s| s.answered_bytes.as_ref()) {
            bytes.inc_by(size as u64);
        }
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

    /// The address the request came from.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(stats) = &self.stats {
            stats.done(self.received);
        }
        self.answers.pending.fetch_sub(1, Ordering::AcqRel);
        self.answers.outbox.ring();
    }
}

/// What serves requests. `handle` must not block: long work goes to tasks that answer later
/// through the [`Reply`]s.
pub trait Service: Send + Sync + 'static {
    /// Handles the requests read from one connection in one go.
    fn handle(self: &Arc<Self>, batch: Vec<(Request, Reply)>);

    /// Answers an HTTP request on the same port (Pegasus serves HTTP beside RPC); `/health`
    /// is answered before it, from [`Service::health`].
    fn http(self: &Arc<Self>, req: HttpRequest) -> impl Future<Output = HttpResponse> + Send {
        std::future::ready(HttpResponse::not_found(&req.path))
    }

    /// `GET /health`: `Err` with what is wrong makes it a 503 (container healthchecks and
    /// `pegasus_server healthcheck` then fail).
    fn health(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Largest HTTP request head read.
const MAX_HTTP_HEAD: usize = 8192;

/// Serves one HTTP request whose first bytes are in `buf`, then the connection closes.
async fn http<S: Service>(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    writer: tokio::net::tcp::OwnedWriteHalf,
    mut buf: BytesMut,
    service: &Arc<S>,
    limits: Limits,
    config: Option<&RunningConfig>,
) {
    let deadline = tokio::time::Instant::now() + limits.read_timeout;
    let mut refused = None;
    loop {
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n");
        if end.is_some_and(|e| e + 4 <= MAX_HTTP_HEAD) {
            break;
        }
        if end.is_some() || buf.len() > MAX_HTTP_HEAD {
            refused = Some(HttpResponse::error(431, "request head too large\n"));
            break;
        }
        match tokio::time::timeout_at(deadline, reader.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => return,
            Err(_) => {
                refused = Some(HttpResponse::error(408, "request head not sent in time\n"));
                break;
            }
        }
    }
    if let Some(response) = refused {
        return answer_and_close(reader, writer, &response, limits).await;
    }
    let response = match HttpRequest::parse(&String::from_utf8_lossy(&buf)) {
        Err(e) => HttpResponse::error(400, format!("failed to parse request: {e}")),
        Ok(req) if req.path == "/health" => match service.health() {
            Ok(()) => HttpResponse::ok(crate::http::content::TEXT, "ok\n".to_owned()),
            Err(why) => HttpResponse::error(503, format!("{why}\n")),
        },
        Ok(req) => match config.and_then(|c| c.answer(&req)) {
            Some(response) => response,
            None => service.http(req).await,
        },
    };
    answer_and_close(reader, writer, &response, limits).await;
}

/// Writes `response`, then closes as HTTP servers do (a lingering close): our side first, then
/// what the client still sends is read and dropped for a moment (at most 1 MiB), so that a
/// client still sending (a head past the bound, a body) reads its answer instead of a reset.
async fn answer_and_close(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    response: &HttpResponse,
    limits: Limits,
) {
    let sent = tokio::time::timeout(limits.write_timeout, async {
        writer.write_all(&response.to_bytes()).await?;
        writer.shutdown().await
    });
    if !matches!(sent.await, Ok(Ok(()))) {
        return;
    }
    let mut sink = [0u8; 16 << 10];
    let mut left = 1usize << 20;
    let until = tokio::time::Instant::now() + Duration::from_secs(1);
    while left > 0 {
        match tokio::time::timeout_at(until, reader.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => return,
        }
    }
}

/// A listener on `addr` with `backlog` (`SO_REUSEADDR`, as `std` sets it: a port held only by
/// closed connections waiting out TIME-WAIT can be taken again; one still listened on cannot).
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Serves `service` on `listener` until `shutdown` completes, then waits for every connection
/// to finish. With `config`, `/config` and `/configs` show it (every role's port has them).
pub async fn serve<S: Service>(
    listener: TcpListener,
    service: Arc<S>,
    limits: Limits,
    config: Option<Arc<RunningConfig>>,
    shutdown: impl Future,
) {
    let (notify, _) = broadcast::channel::<()>(1);
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = Arc::new(PerIp::default());
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
        if !per_ip.enter(peer.ip(), limits.max_connections_per_ip) {
            debug!(%peer, "closing connection: conn_threshold_per_ip reached");
            continue;
        }
        let service = Arc::clone(&service);
        let per_ip = Arc::clone(&per_ip);
        let mut stop = notify.subscribe();
        let done = done_tx.clone();
        let config = config.clone();
        tokio::spawn(async move {
            connection(stream, peer, service, limits, config.as_deref(), &mut stop).await;
            per_ip.leave(peer.ip());
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
    config: Option<&RunningConfig>,
    stop: &mut broadcast::Receiver<()>,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, writer) = stream.into_split();
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut last_read = Instant::now();
    // The first bytes decide the protocol: HTTP (`GET `, `POST`) or THFT frames.
    while buf.len() < 4 {
        let deadline = limits.deadline(last_read, (!buf.is_empty()).then_some(last_read));
        tokio::select! {
            n = reader.read_buf(&mut buf) => if matches!(n, Ok(0) | Err(_)) { return },
            _ = sleep_until(deadline) => {
                debug!(%peer, "closing connection: nothing read in time");
                return;
            }
            _ = stop.recv() => return,
        }
        last_read = Instant::now();
    }
    if &buf[..4] == b"GET " || &buf[..4] == b"POST" {
        return http(reader, writer, buf, &service, limits, config).await;
    }
    let mut writer = writer;
    let answers = Arc::new(Answers::default());
    let outbox = &answers.outbox;
    // Frames being written; swapped with the outbox's buffer, so both keep their capacity.
    let mut out = Vec::with_capacity(64 << 10);
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
    // When the unfinished request in `buf` began (its first byte came).
    let mut partial_since = (!buf.is_empty()).then_some(last_read);
    // Whether the server is stopping (not the client closing).
    let mut stopping = false;
    'read: loop {
        let mut batch = Vec::new();
        loop {
            match frame::decode_request(&mut buf, limits.max_body) {
                Ok(Some(request)) => {
                    // Whatever follows is a new request.
                    partial_since = (!buf.is_empty()).then(Instant::now);
                    let permit = match Arc::clone(&in_flight).try_acquire_owned() {
                        Ok(p) => p,
                        Err(_) => {
                            // Hand over what we have, and write what is answered, before
                            // waiting for answers to drain.
                            if !batch.is_empty() {
                                service.handle(std::mem::take(&mut batch));
                            }
                            if !flush(outbox, &mut out, &mut writer, limits.write_timeout).await {
                                break 'read;
                            }
                            let permit = tokio::select! {
                                p = Arc::clone(&in_flight).acquire_owned() => match p {
                                    Ok(p) => p,
                                    Err(_) => break 'read,
                                },
                                _ = stop.recv() => {
                                    stopping = true;
                                    break 'read;
                                }
                            };
                            // Not reading meanwhile was our doing, not the client's.
                            last_read = Instant::now();
                            partial_since = partial_since.map(|_| last_read);
                            permit
                        }
                    };
                    answers.pending.fetch_add(1, Ordering::AcqRel);
                    let reply = Reply {
                        answers: Arc::clone(&answers),
                        seqid: request.message.seqid,
                        name: request.message.name.clone(),
                        _permit: permit,
                        received: last_read,
                        stats: None,
                        peer,
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
        if !flush(outbox, &mut out, &mut writer, limits.write_timeout).await {
            break;
        }
        if buf.is_empty() {
            partial_since = None;
        }
        // Idle (nothing in flight) or trickling: a deadline. Waiting for answers: none, and the
        // clocks start again once the last answer is out.
        let waiting = answers.pending.load(Ordering::Acquire) > 0;
        if waiting {
            last_read = Instant::now();
            partial_since = partial_since.map(|_| last_read);
        }
        let deadline = (!waiting)
            .then(|| limits.deadline(last_read, partial_since))
            .flatten();
        tokio::select! {
            n = reader.read_buf(&mut buf) => match n {
                Ok(0) => break,
                Ok(_) => {
                    last_read = Instant::now();
                    partial_since.get_or_insert(last_read);
                }
                Err(e) => {
                    debug!(%peer, "read: {e}");
                    break;
                }
            },
            _ = outbox.rung() => {}
            _ = sleep_until(deadline) => {
                debug!(%peer, partial = buf.len(), "closing connection: idle or trickling");
                break;
            }
            _ = stop.recv() => {
                stopping = true;
                break;
            }
        }
    }
    // Answers still being computed are written as they come, until the last reply is gone; on
    // a stop, for a moment only (a long answer — a checkpoint chunk to a learner — must not hold
    // the stop until systemd kills the server: its client asks again elsewhere).
    let drain = async {
        while answers.pending.load(Ordering::Acquire) > 0 {
            if !flush(outbox, &mut out, &mut writer, limits.write_timeout).await {
                return false;
            }
            outbox.rung().await;
        }
        true
    };
    let drained = if stopping {
        tokio::time::timeout(STOP_GRACE, drain)
            .await
            .unwrap_or_else(|_| {
                debug!(%peer, "closing connection at stop with answers unsent");
                false
            })
    } else {
        drain.await
    };
    if drained {
        flush(outbox, &mut out, &mut writer, limits.write_timeout).await;
    }
}

/// How long a connection may still write answers once the server stops.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Sleeps until `deadline`, or forever.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Writes every queued answer in one write; false when the connection is broken, or the client
/// has not taken them within `timeout`.
async fn flush(
    outbox: &Outbox,
    out: &mut Vec<u8>,
    writer: &mut OwnedWriteHalf,
    timeout: Duration,
) -> bool {
    if !outbox.take(out) {
        return true;
    }
    matches!(
        tokio::time::timeout(timeout, writer.write_all(out)).await,
        Ok(Ok(()))
    )
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
            None,
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

    async fn start(limits: Limits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(
            listener,
            Arc::new(Echo { later: false }),
            limits,
            None,
            async move {
                let _ = stopped.await;
            },
        ));
        (addr, stop)
    }

    /// Whether the server closed `stream` within `within`.
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(within, stream.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    async fn echo_once(stream: &mut TcpStream, seqid: i32) -> bool {
        let frame =
            encode_request_v0(&RequestMeta::default(), "RPC_ECHO", seqid, &seqid).expect("encode");
        if stream.write_all(&frame).await.is_err() {
            return false;
        }
        let mut buf = BytesMut::new();
        loop {
            if let Ok(Some(r)) = decode_response(&mut buf, 1 << 20) {
                return r.message.seqid == seqid;
            }
            match tokio::time::timeout(Duration::from_secs(5), stream.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return false,
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_and_trickling_connections_are_closed_and_busy_ones_are_not() {
        let (addr, _stop) = start(Limits {
            idle_timeout: Duration::from_millis(300),
            read_timeout: Duration::from_millis(300),
            ..Limits::default()
        })
        .await;
        // Connected and silent.
        let mut idle = TcpStream::connect(addr).await.expect("connect");
        assert!(closed_within(&mut idle, Duration::from_secs(3)).await);
        // Half a frame, then nothing (slowloris).
        let mut trickle = TcpStream::connect(addr).await.expect("connect");
        let frame = encode_request_v0(&RequestMeta::default(), "RPC_ECHO", 1, &1).expect("encode");
        trickle
            .write_all(&frame[..frame.len() / 2])
            .await
            .expect("write");
        assert!(closed_within(&mut trickle, Duration::from_secs(3)).await);
        // A frame trickled a byte at a time, each within the timeout: the request as a whole
        // must still arrive in time.
        let mut slow = TcpStream::connect(addr).await.expect("connect");
        let started = Instant::now();
        let mut closed = false;
        for byte in frame.iter().take(40) {
            if slow.write_all(&[*byte]).await.is_err() {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(closed || closed_within(&mut slow, Duration::from_secs(1)).await);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        // An HTTP head that never ends.
        let mut http = TcpStream::connect(addr).await.expect("connect");
        http.write_all(b"GET /health HTTP/1.1\r\n")
            .await
            .expect("write");
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(3), http.read_to_end(&mut answer));
        assert!(matches!(read.await, Ok(Ok(_))), "closed in time");
        assert!(
            answer.starts_with(b"HTTP/1.1 408 "),
            "{}",
            String::from_utf8_lossy(&answer)
        );
        // A head past the bound is answered 431, not read on.
        let mut long = TcpStream::connect(addr).await.expect("connect");
        let mut head = b"GET /health HTTP/1.1\r\nX-Junk: ".to_vec();
        head.resize(MAX_HTTP_HEAD + 100, b'a');
        long.write_all(&head).await.expect("write");
        let mut answer = Vec::new();
        long.read_to_end(&mut answer).await.expect("read");
        assert!(answer.starts_with(b"HTTP/1.1 431 "));
        // A client that keeps talking keeps its connection.
        let mut busy = TcpStream::connect(addr).await.expect("connect");
        for seqid in 0..8 {
            assert!(echo_once(&mut busy, seqid).await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_from_one_address_are_bounded_and_others_still_serve() {
        let (addr, _stop) = start(Limits {
            max_connections_per_ip: 2,
            ..Limits::default()
        })
        .await;
        let mut first = TcpStream::connect(addr).await.expect("connect");
        let mut second = TcpStream::connect(addr).await.expect("connect");
        assert!(echo_once(&mut first, 1).await && echo_once(&mut second, 2).await);
        let mut third = TcpStream::connect(addr).await.expect("connect");
        assert!(closed_within(&mut third, Duration::from_secs(3)).await);
        assert!(echo_once(&mut first, 3).await, "the others keep serving");
        drop(second);
        // Its place is free again once the server sees it gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut again = TcpStream::connect(addr).await.expect("connect");
            if echo_once(&mut again, 4).await {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the closed connection's place stays taken"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
