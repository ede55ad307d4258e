//! Runs a stage over its tasks: slicing for `--task-index/--task-count`, skipping what
//! is committed with the same inputs and settings (and redoing what is not), per-task
//! locks, cleaning what a killed run left, rayon parallelism, and the commit protocol
//! (temporary shards -> rename -> commit record -> manifest rebuild).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use tracing::{info, warn};

use crate::config::RunOptions;
use crate::error::{Error, IoContext, Result};
use crate::manifest::{self, sync_dir, CommitRecord, Manifest, PlanFile, PlannedTask, RunSummary, ShardEntry, TaskLock, COMMITS};
use crate::stage::{Counters, OutputSpec, RunContext, Stage, StageRun, Task, TaskInput, TaskOutput};
use crate::writer::{ShardWriter, WrittenShard};
use crate::Dataset;

/// How often, at most, the manifest is rebuilt while a run is in progress.
const MANIFEST_REFRESH_SECS: u64 = 5;

/// Runs `stage` from `inputs` into `output` and returns the run's summary.
///
/// Input datasets must be complete (every task their writer planned committed) unless
/// `opts.allow_partial`; `opts.wait` waits for them. Each task's commit is keyed on the
/// checksums of what it reads and the stage's settings: a committed task whose key
/// differs is redone, and committed tasks the plan no longer has (their input changed
/// or went away) are removed, so an output never holds rows of two input versions.
/// Tasks run under a per-task lock, so a duplicate run waits for (and then skips) the
/// tasks another process is doing.
pub fn run_stage(stage: &dyn Stage, inputs: &[PathBuf], output: &Path, opts: &RunOptions) -> Result<RunSummary> {
    opts.check()?;
    let started = Instant::now();
    let started_at = now_rfc3339();
    check_inputs_complete(stage.name(), inputs, opts)?;
    let input_kinds = inputs.iter().filter(|p| Dataset::is_dataset(p)).map(|p| Dataset::open(p).map(|d| d.kind())).collect::<Result<Vec<_>>>()?;
    let threads = opts.effective_threads();
    // Everything about this run reaches the stage through this context (never through
    // state kept in the stage object), so one stage object can run again elsewhere.
    let ctx = RunContext { inputs, output, threads, task_index: opts.task_index, task_count: opts.task_count, limits: opts.limits, batch_rows: opts.batch_rows };
    let mut run = stage.start(&ctx).map_err(|e| Error::Stage { stage: stage.name().into(), source: e })?;
    // Planning comes first: a stage reading raw files (ingest) learns its output kind
    // from what it finds there.
    let mut tasks = run.plan(inputs)?;
    let spec = run.outputs(&input_kinds).map_err(|e| Error::Stage { stage: stage.name().into(), source: e })?;
    tasks.sort_by(|a, b| a.id.cmp(&b.id));
    tasks.dedup_by(|a, b| a.id == b.id);
    let settings = settings_digest(stage);
    prepare_output(output, &spec, stage.name(), &settings, &tasks)?;
    // The manifest says from the start that the dataset is being (re)written.
    manifest::rebuild(output, None, &run.properties())?;
    let global = if stage.reads_all_inputs() { Some(global_digest(&tasks)?) } else { None };
    let mine: Vec<Task> = tasks
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % opts.task_count == opts.task_index)
        .map(|(_, t)| t)
        .collect();

    run.prepare(&ctx).map_err(|e| Error::Stage { stage: stage.name().into(), source: e })?;
    // Asked again: a stage learns some of its facts in `prepare` (dedup's fingerprint).
    let properties = run.properties();
    let run: &dyn StageRun = &*run;
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
    let pb = crate::progress::bar(mine.len() as u64, stage.name(), opts.progress);
    let failed = AtomicBool::new(false);
    let totals = Mutex::new(Counters::default());
    let last_refresh = Mutex::new(Instant::now());
    let (ran, skipped, redone) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let results: Vec<Result<()>> = pool.install(|| {
        mine.par_iter()
            .map(|task| {
                if failed.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let r = keyed_task(run, &ctx, task, &spec, opts, &settings, global.as_deref(), &redone);
                match &r {
                    Ok(Some(c)) => {
                        ran.fetch_add(1, Ordering::Relaxed);
                        totals.lock().unwrap().add(c);
                        let mut last = last_refresh.lock().unwrap();
                        if last.elapsed().as_secs() >= MANIFEST_REFRESH_SECS {
                            // Best effort: the final rebuild is the one that counts, and
                            // a failure here (a full disk) must not hide the task's result.
                            if let Err(e) = manifest::rebuild(output, None, &properties) {
                                warn!(error = %e, "could not refresh the manifest (retried at the end of the run)");
                            }
                            *last = Instant::now();
                        }
                    }
                    Ok(None) => {
                        skipped.fetch_add(1, Ordering::Relaxed);
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
    let (ran, skipped, redone) = (ran.into_inner(), skipped.into_inner(), redone.into_inner());
    if skipped > 0 {
        info!(stage = stage.name(), skipped, "tasks already committed with the same inputs and settings, skipped");
    }

    let mut totals = totals.into_inner().unwrap();
    if redone > 0 {
        totals.bump("tasks_redone", redone);
    }
    let seconds = started.elapsed().as_secs_f64();
    let summary = RunSummary {
        stage: stage.name().to_string(),
        started_at,
        task_index: opts.task_index,
        task_count: opts.task_count,
        threads,
        tasks_run: ran,
        tasks_skipped: skipped,
        rows_in: totals.rows_in,
        rows_out: totals.rows_out,
        bytes_in: totals.bytes_in,
        bytes_out: totals.bytes_out,
        seconds,
        rows_per_s: if seconds > 0.0 { totals.rows_in as f64 / seconds } else { 0.0 },
        counts: totals.counts,
    };
    // The manifest reflects every committed task even when one failed, so a rerun
    // (or a reader) sees all finished work. When a task failed, its error is the one
    // reported: a rebuild failing too (say on a full disk) is only logged.
    match (&first_error, manifest::rebuild(output, first_error.is_none().then(|| summary.clone()), &properties)) {
        (_, Ok(_)) => {}
        (None, Err(re)) => return Err(re),
        (Some(_), Err(re)) => warn!(error = %re, "could not rebuild the manifest after the failure"),
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    run.finish(&ctx).map_err(|e| Error::Stage { stage: stage.name().into(), source: e })?;
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

/// Refuses (or waits for) input datasets whose writer has not committed every task.
fn check_inputs_complete(stage: &str, inputs: &[PathBuf], opts: &RunOptions) -> Result<()> {
    // Only datasets (or folders a writer has begun making one in) are checked: raw
    // inputs (ingest's files, crawl's seeds) have no completeness.
    let datasets: Vec<PathBuf> = inputs
        .iter()
        .filter(|p| crate::status::is_pending_dataset(p) || (opts.wait && !p.exists()))
        .cloned()
        .collect();
    if datasets.is_empty() {
        return Ok(());
    }
    if opts.wait && !opts.allow_partial {
        crate::status::wait_complete(&datasets, opts.wait_timeout, |d, s| match s {
            Some(s) => info!(stage, input = %d.display(), committed = s.committed, planned = s.planned.unwrap_or(0), "waiting for the input to complete"),
            None => info!(stage, input = %d.display(), "waiting for the input dataset to appear"),
        })?;
        return Ok(());
    }
    for d in &datasets {
        if !Dataset::is_dataset(d) {
            continue; // Dataset::open names it below
        }
        crate::status::require_complete(d, opts.allow_partial)?;
    }
    Ok(())
}

/// blake3 of the stage's name and settings.
fn settings_digest(stage: &dyn Stage) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"m6-settings-v1\0");
    h.update(stage.name().as_bytes());
    h.update(b"\0");
    h.update(stage.settings().as_bytes());
    h.finalize().to_hex().to_string()
}

/// The checksum of one input: a shard's from its manifest (the reader verifies the
/// file against it), a raw file's from hashing its content.
fn input_checksum(input: &TaskInput) -> Result<String> {
    if input.path.is_dir() {
        return Ok("dir".into()); // a folder a stage lists itself; its files are its business
    }
    if input.kind.is_some() {
        if let Some((_, b3)) = crate::integrity::expected(&input.path)? {
            return Ok(b3);
        }
    }
    crate::integrity::file_blake3_cached(&input.path)
}

/// For stages whose every task depends on every input: a digest of all inputs.
fn global_digest(tasks: &[Task]) -> Result<String> {
    let mut h = blake3::Hasher::new();
    for t in tasks {
        for i in &t.inputs {
            h.update(i.label.as_bytes());
            h.update(b"\0");
            h.update(input_checksum(i)?.as_bytes());
            h.update(b"\n");
        }
    }
    Ok(h.finalize().to_hex().to_string())
}

/// What a task's output is made from: settings, and each input's name and checksum.
fn task_key(task: &Task, settings: &str, global: Option<&str>) -> Result<String> {
    let mut h = blake3::Hasher::new();
    h.update(b"m6-task-key-v1\0");
    h.update(settings.as_bytes());
    h.update(b"\0");
    h.update(global.unwrap_or("").as_bytes());
    for i in &task.inputs {
        h.update(b"\n");
        h.update(i.label.as_bytes());
        h.update(b"\0");
        h.update(input_checksum(i)?.as_bytes());
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Runs one task unless it is committed with the same key: `Ok(None)` when skipped.
#[allow(clippy::too_many_arguments)]
fn keyed_task(
    run: &dyn StageRun,
    ctx: &RunContext,
    task: &Task,
    spec: &OutputSpec,
    opts: &RunOptions,
    settings: &str,
    global: Option<&str>,
    redone: &AtomicU64,
) -> Result<Option<Counters>> {
    let output = ctx.output;
    let named = |e: Error| Error::Task { task: task.short_id().to_string(), input: task.describe(), source: Box::new(e) };
    let mut key = task_key(task, settings, global).map_err(named)?;
    let extra = run.task_extra_key(task).map_err(|e| Error::Task { task: task.short_id().to_string(), input: task.describe(), source: e })?;
    if !extra.is_empty() {
        key = blake3::hash(format!("{key}\0{extra}").as_bytes()).to_hex().to_string();
    }
    if CommitRecord::load(output, &task.id)?.is_some_and(|r| r.key == key) {
        return Ok(None);
    }
    let _lock = TaskLock::acquire(output, &task.id, || {
        info!(task = task.short_id(), input = %task.describe(), "another process is running this task; waiting for it")
    })?;
    // Under the lock: another process may have committed it meanwhile.
    if let Some(old) = CommitRecord::load(output, &task.id)? {
        if old.key == key {
            return Ok(None);
        }
        warn!(task = task.short_id(), input = %task.describe(), "committed from other inputs or settings; redoing it (its old shards are removed)");
        old.remove(output)?;
        redone.fetch_add(1, Ordering::Relaxed);
    }
    clean_task_leftovers(output, spec, task)?;
    run_task(run, ctx, task, spec, opts, &key, settings).map(Some)
}

/// Creates (or checks) the output, records the plan, and removes committed tasks the
/// plan no longer has.
fn prepare_output(output: &Path, spec: &OutputSpec, stage: &str, settings: &str, tasks: &[Task]) -> Result<()> {
    fs::create_dir_all(output.join(COMMITS)).at(output)?;
    let _lock = manifest::DatasetLock::acquire(output)?;
    PlanFile {
        stage: stage.to_string(),
        settings: settings.to_string(),
        tasks: tasks.iter().map(|t| PlannedTask { id: t.id.clone(), inputs: t.inputs.iter().map(|i| i.label.clone()).collect() }).collect(),
    }
    .save(output)?;
    remove_stale(output, tasks)?;
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

/// Removes the commits (records and shards) of tasks that are not in the plan: their
/// input changed (a new checksum is a new task) or is gone, and keeping them would mix
/// old and new rows. Only records the runner wrote (with a key) are considered; commits
/// a stage makes itself (crawl rounds) belong to their task.
fn remove_stale(output: &Path, tasks: &[Task]) -> Result<()> {
    let planned: std::collections::HashSet<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
    let mut removed = vec![];
    for c in CommitRecord::load_all(output)? {
        if c.key.is_empty() || planned.contains(c.task.as_str()) {
            continue;
        }
        let Some(lock) = TaskLock::try_acquire(output, &c.task)? else {
            warn!(task = %c.task, "a task no longer planned is locked by another process; left alone");
            continue;
        };
        c.remove(output)?;
        let _ = fs::remove_file(output.join(manifest::LOCKS).join(format!("{}.lock", c.task)));
        drop(lock);
        removed.push(c.inputs.join(","));
    }
    if !removed.is_empty() {
        warn!(
            tasks = removed.len(),
            inputs = %removed.iter().take(10).cloned().collect::<Vec<_>>().join("; "),
            "removed the output of tasks whose input changed or is no longer given"
        );
    }
    Ok(())
}

/// Removes temporary and uncommitted shards of a task, and a commit record it was
/// writing, left by a run killed mid-task. Called under the task's lock.
fn clean_task_leftovers(output: &Path, spec: &OutputSpec, task: &Task) -> Result<()> {
    clean_leftovers(output, spec, &task.id, task.short_id())
}

/// [`clean_task_leftovers`] for any committing unit: a runner task, or one round of a
/// stage that commits in rounds (`short` is the unit's shard prefix). The caller holds
/// what keeps other writers of the unit away (the task's lock).
pub(crate) fn clean_leftovers(output: &Path, spec: &OutputSpec, id: &str, short: &str) -> Result<()> {
    manifest::remove_stale_temps(&output.join(COMMITS), &[&format!("{id}.json")]);
    let dirs = std::iter::once(output.to_path_buf()).chain(spec.sides.iter().map(|(n, _)| output.join(n)));
    let part = format!("part-{short}-");
    let tmp = format!(".tmp-{short}-");
    for dir in dirs {
        for entry in fs::read_dir(&dir).at(&dir)? {
            let entry = entry.at(&dir)?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with(&part) || name.starts_with(&tmp) {
                fs::remove_file(entry.path()).missing_ok(entry.path())?;
            }
        }
    }
    Ok(())
}

fn run_task(run: &dyn StageRun, ctx: &RunContext, task: &Task, spec: &OutputSpec, opts: &RunOptions, key: &str, settings: &str) -> Result<Counters> {
    let output = ctx.output;
    let t0 = Instant::now();
    let named = |source: crate::error::BoxError| Error::Task { task: task.short_id().to_string(), input: task.describe(), source };
    let mut out = TaskOutput::new(output, spec, task.short_id(), opts.limits);
    if let Err(e) = run.process(ctx, task, &mut out) {
        out.abort();
        return Err(named(e));
    }
    let inputs: Vec<String> = task.inputs.iter().map(|i| i.label.clone()).collect();
    // Errors while finishing and committing (a full disk) name the task too, not only
    // the temporary file they happened on.
    commit_keyed(output, &task.id, inputs, &[], out, t0, key, settings).map_err(|e| named(Box::new(e)))
}

/// Commits what `out` holds as task `task_id`: renames its shards into place and writes
/// the commit record, the moment the task becomes done. Stages that commit in rounds
/// of their own (the crawler) call this with ids derived from their task id, and
/// shard prefixes (the `prefix` given to [`TaskOutput::new`]) that differ from it.
/// `refers_to`: the tasks whose side shards the main shards' rows point into
/// ([`ShardEntry::refers_to`]).
pub fn commit(output: &Path, task_id: &str, inputs: Vec<String>, refers_to: &[String], out: TaskOutput, started: Instant) -> Result<Counters> {
    commit_keyed(output, task_id, inputs, refers_to, out, started, "", "")
}

#[allow(clippy::too_many_arguments)]
fn commit_keyed(output: &Path, task_id: &str, inputs: Vec<String>, refers_to: &[String], out: TaskOutput, started: Instant, key: &str, settings: &str) -> Result<Counters> {
    let (main, sides, mut counters) = out.finish()?;
    counters.bytes_out = main.iter().map(|s| s.bytes).sum();
    let mut outputs = BTreeMap::new();
    outputs.insert(String::new(), commit_shards(output, main, &inputs, refers_to, task_id)?);
    for (name, shards) in sides {
        outputs.insert(name.clone(), commit_shards(&output.join(&name), shards, &inputs, &[], task_id)?);
    }
    CommitRecord {
        task: task_id.to_string(),
        inputs,
        outputs,
        counters: counters.clone(),
        seconds: started.elapsed().as_secs_f64(),
        key: key.to_string(),
        settings: settings.to_string(),
    }
    .save(output)?;
    Ok(counters)
}

fn commit_shards(dir: &Path, shards: Vec<WrittenShard>, inputs: &[String], refers_to: &[String], task: &str) -> Result<Vec<ShardEntry>> {
    let mut entries = vec![];
    for s in shards {
        let dest = dir.join(&s.final_name);
        fs::rename(&s.tmp_path, &dest).at(&dest)?;
        entries.push(ShardEntry { file: s.final_name, rows: s.rows, bytes: s.bytes, blake3: s.blake3, inputs: inputs.to_vec(), task: task.to_string(), refers_to: refers_to.to_vec() });
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
