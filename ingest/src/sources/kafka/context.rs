//! librdkafka callbacks: rebalances, commit results and statistics (consumer lag).
//!
//! They run inside `poll`, on the consumer thread. On revocation the source must not give a
//! partition up with rows in flight and nothing committed, or the next owner would redo work that
//! is about to become durable anyway (harmless, deduplicated) but, worse, this process would later
//! commit offsets it no longer owns. So: submit the built batch, wait for the revoked partitions'
//! rows (bounded by `drain_timeout_secs`), commit their durable prefix synchronously, forget them.

use super::{PartitionKey, Shared};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub struct SourceContext {
    shared: Arc<Shared>,
}

impl SourceContext {
    pub(super) fn new(shared: Arc<Shared>) -> SourceContext {
        SourceContext { shared }
    }

    fn keys(&self, tpl: &TopicPartitionList) -> Vec<PartitionKey> {
        tpl.elements()
            .iter()
            .filter_map(|e| self.shared.key(e.topic(), e.partition()))
            .collect()
    }
}

impl ClientContext for SourceContext {
    /// librdkafka's statistics (every `statistics.interval.ms`): the consumer lag per configured
    /// topic, summed over this member's partitions.
    fn stats(&self, statistics: rdkafka::Statistics) {
        for (topic, t) in &statistics.topics {
            let lag: i64 = t
                .partitions
                .iter()
                // Partition -1 is librdkafka's internal one; -1 lag means not known yet.
                .filter(|(p, _)| **p >= 0 && self.shared.key(topic, **p).is_some())
                .map(|(_, p)| p.consumer_lag.max(0))
                .sum();
            if self.shared.topic_index.contains_key(topic.as_str()) {
                self.shared
                    .metrics
                    .kafka
                    .consumer_lag
                    .with_label_values(&[topic])
                    .set(lag);
            }
        }
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let shared = &self.shared;
        let metrics = &shared.metrics.kafka;
        let Rebalance::Revoke(tpl) = rebalance else {
            if let Rebalance::Error(e) = rebalance {
                metrics.rebalances.with_label_values(&["error"]).inc();
                tracing::warn!(error = %e, "rebalance error");
            }
            return;
        };
        metrics.rebalances.with_label_values(&["revoke"]).inc();
        let keys = self.keys(tpl);
        let mut p = shared.pipeline();
        let drained = p
            .drain_until(shared.drain_timeout, |p| {
                keys.iter().all(|k| p.ledger.outstanding(*k) == 0)
            })
            .unwrap_or(false);
        let offsets: Vec<_> = keys
            .iter()
            .filter_map(|k| p.ledger.revoke(*k).map(|o| (*k, o)))
            .collect();
        drop(p);
        if !drained {
            tracing::warn!(
                partitions = keys.len(),
                "revoked with rows still in flight; the next owner consumes them again"
            );
        }
        if !offsets.is_empty() {
            super::start_commit_clock(shared);
            // The result arrives through `commit_callback` as well.
            let _ = consumer.commit(&shared.commit_list(&offsets), CommitMode::Sync);
        }
        if shared.paused.swap(false, Ordering::Relaxed) {
            // Paused state belongs to the old assignment; the new one starts unpaused.
            metrics.paused_partitions.set(0);
        }
        tracing::info!(partitions = keys.len(), "partitions revoked");
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(tpl) = rebalance else {
            return;
        };
        let shared = &self.shared;
        shared
            .metrics
            .kafka
            .rebalances
            .with_label_values(&["assign"])
            .inc();
        let keys = self.keys(tpl);
        {
            let mut p = shared.pipeline();
            for k in &keys {
                p.ledger.assign(*k);
            }
        }
        let described: Vec<String> = tpl
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => format!("{}:{}@{o}", e.topic(), e.partition()),
                _ => format!("{}:{}", e.topic(), e.partition()),
            })
            .collect();
        tracing::info!(partitions = ?described, "partitions assigned");
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        observe_commit(&self.shared, result);
    }
}

/// Counts a commit result and its latency since the commit was issued.
pub(super) fn observe_commit(shared: &Shared, result: KafkaResult<()>) {
    let metrics = &shared.metrics.kafka;
    let label = if result.is_ok() { "ok" } else { "error" };
    metrics.commits.with_label_values(&[label]).inc();
    if let Some(started) = shared
        .commit_started
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
    }
    if let Err(e) = result {
        tracing::warn!(error = %e, "offset commit failed");
    }
}
