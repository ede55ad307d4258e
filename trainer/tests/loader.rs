//! The loader on its own, on samples made by the real pipeline (`common::pipeline_samples`:
//! poems, Debian Handbook figures and captioned photos through `m6corpus ingest`,
//! `extract`, `tokenizer train` and `tokenize`): every sample exactly once per epoch for
//! 1, 2 and 3 ranks, each rank reading only its own rows, deterministic order per seed,
//! and a saved position resumes at exactly the next sample.

mod common;

use std::collections::BTreeMap;

use common::*;
use m6_trainer::data::{next_batch, Corpus, Loader, LoaderConfig, LoaderState, Position, TaskKind};
use m6_trainer::TrainConfig;

fn samples() -> &'static PipelineSamples {
    shared_samples("loader")
}

/// Rank `rank` of `world` over `lanes` data lanes, at `position` (one state per lane).
fn loader_lanes(rank: u64, world: u64, lanes: u64, position: &Position) -> Loader {
    let corpus = Corpus::open(&[samples().train.clone()], None, false).unwrap();
    let cfg = TrainConfig { shuffle_buffer: 32, reader_threads: 2, read_batch_rows: 16, lanes, ..Default::default() };
    Loader::new(corpus.train, corpus.meta, LoaderConfig::from_train(&cfg, rank, world), position).unwrap()
}

/// One lane per rank (the default), every lane at `state`.
fn loader(rank: u64, world: u64, state: LoaderState) -> Loader {
    loader_lanes(rank, world, world, &Position { lanes: vec![state; world as usize] })
}

fn counts(ids: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for id in ids {
        *m.entry(id).or_insert(0) += 1;
    }
    m
}

#[test]
fn every_sample_exactly_once_per_epoch_across_1_2_and_3_ranks() {
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

    // 1, 2 and 3 ranks over the same 6 lanes (and 3 ranks over 3 lanes).
    for (world, lanes) in [(1u64, 6u64), (2, 6), (3, 6), (3, 3)] {
        for epoch in 0..2u64 {
            let start = Position { lanes: vec![LoaderState { epoch, consumed: 0 }; lanes as usize] };
            let loaders: Vec<Loader> = (0..world).map(|r| loader_lanes(r, world, lanes, &start)).collect();
            // What each rank opens: its own (shard, rows) segments, disjoint from the
            // others' and together every row of every shard exactly once.
            let mut covered: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
            let mut rows_per_rank = vec![];
            for l in &loaders {
                let segs = l.segments(epoch);
                rows_per_rank.push(segs.iter().map(|s| s.end - s.start).sum::<u64>());
                for s in segs {
                    covered.entry(s.shard.path.display().to_string()).or_default().push((s.start, s.end));
                }
            }
            let corpus = Corpus::open(&[data.train.clone()], None, false).unwrap();
            for shard in &corpus.train {
                let mut r = covered.remove(&shard.path.display().to_string()).unwrap_or_default();
                r.sort();
                let mut at = 0;
                for (a, b) in r {
                    assert_eq!(a, at, "rows of {} read twice or skipped: world {world}", shard.path.display());
                    at = b;
                }
                assert_eq!(at, shard.rows, "{} not read to its end", shard.path.display());
            }
            // Balanced by rows: lanes differ by at most one row.
            let per = lanes / world;
            assert!(rows_per_rank.iter().max().unwrap() - rows_per_rank.iter().min().unwrap() <= per, "{rows_per_rank:?}");
            if world == 3 {
                // A rank does not open every shard.
                assert!(loaders.iter().all(|l| l.segments(epoch).len() < corpus.train.len()), "each rank reads only its own shards");
            }
            let per_rank: Vec<Vec<String>> = loaders.into_iter().map(|mut l| l.rest_of_epoch().unwrap().into_iter().map(|s| s.id).collect()).collect();
            let sizes: Vec<usize> = per_rank.iter().map(|v| v.len()).collect();
            assert_eq!(counts(per_rank.concat()), all, "{world} ranks together, epoch {epoch}");
            // Disjoint: the multiset union equals the dataset, so no row was given twice.
            assert_eq!(sizes.iter().sum::<usize>(), rows.len());
        }
    }
}

/// The stream of micro-batches does not depend on the world size: the examples rank r
/// of W contributes to a micro-batch are lanes r·L/W.. of the one-process micro-batch.
#[test]
fn micro_batches_are_the_same_samples_at_any_world_size() {
    let cfg = TrainConfig::default();
    let ids = |b: &m6_trainer::data::Batch| -> Vec<Vec<i64>> {
        let v: Vec<i64> = Vec::try_from(b.ids.flatten(0, -1)).unwrap();
        let t = b.ids.size()[1] as usize;
        v.chunks(t).map(|r| r.iter().copied().filter(|&x| x != 0).collect()).collect()
    };
    let start = Position::start(6);
    let mut one = loader_lanes(0, 1, 6, &start);
    let mut three: Vec<Loader> = (0..3).map(|r| loader_lanes(r, 3, 6, &start)).collect();
    // Enough micro-batches of 12 to cross an epoch boundary (about 500 samples).
    for step in 0..50 {
        let whole = ids(&next_batch(&mut one, 12, 1, &cfg.tasks, 64).unwrap());
        let parts: Vec<Vec<i64>> = three.iter_mut().flat_map(|l| ids(&next_batch(l, 4, 1, &cfg.tasks, 64).unwrap())).collect();
        assert_eq!(whole, parts, "micro-batch {step}");
    }
    // The global position is the same lane by lane.
    let lanes: Vec<LoaderState> = three.iter().flat_map(|l| l.lane_states()).collect();
    assert_eq!(one.position().lanes, lanes);
    assert!(lanes.iter().all(|s| s.epoch == 1), "{lanes:?}");
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
            let saved = a.lane_states()[0];
            let mut b = loader(world - 1, world, saved);
            let mut epochs = vec![];
            for _ in 0..10 {
                let (x, ex) = a.next_sample().unwrap();
                let (y, ey) = b.next_sample().unwrap();
                assert_eq!((x.id, ex), (y.id, ey), "world {world}, after {saved:?}");
                epochs.push(ex);
            }
            assert_eq!(a.lane_states(), b.lane_states());
            if take != 37 {
                assert!(epochs[0] == 0 && epochs[9] == 1, "the last 10 straddle the epoch boundary: {epochs:?}");
            }
        }
    }
}

#[test]
fn jpeg_image_samples_decode_in_the_reader_threads_to_the_raw_patches() {
    // The photo pairs tokenized twice with the fixture's tokenizer and geometry: the
    // default JPEG samples (the fixture's `samples-photos`) and, explicitly,
    // `image_encoding = "raw"` patches, which the loader hands over as stored.
    let data = samples();
    let spec = Spec::tests();
    let raw_dir = data.root.join("samples-photos-raw");
    let _ = std::fs::remove_dir_all(&raw_dir);
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let (ml, size, patch) = (spec.max_len.to_string(), format!("image_size={}", spec.image_size), format!("patch_size={}", spec.patch_size));
    m6corpus_ok(&[
        "tokenize", "--input", &s(&data.photo_pairs), "--output", &s(&raw_dir), "--tokenizer", &s(&data.root.join("vocab.txt")), "--max-len", &ml,
        "--set", &size, "--set", &patch, "--set", "image_encoding=\"raw\"",
    ]);
    let property = |dir: &std::path::Path| m6_pipeline::Dataset::open(dir).unwrap().manifest().properties["image_encoding"].clone();
    assert_eq!((property(&data.photos), property(&raw_dir)), (serde_json::json!("jpeg"), serde_json::json!("raw")));
    let jpeg = data.photos.clone();
    let load = |dir: &std::path::Path| -> BTreeMap<Vec<i32>, Vec<u8>> {
        let corpus = Corpus::open(&[dir.to_path_buf()], None, false).unwrap();
        let cfg = TrainConfig { shuffle_buffer: 8, reader_threads: 2, read_batch_rows: 4, lanes: 1, ..Default::default() };
        let mut l = Loader::new(corpus.train, corpus.meta, LoaderConfig::from_train(&cfg, 0, 1), &Position::start(1)).unwrap();
        l.rest_of_epoch().unwrap().into_iter().filter_map(|s| s.patches.map(|p| (s.input_ids, p.to_vec()))).collect()
    };
    let (raw, dec) = (load(&raw_dir), load(&jpeg));
    assert!(raw.len() >= 8, "{} photo samples", raw.len());
    assert_eq!(raw.keys().collect::<Vec<_>>(), dec.keys().collect::<Vec<_>>(), "the same captions come out of both");
    for (k, r) in &raw {
        let d = &dec[k];
        assert_eq!(d.len(), r.len(), "decoded patches have the raw layout's length");
        let mean = r.iter().zip(d).map(|(a, b)| (*a as f64 - *b as f64).abs()).sum::<f64>() / r.len() as f64;
        // JPEG loses a little; a wrong layout or another picture differs by tens of levels.
        assert!(mean < 8.0, "mean difference {mean:.2} levels against the raw patches");
    }
    let bytes = |dir: &std::path::Path| m6_pipeline::Dataset::open(dir).unwrap().manifest().bytes();
    assert!(bytes(&jpeg) < bytes(&raw_dir), "JPEG samples are smaller on disk ({} vs {} bytes)", bytes(&jpeg), bytes(&raw_dir));
    // The raw samples are the patches exactly as tokenize preprocessed them.
    let geom = m6_tokenizer::ImageConfig { image_size: spec.image_size, patch_size: spec.patch_size };
    let pairs: Vec<m6_schemas::Pair> = m6_pipeline::Dataset::open(&data.photo_pairs).unwrap().read_all().unwrap();
    let direct: std::collections::BTreeSet<Vec<u8>> = pairs.iter().map(|p| geom.preprocess(&p.image_bytes).unwrap()).collect();
    assert!(raw.values().all(|r| direct.contains(r)), "raw samples are the direct preprocessing of some photo");
    // A raw and a JPEG dataset train together (a corpus tokenized before and after the
    // default changed): each shard decodes as its own manifest says.
    let corpus = Corpus::open(&[raw_dir.clone(), jpeg.clone()], None, false).unwrap();
    assert_eq!(corpus.train.iter().map(|s| s.jpeg).collect::<std::collections::BTreeSet<_>>().len(), 2, "shards of both encodings");
    let cfg = TrainConfig { shuffle_buffer: 8, reader_threads: 2, read_batch_rows: 4, lanes: 1, ..Default::default() };
    let mut l = Loader::new(corpus.train, corpus.meta, LoaderConfig::from_train(&cfg, 0, 1), &Position::start(1)).unwrap();
    let mixed: Vec<(Vec<i32>, Vec<u8>)> = l.rest_of_epoch().unwrap().into_iter().filter_map(|s| s.patches.map(|p| (s.input_ids, p.to_vec()))).collect();
    assert_eq!(mixed.len(), raw.len() + dec.len(), "every sample of both datasets, once");
    assert!(mixed.iter().all(|(k, p)| p == &raw[k] || p == &dec[k]), "a mixed-corpus sample equals its own dataset's decoding");
    assert_eq!(mixed.iter().filter(|(k, p)| p == &raw[k]).count(), raw.len(), "the raw dataset's samples come through as stored");
}

#[test]
fn an_incomplete_sample_dataset_is_refused_naming_the_missing_task() {
    // A copy of the fixture's samples whose writer "has not committed" one task yet.
    let data = samples();
    let copy = data.root.join("samples-incomplete");
    let _ = std::fs::remove_dir_all(&copy);
    copy_dataset(&data.train, &copy);
    let commit = std::fs::read_dir(copy.join("_commits")).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|x| x == "json")).unwrap();
    std::fs::remove_file(&commit).unwrap();
    let task = commit.file_stem().unwrap().to_str().unwrap().to_string();
    let err = Corpus::open(&[copy.clone()], None, false).err().expect("an incomplete input is refused").to_string();
    assert!(err.contains(&task[..16]), "the error names the missing task {task}: {err}");
    // The complete original still opens.
    Corpus::open(&[data.train.clone()], None, false).unwrap();
}

#[test]
fn a_missing_or_mistyped_sample_property_is_refused_naming_the_dataset() {
    // The trainer used to read a missing id as a default (`pad_id` 0, `mask_id` 4, …)
    // and a mistyped one likewise; now both are errors naming the dataset and the key.
    let data = samples();
    for (i, (key, value)) in [("pad_id", None), ("mask_id", Some(serde_json::json!("4"))), ("vocab_size", Some(serde_json::json!(-1)))].into_iter().enumerate() {
        let copy = data.root.join(format!("samples-bad-props-{i}"));
        let _ = std::fs::remove_dir_all(&copy);
        copy_dataset(&data.train, &copy);
        let path = copy.join("manifest.json");
        let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let props = m["properties"].as_object_mut().unwrap();
        match value {
            None => drop(props.remove(key)),
            Some(v) => drop(props.insert(key.into(), v)),
        }
        std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
        let err = Corpus::open(&[copy.clone()], None, false).err().expect("bad properties are refused").to_string();
        assert!(err.contains(&copy.display().to_string()) && err.contains(&format!("`{key}`")), "{err}");
    }
}
