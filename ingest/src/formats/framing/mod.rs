//! Splitting bodies and files into records.
//!
//! Every input (an HTTP body, a replayed file, a Kafka message) is a sequence of *documents*; a
//! document is one record, a JSON array of records, or an envelope holding an array of records:
//! CloudTrail S3 files `{"Records": [...]}`, Azure diagnostic exports `{"records": [...]}`, HCP
//! audit trail pages `{"data": [...]}`, Microsoft Graph pages `{"value": [...]}`. Documents are
//! one per line (NDJSON), or, when the first line is not a whole JSON value, whitespace-separated
//! pretty-printed JSON. gzip is detected by its magic bytes.
//!
//! Limits apply per record, never per document: arrays and envelopes of any size are cut into
//! their elements as they stream ([`scan`]), `max_record_bytes` bounds each element, and one
//! malformed element becomes one dead letter while its neighbours are kept. Memory stays bounded
//! by `max_record_bytes` and the reader's buffer. A broken line costs only that line; a broken
//! gzip stream ends the input with one [`Piece::Broken`] saying where.

mod scan;

use super::{ErrorKind, Rejection};
use flate2::bufread::MultiGzDecoder;
use scan::Scanner;
use std::collections::VecDeque;
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

/// Wraps a reader, transparently un-gzipping it when it starts with the gzip magic bytes. A
/// gzip input may unpack to at most `max_unpacked` bytes: past them the reader fails, so a
/// decompression bomb costs its first bytes, not the machine.
pub fn decompressing<R: Read + 'static>(
    reader: R,
    max_unpacked: u64,
) -> io::Result<Box<dyn BufRead>> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let head = buffered.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::with_capacity(
            256 * 1024,
            Unpacked::new(MultiGzDecoder::new(buffered), max_unpacked),
        )))
    } else {
        Ok(Box::new(buffered))
    }
}

/// [`decompressing`] for input already in memory (a Kafka message, an HTTP body): plain bytes
/// are read in place, without a 256 KiB buffer per input.
pub fn decompressing_bytes(bytes: Vec<u8>, max_unpacked: u64) -> Box<dyn BufRead> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::with_capacity(
            64 * 1024,
            Unpacked::new(MultiGzDecoder::new(io::Cursor::new(bytes)), max_unpacked),
        ))
    } else {
        Box::new(io::Cursor::new(bytes))
    }
}

/// A decompressed stream that fails once it has produced more than its cap.
struct Unpacked<R> {
    inner: R,
    left: u64,
    cap: u64,
}

impl<R> Unpacked<R> {
    fn new(inner: R, cap: u64) -> Unpacked<R> {
        Unpacked {
            inner,
            left: cap,
            cap,
        }
    }
}

impl<R: Read> Read for Unpacked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // One byte more tells a stream that ends exactly at the cap from a larger one.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "gzip input unpacks to more than {} bytes (limits.max_unpacked_bytes); the rest is refused",
                        self.cap
                    ),
                )),
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

enum Mode {
    /// Before the first document: decide between lines and a stream.
    Start,
    /// NDJSON: every line is a document.
    Lines,
    /// Inside a line longer than `max_record_bytes`: scanned as it streams, so an envelope
    /// of any size yields its records and a lone huge record is only counted.
    LongLine,
    /// Pretty-printed JSON: documents end where their brackets close.
    Stream,
    Done,
}

/// Iterator over the pieces of one input.
pub struct Framer<R: BufRead> {
    reader: R,
    max_record_bytes: usize,
    line: u64,
    mode: Mode,
    scanner: Option<Scanner>,
    queue: VecDeque<Piece>,
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
            scanner: None,
            queue: Default::default(),
            bytes_read: 0,
        }
    }

    /// Reads the next line without its newline, keeping at most `max_record_bytes + 1` bytes
    /// of it. `Some(true)`: the line ended; `Some(false)`: it goes on past what was kept;
    /// `None`: the input ended.
    fn read_line_head(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<bool>> {
        buf.clear();
        let cap = self.max_record_bytes + 1;
        let mut read_any = false;
        loop {
            let chunk = self.reader.fill_buf()?;
            if chunk.is_empty() {
                return Ok(read_any.then_some(true));
            }
            read_any = true;
            let window = &chunk[..chunk.len().min(cap - buf.len())];
            if let Some(i) = memchr::memchr(b'\n', window) {
                buf.extend_from_slice(&window[..i]);
                self.reader.consume(i + 1);
                self.bytes_read += i as u64 + 1;
                return Ok(Some(true));
            }
            let n = window.len();
            buf.extend_from_slice(window);
            self.reader.consume(n);
            self.bytes_read += n as u64;
            if buf.len() >= cap {
                return Ok(Some(false));
            }
        }
    }

    fn step(&mut self) {
        match self.mode {
            Mode::Start | Mode::Lines => self.next_line(),
            Mode::LongLine => self.scan_chunk(true),
            Mode::Stream => self.scan_chunk(false),
            Mode::Done => {}
        }
    }

    fn next_line(&mut self) {
        let mut buf = Vec::new();
        loop {
            let ended = match self.read_line_head(&mut buf) {
                Ok(Some(ended)) => ended,
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
            if !ended {
                // Longer than any record may be: only an envelope's records can be kept.
                self.mode = Mode::LongLine;
                let mut scanner = Scanner::new(self.max_record_bytes, false, self.line);
                scanner.feed(&buf, &mut self.queue);
                self.scanner = Some(scanner);
                return;
            }
            buf.truncate(trim_len(&buf));
            if buf.is_empty() {
                continue; // blank line
            }
            if matches!(self.mode, Mode::Start) {
                self.mode = Mode::Lines;
                // A lone line (a Kafka message, a one-record body) is one document either way:
                // skip parsing it twice just to tell lines from a stream.
                let lone = self.reader.fill_buf().is_ok_and(|rest| rest.is_empty());
                if !lone
                    && let Err(e) =
                        serde_json::from_slice::<serde::de::IgnoredAny>(trim_start(&buf))
                    && e.is_eof()
                {
                    let mut scanner = Scanner::new(self.max_record_bytes, true, self.line);
                    scanner.feed(&buf, &mut self.queue);
                    scanner.feed(b"\n", &mut self.queue);
                    self.scanner = Some(scanner);
                    self.mode = Mode::Stream;
                    return;
                }
            }
            self.line_document(buf);
            return;
        }
    }

    /// One NDJSON line: a record, or an array or envelope of records.
    fn line_document(&mut self, doc: Vec<u8>) {
        let trimmed = trim_start(&doc);
        if !trimmed.starts_with(b"[") && !names_an_envelope(trimmed) {
            self.queue.push_back(Piece::Record(RawRecord {
                line: self.line,
                element: None,
                bytes: doc,
            }));
            return;
        }
        let mut scanner = Scanner::new(self.max_record_bytes, false, self.line);
        scanner.feed(&doc, &mut self.queue);
        scanner.finish(&mut self.queue);
    }

    /// Feeds the scanner the next buffered chunk: up to the line's end for a long line, or
    /// any bytes of a stream.
    fn scan_chunk(&mut self, to_line_end: bool) {
        let Some(scanner) = self.scanner.as_mut() else {
            self.mode = Mode::Done;
            return;
        };
        let chunk = match self.reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) => {
                scanner.finish(&mut self.queue);
                self.scanner = None;
                self.input_error(e);
                return;
            }
        };
        if chunk.is_empty() {
            scanner.finish(&mut self.queue);
            self.scanner = None;
            self.mode = Mode::Done;
            return;
        }
        let line_end = if to_line_end {
            memchr::memchr(b'\n', chunk)
        } else {
            None
        };
        let used = match line_end {
            Some(i) => {
                scanner.feed(&chunk[..i], &mut self.queue);
                scanner.finish(&mut self.queue);
                self.scanner = None;
                self.mode = Mode::Lines;
                i + 1
            }
            None => {
                scanner.feed(chunk, &mut self.queue);
                chunk.len()
            }
        };
        self.reader.consume(used);
        self.bytes_read += used as u64;
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
        self.queue.push_back(Piece::Broken(Broken {
            line: self.line,
            element: None,
            rejection: Rejection::new(kind, format!("input unreadable from here on: {e}")),
            bytes: Vec::new(),
            size: 0,
        }));
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

/// Whether a document may be an envelope of records; the searchers are built once, not per
/// document.
fn names_an_envelope(doc: &[u8]) -> bool {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    static FIELDS: LazyLock<[Finder<'static>; 4]> = LazyLock::new(|| {
        [
            Finder::new(b"\"Records\""),
            Finder::new(b"\"records\""),
            Finder::new(b"\"data\""),
            Finder::new(b"\"value\""),
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
        let reader = decompressing(std::io::Cursor::new(input.to_vec()), 1 << 30).unwrap();
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
    fn a_pretty_printed_record_over_the_limit_is_refused_whole() {
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
        assert_eq!(records(&pieces(&input, 8192)).len(), 1);
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

    #[test]
    fn a_gzip_bomb_unpacks_only_to_its_cap() {
        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;
        // 4 million `{}` lines: ~12 KB gzipped, 12 MB unpacked.
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        for _ in 0..4_000_000 {
            enc.write_all(b"{}\n").unwrap();
        }
        let gz = enc.finish().unwrap();
        assert!(gz.len() < 64 << 10, "{}", gz.len());
        for reader in [
            decompressing(std::io::Cursor::new(gz.clone()), 3_000).unwrap(),
            decompressing_bytes(gz.clone(), 3_000),
        ] {
            let ps: Vec<Piece> = Framer::new(reader, 1024).collect();
            assert_eq!(
                records(&ps).len(),
                1000,
                "the first 3,000 bytes, then a refusal"
            );
            let Some(Piece::Broken(b)) = ps.last() else {
                panic!("expected a refusal")
            };
            assert_eq!(b.rejection.kind, ErrorKind::Decompression);
            assert!(
                b.rejection.reason.contains("max_unpacked_bytes"),
                "{}",
                b.rejection.reason
            );
        }
        // Exactly at the cap is whole.
        let ps: Vec<Piece> = Framer::new(decompressing_bytes(gz, 12_000_000), 1024).collect();
        assert_eq!(records(&ps).len(), 4_000_000);
    }

    #[test]
    fn an_envelope_larger_than_any_record_yields_each_record() {
        // An Entra diagnostic export of ~2 MB on one line, and the same pretty-printed: the
        // limit is per record, so all 4,000 sign-ins come out.
        let record = r#"{"time":"2024-07-09T10:00:00Z","category":"ServicePrincipalSignInLogs","properties":{"appId":"0a1b","federatedCredentialId":"f1c2","padding":"PADDING"}}"#
            .replace("PADDING", &"p".repeat(400));
        let body = vec![record.as_str(); 4000].join(",");
        let one_line = format!(r#"{{"records":[{body}]}}"#);
        assert!(one_line.len() > 2_000_000);
        let pretty = format!(
            "{{\n  \"records\": [\n{}\n  ]\n}}\n",
            vec![record.as_str(); 4000].join(",\n")
        );
        for input in [one_line.as_bytes(), pretty.as_bytes()] {
            let ps = pieces(input, 1024);
            assert_eq!(ps.len(), 4000);
            assert_eq!(records(&ps).len(), 4000);
            assert_eq!(ps[3999].position().split('#').nth(1), Some("3999"));
        }
    }

    #[test]
    fn one_broken_element_costs_only_itself() {
        // 200 CloudTrail records, one with a raw control character (invalid JSON): 200 pieces,
        // 199 of them parse.
        let good = r#"{"eventVersion":"1.08","eventID":"ID","eventSource":"sts.amazonaws.com"}"#;
        let mut elements: Vec<String> = (0..200)
            .map(|i| good.replace("ID", &i.to_string()))
            .collect();
        elements[57] = "{\"eventID\":\"57\",\"userAgent\":\"a\u{1}b\"}".into();
        let input = format!(r#"{{"Records":[{}]}}"#, elements.join(","));
        let ps = pieces(input.as_bytes(), 1024);
        let parsed = records(&ps)
            .iter()
            .filter(|r| serde_json::from_str::<serde::de::IgnoredAny>(r).is_ok())
            .count();
        assert_eq!((ps.len(), parsed), (200, 199));
    }

    #[test]
    fn a_huge_lone_record_is_counted_not_kept() {
        let big = format!(r#"{{"eventSource":"{}"}}"#, "x".repeat(100_000));
        let input = format!("{big}\n{{\"a\":1}}\n");
        let ps = pieces(input.as_bytes(), 1024);
        let Piece::Broken(b) = &ps[0] else { panic!() };
        assert_eq!(
            (b.rejection.kind, b.size),
            (ErrorKind::TooLarge, big.len() as u64)
        );
        assert_eq!(records(&ps), vec![r#"{"a":1}"#]);
        assert_eq!(ps[1].position(), "2");
    }
}
