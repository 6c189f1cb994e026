//! The history checker: writers that each own one key and write increasing versions, readers
//! that record every answer with when the read began, and the verdict over what they saw (no
//! acknowledged version lost, no read older than a version acknowledged before it began); and
//! [`LeaderWatch`], which samples how many metas act as leader at once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pegasus_client::Table;

/// What the writers and readers saw.
#[derive(Default)]
struct Seen {
    /// Per writer: each acknowledged version, with when.
    acks: Vec<Vec<(u64, Instant)>>,
    /// `(writer's key, version read, when the read began)`.
    reads: Vec<(usize, Option<u64>, Instant)>,
    /// `(writer, when the write began, when it failed, why)` for each write that failed.
    failures: Vec<(usize, Instant, Instant, String)>,
    /// Per writer: the highest version sent (acknowledged or not).
    sent: Vec<u64>,
}

/// The longest time one writer went without an acknowledgement in a window, and why.
#[derive(Clone, Debug)]
pub struct Stall {
    /// How long.
    pub length: Duration,
    /// When it began (the writer's last acknowledgement, or the window's start).
    pub began: Instant,
    /// Which writer.
    pub writer: usize,
    /// The partition of its key.
    pub partition: i32,
    /// The writer's failed writes in it: `(began, failed, why)`.
    pub failures: Vec<(Instant, Instant, String)>,
}

impl Stall {
    /// `2.9s, writer 3 (partition 1), from 12.10s in (03:32:16.7 UTC) (failed writes: …)`,
    /// times from `origin` (an instant and the wall clock's time at it).
    pub fn describe(&self, origin: (Instant, std::time::SystemTime)) -> String {
        let at = |t: Instant| t.saturating_duration_since(origin.0).as_secs_f64();
        let wall = (origin.1 + self.began.saturating_duration_since(origin.0))
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let day = wall.as_secs_f64() % 86_400.0;
        let failed: Vec<String> = self
            .failures
            .iter()
            .map(|(b, f, why)| format!("{:.2}s–{:.2}s {why}", at(*b), at(*f)))
            .collect();
        format!(
            "{:?}, writer {} (partition {}), from {:.2}s in ({:02}:{:02}:{:06.3} UTC) (failed writes: {})",
            self.length,
            self.writer,
            self.partition,
            at(self.began),
            (day / 3600.0) as u32,
            (day % 3600.0 / 60.0) as u32,
            day % 60.0,
            if failed.is_empty() {
                "none".to_owned()
            } else {
                failed.join("; ")
            }
        )
    }
}

/// Writers and readers running on a table.
pub struct History {
    seen: Arc<Mutex<Seen>>,
    /// The partition of each writer's key.
    partitions: Vec<i32>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What a history shows.
#[derive(Debug)]
pub struct Verdict {
    /// Writes acknowledged.
    pub acked: usize,
    /// Reads answered.
    pub reads: usize,
    /// `(writer, last acknowledged version, version stored)` where the stored one is older.
    pub lost: Vec<(usize, u64, Option<u64>)>,
    /// `(writer, version read, version acknowledged before the read began)`, older.
    pub stale: Vec<(usize, Option<u64>, Option<u64>)>,
    /// The longest time one writer waited between two acknowledgements.
    pub gap: Duration,
}

impl std::fmt::Display for Verdict {
    /// `12 acknowledged writes, 30 reads; lost 0, stale 0; longest write gap of one writer 1s`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} acknowledged writes, {} reads; lost {}, stale {}; longest write gap of one \
             writer {:?}",
            self.acked,
            self.reads,
            self.lost.len(),
            self.stale.len(),
            self.gap
        )
    }
}

impl Verdict {
    /// Panics, naming them, when an acknowledged write was lost or a read was stale.
    pub fn assert_nothing_lost_or_stale(&self) {
        assert!(self.lost.is_empty(), "lost: {:?}", self.lost);
        assert!(
            self.stale.is_empty(),
            "stale reads: {:?}",
            &self.stale[..self.stale.len().min(10)]
        );
    }
}

impl History {
    /// Starts `writers` writers (keys `writer<i>`, sort key `v`) and `readers` readers.
    pub fn start(table: &Arc<Table>, writers: usize, readers: usize) -> History {
        let seen = Arc::new(Mutex::new(Seen {
            acks: vec![Vec::new(); writers],
            reads: Vec::new(),
            failures: Vec::new(),
            sent: vec![0; writers],
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..writers {
            let (table, seen, stop) = (Arc::clone(table), Arc::clone(&seen), Arc::clone(&stop));
            tasks.push(tokio::spawn(async move {
                let mut version = 0u64;
                while !stop.load(Ordering::Acquire) {
                    version += 1;
                    let key = format!("writer{w}");
                    seen.lock().unwrap().sent[w] = version;
                    let sent = Instant::now();
                    match table
                        .set(key.as_bytes(), b"v", version.to_string().as_bytes(), None)
                        .await
                    {
                        Ok(()) => seen.lock().unwrap().acks[w].push((version, Instant::now())),
                        Err(e) => seen.lock().unwrap().failures.push((
                            w,
                            sent,
                            Instant::now(),
                            e.to_string(),
                        )),
                    }
                }
            }));
        }
        for r in 0..readers {
            let (table, seen, stop) = (Arc::clone(table), Arc::clone(&seen), Arc::clone(&stop));
            tasks.push(tokio::spawn(async move {
                let mut i = r;
                while !stop.load(Ordering::Acquire) {
                    i = (i + 7) % writers;
                    let sent = Instant::now();
                    if let Ok(v) = table.get(format!("writer{i}").as_bytes(), b"v").await {
                        let version = v.map(|v| std::str::from_utf8(&v).unwrap().parse().unwrap());
                        seen.lock().unwrap().reads.push((i, version, sent));
                    }
                }
            }));
        }
        let partitions = (0..writers)
            .map(|w| table.partition_of(format!("writer{w}").as_bytes()))
            .collect();
        History {
            seen,
            partitions,
            stop,
            tasks,
        }
    }

    /// Writes acknowledged so far.
    pub fn acked(&self) -> usize {
        self.seen.lock().unwrap().acks.iter().map(Vec::len).sum()
    }

    /// Per writer: the last version acknowledged before `t` (`None`: none was).
    pub fn last_acked_before(&self, t: Instant) -> Vec<Option<u64>> {
        let seen = self.seen.lock().unwrap();
        seen.acks
            .iter()
            .map(|acks| {
                acks.iter()
                    .take_while(|(_, at)| *at < t)
                    .last()
                    .map(|(v, _)| *v)
            })
            .collect()
    }

    /// Per writer: the highest version sent so far; no version above it was ever written.
    pub fn highest_sent(&self) -> Vec<u64> {
        self.seen.lock().unwrap().sent.clone()
    }

    /// Whether every writer had a write acknowledged after `since`.
    pub fn all_writing_after(&self, since: Instant) -> bool {
        let seen = self.seen.lock().unwrap();
        seen.acks
            .iter()
            .all(|acks| acks.last().is_some_and(|(_, at)| *at > since))
    }

    /// The longest time any writer went without an acknowledgement between `from` and `to`
    /// (counted from `from`, and up to `to` for one that had none since).
    pub fn stall(&self, from: Instant, to: Instant) -> Duration {
        self.longest_stall(from, to).length
    }

    /// [`History::stall`], with when, whose, and the writes that failed in it.
    pub fn longest_stall(&self, from: Instant, to: Instant) -> Stall {
        let seen = self.seen.lock().unwrap();
        let mut worst = Stall {
            length: Duration::ZERO,
            began: from,
            writer: 0,
            partition: 0,
            failures: Vec::new(),
        };
        for (writer, acks) in seen.acks.iter().enumerate() {
            let mut last = from;
            let ends = acks
                .iter()
                .map(|(_, at)| *at)
                .filter(|at| *at > from && *at <= to)
                .chain([to]);
            for at in ends {
                if at - last > worst.length {
                    worst = Stall {
                        length: at - last,
                        began: last,
                        writer,
                        partition: self.partitions[writer],
                        failures: Vec::new(),
                    };
                }
                last = at;
            }
        }
        let end = worst.began + worst.length;
        worst.failures = seen
            .failures
            .iter()
            .filter(|(w, _, failed, _)| {
                *w == worst.writer && *failed >= worst.began && *failed <= end
            })
            .map(|(_, began, failed, why)| (*began, *failed, why.clone()))
            .collect();
        worst
    }

    /// Stops the writers and readers and reads every key once more (through `table`): the
    /// verdict.
    pub async fn finish(self, table: &Table) -> Verdict {
        self.stop.store(true, Ordering::Release);
        for t in self.tasks {
            t.await.unwrap();
        }
        let seen = std::mem::take(&mut *self.seen.lock().unwrap());
        // Every acknowledged version is there: each key holds at least its last acknowledged one.
        let mut lost = Vec::new();
        for (w, acks) in seen.acks.iter().enumerate() {
            let stored: Option<u64> = table
                .get(format!("writer{w}").as_bytes(), b"v")
                .await
                .unwrap()
                .map(|v| std::str::from_utf8(&v).unwrap().parse().unwrap());
            if let Some(&(last, _)) = acks.last()
                && stored.is_none_or(|s| s < last)
            {
                lost.push((w, last, stored));
            }
        }
        // No read returns a version older than one acknowledged before the read began.
        let mut stale = Vec::new();
        for &(w, version, sent) in &seen.reads {
            let acked_before = seen.acks[w]
                .iter()
                .take_while(|(_, at)| *at < sent)
                .last()
                .map(|(v, _)| *v);
            if acked_before.is_some_and(|a| version.is_none_or(|v| v < a)) {
                stale.push((w, version, acked_before));
            }
        }
        let gap = seen
            .acks
            .iter()
            .flat_map(|acks| acks.windows(2).map(|p| p[1].1 - p[0].1))
            .max()
            .unwrap_or_default();
        Verdict {
            acked: seen.acks.iter().map(Vec::len).sum(),
            reads: seen.reads.len(),
            lost,
            stale,
            gap,
        }
    }
}

/// The metas whose `pegasus_meta_leader` is 1 now (one that does not answer acts as nothing).
pub fn leaders(metas: &[SocketAddr]) -> Vec<SocketAddr> {
    metas
        .iter()
        .copied()
        .filter(|a| {
            pegasus_tools::scrape::get(*a, "/metrics", Duration::from_millis(300))
                .ok()
                .and_then(|r| crate::http::metric(&r.body, "pegasus_meta_leader", &[]))
                == Some(1.0)
        })
        .collect()
}

/// Samples every meta's `pegasus_meta_leader` every 100 ms until stopped; the most metas seen
/// leading at once. Its thread is in the network namespace of the thread that starts it.
pub struct LeaderWatch {
    stop: Arc<AtomicBool>,
    most: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LeaderWatch {
    /// Starts sampling `metas`.
    pub fn start(metas: Vec<SocketAddr>) -> LeaderWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let most = Arc::new(AtomicUsize::new(0));
        let (s, m) = (Arc::clone(&stop), Arc::clone(&most));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Acquire) {
                m.fetch_max(leaders(&metas).len(), Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        LeaderWatch {
            stop,
            most,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the most metas seen leading at once.
    pub fn most(mut self) -> usize {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.most.load(Ordering::Acquire)
    }
}
