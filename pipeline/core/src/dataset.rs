//! Reading datasets: the manifest says which shards exist; shards are streamed batch
//! by batch, and a shard whose checksum or schema is not what the manifest and the
//! dataset kind say is refused by name.

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

    /// Like [`Dataset::read_shard`], decoding only `columns` (a column an older version
    /// of the kind lacks reads as nulls). The whole file is checked against the shard's
    /// manifest entry first, so a projection never hides a corrupt shard.
    pub fn read_shard_columns(&self, shard: &ShardEntry, batch_rows: usize, columns: &[&str]) -> Result<ShardReader> {
        let path = self.shard_path(shard);
        crate::integrity::verify_file(&path, shard.bytes, &shard.blake3)?;
        read_parquet_columns(&path, Some(self.kind()), batch_rows, Some(columns))
    }

    /// Checks every shard's size and blake3 against the manifest (each shard once per
    /// process); for readers that hand files to another engine (DataFusion).
    pub fn verify_shards(&self) -> Result<()> {
        use rayon::prelude::*;
        self.shards().par_iter().try_for_each(|s| crate::integrity::verify_file(&self.shard_path(s), s.bytes, &s.blake3))
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
    /// Set for a shard of an older schema version: each batch is brought up to the
    /// current schema (new nullable columns as nulls).
    upgrade: Option<Upgrade>,
}

enum Upgrade {
    /// Whole rows: the kind's own upgrade.
    Kind(Kind),
    /// Projected columns: the requested columns the old file lacks, appended as nulls.
    Append(Vec<arrow::datatypes::FieldRef>),
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
        let b = self.inner.next()?.map_err(|e| Error::parquet(&self.path, e.into()));
        Some(match (&self.upgrade, b) {
            (Some(Upgrade::Kind(k)), Ok(b)) => k.upgrade(b).map_err(|e| Error::schema(&self.path, e)),
            (Some(Upgrade::Append(extra)), Ok(b)) => {
                let mut fields: Vec<arrow::datatypes::FieldRef> = b.schema().fields().iter().cloned().collect();
                let mut cols = b.columns().to_vec();
                for f in extra {
                    fields.push(f.clone());
                    cols.push(arrow::array::new_null_array(f.data_type(), b.num_rows()));
                }
                RecordBatch::try_new(std::sync::Arc::new(arrow::datatypes::Schema::new(fields)), cols).map_err(|e| Error::parquet(&self.path, e.into()))
            }
            (_, b) => b,
        })
    }
}

/// A file a stage keeps beside the shards of its output (tokenize's `tokenizer.json`),
/// or `None` when there is none yet.
pub fn read_extra_file(dir: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let path = dir.join(name);
    std::fs::read(&path).missing_ok(&path)
}

/// Writes such a file atomically (temporary, fsync, rename, folder sync); every
/// process of a `--task-count` job may write it at once, each through its own
/// temporary.
pub fn write_extra_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    crate::manifest::write_atomic(&dir.join(name), bytes)
}

/// Uncompressed bytes a batch of a shard holds at most (but one row): rows per batch
/// are [`DEFAULT_BATCH_ROWS`] (or the caller's) or fewer when the rows read are wide.
///
/// An image dataset's rows are tens of kilobytes to megabytes, so 4,096 of them filled
/// a whole 32 MiB row group per batch. Buffers that large are always `mmap`ed afresh by
/// glibc (its adaptive threshold stops at 32 MiB) and returned on free, so every batch
/// page-faulted its whole size in again. On `bench/dedup_images.py --quick --side 2048`
/// (4 shards of 124 JPEGs, about 230 KB each), image dedup spent 0.26 of 1.18 CPU-s in
/// the kernel; with batches of at most 4 MiB, 0.13-0.16 of 1.06-1.08, peak RSS 80 -> 76
/// MiB (2 MiB: the same CPU; 8 MiB: the same; 32 MiB: no gain). Text rows (a few
/// hundred bytes to a few kilobytes) keep their 4,096-row batches or nearly.
pub const BATCH_BYTES: u64 = 4 << 20;

/// Rows per batch for a file whose row groups average the uncompressed bytes per row
/// that the columns read take (`roots`: the top-level columns read; all when `None`):
/// at most `batch_rows`, and at most what fits [`BATCH_BYTES`].
fn rows_per_batch(meta: &parquet::file::metadata::ParquetMetaData, batch_rows: usize, roots: Option<&[usize]>) -> usize {
    let schema = meta.file_metadata().schema_descr();
    let (mut bytes, mut rows) = (0u64, 0u64);
    for g in meta.row_groups() {
        rows += g.num_rows().max(0) as u64;
        for (leaf, c) in g.columns().iter().enumerate() {
            if roots.is_none_or(|r| r.contains(&schema.get_column_root_idx(leaf))) {
                bytes += c.uncompressed_size().max(0) as u64;
            }
        }
    }
    if rows == 0 || bytes == 0 {
        return batch_rows.max(1);
    }
    let fit = (BATCH_BYTES / bytes.div_ceil(rows)).max(1);
    batch_rows.clamp(1, fit.min(usize::MAX as u64) as usize)
}

/// Opens a Parquet file for streaming; when `kind` is given, refuses a file whose
/// schema is not exactly that kind's.
pub fn read_parquet(path: &Path, kind: Option<Kind>, batch_rows: usize) -> Result<ShardReader> {
    read_parquet_columns(path, kind, batch_rows, None)
}

/// Like [`read_parquet`], decoding only the named top-level columns (in file order)
/// when `columns` is given: a stage that needs two columns of a wide shard skips
/// decompressing the rest. The whole schema is still checked against `kind`.
///
/// A shard of a dataset is first checked against the blake3 its manifest records
/// ([`crate::integrity`]), so a corrupt shard fails by name before any row is decoded.
pub fn read_parquet_columns(path: &Path, kind: Option<Kind>, batch_rows: usize, columns: Option<&[&str]>) -> Result<ShardReader> {
    crate::integrity::check_shard(path)?;
    let file = File::open(path).at(path)?;
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::parquet(path, e))?;
    let mut upgrade = None;
    if let Some(kind) = kind {
        kind.check(builder.schema()).map_err(|e| Error::schema(path, e))?;
        if builder.schema().fields().len() != kind.schema().fields().len() {
            upgrade = Some(Upgrade::Kind(kind));
        }
    }
    let mut read_roots = None;
    if let Some(cols) = columns {
        let fields = builder.schema().fields();
        let mut roots = Vec::with_capacity(cols.len());
        let mut extra = vec![];
        for c in cols {
            match fields.iter().position(|f| f.name() == c) {
                Some(i) => roots.push(i),
                // A column an older version of the kind lacks reads as nulls.
                None => match kind.and_then(|k| k.schema().field_with_name(c).ok().cloned()) {
                    Some(f) if upgrade.is_some() && f.is_nullable() => extra.push(std::sync::Arc::new(f)),
                    _ => return Err(Error::parquet(path, parquet::errors::ParquetError::General(format!("no column `{c}`")))),
                },
            }
        }
        upgrade = (!extra.is_empty()).then_some(Upgrade::Append(extra));
        let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), roots.iter().copied());
        read_roots = Some(roots);
        builder = builder.with_projection(mask);
    }
    let rows = builder.metadata().file_metadata().num_rows() as u64;
    let batch_rows = rows_per_batch(builder.metadata(), batch_rows, read_roots.as_deref());
    let inner = builder.with_batch_size(batch_rows).build().map_err(|e| Error::parquet(path, e))?;
    Ok(ShardReader { path: path.to_path_buf(), inner, rows, upgrade })
}

/// Like [`read_parquet`], yielding only the rows `rows.start..rows.end` of the file:
/// row groups outside the range are not read at all and the rest is cut with a row
/// selection (the trainer's data-parallel ranks each read their own part of a shard).
/// A range past the end of the file is an error naming it.
pub fn read_parquet_rows(path: &Path, kind: Option<Kind>, batch_rows: usize, rows: std::ops::Range<u64>) -> Result<ShardReader> {
    use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
    // Checked like every other read: a rank must not train on a corrupt shard either.
    crate::integrity::check_shard(path)?;
    let file = File::open(path).at(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::parquet(path, e))?;
    let mut upgrade = None;
    if let Some(kind) = kind {
        kind.check(builder.schema()).map_err(|e| Error::schema(path, e))?;
        if builder.schema().fields().len() != kind.schema().fields().len() {
            upgrade = Some(Upgrade::Kind(kind));
        }
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
    let batch_rows = rows_per_batch(builder.metadata(), batch_rows, None);
    let inner = builder
        .with_row_groups(groups)
        .with_row_selection(selection)
        .with_batch_size(batch_rows)
        .build()
        .map_err(|e| Error::parquet(path, e))?;
    Ok(ShardReader { path: path.to_path_buf(), inner, rows: total, upgrade })
}
