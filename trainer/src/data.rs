//! The streaming loader: `sample` shards are read straight from Parquet by background
//! threads, mixed through a bounded shuffle buffer and turned into padded prefix-LM
//! batches. Order depends only on the seed, so a saved [`Position`] replays to exactly
//! the next batch.
//!
//! Data parallelism: each epoch's rows (shards in a seeded order) are cut into `lanes`
//! contiguous runs of equal row count, a number fixed for the whole run and
//! independent of the world size. Rank r of W owns lanes r·L/W .. (r+1)·L/W, so it
//! reads only its own shards (and at most part of the shards at its two ends), and
//! every row is read by exactly one rank per epoch. A global micro-batch takes the
//! same number of examples from every lane, in lane order: it is the same set of
//! examples whatever the world size, and the checkpoint's position (each lane's
//! epoch and samples taken) resumes at another world size that divides `lanes`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use arrow::array::{Array, Int32Array, RecordBatch};
use m6_pipeline::{read_parquet, read_parquet_rows, Dataset};
use m6_schemas::{column, sample, Bin, Kind, List, SampleProperties, Str};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::config::{TaskConfig, TrainConfig};
use crate::rng::Rng;

/// Label value the loss ignores (padding, prefix positions).
pub const IGNORE: i64 = -100;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Pipeline(#[from] m6_pipeline::Error),
    #[error("{}: row {row}: {msg}", path.display())]
    Row { path: PathBuf, row: u64, msg: String },
    #[error("{}: {msg}", path.display())]
    Dataset { path: PathBuf, msg: String },
    #[error("{0}")]
    Config(String),
}

/// What the tokenize stage recorded about ids and image geometry (manifest `properties`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataMeta {
    pub vocab_size: i64,
    pub pad_id: i64,
    pub cls_id: i64,
    pub sep_id: i64,
    pub mask_id: i64,
    /// [`NO_ID`] when the vocabulary has no image markers (a text-only dataset).
    pub img_id: i64,
    pub img_end_id: i64,
    /// Image geometry; `None` when the dataset has no image properties (text only).
    pub image: Option<ImageGeom>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageGeom {
    pub image_size: i64,
    pub patch_size: i64,
    pub grid: i64,
}

impl ImageGeom {
    pub fn n_patches(&self) -> i64 {
        self.grid * self.grid
    }
    /// Bytes per patch: patch_size² RGB pixels.
    pub fn patch_dim(&self) -> i64 {
        self.patch_size * self.patch_size * 3
    }
}

/// A sample dataset's typed properties (schemas' `SampleProperties`): a missing or
/// wrongly typed key is an error naming the dataset, never a default id.
pub fn sample_properties(ds: &Dataset) -> Result<SampleProperties, DataError> {
    let path = ds.dir().join("manifest.json");
    if ds.kind() != Kind::Sample {
        return Err(DataError::Dataset { path, msg: format!("dataset is `{}`, the trainer reads `sample` datasets (made by `m6corpus tokenize`)", ds.kind()) });
    }
    SampleProperties::from_map(ds.dir(), &ds.manifest().properties).map_err(|e| DataError::Dataset { path, msg: format!("manifest property `{}` {}", e.key, e.problem) })
}

impl DataMeta {
    /// Reads ids and geometry from a sample dataset's manifest properties.
    pub fn from_dataset(ds: &Dataset) -> Result<Self, DataError> {
        Ok(Self::from_properties(ds, &sample_properties(ds)?)?.0)
    }

    /// The dataset's meta, and whether its `image_patches` hold JPEGs. The encoding is
    /// per dataset, not part of the meta: the reader threads decode each shard as its
    /// own manifest says, so raw and JPEG sample datasets train together.
    fn from_properties(ds: &Dataset, p: &SampleProperties) -> Result<(Self, bool), DataError> {
        let path = ds.dir().join("manifest.json");
        let err = |msg: String| DataError::Dataset { path: path.clone(), msg };
        let vocab_size = i64::try_from(p.vocab_size).map_err(|_| err(format!("vocab_size {} is too large", p.vocab_size)))?;
        let (image_size, patch_size, grid) = (p.image_size as i64, p.patch_size as i64, p.grid as i64);
        if patch_size <= 0 || grid <= 0 || grid * patch_size != image_size {
            return Err(err(format!("image_size {image_size} is not grid {grid} × patch_size {patch_size}")));
        }
        // The model embeds each patch as one contiguous run of bytes; a layout that
        // interleaves patches would silently scramble images.
        let l = p.patch_layout.to_lowercase();
        if !l.contains("patch") || l.contains("planar") || l.contains("channel-first") || l.contains("chw") {
            return Err(err(format!("patch_layout `{}` is not the contiguous-patch RGB layout this trainer reads", p.patch_layout)));
        }
        let jpeg = match p.image_encoding.as_str() {
            "raw" => false,
            "jpeg" => true,
            other => return Err(err(format!("properties.image_encoding is \"{other}\"; this trainer reads \"raw\" or \"jpeg\""))),
        };
        // A vocabulary without image markers (JSON null) makes a text-only dataset:
        // NO_ID stands for the absent marker, and an image sample is refused on reading.
        let marker = |id: Option<u32>| id.map_or(NO_ID, i64::from);
        let meta = DataMeta {
            vocab_size,
            pad_id: p.pad_id.into(),
            cls_id: p.cls_id.into(),
            sep_id: p.sep_id.into(),
            mask_id: p.mask_id.into(),
            img_id: marker(p.img_id),
            img_end_id: marker(p.img_end_id),
            image: Some(ImageGeom { image_size, patch_size, grid }),
        };
        for (name, id) in [("pad_id", meta.pad_id), ("sep_id", meta.sep_id), ("mask_id", meta.mask_id), ("img_id", meta.img_id), ("img_end_id", meta.img_end_id)] {
            if id != NO_ID && (id < 0 || id >= vocab_size) {
                return Err(err(format!("{name} {id} is outside the vocabulary (vocab_size {vocab_size})")));
            }
        }
        Ok((meta, jpeg))
    }
}

/// [`DataMeta::img_id`] / [`DataMeta::img_end_id`] of a vocabulary without image markers.
pub const NO_ID: i64 = -1;

/// One shard to read, with its row count from the manifest (used for rank slicing).
#[derive(Debug, Clone, PartialEq)]
pub struct ShardRef {
    pub path: PathBuf,
    pub rows: u64,
    /// `image_patches` holds each square as a JPEG (its dataset's `image_encoding =
    /// "jpeg"`): the reader threads decode and patch it, so samples stay ~10× smaller
    /// on disk. False: raw contiguous patches.
    pub jpeg: bool,
}

/// The sample datasets to train on (and the held-out shards), all with the same meta.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub meta: DataMeta,
    pub train: Vec<ShardRef>,
    pub eval: Vec<ShardRef>,
    /// The longest sample (in ids, image patches not counted) any input was tokenized
    /// to: manifest property `max_len`, when recorded.
    pub sample_max_len: Option<i64>,
}

impl Corpus {
    pub fn open(inputs: &[PathBuf], eval_input: Option<&Path>, holdout_last_shard: bool) -> Result<Self, DataError> {
        if inputs.is_empty() {
            return Err(DataError::Config("no --input sample dataset given".into()));
        }
        let mut meta: Option<DataMeta> = None;
        let mut train = vec![];
        let mut sample_max_len: Option<i64> = None;
        let mut check_meta = |ds: &Dataset| -> Result<bool, DataError> {
            let p = sample_properties(ds)?;
            let (m, jpeg) = DataMeta::from_properties(ds, &p)?;
            let n = p.max_len as i64;
            sample_max_len = Some(sample_max_len.map_or(n, |o| o.max(n)));
            match &meta {
                None => meta = Some(m),
                Some(prev) if *prev != m => {
                    return Err(DataError::Dataset {
                        path: ds.dir().to_path_buf(),
                        msg: format!("tokenizer properties differ from the first input's: {m:?} vs {prev:?}"),
                    })
                }
                Some(_) => {}
            }
            Ok(jpeg)
        };
        for dir in inputs {
            // A sample dataset still being written (some tokenize tasks uncommitted)
            // would train on part of the corpus without a word: refuse it by name.
            m6_pipeline::status::require_complete(dir, false)?;
            let ds = Dataset::open(dir)?;
            let jpeg = check_meta(&ds)?;
            train.extend(ds.shards().iter().map(|s| ShardRef { path: ds.shard_path(s), rows: s.rows, jpeg }));
        }
        let mut eval = vec![];
        if let Some(dir) = eval_input {
            m6_pipeline::status::require_complete(dir, false)?;
            let ds = Dataset::open(dir)?;
            let jpeg = check_meta(&ds)?;
            eval.extend(ds.shards().iter().map(|s| ShardRef { path: ds.shard_path(s), rows: s.rows, jpeg }));
        } else if holdout_last_shard && train.len() >= 2 {
            eval.push(train.pop().unwrap());
        }
        // Fail fast on a bad footer, a foreign schema or a row count that disagrees
        // with the manifest, rather than hours into training when the reader gets there.
        for s in train.iter().chain(&eval) {
            let r = read_parquet(&s.path, Some(Kind::Sample), 1)?;
            if r.rows() != s.rows {
                return Err(DataError::Dataset { path: s.path.clone(), msg: format!("shard has {} rows but the manifest says {}", r.rows(), s.rows) });
            }
        }
        if train.iter().all(|s| s.rows == 0) {
            return Err(DataError::Dataset { path: inputs[0].clone(), msg: "no training samples (every shard is empty)".into() });
        }
        Ok(Corpus { meta: meta.unwrap(), train, eval, sample_max_len })
    }

    /// Whether any training or held-out shard holds an image–text sample. Reads only
    /// the `task` column (dictionary-encoded: a few bytes per row group).
    pub fn holds_images(&self) -> Result<bool, DataError> {
        let scan = |path: &Path| -> Result<bool, DataError> {
            for b in m6_pipeline::read_parquet_columns(path, Some(Kind::Sample), 64 * 1024, Some(&[sample::TASK]))? {
                let b = b?;
                let task: &Str = column(&b, sample::TASK).map_err(|e| DataError::from(m6_pipeline::Error::schema(path, e)))?;
                if (0..b.num_rows()).any(|i| task.value(i) == sample::TASK_IMAGE_TEXT) {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        for s in self.train.iter().chain(&self.eval) {
            // As in the reader threads: a corrupt page can make the decoder panic.
            let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scan(&s.path)))
                .unwrap_or_else(|_| Err(DataError::Dataset { path: s.path.clone(), msg: "corrupt shard: decoder failed on the task column".into() }))?;
            if found {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// `task` of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskKind {
    Text,
    ImageText,
}

/// One sample row as the loader needs it.
#[derive(Debug, Clone)]
pub struct RawSample {
    pub id: String,
    pub task: TaskKind,
    pub input_ids: Vec<i32>,
    pub patches: Option<Arc<[u8]>>,
}

/// Where one lane is: its epoch and how many samples it took from it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderState {
    pub epoch: u64,
    pub consumed: u64,
}

/// The global data position: every lane's state, whatever rank reads it. A run
/// resumes from it at any world size that divides the number of lanes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Position {
    pub lanes: Vec<LoaderState>,
}

impl Position {
    /// The start of training with `lanes` lanes.
    pub fn start(lanes: u64) -> Self {
        Position { lanes: vec![LoaderState::default(); lanes.max(1) as usize] }
    }
}

// Checkpoints from before lanes existed hold one `{epoch, consumed}`: a single-process
// run, whose stream is exactly that of one lane.
impl<'de> Deserialize<'de> for Position {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Saved {
            Lanes { lanes: Vec<LoaderState> },
            Single(LoaderState),
        }
        Ok(match Saved::deserialize(d)? {
            Saved::Lanes { lanes } => Position { lanes },
            Saved::Single(s) => Position { lanes: vec![s] },
        })
    }
}

/// Rows `start..end` of one shard: the part of it one lane reads in one epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub shard: ShardRef,
    pub start: u64,
    pub end: u64,
}

/// Loader settings (a subset of [`TrainConfig`]).
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    pub seed: u64,
    pub rank: u64,
    pub world_size: u64,
    /// Lanes of the whole job (a multiple of `world_size`; see the module comment).
    pub lanes: u64,
    pub shuffle: bool,
    pub shuffle_buffer: usize,
    pub reader_threads: usize,
    pub read_batch_rows: usize,
    pub denoise_weight: f64,
    pub caption_weight: f64,
}

impl LoaderConfig {
    pub fn from_train(c: &TrainConfig, rank: u64, world_size: u64) -> Self {
        LoaderConfig {
            seed: c.seed,
            rank,
            world_size,
            lanes: if c.lanes == 0 { world_size } else { c.lanes },
            shuffle: true,
            shuffle_buffer: c.shuffle_buffer,
            reader_threads: c.reader_threads.max(1),
            read_batch_rows: c.read_batch_rows,
            denoise_weight: c.tasks.denoise_weight,
            caption_weight: c.tasks.caption_weight,
        }
    }
}

enum Msg {
    Rows(Vec<RawSample>, u64),
    EndShard,
    Err(DataError),
}

/// One lane's samples of one epoch in reading order (before the shuffle buffer).
/// Segment `j` is read by thread `j % n`; consuming the threads' channels in segment
/// order keeps the stream deterministic however the threads are scheduled.
struct EpochReader {
    rxs: Vec<Receiver<Msg>>,
    n_shards: usize,
    shard: usize,
    pending: std::vec::IntoIter<RawSample>,
    bytes_read: u64,
}

impl EpochReader {
    fn start(segments: Vec<Segment>, meta: &DataMeta, cfg: &LoaderConfig) -> Self {
        let n = cfg.reader_threads.min(segments.len()).max(1);
        let mut rxs = vec![];
        for t in 0..n {
            let (tx, rx) = sync_channel::<Msg>(4);
            let mine: Vec<Segment> = segments.iter().enumerate().filter(|(j, _)| j % n == t).map(|(_, x)| x.clone()).collect();
            let (meta, cfg) = (meta.clone(), cfg.clone());
            std::thread::Builder::new()
                .name(format!("m6-reader-{t}"))
                .spawn(move || {
                    for seg in mine {
                        // A corrupt file can make the Parquet decoder panic rather than
                        // return an error; either way the error must name the file.
                        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            read_shard(&seg, &meta, &cfg, |rows, bytes| tx.send(Msg::Rows(rows, bytes)).is_ok())
                        }))
                        .unwrap_or_else(|p| {
                            let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                            Err(DataError::Dataset { path: seg.shard.path.clone(), msg: format!("corrupt shard: decoder failed: {msg}") })
                        });
                        if let Err(e) = res {
                            let _ = tx.send(Msg::Err(e));
                            return;
                        }
                        if tx.send(Msg::EndShard).is_err() {
                            return; // the consumer is gone (epoch abandoned)
                        }
                    }
                })
                .expect("spawn reader thread");
            rxs.push(rx);
        }
        EpochReader { rxs, n_shards: segments.len(), shard: 0, pending: Vec::new().into_iter(), bytes_read: 0 }
    }

    fn next(&mut self) -> Result<Option<RawSample>, DataError> {
        loop {
            if let Some(s) = self.pending.next() {
                return Ok(Some(s));
            }
            if self.shard >= self.n_shards {
                return Ok(None);
            }
            let rx = &self.rxs[self.shard % self.rxs.len()];
            match rx.recv() {
                Ok(Msg::Rows(rows, bytes)) => {
                    self.bytes_read += bytes;
                    self.pending = rows.into_iter();
                }
                Ok(Msg::EndShard) => self.shard += 1,
                Ok(Msg::Err(e)) => return Err(e),
                Err(_) => return Err(DataError::Config("a reader thread died".into())),
            }
        }
    }
}

/// Reads one segment (rows of one shard); `emit` returns false to stop early.
fn read_shard(seg: &Segment, meta: &DataMeta, cfg: &LoaderConfig, mut emit: impl FnMut(Vec<RawSample>, u64) -> bool) -> Result<(), DataError> {
    let shard = &seg.shard;
    let path = &shard.path;
    let reader = read_parquet_rows(path, Some(Kind::Sample), cfg.read_batch_rows, seg.start..seg.end)?;
    if reader.rows() != shard.rows {
        return Err(DataError::Dataset {
            path: path.clone(),
            msg: format!("shard has {} rows but the manifest says {}", reader.rows(), shard.rows),
        });
    }
    let mut row = seg.start;
    for batch in reader {
        let batch = batch?;
        let n = batch.num_rows() as u64;
        let bytes = batch.get_array_memory_size() as u64;
        let rows = decode_batch(&batch, path, row, meta, shard.jpeg)?;
        row += n;
        if !emit(rows, bytes) {
            return Ok(());
        }
    }
    Ok(())
}

fn decode_batch(b: &RecordBatch, path: &Path, first_row: u64, meta: &DataMeta, jpeg: bool) -> Result<Vec<RawSample>, DataError> {
    let schema_err = |e: m6_schemas::SchemaError| DataError::from(m6_pipeline::Error::schema(path, e));
    let id: &Str = column(b, sample::ID).map_err(schema_err)?;
    let task: &Str = column(b, sample::TASK).map_err(schema_err)?;
    let ids: &List = column(b, sample::INPUT_IDS).map_err(schema_err)?;
    let patches: &Bin = column(b, sample::IMAGE_PATCHES).map_err(schema_err)?;
    let values = ids.values().as_any().downcast_ref::<Int32Array>().ok_or_else(|| DataError::Row {
        path: path.to_path_buf(),
        row: first_row,
        msg: format!("input_ids is {}, expected list<int32>", ids.data_type()),
    })?;
    let offs = ids.value_offsets();
    let mut out = vec![];
    for i in 0..b.num_rows() {
        let row = first_row + i as u64;
        let bad = |msg: String| DataError::Row { path: path.to_path_buf(), row, msg };
        let t = match task.value(i) {
            sample::TASK_TEXT => TaskKind::Text,
            sample::TASK_IMAGE_TEXT => TaskKind::ImageText,
            other => return Err(bad(format!("unknown task `{other}` (expected `{}` or `{}`)", sample::TASK_TEXT, sample::TASK_IMAGE_TEXT))),
        };
        let input_ids = values.values()[offs[i] as usize..offs[i + 1] as usize].to_vec();
        if let Some(&x) = input_ids.iter().find(|&&x| x < 0 || x as i64 >= meta.vocab_size) {
            return Err(bad(format!("token id {x} is outside the vocabulary (vocab_size {})", meta.vocab_size)));
        }
        let p = if patches.is_valid(i) { Some(patches.value(i)) } else { None };
        let patches = match (t, p) {
            (TaskKind::ImageText, None) => return Err(bad("image_text sample without image_patches".into())),
            (TaskKind::ImageText, Some(_)) if meta.img_id == NO_ID || meta.img_end_id == NO_ID => {
                return Err(bad("image sample, but the dataset's vocabulary has no [IMG]/[/IMG] markers (properties img_id/img_end_id are null)".into()))
            }
            (TaskKind::ImageText, Some(p)) => {
                let geom = meta.image.as_ref().ok_or_else(|| bad("image sample, but the manifest has no image_size/patch_size properties".into()))?;
                let want = (geom.n_patches() * geom.patch_dim()) as usize;
                let decoded;
                let p = if jpeg {
                    let cfg = m6_tokenizer::ImageConfig { image_size: geom.image_size as u32, patch_size: geom.patch_size as u32 };
                    decoded = cfg.patches_from_encoded(p).map_err(|e| bad(format!("image_patches holds no decodable {0}×{0} JPEG: {e}", geom.image_size)))?;
                    &decoded[..]
                } else {
                    p
                };
                if p.len() != want {
                    return Err(bad(format!("image_patches has {} bytes, expected {want} ({}×{} patches of {}×{}×3)", p.len(), geom.grid, geom.grid, geom.patch_size, geom.patch_size)));
                }
                Some(Arc::from(p))
            }
            (TaskKind::Text, _) => None,
        };
        out.push(RawSample { id: id.value(i).to_string(), task: t, input_ids, patches });
    }
    Ok(out)
}

/// The bounded shuffle buffer, split by task so the mix weights decide which task
/// the next example comes from (among what the buffer holds: every sample is still
/// used exactly once per epoch).
struct Mixer {
    text: Vec<RawSample>,
    image: Vec<RawSample>,
    rng: Rng,
}

impl Mixer {
    fn len(&self) -> usize {
        self.text.len() + self.image.len()
    }
    fn push(&mut self, s: RawSample) {
        match s.task {
            TaskKind::Text => self.text.push(s),
            TaskKind::ImageText => self.image.push(s),
        }
    }
    fn pick(&mut self, cfg: &LoaderConfig) -> Option<RawSample> {
        let take_image = match (self.text.is_empty(), self.image.is_empty()) {
            (true, true) => return None,
            (true, false) => true,
            (false, true) => false,
            (false, false) => {
                let w = cfg.denoise_weight + cfg.caption_weight;
                self.rng.f64() * w >= cfg.denoise_weight
            }
        };
        let v = if take_image { &mut self.image } else { &mut self.text };
        if !cfg.shuffle {
            return Some(v.remove(0));
        }
        let i = self.rng.below(v.len() as u64) as usize;
        Some(v.swap_remove(i))
    }
}

/// One lane: its position and, while an epoch is open, its reader and shuffle buffer.
struct Lane {
    index: u64,
    state: LoaderState,
    epoch: Option<(EpochReader, Mixer, bool)>,
}

/// Endless (epoch after epoch) deterministic stream of this rank's lanes.
pub struct Loader {
    shards: Vec<ShardRef>,
    meta: DataMeta,
    cfg: LoaderConfig,
    lanes: Vec<Lane>,
    /// Bytes of Arrow data decoded by finished epochs (for throughput figures).
    bytes_done: u64,
}

impl Loader {
    /// This rank's loader at the global `position` (one state per lane of the job).
    pub fn new(shards: Vec<ShardRef>, meta: DataMeta, cfg: LoaderConfig, position: &Position) -> Result<Self, DataError> {
        if cfg.world_size == 0 || cfg.rank >= cfg.world_size {
            return Err(DataError::Config(format!("rank {} must be below the world size {}", cfg.rank, cfg.world_size)));
        }
        if cfg.lanes == 0 || cfg.lanes % cfg.world_size != 0 {
            return Err(DataError::Config(format!(
                "the run's {} data lanes cannot be split evenly over {} ranks (set `lanes` to a multiple of every world size you will run at, e.g. 12 for 1, 2, 3, 4 or 6 ranks)",
                cfg.lanes, cfg.world_size
            )));
        }
        if position.lanes.len() as u64 != cfg.lanes {
            return Err(DataError::Config(format!("the saved data position has {} lanes, the run {}", position.lanes.len(), cfg.lanes)));
        }
        let per = cfg.lanes / cfg.world_size;
        let lanes = (cfg.rank * per..(cfg.rank + 1) * per).map(|l| Lane { index: l, state: position.lanes[l as usize], epoch: None }).collect();
        Ok(Loader { shards, meta, cfg, lanes, bytes_done: 0 })
    }

    pub fn meta(&self) -> &DataMeta {
        &self.meta
    }

    /// The lanes this rank reads, in order.
    pub fn lane_range(&self) -> std::ops::Range<u64> {
        let first = self.lanes[0].index;
        first..first + self.lanes.len() as u64
    }

    /// This rank's lanes' positions (in [`Loader::lane_range`] order); the trainer
    /// gathers every rank's into the global [`Position`].
    pub fn lane_states(&self) -> Vec<LoaderState> {
        self.lanes.iter().map(|l| l.state).collect()
    }

    /// The position to save, when this rank reads every lane (one process).
    pub fn position(&self) -> Position {
        assert_eq!(self.cfg.world_size, 1, "with several ranks the position is gathered from all of them");
        Position { lanes: self.lane_states() }
    }

    /// The earliest epoch any of this rank's lanes is in.
    pub fn epoch(&self) -> u64 {
        self.lanes.iter().map(|l| l.state.epoch).min().unwrap_or(0)
    }

    /// Arrow bytes decoded so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_done + self.lanes.iter().filter_map(|l| l.epoch.as_ref()).map(|e| e.0.bytes_read).sum::<u64>()
    }

    fn epoch_order(&self, epoch: u64) -> Vec<ShardRef> {
        let mut order = self.shards.clone();
        if self.cfg.shuffle {
            let mut rng = Rng::from_parts(&[self.cfg.seed, epoch, 0x5348_4152_4453]);
            for i in (1..order.len()).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                order.swap(i, j);
            }
        }
        order
    }

    /// The rows lane `lane` reads in `epoch`: rows ⌊l·N/L⌋ .. ⌊(l+1)·N/L⌋ of the
    /// epoch's shard order, as (shard, row range) pieces.
    pub fn lane_segments(&self, epoch: u64, lane: u64) -> Vec<Segment> {
        let order = self.epoch_order(epoch);
        let total: u64 = order.iter().map(|s| s.rows).sum();
        let l = self.cfg.lanes as u128;
        let (from, to) = (((lane as u128 * total as u128) / l) as u64, (((lane as u128 + 1) * total as u128) / l) as u64);
        let mut out = vec![];
        let mut at = 0u64;
        for s in order {
            let (a, b) = (at.max(from), (at + s.rows).min(to));
            if a < b {
                out.push(Segment { start: a - at, end: b - at, shard: s.clone() });
            }
            at += s.rows;
        }
        out
    }

    /// Every (shard, row range) this rank reads in `epoch`.
    pub fn segments(&self, epoch: u64) -> Vec<Segment> {
        self.lane_range().flat_map(|l| self.lane_segments(epoch, l)).collect()
    }

    fn start_epoch(&mut self, i: usize) -> Result<(), DataError> {
        let lane = &self.lanes[i];
        let (index, state) = (lane.index, lane.state);
        let reader = EpochReader::start(self.lane_segments(state.epoch, index), &self.meta, &self.cfg);
        // Seeded by the lane (not the rank), so the stream is the same at any world size;
        // lane 0 of a one-lane run uses the generator a single process always used.
        let rng = Rng::from_parts(&[self.cfg.seed, state.epoch, index, 0x4d49_5845]);
        let cap = if self.cfg.shuffle { self.cfg.shuffle_buffer } else { 1 };
        self.lanes[i].epoch = Some((reader, Mixer { text: Vec::with_capacity(cap), image: vec![], rng }, false));
        // Replay up to the saved position: same seed, same order, so the skipped samples
        // are exactly those the interrupted run already trained on.
        for _ in 0..state.consumed {
            if self.pull(i)?.is_none() {
                return Err(DataError::Config(format!(
                    "saved position (lane {index}, epoch {}, {} samples) is past the end of the lane's epoch: the input changed since the checkpoint",
                    state.epoch, state.consumed
                )));
            }
        }
        Ok(())
    }

    /// Next sample of lane `i`'s current epoch, or `None` at its end; does not advance the state.
    fn pull(&mut self, i: usize) -> Result<Option<RawSample>, DataError> {
        let cap = if self.cfg.shuffle { self.cfg.shuffle_buffer } else { 1 };
        let (reader, mixer, done) = self.lanes[i].epoch.as_mut().expect("epoch started");
        while !*done && mixer.len() < cap {
            match reader.next()? {
                Some(s) => mixer.push(s),
                None => *done = true,
            }
        }
        Ok(mixer.pick(&self.cfg))
    }

    /// The next sample of this rank's `i`-th lane and the epoch it belongs to; rolls
    /// over into the lane's next epoch.
    pub fn next_sample_from(&mut self, i: usize) -> Result<(RawSample, u64), DataError> {
        let mut empty_epochs = 0;
        loop {
            if self.lanes[i].epoch.is_none() {
                self.start_epoch(i)?;
            }
            if let Some(s) = self.pull(i)? {
                self.lanes[i].state.consumed += 1;
                return Ok((s, self.lanes[i].state.epoch));
            }
            if self.lanes[i].state.consumed == 0 {
                empty_epochs += 1;
                if empty_epochs > 1 {
                    let rows: u64 = self.shards.iter().map(|s| s.rows).sum();
                    return Err(DataError::Config(format!("data lane {} of {} gets no samples ({rows} rows in all): use fewer `lanes`", self.lanes[i].index, self.cfg.lanes)));
                }
            }
            let lane = &mut self.lanes[i];
            let (reader, _, _) = lane.epoch.take().unwrap();
            self.bytes_done += reader.bytes_read;
            lane.state = LoaderState { epoch: lane.state.epoch + 1, consumed: 0 };
        }
    }

    /// The next sample of a one-lane loader (evaluation, tests).
    pub fn next_sample(&mut self) -> Result<(RawSample, u64), DataError> {
        assert_eq!(self.lanes.len(), 1, "next_sample reads a one-lane loader; use next_batch");
        self.next_sample_from(0)
    }

    /// Every sample of the current epoch that is left in each of this rank's lanes
    /// (lane after lane), then stops (for tests and eval).
    pub fn rest_of_epoch(&mut self) -> Result<Vec<RawSample>, DataError> {
        let mut out = vec![];
        for i in 0..self.lanes.len() {
            let epoch = self.lanes[i].state.epoch;
            if self.lanes[i].epoch.is_none() {
                self.start_epoch(i)?;
            }
            while let Some(s) = self.pull(i)? {
                self.lanes[i].state.consumed += 1;
                out.push(s);
            }
            if let Some((reader, _, _)) = self.lanes[i].epoch.take() {
                self.bytes_done += reader.bytes_read;
            }
            self.lanes[i].state = LoaderState { epoch: epoch + 1, consumed: 0 };
        }
        Ok(out)
    }
}

/// One training example in prefix-LM form: positions `< prefix_len` see each other
/// bidirectionally; later positions are causal. `labels[i]` is the token position
/// `i` must predict (the next one), or [`IGNORE`].
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub ids: Vec<i64>,
    pub labels: Vec<i64>,
    pub prefix_len: usize,
    /// Patches for positions `1..=n_patches` (after [IMG]); those positions' ids are [IMG].
    pub patches: Option<Arc<[u8]>>,
    pub task: TaskKind,
}

/// Turns a sample into the example of its task: text → span denoising, image_text →
/// captioning. Randomness (the spans) is seeded by (seed, epoch, sample id) only, so
/// a resumed run masks a sample exactly as the uninterrupted run would.
pub fn make_example(s: &RawSample, epoch: u64, seed: u64, meta: &DataMeta, tasks: &TaskConfig, max_len: usize) -> Option<Example> {
    let special = [meta.pad_id, meta.img_id, meta.img_end_id];
    match s.task {
        TaskKind::Text => {
            let mut toks: Vec<i64> = s.input_ids.iter().map(|&x| x as i64).filter(|x| *x != meta.pad_id).collect();
            if toks.is_empty() {
                return None;
            }
            let mut rng = Rng::from_parts(&[seed, epoch, hash_str(&s.id)]);
            loop {
                let (prefix, target) = denoise(&toks, &mut rng, tasks, meta);
                let total = prefix.len() + target.len() - 1;
                if total <= max_len {
                    return Some(join(prefix, target, None, TaskKind::Text));
                }
                let runs = target.iter().filter(|&&t| t == meta.mask_id).count();
                toks.truncate(max_len.saturating_sub(2 * runs + 1).max(1));
            }
        }
        TaskKind::ImageText => {
            let geom = meta.image.as_ref()?;
            let p = geom.n_patches() as usize;
            let mut prefix = Vec::with_capacity(p + 2);
            prefix.push(meta.img_id);
            prefix.extend(std::iter::repeat(meta.img_id).take(p));
            prefix.push(meta.img_end_id);
            let mut target: Vec<i64> = s.input_ids.iter().map(|&x| x as i64).filter(|x| !special.contains(x) && *x != meta.cls_id).collect();
            if target.last() != Some(&meta.sep_id) {
                target.push(meta.sep_id);
            }
            let room = (max_len + 1).checked_sub(prefix.len())?;
            if room < 1 {
                return None;
            }
            if target.len() > room {
                target.truncate(room - 1);
                target.push(meta.sep_id);
            }
            Some(join(prefix, target, s.patches.clone(), TaskKind::ImageText))
        }
    }
}

fn join(prefix: Vec<i64>, target: Vec<i64>, patches: Option<Arc<[u8]>>, task: TaskKind) -> Example {
    let prefix_len = prefix.len();
    let mut ids = prefix;
    ids.extend_from_slice(&target[..target.len() - 1]);
    let mut labels = vec![IGNORE; ids.len()];
    for (j, &t) in target.iter().enumerate() {
        labels[prefix_len - 1 + j] = t;
    }
    Example { ids, labels, prefix_len, patches, task }
}

/// M6/T5-style span corruption: each masked span becomes one [MASK] in the prefix;
/// the target lists every span after a [MASK] and ends with [SEP].
fn denoise(toks: &[i64], rng: &mut Rng, tasks: &TaskConfig, meta: &DataMeta) -> (Vec<i64>, Vec<i64>) {
    let n = toks.len();
    let want = ((n as f64 * tasks.mask_ratio).round() as usize).clamp(1, n);
    let mut masked = vec![false; n];
    let mut count = 0;
    let mut tries = 0;
    while count < want && tries < 64 + 8 * n {
        tries += 1;
        let len = 1 + rng.below((2 * tasks.mean_span - 1) as u64) as usize;
        let start = rng.below(n as u64) as usize;
        for m in masked.iter_mut().skip(start).take(len.min(want - count)) {
            if !*m {
                *m = true;
                count += 1;
            }
        }
    }
    let mut prefix = vec![];
    let mut target = vec![];
    for i in 0..n {
        if masked[i] {
            if i == 0 || !masked[i - 1] {
                prefix.push(meta.mask_id);
                target.push(meta.mask_id);
            }
            target.push(toks[i]);
        } else {
            prefix.push(toks[i]);
        }
    }
    target.push(meta.sep_id);
    (prefix, target)
}

fn hash_str(s: &str) -> u64 {
    let h = blake3::hash(s.as_bytes());
    u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap())
}

/// A padded batch, on the CPU (the trainer moves it to the device).
#[derive(Debug)]
pub struct Batch {
    /// (B, T) token ids; image slots hold [IMG].
    pub ids: Tensor,
    /// (B, T) next-token labels or [`IGNORE`].
    pub labels: Tensor,
    /// (B,) prefix lengths and (B,) real lengths.
    pub prefix_len: Tensor,
    pub lengths: Tensor,
    /// (B, P, patch_dim) uint8 and (B,) bool, when any example has an image.
    pub patches: Option<(Tensor, Tensor)>,
    pub samples: usize,
    /// Non-padding positions.
    pub tokens: usize,
    /// Positions with a label.
    pub targets: usize,
    pub counts: BTreeMap<&'static str, usize>,
}

pub fn collate(examples: &[Example], meta: &DataMeta) -> Batch {
    let b = examples.len();
    let t = examples.iter().map(|e| e.ids.len()).max().unwrap_or(1).max(1);
    let mut ids = vec![meta.pad_id; b * t];
    let mut labels = vec![IGNORE; b * t];
    let mut prefix = Vec::with_capacity(b);
    let mut lengths = Vec::with_capacity(b);
    let mut counts = BTreeMap::new();
    let mut targets = 0;
    for (r, e) in examples.iter().enumerate() {
        ids[r * t..r * t + e.ids.len()].copy_from_slice(&e.ids);
        labels[r * t..r * t + e.labels.len()].copy_from_slice(&e.labels);
        prefix.push(e.prefix_len as i64);
        lengths.push(e.ids.len() as i64);
        targets += e.labels.iter().filter(|&&l| l != IGNORE).count();
        *counts.entry(match e.task {
            TaskKind::Text => "denoise",
            TaskKind::ImageText => "caption",
        }).or_insert(0) += 1;
    }
    let patches = meta.image.as_ref().filter(|_| examples.iter().any(|e| e.patches.is_some())).map(|g| {
        let (p, d) = (g.n_patches() as usize, g.patch_dim() as usize);
        let mut buf = vec![0u8; b * p * d];
        let mut has = vec![false; b];
        for (r, e) in examples.iter().enumerate() {
            if let Some(x) = &e.patches {
                buf[r * p * d..(r + 1) * p * d].copy_from_slice(x);
                has[r] = true;
            }
        }
        (Tensor::from_slice(&buf).view([b as i64, p as i64, d as i64]), Tensor::from_slice(&has))
    });
    Batch {
        ids: Tensor::from_slice(&ids).view([b as i64, t as i64]),
        labels: Tensor::from_slice(&labels).view([b as i64, t as i64]),
        prefix_len: Tensor::from_slice(&prefix),
        lengths: Tensor::from_slice(&lengths),
        patches,
        samples: b,
        tokens: lengths.iter().sum::<i64>() as usize,
        targets,
        counts,
    }
}

/// This rank's share of a micro-batch: `n` examples, the same number from each of its
/// lanes in lane order (samples that yield none, e.g. empty, are skipped), padded.
pub fn next_batch(loader: &mut Loader, n: usize, seed: u64, tasks: &TaskConfig, max_len: usize) -> Result<Batch, DataError> {
    let k = loader.lanes.len();
    if n % k != 0 {
        return Err(DataError::Config(format!("batch_size {n} cannot be split evenly over this rank's {k} data lanes")));
    }
    let mut ex = Vec::with_capacity(n);
    for i in 0..k {
        let want = ex.len() + n / k;
        let mut skipped = 0;
        while ex.len() < want {
            let (s, epoch) = loader.next_sample_from(i)?;
            match make_example(&s, epoch, seed, loader.meta(), tasks, max_len) {
                Some(e) => ex.push(e),
                None => {
                    skipped += 1;
                    if skipped > 10_000 && ex.len() + n / k == want {
                        return Err(DataError::Config("no sample yields a training example (all empty, or max_len too small for the image)".into()));
                    }
                }
            }
        }
    }
    Ok(collate(&ex, loader.meta()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> DataMeta {
        DataMeta {
            vocab_size: 200,
            pad_id: 0,
            cls_id: 2,
            sep_id: 3,
            mask_id: 4,
            img_id: 5,
            img_end_id: 6,
            image: Some(ImageGeom { image_size: 16, patch_size: 8, grid: 2 }),
        }
    }

    #[test]
    fn denoising_hides_spans_and_target_restores_them() {
        let m = meta();
        let toks: Vec<i32> = (100..160).collect();
        let s = RawSample { id: "a".into(), task: TaskKind::Text, input_ids: toks.clone(), patches: None };
        let e = make_example(&s, 0, 7, &m, &TaskConfig::default(), 128).unwrap();
        // Rebuild the original from the prefix and the labelled target.
        let target: Vec<i64> = e.labels.iter().copied().filter(|&l| l != IGNORE).collect();
        assert_eq!(*target.last().unwrap(), m.sep_id);
        let mut spans = target[..target.len() - 1].split(|&t| t == m.mask_id).skip(1);
        let mut rebuilt = vec![];
        for &t in &e.ids[..e.prefix_len] {
            if t == m.mask_id {
                rebuilt.extend(spans.next().unwrap());
            } else {
                rebuilt.push(t);
            }
        }
        assert_eq!(rebuilt, toks.iter().map(|&x| x as i64).collect::<Vec<_>>());
        let hidden = toks.len() - e.ids[..e.prefix_len].iter().filter(|&&t| t != m.mask_id).count();
        assert_eq!(hidden, 9, "15% of 60 tokens");
        // Same seed/epoch/id, same spans; another epoch, other spans.
        assert_eq!(make_example(&s, 0, 7, &m, &TaskConfig::default(), 128).unwrap(), e);
        assert_ne!(make_example(&s, 1, 7, &m, &TaskConfig::default(), 128).unwrap(), e);
        // Truncation keeps the sequence within max_len.
        let short = make_example(&s, 0, 7, &m, &TaskConfig::default(), 20).unwrap();
        assert!(short.ids.len() <= 20, "{}", short.ids.len());
    }

    #[test]
    fn caption_example_has_image_prefix_and_caption_target() {
        let m = meta();
        let s = RawSample { id: "b".into(), task: TaskKind::ImageText, input_ids: vec![2, 120, 121, 3], patches: Some(Arc::from(vec![1u8; 4 * 192])) };
        let e = make_example(&s, 0, 1, &m, &TaskConfig::default(), 32).unwrap();
        assert_eq!(e.prefix_len, 6);
        assert_eq!(e.ids, vec![5, 5, 5, 5, 5, 6, 120, 121]);
        assert_eq!(e.labels, vec![IGNORE, IGNORE, IGNORE, IGNORE, IGNORE, 120, 121, 3]);
        let b = collate(&[e.clone(), e], &m);
        assert_eq!(b.ids.size(), vec![2, 8]);
        assert_eq!(b.targets, 6);
        assert_eq!(b.patches.unwrap().0.size(), vec![2, 4, 192]);
    }
}
