//! A partition's health, from its configuration: the one rule the meta's metrics, its HTTP API
//! and status page, the shell, the onebox and the deploy tool all count by (Pegasus's shell
//! and meta count the same way).

use crate::types::PartitionConfiguration;

/// Pegasus's default `[replication] mutation_2pc_min_replica_count`: the members a write needs.
/// The meta classifies with the configured value; a client, which cannot read it, with this.
pub const DEFAULT_MIN_WRITE_MEMBERS: usize = 2;

/// A partition's health, healthiest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PartitionHealth {
    /// A primary and every copy.
    Healthy,
    /// Writable, but copies short.
    WritableIll,
    /// A primary with fewer members than a write needs.
    Unwritable,
    /// Members, but no primary.
    Unreadable,
    /// No member at all.
    Dead,
}

impl PartitionHealth {
    /// Every kind, healthiest first.
    pub const ALL: [PartitionHealth; 5] = [
        PartitionHealth::Healthy,
        PartitionHealth::WritableIll,
        PartitionHealth::Unwritable,
        PartitionHealth::Unreadable,
        PartitionHealth::Dead,
    ];

    /// A partition with or without a primary, `secondaries` secondaries and `max_replica_count`
    /// copies wanted, where a write needs `min_write_members` members (never more than are
    /// wanted).
    pub fn of(
        has_primary: bool,
        secondaries: usize,
        max_replica_count: i32,
        min_write_members: usize,
    ) -> PartitionHealth {
        let members = usize::from(has_primary) + secondaries;
        let wanted = max_replica_count.max(1) as usize;
        if members == 0 {
            PartitionHealth::Dead
        } else if !has_primary {
            PartitionHealth::Unreadable
        } else if members < min_write_members.min(wanted) {
            PartitionHealth::Unwritable
        } else if members < wanted {
            PartitionHealth::WritableIll
        } else {
            PartitionHealth::Healthy
        }
    }

    /// Of a partition as the routing shows it.
    pub fn of_config(p: &PartitionConfiguration, min_write_members: usize) -> PartitionHealth {
        PartitionHealth::of(
            p.primary.socket_addr().is_some(),
            p.secondaries.len(),
            p.max_replica_count,
            min_write_members,
        )
    }

    /// Whether it takes reads (it has a primary).
    pub fn readable(self) -> bool {
        self <= PartitionHealth::Unwritable
    }

    /// Whether it takes writes.
    pub fn writable(self) -> bool {
        self <= PartitionHealth::WritableIll
    }

    /// Its label value (and CSS class on the status page).
    pub fn name(self) -> &'static str {
        match self {
            PartitionHealth::Healthy => "healthy",
            PartitionHealth::WritableIll => "writable_ill",
            PartitionHealth::Unwritable => "unwritable",
            PartitionHealth::Unreadable => "unreadable",
            PartitionHealth::Dead => "dead",
        }
    }
}

/// A table's partitions counted by health, as Pegasus's shell shows them (`ls -d`, `app -d`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// A primary and `max_replica_count - 1` secondaries.
    pub fully_healthy: i32,
    /// Not fully healthy.
    pub unhealthy: i32,
    /// No primary, or fewer members than a write needs.
    pub write_unhealthy: i32,
    /// No primary.
    pub read_unhealthy: i32,
}

impl Health {
    /// Counts partitions of these healths.
    pub fn count(healths: impl IntoIterator<Item = PartitionHealth>) -> Health {
        let mut h = Health::default();
        for health in healths {
            if health == PartitionHealth::Healthy {
                h.fully_healthy += 1;
            } else {
                h.unhealthy += 1;
            }
            h.write_unhealthy += i32::from(!health.writable());
            h.read_unhealthy += i32::from(!health.readable());
        }
        h
    }

    /// Counts the partitions of a table's routing.
    pub fn of(partitions: &[PartitionConfiguration], min_write_members: usize) -> Health {
        Health::count(
            partitions
                .iter()
                .map(|p| PartitionHealth::of_config(p, min_write_members)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::RpcAddress;

    fn partition(primary: bool, secondaries: usize, max: i32) -> PartitionConfiguration {
        let addr = |p| RpcAddress::new(std::net::SocketAddrV4::new([127, 0, 0, 1].into(), p));
        PartitionConfiguration {
            primary: if primary {
                addr(1)
            } else {
                RpcAddress::INVALID
            },
            secondaries: (0..secondaries as u16).map(|i| addr(10 + i)).collect(),
            max_replica_count: max,
            ..Default::default()
        }
    }

    #[test]
    fn a_routing_is_counted_as_pegasus_shell_does() {
        let parts = [
            partition(true, 2, 3),  // fully healthy
            partition(true, 1, 3),  // unhealthy, writable
            partition(true, 0, 3),  // too few members to write
            partition(false, 2, 3), // no primary: neither reads nor writes
            partition(true, 0, 1),  // one copy wanted, one there
        ];
        assert_eq!(
            Health::of(&parts, DEFAULT_MIN_WRITE_MEMBERS),
            Health {
                fully_healthy: 2,
                unhealthy: 3,
                write_unhealthy: 2,
                read_unhealthy: 1,
            }
        );
    }

    #[test]
    fn each_kind_of_partition_is_classified_and_counted() {
        use PartitionHealth::*;
        let of = |primary, secondaries| PartitionHealth::of(primary, secondaries, 3, 2);
        assert_eq!(of(true, 2), Healthy);
        assert_eq!(of(true, 1), WritableIll);
        assert_eq!(of(true, 0), Unwritable);
        assert_eq!(of(false, 1), Unreadable);
        assert_eq!(of(false, 0), Dead);
        // A table of one copy is whole and writable with its primary alone.
        assert_eq!(PartitionHealth::of(true, 0, 1, 2), Healthy);
        // The configured minimum counts: with 3, a primary and one secondary cannot write.
        assert_eq!(PartitionHealth::of(true, 1, 3, 3), Unwritable);
        let h = Health::count([Healthy, WritableIll, Unwritable, Unreadable, Dead]);
        assert_eq!(
            h,
            Health {
                fully_healthy: 1,
                unhealthy: 4,
                write_unhealthy: 3,
                read_unhealthy: 2,
            }
        );
    }
}
