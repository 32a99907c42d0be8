//! Which offsets of each partition are durable, and so how far a partition may be committed.
//!
//! Kafka commits one offset per partition meaning "everything before this is done". Batches
//! become durable out of order (a later batch can be acknowledged before an earlier one is
//! retried), so the ledger keeps every consumed offset of a partition in order with a durable
//! flag, and the committable offset only moves past a prefix that is durable throughout.
//!
//! Each assignment of a partition gets a new epoch. An acknowledgement that arrives after the
//! partition was revoked (and perhaps assigned back) carries the old epoch and is ignored: another
//! consumer may have committed past it, or will redeliver it.

use std::collections::{HashMap, VecDeque};

/// A partition: index of its topic in the configured topic list, and the partition number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub topic: usize,
    pub partition: i32,
}

#[derive(Debug, Default)]
struct PartitionLog {
    epoch: u64,
    /// Consumed offsets in order, with whether they are durable.
    pending: VecDeque<(i64, bool)>,
    /// The next offset to commit (one past the durable prefix).
    committable: Option<i64>,
    /// What was last committed.
    committed: Option<i64>,
}

#[derive(Debug, Default)]
pub struct Ledger {
    partitions: HashMap<PartitionKey, PartitionLog>,
    next_epoch: u64,
}

impl Ledger {
    /// Starts tracking a newly assigned partition; returns its epoch.
    pub fn assign(&mut self, key: PartitionKey) -> u64 {
        self.next_epoch += 1;
        let epoch = self.next_epoch;
        self.partitions.insert(
            key,
            PartitionLog {
                epoch,
                ..PartitionLog::default()
            },
        );
        epoch
    }

    /// Stops tracking a revoked partition; returns the offset to commit for it, if any is new.
    pub fn revoke(&mut self, key: PartitionKey) -> Option<i64> {
        let log = self.partitions.remove(&key)?;
        log.committable.filter(|c| Some(*c) != log.committed)
    }

    /// Records a consumed offset; returns the partition's epoch, or `None` when the partition is
    /// not assigned (a message fetched just before a revocation).
    pub fn consumed(&mut self, key: PartitionKey, offset: i64) -> Option<u64> {
        let log = self.partitions.get_mut(&key)?;
        match log.pending.back() {
            // Redelivery within one assignment (a seek) starts the order over; durable offsets
            // before it stay committable.
            Some((last, _)) if *last >= offset => log.pending.retain(|(o, _)| *o < offset),
            _ => {}
        }
        log.pending.push_back((offset, false));
        Some(log.epoch)
    }

    /// Marks an offset durable (ignored for a stale epoch or an unknown offset).
    pub fn durable(&mut self, key: PartitionKey, epoch: u64, offset: i64) {
        let Some(log) = self.partitions.get_mut(&key) else {
            return;
        };
        if log.epoch != epoch {
            return;
        }
        if let Ok(i) = log.pending.binary_search_by_key(&offset, |(o, _)| *o) {
            log.pending[i].1 = true;
        }
        while let Some(&(o, true)) = log.pending.front() {
            log.committable = Some(o + 1);
            log.pending.pop_front();
        }
    }

    /// Partitions whose committable offset moved since their last commit.
    pub fn to_commit(&self) -> Vec<(PartitionKey, i64)> {
        let mut out: Vec<_> = self
            .partitions
            .iter()
            .filter_map(|(k, log)| {
                let c = log.committable?;
                (Some(c) != log.committed).then_some((*k, c))
            })
            .collect();
        out.sort();
        out
    }

    /// Notes that `offset` was committed for `key`.
    pub fn committed(&mut self, key: PartitionKey, offset: i64) {
        if let Some(log) = self.partitions.get_mut(&key) {
            log.committed = Some(offset);
        }
    }

    /// Consumed offsets of `key` not yet durable.
    pub fn outstanding(&self, key: PartitionKey) -> usize {
        self.partitions.get(&key).map_or(0, |l| l.pending.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P0: PartitionKey = PartitionKey {
        topic: 0,
        partition: 0,
    };

    #[test]
    fn commits_only_a_durable_prefix() {
        let mut l = Ledger::default();
        let e = l.assign(P0);
        for o in 10..15 {
            assert_eq!(l.consumed(P0, o), Some(e));
        }
        // Later offsets durable first: nothing committable yet.
        l.durable(P0, e, 12);
        l.durable(P0, e, 13);
        assert!(l.to_commit().is_empty());
        l.durable(P0, e, 10);
        assert_eq!(l.to_commit(), vec![(P0, 11)]);
        l.durable(P0, e, 11);
        assert_eq!(l.to_commit(), vec![(P0, 14)]);
        l.committed(P0, 14);
        assert!(l.to_commit().is_empty());
        assert_eq!(l.outstanding(P0), 1);
        l.durable(P0, e, 14);
        assert_eq!(l.to_commit(), vec![(P0, 15)]);
    }

    #[test]
    fn stale_epochs_and_unassigned_partitions_are_ignored() {
        let mut l = Ledger::default();
        let old = l.assign(P0);
        l.consumed(P0, 0);
        assert_eq!(l.revoke(P0), None);
        let new = l.assign(P0);
        assert_ne!(old, new);
        l.consumed(P0, 0);
        l.durable(P0, old, 0);
        assert!(l.to_commit().is_empty());
        let p1 = PartitionKey {
            topic: 0,
            partition: 1,
        };
        assert_eq!(l.consumed(p1, 5), None);
        l.durable(P0, new, 0);
        assert_eq!(l.revoke(P0), Some(1));
    }

    #[test]
    fn redelivery_restarts_the_order() {
        let mut l = Ledger::default();
        let e = l.assign(P0);
        for o in 0..4 {
            l.consumed(P0, o);
        }
        l.durable(P0, e, 0);
        // Redelivered from offset 2: 2 and 3 are pending once, not twice.
        l.consumed(P0, 2);
        assert_eq!(l.outstanding(P0), 2);
        l.durable(P0, e, 1);
        l.durable(P0, e, 2);
        assert_eq!(l.to_commit(), vec![(P0, 3)]);
    }
}
