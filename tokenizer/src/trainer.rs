//! WordPiece training, the way HuggingFace tokenizers does it: count pre-tokenized
//! words, start from single characters (word-initial `c`, continuation `##c`), then
//! repeatedly merge the most frequent adjacent pair (ties: the pair of older tokens)
//! until the vocabulary is full. Word counting streams batches; the merge loop only
//! revisits the words that contain the merged pair.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;

use m6_pipeline::Dataset;
use m6_schemas::{column, document, Kind};
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::tokenizer::{Tokenizer, TokenizerConfig};
use crate::wordpiece::{WordPiece, CONTINUING_PREFIX};
use crate::{Error, Result, FIRST_WORD_ID, SPECIAL_TOKENS};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainerConfig {
    /// Total vocabulary size, special and reserved ids included. Default 21128 (BERT-Chinese's).
    pub vocab_size: usize,
    /// A pair is merged only if it occurs at least this often. Default 2.
    pub min_frequency: u64,
    /// A character enters the alphabet only if it occurs at least this often. Default 1.
    pub min_char_frequency: u64,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        TrainerConfig { vocab_size: 21128, min_frequency: 2, min_char_frequency: 1 }
    }
}

/// The reserved part of every trained vocabulary: ids 0..100.
pub fn reserved_tokens() -> Vec<String> {
    let mut v: Vec<String> = SPECIAL_TOKENS.iter().map(|s| s.to_string()).collect();
    let mut n = 0;
    while v.len() < FIRST_WORD_ID as usize {
        v.push(format!("[unused{n}]"));
        n += 1;
    }
    v
}

/// Word frequencies of a corpus, as the pre-tokenizer splits it.
#[derive(Debug, Default, Clone)]
pub struct WordCounter {
    counts: FxHashMap<String, u64>,
}

impl WordCounter {
    /// Counts the words of `texts` (in parallel) with `tok`'s normalizer and pre-tokenizer.
    pub fn add_texts<S: AsRef<str> + Sync>(&mut self, tok: &Tokenizer, texts: &[S]) {
        let part = texts
            .par_iter()
            .fold(FxHashMap::<String, u64>::default, |mut m, t| {
                tok.words(t.as_ref(), |w| {
                    if let Some(c) = m.get_mut(w) {
                        *c += 1;
                    } else {
                        m.insert(w.to_string(), 1);
                    }
                });
                m
            })
            .reduce(FxHashMap::default, |mut a, b| {
                let (mut big, small) = if a.len() >= b.len() { (std::mem::take(&mut a), b) } else { (b, std::mem::take(&mut a)) };
                for (k, v) in small {
                    *big.entry(k).or_default() += v;
                }
                big
            });
        for (k, v) in part {
            *self.counts.entry(k).or_default() += v;
        }
    }

    /// Streams every document's text of a `document` dataset.
    pub fn add_dataset(&mut self, tok: &Tokenizer, dir: &Path, batch_rows: usize) -> Result<u64> {
        let ds = Dataset::open(dir)?;
        if ds.kind() != Kind::Document {
            return Err(Error::format(dir, format!("is a {} dataset; training reads a document dataset", ds.kind())));
        }
        let mut rows = 0;
        for shard in ds.shards() {
            let path = ds.shard_path(shard);
            for b in ds.read_shard(shard, batch_rows)? {
                let b = b?;
                let text: &arrow::array::StringArray = column(&b, document::TEXT).map_err(|e| Error::format(&path, e.to_string()))?;
                let texts: Vec<&str> = (0..b.num_rows()).map(|i| text.value(i)).collect();
                self.add_texts(tok, &texts);
                rows += b.num_rows() as u64;
            }
        }
        Ok(rows)
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Learns a vocabulary from the counted words.
    pub fn train(&self, cfg: &TrainerConfig) -> Result<WordPiece> {
        train(&self.counts, cfg)
    }
}

const NONE: u32 = u32::MAX;

fn train(counts: &FxHashMap<String, u64>, cfg: &TrainerConfig) -> Result<WordPiece> {
    let mut vocab = reserved_tokens();
    if cfg.vocab_size <= vocab.len() {
        return Err(Error::Config(format!("vocab_size {} leaves no room for words (ids below {} are reserved)", cfg.vocab_size, vocab.len())));
    }
    // Sorted words: the hash map's order must not leak into the result.
    let mut words: Vec<(&str, u64)> = counts.iter().map(|(w, &c)| (w.as_str(), c)).collect();
    words.sort_unstable_by(|a, b| a.0.cmp(b.0));

    // Alphabet: every character in the positions it occurs in, most frequent first.
    let mut alpha: FxHashMap<String, u64> = FxHashMap::default();
    for &(w, c) in &words {
        for (i, ch) in w.chars().enumerate() {
            let t = if i == 0 { ch.to_string() } else { format!("{CONTINUING_PREFIX}{ch}") };
            *alpha.entry(t).or_default() += c;
        }
    }
    let mut alpha: Vec<(String, u64)> = alpha.into_iter().filter(|(_, c)| *c >= cfg.min_char_frequency).collect();
    alpha.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    // A continuation `##c` always comes with its plain `c`, so whether a character
    // encodes never depends on where in a word it stands.
    let mut index: FxHashMap<String, u32> = vocab.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let alphabet = alpha.len();
    for (t, _) in alpha {
        let plain = t.strip_prefix(CONTINUING_PREFIX).map(str::to_string);
        for t in plain.into_iter().chain([t]) {
            if vocab.len() < cfg.vocab_size && !index.contains_key(&t) {
                index.insert(t.clone(), vocab.len() as u32);
                vocab.push(t);
            }
        }
    }
    if vocab.len() >= cfg.vocab_size {
        info!(alphabet, vocab_size = cfg.vocab_size, "alphabet fills the vocabulary: rarest characters left out, no merges");
    }

    // Words as symbol ids (NONE for characters left out, which never pair).
    let mut syms: Vec<Vec<u32>> = words
        .iter()
        .map(|&(w, _)| {
            w.chars()
                .enumerate()
                .map(|(i, ch)| {
                    let t = if i == 0 { ch.to_string() } else { format!("{CONTINUING_PREFIX}{ch}") };
                    index.get(&t).copied().unwrap_or(NONE)
                })
                .collect()
        })
        .collect();
    let freq: Vec<i64> = words.iter().map(|&(_, c)| c as i64).collect();

    let mut pair_count: FxHashMap<(u32, u32), i64> = FxHashMap::default();
    let mut where_: FxHashMap<(u32, u32), FxHashSet<u32>> = FxHashMap::default();
    for (wi, s) in syms.iter().enumerate() {
        for p in s.windows(2) {
            if p[0] != NONE && p[1] != NONE {
                *pair_count.entry((p[0], p[1])).or_default() += freq[wi];
                where_.entry((p[0], p[1])).or_default().insert(wi as u32);
            }
        }
    }
    // Max-heap on count; among equal counts the pair with the smaller ids wins.
    let mut heap: BinaryHeap<(i64, Reverse<(u32, u32)>)> = pair_count.iter().map(|(&p, &c)| (c, Reverse(p))).collect();
    let mut merges = 0usize;
    while vocab.len() < cfg.vocab_size {
        let Some((c, Reverse(pair))) = heap.pop() else { break };
        let current = pair_count.get(&pair).copied().unwrap_or(0);
        if c != current {
            continue; // stale entry: the current count was pushed when it changed
        }
        if (c as u64) < cfg.min_frequency {
            break;
        }
        let (a, b) = pair;
        let merged = format!("{}{}", vocab[a as usize], vocab[b as usize].strip_prefix(CONTINUING_PREFIX).unwrap_or(&vocab[b as usize]));
        let new_id = match index.get(&merged) {
            Some(&id) => id,
            None => {
                let id = vocab.len() as u32;
                index.insert(merged.clone(), id);
                vocab.push(merged);
                id
            }
        };
        merges += 1;
        let mut affected: Vec<u32> = where_.remove(&pair).map(|s| s.into_iter().collect()).unwrap_or_default();
        affected.sort_unstable();
        let mut changed: FxHashSet<(u32, u32)> = FxHashSet::default();
        for wi in affected {
            let s = &mut syms[wi as usize];
            if !s.windows(2).any(|p| p[0] == a && p[1] == b) {
                continue;
            }
            let f = freq[wi as usize];
            for p in s.windows(2) {
                if p[0] != NONE && p[1] != NONE {
                    *pair_count.get_mut(&(p[0], p[1])).expect("counted pair") -= f;
                    changed.insert((p[0], p[1]));
                }
            }
            let mut out = Vec::with_capacity(s.len());
            let mut i = 0;
            while i < s.len() {
                if i + 1 < s.len() && s[i] == a && s[i + 1] == b {
                    out.push(new_id);
                    i += 2;
                } else {
                    out.push(s[i]);
                    i += 1;
                }
            }
            *s = out;
            for p in s.windows(2) {
                if p[0] != NONE && p[1] != NONE {
                    *pair_count.entry((p[0], p[1])).or_default() += f;
                    where_.entry((p[0], p[1])).or_default().insert(wi);
                    changed.insert((p[0], p[1]));
                }
            }
        }
        pair_count.remove(&pair);
        let mut changed: Vec<(u32, u32)> = changed.into_iter().filter(|p| *p != pair).collect();
        changed.sort_unstable();
        for p in changed {
            match pair_count.get(&p).copied() {
                Some(n) if n > 0 => heap.push((n, Reverse(p))),
                Some(_) => {
                    pair_count.remove(&p);
                }
                None => {}
            }
        }
    }
    info!(vocab = vocab.len(), merges, words = words.len(), "wordpiece trained");
    WordPiece::new(vocab, crate::UNK)
}

/// Trains a tokenizer from document datasets.
pub fn train_from_datasets(dirs: &[std::path::PathBuf], config: TokenizerConfig, cfg: &TrainerConfig, batch_rows: usize) -> Result<Tokenizer> {
    // Only the normalizer and pre-tokenizer matter for counting; any vocabulary will do.
    let counting = Tokenizer::new(config.clone(), WordPiece::new(reserved_tokens(), crate::UNK)?)?;
    let mut counter = WordCounter::default();
    for d in dirs {
        let rows = counter.add_dataset(&counting, d, batch_rows)?;
        info!(dataset = %d.display(), rows, distinct_words = counter.len(), "counted");
    }
    if counter.is_empty() {
        return Err(Error::Config("no text to train on".into()));
    }
    Tokenizer::new(config, counter.train(cfg)?)
}
