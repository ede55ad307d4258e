//! The `dedup` stage (placeholder until its issue lands: building it fails with a clear error).

use m6_pipeline::{BoxError, Stage, StageFactory};
use serde::{Deserialize, Serialize};

/// `[dedup]` in pipeline.toml.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DedupConfig {}

/// Flags `m6corpus dedup` takes beyond the common ones.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DedupFlags {}

pub struct DedupFactory;

impl StageFactory for DedupFactory {
    const NAME: &'static str = "dedup";
    type Config = DedupConfig;
    type Flags = DedupFlags;
    fn apply_flags(_flags: &Self::Flags, _cfg: &mut Self::Config) -> Result<(), BoxError> {
        Ok(())
    }
    fn build(_cfg: Self::Config) -> Result<Box<dyn Stage>, BoxError> {
        Err("the dedup stage is not built yet".into())
    }
}
