//! One flush in two stages: the dedup lookup against `dedup_keys`, then the inserts; each
//! statement retried with backoff.

use super::{Ack, Batch, SinkError};
use crate::config::SinkConfig;
use crate::metrics::Metrics;
use crate::model::{
    DeadLetterRow, EventRow, LookupRow, SessionCallRow, lookup_rows, sort_for_storage,
};
use crate::store::{KeyTable, Store};
use backon::{ExponentialBuilder, Retryable};
use serde::Serialize;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Shipped SQL: which keys of a flush are stored already.
pub const EXISTING_DEDUP_KEYS_SQL: &str = include_str!("../../sql/existing_dedup_keys.sql");

#[derive(Debug, clickhouse::Row, Serialize)]
struct DedupKeyRow {
    dedup_key: u64,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    first_ingest_time: chrono::DateTime<chrono::Utc>,
}

pub(super) struct Writer {
    store: Store,
    config: SinkConfig,
    metrics: Metrics,
}

impl Writer {
    pub(super) fn new(store: Store, config: SinkConfig, metrics: Metrics) -> Writer {
        Writer {
            store,
            config,
            metrics,
        }
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.config.retry_initial_backoff_ms))
            .with_max_delay(Duration::from_millis(self.config.retry_max_backoff_ms))
            .with_max_times(self.config.retry_max_attempts.saturating_sub(1) as usize)
            .with_jitter()
    }

    /// Stage one of a flush: the keys of these batches that are stored already. Runs while the
    /// previous flush is still inserting (see `super::run`).
    #[tracing::instrument(name = "sink.dedup_lookup", skip_all, fields(batches = batches.len()))]
    pub(super) async fn lookup(&self, batches: &[Batch]) -> Result<HashSet<u64>, SinkError> {
        let all_keys: Vec<u64> = batches
            .iter()
            .flat_map(|b| b.events.iter().map(|e| e.dedup_key))
            .collect();
        self.retrying(|| self.existing_keys(&all_keys)).await
    }

    /// Stage two: inserts what `existing` does not hold; one result per batch, in order, and the
    /// keys it stored (empty when it failed).
    #[tracing::instrument(
        name = "sink.batch",
        skip_all,
        fields(batches = batches.len(), rows = batches.iter().map(Batch::rows).sum::<usize>())
    )]
    pub(super) async fn store(
        &self,
        batches: &[Batch],
        existing: &HashSet<u64>,
    ) -> (Vec<Result<Ack, SinkError>>, HashSet<u64>) {
        let started = Instant::now();
        let result = self.store_inner(batches, existing).await;
        self.metrics
            .insert_seconds
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok((acks, stored)) => (acks.into_iter().map(Ok).collect(), stored),
            Err(e) => {
                self.metrics.insert_failures.inc();
                tracing::error!(error = %e, "giving up on a ClickHouse write");
                (
                    batches.iter().map(|_| Err(e.clone())).collect(),
                    HashSet::new(),
                )
            }
        }
    }

    /// A failed lookup fails every batch of the flush.
    pub(super) fn failed(&self, batches: &[Batch], e: SinkError) -> Vec<Result<Ack, SinkError>> {
        self.metrics.insert_failures.inc();
        tracing::error!(error = %e, "giving up on a ClickHouse dedup lookup");
        batches.iter().map(|_| Err(e.clone())).collect()
    }

    async fn store_inner(
        &self,
        batches: &[Batch],
        existing: &HashSet<u64>,
    ) -> Result<(Vec<Ack>, HashSet<u64>), SinkError> {
        let mut seen: HashSet<u64> = HashSet::new();
        let mut fresh: Vec<&EventRow> = Vec::new();
        let mut dead: Vec<&DeadLetterRow> = Vec::new();
        let mut calls: Vec<&SessionCallRow> = Vec::new();
        let mut acks = Vec::with_capacity(batches.len());
        for batch in batches {
            let mut ack = Ack::default();
            for event in &batch.events {
                if existing.contains(&event.dedup_key) || !seen.insert(event.dedup_key) {
                    ack.duplicates += 1;
                    self.metrics
                        .duplicates
                        .with_label_values(&[&event.source])
                        .inc();
                } else {
                    ack.stored += 1;
                    fresh.push(event);
                }
            }
            ack.dead_lettered = batch.dead_letters.len();
            dead.extend(batch.dead_letters.iter());
            ack.session_calls = batch.session_calls.len();
            calls.extend(batch.session_calls.iter());
            acks.push(ack);
        }

        // In each table's sorting key, so ClickHouse need not sort (see `sort_for_storage`).
        sort_for_storage(&mut fresh);
        // Order matters: a key is recorded only after its event is durable.
        self.retrying(|| self.store.insert_rows("events", &fresh))
            .await?;
        // Indexed before the keys are recorded, so a stored key implies an indexed event.
        let lookups = lookup_rows(&fresh);
        let lookup_refs: Vec<&LookupRow> = lookups.iter().collect();
        self.retrying(|| self.store.insert_rows("event_lookup_input", &lookup_refs))
            .await?;
        let now = chrono::Utc::now();
        let mut keys: Vec<DedupKeyRow> = fresh
            .iter()
            .map(|e| DedupKeyRow {
                dedup_key: e.dedup_key,
                first_ingest_time: now,
            })
            .collect();
        keys.sort_unstable_by_key(|k| k.dedup_key);
        let key_refs: Vec<&DedupKeyRow> = keys.iter().collect();
        self.retrying(|| self.store.insert_rows("dedup_keys", &key_refs))
            .await?;
        self.retrying(|| self.store.insert_rows("dead_letters", &dead))
            .await?;
        // Aggregated with idempotent functions: a retried or redelivered call counts once.
        self.retrying(|| self.store.insert_rows("session_calls", &calls))
            .await?;

        for e in &fresh {
            self.metrics.stored.with_label_values(&[&e.source]).inc();
            self.metrics.exchanges.observe(e);
        }
        for d in &dead {
            self.metrics
                .dead_letters
                .with_label_values(&[&d.error_kind])
                .inc();
        }
        Ok((acks, seen))
    }

    async fn existing_keys(&self, keys: &[u64]) -> Result<HashSet<u64>, crate::store::StoreError> {
        if keys.is_empty() {
            return Ok(HashSet::new());
        }
        let table = KeyTable {
            name: "flush_keys",
            column: "dedup_key",
            keys,
        };
        let found = self
            .store
            .fetch_keys_in(EXISTING_DEDUP_KEYS_SQL, table)
            .await?;
        Ok(found.into_iter().collect())
    }

    async fn retrying<T, E, F, Fut>(&self, op: F) -> Result<T, SinkError>
    where
        E: std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempts = 0u32;
        op.retry(self.backoff())
            .notify(|e, delay| {
                attempts += 1;
                self.metrics.insert_retries.inc();
                tracing::warn!(error = %e, ?delay, "ClickHouse write failed, retrying");
            })
            .await
            .map_err(|e| SinkError::WriteFailed {
                attempts: self.config.retry_max_attempts,
                last: e.to_string(),
            })
    }
}
