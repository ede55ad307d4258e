//! Crawling past one machine: the work is partitioned by host, not by seed file.
//!
//! Every seed URL belongs to one of `host_partitions` partitions, chosen by a hash of
//! its host's registrable domain (the public suffix list's "eTLD+1": `news.sina.com.cn`
//! and `www.sina.com.cn` share `sina.com.cn`; an IP address is its own domain). One
//! partition is one crawl task, and the runner gives each task to exactly one of the
//! `--task-count` processes, so a host is only ever crawled by one process: its
//! per-host concurrency, delay, robots.txt and `Crawl-delay` hold however many machines
//! crawl, and robots.txt is fetched once per host.
//!
//! Getting seeds to their partition is a split phase, itself spread over the
//! processes: the seed files are cut into chunks (text files by byte range,
//! `seed_chunk_mb` each, so a 100 M-URL list is many chunks; Parquet files by runs of
//! whole row groups of about that size; CSV files whole), each chunk is routed into per-partition fragment files under
//! `_crawl/split/<plan>/`, and a partition task reads its fragments in seed-file order.
//! Chunks are claimed with file locks (a process killed mid-chunk releases its lock and
//! another process redoes the chunk), and every process waits until all chunks are
//! split before it crawls. A URL listed in two seed files lands in one partition, whose
//! done-set sees both, so it is fetched once.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use m6_pipeline::work::WorkDir;
use serde::{Deserialize, Serialize};

use crate::seeds::{self, Seed, SeedItem};

/// The crawl's work folder in its output: seed partitions, per-task journals and states.
pub const CRAWL_WORK: &str = "_crawl";

/// The longest seed-list line read (a URL, a TAB and a caption); longer lines are
/// reported, not read.
pub const MAX_SEED_LINE: usize = 64 << 10;

/// Consumes the rest of a line through its newline, holding none of it; returns how
/// many bytes, and whether a newline ended it (not the end of the file).
fn skip_line(r: &mut impl BufRead) -> std::io::Result<(u64, bool)> {
    let mut n = 0u64;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok((n, false));
        }
        match memchr_newline(buf) {
            Some(i) => {
                r.consume(i + 1);
                return Ok((n + i as u64 + 1, true));
            }
            None => {
                let l = buf.len();
                r.consume(l);
                n += l as u64;
            }
        }
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// The registrable domain of `host` (lower-case): the public suffix plus one label,
/// the host itself for IP addresses, single labels and names that are a public suffix.
pub fn registrable_domain(host: &str) -> String {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if h.starts_with('[') || h.parse::<std::net::IpAddr>().is_ok() {
        return h;
    }
    match psl::domain_str(&h) {
        Some(d) => d.to_string(),
        None => h,
    }
}

/// The partition of a host: blake3 of its registrable domain, modulo `parts`.
pub fn partition_of_host(host: &str, parts: u32) -> u32 {
    hash_mod(registrable_domain(host).as_bytes(), parts)
}

fn hash_mod(b: &[u8], parts: u32) -> u32 {
    let h = blake3::hash(b);
    (u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap()) % parts.max(1) as u64) as u32
}

/// The partition a seed entry goes to: its host's, or (an entry that is not a usable
/// URL, recorded as such by whichever task gets it) a hash of its text.
pub fn partition_of_seed(raw_url: &str, parts: u32) -> u32 {
    match crate::urls::normalise(raw_url, None, false) {
        Ok(u) => partition_of_host(u.host_str().unwrap_or(""), parts),
        Err(_) => hash_mod(raw_url.as_bytes(), parts),
    }
}

/// One seed file of the crawl's input.
#[derive(Debug, Clone)]
pub struct SeedFile {
    pub path: PathBuf,
    pub label: String,
    /// blake3 of the content: the plan changes when a seed file does.
    pub hash: String,
    pub size: u64,
    /// Parquet seed lists: (rows, compressed bytes) of each row group, so that a large
    /// list is routed in chunks of whole row groups (empty for other formats).
    pub row_groups: Vec<(u64, u64)>,
}

impl SeedFile {
    /// Describes a seed file; reads a Parquet file's footer for its row groups.
    pub fn new(path: PathBuf, label: String, hash: String) -> Result<SeedFile, String> {
        let size = fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?.len();
        let mut row_groups = vec![];
        if ext_of(&path) == "parquet" {
            let f = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let meta = parquet::file::reader::SerializedFileReader::new(f).map_err(|e| format!("{}: not a readable Parquet file: {e}", path.display()))?;
            use parquet::file::reader::FileReader;
            row_groups = meta.metadata().row_groups().iter().map(|g| (g.num_rows().max(0) as u64, g.compressed_size().max(0) as u64)).collect();
        }
        Ok(SeedFile { path, label, hash, size, row_groups })
    }

    fn is_text(&self) -> bool {
        !matches!(ext_of(&self.path).as_str(), "parquet" | "csv" | "tsv")
    }
}

fn ext_of(p: &Path) -> String {
    p.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase()
}

/// A piece of one seed file routed by one process.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub file: usize,
    /// Byte range of a text file whose lines *start* in it; `None`: the whole file.
    pub range: Option<(u64, u64)>,
    /// Row groups `[start, end)` of a Parquet file (`None`: the whole file).
    pub row_groups: Option<(usize, usize)>,
}

/// The split of a set of seed files into host partitions.
#[derive(Debug, Clone)]
pub struct SplitPlan {
    /// blake3 of the seed files, the partition count and the chunking.
    pub id: String,
    pub parts: u32,
    pub files: Vec<SeedFile>,
    pub chunks: Vec<Chunk>,
}

/// One routed seed entry in a fragment file.
#[derive(Serialize, Deserialize)]
struct Entry {
    /// The URL as written in the seed list (normalised when selected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<String>,
    /// File and line/row, for error messages.
    p: String,
    /// Why the entry is not a seed (a CSV row that does not parse, a null URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<String>,
}

impl SplitPlan {
    pub fn new(files: Vec<SeedFile>, parts: u32, chunk_bytes: u64) -> SplitPlan {
        let chunk_bytes = chunk_bytes.max(1);
        let mut chunks = vec![];
        let mut h = blake3::Hasher::new();
        h.update(b"m6-crawl-split-v1");
        h.update(&parts.to_le_bytes());
        h.update(&chunk_bytes.to_le_bytes());
        for (i, f) in files.iter().enumerate() {
            h.update(f.label.as_bytes());
            h.update(b"\0");
            h.update(f.hash.as_bytes());
            if f.is_text() && f.size > chunk_bytes {
                let mut start = 0;
                while start < f.size {
                    let end = (start + chunk_bytes).min(f.size);
                    chunks.push(Chunk { file: i, range: Some((start, end)), row_groups: None });
                    start = end;
                }
            } else if f.row_groups.len() > 1 && f.size > chunk_bytes {
                // Whole row groups, about chunk_bytes of compressed data per chunk.
                let mut start = 0;
                let mut bytes = 0;
                for (g, (_, b)) in f.row_groups.iter().enumerate() {
                    bytes += b;
                    if bytes >= chunk_bytes || g + 1 == f.row_groups.len() {
                        chunks.push(Chunk { file: i, range: None, row_groups: Some((start, g + 1)) });
                        start = g + 1;
                        bytes = 0;
                    }
                }
            } else {
                chunks.push(Chunk { file: i, range: None, row_groups: None });
            }
        }
        SplitPlan { id: h.finalize().to_hex().to_string(), parts, files, chunks }
    }

    /// Where this plan's fragments live in an output.
    pub fn dir(&self, output: &Path) -> PathBuf {
        output.join(CRAWL_WORK).join("split").join(&self.id[..16])
    }

    /// The plan's folder as a pipeline work folder (every file operation on it goes
    /// through the pipeline: fsync before rename, folder sync, errors naming the file).
    fn work(&self, output: &Path) -> WorkDir {
        WorkDir::at(&self.dir(output))
    }

    fn part_dir(&self, output: &Path, part: u32) -> PathBuf {
        self.dir(output).join(format!("p{part:05}"))
    }

    fn done_path(&self, output: &Path, k: usize) -> PathBuf {
        self.dir(output).join("done").join(format!("c{k:06}"))
    }

    /// Splits every chunk not yet split, sharing the work with the other processes
    /// (this process first takes the chunks `k % task_count == task_index`, then any
    /// left), and returns once every chunk is split.
    pub fn run(&self, output: &Path, task_index: usize, task_count: usize) -> Result<(), String> {
        let dir = self.dir(output);
        let work = self.work(output);
        let s = |e: m6_pipeline::Error| e.to_string();
        for sub in ["done", "locks"] {
            work.ensure_dir(sub).map_err(s)?;
        }
        let n = self.chunks.len();
        let count = task_count.max(1);
        let mut order: Vec<usize> = (0..n).filter(|k| k % count == task_index % count).collect();
        order.extend((0..n).filter(|k| k % count != task_index % count));
        // First pass: take free chunks; second pass: wait for the ones others hold
        // (a lock held by a killed process is released, and the chunk is redone here).
        for blocking in [false, true] {
            for &k in &order {
                if work.exists(&self.done_path(output, k)) {
                    continue;
                }
                let lp = dir.join("locks").join(format!("c{k:06}"));
                let _lock = if blocking {
                    if !work.exists(&self.done_path(output, k)) {
                        tracing::info!(chunk = k, "waiting for another process to split its seed chunk");
                    }
                    work.lock_wait(&lp).map_err(s)?
                } else {
                    match work.try_lock(&lp).map_err(s)? {
                        Some(l) => l,
                        None => continue,
                    }
                };
                if !work.exists(&self.done_path(output, k)) {
                    self.split_chunk(output, k)?;
                }
            }
        }
        Ok(())
    }

    /// The entries of one chunk, in file order.
    fn chunk_items(&self, k: usize) -> Result<Box<dyn Iterator<Item = SeedItem> + Send>, String> {
        let c = &self.chunks[k];
        let f = &self.files[c.file];
        if let Some((g0, g1)) = c.row_groups {
            return parquet_groups(f, g0, g1);
        }
        if !f.is_text() {
            return seeds::open(&f.path, 8192).map_err(|e| e.to_string());
        }
        let whole = c.range.is_none();
        let (start, end) = c.range.unwrap_or((0, u64::MAX));
        let file = File::open(&f.path).map_err(|e| format!("{}: {e}", f.path.display()))?;
        let mut r = BufReader::with_capacity(1 << 20, file);
        let mut pos = 0u64;
        let mut buf = Vec::new();
        if start > 0 {
            // A line belongs to the chunk its first byte is in: skip the one that began before.
            r.seek(SeekFrom::Start(start - 1)).map_err(|e| format!("{}: {e}", f.path.display()))?;
            pos = start - 1 + skip_line(&mut r).map_err(|e| format!("{}: {e}", f.path.display()))?.0;
        }
        let label = f.path.display().to_string();
        let mut line_no = 0u64;
        Ok(Box::new(std::iter::from_fn(move || loop {
            if pos >= end {
                return None;
            }
            buf.clear();
            let at = pos;
            // A seed line is read through a bounded buffer: a hostile seed list with a
            // gigabyte line costs no memory, only an error row.
            let n = match (&mut r).take(MAX_SEED_LINE as u64 + 1).read_until(b'\n', &mut buf) {
                Ok(0) => return None,
                Ok(n) => n,
                Err(e) => {
                    pos = end;
                    return Some(Err((format!("{label} byte {at}"), format!("{label} byte {at}: {e}"))));
                }
            };
            pos += n as u64;
            line_no += 1;
            // Line numbers need every line before: known when the file is one chunk.
            let place = if whole { format!("{label} line {line_no}") } else { format!("{label} byte {at}") };
            if n > MAX_SEED_LINE && buf.last() != Some(&b'\n') {
                let (skipped, newline) = match skip_line(&mut r) {
                    Ok(k) => k,
                    Err(e) => {
                        pos = end;
                        return Some(Err((place.clone(), format!("{place}: {e}"))));
                    }
                };
                pos += skipped;
                let len = n as u64 + skipped - u64::from(newline);
                return Some(Err((place.clone(), format!("{place}: seed line of {len} bytes is longer than {MAX_SEED_LINE} bytes; not a URL"))));
            }
            let Ok(l) = std::str::from_utf8(&buf) else {
                return Some(Err((place.clone(), format!("{place}: not UTF-8"))));
            };
            if let Some(item) = seeds::text_line(l, place) {
                return Some(Ok(item));
            }
        })))
    }

    fn split_chunk(&self, output: &Path, k: usize) -> Result<(), String> {
        let tmp_name = format!(".c{k:06}.tmp");
        let work = self.work(output);
        let s = |e: m6_pipeline::Error| e.to_string();
        let mut writers: HashMap<u32, BufWriter<File>> = HashMap::new();
        let mut entries = 0u64;
        for item in self.chunk_items(k)? {
            let (part, e) = match item {
                Ok(Seed { url, caption, place }) => (partition_of_seed(&url, self.parts), Entry { u: Some(url), c: caption, p: place, e: None }),
                Err((place, msg)) => (hash_mod(place.as_bytes(), self.parts), Entry { u: None, c: None, p: place, e: Some(msg) }),
            };
            let w = match writers.entry(part) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(work.create(&self.part_dir(output, part).join(&tmp_name)).map_err(s)?)
                }
            };
            let mut line = serde_json::to_vec(&e).expect("entry serialises");
            line.push(b'\n');
            w.write_all(&line).map_err(|e| format!("{}: {e}", self.part_dir(output, part).display()))?;
            entries += 1;
        }
        // Fragments become visible by rename, then the chunk's done marker: a kill
        // before the marker makes another run redo (and overwrite) the chunk.
        for (part, w) in writers {
            let d = self.part_dir(output, part);
            work.publish(w, &d.join(&tmp_name), &d.join(format!("c{k:06}.jsonl"))).map_err(s)?;
        }
        let done = self.done_path(output, k);
        work.write_atomic(&done, entries.to_string().as_bytes()).map_err(s)?;
        tracing::debug!(chunk = k, entries, "seed chunk split");
        Ok(())
    }

    /// Whether any chunk routed a seed entry to partition `part`.
    pub fn has_seeds(&self, output: &Path, part: u32) -> bool {
        let d = self.part_dir(output, part);
        let work = self.work(output);
        (0..self.chunks.len()).any(|k| work.exists(&d.join(format!("c{k:06}.jsonl"))))
    }

    /// The seed entries of partition `part`, in seed-file order.
    pub fn seeds(&self, output: &Path, part: u32) -> Box<dyn Iterator<Item = SeedItem> + Send> {
        let d = self.part_dir(output, part);
        let work = self.work(output);
        let files: Vec<PathBuf> = (0..self.chunks.len()).map(|k| d.join(format!("c{k:06}.jsonl"))).filter(|p| work.exists(p)).collect();
        Box::new(files.into_iter().flat_map(move |p| {
            let lines: Box<dyn Iterator<Item = SeedItem> + Send> = match work.reader(&p) {
                Err(e) => Box::new(std::iter::once(Err((p.display().to_string(), e.to_string())))),
                Ok(f) => {
                    let p2 = p.clone();
                    Box::new(f.lines().map(move |l| {
                        let l = l.map_err(|e| (p2.display().to_string(), format!("{}: {e}", p2.display())))?;
                        let e: Entry = serde_json::from_str(&l).map_err(|e| (p2.display().to_string(), format!("{}: damaged seed fragment: {e}", p2.display())))?;
                        match (e.u, e.e) {
                            (Some(url), None) => Ok(Seed { url, caption: e.c, place: e.p }),
                            (_, msg) => Err((e.p.clone(), msg.unwrap_or_else(|| format!("{}: no url", e.p)))),
                        }
                    }))
                }
            };
            lines
        }))
    }
}

/// The seeds of row groups `[g0, g1)` of a Parquet seed list (`url`, optional
/// `caption`), with the row numbers a whole-file read gives them.
fn parquet_groups(f: &SeedFile, g0: usize, g1: usize) -> Result<Box<dyn Iterator<Item = SeedItem> + Send>, String> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = File::open(&f.path).map_err(|e| format!("{}: {e}", f.path.display()))?;
    let label = f.path.display().to_string();
    let b = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| format!("{label}: {e}"))?;
    let reader = b.with_row_groups((g0..g1).collect()).with_batch_size(8192).build().map_err(|e| format!("{label}: {e}"))?;
    let mut row: u64 = f.row_groups[..g0].iter().map(|(r, _)| r).sum();
    Ok(Box::new(reader.flat_map(move |b| -> Vec<SeedItem> {
        let b = match b {
            Err(e) => return vec![Err((format!("{label}#batch"), format!("{label}: unreadable seed batch: {e}")))],
            Ok(b) => b,
        };
        let Some(urls) = seeds::strings(&b, m6_schemas::page::URL) else {
            return vec![Err((label.clone(), format!("{label}: Parquet seed list has no string `{}` column", m6_schemas::page::URL)))];
        };
        let caps = seeds::strings(&b, m6_schemas::page::CAPTION);
        urls.into_iter()
            .enumerate()
            .map(|(i, u)| {
                row += 1;
                let place = format!("{label} row {row}");
                let caption = caps.as_ref().and_then(|c| c[i].clone()).filter(|c| !c.is_empty());
                match u {
                    Some(url) => Ok(Seed { url, caption, place }),
                    None => Err((place.clone(), format!("{place}: null url"))),
                }
            })
            .collect()
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrable_domains() {
        assert_eq!(registrable_domain("news.sina.com.cn"), "sina.com.cn");
        assert_eq!(registrable_domain("WWW.Sina.com.cn."), "sina.com.cn");
        assert_eq!(registrable_domain("a.b.example.co.uk"), "example.co.uk");
        assert_eq!(registrable_domain("zh.wikipedia.org"), "wikipedia.org");
        assert_eq!(registrable_domain("127.0.0.3"), "127.0.0.3");
        assert_eq!(registrable_domain("[::1]"), "[::1]");
        assert_eq!(registrable_domain("localhost"), "localhost");
        assert_eq!(partition_of_host("www.sina.com.cn", 64), partition_of_host("news.sina.com.cn", 64));
        // IP hosts are spread too (different addresses, different domains).
        let parts: std::collections::HashSet<u32> = (1..=6).map(|i| partition_of_host(&format!("127.0.0.{i}"), 64)).collect();
        assert!(parts.len() > 1);
        // The end-to-end test crawls these six hosts with 12 partitions over 3
        // processes (4 partitions each): 5 distinct partitions cannot all be one process's.
        let twelve: std::collections::HashSet<u32> = (1..=6).map(|i| partition_of_host(&format!("127.0.0.{i}"), 12)).collect();
        assert!(twelve.len() >= 5, "{twelve:?}");
    }

    fn plan_of(d: &Path, name: &str, text: &str, chunk: u64) -> SplitPlan {
        let p = d.join(name);
        fs::write(&p, text).unwrap();
        let f = SeedFile::new(p, name.into(), blake3::hash(text.as_bytes()).to_hex().to_string()).unwrap();
        SplitPlan::new(vec![f], 4, chunk)
    }

    #[test]
    fn parquet_seed_lists_split_by_row_groups_keep_row_numbers() {
        use arrow::array::{ArrayRef, StringArray};
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.parquet");
        let urls: Vec<Option<String>> = (0..1000).map(|i| (i != 500).then(|| format!("http://h{}.example.org/{i}", i % 9))).collect();
        let caps: Vec<Option<String>> = (0..1000).map(|i| Some(format!("图{i}"))).collect();
        let batch = arrow::array::RecordBatch::try_from_iter([
            ("url", std::sync::Arc::new(StringArray::from(urls)) as ArrayRef),
            ("caption", std::sync::Arc::new(StringArray::from(caps)) as ArrayRef),
        ])
        .unwrap();
        let props = parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(100)).build();
        let mut w = parquet::arrow::ArrowWriter::try_new(File::create(&p).unwrap(), batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let f = SeedFile::new(p.clone(), "s.parquet".into(), "h".into()).unwrap();
        assert_eq!(f.row_groups.len(), 10);
        let whole = SplitPlan::new(vec![f.clone()], 3, 1 << 30);
        let cut = SplitPlan::new(vec![f], 3, 1);
        assert_eq!((whole.chunks.len(), cut.chunks.len()), (1, 10));
        let (o1, o2) = (d.path().join("o1"), d.path().join("o2"));
        whole.run(&o1, 0, 1).unwrap();
        cut.run(&o2, 2, 3).unwrap();
        let all = |p: &SplitPlan, o: &Path| -> Vec<Vec<String>> {
            (0..3).map(|part| p.seeds(o, part).map(|s| match s { Ok(s) => format!("{} {} {:?}", s.place, s.url, s.caption), Err((place, m)) => format!("{place} ERR {m}") }).collect()).collect()
        };
        let a = all(&whole, &o1);
        assert_eq!(a, all(&cut, &o2));
        assert_eq!(a.iter().map(Vec::len).sum::<usize>(), 1000);
        let flat: Vec<&String> = a.iter().flatten().collect();
        assert!(flat.iter().any(|l| l.contains("s.parquet row 501 ERR")), "the null url keeps its row number");
        assert!(flat.iter().any(|l| l.contains("s.parquet row 1000 http://h0.example.org/999 Some(\"图999\")")));
    }

    #[test]
    fn chunks_cover_every_line_once_and_partitions_keep_order() {
        let d = tempfile::tempdir().unwrap();
        let mut text = String::from("# seeds\n");
        for i in 0..300 {
            text.push_str(&format!("http://h{}.example.com/p/{i}\t标题{i}\n", i % 7));
            if i % 50 == 0 {
                text.push_str("\nnot a url\n");
            }
        }
        // A 200 KiB line is reported as an entry (not a seed) and costs no memory.
        text.push_str(&"x".repeat(200 << 10));
        text.push('\n');
        let whole = plan_of(d.path(), "a.txt", &text, 1 << 20);
        assert_eq!(whole.chunks.len(), 1);
        let cut = plan_of(d.path(), "a.txt", &text, 4001);
        assert!(cut.chunks.len() > 20);
        let (o1, o2) = (d.path().join("o1"), d.path().join("o2"));
        whole.run(&o1, 0, 1).unwrap();
        // Three "processes" in turn: each does its share, the last does what is left.
        cut.run(&o2, 1, 3).unwrap();
        cut.run(&o2, 0, 3).unwrap();
        let collect = |p: &SplitPlan, o: &Path| -> Vec<Vec<(String, Option<String>)>> {
            (0..4).map(|part| p.seeds(o, part).filter_map(|s| s.ok()).map(|s| (s.url, s.caption)).collect()).collect()
        };
        let a = collect(&whole, &o1);
        assert_eq!(a, collect(&cut, &o2), "chunking does not change what a partition reads, nor its order");
        assert_eq!(a.iter().map(Vec::len).sum::<usize>(), 306);
        let long: Vec<String> = (0..4).flat_map(|part| whole.seeds(&o1, part).filter_map(|s| s.err()).map(|(_, m)| m)).collect();
        assert_eq!(long.len(), 1, "{long:?}");
        assert!(long[0].contains("line 314: seed line of 204800 bytes"), "{long:?}");
        for (part, items) in a.iter().enumerate() {
            for (u, _) in items {
                assert_eq!(partition_of_seed(u, 4), part as u32);
            }
            let own: Vec<&String> = items.iter().map(|(u, _)| u).filter(|u| u.starts_with("http")).collect();
            let mut sorted = own.clone();
            sorted.sort_by_key(|u| u.rsplit('/').next().unwrap().parse::<u32>().unwrap());
            assert_eq!(own, sorted, "seed-file order within a partition");
        }
        // The whole file keeps line numbers; chunks name byte offsets.
        let places: Vec<String> = (0..4).flat_map(|part| whole.seeds(&o1, part).filter_map(|s| s.ok()).map(|s| s.place)).collect();
        assert!(places.iter().any(|p| p.ends_with("a.txt line 4")), "{:?}", &places[..3]);
        let places: Vec<String> = (0..4).flat_map(|part| cut.seeds(&o2, part).filter_map(|s| s.ok()).map(|s| s.place)).collect();
        assert!(places.iter().all(|p| p.contains(" byte ")));
    }
}
