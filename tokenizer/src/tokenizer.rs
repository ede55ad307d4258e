//! The tokenizer: normalizer → pre-tokenizer → WordPiece → post-processor, and the
//! decoder back. Encoding is a pure function of the text, so batches are encoded in
//! parallel (rayon) with results in input order.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::decoder::{Decoder, WordPieceDecoder};
use crate::normalizer::{self, NormalizerConfig};
use crate::postprocessor::{ClsSep, PostProcessor};
use crate::pretokenizer::{PreTokenizer, PreTokenizerConfig};
use crate::wordpiece::WordPiece;
use crate::{Error, Result};

/// Everything but the vocabulary: how text is prepared before WordPiece sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenizerConfig {
    pub normalizer: NormalizerConfig,
    pub pre_tokenizer: PreTokenizerConfig,
}

/// Ids of the special tokens in this vocabulary (the fixed ones for vocabularies this
/// crate trains; looked up by name in a foreign vocab.txt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialIds {
    pub pad: u32,
    pub unk: u32,
    pub cls: u32,
    pub sep: u32,
    pub mask: u32,
    /// `None` in vocabularies without image markers (e.g. BERT-Chinese's).
    pub img: Option<u32>,
    pub img_end: Option<u32>,
}

/// One encoded text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoding {
    pub ids: Vec<u32>,
    /// How many of `ids` are [UNK].
    pub unk: usize,
}

pub struct Tokenizer {
    config: TokenizerConfig,
    normalizer: normalizer::Sequence,
    pre: Box<dyn PreTokenizer>,
    model: WordPiece,
    post: ClsSep,
    decoder: WordPieceDecoder,
    specials: SpecialIds,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer").field("config", &self.config).field("vocab_size", &self.vocab_size()).field("specials", &self.specials).finish()
    }
}

impl Tokenizer {
    pub fn new(config: TokenizerConfig, model: WordPiece) -> Result<Self> {
        let need = |t: &str| model.id(t).ok_or_else(|| Error::Config(format!("vocabulary has no `{t}` token")));
        let specials = SpecialIds {
            pad: need(crate::PAD)?,
            unk: model.unk_id(),
            cls: need(crate::CLS)?,
            sep: need(crate::SEP)?,
            mask: need(crate::MASK)?,
            img: model.id(crate::IMG),
            img_end: model.id(crate::IMG_END),
        };
        let mut special_ids: Vec<u32> = [specials.pad, specials.unk, specials.cls, specials.sep, specials.mask]
            .into_iter()
            .chain(specials.img)
            .chain(specials.img_end)
            .collect();
        // Reserved `[unusedN]` slots are special too: they never come out of text.
        special_ids.extend(model.tokens().iter().enumerate().filter(|(_, t)| t.starts_with("[unused") && t.ends_with(']')).map(|(i, _)| i as u32));
        special_ids.sort_unstable();
        special_ids.dedup();
        Ok(Tokenizer {
            normalizer: normalizer::Sequence::from_config(&config.normalizer),
            pre: config.pre_tokenizer.build()?,
            post: ClsSep { cls: specials.cls, sep: specials.sep },
            decoder: WordPieceDecoder { keep_special: false, special_ids, unk_id: specials.unk },
            config,
            model,
            specials,
        })
    }

    pub fn config(&self) -> &TokenizerConfig {
        &self.config
    }
    pub fn model(&self) -> &WordPiece {
        &self.model
    }
    pub fn specials(&self) -> SpecialIds {
        self.specials
    }
    pub fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }

    /// The text as the model sees it (and as decode gives it back).
    pub fn normalize(&self, text: &str) -> String {
        self.normalizer.apply(text)
    }

    /// Normalises and segments `text` into words, calling `f` on each.
    pub fn words(&self, text: &str, mut f: impl FnMut(&str)) {
        let norm = self.normalize(text);
        let mut words = Vec::with_capacity(norm.len() / 3 + 1);
        self.pre.split(&norm, &mut words);
        for w in words {
            f(w);
        }
    }

    /// Encodes `text`; with `add_special`, as `[CLS] ... [SEP]`.
    pub fn encode(&self, text: &str, add_special: bool) -> Encoding {
        let norm = self.normalize(text);
        let mut words = Vec::with_capacity(norm.len() / 3 + 1);
        self.pre.split(&norm, &mut words);
        let mut ids = Vec::with_capacity(words.len() + 2);
        for w in words {
            self.model.encode_word(w, &mut ids);
        }
        let unk = ids.iter().filter(|&&i| i == self.specials.unk).count();
        if add_special {
            self.post.process(&mut ids);
        }
        Encoding { ids, unk }
    }

    /// Encodes many texts in parallel; results are in input order.
    pub fn encode_batch<S: AsRef<str> + Sync>(&self, texts: &[S], add_special: bool) -> Vec<Encoding> {
        texts.par_iter().map(|t| self.encode(t.as_ref(), add_special)).collect()
    }

    /// Token strings of `text`, for inspection.
    pub fn tokens(&self, text: &str) -> Vec<String> {
        self.encode(text, false).ids.iter().map(|&i| self.model.token(i).unwrap_or(crate::UNK).to_string()).collect()
    }

    /// Text of `ids`; special tokens other than [UNK] are dropped unless `keep_special`.
    pub fn decode(&self, ids: &[u32], keep_special: bool) -> String {
        let mut out = String::new();
        if keep_special {
            WordPieceDecoder { keep_special: true, special_ids: vec![], unk_id: self.specials.unk }.decode(&self.model, ids, &mut out);
        } else {
            self.decoder.decode(&self.model, ids, &mut out);
        }
        out
    }
}
