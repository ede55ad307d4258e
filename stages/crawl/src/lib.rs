//! The `crawl` stage: seed lists (text, CSV or Parquet, optionally with captions)
//! into a `page` dataset (every fetch attempt's final outcome, failures included)
//! and an `images` side dataset, politely, safely and resumably.
//!
//! Page/image locality guarantee (what `extract` relies on): when an HTML page is
//! fetched, the images its `<img>`s show (largest `srcset`/`<picture>` candidate,
//! else lazy-loading attribute, else `src`: [`srcset::image_url`], the same choice
//! `extract` makes) are fetched with it, and their page
//! rows (content type `image/*`, or the failure) are written right after the page
//! row, in the same Arrow batch, hence in the same shard. Each image row's `url` is
//! the normalised absolute URL (the chosen URL joined to the page's `final_url` or its
//! `<base href>`, fragment removed). An image several pages of a task show (shared
//! icons, logos) is fetched once and written once, right after the first of those
//! pages in the task's write order (round, then seed/queue order), whichever page's
//! fetch reached it first; so the output does not depend on timing.
//!
//! Image bytes are stored once: in the image's `images` row, written by the same task
//! as its page row. That page row keeps no body; its `id` is still made from the URL
//! and the fetched bytes, and equals the image row's `source_id` (the join key;
//! `extract` reads a page shard together with its task's `images` shards). A page of a
//! later round, or of a later crawl into the same output, that shows an image already
//! stored (or failed to fetch) gets no second fetch: its round's page shards name the
//! round that wrote it (`ShardEntry::refers_to`, from a map of URL key to round for
//! stored images and failed fetches, which a resumed or later task reads back from
//! the committed shards), and extract reads that round's `images` shards, and the URL
//! and error columns of its page shards, too.

pub mod crawl;
pub mod fetch;
pub mod html;
pub mod images;
pub mod journal;
pub mod net;
pub mod partition;
pub mod robots;
pub mod seeds;
pub mod srcset;
pub mod urls;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use m6_pipeline::{BoxError, Flag, FlagKind, OutputSpec, RunContext, ShardLimits, Stage, StageFactory, StageRun, Task, TaskInput, TaskOutput};
use m6_schemas::Kind;
use serde::{Deserialize, Serialize};

/// The side dataset holding decoded images.
pub const IMAGES: &str = "images";
/// The `source` value of every row the crawler writes.
pub const SOURCE: &str = "crawl";

/// `[crawl]` in pipeline.toml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrawlConfig {
    /// The User-Agent header. Default "m6corpus-crawler/0.1 (+https://github.com/m6corpus/m6corpus)".
    pub user_agent: String,
    /// The product token matched against robots.txt `User-agent` lines and used for
    /// `X-Robots-Tag: <token>: ...` and `<meta name="<token>">`. Default "m6corpus".
    pub robots_token: String,
    /// Requests in flight at once, over all hosts. Default 32.
    pub concurrency: usize,
    /// Requests in flight at once to one host (scheme, host and port). Default 2.
    pub per_host_concurrency: usize,
    /// Minimum time between the starts of two requests to one host, in ms. Default 250.
    /// A longer `Crawl-delay` in the host's robots.txt (for our token, else `*`) wins.
    pub per_host_delay_ms: u64,
    /// The most a robots.txt `Crawl-delay` may space requests to one host, in ms, so
    /// that a hostile value cannot stall the crawl (0 ignores `Crawl-delay`). Default 30000.
    pub max_crawl_delay_ms: u64,
    /// How long fetched robots.txt rules are used before fetching them again, in
    /// seconds, within a run and across resumed runs (RFC 9309 §2.4). Default 86400.
    pub robots_max_age_s: u64,
    /// How long a DNS answer is reused for new connections, in seconds (0 = resolve
    /// every time). Addresses are checked against the private ranges on every use. Default 60.
    pub dns_cache_s: u64,
    /// TCP/TLS connect timeout in ms. Default 10000.
    pub connect_timeout_ms: u64,
    /// Longest wait for any single read from the socket, in ms. Default 20000.
    pub read_timeout_ms: u64,
    /// Longest time one request may take from sending to the last body byte, in ms
    /// (catches servers that drip bytes slower than any read timeout). Default 60000.
    pub total_timeout_ms: u64,
    /// Redirects followed per URL before recording `too_many_redirects`. Default 5.
    pub max_redirects: u32,
    /// Retries after 5xx, 429 and connection errors (so attempts = 1 + this). Default 3.
    pub max_retries: u32,
    /// First retry delay in ms, doubled per retry, plus jitter up to half of it. Default 500.
    pub backoff_base_ms: u64,
    /// Cap on the exponential delay, in ms. Default 30000.
    pub backoff_max_ms: u64,
    /// A Retry-After longer than this many seconds is not waited for: the failure is
    /// recorded instead. Default 120.
    pub max_retry_after_s: u64,
    /// Bodies (after decompression) larger than this are aborted while streaming and
    /// recorded as `too_large`. Default 16 MiB.
    pub max_body_bytes: u64,
    /// Links are followed from pages at depth below this (seeds are depth 0; 0 = fetch
    /// only the seeds). Default 0.
    pub max_depth: u16,
    /// Domains links may be followed into (a domain includes its sub-domains); empty
    /// means "the host of the page the link is on". Images embedded in a page are
    /// fetched from any host. Default [].
    pub allowed_domains: Vec<String>,
    /// Address ranges (CIDR, e.g. `["127.0.0.0/8", "10.20.0.0/16"]`; `"loopback"` =
    /// 127.0.0.0/8 and ::1) the crawler may connect to although they are private,
    /// loopback, link-local, carrier-grade NAT or otherwise non-public (checked after
    /// DNS resolution and on IP-literal URLs). Cloud metadata endpoints
    /// (169.254.169.254, 169.254.170.2, fd00:ec2::254, 100.100.100.200, 168.63.129.16)
    /// stay refused whatever is listed. Default [] (public addresses only).
    #[serde(deserialize_with = "cidr_list")]
    pub allow_private: Vec<String>,
    /// Fetch the images HTML pages show (`<img>`: srcset, `<picture>`, lazy-loading
    /// attributes, src; see `srcset::image_url`). Default true.
    pub fetch_images: bool,
    /// At most this many images are fetched per page. Default 64.
    pub max_images_per_page: usize,
    /// Downscale images whose longer side exceeds this (aspect kept) before storing
    /// them in `images` (the only copy: the original is not kept); 0 keeps originals.
    /// Default 0.
    pub resize_max_side: u32,
    /// Sort query parameters when normalising URLs. Default false.
    pub sort_query: bool,
    /// Frontier items per round; each round is committed as one set of shards.
    /// Default 256.
    pub round_size: usize,
    /// Rounds fetched at once: rounds are committed in order, and while one waits for
    /// its slowest item the next ones keep fetching. Links found in a round are
    /// fetched from this many rounds later on. Default 8.
    pub rounds_in_flight: usize,
    /// Worker threads of the crawler's tokio runtime. Default 2.
    pub io_threads: usize,
    /// How many host partitions (crawl tasks) the seeds are split into: a host goes to
    /// the partition of its registrable domain's hash, and each partition is crawled
    /// by one of the `--task-count` processes, so per-host politeness, robots.txt and
    /// Crawl-delay hold across machines. More processes than partitions leave the
    /// extra ones idle: set this to at least the task count. Links into another
    /// partition's hosts (only possible with `allowed_domains` naming several
    /// registrable domains) are not followed and are counted as `link.other_partition`.
    /// Default 64.
    pub host_partitions: u32,
    /// Plain-text seed files larger than this many MiB are routed to the partitions
    /// in chunks of this size, shared by the processes (a 100 M-URL list is not one
    /// process's job). Default 64.
    pub seed_chunk_mb: u64,
}

impl Default for CrawlConfig {
    fn default() -> Self {
        CrawlConfig {
            user_agent: "m6corpus-crawler/0.1 (+https://github.com/m6corpus/m6corpus)".into(),
            robots_token: "m6corpus".into(),
            concurrency: 32,
            per_host_concurrency: 2,
            per_host_delay_ms: 250,
            max_crawl_delay_ms: 30_000,
            robots_max_age_s: 86_400,
            dns_cache_s: 60,
            connect_timeout_ms: 10_000,
            read_timeout_ms: 20_000,
            total_timeout_ms: 60_000,
            max_redirects: 5,
            max_retries: 3,
            backoff_base_ms: 500,
            backoff_max_ms: 30_000,
            max_retry_after_s: 120,
            max_body_bytes: 16 << 20,
            max_depth: 0,
            allowed_domains: vec![],
            allow_private: vec![],
            fetch_images: true,
            max_images_per_page: 64,
            resize_max_side: 0,
            sort_query: false,
            round_size: 256,
            rounds_in_flight: 8,
            io_threads: 2,
            host_partitions: 64,
            seed_chunk_mb: 64,
        }
    }
}

/// `allow_private` as a list of ranges; the old boolean form is refused with a
/// message saying what to write instead, rather than silently opening every range.
fn cidr_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Bool(bool),
        One(String),
        List(Vec<String>),
    }
    match Form::deserialize(d)? {
        Form::Bool(false) => Ok(vec![]),
        Form::Bool(true) => Err(serde::de::Error::custom("allow_private = true no longer opens every range: list the ranges to allow, e.g. allow_private = [\"127.0.0.0/8\"]")),
        Form::One(s) => Ok(vec![s]),
        Form::List(l) => Ok(l),
    }
}

pub struct CrawlFactory;

impl StageFactory for CrawlFactory {
    const NAME: &'static str = "crawl";
    type Config = CrawlConfig;
    const FLAGS: &'static [Flag] = &[
        Flag {
            name: "allow-private",
            key: "allow_private",
            help: "Allow these non-public address ranges (CIDR, comma-separated or repeated, e.g. `--allow-private 10.20.0.0/16`); bare `--allow-private` allows loopback only. Cloud metadata addresses are never allowed.",
            kind: FlagKind::List { value_name: "CIDR", many: false, delimiter: Some(','), append: false, bare: Some("loopback") },
        },
        Flag::int("max-depth", "max_depth", "Follow links this many levels from the seeds (0 = seeds only)."),
        Flag::list("allowed-domain", "allowed_domains", "DOMAIN", "A domain links may be followed into (repeatable; default: the page's own host)."),
        Flag::text("user-agent", "user_agent", "UA", "The User-Agent header."),
        Flag::int("resize-max-side", "resize_max_side", "Downscale stored images to fit this many pixels on the longer side."),
    ];
    fn build(cfg: Self::Config) -> Result<Box<dyn Stage>, BoxError> {
        Ok(Box::new(CrawlStage::new(cfg)?))
    }
}

/// Where the runner told this run to write, for the round commits.
#[derive(Clone)]
struct OutCtx {
    output: PathBuf,
    limits: ShardLimits,
}

pub struct CrawlStage {
    cfg: CrawlConfig,
    rt: tokio::runtime::Runtime,
    work: std::sync::Arc<crawl::Worker>,
}

/// One run of the crawler: where it writes, and the split of the seeds into host
/// partitions with each task's partition (set by `plan`).
struct CrawlRun<'a> {
    stage: &'a CrawlStage,
    out: OutCtx,
    split: Option<(std::sync::Arc<partition::SplitPlan>, BTreeMap<String, u32>)>,
}

impl CrawlStage {
    pub fn new(cfg: CrawlConfig) -> Result<Self, BoxError> {
        let bad = |field: &str, why: &str| -> BoxError { format!("[crawl] {field}: {why}").into() };
        if cfg.concurrency == 0 {
            return Err(bad("concurrency", "must be at least 1"));
        }
        if cfg.per_host_concurrency == 0 {
            return Err(bad("per_host_concurrency", "must be at least 1"));
        }
        if cfg.round_size == 0 {
            return Err(bad("round_size", "must be at least 1"));
        }
        if cfg.rounds_in_flight == 0 {
            return Err(bad("rounds_in_flight", "must be at least 1"));
        }
        if cfg.total_timeout_ms == 0 || cfg.connect_timeout_ms == 0 || cfg.read_timeout_ms == 0 {
            return Err(bad("*_timeout_ms", "timeouts must be above 0"));
        }
        if cfg.host_partitions == 0 || cfg.host_partitions > 1 << 20 {
            return Err(bad("host_partitions", "must be between 1 and 1048576"));
        }
        if cfg.seed_chunk_mb == 0 {
            return Err(bad("seed_chunk_mb", "must be at least 1"));
        }
        if cfg.user_agent.trim().is_empty() || cfg.robots_token.trim().is_empty() {
            return Err(bad("user_agent/robots_token", "must not be empty"));
        }
        let policy = net::AddressPolicy::parse(&cfg.allow_private).map_err(|e| bad("allow_private", &e))?;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(cfg.io_threads.max(1)).thread_name("m6-crawl-io").enable_all().build()?;
        let fetcher = {
            let _g = rt.enter();
            fetch::Fetcher::new(&cfg, policy)?
        };
        let work = std::sync::Arc::new(crawl::Worker { cfg: cfg.clone(), fetcher });
        Ok(CrawlStage { cfg, rt, work })
    }
}

/// Seed files under an input: the file itself, or every non-hidden file below a
/// folder (dataset bookkeeping files skipped), in name order.
fn seed_files(input: &Path) -> m6_pipeline::Result<Vec<(PathBuf, String)>> {
    if input.is_file() {
        let label = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        return Ok(vec![(input.to_path_buf(), label)]);
    }
    let mut out = vec![];
    let mut stack = vec![input.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| m6_pipeline::Error::io(&d, e))?;
        for e in rd {
            let p = e.map_err(|e| m6_pipeline::Error::io(&d, e))?.path();
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name.starts_with('.') || name.starts_with('_') || name == m6_pipeline::manifest::MANIFEST {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                let label = p.strip_prefix(input).unwrap_or(&p).to_string_lossy().into_owned();
                out.push((p, label));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn file_hash(p: &Path) -> m6_pipeline::Result<String> {
    let mut h = blake3::Hasher::new();
    let mut f = std::fs::File::open(p).map_err(|e| m6_pipeline::Error::io(p, e))?;
    std::io::copy(&mut f, &mut h).map_err(|e| m6_pipeline::Error::io(p, e))?;
    Ok(h.finalize().to_hex().to_string())
}

impl Stage for CrawlStage {
    fn name(&self) -> &'static str {
        CrawlFactory::NAME
    }

    fn start<'a>(&'a self, ctx: &RunContext<'a>) -> Result<Box<dyn StageRun + 'a>, BoxError> {
        Ok(Box::new(CrawlRun { stage: self, out: OutCtx { output: ctx.output.to_path_buf(), limits: ctx.limits }, split: None }))
    }
}

impl StageRun for CrawlRun<'_> {
    fn outputs(&self, _input_kinds: &[Kind]) -> Result<OutputSpec, BoxError> {
        Ok(OutputSpec::new(Kind::Page).with_side(IMAGES, Kind::Image))
    }

    /// One task per host partition (see [`partition`]); ids follow the content of
    /// every seed file, so an edited seed list is a new crawl and an unchanged one
    /// resumes (URLs fetched by an earlier crawl into the same output are not fetched
    /// again: a new partition task starts from the done-sets of the earlier ones).
    fn plan(&mut self, inputs: &[PathBuf]) -> m6_pipeline::Result<Vec<Task>> {
        let mut files = vec![];
        for input in inputs {
            if !input.exists() {
                return Err(m6_pipeline::Error::Config(format!("seed list {} does not exist", input.display())));
            }
            for (path, label) in seed_files(input)? {
                let hash = file_hash(&path)?;
                files.push(partition::SeedFile::new(path, label, hash).map_err(m6_pipeline::Error::Config)?);
            }
        }
        if files.is_empty() {
            return Err(m6_pipeline::Error::Config(format!(
                "no seed files under {}",
                inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            )));
        }
        let first = files[0].path.clone();
        let names = match files.len() {
            1 => files[0].label.clone(),
            n => format!("{} and {} more seed files", files[0].label, n - 1),
        };
        let parts = self.stage.cfg.host_partitions;
        let plan = partition::SplitPlan::new(files, parts, self.stage.cfg.seed_chunk_mb.saturating_mul(1 << 20));
        let mut of_task = BTreeMap::new();
        let tasks: Vec<Task> = (0..parts)
            .map(|part| {
                let id = m6_schemas::content_id(&[b"crawl-hosts", plan.id.as_bytes(), &part.to_le_bytes()]);
                of_task.insert(id.clone(), part);
                Task { id, inputs: vec![TaskInput { path: first.clone(), kind: None, label: format!("{names} (hosts {part}/{parts})") }] }
            })
            .collect();
        self.split = Some((std::sync::Arc::new(plan), of_task));
        Ok(tasks)
    }

    fn prepare(&mut self, ctx: &RunContext) -> Result<(), BoxError> {
        let dir = ctx.output.join("_crawl");
        let (log, known) = journal::RobotsLog::open(&dir, ctx.task_index).map_err(|e| format!("{}: {e}", dir.display()))?;
        let reused = self.stage.work.fetcher.use_robots_log(log, known);
        if reused > 0 {
            tracing::info!(hosts = reused, "reusing robots.txt rules fetched by an earlier run");
        }
        if ctx.task_count > self.stage.cfg.host_partitions as usize {
            tracing::warn!(task_count = ctx.task_count, host_partitions = self.stage.cfg.host_partitions, "more processes than host partitions: some get no work (raise [crawl] host_partitions)");
        }
        let plan = self.split.as_ref().map(|(p, _)| p.clone()).ok_or("crawl: prepare called before plan")?;
        // Every process routes its share of the seed chunks, then waits for the rest.
        plan.run(ctx.output, ctx.task_index, ctx.task_count).map_err(|e| format!("splitting seeds by host: {e}"))?;
        Ok(())
    }

    fn process(&self, _ctx: &RunContext, task: &Task, out: &mut TaskOutput) -> Result<(), BoxError> {
        let (plan, of_task) = self.split.as_ref().ok_or("crawl: process called before plan")?;
        let part = *of_task.get(&task.id).ok_or_else(|| format!("crawl: task {} is not in the plan", task.id))?;
        let counters = crawl::run_task(self.stage, &self.out, task, plan, part)?;
        out.counters.add(&counters);
        Ok(())
    }

    fn properties(&self) -> BTreeMap<String, serde_json::Value> {
        BTreeMap::from([
            ("crawl.user_agent".to_string(), serde_json::json!(self.stage.cfg.user_agent)),
            ("crawl.max_depth".to_string(), serde_json::json!(self.stage.cfg.max_depth)),
            ("crawl.max_body_bytes".to_string(), serde_json::json!(self.stage.cfg.max_body_bytes)),
            ("crawl.resize_max_side".to_string(), serde_json::json!(self.stage.cfg.resize_max_side)),
            ("crawl.images_side".to_string(), serde_json::json!(IMAGES)),
            ("crawl.host_partitions".to_string(), serde_json::json!(self.stage.cfg.host_partitions)),
        ])
    }
}
