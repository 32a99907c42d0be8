//! Cutting a JSON byte stream into documents, and envelopes into their records, element by
//! element, in bounded memory.
//!
//! Why not a JSON parser: a parser stops at the first syntax error, and an envelope of 200
//! CloudTrail records with one broken record must still yield the other 199. The scanner only
//! tracks what delimits values (brackets, strings and their escapes, commas and colons at the
//! envelope's level), so a record whose *contents* are malformed (a control character, `NaN`, a
//! bad escape) is still cut out whole, and the format's parser rejects that record alone.
//!
//! Memory: each document and each record keeps at most `max + 1` bytes; longer ones are counted
//! and reported as too large. An envelope's size never matters, only each record's.

use super::{Broken, Piece, RawRecord};
use crate::formats::{ErrorKind, Rejection};
use std::collections::VecDeque;

/// Fields of a top-level object whose array holds the records: CloudTrail S3 objects and
/// digest-less exports (`Records`), Azure diagnostic settings exports (`records`), HCP Terraform
/// audit trail pages (`data`), Microsoft Graph pages (`value`).
const ENVELOPE_KEYS: [&[u8]; 4] = [b"Records", b"records", b"data", b"value"];

/// Where the scanner is among the top-level object's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    ExpectKey,
    InKey,
    AfterKey,
    ExpectValue,
    InValue,
}

/// Bytes kept up to a cap, with the full length counted.
#[derive(Debug, Default)]
struct Capped {
    bytes: Vec<u8>,
    len: u64,
}

impl Capped {
    fn push(&mut self, b: &[u8], max: usize) {
        self.len += b.len() as u64;
        let room = (max + 1).saturating_sub(self.bytes.len());
        self.bytes.extend_from_slice(&b[..b.len().min(room)]);
    }

    fn take(&mut self) -> Capped {
        std::mem::take(self)
    }
}

/// Incremental scanner: bytes in, [`Piece`]s out.
#[derive(Debug)]
pub(super) struct Scanner {
    max: usize,
    /// Whether a document also ends when its brackets close (pretty-printed streams); in
    /// NDJSON the caller ends each document at its line's end.
    ends_itself: bool,
    /// The line the next byte is on.
    line: u64,
    depth: u32,
    in_string: bool,
    escaped: bool,
    started: bool,
    doc_line: u64,
    object: bool,
    doc: Capped,
    member: Member,
    key: Vec<u8>,
    key_names_records: bool,
    /// The depth of the records inside the array being split, while inside it.
    array: Option<u32>,
    /// The document's records were taken from its array: the document itself is no record.
    enveloped: bool,
    elem: Capped,
    elem_started: bool,
    index: u64,
}

impl Scanner {
    pub(super) fn new(max: usize, ends_itself: bool, line: u64) -> Scanner {
        Scanner {
            max,
            ends_itself,
            line,
            depth: 0,
            in_string: false,
            escaped: false,
            started: false,
            doc_line: line,
            object: false,
            doc: Capped::default(),
            member: Member::ExpectKey,
            key: Vec::new(),
            key_names_records: false,
            array: None,
            enveloped: false,
            elem: Capped::default(),
            elem_started: false,
            index: 0,
        }
    }

    /// Scans `bytes`, queueing every record and document they complete.
    pub(super) fn feed(&mut self, mut bytes: &[u8], out: &mut VecDeque<Piece>) {
        while !bytes.is_empty() {
            let used = if self.in_string {
                self.string_run(bytes)
            } else {
                self.byte(bytes[0], out);
                1
            };
            bytes = &bytes[used..];
        }
    }

    /// Ends the current document (a line's end in NDJSON, the input's end in a stream). One cut
    /// short inside its brackets is emitted as it is: its format's parser rejects it.
    pub(super) fn finish(&mut self, out: &mut VecDeque<Piece>) {
        self.end_document(out);
    }

    /// Inside a string: consumes up to and including its closing quote or next escape.
    fn string_run(&mut self, bytes: &[u8]) -> usize {
        if self.escaped {
            self.escaped = false;
            self.take_string_bytes(&bytes[..1]);
            return 1;
        }
        match memchr::memchr2(b'"', b'\\', bytes) {
            None => {
                self.take_string_bytes(bytes);
                bytes.len()
            }
            Some(i) => {
                if bytes[i] == b'\\' {
                    self.escaped = true;
                    self.take_string_bytes(&bytes[..=i]);
                } else {
                    self.take_string_bytes(&bytes[..i]);
                    self.push(b"\"");
                    self.in_string = false;
                    if self.member == Member::InKey && self.depth == 1 {
                        self.member = Member::AfterKey;
                        self.key_names_records = ENVELOPE_KEYS.contains(&self.key.as_slice());
                    }
                }
                i + 1
            }
        }
    }

    fn take_string_bytes(&mut self, b: &[u8]) {
        self.line += memchr::memchr_iter(b'\n', b).count() as u64;
        if self.member == Member::InKey && self.depth == 1 && self.key.len() <= 16 {
            let room = 17 - self.key.len();
            self.key.extend_from_slice(&b[..b.len().min(room)]);
        }
        self.push(b);
    }

    /// Keeps bytes in the record they belong to: the element being cut, or the document.
    fn push(&mut self, b: &[u8]) {
        match self.array {
            Some(_) if self.elem_started => self.elem.push(b, self.max),
            Some(_) => {}
            None if !self.enveloped && self.started => self.doc.push(b, self.max),
            None => {}
        }
    }

    /// A value starts here: the first byte of a record inside the array being split, or a
    /// member's value at the top level.
    fn value_starts(&mut self) {
        if self.array == Some(self.depth) && !self.elem_started {
            self.elem_started = true;
        }
        if self.depth == 1 && self.object && self.member == Member::ExpectValue {
            self.member = Member::InValue;
        }
    }

    fn byte(&mut self, b: u8, out: &mut VecDeque<Piece>) {
        if b == b'\n' {
            self.line += 1;
        }
        if b.is_ascii_whitespace() {
            if self.started && self.depth == 0 && self.ends_itself {
                // A top-level scalar ends at whitespace.
                self.end_document(out);
            } else {
                self.push(&[b]);
            }
            return;
        }
        if !self.started {
            self.started = true;
            self.doc_line = self.line;
            self.object = b == b'{';
        }
        match b {
            b'"' => {
                self.value_starts();
                if self.depth == 1 && self.object && self.member == Member::ExpectKey {
                    self.member = Member::InKey;
                    self.key.clear();
                }
                self.push(b"\"");
                self.in_string = true;
            }
            b'{' | b'[' => {
                if b == b'[' && self.depth == 0 {
                    // A top-level array: its elements are the records.
                    self.depth = 1;
                    self.array = Some(1);
                    return;
                }
                let opens_records = b == b'['
                    && self.depth == 1
                    && self.object
                    && self.member == Member::ExpectValue
                    && self.key_names_records
                    && self.array.is_none()
                    && !self.enveloped;
                if opens_records {
                    // Only the records matter from here: what came before is dropped.
                    self.member = Member::InValue;
                    self.depth = 2;
                    self.array = Some(2);
                    self.doc = Capped::default();
                    return;
                }
                self.value_starts();
                self.push(&[b]);
                self.depth += 1;
            }
            b'}' | b']' => {
                if let Some(d) = self.array
                    && self.depth == d
                {
                    // The record array closes.
                    self.end_element(out);
                    self.array = None;
                    self.enveloped = true;
                    self.depth = d - 1;
                } else {
                    self.push(&[b]);
                    self.depth = self.depth.saturating_sub(1);
                }
                if self.depth == 0 && self.ends_itself {
                    self.end_document(out);
                }
            }
            b',' => {
                if self.array == Some(self.depth) {
                    self.end_element(out);
                    return;
                }
                if self.depth == 1 && self.object {
                    self.member = Member::ExpectKey;
                }
                self.push(b",");
            }
            b':' => {
                if self.depth == 1 && self.object && self.member == Member::AfterKey {
                    self.member = Member::ExpectValue;
                }
                self.push(b":");
            }
            _ => {
                self.value_starts();
                self.push(&[b]);
            }
        }
    }

    fn end_element(&mut self, out: &mut VecDeque<Piece>) {
        if !self.elem_started {
            return;
        }
        self.elem_started = false;
        let elem = self.elem.take();
        let index = self.index;
        self.index += 1;
        out.push_back(self.piece(elem, Some(index)));
    }

    fn end_document(&mut self, out: &mut VecDeque<Piece>) {
        if self.started {
            if self.array.is_some() {
                // Cut short inside the record array: what was read of the last record is kept,
                // and its format's parser rejects it alone.
                self.end_element(out);
            } else if !self.enveloped {
                let doc = self.doc.take();
                out.push_back(self.piece(doc, None));
            }
        }
        let line = self.line;
        *self = Scanner::new(self.max, self.ends_itself, line);
    }

    fn piece(&self, mut bytes: Capped, element: Option<u64>) -> Piece {
        trim_end(&mut bytes.bytes);
        if bytes.len > self.max as u64 {
            // The full length counts trailing whitespace too; it is a bound, not a measure.
            bytes.bytes.truncate(self.max);
            Piece::Broken(Broken {
                line: self.doc_line,
                element,
                rejection: Rejection::new(
                    ErrorKind::TooLarge,
                    format!(
                        "record is {} bytes, over the {} byte limit",
                        bytes.len, self.max
                    ),
                ),
                bytes: bytes.bytes,
                size: bytes.len,
            })
        } else {
            Piece::Record(RawRecord {
                line: self.doc_line,
                element,
                bytes: bytes.bytes,
            })
        }
    }
}

fn trim_end(b: &mut Vec<u8>) {
    let keep = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    b.truncate(keep);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(input: &[u8], max: usize, ends_itself: bool, chunk: usize) -> Vec<Piece> {
        let mut s = Scanner::new(max, ends_itself, 1);
        let mut out = VecDeque::new();
        for c in input.chunks(chunk) {
            s.feed(c, &mut out);
        }
        s.finish(&mut out);
        out.into_iter().collect()
    }

    fn shown(ps: &[Piece]) -> Vec<String> {
        ps.iter()
            .map(|p| match p {
                Piece::Record(r) => String::from_utf8_lossy(&r.bytes).into_owned(),
                Piece::Broken(b) => format!("BROKEN {}", b.rejection.kind.as_str()),
            })
            .collect()
    }

    #[test]
    fn every_chunking_cuts_the_same_records() {
        let input = br#"{"Records": [ {"a":"x,]}\"y"}, {"b":[1,2]} ,3, "s" ], "next": "z"}"#;
        let want = vec![r#"{"a":"x,]}\"y"}"#, r#"{"b":[1,2]}"#, "3", r#""s""#];
        for chunk in 1..input.len() {
            assert_eq!(shown(&scan(input, 100, true, chunk)), want, "chunk {chunk}");
        }
    }

    #[test]
    fn a_record_over_the_limit_costs_only_itself() {
        let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(500));
        let input = format!(r#"{{"records":[{{"a":1}},{big},{{"a":3}}]}}"#);
        let ps = scan(input.as_bytes(), 100, true, 7);
        assert_eq!(
            shown(&ps),
            vec![r#"{"a":1}"#, "BROKEN too_large", r#"{"a":3}"#]
        );
        let Piece::Broken(b) = &ps[1] else { panic!() };
        assert_eq!(b.size, big.len() as u64);
        assert_eq!(b.element, Some(1));
    }

    #[test]
    fn malformed_contents_stay_inside_their_record() {
        let input = b"{\"Records\":[{\"a\":1},{\"a\":NaN,\"b\":\"\x01\"},{\"a\":3}]}";
        assert_eq!(
            shown(&scan(input, 100, true, 3)),
            vec![r#"{"a":1}"#, "{\"a\":NaN,\"b\":\"\x01\"}", r#"{"a":3}"#]
        );
    }

    #[test]
    fn fields_named_like_envelopes_split_only_at_the_top_level() {
        // Vault's `request.data` is an object; a record's own nested `Records` is no envelope;
        // a top-level `data` that is an object is one record.
        for input in [
            r#"{"request":{"data":[1,2]},"type":"request"}"#,
            r#"{"data":{"id":"ae66e491"}}"#,
            r#"{"x":{"Records":[{"a":1}]}}"#,
        ] {
            assert_eq!(shown(&scan(input.as_bytes(), 100, true, 5)), vec![input]);
        }
    }

    #[test]
    fn a_truncated_envelope_keeps_its_complete_records() {
        let ps = scan(br#"{"Records":[{"a":1},{"a":2},{"a":"#, 100, true, 4);
        assert_eq!(shown(&ps), vec![r#"{"a":1}"#, r#"{"a":2}"#, r#"{"a":"#]);
    }

    #[test]
    fn pretty_printed_documents_end_when_their_brackets_close() {
        let input = b"{\n \"a\": 1\n}\n[\n {\"b\": 2},\n {\"b\": 3}\n]\n\"tail\"\n";
        let ps = scan(input, 100, true, 2);
        assert_eq!(
            shown(&ps),
            vec!["{\n \"a\": 1\n}", r#"{"b": 2}"#, r#"{"b": 3}"#, r#""tail""#]
        );
        let lines: Vec<u64> = ps
            .iter()
            .map(|p| match p {
                Piece::Record(r) => r.line,
                Piece::Broken(b) => b.line,
            })
            .collect();
        assert_eq!(lines, vec![1, 4, 4, 8]);
    }
}
