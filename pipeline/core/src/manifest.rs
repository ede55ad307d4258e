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
        let entries = match fs::read_dir(&cdir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io(&cdir, e)),
        };
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

/// Rebuilds `manifest.json` (and each side dataset's) from the commit records.
/// `run` is appended to the run history when given; `properties` are merged in.
pub fn rebuild(dir: &Path, run: Option<RunSummary>, properties: &BTreeMap<String, serde_json::Value>) -> Result<Manifest> {
    let _lock = DatasetLock::acquire(dir)?;
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
    for (side, kind) in manifest.sides.clone() {
        let sdir = dir.join(&side);
        let mut sm = if Manifest::exists(&sdir) { Manifest::load(&sdir)? } else { Manifest::new(kind) };
        let mut shards = per_output.remove(&side).unwrap_or_default();
        shards.sort_by(|a, b| a.file.cmp(&b.file));
        sm.shards = shards;
        sm.save(&sdir)?;
    }
    manifest.save(dir)?;
    Ok(manifest)
}
