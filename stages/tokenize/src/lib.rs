//! The `tokenize` stage: `document` and `pair` datasets into a `sample` dataset the
//! trainer reads directly. Documents are encoded in parallel and packed (in input
//! order) into samples of at most `max_len` ids; pairs become one image–text sample
//! each. The tokenizer is copied into the output as `tokenizer.json` and named, with
//! every id and layout fact, in the manifest's properties.
//!
//! Sample layouts (`input_ids`):
//! * `text`: `[CLS] doc_a... [SEP] doc_b... [SEP] ...` (≤ max_len; a document longer than
//!   a sample continues in the next sample, its `[SEP]` after its last piece).
//! * `image_text`: `[CLS] [IMG] [/IMG] caption... [SEP]`; the `grid×grid` patches in
//!   `image_patches` belong between `[IMG]` and `[/IMG]`; the caption is cut at a token
//!   boundary to fit max_len (patches are not counted in max_len).

pub mod pack;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, BinaryArray, StringArray};
use m6_pipeline::{BoxError, Flag, OutputSpec, RunContext, Stage, StageFactory, StageRun, Task};
use m6_pipeline::TaskOutput;
use m6_schemas::{column, content_id, document, pair, sample, InputError, Kind, Sample, SampleProperties};
use m6_tokenizer::{ImageConfig, ImageEncoding, Tokenizer};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Most pair rows read (and samples built) at once; see the pair path.
const IMAGE_BATCH_ROWS: usize = 256;

use crate::pack::{Packed, Packer};

/// The tokenizer's file name inside the output dataset folder.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Side dataset of rows that could not be turned into samples (undecodable images).
pub const ERRORS: &str = "errors";
/// Samples are written in groups of this many rows.
const WRITE_ROWS: usize = 1024;

/// `[tokenize]` in pipeline.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenizeConfig {
    /// Tokenizer file: a `tokenizer.json` or BERT-style `vocab.txt` (from `m6corpus tokenizer train`). Required; relative paths are taken from the working directory.
    pub tokenizer: Option<PathBuf>,
    /// Most ids in one sample, special tokens included (image patches not counted). Default 512.
    pub max_len: usize,
    /// Start every sample with [CLS]. Default true.
    pub add_cls: bool,
    /// Pack several documents into one text sample, separated by [SEP]; false gives each document its own sample(s). Default true.
    pub pack: bool,
    /// Side of the square images are resized and centre-cropped to, in pixels. Default 224.
    pub image_size: u32,
    /// Side of a square image patch in pixels; must divide image_size. Default 16 (a 14×14 grid).
    pub patch_size: u32,
    /// How `image_patches` stores each image: `jpeg` (the resized, centre-cropped square
    /// as JPEG, about 10–30 KB at 224 px, decoded back to patches by the trainer's
    /// reader threads through `m6_tokenizer::ImageConfig::patches_from_encoded`) or
    /// `raw` (uint8 patches, 150 KB at 224 px: for readers that cannot decode JPEG).
    /// Default `jpeg`: raw patches would make 60 M images about 9 TB of samples.
    pub image_encoding: ImageEncoding,
    /// JPEG quality (1–100) for `image_encoding = "jpeg"`. Default 90.
    pub image_quality: u8,
    /// Refuse JPEGs whose entropy-coded data is damaged (an `errors` row saying where),
    /// which the decoders would otherwise read through into a sample with garbage from
    /// the damage on. Default true. The check is a second read of each JPEG at 1/8
    /// scale (of a progressive JPEG, its DC scans only); `filter`'s `image.damaged`
    /// rule (on by default) makes the same check, so a pipeline that ran it may set
    /// false here. Off, a JPEG is still refused when the sample's decoder fails on it
    /// and the check confirms damage. A JPEG whose shorter side is 4× `image_size` or
    /// more is sampled from its 1/8 or 1/4 colour picture, whose read is the check of
    /// all the sample is made from (at 1/4 every scan of a progressive file): it is
    /// refused when damaged there, on or off, and not read a second time.
    pub check_damage: bool,
}

impl Default for TokenizeConfig {
    fn default() -> Self {
        TokenizeConfig { tokenizer: None, max_len: 512, add_cls: true, pack: true, image_size: 224, patch_size: 16, image_encoding: ImageEncoding::Jpeg, image_quality: 90, check_damage: true }
    }
}

pub struct TokenizeFactory;

impl StageFactory for TokenizeFactory {
    const NAME: &'static str = "tokenize";
    type Config = TokenizeConfig;
    const FLAGS: &'static [Flag] = &[
        Flag::text("tokenizer", "tokenizer", "FILE", "Tokenizer file (tokenizer.json or vocab.txt)."),
        Flag::int("max-len", "max_len", "Most ids per sample (default 512)."),
    ];
    fn build(cfg: Self::Config) -> Result<Box<dyn Stage>, BoxError> {
        Ok(Box::new(TokenizeStage::new(cfg)?))
    }
}

pub struct TokenizeStage {
    cfg: TokenizeConfig,
    tok: Arc<Tokenizer>,
    image: ImageConfig,
    /// The tokenizer.json text copied into the output.
    file_text: String,
}

impl TokenizeStage {
    pub fn new(cfg: TokenizeConfig) -> Result<Self, BoxError> {
        let path = cfg.tokenizer.clone().ok_or("`tokenizer` is required (--tokenizer FILE, or `tokenizer = ...` in [tokenize])")?;
        let min = 3 + usize::from(cfg.add_cls);
        if cfg.max_len < min {
            return Err(format!("max_len {} is too small (at least {min})", cfg.max_len).into());
        }
        if cfg.max_len > i32::MAX as usize {
            return Err(format!("max_len {} is too large", cfg.max_len).into());
        }
        let image = ImageConfig { image_size: cfg.image_size, patch_size: cfg.patch_size };
        image.check().map_err(|e| format!("image_size/patch_size: {e}"))?;
        if !(1..=100).contains(&cfg.image_quality) {
            return Err(format!("image_quality {} must be between 1 and 100", cfg.image_quality).into());
        }
        let tok = Tokenizer::load(&path)?;
        if tok.vocab_size() > i32::MAX as usize {
            return Err(format!("{}: vocabulary too large for int32 ids", path.display()).into());
        }
        let file_text = tok.to_json(Some(&image));
        Ok(TokenizeStage { cfg, tok: Arc::new(tok), image, file_text })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tok
    }

    fn sample_id(task: &Task, seq: u64) -> String {
        content_id(&[b"sample", task.id.as_bytes(), &seq.to_le_bytes()])
    }

    fn process_documents(&self, batch_rows: usize, task: &Task, out: &mut TaskOutput) -> Result<(), BoxError> {
        let sp = self.tok.specials();
        let mut packer = Packer::new(self.cfg.max_len, self.cfg.add_cls.then_some(sp.cls), sp.sep, self.cfg.pack);
        // Source ids of documents not yet fully emitted, by push index.
        let mut pending: std::collections::VecDeque<(usize, String)> = Default::default();
        let mut packed: Vec<Packed> = vec![];
        let mut rows: Vec<Sample> = vec![];
        let mut seq = 0u64;
        let (mut tokens, mut unk, mut docs, mut empty) = (0u64, 0u64, 0u64, 0u64);
        let emit = |packed: &mut Vec<Packed>, pending: &mut std::collections::VecDeque<(usize, String)>, rows: &mut Vec<Sample>, seq: &mut u64| {
            for p in packed.drain(..) {
                let last = *p.docs.last().expect("a packed sample has a document");
                let source_ids = p.docs.iter().map(|d| pending.iter().find(|(i, _)| i == d).map(|(_, s)| s.clone()).unwrap_or_default()).collect();
                // Documents before the last one of this sample are complete.
                while pending.front().is_some_and(|(i, _)| *i < last) {
                    pending.pop_front();
                }
                rows.push(Sample {
                    id: Self::sample_id(task, *seq),
                    task: sample::TASK_TEXT.to_string(),
                    length: p.ids.len() as u32,
                    input_ids: p.ids.into_iter().map(|i| i as i32).collect(),
                    image_patches: None,
                    source_ids,
                });
                *seq += 1;
            }
        };
        let mut pushed = 0usize;
        for batch in task.batches(batch_rows) {
            let b = batch?;
            let ids: &StringArray = column(&b, document::ID)?;
            let text: &StringArray = column(&b, document::TEXT)?;
            let texts: Vec<&str> = (0..b.num_rows()).map(|i| text.value(i)).collect();
            out.count_in(b.num_rows() as u64, texts.iter().map(|t| t.len() as u64).sum());
            let enc = self.tok.encode_batch(&texts, false);
            for (i, e) in enc.iter().enumerate() {
                docs += 1;
                tokens += e.ids.len() as u64;
                unk += e.unk as u64;
                if e.ids.is_empty() {
                    empty += 1;
                } else {
                    pending.push_back((pushed, ids.value(i).to_string()));
                }
                packer.push(&e.ids, &mut packed);
                pushed += 1;
                emit(&mut packed, &mut pending, &mut rows, &mut seq);
                if rows.len() >= WRITE_ROWS {
                    out.write_rows(&rows)?;
                    rows.clear();
                }
            }
        }
        packer.finish(&mut packed);
        emit(&mut packed, &mut pending, &mut rows, &mut seq);
        out.write_rows(&rows)?;
        let c = &mut out.counters;
        c.bump("documents", docs);
        c.bump("documents.empty", empty);
        c.bump("documents.split", packer.split_docs);
        c.bump("samples.text", seq);
        c.bump("tokens.text", tokens);
        c.bump("tokens.unk", unk);
        Ok(())
    }

    fn process_pairs(&self, batch_rows: usize, task: &Task, out: &mut TaskOutput) -> Result<(), BoxError> {
        let sp = self.tok.specials();
        let (img, img_end) = match (sp.img, sp.img_end) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err("the tokenizer has no [IMG]/[/IMG] tokens, so it cannot make image–text samples".into()),
        };
        let mut prefix: Vec<u32> = vec![];
        if self.cfg.add_cls {
            prefix.push(sp.cls);
        }
        prefix.extend([img, img_end]);
        let room = self.cfg.max_len - prefix.len() - 1;
        let mut seq = 0u64;
        let mut row0 = 0usize;
        let (mut tokens, mut unk, mut truncated, mut bad) = (0u64, 0u64, 0u64, 0u64);
        let mut image_bytes = 0u64;
        let file = task.inputs.first().map(|i| i.label.clone()).unwrap_or_default();
        // Pair rows carry whole images (tens of KB, up to megabytes) and a raw sample is
        // 150 KB at 224 px, so a 4096-row batch held about a gigabyte in and out; a few
        // hundred rows still keep every thread busy and bound the batch by memory.
        for batch in task.batches(batch_rows.min(IMAGE_BATCH_ROWS)) {
            let b = batch?;
            let ids: &StringArray = column(&b, pair::ID)?;
            let caption: &StringArray = column(&b, pair::CAPTION)?;
            let bytes: &BinaryArray = column(&b, pair::IMAGE_BYTES)?;
            let url: &StringArray = column(&b, pair::IMAGE_URL)?;
            // An ingested pair has no URL; its source_id is the image file's path.
            let source_id = b.column_by_name(pair::SOURCE_ID).and_then(|c| c.as_any().downcast_ref::<StringArray>());
            out.count_in(b.num_rows() as u64, (0..b.num_rows()).map(|i| (bytes.value(i).len() + caption.value(i).len()) as u64).sum());
            let done: Vec<_> = (0..b.num_rows())
                .into_par_iter()
                .map(|i| {
                    let b = bytes.value(i);
                    (self.image.encode_sample(b, self.cfg.image_encoding, self.cfg.image_quality, self.cfg.check_damage), self.tok.encode(caption.value(i), false))
                })
                .collect();
            let mut rows = vec![];
            let mut errors = vec![];
            for (i, (patches, enc)) in done.into_iter().enumerate() {
                let patches = match patches {
                    Ok(p) => p,
                    Err(e) => {
                        bad += 1;
                        let at = match source_id.filter(|s| s.is_valid(i)) {
                            _ if url.is_valid(i) => format!(" ({})", url.value(i)),
                            Some(s) => format!(" ({})", s.value(i)),
                            None => String::new(),
                        };
                        tracing::warn!(file = %file, row = row0 + i, pair = ids.value(i), "image skipped: {e}");
                        errors.push(InputError {
                            file: file.clone(),
                            location: format!("row {} (pair {}){at}", row0 + i, ids.value(i)),
                            kind: "image".into(),
                            message: e.to_string(),
                        });
                        continue;
                    }
                };
                tokens += enc.ids.len() as u64;
                unk += enc.unk as u64;
                image_bytes += patches.len() as u64;
                let mut ids_out = prefix.clone();
                if enc.ids.len() > room {
                    truncated += 1;
                }
                ids_out.extend_from_slice(&enc.ids[..enc.ids.len().min(room)]);
                ids_out.push(sp.sep);
                rows.push(Sample {
                    id: Self::sample_id(task, seq),
                    task: sample::TASK_IMAGE_TEXT.to_string(),
                    length: ids_out.len() as u32,
                    input_ids: ids_out.into_iter().map(|i| i as i32).collect(),
                    image_patches: Some(patches),
                    source_ids: vec![ids.value(i).to_string()],
                });
                seq += 1;
            }
            row0 += b.num_rows();
            out.write_rows(&rows)?;
            out.write_side_rows(ERRORS, &errors)?;
        }
        let c = &mut out.counters;
        c.bump("pairs", row0 as u64);
        // Bytes of stored images (encoded or raw): per-sample size = this / samples.image_text.
        c.bump("image_bytes", image_bytes);
        c.bump("pairs.bad_image", bad);
        c.bump("captions.truncated", truncated);
        c.bump("samples.image_text", seq);
        c.bump("tokens.caption", tokens);
        c.bump("tokens.unk", unk);
        Ok(())
    }
}

/// Bumped when the picture an image sample is made from changes for the same file and
/// settings: part of the settings, so a run resumed by a newer binary redoes its tasks
/// rather than mixing samples of two decoders. v2: JPEGs 2×-4× the sample size are read
/// at 1/2 by `jpeg_dc` (jpeg-decoder's scaled decode before), and subsampled chroma is
/// interpolated onto the luma cells at 1/8, 1/4 and 1/2 (repeated before).
const SAMPLE_PICTURE: &str = "m6-sample-picture-v2";

impl Stage for TokenizeStage {
    fn name(&self) -> &'static str {
        TokenizeFactory::NAME
    }

    /// The config, the tokenizer file's content (the vocabulary is not in the config)
    /// and [`SAMPLE_PICTURE`].
    fn settings(&self) -> String {
        m6_pipeline::settings_of(&self.cfg, &[&self.file_text, SAMPLE_PICTURE])
    }

    /// Nothing of a run is kept: the run is the stage itself, reading its settings
    /// from the context it is handed.
    fn start<'a>(&'a self, _ctx: &RunContext<'a>) -> Result<Box<dyn StageRun + 'a>, BoxError> {
        Ok(Box::new(self))
    }
}

impl StageRun for &TokenizeStage {
    fn outputs(&self, input_kinds: &[Kind]) -> Result<OutputSpec, BoxError> {
        if input_kinds.is_empty() {
            return Err("tokenize reads document or pair datasets (folders with a manifest.json)".into());
        }
        if let Some(k) = input_kinds.iter().find(|k| !matches!(k, Kind::Document | Kind::Pair)) {
            return Err(format!("tokenize reads document or pair datasets, not {k}").into());
        }
        if input_kinds.contains(&Kind::Pair) && self.tok.specials().img.is_none() {
            return Err("a pair input needs a tokenizer with [IMG] and [/IMG] tokens".into());
        }
        Ok(OutputSpec::new(Kind::Sample).with_side(ERRORS, Kind::Error))
    }

    fn plan(&mut self, inputs: &[PathBuf]) -> m6_pipeline::Result<Vec<Task>> {
        m6_pipeline::plan_shards(inputs, &[Kind::Document, Kind::Pair])
    }

    fn prepare(&mut self, ctx: &RunContext) -> Result<(), BoxError> {
        write_tokenizer(ctx.output, &self.file_text)
    }

    fn process(&self, ctx: &RunContext, task: &Task, out: &mut TaskOutput) -> Result<(), BoxError> {
        match task.inputs.first().and_then(|i| i.kind) {
            Some(Kind::Document) => self.process_documents(ctx.batch_rows, task, out),
            Some(Kind::Pair) => self.process_pairs(ctx.batch_rows, task, out),
            other => Err(format!("tokenize cannot read {other:?} input").into()),
        }
    }

    fn properties(&self) -> BTreeMap<String, serde_json::Value> {
        let sp = self.tok.specials();
        SampleProperties {
            tokenizer: TOKENIZER_FILE.into(),
            tokenizer_blake3: blake3::hash(self.file_text.as_bytes()).to_hex().to_string(),
            vocab_size: self.tok.vocab_size() as u64,
            pad_id: sp.pad,
            unk_id: sp.unk,
            cls_id: sp.cls,
            sep_id: sp.sep,
            mask_id: sp.mask,
            img_id: sp.img,
            img_end_id: sp.img_end,
            max_len: self.cfg.max_len as u64,
            add_cls: self.cfg.add_cls,
            pack: self.cfg.pack,
            image_size: self.image.image_size,
            patch_size: self.image.patch_size,
            grid: self.image.grid(),
            patch_bytes: self.image.total_bytes() as u64,
            patch_layout: m6_tokenizer::PATCH_LAYOUT.into(),
            image_encoding: self.cfg.image_encoding.name().into(),
            image_quality: (self.cfg.image_encoding == ImageEncoding::Jpeg).then_some(self.cfg.image_quality),
            text_layout: "[CLS] doc... [SEP] doc... [SEP]; a document longer than a sample continues in the next one, its [SEP] after its last piece".into(),
            image_text_layout: "[CLS] [IMG] [/IMG] caption... [SEP]; the grid*grid patches go between [IMG] and [/IMG] and are not counted in length/max_len".into(),
        }
        .to_map()
    }
}

/// Writes tokenizer.json into the output; a different one already there means the
/// output holds samples made with other ids, which must not be mixed.
fn write_tokenizer(output: &Path, text: &str) -> Result<(), BoxError> {
    match m6_pipeline::dataset::read_extra_file(output, TOKENIZER_FILE)? {
        Some(old) if old == text.as_bytes() => return Ok(()),
        Some(_) if m6_pipeline::Dataset::open(output).map(|d| d.rows() > 0).unwrap_or(false) => {
            return Err(format!("{}: the output already holds samples made with a different tokenizer or image settings; use a new output folder", output.join(TOKENIZER_FILE).display()).into())
        }
        _ => {}
    }
    Ok(m6_pipeline::dataset::write_extra_file(output, TOKENIZER_FILE, text.as_bytes())?)
}
