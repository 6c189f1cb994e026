//! A partition's driver: the one thread of control that changes the replica. It owns the
//! PacificA state machine (`pegasus-replication`), the private log and the store, and carries
//! out what the machine decides, in rounds:
//!
//! ```text
//! events waiting (at most a batch) ─► state machine ─► appends to the plog (one sync per round)
//!   ─► `Logged` back to the machine ─► applies to RocksDB ─► replies, prepares, acks
//! ```
//!
//! [`super::Partition`] is the handle the request paths hold: it sends [`Event`]s here and reads
//! the [`Status`] this publishes.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use pegasus_protocol::codes::ErrorCode;
use pegasus_protocol::types::{
    ErrorName, Gpid, LearnAddRequest, LearnDoneRequest, LearnRequest, PrepareRequest,
    PrepareResponse, RpcAddress, config_type,
};
use pegasus_replication::{Config, Input, Message, Output, Replica, Role};
use tracing::{error, info, warn};

use super::{
    BackupDone, Copy, CopyDone, Effects, PartitionError, PartitionOptions, Peers, PrepareDone,
    Slot, TICK, WriteDone, from_wire, wire_ops,
};
use crate::replica::plog::{self, Log, Mutation, sync_parent};
use crate::replica::pool::{Job, Mailbox};
use crate::replica::slog::Fate;
use crate::replica::storage::Storage;
use crate::replica::write::{View, WriteOp, WriteReply};

/// Events handled in one round at most.
const MAX_BATCH: usize = 512;

/// The most keys and values a learner gets from the log in one answer; past it, a checkpoint
/// (the answer must stay well within a client's 64 MiB frame).
const LOG_LEARNING_MAX_BYTES: usize = 16 << 20;

/// What the driver thread is told.
pub(super) enum Event {
    Write(WriteOp, WriteDone),
    /// A prepare from the primary `from` (this replica is, or may be, its secondary).
    Prepare(SocketAddrV4, PrepareRequest, PrepareDone),
    /// A secondary's answer to a prepare.
    Answer(SocketAddrV4, PrepareResponse),
    /// The meta's configuration, with the table's `max_replica_count`.
    Config(Config<SocketAddrV4>, i32),
    /// The meta raised the ballot at this replica's request (it may be primary there).
    Granted(u64),
    /// Primary: the meta proposes a learner.
    AddLearner(SocketAddrV4),
    /// A primary tells this replica to learn.
    Learn(SocketAddrV4, LearnAddRequest),
    /// A learner reports to this primary.
    LearnDone(SocketAddrV4, LearnDoneRequest),
    /// A learner asks this primary for a copy (`true`: from the log if it still holds what
    /// the learner lacks; `false`: a checkpoint, the log did not).
    Checkpoint(LearnRequest, CopyDone, bool),
    /// This learner's copy arrived (or could not be had).
    Learned(Copy),
    /// A checkpoint of the store into the folder, for a backup; the callback gets the decree
    /// it is at.
    Backup(PathBuf, BackupDone),
    Close,
}

/// What the driver publishes for the request paths, one atomic load each.
#[derive(Default)]
pub(super) struct Status {
    /// 0 inactive, 1 primary, 2 secondary.
    pub(super) role: std::sync::atomic::AtomicU8,
    pub(super) readable: AtomicBool,
    /// May lack what it acknowledged ([`crate::replica::boot`]): reported to the meta until it learned.
    pub(super) lossy: AtomicBool,
    pub(super) ballot: AtomicU64,
    /// The highest ballot a configuration handed to the driver names: until the driver has
    /// taken it up, a replica of an older ballot answers no read (the meta may have made
    /// another node primary already, and the lease that came with the news is current).
    pub(super) told: AtomicU64,
    pub(super) committed: AtomicU64,
}

/// A client's write with its answer, sent once its mutation commits.
type Answer = (WriteDone, Result<WriteReply, PartitionError>);

/// What one round of the driver must still carry out, in this order: appends (then their
/// `Logged`), applies, replies.
#[derive(Default)]
struct Round {
    appends: Vec<Mutation>,
    applies: Vec<Mutation>,
    replies: Vec<Answer>,
    /// A prepare refused with this (higher) ballot in this step.
    rejected: Option<u64>,
}

/// A partition's driver as the pool runs it.
pub(super) struct DriverJob {
    pub(super) driver: Driver,
    pub(super) rx: Receiver<Event>,
    /// When the state machine ticks next (set by the first round, by the pool's clock).
    pub(super) next_tick: Option<Instant>,
}

impl Job for DriverJob {
    fn round(&mut self) -> bool {
        self.driver.round(&self.rx, &mut self.next_tick)
    }

    fn finish(&mut self, crashed: bool) {
        if crashed {
            // Its state cannot be trusted: the replica is reported lost; what waits is answered.
            let _ = self
                .driver
                .failed
                .set("the replica's driver stopped on a bug".into());
        }
        self.driver.finish(&self.rx);
    }
}

/// The partition's driver: the state machine, the plog, the store; run by the pool.
pub(super) struct Driver {
    pub(super) gpid: Gpid,
    pub(super) me: SocketAddrV4,
    pub(super) dir: PathBuf,
    pub(super) storage: Slot,
    /// Learner: the ballot of the copy being fetched (0: none).
    pub(super) learning: u64,
    pub(super) plog: Box<dyn Log>,
    pub(super) replica: Replica<SocketAddrV4, Effects>,
    pub(super) peers: Option<Arc<dyn Peers>>,
    /// For answers to this partition's own prepares.
    pub(super) events: Mailbox<Event>,
    pub(super) queued: Arc<AtomicUsize>,
    pub(super) failed: Arc<OnceLock<String>>,
    pub(super) status: Arc<Status>,
    pub(super) options: PartitionOptions,
    /// Client writes by mutation id, with their answers (stamped with the decree on commit).
    pub(super) waiting: HashMap<u64, Vec<Answer>>,
    pub(super) next_id: u64,
    /// Secondary: prepares waiting for their log append, by (ballot, decree).
    pub(super) prepares: BTreeMap<(u64, u64), PrepareDone>,
    /// The table's copies, as the last configuration said.
    pub(super) max_replica_count: i32,
    /// The copy's folder holds the lossy mark ([`crate::replica::boot`]).
    pub(super) lossy: bool,
    /// With a shared log: batches appended there and not yet durable, each with the shared
    /// log's length once it is written and its mutations' `(ballot, decree)`, oldest first.
    pub(super) in_flight: std::collections::VecDeque<(u64, Vec<(u64, u64)>)>,
    /// Asks for a round: what the shared log calls once a batch of this replica is durable.
    pub(super) wake: crate::replica::slog::Wake,
}

impl Driver {
    /// One round: the events waiting (at most a batch), then the tick if it is due; `true`
    /// once closed.
    fn round(&mut self, rx: &Receiver<Event>, next_tick: &mut Option<Instant>) -> bool {
        let mut events = Vec::new();
        while events.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(e) => {
                    self.events.task().took();
                    events.push(e);
                }
                Err(_) => break,
            }
        }
        let mut round = Round::default();
        let mut writes = Vec::new();
        let mut closing = false;
        for event in events {
            match event {
                Event::Write(op, done) => {
                    self.queued.fetch_sub(1, Ordering::AcqRel);
                    writes.push((op, done));
                }
                Event::Prepare(from, request, done) => {
                    self.on_prepare(from, request, done, &mut round)
                }
                Event::Answer(from, r) => {
                    if ErrorCode::from_name(&r.err.0) == ErrorCode::Ok {
                        let message = if r.rejected {
                            Message::Reject {
                                ballot: r.ballot as u64,
                            }
                        } else {
                            Message::Ack {
                                ballot: r.ballot as u64,
                                decree: r.decree as u64,
                            }
                        };
                        self.step(Input::Receive { from, message }, &mut round);
                    }
                }
                Event::Config(config, max_replica_count) => {
                    self.on_config(config, max_replica_count, &mut round)
                }
                Event::Granted(ballot) => self.step(Input::Granted { ballot }, &mut round),
                Event::AddLearner(learner) => self.step(Input::AddLearner { learner }, &mut round),
                Event::Learn(from, r) => {
                    let wanted = self.options.replication.min_replicas;
                    self.replica
                        .set_min_replicas(wanted.min(r.max_replica_count.max(1) as usize));
                    self.max_replica_count = r.max_replica_count;
                    let message = Message::Learn {
                        ballot: r.ballot.max(0) as u64,
                        prepare_start: r.prepare_start.max(0) as u64,
                    };
                    self.step(Input::Receive { from, message }, &mut round);
                }
                Event::LearnDone(from, r) => {
                    let message = Message::LearnDone {
                        ballot: r.ballot.max(0) as u64,
                        logged_through: r.logged_through.max(0) as u64,
                    };
                    self.step(Input::Receive { from, message }, &mut round);
                }
                Event::Checkpoint(r, done, log) => {
                    // Everything committed is applied once the round is carried out.
                    self.carry_out(&mut round);
                    self.copy_for(r, done, log);
                }
                Event::Learned(copy) => self.install(copy, &mut round),
                Event::Backup(dir, done) => {
                    // Everything committed is applied once the round is carried out: the
                    // checkpoint is at the commit point.
                    self.carry_out(&mut round);
                    done(self.backup_checkpoint(&dir));
                }
                Event::Close => closing = true,
            }
        }
        if !writes.is_empty() {
            // New writes are computed on the store as every committed mutation left it.
            self.carry_out(&mut round);
            self.on_writes(writes, &mut round);
        }
        let now = self.options.pool.now();
        let due = *next_tick.get_or_insert(now + TICK);
        if now >= due {
            self.step(Input::Tick, &mut round);
            *next_tick = Some(now + TICK);
        }
        self.carry_out(&mut round);
        self.publish();
        // Writes waiting for their commit keep the primary busy anyway (a prepare in flight);
        // batches in the shared log wake it when durable, and are not left to a tick.
        self.events.task().set_idle(self.replica.idle());
        closing
    }

    /// After the last round: whatever still waits gets an answer.
    fn finish(&mut self, rx: &Receiver<Event>) {
        for (_, answers) in self.waiting.drain() {
            for (done, _) in answers {
                done(Err(PartitionError::Closed));
            }
        }
        for (_, done) in std::mem::take(&mut self.prepares) {
            done(None);
        }
        while let Ok(event) = rx.try_recv() {
            self.events.task().took();
            match event {
                Event::Write(_, done) => done(Err(PartitionError::Closed)),
                Event::Prepare(_, _, done) => done(None),
                Event::Checkpoint(_, done, _) => done(Err("closing".into())),
                Event::Backup(_, done) => done(Err("closing".into())),
                _ => {}
            }
        }
        self.status.readable.store(false, Ordering::Release);
        self.status.role.store(0, Ordering::Release);
        if self.options.slog.is_some() {
            // What the shared log holds of it may go with its next file.
            if let Err(e) = self.plog.sync_all() {
                warn!(gpid = %self.gpid, "syncing the log at close: {e}");
            }
        }
        // A clean stop with appends not fsynced: the log made durable now, a reboot of the
        // machine before the next open loses nothing, so it is not taken for one that may have.
        if !self.options.plog_force_flush && self.peers.is_some() {
            let clean = self
                .plog
                .sync_all()
                .and_then(|()| crate::replica::boot::mark_clean(&self.dir));
            if let Err(e) = clean {
                warn!(gpid = %self.gpid, "syncing the log at close: {e}");
            }
        }
    }

    fn publish(&self) {
        let role = match self.replica.role() {
            Role::Inactive => 0,
            Role::Primary => 1,
            Role::Secondary => 2,
            Role::Learner => 3,
        };
        self.status.role.store(role, Ordering::Release);
        self.status.readable.store(
            self.replica.readable() && self.failed.get().is_none(),
            Ordering::Release,
        );
        let ballot = self.replica.ballot();
        if self.status.ballot.swap(ballot, Ordering::AcqRel) != ballot {
            self.options.ballot_news.notify_one();
        }
        self.status
            .committed
            .store(self.replica.committed(), Ordering::Release);
    }

    /// Client writes: one mutation for the batch, its effects computed on top of everything
    /// prepared and not yet committed.
    fn on_writes(&mut self, writes: Vec<(WriteOp, WriteDone)>, round: &mut Round) {
        if self.failed.get().is_some() || self.replica.role() != Role::Primary {
            let e = || {
                if self.failed.get().is_some() {
                    PartitionError::Closed
                } else {
                    PartitionError::NotPrimary
                }
            };
            for (_, done) in writes {
                round.replies.push((done, Err(e())));
            }
            return;
        }
        let pending: Vec<Effects> = self
            .replica
            .uncommitted()
            .filter_map(|m| m.write.clone())
            .collect();
        let storage = self.store();
        let mut view = View::with_pending(
            &storage,
            pegasus_protocol::key::epoch_now(),
            self.options.cluster_id,
            pending.iter().flat_map(|ops| ops.iter()),
        );
        let mut ops = Vec::new();
        let mut answers = Vec::with_capacity(writes.len());
        for (op, done) in writes {
            match view.execute(op) {
                Ok((effects, reply)) => {
                    ops.extend(effects);
                    answers.push((done, Ok(reply)));
                }
                Err(e) => round.replies.push((done, Err(PartitionError::from(e)))),
            }
        }
        if answers.is_empty() {
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.waiting.insert(id, answers);
        self.step(
            Input::Write {
                id,
                write: Arc::new(ops),
            },
            round,
        );
    }

    fn on_prepare(
        &mut self,
        from: SocketAddrV4,
        r: PrepareRequest,
        done: PrepareDone,
        round: &mut Round,
    ) {
        let (ballot, decree) = (r.ballot as u64, r.decree as u64);
        if self.failed.get().is_some() {
            return done(Some(refusal(ErrorCode::InvalidState)));
        }
        if let Some(old) = self.prepares.insert((ballot, decree), done) {
            old(None);
        }
        let write = (!r.empty).then(|| Arc::new(r.ops.into_iter().map(from_wire).collect()));
        let message = Message::Prepare {
            ballot,
            ballot_start: r.ballot_start as u64,
            mutation: pegasus_replication::Mutation {
                ballot: r.mutation_ballot as u64,
                decree,
                write,
            },
            committed: r.committed as u64,
        };
        round.rejected = None;
        self.step(Input::Receive { from, message }, round);
        if let Some(higher) = round.rejected.take() {
            if let Some(done) = self.prepares.remove(&(ballot, decree)) {
                done(Some(answer(higher, decree, true)));
            }
        } else if !round
            .appends
            .iter()
            .any(|m| m.ballot == ballot && m.decree == decree)
            && let Some(done) = self.prepares.remove(&(ballot, decree))
        {
            // Neither logged nor acknowledged: not a member of that configuration (yet).
            done(Some(refusal(ErrorCode::InvalidState)));
        }
    }

    fn on_config(
        &mut self,
        config: Config<SocketAddrV4>,
        max_replica_count: i32,
        round: &mut Round,
    ) {
        self.max_replica_count = max_replica_count;
        let wanted = self.options.replication.min_replicas;
        self.replica
            .set_min_replicas(wanted.min(max_replica_count.max(1) as usize));
        let before = self.replica.role();
        let ballot_before = self.replica.ballot();
        self.step(Input::Config(config), round);
        let after = self.replica.role();
        if before != after {
            info!(gpid = %self.gpid, ballot = self.replica.ballot(), role = ?after, "role changed");
        }
        if self.replica.ballot() != ballot_before && after != Role::Learner {
            // A new configuration ends every learning round: checkpoints made for learners
            // (hard links that keep old files alive) and copies being fetched go.
            self.learning = 0;
            let _ = std::fs::remove_dir_all(self.dir.join("learn"));
        }
        // Prepares waiting under an older ballot will not be acknowledged.
        let ballot = self.replica.ballot();
        let stale: Vec<(u64, u64)> = self
            .prepares
            .range(..(ballot, 0))
            .map(|(k, _)| *k)
            .collect();
        for key in stale {
            if let Some(done) = self.prepares.remove(&key) {
                done(None);
            }
        }
    }

    /// The store (the driver is the only one that ever empties the slot).
    fn store(&self) -> Arc<Storage> {
        self.storage
            .read()
            .expect("storage")
            .clone()
            .expect("the store is in place outside an install")
    }

    /// Primary: what the learner that asks lacks. A learner whose store is at a decree this
    /// log still holds everything past (a node briefly away) gets those mutations and what is
    /// prepared, no checkpoint; any other a checkpoint of the store with what is prepared past
    /// it (`log` false: the log was read and did not hold it). Older checkpoints are removed.
    ///
    /// The log is read on a thread of its own: up to [`LOG_LEARNING_MAX_BYTES`] of it takes
    /// long enough that this partition's writes (and the other partitions of the driver's
    /// worker) must not wait for it. What it returns is fixed here: committed decrees, which the
    /// log keeps, and the prepared ones as they are now.
    fn copy_for(&mut self, r: LearnRequest, done: CopyDone, log: bool) {
        if self.replica.role() != Role::Primary || r.ballot as u64 != self.replica.ballot() {
            return done(Err(format!(
                "not the primary of ballot {} (ballot {}, {:?})",
                r.ballot,
                self.replica.ballot(),
                self.replica.role()
            )));
        }
        let committed = self.replica.committed();
        let applied = r.applied.max(0) as u64;
        if !log || applied > committed {
            return done(self.checkpoint(&r));
        }
        let files = self.plog.files_after(applied);
        let nothing_to_read = files.is_empty();
        let prepared: Vec<_> = self.replica.uncommitted().cloned().collect();
        let gpid = self.gpid;
        let events = self.events.clone();
        let read = move || match plog::read_range(
            &files,
            applied,
            committed,
            LOG_LEARNING_MAX_BYTES,
        ) {
            Ok(Some(logged)) => {
                let mut tail: Vec<_> = logged
                    .into_iter()
                    .map(|m| pegasus_replication::Mutation {
                        ballot: m.ballot,
                        decree: m.decree,
                        write: Some(Arc::new(m.ops)),
                    })
                    .collect();
                tail.extend(prepared);
                info!(%gpid, learner = %r.learner, from = applied + 1, committed, tail = tail.len(), "a learner learns from the log");
                done(Ok((None, applied, tail)));
            }
            outcome => {
                if let Err(e) = outcome {
                    warn!(%gpid, "reading the log for a learner: {e}");
                }
                // Not there (collected, or too much): a checkpoint, made by the driver.
                if let Err(
                    TrySendError::Full(Event::Checkpoint(_, done, _))
                    | TrySendError::Disconnected(Event::Checkpoint(_, done, _)),
                ) = events.try_send(Event::Checkpoint(r, done, false))
                {
                    done(Err("the replica is busy or closing".into()));
                }
            }
        };
        if nothing_to_read {
            // Nothing to read (the learner holds everything committed): answered at once.
            return read();
        }
        if let Err(e) = self
            .options
            .pool
            .get()
            .spawn(format!("learn-log-{gpid}"), Box::new(read))
        {
            // The closure (and the learner's answer) went with the failed spawn: the learner's
            // request times out and it asks again.
            warn!(%gpid, "no thread to read the log for a learner: {e}");
        }
    }

    /// Primary: a checkpoint of the store for a learner, with what is prepared past it.
    fn checkpoint(&mut self, r: &LearnRequest) -> Copy {
        let root = self.dir.join("learn");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
        let decree = self.replica.committed();
        let dir = root.join(format!("{}.{decree}", self.replica.ballot()));
        self.store().checkpoint(&dir).map_err(|e| e.to_string())?;
        let tail = self.replica.uncommitted().cloned().collect();
        info!(gpid = %self.gpid, learner = %r.learner, decree, "checkpoint for a learner");
        Ok((Some(dir), decree, tail))
    }

    /// A checkpoint of the store into `dir` (replaced if there) for a backup: the decree it is
    /// at (the driver alone applies, so nothing lands between the two).
    fn backup_checkpoint(&mut self, dir: &Path) -> Result<u64, String> {
        let _ = std::fs::remove_dir_all(dir);
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        let store = self.store();
        let decree = store.applied_decree().map_err(|e| e.to_string())?;
        store.checkpoint(dir).map_err(|e| e.to_string())?;
        info!(gpid = %self.gpid, decree, "checkpoint for a backup");
        Ok(decree)
    }

    /// Learner: puts the copied store in place of its own, then tells the state machine.
    fn install(&mut self, copy: Copy, round: &mut Round) {
        let ballot = std::mem::take(&mut self.learning);
        let (dir, decree, tail) = match copy {
            Ok(c) if self.replica.role() == Role::Learner && self.replica.ballot() == ballot => c,
            Ok((dir, ..)) => {
                if let Some(dir) = dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
                return;
            }
            Err(e) => {
                warn!(gpid = %self.gpid, "learning failed: {e}");
                // The primary proposes again; the state machine asks for a new copy then.
                return;
            }
        };
        let Some(dir) = dir else {
            // From the log: the store stays; the tail starts where it is.
            let at = self.store().applied_decree().unwrap_or(0);
            if at != decree {
                warn!(gpid = %self.gpid, at, decree, "the store moved while learning from the log");
                return;
            }
            info!(gpid = %self.gpid, decree = at, tail = tail.len(), "learned from the primary's log");
            self.step(
                Input::Learned {
                    checkpoint: at,
                    tail,
                },
                round,
            );
            return;
        };
        // What the log held is of another history than the copy's (see `Plog::reset`); gone
        // first, so a crash in between leaves the old store with an empty log, which a learner
        // (not a member: nothing it held counted) can afford.
        if let Err(e) = self.reset_log() {
            return self.fail(
                format!("resetting the log for a learned copy failed: {e}"),
                round,
            );
        }
        let rdb = self.dir.join("data").join("rdb");
        let swapped = (|| -> Result<Arc<Storage>, String> {
            let mut slot = self.storage.write().expect("storage");
            let old = slot.take().ok_or("no store")?;
            // Readers hold it only for one request.
            let deadline = Instant::now() + Duration::from_secs(10);
            while Arc::strong_count(&old) > 1 {
                if Instant::now() > deadline {
                    *slot = Some(old);
                    return Err("the old store is still in use".into());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(old);
            std::fs::remove_dir_all(&rdb).map_err(|e| e.to_string())?;
            std::fs::rename(&dir, &rdb).map_err(|e| e.to_string())?;
            sync_parent(&rdb).map_err(|e| e.to_string())?;
            let new =
                Arc::new(Storage::open(&rdb, &self.options.rocks).map_err(|e| e.to_string())?);
            *slot = Some(Arc::clone(&new));
            Ok(new)
        })();
        match swapped {
            Ok(store) => {
                let at = store.applied_decree().unwrap_or(0);
                if at != decree {
                    warn!(gpid = %self.gpid, at, decree, "the learned store is at another decree than announced");
                }
                info!(gpid = %self.gpid, decree = at, tail = tail.len(), "learned copy in place");
                self.step(
                    Input::Learned {
                        checkpoint: at,
                        tail,
                    },
                    round,
                );
            }
            Err(e) => self.fail(format!("installing a learned copy failed: {e}"), round),
        }
    }

    /// Feeds the state machine and carries out what it asks, except the appends, applies and
    /// replies, which the round does in order.
    fn step(&mut self, input: Input<SocketAddrV4, Effects>, round: &mut Round) {
        let outputs = self.replica.handle(input);
        if self.lossy && !self.replica.lossy() {
            // Learned again (or granted its group's primary as the last copy): its log, which
            // may lack entries its store holds and keep older ones in their place, starts
            // afresh before anything else is appended (so it never teaches from it), and the
            // mark goes.
            let cleared = self
                .reset_log()
                .and_then(|()| crate::replica::boot::clear_lossy(&self.dir));
            match cleared {
                Ok(()) => {
                    self.lossy = false;
                    self.status.lossy.store(false, Ordering::Release);
                    info!(gpid = %self.gpid, "this copy holds its group's history again");
                }
                Err(e) => warn!(gpid = %self.gpid, "clearing the lossy mark: {e}"),
            }
        }
        for output in outputs {
            match output {
                Output::Send { to, message } => self.send(to, message, round),
                Output::Append(m) => round.appends.push(to_plog(m)),
                Output::Apply(m) => round.applies.push(to_plog(m)),
                Output::Reply { id, result } => {
                    let Some(answers) = self.waiting.remove(&id) else {
                        continue;
                    };
                    for (done, answer) in answers {
                        let answer = match (&result, answer) {
                            (Ok(decree), Ok(mut reply)) => {
                                reply.stamp(
                                    self.gpid.app_id,
                                    self.gpid.partition_index,
                                    *decree as i64,
                                    &self.options.server,
                                );
                                Ok(reply)
                            }
                            (Ok(_), Err(e)) => Err(e),
                            (Err(e), _) => Err(PartitionError::from(*e)),
                        };
                        round.replies.push((done, answer));
                    }
                }
                Output::StartLearning { from, ballot } => {
                    if self.learning == ballot {
                        continue;
                    }
                    self.learning = ballot;
                    info!(gpid = %self.gpid, primary = %from, ballot, "learning");
                    if let Some(peers) = &self.peers {
                        let events = self.events.clone();
                        peers.learn(
                            from,
                            LearnRequest {
                                pid: self.gpid,
                                ballot: ballot as i64,
                                learner: RpcAddress::new(self.me),
                                applied: self.store().applied_decree().unwrap_or(0) as i64,
                            },
                            self.dir.join("learn").join("copy"),
                            Box::new(move |copy| {
                                let _ = events.try_send(Event::Learned(copy));
                            }),
                        );
                    }
                }
                Output::Upgrade { learner, ballot } => {
                    info!(gpid = %self.gpid, %learner, ballot, "a learner caught up: asking the meta to make it a secondary");
                    if let Some(peers) = &self.peers {
                        peers.update(
                            self.gpid,
                            ballot,
                            learner,
                            config_type::UPGRADE_TO_SECONDARY,
                        );
                    }
                }
                Output::RaiseBallot { ballot } => {
                    info!(gpid = %self.gpid, ballot, "asks the meta for the next ballot (restarted as primary, or a silent learner)");
                    if let Some(peers) = &self.peers {
                        peers.update(
                            self.gpid,
                            ballot,
                            self.me,
                            config_type::PRIMARY_FORCE_UPDATE_BALLOT,
                        );
                    }
                }
                Output::Remove { member, ballot } => {
                    if member == self.me {
                        warn!(gpid = %self.gpid, ballot, "this copy may lack acknowledged writes: asking the meta to remove it");
                    } else {
                        warn!(gpid = %self.gpid, %member, ballot, "a secondary did not acknowledge in time: asking the meta to remove it");
                    }
                    if let Some(peers) = &self.peers {
                        peers.update(
                            self.gpid,
                            ballot,
                            member,
                            config_type::DOWNGRADE_TO_INACTIVE,
                        );
                    }
                }
            }
        }
    }

    fn send(&mut self, to: SocketAddrV4, message: Message<Effects>, round: &mut Round) {
        match message {
            Message::Prepare {
                ballot,
                ballot_start,
                mutation,
                committed,
            } => {
                let Some(peers) = &self.peers else {
                    return;
                };
                let request = PrepareRequest {
                    pid: self.gpid,
                    ballot: ballot as i64,
                    ballot_start: ballot_start as i64,
                    committed: committed as i64,
                    mutation_ballot: mutation.ballot as i64,
                    decree: mutation.decree as i64,
                    empty: mutation.write.is_none(),
                    ops: wire_ops(mutation.write.as_ref()),
                    primary: RpcAddress::new(self.me),
                };
                let events = self.events.clone();
                peers.prepare(
                    to,
                    request,
                    Box::new(move |answer| {
                        if let Some(answer) = answer {
                            // Dropped only past the queue's room: the prepare timeout covers it.
                            let _ = events.try_send(Event::Answer(to, answer));
                        }
                    }),
                );
            }
            Message::Ack { ballot, decree } => {
                if let Some(done) = self.prepares.remove(&(ballot, decree)) {
                    done(Some(answer(ballot, decree, false)));
                }
            }
            Message::Reject { ballot } => round.rejected = Some(ballot),
            Message::Learn {
                ballot,
                prepare_start,
            } => {
                if let Some(peers) = &self.peers {
                    peers.learn_add(
                        to,
                        LearnAddRequest {
                            pid: self.gpid,
                            ballot: ballot as i64,
                            primary: RpcAddress::new(self.me),
                            prepare_start: prepare_start as i64,
                            max_replica_count: self.max_replica_count,
                        },
                    );
                }
            }
            Message::LearnDone {
                ballot,
                logged_through,
            } => {
                if let Some(peers) = &self.peers {
                    peers.learn_done(
                        to,
                        LearnDoneRequest {
                            pid: self.gpid,
                            ballot: ballot as i64,
                            learner: RpcAddress::new(self.me),
                            logged_through: logged_through as i64,
                        },
                    );
                }
            }
        }
    }

    /// Appends (and feeds back `Logged`), applies, then answers, until nothing is left.
    fn carry_out(&mut self, round: &mut Round) {
        loop {
            while !round.appends.is_empty() {
                let batch = std::mem::take(&mut round.appends);
                if self.failed.get().is_some() {
                    break;
                }
                self.log(batch, round);
            }
            // What the shared log made durable meanwhile is logged; its outputs may append.
            if !self.logged(round) || round.appends.is_empty() {
                break;
            }
        }
        if !round.applies.is_empty() && self.failed.get().is_none() {
            let applies = std::mem::take(&mut round.applies);
            if let Err(e) = self.store().apply(&applies) {
                self.fail(format!("applying a write failed: {e}"), round);
            }
        }
        round.applies.clear();
        for (done, answer) in round.replies.drain(..) {
            done(answer);
        }
        if self.plog.file_count() > 1 && self.failed.get().is_none() {
            // A file is full: make the store durable up to here and drop the files it covers.
            match self.store().flush() {
                Ok(durable) => {
                    if let Err(e) = self.plog.gc(durable) {
                        error!(gpid = %self.gpid, "plog gc: {e}");
                    }
                }
                Err(e) => error!(gpid = %self.gpid, "flush: {e}"),
            }
        }
    }

    /// Appends a batch to the private log; then, with a shared log, there, to be logged once
    /// it is durable ([`Driver::logged`]); without, the private log synced it and it is logged.
    fn log(&mut self, batch: Vec<Mutation>, round: &mut Round) {
        let Some(slog) = self.options.slog.clone() else {
            match self.plog.append(&batch) {
                Ok(()) => {
                    for m in &batch {
                        let (ballot, decree) = (m.ballot, m.decree);
                        self.step(Input::Logged { ballot, decree }, round);
                    }
                }
                Err(e) => self.fail(format!("a write failed: {e}"), round),
            }
            return;
        };
        let appended = self
            .plog
            .append(&batch)
            .and_then(|()| slog.append(self.gpid, self.plog.encoded(), &self.wake));
        match appended {
            Ok(end) => {
                let logged = batch.iter().map(|m| (m.ballot, m.decree)).collect();
                self.in_flight.push_back((end, logged));
            }
            Err(e) => self.fail(format!("a write failed: {e}"), round),
        }
    }

    /// Tells the state machine which batches the shared log made durable; whether any.
    fn logged(&mut self, round: &mut Round) -> bool {
        let Some(slog) = self.options.slog.clone() else {
            return false;
        };
        let mut any = false;
        while let Some((end, _)) = self.in_flight.front() {
            match slog.fate(*end) {
                Fate::Durable => {
                    let (_, logged) = self.in_flight.pop_front().expect("front");
                    for (ballot, decree) in logged {
                        self.step(Input::Logged { ballot, decree }, round);
                    }
                    any = true;
                }
                Fate::Waiting => break,
                Fate::Failed(why) => {
                    self.in_flight.clear();
                    self.fail(why, round);
                    return false;
                }
            }
        }
        any
    }

    /// Forgets everything logged ([`crate::replica::plog::Plog::reset`]); the shared log's
    /// records of this replica first (those before are then durable: still logged when their
    /// turn comes), so that a crash in between leaves the log as it was.
    fn reset_log(&mut self) -> std::io::Result<()> {
        if let Some(slog) = &self.options.slog {
            slog.mark(self.gpid)?;
        }
        self.plog.reset()
    }

    /// A failed append or apply (a full disk, an I/O error): the replica stops, answers what
    /// waits, and is reported lost.
    fn fail(&mut self, why: String, round: &mut Round) {
        error!(gpid = %self.gpid, "{why}; the replica stops taking writes");
        let _ = self.failed.set(why);
        for (_, answers) in self.waiting.drain() {
            for (done, _) in answers {
                round.replies.push((done, Err(PartitionError::Closed)));
            }
        }
        for (_, done) in std::mem::take(&mut self.prepares) {
            done(Some(refusal(ErrorCode::InvalidState)));
        }
        round.appends.clear();
        round.applies.clear();
    }
}

/// A secondary's answer to a prepare of `decree`: acknowledged in `ballot`, or refused
/// (`rejected`) because it serves the higher `ballot`.
fn answer(ballot: u64, decree: u64, rejected: bool) -> PrepareResponse {
    PrepareResponse {
        err: ErrorName(ErrorCode::Ok.name().to_owned()),
        ballot: ballot as i64,
        decree: decree as i64,
        rejected,
    }
}

fn refusal(code: ErrorCode) -> PrepareResponse {
    PrepareResponse {
        err: ErrorName(code.name().to_owned()),
        ..Default::default()
    }
}

fn to_plog(m: pegasus_replication::Mutation<Effects>) -> Mutation {
    Mutation {
        ballot: m.ballot,
        decree: m.decree,
        ops: m.write.map(|ops| ops.to_vec()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    //! The driver alone, one round at a time: its log is an in-memory fake that can be told to
    //! fail, its peers a fake that keeps the prepares it is asked to send (and their answers'
    //! callbacks), its store a real RocksDB in a temp dir.

    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;

    use pegasus_protocol::key;
    use pegasus_protocol::types::{Blob, LearnAddRequest, UpdateRequest};

    use super::*;
    use crate::replica::partition::{PartitionOptions, Slot};
    use crate::replica::pool::{DriverPool, LazyPool};
    use crate::replica::storage::RocksOptions;

    /// A log in memory: what was appended, in order; `fail` makes appends fail as a full disk.
    #[derive(Clone, Default)]
    struct MemLog {
        appended: Arc<Mutex<Vec<Mutation>>>,
        fail: Arc<AtomicBool>,
        encoded: Vec<u8>,
    }

    impl Log for MemLog {
        fn append(&mut self, mutations: &[Mutation]) -> std::io::Result<()> {
            if self.fail.load(Ordering::Acquire) {
                return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
            }
            self.appended.lock().unwrap().extend_from_slice(mutations);
            self.encoded.clear();
            plog::encode_batch(mutations, &mut self.encoded);
            Ok(())
        }
        fn encoded(&self) -> &[u8] {
            &self.encoded
        }
        fn sync_all(&mut self) -> std::io::Result<()> {
            Ok(())
        }
        fn reset(&mut self) -> std::io::Result<()> {
            self.appended.lock().unwrap().clear();
            Ok(())
        }
        fn gc(&mut self, _durable: u64) -> std::io::Result<usize> {
            Ok(0)
        }
        fn files_after(&self, _after: u64) -> Vec<PathBuf> {
            Vec::new()
        }
        fn file_count(&self) -> usize {
            1
        }
    }

    impl MemLog {
        fn decrees(&self) -> Vec<u64> {
            self.appended
                .lock()
                .unwrap()
                .iter()
                .map(|m| m.decree)
                .collect()
        }
    }

    /// Peers that keep each prepare with the callback its answer goes to.
    #[derive(Default)]
    struct FakePeers {
        prepares: Mutex<Vec<(SocketAddrV4, PrepareRequest, PrepareDone)>>,
    }

    impl Peers for FakePeers {
        fn prepare(&self, to: SocketAddrV4, request: PrepareRequest, done: PrepareDone) {
            self.prepares.lock().unwrap().push((to, request, done));
        }
        fn learn_add(&self, _to: SocketAddrV4, _request: LearnAddRequest) {}
        fn learn_done(&self, _to: SocketAddrV4, _request: LearnDoneRequest) {}
        fn learn(&self, _from: SocketAddrV4, _r: LearnRequest, _dest: PathBuf, done: CopyDone) {
            done(Err("no learning here".into()));
        }
        fn update(&self, _gpid: Gpid, _ballot: u64, _node: SocketAddrV4, _config_type: i32) {}
    }

    impl FakePeers {
        /// Acknowledges, as `from`, every prepare sent to it so far; how many.
        fn ack_from(&self, from: SocketAddrV4) -> usize {
            let mut prepares = self.prepares.lock().unwrap();
            let (to_ack, rest): (Vec<_>, Vec<_>) =
                prepares.drain(..).partition(|(to, _, _)| *to == from);
            *prepares = rest;
            let n = to_ack.len();
            for (_, r, done) in to_ack {
                done(Some(answer(r.ballot as u64, r.decree as u64, false)));
            }
            n
        }
    }

    fn addr(i: u8) -> SocketAddrV4 {
        SocketAddrV4::new([127, 0, 0, i].into(), 34801)
    }

    /// A driver of partition 1.0 on `addr(1)` (not started: the test runs its rounds), with
    /// the mailbox its events come through.
    struct Bench {
        driver: Driver,
        tx: Mailbox<Event>,
        rx: Receiver<Event>,
        next_tick: Option<Instant>,
        _dir: tempfile::TempDir,
    }

    impl Bench {
        fn new(log: MemLog, peers: Option<Arc<dyn Peers>>) -> Bench {
            let dir = tempfile::tempdir().unwrap();
            let options = PartitionOptions {
                me: addr(1),
                pool: LazyPool::of(DriverPool::stepped(Instant::now())),
                ..PartitionOptions::default()
            };
            let (tx, rx) = options.pool.get().mailbox(64, "1.0".into());
            let store = Storage::open(&dir.path().join("rdb"), &RocksOptions::default()).unwrap();
            let storage: Slot = Arc::new(std::sync::RwLock::new(Some(Arc::new(store))));
            // A replica just made: no process before it can have used a ballot.
            let mut replica = Replica::recover(addr(1), options.replication, 0, Vec::new());
            replica.set_restarted(false);
            let driver = Driver {
                gpid: Gpid::new(1, 0),
                me: addr(1),
                dir: dir.path().to_owned(),
                storage,
                learning: 0,
                plog: Box::new(log),
                replica,
                peers,
                events: tx.clone(),
                queued: Arc::new(AtomicUsize::new(0)),
                failed: Arc::new(OnceLock::new()),
                status: Arc::new(Status::default()),
                options,
                waiting: HashMap::new(),
                next_id: 1,
                prepares: BTreeMap::new(),
                max_replica_count: 3,
                lossy: false,
                in_flight: std::collections::VecDeque::new(),
                wake: Arc::new(|| {}),
            };
            Bench {
                driver,
                tx,
                rx,
                next_tick: None,
                _dir: dir,
            }
        }

        /// Sends `event` and runs one round.
        fn round(&mut self, event: Option<Event>) {
            if let Some(event) = event {
                if matches!(event, Event::Write(..)) {
                    self.driver.queued.fetch_add(1, Ordering::AcqRel);
                }
                assert!(self.tx.send(event).is_ok());
            }
            self.driver.round(&self.rx, &mut self.next_tick);
        }

        /// Configures ballot 1 with `primary` and `secondaries`.
        fn configure(&mut self, primary: SocketAddrV4, secondaries: Vec<SocketAddrV4>) {
            let config = Config {
                ballot: 1,
                primary: Some(primary),
                secondaries,
            };
            let copies = 1 + config.secondaries.len() as i32;
            self.round(Some(Event::Config(config, copies)));
        }

        /// Rounds until the new primary serves: it first commits, in its ballot, what its
        /// predecessor may have acknowledged (an empty mutation here), its secondaries (if any)
        /// acknowledging through `peers`.
        fn until_serving(&mut self, peers: Option<&FakePeers>) {
            for _ in 0..100 {
                if self.driver.status.readable.load(Ordering::Acquire) {
                    return;
                }
                if let Some(peers) = peers {
                    peers.ack_from(addr(2));
                    peers.ack_from(addr(3));
                }
                self.round(None);
            }
            panic!(
                "the primary does not serve: {:?}",
                self.driver.replica.role()
            );
        }

        /// Sends a put of `k` = `v`; its answer lands in the returned slot.
        fn put(&mut self, k: &str, v: &str) -> Arc<Mutex<Option<Result<(), String>>>> {
            let answer = Arc::new(Mutex::new(None));
            let slot = Arc::clone(&answer);
            let op = WriteOp::Put(UpdateRequest {
                key: Blob::from(key::encode_key(k.as_bytes(), b"s").unwrap()),
                value: Blob::from(v.as_bytes().to_vec()),
                expire_ts_seconds: 0,
            });
            let done: WriteDone = Box::new(move |r| {
                *slot.lock().unwrap() = Some(r.map(drop).map_err(|e| e.to_string()));
            });
            self.round(Some(Event::Write(op, done)));
            answer
        }

        fn stored(&self, k: &str) -> Option<Vec<u8>> {
            let key = key::encode_key(k.as_bytes(), b"s").unwrap();
            self.driver.store().get(&key, 0).unwrap()
        }
    }

    #[test]
    fn a_write_is_answered_once_logged_here_and_acknowledged_by_every_secondary() {
        let log = MemLog::default();
        let peers = Arc::new(FakePeers::default());
        let mut b = Bench::new(log.clone(), Some(Arc::clone(&peers) as Arc<dyn Peers>));
        b.configure(addr(1), vec![addr(2), addr(3)]);
        b.until_serving(Some(&peers));
        let before = log.decrees().len();
        let answer = b.put("k", "v");
        assert_eq!(
            log.decrees().len(),
            before + 1,
            "logged in the write's own round"
        );
        assert_eq!(peers.prepares.lock().unwrap().len(), 2, "a prepare to each");
        assert!(
            answer.lock().unwrap().is_none(),
            "no answer before the secondaries'"
        );
        assert_eq!(peers.ack_from(addr(2)), 1);
        b.round(None);
        assert!(
            answer.lock().unwrap().is_none(),
            "one secondary is not every secondary"
        );
        assert_eq!(b.stored("k"), None, "nothing applied before the commit");
        assert_eq!(peers.ack_from(addr(3)), 1);
        b.round(None);
        assert_eq!(*answer.lock().unwrap(), Some(Ok(())));
        assert_eq!(b.stored("k").as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn a_failed_append_answers_the_write_and_applies_nothing() {
        let log = MemLog::default();
        let mut b = Bench::new(log.clone(), None);
        b.configure(addr(1), Vec::new());
        b.until_serving(None);
        let first = b.put("a", "1");
        assert_eq!(*first.lock().unwrap(), Some(Ok(())));
        let logged = log.decrees().len();
        log.fail.store(true, Ordering::Release);
        let second = b.put("b", "2");
        let said = second.lock().unwrap().clone();
        assert!(
            matches!(&said, Some(Err(e)) if e.contains("not writable")),
            "{said:?}"
        );
        assert!(
            b.driver.failed.get().is_some(),
            "the replica is reported lost"
        );
        assert_eq!(b.stored("b"), None);
        assert_eq!(b.stored("a").as_deref(), Some(&b"1"[..]));
        // Later writes are refused at once, not queued behind the failure.
        let third = b.put("c", "3");
        assert!(matches!(&*third.lock().unwrap(), Some(Err(_))));
        assert_eq!(
            log.decrees().len(),
            logged,
            "nothing logged after the failure"
        );
    }

    #[test]
    fn a_secondary_acknowledges_a_prepare_only_once_it_is_logged() {
        let prepare = |decree: i64| PrepareRequest {
            pid: Gpid::new(1, 0),
            ballot: 1,
            ballot_start: 1,
            committed: decree - 1,
            mutation_ballot: 1,
            decree,
            empty: false,
            ops: vec![crate::replica::partition::to_wire(
                &crate::replica::plog::Op::Put(key::encode_key(b"k", b"s").unwrap(), b"v".to_vec()),
            )],
            primary: RpcAddress::new(addr(2)),
        };
        let log = MemLog::default();
        let peers: Arc<dyn Peers> = Arc::new(FakePeers::default());
        let mut b = Bench::new(log.clone(), Some(peers));
        b.configure(addr(2), vec![addr(1), addr(3)]);
        let answers = Arc::new(Mutex::new(Vec::new()));
        let send = |b: &mut Bench, decree| {
            let answers = Arc::clone(&answers);
            let done: PrepareDone = Box::new(move |r| answers.lock().unwrap().push(r));
            b.round(Some(Event::Prepare(addr(2), prepare(decree), done)));
        };
        send(&mut b, 1);
        assert_eq!(log.decrees(), [1]);
        {
            let answers = answers.lock().unwrap();
            assert_eq!(answers.len(), 1);
            let ack = answers[0].as_ref().expect("an answer");
            assert_eq!(
                (ack.err.0.as_str(), ack.decree, ack.rejected),
                ("ERR_OK", 1, false)
            );
        }
        // The disk fails: the next prepare is not acknowledged.
        log.fail.store(true, Ordering::Release);
        send(&mut b, 2);
        let answers = answers.lock().unwrap();
        assert_eq!(answers.len(), 2);
        assert!(
            answers[1]
                .as_ref()
                .is_none_or(|r| r.err.0 != "ERR_OK" || r.rejected),
            "a prepare the log did not take was acknowledged: {:?}",
            answers[1]
        );
        assert_eq!(log.decrees(), [1]);
    }
}
