//! PacificA replication of one partition, as Pegasus does it, written as a state machine that
//! performs no I/O: a [`Replica`] takes [`Input`]s (client writes, messages from its group, the
//! disk's "logged" notices, configurations from the meta, timer ticks) and returns [`Output`]s
//! (messages to send, mutations to append to the private log or to apply to the store, answers
//! to clients, requests to the meta). A thin driver in the server does the I/O; the tests drive
//! several replicas and a meta through a seeded simulation of drops, duplicates, reordering and
//! crashes that lose unsynced appends.
//!
//! # Layout
//! - this file: the vocabulary ([`Config`], [`Mutation`], [`Message`], [`Input`], [`Output`])
//! - [`replica`]: [`Replica`], the roles, the prepare list, the commit point, reconciliation
//! - [`sim`]: the random numbers of the seeded simulations and tests
//!
//! # The protocol, as built here
//! - The meta owns membership: a [`Config`] names the primary and the secondaries of a
//!   `ballot`; every change raises the ballot.
//! - The primary gives each write the next `decree` under its ballot, appends it to its log and
//!   sends a [`Message::Prepare`] to every secondary, carrying its commit point. A mutation
//!   commits, in decree order, once it is logged locally and acknowledged by every secondary of
//!   the current configuration; only then is it applied and the client answered.
//! - A secondary drops a prepare of a lower ballot (answering [`Message::Reject`]), adopts a
//!   higher one, acknowledges after its own append, and applies up to the commit point.
//! - A prepare not acknowledged goes again, every sixth of the prepare timeout, to whoever has not
//!   acknowledged it (lost, or refused by a copy that had not heard of the configuration yet).
//!   A secondary that does not acknowledge within the prepare timeout: the primary stops taking
//!   writes and asks the meta to remove it ([`Output::Remove`]). A primary of a new ballot
//!   re-prepares everything it holds past its commit point under that ballot (reconciliation)
//!   before it commits anything new. A secondary that committed one of those decrees already
//!   logs it again under the new ballot before it acknowledges (its store may lose it, and its
//!   log's older-ballot entry would not count after a restart).
//! - A replica that restarts is inactive: it acknowledges nothing until the meta puts it in a
//!   configuration again.
//! - A replica whose log may have lost appends it reported logged (fsync off, and the machine
//!   restarted: [`Replica::set_lossy`]) takes no part as the copy it was: named a member of a
//!   group with others, it asks the meta to remove it, and counts again once it has learned.
//! - A learner holding a gap below the primary's commit point (a prepare it missed before the
//!   primary committed without it) copies again after a prepare timeout; a primary whose
//!   learner's reports stay short of its commit point for that long sends an empty write, so
//!   that the learner hears of the commit point and sees the gap.

pub mod replica;
pub mod sim;

pub use replica::{Options, Replica, Role};

/// A configuration of the partition's group, owned by the meta.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config<N> {
    /// Raised by every change.
    pub ballot: u64,
    /// The primary, if any.
    pub primary: Option<N>,
    /// The secondaries.
    pub secondaries: Vec<N>,
}

impl<N: PartialEq> Config<N> {
    /// Whether `node` is the primary or a secondary.
    pub fn has_member(&self, node: &N) -> bool {
        self.primary.as_ref() == Some(node) || self.secondaries.contains(node)
    }

    /// The number of members.
    pub fn members(&self) -> usize {
        usize::from(self.primary.is_some()) + self.secondaries.len()
    }
}

impl<N> Default for Config<N> {
    fn default() -> Self {
        Config {
            ballot: 0,
            primary: None,
            secondaries: Vec::new(),
        }
    }
}

/// One write with its place in the partition's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mutation<W> {
    /// The ballot under which it was (last) prepared.
    pub ballot: u64,
    /// Its position, from 1, without gaps.
    pub decree: u64,
    /// The write; `None` is an empty write, which only carries the commit point forward.
    pub write: Option<W>,
}

/// What the members of a group send each other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<W> {
    /// Primary to secondary: log this mutation.
    Prepare {
        /// The primary's ballot.
        ballot: u64,
        /// The primary's commit point when it took up this ballot: any decree up to it was
        /// committed before, so a secondary may apply what it holds there whatever its ballot.
        ballot_start: u64,
        /// The mutation.
        mutation: Mutation<W>,
        /// The primary's commit point now.
        committed: u64,
    },
    /// Secondary to primary: `decree` is in my log under `ballot`.
    Ack {
        /// The ballot.
        ballot: u64,
        /// The decree.
        decree: u64,
    },
    /// Secondary to a primary of a lower ballot: mine is higher.
    Reject {
        /// The secondary's ballot.
        ballot: u64,
    },
    /// Primary to a node the meta proposed as a new copy: become my learner. Every mutation
    /// from `prepare_start` on comes to it as a prepare; what is before, it copies (a checkpoint
    /// and the log past it: [`Output::StartLearning`], then [`Input::Learned`]).
    Learn {
        /// The primary's ballot.
        ballot: u64,
        /// The first decree prepared to the learner.
        prepare_start: u64,
    },
    /// Learner to primary: I hold, durably, every decree up to `logged_through`.
    LearnDone {
        /// The ballot it learns under.
        ballot: u64,
        /// Its contiguous, logged history.
        logged_through: u64,
    },
}

/// What a replica is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input<N, W> {
    /// A client's write, answered by an [`Output::Reply`] with the same `id`.
    Write {
        /// The caller's id for it.
        id: u64,
        /// The write.
        write: W,
    },
    /// A message from another member.
    Receive {
        /// The sender.
        from: N,
        /// The message.
        message: Message<W>,
    },
    /// An [`Output::Append`] is durable.
    Logged {
        /// The appended mutation's ballot.
        ballot: u64,
        /// Its decree.
        decree: u64,
    },
    /// The meta's current configuration.
    Config(Config<N>),
    /// Primary: the meta proposes `learner` as a new copy (ADD_SECONDARY).
    AddLearner {
        /// The node.
        learner: N,
    },
    /// Learner: its store now holds every decree up to `checkpoint` (copied from the primary),
    /// and `tail` is what the primary held past it.
    Learned {
        /// The decree the copied store is at.
        checkpoint: u64,
        /// The primary's mutations past it.
        tail: Vec<Mutation<W>>,
    },
    /// The meta granted this replica's [`Output::RaiseBallot`]: `ballot` was made after it
    /// asked, so after it restarted, and it may be primary there and in any later ballot.
    Granted {
        /// The new ballot.
        ballot: u64,
    },
    /// Time passes: one tick.
    Tick,
}

/// Why a write was not accepted; the client may retry elsewhere or later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// Not a serving primary (`ERR_INVALID_STATE`): ask the meta again.
    NotPrimary,
    /// Too many mutations in flight past the commit point (`ERR_CAPACITY_EXCEEDED`).
    CapacityExceeded,
    /// Fewer members than `mutation_2pc_min_replica_count` (`ERR_NOT_ENOUGH_MEMBER`).
    NotEnoughMember,
}

/// What a replica asks its driver to do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output<N, W> {
    /// Send a message.
    Send {
        /// The receiver.
        to: N,
        /// The message.
        message: Message<W>,
    },
    /// Append to the private log; answer with [`Input::Logged`] once durable.
    Append(Mutation<W>),
    /// Apply a committed mutation to the store (in decree order, each once).
    Apply(Mutation<W>),
    /// Answer a client: the decree its write committed at, or why it was refused.
    Reply {
        /// The [`Input::Write`]'s id.
        id: u64,
        /// The outcome.
        result: Result<u64, WriteError>,
    },
    /// Learner: copy the primary's store and the log past it, then answer with
    /// [`Input::Learned`].
    StartLearning {
        /// The primary.
        from: N,
        /// Its ballot.
        ballot: u64,
    },
    /// Primary: ask the meta to make a learner that caught up a secondary
    /// (UPGRADE_TO_SECONDARY) of configuration `ballot`.
    Upgrade {
        /// The learner.
        learner: N,
        /// The configuration to change.
        ballot: u64,
    },
    /// Ask the meta for the next ballot with the same members (PRIMARY_FORCE_UPDATE_BALLOT);
    /// answer with [`Input::Granted`] if it is given. A restarted replica named primary asks,
    /// for its process before may have used that ballot (sending prepares it never logged); so
    /// does a primary whose learner, with its upgrade asked against this ballot, fell silent.
    RaiseBallot {
        /// The configuration to change.
        ballot: u64,
    },
    /// Ask the meta to remove a member that did not acknowledge in time.
    Remove {
        /// The member.
        member: N,
        /// The ballot it was a member of.
        ballot: u64,
    },
}
