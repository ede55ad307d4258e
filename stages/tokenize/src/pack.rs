//! Packing token sequences into samples of at most `max_len` ids: `[CLS]` (optional),
//! then documents each followed by `[SEP]`. A document that does not fit the space left
//! starts a new sample; one longer than a whole sample is split at token boundaries
//! (its `[SEP]` comes after its last piece). No token is ever dropped.

/// One finished sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    pub ids: Vec<u32>,
    /// Indices (in push order) of the documents with tokens in this sample.
    pub docs: Vec<usize>,
}

pub struct Packer {
    max_len: usize,
    cls: Option<u32>,
    sep: u32,
    /// Several documents per sample (false: each document starts a new sample).
    pack: bool,
    cur: Vec<u32>,
    docs: Vec<usize>,
    pushed: usize,
    /// Documents that ended up in more than one sample.
    pub split_docs: u64,
}

impl Packer {
    /// `max_len` must leave room for `[CLS]` and at least two more ids.
    pub fn new(max_len: usize, cls: Option<u32>, sep: u32, pack: bool) -> Self {
        assert!(max_len >= 2 + usize::from(cls.is_some()), "max_len {max_len} too small");
        Packer { max_len, cls, sep, pack, cur: Vec::with_capacity(max_len), docs: vec![], pushed: 0, split_docs: 0 }
    }

    fn body_cap(&self) -> usize {
        self.max_len - usize::from(self.cls.is_some())
    }

    fn body_len(&self) -> usize {
        self.cur.len().saturating_sub(usize::from(self.cls.is_some()))
    }

    fn start_if_empty(&mut self) {
        if self.cur.is_empty() {
            if let Some(c) = self.cls {
                self.cur.push(c);
            }
        }
    }

    fn flush(&mut self, out: &mut Vec<Packed>) {
        if self.body_len() > 0 {
            out.push(Packed { ids: std::mem::take(&mut self.cur), docs: std::mem::take(&mut self.docs) });
        }
        self.cur.clear();
        self.docs.clear();
    }

    /// Adds one document's ids (empty documents are ignored but still get an index).
    pub fn push(&mut self, ids: &[u32], out: &mut Vec<Packed>) {
        let doc = self.pushed;
        self.pushed += 1;
        if ids.is_empty() {
            return;
        }
        if !self.pack {
            self.flush(out);
        }
        let cap = self.body_cap();
        let mut rest = ids;
        let mut pieces = 0;
        loop {
            let used = self.body_len();
            let space = cap - used;
            if rest.len() < space {
                self.start_if_empty();
                self.cur.extend_from_slice(rest);
                self.cur.push(self.sep);
                self.docs.push(doc);
                break;
            }
            if used > 0 && rest.len() < cap {
                // Fits whole in a fresh sample: do not split it.
                self.flush(out);
                continue;
            }
            // Split, keeping at least one token back so the [SEP] follows the document's end.
            let k = space.min(rest.len() - 1);
            if k == 0 {
                self.flush(out);
                continue;
            }
            self.start_if_empty();
            self.cur.extend_from_slice(&rest[..k]);
            self.docs.push(doc);
            rest = &rest[k..];
            pieces += 1;
            self.flush(out);
        }
        if pieces > 0 {
            self.split_docs += 1;
        }
    }

    /// Emits the last, partly filled sample.
    pub fn finish(&mut self, out: &mut Vec<Packed>) {
        self.flush(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CLS: u32 = 2;
    const SEP: u32 = 3;

    fn pack_all(docs: &[Vec<u32>], max_len: usize, cls: bool, pack: bool) -> Vec<Packed> {
        let mut p = Packer::new(max_len, cls.then_some(CLS), SEP, pack);
        let mut out = vec![];
        for d in docs {
            p.push(d, &mut out);
        }
        p.finish(&mut out);
        out
    }

    #[test]
    fn small_examples() {
        let ids = |out: &[Packed]| out.iter().map(|p| p.ids.clone()).collect::<Vec<_>>();
        let out = pack_all(&[vec![10, 11], vec![12, 13, 14], vec![15]], 6, true, true);
        assert_eq!(ids(&out), vec![vec![2, 10, 11, 3], vec![2, 12, 13, 14, 3], vec![2, 15, 3]]);
        // A long document is split at token boundaries, its [SEP] after the last piece.
        let out = pack_all(&[(100..112).collect()], 5, true, true);
        assert_eq!(ids(&out), vec![vec![2, 100, 101, 102, 103], vec![2, 104, 105, 106, 107], vec![2, 108, 109, 110], vec![2, 111, 3]]);
        assert!(out.iter().all(|p| p.docs == vec![0]));
    }

    fn unpack(samples: &[Packed], cls: bool) -> Vec<Vec<u32>> {
        let mut flat = vec![];
        for s in samples {
            let body = if cls {
                assert_eq!(s.ids[0], CLS);
                &s.ids[1..]
            } else {
                &s.ids[..]
            };
            flat.extend_from_slice(body);
        }
        let mut docs = vec![];
        let mut cur = vec![];
        for id in flat {
            if id == SEP {
                docs.push(std::mem::take(&mut cur));
            } else {
                cur.push(id);
            }
        }
        assert!(cur.is_empty(), "tokens after the last [SEP]");
        docs
    }

    proptest! {
        #[test]
        fn never_too_long_and_lossless(
            docs in prop::collection::vec(prop::collection::vec(100u32..200, 0..40), 0..30),
            max_len in 3usize..24,
            cls in any::<bool>(),
            pack in any::<bool>(),
        ) {
            let out = pack_all(&docs, max_len, cls, pack);
            for s in &out {
                prop_assert!(s.ids.len() <= max_len, "{} > {max_len}", s.ids.len());
                prop_assert!(s.ids.len() > usize::from(cls));
            }
            let nonempty: Vec<Vec<u32>> = docs.iter().filter(|d| !d.is_empty()).cloned().collect();
            prop_assert_eq!(unpack(&out, cls), nonempty);
            // Document indices are recorded in order, each where its tokens are.
            let mut seen: Vec<usize> = out.iter().flat_map(|s| s.docs.clone()).collect();
            seen.dedup();
            let expect: Vec<usize> = docs.iter().enumerate().filter(|(_, d)| !d.is_empty()).map(|(i, _)| i).collect();
            prop_assert_eq!(seen, expect);
            if !pack {
                for s in &out {
                    prop_assert_eq!(s.docs.len(), 1);
                }
            }
        }
    }
}
