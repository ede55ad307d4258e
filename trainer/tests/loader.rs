//! The loader on its own, on samples made by the real pipeline (`common::pipeline_samples`:
//! poems, Debian Handbook figures and captioned photos through `m6corpus ingest`,
//! `extract`, `tokenizer train` and `tokenize`): every sample exactly once per epoch for
//! 1 and 3 ranks, deterministic order per seed, and a saved position resumes at exactly
//! the next sample.

mod common;

use std::collections::BTreeMap;

use common::*;
use m6_trainer::data::{Corpus, Loader, LoaderConfig, LoaderState, TaskKind};
use m6_trainer::TrainConfig;

fn samples() -> &'static PipelineSamples {
    shared_samples("loader")
}

fn loader(rank: u64, world: u64, state: LoaderState) -> Loader {
    let corpus = Corpus::open(&[samples().train.clone()], None, false).unwrap();
    let cfg = TrainConfig { shuffle_buffer: 32, reader_threads: 2, read_batch_rows: 16, ..Default::default() };
    Loader::new(corpus.train, corpus.meta, LoaderConfig::from_train(&cfg, rank, world), state).unwrap()
}

fn counts(ids: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for id in ids {
        *m.entry(id).or_insert(0) += 1;
    }
    m
}

#[test]
fn every_sample_exactly_once_per_epoch_across_1_and_3_ranks() {
    let data = samples();
    let rows = &data.rows;
    let all = counts(rows.iter().map(|r| r.id.clone()));
    // Tokenize gives every sample its own id, so "once each" is a set comparison.
    assert_eq!(all.len(), rows.len());
    assert!(data.text_samples >= 200 && data.image_samples >= 50, "{} text, {} image samples", data.text_samples, data.image_samples);
    assert!(Corpus::open(&[data.train.clone()], None, false).unwrap().train.len() >= 4, "several shards");

    let mut one = loader(0, 1, LoaderState::default());
    let e0 = one.rest_of_epoch().unwrap();
    // Image samples come out with their patches, text samples without.
    let images = e0.iter().filter(|s| s.task == TaskKind::ImageText).count();
    assert_eq!(images, data.image_samples);
    assert!(e0.iter().all(|s| (s.task == TaskKind::ImageText) == s.patches.is_some()));
    let e0: Vec<String> = e0.into_iter().map(|s| s.id).collect();
    let e1: Vec<String> = one.rest_of_epoch().unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(counts(e0.clone()), all, "epoch 0 on one rank");
    assert_eq!(counts(e1.clone()), all, "epoch 1 on one rank");
    assert_ne!(e0, e1, "each epoch has its own order");
    // Same seed, same order.
    let again: Vec<String> = loader(0, 1, LoaderState::default()).rest_of_epoch().unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(again, e0);

    for epoch in 0..2u64 {
        let per_rank: Vec<Vec<String>> = (0..3)
            .map(|r| {
                let mut l = loader(r, 3, LoaderState { epoch, consumed: 0 });
                l.rest_of_epoch().unwrap().into_iter().map(|s| s.id).collect()
            })
            .collect();
        let sizes: Vec<usize> = per_rank.iter().map(|v| v.len()).collect();
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "balanced slices: {sizes:?}");
        assert_eq!(counts(per_rank.concat()), all, "the three ranks together, epoch {epoch}");
        // Disjoint: the multiset union equals the dataset, so no row was given twice.
        assert_eq!(sizes.iter().sum::<usize>(), rows.len());
    }
}

#[test]
fn a_saved_position_resumes_at_exactly_the_next_sample() {
    let n = samples().rows.len() as u64;
    for world in [1u64, 3] {
        let mut a = loader(world - 1, world, LoaderState::default());
        // Stop mid-epoch, then 3 samples before the epoch ends (37 + 10 + n/world - 50
        // taken: the next 10 straddle the epoch boundary).
        for take in [37u64, n / world - 50] {
            for _ in 0..take {
                a.next_sample().unwrap();
            }
            let saved = a.state();
            let mut b = loader(world - 1, world, saved);
            let mut epochs = vec![];
            for _ in 0..10 {
                let (x, ex) = a.next_sample().unwrap();
                let (y, ey) = b.next_sample().unwrap();
                assert_eq!((x.id, ex), (y.id, ey), "world {world}, after {saved:?}");
                epochs.push(ex);
            }
            assert_eq!(a.state(), b.state());
            if take != 37 {
                assert!(epochs[0] == 0 && epochs[9] == 1, "the last 10 straddle the epoch boundary: {epochs:?}");
            }
        }
    }
}
