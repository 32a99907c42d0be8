//! Splitting bodies and files into records.
//!
//! Every input (an HTTP body, a replayed file) is a sequence of *documents*; a document is one
//! record, a JSON array of records, or an envelope holding an array of records: CloudTrail S3
//! files `{"Records": [...]}`, Azure diagnostic exports `{"records": [...]}`, HCP audit trail
//! pages `{"data": [...]}`. Documents
//! are one per line (NDJSON), or, when the first line is not a whole JSON value, whitespace-
//! separated pretty-printed JSON. gzip is detected by its magic bytes.
//!
//! Memory stays bounded by `max_record_bytes`: a longer line is skipped while counted, and only
//! its first bytes are kept for the dead letter. A broken line costs only that line; a broken
//! pretty-printed or gzip stream ends the input with one [`Piece::Broken`] saying where.

use super::{ErrorKind, Rejection};
use flate2::bufread::MultiGzDecoder;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::io::{self, BufRead, BufReader, Read};

/// One unit the framer yields.
#[derive(Debug)]
pub enum Piece {
    Record(RawRecord),
    Broken(Broken),
}

/// A record's bytes and where they were.
#[derive(Debug)]
pub struct RawRecord {
    /// 1-based line where the record's document starts.
    pub line: u64,
    /// Index inside an array or `Records` envelope.
    pub element: Option<u64>,
    pub bytes: Vec<u8>,
}

/// Input that could not be split into records.
#[derive(Debug)]
pub struct Broken {
    pub line: u64,
    pub element: Option<u64>,
    pub rejection: Rejection,
    /// The bytes concerned (a prefix when they were too large).
    pub bytes: Vec<u8>,
    /// The record's full size when known.
    pub size: u64,
}

impl Piece {
    /// `LINE` or `LINE#ELEMENT`, for origins.
    pub fn position(&self) -> String {
        let (line, element) = match self {
            Piece::Record(r) => (r.line, r.element),
            Piece::Broken(b) => (b.line, b.element),
        };
        match element {
            Some(e) => format!("{line}#{e}"),
            None => line.to_string(),
        }
    }
}

/// Wraps a reader, transparently un-gzipping it when it starts with the gzip magic bytes.
pub fn decompressing<R: Read + 'static>(reader: R) -> io::Result<Box<dyn BufRead>> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let head = buffered.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::with_capacity(
            256 * 1024,
            MultiGzDecoder::new(buffered),
        )))
    } else {
        Ok(Box::new(buffered))
    }
}

/// [`decompressing`] for input already in memory (a Kafka message, an HTTP body): plain bytes
/// are read in place, without a 256 KiB buffer per input.
pub fn decompressing_bytes(bytes: Vec<u8>) -> Box<dyn BufRead> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::with_capacity(
            64 * 1024,
            MultiGzDecoder::new(io::Cursor::new(bytes)),
        ))
    } else {
        Box::new(io::Cursor::new(bytes))
    }
}

enum Mode {
    /// Before the first document: decide between lines and a stream.
    Start,
    Lines,
    Done,
}

/// Iterator over the pieces of one input.
pub struct Framer<R: BufRead> {
    reader: R,
    max_record_bytes: usize,
    line: u64,
    mode: Mode,
    queue: std::collections::VecDeque<Piece>,
    /// Bytes of input consumed, for progress.
    pub bytes_read: u64,
}

impl<R: BufRead> Framer<R> {
    pub fn new(reader: R, max_record_bytes: usize) -> Framer<R> {
        Framer {
            reader,
            max_record_bytes,
            line: 0,
            mode: Mode::Start,
            queue: Default::default(),
            bytes_read: 0,
        }
    }

    fn broken(&mut self, rejection: Rejection, bytes: Vec<u8>, size: u64) {
        self.queue.push_back(Piece::Broken(Broken {
            line: self.line,
            element: None,
            rejection,
            bytes,
            size,
        }));
    }

    /// Reads the next line into `buf`, keeping at most `max_record_bytes` of it. Returns the full
    /// length of the line, or `None` at the end of input.
    fn read_line_capped(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        buf.clear();
        let mut total = 0usize;
        loop {
            let chunk = self.reader.fill_buf()?;
            if chunk.is_empty() {
                return Ok((total > 0).then_some(total));
            }
            let (take, done) = match memchr_newline(chunk) {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            let room = (self.max_record_bytes + 1).saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..take.min(room)]);
            total += take;
            self.reader.consume(take);
            self.bytes_read += take as u64;
            if done {
                return Ok(Some(total));
            }
        }
    }

    fn step(&mut self) {
        let mut buf = Vec::new();
        loop {
            let len = match self.read_line_capped(&mut buf) {
                Ok(Some(len)) => len,
                Ok(None) => {
                    self.mode = Mode::Done;
                    return;
                }
                Err(e) => {
                    self.line += 1;
                    self.input_error(e);
                    return;
                }
            };
            self.line += 1;
            let content_len = trim_len(&buf);
            // A capped line was longer than what we kept; its real length is what was read.
            let real_len = if len > buf.len() { len } else { content_len };
            if real_len == 0 {
                continue; // blank line
            }
            if real_len > self.max_record_bytes {
                let mut prefix = std::mem::take(&mut buf);
                prefix.truncate(self.max_record_bytes);
                let reason = format!(
                    "record is {real_len} bytes, over the {} byte limit",
                    self.max_record_bytes
                );
                self.broken(
                    Rejection::new(ErrorKind::TooLarge, reason),
                    prefix,
                    real_len as u64,
                );
                self.mode = Mode::Lines;
                return;
            }
            buf.truncate(content_len);
            if matches!(self.mode, Mode::Start) {
                self.mode = Mode::Lines;
                // A lone line (a Kafka message, a one-record body) is one document either way:
                // skip parsing it twice just to tell lines from a stream.
                if self.reader.fill_buf().is_ok_and(|rest| rest.is_empty()) {
                    let line = self.line;
                    self.expand_document(buf, line);
                    return;
                }
                let trimmed = trim_start(&buf);
                let whole = serde_json::from_slice::<serde::de::IgnoredAny>(trimmed);
                if let Err(e) = whole
                    && e.is_eof()
                {
                    self.stream_documents(buf);
                    return;
                }
            }
            let line = self.line;
            self.expand_document(buf, line);
            return;
        }
    }

    /// Pretty-printed input: parse whitespace-separated JSON values from here to the end.
    fn stream_documents(&mut self, first: Vec<u8>) {
        self.mode = Mode::Done;
        let start_line = self.line;
        // Pretty-printed input is read whole; cap it so a huge one cannot exhaust memory.
        let cap = self.max_record_bytes as u64 * 64;
        let mut rest = Vec::new();
        if let Err(e) = (&mut self.reader).take(cap).read_to_end(&mut rest) {
            self.input_error(e);
            return;
        }
        self.bytes_read += rest.len() as u64;
        if rest.len() as u64 == cap && !self.reader.fill_buf().is_ok_and(|b| b.is_empty()) {
            let reason = format!(
                "pretty-printed JSON input over {cap} bytes; send it as NDJSON (one record per line)"
            );
            self.broken(Rejection::new(ErrorKind::TooLarge, reason), first, cap);
            return;
        }
        let mut all = first;
        all.push(b'\n');
        all.extend_from_slice(&rest);
        let mut stream = serde_json::Deserializer::from_slice(&all).into_iter::<&RawValue>();
        loop {
            // The next document starts at the first non-blank byte after the previous one.
            let mut offset = stream.byte_offset();
            while all.get(offset).is_some_and(u8::is_ascii_whitespace) {
                offset += 1;
            }
            match stream.next() {
                None => break,
                Some(Ok(doc)) => {
                    let line = start_line + count_newlines(&all[..offset]);
                    self.expand_document(doc.get().as_bytes().to_vec(), line);
                }
                Some(Err(e)) => {
                    let line = start_line + count_newlines(&all[..offset]);
                    let tail = all[offset..].to_vec();
                    let size = tail.len() as u64;
                    self.line = line;
                    self.broken(
                        Rejection::new(
                            ErrorKind::InvalidJson,
                            format!("invalid JSON, the rest of the input cannot be split: {e}"),
                        ),
                        tail,
                        size,
                    );
                    break;
                }
            }
        }
    }

    fn input_error(&mut self, e: io::Error) {
        self.mode = Mode::Done;
        let kind = if e.kind() == io::ErrorKind::InvalidData
            || e.kind() == io::ErrorKind::UnexpectedEof
            || e.to_string().contains("corrupt")
        {
            ErrorKind::Decompression
        } else {
            ErrorKind::InvalidJson
        };
        self.broken(
            Rejection::new(kind, format!("input unreadable from here on: {e}")),
            Vec::new(),
            0,
        );
    }

    /// Splits one document into its records.
    fn expand_document(&mut self, doc: Vec<u8>, line: u64) {
        let trimmed = trim_start(&doc);
        let elements: Option<Vec<&RawValue>> = if trimmed.starts_with(b"[") {
            match serde_json::from_slice::<Vec<&RawValue>>(trimmed) {
                Ok(v) => Some(v),
                Err(e) => {
                    let size = doc.len() as u64;
                    self.line = line;
                    self.broken(
                        Rejection::new(ErrorKind::InvalidJson, format!("invalid JSON array: {e}")),
                        doc,
                        size,
                    );
                    return;
                }
            }
        } else if names_an_envelope(trimmed) {
            // CloudTrail S3 files (`Records`), Azure diagnostic exports (`records`), HCP audit
            // trail pages (`data`); a document where the field is not an array is one record.
            #[derive(Deserialize)]
            struct Envelope<'a> {
                #[serde(rename = "Records", alias = "records", alias = "data", borrow)]
                records: Vec<&'a RawValue>,
            }
            serde_json::from_slice::<Envelope<'_>>(trimmed)
                .ok()
                .map(|e| e.records)
        } else {
            None
        };
        match elements {
            None => self.queue.push_back(Piece::Record(RawRecord {
                line,
                element: None,
                bytes: doc,
            })),
            Some(elements) => {
                for (i, el) in elements.iter().enumerate() {
                    let bytes = el.get().as_bytes();
                    if bytes.len() > self.max_record_bytes {
                        self.queue.push_back(Piece::Broken(Broken {
                            line,
                            element: Some(i as u64),
                            rejection: Rejection::new(
                                ErrorKind::TooLarge,
                                format!(
                                    "record is {} bytes, over the {} byte limit",
                                    bytes.len(),
                                    self.max_record_bytes
                                ),
                            ),
                            bytes: bytes[..self.max_record_bytes].to_vec(),
                            size: bytes.len() as u64,
                        }));
                    } else {
                        self.queue.push_back(Piece::Record(RawRecord {
                            line,
                            element: Some(i as u64),
                            bytes: bytes.to_vec(),
                        }));
                    }
                }
            }
        }
    }
}

impl<R: BufRead> Iterator for Framer<R> {
    type Item = Piece;

    fn next(&mut self) -> Option<Piece> {
        loop {
            if let Some(p) = self.queue.pop_front() {
                return Some(p);
            }
            if matches!(self.mode, Mode::Done) {
                return None;
            }
            self.step();
        }
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', b)
}

fn count_newlines(b: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', b).count() as u64
}

/// Whether a document may be an envelope of records; the searchers are built once, not per
/// document.
fn names_an_envelope(doc: &[u8]) -> bool {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    static FIELDS: LazyLock<[Finder<'static>; 3]> = LazyLock::new(|| {
        [
            Finder::new(b"\"Records\""),
            Finder::new(b"\"records\""),
            Finder::new(b"\"data\""),
        ]
    });
    FIELDS.iter().any(|f| f.find(doc).is_some())
}

fn trim_start(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    &b[start..]
}

/// Length without trailing whitespace (the newline, a CR).
fn trim_len(b: &[u8]) -> usize {
    b.iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(input: &[u8], max: usize) -> Vec<Piece> {
        let reader = decompressing(std::io::Cursor::new(input.to_vec())).unwrap();
        Framer::new(reader, max).collect()
    }

    fn records(ps: &[Piece]) -> Vec<String> {
        ps.iter()
            .filter_map(|p| match p {
                Piece::Record(r) => Some(String::from_utf8_lossy(&r.bytes).into_owned()),
                Piece::Broken(_) => None,
            })
            .collect()
    }

    #[test]
    fn ndjson_keeps_good_lines_around_a_bad_one() {
        let ps = pieces(b"{\"a\":1}\n\n{broken\n{\"a\":3}\n", 1024);
        assert_eq!(records(&ps), vec!["{\"a\":1}", "{broken", "{\"a\":3}"]);
        assert_eq!(ps[1].position(), "3");
    }

    #[test]
    fn records_envelope_and_arrays_expand() {
        let ps = pieces(br#"{"Records":[{"a":1},{"a":2}]}"#, 1024);
        assert_eq!(records(&ps), vec![r#"{"a":1}"#, r#"{"a":2}"#]);
        assert_eq!(ps[1].position(), "1#1");
        let ps = pieces(b"[{\"a\":1},\n{\"a\":2}]", 1024);
        assert_eq!(records(&ps).len(), 2);
    }

    #[test]
    fn a_lone_line_is_one_document_whole_or_not() {
        // A one-record Kafka message or body, with or without its newline; a truncated one is
        // still one record, which the format's parser then rejects.
        for input in [
            &b"{\"a\":1}"[..],
            b"{\"a\":1}\n",
            b"{\"a\":",
            b"[{\"a\":1},{\"a\":2}]",
        ] {
            let ps = pieces(input, 1024);
            let want = if input.starts_with(b"[") { 2 } else { 1 };
            assert_eq!(
                records(&ps).len(),
                want,
                "{}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(ps.len(), want);
        }
        assert_eq!(records(&pieces(b"{\"a\":", 1024)), vec!["{\"a\":"]);
    }

    #[test]
    fn pretty_printed_documents_stream() {
        let ps = pieces(b"{\n \"a\": 1\n}\n{\n \"a\": 2\n}\n", 1024);
        assert_eq!(records(&ps).len(), 2);
        assert_eq!(ps[1].position(), "4");
    }

    #[test]
    fn oversized_pretty_input_is_refused_not_truncated() {
        let mut input = b"{\n".to_vec();
        for i in 0..200 {
            input.extend(format!(" \"k{i}\": {i},\n").bytes());
        }
        input.extend(b" \"end\": 0\n}\n");
        let ps = pieces(&input, 16);
        assert_eq!(ps.len(), 1);
        let Piece::Broken(b) = &ps[0] else {
            panic!("expected a refusal")
        };
        assert_eq!(b.rejection.kind, ErrorKind::TooLarge);
        assert!(records(&pieces(&input, 1024)).len() == 1);
    }

    #[test]
    fn oversized_line_is_broken_and_capped() {
        let mut input = b"{\"a\":1}\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 5000));
        input.extend(b"\n{\"a\":2}\n");
        let ps = pieces(&input, 100);
        assert_eq!(records(&ps).len(), 2);
        let Piece::Broken(b) = &ps[1] else { panic!() };
        assert_eq!(b.rejection.kind, ErrorKind::TooLarge);
        assert!(b.size >= 5000);
        assert!(b.bytes.len() <= 100);
    }

    #[test]
    fn gzip_and_truncated_gzip() {
        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        for i in 0..200 {
            writeln!(enc, "{{\"i\":{i}}}").unwrap();
        }
        let gz = enc.finish().unwrap();
        assert_eq!(records(&pieces(&gz, 1024)).len(), 200);

        let ps = pieces(&gz[..gz.len() / 2], 1024);
        let Some(Piece::Broken(b)) = ps.last() else {
            panic!("expected a broken tail")
        };
        assert_eq!(b.rejection.kind, ErrorKind::Decompression);
    }
}
