//! Dedup's work files in `OUTPUT/_work`: the contract between its phases (sign →
//! pairs → clusters → write), which may run in different processes, under different
//! task counts, on different machines sharing the folder. The layouts are fixed-size
//! little-endian records so the pairs phase can read one key range of a run by
//! offset; the markers are JSON.
//!
//! ```text
//! _work/fingerprint               the plan's fingerprint (inputs, --against, config)
//! _work/sig/UUUUUU.bin            per row: RowHeader + signature body (fixed size)
//! _work/sig/UUUUUU.ids            per row: id length u32 + id bytes
//! _work/sig/UUUUUU-RRRR.run       sorted band records: (INDEX+1) u64 offsets, then BandRecords
//! _work/sig/UUUUUU.done           UnitDone: the unit is signed
//! _work/pairs/PPPP-of-QQQQ.bin    verified pairs (a u32, b u32)…, count u64, PAIRS_MAGIC u64
//! _work/drop/UUUUUU.json          [DropEntry] of one input shard, sorted by row
//! _work/clusters.json             ClustersDone: the clusters phase is done
//! ```

use serde::{Deserialize, Serialize};

/// The work folder's name inside the output dataset.
pub const FOLDER: &str = "_work";
/// Sub-folders and files of the work folder.
pub const SIG: &str = "sig";
pub const PAIRS: &str = "pairs";
pub const DROP: &str = "drop";
pub const CLUSTERS: &str = "clusters.json";
pub const FINGERPRINT: &str = "fingerprint";

/// `sig/UUUUUU.bin`, relative to the work folder.
pub fn bin_file(unit: usize) -> String {
    format!("{SIG}/{unit:06}.bin")
}
/// `sig/UUUUUU.ids`.
pub fn ids_file(unit: usize) -> String {
    format!("{SIG}/{unit:06}.ids")
}
/// `sig/UUUUUU-RRRR.run`.
pub fn run_file(unit: usize, run: u32) -> String {
    format!("{SIG}/{unit:06}-{run:04}.run")
}
/// `sig/UUUUUU.done`.
pub fn done_file(unit: usize) -> String {
    format!("{SIG}/{unit:06}.done")
}
/// `pairs/PPPP-of-QQQQ.bin`.
pub fn pairs_file(range: usize, of: usize) -> String {
    format!("{PAIRS}/{range:04}-of-{of:04}.bin")
}
/// `drop/UUUUUU.json`.
pub fn drop_file(unit: usize) -> String {
    format!("{DROP}/{unit:06}.json")
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// The header before each row's signature body in `sig/*.bin`: what the keep rule
/// compares without the body.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowHeader {
    /// Characters of a document, pixels of an image.
    pub size: u32,
    /// Quality score (documents under `keep = "quality"`), sharpness (images); -inf
    /// for rows of `--against` datasets.
    pub score: f32,
    /// Hash of the row's id: the deterministic tie-break.
    pub id_hash: u64,
}

impl RowHeader {
    pub const LEN: usize = 16;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..4].copy_from_slice(&self.size.to_le_bytes());
        b[4..8].copy_from_slice(&self.score.to_le_bytes());
        b[8..16].copy_from_slice(&self.id_hash.to_le_bytes());
        b
    }

    /// From the first [`RowHeader::LEN`] bytes of `b` (callers read whole rows).
    pub fn decode(b: &[u8]) -> RowHeader {
        RowHeader { size: u32_at(b, 0), score: f32::from_le_bytes(b[4..8].try_into().unwrap()), id_hash: u64_at(b, 8) }
    }
}

/// Bits of a band key's top that index a run (and bound the number of pairs ranges).
pub const INDEX_BITS: u32 = 12;
/// Entries of a run's index.
pub const INDEX: usize = 1 << INDEX_BITS;
/// Bytes of a run's index: where each key prefix `0..=INDEX` starts, as u64 record numbers.
pub const RUN_HEADER: u64 = ((INDEX + 1) * 8) as u64;

/// One band key of one row in a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandRecord {
    pub key: u64,
    /// Order inside the key's bucket (close hashes sort together).
    pub order: u64,
    /// The row's id hash: a deterministic tie-break.
    pub tie: u64,
    /// Sign unit and row within it.
    pub unit: u32,
    pub row: u32,
    /// Exact or near key (dedup's `EXACT`/`NEAR`).
    pub flag: u8,
}

impl BandRecord {
    pub const LEN: usize = 33;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..8].copy_from_slice(&self.key.to_le_bytes());
        b[8..16].copy_from_slice(&self.order.to_le_bytes());
        b[16..24].copy_from_slice(&self.tie.to_le_bytes());
        b[24..28].copy_from_slice(&self.unit.to_le_bytes());
        b[28..32].copy_from_slice(&self.row.to_le_bytes());
        b[32] = self.flag;
        b
    }

    pub fn decode(b: &[u8]) -> BandRecord {
        BandRecord { key: u64_at(b, 0), order: u64_at(b, 8), tie: u64_at(b, 16), unit: u32_at(b, 24), row: u32_at(b, 28), flag: b[32] }
    }

    /// The run index slot of this record's key.
    pub fn prefix(&self) -> usize {
        (self.key >> (64 - INDEX_BITS)) as usize
    }
}

/// Closes every pairs file after its count, so a truncated file never reads as "no pairs".
pub const PAIRS_MAGIC: u64 = 0x6d36_7061_6972_7331;

/// A pairs file's bytes: each pair of global row numbers, the count, the magic.
pub fn encode_pairs(pairs: &[(u32, u32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pairs.len() * 8 + 16);
    for (a, b) in pairs {
        out.extend_from_slice(&a.to_le_bytes());
        out.extend_from_slice(&b.to_le_bytes());
    }
    out.extend_from_slice(&(pairs.len() as u64).to_le_bytes());
    out.extend_from_slice(&PAIRS_MAGIC.to_le_bytes());
    out
}

/// The pairs of a pairs file; `None` when it is truncated or damaged.
pub fn decode_pairs(bytes: &[u8]) -> Option<Vec<(u32, u32)>> {
    let n = bytes.len().checked_sub(16)? / 8;
    if bytes.len() % 8 != 0 || u64_at(bytes, bytes.len() - 8) != PAIRS_MAGIC || u64_at(bytes, bytes.len() - 16) != n as u64 {
        return None;
    }
    Some(bytes[..n * 8].chunks_exact(8).map(|c| (u32_at(c, 0), u32_at(c, 4))).collect())
}

/// `sig/UUUUUU.done`: a signed unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitDone {
    pub rows: u64,
    pub runs: u32,
    pub records: u64,
}

/// `clusters.json`: the clusters phase is done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClustersDone {
    pub fingerprint: String,
    pub documents: u64,
    pub pairs: u64,
    pub rows_in_pairs: u64,
    pub removed: u64,
}

/// One row a drop list removes, with why and in favour of which row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DropEntry {
    pub row: u32,
    pub kept_id: String,
    pub similarity: f32,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_truncated_pairs_are_refused() {
        let r = BandRecord { key: u64::MAX - 7, order: 3, tie: 1 << 40, unit: 9, row: u32::MAX, flag: 1 };
        assert_eq!(BandRecord::decode(&r.encode()), r);
        assert_eq!(r.prefix(), INDEX - 1);
        let h = RowHeader { size: 123, score: f32::NEG_INFINITY, id_hash: 42 };
        assert_eq!(RowHeader::decode(&h.encode()), h);
        let pairs = vec![(1, 2), (7, u32::MAX)];
        let b = encode_pairs(&pairs);
        assert_eq!(decode_pairs(&b), Some(pairs));
        assert_eq!(decode_pairs(&encode_pairs(&[])), Some(vec![]));
        assert_eq!(decode_pairs(&b[..b.len() - 1]), None);
        assert_eq!(decode_pairs(&b[8..]), None, "a file missing its first pair has the wrong count");
        assert_eq!(decode_pairs(&[]), None);
    }
}
