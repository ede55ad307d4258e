//! The `ingest` stage (placeholder until its issue lands: building it fails with a clear error).

use m6_pipeline::{BoxError, Stage, StageFactory};
use serde::{Deserialize, Serialize};

/// `[ingest]` in pipeline.toml.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {}

/// Flags `m6corpus ingest` takes beyond the common ones.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct IngestFlags {}

pub struct IngestFactory;

impl StageFactory for IngestFactory {
    const NAME: &'static str = "ingest";
    type Config = IngestConfig;
    type Flags = IngestFlags;
    fn apply_flags(_flags: &Self::Flags, _cfg: &mut Self::Config) -> Result<(), BoxError> {
        Ok(())
    }
    fn build(_cfg: Self::Config) -> Result<Box<dyn Stage>, BoxError> {
        Err("the ingest stage is not built yet".into())
    }
}
