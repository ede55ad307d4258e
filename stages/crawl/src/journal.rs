//! Crash safety between round commits. Each fetched item's outcome is appended to
//! the round's journal the moment it completes, so a crawl killed mid-round replays
//! what it already received instead of fetching it again; the frontier state for
//! the next round is written (keyed by round number) before the round's commit.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use m6_pipeline::work::WorkDir;
use m6_pipeline::CommitRecord;

/// The work folder holding `path` (journals and logs live in a crawl task's folder).
fn work_of(path: &Path) -> WorkDir {
    WorkDir::at(path.parent().unwrap_or(Path::new(".")))
}

/// A pipeline I/O error (it names the file) where the journal's API speaks io::Error.
fn io_err(e: m6_pipeline::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"M6CJ";

/// One page row, minus its body (stored after the JSON in the journal record).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PageMeta {
    pub url: String,
    pub final_url: Option<String>,
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub body_len: Option<u64>,
    pub fetch_time: i64,
    pub depth: u16,
    pub error_kind: Option<String>,
    pub error: Option<String>,
    pub caption: Option<String>,
}

/// One image row, minus its bytes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageMeta {
    pub url: String,
    pub page_url: Option<String>,
    pub source_id: String,
    pub bytes_len: u64,
    pub width: u32,
    pub height: u32,
    pub format: String,
}

/// Everything one frontier item produced: its page row, the rows of the images it
/// embeds (fetched with it), the image rows, the URL keys it claimed, and its links.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub idx: u32,
    pub url: String,
    /// URL keys of the images this item fetched (claimed first, at fetch time).
    pub claims: Vec<String>,
    /// URL keys of every image the page shows, in page order, capped at
    /// `max_images_per_page`, whichever item fetched them: an image's rows follow the
    /// first item, in write order, that shows it. Empty in records written before
    /// (then `claims` stands for it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shown: Vec<String>,
    /// The URL embedded images are resolved against (an image row's `page_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_url: Option<String>,
    pub pages: Vec<PageMeta>,
    pub images: Vec<ImageMeta>,
    pub links: Vec<(String, u16)>,
    #[serde(skip)]
    pub page_bodies: Vec<Option<Vec<u8>>>,
    #[serde(skip)]
    pub image_bytes: Vec<Vec<u8>>,
}

impl Outcome {
    /// The journal record: magic, payload length, payload (JSON length, JSON,
    /// bodies, image bytes), 16 bytes of blake3 of the payload. Built in one buffer.
    pub fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("outcome serialises");
        let bodies = self.page_bodies.iter().flatten().chain(&self.image_bytes).map(Vec::len).sum::<usize>();
        let plen = 4 + json.len() + bodies;
        let mut rec = Vec::with_capacity(12 + plen + 16);
        rec.extend_from_slice(MAGIC);
        rec.extend_from_slice(&(plen as u64).to_le_bytes());
        rec.extend_from_slice(&(json.len() as u32).to_le_bytes());
        rec.extend_from_slice(&json);
        for b in self.page_bodies.iter().flatten().chain(&self.image_bytes) {
            rec.extend_from_slice(b);
        }
        let sum = blake3::hash(&rec[12..]);
        rec.extend_from_slice(&sum.as_bytes()[..16]);
        rec
    }

    fn decode(payload: &[u8]) -> Option<Outcome> {
        let jl = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?) as usize;
        let mut o: Outcome = serde_json::from_slice(payload.get(4..4 + jl)?).ok()?;
        let mut pos = 4 + jl;
        let mut take = |n: u64| -> Option<Vec<u8>> {
            let b = payload.get(pos..pos + n as usize)?.to_vec();
            pos += n as usize;
            Some(b)
        };
        let mut bodies = vec![];
        for p in &o.pages {
            bodies.push(match p.body_len {
                Some(n) => Some(take(n)?),
                None => None,
            });
        }
        let mut imgs = vec![];
        for i in &o.images {
            imgs.push(take(i.bytes_len)?);
        }
        o.page_bodies = bodies;
        o.image_bytes = imgs;
        Some(o)
    }
}

/// The append-only journal of one round.
pub struct Journal {
    path: PathBuf,
    file: File,
    end: u64,
}

/// Where each complete record of a journal starts, by item index.
pub struct JournalIndex {
    pub entries: Vec<(u32, u64, u64)>,
}

impl Journal {
    /// Opens (creating) the journal, drops a torn tail left by a kill, and returns
    /// the records already there with the claims they made.
    pub fn open(path: &Path) -> std::io::Result<(Journal, JournalIndex, Vec<Outcome>)> {
        let mut file = work_of(path).open_log(path).map_err(io_err)?;
        let mut entries = vec![];
        let mut replayed = vec![];
        let len = file.metadata()?.len();
        let mut good = 0u64;
        {
            let mut r = BufReader::new(&mut file);
            loop {
                let mut head = [0u8; 12];
                if good + 12 > len || r.read_exact(&mut head).is_err() || &head[..4] != MAGIC {
                    break;
                }
                let plen = u64::from_le_bytes(head[4..12].try_into().unwrap());
                if good + 12 + plen + 16 > len {
                    break;
                }
                let mut payload = vec![0u8; plen as usize];
                let mut sum = [0u8; 16];
                if r.read_exact(&mut payload).is_err() || r.read_exact(&mut sum).is_err() || blake3::hash(&payload).as_bytes()[..16] != sum {
                    break;
                }
                let Some(mut o) = Outcome::decode(&payload) else { break };
                entries.push((o.idx, good + 12, plen));
                // Only the metadata is kept in memory; bodies are re-read at round end.
                o.page_bodies.clear();
                o.image_bytes.clear();
                replayed.push(o);
                good += 12 + plen + 16;
            }
        }
        if good < len {
            file.set_len(good)?;
        }
        file.seek(SeekFrom::Start(good))?;
        Ok((Journal { path: path.to_path_buf(), file, end: good }, JournalIndex { entries }, replayed))
    }

    /// Appends one outcome; returns (offset of payload, payload length).
    pub fn append(&mut self, o: &Outcome) -> std::io::Result<(u64, u64)> {
        self.append_record(&o.encode())
    }

    /// Appends a record made by [`Outcome::encode`] (encode outside any lock).
    pub fn append_record(&mut self, rec: &[u8]) -> std::io::Result<(u64, u64)> {
        let off = self.end;
        if let Err(e) = self.file.write_all(rec) {
            // Whatever part landed is a torn tail: cut it so later records stay readable.
            let _ = self.file.set_len(off);
            let _ = self.file.seek(SeekFrom::Start(off));
            return Err(e);
        }
        self.end += rec.len() as u64;
        Ok((off + 12, rec.len() as u64 - 28))
    }

    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    pub fn read(&self, off: u64, len: u64) -> std::io::Result<Outcome> {
        use std::os::unix::fs::FileExt;
        let mut payload = vec![0u8; len as usize];
        self.file.read_exact_at(&mut payload, off)?;
        Outcome::decode(&payload).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: corrupt record at {off}", self.path.display())))
    }
}

/// One robots.txt answer worth keeping across runs: a 2xx body or a 4xx
/// ("no robots.txt": everything allowed). Failures (5xx, unreachable) are not kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobotsRecord {
    /// `scheme://host:port` the rules apply to.
    pub origin: String,
    /// When it was fetched, unix ms (the cache's age is counted from here).
    pub fetched_at: i64,
    pub status: u16,
    /// The body of a 2xx answer, as fetched (re-parsed on load, so a changed
    /// `robots_token` applies).
    pub body: Option<String>,
}

impl RobotsRecord {
    pub fn rules(&self, token: &str) -> crate::robots::Robots {
        match &self.body {
            Some(b) if (200..300).contains(&self.status) => crate::robots::Robots::parse(b, token),
            _ => crate::robots::Robots::allow_all(),
        }
    }
}

/// The robots.txt answers of an output's crawls, one JSON line per fetch, in
/// `_crawl/robots-<task index>.jsonl` (one writer per process of a `--task-count`
/// job; every process reads them all). Appended the moment robots.txt is fetched,
/// so a crawl killed mid-round does not fetch it again when resumed.
pub struct RobotsLog {
    path: PathBuf,
    file: std::sync::Mutex<File>,
}

impl RobotsLog {
    /// Opens this process's log (dropping a torn last line a kill left) and reads
    /// the records of every robots log under `dir`.
    pub fn open(dir: &Path, task_index: usize) -> std::io::Result<(RobotsLog, Vec<RobotsRecord>)> {
        let work = WorkDir::at(dir);
        let path = dir.join(format!("robots-{task_index}.jsonl"));
        let mut file = work.open_log(&path).map_err(io_err)?;
        let mut own = vec![];
        file.read_to_end(&mut own)?;
        let good = own.iter().rposition(|&c| c == b'\n').map_or(0, |p| p + 1);
        if good < own.len() {
            file.set_len(good as u64)?;
        }
        file.seek(SeekFrom::Start(good as u64))?;
        let mut records = vec![];
        let names: Vec<PathBuf> = work.list(dir).map_err(io_err)?.into_iter().filter(|n| n.starts_with("robots-") && n.ends_with(".jsonl")).map(|n| dir.join(n)).collect();
        for p in names {
            let text = if p == path { own[..good].to_vec() } else { work.read(&p).ok().flatten().unwrap_or_default() };
            // Unreadable lines (a torn tail in another process's log) only cost a refetch.
            records.extend(text.split(|&c| c == b'\n').filter_map(|l| serde_json::from_slice::<RobotsRecord>(l).ok()));
        }
        Ok((RobotsLog { path, file: std::sync::Mutex::new(file) }, records))
    }

    /// Appends one record in a single write.
    pub fn append(&self, r: &RobotsRecord) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(r).expect("robots record serialises");
        line.push(b'\n');
        self.file.lock().unwrap().write_all(&line).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))
    }
}

/// A URL waiting in the frontier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QItem {
    pub url: String,
    pub depth: u16,
    pub caption: Option<String>,
}

/// One entry of a round: a URL to fetch, or a seed-list entry that is not a
/// crawlable URL (recorded, never fetched).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RoundItem {
    Fetch(QItem),
    Invalid { url: String, msg: String, caption: Option<String> },
}

impl RoundItem {
    pub fn url(&self) -> &str {
        match self {
            RoundItem::Fetch(q) => &q.url,
            RoundItem::Invalid { url, .. } => url,
        }
    }
}

/// A round selected but not yet committed (its items are being fetched).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AheadRound {
    pub items: Vec<RoundItem>,
    /// Seed-list entries skipped as duplicates while selecting it (a counter of its commit).
    pub dup_seeds: u64,
    /// Queued links skipped because their host is in another host partition.
    #[serde(default)]
    pub other_partition: u64,
}

/// The crawl's position after a round commit: the first uncommitted round, the
/// rounds already selected from there on (fetched concurrently), the frontier, and
/// the done-set.
#[derive(Debug, Default)]
pub struct State {
    /// The first round not committed; `ahead[0]` is this round, when any.
    pub round: u64,
    pub ahead: Vec<AheadRound>,
    /// Seed-list entries consumed so far.
    pub seed_cursor: u64,
    pub queue: VecDeque<QItem>,
    /// Keys (see `urls::key`) of every URL fetched or queued.
    pub seen: HashSet<u128>,
    /// Where `seen` is persisted, one key at a time (not rewritten per round).
    pub seen_log: Option<SeenLog>,
    /// (partition, partition count) of the task: queued links on hosts of other
    /// partitions are not selected. Not persisted (the task id fixes it).
    pub partition: Option<(u32, u32)>,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    task: String,
    round: u64,
    seed_cursor: u64,
    queue: Vec<QItem>,
    /// The done-set as hex keys: only in state files of older versions, which
    /// rewrote it every round; now it lives in `seen.bin`, of which the first
    /// `seen_len` keys belong to this state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    seen: Vec<String>,
    #[serde(default)]
    seen_len: Option<u64>,
    #[serde(default)]
    ahead: Vec<AheadRound>,
}

/// The done-set on disk: 16-byte keys appended as they are claimed at points that do
/// not depend on timing (seeds when selected, links and images when their
/// round is written), made durable before each state save. A state names how many
/// keys it covers; keys past that (work that was never committed) are cut on load.
#[derive(Debug)]
pub struct SeenLog {
    path: PathBuf,
    file: File,
    len: u64,
    pending: Vec<u8>,
}

impl SeenLog {
    /// Opens `seen.bin` in `dir`, keeping (and returning) its first `keep` keys.
    pub fn open(dir: &Path, keep: u64) -> Result<(SeenLog, Vec<u128>), String> {
        let path = dir.join("seen.bin");
        let err = |e: std::io::Error| format!("{}: {e}", path.display());
        let mut file = WorkDir::at(dir).open_log(&path).map_err(|e| e.to_string())?;
        let have = file.metadata().map_err(err)?.len() / 16;
        if have < keep {
            return Err(format!("{}: holds {have} URL keys, the crawl state needs {keep}; the crawl state is damaged (delete {} to start over)", path.display(), dir.display()));
        }
        file.set_len(keep * 16).map_err(err)?;
        let mut keys = Vec::with_capacity(keep as usize);
        let mut r = BufReader::new(&mut file);
        let mut b = [0u8; 16];
        for _ in 0..keep {
            r.read_exact(&mut b).map_err(err)?;
            keys.push(u128::from_le_bytes(b));
        }
        drop(r);
        file.seek(SeekFrom::Start(keep * 16)).map_err(err)?;
        Ok((SeenLog { path, file, len: keep, pending: vec![] }, keys))
    }

    pub fn push(&mut self, k: u128) {
        self.pending.extend_from_slice(&k.to_le_bytes());
    }

    /// Writes and syncs the pushed keys; returns how many keys the log holds.
    pub fn flush(&mut self) -> Result<u64, String> {
        if !self.pending.is_empty() {
            let err = |e: std::io::Error| format!("{}: {e}", self.path.display());
            self.file.write_all(&self.pending).map_err(err)?;
            self.file.sync_data().map_err(err)?;
            self.len += self.pending.len() as u64 / 16;
            self.pending.clear();
        }
        Ok(self.len)
    }
}

pub fn round_id(task: &str, round: u64) -> String {
    m6_pipeline::rounds::round_id(task, ROUND_TAG, round)
}

/// What separates crawl round ids from other round-committing stages' (see
/// `m6_pipeline::rounds`); part of every round id, so it never changes.
pub const ROUND_TAG: &str = "crawl-round";

/// The rounds whose state files `dir` holds, newest first (none when it does not exist).
fn state_rounds_newest_first(dir: &Path) -> Vec<u64> {
    let names = WorkDir::at(dir).list(dir).unwrap_or_default();
    let mut rounds: Vec<u64> = names.iter().filter_map(|n| n.strip_prefix("state-")?.strip_suffix(".json")?.parse().ok()).collect();
    rounds.sort_unstable_by(|a, b| b.cmp(a));
    rounds
}

fn state_path(dir: &Path, round: u64) -> PathBuf {
    dir.join(format!("state-{round:08}.json"))
}

pub fn journal_path(dir: &Path, round: u64) -> PathBuf {
    dir.join(format!("journal-{round:08}.bin"))
}

impl State {
    /// The newest state whose previous round is committed (state r+1 is written just
    /// before round r's commit record, so a kill in between falls back to state r),
    /// with the done-set read back from `seen.bin`.
    pub fn load(dir: &Path, output: &Path, task: &str) -> Result<State, String> {
        let rounds = state_rounds_newest_first(dir);
        let work = WorkDir::at(dir);
        for r in rounds {
            let p = state_path(dir, r);
            if r > 0 && !CommitRecord::is_done(output, &round_id(task, r - 1)) {
                let _ = work.remove_file(&p); // its round never committed
                continue;
            }
            let text = work.read(&p).map_err(|e| e.to_string())?.ok_or_else(|| format!("{}: crawl state vanished while loading", p.display()))?;
            let f: StateFile = serde_json::from_slice(&text).map_err(|e| format!("{}: unreadable crawl state: {e}", p.display()))?;
            let legacy: Vec<u128> = f
                .seen
                .iter()
                .map(|h| u128::from_str_radix(h, 16).map_err(|e| format!("{}: bad key `{h}`: {e}", p.display())))
                .collect::<Result<_, _>>()?;
            let (mut log, keys) = SeenLog::open(dir, f.seen_len.unwrap_or(0))?;
            // A state of an older version: its keys move into the log at the next save.
            for k in &legacy {
                log.push(*k);
            }
            let seen = keys.into_iter().chain(legacy).collect();
            return Ok(State { round: f.round, ahead: f.ahead, seed_cursor: f.seed_cursor, queue: f.queue.into(), seen, seen_log: Some(log), partition: None });
        }
        let (log, _) = SeenLog::open(dir, 0)?;
        Ok(State { seen_log: Some(log), ..State::default() })
    }

    /// The done-set keys of another task's newest committed state, read without
    /// changing anything of that task (it may be running in another process).
    pub fn committed_keys(dir: &Path, output: &Path, task: &str) -> Result<Vec<u128>, String> {
        let rounds = state_rounds_newest_first(dir);
        let work = WorkDir::at(dir);
        for r in rounds {
            if r > 0 && !CommitRecord::is_done(output, &round_id(task, r - 1)) {
                continue;
            }
            let p = state_path(dir, r);
            let Ok(Some(text)) = work.read(&p) else { continue };
            let f: StateFile = serde_json::from_slice(&text).map_err(|e| format!("{}: unreadable crawl state: {e}", p.display()))?;
            let n = f.seen_len.unwrap_or(0) as usize;
            let path = dir.join("seen.bin");
            let bytes = work.read(&path).map_err(|e| e.to_string())?.unwrap_or_default();
            if bytes.len() < n * 16 {
                return Err(format!("{}: holds {} URL keys, its crawl state names {n}", path.display(), bytes.len() / 16));
            }
            let mut keys: Vec<u128> = bytes[..n * 16].chunks_exact(16).map(|c| u128::from_le_bytes(c.try_into().unwrap())).collect();
            keys.extend(f.seen.iter().filter_map(|h| u128::from_str_radix(h, 16).ok()));
            return Ok(keys);
        }
        Ok(vec![])
    }

    /// Makes the pushed done-set keys durable, then writes this state (atomically).
    pub fn save(&mut self, dir: &Path, task: &str) -> Result<(), String> {
        let seen_len = match self.seen_log.as_mut() {
            Some(l) => Some(l.flush()?),
            None => None,
        };
        let f = StateFile {
            task: task.to_string(),
            round: self.round,
            seed_cursor: self.seed_cursor,
            queue: self.queue.iter().cloned().collect(),
            seen: vec![],
            seen_len,
            ahead: self.ahead.clone(),
        };
        let p = state_path(dir, self.round);
        WorkDir::at(dir).write_atomic(&p, &serde_json::to_vec(&f).expect("state serialises")).map_err(|e| e.to_string())
    }

    /// Removes the files of rounds before this state's.
    pub fn prune(&self, dir: &Path) {
        if self.round > 0 {
            let work = WorkDir::at(dir);
            let _ = work.remove_file(&state_path(dir, self.round - 1));
            let _ = work.remove_file(&journal_path(dir, self.round - 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{self, OpenOptions};

    #[test]
    fn robots_log_survives_a_torn_line_and_reads_every_process() {
        let d = tempfile::tempdir().unwrap();
        let rec = |o: &str, body: Option<&str>| RobotsRecord { origin: o.into(), fetched_at: 7, status: if body.is_some() { 200 } else { 404 }, body: body.map(str::to_string) };
        {
            let (log, known) = RobotsLog::open(d.path(), 0).unwrap();
            assert!(known.is_empty());
            log.append(&rec("http://a:80", Some("User-agent: *\nDisallow: /x\nCrawl-delay: 2\n"))).unwrap();
            log.append(&rec("http://b:80", None)).unwrap();
        }
        // Another process's log, and a kill in the middle of our next line.
        RobotsLog::open(d.path(), 1).unwrap().0.append(&rec("http://c:80", None)).unwrap();
        let mut f = OpenOptions::new().append(true).open(d.path().join("robots-0.jsonl")).unwrap();
        f.write_all(b"{\"origin\":\"http://d:80\",\"fetch").unwrap();
        let (log, known) = RobotsLog::open(d.path(), 0).unwrap();
        assert_eq!(known.iter().map(|r| r.origin.as_str()).collect::<Vec<_>>(), vec!["http://a:80", "http://b:80", "http://c:80"]);
        let a = known[0].rules("m6corpus");
        assert!(!a.allowed("/x/1") && a.allowed("/y"));
        assert_eq!(a.crawl_delay, Some(2.0));
        assert!(known[1].rules("m6corpus").allowed("/x"));
        // The torn tail is gone, so the next record lands on a line of its own.
        log.append(&rec("http://e:80", None)).unwrap();
        let (_, again) = RobotsLog::open(d.path(), 0).unwrap();
        assert_eq!(again.len(), 4);
    }

    #[test]
    fn journal_roundtrip_and_torn_tail() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("j.bin");
        let o = Outcome {
            idx: 3,
            url: "http://a/".into(),
            claims: vec!["ab".into()],
            pages: vec![PageMeta { url: "http://a/".into(), body_len: Some(3), ..Default::default() }, PageMeta { url: "http://a/x.png".into(), ..Default::default() }],
            images: vec![ImageMeta { url: "http://a/i.png".into(), bytes_len: 2, ..Default::default() }],
            links: vec![("http://a/b".into(), 1)],
            page_bodies: vec![Some(b"abc".to_vec()), None],
            image_bytes: vec![b"xy".to_vec()],
            ..Default::default()
        };
        {
            let (mut j, idx, _) = Journal::open(&p).unwrap();
            assert!(idx.entries.is_empty());
            j.append(&o).unwrap();
            j.append(&Outcome { idx: 4, ..o.clone() }).unwrap();
        }
        // A kill mid-write leaves half a record.
        let full = fs::read(&p).unwrap();
        fs::write(&p, &full[..full.len() - 5]).unwrap();
        let (j, idx, replayed) = Journal::open(&p).unwrap();
        assert_eq!(idx.entries.len(), 1);
        assert_eq!(replayed[0].claims, vec!["ab".to_string()]);
        let (_, off, len) = idx.entries[0];
        let back = j.read(off, len).unwrap();
        assert_eq!(back.page_bodies, vec![Some(b"abc".to_vec()), None]);
        assert_eq!(back.image_bytes, vec![b"xy".to_vec()]);
        assert_eq!(back.links, o.links);
        assert!(fs::metadata(&p).unwrap().len() < full.len() as u64 / 2 + 1);
    }
}
