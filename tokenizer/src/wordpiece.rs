//! The WordPiece model: greedy longest-match-first over a vocabulary where word-initial
//! pieces are plain (`中国`) and continuation pieces carry a prefix (`##人`), as in BERT.
//! Also the BERT `vocab.txt` format (one token per line, line number = id).

use std::path::Path;

use rustc_hash::FxHashMap;

use crate::{Error, Result};

pub const CONTINUING_PREFIX: &str = "##";

/// A WordPiece vocabulary and encoder.
#[derive(Debug, Clone)]
pub struct WordPiece {
    /// Token strings by id, as they appear in vocab.txt (unescaped).
    tokens: Vec<String>,
    /// Word-initial pieces (and whole words, special tokens, whitespace characters).
    start: FxHashMap<Box<str>, u32>,
    /// Continuation pieces, keyed without their prefix.
    cont: FxHashMap<Box<str>, u32>,
    unk: u32,
    /// The longest piece in bytes: bounds the greedy search.
    max_piece_bytes: usize,
}

impl WordPiece {
    /// Builds the model from tokens in id order; `unk` must be among them.
    pub fn new(tokens: Vec<String>, unk: &str) -> Result<Self> {
        let mut start = FxHashMap::default();
        let mut cont = FxHashMap::default();
        let mut max_piece_bytes = 1;
        for (id, t) in tokens.iter().enumerate() {
            let id = u32::try_from(id).map_err(|_| Error::Config("vocabulary has more than 2^32 tokens".into()))?;
            let (map, key) = match t.strip_prefix(CONTINUING_PREFIX) {
                Some(rest) if !rest.is_empty() => (&mut cont, rest),
                _ => (&mut start, t.as_str()),
            };
            max_piece_bytes = max_piece_bytes.max(key.len());
            // A duplicated line keeps its first id, as BERT's loader does.
            map.entry(key.into()).or_insert(id);
        }
        let unk = *start.get(unk).ok_or_else(|| Error::Config(format!("vocabulary has no `{unk}` token")))?;
        Ok(WordPiece { tokens, start, cont, unk, max_piece_bytes })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of a token as written in the vocabulary (`##` included for continuations).
    pub fn id(&self, token: &str) -> Option<u32> {
        match token.strip_prefix(CONTINUING_PREFIX) {
            Some(rest) if !rest.is_empty() => self.cont.get(rest).copied(),
            _ => self.start.get(token).copied(),
        }
    }

    pub fn unk_id(&self) -> u32 {
        self.unk
    }

    /// Encodes one pre-tokenized word, appending ids. Greedy longest match; where no
    /// continuation piece matches, a word-initial piece is tried (a character the
    /// training data only saw at word starts), and only then one character becomes
    /// [UNK] — so an unknown character costs one [UNK], not the whole word.
    pub fn encode_word(&self, word: &str, out: &mut Vec<u32>) {
        if let Some(&id) = self.start.get(word) {
            out.push(id);
            return;
        }
        let mut pos = 0;
        while pos < word.len() {
            let rest = &word[pos..];
            let found = if pos == 0 {
                longest(&self.start, rest, self.max_piece_bytes)
            } else {
                longest(&self.cont, rest, self.max_piece_bytes).or_else(|| longest(&self.start, rest, self.max_piece_bytes))
            };
            match found {
                Some((id, len)) => {
                    out.push(id);
                    pos += len;
                }
                None => {
                    out.push(self.unk);
                    pos += rest.chars().next().map_or(1, char::len_utf8);
                }
            }
        }
    }

    /// Reads a BERT-style vocab.txt (UTF-8, one token per line; see [`escape`]).
    pub fn load_vocab_txt(path: &Path, unk: &str) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let tokens: Vec<String> = text.lines().map(|l| unescape(l.trim_end_matches('\r'))).collect();
        if tokens.is_empty() {
            return Err(Error::format(path, "empty vocabulary"));
        }
        WordPiece::new(tokens, unk).map_err(|e| Error::format(path, e.to_string()))
    }

    /// The vocab.txt text: one (escaped) token per line.
    pub fn vocab_txt(&self) -> String {
        let mut s = String::new();
        for t in &self.tokens {
            s.push_str(&escape(t));
            s.push('\n');
        }
        s
    }
}

fn longest(map: &FxHashMap<Box<str>, u32>, s: &str, max_bytes: usize) -> Option<(u32, usize)> {
    let mut end = s.len().min(max_bytes);
    while end > 0 {
        if s.is_char_boundary(end) {
            if let Some(&id) = map.get(&s[..end]) {
                return Some((id, end));
            }
        }
        end -= 1;
    }
    None
}

/// vocab.txt is line-based, so whitespace tokens (one whitespace character each) are
/// written as `<U+XXXX>`; no other token can look like that because the pre-tokenizer
/// never puts `<` and letters in one word with whitespace.
pub fn escape(token: &str) -> String {
    let mut cs = token.chars();
    match (cs.next(), cs.next()) {
        (Some(c), None) if c.is_whitespace() => format!("<U+{:04X}>", c as u32),
        _ => token.to_string(),
    }
}

pub fn unescape(line: &str) -> String {
    if let Some(hex) = line.strip_prefix("<U+").and_then(|r| r.strip_suffix('>')) {
        if let Some(c) = u32::from_str_radix(hex, 16).ok().and_then(char::from_u32) {
            if c.is_whitespace() {
                return c.to_string();
            }
        }
    }
    line.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wp(tokens: &[&str]) -> WordPiece {
        WordPiece::new(tokens.iter().map(|s| s.to_string()).collect(), "[UNK]").unwrap()
    }

    #[test]
    fn greedy_longest_match() {
        let m = wp(&["[PAD]", "[UNK]", "un", "##aff", "##able", "unaff", "a", "##a", "中国", "中", "##国", "##人"]);
        let mut out = vec![];
        m.encode_word("unaffable", &mut out);
        assert_eq!(out, [5, 4]);
        out.clear();
        m.encode_word("中国人", &mut out);
        assert_eq!(out, [8, 11]);
        out.clear();
        // x is unknown: one [UNK] for it, the rest still encoded.
        m.encode_word("axa", &mut out);
        assert_eq!(out, [6, 1, 7]);
        out.clear();
        // A continuation the vocabulary lacks falls back to the word-initial piece.
        m.encode_word("国中", &mut out);
        assert_eq!(out, [1, 9]);
    }

    #[test]
    fn escapes_whitespace_tokens() {
        for t in [" ", "\n", "\t", "\u{2028}"] {
            assert_eq!(unescape(&escape(t)), t);
            assert!(!escape(t).contains(char::is_whitespace));
        }
        assert_eq!(escape("<U+0020>"), "<U+0020>");
        assert_eq!(unescape("<U+0041>"), "<U+0041>");
    }
}
