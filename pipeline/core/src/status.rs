//! Dataset completeness: whether every task the writing stage planned has committed.
//!
//! Each run writes its task list (`_plan.json`; every process of a `--task-count N` job
//! plans the same list) and each task a commit record, so progress is the plan minus
//! the records, read live from the shared file system. A dataset is complete when no
//! planned task is missing *and* the manifest was rebuilt after the last commit (only
//! then does its shard list hold everything). Stages refuse incomplete inputs (naming
//! the missing tasks) unless `--allow-partial`; `--wait` polls until they complete.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::manifest::{CommitRecord, Manifest, PlanFile, COMMITS, LOCK, MANIFEST};

/// How often `--wait` looks again.
pub const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Serialize)]
pub struct DatasetStatus {
    pub dataset: PathBuf,
    pub kind: String,
    /// The stage that writes it (from its plan); `None` for datasets written before
    /// plans were recorded.
    pub stage: Option<String>,
    pub planned: Option<u64>,
    pub committed: u64,
    /// Every planned task committed and the manifest rebuilt after the last one.
    pub complete: bool,
    /// Every planned task committed (the manifest may still be being rebuilt).
    pub all_committed: bool,
    /// The missing tasks, as `<task> (<inputs>)`.
    pub missing: Vec<String>,
    /// What the manifest lists now.
    pub shards: usize,
    pub rows: u64,
    pub bytes: u64,
}

impl std::fmt::Display for DatasetStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.complete {
            "complete"
        } else if self.all_committed {
            "finishing (every task committed, manifest not yet rebuilt)"
        } else {
            "INCOMPLETE"
        };
        write!(f, "{}: {} {}", self.dataset.display(), self.kind, state)?;
        match (&self.stage, self.planned) {
            (Some(s), Some(p)) => write!(f, "; {s}: {}/{p} tasks committed", self.committed)?,
            _ => write!(f, "; no recorded plan (written by an older build)")?,
        }
        write!(f, "; {} shards, {} rows, {} bytes", self.shards, self.rows, self.bytes)?;
        for m in self.missing.iter().take(50) {
            write!(f, "\n  missing {m}")?;
        }
        if self.missing.len() > 50 {
            write!(f, "\n  … and {} more", self.missing.len() - 50)?;
        }
        Ok(())
    }
}

/// The folder holding the plan and commit records of `dir`: itself, or for a side
/// dataset (`out/rejects`) the main dataset it belongs to.
fn owner(dir: &Path, m: &Manifest) -> PathBuf {
    if PlanFile::path(dir).is_file() || dir.join(COMMITS).is_dir() {
        return dir.to_path_buf();
    }
    if let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) {
        if let Ok(pm) = Manifest::load(parent) {
            if pm.sides.get(&*name.to_string_lossy()) == Some(&m.kind) {
                return parent.to_path_buf();
            }
        }
    }
    dir.to_path_buf()
}

pub fn status(dir: &Path) -> Result<DatasetStatus> {
    let m = Manifest::load(dir)?;
    let root = owner(dir, &m);
    let plan = PlanFile::load(&root)?;
    let mut st = DatasetStatus {
        dataset: dir.to_path_buf(),
        kind: m.kind.to_string(),
        stage: None,
        planned: None,
        committed: 0,
        complete: true,
        all_committed: true,
        missing: vec![],
        shards: m.shards.len(),
        rows: m.rows(),
        bytes: m.bytes(),
    };
    if let Some(plan) = plan {
        let commits = CommitRecord::load_all(&root)?;
        let missing = plan.missing(&commits);
        st.stage = Some(plan.stage.clone());
        st.planned = Some(plan.tasks.len() as u64);
        st.committed = (plan.tasks.len() - missing.len()) as u64;
        st.all_committed = missing.is_empty();
        st.missing = missing.iter().map(|t| t.describe()).collect();
        let rebuilt = m.completeness.as_ref().is_some_and(|c| c.complete && c.planned == plan.tasks.len() as u64);
        st.complete = st.all_committed && rebuilt;
    }
    Ok(st)
}

/// True when `dir` is, or is about to be, a dataset: it has a manifest, or a writer
/// has started creating one (its commit folder or lock exists).
pub fn is_pending_dataset(dir: &Path) -> bool {
    dir.join(MANIFEST).is_file() || dir.join(COMMITS).is_dir() || dir.join(LOCK).is_file()
}

/// The error a stage gives for an incomplete input.
pub fn incomplete_error(st: &DatasetStatus) -> Error {
    let what = if st.all_committed {
        "every task committed but the manifest was not rebuilt since (the writer is finishing, or was killed: rerun it to finish)".to_string()
    } else {
        let shown: Vec<&str> = st.missing.iter().take(20).map(String::as_str).collect();
        let more = if st.missing.len() > 20 { format!(" and {} more", st.missing.len() - 20) } else { String::new() };
        format!(
            "{} of {} tasks of `{}` have not committed: {}{more}",
            st.missing.len(),
            st.planned.unwrap_or(0),
            st.stage.as_deref().unwrap_or("?"),
            shown.join("; ")
        )
    };
    Error::Manifest {
        path: st.dataset.join(MANIFEST),
        msg: format!("input dataset is incomplete: {what}; pass --wait to wait for it, or --allow-partial to read only what is committed"),
    }
}

/// Waits until every dataset in `dirs` exists and is complete; `None` waits forever.
/// `on_wait` is told about the first dataset still being waited for, once per dataset.
pub fn wait_complete(dirs: &[PathBuf], timeout: Option<Duration>, mut on_wait: impl FnMut(&Path, Option<&DatasetStatus>)) -> Result<Vec<DatasetStatus>> {
    let start = Instant::now();
    let mut told: Option<PathBuf> = None;
    loop {
        let mut waiting: Option<(PathBuf, Option<DatasetStatus>)> = None;
        let mut done = vec![];
        for d in dirs {
            if !d.join(MANIFEST).is_file() {
                waiting = Some((d.clone(), None));
                break;
            }
            // Manifests and records are replaced by rename, so a read error is real.
            let s = status(d)?;
            if s.complete {
                done.push(s);
            } else {
                waiting = Some((d.clone(), Some(s)));
                break;
            }
        }
        let Some((d, s)) = waiting else { return Ok(done) };
        if told.as_deref() != Some(d.as_path()) {
            on_wait(&d, s.as_ref());
            told = Some(d.clone());
        }
        if let Some(t) = timeout {
            if start.elapsed() >= t {
                return Err(match s {
                    Some(s) => incomplete_error(&s),
                    None => Error::manifest(d.join(MANIFEST), format!("no dataset appeared within {:.0} s of waiting", t.as_secs_f64())),
                });
            }
        }
        std::thread::sleep(POLL);
    }
}

/// For readers outside the stage runner (the trainer, tools): an error naming the
/// missing tasks when `dir` is incomplete, unless `allow_partial` (then a warning).
pub fn require_complete(dir: &Path, allow_partial: bool) -> Result<DatasetStatus> {
    let st = status(dir)?;
    if !st.complete {
        if !allow_partial {
            return Err(incomplete_error(&st));
        }
        tracing::warn!(input = %dir.display(), committed = st.committed, planned = st.planned.unwrap_or(0), "input is incomplete; reading what is committed (--allow-partial)");
    }
    Ok(st)
}
