//! Inspecting datasets: `stats` (streaming summary statistics), `sql` (DataFusion over
//! the shards a manifest lists) and `report` (one self-contained HTML page of charts).

use std::path::PathBuf;

pub mod report;
pub mod sketch;
pub mod sql;
pub mod stats;

pub use report::report;
pub use sql::{sql, to_json, to_table};
pub use stats::{stats, Stats};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Dataset(#[from] m6_pipeline::Error),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    Parquet { path: PathBuf, source: parquet::errors::ParquetError },
    #[error("{}: {source}", path.display())]
    Schema { path: PathBuf, source: m6_schemas::SchemaError },
    #[error("{}: {msg}", path.display())]
    Corrupt { path: PathBuf, msg: String },
    #[error(transparent)]
    Properties(#[from] m6_schemas::PropertiesError),
    #[error("table `{table}` ({}): {msg}", dir.display())]
    Table { table: String, dir: PathBuf, msg: String },
    #[error("sql: {0}")]
    Sql(String),
    #[error("output: {0}")]
    Output(String),
}
