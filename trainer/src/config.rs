//! The `[train]` section of pipeline.toml: model sizes, task mix, optimiser and
//! loader settings. Every field has a default, so a tiny CPU run needs no config.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Trainer configuration (`[train]` in pipeline.toml, `--set key=value` overrides).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Model sizes (`[train.model]`).
    pub model: ModelConfig,
    /// How samples become training examples (`[train.tasks]`).
    pub tasks: TaskConfig,
    /// Samples per micro-batch (per rank). Default 16.
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed before one optimiser step. Default 1.
    pub grad_accum: usize,
    /// Optimiser steps to run in total (the cosine schedule ends here); `--steps` overrides. Default 200.
    pub steps: u64,
    /// Peak learning rate. Default 1e-3.
    pub lr: f64,
    /// Learning rate at the end of the cosine decay, as a fraction of `lr`. Default 0.1.
    pub min_lr_ratio: f64,
    /// Linear warm-up steps. Default 20.
    pub warmup_steps: u64,
    /// AdamW decoupled weight decay (matrices only; not biases, norms). Default 0.01.
    pub weight_decay: f64,
    /// AdamW beta1. Default 0.9.
    pub beta1: f64,
    /// AdamW beta2. Default 0.98.
    pub beta2: f64,
    /// AdamW epsilon. Default 1e-8.
    pub eps: f64,
    /// Global gradient-norm clip; 0 disables. Default 1.0.
    pub grad_clip: f64,
    /// Seed of weights, shard order, shuffle buffer and span masks. Default 42.
    pub seed: u64,
    /// Bounded shuffle buffer size in samples. Default 1024.
    pub shuffle_buffer: usize,
    /// Background Parquet reader threads. Default 2.
    pub reader_threads: usize,
    /// Rows per Parquet batch read. Default 256.
    pub read_batch_rows: usize,
    /// Log every this many steps (to log.jsonl and the terminal). Default 10.
    pub log_every: u64,
    /// Checkpoint every this many steps (and always at the end); 0 = only at the end. Default 100.
    pub checkpoint_every: u64,
    /// Checkpoints kept on disk (older ones are deleted). Default 2.
    pub keep_checkpoints: usize,
    /// Evaluate every this many steps (and at the end); 0 disables. Default 50.
    pub eval_every: u64,
    /// Micro-batches per evaluation (the held-out data from its start). Default 8.
    pub eval_batches: usize,
    /// A separate sample dataset to evaluate on. Default: none, then the last shard
    /// of the input is held out when the input has at least two shards.
    pub eval_input: Option<PathBuf>,
    /// Hold out the input's last shard for evaluation when `eval_input` is unset. Default true.
    pub holdout_last_shard: bool,
    /// Use CUDA when available (bf16 autocast there); false forces CPU. Default true.
    pub cuda: bool,
    /// Torch intra-op threads on CPU; 0 keeps torch's default. Default 0.
    pub torch_threads: usize,
    /// Data lanes: each epoch is cut into this many equal runs of rows and every
    /// micro-batch takes the same number of examples from each, so the training stream
    /// is the same at any world size that divides it (a resumed run may use another
    /// world size that divides it too). Must be a multiple of the world size and
    /// divide `batch_size` × world size. Each lane has its own shuffle buffer of
    /// `shuffle_buffer` samples. Default 0: the world size of the run's first start.
    pub lanes: u64,
    /// How ranks sum gradients: `auto` (NCCL on CUDA, the TCP ring on CPU), `nccl`
    /// (also at world size 1, to check it), `ring`. Default auto.
    pub collective: Collective,
    /// Precision of the gradients on the wire under NCCL: `fp32` (exact sums) or
    /// `bf16` (half the bytes). Default fp32.
    pub grad_reduce: GradReduce,
    /// Gradient bucket size in MiB for NCCL (one group of all-reduces per bucket). Default 25.
    pub bucket_mb: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Collective {
    Auto,
    Nccl,
    Ring,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GradReduce {
    Fp32,
    Bf16,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: ModelConfig::default(),
            tasks: TaskConfig::default(),
            batch_size: 16,
            grad_accum: 1,
            steps: 200,
            lr: 1e-3,
            min_lr_ratio: 0.1,
            warmup_steps: 20,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-8,
            grad_clip: 1.0,
            seed: 42,
            shuffle_buffer: 1024,
            reader_threads: 2,
            read_batch_rows: 256,
            log_every: 10,
            checkpoint_every: 100,
            keep_checkpoints: 2,
            eval_every: 50,
            eval_batches: 8,
            eval_input: None,
            holdout_last_shard: true,
            cuda: true,
            torch_threads: 0,
            lanes: 0,
            collective: Collective::Auto,
            grad_reduce: GradReduce::Fp32,
            bucket_mb: 25,
        }
    }
}

/// Transformer sizes. The vocabulary and image geometry come from the sample
/// dataset's manifest, not from here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Hidden size. Default 64.
    pub d_model: i64,
    /// Transformer blocks. Default 2.
    pub n_layers: i64,
    /// Attention heads (must divide `d_model`). Default 4.
    pub n_heads: i64,
    /// Feed-forward inner size. Default 256.
    pub d_ff: i64,
    /// Longest sequence (image positions included); longer examples are truncated.
    /// Default 0: from the sample dataset — its `max_len` (plus the [MASK] runs text
    /// denoising adds) and, when it holds image samples, the image grid + [IMG], [/IMG]
    /// and a caption of that length.
    pub max_len: i64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig { d_model: 64, n_layers: 2, n_heads: 4, d_ff: 256, max_len: 0 }
    }
}

/// The two M6 pretraining tasks and how they are mixed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskConfig {
    /// Relative weight of text-denoising examples when the shuffle buffer picks the
    /// next example (text samples are denoised). Default 1.0.
    pub denoise_weight: f64,
    /// Relative weight of image-captioning examples (image_text samples). Default 1.0.
    pub caption_weight: f64,
    /// Fraction of a text sample's tokens hidden in masked spans. Default 0.15.
    pub mask_ratio: f64,
    /// Mean masked span length in tokens. Default 3.
    pub mean_span: usize,
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig { denoise_weight: 1.0, caption_weight: 1.0, mask_ratio: 0.15, mean_span: 3 }
    }
}

impl TrainConfig {
    /// Refuses settings that would fail later in a less obvious way.
    pub fn check(&self) -> Result<(), String> {
        let m = &self.model;
        if m.d_model <= 0 || m.n_layers <= 0 || m.n_heads <= 0 || m.d_ff <= 0 || (m.max_len != 0 && m.max_len < 8) {
            return Err(format!("[train.model] sizes must be positive and max_len >= 8 (or 0: from the dataset): {m:?}"));
        }
        if m.d_model % m.n_heads != 0 {
            return Err(format!("[train.model] n_heads {} must divide d_model {}", m.n_heads, m.d_model));
        }
        if self.batch_size == 0 || self.grad_accum == 0 || self.shuffle_buffer == 0 || self.read_batch_rows == 0 {
            return Err("[train] batch_size, grad_accum, shuffle_buffer and read_batch_rows must be at least 1".into());
        }
        let t = &self.tasks;
        if !(t.denoise_weight >= 0.0 && t.caption_weight >= 0.0 && t.denoise_weight + t.caption_weight > 0.0) {
            return Err("[train.tasks] denoise_weight and caption_weight must be >= 0, not both 0".into());
        }
        if !(t.mask_ratio > 0.0 && t.mask_ratio < 1.0) || t.mean_span == 0 {
            return Err("[train.tasks] mask_ratio must be in (0, 1) and mean_span >= 1".into());
        }
        if !(self.lr > 0.0) || !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return Err("[train] lr must be > 0 and min_lr_ratio in [0, 1]".into());
        }
        if self.bucket_mb == 0 {
            return Err("[train] bucket_mb must be at least 1".into());
        }
        Ok(())
    }

    /// The sequence length a dataset needs when `model.max_len` is left at 0: its
    /// samples' `max_len` (text denoising adds a [MASK] to the prefix and one to the
    /// target per masked span: about mask_ratio·n/mean_span spans) and, only when it
    /// holds image samples, the grid's patches + [IMG] + [/IMG] + a caption of the
    /// samples' length less [CLS]/[IMG]/[/IMG]. Without a recorded `max_len`, 128.
    pub fn default_max_len(&self, sample_max_len: Option<i64>, image_patches: Option<i64>) -> i64 {
        let n = sample_max_len.unwrap_or(128).max(8);
        let spans = ((n as f64 * self.tasks.mask_ratio) / self.tasks.mean_span as f64).ceil() as i64;
        let text = n + 2 * spans;
        let image = image_patches.map_or(0, |p| p + 2 + (n - 3).max(1));
        text.max(image)
    }
}
