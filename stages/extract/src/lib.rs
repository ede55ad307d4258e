//! The `extract` stage (placeholder until its issue lands: building it fails with a clear error).

use m6_pipeline::{BoxError, Stage, StageFactory};
use serde::{Deserialize, Serialize};

/// `[extract]` in pipeline.toml.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExtractConfig {}

/// Flags `m6corpus extract` takes beyond the common ones.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ExtractFlags {}

pub struct ExtractFactory;

impl StageFactory for ExtractFactory {
    const NAME: &'static str = "extract";
    type Config = ExtractConfig;
    type Flags = ExtractFlags;
    fn apply_flags(_flags: &Self::Flags, _cfg: &mut Self::Config) -> Result<(), BoxError> {
        Ok(())
    }
    fn build(_cfg: Self::Config) -> Result<Box<dyn Stage>, BoxError> {
        Err("the extract stage is not built yet".into())
    }
}
