//! Inspecting datasets: `stats`, `sql` (DataFusion) and the HTML `report`
//! (placeholder signatures until implemented).

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotBuilt(&'static str),
}

#[derive(Debug, serde::Serialize)]
pub struct Stats {}

impl std::fmt::Display for Stats {
    fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Ok(())
    }
}

pub fn stats(_dir: &Path) -> Result<Stats, Error> {
    Err(Error::NotBuilt("stats"))
}
pub fn sql(_query: &str, _tables: &[(String, PathBuf)]) -> Result<Vec<RecordBatch>, Error> {
    Err(Error::NotBuilt("sql"))
}
pub fn to_json(_b: &[RecordBatch]) -> Result<String, Error> {
    Err(Error::NotBuilt("output"))
}
pub fn to_table(_b: &[RecordBatch]) -> Result<String, Error> {
    Err(Error::NotBuilt("output"))
}
pub fn report(_dirs: &[PathBuf], _out: &Path) -> Result<(), Error> {
    Err(Error::NotBuilt("report"))
}
