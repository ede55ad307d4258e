//! The pipeline's error type: every variant names the file, task or setting at fault.

use std::path::PathBuf;

use m6_schemas::SchemaError;

/// What stages return: their own error types, boxed, so the runner can wrap them
/// with the task they happened in.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    Parquet { path: PathBuf, source: parquet::errors::ParquetError },
    #[error("{}: {source}", path.display())]
    Schema { path: PathBuf, source: SchemaError },
    #[error("{}: {msg}", path.display())]
    Manifest { path: PathBuf, msg: String },
    #[error("{}: {msg}", path.display())]
    Corrupt { path: PathBuf, msg: String },
    #[error("config: {0}")]
    Config(String),
    #[error("task {task} ({input}): {source}")]
    Task { task: String, input: String, source: BoxError },
    #[error("stage {stage}: {source}")]
    Stage { stage: String, source: BoxError },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub fn parquet(path: impl Into<PathBuf>, source: parquet::errors::ParquetError) -> Self {
        Error::Parquet { path: path.into(), source }
    }
    pub fn schema(path: impl Into<PathBuf>, source: SchemaError) -> Self {
        Error::Schema { path: path.into(), source }
    }
    pub fn manifest(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Manifest { path: path.into(), msg: msg.into() }
    }
}

/// Attaches a path to `std::io` results, the one conversion every file operation needs.
pub trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
    /// As [`IoContext::at`], but a missing file or folder is `None`, not an error (a
    /// unit not done yet, something already removed).
    fn missing_ok(self, path: impl Into<PathBuf>) -> Result<Option<T>>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
    fn missing_ok(self, path: impl Into<PathBuf>) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }
}

/// One line for an error and its causes, for binaries to print. Our errors already
/// name their cause in their own message (so `{e}` alone is useful in logs and error
/// rows); a cause whose text is already in the line is not repeated.
pub fn chain_message<'a>(chain: impl IntoIterator<Item = &'a (dyn std::error::Error + 'static)>) -> String {
    let mut line = String::new();
    for e in chain {
        let m = e.to_string();
        if line.contains(&m) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&m);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_message_names_each_cause_once() {
        let inner = std::io::Error::other("disk on fire");
        let e = Error::io("/data/x.parquet", inner);
        let wrapped = Error::Stage { stage: "dedup".into(), source: Box::new(e) };
        let mut chain: Vec<&(dyn std::error::Error + 'static)> = vec![&wrapped];
        while let Some(s) = chain.last().unwrap().source() {
            chain.push(s);
        }
        assert_eq!(chain.len(), 3);
        assert_eq!(chain_message(chain), "stage dedup: /data/x.parquet: disk on fire");
    }
}

