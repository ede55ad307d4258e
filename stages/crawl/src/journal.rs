//! Crash safety between round commits. Each fetched item's outcome is appended to
//! the round's journal the moment it completes, so a crawl killed mid-round replays
//! what it already received instead of fetching it again; the frontier state for
//! the next round is written (keyed by round number) before the round's commit.

use std::collections::{HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use m6_pipeline::manifest::write_atomic;
use m6_pipeline::CommitRecord;
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
    pub claims: Vec<String>,
    pub pages: Vec<PageMeta>,
    pub images: Vec<ImageMeta>,
    pub links: Vec<(String, u16)>,
    #[serde(skip)]
    pub page_bodies: Vec<Option<Vec<u8>>>,
    #[serde(skip)]
    pub image_bytes: Vec<Vec<u8>>,
}

impl Outcome {
    fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("outcome serialises");
        let mut payload = Vec::with_capacity(4 + json.len() + self.page_bodies.iter().flatten().map(Vec::len).sum::<usize>());
        payload.extend_from_slice(&(json.len() as u32).to_le_bytes());
        payload.extend_from_slice(&json);
        for b in self.page_bodies.iter().flatten() {
            payload.extend_from_slice(b);
        }
        for b in &self.image_bytes {
            payload.extend_from_slice(b);
        }
        let mut rec = Vec::with_capacity(payload.len() + 28);
        rec.extend_from_slice(MAGIC);
        rec.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        rec.extend_from_slice(&payload);
        rec.extend_from_slice(&blake3::hash(&payload).as_bytes()[..16]);
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
}

/// Where each complete record of a journal starts, by item index.
pub struct JournalIndex {
    pub entries: Vec<(u32, u64, u64)>,
}

impl Journal {
    /// Opens (creating) the journal, drops a torn tail left by a kill, and returns
    /// the records already there with the claims they made.
    pub fn open(path: &Path) -> std::io::Result<(Journal, JournalIndex, Vec<Outcome>)> {
        if let Some(d) = path.parent() {
            fs::create_dir_all(d)?;
        }
        let mut file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path)?;
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
        Ok((Journal { path: path.to_path_buf(), file }, JournalIndex { entries }, replayed))
    }

    /// Appends one outcome; returns (offset of payload, payload length).
    pub fn append(&mut self, o: &Outcome) -> std::io::Result<(u64, u64)> {
        let rec = o.encode();
        let off = self.file.seek(SeekFrom::End(0))?;
        self.file.write_all(&rec)?;
        Ok((off + 12, rec.len() as u64 - 28))
    }

    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    pub fn read(&self, off: u64, len: u64) -> std::io::Result<Outcome> {
        let mut f = File::open(&self.path)?;
        f.seek(SeekFrom::Start(off))?;
        let mut payload = vec![0u8; len as usize];
        f.read_exact(&mut payload)?;
        Outcome::decode(&payload).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: corrupt record at {off}", self.path.display())))
    }
}

/// A URL waiting in the frontier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QItem {
    pub url: String,
    pub depth: u16,
    pub caption: Option<String>,
}

/// The frontier and done-set at the start of a round.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub round: u64,
    /// Seed-list entries consumed so far.
    pub seed_cursor: u64,
    pub queue: VecDeque<QItem>,
    /// Keys (see `urls::key`) of every URL fetched or queued.
    pub seen: HashSet<u128>,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    task: String,
    round: u64,
    seed_cursor: u64,
    queue: Vec<QItem>,
    seen: Vec<String>,
}

pub fn round_id(task: &str, round: u64) -> String {
    m6_schemas::content_id(&[task.as_bytes(), b"crawl-round", &round.to_le_bytes()])
}

fn state_path(dir: &Path, round: u64) -> PathBuf {
    dir.join(format!("state-{round:08}.json"))
}

pub fn journal_path(dir: &Path, round: u64) -> PathBuf {
    dir.join(format!("journal-{round:08}.bin"))
}

impl State {
    /// The newest state whose previous round is committed (state r+1 is written just
    /// before round r's commit record, so a kill in between falls back to state r).
    pub fn load(dir: &Path, output: &Path, task: &str) -> Result<State, String> {
        let mut rounds: Vec<u64> = match fs::read_dir(dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix("state-")?.strip_suffix(".json")?.parse().ok()))
                .collect(),
            Err(_) => vec![],
        };
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        for r in rounds {
            let p = state_path(dir, r);
            if r > 0 && !CommitRecord::is_done(output, &round_id(task, r - 1)) {
                let _ = fs::remove_file(&p); // its round never committed
                continue;
            }
            let text = fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            let f: StateFile = serde_json::from_slice(&text).map_err(|e| format!("{}: unreadable crawl state: {e}", p.display()))?;
            let seen = f
                .seen
                .iter()
                .map(|h| u128::from_str_radix(h, 16).map_err(|e| format!("{}: bad key `{h}`: {e}", p.display())))
                .collect::<Result<_, _>>()?;
            return Ok(State { round: f.round, seed_cursor: f.seed_cursor, queue: f.queue.into(), seen });
        }
        Ok(State::default())
    }

    pub fn save(&self, dir: &Path, task: &str) -> m6_pipeline::Result<()> {
        let mut seen: Vec<String> = self.seen.iter().map(|k| format!("{k:032x}")).collect();
        seen.sort_unstable();
        let f = StateFile { task: task.to_string(), round: self.round, seed_cursor: self.seed_cursor, queue: self.queue.iter().cloned().collect(), seen };
        write_atomic(&state_path(dir, self.round), &serde_json::to_vec(&f).expect("state serialises"))
    }

    /// Removes the files of rounds before this state's.
    pub fn prune(&self, dir: &Path) {
        if self.round > 0 {
            let _ = fs::remove_file(state_path(dir, self.round - 1));
            let _ = fs::remove_file(journal_path(dir, self.round - 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
