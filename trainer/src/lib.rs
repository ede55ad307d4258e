//! m6-trainer: M6-style prefix-LM pretraining (text denoising + image captioning)
//! on the `sample` shards the tokenize stage writes, with tch (libtorch).
//!
//! A workspace member outside `default-members`, so the data pipeline builds without
//! libtorch.

pub mod config;
pub mod data;
pub mod dist;
pub mod launch;
pub mod model;
pub mod nccl;
pub mod optim;
pub mod rng;
pub mod train;

pub use config::TrainConfig;
pub use train::{train, TrainArgs};

/// Peak resident set size of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
