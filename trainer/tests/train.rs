//! End-to-end tests of the `m6-train` binary on a tiny model (CPU) and sample datasets
//! made by the real pipeline (`m6corpus ingest`, `extract`, `tokenizer train`,
//! `tokenize`) from real poems, the Debian Handbook's figures with their captions and
//! captioned photos (`common::pipeline_samples`). Needs `target/release/m6corpus` and
//! the data from `make data`.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use m6_pipeline::{Dataset, Manifest};

fn samples() -> &'static PipelineSamples {
    shared_samples("train")
}

/// Tiny-model settings shared by the tests (one torch thread: deterministic, and the
/// machine is shared), evaluating on the held-out poems.
fn args<'a>(extra: &[&'a str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--cpu",
        "--set", "torch_threads=1",
        "--set", "model.d_model=64",
        "--set", "model.n_layers=2",
        "--set", "model.n_heads=4",
        "--set", "model.d_ff=128",
        "--set", "model.max_len=64",
        "--set", "batch_size=16",
        "--set", "shuffle_buffer=64",
    ]
    .map(String::from)
    .to_vec();
    v.extend(["--set".to_string(), format!("eval_input={}", samples().eval.display())]);
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn run_ok(a: &[String]) -> serde_json::Value {
    m6_train_ok(&a.iter().map(String::as_str).collect::<Vec<_>>())
}

fn run(a: &[String]) -> std::process::Output {
    m6_train(&a.iter().map(String::as_str).collect::<Vec<_>>())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn loss_falls_clearly_over_a_few_hundred_steps() {
    let data = samples();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let summary = run_ok(&args(&[
        "--input", s(&data.train),
        "--output", s(&run),
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
    // Held-out loss (poems never trained on) falls too.
    let evals: Vec<f64> = log.iter().filter_map(|l| l["eval_loss"].as_f64()).collect();
    assert_eq!(evals.len(), 3, "{log:?}");
    assert!(evals[2] < evals[0], "eval loss {evals:?}");
    // The warm-up then cosine schedule: lr rises to the peak, ends near the floor.
    let lrs: Vec<f64> = log.iter().map(|l| l["lr"].as_f64().unwrap()).collect();
    assert!(lrs[0] < lrs[2] && lrs[29] < lrs[10], "{lrs:?}");
    assert_eq!(summary["steps"], 300);
    assert!(run.join("checkpoints/step-00000300/model.safetensors").is_file());
    // The captioning task was trained too: on the photos' image samples alone (image
    // prefix, caption target) the trained model's loss is far below a fresh model's.
    let out = m6_train_ok(&["--input", s(&data.train), "--output", s(&run), "--eval-only", "--cpu", "--set", &format!("eval_input={}", data.photos.display())]);
    let caption_loss = out["eval_loss"].as_f64().unwrap();
    // (A model trained on the poems alone scores about 9.8 here, this one about 5.5.)
    assert!(caption_loss < first * 0.75, "caption loss on trained photos {caption_loss}, fresh model {first}");
}

#[test]
fn stop_and_resume_gives_the_same_weights_as_straight_through() {
    let data = samples();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("straight"), tmp.path().join("resumed"));
    let common = ["--steps", "30", "--set", "checkpoint_every=10", "--set", "log_every=5", "--set", "eval_every=0", "--set", "grad_accum=2"];
    let with = |out: &Path, extra: &[&str]| {
        let mut v = args(&["--input", s(&data.train), "--output", s(out)]);
        v.extend(extra.iter().chain(&common).map(|x| x.to_string()));
        v
    };
    run_ok(&with(&a, &[]));

    let first = with(&b, &["--stop-at", "15"]);
    let s1 = run_ok(&first);
    assert_eq!(s1["steps"], 15);
    // Without --resume an existing run is refused rather than overwritten.
    let refused = run(&first);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--resume"));
    let s2 = run_ok(&with(&b, &["--resume"]));
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
    // The weights moved (so equal weights are not two untrained models).
    let w20 = tensors(&b.join("checkpoints/step-00000020/model.safetensors"));
    assert_ne!(w20, wa);
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
    let data = samples();
    let tmp = tempfile::tempdir().unwrap();
    // The same pipeline.toml the data stages read: a [train] section with input/output.
    let toml = tmp.path().join("pipeline.toml");
    fs::write(
        &toml,
        format!(
            "[corpus]\nthreads = 1\n\n[train]\ninput = {:?}\neval_input = {:?}\noutput = \"run\"\nsteps = 12\neval_every = 6\nlog_every = 3\nbatch_size = 8\ntorch_threads = 1\ncuda = false\n\n[train.model]\nd_model = 32\nn_heads = 2\nd_ff = 64\nmax_len = 48\n",
            s(&data.train),
            s(&data.eval)
        ),
    )
    .unwrap();
    let summary = m6_train_ok(&["--config", s(&toml)]);
    let run = tmp.path().join("run");
    let log = log_lines(&run);
    assert_eq!(log.last().unwrap()["step"], 12);
    let logged = log.last().unwrap()["eval_loss"].as_f64().expect("eval at the end");
    assert_eq!(summary["eval_loss"].as_f64(), Some(logged));
    // A new process rebuilds the model from the checkpoint alone and gets the same loss.
    let out = m6_train_ok(&["--config", s(&toml), "--eval-only"]);
    assert_eq!(out["step"], 12);
    let fresh = out["eval_loss"].as_f64().unwrap();
    assert!((fresh - logged).abs() < 1e-6, "{fresh} vs {logged}");
    let names = tensors(&run.join("checkpoints/step-00000012/model.safetensors"));
    assert!(names.contains_key("tok_emb.weight") && names.contains_key("patch_proj.weight"), "{:?}", names.keys());
    // The vocabulary is the one `m6corpus tokenizer train` made.
    let vocab = Dataset::open(&data.train).unwrap().manifest().properties["vocab_size"].as_i64().unwrap();
    assert_eq!(tch::Tensor::read_safetensors(run.join("checkpoints/step-00000012/model.safetensors")).unwrap().into_iter().find(|(n, _)| n == "tok_emb.weight").unwrap().1.size()[0], vocab);
    assert!(run.join("checkpoints/step-00000012/optimizer.safetensors").is_file());
}

/// Indices of the manifest entries of the shards tokenize made from the shards of
/// `input` (a dataset folder).
fn shards_made_from(dir: &Path, input: &Path) -> Vec<usize> {
    let m = Manifest::load(dir).unwrap();
    let files: Vec<String> = Manifest::load(input).unwrap().shards.into_iter().map(|s| s.file).collect();
    let hits: Vec<usize> = (0..m.shards.len()).filter(|&i| m.shards[i].inputs.iter().any(|x| files.contains(x))).collect();
    assert!(!hits.is_empty(), "no shard made from {}: {:?}", input.display(), m.shards);
    hits
}

#[test]
fn corrupt_or_mismatched_shards_give_a_clear_error() {
    let data = samples();
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("samples");
    copy_dataset(&data.train, &copy);
    let run_with = |inputs: &[&Path], out: &str| {
        let mut a = vec![];
        for i in inputs {
            a.extend(["--input", s(i)]);
        }
        let out = tmp.path().join(out);
        // Enough steps for a whole epoch, so the loader reaches every shard.
        a.extend(["--output", s(&out), "--steps", "40"]);
        let out = out.file_name().unwrap().to_owned();
        let o = run(&args(&a));
        assert!(!o.status.success(), "{out:?} should fail:\n{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    // A good copy trains (so the failures below are the damage, not the copy).
    let ok = run(&args(&["--input", s(&copy), "--output", s(&tmp.path().join("r0")), "--steps", "2"]));
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));

    // A shard tokenize wrote from the poems.
    let m = Manifest::load(&copy).unwrap();
    let i = shards_made_from(&copy, &data.docs)[0];
    let shard = copy.join(&m.shards[i].file);
    let name = m.shards[i].file.clone();
    let original = fs::read(&shard).unwrap();

    // Truncated file: the Parquet footer is gone.
    fs::write(&shard, &original[..original.len() / 2]).unwrap();
    let err = run_with(&[&copy], "r1");
    assert!(err.contains(&name), "error should name the shard: {err}");

    // Garbage in the middle of the column data, footer intact: found when the loader
    // reads the shard (the check before training reads footers and schemas only).
    let mut garbled = original.clone();
    for b in &mut garbled[8..original.len() / 2] {
        *b = 0xA5;
    }
    fs::write(&shard, &garbled).unwrap();
    let err = run_with(&[&copy], "r2");
    assert!(err.contains(&name), "error should name the shard: {err}");

    // A real shard of another kind (the poems' documents, as ingest wrote them) in its
    // place, manifest entry updated (else the checksum on read refuses it first).
    let docs = Dataset::open(&data.docs).unwrap();
    fs::copy(docs.shard_path(&docs.shards()[0]), &shard).unwrap();
    let saved = Manifest::load(&copy).unwrap();
    let mut m3 = saved.clone();
    let other = fs::read(&shard).unwrap();
    m3.shards[i].bytes = other.len() as u64;
    m3.shards[i].blake3 = blake3::hash(&other).to_hex().to_string();
    m3.save(&copy).unwrap();
    let err = run_with(&[&copy], "r3");
    assert!(err.contains(&name) && err.contains("schema"), "error should name the shard and the schema: {err}");
    saved.save(&copy).unwrap();
    fs::write(&shard, &original).unwrap();

    // A whole dataset of another kind given as input.
    let err = run_with(&[&data.docs], "r4");
    assert!(err.contains(s(&data.docs)) && err.contains("document"), "error should name the dataset and its kind: {err}");

    // Two sample datasets tokenized with other image geometry.
    let err = run_with(&[&copy, &data.small_images], "r5");
    assert!(err.contains(s(&data.small_images)) && err.contains("image_size"), "error should name the dataset that differs: {err}");

    // Right schema and row count, but the photo shard swapped for the one tokenized at
    // half the image size (manifest entry updated): its images (JPEG, tokenize's
    // default) decode to the wrong size.
    let j = shards_made_from(&copy, &data.photo_pairs)[0];
    let small = Dataset::open(&data.small_images).unwrap();
    let small_shard = small.shard_path(&small.shards()[0]);
    let mut m = Manifest::load(&copy).unwrap();
    assert_eq!(m.shards[j].rows, small.shards()[0].rows);
    let bytes = fs::read(&small_shard).unwrap();
    fs::write(copy.join(&m.shards[j].file), &bytes).unwrap();
    m.shards[j].bytes = bytes.len() as u64;
    m.shards[j].blake3 = blake3::hash(&bytes).to_hex().to_string();
    m.save(&copy).unwrap();
    let half = IMAGE_SIZE / 2;
    let err = run_with(&[&copy], "r6");
    let want = format!("encoded sample image is {half}x{half}, expected {IMAGE_SIZE}x{IMAGE_SIZE}");
    assert!(err.contains(&want) && err.contains("row") && err.contains(&m.shards[j].file), "{err}");
}

/// Starts `world` m6-train processes with the environment `torchrun --no-python` gives
/// them (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); returns rank 0's
/// summary after checking every rank succeeded.
fn torchrun(world: u64, port: u16, a: &[String]) -> serde_json::Value {
    let children: Vec<_> = (0..world)
        .rev()
        .map(|r| {
            let child = std::process::Command::new(bin())
                .args(a)
                .env("RANK", r.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("LOCAL_RANK", r.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .env("RUST_LOG", "warn")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (r, child)
        })
        .collect();
    let mut summary = serde_json::Value::Null;
    for (r, child) in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "rank {r}/{world} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        if r == 0 {
            summary = serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
        }
    }
    summary
}

fn max_diff(a: &std::collections::BTreeMap<String, Vec<f32>>, b: &std::collections::BTreeMap<String, Vec<f32>>) -> (f32, String) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let mut worst = (0f32, String::new());
    for (name, x) in a {
        let d = x.iter().zip(&b[name]).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        if d > worst.0 {
            worst = (d, name.clone());
        }
    }
    worst
}

/// 6 lanes, 12 samples per micro-batch over all ranks, 2 micro-batches per step.
fn dp_args(data: &PipelineSamples, out: &Path, world: u64, extra: &[&str]) -> Vec<String> {
    let per_rank = (12 / world).to_string();
    let mut v = args(&[
        "--input", s(&data.train),
        "--output", s(out),
        "--steps", "8",
        "--set", "lanes=6",
        "--set", "grad_accum=2",
        "--set", "log_every=2",
        "--set", "eval_every=4",
        "--set", "checkpoint_every=4",
        "--set", "keep_checkpoints=3",
    ]);
    v.extend(["--set".to_string(), format!("batch_size={per_rank}")]);
    v.extend(extra.iter().map(|x| x.to_string()));
    v
}

/// Float tolerance between runs that sum the same gradients in another order (one
/// process vs ranks). Adam divides by √v, which magnifies rounding in coordinates
/// whose gradient is near 0: measured on the CPU, 2 and 3 ranks end 8 steps within
/// 1.5e-5 of one process (a qkv bias), while steps 5-8 alone move weights by ~1e-3.
const DP_TOL: f32 = 2e-4;

#[test]
fn two_and_three_ranks_train_to_the_same_weights_as_one_process() {
    let data = samples();
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one");
    let single = run_ok(&dp_args(data, &one, 1, &[]));
    assert_eq!((single["world_size"].as_u64(), single["lanes"].as_u64(), single["collective"].as_str()), (Some(1), Some(6), Some("none")));
    let w1 = tensors(&one.join("checkpoints/step-00000008/model.safetensors"));
    let l1 = log_lines(&one);
    let mut worst = 0f32;
    for (world, port) in [(2u64, 29817u16), (3, 29818)] {
        let run = tmp.path().join(format!("w{world}"));
        let summary = torchrun(world, port, &dp_args(data, &run, world, &[]));
        assert_eq!((summary["world_size"].as_u64(), summary["collective"].as_str()), (Some(world), Some("ring")), "{summary}");
        let w = tensors(&run.join("checkpoints/step-00000008/model.safetensors"));
        let (d, name) = max_diff(&w1, &w);
        eprintln!("{world} ranks vs one process: largest weight difference {d:e} ({name})");
        assert!(d < DP_TOL, "{world} ranks: {name} differs from one process by {d}");
        worst = worst.max(d);
        // The same global loss is logged (by rank 0 alone) step by step, and the
        // throughput counts every rank's tokens.
        let l = log_lines(&run);
        assert_eq!(l.len(), l1.len());
        for (x, y) in l1.iter().zip(&l) {
            assert_eq!(x["step"], y["step"]);
            assert!((x["loss"].as_f64().unwrap() - y["loss"].as_f64().unwrap()).abs() < 1e-4, "{world} ranks: {x} vs {y}");
        }
        // Only rank 0 writes: one log, one checkpoint folder, no per-rank folders.
        let entries: Vec<String> = fs::read_dir(&run).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
        assert_eq!(entries.len(), 2, "{entries:?}");
        // The checkpoint holds the global position: the same as one process's.
        let st = |dir: &Path| -> serde_json::Value { serde_json::from_str(&fs::read_to_string(dir.join("checkpoints/step-00000008/state.json")).unwrap()).unwrap() };
        assert_eq!(st(&one)["loader"], st(&run)["loader"]);
        assert_eq!(st(&run)["world_size"], world);
    }
    // The weights moved: steps 5-8 changed them far more than the ranks differ.
    let moved = max_diff(&w1, &tensors(&one.join("checkpoints/step-00000004/model.safetensors"))).0;
    eprintln!("steps 5-8 moved weights by up to {moved:e}");
    assert!(moved > 50.0 * worst && moved > 1e-4, "moved {moved}, ranks differ by {worst}");
}

#[test]
fn resume_at_another_world_size_continues_from_the_same_global_position() {
    let data = samples();
    let tmp = tempfile::tempdir().unwrap();
    let straight = tmp.path().join("straight");
    run_ok(&dp_args(data, &straight, 1, &[]));
    // Two ranks stop after step 4; three ranks resume to step 8; then one process
    // resumes a copy of the 2-rank checkpoint too.
    let run = tmp.path().join("run");
    torchrun(2, 29821, &dp_args(data, &run, 2, &["--stop-at", "4"]));
    let state = |dir: &Path, step: u32| -> serde_json::Value {
        serde_json::from_str(&fs::read_to_string(dir.join(format!("checkpoints/step-{step:08}/state.json"))).unwrap()).unwrap()
    };
    assert_eq!(state(&run, 4)["loader"], state(&straight, 4)["loader"], "the 2-rank run saved the global position");
    // A world size that does not divide the lanes is refused with a clear message.
    let bad = torchrun_err(4, 29822, &dp_args(data, &run, 4, &["--resume"]));
    assert!(bad.contains("lanes") && bad.contains("4 ranks"), "{bad}");
    let summary = torchrun(3, 29823, &dp_args(data, &run, 3, &["--resume"]));
    assert_eq!((summary["start_step"].as_u64(), summary["steps"].as_u64()), (Some(4), Some(8)));
    assert_eq!(state(&run, 8)["loader"], state(&straight, 8)["loader"]);
    let (d, name) = max_diff(&tensors(&straight.join("checkpoints/step-00000008/model.safetensors")), &tensors(&run.join("checkpoints/step-00000008/model.safetensors")));
    assert!(d < DP_TOL, "resumed at 3 ranks: {name} differs from the straight run by {d}");
    // The per-rank batch follows from the run's global batch, whatever batch_size says.
    let st = state(&run, 8);
    assert_eq!((st["global_batch"].as_u64(), st["config"]["batch_size"].as_u64(), st["lanes"].as_u64()), (Some(12), Some(4), Some(6)));
}

/// Like [`torchrun`], for a launch that must fail: every rank's stderr.
fn torchrun_err(world: u64, port: u16, a: &[String]) -> String {
    let children: Vec<_> = (0..world)
        .map(|r| {
            std::process::Command::new(bin())
                .args(a)
                .env("RANK", r.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut err = String::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(!out.status.success());
        err.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    err
}

/// Where CUDA is present: one rank through NCCL gives the same weights as without
/// it. Without a GPU (this project's CI) it says so and checks nothing.
#[test]
fn nccl_at_world_size_one_matches_no_collective_when_cuda_is_present() {
    if !tch::Cuda::is_available() {
        eprintln!("no CUDA device: the NCCL path is not exercised here");
        return;
    }
    let data = samples();
    let tmp = tempfile::tempdir().unwrap();
    let cuda_args = |out: &Path, extra: &[&str]| {
        let mut v: Vec<String> = args(&["--input", s(&data.train), "--output", s(out), "--steps", "6", "--set", "eval_every=0"]).into_iter().filter(|a| a != "--cpu").collect();
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    let plain = tmp.path().join("plain");
    let nccl = tmp.path().join("nccl");
    let a = run_ok(&cuda_args(&plain, &[]));
    let b = run_ok(&cuda_args(&nccl, &["--set", "collective=nccl"]));
    assert_eq!((a["collective"].as_str(), b["collective"].as_str()), (Some("none"), Some("nccl")));
    let (d, name) = max_diff(&tensors(&plain.join("checkpoints/step-00000006/model.safetensors")), &tensors(&nccl.join("checkpoints/step-00000006/model.safetensors")));
    assert!(d == 0.0, "{name} differs by {d}");
}

/// A new user's chain: `m6corpus tokenize` with its defaults (512 ids, 224 px images in
/// 16 px patches) and `m6corpus train --input SAMPLES --output RUN` with its defaults
/// (only --steps shortened): the sequence length comes from the samples' manifest and
/// the image capacity is checked only when the dataset holds images.
#[test]
fn tokenize_defaults_then_train_defaults_compose() {
    let data = samples();
    let tmp = tempfile::tempdir().unwrap();
    let vocab = data.root.join("vocab.txt");
    let tok = |inputs: &[&Path], out: &Path| {
        let mut a = vec!["tokenize".to_string()];
        for i in inputs {
            a.extend(["--input".to_string(), s(i).to_string()]);
        }
        a.extend(["--output", s(out), "--tokenizer", s(&vocab), "--quiet"].map(String::from));
        m6corpus_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    };
    let train = |samples: &Path, run: &Path| -> serde_json::Value {
        let out = std::process::Command::new(m6corpus())
            .args(["train", "--input", s(samples), "--output", s(run), "--steps", "2"])
            .env("M6_TRAIN_BIN", bin())
            .output()
            .unwrap();
        assert!(out.status.success(), "m6corpus train with defaults failed:\n{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap()
    };
    let max_len = |run: &Path| -> i64 {
        let st: serde_json::Value = serde_json::from_str(&fs::read_to_string(run.join("checkpoints/step-00000002/state.json")).unwrap()).unwrap();
        st["model"]["max_len"].as_i64().unwrap()
    };
    // Text only: the case (it stopped on the image capacity).
    let text = tmp.path().join("text");
    tok(&[&data.docs], &text);
    let summary = train(&text, &tmp.path().join("run-text"));
    assert_eq!(summary["steps"], 2);
    // 512 ids + a [MASK] in prefix and target per span (15% of 512 in spans of 3: 26).
    assert_eq!(max_len(&tmp.path().join("run-text")), 512 + 2 * 26);
    // With images (224 px: 196 patches): room for the grid and a caption.
    let mixed = tmp.path().join("mixed");
    tok(&[&data.docs, &data.photo_pairs], &mixed);
    train(&mixed, &tmp.path().join("run-mixed"));
    assert_eq!(max_len(&tmp.path().join("run-mixed")), 196 + 2 + 512 - 3);
    // A length set by the user is kept, and one too short for an image is refused only
    // where there are images.
    let short = |samples: &Path, run: &str| {
        std::process::Command::new(bin())
            .args(["--input", s(samples), "--output", s(&tmp.path().join(run)), "--steps", "1", "--cpu", "--set", "model.max_len=128"])
            .output()
            .unwrap()
    };
    assert!(short(&text, "short-text").status.success());
    let o = short(&mixed, "short-mixed");
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("cannot hold an image"), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The step loop reads the loss only at log/eval/checkpoint steps (so it never waits for
/// a GPU); a diverging run must still stop there with a clear error and must not leave a
/// checkpoint of poisoned weights behind.
#[test]
fn a_diverging_run_stops_at_the_next_log_step_without_a_checkpoint() {
    let data = samples();
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    let out = run(&args(&[
        "--input", s(&data.train),
        "--output", s(&run_dir),
        "--steps", "40",
        "--set", "lr=1e30", // weights overflow fp32 at once: the loss turns NaN/inf
        "--set", "warmup_steps=0",
        "--set", "log_every=10",
        "--set", "checkpoint_every=10",
        "--set", "eval_every=0",
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a diverging run must fail");
    assert!(stderr.contains("loss became") && stderr.contains("in steps 1..=10"), "{stderr}");
    assert!(!run_dir.join("checkpoints").join("latest").exists(), "no checkpoint may be written after the loss went bad");
    assert!(log_lines(&run_dir).is_empty(), "nothing logged from the bad window");
}
