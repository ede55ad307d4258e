//! Decoders: ids back to text. The WordPiece decoder joins pieces without adding
//! anything (whitespace has tokens of its own), so decode(encode(text)) is the
//! normalised text, with `[UNK]` wherever a character was unknown.

use crate::wordpiece::{WordPiece, CONTINUING_PREFIX};

pub trait Decoder: Send + Sync {
    /// Appends the text of `ids` to `out`.
    fn decode(&self, model: &WordPiece, ids: &[u32], out: &mut String);
}

/// Concatenates pieces, dropping the continuation prefix; special tokens other than
/// [UNK] are skipped unless `keep_special`.
pub struct WordPieceDecoder {
    pub keep_special: bool,
    /// Ids of special tokens (sorted).
    pub special_ids: Vec<u32>,
    pub unk_id: u32,
}

impl Decoder for WordPieceDecoder {
    fn decode(&self, model: &WordPiece, ids: &[u32], out: &mut String) {
        for &id in ids {
            if id != self.unk_id && !self.keep_special && self.special_ids.binary_search(&id).is_ok() {
                continue;
            }
            match model.token(id) {
                Some(t) => match t.strip_prefix(CONTINUING_PREFIX) {
                    Some(rest) if !rest.is_empty() => out.push_str(rest),
                    _ => out.push_str(t),
                },
                None => out.push_str(crate::UNK),
            }
        }
    }
}
