//! The Chinese text primitives every stage shares, written once so that extract, dedup,
//! filter and the tokenizer read a character the same way: OpenCC traditional →
//! simplified folding, full-width → half-width folding, NFKC, the Han / CJK predicates,
//! the one jieba segmenter, and the line and paragraph splitting the filter rules use.
//!
//! Each stage composes these into its own normalisation (dedup drops punctuation and
//! case, the filter keeps them), but no stage carries a table or a folding of its own,
//! so a character folds to the same thing at every step of the pipeline.

pub mod jieba;
pub mod nfkc;
pub mod opencc;
pub mod script;
pub mod split;
pub mod width;

pub use jieba::{in_jieba_block, jieba, Jieba};
pub use nfkc::{for_each_nfkc, nfkc_into};
pub use opencc::{has_phrase, t2s, t2s_char, t2s_chars};
pub use script::{is_cjk, is_han, is_nfkc_inert_han, nfkc_may_give_han};
pub use split::{for_each_collapsed, nonblank_lines, paragraphs};
pub use width::{half_width, to_half_width};
