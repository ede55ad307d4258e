//! JSONL (optionally gzip-compressed): one JSON object per line into `document`.
//! `text` is required; `id` is kept as `source_id`; `url` and `title` get their own
//! columns; every other field is kept, as JSON, in `meta`.
//!
//! Lines are read through a bounded buffer: a line longer than `max_record_mb` is
//! never held whole (the reader keeps at most the cap, then skips to the next newline)
//! and goes to `errors/` with its line number and offset. A `.gz` that is truncated or
//! corrupt keeps every complete line decoded before the damage, and the damage itself
//! becomes an error row naming the compressed offset where decoding stopped.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::rc::Rc;

use m6_pipeline::{BoxError, TaskOutput};
use m6_schemas::Document;
use serde_json::{Map, Value};

use crate::{io_err, Batcher, Ctx};

/// Counts the bytes read from the file itself (compressed bytes for `.gz`), so the
/// place where a damaged gzip stream stops decoding can be named.
struct Counting<R> {
    inner: R,
    read: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

/// The opened file: decoded bytes, whether it is gzip, and the raw bytes consumed so far.
pub(crate) struct Opened {
    pub reader: Box<dyn BufRead>,
    pub gz: bool,
    pub raw_read: Rc<Cell<u64>>,
    pub raw_len: u64,
}

pub(crate) fn open(ctx: &Ctx) -> Result<Opened, BoxError> {
    let f = File::open(ctx.path).map_err(io_err(ctx.path))?;
    let raw_len = f.metadata().map_err(io_err(ctx.path))?.len();
    let raw_read = Rc::new(Cell::new(0));
    let counted = Counting { inner: f, read: raw_read.clone() };
    let gz = ctx.path.extension().is_some_and(|e| e == "gz");
    let r: Box<dyn Read> = if gz { Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(256 << 10, counted))) } else { Box::new(counted) };
    Ok(Opened { reader: Box::new(BufReader::with_capacity(1 << 20, r)), gz, raw_read, raw_len })
}

/// One line as the bounded reader saw it.
#[derive(Debug)]
pub(crate) enum Line {
    /// A whole line (without its newline) no longer than the cap.
    Whole,
    /// A line longer than the cap: `len` bytes in all (newline excluded), of which
    /// none are kept.
    TooLong { len: u64 },
    /// The stream failed (gzip damage, I/O) inside this line; `partial` bytes of it
    /// had been decoded and are dropped.
    Broken { partial: u64, error: std::io::Error },
}

/// Reads lines of at most `max` bytes from a `BufRead`, tracking the decoded offset.
pub(crate) struct BoundedLines<R> {
    inner: R,
    max: usize,
    /// Decoded bytes consumed so far (the offset of the next line).
    pub offset: u64,
}

impl<R: BufRead> BoundedLines<R> {
    pub fn new(inner: R, max: usize) -> Self {
        BoundedLines { inner, max, offset: 0 }
    }

    /// Fills `line` with the next line; `None` at the end of the stream. `line` holds
    /// at most `max` bytes whatever the line's length.
    pub fn next_line(&mut self, line: &mut Vec<u8>) -> Option<Line> {
        line.clear();
        let mut len = 0u64;
        let mut too_long = false;
        loop {
            let buf = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(error) => return Some(Line::Broken { partial: len, error }),
            };
            if buf.is_empty() {
                // End of stream: a last line without a newline is still a line.
                return match (len, too_long) {
                    (0, _) => None,
                    (_, true) => Some(Line::TooLong { len }),
                    (_, false) => Some(Line::Whole),
                };
            }
            let (take, done) = match memchr::memchr(b'\n', buf) {
                Some(i) => (i, true),
                None => (buf.len(), false),
            };
            if !too_long {
                if len as usize + take > self.max {
                    // Past the cap: drop what was kept and only count from here on.
                    too_long = true;
                    line.clear();
                    line.shrink_to(1 << 16);
                } else {
                    line.extend_from_slice(&buf[..take]);
                }
            }
            len += take as u64;
            let consumed = take + usize::from(done);
            self.inner.consume(consumed);
            self.offset += consumed as u64;
            if done {
                return Some(if too_long { Line::TooLong { len } } else { Line::Whole });
            }
        }
    }
}

pub(crate) fn ingest(ctx: &Ctx, out: &mut TaskOutput) -> Result<(), BoxError> {
    let opened = open(ctx)?;
    let max = ctx.cfg.max_record_bytes();
    let mut lines = BoundedLines::new(opened.reader, max);
    let mut batch = Batcher::<Document>::new(ctx.cfg.batch_rows);
    // Parsed once per file, not per line.
    let cs = ctx.cfg.charset();
    let mut line = Vec::with_capacity(1 << 16);
    let mut line_no = 0u64;
    loop {
        let start = lines.offset;
        let Some(got) = lines.next_line(&mut line) else { break };
        line_no += 1;
        match got {
            Line::Whole => {
                out.count_in(1, lines.offset - start);
                let mut trimmed = line.trim_ascii();
                // Windows editors (Notepad, Excel exports) start UTF-8 files with a
                // byte-order mark, which JSON refuses: the first record was an error row.
                if line_no == 1 {
                    trimmed = trimmed.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(trimmed).trim_ascii_start();
                }
                if trimmed.is_empty() {
                    continue;
                }
                match parse_line(ctx, cs, trimmed) {
                    Ok((doc, repaired)) => {
                        if repaired {
                            out.counters.bump("repaired.lone_surrogate", 1);
                        }
                        let size = doc.text.len();
                        batch.push(doc, size, out)?;
                    }
                    Err((kind, msg)) => ctx.error(out, format!("line {line_no}"), kind, msg)?,
                }
            }
            Line::TooLong { len } => {
                out.count_in(1, lines.offset - start);
                ctx.error(
                    out,
                    format!("line {line_no} (offset {start})"),
                    "too_large",
                    format!("line of {len} bytes exceeds max_record_mb={} ({max} bytes); skipped without being read whole", ctx.cfg.max_record_mb),
                )?;
            }
            Line::Broken { partial, error } => {
                if !opened.gz {
                    // A plain file that cannot be read is an I/O failure, not bad data.
                    return Err(io_err(ctx.path)(error).into());
                }
                let at = opened.raw_read.get();
                let kind = if error.kind() == ErrorKind::UnexpectedEof { "truncated" } else { "gzip" };
                let kept = line_no - 1;
                ctx.error(
                    out,
                    format!("offset {at}"),
                    kind,
                    format!(
                        "gzip stream damaged ({error}) at compressed offset {at} of {} bytes, decoded offset {start}; kept the {kept} complete lines before it, dropped {partial} bytes of line {line_no} and anything after",
                        opened.raw_len
                    ),
                )?;
                break;
            }
        }
    }
    batch.flush(out)
}

/// One JSONL record, and whether a lone surrogate had to be replaced to read it.
fn parse_line(ctx: &Ctx, cs: crate::charset::Charset, line: &[u8]) -> Result<(Document, bool), (&'static str, String)> {
    let text = crate::charset::decode_line(line, cs).map_err(|why| ("utf8", why))?;
    let (value, repaired): (Value, bool) = match serde_json::from_str(&text) {
        Ok(v) => (v, false),
        Err(e) => match repair_lone_surrogates(&text).and_then(|t| serde_json::from_str(&t).ok()) {
            Some(v) => (v, true),
            None => return Err(("json", format!("invalid JSON: {e}"))),
        },
    };
    let Value::Object(mut obj) = value else {
        return Err(("not_object", "line is JSON but not an object".into()));
    };
    let cfg = ctx.cfg;
    let body = match obj.remove(&cfg.text_field) {
        Some(Value::String(s)) => s,
        Some(other) => return Err(("bad_text", format!("`{}` is {}, not a string", cfg.text_field, kind_of(&other)))),
        None => return Err(("missing_text", format!("no `{}` field", cfg.text_field))),
    };
    let source_id = obj.remove(&cfg.id_field).and_then(scalar_string);
    let url = obj.remove(&cfg.url_field).and_then(scalar_string);
    let title = obj.remove(&cfg.title_field).and_then(scalar_string);
    let source = match obj.get(&cfg.source_field) {
        Some(Value::String(s)) if !s.is_empty() => {
            let s = s.clone();
            obj.remove(&cfg.source_field);
            s
        }
        _ => ctx.source.clone(),
    };
    let meta = (!obj.is_empty()).then(|| Value::Object(Map::from_iter(obj)).to_string());
    Ok((Document::new(&source, source_id, url, title, body, meta), repaired))
}

/// The line with each `\u` escape of an unpaired UTF-16 surrogate replaced by U+FFFD,
/// or `None` when it has none. Python writes them (`json.dumps` of text decoded with
/// `surrogateescape`, or of a string cut inside an emoji) and JSON's grammar allows
/// them, but they are no character, so serde refuses the line: the whole document was
/// an error row for one unreadable character, where Python readers keep it.
fn repair_lone_surrogates(line: &str) -> Option<String> {
    let b = line.as_bytes();
    let unit = |i: usize| -> Option<u32> {
        let h = b.get(i + 2..i + 6)?;
        (b[i] == b'\\' && b[i + 1] == b'u').then_some(())?;
        u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    };
    let (mut out, mut i, mut last, mut fixed) = (String::with_capacity(line.len()), 0, 0, false);
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        match unit(i) {
            Some(0xD800..=0xDBFF) if unit(i + 6).is_some_and(|lo| (0xDC00..=0xDFFF).contains(&lo)) => i += 12,
            Some(0xD800..=0xDFFF) => {
                out.push_str(&line[last..i]);
                out.push_str("\\uFFFD");
                i += 6;
                last = i;
                fixed = true;
            }
            // Any other escape, `\\` included, is two bytes (or a whole \uXXXX).
            Some(_) => i += 6,
            None => i += 2,
        }
    }
    fixed.then(|| {
        out.push_str(&line[last..]);
        out
    })
}

fn scalar_string(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    fn all(data: &[u8], max: usize, cap: usize) -> Vec<(String, u64)> {
        // A tiny BufReader capacity makes lines span many buffer fills.
        let mut r = BoundedLines::new(BufReader::with_capacity(cap, Cursor::new(data.to_vec())), max);
        let mut line = vec![];
        let mut out = vec![];
        while let Some(l) = r.next_line(&mut line) {
            match l {
                Line::Whole => out.push((String::from_utf8(line.clone()).unwrap(), r.offset)),
                Line::TooLong { len } => out.push((format!("<{len}>"), r.offset)),
                Line::Broken { .. } => out.push(("<broken>".into(), r.offset)),
            }
            assert!(line.len() <= max);
        }
        out
    }

    #[test]
    fn lone_surrogates_become_replacement_characters_and_pairs_stay() {
        use super::repair_lone_surrogates as r;
        assert_eq!(r(r#"{"text": "a\ud800b"}"#).as_deref(), Some(r#"{"text": "a\uFFFDb"}"#));
        assert_eq!(r(r#"{"text": "\udc80\udcff"}"#).as_deref(), Some(r#"{"text": "\uFFFD\uFFFD"}"#));
        assert_eq!(r(r#"{"text": "x\ud83d"}"#).as_deref(), Some(r#"{"text": "x\uFFFD"}"#));
        // A pair, an escaped backslash before "ud800", and other escapes are left alone.
        assert_eq!(r(r#"{"text": "\ud83d\ude00 \\ud800 \n \u4e2d"}"#), None);
        assert_eq!(r(r#"{"text": "\\\ud800"}"#).as_deref(), Some(r#"{"text": "\\\uFFFD"}"#));
        let fixed: serde_json::Value = serde_json::from_str(&r(r#"{"text": "好\ud800字"}"#).unwrap()).unwrap();
        assert_eq!(fixed["text"], "好\u{fffd}字");
    }

    #[test]
    fn long_lines_are_skipped_to_the_next_newline() {
        let data = b"ab\n0123456789\nxyz\n\n0123456789abc\nlast";
        for cap in [1, 3, 7, 64] {
            let got = all(data, 10, cap);
            assert_eq!(
                got,
                vec![("ab".into(), 3), ("0123456789".into(), 14), ("xyz".into(), 18), ("".into(), 19), ("<13>".into(), 33), ("last".into(), 37)],
                "buffer of {cap}"
            );
        }
        assert_eq!(all(b"", 10, 4), vec![]);
        assert_eq!(all(b"0123456789abcdef", 10, 4), vec![("<16>".into(), 16)]);
    }

    #[test]
    fn truncated_gzip_keeps_whole_lines_then_breaks() {
        let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::default());
        for i in 0..2000 {
            writeln!(e, "{{\"text\":\"line {i} 床前明月光 疑是地上霜\"}}").unwrap();
        }
        let full = e.finish().unwrap();
        let cut = &full[..full.len() * 2 / 3];
        let mut r = BoundedLines::new(BufReader::new(flate2::read::MultiGzDecoder::new(cut)), 1 << 20);
        let mut line = vec![];
        let mut whole = 0;
        let mut broken = 0;
        while let Some(l) = r.next_line(&mut line) {
            match l {
                Line::Whole => {
                    assert!(line.ends_with(b"}"), "{}", String::from_utf8_lossy(&line));
                    whole += 1;
                }
                Line::Broken { .. } => {
                    broken += 1;
                    break;
                }
                Line::TooLong { .. } => unreachable!(),
            }
        }
        assert_eq!(broken, 1, "a truncated gzip stream must report an error, not end quietly");
        assert!(whole > 100 && whole < 2000, "{whole}");
    }
}
