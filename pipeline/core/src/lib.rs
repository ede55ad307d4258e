//! Dataset and manifest I/O, the stage runner and the pipeline config.
//!
//! Stages never touch files: they read batches from a [`Task`] and write batches to a
//! [`TaskOutput`]; this crate turns that into zstd Parquet shards committed atomically,
//! manifests, resumable runs and `--task-index/--task-count` slicing.

pub mod config;
pub mod dataset;
pub mod error;
pub mod integrity;
pub mod manifest;
pub mod progress;
pub mod rounds;
pub mod runner;
pub mod stage;
pub mod status;
pub mod verify;
pub mod work;
pub mod writer;

pub use config::{PipelineConfig, RunOptions};
pub use dataset::{read_parquet, read_parquet_columns, read_parquet_rows, Dataset, ShardReader};
pub use error::{BoxError, Error, Result};
pub use manifest::{CommitRecord, Completeness, Manifest, RunSummary, ShardEntry};
pub use runner::{commit, run_stage};
pub use writer::ShardLimits;
pub use status::{status, DatasetStatus};
pub use stage::{plan_shards, settings_of, Counters, Flag, FlagKind, OutputSpec, RunContext, Stage, StageFactory, StageRun, Task, TaskInput, TaskOutput};
pub use verify::{verify, VerifyReport};

pub use m6_schemas as schemas;
