//! `m6corpus`: the command line. Argument parsing and printing only; every behaviour
//! lives in the library crates, which the tests call directly.
//!
//! Stages are listed once, in the registry [`STAGES`]: adding a stage is its
//! crate (a config struct and a `StageFactory`) plus one line there, which gives it
//! its subcommand, its pipeline.toml section and its place in `m6corpus run`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use m6_pipeline::config::{stage_config, stage_config_with_flags, CorpusConfig, FlagValue, PipelineConfig, StageSection};
use m6_pipeline::{Flag, FlagKind, RunOptions, RunSummary, StageFactory};

mod filter_cmd;
mod tokenizer_cmd;

#[derive(Parser, Debug)]
#[command(name = "m6corpus", version, about = "Build Chinese multimodal pretraining corpora: crawl, extract, dedup, filter, tokenize, train.")]
struct Cli {
    /// Log level filter (error, warn, info, debug, trace), or RUST_LOG syntax.
    #[arg(long, global = true, default_value = "info")]
    log: String,
    #[command(subcommand)]
    cmd: Cmd,
}

/// What the binary knows of a stage: its name, one line of help, its flags (data the
/// stage crate declares next to its config) and how to run it.
struct StageEntry {
    name: &'static str,
    about: &'static str,
    flags: &'static [Flag],
    run: fn(&CommonArgs, Vec<(&'static str, FlagValue)>) -> Result<i32>,
    section: fn(&StageSection, &Path, &RunOptions) -> Result<RunSummary>,
    /// Reads flag values into the stage's config (for the registry's own test).
    #[cfg_attr(not(test), allow(dead_code))]
    config_of: fn(&[(&'static str, FlagValue)]) -> Result<()>,
}

fn config_of<F: StageFactory>(flags: &[(&'static str, FlagValue)]) -> Result<()> {
    stage_config_with_flags::<F::Config>(F::NAME, &Default::default(), &[], flags)?;
    Ok(())
}

macro_rules! stage {
    ($factory:ty, $about:literal) => {
        StageEntry {
            name: <$factory as StageFactory>::NAME,
            about: $about,
            flags: <$factory as StageFactory>::FLAGS,
            run: stage_cmd::<$factory>,
            section: section_run::<$factory>,
            config_of: config_of::<$factory>,
        }
    };
}

/// The stage registry: adding a stage is its crate plus one line here, which gives it
/// its subcommand (with its flags), its pipeline.toml section and its place in `run`.
const STAGES: &[StageEntry] = &[
    stage!(m6_stage_ingest::IngestFactory, "Local files (JSONL, text, image folders with captions, WARC) into a dataset"),
    stage!(m6_stage_crawl::CrawlFactory, "Fetch pages and images from seed lists"),
    stage!(m6_stage_extract::ExtractFactory, "Pages into documents and image-caption pairs"),
    stage!(m6_stage_dedup::DedupFactory, "Remove exact and near duplicates across every shard"),
    stage!(m6_stage_filter::FilterFactory, "Apply quality rules, recording each drop with its reason"),
    stage!(m6_stage_tokenize::TokenizeFactory, "Documents and pairs into training samples"),
];

/// Every pipeline.toml stage section: the registry's stages and `train` (the m6-train binary).
fn section_names() -> Vec<&'static str> {
    STAGES.iter().map(|s| s.name).chain(["train"]).collect()
}

/// `m6corpus STAGE`: the flags every stage takes, then the stage's own.
fn stage_command(st: &StageEntry) -> clap::Command {
    // about after augment_args, which would set CommonArgs' own doc line.
    let mut c = CommonArgs::augment_args(clap::Command::new(st.name)).about(st.about);
    for f in st.flags {
        let a = clap::Arg::new(f.name).long(f.name).help(f.help);
        c = c.arg(match f.kind {
            FlagKind::Text { value_name, values } if values.is_empty() => a.value_name(value_name),
            FlagKind::Text { value_name, values } => a.value_name(value_name).value_parser(clap::builder::PossibleValuesParser::new(values)),
            FlagKind::Int => a.value_name("N").value_parser(clap::value_parser!(i64)),
            FlagKind::Float => a.value_name("X").value_parser(clap::value_parser!(f64)),
            FlagKind::Switch { .. } => a.action(clap::ArgAction::SetTrue),
            FlagKind::List { value_name, many, delimiter, bare, .. } => {
                let mut a = a.value_name(value_name).action(clap::ArgAction::Append).num_args(if many { clap::builder::ValueRange::new(1..) } else { clap::builder::ValueRange::new(1..=1) });
                if let Some(d) = delimiter {
                    a = a.value_delimiter(d);
                }
                if let Some(b) = bare {
                    a = a.num_args(0..=1).default_missing_value(b);
                }
                a
            }
        });
    }
    c
}

/// The values of the stage flags given on the command line, as config fields.
fn flag_values(st: &StageEntry, m: &clap::ArgMatches) -> Vec<(&'static str, FlagValue)> {
    let mut out = vec![];
    for f in st.flags {
        let v = match f.kind {
            FlagKind::Text { .. } => m.get_one::<String>(f.name).map(|v| FlagValue::Set(toml::Value::String(v.clone()))),
            FlagKind::Int => m.get_one::<i64>(f.name).map(|v| FlagValue::Set(toml::Value::Integer(*v))),
            FlagKind::Float => m.get_one::<f64>(f.name).map(|v| FlagValue::Set(toml::Value::Float(*v))),
            FlagKind::Switch { value } => m.get_flag(f.name).then_some(FlagValue::Set(toml::Value::Boolean(value))),
            FlagKind::List { append, .. } => m.get_many::<String>(f.name).map(|vs| {
                let vs: Vec<String> = vs.cloned().collect();
                if append {
                    FlagValue::Append(vs)
                } else {
                    FlagValue::Set(toml::Value::Array(vs.into_iter().map(toml::Value::String).collect()))
                }
            }),
        };
        if let Some(v) = v {
            out.push((f.key, v));
        }
    }
    out
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run one stage, or `all`, as described in pipeline.toml, each section after the
    /// sections that write its inputs.
    Run(RunCmd),
    /// Train, inspect or use a tokenizer vocabulary.
    #[command(subcommand)]
    Tokenizer(tokenizer_cmd::TokenizerCommand),
    /// Train the character n-gram language model the fluency filter uses.
    #[command(subcommand)]
    Lm(filter_cmd::LmCommand),
    /// Train, evaluate or apply the quality classifier the filter's `text.quality` rule uses.
    #[command(subcommand)]
    Quality(filter_cmd::QualityCommand),
    /// Pretrain the M6-style model on a sample dataset (runs the m6-train binary).
    #[command(disable_help_flag = true)]
    Train {
        /// Arguments passed to m6-train (see `m6corpus train --help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Check every shard's checksum, size, row count and schema.
    Verify {
        /// Dataset folders.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Progress of datasets: tasks planned and committed by the stage writing each, and
    /// whether it is complete. Exits 0 when every dataset is complete, 3 otherwise.
    Status {
        /// Dataset folders.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Block until every dataset is complete (waiting for ones not yet started too).
        #[arg(long)]
        wait: bool,
        /// With --wait: give up (exit 3) after this many seconds.
        #[arg(long, value_name = "SECS")]
        wait_timeout: Option<f64>,
        /// Machine-readable output (one JSON object per dataset and line).
        #[arg(long)]
        json: bool,
    },
    /// Summary statistics of a dataset.
    Stats {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Run SQL over datasets with DataFusion.
    Sql {
        /// The query, e.g. "SELECT source, count(*) FROM docs GROUP BY source".
        query: String,
        /// Register a dataset as a table: NAME=DIR (repeatable).
        #[arg(long = "table", value_name = "NAME=DIR", required = true)]
        tables: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// One self-contained HTML page with charts of one or more datasets.
    Report {
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        #[arg(short, long, default_value = "report.html")]
        output: PathBuf,
        /// Print what was written as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Flags every stage takes.
#[derive(Args, Debug, Clone)]
struct CommonArgs {
    /// Input dataset folder(s) (for ingest and crawl: the raw input files or folder).
    #[arg(long, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Output dataset folder.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Read this stage's settings (and [corpus]) from pipeline.toml; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override one config field: KEY=VALUE (TOML value; repeatable; dots for nested keys).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Worker threads (0 = one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// This process runs the tasks whose position modulo --task-count is this index
    /// (e.g. $SLURM_ARRAY_TASK_ID or $JOB_COMPLETION_INDEX).
    #[arg(long, default_value_t = 0)]
    task_index: usize,
    /// How many processes share the stage.
    #[arg(long, default_value_t = 1)]
    task_count: usize,
    /// Roll shards over at this many MiB.
    #[arg(long)]
    shard_mb: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Print the run summary as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    complete: CompletenessArgs,
}

/// How a stage treats input datasets whose writer has not committed every task.
#[derive(Args, Debug, Clone)]
struct CompletenessArgs {
    /// Read input datasets even when their writer has not committed every planned task
    /// (otherwise such an input is an error naming the missing tasks).
    #[arg(long)]
    allow_partial: bool,
    /// Wait until every input dataset exists and is complete (for scheduling stages
    /// of one job side by side, or `run all` over --task-count processes).
    #[arg(long)]
    wait: bool,
    /// With --wait: give up after this many seconds.
    #[arg(long, value_name = "SECS")]
    wait_timeout: Option<f64>,
}

impl CompletenessArgs {
    fn apply(&self, opts: &mut RunOptions) -> Result<()> {
        opts.allow_partial = self.allow_partial;
        opts.wait = self.wait;
        opts.wait_timeout = self.wait_timeout.map(secs).transpose()?;
        Ok(())
    }
}

fn secs(s: f64) -> Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(s).map_err(|e| anyhow::anyhow!("--wait-timeout {s}: {e}"))
}

#[derive(Args, Debug)]
struct RunCmd {
    /// A stage name, or `all` for every stage section, each after the sections writing
    /// its inputs (independent ones in file order). `all` with
    /// --task-count above 1 implies --wait: each stage waits for the processes still
    /// finishing the stage before it.
    stage: String,
    #[arg(long, default_value = "pipeline.toml")]
    config: PathBuf,
    #[arg(long, default_value_t = 0)]
    task_index: usize,
    #[arg(long, default_value_t = 1)]
    task_count: usize,
    #[arg(long)]
    quiet: bool,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    complete: CompletenessArgs,
}

fn main() {
    // The derived commands, plus one subcommand per registered stage; help lists
    // `run`, the stages, then the rest.
    let mut cmd = Cli::command();
    for st in STAGES {
        cmd = cmd.subcommand(stage_command(st));
    }
    let order: Vec<String> = std::iter::once("run".to_string())
        .chain(STAGES.iter().map(|s| s.name.to_string()))
        .chain(cmd.get_subcommands().map(|c| c.get_name().to_string()).filter(|n| n != "run" && !STAGES.iter().any(|s| s.name == n)))
        .collect();
    for (i, name) in order.iter().enumerate() {
        cmd = cmd.mut_subcommand(name, |c| c.display_order(i));
    }
    let matches = cmd.get_matches();
    let log = matches.get_one::<String>("log").cloned().unwrap_or_else(|| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
    let result = match matches.subcommand() {
        Some((name, sub)) if STAGES.iter().any(|s| s.name == name) => {
            let st = STAGES.iter().find(|s| s.name == name).unwrap();
            CommonArgs::from_arg_matches(sub).map_err(anyhow::Error::from).and_then(|common| (st.run)(&common, flag_values(st, sub)))
        }
        _ => match Cli::from_arg_matches(&matches) {
            Ok(cli) => dispatch(cli.cmd),
            Err(e) => e.exit(),
        },
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {}", m6_pipeline::error::chain_message(e.chain()));
            std::process::exit(1);
        }
    }
}

fn dispatch(cmd: Cmd) -> Result<i32> {
    match cmd {
        Cmd::Run(r) => run_pipeline(r),
        Cmd::Tokenizer(c) => c.run().map(|_| 0).map_err(|e| anyhow::anyhow!(e)),
        Cmd::Lm(c) => c.run().map(|_| 0).map_err(|e| anyhow::anyhow!(e)),
        Cmd::Quality(c) => c.run().map(|_| 0).map_err(|e| anyhow::anyhow!(e)),
        Cmd::Train { args } => train(&args),
        Cmd::Verify { dirs, json } => verify(&dirs, json),
        Cmd::Status { dirs, wait, wait_timeout, json } => status(&dirs, wait, wait_timeout, json),
        Cmd::Stats { dir, json } => {
            let stats = m6_inspect::stats(&dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print!("{stats}");
            }
            Ok(0)
        }
        Cmd::Sql { query, tables, json } => {
            let tables = tables
                .iter()
                .map(|t| t.split_once('=').map(|(n, d)| (n.to_string(), PathBuf::from(d))).context(format!("--table `{t}`: expected NAME=DIR")))
                .collect::<Result<Vec<_>>>()?;
            let out = m6_inspect::sql(&query, &tables)?;
            if json {
                println!("{}", m6_inspect::to_json(&out)?);
            } else {
                println!("{}", m6_inspect::to_table(&out)?);
            }
            Ok(0)
        }
        Cmd::Report { dirs, output, json } => {
            m6_inspect::report(&dirs, &output)?;
            if json {
                let bytes = std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
                println!("{}", serde_json::json!({ "output": output, "datasets": dirs, "bytes": bytes }));
            } else {
                println!("wrote {}", output.display());
            }
            Ok(0)
        }
    }
}

fn verify(dirs: &[PathBuf], json: bool) -> Result<i32> {
    let mut bad = false;
    for d in dirs {
        let r = m6_pipeline::verify(d)?;
        bad |= !r.ok();
        if json {
            println!("{}", serde_json::to_string(&serde_json::json!({ "dataset": d, "report": r }))?);
        } else {
            for p in &r.problems {
                println!("BAD {p}");
            }
            for o in &r.orphans {
                println!("orphan (not in manifest, ignored) {o}");
            }
            println!(
                "{}: {} in {} dataset(s), {} shards, {} rows, {} bytes",
                d.display(),
                if r.ok() { "ok" } else { "FAILED" },
                r.datasets,
                r.shards,
                r.rows,
                r.bytes
            );
        }
    }
    Ok(if bad { 2 } else { 0 })
}

fn status(dirs: &[PathBuf], wait: bool, wait_timeout: Option<f64>, json: bool) -> Result<i32> {
    if wait {
        let timeout = wait_timeout.map(secs).transpose()?;
        let waited = m6_pipeline::status::wait_complete(dirs, timeout, |d, s| match s {
            Some(s) => tracing::info!(dataset = %d.display(), committed = s.committed, planned = s.planned.unwrap_or(0), "waiting for the dataset to complete"),
            None => tracing::info!(dataset = %d.display(), "waiting for the dataset to appear"),
        });
        if let Err(e) = waited {
            eprintln!("error: {e}");
            return Ok(3);
        }
    }
    let mut incomplete = false;
    for d in dirs {
        let st = m6_pipeline::status(d)?;
        incomplete |= !st.complete;
        if json {
            println!("{}", serde_json::to_string(&st)?);
        } else {
            println!("{st}");
        }
    }
    Ok(if incomplete { 3 } else { 0 })
}

/// Builds the config of stage F from (in order) defaults, the pipeline.toml section,
/// `--set` overrides and the stage's own flags.
fn stage_cmd<F: StageFactory>(c: &CommonArgs, flags: Vec<(&'static str, FlagValue)>) -> Result<i32> {
    let (corpus, section) = match &c.config {
        Some(p) => {
            let cfg = PipelineConfig::load(p)?;
            cfg.check_stage_names(&section_names())?;
            let section = cfg.sections_for(F::NAME).first().map(|s| resolve_section(&cfg, s));
            (cfg.corpus.clone(), section)
        }
        None => (CorpusConfig::default(), None),
    };
    let settings = section.as_ref().map(|s| s.settings.clone()).unwrap_or_default();
    let config: F::Config = stage_config_with_flags(F::NAME, &settings, &c.set, &flags)?;
    let inputs = if c.input.is_empty() { section.as_ref().map(|s| s.inputs.clone()).unwrap_or_default() } else { c.input.clone() };
    let output = c.output.clone().or_else(|| section.as_ref().and_then(|s| s.output.clone()));
    let Some(output) = output else { bail!("{}: --output is required (or an `output` in its pipeline.toml section)", F::NAME) };
    if inputs.is_empty() {
        bail!("{}: --input is required (or an `input` in its pipeline.toml section)", F::NAME);
    }
    let mut opts = RunOptions::from_corpus(&corpus);
    if let Some(t) = c.threads {
        opts.threads = t;
    }
    if let Some(mb) = c.shard_mb {
        opts.limits.shard_bytes = mb.max(1) << 20;
    }
    opts.task_index = c.task_index;
    opts.task_count = c.task_count;
    opts.progress = !c.quiet;
    c.complete.apply(&mut opts)?;
    let summary = run_one::<F>(config, &inputs, &output, &opts)?;
    print_summary(&summary, &output, c.json)?;
    Ok(0)
}

fn run_one<F: StageFactory>(config: F::Config, inputs: &[PathBuf], output: &Path, opts: &RunOptions) -> Result<RunSummary> {
    tracing::debug!(stage = F::NAME, ?config, "config");
    let stage = F::build(config).map_err(|e| anyhow::anyhow!("{}: {e}", F::NAME))?;
    Ok(m6_pipeline::run_stage(stage.as_ref(), inputs, output, opts)?)
}

fn resolve_section(cfg: &PipelineConfig, s: &StageSection) -> StageSection {
    StageSection {
        stage: s.stage.clone(),
        inputs: s.inputs.iter().map(|p| cfg.resolve(p)).collect(),
        output: s.output.as_ref().map(|p| cfg.resolve(p)),
        settings: s.settings.clone(),
    }
}

fn print_summary(s: &RunSummary, output: &Path, json: bool) -> Result<()> {
    // What the stage recorded about its output as a whole (ingest's skipped files,
    // dedup's fingerprint) lives in the manifest, not in the per-task counts; a script
    // reading `--json` should not have to open the manifest to learn of it.
    let properties = m6_pipeline::Dataset::open(output).map(|d| d.manifest().properties.clone()).unwrap_or_default();
    if json {
        let mut v = serde_json::to_value(s)?;
        if !properties.is_empty() {
            v["properties"] = serde_json::to_value(&properties)?;
        }
        println!("{v}");
    } else {
        println!(
            "{} -> {}: {} tasks run, {} skipped; rows in {}, rows out {}; {:.1} MB in, {:.1} MB out; {:.2} s ({:.0} rows/s)",
            s.stage,
            output.display(),
            s.tasks_run,
            s.tasks_skipped,
            s.rows_in,
            s.rows_out,
            s.bytes_in as f64 / 1e6,
            s.bytes_out as f64 / 1e6,
            s.seconds,
            s.rows_per_s
        );
        for (k, v) in &s.counts {
            println!("  {k}: {v}");
        }
        if let Some(n) = properties.get("ingest.skipped_files") {
            println!("  ingest.skipped_files: {n} (examples under ingest.skipped_examples in the manifest)");
        }
        if let Some(serde_json::Value::Object(kinds)) = properties.get("ingest.skipped_extensions") {
            if !kinds.is_empty() {
                let kinds: Vec<String> = kinds.iter().map(|(e, n)| format!("{} {n}", if e.is_empty() { "(no extension)" } else { e })).collect();
                println!("  ingest.skipped_extensions: {}", kinds.join(", "));
            }
        }
    }
    Ok(())
}

fn run_pipeline(r: RunCmd) -> Result<i32> {
    let cfg = PipelineConfig::load(&r.config)?;
    cfg.check_stage_names(&section_names())?;
    // Sections come in data order: each after the sections writing its inputs.
    let sections: Vec<StageSection> = cfg
        .sections
        .iter()
        .filter(|s| r.stage == "all" || s.stage == r.stage)
        .map(|s| resolve_section(&cfg, s))
        .collect();
    if sections.is_empty() {
        bail!("{}: no [{}] section", r.config.display(), r.stage);
    }
    let mut opts = RunOptions::from_corpus(&cfg.corpus);
    opts.task_index = r.task_index;
    opts.task_count = r.task_count;
    opts.progress = !r.quiet;
    r.complete.apply(&mut opts)?;
    if r.stage == "all" && r.task_count > 1 && !opts.allow_partial && !opts.wait {
        // Each of the N processes runs its slice of every stage; a stage's input is
        // complete only when all N have finished the stage before, so they wait for it.
        tracing::info!("run all with --task-count {}: each stage waits until its inputs are complete", r.task_count);
        opts.wait = true;
    }
    for s in sections {
        let Some(output) = s.output.clone() else { bail!("{}: [{}] has no output", r.config.display(), s.stage) };
        let ctx = || format!("{}: [{}]", r.config.display(), s.stage);
        let summary = match s.stage.as_str() {
            "train" => {
                let mut args = vec!["--config".to_string(), r.config.display().to_string()];
                args.extend(s.inputs.iter().flat_map(|i| ["--input".to_string(), i.display().to_string()]));
                args.extend(["--output".to_string(), output.display().to_string()]);
                let code = train(&args)?;
                if code != 0 {
                    bail!("{}: m6-train exited with {code}", ctx());
                }
                continue;
            }
            other => match STAGES.iter().find(|st| st.name == other) {
                Some(st) => (st.section)(&s, &output, &opts),
                None => bail!("{}: unknown stage `{other}` (stages: {})", r.config.display(), section_names().join(", ")),
            },
        }
        .with_context(ctx)?;
        print_summary(&summary, &output, r.json)?;
    }
    Ok(0)
}

fn section_run<F: StageFactory>(s: &StageSection, output: &Path, opts: &RunOptions) -> Result<RunSummary> {
    let config: F::Config = stage_config(F::NAME, &s.settings, &[])?;
    if s.inputs.is_empty() {
        bail!("no `input`");
    }
    run_one::<F>(config, &s.inputs, output, opts)
}

/// Runs the trainer binary, which is built separately because it links libtorch.
fn train(args: &[String]) -> Result<i32> {
    // m6-train reads its `[train]` section itself but does not know the stage registry:
    // a misspelt section in the same file is refused here, as for every stage command.
    let config = args.iter().enumerate().find_map(|(i, a)| if a == "--config" { args.get(i + 1).map(String::as_str) } else { a.strip_prefix("--config=") });
    if let Some(p) = config {
        PipelineConfig::load(Path::new(p))?.check_stage_names(&section_names())?;
    }
    let exe = std::env::current_exe().ok();
    let beside = exe.as_ref().and_then(|e| e.parent()).map(|d| d.join("m6-train"));
    let candidates = [
        std::env::var_os("M6_TRAIN_BIN").map(PathBuf::from),
        beside,
        Some(PathBuf::from("target/release/m6-train")),
    ];
    let Some(bin) = candidates.into_iter().flatten().find(|p| p.is_file()) else {
        bail!("m6-train not found beside m6corpus, in target/release, or in $M6_TRAIN_BIN: build it with `make trainer`");
    };
    let status = std::process::Command::new(&bin).args(args).status().with_context(|| format!("running {}", bin.display()))?;
    Ok(status.code().unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag of every registered stage names a field its config reads, with a
    /// value of the right type, and the registry builds a valid clap command.
    #[test]
    fn every_stage_flag_sets_a_config_field() {
        let mut cmd = Cli::command();
        for st in STAGES {
            cmd = cmd.subcommand(stage_command(st));
            for f in st.flags {
                let v = match f.kind {
                    FlagKind::Text { values, .. } => FlagValue::Set(toml::Value::String(values.first().copied().unwrap_or("x").to_string())),
                    FlagKind::Int => FlagValue::Set(toml::Value::Integer(1)),
                    FlagKind::Float => FlagValue::Set(toml::Value::Float(0.5)),
                    FlagKind::Switch { value } => FlagValue::Set(toml::Value::Boolean(value)),
                    FlagKind::List { append: true, .. } => FlagValue::Append(vec!["x".into()]),
                    FlagKind::List { .. } => FlagValue::Set(toml::Value::Array(vec![toml::Value::String("127.0.0.0/8".into())])),
                };
                (st.config_of)(&[(f.key, v)]).unwrap_or_else(|e| panic!("m6corpus {} --{}: {e}", st.name, f.name));
            }
        }
        cmd.debug_assert();
        let names = section_names();
        assert_eq!(names.len(), STAGES.len() + 1);
    }
}
