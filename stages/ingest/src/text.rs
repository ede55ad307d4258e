//! Plain-text files: one `.txt` file is one document; its path (relative to the input
//! folder) is its `source_id`.

use m6_pipeline::{BoxError, TaskOutput};
use m6_schemas::Document;

use crate::{io_err, Ctx};

pub(crate) fn ingest(ctx: &Ctx, out: &mut TaskOutput) -> Result<(), BoxError> {
    let len = std::fs::metadata(ctx.path).map_err(io_err(ctx.path))?.len();
    let max = ctx.cfg.max_record_bytes() as u64;
    if len > max {
        // One file is one document: past the cap it is refused before it is read.
        out.count_in(1, len);
        return ctx.error(out, "file".into(), "too_large", format!("file of {len} bytes exceeds max_record_mb={} ({max} bytes)", ctx.cfg.max_record_mb));
    }
    let bytes = std::fs::read(ctx.path).map_err(io_err(ctx.path))?;
    out.count_in(1, bytes.len() as u64);
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => return ctx.error(out, "file".into(), "utf8", format!("not UTF-8: {}", e.utf8_error())),
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text).trim().to_string();
    if text.is_empty() {
        return ctx.error(out, "file".into(), "empty", "file holds no text".into());
    }
    out.write_rows(&[Document::new(&ctx.source, Some(ctx.label.to_string()), None, None, text, None)])?;
    Ok(())
}
