//! The `filter` stage (placeholder until its issue lands: building it fails with a clear error).

use m6_pipeline::{BoxError, Stage, StageFactory};
use serde::{Deserialize, Serialize};

/// `[filter]` in pipeline.toml.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterConfig {}

/// Flags `m6corpus filter` takes beyond the common ones.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterFlags {}

pub struct FilterFactory;

impl StageFactory for FilterFactory {
    const NAME: &'static str = "filter";
    type Config = FilterConfig;
    type Flags = FilterFlags;
    fn apply_flags(_flags: &Self::Flags, _cfg: &mut Self::Config) -> Result<(), BoxError> {
        Ok(())
    }
    fn build(_cfg: Self::Config) -> Result<Box<dyn Stage>, BoxError> {
        Err("the filter stage is not built yet".into())
    }
}

pub mod cli {
    //! `m6corpus lm ...` (placeholder until the filter issue lands).
    #[derive(Debug, clap::Subcommand)]
    pub enum LmCommand {
        /// Train the language model.
        Train,
    }
    impl LmCommand {
        pub fn run(self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            Err("lm commands are not built yet".into())
        }
    }
}
