//! Table environments as a replica applies them (Pegasus's names; the value forms are checked by
//! the meta, [`configcheck::envs`]): each replica of a table gets them with its
//! configuration, on every beacon answer, and parses them once per change.
//!
//! - `default_ttl`: a write without a TTL gets this one (set on the primary, so every copy
//!   stores the same value).
//! - `replica.deny_client_request`: `timeout*…` requests get no answer (the client times out,
//!   as Pegasus does so that clients do not retry at once), `reconfig*…` get
//!   `ERR_INVALID_STATE` (the client refreshes its routing); `…*write` applies to writes only.
//! - `replica.write_throttling`, `replica.write_throttling_by_size`, `replica.read_throttling`:
//!   past `N` requests (bytes) a second for the table, each partition taking `N / partitions + 1`
//!   as Pegasus does, a request is delayed, or rejected with `ERR_BUSY` after the delay.
//! - `manual_compact.once.trigger_time` / `target_level`: one compaction of the whole store
//!   when the trigger time is newer than the last one done.
//! - `rocksdb.usage_scenario`: the write-buffer and level-0 options of `normal`, `prefer_write`
//!   and `bulk_load`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use configcheck::envs::{Throttle, parse_throttling};

use super::storage::Scenario;
use super::write::WriteOp;

/// What happens to one client request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Served now.
    Pass,
    /// Served after the delay.
    Delay(Duration),
    /// `ERR_BUSY` after the delay.
    Reject(Duration),
    /// No answer at all (`timeout*…`).
    Ignore,
    /// `ERR_INVALID_STATE` (`reconfig*…`).
    Reconfig,
}

/// The rate bounds of one throttling env, per partition, with this second's count.
#[derive(Debug, Default)]
struct Throttler {
    terms: Vec<Throttle>,
    /// (unix second, units counted in it).
    window: Mutex<(u64, u64)>,
}

impl Throttler {
    fn new(value: Option<&String>, partitions: i32) -> Throttler {
        let share = |t: Throttle| Throttle {
            limit: t.limit / partitions.max(1) as u64 + 1,
            ..t
        };
        Throttler {
            terms: value
                .and_then(|v| parse_throttling(v))
                .unwrap_or_default()
                .into_iter()
                .map(share)
                .collect(),
            window: Mutex::default(),
        }
    }

    fn admit(&self, units: u64, now: u64) -> Admission {
        if self.terms.is_empty() {
            return Admission::Pass;
        }
        let count = {
            let mut w = self.window.lock().expect("throttle window");
            if w.0 != now {
                *w = (now, 0);
            }
            w.1 += units;
            w.1
        };
        let over = |reject: bool| {
            self.terms
                .iter()
                .find(|t| t.reject == reject && count > t.limit)
                .map(|t| Duration::from_millis(t.delay_ms))
        };
        if let Some(d) = over(true) {
            Admission::Reject(d)
        } else if let Some(d) = over(false) {
            Admission::Delay(d)
        } else {
            Admission::Pass
        }
    }
}

/// A table's environments, parsed.
#[derive(Debug, Default)]
pub struct TableEnvs {
    raw: BTreeMap<String, String>,
    partitions: i32,
    /// `default_ttl` in seconds (0: none).
    pub default_ttl: u32,
    /// `replica.deny_client_request`: (reconfig rather than timeout, reads too).
    deny: Option<(bool, bool)>,
    write: Throttler,
    write_bytes: Throttler,
    read: Throttler,
    /// `manual_compact.once.*`: (trigger time, target level; -1 is the bottommost).
    pub manual_compact: Option<(i64, i32)>,
    /// `rocksdb.usage_scenario`.
    pub scenario: Scenario,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TableEnvs {
    /// Parses `raw` for a table of `partitions` partitions; a value that does not parse (the
    /// meta checks them) is ignored.
    pub fn parse(raw: &BTreeMap<String, String>, partitions: i32) -> TableEnvs {
        let deny = raw
            .get("replica.deny_client_request")
            .and_then(|v| match v.as_str() {
                "timeout*all" => Some((false, true)),
                "timeout*write" => Some((false, false)),
                "reconfig*all" => Some((true, true)),
                "reconfig*write" => Some((true, false)),
                _ => None,
            });
        let manual_compact = raw
            .get("manual_compact.once.trigger_time")
            .and_then(|t| t.parse::<i64>().ok())
            .map(|t| {
                let level = raw
                    .get("manual_compact.once.target_level")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(-1);
                (t, level)
            });
        let scenario = match raw.get("rocksdb.usage_scenario").map(String::as_str) {
            Some("prefer_write") => Scenario::PreferWrite,
            Some("bulk_load") => Scenario::BulkLoad,
            _ => Scenario::Normal,
        };
        TableEnvs {
            raw: raw.clone(),
            partitions,
            default_ttl: raw
                .get("default_ttl")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            deny,
            write: Throttler::new(raw.get("replica.write_throttling"), partitions),
            write_bytes: Throttler::new(raw.get("replica.write_throttling_by_size"), partitions),
            read: Throttler::new(raw.get("replica.read_throttling"), partitions),
            manual_compact,
            scenario,
        }
    }

    /// Whether these were parsed from `raw` for `partitions` partitions.
    pub fn same(&self, raw: &BTreeMap<String, String>, partitions: i32) -> bool {
        self.raw == *raw && self.partitions == partitions
    }

    /// What happens to a write of `bytes` bytes (its request body) now.
    pub fn admit_write(&self, bytes: u64) -> Admission {
        if let Some((reconfig, _)) = self.deny {
            return if reconfig {
                Admission::Reconfig
            } else {
                Admission::Ignore
            };
        }
        let now = unix_now();
        match self.write.admit(1, now) {
            Admission::Pass => self.write_bytes.admit(bytes, now),
            other => other,
        }
    }

    /// What happens to a read now.
    pub fn admit_read(&self) -> Admission {
        match self.deny {
            Some((true, true)) => Admission::Reconfig,
            Some((false, true)) => Admission::Ignore,
            _ => self.read.admit(1, unix_now()),
        }
    }

    /// `op` with `default_ttl` as its TTL where it sets none.
    pub fn with_default_ttl(&self, mut op: WriteOp) -> WriteOp {
        if self.default_ttl == 0 {
            return op;
        }
        let expire = pegasus_protocol::key::expire_ts(self.default_ttl);
        let fill = |ts: &mut i32| {
            if *ts == 0 {
                *ts = expire;
            }
        };
        match &mut op {
            WriteOp::Put(r) => fill(&mut r.expire_ts_seconds),
            WriteOp::MultiPut(r) => fill(&mut r.expire_ts_seconds),
            WriteOp::CheckAndSet(r) => fill(&mut r.set_expire_ts_seconds),
            WriteOp::CheckAndMutate(r) => {
                for m in &mut r.mutate_list {
                    if m.operation == pegasus_protocol::types::mutate_operation::PUT {
                        fill(&mut m.set_expire_ts_seconds);
                    }
                }
            }
            WriteOp::Remove(_) | WriteOp::MultiRemove(_) | WriteOp::Incr(_) => {}
        }
        op
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envs(pairs: &[(&str, &str)], partitions: i32) -> TableEnvs {
        let raw = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TableEnvs::parse(&raw, partitions)
    }

    #[test]
    fn throttling_rejects_past_the_partition_share_within_one_second() {
        // 40 a second for a table of 4 partitions: 11 a second for each.
        let e = envs(&[("replica.write_throttling", "20*delay*5,40*reject*0")], 4);
        let t = &e.write;
        let decisions: Vec<Admission> = (0..13).map(|_| t.admit(1, 7)).collect();
        assert_eq!(decisions[..6], [Admission::Pass; 6]);
        assert_eq!(
            decisions[6..11],
            [Admission::Delay(Duration::from_millis(5)); 5]
        );
        assert_eq!(decisions[11..], [Admission::Reject(Duration::ZERO); 2]);
        // A new second starts a new count.
        assert_eq!(t.admit(1, 8), Admission::Pass);
    }

    #[test]
    fn deny_answers_as_pegasus_does() {
        let e = envs(&[("replica.deny_client_request", "reconfig*write")], 1);
        assert_eq!(e.admit_write(10), Admission::Reconfig);
        assert_eq!(e.admit_read(), Admission::Pass);
        let e = envs(&[("replica.deny_client_request", "timeout*all")], 1);
        assert_eq!(e.admit_write(10), Admission::Ignore);
        assert_eq!(e.admit_read(), Admission::Ignore);
        assert_eq!(envs(&[], 1).admit_write(1 << 30), Admission::Pass);
    }

    #[test]
    fn default_ttl_fills_only_writes_without_one() {
        let e = envs(&[("default_ttl", "60")], 1);
        let put = |ttl| {
            WriteOp::Put(pegasus_protocol::types::UpdateRequest {
                expire_ts_seconds: ttl,
                ..Default::default()
            })
        };
        let WriteOp::Put(r) = e.with_default_ttl(put(0)) else {
            unreachable!()
        };
        let now = pegasus_protocol::key::epoch_now() as i32;
        assert!(
            (now + 59..=now + 61).contains(&r.expire_ts_seconds),
            "{r:?}"
        );
        let WriteOp::Put(r) = e.with_default_ttl(put(5)) else {
            unreachable!()
        };
        assert_eq!(r.expire_ts_seconds, 5);
    }
}
