//! Property test: a document's MinHash signature (the whole signed body: exact key and
//! every MinHash value) depends on its text alone — not on the thread count of the pool
//! signing it, how rows are cut into batches and units, or what a reused `Signer`'s
//! scratch buffers held from earlier rows. Dedup's output being the same whatever
//! `--threads` rests on this.

use m6_schemas::{Document, Kind, Record};
use m6_stage_dedup::sign::Signer;
use m6_stage_dedup::{DedupConfig, Shingle};
use proptest::prelude::*;
use rayon::prelude::*;

/// Texts where signing has work to do: traditional characters and OpenCC phrases (the
/// fold), full-width forms and marks (NFKC), short texts without a full shingle, empty.
fn text() -> impl Strategy<Value = String> {
    let pool: Vec<char> = "床前明月光疑是地上霜舉頭望低思故鄉國學經典㑮一目瞭然乾坤ＡＢｃ１２，。　 \ne\u{301}İ".chars().collect();
    prop_oneof![
        4 => proptest::collection::vec(proptest::sample::select(pool), 0..80).prop_map(|v| v.into_iter().collect::<String>()),
        1 => "\\PC{0,40}",
    ]
}

/// Signs every text with one fresh `Signer` each: the reference.
fn reference(cfg: &DedupConfig, texts: &[String]) -> Vec<Vec<u8>> {
    texts.iter().map(|t| Signer::new(cfg, Kind::Document).text(t).body).collect()
}

/// Signs as the stage does: units of consecutive rows in parallel on a pool of
/// `threads`, each unit's rows in batches of `batch` through one reused `Signer`.
fn pooled(cfg: &DedupConfig, texts: &[String], threads: usize, unit: usize, batch: usize) -> Vec<Vec<u8>> {
    let docs: Vec<Document> = texts.iter().enumerate().map(|(i, t)| Document::new("p", Some(i.to_string()), None, None, t.clone(), None)).collect();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let units: Vec<&[Document]> = docs.chunks(unit.max(1)).collect();
    let signed: Vec<Vec<Vec<u8>>> = pool.install(|| {
        units
            .par_iter()
            .map(|rows| {
                let mut signer = Signer::new(cfg, Kind::Document);
                let mut out = vec![];
                for b in rows.chunks(batch.max(1)) {
                    let (_, s) = signer.sign_batch(&Document::to_batch(b).unwrap()).unwrap();
                    out.extend(s.into_iter().map(|s| s.body));
                }
                out
            })
            .collect()
    });
    signed.concat()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn signatures_do_not_depend_on_threads_or_batching(
        texts in proptest::collection::vec(text(), 0..40),
        threads in 1usize..5,
        unit in 1usize..12,
        batch in 1usize..6,
        word in any::<bool>(),
        fold in any::<bool>(),
    ) {
        let cfg = DedupConfig { shingle: if word { Shingle::Word } else { Shingle::Char }, fold_traditional: fold, ..Default::default() };
        let want = reference(&cfg, &texts);
        prop_assert_eq!(pooled(&cfg, &texts, threads, unit, batch), want.clone());
        // Another thread count on the same rows: byte for byte the same bodies.
        prop_assert_eq!(pooled(&cfg, &texts, 5 - threads, 13 - unit, 7 - batch), want);
    }
}
