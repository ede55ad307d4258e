//! Checksums on read: a shard listed in its dataset's manifest is hashed (blake3, the
//! checksum the writer recorded) before a reader decodes any of it, so a flipped bit
//! or a replaced file fails the reading stage with an error naming the shard instead
//! of flowing downstream and being laundered into a "verified" output.
//!
//! Why hash the whole file first rather than while decoding: Parquet readers seek
//! (footer first, column chunks by offset, projections skip columns), so the bytes a
//! decoder touches are neither all of the file nor in order. One sequential pass with
//! a 1 MiB buffer keeps memory bounded, runs at blake3's GB/s, and leaves the file in
//! the page cache for the decode that follows (`make bench` measures the cost).
//!
//! A shard is hashed once per process: a verified (path, size, mtime, inode) is
//! remembered, so a stage or the trainer that reopens a shard does not hash it again.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use crate::error::{Error, IoContext, Result};
use crate::manifest::{Manifest, MANIFEST};

/// A file's identity on disk: replacing or rewriting it changes one of these.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct Stamp {
    len: u64,
    mtime: Option<SystemTime>,
    ino: u64,
}

fn stamp(meta: &fs::Metadata) -> Stamp {
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let ino = 0;
    Stamp { len: meta.len(), mtime: meta.modified().ok(), ino }
}

/// What a manifest says about its shards, by file name: (bytes, blake3).
type Listing = Arc<HashMap<String, (u64, String)>>;

fn manifests() -> &'static Mutex<HashMap<PathBuf, (Stamp, Listing)>> {
    static M: OnceLock<Mutex<HashMap<PathBuf, (Stamp, Listing)>>> = OnceLock::new();
    M.get_or_init(Default::default)
}

fn verified() -> &'static Mutex<HashSet<(PathBuf, Stamp, String)>> {
    static V: OnceLock<Mutex<HashSet<(PathBuf, Stamp, String)>>> = OnceLock::new();
    V.get_or_init(Default::default)
}

/// The shard listing of the dataset in `dir`, or `None` when `dir` holds no manifest.
/// Cached per manifest version, so planning and reading thousands of shards parse
/// each manifest once.
fn listing(dir: &Path) -> Result<Option<Listing>> {
    let mpath = dir.join(MANIFEST);
    let Some(meta) = fs::metadata(&mpath).missing_ok(&mpath)? else {
        return Ok(None);
    };
    let st = stamp(&meta);
    if let Some((s, l)) = manifests().lock().unwrap().get(dir) {
        if *s == st {
            return Ok(Some(l.clone()));
        }
    }
    let m = Manifest::load(dir)?;
    let l: Listing = Arc::new(m.shards.into_iter().map(|s| (s.file, (s.bytes, s.blake3))).collect());
    manifests().lock().unwrap().insert(dir.to_path_buf(), (st, l.clone()));
    Ok(Some(l))
}

/// The size and blake3 the manifest beside `path` records for it: `Ok(None)` when the
/// file is not in a dataset folder (a work file, a seed list, a test fixture), an error
/// when it is in one but the manifest does not list it.
pub fn expected(path: &Path) -> Result<Option<(u64, String)>> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let Some(l) = listing(dir)? else { return Ok(None) };
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    if let Some(e) = l.get(&name) {
        return Ok(Some(e.clone()));
    }
    // Committed after the manifest's last rebuild (a reader of a dataset still being
    // written): the commit record has the checksum too.
    if let Some(e) = committed_entry(dir, &name)? {
        return Ok(Some(e));
    }
    Err(Error::Corrupt {
        path: path.to_path_buf(),
        msg: format!("not listed in {} nor in a commit record (a leftover or foreign file; its checksum cannot be checked)", dir.join(MANIFEST).display()),
    })
}

/// The entry for shard `name` in a commit record of the dataset in `dir` (whose
/// records are in `dir`, or for a side dataset in the main dataset's folder).
fn committed_entry(dir: &Path, name: &str) -> Result<Option<(u64, String)>> {
    let mut places = vec![(dir.to_path_buf(), String::new())];
    if let (Some(parent), Some(side)) = (dir.parent(), dir.file_name()) {
        places.push((parent.to_path_buf(), side.to_string_lossy().to_string()));
    }
    for (root, side) in places {
        if !root.join(crate::manifest::COMMITS).is_dir() {
            continue;
        }
        for c in crate::manifest::CommitRecord::load_all(&root)? {
            if let Some(e) = c.outputs.get(&side).and_then(|v| v.iter().find(|s| s.file == name)) {
                return Ok(Some((e.bytes, e.blake3.clone())));
            }
        }
    }
    Ok(None)
}

/// Checks a dataset shard against its manifest entry before it is read; a file outside
/// any dataset folder passes unchecked.
pub fn check_shard(path: &Path) -> Result<()> {
    match expected(path)? {
        Some((bytes, blake3)) => verify_file(path, bytes, &blake3),
        None => Ok(()),
    }
}

/// Hashes `path` and compares it with the recorded size and checksum; the error names
/// the file and says what differs.
pub fn verify_file(path: &Path, bytes: u64, blake3: &str) -> Result<()> {
    let meta = fs::metadata(path).at(path)?;
    let st = stamp(&meta);
    let corrupt = |msg: String| Error::Corrupt { path: path.to_path_buf(), msg };
    if st.len != bytes {
        return Err(corrupt(format!("size {} bytes, manifest says {bytes} (truncated or replaced); refusing to read it", st.len)));
    }
    let key = (path.to_path_buf(), st.clone(), blake3.to_string());
    if verified().lock().unwrap().contains(&key) {
        return Ok(());
    }
    let got = file_blake3(path)?;
    if got != blake3 {
        return Err(corrupt(format!("blake3 {got} does not match the manifest's {blake3} (the shard is corrupt); refusing to read it")));
    }
    verified().lock().unwrap().insert(key);
    Ok(())
}

/// [`file_blake3`], remembered per (path, size, mtime, inode) for the process, so a
/// raw input split into many tasks (one seed list, many chunks) is hashed once.
pub fn file_blake3_cached(path: &Path) -> Result<String> {
    static C: OnceLock<Mutex<HashMap<(PathBuf, Stamp), String>>> = OnceLock::new();
    let cache = C.get_or_init(Default::default);
    let st = stamp(&fs::metadata(path).at(path)?);
    let key = (path.to_path_buf(), st);
    if let Some(h) = cache.lock().unwrap().get(&key) {
        return Ok(h.clone());
    }
    let h = file_blake3(path)?;
    cache.lock().unwrap().insert(key, h.clone());
    Ok(h)
}

/// blake3 of a whole file, streamed through a 1 MiB buffer.
pub fn file_blake3(path: &Path) -> Result<String> {
    let mut f = File::open(path).at(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(path, e)),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_outside_datasets_pass_and_unlisted_files_inside_fail() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x.parquet");
        fs::write(&f, b"abc").unwrap();
        assert!(check_shard(&f).is_ok());
        Manifest::new(m6_schemas::Kind::Document).save(d.path()).unwrap();
        let e = check_shard(&f).unwrap_err().to_string();
        assert!(e.contains("x.parquet") && e.contains("not listed"), "{e}");
    }

    #[test]
    fn a_changed_byte_is_refused_by_name() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("s.parquet");
        fs::write(&f, b"hello world").unwrap();
        let h = file_blake3(&f).unwrap();
        verify_file(&f, 11, &h).unwrap();
        let g = d.path().join("t.parquet");
        fs::write(&g, b"hello_world").unwrap();
        let e = verify_file(&g, 11, &h).unwrap_err().to_string();
        assert!(e.contains("t.parquet") && e.contains("does not match"), "{e}");
        let e = verify_file(&f, 12, &h).unwrap_err().to_string();
        assert!(e.contains("size 11"), "{e}");
    }
}
