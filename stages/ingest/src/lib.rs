//! The `ingest` stage: local inputs users already have — JSONL, plain text, image
//! folders with captions, WARC files — into `document`, `pair` or `page` datasets.
//!
//! One task per input file (per chunk of images for image folders). A malformed line or
//! record never stops the ingest and is never silently dropped: it is written to the
//! `errors` side dataset with its file and line/offset, counted, and logged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use m6_pipeline::{BoxError, Flag, OutputSpec, RunContext, Stage, StageFactory, StageRun, Task, TaskInput, TaskOutput};
use m6_schemas::{content_id, InputError, Kind};
use serde::{Deserialize, Serialize};

mod charset;
mod images;
mod jsonl;
mod text;
pub mod warc;

/// The side dataset malformed records go to.
pub const ERRORS: &str = "errors";

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: no input files found (looked for {})", path.display(), .exts)]
    NoInput { path: PathBuf, exts: String },
    #[error("{}: holds {found} files; ingest one format at a time or pass --format", path.display())]
    MixedFormats { path: PathBuf, found: String },
    #[error("unknown format `{0}` (expected auto, jsonl, text, images or warc)")]
    UnknownFormat(String),
    #[error("config: {0}")]
    Config(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IngestError + '_ {
    move |source| IngestError::Io { path: path.to_path_buf(), source }
}

/// What kind of files an ingest reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Decide from the files found: images if any, else WARC, else JSONL, else text.
    #[default]
    Auto,
    /// One JSON object per line (`.jsonl`, `.jsonl.gz`, `.ndjson`) -> `document`.
    Jsonl,
    /// One document per `.txt` file -> `document`.
    Text,
    /// Image files with captions (sidecar `.txt`, or `captions.jsonl`/`captions.csv`) -> `pair`.
    Images,
    /// Image files without captions -> `image` (dedup and filter a photo collection
    /// before captions exist). `auto` picks it for image folders with no caption
    /// sidecar and no captions file.
    Image,
    /// WARC files (`.warc`, `.warc.gz` with one gzip member per record) -> `page`.
    Warc,
}

impl std::str::FromStr for Format {
    type Err = IngestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => Format::Auto,
            "jsonl" => Format::Jsonl,
            "text" => Format::Text,
            "images" => Format::Images,
            "image" => Format::Image,
            "warc" => Format::Warc,
            _ => return Err(IngestError::UnknownFormat(s.to_string())),
        })
    }
}

impl Format {
    fn output(self) -> Kind {
        match self {
            Format::Jsonl | Format::Text | Format::Auto => Kind::Document,
            Format::Images => Kind::Pair,
            Format::Image => Kind::Image,
            Format::Warc => Kind::Page,
        }
    }

    /// The format whose files `of_file` reports (image files serve both image formats).
    fn files_of(self) -> Format {
        if self == Format::Image {
            Format::Images
        } else {
            self
        }
    }

    fn of_file(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_string_lossy().to_lowercase();
        if name.starts_with('.') || name == images::CAPTIONS_JSONL || name == images::CAPTIONS_CSV {
            return None;
        }
        if images::is_image_name(&name) {
            Some(Format::Images)
        } else if name.ends_with(".warc") || name.ends_with(".warc.gz") {
            Some(Format::Warc)
        } else if name.ends_with(".jsonl") || name.ends_with(".jsonl.gz") || name.ends_with(".ndjson") {
            Some(Format::Jsonl)
        } else if name.ends_with(".txt") {
            Some(Format::Text)
        } else {
            None
        }
    }
}

/// `[ingest]` in pipeline.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Input format: auto, jsonl, text, images (captioned -> pair), image (no captions ->
    /// image) or warc. Default `auto`.
    pub format: Format,
    /// The `source` column of every row. Default: the input file or folder name.
    pub source: Option<String>,
    /// JSONL: field holding the text (required in every line). Default `text`.
    pub text_field: String,
    /// JSONL: field kept as `source_id`. Default `id`.
    pub id_field: String,
    /// JSONL: field for the `url` column. Default `url`.
    pub url_field: String,
    /// JSONL: field for the `title` column. Default `title`.
    pub title_field: String,
    /// JSONL: field that, when present and a string, overrides `source` per line. Default `source`.
    pub source_field: String,
    /// Images: how many images one task holds. Default 1000.
    pub images_per_task: usize,
    /// Rows buffered before a batch is written. Default 2048.
    pub batch_rows: usize,
    /// The largest input record, in MiB: a JSONL line (after gzip decompression), a
    /// `.txt` file, a WARC record block, or an image file. A longer one goes to `errors/` with its
    /// file and line/offset and is skipped without ever being held whole (lines are
    /// read through a buffer of at most this size, then skipped to the next newline),
    /// so one hostile line cannot take the memory of the machine. A task's peak
    /// memory is about three times this (the record, its parsed form, its row).
    /// Default 64.
    pub max_record_mb: u64,
    /// How text that is not UTF-8 is read: `auto` (default) reads a whole `.txt` file
    /// or caption sidecar by its byte-order mark (UTF-16 included), or in the legacy
    /// encoding it evidently is (GBK, Big5, ...: chardetng's guess, trusted from 64
    /// non-ASCII bytes and only when the file decodes cleanly); an encoding label
    /// (`gbk`, `gb18030`, `big5`, `shift_jis`, ...) reads every record not in UTF-8 in
    /// it, JSONL and captions-file lines and short files included.
    pub encoding: String,
}

impl IngestConfig {
    /// `max_record_mb` in bytes.
    pub fn max_record_bytes(&self) -> usize {
        (self.max_record_mb as usize).saturating_mul(1 << 20)
    }

    /// `encoding`, checked when the stage was built.
    pub(crate) fn charset(&self) -> charset::Charset {
        charset::Charset::parse(&self.encoding).unwrap_or(charset::Charset::Auto)
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            format: Format::Auto,
            source: None,
            text_field: "text".into(),
            id_field: "id".into(),
            url_field: "url".into(),
            title_field: "title".into(),
            source_field: "source".into(),
            images_per_task: 1000,
            batch_rows: 2048,
            max_record_mb: 64,
            encoding: "auto".into(),
        }
    }
}

pub struct IngestFactory;

impl StageFactory for IngestFactory {
    const NAME: &'static str = "ingest";
    type Config = IngestConfig;
    const FLAGS: &'static [Flag] = &[
        Flag::choice("format", "format", &["auto", "jsonl", "text", "images", "image", "warc"], "Input format (auto, jsonl, text, images, image, warc)."),
        Flag::text("source", "source", "SOURCE", "Value of the `source` column."),
    ];


    fn build(cfg: Self::Config) -> Result<Box<dyn Stage>, BoxError> {
        if cfg.images_per_task == 0 || cfg.batch_rows == 0 {
            return Err(IngestError::Config("images_per_task and batch_rows must be at least 1".into()).into());
        }
        if cfg.max_record_mb == 0 || cfg.max_record_mb > 4096 {
            return Err(IngestError::Config(format!("max_record_mb = {}: must be between 1 and 4096", cfg.max_record_mb)).into());
        }
        if cfg.text_field.is_empty() {
            return Err(IngestError::Config("text_field must not be empty".into()).into());
        }
        charset::Charset::parse(&cfg.encoding).map_err(IngestError::Config)?;
        Ok(Box::new(IngestStage { cfg }))
    }
}

pub struct IngestStage {
    cfg: IngestConfig,
}

impl IngestStage {
    pub fn new(cfg: IngestConfig) -> Self {
        IngestStage { cfg }
    }
}

/// One run of ingest: what `plan` learned from this run's input files.
struct IngestRun<'a> {
    stage: &'a IngestStage,
    /// The format `plan` settled on (auto-detection needs the files).
    format: Format,
    /// Input files `plan` skipped.
    skipped: Option<Skipped>,
    /// Captioned image folders: the task that reports the folder's captions-file
    /// problems (bad lines, captions for files that are not there), the first task
    /// holding an image of the folder; every task reads the file, one reports it.
    caption_reporter: std::collections::HashMap<PathBuf, String>,
}

/// Per-task context: the file being read and the source name.
pub(crate) struct Ctx<'a> {
    pub cfg: &'a IngestConfig,
    pub path: &'a Path,
    /// The file as lineage and error rows name it.
    pub label: &'a str,
    pub source: String,
}

impl Ctx<'_> {
    pub fn error(&self, out: &mut TaskOutput, location: String, kind: &str, message: String) -> Result<(), BoxError> {
        tracing::warn!(file = %self.path.display(), %location, kind, "{message}");
        out.counters.bump("malformed", 1);
        out.counters.bump(&format!("malformed.{kind}"), 1);
        out.write_side_rows(ERRORS, &[InputError { file: self.path.display().to_string(), location, kind: kind.to_string(), message }])?;
        Ok(())
    }
}

impl Stage for IngestStage {
    fn name(&self) -> &'static str {
        "ingest"
    }

    /// The config: a different format, field mapping or source name redoes the files.
    fn settings(&self) -> String {
        m6_pipeline::settings_of(&self.cfg, &[])
    }

    fn start<'a>(&'a self, _ctx: &RunContext<'a>) -> Result<Box<dyn StageRun + 'a>, BoxError> {
        Ok(Box::new(IngestRun { stage: self, format: self.cfg.format, skipped: None, caption_reporter: Default::default() }))
    }
}

impl StageRun for IngestRun<'_> {
    /// Image tasks read captions from sidecar `.txt` files and the folder's captions
    /// file: their checksums are part of the task's key, so an edited caption is
    /// re-ingested.
    fn task_extra_key(&self, task: &Task) -> Result<String, BoxError> {
        if self.format != Format::Images {
            return Ok(String::new());
        }
        let mut files: Vec<PathBuf> = vec![];
        for input in &task.inputs {
            files.push(input.path.with_extension("txt"));
            if let Some(dir) = input.path.parent() {
                files.push(dir.join(images::CAPTIONS_JSONL));
                files.push(dir.join(images::CAPTIONS_CSV));
            }
        }
        files.sort();
        files.dedup();
        let mut key = String::new();
        for f in files.iter().filter(|f| f.is_file()) {
            key.push_str(&format!("{}={}\n", f.display(), m6_pipeline::integrity::file_blake3_cached(f)?));
        }
        Ok(key)
    }

    fn outputs(&self, _input_kinds: &[Kind]) -> Result<OutputSpec, BoxError> {
        Ok(OutputSpec::new(self.format.output()).with_side(ERRORS, Kind::Error))
    }

    fn plan(&mut self, inputs: &[PathBuf]) -> m6_pipeline::Result<Vec<Task>> {
        let mut files: Vec<(PathBuf, PathBuf)> = vec![]; // (root, file)
        for root in inputs {
            if root.is_file() {
                files.push((root.parent().unwrap_or(Path::new("")).to_path_buf(), root.clone()));
            } else {
                let listed = list_files(root).map_err(|e| m6_pipeline::Error::io(root, e))?;
                files.extend(listed.into_iter().map(|f| (root.clone(), f)));
            }
        }
        let format = match self.stage.cfg.format {
            Format::Auto => detect(inputs, &files).map_err(stage_err)?,
            f => f,
        };
        self.format = format;
        self.skipped = Some(note_skipped(&files, format));
        let wanted: Vec<(PathBuf, PathBuf)> = files
            .into_iter()
            .filter(|(_, f)| Format::of_file(f) == Some(format.files_of()))
            .collect();
        if wanted.is_empty() {
            let exts = match format {
                Format::Jsonl => ".jsonl, .jsonl.gz, .ndjson",
                Format::Text => ".txt",
                Format::Images | Format::Image => ".png, .jpg, .jpeg, .jfif, .jpe, .gif, .webp, .bmp",
                Format::Warc | Format::Auto => ".warc, .warc.gz",
            };
            let path = inputs.first().cloned().unwrap_or_default();
            return Err(stage_err(IngestError::NoInput { path, exts: exts.into() }));
        }
        let task_of = |group: &[(PathBuf, PathBuf)]| -> m6_pipeline::Result<Task> {
            let mut parts: Vec<Vec<u8>> = vec![];
            let mut task_inputs = vec![];
            for (root, f) in group {
                let size = std::fs::metadata(f).map_err(|e| m6_pipeline::Error::io(f, e))?.len();
                let label = f.strip_prefix(root).unwrap_or(f).display().to_string();
                // Path and size identify an input well enough for resume without reading it twice.
                parts.push(label.as_bytes().to_vec());
                parts.push(size.to_le_bytes().to_vec());
                task_inputs.push(TaskInput { path: f.clone(), kind: None, label });
            }
            let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
            Ok(Task { id: content_id(&refs), inputs: task_inputs })
        };
        let tasks: Vec<Task> = match format {
            Format::Images | Format::Image => wanted.chunks(self.stage.cfg.images_per_task).map(task_of).collect::<m6_pipeline::Result<_>>()?,
            _ => wanted.chunks(1).map(task_of).collect::<m6_pipeline::Result<_>>()?,
        };
        // Every process plans the same tasks in the same order, so all agree on this.
        if format == Format::Images {
            for t in &tasks {
                for i in &t.inputs {
                    let dir = i.path.parent().unwrap_or(Path::new(".")).to_path_buf();
                    self.caption_reporter.entry(dir).or_insert_with(|| t.id.clone());
                }
            }
        }
        Ok(tasks)
    }

    fn process(&self, _run: &RunContext, task: &Task, out: &mut TaskOutput) -> Result<(), BoxError> {
        let (format, stage) = (self.format, self.stage);
        if format == Format::Images {
            let reports = |dir: &Path| self.caption_reporter.get(dir) == Some(&task.id);
            // Each file's own folder names its rows (not the task's first file's: that
            // made the column depend on images_per_task).
            return images::ingest(&stage.cfg, &|p| stage.source_for(p), task, out, &reports);
        }
        if format == Format::Image {
            return images::ingest_uncaptioned(&stage.cfg, &|p| stage.source_for(p), task, out);
        }
        for input in &task.inputs {
            let ctx = Ctx { cfg: &stage.cfg, path: &input.path, label: &input.label, source: stage.source_for(&input.path) };
            match format {
                Format::Jsonl => jsonl::ingest(&ctx, out)?,
                Format::Text => text::ingest(&ctx, out)?,
                Format::Warc => warc::ingest(&ctx, out)?,
                Format::Images | Format::Image | Format::Auto => unreachable!("resolved in plan"),
            }
        }
        Ok(())
    }

    fn properties(&self) -> BTreeMap<String, serde_json::Value> {
        let mut p = BTreeMap::from([("ingest_format".to_string(), serde_json::json!(self.format))]);
        if let Some(sk) = &self.skipped {
            p.insert("ingest.skipped_files".to_string(), serde_json::json!(sk.count));
            p.insert("ingest.skipped_examples".to_string(), serde_json::json!(sk.examples));
            p.insert("ingest.skipped_extensions".to_string(), serde_json::json!(sk.by_extension));
        }
        p
    }
}

/// Input files an ingest run does not read.
struct Skipped {
    count: usize,
    /// The first [`SKIPPED_EXAMPLES`], by path.
    examples: Vec<String>,
    /// How many of each extension (lower-cased; `""` for none), so every kind skipped is
    /// named however many files there are: in a new user's mixed folder the TIFF, SGI
    /// and XBM files were past the ten examples, and nothing said they were there.
    /// At most [`SKIPPED_EXTENSIONS`] names; the rest are counted under `"..."`.
    by_extension: BTreeMap<String, usize>,
}

const SKIPPED_EXAMPLES: usize = 10;
const SKIPPED_EXTENSIONS: usize = 50;

/// Warns about (and counts, for the manifest) input files this ingest does not
/// read: unknown extensions, or files of another format than the one ingested.
/// Caption sidecars of an image folder are read, so they are not counted.
fn note_skipped(files: &[(PathBuf, PathBuf)], format: Format) -> Skipped {
    let skipped: Vec<&Path> = files
        .iter()
        .map(|(_, f)| f.as_path())
        .filter(|f| {
            let of = Format::of_file(f);
            // An uncaptioned folder (`image`) reads the same files as a captioned one
            // (`images`): compare with the files the format reads, not its own name.
            if of == Some(format.files_of()) {
                return false;
            }
            let name = f.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
            let sidecar = format == Format::Images && (of == Some(Format::Text) || name == images::CAPTIONS_JSONL || name == images::CAPTIONS_CSV);
            !sidecar
        })
        .collect();
    let mut by_extension: BTreeMap<String, usize> = BTreeMap::new();
    for f in &skipped {
        let ext = f.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
        let key = if by_extension.len() < SKIPPED_EXTENSIONS || by_extension.contains_key(&ext) { ext } else { "...".to_string() };
        *by_extension.entry(key).or_default() += 1;
    }
    let examples: Vec<String> = skipped.iter().take(SKIPPED_EXAMPLES).map(|p| p.display().to_string()).collect();
    if !skipped.is_empty() {
        let kinds: Vec<String> = by_extension.iter().map(|(e, n)| format!("{} {n}", if e.is_empty() { "(no extension)" } else { e })).collect();
        tracing::warn!(
            count = skipped.len(),
            format = ?format,
            files = %examples.join(", "),
            extensions = %kinds.join(", "),
            "input files skipped: unknown extension or not the format being ingested"
        );
    }
    Skipped { count: skipped.len(), examples, by_extension }
}

impl IngestStage {
    fn source_for(&self, path: &Path) -> String {
        if let Some(s) = &self.cfg.source {
            return s.clone();
        }
        // The file name without its extensions: "news.2024.jsonl.gz" -> "news.2024".
        let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let mut stem = name.as_str();
        for ext in [".gz", ".jsonl", ".ndjson", ".warc", ".txt"] {
            stem = stem.strip_suffix(ext).unwrap_or(stem);
        }
        if Format::of_file(path) == Some(Format::Images) || Format::of_file(path) == Some(Format::Text) {
            // Many files of one folder are one source: name it after the folder.
            return path.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| stem.to_string());
        }
        stem.to_string()
    }
}

fn stage_err(e: IngestError) -> m6_pipeline::Error {
    m6_pipeline::Error::Stage { stage: "ingest".into(), source: Box::new(e) }
}

/// Every file below `root`, sorted, skipping hidden files and folders. Links are
/// followed, as `os.walk` lists linked files and `find -L` descends: a collection put
/// together with `ln -s` was read as nothing, without a word. Each folder is read once
/// (by its canonical path), so a link back up the tree ends rather than loops. A link
/// to nothing is an error naming it and its target, before anything is written.
fn list_files(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = vec![];
    let mut seen = std::collections::HashSet::new();
    seen.insert(std::fs::canonicalize(root)?);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let mut t = e.file_type()?;
            if t.is_symlink() {
                match std::fs::metadata(e.path()) {
                    Ok(m) => t = m.file_type(),
                    Err(err) => {
                        let to = std::fs::read_link(e.path()).map(|t| t.display().to_string()).unwrap_or_default();
                        return Err(std::io::Error::new(err.kind(), format!("{} is a link to {to}, which cannot be read: {err}", e.path().display())));
                    }
                }
            }
            if t.is_dir() {
                if seen.insert(std::fs::canonicalize(e.path())?) {
                    stack.push(e.path());
                }
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn detect(inputs: &[PathBuf], files: &[(PathBuf, PathBuf)]) -> Result<Format, IngestError> {
    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    let has = |f: Format| files.iter().any(|(_, p)| Format::of_file(p) == Some(f));
    let (images, warc, jsonl, text) = (has(Format::Images), has(Format::Warc), has(Format::Jsonl), has(Format::Text));
    for (name, present) in [("image", images), ("WARC", warc), ("JSONL", jsonl)] {
        if present {
            seen.insert(name, 1);
        }
    }
    let path = inputs.first().cloned().unwrap_or_default();
    if seen.len() > 1 {
        return Err(IngestError::MixedFormats { path, found: seen.keys().copied().collect::<Vec<_>>().join(" and ") });
    }
    // Text files beside images are caption sidecars, so images win; images with no
    // caption source at all are an image collection. Only a `.txt` named like an image
    // (`a.txt` beside `a.jpg`) is a sidecar: a README.txt in a photo folder made every
    // photo a `no_caption` error.
    let image_stems: std::collections::HashSet<PathBuf> = files.iter().filter(|(_, p)| Format::of_file(p) == Some(Format::Images)).map(|(_, p)| p.with_extension("")).collect();
    let captions = files.iter().any(|(_, p)| {
        let name = p.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        name == images::CAPTIONS_JSONL || name == images::CAPTIONS_CSV || (Format::of_file(p) == Some(Format::Text) && image_stems.contains(&p.with_extension("")))
    });
    Ok(if images && !captions {
        Format::Image
    } else if images {
        Format::Images
    } else if warc {
        Format::Warc
    } else if jsonl {
        Format::Jsonl
    } else if text {
        Format::Text
    } else {
        return Err(IngestError::NoInput { path, exts: ".jsonl, .txt, .warc(.gz) or image files".into() });
    })
}

/// Buffers rows and writes them in batches.
pub(crate) struct Batcher<R: m6_schemas::Record> {
    rows: Vec<R>,
    limit: usize,
    bytes: usize,
}

impl<R: m6_schemas::Record> Batcher<R> {
    pub fn new(limit: usize) -> Self {
        Batcher { rows: Vec::with_capacity(limit.min(4096)), limit, bytes: 0 }
    }

    /// Adds a row; `bytes` is its rough size so that huge rows flush early.
    pub fn push(&mut self, row: R, bytes: usize, out: &mut TaskOutput) -> Result<(), BoxError> {
        self.rows.push(row);
        self.bytes += bytes;
        if self.rows.len() >= self.limit || self.bytes >= 32 << 20 {
            self.flush(out)?;
        }
        Ok(())
    }

    pub fn flush(&mut self, out: &mut TaskOutput) -> Result<(), BoxError> {
        out.write_rows(&self.rows)?;
        self.rows.clear();
        self.bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats_and_refuses_mixtures() {
        let f = |names: &[&str]| -> Vec<(PathBuf, PathBuf)> { names.iter().map(|n| (PathBuf::from("r"), PathBuf::from(format!("r/{n}")))).collect() };
        let inputs = [PathBuf::from("r")];
        assert_eq!(detect(&inputs, &f(&["a.jsonl", "b.jsonl.gz"])).unwrap(), Format::Jsonl);
        assert_eq!(detect(&inputs, &f(&["a.png", "a.txt"])).unwrap(), Format::Images);
        assert_eq!(detect(&inputs, &f(&["a.png", "b.jpg"])).unwrap(), Format::Image);
        // A text file that is no image's sidecar does not make a photo folder captioned.
        assert_eq!(detect(&inputs, &f(&["a.png", "b.jpg", "README.txt", "notes/说明.txt"])).unwrap(), Format::Image);
        assert_eq!(detect(&inputs, &f(&["a.png", "b.jpg", "README.txt", "b.txt"])).unwrap(), Format::Images);
        // JPEGs saved from a browser as .jfif, or named .jpe: image files, not skipped.
        assert_eq!(detect(&inputs, &f(&["下载.JFIF", "b.jpe"])).unwrap(), Format::Image);
        assert_eq!(detect(&inputs, &f(&["a.png", "captions.csv"])).unwrap(), Format::Images);
        assert_eq!(detect(&inputs, &f(&["a.warc.gz"])).unwrap(), Format::Warc);
        assert_eq!(detect(&inputs, &f(&["a.txt"])).unwrap(), Format::Text);
        assert!(matches!(detect(&inputs, &f(&["a.jsonl", "b.warc"])), Err(IngestError::MixedFormats { .. })));
        assert!(matches!(detect(&inputs, &f(&["a.csv"])), Err(IngestError::NoInput { .. })));
    }
}
