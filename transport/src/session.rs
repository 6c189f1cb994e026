//! One TCP connection to one server, shared by every request to it: callers append their frames
//! to an outbox that a writer task sends in few writes, a reader task matches answers to
//! requests by sequence id, and a sweeper fails the calls whose deadline passed (one timer per
//! connection instead of one per call: a per-call timer cost 10 % of read throughput).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{Notify, oneshot};

use crate::CallError;
use crate::outbox::Outbox;
use pegasus_protocol::codec::Field;
use pegasus_protocol::frame::{self, RequestMeta, Response};

/// Largest response accepted.
pub(crate) const MAX_RESPONSE: usize = 64 << 20;

/// How often the sweeper looks for calls past their deadline while some are pending: the
/// precision of call timeouts.
const SWEEP: Duration = Duration::from_millis(5);

type Waiter = oneshot::Sender<Result<Response, CallError>>;

/// Calls waiting for their answer, by sequence id, with their deadlines and whether their
/// frame was handed to the socket.
#[derive(Default)]
struct Pending {
    calls: Mutex<Calls>,
    /// Rung when a call is added to an empty map, and when the session closes.
    added: Notify,
}

#[derive(Default)]
struct Calls {
    map: HashMap<i32, Call>,
    /// The connection broke: nothing more is written, and new calls are not sent.
    broken: bool,
}

struct Call {
    waiter: Waiter,
    deadline: Instant,
    /// Its frame was taken by the writer: it may have reached the server.
    sent: bool,
}

impl Pending {
    /// Adds a call; its waiter back when the connection broke already (the call is not sent).
    fn insert(&self, seqid: i32, waiter: Waiter, deadline: Instant) -> Result<(), Waiter> {
        let first = {
            let mut calls = self.calls.lock().expect("pending");
            if calls.broken {
                return Err(waiter);
            }
            calls.map.insert(
                seqid,
                Call {
                    waiter,
                    deadline,
                    sent: false,
                },
            );
            calls.map.len() == 1
        };
        if first {
            self.added.notify_one();
        }
        Ok(())
    }

    fn remove(&self, seqid: i32) -> Option<Waiter> {
        let mut calls = self.calls.lock().expect("pending");
        calls.map.remove(&seqid).map(|c| c.waiter)
    }

    /// The writer is about to write the frames of `seqids`: they count as sent from now on.
    /// `false` when the connection broke: the writer must write nothing more (those calls were
    /// answered "not sent").
    fn mark_sent(&self, seqids: &[i32]) -> bool {
        let mut calls = self.calls.lock().expect("pending");
        if calls.broken {
            return false;
        }
        for id in seqids {
            if let Some(c) = calls.map.get_mut(id) {
                c.sent = true;
            }
        }
        true
    }

    /// Fails the calls whose deadline is past; false once none are pending.
    fn sweep(&self, now: Instant) -> bool {
        let (expired, more): (Vec<Waiter>, bool) = {
            let mut calls = self.calls.lock().expect("pending");
            let expired = calls
                .map
                .extract_if(|_, c| c.deadline <= now)
                .map(|(_, c)| c.waiter)
                .collect();
            (expired, !calls.map.is_empty())
        };
        for waiter in expired {
            let _ = waiter.send(Err(CallError::Timeout));
        }
        more
    }

    /// The connection broke: fails every pending call, `Disconnected` (it may have been
    /// applied) when its frame was handed to the socket, `NotSent` when it never was.
    fn fail_all(&self, reason: &str) {
        let calls: Vec<Call> = {
            let mut calls = self.calls.lock().expect("pending");
            calls.broken = true;
            calls.map.drain().map(|(_, c)| c).collect()
        };
        for c in calls {
            let error = if c.sent {
                CallError::Disconnected(reason.to_owned())
            } else {
                CallError::NotSent(reason.to_owned())
            };
            let _ = c.waiter.send(Err(error));
        }
    }
}

/// A live connection.
pub(crate) struct Session {
    addr: SocketAddr,
    seqid: AtomicI32,
    /// Frames not written yet. Each has a caller waiting for its answer (or is a one-way
    /// request whose sender returned), so it holds at most one frame per concurrent caller.
    outbox: Arc<Outbox>,
    pending: Arc<Pending>,
    alive: Arc<AtomicBool>,
    /// Set when the session is dropped: its writer and sweeper stop.
    closed: Arc<AtomicBool>,
}

impl Session {
    /// Connects to `addr` and starts the reader and writer tasks.
    pub(crate) async fn connect(
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Arc<Session>, CallError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| CallError::Timeout)?
            .map_err(|e| CallError::Connect(addr, e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| CallError::Connect(addr, e))?;
        let (mut reader, mut writer) = stream.into_split();
        let outbox = Arc::new(Outbox::default());
        let pending = Arc::new(Pending::default());
        let alive = Arc::new(AtomicBool::new(true));
        let closed = Arc::new(AtomicBool::new(false));

        let (writer_outbox, writer_closed) = (Arc::clone(&outbox), Arc::clone(&closed));
        let (writer_alive, writer_pending) = (Arc::clone(&alive), Arc::clone(&pending));
        tokio::spawn(async move {
            let mut out = Vec::with_capacity(64 << 10);
            let mut seqids = Vec::new();
            while !writer_closed.load(Ordering::Acquire) {
                writer_outbox.rung().await;
                // Let the other callers that are ready to run add their frames first: one write
                // then carries the whole burst.
                tokio::task::yield_now().await;
                if !writer_outbox.take_tagged(&mut out, &mut seqids) {
                    continue;
                }
                // Once the connection broke, what was not handed over is never written: its
                // callers were told "not sent", and may send it elsewhere.
                if !writer_pending.mark_sent(&seqids) {
                    break;
                }
                if let Err(e) = writer.write_all(&out).await {
                    writer_alive.store(false, Ordering::Release);
                    writer_pending.fail_all(&format!("writing to {addr}: {e}"));
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
                        if let Some(waiter) = reader_pending.remove(response.message.seqid) {
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
            reader_pending.fail_all(&reason);
        });

        let (sweeper_pending, sweeper_closed) = (Arc::clone(&pending), Arc::clone(&closed));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !sweeper_closed.load(Ordering::Acquire) {
                if sweeper_pending.sweep(Instant::now()) {
                    tick.tick().await;
                } else {
                    // Nothing pending: no ticking until a call comes.
                    sweeper_pending.added.notified().await;
                    tick.reset();
                }
            }
        });

        Ok(Arc::new(Session {
            addr,
            seqid: AtomicI32::new(1),
            outbox,
            pending,
            alive,
            closed,
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
    ) -> Result<Response, CallError> {
        let seqid = self.seqid.fetch_add(1, Ordering::Relaxed);
        let (done, wait) = oneshot::channel();
        let now = Instant::now();
        // A timeout too large to add is as good as none.
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
        if self.pending.insert(seqid, done, deadline).is_err() {
            return Err(CallError::NotSent(format!("{} is closed", self.addr)));
        }
        if let Err(e) = self.queue(&meta, name, seqid, args) {
            self.pending.remove(seqid);
            return Err(e);
        }
        // The sweeper answers `Timeout` past the deadline; a caller that stops waiting leaves
        // its entry to the sweeper too.
        wait.await
            .map_err(|_| CallError::Disconnected(format!("{} is closed", self.addr)))?
    }

    /// Appends one request to the outbox, waking the writer if it was empty.
    fn queue<A: Field>(
        &self,
        meta: &RequestMeta,
        name: &str,
        seqid: i32,
        args: &A,
    ) -> Result<(), CallError> {
        if !self.is_alive() {
            // Nothing was written: safe to send again elsewhere, whatever the request.
            return Err(CallError::NotSent(format!("{} is closed", self.addr)));
        }
        self.outbox.append_tagged(seqid, |frames| {
            frame::append_request_v0(frames, meta, name, seqid, args)
        })?;
        Ok(())
    }

    /// Sends a one-way request (no answer).
    pub(crate) async fn send_oneway<A: Field>(
        &self,
        meta: RequestMeta,
        name: &str,
        args: &A,
    ) -> Result<(), CallError> {
        let seqid = self.seqid.fetch_add(1, Ordering::Relaxed);
        self.queue(&meta, name, seqid, args)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
        self.outbox.ring();
        self.pending.added.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression guard: a call whose frame never reached the socket was failed
    /// `Disconnected` ("may have been applied") when the connection broke, so a caller could
    /// not send it elsewhere safely.
    #[test]
    fn a_broken_connection_fails_unsent_calls_not_sent_and_sent_ones_disconnected() {
        let pending = Pending::default();
        let far = Instant::now() + Duration::from_secs(60);
        let (sent, sent_answer) = oneshot::channel();
        let (queued, queued_answer) = oneshot::channel();
        assert!(pending.insert(1, sent, far).is_ok());
        assert!(pending.insert(2, queued, far).is_ok());
        assert!(pending.mark_sent(&[1]));
        pending.fail_all("gone");
        assert!(matches!(
            sent_answer.blocking_recv().unwrap(),
            Err(CallError::Disconnected(_))
        ));
        assert!(matches!(
            queued_answer.blocking_recv().unwrap(),
            Err(CallError::NotSent(_))
        ));
        // Nothing more is written, and a new call is not sent.
        assert!(!pending.mark_sent(&[2]));
        let (late, _) = oneshot::channel();
        assert!(pending.insert(3, late, far).is_err());
    }

    #[tokio::test]
    async fn a_call_without_an_answer_times_out_at_its_deadline_and_is_forgotten() {
        // A server that reads and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink).await;
        });
        let session = Session::connect(addr, Duration::from_secs(1))
            .await
            .expect("connect");
        let began = Instant::now();
        let (short, long) = tokio::join!(
            session.call(
                RequestMeta::default(),
                "X",
                &1i32,
                Duration::from_millis(100)
            ),
            session.call(
                RequestMeta::default(),
                "X",
                &2i32,
                Duration::from_millis(300)
            ),
        );
        assert!(matches!(short, Err(CallError::Timeout)), "{short:?}");
        assert!(matches!(long, Err(CallError::Timeout)), "{long:?}");
        let waited = began.elapsed();
        assert!(
            waited >= Duration::from_millis(300)
                && waited < Duration::from_millis(300) + 20 * SWEEP,
            "{waited:?}"
        );
        assert!(
            session
                .pending
                .calls
                .lock()
                .expect("pending")
                .map
                .is_empty()
        );
        assert!(session.is_alive());
    }
}
