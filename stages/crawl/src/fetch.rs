//! The HTTP side of the crawler: politeness (global and per-host limits, per-host
//! delay, robots.txt), safety (no private addresses, redirect and body caps,
//! timeouts) and resilience (retries with backoff and jitter, Retry-After).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{OnceCell, Semaphore};
use tokio::time::{sleep, sleep_until, timeout, Instant};
use url::{Host, Url};

use crate::journal::{RobotsLog, RobotsRecord};
use crate::net::{AddressPolicy, DnsFailure, FilteringResolver, PrivateAddress};
use crate::robots::Robots;
use crate::urls;
use crate::CrawlConfig;

/// The `error_kind` values the crawler records.
pub mod kind {
    pub const ROBOTS: &str = "robots";
    pub const OPT_OUT: &str = "opt_out";
    pub const HTTP_STATUS: &str = "http_status";
    pub const TIMEOUT: &str = "timeout";
    pub const CONNECT: &str = "connect";
    pub const DNS: &str = "dns";
    pub const PRIVATE_ADDRESS: &str = "private_address";
    pub const REDIRECT_LOOP: &str = "redirect_loop";
    pub const TOO_MANY_REDIRECTS: &str = "too_many_redirects";
    pub const BAD_REDIRECT: &str = "bad_redirect";
    pub const TOO_LARGE: &str = "too_large";
    pub const BODY: &str = "body";
    pub const REQUEST: &str = "request";
    pub const INVALID_URL: &str = "invalid_url";
    pub const BAD_IMAGE: &str = "bad_image";
    pub const NOT_IMAGE: &str = "not_image";
}

/// How much of a robots.txt body is read (RFC 9309 asks for at least 500 KiB).
pub const ROBOTS_MAX_BYTES: usize = 512 << 10;

/// The final outcome of fetching one URL (after redirects and retries).
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub final_url: Option<String>,
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub body: Option<Vec<u8>>,
    pub error: Option<(&'static str, String)>,
    pub fetch_time: i64,
}

impl Fetched {
    fn fail(kind: &'static str, msg: String) -> Self {
        Fetched { error: Some((kind, msg)), fetch_time: now_ms(), ..Default::default() }
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Everything kept per origin (`scheme://host:port`): the politeness gate and the
/// robots.txt rules, looked up together once per request.
struct Origin {
    sem: Semaphore,
    next: tokio::sync::Mutex<Instant>,
    /// Minimum time between request starts, in ms: `per_host_delay_ms`, raised to the
    /// origin's `Crawl-delay` (capped at `max_crawl_delay_ms`) once robots.txt is known.
    delay_ms: AtomicU64,
    robots: Mutex<Arc<OnceCell<Arc<RobotsEntry>>>>,
}

impl Origin {
    /// Waits for this host's next slot and books the one after it.
    async fn turn(&self, delay: Duration) {
        let mut next = self.next.lock().await;
        if *next > Instant::now() {
            sleep_until(*next).await;
        }
        *next = Instant::now() + delay;
    }

    /// Pushes the host's next slot back (a Retry-After applies to the whole host).
    async fn defer(&self, d: Duration) {
        let mut next = self.next.lock().await;
        *next = (*next).max(Instant::now() + d);
    }
}

enum RobotsEntry {
    /// The rules, and when robots.txt was fetched (unix ms) for the cache's max age.
    Rules(Robots, i64),
    Refused(&'static str, String),
}

enum Attempt {
    Redirect { location: String },
    Retry { status: u16, retry_after: Option<Duration>, headers: Vec<(String, String)> },
    NetErr { kind: &'static str, msg: String, retryable: bool },
    Done(Fetched),
}

pub struct Fetcher {
    client: reqwest::Client,
    cfg: CrawlConfig,
    global: Semaphore,
    origins: Mutex<HashMap<String, Arc<Origin>>>,
    /// Where fetched robots.txt answers are persisted so a resumed crawl reuses them.
    robots_log: Mutex<Option<RobotsLog>>,
    /// Which addresses may be connected to (IP literals are checked here, names by the resolver).
    policy: AddressPolicy,
}

impl Fetcher {
    pub fn new(cfg: &CrawlConfig, policy: AddressPolicy) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .user_agent(cfg.user_agent.clone())
            // Redirects are followed by hand so that each hop is checked against
            // robots.txt and the address filter, and loops are reported as such.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms))
            .read_timeout(Duration::from_millis(cfg.read_timeout_ms))
            .dns_resolver(Arc::new(FilteringResolver::new(policy.clone(), Duration::from_secs(cfg.dns_cache_s))))
            .pool_max_idle_per_host(cfg.per_host_concurrency.max(1))
            .build()?;
        Ok(Fetcher {
            client,
            cfg: cfg.clone(),
            global: Semaphore::new(cfg.concurrency.max(1)),
            origins: Mutex::new(HashMap::new()),
            robots_log: Mutex::new(None),
            policy,
        })
    }

    fn origin(&self, u: &Url) -> Arc<Origin> {
        self.origin_by_key(urls::origin(u))
    }

    fn origin_by_key(&self, key: String) -> Arc<Origin> {
        let mut m = self.origins.lock().unwrap();
        m.entry(key)
            .or_insert_with(|| {
                Arc::new(Origin {
                    sem: Semaphore::new(self.cfg.per_host_concurrency.max(1)),
                    next: tokio::sync::Mutex::new(Instant::now()),
                    delay_ms: AtomicU64::new(self.cfg.per_host_delay_ms),
                    robots: Mutex::new(Arc::new(OnceCell::new())),
                })
            })
            .clone()
    }

    /// The gap between request starts for an origin with these rules: the configured
    /// delay, or the site's `Crawl-delay` when longer, capped at `max_crawl_delay_ms`.
    pub fn delay_for(&self, r: &Robots) -> Duration {
        let asked = r.crawl_delay.map_or(0, |s| (s * 1000.0).min(u64::MAX as f64 / 2.0) as u64).min(self.cfg.max_crawl_delay_ms);
        Duration::from_millis(self.cfg.per_host_delay_ms.max(asked))
    }

    /// From now on, robots.txt answers are appended to `log`; `known` (answers an
    /// earlier run persisted) are used instead of fetching again while younger than
    /// `robots_max_age_s`. Returns how many were taken.
    pub fn use_robots_log(&self, log: RobotsLog, known: Vec<RobotsRecord>) -> usize {
        let now = now_ms();
        let max_age = self.cfg.robots_max_age_s.saturating_mul(1000) as i64;
        let mut newest: HashMap<String, RobotsRecord> = HashMap::new();
        for r in known {
            if now.saturating_sub(r.fetched_at) < max_age && newest.get(&r.origin).is_none_or(|o| o.fetched_at <= r.fetched_at) {
                newest.insert(r.origin.clone(), r);
            }
        }
        let n = newest.len();
        // A new run (one stage object can run into several outputs) starts from its own
        // output's answers only: rules another run fetched are forgotten, so they are
        // fetched again and land in this output's log (its resume and later runs rely on
        // it). Per-host delays are kept, the conservative side of politeness.
        for o in self.origins.lock().unwrap().values() {
            *o.robots.lock().unwrap() = Arc::new(OnceCell::new());
        }
        for (key, r) in newest {
            let robots = r.rules(&self.cfg.robots_token);
            let o = self.origin_by_key(key);
            o.delay_ms.store(self.delay_for(&robots).as_millis() as u64, Ordering::Relaxed);
            *o.robots.lock().unwrap() = Arc::new(OnceCell::new_with(Some(Arc::new(RobotsEntry::Rules(robots, r.fetched_at)))));
        }
        *self.robots_log.lock().unwrap() = Some(log);
        n
    }

    /// Fetches `url`, following redirects by hand; every failure comes back as a
    /// `Fetched` with its error kind, never as an `Err`.
    pub async fn fetch(&self, url: &Url, is_image: bool) -> Fetched {
        let mut current = url.clone();
        let mut chain = vec![current.to_string()];
        loop {
            let origin = self.origin(&current);
            if let Some((k, msg)) = self.precheck(&origin, &current).await {
                let mut f = Fetched::fail(k, msg);
                f.final_url = Some(current.to_string());
                return f;
            }
            match self.with_retries(&origin, &current, is_image).await {
                Attempt::Redirect { location } => {
                    let next = match urls::normalise(&location, Some(&current), self.cfg.sort_query) {
                        Ok(n) => n,
                        Err(e) => return with_final(Fetched::fail(kind::BAD_REDIRECT, format!("{current} redirects to an unusable location: {e}")), &current),
                    };
                    if chain.iter().any(|c| c == next.as_str()) {
                        chain.push(next.to_string());
                        return with_final(Fetched::fail(kind::REDIRECT_LOOP, format!("redirect loop: {}", chain.join(" -> "))), &current);
                    }
                    if chain.len() > self.cfg.max_redirects as usize {
                        return with_final(
                            Fetched::fail(kind::TOO_MANY_REDIRECTS, format!("{url}: more than max_redirects={} redirects (last: {next})", self.cfg.max_redirects)),
                            &current,
                        );
                    }
                    chain.push(next.to_string());
                    current = next;
                }
                Attempt::Done(mut f) => return { f.final_url = Some(current.to_string()); f },
                Attempt::Retry { .. } | Attempt::NetErr { .. } => unreachable!("with_retries resolves these"),
            }
        }
    }

    /// Refusals decided before any request: IP literals in forbidden ranges, robots.txt.
    async fn precheck(&self, origin: &Origin, u: &Url) -> Option<(&'static str, String)> {
        if let Some(r) = self.literal_refusal(u) {
            return Some(r);
        }
        if u.path() == "/robots.txt" {
            return None;
        }
        let entry = self.robots_for(origin, u).await;
        match &*entry {
            RobotsEntry::Refused(k, m) => Some((k, format!("refused {u}: {m}"))),
            RobotsEntry::Rules(r, _) => {
                let pq = match u.query() {
                    Some(q) => format!("{}?{q}", u.path()),
                    None => u.path().to_string(),
                };
                if r.allowed(&pq) {
                    None
                } else if let Some(why) = &r.unreachable {
                    Some((kind::ROBOTS, format!("{u}: {why}, so every path of {} is disallowed (RFC 9309)", urls::origin(u))))
                } else {
                    Some((kind::ROBOTS, format!("{u} is disallowed by {}/robots.txt for user-agent `{}`", urls::origin(u), self.cfg.robots_token)))
                }
            }
        }
    }

    /// IP-literal URLs never reach the resolver, so their address is checked here.
    fn literal_refusal(&self, u: &Url) -> Option<(&'static str, String)> {
        let ip = match u.host() {
            Some(Host::Ipv4(a)) => Some(std::net::IpAddr::V4(a)),
            Some(Host::Ipv6(a)) => Some(std::net::IpAddr::V6(a)),
            _ => None,
        };
        let ip = ip.filter(|ip| !self.policy.permits(*ip))?;
        if crate::net::is_metadata(ip) {
            return Some((kind::PRIVATE_ADDRESS, format!("refused {u}: {ip} is a cloud metadata endpoint, never crawled")));
        }
        Some((kind::PRIVATE_ADDRESS, format!("refused {u}: {ip} is a private/loopback/link-local/multicast address; pass --allow-private CIDR to crawl an internal range")))
    }

    /// The origin's robots.txt rules: fetched once and cached (in memory, and in the
    /// robots log so a resumed crawl does not fetch them again), refetched once older
    /// than `robots_max_age_s` (RFC 9309 §2.4: caches SHOULD NOT live past 24 hours).
    async fn robots_for(&self, origin: &Origin, u: &Url) -> Arc<RobotsEntry> {
        let cell = origin.robots.lock().unwrap().clone();
        if let Some(RobotsEntry::Rules(_, at)) = cell.get().map(|e| &**e) {
            if now_ms().saturating_sub(*at) >= self.cfg.robots_max_age_s.saturating_mul(1000) as i64 {
                let fresh = {
                    let mut slot = origin.robots.lock().unwrap();
                    if Arc::ptr_eq(&slot, &cell) {
                        *slot = Arc::new(OnceCell::new());
                    }
                    slot.clone()
                };
                return fresh.get_or_init(|| self.fetch_robots(origin, u)).await.clone();
            }
        }
        cell.get_or_init(|| self.fetch_robots(origin, u)).await.clone()
    }

    /// RFC 9309 §2.3.1: 2xx parse, 4xx allow all, 5xx or unreachable disallow all;
    /// up to five redirects are followed. Definite answers (2xx, 4xx) are logged for
    /// resumes; failures are not, so a resumed crawl tries them again.
    async fn fetch_robots(&self, origin: &Origin, u: &Url) -> Arc<RobotsEntry> {
        let mut cur = u.join("/robots.txt").expect("origin joins /robots.txt");
        let mut answer: Option<(u16, Option<String>)> = None;
        let mut rules = Robots::allow_all();
        for _ in 0..=5 {
            if let Some((k, m)) = self.literal_refusal(&cur) {
                return Arc::new(RobotsEntry::Refused(k, m));
            }
            let hop = if urls::origin(&cur) == urls::origin(u) { None } else { Some(self.origin(&cur)) };
            // Only the head is read, whatever the size: a robots.txt larger than
            // max_body_bytes still has rules, and ignoring them would allow everything.
            match self.attempt_read(hop.as_deref().unwrap_or(origin), &cur, false, Some(ROBOTS_MAX_BYTES)).await {
                Attempt::Redirect { location } => {
                    // An unusable location ends the chain: no robots.txt, all allowed.
                    if let Ok(n) = cur.join(&location) {
                        cur = n;
                        continue;
                    }
                }
                Attempt::Retry { status, .. } => rules = Robots::disallow_all(format!("{cur} answered HTTP {status}")),
                Attempt::NetErr { kind: k, msg, .. } if k == kind::PRIVATE_ADDRESS => return Arc::new(RobotsEntry::Refused(k, msg)),
                Attempt::NetErr { msg, .. } => rules = Robots::disallow_all(format!("{cur} is unreachable ({msg})")),
                Attempt::Done(f) => match (f.status, f.body) {
                    (Some(s), Some(b)) if (200..300).contains(&s) => {
                        // RFC 9309 §2.5: parse at least 500 KiB. Past that, a site gains
                        // nothing but a bigger robots log; cut at the last whole line.
                        let b = match b.get(..ROBOTS_MAX_BYTES) {
                            Some(head) => &head[..head.iter().rposition(|&c| c == b'\n').map_or(0, |p| p + 1)],
                            None => &b[..],
                        };
                        let text = String::from_utf8_lossy(b).into_owned();
                        rules = Robots::parse(&text, &self.cfg.robots_token);
                        answer = Some((s, Some(text)));
                    }
                    (Some(s), _) if (400..500).contains(&s) => answer = Some((s, None)),
                    (Some(s), _) if s >= 500 => rules = Robots::disallow_all(format!("{cur} answered HTTP {s}")),
                    _ => {}
                },
            }
            break;
        }
        let fetched_at = now_ms();
        let delay = self.delay_for(&rules);
        origin.delay_ms.store(delay.as_millis() as u64, Ordering::Relaxed);
        // robots.txt was itself a request to this origin: the next one waits a Crawl-delay.
        origin.defer(delay).await;
        if let Some((status, body)) = answer {
            let rec = RobotsRecord { origin: urls::origin(u), fetched_at, status, body };
            if let Some(log) = &*self.robots_log.lock().unwrap() {
                if let Err(e) = log.append(&rec) {
                    tracing::warn!(error = %e, "could not persist robots.txt (a resumed crawl will fetch it again)");
                }
            }
        }
        Arc::new(RobotsEntry::Rules(rules, fetched_at))
    }

    async fn with_retries(&self, origin: &Origin, u: &Url, is_image: bool) -> Attempt {
        let mut tries = 0u32;
        loop {
            match self.attempt(origin, u, is_image).await {
                Attempt::Retry { status, retry_after, headers } => {
                    let give_up = |msg: String| {
                        let mut f = Fetched::fail(kind::HTTP_STATUS, msg);
                        f.status = Some(status);
                        f.headers = headers.clone();
                        Attempt::Done(f)
                    };
                    if tries >= self.cfg.max_retries {
                        return give_up(format!("GET {u}: HTTP {status} after {} attempts", tries + 1));
                    }
                    if let Some(ra) = retry_after.filter(|ra| ra.as_secs() > self.cfg.max_retry_after_s) {
                        return give_up(format!("GET {u}: HTTP {status} with Retry-After {} s, above max_retry_after_s={}", ra.as_secs(), self.cfg.max_retry_after_s));
                    }
                    let wait = match retry_after {
                        Some(ra) => {
                            origin.defer(ra).await;
                            ra + self.jitter(u, tries)
                        }
                        None => self.backoff(u, tries),
                    };
                    tracing::debug!(url = %u, status, wait_ms = wait.as_millis() as u64, "retrying");
                    sleep(wait).await;
                    tries += 1;
                }
                Attempt::NetErr { kind: k, msg, retryable } => {
                    if !retryable || tries >= self.cfg.max_retries {
                        let msg = if tries > 0 { format!("{msg} (after {} attempts)", tries + 1) } else { msg };
                        return Attempt::Done(Fetched::fail(k, msg));
                    }
                    sleep(self.backoff(u, tries)).await;
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    fn backoff(&self, u: &Url, tries: u32) -> Duration {
        let exp = self.cfg.backoff_base_ms.saturating_mul(1u64 << tries.min(20)).min(self.cfg.backoff_max_ms);
        Duration::from_millis(exp) + self.jitter(u, tries)
    }

    /// Up to half the base delay, spread by URL and attempt so that clients that
    /// failed together do not come back together.
    fn jitter(&self, u: &Url, tries: u32) -> Duration {
        let h = blake3::hash(format!("{u}#{tries}").as_bytes());
        let r = u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap());
        Duration::from_millis(r % (self.cfg.backoff_base_ms / 2).max(1))
    }

    /// One request: waits for the host's turn and a global slot, then reads the
    /// response (the body streamed under the size cap).
    async fn attempt(&self, origin: &Origin, u: &Url, is_image: bool) -> Attempt {
        self.attempt_read(origin, u, is_image, None).await
    }

    /// [`Fetcher::attempt`]; with `head = Some(n)` only the first `n` body bytes are
    /// read and kept (the rest is never downloaded) instead of refusing a body over the cap.
    async fn attempt_read(&self, origin: &Origin, u: &Url, is_image: bool, head: Option<usize>) -> Attempt {
        let _host = origin.sem.acquire().await.expect("semaphore open");
        origin.turn(Duration::from_millis(origin.delay_ms.load(Ordering::Relaxed))).await;
        let _slot = self.global.acquire().await.expect("semaphore open");
        // The clock starts once it is our turn: waiting behind other requests to a
        // busy host is politeness, not a slow server.
        match timeout(Duration::from_millis(self.cfg.total_timeout_ms), self.request(u, is_image, head)).await {
            Ok(a) => a,
            Err(_) => Attempt::NetErr {
                kind: kind::TIMEOUT,
                msg: format!("GET {u}: no complete response within total_timeout_ms={}", self.cfg.total_timeout_ms),
                retryable: false,
            },
        }
    }

    async fn request(&self, u: &Url, is_image: bool, head: Option<usize>) -> Attempt {
        let mut resp = match self.client.get(u.as_str()).send().await {
            Ok(r) => r,
            Err(e) => return classify(&e, u),
        };
        let status = resp.status().as_u16();
        let headers: Vec<(String, String)> =
            resp.headers().iter().map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect();
        let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        if (300..400).contains(&status) && status != 304 {
            if let Some(loc) = header("location") {
                return Attempt::Redirect { location: loc.to_string() };
            }
        }
        if status == 429 || status >= 500 {
            let retry_after = header("retry-after").and_then(parse_retry_after);
            return Attempt::Retry { status, retry_after, headers };
        }
        let done = |k: &'static str, msg: String, headers: Vec<(String, String)>| {
            let mut f = Fetched::fail(k, msg);
            f.status = Some(status);
            f.headers = headers;
            Attempt::Done(f)
        };
        if !(200..300).contains(&status) {
            let reason = resp.status().canonical_reason().unwrap_or("");
            return done(kind::HTTP_STATUS, format!("GET {u}: HTTP {status} {reason}"), headers);
        }
        let tags: Vec<&str> = headers.iter().filter(|(k, _)| k == "x-robots-tag").map(|(_, v)| v.as_str()).collect();
        let header_ct = header("content-type").map(str::to_string);
        let image_like = is_image || header_ct.as_deref().is_some_and(|c| c.trim().to_ascii_lowercase().starts_with("image/"));
        // An opt-out header on robots.txt itself (sites keep it out of search indexes
        // with `noindex`) is about indexing that file, not about its rules.
        if let Some(d) = x_robots_opt_out(&tags, &self.cfg.robots_token, image_like).filter(|_| head.is_none()) {
            return done(kind::OPT_OUT, format!("{u}: X-Robots-Tag `{d}` opts out; body not kept"), headers);
        }
        let cap = match head {
            Some(n) => n as u64,
            None => self.cfg.max_body_bytes,
        };
        if let Some(len) = resp.content_length().filter(|&l| l > cap && head.is_none()) {
            return done(kind::TOO_LARGE, format!("GET {u}: Content-Length {len} exceeds max_body_bytes={cap}"), headers);
        }
        let mut body: Vec<u8> = Vec::with_capacity(resp.content_length().unwrap_or(16 << 10).min(cap) as usize);
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if head.is_some() && body.len() as u64 + c.len() as u64 >= cap {
                        // The head is complete: keep it and drop the connection.
                        let room = cap as usize - body.len();
                        body.extend_from_slice(&c[..room.min(c.len())]);
                        break;
                    }
                    if body.len() as u64 + c.len() as u64 > cap {
                        return done(kind::TOO_LARGE, format!("GET {u}: body exceeds max_body_bytes={cap}; aborted after {} bytes", body.len() + c.len()), headers);
                    }
                    body.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) => {
                    return match classify(&e, u) {
                        Attempt::NetErr { kind: k, msg, .. } => done(k, msg, headers),
                        other => other,
                    };
                }
            }
        }
        let content_type = sniff(header_ct.as_deref(), &body);
        Attempt::Done(Fetched { final_url: None, status: Some(status), headers, content_type, body: Some(body), error: None, fetch_time: now_ms() })
    }
}

fn with_final(mut f: Fetched, u: &Url) -> Fetched {
    f.final_url = Some(u.to_string());
    f
}

/// Maps a reqwest error to an error kind, a message naming the URL and the cause
/// chain, and whether trying again could help.
fn classify(e: &reqwest::Error, u: &Url) -> Attempt {
    let mut chain = vec![e.to_string()];
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut special: Option<&'static str> = None;
    while let Some(s) = src {
        if s.downcast_ref::<PrivateAddress>().is_some() {
            special = Some(kind::PRIVATE_ADDRESS);
        } else if s.downcast_ref::<DnsFailure>().is_some() {
            special = special.or(Some(kind::DNS));
        }
        let text = s.to_string();
        // Some connector layers re-wrap the resolver's error as text only.
        if text.contains(crate::net::PRIVATE_MARK) {
            special = Some(kind::PRIVATE_ADDRESS);
        }
        if !chain.iter().any(|c| c.contains(&text)) {
            chain.push(text);
        }
        src = s.source();
    }
    let msg = format!("GET {u}: {}", chain.join(": "));
    let (k, retryable) = match special {
        Some(k) => (k, false),
        None if e.is_timeout() => (kind::TIMEOUT, false),
        None if e.is_connect() => (kind::CONNECT, true),
        None if e.is_body() || e.is_decode() => (kind::BODY, false),
        None => (kind::REQUEST, true),
    };
    Attempt::NetErr { kind: k, msg, retryable }
}

/// `Retry-After`: delay-seconds or an HTTP-date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// The opt-out directive an `X-Robots-Tag` carries for us, if any (`noai`,
/// `noindex`, and `noimageai` for images). `agent: directives` values for other
/// agents are ignored.
pub fn x_robots_opt_out(values: &[&str], token: &str, is_image: bool) -> Option<String> {
    const NOT_AGENTS: [&str; 4] = ["unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"];
    for v in values {
        let (agent, directives) = match v.split_once(':') {
            Some((a, d)) if !a.contains(',') && !a.trim().contains(' ') && !NOT_AGENTS.contains(&a.trim().to_ascii_lowercase().as_str()) => (Some(a.trim()), d),
            _ => (None, *v),
        };
        if agent.is_some_and(|a| !a.eq_ignore_ascii_case(token)) {
            continue;
        }
        for d in directives.split(',') {
            let d = d.trim().to_ascii_lowercase();
            if d == "noai" || d == "noindex" || (is_image && d == "noimageai") {
                return Some(d);
            }
        }
    }
    None
}

fn magic(body: &[u8]) -> Option<&'static str> {
    const SIGS: [(&[u8], &str); 7] = [
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"BM", "image/bmp"),
        (b"%PDF-", "application/pdf"),
        (b"\x1f\x8b", "application/gzip"),
    ];
    if body.len() >= 12 && &body[..4] == b"RIFF" && &body[8..12] == b"WEBP" {
        return Some("image/webp");
    }
    for (sig, mime) in SIGS {
        if body.starts_with(sig) {
            return Some(mime);
        }
    }
    let start = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let start = &start[start.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(start.len())..];
    let head: Vec<u8> = start.iter().take(16).map(|c| c.to_ascii_lowercase()).collect();
    // The WHATWG sniffing table's HTML openers, each followed by space or '>'.
    for tag in ["<!doctype html", "<html", "<head", "<script", "<iframe", "<h1", "<div", "<font", "<table", "<a", "<style", "<title", "<b", "<body", "<br", "<p", "<!--"] {
        if head.starts_with(tag.as_bytes()) && head.get(tag.len()).is_none_or(|c| *c == b' ' || *c == b'>' || c.is_ascii_whitespace()) {
            return Some("text/html");
        }
    }
    if head.starts_with(b"<?xml") {
        return Some("text/xml");
    }
    None
}

/// The content type to record: the header's when it is plausible (charset kept for
/// extract), otherwise what the bytes say.
pub fn sniff(header: Option<&str>, body: &[u8]) -> Option<String> {
    let essence = header.map(|h| h.split(';').next().unwrap_or("").trim().to_ascii_lowercase()).filter(|e| !e.is_empty());
    let m = magic(body);
    match essence.as_deref() {
        None | Some("application/octet-stream" | "binary/octet-stream" | "unknown/unknown" | "application/unknown" | "*/*") => Some(
            m.map(str::to_string).unwrap_or_else(|| {
                let text = !body.iter().take(1024).any(|&c| c == 0) && std::str::from_utf8(&body[..body.len().min(1024)]).is_ok();
                if text { "text/plain" } else { "application/octet-stream" }.to_string()
            }),
        ),
        Some(e) => match m {
            // A header that lies about an image (an HTML or wrong image type served
            // for a PNG) is overruled by the bytes.
            Some(mm) if mm.starts_with("image/") && e != mm => Some(mm.to_string()),
            Some("text/html") if e.starts_with("image/") => Some("text/html".to_string()),
            _ => header.map(|h| h.trim().to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing() {
        let png = b"\x89PNG\r\n\x1a\n0000";
        assert_eq!(sniff(None, png).as_deref(), Some("image/png"));
        assert_eq!(sniff(Some("text/html; charset=utf-8"), png).as_deref(), Some("image/png"));
        assert_eq!(sniff(Some("application/octet-stream"), b"  <!DOCTYPE html><html>").as_deref(), Some("text/html"));
        assert_eq!(sniff(Some("text/html; charset=gbk"), b"<html>").as_deref(), Some("text/html; charset=gbk"));
        assert_eq!(sniff(Some("image/png"), b"<html><body>404</body></html>").as_deref(), Some("text/html"));
        assert_eq!(sniff(None, "纯文本".as_bytes()).as_deref(), Some("text/plain"));
        assert_eq!(sniff(None, b"\x00\x01\x02").as_deref(), Some("application/octet-stream"));
    }

    #[test]
    fn x_robots() {
        assert_eq!(x_robots_opt_out(&["noindex, nofollow"], "m6corpus", false).as_deref(), Some("noindex"));
        assert_eq!(x_robots_opt_out(&["googlebot: noai"], "m6corpus", false), None);
        assert_eq!(x_robots_opt_out(&["M6Corpus: noai"], "m6corpus", false).as_deref(), Some("noai"));
        assert_eq!(x_robots_opt_out(&["unavailable_after: 25 Jun 2010 15:00:00 PST"], "m6corpus", false), None);
        assert_eq!(x_robots_opt_out(&["noimageai"], "m6corpus", false), None);
        assert_eq!(x_robots_opt_out(&["noimageai"], "m6corpus", true).as_deref(), Some("noimageai"));
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(100));
        let d = parse_retry_after(&later).unwrap();
        assert!(d.as_secs() >= 98 && d.as_secs() <= 100);
        assert_eq!(parse_retry_after("soon"), None);
    }
}
