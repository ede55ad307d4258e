//! Runs a stage over its tasks: slicing for `--task-index/--task-count`, skipping what
//! is committed, cleaning what a killed run left, rayon parallelism, and the commit
//! protocol (temporary shards -> rename -> commit record -> manifest rebuild).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use tracing::info;

use crate::config::RunOptions;
use crate::error::{Error, IoContext, Result};
use crate::manifest::{self, sync_dir, CommitRecord, Manifest, RunSummary, ShardEntry, COMMITS};
use crate::stage::{Counters, OutputSpec, RunContext, Stage, Task, TaskOutput};
use crate::writer::{ShardWriter, WrittenShard};
use crate::Dataset;

/// How often, at most, the manifest is rebuilt while a run is in progress.
const MANIFEST_REFRESH_SECS: u64 = 5;

/// Runs `stage` from `inputs` into `output` and returns the run's summary.
pub fn run_stage(stage: &dyn Stage, inputs: &[PathBuf], output: &Path, opts: &RunOptions) -> Result<RunSummary> {
    opts.check()?;
    let started = Instant::now();
    let started_at = now_rfc3339();
    let input_kinds = inputs.iter().filter(|p| Dataset::is_dataset(p)).map(|p| Dataset::open(p).map(|d| d.kind())).collect::<Result<Vec<_>>>()?;
    // Planning comes first: a stage reading raw files (ingest) learns its output kind
    // from what it finds there.
    let mut tasks = stage.plan(inputs)?;
    let spec = stage.outputs(&input_kinds).map_err(|e| Error::Stage { stage: stage.name().into(), source: e })?;
    prepare_output(output, &spec)?;
    tasks.sort_by(|a, b| a.id.cmp(&b.id));
    tasks.dedup_by(|a, b| a.id == b.id);
    let mine: Vec<Task> = tasks
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % opts.task_count == opts.task_index)
        .map(|(_, t)| t)
        .collect();
    let (done, pending): (Vec<Task>, Vec<Task>) = mine.into_iter().partition(|t| CommitRecord::is_done(output, &t.id));
    if !done.is_empty() {
        info!(stage = stage.name(), skipped = done.len(), "tasks already committed, skipping");
    }
    for t in &pending {
        clean_task_leftovers(output, &spec, t)?;
    }

    let threads = opts.effective_threads();
    let ctx = RunContext { inputs, output, threads, task_index: opts.task_index, task_count: opts.task_count, limits: opts.limits, batch_rows: opts.batch_rows };
    stage.prepare(&ctx).map_err(|e| Error::Stage { stage: stage.name().into(), source: e })?;
    if stage.prepare_only() {
        let seconds = started.elapsed().as_secs_f64();
        info!(stage = stage.name(), seconds = format!("{seconds:.2}"), "phase finished");
        return Ok(RunSummary { stage: stage.name().to_string(), started_at, task_index: opts.task_index, task_count: opts.task_count, threads, seconds, ..Default::default() });
    }

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("m6-task-{i}"))
        .build()
        .map_err(|e| Error::Config(format!("thread pool: {e}")))?;
    let pb = crate::progress::bar(pending.len() as u64, stage.name(), opts.progress);
    let failed = AtomicBool::new(false);
    let totals = Mutex::new(Counters::default());
    let last_refresh = Mutex::new(Instant::now());
    let properties = stage.properties();
    let results: Vec<Result<()>> = pool.install(|| {
        pending
            .par_iter()
            .map(|task| {
                if failed.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let r = run_task(stage, task, output, &spec, opts);
                match &r {
                    Ok(c) => {
                        totals.lock().unwrap().add(c);
                        let mut last = last_refresh.lock().unwrap();
                        if last.elapsed().as_secs() >= MANIFEST_REFRESH_SECS {
                            manifest::rebuild(output, None, &properties)?;
                            *last = Instant::now();
                        }
                    }
                    Err(_) => failed.store(true, Ordering::Relaxed),
                }
                pb.inc(1);
                r.map(|_| ())
            })
            .collect()
    });
    pb.finish_and_clear();
    let first_error = results.into_iter().find_map(|r| r.err());

    let totals = totals.into_inner().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let summary = RunSummary {
        stage: stage.name().to_string(),
        started_at,
        task_index: opts.task_index,
        task_count: opts.task_count,
        threads,
        tasks_run: pending.len() as u64,
        tasks_skipped: done.len() as u64,
        rows_in: totals.rows_in,
        rows_out: totals.rows_out,
        bytes_in: totals.bytes_in,
        bytes_out: totals.bytes_out,
        seconds,
        rows_per_s: if seconds > 0.0 { totals.rows_in as f64 / seconds } else { 0.0 },
        counts: totals.counts,
    };
    // The manifest reflects every committed task even when one failed, so a rerun
    // (or a reader) sees all finished work.
    manifest::rebuild(output, first_error.is_none().then(|| summary.clone()), &properties)?;
    if let Some(e) = first_error {
        return Err(e);
    }
    stage.finish(&ctx).map_err(|e| Error::Stage { stage: stage.name().into(), source: e })?;
    info!(
        stage = stage.name(),
        tasks = summary.tasks_run,
        rows_in = summary.rows_in,
        rows_out = summary.rows_out,
        seconds = format!("{:.2}", summary.seconds),
        "stage finished"
    );
    Ok(summary)
}

fn prepare_output(output: &Path, spec: &OutputSpec) -> Result<()> {
    fs::create_dir_all(output.join(COMMITS)).at(output)?;
    let _lock = manifest::DatasetLock::acquire(output)?;
    let mut m = if Manifest::exists(output) {
        let m = Manifest::load(output)?;
        if m.kind != spec.main {
            return Err(Error::manifest(
                Manifest::path(output),
                format!("output already holds a {} dataset; this stage writes {}", m.kind, spec.main),
            ));
        }
        m
    } else {
        Manifest::new(spec.main)
    };
    for (name, kind) in &spec.sides {
        let dir = output.join(name);
        fs::create_dir_all(&dir).at(&dir)?;
        if !Manifest::exists(&dir) {
            Manifest::new(*kind).save(&dir)?;
        }
        m.sides.insert(name.clone(), *kind);
    }
    m.save(output)
}

/// Removes temporary and uncommitted shards of a task, left by a run killed mid-task.
fn clean_task_leftovers(output: &Path, spec: &OutputSpec, task: &Task) -> Result<()> {
    let dirs = std::iter::once(output.to_path_buf()).chain(spec.sides.iter().map(|(n, _)| output.join(n)));
    let part = format!("part-{}-", task.short_id());
    let tmp = format!(".tmp-{}-", task.short_id());
    for dir in dirs {
        for entry in fs::read_dir(&dir).at(&dir)? {
            let entry = entry.at(&dir)?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with(&part) || name.starts_with(&tmp) {
                fs::remove_file(entry.path()).at(entry.path())?;
            }
        }
    }
    Ok(())
}

fn run_task(stage: &dyn Stage, task: &Task, output: &Path, spec: &OutputSpec, opts: &RunOptions) -> Result<Counters> {
    let t0 = Instant::now();
    let mut out = TaskOutput::new(output, spec, task.short_id(), opts.limits);
    if let Err(e) = stage.process(task, &mut out) {
        out.abort();
        return Err(Error::Task { task: task.short_id().to_string(), input: task.describe(), source: e });
    }
    let inputs: Vec<String> = task.inputs.iter().map(|i| i.label.clone()).collect();
    commit(output, &task.id, inputs, out, t0)
}

/// Commits what `out` holds as task `task_id`: renames its shards into place and writes
/// the commit record, the moment the task becomes done. Stages that commit in rounds
/// of their own (the crawler) call this with ids derived from their task id, and
/// shard prefixes (the `prefix` given to [`TaskOutput::new`]) that differ from it.
pub fn commit(output: &Path, task_id: &str, inputs: Vec<String>, out: TaskOutput, started: Instant) -> Result<Counters> {
    let (main, sides, mut counters) = out.finish()?;
    counters.bytes_out = main.iter().map(|s| s.bytes).sum();
    let mut outputs = BTreeMap::new();
    outputs.insert(String::new(), commit_shards(output, main, &inputs, task_id)?);
    for (name, shards) in sides {
        outputs.insert(name.clone(), commit_shards(&output.join(&name), shards, &inputs, task_id)?);
    }
    CommitRecord { task: task_id.to_string(), inputs, outputs, counters: counters.clone(), seconds: started.elapsed().as_secs_f64() }.save(output)?;
    Ok(counters)
}

fn commit_shards(dir: &Path, shards: Vec<WrittenShard>, inputs: &[String], task: &str) -> Result<Vec<ShardEntry>> {
    let mut entries = vec![];
    for s in shards {
        let dest = dir.join(&s.final_name);
        fs::rename(&s.tmp_path, &dest).at(&dest)?;
        entries.push(ShardEntry { file: s.final_name, rows: s.rows, bytes: s.bytes, blake3: s.blake3, inputs: inputs.to_vec(), task: task.to_string() });
    }
    if !entries.is_empty() {
        sync_dir(dir);
    }
    Ok(entries)
}

/// Shard names are derived from task ids; exposed for tools that list a task's files.
pub fn shard_name(task: &Task, seq: u32) -> String {
    ShardWriter::final_name(task.short_id(), seq)
}

fn now_rfc3339() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    // Civil-from-days (Howard Hinnant's algorithm), to avoid a date crate for one timestamp.
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
