//! The consumer's bookkeeping between Kafka and the sink: the batch being built, the batches in
//! flight, their acknowledgements, and the [`Ledger`] that turns acknowledgements into offsets.
//!
//! Invariant: an offset reaches the ledger as durable only when every row framed from its message
//! is in ClickHouse (as an event, a duplicate of a stored event, or a dead letter). A batch the
//! sink gives back after its retries is kept and submitted again, never dropped, so its offsets
//! stay outstanding and the partition stays uncommitted past them.

use super::ledger::{Ledger, PartitionKey};
use crate::metrics::{Metrics, TopicMetrics};
use crate::model::DeadLetterRow;
use crate::sink::{Ack, Batch, Failed, SinkError, SinkHandle};
use std::collections::{HashMap, VecDeque};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One consumed message, as far as durability is concerned.
#[derive(Debug, Clone, Copy)]
pub struct MessageRef {
    pub key: PartitionKey,
    pub epoch: u64,
    pub offset: i64,
    /// Kafka timestamp (ms since the epoch), for the storage-lag histogram.
    pub timestamp_ms: Option<i64>,
    /// Rows framed from the message.
    pub events: u32,
    pub dead_letters: u32,
}

/// Rows and the messages they came from, on their way to the sink.
#[derive(Default)]
pub struct Building {
    pub batch: Batch,
    pub messages: Vec<MessageRef>,
    pub started: Option<Instant>,
}

struct InFlight {
    messages: Vec<MessageRef>,
    rows: usize,
    /// Copies for the optional dead-letter topic (rare, so the copy is cheap overall).
    dead_letters: Vec<DeadLetterRow>,
}

type AckMessage = (u64, Result<Ack, Failed>);

/// Batches waiting for a retry, with when to retry.
struct Waiting {
    id: u64,
    batch: Batch,
    not_before: Instant,
}

pub struct Pipeline {
    pub ledger: Ledger,
    pub building: Building,
    in_flight: HashMap<u64, InFlight>,
    waiting: VecDeque<Waiting>,
    in_flight_rows: usize,
    next_id: u64,
    acks_tx: mpsc::Sender<AckMessage>,
    acks_rx: mpsc::Receiver<AckMessage>,
    sink: SinkHandle,
    runtime: tokio::runtime::Handle,
    metrics: Metrics,
    /// Per-topic metrics by topic index.
    topics: Vec<TopicMetrics>,
    keep_dead_letters: bool,
    /// Dead letters made durable, for the dead-letter topic.
    pub durable_dead_letters: Vec<DeadLetterRow>,
}

/// Back off this long before submitting a batch the sink gave back.
const RESUBMIT_DELAY: Duration = Duration::from_secs(1);

impl Pipeline {
    pub fn new(
        sink: SinkHandle,
        runtime: tokio::runtime::Handle,
        metrics: Metrics,
        topics: Vec<TopicMetrics>,
        keep_dead_letters: bool,
    ) -> Pipeline {
        let (acks_tx, acks_rx) = mpsc::channel();
        Pipeline {
            ledger: Ledger::default(),
            building: Building::default(),
            in_flight: HashMap::new(),
            waiting: VecDeque::new(),
            in_flight_rows: 0,
            next_id: 0,
            acks_tx,
            acks_rx,
            sink,
            runtime,
            metrics,
            topics,
            keep_dead_letters,
            durable_dead_letters: Vec::new(),
        }
    }

    /// Rows consumed and not yet durable, the built batch included.
    pub fn rows_outstanding(&self) -> usize {
        self.in_flight_rows + self.building.batch.rows()
    }

    /// Hands the built batch to the sink (or to the retry queue when the sink's queue is full).
    pub fn submit_building(&mut self) -> Result<(), SinkError> {
        if self.building.messages.is_empty() {
            return Ok(());
        }
        let Building {
            batch, messages, ..
        } = std::mem::take(&mut self.building);
        let id = self.next_id;
        self.next_id += 1;
        let rows = batch.rows();
        self.in_flight_rows += rows;
        self.metrics
            .kafka
            .in_flight_rows
            .set(self.in_flight_rows as i64);
        let dead_letters = if self.keep_dead_letters {
            batch.dead_letters.clone()
        } else {
            Vec::new()
        };
        self.in_flight.insert(
            id,
            InFlight {
                messages,
                rows,
                dead_letters,
            },
        );
        self.send(id, batch, Instant::now())
    }

    fn send(&mut self, id: u64, batch: Batch, now: Instant) -> Result<(), SinkError> {
        match self.sink.try_submit(batch) {
            Ok(pending) => {
                let tx = self.acks_tx.clone();
                self.runtime.spawn(async move {
                    let result = pending.ack_or_batch().await;
                    let _ = tx.send((id, result));
                });
                Ok(())
            }
            Err(Failed {
                error: SinkError::Closed,
                ..
            }) => Err(SinkError::Closed),
            Err(Failed { batch, .. }) => {
                // Queue full: try again shortly; the partitions pause meanwhile if this builds up.
                self.waiting.push_back(Waiting {
                    id,
                    batch,
                    not_before: now + Duration::from_millis(20),
                });
                Ok(())
            }
        }
    }

    /// Submits the waiting batches whose time has come.
    pub fn resubmit_due(&mut self) -> Result<(), SinkError> {
        let now = Instant::now();
        let mut later = VecDeque::new();
        while let Some(w) = self.waiting.pop_front() {
            if w.not_before > now {
                later.push_back(w);
                continue;
            }
            self.send(w.id, w.batch, now)?;
        }
        // `send` may have queued some again; keep their order after the ones not yet due.
        later.extend(self.waiting.drain(..));
        self.waiting = later;
        Ok(())
    }

    /// Applies every acknowledgement that has arrived; with `wait`, first waits up to that long
    /// for one.
    pub fn apply_acks(&mut self, wait: Option<Duration>) {
        if let Some(wait) = wait {
            match self.acks_rx.recv_timeout(wait) {
                Ok(ack) => self.apply(ack),
                Err(_) => return,
            }
        }
        while let Ok(ack) = self.acks_rx.try_recv() {
            self.apply(ack);
        }
    }

    fn apply(&mut self, (id, result): AckMessage) {
        match result {
            Ok(_) => {
                let Some(done) = self.in_flight.remove(&id) else {
                    return;
                };
                self.in_flight_rows -= done.rows;
                self.metrics
                    .kafka
                    .in_flight_rows
                    .set(self.in_flight_rows as i64);
                let now_ms = chrono::Utc::now().timestamp_millis();
                for m in &done.messages {
                    self.ledger.durable(m.key, m.epoch, m.offset);
                    let topic = &self.topics[m.key.topic];
                    if let Some(ts) = m.timestamp_ms {
                        topic
                            .storage_lag_seconds
                            .observe((now_ms - ts).max(0) as f64 / 1000.0);
                    }
                    topic.durable_events.inc_by(m.events.into());
                    topic.durable_dead_letters.inc_by(m.dead_letters.into());
                }
                self.durable_dead_letters.extend(done.dead_letters);
            }
            Err(Failed { error, batch }) => {
                tracing::warn!(%error, rows = batch.rows(), "sink gave a batch back; submitting it again");
                self.metrics.kafka.resubmits.inc();
                self.waiting.push_back(Waiting {
                    id,
                    batch,
                    not_before: Instant::now() + RESUBMIT_DELAY,
                });
            }
        }
    }

    /// Waits (applying acks and resubmitting) until `done` holds or `timeout` passes.
    pub fn drain_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&Pipeline) -> bool,
    ) -> Result<bool, SinkError> {
        let deadline = Instant::now() + timeout;
        self.submit_building()?;
        loop {
            if done(self) {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            self.apply_acks(Some((deadline - now).min(Duration::from_millis(50))));
            self.resubmit_due()?;
        }
    }

    /// True when nothing consumed is still on its way to ClickHouse.
    pub fn idle(&self) -> bool {
        self.in_flight.is_empty() && self.waiting.is_empty() && self.building.messages.is_empty()
    }
}
