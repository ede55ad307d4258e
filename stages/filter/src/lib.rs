//! The `filter` stage: M6-style quality rules for documents, images and image–caption
//! pairs. Kept rows go to the main output (text normalised as configured); every
//! dropped row goes to the `rejects` side dataset with its rule, value and threshold.
//!
//! Rules run cheapest first and a row stops at the first rule it fails, so each reject
//! names exactly one rule. Every rule can be turned off with `[filter] disable`.

pub mod caption;
pub mod image_rules;
pub mod langid;
pub mod lm;
pub mod normalize;
pub mod pii;
pub mod preset;
pub mod script;
pub mod text;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, UInt32Array};
use arrow::compute::filter_record_batch;
use m6_pipeline::{plan_shards, BoxError, Flag, FlagKind, OutputSpec, RunContext, Stage, StageFactory, StageRun, Task, TaskOutput};
use m6_schemas::{column, document, image as image_cols, image_signals, pair, Bin, DocScores, ImageSignals, Kind, Reject, Str};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use caption::PairConfig;
pub use image_rules::ImageConfig;
pub use normalize::NormalizeConfig;
pub use text::TextConfig;

/// The side dataset holding one row per dropped input row.
pub const REJECTS: &str = "rejects";

/// Why a row was dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Drop {
    pub rule: &'static str,
    pub value: f64,
    pub threshold: f64,
    /// Extra words for the snippet (the detected language, the n-gram size, the decoder error).
    pub detail: Option<String>,
}

/// Every rule name `disable` accepts.
pub fn all_rules() -> Vec<&'static str> {
    text::rule::ALL.iter().chain(caption::rule::ALL).chain(image_rules::rule::ALL).copied().collect()
}

/// `[filter]` in pipeline.toml.
///
/// ```toml
/// [filter]
/// disable = ["text.digit_ratio"]
/// [filter.text]
/// min_chars = 20
/// lm_model = "models/zh.lm"
/// max_perplexity = 800
/// [filter.normalize]
/// t2s = true
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FilterConfig {
    /// A named set of rule settings applied on top of the defaults (fields set to
    /// something other than their default keep that value): `"m6"` = the rules the M6
    /// paper describes (see `preset`). Default "" (none).
    pub preset: String,
    /// Rules turned off, by name (`text.min_chars`, `image.blank`, ...; see `all_rules`).
    /// `image.bomb` cannot be turned off. Default: none.
    pub disable: Vec<String>,
    /// Characters of the dropped text (or caption) kept in the reject's snippet. Default
    /// 0 means 80.
    pub snippet_chars: usize,
    /// Document text rules.
    pub text: TextConfig,
    /// Caption rules for pairs.
    pub pair: PairConfig,
    /// Image rules, for images and for the image of each pair.
    pub image: ImageConfig,
    /// Normalisation of kept text and captions.
    pub normalize: NormalizeConfig,
}

pub struct FilterFactory;

impl StageFactory for FilterFactory {
    const NAME: &'static str = "filter";
    type Config = FilterConfig;
    const FLAGS: &'static [Flag] = &[
        Flag::text("lm-model", "text.lm_model", "FILE", "Language model for the perplexity rule (sets `text.lm_model`)."),
        Flag::float("max-perplexity", "text.max_perplexity", "Perplexity threshold (sets `text.max_perplexity`)."),
        Flag {
            name: "disable",
            key: "disable",
            help: "Turn a rule off (repeatable), e.g. `--disable text.digit_ratio`.",
            kind: FlagKind::List { value_name: "RULE", many: false, delimiter: None, append: true, bare: None },
        },
        Flag::switch("t2s", "normalize.t2s", true, "Convert traditional to simplified Chinese in kept text (sets `normalize.t2s`)."),
    ];
    fn build(cfg: Self::Config) -> Result<Box<dyn Stage>, BoxError> {
        Ok(Box::new(FilterStage::new(cfg)?))
    }
}

/// The built stage: compiled rules shared by every task.
pub struct FilterStage {
    cfg: FilterConfig,
    text: text::TextRules,
    caption: caption::CaptionRules,
    image: image_rules::ImageRules,
    lm_hash: Option<String>,
    quality_hash: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("[filter] {0}")]
pub struct ConfigError(pub String);

impl FilterStage {
    /// Validates the config (errors name the field) and compiles the rules.
    pub fn new(mut cfg: FilterConfig) -> Result<Self, ConfigError> {
        preset::apply(&mut cfg).map_err(ConfigError)?;
        let known = all_rules();
        let mut disabled: HashSet<&'static str> = HashSet::new();
        for d in &cfg.disable {
            match known.iter().find(|k| **k == d.as_str()) {
                Some(k) if *k == image_rules::rule::BOMB => return Err(ConfigError("disable: `image.bomb` cannot be turned off (raise image.max_pixels instead)".into())),
                Some(k) => {
                    disabled.insert(k);
                }
                None => {
                    let close: Vec<&str> = known.iter().filter(|k| k.split('.').nth(1).is_some_and(|s| d.contains(s) || s.contains(d.rsplit('.').next().unwrap_or(d)))).copied().collect();
                    return Err(ConfigError(format!(
                        "disable: unknown rule `{d}`{}; rules are: {}",
                        if close.is_empty() { String::new() } else { format!(" (did you mean {}?)", close.join(", ")) },
                        known.join(", ")
                    )));
                }
            }
        }
        cfg.normalize.validate().map_err(ConfigError)?;
        let text = text::TextRules::new(cfg.text.clone(), disabled.clone(), "filter.text").map_err(ConfigError)?;
        let caption = caption::CaptionRules::new(cfg.pair.clone(), disabled.clone(), "filter.pair").map_err(ConfigError)?;
        let image = image_rules::ImageRules::new(cfg.image.clone(), disabled, "filter.image").map_err(ConfigError)?;
        let lm_hash = match &text.lm {
            Some(_) => Some(lm::Model::file_hash(std::path::Path::new(&cfg.text.lm_model)).map_err(|e| ConfigError(format!("text.lm_model: {e}")))?),
            None => None,
        };
        let quality_hash = match &text.quality {
            Some(_) => Some(m6_quality::Model::file_hash(std::path::Path::new(&cfg.text.quality_model)).map_err(|e| ConfigError(format!("text.quality_model: {e}")))?),
            None => None,
        };
        Ok(FilterStage { cfg, text, caption, image, lm_hash, quality_hash })
    }

    fn snippet(&self, text: &str, d: &Drop) -> String {
        let n = if self.cfg.snippet_chars == 0 { 80 } else { self.cfg.snippet_chars };
        let head: String = text.chars().take(n).collect();
        match &d.detail {
            Some(x) => format!("[{x}] {head}"),
            None => head,
        }
    }

    /// The effective config (after the preset).
    pub fn config(&self) -> &FilterConfig {
        &self.cfg
    }

    /// Judges one document: the drop, or the normalised text to keep.
    pub fn judge_text(&self, text: &str) -> Result<String, Drop> {
        self.judge_document(None, text).map(|(t, _)| t)
    }

    /// Judges one document with its title: the drop, or the normalised text to keep
    /// and its score columns.
    pub fn judge_document(&self, title: Option<&str>, text: &str) -> Result<(String, DocScores), Drop> {
        let n = &self.cfg.normalize;
        let (normalized, pii) = if n.any() { n.apply_counted(text) } else { (text.to_string(), Default::default()) };
        let mut scores = DocScores::default();
        if let Some(d) = self.text.check(text, &normalized, title, &mut scores) {
            return Err(d);
        }
        let on = |kind_on: bool, c: u32| kind_on.then_some(c);
        scores.pii_email = on(n.pii.email, pii.email);
        scores.pii_phone = on(n.pii.phone, pii.phone);
        scores.pii_id = on(n.pii.id, pii.id);
        scores.pii_card = on(n.pii.card, pii.card);
        scores.pii_ip = on(n.pii.ip, pii.ip);
        Ok((normalized, scores))
    }

    /// Judges one pair: caption rules, then the image rules on its image.
    pub fn judge_pair(&self, caption: &str, image: &[u8]) -> Result<String, Drop> {
        self.judge_pair_info(caption, image).map(|(t, _)| t)
    }

    /// [`Self::judge_pair`] with what the image rules found (size, quality signals).
    pub fn judge_pair_info(&self, caption: &str, image: &[u8]) -> Result<(String, image_rules::ImageInfo), Drop> {
        if let Some(d) = self.caption.check(caption, self.text.blocklist()) {
            return Err(d);
        }
        let info = self.image.check(image)?;
        Ok((if self.cfg.normalize.any() { self.cfg.normalize.apply(caption) } else { caption.to_string() }, info))
    }

    pub fn judge_image(&self, bytes: &[u8]) -> Result<image_rules::ImageInfo, Drop> {
        self.image.check(bytes)
    }

    fn process_batch(&self, kind: Kind, b: &RecordBatch, out: &mut TaskOutput) -> Result<(), BoxError> {
        let n = b.num_rows();
        let (id_col, sid_col, src_col) = match kind {
            Kind::Pair => (pair::ID, pair::SOURCE_ID, pair::SOURCE),
            Kind::Image => (image_cols::ID, image_cols::SOURCE_ID, image_cols::SOURCE),
            _ => (document::ID, document::SOURCE_ID, document::SOURCE),
        };
        let ids: &Str = column(b, id_col)?;
        let source_ids: &Str = column(b, sid_col)?;
        let sources: &Str = column(b, src_col)?;
        // Per row: Ok(new text, if the kind has one, a document's scores, an image's
        // signals) or Err(reject).
        type Verdict = Result<(Option<String>, DocScores, ImageSignals), Reject>;
        let verdicts: Vec<Verdict> = match kind {
            Kind::Document => {
                let texts: &Str = column(b, document::TEXT)?;
                let titles: &Str = column(b, document::TITLE)?;
                out.count_in(n as u64, texts.value_data().len() as u64);
                (0..n)
                    .into_par_iter()
                    .map(|i| {
                        let t = texts.value(i);
                        let title = titles.is_valid(i).then(|| titles.value(i));
                        self.judge_document(title, t).map(|(t, s)| (Some(t), s, ImageSignals::default())).map_err(|d| self.reject(ids, source_ids, sources, i, t, d))
                    })
                    .collect()
            }
            Kind::Pair => {
                let caps: &Str = column(b, pair::CAPTION)?;
                let imgs: &Bin = column(b, pair::IMAGE_BYTES)?;
                out.count_in(n as u64, (caps.value_data().len() + imgs.value_data().len()) as u64);
                (0..n)
                    .into_par_iter()
                    .map(|i| {
                        let c = caps.value(i);
                        self.judge_pair_info(c, imgs.value(i)).map(|(t, info)| (Some(t), DocScores::default(), signals_of(&info))).map_err(|d| self.reject(ids, source_ids, sources, i, c, d))
                    })
                    .collect()
            }
            Kind::Image => {
                let imgs: &Bin = column(b, image_cols::BYTES)?;
                let urls: &Str = column(b, image_cols::URL)?;
                out.count_in(n as u64, imgs.value_data().len() as u64);
                (0..n)
                    .into_par_iter()
                    .map(|i| {
                        let label = if urls.is_valid(i) { urls.value(i) } else { "" };
                        self.judge_image(imgs.value(i)).map(|info| (None, DocScores::default(), signals_of(&info))).map_err(|d| self.reject(ids, source_ids, sources, i, label, d))
                    })
                    .collect()
            }
            other => return Err(format!("filter reads document, pair or image datasets, not {other}").into()),
        };
        let mask = BooleanArray::from(verdicts.iter().map(|v| v.is_ok()).collect::<Vec<_>>());
        let mut rejects = vec![];
        let mut kept_text = vec![];
        let mut kept_scores = vec![];
        let mut kept_signals = vec![];
        for v in verdicts {
            match v {
                Ok((t, s, q)) => {
                    if let Some(t) = t {
                        kept_text.push(t);
                    }
                    kept_scores.push(s);
                    kept_signals.push(q);
                }
                Err(r) => {
                    out.counters.bump(&format!("dropped.{}", r.rule), 1);
                    rejects.push(r);
                }
            }
        }
        out.counters.bump("kept", (n - rejects.len()) as u64);
        out.write_side_rows(REJECTS, &rejects)?;
        let mut kept = filter_record_batch(b, &mask)?;
        if kept.num_rows() == 0 {
            return Ok(());
        }
        if self.cfg.normalize.any() && kind != Kind::Image {
            let schema = kept.schema();
            let mut cols: Vec<ArrayRef> = kept.columns().to_vec();
            let text_col = if kind == Kind::Document { document::TEXT } else { pair::CAPTION };
            cols[schema.index_of(text_col)?] = Arc::new(StringArray::from(kept_text.clone()));
            if kind == Kind::Document {
                cols[schema.index_of(document::CHAR_COUNT)?] = Arc::new(UInt32Array::from(kept_text.iter().map(|t| t.chars().count() as u32).collect::<Vec<_>>()));
            }
            kept = RecordBatch::try_new(schema, cols)?;
        }
        if kind == Kind::Document {
            kept = with_scores(&kept, kept_scores)?;
        } else if self.cfg.image.signals || kept_signals.iter().any(|s| s.sharpness.is_some()) {
            kept = with_signals(&kept, kept_signals)?;
        }
        out.write(&kept)?;
        Ok(())
    }

    fn reject(&self, ids: &Str, source_ids: &Str, sources: &Str, i: usize, text: &str, d: Drop) -> Reject {
        Reject {
            id: ids.value(i).to_string(),
            source_id: source_ids.is_valid(i).then(|| source_ids.value(i).to_string()),
            source: sources.value(i).to_string(),
            rule: d.rule.to_string(),
            value: d.value,
            threshold: d.threshold,
            snippet: Some(self.snippet(text, &d)),
        }
    }
}

/// Writes this run's scores into a kept document batch. A score this run did not
/// compute (no LM, no classifier) keeps the value an earlier filter run wrote.
fn with_scores(kept: &RecordBatch, mut scores: Vec<DocScores>) -> Result<RecordBatch, BoxError> {
    for (i, s) in scores.iter_mut().enumerate() {
        let old = DocScores::from_batch(kept, i)?;
        s.quality = s.quality.or(old.quality);
        s.perplexity = s.perplexity.or(old.perplexity);
        s.lang = s.lang.take().or(old.lang);
        s.lang_score = s.lang_score.or(old.lang_score);
        s.spam_hits = s.spam_hits.or(old.spam_hits);
        s.blocklist_hits = s.blocklist_hits.or(old.blocklist_hits);
        s.pii_email = s.pii_email.or(old.pii_email);
        s.pii_phone = s.pii_phone.or(old.pii_phone);
        s.pii_id = s.pii_id.or(old.pii_id);
        s.pii_card = s.pii_card.or(old.pii_card);
        s.pii_ip = s.pii_ip.or(old.pii_ip);
    }
    let schema = kept.schema();
    let mut cols: Vec<ArrayRef> = kept.columns().to_vec();
    let arrays = DocScores::to_arrays(&scores.iter().collect::<Vec<_>>());
    for (name, a) in document::SCORES.iter().zip(arrays) {
        cols[schema.index_of(name)?] = a;
    }
    Ok(RecordBatch::try_new(schema, cols)?)
}

fn signals_of(info: &image_rules::ImageInfo) -> ImageSignals {
    match info.signals {
        Some(s) => ImageSignals { sharpness: Some(s.sharpness), entropy: Some(s.entropy), border: Some(s.border) },
        None => ImageSignals::default(),
    }
}

/// Writes this run's image signals into a kept image or pair batch; a row this run did
/// not measure keeps what an earlier run wrote.
fn with_signals(kept: &RecordBatch, mut signals: Vec<ImageSignals>) -> Result<RecordBatch, BoxError> {
    for (i, s) in signals.iter_mut().enumerate() {
        if s.sharpness.is_none() {
            *s = ImageSignals::from_batch(kept, i)?;
        }
    }
    let schema = kept.schema();
    let mut cols: Vec<ArrayRef> = kept.columns().to_vec();
    for (name, a) in image_signals::ALL.iter().zip(ImageSignals::to_arrays(&signals)) {
        cols[schema.index_of(name)?] = a;
    }
    Ok(RecordBatch::try_new(schema, cols)?)
}

impl Stage for FilterStage {
    fn name(&self) -> &'static str {
        "filter"
    }

    /// The config and the checksums of the model files it loads (LM, quality classifier): they are not in the config.
    fn settings(&self) -> String {
        m6_pipeline::settings_of(&self.cfg, &[self.lm_hash.as_deref().unwrap_or(""), self.quality_hash.as_deref().unwrap_or("")])
    }

    /// The compiled rules are all a run needs: the run is the stage itself.
    fn start<'a>(&'a self, _ctx: &RunContext<'a>) -> Result<Box<dyn StageRun + 'a>, BoxError> {
        Ok(Box::new(self))
    }
}

impl StageRun for &FilterStage {
    fn outputs(&self, input_kinds: &[Kind]) -> Result<OutputSpec, BoxError> {
        let Some(&first) = input_kinds.first() else {
            return Err("filter needs document, pair or image datasets as input".into());
        };
        if !matches!(first, Kind::Document | Kind::Pair | Kind::Image) {
            return Err(format!("filter reads document, pair or image datasets, not {first}").into());
        }
        if let Some(k) = input_kinds.iter().find(|k| **k != first) {
            return Err(format!("filter inputs must all be one kind: got {first} and {k}").into());
        }
        Ok(OutputSpec::new(first).with_side(REJECTS, Kind::Reject))
    }

    fn plan(&mut self, inputs: &[std::path::PathBuf]) -> m6_pipeline::Result<Vec<Task>> {
        plan_shards(inputs, &[Kind::Document, Kind::Pair, Kind::Image])
    }

    fn process(&self, ctx: &RunContext, task: &Task, out: &mut TaskOutput) -> Result<(), BoxError> {
        let rows = ctx.batch_rows.max(1);
        for input in &task.inputs {
            let kind = input.kind.ok_or_else(|| format!("{}: filter reads datasets, not raw files", input.path.display()))?;
            for b in task.reader(input, rows)? {
                let b = b?;
                self.process_batch(kind, &b, out).map_err(|e| format!("{}: {e}", input.path.display()))?;
            }
        }
        Ok(())
    }

    fn properties(&self) -> BTreeMap<String, serde_json::Value> {
        let mut p = BTreeMap::new();
        p.insert("filter.config".into(), serde_json::to_value(&self.cfg).unwrap_or_default());
        p.insert("filter.blocklist_terms".into(), self.text.blocklist_terms().into());
        if let Some(h) = &self.lm_hash {
            p.insert("filter.lm_model_blake3".into(), h.clone().into());
        }
        if let Some(h) = &self.quality_hash {
            p.insert("filter.quality_model_blake3".into(), h.clone().into());
        }
        p
    }
}
