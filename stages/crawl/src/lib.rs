//! The `crawl` stage (placeholder until its issue lands: building it fails with a clear error).

use m6_pipeline::{BoxError, Stage, StageFactory};
use serde::{Deserialize, Serialize};

/// `[crawl]` in pipeline.toml.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrawlConfig {}

/// Flags `m6corpus crawl` takes beyond the common ones.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CrawlFlags {}

pub struct CrawlFactory;

impl StageFactory for CrawlFactory {
    const NAME: &'static str = "crawl";
    type Config = CrawlConfig;
    type Flags = CrawlFlags;
    fn apply_flags(_flags: &Self::Flags, _cfg: &mut Self::Config) -> Result<(), BoxError> {
        Ok(())
    }
    fn build(_cfg: Self::Config) -> Result<Box<dyn Stage>, BoxError> {
        Err("the crawl stage is not built yet".into())
    }
}
