//! The local spool of issuance records that could not be sent: NDJSON, one [`Record`] per line,
//! claims and fingerprints only (a spool never holds a token). The next `credtrail emit` sends
//! what is spooled before its own records.
//!
//! Concurrent hooks on one agent share the spool safely: a sender first *takes* the spool by
//! renaming it (atomic), so a record is either in the file others append to or in exactly one
//! sender's hands, and is put back if that send fails too.

use super::Record;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Records beyond this many are dropped, oldest first, so a long collector outage cannot fill
/// an agent's disk; each drop is reported.
pub const MAX_RECORDS: usize = 50_000;

pub struct Spool {
    path: PathBuf,
}

/// What was taken from the spool.
pub struct Taken {
    pub records: Vec<Record>,
    /// Lines that were not records (a torn write): reported, not resent.
    pub unreadable: usize,
    file: Option<PathBuf>,
}

impl Spool {
    pub fn new(path: impl Into<PathBuf>) -> Spool {
        Spool { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes every spooled record; call [`Spool::sent`] or [`Spool::put_back`] afterwards.
    pub fn take(&self) -> io::Result<Taken> {
        let taking = self.path.with_extension(format!(
            "sending.{}.{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
        ));
        match std::fs::rename(&self.path, &taking) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Taken {
                    records: Vec::new(),
                    unreadable: 0,
                    file: None,
                });
            }
            Err(e) => return Err(e),
        }
        let text = std::fs::read_to_string(&taking)?;
        let mut records = Vec::new();
        let mut unreadable = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Record>(line) {
                Ok(r) => records.push(r),
                Err(_) => unreadable += 1,
            }
        }
        Ok(Taken {
            records,
            unreadable,
            file: Some(taking),
        })
    }

    /// The taken records reached the collector.
    pub fn sent(&self, taken: Taken) -> io::Result<()> {
        match taken.file {
            Some(f) => std::fs::remove_file(f),
            None => Ok(()),
        }
    }

    /// Appends records (newest last), keeping at most [`MAX_RECORDS`]; returns how many of the
    /// oldest were dropped.
    pub fn put_back(&self, taken: Option<Taken>, records: &[Record]) -> io::Result<usize> {
        let mut all: Vec<&Record> = Vec::new();
        if let Some(t) = &taken {
            all.extend(&t.records);
        }
        all.extend(records);
        let dropped = all.len().saturating_sub(MAX_RECORDS);
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&self.path)?;
        let mut text = String::new();
        for r in &all[dropped..] {
            text.push_str(&serde_json::to_string(r).expect("records serialize"));
            text.push('\n');
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        if let Some(t) = taken {
            self.sent(t)?;
        }
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u32) -> Record {
        Record {
            provider: "aws".into(),
            alias_tag: String::new(),
            token_fingerprint: format!("sha256:{n:064}"),
            claims: serde_json::value::RawValue::from_string(format!(r#"{{"n":{n}}}"#)).unwrap(),
            signature: None,
        }
    }

    #[test]
    fn records_survive_a_failed_send_and_leave_on_success() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("spool.ndjson"));
        assert!(spool.take().unwrap().records.is_empty());
        spool.put_back(None, &[record(1), record(2)]).unwrap();
        let taken = spool.take().unwrap();
        assert_eq!(taken.records.len(), 2);
        // Another hook spools while this one sends; this send fails too.
        spool.put_back(None, &[record(3)]).unwrap();
        spool.put_back(Some(taken), &[record(4)]).unwrap();
        let taken = spool.take().unwrap();
        let mut ns: Vec<String> = taken
            .records
            .iter()
            .map(|r| r.claims.get().to_owned())
            .collect();
        ns.sort();
        assert_eq!(ns, [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#, r#"{"n":4}"#]);
        spool.sent(taken).unwrap();
        assert!(spool.take().unwrap().records.is_empty());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
