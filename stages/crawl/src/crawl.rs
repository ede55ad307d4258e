//! The crawl of one seed list, in rounds: take frontier items (queued links first,
//! then the next seeds), fetch them concurrently, journal each outcome as it lands,
//! then write the round's rows in item order, save the next frontier and commit.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::StreamExt;
use m6_pipeline::{BoxError, Counters, OutputSpec, Task, TaskOutput};
use m6_schemas::{Image, Kind, Page};
use url::Url;

use crate::fetch::{kind, now_ms, Fetched};
use crate::journal::{journal_path, round_id, ImageMeta, Journal, Outcome, PageMeta, QItem, State};
use crate::seeds::{self, SeedItem};
use crate::{html, images, urls, CrawlConfig, CrawlStage, OutCtx, IMAGES, SOURCE};

enum Item {
    Fetch(QItem),
    /// A seed-list entry that is not a crawlable URL: recorded, never fetched.
    Invalid { url: String, msg: String, caption: Option<String> },
}

impl Item {
    fn url(&self) -> &str {
        match self {
            Item::Fetch(q) => &q.url,
            Item::Invalid { url, .. } => url,
        }
    }
}

pub(crate) fn run_task(stage: &CrawlStage, ctx: &OutCtx, task: &Task) -> Result<Counters, BoxError> {
    let input = task.inputs.first().ok_or("crawl task without a seed file")?;
    let dir = ctx.output.join("_crawl").join(&task.id);
    let mut st = State::load(&dir, &ctx.output, &task.id)?;
    let mut seeds = seeds::open(&input.path, ctx.batch_rows)?;
    for _ in 0..st.seed_cursor {
        if seeds.next().is_none() {
            break;
        }
    }
    if st.round > 0 {
        tracing::info!(seeds = %input.label, round = st.round, queued = st.queue.len(), done = st.seen.len(), "resuming crawl");
    }
    let spec = OutputSpec::new(Kind::Page).with_side(IMAGES, Kind::Image);
    let mut total = Counters::default();
    loop {
        let t0 = Instant::now();
        let round = st.round;
        let sub = round_id(&task.id, round);
        let prefix = &sub[..16];
        clean_leftovers(&ctx.output, prefix)?;
        let (items, dup_seeds) = select(&stage.cfg, &mut st, &mut seeds);
        if items.is_empty() {
            break;
        }
        let jpath = journal_path(&dir, round);
        let (journal, index, replayed) = Journal::open(&jpath).map_err(|e| format!("{}: {e}", jpath.display()))?;
        let mut entries: Vec<(u32, u64, u64)> = vec![];
        let mut have = HashSet::new();
        for (o, e) in replayed.iter().zip(index.entries) {
            // A record is trusted only if it is for the same item of the same round.
            if items.get(o.idx as usize).is_some_and(|it| it.url() == o.url) && have.insert(o.idx) {
                for c in &o.claims {
                    if let Ok(k) = u128::from_str_radix(c, 16) {
                        st.seen.insert(k);
                    }
                }
                entries.push(e);
            }
        }
        if !have.is_empty() {
            tracing::info!(round, replayed = have.len(), "replaying journaled fetches");
        }
        let pending: Vec<(u32, &Item)> = items.iter().enumerate().map(|(i, it)| (i as u32, it)).filter(|(i, _)| !have.contains(i)).collect();
        let seen = Arc::new(Mutex::new(std::mem::take(&mut st.seen)));
        let journal = Mutex::new(journal);
        let index = Mutex::new(entries);
        let failure: Mutex<Option<String>> = Mutex::new(None);
        stage.rt.block_on(
            futures_util::stream::iter(pending).for_each_concurrent(None, |(idx, item)| {
                let seen = seen.clone();
                let (journal, index, failure, jpath) = (&journal, &index, &failure, &jpath);
                async move {
                    let o = process_item(stage, idx, item, &seen).await;
                    let r = journal.lock().unwrap().append(&o);
                    match r {
                        Ok((off, len)) => index.lock().unwrap().push((idx, off, len)),
                        Err(e) => {
                            failure.lock().unwrap().get_or_insert(format!("{}: {e}", jpath.display()));
                        }
                    }
                }
            }),
        );
        if let Some(e) = failure.into_inner().unwrap() {
            return Err(e.into());
        }
        st.seen = std::mem::take(&mut *seen.lock().unwrap());
        let journal = journal.into_inner().unwrap();
        journal.sync().map_err(|e| format!("{}: {e}", jpath.display()))?;
        let mut entries = index.into_inner().unwrap();
        entries.sort_unstable();
        debug_assert_eq!(entries.len(), items.len());

        let mut tout = TaskOutput::new(&ctx.output, &spec, prefix, ctx.limits);
        tout.counters.bump("duplicate_seed", dup_seeds);
        let written = (|| -> Result<(), BoxError> {
            for &(_, off, len) in &entries {
                let o = journal.read(off, len).map_err(|e| format!("{}: {e}", jpath.display()))?;
                write_outcome(&mut tout, o, &mut st)?;
            }
            Ok(())
        })();
        if let Err(e) = written {
            tout.abort();
            return Err(e);
        }
        st.round += 1;
        // The next state goes down before the commit record: if a kill lands between
        // the two, the state is ignored (its round is not committed) and the round is
        // rebuilt from the journal, with nothing fetched again.
        st.save(&dir, &task.id)?;
        let c = m6_pipeline::commit(&ctx.output, &sub, vec![input.label.clone()], tout, t0)?;
        tracing::info!(seeds = %input.label, round, items = items.len(), rows = c.rows_out, queued = st.queue.len(), "crawl round committed");
        total.add(&c);
        st.prune(&dir);
    }
    Ok(total)
}

/// Removes shards of an uncommitted round left by a killed run.
fn clean_leftovers(output: &Path, prefix: &str) -> Result<(), BoxError> {
    let part = format!("part-{prefix}-");
    let tmp = format!(".tmp-{prefix}-");
    for dir in [output.to_path_buf(), output.join(IMAGES)] {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&part) || name.starts_with(&tmp) {
                std::fs::remove_file(e.path()).map_err(|err| format!("{}: {err}", e.path().display()))?;
            }
        }
    }
    Ok(())
}

/// The round's items: queued links first (breadth first), then the next seeds.
fn select(cfg: &CrawlConfig, st: &mut State, seeds: &mut dyn Iterator<Item = SeedItem>) -> (Vec<Item>, u64) {
    let mut items = vec![];
    let mut dups = 0;
    while items.len() < cfg.round_size {
        match st.queue.pop_front() {
            Some(q) => items.push(Item::Fetch(q)),
            None => break,
        }
    }
    while items.len() < cfg.round_size {
        let Some(s) = seeds.next() else { break };
        st.seed_cursor += 1;
        match s {
            Err((place, msg)) => items.push(Item::Invalid { url: place, msg, caption: None }),
            Ok(seed) => match urls::normalise(&seed.url, None, cfg.sort_query) {
                Err(e) => items.push(Item::Invalid { url: seed.url, msg: format!("{}: {e}", seed.place), caption: seed.caption }),
                Ok(u) => {
                    if st.seen.insert(urls::key(&u)) {
                        items.push(Item::Fetch(QItem { url: u.to_string(), depth: 0, caption: seed.caption }));
                    } else {
                        dups += 1;
                    }
                }
            },
        }
    }
    (items, dups)
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

async fn decode(stage: &CrawlStage, bytes: Vec<u8>) -> (Vec<u8>, Result<images::Decoded, String>) {
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
async fn image_row(stage: &CrawlStage, o: &mut Outcome, meta: &mut PageMeta, body: &mut Option<Vec<u8>>, page_url: Option<&str>) {
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

async fn process_item(stage: &CrawlStage, idx: u32, item: &Item, seen: &Mutex<HashSet<u128>>) -> Outcome {
    let cfg = &stage.cfg;
    let mut o = Outcome { idx, url: item.url().to_string(), ..Default::default() };
    let q = match item {
        Item::Invalid { url, msg, caption } => {
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
        Item::Fetch(q) => q,
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
                    let mut targets = vec![];
                    for s in &info.images {
                        if targets.len() >= cfg.max_images_per_page {
                            break;
                        }
                        let Ok(n) = urls::normalise(s, Some(&base), cfg.sort_query) else { continue };
                        let k = urls::key(&n);
                        if seen.lock().unwrap().insert(k) {
                            o.claims.push(format!("{k:032x}"));
                            targets.push(n);
                        }
                    }
                    let page_str = page_url.to_string();
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

/// Writes one item's rows (page row then its images' rows, one batch) and queues its links.
fn write_outcome(tout: &mut TaskOutput, o: Outcome, st: &mut State) -> Result<(), BoxError> {
    let mut pages = Vec::with_capacity(o.pages.len());
    let mut bytes_in = 0u64;
    for (m, b) in o.pages.into_iter().zip(o.page_bodies) {
        match &m.error_kind {
            Some(k) => tout.counters.bump(&format!("error.{k}"), 1),
            None => tout.counters.bump("fetched", 1),
        }
        bytes_in += b.as_ref().map_or(0, |b| b.len() as u64);
        pages.push(Page {
            id: Page::make_id(&m.url, b.as_deref()),
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
    let imgs: Vec<Image> = o
        .images
        .into_iter()
        .zip(o.image_bytes)
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
        })
        .collect();
    tout.write_side_rows(IMAGES, &imgs)?;
    for (l, depth) in o.links {
        if let Ok(u) = Url::parse(&l) {
            if st.seen.insert(urls::key(&u)) {
                st.queue.push_back(QItem { url: l, depth, caption: None });
            }
        }
    }
    Ok(())
}
