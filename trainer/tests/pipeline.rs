//! Training on samples made by the real pipeline: `m6corpus ingest` (poems JSONL and a
//! captioned photo folder), `m6corpus tokenizer train`, `m6corpus tokenize`.
//! Needs `target/release/m6corpus` (`cargo build --release -p m6corpus`).

mod common;

use std::collections::BTreeMap;

use common::*;
use m6_pipeline::Dataset;
use m6_schemas::Sample;
use m6_trainer::data::{Corpus, Loader, LoaderConfig, LoaderState};
use m6_trainer::TrainConfig;

#[test]
fn tokenize_output_trains_and_loads_exactly_once() {
    let s = shared_samples("pipeline");
    let ds = Dataset::open(&s.train).unwrap();
    assert!(ds.manifest().properties.contains_key("tokenizer"), "samples come from `m6corpus tokenize`");
    let rows: Vec<Sample> = ds.read_all().unwrap();
    assert!(rows.iter().any(|r| r.task == "text") && rows.iter().any(|r| r.task == "image_text"), "both tasks present");

    // Every sample exactly once per epoch, on 1 and on 3 ranks.
    let mut all = BTreeMap::new();
    for r in &rows {
        *all.entry(r.id.clone()).or_insert(0usize) += 1;
    }
    let corpus = Corpus::open(&[s.train.clone()], None, false).unwrap();
    let cfg = TrainConfig { shuffle_buffer: 32, reader_threads: 2, read_batch_rows: 16, ..Default::default() };
    for world in [1u64, 3] {
        let mut seen = BTreeMap::new();
        for rank in 0..world {
            let mut l = Loader::new(corpus.train.clone(), corpus.meta.clone(), LoaderConfig::from_train(&cfg, rank, world), LoaderState::default()).unwrap();
            for x in l.rest_of_epoch().unwrap() {
                *seen.entry(x.id).or_insert(0usize) += 1;
            }
        }
        assert_eq!(seen, all, "world size {world}");
    }

    // The loss falls clearly on them.
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let eval_input = format!("eval_input={}", s.eval.display());
    m6_train_ok(&[
        "--cpu", "--input", s.train.to_str().unwrap(), "--output", run.to_str().unwrap(), "--steps", "300",
        "--set", "torch_threads=1", "--set", "model.d_ff=128", "--set", "model.max_len=64", "--set", "batch_size=16",
        "--set", "lr=2e-3", "--set", "log_every=10", "--set", "eval_every=150", "--set", &eval_input,
    ]);
    let log = log_lines(&run);
    let first = log[0]["loss"].as_f64().unwrap();
    let last = log.last().unwrap()["loss"].as_f64().unwrap();
    assert!(last < first * 0.6, "loss should fall clearly: {first} -> {last}");
    let evals: Vec<f64> = log.iter().filter_map(|l| l["eval_loss"].as_f64()).collect();
    assert_eq!(evals.len(), 2);
}
