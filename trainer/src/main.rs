//! `m6-train`: the trainer binary (`m6corpus train ARGS` runs it with the same ARGS).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use m6_pipeline::config::{stage_config, PipelineConfig};
use m6_trainer::data::{next_batch, Corpus, Loader, LoaderConfig, Position};
use m6_trainer::launch::{self, LaunchFlags};
use m6_trainer::train::{eval_checkpoint, train, TrainArgs};
use m6_trainer::TrainConfig;

#[derive(Parser, Debug)]
#[command(name = "m6-train", version, about = "Pretrain an M6-style prefix-LM transformer on m6corpus sample datasets.")]
struct Cli {
    /// Sample dataset folders (made by `m6corpus tokenize`); default: `[train] input` of --config.
    #[arg(long = "input")]
    inputs: Vec<PathBuf>,
    /// Run folder: log.jsonl and checkpoints/; default: `[train] output` of --config.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Optimiser steps in total (overrides `[train] steps`).
    #[arg(long)]
    steps: Option<u64>,
    /// Continue from the run folder's latest checkpoint.
    #[arg(long)]
    resume: bool,
    /// pipeline.toml whose `[train]` section holds the trainer config.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a config field: KEY=VALUE (e.g. model.d_model=128, lr=3e-4). Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// This process's data-parallel rank (default: $RANK from torchrun, $SLURM_PROCID under srun, else 0).
    #[arg(long)]
    rank: Option<u64>,
    /// Number of data-parallel ranks (default: $WORLD_SIZE, $SLURM_NTASKS, else 1).
    #[arg(long)]
    world_size: Option<u64>,
    /// GPU index on this node (default: $LOCAL_RANK, $SLURM_LOCALID, else 0).
    #[arg(long)]
    local_rank: Option<u64>,
    /// host:port of rank 0's rendezvous (default: $MASTER_ADDR:$MASTER_PORT, $M6_DIST_ADDR,
    /// under Slurm the first node of $SLURM_JOB_NODELIST, else 127.0.0.1:29500).
    #[arg(long)]
    dist_addr: Option<String>,
    /// Stop after this step (with a checkpoint) while keeping the schedule of --steps.
    #[arg(long)]
    stop_at: Option<u64>,
    /// Train on the CPU even when CUDA is available.
    #[arg(long)]
    cpu: bool,
    /// Load the run's latest checkpoint and print its held-out loss as JSON; no training.
    #[arg(long)]
    eval_only: bool,
    /// Benchmark the loader alone for three epochs (model replaced by a no-op); prints JSON.
    #[arg(long)]
    loader_bench: bool,
    /// Log level filter.
    #[arg(long, default_value = "info")]
    log: String,
    /// Print the summary as JSON. It always is (one JSON object on stdout, logs on
    /// stderr); the flag is accepted so every `m6corpus` subcommand takes `--json`.
    #[arg(long)]
    json: bool,
}

fn args(cli: &Cli) -> Result<TrainArgs> {
    let (mut settings, mut inputs, mut output) = (toml::Table::new(), vec![], None);
    if let Some(path) = &cli.config {
        let pc = PipelineConfig::load(path)?;
        // `[corpus] threads` applies to the trainer's CPU threads unless [train] says otherwise.
        if pc.corpus.threads > 0 {
            settings.insert("torch_threads".into(), toml::Value::Integer(pc.corpus.threads as i64));
        }
        if let Some(s) = pc.sections_for("train").first() {
            settings.extend(s.settings.clone());
            inputs = s.inputs.iter().map(|p| pc.resolve(p)).collect();
            output = s.output.as_ref().map(|p| pc.resolve(p));
        }
    }
    let mut config: TrainConfig = stage_config("train", &settings, &cli.sets)?;
    if let Some(s) = cli.steps {
        config.steps = s;
    }
    if cli.cpu {
        config.cuda = false;
    }
    if !cli.inputs.is_empty() {
        inputs = cli.inputs.clone();
    }
    let output = cli.output.clone().or(output);
    let Some(output) = output else { bail!("--output RUN_DIR is required (or `output` in the [train] section of --config)") };
    if inputs.is_empty() {
        bail!("--input SAMPLES_DIR is required (or `input` in the [train] section of --config)");
    }
    let flags = LaunchFlags { rank: cli.rank, world_size: cli.world_size, local_rank: cli.local_rank, dist_addr: cli.dist_addr.clone() };
    let launch = launch::resolve(&flags, &|k| std::env::var(k).ok()).map_err(anyhow::Error::msg)?;
    Ok(TrainArgs { inputs, output, config, resume: cli.resume, launch, stop_at: cli.stop_at })
}

/// Three epochs of this rank's lanes through the full loader path (read, shuffle,
/// examples, padded batches), with nothing consuming the batches.
fn loader_bench(a: &TrainArgs) -> Result<serde_json::Value> {
    let mut cfg = a.config.clone();
    let corpus = Corpus::open(&a.inputs, None, false)?;
    if cfg.model.max_len == 0 {
        let patches = corpus.meta.image.as_ref().filter(|_| corpus.holds_images().unwrap_or(true)).map(|g| g.n_patches());
        cfg.model.max_len = cfg.default_max_len(corpus.sample_max_len, patches);
    }
    let parquet_bytes: u64 = corpus.train.iter().map(|s| std::fs::metadata(&s.path).map(|m| m.len()).unwrap_or(0)).sum();
    let rows: u64 = corpus.train.iter().map(|s| s.rows).sum();
    let (rank, world) = (a.launch.rank, a.launch.world_size);
    let lcfg = LoaderConfig::from_train(&cfg, rank, world);
    let lanes = lcfg.lanes;
    let mut loader = Loader::new(corpus.train.clone(), corpus.meta.clone(), lcfg, &Position::start(lanes))?;
    let t0 = Instant::now();
    let (mut samples, mut tokens, mut batches) = (0usize, 0usize, 0usize);
    const EPOCHS: u64 = 3;
    while loader.epoch() < EPOCHS {
        let b = next_batch(&mut loader, cfg.batch_size, cfg.seed, &cfg.tasks, cfg.model.max_len as usize)?;
        samples += b.samples;
        tokens += b.tokens;
        batches += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "samples": samples,
        "batches": batches,
        "tokens": tokens,
        "dataset_rows": rows,
        "parquet_bytes": parquet_bytes,
        "arrow_bytes_decoded": loader.bytes_read(),
        "seconds": secs,
        "samples_per_s": samples as f64 / secs,
        "tokens_per_s": tokens as f64 / secs,
        "epochs": EPOCHS,
        "parquet_mb_per_s": (EPOCHS * parquet_bytes) as f64 / 1e6 / secs,
        "peak_rss_bytes": m6_trainer::peak_rss_bytes(),
        "reader_threads": cfg.reader_threads,
        "batch_size": cfg.batch_size,
    }))
}

fn run(cli: &Cli) -> Result<()> {
    let a = args(cli)?;
    let out = if cli.loader_bench {
        loader_bench(&a)?
    } else if cli.eval_only {
        eval_checkpoint(&a)?
    } else {
        serde_json::to_value(train(&a)?)?
    };
    println!("{}", serde_json::to_string(&out).context("summary")?);
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _always_json = cli.json;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", m6_pipeline::error::chain_message(e.chain()));
            ExitCode::FAILURE
        }
    }
}
