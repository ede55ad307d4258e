//! Named rule sets (`[filter] preset = "..."`, or `--set preset=m6`).
//!
//! A preset replaces default values only: a field the user set to anything other than
//! its default keeps the user's value, so `--set preset=m6 --set text.min_chars=20`
//! means "M6's rules with a 20-character minimum".
//!
//! # `m6`: the cleaning M6-Corpus describes
//! Source: Lin et al., "M6: A Chinese Multimodal Pretrainer" (2021), §2 (the dataset
//! and its cleaning), as issue 17 lists it. What the paper states and what we chose
//! where it gives no number:
//!
//! | setting | value | source |
//! |---|---|---|
//! | `text.min_title_chars` | 5 | paper: documents whose title is shorter than 5 characters are dropped |
//! | `text.min_chars` | 15 | paper: content shorter than 15 characters is dropped (counted on the cleaned text) |
//! | `normalize.zh_en_only` | true | paper: only Chinese and English characters and punctuation are kept |
//! | `normalize.collapse_punct`, `max_punct_run` | true, 1 | paper: repeated punctuation is collapsed; the paper gives no run length, we keep one mark |
//! | `normalize.strip_markup`, `disable text.markup` | true | paper: leftover HTML is stripped rather than the document dropped |
//! | `text.default_blocklists`, `text.blocklist` | on | paper: sensitive-word filtering; its word list is not published, ours is `data/blocklist/` plus `text.blocklists` |
//! | `text.perplexity` | on when `text.lm_model` is set | paper: a language-model perplexity filter; neither its model nor threshold is published, so the LM is the user's (`m6corpus lm train`) and the threshold `text.max_perplexity` |
//!
//! Everything else (script, repetition, spam, PII) stays at the defaults.

use crate::text::rule;
use crate::FilterConfig;

/// The presets `preset` accepts.
pub const NAMES: &[&str] = &["m6"];

/// Applies `cfg.preset` to `cfg`.
pub fn apply(cfg: &mut FilterConfig) -> Result<(), String> {
    match cfg.preset.as_str() {
        "" => Ok(()),
        "m6" => {
            let d = FilterConfig::default();
            if cfg.text.min_title_chars == d.text.min_title_chars {
                cfg.text.min_title_chars = 5;
            }
            if cfg.text.min_chars == d.text.min_chars {
                cfg.text.min_chars = 15;
            }
            if cfg.normalize.zh_en_only == d.normalize.zh_en_only {
                cfg.normalize.zh_en_only = true;
            }
            if cfg.normalize.max_punct_run == d.normalize.max_punct_run {
                cfg.normalize.max_punct_run = 1;
            }
            if cfg.normalize.strip_markup == d.normalize.strip_markup {
                cfg.normalize.strip_markup = true;
                if !cfg.disable.iter().any(|r| r == rule::MARKUP) {
                    cfg.disable.push(rule::MARKUP.to_string());
                }
            }
            if cfg.text.lm_model.is_empty() {
                tracing::warn!("preset m6: no text.lm_model given, so the perplexity rule is off (train one with `m6corpus lm train`)");
            }
            Ok(())
        }
        other => Err(format!("preset: unknown preset `{other}` (known: {})", NAMES.join(", "))),
    }
}
