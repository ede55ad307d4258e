//! End-to-end tests of the `m6-train` binary on a tiny model (CPU) and sample
//! datasets made from real poems and photos.

mod common;

use std::fs;

use common::*;

/// Tiny-model settings shared by the tests (one torch thread: deterministic, and the
/// machine is shared).
const TINY: &[&str] = &[
    "--cpu",
    "--set", "torch_threads=1",
    "--set", "model.d_model=64",
    "--set", "model.n_layers=2",
    "--set", "model.n_heads=4",
    "--set", "model.d_ff=128",
    "--set", "model.max_len=64",
    "--set", "batch_size=16",
    "--set", "shuffle_buffer=64",
];

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = TINY.to_vec();
    v.extend_from_slice(extra);
    v
}

#[test]
fn loss_falls_clearly_over_a_few_hundred_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, run) = (tmp.path().join("samples"), tmp.path().join("run"));
    fixture(&data, 400, 8, 3);
    let summary = m6_train_ok(&args(&[
        "--input", data.to_str().unwrap(),
        "--output", run.to_str().unwrap(),
        "--steps", "300",
        "--set", "lr=2e-3",
        "--set", "log_every=10",
        "--set", "eval_every=100",
        "--set", "checkpoint_every=0",
    ]));
    let log = log_lines(&run);
    assert_eq!(log.len(), 30, "one line per 10 steps");
    for l in &log {
        for k in ["step", "loss", "lr", "tokens_per_s", "samples_per_s"] {
            assert!(l[k].is_number(), "{k} missing in {l}");
        }
        assert!(l["tokens_per_s"].as_f64().unwrap() > 0.0);
    }
    let first = log[0]["loss"].as_f64().unwrap();
    let last = log.last().unwrap()["loss"].as_f64().unwrap();
    assert!(first > 6.0, "a fresh model is near ln(vocab): {first}");
    assert!(last < first * 0.6, "loss should fall clearly: {first} -> {last}");
    // Held-out loss (the third shard) falls too.
    let evals: Vec<f64> = log.iter().filter_map(|l| l["eval_loss"].as_f64()).collect();
    assert_eq!(evals.len(), 3, "{log:?}");
    assert!(evals[2] < evals[0], "eval loss {evals:?}");
    // The warm-up then cosine schedule: lr rises to the peak, ends near the floor.
    let lrs: Vec<f64> = log.iter().map(|l| l["lr"].as_f64().unwrap()).collect();
    assert!(lrs[0] < lrs[2] && lrs[29] < lrs[10], "{lrs:?}");
    assert_eq!(summary["steps"], 300);
    assert!(run.join("checkpoints/step-00000300/model.safetensors").is_file());
}

#[test]
fn stop_and_resume_gives_the_same_weights_as_straight_through() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("samples");
    fixture(&data, 120, 3, 2);
    let (a, b) = (tmp.path().join("straight"), tmp.path().join("resumed"));
    let common = ["--steps", "30", "--set", "checkpoint_every=10", "--set", "log_every=5", "--set", "eval_every=0", "--set", "grad_accum=2"];
    let mut straight = args(&["--input", data.to_str().unwrap(), "--output", a.to_str().unwrap()]);
    straight.extend_from_slice(&common);
    m6_train_ok(&straight);

    let mut first = args(&["--input", data.to_str().unwrap(), "--output", b.to_str().unwrap(), "--stop-at", "15"]);
    first.extend_from_slice(&common);
    let s1 = m6_train_ok(&first);
    assert_eq!(s1["steps"], 15);
    // Without --resume an existing run is refused rather than overwritten.
    let refused = m6_train(&first);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--resume"));
    let mut second = args(&["--input", data.to_str().unwrap(), "--output", b.to_str().unwrap(), "--resume"]);
    second.extend_from_slice(&common);
    let s2 = m6_train_ok(&second);
    assert_eq!((s2["start_step"].as_u64(), s2["steps"].as_u64()), (Some(15), Some(30)));

    let wa = tensors(&a.join("checkpoints/step-00000030/model.safetensors"));
    let wb = tensors(&b.join("checkpoints/step-00000030/model.safetensors"));
    assert_eq!(wa.keys().collect::<Vec<_>>(), wb.keys().collect::<Vec<_>>());
    assert!(wa.len() > 10);
    for (name, x) in &wa {
        let y = &wb[name];
        let diff = x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-5, "{name} differs by {diff}");
    }
    // The two runs saw the same batches: the logged losses agree step by step.
    let (la, lb) = (log_lines(&a), log_lines(&b));
    assert_eq!(la.len(), lb.len());
    for (x, y) in la.iter().zip(&lb) {
        assert_eq!(x["step"], y["step"]);
        assert!((x["loss"].as_f64().unwrap() - y["loss"].as_f64().unwrap()).abs() < 1e-4, "{x} vs {y}");
    }
}

#[test]
fn a_checkpoint_loads_in_a_fresh_process_and_config_file_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("samples");
    fixture(&data, 120, 2, 2);
    // The same pipeline.toml the data stages read: a [train] section with input/output.
    let toml = tmp.path().join("pipeline.toml");
    fs::write(
        &toml,
        "[corpus]\nthreads = 1\n\n[train]\ninput = \"samples\"\noutput = \"run\"\nsteps = 12\neval_every = 6\nlog_every = 3\nbatch_size = 8\ntorch_threads = 1\ncuda = false\n\n[train.model]\nd_model = 32\nn_heads = 2\nd_ff = 64\nmax_len = 48\n",
    )
    .unwrap();
    let summary = m6_train_ok(&["--config", toml.to_str().unwrap()]);
    let run = tmp.path().join("run");
    let log = log_lines(&run);
    assert_eq!(log.last().unwrap()["step"], 12);
    let logged = log.last().unwrap()["eval_loss"].as_f64().expect("eval at the end");
    assert_eq!(summary["eval_loss"].as_f64(), Some(logged));
    // A new process rebuilds the model from the checkpoint alone and gets the same loss.
    let out = m6_train_ok(&["--config", toml.to_str().unwrap(), "--eval-only"]);
    assert_eq!(out["step"], 12);
    let fresh = out["eval_loss"].as_f64().unwrap();
    assert!((fresh - logged).abs() < 1e-6, "{fresh} vs {logged}");
    let names = tensors(&run.join("checkpoints/step-00000012/model.safetensors"));
    assert!(names.contains_key("tok_emb.weight") && names.contains_key("patch_proj.weight"), "{:?}", names.keys());
    assert!(run.join("checkpoints/step-00000012/optimizer.safetensors").is_file());
}

#[test]
fn corrupt_or_mismatched_shards_give_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("samples");
    fixture(&data, 60, 1, 2);
    let shard = fs::read_dir(&data).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "parquet")).min().unwrap();
    let name = shard.file_name().unwrap().to_str().unwrap().to_string();
    let original = fs::read(&shard).unwrap();
    let run_with = |out: &str| {
        let o = m6_train(&args(&["--input", data.to_str().unwrap(), "--output", tmp.path().join(out).to_str().unwrap(), "--steps", "5"]));
        assert!(!o.status.success(), "should fail");
        String::from_utf8_lossy(&o.stderr).to_string()
    };

    // Truncated file: the Parquet footer is gone.
    fs::write(&shard, &original[..original.len() / 2]).unwrap();
    let err = run_with("r1");
    assert!(err.contains(&name), "error should name the shard: {err}");

    // Garbage in the middle of the column data, footer intact.
    let mut garbled = original.clone();
    for b in &mut garbled[8..original.len() / 2] {
        *b = 0xA5;
    }
    fs::write(&shard, &garbled).unwrap();
    let err = run_with("r2");
    assert!(err.contains(&name), "error should name the shard: {err}");

    // A shard of another kind (documents) where samples were expected.
    let doc = m6_schemas::Document { id: "x".into(), source: "t".into(), text: "床前明月光".into(), char_count: 5, ..Default::default() };
    write_shard(&shard, &<m6_schemas::Document as m6_schemas::Record>::to_batch(&[doc]).unwrap());
    let err = run_with("r3");
    assert!(err.contains(&name) && err.contains("schema"), "error should name the shard and the schema: {err}");

    // Right schema, but image patches of the wrong size.
    let (mut rows, vocab) = make_samples(5, 1);
    let img = rows.iter_mut().find(|r| r.image_patches.is_some()).unwrap();
    img.image_patches.as_mut().unwrap().truncate(100);
    write_dataset(&data, &rows, 1, vocab);
    let err = run_with("r4");
    assert!(err.contains("image_patches has 100 bytes") && err.contains("row"), "{err}");
}

#[test]
fn two_ranks_average_gradients_and_stay_in_lockstep() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("samples");
    fixture(&data, 120, 2, 2);
    let run = tmp.path().join("run");
    let spawn = |rank: &str| {
        let a = args(&[
            "--input", data.to_str().unwrap(),
            "--output", run.to_str().unwrap(),
            "--steps", "12",
            "--rank", rank,
            "--world-size", "2",
            "--dist-addr", "127.0.0.1:29817",
            "--set", "eval_every=6",
            "--set", "checkpoint_every=6",
            "--set", "log_every=3",
        ]);
        std::process::Command::new(bin()).args(a).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
    };
    let (r1, r0) = (spawn("1"), spawn("0"));
    for (name, child) in [("rank 0", r0), ("rank 1", r1)] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{name} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    // Same averaged gradients on both ranks: identical weights, identical logged loss.
    let w0 = tensors(&run.join("checkpoints/step-00000012/model.safetensors"));
    let w1 = tensors(&run.join("rank-1/checkpoints/step-00000012/model.safetensors"));
    assert_eq!(w0, w1);
    let (l0, l1) = (log_lines(&run), log_lines(&run.join("rank-1")));
    assert_eq!(l0.iter().map(|l| &l["loss"]).collect::<Vec<_>>(), l1.iter().map(|l| &l["loss"]).collect::<Vec<_>>());
    // The two ranks read different halves of the data: their loader positions are
    // their own, and only rank 0 evaluates.
    assert!(l0.last().unwrap()["eval_loss"].is_number() && l1.last().unwrap().get("eval_loss").is_none());
    // A single-rank run on the same data ends elsewhere (it saw other batches).
    let single = tmp.path().join("single");
    m6_train_ok(&args(&["--input", data.to_str().unwrap(), "--output", single.to_str().unwrap(), "--steps", "12", "--set", "checkpoint_every=6"]));
    assert_ne!(tensors(&single.join("checkpoints/step-00000012/model.safetensors")), w0);
}
