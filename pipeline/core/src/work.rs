//! A stage's work folder inside its output dataset (dedup's `_work`): intermediate
//! files that processes of one job hand each other through the shared file system,
//! each unit's files published before the marker that says the unit is done.
//!
//! Stages name the files (their layouts are typed in `m6_schemas`); this module owns
//! how they reach the disk, so every one gets the same guarantees as the shards: a
//! published file was written in full and fsynced, renamed into place, and its folder
//! synced, so a marker never outlives, after a power cut, the data it vouches for;
//! and every I/O error names the file.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::manifest::{sync_dir, DatasetLock};

/// Buffer size of work-file writers and readers: work files are written and read
/// sequentially in large runs.
const BUF: usize = 1 << 20;

/// The work folder `OUTPUT/NAME`.
#[derive(Debug, Clone)]
pub struct WorkDir {
    root: PathBuf,
}

impl WorkDir {
    pub fn new(output: &Path, name: &str) -> Self {
        WorkDir { root: output.join(name) }
    }

    /// A work folder at `root` itself (a sub-folder of another work folder, such as one
    /// crawl task's state under `_crawl`).
    pub fn at(root: &Path) -> Self {
        WorkDir { root: root.to_path_buf() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/rel`.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    /// Creates `root/rel` (and the root).
    pub fn ensure_dir(&self, rel: impl AsRef<Path>) -> Result<()> {
        let d = self.path(rel);
        fs::create_dir_all(&d).at(&d)
    }

    /// The work folder's lock (the pipeline's folder lock): held while one process
    /// decides whether stale work is wiped, so processes starting together agree.
    pub fn lock(&self) -> Result<DatasetLock> {
        fs::create_dir_all(&self.root).at(&self.root)?;
        DatasetLock::acquire(&self.root)
    }

    /// Takes the exclusive lock on work file `path` (created if missing) if no other
    /// process holds it: `None` when one does. The lock goes with the returned value
    /// (and with a killed process), so a unit its holder never finished is redone.
    pub fn try_lock(&self, path: &Path) -> Result<Option<UnitLock>> {
        let f = self.lock_file(path)?;
        match f.try_lock() {
            Ok(()) => Ok(Some(UnitLock(f))),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(crate::Error::io(path, e)),
        }
    }

    /// Waits for the exclusive lock on work file `path`.
    pub fn lock_wait(&self, path: &Path) -> Result<UnitLock> {
        let f = self.lock_file(path)?;
        f.lock().at(path)?;
        Ok(UnitLock(f))
    }

    fn lock_file(&self, path: &Path) -> Result<File> {
        if let Some(d) = path.parent() {
            fs::create_dir_all(d).at(d)?;
        }
        fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).at(path)
    }

    /// A whole file, or `None` when it does not exist (a unit not done yet).
    pub fn read(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        fs::read(path).missing_ok(path)
    }

    /// Whether a file is there (a unit's marker or output).
    pub fn exists(&self, path: &Path) -> bool {
        path.is_file()
    }

    /// A file's size in bytes.
    pub fn len(&self, path: &Path) -> Result<u64> {
        Ok(fs::metadata(path).at(path)?.len())
    }

    /// A file opened for positional reads (`FileExt::read_exact_at`).
    pub fn open(&self, path: &Path) -> Result<File> {
        File::open(path).at(path)
    }

    /// An append-only log (a journal): created with its folder if missing, opened for
    /// reading and writing, never truncated here. The caller validates what is there,
    /// cuts a torn tail with `set_len` and appends; `sync_data` makes appends durable.
    pub fn open_log(&self, path: &Path) -> Result<File> {
        if let Some(d) = path.parent() {
            fs::create_dir_all(d).at(d)?;
        }
        fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path).at(path)
    }

    /// Names of the files directly in folder `dir`, sorted; none when it does not exist.
    pub fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let Some(rd) = fs::read_dir(dir).missing_ok(dir)? else {
            return Ok(vec![]);
        };
        let mut names = vec![];
        for e in rd {
            let e = e.at(dir)?;
            if let Some(n) = e.file_name().to_str() {
                names.push(n.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Folders directly in `dir` (names, sorted); none when it does not exist.
    pub fn subdirs(&self, dir: &Path) -> Result<Vec<String>> {
        Ok(self.list(dir)?.into_iter().filter(|n| dir.join(n).is_dir()).collect())
    }

    /// Starts a file written in one sequential pass under a temporary name `tmp` in
    /// its final folder (created if missing); [`WorkDir::publish`] puts it in place.
    pub fn create(&self, tmp: &Path) -> Result<BufWriter<File>> {
        if let Some(d) = tmp.parent() {
            fs::create_dir_all(d).at(d)?;
        }
        Ok(BufWriter::with_capacity(BUF, File::create(tmp).at(tmp)?))
    }

    /// Flushes and fsyncs a writer from [`WorkDir::create`], renames `tmp` to `dest`
    /// and syncs the folder.
    pub fn publish(&self, w: BufWriter<File>, tmp: &Path, dest: &Path) -> Result<()> {
        Staging::finish(w, tmp)?;
        fs::rename(tmp, dest).at(dest)?;
        if let Some(d) = dest.parent() {
            sync_dir(d);
        }
        Ok(())
    }

    /// A file opened for one sequential read.
    pub fn reader(&self, path: &Path) -> Result<BufReader<File>> {
        Ok(BufReader::with_capacity(BUF, File::open(path).at(path)?))
    }

    /// Writes a small file (a marker, a pairs file, a drop list) in one piece:
    /// temporary name, fsync, rename, folder sync.
    pub fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        crate::manifest::write_atomic(path, bytes)
    }

    /// A fresh private staging folder `root/rel` (what a killed earlier attempt left
    /// there is removed): large files are written there and published together.
    pub fn staging(&self, rel: impl AsRef<Path>) -> Result<Staging> {
        let dir = self.path(rel);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).at(&dir)?;
        Ok(Staging { dir })
    }

    /// Removes `root/rel` and everything in it; a missing folder is not an error.
    pub fn remove_dir(&self, rel: impl AsRef<Path>) -> Result<()> {
        let d = self.path(rel);
        fs::remove_dir_all(&d).missing_ok(&d).map(drop)
    }

    /// Removes one file; a missing file is not an error.
    pub fn remove_file(&self, path: &Path) -> Result<()> {
        fs::remove_file(path).missing_ok(path).map(drop)
    }

    /// Removes the whole work folder (once the output is complete).
    pub fn remove_all(&self) -> Result<()> {
        fs::remove_dir_all(&self.root).missing_ok(&self.root).map(drop)
    }
}

/// An exclusive lock on one work unit ([`WorkDir::try_lock`]), released on drop.
pub struct UnitLock(File);

impl Drop for UnitLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Files being written in a private folder, published into the work folder together.
pub struct Staging {
    dir: PathBuf,
}

impl Staging {
    /// Creates `NAME` in the staging folder for a buffered sequential write; returns the
    /// writer and the file's path (to name it in errors).
    pub fn create(&self, name: &str) -> Result<(BufWriter<File>, PathBuf)> {
        let p = self.dir.join(name);
        let f = File::create(&p).at(&p)?;
        Ok((BufWriter::with_capacity(BUF, f), p))
    }

    /// Flushes and fsyncs a finished writer from [`Staging::create`].
    pub fn finish(w: BufWriter<File>, path: &Path) -> Result<()> {
        let f = w.into_inner().map_err(|e| crate::Error::io(path, e.into_error()))?;
        f.sync_all().at(path)
    }

    /// Moves each staged file `(name, destination)` into place and syncs the folders,
    /// then removes the staging folder. Every file must have been through
    /// [`Staging::finish`]; the caller writes its done-marker only after this returns.
    pub fn publish(self, moves: &[(&str, PathBuf)]) -> Result<()> {
        let mut dirs: Vec<PathBuf> = vec![];
        for (name, dest) in moves {
            let src = self.dir.join(name);
            fs::rename(&src, dest).at(dest)?;
            if let Some(d) = dest.parent() {
                if !dirs.iter().any(|x| x == d) {
                    dirs.push(d.to_path_buf());
                }
            }
        }
        for d in &dirs {
            sync_dir(d);
        }
        let _ = fs::remove_dir(&self.dir);
        Ok(())
    }
}
