//! The crawl of one seed list, in rounds: a round is up to `round_size` frontier
//! items (queued links first, then the next seeds). Up to `rounds_in_flight` rounds
//! are fetched at once, each item's outcome journaled as it lands; rounds are written
//! and committed in order, each as soon as all its items are in, so one slow server
//! holds back its own round's commit, not the fetching of the rounds after it.
//!
//! The order of events is fixed (it does not depend on timing), which is what lets a
//! killed crawl resume onto the same rounds: when round r is written its links join
//! the queue, the next round is selected, the state (first uncommitted round, the
//! rounds selected from there on, queue, seed cursor, done-set length) is saved, round
//! r is committed, and only then does the new round start fetching. Links found in
//! round r are thus selected from round r + `rounds_in_flight` on. An image several
//! pages show is fetched once, by whichever page's fetch reaches it first, but joins
//! the done-set when written, after the first page in write order that shows it, so
//! where its rows land does not depend on timing either.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use arrow::array::Array;
use futures_util::FutureExt;
use m6_pipeline::rounds::Rounds;
use m6_pipeline::work::WorkDir;
use m6_pipeline::{BoxError, Counters, OutputSpec, Task, TaskOutput};
use m6_schemas::{Image, Kind, Page};
use url::Url;

use crate::fetch::{kind, now_ms, Fetched, Fetcher};
use crate::journal::{journal_path, AheadRound, ROUND_TAG, ImageMeta, Journal, Outcome, PageMeta, QItem, RoundItem, State};
use crate::partition::{partition_of_host, SplitPlan, CRAWL_WORK};
use crate::seeds::SeedItem;
use crate::{html, images, urls, CrawlConfig, CrawlStage, OutCtx, IMAGES, SOURCE};

/// What the fetch tasks share (they run on the stage's runtime, apart from the
/// thread that writes and commits rounds).
pub struct Worker {
    pub cfg: CrawlConfig,
    pub fetcher: Fetcher,
}

type Seen = Arc<Mutex<HashSet<u128>>>;

/// Images being fetched or fetched by items not yet written: URL key -> (round, item
/// index) of the item that fetched it. An image several pages show is fetched once, by
/// whichever page reached it first (timing); its rows follow the first of those pages
/// in write order (no timing), taken from the fetching item's journal record when that
/// is another item. Lock order: this map, then `Seen`.
type Claimed = Arc<Mutex<HashMap<u128, (u64, u32)>>>;

/// A selected round whose items are being fetched.
struct Flight {
    round: u64,
    ahead: AheadRound,
    journal: Arc<Mutex<Journal>>,
    jpath: PathBuf,
    /// (item index, payload offset, payload length) of each journaled item.
    entries: Vec<(u32, u64, u64)>,
    /// Items not journaled yet, fetched once the round is launched.
    to_fetch: Vec<u32>,
    t0: Instant,
}

impl Flight {
    /// Opens (or creates) the round's journal and takes what it already holds: a
    /// record counts only if it is for the same item of the same round, and the images
    /// it fetched are claimed by it again.
    fn open(dir: &Path, round: u64, ahead: AheadRound, claimed: &Claimed) -> Result<Flight, BoxError> {
        let jpath = journal_path(dir, round);
        let (journal, index, replayed) = Journal::open(&jpath).map_err(|e| format!("{}: {e}", jpath.display()))?;
        let mut entries = vec![];
        let mut have = HashSet::new();
        {
            let mut claimed = claimed.lock().unwrap();
            for (o, e) in replayed.iter().zip(index.entries) {
                if ahead.items.get(o.idx as usize).is_some_and(|it| it.url() == o.url) && have.insert(o.idx) {
                    for c in &o.claims {
                        if let Ok(k) = u128::from_str_radix(c, 16) {
                            claimed.entry(k).or_insert((round, o.idx));
                        }
                    }
                    entries.push(e);
                }
            }
        }
        if !have.is_empty() {
            tracing::info!(round, replayed = have.len(), "replaying journaled fetches");
        }
        let to_fetch = (0..ahead.items.len() as u32).filter(|i| !have.contains(i)).collect();
        Ok(Flight { round, ahead, journal: Arc::new(Mutex::new(journal)), jpath, entries, to_fetch, t0: Instant::now() })
    }

    fn done(&self) -> bool {
        self.entries.len() == self.ahead.items.len()
    }
}

/// (round, item index, where its journal record landed or why it could not be journaled)
type Landed = (u64, u32, Result<(u64, u64), String>);

pub(crate) fn run_task(stage: &CrawlStage, ctx: &OutCtx, task: &Task, plan: &SplitPlan, part: u32) -> Result<Counters, BoxError> {
    let input = task.inputs.first().ok_or("crawl task without a seed file")?;
    let dir = ctx.output.join(CRAWL_WORK).join(&task.id);
    if !dir.exists() && !plan.has_seeds(&ctx.output, part) {
        // No seed of this run is on a host of this partition.
        return Ok(Counters::default());
    }
    let mut st = State::load(&dir, &ctx.output, &task.id)?;
    st.partition = Some((part, plan.parts));
    // Earlier crawls of this partition into this output: a fresh task takes their
    // done-set, and every task their stored images' rounds (below).
    let siblings = sibling_tasks(&ctx.output, &task.id, part, plan.parts)?;
    if st.round == 0 && st.ahead.is_empty() && st.seed_cursor == 0 && st.seen.is_empty() {
        inherit_done_set(&ctx.output, &siblings, &mut st)?;
    }
    let mut seeds = plan.seeds(&ctx.output, part);
    for _ in 0..st.seed_cursor {
        if seeds.next().is_none() {
            break;
        }
    }
    if st.round > 0 {
        tracing::info!(seeds = %input.label, round = st.round, queued = st.queue.len(), done = st.seen.len(), "resuming crawl");
    }
    let cfg = &stage.cfg;
    let spec = OutputSpec::new(Kind::Page).with_side(IMAGES, Kind::Image);
    let rounds = Rounds::new(&ctx.output, spec.clone(), ctx.limits, &task.id, ROUND_TAG, vec![input.label.clone()]);
    // Where the images already stored lie: the rounds of earlier crawls of this
    // partition into this output, then this task's own committed rounds (a resume).
    let mut stored = Stored::default();
    for (name, _) in &siblings {
        stored.load(&Rounds::new(&ctx.output, spec.clone(), ctx.limits, &name, ROUND_TAG, vec![]), None)?;
    }
    stored.load(&rounds, Some(st.round))?;
    let seen: Seen = Arc::new(Mutex::new(std::mem::take(&mut st.seen)));
    let claimed: Claimed = Arc::default();
    let mut flights: VecDeque<Flight> = VecDeque::new();
    let resumed = std::mem::take(&mut st.ahead);
    // A fresh crawl (or a state without selected rounds) selects its first rounds now;
    // a resumed one continues with the rounds its state had selected, and selects
    // more only after writing a round, as the uninterrupted run did.
    let fresh = resumed.is_empty();
    for (i, a) in resumed.into_iter().enumerate() {
        flights.push_back(Flight::open(&dir, st.round + i as u64, a, &claimed)?);
    }
    if fresh {
        top_up(cfg, &mut st, &mut *seeds, &seen, &claimed, &mut flights, &dir)?;
    }

    let (tx, rx) = mpsc::channel::<Landed>();
    // Dropping the set (on an error return) aborts the fetches still running.
    let mut tasks = tokio::task::JoinSet::new();
    for f in flights.iter_mut() {
        launch(stage, f, &seen, &claimed, &tx, &mut tasks);
    }
    let mut total = Counters::default();
    while let Some(front) = flights.front() {
        if !front.done() {
            let (round, idx, r) = rx.recv().map_err(|_| "crawl: fetch tasks ended without reporting")?;
            let f = flights.iter_mut().find(|f| f.round == round).ok_or("crawl: a fetch reported for a round not in flight")?;
            match r {
                Ok((off, len)) => f.entries.push((idx, off, len)),
                Err(e) => return Err(format!("{}: {e}", f.jpath.display()).into()),
            }
            while tasks.try_join_next().is_some() {}
            continue;
        }
        let mut f = flights.pop_front().expect("front exists");
        let round = f.round;
        let journal = f.journal.lock().unwrap();
        journal.sync().map_err(|e| format!("{}: {e}", f.jpath.display()))?;
        f.entries.sort_unstable();
        let mut tout = rounds.begin(round)?;
        tout.counters.bump("duplicate_seed", f.ahead.dup_seeds);
        if f.ahead.other_partition > 0 {
            tout.counters.bump("link.other_partition", f.ahead.other_partition);
        }
        let here = stored.round(rounds.id(round));
        let mut refers: std::collections::BTreeSet<String> = Default::default();
        let written = (|| -> Result<(), BoxError> {
            for &(_, off, len) in &f.entries {
                let o = journal.read(off, len).map_err(|e| format!("{}: {e}", f.jpath.display()))?;
                // An image this item shows but another fetched: that item's rows, from
                // its journal record (waiting for it to land if it is still fetching).
                let mut borrow = |owner: (u64, u32), k: u128| -> Result<Option<Embedded>, BoxError> {
                    let rec = if owner.0 == round {
                        let &(_, off, len) = f.entries.iter().find(|e| e.0 == owner.1).ok_or("crawl: an image's fetching item is not journaled")?;
                        journal.read(off, len).map_err(|e| format!("{}: {e}", f.jpath.display()))?
                    } else {
                        loop {
                            let g = flights.iter().find(|g| g.round == owner.0).ok_or("crawl: an image's fetching item is not in flight")?;
                            if let Some(&(_, off, len)) = g.entries.iter().find(|e| e.0 == owner.1) {
                                break g.journal.lock().unwrap().read(off, len).map_err(|e| format!("{}: {e}", g.jpath.display()))?;
                            }
                            let (r, idx, landed) = rx.recv().map_err(|_| "crawl: fetch tasks ended without reporting")?;
                            let g = flights.iter_mut().find(|g| g.round == r).ok_or("crawl: a fetch reported for a round not in flight")?;
                            match landed {
                                Ok((off, len)) => g.entries.push((idx, off, len)),
                                Err(e) => return Err(format!("{}: {e}", g.jpath.display()).into()),
                            }
                        }
                    };
                    Ok(take_embedded(rec, k))
                };
                let mut at = Located { stored: &mut stored, here, refers: &mut refers };
                write_outcome(&mut tout, o, &mut st, &seen, &claimed, &mut borrow, &mut at)?;
            }
            Ok(())
        })();
        drop(journal);
        if let Err(e) = written {
            tout.abort();
            return Err(e);
        }
        st.round = round + 1;
        let new = top_up(cfg, &mut st, &mut *seeds, &seen, &claimed, &mut flights, &dir)?;
        st.ahead = flights.iter().map(|f| f.ahead.clone()).collect();
        // The next state goes down before the commit record: if a kill lands between
        // the two, the state is ignored (its round is not committed) and the round is
        // rebuilt from the journal, with nothing fetched again.
        st.save(&dir, &task.id)?;
        let refers: Vec<String> = refers.into_iter().collect();
        let c = rounds.commit(round, tout, f.t0, &refers)?;
        tracing::info!(seeds = %input.label, round, items = f.ahead.items.len(), rows = c.rows_out, queued = st.queue.len(), in_flight = flights.len(), "crawl round committed");
        total.add(&c);
        st.prune(&dir);
        let n = flights.len();
        for f in flights.iter_mut().skip(n - new) {
            launch(stage, f, &seen, &claimed, &tx, &mut tasks);
        }
    }
    Ok(total)
}

/// What marks a crawl task's folder as the crawl of one host partition.
#[derive(serde::Serialize, serde::Deserialize, PartialEq)]
struct PartMark {
    part: u32,
    parts: u32,
}

/// The other crawl tasks of partition `part` of `parts` in this output (earlier crawls
/// from other seed lists): name and work folder. Marks this task's folder as one of
/// them first.
fn sibling_tasks(output: &Path, task: &str, part: u32, parts: u32) -> Result<Vec<(String, PathBuf)>, BoxError> {
    let work = WorkDir::new(output, CRAWL_WORK);
    let root = work.root().to_path_buf();
    let mark = PartMark { part, parts };
    let own = root.join(task);
    work.write_atomic(&own.join("part.json"), &serde_json::to_vec(&mark).expect("mark serialises")).map_err(|e| e.to_string())?;
    Ok(work
        .subdirs(&root)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|name| (name.clone(), root.join(name)))
        .filter(|(name, p)| name != task && work.read(&p.join("part.json")).ok().flatten().and_then(|b| serde_json::from_slice::<PartMark>(&b).ok()).is_some_and(|m| m == mark))
        .collect())
}

/// Which round wrote what a page may show again as an image: URL key -> round id (an
/// index into `rounds`), for every stored image and every failed fetch. An image is
/// fetched and written once, by the first round that shows it; a later round whose
/// pages show it names that round in its shards' `refers_to`, so extract reads that
/// round's `images` shards (and, for redirects and failures, its page rows) with the
/// pages.
#[derive(Default)]
struct Stored {
    rounds: Vec<String>,
    index: HashMap<String, u32>,
    at: HashMap<u128, u32>,
}

impl Stored {
    fn round(&mut self, id: String) -> u32 {
        if let Some(&i) = self.index.get(&id) {
            return i;
        }
        let i = self.rounds.len() as u32;
        self.index.insert(id.clone(), i);
        self.rounds.push(id);
        i
    }

    /// Reads back the stored images and failed fetches of `rounds`' committed rounds
    /// (the `url` column of their `images` shards; `url` and `error_kind` of their page
    /// shards): `0..upto`, or with `None` every round up to the first not committed (an
    /// earlier crawl's task). Shards a manifest lists are checked against their
    /// checksum before they are read (the whole file, once per process), so this costs
    /// about one read of what those rounds wrote, once per task start.
    fn load(&mut self, rounds: &Rounds, upto: Option<u64>) -> Result<(), BoxError> {
        use m6_schemas::{column, image, page, Str};
        let mut r = 0u64;
        while upto.is_none_or(|u| r < u) {
            if upto.is_none() && !rounds.is_committed(r) {
                break;
            }
            let here = self.round(rounds.id(r));
            for (side, kind, cols) in [(IMAGES, Kind::Image, &[image::URL][..]), ("", Kind::Page, &[page::URL, page::ERROR_KIND][..])] {
                for path in rounds.shards(r, side)? {
                    for batch in m6_pipeline::read_parquet_columns(&path, Some(kind), 4096, Some(cols))? {
                        let batch = batch.map_err(|e| format!("{}: {e}", path.display()))?;
                        let url: &Str = column(&batch, cols[0])?;
                        let failed: Option<&Str> = cols.get(1).map(|c| column(&batch, c)).transpose()?;
                        for i in (0..batch.num_rows()).filter(|i| url.is_valid(*i) && failed.is_none_or(|f| f.is_valid(*i))) {
                            self.at.entry(urls::key_of(url.value(i))).or_insert(here);
                        }
                    }
                }
            }
            r += 1;
        }
        Ok(())
    }
}

/// What [`write_outcome`] needs to know about where shown images are stored: the
/// round being written (`here`), and the earlier rounds its pages point into.
struct Located<'a> {
    stored: &'a mut Stored,
    here: u32,
    refers: &'a mut std::collections::BTreeSet<String>,
}

/// One done-set per output: a new task of a partition (a later crawl into the same
/// output, from other seed lists) starts from the committed done-sets of the earlier
/// tasks of that partition, so a URL they fetched is not fetched again.
fn inherit_done_set(output: &Path, siblings: &[(String, PathBuf)], st: &mut State) -> Result<(), BoxError> {
    let mut inherited = 0u64;
    for (name, p) in siblings {
        for k in State::committed_keys(p, output, name)? {
            if st.seen.insert(k) {
                if let Some(l) = st.seen_log.as_mut() {
                    l.push(k);
                }
                inherited += 1;
            }
        }
    }
    if inherited > 0 {
        tracing::info!(partition = ?st.partition, urls = inherited, "done-set carried over from earlier crawls into this output");
    }
    Ok(())
}

/// Selects rounds until `rounds_in_flight` are selected or nothing is left to
/// select; returns how many it added.
#[allow(clippy::too_many_arguments)]
fn top_up(cfg: &CrawlConfig, st: &mut State, seeds: &mut dyn Iterator<Item = SeedItem>, seen: &Seen, claimed: &Claimed, flights: &mut VecDeque<Flight>, dir: &Path) -> Result<usize, BoxError> {
    let mut added = 0;
    while flights.len() < cfg.rounds_in_flight.max(1) {
        let ahead = select(cfg, st, seeds, seen);
        if ahead.items.is_empty() {
            break;
        }
        let round = flights.back().map_or(st.round, |f| f.round + 1);
        flights.push_back(Flight::open(dir, round, ahead, claimed)?);
        added += 1;
    }
    Ok(added)
}

/// Starts fetching a round's items on the stage's runtime; each reports on `tx`
/// once its outcome is journaled.
fn launch(stage: &CrawlStage, f: &mut Flight, seen: &Seen, claimed: &Claimed, tx: &mpsc::Sender<Landed>, tasks: &mut tokio::task::JoinSet<()>) {
    let items = Arc::new(f.ahead.items.clone());
    for idx in std::mem::take(&mut f.to_fetch) {
        let (work, seen, claimed, journal, tx, items, round) = (stage.work.clone(), seen.clone(), claimed.clone(), f.journal.clone(), tx.clone(), items.clone(), f.round);
        tasks.spawn_on(
            async move {
                let item = &items[idx as usize];
                let landed = match std::panic::AssertUnwindSafe(process_item(&work, (round, idx), item, &seen, &claimed)).catch_unwind().await {
                    Ok(o) => {
                        let rec = o.encode();
                        drop(o);
                        journal.lock().unwrap().append_record(&rec).map_err(|e| e.to_string())
                    }
                    Err(_) => Err(format!("crawling {} panicked", item.url())),
                };
                let _ = tx.send((round, idx, landed));
            },
            stage.rt.handle(),
        );
    }
}

/// The next round's items: queued links first (breadth first), then the next seeds.
/// Seeds are claimed in the done-set (and its log) as they are selected.
fn select(cfg: &CrawlConfig, st: &mut State, seeds: &mut dyn Iterator<Item = SeedItem>, seen: &Seen) -> AheadRound {
    let mut items = vec![];
    let mut dups = 0;
    let mut other = 0;
    while items.len() < cfg.round_size {
        match st.queue.pop_front() {
            // A host of another partition belongs to another process's politeness.
            Some(q) if st.partition.is_some_and(|(p, n)| Url::parse(&q.url).is_ok_and(|u| partition_of_host(u.host_str().unwrap_or(""), n) != p)) => other += 1,
            Some(q) => items.push(RoundItem::Fetch(q)),
            None => break,
        }
    }
    let mut seen = seen.lock().unwrap();
    while items.len() < cfg.round_size {
        let Some(s) = seeds.next() else { break };
        st.seed_cursor += 1;
        match s {
            Err((place, msg)) => items.push(RoundItem::Invalid { url: place, msg, caption: None }),
            Ok(seed) => match urls::normalise(&seed.url, None, cfg.sort_query) {
                Err(e) => items.push(RoundItem::Invalid { url: seed.url, msg: format!("{}: {e}", seed.place), caption: seed.caption }),
                Ok(u) => {
                    let k = urls::key(&u);
                    if seen.insert(k) {
                        if let Some(l) = st.seen_log.as_mut() {
                            l.push(k);
                        }
                        items.push(RoundItem::Fetch(QItem { url: u.to_string(), depth: 0, caption: seed.caption }));
                    } else {
                        dups += 1;
                    }
                }
            },
        }
    }
    AheadRound { items, dup_seeds: dups, other_partition: other }
}

fn page_meta(url: &str, depth: u16, caption: Option<String>, f: Fetched) -> (PageMeta, Option<Vec<u8>>) {
    let (error_kind, error) = match f.error {
        Some((k, m)) => (Some(k.to_string()), Some(m)),
        None => (None, None),
    };
    let meta = PageMeta {
        url: url.to_string(),
        final_url: f.final_url,
        status: f.status,
        headers: f.headers,
        content_type: f.content_type,
        body_len: f.body.as_ref().map(|b| b.len() as u64),
        fetch_time: f.fetch_time,
        depth,
        error_kind,
        error,
        caption,
    };
    (meta, f.body)
}

fn fail(meta: &mut PageMeta, body: &mut Option<Vec<u8>>, k: &str, msg: String) {
    meta.error_kind = Some(k.to_string());
    meta.error = Some(msg);
    meta.body_len = None;
    *body = None;
}

async fn decode(stage: &Worker, bytes: Vec<u8>) -> (Vec<u8>, Result<images::Decoded, String>) {
    let max_side = stage.cfg.resize_max_side;
    // Decoding and resizing are CPU work: off the I/O threads.
    match tokio::task::spawn_blocking(move || {
        let d = images::decode(&bytes, max_side);
        (bytes, d)
    })
    .await
    {
        Ok(r) => r,
        Err(e) => (vec![], Err(format!("image decoder panicked: {e}"))),
    }
}

/// Adds the image row for a fetched image response, or marks the page row failed.
async fn image_row(stage: &Worker, o: &mut Outcome, meta: &mut PageMeta, body: &mut Option<Vec<u8>>, page_url: Option<&str>) {
    let ct = meta.content_type.clone().unwrap_or_default().to_ascii_lowercase();
    if !ct.starts_with("image/") {
        let at = page_url.map(|p| format!(" (embedded in {p})")).unwrap_or_default();
        fail(meta, body, kind::NOT_IMAGE, format!("{}{at} is `{ct}`, not an image", meta.url));
        return;
    }
    let Some(bytes) = body.take() else { return };
    let (bytes, d) = decode(stage, bytes).await;
    match d {
        Ok(d) => {
            let stored = d.bytes.unwrap_or_else(|| bytes.clone());
            o.images.push(ImageMeta {
                url: meta.url.clone(),
                page_url: page_url.map(str::to_string),
                source_id: Page::make_id(&meta.url, Some(&bytes)),
                bytes_len: stored.len() as u64,
                width: d.width,
                height: d.height,
                format: d.format,
            });
            o.image_bytes.push(stored);
            *body = Some(bytes);
        }
        Err(e) => fail(meta, body, kind::BAD_IMAGE, format!("{}: {e}", meta.url)),
    }
}

fn link_allowed(cfg: &CrawlConfig, link: &Url, page: &Url) -> bool {
    let host = link.host_str().unwrap_or("");
    if cfg.allowed_domains.is_empty() {
        Some(host) == page.host_str()
    } else {
        cfg.allowed_domains.iter().any(|d| urls::in_domain(host, d))
    }
}

async fn process_item(stage: &Worker, (round, idx): (u64, u32), item: &RoundItem, seen: &Mutex<HashSet<u128>>, claimed: &Mutex<HashMap<u128, (u64, u32)>>) -> Outcome {
    let cfg = &stage.cfg;
    let mut o = Outcome { idx, url: item.url().to_string(), ..Default::default() };
    let q = match item {
        RoundItem::Invalid { url, msg, caption } => {
            o.pages.push(PageMeta {
                url: url.clone(),
                fetch_time: now_ms(),
                error_kind: Some(kind::INVALID_URL.into()),
                error: Some(msg.clone()),
                caption: caption.clone(),
                ..Default::default()
            });
            o.page_bodies.push(None);
            return o;
        }
        RoundItem::Fetch(q) => q,
    };
    let u = match Url::parse(&q.url) {
        Ok(u) => u,
        Err(e) => {
            o.pages.push(PageMeta { url: q.url.clone(), fetch_time: now_ms(), error_kind: Some(kind::INVALID_URL.into()), error: Some(format!("{}: {e}", q.url)), ..Default::default() });
            o.page_bodies.push(None);
            return o;
        }
    };
    let f = stage.fetcher.fetch(&u, false).await;
    let (mut meta, mut body) = page_meta(&q.url, q.depth, q.caption.clone(), f);
    let mut embedded: Vec<(PageMeta, Option<Vec<u8>>)> = vec![];
    if meta.error_kind.is_none() {
        let ct = meta.content_type.clone().unwrap_or_default().to_ascii_lowercase();
        if ct.starts_with("image/") {
            image_row(stage, &mut o, &mut meta, &mut body, None).await;
        } else if ct.starts_with("text/html") || ct.starts_with("application/xhtml") {
            let info = html::scan(body.as_deref().unwrap_or_default(), &cfg.robots_token);
            if let Some(d) = info.robots.iter().find(|d| *d == "noai" || *d == "noindex") {
                let msg = format!("{}: <meta name=\"robots\" content=\"{d}\"> opts out; body not kept", q.url);
                fail(&mut meta, &mut body, kind::OPT_OUT, msg);
            } else {
                let page_url = meta.final_url.as_deref().and_then(|f| Url::parse(f).ok()).unwrap_or_else(|| u.clone());
                let base = info.base.as_deref().and_then(|b| page_url.join(b).ok()).unwrap_or_else(|| page_url.clone());
                let nofollow = info.robots.iter().any(|d| d == "nofollow" || d == "none");
                if !nofollow && q.depth < cfg.max_depth {
                    let mut local = HashSet::new();
                    for l in &info.links {
                        if let Ok(n) = urls::normalise(l, Some(&base), cfg.sort_query) {
                            if link_allowed(cfg, &n, &page_url) && local.insert(urls::key(&n)) {
                                o.links.push((n.to_string(), q.depth + 1));
                            }
                        }
                    }
                }
                if cfg.fetch_images {
                    // Which images the page shows is a fact of the page (the cap counts
                    // them all); of those, this item fetches the ones no item has
                    // fetched or written yet.
                    let mut targets = vec![];
                    let mut shown = HashSet::new();
                    for s in &info.images {
                        if o.shown.len() >= cfg.max_images_per_page {
                            break;
                        }
                        let Ok(n) = urls::normalise(s, Some(&base), cfg.sort_query) else { continue };
                        let k = urls::key(&n);
                        if !shown.insert(k) {
                            continue;
                        }
                        o.shown.push(format!("{k:032x}"));
                        let mut c = claimed.lock().unwrap();
                        if !c.contains_key(&k) && !seen.lock().unwrap().contains(&k) {
                            c.insert(k, (round, idx));
                            o.claims.push(format!("{k:032x}"));
                            targets.push(n);
                        }
                    }
                    let page_str = page_url.to_string();
                    o.page_url = Some(page_str.clone());
                    let fetched = futures_util::future::join_all(targets.iter().map(|iu| stage.fetcher.fetch(iu, true))).await;
                    for (iu, f) in targets.iter().zip(fetched) {
                        let (mut im, mut ib) = page_meta(iu.as_str(), q.depth.saturating_add(1), None, f);
                        if im.error_kind.is_none() {
                            image_row(stage, &mut o, &mut im, &mut ib, Some(&page_str)).await;
                        }
                        embedded.push((im, ib));
                    }
                }
            }
        }
    }
    meta.body_len = body.as_ref().map(|b| b.len() as u64);
    o.pages.push(meta);
    o.page_bodies.push(body);
    for (m, b) in embedded {
        o.pages.push(PageMeta { body_len: b.as_ref().map(|b| b.len() as u64), ..m });
        o.page_bodies.push(b);
    }
    o
}

/// One embedded image's rows: its page row (and body), its image row (and bytes) when
/// it decoded, and the page it was fetched for.
struct Embedded {
    meta: PageMeta,
    body: Option<Vec<u8>>,
    image: Option<(ImageMeta, Vec<u8>)>,
    page_url: Option<String>,
}

/// Takes image `k`'s rows out of the record of the item that fetched it.
fn take_embedded(mut o: Outcome, k: u128) -> Option<Embedded> {
    let hex = format!("{k:032x}");
    let i = o.claims.iter().position(|c| *c == hex)?;
    // pages[0] is the item's own row, then one row per claimed image, in claim order.
    let meta = std::mem::take(o.pages.get_mut(1 + i)?);
    let body = o.page_bodies.get_mut(1 + i).and_then(Option::take);
    let image = o.images.iter().position(|m| m.url == meta.url).map(|j| (o.images[j].clone(), std::mem::take(&mut o.image_bytes[j])));
    Some(Embedded { meta, body, image, page_url: o.page_url })
}

/// An image's rows as the rows of another page that shows it.
fn restamp(mut e: Embedded, depth: u16, page_url: Option<&str>) -> Embedded {
    e.meta.depth = depth;
    if let (Some(err), Some(old), Some(new)) = (e.meta.error.as_mut(), e.page_url.as_deref(), page_url) {
        *err = err.replace(&format!("(embedded in {old})"), &format!("(embedded in {new})"));
    }
    if let Some((img, _)) = e.image.as_mut() {
        img.page_url = page_url.map(str::to_string);
    }
    e
}

/// Writes one item's rows (page row then the rows of the images it shows that no
/// earlier item wrote, one batch) and queues its links. Images (like links) join the
/// done-set here, in write order, so which page an image follows does not depend on
/// which fetch reached it first; `borrow` gets an image another item fetched.
fn write_outcome(
    tout: &mut TaskOutput,
    o: Outcome,
    st: &mut State,
    seen: &Seen,
    claimed: &Claimed,
    borrow: &mut dyn FnMut((u64, u32), u128) -> Result<Option<Embedded>, BoxError>,
    at: &mut Located,
) -> Result<(), BoxError> {
    let keys = |v: &[String]| -> Vec<u128> { v.iter().filter_map(|c| u128::from_str_radix(c, 16).ok()).collect() };
    let claims = keys(&o.claims);
    // A record from before `shown` existed: the images it fetched itself.
    let shown = if o.shown.is_empty() { claims.clone() } else { keys(&o.shown) };
    let mut rows = o.pages.into_iter().zip(o.page_bodies);
    let page = rows.next().ok_or("crawl: an outcome without its page row")?;
    let mut own: Vec<Option<(PageMeta, Option<Vec<u8>>)>> = rows.map(Some).collect();
    let mut own_images: HashMap<String, (ImageMeta, Vec<u8>)> = o.images.into_iter().zip(o.image_bytes).map(|(m, b)| (m.url.clone(), (m, b))).collect();
    let depth = page.0.depth.saturating_add(1);
    // An item that is itself an image (a seed or link to one) has its own image row.
    let mut imgs_out: Vec<(ImageMeta, Vec<u8>)> = own_images.remove(&page.0.url).into_iter().collect();
    let mut rows = vec![page];
    for k in shown {
        // Only this thread adds to the done-set while rounds are written.
        if seen.lock().unwrap().contains(&k) {
            // Written after an earlier item, or a page URL of this crawl: this item's
            // own copy (if it fetched one) is dropped, and its claim with it.
            if claims.contains(&k) {
                claimed.lock().unwrap().remove(&k);
            }
            // Stored (or failed) in an earlier round: this round's pages point into it.
            if let Some(&r) = at.stored.at.get(&k).filter(|r| **r != at.here) {
                at.refers.insert(at.stored.rounds[r as usize].clone());
            }
            continue;
        }
        let owner = claimed.lock().unwrap().get(&k).copied();
        let e = match claims.iter().position(|c| *c == k) {
            Some(i) => own.get_mut(i).and_then(Option::take).map(|(meta, body)| {
                let image = own_images.remove(&meta.url);
                Embedded { meta, body, image, page_url: None }
            }),
            None => match owner {
                Some(owner) => borrow(owner, k)?.map(|e| restamp(e, depth, o.page_url.as_deref())),
                None => None,
            },
        };
        let Some(e) = e else { continue };
        seen.lock().unwrap().insert(k);
        if let Some(l) = st.seen_log.as_mut() {
            l.push(k);
        }
        claimed.lock().unwrap().remove(&k);
        rows.push((e.meta, e.body));
        imgs_out.extend(e.image);
    }
    // An image is stored once, in its `images` row (written in this same task): its
    // page row keeps the id made from the fetched bytes, which is the image row's
    // `source_id`, and no body. Keeping both would double the crawl's largest bytes.
    let in_images: HashSet<&str> = imgs_out.iter().map(|(m, _)| m.url.as_str()).collect();
    let mut pages = Vec::with_capacity(rows.len());
    let mut bytes_in = 0u64;
    for (m, b) in rows {
        match &m.error_kind {
            Some(k) => tout.counters.bump(&format!("error.{k}"), 1),
            None => tout.counters.bump("fetched", 1),
        }
        bytes_in += b.as_ref().map_or(0, |b| b.len() as u64);
        let id = Page::make_id(&m.url, b.as_deref());
        let b = if m.error_kind.is_none() && in_images.contains(m.url.as_str()) { None } else { b };
        pages.push(Page {
            id,
            url: m.url,
            final_url: m.final_url,
            status: m.status,
            headers: m.headers,
            content_type: m.content_type,
            body: b,
            fetch_time: m.fetch_time,
            source: SOURCE.to_string(),
            depth: m.depth,
            error_kind: m.error_kind,
            error: m.error,
            caption: m.caption,
        });
    }
    tout.count_in(1, bytes_in);
    tout.write_rows(&pages)?;
    // A failed fetch is where a later page showing that URL learns why it has no pair.
    for p in pages.iter().filter(|p| p.error_kind.is_some()) {
        at.stored.at.entry(urls::key_of(&p.url)).or_insert(at.here);
    }
    drop(pages);
    let imgs: Vec<Image> = imgs_out
        .into_iter()
        .map(|(m, bytes)| Image {
            id: Image::make_id(&bytes),
            url: Some(m.url),
            page_url: m.page_url,
            source: SOURCE.to_string(),
            source_id: Some(m.source_id),
            bytes,
            width: m.width,
            height: m.height,
            format: m.format,
            signals: Default::default(),
        })
        .collect();
    tout.write_side_rows(IMAGES, &imgs)?;
    for img in &imgs {
        if let Some(u) = &img.url {
            at.stored.at.entry(urls::key_of(u)).or_insert(at.here);
        }
    }
    let mut seen = seen.lock().unwrap();
    for (l, depth) in o.links {
        if let Ok(u) = Url::parse(&l) {
            let k = urls::key(&u);
            if seen.insert(k) {
                if let Some(log) = st.seen_log.as_mut() {
                    log.push(k);
                }
                st.queue.push_back(QItem { url: l, depth, caption: None });
            }
        }
    }
    Ok(())
}
