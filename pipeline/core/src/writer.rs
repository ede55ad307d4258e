//! Writes one task's batches of one dataset kind into zstd Parquet shards (the
//! encoded-image column of image and pair datasets is stored plain: see
//! [`encoded_image_column`]).
//!
//! Shards are written under a temporary name, hashed on the way out (no second read),
//! and roll over at a byte budget; row groups are flushed by size so readers can stream
//! them with bounded memory. Nothing becomes visible until the runner commits the task.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use m6_schemas::Kind;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::error::{Error, IoContext, Result};

/// Sizes that bound memory and file counts; see `[corpus]` in pipeline.toml.
#[derive(Debug, Clone, Copy)]
pub struct ShardLimits {
    /// A shard rolls over once this many bytes are written.
    pub shard_bytes: u64,
    /// A row group is flushed once its buffered (uncompressed) size reaches this.
    pub row_group_bytes: usize,
    pub zstd_level: i32,
}

impl Default for ShardLimits {
    fn default() -> Self {
        ShardLimits { shard_bytes: 256 << 20, row_group_bytes: 32 << 20, zstd_level: 3 }
    }
}

/// A finished, not yet committed shard.
#[derive(Debug, Clone)]
pub struct WrittenShard {
    pub tmp_path: PathBuf,
    pub final_name: String,
    pub rows: u64,
    pub bytes: u64,
    pub blake3: String,
}

/// Counts and hashes everything that goes to the file.
struct HashingFile {
    inner: BufWriter<File>,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The column of a dataset kind that holds encoded images (JPEG, PNG, WebP, ...), as
/// fetched or ingested: written without compression. Raw pixel columns (a sample's
/// `image_patches`) compress well and keep zstd.
pub fn encoded_image_column(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Image => Some(m6_schemas::image::BYTES),
        Kind::Pair => Some(m6_schemas::pair::IMAGE_BYTES),
        _ => None,
    }
}

pub struct ShardWriter {
    dir: PathBuf,
    kind: Kind,
    prefix: String,
    limits: ShardLimits,
    current: Option<(ArrowWriter<HashingFile>, PathBuf, String, u64)>,
    seq: u32,
    done: Vec<WrittenShard>,
}

impl ShardWriter {
    /// `prefix` makes names unique per task: shards are `part-<prefix>-<seq>.parquet`.
    pub fn new(dir: &Path, kind: Kind, prefix: &str, limits: ShardLimits) -> Self {
        ShardWriter { dir: dir.to_path_buf(), kind, prefix: prefix.to_string(), limits, current: None, seq: 0, done: vec![] }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn final_name(prefix: &str, seq: u32) -> String {
        format!("part-{prefix}-{seq:05}.parquet")
    }

    pub fn tmp_name(prefix: &str, seq: u32) -> String {
        format!(".tmp-{prefix}-{seq:05}.parquet")
    }

    fn open(&mut self) -> Result<()> {
        let final_name = Self::final_name(&self.prefix, self.seq);
        let tmp = self.dir.join(Self::tmp_name(&self.prefix, self.seq));
        self.seq += 1;
        let file = File::create(&tmp).at(&tmp)?;
        let sink = HashingFile { inner: BufWriter::with_capacity(1 << 20, file), hasher: blake3::Hasher::new(), bytes: 0 };
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(self.limits.zstd_level).map_err(|e| Error::parquet(&tmp, e))?))
            // Row groups are cut by size below; this only caps pathological tiny rows.
            .set_max_row_group_row_count(Some(1 << 20))
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_created_by("m6corpus".to_string());
        if let Some(col) = encoded_image_column(self.kind) {
            // Encoded JPEG/PNG/WebP is already entropy-coded: zstd cost ingest a third
            // of its CPU and filter a tenth (520 q90 JPEGs) to make distinct photos
            // about 1% smaller (6-7% on scikit-image's PNGs and on upscaled JPEGs with
            // default Huffman tables). Every image is rewritten by ingest, dedup and
            // filter, each paying again, so the column is stored plain; no dictionary
            // (values are large and distinct) and no min/max statistics (nobody prunes
            // on image bytes).
            let path = parquet::schema::types::ColumnPath::from(col);
            props = props
                .set_column_compression(path.clone(), Compression::UNCOMPRESSED)
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_statistics_enabled(path, EnabledStatistics::None);
        }
        let props = props.build();
        let w = ArrowWriter::try_new(sink, self.kind.schema(), Some(props)).map_err(|e| Error::parquet(&tmp, e))?;
        self.current = Some((w, tmp, final_name, 0));
        Ok(())
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.current.is_none() {
            self.open()?;
        }
        let (w, tmp, _, rows) = self.current.as_mut().unwrap();
        self.kind.check(&batch.schema()).map_err(|e| Error::schema(tmp.clone(), e))?;
        w.write(batch).map_err(|e| Error::parquet(tmp.clone(), e))?;
        *rows += batch.num_rows() as u64;
        if w.in_progress_size() >= self.limits.row_group_bytes {
            w.flush().map_err(|e| Error::parquet(tmp.clone(), e))?;
        }
        let written = w.bytes_written() as u64 + w.in_progress_size() as u64;
        if written >= self.limits.shard_bytes {
            self.close_current()?;
        }
        Ok(())
    }

    fn close_current(&mut self) -> Result<()> {
        if let Some((w, tmp, final_name, rows)) = self.current.take() {
            let mut sink = w.into_inner().map_err(|e| Error::parquet(&tmp, e))?;
            sink.flush().at(&tmp)?;
            let file = sink.inner.into_inner().map_err(|e| Error::io(&tmp, e.into_error()))?;
            file.sync_all().at(&tmp)?;
            self.done.push(WrittenShard { tmp_path: tmp, final_name, rows, bytes: sink.bytes, blake3: sink.hasher.finalize().to_hex().to_string() });
        }
        Ok(())
    }

    /// Closes the open shard and returns every shard written, in order.
    pub fn finish(mut self) -> Result<Vec<WrittenShard>> {
        self.close_current()?;
        Ok(std::mem::take(&mut self.done))
    }

    /// Removes whatever this writer wrote; used when a task fails.
    pub fn abort(mut self) {
        if let Some((_, tmp, _, _)) = self.current.take() {
            let _ = fs::remove_file(tmp);
        }
        for s in self.done.drain(..) {
            let _ = fs::remove_file(s.tmp_path);
        }
    }
}
