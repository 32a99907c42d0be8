//! Sources: where records enter. Each turns its input into framed pieces, lets `normalize`
//! decide each record's fate, and hands rows to the sink, answering its sender only once the
//! sink has acknowledged them.

pub mod bearer;
pub mod connections;
pub mod hosts;
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

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.records += o.records;
        self.events += o.events;
        self.ignored += o.ignored;
        self.dead_letters += o.dead_letters;
        self.session_calls += o.session_calls;
    }
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
    /// What a gzip input may unpack to (`limits.max_unpacked_bytes`).
    pub max_unpacked_bytes: u64,
    pub metrics: Metrics,
}

/// Per-input caps for inputs from strangers (HTTP requests): past `max_records` an input is cut
/// short, past `max_dead_letters` rejected records are counted but not kept, and one summarizing
/// dead letter says how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub max_records: u64,
    pub max_dead_letters: u64,
}

impl Caps {
    /// No caps: a replayed file or a Kafka message is the operator's own input.
    pub const NONE: Caps = Caps {
        max_records: u64::MAX,
        max_dead_letters: u64::MAX,
    };
}

/// How framing an input ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Framed {
    /// The input held more than `Caps::max_records`: the rest was not read.
    pub cut_short: bool,
    /// Rejected records not kept as dead letters (over `Caps::max_dead_letters`).
    pub dead_letters_dropped: u64,
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
            max_unpacked_bytes: config.limits.max_unpacked_bytes,
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
        mut emit: impl FnMut(Batch, Tally, Vec<RecordError>, u64),
    ) -> std::io::Result<()> {
        let emit = |b, t, e, n| {
            emit(b, t, e, n);
            true
        };
        self.frame_capped(reader, choice, origin, batch_rows, Caps::NONE, emit)
            .map(|_| ())
    }

    /// [`Intake::frame`] with per-input [`Caps`]; `emit` returns whether to go on (a sender
    /// that went away stops the reading).
    pub fn frame_capped(
        &self,
        reader: impl Read + 'static,
        choice: SourceChoice,
        origin: &str,
        batch_rows: usize,
        caps: Caps,
        emit: impl FnMut(Batch, Tally, Vec<RecordError>, u64) -> bool,
    ) -> std::io::Result<Framed> {
        let input = decompressing(reader, self.max_unpacked_bytes)?;
        Ok(frame_input(
            input, choice, origin, self, batch_rows, caps, emit,
        ))
    }

    /// [`Intake::frame`] for input already in memory (a Kafka message, an HTTP body).
    pub fn frame_bytes(
        &self,
        bytes: Vec<u8>,
        choice: SourceChoice,
        origin: &str,
        batch_rows: usize,
        mut emit: impl FnMut(Batch, Tally, Vec<RecordError>, u64),
    ) -> std::io::Result<()> {
        let emit = |b, t, e, n| {
            emit(b, t, e, n);
            true
        };
        let input = decompressing_bytes(bytes, self.max_unpacked_bytes);
        frame_input(input, choice, origin, self, batch_rows, Caps::NONE, emit);
        Ok(())
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
                row.redact_secrets();
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
    caps: Caps,
    mut emit: impl FnMut(Batch, Tally, Vec<RecordError>, u64) -> bool,
) -> Framed {
    let mut framer = Framer::new(reader, intake.max_record_bytes);
    let mut filling = Filling::new(intake);
    let mut framed = Framed::default();
    let (mut records, mut kept) = (0u64, 0u64);
    let mut last_bytes = 0u64;
    let now = chrono::Utc::now();
    while let Some(piece) = framer.next() {
        if records == caps.max_records {
            framed.cut_short = true;
            break;
        }
        records += 1;
        let dead_before = filling.batch.dead_letters.len();
        filling.add(intake, choice, origin, piece, now);
        if filling.batch.dead_letters.len() > dead_before {
            if kept == caps.max_dead_letters {
                filling.batch.dead_letters.pop();
                filling.errors.pop();
                framed.dead_letters_dropped += 1;
            } else {
                kept += 1;
            }
        }
        if filling.batch.rows() >= batch_rows {
            let bytes = framer.bytes_read - last_bytes;
            last_bytes = framer.bytes_read;
            let full = std::mem::replace(&mut filling, Filling::new(intake));
            if !emit(full.batch, full.tally, full.errors, bytes) {
                return framed;
            }
        }
    }
    if framed.dead_letters_dropped > 0 {
        // One dead letter stands for the rejected records that were not kept.
        let rejection = crate::formats::Rejection::new(
            crate::formats::ErrorKind::TooLarge,
            format!(
                "{} more rejected record(s) in this input were not kept (over {} dead letters per input)",
                framed.dead_letters_dropped, caps.max_dead_letters
            ),
        );
        let summary = intake.normalizer.dead_letter(
            choice.label(),
            format!(
                "{origin}:summary:{}",
                now.timestamp_nanos_opt().unwrap_or(0)
            ),
            &rejection,
            b"",
            0,
            now,
        );
        filling.errors.push(RecordError {
            record: "summary".into(),
            error_kind: summary.error_kind.clone(),
            reason: summary.reason.clone(),
        });
        filling.batch.dead_letters.push(summary);
    }
    let bytes = framer.bytes_read - last_bytes;
    emit(filling.batch, filling.tally, filling.errors, bytes);
    framed
}
