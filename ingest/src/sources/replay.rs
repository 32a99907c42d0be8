//! File replay: backfills from CloudTrail S3 downloads, NDJSON exports and issuance spools.
//!
//! Files (gzipped or not; directories are walked in name order) are framed and normalized on a
//! blocking thread and written through the same sink as live traffic, with a few batches in
//! flight. Replaying a file twice stores nothing new: the second pass counts duplicates.

use super::{Intake, Tally};
use crate::normalize::SourceChoice;
use crate::sink::{Ack, Pending, SinkError, SinkHandle};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

/// Batches submitted but not yet acknowledged, per replay.
const IN_FLIGHT: usize = 4;

/// Running totals, reported after every acknowledged batch and at the end.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ReplayStats {
    pub files: u64,
    pub files_total: u64,
    pub bytes: u64,
    pub bytes_total: u64,
    pub records: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub ignored: u64,
    pub dead_lettered: u64,
    /// API calls of runs' sessions aggregated (`cloudtrail.session_activity`).
    pub session_calls: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// Settings for one replay.
pub struct Replay {
    pub choice: SourceChoice,
    pub intake: Intake,
    pub batch_rows: usize,
}

/// Expands directories into their files, sorted, skipping hidden ones.
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ReplayError> {
    let mut out = Vec::new();
    for p in paths {
        walk(p, &mut out).map_err(|error| ReplayError::Io {
            path: p.clone(),
            error,
        })?;
    }
    Ok(out)
}

fn walk(p: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if p.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for e in entries {
            let hidden = e
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if !hidden {
                walk(&e, out)?;
            }
        }
    } else {
        std::fs::metadata(p)?;
        out.push(p.to_path_buf());
    }
    Ok(())
}

impl Replay {
    /// Replays `files` into the sink, calling `progress` as batches are acknowledged. Runs on the
    /// calling (blocking) thread; `rt` is the runtime the sink lives on.
    pub fn run(
        &self,
        files: &[PathBuf],
        sink: &SinkHandle,
        rt: &tokio::runtime::Handle,
        mut progress: impl FnMut(&ReplayStats),
    ) -> Result<ReplayStats, ReplayError> {
        let mut stats = ReplayStats {
            files_total: files.len() as u64,
            bytes_total: files
                .iter()
                .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
                .sum(),
            ..Default::default()
        };
        let mut in_flight: VecDeque<(Pending, Tally)> = VecDeque::new();
        let settle =
            |pending: Pending, tally: Tally, stats: &mut ReplayStats| -> Result<(), SinkError> {
                let ack: Ack = rt.block_on(pending.ack())?;
                stats.records += tally.records;
                stats.ignored += tally.ignored;
                stats.stored += ack.stored as u64;
                stats.duplicates += ack.duplicates as u64;
                stats.dead_lettered += ack.dead_lettered as u64;
                stats.session_calls += ack.session_calls as u64;
                Ok(())
            };
        for path in files {
            let file = std::fs::File::open(path).map_err(|error| ReplayError::Io {
                path: path.clone(),
                error,
            })?;
            let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            let origin = format!("file:{}", canonical.display());
            let mut failure: Option<SinkError> = None;
            self.intake
                .frame(
                    file,
                    self.choice,
                    &origin,
                    self.batch_rows,
                    |batch, tally, _errors, bytes| {
                        if failure.is_some() {
                            return;
                        }
                        stats.bytes += bytes;
                        match rt.block_on(sink.submit(batch)) {
                            Ok(p) => in_flight.push_back((p, tally)),
                            Err(e) => failure = Some(e),
                        }
                        while in_flight.len() > IN_FLIGHT {
                            let (p, t) = in_flight.pop_front().expect("non-empty");
                            if let Err(e) = settle(p, t, &mut stats) {
                                failure = Some(e);
                            }
                            progress(&stats);
                        }
                    },
                )
                .map_err(|error| ReplayError::Io {
                    path: path.clone(),
                    error,
                })?;
            if let Some(e) = failure {
                return Err(e.into());
            }
            stats.files += 1;
            progress(&stats);
        }
        while let Some((p, t)) = in_flight.pop_front() {
            settle(p, t, &mut stats)?;
            progress(&stats);
        }
        Ok(stats)
    }
}
