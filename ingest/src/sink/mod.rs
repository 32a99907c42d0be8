//! The ClickHouse sink: batches rows from every source, writes them, and acknowledges each
//! sender only once its rows are durable.
//!
//! Sources hand a [`Batch`] to a [`SinkHandle`] and await its [`Ack`]. The sink task gathers
//! batches until `batch_max_rows`, or until `flush_interval_ms` has passed and the previous
//! flush is done (so flushes grow with load), then, per flush:
//! 1. looks up which dedup keys are already in `dedup_keys` (while the previous flush is still
//!    inserting when this one filled first; the previous flush's keys count as stored),
//! 2. drops those events and repeats within the flush (counted as duplicates), inserts the new
//!    events, then their keys, then the dead letters and session calls, retrying with
//!    exponential backoff,
//! 3. acknowledges every batch in the flush (or hands it back with the error after the last
//!    attempt).
//!
//! The queue in front of the task is bounded (`queue_capacity`), so a slow ClickHouse slows the
//! sources down instead of growing memory. Duplicates that slip past step 1 (a crash between the
//! event and key inserts) still collapse in `events FINAL`, which every query reads.

mod writer;

pub use writer::EXISTING_DEDUP_KEYS_SQL;

use crate::config::SinkConfig;
use crate::metrics::Metrics;
use crate::model::{DeadLetterRow, EventRow, SessionCallRow};
use crate::store::Store;
use std::collections::HashSet;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

/// Rows from one sender.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<EventRow>,
    pub dead_letters: Vec<DeadLetterRow>,
    /// API calls of issued sessions, folded into `session_activity` by ClickHouse.
    pub session_calls: Vec<SessionCallRow>,
}

impl Batch {
    pub fn rows(&self) -> usize {
        self.events.len() + self.dead_letters.len() + self.session_calls.len()
    }

    /// Moves every row of `other` into this batch.
    pub fn append(&mut self, other: Batch) {
        self.events.extend(other.events);
        self.dead_letters.extend(other.dead_letters);
        self.session_calls.extend(other.session_calls);
    }
}

/// What became of a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// Events stored for the first time.
    pub stored: usize,
    /// Events already stored earlier (or twice in the same flush).
    pub duplicates: usize,
    pub dead_lettered: usize,
    /// Session API calls folded into `session_activity` (idempotently: redelivery is harmless).
    pub session_calls: usize,
}

impl std::ops::AddAssign for Ack {
    fn add_assign(&mut self, o: Ack) {
        self.stored += o.stored;
        self.duplicates += o.duplicates;
        self.dead_lettered += o.dead_lettered;
        self.session_calls += o.session_calls;
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    #[error("ClickHouse write failed after {attempts} attempts: {last}")]
    WriteFailed { attempts: u32, last: String },
    #[error("the sink queue is full")]
    QueueFull,
    #[error("the sink has shut down")]
    Closed,
}

/// A batch the sink could not make durable, handed back so that a source which must not lose it
/// (Kafka) can submit it again.
#[derive(Debug)]
pub struct Failed {
    pub error: SinkError,
    pub batch: Batch,
}

type AckResult = Result<Ack, Failed>;

struct Job {
    batch: Batch,
    ack: oneshot::Sender<AckResult>,
}

/// The sending side; cheap to clone, one per source task.
#[derive(Clone)]
pub struct SinkHandle {
    tx: mpsc::Sender<Job>,
}

/// A batch in flight; await it for the ack.
pub struct Pending(oneshot::Receiver<AckResult>);

impl Pending {
    pub async fn ack(self) -> Result<Ack, SinkError> {
        self.ack_or_batch().await.map_err(|f| f.error)
    }

    /// The ack, or the error with the batch when there is one to give back (not when the sink
    /// task is gone).
    pub async fn ack_or_batch(self) -> Result<Ack, Failed> {
        self.0.await.unwrap_or(Err(Failed {
            error: SinkError::Closed,
            batch: Batch::default(),
        }))
    }
}

impl SinkHandle {
    /// Queues a batch, waiting while the queue is full (backpressure).
    pub async fn submit(&self, batch: Batch) -> Result<Pending, SinkError> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Job { batch, ack })
            .await
            .map_err(|_| SinkError::Closed)?;
        Ok(Pending(rx))
    }

    /// Queues a batch if there is room now; otherwise hands it back, so that a source that must
    /// keep polling (Kafka) is never blocked here.
    pub fn try_submit(&self, batch: Batch) -> Result<Pending, Failed> {
        let (ack, rx) = oneshot::channel();
        self.tx.try_send(Job { batch, ack }).map_err(|e| {
            let error = match &e {
                mpsc::error::TrySendError::Full(_) => SinkError::QueueFull,
                mpsc::error::TrySendError::Closed(_) => SinkError::Closed,
            };
            Failed {
                error,
                batch: e.into_inner().batch,
            }
        })?;
        Ok(Pending(rx))
    }

    /// Queues a batch and waits until it is durable.
    pub async fn write(&self, batch: Batch) -> Result<Ack, SinkError> {
        self.submit(batch).await?.ack().await
    }
}

/// Starts the sink task. It ends when every handle is dropped and the queue is drained.
pub fn spawn(store: Store, config: SinkConfig, metrics: Metrics) -> (SinkHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(config.queue_capacity);
    let writer = writer::Writer::new(store, config.clone(), metrics);
    let task = tokio::spawn(run(rx, writer, config));
    (SinkHandle { tx }, task)
}

async fn run(mut rx: mpsc::Receiver<Job>, writer: writer::Writer, config: SinkConfig) {
    let writer = std::sync::Arc::new(writer);
    let interval = std::time::Duration::from_millis(config.flush_interval_ms);
    // The flush whose inserts are running; it yields the keys it stored.
    let mut inserting: Option<JoinHandle<HashSet<u64>>> = None;
    let mut just_stored = HashSet::new();
    while let Some(first) = rx.recv().await {
        let deadline = Instant::now() + interval;
        let mut due = false;
        let mut rows = first.batch.rows();
        let mut jobs = vec![first];
        // Gather until the flush is full, or it is due and the previous flush is done: under
        // load a flush grows while the previous one inserts (fewer, larger parts); when idle it
        // goes out after `flush_interval_ms`.
        while rows < config.batch_max_rows {
            tokio::select! {
                job = rx.recv() => match job {
                    Some(job) => {
                        rows += job.batch.rows();
                        jobs.push(job);
                    }
                    None => break,
                },
                _ = sleep_until(deadline), if !due => {
                    due = true;
                    if inserting.is_none() {
                        break;
                    }
                }
                stored = async { inserting.as_mut().expect("guarded").await }, if inserting.is_some() => {
                    inserting = None;
                    just_stored = stored.unwrap_or_default();
                    if due {
                        break;
                    }
                }
            }
        }
        let (batches, acks): (Vec<Batch>, Vec<_>) =
            jobs.into_iter().map(|j| (j.batch, j.ack)).unzip();
        // Stage one may overlap the previous flush's inserts (when this flush filled first).
        // Its keys may not be visible to the lookup yet, so they count as stored once it is done.
        let lookup = writer.lookup(&batches).await;
        if let Some(task) = inserting.take() {
            just_stored = task.await.unwrap_or_default();
        }
        let mut existing = match lookup {
            Ok(existing) => existing,
            Err(e) => {
                let results = writer.failed(&batches, e);
                answer(acks, results, batches);
                continue;
            }
        };
        existing.extend(std::mem::take(&mut just_stored));
        let writer = writer.clone();
        inserting = Some(tokio::spawn(async move {
            let (results, stored) = writer.store(&batches, &existing).await;
            answer(acks, results, batches);
            stored
        }));
    }
    if let Some(task) = inserting {
        let _ = task.await;
    }
}

/// Sends each sender its result; a failed batch goes back with its error.
fn answer(
    acks: Vec<oneshot::Sender<AckResult>>,
    results: Vec<Result<Ack, SinkError>>,
    batches: Vec<Batch>,
) {
    for ((ack, result), batch) in acks.into_iter().zip(results).zip(batches) {
        // A sender that gave up waiting is fine: its rows are stored all the same.
        let _ = ack.send(result.map_err(|error| Failed { error, batch }));
    }
}
