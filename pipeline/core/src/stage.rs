//! The `Stage` trait: what a stage declares (outputs, tasks) and how it processes one
//! task. Everything about files, commits and parallelism lives in the runner.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use m6_schemas::{Kind, Record};
use serde::{Deserialize, Serialize};

use crate::dataset::{read_parquet, Dataset, ShardReader};
use crate::error::{BoxError, Error, Result};
use crate::writer::{ShardLimits, ShardWriter, WrittenShard};

/// The datasets a stage writes: a main one in the output folder, and side ones
/// (rejects, duplicates, errors, pairs, ...) in sub-folders named after them.
#[derive(Debug, Clone)]
pub struct OutputSpec {
    pub main: Kind,
    pub sides: Vec<(String, Kind)>,
}

impl OutputSpec {
    pub fn new(main: Kind) -> Self {
        OutputSpec { main, sides: vec![] }
    }
    pub fn with_side(mut self, name: &str, kind: Kind) -> Self {
        self.sides.push((name.to_string(), kind));
        self
    }
}

/// One input of a task: a shard of an input dataset, or a raw file (ingest, crawl seeds).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskInput {
    pub path: PathBuf,
    /// The dataset kind for shards; `None` for raw files.
    pub kind: Option<Kind>,
    /// How lineage names this input (shard file name, or the file's path relative to the input root).
    pub label: String,
}

/// A unit of work: usually one input shard. Its id is stable across runs for the same
/// input, which is what makes resume and `--task-index` slicing deterministic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub inputs: Vec<TaskInput>,
}

impl Task {
    /// The first 16 hex digits of the id, used in shard names.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(16)]
    }

    /// Streams the batches of every shard input, checking each shard's schema.
    pub fn batches(&self, batch_rows: usize) -> impl Iterator<Item = Result<RecordBatch>> + '_ {
        self.inputs.iter().flat_map(move |i| match i.kind {
            Some(kind) => match read_parquet(&i.path, Some(kind), batch_rows) {
                Ok(r) => Box::new(r) as Box<dyn Iterator<Item = Result<RecordBatch>>>,
                Err(e) => Box::new(std::iter::once(Err(e))),
            },
            None => Box::new(std::iter::once(Err(Error::manifest(&i.path, "raw input file is not a Parquet shard")))),
        })
    }

    /// Like [`Task::batches`], decoding only the named columns.
    pub fn batches_columns<'a>(&'a self, batch_rows: usize, columns: &'a [&'a str]) -> impl Iterator<Item = Result<RecordBatch>> + 'a {
        self.inputs.iter().flat_map(move |i| match i.kind {
            Some(kind) => match crate::dataset::read_parquet_columns(&i.path, Some(kind), batch_rows, Some(columns)) {
                Ok(r) => Box::new(r) as Box<dyn Iterator<Item = Result<RecordBatch>>>,
                Err(e) => Box::new(std::iter::once(Err(e))),
            },
            None => Box::new(std::iter::once(Err(Error::manifest(&i.path, "raw input file is not a Parquet shard")))),
        })
    }

    /// Opens one shard input for streaming.
    pub fn reader(&self, input: &TaskInput, batch_rows: usize) -> Result<ShardReader> {
        read_parquet(&input.path, input.kind, batch_rows)
    }

    pub fn describe(&self) -> String {
        self.inputs.iter().map(|i| i.label.as_str()).collect::<Vec<_>>().join(",")
    }
}

/// The default plan: one task per shard of each input dataset, whose id is the blake3
/// of the shard's own checksum and name (so a changed shard is a new task).
pub fn plan_shards(inputs: &[PathBuf], accepted: &[Kind]) -> Result<Vec<Task>> {
    let mut tasks = vec![];
    for dir in inputs {
        let ds = Dataset::open(dir)?;
        if !accepted.is_empty() && !accepted.contains(&ds.kind()) {
            return Err(Error::manifest(
                dir.join(crate::manifest::MANIFEST),
                format!("dataset is {}, this stage reads {}", ds.kind(), accepted.iter().map(|k| k.name()).collect::<Vec<_>>().join(" or ")),
            ));
        }
        for s in ds.shards() {
            tasks.push(Task {
                id: m6_schemas::content_id(&[s.blake3.as_bytes(), s.file.as_bytes()]),
                inputs: vec![TaskInput { path: ds.shard_path(s), kind: Some(ds.kind()), label: s.file.clone() }],
            });
        }
    }
    Ok(tasks)
}

/// Row and byte counts of one task (and, summed, of one run), plus named counts a
/// stage keeps (`malformed`, `dropped.<rule>`, ...).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub rows_in: u64,
    pub bytes_in: u64,
    pub rows_out: u64,
    pub bytes_out: u64,
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
}

impl Counters {
    pub fn add(&mut self, other: &Counters) {
        self.rows_in += other.rows_in;
        self.bytes_in += other.bytes_in;
        self.rows_out += other.rows_out;
        self.bytes_out += other.bytes_out;
        for (k, v) in &other.counts {
            *self.counts.entry(k.clone()).or_default() += v;
        }
    }
    pub fn bump(&mut self, name: &str, by: u64) {
        *self.counts.entry(name.to_string()).or_default() += by;
    }
}

/// Where a task writes. Batches are checked against the declared kind.
pub struct TaskOutput {
    pub(crate) main: ShardWriter,
    pub(crate) sides: BTreeMap<String, ShardWriter>,
    pub counters: Counters,
}

impl TaskOutput {
    /// Writers for every output of `spec`, naming shards `part-<prefix>-NNNNN.parquet`.
    pub fn new(out_dir: &Path, spec: &OutputSpec, prefix: &str, limits: ShardLimits) -> Self {
        TaskOutput {
            main: ShardWriter::new(out_dir, spec.main, prefix, limits),
            sides: spec.sides.iter().map(|(n, k)| (n.clone(), ShardWriter::new(&out_dir.join(n), *k, prefix, limits))).collect(),
            counters: Counters::default(),
        }
    }

    /// Writes to the main dataset and counts the rows as output.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.counters.rows_out += batch.num_rows() as u64;
        self.main.write(batch)
    }

    pub fn write_rows<R: Record>(&mut self, rows: &[R]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let b = R::to_batch(rows).map_err(|e| Error::schema(format!("<{} batch>", R::KIND), e))?;
        self.write(&b)
    }

    /// Writes to a side dataset declared in the stage's [`OutputSpec`].
    pub fn write_side(&mut self, name: &str, batch: &RecordBatch) -> Result<()> {
        let w = self
            .sides
            .get_mut(name)
            .ok_or_else(|| Error::Config(format!("stage wrote to undeclared side output `{name}`")))?;
        self.counters.bump(&format!("side.{name}"), batch.num_rows() as u64);
        w.write(batch)
    }

    pub fn write_side_rows<R: Record>(&mut self, name: &str, rows: &[R]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let b = R::to_batch(rows).map_err(|e| Error::schema(format!("<{} batch>", R::KIND), e))?;
        self.write_side(name, &b)
    }

    /// Counts input consumed.
    pub fn count_in(&mut self, rows: u64, bytes: u64) {
        self.counters.rows_in += rows;
        self.counters.bytes_in += bytes;
    }

    pub(crate) fn finish(self) -> Result<(Vec<WrittenShard>, BTreeMap<String, Vec<WrittenShard>>, Counters)> {
        let main = self.main.finish()?;
        let mut sides = BTreeMap::new();
        for (n, w) in self.sides {
            sides.insert(n, w.finish()?);
        }
        Ok((main, sides, self.counters))
    }

    /// Deletes everything written so far.
    pub fn abort(self) {
        self.main.abort();
        for (_, w) in self.sides {
            w.abort();
        }
    }
}

/// Everything a run of a stage is given: what it reads and writes, and the run's
/// settings (batch rows, row-group and shard sizes, thread budget, this process's
/// slice of a `--task-count` job). The runner builds one per run and hands it to
/// [`Stage::start`] and to every call of the run's methods, so a stage object keeps
/// only its config and can run several times with different settings.
#[derive(Debug, Clone, Copy)]
pub struct RunContext<'a> {
    pub inputs: &'a [PathBuf],
    pub output: &'a Path,
    /// Threads this process runs tasks (and a stage's global phase) on.
    pub threads: usize,
    pub task_index: usize,
    pub task_count: usize,
    /// Shard and row-group sizes and compression of the output.
    pub limits: ShardLimits,
    /// Rows per batch read from input shards.
    pub batch_rows: usize,
}

impl RunContext<'_> {
    /// The run's work folder `OUTPUT/NAME` (dedup's `_work`), which belongs to this
    /// run's output, never to the stage object.
    pub fn work_dir(&self, name: &str) -> crate::work::WorkDir {
        crate::work::WorkDir::new(self.output, name)
    }
}

/// A pipeline stage: a config struct turned into one of these. The stage object holds
/// only what its config decides (compiled rules, a loaded model); everything a run
/// learns (the input format, a global phase's results) lives in the [`StageRun`] that
/// [`Stage::start`] returns, so one stage object can run any number of times, with
/// different inputs, outputs and settings.
pub trait Stage: Sync {
    /// The stage's name as used on the command line and in pipeline.toml.
    fn name(&self) -> &'static str;

    /// Begins one run: the object that plans, prepares and processes this run's tasks.
    /// Stages without state of their own return themselves (`Ok(Box::new(self))` with
    /// `impl StageRun for &TheStage`).
    fn start<'a>(&'a self, ctx: &RunContext<'a>) -> std::result::Result<Box<dyn StageRun + 'a>, BoxError>;

    /// True when this invocation only runs [`StageRun::prepare`] (one phase of a stage whose
    /// global work is split into phases that schedulers chain as separate jobs): the
    /// runner then neither runs nor records tasks.
    fn prepare_only(&self) -> bool {
        false
    }

    /// Everything besides the inputs that decides the output (e.g. the config
    /// serialised, plus checksums of model files it loads). Its hash is part of every
    /// task's commit key, so a rerun under other settings redoes the tasks rather than
    /// keeping rows made under the old ones. Default: nothing (settings never redo).
    fn settings(&self) -> String {
        String::new()
    }

    /// True when every task's output depends on all inputs, not only its own (a global
    /// phase such as dedup's clustering): then a change to any input redoes every task.
    fn reads_all_inputs(&self) -> bool {
        false
    }
}

/// One run of a stage, made by [`Stage::start`]. The runner calls `plan`, `outputs`,
/// `prepare` (all before any task), then `process` once per task (in parallel: it
/// takes `&self`), then `finish`. Implementations must be deterministic for a given
/// task and config (same rows, same order), so reruns and different thread counts
/// give identical shards.
pub trait StageRun: Sync {
    /// Splits the inputs into tasks. The default is one task per input shard.
    fn plan(&mut self, inputs: &[PathBuf]) -> Result<Vec<Task>> {
        plan_shards(inputs, &[])
    }

    /// The datasets this run writes, given the kinds of its input datasets
    /// (empty for raw-file inputs). Called after [`StageRun::plan`].
    fn outputs(&self, input_kinds: &[Kind]) -> std::result::Result<OutputSpec, BoxError>;

    /// A global phase that must run before any task (e.g. dedup's clustering).
    /// Runs in every process of a `--task-count` job, so it must be idempotent.
    fn prepare(&mut self, _ctx: &RunContext) -> std::result::Result<(), BoxError> {
        Ok(())
    }

    fn process(&self, ctx: &RunContext, task: &Task, out: &mut TaskOutput) -> std::result::Result<(), BoxError>;

    /// Runs once after every task of this process committed (e.g. dedup removes its
    /// work files once the whole output is complete).
    fn finish(&self, _ctx: &RunContext) -> std::result::Result<(), BoxError> {
        Ok(())
    }

    /// Facts recorded in the output manifest's `properties` (asked after `plan` and
    /// again after `prepare`).
    fn properties(&self) -> BTreeMap<String, serde_json::Value> {
        BTreeMap::new()
    }

    /// Files a task reads besides its inputs (e.g. caption files beside images), as
    /// text folded into its commit key (say their checksums), so editing one redoes
    /// the task. Default: none.
    fn task_extra_key(&self, _task: &Task) -> std::result::Result<String, BoxError> {
        Ok(String::new())
    }
}

/// [`Stage::settings`] for a serialisable config: its JSON, plus any `extra` facts
/// (model checksums) that are not in the config itself.
pub fn settings_of<T: Serialize>(cfg: &T, extra: &[&str]) -> String {
    let mut s = serde_json::to_string(cfg).unwrap_or_default();
    for e in extra {
        s.push('\n');
        s.push_str(e);
    }
    s
}

/// One command-line flag of a stage, as data: the binary (the only crate with an
/// argument parser) turns it into `--NAME`, and its value sets one config field on top
/// of the pipeline.toml section and `--set`, as `--set KEY=VALUE` would. So a stage's
/// flags are a table next to its config struct, and adding a stage needs no parser code.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// The long flag without dashes, e.g. `max-len`.
    pub name: &'static str,
    /// The config field it sets, dots for nested fields (e.g. `text.lm_model`).
    pub key: &'static str,
    pub help: &'static str,
    pub kind: FlagKind,
}

#[derive(Debug, Clone, Copy)]
pub enum FlagKind {
    /// `--NAME VALUE`: the field gets VALUE as a string (a name, a path); when
    /// `values` is not empty VALUE must be one of them.
    Text { value_name: &'static str, values: &'static [&'static str] },
    /// `--NAME N`: an integer field.
    Int,
    /// `--NAME X`: a floating-point field.
    Float,
    /// `--NAME` alone: the field gets `value`.
    Switch { value: bool },
    /// `--NAME V` repeated (or `--NAME V1 V2 ...` when `many`; comma-separated when
    /// `delimiter`): the field gets the list, or the values are added to the list the
    /// config already holds when `append`. `bare`: the value a bare `--NAME` stands for.
    List { value_name: &'static str, many: bool, delimiter: Option<char>, append: bool, bare: Option<&'static str> },
}

impl Flag {
    pub const fn text(name: &'static str, key: &'static str, value_name: &'static str, help: &'static str) -> Flag {
        Flag { name, key, help, kind: FlagKind::Text { value_name, values: &[] } }
    }
    pub const fn choice(name: &'static str, key: &'static str, values: &'static [&'static str], help: &'static str) -> Flag {
        Flag { name, key, help, kind: FlagKind::Text { value_name: "NAME", values } }
    }
    pub const fn int(name: &'static str, key: &'static str, help: &'static str) -> Flag {
        Flag { name, key, help, kind: FlagKind::Int }
    }
    pub const fn float(name: &'static str, key: &'static str, help: &'static str) -> Flag {
        Flag { name, key, help, kind: FlagKind::Float }
    }
    pub const fn switch(name: &'static str, key: &'static str, value: bool, help: &'static str) -> Flag {
        Flag { name, key, help, kind: FlagKind::Switch { value } }
    }
    pub const fn list(name: &'static str, key: &'static str, value_name: &'static str, help: &'static str) -> Flag {
        Flag { name, key, help, kind: FlagKind::List { value_name, many: false, delimiter: None, append: false, bare: None } }
    }
}

/// How the command line and `m6corpus run` build a stage: the config struct (one
/// `pipeline.toml` section, every field documented with its default), the few flags
/// the stage accepts directly on its command line, and the stage itself.
pub trait StageFactory {
    /// The stage name: the subcommand and the pipeline.toml section.
    const NAME: &'static str;
    type Config: serde::de::DeserializeOwned + Serialize + Default + std::fmt::Debug;
    /// Flags of `m6corpus NAME` besides the ones every stage takes (each sets a field of `Config`).
    const FLAGS: &'static [Flag] = &[];
    /// Validates the config (naming the bad field) and builds the stage.
    fn build(cfg: Self::Config) -> std::result::Result<Box<dyn Stage>, BoxError>;
}
