//! Plain-text files: one `.txt` file is one document; its path (relative to the input
//! folder) is its `source_id`.

use std::path::Path;

use m6_pipeline::{BoxError, TaskOutput};
use m6_schemas::Document;

use crate::{io_err, Ctx, IngestConfig};

/// A whole text file as [`read_whole_text`] found it; each caller words its error rows.
pub(crate) enum WholeText {
    /// The text, trimmed, without a byte-order mark (Windows editors write one), and
    /// the encoding it was read in.
    Text(String, &'static encoding_rs::Encoding),
    /// The file's size, over `max_record_mb`: refused before it is read.
    TooLarge(u64),
    /// Not UTF-8, and not readable in another encoding (`encoding`): why.
    NotText(String),
}

impl WholeText {
    /// Counts a file read in an encoding other than UTF-8 (`charset.gbk`, ...).
    pub(crate) fn count(&self, out: &mut TaskOutput) {
        if let WholeText::Text(_, enc) = self {
            if *enc != encoding_rs::UTF_8 {
                out.counters.bump(&format!("charset.{}", enc.name().to_ascii_lowercase()), 1);
            }
        }
    }
}

/// Reads a file that is one record (a `.txt` document, an image's caption sidecar):
/// capped at `max_record_mb` before reading, then decoded as UTF-8 or as `encoding`
/// says (`crate::charset`). Also returns the file's size in bytes.
pub(crate) fn read_whole_text(cfg: &IngestConfig, path: &Path) -> Result<(WholeText, u64), BoxError> {
    let len = std::fs::metadata(path).map_err(io_err(path))?.len();
    if len > cfg.max_record_bytes() as u64 {
        return Ok((WholeText::TooLarge(len), len));
    }
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let len = bytes.len() as u64;
    Ok(match crate::charset::decode_file(&bytes, cfg.charset()) {
        Ok((t, enc)) => (WholeText::Text(t.trim().to_string(), enc), len),
        Err(why) => (WholeText::NotText(why), len),
    })
}

pub(crate) fn ingest(ctx: &Ctx, out: &mut TaskOutput) -> Result<(), BoxError> {
    let (text, len) = read_whole_text(ctx.cfg, ctx.path)?;
    out.count_in(1, len);
    text.count(out);
    let text = match text {
        WholeText::Text(t, _) => t,
        // One file is one document: past the cap it is refused before it is read.
        WholeText::TooLarge(len) => {
            let max = ctx.cfg.max_record_bytes();
            return ctx.error(out, "file".into(), "too_large", format!("file of {len} bytes exceeds max_record_mb={} ({max} bytes)", ctx.cfg.max_record_mb));
        }
        WholeText::NotText(why) => return ctx.error(out, "file".into(), "utf8", why),
    };
    if text.is_empty() {
        return ctx.error(out, "file".into(), "empty", "file holds no text".into());
    }
    out.write_rows(&[Document::new(&ctx.source, Some(ctx.label.to_string()), None, None, text, None)])?;
    Ok(())
}
