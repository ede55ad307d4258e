//! `manifest.json` and the per-task commit records it is built from.
//!
//! A task is done exactly when its commit record (`_commits/<task>.json`) exists: the
//! record is written under a temporary name and renamed, so it is atomic on any POSIX
//! file system, needs no lock, and works when many machines (a Slurm array) write into
//! one dataset. `manifest.json` is the consolidated view, rebuilt from the records
//! under a file lock and itself replaced atomically.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use m6_schemas::Kind;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::stage::Counters;

pub const MANIFEST: &str = "manifest.json";
pub const COMMITS: &str = "_commits";
pub const LOCK: &str = ".lock";
/// Per-task lock files (`_locks/<task>.lock`), so two runs never work on one task.
pub const LOCKS: &str = "_locks";
/// The task list the writing stage planned (`_plan.json`), what completeness is measured against.
pub const PLAN: &str = "_plan.json";
/// Manifest file format version (distinct from the schema version of the rows).
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardEntry {
    pub file: String,
    pub rows: u64,
    pub bytes: u64,
    pub blake3: String,
    /// The input shards or files this shard was made from.
    pub inputs: Vec<String>,
    pub task: String,
    /// Other tasks of this dataset whose side-dataset shards rows of this shard point
    /// into (a crawl round's pages that show images an earlier round stored, once): a
    /// stage that joins the two, as extract's pairs do, reads those shards as well.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refers_to: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub stage: String,
    pub started_at: String,
    pub task_index: usize,
    pub task_count: usize,
    pub threads: usize,
    pub tasks_run: u64,
    pub tasks_skipped: u64,
    pub rows_in: u64,
    pub rows_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub seconds: f64,
    pub rows_per_s: f64,
    /// Stage-specific counts summed over the run (e.g. `malformed`, `dropped.min_chars`).
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub kind: Kind,
    pub schema_version: u32,
    /// Shards sorted by file name, so the manifest is the same whatever the task order.
    pub shards: Vec<ShardEntry>,
    /// Side datasets stored in sub-folders of this one (e.g. `rejects`).
    #[serde(default)]
    pub sides: BTreeMap<String, Kind>,
    #[serde(default)]
    pub runs: Vec<RunSummary>,
    /// Free-form facts a stage records about its output (e.g. the tokenizer file).
    #[serde(default)]
    pub properties: BTreeMap<String, serde_json::Value>,
    /// How many tasks the writing stage planned and how many have committed; absent in
    /// datasets written before completeness was recorded (they count as complete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completeness: Option<Completeness>,
}

/// Whether every task the writing stage planned has committed. Every process of a
/// `--task-count N` job plans the same task list, so the count is the whole job's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completeness {
    /// The stage that writes this dataset.
    pub stage: String,
    pub planned: u64,
    pub committed: u64,
    /// True once a manifest rebuild saw every planned task committed: only then does
    /// `shards` list the whole dataset.
    pub complete: bool,
    /// The first missing tasks (`<task> (<inputs>)`), for messages; `status` lists all.
    #[serde(default)]
    pub missing: Vec<String>,
}

/// The tasks a run planned, written by every process of the run (they plan the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanFile {
    pub stage: String,
    /// Fingerprint of the stage's settings; a commit made under other settings does
    /// not count towards completeness.
    pub settings: String,
    pub tasks: Vec<PlannedTask>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedTask {
    pub id: String,
    /// Labels of the task's inputs, to name a missing task.
    pub inputs: Vec<String>,
}

impl PlannedTask {
    pub fn describe(&self) -> String {
        let short = &self.id[..self.id.len().min(16)];
        if self.inputs.is_empty() {
            short.to_string()
        } else {
            format!("{short} ({})", self.inputs.join(", "))
        }
    }
}

impl PlanFile {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(PLAN)
    }

    pub fn load(dir: &Path) -> Result<Option<PlanFile>> {
        let path = Self::path(dir);
        let Some(b) = fs::read(&path).missing_ok(&path)? else { return Ok(None) };
        serde_json::from_slice(&b).map(Some).map_err(|e| Error::manifest(&path, format!("unreadable plan: {e}")))
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        write_atomic(&Self::path(dir), &serde_json::to_vec(self).expect("plan serialises"))
    }

    /// Planned tasks with no commit record made under the plan's settings.
    pub fn missing<'a>(&'a self, commits: &[CommitRecord]) -> Vec<&'a PlannedTask> {
        let done: std::collections::HashSet<&str> =
            commits.iter().filter(|c| c.settings.is_empty() || c.settings == self.settings).map(|c| c.task.as_str()).collect();
        self.tasks.iter().filter(|t| !done.contains(t.id.as_str())).collect()
    }
}

impl Manifest {
    pub fn new(kind: Kind) -> Self {
        Manifest {
            format: FORMAT,
            kind,
            schema_version: kind.version(),
            shards: vec![],
            sides: BTreeMap::new(),
            runs: vec![],
            properties: BTreeMap::new(),
            completeness: None,
        }
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join(MANIFEST)
    }

    pub fn exists(dir: &Path) -> bool {
        Self::path(dir).is_file()
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let path = Self::path(dir);
        let text = fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::manifest(&path, "no manifest.json: not an m6corpus dataset (or the stage that makes it never ran)")
            } else {
                Error::io(&path, e)
            }
        })?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| Error::manifest(&path, format!("unreadable manifest: {e}")))?;
        if m.format != FORMAT {
            return Err(Error::manifest(&path, format!("manifest format {} is not supported (expected {FORMAT})", m.format)));
        }
        if !m.kind.reads_version(m.schema_version) {
            return Err(Error::manifest(
                &path,
                format!("{} schema version {} is not the version this build reads ({})", m.kind, m.schema_version, m.kind.version()),
            ));
        }
        Ok(m)
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        write_atomic(&Self::path(dir), &serde_json::to_vec_pretty(self).expect("manifest serialises"))
    }

    pub fn rows(&self) -> u64 {
        self.shards.iter().map(|s| s.rows).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.bytes).sum()
    }
}

/// What one finished task produced; the unit of atomic commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommitRecord {
    pub task: String,
    pub inputs: Vec<String>,
    /// Shards per output: "" is the main dataset, other keys are side datasets.
    pub outputs: BTreeMap<String, Vec<ShardEntry>>,
    pub counters: Counters,
    pub seconds: f64,
    /// What the task's output was made from: blake3 over the stage's settings and the
    /// checksums of every input it read. A rerun whose key differs redoes the task.
    /// Empty for commits a stage makes itself (crawl rounds) and for older records.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// Fingerprint of the stage's settings alone (part of `key`), for completeness.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub settings: String,
}

impl CommitRecord {
    pub fn path(dir: &Path, task: &str) -> PathBuf {
        dir.join(COMMITS).join(format!("{task}.json"))
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        write_atomic(&Self::path(dir, &self.task), &serde_json::to_vec_pretty(self).expect("commit serialises"))
    }

    /// Every commit record of a dataset, sorted by task id.
    pub fn load_all(dir: &Path) -> Result<Vec<CommitRecord>> {
        let cdir = dir.join(COMMITS);
        let mut out = vec![];
        let Some(entries) = fs::read_dir(&cdir).missing_ok(&cdir)? else { return Ok(out) };
        for entry in entries {
            let path = entry.at(&cdir)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue; // a temporary left by a killed writer
            }
            let text = fs::read_to_string(&path).at(&path)?;
            out.push(serde_json::from_str(&text).map_err(|e| Error::manifest(&path, format!("unreadable commit record: {e}")))?);
        }
        out.sort_by(|a: &CommitRecord, b| a.task.cmp(&b.task));
        Ok(out)
    }

    pub fn is_done(dir: &Path, task: &str) -> bool {
        Self::path(dir, task).is_file()
    }

    /// The record of one task, if it committed.
    pub fn load(dir: &Path, task: &str) -> Result<Option<CommitRecord>> {
        let path = Self::path(dir, task);
        let Some(b) = fs::read(&path).missing_ok(&path)? else { return Ok(None) };
        serde_json::from_slice(&b).map(Some).map_err(|e| Error::manifest(&path, format!("unreadable commit record: {e}")))
    }

    /// Uncommits the task: the record goes first (so no manifest rebuilt afterwards
    /// lists the shards), then every shard it lists. Missing files are fine: another
    /// process may be removing the same stale task.
    pub fn remove(&self, dir: &Path) -> Result<()> {
        let rec = Self::path(dir, &self.task);
        fs::remove_file(&rec).missing_ok(&rec)?;
        for (side, shards) in &self.outputs {
            let sdir = if side.is_empty() { dir.to_path_buf() } else { dir.join(side) };
            for s in shards {
                let p = sdir.join(&s.file);
                fs::remove_file(&p).missing_ok(&p)?;
            }
        }
        sync_dir(&dir.join(COMMITS));
        Ok(())
    }
}

/// An exclusive lock on one task of one output (`_locks/<task>.lock`), held while the
/// task runs, so two processes never write the same task's shards; tasks of different
/// processes (array jobs) still run side by side. `flock` locks are released by the
/// kernel when a process dies, so a kill -9 never leaves a task locked.
pub struct TaskLock(fs::File);

impl TaskLock {
    fn open(dir: &Path, task: &str) -> Result<(fs::File, PathBuf)> {
        let ldir = dir.join(LOCKS);
        fs::create_dir_all(&ldir).at(&ldir)?;
        let path = ldir.join(format!("{task}.lock"));
        let f = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).at(&path)?;
        Ok((f, path))
    }

    /// Takes the lock, waiting while another process holds it; `on_wait` is called once
    /// when it has to wait.
    pub fn acquire(dir: &Path, task: &str, on_wait: impl FnOnce()) -> Result<Self> {
        use fs4::fs_std::FileExt;
        let (f, path) = Self::open(dir, task)?;
        match f.try_lock_exclusive() {
            Ok(true) => return Ok(TaskLock(f)),
            Ok(false) => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
        on_wait();
        f.lock_exclusive().at(&path)?;
        Ok(TaskLock(f))
    }

    /// Takes the lock only if nobody holds it.
    pub fn try_acquire(dir: &Path, task: &str) -> Result<Option<Self>> {
        use fs4::fs_std::FileExt;
        let (f, path) = Self::open(dir, task)?;
        match f.try_lock_exclusive() {
            Ok(true) => Ok(Some(TaskLock(f))),
            Ok(false) => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }
}

impl Drop for TaskLock {
    fn drop(&mut self) {
        use fs4::fs_std::FileExt;
        let _ = FileExt::unlock(&self.0);
    }
}

/// Writes `bytes` to `path` via a temporary file, fsync and rename, so readers see the
/// old content or the new, never a mix; the directory is synced so the rename survives
/// a power cut.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).at(dir)?;
    let tmp = dir.join(format!(".{}.{}.tmp", path.file_name().unwrap().to_string_lossy(), std::process::id()));
    {
        let mut f = fs::File::create(&tmp).at(&tmp)?;
        f.write_all(bytes).at(&tmp)?;
        f.sync_all().at(&tmp)?;
    }
    fs::rename(&tmp, path).at(path)?;
    sync_dir(dir);
    Ok(())
}

/// Removes the temporaries [`write_atomic`] leaves (`.NAME.PID.tmp`) when its process
/// is killed between writing and renaming. Only for files written under a lock the
/// caller holds (the manifests and the plan under the dataset's lock, a commit record
/// under its task's lock): then no such temporary can belong to a live writer. Best
/// effort: a leftover is harmless to readers.
pub(crate) fn remove_stale_temps(dir: &Path, names: &[&str]) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let f = e.file_name().to_string_lossy().to_string();
        if f.ends_with(".tmp") && names.iter().any(|n| f.starts_with(&format!(".{n}."))) {
            let _ = fs::remove_file(e.path());
        }
    }
}

pub(crate) fn sync_dir(dir: &Path) {
    // Best effort: some file systems refuse to open directories for sync.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Holds the dataset's lock file for as long as it lives.
pub struct DatasetLock(fs::File);

impl DatasetLock {
    pub fn acquire(dir: &Path) -> Result<Self> {
        use fs4::fs_std::FileExt;
        let path = dir.join(LOCK);
        let f = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).at(&path)?;
        f.lock_exclusive().at(&path)?;
        Ok(DatasetLock(f))
    }
}

impl Drop for DatasetLock {
    fn drop(&mut self) {
        use fs4::fs_std::FileExt;
        let _ = FileExt::unlock(&self.0);
    }
}

/// How many missing tasks the manifest names (the plan file has them all).
const MISSING_LISTED: usize = 20;

/// Rebuilds `manifest.json` (and each side dataset's) from the commit records.
/// `run` is appended to the run history when given; `properties` are merged in.
pub fn rebuild(dir: &Path, run: Option<RunSummary>, properties: &BTreeMap<String, serde_json::Value>) -> Result<Manifest> {
    let _lock = DatasetLock::acquire(dir)?;
    remove_stale_temps(dir, &[MANIFEST, PLAN]);
    let mut manifest = Manifest::load(dir)?;
    let commits = CommitRecord::load_all(dir)?;
    let mut per_output: BTreeMap<String, Vec<ShardEntry>> = BTreeMap::new();
    for c in &commits {
        for (name, shards) in &c.outputs {
            per_output.entry(name.clone()).or_default().extend(shards.iter().cloned());
        }
    }
    let mut main = per_output.remove("").unwrap_or_default();
    main.sort_by(|a, b| a.file.cmp(&b.file));
    manifest.shards = main;
    if let Some(run) = run {
        manifest.runs.push(run);
    }
    manifest.properties.extend(properties.iter().map(|(k, v)| (k.clone(), v.clone())));
    if let Some(plan) = PlanFile::load(dir)? {
        let missing = plan.missing(&commits);
        manifest.completeness = Some(Completeness {
            stage: plan.stage.clone(),
            planned: plan.tasks.len() as u64,
            committed: (plan.tasks.len() - missing.len()) as u64,
            complete: missing.is_empty(),
            missing: missing.iter().take(MISSING_LISTED).map(|t| t.describe()).collect(),
        });
    }
    for (side, kind) in manifest.sides.clone() {
        let sdir = dir.join(&side);
        remove_stale_temps(&sdir, &[MANIFEST]);
        let mut sm = if Manifest::exists(&sdir) { Manifest::load(&sdir)? } else { Manifest::new(kind) };
        let mut shards = per_output.remove(&side).unwrap_or_default();
        shards.sort_by(|a, b| a.file.cmp(&b.file));
        sm.shards = shards;
        // A side dataset is complete exactly when its main one is.
        sm.completeness = manifest.completeness.clone();
        sm.save(&sdir)?;
    }
    manifest.save(dir)?;
    Ok(manifest)
}
