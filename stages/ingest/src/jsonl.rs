//! JSONL (optionally gzip-compressed): one JSON object per line into `document`.
//! `text` is required; `id` is kept as `source_id`; `url` and `title` get their own
//! columns; every other field is kept, as JSON, in `meta`.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};

use m6_pipeline::{BoxError, TaskOutput};
use m6_schemas::Document;
use serde_json::{Map, Value};

use crate::{io_err, Batcher, Ctx};

pub(crate) fn open(ctx: &Ctx) -> Result<Box<dyn BufRead>, BoxError> {
    let f = File::open(ctx.path).map_err(io_err(ctx.path))?;
    let r: Box<dyn Read> = if ctx.path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(f)))
    } else {
        Box::new(f)
    };
    Ok(Box::new(BufReader::with_capacity(1 << 20, r)))
}

pub(crate) fn ingest(ctx: &Ctx, out: &mut TaskOutput) -> Result<(), BoxError> {
    let mut reader = open(ctx)?;
    let mut batch = Batcher::<Document>::new(ctx.cfg.batch_rows);
    let mut line = Vec::with_capacity(1 << 16);
    let mut line_no = 0u64;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io_err(ctx.path))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        out.count_in(1, n as u64);
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            continue;
        }
        match parse_line(ctx, trimmed) {
            Ok(doc) => {
                let size = doc.text.len();
                batch.push(doc, size, out)?;
            }
            Err((kind, msg)) => ctx.error(out, format!("line {line_no}"), kind, msg)?,
        }
    }
    batch.flush(out)
}

fn parse_line(ctx: &Ctx, line: &[u8]) -> Result<Document, (&'static str, String)> {
    let text = std::str::from_utf8(line).map_err(|e| ("utf8", format!("invalid UTF-8: {e}")))?;
    let value: Value = serde_json::from_str(text).map_err(|e| ("json", format!("invalid JSON: {e}")))?;
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
    Ok(Document::new(&source, source_id, url, title, body, meta))
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
