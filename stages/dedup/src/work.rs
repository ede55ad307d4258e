//! Dedup's global work as a chain of phases, each sliced over the `--task-count`
//! processes of a job and resumable after kill -9 (the shape of datatrove's MinHash
//! steps under Slurm, with every intermediate on the shared file system):
//!
//! 1. **sign** (unit = one input shard, or one shard of an `--against` dataset's
//!    signatures; process `I` takes units `u % N == I`): each row becomes a fixed-size
//!    body in `sig/UUUUUU.bin` (after a 16-byte header: size, score, id hash), its id in
//!    `sig/UUUUUU.ids`, and its band keys in sorted runs `sig/UUUUUU-RRRR.run` of at most
//!    `work_mb` MiB each; `sig/UUUUUU.done` marks the unit signed.
//! 2. **pairs** (unit = one of `P` key ranges, `P` a power of two derived from the total
//!    number of band keys; process `I` takes `p % N == I`): the range's records are read
//!    from every run (each run's header indexes it by the key's top 12 bits), sorted,
//!    grouped by key, and the members of each bucket verified; every verified pair that
//!    joins two groups is written to `pairs/PPPP-of-QQQQ.bin` (the file is its marker).
//! 3. **clusters** (one process, index 0): pairs are merged into clusters by union-find
//!    over the rows that appear in pairs only, each cluster's row to keep is chosen by
//!    the keep rule (rows of `--against` datasets always win, and are never dropped), and
//!    one drop list per input shard is written to `drop/`; `clusters.json` marks it done.
//! 4. **write** (the runner's tasks, sliced as every stage is): each shard's kept rows,
//!    audit rows and the signatures of its kept rows.
//!
//! Markers are per unit, not per process, so a rerun may use another task count.
//! Every process of a job runs 1–3 in turn, waiting on the shared file system for the
//! units of the others; `--phase` runs one phase and returns (or fails naming what the
//! phase before it has not finished).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use m6_pipeline::error::IoContext;
use m6_pipeline::work::{Staging, WorkDir};
use m6_pipeline::{plan_shards, BoxError, CommitRecord, Dataset, RunContext, Task};
use m6_schemas::dedup_work::{self as dw, BandRecord, ClustersDone, RowHeader, UnitDone, INDEX, RUN_HEADER};
pub use m6_schemas::dedup_work::DropEntry;
use m6_schemas::{column, Bin, Kind, Str, U32};
use rayon::prelude::*;
use tracing::{info, warn};

use crate::image_verify;
use crate::sign::{band_keys, body_len, explain, id_hash, sign_columns, signing_settings, verify, Signer, EXACT};
use crate::{DedupConfig, DedupError, KeepRule, Phase, SIGNATURES};

pub const WORK: &str = dw::FOLDER;
/// Manifest properties dedup records on its output.
pub const PROP_FINGERPRINT: &str = "dedup.fingerprint";
pub const PROP_SIGNING: &str = "dedup.signing";

/// Per-row header before the body in `sig/*.bin` (schemas' [`RowHeader`]).
pub const HEADER: usize = RowHeader::LEN;
/// One band record on disk (schemas' [`BandRecord`]).
pub const REC: usize = BandRecord::LEN;
/// The same record in memory (padded).
const REC_MEM: usize = std::mem::size_of::<Rec>();
/// Pairs units a mid-sized input is cut into at least: enough for many processes × threads.
const MIN_UNITS: usize = 64;
/// Band records a pairs unit holds at least (below [`MIN_UNITS`] units): each unit
/// opens every run and publishes a pairs file (create, fsync, rename, folder sync), so
/// 64 units on 496 photos (38,000 records) spent a quarter of the stage's CPU on that.
const UNIT_MIN_RECORDS: u64 = 1 << 15;

fn werr(path: &Path, msg: impl Into<String>) -> BoxError {
    Box::new(DedupError::Work { path: path.to_path_buf(), msg: msg.into() })
}

/// Writes a work marker or pairs file atomically (temporary name, fsync, rename,
/// directory sync): the other processes of a job take these files as "this unit is
/// done", so one must not outlive a power cut its data did not.
fn write_atomic(plan: &Plan, path: &Path, bytes: &[u8]) -> Result<(), BoxError> {
    Ok(plan.work.write_atomic(path, bytes)?)
}

/// What every phase agrees on: the units, in one order every process derives alike.
pub struct Plan {
    pub work: WorkDir,
    pub output: PathBuf,
    pub kind: Kind,
    /// The input shards (manifest order): units `0..new.len()`.
    pub new: Vec<Task>,
    /// Signature shards of the `--against` datasets: units after the new ones.
    pub old: Vec<PathBuf>,
    pub fingerprint: String,
}

impl Plan {
    pub fn units(&self) -> usize {
        self.new.len() + self.old.len()
    }
    fn bin(&self, u: usize) -> PathBuf {
        self.work.path(dw::bin_file(u))
    }
    fn ids(&self, u: usize) -> PathBuf {
        self.work.path(dw::ids_file(u))
    }
    fn run(&self, u: usize, r: u32) -> PathBuf {
        self.work.path(dw::run_file(u, r))
    }
    fn done(&self, u: usize) -> PathBuf {
        self.work.path(dw::done_file(u))
    }
    fn pairs(&self, p: usize, of: usize) -> PathBuf {
        self.work.path(dw::pairs_file(p, of))
    }
    pub fn drop_list(&self, u: usize) -> PathBuf {
        self.work.path(dw::drop_file(u))
    }
    fn clusters(&self) -> PathBuf {
        self.work.path(dw::CLUSTERS)
    }
    /// Bytes per row in `sig/*.bin`.
    pub fn row_len(&self, cfg: &DedupConfig) -> usize {
        HEADER + body_len(cfg, self.kind)
    }
    pub fn all_committed(&self) -> bool {
        self.new.iter().all(|t| CommitRecord::is_done(&self.output, &t.id))
    }
}

/// Checks an `--against` dataset and returns its signature shards.
fn against_shards(cfg: &DedupConfig, kind: Kind, dir: &Path, output: &Path) -> Result<Vec<(PathBuf, String)>, BoxError> {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    if canon(dir) == canon(output) {
        return Err(werr(dir, "--against names the output itself; an earlier dedup output is never written to"));
    }
    let ds = Dataset::open(dir)?;
    if ds.kind() != kind {
        return Err(werr(dir, format!("--against dataset holds {} rows, the input holds {kind}", ds.kind())));
    }
    let m = ds.manifest();
    let Some(theirs) = m.properties.get(PROP_SIGNING) else {
        return Err(werr(&dir.join("manifest.json"), "not the output of a dedup run that kept signatures (no `dedup.signing` property)"));
    };
    let ours = signing_settings(cfg, kind);
    if theirs != &ours {
        return Err(werr(&dir.join("manifest.json"), format!("was signed with {theirs}; this run signs with {ours}: use the same settings")));
    }
    let side = ds.side(SIGNATURES)?;
    let complete = m.shards.iter().map(|s| &s.task).collect::<std::collections::BTreeSet<_>>();
    // Every task that wrote rows also wrote their signatures (or kept nothing).
    let signed = side.shards().iter().map(|s| &s.task).collect::<std::collections::BTreeSet<_>>();
    if let Some(t) = complete.iter().find(|t| !signed.contains(*t)) {
        return Err(werr(&side.dir().join("manifest.json"), format!("task {t} wrote rows but no signatures: the dataset is incomplete")));
    }
    Ok(side.shards().iter().map(|s| (side.shard_path(s), format!("{}:{}", s.file, s.blake3))).collect())
}

pub fn plan(cfg: &DedupConfig, kind: Kind, ctx: &RunContext) -> Result<Plan, BoxError> {
    let new = plan_shards(ctx.inputs, &[])?;
    let mut old = vec![];
    let mut h = blake3::Hasher::new();
    // v4: image and pair bodies hold window hashes and a verification thumbnail. The
    // signing settings (with the body format versions) are hashed too, so a later
    // format change alone already invalidates old work files.
    h.update(b"m6-dedup-v4");
    h.update(signing_settings(cfg, kind).to_string().as_bytes());
    // Pairs files hold verdicts: a resumed run must not mix two verifiers' pairs.
    h.update(crate::image_verify::VERIFY_VERSION.as_bytes());
    h.update(KEEP_VERSION.as_bytes());
    // Settings that change results or the sign phase's files; `keep_work`, `phase`
    // and `pairs_units` do not (pairs files name their cut: `P-of-Q.bin`).
    let mut c = cfg.clone();
    c.keep_work = false;
    c.phase = None;
    c.pairs_units = 0;
    c.against = vec![];
    h.update(serde_json::to_string(&c).unwrap_or_default().as_bytes());
    h.update(kind.name().as_bytes());
    for t in &new {
        h.update(t.id.as_bytes());
    }
    for dir in &cfg.against {
        for (p, key) in against_shards(cfg, kind, dir, ctx.output)? {
            // By content (name and checksum), not path: OLD may be named another way on a rerun.
            h.update(key.as_bytes());
            old.push(p);
        }
    }
    Ok(Plan { work: ctx.work_dir(dw::FOLDER), output: ctx.output.to_path_buf(), kind, new, old, fingerprint: h.finalize().to_hex().to_string() })
}

/// Ties the work folder to this plan; refuses an output committed under another plan.
fn claim(plan: &Plan) -> Result<(), BoxError> {
    plan.work.ensure_dir(dw::SIG)?;
    // Short lock (the pipeline's folder lock on `_work/.lock`): processes starting
    // together must not both wipe stale work.
    let _lock = plan.work.lock()?;
    let fp_path = plan.work.path(dw::FINGERPRINT);
    let recorded = plan.work.read(&fp_path).ok().flatten().map(|b| String::from_utf8_lossy(&b).trim().to_string());
    if let Some(old) = recorded {
        if old != plan.fingerprint {
            if committed_any(&plan.output) {
                return Err(werr(&fp_path, "this output was deduplicated with another config or other inputs; use a fresh --output"));
            }
            info!("dedup inputs or config changed; discarding old work files");
            for d in [dw::SIG, dw::PAIRS, dw::DROP] {
                plan.work.remove_dir(d)?;
            }
            plan.work.remove_file(&plan.clusters())?;
            plan.work.ensure_dir(dw::SIG)?;
        } else {
            return Ok(());
        }
    }
    write_atomic(plan, &fp_path, plan.fingerprint.as_bytes())
}

/// Whether any task of the output has committed. An unreadable commit record counts
/// as committed: the safe answer when the question is whether old work may be wiped.
fn committed_any(output: &Path) -> bool {
    CommitRecord::load_all(output).map_or(true, |c| !c.is_empty())
}

/// What `prepare()` leaves for the write phase.
pub struct Ready {
    /// Every task is already committed: nothing to do (the work folder may be gone).
    pub nothing_to_do: bool,
}

/// Runs the phases this invocation is for. `phase: None` runs sign, pairs and clusters
/// (waiting for the other processes' units) and leaves the write phase to the runner.
pub fn prepare(cfg: &DedupConfig, plan: &Plan, ctx: &RunContext) -> Result<Ready, BoxError> {
    // A finished output: reruns (and late siblings) have nothing to do, and the work
    // folder may already be gone. Another config or input is refused, though.
    if let Some(fp) = Dataset::open(ctx.output).ok().and_then(|d| d.manifest().properties.get(PROP_FINGERPRINT).and_then(|v| v.as_str().map(String::from))) {
        if fp != plan.fingerprint && committed_any(ctx.output) {
            return Err(werr(&ctx.output.join("manifest.json"), "this output was deduplicated with another config or other inputs; use a fresh --output"));
        }
    }
    if plan.all_committed() {
        info!("every dedup task is committed; nothing to do");
        return Ok(Ready { nothing_to_do: true });
    }
    claim(plan)?;
    let (me, n) = (ctx.task_index, ctx.task_count.max(1));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(ctx.threads.max(1)).build()?;
    let wait = cfg.phase.is_none();
    let t0 = Instant::now();

    if matches!(cfg.phase, None | Some(Phase::Sign)) {
        sign_phase(cfg, plan, ctx, &pool, me, n)?;
        info!(secs = format!("{:.2}", t0.elapsed().as_secs_f64()), "dedup: sign phase done here");
        if cfg.phase == Some(Phase::Sign) {
            return Ok(Ready { nothing_to_do: false });
        }
    }
    let signed = until(wait, plan, "sign", || signed_units(cfg, plan, n))?;
    let Some(signed) = signed else { return Ok(Ready { nothing_to_do: true }) };
    // Work files are not fsynced (see write_atomic): a body file cut short is refused here.
    for u in 0..plan.units() {
        let want = signed.rows(u) * plan.row_len(cfg) as u64;
        let got = plan.work.len(&plan.bin(u))?;
        if got != want {
            return Err(werr(&plan.bin(u), format!("{got} bytes where {want} were written; delete the unit's .done marker and rerun `--phase sign`")));
        }
    }

    if matches!(cfg.phase, None | Some(Phase::Pairs)) {
        let t1 = Instant::now();
        pairs_phase(cfg, plan, &signed, &pool, me, n)?;
        info!(units = signed.units, secs = format!("{:.2}", t1.elapsed().as_secs_f64()), "dedup: pairs phase done here");
        if cfg.phase == Some(Phase::Pairs) {
            return Ok(Ready { nothing_to_do: false });
        }
    }
    if matches!(cfg.phase, None | Some(Phase::Clusters)) {
        if me == 0 && !plan.work.exists(&plan.clusters()) {
            let pairs = until(wait, plan, "pairs", || pair_files(plan, &signed, n))?;
            let Some(pairs) = pairs else { return Ok(Ready { nothing_to_do: true }) };
            let t2 = Instant::now();
            clusters_phase(cfg, plan, &signed, &pairs)?;
            info!(secs = format!("{:.2}", t2.elapsed().as_secs_f64()), "dedup: clusters phase done");
        } else if me != 0 && cfg.phase == Some(Phase::Clusters) {
            info!("the clusters phase runs in task 0 only; nothing to do for task {me}");
        }
        if cfg.phase == Some(Phase::Clusters) {
            return Ok(Ready { nothing_to_do: false });
        }
    }
    let done = until(wait, plan, "clusters", || {
        Ok(if plan.work.exists(&plan.clusters()) { Ok(()) } else { Err("task 0 has not finished clustering".to_string()) })
    })?;
    Ok(Ready { nothing_to_do: done.is_none() })
}

/// Waits (or, for a single `--phase`, checks once) until `check` says a phase is done.
/// Returns `None` when every task got committed meanwhile (nothing left to do).
fn until<T>(wait: bool, plan: &Plan, phase: &str, mut check: impl FnMut() -> Result<Result<T, String>, BoxError>) -> Result<Option<T>, BoxError> {
    let start = Instant::now();
    let mut last_log = Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        match check()? {
            Ok(v) => return Ok(Some(v)),
            Err(missing) if !wait => {
                return Err(werr(plan.work.root(), format!("the {phase} phase has not finished ({missing}); run `--phase {phase}` for every task index first")));
            }
            Err(missing) => {
                if plan.all_committed() {
                    return Ok(None);
                }
                if last_log.elapsed() >= Duration::from_secs(30) {
                    info!(waited_s = start.elapsed().as_secs(), "dedup: waiting for the {phase} phase: {missing}");
                    last_log = Instant::now();
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

fn list_missing(missing: &[usize], n: usize, what: &str) -> String {
    let shown: Vec<String> = missing.iter().take(10).map(|u| format!("{u} (task index {})", u % n.max(1))).collect();
    format!("{} {what} missing: {}{}", missing.len(), shown.join(", "), if missing.len() > 10 { ", …" } else { "" })
}

// ---------------------------------------------------------------- sign

fn sign_phase(cfg: &DedupConfig, plan: &Plan, ctx: &RunContext, pool: &rayon::ThreadPool, me: usize, n: usize) -> Result<(), BoxError> {
    let mine: Vec<usize> = (0..plan.units()).filter(|u| u % n == me && !plan.work.exists(&plan.done(*u))).collect();
    if mine.is_empty() {
        return Ok(());
    }
    let run_recs = ((cfg.work_mb.max(1) << 20) / REC_MEM).max(1024);
    pool.install(|| mine.par_iter().try_for_each(|&u| sign_unit(cfg, plan, u, ctx.batch_rows, run_recs)))
}

/// Band records being collected into one sorted run.
struct Runs {
    unit: usize,
    staging: Staging,
    buf: Vec<Rec>,
    cap: usize,
    runs: u32,
    records: u64,
}

impl Runs {
    fn push(&mut self, r: Rec) -> Result<(), BoxError> {
        self.buf.push(r);
        if self.buf.len() >= self.cap {
            self.flush()?;
        }
        Ok(())
    }

    /// Sorts the buffer by key and writes it as a run: an index of where each top-12-bit
    /// key prefix starts, then the records.
    fn flush(&mut self) -> Result<(), BoxError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.buf.sort_unstable_by_key(|r| r.key);
        let (mut w, path) = self.staging.create(&run_name(self.unit, self.runs))?;
        let mut i = 0usize;
        for prefix in 0..=INDEX {
            while i < self.buf.len() && self.buf[i].prefix() < prefix {
                i += 1;
            }
            w.write_all(&(i as u64).to_le_bytes()).at(&path)?;
        }
        for r in &self.buf {
            w.write_all(&r.encode()).at(&path)?;
        }
        Staging::finish(w, &path)?;
        self.records += self.buf.len() as u64;
        self.runs += 1;
        self.buf.clear();
        Ok(())
    }
}

/// Signs one unit into a private temporary folder, moves the files into `sig/` and
/// writes the unit's marker last, so a killed unit is simply signed again.
fn sign_unit(cfg: &DedupConfig, plan: &Plan, u: usize, batch_rows: usize, run_recs: usize) -> Result<(), BoxError> {
    let staging = plan.work.staging(format!("{}/.tmp-{u:06}", dw::SIG))?;
    let (mut bin, bin_tmp) = staging.create(BIN)?;
    let (mut ids, ids_tmp) = staging.create(IDS)?;
    let mut runs = Runs { unit: u, staging, buf: Vec::with_capacity(run_recs.min(1 << 16)), cap: run_recs, runs: 0, records: 0 };
    let mut row = 0u64;
    let (mut scratch, mut keys) = (vec![], vec![]);
    let body_n = body_len(cfg, plan.kind);
    let mut add = |id: &str, size: u32, score: f32, body: &[u8], runs: &mut Runs| -> Result<(), BoxError> {
        let h = id_hash(id);
        bin.write_all(&RowHeader { size, score, id_hash: h }.encode()).at(&bin_tmp)?;
        bin.write_all(body).at(&bin_tmp)?;
        ids.write_all(&(id.len() as u32).to_le_bytes()).at(&ids_tmp)?;
        ids.write_all(id.as_bytes()).at(&ids_tmp)?;
        band_keys(cfg, plan.kind, body, h, &mut scratch, &mut keys);
        let row32 = u32::try_from(row).map_err(|_| werr(&bin_tmp, "a shard of more than 2^32 rows"))?;
        for k in &keys {
            runs.push(Rec { key: k.key, order: k.order, tie: h, unit: u as u32, row: row32, flag: k.flag })?;
        }
        row += 1;
        Ok(())
    };
    if u < plan.new.len() {
        let mut signer = Signer::new(cfg, plan.kind);
        for batch in plan.new[u].batches_columns(batch_rows, sign_columns(cfg, plan.kind)) {
            let (batch_ids, signed) = signer.sign_batch(&batch?)?;
            for (id, s) in batch_ids.iter().zip(&signed) {
                add(id, s.size, s.score, &s.body, &mut runs)?;
            }
        }
    } else {
        // An earlier run's signatures: the bodies are used as they are.
        let path = &plan.old[u - plan.new.len()];
        let mut r = 0usize;
        for batch in m6_pipeline::read_parquet(path, Some(Kind::Signature), batch_rows)? {
            let batch = batch?;
            let (id, size, sig) = (column::<Str>(&batch, m6_schemas::signature::ID)?, column::<U32>(&batch, m6_schemas::signature::SIZE)?, column::<Bin>(&batch, m6_schemas::signature::SIGNATURE)?);
            for i in 0..batch.num_rows() {
                if sig.value(i).len() != body_n {
                    return Err(werr(path, format!("row {r}: signature of {} bytes, expected {body_n}", sig.value(i).len())));
                }
                add(id.value(i), size.value(i), f32::NEG_INFINITY, sig.value(i), &mut runs)?;
                r += 1;
            }
        }
    }
    runs.flush()?;
    Staging::finish(bin, &bin_tmp)?;
    Staging::finish(ids, &ids_tmp)?;
    // Every file fsynced and in place before the marker: a marker that survives a
    // power cut always vouches for complete files.
    let names: Vec<String> = (0..runs.runs).map(|r| run_name(u, r)).collect();
    let mut moves: Vec<(&str, PathBuf)> = names.iter().enumerate().map(|(r, n)| (n.as_str(), plan.run(u, r as u32))).collect();
    moves.push((BIN, plan.bin(u)));
    moves.push((IDS, plan.ids(u)));
    runs.staging.publish(&moves)?;
    let done = UnitDone { rows: row, runs: runs.runs, records: runs.records };
    write_atomic(plan, &plan.done(u), &serde_json::to_vec(&done)?)
}

/// Names of a unit's files inside its staging folder.
const BIN: &str = "unit.bin";
const IDS: &str = "unit.ids";
fn run_name(u: usize, r: u32) -> String {
    format!("{u:06}-{r:04}.run")
}

/// What the sign phase produced, once every unit is signed.
pub struct SignedUnits {
    runs: Vec<u32>,
    /// Global row number of each unit's first row.
    offsets: Vec<u64>,
    /// Rows of the input (units of `--against` data come after them).
    new_total: u64,
    total: u64,
    /// Pairs units (a power of two).
    units: usize,
}

fn signed_units(cfg: &DedupConfig, plan: &Plan, n: usize) -> Result<Result<SignedUnits, String>, BoxError> {
    let mut missing = vec![];
    let (mut rows, mut runs, mut records) = (vec![], vec![], 0u64);
    for u in 0..plan.units() {
        let p = plan.done(u);
        match plan.work.read(&p)? {
            Some(b) => {
                let d: UnitDone = serde_json::from_slice(&b).map_err(|e| werr(&p, format!("unreadable marker: {e}")))?;
                rows.push(d.rows);
                runs.push(d.runs);
                records += d.records;
            }
            None => missing.push(u),
        }
    }
    if !missing.is_empty() {
        return Ok(Err(list_missing(&missing, n, "shards not signed yet; unit")));
    }
    let mut offsets = Vec::with_capacity(rows.len());
    let mut total = 0u64;
    for r in &rows {
        offsets.push(total);
        total += r;
    }
    if total >= u32::MAX as u64 {
        return Err(werr(plan.work.root(), format!("{total} rows: one dedup run handles at most 2^32-1; split the input")));
    }
    let new_total = offsets.get(plan.new.len()).copied().unwrap_or(total);
    Ok(Ok(SignedUnits { runs, offsets, new_total, total, units: pairs_units(cfg, records) }))
}

impl SignedUnits {
    fn rows(&self, u: usize) -> u64 {
        self.offsets.get(u + 1).copied().unwrap_or(self.total) - self.offsets[u]
    }
}

/// Pairs units for `records` band records: each unit's records, sorted in RAM, stay
/// near 32 MiB, so a thread's memory is flat whatever the corpus size; `pairs_units`
/// in the config overrides it.
fn pairs_units(cfg: &DedupConfig, records: u64) -> usize {
    if cfg.pairs_units > 0 {
        return cfg.pairs_units;
    }
    let want = (records * REC_MEM as u64).div_ceil(32 << 20) as usize;
    let floor = (records / UNIT_MIN_RECORDS).max(1) as usize;
    want.next_power_of_two().max(floor.next_power_of_two().min(MIN_UNITS)).min(INDEX)
}

// ---------------------------------------------------------------- pairs

/// A band record (schemas' [`BandRecord`]); held in memory by the million, sorted by key.
type Rec = BandRecord;

/// Random access to rows of `sig/*.bin` by global row number; opens files lazily.
struct Bodies<'a> {
    plan: &'a Plan,
    signed: &'a SignedUnits,
    len: usize,
    open: HashMap<usize, File>,
}

impl<'a> Bodies<'a> {
    fn new(cfg: &DedupConfig, plan: &'a Plan, signed: &'a SignedUnits) -> Self {
        Bodies { plan, signed, len: plan.row_len(cfg), open: HashMap::new() }
    }

    fn locate(&self, g: u32) -> (usize, u64) {
        let u = self.signed.offsets.partition_point(|&o| o <= g as u64) - 1;
        (u, g as u64 - self.signed.offsets[u])
    }

    /// Header and body of global row `g`.
    fn read(&mut self, g: u32, buf: &mut Vec<u8>) -> Result<(), BoxError> {
        buf.resize(self.len, 0);
        self.read_into(g, buf)
    }

    /// [`Bodies::read`] into a slice of exactly one row's length.
    fn read_into(&mut self, g: u32, buf: &mut [u8]) -> Result<(), BoxError> {
        let (u, row) = self.locate(g);
        if !self.open.contains_key(&u) {
            if self.open.len() >= 256 {
                self.open.clear();
            }
            let p = self.plan.bin(u);
            self.open.insert(u, self.plan.work.open(&p)?);
        }
        self.open[&u].read_exact_at(buf, row * self.len as u64).map_err(|e| werr(&self.plan.bin(u), format!("row {row}: {e}")))?;
        Ok(())
    }
}

/// Test hook: when non-zero, the rows a pairs unit's [`BodyCache`] holds (instead of
/// `work_mb` MiB of them), and the rows whose window hashes it holds, so a test can
/// force evictions and check that the output does not depend on them.
static BODY_CACHE_ROWS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[doc(hidden)]
pub fn set_body_cache_rows_for_tests(rows: usize) {
    BODY_CACHE_ROWS.store(rows, std::sync::atomic::Ordering::Relaxed);
}

/// The bodies a pairs worker has read, by global row. Every window hash of a row puts
/// it in a bucket (7 windows × `hash_blocks` keys per image), so without it a row was
/// read once per bucket it meets others in: 34,000 preads for 416 images (now 416).
/// Bounded: at most `cap` rows (`work_mb` MiB per thread),
/// and when full it is emptied (records are in key order, so which rows come back
/// is random; a smarter eviction would not find more hits). Memory per thread stays
/// flat whatever the corpus size; evictions only cost reads, never change a verdict.
struct BodyCache {
    slot: HashMap<u32, usize, std::hash::BuildHasherDefault<RowHasher>>,
    data: Vec<u8>,
    len: usize,
    cap: usize,
    /// Images: each row's window hashes (`None`: undecoded), kept apart from the
    /// bodies. Every member of every bucket is looked up for them (77 buckets per
    /// image) and only the pairs they pass need a body, so hash lookups through the
    /// body cache evicted the bodies verification wanted. At 30,000 benchmark mosaics
    /// (`bench/scale_run.py make_mosaics`, seed 11, one thread) the pairs phase made
    /// 620,522 reads instead of 1,353,828 and took about 6% less CPU (10.6-10.9 ->
    /// 9.9-10.2 s), with the same output. Held to [`HASH_CACHE_ROWS`], emptied when
    /// full like the bodies.
    hashes: HashMap<u32, Option<[u64; crate::image_hash::WINDOWS]>, std::hash::BuildHasherDefault<RowHasher>>,
    hash_cap: usize,
    /// A row's prefix up to its thumbnail, read for its hashes alone.
    scratch: Vec<u8>,
}

/// Rows a pairs worker's window-hash cache holds: about 16 MiB (80 bytes each with the
/// map's overhead) for 200,000 images.
const HASH_CACHE_ROWS: usize = (16 << 20) / 80;

impl BodyCache {
    fn new(len: usize, cap: usize, hash_cap: usize) -> Self {
        BodyCache { slot: HashMap::default(), data: vec![], len, cap: cap.max(2), hashes: HashMap::default(), hash_cap: hash_cap.max(1), scratch: vec![] }
    }

    /// The window hashes of image row `g` (`None` when it did not decode): from the
    /// hash cache, from its body when that is held, else from a read of the row's
    /// prefix, which leaves the body cache as it is.
    fn hashes(&mut self, bodies: &mut Bodies, g: u32) -> Result<Option<[u64; crate::image_hash::WINDOWS]>, BoxError> {
        if let Some(h) = self.hashes.get(&g) {
            return Ok(*h);
        }
        let of = |body: &[u8]| image_verify::decoded(body).then(|| image_verify::hashes(body));
        let h = match self.slot.get(&g) {
            Some(&at) => of(&self.data[at + HEADER..at + self.len]),
            None => {
                self.scratch.resize((HEADER + image_verify::OFF_THUMB).min(self.len), 0);
                bodies.read_into(g, &mut self.scratch)?;
                of(&self.scratch[HEADER..])
            }
        };
        if self.hashes.len() >= self.hash_cap {
            self.hashes.clear();
        }
        self.hashes.insert(g, h);
        Ok(h)
    }

    /// The bodies (with their headers) of rows `a` and `b`, read on a miss.
    fn pair(&mut self, bodies: &mut Bodies, a: u32, b: u32) -> Result<(&[u8], &[u8]), BoxError> {
        let missing = (!self.slot.contains_key(&a)) as usize + (a != b && !self.slot.contains_key(&b)) as usize;
        if self.slot.len() + missing > self.cap {
            self.slot.clear();
            self.data.clear();
        }
        for g in [a, b] {
            if !self.slot.contains_key(&g) {
                let at = self.data.len();
                self.data.resize(at + self.len, 0);
                bodies.read_into(g, &mut self.data[at..])?;
                self.slot.insert(g, at);
            }
        }
        let (ia, ib) = (self.slot[&a], self.slot[&b]);
        Ok((&self.data[ia..ia + self.len], &self.data[ib..ib + self.len]))
    }
}

/// Hasher for maps keyed by global row numbers (union-find, body cache): a multiply
/// and a fold are enough for u32 keys, and SipHash showed up in profiles.
#[derive(Default)]
struct RowHasher(u64);

impl std::hash::Hasher for RowHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64);
    }
    fn write_u64(&mut self, v: u64) {
        let x = (self.0 ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = x ^ (x >> 29);
    }
}

/// A small union-find over the rows that appear in pairs (a map, not an array over
/// every row: its size follows the duplicates, not the corpus).
#[derive(Default)]
struct SparseUf {
    parent: HashMap<u32, u32, std::hash::BuildHasherDefault<RowHasher>>,
}

impl SparseUf {
    fn find(&mut self, x: u32) -> u32 {
        let mut r = x;
        while let Some(&p) = self.parent.get(&r) {
            if p == r {
                break;
            }
            r = p;
        }
        // Path compression.
        let mut y = x;
        while y != r {
            let p = self.parent[&y];
            self.parent.insert(y, r);
            y = p;
        }
        r
    }

    fn union(&mut self, a: u32, b: u32) -> bool {
        self.parent.entry(a).or_insert(a);
        self.parent.entry(b).or_insert(b);
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return false;
        }
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent.insert(hi, lo);
        true
    }
}

fn pairs_phase(cfg: &DedupConfig, plan: &Plan, signed: &SignedUnits, pool: &rayon::ThreadPool, me: usize, n: usize) -> Result<(), BoxError> {
    plan.work.ensure_dir(dw::PAIRS)?;
    let mine: Vec<usize> = (0..signed.units).filter(|p| p % n == me && !plan.work.exists(&plan.pairs(*p, signed.units))).collect();
    // Each worker keeps its open body files and cache from unit to unit: a row has
    // band keys in nearly every unit (77 per image over 64 units on a small input),
    // so a per-unit cache still read each row dozens of times.
    let (cache_rows, hash_rows) = match BODY_CACHE_ROWS.load(std::sync::atomic::Ordering::Relaxed) {
        0 => ((cfg.work_mb.max(1) << 20) / plan.row_len(cfg), HASH_CACHE_ROWS),
        n => (n, n),
    };
    pool.install(|| {
        mine.par_iter().try_for_each_init(
            || (Bodies::new(cfg, plan, signed), BodyCache::new(plan.row_len(cfg), cache_rows, hash_rows)),
            |(bodies, cache), &p| pairs_unit(cfg, plan, signed, p, bodies, cache),
        )
    })
}

/// Sorts one key range's band records from every run, verifies each bucket's members,
/// and writes the pairs that join two groups.
fn pairs_unit(cfg: &DedupConfig, plan: &Plan, signed: &SignedUnits, p: usize, bodies: &mut Bodies, cache: &mut BodyCache) -> Result<(), BoxError> {
    let per = INDEX / signed.units;
    let (lo, hi) = ((p * per) as u64, ((p + 1) * per) as u64);
    let mut recs: Vec<Rec> = vec![];
    let mut raw = vec![];
    for u in 0..plan.units() {
        for r in 0..signed.runs[u] {
            let path = plan.run(u, r);
            let f = plan.work.open(&path)?;
            let mut b = [0u8; 8];
            f.read_exact_at(&mut b, INDEX as u64 * 8).at(&path)?;
            let count = u64::from_le_bytes(b);
            if plan.work.len(&path)? != RUN_HEADER + count * REC as u64 {
                return Err(werr(&path, "band run is truncated or damaged; delete the unit's .done marker and rerun `--phase sign`"));
            }
            f.read_exact_at(&mut b, lo * 8).at(&path)?;
            let start = u64::from_le_bytes(b);
            f.read_exact_at(&mut b, hi * 8).at(&path)?;
            let end = u64::from_le_bytes(b);
            raw.resize(((end - start) as usize) * REC, 0);
            f.read_exact_at(&mut raw, RUN_HEADER + start * REC as u64).at(&path)?;
            recs.extend(raw.chunks_exact(REC).map(Rec::decode));
        }
    }
    drop(raw);
    // Nearly every key is unique, so sort by key alone and order only the (few, small)
    // buckets by their tie-breakers.
    recs.sort_unstable_by_key(|r| r.key);
    let g_of = |r: &Rec| (signed.offsets[r.unit as usize] + r.row as u64) as u32;
    let new_total = signed.new_total;
    let is_old = |g: u32| g as u64 >= new_total;
    let mut uf = SparseUf::default();
    let mut pairs: Vec<(u32, u32)> = vec![];
    let mut bucket: Vec<(u64, u64, u32, u8)> = vec![];
    let mut hashes: Vec<Option<[u64; crate::image_hash::WINDOWS]>> = vec![];
    let mut i = 0;
    while i < recs.len() {
        let mut j = i + 1;
        while j < recs.len() && recs[j].key == recs[i].key {
            j += 1;
        }
        if j - i > 1 {
            bucket.clear();
            bucket.extend(recs[i..j].iter().map(|r| (r.order, r.tie, g_of(r), r.flag)));
            bucket.sort_unstable();
            // Buckets of rows from earlier runs only were settled then.
            if bucket.iter().any(|b| !is_old(b.2)) {
                if bucket[0].3 == EXACT {
                    for b in &bucket[1..] {
                        if uf.union(bucket[0].2, b.2) {
                            pairs.push((bucket[0].2, b.2));
                        }
                    }
                } else {
                    // Images and pairs: each member's window hashes, read once per bucket.
                    // A pair whose closest hashes are more than `max_hamming` apart (or an
                    // undecoded image) never verifies, and most members of a bucket are
                    // that far apart: they are passed over before the union-find and body
                    // lookups (the verdicts are the ones `verify` would give).
                    hashes.clear();
                    if plan.kind != Kind::Document {
                        for b in &bucket {
                            hashes.push(cache.hashes(bodies, b.2)?);
                        }
                    }
                    // Every verified pair within the window is considered, so the groups
                    // do not depend on which unit saw a pair first.
                    for m in 1..bucket.len() {
                        for prev in (m.saturating_sub(cfg.max_compare)..m).rev() {
                            let (a, b) = (bucket[prev].2, bucket[m].2);
                            if !hashes.is_empty() {
                                match (&hashes[m], &hashes[prev]) {
                                    (Some(x), Some(y)) if image_verify::near_enough(x, y, cfg.max_hamming).is_some() => {}
                                    _ => continue,
                                }
                            }
                            if (is_old(a) && is_old(b)) || uf.find(a) == uf.find(b) {
                                continue;
                            }
                            let (bm, bp) = cache.pair(bodies, b, a)?;
                            if verify(cfg, plan.kind, &bm[HEADER..], &bp[HEADER..]) && uf.union(a, b) {
                                pairs.push((a, b));
                            }
                        }
                    }
                }
            }
        }
        i = j;
    }
    write_atomic(plan, &plan.pairs(p, signed.units), &dw::encode_pairs(&pairs))
}

fn pair_files(plan: &Plan, signed: &SignedUnits, n: usize) -> Result<Result<Vec<PathBuf>, String>, BoxError> {
    let paths: Vec<PathBuf> = (0..signed.units).map(|p| plan.pairs(p, signed.units)).collect();
    let missing: Vec<usize> = (0..signed.units).filter(|&p| !plan.work.exists(&paths[p])).collect();
    if missing.is_empty() {
        Ok(Ok(paths))
    } else {
        Ok(Err(list_missing(&missing, n, "key ranges without pairs yet; range")))
    }
}

// ---------------------------------------------------------------- clusters

/// The facts the keep rule compares, read from a row's header.
#[derive(Clone, Copy)]
struct Facts {
    size: u32,
    /// The keep rule's score: the row's own (`sign::image_score` for images and pairs),
    /// or for a lossless file the best of the lossless copies of its very picture
    /// (`image_verify::picture_key`), which then differ by `own` alone.
    score: f32,
    /// The row's own score: among lossless copies of one picture (same size, same
    /// sharpness) it grows with the file's bytes, and the smallest file is kept.
    own: f32,
    idhash: u64,
    /// Images and pairs: the area inside bars and padding, in source pixels
    /// (`image_hash::unpadded_frame`; the header's pixel count for bodies that do not
    /// record it); documents: `size`.
    area: f32,
    /// Not cut off, animated or over `keep_max_pixels` (`image_verify::flawed`);
    /// documents always.
    whole: bool,
    /// Images and pairs: the decode saw no colour in the picture (`image_verify::grey`).
    grey: bool,
    /// Images and pairs: how varied its colours are at one brightness
    /// (`image_verify::variety`).
    variety: Option<f32>,
    /// Set per cluster among the copies it may keep: the copy's variety is under
    /// [`TINT_LEVELS`] and [`TINT_SHARE`] of the most varied copy's (a sepia or
    /// duotone copy of a colour photo).
    tinted: bool,
}

/// Colour variety (levels, `m6_imaging::tones::Tones::variety`) under which a copy may
/// be a tinted one ([`Facts::tinted`]). Chosen on scikit-image's 26 photos and 26
/// camera photos with made copies: sepia (Microsoft's matrix) 0.01-1.49, warm-toned
/// 0-0.23, blue-gold duotone 0.01-0.08; the colour originals 0.51 (Wood, brown wood)
/// to 37. Below it, [`TINT_SHARE`] decides: a low-colour photo's own copies have its
/// own variety.
const TINT_LEVELS: f32 = 1.5;

/// Share of the cluster's largest variety under which a copy counts as tinted. On the
/// same photos: a saturation halved halves the variety (such a copy keeps its place),
/// a quarter of it is a quarter (and gives way); the tinted copies fall under 0.3 of
/// their original's for the toned and duotone copies of all 37 colour photos and the
/// sepia copies of 29 (the 8 others are of photos mostly of one hue: sunsets, wood,
/// blue water, whose sepia is as varied across its hue as they are).
const TINT_SHARE: f32 = 0.3;

/// Images and pairs under `keep = "longest"`: copies whose areas are within this
/// fraction of a cluster's largest count as the largest. The frame is found on the
/// 128 px work picture, so a recompressed copy's frame can move by a work pixel per
/// side (up to about 3% of the area); a copy resized to 95% loses 10%.
const KEEP_AREA_TOLERANCE: f32 = 0.05;

/// Bumped when the row a cluster keeps changes for the same clusters: part of the
/// stage's settings and the work fingerprint, like `image_verify::VERIFY_VERSION`.
/// v2: images and pairs compare the area inside bars and padding of one even colour,
/// not the header's pixels, so a padded or letterboxed copy no longer beats its original,
/// and a copy with an overlay gives way to one without. v3: a copy cut off in transfer,
/// animated or over `keep_max_pixels` is kept only when the cluster has no other kind:
/// kept for being the largest, it had the filter drop it after dedup had removed its
/// whole copies, and the picture was lost; nor does a flawed `--against` row take the
/// place of a whole new copy. v4: of lossless copies of one picture
/// (`image_verify::picture_key`), the smallest file is kept: by bytes per pixel a BMP
/// outranked the PNG and WebP of the same pixels. v5: a copy without colour
/// (`image_verify::grey`) comes after those in colour: a grey PNG of a colour photo
/// outranked the colour JPEG, its lossless bytes per pixel being more. v6: so does a
/// tinted copy (`Facts::tinted`: sepia, duotone) before the colour copies: a sepia PNG
/// outranked the colour JPEG it was made from; and the overlay check only swaps copies
/// of one colour class (grey, tinted), whose tones otherwise read as an overlay.
pub const KEEP_VERSION: &str = "m6-dedup-keep-v6";

/// Images and pairs under `longest`: the order among the copies a cluster may keep
/// (those within [`KEEP_AREA_TOLERANCE`] of its largest area, among its whole copies
/// when it has any, of those its `--against` rows when it has any): copies in colour
/// before grey ones (`Facts::grey`: a grey copy of a colour photo holds less of it,
/// however well it is stored; copies whose decode could not tell count as colour),
/// and untinted before tinted ones (`Facts::tinted`, likewise; unknown is untinted),
/// then the best copy (`sign::image_score`), the smaller file of lossless copies of
/// one picture next (`Facts::own`), then the most header pixels, then the id-hash tie.
fn keep_order(a: (u32, &Facts), b: (u32, &Facts)) -> std::cmp::Ordering {
    let (x, y) = (a.1, b.1);
    (x.grey, x.tinted).cmp(&(y.grey, y.tinted)).then(y.score.total_cmp(&x.score)).then(x.own.total_cmp(&y.own)).then(y.size.cmp(&x.size)).then((x.idhash, a.0).cmp(&(y.idhash, b.0)))
}

/// Whether row `a` should represent a cluster rather than `b`. A flawed copy (cut
/// off, animated, over `keep_max_pixels`), which the filter would drop, never stands
/// for whole ones, whatever the rule; then rows of `--against` datasets come first:
/// they are already in the corpus. A flawed `--against` row most likely is not (the
/// filter dropped it after that run), so a whole new copy is kept rather than removed
/// as its duplicate.
fn better(rule: KeepRule, kind: Kind, new_total: u64, a: (u32, Facts), b: (u32, Facts)) -> bool {
    let (x, y) = (a.1, b.1);
    if x.whole != y.whole {
        return x.whole;
    }
    let (old_a, old_b) = (a.0 as u64 >= new_total, b.0 as u64 >= new_total);
    if old_a != old_b {
        return old_a;
    }
    let tie = (x.idhash, a.0) < (y.idhash, b.0);
    // Same size: the higher score wins before the id-hash tie (images and pairs: the
    // less compressed and sharper copy, `sign::image_score`; documents
    // outside `keep = "quality"` all score -inf, so the id hash decides).
    let score_tie = || match x.score.total_cmp(&y.score).then(y.own.total_cmp(&x.own)) {
        std::cmp::Ordering::Equal => tie,
        o => o == std::cmp::Ordering::Greater,
    };
    let longest = x.size > y.size || (x.size == y.size && score_tie());
    // Images and pairs carry no meta: `quality` means `longest` for them (their score
    // is a per-pixel quality, which must not outrank size: a crisp thumbnail is no
    // better copy).
    let rule = if rule == KeepRule::Quality && kind != Kind::Document { KeepRule::Longest } else { rule };
    match rule {
        KeepRule::Longest => longest,
        KeepRule::Shortest => x.size < y.size || (x.size == y.size && tie),
        KeepRule::First => a.0 < b.0,
        KeepRule::Quality => match x.score.total_cmp(&y.score) {
            std::cmp::Ordering::Equal => longest,
            o => o == std::cmp::Ordering::Greater,
        },
    }
}

/// The single-task step: memory follows the rows that appear in pairs (their union-find
/// entries, facts and drop entries), never the number of rows in the corpus.
fn clusters_phase(cfg: &DedupConfig, plan: &Plan, signed: &SignedUnits, pair_paths: &[PathBuf]) -> Result<(), BoxError> {
    let mut uf = SparseUf::default();
    let mut n_pairs = 0u64;
    for p in pair_paths {
        let bytes = plan.work.read(p)?.ok_or_else(|| werr(p, "pairs file vanished; rerun `--phase pairs`"))?;
        let pairs = dw::decode_pairs(&bytes).ok_or_else(|| werr(p, "pairs file is truncated or damaged; rerun `--phase pairs` after deleting it"))?;
        for (a, b) in pairs {
            uf.union(a, b);
            n_pairs += 1;
        }
    }
    let mut nodes: Vec<u32> = uf.parent.keys().copied().collect();
    nodes.sort_unstable();
    let mut bodies = Bodies::new(cfg, plan, signed);
    let mut buf = vec![];
    let mut facts: HashMap<u32, Facts> = HashMap::with_capacity(nodes.len());
    // Lossless copies of one picture (row, key) and the best score among them: their
    // bytes say how well each was packed, not how much picture it holds.
    let mut pictures: Vec<(u32, u64)> = vec![];
    let mut picture_best: HashMap<u64, f32> = HashMap::new();
    for &g in &nodes {
        bodies.read(g, &mut buf)?;
        let h = RowHeader::decode(&buf);
        let (area, whole, grey, variety) = match plan.kind {
            Kind::Document => (h.size as f32, true, false, None),
            _ => {
                let p = &buf[HEADER..];
                (image_verify::frame_pixels(p).unwrap_or(h.size as f32), !image_verify::flawed(p), image_verify::grey(p), image_verify::variety(p))
            }
        };
        if plan.kind != Kind::Document {
            if let Some(key) = image_verify::picture_key(&buf[HEADER..]) {
                // The header's pixels too: a copy of another size is another picture.
                let key = key ^ (h.size as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                pictures.push((g, key));
                let best = picture_best.entry(key).or_insert(h.score);
                *best = best.max(h.score);
            }
        }
        facts.insert(g, Facts { size: h.size, score: h.score, own: h.score, idhash: h.id_hash, area, whole, grey, variety, tinted: false });
    }
    for (g, key) in pictures {
        facts.get_mut(&g).expect("every node has facts").score = picture_best[&key];
    }
    let by_area = plan.kind != Kind::Document && matches!(cfg.keep, KeepRule::Longest | KeepRule::Quality);
    // Per cluster: the best class of row it has (whole copies before flawed ones, then
    // `--against` rows before new ones, as in `better`) and the largest area among the
    // rows of that class, the ones it may keep.
    let class = |g: u32| (facts[&g].whole, g as u64 >= signed.new_total);
    let mut top: HashMap<u32, ((bool, bool), f32)> = HashMap::new();
    if by_area {
        for &g in &nodes {
            let c = class(g);
            let t = top.entry(uf.find(g)).or_insert((c, 0.0));
            if c > t.0 {
                *t = (c, 0.0);
            }
            if c == t.0 {
                t.1 = t.1.max(facts[&g].area);
            }
        }
    }
    let mut best: HashMap<u32, u32> = HashMap::new();
    if by_area {
        // The copies each cluster may keep, in keep order; then one with a banner, logo
        // or caption laid over it gives way to one without
        // (`image_verify::overlay_between`): the score alone preferred them, as their
        // letters add bytes and edges. Each is compared against the current choice in
        // keep order, so the result does not depend on input order.
        let mut tiers: HashMap<u32, Vec<u32>> = HashMap::new();
        for &g in &nodes {
            let r = uf.find(g);
            let t = top[&r];
            if class(g) == t.0 && facts[&g].area >= (1.0 - KEEP_AREA_TOLERANCE) * t.1 {
                tiers.entry(r).or_default().push(g);
            }
        }
        let (mut a, mut b) = (vec![], vec![]);
        for (r, mut tier) in tiers {
            let widest = tier.iter().filter_map(|g| facts[g].variety).fold(0f32, f32::max);
            for g in &tier {
                let f = facts.get_mut(g).expect("every node has facts");
                f.tinted = f.variety.is_some_and(|v| v < TINT_LEVELS && v < TINT_SHARE * widest);
            }
            tier.sort_by(|x, y| keep_order((*x, &facts[x]), (*y, &facts[y])));
            let mut cur = tier[0];
            if tier.len() > 1 {
                bodies.read(cur, &mut a)?;
                // Only among copies of the first one's colour class: a grey or tinted
                // copy's other tones read as an overlay on the colour photo (a sepia
                // PNG of logo.png, LadyBird and three more of 37 photos replaced their
                // colour JPEG this way).
                let tone = |g: u32| (facts[&g].grey, facts[&g].tinted);
                for &g in tier[1..].iter().take_while(|&&g| tone(g) == tone(tier[0])) {
                    bodies.read(g, &mut b)?;
                    if image_verify::overlay_between(&a[HEADER..], &b[HEADER..]) == Some(true) {
                        cur = g;
                        std::mem::swap(&mut a, &mut b);
                    }
                }
            }
            best.insert(r, cur);
        }
    } else {
        for &g in &nodes {
            let r = uf.find(g);
            let cur = best.entry(r).or_insert(g);
            if better(cfg.keep, plan.kind, signed.new_total, (g, facts[&g]), (*cur, facts[&*cur])) {
                *cur = g;
            }
        }
    }
    // (removed, kept) for every removed row of the input.
    let mut removed: Vec<(u32, u32)> = vec![];
    for &g in &nodes {
        let k = best[&uf.find(g)];
        if k != g && (g as u64) < signed.new_total {
            removed.push((g, k));
        }
    }
    let rows_in_pairs = nodes.len() as u64;
    drop((facts, best, top, uf, nodes));
    // Ids of the kept rows named by audit rows: read from the units that hold them.
    let mut wanted: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for &(_, k) in &removed {
        let (u, row) = bodies.locate(k);
        wanted.entry(u).or_default().push(row);
    }
    let mut kept_ids: HashMap<u32, String> = HashMap::new();
    for (u, mut rows) in wanted {
        rows.sort_unstable();
        rows.dedup();
        let path = plan.ids(u);
        let mut rd = plan.work.reader(&path)?;
        let (mut row, mut next) = (0u64, 0usize);
        let mut len = [0u8; 4];
        let mut id = vec![];
        while next < rows.len() {
            rd.read_exact(&mut len).map_err(|e| werr(&path, format!("row {row}: {e}")))?;
            id.resize(u32::from_le_bytes(len) as usize, 0);
            rd.read_exact(&mut id).map_err(|e| werr(&path, format!("row {row}: {e}")))?;
            if row == rows[next] {
                let g = (signed.offsets[u] + row) as u32;
                kept_ids.insert(g, String::from_utf8(id.clone()).map_err(|_| werr(&path, format!("row {row}: id is not UTF-8")))?);
                next += 1;
            }
            row += 1;
        }
    }
    // One drop list per input shard, sorted by row.
    let mut lists: Vec<Vec<DropEntry>> = (0..plan.new.len()).map(|_| vec![]).collect();
    let (mut a, mut k) = (vec![], vec![]);
    for &(g, kept) in &removed {
        bodies.read(g, &mut a)?;
        bodies.read(kept, &mut k)?;
        let (similarity, reason) = explain(cfg, plan.kind, &a[HEADER..], &k[HEADER..]);
        let reason = if kept as u64 >= signed.new_total { format!("against_{reason}") } else { reason.to_string() };
        let (u, row) = bodies.locate(g);
        lists[u].push(DropEntry { row: row as u32, kept_id: kept_ids[&kept].clone(), similarity, reason });
    }
    plan.work.ensure_dir(dw::DROP)?;
    for (u, mut list) in lists.into_iter().enumerate() {
        list.sort_by_key(|d| d.row);
        write_atomic(plan, &plan.drop_list(u), &serde_json::to_vec(&list)?)?;
    }
    let done = ClustersDone { fingerprint: plan.fingerprint.clone(), documents: signed.new_total, pairs: n_pairs, rows_in_pairs, removed: removed.len() as u64 };
    if done.removed == 0 && signed.total > 0 {
        warn!("dedup found no duplicates");
    }
    info!(rows = signed.new_total, pairs = n_pairs, removed = done.removed, "dedup: clustered");
    write_atomic(plan, &plan.clusters(), &serde_json::to_vec_pretty(&done)?)
}

// ---------------------------------------------------------------- write

/// Reads the drop list the clusters phase wrote for unit `u` (sorted by row).
pub fn load_drops(plan: &Plan, u: usize) -> Result<Vec<DropEntry>, BoxError> {
    let path = plan.drop_list(u);
    let bytes = plan.work.read(&path)?.ok_or_else(|| werr(&path, "drop list missing; rerun `--phase clusters`"))?;
    serde_json::from_slice(&bytes).map_err(|e| werr(&path, format!("unreadable drop list: {e}")))
}

/// Streams unit `u`'s signed rows (header + body) in row order, for the signatures side dataset.
pub fn bodies_reader(plan: &Plan, u: usize) -> Result<BufReader<File>, BoxError> {
    Ok(plan.work.reader(&plan.bin(u))?)
}

/// After the last task committed: the work folder goes unless `keep_work`.
pub fn finish(cfg: &DedupConfig, plan: &Plan) {
    if !plan.all_committed() {
        return;
    }
    if cfg.keep_work {
        info!(work = %plan.work.root().display(), "dedup complete; work files kept (--keep-work)");
        return;
    }
    // Another process of the job may be removing it at the same moment: best effort.
    match plan.work.remove_all() {
        Ok(()) => info!("dedup complete; work files removed"),
        Err(e) => warn!(work = %plan.work.root().display(), "could not remove dedup work files: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_units_follow_the_input_and_the_config() {
        let auto = DedupConfig::default();
        // Small inputs: one range per 2^15 records, so a few hundred images are one unit.
        assert_eq!(pairs_units(&auto, 0), 1);
        assert_eq!(pairs_units(&auto, 496 * 77), 1);
        assert_eq!(pairs_units(&auto, 3 * UNIT_MIN_RECORDS), 4);
        // Mid-sized: 64 ranges for processes × threads; large: ~32 MiB of records each.
        assert_eq!(pairs_units(&auto, 64 * UNIT_MIN_RECORDS), MIN_UNITS);
        assert_eq!(pairs_units(&auto, 100 * UNIT_MIN_RECORDS), MIN_UNITS);
        let big = (32u64 << 20) / REC_MEM as u64 * 300;
        assert_eq!(pairs_units(&auto, big), 512);
        assert_eq!(pairs_units(&auto, u64::MAX / 64), INDEX);
        let set = DedupConfig { pairs_units: 16, ..DedupConfig::default() };
        assert_eq!(pairs_units(&set, 0), 16);
        assert_eq!(pairs_units(&set, big), 16);
        for bad in [3, 100, 8192] {
            let e = DedupConfig { pairs_units: bad, ..DedupConfig::default() }.validate().unwrap_err().to_string();
            assert!(e.contains("pairs_units") && e.contains("power of two"), "{e}");
        }
        assert!(DedupConfig { pairs_units: 4096, ..DedupConfig::default() }.validate().is_ok());
    }
}
