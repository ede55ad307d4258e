//! `pipeline.toml`: the `[corpus]` settings shared by every stage, and one section per
//! stage (`[filter]`, or `[[dedup]]` to run a stage more than once) holding its
//! `input`, `output` and the stage's own config fields.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::writer::ShardLimits;

/// `[corpus]`: where datasets live and how hard to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorpusConfig {
    /// Folder that relative `input`/`output` paths of stage sections are resolved against. Default: the config file's folder.
    pub root: Option<PathBuf>,
    /// Worker threads; 0 means one per core. Default 0.
    pub threads: usize,
    /// A shard rolls over past this many MiB. Default 256.
    pub shard_mb: u64,
    /// Row groups are flushed at this many MiB of buffered data. Default 32.
    pub row_group_mb: u64,
    /// Rows per batch when reading. Default 4096.
    pub batch_rows: usize,
    /// zstd level of written shards. Default 3.
    pub zstd_level: i32,
}

impl Default for CorpusConfig {
    fn default() -> Self {
        CorpusConfig { root: None, threads: 0, shard_mb: 256, row_group_mb: 32, batch_rows: crate::dataset::DEFAULT_BATCH_ROWS, zstd_level: 3 }
    }
}

/// How one invocation of a stage runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub threads: usize,
    pub task_index: usize,
    pub task_count: usize,
    pub limits: ShardLimits,
    pub batch_rows: usize,
    /// Show a progress bar (only honoured when stderr is a terminal).
    pub progress: bool,
    /// Read input datasets whose writer has not committed every planned task.
    pub allow_partial: bool,
    /// Wait for incomplete (or not yet started) input datasets to complete.
    pub wait: bool,
    /// Give up waiting after this long (`None`: wait as long as it takes).
    pub wait_timeout: Option<std::time::Duration>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions::from_corpus(&CorpusConfig::default())
    }
}

impl RunOptions {
    pub fn from_corpus(c: &CorpusConfig) -> Self {
        RunOptions {
            threads: c.threads,
            task_index: 0,
            task_count: 1,
            limits: ShardLimits { shard_bytes: c.shard_mb.max(1) << 20, row_group_bytes: (c.row_group_mb.max(1) << 20) as usize, zstd_level: c.zstd_level },
            batch_rows: c.batch_rows.max(1),
            progress: true,
            allow_partial: false,
            wait: false,
            wait_timeout: None,
        }
    }

    pub fn effective_threads(&self) -> usize {
        if self.threads == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            self.threads
        }
    }

    pub fn check(&self) -> Result<()> {
        if self.task_count == 0 || self.task_index >= self.task_count {
            return Err(Error::Config(format!(
                "--task-index {} must be below --task-count {} (and the count at least 1)",
                self.task_index, self.task_count
            )));
        }
        check_zstd_level(self.limits.zstd_level)?;
        Ok(())
    }
}

/// zstd levels Parquet accepts; checked when the config loads, not after the work.
pub fn check_zstd_level(level: i32) -> Result<()> {
    if parquet::basic::ZstdLevel::try_new(level).is_err() {
        return Err(Error::Config(format!("[corpus] zstd_level = {level}: must be between 1 and 22")));
    }
    Ok(())
}

impl CorpusConfig {
    /// Refuses values that would only fail after the work is done (or never make sense).
    pub fn validate(&self) -> Result<()> {
        check_zstd_level(self.zstd_level)?;
        if self.shard_mb == 0 || self.row_group_mb == 0 || self.batch_rows == 0 {
            return Err(Error::Config("[corpus] shard_mb, row_group_mb and batch_rows must be at least 1".into()));
        }
        Ok(())
    }
}

/// One run of one stage as described in pipeline.toml.
#[derive(Debug, Clone)]
pub struct StageSection {
    pub stage: String,
    pub inputs: Vec<PathBuf>,
    pub output: Option<PathBuf>,
    /// The stage's own fields, everything but `input` and `output`.
    pub settings: toml::Table,
}

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub path: PathBuf,
    pub corpus: CorpusConfig,
    /// Stage sections in file order.
    pub sections: Vec<StageSection>,
}

impl PipelineConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).at(path)?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let err = |m: String| Error::Config(format!("{}: {m}", path.display()));
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| err(e.to_string()))?;
        let mut corpus = CorpusConfig::default();
        let mut sections = vec![];
        for (name, value) in table {
            if name == "corpus" {
                corpus = value.try_into().map_err(|e: toml::de::Error| err(format!("[corpus]: {e}")))?;
                corpus.validate().map_err(|e| err(e.to_string().trim_start_matches("config: ").to_string()))?;
                continue;
            }
            let tables = match value {
                toml::Value::Table(t) => vec![t],
                toml::Value::Array(a) => a
                    .into_iter()
                    .map(|v| match v {
                        toml::Value::Table(t) => Ok(t),
                        _ => Err(err(format!("[[{name}]] must be tables"))),
                    })
                    .collect::<Result<_>>()?,
                _ => return Err(err(format!("`{name}` must be a [section]"))),
            };
            for (nth, mut t) in tables.into_iter().enumerate() {
                let inputs = match t.remove("input") {
                    None => vec![],
                    Some(toml::Value::String(s)) => vec![PathBuf::from(s)],
                    Some(toml::Value::Array(a)) => a
                        .into_iter()
                        .map(|v| v.as_str().map(PathBuf::from).ok_or_else(|| err(format!("[{name}] input must be a path or a list of paths"))))
                        .collect::<Result<_>>()?,
                    Some(_) => return Err(err(format!("[{name}] input must be a path or a list of paths"))),
                };
                let output = match t.remove("output") {
                    None => None,
                    Some(toml::Value::String(s)) => Some(PathBuf::from(s)),
                    Some(_) => return Err(err(format!("[{name}] output must be a path"))),
                };
                sections.push((header_offset(text, &name, nth), StageSection { stage: name.clone(), inputs, output, settings: t }));
            }
        }
        if corpus.root.is_none() {
            corpus.root = Some(path.parent().map(Path::to_path_buf).unwrap_or_default());
        }
        // toml::Table is sorted by key: restore the file's order, then let the data
        // decide what runs first.
        sections.sort_by_key(|(at, _)| *at);
        let mut cfg = PipelineConfig { path: path.to_path_buf(), corpus, sections: sections.into_iter().map(|(_, s)| s).collect() };
        cfg.sections = cfg.order_by_data_flow().map_err(err)?;
        Ok(cfg)
    }

    /// Refuses a section no stage in `known` (the binary's stage registry) reads: a
    /// misspelt section would otherwise be ignored and its stage run with defaults.
    pub fn check_stage_names(&self, known: &[&str]) -> Result<()> {
        for s in &self.sections {
            let name = &s.stage;
            if known.contains(&name.as_str()) {
                continue;
            }
            let known: Vec<&str> = std::iter::once("corpus").chain(known.iter().copied()).collect();
            let near = known.iter().min_by_key(|k| edit_distance(k, name)).filter(|k| edit_distance(k, name) <= 2);
            let hint = near.map(|k| format!(" (did you mean [{k}]?)")).unwrap_or_default();
            return Err(Error::Config(format!(
                "{}: unknown section [{name}]{hint}; sections are {}",
                self.path.display(),
                known.iter().map(|k| format!("[{k}]")).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(())
    }

    /// The sections in the order they must run: each after every section that writes
    /// one of its inputs (its output, or a side dataset inside it such as `web/pairs`);
    /// sections that do not depend on each other keep the order of the file. A cycle
    /// is an error naming the sections in it.
    fn order_by_data_flow(&self) -> std::result::Result<Vec<StageSection>, String> {
        let clean = |p: &Path| -> PathBuf { self.resolve(p).components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect() };
        let outputs: Vec<Option<PathBuf>> = self.sections.iter().map(|s| s.output.as_deref().map(clean)).collect();
        let after: Vec<Vec<usize>> = self
            .sections
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let inputs: Vec<PathBuf> = s.inputs.iter().map(|p| clean(p)).collect();
                (0..self.sections.len())
                    .filter(|&j| j != i && outputs[j].as_ref().is_some_and(|o| inputs.iter().any(|p| p.starts_with(o))))
                    .collect()
            })
            .collect();
        let mut done = vec![false; self.sections.len()];
        let mut order = Vec::with_capacity(self.sections.len());
        while order.len() < self.sections.len() {
            let Some(next) = (0..self.sections.len()).find(|&i| !done[i] && after[i].iter().all(|&j| done[j])) else {
                let stuck: Vec<String> = (0..self.sections.len()).filter(|&i| !done[i]).map(|i| format!("[{}] ({})", self.sections[i].stage, outputs[i].as_ref().map(|p| p.display().to_string()).unwrap_or_default())).collect();
                return Err(format!("the inputs and outputs of {} form a cycle: each reads what another writes", stuck.join(", ")));
            };
            done[next] = true;
            order.push(self.sections[next].clone());
        }
        Ok(order)
    }

    /// Resolves a path from a stage section against `[corpus] root`.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.corpus.root.clone().unwrap_or_default().join(p)
        }
    }

    pub fn sections_for(&self, stage: &str) -> Vec<&StageSection> {
        self.sections.iter().filter(|s| s.stage == stage).collect()
    }
}

/// Levenshtein distance, for suggesting the section a typo meant.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Where the header of the `nth` `[name]`/`[[name]]` section is in the file, for
/// keeping the file's order (inline tables sort last).
fn header_offset(text: &str, name: &str, nth: usize) -> usize {
    let (single, array) = (format!("[{name}]"), format!("[[{name}]]"));
    let mut offset = 0;
    let mut seen = 0;
    for line in text.split_inclusive('\n') {
        let l = line.trim_start();
        if l.starts_with(&array) || l.starts_with(&single) {
            if seen == nth {
                return offset;
            }
            seen += 1;
        }
        offset += line.len();
    }
    usize::MAX
}

/// Deserialises a stage's config from its section, with `--set key=value` overrides
/// applied on top; unknown keys are an error that names the section.
pub fn stage_config<C: DeserializeOwned>(stage: &str, settings: &toml::Table, overrides: &[String]) -> Result<C> {
    stage_config_with_flags(stage, settings, overrides, &[])
}

/// The value a stage flag ([`crate::Flag`]) gave on the command line.
#[derive(Debug, Clone)]
pub enum FlagValue {
    /// The field becomes this value.
    Set(toml::Value),
    /// These strings are added to the field's list (after the section and `--set`).
    Append(Vec<String>),
}

/// [`stage_config`] with the stage's own flags applied last: defaults, the section,
/// `--set`, then flags (`key`, value).
pub fn stage_config_with_flags<C: DeserializeOwned>(stage: &str, settings: &toml::Table, overrides: &[String], flags: &[(&str, FlagValue)]) -> Result<C> {
    let mut t = settings.clone();
    for o in overrides {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| Error::Config(format!("--set `{o}`: expected KEY=VALUE")))?;
        // A value that is not valid TOML (a bare word, a path) is taken as a string.
        let value = format!("v = {v}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(v.to_string()));
        set_path(&mut t, k.trim(), value);
    }
    for (key, v) in flags {
        let value = match v {
            FlagValue::Set(v) => v.clone(),
            FlagValue::Append(add) => {
                let mut list = get_path(&t, key).and_then(|v| v.as_array().cloned()).unwrap_or_default();
                list.extend(add.iter().map(|s| toml::Value::String(s.clone())));
                toml::Value::Array(list)
            }
        };
        set_path(&mut t, key, value);
    }
    toml::Value::Table(t).try_into().map_err(|e: toml::de::Error| Error::Config(format!("[{stage}]: {}", e.message())))
}

fn get_path<'t>(t: &'t toml::Table, key: &str) -> Option<&'t toml::Value> {
    match key.split_once('.') {
        Some((head, rest)) => get_path(t.get(head)?.as_table()?, rest),
        None => t.get(key),
    }
}

fn set_path(t: &mut toml::Table, key: &str, value: toml::Value) {
    match key.split_once('.') {
        Some((head, rest)) => {
            let sub = t.entry(head.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !sub.is_table() {
                *sub = toml::Value::Table(toml::Table::new());
            }
            set_path(sub.as_table_mut().unwrap(), rest, value)
        }
        None => {
            t.insert(key.to_string(), value);
        }
    }
}

/// Parses a whole config section for tests and tools that want typed access.
pub fn parse_table<C: DeserializeOwned>(stage: &str, t: BTreeMap<String, toml::Value>) -> Result<C> {
    stage_config(stage, &t.into_iter().collect(), &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Demo {
        min_chars: usize,
        name: String,
        nested: Nested,
    }
    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(default, deny_unknown_fields)]
    struct Nested {
        on: bool,
    }
    impl Default for Demo {
        fn default() -> Self {
            Demo { min_chars: 5, name: "x".into(), nested: Nested::default() }
        }
    }

    #[test]
    fn sections_overrides_and_unknown_fields() {
        let cfg = PipelineConfig::parse(
            "[corpus]\nthreads = 2\n[filter]\ninput = 'a'\noutput = 'b'\nmin_chars = 9\n[[dedup]]\ninput = ['x', 'y']\n[[dedup]]\ninput = 'z'\n",
            Path::new("/tmp/p.toml"),
        )
        .unwrap();
        assert_eq!(cfg.corpus.threads, 2);
        assert_eq!(cfg.sections.iter().map(|s| s.stage.as_str()).collect::<Vec<_>>(), ["filter", "dedup", "dedup"], "file order: no section reads another's output");
        assert_eq!(cfg.sections[1].inputs.len(), 2);
        let f = cfg.sections_for("filter")[0];
        let d: Demo = stage_config("filter", &f.settings, &["name=abc".into(), "nested.on=true".into()]).unwrap();
        assert_eq!(d, Demo { min_chars: 9, name: "abc".into(), nested: Nested { on: true } });
        let e = stage_config::<Demo>("filter", &f.settings, &["min_charz=3".into()]).unwrap_err().to_string();
        assert!(e.contains("[filter]") && e.contains("min_charz"), "{e}");
        let e = PipelineConfig::parse("[corpus]\nthredz = 1\n", Path::new("p.toml")).unwrap_err().to_string();
        assert!(e.contains("thredz"), "{e}");
        let e = PipelineConfig::parse("[filtr]\nmin_chars = 3\n", Path::new("p.toml")).unwrap().check_stage_names(&["dedup", "filter"]).unwrap_err().to_string();
        assert!(e.contains("unknown section [filtr]") && e.contains("did you mean [filter]"), "{e}");
        let e = PipelineConfig::parse("[corpus]\nzstd_level = 99\n", Path::new("p.toml")).unwrap_err().to_string();
        assert!(e.contains("zstd_level = 99"), "{e}");
    }

    /// `run` order comes from the data: each section after the one writing its input
    /// (a side dataset inside another's output counts), whatever the file's order or
    /// the usual order of stages (here filter runs before dedup because it feeds it).
    #[test]
    fn sections_run_after_the_section_writing_their_input() {
        let text = "[tokenize]\ninput = 'dedup'\noutput = 'samples'\n\
            [[dedup]]\ninput = './clean'\noutput = 'dedup'\n\
            [[dedup]]\ninput = 'web/pairs'\noutput = 'pairs-dedup'\n\
            [filter]\ninput = ['poems', 'web']\noutput = 'clean'\n\
            [extract]\ninput = 'pages'\noutput = 'web'\n\
            [ingest]\ninput = 'raw'\noutput = 'poems'\n\
            [crawl]\ninput = 'seeds.txt'\noutput = 'pages'\n";
        let cfg = PipelineConfig::parse(text, Path::new("/tmp/p.toml")).unwrap();
        let order: Vec<String> = cfg.sections.iter().map(|s| format!("{}:{}", s.stage, s.output.as_ref().unwrap().display())).collect();
        assert_eq!(order, ["ingest:poems", "crawl:pages", "extract:web", "dedup:pairs-dedup", "filter:clean", "dedup:dedup", "tokenize:samples"]);
        // Every section after the ones writing its inputs; of the sections ready to
        // run, the one written first in the file goes first.
        let pos = |o: &str| order.iter().position(|x| x.ends_with(&format!(":{o}"))).unwrap();
        for (before, after) in [("pages", "web"), ("web", "clean"), ("poems", "clean"), ("clean", "dedup"), ("dedup", "samples"), ("web", "pairs-dedup")] {
            assert!(pos(before) < pos(after), "{before} must run before {after}: {order:?}");
        }
        let e = PipelineConfig::parse("[filter]\ninput = 'b'\noutput = 'a'\n[dedup]\ninput = 'a'\noutput = 'b'\n", Path::new("/tmp/p.toml")).unwrap_err().to_string();
        assert!(e.contains("cycle") && e.contains("[filter]") && e.contains("[dedup]"), "{e}");
    }
}
