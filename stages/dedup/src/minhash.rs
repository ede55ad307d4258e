//! MinHash signatures for near-duplicate text: one 64-bit hash per shingle and
//! one-permutation hashing (the hash picks a bin, its low bits compete for the bin's
//! minimum) with optimal densification for empty bins, so a document costs
//! O(shingles + k) instead of O(shingles × k). Plus band keys for LSH.

/// Murmur3's 64-bit finaliser: full avalanche for the last step of every hash here.
#[inline(always)]
pub fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Hashes a run of characters (a character n-gram).
#[inline(always)]
pub fn hash_chars(w: &[char], seed: u64) -> u64 {
    let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
    for &c in w {
        h = (h.rotate_left(23) ^ c as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fmix64(h ^ w.len() as u64)
}

/// Hashes a string (a word), for word shingles.
#[inline]
pub fn hash_str(s: &str, seed: u64) -> u64 {
    let mut h = seed ^ 0x2545_f491_4f6c_dd1d;
    for chunk in s.as_bytes().chunks(8) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        h = (h.rotate_left(29) ^ u64::from_le_bytes(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fmix64(h ^ s.len() as u64)
}

/// Computes densified one-permutation MinHash signatures of `k` 32-bit values.
#[derive(Debug, Clone)]
pub struct MinHasher {
    pub k: usize,
    pub seed: u64,
    /// The first BORROW_TRIES bins each bin may borrow from, in order: densification
    /// of a short document then costs table reads instead of hashing.
    borrow: Vec<u32>,
}

const BORROW_TRIES: usize = 8;

impl MinHasher {
    pub fn new(k: usize, seed: u64) -> Self {
        let mut m = MinHasher { k, seed, borrow: Vec::with_capacity(k * BORROW_TRIES) };
        for i in 0..k {
            for attempt in 1..=BORROW_TRIES as u64 {
                m.borrow.push(m.borrow_bin(i, attempt) as u32);
            }
        }
        m
    }

    /// The bin that empty bin `i` tries to borrow from at `attempt` (1, 2, ...).
    #[inline]
    fn borrow_bin(&self, i: usize, attempt: u64) -> usize {
        let h = fmix64(self.seed ^ ((i as u64) << 32) ^ attempt.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        ((h >> 32) * self.k as u64 >> 32) as usize
    }

    /// Adds one shingle hash to a signature being built (`sig` starts all `u32::MAX`,
    /// `filled` all false).
    #[inline(always)]
    pub fn add(&self, h: u64, sig: &mut [u32]) {
        // Fast range reduction of the high half picks the bin; the low half is the value.
        let bin = (((h >> 32) * self.k as u64) >> 32) as usize;
        let v = h as u32;
        if v < sig[bin] {
            sig[bin] = v;
        }
    }

    /// Fills empty bins from non-empty ones chosen by a hash of (bin, attempt), which
    /// keeps the estimator unbiased (Shrivastava 2017). Returns false when every bin
    /// is empty (no shingles at all).
    pub fn densify(&self, sig: &mut [u32]) -> bool {
        let k = self.k;
        let filled = sig.iter().filter(|&&v| v != u32::MAX).count();
        if filled == 0 {
            return false;
        }
        if filled == k {
            return true;
        }
        // Which bins were empty before filling starts: a filled bin may only borrow from
        // an originally non-empty one. Short documents leave many bins empty, so this
        // runs for most of them; a stack mask avoids an allocation per document.
        let mut stack = [0u64; 8];
        let mut heap = vec![];
        let empty: &mut [u64] = if k <= 512 {
            &mut stack[..k.div_ceil(64)]
        } else {
            heap.resize(k.div_ceil(64), 0);
            &mut heap
        };
        for (i, &v) in sig.iter().enumerate() {
            if v == u32::MAX {
                empty[i / 64] |= 1 << (i % 64);
            }
        }
        let was_empty = |j: usize, empty: &[u64]| empty[j / 64] >> (j % 64) & 1 == 1;
        for i in 0..k {
            if !was_empty(i, empty) {
                continue;
            }
            let mut attempt = 1u64;
            loop {
                let j = if attempt as usize <= BORROW_TRIES {
                    self.borrow[i * BORROW_TRIES + attempt as usize - 1] as usize
                } else {
                    self.borrow_bin(i, attempt)
                };
                if !was_empty(j, empty) {
                    // Mix in the attempt so a borrowed value differs from its source bin's.
                    sig[i] = sig[j] ^ (attempt as u32).wrapping_mul(0x85eb_ca6b);
                    break;
                }
                attempt += 1;
            }
        }
        true
    }

    /// Signature of character `n`-grams of `chars` (the whole text when shorter than `n`).
    pub fn char_ngrams(&self, chars: &[char], n: usize, sig: &mut Vec<u32>) -> bool {
        sig.clear();
        sig.resize(self.k, u32::MAX);
        if chars.is_empty() {
            return false;
        }
        if chars.len() <= n {
            self.add(hash_chars(chars, self.seed), sig);
        } else {
            for w in chars.windows(n) {
                self.add(hash_chars(w, self.seed), sig);
            }
        }
        self.densify(sig)
    }

    /// Signature of word `n`-grams (words given as hashes).
    pub fn word_ngrams(&self, words: &[u64], n: usize, sig: &mut Vec<u32>) -> bool {
        sig.clear();
        sig.resize(self.k, u32::MAX);
        if words.is_empty() {
            return false;
        }
        let n = n.min(words.len()).max(1);
        for w in words.windows(n) {
            let mut h = self.seed;
            for &x in w {
                h = fmix64(h.rotate_left(17) ^ x);
            }
            self.add(h, sig);
        }
        self.densify(sig)
    }
}

/// Estimated Jaccard similarity: the fraction of equal signature slots.
#[inline]
pub fn jaccard(a: &[u32], b: &[u32]) -> f32 {
    let eq = a.iter().zip(b).filter(|(x, y)| x == y).count();
    eq as f32 / a.len().max(1) as f32
}

/// The LSH key of band `band` (rows `band*rows .. (band+1)*rows`).
#[inline]
pub fn band_key(sig: &[u32], band: usize, rows: usize, seed: u64) -> u64 {
    let mut h = fmix64(seed ^ (band as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    for &v in &sig[band * rows..(band + 1) * rows] {
        h = fmix64(h ^ v as u64).wrapping_add(0x632b_e59b_d9b4_e019);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig_of(s: &str) -> Vec<u32> {
        let m = MinHasher::new(256, 7);
        let chars: Vec<char> = s.chars().collect();
        let mut sig = vec![];
        assert!(m.char_ngrams(&chars, 3, &mut sig));
        sig
    }

    fn true_jaccard(a: &str, b: &str) -> f32 {
        use std::collections::HashSet;
        let g = |s: &str| {
            let c: Vec<char> = s.chars().collect();
            c.windows(3).map(|w| w.iter().collect::<String>()).collect::<HashSet<_>>()
        };
        let (x, y) = (g(a), g(b));
        x.intersection(&y).count() as f32 / x.union(&y).count() as f32
    }

    #[test]
    fn estimate_tracks_true_jaccard() {
        let a: String = (0..400).map(|i| char::from_u32(0x4e00 + (i * 7919 % 3000) as u32).unwrap()).collect();
        let mut b: String = a.chars().take(300).collect();
        b.push_str("另外一些完全不同的文字内容在这里出现");
        let est = jaccard(&sig_of(&a), &sig_of(&b));
        let t = true_jaccard(&a, &b);
        assert!((est - t).abs() < 0.12, "estimate {est} vs true {t}");
        assert_eq!(jaccard(&sig_of(&a), &sig_of(&a)), 1.0);
        let c: String = (0..400).map(|i| char::from_u32(0x5e00 + (i * 104729 % 3000) as u32).unwrap()).collect();
        assert!(jaccard(&sig_of(&a), &sig_of(&c)) < 0.1);
    }

    /// The table-driven densification must fill bins exactly as hashing each attempt does.
    #[test]
    fn densify_matches_hashing_every_attempt() {
        let m = MinHasher::new(128, 42);
        let mut x = 7u64;
        for filled in [1usize, 2, 5, 40, 100, 127] {
            let mut sig = vec![u32::MAX; 128];
            for _ in 0..filled {
                x = fmix64(x);
                sig[(x % 128) as usize] = (x >> 40) as u32;
            }
            let mut want = sig.clone();
            let orig = sig.clone();
            for i in 0..128 {
                if orig[i] != u32::MAX {
                    continue;
                }
                let mut a = 1u64;
                while orig[m.borrow_bin(i, a)] == u32::MAX {
                    a += 1;
                }
                want[i] = orig[m.borrow_bin(i, a)] ^ (a as u32).wrapping_mul(0x85eb_ca6b);
            }
            assert!(m.densify(&mut sig));
            assert_eq!(sig, want, "{filled} filled bins");
        }
    }

    #[test]
    fn empty_text_has_no_signature() {
        let m = MinHasher::new(64, 1);
        let mut sig = vec![];
        assert!(!m.char_ngrams(&[], 5, &mut sig));
    }
}
