//! The training loop: batches from the loader, prefix-LM loss, AdamW steps with
//! accumulation and clipping, JSONL + terminal logging, held-out evaluation and
//! atomic checkpoints that `--resume` continues from exactly.
//!
//! Data parallelism: every rank holds the whole model; per micro-batch the ranks
//! exchange their target counts, weight their mean losses by their share of the
//! global batch's targets and sum the gradients (NCCL on CUDA, the TCP ring on CPU),
//! so W ranks take the same steps as one process with the W-fold batch. Rank 0 alone
//! logs, evaluates and writes checkpoints; every rank checks at start-up that its
//! weights equal rank 0's.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::config::{Collective, GradReduce, ModelConfig, TrainConfig};
use crate::data::{collate, make_example, next_batch, Batch, Corpus, DataMeta, Loader, LoaderConfig, LoaderState, Position, ShardRef};
use crate::dist::Ring;
use crate::launch::Launch;
use crate::model::{DeviceBatch, M6Model};
use crate::nccl::{Nccl, ReduceKind};
use crate::optim::{lr_at, AdamW};

pub const LOG: &str = "log.jsonl";
pub const CHECKPOINTS: &str = "checkpoints";
pub const LATEST: &str = "latest";
pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIM_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "state.json";

/// What one invocation trains on and where it writes.
#[derive(Debug, Clone)]
pub struct TrainArgs {
    pub inputs: Vec<PathBuf>,
    pub output: PathBuf,
    pub config: TrainConfig,
    pub resume: bool,
    /// Rank, world size, local rank (the GPU) and the rendezvous address.
    pub launch: Launch,
    /// Stop (with a checkpoint) after this step although the schedule runs to
    /// `config.steps`: an interrupted run, for resuming later.
    pub stop_at: Option<u64>,
}

/// Everything besides tensors that a checkpoint needs to continue exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    pub step: u64,
    pub total_steps: u64,
    /// The global data position (every lane's), not any one rank's.
    pub loader: Position,
    /// The world size that wrote it (a resumed run may use another).
    pub world_size: u64,
    /// Data lanes and samples per optimiser micro-step over all ranks: the stream a
    /// resumed run must continue (0 in checkpoints from before lanes: one lane, and
    /// `config.batch_size` × `world_size`).
    #[serde(default)]
    pub lanes: u64,
    #[serde(default)]
    pub global_batch: u64,
    pub seed: u64,
    pub model: ModelConfig,
    pub data: DataMeta,
    pub config: TrainConfig,
}

/// The figures of a finished run (printed as JSON by the binary).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub device: String,
    pub world_size: u64,
    pub lanes: u64,
    /// How gradients were summed: `none` (one process), `ring` or `nccl`.
    pub collective: String,
    pub start_step: u64,
    pub steps: u64,
    pub final_loss: f64,
    pub eval_loss: Option<f64>,
    pub seconds: f64,
    pub tokens_per_s: f64,
    pub samples_per_s: f64,
    pub parameters: i64,
    pub checkpoint: Option<PathBuf>,
}

/// CUDA device `local_rank` when CUDA is wanted and present, else the CPU.
pub fn pick_device(cfg: &TrainConfig, local_rank: u64) -> Result<Device> {
    if !cfg.cuda || !tch::Cuda::is_available() {
        return Ok(Device::Cpu);
    }
    let n = tch::Cuda::device_count() as u64;
    if local_rank >= n {
        bail!("local rank {local_rank} has no GPU: this node has {n} (start at most {n} processes per node)");
    }
    Ok(Device::Cuda(local_rank as usize))
}

/// The newest complete checkpoint of a run folder, if any.
pub fn latest_checkpoint(run: &Path) -> Result<Option<PathBuf>> {
    let p = run.join(CHECKPOINTS).join(LATEST);
    match fs::read_to_string(&p) {
        Ok(name) => {
            let dir = run.join(CHECKPOINTS).join(name.trim());
            if !dir.join(STATE_FILE).is_file() {
                bail!("{}: names {}, which is not a complete checkpoint", p.display(), dir.display());
            }
            Ok(Some(dir))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| p.display().to_string()),
    }
}

pub fn read_state(ckpt: &Path) -> Result<CheckpointState> {
    let p = ckpt.join(STATE_FILE);
    let text = fs::read_to_string(&p).with_context(|| p.display().to_string())?;
    serde_json::from_str(&text).with_context(|| format!("{}: unreadable checkpoint state", p.display()))
}

/// A model with its variables, loaded from a checkpoint when given.
pub struct Loaded {
    pub vs: nn::VarStore,
    pub model: M6Model,
}

/// `holds_images`: whether the data has image samples; only then must `max_len` hold
/// an image (a text-only dataset tokenized with image settings trains at any length).
pub fn build_model(cfg: &TrainConfig, meta: &DataMeta, device: Device, holds_images: bool) -> Result<Loaded> {
    let need = meta.image.as_ref().filter(|_| holds_images).map_or(0, |g| g.n_patches() + 3);
    if cfg.model.max_len < need {
        bail!("[train.model] max_len {} cannot hold an image ({} patches + [IMG], [/IMG] and one caption token)", cfg.model.max_len, need - 3);
    }
    // Same seed, same initial weights (variable creation order is fixed).
    tch::manual_seed(cfg.seed as i64);
    let vs = nn::VarStore::new(device);
    let model = M6Model::new(&vs, &cfg.model, meta, device.is_cuda());
    Ok(Loaded { vs, model })
}

pub fn load_weights(vs: &mut nn::VarStore, ckpt: &Path) -> Result<()> {
    let p = ckpt.join(MODEL_FILE);
    vs.load(&p).with_context(|| format!("{}: loading weights", p.display()))
}

/// Mean target-token loss over the first `cfg.eval_batches` batches of `shards`
/// (unshuffled, so every evaluation sees the same examples).
pub fn evaluate(model: &M6Model, shards: &[ShardRef], meta: &DataMeta, cfg: &TrainConfig, device: Device) -> Result<Option<f64>> {
    if shards.is_empty() || cfg.eval_batches == 0 {
        return Ok(None);
    }
    let lcfg = LoaderConfig { shuffle: false, lanes: 1, ..LoaderConfig::from_train(cfg, 0, 1) };
    let mut loader = Loader::new(shards.to_vec(), meta.clone(), lcfg, &Position::start(1))?;
    let _guard = tch::no_grad_guard();
    let (mut sum, mut n) = (0.0, 0usize);
    let max_len = cfg.model.max_len as usize;
    for _ in 0..cfg.eval_batches {
        let mut ex = vec![];
        while ex.len() < cfg.batch_size && loader.epoch() == 0 {
            let (s, epoch) = loader.next_sample()?;
            if epoch > 0 {
                break; // the held-out data is smaller than eval_batches batches
            }
            ex.extend(make_example(&s, 0, cfg.seed, meta, &cfg.tasks, max_len));
        }
        if ex.is_empty() {
            break;
        }
        let b = collate(&ex, meta);
        let loss = model.loss(&DeviceBatch::new(&b, device)).double_value(&[]);
        sum += loss * b.targets as f64;
        n += b.targets;
    }
    Ok((n > 0).then(|| sum / n as f64))
}

fn save_checkpoint(run: &Path, vs: &nn::VarStore, opt: &AdamW, state: &CheckpointState, keep: usize) -> Result<PathBuf> {
    let root = run.join(CHECKPOINTS);
    let name = format!("step-{:08}", state.step);
    let tmp = root.join(format!(".{name}.tmp"));
    let dir = root.join(&name);
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| tmp.display().to_string())?;
    }
    fs::create_dir_all(&tmp).with_context(|| tmp.display().to_string())?;
    vs.save(tmp.join(MODEL_FILE)).with_context(|| format!("{}: saving weights", tmp.display()))?;
    opt.save(&tmp.join(OPTIM_FILE)).with_context(|| format!("{}: saving optimiser state", tmp.display()))?;
    fs::write(tmp.join(STATE_FILE), serde_json::to_vec_pretty(state)?).with_context(|| tmp.display().to_string())?;
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| dir.display().to_string())?;
    }
    // Rename, then point `latest` at it: a crash leaves the previous checkpoint valid.
    fs::rename(&tmp, &dir).with_context(|| dir.display().to_string())?;
    m6_pipeline::manifest::write_atomic(&root.join(LATEST), name.as_bytes())?;
    let mut old: Vec<PathBuf> = fs::read_dir(&root)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-")))
        .collect();
    old.sort();
    let keep = keep.max(1);
    if old.len() > keep {
        for p in &old[..old.len() - keep] {
            fs::remove_dir_all(p).with_context(|| p.display().to_string())?;
        }
    }
    Ok(dir)
}

/// Keeps only log lines up to `step` (a resumed run rewrites what the lost tail had logged).
fn truncate_log(path: &Path, step: u64) -> Result<()> {
    let Ok(text) = fs::read_to_string(path) else { return Ok(()) };
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v.get("step")?.as_u64()).is_some_and(|s| s <= step))
        .map(|l| format!("{l}\n"))
        .collect();
    m6_pipeline::manifest::write_atomic(path, kept.as_bytes())?;
    Ok(())
}

/// How this rank sums its gradients with the other ranks'.
enum Grads {
    /// One process: nothing to sum.
    Single,
    /// CPU processes: the TCP ring.
    Ring,
    /// CUDA: NCCL on the device, in buckets of `usize` bytes.
    Nccl(Nccl, ReduceKind, usize),
}

/// This rank's links to the others: the TCP ring (small control values every step;
/// the gradients too on CPU) and, on CUDA, the NCCL communicator.
struct Comm {
    ring: Ring,
    grads: Grads,
}

impl Comm {
    fn connect(launch: &Launch, cfg: &TrainConfig, device: Device) -> Result<Comm> {
        let use_nccl = match cfg.collective {
            Collective::Auto => device.is_cuda() && launch.world_size > 1,
            Collective::Nccl if !device.is_cuda() => bail!("collective = \"nccl\" needs CUDA, and this rank trains on the CPU"),
            Collective::Nccl => true,
            Collective::Ring => false,
        };
        // Rendezvous as torch does: rank 0 makes the NCCL unique id and hands it out.
        let blob = if use_nccl && launch.rank == 0 { Nccl::unique_id()? } else { vec![] };
        if launch.world_size > 1 {
            tracing::info!("{launch}: rendezvous");
        }
        let (mut ring, blob) = Ring::connect(&launch.master, launch.rank, launch.world_size, &blob, std::time::Duration::from_secs(600))
            .with_context(|| format!("rendezvous of {} ranks at {}", launch.world_size, launch.master))?;
        ring.agree("the gradient transport (NCCL or the TCP ring: set the same `collective` and give every rank a GPU, or none)", use_nccl as u64)?;
        let grads = if use_nccl {
            let Device::Cuda(gpu) = device else { unreachable!("checked above") };
            let n = Nccl::init(&blob, launch.rank, launch.world_size, gpu)?;
            tracing::info!("NCCL {} communicator: rank {}/{} on cuda:{gpu}", n.version, launch.rank, launch.world_size);
            let kind = match cfg.grad_reduce {
                GradReduce::Fp32 => ReduceKind::F32,
                GradReduce::Bf16 => ReduceKind::Bf16,
            };
            Grads::Nccl(n, kind, cfg.bucket_mb << 20)
        } else if launch.world_size > 1 {
            Grads::Ring
        } else {
            Grads::Single
        };
        Ok(Comm { ring, grads })
    }

    fn name(&self) -> &'static str {
        match self.grads {
            Grads::Single => "none",
            Grads::Ring => "ring",
            Grads::Nccl(..) => "nccl",
        }
    }

    /// Sums every rank's gradients and the step's (weighted) loss, in place.
    fn reduce(&mut self, opt: &mut AdamW, step_loss: &mut Tensor) -> Result<()> {
        match &self.grads {
            Grads::Single => {}
            Grads::Ring => {
                let mut flat = opt.flat_grads();
                flat.push(step_loss.double_value(&[]) as f32);
                self.ring.all_reduce_sum(&mut flat).context("summing gradients across ranks")?;
                *step_loss = Tensor::from(flat.pop().unwrap()).to_device(step_loss.device());
                opt.set_flat_grads(&flat);
            }
            Grads::Nccl(n, kind, bucket) => {
                n.all_reduce_sum(&opt.grads(), *kind, *bucket).context("NCCL all-reduce of the gradients")?;
                n.all_reduce_sum(std::slice::from_ref(step_loss), ReduceKind::F32, 4).context("NCCL all-reduce of the loss")?;
            }
        }
        Ok(())
    }

    /// The global data position: every rank contributes its own lanes' states.
    fn gather_position(&mut self, loader: &Loader, lanes: u64) -> Result<Position> {
        let mut v = vec![0u64; 2 * lanes as usize];
        for (l, s) in loader.lane_range().zip(loader.lane_states()) {
            v[2 * l as usize] = s.epoch;
            v[2 * l as usize + 1] = s.consumed;
        }
        self.ring.all_reduce_sum(&mut v).context("gathering the ranks' data positions")?;
        Ok(Position { lanes: v.chunks(2).map(|c| LoaderState { epoch: c[0], consumed: c[1] }).collect() })
    }
}

/// blake3 of every variable (name and fp32 bytes, in name order), cut to 64 bits.
pub fn weights_checksum(vs: &nn::VarStore) -> u64 {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = blake3::Hasher::new();
    for (name, t) in vars {
        h.update(name.as_bytes());
        let v = Vec::<f32>::try_from(t.to_kind(Kind::Float).flatten(0, -1).to_device(Device::Cpu)).expect("f32 weights");
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        h.update(&bytes);
    }
    u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap())
}

/// What a run fixed that a resumed run must keep, or the fresh run's choices.
struct Layout {
    lanes: u64,
    global_batch: u64,
}

/// Settles the sequence length (from the dataset unless set), the data lanes and the
/// per-rank batch (from the checkpoint when resuming, at this world size).
fn settle(cfg: &mut TrainConfig, corpus: &Corpus, holds_images: bool, resumed: Option<&CheckpointState>, world: u64) -> Result<Layout> {
    if cfg.model.max_len == 0 {
        cfg.model.max_len = match resumed {
            Some(st) => st.model.max_len,
            None => {
                let patches = corpus.meta.image.as_ref().filter(|_| holds_images).map(|g| g.n_patches());
                let n = cfg.default_max_len(corpus.sample_max_len, patches);
                tracing::info!(
                    "model.max_len {n}: samples of up to {} ids{}",
                    corpus.sample_max_len.map_or("128 (not recorded)".to_string(), |m| m.to_string()),
                    patches.map_or(String::new(), |p| format!(", images of {p} patches"))
                );
                n
            }
        };
    }
    let layout = match resumed {
        Some(st) => {
            if st.lanes == 0 && st.world_size > 1 {
                bail!("the checkpoint comes from a {}-rank run of an older m6-train (rows dealt out round-robin): resume it with that version", st.world_size);
            }
            let lanes = st.lanes.max(1);
            if cfg.lanes != 0 && cfg.lanes != lanes {
                bail!("the run has {lanes} data lanes (its checkpoint says so); `lanes` {} cannot change on resume", cfg.lanes);
            }
            let global_batch = if st.global_batch == 0 { st.config.batch_size as u64 * st.world_size } else { st.global_batch };
            Layout { lanes, global_batch }
        }
        None => Layout { lanes: if cfg.lanes == 0 { world } else { cfg.lanes }, global_batch: cfg.batch_size as u64 * world },
    };
    let Layout { lanes, global_batch } = layout;
    if lanes % world != 0 {
        bail!(
            "the run's {lanes} data lanes cannot be split evenly over {world} ranks: resume at a world size that divides {lanes} (set `lanes` at the start to a multiple of every world size you will use, e.g. 12)"
        );
    }
    if global_batch % lanes != 0 {
        bail!("batch_size × world size = {global_batch} must be a multiple of the {lanes} data lanes (every micro-batch takes the same number of samples from each lane)");
    }
    let per_rank = (global_batch / world) as usize;
    if per_rank != cfg.batch_size {
        tracing::info!("batch_size {per_rank} per rank: the run's micro-batch of {global_batch} samples over {world} ranks");
        cfg.batch_size = per_rank;
    }
    cfg.lanes = lanes;
    Ok(Layout { lanes, global_batch })
}

pub fn train(args: &TrainArgs) -> Result<Summary> {
    let mut run = Run::setup(args)?;
    let stop = args.stop_at.unwrap_or(run.cfg.steps).min(run.cfg.steps);
    let mut win = Window::new(run.device);
    let (mut all_tokens, mut all_samples) = (0u64, 0u64);
    let (mut last_loss, mut last_eval, mut last_ckpt) = (f64::NAN, None, None);
    let t0 = Instant::now();
    while run.step < stop {
        let lr = lr_at(&run.cfg, run.step, run.cfg.steps);
        let done = run.step_once(lr)?;
        win.add(&done);
        let (step, cfg) = (run.step, &run.cfg);
        let at_end = step == stop;
        let checkpoint = at_end || (cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0);
        let eval_due = cfg.eval_every > 0 && (step % cfg.eval_every == 0 || at_end);
        let mut eval_loss = None;
        if run.rank == 0 && eval_due {
            eval_loss = evaluate(&run.model, &run.corpus.eval, &run.corpus.meta, cfg, run.device)?;
            if eval_loss.is_some() {
                last_eval = eval_loss;
            }
        }
        let eval_step = eval_due && !run.corpus.eval.is_empty() && cfg.eval_batches > 0;
        if step % cfg.log_every.max(1) == 0 || at_end || eval_step || checkpoint {
            last_loss = done.loss.double_value(&[]);
            let (tokens, samples) = run.log_window(&mut win, lr, &done, eval_loss, t0)?;
            all_tokens += tokens;
            all_samples += samples;
        }
        if checkpoint {
            last_ckpt = run.checkpoint()?.or(last_ckpt);
        }
    }
    run.pb.finish_and_clear();
    let seconds = t0.elapsed().as_secs_f64();
    Ok(Summary {
        device: format!("{:?}", run.device),
        world_size: run.world,
        lanes: run.lanes,
        collective: run.comm.name().to_string(),
        start_step: run.start_step,
        steps: run.step,
        final_loss: last_loss,
        eval_loss: last_eval,
        seconds,
        tokens_per_s: all_tokens as f64 / seconds.max(1e-9),
        samples_per_s: all_samples as f64 / seconds.max(1e-9),
        parameters: run.parameters,
        checkpoint: if run.rank == 0 { last_ckpt.or(latest_checkpoint(&run.run_dir)?) } else { None },
    })
}

/// Everything one rank's training holds between steps: set up once by
/// [`Run::setup`], advanced by [`Run::step_once`], logged by [`Run::log_window`] and
/// saved by [`Run::checkpoint`].
struct Run {
    rank: u64,
    world: u64,
    cfg: TrainConfig,
    corpus: Corpus,
    device: Device,
    run_dir: PathBuf,
    log_path: PathBuf,
    /// Rank 0's `train_log.jsonl`; other ranks log nothing.
    log: Option<fs::File>,
    vs: nn::VarStore,
    model: M6Model,
    opt: AdamW,
    comm: Comm,
    loader: Loader,
    lanes: u64,
    global_batch: u64,
    step: u64,
    start_step: u64,
    parameters: i64,
    pb: indicatif::ProgressBar,
}

/// What one optimiser step produced. The loss and gradient norm stay on the device
/// until a log line reads them: reading one waits for the GPU, and a wait every step
/// leaves it idle while the CPU queues the optimiser and the next batch.
struct StepDone {
    loss: Tensor,
    grad_norm: Tensor,
    tokens: u64,
    samples: u64,
}

/// The steps since the last log line.
struct Window {
    start: Instant,
    loss: Tensor,
    n: usize,
    tokens: u64,
    samples: u64,
    device: Device,
}

impl Window {
    fn new(device: Device) -> Window {
        Window { start: Instant::now(), loss: Tensor::zeros([], (Kind::Float, device)), n: 0, tokens: 0, samples: 0, device }
    }

    fn add(&mut self, d: &StepDone) {
        self.loss += &d.loss;
        self.n += 1;
        self.tokens += d.tokens;
        self.samples += d.samples;
    }
}

impl Run {
    /// Config checks, data, device, resume point, model and optimiser, the collective
    /// (with the checks every rank must agree on), the loader and the log.
    fn setup(args: &TrainArgs) -> Result<Run> {
        let launch = &args.launch;
        let (rank, world) = (launch.rank, launch.world_size);
        let mut cfg = args.config.clone();
        cfg.check().map_err(anyhow::Error::msg)?;
        if cfg.torch_threads > 0 {
            tch::set_num_threads(cfg.torch_threads as i32);
        }
        let corpus = Corpus::open(&args.inputs, cfg.eval_input.as_deref(), cfg.holdout_last_shard)?;
        let holds_images = corpus.holds_images()?;
        let device = pick_device(&cfg, launch.local_rank)?;

        // Every rank resumes from the run folder rank 0 writes (a shared file system, as
        // torch's checkpoints assume).
        let run_dir = args.output.clone();
        let resumed = match latest_checkpoint(&run_dir)? {
            Some(ckpt) if args.resume => Some((read_state(&ckpt)?, ckpt)),
            Some(ckpt) => bail!("{} already holds a checkpoint ({}); pass --resume to continue it, or choose another --output", run_dir.display(), ckpt.display()),
            None => None,
        };
        let Layout { lanes, global_batch } = settle(&mut cfg, &corpus, holds_images, resumed.as_ref().map(|r| &r.0), world)?;
        let Loaded { mut vs, model } = build_model(&cfg, &corpus.meta, device, holds_images)?;
        let mut opt = AdamW::new(&vs, &cfg);
        let log_path = run_dir.join(LOG);
        let (mut step, mut position) = (0u64, Position::start(lanes));
        if let Some((st, ckpt)) = &resumed {
            if st.model != cfg.model || st.data != corpus.meta || st.seed != cfg.seed {
                bail!(
                    "{}: checkpoint was made with another model, tokenizer or seed (model {:?}, seed {}); resume with the same settings",
                    ckpt.display(),
                    st.model,
                    st.seed
                );
            }
            load_weights(&mut vs, ckpt)?;
            opt.load(&ckpt.join(OPTIM_FILE), st.step).with_context(|| format!("{}: loading optimiser state", ckpt.display()))?;
            step = st.step;
            position = st.loader.clone();
            if rank == 0 {
                truncate_log(&log_path, step)?;
            }
            tracing::info!("resumed from {} at step {step} ({} ranks wrote it, {world} continue)", ckpt.display(), st.world_size);
        }
        if rank == 0 {
            fs::create_dir_all(&run_dir).with_context(|| run_dir.display().to_string())?;
            if resumed.is_none() {
                let _ = fs::remove_file(&log_path);
            }
        }
        let mut comm = Comm::connect(launch, &cfg, device)?;
        comm.ring.agree("the step to start from (every rank resumes from the same run folder)", step)?;
        let fingerprint = blake3::hash(serde_json::to_string(&cfg)?.as_bytes());
        comm.ring.agree("the [train] config", u64::from_le_bytes(fingerprint.as_bytes()[..8].try_into().unwrap()))?;
        // A rank whose weights differ from rank 0's (another checkpoint, another torch)
        // would train a different model under the same averaged gradients.
        comm.ring.agree("the model weights (checksum): this rank's weights differ from rank 0's", weights_checksum(&vs))?;
        opt.prime_grads();
        let loader = Loader::new(corpus.train.clone(), corpus.meta.clone(), LoaderConfig::from_train(&cfg, rank, world), &position)?;
        let log = if rank == 0 {
            Some(fs::OpenOptions::new().create(true).append(true).open(&log_path).with_context(|| log_path.display().to_string())?)
        } else {
            None
        };
        let parameters: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
        tracing::info!(
            "model: {parameters} parameters on {device:?}; {} train shards, {} eval shards; rank {rank}/{world} reads data lanes {:?} of {lanes}, {} samples per micro-batch over all ranks; gradients: {}",
            corpus.train.len(),
            corpus.eval.len(),
            loader.lane_range(),
            global_batch,
            comm.name()
        );
        let pb = if rank == 0 { indicatif::ProgressBar::new(cfg.steps) } else { indicatif::ProgressBar::hidden() };
        pb.set_style(indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps {msg} [{elapsed_precise}<{eta_precise}]").unwrap());
        pb.set_position(step);
        Ok(Run { rank, world, cfg, corpus, device, run_dir, log_path, log, vs, model, opt, comm, loader, lanes, global_batch, step, start_step: step, parameters, pb })
    }

    /// One optimiser step: `grad_accum` micro-batches forward and backward, gradients
    /// reduced over the ranks, clipped and applied.
    fn step_once(&mut self, lr: f64) -> Result<StepDone> {
        let (cfg, accum) = (&self.cfg, self.cfg.grad_accum);
        let max_len = cfg.model.max_len as usize;
        let batches = (0..accum).map(|_| next_batch(&mut self.loader, cfg.batch_size, cfg.seed, &cfg.tasks, max_len)).collect::<Result<Vec<Batch>, _>>()?;
        // Each rank's mean loss counts by its share of the micro-batch's targets over
        // all ranks (the sum over ranks is then the mean over the whole micro-batch, as
        // one process would compute it); tokens and samples ride along for the log.
        let mut counts: Vec<u64> = batches.iter().map(|b| b.targets as u64).collect();
        counts.push(batches.iter().map(|b| b.tokens as u64).sum());
        counts.push(batches.iter().map(|b| b.samples as u64).sum());
        self.comm.ring.all_reduce_sum(&mut counts).context("exchanging the micro-batches' target counts")?;
        let mut step_loss = Tensor::zeros([], (Kind::Float, self.device));
        for (b, &targets) in batches.iter().zip(&counts) {
            if b.targets == 0 || targets == 0 {
                continue; // nothing to predict here: no gradient from this rank
            }
            let loss = self.model.loss(&DeviceBatch::new(b, self.device));
            let share = &loss * (b.targets as f64 / targets as f64);
            (&share / accum as f64).backward();
            step_loss += share.detach() / accum as f64;
        }
        self.comm.reduce(&mut self.opt, &mut step_loss)?;
        let grad_norm = self.opt.clip_grad_norm(self.cfg.grad_clip);
        self.opt.apply(lr);
        self.opt.zero_grad();
        self.step += 1;
        self.pb.set_position(self.step);
        Ok(StepDone { loss: step_loss, grad_norm, tokens: counts[accum], samples: counts[accum + 1] })
    }

    /// Closes the log window: stops on a non-finite loss, writes rank 0's log line and
    /// progress message, and returns the window's tokens and samples.
    fn log_window(&mut self, win: &mut Window, lr: f64, last: &StepDone, eval_loss: Option<f64>, t0: Instant) -> Result<(u64, u64)> {
        let step = self.step;
        // Every rank holds the same summed loss: all stop together on a bad one.
        let mean_loss = win.loss.double_value(&[]) / win.n.max(1) as f64;
        // A non-finite loss in the window poisons the mean: stop before logging or
        // checkpointing weights that may already be NaN.
        if !mean_loss.is_finite() {
            bail!("loss became {mean_loss} in steps {}..={step}; lower lr or check the data", step + 1 - win.n as u64);
        }
        let secs = win.start.elapsed().as_secs_f64().max(1e-9);
        if let Some(log) = self.log.as_mut() {
            let mut line = serde_json::json!({
                "step": step,
                "loss": mean_loss,
                "lr": lr,
                "tokens_per_s": win.tokens as f64 / secs,
                "samples_per_s": win.samples as f64 / secs,
                "grad_norm": last.grad_norm.double_value(&[]),
                "epoch": self.loader.epoch(),
                "elapsed_s": t0.elapsed().as_secs_f64(),
                // Wall-clock time, so a GPU utilisation trace (nvidia-smi) can be cut to the steps.
                "time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
            });
            if let Some(e) = eval_loss {
                line["eval_loss"] = e.into();
            }
            writeln!(log, "{line}").with_context(|| self.log_path.display().to_string())?;
            log.flush()?;
            let msg = format!(
                "loss {:.4} lr {:.2e} {:.0} tok/s {:.1} samples/s{}",
                mean_loss,
                lr,
                win.tokens as f64 / secs,
                win.samples as f64 / secs,
                eval_loss.map(|e| format!(" eval {e:.4}")).unwrap_or_default()
            );
            self.pb.set_message(msg.clone());
            if self.pb.is_hidden() {
                eprintln!("step {step}/{} {msg}", self.cfg.steps);
            }
        }
        let done = (win.tokens, win.samples);
        *win = Window::new(win.device);
        Ok(done)
    }

    /// Every rank takes part in gathering the loader position; rank 0 alone writes
    /// the checkpoint (returned).
    fn checkpoint(&mut self) -> Result<Option<PathBuf>> {
        let position = self.comm.gather_position(&self.loader, self.lanes)?;
        if self.rank != 0 {
            return Ok(None);
        }
        let state = CheckpointState {
            step: self.step,
            total_steps: self.cfg.steps,
            loader: position,
            world_size: self.world,
            lanes: self.lanes,
            global_batch: self.global_batch,
            seed: self.cfg.seed,
            model: self.cfg.model.clone(),
            data: self.corpus.meta.clone(),
            config: self.cfg.clone(),
        };
        Ok(Some(save_checkpoint(&self.run_dir, &self.vs, &self.opt, &state, self.cfg.keep_checkpoints)?))
    }
}

pub fn eval_checkpoint(args: &TrainArgs) -> Result<serde_json::Value> {
    let ckpt = latest_checkpoint(&args.output)?.with_context(|| format!("{}: no checkpoint to evaluate", args.output.display()))?;
    let st = read_state(&ckpt)?;
    let mut cfg = st.config.clone();
    cfg.eval_batches = args.config.eval_batches;
    cfg.eval_input = args.config.eval_input.clone().or(cfg.eval_input);
    let inputs = if args.inputs.is_empty() { bail!("--input is required") } else { &args.inputs };
    let corpus = Corpus::open(inputs, cfg.eval_input.as_deref(), cfg.holdout_last_shard)?;
    if corpus.meta != st.data {
        bail!("{}: the input's tokenizer properties differ from the checkpoint's", ckpt.display());
    }
    let device = pick_device(&args.config, args.launch.local_rank)?;
    let Loaded { mut vs, model } = build_model(&cfg, &corpus.meta, device, corpus.holds_images()?)?;
    load_weights(&mut vs, &ckpt)?;
    let eval = evaluate(&model, &corpus.eval, &corpus.meta, &cfg, device)?;
    Ok(serde_json::json!({ "checkpoint": ckpt, "step": st.step, "eval_loss": eval }))
}
