//! Reading datasets: the manifest says which shards exist; shards are streamed batch
//! by batch, and a shard whose schema is not the dataset kind's is refused by name.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use m6_schemas::{Kind, Record};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use crate::error::{Error, IoContext, Result};
use crate::manifest::{Manifest, ShardEntry};

/// Rows per batch when reading; small enough that a batch of web pages stays in the
/// tens of megabytes, large enough to amortise per-batch work.
pub const DEFAULT_BATCH_ROWS: usize = 4096;

#[derive(Debug, Clone)]
pub struct Dataset {
    dir: PathBuf,
    manifest: Manifest,
}

impl Dataset {
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = Manifest::load(dir)?;
        Ok(Dataset { dir: dir.to_path_buf(), manifest })
    }

    pub fn is_dataset(dir: &Path) -> bool {
        Manifest::exists(dir)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn kind(&self) -> Kind {
        self.manifest.kind
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn shards(&self) -> &[ShardEntry] {
        &self.manifest.shards
    }

    pub fn shard_path(&self, shard: &ShardEntry) -> PathBuf {
        self.dir.join(&shard.file)
    }

    pub fn rows(&self) -> u64 {
        self.manifest.rows()
    }

    /// A side dataset (e.g. `rejects`) stored beside this one.
    pub fn side(&self, name: &str) -> Result<Dataset> {
        if !self.manifest.sides.contains_key(name) {
            return Err(Error::manifest(
                Manifest::path(&self.dir),
                format!("no side dataset `{name}` (has: {})", self.manifest.sides.keys().cloned().collect::<Vec<_>>().join(", ")),
            ));
        }
        Dataset::open(&self.dir.join(name))
    }

    pub fn read_shard(&self, shard: &ShardEntry, batch_rows: usize) -> Result<ShardReader> {
        read_parquet(&self.shard_path(shard), Some(self.kind()), batch_rows)
    }

    /// Every batch of every shard, in manifest order.
    pub fn batches(&self, batch_rows: usize) -> impl Iterator<Item = Result<RecordBatch>> + '_ {
        self.shards().iter().flat_map(move |s| match self.read_shard(s, batch_rows) {
            Ok(r) => Box::new(r) as Box<dyn Iterator<Item = Result<RecordBatch>>>,
            Err(e) => Box::new(std::iter::once(Err(e))),
        })
    }

    /// Every row as a record struct; for tests and small datasets.
    pub fn read_all<R: Record>(&self) -> Result<Vec<R>> {
        if R::KIND != self.kind() {
            return Err(Error::manifest(Manifest::path(&self.dir), format!("dataset is {}, not {}", self.kind(), R::KIND)));
        }
        let mut out = vec![];
        for s in self.shards() {
            let path = self.shard_path(s);
            for b in self.read_shard(s, DEFAULT_BATCH_ROWS)? {
                out.extend(R::from_batch(&b?).map_err(|e| Error::schema(&path, e))?);
            }
        }
        Ok(out)
    }
}

/// Streams one Parquet file's batches; errors name the file.
pub struct ShardReader {
    path: PathBuf,
    inner: ParquetRecordBatchReader,
    rows: u64,
}

impl ShardReader {
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Rows in the file according to its footer.
    pub fn rows(&self) -> u64 {
        self.rows
    }
}

impl Iterator for ShardReader {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next().map(|r| r.map_err(|e| Error::parquet(&self.path, e.into())))
    }
}

/// Opens a Parquet file for streaming; when `kind` is given, refuses a file whose
/// schema is not exactly that kind's.
pub fn read_parquet(path: &Path, kind: Option<Kind>, batch_rows: usize) -> Result<ShardReader> {
    read_parquet_columns(path, kind, batch_rows, None)
}

/// Like [`read_parquet`], decoding only the named top-level columns (in file order)
/// when `columns` is given: a stage that needs two columns of a wide shard skips
/// decompressing the rest. The whole schema is still checked against `kind`.
pub fn read_parquet_columns(path: &Path, kind: Option<Kind>, batch_rows: usize, columns: Option<&[&str]>) -> Result<ShardReader> {
    let file = File::open(path).at(path)?;
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::parquet(path, e))?;
    if let Some(kind) = kind {
        kind.check(builder.schema()).map_err(|e| Error::schema(path, e))?;
    }
    if let Some(cols) = columns {
        let fields = builder.schema().fields();
        let mut roots = Vec::with_capacity(cols.len());
        for c in cols {
            let i = fields.iter().position(|f| f.name() == c).ok_or_else(|| Error::parquet(path, parquet::errors::ParquetError::General(format!("no column `{c}`"))))?;
            roots.push(i);
        }
        let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), roots);
        builder = builder.with_projection(mask);
    }
    let rows = builder.metadata().file_metadata().num_rows() as u64;
    let inner = builder.with_batch_size(batch_rows.max(1)).build().map_err(|e| Error::parquet(path, e))?;
    Ok(ShardReader { path: path.to_path_buf(), inner, rows })
}

/// Like [`read_parquet`], yielding only the rows `rows.start..rows.end` of the file:
/// row groups outside the range are not read at all and the rest is cut with a row
/// selection (the trainer's data-parallel ranks each read their own part of a shard).
/// A range past the end of the file is an error naming it.
pub fn read_parquet_rows(path: &Path, kind: Option<Kind>, batch_rows: usize, rows: std::ops::Range<u64>) -> Result<ShardReader> {
    use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
    let file = File::open(path).at(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::parquet(path, e))?;
    if let Some(kind) = kind {
        kind.check(builder.schema()).map_err(|e| Error::schema(path, e))?;
    }
    let total = builder.metadata().file_metadata().num_rows() as u64;
    if rows.start > rows.end || rows.end > total {
        let msg = format!("rows {}..{} asked of a shard of {total} rows", rows.start, rows.end);
        return Err(Error::parquet(path, parquet::errors::ParquetError::General(msg)));
    }
    let (mut groups, mut first) = (vec![], None);
    let mut at = 0u64;
    for (i, g) in builder.metadata().row_groups().iter().enumerate() {
        let n = g.num_rows() as u64;
        if at < rows.end && at + n > rows.start {
            groups.push(i);
            first.get_or_insert(at);
        }
        at += n;
    }
    let skip = rows.start - first.unwrap_or(rows.start);
    let selection = RowSelection::from(vec![RowSelector::skip(skip as usize), RowSelector::select((rows.end - rows.start) as usize)]);
    let inner = builder
        .with_row_groups(groups)
        .with_row_selection(selection)
        .with_batch_size(batch_rows.max(1))
        .build()
        .map_err(|e| Error::parquet(path, e))?;
    Ok(ShardReader { path: path.to_path_buf(), inner, rows: total })
}
