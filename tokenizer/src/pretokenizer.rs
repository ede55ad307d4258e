//! Pre-tokenizers: split normalised text into words the model encodes one by one.
//! The words always cover the text exactly (no character is dropped), and every
//! whitespace character is a word of its own, which is how decoding gets spaces and
//! line breaks back even though WordPiece itself knows nothing about them.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use m6_text::Jieba;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub trait PreTokenizer: Send + Sync {
    /// Appends the words of `text` to `out`; their concatenation is `text`.
    fn split<'a>(&self, text: &'a str, out: &mut Vec<&'a str>);
}

/// Splits on whitespace only, keeping each whitespace character as a word.
pub struct WhitespaceSplit;

impl PreTokenizer for WhitespaceSplit {
    fn split<'a>(&self, text: &'a str, out: &mut Vec<&'a str>) {
        push_ws_split(text, out);
    }
}

/// Pushes `s` with each whitespace character cut out as a word of its own.
fn push_ws_split<'a>(s: &'a str, out: &mut Vec<&'a str>) {
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if c.is_whitespace() {
            if start < i {
                out.push(&s[start..i]);
            }
            out.push(&s[i..i + c.len_utf8()]);
            start = i + c.len_utf8();
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
}

/// jieba-rs word segmentation (its embedded dictionary plus user dictionaries).
pub struct JiebaPreTokenizer {
    /// `None`: the workspace's shared instance (m6-text's; the embedded dictionary takes
    /// ~0.2 s to load), which every tokenizer without user dictionaries uses.
    own: Option<Arc<Jieba>>,
    hmm: bool,
}

impl JiebaPreTokenizer {
    /// `user_dict` holds lines in jieba's dictionary format (`word [freq] [tag]`).
    pub fn new(hmm: bool, user_dict: &[String]) -> Result<Self> {
        let own = if user_dict.is_empty() {
            None
        } else {
            // A user dictionary changes the instance, so it cannot be the shared one.
            let mut j = Jieba::new();
            let text = user_dict.join("\n");
            j.load_dict(&mut BufReader::new(text.as_bytes())).map_err(|e| Error::Config(format!("user dictionary: {e}")))?;
            Some(Arc::new(j))
        };
        Ok(JiebaPreTokenizer { own, hmm })
    }

    fn jieba(&self) -> &Jieba {
        match &self.own {
            Some(j) => j,
            None => m6_text::jieba(),
        }
    }
}

impl PreTokenizer for JiebaPreTokenizer {
    fn split<'a>(&self, text: &'a str, out: &mut Vec<&'a str>) {
        for w in self.jieba().cut(text, self.hmm) {
            // jieba keeps "\r\n" and runs of non-Han symbols together in places.
            if w.bytes().any(|b| b.is_ascii_whitespace()) || w.chars().any(char::is_whitespace) {
                push_ws_split(w, out);
            } else {
                out.push(w);
            }
        }
    }
}

/// Reads a jieba user dictionary file into lines (for embedding in the tokenizer file,
/// so the tokenizer is self-contained).
pub fn read_user_dict(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    // Bad lines are reported by jieba when the tokenizer is built.
    let lines = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    Ok(lines)
}

/// Which pre-tokenizer runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum PreTokenizerConfig {
    /// jieba-rs segmentation; `hmm` finds words missing from the dictionary;
    /// `user_dict` holds extra dictionary lines (`word [freq] [tag]`).
    Jieba {
        #[serde(default = "yes")]
        hmm: bool,
        #[serde(default)]
        user_dict: Vec<String>,
    },
    /// Whitespace only (each whitespace character is a word).
    Whitespace,
}

fn yes() -> bool {
    true
}

impl Default for PreTokenizerConfig {
    fn default() -> Self {
        PreTokenizerConfig::Jieba { hmm: true, user_dict: vec![] }
    }
}

impl PreTokenizerConfig {
    pub fn build(&self) -> Result<Box<dyn PreTokenizer>> {
        Ok(match self {
            PreTokenizerConfig::Jieba { hmm, user_dict } => Box::new(JiebaPreTokenizer::new(*hmm, user_dict)?),
            PreTokenizerConfig::Whitespace => Box::new(WhitespaceSplit),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_text_and_isolates_whitespace() {
        let p = JiebaPreTokenizer::new(true, &[]).unwrap();
        let text = "我来到北京清华大学。\r\nDebian  GNU/Linux 是一个\t操作系统";
        let mut w = vec![];
        p.split(text, &mut w);
        assert_eq!(w.concat(), text);
        assert!(w.contains(&"清华大学"), "{w:?}");
        for x in &w {
            assert!(!x.chars().any(char::is_whitespace) || x.chars().count() == 1, "{x:?}");
        }
    }

    #[test]
    fn user_dictionary_changes_segmentation() {
        let mut plain = vec![];
        JiebaPreTokenizer::new(false, &[]).unwrap().split("李小福是创新办主任", &mut plain);
        assert!(!plain.contains(&"创新办"), "{plain:?}");
        let mut user = vec![];
        JiebaPreTokenizer::new(false, &["创新办 3 i".to_string()]).unwrap().split("李小福是创新办主任", &mut user);
        assert!(user.contains(&"创新办"), "{user:?}");
    }
}
