//! The `tokenize` stage (placeholder until its issue lands: building it fails with a clear error).

use m6_pipeline::{BoxError, Stage, StageFactory};
use serde::{Deserialize, Serialize};

/// `[tokenize]` in pipeline.toml.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenizeConfig {}

/// Flags `m6corpus tokenize` takes beyond the common ones.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TokenizeFlags {}

pub struct TokenizeFactory;

impl StageFactory for TokenizeFactory {
    const NAME: &'static str = "tokenize";
    type Config = TokenizeConfig;
    type Flags = TokenizeFlags;
    fn apply_flags(_flags: &Self::Flags, _cfg: &mut Self::Config) -> Result<(), BoxError> {
        Ok(())
    }
    fn build(_cfg: Self::Config) -> Result<Box<dyn Stage>, BoxError> {
        Err("the tokenize stage is not built yet".into())
    }
}
