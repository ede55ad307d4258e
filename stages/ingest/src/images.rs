//! Image folders with captions into `pair`: the caption comes from a sidecar `.txt`
//! beside the image, else from one `captions.jsonl` (`{"file": …, "caption": …}`) or
//! `captions.csv` (`file,caption` header) in the image's folder. Image folders without
//! any captions into `image`. Only the image header is decoded (for width and height),
//! so a huge image costs no pixel memory here.

use std::collections::HashMap;
use std::io::{BufRead, Cursor};
use std::path::{Path, PathBuf};

use m6_pipeline::{BoxError, Task, TaskOutput};
use m6_schemas::{Image, Pair};

use crate::text::{read_whole_text, WholeText};
use crate::{io_err, Batcher, Ctx, IngestConfig};

pub const CAPTIONS_JSONL: &str = "captions.jsonl";
pub const CAPTIONS_CSV: &str = "captions.csv";
/// `.jfif` and `.jpe` are JPEG too (Chrome on Windows saves downloaded JPEGs as
/// `.jfif`); the format is read from the bytes either way.
const EXTS: [&str; 8] = [".png", ".jpg", ".jpeg", ".jfif", ".jpe", ".gif", ".webp", ".bmp"];

pub(crate) fn is_image_name(lower_name: &str) -> bool {
    EXTS.iter().any(|e| lower_name.ends_with(e))
}

/// Captions listed in a folder's captions file, by file name, and which file it was.
struct FolderCaptions {
    origin: &'static str,
    /// Caption and line number (in the captions file) by file name.
    by_name: HashMap<String, (String, usize)>,
}

/// `reports(dir)`: whether this task reports the problems of `dir`'s captions file
/// (one task per folder does, so a bad line is one error row however many tasks
/// share the folder).
///
/// `source_of(file)`: the `source` column of an image file (per file: a task's files
/// can come from several folders).
pub(crate) fn ingest(cfg: &IngestConfig, source_of: &dyn Fn(&Path) -> String, task: &Task, out: &mut TaskOutput, reports: &dyn Fn(&Path) -> bool) -> Result<(), BoxError> {
    let mut folders: HashMap<PathBuf, FolderCaptions> = HashMap::new();
    let mut batch = Batcher::<Pair>::new(cfg.batch_rows.min(256));
    for input in &task.inputs {
        let source = source_of(&input.path);
        let ctx = Ctx { cfg, path: &input.path, label: &input.label, source: source.clone() };
        let dir = input.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        if !folders.contains_key(&dir) {
            let caps = load_captions(&ctx, &dir, out, reports(&dir))?;
            folders.insert(dir.clone(), caps);
        }
        let Some(bytes) = read_image(&ctx, out)? else { continue };
        let sidecar = input.path.with_extension("txt");
        let name = input.path.file_name().unwrap().to_string_lossy().to_string();
        let (caption, origin) = if sidecar.is_file() {
            // A sidecar read as a `.txt` document is (`crate::charset`: a short GBK
            // caption needs `encoding` set); one that cannot be read is an error row
            // naming it, not the failure of the whole task (a thousand images). A
            // byte-order mark is not caption text.
            let sctx = Ctx { cfg, path: &sidecar, label: &input.label, source: source.clone() };
            let (text, _) = read_whole_text(cfg, &sidecar)?;
            text.count(out);
            match text {
                WholeText::Text(c, _) => (Some(c), "sidecar"),
                WholeText::TooLarge(len) => {
                    sctx.error(out, "file".into(), "too_large", format!("caption sidecar of {len} bytes, over max_record_mb = {}; {name} not ingested", cfg.max_record_mb))?;
                    continue;
                }
                WholeText::NotText(why) => {
                    sctx.error(out, "file".into(), "utf8", format!("caption sidecar: {why}; {name} not ingested"))?;
                    continue;
                }
            }
        } else {
            let f = &folders[&dir];
            (f.by_name.get(&name).map(|(c, _)| c.clone()), f.origin)
        };
        let Some(caption) = caption.filter(|c| !c.is_empty()) else {
            ctx.error(out, "file".into(), "no_caption", format!("no caption: no {} and no entry in {CAPTIONS_JSONL}/{CAPTIONS_CSV}", sidecar.display()))?;
            continue;
        };
        let (format, width, height) = match header(&bytes) {
            Ok(h) => h,
            Err(e) => {
                ctx.error(out, "file".into(), "image_decode", e)?;
                continue;
            }
        };
        let image_id = Image::make_id(&bytes);
        let size = bytes.len();
        let pair = Pair {
            id: Pair::make_id(&image_id, &caption, None),
            image_id,
            image_bytes: bytes,
            width,
            height,
            format,
            caption,
            caption_origin: origin.to_string(),
            url: None,
            image_url: None,
            source: source.clone(),
            source_id: Some(input.label.clone()),
            signals: Default::default(),
        };
        batch.push(pair, size, out)?;
    }
    batch.flush(out)
}

/// The image file's bytes, or `None` after an error row when the file is larger than
/// `max_record_mb`: it is not read, so a multi-gigabyte file with an image's name (a
/// video, a disk image) costs no memory, and no row over Arrow's 2 GiB per batch is built.
fn read_image(ctx: &Ctx, out: &mut TaskOutput) -> Result<Option<Vec<u8>>, BoxError> {
    let size = std::fs::metadata(ctx.path).map_err(io_err(ctx.path))?.len();
    out.count_in(1, size);
    if size > ctx.cfg.max_record_bytes() as u64 {
        let msg = format!("image file of {:.1} MiB, over max_record_mb = {}; not read", size as f64 / (1 << 20) as f64, ctx.cfg.max_record_mb);
        ctx.error(out, "file".into(), "too_large", msg)?;
        return Ok(None);
    }
    Ok(Some(std::fs::read(ctx.path).map_err(io_err(ctx.path))?))
}

/// Format name and size from the header, or the error row's message. The header read
/// allocates at most `m6_imaging::HEADER_ALLOC` (a PNG's compressed colour profile
/// made it allocate 512 MB) and refuses no declared size (the filter's bomb rule does).
fn header(bytes: &[u8]) -> Result<(String, u32, u32), String> {
    let reader = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string())?;
    let format = reader.format().ok_or_else(|| "not a recognised image format".to_string())?;
    let mut reader = reader;
    reader.limits(m6_imaging::header_limits());
    let (w, h) = reader.into_dimensions().map_err(|e| e.to_string())?;
    Ok((m6_imaging::format_name(format), w, h))
}

/// Caption-less image files into `image` rows (one per file; undecodable headers
/// become `image_decode` error rows).
pub(crate) fn ingest_uncaptioned(cfg: &IngestConfig, source_of: &dyn Fn(&Path) -> String, task: &Task, out: &mut TaskOutput) -> Result<(), BoxError> {
    let mut batch = Batcher::<Image>::new(cfg.batch_rows.min(256));
    for input in &task.inputs {
        let source = source_of(&input.path);
        let ctx = Ctx { cfg, path: &input.path, label: &input.label, source: source.clone() };
        let Some(bytes) = read_image(&ctx, out)? else { continue };
        let (format, width, height) = match header(&bytes) {
            Ok(h) => h,
            Err(e) => {
                ctx.error(out, "file".into(), "image_decode", e)?;
                continue;
            }
        };
        let size = bytes.len();
        let row = Image {
            id: Image::make_id(&bytes),
            url: None,
            page_url: None,
            source: source.clone(),
            source_id: Some(input.label.clone()),
            bytes,
            width,
            height,
            format,
            signals: Default::default(),
        };
        batch.push(row, size, out)?;
    }
    batch.flush(out)
}

/// The folder's captions; with `report`, its bad lines and its captions for files
/// that are not image files of the folder (a caption no row will carry) become error
/// rows naming the captions file and line.
fn load_captions(ctx: &Ctx, dir: &Path, out: &mut TaskOutput, report: bool) -> Result<FolderCaptions, BoxError> {
    let caps = read_captions(ctx, dir, out, report)?;
    if report && caps.origin != "sidecar" {
        let path = dir.join(caps.origin);
        let cctx = Ctx { cfg: ctx.cfg, path: &path, label: ctx.label, source: ctx.source.clone() };
        let mut unused: Vec<(usize, &String)> = caps.by_name.iter().filter(|(f, _)| !(is_image_name(&f.to_lowercase()) && dir.join(f.as_str()).is_file())).map(|(f, (_, line))| (*line, f)).collect();
        unused.sort();
        for (line, f) in unused {
            cctx.error(out, format!("line {line}"), "caption_entry", format!("caption for `{f}`, which is not an image file in {}", dir.display()))?;
        }
    }
    Ok(caps)
}

fn read_captions(ctx: &Ctx, dir: &Path, out: &mut TaskOutput, report: bool) -> Result<FolderCaptions, BoxError> {
    let mut by_name = HashMap::new();
    let jsonl = dir.join(CAPTIONS_JSONL);
    let csv_path = dir.join(CAPTIONS_CSV);
    // Lines and fields are UTF-8 or `encoding`.
    let cs = ctx.cfg.charset();
    if jsonl.is_file() {
        let f = std::io::BufReader::new(std::fs::File::open(&jsonl).map_err(io_err(&jsonl))?);
        let jctx = Ctx { cfg: ctx.cfg, path: &jsonl, label: ctx.label, source: ctx.source.clone() };
        for (i, line) in f.split(b'\n').enumerate() {
            // A line that is not UTF-8 (or `encoding`) is an error row, not the end of
            // the task.
            let line = line.map_err(io_err(&jsonl))?;
            let line = match crate::charset::decode_line(&line, cs) {
                Ok(l) => l.into_owned(),
                Err(why) => {
                    if report {
                        jctx.error(out, format!("line {}", i + 1), "utf8", why)?;
                    }
                    continue;
                }
            };
            // Windows editors start UTF-8 files with a byte-order mark, which JSON refuses.
            let line = if i == 0 { line.strip_prefix('\u{feff}').map(str::to_string).unwrap_or(line) } else { line };
            if line.trim().is_empty() {
                continue;
            }
            let parsed: Result<serde_json::Value, _> = serde_json::from_str(&line);
            let entry = parsed.ok().and_then(|v| {
                let file = ["file", "filename", "image"].iter().find_map(|k| v.get(*k)?.as_str().map(str::to_string))?;
                let cap = ["caption", "text"].iter().find_map(|k| v.get(*k)?.as_str().map(str::to_string))?;
                Some((file, cap))
            });
            match entry {
                Some((file, cap)) => {
                    by_name.insert(file, (cap, i + 1));
                }
                None if report => jctx.error(out, format!("line {}", i + 1), "caption_entry", "expected {\"file\": …, \"caption\": …}".into())?,
                None => {}
            }
        }
        return Ok(FolderCaptions { origin: "captions.jsonl", by_name });
    }
    if csv_path.is_file() {
        let mut r = csv::ReaderBuilder::new().flexible(true).from_path(&csv_path).map_err(|e| crate::IngestError::Config(format!("{}: {e}", csv_path.display())))?;
        let headers = r.byte_headers().map_err(|e| crate::IngestError::Config(format!("{}: {e}", csv_path.display())))?.clone();
        let headers: Vec<String> = headers.iter().map(|h| crate::charset::decode_line(h, cs).map(|c| c.trim_start_matches('\u{feff}').to_string()).unwrap_or_default()).collect();
        let col = |names: &[&str]| headers.iter().position(|h| names.contains(&h.trim()));
        let (Some(fc), Some(cc)) = (col(&["file", "filename", "image"]), col(&["caption", "text"])) else {
            return Err(crate::IngestError::Config(format!("{}: header must name a file column (file/filename/image) and a caption column (caption/text)", csv_path.display())).into());
        };
        let cctx = Ctx { cfg: ctx.cfg, path: &csv_path, label: ctx.label, source: ctx.source.clone() };
        for (i, rec) in r.byte_records().enumerate() {
            match rec {
                Ok(rec) => match (rec.get(fc), rec.get(cc)) {
                    (Some(f), Some(c)) => match (crate::charset::decode_line(f, cs), crate::charset::decode_line(c, cs)) {
                        (Ok(f), Ok(c)) => {
                            by_name.insert(f.into_owned(), (c.into_owned(), i + 2));
                        }
                        (Err(why), _) | (_, Err(why)) if report => cctx.error(out, format!("line {}", i + 2), "utf8", why)?,
                        _ => {}
                    },
                    _ if report => cctx.error(out, format!("line {}", i + 2), "caption_entry", "row lacks the file or caption column".into())?,
                    _ => {}
                },
                Err(e) if report => cctx.error(out, format!("line {}", i + 2), "csv", e.to_string())?,
                Err(_) => {}
            }
        }
        return Ok(FolderCaptions { origin: "captions.csv", by_name });
    }
    Ok(FolderCaptions { origin: "sidecar", by_name })
}
