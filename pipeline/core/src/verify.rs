//! `m6corpus verify`: every shard the manifest lists exists, has the recorded size,
//! checksum and row count, and the dataset kind's schema; side datasets too.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::manifest::{CommitRecord, Manifest};

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub datasets: usize,
    pub shards: usize,
    pub rows: u64,
    pub bytes: u64,
    /// One line per bad shard, naming it.
    pub problems: Vec<String>,
    /// Files in a dataset folder that no manifest lists (left by a killed run; harmless).
    pub orphans: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

pub fn verify(dir: &Path) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    verify_into(dir, &mut report)?;
    Ok(report)
}

fn verify_into(dir: &Path, report: &mut VerifyReport) -> Result<()> {
    let m = Manifest::load(dir)?;
    report.datasets += 1;
    for s in &m.shards {
        report.shards += 1;
        let path = dir.join(&s.file);
        match check_shard(&path, &m, s.rows, s.bytes, &s.blake3) {
            Ok(()) => {
                report.rows += s.rows;
                report.bytes += s.bytes;
            }
            Err(e) => report.problems.push(e.to_string()),
        }
    }
    // A task committed after the last manifest rebuild is not an error, but a shard the
    // manifest lists that no commit record backs would be.
    if dir.join(crate::manifest::COMMITS).is_dir() {
        let commits = CommitRecord::load_all(dir)?;
        let committed: std::collections::HashSet<&str> = commits.iter().flat_map(|c| c.outputs.get("").into_iter().flatten().map(|s| s.file.as_str())).collect();
        for s in &m.shards {
            if !committed.contains(s.file.as_str()) {
                report.problems.push(format!("{}: listed in the manifest but no commit record holds it", dir.join(&s.file).display()));
            }
        }
    }
    let listed: std::collections::HashSet<&str> = m.shards.iter().map(|s| s.file.as_str()).collect();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".parquet") && !listed.contains(name.as_str()) {
            report.orphans.push(entry.path().display().to_string());
        }
    }
    for side in m.sides.keys() {
        verify_into(&dir.join(side), report)?;
    }
    Ok(())
}

fn check_shard(path: &PathBuf, m: &Manifest, rows: u64, bytes: u64, blake3: &str) -> Result<()> {
    let corrupt = |msg: String| Error::Corrupt { path: path.clone(), msg };
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() != bytes {
        return Err(corrupt(format!("size {} bytes, manifest says {bytes} (truncated or replaced)", meta.len())));
    }
    let mut hasher = blake3::Hasher::new();
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let got = hasher.finalize().to_hex().to_string();
    if got != blake3 {
        return Err(corrupt(format!("blake3 {got} does not match the manifest's {blake3}")));
    }
    let reader = SerializedFileReader::new(File::open(path).map_err(|e| Error::io(path, e))?).map_err(|e| Error::parquet(path, e))?;
    let n = reader.metadata().file_metadata().num_rows() as u64;
    if n != rows {
        return Err(corrupt(format!("{n} rows, manifest says {rows}")));
    }
    let schema = parquet::arrow::parquet_to_arrow_schema(reader.metadata().file_metadata().schema_descr(), reader.metadata().file_metadata().key_value_metadata())
        .map_err(|e| Error::parquet(path, e))?;
    m.kind.check(&schema).map_err(|e| Error::schema(path, e))?;
    Ok(())
}
