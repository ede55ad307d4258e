//! A bounded-memory quantile sketch for non-negative integer measures (lengths,
//! pixel sizes, token counts): exact while the values are few, then approximate
//! with a relative error under 0.05%, so stats never hold a dataset in RAM.

use std::collections::BTreeMap;

use serde::Serialize;

/// Distinct values kept exactly before the sketch switches to rounded values.
const EXACT_CAP: usize = 1 << 16;
/// Significant bits kept per value once rounded: values below 2^12 stay exact,
/// larger ones lose at most 1/2048 of their size. This bounds the distinct keys to
/// 4096 + 52 × 2048 whatever the data.
const KEEP_BITS: u32 = 12;

#[derive(Debug, Clone, Default)]
pub struct Sketch {
    counts: BTreeMap<u64, u64>,
    rounded: bool,
    n: u64,
    sum: u128,
}

fn round(v: u64) -> u64 {
    let bits = 64 - v.leading_zeros();
    if bits <= KEEP_BITS {
        v
    } else {
        let drop = bits - KEEP_BITS;
        (v >> drop) << drop
    }
}

impl Sketch {
    pub fn add(&mut self, v: u64) {
        self.n += 1;
        self.sum += v as u128;
        let key = if self.rounded { round(v) } else { v };
        *self.counts.entry(key).or_default() += 1;
        self.maybe_round();
    }

    fn maybe_round(&mut self) {
        if !self.rounded && self.counts.len() > EXACT_CAP {
            self.round_all();
        }
    }

    fn round_all(&mut self) {
        let mut out = BTreeMap::new();
        for (k, c) in std::mem::take(&mut self.counts) {
            *out.entry(round(k)).or_default() += c;
        }
        self.counts = out;
        self.rounded = true;
    }

    /// Merges `other` in. The result depends only on the union of values, not on how
    /// they were split, so parallel scans give the same numbers as sequential ones.
    pub fn merge(&mut self, mut other: Sketch) {
        if other.rounded && !self.rounded {
            self.round_all();
        }
        if self.rounded && !other.rounded {
            other.round_all();
        }
        self.n += other.n;
        self.sum += other.sum;
        for (k, c) in other.counts {
            *self.counts.entry(k).or_default() += c;
        }
        self.maybe_round();
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    pub fn sum(&self) -> u128 {
        self.sum
    }

    /// Whether every quantile is exact (no value was rounded).
    pub fn exact(&self) -> bool {
        !self.rounded
    }

    /// The nearest-rank quantile: the smallest value v such that at least
    /// ceil(q·n) values are <= v (q = 0 gives the minimum). None when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (&v, &c) in &self.counts {
            seen += c;
            if seen >= rank {
                return Some(v);
            }
        }
        self.counts.keys().next_back().copied()
    }

    pub fn max(&self) -> Option<u64> {
        self.counts.keys().next_back().copied()
    }

    /// Up to `bins` equal-width bins from the minimum to the 99th percentile; values
    /// above it are counted in a last, open-ended bin so one outlier does not flatten
    /// the chart.
    pub fn histogram(&self, bins: usize) -> Vec<Bin> {
        let (Some(lo), Some(p99), Some(max)) = (self.quantile(0.0), self.quantile(0.99), self.max()) else {
            return vec![];
        };
        let span = p99 - lo + 1;
        let width = span.div_ceil(bins.max(1) as u64).max(1);
        let n = span.div_ceil(width) as usize;
        let mut out: Vec<Bin> = (0..n)
            .map(|i| Bin { lo: lo + i as u64 * width, hi: (lo + (i as u64 + 1) * width - 1).min(p99), count: 0 })
            .collect();
        let mut tail = Bin { lo: p99 + 1, hi: max, count: 0 };
        for (&v, &c) in &self.counts {
            if v > p99 {
                tail.count += c;
            } else {
                out[((v - lo) / width) as usize].count += c;
            }
        }
        if tail.count > 0 {
            out.push(tail);
        }
        out
    }
}

/// One histogram bar: values in `lo..=hi`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bin {
    pub lo: u64,
    pub hi: u64,
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(v: &mut [u64], q: f64) -> u64 {
        v.sort();
        let rank = ((q * v.len() as f64).ceil() as usize).max(1);
        v[rank - 1]
    }

    #[test]
    fn exact_quantiles_match_sorting() {
        let vals: Vec<u64> = (0..1000u64).map(|i| (i * 7919) % 613).collect();
        let mut s = Sketch::default();
        vals.iter().for_each(|&v| s.add(v));
        for q in [0.0, 0.1, 0.5, 0.9, 0.99, 1.0] {
            assert_eq!(s.quantile(q), Some(naive(&mut vals.clone(), q)), "q={q}");
        }
        assert!(s.exact());
        assert_eq!(s.sum(), vals.iter().map(|&v| v as u128).sum::<u128>());
        let h = s.histogram(10);
        assert_eq!(h.iter().map(|b| b.count).sum::<u64>(), 1000);
    }

    #[test]
    fn rounded_quantiles_are_within_bound_and_merge_is_split_independent() {
        // More distinct values than the exact cap forces rounding.
        let vals: Vec<u64> = (0..200_000u64).map(|i| i.wrapping_mul(2654435761) % 10_000_000).collect();
        let mut whole = Sketch::default();
        vals.iter().for_each(|&v| whole.add(v));
        assert!(!whole.exact());
        let mut parts = Sketch::default();
        for chunk in vals.chunks(30_000) {
            let mut s = Sketch::default();
            chunk.iter().for_each(|&v| s.add(v));
            parts.merge(s);
        }
        for q in [0.0, 0.1, 0.5, 0.9, 0.99, 1.0] {
            let truth = naive(&mut vals.clone(), q) as f64;
            let got = whole.quantile(q).unwrap() as f64;
            assert!((truth - got).abs() <= truth / 2048.0 + 1.0, "q={q} truth={truth} got={got}");
            assert_eq!(whole.quantile(q), parts.quantile(q));
        }
        assert!(whole.counts.len() < 4096 + 52 * 2048);
    }

    #[test]
    fn empty_sketch_has_no_quantiles() {
        let s = Sketch::default();
        assert_eq!(s.quantile(0.5), None);
        assert!(s.histogram(10).is_empty());
    }
}
