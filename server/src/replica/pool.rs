//! The driver pool: a fixed number of OS threads (`[threadpool.THREAD_POOL_REPLICATION]
//! worker_count`, as Pegasus's partitioned replication pool) run every partition's driver, one
//! round at a time, whenever it has events or its tick is due. A partition's rounds never run on
//! two threads at once (Pegasus pins a partition to one thread; here it may move between rounds,
//! never within one), so a node holds thousands of partitions on a bounded number of threads.
//!
//! Scheduling cannot lose a wake-up: a sender counts its event (`pending`) before it asks for a
//! round, a round takes events off that count, and a worker that ends a round with events still
//! counted schedules the task again after clearing its `scheduled` flag.
//!
//! A *stepped* pool ([`DriverPool::stepped`]) has no thread: whoever holds it runs the ready
//! tasks' rounds, the ticks and the background work one at a time, in the order it picks, on a
//! clock it sets. The whole-server simulation (`server/tests/simulation/`) runs every
//! node's drivers that way, so one seed is one schedule, the same every run.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SendError, Sender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use tracing::error;

/// What the pool runs: a partition's driver.
pub trait Job: Send + 'static {
    /// One round over the events waiting (at most a batch) and the tick if it is due; `true`
    /// once the job is over (it was closed).
    fn round(&mut self) -> bool;
    /// After the last round, or after a round panicked (`crashed`): answers what still waits.
    fn finish(&mut self, crashed: bool);
}

/// A partition's place in the pool.
pub struct Task {
    /// Names it (a partition's gpid): a stepped pool's ready tasks are offered in its order.
    label: String,
    job: Mutex<Option<Box<dyn Job>>>,
    /// In the ready queue or running.
    scheduled: AtomicBool,
    /// Events sent and not yet taken by a round.
    pending: AtomicUsize,
    /// Its job said nothing waits on a timeout: ticked once in [`IDLE_TICK_EVERY`] only.
    idle: AtomicBool,
    /// Woken ([`Task::wake`]) since its last round began: one more round is due.
    woken: AtomicBool,
    finished: Mutex<bool>,
    finished_cv: Condvar,
    pool: Weak<Shared>,
}

impl Task {
    /// Asks for a round (unless one is queued or running).
    pub fn notify(self: &Arc<Self>) {
        if !self.scheduled.swap(true, Ordering::SeqCst)
            && let Some(pool) = self.pool.upgrade()
        {
            pool.ready
                .lock()
                .expect("ready")
                .push_back(Arc::clone(self));
            pool.wake.notify_one();
        }
    }

    /// Asks for a round without an event (something the job polls changed: the shared log
    /// made its batches durable). Never lost: woken while a round runs, the task runs another.
    pub fn wake(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.notify();
    }

    /// Whether its job has nothing waiting on a timeout (set after each round): the ticker
    /// then wakes it once in [`IDLE_TICK_EVERY`] ticks, not every one. Thousands of idle
    /// replicas woken ten times a second kept most of a core busy.
    pub fn set_idle(&self, idle: bool) {
        self.idle.store(idle, Ordering::Relaxed);
    }

    /// Counts one event taken off the mailbox by a round.
    pub fn took(&self) {
        self.pending.fetch_sub(1, Ordering::SeqCst);
    }

    /// Waits until the job has finished; on a stepped pool, running its rounds (no thread
    /// would).
    pub fn wait_finished(self: &Arc<Self>) {
        if self.pool.upgrade().is_some_and(|p| p.inline) {
            while !*self.finished.lock().expect("finished")
                && self.job.lock().expect("job").is_some()
            {
                self.run();
            }
            return;
        }
        let mut finished = self.finished.lock().expect("finished");
        while !*finished {
            finished = self.finished_cv.wait(finished).expect("finished");
        }
    }

    /// Runs one round on the calling worker.
    fn run(self: &Arc<Self>) {
        let mut slot = self.job.lock().expect("job");
        let Some(job) = slot.as_mut() else {
            self.scheduled.store(false, Ordering::SeqCst);
            return;
        };
        // A wake from now on asks for the round after this one.
        self.woken.store(false, Ordering::SeqCst);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.round()));
        let over = match outcome {
            Ok(false) => false,
            Ok(true) => {
                job.finish(false);
                true
            }
            Err(_) => {
                error!("a replica's driver stopped on a bug");
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.finish(true)));
                true
            }
        };
        if over {
            // Dropping the job drops its mailbox's receiver: later sends fail at once.
            *slot = None;
            drop(slot);
            *self.finished.lock().expect("finished") = true;
            self.finished_cv.notify_all();
            return;
        }
        drop(slot);
        self.scheduled.store(false, Ordering::SeqCst);
        if self.pending.load(Ordering::SeqCst) > 0 || self.woken.load(Ordering::SeqCst) {
            self.notify();
        }
    }
}

/// The sending side of a partition's mailbox: every send asks for a round. Its bound is
/// counted, not allocated (a channel that reserves its capacity up front would hold megabytes
/// per partition idle, gigabytes per node of thousands).
pub struct Mailbox<E> {
    tx: Sender<E>,
    task: Arc<Task>,
    capacity: usize,
}

impl<E> Clone for Mailbox<E> {
    fn clone(&self) -> Self {
        Mailbox {
            tx: self.tx.clone(),
            task: Arc::clone(&self.task),
            capacity: self.capacity,
        }
    }
}

impl<E> Mailbox<E> {
    /// Sends unless the mailbox holds `capacity` events already, or is closed.
    pub fn try_send(&self, event: E) -> Result<(), TrySendError<E>> {
        if self.task.pending.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.task.pending.fetch_sub(1, Ordering::SeqCst);
            return Err(TrySendError::Full(event));
        }
        match self.tx.send(event) {
            Ok(()) => {
                self.task.notify();
                Ok(())
            }
            Err(SendError(e)) => {
                self.task.pending.fetch_sub(1, Ordering::SeqCst);
                Err(TrySendError::Disconnected(e))
            }
        }
    }

    /// Sends whatever the mailbox holds (the close, which must get through).
    pub fn send(&self, event: E) -> Result<(), SendError<E>> {
        self.task.pending.fetch_add(1, Ordering::SeqCst);
        match self.tx.send(event) {
            Ok(()) => {
                self.task.notify();
                Ok(())
            }
            Err(e) => {
                self.task.pending.fetch_sub(1, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    /// The task the mailbox wakes.
    pub fn task(&self) -> &Arc<Task> {
        &self.task
    }
}

/// A [`DriverPool`] made on first use (a process that opens no replica starts no thread).
#[derive(Debug)]
pub struct LazyPool {
    workers: usize,
    tick: Duration,
    pool: std::sync::OnceLock<Arc<DriverPool>>,
}

impl LazyPool {
    /// A pool of `workers` threads ticking every `tick`, once asked for.
    pub fn new(workers: usize, tick: Duration) -> Arc<LazyPool> {
        Arc::new(LazyPool {
            workers,
            tick,
            pool: std::sync::OnceLock::new(),
        })
    }

    /// Hands out `pool` (a stepped one: see [`DriverPool::stepped`]).
    pub fn of(pool: Arc<DriverPool>) -> Arc<LazyPool> {
        let lazy = LazyPool::new(0, Duration::ZERO);
        let _ = lazy.pool.set(pool);
        lazy
    }

    /// [`DriverPool::now`], without starting the pool.
    pub fn now(&self) -> Instant {
        self.pool.get().map_or_else(Instant::now, |p| p.now())
    }

    /// The pool, started now if it was not.
    pub fn get(&self) -> &Arc<DriverPool> {
        self.pool.get_or_init(|| {
            DriverPool::new(self.workers, self.tick).expect("cannot start the driver threads")
        })
    }
}

#[derive(Default)]
struct Shared {
    ready: Mutex<VecDeque<Arc<Task>>>,
    wake: Condvar,
    /// Every task, for the ticks.
    tasks: Mutex<Vec<Weak<Task>>>,
    stop: AtomicBool,
    /// No threads run rounds ([`DriverPool::stepped`]): one who waits for a task to finish
    /// runs its rounds.
    inline: bool,
}

/// Background work handed to the pool ([`DriverPool::spawn`]).
type Work = Box<dyn FnOnce() + Send>;

/// What a stepped pool holds instead of threads.
struct Stepped {
    now: Mutex<Instant>,
    ticks: AtomicUsize,
    background: Mutex<Vec<(String, Work)>>,
}

/// The pool.
pub struct DriverPool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// `Some`: no threads; the holder steps it ([`DriverPool::stepped`]).
    stepped: Option<Stepped>,
}

impl std::fmt::Debug for DriverPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverPool")
            .field("threads", &self.threads.lock().map_or(0, |t| t.len()))
            .finish()
    }
}

impl DriverPool {
    /// `workers` threads, and one that wakes every task each `tick`.
    pub fn new(workers: usize, tick: Duration) -> std::io::Result<Arc<DriverPool>> {
        let shared = Arc::new(Shared::default());
        let mut threads = Vec::new();
        for i in 0..workers.max(1) {
            let shared = Arc::clone(&shared);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("replica-{i}"))
                    .spawn(move || worker(&shared))?,
            );
        }
        let ticking = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name("replica-tick".into())
                .spawn(move || ticker(&ticking, tick))?,
        );
        Ok(Arc::new(DriverPool {
            shared,
            threads: Mutex::new(threads),
            stepped: None,
        }))
    }

    /// A pool without threads, its clock at `now`: nothing runs until the holder calls
    /// [`DriverPool::run_ready`], [`DriverPool::tick`] or [`DriverPool::run_background`].
    pub fn stepped(now: Instant) -> Arc<DriverPool> {
        Arc::new(DriverPool {
            shared: Arc::new(Shared {
                inline: true,
                ..Shared::default()
            }),
            threads: Mutex::default(),
            stepped: Some(Stepped {
                now: Mutex::new(now),
                ticks: AtomicUsize::new(0),
                background: Mutex::default(),
            }),
        })
    }

    /// Whether it is stepped ([`DriverPool::stepped`]): no threads.
    pub fn is_stepped(&self) -> bool {
        self.stepped.is_some()
    }

    /// The time the drivers go by: the machine's, or a stepped pool's clock.
    pub fn now(&self) -> Instant {
        match &self.stepped {
            Some(s) => *s.now.lock().expect("now"),
            None => Instant::now(),
        }
    }

    /// Runs `work` off the drivers: on a thread of its own (`name`), or, stepped, when the
    /// holder picks it. Err: no thread could be had (`work` is dropped).
    pub fn spawn(&self, name: String, work: Work) -> std::io::Result<()> {
        match &self.stepped {
            Some(s) => {
                s.background.lock().expect("background").push((name, work));
                Ok(())
            }
            None => std::thread::Builder::new().name(name).spawn(work).map(drop),
        }
    }

    /// Stepped: sets the clock (it never goes back).
    pub fn set_now(&self, now: Instant) {
        if let Some(s) = &self.stepped {
            let mut clock = s.now.lock().expect("now");
            *clock = (*clock).max(now);
        }
    }

    /// Stepped: how many tasks wait for a round.
    pub fn ready_count(&self) -> usize {
        self.shared.ready.lock().expect("ready").len()
    }

    /// Stepped: runs one round of the `i`-th ready task in the order of their labels (not of
    /// their wake-ups, which threads opening replicas at once make vary); whether there was one.
    pub fn run_ready(&self, i: usize) -> bool {
        let task = {
            let mut ready = self.shared.ready.lock().expect("ready");
            let mut order: Vec<usize> = (0..ready.len()).collect();
            order.sort_by(|a, b| ready[*a].label.cmp(&ready[*b].label));
            match order.get(i) {
                Some(at) => ready.remove(*at),
                None => None,
            }
        };
        match task {
            Some(t) => {
                t.run();
                true
            }
            None => false,
        }
    }

    /// Stepped: what the ticker thread does once.
    pub fn tick(&self) {
        if let Some(s) = &self.stepped {
            let ticks = s.ticks.fetch_add(1, Ordering::SeqCst) as u64 + 1;
            wake_for_tick(&self.shared, ticks);
        }
    }

    /// Stepped: the process dies. Every job is dropped without its last round (what its
    /// driver held in memory is gone; nothing waiting is answered), and so is the background
    /// work; later sends to its mailboxes fail.
    pub fn crash(&self) {
        let Some(s) = &self.stepped else {
            return;
        };
        self.shared.ready.lock().expect("ready").clear();
        s.background.lock().expect("background").clear();
        let tasks: Vec<Arc<Task>> = self
            .shared
            .tasks
            .lock()
            .expect("tasks")
            .drain(..)
            .filter_map(|t| t.upgrade())
            .collect();
        for t in tasks {
            drop(t.job.lock().expect("job").take());
            *t.finished.lock().expect("finished") = true;
            t.finished_cv.notify_all();
        }
    }

    /// Stepped: how much background work waits.
    pub fn background_count(&self) -> usize {
        self.stepped
            .as_ref()
            .map_or(0, |s| s.background.lock().expect("background").len())
    }

    /// Stepped: runs the `i`-th background work, in the order handed over; whether there was
    /// one.
    pub fn run_background(&self, i: usize) -> bool {
        let work = self.stepped.as_ref().and_then(|s| {
            let mut waiting = s.background.lock().expect("background");
            (i < waiting.len()).then(|| waiting.remove(i).1)
        });
        work.map(|w| w()).is_some()
    }

    /// A mailbox of `capacity` events and its receiver, for a job to be started with
    /// [`DriverPool::start`]; `label` names its task.
    pub fn mailbox<E>(&self, capacity: usize, label: String) -> (Mailbox<E>, Receiver<E>) {
        let task = Arc::new(Task {
            label,
            job: Mutex::new(None),
            scheduled: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
            idle: AtomicBool::new(false),
            woken: AtomicBool::new(false),
            finished: Mutex::new(false),
            finished_cv: Condvar::new(),
            pool: Arc::downgrade(&self.shared),
        });
        let (tx, rx) = std::sync::mpsc::channel();
        (Mailbox { tx, task, capacity }, rx)
    }

    /// Starts `job` on the task of `mailbox`: its first round runs at once.
    pub fn start<E>(&self, mailbox: &Mailbox<E>, job: Box<dyn Job>) {
        *mailbox.task.job.lock().expect("job") = Some(job);
        let mut tasks = self.shared.tasks.lock().expect("tasks");
        tasks.retain(|t| t.strong_count() > 0);
        tasks.push(Arc::downgrade(&mailbox.task));
        drop(tasks);
        mailbox.task.notify();
    }

    /// The worker threads.
    pub fn workers(&self) -> usize {
        self.threads.lock().map_or(1, |t| t.len()) - 1
    }
}

impl Drop for DriverPool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
        for t in self.threads.lock().expect("threads").drain(..) {
            let _ = t.join();
        }
    }
}

fn worker(shared: &Shared) {
    loop {
        let task = {
            let mut ready = shared.ready.lock().expect("ready");
            loop {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                if let Some(t) = ready.pop_front() {
                    break t;
                }
                ready = shared.wake.wait(ready).expect("ready");
            }
        };
        task.run();
    }
}

/// An idle task is woken once in this many ticks.
pub const IDLE_TICK_EVERY: u64 = 10;

fn ticker(shared: &Shared, tick: Duration) {
    let mut ticks = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        std::thread::sleep(tick);
        ticks += 1;
        wake_for_tick(shared, ticks);
    }
}

/// Tick `ticks`: wakes every task that is not idle, and every task each [`IDLE_TICK_EVERY`].
fn wake_for_tick(shared: &Shared, ticks: u64) {
    let everyone = ticks.is_multiple_of(IDLE_TICK_EVERY);
    let tasks: Vec<Arc<Task>> = shared
        .tasks
        .lock()
        .expect("tasks")
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for t in tasks {
        if everyone || !t.idle.load(Ordering::Relaxed) {
            t.notify();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts what it receives; finishes on `None`.
    struct Counter {
        rx: Receiver<Option<u32>>,
        task: Arc<Task>,
        sum: Arc<AtomicUsize>,
        rounds: Arc<AtomicUsize>,
    }

    impl Job for Counter {
        fn round(&mut self) -> bool {
            self.rounds.fetch_add(1, Ordering::SeqCst);
            for _ in 0..64 {
                match self.rx.try_recv() {
                    Ok(Some(n)) => {
                        self.task.took();
                        self.sum.fetch_add(n as usize, Ordering::SeqCst);
                    }
                    Ok(None) => {
                        self.task.took();
                        return true;
                    }
                    Err(_) => break,
                }
            }
            false
        }
        fn finish(&mut self, _crashed: bool) {}
    }

    #[test]
    fn many_tasks_on_few_threads_see_every_event_once() {
        let pool = DriverPool::new(3, Duration::from_millis(50)).unwrap();
        let sum = Arc::new(AtomicUsize::new(0));
        let rounds = Arc::new(AtomicUsize::new(0));
        let mailboxes: Vec<Mailbox<Option<u32>>> = (0..500)
            .map(|_| {
                let (mailbox, rx) = pool.mailbox(16, String::new());
                let job = Counter {
                    rx,
                    task: Arc::clone(mailbox.task()),
                    sum: Arc::clone(&sum),
                    rounds: Arc::clone(&rounds),
                };
                pool.start(&mailbox, Box::new(job));
                mailbox
            })
            .collect();
        std::thread::scope(|s| {
            for chunk in mailboxes.chunks(125) {
                s.spawn(move || {
                    for _ in 0..100 {
                        for m in chunk {
                            m.send(Some(1)).unwrap();
                        }
                    }
                });
            }
        });
        for m in &mailboxes {
            m.send(None).unwrap();
        }
        for m in &mailboxes {
            m.task().wait_finished();
        }
        assert_eq!(sum.load(Ordering::SeqCst), 500 * 100);
        assert!(m_closed(&mailboxes[0]));
        assert_eq!(pool.workers(), 3);
    }

    /// Wakes its own task in its first round, as the shared log does when a sync ends while
    /// the driver's round runs.
    struct WakesItself {
        task: Arc<Task>,
        rounds: Arc<AtomicUsize>,
    }

    impl Job for WakesItself {
        fn round(&mut self) -> bool {
            if self.rounds.fetch_add(1, Ordering::SeqCst) == 0 {
                self.task.wake();
            }
            self.task.set_idle(true);
            false
        }
        fn finish(&mut self, _crashed: bool) {}
    }

    #[test]
    fn a_wake_during_a_round_is_not_lost() {
        let pool = DriverPool::stepped(Instant::now());
        let rounds = Arc::new(AtomicUsize::new(0));
        let (m, _rx) = pool.mailbox::<u32>(4, String::new());
        let job = WakesItself {
            task: Arc::clone(m.task()),
            rounds: Arc::clone(&rounds),
        };
        pool.start(&m, Box::new(job));
        while pool.run_ready(0) {}
        assert_eq!(
            rounds.load(Ordering::SeqCst),
            2,
            "the wake asked for a second round"
        );
    }

    /// Counts its rounds and says it is idle (or not) after each.
    struct Ticked {
        task: Arc<Task>,
        idle: bool,
        rounds: Arc<AtomicUsize>,
    }

    impl Job for Ticked {
        fn round(&mut self) -> bool {
            self.rounds.fetch_add(1, Ordering::SeqCst);
            self.task.set_idle(self.idle);
            false
        }
        fn finish(&mut self, _crashed: bool) {}
    }

    #[test]
    fn an_idle_task_is_woken_once_in_ten_ticks() {
        let pool = DriverPool::new(2, Duration::from_millis(5)).unwrap();
        let counts: Vec<Arc<AtomicUsize>> = [false, true]
            .into_iter()
            .map(|idle| {
                let rounds = Arc::new(AtomicUsize::new(0));
                let (m, _rx) = pool.mailbox::<u32>(4, String::new());
                let job = Ticked {
                    task: Arc::clone(m.task()),
                    idle,
                    rounds: Arc::clone(&rounds),
                };
                pool.start(&m, Box::new(job));
                rounds
            })
            .collect();
        std::thread::sleep(Duration::from_millis(600));
        let (busy, idle) = (
            counts[0].load(Ordering::SeqCst),
            counts[1].load(Ordering::SeqCst),
        );
        assert!(busy >= 20, "the busy task was woken {busy} times");
        assert!(idle >= 1, "the idle task was never woken");
        assert!(idle * 4 < busy, "idle {idle} rounds, busy {busy}");
    }

    fn m_closed(m: &Mailbox<Option<u32>>) -> bool {
        m.try_send(Some(1)).is_err()
    }

    /// A job that panics: its task finishes (crashed), the pool goes on.
    struct Crasher(Arc<AtomicBool>);

    impl Job for Crasher {
        fn round(&mut self) -> bool {
            panic!("a bug")
        }
        fn finish(&mut self, crashed: bool) {
            self.0.store(crashed, Ordering::SeqCst);
        }
    }

    /// A stepped pool runs nothing by itself: rounds, ticks and background work run when its
    /// holder says; a crash drops the jobs unfinished and their mailboxes refuse sends.
    #[test]
    fn a_stepped_pool_runs_only_what_its_holder_runs() {
        let start = Instant::now();
        let pool = DriverPool::stepped(start);
        let sum = Arc::new(AtomicUsize::new(0));
        let rounds = Arc::new(AtomicUsize::new(0));
        let (m, rx) = pool.mailbox(4, "1.0".into());
        let job = Counter {
            rx,
            task: Arc::clone(m.task()),
            sum: Arc::clone(&sum),
            rounds: Arc::clone(&rounds),
        };
        pool.start(&m, Box::new(job));
        m.send(Some(2)).unwrap();
        assert_eq!(
            pool.ready_count(),
            1,
            "started and sent to: one round waits"
        );
        assert_eq!(rounds.load(Ordering::SeqCst), 0);
        assert!(pool.run_ready(0));
        assert_eq!(
            (rounds.load(Ordering::SeqCst), sum.load(Ordering::SeqCst)),
            (1, 2)
        );
        assert!(!pool.run_ready(0), "nothing waits");
        pool.tick();
        assert_eq!(
            pool.ready_count(),
            1,
            "a tick wakes a task that is not idle"
        );
        pool.set_now(start + Duration::from_secs(5));
        pool.set_now(start);
        assert_eq!(
            pool.now(),
            start + Duration::from_secs(5),
            "the clock never goes back"
        );
        let ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        pool.spawn(
            "work".into(),
            Box::new(move || flag.store(true, Ordering::SeqCst)),
        )
        .unwrap();
        assert_eq!(pool.background_count(), 1);
        assert!(!ran.load(Ordering::SeqCst));
        assert!(pool.run_background(0));
        assert!(ran.load(Ordering::SeqCst));
        pool.crash();
        assert_eq!(pool.ready_count(), 0);
        m.task().wait_finished();
        assert!(m_closed(&m), "the crashed job's mailbox refuses sends");
        assert_eq!(
            rounds.load(Ordering::SeqCst),
            1,
            "no last round after a crash"
        );
    }

    #[test]
    fn a_job_that_panics_finishes_crashed_and_the_pool_goes_on() {
        let pool = DriverPool::new(1, Duration::from_millis(50)).unwrap();
        let crashed = Arc::new(AtomicBool::new(false));
        let (m, _rx) = pool.mailbox::<u32>(4, String::new());
        pool.start(&m, Box::new(Crasher(Arc::clone(&crashed))));
        m.task().wait_finished();
        assert!(crashed.load(Ordering::SeqCst));
        // Another job still runs on the one worker.
        let sum = Arc::new(AtomicUsize::new(0));
        let (m2, rx) = pool.mailbox(4, String::new());
        let job = Counter {
            rx,
            task: Arc::clone(m2.task()),
            sum: Arc::clone(&sum),
            rounds: Arc::default(),
        };
        pool.start(&m2, Box::new(job));
        m2.send(Some(5)).unwrap();
        m2.send(None).unwrap();
        m2.task().wait_finished();
        assert_eq!(sum.load(Ordering::SeqCst), 5);
    }
}
