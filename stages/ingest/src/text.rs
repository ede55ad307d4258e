//! Plain-text files: one `.txt` file is one document; its path (relative to the input
//! folder) is its `source_id`.

use std::path::Path;

use m6_pipeline::{BoxError, TaskOutput};
use m6_schemas::Document;

use crate::{io_err, Ctx, IngestConfig};

/// A whole text file as [`read_whole_text`] found it; each caller words its error rows.
pub(crate) enum WholeText {
    /// The text, trimmed, without a UTF-8 byte-order mark (Windows editors write one).
    Text(String),
    /// The file's size, over `max_record_mb`: refused before it is read.
    TooLarge(u64),
    NotUtf8(std::str::Utf8Error),
}

/// Reads a file that is one record (a `.txt` document, an image's caption sidecar):
/// capped at `max_record_mb` before reading, then decoded as UTF-8. Also returns the
/// file's size in bytes.
pub(crate) fn read_whole_text(cfg: &IngestConfig, path: &Path) -> Result<(WholeText, u64), BoxError> {
    let len = std::fs::metadata(path).map_err(io_err(path))?.len();
    if len > cfg.max_record_bytes() as u64 {
        return Ok((WholeText::TooLarge(len), len));
    }
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let len = bytes.len() as u64;
    Ok(match String::from_utf8(bytes) {
        Ok(t) => (WholeText::Text(t.strip_prefix('\u{feff}').unwrap_or(&t).trim().to_string()), len),
        Err(e) => (WholeText::NotUtf8(e.utf8_error()), len),
    })
}

pub(crate) fn ingest(ctx: &Ctx, out: &mut TaskOutput) -> Result<(), BoxError> {
    let (text, len) = read_whole_text(ctx.cfg, ctx.path)?;
    out.count_in(1, len);
    let text = match text {
        WholeText::Text(t) => t,
        // One file is one document: past the cap it is refused before it is read.
        WholeText::TooLarge(len) => {
            let max = ctx.cfg.max_record_bytes();
            return ctx.error(out, "file".into(), "too_large", format!("file of {len} bytes exceeds max_record_mb={} ({max} bytes)", ctx.cfg.max_record_mb));
        }
        WholeText::NotUtf8(e) => return ctx.error(out, "file".into(), "utf8", format!("not UTF-8: {e}")),
    };
    if text.is_empty() {
        return ctx.error(out, "file".into(), "empty", "file holds no text".into());
    }
    out.write_rows(&[Document::new(&ctx.source, Some(ctx.label.to_string()), None, None, text, None)])?;
    Ok(())
}
