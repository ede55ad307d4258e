//! The tokenizer file: how ids were made, self-contained.
//!
//! Two forms are read and written:
//!
//! * **`tokenizer.json`** (any path ending in `.json`): one JSON object
//!   ```text
//!   { "format": "m6corpus-tokenizer", "version": 1,
//!     "normalizer":    { "nfkc": true, "fullwidth_to_halfwidth": true,
//!                        "lowercase": false, "traditional_to_simplified": false },
//!     "pre_tokenizer": { "type": "jieba", "hmm": true, "user_dict": ["word freq tag", ...] }
//!                      | { "type": "whitespace" },
//!     "model": { "type": "wordpiece", "continuing_subword_prefix": "##",
//!                "unk_token": "[UNK]", "vocab": ["[PAD]", "[UNK]", ...] },   // index = id
//!     "special_ids": { "pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4, "img": 5, "img_end": 6 },
//!     "image": { "image_size": 224, "patch_size": 16, "grid": 14,
//!                "patch_bytes": 768, "layout": "..." }          // only in tokenize outputs
//!   }
//!   ```
//!   Whitespace tokens are single whitespace characters (`" "`, `"\n"`, ...).
//!   The tokenize stage writes this form into its output folder as `tokenizer.json`.
//! * **`vocab.txt`** (any other path): BERT's format, one token per line, line
//!   number (from 0) = id; a whitespace token is written `<U+XXXX>` (e.g. `<U+0020>`,
//!   `<U+000A>`). Loading a vocab.txt uses the default normalizer and jieba settings.
//!
//! Vocabularies trained here have [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4 [IMG]=5
//! [/IMG]=6, `[unused0]`..`[unused92]` at 7..=99, and words from 100: single
//! characters first (by frequency), then merged pieces in merge order.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::image::ImageConfig;
use crate::normalizer::NormalizerConfig;
use crate::pretokenizer::PreTokenizerConfig;
use crate::tokenizer::{SpecialIds, Tokenizer, TokenizerConfig};
use crate::wordpiece::{WordPiece, CONTINUING_PREFIX};
use crate::{Error, Result};

pub const FORMAT: &str = "m6corpus-tokenizer";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerFile {
    pub format: String,
    pub version: u32,
    #[serde(default)]
    pub normalizer: NormalizerConfig,
    #[serde(default)]
    pub pre_tokenizer: PreTokenizerConfig,
    pub model: ModelFile,
    /// Informational: recomputed from the vocabulary on load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub special_ids: Option<SpecialIds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    #[serde(rename = "type")]
    pub kind: String,
    pub continuing_subword_prefix: String,
    pub unk_token: String,
    pub vocab: Vec<String>,
}

/// How the image patches of the samples were made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageFile {
    pub image_size: u32,
    pub patch_size: u32,
    pub grid: u32,
    pub patch_bytes: u32,
    pub layout: String,
}

impl ImageFile {
    pub fn from_config(c: &ImageConfig) -> Self {
        ImageFile { image_size: c.image_size, patch_size: c.patch_size, grid: c.grid(), patch_bytes: c.patch_bytes() as u32, layout: crate::PATCH_LAYOUT.to_string() }
    }
}

impl Tokenizer {
    /// Loads a `tokenizer.json` or a `vocab.txt` (told apart by content: JSON starts with `{`).
    pub fn load(path: &Path) -> Result<Tokenizer> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        if text.trim_start().starts_with('{') {
            let f: TokenizerFile = serde_json::from_str(&text).map_err(|e| Error::format(path, format!("not a tokenizer file: {e}")))?;
            if f.format != FORMAT || f.version != VERSION {
                return Err(Error::format(path, format!("format `{}` v{}, expected `{FORMAT}` v{VERSION}", f.format, f.version)));
            }
            if f.model.kind != "wordpiece" || f.model.continuing_subword_prefix != CONTINUING_PREFIX {
                return Err(Error::format(path, format!("model `{}` with prefix `{}`: only wordpiece with `##` is supported", f.model.kind, f.model.continuing_subword_prefix)));
            }
            let model = WordPiece::new(f.model.vocab, &f.model.unk_token).map_err(|e| Error::format(path, e.to_string()))?;
            Tokenizer::new(TokenizerConfig { normalizer: f.normalizer, pre_tokenizer: f.pre_tokenizer }, model).map_err(|e| Error::format(path, e.to_string()))
        } else {
            let model = WordPiece::load_vocab_txt(path, crate::UNK)?;
            Tokenizer::new(TokenizerConfig::default(), model).map_err(|e| Error::format(path, e.to_string()))
        }
    }

    /// The JSON form, with the image settings when given.
    pub fn to_file(&self, image: Option<&ImageConfig>) -> TokenizerFile {
        let c = self.config().clone();
        TokenizerFile {
            format: FORMAT.into(),
            version: VERSION,
            normalizer: c.normalizer,
            pre_tokenizer: c.pre_tokenizer,
            model: ModelFile {
                kind: "wordpiece".into(),
                continuing_subword_prefix: CONTINUING_PREFIX.into(),
                unk_token: crate::UNK.into(),
                vocab: self.model().tokens().to_vec(),
            },
            special_ids: Some(self.specials()),
            image: image.map(ImageFile::from_config),
        }
    }

    pub fn to_json(&self, image: Option<&ImageConfig>) -> String {
        let mut s = serde_json::to_string_pretty(&self.to_file(image)).expect("tokenizer file serialises");
        s.push('\n');
        s
    }

    /// Saves as tokenizer.json (path ends in `.json`) or vocab.txt (anything else),
    /// atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = if path.extension().is_some_and(|e| e == "json") { self.to_json(None) } else { self.model().vocab_txt() };
        let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
        std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }
}
