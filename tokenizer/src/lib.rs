//! m6-tokenizer: the text and image side of turning documents and pairs into training
//! samples. Text goes through a HuggingFace-tokenizers-like pipeline
//! (normalizer → pre-tokenizer → model → post-processor, and a decoder back), with
//! jieba-rs pre-segmentation and a WordPiece vocabulary trained from a `document`
//! dataset; images are resized, centre-cropped and cut into uint8 patches.
//!
//! The tokenizer file format (what `m6corpus tokenizer train` writes and the tokenize
//! stage copies into its output) is documented in [`file`].

pub mod decoder;
pub mod file;
pub mod image;
pub mod normalizer;
pub mod postprocessor;
pub mod pretokenizer;
pub mod tokenizer;
pub mod trainer;
pub mod wordpiece;

pub use crate::image::{ImageConfig, ImageEncoding, ImageError, PATCH_LAYOUT};
pub use crate::tokenizer::{Encoding, Tokenizer, TokenizerConfig};
pub use crate::trainer::{TrainerConfig, WordCounter};
pub use crate::wordpiece::WordPiece;

use std::path::PathBuf;

/// Special tokens with the ids every vocabulary this crate trains gives them (the
/// trainer relies on them); ids 7..=99 are reserved (`[unused0]`...), words start at 100.
pub const PAD: &str = "[PAD]";
pub const UNK: &str = "[UNK]";
pub const CLS: &str = "[CLS]";
pub const SEP: &str = "[SEP]";
pub const MASK: &str = "[MASK]";
pub const IMG: &str = "[IMG]";
pub const IMG_END: &str = "[/IMG]";
pub const SPECIAL_TOKENS: [&str; 7] = [PAD, UNK, CLS, SEP, MASK, IMG, IMG_END];
pub const PAD_ID: u32 = 0;
pub const UNK_ID: u32 = 1;
pub const CLS_ID: u32 = 2;
pub const SEP_ID: u32 = 3;
pub const MASK_ID: u32 = 4;
pub const IMG_ID: u32 = 5;
pub const IMG_END_ID: u32 = 6;
/// The first id of the normal vocabulary.
pub const FIRST_WORD_ID: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Pipeline(#[from] m6_pipeline::Error),
    #[error(transparent)]
    Image(#[from] ImageError),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Format { path: path.into(), message: message.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
