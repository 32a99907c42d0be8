//! Sources: where records enter. Each turns its input into framed pieces, lets `normalize`
//! decide each record's fate, and hands rows to the sink, answering its sender only once the
//! sink has acknowledged them.

pub mod bearer;
pub mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod replay;

use crate::alias::Attribution;
use crate::alias::attribute::Attributor;
use crate::formats::framing::{Framer, Piece, decompressing, decompressing_bytes};
use crate::formats::otlp;
use crate::metrics::Metrics;
use crate::normalize::{Normalizer, Outcome, SourceChoice};
use crate::sink::Batch;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use std::io::Read;
use std::sync::Arc;

/// Counts of what one input produced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    pub records: u64,
    pub events: u64,
    pub ignored: u64,
    pub dead_letters: u64,
    /// API calls of runs' sessions, aggregated into `session_activity`.
    pub session_calls: u64,
}

/// A rejected record, as reported back to the sender.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordError {
    /// `LINE` or `LINE#ELEMENT` within the input.
    pub record: String,
    pub error_kind: String,
    pub reason: String,
}

/// What every source shares to turn bytes into rows.
#[derive(Clone)]
pub struct Intake {
    pub normalizer: Normalizer,
    /// Alias attribution, applied to every event as it is normalized.
    pub attribution: Arc<Attribution>,
    pub max_record_bytes: usize,
    pub metrics: Metrics,
}

impl Intake {
    /// The intake every source uses, from the `limits` section.
    pub fn from_config(config: &crate::config::Config, metrics: Metrics) -> Intake {
        Intake {
            normalizer: Normalizer {
                max_dead_letter_bytes: config.limits.max_dead_letter_bytes,
                session_activity: config.cloudtrail.session_activity,
            },
            max_record_bytes: config.limits.max_record_bytes,
            attribution: Arc::default(),
            metrics,
        }
    }

    /// Frames and normalizes a whole input into batches of at most `batch_rows` rows, calling
    /// `emit` with each full batch (and the last partial one), its tally, the rejected records'
    /// reasons and the input bytes it covered.
    pub fn frame(
        &self,
        reader: impl Read + 'static,
        choice: SourceChoice,
        origin: &str,
        batch_rows: usize,
        emit: impl FnMut(Batch, Tally, Vec<RecordError>, u64),
    ) -> std::io::Result<()> {
        frame_input(
            decompressing(reader)?,
            choice,
            origin,
            self,
            batch_rows,
            emit,
        )
    }

    /// [`Intake::frame`] for input already in memory (a Kafka message, an HTTP body).
    pub fn frame_bytes(
        &self,
        bytes: Vec<u8>,
        choice: SourceChoice,
        origin: &str,
        batch_rows: usize,
        emit: impl FnMut(Batch, Tally, Vec<RecordError>, u64),
    ) -> std::io::Result<()> {
        frame_input(
            decompressing_bytes(bytes),
            choice,
            origin,
            self,
            batch_rows,
            emit,
        )
    }
}

/// A batch being filled from pieces, with its tally and the rejected records' reasons.
struct Filling {
    batch: Batch,
    tally: Tally,
    errors: Vec<RecordError>,
    /// The inventory as of the start of this input: taken once, not per record.
    attributor: Arc<Attributor>,
}

impl Filling {
    fn new(intake: &Intake) -> Filling {
        Filling {
            batch: Batch::default(),
            tally: Tally::default(),
            errors: Vec::new(),
            attributor: intake.attribution.current(),
        }
    }

    /// Normalizes one piece into the batch.
    fn add(
        &mut self,
        intake: &Intake,
        choice: SourceChoice,
        origin: &str,
        piece: Piece,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        let metrics = &intake.metrics;
        let position = piece.position();
        self.tally.records += 1;
        match intake.normalizer.piece(choice, origin, piece, now) {
            Outcome::Event(mut row) => {
                self.attributor.attribute(&mut row);
                metrics
                    .records
                    .with_label_values(&[&row.source, "event"])
                    .inc();
                self.tally.events += 1;
                self.batch.events.push(*row);
            }
            Outcome::SessionCall(call) => {
                metrics
                    .records
                    .with_label_values(&["aws_cloudtrail", "session_call"])
                    .inc();
                self.tally.session_calls += 1;
                self.batch.session_calls.push(*call);
            }
            Outcome::Ignored(_) => {
                metrics
                    .records
                    .with_label_values(&[choice.label(), "ignored"])
                    .inc();
                self.tally.ignored += 1;
            }
            Outcome::Dead(dead) => {
                metrics
                    .records
                    .with_label_values(&[&dead.source, "dead_letter"])
                    .inc();
                self.tally.dead_letters += 1;
                self.errors.push(RecordError {
                    record: position,
                    error_kind: dead.error_kind.clone(),
                    reason: dead.reason.clone(),
                });
                self.batch.dead_letters.push(*dead);
            }
        }
    }
}

impl Intake {
    /// Normalizes the log records of one OTLP request into one batch: each record goes to the
    /// format its sender named or that detection finds, the rest become dead letters.
    pub fn otlp(
        &self,
        request: &ExportLogsServiceRequest,
        origin: &str,
    ) -> (Batch, Tally, Vec<RecordError>) {
        let now = chrono::Utc::now();
        let mut filling = Filling::new(self);
        for log in otlp::pieces(request, self.max_record_bytes) {
            let choice = log.named.map_or(SourceChoice::Auto, SourceChoice::Known);
            filling.add(self, choice, origin, log.piece, now);
        }
        (filling.batch, filling.tally, filling.errors)
    }
}

fn frame_input(
    reader: Box<dyn std::io::BufRead>,
    choice: SourceChoice,
    origin: &str,
    intake: &Intake,
    batch_rows: usize,
    mut emit: impl FnMut(Batch, Tally, Vec<RecordError>, u64),
) -> std::io::Result<()> {
    let mut framer = Framer::new(reader, intake.max_record_bytes);
    let mut filling = Filling::new(intake);
    let mut last_bytes = 0u64;
    let now = chrono::Utc::now();
    while let Some(piece) = framer.next() {
        filling.add(intake, choice, origin, piece, now);
        if filling.batch.rows() >= batch_rows {
            let bytes = framer.bytes_read - last_bytes;
            last_bytes = framer.bytes_read;
            let full = std::mem::replace(&mut filling, Filling::new(intake));
            emit(full.batch, full.tally, full.errors, bytes);
        }
    }
    let bytes = framer.bytes_read - last_bytes;
    emit(filling.batch, filling.tally, filling.errors, bytes);
    Ok(())
}
