//! Table environments (`app_info.envs`): the keys the server gives an effect, with Pegasus's
//! names and value forms. One validation for everyone: configcheck checks `[meta_server.apps.*]
//! envs` with it (PC083), the meta refuses anything else in create and update requests, and the
//! shell checks before it sends.

/// A known key and the form of its value, as the refusal names it.
pub struct EnvKey {
    /// The key.
    pub name: &'static str,
    /// Its valid form.
    pub form: &'static str,
    check: fn(&str) -> bool,
}

/// Every key a table may carry.
pub const KEYS: &[EnvKey] = &[
    EnvKey {
        name: "default_ttl",
        form: "seconds, a non-negative integer (0: no TTL)",
        check: is_u32,
    },
    EnvKey {
        name: "replica.deny_client_request",
        form: "timeout*all, timeout*write, reconfig*all or reconfig*write",
        check: is_deny,
    },
    EnvKey {
        name: "replica.write_throttling",
        form: "N*delay*ms and/or N*reject*ms, comma-separated (N requests a second, K/M allowed)",
        check: is_throttling,
    },
    EnvKey {
        name: "replica.write_throttling_by_size",
        form: "N*delay*ms and/or N*reject*ms, comma-separated (N bytes a second, K/M allowed)",
        check: is_throttling,
    },
    EnvKey {
        name: "replica.read_throttling",
        form: "N*delay*ms and/or N*reject*ms, comma-separated (N requests a second, K/M allowed)",
        check: is_throttling,
    },
    EnvKey {
        name: "manual_compact.once.trigger_time",
        form: "unix seconds, a non-negative integer",
        check: is_u63,
    },
    EnvKey {
        name: "manual_compact.once.target_level",
        form: "-1 (the bottommost level) or a level 1..=6",
        check: is_level,
    },
    EnvKey {
        name: "rocksdb.usage_scenario",
        form: "normal, prefer_write or bulk_load",
        check: is_scenario,
    },
];

/// Whether `value` is valid for `key`; the refusal, naming the valid form, otherwise.
pub fn check(key: &str, value: &str) -> Result<(), String> {
    let Some(known) = KEYS.iter().find(|k| k.name == key) else {
        let names: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        return Err(format!(
            "unknown table env `{key}`; supported: {}",
            names.join(", ")
        ));
    };
    if (known.check)(value) {
        Ok(())
    } else {
        Err(format!("`{key}={value}`: expected {}", known.form))
    }
}

fn is_u32(v: &str) -> bool {
    v.parse::<u32>().is_ok()
}

fn is_u63(v: &str) -> bool {
    v.parse::<i64>().is_ok_and(|n| n >= 0)
}

fn is_level(v: &str) -> bool {
    v.parse::<i32>()
        .is_ok_and(|n| n == -1 || (1..=6).contains(&n))
}

fn is_deny(v: &str) -> bool {
    matches!(
        v,
        "timeout*all" | "timeout*write" | "reconfig*all" | "reconfig*write"
    )
}

fn is_scenario(v: &str) -> bool {
    matches!(v, "normal" | "prefer_write" | "bulk_load")
}

/// One `N*delay*ms` or `N*reject*ms` term of a throttling env.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttle {
    /// Units (requests or bytes) a second past which the action applies.
    pub limit: u64,
    /// Reject (with `ERR_BUSY`) rather than delay.
    pub reject: bool,
    /// The delay (before answering or rejecting), milliseconds.
    pub delay_ms: u64,
}

/// Parses `k=v,k=v` (`[meta_server.apps.*] envs`, the shell's `create -e`), each pair checked;
/// the first refusal otherwise.
pub fn parse_list(list: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("`{pair}`: expected key=value"))?;
        let (k, v) = (k.trim(), v.trim());
        check(k, v)?;
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

/// Parses a throttling env: comma-separated terms, at most one of each action.
pub fn parse_throttling(v: &str) -> Option<Vec<Throttle>> {
    let mut out: Vec<Throttle> = Vec::new();
    for term in v.split(',') {
        let mut parts = term.trim().split('*');
        let (Some(n), Some(action), Some(ms), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let (digits, scale) = match n.as_bytes().last()? {
            b'K' | b'k' => (&n[..n.len() - 1], 1_000),
            b'M' | b'm' => (&n[..n.len() - 1], 1_000_000),
            _ => (n, 1),
        };
        let limit = digits.parse::<u64>().ok()?.checked_mul(scale)?;
        let reject = match action {
            "delay" => false,
            "reject" => true,
            _ => return None,
        };
        let delay_ms = ms.parse::<u64>().ok().filter(|ms| *ms <= 60_000)?;
        if limit == 0 || out.iter().any(|t| t.reject == reject) {
            return None;
        }
        out.push(Throttle {
            limit,
            reject,
            delay_ms,
        });
    }
    Some(out)
}

fn is_throttling(v: &str) -> bool {
    parse_throttling(v).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_keys_take_their_forms_and_refusals_name_the_form() {
        for (k, v) in [
            ("default_ttl", "86400"),
            ("default_ttl", "0"),
            ("replica.deny_client_request", "reconfig*write"),
            ("replica.write_throttling", "100*reject*0"),
            ("replica.write_throttling", "1K*delay*100,2K*reject*200"),
            ("replica.write_throttling_by_size", "10M*delay*50"),
            ("manual_compact.once.trigger_time", "1700000000"),
            ("manual_compact.once.target_level", "-1"),
            ("rocksdb.usage_scenario", "bulk_load"),
        ] {
            assert_eq!(check(k, v), Ok(()), "{k}={v}");
        }
        for (k, v) in [
            ("default_ttl", "-1"),
            ("default_ttl", "1d"),
            ("replica.deny_client_request", "timeout"),
            ("replica.write_throttling", "100*wait*10"),
            ("replica.write_throttling", "0*reject*10"),
            ("replica.write_throttling", "100*reject*10,200*reject*10"),
            ("replica.write_throttling", "100*reject"),
            ("manual_compact.once.target_level", "7"),
            ("rocksdb.usage_scenario", "fast"),
        ] {
            let e = check(k, v).unwrap_err();
            assert!(e.contains("expected"), "{k}={v}: {e}");
        }
        assert_eq!(
            parse_list("default_ttl=60, rocksdb.usage_scenario=bulk_load"),
            Ok(vec![
                ("default_ttl".into(), "60".into()),
                ("rocksdb.usage_scenario".into(), "bulk_load".into())
            ])
        );
        assert!(parse_list("default_ttl").unwrap_err().contains("key=value"));
        assert!(
            parse_list("default_ttl=x")
                .unwrap_err()
                .contains("expected")
        );
        let e = check("replica.slow_query", "1").unwrap_err();
        assert!(e.contains("unknown") && e.contains("default_ttl"), "{e}");
        assert_eq!(
            parse_throttling("2K*delay*100,3K*reject*5"),
            Some(vec![
                Throttle {
                    limit: 2000,
                    reject: false,
                    delay_ms: 100
                },
                Throttle {
                    limit: 3000,
                    reject: true,
                    delay_ms: 5
                }
            ])
        );
    }
}
