//! The Kafka source: a consumer group member that frames and normalizes every message and commits
//! a partition's offset only once everything before it is durable in ClickHouse.
//!
//! The consumer runs on its own thread with a `BaseConsumer`, polling every 100 ms whatever the
//! sink is doing (so the group never thinks it died); rows go to the async sink without blocking
//! (`try_submit`), acknowledgements come back over a channel, and [`ledger`] turns them into
//! committable offsets. Delivery is at-least-once: after a crash the uncommitted tail is consumed
//! again and the sink's dedup keys (and `events FINAL`) absorb the repeats.
//!
//! Backpressure: when more than `kafka.max_in_flight_rows` rows are consumed but not durable, every
//! assigned partition is paused (polling goes on, fetching stops) until half of them are. Memory
//! is bounded by that, by librdkafka's prefetch queue (`queued.max.messages.kbytes`, 64 MiB), and by the
//! sink's queue; a ClickHouse outage of any length only keeps the partitions paused.
//!
//! Rebalances ([`context`]): before partitions are revoked, the built batch is submitted, the
//! source waits up to `kafka.drain_timeout_secs` for their rows to become durable and commits what
//! is; a newly assigned partition starts at its committed offset (or `auto_offset_reset`).

mod context;
mod ledger;
mod pipeline;

use ledger::PartitionKey;

use super::Intake;
use crate::config::KafkaConfig;
use crate::metrics::TopicMetrics;
use crate::normalize::SourceChoice;
use crate::sink::{SinkError, SinkHandle};
use context::SourceContext;
use pipeline::{MessageRef, Pipeline};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Produces dead letters to `kafka.dead_letter_topic` from its own polling thread.
type DeadLetterProducer = ThreadedProducer<DefaultProducerContext>;

/// How long one poll waits for a message; also the longest the loop goes without housekeeping.
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    #[error("Kafka client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("sink: {0}")]
    Sink(#[from] SinkError),
    #[error("configuration: {0}")]
    Config(String),
}

/// A configured Kafka source, ready to run on its own thread.
pub struct KafkaSource {
    config: KafkaConfig,
    intake: Intake,
    sink: SinkHandle,
    runtime: tokio::runtime::Handle,
}

/// The consumer's state shared with its rebalance callbacks (which run inside `poll`, on the
/// consumer thread, so the lock is never contended).
pub(crate) struct Shared {
    pipeline: Mutex<Pipeline>,
    /// Topic name to index in `topics`; the index is the ledger's and the metrics' topic id.
    topic_index: HashMap<String, usize>,
    topics: Vec<Topic>,
    /// Whether the partitions are paused for backpressure.
    paused: AtomicBool,
    drain_timeout: Duration,
    metrics: crate::metrics::Metrics,
    commit_started: Mutex<Option<Instant>>,
}

/// A configured topic: its name, its format, its metrics.
struct Topic {
    name: String,
    choice: SourceChoice,
    metrics: TopicMetrics,
}

impl Shared {
    fn pipeline(&self) -> MutexGuard<'_, Pipeline> {
        // A panic while holding the lock would already have ended the consumer thread.
        self.pipeline.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key(&self, topic: &str, partition: i32) -> Option<PartitionKey> {
        Some(PartitionKey {
            topic: *self.topic_index.get(topic)?,
            partition,
        })
    }

    /// The commit list for `offsets`.
    fn commit_list(&self, offsets: &[(PartitionKey, i64)]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (k, o) in offsets {
            // Only fails for an invalid offset value, which a ledger never holds.
            let _ = tpl.add_partition_offset(
                &self.topics[k.topic].name,
                k.partition,
                Offset::Offset(*o),
            );
        }
        tpl
    }
}

impl KafkaSource {
    pub fn new(
        config: KafkaConfig,
        intake: Intake,
        sink: SinkHandle,
        runtime: tokio::runtime::Handle,
    ) -> KafkaSource {
        KafkaSource {
            config,
            intake,
            sink,
            runtime,
        }
    }

    /// librdkafka's consumer settings: the user's pass-through properties, then what credtrail
    /// must decide itself.
    fn client_config(&self) -> Result<ClientConfig, KafkaSourceError> {
        let c = &self.config;
        let mut cc = ClientConfig::new();
        // Statistics feed the consumer-lag gauge; the user's properties may change the period.
        cc.set("statistics.interval.ms", "5000");
        // librdkafka's prefetch stays at its bounded default (`queued.max.messages.kbytes`,
        // 64 MiB): measured here, a 16 MiB queue starves the consumer to a third of the rate.
        for (k, v) in &c.properties.0 {
            cc.set(k, v);
        }
        if let Some(password) = c
            .sasl_password()
            .map_err(|e| KafkaSourceError::Config(e.to_string()))?
        {
            cc.set("sasl.password", password);
        }
        let heartbeat = (c.session_timeout_ms / 4).max(100);
        cc.set("bootstrap.servers", &c.brokers)
            .set("group.id", &c.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", &c.auto_offset_reset)
            .set("session.timeout.ms", c.session_timeout_ms.to_string())
            .set("heartbeat.interval.ms", heartbeat.to_string())
            .set("client.id", format!("credtrail-{}", std::process::id()));
        Ok(cc)
    }

    /// Consumes until `stop` is set, then drains: submits what was built, waits up to
    /// `drain_timeout_secs` for it to be durable, commits, and leaves the group.
    pub fn run(self, stop: Arc<AtomicBool>) -> Result<(), KafkaSourceError> {
        let dead_letters = self.dead_letter_producer()?;
        let shared = self.shared(dead_letters.is_some())?;
        let consumer: BaseConsumer<SourceContext> = self
            .client_config()?
            .create_with_context(SourceContext::new(shared.clone()))?;
        let names: Vec<&str> = shared.topics.iter().map(|t| t.name.as_str()).collect();
        consumer.subscribe(&names)?;
        tracing::info!(topics = ?names, group = %self.config.group_id, "Kafka source started");

        let mut last_commit = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            self.housekeeping(&consumer, &shared, dead_letters.as_ref(), &mut last_commit)?;
            match consumer.poll(POLL) {
                None => {}
                Some(Err(e)) => {
                    shared.metrics.kafka.errors.inc();
                    tracing::warn!(error = %e, "Kafka consumer error");
                }
                Some(Ok(message)) => self.take(&shared, &message),
            }
        }

        tracing::info!("Kafka source stopping: draining in-flight rows");
        {
            let mut p = shared.pipeline();
            let drained = p.drain_until(shared.drain_timeout, |p| p.idle())?;
            if !drained {
                tracing::warn!("rows still in flight at shutdown; they will be consumed again");
            }
            if let Some(producer) = &dead_letters {
                publish_dead_letters(producer, &self.config.dead_letter_topic, &mut p);
                let _ = producer.flush(Duration::from_secs(5));
            }
        }
        commit(&consumer, &shared, CommitMode::Sync);
        consumer.unsubscribe();
        Ok(())
    }

    /// Between two polls: apply acks, resubmit, hand over a full or old batch, publish dead
    /// letters, pause or resume, commit.
    fn housekeeping(
        &self,
        consumer: &BaseConsumer<SourceContext>,
        shared: &Shared,
        dead_letters: Option<&DeadLetterProducer>,
        last_commit: &mut Instant,
    ) -> Result<(), KafkaSourceError> {
        let mut p = shared.pipeline();
        p.apply_acks(None);
        p.resubmit_due()?;
        let building = &p.building;
        let full = building.batch.rows() >= self.config.batch_max_rows;
        let linger = Duration::from_millis(self.config.linger_ms);
        let old = building.started.is_some_and(|t| t.elapsed() >= linger);
        if full || old {
            p.submit_building()?;
        }
        if let Some(producer) = dead_letters {
            publish_dead_letters(producer, &self.config.dead_letter_topic, &mut p);
        }
        let outstanding = p.rows_outstanding();
        drop(p);
        self.backpressure(consumer, shared, outstanding);
        if last_commit.elapsed() >= Duration::from_millis(self.config.commit_interval_ms) {
            commit(consumer, shared, CommitMode::Async);
            *last_commit = Instant::now();
        }
        Ok(())
    }

    /// The producer for `kafka.dead_letter_topic`, when one is configured.
    fn dead_letter_producer(&self) -> Result<Option<DeadLetterProducer>, KafkaSourceError> {
        if self.config.dead_letter_topic.is_empty() {
            return Ok(None);
        }
        let mut pc = ClientConfig::new();
        for (k, v) in &self.config.properties.0 {
            pc.set(k, v);
        }
        Ok(Some(
            pc.set("bootstrap.servers", &self.config.brokers).create()?,
        ))
    }

    /// The state shared with the callbacks, topics resolved to their formats.
    fn shared(&self, keep_dead_letters: bool) -> Result<Arc<Shared>, KafkaSourceError> {
        let metrics = self.intake.metrics.clone();
        let topics: Vec<Topic> = self
            .config
            .topics
            .0
            .iter()
            .map(|(name, format)| {
                let choice = SourceChoice::parse(format).ok_or_else(|| {
                    KafkaSourceError::Config(format!("unknown format {format:?}"))
                })?;
                Ok(Topic {
                    name: name.clone(),
                    choice,
                    metrics: metrics.kafka.topic(name),
                })
            })
            .collect::<Result<_, KafkaSourceError>>()?;
        Ok(Arc::new(Shared {
            pipeline: Mutex::new(Pipeline::new(
                self.sink.clone(),
                self.runtime.clone(),
                metrics.clone(),
                topics.iter().map(|t| t.metrics.clone()).collect(),
                keep_dead_letters,
            )),
            topic_index: topics
                .iter()
                .enumerate()
                .map(|(i, t)| (t.name.clone(), i))
                .collect(),
            topics,
            paused: AtomicBool::new(false),
            drain_timeout: Duration::from_secs(self.config.drain_timeout_secs),
            metrics,
            commit_started: Mutex::new(None),
        }))
    }

    /// Frames one message into the batch being built and records its offset.
    fn take(&self, shared: &Shared, message: &rdkafka::message::BorrowedMessage<'_>) {
        let Some(key) = shared.key(message.topic(), message.partition()) else {
            return;
        };
        let mut p = shared.pipeline();
        let Some(epoch) = p.ledger.consumed(key, message.offset()) else {
            return;
        };
        let topic = &shared.topics[key.topic];
        topic.metrics.messages.inc();
        let choice = topic.choice;
        let origin = format!(
            "kafka:{}:{}:{}",
            message.topic(),
            message.partition(),
            message.offset()
        );
        let payload = message.payload().unwrap_or_default().to_vec();
        let mut events = 0u32;
        let mut dead_letters = 0u32;
        let building = &mut p.building;
        if building.batch.events.capacity() == 0 {
            // Room for a whole batch up front: growing a Vec of ~1 KiB rows by doubling copies
            // each row twice over.
            building.batch.events.reserve(self.config.batch_max_rows);
        }
        let result = self.intake.frame_bytes(
            payload,
            choice,
            &origin,
            usize::MAX,
            |batch, _tally, _errors, _bytes| {
                events += batch.events.len() as u32;
                dead_letters += batch.dead_letters.len() as u32;
                building.batch.append(batch);
            },
        );
        if let Err(e) = result {
            // Reading from memory cannot fail; gzip errors are dead letters inside `frame`.
            tracing::error!(error = %e, %origin, "framing a Kafka message failed");
        }
        building.messages.push(MessageRef {
            key,
            epoch,
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            events,
            dead_letters,
        });
        building.started.get_or_insert_with(Instant::now);
    }

    /// Pauses every assigned partition above the in-flight bound, resumes at half of it.
    fn backpressure(
        &self,
        consumer: &BaseConsumer<SourceContext>,
        shared: &Shared,
        outstanding: usize,
    ) {
        let max = self.config.max_in_flight_rows;
        let paused = shared.paused.load(Ordering::Relaxed);
        if !paused && outstanding >= max {
            if let Ok(assignment) = consumer.assignment()
                && consumer.pause(&assignment).is_ok()
            {
                shared.paused.store(true, Ordering::Relaxed);
                shared
                    .metrics
                    .kafka
                    .paused_partitions
                    .set(assignment.count() as i64);
                tracing::info!(outstanding, "sink is behind: partitions paused");
            }
        } else if paused
            && outstanding <= max / 2
            && let Ok(assignment) = consumer.assignment()
            && consumer.resume(&assignment).is_ok()
        {
            shared.paused.store(false, Ordering::Relaxed);
            shared.metrics.kafka.paused_partitions.set(0);
            tracing::info!(outstanding, "sink caught up: partitions resumed");
        }
    }
}

/// Commits every partition whose durable prefix moved.
fn commit(consumer: &BaseConsumer<SourceContext>, shared: &Shared, mode: CommitMode) {
    let offsets = shared.pipeline().ledger.to_commit();
    if offsets.is_empty() {
        return;
    }
    let tpl = shared.commit_list(&offsets);
    start_commit_clock(shared);
    // Results (and their latency) are counted in `commit_callback`.
    match consumer.commit(&tpl, mode) {
        Ok(()) => {
            let mut p = shared.pipeline();
            for (k, o) in offsets {
                p.ledger.committed(k, o);
            }
        }
        Err(e) => {
            shared
                .metrics
                .kafka
                .commits
                .with_label_values(&["error"])
                .inc();
            tracing::warn!(error = %e, "offset commit failed; will retry");
        }
    }
}

fn start_commit_clock(shared: &Shared) {
    *shared
        .commit_started
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
}

/// Produces durable dead letters to the dead-letter topic, with the reason in headers.
fn publish_dead_letters(producer: &DeadLetterProducer, topic: &str, p: &mut Pipeline) {
    for d in p.durable_dead_letters.drain(..) {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "credtrail.error_kind",
                value: Some(d.error_kind.as_bytes()),
            })
            .insert(Header {
                key: "credtrail.reason",
                value: Some(d.reason.as_bytes()),
            })
            .insert(Header {
                key: "credtrail.raw_sha256",
                value: Some(d.raw_sha256.as_bytes()),
            });
        let record = BaseRecord::to(topic)
            .key(&d.origin)
            .payload(&d.raw)
            .headers(headers);
        if let Err((e, _)) = producer.send(record) {
            tracing::warn!(error = %e, origin = %d.origin, "dead letter not produced to the dead-letter topic");
        }
    }
}
