//! The training loop: batches from the loader, prefix-LM loss, AdamW steps with
//! accumulation and clipping, JSONL + terminal logging, held-out evaluation and
//! atomic checkpoints that `--resume` continues from exactly.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::config::{ModelConfig, TrainConfig};
use crate::data::{collate, make_example, next_batch, Corpus, DataMeta, Loader, LoaderConfig, LoaderState, ShardRef};
use crate::model::{DeviceBatch, M6Model};
use crate::dist::Dist;
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
    pub rank: u64,
    pub world_size: u64,
    /// Stop (with a checkpoint) after this step although the schedule runs to
    /// `config.steps`: an interrupted run, for resuming later.
    pub stop_at: Option<u64>,
    /// Where rank 0 listens for the other ranks (`host:port`) when world_size > 1.
    pub dist_addr: String,
}

/// Everything besides tensors that a checkpoint needs to continue exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    pub step: u64,
    pub total_steps: u64,
    pub loader: LoaderState,
    pub rank: u64,
    pub world_size: u64,
    pub seed: u64,
    pub model: ModelConfig,
    pub data: DataMeta,
    pub config: TrainConfig,
}

/// The figures of a finished run (printed as JSON by the binary).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub device: String,
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

pub fn pick_device(cfg: &TrainConfig) -> Device {
    if cfg.cuda {
        Device::cuda_if_available()
    } else {
        Device::Cpu
    }
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

pub fn build_model(cfg: &TrainConfig, meta: &DataMeta, device: Device) -> Result<Loaded> {
    let need = meta.image.as_ref().map_or(0, |g| g.n_patches() + 3);
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
    let lcfg = LoaderConfig { shuffle: false, ..LoaderConfig::from_train(cfg, 0, 1) };
    let mut loader = Loader::new(shards.to_vec(), meta.clone(), lcfg, LoaderState::default())?;
    let _guard = tch::no_grad_guard();
    let (mut sum, mut n) = (0.0, 0usize);
    let max_len = cfg.model.max_len as usize;
    for _ in 0..cfg.eval_batches {
        let mut ex = vec![];
        while ex.len() < cfg.batch_size && loader.state().epoch == 0 {
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

pub fn train(args: &TrainArgs) -> Result<Summary> {
    let cfg = &args.config;
    cfg.check().map_err(anyhow::Error::msg)?;
    if cfg.torch_threads > 0 {
        tch::set_num_threads(cfg.torch_threads as i32);
    }
    let corpus = Corpus::open(&args.inputs, cfg.eval_input.as_deref(), cfg.holdout_last_shard)?;
    let device = pick_device(cfg);
    let Loaded { mut vs, model } = build_model(cfg, &corpus.meta, device)?;
    let mut opt = AdamW::new(&vs, cfg);
    // Rank 0 writes into --output; every other rank keeps its own log and checkpoints
    // (its loader position differs) in a sub-folder.
    let run_dir = if args.rank == 0 { args.output.clone() } else { args.output.join(format!("rank-{}", args.rank)) };
    fs::create_dir_all(&run_dir).with_context(|| run_dir.display().to_string())?;
    let log_path = run_dir.join(LOG);

    let mut step = 0u64;
    let mut loader_state = LoaderState::default();
    match latest_checkpoint(&run_dir)? {
        Some(ckpt) if args.resume => {
            let st = read_state(&ckpt)?;
            if st.model != cfg.model || st.data != corpus.meta || st.seed != cfg.seed || st.rank != args.rank || st.world_size != args.world_size {
                bail!(
                    "{}: checkpoint was made with another model, tokenizer, seed or rank layout (model {:?}, seed {}, rank {}/{}); resume with the same settings",
                    ckpt.display(),
                    st.model,
                    st.seed,
                    st.rank,
                    st.world_size
                );
            }
            load_weights(&mut vs, &ckpt)?;
            opt.load(&ckpt.join(OPTIM_FILE), st.step).with_context(|| format!("{}: loading optimiser state", ckpt.display()))?;
            step = st.step;
            loader_state = st.loader;
            truncate_log(&log_path, step)?;
            tracing::info!("resumed from {} at step {step}", ckpt.display());
        }
        Some(ckpt) => bail!("{} already holds a checkpoint ({}); pass --resume to continue it, or choose another --output", run_dir.display(), ckpt.display()),
        None => {
            let _ = fs::remove_file(&log_path);
        }
    }
    let total = cfg.steps;
    let start_step = step;
    let mut dist = if args.world_size > 1 {
        tracing::info!("rank {}/{}: connecting via {}", args.rank, args.world_size, args.dist_addr);
        Dist::connect(&args.dist_addr, args.rank, args.world_size, std::time::Duration::from_secs(300))?
    } else {
        Dist::single()
    };
    dist.agree("the step to start from (resume every rank from its own checkpoint)", step)?;
    let fingerprint = blake3::hash(serde_json::to_string(cfg)?.as_bytes());
    dist.agree("the [train] config", u64::from_le_bytes(fingerprint.as_bytes()[..8].try_into().unwrap()))?;
    opt.prime_grads();
    let lcfg = LoaderConfig::from_train(cfg, args.rank, args.world_size);
    let mut loader = Loader::new(corpus.train.clone(), corpus.meta.clone(), lcfg, loader_state)?;
    let mut log = fs::OpenOptions::new().create(true).append(true).open(&log_path).with_context(|| log_path.display().to_string())?;
    let parameters: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
    tracing::info!("model: {parameters} parameters on {device:?}; {} train shards, {} eval shards", corpus.train.len(), corpus.eval.len());

    let pb = indicatif::ProgressBar::new(total);
    pb.set_style(indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps {msg} [{elapsed_precise}<{eta_precise}]").unwrap());
    pb.set_position(step);

    let t0 = Instant::now();
    let mut win = Instant::now();
    let (mut win_tokens, mut win_samples, mut win_n) = (0usize, 0usize, 0usize);
    let (mut all_tokens, mut all_samples) = (0usize, 0usize);
    // Losses and the gradient norm stay on the device between log lines: reading one
    // waits for the GPU, and a wait every step leaves it idle while the CPU queues the
    // optimiser and the next batch.
    let mut win_loss = Tensor::zeros([], (Kind::Float, device));
    let mut last_loss = f64::NAN;
    let mut last_eval = None;
    let mut last_ckpt = None;
    let max_len = cfg.model.max_len as usize;
    let stop = args.stop_at.unwrap_or(total).min(total);
    while step < stop {
        let lr = lr_at(cfg, step, total);
        let mut step_loss = Tensor::zeros([], (Kind::Float, device));
        for _ in 0..cfg.grad_accum {
            let b = next_batch(&mut loader, cfg.batch_size, cfg.seed, &cfg.tasks, max_len)?;
            let loss = model.loss(&DeviceBatch::new(&b, device));
            (&loss / cfg.grad_accum as f64).backward();
            step_loss += loss.detach() / cfg.grad_accum as f64;
            win_tokens += b.tokens;
            win_samples += b.samples;
        }
        if dist.world() > 1 {
            let mut flat = opt.flat_grads();
            flat.push(step_loss.double_value(&[]) as f32);
            dist.all_reduce_mean(&mut flat).context("averaging gradients across ranks")?;
            step_loss = Tensor::from(flat.pop().unwrap()).to_device(device);
            opt.set_flat_grads(&flat);
        }
        let grad_norm = opt.clip_grad_norm(cfg.grad_clip);
        opt.apply(lr);
        opt.zero_grad();
        step += 1;
        pb.set_position(step);
        win_loss += &step_loss;
        win_n += 1;
        let at_end = step == stop;
        let checkpoint = at_end || (cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0);
        let mut eval_loss = None;
        if args.rank == 0 && cfg.eval_every > 0 && (step % cfg.eval_every == 0 || at_end) {
            eval_loss = evaluate(&model, &corpus.eval, &corpus.meta, cfg, device)?;
            if eval_loss.is_some() {
                last_eval = eval_loss;
            }
        }
        if step % cfg.log_every.max(1) == 0 || at_end || eval_loss.is_some() || checkpoint {
            let mean_loss = win_loss.double_value(&[]) / win_n.max(1) as f64;
            // A non-finite loss in the window poisons the mean: stop before logging or
            // checkpointing weights that may already be NaN.
            if !mean_loss.is_finite() {
                bail!("loss became {mean_loss} in steps {}..={step}; lower lr or check the data", step + 1 - win_n as u64);
            }
            last_loss = step_loss.double_value(&[]);
            let secs = win.elapsed().as_secs_f64().max(1e-9);
            let mut line = serde_json::json!({
                "step": step,
                "loss": mean_loss,
                "lr": lr,
                "tokens_per_s": win_tokens as f64 / secs,
                "samples_per_s": win_samples as f64 / secs,
                "grad_norm": grad_norm.double_value(&[]),
                "epoch": loader.state().epoch,
                "elapsed_s": t0.elapsed().as_secs_f64(),
                // Wall-clock time, so a GPU utilisation trace (nvidia-smi) can be cut to the steps.
                "time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
            });
            if let Some(e) = eval_loss {
                line["eval_loss"] = e.into();
            }
            writeln!(log, "{line}").with_context(|| log_path.display().to_string())?;
            log.flush()?;
            let msg = format!(
                "loss {:.4} lr {:.2e} {:.0} tok/s {:.1} samples/s{}",
                mean_loss,
                lr,
                win_tokens as f64 / secs,
                win_samples as f64 / secs,
                eval_loss.map(|e| format!(" eval {e:.4}")).unwrap_or_default()
            );
            pb.set_message(msg.clone());
            if pb.is_hidden() {
                eprintln!("step {step}/{total} {msg}");
            }
            all_tokens += win_tokens;
            all_samples += win_samples;
            (win_tokens, win_samples, win_n) = (0, 0, 0);
            win_loss = Tensor::zeros([], (Kind::Float, device));
            win = Instant::now();
        }
        if checkpoint {
            let state = CheckpointState {
                step,
                total_steps: total,
                loader: loader.state(),
                rank: args.rank,
                world_size: args.world_size,
                seed: cfg.seed,
                model: cfg.model.clone(),
                data: corpus.meta.clone(),
                config: cfg.clone(),
            };
            last_ckpt = Some(save_checkpoint(&run_dir, &vs, &opt, &state, cfg.keep_checkpoints)?);
        }
    }
    pb.finish_and_clear();
    let seconds = t0.elapsed().as_secs_f64();
    Ok(Summary {
        device: format!("{device:?}"),
        start_step,
        steps: step,
        final_loss: last_loss,
        eval_loss: last_eval,
        seconds,
        tokens_per_s: all_tokens as f64 / seconds.max(1e-9),
        samples_per_s: all_samples as f64 / seconds.max(1e-9),
        parameters,
        checkpoint: last_ckpt.or(latest_checkpoint(&run_dir)?),
    })
}

/// Loads a run's latest checkpoint in this (fresh) process and evaluates it.
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
    let device = pick_device(&args.config);
    let Loaded { mut vs, model } = build_model(&cfg, &corpus.meta, device)?;
    load_weights(&mut vs, &ckpt)?;
    let eval = evaluate(&model, &corpus.eval, &corpus.meta, &cfg, device)?;
    Ok(serde_json::json!({ "checkpoint": ckpt, "step": st.step, "eval_loss": eval }))
}
